"""The MLP variant of the map engine: the one-hidden-layer MLP maps of Table 5.

docs/analyses.md, "MLP maps". The affine maps of the main analysis may miss
synchrony that a nonlinear read-out would find, so the paper repeats the
layer-pair R2 grid with a small MLP in place of ridge:
``Linear(D_A, 512) -> ReLU -> Linear(512, D_B)``, AdamW (lr 1e-4, weight
decay 0.1), 200 epochs of MSE loss on minibatches of 128, no input scaling, no
early stopping. R2 is scored on the test rows exactly as for the affine maps
(scikit-learn ``r2_score``, uniform average over target dimensions), and the
resulting table has the R2 table contract (``R2_COLUMNS``), so SyncR2 and
everything downstream reuse the affine code.

Cost: unlike ridge there is no closed form to share between pairs, so a full
grid is L_A x L_B trained networks per split seed (per pair, condition and
direction). We train all target layers of one source layer as ONE batched
network: weights of shape (n_tgt, D_A, H) and (n_tgt, H, D_B), one AdamW, one
minibatch order, loss = the sum over target layers of each layer's own MSE.
The layers share no parameters and AdamW is elementwise, so each target
layer's slice follows exactly the trajectory it would follow alone, but the
grid costs L_A trainings (of larger matrix products) instead of L_A x L_B.
``layers_src`` / ``layers_tgt`` restrict the grid to a layer subset.

Determinism: the initialisation of the network of (layer_src, layer_tgt) is
drawn from a ``torch.Generator`` seeded from ``(seed, layer_src,
layer_tgt)`` (:func:`init_seed`), on the CPU, whatever the device; the
minibatch order of a source layer from ``(seed, layer_src)``
(:func:`order_seed`), one ``randperm`` of the train rows per epoch, batches
taken in that order, the last one possibly smaller. So a layer subset, or
target layers trained in chunks, gives the same numbers as the full grid for
the cells it keeps (up to float32 rounding: the fused AdamW kernel may round
the tail of a stacked tensor differently when the number of target layers
changes), and the same seed is used for every split seed. A SyncR2 computed
from a subset table is over the chosen layers only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..core.device import resolve_device
from ..core.settings import MLP
from .datasets import ConditionDataset
from .r2table import split_table
from .ridge import EPS, LayerStreams, as_index, constant_columns

log = logging.getLogger(__name__)

#: The paper's hyper-parameters (docs/analyses.md, "MLP maps"): the defaults of :class:`~syncr2.core.settings.MLP`.
MLP_DEFAULTS: dict[str, float | int] = {k: v for k, v in MLP().options().items() if k != "seed"}

_INIT_TAG = 0x6D6C7031  # fixed tags keep the init and order streams apart
_ORDER_TAG = 0x6D6C7032


def _derive_seed(*entropy: int) -> int:
    for v in entropy:
        if int(v) < 0:
            raise ValueError(f"seeds and layer numbers must be >= 0, got {v}")
    state = np.random.SeedSequence([int(v) for v in entropy]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63


def init_seed(seed: int, layer_src: int, layer_tgt: int) -> int:
    """The ``torch.Generator`` seed of the initial weights of the (layer_src, layer_tgt) network."""
    return _derive_seed(_INIT_TAG, seed, layer_src, layer_tgt)


def order_seed(seed: int, layer_src: int) -> int:
    """The ``torch.Generator`` seed of the minibatch order used for every target of ``layer_src``."""
    return _derive_seed(_ORDER_TAG, seed, layer_src)


def _tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor view of ``a``; numpy views with negative strides (X[::-1]) are copied first."""
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(a))


def _check_mlp(mlp: MLP) -> None:
    if int(mlp.hidden) < 1:
        raise ValueError(f"hidden must be >= 1 (units of the hidden layer), got {mlp.hidden}")
    if not mlp.lr > 0:
        raise ValueError(f"lr must be > 0, got {mlp.lr}")
    if not mlp.weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {mlp.weight_decay}")
    if int(mlp.epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {mlp.epochs}")
    if int(mlp.batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {mlp.batch_size}")


@dataclass
class MLPStack:
    """Trained MLPs of one source layer, one per target layer, stacked along dim 0.

    ``w1`` (T, D_A, H), ``b1`` (T, H), ``w2`` (T, H, D_B), ``b2`` (T, D_B);
    network ``i`` maps source layer ``layer_src`` to target layer
    ``layers_tgt[i]`` as ``relu(x @ w1[i] + b1[i]) @ w2[i] + b2[i]``.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    layer_src: int
    layers_tgt: tuple[int, ...]

    @property
    def device(self) -> torch.device:
        return self.w1.device

    def _input(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = _tensor(x)
        if t.ndim != 2 or t.shape[1] != self.w1.shape[1]:
            raise ValueError(f"expected source rows of shape (n, {self.w1.shape[1]}), got {tuple(t.shape)}")
        return t.to(self.device, torch.float32)

    @torch.no_grad()
    def predict_layer(self, x: np.ndarray | torch.Tensor, i: int) -> torch.Tensor:
        """Float32 prediction (n, D_B) of network ``i`` (target layer ``layers_tgt[i]``)."""
        x = self._input(x)
        hidden = torch.relu(torch.addmm(self.b1[i], x, self.w1[i]))
        return torch.addmm(self.b2[i], hidden, self.w2[i])

    @torch.no_grad()
    def predict(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Float32 predictions (T, n, D_B) of every network, as :meth:`predict_layer` computes them."""
        x = self._input(x)
        return torch.stack([self.predict_layer(x, i) for i in range(len(self.layers_tgt))])


def init_mlp_stack(
    d_in: int,
    d_out: int,
    layer_src: int,
    layers_tgt: Sequence[int],
    seed: int = 0,
    hidden: int = 512,
    device: str | torch.device | None = "cpu",
) -> MLPStack:
    """Initial weights, PyTorch's ``nn.Linear`` distribution: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    For target layer ``b`` a CPU ``torch.Generator`` seeded with
    ``init_seed(seed, layer_src, b)`` draws, in this order, ``w1`` (d_in,
    hidden), ``b1`` (hidden,), ``w2`` (hidden, d_out), ``b2`` (d_out,) with
    ``torch.rand``; fan_in is d_in for the first layer and hidden for the second.
    """
    dev = resolve_device(device)
    b_in, b_hid = 1.0 / math.sqrt(d_in), 1.0 / math.sqrt(hidden)
    parts: list[list[torch.Tensor]] = [[], [], [], []]
    for b in layers_tgt:
        gen = torch.Generator().manual_seed(init_seed(seed, layer_src, int(b)))
        for k, (shape, bound) in enumerate((((d_in, hidden), b_in), ((hidden,), b_in),
                                            ((hidden, d_out), b_hid), ((d_out,), b_hid))):
            parts[k].append((torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound)
    w1, b1, w2, b2 = (torch.stack(p).to(dev) for p in parts)
    return MLPStack(w1, b1, w2, b2, int(layer_src), tuple(int(b) for b in layers_tgt))


def epoch_orders(n_train: int, epochs: int, seed: int, layer_src: int) -> torch.Tensor:
    """(epochs, n_train) row orders: one ``torch.randperm`` per epoch from ``order_seed(seed, layer_src)``."""
    gen = torch.Generator().manual_seed(order_seed(seed, layer_src))
    return torch.stack([torch.randperm(n_train, generator=gen) for _ in range(epochs)])


def train_mlp_stack(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    layer_src: int,
    layers_tgt: Sequence[int],
    mlp: MLP = MLP(),
    device: str | torch.device | None = None,
) -> MLPStack:
    """Train one MLP per target layer on the same source rows, batched.

    ``x`` (n_train, D_A) are the source layer's train rows, ``y`` (T, n_train,
    D_B) the train rows of the T target layers ``layers_tgt``. Training is in
    float32 on ``device``; the loss is the sum over target layers of each
    layer's mean squared error, so no gradient mixes layers. Every epoch goes
    through the rows in the order of :func:`epoch_orders`, ``batch_size`` at a
    time; AdamW (PyTorch defaults otherwise, fused) decays all weights and biases.
    ``mlp`` holds the seed and the hyper-parameters (``epochs``, ``batch_size``, ...).
    """
    _check_mlp(mlp)
    dev = resolve_device(device)
    layers_tgt = tuple(int(b) for b in layers_tgt)
    xt = _tensor(x).to(dev, torch.float32)
    yt = _tensor(y).to(dev, torch.float32)
    if xt.ndim != 2:
        raise ValueError(f"x must be (n_train, D_A), got shape {tuple(xt.shape)}")
    if yt.ndim != 3 or yt.shape[0] != len(layers_tgt) or yt.shape[1] != xt.shape[0]:
        raise ValueError(
            f"y must be (len(layers_tgt)={len(layers_tgt)}, n_train={xt.shape[0]}, D_B), got shape {tuple(yt.shape)}"
        )
    n_train = xt.shape[0]
    stack = init_mlp_stack(xt.shape[1], yt.shape[2], layer_src, layers_tgt, mlp.seed, int(mlp.hidden), dev)
    params = [stack.w1, stack.b1, stack.w2, stack.b2]
    for p in params:
        p.requires_grad_(True)
    # fused: one kernel per step over the stacked tensors, the same update rule as the default
    # implementation (several times faster on CPU once the stack outgrows the caches)
    opt = torch.optim.AdamW(params, lr=mlp.lr, weight_decay=mlp.weight_decay, fused=True)
    orders = epoch_orders(n_train, int(mlp.epochs), mlp.seed, layer_src).to(dev)
    batch = int(mlp.batch_size)
    for epoch in range(int(mlp.epochs)):
        order = orders[epoch]
        for start in range(0, n_train, batch):
            rows = order[start:start + batch]
            xb, yb = xt[rows], yt[:, rows]
            hid = torch.relu(torch.matmul(xb, stack.w1) + stack.b1[:, None, :])  # (T, B, H)
            pred = torch.baddbmm(stack.b2[:, None, :], hid, stack.w2)  # (T, B, D_B)
            loss = (pred - yb).square().mean(dim=(1, 2)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in params:
        p.requires_grad_(False)
    return stack


def r2_uniform(y_true: np.ndarray | torch.Tensor, y_pred: np.ndarray | torch.Tensor) -> float:
    """scikit-learn's ``r2_score(y_true, y_pred)`` (uniform average over columns), in float64.

    A column that is constant on ``y_true`` scores 1 when predicted exactly,
    else 0 (scikit-learn's ``force_finite``); "constant" and "exactly" allow
    for float64 rounding as in :mod:`syncr2.synchrony.ridge`.
    """
    yt = _tensor(y_true).to(torch.float64)
    yp = _tensor(y_pred).to(yt.device, torch.float64)
    if yt.ndim == 1:
        yt, yp = yt[:, None], yp[:, None]
    if yt.shape != yp.shape or yt.ndim != 2:
        raise ValueError(f"y_true {tuple(yt.shape)} and y_pred {tuple(yp.shape)} must be equal (n, D) shapes")
    n = yt.shape[0]
    _, ss_tot, const = constant_columns(yt)
    ss_res = (yt - yp).square().sum(0)
    scores = torch.empty_like(ss_tot)
    varying = ~const
    scores[varying] = 1.0 - ss_res[varying] / ss_tot[varying]
    if bool(const.any()):
        tol = n * (2.0 * n * EPS * yt[:, const].abs().amax(0)) ** 2
        scores[const] = (ss_res[const] <= tol).to(torch.float64)
    return float(scores.mean())


def _layer_list(layers: Sequence[int] | None, n_layers: int, name: str) -> list[int]:
    if n_layers < 1:
        raise ValueError(f"the number of {name.split('_')[1]} layers must be >= 1, got {n_layers}")
    if layers is None:
        return list(range(n_layers))
    out = [int(v) for v in layers]
    if not out:
        raise ValueError(f"{name} is empty; pass None for all {n_layers} layers")
    bad = [v for v in out if not 0 <= v < n_layers]
    if bad:
        raise ValueError(f"{name} holds {bad}, outside 0..{n_layers - 1}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} holds a layer twice: {out}")
    return out


def _checked_rows(arr: np.ndarray, what: str, n: int | None) -> np.ndarray:
    """One layer's rows as a contiguous finite (n, D) array; errors name ``what``."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or (n is not None and arr.shape[0] != n):
        want = f"({n}, D)" if n is not None else "(n, D)"
        raise ValueError(f"{what}: expected an {want} array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return np.ascontiguousarray(arr)


def mlp_pair_r2_streamed(
    streams: LayerStreams,
    train_idx: Sequence[int] | np.ndarray,
    test_idx: Sequence[int] | np.ndarray,
    layers_src: Sequence[int] | None = None,
    layers_tgt: Sequence[int] | None = None,
    mlp: MLP = MLP(),
    target_chunk: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Test-set R2 of an MLP map for every (source layer, target layer) pair of the subsets.

    ``streams`` reads one layer's (n, D) rows at a time;
    every chosen target layer is loaded once and kept (train rows float32,
    test rows as loaded), every chosen source layer once. For each source
    layer one batched training (:func:`train_mlp_stack`) covers the target
    layers, at most ``target_chunk`` at a time (None: all; chunking only
    bounds memory, it does not change the numbers). Returns a float64 array
    (len(layers_src), len(layers_tgt)) in the order of the subsets
    (default: all layers), each cell :func:`r2_uniform` of the test rows.
    """
    _check_mlp(mlp)
    if target_chunk is not None and int(target_chunk) < 1:
        raise ValueError(f"target_chunk must be >= 1 or None (all target layers at once), got {target_chunk}")
    src_layers = _layer_list(layers_src, streams.n_source, "layers_src")
    tgt_layers = _layer_list(layers_tgt, streams.n_target, "layers_tgt")
    dev = resolve_device(device)
    chunk = len(tgt_layers) if target_chunk is None else int(target_chunk)

    first = _checked_rows(streams.target(tgt_layers[0]), f"target layer {tgt_layers[0]}", None)
    n = first.shape[0]
    train = as_index(train_idx, n, "train_idx")
    test = as_index(test_idx, n, "test_idx")
    y_train = torch.empty((len(tgt_layers), len(train), first.shape[1]), dtype=torch.float32, device=dev)
    y_test: list[torch.Tensor] = []
    for j, b in enumerate(tgt_layers):
        arr = first if j == 0 else _checked_rows(streams.target(b), f"target layer {b}", n)
        if arr.shape[1] != first.shape[1]:
            raise ValueError(
                f"target layer {b} has {arr.shape[1]} dims but target layer {tgt_layers[0]} has "
                f"{first.shape[1]}; batched training needs one hidden size for all target layers"
            )
        y_train[j] = torch.from_numpy(arr[train]).to(dev, torch.float32)
        y_test.append(torch.from_numpy(arr[test]).to(dev))
    del first

    out = np.empty((len(src_layers), len(tgt_layers)))
    for i, a in enumerate(tqdm(src_layers, desc="source layers (MLP)", disable=not progress, leave=False)):
        t0 = time.perf_counter()
        x = _checked_rows(streams.source(a), f"source layer {a}", n)
        x_train = torch.from_numpy(x[train]).to(dev, torch.float32)
        x_test = torch.from_numpy(x[test]).to(dev, torch.float32)
        for lo in range(0, len(tgt_layers), chunk):
            part = tgt_layers[lo:lo + chunk]
            stack = train_mlp_stack(x_train, y_train[lo:lo + chunk], a, part, mlp, device=dev)
            for k in range(len(part)):
                out[i, lo + k] = r2_uniform(y_test[lo + k], stack.predict_layer(x_test, k))
            del stack
        log.info("MLP source layer %d (%d of %d): %d target layers, best R2 %.4f, %.1f s on %s",
                 a, i + 1, len(src_layers), len(tgt_layers), out[i].max(), time.perf_counter() - t0, dev)
    return out


def mlp_pair_r2(
    X: np.ndarray,
    Y: np.ndarray,
    train_idx: Sequence[int] | np.ndarray,
    test_idx: Sequence[int] | np.ndarray,
    layers_src: Sequence[int] | None = None,
    layers_tgt: Sequence[int] | None = None,
    target_chunk: int | None = None,
    device: str | torch.device | None = None,
    **hyper: float,
) -> np.ndarray:
    """:func:`mlp_pair_r2_streamed` for in-memory ``X`` (n, L_A, D_A) and ``Y`` (n, L_B, D_B);
    ``hyper``: the fields of :class:`~syncr2.core.settings.MLP` (seed, hidden, lr, ...)."""
    return mlp_pair_r2_streamed(LayerStreams.of_arrays(X, Y), train_idx, test_idx, layers_src, layers_tgt,
                                MLP(**hyper), target_chunk, device)


def compute_mlp_r2_table(
    dataset: ConditionDataset,
    size: int,
    split_seeds: Sequence[int],
    test_fraction: float = 0.2,
    layers_src: Sequence[int] | None = None,
    layers_tgt: Sequence[int] | None = None,
    mlp: MLP = MLP(),
    target_chunk: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The MLP R2 table (``R2_COLUMNS``) of ``dataset``, split as :func:`compute_r2_table` splits.

    ``mlp``: the seed and hyper-parameters (the paper's by default). A layer
    subset gives a table of those layers only; read it with ``r2_cube_layers``.
    """
    n_src, n_tgt = dataset.source.n_layers, dataset.target.n_layers
    src_layers = _layer_list(layers_src, n_src, "layers_src")
    tgt_layers = _layer_list(layers_tgt, n_tgt, "layers_tgt")

    def mlp_grid(streams: LayerStreams, train: np.ndarray, test: np.ndarray):
        return mlp_pair_r2_streamed(streams, train, test, src_layers, tgt_layers, mlp, target_chunk, device,
                                    progress)

    return split_table(dataset, size, split_seeds, test_fraction, mlp_grid, src_layers, tgt_layers,
                       what=f"MLP ({len(src_layers)} batched trainings) ")
