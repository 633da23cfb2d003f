"""``hnet-seq score-variants``: log-likelihood ratio of ALT vs REF windows for every VCF allele."""
from __future__ import annotations

from pathlib import Path

import typer

from hnet_seq.cli.main import check_positive, command


@command("score-variants")
def score_variants(
    vcf: Path = typer.Option(..., "--vcf", help="Variants: .vcf, .vcf.gz or .bcf (read with pysam)."),
    reference: Path = typer.Option(..., "--reference", help="Reference FASTA (plain or bgzip; indexed on first use)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="DNA checkpoint directory, or a training run "
                                    "directory (its latest checkpoint)."),
    out: Path = typer.Option(None, "--out", "-o", help="Table .tsv or .parquet, one row per ALT allele "
                             "(default: TSV on stdout)."),
    vcf_out: Path = typer.Option(None, "--vcf-out", help="Annotated copy of the input (.vcf, .vcf.gz or .bcf): "
                                 "INFO HNET_SCORE, HNET_SITE_LLR, HNET_FLAGS; every record kept, in order."),
    config: Path = typer.Option(None, "--config", help="Config override (rarely needed)."),
    window: int = typer.Option(8192, "--window", help="Genomic span scored around each variant (bp)."),
    rc_average: bool = typer.Option(False, "--rc-average", help="Score both strands and average."),
    strict: bool = typer.Option(False, "--strict", help="A REF that does not match the reference is fatal "
                                "(default: reported and skipped)."),
    windows_fasta: Path = typer.Option(None, "--windows-fasta", help="Write every scored allele's ref and alt "
                                       "windows as FASTA (to check or rescore them with 'hnet-seq score')."),
    batch_tokens: int = typer.Option(None, "--batch-tokens", help="Positions per packed batch."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA), float32 or bfloat16."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no per-record skip messages."),
) -> None:
    """Score = log-likelihood(alt window) - log-likelihood(ref window), nats, per ALT allele.

    Convention: with p = POS-1 and m = len(REF), both windows cover the genomic span [S, S+W),
    S = p + m//2 - W//2 (the REF allele centred): ref window = ref[S:S+W], alt window =
    ref[S:p] + ALT + ref[p+m:S+W] (so indels change the alt window's length, not its span).
    site_llr restricts the difference to the allele's own bases.  Multi-allelic records are
    split; symbolic/breakend/'*' ALTs, REF mismatches (fatal with --strict) and contigs missing
    from the reference (chr1 <-> 1 aliases tried) are reported and skipped; windows past a
    contig end are padded with N and flagged contig_edge.

    Examples:

      hnet-seq score-variants --vcf calls.vcf.gz --reference genome.fa --checkpoint CK -o scores.tsv

      hnet-seq score-variants --vcf calls.bcf --reference genome.fa --checkpoint CK --rc-average \\
          --vcf-out annotated.vcf.gz -o scores.parquet
    """
    from hnet_seq.inference.batching import dist_info
    from hnet_seq.inference.variants import score_variants as run

    check_positive(batch_tokens, "--batch-tokens")
    check_positive(window, "--window")

    main = dist_info().is_main
    shown = [0]

    def report(a) -> None:
        if quiet or not main:
            return
        shown[0] += 1
        if shown[0] <= 20:
            typer.echo(f"skipped {a.chrom}:{a.pos} {a.ref}>{a.alt}: {a.reason}", err=True)
        elif shown[0] == 21:
            typer.echo("(further skipped alleles: see the status/reason columns)", err=True)

    s = run(checkpoint, vcf, reference, out, vcf_out=vcf_out, config=config, window=window, rc_average=rc_average,
            strict=strict, batch_tokens=batch_tokens, device=device, precision=precision,
            windows_fasta=windows_fasta, progress=not quiet, keep_alleles=out is None, on_skip=report)
    if not main:
        return
    if out is None:
        cols = ["chrom", "pos", "id", "ref", "alt", "score", "site_llr", "status", "flags", "reason"]
        typer.echo("\t".join(cols))
        for a in s.alleles_list:
            row = a.row()
            typer.echo("\t".join("." if row[c] is None else f"{row[c]:.6g}" if isinstance(row[c], float)
                                 else str(row[c]) for c in cols))
    typer.echo(s.describe(), err=True)
