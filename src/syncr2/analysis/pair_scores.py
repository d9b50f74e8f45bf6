"""One row per unordered model pair: its social performance and its SyncR2 scores.

docs/protocol.md, "Pair scores and error bars", and docs/analyses.md,
"Statistics". The synchrony summary is keyed by ORDERED pair ``{m1}__{m2}``
(m1 speaks first); the performance table's ``averaged`` and ``one_order``
rows by the UNORDERED pair ``{a}__{b}`` with a before b in the config's model
order. An unordered pair {a, b} is scored by

* ``syncr2_four_way``: the mean of A->B and B->A of both speaking orders
  (a, b) and (b, a) -- the authors' Figure 6 score (a same-model pair has one
  order, so the mean of its two directions);
* ``syncr2_atob``: the mean of A->B over both orders -- the Table 1 score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PAIR_SCORE_COLUMNS = (
    "pair", "model_a", "model_b", "family",
    "performance_averaged", "performance_one_order", "syncr2_four_way", "syncr2_atob", "orders", "syncr2_score",
)


def split_pair(pair: str) -> tuple[str, str]:
    """``"m1__m2"`` -> ("m1", "m2"); a key without the separator is an error."""
    if "__" not in pair:
        raise ValueError(f"pair key {pair!r} is not of the form '{{m1}}__{{m2}}'")
    m1, m2 = pair.split("__", 1)
    return m1, m2


def unordered_key(m1: str, m2: str, model_order: Sequence[str]) -> tuple[str, str]:
    """The two models with the one earlier in ``model_order`` first."""
    rank = {m: i for i, m in enumerate(model_order)}
    for m in (m1, m2):
        if m not in rank:
            raise ValueError(f"model {m!r} is not in the configured model order {list(model_order)}")
    return (m1, m2) if rank[m1] <= rank[m2] else (m2, m1)


def family_of(m1: str, m2: str, families: Mapping[str, str]) -> str:
    """Both models' family if they share one, else "Cross"."""
    for m in (m1, m2):
        if m not in families:
            raise ValueError(f"model {m!r} has no family in the config")
    return families[m1] if families[m1] == families[m2] else "Cross"


def _performance_lookup(performance: pd.DataFrame, level: str, model_order: Sequence[str]) -> dict[tuple[str, str], float]:
    missing = [c for c in ("level", "pair", "overall") if c not in performance.columns]
    if missing:
        raise ValueError(f"performance table lacks column(s) {', '.join(missing)}")
    rows = performance[performance["level"] == level]
    out: dict[tuple[str, str], float] = {}
    for pair, value in zip(rows["pair"], rows["overall"]):
        key = unordered_key(*split_pair(pair), model_order)
        if key in out:
            raise ValueError(f"performance table has two '{level}' rows for pair {key[0]}__{key[1]}")
        out[key] = float(value)
    return out


def pair_scores(
    summary: pd.DataFrame,
    performance: pd.DataFrame,
    families: Mapping[str, str],
    model_order: Sequence[str],
    condition: str = "experimental",
    score: str = "clipped",
) -> pd.DataFrame:
    """Performance and SyncR2 of every unordered pair found in either input.

    ``score`` picks the SyncR2 correlated: ``clipped`` (the paper's, floored at 0
    per source layer) or ``unclipped`` (the ``syncr2_unclipped`` column: the one
    that still varies when every best-target R2 is negative, as in the demo).

    Every speaking order of a pair that the study ran needs its A->B and B->A
    rows of ``condition`` in ``summary`` (the paper runs both orders; a config
    may list one, and ``orders`` records which were used), and the pair needs
    its ``averaged`` and ``one_order`` rows in ``performance``; anything
    missing raises a ValueError naming the pair.
    """
    scores = {"clipped": "syncr2", "unclipped": "syncr2_unclipped"}
    if score not in scores:
        raise ValueError(f"score must be one of {sorted(scores)}, got {score!r}")
    value_column = scores[score]
    missing = [c for c in ("pair", "condition", "direction", value_column) if c not in summary.columns]
    if missing:
        raise ValueError(f"synchrony summary lacks column(s) {', '.join(missing)}")
    sync_rows = summary[(summary["condition"] == condition) & summary["direction"].isin(["AtoB", "BtoA"])]
    sync: dict[tuple[str, str, str], float] = {}
    for pair, direction, value in zip(sync_rows["pair"], sync_rows["direction"], sync_rows[value_column]):
        m1, m2 = split_pair(pair)
        if (m1, m2, direction) in sync:
            raise ValueError(f"synchrony summary has two {condition} {direction} rows for pair {pair}")
        sync[(m1, m2, direction)] = float(value)
    averaged = _performance_lookup(performance, "averaged", model_order)
    one_order = _performance_lookup(performance, "one_order", model_order)

    keys = {unordered_key(m1, m2, model_order) for m1, m2, _ in sync} | set(averaged) | set(one_order)
    rank = {m: i for i, m in enumerate(model_order)}
    rows = []
    for a, b in sorted(keys, key=lambda k: (rank[k[0]], rank[k[1]])):
        name = f"{a}__{b}"
        both = [(a, b)] if a == b else [(a, b), (b, a)]
        # the speaking orders this study ran (a config may list one order of a pair only)
        orders = [o for o in both if any((*o, d) in sync for d in ("AtoB", "BtoA"))]
        lacks = [] if orders else [f"{condition} SyncR2 of either order"]
        lacks += [f"{condition} {d} SyncR2 of order {m1}__{m2}"
                  for m1, m2 in orders for d in ("AtoB", "BtoA") if (m1, m2, d) not in sync]
        lacks += [f"'{lvl}' performance" for lvl, table in (("averaged", averaged), ("one_order", one_order))
                  if (a, b) not in table]
        if lacks:
            raise ValueError(f"pair {name}: missing {'; '.join(lacks)}")
        if len(orders) < len(both):
            log.warning("pair %s: only the order %s__%s was run; its scores use that order alone", name, *orders[0])
        rows.append({
            "pair": name, "model_a": a, "model_b": b, "family": family_of(a, b, families),
            "performance_averaged": averaged[(a, b)],
            "performance_one_order": one_order[(a, b)],
            "syncr2_four_way": float(np.mean([sync[(m1, m2, d)] for m1, m2 in orders for d in ("AtoB", "BtoA")])),
            "syncr2_atob": float(np.mean([sync[(m1, m2, "AtoB")] for m1, m2 in orders])),
            "orders": " ".join(f"{m1}__{m2}" for m1, m2 in orders),
            "syncr2_score": score,
        })
    frame = pd.DataFrame(rows, columns=list(PAIR_SCORE_COLUMNS))
    if "family" in performance.columns:
        perf_fam = performance[performance["level"] == "averaged"]
        for pair, fam in zip(perf_fam["pair"], perf_fam["family"]):
            key = "__".join(unordered_key(*split_pair(pair), model_order))
            ours = frame.loc[frame["pair"] == key, "family"]
            if len(ours) and ours.iloc[0] != fam:
                log.warning("pair %s: performance table says family %r, the config gives %r", key, fam, ours.iloc[0])
    log.info("pair scores: %d unordered pairs", len(frame))
    return frame
