"""``hnet-seq embed``: pooled embeddings per sequence, and per-chunk rows with input coordinates."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import check_positive, command
from hnet_seq.cli.options import (BatchTokens, Checkpoint, Config, Device, Modality, Overlap, Precision, Quiet,
                                  Reference, Region, Window)


@command("embed")
def embed(
    inputs: list[Path] = typer.Argument(None, help="FASTA, text/JSONL or audio files (directories are walked), "
                                        "or .tar shards. Omit with --bed or --region.", show_default=False),
    checkpoint: Checkpoint = ...,
    out: Path = typer.Option(..., "--out", "-o", help="Output .parquet (streamed) or .npz (one row per sequence)."),
    config: Config = None,
    modality: Modality = None,
    bed: Path = typer.Option(None, "--bed", help="BED intervals (.bed or .bed.gz) of --reference to embed: "
                             "the name is the seq_id, a '-' interval is embedded as its reverse complement; "
                             "rows keep genomic + strand coordinates."),
    region: Region = None,
    reference: Reference = None,
    chunks: bool = typer.Option(False, "--chunks/--no-chunks", help="Also write one row per chunk per stage: seq_id, chrom, "
                                "start, end (0-based half-open, input/genomic coordinates), stage, "
                                "boundary_prob, vector."),
    chunks_out: Path = typer.Option(None, "--chunks-out", help="Chunk rows file (default: OUT with "
                                    ".chunks.parquet)."),
    pool: str = typer.Option("mean", "--pool", help="mean (over positions of --stage), chunks (mean over the "
                             "chunks of --stage, default 1) or last."),
    stage: int = typer.Option(None, "--stage", help="Hierarchy level to pool: 0 = input positions, s = chunks "
                              "of stage s."),
    layer: str = typer.Option("output", "--layer", help="output (the level's output states) or input (what "
                              "enters it: embeddings at 0, the chunk's first encoder state at s >= 1)."),
    rc_average: bool = typer.Option(False, "--rc-average/--no-rc-average", help="DNA: also embed the reverse complement and "
                                    "average (coordinates mapped back)."),
    window: Window = 8192,
    overlap: Overlap = None,
    batch_tokens: BatchTokens = None,
    device: Device = None,
    precision: Precision = "auto",
    quiet: Quiet = False,
) -> None:
    """Embed sequences: one row per sequence (pooled vector) and, with --chunks, one row per chunk.

    Chunk coordinates tile every sequence exactly at every stage; for --bed/--region input they are
    genomic, so a stage's rows join directly with a BED of annotations (e.g. with bedtools or
    pyarrow/duckdb on chrom/start/end).  Long sequences are tiled (--window/--overlap) and
    stitched; the tiling is stored in the parquet metadata (key 'hnet_seq').

    Examples:

      hnet-seq embed genome.fa --checkpoint runs/dna/checkpoints/latest -o emb.parquet --chunks

      hnet-seq embed --bed promoters.bed --reference hg38.fa --checkpoint CK -o prom.parquet --rc-average

      torchrun --nproc-per-node 4 -m hnet_seq.cli embed genome.fa --checkpoint CK -o emb.parquet --chunks
    """
    from hnet_seq.inference.embed import embed as run

    check_positive(batch_tokens, "--batch-tokens")
    check_positive(window, "--window")
    _report(run(checkpoint, inputs or [], out, config=config, modality=modality, bed=bed, region=region,
                reference=reference, chunks=chunks, chunks_out=chunks_out, pool=pool, stage=stage, layer=layer,
                rc_average=rc_average, window=window, overlap=overlap, batch_tokens=batch_tokens, device=device,
                precision=precision, progress=not quiet))


def _report(s) -> None:
    """One line on stderr (rank 0) from the :class:`~hnet_seq.inference.embed.EmbedSummary`."""
    from hnet_seq.runtime.distributed import dist_info

    if not dist_info().is_main:
        return
    msg = (f"embedded {s.sequences} sequences ({s.positions:,} positions) in {s.seconds:.1f} s "
           f"({s.units_per_second:,.0f}/s) -> {s.out}")
    if s.chunks_out:
        msg += f"; {s.chunk_rows:,} chunk rows -> {s.chunks_out}"
    typer.echo(msg, err=True)
