"""A known-answer study: planted representations in place of LLM runs (``config/synthetic.yaml``).

Every model is a set of layer loadings; an episode is a latent AR(1) process
``z_r = rho z_{r-1} + sqrt(1 - rho^2) xi_r`` over rounds r (round r holds turns
2r, spoken by agent 1, and 2r + 1, agent 2). Agent 1's layer l reads
``z_r S_l + a_l eps``; agent 2's reads ``(c z_r + sqrt(1 - c^2) u_r) T_l + a_l eps``
with ``u_r`` a private iid latent and ``c`` the pair's planted coupling
(``coupling: 0`` plants no synchrony at all). So:

* synchrony declines with lag as ``rho^k`` (lag-k targets are k rounds on);
* the passive source is the genuine one plus ``passive_noise`` (a planted,
  weaker passive condition);
* :func:`analytic_r2` gives the population R2 of every layer pair of a
  (pair, condition, direction), and :func:`analytic_syncr2` its SyncR2 (the
  values the workflow must recover);
* the planted performance of a pair is ``intercept + slope * SyncR2 + noise``
  with the analytic four-value SyncR2 (:func:`planted_performance_scores`).

Draws depend on (weight_seed, pair, seed, task) only, never on the block
size. The outputs are the simulate and read_passive rules' files (episodes
table, genuine and passive shards), so every later rule runs unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.atomic import write_parquet
from ..core.conditions import Condition
from ..core.shards import ShardMeta, write_shard
from ..simulation.simulate import EPISODE_COLUMNS
from .sync import sync_r2

log = logging.getLogger(__name__)



def _key_seed(*parts: Any) -> list[int]:
    """A numpy seed sequence entropy from strings and ints (stable across runs)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


@dataclass(frozen=True)
class PlantedStudy:
    """The config's ``synthetic`` section (module docstring)."""

    n_turns: int = 8
    latent_dim: int = 3
    layers: int = 3
    dim: int = 6
    rho: float = 0.5
    noise: tuple[float, ...] = (0.5, 1.0, 2.0)
    passive_noise: float = 1.5
    coupling: Mapping[str, float] = field(default_factory=dict)
    weight_seed: int = 7
    performance: Mapping[str, float] = field(default_factory=lambda: {
        "intercept": 2.0, "slope": 5.0, "noise_sd": 0.02, "seed": 11})

    def __post_init__(self) -> None:
        if len(self.noise) != self.layers:
            raise ValueError(f"synthetic.noise needs one value per layer ({self.layers}), got {len(self.noise)}")
        if not 0 <= self.rho < 1:
            raise ValueError(f"synthetic.rho must be in [0, 1), got {self.rho}")
        for pair, c in self.coupling.items():
            if not 0 <= c <= 1:
                raise ValueError(f"synthetic.coupling.{pair} must be in [0, 1], got {c}")
        if self.n_turns < 2:
            raise ValueError(f"synthetic.n_turns must be >= 2, got {self.n_turns}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> PlantedStudy:
        data = dict(section)
        data.pop("n_tasks", None)
        if "noise" in data:
            data["noise"] = tuple(float(x) for x in data["noise"])
        return cls(**data)

    def loadings(self, model: str) -> list[np.ndarray]:
        """A model's (latent_dim, dim) loadings per layer, seeded by the model key."""
        rng = np.random.default_rng(_key_seed("loadings", self.weight_seed, model))
        return [rng.normal(size=(self.latent_dim, self.dim)) / math.sqrt(self.latent_dim) for _ in range(self.layers)]

    def coupling_of(self, pair: str) -> float:
        if pair not in self.coupling:
            raise ValueError(f"synthetic.coupling has no value for pair {pair!r}; known: {sorted(self.coupling)}")
        return float(self.coupling[pair])


# ------------------------------------------------------------------- generation
def planted_episode(
    rng: np.random.Generator, n_turns: int, rho: float, loadings: Mapping[int, Sequence[np.ndarray]],
    noise: Mapping[int, Sequence[float]], coupling: float = 1.0, passive_noise: float | None = None,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """One planted episode, turn by turn: (genuine (L, D), passive or None) of the speaker, agent 1 + turn % 2.

    The one generator of planted representations (module docstring): the AR(1)
    latent ``z``, agent 2's coupled latent ``c z + sqrt(1 - c^2) u``, each layer's
    ``latent @ loading + noise``, and, with ``passive_noise``, the passive reader's
    copy plus that much noise. ``loadings[agent]`` are (latent_dim, D) per layer.
    """
    latent_dim = loadings[1][0].shape[0]
    n_rounds = (n_turns + 1) // 2
    z = np.empty((n_rounds, latent_dim))
    z[0] = rng.normal(size=latent_dim)
    for r in range(1, n_rounds):
        z[r] = rho * z[r - 1] + math.sqrt(1 - rho ** 2) * rng.normal(size=latent_dim)
    u = rng.normal(size=(n_rounds, latent_dim))
    turns: list[tuple[np.ndarray, np.ndarray | None]] = []
    for turn in range(n_turns):
        r, agent = turn // 2, 1 + turn % 2
        latent = z[r] if agent == 1 else coupling * z[r] + math.sqrt(1 - coupling * coupling) * u[r]
        genuine = np.stack([latent @ w + s * rng.normal(size=w.shape[1]) for w, s in zip(loadings[agent], noise[agent])])
        passive = None if passive_noise is None else genuine + passive_noise * rng.normal(size=genuine.shape)
        turns.append((genuine, passive))
    return turns


def simulate_pair_seed(
    study: PlantedStudy, pair: str, m1: str, m2: str, seed: int, task_ids: Sequence[int]
) -> tuple[pd.DataFrame, dict[str, dict[int, tuple[pd.DataFrame, np.ndarray]]]]:
    """Episodes table and reps {"genuine"|"passive": {agent: (index, (n, L, D))}} of some tasks."""
    c = study.coupling_of(pair)
    load = {1: study.loadings(m1), 2: study.loadings(m2)}
    rows: list[dict[str, Any]] = []
    out: dict[str, dict[int, list]] = {"genuine": {1: [], 2: []}, "passive": {1: [], 2: []}}
    index: dict[int, list] = {1: [], 2: []}
    for task in task_ids:
        rng = np.random.default_rng(_key_seed("episode", study.weight_seed, pair, int(seed), int(task)))
        turns = planted_episode(rng, study.n_turns, study.rho, load, {1: study.noise, 2: study.noise}, c,
                                study.passive_noise)
        for turn, (genuine, passive) in enumerate(turns):
            agent = 1 + turn % 2
            out["genuine"][agent].append(genuine)
            out["passive"][agent].append(passive)
            index[agent].append((int(task), int(seed), turn, agent))
            last = turn == study.n_turns - 1
            rows.append({
                "task_id": int(task), "seed": int(seed), "turn": turn, "speaker": agent,
                "speaker_name": f"agent {agent}", "model_key": m1 if agent == 1 else m2, "prompt": "",
                "raw_output": "", "utterance": "", "end_reason": "max_turns" if last else None,
                "n_prompt_tokens": 0, "n_new_tokens": 0,
            })
    cols = ["task_id", "seed", "turn", "speaker"]
    reps = {
        kind: {a: (pd.DataFrame(index[a], columns=cols), np.asarray(out[kind][a], np.float32)) for a in (1, 2)}
        for kind in ("genuine", "passive")
    }
    return pd.DataFrame(rows, columns=list(EPISODE_COLUMNS)), reps


def write_planted_block(
    study: PlantedStudy, pair: str, m1: str, m2: str, seed: int, task_ids: Sequence[int],
    episodes_out: str | os.PathLike[str], genuine_out: Sequence[str | os.PathLike[str]],
    passive_out: Sequence[str | os.PathLike[str]],
) -> None:
    """Write one block's episodes table and both agents' genuine and passive shards (atomically)."""
    episodes, reps = simulate_pair_seed(study, pair, m1, m2, seed, task_ids)
    for kind, outs in (("genuine", genuine_out), ("passive", passive_out)):
        for agent, path in zip((1, 2), outs):
            idx, arr = reps[kind][agent]
            meta = ShardMeta(
                model_key=m1 if agent == 1 else m2, model_path="synthetic", revision=f"planted-{study.weight_seed}",
                dtype="float32", n_layers=study.layers, hidden_size=study.dim, kind=kind,
            )
            write_shard(path, idx, arr, meta)
    write_parquet(episodes, episodes_out)


# --------------------------------------------------------------------- analytics
def _posterior(src: list[np.ndarray], noise: Sequence[float], coupling: float, k: int) -> list[np.ndarray]:
    """Posterior covariance of z given one source layer, per layer (see :func:`analytic_r2`)."""
    out = []
    for w, s in zip(src, noise):
        shared = (1 - coupling ** 2) * (w.T @ w) + s ** 2 * np.eye(w.shape[1])
        precision = np.eye(k) + coupling ** 2 * w @ np.linalg.solve(shared, w.T)
        out.append(np.linalg.inv(precision))
    return out


def analytic_r2(study: PlantedStudy, pair: str, m1: str, m2: str, condition: str, direction: str) -> np.ndarray:
    """Population R2 (L, L) of the best linear map of a (pair, condition, direction).

    The source layer reads the latent with signal strength ``c_src`` (1 for
    agent 1, the coupling for agent 2) and noise s (plus ``passive_noise`` for
    the passive source), so E[z | x] leaves posterior covariance P. The target
    is ``m`` AR steps away (AtoB: lag; BtoA: lag + 1) and reads the latent with
    strength ``c_tgt``: residual variance of its dim j is ``c_tgt^2 T_j^T ((1 -
    rho^{2m}) I + rho^{2m} P) T_j + (1 - c_tgt^2) ||T_j||^2 + t^2``, total
    ``||T_j||^2 + t^2``; R2 is the mean of 1 - residual / total over dims.
    """
    cond = Condition.parse(condition)
    c = study.coupling_of(pair)
    extra = study.passive_noise if cond.source_kind == "passive" else 0.0
    src_noise = [math.sqrt(s * s + extra * extra) for s in study.noise]
    if direction == "AtoB":
        src, c_src, tgt, c_tgt, steps = study.loadings(m1), 1.0, study.loadings(m2), c, cond.lag
    elif direction == "BtoA":
        src, c_src, tgt, c_tgt, steps = study.loadings(m2), c, study.loadings(m1), 1.0, cond.lag + 1
    else:
        raise ValueError(f"unknown direction {direction!r}")
    k = study.latent_dim
    decay = study.rho ** (2 * steps)
    out = np.empty((study.layers, study.layers))
    for a, post in enumerate(_posterior(src, src_noise, c_src, k)):
        cond_cov = (1 - decay) * np.eye(k) + decay * post
        for b, (w, t) in enumerate(zip(tgt, study.noise)):
            total = (w * w).sum(0) + t * t
            resid = c_tgt ** 2 * np.einsum("kj,kl,lj->j", w, cond_cov, w) + (1 - c_tgt ** 2) * (w * w).sum(0) + t * t
            out[a, b] = float(np.mean(1 - resid / total))
    return out


def analytic_syncr2(study: PlantedStudy, pair: str, m1: str, m2: str, condition: str, direction: str,
                    clip: bool = True) -> float:
    """SyncR2 of the analytic grid (best target layer per source layer, floored at 0 unless ``clip=False``)."""
    return sync_r2(analytic_r2(study, pair, m1, m2, condition, direction)[None], clip=clip).value


def analytic_table(study: PlantedStudy, pairs: Mapping[str, tuple[str, str]], conditions: Sequence[str],
                   directions: Sequence[str]) -> pd.DataFrame:
    """The planted truth: analytic SyncR2 (clipped and not) of every pair, condition and direction."""
    rows = []
    for pair, (m1, m2) in pairs.items():
        for condition in conditions:
            for direction in directions:
                rows.append({
                    "pair": pair, "condition": condition, "direction": direction, "coupling": study.coupling_of(pair),
                    "syncr2": analytic_syncr2(study, pair, m1, m2, condition, direction),
                    "syncr2_unclipped": analytic_syncr2(study, pair, m1, m2, condition, direction, clip=False),
                })
    return pd.DataFrame(rows)


def planted_performance_scores(study: PlantedStudy, pairs: Mapping[str, tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Per ordered pair: intercept + slope * (mean experimental AtoB/BtoA analytic SyncR2) + Gaussian noise."""
    p = study.performance
    out = {}
    for pair, (m1, m2) in sorted(pairs.items()):
        sync = np.mean([analytic_syncr2(study, pair, m1, m2, "experimental", d) for d in ("AtoB", "BtoA")])
        rng = np.random.default_rng(_key_seed("performance", int(p.get("seed", 0)), pair))
        out[(m1, m2)] = float(p["intercept"] + p["slope"] * sync + p["noise_sd"] * rng.normal())
    return out


def write_truth(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the planted-truth table atomically."""
    return write_parquet(frame, path)


def run_planted_block(section: Mapping[str, Any], pair: str, models: Sequence[str], seed: int, block: int,
                      block_size: int, n_tasks: int, episodes_out: str | os.PathLike[str],
                      genuine_out: Sequence[str | os.PathLike[str]], passive_out: Sequence[str | os.PathLike[str]]) -> None:
    """The ``synthesize`` step: block ``block`` of the config's ``synthetic`` study for one pair and seed."""
    study = PlantedStudy.from_config(section)
    first = block * block_size
    ids = list(range(first, min(first + block_size, n_tasks)))
    if not ids:
        raise ValueError(f"block {block} is empty: {n_tasks} tasks in blocks of {block_size}")
    m1, m2 = models
    write_planted_block(study, pair, m1, m2, seed, ids, episodes_out, genuine_out, passive_out)
    log.info("wrote planted block %s of %s, seed %s (%d tasks)", block, pair, seed, len(ids))
