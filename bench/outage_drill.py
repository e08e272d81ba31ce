"""Outage drill: netwatch's sink + spool at a steady 5,000 points/s while influxd is stopped and restarted.

Drives the real write path in-process (not the probes): `SqliteSpool` (in a temporary state dir)
under `InfluxSink` (flush_interval 1 s, batch_size 5,000), fed every 100 ms with 500 synthetic
samples (100 `ping`, 400 `interface`, every point with its own timestamp) by `sink.submit()`.
influxd 1.6 runs on a free loopback port. Timeline: `--steady` s of load, influxd stopped (SIGTERM)
until `--steady + --outage` s, restarted, load until `--duration` s, then the spool drains.

Measured: points generated, points in InfluxDB afterwards (count per measurement; timestamps are
unique, so that is the number of distinct keys), lost = generated - in InfluxDB; peak spool files
(spool.db + WAL) and peak RSS of this process (sampled every second); from influxd answering again:
time until a point generated after that is returned by InfluxQL (polled every 100 ms), and time
until everything spooled before it is in InfluxDB (drain) with the rate; CPU seconds used.

    python bench/outage_drill.py [--duration 300] [--outage 180] [--steady 60] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.record import append_rows  # noqa: E402
from bench.samples import interface_sample, ping_sample  # noqa: E402
from tests.servers.influx import InfluxdServer  # noqa: E402

from netwatch.logs import configure as configure_logs  # noqa: E402
from netwatch.model import Sample  # noqa: E402
from netwatch.sink.influx import InfluxConfig, InfluxSink  # noqa: E402
from netwatch.sink.spool import SqliteSpool  # noqa: E402

SECTION = "## Outage drill (bench/outage_drill.py)"
INTRO = """
netwatch's sink and spool driven in-process (`SqliteSpool` under `InfluxSink`, flush_interval 1 s,
batch_size 5,000) at a synthetic 5,000 points/s: 500 samples (100 `ping`, 400 `interface`, each
point with its own timestamp) passed to `sink.submit()` every 100 ms, not probes. influxd 1.6 on
loopback: 60 s of load, influxd stopped (SIGTERM) for 180 s and started again, load until 300 s (the
defaults; the row says what ran), then the spool drains. Lost = points generated - points in
InfluxDB (`count()` per measurement; unique timestamps, so distinct keys). Peak spool = spool.db +
WAL; peak RSS of the whole process (generator, sink, spool); both sampled every second. Fresh
visible = influxd answering /ping again until a point generated after that moment is returned by
InfluxQL (polled every 100 ms). Drain = the same moment until every point spooled before it is in
InfluxDB (rate = that backlog / drain time, while fresh points keep flowing). CPU = this process
over the whole run.
"""
TABLE_HEAD = (
    "| date | load | outage | generated | lost | peak spool | peak RSS | fresh visible | drain after restart "
    "| CPU | command |"
)
ALIGN = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"

TICK_S = 0.1
COUNT_FIELD = {"ping": "up", "interface": "oper_up"}


class Generator:
    """Realistic ping and interface samples, every point with a timestamp of its own."""

    def __init__(self) -> None:
        self.last_ns = 0
        self.generated = {"ping": 0, "interface": 0}
        self.n = 0

    def tick(self, count: int) -> list[Sample]:
        now = max(time.time_ns(), self.last_ns + 1)
        samples = []
        for j in range(count):
            i = self.n
            self.n += 1
            ts = now + j
            if j % 5 == 0:
                samples.append(ping_sample(i, ts))
                self.generated["ping"] += 1
            else:
                samples.append(interface_sample(i, ts))
                self.generated["interface"] += 1
        self.last_ns = now + count - 1
        return samples


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spool_file_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += Path(str(path) + suffix).stat().st_size
    return total


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def count_in_influx(influx: InfluxdServer) -> dict[str, int]:
    counts = {}
    for measurement, field in COUNT_FIELD.items():
        series = influx.series(f'SELECT count("{field}") FROM "{measurement}"')
        counts[measurement] = int(series[0]["values"][0][1]) if series else 0
    return counts


async def drill(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    binary = shutil.which("influxd") or shutil.which("influxd", path="/usr/sbin:/usr/bin") or "influxd"
    (work / "influx").mkdir()
    influx = InfluxdServer(binary=binary, workdir=work / "influx")
    await asyncio.to_thread(influx.start)
    influx.execute('CREATE DATABASE "netwatch"')
    spool_path = work / "state" / "spool.db"
    spool = SqliteSpool(spool_path, max_bytes=args.spool_cap_mib << 20)
    reader = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True, isolation_level=None)
    cfg = InfluxConfig.model_validate(
        {"url": influx.url, "database": "netwatch", "flush_interval": 1.0, "batch_size": 5000}
    )
    per_tick = round(args.rate * TICK_S)
    total_ticks = round(args.duration / TICK_S)
    gen = Generator()
    peaks = {"spool_bytes": 0, "spool_points": 0, "rss_mib": 0.0}
    marks: dict[str, Any] = {}
    influxd_cpu = 0.0
    loop = asyncio.get_running_loop()
    late = {"max_s": 0.0}

    def sample_peaks() -> None:
        peaks["spool_bytes"] = max(peaks["spool_bytes"], spool_file_bytes(spool_path))
        peaks["spool_points"] = max(peaks["spool_points"], len(spool))
        peaks["rss_mib"] = max(peaks["rss_mib"], rss_mib())

    async def monitor() -> None:
        while True:
            sample_peaks()
            await asyncio.sleep(1.0)

    async def generate(sink: InfluxSink, t0: float) -> None:
        for k in range(total_ticks):
            due = t0 + k * TICK_S
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            else:
                late["max_s"] = max(late["max_s"], now - due)
            if loop.time() - t0 > args.duration * 1.1:  # bounded in time as well as in count
                break
            sink.submit(gen.tick(per_tick))
        marks["generation_s"] = loop.time() - t0

    async def fresh_visible(restart_mono: float, restart_ns: int) -> None:
        q = f'SELECT count("up") FROM "ping" WHERE time > {restart_ns}'
        while loop.time() - restart_mono < args.fresh_timeout:
            started = loop.time()
            try:
                rows = await asyncio.to_thread(influx.series, q)
            except (OSError, AssertionError):
                rows = []
            if rows and rows[0]["values"][0][1] > 0:
                marks["fresh_visible_s"] = loop.time() - restart_mono
                return
            await asyncio.sleep(max(0.0, TICK_S - (loop.time() - started)))
        marks["fresh_visible_s"] = None

    async def drained(restart_mono: float, backlog_top: int | None) -> None:
        """Wait until every row spooled before the restart is acked (take() hands out newest
        first, so the backlog is gone once the oldest row left is newer than its last row)."""
        while backlog_top is not None:
            (oldest,) = reader.execute("SELECT min(seq) FROM points").fetchall()[0]
            if oldest is None or oldest > backlog_top:
                break
            if loop.time() - restart_mono > args.drain_timeout:
                marks["drain_s"] = None
                return
            await asyncio.sleep(0.05)
        marks["drain_s"] = loop.time() - restart_mono

    cpu0 = cpu_s()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with InfluxSink(cfg, instance="drill", buffer=spool) as sink:
            t0 = loop.time()
            tasks.append(asyncio.create_task(monitor()))
            generator = asyncio.create_task(generate(sink, t0))
            await asyncio.sleep(max(0.0, t0 + args.steady - loop.time()))
            marks["stop_at_s"] = loop.time() - t0
            if influx.proc is not None:
                influxd_cpu += proc_cpu_s(influx.proc.pid)
            await asyncio.to_thread(influx.stop)
            marks["stopped_at_s"] = loop.time() - t0
            await asyncio.sleep(max(0.0, t0 + args.steady + args.outage - loop.time()))
            marks["start_at_s"] = loop.time() - t0
            await asyncio.to_thread(influx.start)
            restart_mono, restart_ns = loop.time(), time.time_ns()
            marks["answering_at_s"] = restart_mono - t0
            (backlog_top,) = reader.execute("SELECT max(seq) FROM points").fetchall()[0]
            (backlog,) = reader.execute("SELECT count(*) FROM points").fetchall()[0]
            marks["backlog_points"] = backlog
            sample_peaks()
            watchers = [
                asyncio.create_task(fresh_visible(restart_mono, restart_ns)),
                asyncio.create_task(drained(restart_mono, backlog_top)),
            ]
            await generator
            marks["load_end_s"] = loop.time() - t0
            while len(spool) and loop.time() - marks["load_end_s"] - t0 < args.drain_timeout:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            marks["empty_after_load_s"] = loop.time() - t0 - marks["load_end_s"] if not len(spool) else None
            await asyncio.gather(*watchers)
            sample_peaks()
            stats = sink.stats()
        for task in tasks:
            task.cancel()
        spool_after = spool_file_bytes(spool_path)
        cpu = cpu_s() - cpu0
        in_influx = await asyncio.to_thread(count_in_influx, influx)
        if influx.proc is not None:
            influxd_cpu += proc_cpu_s(influx.proc.pid)
    finally:
        for task in tasks:
            task.cancel()
        reader.close()
        await asyncio.to_thread(influx.stop)

    generated = sum(gen.generated.values())
    stored = sum(in_influx.values())
    drain_s = marks.get("drain_s")
    backlog = int(marks["backlog_points"] or 0)
    generation_s = marks["generation_s"] or 0.0
    return {
        "bench": "outage_drill",
        "rate_pts_s": args.rate,
        "achieved_pts_s": round(generated / generation_s, 1) if generation_s else None,
        "max_tick_late_s": round(late["max_s"], 3),
        "duration_s": args.duration,
        "outage_s": args.outage,
        "steady_s": args.steady,
        "influxd_stopped_s": round(marks["answering_at_s"] - marks["stop_at_s"], 1),
        "influxd_start_s": round(marks["answering_at_s"] - marks["start_at_s"], 2),
        "generated": generated,
        "generated_by_measurement": gen.generated,
        "in_influxdb": stored,
        "in_influxdb_by_measurement": in_influx,
        "lost": generated - stored,
        "sink_stats": stats,
        "spool_dropped": spool.dropped,
        "backlog_at_restart_points": backlog,
        "peak_spool_points": peaks["spool_points"],
        "peak_spool_mib": round(peaks["spool_bytes"] / 2**20, 1),
        "spool_mib_after_drain": round(spool_after / 2**20, 2),
        "peak_rss_mib": round(peaks["rss_mib"], 1),
        "vmhwm_mib": round(hwm_mib(), 1),
        "fresh_visible_s": rounded(marks.get("fresh_visible_s")),
        "drain_s": rounded(drain_s),
        "drain_backlog_pts_s": round(backlog / drain_s) if drain_s else None,
        "empty_after_load_end_s": rounded(marks.get("empty_after_load_s")),
        "cpu_s": round(cpu, 1),
        "influxd_cpu_s": round(influxd_cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000, help="points per second, submitted every 100 ms")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load in all")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of load before influxd is stopped")
    parser.add_argument("--outage", type=float, default=180.0, help="seconds influxd stays down")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="longest wait for the spool to drain")
    parser.add_argument("--fresh-timeout", type=float, default=60.0, help="longest wait for fresh data")
    parser.add_argument("--spool-cap-mib", type=int, default=1024, help="the spool's max_bytes (default 1 GiB)")
    parser.add_argument("--record", action="store_true", help="append a row to BENCHMARKS.md")
    args = parser.parse_args()
    if args.steady + args.outage > args.duration:
        parser.error("--steady + --outage must not exceed --duration")
    configure_logs("info", "json")  # to stderr: the outage is logged when it starts and ends

    with tempfile.TemporaryDirectory(prefix="nw-drill-", dir=os.environ.get("TMPDIR")) as tmp:
        result = asyncio.run(drill(args, Path(tmp)))
    print(json.dumps(result, indent=2))
    if args.record:
        command = "python bench/outage_drill.py --record"
        defaults = {"rate": 5000, "duration": 300.0, "steady": 60.0, "outage": 180.0}
        for name, default in defaults.items():
            if getattr(args, name) != default:
                command = command.replace(" --record", f" --{name} {getattr(args, name):g} --record")

        def secs(value: float | None) -> str:
            return "not reached" if value is None else f"{value:.1f} s"

        drain = secs(result["drain_s"])
        if result["drain_backlog_pts_s"]:
            drain += f" ({result['backlog_at_restart_points']:,} pts, {result['drain_backlog_pts_s']:,} pts/s)"
        row = (
            f"| {dt.date.today().isoformat()} | {args.rate:,} pts/s for {args.duration:g} s "
            f"({result['achieved_pts_s']:,.0f} achieved) | {result['influxd_stopped_s']:g} s | "
            f"{result['generated']:,} | {result['lost']:,} | {result['peak_spool_mib']:g} MiB "
            f"({result['peak_spool_points']:,} pts) | {result['peak_rss_mib']:g} MiB | "
            f"{secs(result['fresh_visible_s'])} | {drain} | {result['cpu_s']:g} CPU-s | `{command}` |"
        )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


if __name__ == "__main__":
    main()
