"""KV-cache attention through the packed varlen kernel equals the reference: on CPU with a
stand-in kernel that implements varlen's contract (bottom-right causal alignment, left window),
so that the packing of queries and filled keys is what is tested; the real kernel is compared on
CUDA in ``test_prefix_scoring.py`` (marked ``gpu``)."""
from __future__ import annotations

import torch

from hnet_seq.kernels import fast
from hnet_seq.kernels.reference import attention_kvcache_reference


def varlen_contract(q, k, v, cu_q, cu_k, max_q, max_k, *, window_size=(-1, 0), scale=None):
    """Sequence by sequence in fp32: query ``i`` of ``n_q`` sees keys ``j <= i + n_k - n_q`` and,
    with ``window_size = (w, 0)``, ``j >= i + n_k - n_q - w``."""
    assert window_size[1] == 0 and int((cu_q[1:] - cu_q[:-1]).max()) <= max_q
    assert int((cu_k[1:] - cu_k[:-1]).max()) <= max_k
    out = []
    for s in range(len(cu_q) - 1):
        qs, ks, vs = q[cu_q[s]:cu_q[s + 1]], k[cu_k[s]:cu_k[s + 1]], v[cu_k[s]:cu_k[s + 1]]
        n_q, n_k = qs.shape[0], ks.shape[0]
        last = torch.arange(n_q)[:, None] + n_k - n_q
        j = torch.arange(n_k)[None]
        seen = (j <= last) & ((j >= last - window_size[0]) if window_size[0] >= 0 else True)
        scores = torch.einsum("ihp,jhp->hij", qs.float(), ks.float()) * (scale or qs.shape[-1] ** -0.5)
        weights = scores.masked_fill(~seen[None], float("-inf")).softmax(-1)
        out.append(torch.einsum("hij,jhp->ihp", weights, vs.float()).to(q.dtype))
    return torch.cat(out)


def test_packed_kvcache_attention_equals_reference(monkeypatch):
    monkeypatch.setattr(fast, "_varlen_runs", lambda q: True)
    monkeypatch.setattr(fast, "_flash_varlen", None)
    monkeypatch.setattr(fast, "_torch_varlen", varlen_contract)
    monkeypatch.setattr(fast, "_torch_varlen_params", frozenset({"window_size", "scale"}))
    gen = torch.Generator().manual_seed(0)
    b, l, m, h, p = 4, 7, 40, 2, 16
    q, k, v = torch.randn(b, l, h, p, generator=gen), torch.randn(b, m, h, p, generator=gen), \
        torch.randn(b, m, h, p, generator=gen)
    # rows continue caches of 0, 30, 12 and 33 keys with 7, 4, 0 and 7 new queries (the slots after
    # each row's last position hold other rows' garbage, as in a grown cache)
    pos = torch.tensor([[0], [30], [12], [33]]) + torch.arange(l)
    valid = torch.arange(l)[None] < torch.tensor([7, 4, 0, 7])[:, None]
    for window in (-1, 3):
        for scale in (None, 0.2):
            got = fast._attention_kvcache_fast(q.bfloat16(), k.bfloat16(), v.bfloat16(), pos, valid,
                                               window_size=window, softmax_scale=scale)
            want = attention_kvcache_reference(q, k, v, pos, valid, window_size=window, softmax_scale=scale)
            assert got.dtype == torch.bfloat16 and got.shape == want.shape
            assert (got.float() - want)[valid].abs().max() <= 3e-2
            assert not got[~valid].any()  # padding queries: zeros
