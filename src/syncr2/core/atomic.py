"""Atomic file output: write to a temporary sibling, then rename.

An interrupted job must never leave a half-written file under the final
name, because Snakemake (and our own readers) would take it for a whole one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet(frame: "pd.DataFrame", path: str | os.PathLike[str]) -> Path:
    """Write a table as Parquet (no index) under a temporary name, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def require_columns(frame: "pd.DataFrame", columns: Sequence[str], what: str, path: str | os.PathLike[str],
                    error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the file, the table and the missing columns, if any of ``columns`` is missing."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise error(f"{path}: {what} lacks column(s) {', '.join(missing)}")


def write_table(frame: "pd.DataFrame", path: str | os.PathLike[str], columns: Sequence[str], what: str,
                error: type[Exception] = ValueError, only: bool = False) -> Path:
    """The one table writer: check ``columns`` (:func:`require_columns`), then :func:`write_parquet`.

    ``only``: write exactly ``columns``, in that order (the contract), dropping any other.
    """
    require_columns(frame, columns, what, path, error)
    return write_parquet(frame[list(columns)] if only else frame, path)


def read_table(path: str | os.PathLike[str], columns: Sequence[str], what: str,
               error: type[Exception] = ValueError) -> "pd.DataFrame":
    """A Parquet table written by :func:`write_table`; errors name the file and what is wrong with it."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for missing or truncated files
        raise error(f"{path}: not a readable {what}: {exc}") from exc
    require_columns(frame, columns, what, path, error)
    return frame
