"""Atomic files: write to a temporary name beside the target, then rename onto it.

Readers never see a partial file, and a failure (or Ctrl-C / SIGTERM / SIGHUP, which the CLI
raises as KeyboardInterrupt) deletes the temporary file.  The one implementation behind
checkpoints, run files and every inference output.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import UserError


def temp_path_for(path: str | Path, keep_suffix: bool = False) -> Path:
    """A fresh temporary file beside ``path`` (same filesystem, so the final rename is atomic).

    ``keep_suffix``: end the name with ``path``'s extension too (for writers that infer the
    format from it, such as soundfile).
    """
    path = Path(path)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({why_not_writable(e)})") from None
    os.close(fd)
    return Path(tmp)


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
    return Path(path)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then publish onto ``path``; on any failure nothing appears."""
    tmp = temp_path_for(path)
    try:
        write(str(tmp))
        return publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
