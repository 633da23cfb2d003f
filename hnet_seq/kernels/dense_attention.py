"""Packed causal attention of equal-length sequences as one dense batch, for cuDNN on Hopper.

PyTorch's SDPA has a cuDNN backend whose kernels run training shapes 1.7-2.3x faster than
FlashAttention-2 on Hopper, and not faster elsewhere (huggingface/transformers PR 48163 measured
six GPUs; on an H100 at (1, 24, 4608, 128) the gap was 631 against 329 TFLOP/s,
pytorch/pytorch#142132).  Our varlen path runs FlashAttention-2: on an H200 (2026-12-02) its
forward and backward were 45% of a Transformer training step at 27-30% of the bf16 peak.

SDPA takes dense ``(n, h, L, p)`` batches.  When every packed sequence has the same length (fixed
training windows) the packed ``(T, h, p)`` tensor already is that batch, as a view.  Ragged batches
stay on the varlen kernel: a first version scattered them into a zero-padded batch, and on the
H200 (``docs/benchmarks.md``, 2026-12-02) that made the H-Nets, whose chunked stages are always
ragged, 0.94-0.95x as fast at 8 and 16 x 8192 tokens, while equal windows made the Transformer
1.17x as fast.  :func:`dense_applies` says when the view is taken.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# Longest sequence taken: the speed-ups above were measured at training lengths, while the varlen
# kernel is the one measured on a whole 1 Mbp window (333 k chunks, 2026-12-02).
MAX_SEQLEN = 32768
# cuDNN first; SDPA falls through the list for shapes a backend cannot take (and to MATH on CPU).
BACKENDS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
_enabled = True


@contextmanager
def dense_sdpa(enabled: bool):
    """Use (or not) this path inside the block: benches time it beside the varlen kernel, on the
    same weights in one run (``bench/train_throughput.py``'s ``varlen`` variant)."""
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before


def dense_applies(q: torch.Tensor, num_sequences: int, max_seqlen: int, window_size: int) -> bool:
    """Whether packed ``q (T, h, p)`` of ``num_sequences`` (the longest ``max_seqlen``) runs as a
    dense batch: on a Hopper GPU, every sequence ``max_seqlen`` long (``T = n * max_seqlen``), no
    window shorter than that, and no longer than :data:`MAX_SEQLEN`.  Reads nothing from the device."""
    if not _enabled or not q.is_cuda or torch.cuda.get_device_capability(q.device)[0] != 9:
        return False
    if 0 <= window_size < max_seqlen - 1 or max_seqlen > MAX_SEQLEN:
        return False
    return num_sequences * max_seqlen == q.shape[0]


def dense_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_sequences: int,
                           softmax_scale: float | None = None) -> torch.Tensor:
    """Packed ``q, k, v (T, h, p)`` of ``num_sequences`` equal-length sequences → ``(T, h, p)``,
    causal within each, through SDPA on the ``(n, h, T / n, p)`` view."""
    total, heads, dim = q.shape
    if total % num_sequences:
        raise ValueError(f"dense_causal_attention: {total} tokens do not split into {num_sequences} equal sequences")
    length = total // num_sequences

    def dense(t):
        return t.view(num_sequences, length, heads, dim).transpose(1, 2)

    with sdpa_kernel(BACKENDS, set_priority=True):
        out = F.scaled_dot_product_attention(dense(q), dense(k), dense(v), is_causal=True, scale=softmax_scale)
    return out.transpose(1, 2).reshape(total, heads, dim)
