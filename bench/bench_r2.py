"""Benchmark: the all-layer-pairs R2 engine against a per-pair baseline and himalaya.

    python bench/bench_r2.py --layers 16 --dim 1024 --n-train 1600 --n-test 400
    python bench/bench_r2.py --layers 32 --dim 4096 --n-train 5200 --n-test 1300 \
        --baseline-pairs 3 --himalaya-sources 1

Data are float32 synthetic representations (a shared low-rank signal plus
noise), generated one layer at a time from a seed, so the paper's shape never
sits in memory at once. Three ways to get every layer pair's test-set R2:

* engine: ``syncr2.synchrony.ridge.layer_pair_r2_streamed`` (float64, shared factorizations);
* baseline: what the authors' code does, pair by pair: append a ones column,
  solve the regularized normal equations in float32 (intercept unpenalized),
  predict the test set, score. Timed on ``--baseline-pairs`` pairs and
  extrapolated per pair to the full grid when that is fewer than all pairs;
* himalaya: one multi-target ``himalaya.ridge.Ridge(alpha)`` per source layer
  with every target layer's dimensions stacked, scored per target layer;
  timed on ``--himalaya-sources`` source layers and extrapolated likewise.

The output says which figures are measured and which extrapolated, the time
ratios, and the largest R2 difference of each method from the engine.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch

from syncr2.core.device import resolve_device
from syncr2.synchrony.ridge import LayerStreams, layer_pair_r2_streamed

LATENT = 64


class SyntheticLayers:
    """Layer l of agent ``side`` = shared latent @ W_l + noise, regenerated on demand."""

    def __init__(self, n: int, dim: int, side: int, seed: int = 0):
        self.n, self.dim, self.side, self.seed = n, dim, side, seed
        self.latent = np.random.default_rng(seed).standard_normal((n, LATENT), dtype=np.float32)

    def __call__(self, layer: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.side, layer])
        w = rng.standard_normal((LATENT, self.dim), dtype=np.float32) * (0.2 + 0.05 * layer)
        noise = rng.standard_normal((self.n, self.dim), dtype=np.float32)
        return self.latent @ w + noise


def baseline_pair(x: torch.Tensor, y: torch.Tensor, n_train: int, alpha: float) -> float:
    """Authors' style: ones column, float32 normal equations, predict, r2 (uniform average)."""
    x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    xtr, xte, ytr, yte = x1[:n_train], x1[n_train:], y[:n_train], y[n_train:]
    reg = torch.full((x1.shape[1],), alpha, dtype=x.dtype)
    reg[-1] = 0.0  # the intercept is not regularized
    w = torch.linalg.solve(xtr.T @ xtr + torch.diag(reg), xtr.T @ ytr)
    pred = xte @ w
    ss_res = ((yte - pred) ** 2).sum(0)
    ss_tot = ((yte - yte.mean(0)) ** 2).sum(0)
    return float((1 - ss_res / ss_tot).mean())


def himalaya_source(x: np.ndarray, ys: np.ndarray, n_train: int, n_layers: int, dim: int, alpha: float) -> np.ndarray:
    from himalaya.ridge import Ridge
    from sklearn.metrics import r2_score

    model = Ridge(alpha=alpha, fit_intercept=True).fit(x[:n_train], ys[:n_train])
    pred = np.asarray(model.predict(x[n_train:]))
    return np.array([
        r2_score(ys[n_train:, b * dim:(b + 1) * dim], pred[:, b * dim:(b + 1) * dim]) for b in range(n_layers)
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--n-train", type=int, default=1600)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--baseline-pairs", type=int, default=0, help="0 = all pairs (measured in full)")
    ap.add_argument("--himalaya-sources", type=int, default=0, help="0 = all source layers; -1 = skip himalaya")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    L, D, n_tr, n_te = args.layers, args.dim, args.n_train, args.n_test
    n = n_tr + n_te
    dev = resolve_device(args.device)
    src, tgt = SyntheticLayers(n, D, side=1), SyntheticLayers(n, D, side=2)
    train, test = np.arange(n_tr), np.arange(n_tr, n)
    n_pairs = L * L
    print(f"shape: L_A=L_B={L}, D={D}, n_train={n_tr}, n_test={n_te}, float32 data, "
          f"{torch.get_num_threads()} torch threads, device {dev}")

    t0 = time.perf_counter()
    grid = layer_pair_r2_streamed(LayerStreams(src, tgt, L, L), train, test, alpha=args.alpha, device=dev, progress=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_engine = time.perf_counter() - t0
    print(f"engine: {t_engine:.2f} s for all {n_pairs} pairs (measured, layer generation included)")
    gc.collect()

    k = n_pairs if args.baseline_pairs <= 0 else min(args.baseline_pairs, n_pairs)
    rng = np.random.default_rng(0)
    chosen = [(a, b) for a in range(L) for b in range(L)] if k == n_pairs else [
        (int(p) // L, int(p) % L) for p in rng.choice(n_pairs, size=k, replace=False)]
    t_base, diff_base = 0.0, 0.0
    cache: dict[tuple[int, int], torch.Tensor] = {}
    for a, b in chosen:
        xs = cache.setdefault((1, a), torch.from_numpy(src(a)))
        ys = cache.setdefault((2, b), torch.from_numpy(tgt(b)))
        t0 = time.perf_counter()
        r2 = baseline_pair(xs, ys, n_tr, args.alpha)
        t_base += time.perf_counter() - t0
        diff_base = max(diff_base, abs(r2 - grid[a, b]))
        if len(cache) > 8:
            cache.clear()
    per_pair = t_base / k
    full_base = per_pair * n_pairs
    how = "measured in full" if k == n_pairs else f"extrapolated from {k} measured pairs at {per_pair:.3f} s/pair"
    print(f"baseline (per pair, float32 normal equations): {full_base:.2f} s for {n_pairs} pairs ({how})")
    print(f"speed-up engine vs baseline: {full_base / t_engine:.1f}x; largest |R2 engine - R2 baseline| = {diff_base:.2e}")

    if args.himalaya_sources >= 0:
        del cache
        gc.collect()
        m = L if args.himalaya_sources == 0 else min(args.himalaya_sources, L)
        ys = np.concatenate([tgt(b) for b in range(L)], axis=1)
        t_him, diff_him = 0.0, 0.0
        for a in range(m):
            x = src(a)
            t0 = time.perf_counter()
            scores = himalaya_source(x, ys, n_tr, L, D, args.alpha)
            t_him += time.perf_counter() - t0
            diff_him = max(diff_him, float(np.abs(scores - grid[a]).max()))
        full_him = t_him / m * L
        how = "measured in full" if m == L else f"extrapolated from {m} of {L} source layers"
        print(f"himalaya (Ridge per source layer, targets stacked): {full_him:.2f} s ({how})")
        print(f"speed-up engine vs himalaya: {full_him / t_engine:.1f}x; largest |R2 engine - R2 himalaya| = {diff_him:.2e}")


if __name__ == "__main__":
    main()
