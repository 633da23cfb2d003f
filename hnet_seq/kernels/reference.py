"""Pure-PyTorch reference kernels: correct on any device, computed in fp32.

They define what the fast kernels must reproduce; shapes are documented in
:mod:`hnet_seq.kernels`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Log-decay that wipes the state at a sequence start: exp(-1e4) is exactly 0 in fp32, and,
# unlike -inf, it keeps every cumulative sum and its gradient finite.
_RESET_LOG_DECAY = -1.0e4


def sequence_starts(seq_idx: torch.Tensor) -> torch.Tensor:
    """``(b, l)`` bool: True where a new sequence begins (and at position 0)."""
    starts = torch.ones_like(seq_idx, dtype=torch.bool)
    starts[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    return starts


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """``(..., T)`` → ``(..., T, T)`` with ``out[i, j] = sum(a[j+1 : i+1])`` for i ≥ j, else -inf.

    Built by a masked cumulative sum rather than a difference of prefix sums, so that a
    reset's huge negative log-decay never cancels against itself.
    """
    T = a.shape[-1]
    strictly_lower = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)
    sums = a[..., :, None].expand(*a.shape, T).masked_fill(~strictly_lower, 0.0).cumsum(dim=-2)
    lower = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(0)
    return sums.masked_fill(~lower, float("-inf"))


def ssd_reference(x, dt, A, B, C, *, chunk_size, D=None, dt_bias=None, dt_softplus=False,
                  seq_idx=None, return_final_state=False, initial_states=None):
    """Chunked SSD scan: ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t``, ``y_t = C_t h_t + D x_t``.

    x (b,l,h,p), dt (b,l,h), A (h,), B and C (b,l,g,n) → y (b,l,h,p) [, final state (b,h,p,n)].
    ``initial_states (b,h,p,n)`` is ``h_{-1}`` of each batch row (a continuation); it cannot be
    combined with ``seq_idx``, whose reset at position 0 would wipe it.
    """
    if initial_states is not None and seq_idx is not None:
        raise ValueError("ssd: initial_states needs one sequence per batch row (no seq_idx)")
    out_dtype = x.dtype
    b, l, h, p = x.shape
    g = B.shape[2]
    x, dt, B, C = x.float(), dt.float(), B.float(), C.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    log_decay = dt * A.float()  # (b, l, h)
    if seq_idx is not None:
        log_decay = log_decay.masked_fill(sequence_starts(seq_idx)[..., None], _RESET_LOG_DECAY)
    B = B.repeat_interleave(h // g, dim=2)
    C = C.repeat_interleave(h // g, dim=2)
    xdt = x * dt[..., None]

    pad = (-l) % chunk_size
    if pad:  # zero input and zero log-decay leave the state untouched
        xdt, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (xdt, B, C))
        log_decay = F.pad(log_decay, (0, 0, 0, pad))
    nc = (l + pad) // chunk_size
    xdt, B, C = (t.reshape(b, nc, chunk_size, h, -1) for t in (xdt, B, C))
    a = log_decay.reshape(b, nc, chunk_size, h).permute(0, 3, 1, 2)  # (b, h, c, s)

    # Within each chunk: quadratic (attention-like) form.
    y = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, torch.exp(_segsum(a)), xdt)
    # Each chunk's own contribution to the state at its end.
    decay_to_end = torch.exp(F.pad(a[..., 1:].flip(-1).cumsum(-1).flip(-1), (0, 1)))
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_to_end, xdt)
    # Across chunks: the same recurrence one level up, as one matrix product.  The state
    # entering chunk z is sum_{c < z} exp(decay of chunks c+1..z-1) * chunk_states[c] (plus the
    # decayed initial state); with that state prepended it is a segment-sum over chunk decays.
    # A Python loop over chunks instead costs O(nc^2) in backward: every per-chunk slice
    # back-propagates a full zero tensor.
    chunk_log_decay = F.pad(a.sum(-1), (1, 0))  # (b, h, nc + 1)
    start = torch.zeros_like(chunk_states[:, 0]) if initial_states is None else initial_states.float()
    states = torch.cat([start[:, None], chunk_states], dim=1)  # (b, nc + 1, h, p, n)
    states = torch.einsum("bhzc,bchpn->bzhpn", torch.exp(_segsum(chunk_log_decay)), states)
    entering, state = states[:, :-1], states[:, -1]  # (b, nc, h, p, n), final (b, h, p, n)
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, entering, torch.exp(a.cumsum(-1)))

    y = y.reshape(b, nc * chunk_size, h, p)[:, :l]
    if D is not None:
        y = y + x * D.float()[:, None]
    y = y.to(out_dtype)
    return (y, state) if return_final_state else y


def conv1d_reference(x, weight, bias=None, seq_idx=None, activation=None):
    """Depthwise causal conv: ``y_t = sum_s w[k-1-s] x_{t-s}``, never across a ``seq_idx`` change.

    x (b,l,c), weight (c,k), bias (c,) → (b,l,c).
    """
    out_dtype = x.dtype
    k = weight.shape[-1]
    xf, w = x.float(), weight.float()
    y = xf * w[:, k - 1]
    for shift in range(1, k):
        shifted = F.pad(xf, (0, 0, shift, 0))[:, : x.shape[1]]
        if seq_idx is not None:
            same = F.pad(seq_idx, (shift, 0), value=-1)[:, : x.shape[1]] == seq_idx
            shifted = shifted * same[..., None]
        y = y + shifted * w[:, k - 1 - shift]
    if bias is not None:
        y = y + bias.float()
    if activation == "silu":
        y = F.silu(y)
    elif activation is not None:
        raise ValueError(f"conv1d: unknown activation {activation!r}")
    return y.to(out_dtype)


def attention_reference(q, k, v, cu_seqlens, max_seqlen, *, window_size=-1, softmax_scale=None):
    """Causal attention over packed sequences, one SDPA call per sequence.

    q, k, v (T,h,p), cu_seqlens (n+1,) → (T,h,p).
    """
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        n = end - start
        if n == 0:
            continue
        i = torch.arange(n, device=q.device)
        allowed = i[None, :] <= i[:, None]
        if window_size >= 0:
            allowed &= i[None, :] >= i[:, None] - window_size
        qs, ks, vs = (t[start:end].transpose(0, 1).float() for t in (q, k, v))
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=allowed, scale=softmax_scale)
        out[start:end] = o.transpose(0, 1).to(q.dtype)
    return out


def rmsnorm_reference(x, weight, *, z=None, eps=1e-5, group_size=None, norm_before_gate=False):
    """RMSNorm over the last dim (or groups of it), optionally gated by ``silu(z)``."""
    out_dtype = x.dtype
    xf = x.float()
    if z is not None and not norm_before_gate:
        xf = xf * F.silu(z.float())
    d = xf.shape[-1]
    group = group_size or d
    xg = xf.reshape(*xf.shape[:-1], d // group, group)
    xg = xg * torch.rsqrt(xg.pow(2).mean(-1, keepdim=True) + eps)
    out = xg.reshape(xf.shape) * weight.float()
    if z is not None and norm_before_gate:
        out = out * F.silu(z.float())
    return out.to(out_dtype)


def kvcache_visible(positions, valid, n_keys: int, window_size: int = -1):
    """``(b, l, n_keys)`` bool: which cached keys each new query sees (see :func:`attention_kvcache_reference`)."""
    j = torch.arange(n_keys, device=positions.device)
    visible = j[None, None] <= positions[..., None]
    if window_size >= 0:
        visible &= j[None, None] >= positions[..., None] - window_size
    return visible | ~valid[..., None]


def attention_kvcache_reference(q, k, v, positions, valid, *, window_size=-1, softmax_scale=None):
    """Causal attention of a block of new queries over a key cache, one row per sequence.

    q (b,l,h,p) at ``positions`` (b,l), k and v (b,m,h,p) (the cache, new keys included),
    ``valid`` (b,l) bool → (b,l,h,p).  Query at position ``t`` sees keys ``t-window_size … t``;
    invalid (padding) queries see every key, so that their garbage stays finite.
    """
    visible = kvcache_visible(positions, valid, k.shape[1], window_size)
    qs, ks, vs = (t.transpose(1, 2).float() for t in (q, k, v))
    out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=visible[:, None], scale=softmax_scale)
    return out.transpose(1, 2).to(q.dtype)
