"""The surrogate null: permuted-hat grids against brute-force refits, strata, p-values, planted signal."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from syncr2.analysis.surrogate import (
    DRAWS_COLUMNS,
    MODES,
    SHARED,
    SUMMARY_COLUMNS,
    SurrogateError,
    null_stats,
    part_permutations,
    permutation_rng,
    permute_within,
    read_surrogate_draws,
    read_surrogate_summary,
    run_surrogate,
    split_null,
    summarize_surrogate,
    surrogate_draws,
    write_surrogate_summary,
)
from syncr2.core.settings import Split, Surrogate
from syncr2.synchrony.datasets import ConditionDataset, build_dataset
from syncr2.synchrony.permuted_grids import permuted_r2_grids
from syncr2.synchrony.ridge import layer_pair_r2
from syncr2.synchrony.sync import sync_r2
from syncr2.synchrony.ridge import LayerStreams
from syncr2.synchrony.synthetic import SyntheticSpec, write_synthetic_shards

pytestmark = pytest.mark.usefixtures("one_thread")


def sklearn_grid(X, Y, train, test, alpha):
    out = np.empty((X.shape[1], Y.shape[1]))
    for a in range(X.shape[1]):
        for b in range(Y.shape[1]):
            model = Ridge(alpha=alpha).fit(X[train, a], Y[train, b])
            out[a, b] = r2_score(Y[test, b], model.predict(X[test, a]))
    return out


def physically_permuted(Y, train, test, p_tr, p_te):
    """Targets with train row train[i] <- train[p_tr[i]] and test row test[k] <- test[p_te[k]]."""
    out = Y.copy()
    out[train] = Y[train[p_tr]]
    out[test] = Y[test[p_te]]
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    spec = SyntheticSpec(n_tasks=60, seeds=(0, 1), n_turns=8, rho=0.6)
    return write_synthetic_shards(spec, tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def no_signal(tmp_path_factory):
    # three seeds, so pseudo_seed has two derangements (3-cycles) per stratum, not one
    spec = SyntheticSpec(n_tasks=40, seeds=(0, 1, 2), n_turns=8, weight_seed=99)
    spec.loadings_b = [np.zeros_like(B) for B in spec.loadings_b]  # agent 2 reads only its own noise
    return write_synthetic_shards(spec, tmp_path_factory.mktemp("nosignal"))


# ----------------------------------------------------------------------------- (a) grids vs refits


@pytest.mark.parametrize("n,da,db", [(48, 5, 4), (40, 45, 6)])  # primal and dual hat matrices
def test_null_grids_equal_sklearn_on_physically_permuted_targets(n, da, db):
    rng = np.random.default_rng(n + da)
    X = rng.normal(size=(n, 2, da)) * rng.uniform(0.5, 2, size=(1, 2, da)) + 1.0
    Y = np.stack([X[:, b % 2, :db] * (0.5 + b) + rng.normal(size=(n, db)) + 3.0 for b in range(3)], axis=1)
    Y[:, 1, 0] = 2.5  # a constant target dimension: sklearn's rule must survive the permutations
    order = rng.permutation(n)
    train, test = order[: int(0.7 * n)], order[int(0.7 * n):]
    R = 4
    p_tr = np.stack([rng.permutation(len(train)) for _ in range(R)])
    p_te = np.stack([rng.permutation(len(test)) for _ in range(R)])
    for alpha in (0.1, 2.0):
        real, null = permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], 2, 3), train, test, p_tr, p_te,
                                       alpha=alpha, device="cpu", chunk_bytes=1)  # chunk_bytes=1: one draw per chunk
        assert null.shape == (R, 2, 3)
        assert np.abs(real - sklearn_grid(X, Y, train, test, alpha)).max() <= 1e-8
        for r in range(R):
            ref = sklearn_grid(X, physically_permuted(Y, train, test, p_tr[r], p_te[r]), train, test, alpha)
            assert np.abs(null[r] - ref).max() <= 1e-8
    # the permutations really change the scores (the planted signal is destroyed)
    assert (null.max(0) < real - 0.2).any()
    # one chunk of all draws gives the same numbers as one draw per chunk
    _, again = permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], 2, 3), train, test, p_tr, p_te, alpha=2.0)
    assert np.abs(again - null).max() <= 1e-12
    # gather indices rebuilt per source layer (they do not fit the index budget): same numbers
    _, rebuilt = permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], 2, 3), train, test, p_tr, p_te,
                                   alpha=2.0, chunk_bytes=1, index_bytes=0)
    assert np.abs(rebuilt - null).max() <= 1e-12


def test_permuted_grids_reject_bad_permutations():
    X = np.random.default_rng(0).normal(size=(12, 1, 2))
    train, test = np.arange(8), np.arange(8, 12)
    good_tr, good_te = np.arange(8)[None], np.arange(4)[None]
    with pytest.raises(ValueError, match="train_perms must be a permutation|every row of train_perms"):
        permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: X[:, b], 1, 1), train, test, np.zeros((1, 8), int), good_te)
    with pytest.raises(ValueError, match=r"test_perms must have shape \(1, 4\)"):
        permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: X[:, b], 1, 1), train, test, good_tr, np.arange(5)[None])


def test_split_null_equals_engine_on_permuted_dataset(planted):
    """Every mode's null grids on a real dataset split = the engine rerun on physically permuted targets."""
    ds = build_dataset(planted, "experimental", "AtoB")
    sp = split_null(ds, size=200, split_seed=1, modes=list(MODES), n_perm=2, seed=5, device="cpu")
    used = np.concatenate([sp.train, sp.test])
    X = np.stack([ds.load_source(a, used) for a in range(ds.source.n_layers)], axis=1).astype(np.float64)
    Y = np.stack([ds.load_target(b, used) for b in range(ds.target.n_layers)], axis=1).astype(np.float64)
    tr, te = np.arange(len(sp.train)), np.arange(len(sp.train), len(used))
    assert np.abs(sp.real - layer_pair_r2(X, Y, tr, te, device="cpu")).max() <= 1e-8
    for mode in MODES:
        assert sp.null[mode].shape == (2, 3, 2)
        for r in range(2):
            Yp = physically_permuted(Y, tr, te, sp.train_perms[mode][r], sp.test_perms[mode][r])
            assert np.abs(sp.null[mode][r] - layer_pair_r2(X, Yp, tr, te, device="cpu")).max() <= 1e-8
    # draw r of the table = sync_r2 over the split-seed cube of the r-th grids of each split seed
    other = split_null(ds, size=200, split_seed=3, modes=list(MODES), n_perm=2, seed=5)
    draws = surrogate_draws(ds, 200, [1, 3], list(MODES), n_perm=2, seed=5).set_index(["mode", "perm"])
    for mode in MODES:
        for r in range(2):
            cube = np.stack([sp.null[mode][r], other.null[mode][r]])
            assert draws.loc[(mode, r), "syncr2"] == pytest.approx(sync_r2(cube).value, abs=1e-12)
            assert draws.loc[(mode, r), "syncr2_unclipped"] == pytest.approx(sync_r2(cube, clip=False).value, abs=1e-12)
    real = np.stack([sp.real, other.real])
    assert (draws.real_syncr2_unclipped == sync_r2(real, clip=False).value).all()
    # reproducible from the seed tuple, and a draw does not depend on the other modes run with it
    alone = split_null(ds, size=200, split_seed=1, modes=["pseudo_seed"], n_perm=2, seed=5)
    assert np.array_equal(alone.train_perms["pseudo_seed"], sp.train_perms["pseudo_seed"])
    assert np.abs(alone.null["pseudo_seed"] - sp.null["pseudo_seed"]).max() <= 1e-12


# ----------------------------------------------------------------------------- (b) strata and split


def test_permute_within_keeps_strata_and_deranges():
    codes = np.array([0, 0, 1, 2, 2, 2, 3, 1, 4, 4, 4, 4, 0])  # stratum 3 holds one row
    perms = permute_within(codes, 500, np.random.default_rng(0), derange=True)
    rows = np.arange(codes.size)
    assert all(np.array_equal(np.sort(p), rows) for p in perms)
    assert (codes[perms] == codes).all()
    fixed = perms == rows
    assert not fixed[:, codes != 3].any()  # no fixed point in strata of >= 2 rows
    assert fixed[:, codes == 3].all()  # the lone row stays
    # uniform over the two derangements of a 3-row stratum and the 9 of a 4-row one
    _, counts3 = np.unique(perms[:, codes == 2], axis=0, return_counts=True)
    _, counts4 = np.unique(perms[:, codes == 4], axis=0, return_counts=True)
    assert len(counts3) == 2 and len(counts4) == 9 and counts4.min() > 25
    shuffled = permute_within(codes, 500, np.random.default_rng(0), derange=False)
    assert (codes[shuffled] == codes).all() and (shuffled == rows).any()  # plain shuffles keep some rows by chance
    with pytest.raises(SurrogateError, match="n_perm"):
        permute_within(codes, 0, np.random.default_rng(0), derange=True)


def test_modes_move_targets_within_part_and_stratum(planted):
    ds = build_dataset(planted, "experimental", "AtoB")
    # drop rows so that some strata hold a single row (a short episode, a lone seed)
    keep = ~((ds.pairs.task_id == 3) & (ds.pairs.seed == 1) & (ds.pairs.src_turn >= 2))
    keep &= ~((ds.pairs.task_id == 7) & (ds.pairs.src_turn == 6) & (ds.pairs.seed == 0))
    ds = ConditionDataset(ds.condition, ds.direction, ds.pairs[keep].reset_index(drop=True), ds.source, ds.target)
    pairs = ds.pairs
    seen_fixed = {}
    for split_seed in (0, 1):
        sp = split_null(ds, size=300, split_seed=split_seed, modes=list(MODES), n_perm=6, seed=2)
        assert not set(sp.train) & set(sp.test)
        for mode, (cols, derange) in MODES.items():
            n_fixed = 0
            for part, perms in ((sp.train, sp.train_perms[mode]), (sp.test, sp.test_perms[mode])):
                own = pairs.iloc[part].reset_index(drop=True)
                size = own.groupby(list(cols))[cols[0]].transform("size").to_numpy()
                for p in perms:
                    src, tgt = own, own.iloc[p].reset_index(drop=True)  # tgt row i: whose target row i gets
                    # global indices of the chosen targets stay inside this part of the split
                    assert set(part[p]) == set(part)
                    for c in cols:
                        assert (src[c].to_numpy() == tgt[c].to_numpy()).all(), (mode, c)
                    moved = p != np.arange(len(p))
                    if derange:
                        assert moved[size >= 2].all(), mode
                    assert not moved[size == 1].any()
                    if mode == "pseudo_task":
                        assert (src.task_id[moved] != tgt.task_id[moved]).all()
                    if mode == "pseudo_seed":
                        assert (src.task_id == tgt.task_id).all() and (src.seed[moved] != tgt.seed[moved]).all()
                    if mode == "turn_rotation":  # one shift per episode, cyclic in source-turn order
                        for _, ep in src.assign(k=np.arange(len(src))).groupby(["task_id", "seed"]):
                            ordered = ep.sort_values("src_turn").k.to_numpy()
                            m = len(ordered)
                            if m >= 2:
                                shift = int(np.flatnonzero(ordered == p[ordered[0]])[0])
                                assert 0 <= shift < m
                                assert (p[ordered] == ordered[(np.arange(m) + shift) % m]).all()
                n_fixed += int((size == 1).sum())
            assert sp.n_fixed[mode] == n_fixed
            seen_fixed[mode] = seen_fixed.get(mode, 0) + n_fixed
    assert seen_fixed["pseudo_seed"] > 0  # the dropped rows left lone rows behind, and they were counted
    # pseudo_seed with one seed: a clear error, or left out on request
    one_seed = ConditionDataset(ds.condition, ds.direction, pairs[pairs.seed == 0].reset_index(drop=True),
                                ds.source, ds.target)
    with pytest.raises(SurrogateError, match="pseudo_seed needs >= 2 seeds"):
        surrogate_draws(one_seed, 150, [0], ["pseudo_seed"], n_perm=2)
    draws = surrogate_draws(one_seed, 150, [0], ["pseudo_seed", "shuffle_within"], n_perm=2, skip_inapplicable=True)
    assert set(draws["mode"]) == {"shuffle_within"}
    with pytest.raises(SurrogateError, match="unknown surrogate mode 'pseudo'"):
        surrogate_draws(ds, 150, [0], ["pseudo"], n_perm=2)
    with pytest.raises(SurrogateError, match="seed must be >= 0"):
        permutation_rng(-1, 0, "pseudo_task")


def test_part_permutations_count_unmoved_rows():
    part = pd.DataFrame({"task_id": [0, 0, 0, 1, 2, 2], "seed": [0] * 6, "src_turn": [0, 2, 4, 0, 0, 2]})
    res = part_permutations(part, "shuffle_within", 50, np.random.default_rng(3))
    assert res.n_fixed == 1  # task 1 has one row
    assert np.array_equal(res.n_unmoved, (res.perms == np.arange(6)).sum(1))
    assert (res.n_unmoved >= 1).all() and (res.n_unmoved > 1).any()


# ----------------------------------------------------------------------------- (c) planted vs no signal


def test_planted_signal_is_significant_for_every_mode(planted):
    ds = build_dataset(planted, "experimental", "AtoB")
    draws = surrogate_draws(ds, size=400, split_seeds=[0, 1], modes=list(MODES), n_perm=39, seed=0)
    assert list(draws.columns) == list(DRAWS_COLUMNS) and len(draws) == len(MODES) * 39
    summary = summarize_surrogate(draws)
    for mode in MODES:
        for score in ("clipped", "unclipped"):
            row = summary[(summary["mode"] == mode) & (summary.score == score)].iloc[0]
            assert row.p_empirical == pytest.approx(1 / 40), (mode, score)
            assert row.excess > 0.1, (mode, score)
            if row.null_sd > 0:
                assert row.z > 5, (mode, score, row.z)
            else:  # clipped nulls all floored at 0, or a single surrogate: no z, and the note says why
                assert math.isnan(row.z) and row.n_distinct == 1 and "sd is 0" in row.note
    # two seeds: pseudo_seed's only derangement is the swap, so every draw is the same surrogate
    seed_rows = summary[summary["mode"] == "pseudo_seed"]
    assert (seed_rows.n_distinct == 1).all() and (seed_rows.null_sd == 0).all()
    assert summary[(summary["mode"] == "pseudo_task") & (summary.score == "unclipped")].z.iloc[0] > 5
    assert draws[draws["mode"] == "pseudo_task"].syncr2_unclipped.nunique() == 39
    # the real value is the plain SyncR2 of the split-seed cube
    from syncr2.synchrony.r2table import compute_r2_table, r2_cube

    cube = r2_cube(compute_r2_table(ds, 400, [0, 1], progress=False))
    assert draws.real_syncr2.iloc[0] == pytest.approx(sync_r2(cube).value, abs=1e-10)
    assert draws.real_syncr2_unclipped.iloc[0] == pytest.approx(sync_r2(cube, clip=False).value, abs=1e-10)


def test_no_signal_is_not_significant(no_signal):
    ds = build_dataset(no_signal, "experimental", "AtoB")
    draws = surrogate_draws(ds, size=400, split_seeds=[0, 1], modes=list(MODES), n_perm=39, seed=0)
    summary = summarize_surrogate(draws)
    unclipped = summary[summary.score == "unclipped"]
    assert len(unclipped) == len(MODES)
    # One null dataset gives p <= 0.05 in some mode now and then (the modes share one real value):
    # how often is a calibration question, asked of many datasets, not of one. What one dataset
    # must show: the real score sits inside its null (|z| < 3, a 0.3 % event per mode) and is no fit.
    assert (unclipped.z.abs() < 3).all(), unclipped
    assert (unclipped.real < 0.05).all()
    assert (unclipped.n_distinct == 39).all()


# ----------------------------------------------------------------------------- (d) p, z, summary


def test_null_stats_by_hand():
    s = null_stats(0.5, np.array([0.1, 0.5, 0.7, 0.2]))
    # mean 0.375; squared deviations .075625 + .015625 + .105625 + .030625 = .2275; sd = sqrt(.2275 / 3)
    assert s["null_mean"] == pytest.approx(0.375)
    assert s["null_sd"] == pytest.approx(0.2753785273643051)
    assert s["z"] == pytest.approx(0.125 / 0.2753785273643051)
    assert s["p_empirical"] == pytest.approx(3 / 5)  # 1 + #{0.5, 0.7} over 4 + 1
    assert s["excess"] == pytest.approx(0.125) and s["n_perm"] == 4 and s["note"] == ""
    zeros = null_stats(0.0, np.zeros(9))  # clipped nulls all floored at 0, real floored too
    assert math.isnan(zeros["z"]) and "sd is 0" in zeros["note"] and zeros["p_empirical"] == 1.0
    above = null_stats(0.3, np.zeros(9))
    assert math.isnan(above["z"]) and above["p_empirical"] == pytest.approx(0.1)  # the smallest p, 1 / (R + 1)


def hand_draws(direction, real, nulls, real_u, nulls_u, fixed=0):
    n = len(nulls)
    return pd.DataFrame({
        "pair": "m1__m2", "condition": "experimental", "direction": direction, "source_model": "m1",
        "target_model": "m2", "mode": "pseudo_task", "perm": np.arange(n), "syncr2": nulls,
        "syncr2_unclipped": nulls_u, "real_syncr2": real, "real_syncr2_unclipped": real_u, "n_rows": 100,
        "n_fixed_rows": fixed, "n_unmoved_rows": fixed, "n_perm": n, "n_split_seeds": 3, "size": 80,
        "test_fraction": 0.2, "alpha": 0.1, "seed": 0,
    })


def test_summary_by_hand_and_round_trip(tmp_path):
    ab = hand_draws("AtoB", 0.2, [0.0, 0.0, 0.0], -0.1, [-0.3, -0.1, -0.2], fixed=4)
    ba = hand_draws("BtoA", 0.4, [0.0, 0.1, 0.5], 0.4, [0.0, 0.1, 0.5])
    summary = summarize_surrogate(pd.concat([ba, ab]))
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(summary.direction) == ["AtoB"] * 2 + ["BtoA"] * 2 + ["combined"] * 2
    row = summary.set_index(["direction", "score"])
    assert row.loc[("AtoB", "clipped"), "p_empirical"] == pytest.approx(1 / 4)
    assert math.isnan(row.loc[("AtoB", "clipped"), "z"]) and "sd is 0" in row.loc[("AtoB", "clipped"), "note"]
    # unclipped A->B: real -0.1, nulls -0.3 -0.1 -0.2: mean -0.2, sd 0.1, z 1, p (1 + 1) / 4
    assert row.loc[("AtoB", "unclipped"), "z"] == pytest.approx(1.0)
    assert row.loc[("AtoB", "unclipped"), "p_empirical"] == pytest.approx(0.5)
    assert row.loc[("AtoB", "unclipped"), "n_fixed_rows"] == 4
    # combined: draws (0, .05, .25) against real 0.3 (clipped); (-.15, 0, .15) against .15 (unclipped),
    # where the tie .15 (computed as 0.15 and 0.15000000000000002) counts as >= real
    comb = row.loc[("combined", "clipped")]
    assert comb.real == pytest.approx(0.3) and comb.null_mean == pytest.approx(0.1) and comb.p_empirical == 0.25
    comb_u = row.loc[("combined", "unclipped")]
    assert comb_u.p_empirical == pytest.approx(0.5) and comb_u.z == pytest.approx(0.15 / 0.15)
    assert comb.n_fixed_rows == 4 and comb.n_rows == 200
    path = write_surrogate_summary(summary, tmp_path / "summary" / "surrogate.parquet")
    back = read_surrogate_summary(path)
    pd.testing.assert_frame_equal(back, summary)
    assert not list(path.parent.glob(".*tmp*"))
    bad = tmp_path / "bad.parquet"
    summary.drop(columns=["z"]).to_parquet(bad, index=False)
    with pytest.raises(SurrogateError, match="bad.parquet: surrogate summary lacks column.*z"):
        read_surrogate_summary(bad)


def test_run_surrogate_writes_draws_and_figure(planted, tmp_path):
    out = tmp_path / "surrogate" / "p__q_experimental_BtoA.parquet"
    draws = run_surrogate(planted, "experimental", "BtoA", Split(200, 0.2, [0, 2]),
                          Surrogate(["pseudo_task", "shuffle_within"], n_perm=5, seed=3), out, pair="p__q",
                          device="cpu")
    back = read_surrogate_draws(out)
    pd.testing.assert_frame_equal(back, draws)
    assert set(back.pair) == {"p__q"} and set(back.direction) == {"BtoA"} and len(back) == 10
    assert back.source_model.iloc[0] == "synth-b" and back.n_split_seeds.iloc[0] == 2
    # same seed, same draws; another seed, other draws
    again = surrogate_draws(build_dataset(planted, "experimental", "BtoA"), 200, [0, 2],
                            ["pseudo_task", "shuffle_within"], n_perm=5, seed=3)
    np.testing.assert_array_equal(again.syncr2_unclipped.to_numpy(), back.syncr2_unclipped.to_numpy())
    other = surrogate_draws(build_dataset(planted, "experimental", "BtoA"), 200, [0, 2], ["pseudo_task"],
                            n_perm=5, seed=4)
    assert not np.allclose(other.syncr2_unclipped, back[back["mode"] == "pseudo_task"].syncr2_unclipped)

    from syncr2.report.surrogate_figure import surrogate_figure

    paths = surrogate_figure(back, tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_rotate_within_against_a_loop():
    from syncr2.analysis.surrogate import rotate_within

    codes = np.array([0, 1, 0, 0, 1, 2, 0])
    order = np.array([3, 1, 0, 2, 0, 9, 1])
    perms = rotate_within(codes, order, 50, np.random.default_rng(0))
    for p in perms:
        for c in np.unique(codes):
            rows = np.flatnonzero(codes == c)
            rows = rows[np.argsort(order[rows])]
            m = len(rows)
            if m == 1:
                assert p[rows[0]] == rows[0]
                continue
            got = {int(p[r]) for r in rows}
            assert got == set(rows.tolist())
            shifts = {(list(rows).index(p[r]) - k) % m for k, r in enumerate(rows)}
            assert len(shifts) == 1  # one rotation of the whole episode
    # all m shifts of the 4-row episode occur, the identity included (the rotation group: an exact test)
    ep = np.flatnonzero(codes == 0)[np.argsort(order[codes == 0])]
    assert {(list(ep).index(p[ep[0]])) for p in perms} == {0, 1, 2, 3}


def test_shared_modes_relabel_the_dataset_once_for_all_split_seeds(planted):
    """A shared mode's draw r gives every row the SAME target under every split seed (one relabelling of
    the dataset), so pooling split seeds compares like with like; pseudo_task is drawn per split seed."""
    ds = build_dataset(planted, "experimental", "AtoB")
    splits = [split_null(ds, size=200, split_seed=s, modes=list(MODES), n_perm=3, seed=4) for s in (0, 1, 2)]
    for mode in SHARED:
        chosen: dict[tuple[int, int], set[int]] = {}
        for sp in splits:
            for rows, perms in ((sp.train, sp.train_perms[mode]), (sp.test, sp.test_perms[mode])):
                for r in range(3):
                    for i, j in zip(rows, rows[perms[r]]):
                        chosen.setdefault((r, int(i)), set()).add(int(j))
        assert all(len(v) == 1 for v in chosen.values()), mode
        assert sum(len(sp.train) + len(sp.test) for sp in splits) > len({i for _, i in chosen})  # rows overlap
    assert "pseudo_task" not in SHARED
