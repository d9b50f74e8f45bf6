"""Social figures and tables: files written, numbers in the Markdown, artists holding the data."""

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from syncr2.analysis.correlation import family_correlations, partial_correlations
from syncr2.report import social_figures as sf

sys.path.insert(0, str(Path(__file__).parent))
from test_correlation import ABILITIES, paper_scores


@pytest.fixture()
def no_close(monkeypatch):
    """Keep figures open after saving so the test can inspect their artists."""
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    yield
    monkeypatch.undo()
    plt.close("all")


def _rel_table() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for pair in ("a__a", "a__b", "b__b"):
        for seed in range(2):
            for code, name in ((0, "stranger"), (1, "know_by_name"), (3, "friend")):
                missing = code == 1 or (code == 0 and seed == 0)
                rows.append({"pair": pair, "direction": "AtoB", "mode": "paper", "split_seed": seed,
                             "subsample_seed": 0, "relationship": code, "relationship_name": name,
                             "n_test": 0 if missing else 12, "n_available": 0 if missing else 30, "n_tasks": 2,
                             "syncr2": np.nan if missing else rng.uniform(), "syncr2_unclipped": np.nan,
                             "status": "missing" if missing else "ok"})
    return pd.DataFrame(rows)


def test_fig6_points_line_and_titles(tmp_path, no_close):
    scores = paper_scores()
    scores = pd.concat([scores, pd.DataFrame([{"pair": "X1__X2", "model_a": "X1", "model_b": "X2", "family": "Tiny",
                                               "performance_averaged": 2.0, "performance_one_order": 2.0,
                                               "syncr2_four_way": 0.4, "syncr2_atob": 0.4}])], ignore_index=True)
    corr = family_correlations(scores)
    paths = sf.fig6_correlation(scores, corr, {"L3.2": "L3.2", "X1": "x1"}, tmp_path)
    assert sorted(p.name for p in paths) == ["fig6_correlation.pdf", "fig6_correlation.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    fig = plt.gcf()
    axes = {ax.get_title().split(":")[0]: ax for ax in fig.axes}
    assert set(axes) == {"Mistral", "Llama", "Cross", "Tiny"}
    for fam in ("Mistral", "Llama", "Cross"):
        ax = axes[fam]
        sub = scores[scores.family == fam]
        pts = ax.collections[0].get_offsets()
        assert sorted(map(tuple, np.asarray(pts))) == sorted(zip(sub.performance_averaged, sub.syncr2_four_way))
        (line,) = ax.get_lines()
        lx, ly = line.get_data()
        slope, intercept = np.polyfit(sub.performance_averaged, sub.syncr2_four_way, 1)
        assert (ly[1] - ly[0]) / (lx[1] - lx[0]) == pytest.approx(slope)
        assert ly[0] == pytest.approx(slope * lx[0] + intercept)
        r = corr.set_index("family").loc[fam, "r"]
        assert f"r = {r:.2f}" in ax.get_title()
        labels = {t.get_text() for t in ax.texts}
        assert labels == {a + b for a, b in zip(sub.model_a, sub.model_b)}
    assert axes["Tiny"].get_title() == "Tiny: r: n/a (n=1)" and not axes["Tiny"].get_lines()
    assert {t.get_text() for t in axes["Tiny"].texts} == {"x1X2"}


def test_fig5_marks_missing_categories(tmp_path, no_close):
    table = _rel_table()
    paths = sf.fig5_relationships(table, tmp_path)
    assert sorted(p.name for p in paths) == ["fig5_relationships.pdf", "fig5_relationships.png"]
    ax = plt.gcf().axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("stranger") and "absent in\n3/6 splits" in ticks[0]
    assert ticks[1] == "know by name\nmissing (n=0)"
    assert ticks[2] == "friend\nn=12"
    per_pair = sf.relationship_per_pair(table)
    friend = per_pair[per_pair.relationship == 3].syncr2.to_numpy()
    drawn = np.asarray(ax.collections[-1].get_offsets())[:, 1]
    np.testing.assert_allclose(np.sort(drawn), np.sort(friend))
    expected = table[(table.relationship == 3) & (table.pair == "a__b")].syncr2.mean()
    assert per_pair.set_index(["pair", "relationship"]).loc[("a__b", 3), "syncr2"] == pytest.approx(expected)


def test_tables_hold_the_numbers(tmp_path):
    scores = paper_scores()
    corr = family_correlations(scores)
    paths = sf.correlation_table(corr, tmp_path, scores)
    md = (tmp_path / "correlation.md").read_text()
    for row in corr.itertuples():
        assert f"| {row.family} | {row.n} | {row.r:.3f} | {row.p:.3g} |" in md
    assert "| M1__L3.2 |" in md
    assert pd.read_csv(paths[0]).r.to_numpy() == pytest.approx(corr.r.to_numpy())

    part = partial_correlations(scores, ABILITIES)
    csv, md_path = sf.table1_partial_correlation(part, tmp_path)
    assert csv.name == "table1_partial_correlation.csv" and md_path.name == "table1_partial_correlation.md"
    md = md_path.read_text()
    assert "## control: ifeval" in md and "## control: musr" in md
    for row in part.itertuples():
        assert f"| {row.family} | {row.n} | {row.r:.3f} | {row.p:.3g} | {row.r_xy:.3f} | {row.r_xz:.3f} |" in md
    back = pd.read_csv(csv)
    assert list(back.columns[:8]) == ["family", "control", "n", "r", "p", "r_xy", "r_xz", "r_yz"]

    perf = pd.DataFrame([
        {"level": "ordered", "pair": "a__b", "model_a": "a", "model_b": "b", "family": "F", "overall": 2.125,
         "goal": 6.5, "n_valid": 9, "n_invalid": 1, "overall_agent1": 2.0, "overall_agent2": 2.25},
        {"level": "averaged", "pair": "a__b", "model_a": "a", "model_b": "b", "family": "F", "overall": 2.5,
         "goal": 7.0, "n_valid": 18, "n_invalid": 2, "overall_agent1": np.nan, "overall_agent2": np.nan},
        {"level": "one_order", "pair": "a__b", "model_a": "a", "model_b": "b", "family": "F", "overall": 3.0,
         "goal": 7.5, "n_valid": 9, "n_invalid": 1, "overall_agent1": np.nan, "overall_agent2": np.nan},
    ])
    csv, md_path = sf.performance_tables(perf, tmp_path)
    md = md_path.read_text()
    assert "| pair | family | overall | goal | overall_agent1 | overall_agent2 | n_valid | n_invalid |" in md
    assert "| a__b | F | 2.125 | 6.500 | 2.000 | 2.250 | 9 | 1 |" in md
    assert "| a__b | F | 2.500 | 7.000 | 18 | 2 |" in md
    assert len(pd.read_csv(csv)) == 3
    assert not list(tmp_path.glob(".*tmp*"))


def test_make_social_from_analysis_outputs(tmp_path):
    scores = paper_scores()
    summary = tmp_path / "summary"
    summary.mkdir()
    scores.to_parquet(summary / "pair_scores.parquet")
    family_correlations(scores).to_parquet(summary / "correlation.parquet")
    partial_correlations(scores, ABILITIES).to_parquet(summary / "partial_correlation.parquet")
    _rel_table().to_parquet(summary / "relationships.parquet")
    paths = sf.make_social(summary, tmp_path / "figures", tmp_path / "tables")
    names = sorted(p.name for p in paths)
    assert names == sorted(["fig6_correlation.png", "fig6_correlation.pdf", "correlation.csv", "correlation.md",
                            "table1_partial_correlation.csv", "table1_partial_correlation.md",
                            "fig5_relationships.png", "fig5_relationships.pdf"])
    assert all(p.exists() for p in paths)
