"""A corpus in memory: each record's aligned training arrays, and the windows over them.

Windows are spans of ``window + 1`` positions (``window`` inputs, each predicting the next),
tiled every ``stride`` (default ``window``: consecutive spans share one position, so each
target is predicted once) inside the given intervals -- typically one side of a
:class:`~hnet_seq.data.regions.Split`, so training and held-out windows never overlap.
"""
from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np

from hnet_seq.errors import UserError

from .regions import Interval, tile


class Corpus:
    """``arrays[id]`` = ``adapter.scored_arrays(record)``; ``lengths[id]`` its positions."""

    def __init__(self, adapter, records: Iterable):
        self.adapter = adapter
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.sources: dict[str, str] = {}
        for r in records:
            source = str(r.meta.get("source", "?"))
            if r.id in self.arrays:
                raise UserError(f"{source}: record id '{r.id}' already read from {self.sources[r.id]}")
            self.arrays[r.id], self.sources[r.id] = adapter.scored_arrays(r), source
        self.lengths = {k: len(a["inputs"]) for k, a in self.arrays.items()}
        self._unknown_cumsum: dict[str, np.ndarray] = {}
        # Of the last windows() call: windows dropped for N, and N inside dropped / kept windows.
        self.unknown_stats = {"windows_dropped": 0, "unknown_skipped": 0, "unknown_kept": 0}

    def __len__(self) -> int:
        return len(self.arrays)

    def windows(self, window: int, stride: int | None = None, intervals: Iterable[Interval] | None = None,
                max_n_frac: float = 0.1) -> list[Interval]:
        """Spans of ``window + 1`` positions inside ``intervals`` (default: whole records).

        For adapters with an ``unknown_token`` (DNA: N), records entirely unknown are skipped
        with a warning and windows with more than ``max_n_frac`` unknown positions, or with no
        scorable target at all, are dropped (a whole-chromosome N gap makes no window).  The N
        left in kept windows are inputs only (weight 0 as targets); :attr:`unknown_stats` counts
        what was dropped and kept.
        """
        if intervals is None:
            intervals = [Interval(k, 0, n) for k, n in self.lengths.items()]
        intervals = list(intervals)
        for iv in intervals:
            if iv.contig not in self.lengths or iv.end > self.lengths[iv.contig]:
                raise UserError(f"interval {iv} is not inside a record of this corpus")
        spans = tile(intervals, window + 1, stride or window)
        skipped: list[str] = []
        if self.adapter.unknown_token is not None:
            spans, skipped = self._filter_unknown(spans, max_n_frac)
        if not spans:
            files = ", ".join(sorted({self.sources[iv.contig] for iv in intervals})) or "(no records)"
            why = f"records entirely N: {', '.join(skipped)}" if skipped else "records too short or too many N"
            raise UserError(f"{files}: no usable windows ({why})")
        return spans

    def _filter_unknown(self, spans: list[Interval], max_frac: float) -> tuple[list[Interval], list[str]]:
        by_contig: dict[str, list[Interval]] = {}
        for iv in spans:
            by_contig.setdefault(iv.contig, []).append(iv)
        kept, skipped = [], []
        stats = {"windows_dropped": 0, "unknown_skipped": 0, "unknown_kept": 0}
        for contig, ivs in by_contig.items():
            cs = self._cumsum(contig)
            s = np.array([iv.start for iv in ivs])
            e = np.array([iv.end for iv in ivs])
            unknown = cs[e] - cs[s]
            if cs[-1] == len(cs) - 1:
                skipped.append(f"'{contig}'")
                warnings.warn(f"{self.sources[contig]}: record '{contig}' is all N: skipped", stacklevel=3)
                ok = np.zeros(len(ivs), bool)
            else:  # targets are positions start+1 .. end-1: at least one must be scorable
                ok = (unknown <= max_frac * (e - s)) & (cs[e] - cs[s + 1] < e - s - 1)
            kept += [iv for iv, k in zip(ivs, ok) if k]
            stats["windows_dropped"] += int((~ok).sum())
            stats["unknown_skipped"] += int(unknown[~ok].sum())
            stats["unknown_kept"] += int(unknown[ok].sum())
        self.unknown_stats = stats
        return kept, skipped

    def _cumsum(self, contig: str) -> np.ndarray:
        # (L+1,) running count of unknown tokens: any window's N count in O(1).
        if contig not in self._unknown_cumsum:
            unk = self.arrays[contig]["inputs"] == self.adapter.unknown_token
            self._unknown_cumsum[contig] = np.concatenate([[0], np.cumsum(unk)])
        return self._unknown_cumsum[contig]
