"""park_wifi_down through the daemon's own wiring: the state tracker feeds alerting, and a park
that is dark only because of another fault, or under maintenance, does not page twice."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netwatch import daemon
from netwatch.config import load_config
from netwatch.model import Observation, Outcome, Sample, now_ns

CONFIG = """
instance: t
state_dir: {state}
alerts:
  - {{name: park_wifi_down, for: 0s}}
sites:
  - {{id: hq, name: City Hall}}
  - {{id: park, name: Villa Parke, kind: park}}
devices:
  - {{id: r1, site: hq, kind: router, address: 127.0.0.1, checks: [ping]}}
  - {{id: sw1, site: park, kind: switch, address: 127.0.0.2, parents: [r1], checks: [ping]}}
  - {{id: ap1, site: park, kind: wifi_ap, address: 127.0.0.3, parents: [sw1]}}
  - {{id: ap2, site: park, kind: wifi_ap, address: 127.0.0.4, parents: [sw1]}}
  - {{id: portal-park, site: park, kind: server, address: 127.0.0.5, parents: [sw1], checks: [ping, portal],
     portal: {{url: "https://portal.example/park"}}}}
maintenance:
{maintenance}
"""


class Sink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def submit(self, samples: list[Sample]) -> None:
        self.samples.extend(samples)

    def alerts(self, rule: str) -> list[tuple[object, object]]:
        return [
            (s.fields["state"], s.fields.get("held", ""))
            for s in self.samples
            if s.measurement == "alert" and s.tags["rule"] == rule
        ]


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path, maintenance: str = "  []") -> AsyncIterator[tuple[daemon.Pipeline, Sink]]:
    path = tmp_path / "netwatch.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", maintenance=maintenance))
    loaded = load_config(path)
    sink = Sink()
    async with contextlib.AsyncExitStack() as stack:
        alerts, _ = await daemon.open_alerting(loaded, sink, stack)  # type: ignore[arg-type]
        yield daemon.Pipeline(loaded, sink, alerts), sink  # type: ignore[arg-type]


def check(p: daemon.Pipeline, device: str, name: str, up: bool) -> None:
    outcome = Outcome(up=up, reason="ok" if up else "timeout")
    p.observe(Observation(device, name, outcome, now_ns(), 0.01))


def everything_up(p: daemon.Pipeline) -> None:
    for device, name in (
        ("r1", "ping"),
        ("sw1", "ping"),
        ("ap1", "ping"),
        ("ap2", "ping"),
        ("portal-park", "ping"),
        ("portal-park", "portal"),
    ):
        check(p, device, name, True)


async def test_a_failing_portal_pages_park_wifi_down(tmp_path: Path) -> None:
    """The portal fails while the APs are up: park_wifi_down fires for the park (not held), and
    resolves once the portal works again."""
    async with pipeline(tmp_path) as (p, sink):
        everything_up(p)
        check(p, "portal-park", "portal", False)
        assert sink.alerts("park_wifi_down") == [("firing", "")]
        alert = next(s for s in sink.samples if s.measurement == "alert")
        assert alert.tags["entity"] == "park"
        assert alert.tags["site"] == "park"
        assert alert.fields["summary"] == "public WiFi at park is down"
        for _ in range(2):
            check(p, "portal-park", "portal", True)
        assert sink.alerts("park_wifi_down") == [("firing", ""), ("resolved", "")]


async def test_a_dead_park_switch_pages_the_switch_not_the_wifi(tmp_path: Path) -> None:
    """The park's switch dies and takes the APs and the portal with it: the switch is the root
    cause; park_wifi_down is recorded but held as unreachable, so nobody gets a second page."""
    async with pipeline(tmp_path) as (p, sink):
        everything_up(p)
        check(p, "sw1", "ping", False)
        for device, name in (("ap1", "ping"), ("ap2", "ping"), ("portal-park", "ping"), ("portal-park", "portal")):
            check(p, device, name, False)
        assert sink.alerts("park_wifi_down") == [("firing", "unreachable")]
        assert p.alerts is not None
        held = {(i.incident.rule, i.incident.entity): i.held for i in p.alerts.incidents()}
        assert held == {
            ("device_down", "sw1"): "",  # the one page
            ("device_down", "ap1"): "unreachable",
            ("device_down", "ap2"): "unreachable",
            ("device_down", "portal-park"): "unreachable",
            ("park_wifi_down", "park"): "unreachable",
        }


async def test_maintenance_at_the_park_holds_the_wifi_page(tmp_path: Path) -> None:
    """A window on the park site holds park_wifi_down as maintenance."""
    window = "  - {scope: {site: park}, start: '2020-01-01T00:00:00Z', end: '2099-01-01T00:00:00Z'}"
    async with pipeline(tmp_path, window) as (p, sink):
        everything_up(p)
        check(p, "portal-park", "portal", False)
        assert sink.alerts("park_wifi_down") == [("firing", "maintenance")]


@pytest.mark.parametrize("up", [True, False])
async def test_wifi_samples_reach_the_sink(tmp_path: Path, up: bool) -> None:
    """The wifi_service sample goes to the sink like any other."""
    async with pipeline(tmp_path) as (p, sink):
        everything_up(p)
        check(p, "portal-park", "portal", up)
        last = [s for s in sink.samples if s.measurement == "wifi_service"][-1]
        assert last.fields["up"] == int(up)


async def test_reload_retires_the_wifi_alert_of_a_park_without_wifi(tmp_path: Path) -> None:
    """A reload that keeps the park's portal keeps its firing park_wifi_down (and netwatch's own
    self-alerts); one that removes the portal check forgets it, since nothing will report it again."""
    async with pipeline(tmp_path) as (p, _):
        alerts = p.alerts
        assert alerts is not None

        def firing() -> set[tuple[str, str]]:
            return {(s.rule, s.entity) for s in alerts.engine.status() if s.state == "firing"}

        everything_up(p)
        check(p, "portal-park", "portal", False)
        for total in (0, 5):  # points_dropped is a counter: growth fires
            p.emit([Sample("netwatch", {"instance": "t", "component": "sink"}, {"points_dropped": total}, now_ns())])
        assert firing() == {("park_wifi_down", "park"), ("points_dropped", "sink:t")}
        path = tmp_path / "netwatch.yaml"
        await daemon.reload_alerting(alerts, None, load_config(path))
        assert firing() == {("park_wifi_down", "park"), ("points_dropped", "sink:t")}, "a reload keeps both"
        path.write_text(path.read_text().replace("checks: [ping, portal]", "checks: [ping]"))
        await daemon.reload_alerting(alerts, None, load_config(path))
        assert firing() == {("points_dropped", "sink:t")}
