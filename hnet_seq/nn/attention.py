"""Causal multi-head attention with partial rotary embeddings and an optional sliding window.

Parameter names follow the official H-Net ``CausalMHA``: ``Wqkv`` (no bias) and ``out_proj``.
Rotary embeddings rotate the first ``rotary_emb_dim`` channels of each head (GPT-NeoX
half-split layout), with positions counted from each packed sequence's start.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .packing import Packing


def rotary_tables(positions: torch.Tensor, rotary_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``positions (T,)`` → ``cos, sin (T, rotary_dim/2)`` fp32, the angles of :func:`apply_rotary`."""
    inv_freq = 1.0 / base ** (torch.arange(0, rotary_dim, 2, device=positions.device, dtype=torch.float32) / rotary_dim)
    angles = positions.float()[:, None] * inv_freq[None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``rotary_dim`` channels of ``x (T, ..., p)`` by ``cos, sin (T, rotary_dim/2)``."""
    rotary_dim = 2 * cos.shape[-1]
    if rotary_dim == 0:
        return x
    cos, sin = (t.reshape(t.shape[0], *[1] * (x.dim() - 2), t.shape[-1]) for t in (cos, sin))
    rot, rest = x[..., :rotary_dim].float(), x[..., rotary_dim:]
    first, second = rot.chunk(2, dim=-1)
    rotated = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)


@dataclass
class KVCache:
    """Keys and values per batch row, filled up to ``lengths``."""

    k: torch.Tensor  # (B, max_len, h, p)
    v: torch.Tensor  # (B, max_len, h, p)
    lengths: torch.Tensor  # (B,) int64


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, rotary_emb_dim: int = 0, window_size: int = -1,
                 rotary_base: float = 10000.0, device=None, dtype=None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"attention: d_model={d_model} is not a multiple of num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.rotary_emb_dim, self.window_size, self.rotary_base = rotary_emb_dim, window_size, rotary_base
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=False, device=device, dtype=dtype)
        self.out_proj = nn.Linear(d_model, d_model, bias=False, device=device, dtype=dtype)

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """``x (T, d)`` → ``q, k, v (T, h, p)``, q and k rotated together (one set of kernels)."""
        qkv = self.Wqkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))
        q, k = apply_rotary(qkv[:, :2], cos, sin).unbind(1)
        return q, k, qkv[:, 2]

    def forward(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Packed ``(T, d_model)`` → ``(T, d_model)``; each sequence attends only to itself."""
        key = ("rotary", self.rotary_emb_dim, self.rotary_base)  # shared by the stage's layers
        cos, sin = packing.cached(key, lambda: rotary_tables(packing.positions(), self.rotary_emb_dim, self.rotary_base))
        q, k, v = self._qkv(x, cos, sin)
        out = kernels.attention(q, k, v, packing.cu_seqlens, packing.max_seqlen, window_size=self.window_size)
        return self.out_proj(out.flatten(-2))

    def new_state(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        dtype = dtype or self.Wqkv.weight.dtype
        shape = (batch_size, max_len, self.num_heads, self.head_dim)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype),
                       torch.zeros(batch_size, device=device, dtype=torch.long))

    def step(self, x: torch.Tensor, state: KVCache, rows: torch.Tensor) -> torch.Tensor:
        """One token for each of ``rows``: ``x (b, d_model)`` → ``(b, d_model)``; appends to the cache."""
        pos = state.lengths[rows]
        if int(pos.max()) >= state.k.shape[1]:
            raise RuntimeError(f"attention cache is full ({state.k.shape[1]} positions)")
        q, k, v = self._qkv(x, *rotary_tables(pos, self.rotary_emb_dim, self.rotary_base))
        state.k[rows, pos], state.v[rows, pos] = k.to(state.k.dtype), v.to(state.v.dtype)
        state.lengths[rows] = pos + 1
        keys, values = state.k[rows].float(), state.v[rows].float()  # (b, L, h, p)
        j = torch.arange(keys.shape[1], device=x.device)[None]
        visible = j <= pos[:, None]
        if self.window_size >= 0:
            visible &= j >= pos[:, None] - self.window_size
        scores = torch.einsum("bhp,blhp->bhl", q.float(), keys) / self.head_dim ** 0.5
        scores = scores.masked_fill(~visible[:, None], float("-inf"))
        out = torch.einsum("bhl,blhp->bhp", F.softmax(scores, dim=-1), values).to(x.dtype)
        return self.out_proj(out.flatten(-2))

    def prefill(self, x: torch.Tensor, lengths: torch.Tensor, state: KVCache) -> torch.Tensor:
        """A block per row after the cached keys: ``x (B, L, d_model)`` → ``(B, L, d_model)``.

        Row ``b``'s ``lengths[b]`` valid positions are appended to its cache (grown when full); each
        attends to the cache and to the new positions before it (padding attends too, never stored).
        """
        Bn, L, d = x.shape
        pos = state.lengths[:, None] + torch.arange(L, device=x.device)  # (B, L)
        valid = torch.arange(L, device=x.device)[None] < lengths[:, None]
        end = state.lengths + lengths
        n_keys = int(end.max())
        if n_keys > state.k.shape[1]:  # grow (amortised doubling): callers need not know the final length
            grow = (0, 0, 0, 0, 0, max(n_keys, 2 * state.k.shape[1]) - state.k.shape[1])
            state.k, state.v = F.pad(state.k, grow), F.pad(state.v, grow)
        q, k, v = (t.unflatten(0, (Bn, L)) for t in self._qkv(
            x.reshape(Bn * L, d), *rotary_tables(pos.reshape(-1), self.rotary_emb_dim, self.rotary_base)))
        rows, cols = valid.nonzero(as_tuple=True)
        state.k[rows, pos[rows, cols]] = k[rows, cols].to(state.k.dtype)
        state.v[rows, pos[rows, cols]] = v[rows, cols].to(state.v.dtype)
        state.lengths.copy_(end)
        out = kernels.attention_kvcache(q, state.k[:, :n_keys], state.v[:, :n_keys], pos, valid,
                                        window_size=self.window_size)
        return self.out_proj(out.flatten(-2))
