"""Figures: heatmap semantics (grey negatives, boxed best targets) and every file written."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from syncr2.report.figures import draw_heatmap, lag_of, make_all, pair_family
from syncr2.synchrony.r2table import write_r2_table


def test_heatmap_boxes_best_target_and_masks_negatives():
    grid = np.array([[0.1, 0.5, -0.2], [-0.3, -0.1, -0.4], [0.7, 0.2, 0.3], [0.0, 0.9, 0.8]])
    fig, ax = plt.subplots()
    im = draw_heatmap(ax, grid, "t")
    boxes = sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches)
    assert boxes == [(0, 1), (1, 1), (2, 0), (3, 1)]  # (source layer, its argmax target layer)
    shown = im.get_array()
    assert shown.shape == (3, 4)  # target layers on y, source layers on x
    assert np.array_equal(np.ma.getmaskarray(shown), (grid < 0).T)
    plt.close(fig)


def test_families_and_lags():
    fam = {"M1": "Mistral", "M2": "Mistral", "L3": "Llama"}
    assert pair_family("M1__M2", fam) == "Mistral"
    assert pair_family("M1__L3", fam) == "Cross"
    assert [lag_of(c) for c in ("experimental", "lag2", "passive")] == [0, 2, None]


def test_make_all_writes_every_figure(tmp_path):
    rng = np.random.default_rng(0)
    tables, rows = [], []
    for pair in ("a__a", "a__b", "b__b"):
        for cond, level in (("experimental", 0.6), ("passive", 0.3), ("lag1", 0.2), ("lag2", 0.1)):
            for direction in ("AtoB", "BtoA"):
                la, lb = (3, 2) if direction == "AtoB" else (2, 3)
                t = pd.DataFrame([
                    (s, a, b, level + rng.normal(0, 0.05), 80, 20)
                    for s in range(3) for a in range(la) for b in range(lb)
                ], columns=["split_seed", "layer_src", "layer_tgt", "r2", "n_train", "n_test"])
                path = tmp_path / "r2" / pair / cond / f"{direction}.parquet"
                tables.append(write_r2_table(t, path, pair=pair, condition=cond, direction=direction))
            rows.append((pair, cond, "combined", level, 0.01))
    summary = pd.DataFrame(rows, columns=["pair", "condition", "direction", "syncr2", "se"])
    summary.to_parquet(tmp_path / "summary.parquet")
    paths = make_all(tmp_path / "summary.parquet", tables, {"a": "A", "b": "B"}, tmp_path / "fig", tmp_path / "tab")
    names = {p.name for p in paths}
    for stem in ["fig2_heatmap_a__b_AtoB", "fig2_heatmap_a__b_BtoA", "fig3_conditions_b__b",
                 "fig4a_passive_by_family", "fig4b_lag"]:
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (tmp_path / "fig" / f"{stem}.png").stat().st_size > 5000
    md = (tmp_path / "tab" / "synchrony.md").read_text()
    assert "| pair | experimental | passive | lag1 | lag2 |" in md
    assert "| a__b | 0.6000 | 0.3000 | 0.2000 | 0.1000 |" in md


def test_all_negative_heatmap_spans_the_data_range(monkeypatch, tmp_path):
    """Every R2 < 0: no grey, the norm spans [min, max], distinct values get distinct colours."""
    from syncr2.report import figures
    from syncr2.report.figures import heatmap_figures, heatmap_scale

    grid = -np.array([[0.9, 0.5, 0.7], [0.3, 0.8, 0.6], [0.2, 0.4, 0.35], [0.15, 0.45, 0.1]])
    fig, ax = plt.subplots()
    im = draw_heatmap(ax, grid, "t")
    assert im.norm.vmin == grid.min() and im.norm.vmax == grid.max()
    assert not np.ma.getmaskarray(im.get_array()).any()  # nothing greyed out
    rgba = im.to_rgba(im.get_array())  # (L_tgt, L_src, 4), the colours actually drawn
    assert rgba.shape[:2] == (3, 4)
    assert len({tuple(c) for c in rgba.reshape(-1, 4)}) == grid.size  # 12 distinct values, 12 colours
    # ordered: a larger R2 maps to a larger position on the colormap
    pos = im.norm(grid.ravel())
    assert np.array_equal(np.argsort(pos), np.argsort(grid.ravel()))
    assert pos.min() == 0.0 and pos.max() == 1.0
    boxes = sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches)
    assert boxes == [(0, 1), (1, 0), (2, 0), (3, 2)]
    plt.close(fig)

    # a range over LOG_RANGE_RATIO: log scale of -R2, still spanning [min, max]
    wide = np.array([[-500.0, -50.0], [-5.0, -0.5]])
    scale = heatmap_scale(wide)
    assert scale.all_negative and scale.log and (scale.vmin, scale.vmax) == (-500.0, -0.5)
    assert np.allclose(scale.norm()(wide.ravel()), [0, 1 / 3, 2 / 3, 1])
    assert scale.colorbar_kwargs()["ticks"] == [-1.0, -10.0, -100.0]
    assert heatmap_scale(grid).label == "test $R^2$ (all < 0)"
    # mixed values keep 0 as the boundary: 0-based scale, negatives grey
    mixed = heatmap_scale(np.array([[-0.5, 0.2], [0.4, -0.1]]))
    assert not mixed.all_negative and (mixed.vmin, mixed.vmax) == (0.0, 0.4)

    # through heatmap_figures: the colorbar says so
    captured = []
    monkeypatch.setattr(figures, "_save", lambda fig, out_dir, stem: captured.append((stem, fig)) or [])
    t = pd.DataFrame([(s, a, b, grid[a, b] - 0.01 * s, 80, 20) for s in range(3) for a in range(4) for b in range(3)],
                     columns=["split_seed", "layer_src", "layer_tgt", "r2", "n_train", "n_test"])
    path = write_r2_table(t, tmp_path / "r2.parquet", pair="x__y", condition="experimental", direction="AtoB")
    heatmap_figures([path], tmp_path)
    (stem, fig), = captured
    assert stem == "fig2_heatmap_x__y_AtoB"
    cbar_axes = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert cbar_axes and "all < 0" in cbar_axes[0].get_ylabel()
    main_im = fig.axes[0].images[0]
    mean_grid = grid - 0.01
    assert main_im.norm.vmin == pytest.approx(mean_grid.min()) and main_im.norm.vmax == pytest.approx(mean_grid.max())
    plt.close(fig)


def _figure4_summary(rng):
    """Directional rows of all ordered pairs of four models (two families), plus combined rows."""
    models = ["M1", "M2", "L1", "L2"]
    rows = []
    for m1 in models:
        for m2 in models:
            for cond in ("experimental", "passive", "lag1", "lag2"):
                vals = rng.uniform(0.05, 0.6, size=2)
                ses = rng.uniform(0.005, 0.03, size=2)
                if (m1, m2, cond) in {("M1", "M2", "lag2"), ("M2", "M1", "lag2")}:
                    vals, ses = np.full(2, 0.01), np.full(2, 0.05)  # SE larger than the value
                for d, v, e in zip(("AtoB", "BtoA"), vals, ses):
                    rows.append((f"{m1}__{m2}", cond, d, v, e))
                rows.append((f"{m1}__{m2}", cond, "combined", vals.mean(), np.hypot(*ses) / 2))
    return pd.DataFrame(rows, columns=["pair", "condition", "direction", "syncr2", "se"])


def _brute_four_values(summary, m1, m2, cond):
    vals, ses = [], []
    for pair in (f"{m1}__{m2}", f"{m2}__{m1}"):
        for d in ("AtoB", "BtoA"):
            r = summary[(summary.pair == pair) & (summary.condition == cond) & (summary.direction == d)].iloc[0]
            vals.append(r.syncr2)
            ses.append(r.se)
    return sum(vals) / 4, sum(ses) / 4


def _segments(container):
    """(x, y_low, y_high) of every vertical error-bar segment of an ErrorbarContainer."""
    _data_line, _caps, barcols = container.lines
    return [(seg[0][0], min(seg[0][1], seg[1][1]), max(seg[0][1], seg[1][1])) for seg in barcols[0].get_segments()]


def test_figure4_numbers_and_error_bars():
    """4a: four-value pair means, std over pairs / sqrt(3 n) (ddof 0); 4b: mean of the four SEs; no bar below 0."""
    from syncr2.report.figures import draw_family_bars, draw_lag_lines, family_bar_stats, lag_line_stats

    summary = _figure4_summary(np.random.default_rng(4))
    families = {"M1": "Mistral", "M2": "Mistral", "L1": "Llama", "L2": "Llama"}
    fam_pairs = {"Mistral": [("M1", "M1"), ("M1", "M2"), ("M2", "M2")],
                 "Llama": [("L1", "L1"), ("L1", "L2"), ("L2", "L2")],
                 "Cross": [(a, b) for a in ("L1", "L2") for b in ("M1", "M2")]}

    stats = family_bar_stats(summary, families).set_index(["family", "condition"])
    for fam, pairs in fam_pairs.items():
        for cond in ("experimental", "passive"):
            vals = [_brute_four_values(summary, a, b, cond)[0] for a, b in pairs]
            mean = sum(vals) / len(vals)
            std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
            assert stats.loc[(fam, cond), "syncr2"] == pytest.approx(mean, abs=1e-12)
            assert stats.loc[(fam, cond), "se"] == pytest.approx(std / (3 * len(vals)) ** 0.5, abs=1e-12)
            assert stats.loc[(fam, cond), "n_pairs"] == len(pairs)

    lags = lag_line_stats(summary, families).set_index(["pair", "k"])
    assert len(lags) == 10 * 3  # 10 unordered pairs x k in {0, 1, 2}; passive is no lag
    for pairs in fam_pairs.values():
        for a, b in pairs:
            key = "__".join(sorted((a, b)))
            for cond, k in (("experimental", 0), ("lag1", 1), ("lag2", 2)):
                value, se = _brute_four_values(summary, a, b, cond)
                assert lags.loc[(key, k), "syncr2"] == pytest.approx(value, abs=1e-12)
                assert lags.loc[(key, k), "se"] == pytest.approx(se, abs=1e-12)
    assert lags.loc[("M1__M2", 2), "se"] == pytest.approx(0.05) and lags.loc[("M1__M2", 2), "syncr2"] == pytest.approx(0.01)

    # hand values: two pairs of four-value means 0.2 and 0.4 -> mean 0.3, std 0.1, SE 0.1 / sqrt(6)
    hand = pd.DataFrame([("a__b", "experimental", "AtoB", 0.2, 0.0), ("a__b", "experimental", "BtoA", 0.2, 0.0),
                         ("a__c", "experimental", "AtoB", 0.3, 0.0), ("a__c", "experimental", "BtoA", 0.5, 0.0)],
                        columns=["pair", "condition", "direction", "syncr2", "se"])
    h = family_bar_stats(hand, {"a": "F", "b": "F", "c": "F"}).iloc[0]
    assert h.syncr2 == pytest.approx(0.3) and h.se == pytest.approx(0.1 / 6 ** 0.5)

    # drawn artists: heights/centres as computed, lower ends clipped at 0 for values >= 0
    fig, ax = plt.subplots()
    bars = draw_family_bars(ax, family_bar_stats(summary, families))
    fams = sorted(fam_pairs)
    for bar, cond in zip(bars, ("experimental", "passive")):
        want = [stats.loc[(f, cond), "syncr2"] for f in fams]
        assert np.allclose([r.get_height() for r in bar.patches], want)
        segs = _segments(bar.errorbar)
        for (_x, lo, hi), v, f in zip(segs, want, fams):
            assert lo >= 0.0
            assert hi == pytest.approx(v + stats.loc[(f, cond), "se"])
            assert lo == pytest.approx(v - min(v, stats.loc[(f, cond), "se"]))
    plt.close(fig)

    fig, ax = plt.subplots()
    rows = lag_line_stats(summary, families)
    containers = draw_lag_lines(ax, rows[rows.family == "Mistral"])
    assert len(containers) == 3
    lows = []
    for cont, (key, grp) in zip(containers, rows[rows.family == "Mistral"].groupby("pair", sort=True)):
        for (x, lo, hi), (_i, r) in zip(_segments(cont), grp.sort_values("k").iterrows()):
            assert x == r.k
            assert hi == pytest.approx(r.syncr2 + r.se)
            assert lo == pytest.approx(max(0.0, r.syncr2 - r.se))
            lows.append(lo)
    assert min(lows) == pytest.approx(0.0)  # M1 & M2 at k = 2: 0.01 - 0.05 is clipped to 0
    assert all(lo >= 0.0 for lo in lows)
    plt.close(fig)


def test_negative_values_keep_symmetric_error_bars():
    """An unclipped (negative) SyncR2 is not floored: its error bar is symmetric."""
    from syncr2.report.figures import error_extents

    ext = error_extents(np.array([-0.2, 0.01, 0.3, 0.0]), np.array([0.05, 0.05, 0.05, 0.02]))
    assert np.allclose(ext, [[0.05, 0.01, 0.05, 0.0], [0.05, 0.05, 0.05, 0.02]])
