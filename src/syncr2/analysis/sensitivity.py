"""Sensitivity analyses of SyncR2 (docs/analyses.md, "Robustness"; the paper's Appendices C-E).

Pure functions over files the workflow already makes: R2 tables
(``results/r2/{pair}/{condition}/{direction}.parquet``, read with
:func:`~syncr2.synchrony.r2table.read_r2_table`), SyncR2 summaries
(:func:`~syncr2.synchrony.summary.summarize_tables`) and the performance table
(``results/summary/performance.parquet``). Four analyses:

* ``top_k`` (Figure 7): SyncR2 with r*(l_A) the mean of the k best target
  layers, for k = 1..K, and its Pearson r with social performance per family;
* ``no_clip`` (Figure 8): SyncR2 without the max(0, .) floor, and its SE over
  all source layers, next to the floored value and SE;
* ``sample_size`` / ``sample_size_correlation`` (Figure 9): SyncR2 per pair and
  its correlation with performance against the dataset size; a size the data
  could not fill is a row with NaN values and a note, never a missing row;
* ``persona_split`` (Table 2): SyncR2 under the original task-grouped split and
  under a persona-disjoint split (:func:`~syncr2.synchrony.datasets.persona_pair_groups` gives the groups).

All of them go into ONE long table, ``results/summary/sensitivity.parquet``
(:func:`write_sensitivity` / :func:`read_sensitivity`). Column contract
(:data:`SENSITIVITY_COLUMNS`, in this order; every column always present):

- ``analysis`` (str): ``top_k`` | ``no_clip`` | ``sample_size`` |
  ``sample_size_correlation`` | ``persona_split``.
- ``setting`` (str): the varied setting as text: k (``"3"``), the dataset
  size (``"6500"``), ``clipped`` / ``unclipped`` (no_clip), ``original`` /
  ``disjoint`` (persona_split).
- ``setting_value`` (float): k or the size as a number; NaN for a label.
- ``score`` (str): which SyncR2: ``clipped`` (the paper's, floored at 0 per
  source layer) or ``unclipped``.
- ``pair`` (str): pair rows: the ordered pair ``m1__m2`` (directions AtoB,
  BtoA, combined) or the unordered pair ``a__b`` in config model order
  (direction ``four_way``); "" on family rows.
- ``family`` (str): the pair's family; family rows: the family or ``all``.
- ``direction`` (str): pair rows: ``AtoB`` | ``BtoA`` | ``combined`` (the
  two-direction SyncR2 of one ordered pair) | ``four_way`` (the mean of A->B
  and B->A over both speaking orders, Figure 6's score); "" on family rows.
- ``value`` (float): pair rows: SyncR2; family rows: the mean over the
  family's pairs of the correlated SyncR2 (``four_way`` by default).
- ``se`` (float): pair rows: its standard error (docs/protocol.md, "Ridge maps and SyncR2";
  ``combined``: the two directions combined as independent; ``four_way``:
  the mean of the directional SEs, as the authors' Figure 4b); NaN on family
  rows.
- ``r``, ``p`` (float): family rows: Pearson r and two-sided p against social
  performance (``scipy.stats.pearsonr``); NaN on pair rows.
- ``n`` (int): family rows: the number of pairs; pair rows: the number of
  split seeds (the fewest over the directions combined); 0 on a row of a size
  or split that could not be filled.
- ``note`` (str): why a value is NaN (too few pairs, no variance, the size
  could not be filled: ``insufficient: <reason>``), or what was changed (k
  capped at a table's target layers, pairs left out); "" otherwise.

Row types: ``top_k`` and ``sample_size_correlation`` hold family rows (one per
setting, score and family); ``no_clip``, ``sample_size`` and ``persona_split``
hold pair rows (one per setting, score, pair and direction).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_parquet
from ..core.settings import PairNaming, Statistics
from ..synchrony.r2table import r2_cube, read_r2_table
from ..synchrony.summary import SUMMARY_COLUMNS, summarize_tables
from ..synchrony.sync import sync_r2
from .correlation import family_correlations
from .pair_scores import family_of, pair_scores, split_pair, unordered_key

log = logging.getLogger(__name__)

SENSITIVITY_COLUMNS = (
    "analysis", "setting", "setting_value", "score", "pair", "family", "direction",
    "value", "se", "r", "p", "n", "note",
)
ANALYSES = ("top_k", "no_clip", "sample_size", "sample_size_correlation", "persona_split")
SCORES = ("clipped", "unclipped")
DIRECTIONS = ("AtoB", "BtoA", "combined", "four_way")
_VALUE_COLUMNS = {"clipped": ("syncr2", "se"), "unclipped": ("syncr2_unclipped", "se_unclipped")}
_Y_COLUMNS = ("syncr2_four_way", "syncr2_atob")

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------- the long table

def empty_frame() -> pd.DataFrame:
    """A sensitivity table with no rows and the contract's columns and dtypes."""
    return _typed(pd.DataFrame(columns=list(SENSITIVITY_COLUMNS)))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in contract order with contract dtypes (str, float64, int64)."""
    out = frame.reindex(columns=list(SENSITIVITY_COLUMNS))
    for col in ("analysis", "setting", "score", "pair", "family", "direction", "note"):
        values = out[col].astype(object)
        out[col] = values.where(values.notna(), "").astype(str)
    for col in ("setting_value", "value", "se", "r", "p"):
        out[col] = pd.to_numeric(out[col], errors="raise").astype("float64")
    out["n"] = pd.to_numeric(out["n"].fillna(0), errors="raise").astype("int64")
    return out.reset_index(drop=True)


def check_sensitivity(frame: pd.DataFrame, where: str = "sensitivity table") -> pd.DataFrame:
    """The frame if it follows the column contract; a ValueError naming the problem otherwise."""
    missing = [c for c in SENSITIVITY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: lacks column(s) {', '.join(missing)} (see syncr2.analysis.sensitivity)")
    unknown = sorted(set(frame["analysis"]) - set(ANALYSES))
    if unknown:
        raise ValueError(f"{where}: column 'analysis' holds unknown value(s) {unknown}; "
                         f"expected one of {list(ANALYSES)}")
    bad_score = sorted(set(frame["score"]) - set(SCORES))
    if bad_score:
        raise ValueError(f"{where}: column 'score' holds {bad_score}; expected one of {list(SCORES)}")
    pair_rows = frame["analysis"].isin(["no_clip", "sample_size", "persona_split"])
    bad_dir = sorted(set(frame.loc[pair_rows, "direction"]) - set(DIRECTIONS))
    if bad_dir:
        raise ValueError(f"{where}: pair rows hold direction(s) {bad_dir}; expected one of {list(DIRECTIONS)}")
    return frame


def concat_sensitivity(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The rows of several analyses as one table, in contract column order and dtypes."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame()
    return check_sensitivity(_typed(pd.concat(frames, ignore_index=True)))


def write_sensitivity(frame: pd.DataFrame, path: PathLike) -> Path:
    """Check the contract and write the table atomically (``results/summary/sensitivity.parquet``)."""
    check_sensitivity(frame, str(path))
    out = check_sensitivity(_typed(frame), str(path))
    write_parquet(out, path)
    log.info("wrote %s (%d rows)", path, len(out))
    return Path(path)


def read_sensitivity(path: PathLike) -> pd.DataFrame:
    """Read a sensitivity table; errors name the file and the missing column."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for missing or truncated files
        raise ValueError(f"{path}: not a readable sensitivity table: {exc}") from exc
    return check_sensitivity(frame, str(path))


def _row(analysis: str, setting: str, setting_value: float, score: str, **fields: object) -> dict:
    row = {"analysis": analysis, "setting": setting, "setting_value": setting_value, "score": score,
           "pair": "", "family": "", "direction": "", "value": math.nan, "se": math.nan,
           "r": math.nan, "p": math.nan, "n": 0, "note": ""}
    row.update(fields)
    return row


def _check_scores(scores: Sequence[str]) -> tuple[str, ...]:
    bad = [s for s in scores if s not in SCORES]
    if bad or not scores:
        raise ValueError(f"scores must be a non-empty subset of {list(SCORES)}, got {list(scores)}")
    return tuple(dict.fromkeys(scores))


# ---------------------------------------------------------------- pair rows from a summary

def pair_rows(
    summary: pd.DataFrame,
    analysis: str,
    setting: str,
    setting_value: float,
    families: Mapping[str, str],
    model_order: Sequence[str],
    scores: Sequence[str] = SCORES,
    condition: str = "experimental",
) -> pd.DataFrame:
    """Pair rows (AtoB, BtoA, combined per ordered pair; four_way per unordered pair) of one summary.

    Rows are in config model order (of the first, then the second model).
    ``summary`` has :data:`~syncr2.synchrony.summary.SUMMARY_COLUMNS`; only
    rows of ``condition`` count. ``four_way`` is the mean of the directional
    values of every speaking order present, its SE the mean of their SEs.
    """
    scores = _check_scores(scores)
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"synchrony summary lacks column(s) {', '.join(missing)}")
    sub = summary[(summary["condition"] == condition) & summary["direction"].isin(["AtoB", "BtoA", "combined"])]
    if sub.empty:
        raise ValueError(f"synchrony summary has no '{condition}' rows "
                         f"(conditions: {sorted(set(summary['condition']))})")
    rank = {m: i for i, m in enumerate(model_order)}
    for pair in sub["pair"]:
        unordered_key(*split_pair(pair), model_order)  # names a model missing from the model order
    position = [(rank[a], rank[b], ("AtoB", "BtoA", "combined").index(d))
                for (a, b), d in zip(map(split_pair, sub["pair"]), sub["direction"])]
    sub = sub.iloc[sorted(range(len(sub)), key=position.__getitem__)]
    rows = []
    for score in scores:
        vcol, scol = _VALUE_COLUMNS[score]
        groups: dict[tuple[str, str], list] = {}
        for rec in sub.itertuples(index=False):
            m1, m2 = split_pair(rec.pair)
            fam = family_of(m1, m2, families)
            rows.append(_row(analysis, setting, setting_value, score, pair=rec.pair, family=fam,
                             direction=rec.direction, value=float(getattr(rec, vcol)), se=float(getattr(rec, scol)),
                             n=int(rec.n_split_seeds)))
            if rec.direction in ("AtoB", "BtoA"):
                groups.setdefault(unordered_key(m1, m2, model_order), []).append(rec)
        for (a, b), recs in sorted(groups.items(), key=lambda kv: (rank[kv[0][0]], rank[kv[0][1]])):
            rows.append(_row(analysis, setting, setting_value, score, pair=f"{a}__{b}",
                             family=family_of(a, b, families), direction="four_way",
                             value=float(np.mean([getattr(r, vcol) for r in recs])),
                             se=float(np.mean([getattr(r, scol) for r in recs])),
                             n=int(min(r.n_split_seeds for r in recs))))
    return _typed(pd.DataFrame(rows))


# ---------------------------------------------------------------- R2 tables marked insufficient

def table_status(paths: Iterable[PathLike]) -> tuple[list[str], list[dict]]:
    """Split R2 tables into the filled ones and the insufficient ones.

    Returns (paths of filled tables, one dict per insufficient table with
    path, pair, direction, size and reason), reading only metadata-bearing
    files; a table without rows that is not marked insufficient is an error.
    """
    filled: list[str] = []
    lacking: list[dict] = []
    for path in paths:
        table, meta = read_r2_table(path)
        if meta.get("insufficient"):
            lacking.append({"path": str(path), "pair": str(meta.get("pair", "")),
                            "direction": str(meta.get("direction", "")), "size": meta.get("size"),
                            "reason": str(meta["insufficient"])})
        elif table.empty:
            raise ValueError(f"{path}: R2 table has no rows and is not marked insufficient; rerun its job")
        else:
            filled.append(str(path))
    return filled, lacking


# ---------------------------------------------------------------- 1. top-k (Figure 7)

def load_r2_cubes(tables: Iterable[PathLike], condition: str) -> list[tuple[str, dict, np.ndarray]]:
    """(path, metadata, cube) of every R2 table of ``condition``; metadata must name pair and direction."""
    out = []
    for path in tables:
        table, meta = read_r2_table(path, require=("pair", "condition", "direction"))
        if meta["condition"] == condition:
            out.append((str(path), meta, r2_cube(table)))
    if not out:
        raise ValueError(f"no R2 table of condition '{condition}' among the tables given")
    return out


def top_k_summary(
    cubes: Sequence[tuple[str, dict, np.ndarray]], k: int, beyond: str = "error"
) -> tuple[pd.DataFrame, list[str]]:
    """The directional synchrony summary with r*(l_A) the mean of the k best targets (summarize_tables' columns).

    ``beyond`` says what happens when ``k`` exceeds a table's target layers:
    ``error`` raises, ``cap`` uses all its target layers (as summarize_tables
    does) and reports the table's pair and direction in the returned list.
    """
    if beyond not in ("error", "cap"):
        raise ValueError(f"beyond must be 'error' or 'cap', got {beyond!r}")
    rows, capped = [], []
    for path, meta, cube in cubes:
        n_tgt = cube.shape[2]
        if k > n_tgt:
            if beyond == "error":
                raise ValueError(f"{path}: k={k} exceeds its {n_tgt} target layers; ask for k <= {n_tgt} "
                                 f"or pass beyond='cap' to average all target layers of such tables")
            capped.append(f"{meta['pair']} {meta['direction']} (L_B={n_tgt})")
        k_eff = min(k, n_tgt)
        score, raw = sync_r2(cube, top_k=k_eff, clip=True), sync_r2(cube, top_k=k_eff, clip=False)
        rows.append({
            "pair": meta["pair"], "source_model": meta.get("source_model", ""),
            "target_model": meta.get("target_model", ""), "condition": meta["condition"],
            "direction": meta["direction"], "syncr2": score.value, "syncr2_unclipped": raw.value,
            "se_unclipped": raw.se, "se": score.se, "n_split_seeds": cube.shape[0],
            "layers_src": cube.shape[1], "layers_tgt": n_tgt,
        })
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return frame.sort_values(["pair", "condition", "direction"], kind="stable").reset_index(drop=True), capped


def _correlation_rows(
    summary: pd.DataFrame,
    performance: pd.DataFrame,
    families: Mapping[str, str],
    model_order: Sequence[str],
    analysis: str,
    setting: str,
    setting_value: float,
    score: str,
    condition: str,
    x: str,
    y: str,
    min_n: int,
    note: str = "",
) -> list[dict]:
    """Family rows: Pearson r of ``y`` against ``x`` per family and the family mean of ``y``."""
    scores = pair_scores(summary, performance, families, model_order, condition, score)
    corr = family_correlations(scores, x=x, y=y, min_n=min_n)
    rows = []
    for rec in corr.itertuples(index=False):
        members = scores if rec.family == "all" else scores[scores["family"] == rec.family]
        rows.append(_row(analysis, setting, setting_value, score, family=rec.family,
                         value=float(members[y].mean()) if len(members) else math.nan,
                         r=rec.r, p=rec.p, n=int(rec.n), note="; ".join(s for s in (rec.note, note) if s)))
    return rows


def top_k_rows(
    tables: Iterable[PathLike],
    performance: pd.DataFrame,
    families: Mapping[str, str],
    model_order: Sequence[str],
    ks: Sequence[int] | None = None,
    scores: Sequence[str] = SCORES,
    condition: str = "experimental",
    beyond: str = "error",
    x: str = "performance_averaged",
    y: str = "syncr2_four_way",
    min_n: int = 3,
) -> pd.DataFrame:
    """Figure 7: per k, score and family, Pearson r of SyncR2 (top-k) with performance.

    For each k, r_k(l_A) = mean of the k largest split-seed-mean R2 over l_B,
    floored at 0 for ``clipped`` (not for ``unclipped``), then averaged over
    l_A; the summary is scored per unordered pair (:func:`pair_scores`) and
    correlated per family (:func:`family_correlations`). ``ks`` defaults to
    1..K with K the fewest target layers of any table (``beyond="cap"``: the
    most, smaller tables then average all their target layers, noted per row).
    Tables of conditions other than ``condition`` are skipped; every pair of
    ``performance`` needs its tables (:func:`pair_scores` names what lacks).
    """
    scores = _check_scores(scores)
    if y not in _Y_COLUMNS:
        raise ValueError(f"y must be one of {list(_Y_COLUMNS)}, got {y!r}")
    cubes = load_r2_cubes(tables, condition)
    n_tgt = [c.shape[2] for _, _, c in cubes]
    if ks is None:
        ks = range(1, (max(n_tgt) if beyond == "cap" else min(n_tgt)) + 1)
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    rows: list[dict] = []
    for k in ks:
        summary, capped = top_k_summary(cubes, k, beyond)
        note = f"k capped at L_B for {len(capped)} table(s): {', '.join(capped)}" if capped else ""
        for score in scores:
            rows += _correlation_rows(summary, performance, families, model_order, "top_k", str(k), float(k),
                                      score, condition, x, y, min_n, note)
    log.info("top-k: %d values of k, %d rows", len(ks), len(rows))
    return _typed(pd.DataFrame(rows))


# ---------------------------------------------------------------- 2. no clipping (Figure 8)

def no_clip_rows(
    summary: pd.DataFrame,
    families: Mapping[str, str],
    model_order: Sequence[str],
    condition: str = "experimental",
) -> pd.DataFrame:
    """Figure 8: per pair and direction, SyncR2 and SE floored (``clipped``) and not (``unclipped``).

    ``summary`` is the synchrony summary (``results/summary/synchrony.parquet``
    or :func:`summarize_tables` of the R2 tables): its ``syncr2_unclipped`` and
    ``se_unclipped`` are SyncR2 without the floor and the SE over all layers.
    """
    frames = [pair_rows(summary, "no_clip", score, math.nan, families, model_order, (score,), condition)
              for score in SCORES]
    return concat_sensitivity(frames)


# ---------------------------------------------------------------- 3. sample size (Figure 9)

_SIZE_DIR = re.compile(r"^\d+$")


def tables_by_size(paths: Iterable[PathLike]) -> dict[int, list[str]]:
    """Group R2 tables by dataset size: the ``size`` in their metadata, else the folder after ``r2_size``.

    The sample-size layout is ``results/r2_size/{size}/{pair}/{condition}/{direction}.parquet``.
    """
    out: dict[int, list[str]] = {}
    for path in paths:
        _, meta = read_r2_table(path)
        size = meta.get("size")
        if size is None:
            parts = Path(path).parts
            hits = [parts[i + 1] for i, p in enumerate(parts[:-1]) if p == "r2_size" and _SIZE_DIR.match(parts[i + 1])]
            if not hits:
                raise ValueError(f"{path}: no 'size' in the R2 table metadata and no .../r2_size/{{size}}/... folder")
            size = hits[-1]
        out.setdefault(int(size), []).append(str(path))
    return dict(sorted(out.items()))


def _parse_insufficient(insufficient: Iterable[Sequence]) -> tuple[dict[int, str], dict[int, dict[str, str]]]:
    """(size -> reason) for whole sizes, (size -> {ordered pair -> reason}) for single pairs."""
    whole: dict[int, str] = {}
    per_pair: dict[int, dict[str, str]] = {}
    for entry in insufficient:
        entry = tuple(entry)
        if len(entry) == 2:
            whole[int(entry[0])] = str(entry[1])
        elif len(entry) == 3:
            split_pair(str(entry[1]))
            per_pair.setdefault(int(entry[0]), {})[str(entry[1])] = str(entry[2])
        else:
            raise ValueError(f"an insufficient entry is (size, reason) or (size, pair, reason), got {entry!r}")
    return whole, per_pair


def sample_size_rows(
    tables: Mapping[int, Sequence[PathLike]],
    performance: pd.DataFrame,
    families: Mapping[str, str],
    model_order: Sequence[str],
    insufficient: Iterable[Sequence] = (),
    scores: Sequence[str] = SCORES,
    condition: str = "experimental",
    x: str = "performance_averaged",
    y: str = "syncr2_four_way",
    min_n: int = 3,
) -> pd.DataFrame:
    """Figure 9: SyncR2 per pair (``sample_size``) and its r with performance per family
    (``sample_size_correlation``) for every dataset size.

    ``tables`` maps a size to its R2 tables (see :func:`tables_by_size`); a
    table whose metadata gives another ``size`` is an error. ``insufficient``
    lists the sizes the data could not fill as ``(size, reason)`` (every pair)
    or ``(size, pair, reason)`` (one ordered pair): each becomes rows with NaN
    values and the reason as note. A pair with tables at one size must have
    them, or an insufficient entry, at every size. The correlation at a size
    uses the pairs it holds; the note names the unordered pairs left out.
    """
    scores = _check_scores(scores)
    whole, per_pair = _parse_insufficient(insufficient)
    both = sorted(set(whole) & {int(s) for s in tables})
    if both:
        raise ValueError(f"size(s) {both} have R2 tables and are also listed as insufficient; drop one of the two")
    summaries = _size_summaries(tables, condition)
    expected = {p for s in summaries.values() for p in s["pair"]} | {p for d in per_pair.values() for p in d}
    if not expected:
        raise ValueError("no R2 tables and no per-pair insufficient entries: nothing to report")
    rows: list[dict] = []
    frames: list[pd.DataFrame] = []
    for size in sorted(set(summaries) | set(whole) | set(per_pair)):
        label, value = str(size), float(size)
        summary = summaries.get(size)
        lacking = dict(per_pair.get(size, {}))
        if size in whole:
            lacking = {p: whole[size] for p in expected}
        have = set(summary["pair"]) if summary is not None else set()
        unexplained = sorted(expected - have - set(lacking))
        if unexplained:
            raise ValueError(f"size {size}: no '{condition}' R2 tables for pair(s) {', '.join(unexplained)}; "
                             f"give their tables or list them as insufficient (size, pair, reason)")
        extra = sorted(have & set(lacking))
        if extra:
            raise ValueError(f"size {size}: pair(s) {', '.join(extra)} have R2 tables and are listed as insufficient")
        out_keys = {"__".join(unordered_key(*split_pair(p), model_order)) for p in lacking}
        if summary is not None and len(summary):
            frames.append(pair_rows(summary, "sample_size", label, value, families, model_order, scores, condition))
            kept = summary[["__".join(unordered_key(*split_pair(p), model_order)) not in out_keys
                            for p in summary["pair"]]]
            keep_keys = {"__".join(unordered_key(*split_pair(p), model_order)) for p in kept["pair"]}
            perf = performance[["__".join(unordered_key(*split_pair(p), model_order)) in keep_keys
                                for p in performance["pair"]]]
            note = f"without pair(s) {', '.join(sorted(out_keys))} (insufficient at this size)" if out_keys else ""
            for score in scores:
                if len(kept):
                    rows += _correlation_rows(kept, perf, families, model_order, "sample_size_correlation", label,
                                              value, score, condition, x, y, min_n, note)
                else:
                    rows += _insufficient_family_rows(expected, families, label, value, score,
                                                      "no pair with both orders filled at this size")
        else:
            reason = whole.get(size) or "; ".join(sorted(set(lacking.values())))
            for score in scores:
                rows += _insufficient_family_rows(expected, families, label, value, score, f"insufficient: {reason}")
        rows += _lacking_rows("sample_size", label, value, lacking, families, model_order, scores)
    if rows:
        frames.append(_typed(pd.DataFrame(rows)))
    out = _replace_four_way(concat_sensitivity(frames), "sample_size")
    order = {a: i for i, a in enumerate(ANALYSES)}
    out = out.sort_values(["analysis", "setting_value", "score", "direction", "pair", "family"],
                          key=lambda c: c.map(order) if c.name == "analysis" else c, kind="stable")
    return out.reset_index(drop=True)


def _size_summaries(tables: Mapping[int, Sequence[PathLike]], condition: str) -> dict[int, pd.DataFrame]:
    """Per size, the SyncR2 summary of its R2 tables for ``condition``; a table of another size is an error."""
    summaries: dict[int, pd.DataFrame] = {}
    for size, paths in tables.items():
        paths = list(paths)
        for path in paths:
            _, meta = read_r2_table(path)
            if meta.get("size") is not None and int(meta["size"]) != int(size):
                raise ValueError(f"{path}: its metadata says size {meta['size']}, it was given as size {size}")
        summary = summarize_tables(paths)
        summaries[int(size)] = summary[summary["condition"] == condition]
    return summaries


def _lacking_rows(analysis: str, label: str, value: float, lacking: Mapping[str, str], families: Mapping[str, str],
                  model_order: Sequence[str], scores: Sequence[str]) -> list[dict]:
    """NaN pair rows for pairs whose dataset could not be filled: their directions, and the four_way
    score of their unordered pair (a score missing one speaking order would not be comparable)."""
    rows = []
    four: dict[str, list[str]] = {}
    for pair, reason in sorted(lacking.items()):
        m1, m2 = split_pair(pair)
        fam = family_of(m1, m2, families)
        four.setdefault("__".join(unordered_key(m1, m2, model_order)), []).append(f"{pair}: {reason}")
        for score in scores:
            for direction in ("AtoB", "BtoA", "combined"):
                rows.append(_row(analysis, label, value, score, pair=pair, family=fam, direction=direction,
                                 note=f"insufficient: {reason}", n=-1))
    for key, reasons in sorted(four.items()):
        distinct = {r.split(": ", 1)[1] for r in reasons}
        note = "insufficient: " + (distinct.pop() if len(distinct) == 1 else "; ".join(reasons))
        for score in scores:
            rows.append(_row(analysis, label, value, score, pair=key, family=family_of(*split_pair(key), families),
                             direction="four_way", note=note, n=-1))
    return rows


def _replace_four_way(frame: pd.DataFrame, analysis: str) -> pd.DataFrame:
    """Where a (setting, score, four_way pair) has an insufficient row (marked n = -1), drop its computed row."""
    four = (frame["analysis"] == analysis) & (frame["direction"] == "four_way")
    marked = frame[four & (frame["n"] == -1)]
    keys = set(zip(marked["setting"], marked["score"], marked["pair"]))
    listed = np.array([k in keys for k in zip(frame["setting"], frame["score"], frame["pair"])], dtype=bool)
    drop = four & (frame["n"] != -1) & listed
    out = frame[~drop].copy()
    out.loc[out["n"] == -1, "n"] = 0
    return out.reset_index(drop=True)


def _insufficient_family_rows(expected: Iterable[str], families: Mapping[str, str], label: str, value: float,
                              score: str, note: str) -> list[dict]:
    fams = list(dict.fromkeys(family_of(*split_pair(p), families) for p in sorted(expected)))
    fams.sort(key=lambda f: f == "Cross")
    return [_row("sample_size_correlation", label, value, score, family=f, note=note) for f in [*fams, "all"]]


# ---------------------------------------------------------------- 4. persona-disjoint split (Table 2)

def persona_split_rows(
    original: Iterable[PathLike],
    disjoint: Iterable[PathLike],
    families: Mapping[str, str],
    model_order: Sequence[str],
    insufficient: Iterable[tuple[str, str]] = (),
    scores: Sequence[str] = SCORES,
    condition: str = "experimental",
) -> pd.DataFrame:
    """Table 2's long rows: SyncR2 of each pair under the original and the persona-disjoint split.

    ``original`` and ``disjoint`` are the R2 tables of the two splits (same
    pairs); ``insufficient`` lists ``(ordered pair, reason)`` for pairs whose
    persona-disjoint split could not be filled: they get NaN rows with the
    reason as note. Any other pair missing from one split is an error.
    """
    scores = _check_scores(scores)
    lacking = {str(p): str(r) for p, r in insufficient}
    sums = {}
    for label, paths in (("original", list(original)), ("disjoint", list(disjoint))):
        if not paths:
            sums[label] = pd.DataFrame(columns=list(SUMMARY_COLUMNS))
            continue
        summary = summarize_tables(paths)
        sums[label] = summary[summary["condition"] == condition]
    orig, disj = set(sums["original"]["pair"]), set(sums["disjoint"]["pair"])
    if not orig:
        raise ValueError(f"no '{condition}' R2 tables of the original split given")
    problems = []
    if orig - disj - set(lacking):
        problems.append(f"pair(s) {', '.join(sorted(orig - disj - set(lacking)))} lack persona-disjoint tables "
                        f"(give them, or list them as insufficient with a reason)")
    if disj - orig:
        problems.append(f"pair(s) {', '.join(sorted(disj - orig))} lack original-split tables")
    if disj & set(lacking):
        problems.append(f"pair(s) {', '.join(sorted(disj & set(lacking)))} have persona-disjoint tables and are "
                        f"listed as insufficient")
    if set(lacking) - orig:
        problems.append(f"insufficient pair(s) {', '.join(sorted(set(lacking) - orig))} are not among "
                        f"the original tables")
    if problems:
        raise ValueError("persona split: " + "; ".join(problems))
    frames = [pair_rows(sums["original"], "persona_split", "original", math.nan, families, model_order, scores,
                        condition)]
    if len(sums["disjoint"]):
        frames.append(pair_rows(sums["disjoint"], "persona_split", "disjoint", math.nan, families, model_order,
                                scores, condition))
    rows = _lacking_rows("persona_split", "disjoint", math.nan, lacking, families, model_order, scores)
    frames.append(_typed(pd.DataFrame(rows)) if rows else empty_frame())
    out = _replace_four_way(concat_sensitivity(frames), "persona_split")
    return out


# ---------------------------------------------------------------- from the workflow's R2 tables

def _lacking_by_pair(lacking: Iterable[Mapping]) -> dict[tuple[int, str], str]:
    """(size, ordered pair) -> the reasons of its insufficient directions, joined."""
    out: dict[tuple[int, str], list[str]] = {}
    for entry in lacking:
        out.setdefault((int(entry["size"]), entry["pair"]), []).append(f"{entry['direction']}: {entry['reason']}")
    return {key: "; ".join(sorted(reasons)) for key, reasons in out.items()}


def sample_size_from_tables(
    paths: Iterable[PathLike],
    performance: pd.DataFrame,
    families: Mapping[str, str],
    model_order: Sequence[str],
    scores: Sequence[str] = SCORES,
    condition: str = "experimental",
    min_n: int = 3,
) -> pd.DataFrame:
    """Figure 9's rows from R2 tables at several sizes, some of them marked insufficient.

    A pair whose table of one direction could not be filled at a size is
    insufficient at that size as a whole (its other direction is left out):
    a SyncR2 of one direction is not comparable with the two-direction score.
    """
    filled, lacking = table_status(paths)
    missing = _lacking_by_pair(lacking)
    tables: dict[int, list[str]] = {}
    for size, sized in tables_by_size(filled).items():
        keep = [p for p in sized if (size, read_r2_table(p)[1]["pair"]) not in missing]
        if keep:
            tables[size] = keep
    entries = [(size, pair, reason) for (size, pair), reason in sorted(missing.items())]
    return sample_size_rows(tables, performance, families, model_order, entries, scores, condition, min_n=min_n)


def persona_split_from_tables(
    original: Iterable[PathLike],
    disjoint: Iterable[PathLike],
    families: Mapping[str, str],
    model_order: Sequence[str],
    scores: Sequence[str] = SCORES,
    condition: str = "experimental",
) -> pd.DataFrame:
    """Table 2's rows from the original R2 tables and the persona-disjoint ones (some marked insufficient)."""
    filled, lacking = table_status(disjoint)
    missing = {pair: reason for (_, pair), reason in _lacking_by_pair(lacking).items()}
    keep = [p for p in filled if read_r2_table(p)[1]["pair"] not in missing]
    return persona_split_rows(original, keep, families, model_order, sorted(missing.items()), scores, condition)


def table2_frame(rows: pd.DataFrame, score: str = "clipped", direction: str = "combined") -> pd.DataFrame:
    """Table 2, wide: pair, family, original, original_se, disjoint, disjoint_se, note.

    ``rows`` are :func:`persona_split_rows` (or the whole sensitivity table);
    ``direction`` ``combined`` gives one row per ordered pair (the paper's
    two-direction SyncR2), ``four_way`` one per unordered pair.
    """
    sub = rows[(rows["analysis"] == "persona_split") & (rows["score"] == score) & (rows["direction"] == direction)]
    if sub.empty:
        raise ValueError(f"no persona_split rows with score '{score}' and direction '{direction}'")
    out = []
    for pair, grp in sub.groupby("pair", sort=False):
        by = {r.setting: r for r in grp.itertuples(index=False)}
        o, d = by.get("original"), by.get("disjoint")
        notes = [f"{lbl}: {r.note}" for lbl, r in (("original", o), ("disjoint", d)) if r is not None and r.note]
        out.append({"pair": pair, "family": grp["family"].iloc[0],
                    "original": o.value if o is not None else math.nan,
                    "original_se": o.se if o is not None else math.nan,
                    "disjoint": d.value if d is not None else math.nan,
                    "disjoint_se": d.se if d is not None else math.nan,
                    "note": "; ".join(notes)})
    return pd.DataFrame(out, columns=["pair", "family", "original", "original_se", "disjoint", "disjoint_se", "note"])


#: The inputs each analysis reads (``run_analysis``'s ``files``).
ANALYSIS_INPUTS = {"top_k": ("tables", "performance"), "no_clip": ("summary",),
                   "sample_size": ("tables", "performance"), "persona_split": ("tables", "disjoint")}


def run_analysis(analysis: str, files: Mapping[str, Sequence[PathLike]], naming: PairNaming,
                 statistics: Statistics, out: PathLike, ks: Sequence[int] | None = None,
                 scores: Sequence[str] = SCORES, condition: str = "experimental") -> pd.DataFrame:
    """One sensitivity analysis from its files (:data:`ANALYSIS_INPUTS`), written to ``out``."""
    lacking = [name for name in ANALYSIS_INPUTS[analysis] if not files.get(name)]
    if lacking:
        raise ValueError(f"sensitivity {analysis} needs {' and '.join(lacking)}")
    order, min_n, scores = list(naming.model_order), statistics.min_pairs_correlation, tuple(scores)
    perf = pd.read_parquet(files["performance"][0]) if files.get("performance") else None
    if analysis == "top_k":
        frame = top_k_rows(files["tables"], perf, naming.families, order, ks=ks or None, scores=scores,
                           condition=condition, beyond="cap", min_n=min_n)
    elif analysis == "no_clip":
        frame = no_clip_rows(pd.read_parquet(files["summary"][0]), naming.families, order, condition)
    elif analysis == "sample_size":
        frame = sample_size_from_tables(files["tables"], perf, naming.families, order, scores, condition, min_n=min_n)
    else:
        frame = persona_split_from_tables(files["tables"], files["disjoint"], naming.families, order, scores,
                                          condition)
    write_sensitivity(frame, out)
    log.info("wrote %s (%d %s rows)", out, len(frame), analysis)
    return frame
