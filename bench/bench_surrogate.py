"""Benchmark: R surrogate permutations through the reused factorisation vs R full reruns.

    python bench/bench_surrogate.py                       # n=600, 8x8 layers, D=256, R=100
    python bench/bench_surrogate.py --n 2000 --layers 16 --dim 1024 --perms 100 --baseline-perms 5

Both ways compute the same R null grids (L_A x L_B) of one split, where draw r
permutes the target rows within the train part and within the test part:

* reuse: ``syncr2.synchrony.permuted_grids.permuted_r2_grids`` (each source layer
  factorised once, each draw a gather of its hat matrix and one matrix product);
* rerun: ``syncr2.synchrony.ridge.layer_pair_r2_streamed`` on physically
  permuted targets, once per draw (every hat matrix and Gram term recomputed).
  Timed on ``--baseline-perms`` draws and extrapolated per draw to R when fewer.

Data are float32 synthetic layers (a shared low-rank signal plus noise), held
in memory so that only the computation is timed. The last line prints both
times, the speed-up and the largest grid difference between the two ways.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from syncr2.synchrony.permuted_grids import permuted_r2_grids
from syncr2.core.device import resolve_device
from syncr2.synchrony.ridge import LayerStreams, layer_pair_r2_streamed

LATENT = 32


def make_layers(n: int, n_layers: int, dim: int, side: int, seed: int = 0) -> np.ndarray:
    """(n, L, D) float32: a shared latent read through per-layer loadings, plus noise."""
    latent = np.random.default_rng(seed).standard_normal((n, LATENT), dtype=np.float32)
    out = np.empty((n, n_layers, dim), dtype=np.float32)
    for layer in range(n_layers):
        rng = np.random.default_rng([seed, side, layer])
        w = rng.standard_normal((LATENT, dim), dtype=np.float32) * (0.1 + 0.03 * layer)
        out[:, layer] = latent @ w + rng.standard_normal((n, dim), dtype=np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=600, help="samples in the split (train + test)")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--perms", type=int, default=100, help="R, the number of permutations")
    ap.add_argument("--baseline-perms", type=int, default=0, help="reruns actually timed; 0 = all R")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    n, L, D, R = args.n, args.layers, args.dim, args.perms
    n_te = round(n * args.test_fraction)
    n_tr = n - n_te
    dev = resolve_device(args.device)
    X, Y = make_layers(n, L, D, side=1), make_layers(n, L, D, side=2)
    train, test = np.arange(n_tr), np.arange(n_tr, n)
    rng = np.random.default_rng(0)
    p_tr = np.stack([rng.permutation(n_tr) for _ in range(R)])
    p_te = np.stack([rng.permutation(n_te) for _ in range(R)])
    print(f"shape: n_train={n_tr}, n_test={n_te}, L_A=L_B={L}, D={D}, R={R}, "
          f"{torch.get_num_threads()} torch threads, device {dev}")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (lazy torch/LAPACK initialisation), untimed, for both ways
    permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], 1, 1), train, test, p_tr[:1], p_te[:1], device=dev)
    layer_pair_r2_streamed(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], 1, 1), train, test, device=dev)
    sync()

    t0 = time.perf_counter()
    _, null = permuted_r2_grids(LayerStreams(lambda a: X[:, a], lambda b: Y[:, b], L, L), train, test, p_tr, p_te,
                                alpha=args.alpha, device=dev)
    sync()
    t_reuse = time.perf_counter() - t0

    k = R if args.baseline_perms <= 0 else min(args.baseline_perms, R)
    t_rerun, diff = 0.0, 0.0
    for r in range(k):
        Yp = Y.copy()
        Yp[train] = Y[train[p_tr[r]]]
        Yp[test] = Y[test[p_te[r]]]
        t0 = time.perf_counter()
        grid = layer_pair_r2_streamed(LayerStreams(lambda a: X[:, a], lambda b, Yp=Yp: Yp[:, b], L, L), train, test,
                                      alpha=args.alpha, device=dev)
        sync()
        t_rerun += time.perf_counter() - t0
        diff = max(diff, float(np.abs(grid - null[r]).max()))
    full_rerun = t_rerun / k * R
    how = "measured" if k == R else f"extrapolated from {k} measured"
    print(f"R={R} permutations at n={n}, {L}x{L} layers, D={D}: reuse {t_reuse:.2f} s, "
          f"reruns {full_rerun:.2f} s ({how}), speed-up {full_rerun / t_reuse:.1f}x, "
          f"largest |R2 difference| {diff:.1e}")


if __name__ == "__main__":
    main()
