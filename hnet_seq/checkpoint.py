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
import re
from pathlib import Path
from typing import Any

import torch

from .runtime.atomic import atomic_write, atomic_write_text  # noqa: F401  (re-exported for train/)
from .config import HNetConfig, load_config, read_mapping
from .errors import UserError
from .model import HNetLM

WEIGHTS, CONFIG, MODALITY, TRAIN_STATE = "model.safetensors", "config.json", "modality.json", "train_state.pt"


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


# ---- run directories (``RUN/checkpoints/step_NNNNNNNN``, ``latest`` -> the newest) ----------

STEP_DIR = re.compile(r"^step_(\d+)$")
LATEST = "latest"


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / TRAIN_STATE).exists() and (p / WEIGHTS).exists():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` points to, else the newest complete one, else None."""
    link = checkpoints_dir(run_dir) / LATEST
    if link.exists() and (link / TRAIN_STATE).exists():
        return link.resolve()
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or, for a run directory of ``hnet-seq train``, its latest checkpoint."""
    path = Path(path)
    if path.is_dir() and not (path / WEIGHTS).exists() and (path / "checkpoints").is_dir():
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
    byte-level language models; ``modality`` defaults to ``bytes``.  Every file is read and
    checked before the model is allocated, so a bad file costs no model build.
    """
    from .hub import config_named_by, resolve_config, resolve_model

    checkpoint = resolve_checkpoint(resolve_model(checkpoint))
    config = resolve_config(config) if config is not None else None
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no such checkpoint")
    if checkpoint.is_dir():
        if not (checkpoint / WEIGHTS).exists():
            raise UserError(f"{checkpoint}: not a checkpoint directory (no {WEIGHTS})")
        cfg = load_config(config or checkpoint / CONFIG)
        meta = read_mapping(checkpoint / MODALITY) if (checkpoint / MODALITY).exists() else {}
        state = read_safetensors(checkpoint / WEIGHTS)
        if cfg.tie_embeddings and "embeddings.weight" in state:
            state.setdefault("lm_head.weight", state["embeddings.weight"])
        modality = modality or meta.get("name")
        options = meta.get("options")
    else:
        config = config or config_named_by(checkpoint)
        if config is None:
            raise UserError(f"{checkpoint}: an official .pt checkpoint needs config=PATH (its JSON, or a packaged "
                            "name such as hnet_2stage_L)", params=("config",))
        cfg = load_config(config)
        state = read_torch_weights(checkpoint)
        modality, options = modality or "bytes", None
    model, adapter = build_model(cfg, modality, options)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise UserError(f"{checkpoint}: weights do not match the config: {first}") from None
    return model.to(device).eval(), adapter


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; truncated, empty or foreign files are a :class:`UserError`.

    safetensors never unpickles, so a pickle in its place is only refused, never run.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({_first_line(e)}); truncated or not "
                        "written by hnet-seq?") from None


def read_torch_weights(path: str | Path) -> dict:
    """A state dict from an official ``.pt`` (``weights_only``: a malicious pickle is refused, not run)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle/zip; all mean "bad file"
        raise UserError(f"{path}: cannot read checkpoint ({_first_line(e)})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a state_dict checkpoint")
    return state
