"""The InfluxDB writer against a scripted loopback HTTP server, and the buffer beneath it.

The server is a real aiohttp server on 127.0.0.1 answering each write from a script, so retries,
Retry-After, gzip and batching are seen on the wire, as InfluxDB would see them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import gzip
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from netwatch.contract import CONTRACT
from netwatch.model import Sample
from netwatch.sink.buffer import MemoryBuffer
from netwatch.sink.influx import (
    SETTLE_S,
    STATS_KEYS,
    InfluxConfig,
    InfluxSink,
    SpoolOnlySink,
    open_sink,
    parse_retry_after,
    rejected_points,
)
from netwatch.sink.spool import SqliteSpool

# -- a scripted InfluxDB -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 204
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    at: float  # monotonic
    wall: float
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    raw: bytes
    lines: list[str]
    status: int  # what the script answered


#: Reply statuses that are not HTTP: never answer (a hung server), or reset the connection.
HANG, RESET = 0, -1


class ScriptedInflux:
    """Answer each write with the next reply of ``script``, then with ``then``; record requests."""

    def __init__(self, port: int = 0) -> None:
        self.script: list[Reply] = []
        self.then = Reply(204)
        self.received: list[Received] = []
        app = web.Application(handler_args={"auto_decompress": False})  # see the body as sent
        app.router.add_post("/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=port)

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        await self._server.close()

    @property
    def accepted_lines(self) -> list[str]:
        """Lines of the requests that were answered 2xx, in order."""
        return [ln for r in self.received if 200 <= r.status < 300 for ln in r.lines]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        reply = self.script.pop(0) if self.script else self.then
        self.received.append(
            Received(
                at=time.monotonic(),
                wall=time.time(),
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                raw=raw,
                lines=body.decode().split("\n") if body else [],
                status=reply.status,
            )
        )
        if reply.status == HANG:
            await asyncio.sleep(3600)
        if reply.status == RESET:
            assert request.transport is not None
            request.transport.abort()  # the client sees its connection reset, no answer
            raise web.HTTPServiceUnavailable()
        return web.Response(status=reply.status, text=reply.body or None, headers=dict(reply.headers))


@pytest.fixture
async def influx() -> AsyncIterator[ScriptedInflux]:
    server = ScriptedInflux()
    await server.start()
    yield server
    await server.close()


def config(server: ScriptedInflux | str, **overrides: Any) -> InfluxConfig:
    """A config with short timings so retries happen in test time."""
    url = server if isinstance(server, str) else server.url
    values: dict[str, Any] = {
        "url": url,
        "batch_size": 100,
        "flush_interval": 0.05,
        "retry_initial": 0.05,
        "retry_max": 0.2,
        "gzip": False,
        "timeout": 2.0,
    }
    values.update(overrides)
    return InfluxConfig.model_validate(values)


def pings(n: int, start: int = 0) -> list[Sample]:
    base = 1_700_000_000_000_000_000
    return [
        Sample("ping", {"device": f"d{i % 7}", "site": "ch"}, {"up": 1, "rtt_avg_ms": 1.5, "sent": 3}, base + i)
        for i in range(start, start + n)
    ]


async def until(what: str, cond: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def balanced(stats: Mapping[str, int | float]) -> bool:
    """Every point collected is written, rejected, dropped or still buffered."""
    return stats["points_collected"] == (
        stats["points_written"] + stats["points_rejected"] + stats["points_dropped"] + stats["buffer_points"]
    )


# -- retries and Retry-After ---------------------------------------------------------------------


async def test_retry_after_seconds_is_honoured(influx: ScriptedInflux) -> None:
    """A 503 with Retry-After: 2 makes the next attempt wait at least 2 s, though backoff is 50 ms."""
    influx.script = [Reply(503, '{"error":"busy"}', {"Retry-After": "2"})]
    async with InfluxSink(config(influx), instance="t") as sink:
        sink.submit(pings(3))
        await until("the retry to succeed", lambda: sink.stats()["points_written"] == 3, timeout=6)
    first, second = influx.received
    assert second.at - first.at >= 2.0
    assert second.lines == first.lines


async def test_retry_after_http_date_is_honoured(influx: ScriptedInflux) -> None:
    """Retry-After as an HTTP date: the next attempt does not come before that moment."""
    not_before = int(time.time()) + 2
    influx.script = [Reply(429, "slow down", {"Retry-After": email.utils.formatdate(not_before, usegmt=True)})]
    async with InfluxSink(config(influx), instance="t") as sink:
        sink.submit(pings(2))
        await until("the retry to succeed", lambda: sink.stats()["points_written"] == 2, timeout=6)
    assert len(influx.received) == 2
    assert influx.received[1].wall >= not_before


def test_parse_retry_after() -> None:
    """Retry-After is delta-seconds or an HTTP date; garbage is ignored, the past means now."""
    now = 1_800_000_000.0
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0


async def test_server_error_then_success_delivers_once(influx: ScriptedInflux) -> None:
    """500 then 204: the batch is written again and counted once; the outage is logged twice."""
    influx.script = [Reply(500, '{"error":"timeout"}')]
    with capture_logs() as logs:
        async with InfluxSink(config(influx), instance="t") as sink:
            sink.submit(pings(5))
            await until("delivery", lambda: sink.stats()["points_written"] == 5)
            stats = sink.stats()
    assert [len(r.lines) for r in influx.received] == [5, 5]
    assert influx.accepted_lines == influx.received[0].lines
    assert stats["batches_written"] == 1
    assert stats["write_errors"] == 1
    assert stats["buffer_points"] == 0
    events = [(e["event"], e["log_level"]) for e in logs if e["log_level"] != "debug"]
    assert events == [("influx_write_failed", "warning"), ("influx_recovered", "info")]


async def test_connection_refused_then_server_appears(unused_tcp_port: int) -> None:
    """InfluxDB not listening yet: points wait in the buffer and arrive once it is up."""
    server = ScriptedInflux(port=unused_tcp_port)
    async with InfluxSink(config(f"http://127.0.0.1:{unused_tcp_port}"), instance="t") as sink:
        sink.submit(pings(4))
        await until("a failed attempt", lambda: sink.stats()["write_errors"] >= 2)
        assert sink.stats()["buffer_points"] == 4
        await server.start()
        try:
            await until("delivery", lambda: sink.stats()["points_written"] == 4)
        finally:
            await server.close()
    assert len(server.received) == 1


@pytest.mark.parametrize("fault", [HANG, RESET], ids=["hang", "reset"])
async def test_hung_or_reset_connection_is_retried_and_delivered_once(influx: ScriptedInflux, fault: int) -> None:
    """A server that never answers (timeout) or resets the connection: the batch is kept, retried,
    and delivered exactly once when the server answers again."""
    influx.script = [Reply(fault), Reply(fault)]
    async with InfluxSink(config(influx, timeout=0.3), instance="t") as sink:
        sink.submit(pings(6))
        await until("delivery", lambda: sink.stats()["points_written"] == 6, timeout=10)
        stats = sink.stats()
    assert stats["write_errors"] >= 2
    assert stats["buffer_points"] == 0
    assert sorted(influx.accepted_lines) == sorted(set(influx.accepted_lines))
    assert len(influx.accepted_lines) == 6
    assert balanced(stats)


async def test_recovery_is_noticed_within_a_flush_interval_not_retry_max(unused_tcp_port: int) -> None:
    """While nobody answers, the sink looks again every flush interval (not at retry_max), so data
    flows within about one flush interval of InfluxDB coming back."""
    server = ScriptedInflux(port=unused_tcp_port)
    cfg = config(f"http://127.0.0.1:{unused_tcp_port}", flush_interval=0.3, retry_initial=0.1, retry_max=30.0)
    async with InfluxSink(cfg, instance="t") as sink:
        sink.submit(pings(4))
        await until("several failed attempts", lambda: sink.stats()["write_errors"] >= 6, timeout=10)
        await server.start()
        up = time.monotonic()
        try:
            await until("delivery", lambda: sink.stats()["points_written"] == 4, timeout=10)
        finally:
            await server.close()
    assert server.received[0].at - up < 0.6


# -- answers that are not retried --------------------------------------------------------------


async def test_bad_request_is_rejected_quarantined_and_not_retried(influx: ScriptedInflux, tmp_path: Path) -> None:
    """400: InfluxDB will never take it; the batch goes to a quarantine file, is counted, logged
    once (not per batch), and never retried."""
    error = "unable to parse 'ping up=1i x': bad timestamp"
    influx.script = [Reply(400, json.dumps({"error": error})), Reply(400, json.dumps({"error": error}))]
    quarantine = tmp_path / "quarantine"
    with capture_logs() as logs:
        async with InfluxSink(config(influx), instance="t", quarantine_dir=quarantine) as sink:
            sink.submit(pings(3))
            await until("the rejection", lambda: sink.stats()["points_rejected"] == 3)
            sink.submit(pings(2, start=3))
            await until("the second rejection", lambda: sink.stats()["points_rejected"] == 5)
            await asyncio.sleep(0.5)  # several retry intervals: nothing more may be sent
            stats = sink.stats()
    assert len(influx.received) == 2
    assert stats["points_written"] == 0
    assert stats["buffer_points"] == 0
    assert balanced(stats)
    rejected = [e for e in logs if e["event"] == "influx_points_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["error"] == error
    assert rejected[0]["log_level"] == "error"
    files = sorted(quarantine.glob("*.lp"))
    assert len(files) == 2
    first = files[0].read_text().splitlines()
    assert first[0] == f"# HTTP 400: {error}"
    assert len(first) == 4
    assert first[1].startswith("ping,")


async def test_a_400_that_is_not_influxdb_refusing_the_lines_keeps_them(influx: ScriptedInflux, tmp_path: Path) -> None:
    """http:// to an https:// port, a proxy's 400: not a refusal of the lines. They stay buffered
    (a config mistake must not wipe the spool), nothing is quarantined, the error is logged once."""
    influx.then = Reply(400, "Client sent an HTTP request to an HTTPS server.")
    quarantine = tmp_path / "quarantine"
    with capture_logs() as logs:
        async with InfluxSink(config(influx), instance="t", quarantine_dir=quarantine, close_timeout=0.2) as sink:
            sink.submit(pings(5))
            await until("several attempts", lambda: len(influx.received) >= 2, timeout=5)
            stats = sink.stats()
    assert stats["points_rejected"] == 0
    assert stats["points_written"] == 0
    assert stats["buffer_points"] == 5
    assert not quarantine.exists()
    failed = [e for e in logs if e["event"] == "influx_write_failed"]
    assert len(failed) == 1
    assert failed[0]["reason"] == "refused"


@pytest.mark.parametrize("status", [400, 422])
async def test_partial_write_counts_only_dropped_points(influx: ScriptedInflux, status: int) -> None:
    """InfluxDB writes the good points of a batch (400 in 1.x, 422 in 2.x): only the ones it
    dropped are rejected, and nothing is retried."""
    error = 'partial write: field type conflict: input field "up" on measurement "ping" is type float, '
    error += "already exists as type integer dropped=1"
    influx.script = [Reply(status, json.dumps({"error": error}))]
    async with InfluxSink(config(influx), instance="t") as sink:
        sink.submit(pings(4))
        await until("the answer", lambda: sink.stats()["points_rejected"] == 1)
        stats = sink.stats()
    assert stats["points_written"] == 3
    assert balanced(stats)


def test_rejected_points_from_error_text() -> None:
    """The count comes from dropped=N plus each unparsable line; anything else rejects the batch."""
    assert rejected_points("partial write: field type conflict ... dropped=2", 10) == 2
    assert rejected_points("partial write: unable to parse 'a': x\nunable to parse 'b': y dropped=0", 10) == 2
    assert rejected_points("unable to parse 'a b': missing fields", 10) == 10
    assert rejected_points("partial write: dropped=50", 10) == 10
    assert rejected_points("", 7) == 7


async def test_unauthorized_keeps_points_retries_and_logs_once(influx: ScriptedInflux, tmp_path: Path) -> None:
    """401: the points stay buffered, writes are retried, the error is logged once, never the secret."""
    (tmp_path / "user").write_text("netwatch\n")
    (tmp_path / "password").write_text("s3cret-pw\n")
    influx.script = [Reply(401, '{"error":"authorization failed"}')] * 4
    cfg = config(influx, username_file=str(tmp_path / "user"), password_file=str(tmp_path / "password"))
    with capture_logs() as logs:
        async with InfluxSink(cfg, instance="t") as sink:
            sink.submit(pings(6))
            await until("two refusals", lambda: len(influx.received) >= 2)
            assert sink.stats()["buffer_points"] == 6
            await until("delivery", lambda: sink.stats()["points_written"] == 6)
    assert len(influx.received) == 5
    assert all(r.lines == influx.received[0].lines for r in influx.received)
    failed = [e for e in logs if e["event"] == "influx_write_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error"
    assert failed[0]["reason"] == "auth"
    assert [e["event"] for e in logs if e["event"] == "influx_recovered"] == ["influx_recovered"]
    assert "s3cret-pw" not in repr(logs)
    expected = "Basic " + base64.b64encode(b"netwatch:s3cret-pw").decode()
    assert influx.received[0].headers["Authorization"] == expected


async def test_database_not_found_says_create_it(influx: ScriptedInflux) -> None:
    """404 database not found: kept and retried, and the log says how to create the database."""
    influx.script = [Reply(404, '{"error":"database not found: \\"netwatch\\""}')] * 2
    with capture_logs() as logs:
        async with InfluxSink(config(influx), instance="t") as sink:
            sink.submit(pings(2))
            await until("delivery", lambda: sink.stats()["points_written"] == 2)
    failed = [e for e in logs if e["event"] == "influx_write_failed"]
    assert len(failed) == 1
    assert failed[0]["reason"] == "database_not_found"
    assert 'CREATE DATABASE "netwatch"' in failed[0]["hint"]
    assert failed[0]["error"] == 'database not found: "netwatch"'


async def test_too_large_batch_is_split(influx: ScriptedInflux) -> None:
    """413 Request Entity Too Large: the batch is written in halves instead of being lost."""
    influx.script = [Reply(413, "too large")]
    async with InfluxSink(config(influx), instance="t") as sink:
        sink.submit(pings(4))
        await until("delivery", lambda: sink.stats()["points_written"] == 4)
    assert [len(r.lines) for r in influx.received] == [4, 2, 2]
    assert influx.accepted_lines == influx.received[0].lines


# -- batching, gzip, the wire format --------------------------------------------------------------


async def test_batches_split_by_size_and_gzipped(influx: ScriptedInflux) -> None:
    """With gzip on, each request body is gzip; 25 points at batch_size 10 go as 10, 10 and 5."""
    cfg = config(influx, gzip=True, batch_size=10, retention_policy="autogen")
    async with InfluxSink(cfg, instance="t") as sink:
        sink.submit(pings(25))
        await until("delivery", lambda: sink.stats()["points_written"] == 25)
        stats = sink.stats()
    assert [len(r.lines) for r in influx.received] == [10, 10, 5]
    for r in influx.received:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.raw[:2] == b"\x1f\x8b"
        assert r.path == "/write"
        assert r.query == {"db": "netwatch", "rp": "autogen", "precision": "ns"}
    assert [int(ln.rsplit(" ", 1)[1]) for ln in influx.accepted_lines] == [s.time_ns for s in pings(25)]
    assert stats["batches_written"] == 3
    assert stats["batch_points_avg"] == pytest.approx(25 / 3)


async def test_plain_body_without_gzip(influx: ScriptedInflux) -> None:
    """gzip: false sends the lines as they are."""
    async with InfluxSink(config(influx, gzip=False), instance="t") as sink:
        sink.submit(pings(1))
        await until("delivery", lambda: sink.stats()["points_written"] == 1)
    assert "Content-Encoding" not in influx.received[0].headers
    assert influx.received[0].raw.startswith(b"ping,device=d0,site=ch ")


async def test_first_points_go_out_fast_then_batch_per_flush_interval(influx: ScriptedInflux) -> None:
    """After a quiet spell points are written after a short settle; while they keep coming,
    each point waits flush_interval so that they travel in batches."""
    async with InfluxSink(config(influx, batch_size=1000, flush_interval=1.0), instance="t") as sink:
        first = time.monotonic()
        sink.submit(pings(1))
        await until("first delivery", lambda: sink.stats()["points_written"] == 1, timeout=3)
        second = time.monotonic()
        sink.submit(pings(1))
        await until("second delivery", lambda: sink.stats()["points_written"] == 2, timeout=3)
    assert SETTLE_S * 0.8 <= influx.received[0].at - first < 0.8
    assert 0.9 <= influx.received[1].at - second < 2.0


async def test_a_full_batch_goes_without_waiting(influx: ScriptedInflux) -> None:
    """A full batch is written at once, without waiting for flush_interval."""
    async with InfluxSink(config(influx, batch_size=50, flush_interval=30), instance="t") as sink:
        submitted = time.monotonic()
        sink.submit(pings(50))
        await until("delivery", lambda: sink.stats()["points_written"] == 50, timeout=3)
    assert influx.received[0].at - submitted < 1.0


async def test_close_flushes_what_is_waiting(influx: ScriptedInflux) -> None:
    """Leaving the context writes points still waiting for their flush interval."""
    async with InfluxSink(config(influx, batch_size=1000, flush_interval=60), instance="t") as sink:
        sink.submit(pings(7))
    assert sink.stats()["points_written"] == 7
    assert len(influx.received[0].lines) == 7


async def test_close_gives_up_at_its_deadline(influx: ScriptedInflux) -> None:
    """With InfluxDB failing, closing returns within close_timeout and counts the loss."""
    influx.then = Reply(503, "down")
    with capture_logs() as logs:
        sink = InfluxSink(config(influx), instance="t", close_timeout=0.5)
        async with sink:
            sink.submit(pings(5))
            await until("a failure", lambda: sink.stats()["write_errors"] >= 1)
            started = time.monotonic()
    assert time.monotonic() - started < 1.5
    stats = sink.stats()
    assert stats["points_dropped"] == 5
    assert stats["buffer_points"] == 0
    assert balanced(stats)
    assert any(e["event"] == "influx_unflushed_dropped" and e["points"] == 5 for e in logs)


async def test_buffer_full_drops_oldest_and_logs_once(influx: ScriptedInflux) -> None:
    """Past the memory buffer's cap the oldest points go, counted exactly, with one error log."""
    influx.then = Reply(503, "down")
    with capture_logs() as logs:
        sink = InfluxSink(config(influx), instance="t", close_timeout=0.2, max_memory_points=1000)
        async with sink:
            sink.submit(pings(1500))
            sink.submit(pings(10, start=1500))
            stats = sink.stats()
    assert stats["points_dropped"] == 510
    assert stats["buffer_points"] == 1000
    assert balanced(stats)
    assert [e["event"] for e in logs].count("influx_buffer_full") == 1


# -- v2 -------------------------------------------------------------------------------------------


async def test_v2_write_honours_retry_after(influx: ScriptedInflux, tmp_path: Path) -> None:
    """api v2 posts to /api/v2/write with org, bucket and token, and honours Retry-After on 429."""
    (tmp_path / "token").write_text("tok-123\n")
    influx.script = [Reply(429, '{"code":"too many requests","message":"slow"}', {"Retry-After": "1"})]
    cfg = config(influx, api="v2", org="city", bucket="nw", token_file=str(tmp_path / "token"), gzip=True)
    with capture_logs() as logs:
        async with InfluxSink(cfg, instance="t") as sink:
            sink.submit(pings(3))
            await until("delivery", lambda: sink.stats()["points_written"] == 3, timeout=5)
    first, second = influx.received
    assert second.at - first.at >= 1.0
    assert first.path == "/api/v2/write"
    assert first.query == {"org": "city", "bucket": "nw", "precision": "ns"}
    assert first.headers["Authorization"] == "Token tok-123"
    assert first.headers["Content-Encoding"] == "gzip"
    assert second.lines == [ln for ln in first.lines if ln]
    failed = [e for e in logs if e["event"] == "influx_write_failed"]
    assert [(e["reason"], e["status"], e["error"]) for e in failed] == [("throttled", 429, "slow")]
    assert "tok-123" not in repr(logs)


# -- the Sink contract ----------------------------------------------------------------------------


async def test_spool_only_sink_keeps_samples(tmp_path: Path) -> None:
    """Without an influxdb section, samples are kept in the spool (for a later InfluxDB) and counted."""
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=1_000_000)
    async with open_sink(None, instance="t", buffer=spool) as sink:
        assert isinstance(sink, SpoolOnlySink)
        sink.submit(pings(4))
        sink.submit(iter(pings(2)))
        stats = sink.stats()
    assert stats["points_collected"] == 6
    assert stats["buffer_points"] == 6
    assert balanced(stats)
    assert SqliteSpool(tmp_path / "spool.db", max_bytes=1_000_000).recovered == 6


async def test_open_sink_with_config_writes(influx: ScriptedInflux) -> None:
    """open_sink(cfg) gives a sink that writes to InfluxDB."""
    async with open_sink(config(influx), instance="t") as sink:
        sink.submit(pings(2))
    assert sink.stats()["points_written"] == 2


@pytest.mark.parametrize(
    "make", [lambda: SpoolOnlySink(MemoryBuffer(max_points=1000)), lambda: InfluxSink(InfluxConfig(), instance="t")]
)
def test_stats_are_the_netwatch_measurement_fields(make: Callable[[], Any]) -> None:
    """stats() keys are contract fields of measurement netwatch, with the declared types."""
    stats = make().stats()
    declared = CONTRACT["netwatch"][1]
    assert set(stats) == set(STATS_KEYS)
    for key, value in stats.items():
        assert type(value) is {"int": int, "float": float}[declared[key]], key


async def test_dropped_samples_are_counted_in_stats(influx: ScriptedInflux) -> None:
    """A sample the encoder drops (no fields left) counts as dropped, keeping the balance."""
    async with InfluxSink(config(influx), instance="t") as sink:
        sink.submit([Sample("ping", {}, {"rtt_avg_ms": float("nan")}, 1), *pings(2)])
        await until("delivery", lambda: sink.stats()["points_written"] == 2)
        stats = sink.stats()
    assert stats["points_collected"] == 3
    assert stats["points_dropped"] == 1
    assert balanced(stats)


# -- the buffer -----------------------------------------------------------------------------------


async def test_buffer_is_fifo_and_batches_leave_only_on_ack() -> None:
    """take() hands out the oldest lines; they count as held until ack; requeue puts them first."""
    buf = MemoryBuffer(max_points=10)
    buf.append(["a", "b", "c"])
    batch = await buf.take(2)
    assert batch is not None
    assert list(batch.lines) == ["a", "b"]
    assert (len(buf), buf.waiting) == (3, 1)
    buf.append(["d"])
    await buf.requeue(batch)
    again = await buf.take(10)
    assert again is not None
    assert list(again.lines) == ["a", "b", "c", "d"]
    await buf.ack(again)
    assert len(buf) == 0
    assert await buf.take(10) is None


async def test_buffer_cap_drops_oldest_and_counts_exactly() -> None:
    """Past the cap the oldest waiting lines go, and each one is counted."""
    buf = MemoryBuffer(max_points=5)
    buf.append([str(i) for i in range(8)])
    assert buf.dropped == 3
    batch = await buf.take(5)
    assert batch is not None
    assert list(batch.lines) == ["3", "4", "5", "6", "7"]


async def test_buffer_never_cuts_a_batch_in_flight() -> None:
    """Lines taken are not dropped while InfluxDB has them; the cap applies again on requeue."""
    buf = MemoryBuffer(max_points=4)
    buf.append(["a", "b", "c", "d"])
    batch = await buf.take(4)
    assert batch is not None
    buf.append(["e", "f"])  # the four held are in flight: the new lines come on top
    assert (len(buf), buf.dropped) == (6, 0)
    await buf.requeue(batch)  # back at the front, and now the oldest two go
    assert (len(buf), buf.dropped) == (4, 2)
    rest = await buf.take(10)
    assert rest is not None
    assert list(rest.lines) == ["c", "d", "e", "f"]


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 30)),
        st.tuples(st.just("take"), st.integers(1, 20)),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("requeue"), st.integers(0, 3)),
    ),
    max_size=60,
)


@given(cap=st.integers(1, 40), ops=_ops)
def test_buffer_accounting_holds_for_any_sequence(cap: int, ops: list[tuple[str, int]]) -> None:
    """appended == acked + dropped + held after any sequence of operations; the cap holds."""

    async def run() -> None:
        buf = MemoryBuffer(max_points=cap)
        taken: list[Any] = []
        appended = acked = 0
        for op, n in ops:
            if op == "append":
                buf.append([str(appended + i) for i in range(n)])
                appended += n
            elif op == "take":
                batch = await buf.take(n)
                if batch is not None:
                    taken.append(batch)
            elif taken:
                batch = taken.pop(n % len(taken))
                if op == "ack":
                    await buf.ack(batch)
                    acked += len(batch)
                else:
                    await buf.requeue(batch)
            assert appended == acked + buf.dropped + len(buf)
            assert buf.waiting <= cap
        for batch in taken:
            await buf.requeue(batch)
        assert len(buf) <= cap
        assert appended == acked + buf.dropped + len(buf)

    asyncio.run(run())


# -- robustness -------------------------------------------------------------------------------------


async def test_a_sample_the_encoder_chokes_on_never_reaches_the_scheduler(influx: ScriptedInflux) -> None:
    """A malformed sample (unhashable tag value) is dropped, counted and logged once; submit()
    does not raise, and the other samples are written."""
    bad = Sample("ping", {"device": ["not", "a", "str"]}, {"up": 1}, 1)  # type: ignore[dict-item]
    with capture_logs() as logs:
        async with InfluxSink(config(influx), instance="t") as sink:
            sink.submit([bad, *pings(2), bad])
            await until("delivery", lambda: sink.stats()["points_written"] == 2)
            stats = sink.stats()
    assert stats["points_dropped"] == 2
    assert balanced(stats)
    assert [e["event"] for e in logs].count("influx_encode_failed") == 1


async def test_cancellation_passes_through_and_flushes(influx: ScriptedInflux) -> None:
    """Cancelling the task that holds the sink is not swallowed, and waiting points are written
    on the way out."""
    opened = asyncio.Event()

    async def daemon() -> None:
        async with InfluxSink(config(influx, batch_size=1000, flush_interval=60), instance="t") as sink:
            sink.submit(pings(3))
            opened.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(daemon())
    await opened.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(influx.accepted_lines) == 3


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """Return a server TLS context for 127.0.0.1 and the path of its (self-signed) certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netwatch test influx")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
async def tls_influx(tmp_path: Path) -> AsyncIterator[tuple[ScriptedInflux, Path]]:
    context, cert = _self_signed(tmp_path)
    server = ScriptedInflux()
    await server._server.start_server(ssl=context)
    yield server, cert
    await server.close()


async def test_tls_is_verified_by_default(tls_influx: tuple[ScriptedInflux, Path]) -> None:
    """An InfluxDB with a certificate we do not trust gets nothing: the points stay buffered."""
    server, _ = tls_influx
    assert server.url.startswith("https://")
    with capture_logs() as logs:
        async with InfluxSink(config(server), instance="t", close_timeout=0.2) as sink:
            sink.submit(pings(2))
            await until("a failed attempt", lambda: sink.stats()["write_errors"] >= 1)
            assert sink.stats()["buffer_points"] == 2
    assert server.received == []
    failed = next(e for e in logs if e["event"] == "influx_write_failed")
    assert failed["reason"] == "unreachable"
    assert "certificate" in failed["error"].lower()


@pytest.mark.parametrize("how", ["ca_file", "insecure"])
async def test_tls_with_ca_file_or_insecure(tls_influx: tuple[ScriptedInflux, Path], how: str) -> None:
    """ca_file trusts the server's CA; tls: insecure skips verification altogether."""
    server, cert = tls_influx
    extra = {"ca_file": str(cert)} if how == "ca_file" else {"tls": "insecure"}
    async with InfluxSink(config(server, **extra), instance="t") as sink:
        sink.submit(pings(2))
        await until("delivery", lambda: sink.stats()["points_written"] == 2)
    assert len(server.accepted_lines) == 2
