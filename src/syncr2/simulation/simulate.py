"""Batched social episodes with hidden-state capture (docs/protocol.md, "Episodes" and "Capture").

All tasks of a block advance together, turn by turn: at turn t every still
running episode's speaker prompt is built, and ONE batched ``generate`` call
per turn (left padding; split into ``batch_size`` chunks by the model
wrapper) produces the utterances and, from the same prefill forward pass,
the speaker's block outputs at the last prompt token. Episodes that ended
(LEAVE or the turn cap) drop out of later calls.

Every reply is sampled from its own generator, seeded from (simulation seed,
task id, the ordered pair's model keys, turn) (:func:`episode_seed`), so an
episode's text is a function of the task, the ordered pair, the seed and the
generation settings only: ``block_size``, ``batch_size`` and which other
episodes are still running change speed and float rounding, not the dialogue.

Outputs per (pair, seed, block): the dialogue table (one row per turn; its
Parquet metadata records each agent's generation provenance, which the
passive reader copies) and one representation shard per agent.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..core.atomic import atomic_path
from ..core.shards import ShardMeta, write_shard
from .lm import DEFAULT_DATE_STRING, ChatLM, LMConfig, fixed_date, row_seed
from .presets import PromptPreset
from .tom import TOM_COLUMNS, ToMCapture, ToMFormat, tom_intro, tom_turn

log = logging.getLogger(__name__)

EPISODE_COLUMNS = (
    "task_id", "seed", "turn", "speaker", "speaker_name", "model_key", "prompt", "raw_output",
    "utterance", "end_reason", "n_prompt_tokens", "n_new_tokens",
)

#: Key of the episodes table's Parquet metadata: per agent, the generation provenance of its turns.
EPISODES_META_KEY = b"syncr2_generation"


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling and episode settings (config ``generation``).

    ``date_string`` is the date the chat templates see as today (fixed so a
    rerun or a passive re-read on another day renders the same prompts).
    """

    max_turns: int = 16
    temperature: float = 0.7
    max_new_tokens: int = 300
    stop_at_newline: bool = False
    date_string: str = DEFAULT_DATE_STRING

    def __post_init__(self) -> None:
        fixed_date(self.date_string)

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


def episode_seed(seed: int, task_id: int, model_keys: tuple[str, str], turn: int) -> int:
    """Sampling seed of one reply: a hash of (seed, task, ordered pair's model keys, turn), nothing else."""
    return row_seed("syncr2-episode", int(seed), int(task_id), list(model_keys), int(turn))


def generation_provenance(lm: ChatLM) -> dict[str, Any]:
    """The sampling settings in force for ``lm``'s replies, as recorded in shard metadata.

    temperature / top_k / top_p are the values in force (None when greedy;
    top_k / top_p resolve per checkpoint), plus the stop rule, the token cap
    and the fixed date of the prompts.
    """
    s = lm.generation_settings()
    return {
        "date_string": lm.cfg.date_string,
        "temperature": s["temperature"],
        "top_k": s["top_k"],
        "top_p": s["top_p"],
        "stop_at_newline": bool(s["stop_at_newline"]),
        "max_new_tokens": int(s["max_new_tokens"]),
    }


def library_versions() -> dict[str, str]:
    """torch and transformers versions, recorded with every shard."""
    import torch
    import transformers

    return {"torch_version": str(torch.__version__), "transformers_version": str(transformers.__version__)}


def shard_meta(
    lm: ChatLM, model_key: str, kind: str, preset: PromptPreset, generation: dict[str, Any] | None = None
) -> ShardMeta:
    """Provenance of the representations one model records.

    ``generation``: the sampling provenance (:func:`generation_provenance`);
    default: ``lm``'s own. Passive shards pass the genuine run's.
    """
    gen = generation_provenance(lm) if generation is None else generation
    return ShardMeta(
        model_key=model_key, model_path=str(lm.model_path), revision=str(lm.revision or lm.weights_hash),
        dtype=lm.dtype, n_layers=lm.n_layers, hidden_size=lm.hidden_size, kind=kind,
        template_hash=preset.sha256(), chat_template_sha256=lm.chat_template_sha256,
        **{k: gen.get(k) for k in ShardMeta.SAMPLING_FIELDS}, **library_versions(),
    )


def check_loaded(models: tuple[tuple[str, ChatLM], tuple[str, ChatLM]], settings: GenerationSettings,
                 preset: PromptPreset) -> None:
    """Refuse models loaded for another date or BOS rule than the generation settings and preset say."""
    for key, lm in models:
        if lm.cfg.date_string != settings.date_string:
            raise ValueError(f"model {key!r} renders prompts dated {lm.cfg.date_string!r} but the generation "
                             f"settings say {settings.date_string!r}; load the models with load_pair(specs, settings)")
        if lm.cfg.special_tokens != preset.special_tokens:
            raise ValueError(f"model {key!r} was loaded for special_tokens={lm.cfg.special_tokens!r} but prompt preset "
                             f"{preset.name!r} says {preset.special_tokens!r}; load the models with "
                             "load_pair(specs, settings, preset)")


def run_block(
    tasks: pd.DataFrame,
    models: tuple[tuple[str, ChatLM], tuple[str, ChatLM]],
    seed: int,
    block: int,
    settings: GenerationSettings,
    preset: PromptPreset,
    progress: bool = True, tom_mode: str | None = None,
) -> tuple[pd.DataFrame, dict[int, tuple[pd.DataFrame, np.ndarray]]]:
    """Simulate every task of ``tasks`` (one block) with agent 1 = models[0], agent 2 = models[1].

    Returns the episode table and, per agent, (index, reps (n, L, D)). Each reply is sampled with
    :func:`episode_seed`, so a task's result depends on neither the other tasks nor the batch size.
    Each agent's prompt reuses the key/value cache of its previous prompt in the episode
    (``prefix_reuse``, key (task id, agent)). ``tom_mode`` (constrained or free) runs the ToM
    condition (:mod:`~syncr2.simulation.tom`): the instruction after each intro, both distributions
    per turn in the ToM columns, the response alone in the dialogue."""
    n = len(tasks)
    check_loaded(models, settings, preset)
    pair_keys = (models[0][0], models[1][0])
    task_ids = [int(t) for t in tasks["task_id"]]
    names = {1: tasks["agent1_name"].tolist(), 2: tasks["agent2_name"].tolist()}
    intros = {1: tasks["intro1"].tolist(), 2: tasks["intro2"].tolist()}
    formats: dict[str, ToMFormat] = {}
    if tom_mode is not None:
        intros = {a: [tom_intro(x) for x in xs] for a, xs in intros.items()}
        formats = {k: ToMFormat.for_model(lm.tokenizer, lm.render("Hello"), k) for k, lm in models}
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
        prompts = [preset.prompt(intros[speaker][i], history[i], names[speaker][i], turn) for i in active]
        capture = ToMCapture(formats[key], tom_mode) if tom_mode is not None else None
        result = lm.generate(
            [lm.render(p) for p in prompts],
            seed=[episode_seed(seed, task_ids[i], pair_keys, turn) for i in active],
            keys=[(task_ids[i], speaker) for i in active],
            processors=capture,
        )
        dists = capture.distributions(len(active)) if capture is not None else None
        for j, i in enumerate(active):
            utterance, tom = preset.clean(result.texts[j]), {}
            if dists is not None:
                utterance, tom = tom_turn(result.texts[j], dists[0][j], dists[1][j], preset.clean)
            history[i].append((names[speaker][i], utterance))
            end = None
            if preset.ends_episode(turn, names[speaker][i], utterance):
                end = "leave"
            elif turn == settings.max_turns - 1:
                end = "max_turns"
            if end:
                running[i] = False
                for _, agent_lm in models:  # the ended episode's kept prompt caches
                    agent_lm.forget_prefixes([(task_ids[i], 1), (task_ids[i], 2)])
            task_id = task_ids[i]
            rows.append({
                "task_id": task_id, "seed": seed, "turn": turn, "speaker": speaker,
                "speaker_name": names[speaker][i], "model_key": key, "prompt": prompts[j],
                "raw_output": result.texts[j], "utterance": utterance, "end_reason": end,
                "n_prompt_tokens": int(result.n_prompt_tokens[j]), "n_new_tokens": int(result.n_new_tokens[j]),
                **tom,
            })
            index[speaker].append((task_id, seed, turn, speaker))
        reps[speaker].append(result.reps)
        log.info("turn %d: %d episodes running, speaker %d (%s); prefill %d tokens computed, %d reused so far",
                 turn, int(running.sum()), speaker, key, lm.prefixes.computed_tokens, lm.prefixes.reused_tokens)
    for _, agent_lm in models:
        agent_lm.prefixes.clear()
    episodes = pd.DataFrame(rows, columns=[*EPISODE_COLUMNS, *(TOM_COLUMNS if tom_mode else ())])
    return episodes, {agent: agent_reps(models[agent - 1][1], index[agent], reps[agent]) for agent in (1, 2)}


def agent_reps(lm: ChatLM, index: list[tuple[int, int, int, int]], reps: list[np.ndarray]
               ) -> tuple[pd.DataFrame, np.ndarray]:
    """One agent's shard rows: its (task, seed, turn, speaker) index and its (n, L, D) representations."""
    idx = pd.DataFrame(index, columns=["task_id", "seed", "turn", "speaker"])
    return idx, np.concatenate(reps) if reps else np.empty((0, lm.n_layers, lm.hidden_size), np.float32)


def write_episodes(
    episodes: pd.DataFrame, path: str | os.PathLike[str], generation: dict[int, dict[str, Any]] | None = None
) -> Path:
    """Write the dialogue table atomically; ``generation`` (agent -> provenance) goes into its metadata."""
    table = pa.Table.from_pandas(episodes, preserve_index=False)
    if generation is not None:
        meta = dict(table.schema.metadata or {})
        meta[EPISODES_META_KEY] = json.dumps({str(a): g for a, g in generation.items()}, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_episode_generation(path: str | os.PathLike[str]) -> dict[int, dict[str, Any]] | None:
    """Per agent, the generation provenance an episodes table records; None for tables written before it."""
    raw = (pq.read_schema(path).metadata or {}).get(EPISODES_META_KEY)
    if raw is None:
        return None
    try:
        return {int(a): dict(g) for a, g in json.loads(raw).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: metadata '{EPISODES_META_KEY.decode()}' is malformed: {exc}") from exc


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
    specs: Sequence[tuple[str, str, dict[str, Any]]],
    settings: GenerationSettings | None = None,
    preset: PromptPreset | None = None,
) -> tuple[tuple[str, ChatLM], tuple[str, ChatLM]]:
    """Load the two agents' models (key, path, options); a same-model pair shares one instance.

    The prompt ``preset`` (default ``protocol``) supplies a model's chat
    template when its options give none, and whether the tokenizer adds its
    BOS in front of the template's text.
    """
    settings = settings or GenerationSettings()
    preset = preset or PromptPreset.from_config(None)
    gen = {"max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature,
           "stop_at_newline": settings.stop_at_newline, "date_string": settings.date_string,
           "special_tokens": preset.special_tokens}
    loaded: dict[tuple[str, str], ChatLM] = {}
    out = []
    for key, path, opts in specs:
        preset.check_model(key, path, opts.get("chat_template"))
        opts = {**opts, "chat_template": opts.get("chat_template") or preset.chat_template_for(path)}
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
    preset: PromptPreset,
    episodes_out: str | os.PathLike[str],
    reps_out: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    tom_mode: str | None = None,
) -> None:
    """Run one block and write its dialogue table and both agents' genuine shards (``tom_mode``: the
    ToM condition's, whose table adds the ToM columns and whose turns count their compliance)."""
    rows = block_rows(tasks, block, block_size)
    log.info("block %d: tasks %s, seed %d%s", block, rows["task_id"].tolist(), seed,
             f", ToM condition ({tom_mode})" if tom_mode else "")
    episodes, reps = run_block(rows, models, seed, block, settings, preset, tom_mode=tom_mode)
    if tom_mode is not None:
        log.info("ToM turns following the format: %d of %d", int(episodes["compliant"].sum()), len(episodes))
    generation = {agent: generation_provenance(models[agent - 1][1]) for agent in (1, 2)}
    for agent in (1, 2):
        key, lm = models[agent - 1]
        idx, arr = reps[agent]
        write_shard(reps_out[agent - 1], idx, arr, shard_meta(lm, key, "genuine", preset, generation[agent]))
    write_episodes(episodes, episodes_out, generation)
    log.info("wrote %s (%d turns)", episodes_out, len(episodes))
