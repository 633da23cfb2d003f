"""Model FLOPs for MFU: counted per layer type, at each stage's measured length.

The count is for matrix work and the scans (elementwise ops are ignored); a training step costs
three forward passes (forward + backward).  Per token of a stage of width ``d``:

* Mamba-2: ``2·d·(2·d_inner + 2·g·n + h)`` in_proj, ``2·d_inner·d`` out_proj, ``2·k·conv_dim`` conv,
  and the SSD scan ``Q·h·(n + p)`` within chunks (causal half of ``C Bᵀ`` and of its product with
  ``X``, chunk length ``Q``) plus ``6·h·p·n`` for chunk states and their read-out.
* attention: ``8·d²`` projections plus ``4·d·c`` for scores and values, ``c`` the mean number of
  keys a query sees (causal, window-limited), computed exactly from the sequence lengths.
* SwiGLU: ``6·d·f`` (``f`` the hidden width).  Routing: ``4·d²``; residual projection ``2·d²``.
* head: ``2·d·V`` per output position.
"""
from __future__ import annotations

from typing import Sequence

from .config import HNetConfig
from .nn.isotropic import parse_layout

HARDWARE_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s


def mean_keys_per_query(lengths: Sequence[int], window: int) -> float:
    """Average number of keys a causal query attends to (``window`` < 0: unlimited)."""
    total = sum(lengths)
    if total == 0:
        return 0.0
    keys = 0
    for n in lengths:
        if window < 0 or n <= window + 1:
            keys += n * (n + 1) // 2
        else:
            w = window + 1
            keys += w * (w + 1) // 2 + (n - w) * w
    return keys / total


def layer_flops_per_token(kind: str, cfg: HNetConfig, stage: int, keys_per_query: float) -> float:
    d = cfg.d_model[stage]
    flops = 0.0
    if kind in "mM":
        s = cfg.ssm_cfg
        d_inner = s.expand * d
        h, n, g = d_inner // s.headdim, s.d_state, s.ngroups
        conv_dim = d_inner + 2 * g * n
        flops += 2 * d * (d_inner + conv_dim + h) + 2 * d_inner * d + 2 * s.d_conv * conv_dim
        flops += s.chunk_size * h * (n + s.headdim) + 6 * h * s.headdim * n
    else:
        flops += 8 * d * d + 4 * d * keys_per_query
    if kind.isupper():
        f = -(-cfg.d_intermediate[stage] // 128) * 128
        flops += 6 * d * f
    return flops


def stack_flops_per_token(layout: str, cfg: HNetConfig, stage: int, lengths: Sequence[int]) -> float:
    window = cfg.attn_cfg.window_size[stage]
    keys = mean_keys_per_query(lengths, window) if any(k in "tT" for k in layout) else 0.0
    return sum(layer_flops_per_token(kind, cfg, stage, keys) for kind in parse_layout(layout))


def lengths_at_compression(lengths: Sequence[int], ratios: Sequence[float]) -> list[list[int]]:
    """Per-stage sequence lengths if every chunking stage met its compression ratio exactly:
    ``lengths`` at stage 0, then each stage's divided by its ratio (at least 1 position)."""
    out = [list(lengths)]
    for r in ratios:
        out.append([max(1, round(n / r)) for n in out[-1]])
    return out


def forward_flops(cfg: HNetConfig, stage_lengths: Sequence[Sequence[int]], head_dim_out: int | None = None) -> float:
    """Forward FLOPs of a packed batch; ``stage_lengths[s]`` are the sequence lengths at stage ``s``."""
    total = 0.0
    for stage in range(cfg.num_stages):
        layout = cfg.layout_at(stage)
        lengths = stage_lengths[stage]
        tokens = sum(lengths)
        d = cfg.d_model[stage]
        stacks = [layout[0]] if len(layout) == 1 else [layout[0], layout[2]]
        total += tokens * sum(stack_flops_per_token(s, cfg, stage, lengths) for s in stacks)
        if len(layout) == 3:
            total += tokens * 6 * d * d  # routing q/k projections and the residual projection
    out = head_dim_out if head_dim_out is not None else cfg.vocab_size
    total += sum(stage_lengths[0]) * 2 * cfg.d_model[0] * out
    return total


def training_flops(cfg: HNetConfig, stage_lengths: Sequence[Sequence[int]], head_dim_out: int | None = None) -> float:
    return 3.0 * forward_flops(cfg, stage_lengths, head_dim_out)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a known GPU, by name (None when unknown)."""
    for key, value in HARDWARE_PEAK_BF16.items():
        if key in device_name:
            return value
    return None
