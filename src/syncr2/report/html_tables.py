"""Tables as small standalone HTML pages, so that the Snakemake report can show them.

The report's viewer displays images and HTML; a CSV or Markdown table would
only be offered as a download.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..core.atomic import atomic_path

_STYLE = (
    "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    "td:first-child,th:first-child{text-align:left}"
)


def write_html_table(
    sections: Sequence[tuple[str, pd.DataFrame]], path: str | os.PathLike[str], title: str, float_format: str = "{:.4f}"
) -> Path:
    """One HTML page with a heading and a table per (heading, frame) section, written atomically."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h2>{html.escape(title)}</h2>"]
    for heading, frame in sections:
        table = frame.to_html(
            index=False, na_rep="n/a", border=0,
            float_format=lambda v: float_format.format(v),
        )
        parts.append(f"<h3>{html.escape(heading)}</h3>{table}")
    parts.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return Path(path)


def synchrony_sections(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The SyncR2 summary as pair x condition tables (combined directions), floored and unclipped."""
    combined = summary[summary["direction"] == "combined"]
    if combined.empty:
        combined = summary
    sections = []
    for column, heading in (
        ("syncr2", "SyncR2 (the paper's score: max(0, .) per source layer), both directions combined"),
        ("syncr2_unclipped", "Unclipped SyncR2 (negative: the best target layers predict worse than the mean)"),
    ):
        if column in combined:
            wide = combined.pivot_table(index="pair", columns="condition", values=column, aggfunc="mean")
            sections.append((heading, wide.reset_index()))
    sections.append(("Every table (per direction)", summary.reset_index(drop=True)))
    return sections
