"""Mamba-2 mixer with ``mamba_ssm.Mamba2``'s parameter names and shapes.

Parameters: ``in_proj`` (d_model → [z, xBC, dt]), ``conv1d`` (depthwise over xBC), ``dt_bias``,
``A_log``, ``D`` (one per head), ``norm`` (gated RMSNorm over d_inner), ``out_proj``.
The sequence work goes through the ``conv1d`` and ``ssd`` kernel ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .norm import GatedRMSNorm
from .packing import Packing


@dataclass
class Mamba2State:
    """Decoding state per batch row: the last ``d_conv-1`` conv inputs and the SSM state."""

    conv: torch.Tensor  # (B, d_conv - 1, conv_dim)
    ssm: torch.Tensor  # (B, nheads, headdim, d_state)


class Mamba2(nn.Module):
    def __init__(self, d_model: int, d_state: int = 128, d_conv: int = 4, expand: int = 2,
                 headdim: int = 64, ngroups: int = 1, chunk_size: int = 256,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 A_init_range: tuple[float, float] = (1.0, 16.0), device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(f"Mamba2: expand*d_model={self.d_inner} is not a multiple of headdim={headdim}")
        self.d_state, self.d_conv, self.headdim, self.ngroups = d_state, d_conv, headdim, ngroups
        self.nheads = self.d_inner // headdim
        self.chunk_size = chunk_size
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + self.nheads, bias=False, **factory)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=True, **factory)
        # dt is initialised log-uniformly in [dt_min, dt_max]; dt_bias stores softplus^-1(dt).
        dt = torch.exp(torch.rand(self.nheads, device=device) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter((dt + torch.log(-torch.expm1(-dt))).to(dtype or torch.float32))
        A = torch.empty(self.nheads, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype or torch.float32))
        self.D = nn.Parameter(torch.ones(self.nheads, device=device))  # fp32 even in a bf16 model, as upstream
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // ngroups, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False, **factory)

    def _split(self, zxbcdt: torch.Tensor):
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def forward(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Packed ``(T, d_model)`` → ``(T, d_model)``; nothing crosses a sequence boundary."""
        z, xBC, dt = self._split(self.in_proj(x)[None])
        seq_idx = packing.seq_idx
        xBC = kernels.conv1d(xBC, self.conv1d.weight[:, 0], self.conv1d.bias, seq_idx, "silu")
        xs, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], -1)
        T = x.shape[0]
        y = kernels.ssd(
            xs.reshape(1, T, self.nheads, self.headdim), dt, -torch.exp(self.A_log.float()),
            B.reshape(1, T, self.ngroups, self.d_state), C.reshape(1, T, self.ngroups, self.d_state),
            chunk_size=self.chunk_size, D=self.D, dt_bias=self.dt_bias, dt_softplus=True, seq_idx=seq_idx)
        y = self.norm(y.reshape(1, T, self.d_inner), z)
        return self.out_proj(y)[0]

    def new_state(self, batch_size: int, max_len: int, device=None, dtype=None) -> Mamba2State:
        dtype = dtype or self.in_proj.weight.dtype
        return Mamba2State(
            conv=torch.zeros(batch_size, self.d_conv - 1, self.conv_dim, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device,
                            dtype=torch.float32))

    def step(self, x: torch.Tensor, state: Mamba2State, rows: torch.Tensor) -> torch.Tensor:
        """One token for each of ``rows``: ``x (b, d_model)`` → ``(b, d_model)``; updates ``state``."""
        z, xBC, dt = self._split(self.in_proj(x))
        window = torch.cat([state.conv[rows], xBC[:, None].to(state.conv.dtype)], dim=1)  # (b, k, c)
        state.conv[rows] = window[:, 1:]
        w = self.conv1d.weight[:, 0].float()  # (c, k)
        xBC = F.silu((window.float() * w.T[None]).sum(1) + self.conv1d.bias.float())
        xs, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], -1)
        heads_per_group = self.nheads // self.ngroups
        xs = xs.reshape(-1, self.nheads, self.headdim)
        B = B.reshape(-1, self.ngroups, self.d_state).repeat_interleave(heads_per_group, 1)
        C = C.reshape(-1, self.ngroups, self.d_state).repeat_interleave(heads_per_group, 1)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # (b, h)
        decay = torch.exp(dt * -torch.exp(self.A_log.float()))
        ssm = state.ssm[rows] * decay[..., None, None] + (dt[..., None] * xs)[..., None] * B[:, :, None]
        state.ssm[rows] = ssm
        y = (ssm * C[:, :, None]).sum(-1) + xs * self.D.float()[:, None]
        y = self.norm(y.reshape(-1, self.d_inner).to(x.dtype), z)
        return self.out_proj(y)

    def prefill(self, x: torch.Tensor, lengths: torch.Tensor, state: Mamba2State) -> torch.Tensor:
        """A block of positions per row, continuing ``state``: ``x (B, L, d_model)`` → ``(B, L, d_model)``.

        Row ``b`` holds ``lengths[b]`` valid positions (left-aligned); the state is advanced past
        them only.  Padding gets ``dt = 0`` (no decay, no input), so it cannot touch the state.
        """
        Bn, L, _ = x.shape
        valid = (torch.arange(L, device=x.device)[None] < lengths[:, None])[..., None]  # (B, L, 1)
        z, xBC, dt = self._split(self.in_proj(x))
        # The conv continues from the cached inputs: run it over [cached | new] and drop the cached part.
        window = torch.cat([state.conv.to(xBC.dtype), xBC], dim=1)  # (B, k-1+L, c)
        tail = lengths[:, None] + torch.arange(self.d_conv - 1, device=x.device)  # last k-1 valid inputs
        state.conv.copy_(window.gather(1, tail[..., None].expand(-1, -1, self.conv_dim)))
        xBC = kernels.conv1d(window, self.conv1d.weight[:, 0], self.conv1d.bias, None, "silu")[:, self.d_conv - 1:]
        xs, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], -1)
        dt = F.softplus(dt.float() + self.dt_bias.float()).masked_fill(~valid, 0.0)
        y, ssm = kernels.ssd(
            xs.masked_fill(~valid, 0).reshape(Bn, L, self.nheads, self.headdim), dt, -torch.exp(self.A_log.float()),
            B.reshape(Bn, L, self.ngroups, self.d_state), C.reshape(Bn, L, self.ngroups, self.d_state),
            chunk_size=self.chunk_size, D=self.D, initial_states=state.ssm, return_final_state=True)
        state.ssm.copy_(ssm)
        y = self.norm(y.reshape(Bn, L, self.d_inner), z)
        return self.out_proj(y)
