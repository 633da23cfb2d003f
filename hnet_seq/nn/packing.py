"""Packed variable-length batches: ``(T, D)`` rows with ``cu_seqlens``.

Packing is the main path through every stage: sequences are laid end to end, and
``cu_seqlens`` (``(n+1,)`` int32, starting at 0) marks where each one starts.  The padded
``(B, L)`` + mask form is converted to and from it by :func:`pack` and :func:`unpack`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Packing:
    """Where each packed sequence starts: ``cu_seqlens`` (n+1,) int32 and the longest length."""

    cu_seqlens: torch.Tensor
    max_seqlen: int
    _seq_idx: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_lengths(cls, lengths, device=None) -> "Packing":
        lengths = torch.as_tensor(lengths, dtype=torch.int32, device=device)
        cu = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        return cls(cu, int(lengths.max()) if lengths.numel() else 0)

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    @property
    def total(self) -> int:
        return int(self.cu_seqlens[-1])

    @property
    def lengths(self) -> torch.Tensor:
        return self.cu_seqlens[1:] - self.cu_seqlens[:-1]

    @property
    def seq_idx(self) -> torch.Tensor:
        """``(1, T)`` int32: which sequence each packed position belongs to."""
        if self._seq_idx is None:
            idx = torch.repeat_interleave(
                torch.arange(self.num_sequences, device=self.cu_seqlens.device, dtype=torch.int32),
                self.lengths.long(), output_size=self.total)
            self._seq_idx = idx[None]
        return self._seq_idx

    def positions(self) -> torch.Tensor:
        """``(T,)`` position of each token inside its own sequence."""
        idx = self.seq_idx[0].long()
        return torch.arange(self.total, device=idx.device) - self.cu_seqlens.long()[idx]

    def starts_mask(self) -> torch.Tensor:
        """``(T,)`` bool, True at the first token of every sequence."""
        mask = torch.zeros(self.total, dtype=torch.bool, device=self.cu_seqlens.device)
        mask[self.cu_seqlens[:-1][self.lengths > 0].long()] = True
        return mask

    def select(self, keep: torch.Tensor) -> "Packing":
        """The packing of the positions where ``keep`` (T,) is True (the next, shorter stage)."""
        counts = F.pad(keep.cumsum(0, dtype=torch.int32), (1, 0))[self.cu_seqlens.long()]
        lengths = counts[1:] - counts[:-1]
        return Packing(counts, int(lengths.max()) if lengths.numel() else 0)


def pack(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Packing]:
    """Padded ``(B, L, ...)`` + mask ``(B, L)`` (valid positions left-aligned) → ``(T, ...)``."""
    lengths = mask.sum(1)
    if not torch.equal(mask, torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]):
        raise ValueError("pack: mask must be left-aligned (valid positions first in each row)")
    return x[mask], Packing.from_lengths(lengths, device=x.device)


def unpack(x: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Inverse of :func:`pack`: ``(T, ...)`` → ``(B, L, ...)`` with ``fill`` where mask is False."""
    out = x.new_full((*mask.shape, *x.shape[1:]), fill)
    out[mask] = x
    return out
