"""The ToM decoder (syncr2.analysis.tom_decoder) against scikit-learn, scipy and planted truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from syncr2.analysis.tom_decoder import decode_split, fit_softmax, group_fraction_split, kl_rows


def _hard_data(seed=0, n=240, d=12, k=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + rng.normal(size=d)
    logits = X @ rng.normal(size=(d, k)) / 3
    y = np.array([rng.choice(k, p=p) for p in softmax(logits, axis=1)])
    return X, y, k


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_one_hot_targets_give_sklearns_multinomial_logistic_regression(C):
    X, y, k = _hard_data()
    ours = fit_softmax(X, np.eye(k)[y], C=C, standardize=False)
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=20000).fit(X, y)
    assert ours.converged
    assert np.abs(ours.predict(X) - ref.predict_proba(X)).max() < 1e-4
    # standardised: the same as scikit-learn on StandardScaler's output, mapped back to raw inputs
    ours = fit_softmax(X, np.eye(k)[y], C=C)
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=20000).fit(Z, y)
    assert np.abs(ours.predict(X) - ref.predict_proba(Z)).max() < 1e-4


def test_soft_targets_equal_weighted_one_hot_rows():
    """Cross-entropy against q_i is the loss of K one-hot copies of row i weighted by q_ik."""
    rng = np.random.default_rng(1)
    n, d, k = 120, 6, 4
    X = rng.normal(size=(n, d))
    q = rng.dirichlet(np.ones(k), size=n)
    ours = fit_softmax(X, q, C=0.5, standardize=False)
    rows = np.repeat(X, k, axis=0)
    labels = np.tile(np.arange(k), n)
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=20000).fit(rows, labels, sample_weight=q.ravel())
    assert np.abs(ours.predict(X) - ref.predict_proba(X)).max() < 1e-4


def test_kl_rows_is_scipys_entropy():
    rng = np.random.default_rng(2)
    q, p = rng.dirichlet(np.ones(5), size=7), rng.dirichlet(np.ones(5), size=7)
    q[0, 2] = 0.0
    q[0] /= q[0].sum()
    assert np.allclose(kl_rows(q, p), [entropy(a, b) for a, b in zip(q, p)], atol=1e-12)
    assert np.allclose(kl_rows(q, q), 0, atol=1e-12)


def test_group_split_keeps_groups_whole():
    groups = np.repeat(np.arange(30), 4)
    rest, held = group_fraction_split(groups, 0.2, np.random.default_rng(0))
    assert not set(groups[rest]) & set(groups[held])
    assert len(held) >= 0.2 * len(groups) and len(rest) + len(held) == len(groups)
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_fraction_split(np.zeros(5), 0.2, np.random.default_rng(0))


def _planted(signal: bool, seed=3, tasks=60, per_task=8, layers=4, d=10, k=8):
    rng = np.random.default_rng(seed)
    n = tasks * per_task
    reps = rng.normal(size=(n, layers, d))
    if signal:  # the targets are a softmax of a linear read-out of layer 2
        q = softmax(reps[:, 2, :] @ rng.normal(size=(d, k)), axis=1)
    else:
        q = rng.dirichlet(np.ones(k) * 0.7, size=n)
    return reps, q, np.repeat(np.arange(tasks), per_task)


def test_planted_distributions_are_recovered_at_their_layer():
    reps, q, groups = _planted(signal=True)
    out = decode_split(reps, q, groups, split_seed=0, Cs=(1.0, 100.0))
    chosen = [c for c in out.curves if c["chosen"]]
    assert [c["layer"] for c in chosen] == [2]
    assert out.model_kl.mean() < 0.05 * out.baseline_kl.mean()
    others = [c["test_kl"] for c in out.curves if c["layer"] != 2]
    assert min(others) > 0.5 * out.baseline_kl.mean()  # noise layers do not beat the baseline by much


def test_independent_targets_do_not_beat_the_baseline():
    reps, q, groups = _planted(signal=False)
    for seed in (0, 1):
        out = decode_split(reps, q, groups, split_seed=seed)
        assert out.model_kl.mean() >= 0.97 * out.baseline_kl.mean(), (out.model_kl.mean(), out.baseline_kl.mean())
        assert not set(groups[out.test_rows]) & set(np.setdiff1d(groups, groups[out.test_rows]))


def test_bad_targets_are_named():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="row 1 sums to"):
        fit_softmax(X, np.array([[0.5, 0.5], [0.5, 0.6], [1, 0]]))
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_softmax(X, np.array([[0.5, 0.5]] * 3), C=0)


def test_row_space_fit_is_the_same_optimum():
    """More columns than rows: the fit in the inputs' row space predicts what the full fit predicts."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 300)) * rng.uniform(0.5, 2, size=300)
    q = rng.dirichlet(np.ones(6), size=40)
    for C in (0.01, 1.0):
        full = fit_softmax(X, q, C, row_space=False)
        reduced = fit_softmax(X, q, C)
        X_new = rng.normal(size=(10, 300))
        assert np.abs(full.predict(X) - reduced.predict(X)).max() < 1e-6
        assert np.abs(full.predict(X_new) - reduced.predict(X_new)).max() < 1e-6
