"""Is the surrogate null calibrated? The share of p <= alpha over many null datasets.

Each dataset is a planted pair with coupling 0 (agent 2 shares nothing with
agent 1: ``syncr2.synchrony.planted_study``, the known-answer generator), drawn
with its own weight seed. Per dataset and mode the surrogate p of the
unclipped SyncR2 (A->B) is computed once with split seed 0 and once with split
seeds 0-2 combined. Under a calibrated null the share of p <= alpha is alpha
up to chance: the script prints the share, its exact binomial 95 % interval,
and whether alpha lies inside, per mode and split-seed setting; exit status 1
when it does not.

    python ci/surrogate_calibration.py --datasets 300 --perms 39
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import binomtest

from syncr2.analysis.surrogate import summarize_surrogate, surrogate_draws
from syncr2.synchrony.datasets import build_dataset
from syncr2.synchrony.planted_study import PlantedStudy, write_planted_block

MODES = ["pseudo_task", "shuffle_within", "turn_rotation"]
SETTINGS = {"1 split seed": [0], "3 split seeds": [0, 1, 2]}


def null_dataset(index: int, root: Path, n_tasks: int, seeds: tuple[int, ...], n_turns: int):
    """A coupling-0 planted pair (its own weight seed) as a condition dataset (experimental, A->B)."""
    study = PlantedStudy(n_turns=n_turns, coupling={"A__B": 0.0}, weight_seed=10_000 + index)
    paths = []
    for seed in seeds:
        out = root / f"seed{seed}"
        out.mkdir(parents=True)
        genuine = [out / "a1.parquet", out / "a2.parquet"]
        write_planted_block(study, "A__B", "A", "B", seed, range(n_tasks), out / "episodes.parquet", genuine,
                            [out / "p1.parquet", out / "p2.parquet"])
        paths += [str(p) for p in genuine]
    return build_dataset(paths, "experimental", "AtoB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=300)
    ap.add_argument("--perms", type=int, default=39, help="R; p is a multiple of 1 / (R + 1)")
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--size", type=int, default=300, help="samples per split (r2.size)")
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.05, 0.10])
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, t0 = [], time.perf_counter()
    for i in range(args.datasets):
        with tempfile.TemporaryDirectory() as tmp:
            ds = null_dataset(i, Path(tmp), args.tasks, (0, 1, 2), args.turns)
            for setting, split_seeds in SETTINGS.items():
                draws = surrogate_draws(ds, args.size, split_seeds, MODES, n_perm=args.perms, seed=i)
                summary = summarize_surrogate(draws)
                for r in summary[(summary.score == "unclipped")].itertuples():
                    rows.append({"dataset": i, "setting": setting, "mode": r.mode, "p": r.p_empirical})
        if (i + 1) % 25 == 0:
            print(f"{i + 1} of {args.datasets} null datasets, {time.perf_counter() - t0:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    ok = True
    print(f"\n{args.datasets} null datasets, R = {args.perms}, {args.tasks} tasks x 3 seeds x {args.turns} turns, "
          f"size {args.size}")
    print(f"{'setting':<14} {'mode':<15} {'alpha':>5} {'share p<=alpha':>15} {'binomial 95% CI':>18} {'calibrated':>10}")
    for (setting, mode), grp in frame.groupby(["setting", "mode"], sort=False):
        for alpha in args.alpha:
            k = int((grp["p"] <= alpha + 1e-12).sum())
            ci = binomtest(k, len(grp), alpha).proportion_ci(0.95)
            inside = ci.low <= alpha <= ci.high
            ok &= inside
            print(f"{setting:<14} {mode:<15} {alpha:>5.2f} {k:>6} / {len(grp):<6} [{ci.low:.3f}, {ci.high:.3f}] "
                  f"{'yes' if inside else 'NO':>10}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
