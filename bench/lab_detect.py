"""Detection latency on the lab city: a fault set through the lab's control endpoint -> netwatch's webhook.

A ``lab generate --mix switches`` lab (``--devices``, default 80: two ring routers, parks of
eight switches, the first on a lateral span from a ring router) runs as its own process
(``netwatch lab run --no-panels``); ``netwatch run`` watches it with the config the lab writes
(``netconfig.write_config``) at ``--interval`` (default 10 s), a webhook receiver in this process
and one route (``group_wait`` ``--group-wait``, default 0). After a warm-up (every check seen up),
trials of three kinds, each on a device or span of its own, injected at a random phase against
the poll grid (``POST /faults`` on the lab's control endpoint; the clock starts when it answers):

* ``down``: ``down DEVICE`` on a leaf switch (its SNMP agent silent, ICMP blackholed) ->
  ``device_down`` firing for that device (polling path: ping + SNMP).
* ``cut``: ``cut SPAN`` on a park's lateral span (the park switch and its 7 children go dark, the
  ring router's end port loses the light) -> ``span_down`` firing for that span (the root cause,
  its impact the 8 dark switches); the first page of any kind is in the JSON too (it can be the
  ring router's ``interface_down`` for its end port).
* ``trap``: ``trap DEVICE:PORT`` (the port goes down and the lab sends linkDown) ->
  ``interface_down`` firing for that port (trap path: the trap triggers an immediate poll).

Each fault is cleared once its webhook came (or after ``3 x interval``: a miss); trials do not
wait for the resolve. Prints JSON; ``--record`` appends rows to BENCHMARKS.md.

    python bench/lab_detect.py [--trials 8] [--interval 10] [--group-wait 0] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import signal
import socket
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

from detection_latency import Arrival, Hook, Netwatch, sigterm_as_interrupt, summary  # noqa: E402
from tests.servers.common import free_port  # noqa: E402

from netwatch.lab.control import call  # noqa: E402
from netwatch.lab.generate import dump, generate  # noqa: E402
from netwatch.lab.netconfig import write_config  # noqa: E402
from netwatch.lab.spec import load_lab  # noqa: E402

SECTION = "## Detection latency on the lab city (bench/lab_detect.py)"
INTRO = """
Fault set through the lab's control endpoint (`POST /faults`, clock starts at its answer) ->
netwatch's webhook at a loopback server, `netwatch run` watching `netwatch lab run` (a `lab
generate --mix switches` lab; ping count 2 / wait 1 s, SNMP v2c timeout 1 s, as the lab's written
config says). Each trial on its own device or span, at a random phase against the poll grid.
`down DEVICE` -> that device's `device_down`; `cut SPAN` (a park's lateral span: 8 switches go
dark) -> `span_down` (impact 8); `trap DEVICE:PORT` (linkDown from the lab) -> `interface_down`. The alert
engine ticks once a second.
""".strip()
TABLE_HEAD = "| date | fault -> webhook | trials (missed) | interval | group_wait | p50 | p99 | max | command |"
ALIGN = "|---|---|---:|---:|---:|---:|---:|---:|---|"


def make_lab(work: Path, args: argparse.Namespace) -> tuple[Path, Any]:
    data = generate(args.devices, mix="switches", network="127.79.0.0/16")
    data["lab"] |= {
        "interval": f"{args.interval:g}s",
        "snmp_port": free_port(socket.SOCK_DGRAM),
        "control": f"127.0.0.1:{free_port()}",
        "trap_port": free_port(socket.SOCK_DGRAM),
        "api": f"127.0.0.1:{free_port()}",
        "http_port": free_port(),
        "rtsp_port": free_port(),
        "mqtt_port": free_port(),
    }
    path = work / "lab.yaml"
    path.write_text(dump(data, args.devices, "switches"))
    return path, load_lab(path)


def start_lab(exe: str, lab_file: Path, work: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [exe, "lab", "run", str(lab_file), "--no-panels", "--workdir", str(work / "labwork")]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


async def trial(
    kind: str, target: str, hook: Hook, control: str, match: Any, args: argparse.Namespace, rng: random.Random
) -> dict[str, Any]:
    await asyncio.sleep(rng.uniform(0, args.interval))  # random phase against the poll grid
    since = len(hook.refresh())
    fault = await call(control, "POST", "/faults", {"kind": kind, "target": target})
    t0 = time.monotonic()
    first: Arrival | None = await hook.first(match, args.interval * 3, since=since)
    any_first = next((a for a in hook.refresh()[since:] if a.event == "firing"), None)
    await call(control, "DELETE", f"/faults/{fault['id']}")
    out: dict[str, Any] = {"kind": kind, "target": target, "affects": len(fault.get("affects", []))}
    out["latency_s"] = None if first is None else round(first.at - t0, 3)
    out["pages"] = [
        {"rule": a.rule, "entity": a.entity, "event": a.event, "s": round(a.at - t0, 3), "impact": a.impact_count}
        for a in hook.refresh()[since:][:10]
    ]
    if any_first is not None:
        out["first_page"] = {"rule": any_first.rule, "entity": any_first.entity, "s": round(any_first.at - t0, 3)}
        out["first_page_impact"] = any_first.impact_count
    return out


async def run_bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    lab_file, lab = make_lab(work, args)
    s = lab.spec.lab
    hook = Hook()
    results: list[dict[str, Any]] = []
    exe = str(Path(sys.executable).parent / "netwatch")
    log = work / "lab.log"
    proc = start_lab(exe, lab_file, work, log)
    try:
        deadline = time.monotonic() + 60
        while b"lab running" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lab did not start: " + log.read_text()[-1500:])
            await asyncio.sleep(0.2)
        async with hook.server:
            (work / "hook.key").write_text("lab-detect-bench-secret\n")
            config = write_config(
                lab,
                work / "netwatch.yaml",
                receivers=[{"name": "hook", "kind": "webhook", "url": hook.url, "secret_file": "hook.key"}],
                state_dir=work / "state",
            )
            cfg = yaml.safe_load(config.read_text())
            cfg["log"] = {"level": "info", "format": "json"}
            cfg["routes"][0]["group_wait"] = f"{args.group_wait:g}s"
            cfg.pop("mqtt", None)
            config.write_text(yaml.safe_dump(cfg, sort_keys=False))
            daemon = Netwatch(config, work / "netwatch.log")
            await asyncio.to_thread(daemon.start)
            try:
                await asyncio.sleep(args.interval * 1.5 + 3)  # every check seen up once
                switches = [d for d in lab.spec.devices if d.kind == "switch"]
                leaves = [d.id for d in switches if d.ports]
                rng.shuffle(leaves)
                spans = [link.id for link in lab.spec.links if "-p" in link.id]
                rng.shuffle(spans)
                n = args.trials
                if len(leaves) < 2 * n or len(spans) < n:
                    raise RuntimeError(f"lab too small for {n} trials of each kind: more --devices")
                plan: list[tuple[str, str, Any]] = []
                for i in range(n):
                    dev = leaves[i]
                    plan.append(
                        (
                            "down",
                            dev,
                            lambda a, e=dev: a.event == "firing" and a.rule == "device_down" and a.entity == e,
                        )
                    )
                    span = spans[i]
                    plan.append(
                        (
                            "cut",
                            span,
                            lambda a, e=span: a.event == "firing" and a.rule == "span_down" and a.entity == e,
                        )
                    )
                    port = f"{leaves[n + i]}:Gi1/0/1"
                    plan.append(
                        (
                            "trap",
                            port,
                            lambda a, e=port: a.event == "firing" and a.rule == "interface_down" and a.entity == e,
                        )
                    )
                for kind, target, match in plan:
                    results.append(await trial(kind, target, hook, s.control, match, args, rng))
                    print(json.dumps(results[-1]), file=sys.stderr)
                cpu = daemon.cpu_s()
            finally:
                await asyncio.to_thread(daemon.stop)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    by_kind: dict[str, Any] = {}
    for kind in ("down", "cut", "trap"):
        rs = [r for r in results if r["kind"] == kind]
        lat = [r["latency_s"] for r in rs if r["latency_s"] is not None]
        by_kind[kind] = {"trials": len(rs), "missed": len(rs) - len(lat), "latency": summary(lat)}
        if kind == "cut":
            firsts = [r["first_page"]["s"] for r in rs if "first_page" in r]
            by_kind[kind]["first_page"] = summary(firsts)
            by_kind[kind]["first_page_rules"] = sorted({r["first_page"]["rule"] for r in rs if "first_page" in r})
    return {
        "bench": "lab_detect",
        "devices": args.devices,
        "interval_s": args.interval,
        "group_wait_s": args.group_wait,
        "seed": args.seed,
        "daemon_cpu_s": cpu,
        "results": by_kind,
        "trials": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=80)
    parser.add_argument("--trials", type=int, default=8, help="trials of each kind")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--group-wait", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.trials <= 50 or args.interval < 2:
        parser.error("--trials 1 to 50; --interval at least 2")
    if args.seed is None:
        args.seed = random.randrange(2**32)
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="nw-labdetect-") as tmp:
        try:
            result = asyncio.run(run_bench(args, Path(tmp)))
        finally:
            Netwatch.stop_all()
    print(json.dumps(result, indent=2))
    if args.record:
        cmd = "python bench/lab_detect.py " + " ".join(sys.argv[1:])
        names = {
            "down": "`down DEVICE` (ping + SNMP) -> device_down",
            "cut": "`cut SPAN` (8 dark) -> span_down",
            "trap": "`trap DEVICE:PORT` (linkDown) -> interface_down",
        }
        rows = []
        for kind, r in result["results"].items():
            lat = r["latency"] or {}
            rows.append(
                f"| {dt.date.today()} | {names[kind]} | {r['trials']} ({r['missed']}) | {args.interval:g} s | "
                f"{args.group_wait:g} s | {lat.get('p50_s')} s | {lat.get('p99_s')} s | {lat.get('max_s')} s | "
                f"`{cmd}` |"
            )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, rows)


if __name__ == "__main__":
    main()
