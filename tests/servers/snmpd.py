"""A real net-snmp snmpd on a free loopback UDP port, serving a device the test controls.

snmpd does the protocol (v2c community, SNMPv3 USM users with SHA-2 and AES); the interfaces,
counters, uptime and optics come from ``netwatch.lab.snmpagent`` (a ``pass_persist`` script)
reading a JSON state file. A test changes the device by changing :attr:`SnmpServer.state` and
calling :meth:`SnmpServer.write` (or the helpers below); the agent re-reads the file when it
changes. snmpd's own system and interface modules are switched off (``-I -system_mib,...``) so
only the simulated device answers for those subtrees.

The server runs once per test module (``snmpd_server``); ``snmp_agent`` resets the device to
:func:`default_state` before each test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netwatch.lab import snmpagent
from tests.servers.common import free_port, require_binary, stop, wait_until

COMMUNITY = "nw-test-community"
AUTH_KEY = "auth-key-0123"
PRIV_KEY = "priv-key-4567"


@dataclass(frozen=True)
class V3User:
    """An SNMPv3 user snmpd knows, with net-snmp's spelling and netwatch's for its protocols."""

    name: str
    level: str  # netwatch security_level
    auth: str | None = None  # netwatch auth_protocol
    priv: str | None = None  # netwatch priv_protocol
    snmpd_auth: str | None = None  # createUser spelling
    snmpd_priv: str | None = None

    def create_line(self) -> str:
        line = f"createUser {self.name}"
        if self.snmpd_auth:
            line += f' {self.snmpd_auth} "{AUTH_KEY}"'
            if self.snmpd_priv:
                line += f' {self.snmpd_priv} "{PRIV_KEY}"'
        return line

    def access_line(self) -> str:
        level = {"noAuthNoPriv": "noauth", "authNoPriv": "auth", "authPriv": "priv"}[self.level]
        return f"rouser {self.name} {level}"


# net-snmp 5.9.3 createUser accepts SHA-224/SHA-256/SHA-384/SHA-512 (also without the dash) and
# AES-128/AES-192/AES-256 (also AES128 ...); AES-192/AES-256 extend short keys per
# draft-blumenthal, AES192C/AES256C per draft-reeder (Cisco).
_SHA2 = {"SHA224": "SHA-224", "SHA256": "SHA-256", "SHA384": "SHA-384", "SHA512": "SHA-512"}
_AES = {"AES": "AES-128", "AES192": "AES-192", "AES256": "AES-256"}
SHA2_AES_USERS: tuple[V3User, ...] = tuple(
    V3User(f"nw-{a.lower()}-{p.lower()}", "authPriv", a, p, sa, sp) for a, sa in _SHA2.items() for p, sp in _AES.items()
)
V3_USERS: tuple[V3User, ...] = (
    V3User("nw-sha-aes", "authPriv", "SHA", "AES", "SHA", "AES"),
    V3User("nw-md5-des", "authPriv", "MD5", "DES", "MD5", "DES"),
    V3User("nw-sha-aes256c", "authPriv", "SHA", "AES256C", "SHA", "AES256C"),
    V3User("nw-auth-only", "authNoPriv", "SHA256", None, "SHA-256", None),
    V3User("nw-no-auth", "noAuthNoPriv"),
    *SHA2_AES_USERS,
)


def interface(index: int, name: str, speed_mbps: int = 10_000, **values: Any) -> dict[str, Any]:
    """Return an ifTable/ifXTable row for the state file (counters start at 0 unless given)."""
    return {
        "index": index,
        "name": name,
        "descr": f"{name} interface",
        "speed_mbps": speed_mbps,
        "admin": 1,
        "oper": 1,
        "hc": True,
        **values,
    }


def default_state() -> dict[str, Any]:
    """A small router: two 10G ports with optics, a 32-bit-only 1G port, a down port, a spare.

    The ifIndex values are not 1..n and the sensors are numbered so that a poller that maps
    sensors to ports by position, not by the ENTITY-MIB tree, gets them wrong. xe-0/0/2's
    receive power is in milli-dBm (scale milli, precision 0), the others in dBm with precision 1.
    """
    ents1, sens1 = snmpagent.transceiver(2000, 517, "xe-0/0/1", rx_dbm=-3.1, tx_dbm=-1.9, temp_c=31.5, bias_ma=6.2)
    ents2, sens2 = snmpagent.transceiver(1000, 518, "xe-0/0/2", rx_dbm=-14.2, tx_dbm=-2.3, temp_c=44.0, bias_ma=7.9)
    ents9, sens9 = snmpagent.transceiver(3000, 530, "xe-0/0/9", rx_dbm=-40.0, tx_dbm=-40.0)
    rx2 = next(s for s in sens2 if s["index"] == 1005)  # transceiver(): port entity + 5 is Rx
    rx2.update(scale=8, precision=0, value=-14200)
    return {
        "epoch": time.time(),
        "system": {"name": "lab-core-1", "descr": "netwatch test router", "uptime_s": 86_400},
        "interfaces": [
            interface(517, "xe-0/0/1"),
            interface(518, "xe-0/0/2"),
            interface(519, "ge-0/0/3", speed_mbps=1000, hc=False, descr="ge-0/0/3"),  # no ifName: by ifDescr
            interface(520, "xe-0/0/4", oper=2),
            interface(530, "xe-0/0/9"),
        ],
        "entities": [
            {"index": 1, "class": 3, "name": "chassis", "descr": "lab chassis"},
            *ents2,
            *ents1,
            *ents9,
        ],
        "sensors": [*sens2, *sens1, *sens9],
    }


@dataclass
class SnmpServer:
    """A running snmpd and the state file of the device it simulates."""

    host: str
    port: int
    dir: Path
    state_path: Path
    proc: subprocess.Popen[bytes]
    state: dict[str, Any] = field(default_factory=default_state)

    @property
    def community_file(self) -> Path:
        return self.dir / "community"

    @property
    def auth_key_file(self) -> Path:
        return self.dir / "auth.key"

    @property
    def priv_key_file(self) -> Path:
        return self.dir / "priv.key"

    def write(self) -> None:
        """Publish :attr:`state` to the agent (atomically)."""
        snmpagent.write_state(self.state_path, self.state)

    def reset(self) -> None:
        self.state = default_state()
        self.write()

    def iface(self, name: str) -> dict[str, Any]:
        return next(i for i in self.state["interfaces"] if i["name"] == name)

    def set_interface(self, name: str, **values: Any) -> None:
        """Change one interface's values (e.g. ``oper=2``, ``in_octets_per_s=1e6``) and publish."""
        self.iface(name).update(values)
        self.write()

    def rebase(self) -> None:
        """Fold the time since ``epoch`` into the counters and uptime, then restart the clock.

        Use before changing rates, so counters continue from where they are instead of jumping.
        """
        now = time.time()
        dt = max(0.0, now - float(self.state["epoch"]))
        for i in self.state["interfaces"]:
            for key in [k for k in i if k.endswith("_per_s")]:
                base = key[: -len("_per_s")]
                i[base] = int(i.get(base, 0)) + int(i[key] * dt)
        self.state["system"]["uptime_s"] = float(self.state["system"].get("uptime_s", 0)) + dt
        self.state["epoch"] = now

    def reboot(self, uptime_s: float = 3.0) -> None:
        """Simulate a reload: uptime restarts and every counter starts again from zero."""
        self.state["epoch"] = time.time()
        self.state["system"]["uptime_s"] = uptime_s
        counters = ("octets", "pkts", "errors", "discards")
        for i in self.state["interfaces"]:
            for key in [k for k in i if k.endswith(counters)]:
                i[key] = 0
        self.write()


def _ber_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _ber_len(len(body)) + body


def _v2c_get_uptime(community: str) -> bytes:
    """Encode a v2c GET of sysUpTime.0 (enough BER for a readiness check, no SNMP library)."""
    oid = bytes([0x2B, 6, 1, 2, 1, 1, 3, 0])  # 1.3.6.1.2.1.1.3.0
    varbind = _tlv(0x30, _tlv(0x06, oid) + b"\x05\x00")
    pdu = _tlv(0xA0, _tlv(0x02, b"\x01") + _tlv(0x02, b"\x00") + _tlv(0x02, b"\x00") + _tlv(0x30, varbind))
    return _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, community.encode()) + pdu)


def _answers_uptime(host: str, port: int) -> bool:
    """Tell whether the agent answers sysUpTime.0 with TimeTicks (so pass_persist is up too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(_v2c_get_uptime(COMMUNITY), (host, port))
        try:
            reply = s.recv(4096)
        except TimeoutError:
            return False
    oid = bytes([0x06, 8, 0x2B, 6, 1, 2, 1, 1, 3, 0])
    at = reply.find(oid)
    return at >= 0 and reply[at + len(oid) : at + len(oid) + 1] == b"\x43"


def snmpd_config(port: int, state_path: Path, roots: Sequence[str] = snmpagent.ROOTS) -> str:
    lines = [
        f"agentAddress udp:127.0.0.1:{port}",
        f"rocommunity {COMMUNITY} 127.0.0.1",
        "dontLogTCPWrappersConnects yes",
        *(u.create_line() for u in V3_USERS),
        *(u.access_line() for u in V3_USERS),
        *snmpagent.snmpd_conf_lines(state_path, python=sys.executable, roots=roots),
    ]
    return "\n".join(lines) + "\n"


def start_snmpd(directory: Path, roots: Sequence[str] = snmpagent.ROOTS) -> SnmpServer:
    """Start snmpd with the simulated device in ``directory``; fail (never skip) without snmpd.

    ``roots`` are the subtrees the lab agent answers for; add a vendor's enterprise subtree to
    serve the state's ``oids`` there.
    """
    snmpd = require_binary("snmpd", "snmpd")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(socket.SOCK_DGRAM)
    state_path = directory / "device.json"
    (directory / "community").write_text(COMMUNITY + "\n")
    (directory / "auth.key").write_text(AUTH_KEY + "\n")
    (directory / "priv.key").write_text(PRIV_KEY + "\n")
    snmpagent.write_state(state_path, default_state())
    conf = directory / "snmpd.conf"
    conf.write_text(snmpd_config(port, state_path, roots))
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(directory / "persist"))
    log = directory / "snmpd.log"
    proc = subprocess.Popen(
        [
            snmpd,
            "-f",
            "-Lf",
            str(log),
            "-C",
            "-c",
            str(conf),
            "-M",
            "/nonexistent",
            "-m",
            "",
            *snmpagent.snmpd_args(),
            "-p",
            str(directory / "snmpd.pid"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: _answers_uptime("127.0.0.1", port), timeout=10, what="snmpd", proc=proc)
    return SnmpServer("127.0.0.1", port, directory, state_path, proc)


@pytest.fixture(scope="module")
def snmpd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpServer]:
    """One snmpd per test module, serving the simulated router of :func:`default_state`."""
    server = start_snmpd(tmp_path_factory.mktemp("snmpd"))
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def snmp_agent(snmpd_server: SnmpServer) -> SnmpServer:
    """The module's snmpd, with the simulated device reset to :func:`default_state`."""
    snmpd_server.reset()
    return snmpd_server
