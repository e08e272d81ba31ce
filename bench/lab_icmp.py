"""ICMP sweep over loopback targets: netwatch's ping probe vs fping, same targets, same run.

``--targets`` (default 1,000) addresses in 127.88.0.0/16 (every 127/8 address answers; no lab
needed). netwatch: PingProbe (src/netwatch/probes/ping.py) on each target, as the scheduler runs
checks (at most ``--max-in-flight`` at once, the daemon's default 256), in a child process of its
own so its CPU is its own: the sweep's CPU (getrusage in the child around the sweep, imports
excluded) and the whole child's (getrusage of children, interpreter start-up included). fping:
``fping -c COUNT -q -i INTERVAL_MS -f LIST`` (Debian fping), CPU from getrusage of children.
Each round runs both, alternating which goes first; the median round is reported.

    python bench/lab_icmp.py [--targets 1000] [--count 1] [--rounds 3] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTION = "## ICMP sweep (bench/lab_icmp.py)"
INTRO = """
One sweep = one echo round (`--count`) to every target, 127.88.x.y loopback addresses (they all
answer), 2 cores shared by everything. netwatch: `PingProbe` per target with at most 256 checks in
flight (the scheduler's default), wait 1 s, spacing 100 ms, in a child process; CPU = the sweep
(getrusage around it), total = the child process with interpreter start-up and imports. fping:
`fping -c COUNT -q -i 1 -f LIST`, CPU of the child. Median of the rounds; hosts/s = targets / wall.
netwatch runs as root, so icmplib uses raw sockets: every open raw socket sees every reply.
""".strip()
TABLE_HEAD = (
    "| date | targets × echoes | netwatch hosts/s | netwatch CPU (sweep / process) | fping hosts/s | "
    "fping CPU | answered (netwatch / fping) | command |"
)
ALIGN = "|---|---:|---:|---:|---:|---:|---|---|"


def targets(n: int) -> list[str]:
    net = ipaddress.IPv4Network("127.88.0.0/16")
    hosts = net.hosts()
    return [str(next(hosts)) for _ in range(n)]


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def worker(args: argparse.Namespace) -> None:
    """The netwatch side, in its own process: ping every target as the scheduler would."""
    from netwatch.model import Target
    from netwatch.probes.ping import PingConfig, PingProbe

    cfg = PingConfig(count=args.count, spacing=0.1, wait=1.0)
    probes = [PingProbe(Target(f"d{i}", "s", "switch", a), cfg) for i, a in enumerate(targets(args.targets))]

    async def sweep() -> int:
        slots = asyncio.Semaphore(args.max_in_flight)

        async def one(p: PingProbe) -> bool:
            async with slots:
                return (await asyncio.wait_for(p.check(), timeout=5.0)).up

        return sum(await asyncio.gather(*(one(p) for p in probes)))

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    up = asyncio.run(sweep())
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "up": up}))


def run_netwatch(args: argparse.Namespace) -> dict[str, Any]:
    c0 = cpu_children()
    t0 = time.monotonic()
    cmd = [sys.executable, __file__, "--worker", "--targets", str(args.targets), "--count", str(args.count)]
    cmd += ["--max-in-flight", str(args.max_in_flight)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    total_wall = time.monotonic() - t0
    doc = json.loads(out.strip().splitlines()[-1])
    return {
        "hosts_per_s": args.targets / doc["wall_s"],
        "wall_s": doc["wall_s"],
        "cpu_s": doc["cpu_s"],
        "process_cpu_s": cpu_children() - c0,
        "process_wall_s": total_wall,
        "answered": doc["up"],
    }


def run_fping(args: argparse.Namespace, listing: Path) -> dict[str, Any]:
    c0 = cpu_children()
    t0 = time.monotonic()
    cmd = ["fping", "-c", str(args.count), "-q", "-i", str(args.fping_interval), "-t", "1000", "-f", str(listing)]
    proc = subprocess.run(cmd, capture_output=True, text=True)  # exit 1 when some host did not answer
    wall = time.monotonic() - t0
    answered = len(re.findall(r"xmt/rcv/%loss = \d+/[1-9]\d*/", proc.stderr))
    return {"hosts_per_s": args.targets / wall, "wall_s": wall, "cpu_s": cpu_children() - c0, "answered": answered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--count", type=int, default=1, help="echo requests per target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-in-flight", type=int, default=256, help="netwatch: checks at once")
    parser.add_argument("--fping-interval", type=int, default=1, help="fping -i (ms between packets)")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nw-icmp-") as tmp:
        listing = Path(tmp) / "targets"
        listing.write_text("\n".join(targets(args.targets)) + "\n")
        for i in range(args.rounds):
            if i % 2 == 0:
                nw, fp = run_netwatch(args), run_fping(args, listing)
            else:
                fp, nw = run_fping(args, listing), run_netwatch(args)
            rounds.append({"netwatch": nw, "fping": fp})
            print(json.dumps(rounds[-1]), file=sys.stderr)

    def med(side: str, key: str) -> float:
        return float(statistics.median(r[side][key] for r in rounds))

    result = {
        "bench": "lab_icmp",
        "targets": args.targets,
        "count": args.count,
        "rounds": args.rounds,
        "netwatch": {
            k: round(med("netwatch", k), 3)
            for k in ("hosts_per_s", "wall_s", "cpu_s", "process_cpu_s", "process_wall_s", "answered")
        },
        "fping": {k: round(med("fping", k), 3) for k in ("hosts_per_s", "wall_s", "cpu_s", "answered")},
        "per_round": rounds,
    }
    print(json.dumps(result, indent=2))
    if args.record:
        n, f = result["netwatch"], result["fping"]
        cmd = "python bench/lab_icmp.py " + " ".join(sys.argv[1:])
        row = (
            f"| {dt.date.today()} | {args.targets:,} × {args.count} | {n['hosts_per_s']:,.0f} | "
            f"{n['cpu_s']:.2f} / {n['process_cpu_s']:.2f} CPU-s | {f['hosts_per_s']:,.0f} | {f['cpu_s']:.2f} CPU-s | "
            f"{n['answered']:.0f} / {f['answered']:.0f} | `{cmd}` |"
        )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


if __name__ == "__main__":
    main()
