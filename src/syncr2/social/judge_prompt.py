"""The Sotopia-eval judge's prompt, in two styles, and the JSON schema of its reply.

Style ``authors`` (docs/analyses.md, "Prompt styles") rebuilds the authors' judge prompt
byte for byte: system "You are a helpful assistant."; user = the unmasked
intro (``judge_intro_authors`` of the task table) + the dialogue lines
"Turn {t}: {Full Name} said:{utterance}" joined by "\\n" + a fixed schema text,
with nothing between the three parts. The schema text is old Sotopia's
"Please following the format:" line followed by LangChain's
``PydanticOutputParser`` format instructions for a pydantic-v1
``EnvResponse`` (``agent_1_evaluation`` / ``agent_2_evaluation``, each an
``EvaluationBySocialDimensions``), all newlines removed. We rebuild it from
sotopia 0.1.5's ``SotopiaDimensions`` descriptions and pin its sha256, so
LangChain and pydantic v1 are not needed.

Style ``sotopia`` follows sotopia 0.1.5's ``EpisodeLLMEvaluator``: its
history (the environment's context, then "Turn #n" and
``{name} said: "{utterance}"`` per turn), its template and its format
instructions (``json.dumps`` of
``EvaluationForAgents[SotopiaDimensions].model_json_schema()``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import pandas as pd

from ..core.config import canonical_json

STYLES = ("authors", "sotopia")

# The authors' order, which is also the field order of sotopia's SotopiaDimensions
# (checked against sotopia in :func:`sotopia_dimension_descriptions`). Written out
# so that parsing and aggregation do not have to import sotopia (seconds).
DIMENSIONS: tuple[str, ...] = (
    "believability", "relationship", "knowledge", "secret", "social_rules",
    "financial_and_material_benefits", "goal",
)

# Sotopia's validators (zero_to_ten, minus_five_to_five, minus_ten_to_zero); they are
# not in its JSON schema. A test probes sotopia's own validators against this table.
RANGES: dict[str, tuple[int, int]] = {
    "believability": (0, 10),
    "relationship": (-5, 5),
    "knowledge": (0, 10),
    "secret": (-10, 0),
    "social_rules": (-10, 0),
    "financial_and_material_benefits": (-5, 5),
    "goal": (0, 10),
}

# What the authors' schema text must be (docs/analyses.md, "Prompt styles").
AUTHORS_SCHEMA_LENGTH = 6393
AUTHORS_SCHEMA_SHA256 = "adff65c2799e92d5f31ee1045b124d0b720822d696d50710807930468d79b67e"

# Old Sotopia's evaluator template lines, as the authors' schema file starts (their
# newlines removed, so the two sentences are glued).
AUTHORS_SCHEMA_PREFIX = (
    "Based on previous interactions, evaluate how well participants achieve their goals."
    "Please following the format:"
)

# LangChain's PYDANTIC_FORMAT_INSTRUCTIONS (the version old Sotopia used); {schema} is the
# model's JSON schema without its top-level "title" and "type".
LANGCHAIN_PYDANTIC_FORMAT_INSTRUCTIONS = (
    "The output should be formatted as a JSON instance that conforms to the JSON schema below.\n"
    "\n"
    'As an example, for the schema {"properties": {"foo": {"title": "Foo", "description": '
    '"a list of strings", "type": "array", "items": {"type": "string"}}}, "required": ["foo"]}\n'
    'the object {"foo": ["bar", "baz"]} is a well-formatted instance of the schema. '
    'The object {"properties": {"foo": ["bar", "baz"]}} is not well-formatted.\n'
    "\n"
    "Here is the output schema:\n"
    "```\n"
    "{schema}\n"
    "```"
)

# The names in the authors' pydantic-v1 models (sotopia_utils/utils.py).
_AUTHORS_DIM_MODEL = "EvaluationBySocialDimensions"
_AUTHORS_AGENT_KEYS = ("agent_1_evaluation", "agent_2_evaluation")
_SOTOPIA_AGENT_KEYS = ("agent_1", "agent_2")

# sotopia 0.1.5's EpisodeLLMEvaluator template after its format_docstring.
SOTOPIA_TEMPLATE = (
    "{history}\n"
    "Based on previous interactions, evaluate how well participants achieve their goals.\n"
    "{agent_instruction}\n"
    "Please follow the format:\n"
    "{format_instructions}"
)


def _check_style(style: str) -> None:
    """Raise a ValueError naming the allowed styles."""
    if style not in STYLES:
        raise ValueError(f"judge prompt style must be one of {', '.join(STYLES)}; got {style!r}")


def agent_keys(style: str) -> tuple[str, str]:
    """The keys of agent 1's and agent 2's evaluations in a reply of ``style``."""
    _check_style(style)
    return _AUTHORS_AGENT_KEYS if style == "authors" else _SOTOPIA_AGENT_KEYS


def _sotopia_eval_models() -> tuple[Any, Any]:
    """sotopia's ``SotopiaDimensions`` and ``EvaluationForAgents``, imported offline."""
    from ..simulation.sotopia_api import sotopia_modules

    sotopia_modules()  # sets the local storage backend before sotopia.database is imported
    from sotopia.database import SotopiaDimensions
    from sotopia.envs.evaluators import EvaluationForAgents

    return SotopiaDimensions, EvaluationForAgents


@cache
def sotopia_dimension_descriptions() -> dict[str, str]:
    """Each dimension's description in sotopia's ``SotopiaDimensions``, in its field order.

    Raises if sotopia's dimensions are not :data:`DIMENSIONS` in that order
    (another sotopia version would silently change the prompts).
    """
    dims_model, _ = _sotopia_eval_models()
    fields = dims_model.model_fields
    if tuple(fields) != DIMENSIONS:
        raise RuntimeError(f"sotopia's SotopiaDimensions fields are {tuple(fields)}, expected {DIMENSIONS}")
    return {name: str(field.description) for name, field in fields.items()}


def _v1_title(name: str) -> str:
    """Pydantic v1's default field title: ``alias.title().replace('_', ' ')``."""
    return name.title().replace("_", " ")


def authors_schema_dict() -> dict[str, Any]:
    """The pydantic-v1 ``EnvResponse.schema()`` of the authors, less its top-level title and type.

    Layout of pydantic 1.10: a nested model field is a bare ``$ref`` into
    ``definitions``; a ``tuple[str, int]`` field is ``{title, description,
    type: array, minItems, maxItems, items: [..]}``.
    """
    descriptions = sotopia_dimension_descriptions()
    pair = [{"type": "string"}, {"type": "integer"}]
    dim_props = {
        name: {
            "title": _v1_title(name), "description": descriptions[name], "type": "array",
            "minItems": 2, "maxItems": 2, "items": [dict(p) for p in pair],
        }
        for name in DIMENSIONS
    }
    ref = {"$ref": f"#/definitions/{_AUTHORS_DIM_MODEL}"}
    return {
        "properties": {key: dict(ref) for key in _AUTHORS_AGENT_KEYS},
        "required": list(_AUTHORS_AGENT_KEYS),
        "definitions": {
            _AUTHORS_DIM_MODEL: {
                "title": _AUTHORS_DIM_MODEL, "type": "object", "properties": dim_props, "required": list(DIMENSIONS),
            }
        },
    }


@cache
def authors_schema_text() -> str:
    """The fixed schema text ending the authors' judge prompt (6,393 characters, sha256 pinned).

    Raises if the rebuilt text does not hash to :data:`AUTHORS_SCHEMA_SHA256`
    (e.g. under another sotopia version): the ``authors`` style promises the
    authors' bytes.
    """
    instructions = LANGCHAIN_PYDANTIC_FORMAT_INSTRUCTIONS.replace("{schema}", json.dumps(authors_schema_dict()))
    text = (AUTHORS_SCHEMA_PREFIX + instructions).replace("\n", "")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != AUTHORS_SCHEMA_SHA256:
        raise RuntimeError(
            f"the rebuilt authors' judge schema text has sha256 {digest} ({len(text)} characters), expected "
            f"{AUTHORS_SCHEMA_SHA256} ({AUTHORS_SCHEMA_LENGTH}); is sotopia 0.1.5 installed?"
        )
    return text


@cache
def sotopia_format_instructions() -> str:
    """sotopia 0.1.5's format instructions for ``EvaluationForAgents[SotopiaDimensions]`` (its own parser's rule)."""
    dims_model, eval_model = _sotopia_eval_models()
    return json.dumps(eval_model[dims_model].model_json_schema())


def sotopia_agent_instruction(n_agents: int = 2) -> str:
    """The agent-key instruction sotopia's evaluator adds (ends with a newline)."""
    keys = ", ".join(f'"agent_{i + 1}"' for i in range(n_agents))
    return (
        f"There are exactly {n_agents} agents. Under the 'evaluations' field, use exactly these keys: "
        f"[{keys}] (no other keys).\n"
    )


def _utterance(value: Any) -> str:
    """An utterance cell as text (a missing one is empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _episode_turns(task: Mapping[str, Any], episode: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(turn, speaker full name, utterance) of one episode, checked and in turn order."""
    missing = [c for c in ("task_id", "seed", "turn", "speaker_name", "utterance") if c not in episode.columns]
    if missing:
        raise ValueError(f"judge prompt: the episode rows lack column(s) {', '.join(missing)}")
    if episode.empty:
        return []
    keys = episode[["task_id", "seed"]].drop_duplicates()
    if len(keys) != 1:
        raise ValueError(f"judge prompt: the rows hold {len(keys)} episodes (task_id, seed); pass one")
    task_id = int(keys.iloc[0]["task_id"])
    if "task_id" in task and int(task["task_id"]) != task_id:
        raise ValueError(f"judge prompt: episode of task {task_id} but task row {task['task_id']}")
    rows = episode.sort_values("turn", kind="stable")
    turns = [int(t) for t in rows["turn"]]
    if turns != list(range(len(turns))):
        raise ValueError(f"judge prompt: task {task_id}: turns must run 0..{len(turns) - 1}, got {turns}")
    names = {task.get("agent1_name"), task.get("agent2_name")} - {None}
    out = []
    for turn, name, utterance in zip(turns, rows["speaker_name"], rows["utterance"]):
        if names and name not in names:
            raise ValueError(f"judge prompt: task {task_id} turn {turn}: speaker {name!r} is not one of {sorted(names)}")
        out.append((turn, str(name), _utterance(utterance)))
    return out


def _system(system_message: str | None) -> list[dict[str, str]]:
    """The system message, or none when it is None or empty."""
    return [{"role": "system", "content": system_message}] if system_message else []


def judge_messages(
    task: Mapping[str, Any],
    episode: pd.DataFrame,
    style: str,
    system_message: str | None = "You are a helpful assistant.",
) -> list[dict[str, str]]:
    """The OpenAI chat messages asking the judge to score one episode.

    ``task`` is one row of the task table (``judge_intro_authors`` for style
    ``authors``, ``judge_intro`` for ``sotopia``, the agent names);
    ``episode`` the rows of one (task_id, seed) of an episodes table. A None
    or empty ``system_message`` sends no system message (sotopia itself sends
    none; the authors sent "You are a helpful assistant.").
    """
    _check_style(style)
    intro_column = "judge_intro_authors" if style == "authors" else "judge_intro"
    if intro_column not in task:
        raise ValueError(f"judge prompt style {style!r} needs the task table's {intro_column!r} column (rerun the tasks rule)")
    turns = _episode_turns(task, episode)
    if style == "authors":
        dialogue = "\n".join(f"Turn {t}: {name} said:{utt}" for t, name, utt in turns)
        user = str(task[intro_column]) + dialogue + authors_schema_text()
    else:
        # sotopia's inbox: the environment's background, then per turn the environment's
        # "Turn #n" (counted from 1) and the speaker's action; the idle agent's "did nothing" is filtered.
        lines = [str(task[intro_column])]
        for t, name, utt in turns:
            lines += [f"Turn #{t + 1}", f'{name} said: "{utt}"']
        values = {
            "history": "\n".join(lines),
            "agent_instruction": sotopia_agent_instruction(2),
            "format_instructions": sotopia_format_instructions(),
        }
        # one pass, so that a "{...}" inside the dialogue is never substituted
        user = re.sub(r"\{(history|agent_instruction|format_instructions)\}", lambda m: values[m.group(1)], SOTOPIA_TEMPLATE)
    return [*_system(system_message), {"role": "user", "content": user}]


def prompt_sha256(messages: Sequence[Mapping[str, str]]) -> str:
    """sha256 hex of the messages' canonical JSON (sorted keys, no spaces, UTF-8): the judge cache key."""
    return hashlib.sha256(canonical_json([dict(m) for m in messages]).encode("utf-8")).hexdigest()


def _dimension_schema(name: str, reasoning_max_length: int | None) -> dict[str, Any]:
    """One dimension as a [reasoning, score] pair with the score's range."""
    low, high = RANGES[name]
    reasoning: dict[str, Any] = {"type": "string"}
    if reasoning_max_length is not None:
        reasoning["maxLength"] = int(reasoning_max_length)
    return {
        "type": "array",
        "prefixItems": [reasoning, {"type": "integer", "minimum": low, "maximum": high}],
        "items": False,
        "minItems": 2,
        "maxItems": 2,
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A closed JSON object with every property required."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def judge_json_schema(style: str, reasoning_max_length: int | None = 200) -> dict[str, Any]:
    """A JSON schema of a well-formed reply of ``style``, for constrained decoding.

    Every dimension is a ``[string, integer]`` pair (``prefixItems``,
    ``items: false``) with the integer's range from :data:`RANGES` and the
    reasoning string cut at ``reasoning_max_length`` characters (None: no
    limit) so that generation ends; all 7 dimensions are required and no
    other key is allowed. Style ``authors``: ``agent_1_evaluation`` /
    ``agent_2_evaluation``; ``sotopia``: ``{"evaluations": {"agent_1",
    "agent_2"}}`` (sotopia's dimensions are the same ``tuple[str, int]`` pairs).
    """
    _check_style(style)
    if reasoning_max_length is not None and int(reasoning_max_length) < 1:
        raise ValueError(f"reasoning_max_length must be >= 1 or None, got {reasoning_max_length}")
    agent = _object({name: _dimension_schema(name, reasoning_max_length) for name in DIMENSIONS})
    agents = _object({key: copy.deepcopy(agent) for key in agent_keys(style)})
    return agents if style == "authors" else _object({"evaluations": agents})
