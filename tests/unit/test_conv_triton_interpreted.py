"""The Triton conv1d run in Triton's interpreter (CPU) against the reference, forward and backward,
and its argument checks.

Errors are relative: ``max|a - b| / max|b|``, with ``b`` the reference.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import assert_close_all, grads, seq_idx_from_lengths

from hnet_seq import kernels
from hnet_seq.kernels.reference import conv1d_reference

KERNELS_DIR = Path(kernels.__file__).resolve().parent


@pytest.fixture(scope="module")
def interpreted_conv():
    """A private copy of ``conv_triton`` whose kernels were built with ``TRITON_INTERPRET=1``."""
    pytest.importorskip("triton")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    try:
        spec = importlib.util.spec_from_file_location("hnet_seq.kernels._conv_triton_interpreted",
                                                      KERNELS_DIR / "conv_triton.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        mp.undo()
    return module


INTERP_CASES = [  # c, k, bias, seq_idx rows, activation, dtype, tolerance
    # Resets right at the tile edge (BLOCK_L = 32): t = 31 and t = 32.
    (20, 4, True, [[31, 1, 8], [5, 35]], "silu", torch.float32, 1e-5),
    # The interpreter rounds fp32 -> bf16 towards zero (compiled Triton rounds to nearest),
    # so the bf16 comparison allows one bf16 ulp.
    (20, 3, False, None, None, torch.bfloat16, 1e-2),
    (20, 4, False, None, "silu", torch.bfloat16, 1e-2),
    # Two channel blocks (BLOCK_C = 128), the second one partly masked; resets, no activation.
    (150, 2, True, [[3, 30, 7], [40]], None, torch.float32, 1e-5),
]


@pytest.mark.parametrize("c,k,bias,rows,act,dtype,tol", INTERP_CASES)
def test_triton_conv1d_interpreted_matches_reference(interpreted_conv, c, k, bias, rows, act, dtype, tol):
    torch.manual_seed(0)
    full = torch.randn(2, 40, c + 5, dtype=dtype)
    x = full[..., 2:2 + c].detach().requires_grad_()  # a strided view, like the model's split
    w = torch.randn(c, k, dtype=dtype, requires_grad=True)
    b = torch.randn(c, dtype=dtype, requires_grad=True) if bias else None
    seq_idx = seq_idx_from_lengths(rows) if rows else None
    leaves = {"x": x, "w": w, "b": b}
    y = interpreted_conv.conv1d_fast(x, w, b, seq_idx, act)
    assert y.dtype == dtype and y.shape == x.shape
    cot = torch.randn_like(y)
    got = grads(y, leaves, cot)
    want = grads(conv1d_reference(x, w, b, seq_idx, act), leaves, cot)
    assert_close_all(got, want, tol)


def test_conv1d_fast_rejects_bad_arguments(interpreted_conv):
    x = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match="activation"):
        interpreted_conv.conv1d_fast(x, torch.randn(3, 2), activation="relu")
    with pytest.raises(ValueError, match="weight"):
        interpreted_conv.conv1d_fast(x, torch.randn(4, 2))
