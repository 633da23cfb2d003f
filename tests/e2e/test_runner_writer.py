"""The inference runner's overlapped stream and the background table writer, each against a plain
implementation: the same arrays, the same bytes, no file left by a failure."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def _plain_results(runner, items) -> list[dict]:
    """What the runner must report, computed the plain way: one synchronous pass, boolean masks."""
    from hnet_seq.nn.packing import Packing

    im, n = runner.im, len(items)
    packing = Packing.from_lengths([len(it) for it in items])
    with runner._capture() as store:
        hidden, routing = im.model.backbone(im.model.embeddings(torch.cat([it.inputs for it in items]).long()),
                                            packing)
        nll = im.adapter.loss(im.model.lm_head(hidden), torch.roll(torch.cat([it.targets for it in items]), -1, 0))
    own = torch.tensor([it.own_start for it in items])
    pos, seq = [packing.positions()], [packing.seq_idx[0].long()]
    for r in routing:
        pos.append(pos[-1][r.boundary_mask])
        seq.append(seq[-1][r.boundary_mask])
    owned = [p >= own[q] for p, q in zip(pos, seq)]

    def split(t, q):
        return [a.numpy() for a in torch.split(t, torch.bincount(q, minlength=n).tolist())]

    out = [dict(bnd_pos=[], bnd_prob=[], bnd_vec=[], cand_pos=[], cand_prob=[]) for _ in items]
    for s in range(1, len(pos)):
        k, r = owned[s], routing[s - 1]
        cols = {"bnd_pos": pos[s][k], "bnd_prob": r.boundary_prob[r.boundary_mask][k], "bnd_vec": store[s][k]}
        for name, t in cols.items():
            for o, a in zip(out, split(t, seq[s][k])):
                o[name].append(a)
        kc = owned[s - 1]
        for name, t in (("cand_pos", pos[s - 1][kc]), ("cand_prob", r.boundary_prob[kc])):
            for o, a in zip(out, split(t, seq[s - 1][kc])):
                o[name].append(a)
    s, k = runner.pool_level, owned[runner.pool_level]
    sums = torch.zeros(n, store[s].shape[-1]).index_add_(0, seq[s][k], store[s][k])
    last = store[s][torch.cumsum(torch.bincount(seq[s], minlength=n), 0) - 1]
    nll_at = torch.roll(nll, 1, 0)
    nll_at[packing.starts_mask()] = float("nan")
    for i, (o, a) in enumerate(zip(out, split(nll_at[owned[0]], seq[0][owned[0]]))):
        o.update(pool_sum=sums[i].numpy(), pool_count=int((seq[s][k] == i).sum()), pool_last=last[i].numpy(), nll=a)
    return out


@pytest.mark.parametrize("pool_level", [0, 2])
def test_runner_stream_equals_plain_pass(ck2, small_fasta, pool_level):
    """Host-side splitting and device-side pooling without synchronisation give the plain pass's arrays, exactly."""
    from hnet_seq.inference.model import load
    from hnet_seq.inference.runner import Runner
    from hnet_seq.inference.tiling import WorkItem, batches_by_budget, plan_tiles
    from hnet_seq.modalities import get_adapter

    im = load(ck2, device="cpu")
    items = []
    for rec in get_adapter("dna").read_records([small_fasta[0]]):
        x = torch.from_numpy(rec.data)
        items += [WorkItem(x[t.start:t.end], t.own_start - t.start, x[t.start:t.end].long())
                  for t in plan_tiles(len(x), 1500, 300)]
    runner = Runner(im, chunk_vectors=True, probs=True, pool_level=pool_level, scores=True)
    got = [res for _, results in runner.stream(batches_by_budget(items, 3200)) for res in results]
    want = [o for group in batches_by_budget(items, 3200) for o in _plain_results(runner, group)]
    assert runner.batches > 2 and len(got) == len(want) == len(items)
    for res, o in zip(got, want):
        for name, value in o.items():
            a = getattr(res, name)
            for x, y in (zip(a, value) if isinstance(value, list) else [(a, value)]):
                assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True), name


def test_runner_launches_next_batch_before_handing_over(ck1):
    """stream() queues group i+1 before the caller sees group i's results (what overlaps GPU and host)."""
    from hnet_seq.inference.model import load
    from hnet_seq.inference.runner import Runner
    from hnet_seq.inference.tiling import WorkItem

    runner = Runner(load(ck1, device="cpu"), pool_level=0)
    launched = []
    launch = runner._launch
    runner._launch = lambda group: launched.append(group[0].tag) or launch(group)
    groups = [[WorkItem(torch.randint(0, 4, (50,), dtype=torch.uint8), 0, None, i)] for i in range(4)]
    seen = [(group[0].tag, list(launched)) for group, _ in runner.stream(groups)]
    assert seen == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2, 3]), (3, [0, 1, 2, 3])]


@pytest.mark.parametrize("fmt", ["parquet", "tsv"])
def test_background_writer_is_byte_identical(tmp_path, fmt):
    import pyarrow as pa

    from hnet_seq.inference.columns import vector_field
    from hnet_seq.inference.tables import TableWriter

    schema = pa.schema([pa.field("seq_id", pa.string()), pa.field("start", pa.int64()), vector_field("v", 3)])
    paths = []
    for background in (False, True):
        rng = np.random.default_rng(0)
        w = TableWriter(tmp_path / f"{background}.{fmt}", schema, {"k": 1}, fmt, rows_per_batch=50,
                        background=background)
        for i in range(7):
            k = 10 + 11 * i
            w.write_columns({"seq_id": [f"s{i}"] * k, "start": np.arange(k), "v": rng.random((k, 3), np.float32)})
            w.write_row(seq_id="x", start=i, v=np.ones(3, np.float32))
        paths.append(w.close())
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_background_writer_failure_leaves_no_file(tmp_path):
    import pyarrow as pa

    from hnet_seq.inference.outputs import Outputs
    from hnet_seq.inference.tables import TableWriter

    with pytest.raises(Exception):
        with Outputs() as outs:
            w = outs.add(TableWriter(tmp_path / "t.parquet", pa.schema([pa.field("a", pa.int64())]), rows_per_batch=2))
            for v in (1, 2, "not an int", 4, 5, 6):
                w.write_row(a=v)
    assert list(tmp_path.iterdir()) == []
