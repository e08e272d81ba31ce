"""From transitions to pages: topology, maintenance, routing and timing, into the outbox.

The engine says what changed per (rule, entity); this decides who hears about it:

* A device (or anything on it) that is failing behind a down parent or span is ``unreachable``:
  it sends nothing of its own and is counted in the root cause's impact. If the root recovers
  and the device does not, it becomes its own root cause and its notice goes out then.
* Inside a maintenance window covering the entity, transitions are recorded (the ``alert``
  measurement) but not sent; what still fires when the window ends is sent then.
* A new incident waits ``group_wait`` before its first notice (a blip that clears at once pages
  nobody), is announced again every ``repeat_interval``, and its resolve is sent only to routes
  that were told it was firing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog

from netwatch.alerting.engine import AlertEngine, Transition
from netwatch.alerting.maintenance import MaintenanceCalendar
from netwatch.alerting.model import Event, Impact, Incident, Notification
from netwatch.alerting.routing import Route, Router
from netwatch.alerting.topology import Cause, Classification, Topology
from netwatch.model import Sample, now_ns

log = structlog.get_logger(__name__)

#: Rules whose firing makes a device or span count as down for root-cause analysis.
DEVICE_DOWN_RULES = frozenset({"device_down"})
SPAN_DOWN_RULES = frozenset({"span_down"})


class Enqueue(Protocol):
    def __call__(self, notification: Notification) -> bool: ...


@dataclass
class _Open:
    """An incident the engine says is firing (or flapping), and what was sent about it."""

    transition: Transition
    event: Event
    told: dict[str, float] = field(default_factory=dict)  # receiver -> when last told (ns)
    routes: tuple[Route, ...] = ()
    held: Literal["", "unreachable", "maintenance"] = ""


class AlertService:
    """Turn engine transitions into notifications, written as ``alert`` samples too."""

    def __init__(
        self,
        *,
        engine: AlertEngine,
        topology: Topology,
        calendar: MaintenanceCalendar,
        router: Router,
        enqueue: Enqueue | None,
        emit: Callable[[list[Sample]], None],
        site_names: Mapping[str, str] | None = None,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.engine = engine
        self._topology = topology
        self._calendar = calendar
        self._router = router
        self._enqueue = enqueue
        self._emit = emit
        self._site_names = dict(site_names or {})
        self._clock = clock
        self._open: dict[str, _Open] = {}
        self._down_devices: set[str] = set()
        self._down_links: set[str] = set()
        self._classification: Classification = topology.classify(set(), set())
        self.sent = 0
        self.held = 0
        for status in engine.status():  # incidents still firing from before a restart
            if status.state == "firing" or status.flapping:
                self._mark_down(status.rule, status.entity, up=False)

    def apply(self, *, topology: Topology, calendar: MaintenanceCalendar, router: Router) -> None:
        """Take a reloaded config's topology, maintenance and routes; open incidents stay."""
        self._topology, self._calendar, self._router = topology, calendar, router
        self._classification = topology.classify(self._down_devices, self._down_links)
        for item in self._open.values():
            item.routes = tuple(router.routes_for(item.transition.labels))

    # -- input ------------------------------------------------------------------------------------

    def observe(self, samples: Sequence[Sample]) -> None:
        """Evaluate samples against the rules and act on what changed."""
        self._handle(self.engine.observe_many(samples))

    def tick(self, now: int | None = None) -> None:
        """Advance timers (for, keep_firing_for, absence, group_wait, repeats, maintenance ends)."""
        now = self._clock() if now is None else now
        self._handle(self.engine.tick(now), now)

    def device_override(self, device: str) -> Literal["unreachable", "maintenance"] | None:
        """Return what a failing device's state really is, for the ``device`` measurement."""
        if self._calendar.covers("device", device, _when(self._clock())) is not None:
            return "maintenance"
        if self._classification.state(device) == "unreachable":
            return "unreachable"
        return None

    def open_incidents(self) -> list[Incident]:
        """Incidents firing now, with their impact (for the CLI and the API)."""
        return [self._incident(item) for item in self._open.values()]

    # -- decisions --------------------------------------------------------------------------------

    def _handle(self, transitions: Iterable[Transition], now: int | None = None) -> None:
        now = self._clock() if now is None else now
        samples: list[Sample] = []
        changed = False
        for t in transitions:
            if t.to == "pending":
                continue
            samples.append(self._alert_sample(t))
            if t.to in ("firing", "flapping"):
                changed |= self._mark_down(t.rule, t.entity, up=False)
                known = self._open.get(t.incident_id)
                event: Event = "flapping" if t.to == "flapping" else "firing"
                if known is None:
                    self._open[t.incident_id] = _Open(t, event, routes=tuple(self._router.routes_for(t.labels)))
                else:
                    known.transition, known.event = t, event
            else:  # resolved, flapping_stopped
                changed |= self._mark_down(t.rule, t.entity, up=True)
                item = self._open.pop(t.incident_id, None)
                if item is not None:
                    event = "resolved" if t.to == "resolved" else "flapping_stopped"
                    self._tell_resolved(item, t, event, now)
        if changed:
            self._classification = self._topology.classify(self._down_devices, self._down_links)
        if samples:
            self._emit(samples)
        self._flush(now)

    def _mark_down(self, rule: str, entity: str, *, up: bool) -> bool:
        target = (
            self._down_devices if rule in DEVICE_DOWN_RULES else self._down_links if rule in SPAN_DOWN_RULES else None
        )
        if target is None:
            return False
        before = len(target)
        (target.discard if up else target.add)(entity)
        return len(target) != before

    def _held(self, t: Transition, now: int) -> Literal["", "unreachable", "maintenance"]:
        kind, ident = self._subject(t)
        if self._calendar.covers(kind, ident, _when(now)) is not None:
            return "maintenance"
        device = t.labels.get("device")
        if kind == "device" or device:
            if self._classification.state(device or ident) == "unreachable":
                return "unreachable"
        elif kind == "link" and self._classification.links.get(ident) == "unreachable":
            return "unreachable"
        return ""

    @staticmethod
    def _subject(t: Transition) -> tuple[Literal["device", "link"], str]:
        if t.rule in SPAN_DOWN_RULES or ("link" in t.labels and "device" not in t.labels):
            return "link", t.labels.get("link", t.entity)
        return "device", t.labels.get("device", t.entity.split(":", 1)[0])

    def _incident(self, item: _Open, resolved_ns: int | None = None) -> Incident:
        t = item.transition
        kind, ident = self._subject(t)
        impact = Impact()
        if t.rule in DEVICE_DOWN_RULES or t.rule in SPAN_DOWN_RULES:
            impact = self._classification.impacts.get(Cause(kind, ident), Impact())
        summary = t.summary
        if impact.count:
            summary = f"{summary}: {impact.describe(self._site_names)}"
        return Incident(
            id=t.incident_id,
            rule=t.rule,
            entity=t.entity,
            severity=t.severity,
            labels=dict(t.labels),
            summary=summary,
            started_ns=t.started_ns,
            value=t.value,
            resolved_ns=resolved_ns,
            impact=impact,
        )

    def _flush(self, now: int) -> None:
        for item in self._open.values():
            held = self._held(item.transition, now)
            if held != item.held:
                if held:
                    log.info(
                        "alert_held",
                        incident=item.transition.incident_id,
                        rule=item.transition.rule,
                        entity=item.transition.entity,
                        because=held,
                    )
                item.held = held
            if held:
                continue
            incident: Incident | None = None
            for route in item.routes:
                for receiver in route.receivers:
                    last = item.told.get(receiver)
                    if last is None:
                        due = item.transition.started_ns + route.group_wait * 1e9
                        event: Event = item.event
                    else:
                        due = last + route.repeat_interval * 1e9
                        event = "repeat"
                    if now < due:
                        continue
                    incident = incident or self._incident(item)
                    self._send(Notification(receiver, event, incident, now))
                    item.told[receiver] = now

    def _tell_resolved(self, item: _Open, t: Transition, event: Event, now: int) -> None:
        if not item.told:
            if item.held:
                self.held += 1
            return  # nobody was told it fired (group_wait, maintenance, unreachable): say nothing
        item.transition = t
        incident = self._incident(item, resolved_ns=t.at_ns)
        for route in item.routes:
            if not route.send_resolved:
                continue
            for receiver in route.receivers:
                if receiver in item.told:
                    self._send(Notification(receiver, event, incident, now))

    def _send(self, notification: Notification) -> None:
        self.sent += 1
        log.info(
            "alert_notify",
            receiver=notification.receiver,
            what=notification.event,
            incident=notification.incident.id,
            summary=notification.incident.summary,
        )
        if self._enqueue is not None:
            self._enqueue(notification)

    def _alert_sample(self, t: Transition) -> Sample:
        tags = {"rule": t.rule, "entity": t.entity, "severity": t.severity}
        if t.labels.get("site"):
            tags["site"] = t.labels["site"]
        state = "firing" if t.to in ("firing", "flapping") else "resolved"
        fields: dict[str, float | str] = {"state": state, "incident": t.incident_id, "summary": t.summary}
        if t.value is not None:
            fields["value"] = float(t.value)
        return Sample("alert", tags, fields, t.at_ns)


def _when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)
