"""``hnet-seq score``: log-likelihood, bits per unit and length of every sequence."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import CHECKPOINT_HELP, check_positive, command


@command("score")
def score(
    inputs: list[Path] = typer.Argument(None, help="FASTA, text/JSONL or audio files, or .tar shards "
                                        "(omit with --bed or --region).", show_default=False),
    checkpoint: Path = typer.Option(..., "--checkpoint", help=CHECKPOINT_HELP),
    out: Path = typer.Option(None, "--out", "-o", help="Table .tsv or .parquet (default: TSV on stdout)."),
    per_position: Path = typer.Option(None, "--per-position", help="Also write per-position log-probabilities "
                                      "(nats) to this .parquet: seq_id, chrom, position, logprob."),
    config: Path = typer.Option(None, "--config", help="JSON config of an official .pt checkpoint."),
    modality: str = typer.Option(None, "--modality", help="Override the checkpoint's modality."),
    bed: Path = typer.Option(None, "--bed", help="Score these BED intervals (.bed or .bed.gz) of --reference: "
                             "the name is the seq_id, a '-' interval is scored as its reverse complement."),
    region: str = typer.Option(None, "--region", help="Score one region CONTIG:START-END of --reference, "
                               "1-based inclusive as in samtools (chr1:1001-2000 is BED chr1 1000 2000)."),
    reference: Path = typer.Option(None, "--reference", help="Reference FASTA for --bed or --region."),
    window: int = typer.Option(8192, "--window", help="Tile length for long sequences."),
    overlap: int = typer.Option(None, "--overlap", help="Left context of every tile after the first (default: "
                                "window/4, at most 1024); its "
                                "positions are scored by the previous tile."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Positions per packed batch."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA), float32 or bfloat16."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
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
