"""The R2 engine against scikit-learn Ridge + r2_score, pair by pair."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from syncr2.synchrony.ridge import layer_pair_r2, layer_pair_r2_streamed


def sklearn_grid(X, Y, train, test, alpha):
    out = np.empty((X.shape[1], Y.shape[1]))
    for a in range(X.shape[1]):
        for b in range(Y.shape[1]):
            model = Ridge(alpha=alpha).fit(X[train, a], Y[train, b])
            out[a, b] = r2_score(Y[test, b], model.predict(X[test, a]))
    return out


def make_data(rng, n, la, da, lb, db):
    X = rng.normal(size=(n, la, da)) * rng.uniform(0.5, 3, size=(1, la, da)) + 2.0
    W = rng.normal(size=(da, db))
    Y = np.empty((n, lb, db))
    for b in range(lb):
        Y[:, b] = X[:, b % la] @ W * (0.3 * (b + 1)) + rng.normal(size=(n, db)) + 5.0
    return X, Y


@pytest.mark.parametrize("n,da,db", [(80, 6, 5), (50, 90, 7), (40, 30, 60)])
def test_matches_sklearn(n, da, db):
    rng = np.random.default_rng(n + da)
    X, Y = make_data(rng, n, 3, da, 4, db)
    perm = rng.permutation(n)
    train, test = perm[: int(0.75 * n)], perm[int(0.75 * n):]
    for alpha in (0.1, 3.0):
        got = layer_pair_r2(X, Y, train, test, alpha=alpha, device="cpu")
        ref = sklearn_grid(X, Y, train, test, alpha)
        assert got.shape == (3, 4)
        assert np.abs(got - ref).max() <= 1e-8
    # the planted signal shows: layer b is predicted best from layer b % 3
    assert np.ptp(ref) > 0.1


def test_constant_target_dimensions_follow_sklearn():
    rng = np.random.default_rng(7)
    n = 60
    X = rng.normal(size=(n, 2, 5))
    Y = rng.normal(size=(n, 3, 4))
    train, test = np.arange(45), np.arange(45, n)
    Y[:, 0, 1] = 3.0  # constant everywhere: predicted exactly, scores 1
    Y[:, 1, 2] = 0.5
    Y[test, 1, 2] = 0.25  # constant on test, different on train: scores 0
    Y[test, 2, 0] = -1.0  # varies on train, constant on test: scores 0
    Y[:, 2, 3] = 7.0
    got = layer_pair_r2(X, Y, train, test)
    ref = sklearn_grid(X, Y, train, test, 0.1)
    assert np.abs(got - ref).max() <= 1e-8


def test_streamed_equals_in_memory_and_float32_input():
    rng = np.random.default_rng(3)
    X, Y = make_data(rng, 70, 4, 12, 3, 9)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    train, test = np.arange(50), np.arange(50, 70)
    calls = []

    def load_x(a):
        calls.append(a)
        return X32[:, a]

    streamed = layer_pair_r2_streamed(load_x, lambda b: Y32[:, b], 4, 3, train, test)
    assert calls == [0, 1, 2, 3]  # each source layer loaded exactly once
    ref = sklearn_grid(X32.astype(np.float64), Y32.astype(np.float64), train, test, 0.1)
    assert np.abs(streamed - ref).max() <= 1e-8


def test_errors():
    X = np.zeros((10, 2, 3))
    Y = np.ones((10, 2, 3))
    with pytest.raises(ValueError, match="alpha"):
        layer_pair_r2(X, Y, [0, 1, 2], [3, 4], alpha=0)
    with pytest.raises(ValueError, match="test_idx"):
        layer_pair_r2(X, Y, [0, 1, 2], [30])
    with pytest.raises(ValueError, match="samples"):
        layer_pair_r2(X, Y[:5], [0, 1, 2], [3])
    bad = X.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match="source layer 1.*NaN"):
        layer_pair_r2(bad, Y, [0, 1, 2, 5, 6], [3, 4])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda():
    X = np.random.default_rng(0).normal(size=(10, 2, 3))
    with pytest.raises(ValueError, match="CUDA is not available"):
        layer_pair_r2(X, X, [0, 1, 2, 4, 5], [3, 6], device="cuda")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(11)
    X, Y = make_data(rng, 90, 3, 20, 3, 15)
    train, test = np.arange(70), np.arange(70, 90)
    assert np.abs(layer_pair_r2(X, Y, train, test, device="cuda") - layer_pair_r2(X, Y, train, test, device="cpu")).max() <= 1e-8
