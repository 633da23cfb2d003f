"""``hnet-seq score-variants``: log-likelihood ratio of ALT vs REF windows for every VCF allele."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from hnet_seq.cli.main import check_positive, command
from hnet_seq.cli.options import BatchTokens, Device, Precision
from hnet_seq.errors import UserError


def score_variants(
    vcf: Path = typer.Option(None, "--vcf", help="Variants: .vcf, .vcf.gz or .bcf (read with pysam)."),
    saturate: str = typer.Option(None, "--saturate", help="Instead of --vcf: every SNV of CONTIG:START-END "
                                 "(1-based inclusive, as samtools), sharing one reference pass per window."),
    reference: Path = typer.Option(..., "--reference", help="Reference FASTA (plain or bgzip; indexed on first use)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="DNA checkpoint directory, or a training run "
                                    "directory (its latest checkpoint)."),
    out: Path = typer.Option(None, "--out", "-o", help="Table .tsv or .parquet, one row per ALT allele "
                             "(default: TSV on stdout)."),
    vcf_out: Path = typer.Option(None, "--vcf-out", help="Annotated copy of the input (.vcf, .vcf.gz or .bcf): "
                                 "INFO HNET_SCORE, HNET_SITE_LLR, HNET_FLAGS and a ##hnet-seq header line; every "
                                 "record kept, in order; .vcf.gz gets a .tbi (or .csi), .bcf a .csi index."),
    config: Path = typer.Option(None, "--config", help="Config override (rarely needed)."),
    window: int = typer.Option(8192, "--window", help="Genomic span scored around each variant (bp)."),
    indel_window: str = typer.Option("equal-length", "--indel-window", help="Alt window of an indel: "
                                     "'equal-length' (W bases of the alt haplotype, as long as the ref window) or "
                                     "'span' (the ref window's span with the allele replaced; its length changes)."),
    rc_average: bool = typer.Option(False, "--rc-average/--no-rc-average", help="Score both strands; score, "
                                    "ref_ll and alt_ll are the strand means, *_fwd/*_rev columns hold each strand."),
    strict: bool = typer.Option(False, "--strict/--no-strict", help="A REF that does not match the reference is fatal "
                                "(default: reported and skipped)."),
    windows_fasta: Path = typer.Option(None, "--windows-fasta", help="Write every scored allele's ref and alt "
                                       "windows as FASTA (to check or rescore them with 'hnet-seq score')."),
    batch_tokens: BatchTokens = None,
    device: Device = None,
    precision: Precision = "auto",
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no per-record skip messages."),
    share_prefix: Optional[bool] = typer.Option(None, "--share-prefix/--no-share-prefix", help="Run each "
                                                "reference window once and only the ALT suffix after the variant "
                                                "(same scores); --no-share-prefix: a full pass per window. "
                                                "Default: shared on CPU; full on CUDA, where sharing is exact "
                                                "but measured slower (docs/benchmarks.md)."),
) -> None:
    """Score = log-likelihood(alt window) - log-likelihood(ref window), nats, per ALT allele."""
    from hnet_seq.inference.variants import score_variants as run
    from hnet_seq.runtime.distributed import dist_info

    check_positive(batch_tokens, "--batch-tokens")
    check_positive(window, "--window")
    main = dist_info().is_main
    if (vcf is None) == (saturate is None):
        raise UserError("give --vcf or --saturate (one of them)")
    shared = dict(window=window, rc_average=rc_average, share_prefix=share_prefix, config=config,
                  batch_tokens=batch_tokens, device=device, precision=precision, keep_alleles=out is None)
    if saturate is not None:
        s = _saturate(checkpoint, reference, saturate, out, vcf_out, windows_fasta, shared)
    else:
        s = run(checkpoint, vcf, reference, out, vcf_out=vcf_out, indel_window=indel_window, strict=strict,
                windows_fasta=windows_fasta, progress=not quiet, on_skip=_SkipReport(quiet or not main),
                command=_command_line(), **shared)
    if main:
        _report(s, out)


# The help's reference part, kept out of the function body: the window convention and --saturate.
score_variants.__doc__ += """

Convention: with p = POS-1 and m = len(REF), the ref window is the W reference bases
centred on REF; near a contig end it is shifted inside the contig (same length, allele
off-centre; columns contig_edge and window_offset), never padded, and a contig shorter
than W is scored whole (flag short_contig).  The alt window is, by --indel-window,
equal-length: the W bases of the alt haplotype (the reference with REF replaced by ALT)
centred on ALT (default: totals of equal-length windows compare like with like), or span:
ref[S:p] + ALT + ref[p+m:S+W], the ref window's span [S, S+W) with REF replaced by ALT (its
length changes by len(ALT) - m, and so does the total, by about a base's log-likelihood per base).  score_per_base compares
per-position means; site_llr restricts the difference to the allele's own bases.  Multi-allelic records
are split; symbolic/breakend/'*' ALTs, REF mismatches (fatal with --strict) and contigs
missing from the reference (chr1 <-> 1 aliases tried) are reported and skipped.

Examples:

  hnet-seq score-variants --vcf calls.vcf.gz --reference genome.fa --checkpoint CK -o scores.tsv

  hnet-seq score-variants --vcf calls.bcf --reference genome.fa --checkpoint CK --rc-average \\
      --vcf-out annotated.vcf.gz -o scores.parquet

  hnet-seq score-variants --saturate chr17:43044294-43045294 --reference genome.fa --checkpoint CK -o sge.tsv

--saturate scores the three SNVs of every base of the region; each scoring region of at
most W/2 bases shares one window of W bases centred on it (see hnet_seq.inference.saturation).
"""
command("score-variants")(score_variants)


class _SkipReport:
    """``on_skip``: the first 20 skipped alleles on stderr, then one line pointing to the table."""

    def __init__(self, silent: bool):
        self.silent = silent
        self.shown = 0

    def __call__(self, a) -> None:
        if self.silent:
            return
        self.shown += 1
        if self.shown <= 20:
            typer.echo(f"skipped {a.chrom}:{a.pos} {a.ref}>{a.alt}: {a.reason}", err=True)
        elif self.shown == 21:
            typer.echo("(further skipped alleles: see the status/reason columns)", err=True)


def _saturate(checkpoint, reference, region: str, out, vcf_out, windows_fasta, shared: dict):
    """--saturate: every SNV of ``region``, through :func:`~hnet_seq.inference.saturation.saturation_mutagenesis`."""
    if vcf_out is not None or windows_fasta is not None:
        raise UserError("--vcf-out and --windows-fasta need --vcf, not --saturate")
    from hnet_seq.inference.saturation import saturation_mutagenesis

    return saturation_mutagenesis(checkpoint, reference, region, out, **shared)


def _report(s, out) -> None:
    """Without -o, the table on stdout (the columns of a -o table, in the same format); the summary on stderr."""
    from hnet_seq.inference.tables import write_tsv
    from hnet_seq.inference.variant_table import TABLE_SCHEMA, table_row

    if out is None:
        write_tsv(TABLE_SCHEMA, (table_row(a) for a in s.alleles_list))
    typer.echo(_summary_line(s), err=True)


def _command_line() -> str:
    """This command as a shell line, from its parsed options (those not at their defaults).

    Rebuilt rather than read from ``sys.argv``, which is the caller's own under a test runner
    or an embedding program."""
    from typer._click.globals import get_current_context  # typer bundles its own click

    ctx = get_current_context()
    words = ["hnet-seq", "score-variants"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or not param.opts:
            continue
        words += [param.opts[0]] if value is True else [param.opts[0], str(value)]
    return shlex.join(words)


def _summary_line(s) -> str:
    """The one stderr line of a finished run, from its :class:`VariantSummary`."""
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())) or "none"
    return (f"{s.records} records, {s.alleles} ALT alleles: {s.scored} scored, skipped: {skipped}; "
            f"{s.windows} distinct windows; {s.seconds:.1f} s, {s.variants_per_second:,.1f} variants/s"
            + (f"; {s.not_in_vcf} alleles' records not in --vcf-out (vcf_unwritable)" if s.not_in_vcf else "")
            + (f"; --vcf-out: {s.index_note}" if s.index_note else ""))
