"""Data parallelism: one process per device, launched by ``torchrun``.

``init_distributed`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and starts NCCL on CUDA or gloo on CPU; without it the run is
one process and every helper here is a no-op.  ``HNET_SEQ_FORCE_DISTRIBUTED=1`` under torchrun joins
the process group even with one rank, so that the NCCL paths can be checked on a single GPU.  ``wrap_model`` applies DDP or FSDP2
(``torch.distributed.fsdp.fully_shard`` on every block, then the root).  The training loop has
one data-parallel path: it only ever calls ``reduce_sum`` and ``any_rank``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(choice: str) -> torch.device:
    from ..errors import UserError

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(choice)


FORCE_ENV = "HNET_SEQ_FORCE_DISTRIBUTED"


def join_requested(world: int) -> bool:
    """Whether to join torchrun's process group: several ranks, or one with ``FORCE_ENV=1``."""
    return world > 1 or ("RANK" in os.environ and os.environ.get(FORCE_ENV) == "1")


def init_distributed(device_choice: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; choose this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_choice)
    if not join_requested(world):
        return DistInfo(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world, local_rank, device, backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks (a copy; the identity on one process)."""
    if not info.enabled:
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def make_reducer(info: DistInfo):
    return lambda t: reduce_sum(t, info)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is True on any (e.g. Ctrl-C reached one of them)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable), on every rank."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _shard_units(model: nn.Module) -> list[nn.Module]:
    """FSDP2 units: every isotropic stack (encoder, decoder, main network of each stage).

    Stacks rather than single blocks: ``Block`` defines its own ``_apply`` (shadowing
    ``nn.Module._apply``), which breaks FSDP2's module wrapping at block level.
    """
    from ..nn.isotropic import Isotropic

    return [m for m in model.modules() if isinstance(m, Isotropic)]


def wrap_model(model: nn.Module, mode: str, info: DistInfo) -> nn.Module:
    """DDP or FSDP2 around ``model`` (already on ``info.device``); unchanged on one process."""
    if not info.enabled:
        return model
    if mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        for unit in _shard_units(model):
            fully_shard(unit, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The HNetLM under DDP and/or torch.compile wrappers (FSDP2 shards in place: itself)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


__all__ = ["FORCE_ENV", "DistInfo", "any_rank", "barrier", "gather_objects", "init_distributed", "join_requested", "make_reducer",
           "pick_device", "reduce_sum", "shutdown", "unwrap", "wrap_model"]
