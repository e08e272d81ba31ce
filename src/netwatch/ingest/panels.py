"""Access panels as the MQTT ingest sees them: topics -> panel, payloads -> samples, heartbeat age.

No I/O here, so it is tested without a broker and benchmarked alone. Default payloads:

* heartbeat: any payload up to ``max_payload_bytes`` (many panels send a counter or nothing);
* event: a JSON object ``{"event": "door_forced", "door": "main", "detail": "..."}``, where
  ``event`` is one of door_forced, door_held_open, tamper, power_failure, on_battery (or a vendor
  name mapped to one in ``payload.events``); the paths are configurable (``event.type``).

Events listed in ``alarm_events`` (door_forced and tamper by default) also put ``alarms`` > 0 on
the panel's ``panel`` sample at once, and the next report (one cadence later) puts it back to 0:
an event is an instant, an alarm is state that the built-in rule ``panel_alarm`` fires and
resolves on.

A payload that is not JSON, misses the event, names an unknown event or is too large is counted
per panel and logged once per panel: a chatty broken panel must neither flood the journal nor
stop the others.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from netwatch.ingest.mqttconfig import MqttConfig, PanelConfig
from netwatch.model import Sample, now_ns

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """One watched panel with its merged settings."""

    device: str
    site: str
    every: float
    missed: int
    heartbeat_topic: str | None = None  # exact override; None: the template
    event_topic: str | None = None


def panel_specs(devices: Iterable[tuple[str, str, str, PanelConfig | None]], cfg: MqttConfig) -> list[PanelSpec]:
    """Return the panels to watch from (device, site, kind, panel settings).

    Every ``access_panel`` is watched unless its ``panel: {mqtt: false}``; another kind only when
    it has a ``panel:`` section.
    """
    specs = []
    for device, site, kind, panel in devices:
        if (panel is None and kind != "access_panel") or (panel is not None and not panel.mqtt):
            continue
        p = panel or PanelConfig()
        specs.append(
            PanelSpec(
                device,
                site,
                every=p.every if p.every is not None else cfg.heartbeat_every,
                missed=p.missed if p.missed is not None else cfg.missed,
                heartbeat_topic=p.heartbeat_topic,
                event_topic=p.event_topic,
            )
        )
    return specs


def _template_regex(template: str) -> re.Pattern[str]:
    before, after = template.split("{device}")
    return re.compile(re.escape(before) + r"([^/]+)" + re.escape(after))


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


@dataclass(slots=True)
class _PanelState:
    spec: PanelSpec
    last_heartbeat: float | None = None  # monotonic
    malformed: int = 0
    malformed_logged: bool = False
    next_report: float = 0.0
    alarms: int = 0  # alarm events since the last panel report


@dataclass
class IngestStats:
    """The ingest's own health (measurement ``netwatch``, component ``mqtt``)."""

    connected: bool = False
    messages: int = 0
    heartbeats: int = 0
    events: int = 0
    malformed: int = 0
    unknown_topic: int = 0
    reconnects: int = 0

    def fields(self) -> dict[str, int]:
        return {
            "broker_connected": int(self.connected),
            "mqtt_messages": self.messages,
            "mqtt_heartbeats": self.heartbeats,
            "mqtt_events": self.events,
            "mqtt_malformed": self.malformed,
            "mqtt_unknown_topic": self.unknown_topic,
            "mqtt_reconnects": self.reconnects,
        }


@dataclass
class PanelBook:
    """Which topic is whose, the heartbeat state of every panel, and the samples they make."""

    cfg: MqttConfig
    emit: Callable[[list[Sample]], None]
    clock: Callable[[], float] = time.monotonic
    stats: IngestStats = field(default_factory=IngestStats)
    _panels: dict[str, _PanelState] = field(default_factory=dict)
    _exact: dict[str, tuple[str, str]] = field(default_factory=dict)  # topic -> (device, heartbeat|event)
    _hb_re: re.Pattern[str] = field(init=False)
    _ev_re: re.Pattern[str] = field(init=False)
    _connected_at: float | None = None
    _unknown_logged: bool = False

    def __post_init__(self) -> None:
        self._hb_re = _template_regex(self.cfg.heartbeat_topic)
        self._ev_re = _template_regex(self.cfg.event_topic)

    # ---- configuration

    def set_panels(self, cfg: MqttConfig, specs: Iterable[PanelSpec]) -> None:
        """Apply a (re)loaded panel list; panels that stay keep their heartbeat state."""
        self.cfg = cfg
        self.__post_init__()
        old = self._panels
        self._panels = {}
        self._exact = {}
        for spec in specs:
            state = old.get(spec.device)
            if state is None:
                state = _PanelState(spec, next_report=self.clock() + spec.every)
            else:
                state.spec = spec
            self._panels[spec.device] = state
            if spec.heartbeat_topic:
                self._exact[spec.heartbeat_topic] = (spec.device, "heartbeat")
            if spec.event_topic:
                self._exact[spec.event_topic] = (spec.device, "event")

    def subscriptions(self) -> list[str]:
        """Return the topic filters to subscribe: the two templates as wildcards, then exact overrides."""
        filters = [self.cfg.heartbeat_topic.replace("{device}", "+"), self.cfg.event_topic.replace("{device}", "+")]
        return filters + sorted(t for t in self._exact if t not in filters)

    def panels(self) -> list[str]:
        return list(self._panels)

    # ---- broker state

    def connected(self) -> None:
        """The broker is back: every panel's clock restarts with a grace (its outage was not theirs)."""
        now = self.clock()
        self._connected_at = now
        self.stats.connected = True
        for state in self._panels.values():
            state.next_report = now + state.spec.every

    def disconnected(self) -> None:
        """While the broker is away, panel state is unknown: nothing is reported for panels."""
        self._connected_at = None
        self.stats.connected = False

    # ---- messages

    def _route(self, topic: str) -> tuple[str, str] | None:
        exact = self._exact.get(topic)
        if exact is not None:
            return exact
        for regex, what in ((self._hb_re, "heartbeat"), (self._ev_re, "event")):
            match = regex.fullmatch(topic)
            if match is not None and match.group(1) in self._panels:
                state = self._panels[match.group(1)]
                # a panel with an exact topic of this kind does not also listen on the template
                override = state.spec.heartbeat_topic if what == "heartbeat" else state.spec.event_topic
                if override is None:
                    return match.group(1), what
        return None

    def handle(self, topic: str, payload: bytes) -> None:
        """Take one message; never raises for what a panel sends."""
        self.stats.messages += 1
        routed = self._route(topic)
        if routed is None:
            self.stats.unknown_topic += 1
            if not self._unknown_logged:
                self._unknown_logged = True
                log.warning("mqtt_unknown_topic", topic=topic[:200], why="no configured panel publishes there")
            return
        device, what = routed
        state = self._panels[device]
        if len(payload) > self.cfg.max_payload_bytes:
            self._malformed(state, f"payload of {len(payload)} bytes exceeds max_payload_bytes")
            return
        if what == "heartbeat":
            self.stats.heartbeats += 1
            state.last_heartbeat = self.clock()
            return
        self._event(state, payload)

    def _event(self, state: _PanelState, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self._malformed(state, "event payload is not JSON")
            return
        mapping = self.cfg.payload
        raw = _dig(data, mapping.event)
        if not isinstance(raw, str) or not raw:
            self._malformed(state, f"event payload has no string at {mapping.event!r}")
            return
        event = mapping.events.get(raw, raw)
        if event not in _EVENTS:
            self._malformed(state, f"unknown event type {raw[:64]!r}")
            return
        tags = {"device": state.spec.device, "site": state.spec.site, "event": event}
        door = _dig(data, mapping.door)
        if isinstance(door, str | int) and not isinstance(door, bool) and str(door):
            tags["door"] = str(door)[:64]
        fields: dict[str, int | str] = {"count": 1, "alarm": int(event in self.cfg.alarm_events)}
        detail = _dig(data, mapping.detail)
        if isinstance(detail, str):
            fields["detail"] = detail[:500]
        self.stats.events += 1
        ts = now_ns()
        samples = [Sample("panel_event", tags, fields, ts)]
        if fields["alarm"] and self._connected_at is not None:
            # An event is an instant; the alarm is state the rules can fire on and resolve: the
            # panel is reported at once with alarms > 0, and the next cadence's report clears it.
            state.alarms += 1
            samples.append(self._sample(state, self.clock(), ts))
        self.emit(samples)

    def _malformed(self, state: _PanelState, why: str) -> None:
        state.malformed += 1
        self.stats.malformed += 1
        if not state.malformed_logged:
            state.malformed_logged = True
            log.warning(
                "panel_payload_malformed", device=state.spec.device, why=why, note="logged once per panel; counted"
            )

    # ---- periodic report

    def report(self, *, force: bool = False) -> None:
        """Emit ``panel`` samples for panels whose cadence came round (all with ``force``)."""
        if self._connected_at is None:
            return
        now = self.clock()
        ts = now_ns()
        samples = []
        for state in self._panels.values():
            if not force and now < state.next_report:
                continue
            state.next_report = now + state.spec.every
            samples.append(self._sample(state, now, ts))
        if samples:
            self.emit(samples)

    def _sample(self, state: _PanelState, now: float, ts: int) -> Sample:
        spec = state.spec
        assert self._connected_at is not None
        # Heard from since (or before) the connection: the age counts from the last heartbeat;
        # the deadline counts from the connection at the earliest, plus the grace.
        since = max(state.last_heartbeat or self._connected_at, self._connected_at)
        grace = self.cfg.grace * spec.every if since == self._connected_at else 0.0
        online = now - since <= spec.every * spec.missed + grace
        fields: dict[str, int | float] = {"online": int(online), "malformed": state.malformed, "alarms": state.alarms}
        state.alarms = 0
        if state.last_heartbeat is not None:
            fields["heartbeat_age_s"] = round(now - state.last_heartbeat, 3)
        return Sample("panel", {"device": spec.device, "site": spec.site}, fields, ts)

    def next_due(self) -> float:
        """Return seconds until the next panel report is due (for the ticker)."""
        if not self._panels:
            return 1.0
        return max(0.0, min(s.next_report for s in self._panels.values()) - self.clock())


_EVENTS = frozenset({"door_forced", "door_held_open", "tamper", "power_failure", "on_battery"})
