"""The padded dense attention path (cuDNN's SDPA on Hopper) equals the per-sequence reference:
outputs and gradients, for equal lengths (a view) and mixed ones (scattered into rows), with and
without a softmax scale; and :func:`dense_pays` keeps CPUs, short windows and padding-heavy
batches on the varlen kernel."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_close_all, cu_from_lengths, grads

from hnet_seq.kernels.padded_attention import dense_pays, padded_causal_attention
from hnet_seq.kernels.reference import attention_reference


@pytest.mark.parametrize("lengths,scale", [([16, 16, 16], None), ([1, 37, 0, 20, 5], 0.3), ([9], None)])
def test_padded_dense_equals_reference_outputs_and_gradients(lengths, scale):
    torch.manual_seed(0)
    cu = cu_from_lengths(lengths)
    q, k, v = (torch.randn(sum(lengths), 3, 8).requires_grad_() for _ in range(3))
    leaves, cot = {"q": q, "k": k, "v": v}, torch.randn(sum(lengths), 3, 8)
    got = grads(padded_causal_attention(q, k, v, cu, max(lengths), softmax_scale=scale), leaves, cot)
    want = grads(attention_reference(q, k, v, cu, max(lengths), softmax_scale=scale), leaves, cot)
    assert_close_all(got, want, 1e-5)


def test_dense_never_pays_on_cpu():
    assert not dense_pays(torch.empty(100, 2, 4), 4, 25, -1)  # the varlen/reference path serves


@pytest.mark.gpu
def test_dense_pays_only_where_padding_is_small_and_no_window_cuts():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the dense path is for Hopper GPUs")
    q = torch.empty(100, 2, 4, device="cuda")
    assert dense_pays(q, 4, 25, -1) and dense_pays(q, 4, 25, 24) and dense_pays(q, 4, 30, -1)  # 20% padding
    assert not dense_pays(q, 4, 25, 10)  # a sliding window shorter than the longest sequence
    assert not dense_pays(q, 4, 40, -1)  # 60% padding
    assert not dense_pays(torch.empty(40000, 2, 4, device="cuda"), 1, 40000, -1)  # past MAX_SEQLEN
