"""The variant-score table of :func:`.score_variants` and :func:`.saturation_mutagenesis`: its
schema, one row per ALT allele, and the summary of a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from .variant_windows import Allele


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
