"""A record as model inputs: (n,) tokens or (n, F) frames, targets when scoring, and the :class:`CoordMap`
from model positions back to input coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CoordMap:
    """Model position ``p`` of a record → input coordinate ``offset + clamp((p - prefix) * scale, 0, units)``.

    ``prefix``: leading special tokens (a byte model's BOS), ``scale``: units per position
    (raw audio: samples per frame), ``offset``: genomic start of a BED/region record.
    ``reverse``: the record is the reverse complement of ``[offset, offset + units)``, so a cut
    before position ``p`` is the + strand cut ``offset + units - p``.
    """

    prefix: int = 0
    scale: int = 1
    units: int = 0
    offset: int = 0
    reverse: bool = False

    def __call__(self, p):
        """Coordinate of the cut before position ``p`` (the start of its unit on the + strand)."""
        rel = np.clip((np.asarray(p, np.int64) - self.prefix) * self.scale, 0, self.units)
        return self.offset + (self.units - rel if self.reverse else rel)

    def position(self, p):
        """Coordinate of the unit at position ``p`` (on a reverse record, the cut after it is its end)."""
        return self(np.asarray(p, np.int64) + 1) if self.reverse else self(p)

    def span(self, a, b):
        """``(start, end)`` on the + strand of the positions ``[a, b)``."""
        x, y = self(a), self(b)
        return (y, x) if self.reverse else (x, y)


def record_inputs(adapter, record, scoring: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, CoordMap]:
    """Model inputs (and targets when scoring) of a whole record, and its coordinate map."""
    meta = record.meta or {}
    offset = int(meta.get("start", 0)) if "contig" in meta else 0
    reverse = meta.get("strand") == "-"
    if adapter.tokens_are_data and not scoring:
        x = torch.from_numpy(np.ascontiguousarray(record.data))  # uint8; widened per batch
        return x, None, CoordMap(0, 1, len(record.data), offset, reverse)
    if scoring:
        arrays = adapter.example_arrays(record)
        x = torch.from_numpy(np.ascontiguousarray(arrays["inputs"]))
        y = torch.from_numpy(np.ascontiguousarray(arrays["targets"]))
        if y.dtype == torch.uint8:
            y = y.long()
        if x.dtype == torch.float64:
            x = x.float()
    else:
        x, y = adapter.encode(record), None
    units = len(record.data)
    scale = getattr(adapter, "units_per_position", 1) or 1
    prefix = 0
    if x.ndim == 1 and scale == 1:
        prefix = max(int(x.shape[0]) - units - int(getattr(adapter, "add_eos", False)), 0)
    return x, y, CoordMap(prefix, scale, units, offset, reverse)
