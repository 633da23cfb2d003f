"""Training throughput and MFU: H-Nets against FLOP-matched isotropic baselines, one GPU.

    python bench/train_throughput.py [--sizes small,L] [--seq-len 8192] [--batch 2] [--steps 10]

For each H-Net (1- and 2-stage, a small width and the official L width) the router is first
brought to its target compression with a few steps of the ratio loss alone, so that the
inner stages see the token counts they would in training.  Isotropic "0-stage" baselines of
the same code (Transformer, Mamba-2) get the layer count whose forward FLOPs per byte best
match the H-Net's at that compression.  A step is forward + backward + AdamW, bf16 autocast,
fast kernels.  FLOPs are counted by :mod:`hnet_seq.flops` at the measured per-stage lengths;
MFU = FLOPs / time / dense bf16 peak.  Two overhead figures come from one extra step each
(see ``bench/profile_step.py``): host↔device syncs per step, and the GPU idle fraction
``1 − GPU busy time / step time``.  Results go to the ``train_throughput`` section of
``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hnet_seq import HNetLM, Packing, load_config
from hnet_seq.config import HNetConfig, config_from_dict
from hnet_seq.flops import forward_flops, lengths_at_compression, peak_flops, training_flops
from hnet_seq.nn.routing import stage_lengths

sys.path.insert(0, str(Path(__file__).parent))
from _report import write_section  # noqa: E402
from _router import tune_router  # noqa: E402
from profile_step import count_syncs, make_train_step, profile_steps, time_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SMALL_1STAGE = dict(arch_layout=["m4", ["T8"], "m4"], d_model=[512, 768], d_intermediate=[0, 2048],
                    attn_cfg=dict(num_heads=[8, 12], rotary_emb_dim=[32, 32], window_size=[1023, -1]),
                    target_compression=[6.0])
SMALL_2STAGE = dict(arch_layout=["m4", ["T1m4", ["T8"], "m4T1"], "m4"], d_model=[512, 768, 1024],
                    d_intermediate=[0, 2048, 2816],
                    attn_cfg=dict(num_heads=[8, 12, 16], rotary_emb_dim=[32, 32, 32], window_size=[1023, 1023, -1]),
                    target_compression=[3.0, 3.0])


def hnet_configs(sizes: list[str]) -> dict[str, HNetConfig]:
    out = {}
    if "small" in sizes:
        out["hnet-1stage-small"] = config_from_dict(SMALL_1STAGE)
        out["hnet-2stage-small"] = config_from_dict(SMALL_2STAGE)
    if "L" in sizes:
        for name, ratios in (("hnet_1stage_L", [6.0]), ("hnet_2stage_L", [3.0, 3.0])):
            raw = load_config(ROOT / "configs" / f"{name}.json").to_dict() | {"target_compression": ratios}
            out[name.replace("_", "-")] = config_from_dict(raw)
    return out


def matched_baseline(kind: str, hnet: HNetConfig, seq_len: int) -> HNetConfig:
    """An isotropic stack at the H-Net's outer width with the closest forward FLOPs per byte."""
    target = forward_flops(hnet, lengths_at_compression([seq_len], hnet.target_compression))
    d = hnet.d_model[0]
    heads = hnet.attn_cfg.num_heads[0]

    def build(n: int) -> HNetConfig:
        return config_from_dict(dict(arch_layout=[f"{kind}{n}"], d_model=[d],
                                     d_intermediate=[int(8 * d / 3) if kind == "T" else 0],
                                     attn_cfg=dict(num_heads=[heads], rotary_emb_dim=[32], window_size=[-1])))

    best = min(range(1, 200), key=lambda n: abs(forward_flops(build(n), [[seq_len]]) - target))
    return build(best)


def measure(name: str, cfg: HNetConfig, args) -> dict:
    torch.manual_seed(0)
    model = HNetLM(cfg, device="cuda")
    model.init_weights()
    lengths = [args.seq_len] * args.batch
    packing = Packing.from_lengths(lengths, device="cuda")
    tokens = torch.randint(0, 256, (sum(lengths),), device="cuda")
    if cfg.target_compression:
        tune_router(model, tokens, packing, cfg.target_compression)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step = make_train_step(model, tokens, packing, opt, torch.compile(model) if args.compile else None)

    ms, out = time_steps(step, args.warmup, args.steps, torch.device("cuda"))
    seconds = ms / 1e3
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    with count_syncs(torch.device("cuda")) as syncs:
        step()
    busy_ms = profile_steps(step, 1, None, torch.device("cuda"))["gpu_busy_ms_per_step"]
    per_stage = stage_lengths(packing, out.routing)
    flops = training_flops(cfg, per_stage)
    peak = peak_flops(torch.cuda.get_device_name())
    row = dict(model=name, layout=str(cfg.arch_layout).replace("'", ""), params=sum(p.numel() for p in model.parameters()),
               compression=[round(r.compression_ratio(), 2) for r in out.routing],
               tokens_per_s=sum(lengths) / seconds, tflops=flops / seconds / 1e12,
               mfu=(flops / seconds / peak) if peak else float("nan"),
               gflop_per_byte=flops / 3 / sum(lengths) / 1e9, peak_gib=peak_gib,
               syncs=sum(syncs.values()), gpu_idle=max(0.0, 1 - busy_ms / 1e3 / seconds))
    print(row, flush=True)
    del model, opt
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small,L")
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--section", default="train_throughput")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/train_throughput.py needs a CUDA GPU")
    rows = []
    for name, cfg in hnet_configs(args.sizes.split(",")).items():
        hnet = measure(name, cfg, args)
        rows.append(hnet | {"vs": ""})
        for kind, label in (("T", "transformer"), ("m", "mamba2")):
            base = measure(f"{label} (matched to {name})", matched_baseline(kind, cfg, args.seq_len), args)
            rows.append(base | {"vs": f"{hnet['tflops'] / base['tflops']:.2f}"})
    lines = ["| model | layout | params | compression | GFLOP/byte | tokens/s | TFLOP/s | MFU | syncs/step | GPU idle | peak GiB | H-Net FLOP-throughput ÷ this |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | `{r['layout']}` | {r['params'] / 1e6:.0f} M | {r['compression']} | {r['gflop_per_byte']:.3f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['tflops']:.1f} | {100 * r['mfu']:.1f}% | {r['syncs']} | {100 * r['gpu_idle']:.0f}% | "
                     f"{r['peak_gib']:.1f} | {r['vs']} |")
    write_section(args.out, args.section, "\n".join([
        f"Device: **{torch.cuda.get_device_name()}**. {args.batch} × {args.seq_len} bytes per step, bf16 autocast, "
        f"AdamW, fast kernels{', torch.compile' if args.compile else ''}.",
        f"Reproduce: `python bench/train_throughput.py --sizes {args.sizes} --seq-len {args.seq_len} --batch {args.batch}"
        f"{' --compile' if args.compile else ''}`", "",
        *lines, "",
        "The last column is the H-Net's FLOP throughput (FLOPs/s) relative to the baseline's; the goal is ≥ 0.9. "
        "syncs/step: host↔device synchronisations in one training step (CUDA's sync debug mode); GPU idle: "
        "1 − (GPU busy time in a profiled step) / (step time), the share of the step the GPU waits for the host."]))


if __name__ == "__main__":
    main()
