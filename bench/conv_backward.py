"""The Triton conv1d at training shapes: this tree's kernels beside another version's, in one run.

    git show REV:hnet_seq/kernels/conv_triton.py > .data/conv_triton_before.py   # here
    python bench/conv_backward.py --before .data/conv_triton_before.py          # on the GPU

Times forward and forward + backward (gradients of x, weight and bias) of ``conv1d_fast`` with
CUDA events, at the packed shape of one Mamba-2 layer of a training step at 8 × 8192 tokens with
d_model 1024 (2,304 conv channels: the matched Mamba-2 of ``hnet_2stage_L`` and that H-Net's
first two stages; ``--channels`` for others), k = 4, SiLU, 8 sequences.  Each version is checked
against the reference first (same inputs), so a faster wrong kernel cannot win.
"Backward GB/s" counts the least the backward must move (read x and dy, write dx, in the input
dtype) over its time (forward + backward minus forward); the H200's HBM moves ~4.8 TB/s.
Writes the ``conv_backward`` section of docs/benchmarks.md.  ``--device cpu`` with
``TRITON_INTERPRET=1`` in the environment is a smoke run in Triton's interpreter (the tests).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (BENCHMARKS_MD, command_line, cuda_time_ms, device_description, markdown_table,  # noqa: E402
                     require_cuda, write_section)

from hnet_seq.kernels import conv_triton  # noqa: E402
from hnet_seq.kernels.reference import conv1d_reference  # noqa: E402

MARKER = "conv_backward"


def load_version(path: Path):
    """``conv_triton.py`` of another tree, imported beside this one (its kernels get their own names)."""
    spec = importlib.util.spec_from_file_location("hnet_seq.kernels._conv_triton_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inputs(tokens: int, channels: int, k: int, sequences: int, dtype: torch.dtype, device: str):
    g = torch.Generator(device=device).manual_seed(0)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, device=device, generator=g)).to(dtype)

    x, w, b = randn(1, tokens, channels).requires_grad_(), randn(channels, k, scale=0.5).requires_grad_(), \
        randn(channels).requires_grad_()
    seq_idx = (torch.arange(tokens, device=device) * sequences // tokens).to(torch.int32)[None]
    return x, w, b, seq_idx, randn(1, tokens, channels)


def median_ms(fn, device: str, warmup: int, iters: int) -> float:
    if device == "cuda":
        return cuda_time_ms(fn, warmup=warmup, iters=iters)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(conv, x, w, b, seq_idx, dy, warmup: int, iters: int) -> dict:
    """Forward and forward + backward ms of ``conv`` (a ``conv1d_fast``), after checking its gradients."""
    def fwd():
        with torch.no_grad():
            return conv(x, w, b, seq_idx, "silu")

    def fwd_bwd():
        torch.autograd.grad(conv(x, w, b, seq_idx, "silu"), (x, w, b), dy)

    got = torch.autograd.grad(conv(x, w, b, seq_idx, "silu"), (x, w, b), dy)
    want = torch.autograd.grad(conv1d_reference(x, w, b, seq_idx, "silu"), (x, w, b), dy)
    error = max(((g.float() - r.float()).abs().max() / r.float().abs().max()).item() for g, r in zip(got, want))
    device = x.device.type
    return dict(fwd_ms=median_ms(fwd, device, warmup, iters), fwd_bwd_ms=median_ms(fwd_bwd, device, warmup, iters),
                error=error)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, default=None, help="conv_triton.py of the tree to compare with")
    ap.add_argument("--tokens", type=int, default=8 * 8192)
    ap.add_argument("--channels", default="2304", help="conv channels, comma-separated")
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", type=Path, default=BENCHMARKS_MD)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run (implies --no-write)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        require_cuda("bench/conv_backward.py")
    versions = {"this tree": conv_triton}
    if args.before:
        versions = {f"before (`{args.before.name}`)": load_version(args.before), **versions}
    rows = []
    for channels in (int(c) for c in args.channels.split(",")):
        x, w, b, seq_idx, dy = inputs(args.tokens, channels, 4, args.sequences, torch.bfloat16, args.device)
        least = 3 * x.numel() * x.element_size()  # bytes: read x and dy, write dx
        for name, module in versions.items():
            r = measure(module.conv1d_fast, x, w, b, seq_idx, dy, args.warmup, args.iters)
            bwd_ms = r["fwd_bwd_ms"] - r["fwd_ms"]
            rows.append([name, f"(1, {args.tokens}, {channels}), k=4, silu, {args.sequences} seqs",
                         f"{r['fwd_ms']:.3f}", f"{r['fwd_bwd_ms']:.3f}", f"{bwd_ms:.3f}",
                         f"{least / bwd_ms / 1e6:.0f}", f"{r['error']:.1e}"])
            print(rows[-1], flush=True)
    markdown = "\n".join([
        f"Device: {device_description() if args.device == 'cuda' else 'cpu (interpreter)'}. bf16, median of {args.iters} runs after {args.warmup} warm-up runs "
        "(CUDA events); backward = forward + backward − forward; GB/s = (x + dy + dx bytes) / backward time; "
        "error: max |fast − reference| / max |reference| over the three gradients.",
        f"Reproduce: `{command_line()}`", "",
        markdown_table(["version", "shape", "fwd ms", "fwd+bwd ms", "bwd ms", "bwd GB/s", "error"], rows)])
    print(markdown)
    if not args.no_write and args.device == "cuda":
        write_section(args.out, MARKER, markdown)


if __name__ == "__main__":
    main()
