"""Data and analyses of ``bench/quality_human.py``: N-free pieces of GRCh37, the chr22 EPO alignment,
sequence features (CpG, low complexity, human/chimp differences) and variant AUROCs.

Held-out bits per base count ACGT positions only: every training and held-out record is an
N-free piece of a chromosome (named ``contig:start-end``, 0-based), so an N is never a target and
no window is a pure N gap, whatever the library does with N.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ACGT = 4  # DNA tokens below this are A, C, G, T
# Symmetric DUST (Morgulis et al. 2006, J Comput Biol 13:1028; dustmasker, minimap2's sdust) defaults:
SDUST_WINDOW = 64  # bases: the longest interval scored (62 triplets)
SDUST_LEVEL = 20  # dustmasker -level / sdust -t ...
SDUST_SCALE = 10  # ... in tenths of the score r / (l - 1): an interval is low complexity above 2.0


@dataclass(frozen=True)
class Sources:
    """The input files of the experiment (``--data-dir`` names, or any GRCh37/38 FASTA given by flag)."""

    chr20: Path
    chrx: Path
    maf: Path
    vcf22: Path
    snvs: Path


# ---- pieces of the genome --------------------------------------------------------------------------


def tokens_of(seq: str) -> np.ndarray:
    from hnet_seq.modalities.dna import encode_ascii

    return encode_ascii(seq)[0]


def acgt_runs(tokens: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of ACGT of at least ``min_len`` bases."""
    ok = np.concatenate([[False], tokens < ACGT, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(ok))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_len]


def write_pieces(handle, contig: str, seq: str, offset: int, min_len: int) -> int:
    """Write the N-free pieces of ``seq`` (which starts at ``offset`` on ``contig``) as FASTA records."""
    total = 0
    for a, b in acgt_runs(tokens_of(seq), min_len):
        handle.write(f">{contig}:{offset + a}-{offset + b}\n{seq[a:b]}\n")
        total += b - a
    return total


def fasta_region(path: Path, contig: str, start: int, end: int | None) -> tuple[str, str, int]:
    """``(contig name in the file, sequence, start)`` of ``contig`` (alias-aware) ``[start, end)``."""
    import pysam

    from hnet_seq.data.regions import resolve_contig

    with pysam.FastaFile(str(path)) as fa:
        name = resolve_contig(contig, dict(zip(fa.references, fa.lengths)))
        if name is None:
            raise SystemExit(f"{path}: no contig '{contig}' (has {', '.join(fa.references)})")
        return name, fa.fetch(name, start, min(end or fa.get_reference_length(name), fa.get_reference_length(name))), start


# ---- the chr22 alignment ------------------------------------------------------------------------------


@dataclass
class Block:
    start: int  # 0-based GRCh37 start of the human row
    human: str  # the human row's bases (alignment gaps removed)
    diverged: np.ndarray  # (len(human),) bool: chimp has another base (A/C/G/T) in this column
    chimp_gap: np.ndarray  # (len(human),) bool: chimp has a gap in this column


def maf_blocks(path: Path, max_blocks: int | None = None) -> list[Block]:
    """The human (``Hsap``) rows of an EPO MAF with the chimpanzee (``Ptro``) row beside each,
    read with :mod:`Bio.AlignIO` (``maf``); blocks without both rows, or on the − strand, are skipped."""
    from Bio import AlignIO

    blocks = []
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as handle:
        for aln in AlignIO.parse(handle, "maf"):
            rows = {r.id.split(".")[0]: r for r in aln}
            h, c = rows.get("Hsap"), rows.get("Ptro")
            if h is None or c is None or h.annotations.get("strand") not in (1, "+"):
                continue
            hs, cs = np.frombuffer(str(h.seq).upper().encode(), np.uint8), np.frombuffer(str(c.seq).upper().encode(), np.uint8)
            keep = hs != ord("-")
            acgt = np.isin(cs, np.frombuffer(b"ACGT", np.uint8)) & np.isin(hs, np.frombuffer(b"ACGT", np.uint8))
            blocks.append(Block(int(h.annotations["start"]), str(h.seq).replace("-", ""),
                                (acgt & (hs != cs))[keep], (cs == ord("-"))[keep]))
            if max_blocks and len(blocks) >= max_blocks:
                break
    return blocks


def chr22_reference(blocks: list[Block], length: int, path: Path) -> Path:
    """A FASTA of contig ``22`` of ``length`` bases: the alignment's human rows at their GRCh37
    coordinates, N between blocks (indexed with faidx)."""
    import pysam

    seq = bytearray(b"N" * length)
    for b in blocks:
        seq[b.start:b.start + len(b.human)] = b.human.upper().encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(">22\n")
        for i in range(0, length, 60):
            f.write(seq[i:i + 60].decode() + "\n")
    tmp.replace(path)
    pysam.faidx(str(path))
    return path


def af_classes(vcf: Path, reference: Path, out: Path, rare: float = 0.01, common: float = 0.05) -> dict:
    """Biallelic SNVs of ``vcf`` whose REF matches ``reference``, rare (AF < ``rare``) or common
    (AF > ``common``), written to ``out``; returns the REF match counts and the label per variant."""
    import pysam

    counts = {"snvs": 0, "ref_match": 0, "outside_alignment": 0, "ref_mismatch": 0}
    labels = {}
    with pysam.FastaFile(str(reference)) as fa, pysam.VariantFile(str(vcf)) as vf:
        if "22" not in vf.header.contigs:
            vf.header.contigs.add("22")  # the package's VCF has no contig header line
        tmp = out.with_name(out.name + ".tmp")
        with pysam.VariantFile(str(tmp), "w", header=vf.header.copy()) as w:
            for rec in vf:
                if len(rec.alts or ()) != 1 or len(rec.ref) != 1 or len(rec.alts[0]) != 1:
                    continue
                counts["snvs"] += 1
                base = fa.fetch("22", rec.pos - 1, rec.pos).upper()
                if base == "N":
                    counts["outside_alignment"] += 1
                    continue
                if base != rec.ref.upper():
                    counts["ref_mismatch"] += 1
                    continue
                counts["ref_match"] += 1
                af = rec.info.get("AF")
                af = float(af[0] if isinstance(af, tuple) else af) if af is not None else None
                if af is not None and (af < rare or af > common):
                    labels[(rec.pos, rec.alts[0])] = af < rare
                    w.write(rec)
        tmp.replace(out)
    return {"counts": counts, "labels": labels}


# ---- sequence features ------------------------------------------------------------------------------


def cpg_features(tokens: np.ndarray, window: int = 200) -> dict:
    """``cpg``: bases of a CpG dinucleotide; ``island``: in a ``window``-base window with GC > 0.5 and
    observed/expected CpG > 0.6 (Gardiner-Garden & Frommer)."""
    c, g = tokens == 1, tokens == 2
    cg = np.zeros(len(tokens), bool)
    cg[:-1] = c[:-1] & g[1:]
    cpg = cg | np.concatenate([[False], cg[:-1]])
    kern = np.ones(window)
    nc, ng, ncg = (np.convolve(x.astype(float), kern, "same") for x in (c, g, cg))
    island = ((nc + ng) / window > 0.5) & (ncg * window > 0.6 * np.maximum(nc * ng, 1))
    return {"cpg": cpg, "island": island}


def triplet_codes(tokens: np.ndarray) -> np.ndarray:
    """``(L - 2,) int64``: the triplet starting at each base as 16·a + 4·b + c, −1 where it holds a
    non-ACGT token (tokens ≥ ``ACGT``)."""
    t = tokens.astype(np.int64)
    ok = (t[:-2] < ACGT) & (t[1:-1] < ACGT) & (t[2:] < ACGT)
    return np.where(ok, 16 * t[:-2] + 4 * t[1:-1] + t[2:], -1)


def low_complexity(tokens: np.ndarray) -> np.ndarray:
    """``(L,) bool``: the bases symmetric DUST masks at window ``SDUST_WINDOW`` and level ``SDUST_LEVEL``.

    An interval of l ≥ 2 triplets (all ACGT; at most ``SDUST_WINDOW`` − 2 of them) scores
    r / (l − 1) with r = Σ_t c_t(c_t − 1)/2 over its triplet counts c_t; it is *suspicious* when
    ``SDUST_SCALE`` · r > ``SDUST_LEVEL`` · (l − 1) (score above 2.0), and *perfect* when it is
    suspicious and no sub-interval scores higher.  The mask is the union of the bases of all perfect
    intervals: the paper's definition, and what sdust's streaming bookkeeping computes (its
    insertion test compares an interval with the perfect ones inside it, which is the same test,
    since the best-scoring sub-interval of any interval is itself perfect); sdust in turn matches
    dustmasker except in assembly gaps.  Intervals that are merely suspicious, e.g. a poly-A with
    random flanks, are not masked beyond their perfect core.

    For each length l (2 … 62 triplets), r of every interval follows from l − 1's by adding the
    equal pairs ending at its last triplet, which are the previous length's plus the pairs at lag
    l − 1; the best sub-interval score of an interval is the best of its two (l − 1)-triplet
    sub-intervals' own best scores.  1 Mbp of chrX takes 0.7 s on one core (uniform random
    bases: 1.5-2 s); it masks 4.9 % of chrX 62.0-63.05 Mb (GRCh37), in 1,759 intervals.
    """
    n = len(tokens)
    if n < 4:
        return np.zeros(n, bool)
    trip = triplet_codes(tokens)
    m = len(trip)
    pos = np.arange(m)
    bad = np.flatnonzero(trip < 0)
    run = np.append(bad, m)[np.searchsorted(bad, pos)] - pos  # ACGT triplets from each one on
    pairs_ending = np.zeros(m, np.int32)  # equal triplet pairs (i, j) ending at j with j − i < l
    r = np.zeros(m, np.int32)  # r of the interval of l triplets at each start
    best_sub = np.full(m, -np.inf)  # best score of it and any sub-interval, previous length
    reach = np.zeros(m, np.int64)  # end (exclusive, bases) of the longest perfect interval per start
    for l in range(2, min(SDUST_WINDOW - 2, m) + 1):
        lag, k = l - 1, m - l + 1
        pairs_ending[lag:] += (trip[lag:] == trip[:-lag]) & (trip[lag:] >= 0)
        r = r[:k] + pairs_ending[lag:]
        whole = run[:k] >= l  # all ACGT
        score = np.where(whole, r / lag, -np.inf)  # correctly rounded: equal ratios give equal floats
        sub = np.maximum(best_sub[:-1], best_sub[1:]) if l > 2 else best_sub[:k]
        perfect = whole & (SDUST_SCALE * r > SDUST_LEVEL * lag) & (score >= sub)
        reach[:k][perfect] = pos[:k][perfect] + l + 2
        best_sub = np.maximum(score, sub)
    covered = np.maximum.accumulate(np.concatenate([reach, [0, 0]]))
    return covered > np.arange(n)


def profile(boundary: np.ndarray, sites: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``(2, hi - lo)``: chunk starts and positions at each offset from ``sites``."""
    out = np.zeros((2, hi - lo), np.int64)
    n = len(boundary)
    for k, off in enumerate(range(lo, hi)):
        pos = sites + off
        pos = pos[(pos > 0) & (pos < n)]
        out[0, k], out[1, k] = int(boundary[pos].sum()), len(pos)
    return out


# ---- variant AUROCs ---------------------------------------------------------------------------------


def auroc(scores: np.ndarray, positive: np.ndarray, boots: int = 1000, seed: int = 0) -> dict:
    """AUROC of ``scores`` for ``positive`` (Mann-Whitney, ties halved) with a 95% percentile
    bootstrap interval (resampling variants with replacement)."""
    def rankdata(s):  # 1-based ranks, ties given their mean rank (as scipy.stats.rankdata)
        order = np.argsort(s, kind="stable")
        sorted_s = s[order]
        starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
        ends = np.r_[starts[1:], len(s)]
        ranks = np.empty(len(s))
        ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
        return ranks

    def one(s, y):
        n1, n0 = int(y.sum()), int((~y).sum())
        if n1 == 0 or n0 == 0:
            return float("nan")
        return float((rankdata(s)[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(scores), (boots, len(scores)))
    samples = np.array([one(scores[i], positive[i]) for i in idx])
    lo, hi = np.nanpercentile(samples, [2.5, 97.5]) if np.isfinite(samples).any() else (np.nan, np.nan)
    return {"auroc": one(scores, positive), "ci95": [float(lo), float(hi)], "positives": int(positive.sum()),
            "negatives": int((~positive).sum())}
