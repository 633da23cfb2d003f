"""FASTA files: plain, gzip or bgzip; streamed with pysam.FastxFile, random access with FastaFile.

* plain / bgzip: random access through a ``.fai`` (and ``.gzi``) index, built with
  ``pysam.faidx`` when missing -- beside the file, or in a cache directory when that folder is
  read-only (``$HNET_SEQ_CACHE`` or ``~/.cache/hnet-seq``).
* plain gzip cannot be indexed: it is streamed, with one warning suggesting ``bgzip``.

pysam reads a sequence as a C string, so a NUL byte silently ends it: streaming scans the
(decompressed) bytes for NULs first, which also finds a truncated gzip member, and
random-access fetches check their length.  An index older than its FASTA is rebuilt; one that
does not match it (a fetch would return newlines or a header) is reported.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import pysam

from hnet_seq.errors import UserError

BGZIP_HINT = "recompress it with bgzip for random access: zcat {p} | bgzip > {p}.tmp && mv {p}.tmp {p}"
_warned: set[str] = set()


def compression(path: str | Path) -> str:
    """"plain", "gzip" or "bgzip" from the first bytes (BGZF = gzip with a 'BC' extra field)."""
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a FASTA file")
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
    except EOFError:
        raise UserError(f"{path}: truncated gzip file (it ends inside a compressed block)") from None
    except (OSError, zlib.error) as e:
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
    nul_record = _first_record_with_nul(path)
    try:
        with pysam.FastxFile(path) as f:
            for entry in f:
                sequence = entry.sequence or ""
                if entry.name == nul_record:
                    raise UserError(f"{path}: record '{entry.name}': NUL byte at position {len(sequence)} "
                                    "(a binary or corrupted file?)")
                yield entry.name, sequence
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot parse FASTA ({e})") from None


def _decompressed_chunks(path: str, size: int = 1 << 24) -> Iterator[bytes]:
    """The file's bytes (gzip/bgzip: decompressed, every member), ``size`` at a time;
    a compressed stream that ends inside a member is a :class:`UserError` saying "truncated"."""
    plain = compression(path) == "plain"
    with open(path, "rb") as f:
        d, in_member = zlib.decompressobj(wbits=31), False
        while raw := f.read(size):
            if plain:
                yield raw
                continue
            while raw:
                try:
                    yield d.decompress(raw)
                except zlib.error as e:
                    raise UserError(f"{path}: corrupt gzip data ({e})") from None
                in_member, raw = not d.eof, d.unused_data
                if d.eof:  # the next member (bgzip: the next block)
                    d = zlib.decompressobj(wbits=31)
        if in_member:
            raise UserError(f"{path}: truncated gzip file (it ends inside a compressed block)")


def _first_record_with_nul(path: str) -> str | None:
    """The name of the first record whose bytes hold a NUL (None: no NUL in the file)."""
    header, partial, at_line_start = b"", None, True  # partial: a header line split over chunks
    for chunk in _decompressed_chunks(path):
        nul = chunk.find(b"\0")
        c = chunk if nul < 0 else chunk[:nul]
        if partial is not None:
            end = c.find(b"\n")
            partial += c if end < 0 else c[:end]
            if end >= 0:
                header, partial = partial, None
        i = c.rfind(b"\n>")
        start = i + 1 if i >= 0 else (0 if at_line_start and c.startswith(b">") else None)
        if start is not None and (partial is None or start > 0):
            end = c.find(b"\n", start)
            header, partial = (c[start + 1:end], None) if end >= 0 else (header, c[start + 1:])
        at_line_start = c.endswith(b"\n")
        if nul >= 0:
            name = (partial if partial is not None else header).split()
            return name[0].decode("latin-1") if name else ""
    return None


def open_indexed(path: str | Path) -> "IndexedFasta":
    """A random-access handle; builds the ``.fai``/``.gzi`` index if it is missing or older
    than the FASTA, and checks that it matches the file."""
    path = str(path)
    kind = compression(path)
    if kind == "gzip":
        raise UserError(f"{path}: plain gzip has no random access; " + BGZIP_HINT.format(p=path))
    check_header(path)
    fai, gzi = path + ".fai", (path + ".gzi" if kind == "bgzip" else None)
    if not (_fresh(fai, path) and (gzi is None or _fresh(gzi, path))):
        if not _writable(os.path.dirname(os.path.abspath(path))):
            fai, gzi = _cached_index_paths(path, kind)
        if not _fresh(fai, path):
            args = ["--fai-idx", fai] + (["--gzi-idx", gzi] if gzi else [])
            verbosity = pysam.set_verbosity(0)
            try:
                pysam.faidx(path, *args)
            except pysam.SamtoolsError as e:
                for index in filter(None, (fai, gzi)):  # no half-built index left beside the file
                    Path(index).unlink(missing_ok=True)
                for _ in _decompressed_chunks(path):  # a truncated file: say so (raises)
                    pass
                msg = str(e).split("stderr=")[-1].strip() or "faidx failed"
                raise UserError(f"{path}: cannot index FASTA ({msg.splitlines()[0]})") from None
            finally:
                pysam.set_verbosity(verbosity)
    verbosity = pysam.set_verbosity(0)  # htslib's own "[E::fai_read]" lines: the UserError says it
    try:
        fa = IndexedFasta(path, filepath_index=fai, filepath_index_compressed=gzi)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot use its index {fai} ({_first_line(e)}); delete it to rebuild") from None
    finally:
        pysam.set_verbosity(verbosity)
    fa.fai = fai
    fa.check_index()
    return fa


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _fresh(index: str, path: str) -> bool:
    """``index`` exists and is not older than ``path`` (a stale one would read shifted bases)."""
    return os.path.exists(index) and os.stat(index).st_mtime_ns >= os.stat(path).st_mtime_ns


class IndexedFasta(pysam.FastaFile):
    """``pysam.FastaFile`` whose :meth:`fetch` refuses what pysam would return silently wrong:
    a sequence cut short by a NUL byte, or newlines/headers read through a mismatched index.

    ``fai``: the index file in use (beside the FASTA or in the cache).
    """

    fai = ""

    def fetch(self, reference=None, start=None, end=None, region=None):
        seq = super().fetch(reference, start, end, region)
        if region is None and reference is not None:
            begin = start or 0
            expected = min(end, self.get_reference_length(reference)) if end is not None else \
                self.get_reference_length(reference)
            if len(seq) < expected - begin:
                raise UserError(f"{self.filename.decode()}: record '{reference}': NUL byte at position "
                                f"{begin + len(seq)} (a binary or corrupted file?)")
        bad = _first_of(seq, "\n\r>")
        if bad is not None:
            raise UserError(f"{self.filename.decode()}: its index {self.fai} does not match the file "
                            f"(record '{reference}' reads {seq[bad]!r} at position {(start or 0) + bad}); "
                            "delete the index to rebuild it")
        return seq

    def check_index(self, most: int = 1000) -> None:
        """Read both ends of up to ``most`` records (spread over the file, the last included)."""
        names = self.references
        step = max(1, len(names) // most)
        for name in list(names[::step]) + list(names[-1:]):
            length = self.get_reference_length(name)
            self.fetch(name, 0, min(length, 256))
            self.fetch(name, max(0, length - 256), length)


def _first_of(text: str, chars: str) -> int | None:
    hits = [i for i in (text.find(c) for c in chars) if i >= 0]
    return min(hits) if hits else None


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
