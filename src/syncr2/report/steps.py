"""The report steps of the workflow: each turns its summaries into figures and tables in one call.

One function per report rule (docs/architecture.md, "Rules and jobs"): the CLI
step passes its files and typed settings, and the function draws, writes the
CSV, Markdown and HTML tables, and logs what it wrote.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import pandas as pd

from ..core.settings import PairNaming, Statistics

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

SOCIAL_SECTIONS = (
    ("performance", "Social performance (Sotopia-eval; invalid judge replies counted)"),
    ("correlation", "Figure 6: Pearson r of SyncR2 and performance per family"),
    ("partial_correlation", "Table 1: partial correlation given the ability scores"),
    ("pair_scores", "Pair scores"),
)


def synchrony_report(summary: PathLike, tables: Sequence[PathLike], naming: PairNaming, figures_dir: PathLike,
                     tables_dir: PathLike) -> None:
    """Figures 2-4 and the SyncR2 tables (CSV, Markdown, HTML)."""
    from .figures import make_all
    from .html_tables import synchrony_sections, write_html_table

    make_all(summary, tables, naming.families, figures_dir, tables_dir)
    out = write_html_table(synchrony_sections(pd.read_parquet(summary)), f"{tables_dir}/synchrony.html",
                           "SyncR2 per pair and condition")
    log.info("wrote %s", out)


def social_report(summary_dir: PathLike, naming: PairNaming, statistics: Statistics, figures_dir: PathLike,
                  tables_dir: PathLike) -> None:
    """Figures 5 and 6, Table 1 and the performance tables, from the analysis tables in ``summary_dir``."""
    from .html_tables import write_html_table
    from .social_figures import make_social

    make_social(summary_dir, figures_dir, tables_dir, naming.abbreviations or None, statistics.syncr2)
    sections = [(heading, pd.read_parquet(f"{summary_dir}/{name}.parquet")) for name, heading in SOCIAL_SECTIONS]
    log.info("wrote %s", write_html_table(sections, f"{tables_dir}/social.html", "SyncR2 and social performance"))


def sensitivity_report(parts: Sequence[PathLike], out: PathLike, naming: PairNaming, statistics: Statistics,
                       figures_dir: PathLike, tables_dir: PathLike) -> None:
    """The combined sensitivity table of every analysis, then Figures 7-9 and Table 2."""
    from ..analysis.sensitivity import concat_sensitivity, read_sensitivity, write_sensitivity
    from .sensitivity_figures import make_sensitivity

    frame = concat_sensitivity([read_sensitivity(p) for p in parts])
    write_sensitivity(frame, out)
    log.info("wrote %s (%d rows from %d analyses)", out, len(frame), len(parts))
    make_sensitivity(out, figures_dir, tables_dir, naming.abbreviations or None, statistics.syncr2)


def nonlinear_report(tables: Sequence[PathLike], affine_summary: PathLike, out: PathLike, naming: PairNaming,
                     statistics: Statistics, tables_dir: PathLike) -> None:
    """SyncR2 of the MLP-map tables, and Table 5 beside the affine SyncR2 of the same pairs."""
    from ..synchrony.summary import summarize_tables, write_summary
    from .sensitivity_figures import table5_nonlinear

    summary = summarize_tables(tables)
    write_summary(summary, out)
    log.info("wrote %s (%d rows)", out, len(summary))
    affine = pd.read_parquet(affine_summary)
    affine = affine[affine["pair"].isin(set(summary["pair"]))]  # Table 5: the pairs with nonlinear maps
    for path in table5_nonlinear(affine, summary, tables_dir, statistics.syncr2, naming.abbreviations or None,
                                 model_order=list(naming.model_order)):
        log.info("wrote %s", path)


def surrogate_report(draws: Sequence[PathLike], out: PathLike, figures_dir: PathLike, stem: str) -> None:
    """The surrogate summary table and its figure."""
    from ..analysis.surrogate import read_surrogate_draws, summarize_surrogate_files
    from .surrogate_figure import surrogate_figure

    summary = summarize_surrogate_files(draws, out)
    log.info("wrote %s (%d rows)", out, len(summary))
    paths = surrogate_figure(pd.concat([read_surrogate_draws(p) for p in draws], ignore_index=True), figures_dir,
                             stem, combine=True)
    log.info("wrote %s", ", ".join(map(str, paths)))


def tom_report(tables: Sequence[PathLike], tasks: Sequence[PathLike], episodes: Sequence[PathLike],
               naming: PairNaming, out: PathLike, figures_dir: PathLike, tables_dir: PathLike) -> None:
    """The ToM summary (with each model's compliance), Figure 11, its layer curves, and its tables."""
    from ..analysis.tom import compliance, summarize, write_summary
    from .html_tables import write_html_table
    from .tom_figures import TABLE_STEM, tom_bars, tom_layer_curves, tom_table

    curves = pd.concat([pd.read_parquet(p) for p in tables], ignore_index=True)
    per_task = pd.concat([pd.read_parquet(p) for p in tasks], ignore_index=True)
    rates = compliance(episodes)
    if curves.empty:
        log.warning("no ToM target could be decoded (too few compliant turns or tasks); the summary holds "
                    "the compliance only")
    summary = write_summary(summarize(curves, per_task), rates, out)
    log.info("wrote %s (%d rows); compliance: %s", out, len(summary),
             ", ".join(f"{m} {r:.3f}" for m, r in zip(rates["model"], rates["rate"])))
    decoded = summary[summary["kl"].notna()]
    paths = [*tom_bars(decoded, figures_dir, naming.abbreviations),
             *tom_layer_curves(curves, figures_dir, naming.abbreviations),
             *tom_table(summary, tables_dir, naming.abbreviations)]
    paths.append(write_html_table([("Figure 11: decoding emotion and action distributions", summary),
                                   ("Format compliance per model", rates)], f"{tables_dir}/{TABLE_STEM}.html",
                                  "Theory of Mind decoding"))
    log.info("wrote %s", ", ".join(map(str, paths)))


def measures_report(grids: Sequence[PathLike], synchrony: PathLike, conditions: Sequence[str], statistics: Statistics,
                    out: PathLike, figures_dir: PathLike) -> None:
    """The measures table (with SyncR2 beside the other measures) and its figure."""
    from ..synchrony.measures import run_measures_summary
    from .beyond_figures import measures_figure

    score = "syncr2_unclipped" if statistics.syncr2 == "unclipped" else "syncr2"
    summary = run_measures_summary(grids, synchrony, out, score)
    log.info("wrote %s", ", ".join(map(str, measures_figure(summary, conditions, figures_dir))))


def lag_profile_report(profiles: Sequence[PathLike], naming: PairNaming, statistics: Statistics, out: PathLike,
                       figures_dir: PathLike) -> None:
    """Every pair's lag profile in one table, and one figure per pair."""
    from ..analysis.lag_profile import COLUMNS
    from ..core.atomic import read_table, write_table
    from .beyond_figures import lag_profile_figure

    from .social_figures import pair_label

    frame = pd.concat([read_table(p, COLUMNS, "lag profile") for p in profiles], ignore_index=True)
    write_table(frame, out, COLUMNS, "lag profile", only=True)
    log.info("wrote %s (%d rows)", out, len(frame))
    for pair in sorted(frame.pair.unique()):
        paths = lag_profile_figure(frame, pair, figures_dir, statistics.syncr2,
                                   pair_label(*pair.split("__"), naming.abbreviations))
        log.info("wrote %s", ", ".join(map(str, paths)))
