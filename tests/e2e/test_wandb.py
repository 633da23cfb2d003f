"""Optional Weights & Biases logging (``logging.wandb``), through the real wandb library in its
offline mode (no network): off by default and not even imported; on, the run's metrics land in
a W&B run kept across ``--resume``; bad settings are one-line config errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import micro_config

pytest.importorskip("wandb")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true"}


def _train(*args: str, pre: str = "") -> subprocess.CompletedProcess:
    code = (f"import sys; {pre}\nfrom hnet_seq.cli.main import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('WANDB_IMPORTED', 'wandb' in sys.modules); raise")
    return subprocess.run([sys.executable, "-c", code, "train", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)


def test_off_by_default_and_not_imported(tmp_path):
    run = tmp_path / "run"
    proc = _train("--config", str(micro_config(tmp_path, steps=2)), "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WANDB_IMPORTED False" in proc.stdout
    assert not (run / "wandb").exists() and not (run / "wandb_id").exists()


def test_offline_run_gets_the_metrics_and_resume_continues_it(tmp_path):
    run = tmp_path / "run"
    cfg = micro_config(tmp_path, steps=4, logging={"wandb": True, "wandb_mode": "offline", "eval_every": 4})
    proc = _train("--config", str(cfg), "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = (run / "wandb_id").read_text().strip()
    runs = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1
    log = next(runs[0].glob(f"run-{run_id}.wandb")).read_bytes()
    for key in (b"train/bits_per_unit", b"eval/bits_per_unit", b"train/compression_stage1"):
        assert key in log
    again = _train("--resume", "--out", str(run), "--set", "train.steps=6")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run / "wandb_id").read_text().strip() == run_id
    assert len(sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))) == 2  # the same W&B run, resumed


def test_bad_settings_are_one_line_errors(tmp_path):
    bad = _train("--config", str(micro_config(tmp_path, logging={"wandb": True, "wandb_mode": "cloud"})),
                 "--out", str(tmp_path / "r1"))
    assert bad.returncode == 2 and "logging.wandb_mode" in bad.stderr and "Traceback" not in bad.stderr
    missing = _train("--config", str(micro_config(tmp_path, logging={"wandb": True, "wandb_mode": "offline"})),
                     "--out", str(tmp_path / "r2"), pre="sys.modules['wandb'] = None")
    assert missing.returncode == 2 and "pip install wandb" in missing.stderr
