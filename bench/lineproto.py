"""Line-protocol encoding speed: netwatch's LineEncoder vs influxdb-client's Point, same samples.

Builds the samples a city's polls produce (``--devices`` switches with ``--ports`` ports each;
``interface`` samples carry 5 tags and 11 fields, ``ping`` samples 3 tags and 8 fields) for
``--polls`` consecutive polls with fresh values and timestamps, then turns every sample into a
line on one core with:

* ``netwatch``: :class:`netwatch.sink.lineproto.LineEncoder` as the sink runs it (its caches of
  escaped tag sets and field keys warm up on the first poll and stay warm, as in the daemon);
* ``netwatch, no cache``: the same encoder with ``cache_size=0`` (every series seen for the first
  time: the worst case);
* ``influxdb-client Point``: ``Point(m).tag(..).field(..).time(ns).to_line_protocol()`` per
  sample, what a sink built on influxdb-client would do.

CPU time is this process's ``process_time`` (one thread); each case runs ``--repeat`` times and
the median counts. Results are printed as JSON; ``--record`` appends rows to the "Line protocol
encoding" section of BENCHMARKS.md.

    .venv/bin/python bench/lineproto.py --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from influxdb_client import Point, WritePrecision
from record import append_rows

from netwatch.model import Sample
from netwatch.sink.lineproto import LineEncoder

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Line protocol encoding (bench/lineproto.py)"
INTRO = """
Samples turned into line protocol per CPU-second on one core (higher is better), same samples for
every encoder: `interface` (5 tags, 11 fields) and `ping` (3 tags, 8 fields), a city of switches
polled repeatedly with fresh values. netwatch: LineEncoder as the sink runs it (caches warm after
the first poll); "no cache": every series new (worst case); Point: influxdb-client's
`Point(...).to_line_protocol()`. Median of the repeats. Point also writes the wrong type where a
probe gives an int for a float field (`in_bps=0i`), which InfluxDB then rejects as a conflict.
"""
TABLE_HEAD = "| date | workload | netwatch | netwatch, no cache | influxdb-client Point | netwatch ÷ Point | command |"
ALIGN = "|---|---|---:|---:|---:|---:|---|"


def build_samples(devices: int, ports: int, polls: int) -> dict[str, list[Sample]]:
    """Return the interface and ping samples of ``polls`` polls of a simulated city."""
    interface: list[Sample] = []
    ping: list[Sample] = []
    t0 = 1_763_800_000_000_000_000
    for poll in range(polls):
        ts = t0 + poll * 30_000_000_000
        for d in range(devices):
            device, site = f"sw-{d:04d}", f"site-{d // 4:03d}"
            for p in range(ports):
                uplink = p >= ports - 2
                tags = {
                    "device": device,
                    "site": site,
                    "port": f"Gi1/0/{p + 1}",
                    "link": f"span-{d:04d}-{p}" if uplink else "",
                    "lessee": "Pasadena Unified" if uplink and d % 3 == 0 else "",
                }
                load = (d * 7 + p * 13 + poll * 29) % 1000
                fields: dict[str, int | float] = {
                    "oper_up": 1,
                    "admin_up": 1,
                    "speed_bps": 10_000_000_000 if uplink else 1_000_000_000,
                    "in_bps": load * 1234.5678,
                    "out_bps": load * 987.654321,
                    "in_util_pct": load / 10.0,
                    "out_util_pct": load / 12.5,
                    "in_errors_ps": 0.0 if load % 5 else 0.0333,
                    "out_errors_ps": 0.0,
                    "in_discards_ps": load / 1000.0,
                    "out_discards_ps": 0 if load % 2 else 0.5,  # probes give int 0 at times
                }
                interface.append(Sample("interface", tags, fields, ts + d * 1000 + p))
            rtt = 0.4 + ((d + poll) % 50) / 10.0
            ping.append(
                Sample(
                    "ping",
                    {"device": device, "site": site, "kind": "switch"},
                    {
                        "up": 1,
                        "rtt_min_ms": rtt * 0.9,
                        "rtt_avg_ms": rtt,
                        "rtt_max_ms": rtt * 1.3,
                        "jitter_ms": rtt / 7,
                        "loss_pct": 0.0,
                        "sent": 3,
                        "received": 3,
                    },
                    ts + d * 1000,
                )
            )
    return {"interface": interface, "ping": ping}


def with_netwatch(samples: Sequence[Sample]) -> list[str]:
    return LineEncoder().encode_many(samples)


def with_netwatch_uncached(samples: Sequence[Sample]) -> list[str]:
    return LineEncoder(cache_size=0).encode_many(samples)


def with_point(samples: Sequence[Sample]) -> list[str]:
    lines = []
    ns = WritePrecision.NS
    for s in samples:
        point = Point(s.measurement)
        for k, v in s.tags.items():
            point.tag(k, v)
        for k, v in s.fields.items():
            point.field(k, v)
        point.time(s.time_ns, ns)
        lines.append(point.to_line_protocol())
    return lines


ENCODERS: dict[str, Callable[[Sequence[Sample]], list[str]]] = {
    "netwatch": with_netwatch,
    "netwatch, no cache": with_netwatch_uncached,
    "influxdb-client Point": with_point,
}


def measure(encode: Callable[[Sequence[Sample]], list[str]], samples: Sequence[Sample], repeat: int) -> float:
    """Return the median CPU seconds ``encode`` needs for all samples."""
    times = []
    for _ in range(repeat):
        gc.collect()
        c0 = time.process_time()
        lines = encode(samples)
        times.append(time.process_time() - c0)
        assert len(lines) == len(samples), (len(lines), len(samples))
    return statistics.median(times)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def record(results: list[dict[str, Any]], command: str, devices: int, ports: int, polls: int) -> None:
    """Append this run's rows to the line-protocol section of BENCHMARKS.md (creating it if needed)."""
    rows = []
    for workload in ("interface", "ping"):
        rate = {r["encoder"]: r["points_per_s"] for r in results if r["workload"] == workload}
        n = next(r["points"] for r in results if r["workload"] == workload)
        ratio = rate["netwatch"] / rate["influxdb-client Point"]
        cells = " | ".join(f"{rate[e]:,.0f} pts/s" for e in ENCODERS)
        what = f"{workload}, {n:,} samples ({devices} devices × {ports} ports, {polls} polls)"
        if workload == "ping":
            what = f"ping, {n:,} samples ({devices} devices, {polls} polls)"
        rows.append(f"| {dt.date.today().isoformat()} | {what} | {cells} | {ratio:.1f}× | `{command}` |")
    append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--ports", type=int, default=24)
    parser.add_argument("--polls", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the figures to BENCHMARKS.md")
    args = parser.parse_args(argv)

    workloads = build_samples(args.devices, args.ports, args.polls)
    results = []
    for workload, samples in workloads.items():
        for name, encode in ENCODERS.items():
            cpu_s = measure(encode, samples, args.repeat)
            result = {
                "bench": "lineproto",
                "workload": workload,
                "encoder": name,
                "points": len(samples),
                "cpu_s": round(cpu_s, 4),
                "points_per_s": round(len(samples) / cpu_s),
                "us_per_point": round(cpu_s / len(samples) * 1e6, 3),
            }
            results.append(result)
            print(json.dumps(result), flush=True)
    print(
        json.dumps(
            {
                "bench": "lineproto",
                "date": dt.date.today().isoformat(),
                "python": platform.python_version(),
                "cpu": cpu_model(),
                "speedup_vs_point": {
                    w: round(
                        next(r["points_per_s"] for r in results if r["workload"] == w and r["encoder"] == "netwatch")
                        / next(
                            r["points_per_s"]
                            for r in results
                            if r["workload"] == w and r["encoder"] == "influxdb-client Point"
                        ),
                        2,
                    )
                    for w in workloads
                },
            }
        )
    )
    if args.record:
        flags = [a for a in (argv if argv is not None else sys.argv[1:])]
        record(results, " ".join(["python bench/lineproto.py", *flags]), args.devices, args.ports, args.polls)


if __name__ == "__main__":
    main()
