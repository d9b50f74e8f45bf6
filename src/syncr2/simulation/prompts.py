"""Speaker and passive-reader prompts (docs/protocol.md, "The protocol preset" and "Passive reader").

The wording is data: :class:`PromptTemplates` holds every sentence we write
ourselves, with the authors' wording (github.com/zzn-nzz/LM_neural_synchrony,
``sot_env.py`` and ``sotopia_utils/utils.py``) as defaults, and the config may
override any field. Everything about the task itself (scenario, both
backgrounds, goals) is rendered by Sotopia's own code: ``get_bio`` for both
participants with the task's relationship, viewer-tag masking with
``render_text_for_agent`` (so the partner's private parts are hidden from the
speaker), the speaker's goal wrapped as Sotopia wraps it and the partner's goal
replaced by "Unknown", and the context text of ``ScriptBackground``. Unlike
sotopia 0.1.5's ``ParallelSotopiaEnv.reset`` (which shows the partner's whole
background as "Unknown") we keep the partner's viewer-masked background, as
the protocol says.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .sotopia_api import Task

# Sotopia's two further preamble sentences (sotopia/generation_utils/generate.py).
# The authors' prompts do not have them; set ``preamble_extra`` to this to get
# Sotopia's full agent preamble.
SOTOPIA_PREAMBLE_EXTRA = (
    "You should try your best to achieve {agent}'s goal in a way that align with their character traits.\n"
    "Additionally, maintaining the conversation's naturalness and realism is essential "
    "(e.g., do not repeat what other people has already said before)."
)

# Which placeholders each template field may use (and which it must use).
_ALLOWED = {
    "preamble_first": {"agent"},
    "preamble_goal_found": {"agent"},
    "preamble_goal_visible": {"agent"},
    "preamble_extra": {"agent"},
    "instruction": set(),
    "hidden_goal": set(),
    "turn_line": {"turn", "name", "utterance"},
    "open_line": {"turn", "name"},
    "passive_first": {"reader"},
}
_REQUIRED = {"turn_line": {"turn", "name", "utterance"}, "open_line": {"turn", "name"}}

# An XML-like tag: <extra_info>, </p>, <p viewer='agent_0'>, <br/>.
_TAG_RE = re.compile(r"</?[A-Za-z_][\w\-.]*(?:\s[^<>]*)?/?>")


def _placeholders(template: str) -> set[str]:
    """The {field} names a template uses (to validate overrides before they are used)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@dataclass(frozen=True)
class PromptTemplates:
    """Every sentence of our prompts; the defaults are the authors' wording.

    Fields and their placeholders: ``preamble_first``, ``preamble_goal_found``,
    ``preamble_goal_visible``, ``preamble_extra`` ({agent}; one line each,
    empty ones are left out); ``instruction`` (the LEAVE line, no
    placeholders); ``hidden_goal`` (what the partner's goal shows);
    ``turn_line`` ({turn}, {name}, {utterance}); ``open_line`` ({turn},
    {name}); ``passive_first`` ({reader}).
    """

    preamble_first: str = (
        "Imagine you are {agent}, your task is to act/speak as {agent} would, keeping in mind {agent}'s social goal."
    )
    preamble_goal_found: str = (
        "You can find {agent}'s goal (or background) in the 'Here is the context of the interaction' field."
    )
    preamble_goal_visible: str = "Note that {agent}'s goal is only visible to you."
    preamble_extra: str = ""
    instruction: str = (
        'If your goal as the agent has been achieved, you should leave the conversation by saying "LEAVE". '
        "If your goal has not been achieved, you should say something to interact with the other. "
        "Keep your words concise."
    )
    hidden_goal: str = "Unknown"
    turn_line: str = "Turn {turn}: {name} said: {utterance}"
    open_line: str = "Turn {turn}: {name} said:"
    passive_first: str = "Imagine you are {reader}. You are reading an interaction between other two people."

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                raise ValueError(f"prompts.{f.name}: expected a string, got {type(value).__name__}")
            try:
                used = _placeholders(value)
            except ValueError as exc:  # unbalanced braces
                raise ValueError(f"prompts.{f.name}: bad template {value!r} ({exc})") from exc
            bad = used - _ALLOWED[f.name]
            if bad:
                raise ValueError(
                    f"prompts.{f.name}: unknown placeholder(s) {sorted(bad)}; allowed: {sorted(_ALLOWED[f.name])}"
                )
            missing = _REQUIRED.get(f.name, set()) - used
            if missing:
                raise ValueError(f"prompts.{f.name}: must contain placeholder(s) {sorted(missing)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PromptTemplates:
        """Defaults overridden by ``data`` (the config's ``prompts`` section); unknown keys are errors."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"prompts: unknown template field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def preamble(self, agent: str) -> list[str]:
        """The preamble lines for ``agent`` (empty fields left out)."""
        parts = (self.preamble_first, self.preamble_goal_found, self.preamble_goal_visible, self.preamble_extra)
        return [p.format(agent=agent) for p in parts if p]


def template_hash(templates: PromptTemplates) -> str:
    """Short sha256 of the templates' canonical JSON; recorded in every shard so prompts can be told apart."""
    canonical = json.dumps(asdict(templates), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def strip_tags(text: str) -> str:
    """Remove every XML-like tag (Sotopia's <extra_info>, <p viewer=...>, ...), keeping the text between."""
    return _TAG_RE.sub("", text)


def _tidy(text: str) -> str:
    """Tags removed, trailing spaces of every line removed (Sotopia leaves some, e.g. after masked parts)."""
    return "\n".join(line.rstrip() for line in strip_tags(text).strip().split("\n"))


def _bios(task: Task) -> list[str]:
    """Both participants' raw backgrounds from Sotopia's ``get_bio`` (viewer tags still in)."""
    from .sotopia_api import sotopia_modules

    sot = sotopia_modules()
    rel = sot.RelationshipType(task.relationship)
    return [sot.get_bio(rel, profile, agent_id=i) for i, profile in enumerate(task.agents)]


def interaction_context(task: Task) -> str:
    """The raw context block both presets start from: scenario, participants, both backgrounds and goals."""
    names, bios = task.agent_names, _bios(task)
    return (
        "Here is the context of this interaction:\n"
        f"Scenario: {task.scenario}\n"
        f"Participants: {names[0]} and {names[1]}\n"
        f"{names[0]}'s background: {bios[0]}\n"
        f"{names[1]}'s background: {bios[1]}\n"
        f"{names[0]}'s goal: {task.agent_goals[0]}\n"
        f"{names[1]}'s goal: {task.agent_goals[1]}\n"
    )


def render_context(task: Task, agent: int, hidden_goal: str = "Unknown") -> str:
    """Sotopia's context text as agent ``agent`` (1 or 2) sees it, tags removed.

    Both backgrounds come from ``get_bio`` and are masked for the viewer; the
    goals are wrapped in ``<root viewer='agent_i'>`` as Sotopia does, the
    partner's replaced by ``hidden_goal``.
    """
    from .sotopia_api import sotopia_modules

    if agent not in (1, 2):
        raise ValueError(f"agent must be 1 or 2, got {agent!r}")
    sot = sotopia_modules()
    viewer = agent - 1
    goals = [
        f"<root viewer='agent_{i}'>{goal}</root>" if i == viewer else hidden_goal
        for i, goal in enumerate(task.agent_goals)
    ]
    background = sot.ScriptBackground(
        scenario=sot.render_text_for_agent(task.scenario, viewer),
        agent_names=list(task.agent_names),
        agent_backgrounds=[sot.render_text_for_agent(bio, viewer) for bio in _bios(task)],
        agent_goals=[sot.render_text_for_agent(goal, viewer) for goal in goals],
    )
    return _tidy(background.to_natural_language())


def render_intro(task: Task, agent: int, templates: PromptTemplates) -> str:
    """The agent-facing intro of agent ``agent`` (1 or 2): preamble lines, context, instruction line."""
    name = task.agent_names[agent - 1] if agent in (1, 2) else ""
    context = render_context(task, agent, templates.hidden_goal)
    lines = [*templates.preamble(name), context]
    if templates.instruction:
        lines.append(templates.instruction)
    return "\n".join(lines)


def render_judge_intro(task: Task) -> str:
    """The full, unmasked context with both goals and secrets, as Sotopia's own judge sees it.

    Exactly the text of the environment's background in sotopia 0.1.5's
    ``ParallelSotopiaEnv.reset`` (scenario, bios and ``<root viewer='agent_i'>``
    wrapped goals rendered for the environment), i.e. the first part of the
    history its ``EpisodeLLMEvaluator`` is given. The renderer leaves no tags
    (any left would be removed); lines keep Sotopia's trailing spaces (the
    mutual_friends goals have some).
    """
    from .sotopia_api import sotopia_modules

    sot = sotopia_modules()
    background = sot.ScriptBackground(
        scenario=sot.render_text_for_environment(task.scenario),
        agent_names=list(task.agent_names),
        agent_backgrounds=[sot.render_text_for_environment(bio) for bio in _bios(task)],
        agent_goals=[
            sot.render_text_for_environment(f"<root viewer='agent_{i}'>{goal}</root>")
            for i, goal in enumerate(task.agent_goals)
        ],
    )
    return strip_tags(background.to_natural_language())


# The authors' tag cleaner (``_clean_tags`` in their sot_env.py): any "<...>" on one line goes, its text stays.
_AUTHORS_TAG_RE = re.compile(r"<.*?>")


def render_judge_intro_authors(task: Task) -> str:
    """The judge's intro exactly as the authors built it (docs/analyses.md, "Prompt styles"), byte for byte.

    Old Sotopia's complete-intro layout (context header, scenario,
    participants, both ``get_bio`` backgrounds, both goals, each on its own
    line) filled with the RAW scenario, bios and goals (tags still in), then
    ``re.sub("\\n +", "\\n", s).strip()`` (Sotopia's ``format_docstring``), then
    every ``<...>`` removed with its text kept. Nothing is masked: both
    secrets and goals and the environment-only scenario text stay. Because
    the strip comes before the tag removal, a goal that ends in
    ``\\n</extra_info>`` (the mutual_friends tasks) leaves the intro ending in
    its trailing spaces and a newline; every other intro has no trailing
    newline. Unlike :func:`render_judge_intro` no line is right-stripped.
    """
    text = interaction_context(task)
    return _AUTHORS_TAG_RE.sub("", re.sub("\n +", "\n", text).strip())


def render_goal(task: Task, agent: int) -> str:
    """Agent ``agent``'s own goal as that agent sees it (Sotopia's wrapping and rendering), tags removed."""
    from .sotopia_api import sotopia_modules

    viewer = agent - 1
    wrapped = f"<root viewer='agent_{viewer}'>{task.agent_goals[viewer]}</root>"
    return _tidy(sotopia_modules().render_text_for_agent(wrapped, viewer))


def speaker_prompt(
    intro: str, history: Sequence[tuple[str, str]], speaker_name: str, turn: int, templates: PromptTemplates
) -> str:
    """The speaker's user message: the intro, one line per past turn, then the open line of turn ``turn``.

    ``history`` holds (speaker full name, utterance) of turns 0..turn-1, so
    ``turn`` must equal its length; an utterance must be one line (see
    :func:`clean_utterance`) or the turn structure would break.
    """
    if turn != len(history):
        raise ValueError(f"speaker_prompt: turn {turn} but {len(history)} past turns")
    lines = [intro]
    for i, (name, utterance) in enumerate(history):
        if "\n" in utterance or "\r" in utterance:
            raise ValueError(f"speaker_prompt: the utterance of turn {i} spans several lines: {utterance!r}")
        lines.append(templates.turn_line.format(turn=i, name=name, utterance=utterance).rstrip())
    lines.append(templates.open_line.format(turn=turn, name=speaker_name))
    return "\n".join(lines)


def _open_line_re(templates: PromptTemplates, speaker_name: str) -> re.Pattern[str]:
    """A regex matching the open turn line of ``speaker_name`` at any turn, built from the template."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(templates.open_line):
        parts.append(re.escape(literal))
        if field == "turn":
            parts.append(r"\d+")
        elif field == "name":
            parts.append(re.escape(speaker_name))
    return re.compile("^" + "".join(parts) + r"\s*$")


def passive_prompt(prompt_text: str, speaker_name: str, reader_name: str, templates: PromptTemplates) -> str:
    """The passive reader's version of a recorded speaker prompt (docs/protocol.md, "Passive reader").

    The first instruction sentence becomes ``passive_first`` with the reader's
    name; the sentences about the speaker's goal being found / only visible to
    them and the LEAVE instruction are removed; empty lines are dropped; the
    final open "Turn {t}: ... said:" line is removed. Raises ValueError when a
    part to transform is absent, so that a template change cannot silently
    yield a prompt that still asks the model to speak.
    """
    first = templates.preamble_first.format(agent=speaker_name)
    if not first:
        raise ValueError("passive transform: prompts.preamble_first is empty, nothing to turn into the reader's sentence")
    if not prompt_text.startswith(first):
        raise ValueError(f"passive transform: the prompt does not start with {first[:70]!r}... (templates changed?)")
    text = templates.passive_first.format(reader=reader_name) + prompt_text[len(first):]
    for removed in (
        templates.preamble_goal_found.format(agent=speaker_name),
        templates.preamble_goal_visible.format(agent=speaker_name),
        templates.instruction,
    ):
        if not removed:
            continue
        if removed not in text:
            raise ValueError(f"passive transform: the prompt lacks {removed[:70]!r}... (templates changed?)")
        text = text.replace(removed, "", 1)
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines or not _open_line_re(templates, speaker_name).match(lines[-1]):
        raise ValueError(f"passive transform: the prompt does not end with the open turn line of {speaker_name!r}")
    return "\n".join(lines[:-1])


def draw_reader_names(
    task_ids: Iterable[int],
    persona_names: Sequence[str],
    seed: int,
    exclude: Mapping[int, Sequence[str]] | None = None,
) -> dict[int, str]:
    """One passive-reader persona per task, from ``numpy.random.default_rng([seed, task_id])``.

    Each task's draw depends only on (seed, task_id) and the set of names (they
    are sorted first), so it does not change with the task order, the
    selection, or the order of the persona file. ``exclude`` optionally maps a
    task id to names not to draw for it (e.g. its own participants; the
    authors did not exclude them).
    """
    names = sorted(set(persona_names))
    out: dict[int, str] = {}
    for task_id in task_ids:
        banned = set((exclude or {}).get(task_id, ()))
        pool = [n for n in names if n not in banned]
        if not pool:
            raise ValueError(f"task {task_id}: no persona left to draw a passive reader from")
        rng = np.random.default_rng([int(seed), int(task_id)])
        out[int(task_id)] = pool[int(rng.integers(len(pool)))]
    return out


# "Turn 3:" (with optional Markdown emphasis) at the start of a reply.
_TURN_RE = re.compile(r"^[*_\s]*Turn\s*#?\d+\s*[*_]*:[*_]*(?:\s+|$)")
# The part before the first ":" (at most 60 characters) and the colon with its emphasis and spaces.
_HEAD_RE = re.compile(r"^[*_\s]*([^:\n]{1,60}?)\s*[*_]*\s*:[*_]*(?:\s+|$)")
_WORD_RE = re.compile(r"[\w'’.\-]+")
_QUOTES = (('"', '"'), ("“", "”"))


def _is_label(head: str, names: Sequence[str] | None) -> bool:
    """Whether the text before a ": " is a speaker label (see :func:`clean_utterance`)."""
    words = head.split()
    if words and words[-1] == "said":
        words = words[:-1]
    if not words:
        return False
    if names is not None:
        known = {n.casefold() for full in names for n in (full.strip(), full.split()[0] if full.split() else "") if n}
        return " ".join(words).casefold() in known
    return len(words) <= 4 and all(w[0].isupper() and _WORD_RE.fullmatch(w) for w in words)


def _strip_label(line: str, names: Sequence[str] | None) -> str:
    """``line`` without a leading "Turn n: ", "Name: " or "Turn n: Name said: " label."""
    turn = _TURN_RE.match(line)
    rest = line[turn.end():] if turn else line
    head = _HEAD_RE.match(rest)
    if head and _is_label(head.group(1), names):
        return rest[head.end():]
    return rest


def _strip_quotes(text: str) -> str:
    """``text`` without surrounding double quotes (a matching pair, or a lone one at an end)."""
    for open_q, close_q in _QUOTES:
        if len(text) >= 2 and text.startswith(open_q) and text.endswith(close_q):
            return text[len(open_q):-len(close_q)].strip()
        count = text.count(open_q) + (text.count(close_q) if close_q != open_q else 0)
        if count == 1 and text.startswith(open_q):
            return text[len(open_q):].strip()
        if count == 1 and text.endswith(close_q):
            return text[: -len(close_q)].strip()
    return text


def clean_utterance(raw: str, max_lines: int = 1, names: Sequence[str] | None = None) -> str:
    """The utterance of a raw model reply: its first non-empty line(s), without a speaker label or quotes.

    Rule: take the first ``max_lines`` non-empty lines (joined with a space,
    so a turn stays one line). Drop a leading speaker label, i.e. the text up
    to the first ": " when it is a label and nothing else: "Turn n: Name
    said: ", "Name: ", "Name said: ", "Turn n: " (with Markdown ``**`` around
    it allowed). Without ``names`` a label is one to four capitalized words
    (so "Leo Williams: hi" loses "Leo Williams: " but "Well, here is my plan:
    we split it." and "I need this: money" are kept whole, since their part
    before ": " has lower-case words or punctuation); with ``names`` (the
    participants' full names) only those names or their first names count.
    Surrounding double quotes (a matching pair, or a lone one at either end)
    and whitespace are dropped before and after the label. (The authors kept
    everything after the first ": " unconditionally, which also cuts genuine
    sentences.)
    """
    if max_lines < 1:
        raise ValueError(f"max_lines must be >= 1, got {max_lines}")
    lines = [ln.strip() for ln in raw.splitlines() if ln.strip()][:max_lines]
    text = " ".join(lines)
    text = _strip_label(_strip_quotes(text), names).strip()
    return _strip_quotes(text).strip()


def is_leave(utterance: str) -> bool:
    """True when "left" or "leave" (any case) occurs in the first or the last 10 characters."""
    low = utterance.lower()
    return any(word in part for word in ("left", "leave") for part in (low[:10], low[-10:]))
