"""The FLOP count behind MFU: exact attention context and the per-stage accounting."""
from __future__ import annotations

from pathlib import Path

import pytest

from hnet_seq import load_config
from hnet_seq.flops import forward_flops, lengths_at_compression, mean_keys_per_query, training_flops

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def brute_keys(lengths, window):
    seen = [min(i + 1, window + 1) if window >= 0 else i + 1 for n in lengths for i in range(n)]
    return sum(seen) / len(seen)


@pytest.mark.parametrize("lengths, window", [([10], -1), ([10, 3], 4), ([1000, 17], 63), ([5], 0)])
def test_mean_keys_per_query_matches_enumeration(lengths, window):
    assert mean_keys_per_query(lengths, window) == pytest.approx(brute_keys(lengths, window))


def test_inner_stage_flops_scale_with_its_length():
    cfg = load_config(CONFIGS / "hnet_1stage_L.json")
    outer = [4096]
    short = forward_flops(cfg, [outer, [4096 // 6]])
    long = forward_flops(cfg, [outer, [4096 // 3]])
    # the main network (T22 at d=1536) dominates: doubling its tokens nearly doubles the cost
    assert 1.6 < long / short < 2.0
    assert training_flops(cfg, [outer, [1365]]) == pytest.approx(3 * forward_flops(cfg, [outer, [1365]]))


def test_lengths_at_compression_divides_stage_by_stage():
    assert lengths_at_compression([1000, 7], [3, 3]) == [[1000, 7], [333, 2], [111, 1]]
    assert lengths_at_compression([5], [6.0]) == [[5], [1]]  # never below one position
    assert lengths_at_compression([64], []) == [[64]]
