"""The SyncR2 summary table: one row per pair, condition and direction.

Rows with direction ``AtoB`` / ``BtoA`` come from one R2 table each; rows
with direction ``combined`` are the paper's two-direction score of a pair and
condition. Columns: pair, source_model, target_model, condition, direction,
syncr2, syncr2_unclipped, se_unclipped, se, n_split_seeds, layers_src,
layers_tgt.

``syncr2_unclipped`` is the same score without the max(0, .) floor: when every
layer's best R2 is negative (the demo's random models) SyncR2 is 0 everywhere
and only the unclipped value still tells conditions apart. ``se`` follows the
authors' clipping rule (a floored layer adds zero variance, so an all-floored
score has SE 0); ``se_unclipped`` keeps every layer's variance and belongs to
``syncr2_unclipped``. The combined rows combine both the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..core.atomic import write_parquet
from .r2table import r2_cube_layers, read_r2_table
from .sync import SyncScore, combine_directions, sync_r2

SUMMARY_COLUMNS = (
    "pair", "source_model", "target_model", "condition", "direction",
    "syncr2", "syncr2_unclipped", "se_unclipped", "se", "n_split_seeds", "layers_src", "layers_tgt",
)


def summarize_tables(paths: Iterable[str | os.PathLike[str]], top_k: int = 1, clip: bool = True) -> pd.DataFrame:
    """SyncR2 of every R2 table, plus the combined two-direction rows.

    A table of a layer subset (the MLP maps' layer stride) gives the SyncR2
    over the layers it holds; ``layers_src`` / ``layers_tgt`` count them.
    """
    rows = []
    for path in paths:
        table, meta = read_r2_table(path, require=("pair", "condition", "direction"))
        if meta.get("insufficient"):
            raise ValueError(f"{path}: this R2 table is marked insufficient ({meta['insufficient']}): "
                             f"it has no SyncR2; only the sensitivity analyses read such tables")
        try:
            cube, _, _ = r2_cube_layers(table)  # every layer, or the layer subset the table holds
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        k = min(top_k, cube.shape[2])
        score = sync_r2(cube, top_k=k, clip=clip)
        raw = sync_r2(cube, top_k=k, clip=False)
        rows.append({
            "pair": meta["pair"], "source_model": meta.get("source_model", ""),
            "target_model": meta.get("target_model", ""), "condition": meta["condition"],
            "direction": meta["direction"], "syncr2": score.value, "syncr2_unclipped": raw.value,
            "se_unclipped": raw.se, "se": score.se,
            "n_split_seeds": cube.shape[0], "layers_src": cube.shape[1], "layers_tgt": cube.shape[2],
        })
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    combined = []
    for (pair, cond), grp in frame.groupby(["pair", "condition"], sort=True):
        by_dir = {r.direction: r for r in grp.itertuples()}
        if {"AtoB", "BtoA"} <= by_dir.keys():
            ab, ba = by_dir["AtoB"], by_dir["BtoA"]
            score = combine_directions(SyncScore(ab.syncr2, ab.se), SyncScore(ba.syncr2, ba.se))
            raw = combine_directions(SyncScore(ab.syncr2_unclipped, ab.se_unclipped),
                                     SyncScore(ba.syncr2_unclipped, ba.se_unclipped))
            combined.append({
                "pair": pair, "source_model": ab.source_model, "target_model": ab.target_model,
                "condition": cond, "direction": "combined", "syncr2": score.value,
                "syncr2_unclipped": raw.value, "se_unclipped": raw.se, "se": score.se,
                "n_split_seeds": ab.n_split_seeds, "layers_src": ab.layers_src, "layers_tgt": ab.layers_tgt,
            })
    if combined:
        frame = pd.concat([frame, pd.DataFrame(combined)], ignore_index=True)
    return frame.sort_values(["pair", "condition", "direction"], kind="stable").reset_index(drop=True)


def write_summary(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    write_parquet(frame, path)
    return Path(path)
