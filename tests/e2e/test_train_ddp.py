"""Data parallelism on CPU (gloo): 2 ranks with different token counts == 1 process on the union."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hnet_seq.train.metrics import read_metrics
from helpers import MICRO_MODEL, free_port, micro_config

LENGTHS = [[150, 97], [40, 61, 33]]  # rank 0 gets 247 positions, rank 1 134: unequal on purpose


def _batch(lengths):
    g = torch.Generator().manual_seed(sum(lengths))
    tokens = torch.randint(0, 4, (sum(lengths),), generator=g)
    return tokens


def _setup(seed=0):
    from hnet_seq import HNetLM
    from hnet_seq.config import config_from_dict
    from hnet_seq.train.config import OptimSection
    from hnet_seq.train.optim import build_optimizer

    cfg = config_from_dict({**MICRO_MODEL, "target_compression": [3.0]})
    torch.manual_seed(seed)
    model = HNetLM(cfg)
    model.init_weights()
    for m in model.modules():  # routing that selects a mix of boundaries from the start
        if hasattr(m, "q_proj_layer"):
            torch.nn.init.normal_(m.q_proj_layer.weight, std=0.3)
            torch.nn.init.normal_(m.k_proj_layer.weight, std=0.3)
    return cfg, model, lambda wrapped: build_optimizer(wrapped, cfg, OptimSection(lr=1e-2, weight_decay=0.1), [3.0])


def _nll_and_weights(logits, tokens, lengths):
    """Position t predicts token t+1; the last position of every sequence predicts nothing (weight 0)."""
    nll = torch.nn.functional.cross_entropy(logits[:-1], tokens[1:], reduction="none")
    nll = torch.cat([nll, nll.new_zeros(1)])
    weights = torch.ones_like(nll)
    weights[torch.tensor(lengths).cumsum(0) - 1] = 0
    return nll, weights


def _two_steps(model, optimizer, objective, lengths, tokens, reduce=None, world=1):
    """Two optimizer steps on the same batch; (losses, ratio losses, first-step grads by name)."""
    from hnet_seq import Packing

    losses, ratios, grads = [], [], {}
    for step in range(2):
        out = model(tokens, Packing.from_lengths(lengths))
        nll, weights = _nll_and_weights(out.logits, tokens, lengths)
        res = objective(nll, weights, out.routing, reduce, world) if reduce else objective(nll, weights, out.routing)
        res.loss.backward()
        if step == 0:
            inner = getattr(model, "module", model)
            grads = {n: p.grad.detach().clone() for n, p in inner.named_parameters()}
        optimizer.step()
        optimizer.zero_grad()
        losses.append(res.total)
        ratios.append(res.ratio_losses[0])
    return losses, ratios, grads


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from hnet_seq.train.objective import Objective
    from hnet_seq.runtime.distributed import init_distributed, make_reducer, shutdown
    from hnet_seq.train.parallel import wrap_model

    info = init_distributed("cpu")
    try:
        _, model, make_opt = _setup()
        wrapped = wrap_model(model, "ddp", info)
        opt = make_opt(wrapped)
        result = _two_steps(wrapped, opt, Objective([3.0], 0.03), LENGTHS[rank], _batch(LENGTHS[rank]),
                            make_reducer(info), world)
        if rank == 0:
            torch.save(result, Path(out_dir) / "ddp.pt")
    finally:
        shutdown()


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_process_on_the_global_batch(tmp_path):
    port = free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    ddp_losses, ddp_ratios, ddp_grads = torch.load(tmp_path / "ddp.pt", weights_only=True)

    from hnet_seq.train.objective import Objective

    torch.set_num_threads(1)
    _, model, make_opt = _setup()
    tokens = torch.cat([_batch(lengths) for lengths in LENGTHS])  # both ranks' sequences, packed
    lengths = [n for lens in LENGTHS for n in lens]
    losses, ratios, grads = _two_steps(model, make_opt(model), Objective([3.0], 0.03), lengths, tokens)
    assert ddp_losses == pytest.approx(losses, rel=1e-5, abs=1e-6)
    assert ddp_ratios == pytest.approx(ratios, rel=1e-5, abs=1e-6)
    assert grads.keys() == ddp_grads.keys()
    for name in grads:
        torch.testing.assert_close(ddp_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


def _torchrun(cfg, run, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "hnet_seq.cli", "train", "--config", str(cfg),
                           "--out", str(run), *extra], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_torchrun_ddp_and_fsdp_then_resume_on_one_rank(tmp_path):
    """The whole loop under torchrun (gloo, 2 ranks): DDP and FSDP2 log the same losses; a
    2-rank checkpoint resumes in one process (a changed world size)."""
    cfg = micro_config(tmp_path, steps=4, checkpoint={"every": 2})
    runs = {}
    for parallel in ("ddp", "fsdp"):
        run = runs[parallel] = tmp_path / parallel
        proc = _torchrun(cfg, run, "--set", f"train.parallel={parallel}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stderr.count("done: 4 steps") == 1  # only rank 0 reports
        state = torch.load(run / "checkpoints" / "latest" / "train_state.pt", weights_only=True)
        assert state["world_size"] == 2 and len(state["data"]) == 2 and len(state["rng"]) == 2
    ddp, fsdp = ([r for r in read_metrics(runs[p]) if r["kind"] == "train"] for p in ("ddp", "fsdp"))
    assert [r["step"] for r in ddp] == [1, 2, 3, 4]
    assert [r["loss"] for r in fsdp] == pytest.approx([r["loss"] for r in ddp], rel=1e-6)
    assert all(r["positions"] > 512 for r in ddp)  # two ranks' batches in every step
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run([sys.executable, "-m", "hnet_seq.cli", "train", "--out", str(runs["fsdp"]), "--resume",
                              "--steps", "6"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    recs = [r for r in read_metrics(runs["fsdp"]) if r["kind"] == "train"]
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6] and recs[:4] == fsdp
