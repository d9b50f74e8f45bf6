"""The lag profile: SyncR2 at every lag from -K to +K, with a turn-rotation surrogate band.

docs/analyses.md, "Lag profile". When does the information appear? A source
turn t of one agent is paired with the partner's turn t + 1 + 2k:

* k = 0 is the ``experimental`` condition (the partner's next turn);
* k = 1, 2, ... are the ``lagK`` conditions (the partner's later turns);
* k = -1, -2, ... pair turn t with the partner's EARLIER turn t + 1 - 2|k|:
  with direction A->B, B's past predicted from A's present.

Each lag's real SyncR2 and SE come from the R2-table engine itself
(``synchrony.r2table.compute_r2_table`` on the same fixed-size splits), so
lag 0, 1 and 2 equal the experimental, lag1 and lag2 rows of the SyncR2
summary exactly. The band comes from R ``turn_rotation`` surrogate draws per
lag and direction (``analysis.surrogate``): each episode's targets rotated in
turn order, keeping each agent's own autocorrelation.

Table (``results/lag_profile/{pair}.parquet``; :data:`COLUMNS`, one row per
(direction, lag, score)): the real value and SE, the null mean, its 2.5 % and
97.5 % quantiles (the band), the empirical p and the sample count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_table
from ..core.conditions import Condition
from ..core.settings import Ridge, Split
from ..synchrony.datasets import build_dataset, open_by_speaker
from ..synchrony.r2table import compute_r2_table, r2_cube
from ..synchrony.sync import sync_r2
from .surrogate import null_stats, surrogate_draws

log = logging.getLogger(__name__)

COLUMNS = ("pair", "direction", "lag", "condition", "score", "value", "se", "null_mean", "null_lo", "null_hi",
           "p_empirical", "n_samples", "n_perm", "size")
SCORE_COLUMNS = {"clipped": ("syncr2", "real_syncr2"), "unclipped": ("syncr2_unclipped", "real_syncr2_unclipped")}


class LagProfileError(ValueError):
    """A lag profile cannot be computed as asked."""


def lag_rows(genuine: Sequence[str | os.PathLike[str]] | dict, direction: str, lag: int, split: Split, ridge: Ridge,
             n_perm: int, seed: int, device: str | None = None) -> list[dict]:
    """The rows (one per score) of one direction and lag."""
    cond = Condition.at_lag(lag)
    ds = build_dataset(genuine, cond, direction)
    cube = r2_cube(compute_r2_table(ds, split.size, split.split_seeds, alpha=ridge.alpha,
                                    test_fraction=split.test_fraction, device=device, progress=False))
    draws = surrogate_draws(ds, split.size, split.split_seeds, ["turn_rotation"], n_perm, ridge.alpha,
                            split.test_fraction, seed, device=device)
    rows = []
    for score, (null_col, _) in SCORE_COLUMNS.items():
        real = sync_r2(cube, clip=score == "clipped")
        null = draws[null_col].to_numpy()
        stats = null_stats(real.value, null)
        rows.append({"direction": direction, "lag": int(lag), "condition": cond.name, "score": score,
                     "value": real.value, "se": real.se, "null_mean": stats["null_mean"],
                     "null_lo": float(np.quantile(null, 0.025)), "null_hi": float(np.quantile(null, 0.975)),
                     "p_empirical": stats["p_empirical"], "n_samples": len(ds), "n_perm": n_perm,
                     "size": split.size})
    log.info("lag %+d %s: SyncR2 %.4f (unclipped %.4f), null band [%.4f, %.4f]", lag, direction, rows[0]["value"],
             rows[1]["value"], rows[1]["null_lo"], rows[1]["null_hi"])
    return rows


def lag_profile(genuine: Sequence[str | os.PathLike[str]], directions: Sequence[str], max_lag: int, split: Split,
                ridge: Ridge = Ridge(), n_perm: int = 19, seed: int = 0, pair: str = "",
                device: str | None = None) -> pd.DataFrame:
    """The lag-profile table of one pair (module docstring): every direction and lag -max_lag..max_lag."""
    if max_lag < 0:
        raise LagProfileError(f"max_lag must be >= 0, got {max_lag}")
    shards = open_by_speaker(genuine, "genuine")  # opened once for every lag
    rows = []
    for direction in directions:
        for lag in range(-max_lag, max_lag + 1):
            try:
                rows += lag_rows(shards, direction, lag, split, ridge, n_perm, seed, device)
            except ValueError as exc:
                raise LagProfileError(f"lag profile of {pair or 'the pair'}, lag {lag:+d} {direction}: {exc}; "
                                      f"lower analysis.lag_profile.max_lag") from exc
    frame = pd.DataFrame(rows)
    frame.insert(0, "pair", pair)
    return frame[list(COLUMNS)]


def run_lag_profile(genuine: Sequence[str | os.PathLike[str]], directions: Sequence[str], max_lag: int, split: Split,
                    out: str | os.PathLike[str], *, ridge: Ridge = Ridge(), n_perm: int = 19, seed: int = 0,
                    pair: str = "", device: str | None = None) -> Path:
    """Compute one pair's lag profile and write it atomically."""
    log.info("lag profile %s: lags %d..%d, directions %s, %d turn-rotation draws each", pair, -max_lag, max_lag,
             ",".join(directions), n_perm)
    frame = lag_profile(genuine, directions, max_lag, split, ridge, n_perm, seed, pair, device)
    path = write_table(frame, out, COLUMNS, "lag profile", LagProfileError, only=True)
    log.info("wrote %s (%d rows)", out, len(frame))
    return path
