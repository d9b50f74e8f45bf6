"""The authors' prompt rules, reproduced byte for byte (docs/protocol.md, "The authors preset").

The paper's numbers came from the authors' code (zzn-nzz/LM_neural_synchrony),
which differs from the paper's text in small ways that change prompt tokens.
The ``authors`` preset (:mod:`.presets`) uses these functions; each docstring
says which of the preset's rules it reproduces. They are kept apart from
:mod:`.prompts` (the protocol's own reading) so that neither set of rules can
leak into the other.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .prompts import PromptTemplates, interaction_context

if TYPE_CHECKING:
    from .sotopia_api import Task

# Every "<...>" on one line, text kept (their tag cleaner).
_TAG = re.compile(r"<.*?>")


def _docstring_format(text: str) -> str:
    """Old Sotopia's ``format_docstring``: newline-plus-spaces collapsed to a newline, then stripped."""
    return re.sub("\n +", "\n", text).strip()


def _mask_partner(intro: str, partner_index: int, partner_name: str, hidden_goal: str) -> str:
    """The authors' regex masking of the partner's parts, in their order.

    1. the partner's viewer-tagged ``<p viewer='agent_j'>...</p>`` is removed
       (one line at most; the space before it stays, so a stranger partner's
       background reads "Name's background: ");
    2. ``" <p viewer=\"environment\">...</p>"`` (environment-only scenario text) is removed;
    3. the partner's goal up to the end of its line becomes ``hidden_goal``
       plus a newline, then, with the first line already replaced, once more
       up to the end of a following ``<extra_info>`` block.
    """
    intro = re.sub(rf"<p viewer='agent_{partner_index}'>.*?</p>", "", intro)
    intro = re.sub(r' <p viewer="environment">.*?</p>', "", intro)
    head = re.escape(f"{partner_name}'s goal: ")
    replacement = f"{partner_name}'s goal: {hidden_goal}\n".replace("\\", "\\\\")
    intro = re.sub(head + r".*?(\n|$)", replacement, intro)
    return re.sub(head + r".*?(\n<extra_info>.*?\n</extra_info>|\n|$)", replacement, intro, flags=re.DOTALL)


def render_intro_authors(task: Task, agent: int, templates: PromptTemplates) -> str:
    """Agent ``agent``'s intro as the authors built it; dialogue lines are appended to it directly.

    Layout: the three preamble lines, "Here is the context of this
    interaction:", scenario, participants, both ``get_bio`` backgrounds and both
    raw goals, one per line (old Sotopia's ``to_natural_language``), passed
    through :func:`_docstring_format`; then the partner's parts masked
    (:func:`_mask_partner`), the LEAVE line plus a newline appended with no
    separator (so agent 2's own goal runs into it, except where the goal ends
    in an ``</extra_info>`` line), and every tag removed with its text kept.
    """
    if agent not in (1, 2):
        raise ValueError(f"agent must be 1 or 2, got {agent!r}")
    names = task.agent_names
    me = names[agent - 1]
    preamble = "\n".join(templates.preamble(me))
    text = f"{preamble}\n" + interaction_context(task)
    partner = 2 - agent  # 0-based index of the other agent
    intro = _mask_partner(_docstring_format(text), partner, names[partner], templates.hidden_goal)
    if templates.instruction:
        intro += templates.instruction + "\n"
    return _TAG.sub("", intro)


def authors_utterance(raw: str) -> str:
    """The authors' utterance of a reply: stripped, first line, then the text after the first ": ".

    ``raw`` is the generated text after the prompt (their split on the last
    ``[/INST]`` / ``<|end_header_id|>``); ``</s>``, ``<|im_end|>`` and
    ``<|eot_id|>`` are removed, the rest stripped and cut at the first "\\n". If
    it then contains ": ", everything before the first ": " is dropped and the
    later ": " separators vanish (``"".join(s.split(": ")[1:])``): "Sure: a: b"
    gives "ab". A carriage return is not a line break here.
    """
    text = raw
    for token in ("</s>", "<|im_end|>", "<|eot_id|>"):
        text = text.replace(token, "")
    text = text.strip().split("\n")[0]
    if ": " in text:
        text = "".join(text.split(": ")[1:])
    return text


def authors_passive_prompt(prompt_text: str, speaker_name: str, reader_name: str, templates: PromptTemplates) -> str:
    """The authors' passive transform of a recorded speaker prompt.

    Carriage returns first become newlines (their prompts went through a CSV
    file read with universal newlines). Then: the first line becomes
    ``passive_first`` with the reader's name; "You can find ..." and "Note
    that ..." lines and the LEAVE line are removed with their newline (agent
    2's own goal is then glued to "Turn 0: ..."); the last (open) line is
    dropped; every line is stripped; only the FIRST empty line is removed.
    Unlike the authors' code, which returned the prompt unchanged on any
    error, a prompt lacking a part raises ValueError.
    """
    text = prompt_text.replace("\r\n", "\n").replace("\r", "\n")
    first = templates.preamble_first.format(agent=speaker_name)
    if not text.startswith(first + "\n"):
        raise ValueError(f"authors' passive transform: the prompt does not start with {first[:70]!r}...")
    text = templates.passive_first.format(reader=reader_name) + text[len(first):]
    removed = [
        templates.preamble_goal_visible.format(agent=speaker_name),
        templates.preamble_goal_found.format(agent=speaker_name),
        templates.instruction,
    ]
    for part in removed:
        if not part:
            continue
        if part + "\n" not in text:
            raise ValueError(f"authors' passive transform: the prompt lacks the line {part[:70]!r}...")
        text = text.replace(part + "\n", "")
    lines = [line.strip() for line in text.split("\n")[:-1]]
    if "" in lines:
        lines.remove("")
    return "\n".join(lines)


def authors_reader_names(task_ids: Sequence[int], personas_in_file_order: Sequence[str], seed: int) -> dict[int, str]:
    """The authors' passive reader of each task for simulation seed ``seed``.

    Python's ``random`` seeded with ``seed``, then one ``random.sample(pool, 2)``
    per task id 0, 1, 2, ...; the reader of task i is the first of the i-th
    draw (it may be one of the task's own participants). ``pool`` is every
    persona in the order of ``agents.json``: ``random.sample`` picks positions,
    so drawing names or profile keys gives the same persona.
    """
    pool = list(personas_in_file_order)
    if len(pool) < 2:
        raise ValueError(f"the authors' reader draw needs >= 2 personas, got {len(pool)}")
    ids = [int(t) for t in task_ids]
    if not ids:
        return {}
    if min(ids) < 0:
        raise ValueError(f"task ids must be >= 0, got {min(ids)}")
    rng = random.Random(int(seed))
    draws = [rng.sample(pool, 2)[0] for _ in range(max(ids) + 1)]
    return {t: draws[t] for t in ids}
