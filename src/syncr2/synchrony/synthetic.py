"""Synthetic two-agent episodes with a planted, analytically known synchrony.

Each episode has a latent state per round, an AR(1) process
``z_r = rho z_{r-1} + sqrt(1 - rho^2) xi_r`` (z ~ N(0, I_k) throughout).
Round r holds turns 2r (agent 1) and 2r + 1 (agent 2). Agent 1's layer a at
turn 2r reads ``z_r A_a + noise_a``; agent 2's layer b at turn 2r + 1 reads
``z_r B_b + noise_b``; agent 2 at turn 2r+1 also drives agent 1 at turn 2r+2
through the AR step (the known-answer study's generator, ``planted_episode``, with
coupling 1). So predicting agent 2 from agent 1 works best at lag 0
and decays as rho^k over lag-k rounds; :func:`analytic_r2` gives the
population R2 of every layer pair, the value a ridge map fitted on enough
samples approaches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.shards import ShardMeta, write_shard
from .planted_study import planted_episode


@dataclass
class SyntheticSpec:
    """Shapes and signal of a synthetic pair."""

    n_tasks: int = 40
    seeds: tuple[int, ...] = (0, 1)
    n_turns: int = 8
    latent_dim: int = 4
    layers_a: int = 3
    dim_a: int = 8
    layers_b: int = 2
    dim_b: int = 6
    rho: float = 0.6
    noise_a: tuple[float, ...] = (0.3, 0.6, 1.2)
    noise_b: tuple[float, ...] = (0.4, 0.8)
    weight_seed: int = 1234
    loadings_a: list[np.ndarray] = field(init=False, repr=False)
    loadings_b: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.noise_a) != self.layers_a or len(self.noise_b) != self.layers_b:
            raise ValueError("noise_a / noise_b need one value per layer")
        rng = np.random.default_rng(self.weight_seed)
        self.loadings_a = [rng.normal(size=(self.latent_dim, self.dim_a)) for _ in range(self.layers_a)]
        self.loadings_b = [rng.normal(size=(self.latent_dim, self.dim_b)) for _ in range(self.layers_b)]


def simulate_reps(spec: SyntheticSpec, seed: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """(index_1, reps_1, index_2, reps_2) for every task of one seed."""
    rng = np.random.default_rng([spec.weight_seed, seed])
    loadings = {1: spec.loadings_a, 2: spec.loadings_b}
    noise = {1: spec.noise_a, 2: spec.noise_b}
    rows1, rows2, reps1, reps2 = [], [], [], []
    for task in range(spec.n_tasks):
        for turn, (h, _) in enumerate(planted_episode(rng, spec.n_turns, spec.rho, loadings, noise)):
            rows, reps = (rows1, reps1) if turn % 2 == 0 else (rows2, reps2)
            rows.append((task, seed, turn, 1 + turn % 2))
            reps.append(h)
    cols = ["task_id", "seed", "turn", "speaker"]
    return (
        pd.DataFrame(rows1, columns=cols), np.asarray(reps1, np.float32),
        pd.DataFrame(rows2, columns=cols), np.asarray(reps2, np.float32),
    )


def write_synthetic_shards(spec: SyntheticSpec, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write genuine shards (one per agent and seed) of a synthetic pair."""
    out = Path(out_dir)
    paths = []
    for seed in spec.seeds:
        idx1, reps1, idx2, reps2 = simulate_reps(spec, seed)
        for agent, idx, reps, key in ((1, idx1, reps1, "synth-a"), (2, idx2, reps2, "synth-b")):
            meta = ShardMeta(
                model_key=key, model_path="synthetic", revision=f"weights{spec.weight_seed}", dtype="float32",
                n_layers=reps.shape[1], hidden_size=reps.shape[2], kind="genuine",
            )
            paths.append(write_shard(out / f"seed{seed}" / f"agent{agent}.parquet", idx, reps, meta))
    return paths


def analytic_r2(spec: SyntheticSpec, direction: str = "AtoB", lag: int = 0) -> np.ndarray:
    """Population R2 (L_src, L_tgt) of the best linear map, averaged over target dims.

    The source reads z through loadings S with noise s^2, so E[z | x] has
    posterior covariance P = (I + S S^T / s^2)^-1. The target at ``m`` AR
    steps away reads rho^m z + innovation (covariance (1 - rho^{2m}) I) through
    T with noise t^2. Residual variance of target dim j: T_j^T ((1 - rho^{2m}) I
    + rho^{2m} P) T_j + t^2, total variance ||T_j||^2 + t^2.
    """
    if direction == "AtoB":
        src, src_noise, tgt, tgt_noise, steps = spec.loadings_a, spec.noise_a, spec.loadings_b, spec.noise_b, lag
    elif direction == "BtoA":  # agent 2 at round r, agent 1 at round r + 1 + lag
        src, src_noise, tgt, tgt_noise, steps = spec.loadings_b, spec.noise_b, spec.loadings_a, spec.noise_a, lag + 1
    else:
        raise ValueError(f"unknown direction {direction!r}")
    k = spec.latent_dim
    decay = spec.rho ** (2 * steps)
    out = np.empty((len(src), len(tgt)))
    for a, (S, s) in enumerate(zip(src, src_noise)):
        post = np.linalg.inv(np.eye(k) + S @ S.T / s**2)
        cond = (1 - decay) * np.eye(k) + decay * post
        for b, (T, t) in enumerate(zip(tgt, tgt_noise)):
            resid = np.einsum("kj,kl,lj->j", T, cond, T) + t**2
            total = (T * T).sum(0) + t**2
            out[a, b] = float(np.mean(1 - resid / total))
    return out
