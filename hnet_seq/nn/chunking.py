"""Chunk and dechunk: move between a stage's positions and its chunks.

* chunk: keep the positions where a chunk starts (``boundary_mask``) → the inner sequence.
  Both directions use the routing's shared indices (no boolean-mask indexing, which would
  make the host wait for the GPU).
* dechunk: smooth the inner outputs with an EMA weighted by the boundary probabilities,
  ``z_c = p_c h_c + (1 - p_c) z_{c-1}``, then give every position its chunk's value.  The EMA
  runs on the ``ssd`` kernel (dt = -log(1-p), A = -1, B = p/dt, C = 1).
* :func:`ste` is 1 in the forward pass and the identity in the backward pass, so the
  residual ``out * ste(selected_prob) + residual`` passes gradients to the router.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import kernels
from .packing import Packing
from .routing import RoutingOutput

EMA_HEADDIM = 32  # the EMA is per channel; heads only batch the scan
PROB_CLAMP = 1e-4  # keeps dt = -log(1-p) finite and nonzero


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.ones_like(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def ste(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x)


def chunk(h: torch.Tensor, routing: RoutingOutput) -> tuple[torch.Tensor, Packing]:
    """``h (T, d)`` → chunk starts ``(T', d)`` and their packing."""
    return h.index_select(0, routing.chunk_starts), routing.inner_packing


def dechunk(inner: torch.Tensor, routing: RoutingOutput, chunk_size: int = 256) -> torch.Tensor:
    """Inner outputs ``(T', d)`` → ``(T, d)`` at the outer positions, EMA-smoothed."""
    Tp, d = inner.shape
    p = routing.boundary_prob.index_select(0, routing.chunk_starts).float().clamp(PROB_CLAMP, 1 - PROB_CLAMP)
    dt = -torch.log1p(-p)  # (T',)
    headdim = EMA_HEADDIM if d % EMA_HEADDIM == 0 else d
    heads = d // headdim
    smoothed = kernels.ssd(
        inner.reshape(1, Tp, heads, headdim), dt[None, :, None].expand(1, Tp, heads).contiguous(),
        -torch.ones(heads, device=inner.device), (p / dt)[None, :, None, None], torch.ones_like(p)[None, :, None, None],
        chunk_size=chunk_size, seq_idx=routing.inner_packing.seq_idx).reshape(Tp, d)
    return smoothed[routing.chunk_of_position]


@dataclass
class DechunkState:
    last: torch.Tensor  # (B, d) the last smoothed value per row


def dechunk_step(inner: torch.Tensor, boundary_mask: torch.Tensor, boundary_prob: torch.Tensor,
                 state: DechunkState, rows: torch.Tensor) -> torch.Tensor:
    """One position per row: rows with a boundary blend in their new inner output, others repeat."""
    out = state.last[rows].clone()
    if inner.shape[0]:
        p = boundary_prob[boundary_mask].float().clamp(PROB_CLAMP, 1 - PROB_CLAMP)[:, None]
        out[boundary_mask] = (p * inner.float() + (1 - p) * out[boundary_mask].float()).to(out.dtype)
    state.last[rows] = out
    return out


def chunk_block(h: torch.Tensor, prob: torch.Tensor, mask: torch.Tensor):
    """Padded chunk starts of a block: ``h (B, L, d)``, ``mask (B, L)`` →
    ``inner (B, L', d)``, ``inner_prob (B, L')``, ``counts (B,)`` (each row's starts, left-aligned)."""
    counts = mask.sum(1)
    width = int(counts.max()) if counts.numel() else 0
    rank = mask.cumsum(1) - 1
    rows, cols = mask.nonzero(as_tuple=True)
    inner = h.new_zeros(h.shape[0], width, h.shape[-1])
    inner_prob = prob.new_zeros(h.shape[0], width)
    inner[rows, rank[rows, cols]] = h[rows, cols]
    inner_prob[rows, rank[rows, cols]] = prob[rows, cols]
    return inner, inner_prob, counts


def dechunk_block(inner: torch.Tensor, inner_prob: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor,
                  state: DechunkState, chunk_size: int = 256) -> torch.Tensor:
    """The EMA of :func:`dechunk` continued from ``state``: ``inner (B, L', d)`` → ``(B, L, d)``.

    Positions before a row's first new chunk start still belong to the chunk that the state ends in.
    """
    Bn, Lp, d = inner.shape
    if Lp == 0:  # no row starts a chunk in this block
        return state.last[:, None].to(inner.dtype).expand(-1, mask.shape[1], -1)
    valid = torch.arange(Lp, device=inner.device)[None] < counts[:, None]
    p = inner_prob.float().clamp(PROB_CLAMP, 1 - PROB_CLAMP)
    dt = torch.where(valid, -torch.log1p(-p), 0.0)  # padding: no decay, no input
    gain = torch.where(valid, p / dt.clamp(min=PROB_CLAMP), 0.0)
    headdim = EMA_HEADDIM if d % EMA_HEADDIM == 0 else d
    heads = d // headdim
    smoothed, final = kernels.ssd(
        inner.reshape(Bn, Lp, heads, headdim), dt[..., None].expand(Bn, Lp, heads).contiguous(),
        -torch.ones(heads, device=inner.device), gain[:, :, None, None], torch.ones_like(gain)[:, :, None, None],
        chunk_size=chunk_size, initial_states=state.last.float().reshape(Bn, heads, headdim, 1),
        return_final_state=True)
    values = torch.cat([state.last[:, None].to(smoothed.dtype), smoothed.reshape(Bn, Lp, d)], dim=1)
    state.last.copy_(final.reshape(Bn, d).to(state.last.dtype))
    return values.gather(1, mask.cumsum(1)[..., None].expand(-1, -1, d))
