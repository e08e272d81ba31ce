"""Silences in the alert service: held like maintenance, released when they end, restart-proof."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netwatch.alerting.engine import AlertEngine
from netwatch.alerting.maintenance import MaintenanceCalendar, MaintenanceConfig
from netwatch.alerting.model import Notification
from netwatch.alerting.routing import RouteConfig, Router
from netwatch.alerting.rules import RuleConfig, effective_rules
from netwatch.alerting.service import AlertService
from netwatch.alerting.silences import Matcher, Silence, Silences, SilenceSpec
from netwatch.alerting.store import AlertStore
from netwatch.alerting.topology import Topology
from netwatch.config import load_config
from netwatch.model import Sample

S = 1_000_000_000
T0 = 1_800_000_000 * S  # 2027-01-15T08:00:00Z

CITY = """
sites: [{id: hq, name: City Hall}, {id: park, name: Villa Parke, kind: park}, {id: bs, name: Brookside}]
devices:
  - {id: core, site: hq, kind: router, address: 127.0.0.1, checks: [ping]}
  - {id: sw-vp, site: park, kind: switch, address: 127.0.0.2, checks: [ping], parents: [core]}
  - {id: cam-vp, site: park, kind: camera, address: 127.0.0.3, checks: [ping], parents: [sw-vp]}
  - {id: sw-bs, site: bs, kind: switch, address: 127.0.0.4, checks: [ping], parents: [core]}
"""


@dataclass
class World:
    """An alert service over a small city, with a clock the test moves and what it sent."""

    tmp: Path
    maintenance: list[dict[str, Any]] = field(default_factory=list)
    sent: list[Notification] = field(default_factory=list)
    written: list[Sample] = field(default_factory=list)
    now: int = T0

    def __post_init__(self) -> None:
        (self.tmp / "c.yaml").write_text(CITY)
        self.inventory = load_config(self.tmp / "c.yaml").inventory
        self.store = AlertStore(self.tmp / "alerts.db")
        self.svc = self.build()

    def build(self) -> AlertService:
        """A service as the daemon opens it: on the store, with silences and notices persisted."""
        topology = Topology.from_inventory(self.inventory)
        return AlertService(
            engine=AlertEngine(effective_rules(), self.store, clock=lambda: self.now),
            topology=topology,
            calendar=MaintenanceCalendar([MaintenanceConfig.model_validate(m) for m in self.maintenance], topology),
            router=Router(
                [RouteConfig.model_validate({"receivers": ["oncall"], "group_wait": "10s", "repeat_interval": "1h"})]
            ),
            enqueue=lambda n: self.sent.append(n) or True,
            emit=self.written.extend,
            silences=Silences(self.store, clock=lambda: self.now),
            notices=self.store,
            clock=lambda: self.now,
        )

    def restart(self) -> None:
        self.store.close()
        self.store = AlertStore(self.tmp / "alerts.db")
        self.svc = self.build()

    def poll(self, seconds: int, down: set[str], every: int = 10) -> None:
        """Poll every device every ``every`` seconds for ``seconds``; those in ``down`` fail."""
        for _ in range(0, seconds, every):
            self.now += every * S
            samples = []
            for device in self.inventory.devices.values():
                up = device.id not in down
                fields = {"up": int(up), "state": "up" if up else "down", "reason": "ok" if up else "timeout"}
                samples.append(Sample("device", device.target.base_tags(), fields, self.now))
            self.svc.observe(samples)
            self.svc.tick(self.now + S)

    def silence(self, *matchers: str, minutes: float = 30, start_in: float = 0) -> Silence:
        start = self.now + int(start_in * 60 * S)
        return self.svc.add_silence(
            SilenceSpec(
                tuple(Matcher.parse(m) for m in matchers), start, start + int(minutes * 60 * S), "ana", "splice"
            )
        )

    def events(self) -> list[tuple[str, str]]:
        return [(n.event, n.incident.entity) for n in self.sent]


def test_silenced_incident_is_recorded_not_sent_and_sent_when_the_silence_ends(tmp_path: Path) -> None:
    """Under a silence the switch's page is held (alert sample held=silenced); when the silence ends by
    time and the switch still fails, the page goes out on the next tick."""
    w = World(tmp_path)
    silence = w.silence("device=sw-vp", minutes=5)
    w.poll(120, down={"sw-vp"})
    assert w.sent == []
    firing = [s for s in w.written if s.measurement == "alert" and s.fields["state"] == "firing"]
    assert [(s.tags["entity"], s.fields.get("held")) for s in firing] == [("sw-vp", "silenced")]
    [open_one] = w.svc.incidents()
    assert (open_one.incident.entity, open_one.held, open_one.silenced_by) == ("sw-vp", "silenced", (silence.id,))
    w.poll(200, down={"sw-vp"})  # the silence ends at 5 min
    assert w.events() == [("firing", "sw-vp")]
    assert w.sent[0].created_ns <= silence.ends_ns + 11 * S
    assert w.svc.incidents()[0].held == ""


def test_expiring_a_silence_sends_what_it_held_at_once(tmp_path: Path) -> None:
    """Expiring by hand releases the held page within the same call, not a tick later."""
    w = World(tmp_path)
    silence = w.silence("site=park", "rule=device_down")
    w.poll(60, down={"sw-vp"})
    assert w.sent == []
    w.now += S
    w.svc.expire_silence(silence.id)
    assert w.events() == [("firing", "sw-vp")]


def test_resolve_inside_the_silence_of_an_unannounced_incident_sends_nothing(tmp_path: Path) -> None:
    """Down and back while silenced: recorded both ways, nobody paged, nothing when the silence ends."""
    w = World(tmp_path)
    w.silence("device=sw-vp", minutes=10)
    w.poll(60, down={"sw-vp"})
    w.poll(60, down=set())
    w.poll(600, down=set())
    assert w.sent == []
    states = [s.fields["state"] for s in w.written if s.measurement == "alert"]
    assert states == ["firing", "resolved"]
    assert w.svc.incidents() == []


def test_resolve_of_an_incident_announced_before_the_silence_is_sent(tmp_path: Path) -> None:
    """Paged before the silence: its repeats are held, but its resolve is sent (so the page closes)."""
    w = World(tmp_path)
    w.poll(30, down={"sw-vp"})
    assert w.events() == [("firing", "sw-vp")]
    w.silence("device=sw-vp", minutes=180)
    w.poll(5400, down={"sw-vp"})  # 1.5 h: a repeat would be due after 1 h
    assert w.events() == [("firing", "sw-vp")]
    w.poll(60, down=set())
    assert w.events() == [("firing", "sw-vp"), ("resolved", "sw-vp")]


def test_silence_holds_only_what_it_matches_and_only_once_started(tmp_path: Path) -> None:
    """A silence for Villa Parke does not hold Brookside; a pending silence holds nothing yet."""
    w = World(tmp_path)
    w.silence("site=park")
    later = w.silence("site=bs", start_in=30)
    w.poll(30, down={"sw-vp", "sw-bs"})
    assert w.events() == [("firing", "sw-bs")]
    held = {o.incident.entity: (o.held, o.silenced_by) for o in w.svc.incidents()}
    assert held["sw-vp"][0] == "silenced"
    assert held["sw-bs"] == ("", ())
    assert later.state(w.now) == "pending"


def test_unreachable_and_maintenance_come_before_silenced(tmp_path: Path) -> None:
    """A camera behind a down switch is 'unreachable' even when a silence matches it too (and
    silenced_by still lists the silence); a maintenance window outranks a silence."""
    start, end = "2027-01-15T07:00:00+00:00", "2027-01-15T12:00:00+00:00"
    w = World(tmp_path, maintenance=[{"scope": {"device": "sw-bs"}, "start": start, "end": end}])
    silence = w.silence("kind=~camera|switch")
    w.poll(30, down={"sw-vp", "cam-vp", "sw-bs"})
    held = {o.incident.entity: (o.held, o.silenced_by) for o in w.svc.incidents()}
    assert held["cam-vp"] == ("unreachable", (silence.id,))
    assert held["sw-vp"] == ("silenced", (silence.id,))
    assert held["sw-bs"] == ("maintenance", (silence.id,))
    assert w.sent == []


def test_restart_keeps_silences_and_who_was_told(tmp_path: Path) -> None:
    """After a restart: an incident paged before it is not paged again and its resolve goes out;
    one silenced before it stays held and is paged when the silence is expired."""
    w = World(tmp_path)
    silence = w.silence("device=sw-bs")
    w.poll(30, down={"sw-vp", "sw-bs"})
    assert w.events() == [("firing", "sw-vp")]
    w.restart()
    assert {o.incident.entity: o.held for o in w.svc.incidents()} == {"sw-vp": "", "sw-bs": "silenced"}
    assert [o.notified for o in w.svc.incidents() if o.incident.entity == "sw-vp"] == [("oncall",)]
    w.poll(60, down={"sw-vp", "sw-bs"})
    assert w.events() == [("firing", "sw-vp")], "no second page after a restart"
    w.now += S
    w.svc.expire_silence(silence.id)
    assert w.events() == [("firing", "sw-vp"), ("firing", "sw-bs")]
    w.poll(60, down=set())
    assert sorted(w.events()[2:]) == [("resolved", "sw-bs"), ("resolved", "sw-vp")]
    assert w.store.load_notices() == {}, "resolved incidents leave no notice rows behind"


def test_pending_alerts_are_listed_apart_from_incidents(tmp_path: Path) -> None:
    """What the engine has pending is no open incident; unopened() lists it."""
    w = World(tmp_path)
    w.svc.engine.apply(effective_rules([RuleConfig.model_validate({"name": "device_down", "for": "5m"})]))
    w.poll(30, down={"sw-vp"})
    assert w.svc.incidents() == []
    assert [(s.rule, s.entity, s.state) for s in w.svc.unopened()] == [("device_down", "sw-vp", "pending")]
