"""What a config builds: the hierarchy, parameter counts per stage, kernel backends.

Everything here runs on the meta device, so even the XL configs are summarised in
milliseconds without allocating their weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import kernels
from .config import HNetConfig
from .model import HNetLM


@dataclass
class StageSummary:
    stage: int
    d_model: int
    encoder: str | None  # layout string, None at the innermost stage
    main: str | None  # layout string at the innermost stage
    decoder: str | None
    target_compression: float | None
    params: int  # this stage's own parameters (encoder, decoder, routing, residual, main if innermost)


def build_meta(cfg: HNetConfig) -> HNetLM:
    """The model on the meta device: shapes and names without memory."""
    return HNetLM(cfg, device="meta")


def summarize(cfg: HNetConfig) -> tuple[list[StageSummary], int, int]:
    """Per-stage summaries, the backbone's total, and the whole model's parameter count."""
    model = build_meta(cfg)
    stages, hnet = [], model.backbone
    while True:
        inner = None if hnet.is_innermost else hnet.main_network
        own = sum(p.numel() for p in hnet.parameters()) - (sum(p.numel() for p in inner.parameters()) if inner else 0)
        ratio = cfg.target_compression[hnet.stage] if (inner and cfg.target_compression) else None
        stages.append(StageSummary(
            hnet.stage, hnet.d_model,
            None if inner is None else hnet.encoder.layout,
            hnet.main_network.layout if inner is None else None,
            None if inner is None else hnet.decoder.layout, ratio, own))
        if inner is None:
            break
        hnet = inner
    total = sum(p.numel() for p in model.parameters())
    return stages, sum(p.numel() for p in model.backbone.parameters()), total


def kernel_backends(device: str) -> dict[str, str]:
    """Which implementation each kernel op would use for tensors on ``device``."""
    return {op.name: kernels.describe(op, device) for op in kernels.ALL_OPS}


__all__ = ["StageSummary", "build_meta", "kernel_backends", "summarize"]
