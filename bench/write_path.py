"""Write path: points per second from observation to InfluxDB, beside influxd's own ceiling.

netwatch: realistic samples (1 in 5 `ping`, the rest `interface`, each point with a timestamp of
its own) go through the daemon's `Pipeline.emit` (sink + the built-in alert rules, as every probe
result does) in bursts of `--burst` samples, as fast as the event loop takes them; the sink commits
each to the durable spool and writes batches of 5,000 to influxd 1.6 on loopback. Measured: from
the first emit until InfluxQL counts every point (polled every 100 ms), points/s end to end; this
process's CPU over that time, and influxd's. The peer, in the same run against a fresh database:
the same points as line protocol POSTed straight to /write in batches of 5,000 with 4 requests in
flight (no spool, no rules): what influxd itself takes on this machine.

    python bench/write_path.py [--points 200000] [--burst 500] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.outage_drill import COUNT_FIELD, Generator, cpu_s, proc_cpu_s
from bench.record import append_rows
from tests.servers.influx import InfluxdServer

from netwatch.config import load_config
from netwatch.daemon import Pipeline, open_alerting
from netwatch.logs import configure as configure_logs
from netwatch.sink.influx import InfluxConfig, InfluxSink
from netwatch.sink.lineproto import LineEncoder
from netwatch.sink.spool import SqliteSpool

SECTION = "## Write path (bench/write_path.py)"
INTRO = """
From observation to InfluxDB: synthetic samples (1 in 5 `ping`, the rest `interface`, own
timestamps) through the daemon's `Pipeline.emit` (the sink, which commits every point to the
durable spool before it counts, and the built-in alert rules) in bursts, as fast as the loop takes
them; batches of 5,000 to influxd 1.6 on loopback. Points/s = points / time from the first emit
until InfluxQL counts them all. Peer in the same run: the same points as line protocol POSTed
straight to /write (batches of 5,000, 4 in flight, no spool, no rules), influxd's own ceiling here.
CPU: this process (netwatch's side, generator included) and influxd, over each phase.
"""
TABLE_HEAD = (
    "| date | points | netwatch points/s | netwatch CPU-s (influxd) | direct /write points/s "
    "| direct CPU-s (influxd) | command |"
)
ALIGN = "|---|---:|---:|---:|---:|---:|---|"


async def counted(influx: InfluxdServer, db: str) -> int:
    total = 0
    for measurement, field in COUNT_FIELD.items():
        rows = await asyncio.to_thread(influx.series, f'SELECT count("{field}") FROM "{measurement}"', db=db)
        total += int(rows[0]["values"][0][1]) if rows else 0
    return total


async def wait_count(influx: InfluxdServer, db: str, want: int, limit_s: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < limit_s:
        if await counted(influx, db) >= want:
            return loop.time()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{db}: fewer than {want} points after {limit_s:g}s")


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    binary = shutil.which("influxd") or shutil.which("influxd", path="/usr/sbin:/usr/bin") or "influxd"
    (work / "influx").mkdir()
    influx = InfluxdServer(binary=binary, workdir=work / "influx")
    await asyncio.to_thread(influx.start)
    try:
        influx.execute('CREATE DATABASE "netwatch"')
        influx.execute('CREATE DATABASE "direct"')
        config = work / "netwatch.yaml"
        config.write_text(
            f"state_dir: {work / 'state'}\nsites: [{{id: hq, name: HQ}}]\n"
            "devices: [{id: r1, site: hq, kind: router, address: 127.0.0.1, checks: []}]\n"
        )
        loaded = load_config(config)
        gen = Generator()
        bursts = [gen.tick(args.burst) for _ in range(args.points // args.burst)]
        total = sum(len(b) for b in bursts)
        cfg = InfluxConfig.model_validate(
            {"url": influx.url, "database": "netwatch", "flush_interval": 1.0, "batch_size": 5000}
        )
        spool = SqliteSpool(work / "state" / "spool.db", max_bytes=4 << 30)

        loop = asyncio.get_running_loop()
        async with InfluxSink(cfg, instance="bench", buffer=spool) as sink, contextlib.AsyncExitStack() as stack:
            alerts, _ = await open_alerting(loaded, sink, stack)
            pipeline = Pipeline(loaded, sink, alerts)
            cpu0, influx0, t0 = cpu_s(), proc_cpu_s(influx.proc.pid), loop.time()
            for burst in bursts:
                pipeline.emit(burst)
                await asyncio.sleep(0)  # let the sink flush between bursts, as between probe results
            done = await wait_count(influx, "netwatch", total, args.limit)
            nw = {"s": done - t0, "cpu": cpu_s() - cpu0, "influxd_cpu": proc_cpu_s(influx.proc.pid) - influx0}

        lines = LineEncoder().encode_many(s for burst in bursts for s in burst)
        batches = ["\n".join(lines[i : i + 5000]).encode() for i in range(0, len(lines), 5000)]
        gate = asyncio.Semaphore(4)
        async with aiohttp.ClientSession() as session:
            write = f"{influx.url}/write"

            async def post(body: bytes) -> None:
                params = {"db": "direct", "precision": "ns"}
                async with gate, session.post(write, params=params, data=body) as r:
                    assert r.status == 204, await r.text()

            cpu0, influx0, t0 = cpu_s(), proc_cpu_s(influx.proc.pid), loop.time()
            await asyncio.gather(*(post(b) for b in batches))
            done = await wait_count(influx, "direct", total, args.limit)
            direct = {"s": done - t0, "cpu": cpu_s() - cpu0, "influxd_cpu": proc_cpu_s(influx.proc.pid) - influx0}
    finally:
        await asyncio.to_thread(influx.stop)
    return {
        "points": total,
        "netwatch": {**nw, "points_per_s": total / nw["s"]},
        "direct": {**direct, "points_per_s": total / direct["s"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--limit", type=float, default=300.0, help="give up waiting for InfluxDB after this")
    parser.add_argument("--record", action="store_true", help="append a row to BENCHMARKS.md")
    args = parser.parse_args()
    configure_logs("warning", "json")
    with tempfile.TemporaryDirectory(prefix="nw-write-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result, indent=2))
    if args.record:
        nw, direct = result["netwatch"], result["direct"]
        command = f"python bench/write_path.py --points {args.points} --burst {args.burst} --record"
        row = (
            f"| {dt.date.today()} | {result['points']:,} | {nw['points_per_s']:,.0f} "
            f"| {nw['cpu']:.1f} ({nw['influxd_cpu']:.1f}) | {direct['points_per_s']:,.0f} "
            f"| {direct['cpu']:.1f} ({direct['influxd_cpu']:.1f}) | `{command}` |"
        )
        append_rows(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


if __name__ == "__main__":
    main()
