"""Representational similarity measures beside SyncR2: linear CKA, RSA and orthogonal Procrustes.

docs/analyses.md, "Other similarity measures". Does a synchrony result survive
another measure? Each measure compares the source rows X (n, D_A) and the
target rows Y (n, D_B) of the same condition dataset on the TEST part of the
same fixed-size splits that the R2 tables use, for every layer pair:

* ``cka``: linear CKA with the debiased HSIC estimator (the U-statistic of
  Song et al. 2012 as used for CKA by Nguyen et al. 2021): unbiased HSIC of the
  two linear Gram matrices, normalised by the unbiased self-HSICs. Needs n >= 4.
  Invariant to orthogonal transforms and isotropic scaling of either side; 1
  for identical inputs.
* ``rsa``: representational similarity analysis through rsatoolbox. Each
  side's representational dissimilarity matrix is the correlation distance
  1 - Pearson r between every two samples (``calc_rdm(method="correlation")``);
  the score is the Spearman correlation of the two RDMs
  (``compare(method="spearman")``). Needs n >= 3.
* ``procrustes``: orthogonal Procrustes similarity. Both sides are centred and
  scaled to unit Frobenius norm; the score is the nuclear norm of X^T Y, which
  is the largest trace of X^T Y Q over orthogonal Q (the narrower side padded
  with zero columns). It lies in [0, 1] and is 1 when Y is a rotation and
  scaling of X; the Procrustes distance is sqrt(2 - 2 score). Needs n >= 3
  (two centred points always align).

A side whose test rows are all equal has no geometry to compare (layer 0 of
the last prompt token is the same token's embedding in every sample): its
value is 0 for every measure, like a ridge map that can predict nothing; so is
RSA's where a row is constant across its features (its correlation distance
is undefined).

Unlike a ridge map, none of these is fitted, so the training rows play no
part; their split only decides which rows are the test rows, so every
measure sees exactly the rows that SyncR2's test R2 sees.

Each measure's grid is summarised like SyncR2 (``synchrony.sync.sync_r2``,
unclipped): the best target layer per source layer, the mean over source
layers, and the SE over split seeds.

Every layer is read once: per layer its Gram matrix (CKA), its RDM (RSA) and
the factor U S of its SVD (Procrustes) are kept, and a layer pair costs an
n x n product (CKA), one rsatoolbox comparison of every target layer's RDM at
once (RSA) or an SVD of a k x k matrix with k <= n (Procrustes), whatever the
hidden size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.atomic import read_table, write_table
from ..core.conditions import DatasetError
from ..core.settings import Split
from .datasets import ConditionDataset, build_dataset, fixed_size_split
from .ridge import LayerStreams
from .sync import SyncScore, combine_directions, sync_r2

log = logging.getLogger(__name__)

MEASURES = ("cka", "rsa", "procrustes")
#: The fewest test rows each measure is defined on.
MIN_ROWS = {"cka": 4, "rsa": 3, "procrustes": 3}  # two centred points always align: Procrustes would give 1

GRID_COLUMNS = ("pair", "condition", "direction", "measure", "split_seed", "source_layer", "target_layer", "value",
                "n_test", "size", "test_fraction")


class MeasureError(ValueError):
    """A similarity measure cannot be computed as asked (too few rows, an unknown measure...)."""


def check_measures(measures: Sequence[str]) -> list[str]:
    """The measures as a list, refusing unknown names and duplicates."""
    measures = [measures] if isinstance(measures, str) else list(measures)
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise MeasureError(f"unknown similarity measure(s) {unknown}; use some of {', '.join(MEASURES)}")
    if len(set(measures)) != len(measures):
        raise MeasureError(f"similarity measures listed twice: {measures}")
    return measures


# --------------------------------------------------------------------------- one layer pair


def _centred(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(0, keepdims=True)


def unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """The unbiased HSIC estimator of two n x n Gram matrices (diagonals ignored), n >= 4."""
    n = K.shape[0]
    if n < 4:
        raise MeasureError(f"the debiased HSIC needs at least 4 rows, got {n}")
    K = K - np.diag(np.diag(K))
    L = L - np.diag(np.diag(L))
    k1, l1 = K.sum(0), L.sum(0)
    value = (K * L).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2 * (k1 @ l1) / (n - 2)
    return float(value / (n * (n - 3)))


def linear_cka(X: np.ndarray, Y: np.ndarray, debiased: bool = True) -> float:
    """Linear CKA of rows X (n, D_A) and Y (n, D_B); ``debiased`` uses the unbiased HSIC."""
    if debiased:
        return _cka(_cka_factor(_centred(X)), _cka_factor(_centred(Y)))
    Xc, Yc = _centred(X), _centred(Y)
    K, L = Xc @ Xc.T, Yc @ Yc.T
    xy, xx, yy = float((K * L).sum()), float((K * K).sum()), float((L * L).sum())
    return float(xy / np.sqrt(xx * yy)) if xx > 0 and yy > 0 else 0.0


def _cka_factor(Xc: np.ndarray) -> tuple[np.ndarray, float]:
    """What debiased CKA keeps of one side's centred rows: its Gram matrix and the Gram's unbiased self-HSIC."""
    K = Xc @ Xc.T
    return K, unbiased_hsic(K, K)


def _cka(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
    """Debiased CKA from both sides' :func:`_cka_factor`; 0 where a side has no spread."""
    (K, kk), (L, ll) = a, b
    return float(unbiased_hsic(K, L) / np.sqrt(kk * ll)) if kk > 0 and ll > 0 else 0.0


def rdm(X: np.ndarray) -> Any:
    """rsatoolbox's representational dissimilarity matrix (``RDMs``) of the rows of X: correlation distance."""
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    with np.errstate(invalid="ignore", divide="ignore"):  # a row constant across its features: NaN, handled
        return calc_rdm(Dataset(np.asarray(X, dtype=np.float64)), method="correlation")


def rsa(X: np.ndarray, Y: np.ndarray) -> float:
    """RSA of rows X and Y: the Spearman correlation of their correlation-distance RDMs (rsatoolbox)."""
    if len(X) < 3:
        raise MeasureError(f"RSA needs at least 3 rows (2 dissimilarities), got {len(X)}")
    return float(_rsa_row(rdm(X), [rdm(Y)])[0])


def _informative(rdms: Any) -> bool:
    """Whether an RDM has a geometry to compare: finite (no row constant across its features) and not constant."""
    v = rdms.get_vectors()[0]
    return bool(np.isfinite(v).all() and np.ptp(v) > 0)


def _rsa_row(source: Any, targets: list[Any]) -> np.ndarray:
    """Spearman correlation (rsatoolbox's ``compare``) of one RDM with each of ``targets``; 0 where either has
    no geometry (module docstring)."""
    from rsatoolbox.rdm import compare, concat

    row = np.zeros(len(targets))
    usable = [i for i, t in enumerate(targets) if _informative(t)]
    if usable and _informative(source):
        row[usable] = compare(source, concat([targets[i] for i in usable]), method="spearman")[0]
    return row


def procrustes_similarity(X: np.ndarray, Y: np.ndarray) -> float:
    """Orthogonal Procrustes similarity: the nuclear norm of X^T Y after centring and unit Frobenius norms."""
    return _procrustes(_procrustes_factor(_centred(X)), _procrustes_factor(_centred(Y)))


def _procrustes(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Procrustes similarity from both sides' :func:`_procrustes_factor`; 0 where a side has no spread."""
    if a is None or b is None:
        return 0.0
    return float(np.linalg.svd(a.T @ b, compute_uv=False).sum())


def _procrustes_factor(Xc: np.ndarray) -> np.ndarray | None:
    """U S of the centred rows Xc scaled to unit norm, Xc / |Xc| = U S V^T (n x k): X^T Y's singular values
    are those of (U_x S_x)^T (U_y S_y), a k x k matrix, k <= n."""
    norm = np.linalg.norm(Xc)
    if norm == 0:
        return None
    u, s, _ = np.linalg.svd(Xc / norm, full_matrices=False)
    return u * s


# --------------------------------------------------------------------------- layer grids


def _layer_features(X: np.ndarray, measures: Sequence[str]) -> dict[str, Any]:
    """What each measure keeps of one layer's rows (each computed once per layer)."""
    out: dict[str, Any] = {}
    Xc = _centred(X)
    if "cka" in measures:
        out["cka"] = _cka_factor(Xc)
    if "rsa" in measures:
        out["rsa"] = rdm(X)
    if "procrustes" in measures:
        out["procrustes"] = _procrustes_factor(Xc)
    return out


#: A layer pair's value from both layers' features, for the measures compared one pair at a time.
PAIR_VALUE = {"cka": _cka, "procrustes": _procrustes}


def measure_grids(streams: LayerStreams, measures: Sequence[str]) -> dict[str, np.ndarray]:
    """Every measure's (L_A, L_B) grid over the rows the streams give (each layer read once); all NaN for a
    measure the rows are too few for (:data:`MIN_ROWS`)."""
    measures = check_measures(measures)
    grids = {m: np.full((streams.n_source, streams.n_target), np.nan) for m in measures}
    target = [streams.target(b) for b in range(streams.n_target)]
    n = len(target[0]) if target else 0
    defined = [m for m in measures if n >= MIN_ROWS[m]]  # too few rows: the grid stays NaN (summary notes it)
    if not defined:
        return grids
    target_features = [_layer_features(Y, defined) for Y in target]
    target_rdms = [f["rsa"] for f in target_features] if "rsa" in defined else []
    for a in range(streams.n_source):
        feats = _layer_features(streams.source(a), defined)
        for m in defined:
            if m == "rsa":  # every target layer at once
                grids[m][a] = _rsa_row(feats[m], target_rdms)
                continue
            for b in range(streams.n_target):
                grids[m][a, b] = PAIR_VALUE[m](feats[m], target_features[b][m])
    return grids


def dataset_measures(dataset: ConditionDataset, split: Split, measures: Sequence[str]) -> pd.DataFrame:
    """The grid table (:data:`GRID_COLUMNS`, ``pair`` empty) of one dataset: every measure, split seed and layer
    pair on the split's test rows."""
    measures = check_measures(measures)
    frames = []
    for seed in split.split_seeds:
        _, test = fixed_size_split(dataset.groups, split.size, int(seed), split.test_fraction)
        grids = measure_grids(dataset.streams(test), measures)
        for m, grid in grids.items():
            la, lb = np.meshgrid(np.arange(grid.shape[0]), np.arange(grid.shape[1]), indexing="ij")
            frames.append(pd.DataFrame({
                "measure": m, "split_seed": int(seed), "source_layer": la.ravel(), "target_layer": lb.ravel(),
                "value": grid.ravel(), "n_test": len(test)}))
        log.info("%s %s split seed %s: %s on %d test rows", dataset.condition.name, dataset.direction, seed,
                 ", ".join(measures), len(test))
        for m in measures:
            if len(test) < MIN_ROWS[m]:
                log.warning("%s %s split seed %s: %s needs at least %d test rows, the split gives %d: left undefined "
                            "(NaN)", dataset.condition.name, dataset.direction, seed, m, MIN_ROWS[m], len(test))
    frame = pd.concat(frames, ignore_index=True)
    frame["pair"] = ""
    frame["condition"] = dataset.condition.name
    frame["direction"] = dataset.direction
    frame["size"], frame["test_fraction"] = split.size, split.test_fraction
    return _typed(frame[list(GRID_COLUMNS)])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in ("split_seed", "source_layer", "target_layer", "n_test", "size"):
        out[c] = out[c].astype(np.int64)
    for c in ("value", "test_fraction"):
        out[c] = out[c].astype(np.float64)
    for c in ("pair", "condition", "direction", "measure"):
        out[c] = out[c].astype(str)
    return out.reset_index(drop=True)


def run_measures(genuine: Sequence[str | os.PathLike[str]], passive: Sequence[str | os.PathLike[str]] | None,
                 conditions: Sequence[str], directions: Sequence[str], split: Split, measures: Sequence[str],
                 out: str | os.PathLike[str], pair: str = "") -> pd.DataFrame:
    """The grid table of one pair: every condition, direction, measure, split seed and layer pair; written
    atomically to ``out``."""
    frames = []
    for condition in conditions:
        for direction in directions:
            try:
                dataset = build_dataset(genuine, condition, direction, passive=passive or None)
                frames.append(dataset_measures(dataset, split, measures))
            except DatasetError as exc:
                raise MeasureError(f"{pair} {condition} {direction}: {exc}") from exc
    frame = pd.concat(frames, ignore_index=True)
    frame["pair"] = pair
    write_measure_grids(frame, out)
    log.info("wrote %s (%d values)", out, len(frame))
    return frame


def write_measure_grids(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a grid table atomically (Parquet)."""
    return write_table(frame, path, GRID_COLUMNS, "similarity-measure grid table", MeasureError, only=True)


def read_measure_grids(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A grid table; errors name the file and the missing column."""
    return read_table(path, GRID_COLUMNS, "similarity-measure grid table", MeasureError)


@dataclass(frozen=True)
class MeasureCube:
    """One (pair, condition, direction, measure)'s values as a cube (split seeds, L_A, L_B)."""

    cube: np.ndarray
    n_test: int


def grid_cubes(frame: pd.DataFrame) -> dict[tuple[str, str, str, str], MeasureCube]:
    """Every (pair, condition, direction, measure) of a grid table as a cube."""
    out = {}
    for key, grp in frame.groupby(["pair", "condition", "direction", "measure"], sort=True):
        seeds = sorted(grp.split_seed.unique())
        la, lb = int(grp.source_layer.max()) + 1, int(grp.target_layer.max()) + 1
        cube = np.full((len(seeds), la, lb), np.nan)
        s = np.searchsorted(seeds, grp.split_seed.to_numpy())
        cube[s, grp.source_layer.to_numpy(), grp.target_layer.to_numpy()] = grp.value.to_numpy()
        out[key] = MeasureCube(cube, int(grp.n_test.min()))
    return out


SUMMARY_COLUMNS = ("pair", "condition", "direction", "measure", "value", "se", "n_test", "n_split_seeds", "note")


def summarize_measures(grids: pd.DataFrame, synchrony: pd.DataFrame | None = None,
                       syncr2: str = "syncr2_unclipped") -> pd.DataFrame:
    """The measures table (``results/summary/measures.parquet``): per (pair, condition, direction, measure) the
    SyncR2-style summary (best target layer per source layer, mean over source layers, SE over split seeds,
    unclipped) and, for a pair with both directions, the ``combined`` row (A->B + B->A) / 2.

    With ``synchrony`` (the SyncR2 summary table) its ``syncr2`` column (or ``syncr2_unclipped``) joins as
    measure ``syncr2`` for the same (pair, condition, direction), so every measure sits in one table.
    """
    rows = []
    for (pair, cond, direction, measure), mc in grid_cubes(grids).items():
        seeds = ~np.isnan(mc.cube).all(axis=(1, 2))  # split seeds whose test part the measure is defined on
        if np.isnan(mc.cube[seeds]).any():
            raise MeasureError(f"{pair} {cond} {direction} {measure}: the grid table misses layer pairs")
        note = "" if seeds.all() else (f"{measure} needs at least {MIN_ROWS[measure]} test rows: "
                                       f"{int((~seeds).sum())} of {seeds.size} split seeds give fewer")
        score = sync_r2(mc.cube[seeds], clip=False) if seeds.any() else SyncScore(float("nan"), float("nan"))
        rows.append({"pair": pair, "condition": cond, "direction": direction, "measure": measure,
                     "value": score.value, "se": score.se, "n_test": mc.n_test, "n_split_seeds": int(seeds.sum()),
                     "note": note})
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    combined = []
    for (pair, cond, measure), grp in frame.groupby(["pair", "condition", "measure"], sort=True):
        by_dir = {r.direction: r for r in grp.itertuples()}
        if {"AtoB", "BtoA"} <= by_dir.keys():
            ab, ba = by_dir["AtoB"], by_dir["BtoA"]
            both = combine_directions(SyncScore(ab.value, ab.se), SyncScore(ba.value, ba.se))
            combined.append({"pair": pair, "condition": cond, "direction": "combined", "measure": measure,
                             "value": both.value, "se": both.se, "n_test": min(ab.n_test, ba.n_test),
                             "n_split_seeds": min(ab.n_split_seeds, ba.n_split_seeds),
                             "note": "; ".join(f"{d}: {r.note}" for d, r in (("AtoB", ab), ("BtoA", ba)) if r.note)})
    frame = pd.concat([frame, pd.DataFrame(combined, columns=list(SUMMARY_COLUMNS))], ignore_index=True)
    if synchrony is not None:
        se = "se_unclipped" if syncr2 == "syncr2_unclipped" else "se"
        keys = set(zip(frame.pair, frame.condition, frame.direction))
        sel = synchrony[[k in keys for k in zip(synchrony.pair, synchrony.condition, synchrony.direction)]]
        frame = pd.concat([frame, pd.DataFrame({
            "pair": sel.pair, "condition": sel.condition, "direction": sel.direction, "measure": "syncr2",
            "value": sel[syncr2], "se": sel[se], "n_test": -1, "n_split_seeds": sel.n_split_seeds, "note": ""})],
            ignore_index=True)
    for c in ("n_test", "n_split_seeds"):
        frame[c] = frame[c].astype(np.int64)
    order = {m: i for i, m in enumerate(("syncr2", *MEASURES))}
    return frame.sort_values(["pair", "condition", "direction", "measure"], kind="stable",
                             key=lambda s: s.map(order) if s.name == "measure" else s).reset_index(drop=True)


def run_measures_summary(grid_paths: Sequence[str | os.PathLike[str]], synchrony_path: str | os.PathLike[str] | None,
                         out: str | os.PathLike[str], syncr2: str = "syncr2_unclipped") -> pd.DataFrame:
    """Summarise grid tables (with the SyncR2 summary beside them) and write the measures table atomically."""
    grids = pd.concat([read_measure_grids(p) for p in grid_paths], ignore_index=True)
    synchrony = pd.read_parquet(synchrony_path) if synchrony_path else None
    frame = summarize_measures(grids, synchrony, syncr2)
    write_table(frame, out, SUMMARY_COLUMNS, "similarity-measure summary", MeasureError, only=True)
    log.info("wrote %s (%d rows)", out, len(frame))
    return frame
