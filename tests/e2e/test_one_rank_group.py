"""The data-parallel code paths with a one-rank process group (``HNET_SEQ_FORCE_DISTRIBUTED=1``).

With one GPU the only way to run the NCCL paths (process-group start, DDP/FSDP2 wrapping, the
objective's all-reduces, sharded checkpoints) is a group of one.  On CPU the same run goes
through gloo.  Either way the losses equal a plain single-process run on the same data.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hnet_seq.train.metrics import read_metrics
from hnet_seq.runtime.distributed import FORCE_ENV
from helpers import free_port, micro_config


def _train(cfg, run, *extra, torchrun: bool, backend: str | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", FORCE_ENV: "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                "--master_port", str(free_port())] if torchrun else [sys.executable]
    proc = subprocess.run([*launcher, "-m", "hnet_seq.cli", "train", "--config", str(cfg), "--out", str(run),
                           *extra], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_metrics(run)
    assert [r["backend"] for r in records if r["kind"] == "start"] == [backend]  # the group was joined
    return [r["loss"] for r in records if r["kind"] == "train"]


def _check(tmp_path, device: str, backend: str, rel: float):
    cfg = micro_config(tmp_path, steps=4, checkpoint={"every": 2}, train={"steps": 4, "seed": 0, "threads": 1,
                                                                         "device": device})
    plain = _train(cfg, tmp_path / "plain", torchrun=False)
    for parallel in ("ddp", "fsdp"):
        run = tmp_path / parallel
        losses = _train(cfg, run, "--set", f"train.parallel={parallel}", torchrun=True, backend=backend)
        assert losses == pytest.approx(plain, rel=rel), parallel
        state = torch.load(run / "checkpoints" / "latest" / "train_state.pt", weights_only=True)
        assert state["world_size"] == 1


@pytest.mark.slow
def test_one_rank_gloo_group_equals_one_process(tmp_path):
    _check(tmp_path, "cpu", "gloo", rel=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_one_rank_nccl_group_equals_one_process(tmp_path):
    # bf16 autocast and atomics in the fast kernels: equal within bf16 round-off, not bitwise.
    _check(tmp_path, "cuda", "nccl", rel=2e-2)
