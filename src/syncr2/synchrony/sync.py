"""SyncR2: summarising a layer-pair R2 grid into one synchrony score.

docs/protocol.md, "Ridge maps and SyncR2". With M the mean over split seeds of the R2 grid
(L_A x L_B) and V its variance over split seeds:

* r*(l_A) = max over l_B of M (or the mean of the top-k values);
* r~(l_A) = max(0, r*) (unless ``clip=False``);
* SyncR2(A->B) = mean over l_A of r~;
* SE = sqrt(sum over l_A of V at the chosen target layer(s)) / L_A, the
  authors' standard error (for top-k: the split-seed variance of the top-k mean).
  When clipping, a source layer with r* < 0 is the constant 0 and adds zero
  variance (the authors' ``compute_avg_and_se_metric_row``); unclipped SyncR2
  keeps every layer's variance. Variances are population variances (ddof 0)
  over split seeds by default.

Pair scores: the paper's two-direction formula (A->B + B->A) / 2, and the
authors' correlation-script score, the mean of A->B over the two speaking
orders (m1, m2) and (m2, m1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyncScore:
    """A SyncR2 value with its standard error."""

    value: float
    se: float


def best_targets(mean_grid: np.ndarray, top_k: int = 1) -> np.ndarray:
    """Indices (L_A, k) of the k best target layers of each source layer, best first."""
    n_tgt = mean_grid.shape[1]
    if not 1 <= top_k <= n_tgt:
        raise ValueError(f"top_k must be in 1..{n_tgt} (number of target layers), got {top_k}")
    order = np.argsort(-mean_grid, axis=1, kind="stable")
    return order[:, :top_k]


def sync_r2(cube: np.ndarray, top_k: int = 1, clip: bool = True, ddof: int = 0) -> SyncScore:
    """SyncR2 and its SE from an R2 cube (split seeds, L_A, L_B).

    With ``clip`` the SE sums the variance of the unfloored layers only
    (docs/protocol.md, "Ridge maps and SyncR2"); without it, of every layer.
    """
    cube = np.asarray(cube, dtype=np.float64)
    if cube.ndim == 2:
        cube = cube[None]
    if cube.ndim != 3:
        raise ValueError(f"expected an R2 cube (seeds, L_A, L_B), got shape {cube.shape}")
    mean = cube.mean(0)
    idx = best_targets(mean, top_k)
    rows = np.arange(mean.shape[0])[:, None]
    per_layer = mean[rows, idx].mean(1)  # r*(l_A), top-k mean
    per_seed = cube[:, rows, idx].mean(2)  # (seeds, L_A): top-k mean per split seed
    var = per_seed.var(0, ddof=ddof) if cube.shape[0] > ddof else np.zeros(mean.shape[0])
    if clip:
        # a floored layer is the constant 0: it contributes no variance
        var = np.where(per_layer >= 0, var, 0.0)
        per_layer = np.maximum(per_layer, 0.0)
    return SyncScore(float(per_layer.mean()), float(math.sqrt(var.sum()) / mean.shape[0]))


def combine_directions(a_to_b: SyncScore, b_to_a: SyncScore) -> SyncScore:
    """The paper's SyncR2(A,B) = (A->B + B->A) / 2, errors combined as independent."""
    return SyncScore((a_to_b.value + b_to_a.value) / 2, math.hypot(a_to_b.se, b_to_a.se) / 2)


def combine_speaking_orders(order_12: SyncScore, order_21: SyncScore) -> SyncScore:
    """The authors' pair score: mean A->B over the speaking orders (m1, m2) and (m2, m1)."""
    return combine_directions(order_12, order_21)
