"""Window placement at contig edges and equal-length indel windows, on real sequence.

The reference is cut from the real Shigella plasmids (shipped in hnet_seq/resources): ``chrA``
an interior stretch, ``chrE`` a copy of part of ``chrA`` (so that a variant near chrE's ends sits in a
window whose sequence also lies inside chrA), ``chrS`` a contig shorter than the window.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest

from helpers import GENOME, WINDOW, ck, other  # noqa: F401  (ck is a fixture)

HEAD = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
E0 = 1000  # chrE = chrA[E0 : E0 + WINDOW + 100]


@pytest.fixture(scope="module")
def contigs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    with pysam.FastxFile(str(GENOME)) as f:
        plasmid = next(iter(f)).sequence.upper()
    a = plasmid[60000:63000]
    seqs = {"chrA": a, "chrE": a[E0:E0 + WINDOW + 100], "chrS": a[2000:2300]}
    path = tmp_path_factory.mktemp("edge") / "ref.fa"
    path.write_text("".join(f">{k}\n{v}\n" for k, v in seqs.items()))
    return path, seqs


def window_ll(ck, seqs: list[str]) -> list[float]:
    """`score` of each sequence as its own record: the reference for a window's log-likelihood."""
    from hnet_seq.inference.score import score
    from hnet_seq.modalities.base import Record
    from hnet_seq.modalities.dna import encode_ascii

    recs = [Record(str(i), encode_ascii(s)[0], {}) for i, s in enumerate(seqs)]
    return [x.log_likelihood for x in score(ck, records=recs, window=WINDOW + 64, progress=False).scores]


def snv(seq: str, i: int) -> str:
    return seq[:i] + other(seq[i]) + seq[i + 1:]


def test_edge_window_scores_like_the_same_interior_window(ck, contigs, tmp_path):
    from hnet_seq.inference.variants import score_variants

    ref, seqs = contigs
    e, a, s = seqs["chrE"], seqs["chrA"], seqs["chrS"]
    vcf = tmp_path / "edge.vcf"
    vcf.write_text(HEAD + f"chrE\t40\tleft\t{e[39]}\t{other(e[39])}\t.\t.\t.\n"
                   f"chrE\t{len(e) - 20}\tright\t{e[-21]}\t{other(e[-21])}\t.\t.\t.\n"
                   f"chrS\t150\tshort\t{s[149]}\t{other(s[149])}\t.\t.\t.\n"
                   f"chrA\t1500\tinterior\t{a[1499]}\t{other(a[1499])}\t.\t.\t.\n")
    res = {x.id: x for x in score_variants(ck, vcf, ref, window=WINDOW, progress=False, keep_alleles=True).alleles_list}
    left, right, short, inner = res["left"], res["right"], res["short"], res["interior"]
    # placement: same length, shifted inside the contig, allele off-centre
    assert (left.start, left.end, left.offset) == (0, WINDOW, WINDOW // 2 - 39)
    assert (right.start, right.end, right.offset) == (len(e) - WINDOW, len(e), len(e) - WINDOW - (len(e) - 21 - 200))
    assert left.flags == right.flags == ["contig_edge"] and inner.flags == [] and inner.offset == 0
    assert (short.start, short.end, short.flags) == (0, len(s), ["contig_edge", "short_contig"])
    # chrE's edge windows are chrA[E0:E0+W] and chrA[E0+100:E0+100+W]: interior windows of chrA
    # (no N anywhere); the edge SNV's score is that of the same SNV in the interior window
    lw, rw = a[E0:E0 + WINDOW], a[E0 + 100:E0 + 100 + WINDOW]
    assert "N" not in lw + rw
    ll = window_ll(ck, [lw, snv(lw, 39), rw, snv(rw, len(e) - 21 - 100), s, snv(s, 149)])
    for allele, (r, x) in ((left, ll[0:2]), (right, ll[2:4]), (short, ll[4:6])):
        assert abs(allele.scores["ref_ll"] - r) < 2e-3 and abs(allele.score - (x - r)) < 2e-3, allele.id


def real_indels(a: str, positions) -> list[tuple[int, str, str, str]]:
    """At each 0-based position: a 6 bp tandem duplication of the bases that follow (the
    commonest kind of insertion) and a 4 bp deletion, VCF-style with the anchor base."""
    out = []
    for p in positions:
        out.append((p + 1, "ins", a[p], a[p] + a[p + 1:p + 7]))
        out.append((p + 1, "del", a[p:p + 5], a[p]))
    return out


def test_equal_length_indel_windows(ck, contigs, tmp_path, report):
    from hnet_seq.inference.variants import score_variants

    ref, seqs = contigs
    a = seqs["chrA"]
    indels = real_indels(a, range(600, 2400, 200))
    vcf = tmp_path / "indels.vcf"
    vcf.write_text(HEAD + "".join(f"chrA\t{pos}\t{kind}{k}\t{r}\t{x}\t.\t.\t.\n"
                                  for k, (pos, kind, r, x) in enumerate(indels)))
    by_mode = {}
    for mode in ("equal-length", "span"):
        fasta = tmp_path / f"{mode}.fa"
        s = score_variants(ck, vcf, ref, window=WINDOW, indel_window=mode, windows_fasta=fasta, progress=False,
                           keep_alleles=True)
        assert s.scored == len(indels)
        wins = {r.name: r.sequence for r in pysam.FastxFile(str(fasta))}
        by_mode[mode] = (s.alleles_list, wins)
    alleles, wins = by_mode["equal-length"]
    for al in alleles:
        p, m, n = al.pos - 1, len(al.ref), len(al.alt)
        hap = a[:p] + al.alt + a[p + m:]
        start = p + n // 2 - WINDOW // 2  # interior: centred on ALT in the alternate haplotype
        assert wins[f"v{al.record}_0_alt"] == hap[start:start + WINDOW]
        assert wins[f"v{al.record}_0_ref"] == a[al.start:al.start + WINDOW]
    span_alt = by_mode["span"][1]
    assert {len(span_alt[f"v{al.record}_0_alt"]) - WINDOW for al in by_mode["span"][0]} == {6, -4}
    # the scores are those of the windows, in both modes
    for mode, (alls, w) in by_mode.items():
        ll = window_ll(ck, [w[f"v{al.record}_0_{side}"] for al in alls for side in ("ref", "alt")])
        for k, al in enumerate(alls):
            assert abs(al.score - (ll[2 * k + 1] - ll[2 * k])) < 2e-3, (mode, al.id)
            n_ref, n_alt = len(w[f"v{al.record}_0_ref"]) - 1, len(w[f"v{al.record}_0_alt"]) - 1
            per_base = ll[2 * k + 1] / n_alt - ll[2 * k] / n_ref
            assert abs(al.scores["score_per_base"] - per_base) < 1e-5, (mode, al.id)
    # span windows carry the length bias (about one base's log-likelihood per base gained or lost);
    # equal-length windows do not
    mean = {(mode, kind): float(np.mean([al.score for al in alls if al.id.startswith(kind)]))
            for mode, (alls, _) in by_mode.items() for kind in ("ins", "del")}
    per_base_ll = float(np.mean([al.scores["ref_ll"] for al in alleles])) / (WINDOW - 1)
    for key, v in mean.items():
        report(f"mean score, {key[1]}, {key[0]} windows (nats)", round(v, 3))
    assert mean["span", "ins"] - mean["equal-length", "ins"] < 6 * per_base_ll / 2
    assert mean["span", "del"] - mean["equal-length", "del"] > -4 * per_base_ll / 2
    assert abs(mean["equal-length", "ins"]) < abs(mean["span", "ins"])
    assert abs(mean["equal-length", "del"]) < abs(mean["span", "del"])
