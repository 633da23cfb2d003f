"""A VCF scored block by block: records streamed to this rank, their alleles prepared, the distinct
windows scored in packed batches (:class:`BlockScorer`), and the alleles sent to the outputs
(:class:`BlockSink`: table, annotated VCF, windows FASTA).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hnet_seq.errors import UserError
from hnet_seq.progress import progress_bar

from .model import InferenceModel
from .outputs import AtomicFile, Outputs, write_fasta
from .parts import RECORD, part_path, with_record_column
from .records import vcf_record_count
from .runner import Runner
from .tables import TableWriter
from .tiling import WorkItem, batches_by_budget
from .variant_table import TABLE_SCHEMA, VariantSummary, table_row
from .variant_windows import Allele, Reference, finish, prepare
from .vcf_out import VcfAnnotator


class BlockSink:
    """Scores a block of records and sends its alleles to the outputs: the table (under torchrun,
    this rank's part, keyed by record index), the annotated VCF and the windows FASTA (one process
    only: under torchrun rank 0 annotates the VCF from the merged parts)."""

    def __init__(self, outs: Outputs, summary: VariantSummary, scorer: BlockScorer, vf, meta: dict, fmt,
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
        self.annot = outs.add(VcfAnnotator(vf, vcf_out, provenance(meta))) if vcf_out is not None and not multi \
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


def provenance(meta: dict) -> dict:
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


def stream_blocks(vf, vcf, dist, records_per_block: int, progress: bool, summary: VariantSummary, run_block) -> None:
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


class BlockScorer:
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
            for a in alleles_of(index, rec):
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


def alleles_of(index: int, rec) -> list[Allele]:
    ids = rec.id or "."
    alts = rec.alts or (".",)
    return [Allele(index, j, rec.chrom, int(rec.pos), ids, rec.ref or "", alt) for j, alt in enumerate(alts)]
