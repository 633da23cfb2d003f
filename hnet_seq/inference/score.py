"""Sequence likelihoods: total log-likelihood, bits per unit and length, for every modality.

Position ``p`` of a sequence is predicted from positions ``< p``; the first position has
nothing before it and is not scored (a byte model's BOS is position 0, so every byte of a
text is scored; a DNA sequence's first base is not).  ``log_likelihood`` is the sum, in nats,
of ``log p(x_p | x_<p)`` over scored positions (the modality's loss: cross-entropy over the
vocabulary for DNA and bytes, the mixture likelihood for audio), ``units_scored`` counts
the bases/bytes/samples they cover, and ``bits_per_unit = -log_likelihood / (units * ln 2)``.
N (and IUPAC codes read as N) is fed to the model but never scored: a DNA record of ``L``
bases with ``n`` N has ``units_scored = L - 1 - (N among positions 1..L-1)`` in one tile (the
adapter's ``unknown_token``; the table's metadata says so under ``not_scored``).

Inputs longer than ``window`` are tiled (see :mod:`.tiling`): each position is scored once,
by the tile that gives it at least ``overlap`` positions of left context.  With ``overlap=0``
the first position of every tile after the first is not scored.

Under torchrun the ranks share the tiles (tile ``k`` of the whole input, counted across
records, goes to rank ``k % W``), so one long contig keeps every GPU busy; every rank writes
partial sums per record to a part file and rank 0 adds them up in input order (:mod:`.parts`).
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from hnet_seq.errors import UserError
from hnet_seq.modalities.base import LN2

from hnet_seq.progress import progress_bar
from hnet_seq.runtime.distributed import dist_info, init_distributed

from .columns import RecordColumns, Seconds
from .inputs import record_inputs
from .model import InferenceModel, default_batch_tokens, load
from .outputs import Outputs, check_output_path, checked_table, output_format
from .parts import (RECORD, all_ranks_succeed, merge_on_main, merge_parts, merged_groups, part_path, rank_parts,
                    with_record_column)
from .records import records_and_total
from .runner import Runner
from .tables import TableWriter
from .tiling import WorkItem, batches_by_budget, default_overlap, plan_tiles, tiling_description


@dataclass
class SequenceScore:
    seq_id: str
    chrom: str
    start: int
    end: int
    length: int  # units in the record
    strand: str = "."  # "-": the record is the reverse complement of [start, end) (BED strand)
    units_scored: int = 0
    log_likelihood: float = 0.0  # nats
    fields: dict = field(default_factory=dict)  # the modality's record columns (text: lang)

    @property
    def bits_per_unit(self) -> float:
        return -self.log_likelihood / (max(self.units_scored, 1) * LN2)

    def row(self) -> dict:
        return {"seq_id": self.seq_id, "chrom": self.chrom, "start": self.start, "end": self.end,
                "strand": self.strand, "length": self.length, "units_scored": self.units_scored,
                "log_likelihood": self.log_likelihood, "bits_per_unit": self.bits_per_unit, **self.fields}


# What the ranks' partial rows of one record add up to; the other fields are the record's own.
SUMMED = ("units_scored", "log_likelihood")
OWN = tuple(f.name for f in dataclasses.fields(SequenceScore) if f.name not in SUMMED + ("fields",))


@dataclass
class ScoreSummary:
    scores: list[SequenceScore] = field(default_factory=list)
    positions: int = 0  # units read
    seconds: float = 0.0
    out: Path | None = None
    per_position: Path | None = None
    metadata: dict = field(default_factory=dict)
    units_per_second: float | None = None  # audio: the adapter's clock (coordinates per second)
    sample_rate: int | None = None
    record_columns: RecordColumns | None = None  # the modality's own columns (text: lang, doc, source)
    log_likelihood: float = 0.0  # nats, over every record written (kept or not)
    units_scored: int = 0

    @property
    def bits_per_unit(self) -> float:
        units = sum(s.units_scored for s in self.scores)
        return -sum(s.log_likelihood for s in self.scores) / (max(units, 1) * LN2)

    def parts_columns(self) -> RecordColumns | None:
        """The record columns of per-rank parts: the fields, under the generic names."""
        rc = self.record_columns
        return None if rc is None or not rc.fields else RecordColumns(rc.fields, {})

    def seconds_of(self, *columns: str) -> Seconds | None:
        """Time columns beside ``columns`` in this run's tables (audio), else None."""
        return None if self.units_per_second is None else Seconds(self.units_per_second, self.sample_rate, columns)

    @property
    def nats_per_second(self) -> float | None:
        """Audio: log-likelihood per second of scored audio (nats/s)."""
        if self.units_per_second is None or not self.units_scored:
            return None
        return self.log_likelihood / (self.units_scored / self.units_per_second)


SCORE_SCHEMA = pa.schema([pa.field("seq_id", pa.string()), pa.field("chrom", pa.string()),
                          pa.field("start", pa.int64()), pa.field("end", pa.int64()), pa.field("strand", pa.string()),
                          pa.field("length", pa.int64()), pa.field("units_scored", pa.int64()),
                          pa.field("log_likelihood", pa.float64()), pa.field("bits_per_unit", pa.float64())])
POSITION_SCHEMA = pa.schema([pa.field("seq_id", pa.string()), pa.field("chrom", pa.string()),
                             pa.field("position", pa.int64()), pa.field("logprob", pa.float32())])


def score(checkpoint: str | Path | InferenceModel, inputs: Sequence[str | Path] = (), out: str | Path | None = None,
          *, config: str | Path | None = None, modality: str | None = None, bed: str | Path | None = None,
          region: str | None = None,
          reference: str | Path | None = None, per_position: str | Path | None = None, window: int = 8192,
          overlap: int | None = None, batch_tokens: int | None = None, device: str | None = None,
          precision: str = "auto", progress: bool = True, records: Iterable | None = None,
          keep_scores: bool = True) -> ScoreSummary:
    """Score every input sequence; optionally write a table (``.tsv``/``.parquet``) and per-position log-probs.

    ``per_position`` (parquet): one row per scored position, ``seq_id, chrom, position, logprob``
    with ``position`` in input coordinates (genomic for BED input; for raw audio the first
    sample of the frame) and ``logprob`` in nats.
    """
    overlap, out, fmt, per_position = _check_outputs(window, overlap, out, per_position)
    im = load(checkpoint, config, device=device, modality=modality, precision=precision)
    adapter = im.adapter
    runner = Runner(im, scores=True)
    dist = init_distributed(im.device)
    multi = dist.world > 1
    budget = batch_tokens or default_batch_tokens(im.device)
    summary = ScoreSummary(out=out, per_position=per_position, metadata=_metadata(adapter, im, window, overlap),
                           units_per_second=adapter.units_per_second, sample_rate=adapter.sample_rate,
                           record_columns=RecordColumns.of(adapter))
    total = None
    if records is None:
        records, total = records_and_total(adapter, inputs, bed=bed, region=region, reference=reference,
                                           with_total=progress and dist.is_main)
    t0 = time.perf_counter()
    with Outputs() as outs, all_ranks_succeed("scoring"):
        table, pos_w = _writers(outs, summary, fmt, dist.rank, multi)
        tally = _Tally(summary, adapter, dist, window, overlap, table, pos_w, keep_scores)
        share = total // dist.world if total else None  # rank 0 shows its share of the tiles
        with progress_bar(progress and dist.is_main, "score", share, unit=adapter.unit_name + "s") as bar:
            for group, results in runner.stream(batches_by_budget(tally.items(records), budget)):
                for res, item in zip(results, group):
                    tally.take(res, *item.tag)
                bar.advance(sum(len(it) - it.own_start for it in group))
                tally.flush()
    if multi:
        parts = rank_parts(out, dist.world)
        pos_parts = rank_parts(per_position, dist.world) if per_position is not None else []
        merge_on_main(dist, lambda: _merge_ranks(summary, fmt, parts, pos_parts, keep_scores), parts + pos_parts)
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_outputs(window: int, overlap: int | None, out, per_position):
    """Check the arguments that need no model (before any work); returns the overlap, the checked
    output paths and the table format (None without a table)."""
    overlap = default_overlap(window, overlap)
    plan_tiles(1, window, overlap)  # check window/overlap before any work
    if dist_info().world > 1 and out is None:
        raise UserError("under torchrun, give out (rank 0 merges the ranks' results into it)", params=("out",))
    out, fmt = checked_table(out)
    if per_position is not None:
        per_position = check_output_path(per_position, "per_position")
        output_format(per_position, ("parquet",), "per_position")
    return overlap, out, fmt, per_position


def _metadata(adapter, im: InferenceModel, window: int, overlap: int) -> dict:
    meta = {"kind": "scores", "checkpoint": im.checkpoint, "modality": adapter.name, "window": window,
            "overlap": overlap, "tiling": tiling_description(window, overlap), "units": adapter.unit_name,
            "log_likelihood": "nats, sum of log p(x_p | x_<p) over scored positions"}
    if adapter.unknown_token is not None:
        meta["not_scored"] = (f"{adapter.unknown_name or adapter.unknown_token} positions are model input only: "
                              f"never scored, not in units_scored or bits_per_unit")
    return meta


class _Tally:
    """This rank's tiles of every record, and the records' sums as their tiles come back; a record's
    row is written once all its tiles (on this rank) are in, in input order."""

    def __init__(self, summary: ScoreSummary, adapter, dist, window: int, overlap: int, table, pos_w,
                 keep_scores: bool):
        self.summary, self.adapter, self.dist, self.window, self.overlap = summary, adapter, dist, window, overlap
        self.table, self.pos_w, self.keep_scores = table, pos_w, keep_scores
        self.multi = dist.world > 1
        self.scale = getattr(adapter, "units_per_position", 1) or 1
        self.pending: list[list] = []  # [SequenceScore, tiles remaining, cmap, record index]
        self.tile_numbers = itertools.count()  # over all records: tile k is rank k % world's

    def items(self, records: Iterable) -> Iterable[WorkItem]:
        for index, record in enumerate(records):
            x, y, cmap = record_inputs(self.adapter, record, scoring=True)
            if x.shape[0] == 0:
                raise UserError(f"record '{record.id}' is empty")
            tiles = [(k, t) for k, t in zip(self.tile_numbers, plan_tiles(int(x.shape[0]), self.window, self.overlap))
                     if k % self.dist.world == self.dist.rank]
            if not tiles:
                continue
            m = record.meta or {}
            start, end = cmap.span(0, x.shape[0])
            sc = SequenceScore(record.id, m.get("contig", m.get("source", record.id)), int(start), int(end),
                               len(record), m.get("strand", "."))
            if self.summary.record_columns is not None:
                sc.fields = self.summary.record_columns.values(m)
            entry = [sc, len(tiles), cmap, index]
            self.pending.append(entry)
            for k, t in tiles:
                yield WorkItem(x[t.start:t.end], t.own_start - t.start, y[t.start:t.end], (entry, t, k))

    def take(self, res, entry: list, tile, number: int) -> None:
        sc, cmap = entry[0], entry[2]
        nll = res.nll
        ok = ~np.isnan(nll)
        sc.log_likelihood -= float(nll[ok].astype(np.float64).sum())
        sc.units_scored += int(ok.sum()) * self.scale
        entry[1] -= 1
        if self.pos_w is not None and ok.any():
            p = np.arange(tile.own_start, tile.end)[ok]
            k = len(p)
            self.pos_w.write_columns({"seq_id": [sc.seq_id] * k, "chrom": [sc.chrom] * k,
                                      **{f: [v] * k for f, v in sc.fields.items()},
                                      "position": cmap.position(p), "logprob": (-nll[ok]).astype(np.float32),
                                      **({RECORD: np.full(k, number, np.int64)} if self.multi else {})})

    def flush(self) -> None:
        summary = self.summary
        while self.pending and self.pending[0][1] == 0:
            sc, _, _, index = self.pending.pop(0)
            summary.positions += sc.length
            summary.log_likelihood += sc.log_likelihood
            summary.units_scored += sc.units_scored
            if self.table is not None:
                self.table.write_row(**sc.row(), **({RECORD: index} if self.multi else {}))
            if self.keep_scores and not self.multi:
                summary.scores.append(sc)


def _writers(outs: Outputs, summary: ScoreSummary, fmt: str | None, rank: int, multi: bool):
    """The table and per-position writers (None where not asked for); under torchrun, this rank's
    parts, whose rows carry the ``_record`` key (record index; tile number per position)."""
    out, per_position, meta = summary.out, summary.per_position, summary.metadata
    table = pos_w = None
    if out is not None:
        table = outs.add(TableWriter(part_path(out, rank), with_record_column(SCORE_SCHEMA), meta, "parquet",
                                     sidecar=False, record=summary.parts_columns()) if multi else
                         TableWriter(out, SCORE_SCHEMA, meta, fmt, seconds=summary.seconds_of("start", "end"),
                                     record=summary.record_columns))
    if per_position is not None:
        pos_w = outs.add(TableWriter(part_path(per_position, rank) if multi else per_position,
                                     with_record_column(POSITION_SCHEMA) if multi else POSITION_SCHEMA, meta,
                                     "parquet", rows_per_batch=262144, sidecar=not multi,
                                     seconds=None if multi else summary.seconds_of("position"),
                                     record=summary.parts_columns() if multi else summary.record_columns))
    return table, pos_w


def _merge_ranks(summary: ScoreSummary, fmt: str, parts: list[Path], pos_parts: list[Path], keep_scores: bool) -> None:
    """Rank 0: add up every record's partial rows over the ranks, in input order, and join the
    per-position parts."""
    out, per_position, meta = summary.out, summary.per_position, summary.metadata
    summary.positions, summary.log_likelihood, summary.units_scored = 0, 0.0, 0
    with Outputs() as outs:
        table = outs.add(TableWriter(out, SCORE_SCHEMA, meta, fmt, seconds=summary.seconds_of("start", "end"),
                                     record=summary.record_columns))
        fields = summary.record_columns.fields if summary.record_columns is not None else ()
        for _, groups in itertools.groupby(merged_groups(parts), key=lambda g: g[0]):
            rows = [r for _, t in groups for r in t.to_pylist()]
            sc = SequenceScore(**{c: sum(r[c] for r in rows) if c in SUMMED else rows[0][c] for c in OWN + SUMMED},
                               fields={f: rows[0][f] for f in fields})
            table.write_row(**sc.row())
            summary.positions += sc.length
            summary.log_likelihood += sc.log_likelihood
            summary.units_scored += sc.units_scored
            if keep_scores:
                summary.scores.append(sc)
        if per_position is not None:
            merge_parts(pos_parts, outs.add(TableWriter(per_position, POSITION_SCHEMA, meta, "parquet",
                                                        rows_per_batch=262144,
                                                        seconds=summary.seconds_of("position"),
                                                        record=summary.record_columns)))
