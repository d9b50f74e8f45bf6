"""SyncR2 against brute-force loops over the protocol's definitions."""

import math

import numpy as np
import pytest

from syncr2.sync import SyncScore, combine_directions, combine_speaking_orders, sync_r2


def brute(cube, k=1, clip=True):
    seeds, la, lb = cube.shape
    total, var_sum = 0.0, 0.0
    for a in range(la):
        means = [sum(cube[s, a, b] for s in range(seeds)) / seeds for b in range(lb)]
        best = sorted(range(lb), key=lambda b: -means[b])[:k]
        r = sum(means[b] for b in best) / k
        total += max(0.0, r) if clip else r
        per_seed = [sum(cube[s, a, b] for b in best) / k for s in range(seeds)]
        mu = sum(per_seed) / seeds
        var_sum += sum((x - mu) ** 2 for x in per_seed) / seeds
    return total / la, math.sqrt(var_sum) / la


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("clip", [True, False])
def test_sync_matches_brute_force(k, clip):
    cube = np.random.default_rng(k).normal(0.1, 0.4, size=(3, 6, 5))
    got = sync_r2(cube, top_k=k, clip=clip)
    want = brute(cube, k, clip)
    assert got.value == pytest.approx(want[0], abs=1e-12)
    assert got.se == pytest.approx(want[1], abs=1e-12)


def test_clipping_and_hand_values():
    cube = np.array([[[0.5, 0.2], [-0.3, -0.1]], [[0.3, 0.4], [-0.5, -0.3]]])
    # seed means: [[0.4, 0.3], [-0.4, -0.2]] -> r* = [0.4, -0.2] -> clipped [0.4, 0] -> 0.2
    score = sync_r2(cube)
    assert score.value == pytest.approx(0.2)
    # variance at the argmax: layer 0 col 0 -> var(0.5, 0.3) = 0.01; layer 1 col 1 -> var(-0.1, -0.3) = 0.01
    assert score.se == pytest.approx(math.sqrt(0.02) / 2)
    assert sync_r2(cube, clip=False).value == pytest.approx(0.1)
    with pytest.raises(ValueError, match="top_k must be in 1..2"):
        sync_r2(cube, top_k=3)


def test_pair_scores():
    ab, ba = SyncScore(0.6, 0.03), SyncScore(0.4, 0.04)
    both = combine_directions(ab, ba)
    assert both.value == pytest.approx(0.5) and both.se == pytest.approx(0.025)
    orders = combine_speaking_orders(SyncScore(0.7, 0.0), SyncScore(0.5, 0.0))
    assert orders.value == pytest.approx(0.6)
