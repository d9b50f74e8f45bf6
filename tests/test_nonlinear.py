"""The MLP maps of Table 5 against independent oracles.

(a) a planted nonlinear map that ridge cannot see and the MLP can; (b) the
batched training against one plain ``nn.Sequential`` + ``torch.optim.AdamW``
per target layer; (c) layer subsets and chunks against the full grid; (d) the
R2 table against the readers, SyncR2 and scikit-learn's ``r2_score``.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from syncr2.synchrony.mlp_maps import (
    MLP_DEFAULTS,
    compute_mlp_r2_table,
    init_seed,
    mlp_pair_r2,
    mlp_pair_r2_streamed,
    order_seed,
    r2_uniform,
    train_mlp_stack,
)
from syncr2.core.settings import MLP, Split
from syncr2.synchrony.r2_variants import run_r2_variant
from syncr2.synchrony.datasets import build_dataset, fixed_size_split
from syncr2.synchrony.ridge import LayerStreams
from syncr2.synchrony.r2table import R2_COLUMNS, r2_cube, r2_cube_layers, read_r2_table
from syncr2.synchrony.sync import sync_r2
from syncr2.synchrony.synthetic import SyntheticSpec, write_synthetic_shards

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"hidden": 8, "lr": 1e-2, "weight_decay": 0.1, "epochs": 4, "batch_size": 32}


def test_paper_defaults():
    assert MLP_DEFAULTS == {"hidden": 512, "lr": 1e-4, "weight_decay": 0.1, "epochs": 200, "batch_size": 128}
    import inspect

    for fn in (train_mlp_stack, mlp_pair_r2_streamed, compute_mlp_r2_table):
        assert inspect.signature(fn).parameters["mlp"].default == MLP(), fn.__name__


def test_planted_nonlinear_map_ridge_blind_mlp_sees():
    rng = np.random.default_rng(0)
    n, da, db = 800, 4, 3
    x = rng.normal(size=(n, da))
    y = np.abs(x @ rng.normal(size=(da, db))) + 0.05 * rng.normal(size=(n, db))
    train, test = np.arange(600), np.arange(600, n)
    ridge = r2_score(y[test], Ridge(alpha=0.1).fit(x[train], y[train]).predict(x[test]))
    assert ridge < 0.1
    grid = mlp_pair_r2(x[:, None], y[:, None], train, test, hidden=32, lr=1e-2, epochs=60,
                       batch_size=64, device="cpu")
    assert grid.shape == (1, 1)
    assert grid[0, 0] > 0.5, grid


def oracle_one_layer(x, y, layer_src, layer_tgt, seed, hidden, lr, weight_decay, epochs, batch_size):
    """One target layer alone, plain torch modules, init and order re-derived from the documented rule."""
    d_in, d_out = x.shape[1], y.shape[1]
    gen = torch.Generator().manual_seed(init_seed(seed, layer_src, layer_tgt))
    w1 = (torch.rand((d_in, hidden), generator=gen) * 2 - 1) / np.sqrt(d_in)
    b1 = (torch.rand((hidden,), generator=gen) * 2 - 1) / np.sqrt(d_in)
    w2 = (torch.rand((hidden, d_out), generator=gen) * 2 - 1) / np.sqrt(hidden)
    b2 = (torch.rand((d_out,), generator=gen) * 2 - 1) / np.sqrt(hidden)
    net = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d_out))
    with torch.no_grad():
        net[0].weight.copy_(w1.T)
        net[0].bias.copy_(b1)
        net[2].weight.copy_(w2.T)
        net[2].bias.copy_(b2)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    order_gen = torch.Generator().manual_seed(order_seed(seed, layer_src))
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=order_gen)
        for start in range(0, len(xt), batch_size):
            rows = perm[start:start + batch_size]
            loss = torch.nn.functional.mse_loss(net(xt[rows]), yt[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def test_batched_equals_each_target_layer_alone():
    rng = np.random.default_rng(1)
    n, da, db, layers_tgt, layer_src = 100, 5, 4, (3, 0, 2), 1
    x = rng.normal(size=(n, da)).astype(np.float32)
    y = np.stack([np.tanh(x @ rng.normal(size=(da, db))) * (b + 1) + 0.5 for b in range(3)]).astype(np.float32)
    x_new = rng.normal(size=(30, da)).astype(np.float32)
    stack = train_mlp_stack(x, y, layer_src, layers_tgt, MLP(seed=5, **FAST), device="cpu")
    for i, b in enumerate(layers_tgt):
        net = oracle_one_layer(x, y[i], layer_src, b, seed=5, **FAST)
        with torch.no_grad():
            ref = net(torch.as_tensor(x_new)).numpy()
            ref_w1 = net[0].weight.T.numpy()
        assert np.abs(stack.predict_layer(x_new, i).numpy() - ref).max() <= 1e-5
        assert np.abs(stack.w1[i].numpy() - ref_w1).max() <= 1e-5
        assert np.abs(stack.predict(x_new)[i].numpy() - ref).max() <= 1e-5
    # training moved the weights away from the shared init (the test is not vacuous)
    pred = stack.predict(x_new).numpy()
    assert np.abs(pred[0] - pred[1]).max() > 0.1


def make_grid_data(seed=2, n=90, la=3, da=5, lb=4, db=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, la, da))
    Y = np.stack([np.abs(X[:, b % la] @ rng.normal(size=(da, db))) + rng.normal(size=(n, db)) for b in range(lb)], 1)
    return X, Y


def test_layer_subset_and_chunks_equal_full_grid():
    X, Y = make_grid_data()
    train, test = np.arange(70), np.arange(70, 90)
    full = mlp_pair_r2(X, Y, train, test, device="cpu", **FAST)
    assert full.shape == (3, 4) and np.isfinite(full).all()
    sub = mlp_pair_r2(X, Y, train, test, layers_src=[2, 0], layers_tgt=[3, 1], device="cpu", **FAST)
    assert sub.shape == (2, 2)
    assert np.abs(sub - full[np.ix_([2, 0], [3, 1])]).max() <= 1e-5
    chunked = mlp_pair_r2(X, Y, train, test, target_chunk=3, device="cpu", **FAST)
    assert np.abs(chunked - full).max() <= 1e-5
    # each requested layer is loaded exactly once
    calls = {"src": [], "tgt": []}

    def load_x(a):
        calls["src"].append(a)
        return X[:, a]

    def load_y(b):
        calls["tgt"].append(b)
        return Y[:, b]

    mlp_pair_r2_streamed(LayerStreams(load_x, load_y, 3, 4), train, test, layers_src=[1], layers_tgt=[2, 0],
                         mlp=MLP(**FAST), device="cpu")
    assert calls == {"src": [1], "tgt": [2, 0]}


def test_r2_uniform_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(40, 5)) + 3.0
    p = y + rng.normal(size=(40, 5)) * [0.1, 0.5, 1.0, 2.0, 4.0]
    assert abs(r2_uniform(y, p) - r2_score(y, p)) <= 1e-12
    y[:, 1] = 2.0  # constant column predicted exactly: sklearn scores it 1
    p[:, 1] = 2.0
    y[:, 2] = -8.0  # constant column missed: 0
    assert abs(r2_uniform(y, p) - r2_score(y, p)) <= 1e-12
    y[:, 1] = -7.77  # rounded mean: still constant, still exact
    p[:, 1] = -7.77
    expected = np.mean([r2_score(y[:, j], p[:, j]) if j not in (1, 2) else float(j == 1) for j in range(5)])
    assert abs(r2_uniform(y, p) - expected) <= 1e-12


@pytest.fixture(scope="module")
def synthetic_shards(tmp_path_factory):
    spec = SyntheticSpec(n_tasks=40, seeds=(0,), n_turns=8)
    return write_synthetic_shards(spec, tmp_path_factory.mktemp("synth"))


def test_table_contract_sync_and_sklearn(synthetic_shards, tmp_path):
    ds = build_dataset(synthetic_shards, "experimental", "AtoB")
    size, seeds = 100, (0, 1)
    table = compute_mlp_r2_table(ds, size, seeds, mlp=MLP(seed=3, **FAST), device="cpu", progress=False)
    assert tuple(table.columns) == R2_COLUMNS
    assert len(table) == 2 * 3 * 2
    cube = r2_cube(table)
    cube2, ls, lt = r2_cube_layers(table)
    assert cube.shape == (2, 3, 2) and np.array_equal(cube, cube2)
    assert ls.tolist() == [0, 1, 2] and lt.tolist() == [0, 1]
    score = sync_r2(cube)
    assert np.isfinite(score.value) and np.isfinite(score.se)

    # oracle: same split, same seeds, same batched training (as in the table: both target
    # layers at once), a forward pass and scikit-learn's r2_score
    train, test = fixed_size_split(ds.groups, size, 1, 0.2)
    a, b = 2, 1
    x, y = ds.load_source(a, train), np.stack([ds.load_target(t, train) for t in (0, 1)])
    stack = train_mlp_stack(x, y, a, [0, 1], MLP(seed=3, **FAST), device="cpu")
    pred = stack.predict(ds.load_source(a, test))[b].numpy().astype(np.float64)
    ref = r2_score(ds.load_target(b, test).astype(np.float64), pred)
    row = table[(table.split_seed == 1) & (table.layer_src == a) & (table.layer_tgt == b)]
    assert len(row) == 1 and abs(float(row.r2.iloc[0]) - ref) <= 1e-12
    assert int(row.n_train.iloc[0]) == len(train) and int(row.n_test.iloc[0]) == len(test)

    # a layer subset: same cells as the full table, read by the subset reader, not by r2_cube
    sub = compute_mlp_r2_table(ds, size, seeds, layers_src=[2, 0], layers_tgt=[1], mlp=MLP(seed=3, **FAST),
                               device="cpu", progress=False)
    cube_s, ls_s, lt_s = r2_cube_layers(sub)
    assert ls_s.tolist() == [0, 2] and lt_s.tolist() == [1]
    assert np.abs(cube_s - cube[:, [0, 2]][:, :, [1]]).max() <= 1e-5
    assert np.isfinite(sync_r2(cube_s).value)
    with pytest.raises(ValueError, match="incomplete"):
        r2_cube(sub)


def test_mlp_variant_writes_table(synthetic_shards, tmp_path):
    out = run_r2_variant(synthetic_shards, "experimental", "BtoA", Split(100, 0.2, [0]), tmp_path / "mlp.parquet",
                         pair="synth-a__synth-b", mlp=MLP(**FAST), layers_tgt=[0, 2], device="cpu",
                         progress=False)
    table, meta = read_r2_table(out)
    assert meta["map"] == "mlp" and meta["pair"] == "synth-a__synth-b"
    assert meta["condition"] == "experimental" and meta["direction"] == "BtoA"
    assert meta["epochs"] == FAST["epochs"] and meta["hidden"] == FAST["hidden"]
    assert meta["layers_tgt"] == [0, 2] and meta["layers_src"] is None
    cube, ls, lt = r2_cube_layers(table)
    assert cube.shape == (1, 2, 2) and ls.tolist() == [0, 1] and lt.tolist() == [0, 2]


def test_r2_cube_layers_errors():
    rows = [(0, s, t, 0.1, 10, 5) for s in (1, 3) for t in (0, 4)]
    table = pd.DataFrame(rows, columns=list(R2_COLUMNS))
    with pytest.raises(ValueError, match="more than once"):
        r2_cube_layers(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(ValueError, match="incomplete"):
        r2_cube_layers(table.iloc[1:])


def test_errors():
    X, Y = make_grid_data(n=20)
    train, test = np.arange(15), np.arange(15, 20)
    with pytest.raises(ValueError, match=r"layers_src holds \[5\], outside 0..2"):
        mlp_pair_r2(X, Y, train, test, layers_src=[5], **FAST)
    with pytest.raises(ValueError, match="layers_tgt holds a layer twice"):
        mlp_pair_r2(X, Y, train, test, layers_tgt=[1, 1], **FAST)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        mlp_pair_r2(X, Y, train, test, **{**FAST, "epochs": 0})
    with pytest.raises(ValueError, match="target_chunk"):
        mlp_pair_r2(X, Y, train, test, target_chunk=0, **FAST)
    bad = X.copy()
    bad[0, 1, 0] = np.inf
    with pytest.raises(ValueError, match="source layer 1.*NaN or infinite"):
        mlp_pair_r2(bad, Y, train, test, **FAST)
    with pytest.raises(TypeError, match="alpha"):  # a ridge option is no MLP option
        mlp_pair_r2(X, Y, train, test, alpha=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    X, Y = make_grid_data()
    train, test = np.arange(70), np.arange(70, 90)
    cpu = mlp_pair_r2(X, Y, train, test, device="cpu", **FAST)
    gpu = mlp_pair_r2(X, Y, train, test, device="cuda", **FAST)
    assert np.abs(cpu - gpu).max() <= 1e-4
