"""Cut one SSD call into pieces short enough for 32-bit kernel indexing (see :mod:`.offsets`).

mamba-ssm's Triton SSD kernels compute several pointer offsets in 32-bit arithmetic.  Once
``batch × positions × elements per position`` of an input reaches ``2**31`` they read out of
bounds: an illegal memory access, or plausible wrong values with no error at all.  A 1 Mbp
window of the 100 M DNA H-Net gets there in its first Mamba-2 layer, whose ``x``/``dt`` are
views into an in-projection 2,320 elements wide.

:func:`ssd_in_pieces` runs the scan piece by piece, each piece a slice of at most
``limit`` positions of one batch row (:func:`piece_limit`), and joins the results exactly:

* a piece ends at a sequence start (``seq_idx``) where one lies within reach, so that it
  holds whole sequences and needs no state from its predecessor;
* a sequence longer than a piece is cut inside; the piece after the cut holds only the rest of
  that sequence (up to ``limit``) and starts from the state the previous piece ended in.

That keeps every call inside the inner implementation's contract, which allows
``initial_states`` or ``seq_idx`` but not both.
"""
from __future__ import annotations

import bisect
from typing import Callable

import torch

from .offsets import SAFE_OFFSET
from .reference import sequence_starts


def piece_limit(x, dt, B, C, *, chunk_size: int, d_state: int) -> int | None:
    """Positions per piece that keep every offset of ``(x, dt, B, C)``, of ``y`` and of the
    per-chunk states under :data:`SAFE_OFFSET` (a multiple of ``chunk_size``, at least one
    chunk); None when the whole call stays under it and needs no pieces."""
    h, p = x.shape[2], x.shape[3]
    per_position = max(x.stride(1), dt.stride(1), B.stride(1), C.stride(1), h * p, -(-h * p * d_state // chunk_size))
    limit = max(chunk_size, SAFE_OFFSET // per_position // chunk_size * chunk_size)
    batch_reach = max(t.stride(0) for t in (x, dt, B, C)) * x.shape[0]
    return limit if batch_reach >= SAFE_OFFSET or x.shape[1] > limit else None


def plan_pieces(starts: torch.Tensor | None, length: int, limit: int) -> list[tuple[int, int, bool]]:
    """``[(begin, end, continues)]`` covering ``[0, length)`` of one row; ``starts`` (sorted
    positions where a sequence begins, or None for one sequence); ``continues``: the piece
    begins inside a sequence and takes the previous piece's final state."""
    starts_list = [] if starts is None else starts.tolist()
    pieces, begin, continues, i = [], 0, False, 0
    while begin < length:
        while i < len(starts_list) and starts_list[i] <= begin:
            i += 1
        next_start = starts_list[i] if i < len(starts_list) else length
        if continues:  # only the rest of the cut sequence: a piece with one sequence in it
            end = min(begin + limit, next_start)
            cut = end < next_start
        else:
            end = min(begin + limit, length)
            last_within = bisect.bisect_right(starts_list, end) - 1  # the last start <= end
            cut = end < length and last_within < i  # no start within reach: one sequence too long
            if end < length and last_within >= i:
                end = starts_list[last_within]
        pieces.append((begin, end, continues))
        begin, continues = end, cut
    return pieces


def ssd_in_pieces(inner: Callable, x, dt, A, B, C, *, chunk_size: int, limit: int, seq_idx=None,
                  initial_states=None, return_final_state: bool = False, **kwargs):
    """``inner(x, dt, A, B, C, ...)`` (the contract of :func:`~hnet_seq.kernels.reference.ssd_reference`)
    computed row by row in pieces of at most ``limit`` positions; ``kwargs``: ``D``,
    ``dt_bias``, ``dt_softplus``, passed to every piece."""
    ys, finals = [], []
    for row in range(x.shape[0]):
        one = slice(row, row + 1)
        row_seq = None if seq_idx is None else seq_idx[one]
        starts = None if row_seq is None else torch.nonzero(sequence_starts(row_seq)[0]).flatten()
        state = None if initial_states is None else initial_states[one]
        pieces = plan_pieces(starts, x.shape[1], limit)
        row_ys = []
        for n, (begin, end, continues) in enumerate(pieces):
            span = slice(begin, end)
            piece_seq = None if row_seq is None or continues else row_seq[:, span]
            if piece_seq is not None and bool((piece_seq == piece_seq[:, :1]).all()):
                piece_seq = None  # one whole sequence: as from a fresh row
            carried = state if (continues or (n == 0 and piece_seq is None)) else None
            y, state = inner(x[one, span], dt[one, span], A, B[one, span], C[one, span], chunk_size=chunk_size,
                             seq_idx=piece_seq, initial_states=carried, return_final_state=True, **kwargs)
            row_ys.append(y)
        ys.append(torch.cat(row_ys, dim=1))
        finals.append(state)
    y = torch.cat(ys, dim=0)
    return (y, torch.cat(finals, dim=0)) if return_final_state else y
