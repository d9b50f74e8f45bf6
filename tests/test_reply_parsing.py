"""Reply parsing: the authors' munging rule and the strict rule, every anomaly flagged, and the eval rows."""

import ast
import json
import math

import pandas as pd
import pytest

from syncr2.social.judge_prompt import DIMENSIONS, RANGES
from syncr2.social.performance import episode_scores, performance_table
from syncr2.social.reply_parsing import (
    EPISODE_META_KEYS,
    EVAL_COLUMNS,
    authors_munge,
    eval_frame,
    eval_rows,
    parse_reply,
)

# A well-formed reply: agent 1 scores the top of each range, agent 2 the bottom.
TOP = {d: [f"why {d}", RANGES[d][1]] for d in DIMENSIONS}
BOTTOM = {d: [f"why not {d}", RANGES[d][0]] for d in DIMENSIONS}


def reply(agent1=TOP, agent2=BOTTOM, style="authors"):
    if style == "authors":
        return {"agent_1_evaluation": dict(agent1), "agent_2_evaluation": dict(agent2)}
    return {"evaluations": {"agent_1": dict(agent1), "agent_2": dict(agent2)}}


def meta(**over):
    base = {
        "pair": "m1__m2", "model1": "m1", "model2": "m2", "seed": 2, "task_id": 7, "raw_content": "RAW",
        "reasoning_content": "thinking", "finish_reason": "stop", "prompt_tokens": 100, "completion_tokens": 50,
        "prompt_sha256": "abc", "backend": "openai_http", "params_json": '{"temperature": 0}', "style": "authors",
        "parse_rule": "authors", "attempts": 1,
    }
    return {**base, **over}


@pytest.mark.parametrize("rule", ["authors", "strict"])
def test_valid_reply_with_code_fence(rule):
    content = "```json\n" + json.dumps(reply(), indent=2) + "\n```"
    parsed = parse_reply(content, "stop", rule)
    assert parsed.status == "valid" and parsed.flags == () and parsed.error == ""
    assert parsed.scores[1] == {d: RANGES[d][1] for d in DIMENSIONS}
    assert parsed.scores[2] == {d: RANGES[d][0] for d in DIMENSIONS}
    assert parsed.reasoning[1]["goal"] == "why goal" and parsed.reasoning[2]["secret"] == "why not secret"


@pytest.mark.parametrize("style", ["authors", "sotopia"])
def test_styles_read_their_own_shape(style):
    content = json.dumps(reply(style=style))
    for rule in ("authors", "strict"):
        assert parse_reply(content, "stop", rule, style).status == "valid"
    other = "sotopia" if style == "authors" else "authors"
    wrong = parse_reply(content, "stop", "authors", other)
    assert wrong.status == "invalid" and "missing_agent:agent1" in wrong.flags and "missing_agent:agent2" in wrong.flags


@pytest.mark.parametrize("rule", ["authors", "strict"])
def test_null_content(rule):
    parsed = parse_reply(None, "stop", rule)
    assert parsed.status == "invalid" and parsed.flags == ("null_content",) and parsed.error == "content is null"
    assert parsed.scores == {1: dict.fromkeys(DIMENSIONS), 2: dict.fromkeys(DIMENSIONS)}
    rows = eval_rows(parsed, meta(raw_content=None))
    assert len(rows) == 14 and all(r["score"] is None and r["status"] == "invalid" for r in rows)
    assert all(r["flags"] == "null_content" for r in rows)
    empty = parse_reply("  \n", "stop", rule)
    assert empty.status == "invalid" and empty.flags == ("empty_content",)


@pytest.mark.parametrize("rule", ["authors", "strict"])
def test_truncated_reply(rule):
    content = json.dumps(reply())[:-40]
    parsed = parse_reply(content, "length", rule)
    assert parsed.status == "invalid" and parsed.flags == ("truncated", "unparsable")
    assert parsed.error.startswith("json: ")
    # a complete reply that hit the limit anyway is flagged but counts
    whole = parse_reply(json.dumps(reply()), "length", rule)
    assert whole.status == "valid" and whole.flags == ("truncated",)


def test_missing_dimension():
    agent2 = {k: v for k, v in BOTTOM.items() if k not in ("goal", "secret")}
    content = json.dumps(reply(agent2=agent2))
    authors = parse_reply(content, "stop", "authors")
    assert authors.status == "valid" and authors.flags == ("missing_dims:agent2:secret,goal",)
    assert authors.scores[2]["goal"] is None and authors.scores[2]["secret"] is None
    assert authors.scores[2]["knowledge"] == 0
    strict = parse_reply(content, "stop", "strict")
    assert strict.status == "invalid" and strict.flags == authors.flags
    assert "agent2.secret: Field required" in strict.error and "agent2.goal: Field required" in strict.error


def test_out_of_range_and_not_integer():
    content = json.dumps(reply({**TOP, "goal": ["x", 11], "secret": ["y", 3]}, {**BOTTOM, "knowledge": ["z", "7"],
                                                                                  "relationship": ["w", 2.5]}))
    authors = parse_reply(content, "stop", "authors")
    # the string "7" would raise in the authors' sum (the task-seed dropped); the float 2.5 they summed
    assert authors.status == "invalid" and "agent2:knowledge" in authors.error
    assert authors.flags == ("out_of_range:agent1:secret,goal", "not_integer:agent2:relationship,knowledge",
                             "unscorable:agent2:knowledge")
    assert authors.scores[1]["goal"] == 11 and authors.scores[1]["secret"] == 3  # kept, the authors did not check
    assert authors.scores[2]["knowledge"] is None and authors.scores[2]["relationship"] == 2.5
    strict = parse_reply(content, "stop", "strict")
    assert strict.status == "invalid" and strict.flags == authors.flags[:-1]
    assert strict.scores[2]["relationship"] is None
    for where in ("agent1.goal.1", "agent1.secret.1", "agent2.knowledge.1", "agent2.relationship.1"):
        assert where in strict.error
    # a JSON true is not an integer either (and the authors' eval failed on it)
    boolean = parse_reply(json.dumps(reply(agent2={**BOTTOM, "goal": ["w", True]})), "stop", "authors")
    assert boolean.flags == ("json_literals", "not_integer:agent2:goal") and boolean.status == "invalid"


def test_extra_keys_are_kept_and_flagged():
    content = json.dumps({**reply({**TOP, "overall_score": ["sum", 9]}), "comment": "nice"})
    for rule in ("authors", "strict"):
        parsed = parse_reply(content, "stop", rule)
        assert parsed.status == "valid"
        assert parsed.flags == ("extra_keys:top:comment", "extra_keys:agent1:overall_score")
        assert list(parsed.scores[1]) == [*DIMENSIONS, "overall_score"] and parsed.scores[1]["overall_score"] == 9
    rows = eval_rows(parsed, meta())
    assert len(rows) == 15
    extra = [r for r in rows if not r["in_schema"]]
    assert [(r["agent"], r["dimension"], r["score"], r["reasoning"]) for r in extra] == [(1, "overall_score", 9, "sum")]


def test_authors_munging_repairs_what_strict_refuses():
    good = json.dumps(reply())
    # a doubled closing bracket before a closing brace: the authors' ']]}' -> ']}'
    doubled = good.replace(f'"why goal", {RANGES["goal"][1]}]}}', f'"why goal", {RANGES["goal"][1]}]]}}')
    assert doubled != good
    assert parse_reply(doubled, "stop", "authors").status == "valid"
    assert parse_reply(doubled, "stop", "strict").flags == ("unparsable",)
    # raw newlines inside strings (invalid JSON) are removed by the munging
    newline = good.replace("why goal", "why\ngoal")
    parsed = parse_reply(newline, "stop", "authors")
    assert parsed.status == "valid" and parsed.reasoning[1]["goal"] == "whygoal"
    assert parse_reply(newline, "stop", "strict").status == "invalid"
    # double spaces vanish from the reasoning too (their replace('  ', ''))
    assert parse_reply(good.replace("why goal", "why  goal"), "stop", "authors").reasoning[1]["goal"] == "whygoal"
    assert authors_munge('```json\n["a  b", "Score": 3]]}```') == '["ab", "Score", 3]}'


def test_python_literal_and_json_literals():
    single = str(reply())  # Python repr: single quotes, not JSON
    parsed = parse_reply(single, "stop", "authors")
    assert parsed.status == "valid" and parsed.flags == ("python_literal",)
    assert parse_reply(single, "stop", "strict").flags == ("unparsable",)
    with_null = json.dumps(reply({**TOP, "goal": ["x", None]}))
    authors = parse_reply(with_null, "stop", "authors")
    assert authors.status == "invalid"
    assert authors.flags == ("json_literals", "not_integer:agent1:goal", "unscorable:agent1:goal")
    assert "eval would have failed" in authors.error
    strict = parse_reply(with_null, "stop", "strict")
    assert strict.status == "invalid" and "json_literals" in strict.flags


def test_malformed_json_and_no_eval():
    for content in ('{"agent_1_evaluation": {"goal": ["x", 5]', "The agents did well.", "__import__('os').getcwd()"):
        for rule in ("authors", "strict"):
            parsed = parse_reply(content, "stop", rule)
            assert parsed.status == "invalid" and "unparsable" in parsed.flags, (content, rule)
    listed = parse_reply("[1, 2]", "stop", "authors")
    assert listed.status == "invalid" and listed.flags == ("not_an_object",)
    shape = parse_reply(json.dumps(reply({**TOP, "goal": {"reasoning": "x", "score": 5}, "secret": [-2]})), "stop", "authors")
    assert shape.status == "invalid"  # the authors' v[1] raises on a dict and on a 1-item list
    assert shape.flags == ("bad_shape:agent1:secret,goal", "unscorable:agent1:secret,goal")
    assert shape.scores[1]["goal"] is None
    assert parse_reply(json.dumps(reply({**TOP, "goal": {"score": 5}})), "stop", "strict").status == "invalid"
    bad_agent = parse_reply(json.dumps({"agent_1_evaluation": TOP, "agent_2_evaluation": "fine"}), "stop", "authors")
    assert bad_agent.status == "invalid" and bad_agent.flags == ("bad_agent:agent2",)
    with pytest.raises(ValueError, match="authors, strict"):
        parse_reply("{}", "stop", "lenient")
    with pytest.raises(ValueError, match="authors, sotopia"):
        parse_reply("{}", "stop", "authors", "other")


def test_eval_rows_columns_and_meta():
    parsed = parse_reply(json.dumps(reply()), "stop", "strict")
    rows = eval_rows(parsed, meta(error="retried once"))
    assert len(rows) == 14 and all(list(r) == list(EVAL_COLUMNS) for r in rows)
    assert [(r["agent"], r["dimension"]) for r in rows] == [(a, d) for a in (1, 2) for d in DIMENSIONS]
    assert all(r["in_schema"] for r in rows)
    assert {k: rows[5][k] for k in EPISODE_META_KEYS} == meta()
    assert rows[0]["error"] == "retried once" and rows[0]["status"] == "valid" and rows[0]["flags"] == ""
    assert [r["score"] for r in rows] == [RANGES[d][1] for d in DIMENSIONS] + [RANGES[d][0] for d in DIMENSIONS]
    frame = eval_frame(rows + eval_rows(parse_reply(None, None, "strict"), meta(task_id=8)))
    assert list(frame.columns) == list(EVAL_COLUMNS) and len(frame) == 28
    assert str(frame.score.dtype) == "Float64" and frame.score.isna().sum() == 14
    assert frame.loc[frame.task_id == 8, "error"].unique().tolist() == ["content is null"]
    with pytest.raises(ValueError, match=r"lacks \['seed'\]"):
        eval_rows(parsed, {k: v for k, v in meta().items() if k != "seed"})
    with pytest.raises(ValueError, match=r"unknown keys \['sed'\]"):
        eval_rows(parsed, meta(sed=1))


# ---- Fidelity of the ``authors`` rule to the authors' own code (docs/analyses.md, "Parse rules" and "Aggregation") ----
# Each reply below is parsed by our parser and scored by our aggregation, and separately run through
# ``authors_oracle``, a literal re-reading of the authors' evaluate_with_oss.py (text fixes, Python
# evaluation, json.dump of the result) and utils.get_scores under get_scores_multi_seed's except clause.

# The fidelity table: agent 1 sums to 23, agent 2 to 12 when every value is well-formed.
BASE1 = {"believability": ["b1", 8], "relationship": ["r1", 2], "knowledge": ["k1", 6], "secret": ["s1", -1],
         "social_rules": ["o1", 0], "financial_and_material_benefits": ["f1", 1], "goal": ["g1", 7]}
BASE2 = {"believability": ["b2", 5], "relationship": ["r2", -1], "knowledge": ["k2", 4], "secret": ["s2", 0],
         "social_rules": ["o2", -2], "financial_and_material_benefits": ["f2", 0], "goal": ["g2", 6]}
DROP = object()


def agent(base, **changes):
    out = dict(base)
    for key, value in changes.items():
        if value is DROP:
            del out[key]
        else:
            out[key] = value
    return out


def episode(a1=None, a2=None, **top):
    return {"agent_1_evaluation": agent(BASE1, **(a1 or {})), "agent_2_evaluation": agent(BASE2, **(a2 or {})), **top}


def as_json(obj=None, **kw):
    return json.dumps(episode() if obj is None else obj, **kw)


FIDELITY_CASES = {
    "all_integers": as_json(),
    "float_knowledge": as_json(episode({"knowledge": ["k1", 7.5]})),
    "score_key_in_goal_list": as_json().replace('["g1", 7]', '["g1", "Score": 7]'),
    "score_key_in_knowledge_list": as_json().replace('["k2", 4]', '["k2", "Score": 4]'),
    "lowercase_score_key_in_list": as_json().replace('["g1", 7]', '["g1", "score": 7]'),
    "int_as_string": as_json(episode(a2={"knowledge": ["k2", "7"]})),
    "json_true": as_json(episode({"knowledge": ["k1", True]})),
    "python_true": str(episode({"knowledge": ["k1", True]})),
    "python_true_goal": str(episode(a2={"goal": ["g2", True]})),
    "json_null": as_json(episode({"knowledge": ["k1", None]})),
    "python_none": str(episode({"knowledge": ["k1", None]})),
    "nested_list": as_json(episode({"knowledge": ["k1", [7]]})),
    "negative_float": as_json(episode(a2={"financial_and_material_benefits": ["f2", -2.5]})),
    "integral_float_goal": as_json(episode({"goal": ["g1", 7.0]})),
    "float_goal": as_json(episode(a2={"goal": ["g2", 6.5]})),
    "missing_secret": as_json(episode({"secret": DROP})),
    "missing_goal": as_json(episode(a2={"goal": DROP})),
    "extra_key_int": as_json(episode({"overall_score": ["sum", 9]})),
    "extra_key_float": as_json(episode(a2={"overall_score": ["sum", 8.5]})),
    "extra_key_string_score": as_json(episode({"comment": ["x", "high"]})),
    "extra_top_level_key": as_json(episode(notes="fine")),
    "out_of_range": as_json(episode({"goal": ["g1", 15], "secret": ["s1", 3]})),
    "three_items": as_json(episode({"knowledge": ["k1", 6, "extra"]})),
    "one_item": as_json(episode({"knowledge": ["k1"]})),
    "empty_list": as_json(episode(a2={"secret": []})),
    "dict_value": as_json(episode({"knowledge": {"reasoning": "k1", "score": 6}})),
    "swapped_pair": as_json(episode({"knowledge": [6, "k1"]})),
    "bare_number": as_json(episode({"knowledge": 6})),
    "bare_string": as_json(episode({"knowledge": "k6"})),
    "reasoning_not_string": as_json(episode({"knowledge": [["k1"], 6]})),
    "code_fence": "```json\n" + as_json(indent=2) + "\n```",
    "doubled_bracket": as_json()[:-2] + "]}}",
    "nan_constant": as_json(episode({"knowledge": ["k1", float("nan")]})),
    "huge_float": as_json().replace('["k1", 6]', '["k1", 1e999]'),
    "python_tuples": str(episode({"knowledge": ("k1", 6)})),
    "python_complex": str(episode({"knowledge": ["k1", 6j]})),
    "missing_agent2": as_json({"agent_1_evaluation": BASE1}),
    "agent_is_list": as_json({"agent_1_evaluation": BASE1, "agent_2_evaluation": [["g2", 6]]}),
    "top_level_list": "[1, 2]",
    "prose_around": "Here is my evaluation: " + as_json(),
}


# Today's outcome of every reply under the strict rule (status, flags): the authors fix must not move them.
STRICT_OUTCOMES = {
    "all_integers": ("valid", ()),
    "float_knowledge": ("invalid", ("not_integer:agent1:knowledge",)),
    "score_key_in_goal_list": ("invalid", ("unparsable",)),
    "score_key_in_knowledge_list": ("invalid", ("unparsable",)),
    "lowercase_score_key_in_list": ("invalid", ("unparsable",)),
    "int_as_string": ("invalid", ("not_integer:agent2:knowledge",)),
    "json_true": ("invalid", ("json_literals", "not_integer:agent1:knowledge")),
    "python_true": ("invalid", ("unparsable",)),
    "python_true_goal": ("invalid", ("unparsable",)),
    "json_null": ("invalid", ("json_literals", "not_integer:agent1:knowledge")),
    "python_none": ("invalid", ("unparsable",)),
    "nested_list": ("invalid", ("not_integer:agent1:knowledge",)),
    "negative_float": ("invalid", ("not_integer:agent2:financial_and_material_benefits",)),
    "integral_float_goal": ("invalid", ("not_integer:agent1:goal",)),
    "float_goal": ("invalid", ("not_integer:agent2:goal",)),
    "missing_secret": ("invalid", ("missing_dims:agent1:secret",)),
    "missing_goal": ("invalid", ("missing_dims:agent2:goal",)),
    "extra_key_int": ("valid", ("extra_keys:agent1:overall_score",)),
    "extra_key_float": ("invalid", ("extra_keys:agent2:overall_score", "not_integer:agent2:overall_score")),
    "extra_key_string_score": ("invalid", ("extra_keys:agent1:comment", "not_integer:agent1:comment")),
    "extra_top_level_key": ("valid", ("extra_keys:top:notes",)),
    "out_of_range": ("invalid", ("out_of_range:agent1:secret,goal",)),
    "three_items": ("invalid", ("bad_shape:agent1:knowledge",)),
    "one_item": ("invalid", ("bad_shape:agent1:knowledge",)),
    "empty_list": ("invalid", ("bad_shape:agent2:secret",)),
    "dict_value": ("invalid", ("bad_shape:agent1:knowledge",)),
    "swapped_pair": ("invalid", ("not_integer:agent1:knowledge", "not_string:agent1:knowledge")),
    "bare_number": ("invalid", ("bad_shape:agent1:knowledge",)),
    "bare_string": ("invalid", ("bad_shape:agent1:knowledge",)),
    "reasoning_not_string": ("invalid", ("not_string:agent1:knowledge",)),
    "code_fence": ("valid", ()),
    "doubled_bracket": ("invalid", ("unparsable",)),
    "nan_constant": ("invalid", ("not_integer:agent1:knowledge",)),
    "huge_float": ("invalid", ("not_integer:agent1:knowledge",)),
    "python_tuples": ("invalid", ("unparsable",)),
    "python_complex": ("invalid", ("unparsable",)),
    "missing_agent2": ("invalid", ("missing_agent:agent2",)),
    "agent_is_list": ("invalid", ("bad_agent:agent2",)),
    "top_level_list": ("invalid", ("not_an_object",)),
    "prose_around": ("invalid", ("unparsable",)),
}


def authors_oracle(content):
    """What the authors' code made of one reply: None (task-seed dropped) or (sum1 / 7, sum2 / 7, goal1, goal2)."""
    # evaluate_with_oss.py: their text fixes, in their order, then Python evaluation of the text. On these
    # replies (literals only) Python's eval and ast.literal_eval agree; JSON true/false/null/NaN are unknown
    # names to both, so the evaluation fails and the result is stored as None.
    text = content.replace("```json\n", "")
    text = text.replace("```", "")
    text = text.replace('Score":', 'Score",').replace("\n", "").replace("  ", "").replace("]]}", "]}")
    try:
        result = ast.literal_eval(text)
    except Exception:
        result = None
    # they json.dump'ed {"result": result} and get_scores json.load'ed it (a value json cannot write: no record)
    try:
        data = json.loads(json.dumps({"result": result}))["result"]
    except (TypeError, ValueError):
        return None
    # utils.get_scores, called inside get_scores_multi_seed's
    # except (json.JSONDecodeError, KeyError, FileNotFoundError, TypeError, IndexError): the seed is skipped
    try:
        d1_sum = 0
        d1_goal = data["agent_1_evaluation"]["goal"][1]
        for k, v in data["agent_1_evaluation"].items():
            d1_sum += v[1]
        d2_sum = 0
        d2_goal = data["agent_2_evaluation"]["goal"][1]
        for k, v in data["agent_2_evaluation"].items():
            d2_sum += v[1]
    except (json.JSONDecodeError, KeyError, FileNotFoundError, TypeError, IndexError):
        return None
    return d1_sum / 7, d2_sum / 7, d1_goal, d2_goal


def ours(content, rule, task_id=0, policy=None):
    """Our parser, eval table and aggregation on one reply: the parsed reply, its eval rows and its episode row."""
    parsed = parse_reply(content, "stop", rule)
    rows = eval_rows(parsed, meta(task_id=task_id, parse_rule=rule, raw_content=content))
    episode = episode_scores(eval_frame(rows), policy or rule).iloc[0]
    return parsed, rows, episode


def _same(a, b):
    b = float(b)  # their goal may be True: np.mean counted it as 1.0
    return a == pytest.approx(b, rel=1e-12, abs=1e-12) or (math.isinf(a) and a == b)


def test_fidelity_table_is_complete():
    assert len(FIDELITY_CASES) >= 20 and set(STRICT_OUTCOMES) == set(FIDELITY_CASES)
    dropped = [name for name, content in FIDELITY_CASES.items() if authors_oracle(content) is None]
    kept = [name for name in FIDELITY_CASES if name not in dropped]
    assert len(dropped) >= 10 and len(kept) >= 10  # both outcomes are exercised


@pytest.mark.parametrize("name", list(FIDELITY_CASES))
def test_authors_rule_agrees_with_the_authors_code(name):
    content = FIDELITY_CASES[name]
    expected = authors_oracle(content)
    parsed, rows, episode = ours(content, "authors")
    if expected is None:  # their code dropped the task-seed: ours counts it invalid, never averages it in
        assert not episode.valid, (name, parsed)
        assert math.isnan(episode.overall_agent1) and math.isnan(episode.goal_agent1)
        no_goal = parsed.scores[1].get("goal") is None or parsed.scores[2].get("goal") is None
        assert parsed.status == "invalid" or no_goal, name  # a missing goal is the aggregation's to drop
        if parsed.status == "invalid":
            assert parsed.error and parsed.flags, name
    else:
        assert parsed.status == "valid" and episode.valid, (name, parsed)
        o1, o2, g1, g2 = expected
        got = (episode.overall_agent1, episode.overall_agent2, episode.goal_agent1, episode.goal_agent2)
        assert all(_same(x, y) for x, y in zip(got, (o1, o2, g1, g2))), (name, got, expected)
    # every row of the episode is in the eval table (14 + extra keys), flags and status repeated
    assert len(rows) >= 14 and {r["status"] for r in rows} == {parsed.status}


@pytest.mark.parametrize("name", list(FIDELITY_CASES))
def test_strict_rule_keeps_its_outcomes(name):
    content = FIDELITY_CASES[name]
    parsed, _, episode = ours(content, "strict")
    assert (parsed.status, parsed.flags) == STRICT_OUTCOMES[name]
    assert all(v is None or (type(v) is int) for a in (1, 2) for v in parsed.scores[a].values())
    assert bool(episode.valid) == (parsed.status == "valid")
    if parsed.status == "valid":  # the well-formed base: 23 and 12, extra keys not summed
        assert (episode.overall_agent1, episode.overall_agent2) == (pytest.approx(23 / 7), pytest.approx(12 / 7))


def test_the_two_disagreements_of_the_independent_check():
    # 1. a float score: kept under authors and summed (23 - 6 + 7.5), invalid under strict
    parsed, rows, episode = ours(FIDELITY_CASES["float_knowledge"], "authors")
    assert parsed.status == "valid" and parsed.scores[1]["knowledge"] == 7.5
    assert [r["score"] for r in rows if r["agent"] == 1 and r["dimension"] == "knowledge"] == [7.5]
    assert episode.overall_agent1 == pytest.approx(24.5 / 7)
    assert ours(FIDELITY_CASES["float_knowledge"], "strict")[0].status == "invalid"
    # 2. ["...", "Score": 8]: their 'Score":' repair makes it ["...", "Score", 8], whose v[1] their sum cannot add
    assert authors_munge('["g1", "Score": 7]') == '["g1", "Score", 7]'
    for name, where in (("score_key_in_goal_list", "agent1:goal"), ("score_key_in_knowledge_list", "agent2:knowledge")):
        parsed, _, episode = ours(FIDELITY_CASES[name], "authors")
        assert parsed.status == "invalid" and f"unscorable:{where}" in parsed.flags and where in parsed.error
        assert not episode.valid


def test_authors_policy_on_all_fidelity_cases_at_once():
    """All cases as the tasks of one pair: the pair's scores and counts against the oracle's."""
    names = [n for n in FIDELITY_CASES if n != "huge_float"]  # an infinite sum would swamp the means
    rows = []
    for task, name in enumerate(names):
        rows += eval_rows(parse_reply(FIDELITY_CASES[name], "stop", "authors"), meta(task_id=task))
    table = performance_table(eval_frame(rows), {"m1": "X", "m2": "X"}, "authors")
    row = table.set_index("level").loc["ordered"]
    kept = [e for e in (authors_oracle(FIDELITY_CASES[n]) for n in names) if e is not None]
    assert (row.n_valid, row.n_invalid) == (len(kept), len(names) - len(kept))
    o1, o2, g1, g2 = (sum(e[i] for e in kept) / len(kept) for i in range(4))
    assert row.overall_agent1 == pytest.approx(o1) and row.overall_agent2 == pytest.approx(o2)
    assert row.overall == pytest.approx((o1 + o2) / 2) and row.goal == pytest.approx((g1 + g2) / 2)


def test_authors_parse_with_strict_policy_refuses_non_integers():
    """A float (even 7.0) or bool kept by the authors rule is no integer for the strict policy."""
    for name in ("integral_float_goal", "python_true", "float_knowledge"):
        parsed, _, episode = ours(FIDELITY_CASES[name], "authors", policy="strict")
        assert parsed.status == "valid" and not episode.valid, name
    assert ours(FIDELITY_CASES["all_integers"], "authors", policy="strict")[2].valid
    frame = eval_frame(eval_rows(parse_reply(FIDELITY_CASES["integral_float_goal"], "stop", "authors"), meta()))
    assert episode_scores(frame, "authors").valid.tolist() == [True]
    assert episode_scores(frame.drop(columns="flags"), "strict").valid.tolist() == [True]  # no flags: 7.0 is 7
    assert isinstance(frame, pd.DataFrame) and str(frame.score.dtype) == "Float64"
