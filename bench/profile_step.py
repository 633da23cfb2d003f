"""Profile one training step: top ops, host↔device syncs, GPU idle time, Chrome trace.

    python bench/profile_step.py [--config configs/hnet_2stage_L.json] [--batch 8] [--seq-len 8192] --out DIR
    python bench/profile_step.py --model transformer   # or mamba2: the H-Net's FLOP-matched baseline
    python bench/profile_step.py --fused off --compile on   # toggles, as in bench/train_throughput.py
    python bench/profile_step.py --device cpu --config configs/tiny_2stage.json --seq-len 256 --out DIR
    python bench/profile_step.py --compare BEFORE/summary.json AFTER/summary.json   # docs section

A step is what ``bench/train_throughput.py`` times: forward + backward + AdamW, bf16 autocast
and fast kernels on CUDA (fp32 and reference kernels on CPU), on ``batch`` sequences of
``seq-len`` bytes.  The router is first tuned to ``--targets`` (default: the config's
``target_compression``, else 3 per stage) so the inner stages see realistic lengths.

Measured, in this order (each on its own steps, so one does not disturb another):

* wall time per step (CUDA-synchronised, no profiler), tokens/s, model TFLOP/s and MFU;
* host↔device synchronisations per step and the source lines that cause them.  On CUDA these
  are the real ones (``torch.cuda.set_sync_debug_mode("warn")``); on CPU nothing syncs, so a
  ``TorchFunctionMode`` counts the calls that *would* sync on a GPU (``.item()``, ``int()``,
  ``.tolist()``, ``nonzero``, boolean-mask indexing, ``repeat_interleave`` without
  ``output_size``, …);
* under ``torch.profiler``: the top ops by self device time and by self CPU time, kernels
  launched per step, the GPU's busy time (union of kernel/memcpy/memset intervals) and hence
  the idle fraction ``1 − busy / wall``.

``--out DIR`` receives ``trace.json.gz`` (open in Perfetto or chrome://tracing) and
``summary.json``.  To compare two source trees with the same command, point ``PYTHONPATH``
at the tree whose ``hnet_seq`` should be measured; ``summary.json`` records which one ran.
``--compare`` writes the ``profile`` section of ``docs/benchmarks.md`` from two summaries.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

import torch

from hnet_seq import HNetLM, Packing, kernels, load_config
from hnet_seq.config import HNetConfig, config_from_dict
from hnet_seq.flops import forward_flops, lengths_at_compression, peak_flops, training_flops
from hnet_seq.nn.routing import stage_lengths

sys.path.insert(0, str(Path(__file__).parent))
from _profile import count_syncs, profile_steps, source_tree, time_steps  # noqa: E402
from _report import command_line, write_section  # noqa: E402
from _router import tune_router  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- the step itself


def make_train_step(model: HNetLM, tokens: torch.Tensor, packing: Packing, opt: torch.optim.Optimizer,
                    compile: bool = False):
    """A closure running one forward + backward + optimizer step; returns the routing outputs.

    The loss is next-token cross-entropy through the ``linear_ce`` kernel op (head + loss; its
    fast version never holds the full fp32 logits).  ``compile``: the backbone runs under
    ``torch.compile(dynamic=True)`` (one graph for every chunked length).  bf16 autocast on
    CUDA, none on CPU.
    """
    backbone = torch.compile(model.backbone, dynamic=True) if compile else model.backbone
    cuda = tokens.device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    def step():
        with autocast():
            hidden, routing = backbone(model.embeddings(tokens), packing)
            loss = kernels.linear_ce(hidden[:-1], model.lm_head.weight, tokens[1:]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return routing

    return step


@contextlib.contextmanager
def fused_ops(on: bool):
    """The fused kernel ops (``add_rmsnorm``, ``swiglu``, ``linear_ce``) fast (on CUDA; they are
    opt-in, so "auto" would not pick them) or reference."""
    choice = "fast" if on and torch.cuda.is_available() else "reference"
    with contextlib.ExitStack() as stack:
        for op in kernels.FUSED_OPS:
            stack.enter_context(kernels.force_backend(choice, op.name))
        yield


def matched_baseline(kind: str, hnet: HNetConfig, seq_len: int) -> HNetConfig:
    """An isotropic ``kind`` (``T`` or ``m``) stack at the H-Net's outer width with the closest
    forward FLOPs per byte at the H-Net's target compression."""
    target = forward_flops(hnet, lengths_at_compression([seq_len], hnet.target_compression))
    d = hnet.d_model[0]
    heads, rotary = hnet.attn_cfg.num_heads[0], hnet.attn_cfg.rotary_emb_dim[0]

    def build(n: int) -> HNetConfig:
        return config_from_dict(dict(arch_layout=[f"{kind}{n}"], d_model=[d], vocab_size=hnet.vocab_size,
                                     d_intermediate=[int(8 * d / 3) if kind == "T" else 0], ssm_cfg=dataclasses.asdict(hnet.ssm_cfg),
                                     attn_cfg=dict(num_heads=[heads], rotary_emb_dim=[rotary], window_size=[-1])))

    best = min(range(1, 200), key=lambda n: abs(forward_flops(build(n), [[seq_len]]) - target))
    return build(best)


# --------------------------------------------------------------------------------- driver


def build(args, device: torch.device):
    """The model ``--model`` names (the H-Net of ``--config``, or its matched baseline), its
    config, the packed batch, and the router tuned to ``--targets``."""
    cfg = load_config(args.config)
    targets = ([float(t) for t in args.targets.split(",")] if args.targets
               else list(cfg.target_compression) or [3.0] * (cfg.num_stages - 1))
    if args.model != "hnet":
        cfg = dataclasses.replace(cfg, target_compression=targets)
        cfg = matched_baseline({"transformer": "T", "mamba2": "m"}[args.model], cfg, args.seq_len)
    torch.manual_seed(0)
    model = HNetLM(cfg, device=device)
    model.init_weights()
    lengths = [args.seq_len] * args.batch
    packing = Packing.from_lengths(lengths, device=device)
    tokens = torch.randint(0, cfg.vocab_size, (sum(lengths),), device=device)
    if targets and cfg.num_stages > 1 and args.tune_steps:
        tune_router(model, tokens, packing, targets, steps=args.tune_steps)
    return cfg, model, tokens, packing


def run(args) -> dict:
    device = torch.device(args.device)
    cfg, model, tokens, packing = build(args, device)
    lengths = [args.seq_len] * args.batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    with fused_ops(args.fused == "on"):
        return _measure(args, device, cfg, model, tokens, packing, lengths,
                        make_train_step(model, tokens, packing, opt, compile=args.compile == "on"))


def _measure(args, device, cfg, model, tokens, packing, lengths, step) -> dict:
    step_ms, routing = time_steps(step, args.warmup, args.steps, device)

    with count_syncs(device) as sites:
        step()
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    prof = profile_steps(step, args.profile_steps, out_dir, device)

    per_stage = stage_lengths(packing, routing)
    flops = training_flops(cfg, per_stage)
    peak = peak_flops(torch.cuda.get_device_name()) if device.type == "cuda" else None
    summary = dict(
        command=command_line(), tree=source_tree(), torch=torch.__version__,
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        config=Path(args.config).name, model=args.model, layout=str(cfg.arch_layout),
        fused=args.fused, compile=args.compile, batch=args.batch, seq_len=args.seq_len,
        kernels={op.name: op.backend_for(device) for op in kernels.ALL_OPS},
        stage_tokens=[sum(s) for s in per_stage], compression=[round(r.compression_ratio(), 2) for r in routing],
        step_ms=step_ms, tokens_per_s=sum(lengths) / step_ms * 1e3, tflops=flops / step_ms / 1e9,
        mfu=flops / step_ms * 1e3 / peak if peak else None,
        syncs_per_step=sum(sites.values()), sync_sites=sites.most_common(),
        **prof,
    )
    if "gpu_busy_ms_per_step" in summary:
        summary["gpu_idle_fraction"] = max(0.0, 1 - summary["gpu_busy_ms_per_step"] / step_ms)
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def print_summary(s: dict) -> None:
    print(f"{s['config']} {s.get('model', 'hnet')} `{s.get('layout', '')}` on {s['device']} "
          f"({s['tree']['hnet_seq']} @ {s['tree']['commit']}), {s['batch']} × {s['seq_len']} tokens, "
          f"fused {s.get('fused')}, compile {s.get('compile')}, kernels {s['kernels']}")
    print(f"stage tokens {s['stage_tokens']}, compression {s['compression']}")
    print(f"step {s['step_ms']:.1f} ms, {s['tokens_per_s']:,.0f} tokens/s, {s['tflops']:.1f} TFLOP/s"
          + (f", MFU {100 * s['mfu']:.1f}%" if s.get("mfu") else ""))
    if "gpu_idle_fraction" in s:
        print(f"GPU busy {s['gpu_busy_ms_per_step']:.1f} ms/step → idle {100 * s['gpu_idle_fraction']:.1f}%; "
              f"{s['kernels_per_step']:.0f} kernels/step, median {s['median_kernel_us']:.1f} µs, "
              f"{100 * s['short_kernel_share']:.0f}% under 10 µs")
    kind = "syncs" if s["device"] != "cpu" else "would-be syncs (CPU run)"
    print(f"{s['syncs_per_step']} {kind} per step:")
    for site, n in s["sync_sites"][:25]:
        print(f"  {n:5d}  {site}")
    for key, title in (("top_device_ops", "self device time"), ("top_cpu_ops", "self CPU time")):
        if key in s:
            print(f"top ops by {title} (ms per step):")
            for r in s[key]:
                print(f"  {r['self_ms_per_step']:9.3f}  {r['calls_per_step']:7.1f}×  {r['op']}")


# ------------------------------------------------------------------------ the docs section


def _site_totals(summary: dict) -> Counter:
    """Syncs per source line (the ``op:`` prefix dropped)."""
    totals: Counter = Counter()
    for site, n in summary["sync_sites"]:
        totals[site.split(": ", 1)[-1]] += n
    return totals


def compare_section(before: dict, after: dict) -> str:
    """Markdown: the same command on two trees, metric by metric, and where the syncs went."""
    if (before["device"], before["config"], before["batch"], before["seq_len"]) != \
            (after["device"], after["config"], after["batch"], after["seq_len"]):
        raise SystemExit("--compare: the two summaries are not the same device/config/batch/length")

    def fmt(value, spec):
        return "–" if value is None else format(value, spec)

    metrics = [("step time (ms)", "step_ms", ".1f"), ("tokens/s", "tokens_per_s", ",.0f"),
               ("model TFLOP/s", "tflops", ".1f"), ("MFU", "mfu", ".1%"),
               ("host↔device syncs per step", "syncs_per_step", "d"),
               ("GPU busy per step (ms)", "gpu_busy_ms_per_step", ".1f"),
               ("GPU idle fraction", "gpu_idle_fraction", ".1%"),
               ("kernels per step", "kernels_per_step", ",.0f"),
               ("median kernel (µs)", "median_kernel_us", ".1f")]
    rows = ["| | before | after |", "|---|---:|---:|"]
    rows += [f"| {label} | {fmt(before.get(k), spec)} | {fmt(after.get(k), spec)} |" for label, k, spec in metrics]
    rows.append(f"| tokens per stage | {before['stage_tokens']} | {after['stage_tokens']} |")
    b_sites, a_sites = _site_totals(before), _site_totals(after)
    sites = ["| sync site | before | after |", "|---|---:|---:|"]
    sites += [f"| `{site}` | {b_sites.get(site, 0)} | {a_sites.get(site, 0)} |"
              for site, _ in (b_sites + a_sites).most_common(20)]
    def tree(s):  # the commit when the tree was a git checkout, else its directory
        t = s["tree"]
        return t["hnet_seq"] if t["commit"] is None else t["commit"][:12] + (" (+local changes)" if t["dirty"] else "")

    backends = ", ".join(f"{op} {backend}" for op, backend in after["kernels"].items())
    return "\n".join([
        f"Device: **{after['device']}**, torch {after['torch']}. `{after['config']}`, {after['batch']} × "
        f"{after['seq_len']} bytes per step, forward + backward + AdamW; kernels: {backends}.",
        f"Before: `{tree(before)}`; after: `{tree(after)}`; the same command on both trees:",
        f"`{after['command']}`", "",
        *rows, "",
        f"Speed-up of a training step: **{before['step_ms'] / after['step_ms']:.2f}×**. "
        "Sync sites (source lines in the tree that ran; line numbers differ between trees):", "",
        *sites])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "hnet_2stage_L.json"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=("hnet", "transformer", "mamba2"), default="hnet",
                        help="the H-Net of --config, or its FLOP-matched isotropic baseline")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--targets", default="", help="router compression per stage, e.g. 3,3")
    parser.add_argument("--tune-steps", type=int, default=60, help="ratio-loss steps for the router (0: none)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (no profiler)")
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--fused", choices=("off", "on"), default="on", help="fused kernel ops (add_rmsnorm, swiglu, linear_ce)")
    parser.add_argument("--compile", choices=("off", "on"), default="off", help="torch.compile the backbone")
    parser.add_argument("--out", help="directory for trace.json.gz and summary.json")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="write the docs section from two summary.json files instead of profiling")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--section", default="profile")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.compare)
        print(f"wrote {write_section(args.doc, args.section, compare_section(before, after))}")
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/profile_step.py: no CUDA device (use --device cpu)")
    print_summary(run(args))


if __name__ == "__main__":
    main()
