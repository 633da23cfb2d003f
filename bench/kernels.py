"""Reference vs fast kernels on CUDA: forward and forward+backward time per op.

    python bench/kernels.py                 # bf16, writes the "kernels" section of docs/benchmarks.md
    python bench/kernels.py --dtype fp32 --no-write

Sizes default to one Mamba-2 layer of a d_model=1024 stage on 8192 packed tokens (several
sequences of mixed length): SSD with 32 heads of 64 and state 128, the conv1d over
d_inner + 2 * state = 2304 channels, attention with 16 heads of 64 (full causal and a
1023-token window), and the gated RMSNorm over d_inner.  :class:`OpShapes` holds them, and
:func:`bench_ops` turns any ``OpShapes`` into result rows.  Needs a CUDA GPU.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

if __package__:  # python -m bench.kernels
    from ._report import (BENCHMARKS_MD, REPO_ROOT, command_line, cuda_time_ms, device_description,
                          markdown_table, require_cuda, write_section)
else:  # python bench/kernels.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import (BENCHMARKS_MD, REPO_ROOT, command_line, cuda_time_ms, device_description,
                         markdown_table, require_cuda, write_section)

from hnet_seq import kernels
from hnet_seq.config import SSMConfig
from hnet_seq.kernels import KernelOp

MARKER = "kernels"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class OpShapes:
    """The sizes benchmarked; defaults: a Mamba-2 layer at d_model=1024 on 8192 tokens."""

    seq_lengths: tuple[int, ...] = (3000, 2048, 1500, 1024, 520, 100)  # packed; sum = 8192
    d_model: int = 1024
    ssm: SSMConfig = SSMConfig()  # the model's own Mamba-2 defaults
    attn_heads: int = 16
    attn_headdim: int = 64
    attn_window: int = 1023

    @property
    def tokens(self) -> int:
        return sum(self.seq_lengths)

    @property
    def d_inner(self) -> int:
        return self.ssm.expand * self.d_model

    @property
    def ssd_heads(self) -> int:
        return self.d_inner // self.ssm.headdim

    @property
    def conv_channels(self) -> int:
        return self.d_inner + 2 * self.ssm.ngroups * self.ssm.d_state


@dataclass
class Case:
    """One benchmarked call: ``op(*args, **kwargs)``; ``leaves`` are the tensors that get grads."""

    op: KernelOp
    label: str
    shape: str
    args: tuple
    kwargs: dict
    leaves: list[torch.Tensor]


def _seq_idx(lengths, device) -> torch.Tensor:
    ids = torch.arange(len(lengths), device=device, dtype=torch.int32)
    return torch.repeat_interleave(ids, torch.tensor(lengths, device=device))[None]


def _cu_seqlens(lengths, device) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_()


def make_cases(s: OpShapes, dtype: torch.dtype, device: str = "cuda") -> list[Case]:
    g = torch.Generator(device=device).manual_seed(0)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, device=device)).to(dtype)

    T, h, p, n, G = s.tokens, s.ssd_heads, s.ssm.headdim, s.ssm.d_state, s.ssm.ngroups
    seq_idx = _seq_idx(s.seq_lengths, device)
    cu = _cu_seqlens(s.seq_lengths, device)
    nseq = len(s.seq_lengths)
    cases = []

    # SSD: dt_bias = softplus^-1 of a log-uniform step in [1e-3, 1e-1], A in [-16, -1], as Mamba-2.
    dt0 = torch.exp(torch.rand(h, generator=g, device=device) * math.log(100) + math.log(1e-3))
    x, dt, B, C = _leaf(randn(1, T, h, p)), _leaf(randn(1, T, h)), _leaf(randn(1, T, G, n)), _leaf(randn(1, T, G, n))
    A = _leaf(-torch.empty(h, device=device).uniform_(1, 16, generator=g))
    D, dt_bias = _leaf(torch.ones(h, device=device, dtype=dtype)), _leaf((dt0 + torch.log(-torch.expm1(-dt0))).to(dtype))
    cases.append(Case(kernels.ssd, "ssd", f"b=1 l={T} h={h} p={p} g={G} n={n} chunk={s.ssm.chunk_size}, {nseq} seqs",
                      (x, dt, A, B, C),
                      dict(chunk_size=s.ssm.chunk_size, D=D, dt_bias=dt_bias, dt_softplus=True, seq_idx=seq_idx),
                      [x, dt, A, B, C, D, dt_bias]))

    c, k = s.conv_channels, s.ssm.d_conv
    x, w, b = _leaf(randn(1, T, c)), _leaf(randn(c, k, scale=0.5)), _leaf(randn(c))
    cases.append(Case(kernels.conv1d, "conv1d", f"b=1 l={T} c={c} k={k} silu, {nseq} seqs",
                      (x, w, b, seq_idx, "silu"), {}, [x, w, b]))

    ah, ap = s.attn_heads, s.attn_headdim
    for window in (-1, s.attn_window):
        q, kk, v = _leaf(randn(T, ah, ap)), _leaf(randn(T, ah, ap)), _leaf(randn(T, ah, ap))
        label = "attention" if window < 0 else f"attention w={window}"
        cases.append(Case(kernels.attention, label,
                          f"T={T} h={ah} p={ap}, {nseq} seqs (max {max(s.seq_lengths)})",
                          (q, kk, v, cu, max(s.seq_lengths)), dict(window_size=window), [q, kk, v]))

    d = s.d_inner
    x, z, w = _leaf(randn(1, T, d)), _leaf(randn(1, T, d)), _leaf(1 + randn(d, scale=0.1))
    cases.append(Case(kernels.rmsnorm, "rmsnorm gated", f"(1, {T}, {d}), z, group={d // G}",
                      (x, w), dict(z=z, group_size=d // G, norm_before_gate=False), [x, w, z]))
    x, w = _leaf(randn(1, T, s.d_model)), _leaf(1 + randn(s.d_model, scale=0.1))
    cases.append(Case(kernels.rmsnorm, "rmsnorm", f"(1, {T}, {s.d_model})", (x, w), {}, [x, w]))
    return cases


def _runners(fn: Callable, case: Case) -> tuple[Callable[[], object], Callable[[], object]]:
    """(forward only, forward + backward) closures for ``fn`` on ``case``."""
    with torch.no_grad():
        out = fn(*case.args, **case.kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    cots = [torch.randn_like(o) for o in outs]

    def forward():
        with torch.no_grad():
            return fn(*case.args, **case.kwargs)

    def forward_backward():
        for leaf in case.leaves:
            leaf.grad = None
        result = fn(*case.args, **case.kwargs)
        torch.autograd.backward(result if isinstance(result, tuple) else (result,), cots)

    return forward, forward_backward


def _measure(fn: Callable, case: Case, warmup: int, iters: int) -> tuple[float, float] | str:
    try:
        fwd, fwd_bwd = _runners(fn, case)
        return cuda_time_ms(fwd, warmup=warmup, iters=iters), cuda_time_ms(fwd_bwd, warmup=warmup, iters=iters)
    except torch.cuda.OutOfMemoryError:
        return "out of memory"
    finally:
        for leaf in case.leaves:
            leaf.grad = None
        torch.cuda.empty_cache()


def bench_ops(shapes: OpShapes | None = None, dtype: torch.dtype = torch.bfloat16, *,
              warmup: int = 3, iters: int = 10) -> list[dict]:
    """Time reference and fast for every op; one dict per case (times in ms, or a reason)."""
    rows = []
    for case in make_cases(shapes or OpShapes(), dtype):
        row = {"op": case.label, "shape": case.shape, "dtype": str(dtype).removeprefix("torch.")}
        row["reference"] = _measure(case.op.reference, case, warmup, iters)
        fast_fn, reason = case.op.fast_impl()
        row["fast"] = _measure(fast_fn, case, warmup, iters) if fast_fn is not None else f"unavailable ({reason})"
        rows.append(row)
        print(f"  measured {case.label}", file=sys.stderr)
    return rows


def bench_model(config: Path, seq_len: int = 8192, warmup: int = 2, iters: int = 5) -> dict:
    """Whole-model forward+backward (one ``seq_len`` sequence, bf16 autocast), each backend forced."""
    from hnet_seq import HNetLM, Packing, load_config

    torch.manual_seed(0)
    model = HNetLM(load_config(config), device="cuda")
    model.init_weights()
    tokens = torch.randint(0, 256, (seq_len,), device="cuda")
    packing = Packing.from_lengths([seq_len], device="cuda")

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(tokens, packing).logits.float(), tokens)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def forward():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(tokens, packing)

    row = {"op": f"model {config.stem}", "shape": f"1x{seq_len} bytes", "dtype": "bf16 autocast"}
    for backend in ("reference", "fast"):
        with kernels.force_backend(backend):
            try:
                row[backend] = (cuda_time_ms(forward, warmup=warmup, iters=iters),
                                cuda_time_ms(train_step, warmup=warmup, iters=iters))
            except torch.cuda.OutOfMemoryError:
                row[backend] = "out of memory"
        torch.cuda.empty_cache()
    return row


def _ms(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else v


def rows_table(rows: list[dict]) -> str:
    headers = ["op", "shape", "dtype", "reference ms", "fast ms", "speedup", "reference fwd ms", "fast fwd ms"]
    body = []
    for r in rows:
        ref, fast = r["reference"], r["fast"]
        both = isinstance(ref, tuple) and isinstance(fast, tuple)
        speedup = f"{ref[1] / fast[1]:.1f}x" if both else "-"
        body.append([r["op"], r["shape"], r["dtype"],
                     _ms(ref[1]) if isinstance(ref, tuple) else ref,
                     _ms(fast[1]) if isinstance(fast, tuple) else fast, speedup,
                     _ms(ref[0]) if isinstance(ref, tuple) else "-",
                     _ms(fast[0]) if isinstance(fast, tuple) else "-"])
    return markdown_table(headers, body)


def section_markdown(rows: list[dict], warmup: int, iters: int) -> str:
    return "\n".join([
        "## Kernels: reference vs fast",
        "",
        f"Device: {device_description()}.  Median of {iters} runs after {warmup} warm-up runs, "
        "timed with CUDA events; \"ms\" is forward + backward (gradients of every input), "
        "\"fwd ms\" forward only under `torch.no_grad()`.  The reference kernels are the pure-PyTorch "
        "ones of `hnet_seq/kernels/reference.py`; the fast ones are listed in `hnet_seq/kernels/__init__.py`.",
        "",
        f"Reproduce: `{command_line()}`",
        "",
        rows_table(rows),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=BENCHMARKS_MD, help="markdown file to update")
    parser.add_argument("--model-config", type=Path, default=REPO_ROOT / "configs" / "hnet_2stage_L.json",
                        help="config of the whole-model row (forward+backward at 8k bytes)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    require_cuda("bench/kernels.py")

    rows = bench_ops(OpShapes(), DTYPES[args.dtype], warmup=args.warmup, iters=args.iters)
    rows.append(bench_model(args.model_config))
    markdown = section_markdown(rows, args.warmup, args.iters)
    print(markdown)
    if not args.no_write:
        print(f"\nwrote the '{MARKER}' section of {write_section(args.out, MARKER, markdown)}")


if __name__ == "__main__":
    main()
