"""Social performance from the judge's scores (docs/analyses.md, "Social performance";
docs/architecture.md, "Data contracts").

Per agent per task-seed: the sum of its scores / 7 (Sotopia's overall
score); per task: the mean over its valid seeds; per ordered pair and agent:
the mean over tasks (each task weighted equally); an ordered pair: the mean
of its two agents. The same for ``goal`` alone. An unordered pair is scored
``averaged`` (mean of both speaking orders, Figure 6) and ``one_order``
(Table 1).

Two policies decide what a task-seed's scores mean:

- ``authors`` (their ``get_scores``): every score an agent's dict holds is
  summed as the number it is (a float the ``authors`` parse rule kept adds
  its value, as their ``d1_sum += v[1]`` did), extra keys included, then
  divided by 7; a missing key adds 0; a task-seed whose ``goal`` is missing
  for either agent is dropped for both; ranges are not checked. A reply the
  parse rule marked invalid (their ``eval`` failed, or their ``get_scores``
  would have raised) is dropped.
- ``strict``: both agents must have all 7 dimensions as integers in
  sotopia's ranges, else the task-seed is invalid; extra keys are not summed
  (the parser flags them). The eval table stores scores as floats, so an
  episode whose ``flags`` (where the table has them) say ``not_integer`` is
  invalid too: a judge's 7.0 is no integer.

Dropped task-seeds are counted per ordered pair (``n_invalid``), never
averaged in silently.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_table
from ..core.settings import PairNaming
from .judge_prompt import DIMENSIONS, RANGES

log = logging.getLogger(__name__)

POLICIES = ("authors", "strict")
LEVELS = ("ordered", "averaged", "one_order")
PERFORMANCE_COLUMNS = (
    "level", "pair", "model_a", "model_b", "family", "overall", "goal", "n_valid", "n_invalid",
    "overall_agent1", "overall_agent2", "orders",
)
CROSS_FAMILY = "Cross"
_EPISODE_KEYS = ["model1", "model2", "seed", "task_id"]
_NEEDED = ("pair", "model1", "model2", "seed", "task_id", "agent", "dimension", "score", "status")


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"performance policy must be one of {', '.join(POLICIES)}; got {policy!r}")


def _is_int(value: object) -> bool:
    """An integer score (a bool is not one)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: object) -> bool:
    """A score the ``authors`` policy sums: an integer or a float that is not NaN (a bool is not one)."""
    if _is_int(value):
        return True
    return isinstance(value, (float, np.floating)) and not math.isnan(value)


def _number(value: object) -> int | float:
    """A score as a Python int or float."""
    return int(value) if _is_int(value) else float(value)  # type: ignore[arg-type]


def _from_table(score: object) -> int | float | None:
    """A score of the eval table (nullable, float or integer dtype): None, an int when integral, else a float."""
    if pd.isna(score):
        return None
    value = float(score)  # type: ignore[arg-type]
    return int(value) if value.is_integer() else value


def agent_overall(scores_by_dim: Mapping[str, int | float | None], policy: str) -> float | None:
    """One agent's overall score of one task-seed under ``policy``; None when the policy rejects it.

    ``authors``: None without a numeric ``goal``; else the sum of every
    numeric score present, floats included (extra keys included) / 7.
    ``strict``: None unless all 7 dimensions are integers in range; else
    their sum / 7.
    """
    _check_policy(policy)
    if policy == "authors":
        if not _is_number(scores_by_dim.get("goal")):
            return None
        return sum(_number(v) for v in scores_by_dim.values() if _is_number(v)) / len(DIMENSIONS)
    total = 0
    for name, (low, high) in RANGES.items():
        value = scores_by_dim.get(name)
        if not _is_int(value) or not low <= int(value) <= high:
            return None
        total += int(value)
    return total / len(DIMENSIONS)


def agent_goal(scores_by_dim: Mapping[str, int | float | None], policy: str) -> float | None:
    """One agent's goal score of one task-seed; None wherever :func:`agent_overall` is None."""
    if agent_overall(scores_by_dim, policy) is None:
        return None
    return float(scores_by_dim["goal"])  # type: ignore[arg-type]


def episode_scores(eval_frame: pd.DataFrame, policy: str) -> pd.DataFrame:
    """One row per episode (model1, model2, seed, task_id): ``valid``, ``overall_agent{1,2}``, ``goal_agent{1,2}``.

    An episode is valid when its parse status is "valid" and the policy
    accepts both agents' scores (under ``strict``, also when the table has
    ``flags`` and they hold no ``not_integer``); its scores are NaN otherwise.
    """
    _check_policy(policy)
    missing = [c for c in _NEEDED if c not in eval_frame.columns]
    if missing:
        raise ValueError(f"eval table lacks column(s) {', '.join(missing)}")
    bad_pair = eval_frame["pair"] != eval_frame["model1"].astype(str) + "__" + eval_frame["model2"].astype(str)
    if bad_pair.any():
        row = eval_frame.loc[bad_pair].iloc[0]
        raise ValueError(f"eval table: pair {row['pair']!r} is not model1__model2 ({row['model1']}, {row['model2']})")
    if eval_frame.duplicated(_EPISODE_KEYS + ["agent", "dimension"]).any():
        row = eval_frame.loc[eval_frame.duplicated(_EPISODE_KEYS + ["agent", "dimension"])].iloc[0]
        raise ValueError(
            f"eval table: ({row['pair']}, seed {row['seed']}, task {row['task_id']}, agent {row['agent']}, "
            f"{row['dimension']}) appears more than once"
        )
    episodes: dict[tuple, dict] = {}
    cols = _EPISODE_KEYS + ["agent", "dimension", "score", "status"]
    flags = eval_frame["flags"] if "flags" in eval_frame.columns else pd.Series("", index=eval_frame.index)
    rows_in = zip(eval_frame[cols].itertuples(index=False, name=None), flags.fillna("").astype(str))
    for (m1, m2, seed, task, agent, dim, score, status), flag in rows_in:
        key = (m1, m2, int(seed), int(task))
        ep = episodes.setdefault(key, {"status": status, "not_integer": False, 1: {}, 2: {}})
        if ep["status"] != status:
            raise ValueError(f"eval table: episode {key} has rows with status {ep['status']!r} and {status!r}")
        if int(agent) not in (1, 2):
            raise ValueError(f"eval table: episode {key} has agent {agent!r}")
        ep[int(agent)][str(dim)] = _from_table(score)
        ep["not_integer"] = ep["not_integer"] or "not_integer:" in flag
    rows = []
    for (m1, m2, seed, task), ep in episodes.items():
        overall = [agent_overall(ep[a], policy) for a in (1, 2)]
        valid = ep["status"] == "valid" and all(o is not None for o in overall)
        if policy == "strict" and ep["not_integer"]:
            valid = False
        goal = [agent_goal(ep[a], policy) for a in (1, 2)] if valid else [None, None]
        nan = float("nan")
        rows.append({
            "model1": m1, "model2": m2, "seed": seed, "task_id": task, "valid": valid,
            "overall_agent1": overall[0] if valid else nan, "overall_agent2": overall[1] if valid else nan,
            "goal_agent1": goal[0] if valid else nan, "goal_agent2": goal[1] if valid else nan,
        })
    columns = _EPISODE_KEYS + ["valid", "overall_agent1", "overall_agent2", "goal_agent1", "goal_agent2"]
    return pd.DataFrame(rows, columns=columns).astype({"valid": bool})


def _ordered_scores(episodes: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """Per ordered pair: both agents' overall and goal (task means of seed means), n_valid, n_invalid."""
    out = {}
    score_cols = ["overall_agent1", "overall_agent2", "goal_agent1", "goal_agent2"]
    for (m1, m2), group in episodes.groupby(["model1", "model2"], sort=False):
        valid = group[group["valid"]]
        per_task = valid.groupby("task_id")[score_cols].mean()  # mean over the task's valid seeds
        means = per_task.mean() if len(per_task) else pd.Series(np.nan, index=score_cols)  # tasks weighted equally
        out[(str(m1), str(m2))] = {
            "overall_agent1": float(means["overall_agent1"]), "overall_agent2": float(means["overall_agent2"]),
            "overall": float((means["overall_agent1"] + means["overall_agent2"]) / 2),
            "goal": float((means["goal_agent1"] + means["goal_agent2"]) / 2),
            "n_valid": int(group["valid"].sum()), "n_invalid": int((~group["valid"]).sum()),
        }
    return out


def _family(a: str, b: str, families: Mapping[str, str]) -> str:
    """Both models' family when equal, else "Cross"."""
    for m in (a, b):
        if m not in families:
            raise ValueError(f"no family for model {m!r}; known: {sorted(families)}")
    return families[a] if families[a] == families[b] else CROSS_FAMILY


def _combine(orders: list[tuple[str, str]], ordered: Mapping[tuple[str, str], dict]) -> dict:
    """Mean overall and goal over the given orders (NaN stays NaN), counts summed."""
    if not orders:
        return {"overall": math.nan, "goal": math.nan, "n_valid": 0, "n_invalid": 0, "orders": ""}
    return {
        "overall": float(np.mean([ordered[o]["overall"] for o in orders])),
        "goal": float(np.mean([ordered[o]["goal"] for o in orders])),
        "n_valid": sum(ordered[o]["n_valid"] for o in orders),
        "n_invalid": sum(ordered[o]["n_invalid"] for o in orders),
        "orders": ";".join(f"{m1}__{m2}" for m1, m2 in orders),
    }


def performance_table(
    eval_frame: pd.DataFrame,
    families: Mapping[str, str],
    policy: str,
    one_order_first_family: str = "Mistral",
    model_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The performance table (``results/summary/performance.parquet``), columns :data:`PERFORMANCE_COLUMNS`.

    ``ordered`` rows: one per ordered pair in the eval table (model_a plays
    agent 1), with ``overall_agent1`` / ``overall_agent2``. ``averaged``: per
    unordered pair, the mean over the speaking orders present (``orders``
    names them; a same-model pair has one). ``one_order``: for a pair of one
    family (same-model pairs included) the order (model_a, model_b) of the
    unordered key, i.e. the model earlier in ``model_order`` plays agent 1;
    for a Cross pair the order whose agent 1 is of ``one_order_first_family``
    (the key's order if neither or both are). If that order was not run the
    row has NaN scores, zero counts and empty ``orders``. Unordered keys are
    ``{a}__{b}`` with a before b in ``model_order`` (default: sorted model
    keys). ``n_valid`` / ``n_invalid`` count task-seeds.
    """
    _check_policy(policy)
    episodes = episode_scores(eval_frame, policy)
    return performance_from_ordered(_ordered_scores(episodes), families, one_order_first_family, model_order)


def performance_from_ordered(
    ordered: Mapping[tuple[str, str], dict],
    families: Mapping[str, str],
    one_order_first_family: str = "Mistral",
    model_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The performance table from per-ordered-pair scores (see :func:`performance_table` for the levels).

    ``ordered`` maps (model of agent 1, model of agent 2) to ``overall``,
    ``goal``, ``n_valid``, ``n_invalid``, ``overall_agent1``,
    ``overall_agent2``. The judge's scores and the known-answer study's
    planted scores (:func:`planted_performance`) both go through here.
    """
    present = sorted({m for pair in ordered for m in pair})
    order = list(model_order) if model_order is not None else present
    if len(set(order)) != len(order):
        raise ValueError(f"model_order repeats a model: {order}")
    unknown = [m for m in present if m not in order]
    if unknown:
        raise ValueError(f"model(s) {unknown} of the eval table are not in model_order {order}")
    rank = {m: i for i, m in enumerate(order)}
    rows = []
    for (m1, m2), s in sorted(ordered.items(), key=lambda kv: (rank[kv[0][0]], rank[kv[0][1]])):
        rows.append({
            "level": "ordered", "pair": f"{m1}__{m2}", "model_a": m1, "model_b": m2,
            "family": _family(m1, m2, families), **{k: s[k] for k in ("overall", "goal", "n_valid", "n_invalid")},
            "overall_agent1": s["overall_agent1"], "overall_agent2": s["overall_agent2"], "orders": f"{m1}__{m2}",
        })
    unordered = sorted({tuple(sorted(p, key=rank.__getitem__)) for p in ordered}, key=lambda p: (rank[p[0]], rank[p[1]]))
    one_order_rows = []
    for a, b in unordered:
        family = _family(a, b, families)
        both = [(a, b)] if a == b else [(a, b), (b, a)]
        base = {"pair": f"{a}__{b}", "model_a": a, "model_b": b, "family": family,
                "overall_agent1": math.nan, "overall_agent2": math.nan}
        rows.append({"level": "averaged", **base, **_combine([o for o in both if o in ordered], ordered)})
        chosen = (a, b)
        if family == CROSS_FAMILY and families[b] == one_order_first_family and families[a] != one_order_first_family:
            chosen = (b, a)
        if chosen not in ordered:
            log.warning("one_order performance of %s__%s: the order %s__%s was not run", a, b, *chosen)
        one_order_rows.append({"level": "one_order", **base, **_combine([chosen] if chosen in ordered else [], ordered)})
    frame = pd.DataFrame(rows + one_order_rows, columns=list(PERFORMANCE_COLUMNS))
    return frame.astype({"n_valid": "int64", "n_invalid": "int64", "overall": "float64", "goal": "float64",
                         "overall_agent1": "float64", "overall_agent2": "float64"})


def write_performance(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the performance table as Parquet, atomically; refuses a table without its columns."""
    return write_table(frame, path, PERFORMANCE_COLUMNS, "performance table")


def planted_performance(
    scores: Mapping[tuple[str, str], float],
    families: Mapping[str, str],
    one_order_first_family: str = "Mistral",
    model_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The performance table of a known-answer study: one planted overall score per ordered pair.

    Both agents and ``goal`` get the pair's planted value; counts are 1 valid,
    0 invalid (there is no judge to fail).
    """
    ordered = {
        pair: {"overall": float(v), "goal": float(v), "n_valid": 1, "n_invalid": 0,
               "overall_agent1": float(v), "overall_agent2": float(v)}
        for pair, v in scores.items()
    }
    return performance_from_ordered(ordered, families, one_order_first_family, model_order)


def run_performance(eval_paths: Sequence[str | os.PathLike[str]], naming: PairNaming, aggregation: str,
                    out: str | os.PathLike[str]) -> pd.DataFrame:
    """The performance table of every judged block, written to ``out``; invalid replies are logged, not hidden."""
    evals = pd.concat([pd.read_parquet(p) for p in eval_paths], ignore_index=True)
    table = performance_table(evals, naming.families, aggregation, naming.first_family, list(naming.model_order))
    write_performance(table, out)
    ordered = table[table["level"] == "ordered"]
    log.info("wrote %s: %d ordered pairs, %d valid and %d invalid episodes (aggregation %s)", out, len(ordered),
             int(ordered["n_valid"].sum()), int(ordered["n_invalid"].sum()), aggregation)
    for row in ordered[ordered["n_invalid"] > 0].itertuples():
        log.warning("%s: %d of %d episodes have an invalid judge reply (counted, not averaged)", row.pair,
                    row.n_invalid, row.n_invalid + row.n_valid)
    return table


def run_planted_performance(section: Mapping, pairs: Sequence[str], naming: PairNaming, conditions: Sequence[str],
                            directions: Sequence[str], out: str | os.PathLike[str],
                            truth_out: str | os.PathLike[str]) -> None:
    """The ``planted-performance`` step: the known-answer study's performance and its analytic truth table."""
    from ..synchrony.planted_study import PlantedStudy, analytic_table, planted_performance_scores, write_truth

    study = PlantedStudy.from_config(section)
    keyed = {p: tuple(p.split("__")) for p in pairs}
    frame = planted_performance(planted_performance_scores(study, keyed), naming.families, naming.first_family,
                                list(naming.model_order))
    write_performance(frame, out)
    write_truth(analytic_table(study, keyed, conditions, directions), truth_out)
    log.info("wrote %s and %s (%d pairs)", out, truth_out, len(keyed))
