"""Speaker and passive-reader prompts (PROTOCOL.md sections 2 and 4).

The wording is data: :class:`PromptTemplates` holds every sentence, with the
authors' wording as defaults, and the config may override any field. The
speaker's intro is built with Sotopia's own renderers (``get_bio`` for both
participants, viewer-tag masking with ``render_text_for_agent``, the context
text of ``ScriptBackground``), so the partner's private parts are hidden the
way Sotopia hides them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .tasks import Task

_TAG_RE = re.compile(r"</?[A-Za-z_][\w\-]*(?:\s[^<>]*)?/?>")


@dataclass(frozen=True)
class PromptTemplates:
    """Every sentence of the prompts; ``{agent}``, ``{reader}``, ``{turn}``, ``{name}`` are filled in."""

    preamble_first: str = (
        "Imagine you are {agent}, your task is to act/speak as {agent} would, keeping in mind {agent}'s social goal."
    )
    preamble_goal_found: str = (
        "You can find {agent}'s goal (or background) in the 'Here is the context of the interaction' field."
    )
    preamble_goal_visible: str = "Note that {agent}'s goal is only visible to you."
    preamble_rest: str = (
        "You should try your best to achieve {agent}'s goal in a way that align with their character traits.\n"
        "Additionally, maintaining the conversation's naturalness and realism is essential "
        "(e.g., do not repeat what other people has already said before)."
    )
    instruction: str = (
        'You can leave the conversation by saying "LEAVE" once your goal is achieved; otherwise, '
        "say something to interact with the other person. Keep your words concise."
    )
    turn_line: str = "Turn {turn}: {name} said: {utterance}"
    open_line: str = "Turn {turn}: {name} said:"
    passive_first: str = "Imagine you are {reader}. You are reading an interaction between other two people."
    hidden_goal: str = "Unknown"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "PromptTemplates":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"prompts: unknown template field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


def template_hash(templates: PromptTemplates) -> str:
    """Short sha256 of the templates' canonical JSON; recorded in every shard."""
    return hashlib.sha256(json.dumps(asdict(templates), sort_keys=True).encode()).hexdigest()[:16]


def strip_tags(text: str) -> str:
    """Remove every XML-like tag (Sotopia's <extra_info>, <p viewer=...>, ...)."""
    return _TAG_RE.sub("", text)


def _sotopia():
    from .tasks import sotopia_modules

    return sotopia_modules()


def render_intro(task: "Task", agent: int, templates: PromptTemplates) -> str:
    """The agent-facing intro of agent ``agent`` (1 or 2) of ``task``: preamble, context, instruction."""
    if agent not in (1, 2):
        raise ValueError(f"agent must be 1 or 2, got {agent}")
    sot = _sotopia()
    viewer = agent - 1
    rel = sot.RelationshipType(task.relationship)
    bios = [sot.get_bio(rel, profile, agent_id=i) for i, profile in enumerate(task.agent_profiles)]
    goals = [f"<root viewer='agent_{i}'>{g}</root>" for i, g in enumerate(task.agent_goals)]
    goals = [g if i == viewer else templates.hidden_goal for i, g in enumerate(goals)]
    background = sot.ScriptBackground(
        scenario=sot.render_text_for_agent(task.scenario, viewer),
        agent_names=list(task.agent_names),
        agent_backgrounds=[sot.render_text_for_agent(b, viewer) for b in bios],
        agent_goals=[sot.render_text_for_agent(g, viewer) for g in goals],
    )
    name = task.agent_names[viewer]
    preamble = "\n".join(
        t.format(agent=name)
        for t in (templates.preamble_first, templates.preamble_goal_found, templates.preamble_goal_visible,
                  templates.preamble_rest)
    )
    context = strip_tags(background.to_natural_language()).strip()
    return f"{preamble}\n{context}\n{templates.instruction}"


def render_judge_intro(task: "Task") -> str:
    """The full, unmasked background with both goals (what the judge sees)."""
    sot = _sotopia()
    rel = sot.RelationshipType(task.relationship)
    bios = [sot.get_bio(rel, profile, agent_id=i) for i, profile in enumerate(task.agent_profiles)]
    background = sot.ScriptBackground(
        scenario=sot.render_text_for_environment(task.scenario),
        agent_names=list(task.agent_names),
        agent_backgrounds=[sot.render_text_for_environment(b) for b in bios],
        agent_goals=[sot.render_text_for_environment(g) for g in task.agent_goals],
    )
    return strip_tags(background.to_natural_language()).strip()


def speaker_prompt(
    intro: str, history: Sequence[tuple[str, str]], speaker_name: str, turn: int, templates: PromptTemplates
) -> str:
    """The speaker's user message: intro, one line per past turn, the open line of this turn."""
    lines = [intro]
    lines += [templates.turn_line.format(turn=i, name=n, utterance=u) for i, (n, u) in enumerate(history)]
    lines.append(templates.open_line.format(turn=turn, name=speaker_name))
    return "\n".join(lines)


def passive_prompt(prompt: str, speaker_name: str, reader_name: str, templates: PromptTemplates) -> str:
    """The passive reader's version of a recorded speaker prompt (PROTOCOL.md section 4).

    The first instruction sentence becomes the reader's; the two sentences about
    the speaker's goal being found/visible and the LEAVE instruction go; empty
    lines go; the final open turn line goes. Raises ValueError when a part to
    transform is absent, so a template change cannot yield a non-passive prompt.
    """
    text = prompt
    first = templates.preamble_first.format(agent=speaker_name)
    parts = [
        (first, templates.passive_first.format(reader=reader_name)),
        (templates.preamble_goal_found.format(agent=speaker_name), ""),
        (templates.preamble_goal_visible.format(agent=speaker_name), ""),
        (templates.instruction, ""),
    ]
    for old, new in parts:
        if old not in text:
            raise ValueError(f"passive transform: the prompt lacks {old[:60]!r}... (templates changed?)")
        text = text.replace(old, new, 1)
    lines = [line for line in text.split("\n") if line.strip()]
    open_re = re.compile(
        "^" + re.escape(templates.open_line).replace(r"\{turn\}", r"\d+").replace(r"\{name\}", re.escape(speaker_name)) + r"\s*$"
    )
    if not lines or not open_re.match(lines[-1]):
        raise ValueError(f"passive transform: the prompt does not end with the open turn line of {speaker_name!r}")
    return "\n".join(lines[:-1])


def draw_reader_names(
    task_ids: Iterable[int], persona_names: Sequence[str], seed: int, exclude: dict[int, Sequence[str]] | None = None
) -> dict[int, str]:
    """One passive-reader persona per task, seeded by (seed, task_id), never one of the task's own agents."""
    names = sorted(set(persona_names))
    out = {}
    for task_id in task_ids:
        pool = [n for n in names if n not in set((exclude or {}).get(task_id, ()))]
        if not pool:
            raise ValueError(f"task {task_id}: no persona left to draw a passive reader from")
        out[int(task_id)] = pool[int(np.random.default_rng([seed, int(task_id)]).integers(len(pool)))]
    return out


def clean_utterance(raw: str) -> str:
    """First non-empty line of a reply, without a leading "Name: " (or "Turn n: Name said: ") prefix.

    The prefix rule: text before the first ": " is dropped when it has at most
    six words and no sentence punctuation (a speaker label), so a genuine
    sentence with a colon later in the line is kept whole.
    """
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
    head, sep, tail = line.partition(": ")
    if sep and len(head.split()) <= 6 and not re.search(r"[.!?,;\"]", head):
        line = tail.strip()
        head, sep, tail = line.partition(": ")  # "Turn 3: Name said: ..." has two labels
        if sep and head.endswith(" said") and len(head.split()) <= 6:
            line = tail.strip()
    return line.strip().strip('"').strip()


def is_leave(utterance: str) -> bool:
    """True when "left" or "leave" (any case) is in the first or last 10 characters."""
    low = utterance.lower()
    return any(w in part for w in ("left", "leave") for part in (low[:10], low[-10:]))
