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

Reuse of the factorisation. Only target rows move, so each source layer's hat
matrix ``H`` (n_test x n_train, see ``synchrony.ridge``) is computed once. If
train row i receives the target of train row ``p_tr[i]`` and test row k that
of test row ``p_te[k]``, the residual equals the one of the hat matrix
``H[inv(p_te)][:, inv(p_tr)]`` applied to the unpermuted targets, and its
``H^T H`` term is ``(H^T H)[inv(p_tr)][:, inv(p_tr)]``. The train mean and
the test sums of squares do not change under these permutations, so the
per-target Gram terms of ``ridge._target_terms`` are computed once too: a
permutation costs two gathers per source layer and one matrix product over
all layer pairs, instead of a full refit. ``H^T H`` and the train Gram
matrices are symmetric, so only their upper triangles are gathered and
multiplied.

Permutations are reproducible: the draws of (seed, split_seed, mode) come
from ``numpy.random.default_rng((seed, split_seed, mode_code))`` with fixed
mode codes (pseudo_task 1, pseudo_seed 2, shuffle_within 3), so a draw does
not depend on which other modes are run. Permutation index r is drawn
independently for every split seed; draw r's SyncR2 is ``sync_r2`` of the
cube (split seeds, L_A, L_B) of the r-th null grids.

Draws table (``surrogate_draws`` / ``run_surrogate``; one row per (mode, perm)):

====================== ==============================================================
column                 meaning
====================== ==============================================================
pair, condition,       which R2 dataset (``run_surrogate`` fills them; ``surrogate_draws``
direction              leaves pair empty)
source_model,          model keys of the source and target shards
target_model
mode                   pseudo_task | pseudo_seed | shuffle_within
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
from tqdm.auto import tqdm

from ..core.atomic import write_parquet
from ..synchrony.datasets import ConditionDataset, build_dataset, fixed_size_split
from ..synchrony.ridge import _as_index, _hat_matrix, _target_terms, layer_tensor, resolve_device
from ..synchrony.sync import sync_r2

log = logging.getLogger(__name__)

LayerLoader = Callable[[int], np.ndarray]

#: Mode -> (stratum columns, derange). Codes seed the permutation RNG.
MODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "pseudo_task": (("seed", "src_turn"), True),
    "pseudo_seed": (("task_id", "src_turn"), True),
    "shuffle_within": (("task_id", "seed"), False),
}
MODE_CODES = {"pseudo_task": 1, "pseudo_seed": 2, "shuffle_within": 3}

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

# Gathered hat matrices of one chunk of permutations stay below this many bytes.
DEFAULT_CHUNK_BYTES = 256 * 2**20
# The flat gather indices of all draws are kept across source layers below this many bytes.
DEFAULT_INDEX_BYTES = 1024 * 2**20


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


def part_permutations(part: pd.DataFrame, mode: str, n_perm: int, rng: np.random.Generator) -> PartPermutations:
    """Permutations of the rows of one split part under ``mode`` (see :func:`permute_within`)."""
    codes = strata_codes(part, mode)
    perms = permute_within(codes, n_perm, rng, derange=MODES[mode][1])
    n_fixed = int((np.bincount(codes)[codes] == 1).sum()) if codes.size else 0
    n_unmoved = (perms == np.arange(codes.size)[None, :]).sum(1)
    return PartPermutations(perms, n_fixed, n_unmoved, log10_surrogates(codes, MODES[mode][1]))


def permutation_rng(seed: int, split_seed: int, mode: str) -> np.random.Generator:
    """The RNG of the draws of one (seed, split seed, mode)."""
    for what, v in (("seed", seed), ("split_seed", split_seed)):
        if int(v) < 0:
            raise SurrogateError(f"{what} must be >= 0 (it seeds numpy's SeedSequence), got {v}")
    return np.random.default_rng((int(seed), int(split_seed), MODE_CODES[mode]))


# --------------------------------------------------------------------------- null grids


def permuted_r2_grids(
    load_source: LayerLoader,
    load_target: LayerLoader,
    n_source_layers: int,
    n_target_layers: int,
    train_idx: Sequence[int] | np.ndarray,
    test_idx: Sequence[int] | np.ndarray,
    train_perms: np.ndarray,
    test_perms: np.ndarray,
    alpha: float = 0.1,
    device: str | torch.device | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    index_bytes: int = DEFAULT_INDEX_BYTES,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The real R2 grid (L_A, L_B) and the R null grids (R, L_A, L_B) of one split.

    Draw r gives train row ``train_idx[i]`` the target of row
    ``train_idx[train_perms[r, i]]`` and test row ``test_idx[k]`` that of
    ``test_idx[test_perms[r, k]]``; sources stay put. Each null grid equals
    ``layer_pair_r2_streamed`` on the physically permuted targets, but every
    source layer is factorised once and every target layer's Gram terms are
    formed once; a draw costs one gather of the hat matrix (and of H^T H) per
    source layer and one matrix product over the target layers. Draws are
    processed in chunks whose gathered matrices stay below ``chunk_bytes``;
    the gather indices of all draws are built once and reused by every source
    layer when they fit in ``index_bytes``, else rebuilt per layer.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    dev = resolve_device(device)
    first = np.asarray(load_target(0))
    n = first.shape[0]
    train_np = _as_index(train_idx, n, "train_idx")
    test_np = _as_index(test_idx, n, "test_idx")
    n_tr, n_te = train_np.size, test_np.size
    train_perms = np.asarray(train_perms, dtype=np.int64)
    test_perms = np.asarray(test_perms, dtype=np.int64)
    if train_perms.ndim != 2 or train_perms.shape[1] != n_tr:
        raise ValueError(f"train_perms must have shape (R, {n_tr}), got {train_perms.shape}")
    if test_perms.ndim != 2 or test_perms.shape != (train_perms.shape[0], n_te):
        raise ValueError(f"test_perms must have shape ({train_perms.shape[0]}, {n_te}), got {test_perms.shape}")
    for what, p, m in (("train_perms", train_perms, n_tr), ("test_perms", test_perms, n_te)):
        if not (np.sort(p, axis=1) == np.arange(m)).all():
            raise ValueError(f"every row of {what} must be a permutation of 0..{m - 1}")
    n_perm = train_perms.shape[0]
    # H' = H[inv(p_te)][:, inv(p_tr)]: inverse permutations index the hat matrix
    inv_tr = torch.as_tensor(np.argsort(train_perms, axis=1), device=dev)
    inv_te = torch.as_tensor(np.argsort(test_perms, axis=1), device=dev)
    train = torch.as_tensor(train_np, device=dev)
    test = torch.as_tensor(test_np, device=dev)

    def to_dev(arr: np.ndarray, what: str) -> torch.Tensor:
        return layer_tensor(arr, n, what, dev)

    # H^T H and Z Z^T are symmetric: keep the upper triangle, off-diagonal terms weighted 2,
    # which halves the Gram memory, the gathers and the products of the H^T H term.
    tri_i, tri_j = torch.triu_indices(n_tr, n_tr, device=dev)
    tri_flat = tri_i * n_tr + tri_j
    tri_weight = torch.where(tri_i == tri_j, 1.0, 2.0).to(torch.float64)
    crosses = torch.empty((n_target_layers, n_te * n_tr), dtype=torch.float64, device=dev)
    grams = torch.empty((n_target_layers, tri_flat.numel()), dtype=torch.float64, device=dev)
    err = torch.empty(n_target_layers, dtype=torch.float64, device=dev)
    n_var, const, dims = torch.empty_like(err), torch.empty_like(err), torch.empty_like(err)
    for b in range(n_target_layers):
        terms = _target_terms(to_dev(first if b == 0 else load_target(b), f"target layer {b}"), train, test)
        crosses[b] = terms.cross.reshape(-1)
        grams[b] = terms.gram.reshape(-1)[tri_flat] * tri_weight
        err[b], n_var[b], const[b], dims[b] = terms.err_norm, terms.n_varying, terms.constant_score, terms.dim
        del terms
    del first

    # Gathers index the flattened H and H^T H with flat indices built once per draw: a
    # one-call take is far faster on CPU than torch's two-axis fancy indexing. The indices
    # of all draws are kept across source layers when they fit in ``index_bytes``.
    per_draw = 8 * (n_te * n_tr + tri_flat.numel())  # gathered values (and, alike, their int64 indices)
    chunk = max(1, min(n_perm, int(chunk_bytes // per_draw)))
    keep_indices = n_perm * per_draw <= index_bytes
    cached: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def indices(lo: int) -> tuple[torch.Tensor, torch.Tensor]:
        if lo in cached:
            return cached[lo]
        it, ie = inv_tr[lo:lo + chunk], inv_te[lo:lo + chunk]
        if dev.type == "cpu":  # numpy's take beats torch's indexing several times on CPU
            it_np, ie_np = it.numpy(), ie.numpy()
            flat_hat = torch.from_numpy((ie_np[:, :, None] * n_tr + it_np[:, None, :]).reshape(len(it_np), -1))
            sq_np = np.take(it_np, tri_i.numpy(), axis=1)
            sq_np *= n_tr
            sq_np += np.take(it_np, tri_j.numpy(), axis=1)
            flat_sq = torch.from_numpy(sq_np)
        else:
            flat_hat = (ie[:, :, None] * n_tr + it[:, None, :]).reshape(it.shape[0], -1)  # H[inv_te][:, inv_tr]
            flat_sq = it[:, tri_i] * n_tr + it[:, tri_j]  # upper triangle of S[inv_tr][:, inv_tr]
        if keep_indices:
            cached[lo] = (flat_hat, flat_sq)
        return flat_hat, flat_sq

    real = torch.empty((n_source_layers, n_target_layers), dtype=torch.float64, device=dev)
    null = torch.empty((n_perm, n_source_layers, n_target_layers), dtype=torch.float64, device=dev)
    for a in tqdm(range(n_source_layers), desc="source layers", disable=not progress, leave=False):
        hat = _hat_matrix(to_dev(load_source(a), f"source layer {a}"), train, test, alpha).contiguous()
        sq = hat.T @ hat
        resid = err - 2.0 * (crosses @ hat.reshape(-1)) + grams @ sq.reshape(-1)[tri_flat]
        real[a] = (n_var - resid + const) / dims
        for lo in range(0, n_perm, chunk):
            flat_hat, flat_sq = indices(lo)
            hats, sqs = _take(hat, flat_hat), _take(sq, flat_sq)
            resid = err[:, None] - 2.0 * (crosses @ hats.T) + grams @ sqs.T  # (L_B, c)
            null[lo:lo + chunk, a] = ((n_var[:, None] - resid + const[:, None]) / dims[:, None]).T
            del hats, sqs
    return real.cpu().numpy(), null.cpu().numpy()


def _take(m: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``m.reshape(-1)[flat]``; on CPU through numpy's take (zero-copy views), several times faster."""
    if m.device.type != "cpu":
        return torch.take(m, flat)
    return torch.from_numpy(np.take(m.contiguous().numpy().reshape(-1), flat.numpy()))


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
) -> SplitNull:
    """Split ``dataset`` with ``split_seed``, draw every mode's permutations, compute all grids.

    All modes share one pass over the layers (each layer is read once).
    Raises :class:`SurrogateError` when a mode can move no row of this split.
    """
    modes = check_modes(modes)
    if n_perm < 1:
        raise SurrogateError(f"n_perm must be >= 1, got {n_perm}")
    train, test = fixed_size_split(dataset.groups, size, split_seed, test_fraction)
    out = SplitNull(int(split_seed), train, test, real=np.empty(0))
    parts = (dataset.pairs.iloc[train].reset_index(drop=True), dataset.pairs.iloc[test].reset_index(drop=True))
    for mode in modes:
        why = mode_not_applicable(dataset, mode)
        if why:
            raise SurrogateError(why)
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
        lambda a: dataset.load_source(a, used),
        lambda b: dataset.load_target(b, used),
        dataset.source.n_layers,
        dataset.target.n_layers,
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
    grids (independent permutations per split seed). ``pair`` is left empty
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
    for s in split_seeds:
        splits.append(split_null(dataset, size, s, modes, n_perm, alpha, test_fraction, seed, device, progress))
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


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, path: str | os.PathLike[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SurrogateError(f"{path}: {what} lacks column(s) {', '.join(missing)}")


def write_surrogate_draws(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a draws table atomically (Parquet)."""
    _check_columns(frame, DRAWS_COLUMNS, "surrogate draws table", path)
    return write_parquet(frame[list(DRAWS_COLUMNS)], path)


def read_surrogate_draws(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A draws table; errors name the file and the missing column."""
    frame = _read(path, "surrogate draws table")
    _check_columns(frame, DRAWS_COLUMNS, "surrogate draws table", path)
    return frame


def write_surrogate_summary(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a summary table atomically (Parquet)."""
    _check_columns(frame, SUMMARY_COLUMNS, "surrogate summary", path)
    return write_parquet(frame[list(SUMMARY_COLUMNS)], path)


def read_surrogate_summary(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A summary table; errors name the file and the missing column."""
    frame = _read(path, "surrogate summary")
    _check_columns(frame, SUMMARY_COLUMNS, "surrogate summary", path)
    return frame


def _read(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for missing or truncated files
        raise SurrogateError(f"{path}: not a readable {what}: {exc}") from exc


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
    size: int,
    split_seeds: Sequence[int],
    modes: Sequence[str],
    n_perm: int,
    alpha: float,
    test_fraction: float,
    seed: int,
    pair: str,
    out: str | os.PathLike[str],
    passive_paths: Sequence[str | os.PathLike[str]] | None = None,
    device: str | torch.device | None = None,
    skip_inapplicable: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """Build the dataset, draw the nulls and write the draws table of one (pair, condition, direction).

    Returns the table written to ``out`` (atomically).
    """
    log.info("surrogate %s %s %s: modes %s, %d permutations, split seeds %s, size %d",
             pair, condition, direction, ",".join(modes), n_perm, list(split_seeds), size)
    dataset = build_dataset(genuine_paths, condition, direction, passive=passive_paths)
    draws = surrogate_draws(dataset, size, split_seeds, modes, n_perm, alpha, test_fraction, seed,
                            device=device, skip_inapplicable=skip_inapplicable, progress=progress)
    draws["pair"] = pair
    write_surrogate_draws(draws, out)
    if len(draws):
        for mode, grp in draws.groupby("mode", sort=False):
            stats = null_stats(float(grp.real_syncr2_unclipped.iloc[0]), grp.syncr2_unclipped.to_numpy())
            log.info("%s %s %s %s: real unclipped %.4f, null mean %.4f, p %.4g", pair, condition, direction, mode,
                     stats["real"], stats["null_mean"], stats["p_empirical"])
    log.info("wrote %s (%d draws)", out, len(draws))
    return draws
