"""The wifi check against a real snmpd answering each shipped profile's OIDs.

snmpd does SNMP (v2c and v3); the lab agent (netwatch.lab.snmpagent) serves the vendor tables
from its state file under the vendors' enterprise subtrees, laid out by the lab's AP MIB
(netwatch.lab.apmib) as the MIBs cited in each profile define them: a UniFi AP, a Cisco WLC and an
Aruba controller serving several APs each, and an AP with only IF-MIB (and IEEE802dot11-MIB
channels) for the generic profile.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from netwatch import cli
from netwatch.contract import CONTRACT
from netwatch.lab import apmib
from netwatch.lab.apmib import ControllerAp, SimRadio
from netwatch.model import Outcome, Sample, Target
from netwatch.probes.base import ProbeResources
from netwatch.probes.wifi import WifiConfig, build
from netwatch.probes.wifiprofile import catalog
from tests.servers.common import stop
from tests.servers.snmpd import V3_USERS, SnmpServer, interface, start_snmpd

VENDOR_ROOTS = (".1.3.6.1.4.1.41112", ".1.3.6.1.4.1.14179", ".1.3.6.1.4.1.14823", ".1.2.840.10036")


@pytest.fixture(scope="module")
def wifi_snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpServer]:
    """One snmpd whose lab agent also answers the WiFi vendors' subtrees."""
    from netwatch.lab import snmpagent

    server = start_snmpd(tmp_path_factory.mktemp("wifi-snmpd"), roots=(*snmpagent.ROOTS, *VENDOR_ROOTS))
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    res = ProbeResources()
    yield res
    await res.aclose()


def serve(server: SnmpServer, oids: dict[str, list[Any]], interfaces: list[dict[str, Any]] | None = None) -> None:
    """Make the agent a device with these objects (and interfaces), nothing else."""
    server.state = {
        "epoch": time.time(),
        "system": {"name": "lab-wifi", "uptime_s": 86_400},
        "interfaces": interfaces or [interface(1, "eth0", speed_mbps=1000)],
        "oids": oids,
    }
    server.write()


def unifi(clients: tuple[int, int] = (7, 10)) -> dict[str, list[Any]]:
    """A UniFi AP: radios wifi0 (ng) and wifi1 (na), two SSIDs each, VAP rows not in radio order."""
    return apmib.unifi([SimRadio(0, "2.4GHz", 6, clients[0], 35), SimRadio(1, "5GHz", 36, clients[1], 62)])


def mac(n: int) -> str:
    return f"00:11:22:33:44:{n:02x}"


def cisco_wlc(aps: int = 3, up: bool = True) -> dict[str, list[Any]]:
    """A WLC with APs ap-vp-1..N: radios in slots 0 (802.11b/g) and 1 (802.11a), load per radio."""
    oids = apmib.cisco_wlc(
        [
            ControllerAp(
                f"ap-vp-{n}",
                mac(n),
                [SimRadio(0, "2.4GHz", 11, n, 10 * n, up), SimRadio(1, "5GHz", 149, n + 1, 10 * n + 1, up)],
            )
            for n in range(1, aps + 1)
        ]
    )
    # bsnApIfNoOfUsers disagrees with the load table, so a test sees which one the profile reads.
    for key in [k for k in oids if k.startswith(f"{apmib.BSN_AP_IF}.15.")]:
        oids[key] = ["counter", 100 + oids[key][1]]
    return oids


def aruba(aps: int = 2) -> dict[str, list[Any]]:
    """An Aruba controller: radio 0 5 GHz (dot11a), radio 1 2.4 GHz (dot11g); AP 2's radio 1 is an air monitor."""
    return apmib.aruba(
        [
            ControllerAp(
                f"ap-bs-{n}",
                mac(n),
                [SimRadio(0, "5GHz", 44, 5 * n, 40), SimRadio(1, "2.4GHz", 1, 5 * n + 1, 41, up=(n, 1) != (2, 1))],
            )
            for n in range(1, aps + 1)
        ]
    )


def cfg(server: SnmpServer, profile: str, **values: Any) -> WifiConfig:
    """A wifi check config for the lab agent, community read from a file like in production."""
    return WifiConfig.model_validate(
        {
            "version": "2c",
            "port": server.port,
            "community_file": str(server.community_file),
            "timeout": 1.0,
            "retries": 0,
            "profile": profile,
            **values,
        }
    )


def target(device: str = "ap-vp-1", site: str = "villa-parke") -> Target:
    return Target(device, site, "wifi_ap", "127.0.0.1")


def radios(outcome: Outcome) -> dict[str, Sample]:
    return {s.tags["radio"]: s for s in outcome.samples if s.measurement == "wifi_radio"}


def ap(outcome: Outcome) -> Sample:
    (sample,) = [s for s in outcome.samples if s.measurement == "wifi"]
    return sample


def assert_contract(outcome: Outcome) -> None:
    """Every sample uses the data contract's measurements, tags and field types exactly."""
    assert outcome.samples
    for sample in outcome.samples:
        tags, fields = CONTRACT[sample.measurement]
        assert set(sample.tags) <= tags, sample
        for name, value in sample.fields.items():
            want = {"int": int, "float": float, "str": str}[fields[name]]
            assert type(value) is want, (sample.measurement, name, value)


async def test_unifi_ap(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """UniFi: per radio band, channel, load and clients summed over its SSIDs; the AP's totals."""
    serve(wifi_snmpd, unifi())
    outcome = await build(target(), cfg(wifi_snmpd, "unifi"), resources).check()
    assert (outcome.up, outcome.reason, outcome.detail) == (True, "ok", "")
    assert_contract(outcome)
    got = radios(outcome)
    assert got["wifi0"].tags == {"device": "ap-vp-1", "site": "villa-parke", "radio": "wifi0", "band": "2.4GHz"}
    assert got["wifi0"].fields == {"up": 1, "channel": 6, "channel_util_pct": 35.0, "clients": 7}
    assert got["wifi1"].fields == {"up": 1, "channel": 36, "channel_util_pct": 62.0, "clients": 10}
    assert ap(outcome).tags == {"device": "ap-vp-1", "site": "villa-parke"}
    assert ap(outcome).fields == {"radios_up": 2, "radios_down": 0, "clients": 17, "channel_util_pct": 62.0}


async def test_unifi_ap_over_snmpv3(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """The same poll with SNMPv3 authPriv (SHA/AES), keys from files."""
    serve(wifi_snmpd, unifi())
    user = next(u for u in V3_USERS if u.name == "nw-sha-aes")
    config = cfg(
        wifi_snmpd,
        "unifi",
        version="3",
        community_file=None,
        user=user.name,
        security_level=user.level,
        auth_protocol=user.auth,
        auth_key_file=str(wifi_snmpd.auth_key_file),
        priv_protocol=user.priv,
        priv_key_file=str(wifi_snmpd.priv_key_file),
    )
    outcome = await build(target(), config, resources).check()
    assert outcome.up, outcome.detail
    assert ap(outcome).fields["clients"] == 17


async def test_cisco_wlc_reads_only_the_devices_ap(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """A WLC with three APs: the device ap-vp-2 gets its two radios, found by name in bsnAPName."""
    serve(wifi_snmpd, cisco_wlc(3))
    outcome = await build(target("ap-vp-2"), cfg(wifi_snmpd, "cisco-wlc", agent="127.0.0.1"), resources).check()
    assert (outcome.up, outcome.reason) == (True, "ok"), outcome.detail
    assert_contract(outcome)
    got = radios(outcome)
    assert sorted(got) == ["0", "1"]
    assert got["0"].tags["band"] == "2.4GHz"
    assert got["0"].fields == {"up": 1, "channel": 11, "channel_util_pct": 20.0, "clients": 2}
    assert got["1"].tags["band"] == "5GHz"
    assert got["1"].fields == {"up": 1, "channel": 149, "channel_util_pct": 21.0, "clients": 3}
    assert ap(outcome).fields == {"radios_up": 2, "radios_down": 0, "clients": 5, "channel_util_pct": 21.0}


async def test_cisco_wlc_ap_by_mac(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """wifi.ap as the AP's MAC address: the same rows, without the name lookup."""
    serve(wifi_snmpd, cisco_wlc(3))
    outcome = await build(target("x"), cfg(wifi_snmpd, "cisco-wlc", ap="00:11:22:33:44:03"), resources).check()
    assert outcome.up, outcome.detail
    assert ap(outcome).fields["clients"] == 3 + 4


async def test_aruba_controller(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """Aruba: AP found by wlanAPName; a radio without an active BSSID (air monitor) is down."""
    serve(wifi_snmpd, aruba(2))
    outcome = await build(target("ap-bs-2", "brookside"), cfg(wifi_snmpd, "aruba-wlan"), resources).check()
    assert (outcome.up, outcome.reason) == (True, "ok")
    assert outcome.detail == "1 of 2 radios down: 1 (2.4GHz)"
    assert_contract(outcome)
    got = radios(outcome)
    assert got["0"].tags["band"] == "5GHz"
    assert got["0"].fields == {"up": 1, "channel": 44, "channel_util_pct": 40.0, "clients": 10}
    assert got["1"].fields["up"] == 0
    assert ap(outcome).fields == {"radios_up": 1, "radios_down": 1, "clients": 21, "channel_util_pct": 40.0}


async def test_generic_ap_from_if_mib(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """Generic: ieee80211 interfaces only, named by ifName, channels from IEEE802dot11-MIB."""
    radio_interfaces, channels = apmib.generic([SimRadio(0, "2.4GHz", 6), SimRadio(1, "5GHz", 36, up=False)], 5)
    serve(wifi_snmpd, channels, [interface(1, "eth0", speed_mbps=1000), *radio_interfaces])
    outcome = await build(target(), cfg(wifi_snmpd, "generic"), resources).check()
    assert (outcome.up, outcome.reason) == (True, "ok")
    assert outcome.detail == "1 of 2 radios down: wlan1"
    assert_contract(outcome)
    got = radios(outcome)
    assert sorted(got) == ["wlan0", "wlan1"]
    assert got["wlan0"].fields == {"up": 1, "channel": 6}
    assert got["wlan1"].fields == {"up": 0, "channel": 36}
    assert ap(outcome).fields == {"radios_up": 1, "radios_down": 1}


async def test_every_radio_down(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """Both radios down on the WLC: reason bad_status naming them, samples still written."""
    serve(wifi_snmpd, cisco_wlc(2, up=False))
    outcome = await build(target(), cfg(wifi_snmpd, "cisco-wlc"), resources).check()
    assert (outcome.up, outcome.reason) == (False, "bad_status")
    assert outcome.detail == "no radio up: 0 (2.4GHz), 1 (5GHz) down"
    assert ap(outcome).fields["radios_up"] == 0


async def test_no_clients(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """Nobody in the park: the check is up, clients=0, and the detail says so."""
    serve(wifi_snmpd, unifi(clients=(0, 0)))
    outcome = await build(target(), cfg(wifi_snmpd, "unifi"), resources).check()
    assert (outcome.up, outcome.reason, outcome.detail) == (True, "ok", "no clients associated")
    assert ap(outcome).fields["clients"] == 0


@pytest.mark.parametrize(
    ("served", "profile", "fragments"),
    [
        ("cisco", "unifi", ["unifiRadioRadio (1.3.6.1.4.1.41112.1.6.1.1.1.3)", "unifiVapUp", "profile 'unifi'"]),
        ("unifi", "cisco-wlc", ["lacks bsnAPName (1.3.6.1.4.1.14179.2.2.1.1.3)", "profile 'cisco-wlc'"]),
        ("unifi", "generic", ["no row of ifType (1.3.6.1.2.1.2.2.1.3) is 71", "profile 'generic'"]),
    ],
)
async def test_wrong_profile_names_missing_oids(
    wifi_snmpd: SnmpServer, resources: ProbeResources, served: str, profile: str, fragments: list[str]
) -> None:
    """An agent without the profile's objects: bad_content, the missing OIDs named, no exception."""
    serve(wifi_snmpd, cisco_wlc(1) if served == "cisco" else unifi())
    outcome = await build(target("ap-vp-1"), cfg(wifi_snmpd, profile), resources).check()
    assert (outcome.up, outcome.reason) == (False, "bad_content")
    for fragment in fragments:
        assert fragment in outcome.detail


async def test_ap_not_joined(wifi_snmpd: SnmpServer, resources: ProbeResources) -> None:
    """The controller does not list the AP: bad_status, the detail says how many it lists."""
    serve(wifi_snmpd, cisco_wlc(2))
    outcome = await build(target("ap-vp-9"), cfg(wifi_snmpd, "cisco-wlc"), resources).check()
    assert (outcome.up, outcome.reason) == (False, "bad_status")
    assert "AP 'ap-vp-9' is not on the controller 127.0.0.1 (2 APs listed" in outcome.detail


async def test_wrong_community_times_out(wifi_snmpd: SnmpServer, resources: ProbeResources, tmp_path: Path) -> None:
    """A wrong community gets no answer: reason timeout naming the community, never the secret."""
    serve(wifi_snmpd, unifi())
    (tmp_path / "wrong").write_text("not-the-community\n")
    config = cfg(wifi_snmpd, "unifi", community_file=str(tmp_path / "wrong"), timeout=0.3)
    outcome = await build(target(), config, resources).check()
    assert (outcome.up, outcome.reason) == (False, "timeout")
    assert "community" in outcome.detail
    assert "not-the-community" not in outcome.detail


def test_netwatch_probe_runs_the_wifi_check_from_a_config(
    wifi_snmpd: SnmpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the config: credentials and port from defaults.snmp, profile from the AP kind's defaults."""
    serve(wifi_snmpd, unifi())
    (tmp_path / "community").write_text(wifi_snmpd.community_file.read_text())
    config = tmp_path / "netwatch.yaml"
    config.write_text(
        f"""\
defaults:
  snmp: {{community_file: community, port: {wifi_snmpd.port}, timeout: 1s, retries: 0}}
  kinds:
    wifi_ap: {{checks: [wifi], wifi: {{profile: unifi}}}}
sites:
  - {{id: villa-parke, name: Villa Parke, kind: park}}
devices:
  - {{id: ap-vp-1, site: villa-parke, kind: wifi_ap, address: 127.0.0.1}}
"""
    )
    assert cli.main(["probe", "-c", str(config), "ap-vp-1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    text = json.dumps(rows)
    assert '"wifi_radio"' in text
    assert '"clients": 17' in text


def test_netwatch_profiles_lists_the_shipped_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    """netwatch profiles --json: name, vendor, MIB and fields of every shipped profile."""
    assert cli.main(["profiles", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == sorted(catalog().profiles)
    assert {r["name"]: r["mib"] for r in rows}["cisco-wlc"] == "AIRESPACE-WIRELESS-MIB"
    assert cli.main(["profiles", "show", "unifi"]) == 0
    assert "unifiVapNumStations (1.3.6.1.4.1.41112.1.6.1.2.1.8) over join vap (sum)" in capsys.readouterr().out
