"""FASTA files: plain, gzip or bgzip; streamed with pysam.FastxFile, random access with FastaFile.

* plain / bgzip: random access through a ``.fai`` (and ``.gzi``) index, built with
  ``pysam.faidx`` when missing -- beside the file, or in a cache directory when that folder is
  read-only (``$HNET_SEQ_CACHE`` or ``~/.cache/hnet-seq``).
* plain gzip cannot be indexed: it is streamed, with one warning suggesting ``bgzip``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import pysam

from hnet_seq.errors import UserError

BGZIP_HINT = "recompress it with bgzip for random access: zcat {p} | bgzip > {p}.tmp && mv {p}.tmp {p}"
_warned: set[str] = set()


def compression(path: str | Path) -> str:
    """"plain", "gzip" or "bgzip" from the first bytes (BGZF = gzip with a 'BC' extra field)."""
    with open(path, "rb") as f:
        head = f.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    return "bgzip" if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC" else "gzip"


def check_header(path: str | Path) -> None:
    """Raise a one-line :class:`UserError` if the first non-blank line is not a ``>`` header."""
    opener = gzip.open if compression(path) != "plain" else open
    try:
        with opener(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    if not line.startswith((b">", b"@")):
                        raise UserError(f"{path}: not FASTA: line {lineno} starts with "
                                        f"{line[:20].decode('latin-1')!r}, expected a '>' header")
                    return
                if lineno > 1000:
                    break
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read FASTA ({e})") from None
    raise UserError(f"{path}: empty FASTA file (no '>' header)")


def stream(path: str | Path) -> Iterator[tuple[str, str]]:
    """``(name, sequence)`` of every record, in file order; warns once for plain gzip."""
    path = str(path)
    check_header(path)
    if compression(path) == "gzip" and path not in _warned:
        _warned.add(path)
        warnings.warn(f"{path} is plain gzip: streaming it; "
                      + BGZIP_HINT.format(p=path), stacklevel=3)
    try:
        with pysam.FastxFile(path) as f:
            for entry in f:
                yield entry.name, entry.sequence or ""
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot parse FASTA ({e})") from None


def open_indexed(path: str | Path) -> pysam.FastaFile:
    """A random-access handle; builds the ``.fai``/``.gzi`` index if it is missing."""
    path = str(path)
    kind = compression(path)
    if kind == "gzip":
        raise UserError(f"{path}: plain gzip has no random access; " + BGZIP_HINT.format(p=path))
    check_header(path)
    fai, gzi = path + ".fai", (path + ".gzi" if kind == "bgzip" else None)
    if not (os.path.exists(fai) and (gzi is None or os.path.exists(gzi))):
        if not _writable(os.path.dirname(os.path.abspath(path))):
            fai, gzi = _cached_index_paths(path, kind)
        if not os.path.exists(fai):
            args = ["--fai-idx", fai] + (["--gzi-idx", gzi] if gzi else [])
            try:
                pysam.faidx(path, *args)
            except pysam.SamtoolsError as e:
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else "faidx failed"
                raise UserError(f"{path}: cannot index FASTA ({msg})") from None
    return pysam.FastaFile(path, filepath_index=fai, filepath_index_compressed=gzi)


def _writable(folder: str) -> bool:
    # Mode bits too: root passes os.access on a read-only (r-x) data folder, which must stay clean.
    return os.access(folder, os.W_OK) and bool(os.stat(folder).st_mode & 0o222)


def _cached_index_paths(path: str, kind: str) -> tuple[str, str | None]:
    # Keyed by absolute path, size and mtime so that a changed file gets a fresh index.
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("HNET_SEQ_CACHE", Path.home() / ".cache" / "hnet-seq")) / "faidx" / key
    root.mkdir(parents=True, exist_ok=True)
    base = str(root / Path(path).name)
    return base + ".fai", (base + ".gzi" if kind == "bgzip" else None)
