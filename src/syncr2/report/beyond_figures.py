"""Figures beyond the paper: the similarity measures beside SyncR2, and the lag profiles.

docs/analyses.md, "Other similarity measures" and "Lag profile".

* ``measures``: one panel per measure (SyncR2 first, then CKA, RSA,
  Procrustes); conditions on the x axis in the study's order; one thin line
  per pair (two-direction score, SE bars) and the mean over pairs in black.
  The panel title spells the condition ordering of the mean, so the reader
  sees at once whether a measure orders the conditions as SyncR2 does.
* ``lag_profile_{pair}``: one panel per direction; the real score per lag with
  its SE, the turn-rotation null's 2.5-97.5 % band shaded and its mean dashed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .figures import _save
from .surrogate_figure import ARROWS as SURROGATE_ARROWS

MEASURE_TITLES = {"syncr2": "$SyncR^2$ (ridge maps)", "cka": "linear CKA (debiased)", "rsa": "RSA (Spearman of RDMs)",
                  "procrustes": "orthogonal Procrustes"}
ARROWS = {"AtoB": "A $\\rightarrow$ B (B's turn t+1+2k from A's turn t)",
          "BtoA": "B $\\rightarrow$ A (A's turn t+1+2k from B's turn t)"}


def condition_ordering(means: pd.Series) -> str:
    """``a > b > c`` of a measure's mean per condition, highest first."""
    return " > ".join(means.sort_values(ascending=False, kind="stable").index)


def measures_figure(summary: pd.DataFrame, conditions: Sequence[str], out_dir: str | os.PathLike[str],
                    stem: str = "measures") -> list[Path]:
    """Draw the measures figure from the measures table (two-direction rows, else A->B)."""
    if summary.empty:
        raise ValueError("the measures table is empty: nothing to draw")
    direction = "combined" if (summary.direction == "combined").any() else "AtoB"
    rows = summary[summary.direction == direction]
    measures = [m for m in MEASURE_TITLES if m in set(rows.measure)]
    conds = [c for c in conditions if c in set(rows.condition)]
    fig, axes = plt.subplots(1, len(measures), figsize=(3.3 * len(measures), 3.4), squeeze=False, layout="constrained")
    x = np.arange(len(conds))
    for ax, measure in zip(axes[0], measures):
        sub = rows[rows.measure == measure]
        for pair, grp in sub.groupby("pair", sort=True):
            g = grp.set_index("condition").reindex(conds)
            ax.errorbar(x, g.value, yerr=g.se, color="tab:blue", alpha=0.35, linewidth=0.8, marker="o", markersize=3,
                        capsize=2)
        mean = sub.groupby("condition").value.mean().reindex(conds)
        ax.plot(x, mean.to_numpy(), color="black", linewidth=2, marker="s", markersize=5, label="mean over pairs")
        ax.set_xticks(x, conds, rotation=30, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        undefined = [c for c in conds if np.isnan(mean[c])]
        note = f"\nundefined (too few test rows): {', '.join(undefined)}" if undefined else ""
        ax.set_title(f"{MEASURE_TITLES[measure]}\n{condition_ordering(mean.dropna())}{note}", fontsize=8)
        ax.grid(axis="y", linewidth=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("score (thin: each pair, SE over split seeds)", fontsize=8)
    n_pairs = rows.pair.nunique()
    score = SURROGATE_ARROWS[direction]
    fig.suptitle(f"Does the condition ordering survive another measure? ({n_pairs} pair(s), {score})", fontsize=10)
    return _save(fig, out_dir, stem)


def lag_profile_figure(profile: pd.DataFrame, pair: str, out_dir: str | os.PathLike[str], score: str = "unclipped",
                       label: str = "") -> list[Path]:
    """Draw one pair's lag profile (``analysis.lag_profile``'s table) for ``score``."""
    sub = profile[(profile.pair == pair) & (profile.score == score)]
    if sub.empty:
        raise ValueError(f"the lag profile holds no {score} rows of pair {pair}")
    directions = [d for d in ("AtoB", "BtoA") if d in set(sub.direction)]
    fig, axes = plt.subplots(1, len(directions), figsize=(4.8 * len(directions), 3.4), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, direction in zip(axes[0], directions):
        d = sub[sub.direction == direction].sort_values("lag")
        ax.fill_between(d.lag, d.null_lo, d.null_hi, color="grey", alpha=0.3, linewidth=0,
                        label="turn-rotation null, 2.5-97.5 %")
        ax.plot(d.lag, d.null_mean, color="grey", linestyle="--", linewidth=1, label="null mean")
        ax.errorbar(d.lag, d.value, yerr=d.se, color="tab:red", marker="o", markersize=4, capsize=2, linewidth=1.5,
                    label="real (SE over split seeds)")
        ax.axvline(0, color="black", linewidth=0.5, linestyle=":")
        ax.set_xticks(d.lag.to_numpy())
        ax.set_xlabel("lag k (partner turns; k < 0: the partner's earlier turn)", fontsize=8)
        ax.set_title(ARROWS[direction], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", linewidth=0.3)
    axes[0][0].set_ylabel(f"{score} $SyncR^2$", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    n_perm = int(sub.n_perm.iloc[0])
    fig.suptitle(f"Lag profile of {label or pair} ({n_perm} turn-rotation draws per lag)", fontsize=10)
    return _save(fig, out_dir, f"lag_profile_{pair}")
