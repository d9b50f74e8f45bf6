"""Synchrony over any transcript: two models read a recorded conversation, each as one participant.

docs/protocol.md, "Transcripts". Researchers have human-human and human-LLM
conversations and want to compare them with LLM-LLM ones. The task source
``transcripts`` takes a CSV or JSONL file with one row per turn:

=====================  =========================================================
field                  meaning
=====================  =========================================================
conversation_id        any text; the rows of one conversation share it
turn                   an integer; orders the rows of a conversation
speaker                who said it; exactly two speakers per conversation
text                   what was said (line breaks become spaces)
speaker_description    optional: the speaker's background, as the reading
                       model is told it (the same on every row of a speaker,
                       or empty)
scenario               optional: the conversation's setting (the same on every
                       row of a conversation, or empty)
=====================  =========================================================

Each conversation becomes one task (task ids in order of first appearance;
``codename`` is the conversation id). Its first speaker is agent 1. Two
consecutive rows of one speaker are merged into one turn (joined by a space),
as the agents of a simulated episode alternate; the merge is logged. At every
turn, the model of the turn's speaker reads the prompt that speaker would have
seen in a simulated episode (:meth:`PromptPreset.prompt`: the intro, the
recorded turns so far, the open line of its own turn) in one forward pass, and
its block outputs at the last prompt token are recorded as that agent's
GENUINE shard. The episodes table holds the recorded text as ``utterance``
and the prompts, so the passive reader, the conditions, the measures, the
lag profile and the figures run on a transcript as on a simulated episode.
There is no judge: a recorded conversation has no Sotopia goals to score.

The intro follows the protocol's context block with what a transcript has:
the scenario (or "A recorded conversation between A and B."), both
backgrounds (or "Not given."), the reader's own goal given as
:data:`NO_GOAL` and the partner's hidden. Errors name the file, the line and
the field of a bad row.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .presets import PromptPreset
from .sotopia_api import TaskDataError

log = logging.getLogger(__name__)

REQUIRED = ("conversation_id", "turn", "speaker", "text")
OPTIONAL = ("speaker_description", "scenario")
NO_GOAL = "Not given: this is a recorded conversation."
NOT_GIVEN = "Not given."
#: the passive reader of a transcript whose file names no other speaker
DEFAULT_READER = "Robin Taylor"
END_REASON = "end_of_transcript"


class TranscriptError(TaskDataError):
    """A transcript file cannot be read as conversations (the message names the file, line and field)."""


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of every row of a CSV or JSONL file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise TranscriptError(f"{path}: transcript file not found; set tasks.path to your CSV or JSONL file")
    text = path.read_text(encoding="utf-8")
    if suffix in (".jsonl", ".ndjson"):
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TranscriptError(f"{path}, line {n}: not a JSON object ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise TranscriptError(f"{path}, line {n}: expected a JSON object, got {type(record).__name__}")
            out.append((n, record))
        return out
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        missing = [f for f in REQUIRED if f not in (reader.fieldnames or [])]
        if missing:
            raise TranscriptError(f"{path}, line 1: the header lacks field(s) {', '.join(missing)}; a transcript "
                                  f"needs {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})")
        out = []
        for record in reader:
            out.append((reader.line_num, dict(record)))
        return out
    raise TranscriptError(f"{path}: a transcript file must end in .csv or .jsonl, got {path.name!r}")


def _field(path: Path, n: int, record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if name in REQUIRED:
            raise TranscriptError(f"{path}, line {n}: field {name!r} is missing or empty")
        return ""
    return " ".join(str(value).split())  # one line, single spaces


def read_transcripts(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The turns of a transcript file, validated and merged (module docstring).

    Columns: conversation_id, task_id, turn (0.. within the conversation, after
    merging), speaker, agent (1 or 2), text, speaker_description, scenario, line
    (the file line of the turn's first row).
    """
    path = Path(path)
    records = []
    for n, record in _rows(path):
        row = {f: _field(path, n, record, f) for f in (*REQUIRED, *OPTIONAL)}
        try:
            row["turn"] = int(str(record.get("turn")).strip())
        except ValueError:
            raise TranscriptError(f"{path}, line {n}: field 'turn' is {record.get('turn')!r}, not an integer") from None
        row["line"] = n
        records.append(row)
    if not records:
        raise TranscriptError(f"{path}: no rows; a transcript needs {', '.join(REQUIRED)} per turn")
    frame = pd.DataFrame(records)
    order = list(dict.fromkeys(frame["conversation_id"]))
    turns = []
    for task_id, conv in enumerate(order):
        rows = frame[frame.conversation_id == conv]
        dup = rows[rows.turn.duplicated()]
        if len(dup):
            first = rows[rows.turn == dup.turn.iloc[0]].line.iloc[0]
            raise TranscriptError(f"{path}, line {dup.line.iloc[0]}: field 'turn': conversation {conv!r} has turn "
                                  f"{dup.turn.iloc[0]} twice (also on line {first}); number each turn once")
        rows = rows.sort_values("turn", kind="stable")
        speakers = list(dict.fromkeys(rows.speaker))
        if len(speakers) != 2:
            raise TranscriptError(f"{path}, line {rows.line.iloc[0]}: field 'speaker': conversation {conv!r} has "
                                  f"{len(speakers)} speaker(s) ({', '.join(speakers)}); synchrony needs exactly two")
        for column, key in (("speaker_description", "speaker"), ("scenario", "conversation_id")):
            for who, grp in rows.groupby(key, sort=False):
                given = grp[grp[column] != ""]
                if given[column].nunique() > 1:
                    line = given[given[column] != given[column].iloc[0]].line.iloc[0]  # the first that differs
                    raise TranscriptError(f"{path}, line {line}: field {column!r} differs between rows of {who!r} "
                                          f"in conversation {conv!r}; give it once or the same on every row")
        merged: list[dict[str, Any]] = []
        for r in rows.itertuples():
            if merged and merged[-1]["speaker"] == r.speaker:
                merged[-1]["text"] += " " + r.text
                log.info("%s: conversation %r, line %d: a second turn of %s in a row, merged into the previous",
                         path, conv, r.line, r.speaker)
                continue
            merged.append({"conversation_id": conv, "task_id": task_id, "turn": len(merged), "speaker": r.speaker,
                           "agent": 1 + speakers.index(r.speaker), "text": r.text, "line": r.line})
        describe = {s: next((v for v in rows[rows.speaker == s].speaker_description if v), "") for s in speakers}
        scenario = next((v for v in rows.scenario if v), "")
        for m in merged:
            m["speaker_description"], m["scenario"] = describe[m["speaker"]], scenario
        turns += merged
    out = pd.DataFrame(turns)
    return out.astype({"task_id": "int64", "turn": "int64", "agent": "int64", "line": "int64"})


def count_conversations(path: str | os.PathLike[str], ids: Sequence[int] | None = None,
                        limit: int | None = None) -> int:
    """How many conversations (tasks) a transcript file holds, after ``tasks.ids`` and ``tasks.limit``."""
    from .tasks import select_ids

    return len(select_ids(read_transcripts(path).task_id.unique(), ids, limit))


def transcript_intro(names: Sequence[str], descriptions: Sequence[str], scenario: str, agent: int,
                     preset: PromptPreset) -> str:
    """What participant ``agent`` (1 or 2) is told before the recorded turns (module docstring)."""
    a, b = names
    goals = [NO_GOAL, NO_GOAL]
    goals[2 - agent] = preset.templates.hidden_goal
    context = "\n".join([
        "Here is the context of the interaction:",
        f"Scenario: {scenario or f'A recorded conversation between {a} and {b}.'}",
        f"Participants: {a} and {b}",
        f"{a}'s background: {descriptions[0] or NOT_GIVEN}",
        f"{b}'s background: {descriptions[1] or NOT_GIVEN}",
        f"{a}'s goal: {goals[0]}",
        f"{b}'s goal: {goals[1]}",
    ])
    lines = [*preset.templates.preamble(names[agent - 1]), context]
    if preset.templates.instruction:
        lines.append(preset.templates.instruction)
    return "\n".join(lines)


def transcript_tasks_frame(turns: pd.DataFrame, preset: PromptPreset | None = None, reader_seed: int = 0,
                           ids: Sequence[int] | None = None, limit: int | None = None) -> pd.DataFrame:
    """The task table (``results/tasks.parquet``'s columns) of a transcript's conversations.

    A task's passive reader is drawn with ``reader_seed`` from the speakers of
    the file's OTHER conversations (never one of its own), or is
    :data:`DEFAULT_READER` when there is none.
    """
    from .prompts import draw_reader_names
    from .tasks import PERSONAS_ATTR, TASK_COLUMNS, select_ids

    preset = preset or PromptPreset.from_config(None)
    task_ids = select_ids(turns.task_id.unique(), ids, limit)
    pool = sorted(set(turns.speaker))
    rows = []
    for t in task_ids:
        conv = turns[turns.task_id == t]
        first = conv.groupby("agent", sort=True).first()
        names = [str(first.loc[1, "speaker"]), str(first.loc[2, "speaker"])]
        descriptions = [str(first.loc[1, "speaker_description"]), str(first.loc[2, "speaker_description"])]
        scenario = str(conv.scenario.iloc[0])
        others = [p for p in pool if p not in names]
        reader = draw_reader_names([t], others, reader_seed)[t] if others else DEFAULT_READER
        context = transcript_intro(names, descriptions, scenario, 1, preset).split("Here is the context", 1)[1]
        rows.append({
            "task_id": int(t), "env_pk": "", "codename": str(conv.conversation_id.iloc[0]), "source": "transcripts",
            "relationship": -1, "relationship_name": "unknown", "agent1_pk": names[0], "agent2_pk": names[1],
            "agent1_name": names[0], "agent2_name": names[1], "agent1_goal": NO_GOAL, "agent2_goal": NO_GOAL,
            "scenario": scenario, "intro1": transcript_intro(names, descriptions, scenario, 1, preset),
            "intro2": transcript_intro(names, descriptions, scenario, 2, preset),
            "judge_intro": "Here is the context" + context, "judge_intro_authors": "", "reader_name": reader,
        })
    frame = pd.DataFrame(rows, columns=list(TASK_COLUMNS)).astype({"task_id": "int64", "relationship": "int64"})
    frame.attrs[PERSONAS_ATTR] = []
    return frame


def transcript_episodes(turns: pd.DataFrame, tasks: pd.DataFrame, model_keys: tuple[str, str],
                        preset: PromptPreset) -> pd.DataFrame:
    """The episodes table (seed 0) of the conversations of ``tasks``: each turn's speaker prompt and recorded text."""
    from .simulate import EPISODE_COLUMNS

    rows = []
    for task in tasks.itertuples():
        conv = turns[turns.task_id == task.task_id].sort_values("turn")
        if conv.empty:
            raise TranscriptError(f"task {task.task_id} ({task.codename!r}) is not in the transcript file; "
                                  f"rebuild results/tasks.parquet")
        intros = {1: task.intro1, 2: task.intro2}
        history: list[tuple[str, str]] = []
        for r in conv.itertuples():
            rows.append({
                "task_id": int(task.task_id), "seed": 0, "turn": int(r.turn), "speaker": int(r.agent),
                "speaker_name": r.speaker, "model_key": model_keys[r.agent - 1],
                "prompt": preset.prompt(intros[r.agent], history, r.speaker, int(r.turn)), "raw_output": r.text,
                "utterance": r.text, "end_reason": END_REASON if r.turn == conv.turn.max() else None,
                "n_prompt_tokens": 0, "n_new_tokens": 0,
            })
            history.append((r.speaker, r.text))
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))


def read_transcript_block(
    transcript: str | os.PathLike[str],
    tasks: pd.DataFrame,
    block: int,
    block_size: int,
    models: tuple[tuple[str, Any], tuple[str, Any]],
    preset: PromptPreset,
    episodes_out: str | os.PathLike[str],
    reps_out: tuple[str | os.PathLike[str], str | os.PathLike[str]],
) -> pd.DataFrame:
    """Read one block of conversations: each turn's speaker model reads its prompt; write the episodes
    table and both agents' genuine shards (module docstring). Returns the episodes table."""
    from ..core.shards import write_shard
    from .simulate import block_rows, generation_provenance, shard_meta, write_episodes

    rows = block_rows(tasks, block, block_size)
    turns = read_transcripts(transcript)
    episodes = transcript_episodes(turns, rows, (models[0][0], models[1][0]), preset)
    log.info("block %d: conversations %s, %d turns", block, rows["codename"].tolist(), len(episodes))
    generation = {agent: generation_provenance(models[agent - 1][1]) for agent in (1, 2)}
    for agent in (1, 2):
        key, lm = models[agent - 1]
        mine = episodes.index[episodes.speaker == agent]
        texts = [lm.render(p) for p in episodes.loc[mine, "prompt"]]
        keys = list(zip(episodes.loc[mine, "task_id"].astype(int), episodes.loc[mine, "seed"].astype(int)))
        reps = lm.capture(texts, keys=keys) if texts else np.empty((0, lm.n_layers, lm.hidden_size), np.float32)
        episodes.loc[mine, "n_prompt_tokens"] = [len(ids) for ids in lm.tokenize(texts)]
        index = episodes.loc[mine, ["task_id", "seed", "turn", "speaker"]].reset_index(drop=True)
        write_shard(reps_out[agent - 1], index, reps, shard_meta(lm, key, "genuine", preset, generation[agent]))
        log.info("agent %d (%s): %d turns read -> %s", agent, key, len(mine), reps_out[agent - 1])
        lm.prefixes.clear()
    write_episodes(episodes, episodes_out, generation)
    log.info("wrote %s (%d turns)", episodes_out, len(episodes))
    return episodes
