"""Training throughput and MFU at realistic batch: H-Nets against FLOP-matched isotropic baselines.

    python bench/train_throughput.py                                  # 8 and 16 × 8192 tokens per step
    python bench/train_throughput.py --batches 2,8,16 --variants base,fused   # the sweep, before/after
    python bench/train_throughput.py --models dna-hnet --batches 8 --variants base,compile,fused+compile

Models (``--models``): ``hnet-2stage-L`` (``configs/hnet_2stage_L.json``, target 3/3),
``hnet-1stage-L`` (target 6), ``dna-hnet`` (``configs/quality/dna-hnet.yaml``'s ~30 M-parameter
shape on 4096-base windows, target 3), and the older ``hnet-{1,2}stage-small``.  Each H-Net
comes with isotropic "0-stage" baselines of the same code (Transformer, Mamba-2) whose layer
count gives the closest forward FLOPs per token at the H-Net's target compression.

``--batches`` counts 8192-token units per step (a DNA window is 4096 bases, so the DNA model
gets twice as many windows): the default 8,16 is 64 k and 128 k tokens per step.  For every
model and batch, each ``--variant`` is timed on the same weights, packing and device, one after
the other, so each before/after pair is one command on one machine:

* ``base``: the kernels as before this bench had variants (fused ops on ``reference``, eager);
* ``fused``: the fused ``add_rmsnorm``/``swiglu``/``linear_ce`` ops (``hnet_seq.kernels.fused``);
* ``compile``: the backbone under ``torch.compile(dynamic=True)``; ``+`` combines (``fused+compile``);
* ``ckpt``: activation checkpointing per block (memory against recomputation);
* ``varlen``: attention on the varlen kernel only, not through cuDNN's SDPA on a dense batch of
  equal-length sequences (``hnet_seq.kernels.dense_attention``, Hopper): the attention before that path.

A step is forward + backward + AdamW, bf16 autocast, fast mamba-ssm/attention kernels.  The
optimizer's learning rate is 0, so every variant times the same weights (the router's compression
cannot drift between rows) while AdamW does its full work.  The router is tuned once per model
to its target (ratio loss only, at the first batch) before anything is timed.  FLOPs are counted
by :mod:`hnet_seq.flops` at the measured per-stage lengths; MFU = FLOPs / time / dense bf16
peak; GPU idle = 1 − GPU busy time / step time in one profiled step.  A row that runs out of
memory is reported as such.  Results go to the ``--section`` of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from hnet_seq import HNetLM, Packing, load_config
from hnet_seq.config import HNetConfig, config_from_dict
from hnet_seq.flops import peak_flops, training_flops
from hnet_seq.kernels.dense_attention import dense_sdpa
from hnet_seq.nn.isotropic import set_activation_checkpointing
from hnet_seq.nn.routing import stage_lengths
from hnet_seq.runtime.atomic import atomic_write_text
from hnet_seq.train import load_run_config

sys.path.insert(0, str(Path(__file__).parent))
from _report import command_line, write_section  # noqa: E402
from _router import tune_router  # noqa: E402
from _profile import profile_steps, time_steps  # noqa: E402
from profile_step import fused_ops, make_train_step, matched_baseline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNIT = 8192  # tokens per batch unit
LABELS = {"T": "transformer", "m": "mamba2"}  # --baselines
SMALL = {
    "hnet-1stage-small": dict(arch_layout=["m4", ["T8"], "m4"], d_model=[512, 768], d_intermediate=[0, 2048],
                              attn_cfg=dict(num_heads=[8, 12], rotary_emb_dim=[32, 32], window_size=[1023, -1]),
                              target_compression=[6.0]),
    "hnet-2stage-small": dict(arch_layout=["m4", ["T1m4", ["T8"], "m4T1"], "m4"], d_model=[512, 768, 1024],
                              d_intermediate=[0, 2048, 2816], target_compression=[3.0, 3.0],
                              attn_cfg=dict(num_heads=[8, 12, 16], rotary_emb_dim=[32, 32, 32],
                                            window_size=[1023, 1023, -1])),
}
MODELS = ("hnet-2stage-L", "hnet-1stage-L", "dna-hnet", *SMALL)


def hnet_config(name: str) -> tuple[HNetConfig, int]:
    """The H-Net ``name`` and its window length in tokens."""
    if name in SMALL:
        return config_from_dict(SMALL[name]), UNIT
    if name == "dna-hnet":
        run = load_run_config(ROOT / "configs" / "quality" / "dna-hnet.yaml")
        cfg = run.model_config.to_dict() | {"target_compression": run.target_compression()}
        return config_from_dict(cfg), 4096
    ratios = {"hnet-1stage-L": [6.0], "hnet-2stage-L": [3.0, 3.0]}[name]
    raw = load_config(ROOT / "configs" / f"{name.replace('-', '_')}.json").to_dict()
    return config_from_dict(raw | {"target_compression": ratios}), UNIT


def variant_context(variant: str, model: HNetLM):
    """(context manager, compile flag) for ``variant``, e.g. ``fused+compile``."""
    parts = set(variant.split("+"))
    unknown = parts - {"base", "fused", "compile", "ckpt", "varlen"}
    if unknown:
        sys.exit(f"bench/train_throughput.py: --variants: unknown {', '.join(sorted(unknown))}")
    set_activation_checkpointing(model, "blocks" if "ckpt" in parts else "none")

    @contextmanager
    def context():
        with fused_ops("fused" in parts), dense_sdpa("varlen" not in parts):
            yield

    return context(), "compile" in parts


def measure(name: str, cfg: HNetConfig, model: HNetLM, tokens: torch.Tensor, packing: Packing, variant: str,
            args) -> dict:
    device = tokens.device
    cuda = device.type == "cuda"
    context, compile_ = variant_context(variant, model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.0, fused=cuda)
    row = dict(model=name, layout=str(cfg.arch_layout).replace("'", ""), variant=variant,
               params=sum(p.numel() for p in model.parameters()), tokens=tokens.numel())
    torch.cuda.empty_cache()
    try:
        with context:
            step = make_train_step(model, tokens, packing, opt, compile=compile_)
            ms, routing = time_steps(step, args.warmup, args.steps, device)
            peak_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            busy_ms = profile_steps(step, 1, None, device).get("gpu_busy_ms_per_step", float("nan"))
    except torch.cuda.OutOfMemoryError:
        print(f"{name} {variant} at {tokens.numel()} tokens: out of memory", flush=True)
        return row | dict(oom=True)
    finally:
        del opt
        model.zero_grad(set_to_none=True)
    seconds = ms / 1e3
    flops = training_flops(cfg, stage_lengths(packing, routing))
    peak = peak_flops(torch.cuda.get_device_name()) if cuda else None
    row |= dict(compression=[round(r.compression_ratio(), 2) for r in routing], tokens_per_s=tokens.numel() / seconds,
                tflops=flops / seconds / 1e12, mfu=(flops / seconds / peak) if peak else float("nan"),
                peak_gib=peak_gib, gpu_idle=max(0.0, 1 - busy_ms / 1e3 / seconds), oom=False)
    print(row, flush=True)
    return row


def bench_model(name: str, cfg: HNetConfig, window: int, args) -> list[dict]:
    """Every batch × variant of one model, on one set of weights (router tuned once)."""
    torch.manual_seed(0)
    model = HNetLM(cfg, device=args.device)
    model.init_weights()
    batches = [int(b) for b in args.batches.split(",")]
    window = min(window, args.unit)
    packings = {b: Packing.from_lengths([window] * (b * args.unit // window), device=args.device) for b in batches}
    gen = torch.Generator().manual_seed(1)  # the same tokens for every variant and for each model's baselines
    tokens = {b: torch.randint(0, cfg.vocab_size, (b * args.unit // window * window,), generator=gen).to(args.device)
              for b in batches}
    if cfg.target_compression:
        start = time.perf_counter()
        reached = tune_router(model, tokens[batches[0]], packings[batches[0]], cfg.target_compression,
                              steps=args.tune_steps)
        print(f"{name}: router at {reached} after {args.tune_steps} steps, {time.perf_counter() - start:.0f} s "
              "(the first steps of a fresh machine include Triton autotuning)", flush=True)
    rows = [measure(name, cfg, model, tokens[b], packings[b], v, args) | {"batch": b}
            for b in batches for v in args.variants.split(",")]
    del model
    torch.cuda.empty_cache()
    return rows


# Issue goals at a realistic batch (8 × 8192 tokens; the DNA model's 8 units are 64 k bases):
# (H-Net, batch, what, goal); "mfu" of the H-Net, "vs T" its best FLOP throughput over the matched
# Transformer's best, "T mfu" the matched Transformer's own MFU.
GOALS = [("hnet-2stage-L", 8, "mfu", 0.40), ("hnet-2stage-L", 8, "vs T", 0.95), ("hnet-2stage-L", 8, "T mfu", 0.45),
         ("dna-hnet", 8, "mfu", 0.25)]


def goals_table(rows: list[dict], unit: int) -> list[str]:
    """Each goal against the best variant measured for it, with the gap (nothing for goals not run)."""
    ok = [r for r in rows if not r["oom"]]
    lines = []
    for hnet, batch, what, goal in GOALS:
        own = [r for r in ok if r["model"] == hnet and r["batch"] == batch]
        base = [r for r in ok if r.get("hnet") == hnet and r["batch"] == batch and r["model"].startswith("transformer")]
        measured = own if what == "mfu" else base
        if what in ("mfu", "T mfu") and measured:
            best = max(measured, key=lambda r: r["mfu"])
            got, text = best["mfu"], f"{best['mfu']:.1%} ({best['variant']})"
        elif what == "vs T" and own and base:
            # Each at its fastest variant: a change that speeds up only the Transformer widens the gap.
            h, t = max(own, key=lambda r: r["tflops"]), max(base, key=lambda r: r["tflops"])
            got, text = h["tflops"] / t["tflops"], f"{h['tflops'] / t['tflops']:.2f}× ({h['variant']} ÷ {t['variant']})"
        else:
            continue
        label = {"mfu": f"{hnet} MFU", "T mfu": f"matched Transformer of {hnet}: MFU",
                 "vs T": f"{hnet} FLOP throughput ÷ matched Transformer's"}[what]
        target = f"≥ {goal:.0%}" if what != "vs T" else f"≥ {goal:.2f}×"
        if got != got:  # NaN: no dense-bf16 peak known for this device (a CPU smoke run)
            text, gap = "–", "no peak FLOP/s known for this device"
        else:
            gap = "met" if got >= goal else (f"short by {goal - got:.2f}×" if what == "vs T"
                                             else f"short by {100 * (goal - got):.1f} points")
        lines.append(f"| {label} | {batch} × {unit} | {target} | {text} | {gap} |")
    if not lines:
        return []
    return ["", "**Against the goals** (best variant of each; the same command, both sides in one run):", "",
            "| goal | batch (tokens) | target | measured | gap |", "|---|---:|---:|---:|---|", *lines]


def render(record: dict) -> str:
    """The section's markdown from a :func:`new_record` filled by :func:`add_rows`."""
    rows, unit = record["rows"], record["unit"]
    by_key = {(r["model"], r["batch"], r["variant"]): r for r in rows}
    first_variant = record["variants"][0]
    lines = ["| model | layout | params | batch (tokens) | variant | compression | tokens/s | TFLOP/s | MFU | "
             f"GPU idle | peak GiB | × {first_variant} | H-Net FLOP-throughput ÷ this |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['model']} | `{r['layout']}` | {r['params'] / 1e6:.0f} M | {r['batch']} × {unit} | {r['variant']} |"
        if r["oom"]:
            lines.append(head + " out of memory | | | | | | | |")
            continue
        base = by_key.get((r["model"], r["batch"], first_variant))
        speedup = f"{r['tflops'] / base['tflops']:.2f}" if base and not base["oom"] and base is not r else ""
        hnet = by_key.get((r.get("hnet", r["model"]), r["batch"], r["variant"]))
        vs = f"{hnet['tflops'] / r['tflops']:.2f}" if "hnet" in r and hnet and not hnet["oom"] else ""
        lines.append(head + f" {r['compression']} | {r['tokens_per_s']:,.0f} | {r['tflops']:.1f} | "
                     f"{100 * r['mfu']:.1f}% | {100 * r['gpu_idle']:.0f}% | {r['peak_gib']:.1f} | {speedup} | {vs} |")
    return "\n".join([
        f"Device: **{record['device']}**, torch {record['torch']}. Forward + backward + AdamW, "
        f"bf16 autocast, fast kernels; {record['warmup']} warm-up + {record['steps']} timed steps per row.",
        "Reproduce: " + "; then ".join(f"`{c}`" for c in record["commands"]), "", *lines, "",
        f"× {first_variant}: this row's FLOP throughput over the `{first_variant}` row of the same model and batch "
        "(same run, same weights). Last column: the H-Net's FLOP throughput over this baseline's at the same batch "
        "and variant; the goal is ≥ 0.95. GPU idle: 1 − (GPU busy time in a profiled step) / (step time).",
        *goals_table(rows, unit)])


def new_record(args) -> dict:
    """How this command measures, with the rows that earlier commands of the same device and unit
    left in ``--json`` (so a sweep split over several device calls lands as one table)."""
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    record = dict(device=device, torch=torch.__version__, warmup=args.warmup, steps=args.steps, unit=args.unit,
                  variants=args.variants.split(","), commands=[], rows=[])
    if args.json and args.json.exists():
        old = json.loads(args.json.read_text())
        if (old["device"], old["unit"]) == (device, args.unit):
            record |= dict(commands=old["commands"], rows=old["rows"])
    record["commands"].append(command_line())
    return record


def add_rows(record: dict, rows: list[dict], json_path: Path | None) -> None:
    """Put ``rows`` in ``record`` (replacing earlier rows of the same model, batch and variant) and
    save it to ``json_path`` atomically, so a killed run leaves the last whole file."""
    key = lambda r: (r["model"], r["batch"], r["variant"])  # noqa: E731
    new = {key(r) for r in rows}
    record["rows"] = [r for r in record["rows"] if key(r) not in new] + rows
    if json_path:
        atomic_write_text(json_path, json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="hnet-2stage-L,dna-hnet", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--batches", default="8,16", help="8192-token units per step, comma-separated")
    parser.add_argument("--variants", default="base,fused", help="comma-separated: base, fused, compile, ckpt, a+b")
    parser.add_argument("--baselines", default="T,m", help="matched isotropic baselines: T (Transformer), m (Mamba-2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tune-steps", type=int, default=60)
    parser.add_argument("--section", default="train_throughput")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--unit", type=int, default=UNIT, help="tokens per batch unit (smaller for a CPU smoke run)")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run (implies --no-write)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", type=Path, default=None,
                        help="keep the rows here too, with those of earlier commands on the same device")
    parser.add_argument("--from-json", type=Path, default=None, help="write the section from a --json file (no GPU)")
    args = parser.parse_args()
    if args.from_json:
        write_section(args.out, args.section, render(json.loads(args.from_json.read_text())))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/train_throughput.py needs a CUDA GPU (or --device cpu for a smoke run)")
    writing = not args.no_write and args.device == "cuda"
    record = new_record(args)
    for name in args.models.split(","):
        if name not in MODELS:
            sys.exit(f"bench/train_throughput.py: --models: unknown {name!r} (use {', '.join(MODELS)})")
        cfg, window = hnet_config(name)
        jobs = [(name, cfg, {})] + [(f"{LABELS[kind]} (matched to {name})", matched_baseline(kind, cfg, window), {"hnet": name})
                                    for kind in filter(None, args.baselines.split(","))]
        for label, model_cfg, extra in jobs:
            add_rows(record, [r | extra for r in bench_model(label, model_cfg, window, args)], args.json)
            if writing:  # after every model: a run cut short by a time limit still leaves its rows
                write_section(args.out, args.section, render(record) + "\n\n(Partial: the run was cut short here.)")
    text = render(record)
    print(text)
    if writing:
        write_section(args.out, args.section, text)


if __name__ == "__main__":
    main()
