"""Start-up time of `netwatch run` to its first write, and its memory, with the example config.

The example city (config/example.yaml, 31 devices, 16 spans) is pointed at loopback: every device
pings 127.0.0.1 and is polled over SNMP from one local snmpd serving netwatch.lab.snmpagent (with
the example's port names), v3 devices with a SHA-256/AES-256 user. influxd 1.6 runs on a free
loopback port. Measured: exec -> first point visible in InfluxDB (InfluxQL), RSS after start-up
and after one full polling round, CPU used by the daemon over that time.

    python bench/startup.py [--record]      # prints JSON; --record appends a row to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.common import stop  # noqa: E402
from tests.servers.influx import InfluxdServer  # noqa: E402
from tests.servers.snmpd import interface, start_snmpd  # noqa: E402

COUNT_FIELD = {"ping": "up", "interface": "oper_up", "system": "uptime_s", "device": "up", "link": "up"}
SECTION = "## Start-up and memory (bench/startup.py)"
INTRO = (
    "`netwatch run` with config/example.yaml pointed at loopback (31 devices, 43 checks: ping to 127.0.0.1, "
    "SNMP v2c and v3 SHA-256/AES-256 to one local snmpd + pass_persist agent), writing to a local influxd 1.6. "
    "First write = exec until the first point is visible through InfluxQL; RSS from /proc after start-up and "
    "after one 30 s polling round."
)
TABLE_HEAD = "| date | exec to first write | RSS after start | RSS after a round | daemon CPU | command |"
ALIGN = "|---|---:|---:|---:|---:|---|"
PORTS = ["xe-0/0/0", "xe-0/0/1", "xe-0/0/2", "xe-0/0/3", "ge-0/0/2", "ge-0/0/3", "Gi1/0/49"]


def proc_stats(pid: int) -> tuple[float, float]:
    """Return (RSS in MiB, CPU seconds) of a process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return rss_kb / 1024, cpu


def loopback_config(work: Path, influx_url: str, snmp: Any) -> Path:
    """Rewrite config/example.yaml to poll loopback only."""
    cfg = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    cfg["state_dir"] = str(work / "state")
    cfg["influxdb"]["url"] = influx_url
    cfg["log"] = {"level": "warning", "format": "json"}
    cfg["api"] = {"listen": "127.0.0.1:0"}
    cfg["defaults"]["snmp"].update(community_file=str(snmp.community_file), port=snmp.port)
    for device in cfg["devices"]:
        device["address"] = "127.0.0.1"
        if device.get("snmp", {}).get("version") == "3":
            device["snmp"] = {
                "version": "3",
                "user": "nw-sha256-aes256",
                "auth_protocol": "SHA256",
                "priv_protocol": "AES256",
                "auth_key_file": str(snmp.auth_key_file),
                "priv_key_file": str(snmp.priv_key_file),
            }
    path = work / "netwatch.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-s", type=float, default=35.0, help="how long to let it poll (one 30 s round + slack)")
    parser.add_argument("--record", action="store_true", help="append a row to BENCHMARKS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nw-bench-") as tmp:
        work = Path(tmp)
        snmp = start_snmpd(work / "snmpd")
        snmp.state["interfaces"] = [
            interface(100 + i, name, in_octets_per_s=1e6 * (i + 1)) for i, name in enumerate(PORTS)
        ]
        snmp.state["entities"], snmp.state["sensors"] = [], []
        snmp.write()
        (work / "influx").mkdir()
        influx = InfluxdServer(binary="influxd", workdir=work / "influx")
        influx.start()
        influx.execute("CREATE DATABASE netwatch")
        proc = None
        try:
            config = loopback_config(work, influx.url, snmp)
            netwatch = str(Path(sys.executable).parent / "netwatch")
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [netwatch, "run", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=(work / "netwatch.log").open("wb"),
            )
            first_write = None
            while time.monotonic() - t0 < 30:
                if influx.series("SHOW MEASUREMENTS"):
                    first_write = time.monotonic() - t0
                    break
                time.sleep(0.05)
            rss_start, _ = proc_stats(proc.pid)
            time.sleep(max(0.0, args.round_s - (time.monotonic() - t0)))
            rss_round, cpu = proc_stats(proc.pid)
            elapsed = time.monotonic() - t0
            points = sum(
                s["values"][0][1]
                for measurement, field in COUNT_FIELD.items()
                for s in influx.series(f"SELECT count({field}) FROM {measurement}")
            )
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
            influx.stop()
            stop(snmp.proc)

    result = {
        "bench": "startup",
        "config": "config/example.yaml on loopback (31 devices, 16 spans, 43 checks)",
        "first_write_s": round(first_write, 3) if first_write is not None else None,
        "rss_after_start_mib": round(rss_start, 1),
        "rss_after_round_mib": round(rss_round, 1),
        "cpu_s": round(cpu, 2),
        "elapsed_s": round(elapsed, 1),
        "points_in_influxdb": points,
    }
    print(json.dumps(result, indent=2))
    if args.record:
        row = (
            f"| {dt.date.today()} | {result['first_write_s']} s | {result['rss_after_start_mib']} MiB | "
            f"{result['rss_after_round_mib']} MiB | {result['cpu_s']} CPU-s in {result['elapsed_s']} s | "
            "`python bench/startup.py --record` |"
        )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


if __name__ == "__main__":
    main()
