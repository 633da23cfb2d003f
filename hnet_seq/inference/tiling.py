"""Cut long inputs into overlapping tiles and group work items into batches of a position budget.

Tiling.  The model is causal (every state, and every boundary decision, depends only on what
came before), so a long input of ``n`` positions is cut into tiles of ``window`` positions that
start every ``window - overlap`` positions; tile 0 owns positions ``[0, window)`` and tile
``i > 0`` owns ``[start_i + overlap, end_i)``: each position is reported exactly once, from the
tile that saw at least ``overlap`` positions of left context (or all of it).  Owned ranges tile
the input exactly, which is what makes stitched chunk coordinates gap- and overlap-free.

A :class:`WorkItem` holds one tile's model inputs: ``inputs`` (n,) tokens or (n, F) frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch

from hnet_seq.errors import UserError


@dataclass(frozen=True)
class Tile:
    start: int  # first position of the tile
    end: int  # one past its last position
    own_start: int  # first position it reports (earlier ones are left context only)
    index: int = 0
    count: int = 1  # tiles of the same input

    @property
    def own(self) -> tuple[int, int]:
        return self.own_start, self.end


def plan_tiles(n: int, window: int, overlap: int) -> list[Tile]:
    """Tiles of at most ``window`` positions every ``window - overlap``; owned ranges tile ``[0, n)``."""
    if window < 2:
        raise UserError(f"window={window}: must be at least 2", params=("window",))
    if not 0 <= overlap < window:
        raise UserError(f"overlap={overlap}: must be >= 0 and smaller than window={window}",
                        params=("overlap", "window"))
    if n <= window:
        return [Tile(0, n, 0)]
    step = window - overlap
    bounds = []
    start = 0
    while True:
        end = min(start + window, n)
        bounds.append((start, end))
        if end == n:
            break
        start += step
    return [Tile(s, e, s if i == 0 else s + overlap, i, len(bounds)) for i, (s, e) in enumerate(bounds)]


def default_overlap(window: int, overlap: int | None = None) -> int:
    """``overlap`` if given, else a quarter of the window, at most 1024 positions."""
    return min(1024, window // 4) if overlap is None else overlap


def tiling_description(window: int, overlap: int) -> str:
    return (f"inputs longer than {window} positions are cut into tiles of {window} starting every "
            f"{window - overlap}; tile 0 reports positions [0, {window}), tile i>0 reports "
            f"[start+{overlap}, end) (at least {overlap} positions of left context; the model is causal)")


@dataclass
class WorkItem:
    """One tile to run: model inputs of the whole tile, and which positions it reports."""

    inputs: torch.Tensor  # (n,) tokens or (n, F) frames
    own_start: int = 0
    targets: torch.Tensor | None = None  # (n,) or (n, F): what position t predicts at t+1
    tag: Any = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def batches_by_budget(items: Iterable[WorkItem], budget: int) -> Iterator[list[WorkItem]]:
    """Consecutive items grouped so that each group holds at most ``budget`` positions."""
    group, used = [], 0
    for it in items:
        n = len(it)
        if group and used + n > budget:
            yield group
            group, used = [], 0
        group.append(it)
        used += n
    if group:
        yield group
