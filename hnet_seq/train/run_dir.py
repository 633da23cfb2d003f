"""The run directory of :func:`hnet_seq.train.train`: checked before a run starts, and put back
as it was when a run fails before its first step.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import latest_checkpoint, list_checkpoints
from ..errors import UserError
from .data import check_paths
from .metrics import METRICS
from .schema import RunConfig

RUN_CONFIG = "run_config.json"


def prepare_run_dir(run_dir: str | Path, resume: bool) -> Path:
    """Create/check ``run_dir``: writable, and not an existing run unless resuming.

    ``resume`` of a directory without a checkpoint (a run that failed or stopped before its
    first one) starts afresh: its old metrics are dropped.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory (run_dir)", params=("run_dir",))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{run_dir}: run directory is not writable ({e.strerror or e}); choose another run_dir",
                        params=("run_dir",)) from None
    has_run = list_checkpoints(run_dir) or (run_dir / METRICS).exists()
    if resume and not latest_checkpoint(run_dir):
        (run_dir / METRICS).unlink(missing_ok=True)
    elif has_run and not resume:
        raise UserError(f"{run_dir}: already holds a run; pass resume=True to continue it, or choose another run_dir",
                        params=("resume", "run_dir"))
    return run_dir


def absolute_path(path: str) -> str:
    """An existing path made absolute; brace patterns and URLs stay as given."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def entries(run_dir: Path) -> set[str] | None:
    """The names in ``run_dir`` (None: it does not exist)."""
    return {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else None


def restore(run_dir: Path, found: set[str] | None) -> None:
    """Remove what a failed start added to ``run_dir`` (all of it if it did not exist)."""
    import shutil

    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if found is None or p.name not in found:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    if found is None:
        run_dir.rmdir()


def check_inputs(cfg: RunConfig, data_paths: list[str] | None) -> None:
    """Fail fast, before any work, on data paths that do not exist."""
    check_paths(list(data_paths or cfg.data.paths), "data_paths / data.paths", params=("data_paths",))
    check_paths(list(cfg.data.heldout_paths), "data.heldout_paths")


__all__ = ["RUN_CONFIG", "absolute_path", "check_inputs", "entries", "prepare_run_dir", "restore"]
