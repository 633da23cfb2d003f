"""Model configuration: the official goombalab/hnet JSON schema plus our additions.

An official config (``configs/hnet_2stage_XL.json``) loads unchanged.  Our own files may add
``target_compression`` (one ratio per chunking stage) and ``modality``.  Every field is
validated at load; a bad one raises :class:`ConfigError` whose message names it.
"""
from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .errors import UserError

LAYOUT_PATTERN = re.compile(r"^([mMtT]\d+)+$")
# Activation checkpointing of the isotropic stacks (torch-free here, so configs validate without torch).
CHECKPOINTING = ("none", "blocks", "stages")


def presets_dir() -> Path:
    """The packaged ``configs/`` folder (``hnet_seq.configs``: official JSONs and run presets),
    or the source tree's."""
    try:
        from importlib.resources import files

        return Path(str(files("hnet_seq.configs")))
    except (ModuleNotFoundError, TypeError):
        # Editable installs cannot import a data-only folder mapped under a regular package.
        return Path(__file__).resolve().parents[1] / "configs"


class ConfigError(UserError, ValueError):
    """A config file or field is wrong; the message is one line naming it."""


@dataclass(frozen=True)
class SSMConfig:
    """Mamba-2 settings shared by every stage (as in the official configs)."""

    d_conv: int = 4
    expand: int = 2
    d_state: int = 128
    chunk_size: int = 256
    headdim: int = 64
    ngroups: int = 1


@dataclass(frozen=True)
class AttnConfig:
    """Attention settings, one entry per stage (outermost first)."""

    num_heads: list[int] = field(default_factory=list)
    rotary_emb_dim: list[int] = field(default_factory=list)
    window_size: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class HNetConfig:
    """The whole model: nested ``arch_layout`` plus per-stage widths.

    ``arch_layout`` nests as ``[encoder, [inner...], decoder]`` per stage, the innermost
    stage being ``[main]``; each string is a layout such as ``"m4"`` or ``"T1m4"``.
    """

    arch_layout: list[Union[str, list]] = field(default_factory=list)
    d_model: list[int] = field(default_factory=list)
    d_intermediate: list[int] = field(default_factory=list)
    vocab_size: int = 256
    ssm_cfg: SSMConfig = field(default_factory=SSMConfig)
    attn_cfg: AttnConfig = field(default_factory=AttnConfig)
    tie_embeddings: bool = False
    # Our additions: target compression ratio per chunking stage (outermost first), and the
    # modality the model was built for ("bytes", "dna", "audio" or any registered name).
    target_compression: list[float] = field(default_factory=list)
    modality: str = "bytes"

    @property
    def num_stages(self) -> int:
        """Number of stages (widths); a 1-stage H-Net has two (outer and main)."""
        return len(self.d_model)

    def layout_at(self, stage: int) -> list:
        """The ``arch_layout`` list of ``stage`` (0 = outermost)."""
        layout = self.arch_layout
        for _ in range(stage):
            layout = layout[1]
        return layout

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (dataclasses built from dicts)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"field '{where}': expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where + ".")
    if origin is Union:
        for option in typing.get_args(tp):
            try:
                return _check_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"field '{where}': expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"field '{where}': expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"field '{where}': expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown field '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    return cls(**{k: _check_value(v, hints[k], prefix + k) for k, v in data.items()})


def _check_layout(layout: Any, stage: int, num_stages: int, where: str) -> None:
    if not isinstance(layout, list) or len(layout) not in (1, 3):
        raise ConfigError(f"field '{where}': a stage is [encoder, [inner], decoder] or [main]")
    is_inner = len(layout) == 1
    if is_inner != (stage == num_stages - 1):
        raise ConfigError(f"field '{where}': nesting depth does not match len(d_model)={num_stages}")
    strings = layout if is_inner else [layout[0], layout[2]]
    for s in strings:
        if not isinstance(s, str) or not LAYOUT_PATTERN.match(s):
            raise ConfigError(f"field '{where}': bad layout {s!r}; use e.g. 'm4', 'T1m4', 'T22'")
    if not is_inner:
        _check_layout(layout[1], stage + 1, num_stages, where + "[1]")


def _layout_strings(layout: list, stage: int = 0):
    """Yield ``(stage, layout string)`` for every stack in a (validated) nested layout."""
    if len(layout) == 1:
        yield stage, layout[0]
    else:
        yield stage, layout[0]
        yield from _layout_strings(layout[1], stage + 1)
        yield stage, layout[2]


def validate(cfg: HNetConfig) -> HNetConfig:
    """Cross-field checks; raise ConfigError naming the field."""
    n = cfg.num_stages
    if n < 1:
        raise ConfigError("field 'd_model': needs one width per stage")
    if len(cfg.d_intermediate) != n:
        raise ConfigError(f"field 'd_intermediate': needs {n} entries (one per stage)")
    for name in ("num_heads", "rotary_emb_dim", "window_size"):
        if len(getattr(cfg.attn_cfg, name)) != n:
            raise ConfigError(f"field 'attn_cfg.{name}': needs {n} entries (one per stage)")
    _check_layout(cfg.arch_layout, 0, n, "arch_layout")
    for stage, layout in _layout_strings(cfg.arch_layout):
        if any(c in layout for c in "MT") and cfg.d_intermediate[stage] <= 0:
            raise ConfigError(f"field 'd_intermediate[{stage}]': layout {layout!r} has MLP blocks (uppercase) "
                              "but d_intermediate is 0")
    for i in range(1, n):
        if cfg.d_model[i] < cfg.d_model[i - 1]:
            raise ConfigError(f"field 'd_model[{i}]': inner stages may not be narrower")
    if cfg.target_compression and len(cfg.target_compression) != n - 1:
        raise ConfigError(f"field 'target_compression': needs {n - 1} entries (one per chunking stage)")
    if any(r <= 1.0 for r in cfg.target_compression):
        raise ConfigError("field 'target_compression': every ratio must be > 1")
    return cfg


def config_from_dict(data: dict) -> HNetConfig:
    """Build and validate an :class:`HNetConfig` from a parsed JSON/YAML mapping."""
    if not isinstance(data, dict):
        raise ConfigError("a model config must be a mapping")
    return validate(_build(HNetConfig, data))


def read_mapping(path: str | Path) -> dict:
    """Parse a JSON or YAML file into a dict, with a one-line error naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # both parsers' errors carry a line number
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(path: str | Path) -> HNetConfig:
    """Load a model config: an official flat file, or ours with the model under ``model:``."""
    data = read_mapping(path)
    if "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
