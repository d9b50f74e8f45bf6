"""Similarity measures (CKA, RSA, Procrustes) against brute-force loops, scipy and their invariances."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group, spearmanr

from syncr2.core.settings import Split
from syncr2.synchrony.datasets import build_dataset, fixed_size_split
from syncr2.synchrony.measures import (
    MeasureError,
    dataset_measures,
    linear_cka,
    measure_grids,
    procrustes_similarity,
    read_measure_grids,
    rsa,
    run_measures,
    run_measures_summary,
    summarize_measures,
    unbiased_hsic,
)
from syncr2.synchrony.ridge import LayerStreams
from syncr2.synchrony.sync import sync_r2
from syncr2.synchrony.synthetic import SyntheticSpec, write_synthetic_shards


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    spec = SyntheticSpec(n_tasks=30, seeds=(0,), n_turns=8, rho=0.6)
    return write_synthetic_shards(spec, tmp_path_factory.mktemp("planted"))


def rows(seed, n=9, d=5):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_unbiased_hsic_equals_the_u_statistic_by_brute_force():
    """Song et al.'s closed form = the mean over ordered distinct quadruples of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    X, Y = rows(0, n=7), rows(1, n=7, d=3)
    K, L = X @ X.T, Y @ Y.T
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(7), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
        count += 1
    assert unbiased_hsic(K, L) == pytest.approx(total / count, rel=1e-10)
    with pytest.raises(MeasureError, match="at least 4 rows"):
        unbiased_hsic(K[:3, :3], L[:3, :3])


def test_cka_biased_equals_the_feature_space_formula_and_invariances():
    X, Y = rows(2, n=12, d=6), rows(3, n=12, d=4)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    feature = np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert linear_cka(X, Y, debiased=False) == pytest.approx(feature, rel=1e-10)
    Q = ortho_group.rvs(6, random_state=4)
    for debiased in (True, False):
        base = linear_cka(X, Y, debiased)
        assert linear_cka(3.7 * X @ Q + 2.0, Y, debiased) == pytest.approx(base, rel=1e-9)  # rotation, scale, shift
        assert linear_cka(X, X, debiased) == pytest.approx(1.0, rel=1e-12)
        assert linear_cka(X, 0.5 * X @ Q, debiased) == pytest.approx(1.0, rel=1e-9)
    # independent inputs: the debiased estimate is near 0 where the biased one is inflated at small n
    noise = [(linear_cka(rows(s, n=10, d=50), rows(s + 1000, n=10, d=50)),
              linear_cka(rows(s, n=10, d=50), rows(s + 1000, n=10, d=50), debiased=False)) for s in range(300)]
    unbiased, biased = np.array(noise).T
    assert abs(unbiased.mean()) < 3 * unbiased.std() / np.sqrt(300) and biased.mean() > 0.5


def test_rsa_equals_a_loop_over_sample_pairs_and_spearman():
    X, Y = rows(5, n=8, d=6), rows(6, n=8, d=3)

    def rdm_loop(Z):
        return np.array([1 - np.corrcoef(Z[i], Z[j])[0, 1] for i, j in itertools.combinations(range(len(Z)), 2)])

    assert rsa(X, Y) == pytest.approx(spearmanr(rdm_loop(X), rdm_loop(Y)).statistic, rel=1e-10)
    assert rsa(X, X) == pytest.approx(1.0)
    with pytest.raises(MeasureError, match="at least 3 rows"):
        rsa(X[:2], Y[:2])


def test_procrustes_equals_scipy_and_the_residual_identity():
    X, Y = rows(7, n=10, d=6), rows(8, n=10, d=4)
    Xn = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0))
    Yn = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0))
    Yp = np.hstack([Yn, np.zeros((10, 2))])  # the narrower side padded with zero columns
    R, scale = orthogonal_procrustes(Yp, Xn)
    score = procrustes_similarity(X, Y)
    assert score == pytest.approx(scale, rel=1e-10)
    assert np.linalg.norm(Xn - Yp @ R) ** 2 == pytest.approx(2 - 2 * score, rel=1e-9)
    Q = ortho_group.rvs(6, random_state=9)
    assert procrustes_similarity(X, 4 * X @ Q - 1) == pytest.approx(1.0, rel=1e-9)
    assert 0 <= score <= 1


def test_grids_equal_per_pair_calls_and_constant_layers_score_zero():
    layers_a = [rows(10, n=9, d=5), rows(11, n=9, d=7), np.ones((9, 5))]  # the last: one token, every sample
    layers_b = [rows(12, n=9, d=4), rows(13, n=9, d=5)]
    grids = measure_grids(LayerStreams(lambda a: layers_a[a], lambda b: layers_b[b], 3, 2), ["cka", "rsa", "procrustes"])
    for a, b in itertools.product(range(2), range(2)):
        assert grids["cka"][a, b] == pytest.approx(linear_cka(layers_a[a], layers_b[b]), rel=1e-10)
        assert grids["rsa"][a, b] == pytest.approx(rsa(layers_a[a], layers_b[b]), rel=1e-10)
        assert grids["procrustes"][a, b] == pytest.approx(procrustes_similarity(layers_a[a], layers_b[b]), rel=1e-10)
    assert (grids["cka"][2] == 0).all() and (grids["rsa"][2] == 0).all() and (grids["procrustes"][2] == 0).all()
    few = [rows(14, n=3, d=4)]
    three = measure_grids(LayerStreams(lambda a: few[a], lambda b: few[b], 1, 1), ["cka", "rsa"])
    assert np.isnan(three["cka"]).all() and three["rsa"][0, 0] == pytest.approx(1.0)  # CKA needs 4 rows, RSA 3
    with pytest.raises(MeasureError, match="unknown similarity measure"):
        measure_grids(LayerStreams(lambda a: few[a], lambda b: few[b], 1, 1), ["cca"])


def test_dataset_measures_use_the_r2_splits_test_rows_and_summarise_like_syncr2(planted, tmp_path):
    split = Split(size=50, test_fraction=0.25, split_seeds=(0, 1))
    ds = build_dataset(planted, "experimental", "AtoB")
    frame = dataset_measures(ds, split, ["cka", "procrustes"])
    for seed in (0, 1):
        _, test = fixed_size_split(ds.groups, 50, seed, 0.25)
        X, Y = ds.load_source(1, test), ds.load_target(0, test)
        got = frame[(frame.split_seed == seed) & (frame.source_layer == 1) & (frame.target_layer == 0)]
        assert got.set_index("measure").value["cka"] == pytest.approx(linear_cka(X, Y), rel=1e-6)
        assert got.set_index("measure").value["procrustes"] == pytest.approx(procrustes_similarity(X, Y), rel=1e-6)
        assert (got.n_test == len(test)).all()
    out = tmp_path / "grids.parquet"
    run_measures(planted, None, ["experimental", "lag1"], ["AtoB", "BtoA"], split, ["cka", "rsa"], out, pair="a__b")
    grids = read_measure_grids(out)
    synchrony = pd.DataFrame({"pair": ["a__b"] * 2, "condition": ["experimental"] * 2, "direction": ["AtoB", "x"],
                              "syncr2": [0.4, 0.1], "syncr2_unclipped": [0.5, 0.2], "se": [0.01, 0.0],
                              "se_unclipped": [0.02, 0.0], "n_split_seeds": [2, 2]})
    summary = summarize_measures(grids, synchrony)
    one = grids[(grids.condition == "lag1") & (grids.direction == "BtoA") & (grids.measure == "rsa")]
    cube = np.stack([g.pivot(index="source_layer", columns="target_layer", values="value").to_numpy()
                     for _, g in one.groupby("split_seed")])
    row = summary.set_index(["condition", "direction", "measure"]).loc[("lag1", "BtoA", "rsa")]
    assert row.value == pytest.approx(sync_r2(cube, clip=False).value, rel=1e-12)
    assert row.se == pytest.approx(sync_r2(cube, clip=False).se, rel=1e-12)
    comb = summary.set_index(["condition", "direction", "measure"])
    ab, ba = comb.loc[("experimental", "AtoB", "cka")], comb.loc[("experimental", "BtoA", "cka")]
    assert comb.loc[("experimental", "combined", "cka")].value == pytest.approx((ab.value + ba.value) / 2)
    assert comb.loc[("experimental", "AtoB", "syncr2")].value == 0.5  # the SyncR2 summary's unclipped score
    assert ("experimental", "x", "syncr2") not in comb.index  # only the datasets measured
    # the planted coupling: experimental above lag1 for every measure
    for m in ("cka", "rsa"):
        assert comb.loc[("experimental", "combined", m)].value > comb.loc[("lag1", "combined", m)].value
    written = run_measures_summary([out], None, tmp_path / "measures.parquet")
    assert len(written) == len(summary) - 1


def test_too_few_test_rows_are_recorded_not_averaged_away(planted, tmp_path):
    # lag1 B->A: two samples per task, so a test part of one task holds 2 rows; with split seed 1 ...
    split = Split(size=12, test_fraction=0.1, split_seeds=(0, 1))
    grids = run_measures(planted, None, ["lag1", "experimental"], ["BtoA", "AtoB"], split, ["cka", "procrustes"],
                         tmp_path / "g.parquet", pair="a__b")
    summary = summarize_measures(grids).set_index(["condition", "direction", "measure"])
    short = summary.loc[("lag1", "BtoA", "cka")]
    assert np.isnan(short.value) and short.n_split_seeds == 0
    assert short.note == "cka needs at least 4 test rows: 2 of 2 split seeds give fewer"
    assert summary.loc[("lag1", "BtoA", "procrustes")].note.startswith("procrustes needs at least 3 test rows")
    assert summary.loc[("experimental", "AtoB", "cka")].note == ""  # 4 samples per task
    assert np.isfinite(summary.loc[("experimental", "AtoB", "cka")].value)
    both = summary.loc[("lag1", "combined", "cka")]
    assert np.isnan(both.value) and "BtoA: cka needs at least 4 test rows" in both.note
    with pytest.raises(MeasureError, match=r"a__b lag5 BtoA: .*no sample pairs"):
        run_measures(planted, None, ["lag5"], ["BtoA"], split, ["cka"], tmp_path / "h.parquet", pair="a__b")


def test_the_measures_figure_draws_undefined_values_as_gaps(planted, tmp_path):
    from syncr2.report.beyond_figures import condition_ordering, measures_figure

    split = Split(size=12, test_fraction=0.1, split_seeds=(0, 1))
    grids = run_measures(planted, None, ["experimental", "lag1"], ["AtoB", "BtoA"], split, ["cka", "rsa"],
                         tmp_path / "g.parquet", pair="a__b")
    summary = summarize_measures(grids)
    assert summary.value.isna().any()  # lag1's CKA has too few test rows
    paths = measures_figure(summary, ["experimental", "lag1"], tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    assert condition_ordering(pd.Series({"a": 0.1, "b": 0.3, "c": 0.2})) == "b > c > a"
