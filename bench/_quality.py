"""Shared pieces of the model-quality experiments (``bench/quality_dna.py``, ``bench/quality_udhr.py``).

An experiment is a set of run configs in ``configs/quality/`` (one H-Net, isotropic baselines)
that share every section but ``model``, ``objective`` and the peak learning rate
(``optim.lr``, each model at its own tuned value); this module

* loads them at a scale -- ``gpu``: the configs as written (one H100); ``cpu``: with
  ``configs/quality/cpu/{experiment}.yaml`` on top, which holds only what a 2-core CPU needs
  changed (smaller models, windows and batches) -- and the run length (``--tokens``, ``--evals``,
  ``--smoke``), all as ``--set`` overrides, and checks that the recipe is shared and that each
  baseline's depth is the FLOP match;
* trains each through :func:`hnet_seq.train.train` (the code behind ``hnet-seq train``), in this
  process so that kernels autotuned for one model serve the next; a finished run is kept, an
  interrupted one resumed from its last checkpoint;
* keeps results as JSON, so that ``--report-only`` rebuilds plots and ``docs/results.md``
  from a copied-back ``results.json`` without the run directories.

The curves, efficiency factors, figures and markdown of the report are :mod:`_quality_report`'s.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import time
from pathlib import Path

from _merge import merge_results
from _report import REPO_ROOT, command_line

CONFIGS = REPO_ROOT / "configs" / "quality"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_SECTIONS = ("modality", "data", "optim", "schedule", "train", "logging", "checkpoint")
OWN_KEYS = {"optim": ("lr",)}  # per model inside a shared section: each model is tuned at its own peak LR
SMOKE_DATA = {"seq_len": 128, "tokens_per_batch": 1024, "eval_tokens": 2048, "num_workers": 0}
SMOKE_TOKENS = 16 * 1024  # training positions per model in a smoke run
SCALES = ("gpu", "cpu")  # gpu: configs/quality/*.yaml as written; cpu: + configs/quality/cpu/*.yaml


# ---- configs -----------------------------------------------------------------------------------


def smoke_model(model: dict) -> dict:
    """The same hierarchy with one layer per stack and tiny widths (CPU, seconds)."""
    stages = len(model["d_model"])
    layout = json.loads(re.sub(r"([mMtT])\d+", r"\g<1>1", json.dumps(model["arch_layout"])))
    return {**model, "arch_layout": layout, "d_model": [32 + 16 * s for s in range(stages)],
            "d_intermediate": [0 if d == 0 else 64 + 32 * s for s, d in enumerate(model["d_intermediate"])],
            "ssm_cfg": {"chunk_size": 32, "d_conv": 4, "d_state": 8, "expand": 2, "headdim": 16},
            "attn_cfg": {"num_heads": [2] * stages, "rotary_emb_dim": [8] * stages, "window_size": [-1] * stages}}


def scale_file(prefix: str, scale: str) -> dict:
    """``configs/quality/{scale}/{prefix}.yaml`` (``overrides``, ``models``, ``bench``), ``{}`` for gpu."""
    import yaml

    return {} if scale == "gpu" else yaml.safe_load((CONFIGS / scale / f"{prefix}.yaml").read_text())


def scale_suffix(scale: str) -> str:
    """Appended to output names (docs sections, images, run folders) so that scales never mix."""
    return "" if scale == "gpu" else f"_{scale}"


def scale_sets(scaled: dict, name: str) -> list[str]:
    """The scale file's changes to model ``name`` as ``--set`` overrides: the model section whole,
    every other value by its dotted key (JSON is YAML, so lists and mappings pass unchanged)."""
    if not scaled:
        return []
    sets = [f"model={json.dumps(scaled['models'][name])}"]
    return sets + [f"{section}.{key}={json.dumps(value)}" for section, values in scaled["overrides"].items()
                   for key, value in values.items()]


def load_configs(prefix: str, names: list[str], *, scale: str, tokens: int | None, evals: int, smoke: bool,
                 device: str, extra: list[str] = ()) -> dict:
    """``configs/quality/{prefix}-{name}.yaml`` for each name, at ``scale`` and scaled to this run.

    ``tokens``: training positions per model (``train.steps = tokens // tokens_per_batch``, warmup
    scaled with it); ``evals``: held-out evaluations after step 0 (checkpoints at the same steps,
    so a killed run resumes from its last evaluation).  ``smoke``: tiny models, short windows.
    """
    import yaml

    from hnet_seq.train import load_run_config
    from hnet_seq.train.config import apply_override, parse_override

    scaled = scale_file(prefix, scale)
    out = {}
    for name in names:
        path = CONFIGS / f"{prefix}-{name}.yaml"
        raw = yaml.safe_load(path.read_text())
        sets = [*scale_sets(scaled, name), f"train.device={device}", *extra]
        for text in sets:  # the step counts below read the scaled values
            apply_override(raw, *parse_override(text))
        if smoke:
            sets += [f"model={json.dumps(smoke_model(raw['model']))}"]
            sets += [f"data.{k}={v}" for k, v in SMOKE_DATA.items()]
        budget = SMOKE_DATA["tokens_per_batch"] if smoke else raw["data"]["tokens_per_batch"]
        steps = max(1, tokens // budget) if tokens else raw["train"]["steps"]
        warmup = round(raw["schedule"]["warmup_steps"] * steps / raw["train"]["steps"])
        every = max(1, math.ceil(steps / evals))
        sets += [f"train.steps={steps}", f"schedule.warmup_steps={warmup}", f"logging.eval_every={every}",
                 f"checkpoint.every={every}"]
        out[name] = load_run_config(path, sets)
    first = shared_recipe(next(iter(out.values())))
    for name, cfg in out.items():
        for section in SHARED_SECTIONS:
            if shared_recipe(cfg)[section] != first[section]:
                raise SystemExit(f"configs/quality/{prefix}-{name}.yaml: section '{section}' differs from "
                                 f"{prefix}-{names[0]}.yaml; the models of one experiment share their recipe")
    return out


def shared_recipe(cfg) -> dict:
    """The config's shared sections without the keys each model sets itself (:data:`OWN_KEYS`)."""
    d = cfg.to_dict()
    return {s: {k: v for k, v in d[s].items() if k not in OWN_KEYS.get(s, ())} for s in SHARED_SECTIONS}


def flops_per_unit(model_cfg, seq_len: int, ratios: list[float]) -> float:
    """Training FLOPs per input position of one ``seq_len`` window at the given compression per stage."""
    from hnet_seq.flops import lengths_at_compression, training_flops

    return training_flops(model_cfg, lengths_at_compression([seq_len], ratios)) / seq_len


def flop_match(cfgs: dict, hnet: str = "hnet") -> dict:
    """Per model: parameters, training FLOPs per unit at the H-Net's target, and for each isotropic baseline
    the depth that would match best (a mismatch with its config is reported, not hidden)."""
    import dataclasses

    import torch

    from hnet_seq import HNetLM

    seq_len = cfgs[hnet].data.seq_len
    target = flops_per_unit(cfgs[hnet].model_config, seq_len, cfgs[hnet].target_compression())
    rows = {}
    for name, cfg in cfgs.items():
        mc = cfg.model_config
        with torch.device("meta"):
            params = sum(p.numel() for p in HNetLM(mc).parameters())
        row = {"layout": json.dumps(mc.arch_layout), "d_model": list(mc.d_model), "params": params, "lr": cfg.optim.lr,
               "flops_per_unit": flops_per_unit(mc, seq_len, cfg.target_compression())}
        if len(mc.d_model) == 1:  # isotropic: the depth that matches; other H-Nets are reported as they are
            kind = mc.arch_layout[0][0]
            depth = min(range(1, 100), key=lambda n: abs(flops_per_unit(
                dataclasses.replace(mc, arch_layout=[f"{kind}{n}"]), seq_len, []) - target))
            row["best_layout"] = json.dumps([f"{kind}{depth}"])
            if row["best_layout"] != row["layout"]:
                print(f"note: {name} is {row['layout']}; {row['best_layout']} matches the H-Net's FLOPs best")
        rows[name] = row
    return rows


# ---- training ------------------------------------------------------------------------------------


def train_model(cfg, run_dir: Path, data_paths: list[str]) -> None:
    """Train ``cfg`` into ``run_dir``: skip a finished run, resume an interrupted one."""
    from hnet_seq.train import train
    from hnet_seq.train.checkpointing import latest_checkpoint
    from hnet_seq.train.metrics import read_metrics

    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    if evals and evals[-1]["step"] == cfg.train.steps:
        print(f"{run_dir}: finished earlier, kept")
        return
    resume = latest_checkpoint(run_dir) is not None if run_dir.exists() else False
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # started but died before its first checkpoint
    print(f"{run_dir}: {'resuming' if resume else 'training'} {cfg.model_config.arch_layout}, "
          f"{cfg.train.steps} steps", flush=True)
    train(cfg, run_dir, resume=resume, data_paths=data_paths, quiet=True)
    _free_cuda()


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_summary(run_dir: Path) -> dict:
    """The eval curve and timing of a finished run, from its ``metrics.jsonl``."""
    from hnet_seq.train.metrics import read_metrics

    rows = read_metrics(run_dir)
    train_rows = [r for r in rows if r["kind"] == "train"]
    curve = [{"step": r["step"], "units_seen": r["units_seen"], "flops_seen": r["flops_seen"],
              "bits_per_unit": r["bits_per_unit"], "compression": r["compression"]}
             for r in rows if r["kind"] == "eval"]
    rates = sorted(r["tokens_per_s"] for r in train_rows[1:]) or [float("nan")]
    return {"curve": curve, "steps": train_rows[-1]["step"], "units_seen": train_rows[-1]["units_seen"],
            "flops_seen": train_rows[-1]["flops_seen"], "wall_s": train_rows[-1]["elapsed_s"],
            "tokens_per_s": rates[len(rates) // 2]}


def use_training_threads(cfgs: dict) -> None:
    """Score and analyse with the CPU threads the runs trained with (``train.threads``, shared)."""
    import torch

    threads = next(iter(cfgs.values())).train.threads
    if threads:
        torch.set_num_threads(threads)


def load_inference_model(run_dir: Path, device: str):
    from hnet_seq.inference import load

    return load(run_dir / "checkpoints" / "latest", device=device)


# ---- command line ---------------------------------------------------------------------------------


def cli(doc: str, experiment: str, unit: str, models: list[str], default_models: str, data_dir: Path,
        run, report) -> None:
    """The command line shared by the experiment scripts: parse, then train (``run``) or reuse
    ``results.json``, then ``report``.  ``unit`` names the training positions ("bases", "bytes")."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, required=True,
                        help=f"run directories and results.json go to OUT/{experiment}")
    parser.add_argument("--scale", choices=SCALES, default="gpu",
                        help="gpu: configs/quality/*.yaml as written; cpu: + configs/quality/cpu/*.yaml")
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda at gpu scale, cpu at cpu scale")
    parser.add_argument("--models", default=default_models, help=f"comma-separated subset of {','.join(models)}")
    parser.add_argument("--tokens", type=int, help=f"training {unit} per model (default: the scale's "
                        "train.steps × data.tokens_per_batch)")
    parser.add_argument("--evals", type=int, default=8, help="held-out evaluations during training (plus step 0)")
    parser.add_argument("--data-dir", type=Path, default=data_dir)
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few steps, CPU: tests the harness")
    parser.add_argument("--report-only", action="store_true",
                        help=f"rebuild plots and docs from OUT/{experiment}/results.json")
    parser.add_argument("--merge-from", type=Path, nargs="+", metavar="OUT",
                        help="merge the results of runs made concurrently with separate --out-dir and "
                             "--models (one process per model), write OUT/.../results.json, then report")
    args = parser.parse_args()
    args.models = args.models.split(",")
    out = experiment_dir(args, experiment)
    if args.smoke:
        args.device, args.tokens, args.evals = "cpu", args.tokens or SMOKE_TOKENS, min(args.evals, 4)
    if args.merge_from:
        parts = [load_results(experiment_dir(argparse.Namespace(**{**vars(args), "out_dir": d}), experiment)
                              / "results.json") for d in args.merge_from]
        results = merge_results(parts)
        results["commands"].append(command_line())
        write_results(results, out / "results.json")
    else:
        results = load_results(out / "results.json") if args.report_only else run(args, out)
    report(results, out)


def experiment_dir(args, experiment: str) -> Path:
    """``OUT/dna``, ``OUT/dna_cpu``, ...: one folder per experiment and scale, so that a run of one
    scale never resumes from or reports the runs of another."""
    if args.device is None:
        args.device = "cpu" if args.scale == "cpu" else "cuda"
    return args.out_dir / f"{experiment}{scale_suffix(args.scale)}"


# ---- results -----------------------------------------------------------------------------------


def device_text(device: str) -> str:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{os.cpu_count()}-core CPU, {cpu_model()}, torch {torch.__version__}"


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def start_results(path: Path, experiment: str, args) -> dict:
    """The results of earlier calls in this ``--out-dir`` (``--models`` may split an experiment over
    several calls), else a new header: what ran where, and with which commands."""
    results = json.loads(path.read_text()) if path.exists() else {}
    if results.get("smoke") != bool(args.smoke) or results.get("scale") != args.scale:
        results = {"experiment": experiment, "smoke": bool(args.smoke), "scale": args.scale, "models": {},
                   "commands": [], "wall_s": 0.0, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    results["device"] = device_text(args.device)
    if command_line() not in results["commands"]:
        results["commands"].append(command_line())
    results["_wall_before"] = results["wall_s"]
    return results


def save_results(results: dict, path: Path, t0: float) -> Path:
    """Write ``results`` (atomically), with this call's time since ``t0`` added to ``wall_s``."""
    results["wall_s"] = results["_wall_before"] + time.perf_counter() - t0
    return write_results(results, path)


def write_results(results: dict, path: Path) -> Path:
    from hnet_seq.runtime.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(results, indent=1) + "\n")


def load_results(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"{path}: no results (run the experiment, or copy its results.json into --out-dir)")
    return json.loads(path.read_text())
