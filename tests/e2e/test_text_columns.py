"""Text outputs are named for text (issue 17): ``doc`` (the record: a file, or a JSONL line's
id) and ``source`` (its file) instead of ``seq_id``/``chrom``, and the language (JSONL ``lang``,
or the file name's code) as its own column in every table.  Real UDHR text from the package."""
from __future__ import annotations

import gzip
import json
from importlib.resources import files

import pyarrow.parquet as pq
import pytest

from helpers import make_checkpoint
from helpers import free_port, invoke


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    udhr = files("hnet_seq.resources") / "udhr"
    eng, fra = (gzip.decompress((udhr / f"{c}.txt.gz").read_bytes()).decode()[:600] for c in ("eng", "fra"))
    jsonl = tmp / "docs.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "text": eng, "lang": "en"}) + "\n"
                     + json.dumps({"id": "b", "text": fra, "lang": "fr"}) + "\n")
    yor = tmp / "yor.txt"
    yor.write_bytes(gzip.decompress((udhr / "yor.txt.gz").read_bytes())[:500])
    return jsonl, yor


@pytest.fixture(scope="module")
def ckb(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "bytes", "tiny_1stage.json", "bytes")


def test_score_tables_have_doc_source_and_lang(tmp_path, ckb, texts):
    jsonl, yor = texts
    out, pos = tmp_path / "s.parquet", tmp_path / "p.parquet"
    result = invoke("score", jsonl, yor, "--checkpoint", ckb, "-o", out, "--per-position", pos, "-q")
    assert result.exit_code == 0, result.output
    t = pq.read_table(out).to_pydict()
    assert "chrom" not in t and "seq_id" not in t
    assert t["doc"] == ["a", "b", str(yor)] and t["source"] == [str(jsonl), str(jsonl), str(yor)]
    assert t["lang"] == ["en", "fr", "yor"]
    p = pq.read_table(pos).to_pydict()
    assert set(zip(p["doc"], p["lang"])) == {("a", "en"), ("b", "fr"), (str(yor), "yor")}
    stdout = invoke("score", jsonl, "--checkpoint", ckb, "-q").stdout.splitlines()
    header = stdout[0].split("\t")
    assert header[:2] == ["doc", "source"] and header[-1] == "lang"
    assert stdout[1].split("\t")[-1] == "en"


def test_embed_tables_have_doc_source_and_lang(tmp_path, ckb, texts):
    jsonl, _ = texts
    out = tmp_path / "e.parquet"
    result = invoke("embed", jsonl, "--checkpoint", ckb, "-o", out, "--chunks", "-q")
    assert result.exit_code == 0, result.output
    seqs = pq.read_table(out).to_pydict()
    assert seqs["doc"] == ["a", "b"] and seqs["lang"] == ["en", "fr"] and "chrom" not in seqs
    chunks = pq.read_table(tmp_path / "e.chunks.parquet").to_pydict()
    assert set(chunks["lang"]) == {"en", "fr"} and set(chunks["source"]) == {str(jsonl)}
    assert all((d == "a") == (lang == "en") for d, lang in zip(chunks["doc"], chunks["lang"]))


def test_text_columns_survive_the_torchrun_merge(tmp_path, ckb, texts):
    import os
    import subprocess
    import sys

    from helpers import ROOT

    jsonl, yor = texts
    multi, multi_pp = tmp_path / "m.parquet", tmp_path / "mpp.parquet"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(free_port()), "-m", "hnet_seq.cli", "score", str(jsonl), str(yor), "--checkpoint",
                           str(ckb), "--device", "cpu", "-o", str(multi), "--per-position", str(multi_pp), "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, "\n".join(l for l in proc.stderr.splitlines() if "rank0" in l)[-3000:]
    single, single_pp = tmp_path / "s.parquet", tmp_path / "spp.parquet"
    assert invoke("score", jsonl, yor, "--checkpoint", ckb, "--device", "cpu", "-o", single,
                  "--per-position", single_pp, "-q").exit_code == 0
    for a, b in ((multi, single), (multi_pp, single_pp)):
        ta, tb = pq.read_table(a), pq.read_table(b)
        assert ta.column_names == tb.column_names and "lang" in ta.column_names
        for col in ("doc", "source", "lang"):
            assert ta.column(col).to_pylist() == tb.column(col).to_pylist(), col
