"""The kernel references against brute-force definitions (CPU): the SSD against its one-step
recurrence, conv1d against ``F.conv1d`` per sequence, attention against an explicit softmax loop,
RMSNorm against its formula.

Errors are relative: ``max|a - b| / max|b|``, with ``b`` the reference.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_all, cu_from_lengths, grads, rel_err, seq_idx_from_lengths, ssd_inputs

from hnet_seq.kernels.reference import (attention_reference, conv1d_reference, rmsnorm_reference,
                                        ssd_reference)


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


# ------------------------------------------------------------------------ references

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
    x, dt, A, B, C, D, dt_bias = ssd_inputs(2, l, 4, 3, g, 5)
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
    x, dt, A, B, C, D, dt_bias = ssd_inputs(1, 50, 2, 4, 1, 3, seed=1)
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
    x, dt, A, B, C, D, dt_bias = ssd_inputs(1, 20, 2, 4, 1, 3, dtype=torch.bfloat16)
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
