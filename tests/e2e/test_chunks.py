"""``hnet-seq chunks``: HTML and a PNG for a 20 kb region (a headless-Chromium screenshot when
Chromium is installed), and the terminal view."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import GENOME, invoke, make_checkpoint


def test_chunks_html_png_and_screenshot(ck1, plasmids, tmp_path, report):
    names = list(plasmids)
    bed = tmp_path / "genes.bed"
    bed.write_text(f"{names[0]}\t41000\t43000\tgeneA\t0\t+\nchr{names[0]}\t50000\t52500\tgeneB\t0\t-\n")
    html, png = tmp_path / "region.html", tmp_path / "region.png"
    r = invoke("chunks", "--checkpoint", ck1, "--region", f"{names[0]}:40,001-60,000", "--reference", GENOME,
               "--html", html, "--png", png, "--annotations", bed, "--window", 4000, "--overlap", 128)
    assert r.exit_code == 0, r.output
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert page.count("class='c'") == 20000 and "stage 1: p=" in page
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.shape[0] > 300 and img.shape[1] > 800
    report("region.html size (20 kb)", f"{html.stat().st_size / 1e6:.1f} MB")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("chromium not installed: HTML written, screenshot not taken")
    shot = tmp_path / "shot.png"
    # a text page too: UTF-8 characters rendered from their bytes
    text_html = tmp_path / "text.html"
    ckb = make_checkpoint(tmp_path / "bytes", "tiny_1stage.json", "bytes")
    r = invoke("chunks", "--checkpoint", ckb, "--sequence", "Dynamic chunking — ¿dónde? 分块 ✓", "--html", text_html)
    assert r.exit_code == 0, r.output
    assert "分" in text_html.read_text()
    for page_path in (html, text_html):
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1200,900",
                               f"--screenshot={shot}", page_path.as_uri()], capture_output=True, timeout=120)
        assert proc.returncode == 0 and shot.exists(), proc.stderr[-500:]
        img = matplotlib.image.imread(str(shot))
        assert img.shape[:2] == (900, 1200) and img[..., :3].std() > 0.05  # something was drawn
        shot.unlink()


def test_chunks_terminal(ck2):
    r = invoke("chunks", "--checkpoint", ck2, "--sequence", "ACGTTGCATTGACCGGTAACGTTAGC" * 4)
    assert r.exit_code == 0, r.output
    assert "stage 1" in r.output and "stage 2" in r.output and "ACGTTGCATTGACC" in r.output
