"""What a training run trains with, built from its config: the adapter, the model (on the
device, wrapped for DDP/FSDP2, compiled if asked), the data, AdamW, the schedule and the
objective.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..model import HNetLM
from ..nn.isotropic import set_activation_checkpointing
from ..runtime.distributed import DistInfo
from .data import TrainData
from .objective import Objective
from .optim import build_optimizer, build_schedule
from .parallel import unwrap, wrap_model
from .schema import RunConfig


def _build_model(cfg, modality: str, options: dict, device: torch.device):
    """Model and adapter, built on ``device`` directly.

    (Like :func:`hnet_seq.checkpoint.build_model`, but the weights are created on ``device``
    instead of on the CPU and then moved.)
    """
    from ..modalities import get_adapter

    adapter = get_adapter(modality, **(options or {}))
    d = cfg.d_model[0]
    embeddings, head = adapter.make_embedding(d).to(device), adapter.make_head(d).to(device)
    return HNetLM(cfg, embeddings=embeddings, lm_head=head, device=device), adapter


def head_out_features(model) -> int | None:
    """The head's output width (for its FLOPs), if it is a linear layer."""
    head = unwrap(model).lm_head
    return getattr(head, "out_features", None)


@dataclass
class RunParts:
    model_cfg: object  # HNetConfig, with the adapter's table size as vocab_size
    adapter: object
    model: torch.nn.Module  # wrapped (DDP/FSDP2) and compiled as the config asks
    n_params: int
    data: TrainData
    targets: list[float]  # target compression per chunking stage
    optimizer: torch.optim.Optimizer
    schedule: object
    objective: Objective


def build_run(cfg: RunConfig, info: DistInfo, data_paths: list[str] | None) -> RunParts:
    """The parts, the same initial weights on every rank (``train.seed``)."""
    from ..modalities import get_adapter

    adapter = get_adapter(cfg.modality.name, **cfg.modality.options)
    model_cfg = cfg.model_config
    if hasattr(adapter, "table_size") and model_cfg.vocab_size != adapter.table_size:
        model_cfg = dataclasses.replace(model_cfg, vocab_size=adapter.table_size)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    model, adapter = _build_model(model_cfg, cfg.modality.name, cfg.modality.options, info.device)
    model.init_weights()
    set_activation_checkpointing(model, cfg.train.activation_checkpointing)
    n_params = sum(p.numel() for p in model.parameters())
    data = TrainData(cfg, adapter, info.rank, info.world, data_paths)
    model = wrap_model(model, cfg.train.parallel, info)
    if cfg.train.compile:
        model = torch.compile(model, dynamic=True)
    targets = cfg.target_compression()
    optimizer = build_optimizer(model, model_cfg, cfg.optim, targets,
                                fused=info.device.type == "cuda" and cfg.train.parallel != "fsdp")
    schedule = build_schedule(optimizer, cfg.optim, cfg.schedule, cfg.train.steps)
    objective = Objective(targets, cfg.objective.ratio_loss_weight, getattr(adapter, "units_per_position", 1))
    return RunParts(model_cfg, adapter, model, n_params, data, targets, optimizer, schedule, objective)


__all__ = ["RunParts", "build_run", "head_out_features"]
