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
# the other similarity measures: each orders the planted pairs' conditions as SyncR2 does, grows with the
# coupling, and finds nothing in the no-synchrony pair (Procrustes has a positive floor at small n: not checked)
from scipy.stats import spearmanr  # noqa: E402

measures = pd.read_parquet("results/summary/measures.parquet")
both = measures[measures.direction == "combined"].pivot_table(index=["measure", "pair"], columns="condition",
                                                                 values="value")
for measure in ("cka", "rsa", "procrustes"):
    m = both.loc[measure]
    for pair, v in m.iterrows():
        if coupling[pair] > 0.5:
            check(v.experimental > v.passive > v.lag1 > v.lag2,
                  f"{measure} {pair}: experimental {v.experimental:.4f} > passive {v.passive:.4f} > lag1 {v.lag1:.4f} "
                  f"> lag2 {v.lag2:.4f}")
    rho = spearmanr(coupling[m.index], m.experimental).statistic
    check(rho >= 0.8, f"{measure}: Spearman rho of the experimental score with the planted coupling {rho:.3f} >= 0.8")
    if measure != "procrustes":
        check(abs(m.loc["S3__S4", "experimental"]) < 0.02,
              f"{measure} S3__S4 (coupling 0): {m.loc['S3__S4', 'experimental']:.4f}, |.| < 0.02")

# the lag profile: lags 0, 1, 2 are the experimental, lag1 and lag2 rows of the SyncR2 summary, exactly; the
# planted latent is shared within a round (agent 1's turn 2r, agent 2's turn 2r + 1), so A->B peaks at lag 0
# and B->A at lag -1; the no-synchrony pair stays inside its turn-rotation band
profile = pd.read_parquet("results/summary/lag_profile.parquet")
named = {0: "experimental", 1: "lag1", 2: "lag2"}
by_key = summary.set_index(["pair", "condition", "direction"])
same = [(r.value == by_key.loc[(r.pair, named[r.lag], r.direction),
                               "syncr2" if r.score == "clipped" else "syncr2_unclipped"])
        for r in profile[profile.lag.isin(named)].itertuples()]
check(all(same) and len(same) > 0, f"lag profile at lags 0, 1, 2 equals the SyncR2 summary: {sum(same)} of {len(same)} "
      "values identical")
unclipped = profile[profile.score == "unclipped"]
for (pair, direction), grp in unclipped.groupby(["pair", "direction"]):
    peak = int(grp.loc[grp.value.idxmax(), "lag"])
    at0 = grp[grp.lag == 0].iloc[0]
    if coupling[pair] >= 0.5:
        want = 0 if direction == "AtoB" else -1
        check(peak == want, f"lag profile {pair} {direction}: peak at lag {peak} (planted: {want})")
        check(at0.value > at0.null_hi, f"lag profile {pair} {direction}: lag 0 {at0.value:.4f} above the band "
              f"[{at0.null_lo:.4f}, {at0.null_hi:.4f}]")
    elif coupling[pair] == 0:
        check(at0.p_empirical >= 0.05, f"lag profile {pair} {direction} (coupling 0): lag 0 p = "
              f"{at0.p_empirical:.3g} >= 0.05")
print(f"{len(failures)} failed of the checks above")
sys.exit(1 if failures else 0)
