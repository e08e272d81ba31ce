"""TCP port check against loopback listeners, a closed port and a host that drops every SYN."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from netwatch.model import Target
from netwatch.probes.tcp import TcpConfig, TcpProbe
from tests.servers.common import free_port
from tests.servers.netns import NetnsHost

LOOP = Target("door-yard-2", "city-yard", "access_panel", "127.0.0.1")


@pytest.fixture
async def banner_server() -> AsyncIterator[int]:
    """A panel controller that greets, then echoes whether it was asked for STATUS."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"PANEL-CTRL 4.2 ready\r\n")
        line = await reader.readline()
        writer.write(b"OK armed\r\n" if line.strip() == b"STATUS" else b"ERR\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])


async def test_open_port_is_up_with_connect_latency_and_matching_banner(banner_server: int) -> None:
    cfg = TcpConfig(port=banner_server, send="STATUS\\r\\n", expect=r"OK \w+")
    out = await TcpProbe(LOOP, cfg).check()
    assert out.up, out.detail
    (sample,) = out.samples
    assert sample.measurement == "tcp"
    assert sample.tags == {"device": "door-yard-2", "site": "city-yard", "port": str(banner_server), "reason": "ok"}
    assert 0 < float(sample.fields["connect_ms"]) < 1000


async def test_banner_that_does_not_match_is_bad_content_or_protocol(banner_server: int) -> None:
    wrong = await TcpProbe(LOOP, TcpConfig(port=banner_server, send="HELLO\\n", expect=r"^OK")).check()
    assert not wrong.up
    assert wrong.reason == "protocol"  # the controller said ERR and hung up
    assert wrong.samples[0].fields["up"] == 0


async def test_closed_port_is_refused() -> None:
    out = await TcpProbe(LOOP, TcpConfig(port=free_port())).check()
    assert (out.up, out.reason) == (False, "refused")


async def test_listener_that_never_answers_the_expected_banner_times_out() -> None:
    with socket.socket() as listener:  # accepts (the kernel does) but never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        cfg = TcpConfig(port=listener.getsockname()[1], expect="ready", read_timeout=0.3)
        out = await TcpProbe(LOOP, cfg).check()
    assert (out.up, out.reason) == (False, "timeout")
    assert "did not answer" in out.detail


async def test_host_dropping_syns_times_out_at_connect_timeout(test_host: NetnsHost) -> None:
    test_host.link(up=False)
    try:
        target = Target("door-x", "yard", "access_panel", test_host.address)
        loop = asyncio.get_running_loop()
        start = loop.time()
        out = await TcpProbe(target, TcpConfig(port=4001, connect_timeout=0.5)).check()
        took = loop.time() - start
    finally:
        test_host.link(up=True)
    assert (out.up, out.reason) == (False, "timeout")
    assert 0.4 < took < 2.0


async def test_banner_that_does_not_match_within_read_bytes_is_bad_content(banner_server: int) -> None:
    out = await TcpProbe(LOOP, TcpConfig(port=banner_server, expect=r"^OK", read_bytes=10)).check()
    assert (out.up, out.reason) == (False, "bad_content")
