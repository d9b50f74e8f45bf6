"""Ridge R2 grids scored on subsets of test rows: relationship closeness per category.

Figure 5 (docs/analyses.md, "Relationship closeness") re-scores the maps of
cross-fitted folds on the samples of one relationship category at a time.
Each fold's hat matrix (:func:`~.ridge.hat_matrix`) predicts its test rows
once per source layer; a subset's residual sums of squares are a 0/1
membership matrix times the squared residuals, so every subset of every fold
costs one product per layer pair. R2 is scikit-learn's ``r2_score`` on the
subset's own rows (uniform average over target dimensions, the subset's own
mean), with the constant-column rule of :func:`~.ridge.constant_columns`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.device import resolve_device
from .ridge import EPS, LayerLoader, hat_matrix

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


def fold_membership(folds: Folds, subsets: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """Per fold, the (n_subsets, n_test_f) 0/1 matrix of which of its test rows each subset holds.

    Raises ValueError for an empty fold, overlapping test sets, a subset of
    fewer than 2 distinct rows, or a subset row that no fold predicts.
    """
    fold_of = np.full(n, -1)
    pos_in_fold = np.zeros(n, dtype=np.int64)
    for f, (train, test) in enumerate(folds):
        train, test = np.asarray(train), np.asarray(test)
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"fold {f} has an empty train or test set")
        if (fold_of[test] >= 0).any():
            raise ValueError(f"fold {f}'s test rows overlap an earlier fold's")
        fold_of[test] = f
        pos_in_fold[test] = np.arange(len(test))
    member = [np.zeros((len(subsets), len(test))) for _, test in folds]
    for s, rows in enumerate(subsets):
        rows = np.asarray(rows)
        if len(rows) < 2 or len(np.unique(rows)) != len(rows):
            raise ValueError(f"subset {s} needs at least 2 distinct rows")
        if (fold_of[rows] < 0).any():
            raise ValueError(f"subset {s} holds rows that no fold predicts")
        for f in np.unique(fold_of[rows]):
            r = rows[fold_of[rows] == f]
            member[f][s, pos_in_fold[r]] = 1.0
    return member


def subset_weights(y: np.ndarray, subsets: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, ...]:
    """One target layer's per-subset weights 1/SS_tot (0 for constant dims), constant flags and exactness tolerances."""
    w = np.zeros((len(subsets), y.shape[1]))
    c = np.zeros_like(w, dtype=bool)
    tol = np.zeros_like(w)
    for s, rows in enumerate(subsets):
        ys = y[np.asarray(rows)].astype(np.float64)
        ss = ((ys - ys.mean(0)) ** 2).sum(0)
        mag = np.abs(ys).max(0)
        c[s] = ss <= len(rows) * (2.0 * len(rows) * EPS * mag) ** 2
        w[s, ~c[s]] = 1.0 / ss[~c[s]]
        tol[s] = len(rows) * (2.0 * n * EPS * np.maximum(mag, 1e-300)) ** 2
    return w, c, tol


def subset_r2_grids(
    load_source: LayerLoader,
    load_target: LayerLoader,
    n_source_layers: int,
    n_target_layers: int,
    folds: Folds,
    subsets: Sequence[np.ndarray],
    alpha: float = 0.1,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Test R2 (n_subsets, L_A, L_B) of every layer pair's ridge map on each subset of test rows.

    ``load_source(l)`` / ``load_target(l)`` return (n, D) arrays; ``folds`` are
    (train, test) row indices with disjoint test sets; each subset's rows lie in
    the union of the test sets and are predicted by the fold that holds them
    as test rows. A target dimension constant on a subset scores 1 if
    predicted exactly (to rounding), else 0.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    dev = resolve_device(device)
    first = np.asarray(load_target(0))
    n = first.shape[0]
    member = fold_membership(folds, subsets, n)
    # Predict only the test rows some subset uses: the fit does not depend on the others.
    member_t, folds_t = [], []
    for (train, test), mem in zip(folds, member):
        used = mem.any(0)
        member_t.append(torch.as_tensor(mem[:, used], device=dev))
        folds_t.append((torch.as_tensor(np.asarray(train), device=dev),
                        torch.as_tensor(np.asarray(test)[used], device=dev)))
    targets, weights, constant, tolerance = [], [], [], []  # targets as loaded (float32 shards), upcast per use
    for b in range(n_target_layers):
        y = np.asarray(first if b == 0 else load_target(b))
        if y.dtype not in (np.float32, np.float64):
            y = y.astype(np.float64)
        if y.shape[0] != n:
            raise ValueError(f"target layer {b}: expected {n} rows, got {y.shape[0]}")
        targets.append(torch.as_tensor(y, device=dev))
        for out, arr in zip((weights, constant, tolerance), subset_weights(y, subsets, n)):
            out.append(torch.as_tensor(arr, device=dev))
    del first
    weighted, const_res = _subset_residuals(load_source, n_source_layers, targets, folds_t, member_t, weights,
                                            constant, alpha, n, progress)
    out = torch.empty_like(weighted)
    for b in range(n_target_layers):
        n_varying = (~constant[b]).sum(1).to(torch.float64)  # (n_subsets,)
        score = n_varying[:, None] - weighted[:, :, b]
        if const_res[b] is not None:
            exact = (const_res[b] <= tolerance[b][:, None, :]) & constant[b][:, None, :]
            score = score + exact.sum(2)
        out[:, :, b] = score / weights[b].shape[1]
    return out.cpu().numpy()


def _subset_residuals(load_source: LayerLoader, n_source_layers: int, targets: list[torch.Tensor],
                      folds_t: list, member_t: list, weights: list, constant: list, alpha: float, n: int,
                      progress: bool) -> tuple[torch.Tensor, list]:
    """Per subset and layer pair: the weighted residual sum, and the constant dims' raw residuals."""
    dev = targets[0].device
    n_subsets = weights[0].shape[0]
    weighted = torch.zeros((n_subsets, n_source_layers, len(targets)), dtype=torch.float64, device=dev)
    const_res = [torch.zeros((n_subsets, n_source_layers, int(c.shape[1])), dtype=torch.float64, device=dev)
                 if bool(c.any()) else None for c in constant]
    for a in tqdm(range(n_source_layers), desc="source layers", disable=not progress, leave=False):
        x = torch.as_tensor(np.asarray(load_source(a)), device=dev).to(torch.float64)
        if x.shape[0] != n or not bool(torch.isfinite(x).all()):
            raise ValueError(f"source layer {a}: expected {n} finite rows, got shape {tuple(x.shape)}")
        for (train, test), mem in zip(folds_t, member_t):
            if mem.shape[1] == 0:
                continue
            hat = hat_matrix(x, train, test, alpha)
            for b, y in enumerate(targets):
                ytr = y[train].to(torch.float64)
                mean = ytr.mean(0)
                resid = (y[test].to(torch.float64) - (hat @ (ytr - mean) + mean)) ** 2
                per_subset = mem @ resid  # (n_subsets, D) residual sums of squares
                weighted[:, a, b] += (per_subset * weights[b]).sum(1)
                if const_res[b] is not None:
                    const_res[b][:, a, :] += per_subset * constant[b]
    return weighted, const_res
