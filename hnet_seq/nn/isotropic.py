"""Isotropic stacks: pre-norm blocks over an fp32 residual stream, then a final RMSNorm.

A layout string such as ``"T1m4"`` lists blocks: ``m`` Mamba-2, ``t`` attention; uppercase adds
a SwiGLU MLP after the mixer.  Keys follow the official code: ``layers.N.norm1``,
``layers.N.mixer``, ``layers.N.norm2``, ``layers.N.mlp``, and ``rmsnorm``.
"""
from __future__ import annotations

import re

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import kernels
from ..config import CHECKPOINTING, HNetConfig
from .attention import CausalSelfAttention
from .mamba2 import Mamba2
from .mlp import SwiGLU
from .norm import RMSNorm
from .packing import Packing


def parse_layout(layout: str) -> list[str]:
    """``"T1m4"`` → ``["T", "m", "m", "m", "m"]``."""
    return [kind for kind, n in re.findall(r"([mMtT])(\d+)", layout) for _ in range(int(n))]




def set_activation_checkpointing(model: nn.Module, mode: str) -> None:
    """Recompute activations in the backward instead of keeping them, for every stack in ``model``.

    ``blocks``: each block keeps only its input residual; ``stages``: each isotropic stack
    (encoder, main network, decoder) keeps only its input, the least memory and the most
    recomputation.  ``none``: keep everything (the default).  Only where gradients are on.
    """
    if mode not in CHECKPOINTING:
        raise ValueError(f"activation checkpointing: unknown mode {mode!r} (use {', '.join(CHECKPOINTING)})")
    for module in model.modules():
        if isinstance(module, Isotropic):
            module.checkpointing = mode


class Block(nn.Module):
    """``residual += mixer(norm1(residual))`` then, for uppercase kinds, ``+= mlp(norm2(…))``."""

    def __init__(self, kind: str, cfg: HNetConfig, stage: int, device=None, dtype=None):
        super().__init__()
        d = cfg.d_model[stage]
        factory = {"device": device, "dtype": dtype}
        self.norm1 = RMSNorm(d, **factory)
        if kind in "mM":
            ssm = cfg.ssm_cfg
            self.mixer = Mamba2(d, d_state=ssm.d_state, d_conv=ssm.d_conv, expand=ssm.expand,
                                headdim=ssm.headdim, ngroups=ssm.ngroups, chunk_size=ssm.chunk_size, **factory)
        else:
            attn = cfg.attn_cfg
            self.mixer = CausalSelfAttention(d, attn.num_heads[stage], attn.rotary_emb_dim[stage],
                                             attn.window_size[stage], **factory)
        if kind.isupper():
            self.norm2 = RMSNorm(d, **factory)
            self.mlp = SwiGLU(d, cfg.d_intermediate[stage], **factory)
        else:
            self.mlp = None

    @property
    def residual_writes(self) -> int:
        return 1 if self.mlp is None else 2

    def _residual_update(self, residual: torch.Tensor, run_mixer) -> torch.Tensor:
        # The fp32 residual plus a (possibly bf16) branch output promotes to fp32 inside the add
        # kernel: exactly ``residual + out.float()``, without a separate cast kernel and copy.
        dtype = self.norm1.weight.dtype
        out = run_mixer(self.norm1(residual.to(dtype)))
        if self.mlp is None:
            return residual + out
        h, residual = kernels.add_rmsnorm(out, residual, self.norm2.weight, eps=self.norm2.eps)
        return residual + self.mlp(h)

    def forward(self, residual: torch.Tensor, packing: Packing) -> torch.Tensor:
        """fp32 residual ``(T, d)`` → fp32 residual ``(T, d)``."""
        return self._residual_update(residual, lambda h: self.mixer(h, packing))

    def step(self, residual: torch.Tensor, state, rows: torch.Tensor) -> torch.Tensor:
        return self._residual_update(residual, lambda h: self.mixer.step(h, state, rows))

    def prefill(self, residual: torch.Tensor, lengths: torch.Tensor, state) -> torch.Tensor:
        return self._residual_update(residual, lambda h: self.mixer.prefill(h, lengths, state))


class Isotropic(nn.Module):
    """A stack of blocks at one stage's width: ``(T, d)`` → ``(T, d)``."""

    def __init__(self, layout: str, cfg: HNetConfig, stage: int, device=None, dtype=None):
        super().__init__()
        self.layout = layout
        self.layers = nn.ModuleList(Block(kind, cfg, stage, device, dtype) for kind in parse_layout(layout))
        self.rmsnorm = RMSNorm(cfg.d_model[stage], device=device, dtype=dtype)
        self.checkpointing = "none"  # see set_activation_checkpointing

    @property
    def height(self) -> int:
        """How many writes to the residual stream (scales the output-projection init)."""
        return sum(layer.residual_writes for layer in self.layers)

    def forward(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        if self.checkpointing == "stages" and torch.is_grad_enabled():
            return checkpoint(self._forward, x, packing, use_reentrant=False)
        return self._forward(x, packing)

    def _forward(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        residual = x.float()
        per_block = self.checkpointing == "blocks" and torch.is_grad_enabled()
        for layer in self.layers:
            residual = (checkpoint(layer, residual, packing, use_reentrant=False) if per_block
                        else layer(residual, packing))
        return self.rmsnorm(residual.to(x.dtype))

    def new_state(self, batch_size: int, max_len: int, device=None, dtype=None) -> list:
        return [layer.mixer.new_state(batch_size, max_len, device, dtype) for layer in self.layers]

    def step(self, x: torch.Tensor, state: list, rows: torch.Tensor) -> torch.Tensor:
        """One token per row in ``rows``: ``(b, d)`` → ``(b, d)``."""
        residual = x.float()
        for layer, layer_state in zip(self.layers, state):
            residual = layer.step(residual, layer_state, rows)
        return self.rmsnorm(residual.to(x.dtype))

    def prefill(self, x: torch.Tensor, lengths: torch.Tensor, state: list) -> torch.Tensor:
        """A block per row continuing ``state``: ``(B, L, d)`` → ``(B, L, d)`` (see :meth:`HNetLM.prefill`)."""
        residual = x.float()
        for layer, layer_state in zip(self.layers, state):
            residual = layer.prefill(residual, lengths, layer_state)
        return self.rmsnorm(residual.to(x.dtype))
