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
