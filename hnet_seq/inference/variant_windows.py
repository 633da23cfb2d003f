"""Where the windows of a variant lie, what they contain, and the scores read from them.

Coordinates: ``p`` is the 0-based position of the first REF base (VCF ``POS - 1``), ``m`` the
REF length, ``n`` the ALT length, ``W`` the window and ``L`` the contig length.

* Placement.  A window of ``W`` bases is centred on its allele: it starts at
  ``c - W // 2`` with ``c = p + len(allele) // 2``.  Near a contig end it is **shifted inside
  the contig** (same length, allele off-centre); ``window_offset`` is the shift in bp
  (positive: moved right, away from the contig start; negative: moved left) and the allele is
  flagged ``contig_edge``.  A contig shorter than ``W`` is scored whole and flagged
  ``contig_edge`` and ``short_contig``.  Nothing outside the contig is ever read or padded.
* Reference window: ``ref[S:E]``, placed on the reference (allele = REF).
* Alternate window, by ``indel_window`` (identical for SNVs and MNVs, where ``m == n``):

  - ``equal-length`` (default): ``W`` bases of the alternate haplotype
    ``ref[:p] + ALT + ref[p+m:]``, placed like the reference window but around ALT, so both
    windows have the same length and the totals compare like with like (Evo 2's convention);
    a deletion pulls in flanking bases, an insertion pushes some out.
  - ``span``: the reference window's genomic span ``[S, E)`` with the allele replaced,
    ``ref[S:p] + ALT + ref[p+m:E]`` (length ``W - m + n``).  The totals then differ by about
    one base's log-likelihood per inserted or deleted base, whatever the variant's effect.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hnet_seq.errors import UserError

INDEL_WINDOWS = ("equal-length", "span")
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
    "alt_too_long": "ALT longer than half the window (equal-length windows)",
    "vcf_unwritable": "the record could not be written to the annotated VCF",
}


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
    start: int = 0  # reference window [start, end), 0-based genomic
    end: int = 0
    offset: int = 0  # shift of the reference window from the centred placement (bp)
    sites: tuple = ()  # allele start inside the (ref, alt) windows
    keys: tuple = ()  # window keys: (ref, alt) or (ref, alt, ref-, alt-)
    scores: dict = field(default_factory=dict)  # TABLE columns: score, ref_ll, ...

    def skip(self, code: str, reason: str) -> None:
        self.status, self.reason = "skipped", reason
        self.flags.append(code)

    @property
    def score(self) -> float | None:
        return self.scores.get("score")

    @property
    def site_llr(self) -> float | None:
        return self.scores.get("site_llr")


def classify_alt(alt: str) -> tuple[str, str] | None:
    """Why an ALT is not scored (code, reason), or None for a sequence allele."""
    if alt == "*":
        return "spanning_deletion", "spanning-deletion ALT '*' is not scored"
    if alt.startswith("<") and alt.endswith(">"):
        return "symbolic_alt", f"symbolic ALT {alt} is not scored"
    if "[" in alt or "]" in alt or (len(alt) > 1 and (alt.startswith(".") or alt.endswith("."))):
        return "breakend_alt", f"breakend ALT {alt} is not scored"
    if not _VALID.match(alt):
        return "invalid_allele", f"ALT '{alt}' has characters other than nucleotide codes"
    return None


def tokens(seq: str) -> np.ndarray:
    from hnet_seq.modalities.dna import encode_ascii

    return encode_ascii(seq)[0]


def place(length: int, centre: int, window: int) -> tuple[int, int, int]:
    """``(start, end, offset)`` of a ``window``-base window centred on ``centre`` and shifted to
    lie inside ``[0, length)``; shorter than ``window`` only when ``length`` is."""
    s0 = centre - window // 2
    s = min(max(s0, 0), max(length - window, 0))
    return s, min(s + window, length), s - s0


class Reference:
    """Random access to the reference FASTA, with ``chr`` aliasing of contig names."""

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

    def fetch(self, contig: str, start: int, end: int) -> str:
        return self.fa.fetch(contig, start, end) if end > start else ""


def _check(allele: Allele, ref: Reference, window: int, indel_window: str, strict: bool, where: str) -> bool:
    """Skip (with its reason) an allele that cannot be scored; True if it can."""
    if allele.alt in ("", "."):
        allele.skip("no_alt", "record has no ALT allele")
        return False
    contig = ref.resolve(allele.chrom)
    if contig is None:
        allele.skip("missing_contig", f"contig '{allele.chrom}' is not in the reference {ref.path}")
        return False
    allele.contig = contig
    bad = classify_alt(allele.alt)
    if bad:
        allele.skip(*bad)
        return False
    if not _VALID.match(allele.ref):
        allele.skip("invalid_allele", f"REF '{allele.ref}' has characters other than nucleotide codes")
        return False
    p, m = allele.pos - 1, len(allele.ref)
    clen = ref.lengths[contig]
    if p < 0 or p + m > clen:
        allele.skip("ref_mismatch", f"REF at {allele.chrom}:{allele.pos} lies outside contig '{contig}' "
                                    f"(length {clen})")
    elif (actual := ref.fetch(contig, p, p + m).upper()) != allele.ref.upper():
        allele.skip("ref_mismatch", f"REF '{allele.ref}' does not match the reference '{actual}' at "
                                    f"{contig}:{allele.pos}")
    if allele.status != "scored":
        if strict:
            raise UserError(f"{where}: {allele.reason} (strict makes this fatal; without it the record is skipped)",
                            params=("strict",))
        return False
    if m > window // 2:
        allele.skip("ref_too_long", f"REF of {m} bp is longer than half the window ({window}); raise --window")
        return False
    if indel_window == "equal-length" and len(allele.alt) > window // 2:
        allele.skip("alt_too_long", f"ALT of {len(allele.alt)} bp is longer than half the window ({window}); "
                                    "raise --window")
        return False
    return True


def prepare(allele: Allele, ref: Reference, window: int, indel_window: str, strict: bool, where: str,
            windows: dict, rc: bool) -> None:
    """Check one allele and register its windows (deduplicated by key) in ``windows``.

    ``windows[key] = [tokens (L,) uint8, log-probs (L,) or None until scored]``.
    """
    if not _check(allele, ref, window, indel_window, strict, where):
        return
    contig, alt = allele.contig, allele.alt.upper()
    p, m, n, clen = allele.pos - 1, len(allele.ref), len(alt), ref.lengths[contig]
    S, E, allele.offset = place(clen, p + m // 2, window)
    allele.start, allele.end = S, E
    if allele.offset or E - S < window:
        allele.flags.append("contig_edge")
    if clen < window:
        allele.flags.append("short_contig")
    rkey = ("ref", contig, S, E)
    if rkey not in windows:
        windows[rkey] = [tokens(ref.fetch(contig, S, E)), None]
    if indel_window == "span" or m == n:
        A, right = S, E - p - m
    else:  # the alternate haplotype's own window, hap = ref[:p] + ALT + ref[p+m:]
        A, B, _ = place(clen - m + n, p + n // 2, window)
        right = B - p - n
    allele.sites = (p - S, p - A)
    akey = ("alt", contig, A, p, m, alt, right)  # right: reference bases after the allele
    if akey not in windows:
        seq = ref.fetch(contig, A, p) + alt + ref.fetch(contig, p + m, p + m + right)
        windows[akey] = [tokens(seq), None]
    allele.keys = (rkey, akey)
    if rc:
        from hnet_seq.modalities.dna import reverse_complement

        for k in (rkey, akey):
            if k + ("-",) not in windows:
                windows[k + ("-",)] = [reverse_complement(windows[k][0]), None]
        allele.keys += (rkey + ("-",), akey + ("-",))


def _strand(lp_r: np.ndarray, lp_a: np.ndarray, sites: tuple, m: int, n: int, mirrored: bool) -> dict:
    """Totals, per-base means and the allele's own log-likelihood ratio on one strand.

    Positions with NaN log-probs (no context, or an unscorable target such as N) are left out of
    both the sums and the counts."""
    r_sites, a_sites = np.arange(sites[0], sites[0] + m), np.arange(sites[1], sites[1] + n)
    if mirrored:
        r_sites, a_sites = len(lp_r) - 1 - r_sites, len(lp_a) - 1 - a_sites
    ll_r, ll_a = float(np.nansum(lp_r, dtype=np.float64)), float(np.nansum(lp_a, dtype=np.float64))
    per_base = (ll_a / max(int(np.isfinite(lp_a).sum()), 1)) - (ll_r / max(int(np.isfinite(lp_r).sum()), 1))
    site = float(np.nansum(lp_a[a_sites], dtype=np.float64) - np.nansum(lp_r[r_sites], dtype=np.float64))
    return {"ref_ll": ll_r, "alt_ll": ll_a, "score": ll_a - ll_r, "score_per_base": per_base, "site_llr": site}


def finish(allele: Allele, windows: dict, rc: bool) -> None:
    """Fill ``allele.scores`` from its windows' per-position log-probs.

    With ``rc``, ``score``, ``ref_ll``, ``alt_ll``, ``score_per_base`` and ``site_llr`` are the
    means of the two strands (so ``score == alt_ll - ref_ll`` still holds); ``*_fwd``/``*_rev``
    keep each strand's values."""
    m, n = len(allele.ref), len(allele.alt)
    fwd = _strand(windows[allele.keys[0]][1], windows[allele.keys[1]][1], allele.sites, m, n, False)
    out = dict(fwd, ref_ll_fwd=fwd["ref_ll"], alt_ll_fwd=fwd["alt_ll"], score_fwd=fwd["score"])
    if rc:
        rev = _strand(windows[allele.keys[2]][1], windows[allele.keys[3]][1], allele.sites, m, n, True)
        out.update({k: (fwd[k] + rev[k]) / 2 for k in fwd})
        out.update(ref_ll_rev=rev["ref_ll"], alt_ll_rev=rev["alt_ll"], score_rev=rev["score"])
    allele.scores = out
