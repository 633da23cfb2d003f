"""The DNA adapter on real FASTA in ../shared/data: round trips, counts against Biopython, reverse
complement, soft masking, bgzip/faidx and BED regions, bad inputs."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pysam
import pytest
import torch
from Bio import SeqIO
from helpers import one_line_naming

from hnet_seq.errors import UserError
from hnet_seq.modalities import get_adapter
from hnet_seq.modalities.dna import decode_tokens, encode_ascii, reverse_complement


def write_fasta(path, text: str):
    path.write_text(text)
    return path


def test_dna_round_trip_keeps_case_and_maps_iupac_to_n(tmp_path):
    path = write_fasta(tmp_path / "x.fa", ">r1 desc\nACGTNacgtn\nRYkmAc\n>r2\nggggTTTT\n")
    dna = get_adapter("dna")
    recs = list(dna.read_records([path]))
    assert [r.id for r in recs] == ["r1", "r2"]
    assert dna.decode(dna.encode(recs[0]), recs[0].meta) == "ACGTNacgtnNNnnAc"
    assert dna.decode(dna.encode(recs[1]), recs[1].meta) == "ggggTTTT"
    assert recs[0].meta["mask"].tolist() == [c.islower() for c in "ACGTNacgtnRYkmAc"]


def test_dna_counts_and_sequences_match_biopython(shared_data):
    dna = get_adapter("dna")
    for path in sorted(p for p in (shared_data / "dna").iterdir() if p.name.endswith((".fasta", ".fna.gz"))):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            expected = {r.id: str(r.seq) for r in SeqIO.parse(f, "fasta")}
        got = {r.id: r for r in dna.read_records([path])}
        assert {k: len(r) for k, r in got.items()} == {k: len(s) for k, s in expected.items()}, path.name
        for rid, seq in expected.items():  # the round trip is the identity on every real record
            assert dna.decode(dna.encode(got[rid]), got[rid].meta) == seq


def test_reverse_complement(shared_data):
    tokens, _ = encode_ascii("AACGTNG")
    assert decode_tokens(reverse_complement(tokens)) == "CNACGTT"
    rec = next(get_adapter("dna").read_records([shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta"]))
    assert np.array_equal(reverse_complement(reverse_complement(rec.data)), rec.data)
    t = torch.from_numpy(rec.data.astype(np.int64))
    assert torch.equal(reverse_complement(reverse_complement(t)), t)
    assert torch.equal(reverse_complement(t), torch.from_numpy(reverse_complement(rec.data).astype(np.int64)))
    bio = str(SeqIO.read(_first_record(shared_data), "fasta").seq.reverse_complement())
    assert decode_tokens(reverse_complement(rec.data)) == bio


def _first_record(shared_data):
    import io
    text = (shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta").read_text()
    return io.StringIO(">" + text.split(">")[1])


def test_soft_mask_policy_downweights_lowercase(tmp_path):
    path = write_fasta(tmp_path / "m.fa", ">r\nACGTacgtAC\n")
    rec = next(get_adapter("dna").read_records([path]))
    assert (get_adapter("dna").example_arrays(rec)["weights"] == 1).all()
    w = get_adapter("dna", soft_mask="downweight", soft_mask_weight=0.1).example_arrays(rec)["weights"]
    assert np.allclose(w, [1, 1, 1, 1, .1, .1, .1, .1, 1, 1])


def test_bgzip_without_index_gets_one(tmp_path, shared_data, monkeypatch):
    plain = shutil.copy(shared_data / "dna" / "shigella_sonnei_53G_plasmids.fasta", tmp_path / "s.fa")
    pysam.tabix_compress(str(plain), str(tmp_path / "s.fa.gz"))
    dna = get_adapter("dna")
    rec = dna.fetch(tmp_path / "s.fa.gz", "NC_016833.1", 100, 160)
    assert (tmp_path / "s.fa.gz.fai").exists() and (tmp_path / "s.fa.gz.gzi").exists()
    whole = next(dna.read_records([plain]))
    assert np.array_equal(rec.data, whole.data[100:160])
    # A read-only folder (../shared/data): the index goes to the cache directory instead.
    monkeypatch.setenv("HNET_SEQ_CACHE", str(tmp_path / "cache"))
    kleb = shared_data / "dna" / "klebsiella_MGH78578.fna.gz"
    lengths = dna.contig_lengths(kleb)
    assert lengths["CP000647.1"] == 5315120 and len(lengths) == 6
    assert dna.decode(dna.fetch(kleb, "CP000648.1", 0, 12).data) == "ATGGATTTTGAA"


def test_plain_gzip_is_streamed_with_a_bgzip_hint(tmp_path):
    path = tmp_path / "p.fa.gz"
    path.write_bytes(gzip.compress(b">a\nACGTACGT\n"))
    with pytest.warns(UserWarning, match="bgzip"):
        recs = list(get_adapter("dna").read_records([path]))
    assert len(recs) == 1 and len(recs[0]) == 8
    with pytest.raises(UserError, match="bgzip") as err:
        get_adapter("dna").fetch(path, "a", 0, 4)
    one_line_naming(err, "p.fa.gz")


def test_bed_regions_with_contig_aliases(tmp_path):
    fa = write_fasta(tmp_path / "g.fa", ">1\nACGTACGTAC\n>MT\nGGGGCCCCAA\n")
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchr1\t2\t6\tname\nchrM\t0\t4\n")
    recs = list(get_adapter("dna").read_regions(fa, bed))
    # looked up through aliases, kept as the BED names them; the BED name is the record id
    assert [(r.id, r.meta["contig"], r.meta["ref_contig"], get_adapter("dna").decode(r.data)) for r in recs] == [
        ("name", "chr1", "1", "GTAC"), ("chrM:1-4", "chrM", "MT", "GGGG")]


@pytest.mark.parametrize("case", ["no_header", "empty_record", "only_n_region", "bed_past_end",
                                  "bed_missing_contig", "fetch_missing_contig", "bad_character"])
def test_bad_dna_inputs_raise_one_line_user_errors(tmp_path, case):
    dna = get_adapter("dna")
    fa = write_fasta(tmp_path / "g.fa", ">chr1\nACGTACGTAC\n>allN\nNNNNNNNN\n")
    bed = tmp_path / "r.bed"
    with pytest.raises(UserError) as err:
        if case == "no_header":
            list(dna.read_records([write_fasta(tmp_path / "nohdr.fa", "ACGT\nACGT\n")]))
        elif case == "empty_record":
            list(dna.read_records([write_fasta(tmp_path / "empty.fa", ">a\n>b\nACGT\n")]))
        elif case == "only_n_region":
            dna.fetch(fa, "allN")
        elif case == "bed_past_end":
            bed.write_text("1\t5\t11\n")
            list(dna.read_regions(fa, bed))
        elif case == "bed_missing_contig":
            bed.write_text("chr1\t0\t5\nchr2\t0\t5\n")
            list(dna.read_regions(fa, bed))
        elif case == "fetch_missing_contig":
            dna.fetch(fa, "chrX", 0, 5)
        else:
            list(dna.read_records([write_fasta(tmp_path / "bad.fa", ">a\nAC-GT\n")]))
    name = {"no_header": "nohdr.fa", "empty_record": "empty.fa", "bad_character": "bad.fa"}.get(case, "g.fa")
    one_line_naming(err, "r.bed" if case.startswith("bed") else name)
    if case == "bed_past_end":
        assert "r.bed:1" in str(err.value) and "length 10" in str(err.value)
    if case == "empty_record":
        assert "'a'" in str(err.value)
