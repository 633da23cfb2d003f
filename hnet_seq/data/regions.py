"""Intervals on named sequences: BED and region input, contig aliases, held-out splits, windows.

Coordinates are 0-based half-open ``[start, end)`` everywhere (as in BED) and on the + strand;
a ``-`` interval keeps + strand coordinates and means "the reverse complement of these bases".
The one exception is the text of a region (:func:`parse_region`): ``chr1:1,001-2,000`` is
1-based inclusive, as in samtools, bcftools and IGV, and names the same bases as the BED line
``chr1 1000 2000``.  A "contig" is any named sequence: a chromosome, a text document, an
utterance.  Contig names are kept as the user wrote them; aliases (``chr1`` <-> ``1``,
``chrM`` <-> ``MT``) are only tried to look them up.  Splits are returned as data (lists of
:class:`Interval`) so that callers and tests can check that held-out windows never overlap
training windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from hnet_seq.errors import UserError

STRANDS = ("+", "-", ".")


@dataclass(frozen=True, order=True)
class Interval:
    """``[start, end)`` of ``contig``; ``name`` and ``strand`` (BED columns 4 and 6) do not take
    part in comparisons, so splits and overlaps see coordinates only."""

    contig: str
    start: int
    end: int
    name: str = field(default="", compare=False)
    strand: str = field(default=".", compare=False)

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.contig}:{self.start}-{self.end}"

    @property
    def region(self) -> str:
        """The samtools-style region text (1-based inclusive), with ``(-)`` on the - strand."""
        return f"{self.contig}:{self.start + 1}-{self.end}" + ("(-)" if self.strand == "-" else "")


# ---- contig names ------------------------------------------------------------------------
def contig_aliases(name: str) -> list[str]:
    """Names that mean the same contig: ``chr1`` <-> ``1``, ``chrM`` <-> ``MT`` (and ``M``)."""
    bare = name[3:] if name.lower().startswith("chr") else name
    bares = {bare} | ({"M", "MT"} if bare.upper() in ("M", "MT") else set())
    return [name] + sorted((bares | {"chr" + b for b in bares}) - {name})


def resolve_contig(name: str, lengths: Mapping[str, int]) -> str | None:
    """The key of ``lengths`` that ``name`` (or one of its aliases) refers to, else None."""
    return next((a for a in contig_aliases(name) if a in lengths), None)


def check_interval(iv: Interval, lengths: Mapping[str, int], where: str, reference: str = "the reference") -> str:
    """The reference's name for ``iv.contig``; a missing contig or an interval past its end raises."""
    found = resolve_contig(iv.contig, lengths)
    if found is None:
        known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
        raise UserError(f"{where}: contig '{iv.contig}' is not in {reference} (has {known})")
    if iv.end > lengths[found]:
        raise UserError(f"{where}: interval {iv} ends past the end of contig '{found}' (length {lengths[found]})")
    return found


# ---- regions (1-based text) --------------------------------------------------------------
def parse_region(text: str, lengths: Mapping[str, int], reference: str = "the reference") -> Interval:
    """``CONTIG``, ``CONTIG:START`` (to the end) or ``CONTIG:START-END``, 1-based inclusive with
    optional thousands commas (samtools/bcftools/IGV) -> a 0-based half-open :class:`Interval`.

    ``chr1:1001-2000`` is ``Interval("chr1", 1000, 2000)``.  The contig is looked up through its
    aliases in ``lengths`` and kept as written; a name with a ``:`` of its own is found whole first.
    """
    where = f"region '{text}'"
    contig, sep, span = text.rpartition(":")
    if not sep or resolve_contig(text, lengths) is not None:
        contig, span = text, ""
    if not span:
        iv = Interval(contig, 0, lengths.get(resolve_contig(contig, lengths) or "", 0))
        check_interval(iv, lengths, where, reference)
        return iv
    a, dash, b = span.replace(",", "").partition("-")
    try:
        start = int(a)
        end = int(b) if dash else None
    except ValueError:
        raise UserError(f"{where}: expected CONTIG:START-END (1-based inclusive, as in samtools), "
                        f"e.g. chr1:1-20000") from None
    if start < 1:
        raise UserError(f"{where}: START is 1-based (as in samtools): the first base is 1, got {start}")
    if end is None:
        end = lengths.get(resolve_contig(contig, lengths) or "", start)
    if end < start:
        raise UserError(f"{where}: need START <= END, got {start}-{end}")
    iv = Interval(contig, start - 1, end)
    check_interval(iv, lengths, where, reference)
    return iv


# ---- BED ---------------------------------------------------------------------------------
def _bed_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a plain, gzip or bgzip BED file (pysam reads all three)."""
    import pysam

    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    try:
        with pysam.BGZFile(str(path), "r") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    yield lineno, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise UserError(f"{path}:{lineno}: not a text BED line (invalid UTF-8)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read BED ({e})") from None


def _is_header(line: str) -> bool:
    return not line.strip() or line.startswith(("#", "track", "browser"))


def bed_interval(cols: list[str], where: str) -> Interval:
    """One BED record's columns -> :class:`Interval` (name ``.`` -> ``""``; strand ``+``, ``-`` or ``.``)."""
    if len(cols) < 3:
        raise UserError(f"{where}: a BED line needs 3 columns (contig, start, end), got {len(cols)}")
    try:
        start, end = int(cols[1]), int(cols[2])
    except ValueError:
        raise UserError(f"{where}: start/end must be integers, got '{cols[1]}', '{cols[2]}'") from None
    if not 0 <= start < end:
        raise UserError(f"{where}: need 0 <= start < end, got {start}-{end}")
    strand = cols[5] if len(cols) > 5 else "."
    if strand not in STRANDS:
        raise UserError(f"{where}: strand (column 6) must be +, - or ., got '{strand}'")
    name = cols[3] if len(cols) > 3 and cols[3] != "." else ""
    return Interval(cols[0], start, end, name, strand)


def _split(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def read_bed(path: str | Path, lengths: Mapping[str, int] | None = None,
             reference: str = "the reference") -> list[Interval]:
    """Intervals of a BED file (``.bed``, or ``.bed.gz`` in gzip or bgzip), with name and strand.

    Header lines (``track``, ``browser``, ``#``) and blank lines are skipped.  Contig names stay
    as written; with ``lengths`` (contig -> length), a contig missing from the reference (after
    aliasing) or an interval past a contig's end raises :class:`UserError` naming file and line.
    """
    out = []
    for lineno, line in _bed_lines(path):
        if _is_header(line):
            continue
        where = f"{path}:{lineno}"
        iv = bed_interval(_split(line), where)
        if lengths is not None:
            check_interval(iv, lengths, where, reference)
        out.append(iv)
    return out


def bed_features(path: str | Path, contig: str, start: int, end: int) -> list[Interval]:
    """Intervals of a BED file that overlap ``contig:[start, end)`` (any alias of the contig).

    A bgzipped file with a tabix index (``.tbi``/``.csi``) is read by random access; any other
    BED is scanned.
    """
    import pysam

    names = contig_aliases(contig)
    if any(Path(f"{path}{ext}").exists() for ext in (".tbi", ".csi")):
        with pysam.TabixFile(str(path)) as tbx:
            name = next((n for n in names if n in tbx.contigs), None)
            rows = tbx.fetch(name, start, end) if name is not None else []
            return [bed_interval(_split(r), f"{path}: record {r[:40]!r}") for r in rows]
    return [iv for iv in read_bed(path) if iv.contig in names and iv.start < end and iv.end > start]


# ---- held-out splits -----------------------------------------------------------------------
@dataclass
class Split:
    """Disjoint training and held-out intervals over the same contigs."""

    train: list[Interval]
    heldout: list[Interval]


def split_by_record(lengths: Mapping[str, int], heldout: float | Iterable[str], seed: int = 0) -> Split:
    """Hold out whole records: the named ones, or a seeded random fraction of them (at least one)."""
    names = list(lengths)
    if isinstance(heldout, (int, float)):
        k = min(len(names) - 1, max(1, round(heldout * len(names)))) if heldout > 0 else 0
        chosen = set(np.random.default_rng(seed).permutation(names)[:k].tolist())
    else:
        chosen = {resolve_contig(n, lengths) or n for n in heldout}
        missing = chosen - set(names)
        if missing:
            raise UserError(f"held-out records not found: {', '.join(sorted(missing))}")
    whole = [Interval(n, 0, lengths[n]) for n in names]
    return Split([iv for iv in whole if iv.contig not in chosen], [iv for iv in whole if iv.contig in chosen])


def split_by_region(lengths: Mapping[str, int], frac: float = 0.1, where: str = "end", seed: int = 0) -> Split:
    """Hold out one contiguous region of ``frac`` of every record: its tail (``where="end"``)
    or a seeded random place (``"random"``); the rest (one or two intervals) is training."""
    if where not in ("end", "random"):
        raise UserError(f"split where='{where}': choose 'end' or 'random'")
    rng = np.random.default_rng(seed)
    train, held = [], []
    for name, n in lengths.items():
        h = min(n, max(1, round(frac * n))) if frac > 0 and n > 0 else 0
        s = n - h if where == "end" else int(rng.integers(0, n - h + 1))
        held += [Interval(name, s, s + h)] if h else []
        train += [iv for iv in (Interval(name, 0, s), Interval(name, s + h, n)) if len(iv) > 0]
    return Split(train, held)


# ---- windows ---------------------------------------------------------------------------------
def tile(intervals: Iterable[Interval], window: int, stride: int | None = None,
         min_length: int = 2) -> list[Interval]:
    """Windows of ``window`` positions inside each interval, every ``stride`` (default: window).

    The tail of an interval becomes one shorter window if it has at least ``min_length``
    positions, so nothing is lost and nothing crosses an interval's end.
    """
    stride = stride or window
    out = []
    for iv in intervals:
        n_full = (len(iv) - window) // stride + 1 if len(iv) >= window else 0
        out += [Interval(iv.contig, iv.start + i * stride, iv.start + i * stride + window) for i in range(n_full)]
        tail = iv.start + n_full * stride  # first start not used by a full window
        if iv.end - tail >= min_length:
            out.append(Interval(iv.contig, tail, iv.end))
    return out


def overlapping(a: Iterable[Interval], b: Iterable[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs (x from ``a``, y from ``b``) that share at least one position (sweep per contig)."""
    by_contig: dict[str, list[Interval]] = {}
    for y in b:
        by_contig.setdefault(y.contig, []).append(y)
    hits = []
    for contig, ys in by_contig.items():
        ys.sort()
        ends = np.maximum.accumulate(np.array([y.end for y in ys]))
        starts = np.array([y.start for y in ys])
        for x in (x for x in a if x.contig == contig):
            hi = int(np.searchsorted(starts, x.end))  # ys[:hi] start before x ends
            lo = int(np.searchsorted(ends[:hi], x.start, side="right"))  # skip those ending before x
            hits += [(x, y) for y in ys[lo:hi] if y.end > x.start]
    return hits
