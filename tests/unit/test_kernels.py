"""Kernels: the references against brute-force definitions (CPU), the Triton conv1d in Triton's
interpreter (CPU), the fast wrappers' plumbing against stand-in backends (CPU), and every fast
kernel against its reference, forward and backward (CUDA, marked ``gpu``).

Errors are relative: ``max|a - b| / max|b|``, with ``b`` the reference.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hnet_seq import kernels
from hnet_seq.kernels import fast
from hnet_seq.kernels.reference import (attention_reference, conv1d_reference, rmsnorm_reference,
                                        ssd_reference)

KERNELS_DIR = Path(kernels.__file__).resolve().parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def rel_err(a: torch.Tensor, b: torch.Tensor, scale: float | None = None) -> float:
    """``max|a - b| / scale``, the scale being ``max|b|`` unless given."""
    a, b = a.detach().float(), b.detach().float()
    scale = b.abs().max().item() if scale is None else scale
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def assert_close_all(got: dict, want: dict, tol: float, scales: dict | None = None) -> None:
    """Every tensor of ``got`` within ``tol`` relative error of ``want``; reports all of them.
    ``scales`` replaces ``max|want|`` as the denominator for the names it lists."""
    scales = scales or {}
    errs = {name: rel_err(got[name], want[name], scales.get(name)) for name in want}
    bad = {name: f"{e:.2e}" for name, e in errs.items() if not e <= tol}
    assert not bad, f"relative error over {tol:g}: {bad} (all: { {n: f'{e:.1e}' for n, e in errs.items()} })"


def seq_idx_from_lengths(rows: list[list[int]]) -> torch.Tensor:
    """``(b, l)`` int32 sequence ids, one list of sequence lengths per row (each row sums to l)."""
    out = []
    for lengths in rows:
        out.append(torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32),
                                           torch.tensor(lengths)))
    return torch.stack(out)


def cu_from_lengths(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def grads(out, inputs: dict, cotangent) -> dict:
    """``{"out": out, "d<name>": grad}`` for the inputs that require grad."""
    outs = out if isinstance(out, tuple) else (out,)
    cots = cotangent if isinstance(cotangent, tuple) else (cotangent,)
    names = [n for n, t in inputs.items() if t is not None and t.requires_grad]
    gs = torch.autograd.grad(outs, [inputs[n] for n in names], cots)
    result = {f"out{i}": o for i, o in enumerate(outs)}
    result.update({f"d{n}": g for n, g in zip(names, gs)})
    return result


# ------------------------------------------------------------------ brute-force definitions

def ssd_naive(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, seq_idx=None):
    """One step at a time: ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t``, ``y_t = C_t h_t + D x_t``."""
    x, dt, A, B, C = (t.float() for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    b, l, h, p = x.shape
    rep = h // B.shape[2]
    state = x.new_zeros(b, h, p, B.shape[-1])
    ys = []
    for t in range(l):
        if seq_idx is not None and t > 0:
            keep = (seq_idx[:, t] == seq_idx[:, t - 1]).float()
            state = state * keep[:, None, None, None]
        Bt, Ct = B[:, t].repeat_interleave(rep, 1), C[:, t].repeat_interleave(rep, 1)  # (b, h, n)
        decay = torch.exp(dt[:, t] * A)  # (b, h)
        state = decay[..., None, None] * state + (dt[:, t, :, None] * x[:, t])[..., None] * Bt[:, :, None]
        y = (state * Ct[:, :, None]).sum(-1)
        if D is not None:
            y = y + D.float()[:, None] * x[:, t]
        ys.append(y)
    return torch.stack(ys, 1), state


def conv1d_naive(x, weight, bias, seq_idx, activation):
    """``F.conv1d`` (groups=c, left padding k-1) on every sequence separately."""
    b, l, c = x.shape
    k = weight.shape[1]
    out = torch.zeros(b, l, c)
    for r in range(b):
        ids = seq_idx[r] if seq_idx is not None else torch.zeros(l, dtype=torch.int32)
        starts = [0] + [t for t in range(1, l) if ids[t] != ids[t - 1]] + [l]
        for s, e in zip(starts[:-1], starts[1:]):
            seg = x[r, s:e].float().t()[None]  # (1, c, n)
            y = F.conv1d(seg, weight.float()[:, None], None if bias is None else bias.float(),
                         padding=k - 1, groups=c)[0, :, : e - s]
            out[r, s:e] = y.t()
    return F.silu(out) if activation == "silu" else out


def attention_naive(q, k, v, cu_seqlens, window_size, softmax_scale):
    """An explicit softmax for every query: keys ``max(start, i - window) .. i``."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    out = torch.zeros(q.shape)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        for i in range(start, end):
            lo = start if window_size < 0 else max(start, i - window_size)
            scores = torch.einsum("hp,jhp->hj", q[i].float(), k[lo:i + 1].float()) * scale
            out[i] = torch.einsum("hj,jhp->hp", scores.softmax(-1), v[lo:i + 1].float())
    return out


def rmsnorm_naive(x, weight, z, eps, group_size, norm_before_gate):
    x = x.float()
    gate = z.float() * torch.sigmoid(z.float()) if z is not None else None
    if gate is not None and not norm_before_gate:
        x = x * gate
    d = x.shape[-1]
    gs = group_size or d
    xg = x.reshape(*x.shape[:-1], d // gs, gs)
    y = (xg / torch.sqrt((xg * xg).mean(-1, keepdim=True) + eps)).reshape(x.shape) * weight.float()
    if gate is not None and norm_before_gate:
        y = y * gate
    return y


# ------------------------------------------------------------------------ references (CPU)

def _ssd_inputs(b, l, h, p, g, n, *, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen)
    dt = torch.randn(b, l, h, generator=gen) - 1.0
    A = -torch.exp(torch.rand(h, generator=gen) * 1.5)
    B = torch.randn(b, l, g, n, generator=gen)
    C = torch.randn(b, l, g, n, generator=gen)
    D = torch.randn(h, generator=gen)
    dt_bias = 0.5 * torch.randn(h, generator=gen)
    return [t.to(dtype) if t is not A else t for t in (x, dt, A, B, C, D, dt_bias)]


SSD_CASES = {
    # name: (l, g, chunk_size, seq_idx rows, D/dt_bias/softplus)
    "plain": (37, 1, 8, None, False),
    "groups_resets_extras": (37, 2, 8, [[10, 1, 6, 20], [16, 21]], True),  # a reset at a chunk edge
    "one_chunk_longer_than_l": (37, 2, 64, [[30, 7], [37]], True),
    "chunk_divides_l": (40, 1, 8, [[3, 1, 1, 35], [38, 2]], True),
}


@pytest.mark.parametrize("case", SSD_CASES)
def test_ssd_reference_matches_recurrence(case):
    l, g, chunk, rows, extras = SSD_CASES[case]
    x, dt, A, B, C, D, dt_bias = _ssd_inputs(2, l, 4, 3, g, 5)
    if not extras:
        dt = F.softplus(dt)  # positive step sizes, as the kernel expects without softplus
        D = dt_bias = None
    seq_idx = seq_idx_from_lengths(rows) if rows else None
    leaves = {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "dt_bias": dt_bias}
    for t in leaves.values():
        if t is not None:
            t.requires_grad_()
    kw = dict(D=D, dt_bias=dt_bias, dt_softplus=extras, seq_idx=seq_idx)
    y, state = ssd_reference(x, dt, A, B, C, chunk_size=chunk, return_final_state=True, **kw)
    y_naive, state_naive = ssd_naive(x, dt, A, B, C, **kw)
    assert y.shape == x.shape and state.shape == (2, 4, 3, 5)
    cot = (torch.randn_like(y), torch.randn_like(state))
    got, want = grads((y, state), leaves, cot), grads((y_naive, state_naive), leaves, cot)
    assert_close_all(got, want, 1e-5)
    assert ssd_reference(x, dt, A, B, C, chunk_size=chunk, **kw).shape == x.shape  # y alone


def test_ssd_reference_gradients_finite_under_fast_decay_and_resets():
    x, dt, A, B, C, D, dt_bias = _ssd_inputs(1, 50, 2, 4, 1, 3, seed=1)
    dt = dt * 0 + 8.0  # softplus(8) ~ 8: with A = -30 each step decays by exp(-240)
    A = torch.tensor([-30.0, -0.01])
    leaves = {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "dt_bias": dt_bias}
    for t in leaves.values():
        t.requires_grad_()
    seq_idx = seq_idx_from_lengths([[13, 1, 36]])
    y = ssd_reference(x, dt, A, B, C, chunk_size=16, D=D, dt_bias=dt_bias, dt_softplus=True,
                      seq_idx=seq_idx)
    out = grads(y, leaves, torch.randn_like(y))
    for name, t in out.items():
        assert torch.isfinite(t).all(), name


def test_ssd_reference_dtypes():
    x, dt, A, B, C, D, dt_bias = _ssd_inputs(1, 20, 2, 4, 1, 3, dtype=torch.bfloat16)
    y, state = ssd_reference(x, dt, A, B, C, chunk_size=8, D=D, return_final_state=True)
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32


CONV_CASES = [  # k, bias, seq_idx rows (None: no resets), activation
    (4, True, [[5, 1, 12, 22], [40]], "silu"),
    (3, False, [[1, 1, 38], [20, 20]], None),
    (1, True, None, "silu"),
    (2, True, None, None),
]


@pytest.mark.parametrize("k,bias,rows,act", CONV_CASES)
def test_conv1d_reference_matches_conv1d_per_sequence(k, bias, rows, act):
    torch.manual_seed(0)
    x = torch.randn(2, 40, 6)
    w = torch.randn(6, k)
    b = torch.randn(6) if bias else None
    seq_idx = seq_idx_from_lengths(rows) if rows else None
    got = conv1d_reference(x, w, b, seq_idx, act)
    assert got.dtype == x.dtype
    assert rel_err(got, conv1d_naive(x, w, b, seq_idx, act)) <= 1e-6


@pytest.mark.parametrize("window,scale", [(-1, None), (0, None), (3, 0.5), (100, None)])
def test_attention_reference_matches_softmax_loop(window, scale):
    torch.manual_seed(0)
    lengths = [9, 1, 0, 14]
    cu = cu_from_lengths(lengths)
    q, k, v = (torch.randn(sum(lengths), 3, 8) for _ in range(3))
    got = attention_reference(q, k, v, cu, max(lengths), window_size=window, softmax_scale=scale)
    assert rel_err(got, attention_naive(q, k, v, cu, window, scale)) <= 1e-5


@pytest.mark.parametrize("gated,norm_before_gate,group_size", [
    (False, False, None), (True, False, None), (True, True, None), (True, False, 4), (True, True, 8)])
def test_rmsnorm_reference_matches_formula(gated, norm_before_gate, group_size):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16)
    w = torch.randn(16)
    z = torch.randn(3, 5, 16) if gated else None
    got = rmsnorm_reference(x, w, z=z, eps=1e-5, group_size=group_size, norm_before_gate=norm_before_gate)
    want = rmsnorm_naive(x, w, z, 1e-5, group_size, norm_before_gate)
    assert rel_err(got, want) <= 1e-6
    assert rmsnorm_reference(x.bfloat16(), w, z=z).dtype == torch.bfloat16


# --------------------------------------------------------- Triton conv1d, interpreter (CPU)

@pytest.fixture(scope="module")
def interpreted_conv():
    """A private copy of ``conv_triton`` whose kernels were built with ``TRITON_INTERPRET=1``."""
    pytest.importorskip("triton")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    try:
        spec = importlib.util.spec_from_file_location("hnet_seq.kernels._conv_triton_interpreted",
                                                      KERNELS_DIR / "conv_triton.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        mp.undo()
    return module


INTERP_CASES = [  # k, bias, seq_idx rows, activation, dtype, tolerance
    # Resets right at the tile edge (BLOCK_L = 32): t = 31 and t = 32.
    (4, True, [[31, 1, 8], [5, 35]], "silu", torch.float32, 1e-5),
    # The interpreter rounds fp32 -> bf16 towards zero (compiled Triton rounds to nearest),
    # so the bf16 comparison allows one bf16 ulp.
    (3, False, None, None, torch.bfloat16, 1e-2),
]


@pytest.mark.parametrize("k,bias,rows,act,dtype,tol", INTERP_CASES)
def test_triton_conv1d_interpreted_matches_reference(interpreted_conv, k, bias, rows, act, dtype, tol):
    torch.manual_seed(0)
    c = 20
    full = torch.randn(2, 40, c + 5, dtype=dtype)
    x = full[..., 2:2 + c].detach().requires_grad_()  # a strided view, like the model's split
    w = torch.randn(c, k, dtype=dtype, requires_grad=True)
    b = torch.randn(c, dtype=dtype, requires_grad=True) if bias else None
    seq_idx = seq_idx_from_lengths(rows) if rows else None
    leaves = {"x": x, "w": w, "b": b}
    y = interpreted_conv.conv1d_fast(x, w, b, seq_idx, act)
    assert y.dtype == dtype and y.shape == x.shape
    cot = torch.randn_like(y)
    got = grads(y, leaves, cot)
    want = grads(conv1d_reference(x, w, b, seq_idx, act), leaves, cot)
    assert_close_all(got, want, tol)


def test_conv1d_fast_rejects_bad_arguments(interpreted_conv):
    x = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match="activation"):
        interpreted_conv.conv1d_fast(x, torch.randn(3, 2), activation="relu")
    with pytest.raises(ValueError, match="weight"):
        interpreted_conv.conv1d_fast(x, torch.randn(4, 2))


# ------------------------------------------------- fast wrappers with stand-in backends (CPU)

def _flash_semantics(q, k, v, cu, causal, window, scale):
    """What flash-attention computes: key j visible to query i iff i-left <= j <= i+right."""
    left, right = window
    if causal:
        right = 0
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        i = torch.arange(end - start)
        ok = torch.ones(end - start, end - start, dtype=torch.bool)
        if left >= 0:
            ok &= i[None] >= i[:, None] - left
        if right >= 0:
            ok &= i[None] <= i[:, None] + right
        qs, ks, vs = (t[start:end].transpose(0, 1).float() for t in (q, k, v))
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=ok, scale=scale)
        out[start:end] = o.transpose(0, 1).to(q.dtype)
    return out


def _fake_flash_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None,
                       causal=False, window_size=(-1, -1)):
    assert q.dtype in (torch.float16, torch.bfloat16) and cu_q.dtype == torch.int32
    return _flash_semantics(q, k, v, cu_q, causal, window_size, softmax_scale)


def _fake_torch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1)):
    assert q.dtype in (torch.float16, torch.bfloat16) and cu_q.dtype == torch.int32
    return _flash_semantics(q, k, v, cu_q, False, window_size, scale)


def _fake_torch_varlen_no_scale(q, k, v, cu_q, cu_k, max_q, max_k, *, window_size=(-1, -1)):
    return _fake_torch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, window_size=window_size)


@pytest.mark.parametrize("backend", ["flash_attn", "torch_varlen", "torch_varlen_without_scale"])
@pytest.mark.parametrize("window,scale", [(-1, None), (2, 0.3), (0, None)])
def test_attention_fast_plumbing(monkeypatch, backend, window, scale):
    """Window mapping and scale on stand-in kernels; fp32 inputs never reach the bf16 kernels."""
    if backend == "flash_attn":
        monkeypatch.setattr(fast, "_flash_varlen", _fake_flash_varlen)
    else:
        fn = _fake_torch_varlen if backend == "torch_varlen" else _fake_torch_varlen_no_scale
        monkeypatch.setattr(fast, "_flash_varlen", None)
        monkeypatch.setattr(fast, "_torch_varlen", fn)
        monkeypatch.setattr(fast, "_torch_varlen_params", frozenset(
            ["window_size"] + (["scale"] if backend == "torch_varlen" else [])))
    torch.manual_seed(0)
    lengths = [7, 1, 0, 12]
    cu = cu_from_lengths(lengths)
    kw = dict(window_size=window, softmax_scale=scale)
    q, k, v = (torch.randn(sum(lengths), 2, 8).bfloat16().requires_grad_() for _ in range(3))
    got = fast._attention_fast(q, k, v, cu, max(lengths), **kw)
    assert got.dtype == torch.bfloat16
    assert rel_err(got, attention_reference(q, k, v, cu, max(lengths), **kw)) <= 1e-2
    got.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16
    q32, k32, v32 = (t.detach().float() for t in (q, k, v))  # the fakes assert half precision
    exact = fast._attention_fast(q32, k32, v32, cu, max(lengths), **kw)
    assert torch.equal(exact, attention_reference(q32, k32, v32, cu, max(lengths), **kw))


def test_ssd_fast_plumbing_mixed_dtypes(monkeypatch):
    """The dechunk call: bf16 x with fp32 B, C and dt; y comes back bf16, the state fp32."""
    seen = {}

    def fake_scan(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, seq_idx=None, dt_softplus=False,
                  return_final_states=False):
        seen.update(dtypes={x.dtype, B.dtype, C.dtype}, seq=(seq_idx.dtype, seq_idx.is_contiguous()))
        y, state = ssd_reference(x, dt, A, B, C, chunk_size=chunk_size, D=D, dt_bias=dt_bias,
                                 dt_softplus=dt_softplus, seq_idx=seq_idx, return_final_state=True)
        return (y, state.to(C.dtype)) if return_final_states else y

    monkeypatch.setattr(fast, "_mamba_chunk_scan", fake_scan)
    x, dt, A, B, C, _, _ = _ssd_inputs(1, 30, 2, 4, 1, 1)
    seq_idx = seq_idx_from_lengths([[10, 20]]).long()
    y, state = fast._ssd_fast(x.bfloat16(), dt.exp(), -torch.ones(2), B, C, chunk_size=16,
                              seq_idx=seq_idx, return_final_state=True)
    assert seen == {"dtypes": {torch.float32}, "seq": (torch.int32, True)}
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32


def test_backend_spec_is_read_once_and_set_spec_replaces_it(monkeypatch):
    from hnet_seq.kernels import registry

    monkeypatch.setattr(registry, "_spec", None)
    monkeypatch.setenv(registry.SPEC_ENV, "reference,attention=auto")
    assert [kernels.requested_backend(op) for op in ("ssd", "attention")] == ["reference", "auto"]
    monkeypatch.setenv(registry.SPEC_ENV, "fast")  # read at the first call only
    assert kernels.requested_backend("ssd") == "reference"
    assert kernels.ssd.backend_for("cpu") == "reference"
    kernels.set_spec("attention=reference,ssd=auto,fast")  # a bare backend overrides what came before
    assert kernels.requested_backend("conv1d") == kernels.requested_backend("attention") == "fast"
    with pytest.raises(RuntimeError, match="fast backend forced but unavailable"):
        kernels.ssd.backend_for("cpu")
    with kernels.force_backend("reference", "ssd"):
        assert kernels.ssd.backend_for("cpu") == "reference"
    for bad, what in (("warp", "unknown backend 'warp'"), ("ssdd=fast", "unknown op 'ssdd'")):
        with pytest.raises(ValueError, match=what):
            kernels.set_spec(bad)
    kernels.set_spec(None)  # back to the variable, read again
    monkeypatch.setenv(registry.SPEC_ENV, "ssd=nope")
    with pytest.raises(ValueError, match="HNET_SEQ_KERNELS: unknown backend 'nope'"):
        kernels.requested_backend("ssd")
    monkeypatch.setattr(registry, "_spec", None)


def test_unavailable_fast_ops_say_why():
    for name in ("ssd_fast", "rmsnorm_fast", "attention_fast"):
        status = fast.availability()[name]
        if status.startswith("unavailable"):
            with pytest.raises(AttributeError, match="unavailable"):
                getattr(fast, name)
            fn, reason = getattr(kernels, name.removesuffix("_fast")).fast_impl()
            assert fn is None and reason
        else:
            assert callable(getattr(fast, name))


# ----------------------------------------------------------------- fast vs reference (CUDA)

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
        x, dt, A, B, C, D, dt_bias = (t.to(dev) for t in _ssd_inputs(2, 300, 4, 32, 2, 32, dtype=dtype))
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
