"""Held-out evaluation of a training run: bits per base/byte/sample and each stage's compression,
summed over ranks.
"""
from __future__ import annotations

from typing import Callable

import torch

from .data import to_device
from .objective import LN2


@torch.no_grad()
def evaluate(model, batches: list[dict], adapter, n_stages: int, unscored: int, device: torch.device,
             autocast: Callable, reduce: Callable, stopped: Callable[[], bool]) -> dict | None:
    """``{"bits_per_unit", "compression", "units", "unscored"}`` over the held-out ``batches``.

    ``n_stages``: chunking stages; ``unscored``: held-out targets in the windows but never in
    the loss (DNA: N); ``reduce`` sums a float64 tensor over ranks; ``stopped()`` true: None
    (a partial evaluation would mislead).  The model is back in train mode on return.
    """
    model.eval()
    sums = torch.zeros(3 + 2 * n_stages, dtype=torch.float64, device=device)
    sums[-1] = unscored  # N targets: in the windows, not in the loss
    upp = getattr(adapter, "units_per_position", 1)
    for raw in batches:
        if stopped():
            model.train()
            return None
        b = to_device(raw, adapter.input_key, device)
        with autocast():
            out = model(b.inputs, b.packing)
            nll = adapter.loss(out.logits, b.targets)
        parts = [(nll.double() * b.weights.double()).sum(), b.weights.double().sum() * upp]
        for r in out.routing:
            parts += [r.boundary_mask.double().sum(), torch.tensor(float(r.boundary_mask.numel()),
                                                                   dtype=torch.float64, device=sums.device)]
        sums[:-1] += torch.stack(parts)
    model.train()
    total = reduce(sums).tolist()
    bpu = total[0] / max(total[1], 1.0) / LN2
    comp = [total[3 + 2 * i] / max(total[2 + 2 * i], 1.0) for i in range(n_stages)]
    return {"bits_per_unit": bpu, "compression": comp, "units": total[1], "unscored": total[-1]}


__all__ = ["evaluate"]
