"""Surrogate null for SyncR2: pseudo-pairs and within-episode shuffles.

docs/analyses.md, "Surrogate null". Is a SyncR2 larger than what agents that never
interacted would show? We rebuild the score on surrogate datasets in which
only the TARGET rows move, and compare the real score with R such draws.

Modes (a "stratum" is the set of rows allowed to swap targets):

* ``pseudo_task``: agent A of task i with agent B of another task, same seed
  and same source turn; strata (seed, src_turn), each deranged (no row keeps
  its own target). Tests synchrony beyond what any two conversations of the
  protocol share at that turn.
* ``pseudo_seed``: same task, another seed, same source turn; strata
  (task_id, src_turn), deranged. Same scenario and personas, a different
  conversation: isolates synchrony that comes from the shared static context.
  Needs >= 2 seeds: with one seed every stratum has one row and the mode is
  not applicable (:class:`SurrogateError`, or left out with
  ``skip_inapplicable=True``). With exactly 2 seeds a stratum's only
  derangement is the swap, so all R draws are the SAME surrogate (summary
  ``n_distinct`` 1, sd 0, no z): a single comparison, not a distribution.
* ``turn_rotation``: each episode's target sequence (rows in source-turn order)
  rotated by a random shift drawn uniformly from 0..m-1 per (draw, episode);
  strata (task_id, seed). Each series keeps its own autocorrelation (the
  hyperscanning field's circular-shift surrogate), so only the alignment of
  the two agents' turns is broken. The shift 0 is allowed: the rotations of an
  episode form a group, and a permutation test is exact when its draws are
  uniform over a group that contains the observed alignment. Drawing from
  1..m-1 only (no original pairing kept) was measured liberal: with episodes
  of 4 samples, two draws share an episode's shift a third of the time while
  no draw ever shares the real one, so the draws cluster and p comes out too
  small (27 of 300 null datasets at p <= 0.05, binomial interval
  [0.060, 0.128]). An episode keeps its own alignment in a draw with chance
  1/m (``n_unmoved_rows``), as under ``shuffle_within``; an episode of one row
  stays in place.
* ``shuffle_within``: the authors' control, a uniform random permutation of
  the targets within each (task_id, seed) episode. Fixed points occur by
  chance, as in an ordinary permutation test: an episode of m samples keeps
  one true pair on average (``n_unmoved_rows``), a quarter of the rows when
  episodes give 4 samples.

The split comes FIRST (``fixed_size_split``, whole task groups), then the
rows of the train part and of the test part are permuted separately, so a
target never crosses the split. A stratum of one row cannot be deranged or
shuffled: its row is left in place and counted (``n_fixed_rows``). A mode
under which no row of a split can move raises :class:`SurrogateError`.

Reuse of the factorisation: only target rows move, so each source layer's hat
matrix and every target layer's Gram terms are computed once and a draw costs
two gathers (``synchrony.permuted_grids``), not a refit.

Pooling split seeds: a permutation test compares the real statistic with the
same statistic on relabelled copies of the SAME data. The real SyncR2 averages
its split seeds over one dataset, so their values are strongly correlated; a
null draw must relabel the dataset once and run every split seed on that one
relabelling. Averaging split seeds that were permuted independently gives a
null that is too narrow, and p too small (measured: 25 of 300 null datasets at
p <= 0.05 with three split seeds). The modes whose strata lie inside one task
(``pseudo_seed``, ``shuffle_within``, ``turn_rotation``: :data:`SHARED`) do
this: draw r is one permutation of the whole dataset, and each split seed
applies its restriction to the split's train and test rows (a stratum never
straddles the split, because the split keeps task groups whole).
``pseudo_task`` pairs rows ACROSS tasks, so a dataset-wide permutation would
carry targets over the split; it is drawn per split seed and part, and its
pooled null is an approximation (docs/analyses.md, "Surrogate null").

Permutations are reproducible. A shared mode's draws come from
``numpy.random.default_rng((seed, mode_code))``; ``pseudo_task``'s draws of
split seed s from ``numpy.random.default_rng((seed, s, mode_code))``. Mode
codes are fixed (pseudo_task 1, pseudo_seed 2, shuffle_within 3,
turn_rotation 4), so a draw does not depend on which other modes are run.
Draw r's SyncR2 is ``sync_r2`` of the cube (split seeds, L_A, L_B) of the
r-th null grids.

Draws table (``surrogate_draws`` / ``run_surrogate``; one row per (mode, perm)):

====================== ==============================================================
column                 meaning
====================== ==============================================================
pair, condition,       which R2 dataset (``run_surrogate`` fills them; ``surrogate_draws``
direction              leaves pair empty)
source_model,          model keys of the source and target shards
target_model
mode                   pseudo_task | pseudo_seed | shuffle_within | turn_rotation
perm                   permutation index 0..R-1
syncr2                 null SyncR2 of this draw, clipped (max(0, .) per source layer)
syncr2_unclipped       null SyncR2 of this draw, unclipped
real_syncr2            the real (unpermuted) SyncR2, clipped (same in every row)
real_syncr2_unclipped  the real SyncR2, unclipped
n_rows                 samples in the splits, summed over split seeds
n_fixed_rows           rows in strata of one row (left in place), summed over split seeds
n_unmoved_rows         rows that kept their own target in this draw (fixed rows plus,
                       for shuffle_within, chance fixed points), summed over split seeds
n_perm                 R
n_split_seeds          number of split seeds
size, test_fraction,   the split and ridge settings; ``seed``: the permutation seed
alpha, seed
====================== ==============================================================

Summary table (``summarize_surrogate``; the future
``results/summary/surrogate.parquet``; one row per (pair, condition,
direction, mode, score)):

================ ====================================================================
column           meaning
================ ====================================================================
pair, condition, as in the draws; direction ``combined`` (when both AtoB and BtoA
direction        are present): draw r is the mean of the two directions' draws r
                 (independent permutations), real the mean of the two reals
mode             the surrogate mode
score            ``clipped`` (the paper's SyncR2) or ``unclipped``
real             the real SyncR2
null_mean        mean of the R null draws
null_sd          their standard deviation (ddof 1)
z                (real - null_mean) / null_sd; NaN when null_sd is 0 or undefined
p_empirical      (1 + #{null >= real}) / (R + 1), ties within 1e-12 counted; smallest
                 possible 1 / (R + 1)
excess           real - null_mean
n_perm           R
n_distinct       distinct values among the R draws. Few distinct surrogates mean a
                 coarse null: pseudo_seed with 2 seeds has ONE derangement per stratum
                 (the swap), so all R draws are the same surrogate and p is 1 / (R + 1)
                 or 1 on a single comparison; use >= 3 seeds for a real distribution
n_fixed_rows     rows left in place (strata of one row), summed over split seeds
                 (and over both directions for ``combined``)
n_rows           samples in the splits, summed likewise
unmoved_frac     mean over draws of n_unmoved_rows / n_rows
note             why z is NaN (e.g. clipped nulls all 0, a single surrogate), else ""
================ ====================================================================
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.atomic import read_table, write_table
from ..core.settings import Ridge, Split, Surrogate
from ..synchrony.datasets import ConditionDataset, build_dataset, fixed_size_split
from ..synchrony.permuted_grids import permuted_r2_grids
from ..synchrony.sync import sync_r2

log = logging.getLogger(__name__)

LayerLoader = Callable[[int], np.ndarray]

#: Mode -> (stratum columns, derange). Codes seed the permutation RNG.
MODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "pseudo_task": (("seed", "src_turn"), True),
    "pseudo_seed": (("task_id", "src_turn"), True),
    "shuffle_within": (("task_id", "seed"), False),
    "turn_rotation": (("task_id", "seed"), False),
}
MODE_CODES = {"pseudo_task": 1, "pseudo_seed": 2, "shuffle_within": 3, "turn_rotation": 4}
#: Modes that rotate each stratum's rows in source-turn order instead of permuting them.
ROTATING = ("turn_rotation",)
#: Modes whose strata lie inside one task: one dataset-wide permutation per draw, shared by all split seeds.
SHARED = ("pseudo_seed", "shuffle_within", "turn_rotation")

DRAWS_COLUMNS = (
    "pair", "condition", "direction", "source_model", "target_model", "mode", "perm",
    "syncr2", "syncr2_unclipped", "real_syncr2", "real_syncr2_unclipped",
    "n_rows", "n_fixed_rows", "n_unmoved_rows", "n_perm", "n_split_seeds",
    "size", "test_fraction", "alpha", "seed",
)
SUMMARY_COLUMNS = (
    "pair", "condition", "direction", "mode", "score", "real", "null_mean", "null_sd", "z",
    "p_empirical", "excess", "n_perm", "n_distinct", "n_fixed_rows", "n_rows", "unmoved_frac", "note",
)
SCORES = {"clipped": ("syncr2", "real_syncr2"), "unclipped": ("syncr2_unclipped", "real_syncr2_unclipped")}

class SurrogateError(ValueError):
    """A surrogate null cannot be built as asked (unknown mode, nothing to permute...)."""


def check_modes(modes: Sequence[str]) -> list[str]:
    """The modes as a list, refusing unknown names and duplicates."""
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes:
        raise SurrogateError(f"no surrogate mode given; use some of {', '.join(MODES)}")
    for m in modes:
        if m not in MODES:
            raise SurrogateError(f"unknown surrogate mode {m!r}; use one of {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise SurrogateError(f"surrogate modes listed twice: {modes}")
    return modes


# --------------------------------------------------------------------------- permutations


def strata_codes(part: pd.DataFrame, mode: str) -> np.ndarray:
    """Stratum number (0..k-1) of every row of ``part`` (the pairs of one split part) under ``mode``."""
    cols, _ = MODES[check_modes([mode])[0]]
    missing = [c for c in cols if c not in part.columns]
    if missing:
        raise SurrogateError(f"mode {mode}: the pairs table lacks column(s) {', '.join(missing)}")
    if len(part) == 0:
        return np.zeros(0, dtype=np.int64)
    return part.groupby(list(cols), sort=True).ngroup().to_numpy(np.int64)


def permute_within(codes: np.ndarray, n_perm: int, rng: np.random.Generator, derange: bool) -> np.ndarray:
    """``n_perm`` random permutations (n_perm, n) that keep every row in its stratum.

    ``perms[r, i] = j`` means row i receives the target of row j, with
    ``codes[i] == codes[j]``. Each stratum is permuted uniformly at random;
    with ``derange`` a stratum of >= 2 rows is redrawn until none of its rows
    keeps its own target (rejection sampling: uniform over derangements). A
    stratum of one row stays in place.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    if n_perm < 1:
        raise SurrogateError(f"n_perm must be >= 1, got {n_perm}")
    perms = np.tile(np.arange(n, dtype=np.int64), (n_perm, 1))
    if n == 0:
        return perms
    n_strata = int(codes.max()) + 1
    movable = np.bincount(codes, minlength=n_strata)[codes] >= 2
    flat_perms = perms.reshape(-1)
    # flat positions r * n + i of the rows still to (re)draw
    todo = (np.arange(n_perm, dtype=np.int64)[:, None] * n + np.flatnonzero(movable)[None, :]).reshape(-1)
    while todo.size:
        rows = todo % n
        cell = (todo // n) * n_strata + codes[rows]  # one cell per (draw, stratum)
        slots = todo[np.argsort(cell, kind="stable")]
        chosen = rows[np.lexsort((rng.random(todo.size), cell))]
        flat_perms[slots] = chosen  # both orders list the cells in the same order: stays in the stratum
        if not derange:
            break
        fixed = flat_perms[todo] == rows
        todo = todo[np.isin(cell, np.unique(cell[fixed]))]
    return perms


def log10_surrogates(codes: np.ndarray, derange: bool) -> float:
    """log10 of how many distinct permutations ``permute_within`` can draw for these strata."""
    sizes = np.bincount(np.asarray(codes, dtype=np.int64)) if np.size(codes) else np.zeros(0, np.int64)
    total = 0.0
    for m in sizes[sizes >= 2]:
        if derange:  # derangements: D(m) = (m - 1) (D(m - 1) + D(m - 2)), D(1) = 0, D(2) = 1
            if m <= 20:
                d_prev, d = 0, 1
                for k in range(3, int(m) + 1):
                    d_prev, d = d, (k - 1) * (d + d_prev)
                total += math.log10(d)
            else:  # D(m) = round(m! / e)
                total += math.lgamma(m + 1) / math.log(10) - math.log10(math.e)
        else:
            total += math.lgamma(m + 1) / math.log(10)
    return total


@dataclass
class PartPermutations:
    """Permutations of one split part (train or test) under one mode."""

    perms: np.ndarray  # (R, n_part), positions within the part
    n_fixed: int  # rows in strata of one row
    n_unmoved: np.ndarray  # (R,) rows that kept their own target
    log10_possible: float  # log10 of the number of distinct permutations of the part


def rotate_within(codes: np.ndarray, order: np.ndarray, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """``n_perm`` rotations (n_perm, n): in every stratum of m >= 2 rows, taken in ``order`` (e.g. the
    source turn), row k receives the target of row (k + s) mod m, with s drawn uniformly from 0..m-1 per
    draw and stratum (0 included: module docstring). A stratum of one row stays in place."""
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    if n_perm < 1:
        raise SurrogateError(f"n_perm must be >= 1, got {n_perm}")
    perms = np.tile(np.arange(n, dtype=np.int64), (n_perm, 1))
    sorted_rows = np.lexsort((np.asarray(order), codes))  # rows by stratum, then by order
    bounds = np.flatnonzero(np.diff(codes[sorted_rows])) + 1
    for rows in np.split(sorted_rows, bounds) if n else []:
        m = rows.size
        if m < 2:
            continue
        shifts = rng.integers(0, m, size=n_perm)
        perms[:, rows] = rows[(np.arange(m)[None, :] + shifts[:, None]) % m]
    return perms


def part_permutations(part: pd.DataFrame, mode: str, n_perm: int, rng: np.random.Generator) -> PartPermutations:
    """Permutations of the rows of one split part under ``mode`` (:func:`permute_within`, or
    :func:`rotate_within` in source-turn order for a rotating mode)."""
    codes = strata_codes(part, mode)
    if mode in ROTATING:
        if "src_turn" not in part.columns:
            raise SurrogateError(f"mode {mode}: the pairs table lacks column src_turn")
        perms = rotate_within(codes, part["src_turn"].to_numpy(), n_perm, rng)
    else:
        perms = permute_within(codes, n_perm, rng, derange=MODES[mode][1])
    return _counted(perms, codes, mode)


def _counted(perms: np.ndarray, codes: np.ndarray, mode: str) -> PartPermutations:
    """A part's permutations (R, n) under ``mode`` with their counts: rows alone in their stratum, rows that
    kept their own target per draw, and log10 of how many distinct permutations the mode can draw."""
    sizes = np.bincount(codes) if codes.size else np.zeros(0, np.int64)
    if mode in ROTATING:
        possible = float(np.log10(sizes[sizes >= 2]).sum())
    else:
        possible = log10_surrogates(codes, MODES[mode][1])
    n_fixed = int((sizes[codes] == 1).sum()) if codes.size else 0
    n_unmoved = (perms == np.arange(codes.size)[None, :]).sum(1)
    return PartPermutations(perms, n_fixed, n_unmoved, possible)


def permutation_rng(seed: int, split_seed: int | None, mode: str) -> np.random.Generator:
    """The RNG of the draws of one (seed, split seed, mode); ``split_seed`` None for a shared mode's
    dataset-wide draws."""
    for what, v in (("seed", seed), ("split_seed", split_seed)):
        if v is not None and int(v) < 0:
            raise SurrogateError(f"{what} must be >= 0 (it seeds numpy's SeedSequence), got {v}")
    if split_seed is None:
        return np.random.default_rng((int(seed), MODE_CODES[mode]))
    return np.random.default_rng((int(seed), int(split_seed), MODE_CODES[mode]))


def dataset_permutations(pairs: pd.DataFrame, modes: Sequence[str], n_perm: int, seed: int) -> dict[str, np.ndarray]:
    """The dataset-wide permutations (R, n_rows) of every shared mode among ``modes`` (module docstring)."""
    return {m: part_permutations(pairs, m, n_perm, permutation_rng(seed, None, m)).perms
            for m in modes if m in SHARED}


def restrict_permutations(full: np.ndarray, rows: np.ndarray, part: pd.DataFrame, mode: str) -> PartPermutations:
    """A dataset-wide permutation (R, n_rows) of ``mode`` restricted to the dataset rows ``rows`` (one
    split part, whose pairs are ``part``), as positions within the part. Raises :class:`SurrogateError`
    when a row's target lies outside the part."""
    position = np.full(full.shape[1], -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    perms = position[full[:, rows]]
    if (perms < 0).any():
        raise SurrogateError(f"mode {mode}: a permutation moves a target across the split; its strata "
                             f"{MODES[mode][0]} must lie inside one task group")
    return _counted(perms, strata_codes(part, mode), mode)


@dataclass
class SplitNull:
    """Real and null R2 grids of one split seed, with the permutations that made them."""

    split_seed: int
    train: np.ndarray  # dataset sample indices
    test: np.ndarray
    real: np.ndarray  # (L_A, L_B)
    null: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> (R, L_A, L_B)
    train_perms: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> (R, n_train)
    test_perms: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> (R, n_test)
    n_fixed: dict[str, int] = field(default_factory=dict)  # mode -> rows left in place
    n_unmoved: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> (R,)


def mode_not_applicable(dataset: ConditionDataset, mode: str) -> str | None:
    """Why ``mode`` cannot be run on ``dataset`` at all, or None when it can."""
    if mode == "pseudo_seed":
        seeds = np.unique(dataset.pairs["seed"].to_numpy())
        if seeds.size < 2:
            return (f"pseudo_seed needs >= 2 seeds, the dataset has {seeds.size} ({seeds.tolist()}); "
                    f"simulate more seeds or leave pseudo_seed out of the modes")
    return None


def _movable_rows(pairs: pd.DataFrame, train: np.ndarray, test: np.ndarray, mode: str) -> int:
    """Rows of the split that share their stratum with another row of their part."""
    total = 0
    for idx in (train, test):
        codes = strata_codes(pairs.iloc[idx], mode)
        total += int((np.bincount(codes)[codes] >= 2).sum()) if codes.size else 0
    return total


def split_null(
    dataset: ConditionDataset,
    size: int,
    split_seed: int,
    modes: Sequence[str],
    n_perm: int,
    alpha: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    shared: dict[str, np.ndarray] | None = None,
) -> SplitNull:
    """Split ``dataset`` with ``split_seed``, draw every mode's permutations, compute all grids.

    A shared mode's permutations are ``shared[mode]`` restricted to the split
    (drawn from ``seed`` when ``shared`` is None); ``pseudo_task``'s are drawn
    for this split seed. All modes share one pass over the layers (each layer
    is read once).
    Raises :class:`SurrogateError` when a mode can move no row of this split.
    """
    modes = check_modes(modes)
    if n_perm < 1:
        raise SurrogateError(f"n_perm must be >= 1, got {n_perm}")
    train, test = fixed_size_split(dataset.groups, size, split_seed, test_fraction)
    out = SplitNull(int(split_seed), train, test, real=np.empty(0))
    parts = (dataset.pairs.iloc[train].reset_index(drop=True), dataset.pairs.iloc[test].reset_index(drop=True))
    if shared is None:
        shared = dataset_permutations(dataset.pairs, modes, n_perm, seed)
    for mode in modes:
        why = mode_not_applicable(dataset, mode)
        if why:
            raise SurrogateError(why)
        if mode in SHARED:
            tr, te = (restrict_permutations(shared[mode], rows, p, mode) for rows, p in zip((train, test), parts))
        else:
            rng = permutation_rng(seed, split_seed, mode)
            tr, te = (part_permutations(p, mode, n_perm, rng) for p in parts)
        if tr.n_fixed + te.n_fixed == len(train) + len(test):
            raise SurrogateError(
                f"mode {mode}, split seed {split_seed}: every stratum {MODES[mode][0]} of the split holds one "
                f"row, so no target can move; leave {mode} out or use more tasks/seeds")
        possible = tr.log10_possible + te.log10_possible
        if possible < math.log10(n_perm):
            log.warning("mode %s, split seed %d: only %.3g distinct surrogates exist for %d permutations; the draws "
                        "repeat (pseudo_seed with 2 seeds has one)", mode, split_seed, 10**possible, n_perm)
        if tr.n_fixed + te.n_fixed:
            log.warning("mode %s, split seed %d: %d of %d rows sit alone in their stratum and stay in place",
                        mode, split_seed, tr.n_fixed + te.n_fixed, len(train) + len(test))
        out.train_perms[mode], out.test_perms[mode] = tr.perms, te.perms
        out.n_fixed[mode] = tr.n_fixed + te.n_fixed
        out.n_unmoved[mode] = tr.n_unmoved + te.n_unmoved
    used = np.concatenate([train, test])
    real, null = permuted_r2_grids(
        dataset.streams(used),
        np.arange(len(train)),
        np.arange(len(train), len(used)),
        np.concatenate([out.train_perms[m] for m in modes]),
        np.concatenate([out.test_perms[m] for m in modes]),
        alpha=alpha,
        device=device,
        progress=progress,
    )
    out.real = real
    for i, mode in enumerate(modes):
        out.null[mode] = null[i * n_perm:(i + 1) * n_perm]
    return out


def surrogate_draws(
    dataset: ConditionDataset,
    size: int,
    split_seeds: Sequence[int],
    modes: Sequence[str] = tuple(MODES),
    n_perm: int = 100,
    alpha: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    skip_inapplicable: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """The draws table (module docstring) of one dataset: one row per (mode, perm).

    Draw r's SyncR2 is ``sync_r2`` over the split-seed cube of the r-th null
    grids: one dataset-wide permutation shared by the split seeds for a
    :data:`SHARED` mode, one per split seed for ``pseudo_task``. ``pair`` is left empty
    (``run_surrogate`` fills it). A mode that cannot be run (``pseudo_seed``
    with one seed, or no movable row in a split) raises
    :class:`SurrogateError`, or with ``skip_inapplicable`` is logged and left out.
    """
    modes = check_modes(modes)
    if n_perm < 1:
        raise SurrogateError(f"n_perm must be >= 1, got {n_perm}")
    split_seeds = [int(s) for s in split_seeds]
    if not split_seeds:
        raise SurrogateError("no split seeds given")
    if len(set(split_seeds)) != len(split_seeds):
        raise SurrogateError(f"split seeds listed twice: {split_seeds}")
    for mode in list(modes):
        why = mode_not_applicable(dataset, mode)
        if why is None:  # every split seed must let some row move (cheap: no layer is read)
            for s in split_seeds:
                train, test = fixed_size_split(dataset.groups, size, s, test_fraction)
                if not _movable_rows(dataset.pairs, train, test, mode):
                    why = (f"mode {mode}, split seed {s}: every stratum {MODES[mode][0]} of the split holds one "
                           f"row, so no target can move; leave {mode} out or use more tasks/seeds")
                    break
        if why is not None:
            if not skip_inapplicable:
                raise SurrogateError(why)
            log.warning("surrogate mode %s left out: %s", mode, why)
            modes.remove(mode)
    if not modes:
        return _empty_draws()
    splits: list[SplitNull] = []
    shared = dataset_permutations(dataset.pairs, modes, n_perm, seed)
    for s in split_seeds:
        splits.append(split_null(dataset, size, s, modes, n_perm, alpha, test_fraction, seed, device, progress,
                                 shared))
        log.info("%s %s split seed %d: %d train, %d test rows, %d mode(s) x %d permutations done",
                 dataset.condition.name, dataset.direction, s, len(splits[-1].train), len(splits[-1].test),
                 len(modes), n_perm)
    real_cube = np.stack([sp.real for sp in splits])
    real_c, real_u = sync_r2(real_cube).value, sync_r2(real_cube, clip=False).value
    n_rows = sum(len(sp.train) + len(sp.test) for sp in splits)
    rows = []
    for mode in modes:
        cubes = np.stack([sp.null[mode] for sp in splits], axis=1)  # (R, S, L_A, L_B)
        n_fixed = sum(sp.n_fixed[mode] for sp in splits)
        unmoved = np.sum([sp.n_unmoved[mode] for sp in splits], axis=0)
        for r in range(n_perm):
            rows.append({
                "mode": mode, "perm": r,
                "syncr2": sync_r2(cubes[r]).value, "syncr2_unclipped": sync_r2(cubes[r], clip=False).value,
                "real_syncr2": real_c, "real_syncr2_unclipped": real_u,
                "n_rows": n_rows, "n_fixed_rows": n_fixed, "n_unmoved_rows": int(unmoved[r]),
            })
    frame = pd.DataFrame(rows)
    frame["pair"] = ""
    frame["condition"] = dataset.condition.name
    frame["direction"] = dataset.direction
    frame["source_model"] = dataset.source.shards[0].meta.model_key
    frame["target_model"] = dataset.target.shards[0].meta.model_key
    frame["n_perm"] = n_perm
    frame["n_split_seeds"] = len(split_seeds)
    frame["size"], frame["test_fraction"], frame["alpha"], frame["seed"] = size, test_fraction, alpha, seed
    return _typed_draws(frame[list(DRAWS_COLUMNS)])


def _empty_draws() -> pd.DataFrame:
    return _typed_draws(pd.DataFrame({c: [] for c in DRAWS_COLUMNS}))


def _typed_draws(frame: pd.DataFrame) -> pd.DataFrame:
    ints = ("perm", "n_rows", "n_fixed_rows", "n_unmoved_rows", "n_perm", "n_split_seeds", "size", "seed")
    floats = ("syncr2", "syncr2_unclipped", "real_syncr2", "real_syncr2_unclipped", "test_fraction", "alpha")
    out = frame.copy()
    for c in ints:
        out[c] = out[c].astype(np.int64)
    for c in floats:
        out[c] = out[c].astype(np.float64)
    for c in ("pair", "condition", "direction", "source_model", "target_model", "mode"):
        out[c] = out[c].astype(str)  # what a Parquet round trip gives back
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- summary


# Ties within float rounding count as exceedances (conservative): a null that equals
# the real value in exact arithmetic may come out a few ulps below it.
TIE_TOLERANCE = 1e-12


def null_stats(real: float, null: np.ndarray) -> dict[str, float | int | str]:
    """real, null_mean, null_sd (ddof 1), z, p_empirical, excess, n_perm, n_distinct and a note for one null sample.

    ``p_empirical = (1 + #{null >= real}) / (R + 1)``, a null within
    ``TIE_TOLERANCE * max(1, |real|)`` below ``real`` counting as a tie (>=).
    """
    null = np.asarray(null, dtype=np.float64)
    n = null.size
    if n == 0:
        raise SurrogateError("no null draws to summarise")
    mean = float(null.mean())
    n_distinct = int(np.unique(null).size)
    # identical draws have sd 0 exactly (np.std could return a rounding-level value)
    sd = (0.0 if n_distinct == 1 else float(null.std(ddof=1))) if n > 1 else math.nan
    note = ""
    if n < 2:
        z, note = math.nan, "one null draw: no sd, no z"
    elif sd == 0.0:
        z = math.nan
        note = (f"null sd is 0, every draw is {mean:.6g} (clipped nulls floored at 0, or a single possible "
                f"surrogate such as pseudo_seed with 2 seeds): no z")
    else:
        z = (real - mean) / sd
    tol = TIE_TOLERANCE * max(1.0, abs(float(real)))
    p = (1 + int((null >= real - tol).sum())) / (n + 1)
    return {"real": float(real), "null_mean": mean, "null_sd": sd, "z": z, "p_empirical": p,
            "excess": float(real) - mean, "n_perm": n, "n_distinct": n_distinct, "note": note}


def summarize_surrogate(draws: pd.DataFrame, combine: bool = True) -> pd.DataFrame:
    """The summary table (module docstring) of a draws table.

    With ``combine``, a (pair, condition, mode) holding both AtoB and BtoA
    draws with equal R also gets ``direction="combined"`` rows (the paper's
    (A->B + B->A) / 2, draw by draw).
    """
    missing = [c for c in DRAWS_COLUMNS if c not in draws.columns]
    if missing:
        raise SurrogateError(f"draws table lacks column(s) {', '.join(missing)}")
    keys = ["pair", "condition", "direction", "mode"]
    groups: list[tuple[tuple, pd.DataFrame]] = []
    for key, grp in draws.groupby(keys, sort=True):
        grp = grp.sort_values("perm")
        if grp.perm.duplicated().any():
            raise SurrogateError(f"draws of {dict(zip(keys, key))} hold a permutation index twice")
        groups.append((key, grp))
    if combine:
        by_key = {k: g for k, g in groups}
        for (pair, cond, direction, mode), ab in list(by_key.items()):
            ba = by_key.get((pair, cond, "BtoA", mode))
            if direction != "AtoB" or ba is None:
                continue
            if len(ab) != len(ba):
                log.warning("%s %s %s: AtoB has %d draws, BtoA %d; no combined row", pair, cond, mode, len(ab), len(ba))
                continue
            both = ab.reset_index(drop=True).copy()
            other = ba.reset_index(drop=True)
            for c in ("syncr2", "syncr2_unclipped", "real_syncr2", "real_syncr2_unclipped"):
                both[c] = (both[c] + other[c]) / 2
            for c in ("n_rows", "n_fixed_rows", "n_unmoved_rows"):
                both[c] = both[c] + other[c]
            both["direction"] = "combined"
            groups.append(((pair, cond, "combined", mode), both))
    rows = []
    for (pair, cond, direction, mode), grp in groups:
        for score, (null_col, real_col) in SCORES.items():
            reals = grp[real_col].unique()
            if reals.size != 1:
                raise SurrogateError(f"{pair} {cond} {direction} {mode}: draws disagree on {real_col}: {reals}")
            stats = null_stats(float(reals[0]), grp[null_col].to_numpy())
            rows.append({
                "pair": pair, "condition": cond, "direction": direction, "mode": mode, "score": score, **stats,
                "n_fixed_rows": int(grp.n_fixed_rows.iloc[0]), "n_rows": int(grp.n_rows.iloc[0]),
                "unmoved_frac": float((grp.n_unmoved_rows / grp.n_rows).mean()),
            })
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for c in ("pair", "condition", "direction", "mode", "score", "note"):
        frame[c] = frame[c].astype(str)
    order = {"AtoB": 0, "BtoA": 1, "combined": 2}
    frame = frame.sort_values(["pair", "condition", "direction", "mode", "score"],
                              key=lambda s: s.map(order) if s.name == "direction" else s, kind="stable")
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- files


def write_surrogate_draws(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a draws table atomically (Parquet)."""
    return write_table(frame, path, DRAWS_COLUMNS, "surrogate draws table", SurrogateError, only=True)


def read_surrogate_draws(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A draws table; errors name the file and the missing column."""
    return read_table(path, DRAWS_COLUMNS, "surrogate draws table", SurrogateError)


def write_surrogate_summary(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a summary table atomically (Parquet)."""
    return write_table(frame, path, SUMMARY_COLUMNS, "surrogate summary", SurrogateError, only=True)


def read_surrogate_summary(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A summary table; errors name the file and the missing column."""
    return read_table(path, SUMMARY_COLUMNS, "surrogate summary", SurrogateError)


def summarize_surrogate_files(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None,
                              combine: bool = True) -> pd.DataFrame:
    """Summarise several draws files (e.g. all pairs and directions); write ``out`` when given."""
    frames = [read_surrogate_draws(p) for p in paths]
    if not frames:
        raise SurrogateError("no surrogate draws files given")
    summary = summarize_surrogate(pd.concat(frames, ignore_index=True), combine=combine)
    if out is not None:
        write_surrogate_summary(summary, out)
    return summary


def run_surrogate(
    genuine_paths: Sequence[str | os.PathLike[str]],
    condition: str,
    direction: str,
    split: Split,
    surrogate: Surrogate,
    out: str | os.PathLike[str],
    *,
    ridge: Ridge = Ridge(),
    pair: str = "",
    passive_paths: Sequence[str | os.PathLike[str]] | None = None,
    device: str | torch.device | None = None,
    skip_inapplicable: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """Build the dataset, draw the nulls and write the draws table of one (pair, condition, direction).

    Returns the table written to ``out`` (atomically).
    """
    log.info("surrogate %s %s %s: modes %s, %d permutations, split seeds %s, size %d", pair, condition, direction,
             ",".join(surrogate.modes), surrogate.n_perm, list(split.split_seeds), split.size)
    dataset = build_dataset(genuine_paths, condition, direction, passive=passive_paths)
    draws = surrogate_draws(dataset, split.size, split.split_seeds, surrogate.modes, surrogate.n_perm, ridge.alpha,
                            split.test_fraction, surrogate.seed, device=device,
                            skip_inapplicable=skip_inapplicable, progress=progress)
    draws["pair"] = pair
    write_surrogate_draws(draws, out)
    if len(draws):
        for mode, grp in draws.groupby("mode", sort=False):
            stats = null_stats(float(grp.real_syncr2_unclipped.iloc[0]), grp.syncr2_unclipped.to_numpy())
            log.info("%s %s %s %s: real unclipped %.4f, null mean %.4f, p %.4g", pair, condition, direction, mode,
                     stats["real"], stats["null_mean"], stats["p_empirical"])
    log.info("wrote %s (%d draws)", out, len(draws))
    return draws
