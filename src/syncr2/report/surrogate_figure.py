"""Figure: the real unclipped SyncR2 against its surrogate null distributions.

docs/analyses.md, "Surrogate null". One row of panels per (pair, condition), one panel per
direction. Inside a panel each surrogate mode has its own horizontal strip:
the R null draws as jittered dots, their mean +- sd as a bar, and the real
value as a red vertical line shared by all modes. The unclipped score is shown
because clipped nulls are mostly exactly 0 (no spread to compare with). The
panel title gives each mode's empirical p; the y tick labels repeat p and z
next to the mode they belong to.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis.surrogate import MODES, summarize_surrogate
from .figures import _save

MODE_COLORS = {"pseudo_task": "tab:blue", "pseudo_seed": "tab:green", "shuffle_within": "tab:purple",
               "turn_rotation": "tab:orange"}
MODE_SHORT = {"pseudo_task": "task", "pseudo_seed": "seed", "shuffle_within": "within", "turn_rotation": "rotation"}
ARROWS = {"AtoB": "A $\\rightarrow$ B", "BtoA": "B $\\rightarrow$ A", "combined": "(A$\\rightarrow$B + B$\\rightarrow$A) / 2"}


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def draw_null_panel(ax: plt.Axes, draws: pd.DataFrame, summary: pd.DataFrame, title: str) -> None:
    """One panel: null strips per mode (unclipped SyncR2) and the real value."""
    modes = [m for m in MODES if m in set(draws["mode"])]
    rng = np.random.default_rng(0)  # fixed jitter: the same data draw the same figure
    labels = []
    for y, mode in enumerate(modes):
        null = draws.loc[draws["mode"] == mode, "syncr2_unclipped"].to_numpy()
        color = MODE_COLORS.get(mode, "grey")
        ax.scatter(null, y + rng.uniform(-0.22, 0.22, null.size), s=7, color=color, alpha=0.45, linewidths=0)
        mean, sd = float(null.mean()), float(null.std(ddof=1)) if null.size > 1 else 0.0
        ax.errorbar(mean, y, xerr=sd, fmt="|", color="black", markersize=14, capsize=3, linewidth=1.2)
        row = summary[(summary["mode"] == mode) & (summary.score == "unclipped")].iloc[0]
        z = "z n/a" if np.isnan(row.z) else f"z={row.z:.1f}"
        labels.append(f"{mode}\np={_fmt_p(row.p_empirical)}, {z}")
    real = float(draws.real_syncr2_unclipped.iloc[0])
    ax.axvline(real, color="tab:red", linewidth=2, label=f"real = {real:.3f}")
    values = np.append(draws["syncr2_unclipped"].to_numpy(), real)
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 1e-12)
    if low - span <= 0 <= high + span:  # show 0 only where it does not squash the nulls into a line
        ax.axvline(0, color="grey", linewidth=0.6, linestyle=":")
    else:
        ax.set_xlim(low - 0.1 * span, high + 0.1 * span)
    ax.set_yticks(range(len(modes)), labels, fontsize=7)
    ax.set_ylim(-0.6, len(modes) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("unclipped $SyncR^2$ (dots: null draws; bar: mean $\\pm$ sd)", fontsize=8)
    ax.legend(fontsize=7, loc="best", handlelength=1.2)
    p_text = " · ".join(
        f"{MODE_SHORT.get(m, m)} {_fmt_p(summary[(summary['mode'] == m) & (summary.score == 'unclipped')].p_empirical.iloc[0])}"
        for m in modes)
    n_perm = int(draws.groupby("mode").size().max())
    ax.set_title(f"{title}\np ({n_perm} perms): {p_text}", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def surrogate_figure(draws: pd.DataFrame, out_dir: str | os.PathLike[str], stem: str = "surrogate_null",
                     combine: bool = False) -> list[Path]:
    """Draw the figure from a draws table (``analysis.surrogate``); returns the PNG and PDF paths.

    ``combine`` adds a panel for the two-direction score where both directions are present.
    """
    if draws.empty:
        raise ValueError("the surrogate draws table is empty: nothing to draw")
    summary = summarize_surrogate(draws, combine=combine)
    rows = sorted({(p, c) for p, c in zip(draws.pair, draws.condition)})
    directions = [d for d in ("AtoB", "BtoA", "combined") if d in set(summary.direction)]
    fig, axes = plt.subplots(len(rows), len(directions), figsize=(4.6 * len(directions), 0.9 + 1.1 * len(MODES) * len(rows)),
                             squeeze=False, layout="constrained")
    for i, (pair, cond) in enumerate(rows):
        for j, direction in enumerate(directions):
            ax = axes[i][j]
            sub_sum = summary[(summary.pair == pair) & (summary.condition == cond) & (summary.direction == direction)]
            if direction == "combined":
                sub = _combined_draws(draws[(draws.pair == pair) & (draws.condition == cond)])
            else:
                sub = draws[(draws.pair == pair) & (draws.condition == cond) & (draws.direction == direction)]
            if sub.empty or sub_sum.empty:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{pair}\n{direction}: no draws", ha="center", va="center", fontsize=8)
                continue
            draw_null_panel(ax, sub, sub_sum, f"{pair} ({cond}), {ARROWS.get(direction, direction)}")
    fig.suptitle("Real $SyncR^2$ against its surrogate nulls (unclipped)", fontsize=10)
    return _save(fig, out_dir, stem)


def _combined_draws(draws: pd.DataFrame) -> pd.DataFrame:
    """Draw-by-draw mean of the two directions, as ``summarize_surrogate`` combines them."""
    ab = draws[draws.direction == "AtoB"].sort_values(["mode", "perm"]).reset_index(drop=True)
    ba = draws[draws.direction == "BtoA"].sort_values(["mode", "perm"]).reset_index(drop=True)
    ab, ba = ab.set_index(["mode", "perm"]), ba.set_index(["mode", "perm"])
    both = ab.join(ba[["syncr2_unclipped", "real_syncr2_unclipped"]], rsuffix="_ba", how="inner")
    both["syncr2_unclipped"] = (both.syncr2_unclipped + both.syncr2_unclipped_ba) / 2
    both["real_syncr2_unclipped"] = (both.real_syncr2_unclipped + both.real_syncr2_unclipped_ba) / 2
    return both.reset_index()
