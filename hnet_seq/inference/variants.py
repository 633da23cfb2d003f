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
scored once; windows of many variants are packed into each forward pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from hnet_seq.errors import UserError
from hnet_seq.progress import progress_bar
from hnet_seq.runtime.distributed import all_sum, init_distributed

from .model import InferenceModel, default_batch_tokens, load
from .outputs import AtomicFile, Outputs, check_output_path, checked_table, write_fasta
from .parts import RECORD, all_ranks_succeed, merge_on_main, merge_parts, part_path, rank_parts, with_record_column
from .records import vcf_record_count
from .runner import Runner
from .tables import TableWriter
from .tiling import WorkItem, batches_by_budget
from .variant_windows import INDEL_WINDOWS, REASONS, Allele, Reference, finish, prepare
from .vcf_out import VcfAnnotator, open_vcf

__all__ = ["Allele", "REASONS", "TABLE_SCHEMA", "VariantSummary", "score_variants"]

_F = pa.float64()
SCORE_COLUMNS = ("score", "score_per_base", "site_llr", "ref_ll", "alt_ll", "ref_ll_fwd", "alt_ll_fwd",
                 "score_fwd", "ref_ll_rev", "alt_ll_rev", "score_rev")
TABLE_SCHEMA = pa.schema(
    [pa.field("chrom", pa.string()), pa.field("pos", pa.int64()), pa.field("id", pa.string()),
     pa.field("ref", pa.string()), pa.field("alt", pa.string())]
    + [pa.field(c, _F) for c in SCORE_COLUMNS]
    + [pa.field("window_start", pa.int64()), pa.field("window_end", pa.int64()),
       pa.field("window_offset", pa.int64()), pa.field("contig_edge", pa.bool_()),
       pa.field("status", pa.string()), pa.field("flags", pa.string()), pa.field("reason", pa.string())])


def table_row(a: Allele) -> dict:
    """One TABLE_SCHEMA row (window columns only for scored alleles)."""
    scored = a.status == "scored"
    return {"chrom": a.chrom, "pos": a.pos, "id": a.id, "ref": a.ref, "alt": a.alt,
            **{c: a.scores.get(c) for c in SCORE_COLUMNS},
            "window_start": a.start if scored else None, "window_end": a.end if scored else None,
            "window_offset": a.offset if scored else None,
            "contig_edge": ("contig_edge" in a.flags) if scored else None,
            "status": a.status, "flags": ",".join(a.flags), "reason": a.reason}


@dataclass
class VariantSummary:
    records: int = 0
    alleles: int = 0
    scored: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    windows: int = 0  # unique windows run through the model
    seconds: float = 0.0
    out: Path | None = None
    vcf_out: Path | None = None
    index: Path | None = None  # the annotated VCF's .tbi/.csi
    index_note: str = ""  # why no index was written
    not_in_vcf: int = 0  # alleles of records the annotated VCF could not hold (flag vcf_unwritable)
    alleles_list: list[Allele] = field(default_factory=list)

    @property
    def variants_per_second(self) -> float:
        return self.scored / max(self.seconds, 1e-9)

    def describe(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (f"{self.records} records, {self.alleles} ALT alleles: {self.scored} scored, skipped: {skipped}; "
                f"{self.windows} distinct windows; {self.seconds:.1f} s, "
                f"{self.variants_per_second:,.1f} variants/s"
                + (f"; {self.not_in_vcf} alleles' records not in --vcf-out (vcf_unwritable)" if self.not_in_vcf else "")
                + (f"; --vcf-out: {self.index_note}" if self.index_note else ""))


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
    if im.adapter.name != "dna":
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
    scorer = _BlockScorer(im, ref, window, indel_window, rc_average, strict,
                          max(batch_tokens or default_batch_tokens(im.device), window + 64), str(vcf), share_prefix)
    summary = VariantSummary(out=out, vcf_out=vcf_out)
    t0 = time.perf_counter()
    with Outputs() as outs, all_ranks_succeed("variant scoring"):
        sink = _BlockSink(outs, summary, scorer, vf, meta, fmt, windows_fasta, dist, on_skip, keep_alleles)
        _stream(vf, vcf, dist, records_per_block, progress, summary, sink.run_block)
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


class _BlockSink:
    """Scores a block of records and sends its alleles to the outputs: the table (under torchrun,
    this rank's part, keyed by record index), the annotated VCF and the windows FASTA (one process
    only: under torchrun rank 0 annotates the VCF from the merged parts)."""

    def __init__(self, outs: Outputs, summary: VariantSummary, scorer: "_BlockScorer", vf, meta: dict, fmt,
                 windows_fasta, dist, on_skip, keep_alleles: bool):
        out, vcf_out = summary.out, summary.vcf_out
        self.summary, self.scorer, self.on_skip, self.keep_alleles = summary, scorer, on_skip, keep_alleles
        self.multi = multi = dist.world > 1
        self.table = None
        if multi:
            self.table = outs.add(TableWriter(part_path(out or Path(vcf_out or "variants") , dist.rank),
                                              with_record_column(TABLE_SCHEMA), meta, "parquet", sidecar=False))
        elif out is not None:
            self.table = outs.add(TableWriter(out, TABLE_SCHEMA, meta, fmt))
        self.annot = outs.add(VcfAnnotator(vf, vcf_out, _provenance(meta))) if vcf_out is not None and not multi \
            else None
        fasta_file = outs.add(AtomicFile(windows_fasta)) if windows_fasta is not None and not multi else None
        self.fasta_handle = open(fasta_file.tmp, "w") if fasta_file is not None else None

    def run_block(self, block: list) -> None:
        alleles = self.scorer.score(block)
        if self.annot is not None:
            by_record: dict[int, list] = {}
            for a in alleles:
                by_record.setdefault(a.record, []).append(a)
            for index, rec in block:
                self.annot.write(rec, by_record.get(index, []))
        for a in alleles:
            _account(self.summary, a, self.on_skip)
            if self.fasta_handle is not None and a.status == "scored":
                self.scorer.write_windows(self.fasta_handle, a)
            if self.table is not None:
                self.table.write_row(**table_row(a), **({RECORD: a.record} if self.multi else {}))
            if self.keep_alleles:
                self.summary.alleles_list.append(a)


def _provenance(meta: dict) -> dict:
    """The ``##hnet-seq`` header line's fields."""
    return {"Version": meta["version"], "Command": meta["command"], "Checkpoint": meta["checkpoint"],
            "Window": meta["window"], "IndelWindow": meta["indel_window"],
            "RcAverage": "yes" if meta["rc_average"] else "no"}


def _account(summary: VariantSummary, a: Allele, on_skip) -> None:
    summary.alleles += 1
    if a.status == "scored":
        summary.scored += 1
    else:
        summary.skipped[a.flags[0]] = summary.skipped.get(a.flags[0], 0) + 1
        if on_skip is not None:
            on_skip(a)
    if "vcf_unwritable" in a.flags:
        summary.not_in_vcf += 1


def _stream(vf, vcf, dist, records_per_block: int, progress: bool, summary: VariantSummary, run_block) -> None:
    """Feed this rank's records to ``run_block`` in blocks; pysam parse errors name the record."""
    block: list = []
    total = vcf_record_count(vcf) if progress and dist.is_main else None
    share = total // dist.world if total else None  # rank 0 shows its share of the records
    with progress_bar(progress and dist.is_main, "score-variants", share, unit="records") as bar:
        try:
            for index, rec in enumerate(vf):
                summary.records += 1
                if index % dist.world != dist.rank:
                    continue
                block.append((index, rec))
                if len(block) >= records_per_block:
                    run_block(block)
                    bar.advance(len(block))
                    block = []
        except (OSError, ValueError, NotImplementedError) as e:
            raise UserError(f"vcf={vcf}: cannot parse record {summary.records + 1} "
                            f"({str(e).strip() or type(e).__name__})", params=("vcf",)) from None
        if block:
            run_block(block)
            bar.advance(len(block))


class _BlockScorer:
    """Prepares a block of records' alleles, scores their distinct windows in packed batches,
    and keeps the reference windows of the last block (neighbouring records share them)."""

    def __init__(self, im: InferenceModel, ref: Reference, window: int, indel_window: str, rc: bool, strict: bool,
                 budget: int, vcf: str, share_prefix: bool = True):
        self.im, self.runner, self.ref, self.window, self.indel_window = im, Runner(im, scores=True), ref, window, \
            indel_window
        self.rc, self.strict, self.budget, self.vcf, self.share_prefix = rc, strict, budget, vcf, share_prefix
        self.cache: dict = {}
        self.windows = 0  # distinct windows run through the model
        self._last: dict = {}

    def score(self, block: list) -> list[Allele]:
        windows: dict[Any, list] = dict(self.cache)
        alleles = []
        for index, rec in block:
            where = f"{self.vcf}: record {index + 1} ({rec.chrom}:{rec.pos})"
            for a in _alleles_of(index, rec):
                prepare(a, self.ref, self.window, self.indel_window, self.strict, where, windows, self.rc)
                alleles.append(a)
        todo = [k for k, v in windows.items() if v[1] is None]
        if self.share_prefix:  # one reference pass per window, only the ALT suffixes after it
            from .variant_prefix import fill_windows

            fill_windows(self.im, windows, [a.keys for a in alleles if a.status == "scored"], self.budget)
        else:
            items = [WorkItem(x, 0, x.long(), k) for k in todo for x in [torch.from_numpy(windows[k][0])]]
            for _, results in self.runner.stream(batches_by_budget(items, self.budget)):
                for res in results:
                    windows[res.tag][1] = -res.nll
        self.windows += len(todo)
        for a in alleles:
            if a.status == "scored":
                finish(a, windows, self.rc)
        self.cache = {k: windows[k] for a in alleles for k in a.keys[::2]}
        self._last = windows
        return alleles

    def write_windows(self, handle, a: Allele) -> None:
        from hnet_seq.modalities.dna import decode_tokens

        desc = f"{a.chrom}:{a.pos} {a.ref}>{a.alt} span={a.contig}:{a.start}-{a.end} offset={a.offset}"
        for side, key in (("ref", a.keys[0]), ("alt", a.keys[1])):
            write_fasta(handle, f"v{a.record}_{a.index}_{side} {desc}", decode_tokens(self._last[key][0]))


def _alleles_of(index: int, rec) -> list[Allele]:
    ids = rec.id or "."
    alts = rec.alts or (".",)
    return [Allele(index, j, rec.chrom, int(rec.pos), ids, rec.ref or "", alt) for j, alt in enumerate(alts)]


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
            annot = outs.add(VcfAnnotator(vf, vcf_out, _provenance(meta)))
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
