"""Training checkpoints: ``RUN_DIR/checkpoints/step_00000100/`` and a ``latest`` link.

A step directory is a normal model checkpoint (:func:`hnet_seq.checkpoint.save_checkpoint`:
``model.safetensors``, ``config.json``, ``modality.json``) plus ``train_state.pt``:

* ``step``, ``world_size``;
* ``optimizer``: AdamW state keyed by parameter names (``torch.distributed.checkpoint``'s
  full state dict), so it loads under DDP, FSDP2 or one process, and with another GPU count;
* ``schedule``: ``{"step": n}``; ``data``: every rank's data position (ints);
* ``rng``: every rank's torch / numpy / python / CUDA generator states, as tensors and lists
  of ints (no numpy objects), so that ``torch.load(..., weights_only=True)`` reads it all;
* ``progress``: counters for the logs (tokens seen, wall time so far).

The directory is written under a temporary name and renamed, then ``latest`` is re-pointed:
a crash at any moment leaves the previous checkpoint intact.  The last ``keep`` are kept.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import (LATEST, TRAIN_STATE, WEIGHTS, checkpoints_dir, latest_checkpoint, list_checkpoints,
                          read_safetensors, save_checkpoint, step_dir_name)
from ..errors import UserError
from ..runtime.distributed import barrier, gather_objects

# ---- RNG ---------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """This process's generator states, as tensors/ints/lists only (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": [int(x) for x in internal],
                   "gauss_next": None if gauss_next is None else float(gauss_next)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# ---- model and optimizer state (any wrapper) ---------------------------------------------------


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw)


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights on CPU under their plain names (a collective under FSDP2)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(full_state_dict=True, cpu_offload=True))


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, weights: dict,
                    optim_state: dict | None) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, weights, options=_options(full_state_dict=True, strict=True))
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=_options(full_state_dict=True))


class _StateView:
    """What :func:`save_checkpoint` needs from a model: its config and a (gathered) state dict."""

    def __init__(self, config, state: dict):
        self.config, self._state = config, state

    def state_dict(self):
        return self._state


# ---- directories -------------------------------------------------------------------------------


def _point_latest(root: Path, target: str) -> None:
    tmp = root / f".{LATEST}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, root / LATEST)


def save_train_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, config, modality: str,
                          options: dict, train_state: dict, keep: int = 3, is_main: bool = True,
                          weights: dict | None = None) -> Path:
    """Write ``checkpoints/step_N`` (rank 0 writes; ``weights`` already gathered on every rank).

    ``train_state`` must already hold every rank's data/RNG states (see the loop).
    """
    root = checkpoints_dir(run_dir)
    final = root / step_dir_name(step)
    if not is_main:
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, _StateView(config, weights), modality, options, train_state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _point_latest(root, final.name)
    for old_step, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_train_state(checkpoint: str | Path) -> dict:
    path = Path(checkpoint) / TRAIN_STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: cannot read training state ({str(e).splitlines()[0]})") from None


def read_weights(checkpoint: str | Path, config) -> dict[str, torch.Tensor]:
    state = read_safetensors(Path(checkpoint) / WEIGHTS)
    if config.tie_embeddings:
        state.setdefault("lm_head.weight", state["embeddings.weight"])
    return state


# ---- a run's whole state -----------------------------------------------------------------------


def save_run(run_dir: Path, step: int, model, optimizer, schedule, data, model_cfg, modality, keep: int,
             info, progress: dict) -> Path:
    """``checkpoints/step_N`` of a run (collective: call on every rank): the weights, AdamW,
    the schedule, every rank's data position and RNG, and ``progress`` (counters for the logs)."""
    weights = full_model_state(model)
    optim = full_optimizer_state(model, optimizer)
    data_states = gather_objects(data.state_dict(), info)
    rngs = gather_objects(rng_state(), info)
    train_state = {"step": step, "world_size": info.world, "optimizer": optim, "schedule": schedule.state_dict(),
                   "data": data_states, "rng": rngs, "progress": progress}
    path = save_train_checkpoint(run_dir, step, model, model_cfg, modality.name, dict(modality.options), train_state,
                                 keep, info.is_main, weights)
    barrier()
    return path


def load_run(path: Path, model, optimizer, schedule, data, model_cfg, info) -> tuple[int, dict]:
    """Load what :func:`save_run` wrote into the run's parts; ``(step, progress)``.

    With another number of ranks, every rank takes rank 0's data position and keeps its RNG.
    """
    saved_cfg = json.loads((path / "config.json").read_text())
    if saved_cfg != model_cfg.to_dict():
        diff = next(k for k in model_cfg.to_dict() if saved_cfg.get(k) != model_cfg.to_dict()[k])
        raise UserError(f"resume=True: the model config differs from the checkpoint's (field 'model.{diff}'); "
                        f"{path}", params=("resume",))
    state = read_train_state(path)
    weights = read_weights(path, model_cfg)
    load_full_state(model, optimizer, weights, state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    same_world = int(state["world_size"]) == info.world
    data.load_state_dict(state["data"][info.rank if same_world else 0])
    if same_world:
        set_rng_state(state["rng"][info.rank])
    return int(state["step"]), state.get("progress", {})


__all__ = ["full_model_state", "full_optimizer_state", "latest_checkpoint", "list_checkpoints",
           "load_full_state", "load_run", "read_train_state", "read_weights", "rng_state", "save_run",
           "save_train_checkpoint", "set_rng_state", "step_dir_name"]
