"""Atomic files: write to a temporary name beside the target, then rename onto it.

Readers never see a partial file, and a failure (or Ctrl-C / SIGTERM / SIGHUP, which the CLI
raises as KeyboardInterrupt) deletes the temporary file.  The one implementation behind
checkpoints, run files and every inference output.

Every temporary path is also recorded until it is published, so that the CLI can remove what
an interrupt left between creating a temporary file and handing it to its owner's cleanup
(:func:`remove_temporaries`); signals are blocked while a temporary file is created and recorded.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import UserError


def temp_path_for(path: str | Path, keep_suffix: bool = False) -> Path:
    """A fresh temporary file beside ``path`` (same filesystem, so the final rename is atomic).

    ``keep_suffix``: end the name with ``path``'s extension too (for writers that infer the
    format from it, such as soundfile).
    """
    path = Path(path)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with signals_blocked():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
            track(tmp)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({why_not_writable(e)})") from None
    os.close(fd)
    return Path(tmp)


_live: set[Path] = set()  # temporary files and folders not yet published or removed
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class signals_blocked:
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends (they are delivered then)."""

    def __enter__(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


def track(path: str | Path) -> Path:
    """Record a temporary file or folder (call with signals blocked, right after creating it)."""
    _live.add(Path(path))
    return Path(path)


def untrack(path: str | Path) -> None:
    _live.discard(Path(path))


def make_temp_dir(path: str | Path) -> Path:
    """``mkdir(path)`` and record it as temporary, atomically with respect to signals."""
    with signals_blocked():
        Path(path).mkdir()
        return track(path)


def remove_temporaries() -> None:
    """Delete every recorded temporary file or folder (after an interrupt)."""
    for path in list(_live):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        _live.discard(path)


def why_not_writable(e: OSError) -> str:
    """The reason an output could not be created, naming the folder at fault."""
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        return f"{e.filename} is a file, not a folder"
    return f"{e.strerror or e}: {Path(e.filename).parent if e.filename else ''}".rstrip(": ")


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Give ``tmp`` the permissions of a normally created file (mkstemp makes it 0600), rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
    untrack(tmp)
    return Path(path)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then publish onto ``path``; on any failure nothing appears."""
    tmp = temp_path_for(path)
    try:
        write(str(tmp))
        return publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        untrack(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
