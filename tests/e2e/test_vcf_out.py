"""The annotated VCF.

Records are real-looking variants on real sequence (the Shigella plasmids shipped in
hnet_seq/resources); the header defects are the ones an outside probe found to abort htslib.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import pysam
import pytest
from typer.testing import CliRunner

from hnet_seq.cli.main import app

from helpers import WINDOW, ck, genome, other, read_table  # noqa: F401  (fixtures)

HEAD = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def run(ck, ref, vcf, tmp, *extra, out="s.tsv", vcf_out="a.vcf.gz"):
    args = ["score-variants", "--vcf", str(vcf), "--reference", str(ref), "--checkpoint", str(ck),
            "-o", str(tmp / out), "--window", str(WINDOW), "--quiet", *extra]
    if vcf_out:
        args += ["--vcf-out", str(tmp / vcf_out)]
    return CliRunner().invoke(app, args)


def body(path: Path) -> list[str]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return [line.rstrip("\n") for line in f if not line.startswith("#")]


def strip_hnet(line: str) -> str:
    cols = line.split("\t")
    info = [kv for kv in cols[7].split(";") if not kv.startswith("HNET_")]
    cols[7] = ";".join(info) or "."
    return "\t".join(cols)


def no_debris(tmp: Path) -> None:
    assert not [p.name for p in tmp.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]


def test_indexed_vcf_gz_provenance_and_symbolic_records(ck, genome, tmp_path):
    ref, chroms = genome
    c1 = chroms["chr1"]
    lines = [f"chr1\t{p}\tv{p}\t{c1[p - 1]}\t{other(c1[p - 1])}\t30\tPASS\tDP=7;AF=0.25" for p in (300, 800, 1300)]
    lines.insert(1, f"chr1\t500\tsv1\t{c1[499]}\t<DEL>\t.\tPASS\tSVTYPE=DEL;END=620;SVLEN=-120")
    lines.insert(3, f"chr1\t1000\tgvcf\t{c1[999]}\t<*>\t.\t.\tEND=1010")
    vcf = tmp_path / "in.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=2500>\n"
                   "##INFO=<ID=DP,Number=1,Type=Integer,Description=\"d\">\n"
                   "##INFO=<ID=AF,Number=A,Type=Float,Description=\"f\">\n"
                   "##INFO=<ID=SVTYPE,Number=1,Type=String,Description=\"t\">\n"
                   "##INFO=<ID=SVLEN,Number=A,Type=Integer,Description=\"l\">\n"
                   "##INFO=<ID=END,Number=1,Type=Integer,Description=\"e\">\n" + HEAD + "\n".join(lines) + "\n")
    r = run(ck, ref, vcf, tmp_path, "--rc-average")
    assert r.exit_code == 0, r.output
    out = tmp_path / "a.vcf.gz"
    assert (tmp_path / "a.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(out)) as vf:  # reopened through its index
        assert [x.id for x in vf.fetch("chr1", 700, 1200)] == ["v800", "gvcf"]
        prov = [h for h in vf.header.records if h.key == "hnet-seq"]
        assert len(prov) == 1
    text = str(prov[0])
    for word in ('Window="400"', 'RcAverage="yes"', 'IndelWindow="equal-length"', "Version=", "Checkpoint=",
                 "Command=\"hnet-seq score-variants"):
        assert word in text, text
    # every record kept; apart from the HNET_* fields, each line is the input's byte for byte
    # (the symbolic records gain no END; htslib would only normalise floats such as 0.250)
    assert [strip_hnet(x) for x in body(out)] == lines
    no_debris(tmp_path)


HEADER_DEFECTS = {
    "no_contig_lines": "##fileformat=VCFv4.2\n" + HEAD,
    "contig_missing": "##fileformat=VCFv4.2\n##contig=<ID=chr2,length=1200>\n" + HEAD,
    "v33_undeclared_filter": "##fileformat=VCFv3.3\n##contig=<ID=chr1>\n" + HEAD,
}


@pytest.mark.parametrize("case", sorted(HEADER_DEFECTS))
@pytest.mark.parametrize("vcf_out", ["a.vcf", "a.vcf.gz", "a.bcf"])
def test_header_completed_before_writing(ck, genome, tmp_path, case, vcf_out):
    """Undeclared contigs, FILTERs and INFO tags: htslib used to abort; now every record is written."""
    ref, chroms = genome
    c1 = chroms["chr1"]
    lines = [f"chr1\t{p}\t.\t{c1[p - 1]}\t{other(c1[p - 1])}\t9\tq10;lowDP\tXX=1;FLAGGY" for p in (400, 900)]
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER_DEFECTS[case] + "\n".join(lines) + "\n")
    r = run(ck, ref, vcf, tmp_path, vcf_out=vcf_out)
    assert r.exit_code == 0, r.output
    rows = read_table(tmp_path / "s.tsv")
    assert [x["status"] for x in rows] == ["scored", "scored"]
    with pysam.VariantFile(str(tmp_path / vcf_out)) as vf:
        recs = list(vf)
        assert "chr1" in vf.header.contigs and {"q10", "lowDP"} <= set(vf.header.filters)
        assert {"XX", "FLAGGY", "HNET_SCORE"} <= set(vf.header.info)
    assert [(x.pos, tuple(x.filter)) for x in recs] == [(400, ("q10", "lowDP")), (900, ("q10", "lowDP"))]
    assert [round(x.info["HNET_SCORE"][0], 3) for x in recs] == [round(float(x["score"]), 3) for x in rows]
    no_debris(tmp_path)


@pytest.mark.parametrize("vcf_out", ["a.vcf.gz", "a.bcf"])
def test_gvcf_records_near_ten_billion(ck, genome, tmp_path, vcf_out):
    """`<*>` records past 2^31: kept in .vcf.gz (never given an END); a BCF cannot hold them, so
    they are named in the table instead of aborting the run."""
    ref, _ = genome
    lines = [f"chr1\t{9_999_999_000 + 100 * k}\t.\tA\t<*>\t.\t.\tEND={9_999_999_050 + 100 * k}" for k in range(5)]
    vcf = tmp_path / "g.vcf"
    vcf.write_text("##fileformat=VCFv4.3\n##contig=<ID=chr1>\n"
                   "##INFO=<ID=END,Number=1,Type=Integer,Description=\"e\">\n" + HEAD + "\n".join(lines) + "\n")
    r = run(ck, ref, vcf, tmp_path, vcf_out=vcf_out)
    assert r.exit_code == 0, r.output
    rows = read_table(tmp_path / "s.tsv")
    assert len(rows) == 5 and all(x["status"] == "skipped" for x in rows)
    if vcf_out.endswith(".gz"):
        assert [strip_hnet(x) for x in body(tmp_path / vcf_out)] == lines
        assert all(x["flags"] == "symbolic_alt" for x in rows)
    else:
        assert all(x["flags"] == "symbolic_alt,vcf_unwritable" and "BCF" in x["reason"] for x in rows)
        with pysam.VariantFile(str(tmp_path / vcf_out)) as vf:
            assert list(vf) == []
    no_debris(tmp_path)


def test_bad_inputs_one_line(ck, genome, tmp_path):
    ref, chroms = genome
    plain = tmp_path / "plain.vcf.gz"
    with gzip.open(plain, "wt") as f:  # plain gzip, not bgzip
        f.write("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n" + HEAD + f"chr1\t10\t.\t{chroms['chr1'][9]}\tA\t.\t.\t.\n")
    r = run(ck, ref, plain, tmp_path, vcf_out=None)
    assert r.exit_code == 2 and "bgzip" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = run(ck, ref, plain, tmp_path, vcf_out="a.vcf.zip")
    assert r.exit_code == 2 and ".vcf, .vcf.gz or .bcf" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.vcf.gz"]
