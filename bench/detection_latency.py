"""Detection latency: a fault injected on loopback to the webhook's arrival, through `netwatch run`.

Two kinds of fault, each trial on an entity of its own (so no trial sees another's flap history):

* ``interface``: a port of a router served by the real snmpd + lab agent (netwatch.lab.snmpagent)
  is set oper-down in the agent's state file -> built-in ``interface_down`` -> webhook ``firing``.
* ``ping``: a host in a network namespace this script creates loses its link (the far end of its
  veth pair is set down, as tests/integration/test_ping.py does) -> ``device_down`` -> webhook.

Each fault is injected at a uniformly random time over a window of several poll intervals, so its
phase relative to the poll grid is random. When the ``firing`` webhook has arrived the fault is
cleared, and the time to the ``resolved`` webhook is measured too. Clocks: the script's monotonic
clock on both ends (the webhook server runs in this process). A trial whose webhook does not come
is counted as missed, never given a figure.

    python bench/detection_latency.py [--interval 10] [--trials 40] [--group-wait 10] [--quick] [--record]

Needs root (network namespaces), snmpd and iproute2. Traffic stays on loopback and in the
namespace, which is removed on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from record import append_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.common import stop  # noqa: E402
from tests.servers.saas import WebhookServer  # noqa: E402
from tests.servers.snmpd import SnmpServer, interface, start_snmpd  # noqa: E402

NETWATCH = str(Path(sys.executable).parent / "netwatch")
SECTION = "## Detection latency (bench/detection_latency.py)"
INTRO = """
Fault injected on loopback -> netwatch's generic webhook arriving at a loopback server, through
`netwatch run`. `interface`: a port of the snmpd + lab-agent router set oper-down in the agent's
state file (built-in `interface_down`, `for` 0). `ping`: a host in a network namespace of the
script's own whose veth is cut (built-in `device_down`, `for` 0; ping count 3, spacing 200 ms,
wait 1 s). Each trial has its own port or host, injected at a uniformly random time over several
poll intervals (random phase against the poll grid); the fault is cleared at a random time within
an interval of `firing` arriving, and the time to `resolved` is measured too (built-in
`clear_checks` 2: two clear polls). SNMP timeout 2 s, retries 1 (they only matter for an agent
that does not answer). The route's `group_wait` is in the figures (netwatch's default is 10 s);
alert timers tick once a second. p99 over 40 trials is close to the max.

Peers, from their documented defaults (not measured here): Prometheus + Alertmanager detect in
scrape interval (default 1 m) + rule evaluation interval (default 1 m) + `for`, then Alertmanager
waits `group_wait` (default 30 s) before the first notification of a group: up to ~2.5 min plus
`for` with defaults, ~1 min with a common 15 s/15 s set-up. LibreNMS polls every 5 minutes (the
ICMP check is part of the poller run), checks alert rules at the end of each device's poll, and its
alerts.php cron job (every minute) sends the notifications: ~3 min on average, up to ~6 min, plus
a rule's delay.
"""
TABLE_HEAD = (
    "| date | fault -> webhook | trials (missed) | interval | group_wait | detect p50 | detect p99 | "
    "detect max | resolve p50 | resolve p99 | command |"
)
ALIGN = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"


# -- plumbing shared with bench/alert_storm.py ------------------------------------------------------


def sh(*args: str) -> None:
    """Run a command; fail with its stderr."""
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


def ip_batch(commands: list[str], namespace: str | None = None) -> None:
    """Run many `ip` commands in one process (``ip -batch -``)."""
    argv = ["ip", *(["-n", namespace] if namespace else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip -batch: {done.stderr.strip()}")


class NetLab:
    """A network namespace of our own with ``links`` veth pairs to this host, removed on :meth:`remove`.

    Link ``i`` is ``<net>.<i>.0/30``: ``.1`` on our side, ``.2`` (:meth:`host`) in the namespace.
    :meth:`put_behind` adds more addresses inside the namespace reached through one link, so cutting
    that link takes them all away (devices behind a switch).
    """

    def __init__(self, *, links: int, net: str = "10.206", behind_net: str = "10.207", tag: str = "") -> None:
        if not 1 <= links <= 250:
            raise ValueError("1 to 250 links")
        self.links = links
        self.net = net
        self.behind_net = behind_net
        tag = tag or str(os.getpid() % 100000)
        self.namespace = f"nwb{tag}"
        self._tag = tag
        self.created = False

    def host_if(self, i: int) -> str:
        return f"nb{self._tag}h{i}"

    def peer_if(self, i: int) -> str:
        return f"nb{self._tag}p{i}"

    def host(self, i: int) -> str:
        return f"{self.net}.{i}.2"

    def check_free(self) -> None:
        """Refuse to start if this machine already routes the lab's address ranges."""
        ours = [ipaddress.ip_network(f"{self.net}.0.0/16"), ipaddress.ip_network(f"{self.behind_net}.0.0/16")]
        out = subprocess.run(["ip", "-o", "-4", "route", "show", "table", "all"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            dest = line.split()[0]
            if dest in ("default", "local", "broadcast", "unreachable", "blackhole"):
                continue
            with contextlib.suppress(ValueError):
                net = ipaddress.ip_network(dest, strict=False)
                if any(net.overlaps(o) for o in ours):
                    raise RuntimeError(f"{dest} is already routed here ({line.strip()}); another bench running?")

    def create(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("network namespaces need root")
        self.check_free()
        sh("ip", "netns", "add", self.namespace)
        self.created = True
        host_cmds, ns_cmds = [], ["link set lo up"]
        for i in range(self.links):
            host_cmds += [
                f"link add {self.host_if(i)} type veth peer name {self.peer_if(i)} netns {self.namespace}",
                f"addr add {self.net}.{i}.1/30 dev {self.host_if(i)}",
                f"link set {self.host_if(i)} up",
            ]
            ns_cmds += [f"addr add {self.host(i)}/30 dev {self.peer_if(i)}", f"link set {self.peer_if(i)} up"]
        ip_batch(host_cmds)
        ip_batch(ns_cmds, self.namespace)

    def put_behind(self, i: int, count: int) -> list[str]:
        """Add ``count`` addresses inside the namespace, routed through link ``i``; return them."""
        addrs = [str(ipaddress.ip_address(f"{self.behind_net}.0.0") + 1 + n) for n in range(count)]
        ip_batch([f"addr add {a}/32 dev lo" for a in addrs], self.namespace)
        sh("ip", "route", "add", f"{self.behind_net}.0.0/16", "via", self.host(i))
        return addrs

    def cut(self, i: int) -> None:
        sh("ip", "-n", self.namespace, "link", "set", self.peer_if(i), "down")

    def restore(self, i: int) -> None:
        sh("ip", "-n", self.namespace, "link", "set", self.peer_if(i), "up")

    def remove(self) -> None:
        """Delete the namespace and our ends of the veth pairs (whatever exists of them)."""
        subprocess.run(["ip", "route", "del", f"{self.behind_net}.0.0/16"], capture_output=True)
        for i in range(self.links):
            subprocess.run(["ip", "link", "del", self.host_if(i)], capture_output=True)
        if self.created:
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
            self.created = False


class Netwatch:
    """`netwatch run` as a subprocess logging JSON to a file."""

    #: Every instance started and not yet stopped, for :meth:`stop_all` on the way out.
    running: ClassVar[list[Netwatch]] = []

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def stop_all(cls) -> None:
        for daemon in list(cls.running):
            daemon.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until its API listens (signal handlers in place, first tick run)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [NETWATCH, "run", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=out
            )
        Netwatch.running.append(self)
        deadline = time.monotonic() + timeout
        while not self.events("api_listening"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                self.stop()
                raise RuntimeError(f"netwatch did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=15)
            self.proc = None
        if self in Netwatch.running:
            Netwatch.running.remove(self)

    def cpu_s(self) -> float:
        """CPU seconds the daemon has used so far (user + system)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        if self.log.exists():
            for line in self.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict) and doc.get("event") == name:
                        out.append(doc)
        return out


@dataclass(frozen=True)
class Arrival:
    """One webhook request as the loopback server received it."""

    at: float  # monotonic
    event: str
    rule: str
    entity: str
    incident: str
    impact_count: int
    webhook_id: str


class Hook:
    """The loopback webhook server netwatch posts to, with what arrived parsed."""

    def __init__(self) -> None:
        self.server = WebhookServer()
        self.arrivals: list[Arrival] = []
        self._parsed = 0

    @property
    def url(self) -> str:
        return str(self.server.url)

    def refresh(self) -> list[Arrival]:
        for req in self.server.requests[self._parsed :]:
            data = req.json()["data"]
            self.arrivals.append(
                Arrival(
                    at=req.at,
                    event=data["event"],
                    rule=data["rule"],
                    entity=data["entity"],
                    incident=data["incident"],
                    impact_count=int((data.get("impact") or {}).get("count", 0)),
                    webhook_id=req.headers.get("webhook-id", ""),
                )
            )
        self._parsed = len(self.server.requests)
        return self.arrivals

    async def first(self, match: Callable[[Arrival], bool], within: float, *, since: int = 0) -> Arrival | None:
        """Return the first arrival from index ``since`` on that matches, waiting up to ``within``
        seconds (None: none came)."""
        deadline = time.monotonic() + within
        while True:
            for arrival in self.refresh()[since:]:
                if match(arrival):
                    return arrival
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.01)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C, so the finally blocks clean up."""
    raise KeyboardInterrupt


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50_s": round(percentile(values, 50), 2),
        "p90_s": round(percentile(values, 90), 2),
        "p99_s": round(percentile(values, 99), 2),
        "min_s": round(min(values), 2),
        "max_s": round(max(values), 2),
        "mean_s": round(statistics.fmean(values), 2),
    }


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- this bench -------------------------------------------------------------------------------------


@dataclass
class Trial:
    kind: str
    entity: str
    detect_s: float | None = None
    resolve_s: float | None = None


def write_config(work: Path, *, snmp: SnmpServer, lab: NetLab, ports: list[str], args: argparse.Namespace) -> Path:
    (work / "hook.key").write_text("detection-latency-bench-secret\n")
    timeout = min(10.0, args.interval - 0.5)  # shorter than the interval; SNMP 2 s x 2 tries fits
    hosts = "\n".join(
        f"  - {{id: host-{i:02d}, site: lab, kind: server, address: {lab.host(i)}, checks: [ping]}}"
        for i in range(lab.links)
    )
    path = work / "netwatch.yaml"
    path.write_text(
        f"""
instance: bench-latency
state_dir: {work / "state"}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json, level: info}}
defaults:
  interval: {args.interval}s
  timeout: {timeout}s
  ping: {{count: 3, spacing: 200ms, wait: 1s}}
  snmp: {{community_file: {snmp.community_file}, port: {snmp.port}, timeout: 2s, retries: 1}}
sites: [{{id: lab, name: Lab}}]
devices:
  - {{id: lab-sw, site: lab, kind: switch, address: 127.0.0.1, checks: [snmp], ports: [{", ".join(ports)}]}}
{hosts}
receivers:
  - {{name: hook, kind: webhook, url: "{args.hook_url}", secret_file: hook.key}}
routes:
  - {{receivers: [hook], group_wait: {args.group_wait}s}}
"""
    )
    return path


async def measure(args: argparse.Namespace, hook: Hook, snmp: SnmpServer, lab: NetLab, ports: list[str]) -> list[Trial]:
    rng = random.Random(args.seed)
    window = max(4, args.trials // 4) * args.interval
    detect_within = args.interval * 2 + args.group_wait + 15
    resolve_within = args.interval * 4 + 15
    t0 = time.monotonic()
    trials: list[Trial] = []

    async def one(kind: str, i: int) -> None:
        if kind == "interface":
            entity, rule = f"lab-sw:{ports[i]}", "interface_down"
        else:
            entity, rule = f"host-{i:02d}", "device_down"
        trial = Trial(kind, entity)
        trials.append(trial)
        await asyncio.sleep(max(0.0, t0 + rng.uniform(0, window) - time.monotonic()))
        if kind == "interface":
            snmp.set_interface(ports[i], oper=2)
        else:
            await asyncio.to_thread(lab.cut, i)
        injected = time.monotonic()  # the fault is in place
        fired = await hook.first(lambda a: a.entity == entity and a.rule == rule and a.event == "firing", detect_within)
        # Clear at a random phase too: clearing right at the webhook would tie it to the poll grid.
        await asyncio.sleep(rng.uniform(0, args.interval) if fired is not None else 0.0)
        if kind == "interface":
            snmp.set_interface(ports[i], oper=1)
        else:
            await asyncio.to_thread(lab.restore, i)
        cleared = time.monotonic()
        if fired is None:
            return
        trial.detect_s = fired.at - injected
        resolved = await hook.first(
            lambda a: a.entity == entity and a.rule == rule and a.event == "resolved", resolve_within
        )
        if resolved is not None:
            trial.resolve_s = resolved.at - cleared

    jobs = [one(kind, i) for kind in args.kinds for i in range(args.trials)]
    await asyncio.gather(*jobs)
    return trials


async def run_bench(
    args: argparse.Namespace, work: Path, snmp: SnmpServer, lab: NetLab, ports: list[str]
) -> dict[str, Any]:
    hook = Hook()
    async with hook.server:
        args.hook_url = hook.url
        daemon = Netwatch(write_config(work, snmp=snmp, lab=lab, ports=ports, args=args), work / "netwatch.log")
        await asyncio.to_thread(daemon.start)
        try:
            # Every check runs once within its first interval (staggered start); interface_down
            # needs each port seen up first.
            await asyncio.sleep(args.interval * 1.2 + 3)
            cpu0, t0 = daemon.cpu_s(), time.monotonic()
            trials = await measure(args, hook, snmp, lab, ports)
            cpu, elapsed = daemon.cpu_s() - cpu0, time.monotonic() - t0
            hook.refresh()
        finally:
            await asyncio.to_thread(daemon.stop)
    result: dict[str, Any] = {
        "bench": "detection_latency",
        "config": {
            "interval_s": args.interval,
            "group_wait_s": args.group_wait,
            "for_s": 0,
            "clear_checks": 2,
            "check_timeout_s": min(10.0, args.interval - 0.5),
            "snmp": {"timeout_s": 2, "retries": 1},
            "ping": {"count": 3, "spacing_s": 0.2, "wait_s": 1.0},
            "trials_per_kind": args.trials,
            "seed": args.seed,
        },
        "elapsed_s": round(elapsed, 1),
        "daemon_cpu_s": round(cpu, 2),
        "webhooks": len(hook.arrivals),
        "duplicates": hook.server.duplicates,
    }
    for kind in args.kinds:
        mine = [t for t in trials if t.kind == kind]
        detect = [t.detect_s for t in mine if t.detect_s is not None]
        resolve = [t.resolve_s for t in mine if t.resolve_s is not None]
        result[kind] = {
            "trials": len(mine),
            "missed": len(mine) - len(detect),
            "resolve_missed": len(detect) - len(resolve),
            "detect": summary(detect),
            "resolve": summary(resolve),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval, seconds (default 10)")
    parser.add_argument("--trials", type=int, default=40, help="trials per kind of fault (default 40)")
    parser.add_argument("--group-wait", type=float, default=10.0, help="route group_wait, seconds (default 10)")
    parser.add_argument("--kinds", default="interface,ping", help="comma-separated: interface, ping")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the injection times")
    parser.add_argument("--quick", action="store_true", help="8 trials per kind (about 1.5 min at 10 s)")
    parser.add_argument("--record", action="store_true", help="append rows to BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.trials = 8
    args.kinds = [k for k in args.kinds.split(",") if k]
    if not set(args.kinds) <= {"interface", "ping"} or not 1 <= args.trials <= 200 or args.interval < 5:
        parser.error("--kinds takes interface and/or ping; --trials 1 to 200; --interval at least 5")
    if args.seed is None:
        args.seed = random.randrange(2**32)

    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="nw-latency-") as tmp:
        work = Path(tmp)
        lab = NetLab(links=args.trials if "ping" in args.kinds else 1)
        snmp = None
        try:
            lab.create()
            snmp = start_snmpd(work / "snmpd")
            ports = [f"ge-0/0/{i}" for i in range(args.trials)]
            snmp.state["interfaces"] = [interface(100 + i, name) for i, name in enumerate(ports)]
            snmp.state["entities"], snmp.state["sensors"] = [], []
            snmp.write()
            result = asyncio.run(run_bench(args, work, snmp, lab, ports))
        finally:
            Netwatch.stop_all()
            if snmp is not None:
                stop(snmp.proc)
            lab.remove()

    print(json.dumps(result, indent=2))
    if args.record:
        command = "`python bench/detection_latency.py" + (" --quick" if args.quick else "")
        if args.interval != 10.0:
            command += f" --interval {args.interval:g}"
        if args.group_wait != 10.0:
            command += f" --group-wait {args.group_wait:g}"
        if args.trials != 40 and not args.quick:
            command += f" --trials {args.trials}"
        command += " --record`"
        what = {"interface": "port oper-down (SNMP) -> interface_down", "ping": "veth cut (ping) -> device_down"}
        rows = []
        for kind in args.kinds:
            r = result[kind]
            d, s = r["detect"] or {}, r["resolve"] or {}
            rows.append(
                f"| {dt.date.today()} | {what[kind]} | {r['trials']} ({r['missed']}) | {args.interval:g} s | "
                f"{args.group_wait:g} s | {d.get('p50_s', '-')} s | {d.get('p99_s', '-')} s | "
                f"{d.get('max_s', '-')} s | "
                f"{s.get('p50_s', '-')} s | {s.get('p99_s', '-')} s | {command} |"
            )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, rows)


if __name__ == "__main__":
    main()
