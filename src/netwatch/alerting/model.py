"""The nouns of alerting, shared by the engine, topology, maintenance, routing and receivers.

Flow: every observation's samples are evaluated against the rules (:mod:`rules`) by the engine
(:mod:`engine`, one state machine per (rule, entity)); the engine's transitions are judged against
the topology (:mod:`topology`: is this the root cause or a casualty behind a down parent?) and the
maintenance calendar (:mod:`maintenance`); what survives becomes an :class:`Incident` change that
routing turns into :class:`Notification`\\ s for receivers, queued in the durable outbox
(:mod:`outbox`), which delivers them with retries and rate limits (:mod:`receivers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["critical", "warning", "info"]
#: States of one (rule, entity) state machine.
AlertState = Literal["ok", "pending", "firing"]
#: What a notification says happened to an incident.
Event = Literal["firing", "resolved", "flapping", "flapping_stopped", "repeat"]


def incident_id(rule: str, entity: str, started_ns: int) -> str:
    """Return the stable id of an incident: the idempotency key everywhere (webhook-id,
    PagerDuty dedup_key, Alertmanager label). Same rule, entity and start -> same id, so a retry
    or a restart never opens a second incident."""
    digest = hashlib.sha256(f"{rule}\0{entity}\0{started_ns}".encode()).hexdigest()
    return f"nw-{digest[:20]}"


@dataclass(frozen=True, slots=True)
class Impact:
    """What is dark behind a root cause: counts by site and kind, and the names."""

    devices: tuple[str, ...] = ()
    by_site: Mapping[str, int] = field(default_factory=dict)
    by_kind: Mapping[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.devices)

    def describe(self, site_names: Mapping[str, str] | None = None, limit: int = 3) -> str:
        """Return e.g. '9 devices unreachable behind it: 4 at Villa Parke, 5 at Brookside'."""
        if not self.devices:
            return ""
        names = site_names or {}
        sites = ", ".join(f"{n} at {names.get(s, s)}" for s, n in sorted(self.by_site.items(), key=lambda x: -x[1]))
        return f"{self.count} device{'s' if self.count != 1 else ''} unreachable behind it: {sites}"


@dataclass(frozen=True, slots=True)
class Incident:
    """One real problem: a (rule, entity) that is firing, with what it takes down with it."""

    id: str
    rule: str
    entity: str
    severity: Severity
    labels: Mapping[str, str]
    summary: str
    started_ns: int
    value: float | None = None
    resolved_ns: int | None = None
    impact: Impact = field(default_factory=Impact)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one receiver about one incident; ``key`` makes delivery idempotent."""

    receiver: str
    event: Event
    incident: Incident
    created_ns: int

    @property
    def key(self) -> str:
        return f"{self.incident.id}/{self.event}/{self.created_ns}"
