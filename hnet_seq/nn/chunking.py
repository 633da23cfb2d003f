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
