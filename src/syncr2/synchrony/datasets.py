"""Condition datasets: paired (source, target) samples and the fixed-size split.

docs/protocol.md, "Conditions" and "Datasets and splits". From the turn-level
shards of a pair's genuine run (and its passive re-reading) we pair agent A's representation at turn t with agent
B's at turn t + 1 + 2k:

* ``experimental``: genuine source, k = 0;
* ``passive``: the source from the passive reading of the same prompt, the
  target from the genuine run, k = 0;
* ``lagK`` (K >= 1): genuine source, k = K;
* the lag profile's negative lags (``Condition.at_lag``): genuine source,
  k = -K, the partner's earlier turn t + 1 - 2K.

Direction ``AtoB`` takes source turns t = 0, 2, 4, ... (agent 1 speaks),
``BtoA`` takes t = 1, 3, 5, ... (agent 2 speaks). All samples of one task, over
all seeds, form one group; the split puts whole groups into the test set until
it holds at least ``test_fraction * size`` samples, then whole groups into the
train set until it holds the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.conditions import (
    Condition,
    DatasetError,
    direction_speakers,
    split_sizes,
)
from ..core.config import samples_per_episode
from ..core.shards import Shard, ShardError, ShardMeta, check_agree, open_shard
from .ridge import LayerStreams


@dataclass
class AgentReps:
    """All representations one agent recorded, over several shards (seeds, blocks)."""

    shards: list[Shard]
    index: pd.DataFrame  # task_id, seed, turn, speaker, shard, row

    @classmethod
    def from_shards(cls, shards: list[Shard]) -> "AgentReps":
        """Combine one agent's shards, checking that they come from one model, protocol and provenance.

        The shards must agree on the model fields (including the chat
        template's hash), the kind, the pair fields (date, sampling settings,
        library versions, protocol) and top_k / top_p.
        """
        if not shards:
            raise DatasetError("no shards given")
        fields = (*ShardMeta.MODEL_FIELDS, "kind", *ShardMeta.PAIR_FIELDS, "top_k", "top_p")
        frames = []
        for i, sh in enumerate(shards):
            check_agree(shards[0], sh, fields, "shards of one agent")
            idx = sh.index()
            idx["shard"] = i
            idx["row"] = np.arange(len(idx))
            frames.append(idx)
        index = pd.concat(frames, ignore_index=True)
        dup = index.duplicated(["task_id", "seed", "turn"])
        if dup.any():
            row = index[dup].iloc[0]
            raise DatasetError(
                f"turn recorded twice: task {row.task_id}, seed {row.seed}, turn {row.turn} "
                f"(in {shards[int(row.shard)].path}); a shard was passed twice or blocks overlap"
            )
        return cls(shards, index)

    @property
    def n_layers(self) -> int:
        return self.shards[0].meta.n_layers

    @property
    def hidden_size(self) -> int:
        return self.shards[0].meta.hidden_size

    def load(self, layer: int, positions: np.ndarray) -> np.ndarray:
        """Layer ``layer`` for the index rows at ``positions`` (in that order), float32 (n, D)."""
        out = np.empty((len(positions), self.hidden_size), dtype=np.float32)
        sel = self.index.iloc[positions]
        for shard_no, grp in sel.groupby("shard", sort=False):
            data = self.shards[int(shard_no)].layer(layer)
            where = np.flatnonzero(sel["shard"].to_numpy() == shard_no)
            out[where] = data[grp["row"].to_numpy()]
        return out


def open_by_speaker(paths: Iterable[str | os.PathLike[str]], kind: str) -> dict[int, AgentReps]:
    """Open shards of ``kind`` (genuine|passive) and group them by the agent they hold."""
    grouped: dict[int, list[Shard]] = {}
    for p in paths:
        sh = open_shard(p, kind=kind)
        speakers = sorted(int(s) for s in sh.index()["speaker"].unique())
        if len(speakers) != 1:
            raise ShardError(f"{sh.path}: field 'speaker' holds {speakers}; a shard must hold one agent's turns")
        grouped.setdefault(speakers[0], []).append(sh)
    if not grouped:
        raise DatasetError(f"no {kind} shards given")
    return {spk: AgentReps.from_shards(shs) for spk, shs in sorted(grouped.items())}


@dataclass
class ConditionDataset:
    """Paired samples of one (condition, direction): which rows of which agent."""

    condition: Condition
    direction: str
    pairs: pd.DataFrame  # task_id, seed, src_turn, tgt_turn, src_pos, tgt_pos
    source: AgentReps
    target: AgentReps
    groups: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.groups = self.pairs["task_id"].to_numpy()

    def __len__(self) -> int:
        return len(self.pairs)

    def load_source(self, layer: int, samples: np.ndarray) -> np.ndarray:
        return self.source.load(layer, self.pairs["src_pos"].to_numpy()[samples])

    def streams(self, samples: np.ndarray) -> LayerStreams:
        """Both sides' layers, one at a time, restricted to ``samples`` (in that order)."""
        return LayerStreams(lambda a: self.load_source(a, samples), lambda b: self.load_target(b, samples),
                            self.source.n_layers, self.target.n_layers)

    def load_target(self, layer: int, samples: np.ndarray) -> np.ndarray:
        return self.target.load(layer, self.pairs["tgt_pos"].to_numpy()[samples])


def pair_turns(source_index: pd.DataFrame, target_index: pd.DataFrame, direction: str, lag: int) -> pd.DataFrame:
    """Join source turns t with target turns t + 1 + 2*lag of the same task and seed (a negative lag: the
    partner's earlier turn)."""
    src_spk, tgt_spk = direction_speakers(direction)
    src = source_index.reset_index().rename(columns={"index": "src_pos", "turn": "src_turn"})
    tgt = target_index.reset_index().rename(columns={"index": "tgt_pos", "turn": "tgt_turn"})
    src = src[(src.speaker == src_spk) & (src.src_turn % 2 == src_spk - 1)]
    tgt = tgt[tgt.speaker == tgt_spk]
    src = src.assign(tgt_turn=src.src_turn + 1 + 2 * lag)
    merged = src.merge(tgt[["task_id", "seed", "tgt_turn", "tgt_pos"]], on=["task_id", "seed", "tgt_turn"])
    merged = merged.sort_values(["task_id", "seed", "src_turn"], kind="stable").reset_index(drop=True)
    return merged[["task_id", "seed", "src_turn", "tgt_turn", "src_pos", "tgt_pos"]]


Shards = dict[int, AgentReps] | Sequence[str | os.PathLike[str]]


def build_dataset(genuine: Shards, condition: str | Condition, direction: str,
                  passive: Shards | None = None) -> ConditionDataset:
    """Paired samples of ``condition`` and ``direction`` from a pair's shards.

    ``genuine`` holds both agents' genuine shards (all seeds and blocks), as
    paths or as :func:`open_by_speaker`'s result; ``passive`` likewise the
    passive re-readings, needed only for ``condition="passive"``.
    """
    cond = condition if isinstance(condition, Condition) else Condition.parse(condition)
    src_spk, tgt_spk = direction_speakers(direction)
    gen = genuine if isinstance(genuine, dict) else open_by_speaker(genuine, "genuine")
    for spk in (src_spk, tgt_spk):
        if spk not in gen:
            raise DatasetError(f"no genuine shard holds agent {spk}'s turns")
    target = gen[tgt_spk]
    source = gen[src_spk]
    if cond.source_kind == "passive":
        if passive is None:
            raise DatasetError("condition 'passive' needs the passive shards")
        pas = passive if isinstance(passive, dict) else open_by_speaker(passive, "passive")
        if src_spk not in pas:
            raise DatasetError(f"no passive shard holds agent {src_spk}'s turns")
        source = pas[src_spk]
        # the passive re-reading and the genuine run of the same agent: one model, one template
        check_agree(gen[src_spk].shards[0], source.shards[0],
                    (*ShardMeta.MODEL_FIELDS, *ShardMeta.PAIR_FIELDS, "top_k", "top_p"),
                    f"genuine and passive shards of agent {src_spk}")
    # source and target agents: possibly two models, so the template hash and top_k/top_p may differ
    check_agree(source.shards[0], target.shards[0], ShardMeta.PAIR_FIELDS, "source and target shards of a pair")
    pairs = pair_turns(source.index, target.index, direction, cond.lag)
    if pairs.empty:
        turns = pd.concat([r.index for r in gen.values()])
        longest = int((turns.groupby(["task_id", "seed"])["turn"].max() + 1).max())
        raise DatasetError(
            f"{cond.name} {direction}: no sample pairs; lag {cond.lag} needs episodes of at least "
            f"{min(t for t in range(1, 4 * abs(cond.lag) + 8) if samples_per_episode(t, direction, cond.lag))} "
            f"turns, the longest episode has {longest} turns"
        )
    return ConditionDataset(cond, direction, pairs, source, target)


def fixed_size_split(
    groups: np.ndarray, size: int, split_seed: int, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded group split: whole groups into test until >= test part, then into train.

    Returns sample indices (train, test). Groups are shuffled with
    ``numpy.random.default_rng(split_seed)``. Raises :class:`DatasetError`
    naming the available count when the groups cannot fill ``size``.
    """
    groups = np.asarray(groups)
    n_train_min, n_test_min = split_sizes(size, test_fraction)
    unique = np.unique(groups)
    order = np.random.default_rng(split_seed).permutation(len(unique))
    members = pd.Series(np.arange(len(groups))).groupby(groups).apply(list).to_dict()
    train: list[int] = []
    test: list[int] = []
    for g in unique[order]:
        if len(test) < n_test_min:
            test.extend(members[g])
        elif len(train) < n_train_min:
            train.extend(members[g])
        else:
            break
    if len(test) < n_test_min or len(train) < n_train_min:
        raise DatasetError(
            f"not enough samples for size {size}: the dataset has {len(groups)} samples in "
            f"{len(unique)} task groups, the split needs >= {n_test_min} test and >= {n_train_min} "
            f"train samples in whole groups; lower the sample size to at most about {len(groups)} "
            f"or add tasks/seeds"
        )
    return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)


def persona_pair_table(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per task: ``task_id``, ``persona_pair`` (the two agent pks, sorted, joined by "|") and its ``group`` code.

    Codes number the distinct unordered persona pairs in sorted order, so they
    do not depend on the order of the tasks.
    """
    missing = [c for c in ("task_id", "agent1_pk", "agent2_pk") if c not in tasks.columns]
    if missing:
        raise ValueError(f"tasks table lacks column(s) {', '.join(missing)} (results/tasks.parquet has them)")
    dup = tasks["task_id"].duplicated()
    if dup.any():
        raise ValueError(f"tasks table lists task_id {tasks.loc[dup, 'task_id'].iloc[0]} more than once")
    key = ["|".join(sorted((str(a), str(b)))) for a, b in zip(tasks["agent1_pk"], tasks["agent2_pk"])]
    codes = {k: i for i, k in enumerate(sorted(set(key)))}
    return pd.DataFrame({"task_id": tasks["task_id"].to_numpy(), "persona_pair": key,
                         "group": np.array([codes[k] for k in key], dtype=np.int64)})


def persona_pair_groups(pairs: pd.DataFrame, tasks: pd.DataFrame) -> np.ndarray:
    """Each sample's group for a persona-disjoint split: its task's UNORDERED persona pair.

    ``pairs`` has one row per sample with ``task_id`` (a
    :class:`~syncr2.synchrony.datasets.ConditionDataset`'s ``pairs``);
    ``tasks`` has ``task_id``, ``agent1_pk``, ``agent2_pk``. Tasks that share
    their two personas (in either role) share a group, so
    :func:`~syncr2.synchrony.datasets.fixed_size_split` with these groups puts
    no persona pair in both train and test. Sotopia's 450 tasks form 93 groups.
    """
    if "task_id" not in pairs.columns:
        raise ValueError("sample table lacks column 'task_id'")
    table = persona_pair_table(tasks).set_index("task_id")["group"]
    ids = pairs["task_id"].to_numpy()
    unknown = sorted(set(ids.tolist()) - set(table.index.tolist()))
    if unknown:
        raise ValueError(f"task_id(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''} of the samples are not "
                         f"in the tasks table; use the tasks table of the same run (results/tasks.parquet)")
    return table.reindex(ids).to_numpy(dtype=np.int64)
