"""What the known-answer run (config/synthetic.yaml) recovers against what was planted.

Run after `snakemake -c 2 --configfile config/synthetic.yaml`. Prints one line per
check and exits 1 when one fails. The recovered SyncR2 is compared with its
analytic value corrected for the ridge's finite training set (expected test R2
of p predictors fitted on n samples: R2 - (1 - R2) p / (n - p - 1)); the
tolerance is 3 split-seed SEs plus 0.03, because the split-seed SE sees neither
the draw of the simulated episodes nor the within-episode correlation of the
planted latent (see README, "The known-answer run").
"""

import sys

import pandas as pd

summary = pd.read_parquet("results/summary/synchrony.parquet")
truth = pd.read_parquet("results/summary/planted_truth.parquet")
corr = pd.read_parquet("results/summary/correlation.parquet")
sizes = pd.read_parquet("results/r2/S1__S2/experimental/AtoB.parquet")
n_train, p = int(sizes["n_train"].iloc[0]), 6
rows = summary[summary.direction != "combined"].merge(truth, on=["pair", "condition", "direction"],
                                                      suffixes=("", "_true"))
rows["expected"] = rows.syncr2_unclipped_true - (1 - rows.syncr2_unclipped_true) * p / (n_train - p - 1)
rows["gap"] = rows.syncr2_unclipped - rows.expected
rows["tolerance"] = 3 * rows.se_unclipped + 0.03
failures = []


def check(ok: bool, text: str) -> None:
    print(("ok   " if ok else "FAIL ") + text)
    if not ok:
        failures.append(text)


for r in rows.itertuples():
    check(abs(r.gap) <= r.tolerance, f"{r.pair} {r.condition} {r.direction}: recovered {r.syncr2_unclipped:.4f}, "
          f"planted {r.syncr2_unclipped_true:.4f} (expected at n_train={n_train}: {r.expected:.4f}), "
          f"SE {r.se_unclipped:.4f}")
combined = summary[summary.direction == "combined"].pivot(index="pair", columns="condition", values="syncr2_unclipped")
for pair, v in combined.iterrows():
    if truth.loc[truth.pair == pair, "coupling"].iloc[0] > 0.5:
        check(v.experimental > v.lag1 > v.lag2, f"{pair}: experimental {v.experimental:.4f} > lag1 {v.lag1:.4f} > lag2 {v.lag2:.4f}")
        check(v.experimental > v.passive, f"{pair}: experimental {v.experimental:.4f} > passive {v.passive:.4f}")
row = corr[corr.family == "all"].iloc[0]
check(row.r > 0.9 and row.p < 0.05, f"correlation of SyncR2 with planted performance: r = {row.r:.3f} (p = {row.p:.2g}), planted slope > 0")
null = summary[(summary.pair == "S3__S4") & (summary.direction != "combined")]
check(bool((null.syncr2 == 0).all()), f"no-synchrony pair S3__S4: clipped SyncR2 {sorted(null.syncr2.unique())}")

# the surrogate null: planted pairs beat every null, the no-synchrony pair beats none
surrogate = pd.read_parquet("results/summary/surrogate.parquet")
coupling = truth.groupby("pair")["coupling"].first()
for r in surrogate[(surrogate.score == "unclipped") & (surrogate.direction == "combined")].itertuples():
    planted = coupling[r.pair] > 0
    check((r.p_empirical < 0.05) if planted else (r.p_empirical > 0.05),
          f"surrogate {r.mode} {r.pair} (coupling {coupling[r.pair]}): real {r.real:.4f}, null {r.null_mean:.4f} "
          f"+- {r.null_sd:.4f}, p = {r.p_empirical:.3g} ({'< 0.05 expected' if planted else '> 0.05 expected'})")

# the sensitivity analyses: the correlation holds at every k and every filled size; a size the data
# cannot fill is recorded as insufficient, not dropped
sens = pd.read_parquet("results/summary/sensitivity.parquet")
family = sens[(sens.pair == "") & (sens.family == "all")]
for r in family[family.analysis == "top_k"].itertuples():
    check(r.r > 0.9, f"top-k k={r.setting} ({r.score}): r = {r.r:.3f}")
sized = family[family.analysis == "sample_size_correlation"]
for r in sized.itertuples():
    if r.setting == "12000":
        check(r.n == 0 and "insufficient" in r.note, f"size 12000 recorded as insufficient: {r.note[:80]}")
    else:
        check(r.r > 0.9, f"sample size {r.setting} ({r.score}): r = {r.r:.3f} over {r.n} pairs")
noclip = sens[(sens.analysis == "no_clip") & (sens.pair == "S3__S4") & (sens.direction == "four_way")]
by_score = noclip.set_index("score")["value"]
check(by_score["clipped"] == 0 and abs(by_score["unclipped"]) < 0.03,
      f"no clipping, S3__S4: clipped {by_score['clipped']:.4f}, unclipped {by_score['unclipped']:.4f}")
print(f"{len(failures)} failed of the checks above")
sys.exit(1 if failures else 0)
