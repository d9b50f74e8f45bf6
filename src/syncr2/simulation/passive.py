"""Control 1, the passive reader (docs/protocol.md, "Passive reader").

For every recorded prompt of an episode, the model that played that turn
re-reads a transformed prompt in one forward pass (no generation): the
speaker's instructions become those of a reader persona (drawn per task in
the tasks stage, ``reader_name``) who only reads an interaction between two
other people; its block outputs at the last prompt token are recorded with
the same (task_id, seed, turn, speaker) index as the genuine shards.

The prompts are rendered with the date the genuine run used and the passive
shards record the genuine run's sampling settings (both read from the
episodes table's metadata, :func:`~.simulate.read_episode_generation`), so a
re-read on another day sees the same prompt text and pairs with the genuine
shards. An episodes table written before that metadata existed gives the
models' configured date and None sampling fields (unknown provenance).
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from ..core.shards import write_shard
from .lm import ChatLM
from .presets import PromptPreset
from .simulate import read_episode_generation, read_episodes, shard_meta
from .tasks import PERSONAS_ATTR

log = logging.getLogger(__name__)


def reader_names(episodes: pd.DataFrame, tasks: pd.DataFrame, preset: PromptPreset) -> dict[tuple[int, int], str]:
    """The passive reader of every (task_id, seed) of ``episodes``, by the preset's rule."""
    if "reader_name" not in tasks.columns:
        raise ValueError("tasks table has no reader_name column")
    by_task = tasks.set_index("task_id")["reader_name"]
    missing = sorted(set(episodes["task_id"]) - set(by_task.index))
    if missing:
        raise ValueError(f"tasks table has no row for task id(s) {missing[:5]}")
    in_file_order = list(tasks.attrs.get(PERSONAS_ATTR) or [])
    if preset.reader == "random_sample" and not in_file_order:
        raise ValueError(f"prompt preset {preset.name!r} draws readers from the personas in agent-file order, "
                         "which this tasks table does not record; rebuild results/tasks.parquet")
    out: dict[tuple[int, int], str] = {}
    for seed, rows in episodes.groupby("seed"):
        ids = sorted(int(t) for t in rows["task_id"].unique())
        drawn = preset.reader_names(ids, [], in_file_order, 0, int(seed)) if preset.reader == "random_sample" \
            else {t: str(by_task[t]) for t in ids}
        out.update({(t, int(seed)): name for t, name in drawn.items()})
    return out


def passive_prompts(episodes: pd.DataFrame, tasks: pd.DataFrame, preset: PromptPreset) -> list[str]:
    """The passive reader's user message for every row of ``episodes``."""
    readers = reader_names(episodes, tasks, preset)
    return [
        preset.passive_prompt(row.prompt, row.speaker_name, readers[(int(row.task_id), int(row.seed))])
        for row in episodes.itertuples(index=False)
    ]


def read_passive_block(
    episodes_path: str | os.PathLike[str],
    tasks: pd.DataFrame,
    models: tuple[tuple[str, ChatLM], tuple[str, ChatLM]],
    preset: PromptPreset,
    reps_out: tuple[str | os.PathLike[str], str | os.PathLike[str]],
) -> None:
    """Re-read one block's prompts passively and write both agents' passive shards.

    A seed the preset does not re-read (``passive_seeds``) is an error: its
    passive shards would hold a control the study does not define.
    """
    episodes = read_episodes(episodes_path)
    unread = sorted(int(s) for s in episodes["seed"].unique() if not preset.reads_seed(int(s)))
    if unread:
        raise ValueError(f"{episodes_path}: prompt preset {preset.name!r} re-reads seeds {list(preset.passive_seeds or [])} "
                         f"only, not seed(s) {unread}")
    recorded = read_episode_generation(episodes_path)
    if recorded is None:
        log.warning("%s records no generation settings; passive shards get none", episodes_path)
    for agent in (1, 2):
        key, lm = models[agent - 1]
        rows = episodes[episodes["speaker"] == agent].reset_index(drop=True)
        if (rows["model_key"] != key).any():
            other = rows.loc[rows["model_key"] != key, "model_key"].iloc[0]
            raise ValueError(f"{episodes_path}: agent {agent} turns were played by {other!r}, not {key!r}")
        generation = (recorded or {}).get(agent) or {"date_string": lm.cfg.date_string}
        date_string = generation.get("date_string") or lm.cfg.date_string
        texts = passive_prompts(rows, tasks, preset)
        # one reader's prompts of one episode extend each other: reuse their common prefixes
        keys = list(zip(rows["task_id"].astype(int), rows["seed"].astype(int)))
        reps = lm.capture([lm.render(t, date_string=date_string) for t in texts], keys=keys)
        index = rows[["task_id", "seed", "turn", "speaker"]]
        meta = shard_meta(lm, key, "passive", preset, {**generation, "date_string": date_string})
        write_shard(reps_out[agent - 1], index, reps, meta)
        log.info("agent %d (%s): %d passive readings -> %s", agent, key, len(rows), reps_out[agent - 1])
