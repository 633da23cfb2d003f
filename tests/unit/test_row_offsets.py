"""The gated RMSNorm cut into row pieces (mamba-ssm's 32-bit row offsets) equals one call: the fast
wrapper's decision with the reference as a stand-in kernel on CPU, and the real mamba-ssm kernel
on rows past 2**31 offsets (CUDA, marked ``gpu``)."""
from __future__ import annotations

import pytest
import torch

from hnet_seq.kernels import fast, offsets
from hnet_seq.kernels.offsets import rows_per_call
from hnet_seq.kernels.reference import rmsnorm_reference


def test_rows_per_call_counts_the_widest_row_stride():
    wide = torch.zeros(100, 40)
    assert rows_per_call(wide[:, :8]) is None  # 100 rows × 40 is far under 2**30
    assert rows_per_call(torch.zeros(10, 8), wide[:10, :8]) is None
    # 2**30 / 40 rows fit one call; the 8-wide output alone would allow 5× more
    huge = torch.empty_strided((2**30 // 40 + 1, 8), (40, 1))
    assert rows_per_call(huge) == 2**30 // 40
    assert rows_per_call(torch.empty_strided((2**30 // 8 + 1, 8), (8, 1))) == 2**27


@pytest.mark.parametrize("gated", [False, True])
def test_fast_rmsnorm_in_row_pieces_equals_one_call(monkeypatch, gated):
    calls = []

    def stand_in(x, weight, bias, z=None, eps=1e-6, group_size=None, norm_before_gate=True):
        assert bias is None and x.dim() == 2
        calls.append(x.shape[0])
        return rmsnorm_reference(x, weight, z=z, eps=eps, group_size=group_size, norm_before_gate=norm_before_gate)

    monkeypatch.setattr(fast, "_mamba_rmsnorm_fn", stand_in)
    gen = torch.Generator().manual_seed(0)
    proj = torch.randn(2, 30, 40, generator=gen, requires_grad=True)  # x and z are views, as in Mamba-2
    x, z = (proj[..., :12], proj[..., 20:32]) if gated else (proj[..., :12].contiguous(), None)
    weight = torch.randn(12, generator=gen, requires_grad=True)
    kw = dict(z=z, eps=1e-5, group_size=4, norm_before_gate=False)
    want = rmsnorm_reference(x, weight, **kw)
    cot = torch.randn_like(want)
    g_want = torch.autograd.grad(want, (proj, weight), cot)
    monkeypatch.setattr(offsets, "SAFE_OFFSET", 40 * 16)  # 16 rows of the 40-wide projection
    got = fast._rmsnorm_fast(x, weight, **kw)
    assert calls == ([16, 16, 16, 12] if gated else [53, 7])  # contiguous 12-wide rows: 53 fit
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (proj, weight), cot), g_want):
        torch.testing.assert_close(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mamba_rmsnorm_past_2_pow_31_row_offsets_matches_reference():
    """The gate of a 1 Mbp window's Mamba-2 layer: 1 M rows of a 4,384-wide bf16 projection
    (without the pieces mamba-ssm 2.3 faults here, 2026-12-02)."""
    if fast._mamba_rmsnorm_fn is None:
        pytest.skip("mamba-ssm does not import")
    L, W, d = 1_000_000, 4384, 2048
    gen = torch.Generator(device="cuda").manual_seed(0)
    proj = torch.randn(1, L, W, device="cuda", generator=gen, dtype=torch.bfloat16)
    x, z = proj[..., W - d:].contiguous(), proj[..., :d]
    weight = torch.rand(d, device="cuda") + 0.5
    assert L * proj.stride(1) > 2**31
    y = fast._rmsnorm_fast(x, weight, z=z, group_size=d // 8, norm_before_gate=False)
    for rows in (slice(0, 1000), slice(L - 1000, L)):  # the reference on all rows would need ~50 GiB
        ref = rmsnorm_reference(x[:, rows], weight, z=z[:, rows], group_size=d // 8, norm_before_gate=False)
        assert ((y[:, rows].float() - ref.float()).abs().max() / ref.float().abs().max()).item() < 2e-2
