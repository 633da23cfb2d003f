"""Loading the run config of ``hnet-seq train``: model, modality, data, objective, optimiser,
schedule, training, logging and checkpoint sections in one YAML/JSON file (the sections'
dataclasses are :mod:`hnet_seq.train.schema`).

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
from pathlib import Path
from typing import Any

import yaml

from ..config import CHECKPOINTING, ConfigError, _build, config_from_dict, presets_dir, read_mapping
from ..runtime.device import PRECISIONS, precision_name
# The sections are importable from here too (the names of this module's __all__).
from .schema import (DEVICES, EVAL_SAMPLES, NONFINITE, PARALLEL, SCHEDULES, USER_FIELDS,  # noqa: F401
                     CheckpointSection, DataSection, LoggingSection, ModalitySection, ObjectiveSection,
                     OptimSection, RunConfig, ScheduleSection, TrainSection, parse_ratios)


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
