"""Figures and tables of the sensitivity analyses (the paper's Appendices C-E and I).

All read the long sensitivity table of :mod:`syncr2.analysis.sensitivity`.

* Figure 7 (``fig7_top_k``): Pearson r between top-k SyncR2 and social
  performance against k, one line per family (colour and marker shape), marker
  area by p (legend of p bins); one panel per score (floored, unfloored). A
  family whose r is undefined (e.g. every floored SyncR2 is 0) says so in the
  panel instead of drawing nothing silently.
* Figure 8 (``fig8_no_clip``): per unordered pair, grouped by family, the
  four-value SyncR2 with and without the floor (upper panel; y cut at -30,
  values below drawn as a down-arrow at the cut with their number) and their
  SEs on a log scale (lower panel; an SE of exactly 0, a fully floored score,
  is drawn hollow at the axis floor).
* Figure 9 (``fig9_sample_size``): four-value SyncR2 per pair against the
  dataset size, one panel per family, and Pearson r per family against size;
  a size the data could not fill is a hatched band, a pair that could not be
  filled an "x" at the bottom of its panel.
* Table 2 (``table2_persona_split``): SyncR2 +- SE under the original and the
  persona-disjoint split; Table 5 (``table5_nonlinear``): affine against
  nonlinear SyncR2 from two synchrony summaries; ``sensitivity``: the whole
  long table. Each as CSV and Markdown, atomically.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..analysis.pair_scores import split_pair
from ..analysis.sensitivity import check_sensitivity, read_sensitivity, table2_frame
from ..synchrony.summary import SUMMARY_COLUMNS
from .figures import _save
from .social_figures import _write_tables, markdown_table, pair_label

log = logging.getLogger(__name__)

FIGURE_STEMS = {"top_k": "fig7_top_k", "no_clip": "fig8_no_clip", "sample_size": "fig9_sample_size"}
TABLE_STEMS = {"persona_split": "table2_persona_split", "nonlinear": "table5_nonlinear", "all": "sensitivity"}

# Marker area (points^2) by p: the smaller p, the larger the marker.
P_BINS = ((0.001, 64.0, "p < 0.001"), (0.01, 40.0, "p < 0.01"), (0.05, 22.0, "p < 0.05"), (math.inf, 8.0, "p >= 0.05"))
_FAMILY_STYLE = {"Mistral": ("tab:orange", "o"), "Llama": ("tab:blue", "s"), "Cross": ("tab:green", "^"),
                 "all": ("dimgrey", "D")}
_EXTRA_STYLES = [("tab:purple", "v"), ("tab:brown", "P"), ("tab:pink", "X"), ("tab:olive", "*"), ("tab:cyan", "h")]
_SCORE_STYLE = {"clipped": ("tab:blue", "o", "with floor max(0, .) (paper)"),
                "unclipped": ("tab:red", "^", "without floor")}
_SCORE_TITLE = {"clipped": "$SyncR^2$ (floored at 0, the paper's)", "unclipped": "$SyncR^2$ unclipped"}
_SCORE_TEXT = {"clipped": "SyncR2 floored at 0 per source layer (the paper's)", "unclipped": "SyncR2 without the floor"}


def family_style(family: str, index: int = 0) -> tuple[str, str]:
    """(colour, marker) of a family: fixed for Mistral, Llama, Cross and all, cycled for others."""
    return _FAMILY_STYLE.get(family, _EXTRA_STYLES[index % len(_EXTRA_STYLES)])


def p_marker_size(p: float) -> float:
    """Marker area for a p value (:data:`P_BINS`); an undefined p gets the smallest size."""
    if not np.isfinite(p):
        return P_BINS[-1][1]
    return next(size for bound, size, _ in P_BINS if p < bound)


def _p_legend_handles() -> list[Line2D]:
    return [Line2D([], [], linestyle="", marker="o", color="grey", markersize=math.sqrt(size), label=label)
            for _, size, label in P_BINS]


def _family_order(families: Sequence[str], include_all: bool) -> list[str]:
    fams = [f for f in dict.fromkeys(families) if f and f != "all"]
    fams.sort(key=lambda f: f == "Cross")
    return fams + (["all"] if include_all and "all" in set(families) else [])


def _label(pair: str, abbreviations: Mapping[str, str] | None) -> str:
    a, b = split_pair(pair)
    return pair_label(a, b, abbreviations) if abbreviations else f"{a} & {b}"


def _rows(frame: pd.DataFrame, analysis: str) -> pd.DataFrame:
    check_sensitivity(frame)
    return frame[frame["analysis"] == analysis]


def _draw_r_lines(ax: plt.Axes, rows: pd.DataFrame, include_all: bool = False) -> tuple[list[str], list[Line2D]]:
    """Pearson r per family against ``setting_value``, marker area by p.

    Returns notes of the families with no defined r, and legend handles of the drawn ones.
    """
    undrawn, handles = [], []
    for i, fam in enumerate(_family_order(rows["family"], include_all)):
        sub = rows[rows["family"] == fam].sort_values("setting_value")
        color, marker = family_style(fam, i)
        ok = np.isfinite(sub["r"].to_numpy(float))
        label = "all pairs" if fam == "all" else fam
        if not ok.any():
            notes = [n for n in dict.fromkeys(sub["note"]) if n]
            undrawn.append(f"{label}: r undefined ({notes[0] if notes else 'no value'})")
            continue
        ax.plot(sub["setting_value"], sub["r"], color=color, linewidth=1.0, alpha=0.7,
                linestyle="--" if fam == "all" else "-", zorder=2)
        ax.scatter(sub["setting_value"][ok], sub["r"][ok], s=[p_marker_size(p) for p in sub["p"][ok]],
                   color=color, marker=marker, edgecolor="black", linewidth=0.4, zorder=3)
        n_max = int(sub["n"].max())
        for xv, rv, nv in zip(sub["setting_value"][ok], sub["r"][ok], sub["n"][ok]):
            if nv < n_max:  # fewer pairs at this setting (e.g. some could not be filled): say so at the point
                ax.annotate(f"n={nv}", (xv, rv), xytext=(5, 4 - 9 * i), textcoords="offset points", fontsize=6,
                            color=color, ha="left", va="top")
        handles.append(Line2D([], [], color=color, marker=marker, markeredgecolor="black", markersize=6,
                              linestyle="--" if fam == "all" else "-", label=f"{label} (n={int(sub['n'].max())})"))
    ax.axhline(0, color="black", linewidth=0.6)
    _r_ylim(ax, rows["r"])
    ax.grid(alpha=0.3, linewidth=0.5)
    return undrawn, handles


def _r_ylim(ax: plt.Axes, r: pd.Series) -> None:
    """y range of an r panel: up to 1, down to -1 or a little below the smallest r (at most 0)."""
    r = r.to_numpy(float)
    low = min(0.0, float(np.nanmin(r)) if np.isfinite(r).any() else 0.0)
    ax.set_ylim(max(-1.08, low - 0.15), 1.08)


def _note_undrawn(ax: plt.Axes, undrawn: list[str]) -> None:
    if undrawn:
        text = "\n".join(u if len(u) <= 70 else u[:67] + "..." for u in undrawn)
        ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=6.5, color="dimgrey", va="bottom",
                bbox={"facecolor": "white", "edgecolor": "lightgrey", "alpha": 0.9, "pad": 2})


# ---------------------------------------------------------------- Figure 7

def fig7_top_k(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    scores: Sequence[str] | None = None,
    include_all: bool = False,
) -> list[Path]:
    """Figure 7: Pearson r of top-k SyncR2 with performance against k, per family; one panel per score."""
    rows = _rows(frame, "top_k")
    if rows.empty:
        log.warning("figure 7 skipped: no top_k rows")
        return []
    scores = [s for s in (scores or ("clipped", "unclipped")) if s in set(rows["score"])]
    if not scores:
        log.warning("figure 7 skipped: no top_k rows of the scores asked for")
        return []
    fig, axes = plt.subplots(1, len(scores), figsize=(4.6 * len(scores) + 1.4, 3.6), squeeze=False, sharey=True,
                             layout="constrained")
    fam_handles: dict[str, Line2D] = {}
    for ax, score in zip(axes[0], scores):
        sub = rows[rows["score"] == score]
        undrawn, handles = _draw_r_lines(ax, sub, include_all)
        fam_handles.update({h.get_label(): h for h in handles})
        _note_undrawn(ax, undrawn)
        ax.set_xlabel("$k$ (top-$k$ target layers averaged per source layer)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ks = sub["setting_value"].to_numpy(float)
        ax.set_xlim(ks.min() - 0.6, ks.max() + 0.6)
        capped = sub.loc[sub["note"].str.contains("k capped at L_B", regex=False), "setting_value"]
        if len(capped):  # k beyond some tables' target layers: those tables average all their layers
            ax.axvspan(capped.min() - 0.5, capped.max() + 0.5, color="khaki", alpha=0.35, zorder=0)
            ax.text(capped.max() + 0.4, 0.98, "k > $L_B$ of some models:\nthose average all $L_B$",
                    transform=ax.get_xaxis_transform(), fontsize=6, va="top", ha="right", color="dimgrey")
        ax.set_title(_SCORE_TITLE[score], fontsize=9)
    _r_ylim(axes[0][0], rows[rows["score"].isin(scores)]["r"])  # the panels share y
    axes[0][0].set_ylabel("Pearson $r$ with social performance")
    fig.legend(handles=list(fam_handles.values()) + _p_legend_handles(), loc="outside right center", fontsize=7,
               frameon=False,
               title="family / marker area", title_fontsize=7)
    fig.suptitle("Top-$k$ layer choice: correlation with social performance (Figure 7)", fontsize=10)
    return _save(fig, Path(out_dir), FIGURE_STEMS["top_k"])


# ---------------------------------------------------------------- Figure 8

def _family_blocks(ax: plt.Axes, families: Sequence[str], top: bool) -> None:
    """Dashed separators between family groups; family names above the upper panel."""
    start = 0
    for i in range(1, len(families) + 1):
        if i == len(families) or families[i] != families[start]:
            if i < len(families):
                ax.axvline(i - 0.5, color="grey", linestyle="--", linewidth=0.7)
            if top:
                ax.text((start + i - 1) / 2, 1.01, families[start], transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, fontweight="bold")
            start = i


def _se_panel(bottom: Any, series: Mapping[str, pd.DataFrame], xs: np.ndarray, offsets: Mapping[str, float],
              positive_se: list[float]) -> None:
    """Figure 8's lower panel: SEs on a log scale; an SE of exactly 0 cannot be drawn there, so it sits
    hollow at a floor below a break line."""
    floor = min(positive_se) / 10 if positive_se else 1e-3
    any_zero = False
    for score, sub in series.items():
        color, marker, label = _SCORE_STYLE[score]
        se = sub["se"].to_numpy(float)
        x = xs + offsets[score]
        pos = np.isfinite(se) & (se > 0)
        bottom.scatter(x[pos], se[pos], marker=marker, color=color, s=22, label=label, zorder=3)
        zero = np.isfinite(se) & (se == 0)
        if zero.any():
            any_zero = True
            bottom.scatter(x[zero], np.full(zero.sum(), floor), marker=marker, facecolor="none", edgecolor=color,
                           s=22, zorder=3, label=f"{label}: SE = 0 (every layer floored)")
    bottom.set_yscale("log")
    if any_zero:
        bottom.axhline(floor * 2.5, color="grey", linestyle=":", linewidth=0.8)
        bottom.text(-0.5, floor * 1.15, "SE = 0", fontsize=7, color="dimgrey", ha="left", va="bottom")
        bottom.set_ylim(floor / 2, max(positive_se, default=floor * 10) * 2)


def fig8_no_clip(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    abbreviations: Mapping[str, str] | None = None,
    y_cut: float = -30.0,
    direction: str = "four_way",
) -> list[Path]:
    """Figure 8: SyncR2 with and without the floor per pair (y cut at ``y_cut``), and their SEs (log scale)."""
    rows = _rows(frame, "no_clip")
    rows = rows[rows["direction"] == direction]
    if rows.empty:
        log.warning("figure 8 skipped: no no_clip rows of direction %s", direction)
        return []
    fam_rank = {f: i for i, f in enumerate(_family_order(rows["family"], False))}
    pairs = list(dict.fromkeys(rows["pair"]))
    pair_fam = dict(zip(rows["pair"], rows["family"]))
    pairs.sort(key=lambda p: fam_rank.get(pair_fam[p], len(fam_rank)))  # stable: table order within a family
    xs = np.arange(len(pairs))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(5.0, 0.42 * len(pairs) + 2.5), 6.0), sharex=True,
                                      layout="constrained")
    offsets = {"clipped": -0.15, "unclipped": 0.15}
    lows, highs, positive_se = [0.0], [0.0], []
    series = {}
    for score in ("clipped", "unclipped"):
        sub = rows[rows["score"] == score].set_index("pair").reindex(pairs)
        series[score] = sub
        v, se = sub["value"].to_numpy(float), sub["se"].to_numpy(float)
        fin = np.isfinite(v)
        lows += list((v - np.nan_to_num(se))[fin])
        highs += list((v + np.nan_to_num(se))[fin])
        positive_se += [s for s in se if np.isfinite(s) and s > 0]
    cut = any(np.nanmin(sub["value"].to_numpy(float), initial=0.0) < y_cut for sub in series.values())
    low = max(y_cut, min(lows))
    span = max(max(highs) - low, 0.05)
    ylim = (low - (0.06 if cut else 0.08) * span, max(highs) + 0.08 * span)
    for score, sub in series.items():
        color, marker, label = _SCORE_STYLE[score]
        v, se = sub["value"].to_numpy(float), sub["se"].to_numpy(float)
        x = xs + offsets[score]
        inside = np.isfinite(v) & (v >= y_cut)
        top.errorbar(x[inside], v[inside], yerr=np.nan_to_num(se[inside]), fmt=marker, color=color, markersize=4.5,
                     capsize=2, linewidth=0.8, label=label, zorder=3)
        below = np.isfinite(v) & (v < y_cut)
        if below.any():  # off the cut scale: a down-arrow on the cut line, with the value beside it
            top.scatter(x[below], np.full(below.sum(), y_cut), marker="v", color=color, s=36, zorder=4,
                        label=f"{label}: below {y_cut:g} (value printed)")
            for xi, vi in zip(x[below], v[below]):
                top.annotate(f"{vi:.3g}", (xi, y_cut), xytext=(5, 2), textcoords="offset points", ha="left",
                             va="bottom", fontsize=7, color=color)
    if cut:
        top.axhline(y_cut, color="grey", linestyle=":", linewidth=0.8)
    top.set_ylim(*ylim)
    top.axhline(0, color="black", linewidth=0.6)
    top.set_ylabel("$SyncR^2$ (four-value mean)" if direction == "four_way" else f"$SyncR^2$ ({direction})")
    top.grid(axis="y", alpha=0.3, linewidth=0.5)
    _family_blocks(top, [pair_fam[p] for p in pairs], True)
    _se_panel(bottom, series, xs, offsets, positive_se)
    bottom.set_ylabel("standard error (log scale)")
    handles: dict[str, object] = {}
    for ax in (top, bottom):
        for h, lbl in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lbl, h)
    order = sorted(handles, key=lambda lbl: ("below" in lbl, "SE = 0" in lbl, "without" in lbl))
    fig.legend([handles[lbl] for lbl in order], order, loc="outside lower center", ncol=2,
               fontsize=7, frameon=False)
    bottom.grid(axis="y", which="major", alpha=0.3, linewidth=0.5)
    _family_blocks(bottom, [pair_fam[p] for p in pairs], False)
    bottom.set_xticks(xs, [_label(p, abbreviations) for p in pairs], rotation=45 if len(pairs) > 8 else 0,
                      ha="right" if len(pairs) > 8 else "center", fontsize=7)
    bottom.set_xlim(-0.6, len(pairs) - 0.4)
    title = "Floor at 0 or not: $SyncR^2$ and its standard error (Figure 8)"
    fig.suptitle(title + (f"\n(upper panel cut at {y_cut:g})" if cut else ""), fontsize=10)
    return _save(fig, Path(out_dir), FIGURE_STEMS["no_clip"])


# ---------------------------------------------------------------- Figure 9

def _insufficient_sizes(rows: pd.DataFrame) -> dict[float, str]:
    """Sizes whose every pair row is NaN with an insufficiency note: size -> note."""
    out = {}
    for size, grp in rows.groupby("setting_value"):
        if grp["value"].isna().all() and grp["note"].str.startswith("insufficient").all():
            out[float(size)] = grp["note"].iloc[0].removeprefix("insufficient: ")
    return out


def _mark_sizes(ax: plt.Axes, whole: Mapping[float, str], width: float) -> None:
    """A hatched band and the word "insufficient" at each size the data could not fill."""
    for size in whole:
        ax.axvspan(size - width, size + width, facecolor="lightgrey", edgecolor="grey", hatch="//", alpha=0.6,
                   zorder=0)
        ax.text(size, 0.5, "insufficient", transform=ax.get_xaxis_transform(), rotation=90,
                ha="center", va="center", fontsize=7, color="black",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def fig9_sample_size(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    score: str = "clipped",
    abbreviations: Mapping[str, str] | None = None,
    include_all: bool = False,
) -> list[Path]:
    """Figure 9: four-value SyncR2 per pair against size (a panel per family) and Pearson r per family against size."""
    pair_rows = _rows(frame, "sample_size")
    pair_rows = pair_rows[(pair_rows["direction"] == "four_way") & (pair_rows["score"] == score)]
    corr_rows = _rows(frame, "sample_size_correlation")
    corr_rows = corr_rows[corr_rows["score"] == score]
    if pair_rows.empty:
        log.warning("figure 9 skipped: no sample_size rows of score %s", score)
        return []
    sizes = np.sort(pair_rows["setting_value"].unique())
    width = 0.025 * (np.ptp(sizes) if len(sizes) > 1 else max(sizes[0], 1.0))
    whole = _insufficient_sizes(pair_rows)
    fams = _family_order(pair_rows["family"], False)
    n_panels = len(fams) + (1 if not corr_rows.empty else 0)
    fig, axes = plt.subplots(1, n_panels, figsize=(3.7 * n_panels + 0.6, 3.9), squeeze=False, layout="constrained")
    fig.get_layout_engine().set(wspace=0.06)
    cmap = matplotlib.colormaps["tab10"]
    share = [ax for ax in axes[0][: len(fams)]]
    for ax, fam in zip(share, fams):
        sub = pair_rows[pair_rows["family"] == fam]
        n_lone = 0
        for j, (pair, grp) in enumerate(sorted(sub.groupby("pair"), key=lambda kv: kv[0])):
            grp = grp.sort_values("setting_value")
            color = cmap(j % 10)
            ok = grp["value"].notna().to_numpy()
            ax.errorbar(grp["setting_value"][ok], grp["value"][ok], yerr=grp["se"][ok].fillna(0), marker="o",
                        markersize=3.5, capsize=2, linewidth=1.0, color=color, label=_label(pair, abbreviations))
            lone = grp[~ok & ~grp["setting_value"].isin(list(whole))]
            if len(lone):  # one "x" per unfilled pair, stacked from the bottom of the panel
                ax.scatter(lone["setting_value"], np.full(len(lone), 0.03 + 0.05 * n_lone),
                           transform=ax.get_xaxis_transform(), marker="x", color=color, s=30, zorder=4)
                n_lone += 1
        _mark_sizes(ax, whole, width)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("dataset size (samples)")
        ax.grid(alpha=0.3, linewidth=0.5)
        ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
        ax.set_xticks(sizes, [f"{int(s)}" for s in sizes], rotation=45 if len(sizes) > 5 else 0, fontsize=7)
    if share:
        share[0].set_ylabel("$SyncR^2$ (four-value mean)")
        lo = min(ax.get_ylim()[0] for ax in share)
        hi = max(ax.get_ylim()[1] for ax in share)
        for ax in share:
            ax.set_ylim(lo, hi)
    if any(((~pair_rows["value"].notna()) & ~pair_rows["setting_value"].isin(list(whole))).to_numpy()):
        share[-1].scatter([], [], marker="x", color="black", label="this pair: insufficient")
        share[-1].legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    if not corr_rows.empty:
        ax = axes[0][-1]
        undrawn, handles = _draw_r_lines(ax, corr_rows, include_all)
        _note_undrawn(ax, undrawn)
        _mark_sizes(ax, whole, width)
        ax.set_xticks(sizes, [f"{int(s)}" for s in sizes], rotation=45 if len(sizes) > 5 else 0, fontsize=7)
        ax.set_xlabel("dataset size (samples)")
        ax.set_ylabel("Pearson $r$ with social performance")
        ax.set_title("correlation per family", fontsize=9)
        ax.legend(handles=handles + _p_legend_handles(), fontsize=6, ncol=3, loc="upper center",
                  bbox_to_anchor=(0.5, -0.28), frameon=False)
    for ax in axes[0]:
        ax.set_xlim(sizes.min() - 2.5 * width, sizes.max() + 2.5 * width)
    if whole:
        text = "; ".join(f"{int(size)}: {reason}" for size, reason in sorted(whole.items()))
        fig.text(0.01, -0.01, f"Insufficient sizes (hatched): {text}", fontsize=7, ha="left", va="top")
    fig.suptitle(f"Sample size: {_SCORE_TITLE[score]} and its correlation with performance (Figure 9)", fontsize=10)
    return _save(fig, Path(out_dir), FIGURE_STEMS["sample_size"])


# ---------------------------------------------------------------- tables

def _pm(value: float, se: float) -> str:
    """"0.46 ± 0.01" as the paper prints; an SE that rounds to 0.00 keeps two significant digits."""
    if not np.isfinite(value):
        return "n/a"
    if not np.isfinite(se):
        return f"{value:.2f}"
    return f"{value:.2f} ± {se:.2f}" if se == 0 or se >= 0.005 else f"{value:.2f} ± {se:.2g}"


def _table_label(pair: str, abbreviations: Mapping[str, str] | None) -> str:
    """"M2 & L3": the pair's models (abbreviated when given) in speaking order."""
    abbr = abbreviations or {}
    a, b = split_pair(pair)
    return f"{abbr.get(a, a)} & {abbr.get(b, b)}"


def _direction_text(direction: str) -> str:
    """How a table's caption names its direction, and what its ± means."""
    return f"{'both directions combined' if direction == 'combined' else direction}; value ± SE over split seeds"


def _value_table(wide: pd.DataFrame, abbreviations: Mapping[str, str] | None, columns: Mapping[str, str],
                 with_family: bool = False) -> pd.DataFrame:
    """The shown table: each pair's label (and family), ``value ± SE`` per ``{heading: column}``
    (``column`` and ``column_se`` of ``wide``), and the notes when any row has one."""
    shown = pd.DataFrame({"model pair": [_table_label(p, abbreviations) for p in wide["pair"]]})
    if with_family:
        shown["family"] = wide["family"].to_numpy()
    for heading, col in columns.items():
        shown[heading] = [_pm(v, s) for v, s in zip(wide[col], wide[f"{col}_se"])]
    shown["note"] = wide["note"].to_numpy()
    return shown if shown["note"].str.len().any() else shown.drop(columns="note")


def table2_persona_split(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    score: str = "clipped",
    abbreviations: Mapping[str, str] | None = None,
    direction: str = "combined",
) -> list[Path]:
    """Table 2: SyncR2 +- SE per pair under the original and the persona-disjoint split (CSV and Markdown)."""
    wide = table2_frame(frame, score, direction)
    shown = _value_table(wide, abbreviations, {"original": "original", "persona-disjoint": "disjoint"},
                         with_family=True)
    text = ["# Table 2: SyncR2 under the original and the persona-disjoint train/test split\n",
            (f"Original: samples grouped by task; persona-disjoint: grouped by the task's unordered persona pair, "
             f"so no persona pair is in both sets. {_SCORE_TEXT[score]}, {_direction_text(direction)}.\n"),
            markdown_table(shown)]
    return _write_tables(wide, "\n".join(text), out_dir, TABLE_STEMS["persona_split"])


def table5_frame(
    affine: pd.DataFrame,
    nonlinear: pd.DataFrame,
    score: str = "clipped",
    condition: str = "experimental",
    direction: str = "combined",
    model_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Table 5, wide: pair, affine, affine_se, nonlinear, nonlinear_se, note, from two synchrony summaries.

    One row per pair in either summary (a pair missing from one gets NaN and a note); rows in
    ``model_order`` (first model, then second) when given, else in the summaries' order.
    """
    cols = {"clipped": ("syncr2", "se"), "unclipped": ("syncr2_unclipped", "se_unclipped")}
    if score not in cols:
        raise ValueError(f"score must be 'clipped' or 'unclipped', got {score!r}")
    vcol, scol = cols[score]
    picked = {}
    for name, summary in (("affine", affine), ("nonlinear", nonlinear)):
        missing = [c for c in ("pair", "condition", "direction", vcol, scol) if c not in summary.columns]
        if missing:
            raise ValueError(f"{name} synchrony summary lacks column(s) {', '.join(missing)} "
                             f"(expected the columns {', '.join(SUMMARY_COLUMNS)})")
        sub = summary[(summary["condition"] == condition) & (summary["direction"] == direction)]
        if sub["pair"].duplicated().any():
            raise ValueError(f"{name} synchrony summary has two {condition} {direction} rows for pair "
                             f"{sub.loc[sub['pair'].duplicated(), 'pair'].iloc[0]}")
        picked[name] = sub.set_index("pair")
    pairs = list(dict.fromkeys([*picked["affine"].index, *picked["nonlinear"].index]))
    if model_order is not None:
        rank = {m: i for i, m in enumerate(model_order)}
        pairs.sort(key=lambda p: tuple(rank.get(m, len(rank)) for m in split_pair(p)))
    rows = []
    for pair in pairs:
        row: dict = {"pair": pair}
        notes = []
        for name in ("affine", "nonlinear"):
            have = pair in picked[name].index
            row[name] = float(picked[name].loc[pair, vcol]) if have else math.nan
            row[f"{name}_se"] = float(picked[name].loc[pair, scol]) if have else math.nan
            if not have:
                notes.append(f"no {name} {condition} {direction} row")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows, columns=["pair", "affine", "affine_se", "nonlinear", "nonlinear_se", "note"])


def table5_nonlinear(
    affine: pd.DataFrame,
    nonlinear: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    score: str = "clipped",
    abbreviations: Mapping[str, str] | None = None,
    condition: str = "experimental",
    direction: str = "combined",
    model_order: Sequence[str] | None = None,
) -> list[Path]:
    """Table 5: affine against nonlinear SyncR2 +- SE per pair (CSV and Markdown)."""
    wide = table5_frame(affine, nonlinear, score, condition, direction, model_order)
    shown = _value_table(wide, abbreviations, {"affine": "affine", "nonlinear": "nonlinear"})
    text = ["# Table 5: affine and nonlinear maps\n",
            f"{_SCORE_TEXT[score]}, {condition}, {_direction_text(direction)}.\n",
            markdown_table(shown)]
    return _write_tables(wide, "\n".join(text), out_dir, TABLE_STEMS["nonlinear"])


def sensitivity_tables(frame: pd.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    """The whole sensitivity table as CSV; as Markdown, its family rows and four-value pair rows per analysis."""
    check_sensitivity(frame)
    text = ["# Sensitivity analyses (the paper's Appendices C-E)\n",
            "Family rows: Pearson r with performance; pair rows: the four-value SyncR2 mean and SE.\n"]
    fmt = {"p": ".3g", "setting_value": ".0f"}
    for analysis, grp in frame.groupby("analysis", sort=False):
        family_rows = grp["pair"] == ""
        if family_rows.any():
            cols = ["setting", "score", "family", "n", "value", "r", "p", "note"]
            part = grp.loc[family_rows, cols].rename(columns={"value": "mean SyncR2"})
        else:
            cols = ["setting", "score", "pair", "family", "value", "se", "n", "note"]
            part = grp.loc[grp["direction"] == "four_way", cols]
        text.append(f"## {analysis}\n\n" + markdown_table(part.reset_index(drop=True), fmt))
    return _write_tables(frame, "\n".join(text), out_dir, TABLE_STEMS["all"])


def make_sensitivity(
    sensitivity_path: str | os.PathLike[str],
    figures_dir: str | os.PathLike[str],
    tables_dir: str | os.PathLike[str],
    abbreviations: Mapping[str, str] | None = None,
    score: str = "clipped",
) -> list[Path]:
    """Every sensitivity figure and table the table has rows for; returns the written paths.

    ``score``: which SyncR2 Figure 9 and Table 2 show (Figures 7 and 8 show both).
    """
    frame = read_sensitivity(sensitivity_path)
    present = set(frame["analysis"])
    paths: list[Path] = []
    if "top_k" in present:
        paths += fig7_top_k(frame, figures_dir)
    if "no_clip" in present:
        paths += fig8_no_clip(frame, figures_dir, abbreviations)
    if "sample_size" in present:
        paths += fig9_sample_size(frame, figures_dir, score, abbreviations)
    if "persona_split" in present:
        paths += table2_persona_split(frame, tables_dir, score, abbreviations)
    if len(frame):
        paths += sensitivity_tables(frame, tables_dir)
    for p in paths:
        log.info("wrote %s", p)
    return paths
