"""Can the simulated episodes fill ``r2.size``? Checked once, before any R2 job.

The config check (:func:`syncr2.core.config.check_config`) knows only the turn
cap. Real episodes end early at LEAVE, so a size the cap could fill may be
out of reach. This check counts the samples every (pair, condition,
direction) dataset will really hold, from the episode tables alone (cheap: no
representations are read), and tries the fixed-size group split for every
split seed, so that an unfillable size fails in one job with one message
instead of in every R2 job after the GPU work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_parquet
from ..core.conditions import Condition, DatasetError, direction_speakers
from ..core.settings import Split
from .datasets import fixed_size_split

log = logging.getLogger(__name__)

SIZE_COLUMNS = (
    "analysis", "pair", "condition", "direction", "n_samples", "n_groups", "n_episodes", "mean_turns", "size", "ok", "problem",
)


def sample_groups(turns: pd.DataFrame, condition: str, direction: str) -> np.ndarray:
    """The task id of every sample a dataset of these episodes holds (one entry per sample).

    ``turns`` has one row per recorded turn: ``task_id``, ``seed``, ``turn``.
    A sample is a source turn ``t`` of the direction's speaker whose target
    turn ``t + 1 + 2 * lag`` was also recorded in the same episode, exactly as
    :func:`syncr2.synchrony.datasets.pair_turns` pairs them.
    """
    lag = Condition.parse(condition).lag
    src_speaker, _ = direction_speakers(direction)
    length = turns.groupby(["task_id", "seed"])["turn"].max() + 1
    groups = []
    for (task_id, _seed), n_turns in length.items():
        sources = range(src_speaker - 1, int(n_turns), 2)
        n = sum(1 for t in sources if t + 1 + 2 * lag < n_turns)
        groups.extend([task_id] * n)
    return np.asarray(groups, dtype=np.int64)


def pair_of_episode_file(path: str | os.PathLike[str]) -> str:
    """The pair key of ``results/episodes/{pair}/seed{seed}/block{b}.parquet``."""
    p = Path(path)
    if not p.parent.name.startswith("seed"):
        raise ValueError(f"{p}: expected an episode file laid out as .../{{pair}}/seed{{seed}}/block{{b}}.parquet")
    return p.parent.parent.name


def check_sample_sizes(
    episodes: Mapping[str, Sequence[str | os.PathLike[str]]],
    conditions: Sequence[str],
    directions: Sequence[str],
    size: int,
    test_fraction: float,
    split_seeds: Sequence[int],
    task_ids: Sequence[int] | None = None,
    analysis: str = "r2",
) -> pd.DataFrame:
    """One row per (pair, condition, direction): how many samples there are and whether ``size`` fits.

    ``task_ids`` restricts the episodes to those tasks (Figure 5's paper mode
    splits the tasks of a few sources only); ``analysis`` names the check in
    the table and the messages.
    """
    rows = []
    for pair, paths in sorted(episodes.items()):
        turns = _turns(paths, task_ids)
        length = turns.groupby(["task_id", "seed"])["turn"].max() + 1
        for condition in conditions:
            for direction in directions:
                groups = sample_groups(turns, condition, direction)
                problem = ""
                try:
                    for seed in split_seeds:
                        fixed_size_split(groups, size, seed, test_fraction)
                except DatasetError:
                    problem = (
                        f"{'' if analysis == 'r2' else analysis + ': '}{pair} {condition} {direction}: {len(groups)} samples in {len(np.unique(groups))} task groups "
                        f"from {len(length)} episodes of {length.mean():.1f} turns on average (episodes end early at "
                        f"LEAVE), but {'r2.size' if analysis == 'r2' else analysis + ' size'} is {size}"
                    )
                rows.append({
                    "analysis": analysis, "pair": pair, "condition": condition, "direction": direction, "n_samples": len(groups),
                    "n_groups": int(len(np.unique(groups))), "n_episodes": int(len(length)),
                    "mean_turns": float(length.mean()), "size": int(size), "ok": not problem, "problem": problem,
                })
    return pd.DataFrame(rows, columns=list(SIZE_COLUMNS))


def _turns(paths: Sequence[str | os.PathLike[str]], task_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """The (task_id, seed, turn) rows of episode tables, optionally of some tasks only."""
    turns = pd.concat([pd.read_parquet(p, columns=["task_id", "seed", "turn"]) for p in paths], ignore_index=True)
    return turns if task_ids is None else turns[turns["task_id"].isin(list(task_ids))]


def largest_fillable_size(groups: np.ndarray, test_fraction: float, split_seeds: Sequence[int]) -> int:
    """The largest size every split seed can fill with whole groups (0 when none)."""
    lo, hi = 0, len(groups)
    while lo < hi:  # fillability is monotone in size for a fixed group order
        mid = (lo + hi + 1) // 2
        try:
            for seed in split_seeds:
                fixed_size_split(groups, mid, seed, test_fraction)
        except DatasetError:
            hi = mid - 1
        else:
            lo = mid
    return lo


def require_fillable(table: pd.DataFrame, episodes: Mapping[str, Sequence[str | os.PathLike[str]]],
                     test_fraction: float, split_seeds: Sequence[int],
                     task_ids: Mapping[str, Sequence[int] | None] | None = None) -> None:
    """Raise :class:`DatasetError` listing every dataset that cannot fill its size, and what to change."""
    bad = table[~table["ok"]]
    if bad.empty:
        return
    limits = []
    for row in bad.itertuples():
        turns = _turns(episodes[row.pair], (task_ids or {}).get(row.analysis))
        limits.append(largest_fillable_size(sample_groups(turns, row.condition, row.direction), test_fraction,
                                            split_seeds))
    lines = [f"{problem}; a size of {limit} fits" for problem, limit in zip(bad["problem"], limits)]
    raise DatasetError(
        "the simulated episodes cannot fill "
        + " and ".join("r2.size" if a == "r2" else f"analysis.{a}.size" for a in dict.fromkeys(bad["analysis"]))
        + ":\n  - " + "\n  - ".join(lines)
        + "\n" + "; ".join(
            f"lower {'r2.size' if a == 'r2' else 'analysis.relationships.size'} to <= "
            f"{min(lim for lim, b in zip(limits, bad['analysis']) if b == a)}"
            for a in dict.fromkeys(bad["analysis"])
        ) + ", or add tasks/seeds, or drop the conditions listed"
    )


def write_size_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the size table atomically."""
    write_parquet(table, path)
    return Path(path)


def run_size_check(episode_paths: Sequence[str | os.PathLike[str]], split: Split, conditions: Sequence[str],
                   directions: Sequence[str], out: str | os.PathLike[str], analysis: str = "r2",
                   task_ids: Sequence[int] | None = None, sources: Sequence[str] | None = None,
                   tasks_path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Check every dataset of the episodes (laid out by pair) against ``split``; write the table, or raise
    naming what to change (:func:`require_fillable`). ``task_ids``, or the tasks of ``sources`` in the
    task table at ``tasks_path`` (Figure 5's split): only these tasks' samples count."""
    if sources:
        tasks = pd.read_parquet(tasks_path, columns=["task_id", "source"])
        task_ids = tasks.loc[tasks["source"].isin(sources), "task_id"].tolist()
    episodes: dict[str, list[str]] = {}
    for path in episode_paths:
        episodes.setdefault(pair_of_episode_file(path), []).append(str(path))
    table = check_sample_sizes(episodes, conditions, directions, split.size, split.test_fraction, split.split_seeds,
                               task_ids=task_ids, analysis=analysis)
    require_fillable(table, episodes, split.test_fraction, split.split_seeds, {analysis: task_ids})
    write_size_table(table, out)
    log.info("size %d fits all %d datasets (fewest samples: %d); wrote %s", split.size, len(table),
             int(table["n_samples"].min()), out)
    return table
