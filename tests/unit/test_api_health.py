"""Health API: /healthz, /readyz and /metrics served by a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from netwatch.api import (
    ApiConfig,
    ApiListenError,
    ApiServer,
    DeviceCounts,
    LagSnapshot,
    SchedulerSnapshot,
    serve_api,
)
from netwatch.api.health import parse_listen, readiness_problems
from netwatch.api.metrics import SINK_METRICS
from netwatch.scheduler import Scheduler
from netwatch.sink.influx import STATS_KEYS


def _sink_stats() -> dict[str, int | float]:
    return {
        "points_collected": 1000,
        "points_written": 900,
        "points_dropped": 10,
        "points_rejected": 2,
        "buffer_points": 88,
        "batches_written": 9,
        "batch_points_avg": 100.0,
        "write_latency_ms": 12.5,
        "write_errors": 3,
    }


@dataclass
class FakeSource:
    """A HealthSource whose answers the test sets directly."""

    name: str = "noc-test"
    sched: SchedulerSnapshot = field(
        default_factory=lambda: SchedulerSnapshot(
            checks_run=120,
            checks_failed=7,
            checks_skipped=1,
            checks_in_flight=4,
            poll_lag=LagSnapshot(p50_ms=1.5, p99_ms=20.0, max_ms=35.0),
        )
    )
    heartbeat: float = 0.4
    sink: dict[str, int | float] = field(default_factory=_sink_stats)
    recovered: bool = True
    write_age: float | None = 2.0
    backlog: int = 88
    devices: DeviceCounts = field(default_factory=lambda: DeviceCounts(up=40, down=2))

    @property
    def instance(self) -> str:
        return self.name

    def scheduler_stats(self) -> SchedulerSnapshot:
        return self.sched

    def heartbeat_age_s(self) -> float:
        return self.heartbeat

    def sink_stats(self) -> Mapping[str, int | float]:
        return self.sink

    def spool_recovered(self) -> bool:
        return self.recovered

    def last_write_age_s(self) -> float | None:
        return self.write_age

    def backlog_points(self) -> int:
        return self.backlog

    def device_counts(self) -> DeviceCounts:
        return self.devices


@dataclass
class Api:
    server: ApiServer
    source: FakeSource
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.server.url is not None
        return self.server.url

    async def get(self, path: str) -> tuple[int, dict[str, object]]:
        async with self.http.get(self.url + path) as resp:
            return resp.status, await resp.json()

    async def text(self, path: str, *, headers: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        async with self.http.get(self.url + path, headers=headers) as resp:
            return resp.status, resp.headers["Content-Type"], await resp.text()


@pytest.fixture
async def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
async def api(source: FakeSource) -> AsyncIterator[Api]:
    cfg = ApiConfig(listen="127.0.0.1:0", ready_max_write_age="2m")
    async with serve_api(cfg, source) as server, aiohttp.ClientSession() as http:
        yield Api(server, source, http)


# -- /healthz ---------------------------------------------------------------------------------


async def test_healthz_ok_while_the_scheduler_heartbeat_is_fresh(api: Api) -> None:
    """A fresh heartbeat gives 200 with status ok, loop lag and heartbeat age."""
    status, body = await api.get("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["heartbeat_age_s"] == 0.4
    assert isinstance(body["loop_lag_ms"], float)
    assert "why" not in body


async def test_healthz_503_when_the_heartbeat_is_stale(api: Api) -> None:
    """A heartbeat older than 10 s means a stuck scheduler: 503 naming why."""
    api.source.heartbeat = 12.0
    status, body = await api.get("/healthz")
    assert status == 503
    assert body["status"] == "stale"
    assert body["why"] == ["scheduler has not woken for 12 s (limit 10 s)"]


async def test_healthz_reports_event_loop_lag_after_a_blocking_call(api: Api) -> None:
    """A synchronous stall of the loop shows up as loop lag on the next request."""
    await asyncio.sleep(0.3)  # let the lag monitor take a few samples first
    time.sleep(0.5)  # noqa: ASYNC251 - block the loop on purpose, as a synchronous call in a handler would
    await asyncio.sleep(0.3)
    _status, body = await api.get("/healthz")
    assert isinstance(body["loop_lag_max_ms"], float)
    # the monitor sees the stall less the part before its 0.1 s timer was due
    assert 350.0 <= body["loop_lag_max_ms"] < 1000.0


async def test_head_is_served_without_a_body(api: Api) -> None:
    """HEAD answers like GET, without a body."""
    async with api.http.head(api.url + "/healthz") as resp:
        assert resp.status == 200
        assert await resp.read() == b""


# -- /readyz ----------------------------------------------------------------------------------


async def test_readyz_ok_when_recovered_and_writes_are_recent(api: Api) -> None:
    """Spool recovered and a write 2 s ago: ready, with the figures in the body."""
    status, body = await api.get("/readyz")
    assert status == 200
    assert body == {
        "ready": True,
        "why": [],
        "spool_recovered": True,
        "backlog_points": 88,
        "last_write_age_s": 2.0,
    }


async def test_readyz_503_until_the_spool_is_recovered(api: Api) -> None:
    """An unrecovered spool is named as the reason."""
    api.source.recovered = False
    status, body = await api.get("/readyz")
    assert status == 503
    assert body["ready"] is False
    assert body["why"] == ["spool not recovered yet"]


async def test_readyz_503_when_influxdb_stopped_accepting_with_points_waiting(api: Api) -> None:
    """Points waiting and no accepted write for longer than ready_max_write_age: 503 with the age."""
    api.source.write_age = 300.0
    api.source.backlog = 5000
    api.source.recovered = False
    status, body = await api.get("/readyz")
    assert status == 503
    assert body["why"] == [
        "spool not recovered yet",
        "influxdb has not accepted a write for 300 s (5000 points waiting)",
    ]
    assert body["backlog_points"] == 5000


async def test_readyz_ok_with_an_old_write_when_nothing_waits(api: Api) -> None:
    """An old last write is fine when nothing is waiting (a quiet instance is not behind)."""
    api.source.write_age = 3600.0
    api.source.backlog = 0
    status, _body = await api.get("/readyz")
    assert status == 200


async def test_readyz_gives_a_fresh_start_grace_before_the_first_write(source: FakeSource) -> None:
    """With no write yet, the age counts from the API's start: ready at first, not ready after the limit."""
    source.write_age = None
    cfg = ApiConfig(listen="127.0.0.1:0", ready_max_write_age="200ms")
    async with serve_api(cfg, source) as server, aiohttp.ClientSession() as http:
        api = Api(server, source, http)
        status, body = await api.get("/readyz")
        assert status == 200
        assert body["last_write_age_s"] is None
        await asyncio.sleep(0.3)
        status, body = await api.get("/readyz")
    assert status == 503
    why = body["why"]
    assert isinstance(why, list)
    assert why[0].startswith("influxdb has accepted no write since start")


def test_readiness_rules() -> None:
    """The readiness rule as a table: spool, backlog, age, grace."""
    cases = [
        (True, 0, None, 999.0, []),
        (True, 10, 5.0, 999.0, []),
        (True, 10, 121.0, 999.0, ["influxdb has not accepted a write for 121 s (10 points waiting)"]),
        (True, 10, None, 60.0, []),
        (True, 10, None, 130.0, ["influxdb has accepted no write since start 130 s ago (10 points waiting)"]),
        (False, 0, 1.0, 1.0, ["spool not recovered yet"]),
    ]
    for recovered, backlog, age, uptime, expected in cases:
        got = readiness_problems(
            spool_recovered=recovered,
            backlog_points=backlog,
            last_write_age_s=age,
            uptime_s=uptime,
            max_write_age_s=120.0,
        )
        assert got == expected, (recovered, backlog, age, uptime)


# -- /metrics ---------------------------------------------------------------------------------


async def test_metrics_expose_the_netwatch_counters(api: Api) -> None:
    """/metrics parses as Prometheus text; counters end in _total, gauges do not; all labelled instance."""
    status, content_type, text = await api.text("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted({"instance": "noc-test", **labels}.items())))]

    counters: dict[str, float] = {"checks_run": 120, "checks_failed": 7, "checks_skipped": 1}
    counters |= {"points_collected": 1000, "points_written": 900, "points_dropped": 10}
    counters |= {"points_rejected": 2, "batches_written": 9, "write_errors": 3}
    for name, expected in counters.items():
        assert families[f"netwatch_{name}"].type == "counter", name
        assert value(f"netwatch_{name}_total") == expected, name
    gauges: dict[str, float] = {
        "up": 1,
        "checks_in_flight": 4,
        "poll_lag_p50_ms": 1.5,
        "poll_lag_p99_ms": 20.0,
        "poll_lag_max_ms": 35.0,
        "heartbeat_age_s": 0.4,
        "buffer_points": 88,
        "batch_points_avg": 100.0,
        "write_latency_ms": 12.5,
        "spool_recovered": 1,
        "backlog_points": 88,
        "last_write_age_s": 2.0,
        "ready": 1,
    }
    for name, expected in gauges.items():
        assert families[f"netwatch_{name}"].type == "gauge", name
        assert value(f"netwatch_{name}") == expected, name
    assert value("netwatch_devices", state="up") == 40
    assert value("netwatch_devices", state="down") == 2
    assert "netwatch_loop_lag_ms" in families
    assert all(s.labels["instance"] == "noc-test" for f in families.values() for s in f.samples)
    # its own registry: no process or platform collectors from the global one
    assert all(name.startswith("netwatch_") for name in families)


async def test_metrics_follow_the_source_and_drop_absent_values(api: Api) -> None:
    """Each scrape reads the source anew; no lag window or write yet means no such series."""
    api.source.sched = SchedulerSnapshot(
        checks_run=121, checks_failed=7, checks_skipped=1, checks_in_flight=0, poll_lag=None
    )
    api.source.write_age = None
    api.source.recovered = False
    _status, _ctype, text = await api.text("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["netwatch_checks_run"].samples[0].value == 121
    assert "netwatch_poll_lag_p99_ms" not in families
    assert "netwatch_last_write_age_s" not in families
    assert families["netwatch_ready"].samples[0].value == 0


async def test_metrics_speak_openmetrics_when_asked(api: Api) -> None:
    """A scraper asking for OpenMetrics gets it."""
    status, content_type, text = await api.text("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


def test_every_sink_stat_has_a_metric_kind() -> None:
    """A new sink stat must be classified (counter or gauge) before it can be exposed."""
    assert set(SINK_METRICS) == set(STATS_KEYS)


def test_lag_snapshot_reads_without_resetting() -> None:
    """LagSnapshot.from_lags leaves the window alone and agrees with Scheduler.lag_summary."""
    scheduler = Scheduler([], lambda _obs: None)
    lags: deque[float] = scheduler.stats.lags
    lags.extend(i / 1000 for i in range(1, 201))
    snap = LagSnapshot.from_lags(lags)
    assert len(lags) == 200
    summary = scheduler.lag_summary()
    assert snap == LagSnapshot(
        p50_ms=summary["poll_lag_p50_ms"], p99_ms=summary["poll_lag_p99_ms"], max_ms=summary["poll_lag_max_ms"]
    )
    assert LagSnapshot.from_lags([]) is None


# -- routing, lifecycle -----------------------------------------------------------------------


async def test_unknown_path_is_404_and_other_methods_405(api: Api) -> None:
    """Only the three paths exist, and only GET/HEAD is allowed on them."""
    async with api.http.get(api.url + "/status") as resp:
        assert resp.status == 404
    async with api.http.post(api.url + "/healthz") as resp:
        assert resp.status == 405
    async with api.http.delete(api.url + "/metrics") as resp:
        assert resp.status == 405


async def test_taken_port_is_a_clear_error(source: FakeSource) -> None:
    """Binding a port someone else holds raises ApiListenError naming the address."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ApiListenError, match=rf"cannot listen on 127\.0\.0\.1:{port}: address already in use"):
            async with serve_api(ApiConfig(listen=f"127.0.0.1:{port}"), source):
                pass


async def test_second_instance_on_the_same_port_fails(api: Api) -> None:
    """A second API on a port the first one holds fails; the first keeps serving."""
    host, port = api.server.addresses[0]
    with pytest.raises(ApiListenError) as info:
        async with serve_api(ApiConfig(listen=f"{host}:{port}"), api.source):
            pass
    assert info.value.address == f"127.0.0.1:{port}"
    status, _body = await api.get("/healthz")
    assert status == 200


async def test_stops_within_the_deadline_and_frees_the_port(source: FakeSource) -> None:
    """Leaving the block closes the listener (and keep-alive connections) within the deadline."""
    async with aiohttp.ClientSession() as http:
        loop = asyncio.get_running_loop()
        async with serve_api(ApiConfig(listen="127.0.0.1:0"), source, stop_timeout=1.0) as server:
            url = server.url
            async with http.get(f"{url}/healthz") as resp:  # leaves a keep-alive connection open
                assert resp.status == 200
            left = loop.time()
        assert loop.time() - left < 2.0
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(f"{url}/healthz", headers={"Connection": "close"}):
                pass


async def test_disabled_api_listens_nowhere(source: FakeSource) -> None:
    """enabled: false starts nothing; the server has no address."""
    async with serve_api(ApiConfig(enabled=False), source) as server:
        assert server.addresses == ()
        assert server.url is None


async def test_ipv6_loopback(source: FakeSource) -> None:
    """An IPv6 listen address in brackets works and gives a bracketed URL."""
    if not socket.has_ipv6:
        pytest.fail("this host has no IPv6; the API must support [::1]")
    async with serve_api(ApiConfig(listen="[::1]:0"), source) as server, aiohttp.ClientSession() as http:
        assert server.url is not None
        assert server.url.startswith("http://[::1]:")
        async with http.get(server.url + "/healthz") as resp:
            assert resp.status == 200


# -- config -----------------------------------------------------------------------------------


def test_config_defaults_listen_on_loopback() -> None:
    """The default listens on 127.0.0.1:9317 and allows two minutes without a write."""
    cfg = ApiConfig()
    assert (cfg.host, cfg.port) == ("127.0.0.1", 9317)
    assert cfg.enabled is True
    assert cfg.ready_max_write_age == 120.0


def test_listen_addresses() -> None:
    """host:port with IPv4, bracketed IPv6 or a host name parses; anything else names the fix."""
    good = {
        "127.0.0.1:9317": ("127.0.0.1", 9317),
        "0.0.0.0:80": ("0.0.0.0", 80),
        "[::1]:9317": ("::1", 9317),
        "[::]:9317": ("::", 9317),
        "localhost:9317": ("localhost", 9317),
        "mon-1.example.org:0": ("mon-1.example.org", 0),
    }
    for text, expected in good.items():
        assert parse_listen(text) == expected, text
    bad = {
        "127.0.0.1": "expected host:port",
        "::1:9317": "in brackets",
        "[::1]9317": "[::1]:9317",
        "[1.2.3.4]:80": "not an IPv6 address",
        "10.0.0.300:9317": "not an IPv4 address",
        ":9317": "name the host",
        "127.0.0.1:65536": "from 0 to 65535",
        "127.0.0.1:http": "from 0 to 65535",
        "bad_host!:9317": "not a host name",
    }
    for text, fragment in bad.items():
        with pytest.raises(ValueError, match=re.escape(fragment)):
            parse_listen(text)


def test_config_rejects_bad_values_with_the_key() -> None:
    """A bad listen address or an unknown key is a validation error naming the key."""
    with pytest.raises(ValidationError, match="listen"):
        ApiConfig(listen="::1:9317")
    with pytest.raises(ValidationError, match="port"):
        ApiConfig.model_validate({"port": 9317})
    assert ApiConfig(ready_max_write_age="5m").ready_max_write_age == 300.0
