"""Relationship closeness (Figure 5): subset re-scoring, missing categories, crossfit coverage."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from syncr2.analysis.relationships import (
    RELATIONSHIP_COLUMNS,
    group_kfold,
    relationship_table,
    run_relationships,
)
from syncr2.core.settings import Relationships, Split
from syncr2.synchrony.datasets import build_dataset, fixed_size_split, open_by_speaker
from syncr2.synchrony.ridge import LayerStreams, layer_pair_r2_streamed
from syncr2.synchrony.subset_grids import subset_r2_grids
from syncr2.synchrony.sync import sync_r2
from syncr2.synchrony.synthetic import SyntheticSpec, write_synthetic_shards

NAMES = {0: "stranger", 2: "acquaintance", 3: "friend", 4: "romantic_relationship", 5: "family_member"}


def _tasks(n_tasks: int) -> pd.DataFrame:
    """Tasks 0-2 strangers, 3-29 friends, 30-49 acquaintances, 50-54 family (excluded source), rest romantic."""
    rel = np.select([np.arange(n_tasks) < 3, np.arange(n_tasks) < 30, np.arange(n_tasks) < 50,
                     np.arange(n_tasks) < 55], [0, 3, 2, 5], 4)
    source = np.where(rel == 5, "craigslist_bargains", np.array(["social_iqa", "normbank", "social_chemistry"])[
        np.arange(n_tasks) % 3])
    return pd.DataFrame({"task_id": np.arange(n_tasks), "source": source, "relationship": rel,
                         "relationship_name": [NAMES[r] for r in rel]})


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    spec = SyntheticSpec(n_tasks=60, seeds=(0, 1), n_turns=6)
    paths = write_synthetic_shards(spec, tmp_path_factory.mktemp("reps"))
    return spec, paths, _tasks(spec.n_tasks)


def _layers(ds, rows):
    X = np.stack([ds.load_source(a, rows) for a in range(ds.source.n_layers)], 1).astype(np.float64)
    Y = np.stack([ds.load_target(b, rows) for b in range(ds.target.n_layers)], 1).astype(np.float64)
    return X, Y


def test_subset_rescoring_equals_sklearn_and_engine(synthetic):
    _, paths, _ = synthetic
    ds = build_dataset(paths, "experimental", "AtoB")
    rows = np.arange(len(ds))
    X, Y = _layers(ds, rows)
    train, test = fixed_size_split(ds.groups, 200, 0, 0.25)
    rng = np.random.default_rng(0)
    subsets = [np.sort(rng.choice(test, 20, replace=False)), np.sort(test[:35]), test]
    grids = subset_r2_grids(lambda a: X[:, a], lambda b: Y[:, b], X.shape[1], Y.shape[1], [(train, test)], subsets)
    assert grids.shape == (3, X.shape[1], Y.shape[1])
    for s, sub in enumerate(subsets):
        engine = layer_pair_r2_streamed(LayerStreams.of_arrays(X, Y), train, sub)
        np.testing.assert_allclose(grids[s], engine, atol=1e-9)
        for a in range(X.shape[1]):
            for b in range(Y.shape[1]):
                fit = Ridge(alpha=0.1).fit(X[train, a], Y[train, b])
                assert grids[s, a, b] == pytest.approx(r2_score(Y[sub, b], fit.predict(X[sub, a])), abs=1e-9)


def test_crossfit_pools_out_of_fold_predictions(synthetic):
    _, paths, _ = synthetic
    ds = build_dataset(paths, "experimental", "BtoA")
    X, Y = _layers(ds, np.arange(len(ds)))
    folds = group_kfold(ds.groups, 4, seed=1)
    rng = np.random.default_rng(5)
    subsets = [np.sort(rng.choice(len(ds), 40, replace=False)) for _ in range(2)]
    grids = subset_r2_grids(lambda a: X[:, a], lambda b: Y[:, b], X.shape[1], Y.shape[1], folds, subsets, alpha=0.5)
    for a in range(X.shape[1]):
        for b in range(Y.shape[1]):
            pred = np.empty_like(Y[:, b])
            for train, test in folds:
                pred[test] = Ridge(alpha=0.5).fit(X[train, a], Y[train, b]).predict(X[test, a])
            for s, sub in enumerate(subsets):
                assert grids[s, a, b] == pytest.approx(r2_score(Y[sub, b], pred[sub]), abs=1e-9)


def test_group_kfold_partitions_tasks():
    groups = np.repeat(np.arange(23), np.arange(1, 24) % 5 + 1)
    folds = group_kfold(groups, 5, seed=3)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests) == list(range(len(groups)))  # every sample predicted exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])  # no task on both sides
        assert len(train) + len(test) == len(groups)
    with pytest.raises(ValueError, match="k <= number of tasks"):
        group_kfold(groups, 30, seed=0)


def test_paper_mode_records_missing_categories(synthetic):
    _, paths, tasks = synthetic
    table = relationship_table(paths, tasks, "sa__sb", directions=["AtoB"], mode="paper",
                               split=Split(150, 0.2, [0, 1, 2, 3]), rel=Relationships(subsample_seeds=2, min_samples=5))
    assert list(table.columns) == list(RELATIONSHIP_COLUMNS)
    # family_member tasks come from an excluded source: never a category
    assert set(table.relationship_name) == {"stranger", "acquaintance", "friend", "romantic_relationship"}
    assert len(table) == 4 * 2 * 4
    ds = build_dataset(paths, "experimental", "AtoB")
    keep = tasks.set_index("task_id").loc[ds.pairs.task_id, "relationship"].to_numpy() != 5
    groups = ds.groups[keep]
    rel = tasks.set_index("task_id").loc[groups, "relationship"].to_numpy()
    saw_missing = False
    for seed, grp in table.groupby("split_seed"):
        _, test = fixed_size_split(groups, 150, seed, 0.2)
        counts = {c: int((rel[test] == c).sum()) for c in (0, 2, 3, 4)}
        ok_counts = [v for v in counts.values() if v >= 5]
        for row in grp.itertuples():
            assert row.n_available == counts[row.relationship]
            if counts[row.relationship] == 0:
                saw_missing = True
                assert row.status == "missing" and row.n_test == 0 and np.isnan(row.syncr2)
            elif counts[row.relationship] < 5:
                assert row.status == "too_few" and np.isnan(row.syncr2)
            else:
                assert row.status == "ok" and row.n_test == min(ok_counts) and np.isfinite(row.syncr2)
    assert saw_missing, "the planted 3 stranger tasks should be absent from some test set"


def test_paper_mode_scores_match_engine_on_the_smallest_category(synthetic):
    _, paths, tasks = synthetic
    table = relationship_table(paths, tasks, "sa__sb", directions=["BtoA"], mode="paper", split=Split(150, 0.2, [0]),
                               rel=Relationships(subsample_seeds=1, min_samples=5))
    ok = table[table.status == "ok"]
    smallest = ok[ok.n_available == ok.n_test].iloc[0]  # its subsample is the whole category
    ds = build_dataset(paths, "experimental", "BtoA")
    keep = np.flatnonzero(tasks.set_index("task_id").loc[ds.pairs.task_id, "relationship"].to_numpy() != 5)
    rel = tasks.set_index("task_id").loc[ds.groups[keep], "relationship"].to_numpy()
    train, test = fixed_size_split(ds.groups[keep], 150, 0, 0.2)
    sub = test[rel[test] == smallest.relationship]
    X, Y = _layers(ds, keep)
    grid = layer_pair_r2_streamed(LayerStreams.of_arrays(X, Y), train, sub)
    assert smallest.syncr2 == pytest.approx(sync_r2(grid).value, abs=1e-9)
    assert smallest.syncr2_unclipped == pytest.approx(sync_r2(grid, clip=False).value, abs=1e-9)


def test_crossfit_counts_every_filtered_task(synthetic, tmp_path):
    _, paths, tasks = synthetic
    table = relationship_table(open_by_speaker(paths, "genuine"), tasks, "sa__sb", mode="crossfit",
                               split=Split(6500, 0.2, [0]), rel=Relationships(folds=5, subsample_seeds=3))
    assert set(table.direction) == {"AtoB", "BtoA"} and (table.status == "ok").all()
    kept = tasks[tasks.relationship != 5]
    for _, grp in table[table.subsample_seed == 0].groupby("direction"):
        counts = grp.set_index("relationship")
        assert counts.n_tasks.sum() == len(kept)
        assert dict(counts.n_tasks) == kept.relationship.value_counts().to_dict()
        assert (grp.n_test == grp.n_available.min()).all()
    out = run_relationships({"sa__sb": paths}, _write(tasks, tmp_path), tmp_path / "rel.parquet",
                            mode="crossfit", split=Split(6500, 0.2, [0]), rel=Relationships(subsample_seeds=3))
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)


def _write(tasks, tmp_path):
    tasks.to_parquet(tmp_path / "tasks.parquet")
    return tmp_path / "tasks.parquet"


def test_unknown_tasks_and_empty_sources_are_errors(synthetic):
    _, paths, tasks = synthetic
    with pytest.raises(ValueError, match="not in the task table"):
        relationship_table(paths, tasks[tasks.task_id != 7], "sa__sb", directions=["AtoB"])
    with pytest.raises(ValueError, match="no samples from tasks of sources"):
        relationship_table(paths, tasks, "sa__sb", directions=["AtoB"], rel=Relationships(sources=["sotopia_custom"]))


def test_constant_target_dims_follow_sklearn():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 1, 5))
    Y = rng.normal(size=(60, 1, 4))
    Y[:, 0, 1] = 3.7  # constant everywhere: predicted exactly -> 1
    Y[:30, 0, 2] = rng.normal(size=30)  # varies in train, constant on the test subset -> 0
    Y[30:, 0, 2] = -1.5
    train, test = np.arange(30), np.arange(30, 60)
    subsets = [test[:12], test]
    grids = subset_r2_grids(lambda a: X[:, a], lambda b: Y[:, b], 1, 1, [(train, test)], subsets)
    fit = Ridge(alpha=0.1).fit(X[train, 0], Y[train, 0])
    for s, sub in enumerate(subsets):
        engine = layer_pair_r2_streamed(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], 1, 1), train, sub)
        assert grids[s, 0, 0] == pytest.approx(engine[0, 0], abs=1e-12)
        # sklearn's rule for a constant dim (1 if predicted exactly, else 0), free of its rounding:
        # the mean of 12 copies of 3.7 is not exactly 3.7, so r2_score itself can give -15 there
        raw = r2_score(Y[sub, 0], fit.predict(X[sub, 0]), multioutput="raw_values")
        assert grids[s, 0, 0] == pytest.approx((raw[0] + 1.0 + 0.0 + raw[3]) / 4, abs=1e-9)
