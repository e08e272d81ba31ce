"""The lab's SNMP agent (netwatch.lab.snmplab) against real managers: net-snmp's snmpwalk and
snmpbulkwalk, netwatch's own snmp and wifi probes, and netwatch's trap receiver.

Each test starts a lab of simulated devices on their own 127.20.0.x addresses (a free UDP port,
so a running lab on 16100 does not get in the way) and checks that what a manager reads is what
the model holds, before and after faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netwatch.config import load_config
from netwatch.daemon import ProbeCache, build_jobs
from netwatch.ingest.traps import TrapReceiver, port_lookup
from netwatch.lab.apmib import ControllerAp, SimRadio
from netwatch.lab.simdevice import SimDevice, SimInterface, SimOptics
from netwatch.lab.snmplab import SnmpLab
from netwatch.model import Observation, Outcome, PortRef, Sample, Target
from netwatch.probes import snmp, wifi
from netwatch.probes.base import ProbeResources
from netwatch.scheduler import Scheduler
from tests.servers.common import free_port, require_binary

COMMUNITY = "lab-city-secret"
CORE, NEIGHBOUR, AP, WLC, ARUBA, GENERIC = (f"127.20.0.{n}" for n in range(5, 11))
PORTS = (PortRef("xe-0/0/1"), PortRef("xe-0/0/2"), PortRef("ge-0/0/3"))
GAP_S = 1.5  # between two polls, for rates


def city(port: int) -> list[SimDevice]:
    """A core router with optics, its neighbour, a UniFi AP, a Cisco WLC, an Aruba controller and a generic AP."""
    core = SimDevice(
        "core-ch",
        "router",
        CORE,
        snmp_port=port,
        community=COMMUNITY,
        interfaces=[
            SimInterface(1, "xe-0/0/1", 10_000, in_bps=1e9, out_bps=1e8, optics=SimOptics(-3.1, -1.9, 31.5, 6.2)),
            SimInterface(2, "xe-0/0/2", 10_000, in_bps=2e9, out_bps=4e8, optics=SimOptics(-14.2, -2.3, 44.0, 7.9)),
            SimInterface(3, "ge-0/0/3", 1000, in_bps=5e7, out_bps=2e7, error_rate=20.0),
        ],
    )
    neighbour = SimDevice(
        "core-pd", "router", NEIGHBOUR, snmp_port=port, community=COMMUNITY, interfaces=[SimInterface(1, "xe-0/0/0")]
    )
    unifi = SimDevice(
        "ap-vp-1",
        "wifi_ap",
        AP,
        snmp_port=port,
        community=COMMUNITY,
        interfaces=[SimInterface(1, "eth0")],
        radios=[SimRadio(0, "2.4GHz", 6, clients=9, util_pct=35), SimRadio(1, "5GHz", 36, clients=14, util_pct=60)],
        ap_profile="unifi",
    )
    joined = [
        ControllerAp(
            f"ap-cp-{n}",
            f"00:3a:7d:00:00:0{n}",
            [
                SimRadio(0, "2.4GHz", 11, clients=n, util_pct=10 * n),
                SimRadio(1, "5GHz", 149, clients=n + 3, util_pct=50),
            ],
        )
        for n in (1, 2)
    ]
    wlc = SimDevice(
        "wlc-ch", "wlc", WLC, snmp_port=port, community=COMMUNITY, ap_profile="cisco-wlc", controller_aps=joined
    )
    campus = [
        ControllerAp(
            f"ap-vic-{n}",
            f"00:3a:7d:00:01:0{n}",
            [SimRadio(0, "5GHz", 44, clients=5 * n, util_pct=40), SimRadio(1, "2.4GHz", 1, clients=2, util_pct=20)],
        )
        for n in (1, 2)
    ]
    aruba = SimDevice(
        "mc-vic", "wlc", ARUBA, snmp_port=port, community=COMMUNITY, ap_profile="aruba-wlan", controller_aps=campus
    )
    generic = SimDevice(
        "ap-jr-1",
        "wifi_ap",
        GENERIC,
        snmp_port=port,
        community=COMMUNITY,
        interfaces=[SimInterface(1, "eth0")],
        radios=[SimRadio(0, "2.4GHz", 6, clients=4), SimRadio(1, "5GHz", 149, clients=8)],
        ap_profile="generic",
    )
    return [core, neighbour, unifi, wlc, aruba, generic]


@dataclass
class Lab:
    agent: SnmpLab
    port: int
    community_file: Path

    def __getitem__(self, device_id: str) -> SimDevice:
        return self.agent.device(device_id)

    def access(self, **values: Any) -> dict[str, Any]:
        return {
            "version": "2c",
            "port": self.port,
            "community_file": str(self.community_file),
            "timeout": 1.0,
            "retries": 0,
        } | values


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    port = free_port(socket.SOCK_DGRAM)
    community_file = tmp_path / "community"
    community_file.write_text(COMMUNITY + "\n")
    agent = SnmpLab()
    for device in city(port):
        agent.add(device)
    async with agent:
        yield Lab(agent, port, community_file)


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    res = ProbeResources()
    yield res
    await res.aclose()


# -- (a) net-snmp's manager tools -------------------------------------------------------------------


async def net_snmp(tool: str, lab: Lab, address: str, root: str, *options: str) -> dict[str, tuple[str, str]]:
    """Run snmpwalk/snmpbulkwalk; return OID -> (type, value) in the order printed."""
    binary = require_binary(tool, "snmp")
    proc = await asyncio.create_subprocess_exec(
        binary, "-M", "/nonexistent", "-m", "", "-v2c", "-c", COMMUNITY, "-On", "-t", "2", *options,
        f"{address}:{lab.port}", root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows: dict[str, tuple[str, str]] = {}
    for line in out.decode().splitlines():
        oid, _, rest = line.partition(" = ")
        kind, sep, value = rest.partition(": ")
        rows[oid.lstrip(".")] = (kind, value) if sep else ("", rest)
    return rows


def dotted(oid: tuple[int, ...]) -> str:
    return ".".join(map(str, oid))


async def test_snmpwalk_reads_the_interfaces_the_model_holds(lab: Lab) -> None:
    """snmpwalk of IF-MIB's interfaces group: every row of the model, in order, with its values."""
    rows = await net_snmp("snmpwalk", lab, CORE, "1.3.6.1.2.1.2")
    view = lab["core-ch"].view()
    assert list(rows) == [dotted(k) for k in view.layout.keys if k[:7] == (1, 3, 6, 1, 2, 1, 2)]
    assert rows["1.3.6.1.2.1.2.1.0"] == ("INTEGER", "3")
    assert [rows[f"1.3.6.1.2.1.2.2.1.2.{i}"][1] for i in (1, 2, 3)] == ['"xe-0/0/1"', '"xe-0/0/2"', '"ge-0/0/3"']
    assert [rows[f"1.3.6.1.2.1.2.2.1.8.{i}"] for i in (1, 2, 3)] == [("INTEGER", "1")] * 3
    assert rows["1.3.6.1.2.1.2.2.1.5.1"] == ("Gauge32", "4294967295"), "ifSpeed saturates at 10G"
    assert rows["1.3.6.1.2.1.2.2.1.10.1"][0] == "Counter32"


async def test_snmpbulkwalk_reads_the_whole_device(lab: Lab) -> None:
    """snmpbulkwalk with 100 repetitions (more than fit one answer, so the agent sends shorter
    ones) reads every OID of the device in order; counters fall between the model's values at
    the start and the end of the walk; the optic's Rx power is the model's."""
    device = lab["core-ch"]
    start = time.time()
    rows = await net_snmp("snmpbulkwalk", lab, CORE, "1.3.6.1", "-Cr100")
    end = time.time()
    assert list(rows) == [dotted(k) for k in device.view().layout.keys]
    assert lab.agent.stats.answered < len(rows) / 20, "each answer carried many varbinds"
    hc_in = rows["1.3.6.1.2.1.31.1.1.1.6.2"]
    assert hc_in[0] == "Counter64"
    iface = device.interface("xe-0/0/2")
    assert iface.octets_at(start)[0] <= int(hc_in[1]) <= iface.octets_at(end)[0]
    assert rows["1.3.6.1.2.1.31.1.1.1.1.3"] == ("STRING", '"ge-0/0/3"')
    assert rows["1.3.6.1.2.1.99.1.1.1.4.1005"] == ("INTEGER", "-31")
    assert rows["1.3.6.1.2.1.1.5.0"] == ("STRING", '"core-ch"')


# -- (b) netwatch's snmp probe ---------------------------------------------------------------------


def by(outcome: Outcome, measurement: str) -> dict[str, Sample]:
    return {s.tags.get("port", ""): s for s in outcome.samples if s.measurement == measurement}


async def test_snmp_probe_reads_rates_states_and_optics_then_sees_each_fault(
    lab: Lab, resources: ProbeResources
) -> None:
    """Two polls: rates match the model's traffic then, errors/s its error rate, optics its
    readings. Then a port goes down, the device reboots, and it falls silent while its neighbour
    still answers: the probe reports each as an operator would see it."""
    device = lab["core-ch"]
    probe = snmp.build(
        Target("core-ch", "city-hall", "router", CORE, PORTS), snmp.SnmpConfig(**lab.access()), resources
    )
    first = await probe.check()
    t1 = time.time()
    await asyncio.sleep(GAP_S)
    t2 = time.time()
    second = await probe.check()
    assert (first.up, second.up) == (True, True), second.detail
    mid = (t1 + t2) / 2
    rates = by(second, "interface")
    for name in ("xe-0/0/1", "xe-0/0/2", "ge-0/0/3"):
        iface = device.interface(name)
        assert rates[name].fields["in_bps"] == pytest.approx(iface.in_bps_at(mid), rel=0.03), name
        assert rates[name].fields["out_bps"] == pytest.approx(iface.out_bps_at(mid), rel=0.03), name
        assert rates[name].fields["oper_up"] == 1
    assert rates["ge-0/0/3"].fields["in_errors_ps"] == pytest.approx(20.0, rel=0.05)
    assert rates["xe-0/0/1"].fields["speed_bps"] == 10_000_000_000
    optics = by(second, "optics")
    assert optics["xe-0/0/1"].fields == pytest.approx({"rx_dbm": -3.1, "tx_dbm": -1.9, "temp_c": 31.5, "bias_ma": 6.2})
    assert optics["xe-0/0/2"].fields["rx_dbm"] == pytest.approx(-14.2)

    device.set_port("xe-0/0/2", False)
    device.degrade_optics("xe-0/0/1", 120.0)  # 2 dB a second
    await asyncio.sleep(0.5)
    down = await probe.check()
    assert down.up, "a port down is not the device down"
    assert by(down, "interface")["xe-0/0/2"].fields["oper_up"] == 0
    assert down.ports_up["xe-0/0/2"] is False
    rx = by(down, "optics")["xe-0/0/1"].fields["rx_dbm"]
    model_rx = device.interface("xe-0/0/1").rx_dbm_at(time.time())
    assert model_rx is not None
    assert rx < -3.9
    assert rx == pytest.approx(model_rx, abs=0.5)

    device.reboot()
    await asyncio.sleep(0.2)
    rebooted = await probe.check()
    assert by(rebooted, "system")[""].fields == {"uptime_s": 0, "rebooted": 1}

    device.silence(True)
    silent = await snmp.build(
        Target("core-ch", "city-hall", "router", CORE, PORTS), snmp.SnmpConfig(**lab.access(timeout=0.3)), resources
    ).check()
    neighbour = await snmp.build(
        Target("core-pd", "police-hq", "router", NEIGHBOUR, (PortRef("xe-0/0/0"),)),
        snmp.SnmpConfig(**lab.access()),
        resources,
    ).check()
    assert (silent.up, silent.reason) == (False, "timeout")
    assert (neighbour.up, neighbour.reason) == (True, "ok")
    assert neighbour.ports_up == {"xe-0/0/0": True}


# -- (c) netwatch's wifi probe against each shipped profile ------------------------------------------


def radios(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {
        s.tags["radio"]: dict(s.fields) | {"band": s.tags.get("band")}
        for s in outcome.samples
        if s.measurement == "wifi_radio"
    }


def ap_totals(outcome: Outcome) -> dict[str, Any]:
    (sample,) = [s for s in outcome.samples if s.measurement == "wifi"]
    return dict(sample.fields)


@pytest.mark.parametrize(
    ("device", "agent", "profile", "ap", "expected"),
    [
        (
            "ap-vp-1", AP, "unifi", None,
            {
                "wifi0": {"up": 1, "channel": 6, "channel_util_pct": 35.0, "clients": 9, "band": "2.4GHz"},
                "wifi1": {"up": 1, "channel": 36, "channel_util_pct": 60.0, "clients": 14, "band": "5GHz"},
            },
        ),
        (
            "ap-cp-2", WLC, "cisco-wlc", None,
            {
                "0": {"up": 1, "channel": 11, "channel_util_pct": 20.0, "clients": 2, "band": "2.4GHz"},
                "1": {"up": 1, "channel": 149, "channel_util_pct": 50.0, "clients": 5, "band": "5GHz"},
            },
        ),
        (
            "ap-vic-2", ARUBA, "aruba-wlan", None,
            {
                "0": {"up": 1, "channel": 44, "channel_util_pct": 40.0, "clients": 10, "band": "5GHz"},
                "1": {"up": 1, "channel": 1, "channel_util_pct": 20.0, "clients": 2, "band": "2.4GHz"},
            },
        ),
        (
            "ap-jr-1", GENERIC, "generic", None,
            {"wlan0": {"up": 1, "channel": 6, "band": None}, "wlan1": {"up": 1, "channel": 149, "band": None}},
        ),
    ],
)  # fmt: skip
async def test_wifi_probe_reads_each_profile_from_the_lab(
    lab: Lab,
    resources: ProbeResources,
    device: str,
    agent: str,
    profile: str,
    ap: str | None,
    expected: dict[str, dict[str, Any]],
) -> None:
    """Each shipped profile reads the radios the model holds (through the controller for
    cisco-wlc and aruba-wlan); radio 1 taken down then reads down, serving no one."""
    cfg = wifi.WifiConfig.model_validate(lab.access(profile=profile, agent=agent))
    probe = wifi.build(Target(device, "park", "wifi_ap", "127.20.1.1"), cfg, resources)
    outcome = await probe.check()
    assert (outcome.up, outcome.reason, outcome.detail) == (True, "ok", ""), outcome.detail
    assert radios(outcome) == expected
    assert ap_totals(outcome)["radios_up"] == 2

    owner = next(d for d in lab.agent if d.address == agent)
    owner.set_radio(1, False, ap=device if owner.controller_aps else None)
    after = await probe.check()
    assert after.up
    assert after.detail.startswith("1 of 2 radios down")
    down = radios(after)[sorted(expected)[1]]
    assert down["up"] == 0
    assert down.get("clients", 0) == 0


async def test_wifi_probe_sees_an_ap_leave_its_controller(lab: Lab, resources: ProbeResources) -> None:
    cfg = wifi.WifiConfig.model_validate(lab.access(profile="cisco-wlc", agent=WLC, rediscover=0.0))
    probe = wifi.build(Target("ap-cp-1", "central-park", "wifi_ap", "127.20.1.2"), cfg, resources)
    assert (await probe.check()).up
    lab["wlc-ch"].set_ap_joined("ap-cp-1", False)
    gone = await probe.check()
    assert (gone.up, gone.reason) == (False, "bad_status")


# -- (d) netwatch's trap receiver --------------------------------------------------------------------


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_link_down_trap_reaches_netwatch_from_the_device(lab: Lab, tmp_path: Path) -> None:
    """A linkDown sent by the lab for core-ch's xe-0/0/2 is taken by netwatch's trap receiver as
    that device's (by the sender address) and port's, and the poll it triggers finds the port down."""
    config = tmp_path / "netwatch.yaml"
    config.write_text(
        f"""
state_dir: {tmp_path}/state
sites: [{{id: ch, name: City Hall}}]
devices:
  - id: core-ch
    site: ch
    kind: router
    address: {CORE}
    checks: [snmp]
    interval: 1h
    ports: [xe-0/0/1, xe-0/0/2]
    snmp: {{version: 2c, port: {lab.port}, community_file: {lab.community_file}, timeout: 1s, retries: 0}}
traps:
  listen: 127.0.0.1:0
  community_files: [{lab.community_file}]
"""
    )
    loaded = load_config(config)
    assert loaded.config.traps is not None
    resources = ProbeResources()
    cache: ProbeCache = {}
    observations: list[Observation] = []
    scheduler = Scheduler(build_jobs(loaded.inventory, resources, cache), observations.append)
    samples: list[Sample] = []
    receiver = TrapReceiver(
        loaded.config.traps,
        loaded.inventory,
        emit=samples.extend,
        poll_now=scheduler.poll_now,
        instance="t",
        port_name=port_lookup(cache),
    )
    receiver.open()
    task = asyncio.create_task(scheduler.run())
    try:
        await scheduler.ticked.wait()
        lab["core-ch"].set_port("xe-0/0/2", False)
        assert lab.agent.send_trap("core-ch", "linkDown", "xe-0/0/2", target_port=receiver.address[1])
        await until(lambda: bool(observations))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        receiver.close()
        await resources.aclose()
    [trap] = [s for s in samples if s.measurement == "trap"]
    assert trap.tags == {"device": "core-ch", "site": "ch", "trap": "linkDown", "port": "xe-0/0/2"}
    assert trap.fields == {"count": 1, "detail": "ifIndex 2, ifOperStatus down"}
    assert receiver.counts["traps_accepted"] == 1
    assert observations[0].outcome.ports_up == {"xe-0/0/1": True, "xe-0/0/2": False}
