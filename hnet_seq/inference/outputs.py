"""Output files that appear whole or not at all: path checks, :class:`AtomicFile`, and :class:`Outputs`
(several writers renamed together).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from hnet_seq.errors import UserError
from hnet_seq.runtime.atomic import publish, signals_blocked, temp_path_for, untrack


def check_output_path(path: str | Path, param: str = "out") -> Path:
    """Refuse an output that is a directory or sits in a missing/unwritable folder (before any work);
    the message names the output as the parameter ``param``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{param}={path}: is a directory, expected a file name", params=(param,))
    parent = path.parent if str(path.parent) else Path(".")
    above = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{param}={path}: {above} is a file, not a folder", params=(param,))
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UserError(f"{param}={path}: folder {parent} is not writable", params=(param,))
    return path


def output_format(path: str | Path, allowed: Sequence[str], param: str = "out") -> str:
    """The format named by the file's extension: parquet, tsv, npz, vcf, ..."""
    name = str(path).lower()
    for ext, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".tsv", "tsv"), (".tsv.gz", "tsv"),
                     (".txt", "tsv"), (".npz", "npz"), (".vcf.gz", "vcf"), (".vcf", "vcf"), (".bcf", "vcf"),
                     (".csv", "csv")):
        if name.endswith(ext):
            if fmt not in allowed:
                break
            return fmt
    raise UserError(f"{param}={path}: unsupported extension (use {', '.join('.' + a for a in allowed)})",
                    params=(param,))


def checked_table(path: str | Path | None) -> tuple[Path | None, str | None]:
    """An optional ``out`` table checked before any work: ``(path, "tsv" | "parquet")``, or ``(None, None)``."""
    if path is None:
        return None, None
    path = check_output_path(path)
    return path, output_format(path, ("tsv", "parquet"))


class Outputs:
    """Writers that must appear together: ``with Outputs() as outs: outs.add(writer)``.

    Leaving the block normally finishes every writer (their last writes, which may fail or be
    interrupted: then none is renamed), then renames them all with signals held, so that an
    interrupt cannot land between two renames.  An exception aborts them all.
    """

    def __init__(self):
        self.writers: list = []

    def add(self, writer):
        self.writers.append(writer)
        return writer

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                for w in self.writers:
                    if hasattr(w, "finish"):
                        w.finish()
            except BaseException:
                for w in self.writers:
                    w.abort()
                raise
            with signals_blocked():
                for i, w in enumerate(self.writers):
                    try:
                        w.close()
                    except BaseException:  # a late write failure: the writers not yet closed leave nothing
                        for later in self.writers[i + 1:]:
                            later.abort()
                        raise
        else:
            for w in self.writers:
                w.abort()


class AtomicFile:
    """A plain output file (HTML, PNG, FASTA, WAV, NPZ...) written to a temporary name first."""

    def __init__(self, path: str | Path, keep_suffix: bool = False):
        self.path = Path(path)
        self.tmp = temp_path_for(self.path, keep_suffix)

    def close(self) -> Path:
        return publish(self.tmp, self.path)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)
        untrack(self.tmp)


def write_fasta(handle, name: str, sequence: str, width: int = 60) -> None:
    handle.write(f">{name}\n")
    for i in range(0, len(sequence), width):
        handle.write(sequence[i:i + width] + "\n")
