"""The R2 engine against scikit-learn Ridge + r2_score, pair by pair."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from syncr2.synchrony.ridge import LayerStreams, layer_pair_r2, layer_pair_r2_streamed


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

    streamed = layer_pair_r2_streamed(LayerStreams(load_x, lambda b: Y32[:, b], 4, 3), train, test)
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


def test_negative_strides_match_sklearn():
    """Reversed index arrays and reversed views (negative strides) give sklearn's grid."""
    rng = np.random.default_rng(21)
    X, Y = make_data(rng, 60, 3, 7, 2, 5)
    train, test = np.arange(45), np.arange(45, 60)
    ref = sklearn_grid(X, Y, train, test, 0.1)
    got = layer_pair_r2(X, Y, train[::-1], test[::-1], device="cpu")
    assert np.abs(got - ref).max() <= 1e-8
    # whole arrays reversed along samples, layers and features: remap the indices
    Xr, Yr = X[::-1, ::-1, ::-1], Y[::-1, :, ::-1]
    assert Xr.strides[0] < 0 and Xr.strides[2] < 0
    n = X.shape[0]
    got_r = layer_pair_r2(Xr, Yr, (n - 1 - train)[::-1], n - 1 - test, device="cpu")
    ref_r = sklearn_grid(np.ascontiguousarray(Xr), np.ascontiguousarray(Yr), n - 1 - train, n - 1 - test, 0.1)
    assert np.abs(got_r - ref_r).max() <= 1e-8
    assert np.abs(got_r - ref[::-1]).max() <= 1e-8  # layers reversed, features permuted: same R2
    streamed = layer_pair_r2_streamed(LayerStreams(lambda a: X[::-1, a, ::-1], lambda b: Y[::-1, b], 3, 2),
                                      (n - 1 - train)[::-1], (n - 1 - test)[::-1], device="cpu")
    assert np.abs(streamed - ref).max() <= 1e-8


@pytest.mark.parametrize("n_test", [5, 7, 21, 140])
def test_rounded_constant_column_scores_like_sklearn_constant(n_test):
    """A column of identical -7.77 values has a float sum of squares ~1e-29, not 0.

    It must be scored by sklearn's constant-target rule (1 if predicted exactly,
    else 0). Oracle: sklearn on the same data with the -7.77 column replaced by
    an exactly representable constant (-8.0, whose mean and centring are exact),
    which scikit-learn's r2_score does treat as constant; ridge fits every
    target column independently, so the other columns are unaffected.
    """
    rng = np.random.default_rng(n_test)
    n_train = 40
    n = n_train + n_test
    X = rng.normal(size=(n, 2, 4))
    Y = rng.normal(size=(n, 4, 3)) + 3.0
    train, test = np.arange(n_train), np.arange(n_train, n)
    Y[:, 0, 1] = -7.77  # constant everywhere: predicted exactly, scores 1
    Y[test, 1, 0] = -7.77  # constant on test only, varies on train: 0
    Y[:, 2, 2] = 3.3
    Y[test, 2, 2] = -7.77  # constant on both, different values: 0
    Y[:, 3, 0] = 1000.0 + rng.normal(size=n) * 1e-6  # tiny but real variation: NOT constant
    got = layer_pair_r2(X, Y, train, test, device="cpu")
    exact = Y.copy()
    for (b, j) in ((0, 1), (1, 0), (2, 2)):
        col = exact[:, b, j]
        col[col == -7.77] = -8.0
    ref = sklearn_grid(X, exact, train, test, 0.1)
    assert np.abs(got[:, :3] - ref[:, :3]).max() <= 1e-8
    # layer 3 is ill-conditioned (spread 1e-9 of its magnitude): both sides lose ~7 digits,
    # but it is scored as varying (as a constant it would be 0 or 1 per dim, far from this)
    assert np.abs(got[:, 3] - ref[:, 3]).max() <= 1e-5
    assert np.all(ref[:, 3] < -0.01)
    # hand values for the constant columns of target layer 0: 1 of 3 dims scores 1
    per_dim = np.array([[r2_score(Y[test, 0, j], Ridge(alpha=0.1).fit(X[train, a], Y[train, 0, j]).predict(X[test, a]))
                         if j != 1 else 1.0 for j in range(3)] for a in range(2)])
    assert np.abs(got[:, 0] - per_dim.mean(1)).max() <= 1e-8
    assert np.all(np.abs(got) < 10)  # no score blown up by a rounding-level sum of squares
