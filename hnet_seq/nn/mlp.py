"""SwiGLU feed-forward: ``fc2(silu(gate) * up)`` with ``fc1`` producing ``[up, gate]``."""
from __future__ import annotations

import torch
from torch import nn

from .. import kernels


class SwiGLU(nn.Module):
    """``(..., d_model)`` → ``(..., d_model)``; hidden width rounded up to a multiple of 128."""

    def __init__(self, d_model: int, d_intermediate: int, multiple_of: int = 128,
                 device=None, dtype=None):
        super().__init__()
        hidden = -(-d_intermediate // multiple_of) * multiple_of
        self.fc1 = nn.Linear(d_model, 2 * hidden, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, d_model, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(kernels.swiglu(self.fc1(x)))
