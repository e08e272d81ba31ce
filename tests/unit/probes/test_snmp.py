"""SNMP probe logic without a network: sensor mapping, request splitting, error mapping.

The probe's own request seam (``SnmpProbe._request``) is replaced by a scripted agent; pysnmp's
internals are not faked. Everything that needs a real agent is in tests/integration/test_snmp.py.
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import SecretStr
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.proto import errind, rfc1902
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance

from netwatch.lab import snmpagent
from netwatch.model import PortRef, Target
from netwatch.probes import snmp
from netwatch.probes.base import ProbeResources
from netwatch.probes.snmp import (
    IF_ADMIN_STATUS,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_NAME,
    IF_OPER_STATUS,
    SYS_UPTIME,
    Oid,
    Sensor,
    SnmpConfig,
    SnmpProbe,
    build,
    map_sensors,
    sensor_factor,
    sensor_field,
    sensor_value,
)
from netwatch.probes.snmpclient import SnmpFailure, TooBig

SECRET = "s3cret-community"


def cfg(**overrides: Any) -> SnmpConfig:
    return SnmpConfig.model_validate({"community_file": SecretStr(SECRET), **overrides})


class ScriptedProbe(SnmpProbe):
    """An SnmpProbe whose requests are answered from a dict, like an agent would."""

    def __init__(self, mib: dict[Oid, Any], target: Target, config: SnmpConfig, *, max_oids: int = 0) -> None:
        super().__init__(target, config, ProbeResources())
        self.mib = mib
        self.max_oids = max_oids  # answer tooBig above this many OIDs (0: never)
        self.requests: list[tuple[str, int]] = []

    async def _request(self, op: str, oids: Sequence[Oid], reps: int = 0) -> list[Any]:
        self.requests.append((op, len(oids)))
        if self.max_oids and len(oids) > self.max_oids:
            raise TooBig
        if op == "GET":
            return [(rfc1902.ObjectName(o), self.mib.get(o, NoSuchInstance())) for o in oids]
        keys = sorted(self.mib)
        cursors, out = list(oids), []
        for _ in range(reps):
            for col, cursor in enumerate(cursors):
                pos = bisect.bisect_right(keys, cursor)
                if pos >= len(keys):
                    out.append((rfc1902.ObjectName(cursor), EndOfMibView()))
                    continue
                cursors[col] = keys[pos]
                out.append((rfc1902.ObjectName(keys[pos]), self.mib[keys[pos]]))
        return out


def router_mib(ports: int = 4) -> dict[Oid, Any]:
    mib: dict[Oid, Any] = {SYS_UPTIME: rfc1902.TimeTicks(123_400)}
    for i in range(1, ports + 1):
        mib[(*IF_NAME, i)] = rfc1902.OctetString(f"ge-0/0/{i}")
        mib[(*IF_ADMIN_STATUS, i)] = rfc1902.Integer32(1)
        mib[(*IF_OPER_STATUS, i)] = rfc1902.Integer32(1 if i % 2 else 2)
        mib[(*IF_HIGH_SPEED, i)] = rfc1902.Gauge32(1000)
        mib[(*IF_HC_IN_OCTETS, i)] = rfc1902.Counter64(10**12 + i)
        mib[(*IF_HC_OUT_OCTETS, i)] = rfc1902.Counter64(2**64 - 1)
        for column in (13, 14, 19, 20):  # discards and errors
            mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, column, i)] = rfc1902.Counter32(0)
    return mib


def router(ports: int = 4) -> Target:
    return Target("r1", "hq", "router", "192.0.2.1", tuple(PortRef(f"ge-0/0/{i}") for i in range(1, ports + 1)))


# -- sensors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scale", "precision", "raw", "expected"),
    [
        (14, 9, 1, -52, -5.2),  # dBm, units, one decimal
        (14, 8, 0, -14200, -14.2),  # milli-dBm
        (8, 9, 1, 355, 35.5),  # celsius
        (5, 8, 1, 65, 6.5),  # milliamperes with one decimal -> mA
        (5, 7, 0, 6500, 6.5),  # microamperes -> mA
        (5, 9, 3, 7, 7.0),  # amperes with three decimals -> mA
    ],
)
def test_sensor_scale_and_precision(kind: int, scale: int, precision: int, raw: int, expected: float) -> None:
    """value x 10^-precision x 10^(3 (scale - 9)) in the field's unit (bias in mA)."""
    sensor = Sensor(1, "p", "rx_dbm", kind, sensor_factor(kind, scale, precision))
    assert sensor_value(sensor, raw) == pytest.approx(expected)


def test_watts_are_converted_to_dbm() -> None:
    """Optical power reported in watts becomes dBm; zero light has no dBm value."""
    sensor = Sensor(1, "p", "rx_dbm", 6, sensor_factor(6, 7, 0))  # microwatts
    assert sensor_value(sensor, 500) == pytest.approx(-3.0103, abs=1e-3)
    assert sensor_value(sensor, 0) is None


@pytest.mark.parametrize(
    ("kind", "name", "descr", "field"),
    [
        (14, "xe-0/0/1 Rx Power", "", "rx_dbm"),
        (14, "Ethernet1/1 Lane 1 Transceiver Receive Power Sensor", "", "rx_dbm"),
        (14, "Ethernet1/1 Transceiver Transmit Power Sensor", "", "tx_dbm"),
        (14, "et-0/0/1 tx", "", "tx_dbm"),
        (14, "sensor 12", "Transceiver Receive Power", "rx_dbm"),  # name says nothing: descr
        (14, "Transceiver power", "Transceiver", None),  # neither: skipped
        (8, "Transceiver Temperature Sensor", "", "temp_c"),
        (5, "Transceiver Tx Bias Current", "", "bias_ma"),
        (12, "Transceiver Voltage", "", None),
    ],
)
def test_sensor_field_from_type_and_name(kind: int, name: str, descr: str, field: str | None) -> None:
    """dBm sensors need Rx/Receive or Tx/Transmit in the name (else descr); 'Transceiver' is neither."""
    assert sensor_field(kind, name, descr) == field


def test_sensors_map_to_the_port_above_them() -> None:
    """Walk entPhysicalContainedIn from the sensor up to the entity aliased to a polled ifIndex."""
    sensors = map_sensors(
        ports={5: "xe-0/0/1"},
        sensor_types={20: (14, 9, 1), 21: (8, 9, 0), 30: (14, 9, 1), 40: (14, 9, 1)},
        names={20: "Rx Power", 21: "Temp", 30: "Rx Power", 40: "Rx Power"},
        descrs={},
        contained_in={20: 11, 21: 11, 11: 10, 10: 1, 30: 31, 31: 30, 40: 41, 41: 1},
        aliases={10: 5, 41: 6},  # 41 is a port we do not poll; 30/31 form a loop
    )
    assert [(s.index, s.port, s.field) for s in sensors] == [
        (20, "xe-0/0/1", "rx_dbm"),
        (21, "xe-0/0/1", "temp_c"),
    ]


# -- polling through the scripted agent ---------------------------------------------------


async def test_requests_are_halved_on_too_big_until_they_fit() -> None:
    """An agent that says tooBig above 7 OIDs still gets polled, in requests of at most 7."""
    probe = ScriptedProbe(router_mib(4), router(4), cfg(max_oids_per_request=40, optics=False), max_oids=7)
    outcome = await probe.check()
    assert outcome.up, outcome.detail
    assert len([s for s in outcome.samples if s.measurement == "interface"]) == 4
    sent = [n for op, n in probe.requests if op == "GET"]
    assert max(sent) > 7, "it tried the configured size first"
    assert sent[-1] <= 7
    probe.requests.clear()
    await probe.check()
    assert max(n for _, n in probe.requests) <= 7, "the smaller size is remembered"


async def test_ports_up_and_64_bit_values_near_the_top() -> None:
    """ports_up follows ifOperStatus; a Counter64 at 2**64 - 1 is read exactly (no error)."""
    probe = ScriptedProbe(router_mib(2), router(2), cfg(optics=False))
    outcome = await probe.check()
    assert outcome.ports_up == {"ge-0/0/1": True, "ge-0/0/2": False}


async def test_wrong_value_type_is_a_protocol_failure() -> None:
    """ifOperStatus answered as a string is an agent we cannot read: reason protocol, not a crash."""
    mib = router_mib(1)
    mib[(*IF_OPER_STATUS, 1)] = rfc1902.OctetString("up")
    outcome = await ScriptedProbe(mib, router(1), cfg(optics=False)).check()
    assert (outcome.up, outcome.reason) == (False, "protocol")
    assert "ifOperStatus" in outcome.detail


async def test_missing_sys_uptime_is_a_protocol_failure() -> None:
    """An agent without sysUpTime.0 cannot be polled for rates or reboots."""
    mib = router_mib(1)
    del mib[SYS_UPTIME]
    outcome = await ScriptedProbe(mib, router(1), cfg()).check()
    assert (outcome.up, outcome.reason) == (False, "protocol")


async def test_multi_lane_optics_report_the_weakest_lane() -> None:
    """Four Rx lanes on one port: rx_dbm is the lowest (the one that fails first)."""
    mib = router_mib(1)
    ent, sensor = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1), (1, 3, 6, 1, 2, 1, 99, 1, 1, 1)
    mib[(1, 3, 6, 1, 2, 1, 47, 1, 3, 2, 1, 2, 100, 0)] = rfc1902.ObjectIdentifier((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 1))
    for lane, raw in enumerate([-21, -35, -18, -29], start=1):
        idx = 100 + lane
        mib[(*ent, 4, idx)] = rfc1902.Integer32(100)
        mib[(*ent, 7, idx)] = rfc1902.OctetString(f"ge-0/0/1 Lane {lane} Rx Power")
        mib[(*sensor, 1, idx)] = rfc1902.Integer32(14)
        mib[(*sensor, 2, idx)] = rfc1902.Integer32(9)
        mib[(*sensor, 3, idx)] = rfc1902.Integer32(1)
        mib[(*sensor, 4, idx)] = rfc1902.Integer32(raw)
        mib[(*sensor, 5, idx)] = rfc1902.Integer32(1)
    mib[(*sensor, 5, 102)] = rfc1902.Integer32(2)  # lane 2 unavailable: ignored
    outcome = await ScriptedProbe(mib, router(1), cfg()).check()
    optics = [s for s in outcome.samples if s.measurement == "optics"]
    assert [s.fields for s in optics] == [{"rx_dbm": pytest.approx(-2.9)}]


async def test_port_that_vanishes_triggers_rediscovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port whose ifIndex stops answering (line card swapped) is looked up by name again."""
    monkeypatch.setattr(snmp, "VANISHED_RETRY_S", 0.0)
    mib = router_mib(2)
    probe = ScriptedProbe(mib, router(2), cfg(optics=False))
    assert (await probe.check()).ports_up == {"ge-0/0/1": True, "ge-0/0/2": False}
    # ge-0/0/2 moves from ifIndex 2 to 7
    for key in [k for k in mib if k[-1] == 2 and k != SYS_UPTIME]:
        mib[(*key[:-1], 7)] = mib.pop(key)
    mib[(*IF_OPER_STATUS, 7)] = rfc1902.Integer32(1)
    outcome = await probe.check()
    assert outcome.ports_up == {"ge-0/0/1": True, "ge-0/0/2": True}


# -- credentials and failures -------------------------------------------------------------


def test_build_rejects_an_incomplete_config() -> None:
    """The loader reports missing credentials; build() refuses them too rather than poll without."""
    with pytest.raises(ValueError, match="community_file"):
        build(router(1), SnmpConfig(), ProbeResources())


@pytest.mark.parametrize(
    ("priv", "expected"),
    [
        ("AES", usm.USM_PRIV_CFB128_AES),
        ("AES128", usm.USM_PRIV_CFB128_AES),
        ("AES192", usm.USM_PRIV_CFB192_AES_BLUMENTHAL),
        ("AES256", usm.USM_PRIV_CFB256_AES_BLUMENTHAL),
        ("AES256C", usm.USM_PRIV_CFB256_AES),
        ("DES", usm.USM_PRIV_CBC56_DES),
    ],
)
def test_privacy_protocols_match_net_snmp_names(priv: str, expected: Any) -> None:
    """AES192/AES256 extend keys as net-snmp's AES-192/AES-256 do; the C variants as Cisco does."""
    config = cfg(
        version="3",
        user="u",
        auth_key_file=SecretStr("a" * 12),
        priv_key_file=SecretStr("p" * 12),
        priv_protocol=priv,
    )
    probe = SnmpProbe(router(1), config, ProbeResources())
    assert probe._auth.privacy_protocol == expected
    assert "a" * 12 not in repr(probe._auth)


@pytest.mark.parametrize(
    ("indication", "reason", "fragment"),
    [
        (errind.RequestTimedOut("No SNMP response"), "timeout", "check the address and port"),
        (errind.WrongDigest("Wrong SNMP PDU digest"), "auth", "credentials"),
        (errind.UnknownUserName("Unknown USM user"), "auth", "credentials"),
        (errind.DecryptionError("Decryption error"), "auth", "credentials"),
        (errind.ReportPduReceived("1.3.6.1.6.3.15.1.1.4.0"), "auth", "credentials"),
        (errind.ReportPduReceived("1.3.6.1.6.3.12.1.5.0"), "protocol", "bad SNMP response"),
        (errind.ParseError("SNMP message deserialization error"), "protocol", "bad SNMP response"),
        (errind.EncryptionError("Ciphering services not available"), "error", "cryptography"),
    ],
)
def test_error_indications_map_to_reasons(indication: Exception, reason: str, fragment: str) -> None:
    """pysnmp's errorIndications become a closed-set reason with a detail an operator can act on."""
    probe = SnmpProbe(router(1), cfg(version="3", user="netwatch", auth_key_file=SecretStr("k" * 10)), ProbeResources())
    failure = probe._indication_failure(indication)
    assert isinstance(failure, SnmpFailure)
    assert failure.reason == reason
    assert fragment in failure.detail


def test_timeout_detail_names_the_credential_to_check() -> None:
    """v2c: the agent is silent on a wrong community; v3: on a wrong privacy key. Never the secret."""
    v2 = SnmpProbe(router(1), cfg(), ProbeResources())._indication_failure(errind.RequestTimedOut("t"))
    assert isinstance(v2, SnmpFailure)
    assert "community" in v2.detail
    assert SECRET not in v2.detail
    v3 = SnmpProbe(
        router(1),
        cfg(version="3", user="nw", auth_key_file=SecretStr("k" * 10), priv_key_file=SecretStr("p" * 10)),
        ProbeResources(),
    )._indication_failure(errind.RequestTimedOut("t"))
    assert isinstance(v3, SnmpFailure)
    assert "'nw'" in v3.detail
    assert "privacy key" in v3.detail


# -- the lab agent's pass_persist protocol (what snmpd sees) -------------------------------


def test_lab_agent_speaks_pass_persist(tmp_path: Any) -> None:
    """PING/PONG, get, getnext (leaving its subtree gives NONE), set is not-writable, Counter64 wraps."""
    state = tmp_path / "s.json"
    snmpagent.write_state(
        state,
        {
            "epoch": 1000.0,
            "system": {"uptime_s": 5},
            "interfaces": [{"index": 3, "name": "ge-0/0/3", "in_octets": 2**64 - 2, "in_octets_per_s": 1.0}],
        },
    )
    agent = snmpagent.Agent(state, [(1, 3, 6, 1, 2, 1, 31)], clock=lambda: 1010.0)
    commands = (
        "PING\n"
        "get\n.1.3.6.1.2.1.31.1.1.1.6.3\n"  # ifHCInOctets.3: 2**64 - 2 + 10 s x 1/s, wrapped
        "getnext\n.1.3.6.1.2.1.31\n"  # first OID of the subtree: ifName.3
        "get\n.1.3.6.1.2.1.1.3.0\n"  # sysUpTime is outside this process's subtree
        "getnext\n.1.3.6.1.2.1.31.1.1.1.19.3\n"  # last OID: nothing after it here
        "set\n.1.3.6.1.2.1.31.1.1.1.18.3\nstring x\n"
        "\n"
    )
    out = io.StringIO()
    snmpagent.serve(agent, io.StringIO(commands), out)
    assert out.getvalue().splitlines() == [
        "PONG",
        ".1.3.6.1.2.1.31.1.1.1.6.3",
        "counter64",
        "8",
        ".1.3.6.1.2.1.31.1.1.1.1.3",
        "string",
        "ge-0/0/3",
        "NONE",
        "NONE",
        "not-writable",
    ]
