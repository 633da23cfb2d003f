"""Packed causal attention through a padded dense batch, for cuDNN's attention on Hopper.

PyTorch's SDPA has a cuDNN backend whose kernels run training shapes 1.7-2.3x faster than
FlashAttention-2 on Hopper, and not faster elsewhere (huggingface/transformers PR 48163 measured
six GPUs; on an H100 at (1, 24, 4608, 128) the gap was 631 against 329 TFLOP/s,
pytorch/pytorch#142132).  Our varlen path runs FlashAttention-2: on an H200 (2026-12-02) its
forward and backward were 45% of a Transformer training step at 27-30% of the bf16 peak.

SDPA takes dense ``(n, h, L, p)`` batches, so the packed sequences are laid out at ``L`` = the
longest, each from the start of its row.  With a causal mask that padding is exact without a
mask of its own: a real query at position ``i`` sees keys ``0 .. i`` of its row, all real; the
padded queries after a sequence's end read real and zero keys and their outputs are dropped.
When every sequence has the same length (fixed training windows) the layout is a view, with
no copy.  :func:`dense_pays` says when the padding (at most :data:`MAX_PADDING` of the tokens)
is worth it; a sliding window shorter than the longest sequence stays on the varlen kernel.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

MAX_PADDING = 0.25  # padded slots per real token at most: the kernel's speed-up must pay for them
# Longest sequence taken: the speed-ups above were measured at training lengths, while the varlen
# kernel is the one measured on a whole 1 Mbp window (333 k chunks, 2026-12-02).
MAX_SEQLEN = 32768
# cuDNN first; SDPA falls through the list for shapes a backend cannot take (and to MATH on CPU).
BACKENDS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
_enabled = True


@contextmanager
def padded_dense(enabled: bool):
    """Use (or not) this path inside the block: benches time it beside the varlen kernel, on the
    same weights in one run (``bench/train_throughput.py``'s ``varlen`` variant)."""
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before


def dense_pays(q: torch.Tensor, num_sequences: int, max_seqlen: int, window_size: int) -> bool:
    """Whether packed ``q (T, h, p)`` of ``num_sequences`` (the longest ``max_seqlen``) should run
    padded and dense: on a Hopper GPU, with no window shorter than the longest sequence, none
    longer than :data:`MAX_SEQLEN`, and at most :data:`MAX_PADDING` padded slots per token.
    Reads nothing from the device."""
    if not _enabled or not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return False
    if 0 <= window_size < max_seqlen - 1 or max_seqlen > MAX_SEQLEN:
        return False
    return num_sequences * max_seqlen <= (1 + MAX_PADDING) * q.shape[0]


def padded_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                            max_seqlen: int, softmax_scale: float | None = None) -> torch.Tensor:
    """Packed ``q, k, v (T, h, p)`` with ``cu_seqlens (n + 1,)`` → ``(T, h, p)``, causal within
    each sequence, through SDPA on the padded ``(n, h, max_seqlen, p)`` batch."""
    total, heads, dim = q.shape
    n = cu_seqlens.numel() - 1
    if n * max_seqlen == total:  # equal lengths: the packed tensor already is the batch
        def dense(t):
            return t.view(n, max_seqlen, heads, dim).transpose(1, 2)

        def packed(o):
            return o.transpose(1, 2).reshape(total, heads, dim)
    else:
        starts = cu_seqlens.long()
        seq = torch.repeat_interleave(torch.arange(n, device=q.device), starts.diff(), output_size=total)
        slot = seq * max_seqlen + torch.arange(total, device=q.device) - starts[seq]  # (T,) row-major in (n, L)

        def dense(t):
            buf = t.new_zeros(n * max_seqlen, heads, dim).index_copy(0, slot, t)
            return buf.view(n, max_seqlen, heads, dim).transpose(1, 2)

        def packed(o):
            return o.transpose(1, 2).reshape(n * max_seqlen, heads, dim).index_select(0, slot)
    with sdpa_kernel(BACKENDS, set_priority=True):
        out = F.scaled_dot_product_attention(dense(q), dense(k), dense(v), is_causal=True, scale=softmax_scale)
    return packed(out)
