"""The lab's plan: the lab file, the generator, what a fault darkens, and the config it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwatch.config import ConfigError, load_config
from netwatch.lab.generate import dump, generate
from netwatch.lab.netconfig import config_data, write_config
from netwatch.lab.reach import Plant
from netwatch.lab.spec import load_lab

CITY = Path(__file__).resolve().parents[3] / "config" / "lab" / "city.yaml"


def test_the_shipped_city_matches_the_example_config() -> None:
    lab = load_lab(CITY)
    example = load_config(CITY.parents[1] / "example.yaml")
    # Same plant: every site and span of the example, and its devices (the lab adds the WLC the
    # example only names by address).
    assert {s.id for s in lab.spec.sites} == set(example.inventory.sites)
    assert {link.id for link in lab.spec.links} == set(example.inventory.links)
    assert set(example.inventory.devices) <= {d.id for d in lab.spec.devices}
    # One loopback address each, none shared.
    assert len(set(lab.addresses.values())) == len(lab.spec.devices)
    assert all(a.startswith("127.20.") for a in lab.addresses.values())


def test_a_bad_lab_file_names_file_line_and_key_for_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "lab: {network: 10.0.0.0/24}\n"
        "sites:\n"
        "  - {id: yard, name: Yard}\n"
        "devices:\n"
        "  - {id: sw-1, site: yard, kind: switch}\n"
        "  - {id: ap-1, site: nowhere, kind: wifi_ap, parents: [sw-9]}\n"
        "  - {id: sw-1, site: yard, kind: toaster}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    text = str(err.value)
    assert f"{path}:1: lab.network" in text
    assert "127.0.0.0/8" in text
    assert f"{path}:7: devices[2].kind" in text
    # Cross-references are checked once the shapes are right: fix the shapes, see those.
    path.write_text(path.read_text().replace("10.0.0.0/24", "127.21.0.0/24").replace("toaster", "switch"))
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    lines = str(err.value).splitlines()
    assert f"{path}:6: devices[1].site: unknown site 'nowhere'" in lines
    assert any(line.startswith(f"{path}:6: devices[1].parents[0]: unknown device 'sw-9'") for line in lines)
    assert f"{path}:7: devices[2].id: duplicate device id 'sw-1'" in lines


@pytest.mark.parametrize(("devices", "mix"), [(2, "city"), (37, "city"), (1000, "city"), (1000, "switches")])
def test_the_generator_gives_exactly_the_devices_asked_for_and_a_valid_lab(
    tmp_path: Path, devices: int, mix: str
) -> None:
    path = tmp_path / "gen.yaml"
    path.write_text(dump(generate(devices, mix=mix), devices, mix))  # type: ignore[arg-type]
    lab = load_lab(path)
    assert len(lab.spec.devices) == devices
    assert generate(devices, mix=mix) == generate(devices, mix=mix)  # type: ignore[arg-type]
    # Every device but the first ring router hangs off the ring; nothing is dark with no fault.
    assert Plant(lab.spec).dark() == set()
    if mix == "switches":
        assert {d.kind for d in lab.spec.devices} <= {"router", "switch"}


def test_cutting_a_lateral_darkens_the_park_and_a_ring_span_nothing() -> None:
    plant = Plant(load_lab(CITY).spec)
    assert plant.dark(["span-fs31-vp"]) == {"sw-vp", "ap-vp-1", "ap-vp-2", "door-vp-1", "cam-vp-1"}
    # The ring survives one cut; fire-31 has two paths (via police HQ and the library).
    assert plant.dark(["span-ch-pd"]) == set()
    assert plant.dark(["span-pd-fs31"]) == set()
    # Both of fire-31's paths cut: it and both parks behind it go dark.
    both = plant.dark(["span-pd-fs31", "span-lib-fs31"])
    assert {"core-fs31", "sw-vp", "sw-vic", "ap-vic-1"} <= both
    assert "core-pd" not in both
    # Two spans between City Hall and the library (one leased): cutting one leaves the other.
    assert "core-lib" not in plant.dark(["span-lib-ch", "span-ch-pd"])
    assert "core-lib" in plant.dark(["span-lib-ch", "span-ch-univ", "span-ch-pd"]) - plant.dark(["span-ch-pd"])


def test_a_device_down_darkens_itself_and_what_hangs_only_off_it() -> None:
    plant = Plant(load_lab(CITY).spec)
    assert plant.dark(down_devices=["sw-jr"]) == {"sw-jr", "ap-jr-1", "door-jr-1", "door-jr-2", "cam-jr-1", "cam-jr-2"}
    assert plant.dark(down_devices=["core-eoc"]) == {
        "core-eoc",
        "wifi-ctl",
        "portal-vp",
        "portal-bs",
        "portal-vic",
        "portal-cp",
    }


def test_the_written_config_passes_check_config_and_points_only_at_loopback(tmp_path: Path) -> None:
    lab = load_lab(CITY)
    out = write_config(lab, tmp_path / "netwatch.yaml", influxdb="http://127.0.0.1:8086", icmp=True)
    loaded = load_config(out)
    devices = loaded.inventory.devices
    assert len(devices) == len(lab.spec.devices)
    assert {d.target.address for d in devices.values()} <= set(lab.addresses.values())
    checks = {d.id: [c.name for c in d.checks] for d in devices.values()}
    assert checks["core-ch"] == ["ping", "snmp"]
    assert checks["ap-vp-1"] == ["ping", "wifi"]
    assert checks["cam-vp-1"] == ["ping", "rtsp", "snapshot"]
    assert checks["portal-vp"] == ["ping", "portal"]
    assert loaded.config.mqtt is not None
    assert loaded.config.mqtt.port == lab.spec.lab.mqtt_port
    # Secrets are files beside it, not in it.
    assert "lab-city" not in out.read_text()
    assert (tmp_path / "credentials" / "lab-community").read_text().strip() == "lab-city"
    assert (tmp_path / "credentials" / "lab-community").stat().st_mode & 0o077 == 0


def test_without_icmp_the_config_leaves_ping_out() -> None:
    lab = load_lab(CITY)
    data = config_data(lab, influxdb=None, icmp=False, receivers=[], state_dir=Path("/tmp/x"))
    kinds = data["defaults"]["kinds"]
    assert kinds["router"]["checks"] == ["snmp"]
    assert kinds["access_panel"]["checks"] == []
    assert "influxdb" not in data
