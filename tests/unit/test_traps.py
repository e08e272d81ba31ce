"""Trap receiver settings and its place in the daemon: started, fed to the scheduler, closed, or a
clear start-up error. (The protocol itself is tested against net-snmp in tests/integration.)"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import structlog
from pyasn1.codec.ber import encoder
from pydantic import ValidationError
from pysnmp.proto.api import v2c as api

from netwatch import daemon
from netwatch.ingest.traps import TrapsConfig
from netwatch.model import Outcome, Target
from netwatch.probes import REGISTRY, ProbeKind
from netwatch.probes.base import ProbeResources
from netwatch.probes.ping import PingConfig
from tests.servers.common import free_port
from tests.unit.fakes import FakeProbe

CONFIG = """
instance: t
state_dir: {state}
log: {{format: json}}
api: {{listen: "127.0.0.1:0"}}
scheduler: {{stats_interval: 1s}}
defaults: {{interval: 1h, timeout: 900ms, ping: {{count: 1, wait: 500ms}}}}
sites: [{{id: hq, name: HQ}}]
devices:
  - {{id: sw-1, site: hq, kind: server, address: 127.0.0.1, checks: [ping]}}
traps: {{listen: "127.0.0.1:{port}", community_files: [community]}}
"""


def cold_start(community: str) -> bytes:
    """Encode a v2c coldStart trap by hand (no net-snmp in unit tests)."""
    pdu = api.SNMPv2TrapPDU()
    api.apiTrapPDU.set_defaults(pdu)
    api.apiTrapPDU.set_varbinds(
        pdu,
        [
            ((1, 3, 6, 1, 2, 1, 1, 3, 0), api.TimeTicks(5)),
            ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), api.ObjectIdentifier((1, 3, 6, 1, 6, 3, 1, 1, 5, 1))),
        ],
    )
    msg = api.Message()
    api.apiMessage.set_defaults(msg)
    api.apiMessage.set_community(msg, community)
    api.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeProbe]:
    built: dict[str, FakeProbe] = {}

    def build(target: Target, cfg: Any, resources: ProbeResources) -> FakeProbe:
        built[target.device] = FakeProbe(outcome=Outcome(up=True, reason="ok"))
        return built[target.device]

    monkeypatch.setitem(REGISTRY, "ping", ProbeKind(PingConfig, build))
    return built


def write(tmp_path: Path, port: int) -> Path:
    (tmp_path / "community").write_text("c-secret\n")
    path = tmp_path / "netwatch.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", port=port))
    return path


async def test_daemon_polls_a_device_at_once_on_its_trap_and_closes_the_port(
    tmp_path: Path, probes: dict[str, FakeProbe]
) -> None:
    """With traps configured, a coldStart from sw-1 polls it within a second (its interval is an
    hour), the counters are reported, and on stop the UDP port is released."""
    port = free_port(socket.SOCK_DGRAM)
    stop, reload = asyncio.Event(), asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(daemon.run(write(tmp_path, port), stop, reload, configure_logs=lambda *_: None))
        for _ in range(250):
            if any(e["event"] == "traps_listening" for e in logs):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        calls_before = len(probes["sw-1"].calls)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(cold_start("c-secret"), ("127.0.0.1", port))
            sock.sendto(cold_start("wrong"), ("127.0.0.1", port))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(probes["sw-1"].calls) == calls_before + 1
    received = [e for e in logs if e["event"] == "trap_received"]
    assert [(e["device"], e["trap"]) for e in received] == [("sw-1", "coldStart")]
    assert [e["why"] for e in logs if e["event"] == "trap_rejected"] == ["bad_community"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # released on stop


async def test_port_in_use_is_a_startup_error_naming_the_address(tmp_path: Path, probes: dict[str, FakeProbe]) -> None:
    """Another process on the trap port stops the start with the address in the message."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(daemon.StartupError, match=f"127.0.0.1:{port}"):
            await daemon.run(write(tmp_path, port), asyncio.Event(), asyncio.Event(), configure_logs=lambda *_: None)


def test_listen_defaults_to_an_unprivileged_loopback_port() -> None:
    """Without a listen address the receiver takes 127.0.0.1:9162, which needs no privileges."""
    assert TrapsConfig().listen == "127.0.0.1:9162"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"listen": "0.0.0.0"}, "host:port"),
        ({"listen": "traps.example:162"}, "does not appear to be an IPv4 or IPv6 address"),
        ({"enterprise": [{"oid": "enterprises.9", "name": "x"}]}, "oid"),
        ({"enterprise": [{"oid": "1.3.6.1.4.1.9.0.1", "name": "has space"}]}, "name"),
        ({"users": [{"user": "u", "engine_id": "zz", "auth_key_file": "/etc/hostname"}]}, "engine_id"),
        (
            {"users": [{"user": "u", "engine_id": "8000000001020304", "auth_key_file": "/etc/hostname"}]},
            "authPriv needs priv_key_file",
        ),
    ],
)
def test_bad_trap_settings_are_named(settings: dict[str, Any], fragment: str) -> None:
    """Each mistake is reported with what is wrong, at load, not when the first trap arrives."""
    with pytest.raises(ValidationError, match=fragment):
        TrapsConfig.model_validate(settings)
