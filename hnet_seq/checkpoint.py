"""Model files: our checkpoint directories and the official goombalab ``.pt`` checkpoints.

A checkpoint directory (written by ``hnet-seq train``) holds:

* ``model.safetensors`` — the weights (official key layout: ``embeddings``, ``backbone``, ``lm_head``);
* ``config.json`` — the model config (``hnet-seq info --checkpoint DIR`` reads it);
* ``modality.json`` — ``{"name": ..., "options": {...}}``, how inputs were encoded;
* ``train_state.pt`` — optimiser, schedule, data position and RNG (``weights_only=True`` loadable).

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import HNetConfig, config_from_dict, load_config
from .errors import UserError
from .model import HNetLM

WEIGHTS, CONFIG, MODALITY, TRAIN_STATE = "model.safetensors", "config.json", "modality.json", "train_state.pt"


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def build_model(cfg: HNetConfig, modality: str | None = None, options: dict | None = None, device=None):
    """The model and its modality adapter; the adapter supplies embedding and head."""
    from .modalities import get_adapter

    name = modality or cfg.modality
    adapter = get_adapter(name, **(options or {}))
    d = cfg.d_model[0]
    model = HNetLM(cfg, embeddings=adapter.make_embedding(d), lm_head=adapter.make_head(d), device=device)
    model.modality_info = {"name": name, "options": dict(options or {})}  # what save_pretrained writes
    return model.to(device) if device is not None else model, adapter


def save_checkpoint(directory: str | Path, model: HNetLM, modality: str, options: dict[str, Any],
                    train_state: dict | None = None) -> None:
    """Write a checkpoint directory (each file atomically)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)  # safetensors refuses shared storage; tying restores it
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(state, tmp))
    atomic_write_text(directory / CONFIG, json.dumps(model.config.to_dict(), indent=2) + "\n")
    atomic_write_text(directory / MODALITY, json.dumps({"name": modality, "options": options}, indent=2) + "\n")
    if train_state is not None:
        atomic_write(directory / TRAIN_STATE, lambda tmp: torch.save(train_state, tmp))


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or, for a run directory of ``hnet-seq train``, its latest checkpoint."""
    path = Path(path)
    if path.is_dir() and not (path / WEIGHTS).exists() and (path / "checkpoints").is_dir():
        from .train.checkpointing import latest_checkpoint  # train imports this module

        latest = latest_checkpoint(path)
        if latest is None:
            raise UserError(f"{path}: run directory without a complete checkpoint yet")
        return latest
    return path


def load_model(checkpoint: str | Path, config: str | Path | None = None, device="cpu",
               modality: str | None = None):
    """Load ``(model, adapter)`` from our checkpoint directory or an official ``.pt`` + JSON config.

    A run directory stands for its latest checkpoint; a Hub repo id (``cartesia-ai/hnet_2stage_L``)
    for its snapshot (:mod:`hnet_seq.hub`).  ``config`` may be a packaged name (``hnet_2stage_L``);
    an official ``.pt`` named like a packaged config needs none.  Official checkpoints are
    byte-level language models; ``modality`` defaults to ``bytes``.
    """
    from .hub import config_named_by, resolve_config, resolve_model

    checkpoint = resolve_checkpoint(resolve_model(checkpoint))
    config = resolve_config(config) if config is not None else None
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no such checkpoint")
    if checkpoint.is_dir():
        if not (checkpoint / WEIGHTS).exists():
            raise UserError(f"{checkpoint}: not a checkpoint directory (no {WEIGHTS})")
        from safetensors.torch import load_file

        cfg = load_config(config or checkpoint / CONFIG)
        meta = json.loads((checkpoint / MODALITY).read_text()) if (checkpoint / MODALITY).exists() else {}
        model, adapter = build_model(cfg, modality or meta.get("name"), meta.get("options"))
        state = load_file(checkpoint / WEIGHTS)
        if cfg.tie_embeddings:
            state.setdefault("lm_head.weight", state["embeddings.weight"])
    else:
        config = config or config_named_by(checkpoint)
        if config is None:
            raise UserError(f"{checkpoint}: an official .pt checkpoint needs --config (its JSON, or a packaged "
                            "name such as hnet_2stage_L: hnet-seq info --list-configs)")
        cfg = load_config(config)
        model, adapter = build_model(cfg, modality or "bytes")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"{checkpoint}: cannot read checkpoint ({str(e).splitlines()[0]})") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise UserError(f"{checkpoint}: not a state_dict checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise UserError(f"{checkpoint}: weights do not match the config: {first}") from None
    return model.to(device).eval(), adapter


def config_from_checkpoint(checkpoint: str | Path) -> HNetConfig:
    return config_from_dict(json.loads((resolve_checkpoint(checkpoint) / CONFIG).read_text()))
