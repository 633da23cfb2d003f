"""Intervals on named sequences: BED input, contig aliases, held-out splits, window tiling.

Coordinates are 0-based half-open ``[start, end)`` everywhere (as in BED).  A "contig" is any
named sequence: a chromosome, a text document, an utterance.  Splits are returned as data
(lists of :class:`Interval`) so that callers and tests can check that held-out windows never
overlap training windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from hnet_seq.errors import UserError


@dataclass(frozen=True, order=True)
class Interval:
    contig: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.contig}:{self.start}-{self.end}"


# ---- contig names ------------------------------------------------------------------------
def contig_aliases(name: str) -> list[str]:
    """Names that mean the same contig: ``chr1`` <-> ``1``, ``chrM`` <-> ``MT`` (and ``M``)."""
    bare = name[3:] if name.lower().startswith("chr") else name
    bares = {bare} | ({"M", "MT"} if bare.upper() in ("M", "MT") else set())
    return [name] + sorted((bares | {"chr" + b for b in bares}) - {name})


def resolve_contig(name: str, lengths: Mapping[str, int]) -> str | None:
    """The key of ``lengths`` that ``name`` (or one of its aliases) refers to, else None."""
    return next((a for a in contig_aliases(name) if a in lengths), None)


def read_bed(path: str | Path, lengths: Mapping[str, int] | None = None,
             reference: str = "the reference") -> list[Interval]:
    """Intervals of a BED file (first 3 columns), with contigs renamed to ``lengths``' names.

    With ``lengths`` (contig -> length), a contig missing from the reference or an interval
    past a contig's end raises :class:`UserError` naming the file and line.
    """
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            where = f"{path}:{lineno}"
            if len(cols) < 3:
                raise UserError(f"{where}: a BED line needs 3 columns (contig, start, end), got {len(cols)}")
            try:
                start, end = int(cols[1]), int(cols[2])
            except ValueError:
                raise UserError(f"{where}: start/end must be integers, got '{cols[1]}', '{cols[2]}'") from None
            if not 0 <= start < end:
                raise UserError(f"{where}: need 0 <= start < end, got {start}-{end}")
            contig = cols[0]
            if lengths is not None:
                found = resolve_contig(contig, lengths)
                if found is None:
                    known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
                    raise UserError(f"{where}: contig '{contig}' is not in {reference} (has {known})")
                if end > lengths[found]:
                    raise UserError(f"{where}: interval {contig}:{start}-{end} ends past the end of "
                                    f"contig '{found}' (length {lengths[found]})")
                contig = found
            out.append(Interval(contig, start, end))
    return out


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
