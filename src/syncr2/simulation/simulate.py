"""Batched social episodes with hidden-state capture (PROTOCOL.md sections 2-3).

All tasks of a block advance together, turn by turn: at turn t every still
running episode's speaker prompt is built, and ONE batched ``generate`` call
per turn (left padding; split into ``batch_size`` chunks by the model
wrapper) produces the utterances and, from the same prefill forward pass,
the speaker's block outputs at the last prompt token. Episodes that ended
(LEAVE or the turn cap) drop out of later calls.

Outputs per (pair, seed, block): the dialogue table (one row per turn) and
one representation shard per agent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..core.atomic import atomic_path
from ..core.shards import ShardMeta, write_shard
from .lm import ChatLM, LMConfig
from .prompts import (
    PromptTemplates,
    clean_utterance,
    is_leave,
    speaker_prompt,
    template_hash,
)

log = logging.getLogger(__name__)

EPISODE_COLUMNS = (
    "task_id", "seed", "turn", "speaker", "speaker_name", "model_key", "prompt", "raw_output",
    "utterance", "end_reason", "n_prompt_tokens", "n_new_tokens",
)


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling and episode settings (config ``generation``)."""

    max_turns: int = 16
    temperature: float = 0.7
    max_new_tokens: int = 300
    stop_at_newline: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "GenerationSettings":
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"generation: unknown setting(s) {', '.join(sorted(unknown))}")
        return cls(**data)


def block_rows(tasks: pd.DataFrame, block: int, block_size: int) -> pd.DataFrame:
    """The tasks of block ``block`` (tasks sorted by id, ``block_size`` per block)."""
    ordered = tasks.sort_values("task_id", kind="stable").reset_index(drop=True)
    rows = ordered.iloc[block * block_size:(block + 1) * block_size]
    if rows.empty:
        raise ValueError(f"block {block} is empty: {len(ordered)} tasks in blocks of {block_size}")
    return rows.reset_index(drop=True)


def turn_seed(seed: int, block: int, turn: int) -> int:
    """Sampling seed of one turn's generate call, derived from (seed, block, turn)."""
    return int(np.random.SeedSequence([seed, block, turn]).generate_state(1)[0])


def shard_meta(lm: ChatLM, model_key: str, kind: str, templates: PromptTemplates) -> ShardMeta:
    """Provenance of the representations one model records."""
    return ShardMeta(
        model_key=model_key, model_path=str(lm.model_path), revision=str(lm.revision or lm.weights_hash),
        dtype=lm.dtype, n_layers=lm.n_layers, hidden_size=lm.hidden_size, kind=kind,
        template_hash=template_hash(templates),
    )


def run_block(
    tasks: pd.DataFrame,
    models: tuple[tuple[str, ChatLM], tuple[str, ChatLM]],
    seed: int,
    block: int,
    settings: GenerationSettings,
    templates: PromptTemplates,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[int, tuple[pd.DataFrame, np.ndarray]]]:
    """Simulate every task of ``tasks`` (one block) with agent 1 = models[0], agent 2 = models[1].

    Returns the episode table and, per agent, (index, reps (n, L, D)).
    """
    n = len(tasks)
    names = {1: tasks["agent1_name"].tolist(), 2: tasks["agent2_name"].tolist()}
    intros = {1: tasks["intro1"].tolist(), 2: tasks["intro2"].tolist()}
    history: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    running = np.ones(n, dtype=bool)
    rows: list[dict[str, Any]] = []
    reps: dict[int, list[np.ndarray]] = {1: [], 2: []}
    index: dict[int, list[tuple[int, int, int, int]]] = {1: [], 2: []}
    for turn in tqdm(range(settings.max_turns), desc=f"block {block} seed {seed}", disable=not progress):
        active = np.flatnonzero(running)
        if active.size == 0:
            break
        speaker = 1 if turn % 2 == 0 else 2
        key, lm = models[speaker - 1]
        prompts = [speaker_prompt(intros[speaker][i], history[i], names[speaker][i], turn, templates) for i in active]
        result = lm.generate(
            [lm.render(p) for p in prompts], seed=turn_seed(seed, block, turn),
        )
        for j, i in enumerate(active):
            utterance = clean_utterance(result.texts[j])
            history[i].append((names[speaker][i], utterance))
            end = None
            if is_leave(utterance):
                end = "leave"
            elif turn == settings.max_turns - 1:
                end = "max_turns"
            if end:
                running[i] = False
            task_id = int(tasks["task_id"].iloc[i])
            rows.append({
                "task_id": task_id, "seed": seed, "turn": turn, "speaker": speaker,
                "speaker_name": names[speaker][i], "model_key": key, "prompt": prompts[j],
                "raw_output": result.texts[j], "utterance": utterance, "end_reason": end,
                "n_prompt_tokens": int(result.n_prompt_tokens[j]), "n_new_tokens": int(result.n_new_tokens[j]),
            })
            index[speaker].append((task_id, seed, turn, speaker))
        reps[speaker].append(result.reps)
        log.info("turn %d: %d episodes running, speaker %d (%s)", turn, int(running.sum()), speaker, key)
    episodes = pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))
    out: dict[int, tuple[pd.DataFrame, np.ndarray]] = {}
    for agent in (1, 2):
        idx = pd.DataFrame(index[agent], columns=["task_id", "seed", "turn", "speaker"])
        lm = models[agent - 1][1]
        arr = np.concatenate(reps[agent]) if reps[agent] else np.empty((0, lm.n_layers, lm.hidden_size), np.float32)
        out[agent] = (idx, arr)
    return episodes, out


def write_episodes(episodes: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        episodes.to_parquet(tmp, index=False)
    return Path(path)


def read_episodes(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A dialogue table; errors name the file and the missing column."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated files
        raise ValueError(f"{path}: not a readable episodes table: {exc}") from exc
    missing = [c for c in EPISODE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: episodes table lacks column(s) {', '.join(missing)}")
    return frame


def load_pair(
    specs: Sequence[tuple[str, str, dict[str, Any]]], settings: GenerationSettings | None = None
) -> tuple[tuple[str, ChatLM], tuple[str, ChatLM]]:
    """Load the two agents' models (key, path, options); a same-model pair shares one instance."""
    settings = settings or GenerationSettings()
    gen = {"max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature,
           "stop_at_newline": settings.stop_at_newline}
    loaded: dict[tuple[str, str], ChatLM] = {}
    out = []
    for key, path, opts in specs:
        cache_key = (path, repr(sorted(opts.items())))
        if cache_key not in loaded:
            log.info("loading %s from %s", key, path)
            loaded[cache_key] = ChatLM.load(LMConfig.from_dict({**opts, **gen}, path=path))
        out.append((key, loaded[cache_key]))
    return out[0], out[1]


def simulate_block(
    tasks: pd.DataFrame,
    block: int,
    block_size: int,
    seed: int,
    models: tuple[tuple[str, ChatLM], tuple[str, ChatLM]],
    settings: GenerationSettings,
    templates: PromptTemplates,
    episodes_out: str | os.PathLike[str],
    reps_out: tuple[str | os.PathLike[str], str | os.PathLike[str]],
) -> None:
    """Run one block and write its dialogue table and both agents' genuine shards."""
    rows = block_rows(tasks, block, block_size)
    log.info("block %d: tasks %s, seed %d", block, rows["task_id"].tolist(), seed)
    episodes, reps = run_block(rows, models, seed, block, settings, templates)
    for agent in (1, 2):
        key, lm = models[agent - 1]
        idx, arr = reps[agent]
        write_shard(reps_out[agent - 1], idx, arr, shard_meta(lm, key, "genuine", templates))
    write_episodes(episodes, episodes_out)
    log.info("wrote %s (%d turns)", episodes_out, len(episodes))
