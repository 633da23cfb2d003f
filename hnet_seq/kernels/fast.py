"""Fast (CUDA) kernels behind the registry: each op wraps an optional library.

======================  ===================================================================
``ssd_fast``            mamba-ssm Triton ``mamba_chunk_scan_combined``
``attention_fast``      ``flash_attn.flash_attn_varlen_func`` if it imports, else PyTorch's
                        ``torch.nn.attention.varlen.varlen_attn`` (needs a sliding window);
                        on Hopper, batches of equal-length sequences go through cuDNN's
                        SDPA (:mod:`hnet_seq.kernels.dense_attention`)
``rmsnorm_fast``        mamba-ssm Triton ``rmsnorm_fn``
======================  ===================================================================

``attention_kvcache_fast`` (prefill over a KV cache) is PyTorch's SDPA with a mask, in the input dtype.

Each op's availability is independent: a name is defined in this module only when its
dependency imported.  Asking for a missing one (the registry does ``getattr``) raises an
``AttributeError`` that says why, which ``hnet-seq info`` shows as the reason.

The contracts are those of :mod:`hnet_seq.kernels.reference`.  Precision notes:

* ``attention_fast`` on fp16/bf16 runs the FlashAttention kernel.  No FlashAttention kernel
  takes fp32, so fp32 inputs go through PyTorch's SDPA one sequence at a time (exact fp32,
  slower); under bf16 autocast, as in training, attention always sees bf16.
* ``ssd_fast`` computes in the common dtype of ``x``, ``B`` and ``C`` (the dechunk EMA passes
  fp32 ``B``/``C`` with a possibly bf16 ``x``) and returns ``y`` in ``x.dtype`` and the final
  state in fp32, as the reference does.  Triton's default for fp32 matrix products is TF32
  (10-bit mantissa), which leaves fp32 SSD results ~2e-3 from the reference; importing this
  module therefore sets ``TRITON_F32_DEFAULT=tf32x3`` (three TF32 products per fp32 product,
  fp32 accuracy on tensor cores) unless the environment already sets it.  Triton includes the
  variable in its kernel cache key.  bf16 products are unaffected.
"""
from __future__ import annotations

import inspect
import math
import os

import torch

from .reference import (attention_kvcache_reference, attention_reference, kvcache_visible, rmsnorm_reference,
                        ssd_reference)
from .offsets import rows_per_call
from .dense_attention import dense_applies, dense_causal_attention
from .ssd_pieces import piece_limit, ssd_in_pieces

_UNAVAILABLE: dict[str, str] = {}


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0]


def __getattr__(name: str):
    if name in _UNAVAILABLE:
        raise AttributeError(f"{name} is unavailable: {_UNAVAILABLE[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------- ssd
os.environ.setdefault("TRITON_F32_DEFAULT", "tf32x3")  # before any kernel compiles: see the module doc
try:
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _mamba_chunk_scan
except Exception as e:  # ImportError, or a mamba-ssm CUDA extension built for another torch
    _UNAVAILABLE["ssd_fast"] = f"mamba_ssm does not import ({_why(e)})"
    _mamba_chunk_scan = None


def _ssd_fast(x, dt, A, B, C, *, chunk_size, D=None, dt_bias=None, dt_softplus=False,
              seq_idx=None, return_final_state=False, initial_states=None):
    """mamba-ssm ``mamba_chunk_scan_combined`` with the contract of :func:`ssd_reference`."""
    if x.shape[1] == 0 or (initial_states is not None and seq_idx is not None):  # the reference explains or raises
        return ssd_reference(x, dt, A, B, C, chunk_size=chunk_size, D=D, dt_bias=dt_bias,
                             dt_softplus=dt_softplus, seq_idx=seq_idx, return_final_state=return_final_state,
                             initial_states=initial_states)
    common = torch.promote_types(torch.promote_types(x.dtype, B.dtype), C.dtype)
    xc, Bc, Cc = x.to(common), B.to(common), C.to(common)
    if seq_idx is not None:
        seq_idx = seq_idx.to(torch.int32).contiguous()
    kwargs = dict(chunk_size=chunk_size, D=D, dt_bias=dt_bias, dt_softplus=dt_softplus, seq_idx=seq_idx,
                  return_final_state=return_final_state, initial_states=initial_states)
    limit = piece_limit(xc, dt, Bc, Cc, chunk_size=chunk_size, d_state=B.shape[-1])
    if limit is not None:  # mamba-ssm's 32-bit offsets would overflow: see ssd_pieces
        out = ssd_in_pieces(_mamba_scan_call, xc, dt, A, Bc, Cc, limit=limit, **kwargs)
    else:
        out = _mamba_scan_call(xc, dt, A, Bc, Cc, **kwargs)
    if return_final_state:
        return out[0].to(x.dtype), out[1]
    return out.to(x.dtype)


def _mamba_scan_call(x, dt, A, B, C, *, chunk_size, D, dt_bias, dt_softplus, seq_idx, return_final_state,
                     initial_states):
    """One ``mamba_chunk_scan_combined`` call in the reference's keywords (final state in fp32)."""
    extra = {} if initial_states is None else {"initial_states": initial_states.float().contiguous()}
    out = _mamba_chunk_scan(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, seq_idx=seq_idx,
                            dt_softplus=dt_softplus, return_final_states=return_final_state, **extra)
    return (out[0], out[1].float()) if return_final_state else out


# ----------------------------------------------------------------------------------- rmsnorm
try:
    from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn as _mamba_rmsnorm_fn
except Exception as e:
    _UNAVAILABLE["rmsnorm_fast"] = f"mamba_ssm does not import ({_why(e)})"
    _mamba_rmsnorm_fn = None


def _rmsnorm_fast(x, weight, *, z=None, eps=1e-5, group_size=None, norm_before_gate=False):
    """mamba-ssm Triton ``rmsnorm_fn`` with the contract of :func:`rmsnorm_reference`."""
    if x.numel() == 0:
        return rmsnorm_reference(x, weight, z=z, eps=eps, group_size=group_size,
                                 norm_before_gate=norm_before_gate)
    if z is not None and z.shape != x.shape:
        z = z.expand_as(x)
    kw = dict(eps=eps, group_size=group_size, norm_before_gate=norm_before_gate)
    x2, z2 = x.reshape(-1, x.shape[-1]), None if z is None else z.reshape(-1, z.shape[-1])
    limit = rows_per_call(x2, *([] if z2 is None else [z2]))
    if limit is None:
        y = _mamba_rmsnorm_fn(x2, weight, None, z=z2, **kw)
    else:  # the kernel's 32-bit row offsets would overflow (a 1 Mbp window): see offsets
        y = torch.cat([_mamba_rmsnorm_fn(x2[a:a + limit], weight, None, z=None if z2 is None else z2[a:a + limit], **kw)
                       for a in range(0, x2.shape[0], limit)])
    return y.reshape(x.shape).to(x.dtype)


# --------------------------------------------------------------------------------- attention
_flash_varlen = None
_torch_varlen = None
_torch_varlen_params: frozenset[str] = frozenset()
try:
    from flash_attn import flash_attn_varlen_func as _flash_varlen
except Exception as flash_error:
    _flash_reason = f"flash_attn does not import ({_why(flash_error)})"
    try:
        from torch.nn.attention.varlen import varlen_attn as _torch_varlen
    except Exception as torch_error:
        _UNAVAILABLE["attention_fast"] = (f"{_flash_reason}; torch {torch.__version__} has no "
                                          f"varlen_attn ({_why(torch_error)})")
    else:
        _torch_varlen_params = frozenset(inspect.signature(_torch_varlen).parameters)
        if "window_size" not in _torch_varlen_params:
            # The first releases of varlen_attn (is_causal only) cannot do the sliding windows
            # that H-Net's attention layers use; rather than fall back per call, the op is off.
            _UNAVAILABLE["attention_fast"] = (f"{_flash_reason}; torch {torch.__version__} "
                                              "varlen_attn has no window_size (sliding window)")
            _torch_varlen = None

ATTENTION_BACKEND = ("flash_attn" if _flash_varlen is not None
                     else "torch varlen_attn" if _torch_varlen is not None else None)


def _attention_fast(q, k, v, cu_seqlens, max_seqlen, *, window_size=-1, softmax_scale=None):
    """Packed causal attention with the contract of :func:`attention_reference`.

    Query ``i`` sees keys ``max(start, i - window_size) .. i`` (all earlier keys when
    ``window_size < 0``).  fp32 inputs take the exact per-sequence SDPA path (module doc).
    """
    if q.shape[0] == 0 or q.dtype not in (torch.float16, torch.bfloat16):
        return attention_reference(q, k, v, cu_seqlens, max_seqlen, window_size=window_size,
                                   softmax_scale=softmax_scale)
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    if dense_applies(q, cu.numel() - 1, int(max_seqlen), window_size):
        return dense_causal_attention(q, k, v, cu.numel() - 1, softmax_scale)
    return _varlen(q, k, v, cu, cu, int(max_seqlen), int(max_seqlen), window_size, softmax_scale)


def _varlen(q, k, v, cu_q, cu_k, max_q: int, max_k: int, window_size: int, softmax_scale):
    """Causal varlen attention, packed ``(T_q, h, p)`` queries over packed ``(T_k, h, p)`` keys.

    Where a sequence has fewer queries than keys the queries are its last positions (FlashAttention's
    bottom-right alignment): query ``i`` of ``n_q`` sees keys ``.. i + n_k - n_q``.
    """
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    window = (int(window_size), 0) if window_size >= 0 else (-1, 0)
    if _flash_varlen is not None:
        return _flash_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=softmax_scale,
                             causal=True, window_size=window if window_size >= 0 else (-1, -1))
    kwargs = {"window_size": window}
    if "is_causal" in _torch_varlen_params:
        kwargs["is_causal"] = True
    if softmax_scale is not None:
        if "scale" in _torch_varlen_params:
            kwargs["scale"] = softmax_scale
        else:  # the kernel's default scale is 1/sqrt(p): fold the requested one into q
            q = q * (softmax_scale * math.sqrt(q.shape[-1]))
    return _torch_varlen(q, k, v, cu_q, cu_k, max_q, max_k, **kwargs)


def _varlen_runs(q) -> bool:
    """Whether :func:`_varlen` can take ``q``: a CUDA tensor and a varlen kernel that imported."""
    return q.is_cuda and ATTENTION_BACKEND is not None


def _attention_kvcache_fast(q, k, v, positions, valid, *, window_size=-1, softmax_scale=None):
    """:func:`attention_kvcache_reference` in the input dtype, for blocks whose queries are
    consecutive positions with the valid ones first (what prefill passes).

    On CUDA the valid queries and each row's filled keys (``0 .. last position``) are packed and
    run through the varlen kernel; padding queries return zeros.  Why: shared-prefix scoring,
    which runs on this op, took 4.7× the time per position of the packed forward pass on an H200
    (2026-12-02), and the masked SDPA used before was the one kernel of its path that the forward
    pass does not use (a ``(b, l, m)`` mask rules out the flash kernels); not yet re-measured.
    fp32 inputs take the reference; without a varlen kernel (or on CPU) fp16/bf16 take the masked SDPA.
    """
    if q.dtype not in (torch.float16, torch.bfloat16):
        return attention_kvcache_reference(q, k, v, positions, valid, window_size=window_size,
                                           softmax_scale=softmax_scale)
    if not _varlen_runs(q):
        visible = kvcache_visible(positions, valid, k.shape[1], window_size)
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.to(q.dtype).transpose(1, 2), v.to(q.dtype).transpose(1, 2),
            attn_mask=visible[:, None], scale=softmax_scale)
        return out.transpose(1, 2)
    b, l, m = q.shape[0], q.shape[1], k.shape[1]
    n_queries = valid.sum(1)
    n_keys = torch.where(n_queries > 0, positions[:, 0] + n_queries, 0)  # keys 0 .. last position
    zero = n_queries.new_zeros(1)
    cu_q = torch.cat([zero, n_queries.cumsum(0)]).to(torch.int32)
    cu_k = torch.cat([zero, n_keys.cumsum(0)]).to(torch.int32)
    rows, cols = valid.nonzero(as_tuple=True)  # row-major: each row's queries in order
    filled = torch.arange(m, device=k.device)[None] < n_keys[:, None]
    packed = _varlen(q[rows, cols], k[filled].to(q.dtype), v[filled].to(q.dtype), cu_q, cu_k, l, m,
                     window_size, softmax_scale)
    out = q.new_zeros(b, l, *q.shape[2:])
    out[rows, cols] = packed
    return out


for _name, _fn in (("ssd_fast", _ssd_fast), ("rmsnorm_fast", _rmsnorm_fast),
                   ("attention_fast", _attention_fast), ("attention_kvcache_fast", _attention_kvcache_fast)):
    if _name not in _UNAVAILABLE:
        globals()[_name] = _fn
del _name, _fn


def availability() -> dict[str, str]:
    """``{op: "available (...)" or the reason it is not}`` for the ops of this module."""
    backends = {"ssd_fast": "mamba_ssm", "rmsnorm_fast": "mamba_ssm", "attention_fast": ATTENTION_BACKEND,
                "attention_kvcache_fast": "torch SDPA"}
    return {name: (f"unavailable: {_UNAVAILABLE[name]}" if name in _UNAVAILABLE
                   else f"available ({backends[name]})") for name in backends}
