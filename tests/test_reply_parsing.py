"""Reply parsing: the authors' munging rule and the strict rule, every anomaly flagged, and the eval rows."""

import json

import pytest

from syncr2.social.judge_prompt import DIMENSIONS, RANGES
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
    assert authors.status == "valid"
    assert authors.flags == ("out_of_range:agent1:secret,goal", "not_integer:agent2:relationship,knowledge")
    assert authors.scores[1]["goal"] == 11 and authors.scores[1]["secret"] == 3  # kept, the authors did not check
    assert authors.scores[2]["knowledge"] is None and authors.scores[2]["relationship"] is None
    strict = parse_reply(content, "stop", "strict")
    assert strict.status == "invalid" and strict.flags == authors.flags
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
    assert authors.status == "invalid" and authors.flags == ("json_literals", "not_integer:agent1:goal")
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
    assert shape.status == "valid" and shape.flags == ("bad_shape:agent1:secret,goal",)
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
    assert str(frame.score.dtype) == "Int64" and frame.score.isna().sum() == 14
    assert frame.loc[frame.task_id == 8, "error"].unique().tolist() == ["content is null"]
    with pytest.raises(ValueError, match=r"lacks \['seed'\]"):
        eval_rows(parsed, {k: v for k, v in meta().items() if k != "seed"})
    with pytest.raises(ValueError, match=r"unknown keys \['sed'\]"):
        eval_rows(parsed, meta(sed=1))
