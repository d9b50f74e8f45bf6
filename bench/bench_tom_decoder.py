"""Benchmark: one ToM decoder fit (soft-target softmax regression), in the inputs' row space or not.

Figure 11's decoding fits (layers x penalties + 1) decoders per target,
distribution and split seed, with fewer samples than hidden units, so the
fit's cost decides the decode job's time. The fit runs L-BFGS either on
D x K weights or, exactly, on r x K in the row space of the standardised
training rows (r <= n). Prints seconds per fit and the largest difference of
the two fits' predictions.

    python bench/bench_tom_decoder.py --n 200 --dims 576 2048 4096 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import softmax

from syncr2.analysis.tom_decoder import fit_softmax


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="training rows")
    ap.add_argument("--dims", type=int, nargs="+", default=[576, 2048, 4096], help="hidden sizes D")
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--C", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"n={args.n} K={args.classes} C={args.C}")
    print(f"{'D':>6} {'full s/fit':>11} {'row space s/fit':>16} {'speed-up':>9} {'max |dp|':>10}")
    for d in args.dims:
        X = rng.normal(size=(args.n, d))
        q = softmax(X[:, :16] @ rng.normal(size=(16, args.classes)) / 4, axis=1)
        times, preds = {}, {}
        for row_space in (False, True):
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                dec = fit_softmax(X, q, args.C, row_space=row_space)
            times[row_space] = (time.perf_counter() - t0) / args.repeats
            preds[row_space] = dec.predict(X)
        diff = np.abs(preds[True] - preds[False]).max()
        print(f"{d:>6} {times[False]:>11.3f} {times[True]:>16.3f} {times[False] / times[True]:>8.1f}x {diff:>10.2e}")


if __name__ == "__main__":
    main()
