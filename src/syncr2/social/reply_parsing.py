"""Parsing the judge's reply into per-agent, per-dimension scores, recording every anomaly.

Two rules (docs/analyses.md, "Parse rules"). ``authors``: the authors' text munging
(code fences removed, 'Score":' -> 'Score",', newlines and double spaces
removed, ']]}' -> ']}'), then ``json.loads``, falling back to
``ast.literal_eval`` (never ``eval``). It then does what the authors' code
did with the result: they stored it with ``json.dump`` (a Python literal is
round-tripped the same way here; one that cannot be stored, e.g. a complex
number or a set, is flagged ``not_storable`` and invalid) and scored it with
their ``get_scores``, which takes ``v[1]`` of every key of both agents' dicts
and adds it to a sum starting at 0, dropping the whole task-seed when that
raises. So under ``authors`` a reply is valid when it has both agents' dicts
and every value of every key (extra keys included) is a list of at least 2
items whose second is a number: an integer, a float (kept as a float, summed
as theirs) or a Python ``True``/``False`` (counted as 1/0, as their sum did);
any other value (a string "7", None, a nested list, a dict, a bare number, a
1-item list, and the ``["...", "Score", 8]`` their 'Score":' repair makes of
``["...", "Score": 8]``) is flagged ``unscorable`` and makes the reply invalid.
A missing dimension is left to the aggregation policy (their missing key adds
0; a missing ``goal`` drops the task-seed). The authors evaluated with Python
``eval``, which rejects JSON's ``true``/``false``/``null`` and
``NaN``/``Infinity``: such a reply was missing for them, so here it is
flagged ``json_literals`` and invalid. ``strict``: the
reply (one surrounding code fence allowed) must be JSON whose agents each
hold all 7 dimensions as ``[string, integer]`` with the integer in sotopia's
range, validated by a pydantic model; extra keys are flagged, not fatal.

Both rules read every key they find and flag every anomaly; nothing is
dropped silently. Flags: ``null_content``, ``empty_content``, ``truncated``
(finish_reason "length"), ``unparsable``, ``python_literal`` (only
``ast.literal_eval`` could read it), ``json_literals``, ``not_an_object``,
``missing_agent:agent2``, ``bad_agent:agent1`` (not an object),
``extra_keys:top:k``, and per agent ``missing_dims:agent1:goal,secret``,
``extra_keys:agent1:k``, ``bad_shape:agent1:goal`` (not a 2-item list),
``not_integer:agent1:goal``, ``not_string:agent1:goal`` (reasoning),
``out_of_range:agent1:goal`` and, under ``authors`` only, ``not_storable`` and
``unscorable:agent1:goal``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from .judge_prompt import DIMENSIONS, RANGES, agent_keys

RULES = ("authors", "strict")
VALID, INVALID = "valid", "invalid"

# One row per (episode, agent, dimension) of results/eval/{pair}/seed{seed}/block{b}.parquet.
EVAL_COLUMNS = (
    "pair", "model1", "model2", "seed", "task_id", "agent", "dimension", "in_schema", "score", "reasoning",
    "status", "flags", "raw_content", "reasoning_content", "finish_reason", "prompt_tokens", "completion_tokens",
    "prompt_sha256", "backend", "params_json", "style", "parse_rule", "attempts", "error",
)
# What the runner supplies per episode (``error``, a backend error, is optional).
EPISODE_META_KEYS = (
    "pair", "model1", "model2", "seed", "task_id", "raw_content", "reasoning_content", "finish_reason",
    "prompt_tokens", "completion_tokens", "prompt_sha256", "backend", "params_json", "style", "parse_rule",
    "attempts",
)
# Scores are nullable floats: the ``authors`` rule keeps a judge's non-integer score, as the authors' sum did
# (under ``strict`` every valid score is an integer).
EVAL_DTYPES = {
    "seed": "int64", "task_id": "int64", "agent": "int64", "in_schema": "bool", "score": "Float64",
    "prompt_tokens": "Int64", "completion_tokens": "Int64", "attempts": "int64",
}


@dataclass(frozen=True)
class ParsedReply:
    """One judge reply, parsed: status, every anomaly as a flag, scores and reasoning per agent (1, 2).

    ``scores[a]`` holds all 7 dimensions (None where missing or not an
    integer; under ``authors`` a float is kept and a bool counts 1 or 0, as
    the authors' sum did) and then any extra key the reply had, in reply
    order; ``reasoning[a]`` the reasoning text of every key that had one.
    """

    status: str
    flags: tuple[str, ...] = ()
    scores: dict[int, dict[str, int | float | None]] = field(default_factory=dict)
    reasoning: dict[int, dict[str, str]] = field(default_factory=dict)
    error: str = ""

    @property
    def valid(self) -> bool:
        """Whether the reply counts (status "valid")."""
        return self.status == VALID


def _dimension_type(name: str) -> Any:
    """A [reasoning, score] pair with the score's sotopia range, strict types (no coercion)."""
    low, high = RANGES[name]
    return tuple[StrictStr, Annotated[StrictInt, Field(ge=low, le=high)]]


# The strict rule's model of one agent's evaluation: all 7 required, extra keys ignored (flagged elsewhere).
StrictAgentEvaluation: type[BaseModel] = create_model(
    "StrictAgentEvaluation",
    __config__=ConfigDict(extra="ignore"),
    **{name: (_dimension_type(name), ...) for name in DIMENSIONS},
)

_FENCE_RE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL)


def authors_munge(text: str) -> str:
    """The authors' text repairs, in their order (evaluate_with_oss.py)."""
    text = text.replace("```json\n", "").replace("```", "")
    return text.replace('Score":', 'Score",').replace("\n", "").replace("  ", "").replace("]]}", "]}")


def _strip_fence(text: str) -> str:
    """``text`` stripped, without one code fence around it."""
    text = text.strip()
    match = _FENCE_RE.match(text)
    return match.group(1).strip() if match else text


def _has_json_literal(obj: Any) -> bool:
    """Whether a json.loads result holds true/false/null anywhere (they decode to bool/None)."""
    if obj is None or isinstance(obj, bool):
        return True
    if isinstance(obj, dict):
        return any(_has_json_literal(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_json_literal(v) for v in obj)
    return False


def _decode(text: str, rule: str) -> tuple[Any, list[str], str]:
    """(object or None, flags, error) of a reply's text under ``rule``."""
    if rule == "authors":
        text = authors_munge(text)
        constants: list[str] = []  # NaN, Infinity, -Infinity: JSON reads them, Python's eval does not

        def constant(name: str) -> float:
            constants.append(name)
            return float(name)

        try:
            obj = json.loads(text, parse_constant=constant)
        except json.JSONDecodeError as json_exc:
            try:
                obj = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as lit_exc:
                return None, ["unparsable"], f"json: {json_exc}; literal_eval: {type(lit_exc).__name__}: {lit_exc}"
            try:  # the authors stored eval's result with json.dump and scored what json.load gave back
                return json.loads(json.dumps(obj)), ["python_literal"], ""
            except (TypeError, ValueError, RecursionError) as dump_exc:
                return obj, ["python_literal", "not_storable"], f"the authors' json.dump would fail: {dump_exc}"
        return obj, (["json_literals"] if constants or _has_json_literal(obj) else []), ""
    else:
        try:
            obj = json.loads(_strip_fence(text))
        except json.JSONDecodeError as exc:
            return None, ["unparsable"], f"json: {exc}"
    return obj, (["json_literals"] if _has_json_literal(obj) else []), ""


def _agent_dicts(obj: Any, style: str) -> tuple[list[Any], list[str], list[str]]:
    """Agent 1's and 2's evaluation dicts (None where absent), flags, and fatal problems."""
    flags: list[str] = []
    fatal: list[str] = []
    if not isinstance(obj, dict):
        return [None, None], ["not_an_object"], [f"the reply is a {type(obj).__name__}, not an object"]
    keys = agent_keys(style)
    container: Any = obj
    top_expected = set(keys) if style == "authors" else {"evaluations"}
    extra = [str(k) for k in obj if k not in top_expected]
    if extra:
        flags.append("extra_keys:top:" + ",".join(extra))
    if style == "sotopia":
        container = obj.get("evaluations")
        if not isinstance(container, dict):
            return [None, None], flags + ["missing_agent:agent1", "missing_agent:agent2"], ["no 'evaluations' object"]
        extra = [str(k) for k in container if k not in keys]
        if extra:
            flags.append("extra_keys:evaluations:" + ",".join(extra))
    agents: list[Any] = []
    for number, key in enumerate(keys, start=1):
        value = container.get(key)
        if key not in container:
            flags.append(f"missing_agent:agent{number}")
            fatal.append(f"no {key!r}")
            value = None
        elif not isinstance(value, dict):
            flags.append(f"bad_agent:agent{number}")
            fatal.append(f"{key!r} is a {type(value).__name__}, not an object")
            value = None
        agents.append(value)
    return agents, flags, fatal


def _authors_number(score: Any) -> int | float | None:
    """What the authors' ``sum += v[1]`` adds for ``score``: an int, a float, a bool as 1/0; None if it raises."""
    if isinstance(score, bool):
        return int(score)
    if isinstance(score, (int, float)):
        return score
    return None


def _read_agent(
    evaluation: Mapping[str, Any] | None, number: int, rule: str
) -> tuple[dict[str, int | float | None], dict[str, str], list[str], bool]:
    """Scores, reasoning, flags of one agent's dict, and whether a dimension is wrong (for strict).

    Under ``authors`` a numeric non-integer score is kept (a float as is, a
    bool as 1/0) and a key whose value the authors' ``get_scores`` could not
    add to its sum is flagged ``unscorable``; ``strict`` reads integers only.
    """
    scores: dict[str, int | float | None] = {name: None for name in DIMENSIONS}
    reasoning: dict[str, str] = {}
    if evaluation is None:
        return scores, reasoning, [], True
    problems: dict[str, list[str]] = {k: [] for k in ("missing_dims", "extra_keys", "bad_shape", "not_integer",
                                                      "not_string", "out_of_range", "unscorable")}
    problems["missing_dims"] = [name for name in DIMENSIONS if name not in evaluation]
    for raw_key, value in evaluation.items():
        key = str(raw_key)
        in_schema = key in RANGES
        if not in_schema:
            problems["extra_keys"].append(key)
        scores[key] = None
        pair = isinstance(value, (list, tuple)) and len(value) >= 2
        if not pair or len(value) != 2:
            problems["bad_shape"].append(key)
        if not pair:  # no [reasoning, score] to read (the authors' v[1] would fail too)
            if rule == "authors":
                problems["unscorable"].append(key)
            continue
        text, score = value[0], value[1]
        if isinstance(text, str):
            reasoning[key] = text
        else:
            problems["not_string"].append(key)
            reasoning[key] = json.dumps(text, ensure_ascii=False, default=str)
        if isinstance(score, int) and not isinstance(score, bool):
            scores[key] = int(score)
            if in_schema and not RANGES[key][0] <= score <= RANGES[key][1]:
                problems["out_of_range"].append(key)
        else:
            problems["not_integer"].append(key)
            if rule == "authors":
                number_added = _authors_number(score)
                if number_added is None:
                    problems["unscorable"].append(key)
                else:
                    scores[key] = number_added
                    if in_schema and not RANGES[key][0] <= number_added <= RANGES[key][1]:
                        problems["out_of_range"].append(key)
    flags = [f"{kind}:agent{number}:{','.join(keys)}" for kind, keys in problems.items() if keys]
    wrong = any(problems[k] for k in ("missing_dims", "not_integer", "not_string", "out_of_range")) or any(
        k in RANGES for k in problems["bad_shape"]
    )
    return scores, reasoning, flags, wrong


def _strict_errors(agents: list[Any]) -> list[str]:
    """The pydantic validation errors of both agents' dicts (empty when both validate)."""
    errors = []
    for number, evaluation in enumerate(agents, start=1):
        if evaluation is None:
            continue
        try:
            StrictAgentEvaluation.model_validate(evaluation)
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"])
                errors.append(f"agent{number}.{where}: {e['msg']}")
    return errors


def _empty_scores() -> dict[int, dict[str, int | float | None]]:
    return {a: {name: None for name in DIMENSIONS} for a in (1, 2)}


def parse_reply(content: str | None, finish_reason: str | None, rule: str, style: str = "authors") -> ParsedReply:
    """Parse one judge reply (``message.content``) under ``rule`` ("authors" or "strict") for a prompt ``style``."""
    if rule not in RULES:
        raise ValueError(f"parse rule must be one of {', '.join(RULES)}; got {rule!r}")
    agent_keys(style)  # validates the style
    flags = ["truncated"] if finish_reason == "length" else []
    if content is None:
        return ParsedReply(INVALID, tuple(flags + ["null_content"]), _empty_scores(), {1: {}, 2: {}}, "content is null")
    if not content.strip():
        return ParsedReply(INVALID, tuple(flags + ["empty_content"]), _empty_scores(), {1: {}, 2: {}}, "content is empty")
    obj, decode_flags, error = _decode(content, rule)
    flags += decode_flags
    if "unparsable" in decode_flags:
        return ParsedReply(INVALID, tuple(flags), _empty_scores(), {1: {}, 2: {}}, error)
    agents, shape_flags, fatal = _agent_dicts(obj, style)
    flags += shape_flags
    scores: dict[int, dict[str, int | float | None]] = {}
    reasoning: dict[int, dict[str, str]] = {}
    wrong = False
    for number, evaluation in enumerate(agents, start=1):
        scores[number], reasoning[number], agent_flags, agent_wrong = _read_agent(evaluation, number, rule)
        flags += agent_flags
        wrong = wrong or agent_wrong
    problems = list(fatal)
    if rule == "authors":
        if "json_literals" in flags:
            problems.append("JSON true/false/null/NaN/Infinity: the authors' Python eval would have failed")
        if "not_storable" in flags:
            problems.append(error)
        unscorable = [f.split(":", 1)[1] for f in flags if f.startswith("unscorable:")]
        if unscorable:
            problems.append("the authors' get_scores would raise on " + "; ".join(unscorable)
                            + " (no number at v[1]): they dropped the task-seed")
    else:
        problems += _strict_errors(agents)
        if wrong and not problems:  # the walker and pydantic disagree: never let it pass silently
            problems.append("a dimension is missing, not an integer or out of range")
    return ParsedReply(INVALID if problems else VALID, tuple(flags), scores, reasoning, "; ".join(problems))


def eval_rows(parsed: ParsedReply, episode_meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The eval-table rows of one episode: one per (agent, dimension), the 7 and then any extra key.

    ``episode_meta`` holds :data:`EPISODE_META_KEYS` (and optionally
    ``error``, joined with the parse error); its values repeat on every row.
    An invalid reply still gives its 14 rows (null scores), so it is counted.
    """
    missing = [k for k in EPISODE_META_KEYS if k not in episode_meta]
    unknown = sorted(set(episode_meta) - set(EPISODE_META_KEYS) - {"error"})
    if missing or unknown:
        raise ValueError(f"eval_rows: episode_meta lacks {missing} / has unknown keys {unknown}")
    errors = [str(e) for e in (episode_meta.get("error"), parsed.error) if e]
    common = {k: episode_meta[k] for k in EPISODE_META_KEYS}
    common.update(status=parsed.status, flags=";".join(parsed.flags), error="; ".join(errors))
    rows = []
    for agent in (1, 2):
        scores = parsed.scores.get(agent, {})
        names = list(DIMENSIONS) + [k for k in scores if k not in RANGES]
        for name in names:
            rows.append({
                **common, "agent": agent, "dimension": name, "in_schema": name in RANGES,
                "score": scores.get(name), "reasoning": parsed.reasoning.get(agent, {}).get(name),
            })
    return [{c: row[c] for c in EVAL_COLUMNS} for row in rows]


def eval_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The eval rows as a frame with :data:`EVAL_COLUMNS` and nullable float scores (integers under ``strict``)."""
    frame = pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
    return frame.astype(EVAL_DTYPES)
