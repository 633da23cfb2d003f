"""What ``hnet-seq train`` leaves: a model checkpoint that ``info`` and ``plot`` read, for DNA and,
through the same loop, bytes and audio."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hnet_seq.train import load_run_config

from helpers import invoke, micro_config

# ---- the checkpoint is a model checkpoint --------------------------------------------------------


def test_checkpoint_files_info_and_plot(tmp_path):
    cfg = micro_config(tmp_path, steps=4, checkpoint={"every": 2, "keep": 1})
    run = tmp_path / "run"
    result = invoke("train", "--config", str(cfg), "--out", str(run))
    assert result.exit_code == 0, result.output
    assert "held-out" in result.output and "bits/base" in result.output
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["latest", "step_00000004"]  # keep: 1
    latest = run / "checkpoints" / "latest"
    for name in ("model.safetensors", "config.json", "modality.json", "train_state.pt"):
        assert (latest / name).is_file()
    state = torch.load(latest / "train_state.pt", weights_only=True)
    assert state["step"] == 4 and state["schedule"] == {"step": 4} and state["world_size"] == 1
    assert isinstance(state["rng"][0]["numpy"]["keys"], torch.Tensor)
    assert json.loads((latest / "modality.json").read_text())["name"] == "dna"
    info = invoke("info", "--checkpoint", str(latest))
    assert info.exit_code == 0, info.output
    assert "1-stage H-Net" in info.output
    from_run_dir = invoke("info", "--checkpoint", str(run))  # the run directory means its latest
    assert from_run_dir.exit_code == 0, from_run_dir.output
    assert "step_00000004" in from_run_dir.output and "1-stage H-Net" in from_run_dir.output
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    refused = invoke("info", "--checkpoint", str(empty))
    assert refused.exit_code == 2 and "without a complete checkpoint" in refused.output
    plot = invoke("plot", str(run))
    assert plot.exit_code == 0, plot.output
    assert (run / "plots" / "run.png").stat().st_size > 1000


# ---- other modalities through the same loop ---------------------------------------------------------


@pytest.mark.parametrize("modality, files, unit", [
    ("bytes", ["text/udhr2/eng.txt", "text/udhr2/rus.txt", "text/udhr2/amh.txt"], "byte"),
    ("audio", ["audio/codec2/big_dog.wav", "audio/alsa"], "sample"),
])
def test_bytes_and_audio_train_and_evaluate(tmp_path, shared_data, modality, files, unit):
    from hnet_seq.train import train

    paths = [str(shared_data / f) for f in files]
    for p in paths:
        if not Path(p).exists():
            pytest.skip(f"{p} not in the shared data")
    options = {"audio": {"sample_rate": 8000, "frame_size": 40, "mixtures": 2}}.get(modality, {})
    seq = {"bytes": 256, "audio": 100}[modality]
    cfg = load_run_config(str(micro_config(tmp_path)), [
        f"modality.name={modality}", f"modality.options={json.dumps(options)}", f"data.seq_len={seq}",
        f"data.tokens_per_batch={4 * seq}", f"data.eval_tokens={2 * seq}", "model.vocab_size=256",
        "train.steps=2", "logging.eval_every=2", "checkpoint.every=0"])
    result = train(cfg, tmp_path / "run", data_paths=paths, quiet=True)
    assert result.unit == unit and result.step == 2
    assert math.isfinite(result.heldout_bits_per_unit) and result.heldout_bits_per_unit > 0
    assert json.loads((result.checkpoint / "modality.json").read_text()) == {"name": modality, "options": options}
