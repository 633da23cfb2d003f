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

from hnet_seq.errors import UserError
from hnet_seq.progress import progress_bar
from hnet_seq.runtime.distributed import init_distributed

from .embed_sink import EmbedSink, merge_ranks, sequence_schema, write_npz
from .embed_stitch import RecordJob
from .inputs import record_inputs
from .model import InferenceModel, default_batch_tokens, load
from .outputs import Outputs, check_output_path, output_format
from .parts import all_ranks_succeed
from .records import records_and_total
from .runner import Runner
from .tiling import WorkItem, batches_by_budget, default_overlap, plan_tiles, tiling_description

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
    seq_schema = sequence_schema(im.level_dim(stage, layer))
    with Outputs() as outs, all_ranks_succeed("embedding"):
        sink = EmbedSink(outs, summary, adapter, fmt, seq_schema, chunks, dist, pool)
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
            write_npz(out, sink.npz, meta, chunks)
    if dist.world > 1:
        merge_ranks(summary, dist, seq_schema, sink.seconds, sink.own, chunks)
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
    if rc_average and not im.adapter.double_stranded:
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


class _Jobs:
    """This rank's records as :class:`RecordJob` s, and the ones still waiting for tiles (in input order)."""

    def __init__(self, records: Iterable, adapter, dist, window: int, overlap: int, stages: int,
                 dims: list[int | None], rc: bool):
        self.records, self.adapter, self.dist = records, adapter, dist
        self.window, self.overlap, self.stages, self.dims, self.rc = window, overlap, stages, dims, rc
        self.pending: list[RecordJob] = []

    def items(self) -> Iterable[WorkItem]:
        for i, record in enumerate(self.records):
            if i % self.dist.world != self.dist.rank:
                continue
            x, _, cmap = record_inputs(self.adapter, record)
            if x.shape[0] == 0:
                raise UserError(f"record '{record.id}' is empty")
            job = RecordJob(i, record, x, cmap, plan_tiles(int(x.shape[0]), self.window, self.overlap),
                             self.stages, self.dims, self.rc)
            self.pending.append(job)
            yield from job.items()

    def flush(self, sink: EmbedSink) -> None:
        """Write the chunk rows that are known, and the sequence row of every finished record in order."""
        while self.pending:
            job = self.pending[0]
            if sink.chunks:
                sink.summary.chunk_rows += job.flush(sink.write_chunk)
            if not job.done:
                break
            sink.finish(self.pending.pop(0))


def read_chunks(path: str | Path, stage: int | None = None):
    """Chunk rows of a ``*.chunks.parquet`` as a pyarrow Table (optionally one stage)."""
    import pyarrow.parquet as pq

    filters = [("stage", "=", stage)] if stage is not None else None
    return pq.read_table(str(path), filters=filters)
