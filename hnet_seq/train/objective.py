"""The training objective: the modality's NLL plus the paper's ratio (load-balancing) loss.

For each chunking stage with target compression ``N``, ``F`` the fraction of positions
selected as chunk starts and ``G`` the mean boundary probability (H-Net, eq. 10):

    L_ratio = N / (N - 1) * ((N - 1) * F * G + (1 - F) * (1 - G))

It is minimal (= 1) when ``F = G = 1/N``.  ``F`` carries no gradient; ``G`` does, which pushes
the router towards the target.  The total is ``NLL + alpha * Σ_stages L_ratio`` (alpha 0.03).

Data parallelism.  Dynamic chunking and variable packing give every rank different numbers of
units and of boundaries, so every statistic is global: NLL is summed and divided by the global
unit count, and ``F``, ``G`` are global fractions.  The backward pass uses a surrogate whose
*value* is the global quantity and whose gradient, once DDP/FSDP average gradients over the
``W`` ranks, equals the gradient of the global quantity: ``W * local_sum / global_count``.
One process on the concatenated batch therefore computes the same loss and gradients.
(The official code averages per-device ratio losses instead; on one device they coincide.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..modalities.base import LN2
from ..nn.routing import RoutingOutput


def ratio_loss_value(F: torch.Tensor | float, G: torch.Tensor | float, N: float):
    """The formula on given ``F`` (fraction selected) and ``G`` (mean boundary probability)."""
    if not N > 1:
        raise ValueError(f"target compression N must be > 1, got {N}")
    return N / (N - 1) * ((N - 1) * F * G + (1 - F) * (1 - G))


def ratio_loss(boundary_prob: torch.Tensor, boundary_mask: torch.Tensor, N: float) -> torch.Tensor:
    """One stage's ratio loss over the given positions (one device, the official form)."""
    F = boundary_mask.float().mean()
    G = boundary_prob.float().mean()
    return ratio_loss_value(F, G, N)


# A reducer sums a 1-D float tensor over the data-parallel ranks (identity on one process).
Reducer = Callable[[torch.Tensor], torch.Tensor]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar to backpropagate; its value is the global total
    nll: float  # global mean NLL per unit, nats
    units: float  # global number of (weighted) units in the loss
    ratio_losses: list[float] = field(default_factory=list)  # per stage, global
    compression: list[float] = field(default_factory=list)  # per stage: positions per chunk, global
    boundary_prob: list[float] = field(default_factory=list)  # per stage: G
    positions: list[float] = field(default_factory=list)  # per stage: global positions entering the stage
    nll_sum: float = 0.0  # global summed NLL (nats)
    extra: list[float] = field(default_factory=list)  # global sums of the ``extra`` inputs
    total: float = 0.0  # global value of the whole objective (what loss.item() would give, in fp64)

    @property
    def bits_per_unit(self) -> float:
        return self.nll / LN2


class Objective:
    """``NLL + alpha Σ ratio_loss`` with global statistics over data-parallel ranks."""

    def __init__(self, target_compression: Sequence[float], alpha: float = 0.03, units_per_position: int = 1):
        self.targets = [float(n) for n in target_compression]
        for n in self.targets:
            if not n > 1:
                raise ValueError(f"target compression must be > 1, got {n}")
        self.alpha = float(alpha)
        self.units_per_position = int(units_per_position)  # raw audio: samples predicted per position

    def __call__(self, nll: torch.Tensor, weights: torch.Tensor, routing: list[RoutingOutput],
                 reduce: Reducer = _identity, world_size: int = 1, extra: Sequence[float] = ()) -> ObjectiveOutput:
        """``nll (T,)`` per-position NLL in nats and ``weights (T,)`` (0 = not in the loss).

        The NLL is normalised per *unit*: ``weights.sum() * units_per_position`` over all ranks.
        ``extra`` are further local numbers to sum over ranks in the same all-reduce (e.g.
        positions, FLOPs); their global sums come back in ``out.extra``.
        """
        if len(routing) != len(self.targets):
            raise ValueError(f"model has {len(routing)} chunking stage(s) but {len(self.targets)} target ratio(s)")
        W = float(world_size)
        weights = weights.float()
        local_sum = (nll.float() * weights).sum()
        # One all-reduce for every statistic: [nll_sum, units, (selected, positions, prob_sum) per stage].
        stats = [local_sum.detach(), weights.sum() * self.units_per_position]
        for r in routing:
            stats += [r.boundary_mask.float().sum(), torch.tensor(float(r.boundary_mask.numel()),
                                                                  device=nll.device),
                      r.boundary_prob.detach().float().sum()]
        n_extra = len(extra)
        stats += [torch.tensor(float(x), device=nll.device) for x in extra]
        total = reduce(torch.stack(stats))
        vals = total.tolist()  # one host sync for every logged number
        units = total[1].clamp(min=1.0)
        # value: global mean; gradient (after DDP's average over W ranks): that of the global mean.
        scaled = local_sum * W
        loss = (scaled - scaled.detach() + total[0]) / units
        out = ObjectiveOutput(loss, vals[0] / max(vals[1], 1.0), vals[1], nll_sum=vals[0])
        for i, (r, N) in enumerate(zip(routing, self.targets)):
            selected, positions, prob_sum = total[2 + 3 * i: 5 + 3 * i]
            n_sel, n_pos, p_sum = vals[2 + 3 * i: 5 + 3 * i]
            F = selected / positions.clamp(min=1.0)
            local_prob = r.boundary_prob.float().sum() * W
            G = (local_prob - local_prob.detach() + prob_sum) / positions.clamp(min=1.0)
            loss = loss + self.alpha * ratio_loss_value(F, G, N)
            f, g = n_sel / max(n_pos, 1.0), p_sum / max(n_pos, 1.0)
            out.ratio_losses.append(ratio_loss_value(f, g, N))
            out.compression.append(n_pos / max(n_sel, 1.0))
            out.boundary_prob.append(g)
            out.positions.append(n_pos)
        out.extra = vals[len(vals) - n_extra:] if n_extra else []
        out.loss = loss
        out.total = out.nll + self.alpha * sum(out.ratio_losses)
        return out


__all__ = ["LN2", "Objective", "ObjectiveOutput", "ratio_loss", "ratio_loss_value"]
