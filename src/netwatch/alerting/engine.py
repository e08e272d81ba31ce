"""The alert engine: one state machine per (rule, entity), fed by samples, advanced by ticks.

States (:data:`~netwatch.alerting.model.AlertState`)::

    ok ──condition true──► pending ──true for `for`──► firing ──clear, `clear_checks` checks
     ▲                        │                          │        in a row, `keep_firing_for`──► ok
     └──condition false───────┘ (silently)               └── emits `resolved`

- The condition latches: once true, it stays true until the value passes the rule's ``clear``
  (hysteresis). A rule with ``for: 0`` goes from ok to firing in one step.
- A firing alert resolves only after ``clear_checks`` consecutive clear checks (2 by default) and
  once ``keep_firing_for`` has passed since the first of them. One clear check is not enough
  because it looks exactly like the first half of a flap: a port toggling every poll would
  otherwise page, resolve and page again before flap detection has seen enough to step in.
- Flap detection (:mod:`flap`) watches every check result. When an entity starts flapping the
  engine emits one ``flapping`` transition and then nothing for it while the state machine keeps
  running silently underneath; when it settles, one ``flapping_stopped`` followed by the true
  state: ``firing`` if the condition still holds (the incident announced before the flapping, if
  any, continues), ``resolved`` if an announced incident is over. An announced incident whose
  condition is clearing when the flapping stops resolves once ``clear_checks`` and
  ``keep_firing_for`` are done, as usual.
- An absence rule (``absent_after: N``) holds for an entity that has sent no sample for N of its
  intervals (:meth:`AlertEngine.tick` notices) and clears when a sample arrives. The interval is
  what the ``interval`` callback says (the daemon passes the device's configured poll interval),
  else the longest of the recent gaps between the entity's samples. Silence is counted from the
  engine's start at the earliest, so a netwatch restart does not read as every device gone quiet.
  Absence rules have no flap detection.

Time comes from the samples (collection time) and from ``tick(now_ns)``, never from the wall
clock, so replaying a recorded series gives the same transitions; the ``clock`` is read once, at
start, for the absence grace above. The engine is synchronous and cheap: the daemon calls it from
the event loop; each call that changes durable state costs one SQLite transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from netwatch.alerting import flap
from netwatch.alerting.model import AlertState, Severity, incident_id
from netwatch.alerting.rules import Rule, entity_of
from netwatch.alerting.store import AlertStore, EntityState
from netwatch.model import Sample, now_ns

log = structlog.get_logger(__name__)

#: What a transition says happened to a (rule, entity).
TransitionTo = Literal["pending", "firing", "resolved", "flapping", "flapping_stopped"]

#: Recent gaps between samples kept per entity of an absence rule (for the learned interval).
_GAPS_KEPT = 8

_Event = tuple[TransitionTo, int]


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one (rule, entity) that the rest of alerting acts on.

    ``started_ns`` is the start of the incident the transition belongs to (when the condition
    first became true; for a flapping notice about no announced incident, when the flapping
    started), so :attr:`incident_id` is the same for a firing and its resolve, and across restarts.
    """

    rule: str
    entity: str
    severity: Severity
    labels: Mapping[str, str]
    to: TransitionTo
    value: float | None
    started_ns: int
    at_ns: int
    summary: str

    @property
    def incident_id(self) -> str:
        return incident_id(self.rule, self.entity, self.started_ns)


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """A (rule, entity) that is not quietly ok: pending, firing or flapping (for the CLI and API)."""

    rule: str
    entity: str
    severity: Severity
    labels: Mapping[str, str]
    state: AlertState
    flapping: bool
    started_ns: int | None
    value: float | None
    last_seen_ns: int | None
    summary: str
    #: Start of the incident announced as firing and not yet resolved (its id's start), if any.
    announced_ns: int | None


class AlertEngine:
    """Evaluate rules against samples; keep and persist one state machine per (rule, entity)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        store: AlertStore | None = None,
        *,
        clock: Callable[[], int] = now_ns,
        interval: Callable[[Mapping[str, str]], float | None] | None = None,
        device_kind: Callable[[str], str | None] | None = None,
    ) -> None:
        """Load the saved state machines from ``store`` (None: keep state in memory only).

        Args:
            rules: the compiled rules (:func:`~netwatch.alerting.rules.effective_rules`).
            store: where state persists across restarts.
            clock: nanoseconds now; read once, for the start of the absence grace.
            interval: the expected seconds between samples of an entity with these tags (absence
                rules), or None if unknown.
            device_kind: a device id's kind, for scopes and labels of samples without a kind tag
                (interface, optics).
        """
        self._store = store
        self._clock = clock
        self._interval = interval
        self._device_kind = device_kind
        self._started_ns = clock()
        self._states: dict[tuple[str, str], EntityState] = {}
        #: Threshold states with a timer running (pending, or firing with a clear timer).
        self._timed: set[tuple[str, str]] = set()
        #: States whose last-seen time changed since the last flush (durable state did not).
        self._lazy: set[tuple[str, str]] = set()
        #: States of absence rules (checked on every tick).
        self._absent: set[tuple[str, str]] = set()
        #: Last raw value per (rule, entity) of ``delta`` rules: the baseline of the next growth.
        #: Kept apart from the state machines, which are forgotten when quiet, and not persisted:
        #: the counters these rules read (netwatch's own) restart with the process.
        self._baselines: dict[tuple[str, str], float] = {}
        #: Loaded states of rules no longer configured: retired on the first tick.
        self._orphans: list[EntityState] = []
        self._set_rules(rules)
        for st in store.load() if store is not None else []:
            if st.rule in self._rules:
                self._states[st.key] = st
                self._track(self._rules[st.rule], st)
            else:
                self._orphans.append(st)

    # -- configuration ---------------------------------------------------------------------

    def _set_rules(self, rules: Sequence[Rule]) -> None:
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        self._rules = {r.name: r for r in rules}
        self._by_measurement: dict[str, list[Rule]] = {}
        for rule in rules:
            self._by_measurement.setdefault(rule.measurement, []).append(rule)

    def use_lookups(
        self,
        *,
        interval: Callable[[Mapping[str, str]], float | None] | None,
        device_kind: Callable[[str], str | None] | None,
    ) -> None:
        """Swap the interval and kind lookups (a reload's inventory: added devices, changed intervals)."""
        self._interval = interval
        self._device_kind = device_kind

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules.values())

    def apply(self, rules: Sequence[Rule], now_ns: int | None = None) -> list[Transition]:
        """Switch to a new rule set (config reload), keeping the state of rules that stay.

        The state machines of a rule that is gone, that changed between threshold and absence or
        to another measurement, and of entities a changed scope no longer includes, are retired:
        an incident they had announced is resolved and flapping is declared over (at ``now_ns``,
        default the clock). A rule that changed otherwise (a threshold, ``for``) keeps them.
        """
        old = self._rules
        self._set_rules(rules)
        delta_rules = {r.name for r in rules if r.delta}
        self._baselines = {k: v for k, v in self._baselines.items() if k[0] in delta_rules}

        def stays(st: EntityState) -> bool:
            new = self._rules.get(st.rule)
            was = old[st.rule]
            return (
                new is not None
                and (new.kind, new.measurement) == (was.kind, was.measurement)
                and new.scope.includes(st.tags)
            )

        retired = [st for st in self._states.values() if not stays(st)]
        for st in retired:
            self._forget(st.key)
        return self._retire(retired, self._clock() if now_ns is None else now_ns)

    def prune(self, keep: Callable[[Mapping[str, str]], bool], now_ns: int | None = None) -> list[Transition]:
        """Forget the entities ``keep`` rejects (given their last tags), e.g. devices and spans a
        reload removed, so a decommissioned device neither goes "silent" nor stays firing forever.
        An incident such an entity had announced is resolved (at ``now_ns``, default the clock).
        """
        gone = [st for st in self._states.values() if not keep(st.tags)]
        for st in gone:
            self._forget(st.key)
        return self._retire(gone, self._clock() if now_ns is None else now_ns)

    def _retire(self, states: Sequence[EntityState], at_ns: int) -> list[Transition]:
        """Close what retired state machines had told the world, and delete them."""
        out: list[Transition] = []
        for st in states:
            log.info("alert_state_retired", rule=st.rule, entity=st.entity, state=st.state)
            if st.flapping and st.flap_started_ns is not None:
                out.append(self._retired(st, "flapping_stopped", st.flap_started_ns, at_ns))
            if st.announced_ns is not None:
                out.append(self._retired(st, "resolved", st.announced_ns, at_ns))
        if self._store is not None and states:
            self._store.delete(st.key for st in states)
        return out

    @staticmethod
    def _retired(st: EntityState, to: TransitionTo, started: int, at: int) -> Transition:
        labels = {k: v for k, v in st.tags.items() if k != "reason"}
        labels.update(rule=st.rule, severity=st.severity)
        return Transition(st.rule, st.entity, st.severity, labels, to, st.value, started, at, st.summary)

    def _forget(self, key: tuple[str, str]) -> None:
        self._states.pop(key, None)
        self._timed.discard(key)
        self._lazy.discard(key)
        self._absent.discard(key)

    # -- samples -----------------------------------------------------------------------------

    def observe(self, sample: Sample) -> list[Transition]:
        """Evaluate every rule on ``sample``'s measurement whose scope includes it."""
        return self.observe_many((sample,))

    def observe_many(self, samples: Iterable[Sample]) -> list[Transition]:
        """Evaluate a batch of samples in order, saving the changed state in one transaction."""
        out: list[Transition] = []
        urgent: dict[tuple[str, str], EntityState] = {}
        idle: list[tuple[str, str]] = []
        for sample in samples:
            rules = self._by_measurement.get(sample.measurement)
            if not rules:
                continue
            tags = self._tags(sample)
            entity = entity_of(sample.tags)
            for rule in rules:
                if not rule.matches(sample, tags):
                    continue
                key = (rule.name, entity)
                st = self._states.get(key)
                before = st.durable() if st is not None else None
                if rule.kind == "absent":
                    if st is None:
                        st = self._states[key] = EntityState(rule.name, entity)
                    self._absent_sample(rule, st, sample.time_ns, tags, out)
                else:
                    value = rule.value(sample)
                    if value is not None and rule.delta:
                        value = self._growth(key, value)
                    if value is None:
                        continue
                    applies = rule.applies(sample)
                    if st is None:
                        if not applies or (not rule.require_ok_first and not rule.breached(value)):
                            continue  # quiet and unremarkable: no state machine needed
                        st = self._states[key] = EntityState(rule.name, entity)
                    self._check(rule, st, value, sample.time_ns, tags, out, applies=applies)
                self._track(rule, st)
                if self._is_idle(rule, st):
                    # Back to quiet with a clean history: indistinguishable from never seen.
                    self._forget(key)
                    urgent.pop(key, None)
                    idle.append(key)
                elif st.durable() != before:
                    urgent[key] = st
                elif rule.kind == "absent":
                    # Only absence rules decide anything by when an entity was last seen.
                    self._lazy.add(key)
        if self._store is not None:
            if idle:
                self._store.delete(idle)
            if urgent:
                self._store.save(urgent.values())
                self._lazy.difference_update(urgent)
        return out

    def _tags(self, sample: Sample) -> Mapping[str, str]:
        tags = sample.tags
        if "kind" not in tags and self._device_kind is not None and "device" in tags:
            kind = self._device_kind(tags["device"])
            if kind is not None:
                return {**tags, "kind": kind}
        return tags

    def _growth(self, key: tuple[str, str], raw: float) -> float | None:
        """Return how much a counter grew since the previous sample (None for the first one)."""
        previous = self._baselines.get(key)
        self._baselines[key] = raw
        if previous is None:
            return None
        return raw - previous if raw >= previous else raw  # went down: restarted from zero

    def _check(
        self,
        rule: Rule,
        st: EntityState,
        value: float,
        t: int,
        tags: Mapping[str, str],
        out: list[Transition],
        *,
        applies: bool = True,
    ) -> None:
        """Run one check of a threshold rule on one entity (``applies``: its ``where`` holds)."""
        st.value = value
        st.tags = dict(tags)
        if st.last_seen_ns is None or t > st.last_seen_ns:
            st.last_seen_ns = t
        cond = applies and (rule.still_breached(value) if st.active else rule.breached(value))
        if applies and not cond:
            st.seen_ok = True
        elif rule.require_ok_first and not st.seen_ok:
            cond = False  # never been ok (an unused port): nothing to report
        st.history = flap.record(st.history, cond)
        flap_event = flap.judge(st.history, st.flapping, rule.flap)
        events = self._step(rule, st, cond, t)
        self._emit(rule, st, events, flap_event, t, out)

    def _absent_sample(
        self, rule: Rule, st: EntityState, t: int, tags: Mapping[str, str], out: list[Transition]
    ) -> None:
        """A sample arrived for an entity of an absence rule: note the gap; the silence is over."""
        previous = st.last_seen_ns
        if previous is not None and t > previous and not st.active:
            st.gaps_ns = [*st.gaps_ns, t - previous][-_GAPS_KEPT:]
        if previous is None or t > previous:
            st.last_seen_ns = t
        st.tags = dict(tags)
        if st.active:
            events = self._step(rule, st, False, t)
            if events:
                st.value = (t - previous) / 1e9 if previous is not None else None
            self._emit(rule, st, events, None, t, out)

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now_ns: int) -> list[Transition]:
        """Advance timers to ``now_ns``: ``for`` and ``keep_firing_for``, and absence rules.

        Also flushes last-seen times to the store. Call it every second or so; a replay calls it
        with the replayed time.
        """
        out: list[Transition] = []
        if self._orphans:
            out.extend(self._retire(self._orphans, now_ns))
            self._orphans = []
        changed: dict[tuple[str, str], EntityState] = {}
        for key in sorted(self._timed):
            st = self._states[key]
            rule = self._rules[st.rule]
            before = st.durable()
            events: list[_Event] = []
            if st.state == "pending" and st.active:
                events = self._step(rule, st, True, now_ns)
            elif st.state == "firing" and not st.active:
                events = self._maybe_resolve(rule, st, now_ns)
            self._emit(rule, st, events, None, now_ns, out)
            self._track(rule, st)
            if st.durable() != before:
                changed[key] = st
        for rule in self._rules.values():
            if rule.kind == "absent":
                self._tick_absent(rule, now_ns, changed, out)
        if self._store is not None:
            self._lazy.difference_update(changed)
            lazy = [self._states[k] for k in sorted(self._lazy) if k in self._states]
            self._lazy.clear()
            if changed or lazy:
                self._store.save([*changed.values(), *lazy])
        return out

    def _tick_absent(
        self, rule: Rule, now: int, changed: dict[tuple[str, str], EntityState], out: list[Transition]
    ) -> None:
        assert rule.absent_after is not None
        for key in sorted(k for k in self._absent if k[0] == rule.name):
            st = self._states[key]
            if st.last_seen_ns is None:
                continue
            before = st.durable()
            events: list[_Event] = []
            if st.active:
                events = self._step(rule, st, True, now)
            else:
                interval_ns = self._interval_ns(st)
                if interval_ns is not None:
                    deadline = max(st.last_seen_ns, self._started_ns) + rule.absent_after * interval_ns
                    if now >= deadline:
                        events = self._step(rule, st, True, now, since=deadline)
                if not events and st.state == "firing":
                    events = self._maybe_resolve(rule, st, now)
            if events:
                st.value = (now - st.last_seen_ns) / 1e9
            self._emit(rule, st, events, None, now, out)
            if st.durable() != before:
                changed[key] = st

    def _interval_ns(self, st: EntityState) -> int | None:
        seconds = self._interval(st.tags) if self._interval is not None else None
        if seconds is not None and seconds > 0:
            return round(seconds * 1e9)
        return max(st.gaps_ns) if st.gaps_ns else None

    # -- the state machine -----------------------------------------------------------------------

    def _step(self, rule: Rule, st: EntityState, cond: bool, t: int, *, since: int | None = None) -> list[_Event]:
        """Move the underlying state machine by one check (or timer) and return what it did.

        ``since``: when the condition became true, if earlier than ``t`` (an absence's deadline).
        """
        events: list[_Event] = []
        if cond:
            st.clear_since_ns = None
            st.clear_count = 0
            fresh = st.state == "ok"
            if fresh:
                st.state = "pending"
                st.started_ns = since if since is not None else t
            if st.state == "pending":
                assert st.started_ns is not None
                if t - st.started_ns >= rule.for_ns:
                    st.state = "firing"
                    events.append(("firing", st.started_ns))
                elif fresh:
                    events.append(("pending", st.started_ns))
        elif st.state == "pending":
            st.state = "ok"
            st.started_ns = None
        elif st.state == "firing":
            if st.clear_since_ns is None:
                st.clear_since_ns = t
            st.clear_count += 1
            events = self._maybe_resolve(rule, st, t)
        st.active = cond
        return events

    @staticmethod
    def _maybe_resolve(rule: Rule, st: EntityState, t: int) -> list[_Event]:
        if (
            st.state != "firing"
            or st.clear_since_ns is None
            or st.clear_count < rule.clear_checks
            or t - st.clear_since_ns < rule.keep_firing_for_ns
        ):
            return []
        assert st.started_ns is not None
        started = st.started_ns
        AlertEngine._drop_firing(st)
        return [("resolved", started)]

    @staticmethod
    def _drop_firing(st: EntityState) -> None:
        st.state = "ok"
        st.started_ns = None
        st.clear_since_ns = None
        st.clear_count = 0

    def _emit(
        self,
        rule: Rule,
        st: EntityState,
        events: list[_Event],
        flap_event: flap.FlapEvent | None,
        t: int,
        out: list[Transition],
    ) -> None:
        """Turn the state machine's events into transitions, holding them back while flapping."""
        if flap_event == "started":
            st.flapping = True
            st.flap_started_ns = st.announced_ns if st.announced_ns is not None else t
            out.append(self._transition(rule, st, "flapping", st.flap_started_ns, t))
            return
        if flap_event == "stopped":
            st.flapping = False
            started = st.flap_started_ns if st.flap_started_ns is not None else t
            out.append(self._transition(rule, st, "flapping_stopped", started, t))
            st.flap_started_ns = None
            if st.state == "firing" and st.announced_ns is not None:
                # The incident announced before the flapping goes on: still bad, or clearing
                # (its resolve comes when clear_checks and keep_firing_for are done).
                st.started_ns = st.announced_ns
                if st.active:
                    out.append(self._transition(rule, st, "firing", st.started_ns, t))
            elif st.state == "firing" and st.active:
                assert st.started_ns is not None
                st.announced_ns = st.started_ns
                out.append(self._transition(rule, st, "firing", st.started_ns, t))
            elif st.state == "firing":
                # Fired unseen while flapping and already clearing: nobody was told, so let it go.
                self._drop_firing(st)
            elif st.announced_ns is not None:
                out.append(self._transition(rule, st, "resolved", st.announced_ns, t))
                st.announced_ns = None
            return
        if st.flapping:
            return
        for to, started in events:
            if to == "firing":
                st.announced_ns = started
            elif to == "resolved":
                st.announced_ns = None
            out.append(self._transition(rule, st, to, started, t))

    @staticmethod
    def _transition(rule: Rule, st: EntityState, to: TransitionTo, started: int, at: int) -> Transition:
        if to in ("resolved", "flapping_stopped") and st.summary:
            # The resolve tells what the incident was ("rx -25.1 dBm is below -24 dBm"), not the
            # firing sentence rendered with the clearing value ("-20.9 dBm is below -24 dBm").
            summary = st.summary
        else:
            summary = rule.render(entity=st.entity, tags=st.tags, value=st.value)
        # Kept with the state: resolving an incident of a rule removed while netwatch was down.
        st.severity, st.summary = rule.severity, summary
        return Transition(
            rule=rule.name,
            entity=st.entity,
            severity=rule.severity,
            labels=rule.labels_for(st.tags),
            to=to,
            value=st.value,
            started_ns=started,
            at_ns=at,
            summary=summary,
        )

    def _track(self, rule: Rule, st: EntityState) -> None:
        if rule.kind == "absent":
            self._absent.add(st.key)
            return
        if st.state == "pending" or (st.state == "firing" and st.clear_since_ns is not None):
            self._timed.add(st.key)
        else:
            self._timed.discard(st.key)

    @staticmethod
    def _is_idle(rule: Rule, st: EntityState) -> bool:
        return (
            rule.kind == "threshold"
            and not rule.require_ok_first
            and st.state == "ok"
            and not st.active
            and not st.flapping
            and st.announced_ns is None
            and st.history == flap.QUIET
        )

    # -- reading -------------------------------------------------------------------------------

    def clearing(self, rule: str, entity: str) -> bool:
        """Return whether a firing (rule, entity) has had a clear check since it last held: on its way out."""
        st = self._states.get((rule, entity))
        return st is not None and st.state == "firing" and st.clear_since_ns is not None

    def status(self) -> list[AlertStatus]:
        """Return every (rule, entity) that is pending, firing or flapping, by rule and entity."""
        out = []
        for key in sorted(self._states):
            st = self._states[key]
            if st.state == "ok" and not st.flapping and st.announced_ns is None:
                continue
            rule = self._rules[st.rule]
            out.append(
                AlertStatus(
                    rule=rule.name,
                    entity=st.entity,
                    severity=rule.severity,
                    labels=rule.labels_for(st.tags),
                    state=st.state,
                    flapping=st.flapping,
                    started_ns=st.started_ns,
                    value=st.value,
                    last_seen_ns=st.last_seen_ns,
                    summary=rule.render(entity=st.entity, tags=st.tags, value=st.value),
                    announced_ns=st.announced_ns,
                )
            )
        return out

    def flush(self) -> None:
        """Save last-seen times that only a tick would save (call before a clean shutdown)."""
        if self._store is not None and self._lazy:
            self._store.save(self._states[k] for k in sorted(self._lazy) if k in self._states)
        self._lazy.clear()
