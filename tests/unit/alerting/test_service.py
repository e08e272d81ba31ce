"""From transitions to pages: one notification per real problem, with what is dark behind it."""

from __future__ import annotations

from pathlib import Path

from netwatch.alerting.engine import AlertEngine
from netwatch.alerting.maintenance import MaintenanceCalendar, MaintenanceConfig
from netwatch.alerting.model import Notification
from netwatch.alerting.routing import RouteConfig, Router
from netwatch.alerting.rules import effective_rules
from netwatch.alerting.service import AlertService
from netwatch.alerting.topology import Topology
from netwatch.config import load_config
from netwatch.model import Sample

S = 1_000_000_000
T0 = 1_800_000_000 * S


def city(tmp_path: Path, children: int = 500) -> Path:
    lines = [
        "sites: [{id: hq, name: City Hall}, {id: park, name: Villa Parke, kind: park}]",
        "devices:",
        "  - {id: r0, site: hq, kind: router, address: 127.0.0.1, checks: [ping]}",
        "  - {id: core, site: hq, kind: switch, address: 127.0.0.2, checks: [ping], parents: [r0]}",
    ]
    for i in range(children):
        kind = "wifi_ap" if i % 2 else "camera"
        lines.append(f"  - {{id: d{i}, site: park, kind: {kind}, address: 127.0.1.{i % 250 + 1}, parents: [core]}}")
    (tmp_path / "c.yaml").write_text("\n".join(lines) + "\n")
    return tmp_path / "c.yaml"


def service(tmp_path: Path, children: int = 500, maintenance: list[dict[str, object]] | None = None):  # type: ignore[no-untyped-def]
    inventory = load_config(city(tmp_path, children)).inventory
    topology = Topology.from_inventory(inventory)
    sent: list[Notification] = []
    written: list[Sample] = []
    clock = [T0]
    svc = AlertService(
        engine=AlertEngine(effective_rules(), clock=lambda: clock[0]),
        topology=topology,
        calendar=MaintenanceCalendar([MaintenanceConfig.model_validate(m) for m in maintenance or []], topology),
        router=Router([RouteConfig.model_validate({"receivers": ["oncall"], "group_wait": "10s"})]),
        enqueue=lambda n: sent.append(n) or True,
        emit=written.extend,
        site_names={s.id: s.name for s in inventory.sites.values()},
        clock=lambda: clock[0],
    )
    return svc, sent, written, inventory, clock


def device_sample(inventory, device: str, up: bool, t: int) -> Sample:  # type: ignore[no-untyped-def]
    d = inventory.devices[device]
    return Sample("device", d.target.base_tags(), {"up": int(up), "state": "up" if up else "down", "reason": "ok"}, t)


def test_core_switch_with_500_dependents_pages_once_with_the_impact(tmp_path: Path) -> None:
    """The children poll first (they time out first), the core after: one page, for the core, naming
    500 devices at Villa Parke; none for the children; one resolve when it is back."""
    svc, sent, written, inv, clock = service(tmp_path)
    ids = [f"d{i}" for i in range(500)]
    for t in range(3):
        now = T0 + t * 10 * S
        clock[0] = now
        svc.observe([device_sample(inv, d, False, now) for d in ids[:250]])
        svc.observe([device_sample(inv, "core", False, now + S)])
        svc.observe([device_sample(inv, d, False, now + 2 * S) for d in ids[250:]])
        svc.observe([device_sample(inv, "r0", True, now + 2 * S)])
        svc.tick(now + 3 * S)
    assert [(n.event, n.incident.entity) for n in sent] == [("firing", "core")]
    page = sent[0].incident
    assert page.impact.count == 500
    assert page.impact.by_site == {"park": 500}
    assert page.impact.by_kind == {"camera": 250, "wifi_ap": 250}
    assert "500 devices unreachable behind it: 500 at Villa Parke" in page.summary
    assert svc.device_override("d7") == "unreachable"
    # The core comes back, and so do the children: one resolve, still nothing for the children.
    for t in range(3, 6):
        now = T0 + t * 10 * S
        clock[0] = now
        svc.observe([device_sample(inv, "core", True, now)] + [device_sample(inv, d, True, now) for d in ids])
        svc.tick(now + S)
    assert [(n.event, n.incident.entity) for n in sent] == [("firing", "core"), ("resolved", "core")]
    alert_rows = [s for s in written if s.measurement == "alert"]
    assert {s.tags["entity"] for s in alert_rows if s.fields["state"] == "firing"} >= {"core", "d0"}


def test_core_recovering_before_its_dependents_pages_none_of_them(tmp_path: Path) -> None:
    """The core comes back a poll before its children see it (they poll 5 s later and need two
    clear checks): a child whose own condition is already clearing is not a new root cause, so the
    recovery is one resolve, not one page per child (the storm bench saw ~180 of 500)."""
    svc, sent, _, inv, clock = service(tmp_path)
    ids = [f"d{i}" for i in range(500)]
    for t in range(4):
        now = T0 + t * 10 * S
        clock[0] = now
        svc.observe([device_sample(inv, "core", False, now)])
        svc.observe([device_sample(inv, d, False, now + 5 * S) for d in ids])
        svc.tick(now + 6 * S)
    assert [(n.event, n.incident.entity) for n in sent] == [("firing", "core")]
    for t in range(4, 9):
        now = T0 + t * 10 * S
        clock[0] = now
        svc.observe([device_sample(inv, "core", True, now)])
        svc.tick(now + S)
        clock[0] = now + 5 * S
        svc.observe([device_sample(inv, d, True, now + 5 * S) for d in ids])
        svc.tick(now + 6 * S)
    assert [(n.event, n.incident.entity) for n in sent] == [("firing", "core"), ("resolved", "core")]


def test_child_that_stays_down_after_its_parent_recovers_pages_then(tmp_path: Path) -> None:
    """If the parent recovers and the child does not, the child's own alert goes out then."""
    svc, sent, _, inv, clock = service(tmp_path, children=3)
    for t in range(3):
        now = T0 + t * 10 * S
        clock[0] = now
        svc.observe([device_sample(inv, d, False, now) for d in ("core", "d0", "d1", "d2")])
        svc.tick(now + S)
    assert [n.incident.entity for n in sent] == ["core"]
    for t in range(3, 7):
        now = T0 + t * 10 * S
        clock[0] = now
        svc.observe([device_sample(inv, d, d != "d1", now) for d in ("core", "d0", "d1", "d2")])
        svc.tick(now + S)
    assert [(n.event, n.incident.entity) for n in sent] == [("firing", "core"), ("resolved", "core"), ("firing", "d1")]


def test_blip_shorter_than_group_wait_pages_nobody(tmp_path: Path) -> None:
    """Down for one poll and back before group_wait: recorded in InfluxDB, no notification."""
    svc, sent, written, inv, clock = service(tmp_path, children=1)
    clock[0] = T0
    svc.observe([device_sample(inv, "d0", False, T0)])
    svc.tick(T0 + S)
    for t in (2, 3, 4):
        clock[0] = T0 + t * S
        svc.observe([device_sample(inv, "d0", True, T0 + t * S)])
        svc.tick(T0 + t * S)
    clock[0] = T0 + 12 * S
    svc.observe([device_sample(inv, "d0", True, T0 + 12 * S)])
    svc.tick(T0 + 13 * S)  # past group_wait of the blip's start
    assert sent == []
    assert [s.fields["state"] for s in written if s.measurement == "alert"] == ["firing", "resolved"]


def test_maintenance_holds_pages_and_sends_what_still_fires_after(tmp_path: Path) -> None:
    """Inside a window over the core (and so everything behind it) nothing is sent; what still
    fires when the window ends is sent then."""
    start = "2027-01-15T08:00:00+00:00"
    end = "2027-01-15T08:01:00+00:00"
    svc, sent, _, inv, clock = service(
        tmp_path, children=3, maintenance=[{"scope": {"device": "core"}, "start": start, "end": end}]
    )
    t0 = 1_800_000_000 * S  # 2027-01-15T08:00:00Z
    for t in range(0, 100, 10):
        now = t0 + t * S
        clock[0] = now
        svc.observe([device_sample(inv, "core", False, now)])
        svc.tick(now + S)
        if t < 60:
            assert sent == [], t
    assert [(n.event, n.incident.entity) for n in sent] == [("firing", "core")]
