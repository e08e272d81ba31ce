"""A park's public WiFi: up for users only when the portal works and at least one AP is up."""

from __future__ import annotations

from pathlib import Path

import structlog

from netwatch.config import load_config
from netwatch.contract import CONTRACT
from netwatch.inventory import Inventory
from netwatch.model import Observation, Outcome, Sample
from netwatch.parkwifi import wifi_sites
from netwatch.state import StateTracker

CONFIG = """
sites:
  - {id: hq, name: City Hall}
  - {id: park, name: Villa Parke, kind: park}
  - {id: bare-park, name: Bare Park, kind: park}
  - {id: open-park, name: Open Park, kind: park}
  - {id: centre, name: Jackie Robinson Center, kind: community_centre}
devices:
  - {id: r1, site: hq, kind: router, address: 127.0.0.1, checks: [ping]}
  - {id: sw1, site: park, kind: switch, address: 127.0.0.2, parents: [r1], checks: [ping]}
  - {id: ap1, site: park, kind: wifi_ap, address: 127.0.0.3, parents: [sw1]}
  - {id: ap2, site: park, kind: wifi_ap, address: 127.0.0.4, parents: [sw1], checks: [ping, http],
     http: {url: "http://127.0.0.4/"}}
  - {id: ap-push, site: park, kind: wifi_ap, address: 127.0.0.5, parents: [sw1], checks: []}
  - {id: portal-park, site: park, kind: server, address: 127.0.0.6, parents: [sw1], checks: [ping, portal],
     portal: {url: "https://portal.example/park"}}
  - {id: sw2, site: bare-park, kind: switch, address: 127.0.0.7, parents: [r1], checks: [ping]}
  - {id: ap-open, site: open-park, kind: wifi_ap, address: 127.0.0.10, parents: [r1]}
  - {id: ap-centre, site: centre, kind: wifi_ap, address: 127.0.0.8, parents: [r1]}
  - {id: portal-centre, site: centre, kind: server, address: 127.0.0.9, parents: [r1], checks: [portal],
     portal: {url: "https://portal.example/centre"}}
"""


def inventory(tmp_path: Path) -> Inventory:
    (tmp_path / "c.yaml").write_text(CONFIG)
    inv: Inventory = load_config(tmp_path / "c.yaml").inventory
    return inv


def tracker(tmp_path: Path, explained: dict[str, str] | None = None) -> tuple[StateTracker, list[Sample]]:
    out: list[Sample] = []
    reasons = explained or {}
    return StateTracker(inventory(tmp_path), out.extend, override=lambda device: reasons.get(device)), out


def obs(device: str, check: str, up: bool, reason: str = "timeout") -> Observation:
    return Observation(device, check, Outcome(up=up, reason="ok" if up else reason), 0, 0.01)  # type: ignore[arg-type]


def wifi(out: list[Sample], site: str = "park") -> list[dict[str, object]]:
    rows = []
    for s in out:
        if s.measurement == "wifi_service" and s.tags["site"] == site:
            assert dict(s.tags) == {"site": site}
            assert set(s.fields) <= set(CONTRACT["wifi_service"][1])
            rows.append(dict(s.fields))
    return rows


def test_which_sites_have_public_wifi(tmp_path: Path) -> None:
    """Sites with a portal check, a park or not; only APs that are checked count. A park with APs
    but no portal check has no WiFi state: nothing tells whether visitors get past the portal."""
    sites = wifi_sites(inventory(tmp_path))
    assert set(sites) == {"park", "centre"}
    assert sites["park"].aps == ("ap1", "ap2")
    assert sites["park"].portals == ("portal-park",)
    assert sites["centre"].aps == ("ap-centre",)


def test_portal_up_but_no_ap_up_is_down(tmp_path: Path) -> None:
    """Every AP down while the portal works: down, with the counts."""
    t, out = tracker(tmp_path)
    t.observe(obs("portal-park", "portal", True))
    t.observe(obs("ap1", "ping", False))
    assert wifi(out) == [], "ap2 has not reported: it may be up, so nothing is written yet"
    t.observe(obs("ap2", "ping", False))
    t.observe(obs("ap2", "http", False))
    assert wifi(out)[-1] == {"up": 0, "state": "down", "aps_up": 0, "aps_total": 2, "portal_up": 1}


def test_portal_down_with_aps_up_is_down(tmp_path: Path) -> None:
    """APs answer but the portal fails: down at once, without waiting for the other inputs."""
    t, out = tracker(tmp_path)
    t.observe(obs("portal-park", "portal", False, "bad_status"))
    assert wifi(out)[-1] == {"up": 0, "state": "down", "aps_up": 0, "aps_total": 2, "portal_up": 0}
    t.observe(obs("ap1", "ping", True))
    assert wifi(out)[-1] == {"up": 0, "state": "down", "aps_up": 1, "aps_total": 2, "portal_up": 0}


def test_portal_and_one_ap_up_is_up(tmp_path: Path) -> None:
    """The portal works and one AP of two is up (the other degraded counts too): up."""
    t, out = tracker(tmp_path)
    t.observe(obs("ap1", "ping", True))
    assert wifi(out) == [], "the portal has not reported yet"
    t.observe(obs("portal-park", "ping", True))
    assert wifi(out) == [], "the portal device answering ping says nothing about the portal"
    t.observe(obs("portal-park", "portal", True))
    assert wifi(out)[-1] == {"up": 1, "state": "up", "aps_up": 1, "aps_total": 2, "portal_up": 1}
    t.observe(obs("ap1", "ping", False))
    t.observe(obs("ap2", "ping", True))
    t.observe(obs("ap2", "http", False))  # degraded: ping answers, its web UI does not
    assert wifi(out)[-1] == {"up": 1, "state": "up", "aps_up": 1, "aps_total": 2, "portal_up": 1}


def test_a_site_with_a_portal_check_but_not_a_park(tmp_path: Path) -> None:
    """A community centre that checks its portal gets a WiFi state from its portal and AP."""
    t, out = tracker(tmp_path)
    t.observe(obs("portal-centre", "portal", True))
    t.observe(obs("ap-centre", "ping", True))
    assert wifi(out, "centre")[-1] == {"up": 1, "state": "up", "aps_up": 1, "aps_total": 1, "portal_up": 1}


def test_down_only_because_of_another_fault_is_unreachable(tmp_path: Path) -> None:
    """When every culprit is unreachable (behind a dead switch or span) the state says so, and the
    tracker tells alerting, which holds the page; one culprit of its own makes it plainly down."""
    explained = {"ap1": "unreachable", "ap2": "unreachable", "portal-park": "unreachable"}
    t, out = tracker(tmp_path, explained)
    for device, check in (("ap1", "ping"), ("ap2", "ping"), ("ap2", "http"), ("portal-park", "portal")):
        t.observe(obs(device, check, False))
    assert wifi(out)[-1]["state"] == "unreachable"
    assert wifi(out)[-1]["up"] == 0
    assert t.wifi_override("park") == "unreachable"
    explained["portal-park"] = "maintenance"
    t.observe(obs("ap1", "ping", False))
    assert wifi(out)[-1]["state"] == "maintenance"
    del explained["ap2"]
    t.observe(obs("ap1", "ping", False))
    assert wifi(out)[-1]["state"] == "down"
    assert t.wifi_override("park") is None


def test_changes_are_logged_once_each_way(tmp_path: Path) -> None:
    """Going down is one warning saying why, however many checks report; coming back is one info."""
    t, _ = tracker(tmp_path)
    with structlog.testing.capture_logs() as logs:
        t.observe(obs("ap1", "ping", True))
        t.observe(obs("portal-park", "portal", True))
        for _ in range(3):
            t.observe(obs("portal-park", "portal", False, "bad_content"))
            t.observe(obs("ap1", "ping", True))
        t.observe(obs("portal-park", "portal", True))
        t.observe(obs("ap1", "ping", True))
    events = [e for e in logs if e["event"].startswith("wifi_service")]
    assert [e["event"] for e in events] == ["wifi_service_down", "wifi_service_up"]
    assert events[0]["log_level"] == "warning"
    assert "portal check of portal-park fails (bad_content)" in events[0]["why"]


def test_reload_drops_a_site_that_no_longer_has_wifi(tmp_path: Path) -> None:
    """A reload that removes the park's APs and portal stops its WiFi samples."""
    t, out = tracker(tmp_path)
    t.observe(obs("portal-park", "portal", True))
    t.observe(obs("ap1", "ping", True))
    assert wifi(out)
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace("kind: wifi_ap", "kind: other").replace("checks: [ping, portal]", "checks: [ping]")
    )
    t.apply(load_config(tmp_path / "c.yaml").inventory)
    out.clear()
    t.observe(obs("ap1", "ping", True))
    t.observe(obs("portal-park", "ping", True))
    assert wifi(out) == []


def test_a_portal_without_aps_in_the_inventory_decides_alone(tmp_path: Path) -> None:
    """A park whose APs netwatch does not watch follows its portal, saying aps_total 0."""
    (tmp_path / "c.yaml").write_text(CONFIG.replace("kind: wifi_ap", "kind: other"))
    out: list[Sample] = []
    t = StateTracker(load_config(tmp_path / "c.yaml").inventory, out.extend)
    t.observe(obs("portal-park", "portal", True))
    assert wifi(out)[-1] == {"up": 1, "state": "up", "aps_up": 0, "aps_total": 0, "portal_up": 1}


def test_an_ap_that_answers_ping_with_every_radio_down_serves_no_one(tmp_path: Path) -> None:
    """Degraded because its wifi check finds no radio up: not counted as up. Degraded because the
    wifi check timed out (SNMP trouble, radios unknown): still counted."""
    (tmp_path / "c.yaml").write_text(
        CONFIG.replace(
            "  - {id: ap1, site: park, kind: wifi_ap, address: 127.0.0.3, parents: [sw1]}",
            "  - {id: ap1, site: park, kind: wifi_ap, address: 127.0.0.3, parents: [sw1], checks: [ping, wifi],\n"
            "     snmp: {community_file: community}, wifi: {profile: generic}}",
        )
    )
    (tmp_path / "community").write_text("public")
    out: list[Sample] = []
    t = StateTracker(load_config(tmp_path / "c.yaml").inventory, out.extend, override=lambda device: None)
    t.observe(obs("portal-park", "portal", True))
    t.observe(obs("ap2", "ping", False))
    t.observe(obs("ap1", "ping", True))
    t.observe(obs("ap1", "wifi", False, "bad_status"))
    assert wifi(out)[-1] == {"up": 0, "state": "down", "aps_up": 0, "aps_total": 2, "portal_up": 1}
    t.observe(obs("ap1", "wifi", False, "timeout"))
    assert wifi(out)[-1] == {"up": 1, "state": "up", "aps_up": 1, "aps_total": 2, "portal_up": 1}
