"""``hnet-seq score`` under torchrun (gloo on CPU; nccl on 2 GPUs): the ranks share the tiles, and the
table is the one a single process writes."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from helpers import ROOT, GENOME, make_checkpoint
from helpers import free_port


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_score_two_ranks_equals_one_process(tmp_path, device):
    import pysam
    import torch

    if device == "cuda" and torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices (nccl)")
    from hnet_seq.inference.score import score

    ck = make_checkpoint(tmp_path / "ck", "tiny_2stage.json")
    with pysam.FastxFile(str(GENOME)) as f:
        seqs = [r.sequence for r in f]
    # window 1000, overlap 200: tiles 0-6 are the 5,153 bp plasmid's (both ranks share it), 7-8 the
    # 1,500 bp record's, 9 the 600 bp record's (rank 1 alone: rank 0 has no row for it)
    fasta = tmp_path / "three.fa"
    fasta.write_text(f">long\n{seqs[1]}\n>mid\n{seqs[0][20000:21500]}\n>short\n{seqs[2][:600]}\n")
    args = [str(fasta), "--checkpoint", str(ck), "--window", "1000", "--overlap", "200", "--device", device,
            "--precision", "float32"]
    multi, multi_pp = tmp_path / "multi.tsv", tmp_path / "multi_pp.parquet"
    # a progress line at every batch: rank 0's count shows how much of the work it did itself
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HNET_SEQ_PROGRESS_SECONDS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(free_port()), "-m", "hnet_seq.cli", "score", *args, "-o", str(multi),
                           "--per-position", str(multi_pp)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("scored ") == 1  # rank 0 reports, once
    total = len(seqs[1]) + 1500 + 600
    done = [int(m.replace(",", "")) for m in re.findall(r"^score: ([\d,]+) bases", proc.stderr, re.M)]
    assert done and total / 3 < done[-1] < 2 * total / 3  # rank 0 scored about half: tiles 0, 2, 4, 6, 8 of 10
    single, single_pp = tmp_path / "single.tsv", tmp_path / "single_pp.parquet"
    score(ck, [fasta], single, per_position=single_pp, window=1000, overlap=200, device=device,
          precision="float32", progress=False)

    a, b = pd.read_csv(multi, sep="\t", comment="#"), pd.read_csv(single, sep="\t", comment="#")
    assert list(a.columns) == list(b.columns) and list(a["seq_id"]) == ["long", "mid", "short"]
    for col in ("seq_id", "chrom", "start", "end", "length", "units_scored"):
        assert a[col].tolist() == b[col].tolist(), col
    np.testing.assert_allclose(a["log_likelihood"], b["log_likelihood"], rtol=1e-6)
    np.testing.assert_allclose(a["bits_per_unit"], b["bits_per_unit"], rtol=1e-6)
    pa_, pb = pq.read_table(str(multi_pp)), pq.read_table(str(single_pp))
    assert pa_.column_names == pb.column_names
    for col in ("seq_id", "chrom", "position"):
        assert pa_.column(col).to_pylist() == pb.column(col).to_pylist(), col
    np.testing.assert_allclose(pa_.column("logprob").to_numpy(), pb.column("logprob").to_numpy(), atol=1e-4)
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []
