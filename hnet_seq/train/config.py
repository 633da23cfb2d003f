"""The run config of ``hnet-seq train``: model, modality, data, objective, optimiser, schedule,
training, logging and checkpoint sections in one YAML/JSON file.

Every field is validated when the file is loaded, with the model config's own helpers, so a
typo or a wrong type is one :class:`~hnet_seq.config.ConfigError` line naming the field
(``unknown field 'optim.lrr'``).  Overrides (``overrides=["optim.lr=1e-3"]``) are applied
to the parsed mapping before validation and go through the same checks.

``model`` is either an inline mapping (the model JSON schema of :mod:`hnet_seq.config`) or the
path of a model JSON/YAML file, resolved relative to the run config's folder and then to the
packaged ``configs/``.  A config argument may itself be a preset name (``dna-tiny``), resolved
in the packaged ``configs/`` folder.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ..config import CHECKPOINTING, ConfigError, HNetConfig, _build, config_from_dict, presets_dir, read_mapping
from ..runtime.device import PRECISIONS, precision_name

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


# --------------------------------------------------------------------------------------------
# Presets and paths


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def resolve_config_path(name: str | Path) -> Path:
    """A file as given, else a preset name (``dna-tiny`` or ``dna-tiny.yaml``) in ``configs/``.

    A folder of a preset's name in the working directory (``audio/``) does not hide the preset.
    """
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (presets_dir() / str(name), presets_dir() / f"{name}.yaml"):
        if candidate.is_file() and not path.parent.name:
            return candidate
    presets = ", ".join(list_presets())
    if path.is_dir():
        raise ConfigError(f"{name}: is a folder, not a config file or preset (presets: {presets})")
    raise ConfigError(f"{name}: no such config file or preset (presets: {presets})")


def _resolve_model_path(value: str, base: Path | None) -> Path:
    for root in ([base] if base else []) + [Path.cwd(), presets_dir()]:
        candidate = root / value
        if candidate.is_file():
            return candidate
    raise ConfigError(f"field 'model': no such model config {value!r} (a path, relative to the run "
                      "config, or a file in the packaged configs/)")


# --------------------------------------------------------------------------------------------
# Overrides


_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; read such strings as floats."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``optim.lr=1e-3`` → (["optim", "lr"], 0.001); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"overrides {text!r}: expected key=value, e.g. optim.lr=1e-3", params=("overrides",))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), _numbers(value)


def apply_override(data: dict, keys: list[str], value: Any, text: str = "") -> None:
    node = data
    for i, k in enumerate(keys[:-1]):
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"overrides {text or '.'.join(keys)}: '{'.'.join(keys[:i + 1])}' is not a section",
                              params=("overrides",))
        node = child
    node[keys[-1]] = value


# --------------------------------------------------------------------------------------------
# Loading and validation


def parse_ratios(value: Union[list[float], float, str], model_cfg: HNetConfig) -> list[float]:
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


def _check_choice(value: str, choices: tuple, where: str) -> None:
    if value not in choices:
        raise ConfigError(f"field '{where}': {value!r} is not one of {', '.join(choices)}")


def _check_positive(value, where: str, allow_zero: bool = False) -> None:
    if isinstance(value, float) and not math.isfinite(value) or (value < 0 if allow_zero else value <= 0):
        raise ConfigError(f"field '{where}': must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def validate_run(cfg: RunConfig) -> RunConfig:
    """Cross-field checks, each a one-line ConfigError naming the field."""
    _check_choice(cfg.schedule.kind, SCHEDULES, "schedule.kind")
    _check_choice(cfg.train.on_nonfinite, NONFINITE, "train.on_nonfinite")
    _check_choice(cfg.train.parallel, PARALLEL, "train.parallel")
    try:  # fp32/bf16 (older configs) are read as float32/bfloat16
        precision_name(cfg.train.precision)
    except ValueError:
        _check_choice(cfg.train.precision, PRECISIONS, "train.precision")
    _check_choice(cfg.train.activation_checkpointing, CHECKPOINTING, "train.activation_checkpointing")
    _check_choice(cfg.train.device, DEVICES, "train.device")
    _check_choice(cfg.logging.progress, ("auto", "on", "off"), "logging.progress")
    _check_choice(cfg.logging.wandb_mode, ("online", "offline"), "logging.wandb_mode")
    if not cfg.logging.wandb_project.strip():
        raise ConfigError("field 'logging.wandb_project': must not be empty")
    _check_positive(cfg.optim.lr, "optim.lr")
    _check_positive(cfg.optim.eps, "optim.eps")
    _check_positive(cfg.optim.weight_decay, "optim.weight_decay", allow_zero=True)
    _check_positive(cfg.optim.grad_clip, "optim.grad_clip", allow_zero=True)
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError("field 'optim.betas': two numbers in [0, 1), e.g. [0.9, 0.95]")
    _check_positive(cfg.objective.ratio_loss_weight, "objective.ratio_loss_weight", allow_zero=True)
    _check_positive(cfg.train.steps, "train.steps")
    _check_positive(cfg.schedule.warmup_steps, "schedule.warmup_steps", allow_zero=True)
    if not 0 <= cfg.schedule.min_lr_ratio <= 1:
        raise ConfigError("field 'schedule.min_lr_ratio': must be in [0, 1]")
    if not 0 < cfg.schedule.decay_fraction <= 1:
        raise ConfigError("field 'schedule.decay_fraction': must be in (0, 1]")
    _check_positive(cfg.data.seq_len, "data.seq_len")
    _check_positive(cfg.data.tokens_per_batch, "data.tokens_per_batch")
    _check_positive(cfg.data.eval_tokens, "data.eval_tokens", allow_zero=True)
    _check_positive(cfg.data.num_workers, "data.num_workers", allow_zero=True)
    _check_choice(cfg.data.heldout_by, ("region", "record"), "data.heldout_by")
    _check_choice(cfg.data.eval_sample, EVAL_SAMPLES, "data.eval_sample")
    if cfg.data.stride is not None:
        _check_positive(cfg.data.stride, "data.stride")
    if not 0 <= cfg.data.max_n_frac <= 1:
        raise ConfigError("field 'data.max_n_frac': must be in [0, 1]")
    if not 0 <= cfg.data.heldout_fraction < 1:
        raise ConfigError("field 'data.heldout_fraction': must be in [0, 1)")
    if cfg.data.tokens_per_batch < cfg.data.seq_len:
        raise ConfigError(f"field 'data.tokens_per_batch': {cfg.data.tokens_per_batch} is smaller than one "
                          f"window (data.seq_len={cfg.data.seq_len})")
    for name in ("every", "eval_every", "print_every"):
        _check_positive(getattr(cfg.logging, name), f"logging.{name}", allow_zero=True)
    _check_positive(cfg.checkpoint.every, "checkpoint.every", allow_zero=True)
    _check_positive(cfg.checkpoint.keep, "checkpoint.keep")
    _check_positive(cfg.train.threads, "train.threads", allow_zero=True)
    n_stages = cfg.model_config.num_stages
    parse_ratios(cfg.objective.target_compression, cfg.model_config)
    mult = cfg.optim.lr_multipliers
    if isinstance(mult, str):
        _check_choice(mult, ("auto", "none"), "optim.lr_multipliers")
    elif len(mult) != n_stages or any(m <= 0 for m in mult):
        raise ConfigError(f"field 'optim.lr_multipliers': needs {n_stages} positive numbers (one per stage, "
                          "outermost first) or 'auto'")
    return cfg


def run_config_from_dict(data: dict, base: Path | None = None, source: str | None = None) -> RunConfig:
    """Validate a parsed mapping (model inline or a path) into a :class:`RunConfig`."""
    if not isinstance(data, dict):
        raise ConfigError("a run config must be a mapping with sections model, data, optim, ...")
    data = _numbers(copy.deepcopy(data))
    unknown = sorted(set(data) - set(USER_FIELDS))
    if unknown:
        raise ConfigError(f"unknown field '{unknown[0]}' (known sections: {', '.join(USER_FIELDS)})")
    model = data.get("model")
    if model is None or model == {}:
        raise ConfigError("field 'model': missing (an inline model config or the path of a model JSON)")
    if isinstance(model, str):
        data["model"] = read_mapping(_resolve_model_path(model, base))
    elif not isinstance(model, dict):
        raise ConfigError(f"field 'model': expected a mapping or a path, got {model!r}")
    try:
        model_cfg = config_from_dict(data["model"])
    except ConfigError as e:
        msg = str(e)
        msg = msg.replace("field '", "field 'model.", 1).replace("unknown field '", "unknown field 'model.", 1)
        raise ConfigError(msg) from None
    logging = data.get("logging")
    if isinstance(logging, dict) and isinstance(logging.get("progress"), bool):  # YAML reads on/off as booleans
        logging["progress"] = "on" if logging["progress"] else "off"
    cfg = _build(RunConfig, data)
    modality = cfg.modality.name
    model_cfg = dataclasses.replace(model_cfg, modality=modality,
                                    target_compression=parse_ratios(cfg.objective.target_compression, model_cfg))
    cfg = dataclasses.replace(cfg, model=data["model"], model_config=model_cfg, source=source)
    return validate_run(cfg)


def load_run_config(config: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Load a run config file or preset, apply ``key=value`` overrides, validate everything.

    Errors are one line naming the file and the field.
    """
    path = resolve_config_path(config)
    data = read_mapping(path)
    try:
        if isinstance(data.get("model"), str):  # so that overrides may reach into a model file
            data["model"] = read_mapping(_resolve_model_path(data["model"], path.parent))
        for text in overrides:
            keys, value = parse_override(text)
            apply_override(data, keys, value, text)
        return run_config_from_dict(data, base=path.parent, source=str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}", params=e.params) from None


def save_run_config(cfg: RunConfig, path: str | Path) -> None:
    from ..checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(cfg.to_dict(), indent=2) + "\n")


__all__ = ["CheckpointSection", "DataSection", "LoggingSection", "ModalitySection", "ObjectiveSection",
           "OptimSection", "RunConfig", "ScheduleSection", "TrainSection", "apply_override", "list_presets",
           "load_run_config", "parse_override", "parse_ratios", "presets_dir", "resolve_config_path",
           "run_config_from_dict", "save_run_config", "validate_run"]
