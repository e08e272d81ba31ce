"""netwatch at scale on the simulated city: `netwatch run` watching `netwatch lab run` (--mix switches).

For each size in ``--devices`` the lab is generated (``netwatch lab generate --mix switches``: a
ring of routers, every other device a switch; each device gets ping + SNMP interfaces), run as
its own process (``netwatch lab run --no-panels --write-config``), and ``netwatch run`` started on
the config it writes, at ``--interval`` (default 60 s). Measured per size, each process from its
own /proc/<pid>/stat: netwatch's CPU share of one core over ``--intervals`` full intervals after
the first point, the lab's likewise; netwatch's RSS (and per device); the daemon's own /metrics
at the end (poll lag p50/p99/max over its recent window, checks run/failed/skipped, points);
exec -> first point handed to the sink (``points_collected`` > 0 on /metrics), and with
``--influxdb`` exec -> first point visible in a private influxd 1.6 (else the spool takes them).

    python bench/lab_scale.py --devices 1000,5000 [--interval 60] [--intervals 2] [--influxdb] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.common import free_port  # noqa: E402

from netwatch.lab.generate import dump, generate  # noqa: E402

SECTION = "## Scale on the lab city (bench/lab_scale.py)"
INTRO = """
`netwatch run` watching `netwatch lab run` (`lab generate --mix switches`: every device a switch
or ring router, each with ping + SNMP v2c interfaces, 2-4 ports), two processes on the same 2
cores. CPU = each process's utime+stime from /proc/<pid>/stat over the measured window (full
intervals after the first point) / wall time, as a share of one core. RSS of `netwatch run` at
the end. Poll lag, checks run/failed/skipped: the daemon's /metrics at the end (lag over its
recent window). First point = exec until /metrics shows `points_collected` > 0 (InfluxDB: first
point visible through InfluxQL). Ping is icmplib on raw sockets (root), count 2, wait 1 s.
""".strip()
TABLE_HEAD = (
    "| date | devices (checks) | interval | window | netwatch CPU | lab CPU | RSS (per device) | "
    "poll lag p50 / p99 / max | checks run / failed / skipped | first point | sink | command |"
)
ALIGN = "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|"

_METRIC = re.compile(r"^(netwatch_[a-z0-9_]+)(?:\{[^}]*\})?\s+(\S+)$")


def proc_stats(pid: int) -> tuple[float, float]:
    """Return (RSS in MiB, CPU seconds) of a process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics(url: str, timeout: float = 5.0) -> dict[str, float]:
    """The daemon's netwatch_* series from /metrics (labels dropped; the last of a name wins)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            name = m.group(1).removesuffix("_total").removesuffix("_created")
            if not m.group(1).endswith("_created"):
                out[name] = float(m.group(2))
    return out


def run_size(devices: int, args: argparse.Namespace, work: Path, influx_url: str | None) -> dict[str, Any]:
    lab_file = work / f"lab-{devices}.yaml"
    data = generate(devices, mix="switches", network="127.77.0.0/16")
    api_port = free_port()
    data["lab"] |= {
        "interval": f"{args.interval:g}s",
        "snmp_port": free_port(),
        "control": f"127.0.0.1:{free_port()}",
        "trap_port": free_port(),
        "api": f"127.0.0.1:{api_port}",
        "http_port": free_port(),
        "rtsp_port": free_port(),
        "mqtt_port": free_port(),
    }
    lab_file.write_text(dump(data, devices, "switches"))
    config = work / f"netwatch-{devices}" / "netwatch.yaml"
    config.parent.mkdir()
    exe = str(Path(sys.executable).parent / "netwatch")
    lab_cmd = [exe, "lab", "run", str(lab_file), "--no-panels", "--write-config", str(config)]
    lab_cmd += ["--workdir", str(work / f"labwork-{devices}")]
    if influx_url:
        lab_cmd += ["--influxdb", influx_url]
    lab_log = (work / f"lab-{devices}.log").open("w+b")
    t_lab = time.monotonic()
    lab = subprocess.Popen(lab_cmd, stdout=subprocess.DEVNULL, stderr=lab_log)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        while b"lab running" not in (work / f"lab-{devices}.log").read_bytes():
            if lab.poll() is not None or time.monotonic() - t_lab > 300:
                raise RuntimeError("lab did not start:\n" + (work / f"lab-{devices}.log").read_text()[-2000:])
            time.sleep(0.2)
        lab_start_s = time.monotonic() - t_lab
        cfg = yaml.safe_load(config.read_text())
        cfg["log"] = {"level": "warning", "format": "json"}
        cfg.pop("mqtt", None)  # --no-panels: no broker, no panels to hear
        if args.no_ping:
            for kind in cfg["defaults"]["kinds"].values():
                kind["checks"] = [c for c in kind["checks"] if c != "ping"]
        checks = len(cfg["devices"]) * (1 if args.no_ping else 2)  # ping + snmp each
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        url = f"http://127.0.0.1:{api_port}/metrics"
        t0 = time.monotonic()
        daemon = subprocess.Popen(
            [exe, "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(work / f"netwatch-{devices}.log").open("wb"),
        )
        first_point = first_influx = None
        while time.monotonic() - t0 < args.interval + 60:
            if daemon.poll() is not None:
                raise RuntimeError("netwatch exited:\n" + (work / f"netwatch-{devices}.log").read_text()[-3000:])
            now = time.monotonic() - t0
            if first_point is None and metrics(url).get("netwatch_points_collected", 0) > 0:
                first_point = now
            if influx_url and first_influx is None and _influx_has_points(influx_url):
                first_influx = now
            if first_point is not None and (first_influx is not None or not influx_url):
                break
            time.sleep(0.1)
        _, nw_cpu0 = proc_stats(daemon.pid)
        _, lab_cpu0 = proc_stats(lab.pid)
        w0 = time.monotonic()
        deadline = w0 + args.intervals * args.interval
        rss_peak = 0.0
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise RuntimeError("netwatch exited:\n" + (work / f"netwatch-{devices}.log").read_text()[-3000:])
            rss_peak = max(rss_peak, proc_stats(daemon.pid)[0])
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        rss, nw_cpu1 = proc_stats(daemon.pid)
        _, lab_cpu1 = proc_stats(lab.pid)
        window = time.monotonic() - w0
        t_scrape = time.monotonic()
        m = metrics(url, timeout=60)  # a saturated daemon answers late
        scrape_s = time.monotonic() - t_scrape
        log_lines = (work / f"netwatch-{devices}.log").read_text(errors="replace").splitlines()
        log_warnings = len(log_lines)
        down_logged = sum(1 for line in log_lines if '"event": "device_down"' in line)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        lab.send_signal(signal.SIGTERM)
        try:
            lab.wait(60)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait()
    return {
        "devices": devices,
        "checks": checks,
        "interval_s": args.interval,
        "lab_start_s": round(lab_start_s, 1),
        "window_s": round(window, 1),
        "netwatch_cpu_s": round(nw_cpu1 - nw_cpu0, 2),
        "netwatch_cpu_share": round((nw_cpu1 - nw_cpu0) / window, 3),
        "lab_cpu_s": round(lab_cpu1 - lab_cpu0, 2),
        "lab_cpu_share": round((lab_cpu1 - lab_cpu0) / window, 3),
        "rss_mib": round(rss, 1),
        "rss_peak_mib": round(rss_peak, 1),
        "rss_per_device_kib": round(rss * 1024 / devices, 1),
        "first_point_s": None if first_point is None else round(first_point, 2),
        "first_influx_s": None if first_influx is None else round(first_influx, 2),
        "poll_lag_p50_ms": m.get("netwatch_poll_lag_p50_ms"),
        "poll_lag_p99_ms": m.get("netwatch_poll_lag_p99_ms"),
        "poll_lag_max_ms": m.get("netwatch_poll_lag_max_ms"),
        "checks_run": m.get("netwatch_checks_run"),
        "checks_failed": m.get("netwatch_checks_failed"),
        "checks_skipped": m.get("netwatch_checks_skipped"),
        "points_collected": m.get("netwatch_points_collected"),
        "points_written": m.get("netwatch_points_written"),
        "loop_lag_ms": m.get("netwatch_loop_lag_ms"),
        "devices_down": m.get("netwatch_devices"),  # the last label (down) wins in metrics()
        "metrics_scrape_s": round(scrape_s, 2),
        "daemon_log_lines": log_warnings,
        "device_down_logged": down_logged,
        "ping": not args.no_ping,
    }


def _influx_has_points(url: str) -> bool:
    q = urllib.parse.urlencode({"db": "netwatch", "q": "SHOW MEASUREMENTS"})
    try:
        with urllib.request.urlopen(f"{url}/query?{q}", timeout=5) as resp:
            return b'"values"' in resp.read()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1000,5000", help="comma-separated lab sizes")
    parser.add_argument("--interval", type=float, default=60.0, help="poll interval, seconds")
    parser.add_argument("--intervals", type=int, default=2, help="measured intervals after the first point")
    parser.add_argument("--no-ping", action="store_true", help="SNMP only (what ping costs, by difference)")
    parser.add_argument("--influxdb", action="store_true", help="write to a private influxd 1.6 (else: spool)")
    parser.add_argument("--record", action="store_true", help="append rows to BENCHMARKS.md")
    args = parser.parse_args()
    sizes = [int(x) for x in args.devices.split(",") if x.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="nw-labscale-") as tmp:
        work = Path(tmp)
        influx = None
        if args.influxdb:
            from tests.servers.influx import InfluxdServer

            (work / "influx").mkdir()
            influx = InfluxdServer(binary="influxd", workdir=work / "influx")
            influx.start()
            influx.execute("CREATE DATABASE netwatch")
        try:
            for n in sizes:
                if influx is not None:
                    influx.execute("DROP DATABASE netwatch")
                    influx.execute("CREATE DATABASE netwatch")
                try:
                    results.append(run_size(n, args, work, influx.url if influx else None))
                except RuntimeError as exc:
                    results.append({"devices": n, "error": str(exc)[-1500:]})
                print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            if influx is not None:
                influx.stop()
    print(json.dumps({"bench": "lab_scale", "results": results}, indent=2))
    if args.record:
        cmd = "python bench/lab_scale.py " + " ".join(sys.argv[1:])
        rows = []
        for r in results:
            if "error" in r:
                rows.append(
                    f"| {dt.date.today()} | {r['devices']} | failed: {r['error'][:200]!r} | | | | | | | | | `{cmd}` |"
                )
                continue

            def f(key: str, spec: str = "g", r: dict[str, Any] = r) -> str:
                return "n/a" if r.get(key) is None else format(r[key], spec)

            first = f"{r['first_point_s']} s" + (f" (InfluxDB {r['first_influx_s']} s)" if args.influxdb else "")
            rows.append(
                f"| {dt.date.today()} | {r['devices']:,} ({r['checks']:,}: {'ping + ' if r['ping'] else ''}snmp) | "
                f"{r['interval_s']:g} s | "
                f"{r['window_s']} s | "
                f"{r['netwatch_cpu_share'] * 100:.1f} % | {r['lab_cpu_share'] * 100:.1f} % | "
                f"{r['rss_mib']} MiB ({r['rss_per_device_kib']} KiB) | "
                f"{f('poll_lag_p50_ms', '.0f')} / {f('poll_lag_p99_ms', '.0f')} / {f('poll_lag_max_ms', '.0f')} ms | "
                f"{f('checks_run', ',.0f')} / {f('checks_failed', ',.0f')} / {f('checks_skipped', ',.0f')} | {first} | "
                f"{'influxd 1.6' if args.influxdb else 'spool'} | `{cmd}` |"
            )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, rows)


if __name__ == "__main__":
    main()
