"""Figures: heatmap semantics (grey negatives, boxed best targets) and every file written."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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
