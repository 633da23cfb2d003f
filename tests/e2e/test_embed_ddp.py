"""``torchrun ... hnet-seq embed`` (gloo on CPU): the ranks' rows merge into one output in input order,
equal to a single process's."""
from __future__ import annotations

import subprocess

import numpy as np
import pyarrow.parquet as pq

from helpers import ROOT


def test_torchrun_two_ranks_merge_in_input_order(ck2, small_fasta, tmp_path):
    """`torchrun --nproc-per-node 2 ... embed` (gloo on CPU): one merged output, rows in input order."""
    import os
    import sys

    from hnet_seq.inference.embed import embed

    fasta, lengths = small_fasta
    five = tmp_path / "five.fa"  # 5 records, so that the ranks get 3 and 2 of them
    seqs = [r.sequence for r in __import__("pysam").FastxFile(str(fasta))]
    five.write_text("".join(f">rec{i}\n{seqs[i % 3][i * 100:i * 100 + 500 + 50 * i]}\n" for i in range(5)))
    multi = tmp_path / "multi.parquet"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           "29533", "-m", "hnet_seq.cli", "embed", str(five), "--checkpoint", str(ck2), "-o",
                           str(multi), "--chunks", "--window", "300", "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded 5 sequences" in proc.stderr
    single = tmp_path / "single.parquet"
    embed(ck2, [five], single, chunks=True, window=300, progress=False)
    for suffix in ("", ".chunks"):
        a = pq.read_table(str(tmp_path / f"multi{suffix}.parquet"))
        b = pq.read_table(str(tmp_path / f"single{suffix}.parquet"))
        assert a.column_names == b.column_names and a.num_rows == b.num_rows
        for col in a.column_names:
            x, y = a.column(col).to_pylist(), b.column(col).to_pylist()
            if col in ("embedding", "vector", "boundary_prob"):
                assert max(np.abs(np.asarray(u) - np.asarray(v)).max() for u, v in zip(x, y)) < 1e-4
            else:
                assert x == y, col
    assert sorted(p.name for p in tmp_path.iterdir() if "part" in p.name) == []
