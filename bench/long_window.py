"""Long windows in one piece: embed one 8 k, 100 k and 1 M bp window in a single forward pass.

    python bench/long_window.py [--lengths 8192,100000,1000000] [--section long_window]
    python bench/long_window.py --device cpu --size tiny --lengths 2048,8192 --no-write   # smoke run

The model is ``bench/inference.py``'s ~100 M-parameter 1-stage DNA H-Net (router tuned to 3
bases per chunk).  Each length is one record embedded through ``hnet_seq.inference.embed``
with ``window`` equal to its length, so the whole record is one tile and one forward pass
(no tiling, no overlap), bf16, no gradients, no logits (pooled embeddings need only the
hidden states).  One warm-up run per length (Triton autotuning), then the timed run; peak GPU
memory is ``torch.cuda.max_memory_allocated`` over the timed run.  A length that does not fit
is reported as out of memory.  Results go to the ``--section`` of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _inference_measure import PACKAGED, bench_embed, build_model, dna_records  # noqa: E402
from _report import command_line, write_section  # noqa: E402


def measure(im, length: int) -> dict:
    """Embed one ``length``-bp record (the packaged genome, repeated) in one window."""
    parts = dna_records([PACKAGED], length)
    records = [type(parts[0])("window", np.concatenate([r.data for r in parts])[:length], {})]
    try:
        bench_embed(im, records, window=length, chunks=False, rc=False, batch_tokens=length)
        return dict(length=length, records=len(records), **bench_embed(im, records, window=length, chunks=False,
                                                                        rc=False, batch_tokens=length))
    except torch.cuda.OutOfMemoryError:
        return dict(length=length, oom=True)
    except RuntimeError as e:  # e.g. a kernel's illegal memory access: the CUDA context is lost
        return dict(length=length, error=f"{type(e).__name__}: {str(e).splitlines()[0]}")


def render(rows: list[dict], device: str, params: float) -> str:
    lines = ["| window (bp) | forward passes | bp/s | seconds | peak GPU GiB |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("oom") or r.get("error"):
            lines.append(f"| {r['length']:,} | 1 | {'out of memory' if r.get('oom') else r['error']} | | |")
        else:
            lines.append(f"| {r['length']:,} | {r['records']} | {r['bp_per_s']:,.0f} | {r['seconds']:.3f} | "
                         f"{r['gpu_gib']:.2f} |")
    return "\n".join([
        f"Device: **{device}**, torch {torch.__version__}. DNA H-Net `m4 [T12] m4` ({params / 1e6:.0f} M parameters, "
        "router at 3 bases per chunk), one window per row embedded in one forward pass (`embed`, window = length), "
        "bf16, pooled mean.", f"Reproduce: `{command_line()}`", "", *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="8192,100000,1000000")
    parser.add_argument("--size", default="100m", choices=("100m", "tiny"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tune-steps", type=int, default=60)
    parser.add_argument("--section", default="long_window")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/long_window.py: needs a CUDA GPU (or --device cpu for a smoke run)")
    im, cfg, _ = build_model(args.size, device, args.tune_steps)
    rows = []
    for length in (int(n) for n in args.lengths.split(",")):
        rows.append(measure(im, length))
        print(rows[-1], flush=True)
        if rows[-1].get("error"):
            break  # no later length can run in a lost CUDA context
    params = sum(p.numel() for p in im.model.parameters())
    text = render(rows, torch.cuda.get_device_name() if device.type == "cuda" else "cpu", params)
    print(text)
    if not args.no_write and device.type == "cuda":
        write_section(args.out, args.section, text)


if __name__ == "__main__":
    main()
