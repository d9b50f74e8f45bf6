"""The ToM decoder: a softmax regression from representations to soft label distributions.

docs/analyses.md, "Theory of Mind decoding". Figure 11 asks whether an
agent's hidden state predicts a distribution over emotions (8 words) or
speech acts (5 words). The decoder is multinomial logistic regression
trained on soft targets: it minimises

    sum_i CE(q_i, softmax(x_i W + b)) + ||W||^2 / (2 C)

over W (D, K) and b (K,), the objective of scikit-learn's
``LogisticRegression(C=C)`` (multinomial, lbfgs, unpenalised intercept) with
soft targets in place of one-hot labels. Cross-entropy against a soft target
is KL(q || p) plus q's entropy, a constant, so the fit minimises the KL the
analysis reports. The problem is convex; scipy's L-BFGS solves it to a
tight tolerance, so on one-hot targets the predictions equal scikit-learn's.

Inputs are standardised with the training rows' mean and SD before the fit
(a penalty means the same on every layer whatever its scale); the map back
is folded into the returned predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

#: Probabilities are floored at this before a logarithm (a zero-probability class of the target adds 0).
EPS = 1e-12


def check_distributions(q: np.ndarray, what: str = "targets") -> np.ndarray:
    """``q`` as a float64 (n, K) array of rows summing to 1 (errors name the first bad row)."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] < 2:
        raise ValueError(f"{what} must be (n, K) with K >= 2 classes, got shape {q.shape}")
    if not np.isfinite(q).all() or (q < 0).any():
        raise ValueError(f"{what}: row {int(np.argwhere(~np.isfinite(q) | (q < 0))[0, 0])} has a negative or "
                         "non-finite probability")
    bad = np.flatnonzero(np.abs(q.sum(1) - 1) > 1e-6)
    if bad.size:
        raise ValueError(f"{what}: row {int(bad[0])} sums to {q[bad[0]].sum():.6g}, not 1")
    return q


def kl_rows(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL(q_i || p_i) per row, in nats (terms with q = 0 add 0)."""
    q = np.asarray(q, dtype=np.float64)
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), q.shape)
    terms = np.where(q > 0, q * (np.log(np.maximum(q, EPS)) - np.log(np.maximum(p, EPS))), 0.0)
    return terms.sum(1)


@dataclass(frozen=True)
class SoftmaxDecoder:
    """A fitted decoder: ``predict(X)`` gives (n, K) distributions."""

    weights: np.ndarray  # (D, K), on the raw (unstandardised) inputs
    intercept: np.ndarray  # (K,)
    C: float
    converged: bool

    def log_predict(self, X: np.ndarray) -> np.ndarray:
        return log_softmax(np.asarray(X, dtype=np.float64) @ self.weights + self.intercept, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.exp(self.log_predict(X))


def fit_softmax(X: np.ndarray, q: np.ndarray, C: float = 1.0, standardize: bool = True,
                max_iter: int = 2000, tol: float = 1e-10, row_space: bool = True) -> SoftmaxDecoder:
    """The minimiser of the module's objective for rows ``X`` (n, D) and targets ``q`` (n, K).

    ``C`` > 0 is scikit-learn's inverse penalty. ``standardize`` scales every
    input column by the training rows' mean and SD (a constant column is left
    at 0) before the fit; the returned weights act on raw inputs. ``row_space``: with more than
    twice as many columns as rows, fit in the row space of the inputs (the same optimum, fewer unknowns).
    """
    X = np.asarray(X, dtype=np.float64)
    q = check_distributions(q)
    if X.ndim != 2 or X.shape[0] != q.shape[0]:
        raise ValueError(f"X must be (n, D) with n = {q.shape[0]} rows like the targets, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    if not C > 0:
        raise ValueError(f"C must be > 0 (the inverse L2 penalty), got {C}")
    n, d = X.shape
    k = q.shape[1]
    mean = X.mean(0) if standardize else np.zeros(d)
    sd = X.std(0) if standardize else np.ones(d)
    sd = np.where(sd > 0, sd, 1.0)
    Z = (X - mean) / sd
    # The penalised optimum's weights lie in the row space of Z (a component outside it changes no
    # logit and only adds penalty), so with more columns than rows the fit runs exactly in that space.
    # (Worth it from about twice as many columns as rows: bench/bench_tom_decoder.py.)
    basis = None
    if row_space and d > 2 * n:
        evals, evecs = np.linalg.eigh(Z @ Z.T)  # Z Z^T = U S^2 U^T, so Z^T U / S spans the row space
        keep = evals > evals.max() * max(n, d) * np.finfo(float).eps
        basis = (Z.T @ evecs[:, keep]) / np.sqrt(evals[keep])  # (d, r), orthonormal columns
        Z, d = Z @ basis, basis.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: d * k].reshape(d, k), theta[d * k:]
        logp = log_softmax(Z @ W + b, axis=1)
        loss = -(q * logp).sum() + (W * W).sum() / (2 * C)
        resid = np.exp(logp) - q  # d loss / d logits
        grad_w = Z.T @ resid + W / C
        return float(loss), np.concatenate([grad_w.ravel(), resid.sum(0)])

    res = minimize(objective, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": tol * 1e-3})
    W, b = res.x[: d * k].reshape(d, k), res.x[d * k:]
    if basis is not None:
        W = basis @ W
    raw_w = W / sd[:, None]
    return SoftmaxDecoder(raw_w, b - mean @ raw_w, float(C), bool(res.success))


# ------------------------------------------------------------------ layer choice and test-set KL

#: The inverse penalties tried per layer on the validation split (scikit-learn's C).
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


def group_fraction_split(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) sample indices: whole groups, shuffled by ``rng``, go to ``held`` until it holds
    at least ``fraction`` of the samples; no group is on both sides."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError(f"a group split needs at least 2 groups (tasks), got {len(unique)}")
    held: list[int] = []
    members = {g: np.flatnonzero(groups == g) for g in unique}
    for g in unique[rng.permutation(len(unique))]:
        if len(held) >= fraction * len(groups):
            break
        held.extend(members[g].tolist())
    held_arr = np.sort(np.asarray(held, dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(groups)), held_arr)
    if rest.size == 0:
        raise ValueError(f"test_fraction {fraction} leaves no group for training; lower it or add tasks")
    return rest, held_arr


@dataclass(frozen=True)
class DecodingSplit:
    """One split seed's decoding: per-layer curves and the chosen layer's per-sample KLs."""

    curves: list[dict]  # one row per layer: C, val_kl, test_kl, baseline_kl, chosen
    test_rows: np.ndarray  # sample indices of the test set
    model_kl: np.ndarray  # per test sample, at the chosen layer
    baseline_kl: np.ndarray  # per test sample, against the training mean


def decode_split(reps: np.ndarray, q: np.ndarray, groups: np.ndarray, split_seed: int,
                 test_fraction: float = 0.2, val_fraction: float = 0.2,
                 Cs: tuple[float, ...] = DEFAULT_CS, layers: Sequence[int] | None = None) -> DecodingSplit:
    """Decode ``q`` (n, K) from every layer of ``reps`` (n, L, D) on one group split.

    The test groups are set aside first (``test_fraction``). Inside the
    training groups a validation split (``val_fraction``) picks each layer's
    ``C`` and the layer with the lowest validation KL. Each layer is then refit
    on all training rows with its ``C`` and scored on the test rows; the
    baseline predicts the training rows' mean distribution. ``layers``: the layers
    decoded (default: all). Validation fits stop at a looser tolerance (they only rank penalties).
    """
    reps = np.asarray(reps)
    q = check_distributions(q)
    if reps.ndim != 3 or reps.shape[0] != q.shape[0]:
        raise ValueError(f"reps must be (n, L, D) with n = {q.shape[0]}, got shape {reps.shape}")
    rng = np.random.default_rng([int(split_seed), 0x70D])
    train, test = group_fraction_split(groups, test_fraction, rng)
    fit_rows, val_rows = group_fraction_split(np.asarray(groups)[train], val_fraction, rng)
    fit_rows, val_rows = train[fit_rows], train[val_rows]
    base = q[train].mean(0)
    baseline = kl_rows(q[test], base)
    curves, per_layer = [], []
    for layer in range(reps.shape[1]) if layers is None else layers:
        X = reps[:, layer, :]
        val = [kl_rows(q[val_rows], fit_softmax(X[fit_rows], q[fit_rows], C, tol=1e-6).predict(X[val_rows])).mean()
               for C in Cs]
        best = int(np.argmin(val))
        dec = fit_softmax(X[train], q[train], Cs[best])
        kl = kl_rows(q[test], dec.predict(X[test]))
        per_layer.append(kl)
        curves.append({"layer": layer, "C": Cs[best], "val_kl": float(val[best]), "test_kl": float(kl.mean()),
                       "baseline_kl": float(baseline.mean()), "converged": dec.converged})
    chosen = int(np.argmin([c["val_kl"] for c in curves]))
    for i, c in enumerate(curves):
        c["chosen"] = i == chosen
    return DecodingSplit(curves, test, per_layer[chosen], baseline)
