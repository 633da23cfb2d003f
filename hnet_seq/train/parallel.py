"""Model wrapping for data parallelism: DDP or FSDP2 around the model, and back.

``wrap_model`` applies DDP or FSDP2 (``torch.distributed.fsdp.fully_shard`` on every isotropic
stack, then the root) in the process group that :func:`hnet_seq.runtime.distributed.init_distributed`
joined; on one process the model is returned unchanged.  Rank, world and collectives live in
:mod:`hnet_seq.runtime.distributed`.
"""
from __future__ import annotations

from torch import nn

from ..runtime.distributed import DistInfo


def _shard_units(model: nn.Module) -> list[nn.Module]:
    """FSDP2 units: every isotropic stack (encoder, decoder, main network of each stage).

    Stacks rather than single blocks: one all-gather of parameters per stack, not per block.
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

        mesh = init_device_mesh(info.device.type, (info.world,))
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


__all__ = ["unwrap", "wrap_model"]
