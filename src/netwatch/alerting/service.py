"""From transitions to pages: topology, maintenance, routing and timing, into the outbox.

The engine says what changed per (rule, entity); this decides who hears about it:

* A device (or anything on it) that is failing behind a down parent or span is ``unreachable``:
  it sends nothing of its own and is counted in the root cause's impact. If the root recovers
  and the device does not, it becomes its own root cause and its notice goes out then.
* A port alert (``interface_down``, ``optics_rx_low``, any rule on an ``interface`` or ``optics``
  port) on a port a down span lands on is the span going down seen from one end: it is held as
  ``unreachable`` too and named in the span's page. If the span recovers while the port stays
  bad, the port's own notice goes out then, as for a device behind a recovered parent.
* A first notice waits, like a longer ``group_wait``, while the facts that decide it are still
  coming in (Icinga's dependencies, Alertmanager's inhibition with a wait): a failing device
  whose parent is failing but not known down yet (degraded: one check failed, the others have
  not run since), a port whose span's ``link`` state says down before ``span_down`` fires, and a
  root cause that would stop being one or darken more once such devices are decided. It is
  decided when they are (the parent turns out up: the device's own page goes out; down: it is
  unreachable), and at the latest once each undecided device has had time to run every check:
  its settle time (longest check interval plus timeout, at most :data:`MAX_SETTLE_S`) plus
  ``device_down``'s ``for``, from when it started failing. A parent stuck degraded holds nothing
  longer than that, and nothing waits past that bound after the incident began.
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
from netwatch.alerting.maintenance import MaintenanceCalendar, Window
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

#: Longest a failing device is waited for to run all its checks (its settle time is capped at
#: this): a parent with an hourly check must not hold its children's pages for an hour.
MAX_SETTLE_S = 120.0

#: A time after every bound (ns): nothing waits on time alone.
_NEVER = 2**63

#: ``device.state`` values of a device with a failing check (``up`` is 1 while it is only degraded;
#: unreachable and maintenance are what the state tracker writes for a failing device instead).
_NOT_UP = frozenset({"degraded", "down", "unreachable", "maintenance"})


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
    #: Its first notice waits for undecided devices or spans (see AlertService._waiting).
    waiting: bool = False


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
        #: How (down or degraded) and since when (sample time, ns) each device's latest ``device``
        #: sample says it is failing, and each span's latest ``link`` sample says it is down.
        self._failing_since: dict[str, tuple[str, int]] = {}
        self._link_failing_since: dict[str, tuple[str, int]] = {}
        #: When each device last reported its state (sample time, ns).
        self._reported: dict[str, int] = {}
        #: The classification if every failing device and span not yet decided were down (see
        #: :meth:`_undecided`), the real one it was derived from, and until when it holds.
        self._undecided_view: Classification = self._classification
        self._undecided_of: Classification | None = None
        self._undecided_until = 0
        self._device_for_ns, self._span_for_ns = self._rule_for_ns()
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
        self._device_for_ns, self._span_for_ns = self._rule_for_ns()  # the engine's rules may have changed
        known = set(topology.devices)
        self._failing_since = {d: ns for d, ns in self._failing_since.items() if d in known}
        self._reported = {d: ns for d, ns in self._reported.items() if d in known}
        self._link_failing_since = {lk: ns for lk, ns in self._link_failing_since.items() if lk in topology.links}
        self._undecided_of = None
        for item in self._open.values():
            item.routes = tuple(router.routes_for(item.transition.labels))

    # -- input ------------------------------------------------------------------------------------

    def observe(self, samples: Sequence[Sample]) -> None:
        """Evaluate samples against the rules and act on what changed."""
        self._note_failing(samples)
        self._handle(self.engine.observe_many(samples))

    def _note_failing(self, samples: Sequence[Sample]) -> None:
        """Keep how and since when each device and span has been failing, by its latest state sample."""
        for sample in samples:
            if sample.measurement == "device":
                since, key = self._failing_since, sample.tags.get("device")
                if key is None:
                    continue
                self._reported[key] = max(sample.time_ns, self._reported.get(key, 0))
                # Degraded counts: a parent with one check failing may be down once the rest run.
                # Down and degraded are told apart, so that a device on its way back (down, then
                # degraded until its last failing check runs again) is undecided again for a while.
                how = "down" if sample.fields.get("up") == 0 else "degraded"
                failing = how == "down" or sample.fields.get("state") in _NOT_UP
            elif sample.measurement == "link":
                since, key = self._link_failing_since, sample.tags.get("link")
                if key is None:
                    continue
                how, failing = "down", sample.fields.get("up") == 0
            else:
                continue
            if not failing:
                if since.pop(key, None) is not None:
                    self._undecided_of = None
            elif since.get(key, ("", 0))[0] != how:
                since[key] = (how, sample.time_ns)
                self._undecided_of = None

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

    def maintenance_now(self, now: int | None = None) -> list[Window]:
        """The maintenance windows in force now (for the status page)."""
        return self._calendar.active(_when(self._clock() if now is None else now))

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
            # A port a down span lands on is down because the span is (a cut fibre takes the port
            # at each end down): that is the span's page, not one more per port.
            spans = self._port_spans(t)
            if spans and not self._down_links.isdisjoint(spans):
                return "unreachable"
        elif kind == "link" and self._classification.links.get(ident) == "unreachable":
            return "unreachable"
        if silences and silencing(silences, _match_labels(t)):
            return "silenced"
        return ""

    def _port_spans(self, t: Transition) -> tuple[str, ...]:
        """Return the spans that land on the port an incident is about (none if it is not about a port)."""
        device, port = t.labels.get("device"), t.labels.get("port")
        if device is None or port is None:
            return ()
        return self._topology.spans_at(device, port)

    def _waiting(self, item: _Open, now: int) -> bool:
        """Return whether an incident's first notice waits for facts not in yet (see the module doc).

        What is failing and undecided is judged by comparing the real classification with the one
        where all of it is down (:meth:`_undecided`): where they differ for this incident, what it
        is depends on those facts. A root cause also waits for the devices behind it to report once
        since it began, so that its page names what is dark. Never past :data:`MAX_SETTLE_S` and
        the rules' ``for`` after the incident began (or was released by a recovered parent).
        """
        t = item.transition
        kind, ident = self._subject(t)
        began = max(t.started_ns, item.released_ns or 0)
        if kind == "site" or now >= began + self._bound_ns(MAX_SETTLE_S):
            return False
        cause: Cause | None = None
        impact: Impact | None = None
        if t.rule in DEVICE_DOWN_RULES or t.rule in SPAN_DOWN_RULES:
            cause = Cause("device" if kind == "device" else "link", ident)
            impact = self._classification.impacts.get(cause)
        view = self._undecided(now)
        if view is not self._classification:
            device = t.labels.get("device") or (ident if kind == "device" else None)
            if device is not None:
                if self._classification.state(device) == "down" and view.state(device) == "unreachable":
                    return True  # its parent (or the span to it) is failing, not yet known down or up
                if any(view.links.get(span, "up") != "up" for span in self._port_spans(t)):
                    return True  # its span's link state says down and span_down has not fired yet
            if cause is not None and impact is not None:
                # A root cause now: would it stop being one, or darken more, once the rest is known?
                maybe = view.impacts.get(cause)
                if maybe is None or maybe.devices != impact.devices:
                    return True
        if cause is None or impact is None or self._device_for_ns is None:
            return False
        # What is behind a root cause goes dark only as its checks come round: one that has not
        # reported since the cause began may be about to join its impact (a span cut seen at the
        # near end's port before the park's devices have been polled).
        dark = set(impact.devices)
        for device in self._topology.behind(cause.kind, cause.id):
            if (
                device not in dark
                and self._reported.get(device, 0) < began
                and now < began + self._bound_ns(self._topology.settle_s(device))
            ):
                return True
        return False

    def _bound_ns(self, settle_s: float) -> int:
        """Return how long a device with this settle time may stay undecided (ns): its settle
        time, at most MAX_SETTLE_S, plus the device-down and span-down rules' ``for``."""
        return round(min(settle_s, MAX_SETTLE_S) * 1e9) + max(self._device_for_ns or 0, self._span_for_ns or 0)

    def _undecided(self, now: int) -> Classification:
        """Return the classification with every undecided device and span taken as down.

        Undecided: its latest sample says failing (a device degraded or down, a span down) while
        ``device_down``/``span_down`` has not fired for it, for no longer than it takes to know
        (its settle time, capped at :data:`MAX_SETTLE_S`, plus the rule's ``for``). Returns the real
        classification itself when nothing is undecided. Recomputed only when the failing set,
        the real classification or the time passes a bound: O(failing) plus, with anything
        undecided, one :meth:`Topology.classify`.
        """
        if self._undecided_of is self._classification and now < self._undecided_until:
            return self._undecided_view
        devices: set[str] = set()
        links: set[str] = set()
        until = _NEVER
        if self._device_for_ns is not None:  # without device_down, nothing ever decides "down"
            for device, (_, since) in self._failing_since.items():
                if device in self._down_devices:
                    continue
                end = since + self._bound_ns(self._topology.settle_s(device))
                if now < end:
                    devices.add(device)
                    until = min(until, end)
        if self._span_for_ns is not None:
            for link, (_, since) in self._link_failing_since.items():
                # The span's state comes from its ends' checks: as long to know as they take.
                ends = self._topology.links.get(link, ())
                end = since + self._bound_ns(max((self._topology.settle_s(d) for d in ends), default=0.0))
                if link not in self._down_links and now < end:
                    links.add(link)
                    until = min(until, end)
        view = self._classification
        if devices or links:
            view = self._topology.classify(self._down_devices | devices, self._down_links | links)
        self._undecided_view, self._undecided_of, self._undecided_until = view, self._classification, until
        return view

    def _rule_for_ns(self) -> tuple[int | None, int | None]:
        """Return the ``for`` of the device-down and span-down rules (None: the rule is off)."""
        device = [r.for_ns for r in self.engine.rules if r.name in DEVICE_DOWN_RULES]
        span = [r.for_ns for r in self.engine.rules if r.name in SPAN_DOWN_RULES]
        return (max(device) if device else None, max(span) if span else None)

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
        if kind == "link" and t.rule in SPAN_DOWN_RULES and ident in self._down_links:
            explained = self._explained_ports(ident)
            if explained:
                summary = f"{summary}; explains {', '.join(explained)}"
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

    def _explained_ports(self, span: str) -> list[str]:
        """Return the open port incidents a down span explains, as "rule device:port", sorted."""
        return sorted(
            f"{item.transition.rule} {item.transition.entity}"
            for item in self._open.values()
            if span in self._port_spans(item.transition)
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
            waiting: bool | None = None  # asked once per item, and only when a first notice is due
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
                    if last is None:
                        if waiting is None:
                            waiting = self._still_waiting(item, now)
                        if waiting:
                            continue
                    incident = incident or self._incident(item)
                    self._send(Notification(receiver, event, incident, now))
                    item.told[receiver] = now
                    if self._notices is not None:
                        self._notices.save_notice(incident.id, receiver, now)

    def _still_waiting(self, item: _Open, now: int) -> bool:
        """Return whether a first notice that is due waits (see :meth:`_waiting`); log when that changes."""
        waiting = self._waiting(item, now)
        if waiting != item.waiting:
            t = item.transition
            # Its parent, span or what is behind it is failing and not known down or up yet: a
            # page now could be the wrong one, or name too little. Not a hold: like group_wait, it
            # only delays the first notice, and it is bounded.
            log.info(
                "alert_waiting" if waiting else "alert_decided", incident=t.incident_id, rule=t.rule, entity=t.entity
            )
            item.waiting = waiting
        return waiting

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
