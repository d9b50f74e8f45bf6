"""The paper's figures and tables from R2 tables and the SyncR2 summary.

* Figure 2: per pair and direction, the layer-pair R2 heatmap (source layers
  on x, target layers on y), each source layer's best target layer boxed.
  When some R2 >= 0 the scale runs from 0 and negative R2 is grey (0 is the
  boundary); when every R2 < 0 (tiny random demo models) the colours span
  the actual negative range instead, so layer pairs can still be told apart.
* Figure 3: per pair, the experimental group next to the controls (passive,
  and the first lag) for direction A->B, on one shared scale.
* Figure 4a: SyncR2 experimental vs passive, mean over the unordered pairs of
  each family; error bar = std over those pairs / sqrt(3 n_pairs) (ddof 0),
  as the authors (docs/protocol.md, "Pair scores and error bars").
* Figure 4b: SyncR2 against lag k (k = 0 is the experimental group), one
  line per unordered pair, one panel per family; error bar = mean of the four
  directional SEs.
* A pair's score in Figure 4 is the four-value mean: A->B and B->A of both
  speaking orders (docs/protocol.md, "Pair scores and error bars"). A
  SyncR2 >= 0 is a floored score, so its drawn lower error bar stops at 0.
* Tables: the summary as CSV and Markdown.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Colormap, FuncNorm, Normalize  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402
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


def _save(fig: plt.Figure, out_dir: str | os.PathLike[str], stem: str) -> list[Path]:
    """The one figure writer: ``fig`` as ``{stem}.png`` and ``.pdf`` into ``out_dir`` (made if missing),
    each written atomically; closes the figure and returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


MAX_ANNOTATED_CELLS = 100
# An all-negative range wider than this ratio (|min| / |max|) is drawn on a log
# scale of -R2, so one outlier layer pair does not flatten every other colour.
LOG_RANGE_RATIO = 100.0


def color_top(*grids: np.ndarray) -> float:
    """Upper end of the 0-based colour scale: the largest R2, at least 0.01."""
    return max(max(float(np.nanmax(g)) for g in grids), 0.01)


@dataclass(frozen=True)
class HeatmapScale:
    """How R2 maps to colour; one scale is shared by all panels of a figure.

    ``all_negative`` False: 0..vmax on viridis, negative R2 grey (masked and
    "under"), so 0 stays a visible boundary. True (every finite R2 < 0): the
    colours span [vmin, vmax] = [min, max] of the data on magma, linear or,
    for a range over ``LOG_RANGE_RATIO``, logarithmic in -R2.
    """

    all_negative: bool
    vmin: float
    vmax: float

    @property
    def log(self) -> bool:
        return self.all_negative and self.vmin / self.vmax > LOG_RANGE_RATIO

    def norm(self) -> Normalize:
        if self.log:  # increasing in R2: -log10(-R2); the colorbar also probes values >= 0
            return FuncNorm((lambda v: -np.log10(np.clip(-np.asarray(v, dtype=float), 1e-300, None)),
                             lambda u: -(10.0 ** -np.asarray(u, dtype=float))), vmin=self.vmin, vmax=self.vmax)
        return Normalize(vmin=self.vmin, vmax=self.vmax)

    def colorbar_kwargs(self) -> dict:
        """``label``, ``extend`` and, on the log scale, ticks at -10^k (default ticks crowd one end)."""
        kwargs: dict = {"label": self.label, "extend": self.extend}
        if self.log:
            lo, hi = np.ceil(np.log10(-self.vmax)), np.floor(np.log10(-self.vmin))
            kwargs["ticks"] = [-(10.0 ** k) for k in np.arange(lo, hi + 1)]
            kwargs["format"] = FuncFormatter(lambda v, _pos: f"{v:g}")
        return kwargs

    def cmap(self) -> Colormap:
        if self.all_negative:
            return matplotlib.colormaps["magma"].with_extremes(bad="lightgrey")
        return matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey", under="lightgrey")

    @property
    def label(self) -> str:
        if self.all_negative:
            return "test $R^2$ (all < 0" + (", log scale)" if self.log else ")")
        return "test $R^2$ (grey: < 0)"

    @property
    def extend(self) -> str:
        """Colorbar ``extend``: the grey "< 0" triangle of the 0-based scale."""
        return "neither" if self.all_negative else "min"


def heatmap_scale(*grids: np.ndarray) -> HeatmapScale:
    """The colour scale of one figure: 0-based unless every finite R2 of every grid is < 0."""
    finite = np.concatenate([np.asarray(g, dtype=float)[np.isfinite(g)] for g in grids])
    if finite.size == 0 or (finite >= 0).any():
        return HeatmapScale(False, 0.0, color_top(*grids) if finite.size else 0.01)
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:  # a single value: widen so the colorbar has a range
        lo = hi * 1.01
    return HeatmapScale(True, lo, hi)


def _text_color(rgba: tuple[float, ...]) -> str:
    """Black on light cells, white on dark ones (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def draw_heatmap(
    ax: plt.Axes,
    grid: np.ndarray,
    title: str,
    vmax: float | None = None,
    scale: HeatmapScale | None = None,
) -> matplotlib.image.AxesImage:
    """Figure 2 style: x = source layer, y = target layer, best target boxed.

    ``scale`` defaults to ``heatmap_scale(grid)``; ``vmax`` (kept for old
    callers) overrides the top of a 0-based scale.
    """
    grid = np.asarray(grid, dtype=float)
    if scale is None:
        scale = heatmap_scale(grid)
    if vmax is not None and not scale.all_negative:
        scale = replace(scale, vmax=vmax)
    values = grid.T  # (L_tgt, L_src)
    shown = np.ma.masked_invalid(values)
    if not scale.all_negative:
        shown = np.ma.masked_where(np.ma.getmaskarray(shown) | (np.nan_to_num(values, nan=-1.0) < 0), values)
    cmap, norm = scale.cmap(), scale.norm()
    im = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    for a, b in enumerate(np.argmax(np.nan_to_num(grid, nan=-np.inf), axis=1)):
        ax.add_patch(Rectangle((a - 0.5, b - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
    if grid.size <= MAX_ANNOTATED_CELLS:  # small grids (the demo's tiny models): print every R2
        for (a, b), value in np.ndenumerate(grid):
            masked = bool(np.ma.getmaskarray(shown)[b, a])
            color = "black" if masked else _text_color(cmap(float(norm(value))))
            ax.text(a, b, f"{value:.2g}", ha="center", va="center", fontsize=6, color=color)
    if scale.all_negative:
        title += "\n(every $R^2$ < 0: colours span their range)"
    elif not (grid >= 0).any():
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
        scale = heatmap_scale(grid)
        im = draw_heatmap(ax, grid, f"{src} $\\rightarrow$ {tgt} ({pair}, {direction})", scale=scale)
        fig.colorbar(im, ax=ax, **scale.colorbar_kwargs())
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
        scale = heatmap_scale(*grids)
        fig, axes = plt.subplots(1, len(conds), figsize=(3.8 * len(conds), 3.6), squeeze=False, layout="constrained")
        labels = {"experimental": "experimental", "passive": "w/o social engagement (passive)"}
        for ax, cond, grid in zip(axes[0], conds, grids):
            im = draw_heatmap(ax, grid, labels.get(cond, f"w/o temporal proximity ({cond})"), scale=scale)
            if ax is not axes[0][0]:
                ax.set_ylabel("")
        fig.colorbar(im, ax=list(axes[0]), **scale.colorbar_kwargs())
        fig.suptitle(f"{pair}: A $\\rightarrow$ B under each condition", fontsize=10)
        paths += _save(fig, out_dir, f"fig3_conditions_{pair}")
    return paths


# The authors' Figure 4a divides the std over pairs by sqrt(3 * n_pairs) (3 split seeds).
FIG4A_SE_SEEDS = 3


def unordered_pair(pair: str) -> str:
    """``m1__m2`` and ``m2__m1`` name the same unordered pair: the sorted ``a__b``."""
    return "__".join(sorted(pair.split("__", 1)))


def four_value_scores(summary: pd.DataFrame) -> pd.DataFrame:
    """Per unordered pair and condition: the four-value SyncR2 mean and the mean of the four SEs.

    The four values are A->B and B->A of both speaking orders
    (docs/protocol.md, "Pair scores and error bars"; a same-model pair has
    one order, counted twice, the same mean).
    A (pair, condition) without directional rows falls back to its combined
    rows (each the mean of its two directions, so the value is the same; the
    SE is then the mean of the combined SEs).
    """
    frame = summary.assign(upair=[unordered_pair(p) for p in summary.pair])
    directional = frame[frame.direction.isin(["AtoB", "BtoA"])]
    have = set(zip(directional.upair, directional.condition))
    fallback = np.array([(u, c) not in have for u, c in zip(frame.upair, frame.condition)], dtype=bool)
    combined = frame[(frame.direction == "combined").to_numpy() & fallback]
    rows = pd.concat([directional, combined], ignore_index=True)
    if rows.empty:
        return pd.DataFrame(columns=["pair", "condition", "syncr2", "se", "n_values"])
    out = rows.groupby(["upair", "condition"], sort=True).agg(
        syncr2=("syncr2", "mean"), se=("se", "mean"), n_values=("syncr2", "size")).reset_index()
    return out.rename(columns={"upair": "pair"})


def family_bar_stats(summary: pd.DataFrame, families: Mapping[str, str]) -> pd.DataFrame:
    """Figure 4a numbers: per family and condition, mean over pairs and std / sqrt(3 n) (ddof 0)."""
    scores = four_value_scores(summary)
    scores = scores[scores.condition.isin(["experimental", "passive"])].copy()
    scores["family"] = [pair_family(p, families) for p in scores.pair]
    agg = scores.groupby(["family", "condition"], sort=True).syncr2.agg(
        syncr2="mean",
        se=lambda v: float(np.std(v.to_numpy(), ddof=0)) / np.sqrt(FIG4A_SE_SEEDS * len(v)),
        n_pairs="size",
    )
    return agg.reset_index()


def error_extents(values: np.ndarray, se: np.ndarray) -> np.ndarray:
    """(2, n) lower/upper error-bar lengths; a value >= 0 (floored) never reaches below 0."""
    values, se = np.asarray(values, dtype=float), np.asarray(se, dtype=float)
    lower = np.where(values >= 0, np.minimum(se, values), se)
    return np.vstack([lower, se])


def draw_family_bars(ax: plt.Axes, stats: pd.DataFrame) -> list[BarContainer]:
    """Draw Figure 4a from ``family_bar_stats`` on ``ax``; returns the bar containers."""
    fams = sorted(stats.family.unique())
    width = 0.38
    bars = []
    for i, (cond, color) in enumerate((("experimental", "tab:blue"), ("passive", "tab:orange"))):
        sub = stats[stats.condition == cond].set_index("family").reindex(fams)
        x = np.arange(len(fams)) + (i - 0.5) * width
        bars.append(ax.bar(x, sub.syncr2, width, yerr=error_extents(sub.syncr2, sub.se), capsize=3,
                           color=color, label="experimental" if cond == "experimental" else "w/o social engagement"))
        ax.scatter(x, sub.syncr2, color=color, edgecolor="black", zorder=3, s=18)  # keeps a value of exactly 0 visible
    ax.set_xticks(np.arange(len(fams)), fams)
    ax.set_ylabel("$SyncR^2$ (mean over pairs)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.margins(y=0.25)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.set_title("Control 1: passive reading\n(error: std over pairs / $\\sqrt{3 n}$)", fontsize=10)
    return bars


def family_bars(summary: pd.DataFrame, families: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Figure 4a: experimental vs passive SyncR2 per family (mean over pairs, authors' error bar)."""
    stats = family_bar_stats(summary, families)
    if stats.empty or stats.condition.nunique() < 2:
        log.warning("figure 4a skipped: needs experimental and passive rows")
        return []
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * stats.family.nunique(), 3.6))
    draw_family_bars(ax, stats)
    return _save(fig, out_dir, "fig4a_passive_by_family")


def lag_line_stats(summary: pd.DataFrame, families: Mapping[str, str]) -> pd.DataFrame:
    """Figure 4b numbers: per unordered pair and lag k, the four-value mean and mean SE."""
    scores = four_value_scores(summary)
    scores["k"] = [lag_of(c) for c in scores.condition]
    scores = scores[scores.k.notna()].copy()
    scores["k"] = scores.k.astype(int)
    scores["family"] = [pair_family(p, families) for p in scores.pair]
    return scores.sort_values(["family", "pair", "k"]).reset_index(drop=True)


def draw_lag_lines(ax: plt.Axes, rows: pd.DataFrame) -> list[ErrorbarContainer]:
    """Draw one family's Figure 4b panel from ``lag_line_stats`` rows; returns the errorbar containers."""
    lines = []
    for pair, grp in rows.groupby("pair", sort=True):
        grp = grp.sort_values("k")
        lines.append(ax.errorbar(grp.k, grp.syncr2, yerr=error_extents(grp.syncr2, grp.se), marker="o",
                                 capsize=3, label=pair.replace("__", " & ")))
    ax.set_xlabel("lag $k$ (rounds)")
    ax.set_xticks(sorted(rows.k.unique()))
    ax.legend(fontsize=7)
    return lines


def lag_lines(summary: pd.DataFrame, families: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Figure 4b: SyncR2 against lag k per pair (k = 0: experimental), one panel per family."""
    rows = lag_line_stats(summary, families)
    if rows.empty or rows.k.nunique() < 2:
        log.warning("figure 4b skipped: needs the experimental group and at least one lag")
        return []
    fams = sorted(rows.family.unique())
    fig, axes = plt.subplots(1, len(fams), figsize=(3.6 * len(fams), 3.4), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, fam in zip(axes[0], fams):
        draw_lag_lines(ax, rows[rows.family == fam])
        ax.set_title(fam, fontsize=10)
    axes[0][0].set_ylabel("$SyncR^2$ (four-value mean)")
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
