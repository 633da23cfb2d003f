"""Throughput of ``hnet-seq train`` itself: positions/s and MFU of the real training loop.

    python bench/train.py                                   # GPU: the paper-style 1-stage DNA config
    python bench/train.py --device cpu --steps 3            # CPU smoke test (small batch; prints only)
    torchrun --nproc_per_node 2 bench/train.py --parallel fsdp   # data-parallel, 2 GPUs

It runs :func:`hnet_seq.train.train` (data pipeline, bf16 autocast, objective with the ratio
loss, AdamW, everything but evaluation and checkpoints) on the shipped genome for
``--warmup + --steps`` steps in a temporary run directory, and reports the mean over the timed
steps of the loop's own metrics: positions per second (all ranks), MFU (CUDA: model FLOPs from
:func:`hnet_seq.flops.training_flops` at each stage's measured length, over the GPU's dense
bf16 peak), peak memory per GPU and the compression reached.  The result replaces the
``train`` section of ``docs/benchmarks.md`` (``--no-write`` to only print).

Note: the router starts at a random compression and the ratio loss moves it to the target
within a few hundred steps; with few steps the inner stage may see more or fewer positions than
at the target, which changes the FLOPs per position (MFU accounts for it; positions/s does not).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> None:
    args = parse_args(argv)
    from hnet_seq.runtime.device import pick_device

    device = pick_device(args.device)
    on_cpu = device.type == "cpu"
    warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 10)
    cfg = run_config(args, device, warmup)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    records, wall = timed_run(cfg, rank, world)
    if rank != 0:
        return
    result = summarise(args, cfg, records, warmup, device, world, wall)
    print(json.dumps(result, indent=2))
    if args.no_write or (on_cpu and not args.write):
        if on_cpu and not args.no_write:
            print("CPU run: smoke test only, docs/benchmarks.md not written (--write to force)", file=sys.stderr)
        return
    write_doc(args, cfg, result, warmup, device)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="dna-paper-1stage", help="run config (preset name or path)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 10 on GPU, 1 on CPU)")
    p.add_argument("--tokens-per-batch", type=int, default=None,
                   help="per-rank token budget (default: the config's on GPU, 512 on CPU)")
    p.add_argument("--seq-len", type=int, default=None, help="window length (default: the config's; 256 on CPU)")
    p.add_argument("--parallel", default=None, choices=["ddp", "fsdp"], help="under torchrun")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override key=value")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md even for a CPU run "
                   "(by default a CPU run is a smoke test and only prints)")
    p.add_argument("--md", default=str(ROOT / "docs" / "benchmarks.md"))
    return p.parse_args(argv)


def run_config(args, device: torch.device, warmup: int):
    """``--config`` for ``warmup`` + ``--steps`` steps of the bare loop (no evaluation, checkpoints,
    progress or TensorBoard), at the CPU's small window and budget unless given, then ``--set``."""
    from hnet_seq.train import load_run_config

    on_cpu = device.type == "cpu"
    overrides = [f"train.steps={warmup + args.steps}", f"train.device={device.type}", "logging.eval_every=0",
                 "logging.every=1", "logging.progress=off", "logging.print_every=0", "checkpoint.every=0",
                 "checkpoint.at_end=false", "data.eval_tokens=0", "data.num_workers=0", "logging.tensorboard=false"]
    budget = args.tokens_per_batch or (512 if on_cpu else None)
    seq_len = args.seq_len or (256 if on_cpu else None)
    if seq_len:
        overrides.append(f"data.seq_len={seq_len}")
    if budget:
        overrides.append(f"data.tokens_per_batch={budget}")
    if args.parallel:
        overrides.append(f"train.parallel={args.parallel}")
    if args.compile:
        overrides.append("train.compile=true")
    return load_run_config(args.config, overrides + args.overrides)


def timed_run(cfg, rank: int, world: int) -> tuple[list[dict], float]:
    """Train ``cfg`` in a throw-away run directory; rank 0's metric records (``[]`` on the other
    ranks) and the wall time of :func:`hnet_seq.train.train`."""
    from hnet_seq.train import train
    from hnet_seq.train.metrics import read_metrics

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        run_dir = Path(tmp) / "run"
        if world > 1:  # every rank must use the same run directory
            run_dir = Path(os.environ.get("BENCH_RUN_DIR", "/tmp/hnet-seq-bench-train"))
            if rank == 0 and run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        train(cfg, run_dir, quiet=True)
        wall = time.perf_counter() - t0
        records = read_metrics(run_dir) if rank == 0 else []
    return records, wall


def summarise(args, cfg, records: list[dict], warmup: int, device: torch.device, world: int, wall: float) -> dict:
    """The printed result: means over the train records after the warm-up, and what ran where."""
    timed = [r for r in records if r.get("kind") == "train" and r["step"] > warmup]
    mean = lambda key: sum(r[key] for r in timed) / len(timed) if timed and all(  # noqa: E731
        isinstance(r.get(key), (int, float)) for r in timed) else None
    model = cfg.model_config
    params = next(r["params"] for r in records if r.get("kind") == "start")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    tps, mfu, mem = mean("tokens_per_s"), mean("mfu"), max((r.get("memory_gb") or 0) for r in timed) if timed else 0
    comp = [sum(r["compression"][i] for r in timed) / len(timed) for i in range(len(model.target_compression))]
    return {
        "config": args.config, "device": device_name, "world_size": world, "parallel": cfg.train.parallel if world > 1
        else "single", "params": params, "tokens_per_batch_per_rank": cfg.data.tokens_per_batch,
        "seq_len": cfg.data.seq_len, "positions_per_s": tps, "mfu": mfu, "peak_memory_gb_per_gpu": mem or None,
        "compression": comp, "target_compression": list(model.target_compression), "timed_steps": len(timed),
        "wall_s": wall, "torch": torch.__version__, "compile": args.compile,
    }


def write_doc(args, cfg, result: dict, warmup: int, device: torch.device) -> None:
    """Replace the ``train`` section of ``--md`` with ``result`` as a one-row table."""
    try:
        from _report import command_line, markdown_table, write_section
    except ImportError:  # bench/_report.py is optional
        print("bench/_report.py not found: docs/benchmarks.md not written", file=sys.stderr)
        return
    model, tps, mfu, mem = cfg.model_config, result["positions_per_s"], result["mfu"], result["peak_memory_gb_per_gpu"]
    layout = model.arch_layout
    row = [f"`{args.config}`", f"{layout[0]} / {layout[1][0] if len(layout) == 3 else ''} / "
           f"{layout[2] if len(layout) == 3 else ''}", f"{model.d_model}", f"{result['params'] / 1e6:.1f}M",
           f"{result['world_size']} × {result['parallel']}", f"{cfg.data.tokens_per_batch:,} × {cfg.data.seq_len}",
           f"{tps:,.0f}" if tps else "—", f"{100 * mfu:.1f}%" if mfu else "— (CPU)",
           f"{mem:.1f}" if mem else "—", "/".join(f"{c:.2f}" for c in result["compression"])]
    md = (f"## Training loop throughput (`bench/train.py`)\n\n"
          f"Device: {result['device']}; torch {torch.__version__}"
          f"{'; CUDA ' + torch.version.cuda if device.type == 'cuda' and torch.version.cuda else ''}. "
          f"Whole `hnet-seq train` steps (data, forward, ratio loss, backward, AdamW), bf16 autocast on GPU, "
          f"mean of {result['timed_steps']} steps after {warmup} warm-up steps. MFU = model FLOPs "
          f"(`hnet_seq.flops.training_flops`, 3× forward, at each stage's measured length) / time / dense bf16 "
          f"peak.\n\n"
          + markdown_table(["config", "layout", "d_model", "params", "ranks", "batch (tokens × window)",
                            "positions/s", "MFU", "peak GB/GPU", "compression"], [row])
          + f"\n\nReproduce: `{command_line()}`\n")
    print(f"wrote {write_section(args.md, 'train', md)}", file=sys.stderr)


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "CPU"


if __name__ == "__main__":
    main()
