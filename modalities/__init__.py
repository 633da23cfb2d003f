"""Modality adapters: everything between files and the modality-agnostic H-Net core.

``get_adapter("dna" | "bytes" | "audio", **options)`` builds one; see :mod:`.base` for the
interface.  Built-in adapters are imported on first use.
"""
from .base import (DiscreteAdapter, ModalityAdapter, Record, available_adapters, get_adapter,
                   register_adapter)

__all__ = ["DiscreteAdapter", "ModalityAdapter", "Record", "available_adapters", "get_adapter",
           "register_adapter"]
