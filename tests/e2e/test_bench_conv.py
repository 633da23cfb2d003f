"""``bench/conv_backward.py`` runs end to end in Triton's interpreter on CPU: another version of
the conv kernels (here the previous, single-kernel backward) beside this tree's, each checked
against the reference before it is timed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The last version of conv_triton.py with the single-kernel backward (it recomputed u per tap).
SINGLE_KERNEL_BACKWARD = "6c17f35"


def test_conv_bench_times_two_versions_that_both_match_the_reference(tmp_path):
    pytest.importorskip("triton")
    before = tmp_path / "conv_triton_before.py"
    try:
        before.write_bytes(subprocess.run(["git", "show", f"{SINGLE_KERNEL_BACKWARD}:hnet_seq/kernels/conv_triton.py"],
                                          cwd=ROOT, check=True, capture_output=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs the git history of the repository")
    done = subprocess.run([sys.executable, "bench/conv_backward.py", "--device", "cpu", "--tokens", "40",
                           "--channels", "20", "--sequences", "3", "--warmup", "0", "--iters", "1",
                           "--before", str(before)], cwd=ROOT, env=os.environ | {"TRITON_INTERPRET": "1"},
                          check=True, capture_output=True, text=True, timeout=300)
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith(("| before", "| this tree"))]
    assert [r[0] for r in rows] == ["| before (`conv_triton_before.py`)", "| this tree"]
    assert all(float(r[-1].rstrip(" |")) < 1e-2 for r in rows)  # bf16 gradients against the reference
