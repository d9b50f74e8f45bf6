"""Relationship closeness (Figure 5): SyncR2 per relationship category.

docs/analyses.md, "Relationship closeness". Only tasks from the configured
sources (default social_iqa, social_chemistry, normbank) count. Two modes:

* ``paper``: per split seed, the standard fixed-size split of the filtered
  tasks; the maps fitted on the full train set re-score the test samples of
  each relationship category, on equal-size subsamples (the smallest count
  among the categories present in the test set), ``n_subsample_seeds`` draws.
* ``crossfit`` (ours): group k-fold by task over ALL filtered samples (no
  size cap); every sample is predicted by the fold that did not train on it,
  then equal-size subsamples per category are scored on those out-of-fold
  predictions, so every filtered task counts.

A ridge map depends only on its train rows, so one fit per (split or fold,
layer pair) scores every subset: :func:`subset_r2_grids` predicts the test rows
once and accumulates each subset's residuals, which equals calling the R2
engine with the same train rows and the subset as test rows (and, for
``crossfit``, an sklearn fit per fold scored on the pooled predictions).

A category present in the filtered data but absent from a test set is a row
with status ``missing`` and n_test 0; one with fewer than ``min_samples``
test samples is ``too_few`` (SyncR2 NaN); neither is ever a silent zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_parquet
from ..core.settings import Relationships, Ridge, Split
from ..synchrony.datasets import (
    ConditionDataset,
    build_dataset,
    fixed_size_split,
    open_by_speaker,
)
from ..synchrony.subset_grids import subset_r2_grids
from ..synchrony.sync import sync_r2

log = logging.getLogger(__name__)

MODES = ("paper", "crossfit")
RELATIONSHIP_COLUMNS = (
    "pair", "direction", "mode", "split_seed", "subsample_seed", "relationship", "relationship_name",
    "n_test", "n_available", "n_tasks", "syncr2", "syncr2_unclipped", "status",
)
def group_kfold(groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds by group: groups shuffled with ``seed``, each to the fold holding the fewest samples so far."""
    groups = np.asarray(groups)
    unique, counts = np.unique(groups, return_counts=True)
    if not 2 <= k <= len(unique):
        raise ValueError(f"crossfit needs 2 <= k <= number of tasks ({len(unique)}), got k={k}")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group: dict = {}
    sizes = np.zeros(k, dtype=np.int64)
    for i in order:
        f = int(np.argmin(sizes))
        fold_of_group[unique[i]] = f
        sizes[f] += counts[i]
    fold = np.array([fold_of_group[g] for g in groups])
    all_rows = np.arange(len(groups))
    return [(all_rows[fold != f], all_rows[fold == f]) for f in range(k)]


def _task_info(dataset: ConditionDataset, tasks: pd.DataFrame) -> pd.DataFrame:
    """source, relationship and relationship_name of every sample, from the task table."""
    need = ["task_id", "source", "relationship", "relationship_name"]
    missing = [c for c in need if c not in tasks.columns]
    if missing:
        raise ValueError(f"task table lacks column(s) {', '.join(missing)}")
    info = tasks[need].drop_duplicates("task_id").set_index("task_id")
    ids = dataset.pairs["task_id"]
    unknown = sorted(set(ids) - set(info.index))
    if unknown:
        raise ValueError(f"task id(s) {unknown[:10]} of the shards are not in the task table")
    return info.loc[ids.to_numpy()].reset_index()


def _draw_subsets(cats: np.ndarray, pool: np.ndarray, ok: Sequence[int], m: int, seed: int,
                  sub_seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, sub_seed])
    return [np.sort(rng.choice(pool[cats[pool] == c], size=m, replace=False)) for c in ok]


def relationship_table(
    genuine: Mapping[int, object] | Sequence[str | os.PathLike[str]],
    tasks: pd.DataFrame,
    pair: str,
    *,
    split: Split = Split(6500),
    rel: Relationships = Relationships(),
    mode: str = "paper",
    directions: Sequence[str] = ("AtoB", "BtoA"),
    ridge: Ridge = Ridge(),
    top_k: int = 1,
    device: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """SyncR2 per relationship category of one ordered pair, experimental condition.

    ``genuine``: the pair's genuine shard paths (or ``open_by_speaker``'s
    result); ``tasks``: the task table. ``mode`` "paper" uses the fixed-size
    split (``split``) per split seed; "crossfit" uses group k-fold by task
    (``rel.folds``) over all filtered samples, folds drawn with each split seed.
    One row per (direction, split seed, subsample seed, category); columns
    :data:`RELATIONSHIP_COLUMNS`. ``n_available`` is the category's sample
    count in the pool scored (paper: the test set; crossfit: all), ``n_test``
    the subsample size actually scored.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if rel.subsample_seeds < 1:
        raise ValueError(f"n_subsample_seeds must be >= 1, got {rel.subsample_seeds}")
    if rel.min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {rel.min_samples}")
    gen = genuine if isinstance(genuine, Mapping) else open_by_speaker(genuine, "genuine")
    rows: list[dict] = []
    for direction in directions:
        ds = build_dataset(gen, "experimental", direction)
        info = _task_info(ds, tasks)
        sel = np.flatnonzero(info["source"].isin(list(rel.sources)).to_numpy())
        if len(sel) == 0:
            raise ValueError(f"pair {pair} {direction}: no samples from tasks of sources {list(rel.sources)}")
        groups = info["task_id"].to_numpy()[sel]
        cats = info["relationship"].to_numpy()[sel].astype(np.int64)
        names = dict(zip(info["relationship"].astype(np.int64), info["relationship_name"]))
        log.info("pair %s %s: %d samples of %d tasks from %s; categories %s", pair, direction, len(sel),
                 len(np.unique(groups)), list(rel.sources), [names[c] for c in sorted(set(cats.tolist()))])
        for seed in split.split_seeds:
            if mode == "paper":
                train, test = fixed_size_split(groups, split.size, seed, split.test_fraction)
                folds, pool = [(train, test)], test
            else:
                n_tasks = len(np.unique(groups))
                if rel.folds > n_tasks:
                    log.warning("pair %s %s: %d folds asked but only %d tasks; crossfit uses %d folds",
                                pair, direction, rel.folds, n_tasks, n_tasks)
                folds, pool = group_kfold(groups, min(rel.folds, n_tasks), seed), np.arange(len(sel))
            head = {"pair": pair, "direction": direction, "mode": mode, "split_seed": int(seed)}
            rows += _category_rows(ds, sel, groups, cats, names, folds, pool, head, rel, ridge, top_k, device,
                                   progress)
    return pd.DataFrame(rows, columns=list(RELATIONSHIP_COLUMNS))


def _category_rows(ds: ConditionDataset, sel: np.ndarray, groups: np.ndarray, cats: np.ndarray,
                   names: Mapping[int, str], folds: list, pool: np.ndarray, head: dict, rel: Relationships,
                   ridge: Ridge, top_k: int, device: str | None, progress: bool) -> list[dict]:
    """The rows of one split (or fold set): every category's SyncR2 on equal-size subsamples of ``pool``."""
    categories = sorted(set(cats.tolist()))
    counts = {c: int((cats[pool] == c).sum()) for c in categories}
    ok = [c for c in categories if counts[c] >= rel.min_samples]
    m = min((counts[c] for c in ok), default=0)
    subsets: list[np.ndarray] = []
    for sub_seed in range(rel.subsample_seeds):
        subsets += _draw_subsets(cats, pool, ok, m, head["split_seed"], sub_seed) if ok else []
    grids = None
    if subsets:
        grids = subset_r2_grids(
            lambda a: ds.load_source(a, sel), lambda b: ds.load_target(b, sel),
            ds.source.n_layers, ds.target.n_layers, folds, subsets, alpha=ridge.alpha, device=device,
            progress=progress,
        )
    rows = []
    for sub_seed in range(rel.subsample_seeds):
        for c in categories:
            row = {**head, "subsample_seed": sub_seed, "relationship": c, "relationship_name": names[c],
                   "n_test": 0, "n_available": counts[c], "n_tasks": len(np.unique(groups[pool][cats[pool] == c])),
                   "syncr2": np.nan, "syncr2_unclipped": np.nan}
            if c in ok:
                grid = grids[sub_seed * len(ok) + ok.index(c)]
                kk = min(top_k, grid.shape[1])
                row.update(n_test=m, status="ok", syncr2=sync_r2(grid, top_k=kk).value,
                           syncr2_unclipped=sync_r2(grid, top_k=kk, clip=False).value)
            else:
                row.update(n_test=counts[c], status="missing" if counts[c] == 0 else "too_few")
            rows.append(row)
    absent = [f"{names[c]} ({counts[c]})" for c in categories if c not in ok]
    if absent:
        log.warning("pair %s %s %s seed %d: categories missing or below %d test samples: %s", head["pair"],
                    head["direction"], head["mode"], head["split_seed"], rel.min_samples, ", ".join(absent))
    return rows


def run_relationships(
    genuine: Mapping[str, Sequence[str | os.PathLike[str]]],
    tasks_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    modes: Sequence[str] | None = None,
    **options,
) -> Path:
    """CLI entry: :func:`relationship_table` of every pair (pair key -> genuine shard paths) in every mode
    (``modes``, else ``options["mode"]``), one parquet. ``options``: relationship_table's keyword arguments."""
    tasks = pd.read_parquet(tasks_path)
    modes = list(modes) if modes else [options.pop("mode", "paper")]
    frames = [relationship_table(paths, tasks, pair, mode=mode, **options)
              for pair, paths in sorted(genuine.items()) for mode in modes]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RELATIONSHIP_COLUMNS))
    write_parquet(table, out_path)
    log.info("wrote %s (%d rows; status counts %s)", out_path, len(table), table["status"].value_counts().to_dict())
    return Path(out_path)
