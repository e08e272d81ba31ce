"""Trap receiver against real net-snmp ``snmptrap``, with the lab snmpd for the immediate poll."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from netwatch.config import load_config
from netwatch.contract import CONTRACT
from netwatch.daemon import ProbeCache, build_jobs
from netwatch.ingest.traps import TrapReceiver, port_lookup
from netwatch.model import Observation, Sample
from netwatch.probes.base import Probe, ProbeResources
from netwatch.scheduler import Scheduler
from tests.servers.common import require_binary
from tests.servers.snmpd import SnmpServer

ENGINE_ID = "0x80001f8880aabbccdd01"
TRAP_AUTH = "trap-auth-key-1"
TRAP_PRIV = "trap-priv-key-2"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"


@dataclass
class Rig:
    """A receiver on a free loopback port, feeding a scheduler that polls the lab snmpd."""

    receiver: TrapReceiver
    scheduler: Scheduler
    probes: ProbeCache
    samples: list[Sample] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.receiver.address[1]

    def snmp_probe(self) -> Probe:
        """The snmp probe the scheduler polls core-ch with."""
        return self.probes[("core-ch", "snmp")][1]

    def trap_samples(self) -> list[Sample]:
        return [s for s in self.samples if s.measurement == "trap"]


def write_config(tmp_path: Path, agent: SnmpServer, *, device_address: str = "127.0.0.1") -> Path:
    (tmp_path / "trap-community").write_text("trap-secret-c\n")
    (tmp_path / "trap-auth").write_text(TRAP_AUTH + "\n")
    (tmp_path / "trap-priv").write_text(TRAP_PRIV + "\n")
    path = tmp_path / "netwatch.yaml"
    path.write_text(
        f"""
state_dir: {tmp_path}/state
sites: [{{id: ch, name: City Hall}}]
devices:
  - id: core-ch
    site: ch
    kind: router
    address: {device_address}
    checks: [snmp]
    interval: 1h
    ports: [xe-0/0/1, xe-0/0/2]
    snmp: {{version: 2c, port: {agent.port}, community_file: {agent.community_file}, timeout: 1s, retries: 0}}
traps:
  listen: 127.0.0.1:0
  community_files: [trap-community]
  users:
    - {{user: trapper, engine_id: "{ENGINE_ID}", auth_protocol: SHA256, auth_key_file: trap-auth,
        priv_protocol: AES, priv_key_file: trap-priv}}
  enterprise:
    - {{oid: 1.3.6.1.4.1.9999.0.7, name: doorForced, meaning: "panel reports a forced door", poll: false}}
"""
    )
    return path


@contextlib.asynccontextmanager
async def running_rig(agent: SnmpServer, tmp_path: Path, **kwargs: Any) -> AsyncIterator[Rig]:
    loaded = load_config(write_config(tmp_path, agent, **kwargs))
    assert loaded.config.traps is not None
    resources = ProbeResources()
    observations: list[Observation] = []
    cache: ProbeCache = {}
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
    rig = Rig(receiver, scheduler, cache, samples, observations)
    try:
        await scheduler.ticked.wait()
        yield rig
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        receiver.close()
        await resources.aclose()


async def snmptrap(*args: str) -> None:
    """Send one trap with net-snmp's snmptrap (numeric OIDs: no MIBs are installed here)."""
    binary = require_binary("snmptrap", "snmp")
    proc = await asyncio.create_subprocess_exec(
        binary, "-M", "/nonexistent", "-m", "", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def until(condition: Callable[[], bool], within: float = 3.0) -> float:
    """Wait until ``condition()`` holds; return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > within:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return loop.time() - start


def v2c_link_down(port: int, if_index: int, community: str = "trap-secret-c") -> list[str]:
    return [
        "-v2c", "-c", community, f"127.0.0.1:{port}", "", LINK_DOWN,
        f"{IF_INDEX}.{if_index}", "i", str(if_index), f"{IF_OPER}.{if_index}", "i", "2",
    ]  # fmt: skip


async def test_v2c_link_down_writes_a_trap_and_polls_the_device_at_once(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """A linkDown for xe-0/0/2 (ifIndex 518) shows the port down within a second, though the
    device's snmp check runs once an hour: the trap triggered an immediate poll."""
    async with running_rig(snmp_agent, tmp_path) as rig:
        assert (await rig.snmp_probe().check()).ports_up["xe-0/0/2"] is True  # the poller knows the device
        snmp_agent.set_interface("xe-0/0/2", oper=2)
        await snmptrap(*v2c_link_down(rig.port, 518))
        took = await until(lambda: any(not o.outcome.ports_up.get("xe-0/0/2", True) for o in rig.observations))
    assert took < 1.5
    [trap] = rig.trap_samples()
    assert trap.tags == {"device": "core-ch", "site": "ch", "trap": "linkDown", "port": "xe-0/0/2"}
    assert trap.fields == {"count": 1, "detail": "ifIndex 518, ifOperStatus down"}
    tags, fields = CONTRACT["trap"]
    assert set(trap.tags) <= tags
    assert set(trap.fields) <= set(fields)
    assert [(o.device, o.check) for o in rig.observations] == [("core-ch", "snmp")]
    assert rig.receiver.counts["traps_accepted"] == 1
    assert rig.receiver.counts["traps_polls"] == 1


async def test_port_of_a_device_not_yet_polled_is_named_by_ifindex(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """Before the first poll nobody knows which port ifIndex 518 is: the trap says so plainly."""
    async with running_rig(snmp_agent, tmp_path) as rig:
        await snmptrap(*v2c_link_down(rig.port, 518))
        await until(lambda: bool(rig.trap_samples()))
    assert rig.trap_samples()[0].tags["port"] == "ifIndex 518"


async def test_v3_cold_start_is_accepted_and_its_poll_flags_the_reboot(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """An SNMPv3 authPriv coldStart from the configured engine id and user is a trap sample and
    polls the device at once; that poll sees sysUpTime reset, so system.rebooted=1 (and the
    built-in device_rebooted rule) comes seconds after the reboot, not a poll interval later."""
    async with running_rig(snmp_agent, tmp_path) as rig:
        await rig.snmp_probe().check()
        snmp_agent.reboot()
        await snmptrap(
            "-v3", "-e", ENGINE_ID, "-u", "trapper", "-l", "authPriv", "-a", "SHA-256", "-A", TRAP_AUTH,
            "-x", "AES", "-X", TRAP_PRIV, f"127.0.0.1:{rig.port}", "", "1.3.6.1.6.3.1.1.5.1",
        )  # fmt: skip
        await until(lambda: bool(rig.observations))
    assert [s.tags["trap"] for s in rig.trap_samples()] == ["coldStart"]
    [system] = [s for s in rig.observations[0].outcome.samples if s.measurement == "system"]
    assert system.fields["rebooted"] == 1
    assert rig.receiver.counts["traps_bad_credentials"] == 0


async def test_bad_community_and_wrong_v3_key_are_counted_and_ignored(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """A wrong community, a wrong v3 auth or privacy key and a v3 trap below the user's security
    level write nothing, poll nothing, are counted, and each kind is logged once per sender."""
    with capture_logs() as logs:
        async with running_rig(snmp_agent, tmp_path) as rig:
            for _ in range(3):
                await snmptrap(*v2c_link_down(rig.port, 518, community="guessed"))
            await snmptrap(
                "-v3", "-e", ENGINE_ID, "-u", "trapper", "-l", "authPriv", "-a", "SHA-256", "-A", "not-the-key",
                "-x", "AES", "-X", TRAP_PRIV, f"127.0.0.1:{rig.port}", "", LINK_DOWN,
            )  # fmt: skip
            await snmptrap(
                "-v3", "-e", ENGINE_ID, "-u", "trapper", "-l", "authPriv", "-a", "SHA-256", "-A", TRAP_AUTH,
                "-x", "AES", "-X", "not-the-priv-key", f"127.0.0.1:{rig.port}", "", LINK_DOWN,
            )  # fmt: skip
            # the right auth key but no privacy, for a user configured authPriv: a downgrade
            await snmptrap(
                "-v3", "-e", ENGINE_ID, "-u", "trapper", "-l", "authNoPriv", "-a", "SHA-256", "-A", TRAP_AUTH,
                f"127.0.0.1:{rig.port}", "", LINK_DOWN,
            )  # fmt: skip
            await until(lambda: rig.receiver.counts["traps_received"] == 6)
            await asyncio.sleep(0.3)
    counts = rig.receiver.counts
    assert counts["traps_bad_community"] == 3
    assert counts["traps_bad_credentials"] == 3
    assert counts["traps_accepted"] == 0
    assert rig.trap_samples() == []
    assert rig.observations == []
    rejected = [e for e in logs if e["event"] == "trap_rejected"]
    assert sorted(e["why"] for e in rejected) == ["bad_community", "bad_credentials"]
    secrets = ("guessed", "not-the-key", TRAP_AUTH, TRAP_PRIV)
    assert not any(secret in str(logs) for secret in secrets), "no secret in logs"


async def test_unknown_sender_is_counted_and_ignored(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """A good trap from an address the inventory does not list is counted, not written."""
    async with running_rig(snmp_agent, tmp_path, device_address="127.0.0.9") as rig:
        await snmptrap(*v2c_link_down(rig.port, 518))
        await until(lambda: rig.receiver.counts["traps_unknown_sender"] == 1)
    assert rig.trap_samples() == []
    assert rig.observations == []


async def test_v1_trap_is_mapped_by_its_agent_address(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """An SNMPv1 linkDown (generic trap 2) names its agent in the PDU: that is the device, even
    when the datagram comes from elsewhere (a relay)."""
    async with running_rig(snmp_agent, tmp_path, device_address="127.0.0.9") as rig:
        await snmptrap(
            "-v1", "-c", "trap-secret-c", f"127.0.0.1:{rig.port}", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.9", "2", "0",
            "", f"{IF_INDEX}.518", "i", "518",
        )  # fmt: skip
        await until(lambda: bool(rig.trap_samples()))
    [trap] = rig.trap_samples()
    assert trap.tags["trap"] == "linkDown"
    assert trap.tags["device"] == "core-ch"


async def test_configured_enterprise_trap_is_named_and_others_ignored(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """A configured enterprise trap is written under its name (and, with poll: false, polls
    nothing); an enterprise trap nobody configured is counted as ignored."""
    async with running_rig(snmp_agent, tmp_path) as rig:
        await snmptrap("-v2c", "-c", "trap-secret-c", f"127.0.0.1:{rig.port}", "", "1.3.6.1.4.1.9999.0.7")
        await snmptrap("-v2c", "-c", "trap-secret-c", f"127.0.0.1:{rig.port}", "", "1.3.6.1.4.1.9999.0.8")
        await until(lambda: rig.receiver.counts["traps_received"] == 2)
        await asyncio.sleep(0.2)
    [trap] = rig.trap_samples()
    assert trap.tags["trap"] == "doorForced"
    assert trap.fields["detail"] == "panel reports a forced door"
    assert rig.receiver.counts["traps_ignored"] == 1
    assert rig.observations == []


def received(rig: Rig, count: int) -> Callable[[], bool]:
    return lambda: rig.receiver.counts["traps_received"] == count


async def test_garbage_datagrams_are_counted_and_harmless(snmp_agent: SnmpServer, tmp_path: Path) -> None:
    """1000 datagrams of junk (random bytes, truncated BER, empty) are counted as malformed; the
    receiver still takes the next real trap."""
    rnd = random.Random(5)
    junk = [b"", b"\x30", b"\x30\x82\xff\xff", b"\x30\x03\x02\x01\x07"]
    async with running_rig(snmp_agent, tmp_path) as rig:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(1000):
                payload = junk[i % len(junk)] if i % 2 else rnd.randbytes(rnd.randint(1, 300))
                sock.sendto(payload, ("127.0.0.1", rig.port))
                if i % 50 == 49:
                    # batches, so that a busy host does not drop datagrams from a full socket buffer
                    await until(received(rig, i + 1))
        await snmptrap(*v2c_link_down(rig.port, 518))
        await until(lambda: bool(rig.trap_samples()))
    counts = rig.receiver.counts
    assert counts["traps_malformed"] == 1000
    assert counts["traps_accepted"] == 1
