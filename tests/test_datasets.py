"""Condition datasets: pairs enumerated by hand on tiny episodes, the split, the errors."""

import numpy as np
import pandas as pd
import pytest

from syncr2.core.atomic import atomic_path
from syncr2.core.shards import ShardError, ShardMeta, write_shard
from syncr2.synchrony.datasets import (
    DatasetError,
    build_dataset,
    fixed_size_split,
    split_sizes,
)

# episode lengths per (task, seed): task 0 has 5 turns, task 1 has 4, task 2 has 7 (seed 0) / 3 (seed 1)
LENGTHS = {(0, 0): 5, (1, 0): 4, (2, 0): 7, (2, 1): 3}


def value(kind, task, seed, turn):
    """A representation that encodes where it came from, to check the pairing."""
    return task * 1000 + seed * 100 + turn + (0.5 if kind == "passive" else 0.0)


def write_pair(tmp_path, kind, provenance=None, sub=None):
    """Both agents' shards of ``kind``; ``provenance``: agent -> extra ShardMeta fields."""
    paths = []
    for agent, dim, layers in ((1, 3, 2), (2, 4, 3)):
        rows, reps = [], []
        for (task, seed), n in LENGTHS.items():
            for turn in range(agent - 1, n, 2):
                rows.append((task, seed, turn, agent))
                reps.append(np.full((layers, dim), value(kind, task, seed, turn)) + np.arange(layers)[:, None])
        meta = ShardMeta(model_key=f"m{agent}", model_path="p", revision="r", dtype="float32",
                         n_layers=layers, hidden_size=dim, kind=kind, **(provenance or {}).get(agent, {}))
        idx = pd.DataFrame(rows, columns=["task_id", "seed", "turn", "speaker"])
        paths.append(write_shard(tmp_path / (sub or kind) / f"agent{agent}.parquet", idx, np.array(reps), meta))
    return paths


def pairs_of(ds):
    return sorted(map(tuple, ds.pairs[["task_id", "seed", "src_turn", "tgt_turn"]].to_numpy().tolist()))


def test_pairs_by_hand(tmp_path):
    gen = write_pair(tmp_path, "genuine")
    pas = write_pair(tmp_path, "passive")
    ab = build_dataset(gen, "experimental", "AtoB")
    assert pairs_of(ab) == [(0, 0, 0, 1), (0, 0, 2, 3), (1, 0, 0, 1), (1, 0, 2, 3),
                            (2, 0, 0, 1), (2, 0, 2, 3), (2, 0, 4, 5), (2, 1, 0, 1)]
    ba = build_dataset(gen, "experimental", "BtoA")
    assert pairs_of(ba) == [(0, 0, 1, 2), (0, 0, 3, 4), (1, 0, 1, 2), (2, 0, 1, 2), (2, 0, 3, 4),
                            (2, 0, 5, 6), (2, 1, 1, 2)]
    lag1 = build_dataset(gen, "lag1", "AtoB")
    assert pairs_of(lag1) == [(0, 0, 0, 3), (1, 0, 0, 3), (2, 0, 0, 3), (2, 0, 2, 5)]
    lag2_ba = build_dataset(gen, "lag2", "BtoA")
    assert pairs_of(lag2_ba) == [(2, 0, 1, 6)]
    passive = build_dataset(gen, "passive", "AtoB", passive=pas)
    assert pairs_of(passive) == pairs_of(ab)
    # the loaded rows are the right turns: source from the passive reading, target genuine
    samples = np.arange(len(passive))
    src = passive.load_source(1, samples)
    tgt = passive.load_target(2, samples)
    for i, (task, seed, st, tt) in enumerate(passive.pairs[["task_id", "seed", "src_turn", "tgt_turn"]].to_numpy()):
        assert np.all(src[i] == value("passive", task, seed, st) + 1)
        assert np.all(tgt[i] == value("genuine", task, seed, tt) + 2)
    assert src.shape == (8, 3) and tgt.shape == (8, 4)


def test_dataset_errors(tmp_path):
    gen = write_pair(tmp_path, "genuine")
    with pytest.raises(DatasetError, match="lag 3 needs episodes of at least 8 turns, the longest episode has 7"):
        build_dataset(gen, "lag3", "AtoB")
    with pytest.raises(DatasetError, match="unknown condition 'lag0'"):
        build_dataset(gen, "lag0", "AtoB")
    with pytest.raises(DatasetError, match="needs the passive shards"):
        build_dataset(gen, "passive", "AtoB")
    with pytest.raises(DatasetError, match="unknown direction"):
        build_dataset(gen, "experimental", "AtoC")
    with pytest.raises(DatasetError, match="turn recorded twice"):
        build_dataset(gen + gen[:1], "experimental", "AtoB")


GEN = dict(date_string="26 Jul 2024", temperature=0.7, top_p=1.0, top_k=50, stop_at_newline=True,
           max_new_tokens=300, torch_version="2.13.0", transformers_version="5.17.0")


def test_pair_provenance_must_agree(tmp_path):
    # two models: their chat templates and top_p differ legitimately, the pair fields agree
    ok = {1: {**GEN, "chat_template_sha256": "aa"}, 2: {**GEN, "chat_template_sha256": "bb", "top_p": 0.9}}
    gen = write_pair(tmp_path, "genuine", ok)
    pas = write_pair(tmp_path, "passive", ok)
    assert len(build_dataset(gen, "passive", "AtoB", passive=pas)) == 8
    # source and target disagree on the date the prompts showed
    bad = write_pair(tmp_path, "genuine", {1: ok[1], 2: {**ok[2], "date_string": "24 Nov 2026"}}, sub="bad")
    with pytest.raises(ShardError, match=r"'date_string' is '26 Jul 2024' in .*bad/agent1\.parquet but "
                                         r"'24 Nov 2026' in .*bad/agent2\.parquet"):
        build_dataset(bad, "experimental", "AtoB")
    # a passive re-read under other library versions than the genuine run
    pas_new = write_pair(tmp_path, "passive", {a: {**ok[a], "torch_version": "2.14.0"} for a in (1, 2)}, sub="pnew")
    with pytest.raises(ShardError, match=r"'torch_version' is '2.13.0' in .*genuine/agent1\.parquet but "
                                         r"'2.14.0' in .*pnew/agent1\.parquet"):
        build_dataset(gen, "passive", "AtoB", passive=pas_new)
    # the passive reader of agent 1 used another chat template than agent 1's genuine run
    pas_tpl = write_pair(tmp_path, "passive", {1: {**ok[1], "chat_template_sha256": "cc"}, 2: ok[2]}, sub="ptpl")
    with pytest.raises(ShardError, match=r"'chat_template_sha256' is 'aa' in .*genuine/agent1\.parquet but 'cc'"):
        build_dataset(gen, "passive", "AtoB", passive=pas_tpl)
    # shards of one agent (two blocks) that disagree on the sampling settings
    other = write_pair(tmp_path, "genuine", {1: {**ok[1], "temperature": 1.0}, 2: ok[2]}, sub="other")
    with pytest.raises(ShardError, match=r"'temperature' is 0.7 in .*genuine/agent1\.parquet but 1.0 in "
                                         r".*other/agent1\.parquet; the shards of one agent must agree"):
        build_dataset([gen[0], other[0], gen[1]], "experimental", "AtoB")


def test_split_sizes_and_whole_groups():
    assert split_sizes(6500) == (5200, 1300)
    groups = np.repeat(np.arange(50), 7)  # 50 tasks x 7 samples
    train, test = fixed_size_split(groups, 200, split_seed=0)
    assert len(test) >= 40 and len(train) >= 160
    assert len(test) < 40 + 7 and len(train) < 160 + 7  # stops as soon as each part is full
    assert not set(groups[train]) & set(groups[test])  # whole groups only
    # every group is entirely in or out
    for g in set(groups[train]) | set(groups[test]):
        members = set(np.flatnonzero(groups == g))
        assert members <= set(train) or members <= set(test)
    again = fixed_size_split(groups, 200, split_seed=0)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    other = fixed_size_split(groups, 200, split_seed=1)
    assert not np.array_equal(test, other[1])


def test_split_follows_the_protocol_order():
    groups = np.array([5, 5, 3, 9, 9, 9, 1, 1])
    order = np.unique(groups)[np.random.default_rng(4).permutation(4)]
    train, test = fixed_size_split(groups, 5, split_seed=4)  # test >= 1, then train >= 4
    # by hand: first shuffled group goes to test, then groups into train until >= 4 samples
    expect_test = list(np.flatnonzero(groups == order[0]))
    expect_train, i = [], 1
    while len(expect_train) < 4:
        expect_train += list(np.flatnonzero(groups == order[i]))
        i += 1
    assert list(test) == expect_test and list(train) == expect_train


def test_split_too_few_samples_says_how_many():
    groups = np.repeat(np.arange(10), 3)
    with pytest.raises(DatasetError, match="has 30 samples in 10 task groups"):
        fixed_size_split(groups, 40, split_seed=0)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
