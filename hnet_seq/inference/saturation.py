"""Saturation mutagenesis: every SNV at every position of a region (what SGE assays measure).

``saturation_mutagenesis(model, reference, "chr17:43044294-43045294")`` scores the three ALTs
of each reference base of the region (``CONTIG:START-END``, 1-based inclusive as every
``region`` elsewhere).  Rows have the columns of :func:`.score_variants` (``pos`` 1-based, as
in a VCF), in genomic order, ALTs in ``ACGT`` order.

Windows.  The region is cut into scoring regions of at most ``window // 2`` bases; each gets one
window of ``window`` bases centred on it, which every SNV inside it shares: one reference pass
per window (per strand with ``rc_average``), and with ``share_prefix`` (the default) only each
ALT's suffix after the variant (:mod:`.variant_prefix`).  Every variant thus has at least
``window // 4`` bases of context on either side, but it is not centred as ``score-variants``
centres a VCF record: its score is that of the same span scored as a full window (which the
tests check), not that of a ``vcf`` run at the same position.  Reference bases ``N`` are
reported as skipped (``reference_not_acgt``, one row); a window that would cross a contig end is
shifted inside the contig and flagged ``contig_edge`` with its ``window_offset``, as in
``score-variants``.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from hnet_seq.data.regions import parse_region
from hnet_seq.errors import UserError

from .model import InferenceModel, default_batch_tokens, load
from .outputs import Outputs, checked_table
from .runner import Runner
from .tables import TableWriter
from .tiling import WorkItem, batches_by_budget
from .variant_prefix import fill_windows
from .variant_windows import Allele, Reference, finish, place, tokens
from .variant_table import TABLE_SCHEMA, VariantSummary, table_row

BASES = "ACGT"
PIECES_PER_PASS = 8  # scoring regions whose windows are scored together


def scoring_regions(start: int, end: int, window: int, length: int) -> list[tuple[int, int, int, int, int]]:
    """``[(a, b, S, E, offset), ...]``: pieces ``[a, b)`` of ``[start, end)`` of at most ``window // 2``
    bases and the window ``[S, E)`` centred on each, shifted inside a contig of ``length``."""
    step = max(window // 2, 1)
    pieces = [(a, min(a + step, end)) for a in range(start, end, step)]
    return [(a, b, *place(length, (a + b) // 2, window)) for a, b in pieces]


def _alleles(ref: Reference, contig: str, piece: tuple, window: int, windows: dict, rc: bool,
             first: int) -> list[Allele]:
    """The SNV alleles of one scoring region, their windows added to ``windows``."""
    from hnet_seq.modalities.dna import reverse_complement

    a, b, S, E, offset = piece
    toks = tokens(ref.fetch(contig, S, E))
    edge = bool(offset) or E - S < window
    rkey = ("ref", contig, S, E)
    windows[rkey] = [toks, None]
    if rc:
        windows[rkey + ("-",)] = [reverse_complement(toks), None]
    seq = ref.fetch(contig, a, b).upper()
    alleles = []
    for p in range(a, b):
        base = seq[p - a]
        if base not in BASES:  # one row says why the position has no SNVs
            allele = Allele(first + p - a, 0, contig, p + 1, ".", base, ".", contig=contig)
            allele.skip("reference_not_acgt", f"reference base is {base}")
            alleles.append(allele)
            continue
        for j, alt in enumerate(x for x in BASES if x != base):
            allele = Allele(first + p - a, j, contig, p + 1, ".", base, alt, contig=contig, start=S, end=E,
                            offset=offset, sites=(p - S, p - S))
            alleles.append(allele)
            if edge:
                allele.flags.append("contig_edge")
            akey = ("alt", contig, S, E, p, 1, alt)
            alt_toks = toks.copy()
            alt_toks[p - S] = tokens(alt)[0]
            windows[akey] = [alt_toks, None]
            allele.keys = (rkey, akey)
            if rc:
                windows[akey + ("-",)] = [reverse_complement(alt_toks), None]
                allele.keys += (rkey + ("-",), akey + ("-",))
    return alleles


def _full_pass(im: InferenceModel, windows: dict, budget: int) -> None:
    """The recomputation ``share_prefix=False`` runs: every window in full, packed by ``budget``."""
    items = [WorkItem(torch.from_numpy(v[0]), 0, torch.from_numpy(v[0]).long(), k) for k, v in windows.items()]
    for _, results in Runner(im, scores=True).stream(batches_by_budget(items, budget)):
        for res in results:
            windows[res.tag][1] = -res.nll


def saturation_mutagenesis(checkpoint: str | Path | InferenceModel, reference: str | Path, region: str,
                           out: str | Path | None = None, *, window: int = 8192, rc_average: bool = False,
                           share_prefix: bool | None = None, config: str | Path | None = None,
                           batch_tokens: int | None = None, device: str | None = None,
                           precision: str = "auto", keep_alleles: bool = True) -> VariantSummary:
    """Score every SNV of ``region`` (see the module docstring); rows in ``out`` (TSV or parquet)
    when given, and in ``summary.alleles_list`` with ``keep_alleles``."""
    if window < 4:
        raise UserError(f"window={window}: too small", params=("window",))
    out, fmt = checked_table(out)
    im = load(checkpoint, config, device=device, precision=precision)
    if share_prefix is None:
        from .variant_prefix import shared_by_default

        share_prefix = shared_by_default(im.device)
    if not im.adapter.genomic:
        raise UserError(f"saturation mutagenesis needs a DNA model; this checkpoint reads {im.adapter.name}")
    ref = Reference(reference)
    iv = parse_region(region, ref.lengths, str(reference))  # 1-based inclusive, as every region
    contig, start, end = ref.resolve(iv.contig), iv.start, iv.end
    budget = max(batch_tokens or default_batch_tokens(im.device), window + 64)
    summary = VariantSummary(out=out)
    meta = {"kind": "saturation_mutagenesis", "checkpoint": im.checkpoint, "reference": str(reference),
            "region": f"{contig}:{start}-{end}", "window": window, "rc_average": rc_average,
            "convention": "scoring regions of <= W//2 bases, each in one window of W bases centred on it "
                          "(shifted inside the contig at its ends); "
                          "score = LL(alt window) - LL(ref window) in nats"}
    t0 = time.perf_counter()
    pieces = scoring_regions(start, end, window, ref.lengths[contig])
    with Outputs() as outs:
        table = outs.add(TableWriter(out, TABLE_SCHEMA, meta, fmt)) if out is not None else None
        for i in range(0, len(pieces), PIECES_PER_PASS):
            windows: dict = {}
            alleles = [x for piece in pieces[i:i + PIECES_PER_PASS]
                       for x in _alleles(ref, contig, piece, window, windows, rc_average, piece[0] - start)]
            scored = [x for x in alleles if x.status == "scored"]
            if share_prefix:
                fill_windows(im, windows, [x.keys for x in scored], budget)
            else:
                _full_pass(im, windows, budget)
            summary.windows += len(windows)
            for x in alleles:
                summary.records, summary.alleles = summary.records + (x.index == 0), summary.alleles + 1
                if x.status == "scored":
                    finish(x, windows, rc_average)
                    summary.scored += 1
                else:
                    summary.skipped[x.flags[0]] = summary.skipped.get(x.flags[0], 0) + 1
                if table is not None:
                    table.write_row(**table_row(x))
                if keep_alleles:
                    summary.alleles_list.append(x)
    summary.seconds = time.perf_counter() - t0
    return summary
