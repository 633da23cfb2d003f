"""Packed variable-length batches: ``(T, D)`` rows with ``cu_seqlens``.

Packing is the main path through every stage: sequences are laid end to end, and
``cu_seqlens`` (``(n+1,)`` int32, starting at 0) marks where each one starts.  The padded
``(B, L)`` + mask form is converted to and from it by :func:`pack` and :func:`unpack`.

A packing also carries its sizes on the host (``total``, ``max_seqlen``) and caches the index
tensors derived from ``cu_seqlens`` (``seq_idx``, positions, sequence starts): every layer of a
stage shares one packing, so each is built once per stage, and none of them reads the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F

T = TypeVar("T")


def _host_ints(*values: torch.Tensor) -> list[int]:
    """Scalars ``values`` as Python ints, in one device→host transfer (one sync, not one each)."""
    return torch.stack([v.reshape(()).long() for v in values]).tolist()


@dataclass
class Packing:
    """Where each packed sequence starts: ``cu_seqlens`` (n+1,) int32, the longest length, the total.

    ``total`` (``cu_seqlens[-1]``) is read from the tensor when not given.
    """

    cu_seqlens: torch.Tensor
    max_seqlen: int
    total: int | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.total is None:
            self.total = int(self.cu_seqlens[-1])

    @classmethod
    def from_lengths(cls, lengths, device=None) -> "Packing":
        """From per-sequence lengths: a list (no device read) or a tensor (one read)."""
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.to(device=device or lengths.device, dtype=torch.int32)
            total, longest = _host_ints(lengths.sum(), lengths.max()) if lengths.numel() else (0, 0)
        else:
            lengths = [int(n) for n in lengths]
            total, longest = sum(lengths), max(lengths, default=0)
            lengths = torch.tensor(lengths, dtype=torch.int32, device=device)
        cu = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        return cls(cu, longest, total)

    def cached(self, key, build: Callable[[], T]) -> T:
        """``build()`` on first use, then the same tensor: per-stage values shared by its layers."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.cu_seqlens[1:] - self.cu_seqlens[:-1]

    @property
    def seq_idx(self) -> torch.Tensor:
        """``(1, T)`` int32: which sequence each packed position belongs to."""
        return self.cached("seq_idx", lambda: torch.repeat_interleave(
            torch.arange(self.num_sequences, device=self.cu_seqlens.device, dtype=torch.int32),
            self.lengths.long(), output_size=self.total)[None])

    def positions(self) -> torch.Tensor:
        """``(T,)`` int64 position of each token inside its own sequence."""
        return self.cached("positions", lambda: torch.arange(self.total, device=self.cu_seqlens.device)
                           - self.cu_seqlens.long()[self.seq_idx[0].long()])

    def starts_mask(self) -> torch.Tensor:
        """``(T,)`` bool, True at the first token of every sequence."""
        return self.cached("starts_mask", lambda: self.positions() == 0)

    def select(self, keep: torch.Tensor) -> "Packing":
        """The packing of the positions where ``keep`` (T,) is True (the next, shorter stage).

        Reads its two sizes (total and longest) from the device in one transfer.
        """
        counts = F.pad(keep.cumsum(0, dtype=torch.int32), (1, 0))[self.cu_seqlens.long()]
        lengths = counts[1:] - counts[:-1]
        total, longest = _host_ints(counts[-1], lengths.max()) if lengths.numel() else (0, 0)
        return Packing(counts, longest, total)


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
