"""``hnet-seq train`` on CPU: objective, optimiser, config errors, failures, exact resume, checkpoints."""
from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch

from hnet_seq.config import ConfigError
from hnet_seq.nn.packing import Packing
from hnet_seq.nn.routing import RoutingOutput
from hnet_seq.train import Objective, load_run_config, ratio_loss, ratio_loss_value
from hnet_seq.train.config import list_presets, presets_dir
from hnet_seq.train.metrics import read_metrics
from hnet_seq.train.optim import LRSchedule, auto_lr_multipliers, param_groups

from helpers import cli_popen, invoke, micro_config, train_steps, wait_for

# ---- objective ---------------------------------------------------------------------------------


def test_ratio_loss_formula_on_hand_made_inputs():
    # N = 3; F = 2/6 selected; G = mean prob = 2.4/6 = 0.4
    prob = torch.tensor([1.0, 0.2, 0.1, 0.6, 0.3, 0.2], requires_grad=True)
    mask = prob > 0.5
    F, G, N = 2 / 6, 0.4, 3.0
    expected = N / (N - 1) * ((N - 1) * F * G + (1 - F) * (1 - G))
    assert expected == pytest.approx(1.5 * (2 * (1 / 3) * 0.4 + (2 / 3) * 0.6))
    assert ratio_loss(prob, mask, N).item() == pytest.approx(expected, abs=1e-6)
    # minimum 1 at F = G = 1/N; a collapsed router (F = G = 1, every position a chunk) costs N
    assert ratio_loss_value(1 / 3, 1 / 3, 3.0) == pytest.approx(1.0)
    assert ratio_loss_value(1.0, 1.0, 3.0) == pytest.approx(3.0)
    assert ratio_loss_value(0.25, 0.25, 4.0) == pytest.approx(1.0)
    # gradient wrt each probability: N/(N-1) * ((N-1) F - (1 - F)) / T
    ratio_loss(prob, mask, N).backward()
    assert prob.grad == pytest.approx(torch.full((6,), 1.5 * (2 * F - (1 - F)) / 6), abs=1e-6)


def test_objective_normalises_per_unit_and_adds_alpha_times_ratio():
    nll = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0])
    prob = torch.tensor([1.0, 0.9, 0.2, 0.4])
    routing = [RoutingOutput(prob, prob > 0.5, Packing.from_lengths([4]))]
    out = Objective([2.0], alpha=0.5)(nll, weights, routing)
    assert out.nll == pytest.approx(7.0 / 3) and out.units == 3.0
    rl = ratio_loss_value(0.5, 2.5 / 4, 2.0)
    assert out.ratio_losses[0] == pytest.approx(rl)
    assert out.total == pytest.approx(7 / 3 + 0.5 * rl)
    assert out.loss.item() == pytest.approx(out.total, rel=1e-6)
    assert out.compression == [2.0]
    assert out.bits_per_unit == pytest.approx(7 / 3 / math.log(2))


# ---- optimiser -----------------------------------------------------------------------------------


def test_param_groups_exclude_norms_biases_and_flagged_from_decay():
    from hnet_seq import HNetLM
    from hnet_seq.config import config_from_dict
    from helpers import MICRO_MODEL

    model = HNetLM(config_from_dict(MICRO_MODEL))
    groups = param_groups(model, 2, [2.0, 1.0], weight_decay=0.1)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    plain = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert all("norm" not in n and not n.endswith(".bias") and "A_log" not in n and "dt_bias" not in n
               for n in decayed)
    assert "backbone.encoder.layers.0.norm1.weight" in plain and "backbone.encoder.layers.0.mixer.D" in plain
    assert "backbone.main_network.pad_dimension" in plain
    stage = {n: g["stage"] for g in groups for n in g["names"]}
    assert stage["embeddings.weight"] == 0 and stage["backbone.routing_module.q_proj_layer.weight"] == 0
    assert stage["backbone.main_network.main_network.layers.0.mixer.Wqkv.weight"] == 1
    assert {g["stage"]: g["lr_mult"] for g in groups} == {0: 2.0, 1: 1.0}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_auto_lr_multipliers_and_schedules():
    cfg = load_run_config("dna-paper-1stage").model_config
    m = auto_lr_multipliers(cfg, [3.0])
    assert m == pytest.approx([math.sqrt(3 * cfg.d_model[1] / cfg.d_model[0]), 1.0])
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr_mult": 2.0}], lr=1.0)
    cos = LRSchedule(opt, 1.0, 100, "cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)  # step 0: 1/10 of the peak, times 2
    assert [round(cos.factor(s), 4) for s in (9, 10, 55, 100)] == [1.0, 1.0, 0.55, 0.1]
    wsd = LRSchedule(opt, 1.0, 100, "wsd", warmup_steps=10, min_lr_ratio=0.0, decay_fraction=0.2)
    assert [round(wsd.factor(s), 4) for s in (50, 79, 80, 89, 99)] == [1.0, 1.0, 0.95, 0.5, 0.0]


# ---- configs -------------------------------------------------------------------------------------


def test_presets_load_and_validate():
    names = list_presets()
    for name in ("dna-tiny", "dna-paper-1stage", "bytes-1stage", "bytes-2stage", "audio"):
        assert name in names, names
        cfg = load_run_config(name)
        assert len(cfg.target_compression()) == cfg.model_config.num_stages - 1
    assert load_run_config("dna-paper-1stage").model_config.d_model[0] == 512
    assert load_run_config("bytes-2stage").target_compression() == [3.0, 3.0]
    assert (presets_dir() / "dna-tiny.yaml").is_file()


@pytest.mark.parametrize("override, field", [
    ("optim.lrr=1e-3", "optim.lrr"),
    ("optim.lr=fast", "optim.lr"),
    ("schedule.kind=linear", "schedule.kind"),
    ("model.d_model=[64]", "model.d_intermediate"),
    ("dta.paths=[]", "dta"),
    ("objective.target_compression=[3,3]", "objective.target_compression"),
])
def test_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_run_config("dna-tiny", [override])
    msg = str(err.value)
    assert f"'{field}" in msg and "\n" not in msg and "dna-tiny.yaml" in msg


def test_overrides_reach_every_section():
    cfg = load_run_config("dna-tiny", ["optim.lr=1e-3", "model.d_model=[64,160]", "objective.target_compression=4",
                                       "train.on_nonfinite=skip"])
    assert cfg.optim.lr == 1e-3 and cfg.model_config.d_model == [64, 160]
    assert cfg.target_compression() == [4.0] and cfg.train.on_nonfinite == "skip"


# ---- bad input: one line, before any work -------------------------------------------------------


def _one_line_error(result, *needles):
    out = result.output.strip()
    assert result.exit_code == 2, out
    assert "Traceback" not in out and out.count("\n") == 0, out
    for needle in needles:
        assert needle in out, out


def test_missing_data_path(tmp_path):
    result = invoke("train", "--config", "dna-tiny", "--data", str(tmp_path / "nope.fa"), "--out", str(tmp_path / "run"))
    _one_line_error(result, "nope.fa", "no such file")
    assert not (tmp_path / "run").exists()


def test_unknown_config_field_on_cli(tmp_path):
    result = invoke("train", "--config", "dna-tiny", "--set", "optim.learning_rate=1", "--out", str(tmp_path / "run"))
    _one_line_error(result, "unknown field 'optim.learning_rate'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny_1stage.json\noptimiser: {lr: 1}\n")
    _one_line_error(invoke("train", "--config", str(bad), "--out", str(tmp_path / "run")), "unknown field 'optimiser'")
    _one_line_error(invoke("train", "--config", "dna-teeny"), "dna-teeny", "presets")
    assert not (tmp_path / "run").exists()


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("train", "--config", str(micro_config(tmp_path)), "--out", str(blocker / "run"))
    _one_line_error(result, str(blocker / "run"), "not writable")


def test_existing_run_needs_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    result = invoke("train", "--config", str(micro_config(tmp_path)), "--out", str(run))
    _one_line_error(result, "already holds a run", "--resume")


def test_run_errors_name_the_api_and_the_cli_shows_flags(tmp_path):
    """The library names train()'s parameters (resume=True, run_dir, overrides); the CLI's error
    boundary writes them as --resume, --out, --set."""
    from hnet_seq.errors import UserError
    from hnet_seq.train.run_dir import prepare_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(UserError) as e:
        prepare_run_dir(run, resume=False)
    assert "pass resume=True to continue it, or choose another run_dir" in str(e.value) and "--" not in str(e.value)
    _one_line_error(invoke("train", "--config", str(micro_config(tmp_path)), "--out", str(run)),
                    f"{run}: already holds a run; pass --resume to continue it, or choose another --out")
    with pytest.raises(ConfigError, match="overrides 'optim.lr': expected key=value") as e:
        load_run_config("dna-tiny", ["optim.lr"])
    assert "--" not in str(e.value)
    _one_line_error(invoke("train", "--config", "dna-tiny", "--set", "optim.lr", "--out", str(tmp_path / "r2")),
                    "--set 'optim.lr': expected key=value")
    assert not (tmp_path / "r2").exists()


# ---- failures during training --------------------------------------------------------------------


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
    cfg = micro_config(tmp_path, steps=8, train={"inject_nan_at_step": 5})
    run = tmp_path / "run"
    result = invoke("train", "--config", str(cfg), "--out", str(run))
    assert result.exit_code == 3, result.output
    err = result.output.strip().splitlines()[-1]
    assert "step 5: loss is nan" in err and "step_00000003" in err, err
    assert (run / "checkpoints" / "latest").resolve().name == "step_00000003"
    assert [r["step"] for r in read_metrics(run) if r["kind"] == "train"] == [1, 2, 3, 4]


def test_nan_loss_skipped_when_configured(tmp_path):
    cfg = micro_config(tmp_path, steps=5, train={"inject_nan_at_step": 2, "on_nonfinite": "skip"})
    run = tmp_path / "run"
    result = invoke("train", "--config", str(cfg), "--out", str(run))
    assert result.exit_code == 0, result.output
    assert "step 2: loss is nan; update skipped" in result.output
    recs = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert [r["skipped"] for r in recs] == [False, True, False, False, False]
    assert all(math.isfinite(r["loss"]) for r in recs if not r["skipped"])


def test_ctrl_c_saves_a_checkpoint_and_resumes(tmp_path):
    cfg = micro_config(tmp_path, steps=500, checkpoint={"every": 0})
    run = tmp_path / "run"
    proc = cli_popen("train", "--config", str(cfg), "--out", str(run))
    wait_for(lambda: len(train_steps(run)) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT at step" in err and "--resume" in err and "Traceback" not in err
    latest = (run / "checkpoints" / "latest").resolve()
    stopped = int(latest.name.split("_")[1])
    assert stopped == train_steps(run)[-1] >= 2
    again = invoke("train", "--out", str(run), "--resume", "--steps", str(stopped + 2))
    assert again.exit_code == 0, again.output
    assert train_steps(run) == list(range(1, stopped + 3))


# ---- exact resume ----------------------------------------------------------------------------------

DETERMINISTIC = ("loss", "nll", "bits_per_unit", "ratio_loss", "compression", "boundary_prob", "lr", "grad_norm",
                 "units", "positions")


def _history(run: Path) -> list[dict]:
    return [{k: r.get(k) for k in ("kind", "step", *DETERMINISTIC)} for r in read_metrics(run)
            if r["kind"] in ("train", "eval")]


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
    """Uninterrupted (in this process) == killed with SIGKILL after a checkpoint (subprocess) + resumed."""
    steps = 10
    cfg = micro_config(tmp_path, steps=steps, checkpoint={"every": 3, "keep": 2})
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = cli_popen("train", "--config", str(cfg), "--out", str(killed))
    assert invoke("train", "--config", str(cfg), "--out", str(full)).exit_code == 0
    wait_for(lambda: (killed / "checkpoints" / "step_00000003" / "train_state.pt").exists(), proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert train_steps(killed)[-1] < steps
    resumed = invoke("train", "--config", str(cfg), "--out", str(killed), "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = _history(full), _history(killed)
    assert [r["step"] for r in a if r["kind"] == "train"] == list(range(1, steps + 1))
    assert a == b  # every logged float equal, exactly
    from safetensors.torch import load_file

    wa = load_file(full / "checkpoints" / "latest" / "model.safetensors")
    wb = load_file(killed / "checkpoints" / "latest" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- the checkpoint is a model checkpoint --------------------------------------------------------


def test_checkpoint_files_info_and_plot(tmp_path):
    cfg = micro_config(tmp_path, steps=4, checkpoint={"every": 2, "keep": 1})
    run = tmp_path / "run"
    result = invoke("train", "--config", str(cfg), "--out", str(run))
    assert result.exit_code == 0, result.output
    assert "held-out" in result.output and "bits/base" in result.output
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["latest", "step_00000004"]  # keep: 1
    latest = run / "checkpoints" / "latest"
    for name in ("model.safetensors", "config.json", "modality.json", "train_state.pt"):
        assert (latest / name).is_file()
    state = torch.load(latest / "train_state.pt", weights_only=True)
    assert state["step"] == 4 and state["schedule"] == {"step": 4} and state["world_size"] == 1
    assert isinstance(state["rng"][0]["numpy"]["keys"], torch.Tensor)
    assert json.loads((latest / "modality.json").read_text())["name"] == "dna"
    info = invoke("info", "--checkpoint", str(latest))
    assert info.exit_code == 0, info.output
    assert "1-stage H-Net" in info.output
    from_run_dir = invoke("info", "--checkpoint", str(run))  # the run directory means its latest
    assert from_run_dir.exit_code == 0, from_run_dir.output
    assert "step_00000004" in from_run_dir.output and "1-stage H-Net" in from_run_dir.output
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    refused = invoke("info", "--checkpoint", str(empty))
    assert refused.exit_code == 2 and "without a complete checkpoint" in refused.output
    plot = invoke("plot", str(run))
    assert plot.exit_code == 0, plot.output
    assert (run / "plots" / "run.png").stat().st_size > 1000


# ---- other modalities through the same loop ---------------------------------------------------------


@pytest.mark.parametrize("modality, files, unit", [
    ("bytes", ["text/udhr2/eng.txt", "text/udhr2/rus.txt", "text/udhr2/amh.txt"], "byte"),
    ("audio", ["audio/codec2/big_dog.wav", "audio/alsa"], "sample"),
])
def test_bytes_and_audio_train_and_evaluate(tmp_path, shared_data, modality, files, unit):
    from hnet_seq.train import train

    paths = [str(shared_data / f) for f in files]
    for p in paths:
        if not Path(p).exists():
            pytest.skip(f"{p} not in the shared data")
    options = {"audio": {"sample_rate": 8000, "frame_size": 40, "mixtures": 2}}.get(modality, {})
    seq = {"bytes": 256, "audio": 100}[modality]
    cfg = load_run_config(str(micro_config(tmp_path)), [
        f"modality.name={modality}", f"modality.options={json.dumps(options)}", f"data.seq_len={seq}",
        f"data.tokens_per_batch={4 * seq}", f"data.eval_tokens={2 * seq}", "model.vocab_size=256",
        "train.steps=2", "logging.eval_every=2", "checkpoint.every=0"])
    result = train(cfg, tmp_path / "run", data_paths=paths, quiet=True)
    assert result.unit == unit and result.step == 2
    assert math.isfinite(result.heldout_bits_per_unit) and result.heldout_bits_per_unit > 0
    assert json.loads((result.checkpoint / "modality.json").read_text()) == {"name": modality, "options": options}


# ---- quality experiments: compute and data per evaluation, a spread held-out sample -----------------


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
    from _quality import merge_results

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
