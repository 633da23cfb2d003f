"""The fast wrappers' plumbing against stand-in backends (CPU): the attention window and scale
mapped onto flash-attention's and torch's varlen kernels, the SSD's dtypes and seq_idx layout.

Errors are relative: ``max|a - b| / max|b|``, with ``b`` the reference.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import cu_from_lengths, rel_err, seq_idx_from_lengths, ssd_inputs

from hnet_seq.kernels import fast
from hnet_seq.kernels.reference import attention_reference, ssd_reference


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
    x, dt, A, B, C, _, _ = ssd_inputs(1, 30, 2, 4, 1, 1)
    seq_idx = seq_idx_from_lengths([[10, 20]]).long()
    y, state = fast._ssd_fast(x.bfloat16(), dt.exp(), -torch.ones(2), B, C, chunk_size=16,
                              seq_idx=seq_idx, return_final_state=True)
    assert seen == {"dtypes": {torch.float32}, "seq": (torch.int32, True)}
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32

