"""CPU cost of netwatch's SNMP poll, side by side with Prometheus snmp_exporter, same agent, same OIDs.

Starts one snmpd on a free loopback UDP port (by default serving a simulated 8-port switch from
``netwatch.lab.snmpagent``; ``--agent host`` serves this machine's own interfaces instead), then
for v2c and for v3 authPriv (SHA/AES-128):

* netwatch: ``--concurrency`` SnmpProbe instances (one shared SnmpEngine, default config:
  40 OIDs per request) call ``check()`` back to back; CPU is this process's ``process_time``.
* snmp_exporter: Debian's ``prometheus-snmp-exporter`` on 127.0.0.1 with a hand-written module
  that GETs exactly the OIDs one netwatch poll GETs; ``--concurrency`` aiohttp clients scrape
  it; CPU is the exporter's, from ``/proc/<pid>/stat`` (the scraping client's is listed apart).

Each case runs ``--seconds`` (and at most ``--max-polls`` polls) after a warm-up that covers
netwatch's discovery walks. Results are printed as JSON lines; ``--record`` appends a row to
the "SNMP polling" section of BENCHMARKS.md. Loopback only; nothing is left running.

    .venv/bin/python bench/snmp_poll.py --seconds 10 --record
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr
from record import append_rows

from netwatch.model import PortRef, Target
from netwatch.probes.base import ProbeResources
from netwatch.probes.snmp import SnmpConfig, SnmpProbe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.common import free_port, stop  # noqa: E402
from tests.servers.snmpd import AUTH_KEY, COMMUNITY, PRIV_KEY, V3_USERS, snmpd_config, start_snmpd  # noqa: E402

USER = next(u.name for u in V3_USERS if (u.snmpd_auth, u.snmpd_priv) == ("SHA", "AES"))  # authPriv SHA/AES-128
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTION = "## SNMP polling (bench/snmp_poll.py)"
INTRO = """
CPU-seconds per 1,000 varbinds (lower is better; varbinds/s in brackets) for the OIDs of one
poll (sysUpTime + 10 IF-MIB objects per port): netwatch's SnmpProbe vs Prometheus snmp_exporter
GETting the same OIDs from the same snmpd on loopback, 2 cores shared by everything.
netwatch: this process's CPU. Exporter: its own CPU (the scraping client's is in the JSON).
v3 is authPriv SHA/AES-128. Agent `lab`: snmpd serving netwatch.lab.snmpagent (pass_persist);
`host`: snmpd's own interfaces. The agent's cost is not in these figures (it is in the JSON).
"""
TABLE_HEAD = "| date | setup | netwatch v2c | netwatch v3 | snmp_exporter v2c | snmp_exporter v3 | command |"
ALIGN = "|---|---|---:|---:|---:|---:|---|"


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU of a process and its live children (snmpd and its pass_persist agents)."""
    total = proc_cpu(pid)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(proc_cpu(int(c)) for c in children)
    return total


def lab_state(ports: int) -> dict[str, Any]:
    """A switch with ``ports`` 10G ports moving 1 Gb/s each way, so counters change between polls."""
    interfaces = [
        {
            "index": 100 + n,
            "name": f"xe-0/0/{n}",
            "speed_mbps": 10_000,
            "admin": 1,
            "oper": 1,
            "in_octets_per_s": 125_000_000,
            "out_octets_per_s": 125_000_000,
            "in_errors_per_s": 1,
        }
        for n in range(1, ports + 1)
    ]
    return {
        "epoch": time.time(),
        "system": {"name": "bench-switch", "uptime_s": 10_000},
        "interfaces": interfaces,
    }


@contextmanager
def snmpd(workdir: Path, agent: str, ports: int) -> Iterator[tuple[int, int, list[str]]]:
    """Run snmpd; yield (udp port, pid, port names to poll).

    ``lab``: the test suite's snmpd (tests/servers/snmpd.py) with the simulated switch of
    :func:`lab_state`. ``host``: the same configuration without the pass_persist agent, and without
    ``snmpagent.snmpd_args()``, so snmpd answers from its own system and interface modules.
    """
    if agent == "lab":
        server = start_snmpd(workdir / "snmpd")
        server.state = lab_state(ports)
        server.write()
        try:
            yield server.port, server.proc.pid, [f"xe-0/0/{n}" for n in range(1, ports + 1)]
        finally:
            stop(server.proc)
        return
    binary = shutil.which("snmpd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if binary is None:
        sys.exit("snmpd is not installed: run scripts/setup.sh (or apt-get install snmpd)")
    port = free_port(socket.SOCK_DGRAM)
    lines = snmpd_config(port, workdir / "device.json").splitlines()
    conf = workdir / "snmpd.conf"
    conf.write_text("\n".join(line for line in lines if not line.startswith("pass_persist ")) + "\n")
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(workdir / "persist"))
    log = workdir / "snmpd.log"
    proc = subprocess.Popen(
        [binary, "-f", "-Lf", str(log), "-C", "-c", str(conf), "-M", "/nonexistent", "-m", ""],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while "NET-SNMP version" not in _read(log):
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"snmpd did not start: {_read(log)[-500:]}")
            time.sleep(0.02)
        yield port, proc.pid, sorted(os.listdir("/sys/class/net"))[:ports]
    finally:
        stop(proc)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def probe_config(version: str, port: int) -> SnmpConfig:
    values: dict[str, Any] = {"version": version, "port": port, "timeout": 2.0, "retries": 0, "optics": False}
    if version == "2c":
        values["community_file"] = SecretStr(COMMUNITY)
    else:
        values |= {
            "user": USER,
            "security_level": "authPriv",
            "auth_protocol": "SHA",
            "auth_key_file": SecretStr(AUTH_KEY),
            "priv_protocol": "AES",
            "priv_key_file": SecretStr(PRIV_KEY),
        }
    return SnmpConfig.model_validate(values)


def poll_oids(probe: SnmpProbe) -> list[str]:
    """The OIDs one steady-state poll GETs (sysUpTime + per port), as the exporter should GET them."""
    oids = ["1.3.6.1.2.1.1.3.0"]
    for port in probe._ports.values():
        oids += [".".join(map(str, oid)) for oid in port.oids().values()]
    return oids


async def bench_netwatch(
    version: str,
    snmp_port: int,
    snmpd_pid: int,
    names: list[str],
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[str]]:
    target = Target("bench", "lab", "switch", "127.0.0.1", tuple(PortRef(n) for n in names))
    resources = ProbeResources()
    probes = [SnmpProbe(target, probe_config(version, snmp_port), resources) for _ in range(args.concurrency)]
    try:
        for probe in probes:  # warm-up: engine, v3 discovery, ifName walk, fallbacks
            for _ in range(2):
                outcome = await probe.check()
                if not outcome.up:
                    sys.exit(f"netwatch {version} poll failed: {outcome.reason}: {outcome.detail}")
        oids = poll_oids(probes[0])
        stats = {"polls": 0, "failed": 0}
        stop_at = time.perf_counter() + args.seconds
        budget = args.max_polls

        async def worker(probe: SnmpProbe) -> None:
            nonlocal budget
            while time.perf_counter() < stop_at and budget > 0:
                budget -= 1
                outcome = await probe.check()
                stats["polls" if outcome.up else "failed"] += 1

        c0, s0, t0 = time.process_time(), tree_cpu(snmpd_pid), time.perf_counter()
        await asyncio.gather(*(worker(p) for p in probes))
        wall, cpu, agent_cpu = time.perf_counter() - t0, time.process_time() - c0, tree_cpu(snmpd_pid) - s0
    finally:
        await resources.aclose()
    varbinds = stats["polls"] * len(oids)
    return _result(
        f"netwatch SnmpProbe {version}",
        stats["polls"],
        stats["failed"],
        varbinds,
        wall,
        cpu,
        agent_cpu,
        len(oids),
    ), oids


def exporter_module(name: str, version: str, oids: list[str]) -> dict[str, Any]:
    """A snmp_exporter 0.21 module (auth inside the module) that GETs ``oids``."""
    columns = sorted({o.rsplit(".", 1)[0] for o in oids})
    counters = {
        "1.3.6.1.2.1.31.1.1.1.6",
        "1.3.6.1.2.1.31.1.1.1.10",
        "1.3.6.1.2.1.2.2.1.10",
        "1.3.6.1.2.1.2.2.1.16",
        "1.3.6.1.2.1.2.2.1.13",
        "1.3.6.1.2.1.2.2.1.14",
        "1.3.6.1.2.1.2.2.1.19",
        "1.3.6.1.2.1.2.2.1.20",
    }
    metrics = []
    for col in columns:
        metric: dict[str, Any] = {
            "name": "c" + col.replace(".", "_"),
            "oid": col,
            "type": "counter" if col in counters else "gauge",
            "help": col,
        }
        if col != "1.3.6.1.2.1.1.3":
            metric["indexes"] = [{"labelname": "ifIndex", "type": "gauge"}]
        metrics.append(metric)
    auth: dict[str, Any] = {"community": COMMUNITY}
    if version == "3":
        auth = {
            "username": USER,
            "security_level": "authPriv",
            "auth_protocol": "SHA",
            "password": AUTH_KEY,
            "priv_protocol": "AES",
            "priv_password": PRIV_KEY,
        }
    return {name: {"version": 2 if version == "2c" else 3, "auth": auth, "get": oids, "metrics": metrics}}


@contextmanager
def exporter(workdir: Path, modules: dict[str, Any]) -> Iterator[tuple[int, int]]:
    binary = shutil.which("prometheus-snmp-exporter")
    if binary is None:
        sys.exit("prometheus-snmp-exporter is not installed: run scripts/setup.sh")
    config = workdir / "snmp.yml"
    config.write_text(json.dumps(modules, indent=1))  # JSON is YAML
    check = subprocess.run([binary, f"--config.file={config}", "--dry-run"], capture_output=True, text=True)
    if check.returncode:
        sys.exit(f"snmp_exporter rejects {config}: {check.stderr[-800:]}")
    port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "exporter.log", "w"),  # noqa: SIM115
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"snmp_exporter did not start: {_read(workdir / 'exporter.log')[-500:]}")
                time.sleep(0.02)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def bench_exporter(
    version: str,
    module: str,
    http_port: int,
    exporter_pid: int,
    snmp_port: int,
    snmpd_pid: int,
    oids: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{http_port}/snmp?module={module}&target=127.0.0.1:{snmp_port}"
    stats = {"polls": 0, "failed": 0}
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # warm-up (v3 engine discovery)
            async with session.get(url) as resp:
                body = await resp.text()
                if resp.status != 200 or "c1_3_6_1_2_1" not in body:
                    sys.exit(f"snmp_exporter scrape failed ({resp.status}): {body[:500]}")
        stop_at = time.perf_counter() + args.seconds
        budget = args.max_polls

        async def worker() -> None:
            nonlocal budget
            while time.perf_counter() < stop_at and budget > 0:
                budget -= 1
                async with session.get(url) as resp:
                    await resp.read()
                    stats["polls" if resp.status == 200 else "failed"] += 1

        c0, e0, s0, t0 = time.process_time(), proc_cpu(exporter_pid), tree_cpu(snmpd_pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - t0
        cpu, client, agent_cpu = (
            proc_cpu(exporter_pid) - e0,
            time.process_time() - c0,
            tree_cpu(snmpd_pid) - s0,
        )
    result = _result(
        f"snmp_exporter 0.21 {version}",
        stats["polls"],
        stats["failed"],
        stats["polls"] * len(oids),
        wall,
        cpu,
        agent_cpu,
        len(oids),
    )
    result["scrape_client_cpu_s"] = round(client, 3)
    return result


def _result(
    name: str,
    polls: int,
    failed: int,
    varbinds: int,
    wall: float,
    cpu: float,
    agent_cpu: float,
    per_poll: int,
) -> dict[str, Any]:
    per_1000 = round(cpu / varbinds * 1000, 4) if varbinds else None
    return {
        "case": name,
        "polls": polls,
        "failed": failed,
        "varbinds_per_poll": per_poll,
        "varbinds": varbinds,
        "wall_s": round(wall, 2),
        "polls_per_s": round(polls / wall, 1),
        "varbinds_per_s": round(varbinds / wall),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1000_varbinds": per_1000,
        "agent_cpu_s_per_1000_varbinds": round(agent_cpu / varbinds * 1000, 4) if varbinds else None,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nw-bench-snmp-") as tmp:
        workdir = Path(tmp)
        with snmpd(workdir, args.agent, args.ports) as (snmp_port, snmpd_pid, names):
            oids_by_version: dict[str, list[str]] = {}
            for version in ("2c", "3"):
                result, oids = await bench_netwatch(version, snmp_port, snmpd_pid, names, args)
                oids_by_version[version] = oids
                results.append(result)
                print(json.dumps(result), flush=True)
            modules = {
                **exporter_module("nw_v2c", "2c", oids_by_version["2c"]),
                **exporter_module("nw_v3", "3", oids_by_version["3"]),
            }
            with exporter(workdir, modules) as (http_port, exporter_pid):
                for version, module in (("2c", "nw_v2c"), ("3", "nw_v3")):
                    result = await bench_exporter(
                        version,
                        module,
                        http_port,
                        exporter_pid,
                        snmp_port,
                        snmpd_pid,
                        oids_by_version[version],
                        args,
                    )
                    results.append(result)
                    print(json.dumps(result), flush=True)
    return results


def record(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> None:
    """Append one row (this run) to the SNMP section of BENCHMARKS.md, creating the section if needed."""
    cost = {r["case"]: r["cpu_s_per_1000_varbinds"] for r in results}
    rate = {r["case"]: r["varbinds_per_s"] for r in results}

    def cell(case: str) -> str:
        return f"{cost[case]:.3f} ({rate[case]:,} vb/s)"

    per_poll = results[0]["varbinds_per_poll"]
    setup = f"{args.agent}, {per_poll} OIDs/poll, conc {args.concurrency}, {args.seconds:g} s"
    cells = " | ".join(
        cell(c)
        for c in (
            "netwatch SnmpProbe 2c",
            "netwatch SnmpProbe 3",
            "snmp_exporter 0.21 2c",
            "snmp_exporter 0.21 3",
        )
    )
    row = f"| {dt.date.today().isoformat()} | {setup} | {cells} | `{command}` |"
    append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--agent",
        choices=["lab", "host"],
        default="lab",
        help="lab: simulated switch (pass_persist); host: snmpd's own interfaces",
    )
    parser.add_argument("--ports", type=int, default=8, help="ports polled per device (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case (default 10)")
    parser.add_argument("--max-polls", type=int, default=50_000, help="stop a case after this many polls")
    parser.add_argument("--concurrency", type=int, default=4, help="probes / scrapers in flight (default 4)")
    parser.add_argument("--record", action="store_true", help="append the figures to BENCHMARKS.md")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    summary = {
        "bench": "snmp_poll",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "agent": args.agent,
        "results": {r["case"]: r["cpu_s_per_1000_varbinds"] for r in results},
    }
    print(json.dumps(summary), flush=True)
    if args.record:
        record(results, args, "python bench/snmp_poll.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
