"""Embeddings: one pooled vector per sequence and, optionally, one row per chunk per stage.

Representations.  Level ``s`` of the hierarchy holds the input positions (``s = 0``) or the
chunks of chunking stage ``s`` (``s >= 1``); ``layer`` picks its ``output`` states (default)
or its ``input`` states (see :mod:`.runner`).  The pooled vector of a sequence is the mean
over the positions of level ``stage`` (``pool="mean"``; with ``stage >= 1`` that is the mean
over the chunks of that stage, which ``pool="chunks"`` selects with ``stage`` defaulting to 1)
or the vector of its last position there (``pool="last"``).  N positions (DNA's unscorable
input) are left out of the mean (at ``stage >= 1``: chunks that start at an N); chunk rows are
unaffected.

Chunk rows (``chunks=True``).  Stage ``s``'s chunk boundaries are the level-``s`` positions;
their input position is found by composing the boundary masks of stages ``1..s``.  A chunk
starts at its boundary's input position and ends at the next boundary's (the last one at the
end of the sequence): 0-based half-open ``[start, end)``, plus the record's genomic start for
BED/region input, so the chunks of every stage tile every sequence exactly.  A byte model's
BOS belongs to the first chunk (a chunk holding only BOS has no input span and is not written).
Columns: ``seq_id, chrom, start, end, stage, boundary_prob, vector`` (``chrom`` is the contig
for genomic input, as the user named it, else the sequence id), so a stage's rows are a BED-like
table.  A ``-`` strand BED interval is embedded as its reverse complement; its rows keep + strand
coordinates (so they run from the interval's end to its start) and its sequence row says
``strand = "-"``.

Long inputs are tiled (:func:`.tiling.plan_tiles`); boundaries come from the tile that owns
their position, so stitched chunks still tile the sequence.  Rows are written as tiles finish:
memory stays bounded by the batch, not by the genome.

``rc_average`` (DNA): the reverse complement is embedded too and mapped back to forward
coordinates.  Pooled vectors are the average of the two strands' pooled vectors.  Chunk rows
are the common refinement of both strands' chunkings (every cut of either strand); each piece
gets the average of the forward chunk and the reverse-strand chunk that contain it, and the
average of the two strands' boundary probabilities at its start (a strand that cannot cut
there contributes 0; a reverse-strand cut between positions ``c-1`` and ``c`` is the forward
cut at ``c``).  The output of a sequence and of its reverse complement are then the same rows,
mirrored (``[a, b)`` ↔ ``[L-b, L-a)``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import torch

from hnet_seq.errors import UserError

from hnet_seq.progress import progress_bar
from hnet_seq.runtime.distributed import all_sum, init_distributed

from .columns import RecordColumns, Seconds, vector_field
from .inputs import CoordMap, record_inputs
from .model import InferenceModel, default_batch_tokens, load
from .outputs import AtomicFile, Outputs, check_output_path, output_format
from .parts import RECORD, all_ranks_succeed, merge_on_main, merge_parts, part_path, rank_parts, with_record_column
from .records import records_and_total
from .runner import Runner
from .tables import TableWriter
from .tiling import Tile, WorkItem, batches_by_budget, default_overlap, plan_tiles, tiling_description

POOLS = ("mean", "chunks", "last")


@dataclass
class EmbedSummary:
    sequences: int = 0
    positions: int = 0
    chunk_rows: int = 0
    seconds: float = 0.0
    out: Path | None = None
    chunks_out: Path | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def units_per_second(self) -> float:
        return self.positions / max(self.seconds, 1e-9)


# ---- one strand of one stage, as it becomes known ----------------------------------------
class _Strand:
    """Chunk starts of one stage (forward coordinates) with probabilities and vectors."""

    def __init__(self, dim: int | None, with_candidates: bool):
        self.cuts: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.vecs: list[np.ndarray] = []
        self.cand_cuts: list[np.ndarray] = []
        self.cand_probs: list[np.ndarray] = []
        self.dim, self.with_candidates = dim, with_candidates
        self.known = 0  # every cut < known (and its vector) is here

    def add(self, cuts, probs, vecs, cand_cuts=None, cand_probs=None) -> None:
        self.cuts.append(np.asarray(cuts, np.int64))
        self.probs.append(np.asarray(probs, np.float32))
        if self.dim is not None:
            self.vecs.append(np.asarray(vecs, np.float32).reshape(-1, self.dim))
        if self.with_candidates and cand_cuts is not None:
            self.cand_cuts.append(np.asarray(cand_cuts, np.int64))
            self.cand_probs.append(np.asarray(cand_probs, np.float32))

    def compact(self) -> None:
        for name in ("cuts", "probs", "vecs", "cand_cuts", "cand_probs"):
            parts = getattr(self, name)
            if len(parts) > 1:
                setattr(self, name, [np.concatenate(parts)])

    def arrays(self):
        self.compact()
        cuts = self.cuts[0] if self.cuts else np.zeros(0, np.int64)
        probs = self.probs[0] if self.probs else np.zeros(0, np.float32)
        vecs = self.vecs[0] if self.vecs else None
        return cuts, probs, vecs

    def prob_at(self, c: np.ndarray) -> np.ndarray:
        """Boundary probability of this strand at cuts ``c`` (0 where it cannot cut)."""
        cuts, probs, _ = self.arrays()
        out = np.zeros(len(c), np.float32)
        if self.cand_cuts:
            cc, cp = self.cand_cuts[0], self.cand_probs[0]
            i = np.clip(np.searchsorted(cc, c), 0, max(len(cc) - 1, 0))
            hit = (len(cc) > 0) & (cc[i] == c) if len(cc) else np.zeros(len(c), bool)
            out[hit] = cp[i[hit]]
        i = np.clip(np.searchsorted(cuts, c), 0, max(len(cuts) - 1, 0))
        if len(cuts):
            hit = cuts[i] == c
            out[hit] = probs[i[hit]]
        return out

    def prune(self, start: int) -> None:
        """Forget what lies before the chunk active at ``start``."""
        cuts, probs, vecs = self.arrays()
        k = max(int(np.searchsorted(cuts, start, side="right")) - 1, 0)
        self.cuts, self.probs = [cuts[k:]], [probs[k:]]
        if vecs is not None:
            self.vecs = [vecs[k:]]
        if self.cand_cuts:
            j = int(np.searchsorted(self.cand_cuts[0], start))
            self.cand_cuts, self.cand_probs = [self.cand_cuts[0][j:]], [self.cand_probs[0][j:]]


class _RecordJob:
    """Tiles of one record (and of its reverse complement), and what they have reported."""

    def __init__(self, index: int, record, inputs: torch.Tensor, cmap: CoordMap, tiles: list[Tile],
                 stages: int, dims: list[int | None], rc: bool):
        self.index, self.record, self.cmap, self.tiles = index, record, cmap, tiles
        self.n = int(inputs.shape[0])
        self.inputs = inputs
        self.rc = rc
        self.remaining = len(tiles) * (2 if rc else 1)
        strands = (0, 1) if rc else (0,)
        self.streams = {(st, s): _Strand(dims[s], rc) for st in strands for s in range(1, stages + 1)}
        self.emitted = {s: 0 for s in range(1, stages + 1)}
        self.pending_b = {s: (self.n, 1.0, None) for s in range(1, stages + 1)}  # rc: (y pos, prob)
        self.pool_sum = {st: None for st in strands}
        self.pool_count = {st: 0 for st in strands}
        self.pool_last = {st: None for st in strands}
        self.num_chunks = [0] * stages

    def items(self) -> Iterable[WorkItem]:
        from hnet_seq.modalities.dna import reverse_complement

        rc_inputs = reverse_complement(self.inputs) if self.rc else None
        count = len(self.tiles)
        for i, tile in enumerate(self.tiles):
            yield WorkItem(self.inputs[tile.start:tile.end], tile.own_start - tile.start, None, (self, 0, tile))
            if self.rc:
                t = self.tiles[count - 1 - i]  # reverse order: reverse strand advances along forward coordinates
                yield WorkItem(rc_inputs[t.start:t.end], t.own_start - t.start, None, (self, 1, t))

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def take(self, res, strand: int, tile: Tile) -> None:
        self.remaining -= 1
        n = self.n
        if res.pool_sum is not None:
            s = self.pool_sum[strand]
            self.pool_sum[strand] = res.pool_sum.copy() if s is None else s + res.pool_sum
            self.pool_count[strand] += res.pool_count
            if tile.index == tile.count - 1:
                self.pool_last[strand] = res.pool_last
        for k in range(len(res.bnd_pos)):
            s = k + 1
            stream = self.streams.get((strand, s))
            if stream is None:
                continue
            pos = res.bnd_pos[k] + tile.start
            prob = res.bnd_prob[k]
            vec = res.bnd_vec[k] if res.bnd_vec else None
            cand_pos = res.cand_pos[k] + tile.start if res.cand_pos else None
            cand_prob = res.cand_prob[k] if res.cand_prob else None
            if strand == 0:
                self.num_chunks[k] += len(pos)
                stream.add(pos, prob, vec, cand_pos, cand_prob)
                stream.known = tile.end
                continue
            # Reverse strand: y-boundary a (chunk [a, b) of the reverse complement) covers the
            # forward span [n-b, n-a); its forward cut is n-b with b's probability.
            b_pos, b_prob, _ = self.pending_b[s]
            order = np.argsort(-pos, kind="stable")
            ys, qs = pos[order], prob[order]
            prev = np.concatenate([[b_pos], ys[:-1]])
            prev_p = np.concatenate([[b_prob], qs[:-1]]).astype(np.float32)
            vecs = vec[order] if vec is not None else None
            if len(ys):
                stream.add(n - prev, prev_p, vecs,
                           None if cand_pos is None else (n - cand_pos)[::-1],
                           None if cand_prob is None else cand_prob[::-1])
                self.pending_b[s] = (int(ys[-1]), float(qs[-1]), None)
            elif cand_pos is not None:
                stream.add(np.zeros(0, np.int64), np.zeros(0, np.float32),
                           np.zeros((0, stream.dim or 0), np.float32) if stream.dim else None,
                           (n - cand_pos)[::-1], cand_prob[::-1])
            stream.known = n - self.pending_b[s][0]

    def flush(self, write_chunk) -> int:
        """Write every chunk whose extent is known; returns rows written."""
        rows = 0
        for s, e in self.emitted.items():
            fwd = self.streams[(0, s)]
            rev = self.streams.get((1, s))
            m = fwd.known if rev is None else min(fwd.known, rev.known)
            fc, fp, fv = fwd.arrays()
            if rev is None:
                cuts = fc[(fc >= e) & (fc < m)]
            else:
                rc_, _, _ = rev.arrays()
                cuts = np.union1d(fc[(fc >= e) & (fc < m)], rc_[(rc_ >= e) & (rc_ < m)])
            if not len(cuts):
                continue
            final = m >= self.n
            ends = np.append(cuts[1:], self.n) if final else cuts[1:]
            starts = cuts[:len(ends)]
            if not len(starts):
                continue
            i_f = np.searchsorted(fc, starts, side="right") - 1
            if rev is None:
                probs = fp[i_f]
                vecs = fv[i_f] if fv is not None else None
            else:
                rcuts, _, rv = rev.arrays()
                i_r = np.searchsorted(rcuts, starts, side="right") - 1
                probs = (fwd.prob_at(starts) + rev.prob_at(starts)) / 2
                probs[starts == 0] = 1.0
                vecs = (fv[i_f] + rv[i_r]) / 2 if fv is not None else None
            rows += write_chunk(self, s, starts, ends, probs, vecs)
            self.emitted[s] = int(ends[-1]) if final else int(cuts[len(ends)])
            fwd.prune(self.emitted[s])
            if rev is not None:
                rev.prune(self.emitted[s])
        return rows

    def pooled(self, pool: str) -> np.ndarray:
        vecs = []
        for st in self.pool_sum:
            if pool == "last":
                vecs.append(self.pool_last[st])
            else:
                vecs.append(self.pool_sum[st] / max(self.pool_count[st], 1))
        return np.mean(vecs, axis=0).astype(np.float32)


# ---- the API -------------------------------------------------------------------------------
def embed(checkpoint: str | Path | InferenceModel, inputs: Sequence[str | Path] = (),
          out: str | Path = "embeddings.parquet",
          *, config: str | Path | None = None, modality: str | None = None, bed: str | Path | None = None,
          region: str | None = None,
          reference: str | Path | None = None, chunks: bool = False, chunks_out: str | Path | None = None,
          pool: str = "mean", stage: int | None = None, layer: str = "output", rc_average: bool = False,
          window: int = 8192, overlap: int | None = None, batch_tokens: int | None = None, device: str | None = None,
          precision: str = "auto", progress: bool = True, records: Iterable | None = None) -> EmbedSummary:
    """Embed every input sequence; write one row per sequence to ``out`` (parquet or ``.npz``).

    With ``chunks``, also one row per chunk per stage to ``chunks_out`` (default
    ``<out stem>.chunks.parquet``; inside the ``.npz`` for npz output).  ``records`` (an
    iterable of Records) replaces ``inputs``/``bed``/``region``.  Under torchrun every rank embeds a
    strided share of the records and rank 0 merges the parts in input order.
    """
    overlap, out, fmt, chunks_out = _check_outputs(pool, window, overlap, out, chunks, chunks_out)
    im = load(checkpoint, config, device=device, modality=modality, precision=precision)
    adapter = im.adapter
    stage = _check_model(im, rc_average, pool, stage)
    runner = Runner(im, layer=layer, chunk_vectors=chunks, probs=chunks and rc_average, pool_level=stage)
    dist = init_distributed(im.device)
    budget = batch_tokens or default_batch_tokens(im.device)
    meta = _metadata(im, layer, stage, pool, rc_average, window, overlap, fmt)
    summary = EmbedSummary(out=out, chunks_out=Path(chunks_out) if chunks and fmt == "parquet" else None, metadata=meta)
    total = None
    if records is None:
        records, total = records_and_total(adapter, inputs, bed=bed, region=region, reference=reference,
                                           with_total=progress and dist.is_main)
    t0 = time.perf_counter()
    seq_schema = _seq_schema(im.level_dim(stage, layer))
    with Outputs() as outs, all_ranks_succeed("embedding"):
        sink = _Sink(outs, summary, adapter, fmt, seq_schema, chunks, dist, pool)
        jobs = _Jobs(records, adapter, dist, window, overlap, im.num_stages if chunks else 0,
                     [None] + [im.level_dim(s, layer) for s in range(1, im.num_levels)], rc_average)
        # both strands with rc_average; rank 0 shows about its share of the records
        share = total * (2 if rc_average else 1) // dist.world if total else None
        with progress_bar(progress and dist.is_main, "embed", share, unit=adapter.unit_name + "s") as bar:
            for group, results in runner.stream(batches_by_budget(jobs.items(), budget)):
                for res, item in zip(results, group):
                    job, strand, tile = item.tag
                    job.take(res, strand, tile)
                bar.advance(sum(len(it) - it.own_start for it in group))
                jobs.flush(sink)
        if jobs.pending:
            raise RuntimeError("internal error: records left unfinished")
        if fmt == "npz":
            _write_npz(out, sink.npz, meta, chunks)
    if dist.world > 1:
        _merge_ranks(summary, dist, seq_schema, sink.seconds, sink.own, chunks)
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_outputs(pool: str, window: int, overlap: int | None, out, chunks: bool, chunks_out):
    """Check the arguments that need no model (before any work); returns the overlap, the
    checked output paths and the output format."""
    if pool not in POOLS:
        raise UserError(f"pool={pool}: choose {', '.join(POOLS)}", params=("pool",))
    overlap = default_overlap(window, overlap)
    plan_tiles(1, window, overlap)  # check window/overlap before any work
    out = check_output_path(out)
    fmt = output_format(out, ("parquet", "npz"))
    if chunks and fmt == "parquet":
        chunks_out = check_output_path(chunks_out or out.with_name(out.name.rsplit(".", 1)[0] + ".chunks.parquet"),
                                       "chunks_out")
        output_format(chunks_out, ("parquet",), "chunks_out")
        if Path(chunks_out).resolve() == out.resolve():
            raise UserError("chunks_out must differ from out", params=("chunks_out", "out"))
    return overlap, out, fmt, chunks_out


def _check_model(im: InferenceModel, rc_average: bool, pool: str, stage: int | None) -> int:
    """Check the arguments against the model; returns the pooled stage."""
    if rc_average and im.adapter.name != "dna":
        raise UserError(f"rc_average is for DNA models; this model reads {im.adapter.name}", params=("rc_average",))
    if stage is None:
        stage = 1 if pool == "chunks" else 0
    if pool == "chunks" and stage < 1:
        raise UserError("pool=chunks averages chunks: give stage=1 or more", params=("pool", "stage"))
    if pool == "chunks" and im.num_stages == 0:
        raise UserError("pool=chunks: this model has no chunking level", params=("pool",))
    return stage


def _metadata(im: InferenceModel, layer: str, stage: int, pool: str, rc_average: bool, window: int, overlap: int,
              fmt: str) -> dict:
    meta = {"kind": "embeddings", "checkpoint": im.checkpoint, "modality": im.adapter.name, "layer": layer,
            "stage": stage, "pool": pool, "rc_average": rc_average, "window": window, "overlap": overlap,
            "tiling": tiling_description(window, overlap), "precision": im.precision,
            "coordinates": "0-based half-open on the + strand; genomic (contig, start, end) for BED/region input, "
                           "a '-' interval embedded as its reverse complement (strand column); "
                           "bytes for text (BOS excluded), samples for raw audio",
            "stages": im.num_stages, "dims": [im.level_dim(s, layer) for s in range(im.num_levels)]}
    if fmt == "npz":
        meta["note"] = "npz output is assembled in memory; use parquet for large inputs"
    return meta


def _seq_schema(pool_dim: int) -> pa.Schema:
    return pa.schema([pa.field("seq_id", pa.string()), pa.field("chrom", pa.string()),
                      pa.field("start", pa.int64()), pa.field("end", pa.int64()),
                      pa.field("strand", pa.string()), pa.field("length", pa.int64()),
                      pa.field("tiles", pa.int32()),
                      pa.field("num_chunks", pa.list_(pa.int64())), vector_field("embedding", pool_dim)])


CHUNK_SCHEMA = pa.schema([pa.field("seq_id", pa.string()), pa.field("chrom", pa.string()),
                          pa.field("start", pa.int64()), pa.field("end", pa.int64()),
                          pa.field("stage", pa.int8()), pa.field("boundary_prob", pa.float32()),
                          pa.field("vector", pa.list_(pa.float32()))])


class _Jobs:
    """This rank's records as :class:`_RecordJob` s, and the ones still waiting for tiles (in input order)."""

    def __init__(self, records: Iterable, adapter, dist, window: int, overlap: int, stages: int,
                 dims: list[int | None], rc: bool):
        self.records, self.adapter, self.dist = records, adapter, dist
        self.window, self.overlap, self.stages, self.dims, self.rc = window, overlap, stages, dims, rc
        self.pending: list[_RecordJob] = []

    def items(self) -> Iterable[WorkItem]:
        for i, record in enumerate(self.records):
            if i % self.dist.world != self.dist.rank:
                continue
            x, _, cmap = record_inputs(self.adapter, record)
            if x.shape[0] == 0:
                raise UserError(f"record '{record.id}' is empty")
            job = _RecordJob(i, record, x, cmap, plan_tiles(int(x.shape[0]), self.window, self.overlap),
                             self.stages, self.dims, self.rc)
            self.pending.append(job)
            yield from job.items()

    def flush(self, sink: "_Sink") -> None:
        """Write the chunk rows that are known, and the sequence row of every finished record in order."""
        while self.pending:
            job = self.pending[0]
            if sink.chunks:
                sink.summary.chunk_rows += job.flush(sink.write_chunk)
            if not job.done:
                break
            sink.finish(self.pending.pop(0))


class _Sink:
    """Where the rows go: the parquet writers (under torchrun, this rank's parts, keyed by record
    index) or, for npz output, lists assembled in memory."""

    def __init__(self, outs: Outputs, summary: EmbedSummary, adapter, fmt: str, seq_schema: pa.Schema, chunks: bool,
                 dist, pool: str):
        self.summary, self.fmt, self.chunks, self.pool = summary, fmt, chunks, pool
        self.multi = dist.world > 1
        self.seconds = Seconds.of(adapter, "start", "end")  # audio: time beside the sample coordinates
        self.own = RecordColumns.of(adapter)  # text: lang, and doc/source for seq_id/chrom
        self.npz: dict[str, list] = {k: [] for k in ("seq_id", "chrom", "start", "end", "strand", "length",
                                                     "embedding", "chunk_record", "chunk_stage", "chunk_start",
                                                     "chunk_end", "chunk_prob", "chunk_vector")}
        if fmt == "parquet":
            self.seq_w = self._writer(outs, summary.out, seq_schema, 1024, dist, adapter)
            self.chunk_w = self._writer(outs, summary.chunks_out, CHUNK_SCHEMA, 65536, dist, adapter) \
                if chunks else None

    def _writer(self, outs: Outputs, path: Path, schema: pa.Schema, rows: int, dist, adapter) -> TableWriter:
        multi = self.multi
        return outs.add(TableWriter(part_path(path, dist.rank) if multi else path,
                                    with_record_column(schema) if multi else schema, self.summary.metadata,
                                    "parquet", rows_per_batch=rows, sidecar=not multi,
                                    seconds=None if multi else self.seconds,
                                    record=RecordColumns.of(adapter, rename=False) if multi else self.own))

    def write_chunk(self, job: _RecordJob, s: int, starts, ends, probs, vecs) -> int:
        a, b = job.cmap.span(starts, ends)
        keep = b > a
        if not keep.all():
            a, b, probs = a[keep], b[keep], probs[keep]
            vecs = vecs[keep] if vecs is not None else None
        k = len(a)
        if not k:
            return 0
        rid = job.record.id
        m = job.record.meta or {}
        chrom = m.get("contig", m.get("source", rid))
        if self.fmt == "npz":
            for name, v in (("chunk_record", np.full(k, job.index)), ("chunk_stage", np.full(k, s, np.int8)),
                            ("chunk_start", a), ("chunk_end", b), ("chunk_prob", np.asarray(probs, np.float32)),
                            ("chunk_vector", vecs)):
                self.npz[name].append(v)
            return k
        own = self.own
        cols = {"seq_id": [rid] * k, "chrom": [chrom] * k, "start": a, "end": b,
                **({f: [v] * k for f, v in own.values(m).items()} if own is not None else {}),
                "stage": np.full(k, s, np.int8), "boundary_prob": np.asarray(probs, np.float32),
                "vector": vecs if vecs is not None else [None] * k}
        if self.multi:
            cols[RECORD] = np.full(k, job.index, np.int64)
        self.chunk_w.write_columns(cols)
        return k

    def finish(self, job: _RecordJob) -> None:
        rid = job.record.id
        m = job.record.meta or {}
        chrom = m.get("contig", m.get("source", rid))
        start, end = job.cmap.span(0, job.n)
        vec = job.pooled(self.pool)
        if self.fmt == "npz":
            for k, v in (("seq_id", rid), ("chrom", chrom), ("start", start), ("end", end),
                         ("strand", m.get("strand", ".")), ("length", len(job.record)), ("embedding", vec)):
                self.npz[k].append(v)
        else:
            row = dict(seq_id=rid, chrom=chrom, start=int(start), end=int(end), strand=m.get("strand", "."),
                       length=len(job.record),
                       tiles=len(job.tiles), num_chunks=job.num_chunks, embedding=vec,
                       **(self.own.values(m) if self.own is not None else {}))
            if self.multi:
                row[RECORD] = job.index
            self.seq_w.write_row(**row)
        self.summary.sequences += 1
        self.summary.positions += job.n
        job.inputs = None


def _merge_ranks(summary: EmbedSummary, dist, seq_schema: pa.Schema, seconds, own, chunks: bool) -> None:
    """Every rank: sum the counts; rank 0: merge the ranks' parts in input order."""
    summary.sequences, summary.positions, summary.chunk_rows = (
        int(v) for v in all_sum([summary.sequences, summary.positions, summary.chunk_rows]))
    out, chunks_out, meta = summary.out, summary.chunks_out, summary.metadata
    seq_parts = rank_parts(out, dist.world)
    chunk_parts = rank_parts(chunks_out, dist.world) if chunks else []

    def merge() -> None:
        with Outputs() as outs:
            merge_parts(seq_parts, outs.add(TableWriter(out, seq_schema, meta, "parquet", rows_per_batch=1024,
                                                        seconds=seconds, record=own)))
            if chunks:
                merge_parts(chunk_parts, outs.add(TableWriter(chunks_out, CHUNK_SCHEMA, meta, "parquet",
                                                              rows_per_batch=65536, seconds=seconds, record=own)))

    merge_on_main(dist, merge, seq_parts + chunk_parts)


def _write_npz(out: Path, npz: dict, meta: dict, chunks: bool) -> None:
    import json

    arrays = {"seq_id": np.array(npz["seq_id"], dtype=str), "chrom": np.array(npz["chrom"], dtype=str),
              "start": np.array(npz["start"], np.int64), "end": np.array(npz["end"], np.int64),
              "strand": np.array(npz["strand"], dtype=str),
              "length": np.array(npz["length"], np.int64),
              "embedding": np.stack(npz["embedding"]) if npz["embedding"] else np.zeros((0, 0), np.float32),
              "metadata": np.array(json.dumps(meta))}
    if chunks:
        for k in ("chunk_record", "chunk_stage", "chunk_start", "chunk_end", "chunk_prob"):
            arrays[k] = np.concatenate(npz[k]) if npz[k] else np.zeros(0)
        # vector widths differ between stages: one array per stage, in the order of that stage's rows
        by_stage: dict[int, list] = {}
        for stage_ids, vecs in zip(npz["chunk_stage"], npz["chunk_vector"]):
            if vecs is not None and len(stage_ids):
                by_stage.setdefault(int(stage_ids[0]), []).append(vecs)
        for s, vecs in by_stage.items():
            arrays[f"chunk_vector_stage{s}"] = np.concatenate(vecs)
    f = AtomicFile(out)
    try:
        with open(f.tmp, "wb") as fh:
            np.savez(fh, **arrays)
        f.close()
    except BaseException:
        f.abort()
        raise


def read_chunks(path: str | Path, stage: int | None = None):
    """Chunk rows of a ``*.chunks.parquet`` as a pyarrow Table (optionally one stage)."""
    import pyarrow.parquet as pq

    filters = [("stage", "=", stage)] if stage is not None else None
    return pq.read_table(str(path), filters=filters)
