"""SyncR2 against brute-force loops over the protocol's definitions."""

import math

import numpy as np
import pytest

from syncr2.synchrony.sync import (
    SyncScore,
    combine_directions,
    combine_speaking_orders,
    sync_r2,
)


def brute(cube, k=1, clip=True):
    seeds, la, lb = cube.shape
    total, var_sum = 0.0, 0.0
    for a in range(la):
        means = [sum(cube[s, a, b] for s in range(seeds)) / seeds for b in range(lb)]
        best = sorted(range(lb), key=lambda b: -means[b])[:k]
        r = sum(means[b] for b in best) / k
        total += max(0.0, r) if clip else r
        if clip and r < 0:
            continue  # a floored layer is the constant 0: zero variance (docs/protocol.md, "Ridge maps and SyncR2")
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
    # variance at the argmax: layer 0 col 0 -> var(0.5, 0.3) = 0.01; layer 1 col 1 -> var(-0.1, -0.3) = 0.01,
    # but layer 1 is floored to the constant 0 when clipping, so it adds no variance
    assert score.se == pytest.approx(math.sqrt(0.01) / 2)
    raw = sync_r2(cube, clip=False)
    assert raw.value == pytest.approx(0.1)
    assert raw.se == pytest.approx(math.sqrt(0.02) / 2)
    with pytest.raises(ValueError, match="top_k must be in 1..2"):
        sync_r2(cube, top_k=3)


def test_pair_scores():
    ab, ba = SyncScore(0.6, 0.03), SyncScore(0.4, 0.04)
    both = combine_directions(ab, ba)
    assert both.value == pytest.approx(0.5) and both.se == pytest.approx(0.025)
    orders = combine_speaking_orders(SyncScore(0.7, 0.0), SyncScore(0.5, 0.0))
    assert orders.value == pytest.approx(0.6)


def test_summary_keeps_the_unclipped_score_of_all_negative_grids(tmp_path):
    """All R2 < 0 (random models): SyncR2 is 0, the unclipped column keeps the brute-force value."""
    import pandas as pd

    from syncr2.report.figures import summary_tables
    from syncr2.synchrony.r2table import write_r2_table
    from syncr2.synchrony.summary import summarize_tables

    rng = np.random.default_rng(7)
    cubes, paths = {}, []
    for direction, (la, lb) in (("AtoB", (3, 4)), ("BtoA", (4, 3))):
        cube = rng.normal(-2.0, 0.5, size=(3, la, lb))
        cubes[direction] = cube
        table = pd.DataFrame([(s, a, b, cube[s, a, b], 40, 10) for s in range(3) for a in range(la) for b in range(lb)],
                             columns=["split_seed", "layer_src", "layer_tgt", "r2", "n_train", "n_test"])
        paths.append(write_r2_table(table, tmp_path / f"{direction}.parquet", pair="a__b",
                                    condition="lag1", direction=direction))
    summary = summarize_tables(paths).set_index("direction")
    for direction, cube in cubes.items():
        value, se = brute(cube, clip=False)
        assert summary.loc[direction, "syncr2"] == 0.0
        assert summary.loc[direction, "se"] == 0.0  # every layer floored: no variance left
        assert summary.loc[direction, "syncr2_unclipped"] == pytest.approx(value, abs=1e-12)
        assert summary.loc[direction, "se_unclipped"] == pytest.approx(se, abs=1e-12)
        assert se > 0
    both = (brute(cubes["AtoB"], clip=False)[0] + brute(cubes["BtoA"], clip=False)[0]) / 2
    assert summary.loc["combined", "syncr2_unclipped"] == pytest.approx(both, abs=1e-12)
    both_se = math.sqrt(brute(cubes["AtoB"], clip=False)[1] ** 2 + brute(cubes["BtoA"], clip=False)[1] ** 2) / 2
    assert summary.loc["combined", "se_unclipped"] == pytest.approx(both_se, abs=1e-12)
    assert summary.loc["combined", "se"] == 0.0
    assert both < -1.0
    summary_tables(summary.reset_index(), tmp_path / "tab")
    md = (tmp_path / "tab" / "synchrony.md").read_text()
    assert "| a__b | 0.0000 |" in md and f"| a__b | {both:.4f} |" in md
    csv = pd.read_csv(tmp_path / "tab" / "synchrony.csv").set_index("direction")
    assert list(csv.columns[csv.columns.get_loc("syncr2_unclipped") + 1:][:2]) == ["se_unclipped", "se"]
    assert csv.loc["combined", "se_unclipped"] == pytest.approx(both_se, abs=1e-4)


def test_clipped_se_drops_floored_layers_mixed_cube(tmp_path):
    """Hand-built cube: layers 1 and 3 have a negative best R2; only layers 0 and 2 add variance."""
    import pandas as pd

    from syncr2.synchrony.r2table import write_r2_table
    from syncr2.synchrony.summary import SUMMARY_COLUMNS, summarize_tables

    cube = np.array([
        # seed 0
        [[0.50, 0.10, 0.20], [-0.40, -0.20, -0.90], [0.05, 0.30, 0.10], [-0.01, -0.50, -0.30]],
        # seed 1
        [[0.30, 0.20, 0.10], [-0.60, -0.10, -0.70], [0.15, 0.50, 0.00], [-0.03, -0.70, -0.10]],
        # seed 2
        [[0.40, 0.00, 0.30], [-0.50, -0.60, -0.80], [0.10, 0.10, 0.20], [-0.05, -0.60, -0.20]],
    ])
    # seed means per layer: best targets 0 (0.40), 1 (-0.30), 1 (0.30), 0 (-0.03)
    var0 = np.var([0.50, 0.30, 0.40])  # ddof 0: 2/300
    var2 = np.var([0.30, 0.50, 0.10])  # 8/300
    var1 = np.var([-0.20, -0.10, -0.60])
    var3 = np.var([-0.01, -0.03, -0.05])
    assert var0 == pytest.approx(2 / 300) and var2 == pytest.approx(8 / 300)
    clipped = sync_r2(cube)
    assert clipped.value == pytest.approx((0.40 + 0.30) / 4)
    assert clipped.se == pytest.approx(math.sqrt(var0 + var2) / 4, abs=1e-14)
    raw = sync_r2(cube, clip=False)
    assert raw.value == pytest.approx((0.40 - 0.30 + 0.30 - 0.03) / 4)
    assert raw.se == pytest.approx(math.sqrt(var0 + var1 + var2 + var3) / 4, abs=1e-14)
    assert (clipped.value, clipped.se) == pytest.approx(brute(cube, 1, True), abs=1e-14)
    assert (raw.value, raw.se) == pytest.approx(brute(cube, 1, False), abs=1e-14)
    # top-2: layer 3's top-2 mean is still negative, the others as brute force says
    assert (sync_r2(cube, top_k=2).value, sync_r2(cube, top_k=2).se) == pytest.approx(brute(cube, 2, True), abs=1e-14)

    # summary: se is the clipped SE, se_unclipped the unclipped one; combined rows combine both alike
    assert SUMMARY_COLUMNS.index("se_unclipped") == SUMMARY_COLUMNS.index("syncr2_unclipped") + 1
    other = np.random.default_rng(5).normal(0.0, 0.3, size=(3, 3, 4))
    paths = []
    for direction, c in (("AtoB", cube), ("BtoA", other)):
        table = pd.DataFrame([(s, a, b, c[s, a, b], 40, 10) for s in range(c.shape[0])
                              for a in range(c.shape[1]) for b in range(c.shape[2])],
                             columns=["split_seed", "layer_src", "layer_tgt", "r2", "n_train", "n_test"])
        paths.append(write_r2_table(table, tmp_path / f"{direction}.parquet", pair="a__b",
                                    condition="experimental", direction=direction))
    summary = summarize_tables(paths)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    summary = summary.set_index("direction")
    for direction, c in (("AtoB", cube), ("BtoA", other)):
        assert summary.loc[direction, "se"] == pytest.approx(brute(c, 1, True)[1], abs=1e-12)
        assert summary.loc[direction, "se_unclipped"] == pytest.approx(brute(c, 1, False)[1], abs=1e-12)
    for col, clip in (("se", True), ("se_unclipped", False)):
        want = math.hypot(brute(cube, 1, clip)[1], brute(other, 1, clip)[1]) / 2
        assert summary.loc["combined", col] == pytest.approx(want, abs=1e-12)
    assert summary.loc["combined", "se"] < summary.loc["combined", "se_unclipped"]
