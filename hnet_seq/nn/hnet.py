"""The recursive H-Net: encoder → routing → chunk → main network → dechunk → decoder.

``HNet(cfg, stage)`` maps packed ``(T, d_model[stage-1])`` → same shape.  Its main network is
another ``HNet`` one stage deeper, or, at the innermost stage, an isotropic stack.  A wider
inner stage appends the learned ``pad_dimension`` to its input and drops it on the way out.
The residual ``residual_proj(encoder output)`` is computed in fp32 and added to the
dechunked output scaled by ``ste(selected_prob)`` (value 1, gradient to the router).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from ..config import HNetConfig
from .chunking import DechunkState, chunk, chunk_block, dechunk, dechunk_block, dechunk_step, ste
from .isotropic import Isotropic
from .packing import Packing
from .routing import RoutingModule, RoutingOutput, RoutingState


def map_state(state, fn):
    """A copy of a decoding state (nested dataclasses and lists) with ``fn`` applied to every tensor."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, list):
        return [map_state(s, fn) for s in state]
    if state is None:
        return None
    return type(state)(**{f.name: map_state(getattr(state, f.name), fn) for f in fields(state)})


@dataclass
class HNetState:
    """Decoding state of one stage (``encoder``/``decoder`` are per-layer lists)."""

    main: "HNetState | list"
    encoder: list | None = None
    routing: RoutingState | None = None
    dechunk: DechunkState | None = None
    decoder: list | None = None


class HNet(nn.Module):
    def __init__(self, cfg: HNetConfig, stage: int = 0, device=None, dtype=None):
        super().__init__()
        self.stage = stage
        self.d_model = cfg.d_model[stage]
        layout = cfg.layout_at(stage)
        self.is_innermost = len(layout) == 1
        factory = {"device": device, "dtype": dtype}
        if self.is_innermost:
            self.main_network = Isotropic(layout[0], cfg, stage, **factory)
        else:
            self.encoder = Isotropic(layout[0], cfg, stage, **factory)
            self.main_network = HNet(cfg, stage + 1, **factory)
            self.decoder = Isotropic(layout[2], cfg, stage, **factory)
            self.routing_module = RoutingModule(self.d_model, **factory)
            self.residual_proj = nn.Linear(self.d_model, self.d_model, device=device, dtype=torch.float32)
            nn.init.zeros_(self.residual_proj.weight)
            self.residual_proj.weight._no_reinit = True
            self.ema_chunk_size = cfg.ssm_cfg.chunk_size
        extra = self.d_model - cfg.d_model[stage - 1] if stage > 0 else 0
        self.pad_dimension = nn.Parameter(torch.zeros(extra, **factory)) if extra > 0 else None

    def _widen(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_dimension is None:
            return x
        return torch.cat([x, self.pad_dimension.to(x.dtype).expand(*x.shape[:-1], -1)], dim=-1)

    def _residual(self, h: torch.Tensor) -> torch.Tensor:
        # fp32 on purpose: the skip path carries fine detail that bf16 would round away.
        with torch.autocast(h.device.type, enabled=False):
            return self.residual_proj(h.float())

    def forward(self, x: torch.Tensor, packing: Packing) -> tuple[torch.Tensor, list[RoutingOutput]]:
        """Packed ``(T, d_in)`` → ``(T, d_in)`` and the routing of this and every inner stage."""
        d_in = x.shape[-1]
        x = self._widen(x)
        if self.is_innermost:
            return self.main_network(x, packing)[..., :d_in], []
        h = self.encoder(x, packing)
        residual = self._residual(h)
        routing = self.routing_module(h, packing)
        inner, inner_packing = chunk(h, routing)
        inner, inner_routing = self.main_network(inner, inner_packing)
        out = dechunk(inner, routing, self.ema_chunk_size)
        out = (out.float() * ste(routing.selected_prob) + residual).to(h.dtype)
        return self.decoder(out, packing)[..., :d_in], [routing, *inner_routing]

    def new_state(self, batch_size: int, max_len: int, device=None, dtype=None) -> HNetState:
        """Empty decoding state for ``batch_size`` rows of up to ``max_len`` positions."""
        if self.is_innermost:
            return HNetState(main=self.main_network.new_state(batch_size, max_len, device, dtype))
        dtype = dtype or self.routing_module.q_proj_layer.weight.dtype
        return HNetState(
            main=self.main_network.new_state(batch_size, max_len, device, dtype),
            encoder=self.encoder.new_state(batch_size, max_len, device, dtype),
            routing=self.routing_module.new_state(batch_size, self.d_model, device, dtype),
            dechunk=DechunkState(torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)),
            decoder=self.decoder.new_state(batch_size, max_len, device, dtype),
        )

    def step(self, x: torch.Tensor, state: HNetState, rows: torch.Tensor) -> tuple[torch.Tensor, list]:
        """One new position for each row in ``rows``: ``(b, d_in)`` → ``(b, d_in)``.

        Returns the per-stage ``(boundary_prob, boundary_mask)`` of the rows that reached it.
        """
        d_in = x.shape[-1]
        x = self._widen(x)
        if self.is_innermost:
            return self.main_network.step(x, state.main, rows)[..., :d_in], []
        h = self.encoder.step(x, state.encoder, rows)
        residual = self._residual(h)
        prob, mask = self.routing_module.step(h, state.routing, rows)
        inner_routing = []
        inner = h[mask]
        if inner.shape[0]:
            inner, inner_routing = self.main_network.step(inner, state.main, rows[mask])
        out = dechunk_step(inner, mask, prob, state.dechunk, rows)
        selected = torch.where(mask, prob, 1 - prob)[:, None]
        out = (out.float() * ste(selected) + residual).to(h.dtype)
        return self.decoder.step(out, state.decoder, rows)[..., :d_in], [(prob, mask), *inner_routing]

    def prefill(self, x: torch.Tensor, lengths: torch.Tensor, state: HNetState) -> torch.Tensor:
        """A block of positions per row continuing ``state``: ``(B, L, d_in)`` → ``(B, L, d_in)``.

        Row ``b`` has ``lengths[b]`` valid positions; each inner stage gets the block's new chunk
        starts of every row (a padded block of its own) and its dechunk EMA continues from the state.
        """
        d_in = x.shape[-1]
        x = self._widen(x)
        if self.is_innermost:
            return self.main_network.prefill(x, lengths, state.main)[..., :d_in]
        h = self.encoder.prefill(x, lengths, state.encoder)
        residual = self._residual(h)
        prob, mask = self.routing_module.prefill(h, lengths, state.routing)
        inner, inner_prob, counts = chunk_block(h, prob, mask)
        if inner.shape[1]:
            inner = self.main_network.prefill(inner, counts, state.main)
        out = dechunk_block(inner, inner_prob, counts, mask, state.dechunk, self.ema_chunk_size)
        selected = torch.where(mask, prob, 1 - prob)[..., None]
        out = (out.float() * ste(selected) + residual).to(h.dtype)
        return self.decoder.prefill(out, lengths, state.decoder)[..., :d_in]
