"""``/api/v1/state``: the plant as netwatch last wrote it, with names, for the demo and the status page."""

from __future__ import annotations

from pathlib import Path

from netwatch.api.state import plant_state
from netwatch.config import load_config
from netwatch.inventory import Inventory
from netwatch.model import Observation, Outcome, Sample
from netwatch.state import StateTracker

T0 = 1_790_000_000_000_000_000


def _inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
sites:
  - {id: ch, name: City Hall, kind: facility, location: {lat: 34.1, lon: -118.1}}
  - {id: vp, name: Villa Parke, kind: park}
devices:
  - {id: core, site: ch, kind: router, address: 127.0.0.1, checks: [ping]}
  - {id: sw, site: vp, kind: switch, address: 127.0.0.2, checks: [ping], parents: [core]}
links:
  - {id: span-1, a: {device: core, port: p1}, b: {device: sw, port: p2}, lessee: university}
"""
    )
    return load_config(path).inventory


def _obs(device: str, up: bool, at: int) -> Observation:
    outcome = Outcome(up=up, reason="ok" if up else "timeout", samples=())
    return Observation(device=device, check="ping", started_ns=at, duration_s=0.0, outcome=outcome)


def test_state_names_every_device_span_and_site_and_keeps_since_while_the_state_holds(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    written: list[Sample] = []
    tracker = StateTracker(inventory, written.extend)
    before = plant_state(inventory, tracker.seen)
    assert [d["state"] for d in before["devices"]] == ["unknown", "unknown"]
    tracker.observe(_obs("core", True, T0))
    tracker.observe(_obs("sw", False, T0 + 10**9))
    tracker.observe(_obs("sw", False, T0 + 31 * 10**9))
    doc = plant_state(inventory, tracker.seen)
    devices = {d["id"]: d for d in doc["devices"]}
    assert devices["core"]["state"] == "up"
    assert devices["sw"] == {
        "id": "sw",
        "site": "vp",
        "kind": "switch",
        "state": "down",
        "reason": "timeout",
        "since": "2026-09-21T14:13:21Z",  # the first down sample, not the latest
        "updated": "2026-09-21T14:13:51Z",
    }
    assert doc["links"][0]["id"] == "span-1"
    assert doc["links"][0]["state"] == "down"
    assert doc["links"][0]["lessee"] == "university"
    assert doc["sites"][0] == {
        "id": "ch",
        "name": "City Hall",
        "kind": "facility",
        "location": {"lat": 34.1, "lon": -118.1},
        "wifi": None,
    }
    # The same state as the samples written: the API never tells another story than InfluxDB.
    last = {s.tags["device"]: s.fields["state"] for s in written if s.measurement == "device"}
    assert last == {d["id"]: d["state"] for d in doc["devices"]}
