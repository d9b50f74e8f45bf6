"""The ridge-map engine: its kernels and the all-layer-pairs R2 grid.

For one dataset (source representations X of shape (n, L_A, D_A), target
representations Y of shape (n, L_B, D_B), a train/test split) we need the
test-set R2 of a ridge map for EVERY (l_A, l_B) pair: L_A * L_B fits that
share their samples. Fitting them one by one is what makes a naive
implementation take hours. This engine never solves a pair on its own.

Ridge with an unregularized intercept is ridge on train-centred data. For a
source layer a, every target's test prediction is ``P_a @ Yc + ybar`` with
the same (n_test, n_train) "hat" matrix ``P_a = Xte_c (Xc^T Xc + alpha I)^-1
Xc^T`` (equivalently ``Xte_c Xc^T (Xc Xc^T + alpha I)^-1``; we pick the
cheaper side). scikit-learn's ``r2_score`` with ``multioutput=
"uniform_average"`` is ``1 - mean_j SS_res_j / SS_tot_j``; scaling every
target dimension by ``1/sqrt(SS_tot_j)`` turns that mean into one Frobenius
norm, which expands into terms that separate by layer::

    sum_j SS_res_j / SS_tot_j = ||E||^2 - 2 <P_a, E Z^T> + <P_a^T P_a, Z Z^T>

with ``Z`` the scaled centred train targets and ``E`` the scaled test targets
minus the train mean. So we factor each source layer once (``P_a`` and
``P_a^T P_a``), form each target layer's Gram matrices once (``E Z^T`` and
``Z Z^T``), and get every pair's R2 from two Frobenius inner products, i.e.
one matrix product over all pairs. Everything runs in float64 with torch, on
CPU or CUDA. Target dimensions that are constant on the test set follow
scikit-learn's convention (score 1 if predicted exactly, else 0); a ridge map
predicts such a dimension exactly only when it is also constant, with the
same value, on the train set. "Constant" allows for float rounding: a column
of identical values such as -7.77 has a computed sum of squares of ~1e-29,
not 0, because its mean is rounded, and dividing by that would give a
meaningless score of order 1e20 (see :func:`constant_columns`).

The kernels are public and named after their math (:func:`hat_matrix`,
:func:`target_terms` for the Gram terms, :func:`constant_columns`); the
permuted grids of the surrogate null (:mod:`.permuted_grids`), the row-subset
grids of relationship closeness (:mod:`.subset_grids`) and the MLP maps
(:mod:`.mlp_maps`) build on them (docs/protocol.md, "Ridge maps and SyncR2").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.device import resolve_device

log = logging.getLogger(__name__)

LayerLoader = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class LayerStreams:
    """A source and a target layer stack, read one layer at a time.

    ``source(l)`` / ``target(l)`` return layer ``l``'s (n, D) rows, so a grid
    holds one source layer and what it keeps of the targets, never a whole stack.
    """

    source: LayerLoader
    target: LayerLoader
    n_source: int
    n_target: int

    @classmethod
    def of_arrays(cls, X: np.ndarray, Y: np.ndarray) -> LayerStreams:
        """In-memory stacks ``X`` (n, L_A, D_A) and ``Y`` (n, L_B, D_B), checked."""
        X, Y = check_layer_stacks(X, Y)
        return cls(lambda a: X[:, a, :], lambda b: Y[:, b, :], X.shape[1], Y.shape[1])

__all__ = [
    "EPS", "LayerLoader", "TargetTerms", "as_index", "check_layer_stacks", "constant_columns", "hat_matrix",
    "layer_pair_r2", "layer_pair_r2_streamed", "layer_tensor", "resolve_device", "split_tensors", "StackedTerms",
    "stacked_target_terms", "target_terms",
]


def as_index(idx: Sequence[int] | np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(idx, dtype=np.int64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D index array")
    arr = np.ascontiguousarray(arr)  # torch cannot wrap negative strides (idx[::-1])
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} holds indices outside 0..{n - 1}")
    return arr


@dataclass
class TargetTerms:
    """Per-target-layer quantities, independent of the source layer."""

    cross: torch.Tensor  # E Z^T, (n_test, n_train)
    gram: torch.Tensor  # Z Z^T, (n_train, n_train)
    err_norm: float  # ||E||_F^2 over non-constant dims
    n_varying: int  # target dims not constant on the test set
    constant_score: float  # summed sklearn scores of the constant dims
    dim: int


#: float64 machine epsilon: the unit of every "constant up to rounding" tolerance.
EPS = float(np.finfo(np.float64).eps)


def constant_columns(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Column means, sums of squares about them, and which columns count as constant.

    A column counts as constant when its sum of squares is within float64
    rounding of 0, relative to its magnitude: ``ss <= n * (2 n eps max|y|)^2``.
    Computing the mean of n identical values can be off by up to about
    ``n eps max|y|``, and ``ss`` then holds n copies of that error squared, so
    every column of identical values passes (-7.77 gives ~1e-29, not 0), while
    real variation (a relative spread above ~1e-12 for n in the thousands, far
    below float32 resolution) does not. Exact zeros pass as before.
    """
    n = y.shape[0]
    mean = y.mean(0)
    ss = ((y - mean) ** 2).sum(0)
    tol = n * (2.0 * n * EPS * y.abs().amax(0)) ** 2
    return mean, ss, ss <= tol


def target_terms(y: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> TargetTerms:
    """One target layer's Gram terms ``E Z^T`` and ``Z Z^T``, ``||E||^2`` and its constant columns' scores."""
    ytr, yte = y[train], y[test]
    mean_tr, _, tr_const = constant_columns(ytr)
    mean_te, ss_tot, const = constant_columns(yte)
    varying = ~const
    # sklearn (force_finite): a constant test dimension scores 1 when predicted
    # exactly, else 0. The ridge prediction of a dimension is its train mean iff
    # the train column is constant; it equals the test constant iff the two
    # constants agree (up to the rounding of the two means).
    constant_score = 0.0
    if bool(const.any()):
        n_all = ytr.shape[0] + yte.shape[0]
        mag = torch.maximum(ytr[:, const].abs().amax(0), yte[:, const].abs().amax(0))
        same = (mean_tr[const] - mean_te[const]).abs() <= 2.0 * n_all * EPS * mag
        constant_score = float((tr_const[const] & same).sum())
    scale = torch.zeros_like(ss_tot)
    scale[varying] = ss_tot[varying].rsqrt()
    z = (ytr - mean_tr) * scale
    e = (yte - mean_tr) * scale
    return TargetTerms(
        cross=e @ z.T,
        gram=z @ z.T,
        err_norm=float((e * e).sum()),
        n_varying=int(varying.sum()),
        constant_score=constant_score,
        dim=y.shape[1],
    )


def hat_matrix(x: torch.Tensor, train: torch.Tensor, test: torch.Tensor, alpha: float) -> torch.Tensor:
    """``P`` with test predictions = P @ (centred train targets) + train mean."""
    xtr, xte = x[train], x[test]
    mean = xtr.mean(0)
    xc, xtec = xtr - mean, xte - mean
    n_train, dim = xc.shape
    if dim <= n_train:  # primal: (D x D) system
        system = xc.T @ xc
        system.diagonal().add_(alpha)
        chol = torch.linalg.cholesky(system)
        coef = torch.cholesky_solve(xtec.T, chol)  # (D, n_test)
        return (xc @ coef).T
    system = xc @ xc.T  # dual: (n_train x n_train) kernel
    system.diagonal().add_(alpha)
    chol = torch.linalg.cholesky(system)
    return torch.cholesky_solve(xc @ xtec.T, chol).T  # (n_test, n_train)


def layer_tensor(arr: np.ndarray, n: int, what: str, device: torch.device) -> torch.Tensor:
    """One layer's (n, D) representations as a finite float64 tensor on ``device``; errors name ``what``."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{what}: expected an ({n}, D) array, got shape {arr.shape}")
    # torch cannot wrap views with negative strides (X[::-1]); copy those only
    if any(st < 0 for st in arr.strides):
        arr = np.ascontiguousarray(arr)
    t = torch.as_tensor(arr, device=device).to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return t


def check_layer_stacks(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (n, L_A, D_A) and ``Y`` (n, L_B, D_B) as arrays, checked to hold the same samples."""
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 3 or Y.ndim != 3:
        raise ValueError(f"X and Y must be (n, L, D); got {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}")
    return X, Y


@dataclass
class StackedTerms:
    """Every target layer's Gram terms, stacked: the R2 of all target layers for a hat matrix in one product.

    ``gram`` holds the entries ``gram_positions`` of each flattened ``Z Z^T``
    (all of them when None), already weighted; the caller passes ``H^T H``
    flattened and taken at the same positions.
    """

    cross: torch.Tensor  # (L_B, n_test * n_train)
    gram: torch.Tensor  # (L_B, len(gram_positions) or n_train^2)
    err: torch.Tensor  # (L_B,) ||E||^2
    n_varying: torch.Tensor  # (L_B,)
    constant: torch.Tensor  # (L_B,) summed scores of constant dims
    dims: torch.Tensor  # (L_B,)

    def r2(self, hat: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
        """R2 of every target layer: (L_B,) for a flat ``hat``/``sq``, (L_B, c) for c columns of them."""
        cols = (lambda v: v[:, None]) if hat.ndim == 2 else (lambda v: v)
        resid = cols(self.err) - 2.0 * (self.cross @ hat) + self.gram @ sq
        return (cols(self.n_varying) - resid + cols(self.constant)) / cols(self.dims)


def stacked_target_terms(
    load_target: LayerLoader,
    n_target_layers: int,
    train: torch.Tensor,
    test: torch.Tensor,
    first: np.ndarray | None = None,
    gram_positions: torch.Tensor | None = None,
    gram_weight: torch.Tensor | None = None,
    progress: bool = False,
) -> StackedTerms:
    """:func:`target_terms` of every target layer, stacked and filled in place (one copy at peak).

    ``first``: target layer 0 when the caller has loaded it already.
    """
    dev = train.device
    first = np.asarray(load_target(0) if first is None else first)
    n = first.shape[0]
    n_tr, n_te = train.numel(), test.numel()
    n_gram = n_tr * n_tr if gram_positions is None else gram_positions.numel()
    cross = torch.empty((n_target_layers, n_te * n_tr), dtype=torch.float64, device=dev)
    gram = torch.empty((n_target_layers, n_gram), dtype=torch.float64, device=dev)
    err = torch.empty(n_target_layers, dtype=torch.float64, device=dev)
    n_var, const, dims = torch.empty_like(err), torch.empty_like(err), torch.empty_like(err)
    for b in tqdm(range(n_target_layers), desc="target layers", disable=not progress, leave=False):
        arr = first if b == 0 else load_target(b)
        terms = target_terms(layer_tensor(arr, n, f"target layer {b}", dev), train, test)
        cross[b] = terms.cross.reshape(-1)
        flat = terms.gram.reshape(-1)
        gram[b] = flat if gram_positions is None else flat[gram_positions] * gram_weight
        err[b], n_var[b], const[b], dims[b] = terms.err_norm, terms.n_varying, terms.constant_score, terms.dim
        del terms
    return StackedTerms(cross=cross, gram=gram, err=err, n_varying=n_var, constant=const, dims=dims)


def split_tensors(
    load_target: LayerLoader, train_idx: Sequence[int] | np.ndarray, test_idx: Sequence[int] | np.ndarray,
    alpha: float, device: str | torch.device | None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Target layer 0 and the checked train and test indices on the resolved device (every grid starts so)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    dev = resolve_device(device)
    first = np.asarray(load_target(0))
    n = first.shape[0]
    train = torch.as_tensor(as_index(train_idx, n, "train_idx"), device=dev)
    test = torch.as_tensor(as_index(test_idx, n, "test_idx"), device=dev)
    return first, train, test


def layer_pair_r2_streamed(
    streams: LayerStreams,
    train_idx: Sequence[int] | np.ndarray,
    test_idx: Sequence[int] | np.ndarray,
    alpha: float = 0.1,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Test-set R2 of every (source layer, target layer) ridge map.

    ``streams`` reads one layer at a time, so only one source layer and the per-target Gram matrices
    (``L_B * n_train * (n_train + n_test)`` float64) are held at once.
    Returns an (L_A, L_B) float64 array equal to scikit-learn's
    ``Ridge(alpha).fit(X_a[train], Y_b[train])`` scored with ``r2_score`` on
    the test rows, pair by pair.
    """
    first, train, test = split_tensors(streams.target, train_idx, test_idx, alpha, device)
    n, dev = first.shape[0], train.device
    terms = stacked_target_terms(streams.target, streams.n_target, train, test, first=first, progress=progress)
    del first
    out = torch.empty((streams.n_source, streams.n_target), dtype=torch.float64, device=dev)
    for a in tqdm(range(streams.n_source), desc="source layers", disable=not progress, leave=False):
        hat = hat_matrix(layer_tensor(streams.source(a), n, f"source layer {a}", dev), train, test, alpha)
        out[a] = terms.r2(hat.reshape(-1), (hat.T @ hat).reshape(-1))
    log.debug("R2 grid %dx%d on %s done", streams.n_source, streams.n_target, dev)
    return out.cpu().numpy()


def layer_pair_r2(X: np.ndarray, Y: np.ndarray, train_idx: Sequence[int] | np.ndarray,
                  test_idx: Sequence[int] | np.ndarray, **options: Any) -> np.ndarray:
    """Test-set R2 for every layer pair of ``X`` (n, L_A, D_A) -> ``Y`` (n, L_B, D_B);
    ``options``: those of :func:`layer_pair_r2_streamed` (alpha, device, progress)."""
    return layer_pair_r2_streamed(LayerStreams.of_arrays(X, Y), train_idx, test_idx, **options)
