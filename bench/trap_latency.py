"""Trap-to-webhook latency: a linkDown trap sent with net-snmp to the webhook's arrival, through `netwatch run`.

A router is served by the real snmpd + lab agent (netwatch.lab.snmpagent) with one port per trial;
netwatch polls it every ``--interval`` seconds (60 by default, so the poll grid cannot explain a
fast detection) and listens for traps on a loopback port. Each trial sets one port oper-down in
the agent's state file and at once sends a v2c linkDown for its ifIndex with ``snmptrap``; the
trap makes netwatch poll the device now, the poll sees the port down, the built-in
``interface_down`` rule (``for`` 0) fires and the route (``group_wait`` 0 by default) posts the
webhook. Clock: the script's monotonic clock on both ends (the webhook server runs in this
process). Trials are spaced 1.2-2.5 s apart at random: netwatch polls a check at most once a
second on traps. A trial whose webhook does not come within 15 s is counted as missed.

    python bench/trap_latency.py [--trials 20] [--interval 60] [--group-wait 0] [--quick]

Needs snmpd and snmptrap (Debian snmpd, snmp). Traffic stays on loopback. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detection_latency import Hook, Netwatch, sigterm_as_interrupt, summary  # noqa: E402
from tests.servers.common import free_port, require_binary, stop  # noqa: E402
from tests.servers.snmpd import SnmpServer, interface, start_snmpd  # noqa: E402

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
COMMUNITY = "trap-latency-bench"


def write_config(work: Path, *, snmp: SnmpServer, ports: list[str], trap_port: int, args: argparse.Namespace) -> Path:
    (work / "hook.key").write_text("trap-latency-bench-secret\n")
    (work / "trap-community").write_text(COMMUNITY + "\n")
    path = work / "netwatch.yaml"
    path.write_text(
        f"""
instance: bench-traps
state_dir: {work / "state"}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: {args.interval}s
  timeout: 10s
  snmp: {{community_file: {snmp.community_file}, port: {snmp.port}, timeout: 2s, retries: 1}}
sites: [{{id: lab, name: Lab}}]
devices:
  - {{id: lab-sw, site: lab, kind: switch, address: 127.0.0.1, checks: [snmp], ports: [{", ".join(ports)}]}}
traps: {{listen: "127.0.0.1:{trap_port}", community_files: [trap-community]}}
receivers:
  - {{name: hook, kind: webhook, url: "{args.hook_url}", secret_file: hook.key}}
routes:
  - {{receivers: [hook], group_wait: {args.group_wait}s}}
"""
    )
    return path


async def send_link_down(snmptrap: str, trap_port: int, if_index: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        snmptrap, "-M", "/nonexistent", "-m", "", "-v2c", "-c", COMMUNITY, f"127.0.0.1:{trap_port}", "", LINK_DOWN,
        f"{IF_INDEX}.{if_index}", "i", str(if_index), f"{IF_OPER}.{if_index}", "i", "2",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"snmptrap failed: {err.decode(errors='replace')}")


async def run_bench(args: argparse.Namespace, work: Path, snmp: SnmpServer, ports: list[str]) -> dict[str, Any]:
    snmptrap = require_binary("snmptrap", "snmp")
    rng = random.Random(args.seed)
    hook = Hook()
    trap_port = free_port(socket.SOCK_DGRAM)
    async with hook.server:
        args.hook_url = hook.url
        daemon = Netwatch(
            write_config(work, snmp=snmp, ports=ports, trap_port=trap_port, args=args), work / "netwatch.log"
        )
        await asyncio.to_thread(daemon.start)
        try:
            # interface_down needs each port seen up once: every check runs within its first
            # interval (staggered start), then one more poll's worth of slack.
            await asyncio.sleep(args.interval * 1.2 + 3)
            latencies: list[float] = []
            missed = 0
            for i, port in enumerate(ports):
                entity = f"lab-sw:{port}"
                snmp.set_interface(port, oper=2)
                sent = time.monotonic()
                await send_link_down(snmptrap, trap_port, 100 + i)
                fired = await hook.first(
                    lambda a, e=entity: a.entity == e and a.rule == "interface_down" and a.event == "firing", 15.0
                )
                if fired is None:
                    missed += 1
                else:
                    latencies.append(fired.at - sent)
                await asyncio.sleep(rng.uniform(1.2, 2.5))
            traps_logged = len(daemon.events("trap_received"))
        finally:
            await asyncio.to_thread(daemon.stop)
    return {
        "bench": "trap_latency",
        "config": {
            "interval_s": args.interval,
            "group_wait_s": args.group_wait,
            "for_s": 0,
            "snmp": {"timeout_s": 2, "retries": 1},
            "trials": args.trials,
            "seed": args.seed,
        },
        "traps_logged": traps_logged,
        "missed": missed,
        "trap_to_webhook": summary(latencies),
        "goal_s": 2.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials (default 20)")
    parser.add_argument("--interval", type=float, default=60.0, help="poll interval, seconds (default 60)")
    parser.add_argument("--group-wait", type=float, default=0.0, help="route group_wait, seconds (default 0)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="5 trials at a 20 s interval")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.interval = 5, 20.0
    if not 1 <= args.trials <= 200 or args.interval < 5:
        parser.error("--trials 1 to 200; --interval at least 5")
    if args.seed is None:
        args.seed = random.randrange(2**32)
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="nw-traps-") as tmp:
        work = Path(tmp)
        snmp = None
        try:
            snmp = start_snmpd(work / "snmpd")
            ports = [f"ge-0/0/{i}" for i in range(args.trials)]
            snmp.state["interfaces"] = [interface(100 + i, name) for i, name in enumerate(ports)]
            snmp.state["entities"], snmp.state["sensors"] = [], []
            snmp.write()
            result = asyncio.run(run_bench(args, work, snmp, ports))
        finally:
            Netwatch.stop_all()
            if snmp is not None:
                stop(snmp.proc)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
