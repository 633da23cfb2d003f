"""The dense attention path (cuDNN's SDPA on Hopper) equals the per-sequence reference, outputs and
gradients, with and without a softmax scale; :func:`dense_applies` takes only equal-length batches
on Hopper, uncut by a sliding window, and keeps CPUs and ragged batches on the varlen kernel."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_close_all, cu_from_lengths, grads

from hnet_seq.kernels.dense_attention import dense_applies, dense_causal_attention
from hnet_seq.kernels.reference import attention_reference


@pytest.mark.parametrize("lengths,scale", [([16, 16, 16], None), ([20, 20], 0.3), ([9], None)])
def test_dense_equals_reference_outputs_and_gradients(lengths, scale):
    torch.manual_seed(0)
    cu = cu_from_lengths(lengths)
    q, k, v = (torch.randn(sum(lengths), 3, 8).requires_grad_() for _ in range(3))
    leaves, cot = {"q": q, "k": k, "v": v}, torch.randn(sum(lengths), 3, 8)
    got = grads(dense_causal_attention(q, k, v, len(lengths), softmax_scale=scale), leaves, cot)
    want = grads(attention_reference(q, k, v, cu, max(lengths), softmax_scale=scale), leaves, cot)
    assert_close_all(got, want, 1e-5)


def test_dense_refuses_tokens_that_do_not_split_evenly():
    q = torch.randn(10, 2, 4)
    with pytest.raises(ValueError, match="10 tokens do not split into 3"):
        dense_causal_attention(q, q, q, 3)


def test_dense_never_applies_on_cpu():
    assert not dense_applies(torch.empty(100, 2, 4), 4, 25, -1)  # the varlen/reference path serves


@pytest.mark.gpu
def test_dense_applies_only_to_equal_lengths_uncut_by_a_window():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the dense path is for Hopper GPUs")
    q = torch.empty(100, 2, 4, device="cuda")
    assert dense_applies(q, 4, 25, -1) and dense_applies(q, 4, 25, 24)
    assert not dense_applies(q, 4, 30, -1)  # ragged: lengths up to 30 summing to 100
    assert not dense_applies(q, 4, 25, 10)  # a sliding window shorter than the sequences
    assert not dense_applies(torch.empty(40000, 2, 4, device="cuda"), 1, 40000, -1)  # past MAX_SEQLEN
