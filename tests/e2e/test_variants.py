"""score-variants on synthetic variants placed on real sequence (the Shigella plasmids shipped in
hnet_seq/resources).

SNV, MNV, insertion, deletion and a multi-allelic record score exactly
the difference of ``hnet-seq score`` on the two windows written as FASTA; a REF mismatch is
skipped (fatal with --strict, leaving no output), a missing contig is reported, a variant near
a contig end gets a window shifted inside the contig and is flagged, symbolic and breakend ALTs are skipped with their
reason, ``1`` finds ``chr1``; the annotated VCF validates with pysam and keeps every record.
"""
from __future__ import annotations


import pysam
from typer.testing import CliRunner

from hnet_seq.cli.main import app
from helpers import WINDOW, ck, genome, other, read_table, write_vcf  # noqa: F401  (ck, genome: fixtures)


def test_variant_scores_equal_score_of_windows(ck, genome, tmp_path, report):
    ref, chroms = genome
    vcf = tmp_path / "calls.vcf"
    records = write_vcf(vcf, chroms)
    bgz = tmp_path / "calls.vcf.gz"
    pysam.tabix_compress(str(vcf), str(bgz))  # bgzipped input, as users give it
    out, annotated, windows = tmp_path / "scores.tsv", tmp_path / "annotated.vcf.gz", tmp_path / "windows.fa"
    r = CliRunner().invoke(app, ["score-variants", "--vcf", str(bgz), "--reference", str(ref), "--checkpoint",
                                 str(ck), "-o", str(out), "--vcf-out", str(annotated), "--window", str(WINDOW),
                                 "--windows-fasta", str(windows), "--indel-window", "span", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "variants/s" in r.output  # throughput is reported at the end
    rows = read_table(out)
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    assert [row["id"] for row in rows] == [rec[2] for rec in records for _ in rec[4].split(",")]  # input order
    status = {i: [(x["status"], x["flags"]) for x in v] for i, v in by_id.items()}
    assert status["multi"] == [("scored", "")] * 3
    assert status["mismatch"] == [("skipped", "ref_mismatch")] and "does not match" in by_id["mismatch"][0]["reason"]
    assert status["nocontig"] == [("skipped", "missing_contig")]
    assert status["edge"] == [("scored", "contig_edge")]
    assert status["symbolic"] == [("skipped", "symbolic_alt")] and "<DEL>" in by_id["symbolic"][0]["reason"]
    assert status["breakend"] == [("skipped", "breakend_alt")]
    assert status["alias"] == [("scored", "")]
    assert status["star"] == [("scored", ""), ("skipped", "spanning_deletion")]
    assert status["softmask"] == [("scored", "")]  # REF compared case-insensitively

    # The windows are what they claim: the same genomic span, the allele centred, shifted at a contig end.
    win = {r.name: (r.sequence, r.comment) for r in pysam.FastxFile(str(windows))}
    c1 = chroms["chr1"]
    snv_ref, snv_alt = win["v0_0_ref"][0], win["v0_0_alt"][0]
    S = 900 - 1 - WINDOW // 2
    assert snv_ref == c1[S:S + WINDOW] and snv_alt == c1[S:899] + records[0][4] + c1[900:S + WINDOW]
    ins_alt, del_alt = win["v2_0_alt"][0], win["v3_0_alt"][0]
    assert len(ins_alt) == WINDOW + 7 and len(del_alt) == WINDOW - 8
    S = 1199 + 9 // 2 - WINDOW // 2
    assert del_alt == c1[S:1200] + c1[1208:S + WINDOW] and win["v3_0_ref"][0] == c1[S:S + WINDOW]
    edge = win["v7_0_ref"][0]
    assert edge == chroms["chr2"][:WINDOW]  # shifted right by WINDOW // 2 - 29, no N padding
    assert [(x["window_start"], x["window_offset"], x["contig_edge"]) for x in by_id["edge"]] == \
        [("0", str(WINDOW // 2 - 29), "True")]

    # score = difference of `hnet-seq score` on the two windows
    scored = tmp_path / "windows.tsv"
    r = CliRunner().invoke(app, ["score", str(windows), "--checkpoint", str(ck), "-o", str(scored),
                                 "--window", str(WINDOW + 64), "--quiet"])
    assert r.exit_code == 0, r.output
    ll = {row["seq_id"]: float(row["log_likelihood"]) for row in read_table(scored)}
    checked = 0
    for k, rec in enumerate(records):
        for j, row in enumerate(by_id[rec[2]]):
            if row["status"] != "scored":
                continue
            expected = ll[f"v{k}_{j}_alt"] - ll[f"v{k}_{j}_ref"]
            assert abs(float(row["score"]) - expected) < 2e-3, (rec[2], row["score"], expected)
            assert abs(float(row["ref_ll"]) - ll[f"v{k}_{j}_ref"]) < 2e-3
            checked += 1
    assert checked == 11
    report("alleles checked against `score` of their windows", checked)

    # the annotated VCF: valid, every record, in order, original fields kept, scores per ALT
    with pysam.VariantFile(str(annotated)) as vf:
        out_records = list(vf)
        assert {"HNET_SCORE", "HNET_SITE_LLR", "HNET_FLAGS"} <= set(vf.header.info)
    assert [(x.chrom, x.pos, x.id, x.ref, x.alts) for x in out_records] == \
        [(c, p, i, r_, tuple(a.split(","))) for c, p, i, r_, a in records]
    assert [x.info["DP"] for x in out_records] == [k + 10 for k in range(len(records))]
    multi = out_records[4]
    assert [round(v, 3) for v in multi.info["HNET_SCORE"]] == [round(float(x["score"]), 3) for x in by_id["multi"]]
    assert out_records[5].info["HNET_FLAGS"] == ("ref_mismatch",) and out_records[5].info["HNET_SCORE"] == (None,)
    assert out_records[7].info["HNET_FLAGS"] == ("contig_edge",)
    assert out_records[12].info["HNET_FLAGS"] == ("ok", "spanning_deletion")


def test_rc_average_and_shared_windows(ck, genome, tmp_path):
    """Both strands: score_rev equals the score of the reverse-complemented windows; REF windows shared."""
    from hnet_seq.inference.score import score
    from hnet_seq.inference.variants import score_variants
    from hnet_seq.modalities.base import Record
    from hnet_seq.modalities.dna import encode_ascii, reverse_complement

    ref, chroms = genome
    c1 = chroms["chr1"]
    vcf = tmp_path / "two.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chr1\t700\ta\t{c1[699]}\t{other(c1[699])},{c1[699]}TT\t.\t.\t.\n"
                   f"chr1\t700\tb\t{c1[699]}\t{other(c1[699], 2)}\t.\t.\t.\n")
    fasta = tmp_path / "w.fa"
    s = score_variants(ck, vcf, ref, rc_average=True, window=WINDOW, windows_fasta=fasta, progress=False,
                       keep_alleles=True, records_per_block=1)
    # one shared REF window (and its reverse complement) + 3 ALT windows per strand
    assert s.scored == 3 and s.windows == 8
    wins = {r.name: r.sequence for r in pysam.FastxFile(str(fasta))}
    recs = [Record(f"{k}{'-' if rc else '+'}", reverse_complement(t) if rc else t, {})
            for k, seq in wins.items() for t in [encode_ascii(seq)[0]] for rc in (False, True)]
    ll = {x.seq_id: x.log_likelihood for x in score(ck, records=recs, window=WINDOW + 64, progress=False).scores}
    for a in s.alleles_list:
        key = f"v{a.record}_{a.index}"
        v = a.scores
        for strand, sign in (("fwd", "+"), ("rev", "-")):
            assert abs(v[f"ref_ll_{strand}"] - ll[key + "_ref" + sign]) < 2e-3
            assert abs(v[f"alt_ll_{strand}"] - ll[key + "_alt" + sign]) < 2e-3
            assert abs(v[f"score_{strand}"] - (ll[key + "_alt" + sign] - ll[key + "_ref" + sign])) < 2e-3
        # the reported values are the strand means, so the row is self-consistent
        assert abs(v["score"] - (v["score_fwd"] + v["score_rev"]) / 2) < 1e-9
        assert abs(v["ref_ll"] - (v["ref_ll_fwd"] + v["ref_ll_rev"]) / 2) < 1e-9
        assert abs(v["alt_ll"] - (v["alt_ll_fwd"] + v["alt_ll_rev"]) / 2) < 1e-9
        assert abs(v["score"] - (v["alt_ll"] - v["ref_ll"])) < 1e-9


def test_strict_mismatch_is_fatal_without_output(ck, genome, tmp_path):
    ref, chroms = genome
    vcf = tmp_path / "calls.vcf"
    write_vcf(vcf, chroms)
    out, annotated = tmp_path / "s.parquet", tmp_path / "a.bcf"
    r = CliRunner().invoke(app, ["score-variants", "--vcf", str(vcf), "--reference", str(ref), "--checkpoint",
                                 str(ck), "-o", str(out), "--vcf-out", str(annotated), "--strict", "--quiet"])
    assert r.exit_code == 2
    line = r.output.strip()
    assert len(line.splitlines()) == 1 and "record 6 (chr1:1400)" in line and "does not match" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf"]
    for args, words in ((["--vcf", str(tmp_path / "none.vcf")], "no such file"),
                        (["--vcf", str(ref)], "cannot read VCF")):
        r = CliRunner().invoke(app, ["score-variants", *args, "--reference", str(ref), "--checkpoint", str(ck),
                                     "-o", str(out)])
        assert r.exit_code == 2 and words in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf"]
