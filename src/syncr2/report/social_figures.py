"""Figures and tables of the social analyses.

* Figure 6: per family, SyncR2 (four-value mean) against averaged social
  performance, points labelled with the models' abbreviations, the
  least-squares line, Pearson r and p in the panel title.
* Figure 5: SyncR2 per relationship category (stranger .. family), the
  distribution over model pairs; categories absent from the scored sets are
  marked on the axis, never drawn as zero.
* Tables: Table 1 (partial correlations), social performance, the Figure 6
  correlations, each as CSV and Markdown.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.atomic import atomic_path
from .figures import _save

log = logging.getLogger(__name__)

# Candidate label offsets (points) around a marker, tried in this order.
_OFFSETS = [(5, 3), (5, -9), (-5, 3), (-5, -9), (0, 6), (0, -12), (8, 9), (8, -15), (-8, 9), (-8, -15)]


def pair_label(model_a: str, model_b: str, abbreviations: Mapping[str, str] | None = None) -> str:
    """"M1M2"-style label of a pair from the models' abbreviations (default: the model keys)."""
    abbr = abbreviations or {}
    return f"{abbr.get(model_a, model_a)}{abbr.get(model_b, model_b)}"


def _place_labels(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str]) -> list:
    """Annotate points, each label at the first offset that overlaps no earlier label or marker."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    placed: list = []
    from matplotlib.transforms import Bbox

    radius = 4.0 * fig.dpi / 72  # marker half-size in pixels
    markers = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
               for px, py in (ax.transData.transform((x, y)) for x, y in zip(xs, ys))]
    axes_box = ax.get_window_extent(renderer)
    texts = []
    for i, ((x, y), label) in enumerate(zip(zip(xs, ys), labels)):
        best, best_cost = None, math.inf
        for dx, dy in _OFFSETS:
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                               ha="left" if dx > 0 else "right" if dx < 0 else "center")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            cost = sum(box.overlaps(b) for b in placed) * 10
            cost += sum(box.overlaps(m) for j, m in enumerate(markers) if j != i) * 3
            cost += 0 if axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1) else 5
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (text, box), cost
            else:
                text.remove()
            if cost == 0:
                break
        placed.append(best[1])
        texts.append(best[0])
    return texts


def _fmt_p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def fig6_correlation(
    scores: pd.DataFrame,
    correlations: pd.DataFrame,
    abbreviations: Mapping[str, str] | None,
    out_dir: str | os.PathLike[str],
    x: str = "performance_averaged",
    y: str = "syncr2_four_way",
) -> list[Path]:
    """Figure 6: one panel per family, labelled points, least-squares line, r and p."""
    corr = correlations.set_index("family")
    fams = [f for f in correlations["family"] if f != "all" and f in set(scores["family"])]
    fams += [f for f in dict.fromkeys(scores["family"]) if f not in fams]
    if not fams:
        log.warning("figure 6 skipped: no pair scores")
        return []
    fig, axes = plt.subplots(1, len(fams), figsize=(3.9 * len(fams), 3.7), squeeze=False, layout="constrained")
    points = []
    for ax, fam in zip(axes[0], fams):
        sub = scores[scores["family"] == fam].sort_values(x)
        xs, ys = sub[x].to_numpy(float), sub[y].to_numpy(float)
        ax.scatter(xs, ys, s=22, color="tab:blue", edgecolor="black", linewidth=0.5, zorder=3)
        r = float(corr.loc[fam, "r"]) if fam in corr.index else math.nan
        n = int(corr.loc[fam, "n"]) if fam in corr.index else len(sub)
        if np.isfinite(r):
            slope, intercept = np.polyfit(xs, ys, 1)
            grid = np.array([xs.min(), xs.max()])
            ax.plot(grid, slope * grid + intercept, color="tab:red", linewidth=1.2, label="least squares", zorder=2)
            ax.set_title(f"{fam}: r = {r:.2f}, p = {_fmt_p(float(corr.loc[fam, 'p']))} (n={n})", fontsize=9)
        else:
            ax.set_title(f"{fam}: r: n/a (n={n})", fontsize=9)
        if len(xs):
            pad_x = max(np.ptp(xs) * 0.15, 0.05)
            pad_y = max(np.ptp(ys) * 0.12, 0.01)
            ax.set_xlim(xs.min() - pad_x, xs.max() + pad_x)
            ax.set_ylim(ys.min() - pad_y, ys.max() + pad_y)
        ax.set_xlabel("social performance (Sotopia-eval overall)")
        ax.grid(alpha=0.3, linewidth=0.5)
        points.append((ax, xs, ys, [pair_label(a, b, abbreviations) for a, b in zip(sub.model_a, sub.model_b)]))
    unclipped = "syncr2_score" in scores and (scores["syncr2_score"] == "unclipped").any()
    axes[0][0].set_ylabel("$SyncR^2$ " + ("unclipped " if unclipped else "") + "(mean of four directions)")
    fig.canvas.draw()  # settle the layout, so label placement sees the final axes
    fig.set_layout_engine("none")
    for ax, xs, ys, labels in points:
        _place_labels(ax, xs, ys, labels)
    return _save(fig, Path(out_dir), "fig6_correlation")


def relationship_per_pair(rel_table: pd.DataFrame, column: str = "syncr2") -> pd.DataFrame:
    """One SyncR2 per (mode, pair, category): mean over directions, split and subsample seeds of ok rows."""
    ok = rel_table[rel_table["status"] == "ok"]
    out = ok.groupby(["mode", "pair", "relationship", "relationship_name"], as_index=False)[column].mean()
    return out.rename(columns={column: "syncr2"})


def fig5_relationships(rel_table: pd.DataFrame, out_dir: str | os.PathLike[str], column: str = "syncr2") -> list[Path]:
    """Figure 5: SyncR2 per relationship category, box and points over model pairs, one panel per mode.

    ``column``: ``syncr2`` (the paper's) or ``syncr2_unclipped``.
    """
    if rel_table.empty:
        log.warning("figure 5 skipped: empty relationship table")
        return []
    per_pair = relationship_per_pair(rel_table, column)
    modes = [m for m in ("paper", "crossfit") if m in set(rel_table["mode"])]
    modes += sorted(set(rel_table["mode"]) - set(modes))
    fig, axes = plt.subplots(1, len(modes), figsize=(5.6 * len(modes), 3.9), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, mode in zip(axes[0], modes):
        rows = rel_table[rel_table["mode"] == mode]
        cats = rows[["relationship", "relationship_name"]].drop_duplicates().sort_values("relationship")
        ticks = []
        for i, (code, name) in enumerate(zip(cats.relationship, cats.relationship_name)):
            draws = rows[rows["relationship"] == code]
            splits = draws.groupby(["pair", "direction", "split_seed"])["status"].first()
            n_missing = int((splits != "ok").sum())
            values = per_pair[(per_pair["mode"] == mode) & (per_pair["relationship"] == code)]["syncr2"].to_numpy()
            label = name.replace("_", " ")
            if len(values) == 0:
                few = draws[draws["status"] == "too_few"]
                word = "too few" if len(few) else "missing"
                label += f"\n{word} (n={int(few['n_test'].max()) if len(few) else 0})"
                ax.text(i, 0.5, word, transform=ax.get_xaxis_transform(), ha="center", va="center",
                        rotation=90, fontsize=8, color="grey")
            else:
                ax.boxplot([values], positions=[i], widths=0.5, showfliers=False,
                           medianprops={"color": "tab:red"})
                jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(values))
                ax.scatter(i + jitter, values, s=12, color="tab:blue", alpha=0.8, zorder=3)
                n_test = draws.loc[draws["status"] == "ok", "n_test"]
                label += f"\nn={int(n_test.median())}"
                if n_missing:
                    label += f"\nabsent in\n{n_missing}/{len(splits)} splits"
            ticks.append(label)
        ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
        ax.set_xlim(-0.6, len(ticks) - 0.4)
        n_pairs = rows["pair"].nunique()
        ax.set_title(f"{mode}: SyncR$^2$ by relationship ({n_pairs} pair{'s' if n_pairs != 1 else ''})", fontsize=9)
        ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    axes[0][0].set_ylabel("$SyncR^2$ " + ("unclipped " if column == "syncr2_unclipped" else "")
                          + "(equal-size test subsamples)")
    return _save(fig, Path(out_dir), "fig5_relationships")


def _cell(value: object, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> str:
    """A GitHub Markdown table; floats to 3 decimals (or ``formats[col]``), NaN as "n/a"."""
    formats = formats or {}
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row):
            fmt = formats.get(col)
            if fmt and isinstance(value, (float, np.floating)) and np.isfinite(value):
                cells.append(format(value, fmt))
            else:
                cells.append(_cell(value).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_tables(frame: pd.DataFrame, markdown: str, out_dir: str | os.PathLike[str], stem: str) -> list[Path]:
    out = Path(out_dir)
    csv, md = out / f"{stem}.csv", out / f"{stem}.md"
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown)
    return [csv, md]


P_FORMAT = {"p": ".3g", "p_t": ".3g"}


def table1_partial_correlation(partial: pd.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Table 1: partial r of performance and SyncR2 given mean ability, per family and ability."""
    text = ["# Table 1: partial correlation of social performance and SyncR2 given mean model ability\n",
            ("x = one-order performance, y = A->B SyncR2 (mean of both orders), z = mean ability of the two "
             "models; p from t = r sqrt(dof / (1 - r^2)), dof = n - 3.\n")]
    for control, grp in partial.groupby("control", sort=False):
        cols = [c for c in ("family", "n", "r", "p", "r_xy", "r_xz", "r_yz", "note") if c in grp.columns]
        text.append(f"## control: {control}\n\n" + markdown_table(grp[cols], P_FORMAT))
    return _write_tables(partial, "\n".join(text), out_dir, "table1_partial_correlation")


def performance_tables(performance: pd.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Social performance per level (ordered, averaged, one_order) with valid / invalid counts."""
    text = ["# Social performance (Sotopia-eval)\n",
            "overall = mean of the 7 dimensions; n_valid / n_invalid: judged task-seeds kept / dropped.\n"]
    for level in ("ordered", "averaged", "one_order"):
        grp = performance[performance["level"] == level]
        if grp.empty:
            continue
        cols = [c for c in ("pair", "family", "overall", "goal", "overall_agent1", "overall_agent2",
                            "n_valid", "n_invalid") if c in grp.columns and not grp[c].isna().all()]
        text.append(f"## {level}\n\n" + markdown_table(grp[cols]))
    return _write_tables(performance, "\n".join(text), out_dir, "performance")


def correlation_table(
    correlations: pd.DataFrame, out_dir: str | os.PathLike[str], scores: pd.DataFrame | None = None
) -> list[Path]:
    """The Figure 6 correlations (and, if given, the per-pair points) as CSV and Markdown."""
    text = ["# SyncR2 against social performance (Figure 6)\n",
            ("Pearson r and two-sided p per family; x = performance averaged over both speaking orders, "
             "y = four-value SyncR2 mean.\n"), markdown_table(correlations, P_FORMAT)]
    if scores is not None:
        text.append("## Pair scores\n\n" + markdown_table(scores))
    return _write_tables(correlations, "\n".join(text), out_dir, "correlation")


def make_social(
    summary_dir: str | os.PathLike[str],
    figures_dir: str | os.PathLike[str],
    tables_dir: str | os.PathLike[str],
    abbreviations: Mapping[str, str] | None = None,
    score: str = "clipped",
) -> list[Path]:
    """Every social figure and table from the analysis outputs in ``summary_dir`` (those present).

    ``score``: which SyncR2 Figure 5 shows, ``clipped`` (the paper's) or ``unclipped``.
    """
    src = Path(summary_dir)
    paths: list[Path] = []
    if (src / "pair_scores.parquet").exists() and (src / "correlation.parquet").exists():
        scores, corr = pd.read_parquet(src / "pair_scores.parquet"), pd.read_parquet(src / "correlation.parquet")
        paths += fig6_correlation(scores, corr, abbreviations, figures_dir)
        paths += correlation_table(corr, tables_dir, scores)
    if (src / "partial_correlation.parquet").exists():
        paths += table1_partial_correlation(pd.read_parquet(src / "partial_correlation.parquet"), tables_dir)
    if (src / "performance.parquet").exists():
        paths += performance_tables(pd.read_parquet(src / "performance.parquet"), tables_dir)
    if (src / "relationships.parquet").exists():
        column = "syncr2_unclipped" if score == "unclipped" else "syncr2"
        paths += fig5_relationships(pd.read_parquet(src / "relationships.parquet"), figures_dir, column)
    for p in paths:
        log.info("wrote %s", p)
    return paths
