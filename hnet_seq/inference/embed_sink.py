"""Where :func:`.embed` rows go: streamed parquet (per-rank parts under torchrun, merged on rank 0)
or an ``.npz`` assembled in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from hnet_seq.runtime.distributed import all_sum

from .columns import RecordColumns, Seconds, vector_field
from .embed_stitch import RecordJob
from .outputs import AtomicFile, Outputs
from .parts import RECORD, merge_on_main, merge_parts, part_path, rank_parts, with_record_column
from .tables import TableWriter

if TYPE_CHECKING:  # annotations only: embed imports this module
    from .embed import EmbedSummary


def sequence_schema(pool_dim: int) -> pa.Schema:
    return pa.schema([pa.field("seq_id", pa.string()), pa.field("chrom", pa.string()),
                      pa.field("start", pa.int64()), pa.field("end", pa.int64()),
                      pa.field("strand", pa.string()), pa.field("length", pa.int64()),
                      pa.field("tiles", pa.int32()),
                      pa.field("num_chunks", pa.list_(pa.int64())), vector_field("embedding", pool_dim)])


CHUNK_SCHEMA = pa.schema([pa.field("seq_id", pa.string()), pa.field("chrom", pa.string()),
                          pa.field("start", pa.int64()), pa.field("end", pa.int64()),
                          pa.field("stage", pa.int8()), pa.field("boundary_prob", pa.float32()),
                          pa.field("vector", pa.list_(pa.float32()))])


class EmbedSink:
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

    def write_chunk(self, job: RecordJob, s: int, starts, ends, probs, vecs) -> int:
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

    def finish(self, job: RecordJob) -> None:
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


def merge_ranks(summary: EmbedSummary, dist, seq_schema: pa.Schema, seconds, own, chunks: bool) -> None:
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


def write_npz(out: Path, npz: dict, meta: dict, chunks: bool) -> None:
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
