"""Failures during ``hnet-seq train`` on CPU and resuming from them: a NaN loss stops at the last good
checkpoint (or is skipped), Ctrl-C saves a checkpoint, and a resume after SIGKILL is bitwise exact."""
from __future__ import annotations

import math
import signal
from pathlib import Path

import torch

from hnet_seq.train.metrics import read_metrics

from helpers import cli_popen, invoke, micro_config, train_steps, wait_for

# ---- failures during training --------------------------------------------------------------------


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
    cfg = micro_config(tmp_path, steps=8, train={"inject_nan_at_step": 5})
    run = tmp_path / "run"
    result = invoke("train", "--config", str(cfg), "--out", str(run))
    assert result.exit_code == 3, result.output
    err = result.output.strip().splitlines()[-1]
    assert "step 5: loss is nan" in err and "step_00000003" in err, err
    assert (run / "checkpoints" / "latest").resolve().name == "step_00000003"
    assert [r["step"] for r in read_metrics(run) if r["kind"] == "train"] == [1, 2, 3, 4]


def test_nan_loss_skipped_when_configured(tmp_path):
    cfg = micro_config(tmp_path, steps=5, train={"inject_nan_at_step": 2, "on_nonfinite": "skip"})
    run = tmp_path / "run"
    result = invoke("train", "--config", str(cfg), "--out", str(run))
    assert result.exit_code == 0, result.output
    assert "step 2: loss is nan; update skipped" in result.output
    recs = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert [r["skipped"] for r in recs] == [False, True, False, False, False]
    assert all(math.isfinite(r["loss"]) for r in recs if not r["skipped"])


def test_ctrl_c_saves_a_checkpoint_and_resumes(tmp_path):
    cfg = micro_config(tmp_path, steps=500, checkpoint={"every": 0})
    run = tmp_path / "run"
    proc = cli_popen("train", "--config", str(cfg), "--out", str(run))
    wait_for(lambda: len(train_steps(run)) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT at step" in err and "--resume" in err and "Traceback" not in err
    latest = (run / "checkpoints" / "latest").resolve()
    stopped = int(latest.name.split("_")[1])
    assert stopped == train_steps(run)[-1] >= 2
    again = invoke("train", "--out", str(run), "--resume", "--steps", str(stopped + 2))
    assert again.exit_code == 0, again.output
    assert train_steps(run) == list(range(1, stopped + 3))


# ---- exact resume ----------------------------------------------------------------------------------

DETERMINISTIC = ("loss", "nll", "bits_per_unit", "ratio_loss", "compression", "boundary_prob", "lr", "grad_norm",
                 "units", "positions")


def _history(run: Path) -> list[dict]:
    return [{k: r.get(k) for k in ("kind", "step", *DETERMINISTIC)} for r in read_metrics(run)
            if r["kind"] in ("train", "eval")]


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
    """Uninterrupted (in this process) == killed with SIGKILL after a checkpoint (subprocess) + resumed."""
    steps = 10
    cfg = micro_config(tmp_path, steps=steps, checkpoint={"every": 3, "keep": 2})
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = cli_popen("train", "--config", str(cfg), "--out", str(killed))
    assert invoke("train", "--config", str(cfg), "--out", str(full)).exit_code == 0
    wait_for(lambda: (killed / "checkpoints" / "step_00000003" / "train_state.pt").exists(), proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert train_steps(killed)[-1] < steps
    resumed = invoke("train", "--config", str(cfg), "--out", str(killed), "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = _history(full), _history(killed)
    assert [r["step"] for r in a if r["kind"] == "train"] == list(range(1, steps + 1))
    assert a == b  # every logged float equal, exactly
    from safetensors.torch import load_file

    wa = load_file(full / "checkpoints" / "latest" / "model.safetensors")
    wb = load_file(killed / "checkpoints" / "latest" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
