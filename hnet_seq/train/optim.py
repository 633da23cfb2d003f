"""AdamW with per-stage learning rates, the schedule, and gradient clipping.

Parameter groups are keyed by (stage, weight decay).  No weight decay on norms, biases, any
parameter with fewer than 2 dimensions, and parameters flagged ``_no_weight_decay`` (Mamba's
``A_log``, ``D``, ``dt_bias``; the learned ``pad_dimension``).

Per-stage learning-rate modulation (H-Net §3.3: outer stages, which see more positions at a
smaller width, get a higher learning rate).  With ``lr_multipliers: auto`` stage ``s`` gets

    m_s = sqrt( C_s * d_inner / d_s ),    C_s = Π_{i >= s} N_i   (positions at stage s per innermost position)

normalised so the innermost stage has 1: the usual "lr ∝ sqrt(tokens per step)" and
"lr ∝ 1/width" rules applied to each stage's share of the batch.  For the 1-stage DNA model
(N = 3, d = [512, 768]) this gives [2.12, 1.0]; for the 2-stage XL widths [1024, 1536, 2048]
with 3-3 it gives [4.24, 2.0, 1.0] (the official example uses [3.0, 1.7, 0.9]).  Give an explicit
list (e.g. [2.0, 1.0]) to override, or ``none`` for all 1.

Schedules: linear warmup from 0 to the peak, then ``cosine`` down to ``min_lr_ratio``, ``wsd``
(constant, then a linear decay over the last ``decay_fraction`` of the steps), or ``constant``.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ..config import HNetConfig


def parameter_stage(name: str, num_stages: int) -> int:
    """The stage a parameter belongs to, from its name (embedding and head: stage 0).

    Stage ``s``'s ``HNet`` is ``backbone`` + ``.main_network`` × s; the innermost stage's
    isotropic stack is one ``main_network`` deeper still.
    """
    name = name.replace("_orig_mod.", "").replace("module.", "")
    depth = name.split(".").count("main_network")
    return min(depth, num_stages - 1)


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    return (param.ndim < 2 or name.endswith(".bias") or any("norm" in part for part in name.split(".")[:-1])
            or getattr(param, "_no_weight_decay", False))


def auto_lr_multipliers(cfg: HNetConfig, target_compression: Iterable[float]) -> list[float]:
    """``m_s = sqrt(C_s * d_inner / d_s)`` with ``C_s`` the product of the ratios from stage s inward."""
    ratios = list(target_compression)
    n = cfg.num_stages
    out = []
    for s in range(n):
        c = math.prod(ratios[s:]) if s < n - 1 else 1.0
        out.append(math.sqrt(c * cfg.d_model[-1] / cfg.d_model[s]))
    return out


def lr_multipliers(spec, cfg: HNetConfig, target_compression: Iterable[float]) -> list[float]:
    if spec == "auto":
        return auto_lr_multipliers(cfg, target_compression)
    if spec == "none":
        return [1.0] * cfg.num_stages
    return [float(m) for m in spec]


def param_groups(model: nn.Module, num_stages: int, multipliers: list[float], weight_decay: float) -> list[dict]:
    """AdamW groups by (stage, decay); each carries ``lr_mult`` and ``stage`` for the schedule."""
    groups: dict[tuple[int, bool], dict] = {}
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        stage = parameter_stage(name, num_stages)
        decay = not no_weight_decay(name, p)
        key = (stage, decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_mult": multipliers[stage], "stage": stage, "names": []}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, cfg: HNetConfig, optim_cfg, target_compression,
                    fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; fused on CUDA unless ``fused=False``."""
    mults = lr_multipliers(optim_cfg.lr_multipliers, cfg, target_compression)
    groups = param_groups(model, cfg.num_stages, mults, optim_cfg.weight_decay)
    for g in groups:
        g["lr"] = optim_cfg.lr * g["lr_mult"]
        g.pop("names")
    if fused is None:
        fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps,
                             fused=True if fused else None)


class LRSchedule:
    """Sets every group's lr to ``peak * lr_mult * factor(step)``; its state is just the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int, kind: str = "cosine",
                 warmup_steps: int = 0, min_lr_ratio: float = 0.1, decay_fraction: float = 0.2):
        self.optimizer, self.peak_lr, self.total = optimizer, peak_lr, max(int(total_steps), 1)
        self.kind, self.warmup, self.min_ratio, self.decay_fraction = kind, warmup_steps, min_lr_ratio, decay_fraction
        self.step_count = 0
        self.apply()

    def factor(self, step: int) -> float:
        """Multiplier of the peak lr for optimizer step ``step`` (0-based)."""
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        lo = self.min_ratio
        if self.kind == "cosine":
            span = max(self.total - self.warmup, 1)
            progress = min((step - self.warmup) / span, 1.0)
            return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * progress))
        # wsd: stable, then linear decay over the last decay_fraction of the run
        decay_steps = max(int(round(self.total * self.decay_fraction)), 1)
        start = self.total - decay_steps
        if step < start:
            return 1.0
        return lo + (1 - lo) * max(0.0, 1 - (step - start + 1) / decay_steps)

    def apply(self) -> None:
        f = self.factor(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = self.peak_lr * g.get("lr_mult", 1.0) * f

    def step(self) -> None:
        self.step_count += 1
        self.apply()

    @property
    def lr(self) -> float:
        return self.peak_lr * self.factor(self.step_count)

    def state_dict(self) -> dict:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.apply()


def build_schedule(optimizer, optim_cfg, schedule_cfg, total_steps: int) -> LRSchedule:
    return LRSchedule(optimizer, optim_cfg.lr, total_steps, schedule_cfg.kind, schedule_cfg.warmup_steps,
                      schedule_cfg.min_lr_ratio, schedule_cfg.decay_fraction)


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm (``max_norm`` 0: only measure it); returns the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)


__all__ = ["LRSchedule", "auto_lr_multipliers", "build_optimizer", "build_schedule", "clip_gradients",
           "lr_multipliers", "no_weight_decay", "param_groups", "parameter_stage"]
