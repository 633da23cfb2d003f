"""Quality experiments: evaluation records carry the compute and data seen, a spread held-out sample,
concurrent runs' results merge, and the run figure."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hnet_seq.config import ConfigError
from hnet_seq.train import load_run_config
from hnet_seq.train.metrics import read_metrics

from helpers import micro_config

def test_eval_records_carry_running_units_and_flops(tmp_path):
    from hnet_seq.flops import training_flops
    from hnet_seq.train import train

    cfg = load_run_config(str(micro_config(tmp_path, steps=4)), ["checkpoint.every=0"])
    train(cfg, tmp_path / "run", quiet=True)
    rows = read_metrics(tmp_path / "run")
    steps = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4]
    assert evals[0]["units_seen"] == 0 and evals[0]["flops_seen"] == 0
    assert evals[-1]["units_seen"] == pytest.approx(sum(r["units"] for r in steps))
    assert evals[-1]["flops_seen"] == steps[-1]["flops_seen"] > 0  # counted on CPU too
    # a step of the 1-stage micro model costs at least its outer stage at full length
    outer_only = training_flops(cfg.model_config, [[512], [1]])
    assert steps[0]["flops_seen"] >= 0.9 * outer_only


def test_the_trainer_and_its_model_are_freed_when_train_returns(tmp_path):
    """Nothing of the run (the trainer, its model) outlives train(): under torchrun a DDP model
    freed only at interpreter teardown, after the process group, can abort a gloo rank at exit."""
    import gc

    from hnet_seq.train import train
    from hnet_seq.train.loop import _Trainer

    cfg = load_run_config(str(micro_config(tmp_path, steps=2)), ["checkpoint.every=0"])
    gc.disable()  # only train() itself may collect: an automatic collection here would hide a leak
    try:
        train(cfg, tmp_path / "run", quiet=True)
        alive = [o for o in gc.get_objects() if type(o) is _Trainer]
    finally:
        gc.enable()
    assert alive == []


def test_eval_sample_spread_takes_batches_over_the_whole_heldout_set(tmp_path):
    from hnet_seq.modalities import get_adapter
    from hnet_seq.train.data import TrainData

    path = micro_config(tmp_path)
    adapter = get_adapter("dna")
    first = TrainData(load_run_config(str(path)), adapter)
    spread = TrainData(load_run_config(str(path), ["data.eval_sample=spread"]), adapter)
    full = TrainData(load_run_config(str(path), ["data.eval_tokens=100000"]), adapter)
    starts = [b["spans"][0][0] for b in full.eval_batches]
    assert len(starts) > 2 and len(first.eval_batches) == len(spread.eval_batches) == 1
    assert first.eval_batches[0]["spans"][0][0] == starts[0]
    cfg2 = ["data.eval_sample=spread", "data.eval_tokens=1024"]  # 2 batches: the first and the last
    two = TrainData(load_run_config(str(path), cfg2), adapter)
    assert [b["spans"][0][0] for b in two.eval_batches] == [starts[0], starts[-1]]
    with pytest.raises(ConfigError, match="data.eval_sample"):
        load_run_config(str(path), ["data.eval_sample=random"])


def test_quality_results_of_concurrent_runs_merge(monkeypatch):
    """``bench/_quality.py --merge-from``: runs of disjoint models made at the same time join into
    one results.json (models and per-language rows merged, the longest wall time, the first start)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "bench"))
    from _merge import merge_results

    def part(model, bits, wall, started, scale="gpu"):
        return {"experiment": "udhr", "scale": scale, "smoke": False, "commands": [f"run {model}"],
                "wall_s": wall, "started": started, "device": "H100", "models": {model: {"params": 1}},
                "languages": {"eng": {"script": "LATIN", f"bits_{model}": bits}}}

    merged = merge_results([part("hnet", 2.0, 300.0, "2026-11-23 14:23:25"),
                            part("mamba2", 1.9, 250.0, "2026-11-23 14:23:24")])
    assert list(merged["models"]) == ["hnet", "mamba2"]
    assert merged["languages"]["eng"] == {"script": "LATIN", "bits_hnet": 2.0, "bits_mamba2": 1.9}
    assert merged["commands"] == ["run hnet", "run mamba2"]
    assert (merged["wall_s"], merged["started"]) == (300.0, "2026-11-23 14:23:24")
    with pytest.raises(SystemExit, match="different experiments or scales"):
        merge_results([part("hnet", 2.0, 1.0, "x"), part("mamba2", 1.9, 1.0, "x", scale="cpu")])


def test_quality_results_of_a_rerun_replace_the_earlier_run_whole_and_keep_it(monkeypatch):
    """A model or diagnostic run again in a later launch is taken whole from the later part (its
    losses and chunk counts stay together); the runs it replaces are kept, oldest first, as repeats."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "bench"))
    from _merge import merge_results

    def part(runs, started, chunk_rows):
        return {"experiment": "human", "scale": "gpu", "smoke": False, "commands": [f"launch {started}"],
                "wall_s": 1.0, "started": started, "device": "H200",
                "models": {m: {"bits": bits, "chunks": dict.fromkeys(chunk_rows, 1)} for m, bits in runs.items()},
                "diagnostics": {"warmup-5x": {"bits": min(runs.values())}}}

    first = part({"mamba2": 1.4, "hnet": 1.51}, "a", ["cpg"])
    second = part({"hnet": 1.52}, "b", ["cpg", "low complexity"])
    third = part({"hnet": 1.53}, "c", ["cpg", "low complexity"])
    merged = merge_results([first, second, third])
    assert list(merged["models"]) == ["mamba2", "hnet"]
    assert merged["models"]["hnet"] == third["models"]["hnet"]
    assert merged["models"]["mamba2"] == first["models"]["mamba2"]
    assert [r["bits"] for r in merged["repeats"]["models"]["hnet"]] == [1.51, 1.52]
    assert merged["repeats"]["models"]["hnet"][0]["chunks"] == {"cpg": 1}
    assert [r["bits"] for r in merged["repeats"]["diagnostics"]["warmup-5x"]] == [1.4, 1.52]
    again = merge_results([merge_results([first, second]), third])
    assert again["repeats"] == merged["repeats"]
    disjoint = [part({"hnet": 2.0}, "a", []), part({"mamba2": 1.9}, "b", [])]
    del disjoint[1]["diagnostics"]
    assert "repeats" not in merge_results(disjoint)


def test_plot_is_one_figure_with_separate_units_stage_numbers_and_resume_marks(tmp_path):
    from hnet_seq.cli.plot import run_figure

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"kind": "start", "step": 0, "unit": "byte", "target_compression": [3.0, 2.0]}]
    for step in range(1, 31):
        if step == 15:
            rows.append({"kind": "resume", "step": 14, "unit": "byte", "target_compression": [3.0, 2.0]})
        rows.append({"kind": "train", "step": step, "loss": 3.0 - step / 20, "nll": 2.9 - step / 20,
                     "bits_per_unit": (2.9 - step / 20) / math.log(2), "compression": [3.1, 1.9], "tokens_per_s": 1e3})
    rows += [{"kind": "eval", "step": s, "bits_per_unit": 4.0 - s / 30, "compression": [3.0, 2.1]} for s in (0, 30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = run_figure(run)
    nats, bits, comp, speed = fig.axes[:4]
    assert nats.get_ylabel() == "nats" and bits.get_ylabel() == "bits per byte"
    labels = [t.get_text() for t in comp.get_legend().get_texts()]
    assert "stage 1" in labels and "stage 2 target 2" in labels and "stage 0" not in labels
    for ax in (nats, bits, comp, speed):
        resumed = [line for line in ax.get_lines() if line.get_label() == "resumed"]
        assert len(resumed) == 1 and list(resumed[0].get_xdata()) == [14, 14]
