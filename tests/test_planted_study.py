"""The known-answer study's generator against its analytic truth (and the performance contract)."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from syncr2.social.performance import PERFORMANCE_COLUMNS, planted_performance
from syncr2.synchrony.datasets import build_dataset
from syncr2.synchrony.planted_study import (
    PlantedStudy,
    analytic_r2,
    analytic_syncr2,
    planted_performance_scores,
    simulate_pair_seed,
    write_planted_block,
)

STUDY = PlantedStudy(n_turns=8, latent_dim=3, layers=3, dim=6, rho=0.6, noise=(0.3, 0.6, 1.2), passive_noise=0.8,
                     coupling={"A__B": 0.8, "A__C": 0.0})


def ols_grid(xs, ys):
    """Test-set R2 of every layer pair by plain OLS on half the rows (an independent oracle)."""
    n = len(xs)
    tr, te = slice(0, n // 2), slice(n // 2, n)
    return np.array([[r2_score(ys[te, b], LinearRegression().fit(xs[tr, a], ys[tr, b]).predict(xs[te, a]))
                      for b in range(ys.shape[1])] for a in range(xs.shape[1])])


@pytest.mark.parametrize("condition,lag", [("experimental", 0), ("lag1", 1), ("passive", 0)])
def test_analytic_r2_matches_large_sample_ols(condition, lag):
    _, reps = simulate_pair_seed(STUDY, "A__B", "A", "B", 0, range(2500))
    kind = "passive" if condition == "passive" else "genuine"
    src1 = reps[kind][1][1].reshape(2500, 4, 3, 6)
    tgt2 = reps["genuine"][2][1].reshape(2500, 4, 3, 6)
    src2 = reps[kind][2][1].reshape(2500, 4, 3, 6)
    tgt1 = reps["genuine"][1][1].reshape(2500, 4, 3, 6)
    rounds = 4 - lag
    atob = ols_grid(src1[:, :rounds].reshape(-1, 3, 6), tgt2[:, lag:].reshape(-1, 3, 6))
    btoa = ols_grid(src2[:, :rounds - 1].reshape(-1, 3, 6), tgt1[:, lag + 1:].reshape(-1, 3, 6))
    assert np.abs(atob - analytic_r2(STUDY, "A__B", "A", "B", condition, "AtoB")).max() < 0.02
    assert np.abs(btoa - analytic_r2(STUDY, "A__B", "A", "B", condition, "BtoA")).max() < 0.02


def test_planted_structure():
    s = {c: analytic_syncr2(STUDY, "A__B", "A", "B", c, "AtoB") for c in ("experimental", "passive", "lag1", "lag2")}
    assert s["experimental"] > s["lag1"] > s["lag2"] > 0 and s["experimental"] > s["passive"] > 0
    assert analytic_syncr2(STUDY, "A__C", "A", "C", "experimental", "AtoB", clip=False) == pytest.approx(0, abs=1e-12)
    assert analytic_syncr2(STUDY, "A__C", "A", "C", "experimental", "BtoA", clip=False) == pytest.approx(0, abs=1e-12)


def test_planted_performance_is_the_planted_line():
    study = PlantedStudy(**{**STUDY.__dict__, "performance": {"intercept": 1.0, "slope": 4.0, "noise_sd": 0.0, "seed": 0}})
    pairs = {"A__B": ("A", "B"), "A__C": ("A", "C")}
    scores = planted_performance_scores(study, pairs)
    for pair, (m1, m2) in pairs.items():
        sync = np.mean([analytic_syncr2(study, pair, m1, m2, "experimental", d) for d in ("AtoB", "BtoA")])
        assert scores[(m1, m2)] == pytest.approx(1.0 + 4.0 * sync)
    table = planted_performance(scores, {"A": "F", "B": "F", "C": "F"}, "F", ["A", "B", "C"])
    assert list(table.columns) == list(PERFORMANCE_COLUMNS)
    assert set(table.level) == {"ordered", "averaged", "one_order"}


def test_block_files_pair_up_and_do_not_depend_on_the_block(tmp_path):
    def write(ids, tag):
        out = tmp_path / tag
        write_planted_block(STUDY, "A__B", "A", "B", 1, ids, out / "ep.parquet", (out / "g1.parquet", out / "g2.parquet"),
                            (out / "p1.parquet", out / "p2.parquet"))
        return out
    whole, part = write(range(6), "whole"), write(range(3, 6), "part")
    ds = build_dataset([whole / "g1.parquet", whole / "g2.parquet"], "passive", "AtoB",
                       passive=[whole / "p1.parquet", whole / "p2.parquet"])
    assert len(ds) == 6 * 4
    from syncr2.core.shards import open_shard
    a, b = open_shard(whole / "g2.parquet"), open_shard(part / "g2.parquet")
    assert np.array_equal(a.layer(0)[-12:], b.layer(0))  # tasks 3-5: the same draws in either block
