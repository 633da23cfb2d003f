"""Variant effect scores: log-likelihood of the alternate window minus that of the reference.

For each ALT allele of each VCF/BCF record (multi-allelic records are split, one row per ALT):

* Windows: see :mod:`.variant_windows` -- ``W`` bases centred on the allele, shifted inside
  the contig at its ends (``contig_edge``, ``window_offset``; never N padding); the alternate
  window is ``W`` bases of the alternate haplotype (``indel_window="equal-length"``, the
  default) or the reference window's span with the allele replaced (``"span"``).
* Score.  ``score = LL(alt window) - LL(ref window)`` in nats, where ``LL`` is exactly what
  ``hnet-seq score`` reports for that window as a FASTA record (sum of ``log p(x_i | x_<i)``
  over the scored positions); ``score_per_base`` is the difference of the per-position means
  (``LL / positions scored``).  ``site_llr`` is the difference restricted to the allele's own
  bases (a VCF anchor base shared by REF and ALT contributes the same to both sides).
* ``rc_average``: both windows are also scored on the reverse strand (reverse complements,
  allele positions mirrored); ``score``, ``score_per_base``, ``site_llr``, ``ref_ll`` and
  ``alt_ll`` are then the means of the two strands (``score == alt_ll - ref_ll``), and
  ``ref_ll_fwd``/``alt_ll_fwd``/``score_fwd`` and ``*_rev`` hold each strand's values.
* Checks, each reported per allele in the ``status``/``flags``/``reason`` columns (and the
  ``HNET_FLAGS`` INFO field): REF must equal the reference bases (case-insensitive) --
  otherwise ``ref_mismatch``, skipped, or a fatal error with ``strict``; a contig missing from
  the reference (after ``chr`` aliasing: ``chr1`` <-> ``1``, ``chrM`` <-> ``MT``) is
  ``missing_contig``; symbolic (``<DEL>``), breakend (``A[chr2:5[``) and ``*`` ALTs are
  skipped with their reason.
* Output: a table (TSV or parquet), one row per ALT in input order; optionally the input
  VCF/BCF with ``HNET_SCORE``, ``HNET_SITE_LLR`` and ``HNET_FLAGS`` INFO fields added
  (``Number=A``), every input record kept, in order (see :mod:`.vcf_out`).

Reference windows shared by several alleles (multi-allelic records, repeated positions) are
scored once; windows of many variants are packed into each forward pass
(:mod:`.variant_blocks`); the table's columns are in :mod:`.variant_table`.
"""
from __future__ import annotations

import time
from pathlib import Path

from hnet_seq.errors import UserError
from hnet_seq.runtime.distributed import all_sum, init_distributed

from .model import InferenceModel, default_batch_tokens, load
from .outputs import Outputs, check_output_path, checked_table
from .parts import RECORD, all_ranks_succeed, merge_on_main, merge_parts, rank_parts
from .tables import TableWriter
from .variant_blocks import BlockScorer, BlockSink, provenance, stream_blocks
from .variant_table import TABLE_SCHEMA, VariantSummary
from .variant_windows import INDEL_WINDOWS, REASONS, Allele, Reference
from .vcf_out import VcfAnnotator, open_vcf

__all__ = ["score_variants"]


def score_variants(checkpoint: str | Path | InferenceModel, vcf: str | Path, reference: str | Path,
                   out: str | Path | None = None, *, vcf_out: str | Path | None = None,
                   config: str | Path | None = None, window: int = 8192, indel_window: str = "equal-length",
                   rc_average: bool = False, strict: bool = False, batch_tokens: int | None = None,
                   device: str | None = None, precision: str = "auto", windows_fasta: str | Path | None = None,
                   progress: bool = True, records_per_block: int = 512, keep_alleles: bool = False,
                   on_skip=None, command: str | None = None,
                   share_prefix: bool | None = None) -> VariantSummary:
    """Score every ALT allele of ``vcf`` against ``reference`` (see the module docstring).

    ``out``: TSV or parquet table; ``vcf_out``: annotated ``.vcf``/``.vcf.gz``/``.bcf``
    (indexed when compressed); ``windows_fasta``: the reference and alternate window of every
    scored allele as FASTA (records ``v<record>_<alt>_ref`` / ``_alt``), to check or rescore
    them.  ``on_skip(allele)`` is called for every skipped allele (the CLI prints them);
    ``command`` goes into the ``##hnet-seq`` VCF header line.  Under torchrun each rank scores
    a strided share of the records and rank 0 writes the outputs in input order.
    ``share_prefix``: run each reference window once and only the ALT suffixes after it
    (:mod:`.variant_prefix`; same scores within float tolerance); False: full pass per window;
    None: :func:`.variant_prefix.shared_by_default` for the device.
    """
    out, fmt, vcf_out, windows_fasta = _check_outputs(window, indel_window, out, vcf_out, windows_fasta)
    im = load(checkpoint, config, device=device, precision=precision)
    if share_prefix is None:
        from .variant_prefix import shared_by_default

        share_prefix = shared_by_default(im.device)
    if not im.adapter.genomic:
        raise UserError(f"score-variants needs a DNA model; this checkpoint reads {im.adapter.name}")
    dist = init_distributed(im.device)
    multi = dist.world > 1
    if multi and out is None and vcf_out is None:
        raise UserError("under torchrun, give out and/or vcf_out (rank 0 merges the ranks' results into them)",
                        params=("out", "vcf_out"))
    if multi and windows_fasta is not None:
        raise UserError("windows_fasta is not supported under torchrun; run it in one process",
                        params=("windows_fasta",))
    ref = Reference(reference)
    vf = open_vcf(vcf)
    meta = _metadata(im, vcf, reference, window, indel_window, rc_average, command)
    scorer = BlockScorer(im, ref, window, indel_window, rc_average, strict,
                          max(batch_tokens or default_batch_tokens(im.device), window + 64), str(vcf), share_prefix)
    summary = VariantSummary(out=out, vcf_out=vcf_out)
    t0 = time.perf_counter()
    with Outputs() as outs, all_ranks_succeed("variant scoring"):
        sink = BlockSink(outs, summary, scorer, vf, meta, fmt, windows_fasta, dist, on_skip, keep_alleles)
        stream_blocks(vf, vcf, dist, records_per_block, progress, summary, sink.run_block)
        summary.windows = scorer.windows
        if sink.fasta_handle is not None:
            sink.fasta_handle.close()
    if sink.annot is not None:
        summary.index, summary.index_note = sink.annot.index, sink.annot.index_note
    if multi:
        _gather(summary)
        parts = rank_parts(out or Path(vcf_out), dist.world)
        merge_on_main(dist, lambda: _merge_outputs(vcf, out, fmt, vcf_out, meta, parts, summary), parts)
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_outputs(window: int, indel_window: str, out, vcf_out, windows_fasta):
    """Check the arguments that need no model; returns the checked paths and the table format."""
    if window < 4:
        raise UserError(f"window={window}: too small", params=("window",))
    if indel_window not in INDEL_WINDOWS:
        raise UserError(f"indel_window={indel_window}: expected one of {', '.join(INDEL_WINDOWS)}",
                        params=("indel_window",))
    out, fmt = checked_table(out)
    if vcf_out is not None:
        vcf_out = check_output_path(vcf_out, "vcf_out")
        if not str(vcf_out).lower().endswith((".vcf", ".vcf.gz", ".bcf")):
            raise UserError(f"vcf_out={vcf_out}: unsupported extension (use .vcf, .vcf.gz or .bcf)",
                            params=("vcf_out",))
    if windows_fasta is not None:
        windows_fasta = check_output_path(windows_fasta, "windows_fasta")
    return out, fmt, vcf_out, windows_fasta


def _metadata(im: InferenceModel, vcf, reference, window: int, indel_window: str, rc_average: bool,
              command: str | None) -> dict:
    from hnet_seq import __version__

    return {"kind": "variant_scores", "version": __version__, "checkpoint": im.checkpoint, "vcf": str(vcf),
            "reference": str(reference), "window": window, "indel_window": indel_window, "rc_average": rc_average,
            "command": command or "hnet_seq.inference.score_variants (Python API)",
            "convention": "W-base windows centred on the allele, shifted inside the contig at its ends "
                          "(window_offset, contig_edge); alt window: " + (
                              "W bases of the alt haplotype ref[:p]+ALT+ref[p+m:]" if indel_window == "equal-length"
                              else "ref[S:p]+ALT+ref[p+m:E], the ref window's span")
                          + "; score = LL(alt) - LL(ref) in nats"}


def _gather(summary: VariantSummary) -> None:
    """Sum the ranks' counts into every rank's summary."""
    codes = sorted(REASONS)
    counts = all_sum([summary.alleles, summary.scored, summary.windows, summary.not_in_vcf]
                     + [summary.skipped.get(c, 0) for c in codes])
    summary.alleles, summary.scored, summary.windows, summary.not_in_vcf = (int(v) for v in counts[:4])
    summary.skipped = {c: int(v) for c, v in zip(codes, counts[4:]) if v}


def _merge_outputs(vcf, out, fmt, vcf_out, meta, parts: list[Path], summary: VariantSummary) -> None:
    """Rank 0: merge the ranks' tables in input order, then annotate the VCF from them."""
    import pyarrow.parquet as pq

    with Outputs() as outs:
        if out is not None:
            merge_parts(parts, outs.add(TableWriter(out, TABLE_SCHEMA, meta, fmt)))
        if vcf_out is not None:
            vf = open_vcf(vcf)
            annot = outs.add(VcfAnnotator(vf, vcf_out, provenance(meta)))
            rows = {}
            for p in parts:
                t = pq.read_table(str(p), columns=[RECORD, "score", "site_llr", "flags", "status", "alt"])
                for r in t.to_pylist():
                    rows.setdefault(r[RECORD], []).append(r)
            for index, rec in enumerate(vf):
                alleles = []
                for j, r in enumerate(rows.get(index, [])):
                    a = Allele(index, j, rec.chrom, rec.pos, rec.id or ".", rec.ref or "", r["alt"],
                               status=r["status"], flags=[f for f in (r["flags"] or "").split(",") if f])
                    a.scores = {"score": r["score"], "site_llr": r["site_llr"]}
                    alleles.append(a)
                annot.write(rec, alleles)
    if vcf_out is not None:
        summary.index, summary.index_note = annot.index, annot.index_note
