"""Interval, region and table conventions, on the plasmid genome shipped in the package.

* BED input: ``.bed`` with track/browser/comment lines, ``.bed.gz`` plain gzip and bgzip + tabix
  read alike; the BED name becomes ``seq_id``; a ``-`` interval is scored and embedded as the
  reverse complement of its bases while every coordinate stays on the + strand.
* ``--region`` is 1-based inclusive (samtools) and names the same bases as the 0-based BED line.
* Tables: a TSV is read back by pandas and the csv module with no options, stdout carries the
  same columns as ``-o``, and the run metadata is in a JSON sidecar and the parquet schema.
"""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest
from helpers import chunk_rows
from helpers import invoke

import hnet_seq.resources
from hnet_seq.data.regions import Interval, bed_features, parse_region, read_bed
from hnet_seq.errors import UserError
from hnet_seq.inference.tables import TableWriter, read_metadata, sidecar_path
from hnet_seq.modalities.dna import decode_tokens, encode_ascii, reverse_complement

GENOME = Path(hnet_seq.resources.__file__).parent / "shigella_sonnei_53G_plasmids.fa.gz"
B = "NC_016823.1"  # plasmid B, 5,153 bp
E = "NC_016834.1"  # plasmid E, 8,953 bp
# (contig as the user writes it, start, end, name, strand); "chr" + name is an alias of the name
INTERVALS = [(B, 100, 900, "geneF", "+"), (f"chr{E}", 2000, 2600, ".", "-"), (B, 3000, 3300, "geneR", "-"),
             (E, 10, 400, "", "")]


@pytest.fixture(scope="module")
def genome() -> dict[str, str]:
    with pysam.FastaFile(str(GENOME)) as fa:
        return {n: fa.fetch(n) for n in fa.references}


def bed_text(intervals, header: bool = True) -> str:
    lines = ["track name=genes description='test genes'", f"browser position {B}:1-5000"] if header else []
    lines.append("# contig\tstart\tend\tname\tscore\tstrand")
    for contig, start, end, name, strand in intervals:
        lines.append("\t".join([contig, str(start), str(end)] + ([name or ".", "0", strand] if strand else [])))
    return "\n".join(lines) + "\n"


def write_bed(path: Path, kind: str, intervals=INTERVALS) -> Path:
    """``kind``: bed (with track/browser lines), gzip (plain gzip .bed.gz) or tabix (bgzip + .tbi)."""
    if kind == "bed":
        path.write_text(bed_text(intervals))
    elif kind == "gzip":
        path.write_bytes(gzip.compress(bed_text(intervals).encode()))
    else:  # tabix needs sorted records and reads only '#' headers
        plain = path.with_suffix("")
        plain.write_text(bed_text(sorted(intervals, key=lambda iv: (iv[0], iv[1])), header=False))
        pysam.tabix_compress(str(plain), str(path), force=True)
        pysam.tabix_index(str(path), preset="bed", force=True)
    return path


# ---- BED files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bed", "gzip", "tabix"])
def test_bed_formats_read_alike(tmp_path, kind):
    path = write_bed(tmp_path / ("r.bed" if kind == "bed" else "r.bed.gz"), kind)
    with pysam.FastaFile(str(GENOME)) as fa:
        lengths = dict(zip(fa.references, fa.lengths))
    got = read_bed(path, lengths)
    expected = [Interval(c, s, e, "" if n == "." else n, st or ".") for c, s, e, n, st in INTERVALS]
    key = (lambda iv: (iv.contig, iv.start)) if kind == "tabix" else (lambda iv: 0)
    assert [(iv, iv.name, iv.strand) for iv in sorted(got, key=key)] == \
        [(iv, iv.name, iv.strand) for iv in sorted(expected, key=key)]
    # features of one window: by the tabix index when there is one, by a scan otherwise; any alias
    window = [(iv.start, iv.end, iv.name) for iv in bed_features(path, f"chr{B}", 800, 3100)]
    assert sorted(window) == [(100, 900, "geneF"), (3000, 3300, "geneR")]


def test_bad_bed_lines_are_one_line_errors(tmp_path):
    with pysam.FastaFile(str(GENOME)) as fa:
        lengths = dict(zip(fa.references, fa.lengths))
    for line, expect in ((f"{B}\t10\t20\tx\t0\t*", "strand"), (f"{B}\t10\tten", "integers"),
                         ("chrZ\t0\t10", "not in"), (f"{B}\t5000\t5154", "past the end")):
        path = tmp_path / "bad.bed.gz"
        path.write_bytes(gzip.compress(f"{B}\t0\t5\n{line}\n".encode()))
        with pytest.raises(UserError, match=expect) as err:
            read_bed(path, lengths)
        assert "\n" not in str(err.value) and "bad.bed.gz:2" in str(err.value)


@pytest.mark.parametrize("kind", ["gzip", "tabix"])
def test_score_reads_bed_gz_like_bed(ck1, tmp_path, kind):
    tables = {}
    for k in ("bed", kind):
        bed = write_bed(tmp_path / (f"{k}.bed" if k == "bed" else f"{k}.bed.gz"), k)
        out = tmp_path / f"{k}.tsv"
        r = invoke("score", "--bed", bed, "--reference", GENOME, "--checkpoint", ck1, "-o", out, "--quiet")
        assert r.exit_code == 0, r.output
        tables[k] = pd.read_csv(out, sep="\t").sort_values(["chrom", "start"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(tables["bed"], tables[kind])
    # the BED name is the seq_id (an unnamed interval: its 1-based region); contigs as the BED wrote them
    assert set(tables["bed"]["seq_id"]) == {"geneF", "geneR", f"chr{E}:2001-2600(-)", f"{E}:11-400"}
    assert set(tables["bed"]["chrom"]) == {B, E, f"chr{E}"}


# ---- strand ----------------------------------------------------------------------------------------
def test_minus_strand_is_the_reverse_complement_on_plus_coordinates(ck1, genome, tmp_path):
    s, e = 1000, 1800
    bed = tmp_path / "strands.bed"
    bed.write_text(f"{B}\t{s}\t{e}\tfwd\t0\t+\n{B}\t{s}\t{e}\trev\t0\t-\n")
    rc = decode_tokens(reverse_complement(encode_ascii(genome[B][s:e])[0]))
    fa = tmp_path / "rc.fa"
    fa.write_text(f">rc\n{rc}\n")
    out, pp = tmp_path / "bed.parquet", tmp_path / "bed.pp.parquet"
    r = invoke("score", "--bed", bed, "--reference", GENOME, "--checkpoint", ck1, "-o", out, "--per-position", pp,
               "--quiet")
    assert r.exit_code == 0, r.output
    r = invoke("score", fa, "--checkpoint", ck1, "-o", tmp_path / "rc.parquet", "--per-position",
               tmp_path / "rc.pp.parquet", "--quiet")
    assert r.exit_code == 0, r.output
    rows = {x["seq_id"]: x for x in pq.read_table(str(out)).to_pylist()}
    plain = pq.read_table(str(tmp_path / "rc.parquet")).to_pylist()[0]
    assert (rows["rev"]["start"], rows["rev"]["end"], rows["rev"]["strand"]) == (s, e, "-")
    assert rows["fwd"]["strand"] == "+"
    assert abs(rows["rev"]["log_likelihood"] - plain["log_likelihood"]) < 1e-3
    assert abs(rows["fwd"]["log_likelihood"] - plain["log_likelihood"]) > 0.1  # the strand matters
    # per-position: base p of the reverse complement is + strand base e-1-p
    t = pq.read_table(str(pp)).to_pandas()
    rev = t[t.seq_id == "rev"].set_index("position")["logprob"]
    ref = pq.read_table(str(tmp_path / "rc.pp.parquet")).to_pandas().set_index("position")["logprob"]
    assert sorted(rev.index) == list(range(s, e - 1))
    assert np.allclose(rev.loc[e - 1 - ref.index].to_numpy(), ref.to_numpy(), atol=1e-4)

    # embed: the same vector as the reverse-complemented FASTA; chunk rows tile [s, e) mirrored
    r = invoke("embed", "--bed", bed, "--reference", GENOME, "--checkpoint", ck1, "-o", tmp_path / "e.parquet",
               "--chunks", "--quiet")
    assert r.exit_code == 0, r.output
    r = invoke("embed", fa, "--checkpoint", ck1, "-o", tmp_path / "erc.parquet", "--chunks", "--quiet")
    assert r.exit_code == 0, r.output
    emb = {x["seq_id"]: x for x in pq.read_table(str(tmp_path / "e.parquet")).to_pylist()}
    erc = pq.read_table(str(tmp_path / "erc.parquet")).to_pylist()[0]
    assert (emb["rev"]["start"], emb["rev"]["end"], emb["rev"]["strand"]) == (s, e, "-")
    assert np.allclose(emb["rev"]["embedding"], erc["embedding"], atol=1e-5)
    assert not np.allclose(emb["fwd"]["embedding"], erc["embedding"], atol=1e-3)
    bed_chunks, rc_chunks = chunk_rows(tmp_path / "e.chunks.parquet"), chunk_rows(tmp_path / "erc.chunks.parquet")
    m = np.array(bed_chunks["seq_id"]) == "rev"
    spans = sorted(zip(bed_chunks["start"][m].tolist(), bed_chunks["end"][m].tolist()))
    assert spans[0][0] == s and spans[-1][1] == e and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans == sorted((e - b, e - a) for a, b in zip(rc_chunks["start"].tolist(), rc_chunks["end"].tolist()))


# ---- regions -------------------------------------------------------------------------------------
def test_parse_region_is_one_based_inclusive():
    lengths = {"1": 5000, "MT": 300, "HLA-A*01:01": 100}
    assert parse_region("chr1:1,001-2,000", lengths) == Interval("chr1", 1000, 2000)
    assert parse_region("1:1-1", lengths) == Interval("1", 0, 1)  # one base
    assert parse_region("chrM:101", lengths) == Interval("chrM", 100, 300)  # to the contig's end
    assert parse_region("MT", lengths) == Interval("MT", 0, 300)
    assert parse_region("HLA-A*01:01", lengths) == Interval("HLA-A*01:01", 0, 100)  # a ':' in the name
    assert parse_region("HLA-A*01:01:11-20", lengths) == Interval("HLA-A*01:01", 10, 20)
    for text, expect in (("1:0-100", "1-based"), ("1:200-100", "START <= END"), ("1:10-5001", "past the end"),
                         ("2:1-10", "not in"), ("1:a-b", "CONTIG:START-END")):
        with pytest.raises(UserError, match=expect) as err:
            parse_region(text, lengths)
        assert "\n" not in str(err.value) and text in str(err.value)


@pytest.mark.parametrize("command", ["score", "embed"])
def test_region_equals_the_zero_based_bed_interval(ck1, tmp_path, command):
    bed = tmp_path / "one.bed"
    bed.write_text(f"{B}\t1000\t1800\n")
    out = {}
    for how, args in (("region", ["--region", f"chr{B}:1,001-1,800"]), ("bed", ["--bed", bed])):
        out[how] = tmp_path / f"{how}.parquet"
        r = invoke(command, *args, "--reference", GENOME, "--checkpoint", ck1, "-o", out[how], "--quiet")
        assert r.exit_code == 0, r.output
    reg, via_bed = (pq.read_table(str(out[k])).to_pylist()[0] for k in ("region", "bed"))
    assert (reg["chrom"], reg["start"], reg["end"], reg["strand"], reg["seq_id"]) == \
        (f"chr{B}", 1000, 1800, ".", f"chr{B}:1001-1800")
    assert (via_bed["start"], via_bed["end"], via_bed["length"]) == (reg["start"], reg["end"], reg["length"]) == \
        (1000, 1800, 800)
    if command == "score":
        assert reg["units_scored"] == via_bed["units_scored"]
        assert abs(reg["log_likelihood"] - via_bed["log_likelihood"]) < 1e-4
    else:
        assert np.allclose(reg["embedding"], via_bed["embedding"], atol=1e-6)


def test_region_errors_name_the_flag(ck1, tmp_path):
    ref = ["--reference", GENOME]
    for args, expect in ((["--region", f"{B}:0-100", *ref], "1-based"), (["--region", f"{B}:1-100"], "--reference"),
                         (["--region", f"{B}:1-100", "--bed", tmp_path / "x.bed", *ref], "not both")):
        r = invoke("score", *args, "--checkpoint", ck1, "--quiet")
        assert r.exit_code == 2 and expect in r.output and "Traceback" not in r.output, r.output


# ---- tables ------------------------------------------------------------------------------------
def test_tsv_is_plain_and_stdout_has_the_same_columns(ck1, tmp_path):
    bed = write_bed(tmp_path / "r.bed", "bed")
    out = tmp_path / "scores.tsv"
    args = ["score", "--bed", bed, "--reference", GENOME, "--checkpoint", ck1, "--quiet"]
    r = invoke(*args, "-o", out)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out, sep="\t")  # no options
    assert len(table) == len(INTERVALS) and table["log_likelihood"].dtype == np.float64
    assert table["start"].dtype == np.int64 and (table["units_scored"] == table["length"] - 1).all()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == list(table.columns) and [r["seq_id"] for r in rows] == list(table["seq_id"])
    r = invoke(*args)
    assert r.exit_code == 0 and r.stdout == out.read_text()
    side = json.loads(sidecar_path(out).read_text())
    assert side["table"] == "scores.tsv" and side["rows"] == len(INTERVALS)
    assert [c["name"] for c in side["columns"]] == list(table.columns)
    assert side["checkpoint"] and side["window"] == 8192 and "1-based" in side["conventions"]["region"]
    pq_out = tmp_path / "scores.parquet"
    assert invoke(*args, "-o", pq_out).exit_code == 0
    meta = read_metadata(pq_out)
    assert meta["window"] == 8192 and meta["conventions"] == side["conventions"]
    assert json.loads(sidecar_path(pq_out).read_text())["columns"] == side["columns"]


def test_tsv_cells_read_back_without_options(tmp_path):
    schema = pa.schema([pa.field("name", pa.string()), pa.field("x", pa.float64()), pa.field("n", pa.int64())])
    out = tmp_path / "t.tsv"
    w = TableWriter(out, schema, {"k": 1})
    for row in ({"name": "a\tb", "x": float("nan"), "n": 1}, {"name": None, "x": float("inf"), "n": None},
                {"name": "c", "x": -float("inf"), "n": 3}, {"name": "d", "x": 0.1, "n": 4}):
        w.write_row(**row)
    w.close()
    t = pd.read_csv(out, sep="\t")
    assert list(t["name"].fillna("<NA>")) == ["a b", "<NA>", "c", "d"]
    assert np.isnan(t["x"][0]) and t["x"][1] == np.inf and t["x"][2] == -np.inf and t["x"][3] == 0.1
    assert t["n"].isna().tolist() == [False, True, False, False]
    assert out.read_text().count("\n") == 5  # one header line, one line per row
