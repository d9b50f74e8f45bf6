"""CI: the default pipeline left every figure and table, and the judge scored every episode validly.

    python ci/check_demo_outputs.py        # from the repository root, after `snakemake -c 2`
    python ci/check_demo_outputs.py --config config/smoke.yaml
                                           # after `snakemake -c 2 --configfile config/smoke.yaml`

--config names the config the run used (its models, conditions and analyses say which
figures and tables to expect; default: config/config.yaml, the embedded default).
Exits non-zero naming what is missing or wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from syncr2.core.config import robustness_pairs
from syncr2.report.figure_plan import planned_figures, planned_sensitivity
from syncr2.social.judge_prompt import DIMENSIONS, RANGES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--config", default="config/config.yaml", type=Path,
                    help="the config file the checked run used (default: %(default)s)")
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(args.config.read_text())
    models = list(cfg["models"])
    pairs = [f"{a}__{b}" for a in models for b in models]
    problems = []
    stems = planned_figures(pairs, cfg["conditions"], cfg["directions"]) + ["fig5_relationships", "fig6_correlation"]
    plan = planned_sensitivity(cfg["analysis"]["sensitivity"]["analyses"])
    stems += plan["figures"] + ["surrogate_null"]
    if cfg["analysis"].get("measures", {}).get("measures"):
        stems += ["measures"]
    if cfg["analysis"].get("lag_profile", {}).get("max_lag"):
        stems += [f"lag_profile_{p}" for p in pairs]  # the default's lag_profile.pairs: all
    tom_pairs = (cfg.get("tom") or {}).get("pairs") or []
    if tom_pairs:
        stems += ["fig11_tom", "fig11_tom_layers"]
    for stem in stems:
        for ext in ("png", "pdf"):
            if not (Path("reports/figures") / f"{stem}.{ext}").stat().st_size:
                problems.append(f"empty figure {stem}.{ext}")
    for name in ("synchrony", "performance", "correlation", "table1_partial_correlation", "table5_nonlinear",
                 *plan["tables"], *(["table_tom"] if tom_pairs else [])):
        for ext in ("csv", "md"):
            if not (Path("reports/tables") / f"{name}.{ext}").is_file():
                problems.append(f"missing table {name}.{ext}")
    evals = pd.concat([pd.read_parquet(p) for p in sorted(Path("results/eval").rglob("*.parquet"))])
    episodes = evals.groupby(["pair", "seed", "task_id"])
    n_episodes = episodes.ngroups
    bad = evals[evals["status"] != "valid"]
    if len(bad):
        problems.append(f"{bad.groupby(['pair', 'seed', 'task_id']).ngroups} episode(s) with an invalid judge reply")
    scored = evals[evals["dimension"].isin(DIMENSIONS)]
    per_agent = scored.groupby(["pair", "seed", "task_id", "agent"])["score"].count()
    if (per_agent != len(DIMENSIONS)).any() or len(per_agent) != 2 * n_episodes:
        problems.append("not every agent of every episode has 7 scores")
    for dim, (lo, hi) in RANGES.items():
        s = scored.loc[scored["dimension"] == dim, "score"].astype(float)
        if ((s < lo) | (s > hi)).any():
            problems.append(f"{dim}: score out of [{lo}, {hi}]")
    partial = pd.read_parquet("results/summary/partial_correlation.parquet")
    unexplained = partial[partial["r"].isna() & (partial["note"].fillna("") == "")]
    if partial.empty or len(unexplained):
        problems.append(f"Table 1: {len(unexplained)} of {len(partial)} rows have neither r nor a note saying why")
    sens = pd.read_parquet("results/summary/sensitivity.parquet")
    if set(sens["analysis"]) != {"top_k", "no_clip", "sample_size", "sample_size_correlation", "persona_split"}:
        problems.append(f"sensitivity table holds analyses {sorted(set(sens['analysis']))}")
    surrogate = pd.read_parquet("results/summary/surrogate.parquet")
    want = len(robustness_pairs(cfg, "surrogate")) * 3 * len(cfg["analysis"]["surrogate"]["modes"]) * 2
    if len(surrogate) != want or surrogate["n_perm"].ne(cfg["analysis"]["surrogate"]["n_perm"]).any():
        problems.append(f"surrogate summary has {len(surrogate)} rows, expected {want}")
    if tom_pairs:  # Figure 11: every target of both distributions for each decoded model, each with a baseline
        tom = pd.read_parquet("results/summary/tom.parquet")
        want = sum(8 * len(set(pair)) for pair in tom_pairs)
        if len(tom) != want or tom["baseline"].isna().any() or tom["kl"].isna().any():
            problems.append(f"ToM summary has {len(tom)} rows, expected {want} (8 per pair and decoded model)")
    print(f"{len(stems)} figures, {n_episodes} judged episodes ({len(bad) // 14 if len(bad) else 0} invalid), "
          f"{len(per_agent)} agent scorings of 7 dimensions, Table 1 rows with r: {int(partial['r'].notna().sum())}")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
