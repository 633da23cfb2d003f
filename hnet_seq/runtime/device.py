"""Device choice and the one precision vocabulary, for training and inference.

Precisions are named as torch names the dtypes: ``float32`` and ``bfloat16`` (``auto``: bfloat16
on CUDA, float32 elsewhere).  ``fp32``/``bf16`` are read as the same two, so that older training
configs keep loading; everything downstream sees the long names only.

Imports no torch at module level: the torch-free config module validates against
:data:`PRECISIONS`.
"""
from __future__ import annotations

import contextlib

PRECISIONS = ("auto", "float32", "bfloat16")
_SHORT = {"fp32": "float32", "bf16": "bfloat16"}


def precision_name(name: str) -> str:
    """``name`` in the long vocabulary (``auto`` unchanged); ``ValueError`` if it is not a precision."""
    name = _SHORT.get(name, name)
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    return name


def resolve_precision(name: str, device) -> str:
    """``float32`` or ``bfloat16`` on ``device`` (``auto``: bfloat16 on CUDA only)."""
    name = precision_name(name)
    if name == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return name


def autocast(device, precision: str):
    """A fresh context for one forward pass: bfloat16 autocast on ``device`` or nothing."""
    import torch

    if resolve_precision(precision, device) == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_device(choice: str):
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N`` as a ``torch.device``."""
    import torch

    from ..errors import UserError

    if choice == "auto":
        return torch.device(default_device())
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: CUDA is not available here (use device=cpu)", params=("device",))
    return torch.device(choice)


__all__ = ["PRECISIONS", "autocast", "default_device", "pick_device", "precision_name", "resolve_precision"]
