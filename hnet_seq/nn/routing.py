"""The routing module: where does a new chunk start?

The boundary probability of position ``t`` is ``(1 - cos(q_{t-1}, k_t)) / 2`` for learned
projections ``q`` and ``k`` of adjacent states; every sequence's first position is forced to a
boundary.  A position is selected as a boundary when its probability exceeds 1/2.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from .packing import Packing


@dataclass
class RoutingOutput:
    """One stage's routing decisions over its input positions (packed).

    The properties derived from ``boundary_mask`` (the inner stage's packing, where each chunk
    starts, which chunk each position is in) are computed once, on first use, and shared by
    chunk and dechunk.  Of all of them only :attr:`inner_packing` reads the device (one sync
    per stage: the inner stage's token count and longest sequence).
    """

    boundary_prob: torch.Tensor  # (T,) float32, probability that a chunk starts here
    boundary_mask: torch.Tensor  # (T,) bool, chunk starts
    packing: Packing  # the packing of the T positions this stage routed

    @property
    def selected_prob(self) -> torch.Tensor:
        """``(T, 1)``: probability of the decision taken (what the STE residual multiplies by)."""
        p = self.boundary_prob
        return torch.where(self.boundary_mask, p, 1 - p)[:, None]

    @cached_property
    def inner_packing(self) -> Packing:
        """The packing of the chunks (the next stage's positions)."""
        return self.packing.select(self.boundary_mask)

    @cached_property
    def chunk_of_position(self) -> torch.Tensor:
        """``(T,)`` int64: index of the chunk each position belongs to (its last boundary)."""
        return self.boundary_mask.cumsum(0) - 1

    @cached_property
    def chunk_starts(self) -> torch.Tensor:
        """``(T',)`` int64: the position where each chunk starts, i.e. ``nonzero(boundary_mask)``.

        Scattered by rank instead of ``nonzero``, whose output size would need a sync: the
        inner packing already knows ``T'``.  Non-boundary positions go to a spare slot ``T'``.
        """
        n_chunks = self.inner_packing.total
        mask = self.boundary_mask
        rank = torch.where(mask, self.chunk_of_position, n_chunks)
        slots = torch.empty(n_chunks + 1, dtype=torch.long, device=mask.device)
        return slots.scatter_(0, rank, torch.arange(mask.numel(), device=mask.device))[:n_chunks]

    def compression_ratio(self) -> float:
        """Input positions per chunk at this stage."""
        return self.boundary_mask.numel() / max(self.inner_packing.total, 1)


def stage_lengths(packing: Packing, routing: list[RoutingOutput]) -> list[list[int]]:
    """Sequence lengths at every stage of one forward pass (stage 0: ``packing``'s), outermost
    first: what :mod:`hnet_seq.flops` counts FLOPs from."""
    return [p.lengths.tolist() for p in (packing, *(r.inner_packing for r in routing))]


@dataclass
class RoutingState:
    """Decoding state: the previous position's hidden state per row, and whether it exists."""

    last_hidden: torch.Tensor  # (B, d)
    seen: torch.Tensor  # (B,) bool


class RoutingModule(nn.Module):
    def __init__(self, d_model: int, device=None, dtype=None):
        super().__init__()
        self.q_proj_layer = nn.Linear(d_model, d_model, bias=False, device=device, dtype=dtype)
        self.k_proj_layer = nn.Linear(d_model, d_model, bias=False, device=device, dtype=dtype)
        self.reset_identity()

    def reset_identity(self) -> None:
        """Start from plain cosine similarity of adjacent states (identity projections)."""
        with torch.no_grad():
            for layer in (self.q_proj_layer, self.k_proj_layer):
                if layer.weight.device.type != "meta":
                    layer.weight.copy_(torch.eye(layer.weight.shape[0]))
                layer.weight._no_reinit = True

    def _prob(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        cos = (F.normalize(self.q_proj_layer(previous).float(), dim=-1)
               * F.normalize(self.k_proj_layer(current).float(), dim=-1)).sum(-1)
        return ((1 - cos) / 2).clamp(0.0, 1.0)

    def forward(self, h: torch.Tensor, packing: Packing) -> RoutingOutput:
        """``h (T, d)`` → boundary probabilities and mask over the T positions."""
        prob = F.pad(self._prob(h[:-1], h[1:]), (1, 0), value=1.0)
        prob = torch.where(packing.starts_mask(), torch.ones_like(prob), prob)
        return RoutingOutput(prob, prob > 0.5, packing)

    def new_state(self, batch_size: int, d_model: int, device=None, dtype=None) -> RoutingState:
        return RoutingState(torch.zeros(batch_size, d_model, device=device, dtype=dtype),
                            torch.zeros(batch_size, dtype=torch.bool, device=device))

    def step(self, h: torch.Tensor, state: RoutingState, rows: torch.Tensor):
        """``h (b, d)`` for ``rows`` → (boundary_prob (b,), boundary_mask (b,))."""
        prob = self._prob(state.last_hidden[rows].to(h.dtype), h)
        prob = torch.where(state.seen[rows], prob, torch.ones_like(prob))
        state.last_hidden[rows] = h.to(state.last_hidden.dtype)
        state.seen[rows] = True
        return prob, prob > 0.5

    def prefill(self, h: torch.Tensor, lengths: torch.Tensor, state: RoutingState):
        """``h (B, L, d)``, ``lengths[b]`` valid per row → (boundary_prob (B, L), boundary_mask (B, L)).

        Padding is never a boundary; the state keeps each row's last valid hidden state.
        """
        Bn, L, _ = h.shape
        previous = torch.cat([state.last_hidden[:, None].to(h.dtype), h[:, :-1]], dim=1)
        prob = self._prob(previous, h)
        first = (torch.arange(L, device=h.device) == 0)[None] & ~state.seen[:, None]
        prob = torch.where(first, torch.ones_like(prob), prob)
        valid = torch.arange(L, device=h.device)[None] < lengths[:, None]
        last = h[torch.arange(Bn, device=h.device), (lengths - 1).clamp(min=0)]
        has = lengths > 0
        state.last_hidden.copy_(torch.where(has[:, None], last.to(state.last_hidden.dtype), state.last_hidden))
        state.seen |= has
        return prob, (prob > 0.5) & valid
