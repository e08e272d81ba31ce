"""Device and span state: derived from the latest outcome of each check, logged once per change."""

from __future__ import annotations

from pathlib import Path

import structlog

from netwatch.config import load_config
from netwatch.model import Observation, Outcome, Sample
from netwatch.state import StateTracker

GOOD = Path(__file__).parent.parent / "data" / "config" / "good.yaml"


def tracker() -> tuple[StateTracker, list[Sample]]:
    out: list[Sample] = []
    return StateTracker(load_config(GOOD).inventory, out.extend), out


def obs(device: str, check: str, up: bool, reason: str = "ok", ports: dict[str, bool] | None = None) -> Observation:
    return Observation(
        device,
        check,
        Outcome(
            up=up,
            reason=reason if not up else "ok",  # type: ignore[arg-type]
            ports_up=ports or {},
        ),
        0,
        0.01,
    )


def last(samples: list[Sample], measurement: str) -> Sample:
    return [s for s in samples if s.measurement == measurement][-1]


def test_device_up_degraded_down() -> None:
    """All checks pass: up; some fail: degraded with the failing reason; none pass: down."""
    t, out = tracker()
    t.observe(obs("r1", "ping", True))
    t.observe(obs("r1", "snmp", True))
    assert dict(last(out, "device").fields) == {"up": 1, "state": "up", "reason": "ok"}
    t.observe(obs("r1", "snmp", False, "auth"))
    assert dict(last(out, "device").fields) == {"up": 1, "state": "degraded", "reason": "auth"}
    t.observe(obs("r1", "ping", False, "timeout"))
    assert dict(last(out, "device").fields) == {"up": 0, "state": "down", "reason": "timeout"}
    assert dict(last(out, "device").tags) == {"device": "r1", "site": "hq", "kind": "router"}


def test_device_transitions_are_logged_once() -> None:
    """Going down is one warning however many polls fail; coming back is one info."""
    t, _ = tracker()
    with structlog.testing.capture_logs() as logs:
        t.observe(obs("ap1", "ping", True))
        for _ in range(5):
            t.observe(obs("ap1", "ping", False, "timeout"))
        t.observe(obs("ap1", "ping", True))
        t.observe(obs("ap1", "ping", True))
    events = [e["event"] for e in logs]
    assert events == ["device_down", "device_up"]
    assert logs[0]["device"] == "ap1"
    assert logs[0]["log_level"] == "warning"


def test_span_follows_its_end_ports_and_devices() -> None:
    """A span is up when both end ports are oper-up and both ends answer; a port down takes it down."""
    t, out = tracker()
    t.observe(obs("r1", "ping", True))
    t.observe(obs("r1", "snmp", True, ports={"eth1": True}))
    t.observe(obs("sw1", "ping", True))
    t.observe(obs("sw1", "snmp", True, ports={"Gi1/0/1": True}))
    span = last(out, "link")
    assert dict(span.tags) == {"link": "span-1", "site_a": "hq", "site_b": "park", "lessee": "univ"}
    assert dict(span.fields) == {"up": 1, "state": "up"}
    with structlog.testing.capture_logs() as logs:
        t.observe(obs("sw1", "snmp", True, ports={"Gi1/0/1": False}))
    assert dict(last(out, "link").fields) == {"up": 0, "state": "down"}
    assert logs[-1]["event"] == "link_down"
    assert "sw1:Gi1/0/1" in logs[-1]["why"]


def test_span_down_when_far_end_stops_answering() -> None:
    """With both ports last seen up, a far end that answers nothing takes the span down."""
    t, out = tracker()
    t.observe(obs("r1", "snmp", True, ports={"eth1": True}))
    t.observe(obs("sw1", "snmp", True, ports={"Gi1/0/1": True}))
    t.observe(obs("sw1", "ping", False, "timeout"))
    t.observe(obs("sw1", "snmp", False, "timeout"))
    assert dict(last(out, "link").fields) == {"up": 0, "state": "down"}


def links(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.measurement == "link"]


def test_span_is_never_up_on_a_guess() -> None:
    """Nothing is written for a span until both ends answered, nor while a monitored end port's
    state is unknown (far end's SNMP failing, or a port name the device does not have)."""
    t, out = tracker()
    t.observe(obs("r1", "ping", True))
    t.observe(obs("r1", "snmp", True, ports={"eth1": True}))
    assert links(out) == [], "far end has not answered yet"

    t.observe(obs("sw1", "ping", True))
    with structlog.testing.capture_logs() as logs:
        t.observe(obs("sw1", "snmp", True, ports={"Gi1/0/2": True}))  # a typo'd or absent port
        t.observe(obs("sw1", "snmp", True, ports={"Gi1/0/2": True}))
    assert links(out) == []
    assert [e["event"] for e in logs] == ["link_state_unknown"]
    assert logs[0]["ports"] == ["sw1:Gi1/0/1"]

    t.observe(obs("sw1", "snmp", True, ports={"Gi1/0/1": True}))
    assert dict(links(out)[-1].fields) == {"up": 1, "state": "up"}

    # The far end's SNMP starts timing out while ping still answers: the port state is stale.
    before = len(links(out))
    t.observe(obs("sw1", "snmp", False, "timeout"))
    assert len(links(out)) == before


def test_span_between_devices_without_snmp_follows_reachability(tmp_path: Path) -> None:
    """When neither end has a check that reports ports, a span follows the ends' reachability."""
    (tmp_path / "c.yaml").write_text(
        "sites: [{id: hq, name: HQ}]\n"
        "devices:\n"
        "  - {id: a, site: hq, kind: switch, address: 127.0.0.1, checks: [ping]}\n"
        "  - {id: b, site: hq, kind: switch, address: 127.0.0.2, checks: [ping]}\n"
        "links: [{id: s, a: {device: a, port: p1}, b: {device: b, port: p1}}]\n"
    )
    out: list[Sample] = []
    t = StateTracker(load_config(tmp_path / "c.yaml").inventory, out.extend)
    t.observe(obs("a", "ping", True))
    t.observe(obs("b", "ping", True))
    assert dict(links(out)[-1].fields) == {"up": 1, "state": "up"}
    t.observe(obs("b", "ping", False, "timeout"))
    assert dict(links(out)[-1].fields) == {"up": 0, "state": "down"}


def test_state_samples_are_stamped_when_the_check_collected() -> None:
    """device and link samples carry the check's collection time, not the time of processing."""
    t, out = tracker()
    t.observe(Observation("ap1", "ping", Outcome(up=True, reason="ok"), 1_000_000_000, 0.5))
    assert last(out, "device").time_ns == 1_500_000_000
