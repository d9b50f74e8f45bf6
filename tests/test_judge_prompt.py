"""The judge prompt: the authors' schema text (hash pinned), golden prompts of real Sotopia tasks, the sotopia
style against sotopia's own evaluator, and the JSON schema for constrained decoding."""

import asyncio
import hashlib
import json
import types
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from syncr2.simulation.prompts import _bios
from syncr2.simulation.sotopia_api import sotopia_modules
from syncr2.simulation.tasks import load_sotopia_exports, tasks_frame
from syncr2.social.judge_prompt import (
    AUTHORS_SCHEMA_SHA256,
    DIMENSIONS,
    RANGES,
    authors_schema_dict,
    authors_schema_text,
    judge_json_schema,
    judge_messages,
    prompt_sha256,
)

SOTOPIA = Path(__file__).resolve().parents[2] / "shared" / "sotopia"
needs_sotopia = pytest.mark.skipif(not (SOTOPIA / "envs.json").is_file(), reason="Sotopia exports not available")

GOLDEN_INTRO_TASK0 = """\
Here is the context of this interaction:
Scenario: Conversation between two friends at a tea party
Participants: Leo Williams and Hendrick Heinz
Leo Williams's background: Leo Williams is a 37-year-old male dentist. He/him pronouns. Leo Williams often spends \
his time playing with his young daughter whom he cherishes dearly. Personality and values description: Leo Williams, \
despite being quiet, values security and care for others. He's a rational decision-maker focussing on best outcomes. \
Leo's secrets: He has a secret child from a previous relationship.
Hendrick Heinz's background: Hendrick Heinz is a 54-year-old male chef. He/him pronouns. Hendrick Heinz hosts monthly \
wine tasting nights with his peers. Personality and values description: Hendrick Heinz, though somewhat impulsive, \
values hedonism and conformity. He combines practicality with decisiveness in decision-making. Hendrick's secrets: \
Faked his culinary credentials to secure prestigious employment
Leo Williams's goal: Borrow money (Extra information: you need $3000 to support life.)
Hendrick Heinz's goal: Maintain financial stability while maintaining friendship (Extra information: you only have \
$2000 available right now. Hint: you can not lend all $2000 since you still need to maintain your financial \
stability.)"""

UTTERANCES = ["Hi Hendrick, lovely tea.", "Thanks Leo! How are you?", "Honestly, I need a favor.", "LEAVE"]


def episode_of(task, utterances, seed=0):
    names = [task["agent1_name"], task["agent2_name"]]
    return pd.DataFrame({
        "task_id": task["task_id"], "seed": seed, "turn": range(len(utterances)),
        "speaker": [1 + i % 2 for i in range(len(utterances))],
        "speaker_name": [names[i % 2] for i in range(len(utterances))], "utterance": utterances,
    })


@pytest.fixture(scope="module")
def real_tasks():
    if not (SOTOPIA / "envs.json").is_file():
        pytest.skip("Sotopia exports not available")
    return load_sotopia_exports(SOTOPIA)


@pytest.fixture(scope="module")
def frame(real_tasks):
    return tasks_frame(real_tasks).set_index("task_id", drop=False)


def test_schema_text_is_pinned():
    text = authors_schema_text()
    assert len(text) == 6393
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == AUTHORS_SCHEMA_SHA256
    assert "\n" not in text
    assert text.startswith(
        "Based on previous interactions, evaluate how well participants achieve their goals.Please following the "
        "format:The output should be formatted as a JSON instance that conforms to the JSON schema below.As an example"
    )
    assert text.endswith('"required": ' + json.dumps(list(DIMENSIONS)) + "}}}```")


def test_schema_dict_equals_pydantic_v1():
    """Our hand-built dict is what pydantic v1's .schema() gives for the authors' models."""
    v1 = pytest.importorskip("pydantic.v1")
    sotopia_modules()
    from sotopia.database import SotopiaDimensions

    fields = {n: (tuple[str, int], v1.Field(..., description=f.description)) for n, f in SotopiaDimensions.model_fields.items()}
    dims = v1.create_model("EvaluationBySocialDimensions", **fields)
    env = v1.create_model("EnvResponse", agent_1_evaluation=(dims, ...), agent_2_evaluation=(dims, ...))
    schema = env.schema()
    del schema["title"], schema["type"]  # what LangChain's parser removes
    assert json.dumps(schema) == json.dumps(authors_schema_dict())


def test_dimensions_and_ranges_are_sotopias():
    sotopia_modules()
    from pydantic import ValidationError
    from sotopia.database import SotopiaDimensions

    assert tuple(SotopiaDimensions.model_fields) == DIMENSIONS
    base = {d: ("r", RANGES[d][0]) for d in DIMENSIONS}
    for dim in DIMENSIONS:
        accepted = []
        for value in range(-12, 13):
            try:
                SotopiaDimensions.model_validate({**base, dim: ("r", value)})
                accepted.append(value)
            except ValidationError:
                pass
        assert (min(accepted), max(accepted)) == RANGES[dim] and len(accepted) == RANGES[dim][1] - RANGES[dim][0] + 1


@needs_sotopia
def test_golden_authors_prompt_task0(frame):
    task = frame.loc[0].to_dict()
    assert task["judge_intro_authors"] == GOLDEN_INTRO_TASK0
    messages = judge_messages(task, episode_of(task, UTTERANCES), "authors")
    dialogue = (
        "Turn 0: Leo Williams said:Hi Hendrick, lovely tea.\n"
        "Turn 1: Hendrick Heinz said:Thanks Leo! How are you?\n"
        "Turn 2: Leo Williams said:Honestly, I need a favor.\n"
        "Turn 3: Hendrick Heinz said:LEAVE"
    )
    assert messages == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": GOLDEN_INTRO_TASK0 + dialogue + authors_schema_text()},
    ]
    user = messages[1]["content"]
    assert "stability.)Turn 0: Leo Williams said:Hi" in user  # no separator after the intro, no space after said:
    assert "said:LEAVEBased on previous interactions" in user  # the LEAVE turn, then the schema, no open line
    # the rows may come in any order; the prompt follows the turns
    shuffled = episode_of(task, UTTERANCES).sample(frac=1, random_state=3)
    assert judge_messages(task, shuffled, "authors") == messages


@needs_sotopia
def test_authors_intro_mutual_friends_and_trailing_newlines(frame, real_tasks):
    row = frame.loc[16].to_dict()
    assert row["source"] == "mutual_friends"
    intro = row["judge_intro_authors"]
    assert intro.startswith("Here is the context of this interaction:\nScenario: 2 strangers are meeting at a party. "
                            "They have 1 common friends: Micheline.\n")
    assert intro.endswith("School: University of Akron  \n")  # the goal's cleaned </extra_info>: "  \n"
    assert "\nRobert: Hobby: Water sports" in intro  # format_docstring removed the leading spaces of the lines
    user = judge_messages(row, episode_of(row, ["Hello", "Hi"]), "authors")[1]["content"]
    assert "University of Akron  \nTurn 0: Giselle Rousseau said:Hello\nTurn 1: Zane Bennett said:Hi" in user
    # every mutual_friends intro ends in spaces and a newline, no other intro ends in whitespace
    for t in real_tasks:
        text = frame.loc[t.task_id, "judge_intro_authors"]
        if t.source == "mutual_friends":
            assert text.endswith(" \n"), t.task_id
        else:
            assert text == text.rstrip(), t.task_id
        assert "<" not in text and ">" not in text
        assert t.agents[0].secret in text and t.agents[1].secret in text


@needs_sotopia
def test_sotopia_style_equals_sotopias_own_evaluator(frame, real_tasks, monkeypatch):
    """sotopia 0.1.5's EpisodeLLMEvaluator, its completion call captured, gets the same prompt."""
    sot = sotopia_modules()
    from sotopia.database import SotopiaDimensions
    from sotopia.envs.evaluators import EpisodeLLMEvaluator, EvaluationForAgents
    from sotopia.generation_utils import generate
    from sotopia.messages import AgentAction, SimpleMessage

    captured = []

    async def fake_completion(**kwargs):
        captured.append(kwargs["messages"])
        reply = types.SimpleNamespace(message=types.SimpleNamespace(content="{}"))
        return types.SimpleNamespace(choices=[reply])

    monkeypatch.setattr(generate, "acompletion", fake_completion)
    utterances = ["Hi there, {history} is a word.", 'She said "hi".', "LEAVE"]
    for task_id in (0, 16):
        t = real_tasks[task_id]
        task = frame.loc[task_id].to_dict()
        background = sot.ScriptBackground(  # as ParallelSotopiaEnv.reset builds it
            scenario=sot.render_text_for_environment(t.scenario), agent_names=list(t.agent_names),
            agent_backgrounds=[sot.render_text_for_environment(b) for b in _bios(t)],
            agent_goals=[sot.render_text_for_environment(f"<root viewer='agent_{i}'>{g}</root>")
                         for i, g in enumerate(t.agent_goals)],
        )
        inbox = [("Environment", background)]
        for turn, utterance in enumerate(utterances):
            inbox.append(("Environment", SimpleMessage(message=f"Turn #{turn + 1}")))
            for agent, name in enumerate(t.agent_names):
                speaks = agent == turn % 2
                inbox.append((name, AgentAction(action_type="speak" if speaks else "none",
                                                argument=utterance if speaks else "")))
        evaluator = EpisodeLLMEvaluator("custom/judge@http://127.0.0.1:9/v1", EvaluationForAgents[SotopiaDimensions])
        captured.clear()
        asyncio.run(evaluator.__acall__(turn_number=len(utterances), messages=inbox))
        ours = judge_messages(task, episode_of(task, utterances), "sotopia", system_message=None)
        assert captured[0] == ours
        with_system = judge_messages(task, episode_of(task, utterances), "sotopia")
        assert with_system[0] == {"role": "system", "content": "You are a helpful assistant."}
        assert with_system[1:] == ours
    content = ours[0]["content"]
    assert "\nTurn #1\nGiselle Rousseau said: \"Hi there, {history} is a word.\"\nTurn #2\n" in content
    assert "(no other keys).\n\nPlease follow the format:\n{\"$defs\"" in content


def test_judge_messages_checks_its_input():
    task = {"task_id": 3, "agent1_name": "Ann Lee", "agent2_name": "Bo Kim", "judge_intro_authors": "Intro.",
            "judge_intro": "Context."}
    good = episode_of(task, ["a", "b"])
    with pytest.raises(ValueError, match="authors, sotopia; got 'other'"):
        judge_messages(task, good, "other")
    with pytest.raises(ValueError, match="2 episodes"):
        judge_messages(task, pd.concat([good, good.assign(seed=1)]), "authors")
    with pytest.raises(ValueError, match="turns must run 0..1"):
        judge_messages(task, good.assign(turn=[0, 2]), "authors")
    with pytest.raises(ValueError, match="episode of task 4 but task row 3"):
        judge_messages(task, good.assign(task_id=4), "authors")
    with pytest.raises(ValueError, match="speaker 'Cy Po'"):
        judge_messages(task, good.assign(speaker_name="Cy Po"), "authors")
    with pytest.raises(ValueError, match="needs the task table's 'judge_intro_authors' column"):
        judge_messages({k: v for k, v in task.items() if k != "judge_intro_authors"}, good, "authors")
    with pytest.raises(ValueError, match="lack column"):
        judge_messages(task, good.drop(columns="utterance"), "authors")
    # an empty episode: the intro straight followed by the schema; no system message on request
    empty = judge_messages(task, good.iloc[:0], "authors", system_message="")
    assert empty == [{"role": "user", "content": "Intro." + authors_schema_text()}]


def test_prompt_sha256():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Ü"}]
    expected = hashlib.sha256('[{"content":"S","role":"system"},{"content":"Ü","role":"user"}]'.encode()).hexdigest()
    assert prompt_sha256(messages) == expected
    assert prompt_sha256([{"content": "S", "role": "system"}, {"role": "user", "content": "Ü"}]) == expected
    assert prompt_sha256([messages[1], messages[0]]) != expected


def reply(style, agent1=None, agent2=None):
    good = {d: ["because", RANGES[d][0]] for d in DIMENSIONS}
    agents = [dict(good, **(agent1 or {})), dict(good, **(agent2 or {}))]
    if style == "authors":
        return {"agent_1_evaluation": agents[0], "agent_2_evaluation": agents[1]}
    return {"evaluations": {"agent_1": agents[0], "agent_2": agents[1]}}


@pytest.mark.parametrize("style", ["authors", "sotopia"])
def test_judge_json_schema(style):
    schema = judge_json_schema(style, reasoning_max_length=20)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(reply(style))
    assert validator.is_valid(reply(style, {"goal": ["x", 10]}, {"secret": ["y", -10]}))
    bad = [
        reply(style, {"goal": ["x", 11]}),
        reply(style, agent2={"relationship": ["x", -6]}),
        reply(style, {"goal": ["x", 7.5]}),
        reply(style, {"goal": ["x", 7, "extra"]}),
        reply(style, {"goal": ["x" * 21, 7]}),
        reply(style, {"goal": [3, 7]}),
        reply(style, {"overall": ["x", 3]}),
    ]
    missing = reply(style)
    agents = missing["agent_1_evaluation"] if style == "authors" else missing["evaluations"]["agent_1"]
    del agents["goal"]
    bad.append(missing)
    for instance in bad:
        assert not validator.is_valid(instance), instance
    if style == "sotopia":  # the shape is sotopia's own
        sotopia_modules()
        from sotopia.database import SotopiaDimensions
        from sotopia.envs.evaluators import EvaluationForAgents

        EvaluationForAgents[SotopiaDimensions].model_validate(reply(style))
    assert "maxLength" not in json.dumps(judge_json_schema(style, reasoning_max_length=None))
    with pytest.raises(ValueError, match="authors, sotopia"):
        judge_json_schema("nope")
