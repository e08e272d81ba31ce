"""One page per cause: a port on a cut span is the span's page, and a child waits for its parent.

The park's fiber lateral ``span-fs31-vp`` (core-fs31 ge-0/0/2 <-> sw-vp Gi1/0/49) of the lab city,
polled every 10 s as the lab polls it: ping + snmp on routers and switches, ping + wifi on APs,
ping on the door panel and the camera. :class:`Plant` plays the checks at their phases through the
daemon's own pipeline (state tracker included), so the device, span and port samples reach alerting
in the order and with the timestamps they would in ``netwatch run``; a check of a dark device
fails at its timeout, 5 s after it started.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path

from netwatch import daemon
from netwatch.alerting.engine import AlertEngine
from netwatch.alerting.maintenance import MaintenanceCalendar
from netwatch.alerting.model import Notification
from netwatch.alerting.routing import RouteConfig, Router
from netwatch.alerting.rules import RuleConfig, effective_rules
from netwatch.alerting.service import AlertService
from netwatch.alerting.topology import Topology
from netwatch.config import load_config
from netwatch.model import Observation, Outcome, Sample

S = 1_000_000_000
T0 = 1_800_000_000 * S
INTERVAL = 10
TIMEOUT = 5

CITY = """
defaults:
  interval: 10s
  timeout: 5s
  snmp: {version: 2c, community_file: community}
  wifi: {profile: generic}
  kinds:
    router: {checks: [ping, snmp]}
    switch: {checks: [ping, snmp]}
    wifi_ap: {checks: [ping, wifi]}
    access_panel: {checks: [ping]}
    camera: {checks: [ping]}
sites:
  - {id: city-hall, name: City Hall}
  - {id: fire-31, name: Fire Station 31}
  - {id: villa-parke, name: Villa Parke, kind: park}
devices:
  - {id: core-ch, site: city-hall, kind: router, address: 127.20.0.1}
  - {id: core-fs31, site: fire-31, kind: router, address: 127.20.0.4, parents: [core-ch]}
  - {id: sw-vp, site: villa-parke, kind: switch, address: 127.20.0.10, parents: [core-fs31]}
  - {id: ap-vp-1, site: villa-parke, kind: wifi_ap, address: 127.20.0.11, parents: [sw-vp]}
  - {id: ap-vp-2, site: villa-parke, kind: wifi_ap, address: 127.20.0.12, parents: [sw-vp]}
  - {id: door-vp-1, site: villa-parke, kind: access_panel, address: 127.20.0.13, parents: [sw-vp]}
  - {id: cam-vp-1, site: villa-parke, kind: camera, address: 127.20.0.14, parents: [sw-vp]}
links:
  - {id: span-ch-fs31, a: {device: core-ch, port: xe-0/0/1}, b: {device: core-fs31, port: xe-0/0/0}}
  - {id: span-fs31-vp, a: {device: core-fs31, port: ge-0/0/2}, b: {device: sw-vp, port: Gi1/0/49}}
"""

PARK = ("sw-vp", "ap-vp-1", "ap-vp-2", "door-vp-1", "cam-vp-1")
PORT = ("core-fs31", "ge-0/0/2")

#: Seconds into each 10 s interval at which each check starts: the order the lab showed. After a
#: cut at a multiple of 10 s, sw-vp's ping fails first (degraded at +5) while its snmp, which has
#: just passed, runs again only at +9 (down at +14); its APs go down at +7 and +9, the door and
#: the camera at +10 and +11, and core-fs31's snmp sees ge-0/0/2 down at +7.
PHASES = {
    ("core-ch", "ping"): 0,
    ("core-ch", "snmp"): 5,
    ("core-fs31", "ping"): 2,
    ("core-fs31", "snmp"): 7,
    ("sw-vp", "ping"): 0,
    ("sw-vp", "snmp"): 9,
    ("ap-vp-1", "ping"): 1,
    ("ap-vp-1", "wifi"): 2,
    ("ap-vp-2", "ping"): 3,
    ("ap-vp-2", "wifi"): 4,
    ("door-vp-1", "ping"): 5,
    ("cam-vp-1", "ping"): 6,
}


@dataclass
class Plant:
    """The park's slice of the city, polled through the daemon's pipeline into an alert service.

    ``dark``: devices that do not answer (every check times out); ``broken``: single checks that
    fail (a switch whose SNMP agent hangs); ``ports_down``: ports oper-down as their device's
    SNMP reports them; ``rx_dbm``: optical receive power a port's SNMP reports (none: no optics).
    """

    tmp: Path
    group_wait: str = "1s"
    alerts: list[dict[str, object]] = field(default_factory=list)
    dark: set[str] = field(default_factory=set)
    broken: set[tuple[str, str]] = field(default_factory=set)
    ports_down: set[tuple[str, str]] = field(default_factory=set)
    rx_dbm: dict[tuple[str, str], float] = field(default_factory=dict)
    sent: list[Notification] = field(default_factory=list)
    written: list[Sample] = field(default_factory=list)
    now: int = T0

    def __post_init__(self) -> None:
        (self.tmp / "community").write_text("public\n")
        (self.tmp / "netwatch.yaml").write_text(CITY)
        loaded = load_config(self.tmp / "netwatch.yaml")
        self.inventory = loaded.inventory
        topology = Topology.from_inventory(self.inventory)
        self.svc = AlertService(
            engine=AlertEngine(
                effective_rules([RuleConfig.model_validate(a) for a in self.alerts]),
                clock=lambda: self.now,
                interval=self.inventory.poll_interval,
                device_kind=self.inventory.device_kind,
            ),
            topology=topology,
            calendar=MaintenanceCalendar([], topology),
            router=Router(
                [
                    RouteConfig.model_validate(
                        {"receivers": ["noc"], "group_wait": self.group_wait, "repeat_interval": "4h"}
                    )
                ]
            ),
            enqueue=lambda n: self.sent.append(n) or True,
            emit=self.written.extend,
            site_names={s.id: s.name for s in self.inventory.sites.values()},
            clock=lambda: self.now,
        )
        self.pipeline = daemon.Pipeline(loaded, self, self.svc)
        self._running: list[tuple[int, int, Observation]] = []  # (finish, order, observation)
        self._order = 0
        self._second = self.now  # the next whole second: checks start and the service ticks

    def submit(self, samples: list[Sample]) -> None:
        """The sink: what InfluxDB would get (the alert service writes its ``alert`` rows here too)."""

    def run(self, seconds: float) -> None:
        """Play the next ``seconds``: each check starts at its phase and its result arrives when it
        finishes; the service ticks every second, as in the daemon. What the test changes in the
        plant afterwards applies to the checks that start from then on."""
        end = self.now + round(seconds * S)
        while True:
            at = min(self._second, self._running[0][0]) if self._running else self._second
            if at >= end:
                self.now = end
                return
            self.now = at
            while self._running and self._running[0][0] <= at:
                self.pipeline.observe(heapq.heappop(self._running)[2])
            if at == self._second:
                for (device, check), phase in PHASES.items():
                    if (at - T0) // S % INTERVAL == phase:
                        self._start(device, check, at)
                self.svc.tick(at)
                self._second += S

    def _start(self, device: str, check: str, at: int) -> None:
        """Run one check against the plant as it is now; its outcome arrives when it finishes."""
        target = self.inventory.devices[device].target
        answers = device not in self.dark and (device, check) not in self.broken
        took = 0.05 if answers else float(TIMEOUT)
        ts = at + round(took * S)
        if not answers:
            outcome = Outcome(up=False, reason="timeout")
        elif check == "snmp":
            ports = {ref.name: (device, ref.name) not in self.ports_down for ref in target.ports}
            samples: list[Sample] = []
            for ref in target.ports:
                tags = {"device": device, "site": target.site, "port": ref.name}
                if ref.link:
                    tags["link"] = ref.link
                fields = {"oper_up": int(ports[ref.name]), "admin_up": 1}
                samples.append(Sample("interface", tags, fields, ts))
                if (device, ref.name) in self.rx_dbm:
                    samples.append(Sample("optics", tags, {"rx_dbm": self.rx_dbm[(device, ref.name)]}, ts))
            outcome = Outcome(up=True, reason="ok", samples=tuple(samples), ports_up=ports)
        else:
            outcome = Outcome(up=True, reason="ok", samples=(Sample(check, target.base_tags(), {"up": 1}, ts),))
        self._order += 1
        heapq.heappush(self._running, (ts, self._order, Observation(device, check, outcome, at, took)))

    def cut(self) -> None:
        """The fibre to the park is cut: the park goes dark, core-fs31 sees its port go down."""
        self.dark.update(PARK)
        self.ports_down.add(PORT)

    def splice(self) -> None:
        self.dark.difference_update(PARK)
        self.ports_down.discard(PORT)

    def pages(self, event: str = "firing") -> list[tuple[str, str]]:
        return [(n.incident.rule, n.incident.entity) for n in self.sent if n.event == event]

    def recorded(self, rule: str, entity: str) -> list[tuple[object, object]]:
        """The ``alert`` rows (state, held) written for one (rule, entity)."""
        return [
            (s.fields["state"], s.fields.get("held", ""))
            for s in self.written
            if s.measurement == "alert" and (s.tags["rule"], s.tags["entity"]) == (rule, entity)
        ]


def test_a_cut_span_pages_once_naming_the_park_and_not_its_port_or_its_devices(tmp_path: Path) -> None:
    """The lab's cut with group_wait 1s: sw-vp is degraded for one interval (its ping failed, its
    snmp has not run since) while its APs and door are already down. One page, for the span, with
    the 5 park devices in its impact and core-fs31's port named with it; nothing for the port, the
    switch or its devices. After the splice, one resolve, for the span, and nothing else: sw-vp
    comes back degraded (ping answers, snmp still timing out) before its devices answer again, and
    they wait for it rather than page as root causes."""
    plant = Plant(tmp_path)
    plant.run(60)  # everything up, every port seen up
    assert plant.sent == []
    plant.cut()
    plant.run(90)
    assert plant.pages() == [("span_down", "span-fs31-vp")]
    page = plant.sent[0].incident
    assert set(page.impact.devices) == set(PARK)
    assert page.impact.by_site == {"villa-parke": 5}
    assert "5 devices unreachable behind it: 5 at Villa Parke" in page.summary
    assert "explains interface_down core-fs31:ge-0/0/2" in page.summary
    # The port's and the park's incidents are open, held as explained by the span (as the API
    # lists them), and recorded in InfluxDB.
    held = {(i.incident.rule, i.incident.entity): i.held for i in plant.svc.incidents()}
    assert held == {
        ("span_down", "span-fs31-vp"): "",
        ("interface_down", "core-fs31:ge-0/0/2"): "unreachable",
        **{("device_down", d): "unreachable" for d in PARK},
    }
    assert [state for state, _ in plant.recorded("interface_down", "core-fs31:ge-0/0/2")] == ["firing"]
    plant.splice()
    plant.run(90)
    assert plant.pages() == [("span_down", "span-fs31-vp")]
    assert plant.pages("resolved") == [("span_down", "span-fs31-vp")]
    assert [n.event for n in plant.sent] == ["firing", "resolved"]
    assert plant.recorded("interface_down", "core-fs31:ge-0/0/2")[-1][0] == "resolved"


def test_a_child_that_dies_while_its_parent_blips_is_paged_once_its_parent_answers(tmp_path: Path) -> None:
    """ap-vp-1 dies as sw-vp loses one ping (degraded for one interval): its page waits for sw-vp,
    and goes out, once, as soon as sw-vp's next ping says it is up, long before the bound."""
    plant = Plant(tmp_path)
    plant.run(60)
    plant.dark.add("ap-vp-1")
    plant.broken.add(("sw-vp", "ping"))
    plant.run(6)  # sw-vp's ping fails at +5 (degraded); ap-vp-1 is down at +7
    plant.broken.clear()  # sw-vp's next ping, at +10, answers (up at +10.05)
    plant.run(4)
    assert plant.sent == []  # +10: ap-vp-1 down for 3 s, group_wait 1s, sw-vp not known up yet
    plant.run(1)
    assert plant.pages() == [("device_down", "ap-vp-1")]
    assert plant.sent[0].created_ns <= T0 + 71 * S  # when sw-vp answered, not when the bound passed
    plant.run(60)
    assert plant.pages() == [("device_down", "ap-vp-1")]


def test_a_parent_stuck_degraded_holds_its_childs_page_no_longer_than_its_checks_take(tmp_path: Path) -> None:
    """sw-vp's SNMP agent hangs for good (degraded: ping answers, snmp times out) as ap-vp-1 dies:
    ap-vp-1's page waits no longer than sw-vp's settle time (interval 10 s + timeout 5 s from when
    it went degraded), then goes out: a parent stuck degraded swallows no page."""
    plant = Plant(tmp_path)
    plant.run(60)
    plant.broken.add(("sw-vp", "snmp"))  # starts at +9, fails at +14: degraded from +14
    plant.run(9)
    plant.dark.add("ap-vp-1")  # ping at +11 fails at +16, wifi at +12 fails at +17: down at +17
    plant.run(10)
    assert plant.sent == []  # +19: group_wait is over, but sw-vp has not run all its checks since
    plant.run(10)
    assert plant.sent == []  # +29: still within sw-vp's 15 s (until +29)
    plant.run(2)
    assert plant.pages() == [("device_down", "ap-vp-1")]
    assert T0 + 89 * S <= plant.sent[0].created_ns <= T0 + 90 * S


def test_an_optics_alert_on_a_spliced_span_that_stays_bad_pages_then(tmp_path: Path) -> None:
    """Cut for 3 minutes: core-fs31's receive power on ge-0/0/2 drops to -40 dBm and optics_rx_low
    fires (for 2m) while the span is down: recorded, not sent. The splice brings the span back but
    light stays weak (-26 dBm, below the -24 threshold): the span resolves, and the port's own
    page goes out then, once."""
    plant = Plant(tmp_path, rx_dbm={PORT: -3.0})
    plant.run(60)
    plant.cut()
    plant.rx_dbm[PORT] = -40.0
    plant.run(180)
    assert plant.pages() == [("span_down", "span-fs31-vp")]
    assert plant.recorded("optics_rx_low", "core-fs31:ge-0/0/2") == [("firing", "unreachable")]
    plant.splice()
    plant.rx_dbm[PORT] = -26.0
    plant.run(60)
    assert plant.pages("resolved") == [("span_down", "span-fs31-vp")]
    assert plant.pages() == [("span_down", "span-fs31-vp"), ("optics_rx_low", "core-fs31:ge-0/0/2")]
    assert "optical receive power" in plant.sent[-1].incident.summary
    plant.rx_dbm[PORT] = -3.0  # the splice is redone: the port's page is resolved, the span's is not sent again
    plant.run(60)
    assert plant.pages("resolved") == [("span_down", "span-fs31-vp"), ("optics_rx_low", "core-fs31:ge-0/0/2")]
    assert len(plant.sent) == 4


# -- the service alone: orders the state tracker does not produce, but other feeds may ----------


@dataclass
class Feed:
    """An alert service over the same plant, fed samples by hand (interface and link rows as an
    SNMP poll and another source, say a span's far end or a syslog feed, would write them)."""

    plant: Plant
    sent: list[Notification] = field(default_factory=list)

    @property
    def svc(self) -> AlertService:
        return self.plant.svc

    def at(self, seconds: float) -> int:
        self.plant.now = T0 + round(seconds * S)
        return self.plant.now

    def port(self, seconds: float, up: bool) -> None:
        t = self.at(seconds)
        tags = {"device": PORT[0], "site": "fire-31", "port": PORT[1], "link": "span-fs31-vp"}
        self.svc.observe([Sample("interface", tags, {"oper_up": int(up), "admin_up": 1}, t)])

    def span(self, seconds: float, up: bool) -> None:
        t = self.at(seconds)
        tags = {"link": "span-fs31-vp", "site_a": "fire-31", "site_b": "villa-parke"}
        self.svc.observe([Sample("link", tags, {"up": int(up), "state": "up" if up else "down"}, t)])

    def tick(self, seconds: float) -> None:
        self.svc.tick(self.at(seconds))


def test_a_port_down_a_few_seconds_before_its_span_is_judged_when_its_page_is_due(tmp_path: Path) -> None:
    """interface_down fires at +0, the span's state says down only at +5 (group_wait 10s): the port
    is judged when its page would go out, by then the span explains it. One page, for the span."""
    feed = Feed(Plant(tmp_path, group_wait="10s"))
    for t in range(0, 60, 10):
        feed.port(t, up=True)
        feed.span(t + 5, up=True)
    for t in range(60, 120, 10):
        feed.port(t, up=False)
        for s in range(t + 1, t + 5):
            feed.tick(s)
        feed.span(t + 5, up=False)
        for s in range(t + 6, t + 10):
            feed.tick(s)
    assert [(n.incident.rule, n.incident.entity) for n in feed.plant.sent] == [("span_down", "span-fs31-vp")]
    assert "explains interface_down core-fs31:ge-0/0/2" in feed.plant.sent[0].incident.summary


def test_a_port_waits_for_a_span_down_rule_with_a_pending_time(tmp_path: Path) -> None:
    """span_down with ``for: 30s``: the port and the span go down together, the span's page is due
    at +40, the port's at +10. The span's state says down, so the port waits for span_down to
    decide, and is then explained by it: one page, for the span."""
    feed = Feed(Plant(tmp_path, group_wait="10s", alerts=[{"name": "span_down", "for": "30s"}]))
    for t in range(0, 60, 10):
        feed.port(t, up=True)
        feed.span(t, up=True)
    for t in range(60, 130, 10):
        feed.port(t, up=False)
        feed.span(t, up=False)
        for s in range(t + 1, t + 10):
            feed.tick(s)
    assert [(n.incident.rule, n.incident.entity) for n in feed.plant.sent] == [("span_down", "span-fs31-vp")]


def test_a_port_still_down_after_its_span_is_back_pages_then(tmp_path: Path) -> None:
    """The span's own state (from its far end) recovers while core-fs31 still reports ge-0/0/2
    down: the span resolves, the port's page goes out group_wait later, and resolves when it is up."""
    feed = Feed(Plant(tmp_path, group_wait="10s"))
    for t in range(0, 60, 10):
        feed.port(t, up=True)
        feed.span(t, up=True)
    for t in range(60, 120, 10):
        feed.port(t, up=False)
        feed.span(t, up=False)
        feed.tick(t + 1)
    assert [(n.event, n.incident.entity) for n in feed.plant.sent] == [("firing", "span-fs31-vp")]
    for t in range(120, 180, 10):
        feed.port(t, up=False)
        feed.span(t, up=True)
        feed.tick(t + 1)
    assert [(n.event, n.incident.entity) for n in feed.plant.sent] == [
        ("firing", "span-fs31-vp"),
        ("resolved", "span-fs31-vp"),
        ("firing", "core-fs31:ge-0/0/2"),
    ]
    assert feed.plant.sent[2].created_ns >= T0 + 140 * S  # group_wait from the span's resolve at +130
    for t in range(180, 220, 10):
        feed.port(t, up=True)
        feed.span(t, up=True)
        feed.tick(t + 1)
    assert [(n.event, n.incident.entity) for n in feed.plant.sent][3:] == [("resolved", "core-fs31:ge-0/0/2")]


def test_with_no_group_wait_the_port_and_its_span_are_judged_together(tmp_path: Path) -> None:
    """group_wait 0 (the detection benchmark's setting): core-fs31's snmp result says ge-0/0/2 is
    down, and the span's state follows from that same result. The pipeline hands both to alerting
    as one batch, so the port is explained by the span before anything is sent: one page, the
    span's. (Given one after the other, the port's page went out first, as the lab bench showed.)"""
    plant = Plant(tmp_path, group_wait="0s")
    plant.run(60)
    plant.cut()
    plant.run(90)
    assert ("interface_down", "core-fs31:ge-0/0/2") not in plant.pages()
    assert plant.pages()[0] == ("span_down", "span-fs31-vp")
