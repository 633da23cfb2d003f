"""Bring an untrained router to its target compression, for benchmarks of random-weight models.

A random router gives whatever compression its initial projections happen to give; a trained
one sits at the target.  A few Adam steps of the ratio loss alone, on the routing projections
only, move it there, so inner stages see the number of chunks a trained model would give them.
"""
from __future__ import annotations

import contextlib

import torch

from hnet_seq.nn.packing import Packing
from hnet_seq.train.objective import ratio_loss


def tune_router(model, inputs: torch.Tensor, packing: Packing, targets: list[float], steps: int = 60,
                lr: float = 3e-2) -> list[float]:
    """Optimise the routing projections on the ratio loss; return the compression reached per stage."""
    params = [p for n, p in model.named_parameters() if "routing_module" in n]
    opt = torch.optim.Adam(params, lr=lr)
    cuda = inputs.device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    for _ in range(steps):
        with autocast:
            routing = model(inputs, packing).routing
        loss = sum(ratio_loss(r.boundary_prob, r.boundary_mask, n) for r, n in zip(routing, targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad(), autocast:
        return [round(r.compression_ratio(), 2) for r in model(inputs, packing).routing]
