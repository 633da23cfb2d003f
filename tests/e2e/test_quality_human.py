"""bench/quality_human.py: the human GRCh37 bench end to end on the shipped excerpt, and its pieces."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXCERPT = ROOT / "tests" / "data" / "human_excerpt"
sys.path.insert(0, str(ROOT / "bench"))


def test_acgt_runs_cut_at_every_n_and_drop_short_runs():
    import _human as h

    t = h.tokens_of("NNACGTACGTNACGNNNNGGGGGGGGN")
    assert h.acgt_runs(t, 4) == [(2, 10), (18, 26)]
    assert h.acgt_runs(t, 1) == [(2, 10), (11, 14), (18, 26)]


def test_auroc_matches_the_pairwise_definition():
    import _human as h

    rng = np.random.default_rng(1)
    s, y = rng.integers(0, 5, 60).astype(float), rng.random(60) < 0.4  # ties on purpose
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[y] for b in s[~y]]
    got = h.auroc(s, y, boots=200)
    assert got["auroc"] == pytest.approx(np.mean(pairs))
    assert got["ci95"][0] <= got["auroc"] <= got["ci95"][1]


def test_maf_human_rows_and_chr22_reference_match_the_1000g_ref_alleles(tmp_path):
    import _human as h

    blocks = h.maf_blocks(EXCERPT / "chr22_epo_primates.maf.gz")
    assert len(blocks) == 30 and all(len(b.human) == len(b.diverged) for b in blocks)
    assert 0 < sum(b.diverged.sum() for b in blocks) < 0.05 * sum(len(b.human) for b in blocks)
    ref = h.chr22_reference(blocks, 51_304_566, tmp_path / "22.fa")
    got = h.af_classes(EXCERPT / "chr22_1000g.vcf.gz", ref, tmp_path / "classes.vcf")
    assert got["counts"]["ref_match"] > 100 and got["counts"]["ref_mismatch"] == 0
    assert set(got["labels"].values()) == {True, False}


def test_smoke_runs_the_whole_plan_and_counts_acgt_only(tmp_path):
    """sweep -> main at the best LR + a diagnostic -> final scoring, chunks, AUROCs -> report."""
    out = tmp_path / "qh"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "quality_human.py"), "--smoke", "--out-dir", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "human" / "results.json").read_text())
    assert set(res["models"]) == {"hnet", "mamba2"} and len(res["sweep"]) == 4 and "ratio-0.1" in res["diagnostics"]
    for model in ("hnet", "mamba2"):
        rows = {r["lr"]: r["bits"] for r in res["sweep"].values() if r["model"] == model}
        assert res["best_lr"][model] == min(rows, key=rows.get) == res["models"][model]["lr"]
    heldout = (out / "human" / "data" / "heldout_chrX.fa").read_text().splitlines()
    acgt = sum(len(line) for line in heldout if not line.startswith(">"))
    assert "N" not in "".join(line for line in heldout if not line.startswith(">"))
    for m in res["models"].values():
        # every A/C/G/T but the first of each record (no context) is scored, no N ever
        assert m["heldout_x"]["bases"] == acgt - sum(1 for line in heldout if line.startswith(">"))
        assert math.isfinite(m["heldout_22"]["bits"]) and 0 < m["heldout_x"]["bits"] < 3
        for key in ("heldout_x", "heldout_22"):  # the pieces add up to the whole
            pieces = m[key]["pieces"].values()
            assert sum(n for n, _ in pieces) == m[key]["bases"]
            assert math.isclose(sum(n * b for n, b in pieces) / m[key]["bases"], m[key]["bits"], rel_tol=1e-9)
        assert m["variants"]["pathogenic_vs_common"]["positives"] + m["variants"]["pathogenic_vs_common"]["negatives"] == 97
    chunks = res["models"]["hnet"]["chunks"]
    assert chunks["counts"]["human/chimp diverged base"][1] > 0
    assert chunks["counts"]["low complexity (symmetric DUST, level 20)"][1] > 0

    # the chunk tables again from the saved boundary tracks alone, as on a machine without the model
    final = out / "human" / "final"
    assert (final / "hnet-boundaries.npz").exists() and not (final / "mamba2-boundaries.npz").exists()
    scored = json.loads((final / "hnet.json").read_text())
    (final / "hnet.json").write_text(json.dumps({k: v for k, v in scored.items() if k != "chunks"}))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "quality_human.py"), "--smoke", "--out-dir", str(out),
                           "--phases", "chunks"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "human" / "results.json").read_text())["models"]["hnet"]["chunks"] == chunks
    # and with --report-only, from a copied-back results.json and the tracks beside it (docs/data)
    copy = tmp_path / "copied" / "human"
    (copy / "final").mkdir(parents=True)
    shutil.copy(final / "hnet-boundaries.npz", copy / "final")
    stripped = json.loads((out / "human" / "results.json").read_text())
    del stripped["models"]["hnet"]["chunks"]
    (copy / "results.json").write_text(json.dumps(stripped))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "quality_human.py"), "--report-only", "--phases",
                           "chunks", "--out-dir", str(copy.parent)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((copy / "results.json").read_text())["models"]["hnet"]["chunks"] == chunks
    section = (out / "docs" / "results.md").read_text()
    assert "<!-- human:begin -->" in section and "Learning-rate sweep" in section
    assert "Held-out chrX bits/base by scored piece" in section
    sessions = json.loads((out / "human" / "sessions.json").read_text())
    assert len(sessions) == 1 and res["device"] == next(iter(sessions.values()))["device"]

    # a main run whose scoring a lost machine never wrote is reported as cut off, not dropped
    (out / "human" / "final" / "hnet.json").unlink()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "quality_human.py"), "--smoke", "--out-dir", str(out),
                           "--phases", "report"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "human" / "results.json").read_text())
    assert set(res["models"]) == {"mamba2"} and set(res["unfinished"]) == {"hnet"}
    assert "| hnet |" in (out / "docs" / "results.md").read_text().split("cut off before their end")[1]
    assert len(json.loads((out / "human" / "sessions.json").read_text())) == 1  # a report is not a session


def test_a_model_with_a_given_lr_starts_its_main_run_without_waiting_for_its_sweep(tmp_path):
    import quality_human as qh

    args = qh.parse_args(["--smoke", "--out-dir", str(tmp_path), "--best-lr", "hnet=0.001"])
    plan = qh.make_plan(args, {"heldout_x": "x.fa"})
    jobs = {j.id: j for j in plan.jobs(["sweep", "main", "final"])}
    assert jobs["train:main/hnet"].after == () and jobs["train:diag/ratio-0.1"].after == ()
    mamba_sweep = {f"train:{s['id']}" for s in plan.sweep if s["model"] == "mamba2"}
    assert len(mamba_sweep) == 2 and set(jobs["train:main/mamba2"].after) == mamba_sweep


def test_fetch_names_a_missing_deb_folder_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "fetch_grch37.py"), "--cache", str(tmp_path),
                           "--debs", str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--debs" in proc.stderr


def _job_child(tmp_path, name: str, sleep: float = 0.0, oom_first: bool = False) -> list[str]:
    """A child that appends ``name`` to order.txt; with ``oom_first`` its first launch dies of CUDA OOM."""
    flag, order = tmp_path / f"{name}.failed_once", tmp_path / "order.txt"
    code = (f"import pathlib, sys, time; f = pathlib.Path({str(flag)!r})\n"
            f"if {oom_first} and not f.exists():\n    f.touch(); print('torch.OutOfMemoryError: CUDA out of memory'); sys.exit(1)\n"
            f"time.sleep({sleep})\n"
            f"open({str(order)!r}, 'a').write({name!r} + '\\n')")
    return [sys.executable, "-c", code]


def _job(tmp_path, name, after=(), prepare=lambda: True, **child):
    import _jobs

    return _jobs.Job(id=name, after=after, prepare=prepare, finished=lambda: False,
                     argv=_job_child(tmp_path, name, **child), run_here=lambda: None, log=tmp_path / f"{name}.log")


def test_jobs_start_when_their_own_dependencies_end(tmp_path):
    """b needs only a, so it ends before c, which needs the slow job; a job with nothing to do is skipped."""
    import _jobs

    jobs = [_job(tmp_path, "slow", sleep=1.5), _job(tmp_path, "a"), _job(tmp_path, "b", after=("a",)),
            _job(tmp_path, "c", after=("slow",)), _job(tmp_path, "never", after=("a",), prepare=lambda: False)]
    states = _jobs.run_jobs(jobs, workers=4, cwd=tmp_path, poll_s=0.05)
    assert states == {"slow": "done", "a": "done", "b": "done", "c": "done", "never": "skipped"}
    assert (tmp_path / "order.txt").read_text().split() == ["a", "b", "slow", "c"]


def test_a_job_out_of_gpu_memory_runs_again_once_with_fewer_beside_it(tmp_path):
    """big dies of OOM beside slow and ends_badly; its retry waits until only one of them is left."""
    import _jobs

    jobs = [_job(tmp_path, "slow", sleep=1.5), _job(tmp_path, "big", oom_first=True), _job(tmp_path, "ends_badly")]
    jobs[2].argv = jobs[2].argv[:2] + [jobs[2].argv[2].replace("time.sleep(0.0)", "time.sleep(0.5)") + "; sys.exit(3)"]
    states = _jobs.run_jobs(jobs, workers=3, cwd=tmp_path, poll_s=0.05)
    assert states == {"slow": "done", "big": "done", "ends_badly": "failed"}
    assert jobs[1].max_beside == 1  # two were beside it when it failed
    assert (tmp_path / "order.txt").read_text().split() == ["ends_badly", "big", "slow"]


def test_a_job_out_of_gpu_memory_runs_again_only_once(tmp_path):
    import _jobs

    jobs = [_job(tmp_path, "broken")]
    jobs[0].argv = [sys.executable, "-c", "print('CUDA out of memory'); raise SystemExit(1)"]  # every time
    assert _jobs.run_jobs(jobs, workers=2, cwd=tmp_path, poll_s=0.05) == {"broken": "failed"}
    assert (tmp_path / "broken.log").read_text().count("out of memory") == 2  # once more, not forever
