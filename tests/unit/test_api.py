"""The in-memory notebook API (issue 17 acceptance 2) against the file-writing commands.

Tiny random checkpoints (as tests/e2e/conftest.py) on real plasmid sequence shipped
in hnet_seq/resources; windows are small so that tiling is exercised.
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import hnet_seq
from hnet_seq.errors import UserError
from hnet_seq.inference import load
from hnet_seq.modalities.dna import COMPLEMENT
from helpers import GENOME, make_checkpoint
from helpers import invoke


@pytest.fixture(scope="module")
def seqs():
    import pysam

    with pysam.FastxFile(str(GENOME)) as f:
        records = [(r.name, r.sequence) for r in f]
    return {records[0][0]: records[0][1][30000:31800], records[1][0]: records[1][1][:1100].lower()}


@pytest.fixture(scope="module")
def fasta(tmp_path_factory, seqs):
    path = tmp_path_factory.mktemp("fa") / "two.fa"
    path.write_text("".join(f">{n}\n{s}\n" for n, s in seqs.items()))
    return path


@pytest.fixture(scope="module")
def ck2(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "dna2", "tiny_2stage.json", seed=3)


@pytest.mark.parametrize("rc", [False, True])
def test_embed_arrays_equal_the_parquet_embed_writes(tmp_path, ck2, fasta, seqs, rc):
    out = tmp_path / "emb.parquet"
    args = ["embed", fasta, "--checkpoint", ck2, "-o", out, "--chunks", "--window", "700", "--overlap", "200",
            "--device", "cpu"] + (["--rc-average"] if rc else [])
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    files = pq.read_table(out).to_pydict()
    rows = pq.read_table(tmp_path / "emb.chunks.parquet").to_pydict()
    got = hnet_seq.embed(load(ck2, device="cpu"), seqs, window=700, overlap=200, rc_average=rc)
    assert [e.id for e in got] == files["seq_id"] == list(seqs)
    for e, vec in zip(got, files["embedding"]):
        np.testing.assert_array_equal(e.vector, np.asarray(vec, np.float32))
        for s in (1, 2):
            m = [i for i, (q, st) in enumerate(zip(rows["seq_id"], rows["stage"])) if q == e.id and st == s]
            c = e.chunks[s]
            assert len(m) == len(c.start) > 3
            np.testing.assert_array_equal(c.start, np.array(rows["start"])[m])
            np.testing.assert_array_equal(c.end, np.array(rows["end"])[m])
            np.testing.assert_array_equal(c.boundary_prob, np.array(rows["boundary_prob"], np.float32)[m])
            np.testing.assert_array_equal(c.vectors, np.array([rows["vector"][i] for i in m], np.float32))


def test_distributions_sum_to_one_and_agree_with_score_totals(tmp_path, ck2, fasta, seqs):
    out = tmp_path / "scores.tsv"
    result = invoke("score", fasta, "--checkpoint", ck2, "-o", out, "--window", "700", "--overlap", "200", "-q")
    assert result.exit_code == 0, result.output
    header, *lines = out.read_text().splitlines()
    cols = header.split("\t")
    totals = {r[0]: float(r[cols.index("log_likelihood")]) for r in (x.split("\t") for x in lines)}
    got = hnet_seq.score(ck2, seqs, distributions=True, window=700, overlap=200)
    for sc, (name, seq) in zip(got, seqs.items()):
        assert sc.symbols == list("ACGTN") and sc.distribution.shape == (len(seq), 5)
        scored = ~np.isnan(sc.logprob)
        assert not scored[0] and scored[1:].all()
        np.testing.assert_allclose(sc.distribution[scored].sum(1), 1.0, atol=1e-5)
        tokens = np.array(["ACGTN".index(b) for b in seq.upper()])
        observed = np.log(sc.distribution[np.arange(len(seq)), tokens])
        np.testing.assert_allclose(observed[scored], sc.logprob[scored], atol=1e-4)
        assert sc.log_likelihood == pytest.approx(totals[name], rel=1e-5)


def test_rc_averaged_distributions_are_strand_symmetric(ck2, seqs):
    seq = next(iter(seqs.values()))[:400].upper()
    rc = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    fwd, rev = hnet_seq.score(ck2, [seq, rc], distributions=True, rc_average=True)
    np.testing.assert_allclose(fwd.distribution, rev.distribution[::-1][:, COMPLEMENT[:5]], atol=1e-5)
    np.testing.assert_allclose(fwd.distribution.sum(1), 1.0, atol=1e-5)  # ends too: one strand there
    plain = hnet_seq.score(ck2, seq, distributions=True)[0]
    assert not np.allclose(plain.distribution[1:], fwd.distribution[1:], atol=1e-3)


def test_chosen_layers_have_the_documented_shapes(ck2, seqs):
    im = load(ck2, device="cpu")
    seq = next(iter(seqs.values()))[:900]
    names = hnet_seq.layer_names(im)
    chosen = ["embeddings", "backbone.encoder.layers.1", "backbone.main_network.encoder",
              "backbone.main_network.main_network.main_network.layers.0", "backbone.decoder"]
    assert set(chosen) <= set(names)
    sc = hnet_seq.score(im, seq, hidden=chosen)[0]
    chunks = hnet_seq.embed(im, seq)[0].chunks
    n_level = [len(seq), len(chunks[1].start), len(chunks[2].start)]
    assert n_level[0] > n_level[1] > n_level[2] > 1
    d = im.config.d_model
    for name, level in zip(chosen, [0, 0, 1, 2, 0]):
        assert sc.hidden[name].shape == (n_level[level], d[level]), name


def test_bad_requests_are_user_errors(ck2):
    with pytest.raises(UserError, match="no such layer"):
        hnet_seq.score(ck2, "ACGTACGT", hidden=["backbone.nope"])
    with pytest.raises(UserError, match="rc_average"):
        hnet_seq.score(ck2, "ACGTACGT", rc_average=True)
    with pytest.raises(UserError, match="invalid character"):
        hnet_seq.embed(ck2, "ACGXT")


def test_a_from_pretrained_model_drives_the_api(ck2, seqs):
    seq = next(iter(seqs.values()))[:300]
    model = hnet_seq.HNetLM.from_pretrained(ck2)
    assert model.modality_info["name"] == "dna"
    np.testing.assert_array_equal(hnet_seq.embed(model, seq)[0].vector, hnet_seq.embed(ck2, seq)[0].vector)
