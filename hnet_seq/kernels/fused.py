"""Fused block pieces: residual add + RMSNorm, SwiGLU, and a chunked head cross-entropy.

Each op has a plain reference (the unfused PyTorch the model ran before) and a fast version:

* ``add_rmsnorm`` and ``swiglu``: the same function under ``torch.compile`` (Inductor emits one
  Triton kernel forward and one backward instead of a chain of elementwise kernels, and keeps
  no fp32 intermediates for the backward).  ``dynamic=True`` because dynamic chunking changes
  the token count ``T`` every step: one graph serves every length, no recompiles.
* ``linear_cross_entropy``: a custom autograd function that never holds the full ``(T, V)``
  fp32 logits: it computes them ``chunk`` rows at a time, keeps only the log-sum-exp, and
  recomputes each chunk in the backward.

Shapes: ``add_rmsnorm(branch (T, d), residual (T, d) fp32, weight (d,))`` →
``(normed (T, d) in weight's dtype, residual + branch (T, d) fp32)``;
``swiglu(h (..., 2f))`` with ``h = [up, gate]`` → ``silu(gate) * up (..., f)``;
``linear_cross_entropy(hidden (T, d), weight (V, d), targets (T,))`` → NLL ``(T,)`` fp32.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .reference import rmsnorm_reference


# ------------------------------------------------------------------ residual add + RMSNorm
def _add_rmsnorm(branch, residual, weight, eps, rmsnorm):
    residual = residual + branch  # an fp32 residual promotes a bf16 branch inside the add
    return rmsnorm(residual.to(weight.dtype), weight, eps=eps), residual


def add_rmsnorm_reference(branch, residual, weight, *, eps=1e-5):
    """``residual += branch`` (in fp32) then RMSNorm of the new residual in ``weight``'s dtype.

    The norm is the ``rmsnorm`` op, so with this op on ``reference`` a block runs exactly the
    kernels it ran before the fused op existed (mamba-ssm's Triton RMSNorm on CUDA).
    """
    from . import rmsnorm  # the registry op; imported here because the package imports this module

    return _add_rmsnorm(branch, residual, weight, eps, rmsnorm)


def _add_rmsnorm_torch(branch, residual, weight, eps):
    return _add_rmsnorm(branch, residual, weight, eps, rmsnorm_reference)


@functools.cache
def _compile(fn):
    # One graph per (dtype, grad mode, width class) a model uses: an H-Net's stages, training
    # and evaluation need more than dynamo's default of 8 before it would fall back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(fn, dynamic=True)


def _compiled(fn):
    """``fn`` under ``torch.compile``, built on first use (importing dynamo costs seconds).

    Inside a model that is itself being compiled, ``fn`` as is: the outer graph fuses it.
    """
    return fn if torch.compiler.is_compiling() else _compile(fn)


def add_rmsnorm_fast(branch, residual, weight, *, eps=1e-5):
    """:func:`add_rmsnorm_reference` compiled into one fused kernel (forward and backward)."""
    return _compiled(_add_rmsnorm_torch)(branch, residual, weight, eps)


# ------------------------------------------------------------------------------- SwiGLU
def swiglu_reference(h):
    """``h = [up, gate]`` on the last dim → ``silu(gate) * up``."""
    up, gate = h.chunk(2, dim=-1)
    return F.silu(gate) * up


def swiglu_fast(h):
    """:func:`swiglu_reference` compiled: one kernel, the backward recomputes ``silu``."""
    return _compiled(swiglu_reference)(h)


# ----------------------------------------------------------------- head + cross-entropy
def linear_cross_entropy_reference(hidden, weight, targets, *, chunk=8192):
    """Per-position NLL of ``hidden @ weight.T`` (logits materialised in full, in fp32)."""
    return F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="none")


class _ChunkedLinearCE(torch.autograd.Function):
    """NLL per row of ``x @ w.T``; saves ``x``, ``w`` and the log-sum-exp, never the logits."""

    @staticmethod
    def forward(ctx, x, w, targets, chunk):
        nll = torch.empty(x.shape[0], device=x.device, dtype=torch.float32)
        lse = torch.empty_like(nll)
        for i in range(0, x.shape[0], chunk):
            logits = (x[i:i + chunk] @ w.T).float()
            lse[i:i + chunk] = torch.logsumexp(logits, dim=-1)
            nll[i:i + chunk] = lse[i:i + chunk] - logits.gather(1, targets[i:i + chunk, None])[:, 0]
        ctx.save_for_backward(x, w, targets, lse)
        ctx.chunk = chunk
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        x, w, targets, lse = ctx.saved_tensors
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for i in range(0, x.shape[0], ctx.chunk):
            xs = x[i:i + ctx.chunk]
            # d nll / d logits = softmax - onehot(target), scaled by the incoming gradient.
            g = torch.exp((xs @ w.T).float() - lse[i:i + ctx.chunk, None])
            g[torch.arange(g.shape[0], device=g.device), targets[i:i + ctx.chunk]] -= 1
            g = (g * grad_nll[i:i + ctx.chunk, None]).to(x.dtype)
            if grad_x is not None:
                grad_x[i:i + ctx.chunk] = g @ w
            if grad_w is not None:
                grad_w += (g.T @ xs).float()
        return grad_x, None if grad_w is None else grad_w.to(w.dtype), None, None


def linear_cross_entropy_fast(hidden, weight, targets, *, chunk=8192):
    """:func:`linear_cross_entropy_reference` without the ``(T, V)`` fp32 logits.

    Under autocast the products run in the autocast dtype, as ``F.linear`` would; the casts are
    ordinary autograd ops, so gradients reach ``hidden`` and ``weight`` in their own dtypes.
    """
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    else:
        weight = weight.to(hidden.dtype)
    with torch.autocast(device, enabled=False):
        return _ChunkedLinearCE.apply(hidden, weight, targets, chunk)
