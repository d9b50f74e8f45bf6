"""Benchmark: one source layer's MLP maps to L_B target layers, batched vs one by one.

    python bench/bench_nonlinear.py                       # n=1000, D=256, L_B=8, 20 epochs, CPU
    python bench/bench_nonlinear.py --n 6500 --dim 4096 --layers 32 --epochs 200 --device cuda

The MLP grid (``syncr2.synchrony.mlp_maps``) trains all target layers of a
source layer as one batched network. This times that single batched training
(``train_mlp_stack`` with L_B target layers) against L_B separate trainings
of the same code with one target layer each, on float32 synthetic layers (a
shared latent read through a nonlinearity, plus noise), 80/20 train/test.
Both give the same networks; the line reports the largest test-R2 difference.
At the default 20 epochs of lr 1e-4 the maps are under-trained (test R2 may
be negative): the line is about time, not fit.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from syncr2.synchrony.mlp_maps import r2_uniform, train_mlp_stack
from syncr2.core.device import resolve_device
from syncr2.core.settings import MLP

LATENT = 32


def synthetic(n: int, dim: int, layers: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Source (n, dim) and targets (layers, n, dim): |latent @ W_l| + noise, layer-dependent scale."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LATENT), dtype=np.float32)
    x = z @ rng.standard_normal((LATENT, dim), dtype=np.float32) + rng.standard_normal((n, dim), dtype=np.float32)
    ys = np.stack([
        np.abs(z @ rng.standard_normal((LATENT, dim), dtype=np.float32)) * (0.2 + 0.1 * b)
        + rng.standard_normal((n, dim), dtype=np.float32)
        for b in range(layers)
    ])
    return x, ys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="samples (80%% train, 20%% test)")
    ap.add_argument("--dim", type=int, default=256, help="D_A = D_B")
    ap.add_argument("--layers", type=int, default=8, help="L_B target layers")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    dev = resolve_device(args.device)
    x, ys = synthetic(args.n, args.dim, args.layers)
    n_tr = int(0.8 * args.n)
    mlp = MLP(hidden=args.hidden, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size)
    x_tr, x_te = torch.from_numpy(x[:n_tr]).to(dev), torch.from_numpy(x[n_tr:]).to(dev)
    y_tr, y_te = torch.from_numpy(ys[:, :n_tr]).to(dev), torch.from_numpy(ys[:, n_tr:]).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    layers = list(range(args.layers))
    # warm-up (thread pools, allocator, kernels), not timed
    train_mlp_stack(x_tr[: args.batch_size], y_tr[:, : args.batch_size], 0, layers, replace(mlp, epochs=1), dev)
    sync()
    t0 = time.perf_counter()
    stack = train_mlp_stack(x_tr, y_tr, 0, layers, mlp, dev)
    sync()
    t_batched = time.perf_counter() - t0
    r2_batched = np.array([r2_uniform(y_te[b], stack.predict_layer(x_te, b)) for b in layers])

    t_single, r2_single = 0.0, np.empty(args.layers)
    for b in layers:
        sync()
        t0 = time.perf_counter()
        one = train_mlp_stack(x_tr, y_tr[b:b + 1], 0, [b], mlp, dev)
        sync()
        t_single += time.perf_counter() - t0
        r2_single[b] = r2_uniform(y_te[b], one.predict_layer(x_te, 0))

    print(
        f"MLP one source layer, n={args.n} (train {n_tr}), D={args.dim}, H={args.hidden}, L_B={args.layers}, "
        f"{args.epochs} epochs, batch {args.batch_size}, {dev}, {torch.get_num_threads()} threads: "
        f"batched {t_batched:.2f} s vs {args.layers} separate {t_single:.2f} s "
        f"({t_single / t_batched:.2f}x); test R2 {r2_batched.min():.3f}..{r2_batched.max():.3f}, "
        f"max |batched - separate| = {np.abs(r2_batched - r2_single).max():.1e}"
    )


if __name__ == "__main__":
    main()
