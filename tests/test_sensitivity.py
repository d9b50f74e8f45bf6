"""Sensitivity analyses (docs/analyses.md, "Robustness") against independent computations, and their figures."""

import collections
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from syncr2.analysis import sensitivity as sens
from syncr2.analysis.pair_scores import pair_scores
from syncr2.synchrony.datasets import persona_pair_groups
from syncr2.report import sensitivity_figures as sfig
from syncr2.synchrony.datasets import fixed_size_split
from syncr2.synchrony.r2table import write_r2_table
from syncr2.synchrony.summary import summarize_tables

SOTOPIA_COMBOS = Path("/work/shared/sotopia/env_agent_combos.json")

MODELS = ("M1", "M2", "L2", "L3")
FAMILIES = {"M1": "Mistral", "M2": "Mistral", "L2": "Llama", "L3": "Llama"}
LAYERS = {"M1": 5, "M2": 5, "L2": 6, "L3": 4}
ABBR = {"M1": "M1", "M2": "M2", "L2": "L2", "L3": "L3"}


def pair_strength(m1: str, m2: str) -> float:
    """A planted synchrony level per unordered pair (the same for both orders)."""
    rank = {m: i for i, m in enumerate(MODELS)}
    a, b = sorted((m1, m2), key=rank.get)
    return 0.2 + 0.05 * rank[a] + 0.08 * rank[b] + (0.03 if a == b else 0.0)


def fake_cube(rng: np.random.Generator, level: float, n_src: int, n_tgt: int, seeds: int = 3,
              bad_layer: float | None = None, n_bad: int = 1) -> np.ndarray:
    """An R2 grid (seeds, L_A, L_B): a ridge of good target layers around a diagonal, lower elsewhere,
    and optionally ``n_bad`` first source layers whose R2 is strongly negative and unstable over seeds."""
    a = np.arange(n_src)[:, None] / max(n_src - 1, 1)
    b = np.arange(n_tgt)[None, :] / max(n_tgt - 1, 1)
    mean = level + 0.1 * a - 0.6 * np.abs(a - b) - 0.05
    cube = mean[None] + rng.normal(0, 0.02, size=(seeds, n_src, n_tgt))
    if bad_layer is not None:
        cube[:, :n_bad, :] = bad_layer + rng.normal(0, abs(bad_layer) * 0.2, size=(seeds, min(n_bad, n_src), n_tgt))
    return cube


def write_cube(path: Path, cube: np.ndarray, pair: str, direction: str, condition: str = "experimental",
               **meta) -> Path:
    seeds, n_src, n_tgt = cube.shape
    s, a, b = np.meshgrid(np.arange(seeds), np.arange(n_src), np.arange(n_tgt), indexing="ij")
    table = pd.DataFrame({"split_seed": s.ravel().astype(np.int32), "layer_src": a.ravel().astype(np.int32),
                          "layer_tgt": b.ravel().astype(np.int32), "r2": cube.ravel(),
                          "n_train": np.int32(80), "n_test": np.int32(20)})
    m1, m2 = pair.split("__")
    src, tgt = (m1, m2) if direction == "AtoB" else (m2, m1)
    return write_r2_table(table, path, pair=pair, condition=condition, direction=direction,
                          source_model=src, target_model=tgt, **meta)


def make_tables(root: Path, models=MODELS, layers=None, scale: float = 1.0, seed: int = 0, pairs=None,
                negative: bool = True, max_bad: int = 1, **meta) -> list[Path]:
    """Experimental R2 tables of every ordered pair of ``models`` (or ``pairs``), laid out as the workflow's."""
    layers = layers or LAYERS
    rng = np.random.default_rng(seed)
    paths = []
    for m1 in models:
        for m2 in models:
            pair = f"{m1}__{m2}"
            if pairs is not None and pair not in pairs:
                continue
            for direction in ("AtoB", "BtoA"):
                src, tgt = (m1, m2) if direction == "AtoB" else (m2, m1)
                bad = -float(rng.uniform(2, 60)) if negative and rng.uniform() < 0.5 else None
                n_bad = int(rng.integers(1, max_bad + 1))
                cube = fake_cube(rng, pair_strength(m1, m2) * scale, layers[src], layers[tgt],
                                 bad_layer=bad, n_bad=n_bad)
                paths.append(write_cube(root / pair / "experimental" / f"{direction}.parquet", cube, pair,
                                        direction, **meta))
    return paths


def make_performance(models=MODELS, noise: float = 0.15, seed: int = 1) -> pd.DataFrame:
    """Performance rows (averaged and one_order) per unordered pair, related to the planted strength."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(models):
        for b in models[i:]:
            fam = FAMILIES[a] if FAMILIES[a] == FAMILIES[b] else "Cross"
            x = 1.5 + 4 * pair_strength(a, b) + rng.normal(0, noise)
            for level in ("averaged", "one_order"):
                rows.append({"level": level, "pair": f"{a}__{b}", "model_a": a, "model_b": b, "family": fam,
                             "overall": x, "goal": 2 * x, "n_valid": 10, "n_invalid": 0})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- brute-force references

def brute_sync(cube: np.ndarray, k: int, clip: bool) -> float:
    """SyncR2 by loops: per source layer the mean of the k best seed-mean R2, floored, averaged."""
    seeds, n_src, n_tgt = cube.shape
    total = 0.0
    for a in range(n_src):
        means = sorted((sum(cube[s, a, b] for s in range(seeds)) / seeds for b in range(n_tgt)), reverse=True)
        r = sum(means[: min(k, n_tgt)]) / min(k, n_tgt)
        total += max(0.0, r) if clip else r
    return total / n_src


def brute_scores(tables, performance, k: int, clip: bool) -> dict[str, tuple[float, float, str]]:
    """Per unordered pair: (performance, four-value SyncR2, family), by dictionaries and loops."""
    import pyarrow.parquet as pq

    per_order: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for path in tables:
        t = pq.read_table(path)
        meta = json.loads(t.schema.metadata[b"syncr2"])
        df = t.to_pandas()
        cube = np.zeros((df.split_seed.max() + 1, df.layer_src.max() + 1, df.layer_tgt.max() + 1))
        for row in df.itertuples():
            cube[row.split_seed, row.layer_src, row.layer_tgt] = row.r2
        m1, m2 = meta["pair"].split("__")
        per_order[tuple(sorted((m1, m2), key=MODELS.index))].append(brute_sync(cube, k, clip))
    perf = performance[performance.level == "averaged"].set_index("pair")
    out = {}
    for (a, b), values in per_order.items():
        fam = FAMILIES[a] if FAMILIES[a] == FAMILIES[b] else "Cross"
        out[f"{a}__{b}"] = (float(perf.loc[f"{a}__{b}", "overall"]), sum(values) / len(values), fam)
    return out


# ---------------------------------------------------------------- top-k

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("r2")
    return make_tables(root), make_performance()


def test_top_k_against_brute_force_and_pearsonr(demo):
    tables, perf = demo
    rows = sens.top_k_rows(tables, perf, FAMILIES, list(MODELS))
    assert list(rows.columns) == list(sens.SENSITIVITY_COLUMNS)
    assert sorted(rows.setting_value.unique()) == [1, 2, 3, 4]  # K = fewest target layers (L3: 4)
    assert set(rows.family) == {"Mistral", "Llama", "Cross", "all"}
    for k in (1, 3, 4):
        for score, clip in (("clipped", True), ("unclipped", False)):
            ref = brute_scores(tables, perf, k, clip)
            for fam in ("Mistral", "Llama", "Cross", "all"):
                pts = [v for v in ref.values() if fam in ("all", v[2])]
                x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
                want = stats.pearsonr(x, y)
                got = rows[(rows.setting == str(k)) & (rows.score == score) & (rows.family == fam)].iloc[0]
                assert got.n == len(pts)
                assert got.value == pytest.approx(y.mean(), abs=1e-12)
                assert got.r == pytest.approx(want.statistic, abs=1e-10)
                assert got.p == pytest.approx(want.pvalue, rel=1e-8)
                assert got.note == ""


def test_top_k_summary_equals_summarize_tables(demo):
    tables, _ = demo
    cubes = sens.load_r2_cubes(tables, "experimental")
    for k in (1, 2, 4):
        mine, capped = sens.top_k_summary(cubes, k)
        ref = summarize_tables(tables, top_k=k)
        ref = ref[ref.direction != "combined"].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, ref, check_dtype=False)
        assert capped == []


def test_top_k_beyond_the_smallest_model(demo):
    tables, perf = demo
    with pytest.raises(ValueError, match=r"k=5 exceeds its 4 target layers.*beyond='cap'"):
        sens.top_k_rows(tables, perf, FAMILIES, list(MODELS), ks=[5])
    rows = sens.top_k_rows(tables, perf, FAMILIES, list(MODELS), ks=[6], beyond="cap", scores=["unclipped"])
    assert "k capped at L_B" in rows.note.iloc[0] and "(L_B=4)" in rows.note.iloc[0]
    ref = brute_scores(tables, perf, 6, False)  # brute_sync caps k at the table's target layers too
    got = rows[rows.family == "all"].iloc[0]
    assert got.value == pytest.approx(np.mean([v[1] for v in ref.values()]), abs=1e-12)
    # the default k range with capping runs to the most target layers
    capped = sens.top_k_rows(tables, perf, FAMILIES, list(MODELS), beyond="cap", scores=["clipped"])
    assert capped.setting_value.max() == 6


def test_top_k_all_floored_gives_notes_not_numbers(tmp_path):
    tables = make_tables(tmp_path, scale=-1.0, negative=False)  # every R2 < 0: every clipped SyncR2 is 0
    rows = sens.top_k_rows(tables, make_performance(), FAMILIES, list(MODELS), ks=[1])
    clipped = rows[rows.score == "clipped"]
    assert clipped.r.isna().all() and clipped.note.str.contains("no variance").all()
    assert (clipped.value == 0).all()
    assert rows[rows.score == "unclipped"].r.notna().all()


# ---------------------------------------------------------------- no clipping

def test_no_clip_rows_match_sync_r2_by_hand(demo):
    tables, _ = demo
    from syncr2.synchrony.r2table import r2_cube, read_r2_table

    rows = sens.no_clip_rows(summarize_tables(tables), FAMILIES, list(MODELS))
    assert set(rows.setting) == {"clipped", "unclipped"} and (rows.setting == rows.score).all()
    for path in tables[:6]:
        table, meta = read_r2_table(path)
        cube = r2_cube(table)
        mean = cube.mean(0)
        best = mean.argmax(1)
        per_layer = mean[np.arange(len(best)), best]
        var = cube[:, np.arange(len(best)), best].var(0)
        for score, value, se in (
            ("unclipped", per_layer.mean(), math.sqrt(var.sum()) / len(best)),
            ("clipped", np.maximum(per_layer, 0).mean(), math.sqrt(var[per_layer >= 0].sum()) / len(best)),
        ):
            got = rows[(rows.score == score) & (rows.pair == meta["pair"]) & (rows.direction == meta["direction"])]
            assert len(got) == 1
            assert got.value.iloc[0] == pytest.approx(value, abs=1e-12)
            assert got.se.iloc[0] == pytest.approx(se, abs=1e-12)
    # four_way = mean of the four directional values of an unordered pair
    sub = rows[rows.score == "unclipped"]
    four = sub[(sub.direction == "four_way") & (sub.pair == "M1__L2")].value.iloc[0]
    parts = sub[sub.pair.isin(["M1__L2", "L2__M1"]) & sub.direction.isin(["AtoB", "BtoA"])].value
    assert len(parts) == 4 and four == pytest.approx(parts.mean())
    assert (sub.value <= rows[rows.score == "clipped"].value.to_numpy() + 1e-12).all()


# ---------------------------------------------------------------- sample size

def test_sample_size_keeps_insufficient_sizes_as_rows(tmp_path):
    perf = make_performance()
    tables = {}
    for size, scale in ((500, 0.6), (1000, 0.85), (2000, 1.0)):
        tables[size] = make_tables(tmp_path / str(size), scale=scale, seed=size, size=size)
    # at 2000 one ordered pair could not be filled; 7500 no pair could
    drop = "L2__L3"
    tables[2000] = [p for p in tables[2000] if f"/{drop}/" not in str(p)]
    insufficient = [(7500, "at most 6812 samples per pair"), (2000, drop, "L2__L3 has 1890 samples")]
    rows = sens.sample_size_rows(tables, perf, FAMILIES, list(MODELS), insufficient)
    assert set(rows.analysis) == {"sample_size", "sample_size_correlation"}
    assert sorted(rows.setting_value.unique()) == [500, 1000, 2000, 7500]
    big = rows[rows.setting == "7500"]
    assert big.value.isna().all() and big.r.isna().all()
    assert big.note.str.contains("at most 6812 samples").all()
    assert set(big[big.analysis == "sample_size_correlation"].family) == {"Mistral", "Llama", "Cross", "all"}
    n_pairs = len(MODELS) ** 2
    assert len(big[(big.analysis == "sample_size") & (big.direction == "AtoB")]) == 2 * n_pairs  # both scores
    mid = rows[(rows.setting == "2000") & (rows.analysis == "sample_size")]
    lost = mid[(mid.pair == drop) & (mid.direction != "four_way")]
    assert len(lost) == 2 * 3 and lost.value.isna().all() and lost.note.str.contains("1890").all()
    four = mid[(mid.direction == "four_way") & (mid.pair == "L2__L3")]
    assert len(four) == 2 and four.value.isna().all() and four.note.str.contains("insufficient").all()
    corr = rows[(rows.setting == "2000") & (rows.analysis == "sample_size_correlation") & (rows.score == "clipped")]
    llama = corr[corr.family == "Llama"].iloc[0]
    assert llama.n == 2 and "without pair(s) L2__L3" in llama.note  # 3 Llama pairs minus the unfilled one
    assert math.isnan(llama.r) and "too few pairs" in llama.note
    # the values at a filled size equal pair_scores + pearsonr on that size's summary
    summary = summarize_tables(tables[1000])
    scores = pair_scores(summary, perf, FAMILIES, list(MODELS))
    got = rows[(rows.setting == "1000") & (rows.analysis == "sample_size_correlation") & (rows.score == "clipped")]
    for fam in ("Mistral", "Cross", "all"):
        sub = scores if fam == "all" else scores[scores.family == fam]
        want = stats.pearsonr(sub.performance_averaged, sub.syncr2_four_way)
        row = got[got.family == fam].iloc[0]
        assert row.r == pytest.approx(want.statistic, abs=1e-10) and row.p == pytest.approx(want.pvalue, rel=1e-8)
    four_1000 = rows[(rows.setting == "1000") & (rows.direction == "four_way") & (rows.score == "clipped")]
    assert dict(zip(four_1000.pair, four_1000.value)) == pytest.approx(dict(zip(scores.pair, scores.syncr2_four_way)))
    # a pair missing without an entry is an error, as is a size given twice
    with pytest.raises(ValueError, match="size 2000: no 'experimental' R2 tables for pair\\(s\\) L2__L3"):
        sens.sample_size_rows(tables, perf, FAMILIES, list(MODELS), [(7500, "x")])
    with pytest.raises(ValueError, match=r"\[1000\] have R2 tables and are also listed"):
        sens.sample_size_rows(tables, perf, FAMILIES, list(MODELS), [(1000, "x"), (2000, drop, "y")])
    assert sens.tables_by_size([*tables[500], *tables[1000]]) == {500: [str(p) for p in tables[500]],
                                                                 1000: [str(p) for p in tables[1000]]}
    with pytest.raises(ValueError, match="metadata says size 500, it was given as size 999"):
        sens.sample_size_rows({999: tables[500]}, perf, FAMILIES, list(MODELS))


# ---------------------------------------------------------------- persona-disjoint split

def sotopia_tasks() -> pd.DataFrame:
    combos = json.loads(SOTOPIA_COMBOS.read_text())
    return pd.DataFrame({"task_id": np.arange(len(combos)),
                         "agent1_pk": [c["agent_ids"][0] for c in combos],
                         "agent2_pk": [c["agent_ids"][1] for c in combos]})


@pytest.mark.skipif(not SOTOPIA_COMBOS.is_file(), reason="the Sotopia task file is not here")
def test_persona_groups_on_the_real_sotopia_tasks():
    tasks = sotopia_tasks()
    assert len(tasks) == 450
    # samples: several per task, in shuffled order, as a dataset's pairs would be
    rng = np.random.default_rng(0)
    samples = pd.DataFrame({"task_id": rng.permutation(np.repeat(tasks.task_id.to_numpy(), 3))})
    groups = persona_pair_groups(samples, tasks)
    # brute force: a dict from the frozenset of the two agent ids to the tasks holding them
    by_pair: dict[frozenset, set[int]] = collections.defaultdict(set)
    for tid, a, b in zip(tasks.task_id, tasks.agent1_pk, tasks.agent2_pk):
        by_pair[frozenset((a, b))].add(int(tid))
    assert len(by_pair) == 93 and len(np.unique(groups)) == 93
    sizes = sorted(len(v) for v in by_pair.values())
    assert sizes[0] == 1 and sizes[-1] == 18  # docs/analyses.md, "Persona-disjoint split": 1-18 tasks per persona pair
    task_of = samples.task_id.to_numpy()
    for members in by_pair.values():
        got = {int(g) for g in groups[np.isin(task_of, list(members))]}
        assert len(got) == 1  # every task of a persona pair in one group ...
    for g in np.unique(groups):  # ... and one persona pair per group
        assert len({frozenset(by_pair_key) for by_pair_key in
                    [(a, b) for tid, a, b in zip(tasks.task_id, tasks.agent1_pk, tasks.agent2_pk)
                     if tid in set(task_of[groups == g])]}) == 1
    # the split keeps each persona pair on one side
    train, test = fixed_size_split(groups, 1000, 0)
    assert not set(groups[train]) & set(groups[test])


def test_persona_groups_are_unordered_and_checked():
    tasks = pd.DataFrame({"task_id": [0, 1, 2], "agent1_pk": ["a", "b", "a"], "agent2_pk": ["b", "a", "c"]})
    groups = persona_pair_groups(pd.DataFrame({"task_id": [2, 0, 1, 1]}), tasks)
    assert groups[1] == groups[2] == groups[3] and groups[0] != groups[1]
    with pytest.raises(ValueError, match=r"task_id\(s\) \[7\]"):
        persona_pair_groups(pd.DataFrame({"task_id": [0, 7]}), tasks)
    with pytest.raises(ValueError, match="lacks column\\(s\\) agent2_pk"):
        persona_pair_groups(pd.DataFrame({"task_id": [0]}), tasks.drop(columns="agent2_pk"))


def test_persona_split_rows_and_table2(tmp_path):
    pairs = ["M2__M2", "M2__L3", "L3__L3", "L2__L2"]
    original = make_tables(tmp_path / "orig", pairs=pairs, negative=False)
    disjoint = make_tables(tmp_path / "disj", pairs=pairs[:3], seed=5, negative=False)
    rows = sens.persona_split_rows(original, disjoint, FAMILIES, list(MODELS), [("L2__L2", "only 61 persona pairs")])
    orig_sum, disj_sum = summarize_tables(original), summarize_tables(disjoint)
    table = sens.table2_frame(rows).set_index("pair")
    assert list(table.index) == ["M2__M2", "M2__L3", "L2__L2", "L3__L3"]  # config model order
    for pair in pairs[:3]:
        o = orig_sum[(orig_sum.pair == pair) & (orig_sum.direction == "combined")].iloc[0]
        d = disj_sum[(disj_sum.pair == pair) & (disj_sum.direction == "combined")].iloc[0]
        assert table.loc[pair, "original"] == pytest.approx(o.syncr2)
        assert table.loc[pair, "original_se"] == pytest.approx(o.se)
        assert table.loc[pair, "disjoint"] == pytest.approx(d.syncr2)
        assert table.loc[pair, "disjoint_se"] == pytest.approx(d.se)
    assert math.isnan(table.loc["L2__L2", "disjoint"]) and "61 persona pairs" in table.loc["L2__L2", "note"]
    assert np.isfinite(table.loc["L2__L2", "original"])
    with pytest.raises(ValueError, match="L2__L2 lack persona-disjoint tables"):
        sens.persona_split_rows(original, disjoint, FAMILIES, list(MODELS))


# ---------------------------------------------------------------- the long table

def test_write_read_roundtrip_and_contract(demo, tmp_path):
    tables, perf = demo
    frame = sens.concat_sensitivity([
        sens.top_k_rows(tables, perf, FAMILIES, list(MODELS), ks=[1, 2]),
        sens.no_clip_rows(summarize_tables(tables), FAMILIES, list(MODELS)),
    ])
    path = sens.write_sensitivity(frame, tmp_path / "summary" / "sensitivity.parquet")
    back = sens.read_sensitivity(path)
    pd.testing.assert_frame_equal(back, frame)
    kinds = {c: ("f" if pd.api.types.is_float_dtype(t) else "i" if pd.api.types.is_integer_dtype(t)
                 else "s" if pd.api.types.is_string_dtype(t) else "?") for c, t in back.dtypes.items()}
    assert "".join(kinds.values()) == "ssfssssffffis"
    assert not list(tmp_path.glob("summary/.*tmp*"))
    with pytest.raises(ValueError, match="lacks column\\(s\\) note"):
        sens.write_sensitivity(frame.drop(columns="note"), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="unknown value\\(s\\) \\['topk'\\]"):
        sens.check_sensitivity(frame.assign(analysis="topk"))


# ---------------------------------------------------------------- figures and tables

def test_figures_and_tables_are_written(demo, tmp_path):
    tables, perf = demo
    size_tables = {500: make_tables(tmp_path / "s500", scale=0.7, seed=1, size=500),
                   1000: make_tables(tmp_path / "s1000", scale=0.9, seed=2, size=1000)}
    pairs = ["M2__M2", "M2__L3", "L3__L3"]
    frame = sens.concat_sensitivity([
        sens.top_k_rows(tables, perf, FAMILIES, list(MODELS)),
        sens.no_clip_rows(summarize_tables(tables), FAMILIES, list(MODELS)),
        sens.sample_size_rows(size_tables, perf, FAMILIES, list(MODELS), [(7500, "too few samples")]),
        sens.persona_split_rows(make_tables(tmp_path / "o", pairs=pairs),
                                make_tables(tmp_path / "d", pairs=pairs, seed=3), FAMILIES, list(MODELS)),
    ])
    path = sens.write_sensitivity(frame, tmp_path / "sensitivity.parquet")
    figs, tabs = tmp_path / "figures", tmp_path / "tables"
    written = sfig.make_sensitivity(path, figs, tabs, ABBR)
    names = {p.name for p in written}
    for stem in ("fig7_top_k", "fig8_no_clip", "fig9_sample_size"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert {"table2_persona_split.md", "table2_persona_split.csv", "sensitivity.csv", "sensitivity.md"} <= names
    assert all(p.stat().st_size > 0 for p in written)
    md = (tabs / "table2_persona_split.md").read_text()
    assert "| M2 & L3 | Cross |" in md and "±" in md
    summary = summarize_tables(tables)
    nonlinear = summary.assign(syncr2=summary.syncr2 * 0.9)
    t5 = sfig.table5_nonlinear(summary, nonlinear[nonlinear.pair != "M1__M1"], tabs, abbreviations=ABBR)
    assert all(p.stat().st_size > 0 for p in t5)
    wide = pd.read_csv(tabs / "table5_nonlinear.csv")
    m1m2 = wide[wide.pair == "M1__M2"].iloc[0]
    assert m1m2.nonlinear == pytest.approx(0.9 * m1m2.affine)
    assert "no nonlinear" in wide[wide.pair == "M1__M1"].note.iloc[0]
