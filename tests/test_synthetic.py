"""Synthetic episodes through shards, datasets, the engine and SyncR2."""

import json

import numpy as np
import pandas as pd

from syncr2.cli import main
from syncr2.synchrony.datasets import build_dataset
from syncr2.synchrony.r2table import compute_r2_table, r2_cube, read_r2_table
from syncr2.synchrony.sync import sync_r2
from syncr2.synchrony.synthetic import (
    SyntheticSpec,
    analytic_r2,
    write_synthetic_shards,
)


def test_planted_synchrony_and_lag_decay(tmp_path):
    spec = SyntheticSpec(n_tasks=300, seeds=(0, 1), n_turns=8, rho=0.6)
    paths = write_synthetic_shards(spec, tmp_path)
    scores = {}
    for cond, lag in (("experimental", 0), ("lag1", 1), ("lag2", 2)):
        ds = build_dataset(paths, cond, "AtoB")
        table = compute_r2_table(ds, size=1200, split_seeds=[0, 1, 2], progress=False)
        cube = r2_cube(table)
        expected = analytic_r2(spec, "AtoB", lag)
        # a ridge map on 960 samples of 8-dim inputs approaches the population R2
        assert np.abs(cube.mean(0) - expected).max() < 0.05, (cond, cube.mean(0), expected)
        scores[cond] = sync_r2(cube).value
    assert scores["experimental"] > scores["lag1"] > scores["lag2"]
    assert scores["experimental"] - scores["lag2"] > 0.2
    ba = build_dataset(paths, "experimental", "BtoA")
    cube = r2_cube(compute_r2_table(ba, size=1000, split_seeds=[0], progress=False))
    assert np.abs(cube[0] - analytic_r2(spec, "BtoA", 0)).max() < 0.06


def test_cli_r2_and_sync(tmp_path):
    spec = SyntheticSpec(n_tasks=60, seeds=(0,), n_turns=6)
    paths = [str(p) for p in write_synthetic_shards(spec, tmp_path / "reps")]
    for direction in ("AtoB", "BtoA"):
        settings = {"pair": "sa__sb", "condition": "experimental", "direction": direction,
                    "split": {"size": 100, "test_fraction": 0.2, "split_seeds": [0, 1]}}
        rc = main(["r2", "--settings", json.dumps(settings), "--in", "genuine", *paths, "--no-progress",
                   "--out", "table", str(tmp_path / f"r2_{direction}.parquet")])
        assert rc == 0
    table, meta = read_r2_table(tmp_path / "r2_AtoB.parquet")
    assert meta["pair"] == "sa__sb" and meta["source_model"] == "synth-a" and meta["target_model"] == "synth-b"
    assert len(table) == 2 * 3 * 2 and set(table.split_seed) == {0, 1}
    direct = compute_r2_table(build_dataset(paths, "experimental", "AtoB"), 100, [0, 1], progress=False)
    np.testing.assert_allclose(table.r2.to_numpy(), direct.r2.to_numpy(), atol=1e-12)
    assert main(["sync", "--settings", '{"sync": {"top_k": 1, "clip": true}}', "--in", "tables",
                 str(tmp_path / "r2_AtoB.parquet"), str(tmp_path / "r2_BtoA.parquet"),
                 "--out", "summary", str(tmp_path / "summary.parquet")]) == 0
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    assert list(summary.direction) == ["AtoB", "BtoA", "combined"]
    ab, ba, both = summary.syncr2
    assert both == (ab + ba) / 2
    # too large a sample size: a clear error and exit code 2, no output file
    big = {"condition": "experimental", "direction": "AtoB", "split": {"size": 5000}}
    rc = main(["r2", "--settings", json.dumps(big), "--in", "genuine", *paths, "--out", "table",
               str(tmp_path / "big.parquet")])
    assert rc == 2 and not (tmp_path / "big.parquet").exists()
