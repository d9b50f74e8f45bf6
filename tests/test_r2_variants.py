"""R2 tables under a variant (size, persona groups, MLP map) and the workflow's sensitivity entry points.

Shards come from the planted study (real Parquet shards through build_dataset); the
oracles are scikit-learn Ridge + r2_score on the same split, brute-force SyncR2 loops
and the split's own group membership.
"""

from __future__ import annotations


import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from syncr2.analysis import sensitivity as sens
from syncr2.synchrony.r2_variants import run_r2_variant, strided_layers
from syncr2.cli import main
from syncr2.core.conditions import DatasetError
from syncr2.core.settings import MLP, Split
from syncr2.core.settings import Ridge as RidgeMap
from syncr2.social.performance import planted_performance
from syncr2.synchrony.datasets import build_dataset, fixed_size_split
from syncr2.synchrony.planted_study import PlantedStudy, write_planted_block
from syncr2.synchrony.r2table import read_r2_table, write_r2_table
from syncr2.synchrony.summary import summarize_tables

STUDY = PlantedStudy(n_turns=8, latent_dim=3, layers=3, dim=6, rho=0.6, noise=(0.3, 0.6, 1.2), passive_noise=0.8,
                     coupling={"A__B": 0.9, "B__A": 0.9, "A__A": 0.6, "B__B": 0.3})
N_TASKS = 30


def persona_tasks(n_tasks: int = N_TASKS) -> pd.DataFrame:
    """Tasks i share persona pair i // 3; every third task swaps the roles (the pair is unordered)."""
    rows = []
    for i in range(n_tasks):
        a, b = f"p{i // 3}a", f"p{i // 3}b"
        rows.append({"task_id": i, "agent1_pk": b if i % 3 == 2 else a, "agent2_pk": a if i % 3 == 2 else b})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("planted")
    out = {}
    for pair in STUDY.coupling:
        m1, m2 = pair.split("__")
        d = root / pair
        write_planted_block(STUDY, pair, m1, m2, 0, range(N_TASKS), d / "ep.parquet",
                            (d / "g1.parquet", d / "g2.parquet"), (d / "p1.parquet", d / "p2.parquet"))
        out[pair] = [str(d / "g1.parquet"), str(d / "g2.parquet")]
    return out


def sklearn_table(ds, train, test, alpha):
    """Every layer pair's test R2 by scikit-learn Ridge on the given split."""
    x = np.stack([ds.load_source(a, np.arange(len(ds))) for a in range(ds.source.n_layers)], 1)
    y = np.stack([ds.load_target(b, np.arange(len(ds))) for b in range(ds.target.n_layers)], 1)
    return np.array([[r2_score(y[test, b], Ridge(alpha=alpha).fit(x[train, a], y[train, b]).predict(x[test, a]))
                      for b in range(y.shape[1])] for a in range(x.shape[1])])


def cube_of(path) -> np.ndarray:
    table, _ = read_r2_table(path)
    return (table.sort_values(["split_seed", "layer_src", "layer_tgt"])["r2"].to_numpy()
            .reshape(table.split_seed.nunique(), table.layer_src.nunique(), table.layer_tgt.nunique()))


def test_persona_groups_split_whole_persona_pairs_and_match_sklearn(shards, tmp_path):
    tasks = persona_tasks()
    out = tmp_path / "persona.parquet"
    run_r2_variant(shards["A__B"], "experimental", "AtoB", Split(60, 0.2, [0, 1]), out, pair="A__B",
                   groups="persona", tasks=tasks, ridge=RidgeMap(0.5), progress=False)
    _, meta = read_r2_table(out)
    assert meta["groups"] == "persona" and meta["map"] == "ridge" and meta["size"] == 60
    ds = build_dataset(shards["A__B"], "experimental", "AtoB")
    persona = {t.task_id: "|".join(sorted((t.agent1_pk, t.agent2_pk))) for t in tasks.itertuples()}
    groups = np.array([persona[t] for t in ds.pairs["task_id"]])
    code_of = {g: i for i, g in enumerate(sorted(set(groups)))}
    cube = cube_of(out)
    for k, seed in enumerate([0, 1]):
        train, test = fixed_size_split(np.array([code_of[g] for g in groups]), 60, seed)
        assert not set(groups[train]) & set(groups[test])  # no persona pair on both sides
        np.testing.assert_allclose(cube[k], sklearn_table(ds, train, test, 0.5), atol=1e-6)


def test_a_size_the_data_cannot_fill_is_recorded_not_failed(shards, tmp_path):
    out = tmp_path / "big.parquet"
    with pytest.raises(DatasetError, match="not enough samples"):
        run_r2_variant(shards["A__B"], "experimental", "AtoB", Split(5000, 0.2, [0]), out, progress=False)
    assert not out.exists()
    run_r2_variant(shards["A__B"], "experimental", "AtoB", Split(5000, 0.2, [0]), out, pair="A__B",
                   insufficient_ok=True, progress=False)
    table, meta = read_r2_table(out)
    assert table.empty and "cannot fill size 5000" in meta["insufficient"] and meta["size"] == 5000
    filled, lacking = sens.table_status([out])
    assert filled == [] and lacking[0]["pair"] == "A__B" and lacking[0]["size"] == 5000
    with pytest.raises(ValueError, match="marked insufficient"):
        summarize_tables([out])


def test_mlp_layer_stride_gives_a_subset_table_that_summarizes(shards, tmp_path):
    assert strided_layers(4, 1) is None and strided_layers(4, 2) == [0, 2, 3] and strided_layers(3, 2) == [0, 2]
    out = tmp_path / "mlp.parquet"
    run_r2_variant(shards["A__B"], "experimental", "AtoB", Split(60, 0.2, [0, 1]), out, pair="A__B",
                   mlp=MLP(hidden=16, epochs=20, lr=1e-2, seed=3, layer_stride=2), progress=False)
    table, meta = read_r2_table(out)
    assert sorted(table.layer_src.unique()) == [0, 2] and sorted(table.layer_tgt.unique()) == [0, 2]
    assert meta["map"] == "mlp" and meta["hidden"] == 16 and meta["seed"] == 3 and meta["layers_src"] == [0, 2]
    summary = summarize_tables([out])
    cube = cube_of(out)
    best = cube.mean(0).argmax(1)  # brute force: best target per source layer on the split-seed mean
    per_seed = np.array([[max(cube[s, a, best[a]], 0.0) for a in range(2)] for s in range(2)])
    assert summary.syncr2.iloc[0] == pytest.approx(per_seed.mean(1).mean(), abs=1e-12)
    assert summary.layers_src.iloc[0] == 2 and summary.layers_tgt.iloc[0] == 2
    with pytest.raises(ValueError, match="MLP maps only"):
        run_r2_variant(shards["A__B"], "experimental", "AtoB", Split(60, 0.2, [0]), out, layers_tgt=[0])
    with pytest.raises(ValueError, match="not both"):
        run_r2_variant(shards["A__B"], "experimental", "AtoB", Split(60, 0.2, [0]), out,
                       mlp=MLP(layer_stride=2), layers_tgt=[0])


def test_sample_size_from_tables_drops_a_pair_missing_one_direction(shards, tmp_path):
    """At a size one direction cannot fill, the pair is insufficient as a whole; the others are scored."""
    paths = []
    for size in (40, 80):
        for pair in shards:
            for direction in ("AtoB", "BtoA"):
                out = tmp_path / str(size) / pair / f"{direction}.parquet"
                # B->A of A__A has fewer samples: make it the one that cannot fill size 80
                fill = 10_000 if (size == 80 and pair == "A__A" and direction == "BtoA") else size
                run_r2_variant(shards[pair], "experimental", direction, Split(fill, 0.2, [0, 1]), out, pair=pair,
                               insufficient_ok=True, progress=False)
                if fill != size:  # record it as the size-80 table it stands for
                    table, meta = read_r2_table(out)
                    write_r2_table(table, out, **{**meta, "size": size})
                paths.append(out)
    families = {"A": "F", "B": "F"}
    perf = planted_performance({("A", "B"): 3.0, ("B", "A"): 2.5, ("A", "A"): 2.0, ("B", "B"): 1.0}, families, "F",
                               ["A", "B"])
    rows = sens.sample_size_from_tables(paths, perf, families, ["A", "B"], min_n=2)
    at80 = rows[(rows.analysis == "sample_size") & (rows.setting == "80")]
    lacking = at80[at80.pair == "A__A"]
    assert len(lacking) and lacking.value.isna().all() and lacking.note.str.contains("BtoA: ").all()
    kept = at80[(at80.pair == "A__B") & (at80.direction == "AtoB") & (at80.score == "unclipped")]
    expected = summarize_tables([p for p in paths if "/80/A__B/AtoB" in str(p)])
    assert kept.value.iloc[0] == pytest.approx(expected.syncr2_unclipped.iloc[0])
    corr80 = rows[(rows.analysis == "sample_size_correlation") & (rows.setting == "80") & (rows.family == "all")]
    assert (corr80.n == 2).all() and corr80.note.str.contains("A__A").all()


def test_cli_r2_and_sensitivity_persona_split(shards, tmp_path):
    tasks_path = tmp_path / "tasks.parquet"
    persona_tasks().to_parquet(tasks_path)
    original, disjoint = [], []
    for pair in ("A__B", "B__A"):
        for direction in ("AtoB", "BtoA"):
            o, d = tmp_path / "r2" / pair / f"{direction}.parquet", tmp_path / "persona" / pair / f"{direction}.parquet"
            settings = {"pair": pair, "condition": "experimental", "direction": direction,
                        "split": {"size": 60, "test_fraction": 0.2, "split_seeds": [0, 1]}}
            common = ["r2", "--in", "genuine", *shards[pair], "--no-progress"]
            assert main([*common, "--settings", json.dumps(settings), "--out", "table", str(o)]) == 0
            persona = {**settings, "groups": "persona", "insufficient_ok": True}
            assert main([*common, "--settings", json.dumps(persona), "--in", "tasks", str(tasks_path),
                         "--out", "table", str(d)]) == 0
            original.append(str(o))
            disjoint.append(str(d))
    out = tmp_path / "persona_split.parquet"
    naming = {"families": {"A": "F", "B": "F"}, "model_order": ["A", "B"], "abbreviations": {},
              "first_family": "F"}
    statistics = {"syncr2": "clipped", "min_pairs_correlation": 3, "min_pairs_partial": 4, "abilities": {}}
    sens_settings = {"analysis": "persona_split", "naming": naming, "statistics": statistics}
    assert main(["sensitivity", "--settings", json.dumps(sens_settings), "--in", "tables", *original,
                 "--in", "disjoint", *disjoint, "--out", "table", str(out)]) == 0
    rows = sens.read_sensitivity(out)
    table2 = sens.table2_frame(rows, "unclipped", "combined").set_index("pair")
    expected = summarize_tables(disjoint).query("direction == 'combined'").set_index("pair")
    for pair in ("A__B", "B__A"):
        assert table2.loc[pair, "disjoint"] == pytest.approx(expected.loc[pair, "syncr2_unclipped"])
    lacking = {**sens_settings, "analysis": "top_k"}
    assert main(["sensitivity", "--settings", json.dumps(lacking), "--out", "table",
                 str(tmp_path / "x.parquet")]) == 2  # names what it lacks
