"""The paper's figures and tables from R2 tables and the SyncR2 summary.

* Figure 2: per pair and direction, the layer-pair R2 heatmap (source layers
  on x, target layers on y), negative R2 grey, each source layer's best
  target layer boxed.
* Figure 3: per pair, the experimental group next to the controls (passive,
  and the first lag) for direction A->B.
* Figure 4a: SyncR2 experimental vs passive, mean over the pairs of each
  family, with standard errors.
* Figure 4b: SyncR2 against lag k (k = 0 is the experimental group), one
  line per pair, one panel per family, with standard errors.
* Tables: the summary as CSV and Markdown.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from ..core.atomic import atomic_path  # noqa: E402
from ..synchrony.r2table import r2_cube, read_r2_table  # noqa: E402

log = logging.getLogger(__name__)


def pair_family(pair: str, families: Mapping[str, str]) -> str:
    """Family of a ``m1__m2`` pair: the shared family of both models, else 'Cross'."""
    m1, m2 = pair.split("__", 1)
    f1, f2 = families.get(m1, m1), families.get(m2, m2)
    return f1 if f1 == f2 else "Cross"


def lag_of(condition: str) -> int | None:
    """k of a condition: 0 for experimental, K for lagK, None otherwise."""
    if condition == "experimental":
        return 0
    m = re.fullmatch(r"lag(\d+)", condition)
    return int(m.group(1)) if m else None


def _save(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


MAX_ANNOTATED_CELLS = 100


def color_top(*grids: np.ndarray) -> float:
    """Upper end of the colour scale: the largest R2, at least 0.01 so all-negative grids still draw."""
    return max(max(float(np.nanmax(g)) for g in grids), 0.01)


def draw_heatmap(ax: plt.Axes, grid: np.ndarray, title: str, vmax: float | None = None) -> matplotlib.image.AxesImage:
    """Figure 2 style: x = source layer, y = target layer, grey < 0, best target boxed."""
    shown = np.ma.masked_less(grid.T, 0.0)  # (L_tgt, L_src)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    top = vmax if vmax is not None else color_top(grid)
    im = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, vmin=0.0, vmax=top, interpolation="nearest")
    for a, b in enumerate(np.argmax(grid, axis=1)):
        ax.add_patch(Rectangle((a - 0.5, b - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
    if grid.size <= MAX_ANNOTATED_CELLS:  # small grids (the demo's tiny models): print every R2
        for (a, b), value in np.ndenumerate(grid):
            ax.text(a, b, f"{value:.2g}", ha="center", va="center", fontsize=6,
                    color="black" if value < 0 or value > 0.6 * top else "white")
    if not (grid >= 0).any():
        title += "\n(every $R^2$ < 0: all grey)"
    one_based = FuncFormatter(lambda v, _pos: f"{int(v) + 1}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
        axis.set_major_formatter(one_based)
    ax.set_xlabel("source layer $l_A$")
    ax.set_ylabel("target layer $l_B$")
    ax.set_title(title, fontsize=9)
    return im


def heatmap_figures(tables: Iterable[str | os.PathLike[str]], out_dir: Path) -> list[Path]:
    """Figure 2 for every experimental table, Figure 3 for every pair with controls."""
    by_key: dict[tuple[str, str, str], np.ndarray] = {}
    for path in tables:
        table, meta = read_r2_table(path)
        by_key[(meta["pair"], meta["condition"], meta["direction"])] = r2_cube(table).mean(0)
    paths: list[Path] = []
    for (pair, cond, direction), grid in sorted(by_key.items()):
        if cond != "experimental":
            continue
        fig, ax = plt.subplots(figsize=(4.4, 3.8), layout="constrained")
        src, tgt = pair.split("__", 1) if direction == "AtoB" else pair.split("__", 1)[::-1]
        im = draw_heatmap(ax, grid, f"{src} $\\rightarrow$ {tgt} ({pair}, {direction})")
        fig.colorbar(im, ax=ax, label="test $R^2$")
        paths += _save(fig, out_dir, f"fig2_heatmap_{pair}_{direction}")
    pairs = sorted({k[0] for k in by_key})
    for pair in pairs:
        conds = [c for c in ("experimental", "passive") if (pair, c, "AtoB") in by_key]
        lags = sorted((lag_of(c), c) for (p, c, d) in by_key if p == pair and d == "AtoB" and (lag_of(c) or 0) > 0)
        if lags:
            conds.append(lags[0][1])
        if len(conds) < 2:
            continue
        grids = [by_key[(pair, c, "AtoB")] for c in conds]
        vmax = color_top(*grids)
        fig, axes = plt.subplots(1, len(conds), figsize=(3.8 * len(conds), 3.6), squeeze=False, layout="constrained")
        labels = {"experimental": "experimental", "passive": "w/o social engagement (passive)"}
        for ax, cond, grid in zip(axes[0], conds, grids):
            im = draw_heatmap(ax, grid, labels.get(cond, f"w/o temporal proximity ({cond})"), vmax=vmax)
            if ax is not axes[0][0]:
                ax.set_ylabel("")
        fig.colorbar(im, ax=list(axes[0]), label="test $R^2$")
        fig.suptitle(f"{pair}: A $\\rightarrow$ B under each condition", fontsize=10)
        paths += _save(fig, out_dir, f"fig3_conditions_{pair}")
    return paths


def family_bars(summary: pd.DataFrame, families: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Figure 4a: experimental vs passive SyncR2 per family (mean over pairs, SE)."""
    rows = summary[(summary.direction == "combined") & summary.condition.isin(["experimental", "passive"])].copy()
    if rows.empty or rows.condition.nunique() < 2:
        log.warning("figure 4a skipped: needs combined experimental and passive rows")
        return []
    rows["family"] = [pair_family(p, families) for p in rows.pair]
    agg = rows.groupby(["family", "condition"]).agg(
        syncr2=("syncr2", "mean"), se=("se", lambda s: float(np.sqrt((s**2).sum())) / len(s))
    ).reset_index()
    fams = sorted(agg.family.unique())
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(fams), 3.4))
    width = 0.38
    for i, (cond, color) in enumerate((("experimental", "tab:blue"), ("passive", "tab:orange"))):
        sub = agg[agg.condition == cond].set_index("family").reindex(fams)
        ax.bar(np.arange(len(fams)) + (i - 0.5) * width, sub.syncr2, width, yerr=sub.se, capsize=3,
               color=color, label="experimental" if cond == "experimental" else "w/o social engagement")
        ax.scatter(np.arange(len(fams)) + (i - 0.5) * width, sub.syncr2, color=color, edgecolor="black",
                   zorder=3, s=18)  # keeps a value of exactly 0 visible
    ax.set_xticks(np.arange(len(fams)), fams)
    ax.set_ylabel("$SyncR^2$ (mean over pairs)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(fontsize=8)
    ax.set_title("Control 1: passive reading", fontsize=10)
    return _save(fig, out_dir, "fig4a_passive_by_family")


def lag_lines(summary: pd.DataFrame, families: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Figure 4b: SyncR2 against lag k per pair (k = 0: experimental), one panel per family."""
    rows = summary[summary.direction == "combined"].copy()
    rows["k"] = [lag_of(c) for c in rows.condition]
    rows = rows[rows.k.notna()]
    if rows.empty or rows.k.nunique() < 2:
        log.warning("figure 4b skipped: needs the experimental group and at least one lag")
        return []
    rows["family"] = [pair_family(p, families) for p in rows.pair]
    fams = sorted(rows.family.unique())
    fig, axes = plt.subplots(1, len(fams), figsize=(3.6 * len(fams), 3.4), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, fam in zip(axes[0], fams):
        for pair, grp in rows[rows.family == fam].groupby("pair"):
            grp = grp.sort_values("k")
            ax.errorbar(grp.k, grp.syncr2, yerr=grp.se, marker="o", capsize=3, label=pair.replace("__", " & "))
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("lag $k$ (rounds)")
        ax.set_xticks(sorted(rows.k.unique().astype(int)))
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("$SyncR^2$")
    fig.suptitle("Control 2: temporal proximity", fontsize=10)
    return _save(fig, out_dir, "fig4b_lag")


def summary_tables(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The summary as CSV and as a Markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / "synchrony.csv", out_dir / "synchrony.md"
    with atomic_path(csv) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4f")
    combined = summary[summary.direction == "combined"]
    order = {"experimental": -2, "passive": -1}
    text = []
    for column, title in (("syncr2", "SyncR2 (both directions combined)"),
                          ("syncr2_unclipped", "Unclipped SyncR2 (both directions combined; "
                                               "negative: the best target layers predict worse than the mean)")):
        if column not in combined:
            continue
        wide = combined.pivot(index="pair", columns="condition", values=column)
        wide = wide[sorted(wide.columns, key=lambda c: (order.get(c, 0), lag_of(c) or 0, c))]
        lines = ["| pair | " + " | ".join(wide.columns) + " |", "|---" * (len(wide.columns) + 1) + "|"]
        for pair, row in wide.iterrows():
            lines.append(f"| {pair} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
        text.append(f"{title}\n\n" + "\n".join(lines) + "\n")
    with atomic_path(md) as tmp:
        tmp.write_text("\n".join(text))
    return [csv, md]


def make_all(
    summary_path: str | os.PathLike[str],
    tables: Iterable[str | os.PathLike[str]],
    families: Mapping[str, str],
    figures_dir: str | os.PathLike[str],
    tables_dir: str | os.PathLike[str],
) -> list[Path]:
    """Every figure and table; returns the written paths."""
    summary = pd.read_parquet(summary_path)
    fig_dir, tab_dir = Path(figures_dir), Path(tables_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = heatmap_figures(tables, fig_dir)
    paths += family_bars(summary, families, fig_dir)
    paths += lag_lines(summary, families, fig_dir)
    paths += summary_tables(summary, tab_dir)
    for p in paths:
        log.info("wrote %s", p)
    return paths
