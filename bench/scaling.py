"""Forward+backward time and peak memory of a 2-stage H-Net against sequence length (1k–64k).

    python bench/scaling.py [--config configs/hnet_2stage_L.json] [--lengths 1024,...,65536]
    python bench/scaling.py --lengths 65536,131072,262144 --checkpointing none,blocks --fit-from 65536 \
        --section scaling_checkpointing          # training windows of 64k-256k, with activation checkpointing

One sequence per step, so the batch's total tokens grow with the sequence length; bf16
autocast, fast kernels.  Prints a table and fits the log-log slope of time and of memory
against length twice: over every length, and over the compute-bound range (≥ ``--fit-from``,
8k by default) where fixed per-step costs (kernel launches, host syncs) no longer dominate.
A slope ≤ 1.1 there means near-linear: Mamba is linear and the attention windows are bounded;
the innermost global attention sees a sequence shortened by both stages' compression.  Saves
``img/<section>.png`` and the ``--section`` (``scaling``) of ``--out`` (``docs/benchmarks.md``).
With ``--checkpointing`` (``train.activation_checkpointing``'s modes) each length runs once per
mode, on the same weights; a length that runs out of memory is reported as such, and the slopes
and the figure are those of the first mode that ran at two lengths of the fit.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from hnet_seq import HNetLM, Packing, load_config
from hnet_seq.nn.isotropic import set_activation_checkpointing

sys.path.insert(0, str(Path(__file__).parent))
from _report import command_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def slope(xs, ys) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def measure(model, length: int, repeats: int) -> tuple[float, float, list[float]]:
    tokens = torch.randint(0, 256, (length,), device="cuda")
    packing = Packing.from_lengths([length], device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(tokens, packing)
            loss = torch.nn.functional.cross_entropy(out.logits.float(), tokens)
        loss.backward()
        return out

    step()  # warm-up: Triton autotuning and allocator
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        out = step()
    end.record()
    torch.cuda.synchronize()
    ratios = [r.compression_ratio() for r in out.routing]
    return start.elapsed_time(end) / repeats, torch.cuda.max_memory_allocated() / 2**30, ratios


def measure_modes(model, lengths: list[int], modes: list[str], repeats: int) -> list[tuple]:
    """``(length, mode, ms, GiB, ratios)`` per length and checkpointing mode; ``ms`` is None on OOM."""
    rows = []
    for n in lengths:
        for mode in modes:
            set_activation_checkpointing(model, mode)
            try:
                ms, gib, ratios = measure(model, n, repeats)
            except torch.cuda.OutOfMemoryError:
                ms, gib, ratios = None, None, []
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            rows.append((n, mode, ms, gib, ratios))
            print(f"{n:>7} tokens  {mode:>6}  " + (f"{ms:9.1f} ms  {gib:6.2f} GiB  compression "
                                                  f"{['%.2f' % r for r in ratios]}" if ms else "out of memory"),
                  flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "hnet_2stage_L.json"))
    parser.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768,65536")
    parser.add_argument("--checkpointing", default="none", help="activation checkpointing modes: none,blocks,stages")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-from", type=int, default=8192, help="shortest length of the compute-bound fit")
    parser.add_argument("--section", default="scaling")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/scaling.py needs a CUDA GPU")
    torch.manual_seed(0)
    cfg = load_config(args.config)
    model = HNetLM(cfg, device="cuda")
    model.init_weights()
    modes = args.checkpointing.split(",")
    every = measure_modes(model, [int(x) for x in args.lengths.split(",")], modes, args.repeats)
    table = ["| length | activation checkpointing | fwd+bwd ms | peak GiB | compression per stage |",
             "|---:|---|---:|---:|---|"]
    table += [f"| {n} | {mode} | " + (f"{ms:.1f} | {gib:.2f} | {', '.join('%.2f' % r for r in ratios)} |" if ms
                                      else "out of memory | | |") for n, mode, ms, gib, ratios in every]
    write_section(args.out, args.section, "\n".join([
        f"Device: **{torch.cuda.get_device_name()}**, config `{Path(args.config).name}`, one sequence per step "
        "(the step's tokens = the sequence length), forward + backward, bf16 autocast, fast kernels, random init "
        "(untrained router).",
        f"Reproduce: `{command_line()}`", "", *table, "", *fit_lines(every, modes, args)]))


def fit_lines(every: list[tuple], modes: list[str], args) -> list[str]:
    """The slopes and the figure of the first mode that ran at two lengths ≥ ``--fit-from``."""
    for mode in modes:
        rows = [(n, ms, gib) for n, m, ms, gib, _ in every if m == mode and ms is not None]
        fit = [r for r in rows if r[0] >= args.fit_from]
        if len(fit) >= 2:
            break
    else:
        return [f"No slope: no mode ran at two lengths ≥ {args.fit_from}."]
    slopes = {name: (slope([r[0] for r in sel], [r[1] for r in sel]), slope([r[0] for r in sel], [r[2] for r in sel]))
              for name, sel in (("all", rows), ("fit", fit))}
    t_slope, m_slope = slopes["fit"]
    span_all = f"{rows[0][0] // 1024}k→{rows[-1][0] // 1024}k"
    span_fit = f"{fit[0][0] // 1024}k→{fit[-1][0] // 1024}k"
    # Over every length as well, where shorter (launch-bound) lengths ran than the fit range holds.
    overall = (f"; all lengths {span_all}: time {slopes['all'][0]:.3f}, memory {slopes['all'][1]:.3f}"
               if len(rows) > len(fit) else "")
    print(f"log-log slope {span_fit}: time {t_slope:.3f}, memory {m_slope:.3f}{overall}")
    img = plot(rows, args, t_slope, m_slope, span_fit)
    return [f"Log-log slope of time and peak memory against length ({mode}), compute-bound range {span_fit}: "
            f"**time {t_slope:.3f}**, **memory {m_slope:.3f}**{overall}.", "", f"![{args.section}](img/{img.name})"]


def plot(rows: list[tuple], args, t_slope: float, m_slope: float, span_fit: str) -> Path:
    """Time and peak memory against length, log-log → ``img/<section>.png`` beside ``--out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = Path(args.out).parent / "img" / f"{args.section}.png"  # beside the markdown it belongs to
    img.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].loglog([r[0] for r in rows], [r[1] for r in rows], "o-")
    ax[0].set(xlabel="sequence length (bytes)", ylabel="fwd+bwd ms", title=f"time, slope {t_slope:.2f} ({span_fit})")
    ax[1].loglog([r[0] for r in rows], [r[2] for r in rows], "o-")
    ax[1].set(xlabel="sequence length (bytes)", ylabel="peak GiB", title=f"memory, slope {m_slope:.2f} ({span_fit})")
    fig.suptitle(f"{Path(args.config).name} on {torch.cuda.get_device_name()}")
    fig.tight_layout()
    fig.savefig(img, dpi=120)
    return img


if __name__ == "__main__":
    main()
