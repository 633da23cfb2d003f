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
    """``arrays[id]`` = ``adapter.example_arrays(record)``; ``lengths[id]`` its positions."""

    def __init__(self, adapter, records: Iterable):
        self.adapter = adapter
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.sources: dict[str, str] = {}
        for r in records:
            source = str(r.meta.get("source", "?"))
            if r.id in self.arrays:
                raise UserError(f"{source}: record id '{r.id}' already read from {self.sources[r.id]}")
            self.arrays[r.id], self.sources[r.id] = adapter.example_arrays(r), source
        self.lengths = {k: len(a["inputs"]) for k, a in self.arrays.items()}
        self._unknown_cumsum: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.arrays)

    def windows(self, window: int, stride: int | None = None, intervals: Iterable[Interval] | None = None,
                max_n_frac: float = 0.1) -> list[Interval]:
        """Spans of ``window + 1`` positions inside ``intervals`` (default: whole records).

        For adapters with an ``unknown_token`` (DNA: N), records entirely unknown are skipped
        with a warning and windows with more than ``max_n_frac`` unknown positions are dropped.
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
        for contig, ivs in by_contig.items():
            cs = self._cumsum(contig)
            if cs[-1] == len(cs) - 1:
                skipped.append(f"'{contig}'")
                warnings.warn(f"{self.sources[contig]}: record '{contig}' is all N: skipped", stacklevel=3)
                continue
            s = np.array([iv.start for iv in ivs])
            e = np.array([iv.end for iv in ivs])
            ok = (cs[e] - cs[s]) <= max_frac * (e - s)
            kept += [iv for iv, k in zip(ivs, ok) if k]
        return kept, skipped

    def _cumsum(self, contig: str) -> np.ndarray:
        # (L+1,) running count of unknown tokens: any window's N count in O(1).
        if contig not in self._unknown_cumsum:
            unk = self.arrays[contig]["inputs"] == self.adapter.unknown_token
            self._unknown_cumsum[contig] = np.concatenate([[0], np.cumsum(unk)])
        return self._unknown_cumsum[contig]
