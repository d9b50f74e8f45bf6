"""Workflow configuration: the checks a JSON schema cannot express.

The Snakefile validates the config against ``workflow/schemas/`` first, then
calls :func:`check_config` with the number of selected tasks, so that a wrong
model key, a lag too long for the turn cap or a sample size the data cannot
fill fails before any job starts, with a message saying what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .conditions import Condition, direction_speakers, split_sizes


class ConfigError(ValueError):
    """The configuration cannot produce the requested study."""


def ordered_pairs(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ordered (m1, m2) pairs of the config; "all_ordered" = every ordered pair."""
    models = list(cfg["models"])
    if cfg["pairs"] == "all_ordered":
        return [(a, b) for a in models for b in models]
    return [(str(a), str(b)) for a, b in cfg["pairs"]]


def pair_key(m1: str, m2: str) -> str:
    return f"{m1}__{m2}"


def samples_per_episode(max_turns: int, direction: str, lag: int) -> int:
    """Most (source, target) pairs one episode of ``max_turns`` turns can give."""
    src_speaker, _ = direction_speakers(direction)
    first = src_speaker - 1  # first source turn: 0 (AtoB) or 1 (BtoA)
    last_source = max_turns - 1 - (1 + 2 * lag)  # latest t with target t + 1 + 2 lag in range
    if last_source < first:
        return 0
    return (last_source - first) // 2 + 1


def check_config(cfg: Mapping[str, Any], n_tasks: int) -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg`` for ``n_tasks`` tasks."""
    problems: list[str] = []
    models = cfg["models"]
    for m1, m2 in ordered_pairs(cfg):
        for m in (m1, m2):
            if m not in models:
                problems.append(
                    f"pairs: model key {m!r} is not defined under 'models' (defined: {', '.join(sorted(models))})"
                )
        if "__" in m1 or "__" in m2:
            problems.append(f"pairs: model keys may not contain '__' ({m1!r}, {m2!r})")
    for key, spec in models.items():
        if "/" in key or "__" in key:
            problems.append(f"models: key {key!r} may not contain '/' or '__' (it names files and pairs)")
    max_turns = int(cfg["generation"].get("max_turns", 16))
    seeds = len(cfg["seeds"])
    size = int(cfg["r2"]["size"])
    test_fraction = float(cfg["r2"].get("test_fraction", 0.2))
    try:
        split_sizes(size, test_fraction)
    except ValueError as exc:
        problems.append(f"r2: {exc}")
    if n_tasks < 2:
        problems.append(f"tasks: {n_tasks} task(s) selected; the group split needs at least 2")
    for name in cfg["conditions"]:
        cond = Condition.parse(name)
        for direction in cfg["directions"]:
            per_episode = samples_per_episode(max_turns, direction, cond.lag)
            if per_episode == 0:
                need = 2 * cond.lag + 2 + (direction == "BtoA")
                problems.append(
                    f"conditions: {name} with direction {direction} needs episodes of at least {need} turns "
                    f"but generation.max_turns is {max_turns}; raise max_turns or drop {name}"
                )
                continue
            capacity = per_episode * seeds * n_tasks
            if capacity < size:
                problems.append(
                    f"r2.size is {size} but {name} {direction} can give at most {capacity} samples "
                    f"({n_tasks} tasks x {seeds} seeds x {per_episode} per episode of {max_turns} turns); "
                    f"lower r2.size to <= {capacity} or add tasks/seeds"
                )
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def n_blocks(n_tasks: int, block_size: int) -> int:
    """Number of simulation blocks (jobs per pair and seed)."""
    return max(1, math.ceil(n_tasks / block_size))
