"""Which figure files a study makes, known before any job runs.

The workflow declares every figure file as an output, so Snakemake removes
and rewrites exactly those and nothing else: a study of one condition leaves
the figures of the others on disk. :func:`syncr2.report.figures.make_all`
draws the same set (a test keeps the two in step).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LAG = re.compile(r"^lag([1-9][0-9]*)$")


def _lag(condition: str) -> int | None:
    if condition == "experimental":
        return 0
    m = _LAG.match(condition)
    return int(m.group(1)) if m else None


def planned_figures(pairs: Sequence[str], conditions: Sequence[str], directions: Sequence[str]) -> list[str]:
    """The figure stems (no extension; each is written as .png and .pdf) for this study.

    * ``fig2_heatmap_{pair}_{direction}``: the experimental grid of each pair and direction;
    * ``fig3_conditions_{pair}``: A->B under experimental, passive and the shortest lag, when two of them run;
    * ``fig4a_passive_by_family``: experimental against passive (needs both directions);
    * ``fig4b_lag``: SyncR2 against lag (needs both directions and two lags, k = 0 included).
    """
    conds = set(conditions)
    stems: list[str] = []
    if "experimental" in conds:
        stems += [f"fig2_heatmap_{pair}_{d}" for pair in pairs for d in ("AtoB", "BtoA") if d in directions]
    lags = sorted(k for k in (_lag(c) for c in conds) if k)
    fig3_conditions = [c for c in ("experimental", "passive") if c in conds] + (["lag"] if lags else [])
    if "AtoB" in directions and len(fig3_conditions) >= 2:
        stems += [f"fig3_conditions_{pair}" for pair in pairs]
    both = {"AtoB", "BtoA"} <= set(directions)
    if both and {"experimental", "passive"} <= conds:
        stems.append("fig4a_passive_by_family")
    if both and len({k for k in (_lag(c) for c in conds) if k is not None}) >= 2:
        stems.append("fig4b_lag")
    return stems


#: The figure or table each sensitivity analysis adds (report.sensitivity_figures draws them).
SENSITIVITY_FIGURES = {"top_k": "fig7_top_k", "no_clip": "fig8_no_clip", "sample_size": "fig9_sample_size"}
SENSITIVITY_TABLES = {"persona_split": "table2_persona_split"}


def planned_sensitivity(analyses: Sequence[str]) -> dict[str, list[str]]:
    """The figure stems and table stems (each .csv and .md) the configured sensitivity analyses make.

    Figures 7, 8 and 9 for top_k, no_clip and sample_size; Table 2 for
    persona_split; the whole table (``sensitivity``) whenever one runs.
    """
    unknown = sorted(set(analyses) - {*SENSITIVITY_FIGURES, *SENSITIVITY_TABLES})
    if unknown:
        raise ValueError(f"unknown sensitivity analyses {unknown}")
    return {
        "figures": [SENSITIVITY_FIGURES[a] for a in SENSITIVITY_FIGURES if a in analyses],
        "tables": [SENSITIVITY_TABLES[a] for a in SENSITIVITY_TABLES if a in analyses]
        + (["sensitivity"] if analyses else []),
    }
