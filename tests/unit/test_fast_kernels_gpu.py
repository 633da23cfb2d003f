"""Every fast kernel against its reference, forward and backward (CUDA, marked ``gpu``).

Errors are relative: ``max|a - b| / max|b|``, with ``b`` the reference.
"""
from __future__ import annotations

import pytest
import torch
from helpers import assert_close_all, cu_from_lengths, grads, seq_idx_from_lengths, ssd_inputs

from hnet_seq import kernels
from hnet_seq.kernels.reference import (attention_reference, conv1d_reference, rmsnorm_reference,
                                        ssd_reference)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _fast_or_skip(op_name: str):
    fn, reason = getattr(kernels, op_name).fast_impl()
    if fn is None:
        pytest.skip(f"fast {op_name} unavailable: {reason}")
    return fn


# Relative error max|fast - ref| / max|ref|: 1e-3 for fp32 (the SSD kernels run fp32 products as
# TF32x3, fp32 attention takes SDPA: see kernels/fast.py), 1e-2 for bf16.
GPU_TOL = {(op, dtype): 1e-3 if dtype == torch.float32 else 1e-2
           for op in ("ssd", "conv1d", "attention", "rmsnorm") for dtype in (torch.float32, torch.bfloat16)}
DTYPES = [torch.float32, torch.bfloat16]
ROWS = [[100, 1, 150, 49], [7, 293]]  # b=2, l=300, mixed lengths, a length-1 sequence


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("variant", ["mamba2", "dechunk"])
@pytest.mark.parametrize("final_state", [False, True])
def test_ssd_fast_matches_reference(dtype, variant, final_state):
    ssd_fast = _fast_or_skip("ssd")
    dev = "cuda"
    seq_idx = seq_idx_from_lengths(ROWS).to(dev)
    if variant == "mamba2":
        x, dt, A, B, C, D, dt_bias = (t.to(dev) for t in ssd_inputs(2, 300, 4, 32, 2, 32, dtype=dtype))
        kw = dict(chunk_size=64, D=D, dt_bias=dt_bias, dt_softplus=True)
    else:  # hnet_seq.nn.chunking.dechunk: n = 1, fp32 B/C/dt, A = -1
        x = torch.randn(2, 300, 4, 32, device=dev).to(dtype)
        p = torch.rand(2, 300, device=dev) * 0.98 + 0.01
        dt = (-torch.log1p(-p))[..., None].expand(2, 300, 4).contiguous()
        A = -torch.ones(4, device=dev)
        B, C = (p / dt[..., 0])[..., None, None], torch.ones(2, 300, 1, 1, device=dev)
        kw = dict(chunk_size=256)
    leaves = {"x": x, "dt": dt, "B": B, "C": C}
    if variant == "mamba2":
        leaves.update(A=A, D=kw["D"], dt_bias=kw["dt_bias"])
    for t in leaves.values():
        t.requires_grad_()
    args = (x, dt, A, B, C)
    out_f = ssd_fast(*args, seq_idx=seq_idx, return_final_state=final_state, **kw)
    out_r = ssd_reference(*args, seq_idx=seq_idx, return_final_state=final_state, **kw)
    y_f, y_r = (o[0] if final_state else o for o in (out_f, out_r))
    assert y_f.dtype == y_r.dtype == dtype
    if final_state:
        assert out_f[1].dtype == torch.float32
    cot = tuple(torch.randn_like(o) for o in (out_r if final_state else (out_r,)))
    want = grads(out_r, leaves, cot)
    scales = {}
    if variant == "mamba2":
        # dt_bias and D get sums over all 600 positions of terms of both signs, so the sum can be
        # far smaller than its terms, and round-off in the terms is relative to the terms: the
        # error of a sum is bounded by (relative error) x (sum of |terms|), which is the scale
        # here.  (bf16 inputs: mamba-ssm keeps chunk states in bf16, and its ddt_bias reached
        # 1.7e-2 of max|ddt_bias| on the H100 while 3e-3 of the terms' magnitude.)
        scales["ddt_bias"] = want["ddt"].float().abs().sum((0, 1)).max().item()
        scales["dD"] = (x.float() * cot[0].float()).abs().sum((0, 1, 3)).max().item()
    assert_close_all(grads(out_f, leaves, cot), want, GPU_TOL["ssd", dtype], scales)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("k,bias,resets,act", [(4, True, True, "silu"), (2, False, True, None),
                                              (4, True, False, "silu"), (3, True, False, None)])
def test_conv1d_fast_matches_reference(dtype, k, bias, resets, act):
    conv1d_fast = _fast_or_skip("conv1d")
    dev, c = "cuda", 200  # not a multiple of the channel tile
    full = torch.randn(2, 300, c + 64, device=dev).to(dtype)
    x = full[..., 32:32 + c].detach().requires_grad_()  # strided, like the split of in_proj
    w = (0.5 * torch.randn(c, k, device=dev)).to(dtype).requires_grad_()
    b = torch.randn(c, device=dev).to(dtype).requires_grad_() if bias else None
    seq_idx = seq_idx_from_lengths(ROWS).to(dev) if resets else None
    leaves = {"x": x, "w": w, "b": b}
    cot = torch.randn(2, 300, c, device=dev).to(dtype)
    got = grads(conv1d_fast(x, w, b, seq_idx, act), leaves, cot)
    want = grads(conv1d_reference(x, w, b, seq_idx, act), leaves, cot)
    assert got["out0"].dtype == dtype
    assert_close_all(got, want, GPU_TOL["conv1d", dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("window,scale", [(-1, None), (16, None), (0, 0.3), (1023, None)])
def test_attention_fast_matches_reference(dtype, window, scale):
    attention_fast = _fast_or_skip("attention")
    dev = "cuda"
    lengths = [1, 37, 200, 0, 5, 130]
    cu = cu_from_lengths(lengths).to(dev)
    q, k, v = (torch.randn(sum(lengths), 4, 64, device=dev).to(dtype).requires_grad_() for _ in range(3))
    leaves = {"q": q, "k": k, "v": v}
    cot = torch.randn_like(q)
    kw = dict(window_size=window, softmax_scale=scale)
    got = grads(attention_fast(q, k, v, cu, max(lengths), **kw), leaves, cot)
    want = grads(attention_reference(q, k, v, cu, max(lengths), **kw), leaves, cot)
    assert got["out0"].dtype == dtype
    assert_close_all(got, want, GPU_TOL["attention", dtype])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("lengths", [[256] * 4, [250, 256, 0, 240, 230]], ids=["equal", "ragged"])
def test_attention_fast_dense_and_varlen_paths_match_reference(lengths):
    """bf16 batches: cuDNN's SDPA on Hopper for equal lengths (a view), the varlen kernel for ragged
    ones and whenever that path is switched off; each against the reference."""
    from hnet_seq.kernels.dense_attention import dense_applies, dense_sdpa

    attention_fast = _fast_or_skip("attention")
    cu = cu_from_lengths(lengths).to("cuda")
    q, k, v = (torch.randn(sum(lengths), 4, 64, device="cuda").to(torch.bfloat16).requires_grad_() for _ in range(3))
    hopper = torch.cuda.get_device_capability()[0] == 9
    assert dense_applies(q, len(lengths), max(lengths), -1) == (hopper and len(set(lengths)) == 1)
    leaves, cot = {"q": q, "k": k, "v": v}, torch.randn_like(q)
    want = grads(attention_reference(q, k, v, cu, max(lengths)), leaves, cot)
    for dense in (True, False):
        with dense_sdpa(dense):
            got = grads(attention_fast(q, k, v, cu, max(lengths)), leaves, cot)
        assert_close_all(got, want, GPU_TOL["attention", torch.bfloat16])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("gated,norm_before_gate,group_size", [
    (False, False, None), (True, False, None), (True, True, 32), (True, False, 48)])
def test_rmsnorm_fast_matches_reference(dtype, gated, norm_before_gate, group_size):
    rmsnorm_fast = _fast_or_skip("rmsnorm")
    dev = "cuda"
    x = torch.randn(2, 70, 96, device=dev).to(dtype).requires_grad_()
    w = (1 + 0.1 * torch.randn(96, device=dev)).to(dtype).requires_grad_()
    z = torch.randn(2, 70, 96, device=dev).to(dtype).requires_grad_() if gated else None
    leaves = {"x": x, "w": w, "z": z}
    cot = torch.randn_like(x)
    kw = dict(z=z, eps=1e-5, group_size=group_size, norm_before_gate=norm_before_gate)
    got = grads(rmsnorm_fast(x, w, **kw), leaves, cot)
    want = grads(rmsnorm_reference(x, w, **kw), leaves, cot)
    assert got["out0"].dtype == dtype
    assert_close_all(got, want, GPU_TOL["rmsnorm", dtype])
