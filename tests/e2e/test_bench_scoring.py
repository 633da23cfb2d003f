"""The variant-scoring benches run end to end on CPU (micro model): the profile of shared-prefix
against full scoring, and the shared-prefix rows of ``bench/inference.py --shared-only``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*argv):
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True, timeout=300)


def test_profile_scoring_compares_both_modes_on_the_same_variants(tmp_path):
    _bench("bench/profile_scoring.py", "--device", "cpu", "--size", "micro", "--variants", "3", "--window", "256",
           "--tune-steps", "1", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert [r["share_prefix"] for r in rows] == [False, True]
    assert all(r["variants"] == 3 and r["windows"] == 6 and r["top_cpu_ops"] for r in rows)


def test_shared_only_json_holds_every_row(tmp_path):
    out = tmp_path / "shared.json"
    _bench("bench/inference.py", "--device", "cpu", "--size", "micro", "--shared-only", "--variants", "2",
           "--window", "256", "--saturate-bp", "4", "--tune-steps", "1", "--json", str(out))
    rows = json.loads(out.read_text())["shared"]
    assert len(rows) == 8 and {(r["rc"], r["share_prefix"]) for r in rows} == {(a, b) for a in (0, 1) for b in (0, 1)}
