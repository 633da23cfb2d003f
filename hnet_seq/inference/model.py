"""Load a model for inference: :func:`load` → :class:`InferenceModel` (model, adapter, device, precision)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hnet_seq.checkpoint import load_model
from hnet_seq.errors import UserError
from hnet_seq.runtime import device as _device
from hnet_seq.runtime.distributed import dist_info


@dataclass
class InferenceModel:
    """A loaded model, its modality adapter, device and compute precision."""

    model: Any
    adapter: Any
    device: torch.device
    precision: str = "float32"  # or "bfloat16" (autocast on CUDA)
    checkpoint: str = ""

    @property
    def config(self):
        return self.model.config

    @property
    def num_levels(self) -> int:
        """Hierarchy levels: 1 + the number of chunking stages."""
        return len(level_modules(self.model))

    @property
    def num_stages(self) -> int:
        return self.num_levels - 1

    def level_dim(self, level: int, layer: str = "output") -> int:
        d = self.config.d_model
        if layer == "output" or level == 0:
            return d[level]
        return d[level - 1]

    def autocast(self):
        return _device.autocast(self.device, self.precision)

    @property
    def vocab_size(self) -> int | None:
        return getattr(self.adapter, "vocab_size", None) if hasattr(self.adapter, "table_size") else None


def load(checkpoint: str | Path | InferenceModel, config: str | Path | None = None, *, device: str | None = None,
         modality: str | None = None, precision: str = "auto") -> InferenceModel:
    """Load our checkpoint directory, or an official ``.pt`` with its JSON ``config``.

    ``precision``: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``float32`` or ``bfloat16``.
    An :class:`InferenceModel` passes through unchanged.
    """
    if isinstance(checkpoint, InferenceModel):
        return checkpoint
    dist = dist_info()
    device = device or _device.default_device()
    if device == "cuda" and dist.world > 1:
        device = f"cuda:{dist.local_rank}"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"device={device}: not a device (use cpu, cuda or cuda:N)", params=("device",)) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device}: CUDA is not available on this machine (use device=cpu)",
                        params=("device",))
    try:
        precision = _device.resolve_precision(precision, dev)
    except ValueError:
        raise UserError(f"precision={precision}: choose auto, float32 or bfloat16", params=("precision",)) from None
    model, adapter = load_model(checkpoint, config, device=dev, modality=modality)
    model.requires_grad_(False)
    return InferenceModel(model, adapter, dev, precision, str(checkpoint))


def level_modules(model) -> list:
    """The ``HNet`` module of every hierarchy level, outermost first."""
    out, h = [], model.backbone
    while True:
        out.append(h)
        if h.is_innermost:
            return out
        h = h.main_network


def default_batch_tokens(device: torch.device) -> int:
    return 65536 if device.type == "cuda" else 8192
