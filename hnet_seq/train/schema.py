"""The run config's schema: one frozen dataclass per section (model, modality, data, objective,
optim, schedule, train, logging, checkpoint) with its defaults, and the choices a field may take.

Loading and validating a file into these is :mod:`hnet_seq.train.config`.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..config import ConfigError, HNetConfig


SCHEDULES = ("cosine", "wsd", "constant")
NONFINITE = ("stop", "skip")
PARALLEL = ("ddp", "fsdp")
DEVICES = ("auto", "cpu", "cuda")
EVAL_SAMPLES = ("first", "spread")


@dataclass(frozen=True)
class ModalitySection:
    """Which adapter turns files into model inputs, and its options (see ``hnet_seq.modalities``)."""

    name: str = "dna"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """Where training windows come from and how they are batched (per rank).

    Files (FASTA, text, JSONL, audio, or folders of them) are read into memory and cut into
    windows; webdataset shards (``.tar``, a folder of them, or a brace pattern) are streamed.
    """

    paths: list[str] = field(default_factory=list)  # empty: the modality's default (DNA: shipped genome)
    heldout_paths: list[str] = field(default_factory=list)  # separate held-out files; else carve from paths
    heldout_by: str = "region"  # region: the tail of every record; record: whole records
    heldout_fraction: float = 0.05  # share of every record (or of the records) held out, never trained on
    seq_len: int = 1024  # window length in positions (bases, bytes, frames)
    stride: Optional[int] = None  # distance between training windows (default seq_len: no overlap)
    tokens_per_batch: int = 8192  # per-rank token budget of one step
    eval_tokens: int = 65536  # held-out positions per evaluation (all ranks together)
    # Which held-out batches eval_tokens takes: the first ones in file order, or ones spread
    # evenly over the whole held-out set (a fixed sample of a genome, not its first megabases).
    eval_sample: str = "first"
    rc_augment: bool = False  # DNA: read each training window from a random strand
    # DNA: drop windows whose share of N exceeds this (a human chromosome's Mbp N gaps make no
    # window; windows with no scorable base are always dropped).  N left in a window is input
    # only: never a target in the loss.  metrics.jsonl says how many N were dropped / kept.
    max_n_frac: float = 0.1
    shuffle_buffer: int = 1000  # shards: records held for shuffling
    num_workers: int = 0  # DataLoader worker processes per rank


@dataclass(frozen=True)
class ObjectiveSection:
    """Modality NLL + ``ratio_loss_weight`` × Σ_stages ratio (load-balancing) loss."""

    ratio_loss_weight: float = 0.03  # the paper's alpha
    # Target compression per chunking stage (outermost first), a list or "3-3"; empty: the
    # model config's target_compression, else 3 per stage.
    target_compression: Union[list[float], float, str] = field(default_factory=list)


@dataclass(frozen=True)
class OptimSection:
    """AdamW; no weight decay on norms, biases, 1-D and ``_no_weight_decay`` parameters."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    # One multiplier per stage (outermost first) or "auto" (see hnet_seq.train.optim.auto_lr_multipliers).
    lr_multipliers: Union[list[float], str] = "auto"


@dataclass(frozen=True)
class ScheduleSection:
    """Linear warmup, then cosine decay, WSD (warmup-stable-decay) or constant."""

    kind: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # final lr / peak lr
    decay_fraction: float = 0.2  # WSD: the last fraction of steps decays


@dataclass(frozen=True)
class TrainSection:
    steps: int = 1000
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    precision: str = "auto"  # auto, float32 or bfloat16 (auto: bfloat16 autocast on CUDA only)
    compile: bool = False
    activation_checkpointing: str = "none"  # none | blocks | stages: recompute activations in the backward
    parallel: str = "ddp"  # data-parallel flavour under torchrun: ddp or fsdp (FSDP2 fully_shard)
    on_nonfinite: str = "stop"  # NaN/inf loss or gradient: stop (keep last good checkpoint) or skip the step
    max_skipped_steps: int = 20  # with on_nonfinite=skip, stop after this many skipped steps in a row
    inject_nan_at_step: Optional[int] = None  # test hook: make the loss NaN at this step
    threads: int = 0  # CPU threads for torch (0: torch's default)


@dataclass(frozen=True)
class LoggingSection:
    every: int = 1  # write a metrics.jsonl record every N steps
    print_every: int = 0  # no progress bar: a line every N steps (0: every $HNET_SEQ_PROGRESS_SECONDS s, 30)
    eval_every: int = 200  # held-out evaluation every N steps (0: only at the end)
    progress: Union[str, bool] = "auto"  # rich progress bar: auto (on a terminal), on, off
    tensorboard: bool = False
    wandb: bool = False  # also log to Weights & Biases (needs `pip install wandb`)
    wandb_project: str = "hnet-seq"
    wandb_mode: str = "online"  # online, or offline (sync later with `wandb sync RUN_DIR/wandb`)
    peak_tflops: Optional[float] = None  # for MFU; default from the GPU's name


@dataclass(frozen=True)
class CheckpointSection:
    every: int = 500  # steps between checkpoints (0: only at the end)
    keep: int = 3  # keep the last k step checkpoints
    at_end: bool = True


@dataclass(frozen=True)
class RunConfig:
    model: Union[str, dict] = field(default_factory=dict)
    modality: ModalitySection = field(default_factory=ModalitySection)
    data: DataSection = field(default_factory=DataSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    # Filled at load: the validated model config (from ``model``), not a user field.
    model_config: Optional[Any] = field(default=None, compare=False)
    source: Optional[str] = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (model inline) as written to ``RUN_DIR/run_config.json``."""
        out = {f.name: dataclasses.asdict(getattr(self, f.name)) if dataclasses.is_dataclass(getattr(self, f.name))
               else copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("model_config", "source")}
        out["model"] = self.model_config.to_dict()
        return out

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def num_chunking_stages(self) -> int:
        return self.model_config.num_stages - 1

    def target_compression(self) -> list[float]:
        """Target ratio per chunking stage, outermost first."""
        return parse_ratios(self.objective.target_compression, self.model_config)


USER_FIELDS = [f.name for f in dataclasses.fields(RunConfig) if f.name not in ("model_config", "source")]


def parse_ratios(value: Union[list[float], float, str], model_cfg: HNetConfig) -> list[float]:
    """``objective.target_compression`` (a list, a number or ``"3-3"``; empty: the model's) as one
    ratio per chunking stage, outermost first."""
    n = model_cfg.num_stages - 1
    if isinstance(value, (int, float)):
        value = [float(value)]
    if isinstance(value, str):
        try:
            ratios = [float(x) for x in value.split("-")]
        except ValueError:
            raise ConfigError(f"field 'objective.target_compression': {value!r} is not like '3' or '3-3'") from None
    else:
        ratios = list(value)
    if not ratios:
        ratios = list(model_cfg.target_compression) or [3.0] * n
    if len(ratios) != n:
        raise ConfigError(f"field 'objective.target_compression': needs {n} ratio(s), one per chunking stage")
    if any(not r > 1.0 for r in ratios):
        raise ConfigError("field 'objective.target_compression': every ratio must be > 1")
    return ratios


__all__ = ["CheckpointSection", "DataSection", "LoggingSection", "ModalitySection", "ObjectiveSection",
           "OptimSection", "RunConfig", "ScheduleSection", "TrainSection", "USER_FIELDS", "parse_ratios"]
