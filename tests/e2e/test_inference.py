"""Inference commands on CPU with tiny random checkpoints and real sequence from ../shared/data.

Embed (chunk coordinates tile every sequence at every stage, RC averaging is strand-symmetric,
BED coordinates round-trip), generate (the step cache reproduces the full-forward likelihood;
an official-layout .pt generates through the CLI) and chunks (HTML and a PNG for a 20 kb region;
a headless-Chromium screenshot when Chromium is installed), plus
scoring for every modality and the error paths (one-line errors, no partial output).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hnet_seq.config import load_config
from hnet_seq.errors import UserError
from hnet_seq.model import HNetLM
from helpers import CONFIGS, ROOT, SHIGELLA, chunk_rows, invoke, make_checkpoint, randomise_routing

SHARED = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not SHIGELLA.exists(), reason=f"shared test data not found at {SHIGELLA}")


@pytest.fixture(scope="module")
def ck2(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna2", "tiny_2stage.json")


@pytest.fixture(scope="module")
def ck1(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna1", "tiny_1stage.json")


@pytest.fixture(scope="module")
def plasmids() -> dict[str, str]:
    import pysam

    with pysam.FastxFile(str(SHIGELLA)) as f:
        return {r.name: r.sequence for r in f}


@pytest.fixture(scope="module")
def small_fasta(tmp_path_factory, plasmids) -> tuple[Path, dict[str, int]]:
    """Plasmid B whole (5,153 bp) and 1.5 kb of plasmids A and E: real sequence, quick on CPU."""
    names = list(plasmids)
    seqs = {names[1]: plasmids[names[1]], names[0]: plasmids[names[0]][20000:21500],
            names[2]: plasmids[names[2]][:1500].lower()}
    path = tmp_path_factory.mktemp("fa") / "plasmids_subset.fa"
    path.write_text("".join(f">{n}\n{s}\n" for n, s in seqs.items()))
    return path, {n: len(s) for n, s in seqs.items()}


def assert_tiles(rows: dict, lengths: dict[str, int], stages: int, offsets: dict[str, int] | None = None) -> None:
    """Chunks of every stage tile every sequence: sorted, no gap, no overlap, first at 0, last at the end."""
    sid = np.array(rows["seq_id"])
    for name, n in lengths.items():
        off = (offsets or {}).get(name, 0)
        for s in range(1, stages + 1):
            m = (sid == name) & (rows["stage"] == s)
            assert m.sum() > 3, (name, s)
            a, b = rows["start"][m], rows["end"][m]
            order = np.argsort(a)
            a, b = a[order], b[order]
            assert a[0] == off and b[-1] == off + n, (name, s, a[0], b[-1])
            assert np.array_equal(a[1:], b[:-1]), (name, s)
            assert (b > a).all()


# ---- embeddings -----------------------------------------------------------------------
def test_embed_chunks_tile_every_sequence_cli(ck2, small_fasta, tmp_path, report):
    fasta, lengths = small_fasta
    out = tmp_path / "emb.parquet"
    r = invoke("embed", fasta, "--checkpoint", ck2, "-o", out, "--chunks", "--window", 2000, "--overlap", 256,
               "--quiet")
    assert r.exit_code == 0, r.output
    seqs = pq.read_table(str(out))
    assert seqs.column("seq_id").to_pylist() == list(lengths)
    assert seqs.column("length").to_pylist() == list(lengths.values())
    assert seqs.column("tiles").to_pylist()[0] == 3  # 5,153 bp in tiles of 2,000 every 1,744
    meta = json.loads(pq.read_schema(str(out)).metadata[b"hnet_seq"])
    assert meta["window"] == 2000 and meta["overlap"] == 256 and "tiles of 2000" in meta["tiling"]
    emb = np.stack(seqs.column("embedding").to_numpy(zero_copy_only=False))
    assert emb.shape == (3, 64) and np.isfinite(emb).all()
    rows = chunk_rows(tmp_path / "emb.chunks.parquet")
    assert_tiles(rows, lengths, stages=2)
    dims = {s: len(rows["vector"][int(np.flatnonzero(rows["stage"] == s)[0])]) for s in (1, 2)}
    assert dims == {1: 96, 2: 128} == {s: meta["dims"][s] for s in (1, 2)}
    for s in (1, 2):  # chunk counts per stage agree with the sequence table
        per_seq = [int(((np.array(rows["seq_id"]) == n) & (rows["stage"] == s)).sum()) for n in lengths]
        assert per_seq == [c[s - 1] for c in seqs.column("num_chunks").to_pylist()]
    ratio = [len(rows["start"][rows["stage"] == s]) for s in (1, 2)]
    report("chunks per stage (7,653 bp)", ratio)


def test_rc_average_is_strand_symmetric(ck2, plasmids):
    from hnet_seq.inference.embed import embed
    from hnet_seq.modalities.base import Record
    from hnet_seq.modalities.dna import encode_ascii, reverse_complement

    seq = encode_ascii(next(iter(plasmids.values()))[5000:6400])[0]
    n = len(seq)
    records = [Record("fwd", seq, {}), Record("rev", reverse_complement(seq), {})]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rc.parquet"
        # tiles of 600 every 500 on both strands, so stitching and strand mapping both matter
        embed(ck2, out=out, records=records, chunks=True, rc_average=True, window=600, overlap=100, progress=False)
        emb = np.stack(pq.read_table(str(out)).column("embedding").to_numpy(zero_copy_only=False))
        rows = chunk_rows(Path(d) / "rc.chunks.parquet")
    assert np.abs(emb[0] - emb[1]).max() < 1e-5
    assert not np.allclose(emb[0], 0)
    assert_tiles(rows, {"fwd": n, "rev": n}, stages=2)
    sid = np.array(rows["seq_id"])
    for s in (1, 2):
        f, r = (sid == "fwd") & (rows["stage"] == s), (sid == "rev") & (rows["stage"] == s)
        fa, fb = rows["start"][f], rows["end"][f]
        ra, rb = n - rows["end"][r], n - rows["start"][r]  # mirrored into forward coordinates
        of, orr = np.argsort(fa), np.argsort(ra)
        assert np.array_equal(fa[of], ra[orr]) and np.array_equal(fb[of], rb[orr])
        vf = np.array([rows["vector"][i] for i in np.flatnonzero(f)])[of]
        vr = np.array([rows["vector"][i] for i in np.flatnonzero(r)])[orr]
        assert np.abs(vf - vr).max() < 1e-5
        # boundary probability at a cut c of the sequence = at cut n - c of its reverse complement
        pf = dict(zip(fa.tolist(), rows["boundary_prob"][f].tolist()))
        pr = {n - a: p for a, p in zip(rows["start"][r].tolist(), rows["boundary_prob"][r].tolist())}
        inner = [c for c in pf if 0 < c < n]
        assert set(inner) == {c for c in pr if 0 < c < n}
        assert max(abs(pf[c] - pr[c]) for c in inner) < 1e-5


def test_bed_coordinates_round_trip(ck1, plasmids, tmp_path):
    """BED input: rows carry genomic coordinates; chunks equal those of the same bases as FASTA, shifted."""
    names = list(plasmids)
    bed = tmp_path / "regions.bed"
    # the second interval names its contig with a chr prefix: aliased to find it, kept in the output
    bed.write_text(f"{names[0]}\t100200\t101000\tgeneA\n{'chr' + names[2]}\t3000\t3700\tgeneB\n")
    out = tmp_path / "bed.parquet"
    r = invoke("embed", "--bed", bed, "--reference", SHIGELLA, "--checkpoint", ck1, "-o", out, "--chunks",
               "--quiet")
    assert r.exit_code == 0, r.output
    seqs = pq.read_table(str(out)).to_pylist()
    assert [(s["chrom"], s["start"], s["end"]) for s in seqs] == [(names[0], 100200, 101000),
                                                                 ("chr" + names[2], 3000, 3700)]
    rows = chunk_rows(tmp_path / "bed.chunks.parquet")
    ids = [s["seq_id"] for s in seqs]
    assert_tiles(rows, {ids[0]: 800, ids[1]: 700}, stages=1, offsets={ids[0]: 100200, ids[1]: 3000})
    assert set(rows["chrom"]) == {names[0], "chr" + names[2]}
    # the same bases written as FASTA give the same chunks, 100,200 / 3,000 positions earlier
    fa = tmp_path / "same.fa"
    fa.write_text(f">a\n{plasmids[names[0]][100200:101000]}\n>b\n{plasmids[names[2]][3000:3700]}\n")
    r = invoke("embed", fa, "--checkpoint", ck1, "-o", tmp_path / "fa.parquet", "--chunks", "--quiet")
    assert r.exit_code == 0, r.output
    plain = chunk_rows(tmp_path / "fa.chunks.parquet")
    for bed_id, fa_id, off in ((ids[0], "a", 100200), (ids[1], "b", 3000)):
        mb, mf = np.array(rows["seq_id"]) == bed_id, np.array(plain["seq_id"]) == fa_id
        assert np.array_equal(rows["start"][mb] - off, plain["start"][mf])
        assert np.array_equal(rows["end"][mb] - off, plain["end"][mf])
        assert np.allclose(rows["boundary_prob"][mb], plain["boundary_prob"][mf], atol=1e-6)


def test_embed_pooling_options_and_npz(ck2, plasmids, tmp_path):
    from hnet_seq.inference.embed import embed
    from hnet_seq.modalities.base import Record
    from hnet_seq.modalities.dna import encode_ascii

    rec = [Record("x", encode_ascii(next(iter(plasmids.values()))[:700])[0], {})]
    vecs = {}
    for pool, stage, layer in (("mean", 0, "output"), ("chunks", None, "output"), ("last", 2, "output"),
                               ("mean", 1, "input")):
        out = tmp_path / f"{pool}{stage}{layer}.npz"
        embed(ck2, out=out, records=rec, pool=pool, stage=stage, layer=layer, chunks=True, progress=False)
        z = np.load(out)
        vecs[(pool, stage, layer)] = z["embedding"][0]
        assert json.loads(str(z["metadata"]))["pool"] == pool
        assert z["chunk_start"].shape == z["chunk_end"].shape
        # chunk vectors follow --layer: stage-1 chunks' outputs are 96-wide, their inputs 64-wide
        assert z["chunk_vector_stage1"].shape == ((z["chunk_stage"] == 1).sum(), 96 if layer == "output" else 64)
    assert vecs[("mean", 0, "output")].shape == (64,)
    assert vecs[("chunks", None, "output")].shape == (96,)
    assert vecs[("last", 2, "output")].shape == (128,)
    assert vecs[("mean", 1, "input")].shape == (64,)  # a chunk's input is the stage-0 encoder state


# ---- scoring ----------------------------------------------------------------------------------
def test_score_per_position_and_tiling(ck2, small_fasta, tmp_path):
    fasta, lengths = small_fasta
    out, pp = tmp_path / "s.tsv", tmp_path / "pp.parquet"
    r = invoke("score", fasta, "--checkpoint", ck2, "-o", out, "--per-position", pp, "--window", 2000,
               "--overlap", 256, "--quiet")
    assert r.exit_code == 0, r.output
    lines = [l.split("\t") for l in out.read_text().splitlines() if not l.startswith("#")]
    header, body = lines[0], lines[1:]
    table = {row[0]: dict(zip(header, row)) for row in body}
    positions = pq.read_table(str(pp))
    sid = np.array(positions.column("seq_id").to_pylist())
    for name, n in lengths.items():
        row = table[name]
        assert int(row["length"]) == n and int(row["units_scored"]) == n - 1  # first base has no context
        m = sid == name
        pos = positions.column("position").to_numpy()[m]
        assert np.array_equal(pos, np.arange(1, n))
        lp = positions.column("logprob").to_numpy()[m].astype(np.float64)
        assert abs(lp.sum() - float(row["log_likelihood"])) < 1e-2
        assert abs(float(row["bits_per_unit"]) + lp.sum() / ((n - 1) * np.log(2))) < 1e-4


def test_score_every_modality(tmp_path):
    """bytes (a UDHR text, BOS scored from) and raw audio (a real WAV) through the same API."""
    from hnet_seq.inference.score import score

    text = SHARED / "text" / "udhr2"
    wavs = sorted((SHARED / "audio" / "codec2").glob("*.wav"))
    if not text.is_dir() or not wavs:
        pytest.skip("shared text/audio data missing")
    sample = next(p for p in sorted(text.glob("*.txt")) if 1500 < p.stat().st_size)
    doc = tmp_path / "doc.txt"
    doc.write_bytes(sample.read_bytes()[:1200])
    ckb = make_checkpoint(tmp_path / "bytes", "tiny_1stage.json", "bytes")
    s = score(ckb, [doc], progress=False).scores[0]
    assert s.length == 1200 and s.units_scored == 1200  # every byte is predicted (BOS first)
    assert 4.0 < s.bits_per_unit < 16.0
    cka = make_checkpoint(tmp_path / "audio", "tiny_1stage.json", "audio",
                          {"sample_rate": 8000, "frame_size": 80, "mixtures": 2})
    import soundfile as sf

    wav = tmp_path / "clip.wav"
    data, sr = sf.read(str(wavs[0]), dtype="int16")
    sf.write(str(wav), data[: sr // 2], sr, subtype="PCM_16")
    a = score(cka, [wav], progress=False).scores[0]
    n_frames = len(data[: sr // 2]) * 8000 // sr // 80
    assert a.units_scored == (n_frames - 1) * 80 and np.isfinite(a.log_likelihood)


# ---- generation --------------------------------------------------------------------------
def test_generate_step_cache_matches_full_forward(ck2):
    from hnet_seq.inference.generate import generate, sequence_logprobs
    from hnet_seq.inference.model import load

    im = load(ck2)
    gens = generate(im, "GATTACAGGCTTAACG", max_new_tokens=48, num_samples=2, seed=3, top_k=4, top_p=0.95)
    assert len(gens) == 2 and gens[0].text != gens[1].text
    for g in gens:
        assert len(g.tokens) == 48 and set(g.text) <= set("ACGTN")
        full = sequence_logprobs(im, g.full_tokens)[len(g.prompt_tokens) - 1:]
        assert np.abs(full - g.logprobs).max() < 1e-4
        assert abs(full.sum() - g.log_likelihood) < 1e-3
    again = generate(im, "GATTACAGGCTTAACG", max_new_tokens=48, num_samples=2, seed=3, top_k=4, top_p=0.95)
    assert [g.text for g in again] == [g.text for g in gens]  # same seed, same samples
    greedy = generate(im, "GATTACA", max_new_tokens=8, temperature=0)[0]
    assert len(greedy.tokens) == 8


def test_generate_official_layout_checkpoint_cli(tmp_path):
    """Random weights of tiny_1stage in the official key layout (torch.save(state_dict) as .pt)."""
    torch.manual_seed(0)
    model = HNetLM(load_config(CONFIGS / "tiny_1stage.json"))
    model.init_weights()
    randomise_routing(model)
    pt = tmp_path / "hnet_tiny.pt"
    torch.save(model.state_dict(), pt)
    out = tmp_path / "samples.txt"
    r = invoke("generate", "--checkpoint", pt, "--config", CONFIGS / "tiny_1stage.json", "--prompt",
               "Hello, H-Net", "-n", 24, "--seed", 1, "--top-p", 0.9, "--num-samples", 2, "-o", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.count("# sample") == 2 and "Hello, H-Net" in text
    from hnet_seq.inference.generate import generate, sequence_logprobs
    from hnet_seq.inference.model import load

    im = load(pt, CONFIGS / "tiny_1stage.json")
    g = generate(im, "Hello, H-Net", max_new_tokens=24, seed=1, top_p=0.9)[0]
    assert g.prompt_tokens[0] == 254  # official byte models start with BOS
    full = sequence_logprobs(im, g.full_tokens)[len(g.prompt_tokens) - 1:]
    assert np.abs(full - g.logprobs[: len(full)]).max() < 1e-4
    r = invoke("generate", "--checkpoint", pt, "--prompt", "x")
    assert r.exit_code == 2 and "needs --config" in r.output


# ---- chunks ------------------------------------------------------------------------------
def test_chunks_html_png_and_screenshot(ck1, plasmids, tmp_path, report):
    names = list(plasmids)
    bed = tmp_path / "genes.bed"
    bed.write_text(f"{names[0]}\t41000\t43000\tgeneA\t0\t+\nchr{names[0]}\t50000\t52500\tgeneB\t0\t-\n")
    html, png = tmp_path / "region.html", tmp_path / "region.png"
    r = invoke("chunks", "--checkpoint", ck1, "--region", f"{names[0]}:40,001-60,000", "--reference", SHIGELLA,
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


# ---- errors: one line, no partial output ----------------------------------------------------
def test_bad_input_is_one_line_and_leaves_no_output(ck1, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\n" + "ACGT" * 100 + "\n>broken\nACGTXACGT\n")
    out = tmp_path / "e.parquet"
    r = invoke("embed", bad, "--checkpoint", ck1, "-o", out, "--chunks", "--quiet")
    assert r.exit_code == 2
    assert "record 'broken'" in r.output and "'X'" in r.output and len(r.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [bad]  # no output, no temporary file left behind
    for args, words in (
            (["embed", bad, "--checkpoint", ck1, "-o", out, "--pool", "max"], "--pool max"),
            (["embed", "--bed", bad, "--checkpoint", ck1, "-o", out], "--bed needs --reference"),
            (["embed", bad, "--checkpoint", tmp_path / "nope", "-o", out], "no such checkpoint"),
            (["embed", bad, "--checkpoint", ck1, "-o", tmp_path / "e.csv"], "unsupported extension"),
            (["embed", bad, "--checkpoint", ck1, "-o", out, "--window", 100, "--overlap", 100], "--overlap 100"),
            (["score", tmp_path / "missing.fa", "--checkpoint", ck1], "missing.fa"),
            (["generate", "--checkpoint", ck1, "--prompt", "ACGU!"], "--prompt"),
            (["chunks", "--checkpoint", ck1], "exactly one of")):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert list(tmp_path.iterdir()) == [bad]
    with pytest.raises(UserError, match="rc_average is for DNA"):  # the API names its parameter
        from hnet_seq.inference.embed import embed

        embed(make_checkpoint(tmp_path / "b", "tiny_1stage.json", "bytes"), [bad], tmp_path / "x.parquet",
              rc_average=True, progress=False)


def test_library_errors_name_the_parameter_and_the_cli_its_flag(ck1, tmp_path):
    """The API says ``window=1``; the CLI says ``--window 1`` for the same mistake."""
    from hnet_seq.inference.embed import embed

    fasta = tmp_path / "a.fa"
    fasta.write_text(">a\n" + "ACGT" * 50 + "\n")
    with pytest.raises(UserError, match="^window=1: must be at least 2$"):
        embed(ck1, [fasta], tmp_path / "e.parquet", window=1, progress=False)
    with pytest.raises(UserError, match="^give bed or region, not both$"):
        embed(ck1, [], tmp_path / "e.parquet", bed=fasta, region="a:1-10", progress=False)
    r = invoke("embed", fasta, "--checkpoint", ck1, "-o", tmp_path / "e.parquet", "--window", 1)
    assert r.exit_code == 2 and r.output.strip() == "error: --window 1: must be at least 2", r.output
    r = invoke("embed", "--bed", fasta, "--region", "a:1-10", "--checkpoint", ck1, "-o", tmp_path / "e.parquet")
    assert r.exit_code == 2 and r.output.strip() == "error: give --bed or --region, not both", r.output
    assert list(tmp_path.iterdir()) == [fasta]


def test_tiles_cover_input_exactly():
    from hnet_seq.inference.tiling import plan_tiles

    for n, w, o in ((1, 8, 2), (8, 8, 2), (9, 8, 2), (100, 8, 3), (1000, 97, 0), (5153, 2000, 256)):
        tiles = plan_tiles(n, w, o)
        owned = np.concatenate([np.arange(t.own_start, t.end) for t in tiles])
        assert np.array_equal(owned, np.arange(n))
        assert all(t.end - t.start <= w and (t.index == 0 or t.own_start - t.start == o) for t in tiles)


def test_torchrun_two_ranks_merge_in_input_order(ck2, small_fasta, tmp_path):
    """`torchrun --nproc-per-node 2 ... embed` (gloo on CPU): one merged output, rows in input order."""
    import os
    import sys

    from hnet_seq.inference.embed import embed

    fasta, lengths = small_fasta
    five = tmp_path / "five.fa"  # 5 records, so that the ranks get 3 and 2 of them
    seqs = [r.sequence for r in __import__("pysam").FastxFile(str(fasta))]
    five.write_text("".join(f">rec{i}\n{seqs[i % 3][i * 100:i * 100 + 500 + 50 * i]}\n" for i in range(5)))
    multi = tmp_path / "multi.parquet"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           "29533", "-m", "hnet_seq.cli", "embed", str(five), "--checkpoint", str(ck2), "-o",
                           str(multi), "--chunks", "--window", "300", "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded 5 sequences" in proc.stderr
    single = tmp_path / "single.parquet"
    embed(ck2, [five], single, chunks=True, window=300, progress=False)
    for suffix in ("", ".chunks"):
        a = pq.read_table(str(tmp_path / f"multi{suffix}.parquet"))
        b = pq.read_table(str(tmp_path / f"single{suffix}.parquet"))
        assert a.column_names == b.column_names and a.num_rows == b.num_rows
        for col in a.column_names:
            x, y = a.column(col).to_pylist(), b.column(col).to_pylist()
            if col in ("embedding", "vector", "boundary_prob"):
                assert max(np.abs(np.asarray(u) - np.asarray(v)).max() for u, v in zip(x, y)) < 1e-4
            else:
                assert x == y, col
    assert sorted(p.name for p in tmp_path.iterdir() if "part" in p.name) == []


# ---- the overlapped runner and writer against plain implementations ----------------------
def _plain_results(runner, items) -> list[dict]:
    """What the runner must report, computed the plain way: one synchronous pass, boolean masks."""
    from hnet_seq.nn.packing import Packing

    im, n = runner.im, len(items)
    packing = Packing.from_lengths([len(it) for it in items])
    with runner._capture() as store:
        hidden, routing = im.model.backbone(im.model.embeddings(torch.cat([it.inputs for it in items]).long()),
                                            packing)
        nll = im.adapter.loss(im.model.lm_head(hidden), torch.roll(torch.cat([it.targets for it in items]), -1, 0))
    own = torch.tensor([it.own_start for it in items])
    pos, seq = [packing.positions()], [packing.seq_idx[0].long()]
    for r in routing:
        pos.append(pos[-1][r.boundary_mask])
        seq.append(seq[-1][r.boundary_mask])
    owned = [p >= own[q] for p, q in zip(pos, seq)]

    def split(t, q):
        return [a.numpy() for a in torch.split(t, torch.bincount(q, minlength=n).tolist())]

    out = [dict(bnd_pos=[], bnd_prob=[], bnd_vec=[], cand_pos=[], cand_prob=[]) for _ in items]
    for s in range(1, len(pos)):
        k, r = owned[s], routing[s - 1]
        cols = {"bnd_pos": pos[s][k], "bnd_prob": r.boundary_prob[r.boundary_mask][k], "bnd_vec": store[s][k]}
        for name, t in cols.items():
            for o, a in zip(out, split(t, seq[s][k])):
                o[name].append(a)
        kc = owned[s - 1]
        for name, t in (("cand_pos", pos[s - 1][kc]), ("cand_prob", r.boundary_prob[kc])):
            for o, a in zip(out, split(t, seq[s - 1][kc])):
                o[name].append(a)
    s, k = runner.pool_level, owned[runner.pool_level]
    sums = torch.zeros(n, store[s].shape[-1]).index_add_(0, seq[s][k], store[s][k])
    last = store[s][torch.cumsum(torch.bincount(seq[s], minlength=n), 0) - 1]
    nll_at = torch.roll(nll, 1, 0)
    nll_at[packing.starts_mask()] = float("nan")
    for i, (o, a) in enumerate(zip(out, split(nll_at[owned[0]], seq[0][owned[0]]))):
        o.update(pool_sum=sums[i].numpy(), pool_count=int((seq[s][k] == i).sum()), pool_last=last[i].numpy(), nll=a)
    return out


@pytest.mark.parametrize("pool_level", [0, 2])
def test_runner_stream_equals_plain_pass(ck2, small_fasta, pool_level):
    """Host-side splitting and device-side pooling without synchronisation give the plain pass's arrays, exactly."""
    from hnet_seq.inference.model import load
    from hnet_seq.inference.runner import Runner
    from hnet_seq.inference.tiling import WorkItem, batches_by_budget, plan_tiles
    from hnet_seq.modalities import get_adapter

    im = load(ck2, device="cpu")
    items = []
    for rec in get_adapter("dna").read_records([small_fasta[0]]):
        x = torch.from_numpy(rec.data)
        items += [WorkItem(x[t.start:t.end], t.own_start - t.start, x[t.start:t.end].long())
                  for t in plan_tiles(len(x), 1500, 300)]
    runner = Runner(im, chunk_vectors=True, probs=True, pool_level=pool_level, scores=True)
    got = [res for _, results in runner.stream(batches_by_budget(items, 3200)) for res in results]
    want = [o for group in batches_by_budget(items, 3200) for o in _plain_results(runner, group)]
    assert runner.batches > 2 and len(got) == len(want) == len(items)
    for res, o in zip(got, want):
        for name, value in o.items():
            a = getattr(res, name)
            for x, y in (zip(a, value) if isinstance(value, list) else [(a, value)]):
                assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True), name


def test_runner_launches_next_batch_before_handing_over(ck1):
    """stream() queues group i+1 before the caller sees group i's results (what overlaps GPU and host)."""
    from hnet_seq.inference.model import load
    from hnet_seq.inference.runner import Runner
    from hnet_seq.inference.tiling import WorkItem

    runner = Runner(load(ck1, device="cpu"), pool_level=0)
    launched = []
    launch = runner._launch
    runner._launch = lambda group: launched.append(group[0].tag) or launch(group)
    groups = [[WorkItem(torch.randint(0, 4, (50,), dtype=torch.uint8), 0, None, i)] for i in range(4)]
    seen = [(group[0].tag, list(launched)) for group, _ in runner.stream(groups)]
    assert seen == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2, 3]), (3, [0, 1, 2, 3])]


@pytest.mark.parametrize("fmt", ["parquet", "tsv"])
def test_background_writer_is_byte_identical(tmp_path, fmt):
    import pyarrow as pa

    from hnet_seq.inference.columns import vector_field
    from hnet_seq.inference.tables import TableWriter

    schema = pa.schema([pa.field("seq_id", pa.string()), pa.field("start", pa.int64()), vector_field("v", 3)])
    paths = []
    for background in (False, True):
        rng = np.random.default_rng(0)
        w = TableWriter(tmp_path / f"{background}.{fmt}", schema, {"k": 1}, fmt, rows_per_batch=50,
                        background=background)
        for i in range(7):
            k = 10 + 11 * i
            w.write_columns({"seq_id": [f"s{i}"] * k, "start": np.arange(k), "v": rng.random((k, 3), np.float32)})
            w.write_row(seq_id="x", start=i, v=np.ones(3, np.float32))
        paths.append(w.close())
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_background_writer_failure_leaves_no_file(tmp_path):
    import pyarrow as pa

    from hnet_seq.inference.outputs import Outputs
    from hnet_seq.inference.tables import TableWriter

    with pytest.raises(Exception):
        with Outputs() as outs:
            w = outs.add(TableWriter(tmp_path / "t.parquet", pa.schema([pa.field("a", pa.int64())]), rows_per_batch=2))
            for v in (1, 2, "not an int", 4, 5, 6):
                w.write_row(a=v)
    assert list(tmp_path.iterdir()) == []
