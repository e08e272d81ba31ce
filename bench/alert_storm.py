"""Notifications per real incident, through `netwatch run`: a core switch with 500 dependents, and a flapping port.

Storm: a core switch (parent: a router on 127.0.0.1 that stays up) and 500 devices behind it (APs,
cameras, door panels at five parks), all pinged every ``--interval``. They live in a network
namespace this script creates: the switch at the far end of one veth pair, the 500 as addresses
inside the namespace routed through it, so cutting that one link takes all 501 away at once, as a
dead switch would. Each round cuts the link at a random phase, counts the webhooks until the
incident has settled, restores the link and counts again. The goal: one ``firing`` for the switch
naming 500 devices as its impact and nothing for the 500; one ``resolved`` for the switch and
nothing for the 500.

Flap: a port of a router served by the real snmpd + lab agent is toggled between up and down once
per poll for ``--flap-minutes`` (a daemon of its own polls only that router, so the poll grid is
read off its ``checks_run`` counter and every toggle falls half an interval from the polls), then
left up until netwatch says the flapping stopped. The goal: at most two notices.

    python bench/alert_storm.py [--interval 10] [--group-wait 10] [--rounds 2] [--flap-minutes 2] [--quick] [--record]

About 10 minutes at the defaults (each storm round ~2 min, the flap ~5 min); --quick about 5.

Needs root (network namespaces), snmpd and iproute2. Traffic stays on loopback and in the namespace,
which is removed on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from detection_latency import Arrival, Hook, NetLab, Netwatch, sigterm_as_interrupt
from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.common import stop  # noqa: E402
from tests.servers.snmpd import SnmpServer, interface, start_snmpd  # noqa: E402

CORE = "sw-core"
KINDS = ("wifi_ap", "camera", "access_panel")
PARKS = ("villa-parke", "brookside", "victory-park", "jackie-robinson", "central-park")
FLAP_DEVICE, FLAP_PORT = "lab-rtr", "xe-0/0/1"

STORM_SECTION = "## Alert storm (bench/alert_storm.py)"
STORM_INTRO = """
`netwatch run` with a core switch (its parent a router that stays up) and 500 dependents behind it
(APs, cameras, door panels at five parks), all pinged (count 3, spacing 200 ms, wait 1 s) in a
network namespace of the script's own; cutting the switch's one veth takes all 501 away at once.
Each round cuts it at a random phase, counts the webhooks until the incident settles, restores it
and counts again. Goal: 1 root-cause page naming the 500 as its impact and 0 for the dependents,
then 1 resolve and 0 for the dependents. Per-round figures are separated by `/`; children's notices
are firing + resolved.
"""
STORM_HEAD = (
    "| date | devices | interval | group_wait | rounds | core pages (impact) | child notices, outage | "
    "core resolves | child notices, recovery | daemon CPU | command |"
)
STORM_ALIGN = "|---|---:|---:|---:|---:|---|---|---|---|---:|---|"

FLAP_SECTION = "## Flapping port (bench/alert_storm.py)"
FLAP_INTRO = """
A port of the snmpd + lab-agent router toggled up/down once per poll (half an interval from each
poll, the grid read off the daemon's `checks_run`), then left up until netwatch says the flapping
stopped; built-in `interface_down` with its default flap thresholds (start above 50 %, stop below
25 % weighted state change over 21 checks). Goal: at most 2 notices.
"""
FLAP_HEAD = "| date | interval | group_wait | toggled for | toggles | notices (events) | command |"
FLAP_ALIGN = "|---|---:|---:|---:|---:|---|---|"


# -- storm ------------------------------------------------------------------------------------------


def storm_config(work: Path, lab: NetLab, dependents: list[str], hook: Hook, args: argparse.Namespace) -> Path:
    (work / "hook.key").write_text("alert-storm-bench-secret\n")
    lines = [
        "  - {id: r0, site: hq, kind: router, address: 127.0.0.1, checks: [ping]}",
        f"  - {{id: {CORE}, site: hq, kind: switch, address: {lab.host(0)}, checks: [ping], parents: [r0]}}",
    ]
    for i, address in enumerate(dependents):
        lines.append(
            f"  - {{id: d{i:03d}, site: {PARKS[i % len(PARKS)]}, kind: {KINDS[i % len(KINDS)]}, "
            f"address: {address}, checks: [ping], parents: [{CORE}]}}"
        )
    sites = ", ".join(f"{{id: {p}, name: {p}, kind: park}}" for p in PARKS)
    path = work / "storm.yaml"
    path.write_text(
        f"""
instance: bench-storm
state_dir: {work / "storm-state"}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: {args.interval}s
  timeout: {min(10.0, args.interval - 0.5)}s
  ping: {{count: 3, spacing: 200ms, wait: 1s}}
sites: [{{id: hq, name: City Hall}}, {sites}]
devices:
{chr(10).join(lines)}
receivers:
  - {{name: hook, kind: webhook, url: "{hook.url}", secret_file: hook.key}}
routes:
  - {{receivers: [hook], group_wait: {args.group_wait}s}}
"""
    )
    return path


def tally(arrivals: list[Arrival]) -> dict[str, Any]:
    """Count one phase's webhooks: the core's by event (and impact), the children's by event."""
    core = [a for a in arrivals if a.entity == CORE and a.rule == "device_down"]
    children = [a for a in arrivals if a.entity.startswith("d") and a.rule == "device_down"]
    other = [a for a in arrivals if a not in core and a not in children]
    return {
        "core": dict(collections.Counter(a.event for a in core)),
        "core_impact": [a.impact_count for a in core if a.event == "firing"],
        "children": dict(collections.Counter(a.event for a in children)),
        "children_entities": len({a.entity for a in children}),
        "other": sorted({f"{a.rule}:{a.entity}:{a.event}" for a in other}),
    }


async def storm(args: argparse.Namespace, work: Path, rng: random.Random, lab: NetLab) -> dict[str, Any]:
    try:
        await asyncio.to_thread(lab.create)
        dependents = await asyncio.to_thread(lab.put_behind, 0, args.dependents)
        hook = Hook()
        async with hook.server:
            daemon = Netwatch(storm_config(work, lab, dependents, hook, args), work / "storm.log")
            await asyncio.to_thread(daemon.start)
            try:
                await asyncio.sleep(args.interval * 1.2 + 3)  # every device polled once, all up
                hook.refresh()
                warmup = tally(hook.arrivals)
                cpu0, t0 = daemon.cpu_s(), time.monotonic()
                rounds = []
                # A child's page could come up to two intervals after the core's (a check in flight
                # when the link is cut still reads up), and children resolve within two intervals.
                settle = args.interval * 2 + 5
                for _ in range(args.rounds):
                    await asyncio.sleep(rng.uniform(0, args.interval))
                    mark = len(hook.refresh())
                    await asyncio.to_thread(lab.cut, 0)
                    cut_at = time.monotonic()
                    page = await hook.first(
                        lambda a: a.entity == CORE and a.event == "firing",
                        args.interval * 3 + args.group_wait + 10,
                        since=mark,
                    )
                    await asyncio.sleep(settle)  # room for children's pages
                    outage = hook.refresh()[mark:]
                    await asyncio.sleep(rng.uniform(0, args.interval))
                    mark = len(hook.refresh())
                    await asyncio.to_thread(lab.restore, 0)
                    restored_at = time.monotonic()
                    resolve = await hook.first(
                        lambda a: a.entity == CORE and a.event == "resolved", args.interval * 4 + 10, since=mark
                    )
                    await asyncio.sleep(settle)  # room for children's pages after the core's resolve
                    recovery = hook.refresh()[mark:]
                    rounds.append(
                        {
                            "outage": tally(outage),
                            "recovery": tally(recovery),
                            "page_after_s": round(page.at - cut_at, 1) if page else None,
                            "resolve_after_s": round(resolve.at - restored_at, 1) if resolve else None,
                        }
                    )
                    await asyncio.sleep(args.interval * 2)
                cpu, elapsed = daemon.cpu_s() - cpu0, time.monotonic() - t0
                skipped = len(daemon.events("check_skipped"))
            finally:
                await asyncio.to_thread(daemon.stop)
    finally:
        await asyncio.to_thread(lab.remove)
    return {
        "devices": args.dependents + 2,
        "warmup_notices": warmup,
        "rounds": rounds,
        "daemon_cpu_s": round(cpu, 1),
        "elapsed_s": round(elapsed, 1),
        "checks_skipped_logged": skipped,
        "duplicate_webhook_ids": hook.server.duplicates,
    }


# -- flap -------------------------------------------------------------------------------------------


def flap_config(work: Path, snmp: SnmpServer, hook: Hook, args: argparse.Namespace) -> Path:
    (work / "hook.key").write_text("alert-storm-bench-secret\n")
    path = work / "flap.yaml"
    path.write_text(
        f"""
instance: bench-flap
state_dir: {work / "flap-state"}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: {args.interval}s
  timeout: {min(10.0, args.interval - 0.5)}s
  snmp: {{community_file: {snmp.community_file}, port: {snmp.port}, timeout: 2s, retries: 1}}
sites: [{{id: hq, name: City Hall}}]
devices:
  - {{id: {FLAP_DEVICE}, site: hq, kind: router, address: 127.0.0.1, checks: [snmp], ports: [{FLAP_PORT}]}}
receivers:
  - {{name: hook, kind: webhook, url: "{hook.url}", secret_file: hook.key}}
routes:
  - {{receivers: [hook], group_wait: {args.group_wait}s}}
"""
    )
    return path


def checks_run(api_url: str) -> int:
    with urllib.request.urlopen(f"{api_url}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("netwatch_checks_run_total"):
                return int(float(line.split()[-1]))
    raise RuntimeError("no netwatch_checks_run_total in /metrics")


async def poll_times(api_url: str, out: list[float], stop_at: float) -> None:
    """Record when the flap daemon's one check completes (its checks_run goes up)."""
    last = await asyncio.to_thread(checks_run, api_url)
    while time.monotonic() < stop_at:
        now = await asyncio.to_thread(checks_run, api_url)
        if now != last:
            out.append(time.monotonic())
            last = now
        await asyncio.sleep(0.05)


async def flap(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    snmp = await asyncio.to_thread(start_snmpd, work / "snmpd")
    try:
        snmp.state["interfaces"] = [interface(100, FLAP_PORT)]
        snmp.state["entities"], snmp.state["sensors"] = [], []
        snmp.write()
        hook = Hook()
        async with hook.server:
            daemon = Netwatch(flap_config(work, snmp, hook, args), work / "flap.log")
            await asyncio.to_thread(daemon.start)
            try:
                api_url = daemon.events("api_listening")[0]["url"].rstrip("/")
                polls: list[float] = []
                watcher = asyncio.create_task(poll_times(api_url, polls, time.monotonic() + 10**6))
                while len(polls) < 2:  # noqa: ASYNC110 - the port seen up (ok first) and the poll grid known
                    await asyncio.sleep(0.05)
                toggles: list[float] = []
                down = False
                end = time.monotonic() + args.flap_minutes * 60
                next_toggle = polls[-1] + args.interval / 2
                while next_toggle < end:
                    await asyncio.sleep(max(0.0, next_toggle - time.monotonic()))
                    down = not down
                    snmp.set_interface(FLAP_PORT, oper=2 if down else 1)
                    toggles.append(time.monotonic())
                    next_toggle += args.interval
                if down:
                    await asyncio.sleep(max(0.0, next_toggle - time.monotonic()))
                    snmp.set_interface(FLAP_PORT, oper=1)
                    toggles.append(time.monotonic())
                quiet_from = time.monotonic()
                # The flapping ends once the recent changes weigh under 25 %: up to ~21 polls.
                stopped = await hook.first(lambda a: a.event == "flapping_stopped", args.interval * 25)
                await asyncio.sleep(args.interval * 3 + 2)  # room for a resolve or a repeat after it
                watcher.cancel()
                hook.refresh()
                # How close each toggle came to a poll (a toggle within ~0.1 s of one could land on either side).
                margins = [min(abs(t - p) for p in polls) for t in toggles] if polls else []
            finally:
                await asyncio.to_thread(daemon.stop)
        notices = [a for a in hook.arrivals if a.entity == f"{FLAP_DEVICE}:{FLAP_PORT}"]
        return {
            "interval_s": args.interval,
            "toggled_for_s": round(quiet_from - toggles[0], 1) if toggles else 0,
            "toggles": len(toggles),
            "polls_seen": len(polls),
            "toggle_to_nearest_poll_min_s": round(min(margins), 2) if margins else None,
            "flapping_stopped_after_quiet_s": round(stopped.at - quiet_from, 1) if stopped else None,
            "notices": [a.event for a in notices],
            "other_notices": [f"{a.rule}:{a.entity}:{a.event}" for a in hook.arrivals if a not in notices],
        }
    finally:
        stop(snmp.proc)


# -- main -------------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, work: Path, lab: NetLab) -> dict[str, Any]:
    rng = random.Random(args.seed)
    result: dict[str, Any] = {
        "bench": "alert_storm",
        "config": {
            "interval_s": args.interval,
            "group_wait_s": args.group_wait,
            "ping": {"count": 3, "spacing_s": 0.2, "wait_s": 1.0},
            "seed": args.seed,
        },
    }
    if args.rounds:
        result["storm"] = await storm(args, work, rng, lab)
    if args.flap_minutes:
        result["flap"] = await flap(args, work)
    return result


def storm_row(result: dict[str, Any], command: str) -> str:
    s, cfg = result["storm"], result["config"]
    rounds = s["rounds"]

    def per_round(phase: str, who: str, event: str | None = None) -> str:
        counts = []
        for r in rounds:
            c = r[phase][who]
            counts.append(c.get(event, 0) if event else sum(c.values()))
        return "/".join(str(n) for n in counts)

    impacts = sorted({i for r in rounds for i in r["outage"]["core_impact"]})
    return (
        f"| {dt.date.today()} | {s['devices']} | {cfg['interval_s']:g} s | {cfg['group_wait_s']:g} s | {len(rounds)} | "
        f"{per_round('outage', 'core', 'firing')} ({', '.join(map(str, impacts)) or '-'}) | "
        f"{per_round('outage', 'children')} | {per_round('recovery', 'core', 'resolved')} | "
        f"{per_round('recovery', 'children')} | {s['daemon_cpu_s']} CPU-s in {s['elapsed_s']} s | {command} |"
    )


def flap_row(result: dict[str, Any], command: str) -> str:
    f, cfg = result["flap"], result["config"]
    events = ", ".join(f["notices"]) or "none"
    return (
        f"| {dt.date.today()} | {cfg['interval_s']:g} s | {cfg['group_wait_s']:g} s | {f['toggled_for_s']} s | "
        f"{f['toggles']} | {len(f['notices'])} ({events}) | {command} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds (default 10, at least 5)")
    parser.add_argument("--group-wait", type=float, default=10.0, help="route group_wait, seconds (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="storm rounds (0: skip the storm)")
    parser.add_argument("--dependents", type=int, default=500, help="devices behind the core switch")
    parser.add_argument("--flap-minutes", type=float, default=2.0, help="how long to toggle the port (0: skip)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="interval 5 s, 1 storm round, 1.5 min of flapping")
    parser.add_argument("--record", action="store_true", help="append rows to BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.interval, args.rounds, args.flap_minutes = 5.0, 1, 1.5
    if args.interval < 5 or not 0 <= args.rounds <= 20 or not 1 <= args.dependents <= 4000:
        parser.error("--interval at least 5; --rounds 0 to 20; --dependents 1 to 4000")
    if args.seed is None:
        args.seed = random.randrange(2**32)

    # The storm's namespace: 10.208.0.0/30 to the switch, the 500 in 10.209.0.0/16 behind it.
    lab = NetLab(links=1, net="10.208", behind_net="10.209")
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="nw-storm-") as tmp:
        try:
            result = asyncio.run(run_all(args, Path(tmp), lab))
        finally:  # also on Ctrl-C / SIGTERM, whatever the event loop managed to clean up
            Netwatch.stop_all()
            lab.remove()

    print(json.dumps(result, indent=2))
    if args.record:
        command = "`python bench/alert_storm.py"
        if args.quick:
            command += " --quick"
        else:
            if args.interval != 10.0:
                command += f" --interval {args.interval:g}"
            if args.rounds != 2:
                command += f" --rounds {args.rounds}"
            if args.flap_minutes != 2.0:
                command += f" --flap-minutes {args.flap_minutes:g}"
        if args.group_wait != 10.0:
            command += f" --group-wait {args.group_wait:g}"
        if args.dependents != 500:
            command += f" --dependents {args.dependents}"
        command += " --record`"
        path = ROOT / "BENCHMARKS.md"
        if "storm" in result:
            append_rows(path, STORM_SECTION, STORM_INTRO, STORM_HEAD, STORM_ALIGN, [storm_row(result, command)])
        if "flap" in result:
            append_rows(path, FLAP_SECTION, FLAP_INTRO, FLAP_HEAD, FLAP_ALIGN, [flap_row(result, command)])


if __name__ == "__main__":
    main()
