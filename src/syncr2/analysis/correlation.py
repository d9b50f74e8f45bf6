"""SyncR2 against social performance: Pearson r per family (Figure 6) and
partial correlations given model ability (Table 1).

docs/analyses.md, "Statistics". A family with too few pairs, or with a variable
that does not vary, gets NaN statistics and a ``note`` saying why, never a
silent number.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..core.atomic import write_parquet
from ..core.settings import PairNaming, Statistics
from .pair_scores import pair_scores

log = logging.getLogger(__name__)

CORRELATION_COLUMNS = ("family", "n", "r", "p", "note")
PARTIAL_COLUMNS = ("family", "control", "n", "r", "p", "r_xy", "r_xz", "r_yz", "p_t", "note")


def family_groups(scores: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(family, rows) for each family in order of appearance, "Cross" last, then "all"."""
    fams = list(dict.fromkeys(scores["family"]))
    fams.sort(key=lambda f: f == "Cross")
    return [(f, scores[scores["family"] == f]) for f in fams] + [("all", scores)]


def _constant(values: np.ndarray) -> bool:
    return bool(np.ptp(values) == 0)


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    res = stats.pearsonr(x, y)  # two-sided
    return float(res.statistic), float(res.pvalue)


def family_correlations(
    scores: pd.DataFrame, x: str = "performance_averaged", y: str = "syncr2_four_way", min_n: int = 3
) -> pd.DataFrame:
    """Pearson r and two-sided p of ``y`` against ``x`` in each family and over all pairs."""
    for col in ("family", x, y):
        if col not in scores.columns:
            raise ValueError(f"pair scores lack column '{col}'")
    rows = []
    for fam, grp in family_groups(scores):
        xs, ys = grp[x].to_numpy(float), grp[y].to_numpy(float)
        r = p = math.nan
        note = ""
        if len(grp) < min_n:
            note = f"too few pairs: n={len(grp)} < {min_n}"
        elif not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            note = "non-finite values"
        elif _constant(xs) or _constant(ys):
            note = f"no variance in {x if _constant(xs) else y}"
        else:
            r, p = _pearson(xs, ys)
        if note:
            log.warning("correlation %s: %s", fam, note)
        rows.append({"family": fam, "n": len(grp), "r": r, "p": p, "note": note})
    return pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))


def partial_r_closed_form(r_xy: float, r_xz: float, r_yz: float) -> float:
    """First-order partial correlation of x and y given z."""
    return (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def partial_p(r: float, n: int) -> float:
    """Two-sided p of a first-order partial r: t = r sqrt(dof / (1 - r^2)), dof = n - 3."""
    dof = n - 3
    if abs(r) >= 1:
        return 0.0
    t = r * math.sqrt(dof / (1 - r**2))
    return float(2 * stats.t.sf(abs(t), dof))


def pair_ability(scores: pd.DataFrame, name: str, table: Mapping[str, float]) -> np.ndarray:
    """Mean of the two models' ``name`` ability scores, per pair."""
    out = []
    for a, b in zip(scores["model_a"], scores["model_b"]):
        for m in (a, b):
            if m not in table:
                raise ValueError(f"model {m!r} has no '{name}' ability score in the config")
        out.append((float(table[a]) + float(table[b])) / 2)
    return np.asarray(out)


def partial_correlations(
    scores: pd.DataFrame,
    abilities: Mapping[str, Mapping[str, float]],
    x: str = "performance_one_order",
    y: str = "syncr2_atob",
    min_n: int = 4,
) -> pd.DataFrame:
    """Partial Pearson r of ``x`` and ``y`` given the pair's mean ability, per family and ability.

    r and p come from ``pingouin.partial_corr(method="pearson")``; ``p_t`` is
    the same p from t = r sqrt(dof / (1 - r^2)), dof = n - 3 (a check: the
    two agree), and r_xy, r_xz, r_yz are the zero-order correlations.
    """
    import pingouin

    for col in ("family", "model_a", "model_b", x, y):
        if col not in scores.columns:
            raise ValueError(f"pair scores lack column '{col}'")
    covars = {name: pair_ability(scores, name, table) for name, table in abilities.items()}
    rows = []
    for name, z_all in covars.items():
        for fam, grp in family_groups(scores):
            data = pd.DataFrame({"x": grp[x].to_numpy(float), "y": grp[y].to_numpy(float),
                                 "z": z_all[scores.index.get_indexer(grp.index)]})
            row = {"family": fam, "control": name, "n": len(data), "r": math.nan, "p": math.nan,
                   "r_xy": math.nan, "r_xz": math.nan, "r_yz": math.nan, "p_t": math.nan, "note": ""}
            flat = [c for c in ("x", "y", "z") if len(data) and _constant(data[c].to_numpy())]
            if len(data) < min_n:
                row["note"] = f"skipped: n={len(data)} < {min_n} pairs"
            elif flat:
                row["note"] = "no variance in " + ", ".join({"x": x, "y": y, "z": f"mean {name}"}[c] for c in flat)
            else:
                row["r_xy"] = float(np.corrcoef(data.x, data.y)[0, 1])
                row["r_xz"] = float(np.corrcoef(data.x, data.z)[0, 1])
                row["r_yz"] = float(np.corrcoef(data.y, data.z)[0, 1])
                if max(abs(row["r_xz"]), abs(row["r_yz"])) >= 1 - 1e-12:
                    row["note"] = "covariate is collinear with x or y: partial r undefined"
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        res = pingouin.partial_corr(data=data, x="x", y="y", covar="z", method="pearson")
                    row["r"] = float(res["r"].iloc[0])
                    row["p"] = float(res["p_val"].iloc[0] if "p_val" in res else res["p-val"].iloc[0])
                    row["p_t"] = partial_p(row["r"], len(data))
                    if not math.isclose(row["p"], row["p_t"], rel_tol=1e-6, abs_tol=1e-12):
                        log.warning("partial correlation %s | %s: pingouin p %.6g differs from the t-formula p %.6g",
                                    fam, name, row["p"], row["p_t"])
            if row["note"]:
                log.warning("partial correlation %s | %s: %s", fam, name, row["note"])
            rows.append(row)
    return pd.DataFrame(rows, columns=list(PARTIAL_COLUMNS))


def _write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    write_parquet(frame, path)
    log.info("wrote %s", path)
    return path


def run_correlation(
    summary_path: str | os.PathLike[str],
    performance_path: str | os.PathLike[str],
    naming: PairNaming,
    statistics: Statistics,
    out_dir: str | os.PathLike[str],
    condition: str = "experimental",
) -> list[Path]:
    """CLI entry: pair_scores, correlation and partial_correlation parquets in ``out_dir``."""
    out = Path(out_dir)
    scores = pair_scores(pd.read_parquet(summary_path), pd.read_parquet(performance_path),
                         naming.families, naming.model_order, condition, statistics.syncr2)
    return [
        _write_parquet(scores, out / "pair_scores.parquet"),
        _write_parquet(family_correlations(scores, min_n=statistics.min_pairs_correlation), out / "correlation.parquet"),
        _write_parquet(partial_correlations(scores, statistics.abilities, min_n=statistics.min_pairs_partial),
                       out / "partial_correlation.parquet"),
    ]
