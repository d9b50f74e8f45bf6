"""R2 tables: every layer pair's test-set R2 of one dataset, over split seeds.

The table of one (pair, condition, direction) is the unit the workflow
schedules as a CPU job; its columns are ``split_seed, layer_src, layer_tgt,
r2, n_train, n_test``. Representations are read one layer at a time from the
shards, so the paper's sizes never sit in memory at once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_path
from .datasets import ConditionDataset, fixed_size_split
from .ridge import LayerStreams, layer_pair_r2_streamed

log = logging.getLogger(__name__)

R2_COLUMNS = ("split_seed", "layer_src", "layer_tgt", "r2", "n_train", "n_test")


def compute_r2_table(
    dataset: ConditionDataset,
    size: int,
    split_seeds: Sequence[int],
    alpha: float = 0.1,
    test_fraction: float = 0.2,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit and score all layer pairs of ``dataset`` for each split seed."""
    def ridge_grid(streams: LayerStreams, train: np.ndarray, test: np.ndarray):
        return layer_pair_r2_streamed(streams, train, test, alpha=alpha, device=device, progress=progress)

    return split_table(dataset, size, split_seeds, test_fraction, ridge_grid)


def split_table(
    dataset: ConditionDataset,
    size: int,
    split_seeds: Sequence[int],
    test_fraction: float,
    grid_of: Callable[[LayerStreams, np.ndarray, np.ndarray], np.ndarray],
    layers_src: Sequence[int] | None = None,
    layers_tgt: Sequence[int] | None = None,
    what: str = "",
) -> pd.DataFrame:
    """The R2 table of any map: per split seed, ``grid_of(streams, train, test)`` on the
    split's rows (train first), as rows of the chosen layers (default: all)."""
    src = list(range(dataset.source.n_layers)) if layers_src is None else list(layers_src)
    tgt = list(range(dataset.target.n_layers)) if layers_tgt is None else list(layers_tgt)
    frames = []
    for seed in split_seeds:
        train, test = fixed_size_split(dataset.groups, size, seed, test_fraction)
        used = np.concatenate([train, test])
        log.info("%s%s %s split seed %d: %d train, %d test samples, %dx%d layer pairs", what,
                 dataset.condition.name, dataset.direction, seed, len(train), len(test), len(src), len(tgt))
        grid = grid_of(dataset.streams(used), np.arange(len(train)), np.arange(len(train), len(used)))
        frames.append(grid_rows(grid, seed, src, tgt, len(train), len(test)))
    return pd.concat(frames, ignore_index=True)


def grid_rows(
    grid: np.ndarray,
    split_seed: int,
    layers_src: Sequence[int],
    layers_tgt: Sequence[int],
    n_train: int,
    n_test: int,
) -> pd.DataFrame:
    """One split seed's (len(layers_src), len(layers_tgt)) R2 grid as R2-table rows (``R2_COLUMNS``)."""
    src, tgt = np.meshgrid(np.asarray(layers_src), np.asarray(layers_tgt), indexing="ij")
    return pd.DataFrame(
        {
            "split_seed": np.int32(split_seed),
            "layer_src": src.ravel().astype(np.int32),
            "layer_tgt": tgt.ravel().astype(np.int32),
            "r2": np.asarray(grid).ravel(),
            "n_train": np.int32(n_train),
            "n_test": np.int32(n_test),
        }
    )


def write_r2_table(table: pd.DataFrame, path: str | os.PathLike[str], **meta: object) -> Path:
    """Write an R2 table atomically, with ``meta`` (pair, condition, ...) in the Parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    missing = [c for c in R2_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: R2 table lacks column(s) {', '.join(missing)}")
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), b"syncr2": json.dumps(meta, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    return Path(path)


def read_r2_table(path: str | os.PathLike[str], require: Sequence[str] = ()) -> tuple[pd.DataFrame, dict]:
    """An R2 table and its metadata; errors name the file and the missing column or ``require``d metadata key."""
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for truncated files
        raise ValueError(f"{path}: not a readable R2 table: {exc}") from exc
    table = arrow.to_pandas()
    missing = [c for c in R2_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: R2 table lacks column(s) {', '.join(missing)}")
    meta = json.loads((arrow.schema.metadata or {}).get(b"syncr2", b"{}"))
    for key in require:
        if not meta.get(key):
            raise ValueError(f"{path}: R2 table metadata lacks '{key}'")
    return table, meta


def r2_cube(table: pd.DataFrame) -> np.ndarray:
    """The table as an array (split seeds, L_src, L_tgt).

    The table must hold every layer 0..L-1 on both sides; a table of a layer
    subset (e.g. a nonlinear-map run on chosen layers) is read with
    :func:`r2_cube_layers`.
    """
    seeds = np.sort(table["split_seed"].unique())
    n_src = int(table["layer_src"].max()) + 1
    n_tgt = int(table["layer_tgt"].max()) + 1
    cube = np.full((len(seeds), n_src, n_tgt), np.nan)
    pos = np.searchsorted(seeds, table["split_seed"].to_numpy())
    cube[pos, table["layer_src"].to_numpy(), table["layer_tgt"].to_numpy()] = table["r2"].to_numpy()
    if np.isnan(cube).any():
        raise ValueError("R2 table is incomplete: some (split_seed, layer_src, layer_tgt) cells are missing")
    return cube


def r2_cube_layers(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table as (cube, layers_src, layers_tgt), for complete grids and layer subsets alike.

    ``cube`` is (split seeds, len(layers_src), len(layers_tgt)) with
    ``cube[:, i, j]`` the R2 of source layer ``layers_src[i]`` and target layer
    ``layers_tgt[j]``; the layer lists are the sorted layer numbers present in
    the table. For a table over all layers 0..L-1 the cube equals
    :func:`r2_cube`'s. Every (split seed, source layer, target layer)
    combination of the present values must occur exactly once.
    """
    missing = [c for c in ("split_seed", "layer_src", "layer_tgt", "r2") if c not in table.columns]
    if missing:
        raise ValueError(f"R2 table lacks column(s) {', '.join(missing)}")
    if table.empty:
        raise ValueError("R2 table is empty: it holds no (split_seed, layer_src, layer_tgt) cell")
    key = table[["split_seed", "layer_src", "layer_tgt"]]
    dup = key.duplicated()
    if dup.any():
        row = key[dup].iloc[0]
        raise ValueError(
            f"R2 table holds cell (split_seed {row.split_seed}, layer_src {row.layer_src}, "
            f"layer_tgt {row.layer_tgt}) more than once; tables of different runs were concatenated"
        )
    seeds = np.sort(table["split_seed"].unique())
    layers_src = np.sort(table["layer_src"].unique()).astype(np.int64)
    layers_tgt = np.sort(table["layer_tgt"].unique()).astype(np.int64)
    cube = np.full((len(seeds), len(layers_src), len(layers_tgt)), np.nan)
    pos = np.searchsorted(seeds, table["split_seed"].to_numpy())
    src = np.searchsorted(layers_src, table["layer_src"].to_numpy())
    tgt = np.searchsorted(layers_tgt, table["layer_tgt"].to_numpy())
    cube[pos, src, tgt] = table["r2"].to_numpy()
    if len(table) != cube.size:
        raise ValueError(
            f"R2 table is incomplete: some (split_seed, layer_src, layer_tgt) cells are missing "
            f"({len(table)} of {cube.size} cells for {len(seeds)} split seeds x source layers "
            f"{layers_src.tolist()} x target layers {layers_tgt.tolist()})"
        )
    if np.isnan(cube).any():
        raise ValueError("R2 table holds NaN r2 values; recompute the table")
    return cube, layers_src, layers_tgt
