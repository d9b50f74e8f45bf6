"""Figure 11: do representations carry one's own and the partner's emotions and speech acts?

docs/analyses.md, "Theory of Mind decoding". The ``tom`` condition's episodes
record, per turn, the speaker's emotion (8-way) and act (5-way) distribution
and the speaker's representations. For a turn t spoken by agent A (partner B):

* ``self_current``: A's distributions at t from A's representation at t (a sanity check);
* ``partner_previous``: A's distributions at t from B's representation at t+1 (Theory of Mind);
* ``partner_next``: B's distributions at t+1 from A's representation at t (predictive coding);
* ``self_next``: A's distributions at t+2 from A's representation at t (a reference).

Rows are grouped by the model whose representation is decoded (a pair of one
model pools both agents). Per (model, target, distribution) and split seed,
:func:`~.tom_decoder.decode_split` picks each layer's penalty and the layer
on a validation split inside the training tasks and reports the test-set KL
against the training-mean baseline. Only turns that followed the format
(``compliant``) give targets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..core.atomic import write_parquet
from ..core.settings import ToM
from ..core.shards import open_shard
from ..synchrony.r2_variants import strided_layers
from .tom_decoder import decode_split

log = logging.getLogger(__name__)

#: The decoding targets: (name, turn offset of the representation, turn offset of the distribution).
TARGETS = (("self_current", 0, 0), ("partner_previous", 1, 0), ("partner_next", 0, 1), ("self_next", 0, 2))
DISTRIBUTIONS = ("emotion", "act")
CURVE_COLUMNS = ("pair", "model", "target", "distribution", "split_seed", "layer", "C", "val_kl", "test_kl",
                 "baseline_kl", "chosen", "n_train", "n_test")
TASK_COLUMNS = ("pair", "model", "target", "distribution", "split_seed", "task_id", "n", "model_kl", "baseline_kl")


def load_turns(episode_paths: Sequence[str | os.PathLike[str]], shard_paths: Sequence[str | os.PathLike[str]]
               ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every ToM turn (episodes joined to their representation rows) and each model's (n, L, D) stack.

    The turns table has task_id, seed, turn, speaker, model_key, compliant,
    emotion_dist, act_dist and ``row``: the turn's row in its model's stack.
    """
    episodes = pd.concat([pd.read_parquet(p) for p in episode_paths], ignore_index=True)
    missing = [c for c in ("emotion_dist", "act_dist", "compliant") if c not in episodes.columns]
    if missing:
        raise ValueError(f"{episode_paths[0]}: not a ToM episodes table (lacks {', '.join(missing)}); "
                         "the tom condition's tables come from rule simulate_tom")
    stacks: dict[str, list[np.ndarray]] = {}
    parts = []
    for path in shard_paths:
        shard = open_shard(path)
        key = shard.meta.model_key
        idx = shard.index()
        offset = sum(len(a) for a in stacks.get(key, []))
        stacks.setdefault(key, []).append(np.stack([shard.layer(layer) for layer in range(shard.meta.n_layers)], 1))
        parts.append(idx.assign(model_key=key, row=np.arange(len(idx)) + offset))
    index = pd.concat(parts, ignore_index=True)
    turns = episodes.merge(index, on=["task_id", "seed", "turn", "speaker", "model_key"], how="inner",
                           validate="one_to_one")
    if len(turns) != len(episodes):
        raise ValueError(f"{len(episodes) - len(turns)} ToM turns have no representation row in the shards given")
    return turns, {k: np.concatenate(v) for k, v in stacks.items()}


def target_rows(turns: pd.DataFrame, target: str, distribution: str) -> pd.DataFrame:
    """Per usable sample of ``target``: the decoded model, its stack row, the target distribution, the task."""
    rep_off, dist_off = next((r, d) for name, r, d in TARGETS if name == target)
    key = ["task_id", "seed", "turn"]
    base = turns[key + ["speaker"]]
    rep = turns[key + ["model_key", "row"]].assign(turn=turns["turn"] - rep_off)
    dist = turns[key + ["compliant", f"{distribution}_dist"]].assign(turn=turns["turn"] - dist_off)
    rows = base.merge(rep, on=key).merge(dist, on=key)
    rows = rows[rows["compliant"]]
    return rows.rename(columns={f"{distribution}_dist": "q", "model_key": "model"}).reset_index(drop=True)


def decode_pair(turns: pd.DataFrame, stacks: dict[str, np.ndarray], pair: str, tom: ToM
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-layer curves, per-task test KLs) of every target, distribution and decoded model of a pair."""
    curves, tasks = [], []
    for target, _, _ in TARGETS:
        for dist in DISTRIBUTIONS:
            rows = target_rows(turns, target, dist)
            for model, part in rows.groupby("model", sort=True):
                X = stacks[model][part["row"].to_numpy()]
                q = np.stack(part["q"].to_numpy())
                groups = part["task_id"].to_numpy()
                if len(np.unique(groups)) < 3:
                    log.warning("%s %s %s (%s): %d samples in %d tasks: too few tasks to split, skipped",
                                pair, target, dist, model, len(part), len(np.unique(groups)))
                    continue
                layers = strided_layers(X.shape[1], tom.layer_stride)
                for seed in tom.split_seeds:
                    out = decode_split(X, q, groups, seed, tom.test_fraction, tom.val_fraction, tom.penalties, layers)
                    n_test = len(out.test_rows)
                    for c in out.curves:
                        curves.append({"pair": pair, "model": model, "target": target, "distribution": dist,
                                       "split_seed": int(seed), "layer": c["layer"], "C": c["C"],
                                       "val_kl": c["val_kl"], "test_kl": c["test_kl"],
                                       "baseline_kl": c["baseline_kl"], "chosen": c["chosen"],
                                       "n_train": len(part) - n_test, "n_test": n_test})
                    per = pd.DataFrame({"task_id": groups[out.test_rows], "model_kl": out.model_kl,
                                        "baseline_kl": out.baseline_kl})
                    agg = per.groupby("task_id").agg(n=("model_kl", "size"), model_kl=("model_kl", "mean"),
                                                     baseline_kl=("baseline_kl", "mean")).reset_index()
                    tasks.append(agg.assign(pair=pair, model=model, target=target, distribution=dist,
                                            split_seed=int(seed)))
                log.info("%s %s %s (%s): %d samples, %d tasks, %d split seeds", pair, target, dist, model,
                         len(part), len(np.unique(groups)), len(tom.split_seeds))
    curve_frame = pd.DataFrame(curves, columns=list(CURVE_COLUMNS))
    task_frame = (pd.concat(tasks, ignore_index=True)[list(TASK_COLUMNS)] if tasks
                  else pd.DataFrame(columns=list(TASK_COLUMNS)))
    return curve_frame, task_frame


def run_tom_decode(pair: str, tom: ToM, episode_paths: Sequence[str], shard_paths: Sequence[str],
                   curves_out: str | os.PathLike[str], tasks_out: str | os.PathLike[str]) -> None:
    """The ``tom-decode`` step: decode one pair's ToM episodes and write both tables."""
    turns, stacks = load_turns(episode_paths, shard_paths)
    log.info("%s: %d ToM turns, %d following the format", pair, len(turns), int(turns["compliant"].sum()))
    curves, tasks = decode_pair(turns, stacks, pair, tom)
    write_parquet(curves, curves_out)
    write_parquet(tasks, tasks_out)


SUMMARY_COLUMNS = ("pair", "model", "distribution", "target", "kl", "kl_se", "baseline", "baseline_se",
                   "improvement", "p_wilcoxon", "n_pairs", "layers", "n_split_seeds", "n_test")


def _se(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def summarize(curves: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, model, distribution, target): the chosen layer's test KL and the baseline over split
    seeds (mean, SE), the improvement, and a two-sided Wilcoxon signed-rank test of model against
    baseline KL over the (split seed, test task) means."""
    rows = []
    keys = ["pair", "model", "distribution", "target"]
    chosen = curves[curves["chosen"].astype(bool)]
    per_task = dict(iter(tasks.groupby(keys, sort=False))) if len(tasks) else {}
    for key, grp in chosen.groupby(keys, sort=True):
        sel = per_task.get(key, tasks.iloc[0:0])
        diff = (sel["baseline_kl"] - sel["model_kl"]).to_numpy(dtype=float)
        p = float(stats.wilcoxon(diff).pvalue) if len(diff) >= 2 and np.any(diff != 0) else float("nan")
        rows.append({**dict(zip(keys, key)), "kl": float(grp["test_kl"].mean()), "kl_se": _se(grp["test_kl"].to_numpy()),
                     "baseline": float(grp["baseline_kl"].mean()), "baseline_se": _se(grp["baseline_kl"].to_numpy()),
                     "improvement": float((grp["baseline_kl"] - grp["test_kl"]).mean()), "p_wilcoxon": p,
                     "n_pairs": len(diff), "layers": ",".join(str(v) for v in grp.sort_values("split_seed")["layer"]),
                     "n_split_seeds": len(grp), "n_test": int(grp["n_test"].sum())})
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    order = {name: i for i, (name, _, _) in enumerate(TARGETS)}
    rank = out["distribution"].map({d: i for i, d in enumerate(DISTRIBUTIONS)}) * 10 + out["target"].map(order)
    return out.assign(_rank=rank).sort_values(["pair", "model", "_rank"]).drop(columns="_rank").reset_index(drop=True)


def compliance(episode_paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """Per model: ToM turns, how many followed the format, and the rate."""
    frame = pd.concat([pd.read_parquet(p, columns=["model_key", "compliant"]) for p in episode_paths])
    out = frame.groupby("model_key")["compliant"].agg(turns="size", compliant="sum").reset_index()
    return out.rename(columns={"model_key": "model"}).assign(rate=lambda d: d["compliant"] / d["turns"])


def write_summary(summary: pd.DataFrame, rates: pd.DataFrame, out: str | os.PathLike[str]) -> pd.DataFrame:
    """Write and return the ToM summary with each model's compliance rate beside its rows; a model with
    too few compliant turns to decode keeps one row (its compliance, no KL), so free mode reports it."""
    rates = rates.rename(columns={"turns": "tom_turns", "compliant": "compliant_turns", "rate": "compliance"})
    table = summary.merge(rates, on="model", how="outer")
    numeric = ["kl", "kl_se", "baseline", "baseline_se", "improvement", "p_wilcoxon"]
    table[numeric] = table[numeric].astype(float)
    write_parquet(table, out)
    return table
