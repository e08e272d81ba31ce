"""SNMP probe against a real snmpd serving a simulated router (tests/servers/snmpd.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from netwatch.contract import CONTRACT
from netwatch.model import Outcome, PortRef, Sample, Target
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.snmp import SnmpConfig, build
from tests.servers import snmpd as snmpd_fixture
from tests.servers.common import free_port, stop
from tests.servers.snmpd import SHA2_AES_USERS, V3_USERS, SnmpServer, V3User

PORTS = (
    PortRef("xe-0/0/1", link="span-ch-vp", lessee="caltech"),
    PortRef("xe-0/0/2", link="span-ch-lib"),
    PortRef("ge-0/0/3"),
    PortRef("xe-0/0/4"),
)
TARGET = Target("core-ch", "city-hall", "router", "127.0.0.1", PORTS)
GAP_S = 1.5  # between two polls; rates are checked against the agent's configured rates


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    res = ProbeResources()
    yield res
    await res.aclose()


def v2c(agent: SnmpServer, **overrides: Any) -> SnmpConfig:
    """Config for the agent's v2c community, read from a file like in production."""
    values: dict[str, Any] = {
        "version": "2c",
        "port": agent.port,
        "community_file": str(agent.community_file),
        "timeout": 1.0,
        "retries": 0,
    }
    return SnmpConfig.model_validate(values | overrides)


def v3(agent: SnmpServer, account: V3User, **overrides: Any) -> SnmpConfig:
    """Config for one of the agent's SNMPv3 users, keys read from files."""
    values: dict[str, Any] = {
        "version": "3",
        "port": agent.port,
        "user": account.name,
        "security_level": account.level,
        "timeout": 1.0,
        "retries": 0,
    }
    if account.auth:
        values |= {"auth_protocol": account.auth, "auth_key_file": str(agent.auth_key_file)}
    if account.priv:
        values |= {"priv_protocol": account.priv, "priv_key_file": str(agent.priv_key_file)}
    return SnmpConfig.model_validate(values | overrides)


def by(outcome: Outcome, measurement: str) -> dict[str, Sample]:
    """Samples of one measurement, by port (or '' for per-device ones)."""
    return {s.tags.get("port", ""): s for s in outcome.samples if s.measurement == measurement}


def assert_contract(outcome: Outcome) -> None:
    """Every sample uses the data contract's measurements, tags and field types exactly."""
    for sample in outcome.samples:
        tags, fields = CONTRACT[sample.measurement]
        assert set(sample.tags) <= tags, sample
        for name, value in sample.fields.items():
            assert name in fields, (sample.measurement, name)
            want = {"int": int, "float": float, "str": str}[fields[name]]
            assert type(value) is want, (sample.measurement, name, value)


async def two_polls(probe: Probe) -> tuple[Outcome, Outcome]:
    first = await probe.check()
    await asyncio.sleep(GAP_S)
    return first, await probe.check()


async def test_v2c_poll_gives_contract_fields_and_rates(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """Two v2c polls: interface state, speed, bps/utilisation/error rates matching the counters' growth."""
    snmp_agent.set_interface(
        "xe-0/0/1",
        in_octets=10**15,
        in_octets_per_s=125_000_000,  # 1 Gb/s on a 10G port: 10 %
        out_octets_per_s=12_500_000,  # 100 Mb/s
        in_errors_per_s=500,
        out_errors_per_s=0,
        in_discards_per_s=250,
        out_discards_per_s=1000,
    )
    probe = build(TARGET, v2c(snmp_agent), resources)
    first, second = await two_polls(probe)

    assert first.up, first.detail
    assert first.reason == "ok"
    assert_contract(first)
    assert_contract(second)
    system = by(first, "system")[""]
    assert system.tags == {"device": "core-ch", "site": "city-hall", "kind": "router"}
    assert system.fields["rebooted"] == 0
    assert 86_400 <= int(system.fields["uptime_s"]) < 86_500

    port1 = by(first, "interface")["xe-0/0/1"]
    assert port1.tags == {
        "device": "core-ch",
        "site": "city-hall",
        "port": "xe-0/0/1",
        "link": "span-ch-vp",
        "lessee": "caltech",
    }
    assert port1.fields == {"oper_up": 1, "admin_up": 1, "speed_bps": 10_000_000_000}, "no rates on the first poll"
    assert first.ports_up == {"xe-0/0/1": True, "xe-0/0/2": True, "ge-0/0/3": True, "xe-0/0/4": False}

    f = by(second, "interface")["xe-0/0/1"].fields
    assert f["in_bps"] == pytest.approx(1e9, rel=0.03)
    assert f["out_bps"] == pytest.approx(1e8, rel=0.03)
    assert f["in_util_pct"] == pytest.approx(10.0, rel=0.03)
    assert f["out_util_pct"] == pytest.approx(1.0, rel=0.03)
    assert f["in_errors_ps"] == pytest.approx(500, rel=0.03)
    assert f["out_errors_ps"] == 0.0
    assert f["in_discards_ps"] == pytest.approx(250, rel=0.03)
    assert f["out_discards_ps"] == pytest.approx(1000, rel=0.03)
    idle = by(second, "interface")["xe-0/0/4"].fields
    assert idle["oper_up"] == 0
    assert idle["in_bps"] == 0.0
    assert idle["in_util_pct"] == 0.0
    assert by(second, "interface")["xe-0/0/2"].tags == {
        "device": "core-ch",
        "site": "city-hall",
        "port": "xe-0/0/2",
        "link": "span-ch-lib",
    }
    first_ts = by(first, "system")[""].time_ns
    assert abs(first_ts - time.time_ns()) < 10 * 10**9, "timestamped at collection"


async def test_32_bit_counters_are_used_and_unwrapped(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """A port without ifXTable falls back to ifIn/OutOctets; a Counter32 wrap still gives the true rate."""
    snmp_agent.set_interface("ge-0/0/3", in_octets=2**32 - 400_000, in_octets_per_s=1_000_000, out_octets_per_s=50_000)
    probe = build(TARGET, v2c(snmp_agent), resources)
    first, second = await two_polls(probe)
    assert by(first, "interface")["ge-0/0/3"].fields["speed_bps"] == 1_000_000_000  # from ifSpeed
    f = by(second, "interface")["ge-0/0/3"].fields
    assert f["in_bps"] == pytest.approx(8e6, rel=0.03), "wrapped between the polls, unwrapped"
    assert f["in_util_pct"] == pytest.approx(0.8, rel=0.03)
    assert f["out_bps"] == pytest.approx(4e5, rel=0.03)


async def test_reboot_drops_rates_for_that_poll_and_flags_it(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """Uptime reset + counters reset: no rates and system.rebooted=1 on that poll; rates return after.

    The reboot also renumbers the ifIndex values, so the ports are found again by name.
    """
    snmp_agent.set_interface("xe-0/0/1", in_octets=10**12, in_octets_per_s=1_000_000)
    probe = build(TARGET, v2c(snmp_agent), resources)
    _, before = await two_polls(probe)
    assert "in_bps" in by(before, "interface")["xe-0/0/1"].fields

    for i in snmp_agent.state["interfaces"]:
        i["index"] += 100
    for e in snmp_agent.state["entities"]:
        if "if_index" in e:
            e["if_index"] += 100
    snmp_agent.reboot(uptime_s=2.0)
    after = await probe.check()
    assert after.up, after.detail
    assert by(after, "system")[""].fields == {"uptime_s": 2, "rebooted": 1}
    for sample in by(after, "interface").values():
        assert set(sample.fields) == {"oper_up", "admin_up", "speed_bps"}, sample
    assert after.ports_up["xe-0/0/1"] is True

    await asyncio.sleep(GAP_S)
    later = await probe.check()
    assert by(later, "system")[""].fields["rebooted"] == 0
    assert by(later, "interface")["xe-0/0/1"].fields["in_bps"] == pytest.approx(8e6, rel=0.03)
    assert by(later, "optics")["xe-0/0/1"].fields["rx_dbm"] == pytest.approx(-3.1)


async def test_counter_reset_without_reboot_gives_no_spike(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """A Counter64 that goes down (counters cleared) and a changed ifCounterDiscontinuityTime drop rates."""
    snmp_agent.set_interface("xe-0/0/1", in_octets=10**12, in_octets_per_s=1_000_000)
    snmp_agent.set_interface("xe-0/0/2", in_octets=10**9, in_octets_per_s=1_000_000)
    probe = build(TARGET, v2c(snmp_agent), resources)
    await probe.check()
    snmp_agent.rebase()
    snmp_agent.iface("xe-0/0/1")["in_octets"] = 5  # cleared
    snmp_agent.iface("xe-0/0/2")["discontinuity_s"] = 86_000  # counters restarted at this uptime
    snmp_agent.write()
    await asyncio.sleep(GAP_S)
    second = await probe.check()
    assert by(second, "system")[""].fields["rebooted"] == 0
    assert "in_bps" not in by(second, "interface")["xe-0/0/1"].fields
    assert "out_bps" in by(second, "interface")["xe-0/0/1"].fields, "only the counter that went down"
    assert "in_bps" not in by(second, "interface")["xe-0/0/2"].fields
    assert "out_bps" not in by(second, "interface")["xe-0/0/2"].fields, "the whole port is discontinuous"
    await asyncio.sleep(GAP_S)
    third = await probe.check()
    assert by(third, "interface")["xe-0/0/1"].fields["in_bps"] == pytest.approx(8e6, rel=0.03)
    assert by(third, "interface")["xe-0/0/2"].fields["in_bps"] == pytest.approx(8e6, rel=0.03)


async def test_optics_map_to_their_port_with_scale_and_precision(
    snmp_agent: SnmpServer, resources: ProbeResources
) -> None:
    """Rx/Tx dBm, temperature and bias reach the port above them in ENTITY-MIB, scaled correctly.

    xe-0/0/2's receive power is in milli-dBm (scale milli, precision 0); the others use precision 1.
    Optics of a port the target does not name (xe-0/0/9) are not polled.
    """
    probe = build(TARGET, v2c(snmp_agent), resources)
    outcome = await probe.check()
    optics = by(outcome, "optics")
    assert set(optics) == {"xe-0/0/1", "xe-0/0/2"}
    assert optics["xe-0/0/1"].tags == {
        "device": "core-ch",
        "site": "city-hall",
        "port": "xe-0/0/1",
        "link": "span-ch-vp",
    }  # optics carry no lessee
    assert optics["xe-0/0/1"].fields == pytest.approx({"rx_dbm": -3.1, "tx_dbm": -1.9, "temp_c": 31.5, "bias_ma": 6.2})
    assert optics["xe-0/0/2"].fields == pytest.approx({"rx_dbm": -14.2, "tx_dbm": -2.3, "temp_c": 44.0, "bias_ma": 7.9})

    # The light fades: the next poll reads the new value (sensor values are polled every time).
    rx = next(s for s in snmp_agent.state["sensors"] if s["index"] == 2005)
    rx["value"] = -251
    snmp_agent.write()
    assert by(await probe.check(), "optics")["xe-0/0/1"].fields["rx_dbm"] == pytest.approx(-25.1)


async def test_optics_off_polls_no_sensors(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """optics: false skips ENTITY-SENSOR-MIB entirely."""
    outcome = await build(TARGET, v2c(snmp_agent, optics=False), resources).check()
    assert outcome.up
    assert by(outcome, "optics") == {}


async def test_oper_status_change_shows_in_ports_up(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """A port going down on the device is oper_up=0 and ports_up False on the next poll."""
    probe = build(TARGET, v2c(snmp_agent), resources)
    assert (await probe.check()).ports_up["xe-0/0/2"] is True
    snmp_agent.set_interface("xe-0/0/2", oper=2)
    outcome = await probe.check()
    assert outcome.up, "a port down is not the device down"
    assert outcome.ports_up["xe-0/0/2"] is False
    assert by(outcome, "interface")["xe-0/0/2"].fields["oper_up"] == 0


@pytest.mark.parametrize("user", SHA2_AES_USERS, ids=lambda u: f"{u.auth}-{u.priv}")
async def test_v3_auth_priv_with_sha2_and_aes(snmp_agent: SnmpServer, resources: ProbeResources, user: V3User) -> None:
    """SNMPv3 authPriv works with every SHA-2 (224..512) x AES (128/192/256) pair net-snmp offers."""
    outcome = await build(TARGET, v3(snmp_agent, user), resources).check()
    assert outcome.up, outcome.detail
    assert outcome.reason == "ok"
    assert by(outcome, "interface")["xe-0/0/1"].fields["oper_up"] == 1
    assert_contract(outcome)


@pytest.mark.parametrize("name", ["nw-sha-aes", "nw-md5-des", "nw-sha-aes256c", "nw-auth-only", "nw-no-auth"])
async def test_v3_other_protocols_and_levels(snmp_agent: SnmpServer, resources: ProbeResources, name: str) -> None:
    """SHA-1/AES, MD5/DES, Cisco-style AES-256 key extension, authNoPriv and noAuthNoPriv all poll."""
    user = next(u for u in V3_USERS if u.name == name)
    outcome = await build(TARGET, v3(snmp_agent, user), resources).check()
    assert outcome.up, outcome.detail


async def test_v3_wrong_auth_key_is_reason_auth(
    snmp_agent: SnmpServer, resources: ProbeResources, tmp_path: Any
) -> None:
    """A wrong authentication key is reason auth with a detail that calls it a credentials problem."""
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-right-key\n")
    cfg = v3(snmp_agent, SHA2_AES_USERS[3], auth_key_file=str(wrong))
    outcome = await build(TARGET, cfg, resources).check()
    assert (outcome.up, outcome.reason) == (False, "auth")
    assert "credentials" in outcome.detail
    assert "not-the-right-key" not in outcome.detail


async def test_v3_wrong_privacy_key_times_out_naming_the_keys(
    snmp_agent: SnmpServer, resources: ProbeResources, tmp_path: Any
) -> None:
    """net-snmp drops a request it cannot decrypt without a report: timeout, and the hint says so."""
    wrong = tmp_path / "wrong-priv.key"
    wrong.write_text("not-the-priv-key\n")
    cfg = v3(snmp_agent, SHA2_AES_USERS[1], priv_key_file=str(wrong), timeout=0.3)
    outcome = await build(TARGET, cfg, resources).check()
    assert (outcome.up, outcome.reason) == (False, "timeout")
    assert "privacy key" in outcome.detail


async def test_v3_unknown_user_is_reason_auth(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """A user the agent does not know (usmStatsUnknownUserNames) is reason auth."""
    cfg = v3(snmp_agent, SHA2_AES_USERS[0], user="nobody-here")
    outcome = await build(TARGET, cfg, resources).check()
    assert (outcome.up, outcome.reason) == (False, "auth")
    assert "nobody-here" in outcome.detail
    assert "credentials" in outcome.detail


async def test_wrong_community_times_out_with_a_credentials_hint(
    snmp_agent: SnmpServer, resources: ProbeResources, tmp_path: Any
) -> None:
    """The agent stays silent on a wrong community: reason timeout, detail says to check it."""
    wrong = tmp_path / "community"
    wrong.write_text("not-the-community\n")
    cfg = v2c(snmp_agent, community_file=str(wrong), timeout=0.3)
    outcome = await build(TARGET, cfg, resources).check()
    assert (outcome.up, outcome.reason) == (False, "timeout")
    assert "community" in outcome.detail
    assert f"127.0.0.1:{snmp_agent.port}" in outcome.detail
    assert "not-the-community" not in outcome.detail


async def test_closed_port_times_out(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """Nothing listening: pysnmp never sees the ICMP error, so it is a timeout after timeout x tries."""
    cfg = v2c(snmp_agent, port=free_port(socket.SOCK_DGRAM), timeout=0.2, retries=1)
    started = time.monotonic()
    outcome = await build(TARGET, cfg, resources).check()
    assert (outcome.up, outcome.reason) == (False, "timeout")
    assert "check the address and port" in outcome.detail
    assert time.monotonic() - started >= 0.35


async def test_missing_configured_port_is_named_and_logged_once(
    snmp_agent: SnmpServer, resources: ProbeResources
) -> None:
    """A port the device does not have: the device stays up, the detail names it, the log says so once."""
    target = Target("core-ch", "city-hall", "router", "127.0.0.1", (PortRef("xe-0/0/1"), PortRef("xe-9/9/9")))
    probe = build(target, v2c(snmp_agent, rediscover=0.0), resources)  # rediscover every poll
    with capture_logs() as logs:
        first = await probe.check()
        second = await probe.check()
    for outcome in (first, second):
        assert outcome.up
        assert outcome.reason == "ok"
        assert "xe-9/9/9" in outcome.detail
        assert set(by(outcome, "interface")) == {"xe-0/0/1"}
        assert outcome.ports_up == {"xe-0/0/1": True}
    missing = [e for e in logs if e["event"] == "snmp_ports_missing"]
    assert len(missing) == 1
    assert missing[0]["ports"] == ["xe-9/9/9"]


async def test_port_found_by_ifdescr_when_ifname_differs(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """A port named as in ifDescr (older agents) is found through the ifDescr fallback."""
    target = Target("core-ch", "city-hall", "router", "127.0.0.1", (PortRef("xe-0/0/2 interface"),))
    outcome = await build(target, v2c(snmp_agent), resources).check()
    assert outcome.up
    assert outcome.detail == ""
    assert outcome.ports_up == {"xe-0/0/2 interface": True}


async def test_one_engine_is_shared_and_closed(snmp_agent: SnmpServer) -> None:
    """Probes share one SnmpEngine kept in resources.shared; aclose() closes it."""
    res = ProbeResources()
    a = build(TARGET, v2c(snmp_agent), res)
    b = build(TARGET, v2c(snmp_agent, optics=False), res)
    assert (await a.check()).up
    assert (await b.check()).up
    assert [k for k in res.shared if k.startswith("snmp_engine")] == ["snmp_engine"]
    await res.aclose()
    assert res.closers == []


async def test_small_requests_are_split(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """max_oids_per_request=3 still polls everything (in many small GETs)."""
    probe = build(TARGET, v2c(snmp_agent, max_oids_per_request=3), resources)
    outcome = await probe.check()
    assert outcome.up, outcome.detail
    assert set(by(outcome, "interface")) == {p.name for p in PORTS}
    assert set(by(outcome, "optics")) == {"xe-0/0/1", "xe-0/0/2"}


async def test_cancellation_is_not_swallowed(snmp_agent: SnmpServer, resources: ProbeResources) -> None:
    """The scheduler's timeout cancels a check; the probe lets CancelledError through."""
    cfg = v2c(snmp_agent, port=free_port(socket.SOCK_DGRAM), timeout=5.0)
    task = asyncio.create_task(build(TARGET, cfg, resources).check())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_same_v3_user_with_different_keys_on_two_agents(
    snmp_agent: SnmpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: ProbeResources
) -> None:
    """Two devices with the same v3 user name but different keys, polled at once, both succeed.

    pysnmp keeps users per engine by name until it knows the agent's engine id, so sharing one
    engine would let one device's keys overwrite the other's mid-request.
    """
    monkeypatch.setattr(snmpd_fixture, "AUTH_KEY", "other-auth-key-89")
    monkeypatch.setattr(snmpd_fixture, "PRIV_KEY", "other-priv-key-12")
    other = snmpd_fixture.start_snmpd(tmp_path / "other")
    try:
        account = next(u for u in SHA2_AES_USERS if u.auth == "SHA256" and u.priv == "AES256")
        first = build(TARGET, v3(snmp_agent, account), resources)
        second = build(TARGET, v3(other, account), resources)
        for _ in range(3):
            outcomes = await asyncio.gather(first.check(), second.check())
            assert [o.reason for o in outcomes] == ["ok", "ok"], [o.detail for o in outcomes]
        assert len([k for k in resources.shared if k.startswith("snmp_engine")]) == 2
    finally:
        stop(other.proc)


async def test_discovery_longer_than_the_check_timeout_completes_across_checks(
    snmp_agent: SnmpServer, resources: ProbeResources
) -> None:
    """A slow agent whose port and sensor walk takes longer than one check may still gets polled:
    the walk goes on after a check times out, and a later check uses its result."""
    snmp_agent.state["walk_delay_s"] = 0.02  # each walk step 20 ms: the whole discovery takes ~2-3 s
    snmp_agent.write()
    probe = build(TARGET, v2c(snmp_agent, timeout=1.0, retries=0), resources)
    outcomes = []
    for _ in range(10):
        try:
            async with asyncio.timeout(1.2):  # what the scheduler does with a 1.2 s check timeout
                outcomes.append(await probe.check())
        except TimeoutError:
            outcomes.append(None)
        if outcomes[-1] is not None and outcomes[-1].up:
            break
    assert outcomes[0] is None, "the first check cannot finish the walk in time"
    final = outcomes[-1]
    assert final is not None
    assert final.up, final.detail
    assert by(final, "interface").keys() >= {"xe-0/0/1", "xe-0/0/2"}
    assert "xe-0/0/1" in by(final, "optics")
