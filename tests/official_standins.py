"""Torch stand-ins for the compiled kernels that goombalab/hnet imports.

The parity test runs the official ``HNetForCausalLM`` next to ours. flash-attn and causal-conv1d
cannot be built on the device, so :func:`install` puts small modules into ``sys.modules`` that
compute the same functions with plain PyTorch (our reference kernels where the maths is the
same). mamba-ssm itself is real (its Triton kernels). Nothing here is used by the product.
"""
from __future__ import annotations

import sys
import types

import torch
import torch.nn.functional as F

from hnet_seq.kernels.reference import attention_reference, conv1d_reference, rmsnorm_reference


def _rotate(x, cos, sin, positions, conjugate=False):
    """Rotate the first ``2*cos.shape[-1]`` channels of ``x (..., n, h, p)`` at ``positions (..., n)``."""
    half = cos.shape[-1]
    c, s = cos[positions][..., None, :].float(), sin[positions][..., None, :].float()
    if conjugate:
        s = -s
    a, b = x[..., :half].float(), x[..., half:2 * half].float()
    return torch.cat([a * c - b * s, b * c + a * s, x[..., 2 * half:].float()], dim=-1).to(x.dtype)


def apply_rotary(x, cos, sin, seqlen_offsets=0, cu_seqlens=None, max_seqlen=None, interleaved=False,
                 inplace=False, conjugate=False):
    """flash_attn.ops.triton.rotary.apply_rotary: x (b, n, h, p), or (T, h, p) with cu_seqlens."""
    assert not interleaved
    if cu_seqlens is not None:
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        seq = torch.repeat_interleave(torch.arange(len(lengths), device=x.device), lengths)
        positions = torch.arange(x.shape[0], device=x.device) - cu_seqlens.long()[seq]
    else:
        positions = torch.arange(x.shape[1], device=x.device)[None] + torch.as_tensor(
            seqlen_offsets, device=x.device).reshape(-1, 1)
        positions = positions.expand(x.shape[0], -1)
    out = _rotate(x, cos, sin, positions, conjugate)
    if inplace:
        x.copy_(out)
        return x
    return out


def _packed_attention(q, k, v, cu_seqlens, max_seqlen, window_size, softmax_scale):
    return attention_reference(q, k, v, cu_seqlens, max_seqlen, window_size=window_size[0],
                               softmax_scale=softmax_scale)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, softmax_scale=None, causal=True,
                                     window_size=(-1, -1), **_):
    q, k, v = qkv.unbind(1)
    return _packed_attention(q, k, v, cu_seqlens, max_seqlen, window_size, softmax_scale)


def flash_attn_qkvpacked_func(qkv, softmax_scale=None, causal=True, window_size=(-1, -1), **_):
    b, n = qkv.shape[:2]
    flat = qkv.flatten(0, 1)
    cu = torch.arange(b + 1, device=qkv.device, dtype=torch.int32) * n
    return flash_attn_varlen_qkvpacked_func(flat, cu, n, softmax_scale, causal, window_size).unflatten(0, (b, n))


def flash_attn_kvpacked_func(q, kv, softmax_scale=None, causal=True, window_size=(-1, -1), **_):
    """(b, nq, h, p) queries against (b, nk, 2, h, p); causal aligned to the last key."""
    k, v = kv.unbind(2)
    scale = softmax_scale or q.shape[-1] ** -0.5
    scores = torch.einsum("bqhp,bkhp->bhqk", q.float(), k.float()) * scale
    nq, nk = q.shape[1], k.shape[1]
    qpos = torch.arange(nq, device=q.device)[:, None] + (nk - nq)
    kpos = torch.arange(nk, device=q.device)[None]
    allowed = kpos <= qpos
    if window_size[0] >= 0:
        allowed &= kpos >= qpos - window_size[0]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhqk,bkhp->bqhp", scores.softmax(-1), v.float()).to(q.dtype)


def flash_attn_varlen_kvpacked_func(*args, **kwargs):
    raise NotImplementedError("not used by the H-Net forward or step paths")


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, softmax_scale=None, causal=True, rotary_interleaved=False,
                            window_size=(-1, -1), **_):
    """Append (rotated) k, v at ``cache_seqlens`` in place, then attend over the cache."""
    offset = int(cache_seqlens) if not torch.is_tensor(cache_seqlens) else int(cache_seqlens.max())
    if rotary_cos is not None:
        q = apply_rotary(q, rotary_cos, rotary_sin, seqlen_offsets=offset)
        k = apply_rotary(k, rotary_cos, rotary_sin, seqlen_offsets=offset)
    n = k.shape[1]
    k_cache[:, offset:offset + n] = k
    v_cache[:, offset:offset + n] = v
    kv = torch.stack([k_cache[:, :offset + n], v_cache[:, :offset + n]], dim=2)
    return flash_attn_kvpacked_func(q, kv, softmax_scale, causal, window_size)


class RMSNorm(torch.nn.Module):
    """flash_attn's RMSNorm call convention: optional residual add, optional prenorm return."""

    def __init__(self, hidden_size, eps=1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        summed = x.float() + residual.float() if residual is not None else x.float()
        out = rmsnorm_reference(summed, self.weight, eps=self.eps).to(x.dtype)
        if not prenorm:
            return out
        return out, summed if residual_in_fp32 else summed.to(x.dtype)


def swiglu(gate, y):
    return F.silu(gate.float()).to(y.dtype) * y


def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, activation=None, **_):
    """causal_conv1d's layout: x (b, c, l) → (b, c, l)."""
    return conv1d_reference(x.transpose(1, 2), weight, bias, seq_idx, activation).transpose(1, 2)


class GenerationMixin:
    pass


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install() -> None:
    """Register the stand-ins; call before importing ``hnet`` (the official package)."""
    attention = dict(
        flash_attn_kvpacked_func=flash_attn_kvpacked_func, flash_attn_qkvpacked_func=flash_attn_qkvpacked_func,
        flash_attn_varlen_kvpacked_func=flash_attn_varlen_kvpacked_func,
        flash_attn_varlen_qkvpacked_func=flash_attn_varlen_qkvpacked_func,
        flash_attn_with_kvcache=flash_attn_with_kvcache)
    modules = {
        "flash_attn": _module("flash_attn", **attention),
        "flash_attn.ops": _module("flash_attn.ops"),
        "flash_attn.ops.triton": _module("flash_attn.ops.triton"),
        "flash_attn.ops.triton.layer_norm": _module("flash_attn.ops.triton.layer_norm", RMSNorm=RMSNorm),
        "flash_attn.ops.triton.rotary": _module("flash_attn.ops.triton.rotary", apply_rotary=apply_rotary),
        "flash_attn.ops.activations": _module("flash_attn.ops.activations", swiglu=swiglu),
        "flash_attn.utils": _module("flash_attn.utils"),
        "flash_attn.utils.generation": _module("flash_attn.utils.generation", GenerationMixin=GenerationMixin),
        # update=None makes Mamba2.step use its plain-torch conv path
        "causal_conv1d": _module("causal_conv1d", causal_conv1d_fn=causal_conv1d_fn, causal_conv1d_update=None),
    }
    try:
        import optree  # noqa: F401
    except ImportError:
        modules["optree"] = _module("optree", tree_map=lambda fn, tree: tree)
    for name, module in modules.items():
        sys.modules.setdefault(name, module)
