"""The only rank / world / process-group helpers, for training and inference alike.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``);
without them the run is one process and every helper here is a no-op.  :func:`init_distributed`
joins the group when there are several ranks, or one rank with ``HNET_SEQ_FORCE_DISTRIBUTED=1``
(so that the NCCL paths can be checked on a single GPU), on NCCL for CUDA and gloo for CPU.

Collectives come in two kinds: tensor ones that take the :class:`DistInfo` of the group they run
on (``reduce_sum``, ``any_rank``, ``gather_objects``: the training loop), and small host-side
votes and counts that need no tensor device of the caller's (``broadcast_ok``, ``all_sum``: the
inference part-file merges).  ``barrier`` works on whatever group is joined.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .device import pick_device

FORCE_ENV = "HNET_SEQ_FORCE_DISTRIBUTED"


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run; ``backend`` is ``None`` outside a process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (one process when absent)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return DistInfo()


def join_requested(world: int) -> bool:
    """Whether to join torchrun's process group: several ranks, or one with ``FORCE_ENV=1``."""
    return world > 1 or ("RANK" in os.environ and os.environ.get(FORCE_ENV) == "1")


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; this process's device is
    ``cuda:LOCAL_RANK`` on CUDA (``device``: a choice for :func:`pick_device`, or a device)."""
    env = dist_info()
    device = pick_device(device) if isinstance(device, str) else device
    if not join_requested(env.world):
        return DistInfo(env.rank, env.world, env.local_rank, device)
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(env.rank, env.world, env.local_rank, device, backend)


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def group_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` in the joined process group; ``(0, 1)`` outside one."""
    return (dist.get_rank(), dist.get_world_size()) if _joined() else (0, 1)


def shutdown(wait: bool = False) -> None:
    """Leave the joined process group (a no-op outside one).

    ``wait``: first pass a barrier with every rank, so none leaves while another is still in a
    collective (PyTorch's teardown advice; without it rank 1 of a gloo torchrun run once aborted
    at exit after "done").  Only for a clean end: a failing rank must not wait, since the others
    may be inside a collective that it will never join (torchrun ends them)."""
    if _joined():
        if wait:
            barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank of the joined group (a no-op on one process)."""
    if not _joined():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


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
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks (the values themselves on one process)."""
    if not _joined():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast_ok(ok: bool) -> bool:
    """True only when every rank reports ``ok`` (so that all ranks fail together)."""
    return all_sum([0 if ok else 1])[0] == 0


__all__ = ["FORCE_ENV", "DistInfo", "all_sum", "any_rank", "barrier", "broadcast_ok", "dist_info", "gather_objects",
           "group_rank_world", "init_distributed", "join_requested", "make_reducer", "reduce_sum", "shutdown"]
