"""The lag profile: lags 0, 1, 2 equal the R2-table path exactly; negative lags pair the partner's earlier turn."""

import numpy as np
import pytest

from syncr2.analysis.lag_profile import COLUMNS, LagProfileError, lag_profile, run_lag_profile
from syncr2.analysis.surrogate import surrogate_draws
from syncr2.core.atomic import read_table
from syncr2.core.conditions import Condition
from syncr2.core.config import samples_per_episode
from syncr2.core.settings import Ridge, Split
from syncr2.synchrony.datasets import build_dataset
from syncr2.synchrony.r2_variants import run_r2_variant
from syncr2.synchrony.summary import summarize_tables
from syncr2.synchrony.synthetic import SyntheticSpec, write_synthetic_shards


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    spec = SyntheticSpec(n_tasks=24, seeds=(0,), n_turns=10, rho=0.6)
    return write_synthetic_shards(spec, tmp_path_factory.mktemp("planted"))


SPLIT = Split(size=40, test_fraction=0.25, split_seeds=(0, 1))


def test_negative_lags_pair_the_partners_earlier_turn(planted):
    for direction in ("AtoB", "BtoA"):
        for lag in (-2, -1, 1):
            ds = build_dataset(planted, Condition.at_lag(lag), direction)
            assert (ds.pairs.tgt_turn == ds.pairs.src_turn + 1 + 2 * lag).all()
            assert (ds.pairs.src_turn % 2 == (direction == "BtoA")).all()
            # every turn of every episode that has such a partner turn, and no other (brute force)
            expected = sum(1 for t in range(10) if t % 2 == (direction == "BtoA") and 0 <= t + 1 + 2 * lag < 10)
            assert len(ds) == 24 * expected == 24 * samples_per_episode(10, direction, lag)
    assert Condition.at_lag(0).name == "experimental" and Condition.at_lag(-2).name == "lag-2"


def test_lags_0_1_2_equal_the_summary_of_the_r2_tables(planted, tmp_path):
    profile = lag_profile(planted, ["AtoB", "BtoA"], 2, SPLIT, Ridge(0.1), n_perm=9, seed=3, pair="a__b")
    assert list(profile.columns) == list(COLUMNS)
    assert sorted(profile.lag.unique()) == [-2, -1, 0, 1, 2] and len(profile) == 5 * 2 * 2
    tables = []
    for condition in ("experimental", "lag1", "lag2"):
        for direction in ("AtoB", "BtoA"):
            out = tmp_path / f"{condition}_{direction}.parquet"
            run_r2_variant(planted, condition, direction, SPLIT, out, ridge=Ridge(0.1), pair="a__b", progress=False)
            tables.append(out)
    summary = summarize_tables(tables).set_index(["condition", "direction"])
    got = profile.set_index(["condition", "direction", "score"])
    for condition in ("experimental", "lag1", "lag2"):
        for direction in ("AtoB", "BtoA"):
            row = summary.loc[(condition, direction)]
            assert got.loc[(condition, direction, "clipped")].value == row.syncr2  # identical, not approximately
            assert got.loc[(condition, direction, "clipped")].se == row.se
            assert got.loc[(condition, direction, "unclipped")].value == row.syncr2_unclipped
            assert got.loc[(condition, direction, "unclipped")].se == row.se_unclipped
    # the band: quantiles of the turn-rotation draws of the same dataset and seed
    ds = build_dataset(planted, Condition.at_lag(-1), "BtoA")
    draws = surrogate_draws(ds, 40, (0, 1), ["turn_rotation"], 9, 0.1, 0.25, 3)
    row = got.loc[("lag-1", "BtoA", "unclipped")]
    assert row.null_lo == pytest.approx(np.quantile(draws.syncr2_unclipped, 0.025), abs=1e-12)
    assert row.null_hi == pytest.approx(np.quantile(draws.syncr2_unclipped, 0.975), abs=1e-12)
    assert row.null_mean == pytest.approx(draws.syncr2_unclipped.mean(), abs=1e-12)
    # the planted AR(1) latent: the next turn carries the most, and synchrony falls off with |lag|
    unclipped = got.xs("unclipped", level="score").reset_index().groupby("condition").value.mean()
    assert unclipped["experimental"] > unclipped["lag1"] > unclipped["lag2"]
    assert unclipped["experimental"] > unclipped["lag-1"] > unclipped["lag-2"]
    assert got.loc[("experimental", "AtoB", "unclipped")].value > got.loc[("experimental", "AtoB", "unclipped")].null_hi


def test_a_lag_the_episodes_cannot_fill_names_the_key(planted, tmp_path):
    with pytest.raises(LagProfileError, match=r"lag -4 AtoB: .*lower analysis.lag_profile.max_lag"):
        run_lag_profile(planted, ["AtoB"], 4, SPLIT, tmp_path / "lp.parquet", n_perm=2)
    out = run_lag_profile(planted, ["AtoB"], 1, Split(size=20, test_fraction=0.25, split_seeds=(0,)),
                          tmp_path / "lp.parquet", n_perm=3, pair="a__b")
    back = read_table(out, COLUMNS, "lag profile")
    assert len(back) == 3 * 2 and (back.pair == "a__b").all()
