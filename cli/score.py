"""``hnet-seq score``: log-likelihood, bits per unit and length of every sequence."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import check_positive, command
from hnet_seq.cli.options import (BatchTokens, Checkpoint, Config, Device, Modality, Overlap, Precision, Quiet,
                                  Reference, Region, Window)


@command("score")
def score(
    inputs: list[Path] = typer.Argument(None, help="FASTA, text/JSONL or audio files, or .tar shards "
                                        "(omit with --bed or --region).", show_default=False),
    checkpoint: Checkpoint = ...,
    out: Path = typer.Option(None, "--out", "-o", help="Table .tsv or .parquet (default: TSV on stdout)."),
    per_position: Path = typer.Option(None, "--per-position", help="Also write per-position log-probabilities "
                                      "(nats) to this .parquet: seq_id, chrom, position, logprob."),
    config: Config = None,
    modality: Modality = None,
    bed: Path = typer.Option(None, "--bed", help="Score these BED intervals (.bed or .bed.gz) of --reference: "
                             "the name is the seq_id, a '-' interval is scored as its reverse complement."),
    region: Region = None,
    reference: Reference = None,
    window: Window = 8192,
    overlap: Overlap = None,
    batch_tokens: BatchTokens = None,
    device: Device = None,
    precision: Precision = "auto",
    quiet: Quiet = False,
) -> None:
    """Per-sequence log-likelihood (nats), bits per unit and length; any modality.

    Position i is scored as log p(x_i | x_<i) for i >= 1 (a byte model's BOS makes every byte
    scored; a DNA sequence's first base is not).

    Examples:

      hnet-seq score held_out.fa --checkpoint runs/dna/checkpoints/latest

      hnet-seq score udhr/*.txt --checkpoint hnet_2stage_L.pt --config configs/hnet_2stage_L.json -o bpb.tsv

      hnet-seq score region.fa --checkpoint CK --per-position lp.parquet

      torchrun --nproc-per-node 4 -m hnet_seq.cli score chr20.fa --checkpoint CK -o chr20.tsv
    """
    from hnet_seq.inference.score import SCORE_SCHEMA, score as run
    from hnet_seq.inference.tables import write_tsv
    from hnet_seq.runtime.distributed import dist_info

    check_positive(batch_tokens, "--batch-tokens")
    check_positive(window, "--window")

    s = run(checkpoint, inputs or [], out, config=config, modality=modality, bed=bed, region=region,
            reference=reference, per_position=per_position, window=window, overlap=overlap,
            batch_tokens=batch_tokens, device=device, precision=precision, progress=not quiet, keep_scores=out is None)
    if not dist_info().is_main:  # rank 0 merged the ranks' results and reports them
        return
    if out is None:  # the columns of a -o table, in the same format
        write_tsv(SCORE_SCHEMA, (sc.row() for sc in s.scores), seconds=s.seconds_of("start", "end"),
                  record=s.record_columns)
    typer.echo(f"read {s.positions:,} units, scored {s.units_scored:,} in {s.seconds:.1f} s"
               + (f"; overall {s.bits_per_unit:.4f} bits/unit" if s.scores else "")
               + (f"; log-likelihood {s.nats_per_second:,.1f} nats per second of audio"
                  if s.nats_per_second is not None else "")
               + (f" -> {out}" if out else "") + (f"; per-position -> {per_position}" if per_position else ""),
               err=True)
