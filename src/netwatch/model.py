"""Small frozen types every part of netwatch shares: samples, outcomes, observations.

Probes produce an :class:`Outcome`; the scheduler wraps it into an :class:`Observation`; the sink
writes its :class:`Sample` objects and the state tracker reads its up/reason. Nothing here knows
about InfluxDB, SNMP or the config file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

#: Why a check came out the way it did. A closed set because it becomes an InfluxDB tag.
Reason = Literal[
    "ok",
    "timeout",
    "refused",
    "unreachable",
    "dns",
    "auth",
    "protocol",
    "bad_status",
    "bad_content",
    "tls",
    "redirects",
    "error",
]
REASONS: frozenset[str] = frozenset(get_args(Reason))

FieldValue = int | float | str | bool


def now_ns() -> int:
    """Return the wall-clock time in nanoseconds, the timestamp of a sample collected now."""
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class Sample:
    """One InfluxDB point: what was measured, about whom, and when it was collected."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one check of one device.

    ``detail`` is free text for logs and the CLI (never a tag); ``samples`` are the points the
    check produced, timestamped at collection.
    """

    up: bool
    reason: Reason
    detail: str = ""
    samples: tuple[Sample, ...] = ()
    #: Per-port state a check learned (port name -> oper up), used for span state.
    ports_up: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """An outcome placed in context: which device and check, when it ran and for how long."""

    device: str
    check: str
    outcome: Outcome
    started_ns: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class PortRef:
    """A port the inventory names on a device, and the span it ends, if any."""

    name: str
    link: str | None = None
    lessee: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a probe needs to know about the device it checks (runtime, not config)."""

    device: str
    site: str
    kind: str
    address: str
    #: Ports to poll, by the name the device gives them (ifName, or ifDescr as a fallback).
    ports: tuple[PortRef, ...] = ()

    def base_tags(self) -> dict[str, str]:
        """Return the tags every per-device measurement carries."""
        return {"device": self.device, "site": self.site, "kind": self.kind}
