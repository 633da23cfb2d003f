"""The pipeline's record type: what readers produce and adapters encode."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Record:
    """One document / contig / utterance as read from a file.

    ``data`` is the modality's natural array: DNA tokens ``(L,) uint8``, raw bytes ``(L,) uint8``,
    or audio samples ``(N,) float32`` at the configured rate.  ``meta`` holds the rest (soft-mask,
    language tag, source file, sample rate, normalisation stats, contig coordinates, ...).
    """

    id: str
    data: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)
