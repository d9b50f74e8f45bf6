"""Does a change leave every result as it was? Compare two finished runs, file by file.

    python ci/compare_results.py BEFORE AFTER [--atol 1e-12]

BEFORE and AFTER are folders that each hold a run's ``results/`` and ``reports/``
(a copy of the repository after ``snakemake``, or two such copies kept aside).
Every Parquet file under ``results/`` (episodes, representation shards, judge
scores, every R2 table, every summary, the surrogate draws) and every CSV table
under ``reports/tables/`` (the numbers behind the figures and tables) must be in
both runs with the same columns and rows: numbers equal within ``--atol``
(NaN matches NaN), everything else equal. Parquet metadata that records when or
where a file was written is not compared. Exit status 0 when all agree, 1 with
one line per difference otherwise. ``ci/refactor_check.sh`` runs it on the smoke
and known-answer configs before and after a refactor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def result_files(root: Path) -> list[Path]:
    """The compared files of one run, relative to its folder, sorted."""
    found = [p for p in (root / "results").rglob("*.parquet") if "models" not in p.relative_to(root).parts]
    found += list((root / "reports" / "tables").glob("*.csv"))
    return sorted(p.relative_to(root) for p in found)


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def column_difference(name: str, a: pd.Series, b: pd.Series, atol: float) -> str | None:
    """Why two columns differ, or None when they agree (numbers within ``atol``)."""
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b) and not (
            pd.api.types.is_bool_dtype(a) or pd.api.types.is_bool_dtype(b)):
        x, y = a.to_numpy(dtype=np.float64, na_value=np.nan), b.to_numpy(dtype=np.float64, na_value=np.nan)
        close = np.isclose(x, y, rtol=0.0, atol=atol, equal_nan=True)
        if close.all():
            return None
        worst = int(np.nanargmax(np.where(close, 0.0, np.abs(x - y)))) if np.isfinite(x - y).any() else 0
        return f"column {name}: {int((~close).sum())} of {len(x)} values differ (row {worst}: {x[worst]!r} vs {y[worst]!r})"
    left = [_plain(v) for v in a.tolist()]
    right = [_plain(v) for v in b.tolist()]
    if left == right:
        return None
    bad = next(i for i, (u, v) in enumerate(zip(left, right)) if u != v)
    return f"column {name}: row {bad} differs ({left[bad]!r} vs {right[bad]!r})"


def _plain(v: object) -> object:
    """A comparable form of a cell: arrays as tuples, missing values as None."""
    if isinstance(v, np.ndarray):
        return tuple(_plain(x) for x in v.tolist())
    if isinstance(v, list | tuple):
        return tuple(_plain(x) for x in v)
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def table_differences(rel: Path, a: pd.DataFrame, b: pd.DataFrame, atol: float) -> list[str]:
    if list(a.columns) != list(b.columns):
        return [f"{rel}: columns differ: {list(a.columns)} vs {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{rel}: {len(a)} rows vs {len(b)} rows"]
    out = []
    for col in a.columns:
        why = column_difference(str(col), a[col].reset_index(drop=True), b[col].reset_index(drop=True), atol)
        if why:
            out.append(f"{rel}: {why}")
    return out


def compare_runs(before: Path, after: Path, atol: float) -> tuple[int, list[str]]:
    """How many files were compared, and every difference found."""
    left, right = result_files(before), result_files(after)
    problems = [f"{p}: only in {before}" for p in sorted(set(left) - set(right))]
    problems += [f"{p}: only in {after}" for p in sorted(set(right) - set(left))]
    common = sorted(set(left) & set(right))
    for rel in common:
        problems += table_differences(rel, read_table(before / rel), read_table(after / rel), atol)
    return len(common), problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--atol", type=float, default=1e-12, help="largest allowed absolute difference of a number")
    args = ap.parse_args(argv)
    for root in (args.before, args.after):
        if not (root / "results").is_dir():
            ap.error(f"{root} has no results/ folder: give the folders that hold each run's results/ and reports/")
    n, problems = compare_runs(args.before, args.after, args.atol)
    for line in problems:
        print(line)
    print(f"{n} files compared, {len(problems)} differences (atol {args.atol:g})")
    return 1 if problems or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
