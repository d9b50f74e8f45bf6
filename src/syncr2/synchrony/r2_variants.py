"""One R2 table under a variant of the main analysis: another size, grouping or map.

The sensitivity analyses and the nonlinear maps (docs/analyses.md, "Robustness")
re-run the R2 step of one (pair, condition, direction) with one setting
changed, and write a table with the R2 table contract
(:data:`~syncr2.synchrony.r2table.R2_COLUMNS`), so SyncR2 and every summary
read it as they read the main one:

* ``size``: the dataset size (Figure 9 varies it);
* ``groups``: ``task`` (the main split: whole tasks in train or test) or
  ``persona`` (whole unordered persona pairs, Table 2);
* ``mlp``: MLP maps (Table 5) in place of the affine ridge maps, with an
  optional layer stride for the MLP's cost.

A size the data cannot fill is part of the answer, not a failure, when
``insufficient_ok`` is set: the table is then written with no rows and the
reason in its metadata (``insufficient``);
:func:`~syncr2.analysis.sensitivity.table_status` sorts such tables out. The
main R2 step keeps failing loudly (its size is checked before any job by
``check_sizes``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.conditions import DatasetError
from ..core.settings import MLP, Ridge, Split
from .datasets import build_dataset, fixed_size_split, persona_pair_groups
from .mlp_maps import compute_mlp_r2_table
from .r2table import R2_COLUMNS, compute_r2_table, write_r2_table

log = logging.getLogger(__name__)

GROUPINGS = ("task", "persona")

PathLike = str | os.PathLike[str]


def strided_layers(n_layers: int, stride: int) -> list[int] | None:
    """Layers 0, s, 2s, ... and always the last one; None (all layers) for stride 1."""
    if stride < 1:
        raise ValueError(f"layer stride must be >= 1, got {stride}")
    if stride == 1:
        return None
    return sorted({*range(0, n_layers, stride), n_layers - 1})


def run_r2_variant(
    genuine: Sequence[PathLike],
    condition: str,
    direction: str,
    split: Split,
    out: PathLike,
    *,
    ridge: Ridge = Ridge(0.1),
    mlp: MLP | None = None,
    pair: str = "",
    passive: Sequence[PathLike] | None = None,
    groups: str = "task",
    tasks: pd.DataFrame | None = None,
    layers_src: Sequence[int] | None = None,
    layers_tgt: Sequence[int] | None = None,
    insufficient_ok: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Compute and write the R2 table of one (pair, condition, direction) under the given variant.

    ``split``: the dataset size, test fraction and split seeds; ``mlp``: MLP maps
    (Table 5) in place of ridge maps with ``ridge``'s penalty. ``tasks`` (the
    task table) is needed for ``groups="persona"``; ``mlp.layer_stride`` > 1
    keeps every s-th layer of both agents, ``layers_src`` / ``layers_tgt`` name
    the layers of one side instead (MLP only: the affine grid is cheap).
    """
    if groups not in GROUPINGS:
        raise ValueError(f"groups must be one of {list(GROUPINGS)}, got {groups!r}")
    map_kind = "ridge" if mlp is None else "mlp"
    if mlp is None and (layers_src is not None or layers_tgt is not None):
        raise ValueError("layer subsets apply to MLP maps only")
    if mlp is not None and mlp.layer_stride != 1 and (layers_src is not None or layers_tgt is not None):
        raise ValueError("give a layer stride or layer subsets, not both")
    t0 = time.perf_counter()
    ds = build_dataset(genuine, condition, direction, passive=passive or None)
    if groups == "persona":
        if tasks is None:
            raise ValueError("groups 'persona' needs the task table (results/tasks.parquet)")
        ds.groups = persona_pair_groups(ds.pairs, tasks)
    meta: dict[str, object] = {
        "pair": pair, "condition": condition, "direction": direction, "map": map_kind, "groups": groups,
        "source_model": ds.source.shards[0].meta.model_key, "target_model": ds.target.shards[0].meta.model_key,
        "size": split.size, "n_samples": len(ds), "test_fraction": split.test_fraction,
        "split_seeds": list(split.split_seeds),
    }
    log.info("%s %s %s (%s map, %s groups, size %d): %d samples in %d groups", pair, condition, direction,
             map_kind, groups, split.size, len(ds), len(np.unique(ds.groups)))
    problem = unfillable(ds.groups, split)
    if problem is not None:
        if not insufficient_ok:
            raise problem
        reason = f"{len(ds)} samples in {len(np.unique(ds.groups))} {groups} groups cannot fill size {split.size}"
        log.warning("%s %s %s: %s; writing an empty table marked insufficient (%s)", pair, condition, direction,
                    reason, problem)
        empty = pd.DataFrame({c: pd.Series(dtype="float64" if c == "r2" else "int32") for c in R2_COLUMNS})
        return write_r2_table(empty, out, **meta, insufficient=reason)
    if mlp is None:
        table = compute_r2_table(ds, split.size, split.split_seeds, alpha=ridge.alpha,
                                 test_fraction=split.test_fraction, device=device, progress=progress)
        meta["alpha"] = ridge.alpha
    else:
        if mlp.layer_stride != 1:
            layers_src = strided_layers(ds.source.n_layers, mlp.layer_stride)
            layers_tgt = strided_layers(ds.target.n_layers, mlp.layer_stride)
        layers_src = None if layers_src is None else [int(v) for v in layers_src]
        layers_tgt = None if layers_tgt is None else [int(v) for v in layers_tgt]
        options = {k: v for k, v in mlp.options().items() if k != "seed"}
        table = compute_mlp_r2_table(ds, split.size, split.split_seeds, test_fraction=split.test_fraction,
                                     layers_src=layers_src, layers_tgt=layers_tgt, mlp=mlp, device=device,
                                     progress=progress)
        meta.update({**options, "seed": mlp.seed, "layers_src": layers_src, "layers_tgt": layers_tgt})
    path = write_r2_table(table, out, **meta)
    log.info("wrote %s (%d rows) in %.1f s", out, len(table), time.perf_counter() - t0)
    return path


def unfillable(groups: np.ndarray, split: Split) -> DatasetError | None:
    """Why ``split`` cannot be filled from these sample groups (for some split seed), or None if it can."""
    try:
        for seed in split.split_seeds:
            fixed_size_split(groups, split.size, seed, split.test_fraction)
    except DatasetError as exc:
        return exc
    return None
