"""bench/_human.py low_complexity: symmetric DUST (window 64, level 20) against hand-computed cases and
a brute-force enumeration of the paper's definition (perfect intervals)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import _human as h  # noqa: E402

N = 4  # a non-ACGT token


def dna(text: str) -> np.ndarray:
    return np.array(["ACGTN".index(c) for c in text], np.uint8)


def brute_force(tokens: np.ndarray) -> np.ndarray:
    """Every interval of 2..62 ACGT triplets scored from its own triplet counts; its bases are masked
    when it scores above level/scale and no sub-interval scores higher."""
    trip, longest = h.triplet_codes(tokens), h.SDUST_WINDOW - 2
    m = len(trip)
    score = np.full((m, m), -np.inf)  # [first, last] triplet
    for s in range(m):
        for e in range(s + 1, min(m, s + longest)):
            window = trip[s:e + 1]
            if (window < 0).any():
                break
            counts = np.unique(window, return_counts=True)[1]
            score[s, e] = (counts * (counts - 1) // 2).sum() / (e - s)
    out = np.zeros(len(tokens), bool)
    for s, e in zip(*np.nonzero(score * h.SDUST_SCALE > h.SDUST_LEVEL)):
        inside = score[s:e + 1, s:e + 1].copy()
        inside[0, -1] = -np.inf
        if score[s, e] >= inside.max():
            out[s:e + 3] = True
    return out


def repeats_and_noise(seed: int, length: int = 240) -> np.ndarray:
    """Random bases, homopolymers, short tandem repeats and N runs, so that many intervals are suspicious."""
    rng, parts = np.random.default_rng(seed), []
    while sum(map(len, parts)) < length:
        kind = rng.integers(4)
        if kind == 0:
            parts.append(rng.integers(0, 4, rng.integers(5, 30)))
        elif kind == 1:
            parts.append(np.tile(rng.integers(0, 4, rng.integers(1, 4)), rng.integers(2, 12)))
        elif kind == 2:
            parts.append(np.full(rng.integers(1, 3), N))
        else:
            parts.append(np.full(rng.integers(3, 12), rng.integers(4)))
    return np.concatenate(parts)[:length].astype(np.uint8)


@pytest.mark.parametrize("seed", range(4))
def test_the_vectorised_mask_is_the_brute_force_union_of_perfect_intervals(seed):
    tokens = repeats_and_noise(seed)
    want = brute_force(tokens)
    assert 20 < want.sum() < len(tokens)  # the case has masked and unmasked bases
    np.testing.assert_array_equal(h.low_complexity(tokens), want)


def test_random_bases_are_almost_never_masked():
    tokens = np.random.default_rng(0).integers(0, 4, 50_000).astype(np.uint8)
    assert h.low_complexity(tokens).mean() < 0.005  # now and then 7+ equal bases, by chance


def test_a_poly_a_in_random_sequence_is_masked_over_its_span():
    rng = np.random.default_rng(1)
    left, right = rng.integers(1, 4, 100), rng.integers(1, 4, 100)  # no A beside the run
    tokens = np.concatenate([left, np.zeros(20, np.int64), right]).astype(np.uint8)
    got = h.low_complexity(tokens)
    assert got[100:120].all() and got[95:125].sum() <= 20 + 2


def test_a_30_base_dinucleotide_repeat_is_masked():
    rng = np.random.default_rng(2)
    tokens = np.concatenate([rng.integers(0, 4, 100), dna("CA" * 15), rng.integers(0, 4, 100)]).astype(np.uint8)
    got = h.low_complexity(tokens)
    assert got[100:130].all() and got[90:140].sum() <= 30 + 6


@pytest.mark.parametrize("text, masked", [
    ("AAAAAA", False),  # 4 × AAA: r = 6, l − 1 = 3, score 2.0: not above the level
    ("AAAAAAA", True),  # 5 × AAA: r = 10, l − 1 = 4, score 2.5
    ("CACACACACAC", False),  # 5 × CAC + 4 × ACA: r = 10 + 6 = 16, l − 1 = 8, score 2.0
    ("CACACACACACA", True),  # 5 + 5: r = 20, l − 1 = 9, score 2.22
])
def test_the_level_is_a_strict_threshold_on_the_score_at_2(text, masked):
    assert h.low_complexity(dna(text)).tolist() == [masked] * len(text)


def test_a_non_acgt_token_breaks_intervals():
    assert h.low_complexity(dna("AAAAAAAA")).all()
    assert not h.low_complexity(dna("AAAANAAA")).any()  # 2 + 1 AAA triplets: none above 2.0
    tokens = dna("AAAAAAAA")
    tokens[4] = 9  # any token ≥ ACGT
    assert not h.low_complexity(tokens).any()
