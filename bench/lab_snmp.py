"""SNMP polling cost against the lab's own agents: netwatch's SnmpProbe vs Prometheus snmp_exporter.

A lab of ``--devices`` switches (``netwatch lab generate --mix switches``) runs as its own
process (``netwatch lab run --no-panels``: one UDP socket per device in one Python process, the
lab's hand-written BER agent). Then, for ``--seconds`` each, polling every device round-robin
with ``--concurrency`` in flight:

* netwatch: one SnmpProbe per device (v2c, the device's ports from the lab, optics off: IF-MIB
  only), one shared engine, ``check()`` as the scheduler calls it; CPU = this process's
  ``process_time`` (nothing else runs in it meanwhile). Varbinds = OIDs GET per poll.
* snmp_exporter (Debian ``prometheus-snmp-exporter``): an IF-MIB module that walks the same ten
  columns netwatch GETs per port (ifAdmin/OperStatus, ifHighSpeed, ifHC{In,Out}Octets,
  if{In,Out}{Errors,Discards}, ifCounterDiscontinuityTime) plus sysUpTime, scraped once per
  device (``/snmp?module=if_lab&target=ADDR:PORT``); CPU = the exporter's own (/proc), the
  scraping client's apart. Varbinds = samples of those OIDs in the scrape.

The lab's CPU (the agents' side) is measured over each case too, per 1,000 varbinds.

    python bench/lab_snmp.py [--devices 300] [--seconds 20] [--concurrency 16] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr
from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.common import free_port  # noqa: E402

from netwatch.lab.generate import dump, generate  # noqa: E402
from netwatch.lab.spec import load_lab  # noqa: E402
from netwatch.model import PortRef, Target  # noqa: E402
from netwatch.probes.base import ProbeResources  # noqa: E402
from netwatch.probes.snmp import SnmpConfig, SnmpProbe  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTION = "## SNMP polling on the lab city (bench/lab_snmp.py)"
INTRO = """
CPU-seconds per 1,000 varbinds (lower is better) polling every switch of a `lab generate --mix
switches` lab round-robin, v2c, IF-MIB only (10 objects per port + sysUpTime; optics off), same
agents, same run, 2 cores shared by everything. netwatch: SnmpProbe per device (GETs), this
process's CPU. snmp_exporter: a module walking the same 10 ifTable/ifXTable columns (GETBULK) +
sysUpTime, one scrape per device, the exporter's CPU (varbinds = samples returned). Agent = the
`netwatch lab run` process (all agents in one Python process), its CPU per 1,000 varbinds served.
""".strip()
TABLE_HEAD = (
    "| date | setup | netwatch CPU-s/1k vb (vb/s) | snmp_exporter CPU-s/1k vb (vb/s) | "
    "lab agent CPU-s/1k vb (netwatch / exporter) | failed polls (nw / exp) | command |"
)
ALIGN = "|---|---|---:|---:|---|---|---|"
COLUMNS = {
    "ifAdminStatus": "1.3.6.1.2.1.2.2.1.7",
    "ifOperStatus": "1.3.6.1.2.1.2.2.1.8",
    "ifInDiscards": "1.3.6.1.2.1.2.2.1.13",
    "ifInErrors": "1.3.6.1.2.1.2.2.1.14",
    "ifOutDiscards": "1.3.6.1.2.1.2.2.1.19",
    "ifOutErrors": "1.3.6.1.2.1.2.2.1.20",
    "ifHCInOctets": "1.3.6.1.2.1.31.1.1.1.6",
    "ifHCOutOctets": "1.3.6.1.2.1.31.1.1.1.10",
    "ifHighSpeed": "1.3.6.1.2.1.31.1.1.1.15",
    "ifCounterDiscontinuityTime": "1.3.6.1.2.1.31.1.1.1.19",
}


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def exporter_config(community: str) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = [{"name": "sysUpTime", "oid": "1.3.6.1.2.1.1.3", "type": "gauge", "help": "uptime"}]
    for name, oid in COLUMNS.items():
        kind = (
            "gauge"
            if name in ("ifAdminStatus", "ifOperStatus", "ifHighSpeed", "ifCounterDiscontinuityTime")
            else "counter"
        )
        metrics.append(
            {
                "name": name,
                "oid": oid,
                "type": kind,
                "help": name,
                "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
            }
        )
    module = {
        "version": 2,
        "auth": {"community": community},
        "get": ["1.3.6.1.2.1.1.3.0"],
        "walk": list(COLUMNS.values()),
        "metrics": metrics,
    }
    return {"if_lab": module}


class Exporter:
    def __init__(self, workdir: Path, community: str) -> None:
        binary = shutil.which("prometheus-snmp-exporter")
        if binary is None:
            sys.exit("prometheus-snmp-exporter is not installed")
        config = workdir / "snmp.yml"
        config.write_text(json.dumps(exporter_config(community), indent=1))
        self.port = free_port(socket.SOCK_STREAM)
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "exporter.log").open("w"),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("snmp_exporter did not start: " + (workdir / "exporter.log").read_text()[-500:])
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _result(
    name: str, polls: int, failed: int, varbinds: int, wall: float, cpu: float, lab_cpu: float
) -> dict[str, Any]:
    return {
        "case": name,
        "polls": polls,
        "failed": failed,
        "varbinds": varbinds,
        "wall_s": round(wall, 2),
        "varbinds_per_s": round(varbinds / wall) if wall else 0,
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1000_varbinds": round(cpu / varbinds * 1000, 4) if varbinds else None,
        "lab_cpu_s": round(lab_cpu, 3),
        "lab_cpu_s_per_1000_varbinds": round(lab_cpu / varbinds * 1000, 4) if varbinds else None,
    }


async def bench_netwatch(
    targets: list[Target], snmp_port: int, community: str, lab_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    cfg = SnmpConfig.model_validate(
        {
            "version": "2c",
            "port": snmp_port,
            "community_file": SecretStr(community),
            "timeout": 2.0,
            "retries": 1,
            "optics": False,
        }
    )
    resources = ProbeResources()
    probes = [SnmpProbe(t, cfg, resources) for t in targets]
    try:
        slots = asyncio.Semaphore(args.concurrency)

        async def warm(p: SnmpProbe) -> None:
            async with slots:
                outcome = await p.check()
                if not outcome.up:
                    raise RuntimeError(f"warm-up poll failed: {outcome.reason}: {outcome.detail}")

        await asyncio.gather(*(warm(p) for p in probes))  # discovery walks, not measured
        per_poll = {id(p): 1 + sum(len(port.oids()) for port in p._ports.values()) for p in probes}
        stats = {"polls": 0, "failed": 0, "varbinds": 0}
        order = itertools.cycle(probes)
        stop_at = time.perf_counter() + args.seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                p = next(order)
                outcome = await p.check()
                if outcome.up:
                    stats["polls"] += 1
                    stats["varbinds"] += per_poll[id(p)]
                else:
                    stats["failed"] += 1

        c0, l0, t0 = time.process_time(), proc_cpu(lab_pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall, cpu, lab_cpu = time.perf_counter() - t0, time.process_time() - c0, proc_cpu(lab_pid) - l0
    finally:
        await resources.aclose()
    return _result("netwatch SnmpProbe v2c", stats["polls"], stats["failed"], stats["varbinds"], wall, cpu, lab_cpu)


async def bench_exporter(
    targets: list[Target], snmp_port: int, exporter: Exporter, lab_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{exporter.port}/snmp?module=if_lab&target="
    names = ("sysUpTime", *COLUMNS)
    stats = {"polls": 0, "failed": 0, "varbinds": 0}

    def count(body: str) -> int:
        return sum(1 for line in body.splitlines() if line and not line.startswith("#") and line.startswith(names))

    async with aiohttp.ClientSession() as session:
        async with session.get(base + f"{targets[0].address}:{snmp_port}") as resp:
            body = await resp.text()
            if resp.status != 200 or not count(body):
                sys.exit(f"snmp_exporter scrape failed ({resp.status}): {body[:500]}")
        order = itertools.cycle(targets)
        stop_at = time.perf_counter() + args.seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                t = next(order)
                async with session.get(base + f"{t.address}:{snmp_port}") as resp:
                    body = await resp.text()
                    n = count(body)
                    # a failed walk still answers 200 with snmp_scrape_* only; count it as failed
                    if resp.status == 200 and n:
                        stats["polls"] += 1
                        stats["varbinds"] += n
                    else:
                        stats["failed"] += 1

        c0, e0, l0, t0 = time.process_time(), proc_cpu(exporter.proc.pid), proc_cpu(lab_pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - t0
        cpu, lab_cpu, client = proc_cpu(exporter.proc.pid) - e0, proc_cpu(lab_pid) - l0, time.process_time() - c0
    result = _result("snmp_exporter v2c", stats["polls"], stats["failed"], stats["varbinds"], wall, cpu, lab_cpu)
    result["scrape_client_cpu_s"] = round(client, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300, help="lab size (switches and a few ring routers)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per case")
    parser.add_argument("--concurrency", type=int, default=16, help="polls / scrapes in flight")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nw-labsnmp-") as tmp:
        work = Path(tmp)
        data = generate(args.devices, mix="switches", network="127.78.0.0/16")
        data["lab"] |= {
            "snmp_port": free_port(socket.SOCK_DGRAM),
            "control": f"127.0.0.1:{free_port()}",
            "trap_port": free_port(socket.SOCK_DGRAM),
            "http_port": free_port(),
            "rtsp_port": free_port(),
            "mqtt_port": free_port(),
        }
        lab_file = work / "lab.yaml"
        lab_file.write_text(dump(data, args.devices, "switches"))
        lab = load_lab(lab_file)
        s = lab.spec.lab
        ports: dict[str, list[str]] = {d.id: list(d.ports) for d in lab.spec.devices}
        for link in lab.spec.links:
            for end in (link.a, link.b):
                if end.port not in ports[end.device]:
                    ports[end.device].append(end.port)
        targets = [
            Target(d.id, d.site, d.kind, lab.addresses[d.id], tuple(PortRef(p) for p in ports[d.id]))
            for d in lab.spec.devices
        ]
        exe = str(Path(sys.executable).parent / "netwatch")
        log = work / "lab.log"
        proc = subprocess.Popen(
            [exe, "lab", "run", str(lab_file), "--no-panels", "--workdir", str(work / "labwork")],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        exporter = None
        try:
            deadline = time.monotonic() + 120
            while b"lab running" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("lab did not start: " + log.read_text()[-1500:])
                time.sleep(0.2)
            results.append(asyncio.run(bench_netwatch(targets, s.snmp_port, s.community, proc.pid, args)))
            print(json.dumps(results[-1]), file=sys.stderr)
            exporter = Exporter(work, s.community)
            results.append(asyncio.run(bench_exporter(targets, s.snmp_port, exporter, proc.pid, args)))
            print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            if exporter is not None:
                exporter.stop()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    port_count = sum(len(t.ports) for t in targets)
    summary = {"bench": "lab_snmp", "devices": args.devices, "ports": port_count, "results": results}
    print(json.dumps(summary, indent=2))
    if args.record:
        nw, ex = results
        cmd = "python bench/lab_snmp.py " + " ".join(sys.argv[1:])
        setup = f"{args.devices} lab devices ({port_count} ports), conc {args.concurrency}, {args.seconds:g} s each"
        row = (
            f"| {dt.date.today()} | {setup} | {nw['cpu_s_per_1000_varbinds']:.3f} ({nw['varbinds_per_s']:,}) | "
            f"{ex['cpu_s_per_1000_varbinds']:.3f} ({ex['varbinds_per_s']:,}) | "
            f"{nw['lab_cpu_s_per_1000_varbinds']:.3f} / {ex['lab_cpu_s_per_1000_varbinds']:.3f} | "
            f"{nw['failed']} / {ex['failed']} | `{cmd}` |"
        )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


if __name__ == "__main__":
    main()
