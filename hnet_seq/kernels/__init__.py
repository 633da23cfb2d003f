"""Kernel ops behind one interface (see :mod:`hnet_seq.kernels.registry`).

=============  ==========================================  ===========================================
op             reference (pure PyTorch, CPU and GPU)        fast (CUDA)
=============  ==========================================  ===========================================
ssd            chunked SSD scan in PyTorch                  mamba-ssm ``mamba_chunk_scan_combined``
conv1d         depthwise causal conv via K shifted sums     Triton kernel with sequence resets
attention      per-sequence masked SDPA                     ``flash_attn`` varlen, else ``varlen_attn``
rmsnorm        gated RMSNorm in PyTorch                      mamba-ssm Triton ``rmsnorm_fn``
add_rmsnorm    residual add, then the ``rmsnorm`` op         the same, ``torch.compile``-fused
swiglu         ``silu(gate) * up``                           the same, ``torch.compile``-fused
linear_ce      head + cross-entropy, full fp32 logits       chunked, no ``(T, V)`` logits kept
=============  ==========================================  ===========================================

``attention_kvcache`` (new query blocks over a KV cache, for prefill): masked SDPA in fp32 /
PyTorch's fused SDPA in the input dtype.  ``add_rmsnorm``, ``swiglu`` and ``linear_ce`` are in
:mod:`hnet_seq.kernels.fused` (shapes there).

Shapes (``b`` batch rows, ``l`` length, ``h`` heads, ``p`` head dim, ``g`` groups, ``n`` state):

* ``ssd(x (b,l,h,p), dt (b,l,h), A (h,), B (b,l,g,n), C (b,l,g,n), *, chunk_size, D=None,
  dt_bias=None, dt_softplus=False, seq_idx=None (b,l) int32, return_final_state=False, initial_states=None (b,h,p,n))``
  → ``y (b,l,h,p)`` [, ``final_state (b,h,p,n)``].  ``seq_idx`` resets the state where it changes;
  ``initial_states`` continues each row from a given state (not with ``seq_idx``).
* ``conv1d(x (b,l,c), weight (c,k), bias (c,)|None, seq_idx (b,l)|None, activation="silu"|None)``
  → ``(b,l,c)``; taps never reach across a ``seq_idx`` change.
* ``attention(q, k, v (T,h,p), cu_seqlens (n+1,) int32, max_seqlen int, *, window_size=-1,
  softmax_scale=None)`` → ``(T,h,p)``; causal, query ``i`` sees keys ``i-window_size … i``.
* ``attention_kvcache(q (b,l,h,p), k, v (b,m,h,p), positions (b,l), valid (b,l), *, window_size=-1,
  softmax_scale=None)`` → ``(b,l,h,p)``: a block of new queries per row over its key cache.
* ``rmsnorm(x (...,d), weight (d,), *, z=None, eps=1e-5, group_size=None,
  norm_before_gate=False)`` → ``(...,d)``; with ``z`` the gate is ``silu(z)``.
"""
from .reference import (attention_kvcache_reference, attention_reference, conv1d_reference, rmsnorm_reference,
                        ssd_reference)
from .fused import add_rmsnorm_reference, linear_cross_entropy_reference, swiglu_reference
from .registry import KernelOp, describe, force_backend, requested_backend, set_spec

ssd = KernelOp("ssd", ssd_reference, "hnet_seq.kernels.fast:ssd_fast",
               "chunked selective-state-space scan (Mamba-2 and the dechunk EMA)")
conv1d = KernelOp("conv1d", conv1d_reference, "hnet_seq.kernels.conv_triton:conv1d_fast",
                  "depthwise causal conv1d with sequence resets")
attention = KernelOp("attention", attention_reference, "hnet_seq.kernels.fast:attention_fast",
                     "packed causal attention with optional sliding window")
attention_kvcache = KernelOp("attention_kvcache", attention_kvcache_reference,
                             "hnet_seq.kernels.fast:attention_kvcache_fast",
                             "causal attention of new query blocks over a KV cache (prefill)")
rmsnorm = KernelOp("rmsnorm", rmsnorm_reference, "hnet_seq.kernels.fast:rmsnorm_fast",
                   "RMSNorm, optionally gated by silu(z)")

# The fused ops are opt-in (HNET_SEQ_KERNELS=add_rmsnorm=fast,...): in the one H200 run so far
# (without mamba-ssm) they made the H-Net slower, so "auto" keeps the unfused path until a run
# with the SSD kernels says otherwise.
add_rmsnorm = KernelOp("add_rmsnorm", add_rmsnorm_reference, "hnet_seq.kernels.fused:add_rmsnorm_fast",
                       "fp32 residual add fused with the next RMSNorm", traceable=True, auto_fast=False)
swiglu = KernelOp("swiglu", swiglu_reference, "hnet_seq.kernels.fused:swiglu_fast",
                  "SwiGLU activation silu(gate) * up", traceable=True, auto_fast=False)
linear_ce = KernelOp("linear_ce", linear_cross_entropy_reference, "hnet_seq.kernels.fused:linear_cross_entropy_fast",
                     "output head + per-position cross-entropy", traceable=True, auto_fast=False)
FUSED_OPS = (add_rmsnorm, swiglu, linear_ce)

ALL_OPS = (ssd, conv1d, attention, attention_kvcache, rmsnorm, *FUSED_OPS)

__all__ = ["ALL_OPS", "FUSED_OPS", "KernelOp", "add_rmsnorm", "attention", "attention_kvcache", "conv1d", "describe",
           "force_backend", "linear_ce", "requested_backend", "rmsnorm", "set_spec", "ssd", "swiglu"]
