"""The lab agent's protocol behaviour (through :meth:`SnmpLab.answer`, bytes in and out) and its
sockets: garbage, silence, several devices, traps from the device's address, many sockets."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.lab import ber
from netwatch.lab.ber import Message
from netwatch.lab.simdevice import SimDevice, SimInterface, SimOptics
from netwatch.lab.snmplab import SnmpLab, SnmpLabError
from tests.servers.common import free_port

COMMUNITY = "lab-secret"
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_HC_IN = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)


def switch(device_id: str = "sw-vp", address: str = "127.20.0.5", port: int = 16100, ports: int = 8) -> SimDevice:
    interfaces = [
        SimInterface(n, f"Gi1/0/{n}", 1000, in_bps=1e7 * n, out_bps=1e6 * n, optics=SimOptics() if n == 1 else None)
        for n in range(1, ports + 1)
    ]
    return SimDevice(device_id, "switch", address, snmp_port=port, community=COMMUNITY, interfaces=interfaces)


def request(
    pdu: int, *oids: ber.Oid, version: int = ber.V2C, community: str = COMMUNITY, nr: int = 0, mr: int = 0
) -> bytes:
    varbinds = tuple((oid, (ber.NULL, None)) for oid in oids)
    return ber.encode_message(Message(version, community.encode(), pdu, 4242, nr, mr, varbinds))


def ask(lab: SnmpLab, device: SimDevice, raw: bytes) -> Message:
    reply = lab.answer(device, raw)
    assert reply is not None, "no answer"
    msg = ber.decode_message(reply)
    assert (msg.pdu_type, msg.request_id) == (ber.RESPONSE, 4242)
    return msg


def walk(lab: SnmpLab, device: SimDevice, start: ber.Oid = (1, 3)) -> list[ber.Oid]:
    """Walk everything with GETNEXT, as a v2c manager does; return the OIDs in order."""
    seen: list[ber.Oid] = []
    oid = start
    for _ in range(10_000):  # an agent that does not move on must fail the test, not hang it
        ((oid, (tag, _)),) = ask(lab, device, request(ber.GET_NEXT, oid)).varbinds
        if tag == ber.END_OF_MIB_VIEW:
            return seen
        seen.append(oid)
    raise AssertionError(f"no endOfMibView after 10000 GETNEXTs (at {oid})")


def test_getnext_walks_every_object_in_order_to_end_of_mib_view() -> None:
    lab, device = SnmpLab(), switch()
    oids = walk(lab, device)
    assert oids == sorted(oids)
    assert len(set(oids)) == len(oids) == len(device.view())
    assert oids[0] == (1, 3, 6, 1, 2, 1, 1, 1, 0)
    assert (*IF_HC_IN, 8) in oids


def test_get_answers_each_oid_or_says_which_kind_of_missing() -> None:
    lab, device = SnmpLab(), switch()
    reply = ask(lab, device, request(ber.GET, SYS_UPTIME, (*IF_HC_IN, 3), (*IF_HC_IN, 99), (1, 3, 6, 1, 4, 1, 9, 1)))
    assert (reply.error_status, reply.error_index) == (0, 0)
    values = [value for _, value in reply.varbinds]
    assert values[0][0] == ber.TIMETICKS
    assert values[1][0] == ber.COUNTER64
    assert values[2:] == [(ber.NO_SUCH_INSTANCE, None), (ber.NO_SUCH_OBJECT, None)]
    assert [oid for oid, _ in reply.varbinds][2] == (*IF_HC_IN, 99)


def test_getbulk_repeats_the_repeaters_after_the_non_repeaters() -> None:
    """non-repeaters 1 (sysUpTime's successor once), then 3 rounds of ifDescr and ifHCInOctets side by side."""
    lab, device = SnmpLab(), switch()
    reply = ask(lab, device, request(ber.GET_BULK, (1, 3, 6, 1, 2, 1, 1, 3), IF_DESCR, IF_HC_IN, nr=1, mr=3))
    names = [oid for oid, _ in reply.varbinds]
    assert names == [
        SYS_UPTIME,
        *[oid for n in (1, 2, 3) for oid in ((*IF_DESCR, n), (*IF_HC_IN, n))],
    ]
    assert reply.varbinds[1][1] == (ber.OCTET_STRING, b"Gi1/0/1")


def test_getbulk_stops_at_the_end_of_the_mib() -> None:
    lab, device = SnmpLab(), switch()
    last = walk(lab, device)[-2]
    reply = ask(lab, device, request(ber.GET_BULK, last, mr=10))
    assert [value[0] for _, value in reply.varbinds][1:] == [ber.END_OF_MIB_VIEW]


@pytest.mark.parametrize("limit", [484, 1472, 8000])
def test_big_getbulk_answers_fewer_varbinds_within_the_size_limit(limit: int) -> None:
    """max-repetitions 500 is more than fits: the answer is as long as the limit allows (not an
    error), and it is exactly the start of a GETNEXT walk."""
    lab, device = SnmpLab(max_message_size=limit), switch(ports=48)
    raw = request(ber.GET_BULK, (1, 3, 6, 1, 2, 1, 2), mr=500)
    reply = lab.answer(device, raw)
    assert reply is not None
    assert limit - 60 < len(reply) <= limit
    msg = ber.decode_message(reply)
    assert msg.error_status == 0
    assert 10 < len(msg.varbinds) < 500
    assert [oid for oid, _ in msg.varbinds] == walk(lab, device, (1, 3, 6, 1, 2, 1, 2))[: len(msg.varbinds)]


def test_get_too_big_for_one_message_is_too_big() -> None:
    """60 ifDescr values do not fit 484 bytes: tooBig with no varbinds, and the manager asks for fewer."""
    lab, device = SnmpLab(max_message_size=484), switch(ports=60)
    reply = ask(lab, device, request(ber.GET, *[(*IF_DESCR, n) for n in range(1, 61)]))
    assert (reply.error_status, reply.varbinds) == (ber.TOO_BIG, ())
    assert lab.stats.too_big == 1
    assert ask(lab, device, request(ber.GET, *[(*IF_DESCR, n) for n in range(1, 11)])).error_status == 0


def test_snmpv1_skips_counter64_and_says_no_such_name() -> None:
    """v1 cannot carry Counter64: GETNEXT steps over ifHC* objects, GET of one is noSuchName
    (naming the varbind), and v1 has no GETBULK (dropped)."""
    lab, device = SnmpLab(), switch(ports=1)
    reply = ask(lab, device, request(ber.GET_NEXT, (*IF_HC_IN, 1), version=ber.V1))
    ((oid, (tag, _)),) = reply.varbinds
    assert tag != ber.COUNTER64
    assert oid == (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 14, 1)  # past ifHCIn*/ifHCOut* (6-13) to ifLinkUpDownTrapEnable
    reply = ask(lab, device, request(ber.GET, SYS_UPTIME, (*IF_HC_IN, 1), version=ber.V1))
    assert (reply.error_status, reply.error_index) == (ber.NO_SUCH_NAME, 2)
    assert lab.answer(device, request(ber.GET_BULK, SYS_UPTIME, version=ber.V1, mr=5)) is None


def test_wrong_community_silence_and_set() -> None:
    """No answer to a wrong community or while silenced (each counted); SET is refused with noAccess."""
    lab, device = SnmpLab(), switch()
    assert lab.answer(device, request(ber.GET, SYS_UPTIME, community="public")) is None
    device.silence(True)
    assert lab.answer(device, request(ber.GET, SYS_UPTIME)) is None
    device.silence(False)
    reply = ask(lab, device, request(ber.SET, SYS_UPTIME))
    assert (reply.error_status, reply.error_index) == (ber.NO_ACCESS, 1)
    assert (lab.stats.bad_community, lab.stats.silenced, lab.stats.answered) == (1, 1, 1)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_datagram_gets_a_well_formed_answer_or_none(data: bytes) -> None:
    """Whatever arrives, the agent answers with a decodable Response or not at all; it never raises."""
    lab = SnmpLab()
    reply = lab.answer(DEVICE, data)
    if reply is not None:
        assert ber.decode_message(reply).pdu_type == ber.RESPONSE


DEVICE = switch(ports=2)


# -- sockets -------------------------------------------------------------------------------------


async def query(address: str, port: int, raw: bytes, wait: float = 0.5) -> bytes | None:
    """Send one datagram and wait for one answer (None on timeout), without blocking the loop.

    A closed port is ConnectionRefusedError (the kernel's ICMP port unreachable), unlike a
    silenced device, which just does not answer."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((address, port))
        await loop.sock_sendall(sock, raw)
        try:
            async with asyncio.timeout(wait):
                return await loop.sock_recv(sock, 65535)
        except TimeoutError:
            return None


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)


async def test_agent_survives_garbage_and_keeps_answering() -> None:
    """2000 datagrams of junk (random, truncated, v3-looking) to a device; it answers the next GET."""
    port = free_port(socket.SOCK_DGRAM)
    device = switch(address="127.20.0.5", port=port)
    rnd = random.Random(7)
    valid = request(ber.GET, SYS_UPTIME)
    junk = [b"", b"\x30", valid[:-3], b"\x30\x0e\x02\x01\x03" + bytes(11), valid + b"\x00"]
    async with SnmpLab() as lab:
        lab.add(device)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(2000):
                sock.sendto(junk[i % len(junk)] if i % 2 else rnd.randbytes(rnd.randint(1, 200)), ("127.20.0.5", port))
                if i % 50 == 49:
                    # in batches, so that the socket buffer never overflows and every datagram counts
                    await until(lambda n=i + 1: lab.stats.requests == n)
        reply = await query("127.20.0.5", port, valid, wait=2.0)
        assert reply is not None
        assert ber.decode_message(reply).varbinds[0][0] == SYS_UPTIME
        assert (lab.stats.malformed, lab.stats.answered) == (2000, 1)


async def test_one_silent_device_does_not_silence_its_neighbours() -> None:
    port = free_port(socket.SOCK_DGRAM)
    a, b = switch("sw-a", "127.20.0.11", port), switch("sw-b", "127.20.0.12", port)
    async with SnmpLab() as lab:
        lab.add(a)
        lab.add(b)
        a.silence(True)
        raw = request(ber.GET, (1, 3, 6, 1, 2, 1, 1, 5, 0))
        assert await query("127.20.0.11", port, raw, wait=0.3) is None
        reply = await query("127.20.0.12", port, raw)
        assert reply is not None
        assert ber.decode_message(reply).varbinds[0][1] == (ber.OCTET_STRING, b"sw-b")
        lab.remove("sw-b")
        with pytest.raises(ConnectionRefusedError):
            await query("127.20.0.12", port, raw)


async def test_two_devices_on_one_address_and_port_are_refused() -> None:
    port = free_port(socket.SOCK_DGRAM)
    lab = SnmpLab()
    lab.add(switch("sw-a", "127.20.0.13", port))
    lab.add(switch("sw-b", "127.20.0.13", port))
    with pytest.raises(SnmpLabError, match=r"sw-b: cannot listen on 127\.20\.0\.13:\d+"):
        await lab.start()


async def test_trap_leaves_from_the_device_address() -> None:
    """A linkDown trap arrives from the device's own address, as v2c with the trap's varbinds; a
    silenced device sends nothing."""
    device = switch(address="127.20.0.21", port=free_port(socket.SOCK_DGRAM))
    lab = SnmpLab()
    lab.add(device)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        target = receiver.getsockname()[1]
        assert lab.send_trap(device, "linkDown", "Gi1/0/3", target_port=target, community="trap-c")
        raw, sender = receiver.recvfrom(65535)
        device.silence(True)
        assert not lab.send_trap(device, "linkDown", "Gi1/0/3", target_port=target)
    assert sender[0] == "127.20.0.21"
    msg = ber.decode_message(raw)
    assert (msg.version, msg.community, msg.pdu_type) == (ber.V2C, b"trap-c", ber.TRAP_V2)
    assert msg.varbinds[1] == (
        (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0),
        (ber.OBJECT_IDENTIFIER, (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)),
    )
    assert msg.varbinds[-1] == ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, 3), (ber.OCTET_STRING, b"Gi1/0/3"))
    assert lab.stats.traps == 1


def test_many_devices_beyond_the_soft_fd_limit() -> None:
    """With the soft descriptor limit at 256, a lab of 600 devices still binds them all (the agent
    raises the soft limit to the hard one) and answers the last one added."""
    port = free_port(socket.SOCK_DGRAM)
    script = textwrap.dedent(
        f"""
        import asyncio, resource, socket
        from netwatch.lab import ber
        from netwatch.lab.simdevice import SimDevice
        from netwatch.lab.snmplab import SnmpLab

        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        async def main():
            lab = SnmpLab()
            for n in range(600):
                lab.add(SimDevice(f"d{{n}}", "switch", f"127.22.{{n // 200}}.{{n % 200 + 1}}", snmp_port={port}))
            await lab.start()
            sys_name = ((1, 3, 6, 1, 2, 1, 1, 5, 0), (ber.NULL, None))
            raw = ber.encode_message(ber.Message(1, b"public", ber.GET, 1, 0, 0, (sys_name,)))
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.22.2.200", {port}))
            await loop.sock_sendall(sock, raw)
            reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            name = ber.decode_message(reply).varbinds[0][1][1].decode()
            print("RESULT", name, resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 600)
            await lab.close()

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "RESULT d599 True"
