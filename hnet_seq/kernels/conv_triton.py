"""Depthwise causal conv1d with sequence resets, as a Triton kernel (forward and backward).

``y_t = act(bias + sum_s w[:, k-1-s] * x_{t-s})`` where the tap ``x_{t-s}`` counts as zero when
``t-s < 0`` or ``seq_idx[t-s] != seq_idx[t]``; ``act`` is ``None`` or ``"silu"``.  Same contract as
:func:`hnet_seq.kernels.reference.conv1d_reference`: accumulation in fp32, output in ``x.dtype``.

The forward kernel writes only ``y``.  The backward runs two kernels: the first recomputes the
pre-activation once per position (``k`` cached loads of ``x`` per tile), writes
``du = dy * act'(u)`` in fp32 and reduces ``dweight`` and ``dbias`` per tile in fp32 (the
per-tile partial sums are added up in PyTorch); the second gathers ``dx`` from ``du``'s ``k``
taps.  (One kernel that recomputed ``u`` at each of the ``k`` positions a tap reaches made
``k * k`` loads of ``x`` per tile, and ran at under a tenth of the H200's memory bandwidth.)

Importing this module needs Triton; the kernel registry imports it lazily, so a machine
without Triton simply reports the fast conv1d as unavailable.  With ``TRITON_INTERPRET=1`` set
before this module is imported, the kernels run in Triton's interpreter on CPU tensors (the
tests do this).  The kernels call only Triton builtins (``tl.full``, ``tl.exp``, ``tl.reduce``
with a local combine function) rather than the ``@jit`` helpers of ``triton.language.standard``
(``tl.zeros``, ``tl.sigmoid``, ``tl.sum``), which compile to the same code but cannot run in the
interpreter when Triton itself was imported before ``TRITON_INTERPRET`` was set.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .reference import conv1d_reference

_BLOCK_L = 32
_MAX_BLOCK_C = 128
_NUM_WARPS = 4


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _sigmoid(u):
    return 1.0 / (1.0 + tl.exp(-u))


@triton.jit
def _tap(x_base, seq_base, pos, pos_ok, seq_pos, ch, c_ok, s, stride_xl, stride_sl, HAS_SEQ: tl.constexpr):
    """fp32 ``(BLOCK_L, BLOCK_C)`` tile of ``x_{pos-s}``: 0 before the row or the position's sequence."""
    src = pos - s
    ok = pos_ok & (src >= 0)
    if HAS_SEQ:
        seq_src = tl.load(seq_base + src.to(tl.int64) * stride_sl, mask=ok, other=0)
        ok = ok & (seq_src == seq_pos)
    return tl.load(x_base + src.to(tl.int64)[:, None] * stride_xl + ch[None, :],
                   mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)


@triton.jit
def _preactivation(x_base, W, BIAS, seq_base, pos, pos_ok, seq_pos, ch, c_ok, stride_xl, stride_sl,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr,
                   BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """fp32 ``(BLOCK_L, BLOCK_C)`` tile of ``bias + sum_s w[k-1-s] x_{pos-s}`` (masked taps)."""
    acc = tl.full((BLOCK_L, BLOCK_C), 0.0, tl.float32)
    for s in tl.static_range(K):
        xv = _tap(x_base, seq_base, pos, pos_ok, seq_pos, ch, c_ok, s, stride_xl, stride_sl, HAS_SEQ)
        wv = tl.load(W + ch * K + (K - 1 - s), mask=c_ok, other=0.0).to(tl.float32)
        acc += xv * wv[None, :]
    if HAS_BIAS:
        acc += tl.load(BIAS + ch, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _tile(SEQ, stride_sb, stride_sl, L, C, HAS_SEQ: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's tile: batch row, positions ``t`` and channels ``ch`` with their bounds, and
    the row's ``seq_idx`` pointer with each position's sequence (0 when there are no resets)."""
    pid_b = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    ch = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    t_ok = t < L
    seq_base = SEQ + pid_b * stride_sb
    seq_t = t * 0
    if HAS_SEQ:
        seq_t = tl.load(seq_base + t.to(tl.int64) * stride_sl, mask=t_ok, other=0)
    return pid_b, t, ch, t_ok, ch < C, seq_base, seq_t


@triton.jit
def _conv1d_fwd_kernel(X, W, BIAS, SEQ, Y, L, C,
                       stride_xb, stride_xl, stride_sb, stride_sl, stride_yb, stride_yl,
                       K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr,
                       SILU: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    pid_b, t, ch, t_ok, c_ok, seq_base, seq_t = _tile(SEQ, stride_sb, stride_sl, L, C, HAS_SEQ, BLOCK_L, BLOCK_C)
    x_base = X + pid_b * stride_xb
    u = _preactivation(x_base, W, BIAS, seq_base, t, t_ok, seq_t, ch, c_ok, stride_xl, stride_sl,
                       K, HAS_BIAS, HAS_SEQ, BLOCK_L, BLOCK_C)
    if SILU:
        u = u * _sigmoid(u)
    y_ptrs = Y + pid_b * stride_yb + t.to(tl.int64)[:, None] * stride_yl + ch[None, :]
    tl.store(y_ptrs, u.to(Y.dtype.element_ty), mask=t_ok[:, None] & c_ok[None, :])


@triton.jit
def _conv1d_bwd_du_kernel(X, W, BIAS, SEQ, DY, DU, DW_PART, DB_PART, L, C, n_lblocks,
                          stride_xb, stride_xl, stride_sb, stride_sl, stride_dyb, stride_dyl,
                          stride_dub, stride_dul, K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr,
                          SILU: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """``du = dy * act'(u)`` for one tile (written to ``DU`` (b, l, c) fp32 when ``SILU``; without an
    activation du is dy itself), and this tile's partial sums ``dw[k-1-s] += du_t x_{t-s}`` (K, C)
    and ``dbias += du_t`` (C,)."""
    pid_b, t, ch, t_ok, c_ok, seq_base, seq_t = _tile(SEQ, stride_sb, stride_sl, L, C, HAS_SEQ, BLOCK_L, BLOCK_C)
    x_base = X + pid_b * stride_xb
    du = tl.load(DY + pid_b * stride_dyb + t.to(tl.int64)[:, None] * stride_dyl + ch[None, :],
                 mask=t_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    if SILU:
        u = _preactivation(x_base, W, BIAS, seq_base, t, t_ok, seq_t, ch, c_ok, stride_xl, stride_sl,
                           K, HAS_BIAS, HAS_SEQ, BLOCK_L, BLOCK_C)
        sig = _sigmoid(u)
        du = du * sig * (1.0 + u * (1.0 - sig))
        tl.store(DU + pid_b * stride_dub + t.to(tl.int64)[:, None] * stride_dul + ch[None, :], du,
                 mask=t_ok[:, None] & c_ok[None, :])
    part_row = pid_b * n_lblocks + tl.program_id(1)
    if HAS_BIAS:
        tl.store(DB_PART + part_row * C + ch, tl.reduce(du, 0, _add), mask=c_ok)
    for s in tl.static_range(K):  # the taps the pre-activation just read: cache hits
        xv = _tap(x_base, seq_base, t, t_ok, seq_t, ch, c_ok, s, stride_xl, stride_sl, HAS_SEQ)
        tl.store(DW_PART + (part_row * K + s) * C + ch, tl.reduce(du * xv, 0, _add), mask=c_ok)


@triton.jit
def _conv1d_bwd_dx_kernel(DU, W, SEQ, DX, L, C, stride_dub, stride_dul, stride_sb, stride_sl,
                          stride_dxb, stride_dxl, K: tl.constexpr, HAS_SEQ: tl.constexpr,
                          BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """``dx_t = sum_s du_{t+s} w[k-1-s]`` over the taps ``t+s < L`` with ``seq_idx[t+s] == seq_idx[t]``."""
    pid_b, t, ch, t_ok, c_ok, seq_base, seq_t = _tile(SEQ, stride_sb, stride_sl, L, C, HAS_SEQ, BLOCK_L, BLOCK_C)
    du_base = DU + pid_b * stride_dub
    dx = tl.full((BLOCK_L, BLOCK_C), 0.0, tl.float32)
    for s in tl.static_range(K):
        tt = t + s
        ok = t_ok & (tt < L)
        if HAS_SEQ:
            ok = ok & (tl.load(seq_base + tt.to(tl.int64) * stride_sl, mask=ok, other=0) == seq_t)
        du = tl.load(du_base + tt.to(tl.int64)[:, None] * stride_dul + ch[None, :],
                     mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
        wv = tl.load(W + ch * K + (K - 1 - s), mask=c_ok, other=0.0).to(tl.float32)
        dx += du * wv[None, :]
    dx_ptrs = DX + pid_b * stride_dxb + t.to(tl.int64)[:, None] * stride_dxl + ch[None, :]
    tl.store(dx_ptrs, dx.to(DX.dtype.element_ty), mask=t_ok[:, None] & c_ok[None, :])


def _blocks(c: int) -> tuple[int, int]:
    return _BLOCK_L, min(_MAX_BLOCK_C, max(16, triton.next_power_of_2(c)))


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class _CausalConv1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, seq_idx, silu):
        b, l, c = x.shape
        y = torch.empty((b, l, c), device=x.device, dtype=x.dtype)
        block_l, block_c = _blocks(c)
        seq = seq_idx if seq_idx is not None else x  # unused pointer when HAS_SEQ is False
        grid = (b, triton.cdiv(l, block_l), triton.cdiv(c, block_c))
        _conv1d_fwd_kernel[grid](
            x, weight, bias if bias is not None else weight, seq, y, l, c,
            x.stride(0), x.stride(1),
            seq_idx.stride(0) if seq_idx is not None else 0, seq_idx.stride(1) if seq_idx is not None else 0,
            y.stride(0), y.stride(1),
            K=weight.shape[1], HAS_BIAS=bias is not None, HAS_SEQ=seq_idx is not None, SILU=silu,
            BLOCK_L=block_l, BLOCK_C=block_c, num_warps=_NUM_WARPS)
        ctx.save_for_backward(x, weight, bias, seq_idx)
        ctx.silu = silu
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, seq_idx = ctx.saved_tensors
        dy = _last_dim_contiguous(dy)
        b, l, c = x.shape
        k = weight.shape[1]
        block_l, block_c = _blocks(c)
        n_lblocks = triton.cdiv(l, block_l)
        grid = (b, n_lblocks, triton.cdiv(c, block_c))
        # With an activation, du is its own fp32 tensor (one pass over x, not one per tap);
        # without one it is dy.
        du = torch.empty((b, l, c), device=x.device, dtype=torch.float32) if ctx.silu else dy
        dw_part = torch.empty((b * n_lblocks, k, c), device=x.device, dtype=torch.float32)
        db_part = (torch.empty((b * n_lblocks, c), device=x.device, dtype=torch.float32)
                   if bias is not None else dw_part)
        seq = seq_idx if seq_idx is not None else x
        seq_strides = (seq_idx.stride(0), seq_idx.stride(1)) if seq_idx is not None else (0, 0)
        _conv1d_bwd_du_kernel[grid](
            x, weight, bias if bias is not None else weight, seq, dy, du, dw_part, db_part, l, c, n_lblocks,
            x.stride(0), x.stride(1), *seq_strides, dy.stride(0), dy.stride(1), du.stride(0), du.stride(1),
            K=k, HAS_BIAS=bias is not None, HAS_SEQ=seq_idx is not None, SILU=ctx.silu,
            BLOCK_L=block_l, BLOCK_C=block_c, num_warps=_NUM_WARPS)
        dx = torch.empty((b, l, c), device=x.device, dtype=x.dtype)
        _conv1d_bwd_dx_kernel[grid](
            du, weight, seq, dx, l, c, du.stride(0), du.stride(1), *seq_strides, dx.stride(0), dx.stride(1),
            K=k, HAS_SEQ=seq_idx is not None, BLOCK_L=block_l, BLOCK_C=block_c, num_warps=_NUM_WARPS)
        # Partial s holds the gradient of tap x_{t-s}, i.e. of weight[:, k-1-s].
        dweight = dw_part.sum(0).flip(0).t().contiguous().to(weight.dtype)
        dbias = db_part.sum(0).to(bias.dtype) if bias is not None else None
        return dx, dweight, dbias, None, None


def conv1d_fast(x, weight, bias=None, seq_idx=None, activation=None):
    """Depthwise causal conv1d with resets: x (b,l,c), weight (c,k), bias (c,), seq_idx (b,l) → (b,l,c).

    Same semantics as :func:`~hnet_seq.kernels.reference.conv1d_reference`; differentiable in
    ``x``, ``weight`` and ``bias``.  ``x`` may be a strided view as long as its channel stride
    is 1 (otherwise it is copied); ``seq_idx`` is cast to int32.
    """
    if activation not in (None, "silu"):
        raise ValueError(f"conv1d: unknown activation {activation!r}")
    if x.dim() != 3:
        raise ValueError(f"conv1d: x must be (b, l, c), got shape {tuple(x.shape)}")
    b, l, c = x.shape
    if weight.dim() != 2 or weight.shape[0] != c:
        raise ValueError(f"conv1d: weight must be ({c}, k), got shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (c,):
        raise ValueError(f"conv1d: bias must be ({c},), got shape {tuple(bias.shape)}")
    if seq_idx is not None and tuple(seq_idx.shape) != (b, l):
        raise ValueError(f"conv1d: seq_idx must be ({b}, {l}), got shape {tuple(seq_idx.shape)}")
    if x.numel() == 0:
        return conv1d_reference(x, weight, bias, seq_idx, activation)
    x = _last_dim_contiguous(x)
    weight = weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    seq_idx = seq_idx.to(torch.int32) if seq_idx is not None else None
    return _CausalConv1dFn.apply(x, weight, bias, seq_idx, activation == "silu")
