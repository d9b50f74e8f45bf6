"""The sample-size check counts what the datasets will really hold (oracle: pair_turns)."""

import numpy as np
import pandas as pd
import pytest

from syncr2.core.conditions import DatasetError
from syncr2.synchrony.datasets import fixed_size_split, pair_turns
from syncr2.synchrony.size_check import (
    check_sample_sizes,
    largest_fillable_size,
    pair_of_episode_file,
    require_fillable,
    sample_groups,
)


def episodes_with_lengths(lengths: dict[tuple[int, int], int]) -> pd.DataFrame:
    rows = [{"task_id": t, "seed": s, "turn": k, "speaker": 1 + k % 2} for (t, s), n in lengths.items() for k in range(n)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("condition,lag", [("experimental", 0), ("passive", 0), ("lag1", 1), ("lag2", 2)])
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_sample_groups_match_pair_turns(condition, lag, direction):
    rng = np.random.default_rng(3)
    lengths = {(t, s): int(rng.integers(1, 17)) for t in range(9) for s in range(3)}
    turns = episodes_with_lengths(lengths)
    groups = sample_groups(turns, condition, direction)
    oracle = pair_turns(turns, turns, direction, lag)
    assert len(groups) == len(oracle)
    assert sorted(groups.tolist()) == sorted(oracle["task_id"].tolist())


def test_check_flags_exactly_the_unfillable_datasets(tmp_path):
    short = episodes_with_lengths({(t, 0): 4 for t in range(6)})  # LEAVE after 4 turns
    path = tmp_path / "results/episodes/a__b/seed0/block0.parquet"
    path.parent.mkdir(parents=True)
    short.to_parquet(path)
    assert pair_of_episode_file(path) == "a__b"
    table = check_sample_sizes({"a__b": [path]}, ["experimental", "lag1"], ["AtoB"], 10, 0.2, [0, 1, 2])
    exp = table.set_index("condition").loc["experimental"]
    assert exp.n_samples == 12 and bool(exp.ok)  # 2 per episode (turns 0->1, 2->3)
    lag1 = table.set_index("condition").loc["lag1"]
    assert lag1.n_samples == 6 and not bool(lag1.ok) and "4.0 turns on average" in lag1.problem
    with pytest.raises(DatasetError) as err:
        require_fillable(table, {"a__b": [path]}, 0.2, [0, 1, 2])
    msg = str(err.value)
    assert "a__b lag1 AtoB: 6 samples in 6 task groups" in msg and "lower r2.size to <= " in msg


def test_largest_fillable_size_is_fillable_and_the_next_is_not():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), rng.integers(1, 6, size=12))
    best = largest_fillable_size(groups, 0.2, [0, 1, 2])
    for seed in (0, 1, 2):
        fixed_size_split(groups, best, seed, 0.2)
    with pytest.raises(DatasetError):
        for seed in (0, 1, 2):
            fixed_size_split(groups, best + 1, seed, 0.2)


def test_relationship_subset_is_checked_on_its_tasks_only(tmp_path):
    turns = episodes_with_lengths({(t, 0): 8 for t in range(6)})  # 4 AtoB samples per episode
    path = tmp_path / "results/episodes/a__b/seed0/block0.parquet"
    path.parent.mkdir(parents=True)
    turns.to_parquet(path)
    table = check_sample_sizes({"a__b": [path]}, ["experimental"], ["AtoB"], 10, 0.2, [0], task_ids=[0, 1],
                               analysis="relationships")
    row = table.iloc[0]
    assert row.analysis == "relationships" and row.n_samples == 8 and row.n_groups == 2 and not row.ok
    with pytest.raises(DatasetError, match=r"lower analysis.relationships.size to <= "):
        require_fillable(table, {"a__b": [path]}, 0.2, [0], {"relationships": [0, 1]})
