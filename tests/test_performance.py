"""Social performance: hand-built eval tables checked against an independent brute-force computation."""

import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from syncr2.social.judge_prompt import DIMENSIONS, RANGES
from syncr2.social.performance import (
    PERFORMANCE_COLUMNS,
    agent_goal,
    agent_overall,
    episode_scores,
    performance_table,
    write_performance,
)
from syncr2.social.reply_parsing import eval_frame, eval_rows, parse_reply

FAMILIES = {"M1": "Mistral", "M2": "Mistral", "L1": "Llama"}
MODEL_ORDER = ["M2", "M1", "L1"]
SEEDS, TASKS = (0, 1, 2), (0, 1, 2, 3)


def full(value_of=lambda d: RANGES[d][1]):
    return {d: value_of(d) for d in DIMENSIONS}


def test_agent_overall_policies():
    top = full()  # 10 + 5 + 10 + 0 + 0 + 5 + 10 = 40
    assert agent_overall(top, "authors") == agent_overall(top, "strict") == 40 / 7
    assert agent_goal(top, "authors") == agent_goal(top, "strict") == 10.0
    extra = {**top, "overall_score": 6}
    assert agent_overall(extra, "authors") == 46 / 7 and agent_overall(extra, "strict") == 40 / 7
    no_secret = {**top, "secret": None}
    assert agent_overall(no_secret, "authors") == 40 / 7 and agent_overall(no_secret, "strict") is None
    no_knowledge = {k: v for k, v in top.items() if k != "knowledge"}
    assert agent_overall(no_knowledge, "authors") == 30 / 7 and agent_overall(no_knowledge, "strict") is None
    for no_goal in ({**top, "goal": None}, {k: v for k, v in top.items() if k != "goal"}):
        assert agent_overall(no_goal, "authors") is None and agent_goal(no_goal, "authors") is None
    high = {**top, "goal": 12}
    assert agent_overall(high, "authors") == 42 / 7 and agent_overall(high, "strict") is None
    assert agent_goal(high, "authors") == 12.0 and agent_goal(high, "strict") is None
    assert agent_overall({**top, "goal": True}, "authors") is None  # a bool is no score
    assert agent_overall({**top, "goal": np.int64(3)}, "strict") == 33 / 7
    with pytest.raises(ValueError, match="authors, strict"):
        agent_overall(top, "mean")


def make_rows(rng):
    """Eval rows of 8 ordered pairs (M1__L1 never run), 3 seeds x 4 tasks, with every anomaly somewhere."""
    rows = []
    pairs = [(a, b) for a in MODEL_ORDER for b in MODEL_ORDER if (a, b) != ("M1", "L1")]
    anomalies = {}
    for k, (m1, m2) in enumerate(pairs):
        anomalies[(m1, m2, 0, 1)] = "unparsable"
        anomalies[(m1, m2, 1, 1)] = "no_goal_agent2"
        anomalies[(m1, m2, 2, 1)] = ["no_secret_agent1", "out_of_range", "extra_key"][k % 3]
        anomalies[(m1, m2, 1, 2)] = "extra_key"
        if k % 2:  # task 3 has no valid seed at all in every second pair
            for seed in SEEDS:
                anomalies[(m1, m2, seed, 3)] = "unparsable"
    for m1, m2 in pairs:
        for seed in SEEDS:
            for task in TASKS:
                kind = anomalies.get((m1, m2, seed, task))
                status = "invalid" if kind == "unparsable" else "valid"
                for agent in (1, 2):
                    scores = {d: int(rng.integers(RANGES[d][0], RANGES[d][1] + 1)) for d in DIMENSIONS}
                    if kind == "unparsable":
                        scores = dict.fromkeys(DIMENSIONS)
                    elif kind == "no_goal_agent2" and agent == 2:
                        scores["goal"] = None
                    elif kind == "no_secret_agent1" and agent == 1:
                        scores["secret"] = None
                    elif kind == "out_of_range" and agent == 2:
                        scores["relationship"] = 9
                    elif kind == "extra_key" and agent == 1:
                        scores["overall_score"] = int(rng.integers(0, 11))
                    for dim, score in scores.items():
                        rows.append({
                            "pair": f"{m1}__{m2}", "model1": m1, "model2": m2, "seed": seed, "task_id": task,
                            "agent": agent, "dimension": dim, "in_schema": dim in RANGES, "score": score,
                            "status": status,
                        })
    frame = pd.DataFrame(rows)
    frame["score"] = frame["score"].astype("Int64")
    return frame


def brute_force(frame, policy):
    """Per ordered pair: overall, goal, both agents' overall, n_valid, n_invalid, by plain Python loops."""
    episodes = {}
    for r in frame.to_dict("records"):
        key = (r["model1"], r["model2"], r["seed"], r["task_id"])
        ep = episodes.setdefault(key, {"status": r["status"], 1: {}, 2: {}})
        ep[r["agent"]][r["dimension"]] = None if pd.isna(r["score"]) else int(r["score"])
    per_pair = {}
    for (m1, m2, seed, task), ep in episodes.items():
        ok = ep["status"] == "valid"
        values = {}
        for agent in (1, 2):
            d = ep[agent]
            if policy == "authors":
                if d.get("goal") is None:
                    ok = False
                    continue
                values[agent] = (sum(v for v in d.values() if v is not None) / 7, d["goal"])
            else:
                if any(d.get(k) is None or not lo <= d[k] <= hi for k, (lo, hi) in RANGES.items()):
                    ok = False
                    continue
                values[agent] = (sum(d[k] for k in RANGES) / 7, d["goal"])
        entry = per_pair.setdefault((m1, m2), {"n_valid": 0, "n_invalid": 0, "tasks": {}})
        if ok:
            entry["n_valid"] += 1
            entry["tasks"].setdefault(task, []).append(values)
        else:
            entry["n_invalid"] += 1
    out = {}
    for pair, e in per_pair.items():
        per_task = [
            [statistics.mean(v[agent][i] for v in seeds) for agent in (1, 2) for i in (0, 1)]
            for seeds in e["tasks"].values()
        ]
        o1, g1, o2, g2 = (statistics.mean(t[j] for t in per_task) for j in range(4))
        out[pair] = {"overall": (o1 + o2) / 2, "goal": (g1 + g2) / 2, "overall_agent1": o1, "overall_agent2": o2,
                     "n_valid": e["n_valid"], "n_invalid": e["n_invalid"]}
    return out


@pytest.fixture(scope="module")
def frame():
    return make_rows(np.random.default_rng(7))


@pytest.mark.parametrize("policy", ["authors", "strict"])
def test_performance_table_matches_brute_force(frame, policy):
    table = performance_table(frame, FAMILIES, policy, model_order=MODEL_ORDER)
    assert list(table.columns) == list(PERFORMANCE_COLUMNS)
    expected = brute_force(frame, policy)
    ordered = table[table.level == "ordered"].set_index("pair")
    assert sorted(ordered.index) == sorted(f"{a}__{b}" for a, b in expected)
    assert list(ordered.index[:3]) == ["M2__M2", "M2__M1", "M2__L1"]  # rows follow model_order
    for (m1, m2), exp in expected.items():
        row = ordered.loc[f"{m1}__{m2}"]
        assert (row.model_a, row.model_b, row.orders) == (m1, m2, f"{m1}__{m2}")
        assert row.family == (FAMILIES[m1] if FAMILIES[m1] == FAMILIES[m2] else "Cross")
        for col in ("overall", "goal", "overall_agent1", "overall_agent2"):
            assert row[col] == pytest.approx(exp[col], abs=1e-12), (m1, m2, col)
        assert (row.n_valid, row.n_invalid) == (exp["n_valid"], exp["n_invalid"])
        assert row.n_valid + row.n_invalid == len(SEEDS) * len(TASKS)

    def mean_of(*pairs):
        return {c: statistics.mean(expected[p][c] for p in pairs) for c in ("overall", "goal")} | {
            "n_valid": sum(expected[p]["n_valid"] for p in pairs), "n_invalid": sum(expected[p]["n_invalid"] for p in pairs)}

    want_averaged = {
        "M2__M2": ("Mistral", mean_of(("M2", "M2")), "M2__M2"),
        "M2__M1": ("Mistral", mean_of(("M2", "M1"), ("M1", "M2")), "M2__M1;M1__M2"),
        "M2__L1": ("Cross", mean_of(("M2", "L1"), ("L1", "M2")), "M2__L1;L1__M2"),
        "M1__M1": ("Mistral", mean_of(("M1", "M1")), "M1__M1"),
        "M1__L1": ("Cross", mean_of(("L1", "M1")), "L1__M1"),  # M1__L1 was never run
        "L1__L1": ("Llama", mean_of(("L1", "L1")), "L1__L1"),
    }
    want_one_order = {
        "M2__M2": mean_of(("M2", "M2")) | {"orders": "M2__M2"},
        "M2__M1": mean_of(("M2", "M1")) | {"orders": "M2__M1"},  # the model earlier in model_order first
        "M2__L1": mean_of(("M2", "L1")) | {"orders": "M2__L1"},  # cross: the Mistral model first
        "M1__M1": mean_of(("M1", "M1")) | {"orders": "M1__M1"},
        "L1__L1": mean_of(("L1", "L1")) | {"orders": "L1__L1"},
    }
    averaged = table[table.level == "averaged"].set_index("pair")
    assert list(averaged.index) == list(want_averaged)
    for pair, (family, exp, orders) in want_averaged.items():
        row = averaged.loc[pair]
        assert (row.family, row.orders) == (family, orders)
        assert (row.model_a, row.model_b) == tuple(pair.split("__"))
        assert row.overall == pytest.approx(exp["overall"], abs=1e-12)
        assert row.goal == pytest.approx(exp["goal"], abs=1e-12)
        assert (row.n_valid, row.n_invalid) == (exp["n_valid"], exp["n_invalid"])
        assert math.isnan(row.overall_agent1) and math.isnan(row.overall_agent2)
    one = table[table.level == "one_order"].set_index("pair")
    assert list(one.index) == list(want_averaged)
    for pair, exp in want_one_order.items():
        row = one.loc[pair]
        assert row.orders == exp["orders"]
        assert row.overall == pytest.approx(exp["overall"], abs=1e-12)
        assert row.goal == pytest.approx(exp["goal"], abs=1e-12)
        assert (row.n_valid, row.n_invalid) == (exp["n_valid"], exp["n_invalid"])
    missing = one.loc["M1__L1"]  # its Mistral-first order was not run: explicit NaN, zero counts
    assert math.isnan(missing.overall) and math.isnan(missing.goal)
    assert (missing.n_valid, missing.n_invalid, missing.orders) == (0, 0, "")


def test_invalid_counting_and_policy_differences(frame):
    authors = performance_table(frame, FAMILIES, "authors", model_order=MODEL_ORDER)
    strict = performance_table(frame, FAMILIES, "strict", model_order=MODEL_ORDER)
    a = authors[authors.level == "ordered"].set_index("pair")
    s = strict[strict.level == "ordered"].set_index("pair")
    # in every pair: seed 0 of task 1 unparsable, seed 1 of task 1 without agent 2's goal (both policies drop them);
    # seed 2 of task 1 has a missing secret, an out-of-range score or an extra key: strict drops the first two
    pairs = [(x, y) for x in MODEL_ORDER for y in MODEL_ORDER if (x, y) != ("M1", "L1")]
    for k, (m1, m2) in enumerate(pairs):
        key = f"{m1}__{m2}"
        no_valid_task3 = 3 if k % 2 else 0
        assert a.loc[key, "n_invalid"] == 2 + no_valid_task3
        assert s.loc[key, "n_invalid"] == 2 + no_valid_task3 + (1 if k % 3 in (0, 1) else 0)
        assert a.loc[key, "n_valid"] + a.loc[key, "n_invalid"] == 12
        assert a.loc[key, "overall"] != s.loc[key, "overall"]  # the extra key (task 2) is summed by authors only


def one_episode(scores1, scores2, status="valid", seed=0, task=0, pair=("A", "B")):
    rows = []
    for agent, scores in ((1, scores1), (2, scores2)):
        for dim, score in scores.items():
            rows.append({"pair": "__".join(pair), "model1": pair[0], "model2": pair[1], "seed": seed, "task_id": task,
                         "agent": agent, "dimension": dim, "in_schema": dim in RANGES, "score": score,
                         "status": status})
    return rows


def test_authors_and_strict_on_single_episodes():
    fams = {"A": "X", "B": "X"}
    top, bottom = full(), full(lambda d: RANGES[d][0])  # 40/7 and -30/7
    cases = {
        "plain": (top, bottom, 40 / 7, -30 / 7, 40 / 7, -30 / 7),
        "extra": ({**top, "overall_score": 7}, bottom, 47 / 7, -30 / 7, 40 / 7, -30 / 7),
        "missing_secret": ({**top, "secret": None}, bottom, 40 / 7, -30 / 7, None, None),
        "out_of_range": (top, {**bottom, "goal": -3}, 40 / 7, -33 / 7, None, None),
        "missing_goal": (top, {**bottom, "goal": None}, None, None, None, None),
    }
    for name, (s1, s2, a1, a2, t1, t2) in cases.items():
        frame = pd.DataFrame(one_episode(s1, s2))
        for policy, (e1, e2) in (("authors", (a1, a2)), ("strict", (t1, t2))):
            row = performance_table(frame, fams, policy).set_index("level").loc["ordered"]
            if e1 is None:
                assert (row.n_valid, row.n_invalid) == (0, 1), (name, policy)
                assert math.isnan(row.overall), (name, policy)
            else:
                assert (row.n_valid, row.n_invalid) == (1, 0), (name, policy)
                assert row.overall_agent1 == pytest.approx(e1) and row.overall_agent2 == pytest.approx(e2)
                assert row.overall == pytest.approx((e1 + e2) / 2), (name, policy)
    # an invalid parse is dropped by both policies, whatever scores its rows hold
    frame = pd.DataFrame(one_episode(top, bottom, status="invalid"))
    for policy in ("authors", "strict"):
        assert performance_table(frame, fams, policy).n_invalid.tolist() == [1, 1, 1]


def test_seed_and_task_weighting():
    """Task means over valid seeds, then tasks weighted equally (not episodes)."""
    fams = {"A": "X", "B": "X"}
    rows = []
    # task 0: seeds with agent-1 goal 10 and 0 (mean 5); task 1: one seed with goal 8 -> goal of agent 1 = (5 + 8) / 2
    for seed, task, goal in ((0, 0, 10), (1, 0, 0), (0, 1, 8), (1, 1, None)):
        s1 = {**full(lambda d: 0 if RANGES[d][0] == 0 else RANGES[d][1]), "goal": goal}
        s2 = full(lambda d: 0 if RANGES[d][0] == 0 else RANGES[d][1])
        s2["goal"] = 4
        rows += one_episode(s1, s2, seed=seed, task=task)
    row = performance_table(pd.DataFrame(rows), fams, "authors").set_index("level").loc["ordered"]
    assert (row.n_valid, row.n_invalid) == (3, 1)
    assert row.goal == pytest.approx(((5 + 8) / 2 + 4) / 2)
    # agent 1's overall per seed: (goal + 0) / 7 with the other dims 0 (ranges 0..10 at 0, others at their top 0/5)
    others = sum(0 if RANGES[d][0] == 0 else RANGES[d][1] for d in DIMENSIONS if d != "goal")
    assert row.overall_agent1 == pytest.approx((((10 + others) / 7 + (0 + others) / 7) / 2 + (8 + others) / 7) / 2)


def test_default_model_order_and_cross_choice(frame):
    table = performance_table(frame, FAMILIES, "authors")  # sorted keys: L1 < M1 < M2
    averaged = table[table.level == "averaged"]
    assert averaged.pair.tolist() == ["L1__L1", "L1__M1", "L1__M2", "M1__M1", "M1__M2", "M2__M2"]
    one = table[table.level == "one_order"].set_index("pair")
    assert one.loc["L1__M2", "orders"] == "M2__L1"  # the Mistral model plays agent 1
    assert one.loc["M1__M2", "orders"] == "M1__M2"
    assert one.loc["L1__M1", "orders"] == ""  # M1__L1 not run
    by_llama = performance_table(frame, FAMILIES, "authors", one_order_first_family="Llama").set_index(["level", "pair"])
    assert by_llama.loc[("one_order", "L1__M2"), "orders"] == "L1__M2"
    assert by_llama.loc[("one_order", "L1__M1"), "orders"] == "L1__M1"


def test_errors(frame):
    with pytest.raises(ValueError, match="no family for model 'L1'"):
        performance_table(frame, {"M1": "Mistral", "M2": "Mistral"}, "authors")
    with pytest.raises(ValueError, match=r"not in model_order"):
        performance_table(frame, FAMILIES, "authors", model_order=["M1", "M2"])
    with pytest.raises(ValueError, match="authors, strict"):
        performance_table(frame, FAMILIES, "other")
    with pytest.raises(ValueError, match="appears more than once"):
        performance_table(pd.concat([frame, frame.iloc[:1]]), FAMILIES, "authors")
    with pytest.raises(ValueError, match="lacks column"):
        performance_table(frame.drop(columns="status"), FAMILIES, "authors")
    mixed = frame.copy()
    mixed.loc[0, "status"] = "invalid" if mixed.loc[0, "status"] == "valid" else "valid"
    with pytest.raises(ValueError, match="status"):
        performance_table(mixed, FAMILIES, "authors")


def test_from_parsed_replies_and_write(tmp_path):
    """The eval table the parser writes feeds the performance table (nullable Float64 scores included)."""
    def content(v1, v2):
        return json.dumps({"agent_1_evaluation": {d: ["r", v1(d)] for d in DIMENSIONS},
                           "agent_2_evaluation": {d: ["r", v2(d)] for d in DIMENSIONS}})

    meta = {"model1": "A", "model2": "B", "pair": "A__B", "raw_content": "", "reasoning_content": None,
            "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1, "prompt_sha256": "x",
            "backend": "b", "params_json": "{}", "style": "authors", "parse_rule": "authors", "attempts": 1}
    rows = []
    rows += eval_rows(parse_reply(content(lambda d: RANGES[d][1], lambda d: RANGES[d][0]), "stop", "authors"),
                      {**meta, "seed": 0, "task_id": 0})
    rows += eval_rows(parse_reply(None, "stop", "authors"), {**meta, "seed": 1, "task_id": 0})
    frame = eval_frame(rows)
    episodes = episode_scores(frame, "authors")
    assert episodes.valid.tolist() == [True, False]
    table = performance_table(frame, {"A": "X", "B": "X"}, "authors")
    ordered = table.set_index("level").loc["ordered"]
    assert ordered.overall == pytest.approx((40 / 7 - 30 / 7) / 2) and (ordered.n_valid, ordered.n_invalid) == (1, 1)
    path = write_performance(table, tmp_path / "summary" / "performance.parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, table)
    assert [p.name for p in path.parent.iterdir()] == ["performance.parquet"]
    with pytest.raises(ValueError, match="performance table lacks column"):
        write_performance(table.drop(columns="goal"), tmp_path / "x.parquet")


def test_float_scores_flow_into_the_authors_sum():
    """A non-integer score the authors rule kept is summed as the authors' ``d1_sum += v[1]`` did."""
    top = full()  # 40
    assert agent_overall({**top, "knowledge": 7.5}, "authors") == pytest.approx(37.5 / 7)
    assert agent_overall({**top, "knowledge": 7.5}, "strict") is None
    assert agent_overall({**top, "overall_score": np.float64(-2.5)}, "authors") == pytest.approx(37.5 / 7)
    assert agent_goal({**top, "goal": 6.5}, "authors") == 6.5 and agent_goal({**top, "goal": 6.5}, "strict") is None
    assert agent_overall({**top, "goal": float("nan")}, "authors") is None  # a NaN goal is no goal
    fams = {"A": "X", "B": "X"}
    bottom = full(lambda d: RANGES[d][0])  # -30
    for dtype in ("Float64", "float64", "object"):
        frame = pd.DataFrame(one_episode({**top, "knowledge": 7.5}, {**bottom, "overall_score": 0.25}))
        frame["score"] = frame["score"].astype(dtype)
        authors = performance_table(frame, fams, "authors").set_index("level").loc["ordered"]
        assert authors.overall_agent1 == pytest.approx(37.5 / 7) and authors.overall_agent2 == pytest.approx(-29.75 / 7)
        assert (authors.n_valid, authors.n_invalid) == (1, 0)
        strict = performance_table(frame, fams, "strict").set_index("level").loc["ordered"]
        assert (strict.n_valid, strict.n_invalid) == (0, 1)  # 7.5 is no integer
    # integral scores read the same from a legacy Int64 table and from the parser's Float64 one
    legacy = pd.DataFrame(one_episode(top, bottom))
    legacy["score"] = legacy["score"].astype("Int64")
    current = legacy.assign(score=legacy["score"].astype("Float64"))
    for policy in ("authors", "strict"):
        pd.testing.assert_frame_equal(episode_scores(legacy, policy), episode_scores(current, policy))
    # under strict, an episode the parser flagged not_integer is refused even when its value is integral (7.0)
    flagged = current.assign(flags="not_integer:agent1:goal")
    assert episode_scores(flagged, "strict").valid.tolist() == [False]
    assert episode_scores(flagged, "authors").valid.tolist() == [True]
