"""Conditions, directions and split sizes: the vocabulary every stage shares.

The workflow's config checks (``core.config``) and the synchrony stage's
datasets both need to parse a condition name, know which agent speaks first in
a direction and size a fixed split; keeping them here lets the config checks
run before any stage is imported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DIRECTIONS = ("AtoB", "BtoA")
_LAG_RE = re.compile(r"^lag([1-9][0-9]*)$")


class DatasetError(ValueError):
    """A condition dataset cannot be built as asked (too few samples, bad lag...)."""


@dataclass(frozen=True)
class Condition:
    """A parsed condition name: which source run and which lag."""

    name: str
    source_kind: str  # "genuine" | "passive"
    lag: int

    @classmethod
    def parse(cls, name: str) -> "Condition":
        if name == "experimental":
            return cls(name, "genuine", 0)
        if name == "passive":
            return cls(name, "passive", 0)
        m = _LAG_RE.match(name)
        if m:
            return cls(name, "genuine", int(m.group(1)))
        raise DatasetError(f"unknown condition {name!r}: use 'experimental', 'passive' or 'lagK' with K >= 1")

    @classmethod
    def at_lag(cls, lag: int) -> "Condition":
        """The genuine condition at ``lag`` partner turns: ``experimental`` at 0, ``lagK`` above, ``lag-K``
        below (the lag profile's negative lags: the target is the partner's EARLIER turn t + 1 - 2K)."""
        lag = int(lag)
        return cls("experimental" if lag == 0 else f"lag{lag}", "genuine", lag)


def direction_speakers(direction: str) -> tuple[int, int]:
    """(source speaker, target speaker) of a direction."""
    if direction == "AtoB":
        return 1, 2
    if direction == "BtoA":
        return 2, 1
    raise DatasetError(f"unknown direction {direction!r}: use one of {DIRECTIONS}")


def split_sizes(size: int, test_fraction: float = 0.2) -> tuple[int, int]:
    """(minimum train, minimum test) sample counts of a fixed-size split."""
    if size < 2:
        raise DatasetError(f"sample size must be >= 2, got {size}")
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = math.ceil(size * test_fraction - 1e-9)
    return size - n_test, n_test
