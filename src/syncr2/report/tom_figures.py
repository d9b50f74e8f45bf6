"""Figure 11 and its table: test-set KL of each ToM decoding target against its baseline.

docs/analyses.md, "Theory of Mind decoding". One panel per distribution
(emotion, act); along x the four targets; per decoded model a bar of the
chosen layer's test KL and a grey bar of the training-mean baseline, each
with its SE over split seeds (lower is better). A second figure draws the
per-layer curves (test KL against layer, each layer with its own penalty),
so the chosen layer is not the only view. The table gives the numbers, the
improvement over the baseline, the paired Wilcoxon p and each model's
format compliance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..analysis.tom import DISTRIBUTIONS, TARGETS  # noqa: E402
from .figures import _save  # noqa: E402
from .social_figures import _write_tables, markdown_table  # noqa: E402

TARGET_LABELS = {
    "self_current": "self, current",
    "partner_previous": "partner, previous\n(ToM)",
    "partner_next": "partner, next\n(prediction)",
    "self_next": "self, next",
}
DIST_LABELS = {"emotion": "Emotion (8 words)", "act": "Action type (5 words)"}
FIGURE_STEMS = ("fig11_tom", "fig11_tom_layers")
TABLE_STEM = "table_tom"


def _label(model: str, abbreviations: Mapping[str, str] | None) -> str:
    return (abbreviations or {}).get(model, model)


def tom_bars(summary: pd.DataFrame, out_dir: str | os.PathLike[str],
             abbreviations: Mapping[str, str] | None = None) -> list[Path]:
    """Figure 11: KL by target per distribution, each decoded model beside its baseline (SE bars)."""
    models = sorted(summary["model"].unique())
    targets = [t for t, _, _ in TARGETS]
    fig, axes = plt.subplots(1, len(DISTRIBUTIONS), figsize=(5.2 * len(DISTRIBUTIONS), 3.8), squeeze=False,
                             layout="constrained")
    width = 0.8 / (2 * max(len(models), 1))
    colors = plt.get_cmap("tab10")
    for ax, dist in zip(axes[0], DISTRIBUTIONS):
        part = summary[summary["distribution"] == dist]
        for m_i, model in enumerate(models):
            rows = part[part["model"] == model].set_index("target").reindex(targets)
            x = np.arange(len(targets)) + (2 * m_i - len(models) + 0.5) * width
            ax.bar(x, rows["kl"], width, yerr=rows["kl_se"], capsize=3, color=colors(m_i),
                   label=f"{_label(model, abbreviations)}")
            ax.bar(x + width, rows["baseline"], width, yerr=rows["baseline_se"], capsize=3, color="0.88",
                   hatch="//", edgecolor=colors(m_i), label=f"{_label(model, abbreviations)} baseline")
        if part.empty:
            ax.text(0.5, 0.5, "no model followed the format\nin enough turns to decode", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9)
        ax.set_xticks(np.arange(len(targets)), [TARGET_LABELS[t] for t in targets], fontsize=8)
        ax.set_ylabel("test-set KL (nats; lower is better)")
        ax.set_title(DIST_LABELS[dist], fontsize=10)
        if not part.empty:
            ax.legend(fontsize=7)
    fig.suptitle("Figure 11: decoding emotion and action distributions (error: SE over split seeds)", fontsize=10)
    return _save(fig, Path(out_dir), FIGURE_STEMS[0])


def tom_layer_curves(curves: pd.DataFrame, out_dir: str | os.PathLike[str],
                     abbreviations: Mapping[str, str] | None = None) -> list[Path]:
    """Test KL against layer per target (mean over split seeds), one row of panels per decoded model."""
    models = sorted(curves["model"].unique()) if not curves.empty else []
    fig, axes = plt.subplots(max(len(models), 1), len(DISTRIBUTIONS), figsize=(5.2 * len(DISTRIBUTIONS),
                             3.0 * max(len(models), 1)), squeeze=False, layout="constrained", sharex="row")
    for r, model in enumerate(models):
        for ax, dist in zip(axes[r], DISTRIBUTIONS):
            part = curves[(curves["model"] == model) & (curves["distribution"] == dist)]
            for target, _, _ in TARGETS:
                mean = part[part["target"] == target].groupby("layer")[["test_kl", "baseline_kl"]].mean()
                if mean.empty:
                    continue
                line = ax.plot(mean.index, mean["test_kl"], marker=".", label=TARGET_LABELS[target].replace("\n", " "))
                ax.axhline(mean["baseline_kl"].iloc[0], color=line[0].get_color(), linestyle=":", linewidth=0.8)
            ax.set_title(f"{_label(model, abbreviations)}: {DIST_LABELS[dist]}", fontsize=9)
            ax.set_xlabel("layer")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("test KL (dotted: baseline)")
            ax.legend(fontsize=6)
    if not models:
        axes[0, 0].text(0.5, 0.5, "nothing decoded", ha="center", va="center", transform=axes[0, 0].transAxes)
    return _save(fig, Path(out_dir), FIGURE_STEMS[1])


def _pm(value: float, se: float) -> str:
    return "n/a (nothing decoded)" if pd.isna(value) else f"{float(value):.4f} ± {float(se):.4f}"


def tom_table(summary: pd.DataFrame, out_dir: str | os.PathLike[str],
              abbreviations: Mapping[str, str] | None = None) -> list[Path]:
    """The ToM table (CSV: every column; Markdown: value ± SE, improvement, p, layers, compliance)."""
    shown = pd.DataFrame({
        "pair": summary["pair"].fillna("(no decoding)"), "model": [_label(m, abbreviations) for m in summary["model"]],
        "distribution": summary["distribution"].fillna(""), "target": summary["target"].fillna(""),
        "KL": [_pm(v, s) for v, s in zip(summary["kl"], summary["kl_se"])],
        "baseline": [_pm(v, s) for v, s in zip(summary["baseline"], summary["baseline_se"])],
        "improvement": summary["improvement"], "p (Wilcoxon)": summary["p_wilcoxon"],
        "layers": summary["layers"].fillna(""), "n test": summary["n_test"], "compliance": summary["compliance"],
    })
    text = ["# Figure 11's numbers: decoding emotion and action distributions\n",
            ("Test-set KL(target || prediction) at the layer chosen on validation tasks, and the baseline "
             "KL(target || training mean), mean ± SE over split seeds; improvement = baseline - KL; p: two-sided "
             "Wilcoxon signed-rank test of the paired per-(split seed, test task) KLs; layers: the chosen layer per "
             "split seed; compliance: the model's share of ToM turns that followed the format.\n"),
            markdown_table(shown, {"improvement": ".4f", "p (Wilcoxon)": ".3g", "compliance": ".3f"})]
    return _write_tables(summary, "\n".join(text), out_dir, TABLE_STEM)
