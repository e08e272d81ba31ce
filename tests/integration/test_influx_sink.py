"""InfluxSink against real servers: influxd 1.6 (v1 /write) and VictoriaMetrics (v2 /api/v2/write)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from netwatch.model import FieldValue, Sample
from netwatch.sink.influx import InfluxConfig, InfluxSink
from netwatch.sink.lineproto import (
    LineEncoder,
    sanitize_key,
    sanitize_measurement,
    sanitize_name,
    sanitize_string,
)
from tests.servers.influx import InfluxdServer, VictoriaMetricsServer


def sink_config(url: str, **overrides: Any) -> InfluxConfig:
    values: dict[str, Any] = {
        "url": url,
        "batch_size": 50,
        "flush_interval": 0.1,
        "retry_initial": 0.1,
        "retry_max": 0.5,
        "timeout": 5.0,
    }
    values.update(overrides)
    return InfluxConfig.model_validate(values)


async def until(what: str, cond: Callable[[], bool], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


# -- round trip of arbitrary names and strings through influxd -----------------------------------

_text = st.text(max_size=12)
_name = st.text(min_size=1, max_size=12)


def _expected_keys(mapping: Mapping[str, str], clean_value: Callable[[str], str]) -> dict[str, str]:
    """Apply the documented rules: sanitise, leave empty out, later key wins on a collision."""
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if key and (value or clean_value is sanitize_string):
            out[sanitize_key(key)] = clean_value(value)
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    measurement=_name,
    tags=st.dictionaries(_name, _text, max_size=4),
    strings=st.dictionaries(_name, st.text(max_size=20), max_size=4),
)
@example(measurement="#comment", tags={"time": "a\\", "k\n": "v\r\n"}, strings={"s": 'q"\\\n\x00'})
@example(measurement="m\\", tags={"a\\": "b\\\\c", "e=": "x,y z"}, strings={"time": "t", 'f\\"': "\\"})
@example(measurement="lone \ud800", tags={"t": "\udfff"}, strings={"s": "x\ud800y"})
@example(measurement="C:\\m", tags={"path": "C:\\Temp"}, strings={"ü ✓": "ünï ✓ 😀"})
def test_arbitrary_names_and_strings_round_trip(
    influxd: InfluxdServer, measurement: str, tags: dict[str, str], strings: dict[str, str]
) -> None:
    """Whatever a probe puts in names and strings comes back from influxd as written, after the
    documented sanitising: nothing breaks a line, nothing is silently lost."""
    fields: dict[str, FieldValue] = {**strings, "nw_int": 7, "nw_float": 0.5}
    want_tags = _expected_keys(tags, sanitize_name)
    want_strings = _expected_keys(strings, sanitize_string)
    assume(not {"nw_int", "nw_float"} & set(want_strings))

    database = f"rt_{uuid.uuid4().hex}"  # a database per example: field types and keys start afresh
    influxd.execute(f'CREATE DATABASE "{database}"')
    try:
        sample = Sample(measurement, tags, fields, 1_700_000_000_000_000_001)

        async def write() -> dict[str, int | float]:
            async with InfluxSink(sink_config(influxd.url, database=database), instance="t") as sink:
                sink.submit([sample])
            return sink.stats()

        stats = asyncio.run(write())
        assert stats["points_written"] == 1, stats
        series = influxd.series("SELECT * FROM /.*/ GROUP BY *", db=database)
    finally:
        influxd.execute(f'DROP DATABASE "{database}"')

    assert len(series) == 1, series
    got = series[0]
    assert got["name"] == sanitize_measurement(measurement)
    assert {k: v for k, v in got.get("tags", {}).items() if v} == want_tags
    row = dict(zip(got["columns"], got["values"][0], strict=True))
    assert row.pop("time") == sample.time_ns
    assert row == {**want_strings, "nw_int": 7, "nw_float": 0.5}


# -- types ----------------------------------------------------------------------------------------


async def test_fields_keep_their_declared_type(influxd: InfluxdServer) -> None:
    """A declared-int field given a float is stored as integer, a declared-float given 0 as float,
    so later writes never hit a field type conflict."""
    device = f"sw-{uuid.uuid4().hex[:8]}"
    tags = {"device": device, "site": "ch", "port": "Gi1/0/1"}
    now = time.time_ns()
    first = Sample("interface", tags, {"oper_up": True, "speed_bps": 1e9, "in_bps": 0, "in_util_pct": 0}, now)
    later = Sample("interface", tags, {"oper_up": 1, "speed_bps": 1_000_000_000, "in_bps": 12.5}, now + 1)
    async with InfluxSink(sink_config(influxd.url), instance="t") as sink:
        sink.submit([first])
        await until("the first write", lambda: sink.stats()["points_written"] == 1)
        sink.submit([later])
    assert sink.stats()["points_written"] == 2
    assert sink.stats()["points_rejected"] == 0

    types = {k: t for k, t in influxd.series("SHOW FIELD KEYS FROM interface")[0]["values"]}
    assert types["oper_up"] == "integer"
    assert types["speed_bps"] == "integer"
    assert types["in_bps"] == "float"
    assert types["in_util_pct"] == "float"
    rows = influxd.series(f"SELECT speed_bps, in_bps FROM interface WHERE device = '{device}'")[0]["values"]
    assert rows == [[now, 1_000_000_000, 0], [now + 1, 1_000_000_000, 12.5]]


async def test_type_conflict_rejects_only_that_point(influxd: InfluxdServer) -> None:
    """A field whose type flips (outside the contract) is rejected by influxd: counted as rejected,
    not retried, and the other points of the batch are written."""
    measurement = f"custom_{uuid.uuid4().hex[:8]}"
    now = time.time_ns()
    with capture_logs() as logs:
        async with InfluxSink(sink_config(influxd.url), instance="t") as sink:
            sink.submit([Sample(measurement, {"k": "a"}, {"v": 1}, now)])
            await until("the first write", lambda: sink.stats()["points_written"] == 1)
            sink.submit(
                [
                    Sample(measurement, {"k": "b"}, {"v": 2.5}, now + 1),  # float into an integer field
                    Sample(measurement, {"k": "c"}, {"v": 3}, now + 2),
                ]
            )
            await until("the answer", lambda: sink.stats()["points_rejected"] == 1)
            stats = sink.stats()
    assert stats["points_written"] == 2
    assert stats["write_errors"] == 1
    rejected = [e for e in logs if e["event"] == "influx_points_rejected"]
    assert len(rejected) == 1
    assert "field type conflict" in rejected[0]["error"]
    rows = influxd.series(f'SELECT v FROM "{measurement}" GROUP BY k')
    assert {r["tags"]["k"]: r["values"][0][1] for r in rows} == {"a": 1, "c": 3}


# -- an outage ------------------------------------------------------------------------------------


async def test_points_survive_an_influxd_restart(influxd_own: InfluxdServer) -> None:
    """influxd stops and comes back: points collected meanwhile wait in the buffer and all arrive,
    none twice; the outage is logged once when it starts and once when it ends."""
    base = time.time_ns()

    def points(start: int, n: int) -> list[Sample]:
        return [
            Sample("ping", {"device": f"d{i % 5}", "site": "ch"}, {"up": 1, "rtt_avg_ms": i / 10}, base + i)
            for i in range(start, start + n)
        ]

    with capture_logs() as logs:
        async with InfluxSink(sink_config(influxd_own.url), instance="t") as sink:
            sink.submit(points(0, 100))
            await until("the first points", lambda: sink.stats()["points_written"] == 100)

            influxd_own.stop()
            for chunk in range(6):
                sink.submit(points(100 + chunk * 50, 50))
                await asyncio.sleep(0.1)
            await until("failed attempts", lambda: sink.stats()["write_errors"] >= 3)
            assert sink.stats()["buffer_points"] == 300

            influxd_own.start()
            await until("the backlog", lambda: sink.stats()["points_written"] == 400, timeout=20)
            stats = sink.stats()

    assert stats["points_dropped"] == 0
    assert stats["buffer_points"] == 0
    count = influxd_own.series("SELECT count(up) FROM ping")[0]["values"][0][1]
    assert count == 400
    times = [row[0] for row in influxd_own.series("SELECT up FROM ping")[0]["values"]]
    assert times == [base + i for i in range(400)]
    events = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert events.count("influx_write_failed") == 1
    assert events.count("influx_recovered") == 1


# -- v2 through VictoriaMetrics -------------------------------------------------------------------


async def test_v2_write_through_victoria_metrics(victoria_metrics: VictoriaMetricsServer, tmp_path: Path) -> None:
    """api v2 writes line protocol to /api/v2/write (org, bucket, token); the values come back,
    and a raw Counter64 never reaches the server (VictoriaMetrics would drop it silently)."""
    (tmp_path / "token").write_text("anything\n")
    device = f"core-{uuid.uuid4().hex[:8]}"
    now_ms = time.time_ns() // 1_000_000
    samples = [
        Sample(
            "interface",
            {"device": device, "site": "city hall", "port": "xe-0/0/3"},
            {"oper_up": True, "speed_bps": 1e10, "in_bps": 123456.5, "raw_octets": 2**64 - 1},
            (now_ms + i * 1000) * 1_000_000,
        )
        for i in range(3)
    ]
    encoder = LineEncoder()
    cfg = sink_config(victoria_metrics.url, api="v2", org="city", bucket="netwatch", token_file=str(tmp_path / "token"))
    async with InfluxSink(cfg, instance="t", encoder=encoder) as sink:
        sink.submit(samples)
    assert sink.stats()["points_written"] == 3
    assert encoder.stats.fields_out_of_range == 3

    rows = victoria_metrics.export(
        f'{{__name__=~"interface_.*",device="{device}"}}',
        ready=lambda rows: sum(len(r["values"]) for r in rows) >= 9,
    )
    by_name = {r["metric"]["__name__"]: r for r in rows}
    assert set(by_name) == {"interface_oper_up", "interface_speed_bps", "interface_in_bps"}
    speed = by_name["interface_speed_bps"]
    assert speed["metric"] == {
        "__name__": "interface_speed_bps",
        "device": device,
        "site": "city hall",
        "port": "xe-0/0/3",
    }
    assert speed["values"] == [1e10] * 3
    assert speed["timestamps"] == [now_ms, now_ms + 1000, now_ms + 2000]
    assert by_name["interface_in_bps"]["values"] == [123456.5] * 3


# -- what an operator gets wrong ----------------------------------------------------------------


async def test_missing_database_is_reported_and_points_wait_for_it(influxd: InfluxdServer) -> None:
    """Writing before the database exists: points are kept, the log says to create it (once),
    and they arrive as soon as it is created."""
    database = f"late_{uuid.uuid4().hex[:8]}"
    with capture_logs() as logs:
        async with InfluxSink(sink_config(influxd.url, database=database), instance="t") as sink:
            sink.submit([Sample("ping", {"device": "d"}, {"up": 1}, 1_700_000_000_000_000_000 + i) for i in range(5)])
            await until("refusals", lambda: sink.stats()["write_errors"] >= 2)
            assert sink.stats()["buffer_points"] == 5
            influxd.execute(f'CREATE DATABASE "{database}"')
            await until("delivery", lambda: sink.stats()["points_written"] == 5)
    failed = [e for e in logs if e["event"] == "influx_write_failed"]
    assert len(failed) == 1
    assert failed[0]["reason"] == "database_not_found"
    assert f'CREATE DATABASE "{database}"' in failed[0]["hint"]
    assert influxd.series("SELECT count(up) FROM ping", db=database)[0]["values"][0][1] == 5


async def test_credentials_against_influxd_with_auth(influxd_auth: InfluxdServer, tmp_path: Path) -> None:
    """With auth enabled, the user from username_file/password_file writes; a wrong password
    keeps the points, is logged once as an error without the password, and retries."""
    (tmp_path / "user").write_text("writer\n")
    (tmp_path / "good").write_text("writer-pw\n")
    (tmp_path / "bad").write_text("not-the-pw\n")
    base = time.time_ns()
    good = sink_config(influxd_auth.url, username_file=str(tmp_path / "user"), password_file=str(tmp_path / "good"))
    async with InfluxSink(good, instance="t") as sink:
        sink.submit([Sample("ping", {"device": "d"}, {"up": 1}, base)])
    assert sink.stats()["points_written"] == 1

    bad = sink_config(influxd_auth.url, username_file=str(tmp_path / "user"), password_file=str(tmp_path / "bad"))
    with capture_logs() as logs:
        async with InfluxSink(bad, instance="t", close_timeout=0.2) as sink:
            sink.submit([Sample("ping", {"device": "d"}, {"up": 1}, base + 1)])
            await until("retries", lambda: sink.stats()["write_errors"] >= 3)
            assert sink.stats()["buffer_points"] == 1
    failed = [e for e in logs if e["event"] == "influx_write_failed"]
    assert [(e["reason"], e["status"], e["log_level"]) for e in failed] == [("auth", 401, "error")]
    assert "not-the-pw" not in repr(logs)
    assert influxd_auth.series("SELECT count(up) FROM ping")[0]["values"][0][1] == 1
