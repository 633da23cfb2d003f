"""Variant effect scores: log-likelihood of the alternate window minus that of the reference.

For each ALT allele of each VCF/BCF record (multi-allelic records are split, one row per ALT):

* Windows.  With ``p`` the 0-based position of the first REF base (VCF ``POS - 1``), ``m`` the
  REF length and ``W`` the window, the genomic span is ``[S, E)`` with
  ``S = p + m // 2 - W // 2`` and ``E = S + W``: the REF allele sits in the middle of a span
  of ``W`` reference bases.  The reference window is ``ref[S:E]``.  The alternate window
  covers the **same genomic span** with the allele replaced:
  ``ref[S:p] + ALT + ref[p+m:E]`` (length ``W - m + len(ALT)``), so an insertion makes the
  alternate window longer and a deletion shorter; nothing outside ``[S, E)`` is read.
* Score.  ``score = LL(alt window) - LL(ref window)`` in nats, where ``LL`` is exactly what
  ``hnet-seq score`` reports for that window as a FASTA record (sum of ``log p(x_i | x_<i)``
  over positions ``i >= 1``).  ``site_llr`` is the same difference restricted to the allele
  itself: ``sum log p`` over the ALT bases ``[p-S, p-S+len(ALT))`` of the alternate window
  minus that over the REF bases ``[p-S, p-S+m)`` of the reference window (a VCF anchor base
  shared by REF and ALT contributes the same to both sides).
* ``rc_average``: both windows are also scored on the reverse strand (reverse complements,
  allele positions mirrored); ``score`` and ``site_llr`` are then the mean of the two strands
  and ``score_fwd``/``score_rev`` hold each strand's value.
* Checks, each reported per allele in the ``status``/``flags``/``reason`` columns (and the
  ``HNET_FLAGS`` INFO field):
  REF must equal the reference bases (case-insensitive) -- otherwise ``ref_mismatch``, skipped,
  or a fatal error with ``strict``; a contig missing from the reference (after ``chr``
  aliasing: ``chr1`` <-> ``1``, ``chrM`` <-> ``MT``) is ``missing_contig``, skipped (never
  fatal); symbolic (``<DEL>``), breakend (``A[chr2:5[``) and ``*`` ALTs are skipped with
  their reason; windows reaching past a contig end are padded with ``N`` to keep the allele
  centred and flagged ``contig_edge`` (scored).
* Output: a table (TSV or parquet), one row per ALT in input order; optionally the input
  VCF/BCF with ``HNET_SCORE``, ``HNET_SITE_LLR`` and ``HNET_FLAGS`` INFO fields added
  (``Number=A``), every input record kept, in order.

Reference windows shared by several alleles (multi-allelic records, repeated positions) are
scored once; windows of many variants are packed into each forward pass.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from hnet_seq.errors import UserError

from .batching import (InferenceModel, Runner, WorkItem, all_sum, barrier, batches_by_budget, broadcast_ok,
                       default_batch_tokens, init_distributed, load)
from .io import (AtomicFile, Outputs, TableWriter, check_output_path, output_format, progress_bar,
                 vcf_record_count, write_fasta)
from .parts import RECORD, merge_parts, part_path, with_record_column

N_TOKEN = 4
_VALID = re.compile(r"^[ACGTNRYSWKMBDHVU]+$", re.IGNORECASE)

REASONS = {
    "ref_mismatch": "REF does not match the reference",
    "missing_contig": "contig not in the reference",
    "symbolic_alt": "symbolic ALT is not scored",
    "breakend_alt": "breakend ALT is not scored",
    "spanning_deletion": "spanning-deletion ALT '*' is not scored",
    "no_alt": "record has no ALT allele",
    "invalid_allele": "allele has characters other than nucleotide codes",
    "ref_too_long": "REF longer than half the window",
    "contig_edge": "window reaches past a contig end; padded with N",
}

TABLE_SCHEMA = pa.schema([
    pa.field("chrom", pa.string()), pa.field("pos", pa.int64()), pa.field("id", pa.string()),
    pa.field("ref", pa.string()), pa.field("alt", pa.string()), pa.field("score", pa.float64()),
    pa.field("site_llr", pa.float64()), pa.field("ref_ll", pa.float64()), pa.field("alt_ll", pa.float64()),
    pa.field("score_fwd", pa.float64()), pa.field("score_rev", pa.float64()),
    pa.field("window_start", pa.int64()), pa.field("window_end", pa.int64()),
    pa.field("status", pa.string()), pa.field("flags", pa.string()), pa.field("reason", pa.string())])


@dataclass
class Allele:
    """One ALT allele of one record, and (once scored) its results."""

    record: int
    index: int  # ALT index within the record
    chrom: str
    pos: int  # VCF POS (1-based)
    id: str
    ref: str
    alt: str
    contig: str | None = None  # reference contig name after aliasing
    status: str = "scored"
    flags: list[str] = field(default_factory=list)
    reason: str = ""
    start: int = 0  # window span [start, end), 0-based genomic
    end: int = 0
    keys: tuple = ()  # window keys: (ref, alt) or (ref, alt, ref-, alt-)
    score: float | None = None
    site_llr: float | None = None
    ref_ll: float | None = None
    alt_ll: float | None = None
    score_fwd: float | None = None
    score_rev: float | None = None

    def skip(self, code: str, reason: str) -> None:
        self.status, self.reason = "skipped", reason
        self.flags.append(code)

    def row(self) -> dict:
        return {"chrom": self.chrom, "pos": self.pos, "id": self.id, "ref": self.ref, "alt": self.alt,
                "score": self.score, "site_llr": self.site_llr, "ref_ll": self.ref_ll, "alt_ll": self.alt_ll,
                "score_fwd": self.score_fwd, "score_rev": self.score_rev,
                "window_start": self.start if self.status == "scored" else None,
                "window_end": self.end if self.status == "scored" else None,
                "status": self.status, "flags": ",".join(self.flags), "reason": self.reason}


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
    alleles_list: list[Allele] = field(default_factory=list)

    @property
    def variants_per_second(self) -> float:
        return self.scored / max(self.seconds, 1e-9)

    def describe(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (f"{self.records} records, {self.alleles} ALT alleles: {self.scored} scored, skipped: {skipped}; "
                f"{self.windows} distinct windows; {self.seconds:.1f} s, "
                f"{self.variants_per_second:,.1f} variants/s")


def _classify_alt(alt: str) -> tuple[str, str] | None:
    if alt == "*":
        return "spanning_deletion", "spanning-deletion ALT '*' is not scored"
    if alt.startswith("<") and alt.endswith(">"):
        return "symbolic_alt", f"symbolic ALT {alt} is not scored"
    if "[" in alt or "]" in alt or (len(alt) > 1 and (alt.startswith(".") or alt.endswith("."))):
        return "breakend_alt", f"breakend ALT {alt} is not scored"
    if not _VALID.match(alt):
        return "invalid_allele", f"ALT '{alt}' has characters other than nucleotide codes"
    return None


def _tokens(seq: str) -> np.ndarray:
    from hnet_seq.modalities.dna import encode_ascii

    return encode_ascii(seq)[0]


class _Reference:
    """Random access to the reference FASTA, alias-aware, with N padding beyond contig ends."""

    def __init__(self, path: str | Path):
        from hnet_seq.modalities import fasta

        self.path = str(path)
        self.fa = fasta.open_indexed(path)
        self.lengths = dict(zip(self.fa.references, self.fa.lengths))
        self._cache: dict[str, str | None] = {}

    def resolve(self, chrom: str) -> str | None:
        if chrom not in self._cache:
            from hnet_seq.data.regions import resolve_contig

            self._cache[chrom] = resolve_contig(chrom, self.lengths)
        return self._cache[chrom]

    def window(self, contig: str, start: int, end: int) -> tuple[np.ndarray, bool]:
        """Tokens of ``[start, end)``; positions outside the contig are N (second value: clipped)."""
        n = self.lengths[contig]
        a, b = max(start, 0), min(end, n)
        seq = self.fa.fetch(contig, a, b) if b > a else ""
        toks = _tokens(seq) if seq else np.zeros(0, np.uint8)
        left, right = a - start, end - b
        if left or right:
            toks = np.concatenate([np.full(left, N_TOKEN, np.uint8), toks, np.full(max(right, 0), N_TOKEN, np.uint8)])
        return toks, bool(left or right)


def _prepare(allele: Allele, ref: _Reference, window: int, strict: bool, where: str,
             windows: dict, rc: bool) -> None:
    """Check one allele and register its windows (deduplicated by key) in ``windows``."""
    if allele.alt in ("", "."):
        allele.skip("no_alt", "record has no ALT allele")
        return
    contig = ref.resolve(allele.chrom)
    if contig is None:
        allele.skip("missing_contig", f"contig '{allele.chrom}' is not in the reference {ref.path}")
        return
    allele.contig = contig
    bad = _classify_alt(allele.alt)
    if bad:
        allele.skip(*bad)
        return
    if not _VALID.match(allele.ref):
        allele.skip("invalid_allele", f"REF '{allele.ref}' has characters other than nucleotide codes")
        return
    p, m = allele.pos - 1, len(allele.ref)
    clen = ref.lengths[contig]
    if p < 0 or p + m > clen:
        allele.skip("ref_mismatch", f"REF at {allele.chrom}:{allele.pos} lies outside contig '{contig}' "
                                    f"(length {clen})")
        if strict:
            raise UserError(f"{where}: {allele.reason} (--strict)")
        return
    actual = ref.fa.fetch(contig, p, p + m).upper()
    if actual != allele.ref.upper():
        allele.skip("ref_mismatch", f"REF '{allele.ref}' does not match the reference '{actual}' at "
                                    f"{contig}:{allele.pos}")
        if strict:
            raise UserError(f"{where}: {allele.reason} (--strict makes this fatal; without it the record is skipped)")
        return
    if m > window // 2:
        allele.skip("ref_too_long", f"REF of {m} bp is longer than half the window ({window}); raise --window")
        return
    S = p + m // 2 - window // 2
    E = S + window
    allele.start, allele.end = S, E
    rkey = ("ref", contig, S, E)
    akey = ("alt", contig, S, E, p, m, allele.alt.upper())
    if rkey not in windows:
        toks, clipped = ref.window(contig, S, E)
        windows[rkey] = [toks, clipped, None]
    ref_toks, clipped = windows[rkey][0], windows[rkey][1]
    if clipped:
        allele.flags.append("contig_edge")
    if akey not in windows:
        o = p - S
        windows[akey] = [np.concatenate([ref_toks[:o], _tokens(allele.alt), ref_toks[o + m:]]), clipped, None]
    allele.keys = (rkey, akey) + ((rkey + ("-",), akey + ("-",)) if rc else ())
    if rc:
        from hnet_seq.modalities.dna import reverse_complement

        for k in (rkey, akey):
            if k + ("-",) not in windows:
                windows[k + ("-",)] = [reverse_complement(windows[k][0]), clipped, None]


def _finish(allele: Allele, windows: dict, rc: bool) -> None:
    """Score of a prepared allele from its windows' per-position log-probs."""
    o = allele.pos - 1 - allele.start
    m, n = len(allele.ref), len(allele.alt)

    def strand(rkey, akey, mirrored: bool):
        lp_r, lp_a = windows[rkey][2], windows[akey][2]
        ll_r, ll_a = float(np.nansum(lp_r, dtype=np.float64)), float(np.nansum(lp_a, dtype=np.float64))
        if mirrored:
            r_sites = len(lp_r) - 1 - np.arange(o, o + m)
            a_sites = len(lp_a) - 1 - np.arange(o, o + n)
        else:
            r_sites, a_sites = np.arange(o, o + m), np.arange(o, o + n)
        site = float(np.nansum(lp_a[a_sites], dtype=np.float64) - np.nansum(lp_r[r_sites], dtype=np.float64))
        return ll_r, ll_a, ll_a - ll_r, site

    ll_r, ll_a, s_f, site_f = strand(allele.keys[0], allele.keys[1], False)
    allele.ref_ll, allele.alt_ll, allele.score_fwd = ll_r, ll_a, s_f
    if rc:
        _, _, s_r, site_r = strand(allele.keys[2], allele.keys[3], True)
        allele.score_rev = s_r
        allele.score, allele.site_llr = (s_f + s_r) / 2, (site_f + site_r) / 2
    else:
        allele.score, allele.site_llr = s_f, site_f


def _alleles_of(index: int, rec) -> list[Allele]:
    ids = rec.id or "."
    alts = rec.alts or (".",)
    return [Allele(index, j, rec.chrom, int(rec.pos), ids, rec.ref or "", alt) for j, alt in enumerate(alts)]


def _open_vcf(path: str | Path):
    import pysam

    path = Path(path)
    if not path.exists():
        raise UserError(f"--vcf {path}: no such file")
    quiet = pysam.set_verbosity(0)  # htslib's own "could not retrieve index" noise
    try:
        return pysam.VariantFile(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"--vcf {path}: cannot read VCF/BCF ({str(e).strip() or type(e).__name__})") from None
    finally:
        pysam.set_verbosity(quiet)


class _VcfAnnotator:
    """Writes the input records, in order, with HNET_* INFO fields, to a temporary file."""

    def __init__(self, vcf, path: Path):
        import pysam

        self.path = Path(path)
        name = self.path.name.lower()
        mode = "wb" if name.endswith(".bcf") else "wz" if name.endswith(".gz") else "w"
        header = vcf.header.copy()
        if "END" not in header.info:  # htslib writes END for symbolic alleles
            header.info.add("END", 1, "Integer", "End position of the variant described in this record")
        for key, number, typ, desc in (
                ("HNET_SCORE", "A", "Float", "hnet-seq: log-likelihood(alt window) - log-likelihood(ref window), nats"),
                ("HNET_SITE_LLR", "A", "Float", "hnet-seq: log-likelihood ratio over the allele bases, nats"),
                ("HNET_FLAGS", "A", "String", "hnet-seq: ok, contig_edge, or why the allele was skipped")):
            if key in header.info:
                raise UserError(f"--vcf: the input already has INFO/{key}; remove it before annotating")
            header.info.add(key, number, typ, desc)
        self.file = AtomicFile(self.path)
        self.out = pysam.VariantFile(str(self.file.tmp), mode, header=header)
        self.records = 0

    def write(self, rec, alleles: list[Allele]) -> None:
        rec.translate(self.out.header)
        if rec.alts:
            by_index = {a.index: a for a in alleles}
            n = len(rec.alts)
            rec.info["HNET_SCORE"] = tuple(_rounded(by_index[j].score) if j in by_index else None for j in range(n))
            rec.info["HNET_SITE_LLR"] = tuple(_rounded(by_index[j].site_llr) if j in by_index else None
                                              for j in range(n))
            rec.info["HNET_FLAGS"] = tuple(_flag(by_index.get(j)) for j in range(n))
        self.out.write(rec)
        self.records += 1

    def close(self) -> Path:
        self.out.close()
        return self.file.close()

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:
            pass
        self.file.abort()


def _rounded(v):
    return None if v is None else float(round(v, 5))


def _flag(a: Allele | None) -> str:
    if a is None:
        return "."
    return "|".join(a.flags) if a.flags else "ok"


def score_variants(checkpoint: str | Path | InferenceModel, vcf: str | Path, reference: str | Path,
                   out: str | Path | None = None, *, vcf_out: str | Path | None = None,
                   config: str | Path | None = None, window: int = 8192, rc_average: bool = False,
                   strict: bool = False, batch_tokens: int | None = None, device: str | None = None,
                   precision: str = "auto", windows_fasta: str | Path | None = None, progress: bool = True,
                   records_per_block: int = 512, keep_alleles: bool = False, on_skip=None,
                   share_prefix: bool = True) -> VariantSummary:
    """Score every ALT allele of ``vcf`` against ``reference`` (see the module docstring).

    ``out``: TSV or parquet table; ``vcf_out``: annotated ``.vcf``/``.vcf.gz``/``.bcf``;
    ``windows_fasta``: the reference and alternate window of every scored allele as FASTA
    (records ``v<record>_<alt>_ref`` / ``_alt``), to check or rescore them.  ``on_skip(allele)``
    is called for every skipped allele (the CLI prints them).  Under torchrun each rank scores
    a strided share of the records and rank 0 writes the outputs in input order.
    ``share_prefix``: run each reference window once and only the ALT suffixes after it
    (:mod:`.variant_prefix`; same scores within float tolerance); False: full pass per window.
    """
    if window < 4:
        raise UserError(f"--window {window}: too small")
    fmt = None
    if out is not None:
        out = check_output_path(out)
        fmt = output_format(out, ("tsv", "parquet"))
    if vcf_out is not None:
        vcf_out = check_output_path(vcf_out, "--vcf-out")
        output_format(vcf_out, ("vcf",), "--vcf-out")
    if windows_fasta is not None:
        windows_fasta = check_output_path(windows_fasta, "--windows-fasta")
    im = load(checkpoint, config, device=device, precision=precision)
    if im.adapter.name != "dna":
        raise UserError(f"score-variants needs a DNA model; this checkpoint reads {im.adapter.name}")
    dist = init_distributed(im.device)
    multi = dist.world > 1
    if multi and out is None and vcf_out is None:
        raise UserError("under torchrun, give --out and/or --vcf-out (rank 0 merges the ranks' results into them)")
    if multi and windows_fasta is not None:
        raise UserError("--windows-fasta is not supported under torchrun; run it in one process")
    ref = _Reference(reference)
    vf = _open_vcf(vcf)
    runner = Runner(im, scores=True)
    budget = max(batch_tokens or default_batch_tokens(im.device), window + 64)
    summary = VariantSummary(out=out, vcf_out=vcf_out)
    meta = {"kind": "variant_scores", "checkpoint": im.checkpoint, "vcf": str(vcf), "reference": str(reference),
            "window": window, "rc_average": rc_average,
            "convention": "span [S, S+W) with S = p + len(REF)//2 - W//2 (p = POS-1); ref window = ref[S:S+W]; "
                          "alt window = ref[S:p] + ALT + ref[p+len(REF):S+W] (same genomic span); "
                          "score = LL(alt) - LL(ref) in nats; positions outside the contig are N"}
    cache: dict = {}  # reference windows of the previous block
    t0 = time.perf_counter()
    ok = False
    with Outputs() as outs:
        try:
            table = None
            if multi:
                table = outs.add(TableWriter(part_path(out or Path(vcf_out or "variants") , dist.rank),
                                             with_record_column(TABLE_SCHEMA), meta, "parquet", sidecar=False))
            elif out is not None:
                table = outs.add(TableWriter(out, TABLE_SCHEMA, meta, fmt))
            annot = outs.add(_VcfAnnotator(vf, vcf_out)) if vcf_out is not None and not multi else None
            fasta_file = outs.add(AtomicFile(windows_fasta)) if windows_fasta is not None and not multi else None
            fasta_handle = open(fasta_file.tmp, "w") if fasta_file is not None else None

            def run_block(block: list) -> None:
                windows: dict[Any, list] = {}
                for k, v in cache.items():
                    windows[k] = v
                alleles = []
                for index, rec in block:
                    where = f"{vcf}: record {index + 1} ({rec.chrom}:{rec.pos})"
                    for a in _alleles_of(index, rec):
                        _prepare(a, ref, window, strict, where, windows, rc_average)
                        alleles.append(a)
                todo = [k for k, v in windows.items() if v[2] is None]
                if share_prefix:
                    from .variant_prefix import fill_windows

                    fill_windows(im, windows, [a.keys for a in alleles if a.status == "scored"], budget)
                else:
                    items = []
                    for k in todo:
                        x = torch.from_numpy(windows[k][0])
                        items.append(WorkItem(x, 0, x.long(), k))
                    for _, results in runner.stream(batches_by_budget(items, budget)):
                        for res in results:
                            windows[res.tag][2] = -res.nll
                summary.windows += len(todo)
                for a in alleles:
                    if a.status == "scored":
                        _finish(a, windows, rc_average)
                        summary.scored += 1
                        if fasta_handle is not None:
                            desc = f"{a.chrom}:{a.pos} {a.ref}>{a.alt} span={a.contig}:{a.start}-{a.end}"
                            from hnet_seq.modalities.dna import decode_tokens

                            write_fasta(fasta_handle, f"v{a.record}_{a.index}_ref {desc}",
                                        decode_tokens(windows[a.keys[0]][0]))
                            write_fasta(fasta_handle, f"v{a.record}_{a.index}_alt {desc}",
                                        decode_tokens(windows[a.keys[1]][0]))
                    else:
                        code = a.flags[0]
                        summary.skipped[code] = summary.skipped.get(code, 0) + 1
                        if on_skip is not None:
                            on_skip(a)
                    summary.alleles += 1
                    if table is not None:
                        row = a.row()
                        if multi:
                            row[RECORD] = a.record
                        table.write_row(**row)
                    if keep_alleles:
                        summary.alleles_list.append(a)
                if annot is not None:
                    by_record: dict[int, list] = {}
                    for a in alleles:
                        by_record.setdefault(a.record, []).append(a)
                    for index, rec in block:
                        annot.write(rec, by_record.get(index, []))
                cache.clear()
                for a in alleles:  # reference windows of this block may serve the next one
                    for k in a.keys[::2]:
                        cache[k] = windows[k]

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
                except (OSError, ValueError) as e:
                    raise UserError(f"--vcf {vcf}: cannot parse record {summary.records + 1} "
                                    f"({str(e).strip() or type(e).__name__})") from None
                if block:
                    run_block(block)
                    bar.advance(len(block))
            if fasta_handle is not None:
                fasta_handle.close()
            ok = True
        finally:
            ok = broadcast_ok(ok)
        if not ok:
            raise UserError("variant scoring failed on another rank; no output written")
    if multi:
        codes = sorted(REASONS)
        counts = all_sum([summary.alleles, summary.scored, summary.windows]
                         + [summary.skipped.get(c, 0) for c in codes])
        summary.alleles, summary.scored, summary.windows = (int(v) for v in counts[:3])
        summary.skipped = {c: int(v) for c, v in zip(codes, counts[3:]) if v}
        barrier()
        if dist.is_main:
            _merge_outputs(vcf, out, fmt, vcf_out, meta, dist.world)
        barrier()
    summary.seconds = time.perf_counter() - t0
    return summary


def _merge_outputs(vcf, out, fmt, vcf_out, meta, world: int) -> None:
    """Rank 0: merge the ranks' tables in input order, then annotate the VCF from them."""
    parts = [part_path(out or Path(vcf_out or "variants"), r) for r in range(world)]
    import pyarrow.parquet as pq

    with Outputs() as outs:
        if out is not None:
            merge_parts(parts, outs.add(TableWriter(out, TABLE_SCHEMA, meta, fmt)))
        if vcf_out is not None:
            vf = _open_vcf(vcf)
            annot = outs.add(_VcfAnnotator(vf, vcf_out))
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
                    a.score, a.site_llr = r["score"], r["site_llr"]
                    alleles.append(a)
                annot.write(rec, alleles)
    for p in parts:
        p.unlink(missing_ok=True)
