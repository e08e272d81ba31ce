"""Flap detection in the manner of Nagios and Icinga: the weighted share of recent state changes.

Each (rule, entity) keeps its last :data:`HISTORY` check results (condition true or false). Of the
20 places where two neighbouring results can differ, each change counts with a weight that rises
linearly from 0.8 for the oldest to 1.2 for the newest, so a burst of recent changes weighs more
than the same number long ago; the percent state change is the weighted count over 20, times 100.
An entity starts flapping when that share rises above ``start`` (50 % by default) and stops when
it falls below ``stop`` (25 %): the gap between the two keeps it from flapping about flapping.

A history shorter than :data:`HISTORY` is padded at the old end with "condition false" (an entity
nobody has seen misbehave is taken as having been fine), so a new entity and one that has been
quiet for 21 checks behave alike. The history is a string of ``0``/``1``, oldest first: compact to
store and easy to read in the state database.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final, Literal

#: Check results kept per (rule, entity), as in Nagios (MAX_STATE_HISTORY_ENTRIES).
HISTORY: Final = 21
#: Weight of a change between the two oldest results, and between the two newest.
LOW_WEIGHT: Final = 0.8
HIGH_WEIGHT: Final = 1.2

#: A history in which nothing has happened.
QUIET: Final = "0" * HISTORY

_SLOTS: Final = HISTORY - 1
_WEIGHTS: Final = tuple(LOW_WEIGHT + (HIGH_WEIGHT - LOW_WEIGHT) * i / (_SLOTS - 1) for i in range(_SLOTS))

FlapEvent = Literal["started", "stopped"]


def pad(history: str) -> str:
    """Return ``history`` padded with quiet results at the old end, cut to the last :data:`HISTORY`."""
    return history[-HISTORY:].rjust(HISTORY, "0")


def record(history: str, result: bool) -> str:
    """Return the history with one more check result at the new end."""
    return pad(history + ("1" if result else "0"))


def percent_state_change(history: str) -> float:
    """Return the weighted percent state change (0-100) of a history of ``0``/``1`` results."""
    full = pad(history)
    changed = sum(w for w, (a, b) in zip(_WEIGHTS, itertools.pairwise(full), strict=True) if a != b)
    return 100.0 * changed / _SLOTS


@dataclass(frozen=True, slots=True)
class FlapThresholds:
    """When an entity starts and stops flapping, in percent state change."""

    start: float = 50.0
    stop: float = 25.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.stop < self.start <= 100.0:
            raise ValueError(f"flap thresholds need 0 <= stop < start <= 100, got stop={self.stop} start={self.start}")


def judge(history: str, flapping: bool, thresholds: FlapThresholds) -> FlapEvent | None:
    """Return whether an entity with this history starts or stops flapping now, or None."""
    pct = percent_state_change(history)
    if not flapping and pct > thresholds.start:
        return "started"
    if flapping and pct < thresholds.stop:
        return "stopped"
    return None
