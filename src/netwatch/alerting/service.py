"""From transitions to pages: topology, maintenance, routing and timing, into the outbox.

The engine says what changed per (rule, entity); this decides who hears about it:

* A device (or anything on it) that is failing behind a down parent or span is ``unreachable``:
  it sends nothing of its own and is counted in the root cause's impact. If the root recovers
  and the device does not, it becomes its own root cause and its notice goes out then.
* Inside a maintenance window covering the entity, transitions are recorded (the ``alert``
  measurement) but not sent; what still fires when the window ends is sent then.
* An incident about a site as a whole (``park_wifi_down`` on ``wifi_service``) is held for
  maintenance when a window covers the site, and held as ``unreachable`` or ``maintenance`` when
  ``explain_site`` says the site's service is down only because of another fault or a window.
* An active silence (:mod:`silences`) whose matchers match the incident's labels holds it the
  same way: recorded (``held=silenced`` on the ``alert`` sample), not sent, and sent when the
  silence ends or is expired if it still fires. A resolve is held only for an incident nobody was
  told about: the resolve of one announced before the silence is sent, so the page it opened at
  the receiver is closed (Alertmanager mutes that resolve too, and the page stays open until the
  receiver times it out; netwatch prefers to close it).
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

from netwatch.alerting.engine import AlertEngine, AlertStatus, Transition
from netwatch.alerting.maintenance import MaintenanceCalendar
from netwatch.alerting.model import Event, Impact, Incident, Notification
from netwatch.alerting.routing import Route, Router
from netwatch.alerting.silences import Silence, Silences, SilenceSpec, silencing
from netwatch.alerting.topology import Cause, Classification, EntityKind, Topology
from netwatch.model import Sample, now_ns

log = structlog.get_logger(__name__)

#: Rules whose firing makes a device or span count as down for root-cause analysis.
DEVICE_DOWN_RULES = frozenset({"device_down"})
SPAN_DOWN_RULES = frozenset({"span_down"})


#: Why an open incident's notices are held back ("" when they are not).
Held = Literal["", "unreachable", "maintenance", "silenced"]


class Enqueue(Protocol):
    def __call__(self, notification: Notification) -> bool: ...


class NoticeStore(Protocol):
    """Where the service keeps which receivers were told each open incident fires
    (:class:`netwatch.alerting.store.AlertStore` implements it)."""

    def load_notices(self) -> dict[str, dict[str, int]]: ...

    def save_notice(self, incident: str, receiver: str, told_ns: int) -> None: ...

    def delete_notices(self, incidents: Iterable[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An open incident as the API and the CLI show it: why it is held, who was told."""

    incident: Incident
    state: Literal["firing", "flapping"]
    held: Held
    #: Ids of the active silences matching it (even when something else holds it first).
    silenced_by: tuple[str, ...]
    #: Receivers told it is firing.
    notified: tuple[str, ...]


@dataclass
class _Open:
    """An incident the engine says is firing (or flapping), and what was sent about it."""

    transition: Transition
    event: Event
    told: dict[str, float] = field(default_factory=dict)  # receiver -> when last told (ns)
    routes: tuple[Route, ...] = ()
    held: Held = ""
    #: When a down parent stopped explaining it: its own incident starts then (group_wait counts from here).
    released_ns: int | None = None


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
        silences: Silences | None = None,
        notices: NoticeStore | None = None,
    ) -> None:
        """Take over the incidents the engine still has firing (from before a restart).

        With ``notices``, who was told about each survives a restart: a still-firing incident is
        not announced again, its repeats keep their rhythm and its resolve goes to those told.
        """
        self.engine = engine
        self._topology = topology
        self._calendar = calendar
        self._router = router
        self._enqueue = enqueue
        self._emit = emit
        self._site_names = dict(site_names or {})
        self._clock = clock
        self.silences = silences if silences is not None else Silences(clock=clock)
        self._notices = notices
        self._open: dict[str, _Open] = {}
        self._down_devices: set[str] = set()
        self._down_links: set[str] = set()
        self._classification: Classification = topology.classify(set(), set())
        self.sent = 0
        self.held = 0
        #: Why a site's service is down when something else explains it (the state tracker's
        #: ``wifi_override``, set by the daemon): an incident on the site is held for that reason.
        self.explain_site: Callable[[str], Literal["unreachable", "maintenance"] | None] = lambda site: None
        told = notices.load_notices() if notices is not None else {}
        for status in engine.status():  # incidents still firing from before a restart
            if status.state == "firing" or status.flapping:
                self._mark_down(status.rule, status.entity, up=False)
                self._resume(status, told)
        self._classification = topology.classify(self._down_devices, self._down_links)
        if notices is not None and set(told) - set(self._open):
            notices.delete_notices(set(told) - set(self._open))

    def _resume(self, status: AlertStatus, told: Mapping[str, Mapping[str, int]]) -> None:
        """Reopen an incident announced before a restart (its id needs the announced start)."""
        if status.announced_ns is None:
            return  # never announced (or flapping with no incident): the engine speaks when it settles
        t = Transition(
            rule=status.rule,
            entity=status.entity,
            severity=status.severity,
            labels=status.labels,
            to="flapping" if status.flapping else "firing",
            value=status.value,
            started_ns=status.announced_ns,
            at_ns=status.last_seen_ns or status.announced_ns,
            summary=status.summary,
        )
        self._open[t.incident_id] = _Open(
            t,
            "flapping" if status.flapping else "firing",
            told={r: float(ns) for r, ns in told.get(t.incident_id, {}).items()},
            routes=tuple(self._router.routes_for(t.labels)),
        )

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

    def retire(self, transitions: Sequence[Transition], now: int | None = None) -> None:
        """Act on what a reload retired (the engine's ``apply``/``prune``): the resolve of an incident
        whose device, span or rule is gone goes to whoever was told it fired."""
        self._handle(transitions, now)

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

    def incidents(self, now: int | None = None) -> list[OpenIncident]:
        """Incidents firing or flapping now, with their impact, what holds them and who was told."""
        now = self._clock() if now is None else now
        active = self.silences.active(now)
        out = []
        for item in self._open.values():
            t = item.transition
            out.append(
                OpenIncident(
                    incident=self._incident(item),
                    state="flapping" if item.event == "flapping" else "firing",
                    held=self._held(t, now, active),
                    silenced_by=silencing(active, _match_labels(t)),
                    notified=tuple(sorted(item.told)),
                )
            )
        return out

    def unopened(self) -> list[AlertStatus]:
        """What the engine tracks that is not an open incident: pending, or flapping unannounced."""
        opened = {(item.transition.rule, item.transition.entity) for item in self._open.values()}
        return [s for s in self.engine.status() if (s.rule, s.entity) not in opened and s.state != "ok"]

    def add_silence(self, spec: SilenceSpec) -> Silence:
        """Create a silence; it holds matching incidents from now on (or from its start).

        Raises:
            SilenceInvalid: too many silences already.
        """
        silence = self.silences.add(spec)
        self._flush(self._clock())
        return silence

    def expire_silence(self, silence_id: str) -> Silence | None:
        """End a silence now; what it held and still fires is sent at once. ``None``: no such silence."""
        silence = self.silences.expire(silence_id)
        if silence is not None:
            self._flush(self._clock())
        return silence

    # -- decisions --------------------------------------------------------------------------------

    def _handle(self, transitions: Iterable[Transition], now: int | None = None) -> None:
        now = self._clock() if now is None else now
        recorded: list[Transition] = []
        changed = False
        for t in transitions:
            if t.to == "pending":
                continue
            recorded.append(t)
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
        if recorded:
            active = self.silences.active(now)
            self._emit([self._alert_sample(t, self._held(t, now, active)) for t in recorded])
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

    def _held(self, t: Transition, now: int, silences: Sequence[Silence]) -> Held:
        """Why the incident's notices are held now: maintenance, then topology, then silences."""
        kind, ident = self._subject(t)
        if self._calendar.covers(kind, ident, _when(now)) is not None:
            return "maintenance"
        device = t.labels.get("device")
        if kind == "site":
            explained = self.explain_site(ident)
            if explained is not None:
                return explained
        elif kind == "device" or device:
            if self._classification.state(device or ident) == "unreachable":
                return "unreachable"
        elif kind == "link" and self._classification.links.get(ident) == "unreachable":
            return "unreachable"
        if silences and silencing(silences, _match_labels(t)):
            return "silenced"
        return ""

    @staticmethod
    def _subject(t: Transition) -> tuple[EntityKind, str]:
        if t.rule in SPAN_DOWN_RULES or ("link" in t.labels and "device" not in t.labels):
            return "link", t.labels.get("link", t.entity)
        if "device" not in t.labels and "site" in t.labels:
            return "site", t.labels["site"]  # a site's own measurement (wifi_service)
        return "device", t.labels.get("device", t.entity.split(":", 1)[0])

    def _incident(self, item: _Open, resolved_ns: int | None = None) -> Incident:
        t = item.transition
        kind, ident = self._subject(t)
        impact = Impact()
        if (t.rule in DEVICE_DOWN_RULES or t.rule in SPAN_DOWN_RULES) and kind != "site":
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
        active = self.silences.active(now)
        for item in self._open.values():
            held = self._held(item.transition, now, active)
            if held != item.held:
                t = item.transition
                if held:
                    extra = {"silences": list(silencing(active, _match_labels(t)))} if held == "silenced" else {}
                    log.info("alert_held", incident=t.incident_id, rule=t.rule, entity=t.entity, because=held, **extra)
                else:
                    log.info("alert_released", incident=t.incident_id, rule=t.rule, entity=t.entity, was=item.held)
                    if item.held == "unreachable":
                        item.released_ns = now
                item.held = held
            if held:
                continue
            if not item.told and self.engine.clearing(item.transition.rule, item.transition.entity):
                # Already clearing before anyone heard of it: when a core switch comes back, its
                # dependents recover a poll or two later; a first page now would be one per child.
                continue
            incident: Incident | None = None
            for route in item.routes:
                for receiver in route.receivers:
                    last = item.told.get(receiver)
                    if last is None:
                        start = max(item.transition.started_ns, item.released_ns or 0)
                        due = start + route.group_wait * 1e9
                        event: Event = item.event
                    else:
                        due = last + route.repeat_interval * 1e9
                        event = "repeat"
                    if now < due:
                        continue
                    incident = incident or self._incident(item)
                    self._send(Notification(receiver, event, incident, now))
                    item.told[receiver] = now
                    if self._notices is not None:
                        self._notices.save_notice(incident.id, receiver, now)

    def _tell_resolved(self, item: _Open, t: Transition, event: Event, now: int) -> None:
        if not item.told:
            if item.held:
                self.held += 1
            return  # nobody was told it fired (group_wait, maintenance, unreachable, silenced): say nothing
        if self._notices is not None:
            self._notices.delete_notices([item.transition.incident_id])
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

    def _alert_sample(self, t: Transition, held: Held) -> Sample:
        tags = {"rule": t.rule, "entity": t.entity, "severity": t.severity}
        if t.labels.get("site"):
            tags["site"] = t.labels["site"]
        state = "firing" if t.to in ("firing", "flapping") else "resolved"
        fields: dict[str, float | str] = {"state": state, "incident": t.incident_id, "summary": t.summary}
        if t.value is not None:
            fields["value"] = float(t.value)
        if held:
            fields["held"] = held  # recorded, not sent: unreachable, maintenance or silenced
        return Sample("alert", tags, fields, t.at_ns)


def _when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _match_labels(t: Transition) -> Mapping[str, str]:
    """What silences match: the incident's labels, and its entity."""
    return {"entity": t.entity, **t.labels}
