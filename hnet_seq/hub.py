"""Model names: the packaged official configs, and Hugging Face Hub repositories.

Three kinds of name stand for a model:

* a local path: our checkpoint directory (``model.safetensors`` + ``config.json`` +
  ``modality.json``, the layout :meth:`HNetLM.save_pretrained` writes) or an official ``.pt``;
* a Hub repo id (``cartesia-ai/hnet_2stage_L``, ``me/my-dna-model``), fetched with
  :func:`huggingface_hub.snapshot_download` into the standard Hub cache (``HF_HOME`` /
  ``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` reads the cache only);
* for configs only, a packaged config name (``hnet_2stage_L``): ``configs/*.json`` ship as
  ``hnet_seq.configs``.

An official ``.pt`` needs no config when its file or repo name is a packaged config's name
(``hnet_2stage_XL.pt``, ``cartesia-ai/hnet_2stage_XL``).  This module only turns names into local
paths; :mod:`hnet_seq.checkpoint` is the one place that reads model files.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from .config import ConfigError, presets_dir
from .errors import UserError

# What a model repo may hold that we read; anything else (README, images) is not fetched.
HUB_PATTERNS = ["model.safetensors", "config.json", "modality.json", "*.pt"]


def packaged_configs() -> dict[str, Path]:
    """Model configs shipped with the package, by name (``hnet_2stage_L`` -> its JSON)."""

    return {p.stem: p for p in sorted(presets_dir().glob("*.json"))}


def resolve_config(value: str | Path) -> Path:
    """A config path as given, else a packaged config name (``hnet_2stage_L``)."""
    path = Path(value)
    if path.exists():
        return path
    packaged = packaged_configs()
    name = path.name[:-5] if path.name.endswith(".json") else path.name
    if not path.parent.name and name in packaged:
        return packaged[name]
    raise ConfigError(f"{value}: no such config file or packaged config (packaged: {', '.join(packaged)})")


def config_named_by(name: str | Path) -> Path | None:
    """The packaged config whose name is ``name``'s last component (``.pt`` stripped), if any."""
    stem = PurePosixPath(str(name)).name
    if stem.endswith(".pt"):
        stem = stem[:-3]
    return packaged_configs().get(stem)


def is_repo_id(value: str | Path) -> bool:
    """``org/name`` that is not a local path: a Hugging Face Hub model repo id."""
    text = str(value)
    if Path(text).exists() or text.count("/") != 1 or text.startswith((".", "/")):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def snapshot(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
             force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """The local folder of ``repo_id``'s snapshot (downloaded, or from the cache when offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HFValidationError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled)

    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=local_files_only, token=token, allow_patterns=HUB_PATTERNS)
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, HFValidationError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{repo_id}: no such local path, and cannot fetch it from the Hugging Face Hub "
                        f"({first})") from None
    return Path(folder)


def model_file(folder: Path, repo_id: str) -> Path:
    """What to load from a snapshot: the folder itself (our layout), else its one official ``.pt``."""
    if (folder / "model.safetensors").exists():
        return folder
    pts = sorted(folder.glob("*.pt"))
    if len(pts) != 1:
        found = ", ".join(p.name for p in pts) or "neither model.safetensors nor a .pt"
        raise UserError(f"{repo_id}: expected model.safetensors or one .pt in the repo, found {found}")
    return pts[0]


def resolve_model(name: str | Path, **hub_kwargs) -> Path:
    """A local model path for ``name``: itself if local, else the Hub repo's snapshot file(s)."""
    if not is_repo_id(name):
        return Path(name)
    return model_file(snapshot(str(name), **hub_kwargs), str(name))
