"""Pair scores, per-family Pearson r (Figure 6) and partial correlations (Table 1)."""

import math

import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy import stats

from syncr2.analysis.correlation import (
    family_correlations,
    partial_correlations,
    partial_p,
    partial_r_closed_form,
    run_correlation,
)
from syncr2.analysis.pair_scores import pair_scores
from syncr2.core.settings import PairNaming, Statistics

ORDER = ["M1", "M2", "M3", "L2", "L3", "L3.2"]
FAMILIES = {"M1": "Mistral", "M2": "Mistral", "M3": "Mistral", "L2": "Llama", "L3": "Llama", "L3.2": "Llama"}
ABILITIES = {
    "ifeval": {"M1": 0.4487, "M2": 0.5496, "M3": 0.5465, "L2": 0.3986, "L3": 0.7408, "L3.2": 0.7393},
    "musr": {"M1": 0.0613, "M2": 0.0761, "M3": 0.0430, "L2": 0.0328, "L3": 0.0160, "L3.2": 0.0808},
}

# The authors' Figure 6 read by eye (docs/analyses.md, "Pearson r per family"): (model_a, model_b, performance, SyncR2).
PAPER_POINTS = [
    ("M1", "M1", 2.53, .387), ("M1", "M2", 2.81, .373), ("M1", "M3", 2.92, .459),
    ("M2", "M2", 3.08, .462), ("M2", "M3", 3.28, .488), ("M3", "M3", 3.35, .580),
    ("L2", "L2", 1.71, .321), ("L2", "L3.2", 2.35, .453), ("L2", "L3", 2.42, .498),
    ("L3.2", "L3.2", 3.10, .635), ("L3", "L3.2", 3.19, .679), ("L3", "L3", 3.27, .752),
    ("M1", "L2", 2.20, .343), ("M2", "L2", 2.37, .388), ("M3", "L2", 2.62, .473),
    ("M1", "L3.2", 2.68, .465), ("M1", "L3", 2.78, .540), ("M2", "L3", 3.22, .552),
    ("M2", "L3.2", 3.25, .480), ("M3", "L3.2", 3.30, .607), ("M3", "L3", 3.36, .622),
]


def paper_scores() -> pd.DataFrame:
    rows = [{"pair": f"{a}__{b}", "model_a": a, "model_b": b,
             "family": FAMILIES[a] if FAMILIES[a] == FAMILIES[b] else "Cross",
             "performance_averaged": x, "performance_one_order": x, "syncr2_four_way": y, "syncr2_atob": y}
            for a, b, x, y in PAPER_POINTS]
    return pd.DataFrame(rows)


def test_paper_figure6_correlations():
    corr = family_correlations(paper_scores()).set_index("family")
    assert list(corr.index) == ["Mistral", "Llama", "Cross", "all"]
    assert list(corr.n) == [6, 6, 9, 21]
    for fam, r_paper in (("Mistral", 0.878), ("Llama", 0.986), ("Cross", 0.887)):
        assert abs(corr.loc[fam, "r"] - r_paper) <= 0.002, (fam, corr.loc[fam, "r"])
    scores = paper_scores()
    for fam in ("Mistral", "Llama", "Cross"):
        sub = scores[scores.family == fam]
        ref = stats.pearsonr(sub.performance_averaged, sub.syncr2_four_way)
        assert corr.loc[fam, "r"] == pytest.approx(ref.statistic, abs=1e-12)
        assert corr.loc[fam, "p"] == pytest.approx(ref.pvalue, rel=1e-9)
    # the paper: Mistral p < 0.05, Cross and Llama p < 0.001
    assert corr.loc["Mistral", "p"] < 0.05 and corr.loc["Llama", "p"] < 0.001 and corr.loc["Cross", "p"] < 0.01
    assert (corr.note == "").all()


def test_small_and_flat_families_get_notes_not_numbers():
    scores = pd.DataFrame({"family": ["A", "A", "B", "B", "B"], "performance_averaged": [1, 2, 1, 1, 1],
                           "syncr2_four_way": [0.1, 0.2, 0.3, 0.4, 0.5]})
    corr = family_correlations(scores).set_index("family")
    assert math.isnan(corr.loc["A", "r"]) and "too few" in corr.loc["A", "note"]
    assert math.isnan(corr.loc["B", "p"]) and "no variance" in corr.loc["B", "note"]
    assert corr.loc["all", "n"] == 5 and np.isfinite(corr.loc["all", "r"])


def test_partial_correlation_against_pingouin_and_closed_form():
    rng = np.random.default_rng(3)
    scores = paper_scores()
    scores["performance_one_order"] = scores.performance_averaged + rng.normal(0, 0.1, len(scores))
    part = partial_correlations(scores, ABILITIES)
    assert list(part.columns[:8]) == ["family", "control", "n", "r", "p", "r_xy", "r_xz", "r_yz"]
    assert len(part) == 2 * 4
    for row in part.itertuples():
        sub = scores if row.family == "all" else scores[scores.family == row.family]
        z = [(ABILITIES[row.control][a] + ABILITIES[row.control][b]) / 2 for a, b in zip(sub.model_a, sub.model_b)]
        x, y = sub.performance_one_order.to_numpy(), sub.syncr2_atob.to_numpy()
        r_xy, r_xz, r_yz = (stats.pearsonr(u, v).statistic for u, v in ((x, y), (x, z), (y, z)))
        assert (row.r_xy, row.r_xz, row.r_yz) == pytest.approx((r_xy, r_xz, r_yz), abs=1e-12)
        assert row.r == pytest.approx(partial_r_closed_form(r_xy, r_xz, r_yz), abs=1e-10)
        ref = pingouin.partial_corr(data=pd.DataFrame({"x": x, "y": y, "z": z}), x="x", y="y", covar="z")
        assert row.r == pytest.approx(float(ref["r"].iloc[0]), abs=1e-12)
        # p from t with dof = n - 3, and pingouin's p agree
        dof = len(sub) - 3
        t = row.r * math.sqrt(dof / (1 - row.r**2))
        assert row.p == pytest.approx(2 * stats.t.sf(abs(t), dof), rel=1e-6)
        assert row.p_t == pytest.approx(row.p, rel=1e-6)
        assert row.n == len(sub) and row.note == ""


def test_partial_p_matches_paper_examples():
    # docs/analyses.md, "Partial correlation": n = 6, r = 0.81 -> p about 0.10; r = 0.27 -> p about 0.66
    assert partial_p(0.81, 6) == pytest.approx(0.10, abs=0.01)
    assert partial_p(0.27, 6) == pytest.approx(0.66, abs=0.01)


def test_partial_skips_small_families_and_names_missing_abilities():
    scores = paper_scores().iloc[[0, 1, 2, 6, 7, 12, 13, 14, 15]]  # 3 Mistral, 2 Llama, 4 Cross
    part = partial_correlations(scores, {"ifeval": ABILITIES["ifeval"]}).set_index("family")
    assert math.isnan(part.loc["Mistral", "r"]) and "skipped" in part.loc["Mistral", "note"]
    assert math.isnan(part.loc["Llama", "r"]) and part.loc["Llama", "n"] == 2
    assert np.isfinite(part.loc["Cross", "r"]) and part.loc["all", "n"] == 9
    with pytest.raises(ValueError, match="'L3.2'.*'musr'"):
        partial_correlations(paper_scores(), {"musr": {k: v for k, v in ABILITIES["musr"].items() if k != "L3.2"}})


def _inputs(models=("M1", "M2", "L2")):
    """A synchrony summary (ordered pairs) and a performance table (unordered pairs)."""
    rng = np.random.default_rng(0)
    sync, perf = [], []
    for i, a in enumerate(models):
        for b in models:
            for d in ("AtoB", "BtoA", "combined"):
                for cond in ("experimental", "passive"):
                    sync.append({"pair": f"{a}__{b}", "source_model": a, "target_model": b, "condition": cond,
                                 "direction": d, "syncr2": rng.uniform(), "syncr2_unclipped": 0.0, "se": 0.01})
        for b in models[i:]:
            fam = FAMILIES[a] if FAMILIES[a] == FAMILIES[b] else "Cross"
            for level in ("averaged", "one_order"):
                perf.append({"level": level, "pair": f"{a}__{b}", "model_a": a, "model_b": b, "family": fam,
                             "overall": rng.uniform(1, 4), "goal": 5.0, "n_valid": 10, "n_invalid": 0})
    for a in models:
        for b in models:
            perf.append({"level": "ordered", "pair": f"{a}__{b}", "model_a": a, "model_b": b, "family": "?",
                         "overall": -99.0, "goal": 0.0, "n_valid": 10, "n_invalid": 0})
    return pd.DataFrame(sync), pd.DataFrame(perf)


def test_pair_scores_four_way_and_atob():
    sync, perf = _inputs()
    scores = pair_scores(sync, perf, FAMILIES, ORDER)
    assert list(scores.pair) == ["M1__M1", "M1__M2", "M1__L2", "M2__M2", "M2__L2", "L2__L2"]
    assert list(scores.family) == ["Mistral", "Mistral", "Cross", "Mistral", "Cross", "Llama"]
    exp = sync[sync.condition == "experimental"].set_index(["pair", "direction"]).syncr2
    row = scores.set_index("pair").loc["M1__L2"]
    four = [exp["M1__L2", "AtoB"], exp["M1__L2", "BtoA"], exp["L2__M1", "AtoB"], exp["L2__M1", "BtoA"]]
    assert row.syncr2_four_way == pytest.approx(np.mean(four))
    assert row.syncr2_atob == pytest.approx((exp["M1__L2", "AtoB"] + exp["L2__M1", "AtoB"]) / 2)
    same = scores.set_index("pair").loc["M2__M2"]
    assert same.syncr2_four_way == pytest.approx((exp["M2__M2", "AtoB"] + exp["M2__M2", "BtoA"]) / 2)
    assert same.syncr2_atob == pytest.approx(exp["M2__M2", "AtoB"])
    p = perf.set_index(["level", "pair"]).overall
    assert row.performance_averaged == p["averaged", "M1__L2"]
    assert row.performance_one_order == p["one_order", "M1__L2"]


def test_pair_scores_missing_inputs_name_the_pair():
    sync, perf = _inputs()
    no_order = sync[~((sync.pair == "L2__M2") & (sync.direction == "BtoA"))]
    with pytest.raises(ValueError, match=r"pair M2__L2: missing experimental BtoA SyncR2 of order L2__M2"):
        pair_scores(no_order, perf, FAMILIES, ORDER)
    no_perf = perf[~((perf.pair == "M1__M2") & (perf.level == "one_order"))]
    with pytest.raises(ValueError, match=r"pair M1__M2: missing 'one_order' performance"):
        pair_scores(sync, no_perf, FAMILIES, ORDER)
    with pytest.raises(ValueError, match="'L2' is not in the configured model order"):
        pair_scores(sync, perf, FAMILIES, ["M1", "M2"])


def test_run_correlation_writes_parquets(tmp_path):
    sync, perf = _inputs(ORDER)
    sync.to_parquet(tmp_path / "synchrony.parquet")
    perf.to_parquet(tmp_path / "performance.parquet")
    paths = run_correlation(tmp_path / "synchrony.parquet", tmp_path / "performance.parquet",
                            PairNaming(FAMILIES, ORDER, {}, "Mistral"), Statistics("clipped", 3, 4, ABILITIES),
                            tmp_path / "out")
    assert [p.name for p in paths] == ["pair_scores.parquet", "correlation.parquet", "partial_correlation.parquet"]
    assert len(pd.read_parquet(paths[0])) == 21
    corr = pd.read_parquet(paths[1])
    assert list(corr.family) == ["Mistral", "Llama", "Cross", "all"] and list(corr.n) == [6, 6, 9, 21]
    assert len(pd.read_parquet(paths[2])) == 8
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_pair_scores_unclipped_and_one_order_only():
    """`score="unclipped"` reads syncr2_unclipped; a pair run in one order only uses that order (hand oracle)."""
    import pandas as _pd

    from syncr2.analysis.pair_scores import pair_scores as _pair_scores

    rows = []
    values = {("a", "b", "AtoB"): (0.0, -3.0), ("a", "b", "BtoA"): (0.0, -5.0),
              ("b", "a", "AtoB"): (0.1, -1.0), ("b", "a", "BtoA"): (0.0, -2.0),
              ("a", "a", "AtoB"): (0.2, -4.0), ("a", "a", "BtoA"): (0.3, -6.0)}
    for (m1, m2, d), (clipped, raw) in values.items():
        rows.append({"pair": f"{m1}__{m2}", "condition": "experimental", "direction": d,
                     "syncr2": clipped, "syncr2_unclipped": raw})
    summary = _pd.DataFrame(rows)
    perf = _pd.DataFrame([{"level": lvl, "pair": p, "overall": v} for p, v in (("a__b", 2.0), ("a__a", 3.0))
                          for lvl in ("averaged", "one_order")])
    fam = {"a": "F", "b": "F"}
    raw = _pair_scores(summary, perf, fam, ["a", "b"], score="unclipped").set_index("pair")
    assert raw.loc["a__b", "syncr2_four_way"] == (-3 - 5 - 1 - 2) / 4
    assert raw.loc["a__b", "syncr2_atob"] == (-3 - 1) / 2
    assert raw.loc["a__a", "syncr2_four_way"] == -5.0 and (raw["syncr2_score"] == "unclipped").all()
    clipped = _pair_scores(summary, perf, fam, ["a", "b"]).set_index("pair")
    assert clipped.loc["a__b", "syncr2_four_way"] == 0.1 / 4
    one_order = summary[summary["pair"] != "b__a"]
    only = _pair_scores(one_order, perf, fam, ["a", "b"], score="unclipped").set_index("pair")
    assert only.loc["a__b", "syncr2_four_way"] == -4.0 and only.loc["a__b", "orders"] == "a__b"
    with pytest.raises(ValueError, match="score must be one of"):
        _pair_scores(summary, perf, fam, ["a", "b"], score="raw")
