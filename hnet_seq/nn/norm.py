"""RMSNorm modules over the ``rmsnorm`` kernel op (parameter: ``weight`` only, as upstream)."""
from __future__ import annotations

import torch
from torch import nn

from .. import kernels


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dim; ``(..., d)`` → ``(..., d)``."""

    def __init__(self, d: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.rmsnorm(x, self.weight, eps=self.eps)


class GatedRMSNorm(RMSNorm):
    """Mamba-2's output norm: ``rmsnorm(x * silu(z))`` per group of ``group_size`` channels."""

    def __init__(self, d: int, group_size: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__(d, eps, device, dtype)
        self.group_size = group_size

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return kernels.rmsnorm(x, self.weight, z=z, eps=self.eps, group_size=self.group_size,
                               norm_before_gate=False)
