"""The SSD cut into pieces (mamba-ssm's 32-bit offsets) equals one call: the plan on CPU with the
reference as the inner scan, the fast wrapper's decision with a stand-in scan, and the real
mamba-ssm kernel on a row past 2**30 offsets (CUDA, marked ``gpu``)."""
from __future__ import annotations

import pytest
import torch

from hnet_seq.kernels import fast, ssd_pieces
from hnet_seq.kernels.reference import ssd_reference
from hnet_seq.kernels.ssd_pieces import plan_pieces, ssd_in_pieces


def _inputs(b, l, h=4, p=3, g=2, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen)
    dt = torch.randn(b, l, h, generator=gen) - 1.0
    A = -torch.exp(torch.rand(h, generator=gen))
    B, C = torch.randn(b, l, g, n, generator=gen), torch.randn(b, l, g, n, generator=gen)
    return x, dt, A, B, C, dict(D=torch.randn(h, generator=gen), dt_bias=torch.randn(h, generator=gen), dt_softplus=True)


def _seq_idx(rows):
    return torch.stack([torch.repeat_interleave(torch.arange(len(r), dtype=torch.int32), torch.tensor(r)) for r in rows])


def test_plan_cuts_at_sequence_starts_and_inside_only_long_sequences():
    # sequences [0,5) [5,30) [30,33) [33,40), limit 8
    pieces = plan_pieces(torch.tensor([5, 30, 33]), 40, 8)
    assert pieces == [(0, 5, False), (5, 13, False), (13, 21, True), (21, 29, True), (29, 30, True),
                      (30, 33, False), (33, 40, False)]
    # short sequences share a piece; no cut needed at all
    assert plan_pieces(torch.tensor([2, 4, 6]), 8, 8) == [(0, 8, False)]
    assert plan_pieces(None, 20, 8) == [(0, 8, False), (8, 16, True), (16, 20, True)]


@pytest.mark.parametrize("limit", [8, 13, 64])
@pytest.mark.parametrize("rows", [None, [[5, 25, 3, 7], [40]], [[1, 1, 38], [20, 20]]])
def test_pieces_equal_one_call_values_and_gradients(limit, rows):
    x, dt, A, B, C, kw = _inputs(2, 40)
    seq_idx = None if rows is None else _seq_idx(rows)
    state0 = torch.randn(2, 4, 3, 5) if rows is None else None
    leaves = [x, dt, B, C, kw["D"]] + ([state0] if state0 is not None else [])
    for t in leaves:
        t.requires_grad_()
    call = dict(chunk_size=8, seq_idx=seq_idx, initial_states=state0, return_final_state=True, **kw)
    want = ssd_reference(x, dt, A, B, C, **call)
    got = ssd_in_pieces(ssd_reference, x, dt, A, B, C, limit=limit, **call)
    cot = tuple(torch.randn_like(t) for t in want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    g_got = torch.autograd.grad(got, leaves, cot)
    g_want = torch.autograd.grad(want, leaves, cot)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fast_wrapper_cuts_only_calls_past_the_offset_limit(monkeypatch):
    calls = []

    def stand_in(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, seq_idx=None, dt_softplus=False,
                 return_final_states=False, initial_states=None):
        calls.append(x.shape[1])
        return ssd_reference(x, dt, A, B, C, chunk_size=chunk_size, D=D, dt_bias=dt_bias, dt_softplus=dt_softplus,
                             seq_idx=seq_idx, return_final_state=return_final_states, initial_states=initial_states)

    monkeypatch.setattr(fast, "_mamba_chunk_scan", stand_in)
    wide = torch.randn(1, 64, 40)  # x and dt are views into a wider projection, as in Mamba-2
    x, dt = wide[..., :12].unflatten(-1, (4, 3)), wide[..., 12:16]
    _, _, A, B, C, kw = _inputs(1, 64)
    seq_idx = _seq_idx([[10, 54]])
    want = ssd_reference(x, dt, A, B, C, chunk_size=8, seq_idx=seq_idx, **kw)
    torch.testing.assert_close(fast._ssd_fast(x, dt, A, B, C, chunk_size=8, seq_idx=seq_idx, **kw), want)
    assert calls == [64]  # far below the limit: one call
    calls.clear()
    monkeypatch.setattr(ssd_pieces, "SAFE_OFFSET", 40 * 16)  # 16 positions of the 40-wide rows
    torch.testing.assert_close(fast._ssd_fast(x, dt, A, B, C, chunk_size=8, seq_idx=seq_idx, **kw), want,
                               rtol=1e-5, atol=1e-5)
    assert calls == [10, 16, 16, 16, 6] and max(calls) * wide.stride(1) <= 40 * 16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mamba_kernel_past_2_pow_30_offsets_matches_reference():
    """A 1 Mbp-window-sized row of the 100 M DNA H-Net's first Mamba-2 layer (in-projection
    2,320 wide, bf16): without the pieces mamba-ssm 2.3 faults or returns wrong values here."""
    if fast._mamba_chunk_scan is None:
        pytest.skip("mamba-ssm does not import")
    L, W, h, p, n = 600_000, 2320, 16, 64, 128
    gen = torch.Generator(device="cuda").manual_seed(0)
    proj = torch.randn(1, L, W, device="cuda", generator=gen, dtype=torch.bfloat16)
    x = proj[..., :h * p].unflatten(-1, (h, p))
    B = proj[..., h * p:h * p + n].unsqueeze(2)
    C = proj[..., h * p + n:h * p + 2 * n].unsqueeze(2)
    dt = proj[..., W - h:].float() - 2.0
    A = -torch.rand(h, device="cuda") - 0.5
    assert L * proj.stride(1) > ssd_pieces.SAFE_OFFSET
    seq_idx = _seq_idx([[123_457, L - 123_457]]).cuda()
    kw = dict(chunk_size=256, dt_softplus=True, seq_idx=seq_idx)
    y = fast._ssd_fast(x, dt, A, B, C, **kw)
    ref = ssd_reference(x, dt, A, B, C, **kw)
    assert ((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item() < 2e-2
