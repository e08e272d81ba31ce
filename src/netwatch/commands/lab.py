"""``netwatch lab``: a simulated city on loopback, and faults on command.

``lab run FILE`` runs the lab in the foreground (Ctrl-C or SIGTERM stops it and removes what it
set up); ``--write-config OUT`` first writes the netwatch config that watches it. ``lab generate``
writes a large lab file. ``lab fault KIND TARGET`` and ``lab clear [ID]`` talk to a running lab's
control endpoint; ``lab status`` shows it. Exit status: 0 done, 1 the lab refused or is not
running, 2 usage error (a bad lab file prints every problem as ``file:line: key: message``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

DEFAULT_CONTROL = "127.0.0.1:18000"


def register(subparsers: Any) -> None:
    """Add ``netwatch lab``."""
    lab = subparsers.add_parser(
        "lab",
        help="run a simulated city on loopback and break it on command",
        description="A simulated city: SNMP agents, ICMP targets, portals, cameras, door panels on loopback.",
    )
    actions = lab.add_subparsers(dest="lab_action", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="run a lab in the foreground")
    run.add_argument("file", type=Path, nargs="?", help="lab file (default: the example city)")
    run.add_argument("--write-config", type=Path, metavar="OUT", help="write the netwatch config that watches it")
    run.add_argument("--influxdb", metavar="URL", help="InfluxDB (v1 API) for the written config")
    run.add_argument("--workdir", type=Path, help="where the lab keeps its broker, CA and logs")
    run.add_argument("--no-panels", action="store_true", help="no MQTT broker and door panels")

    gen = actions.add_parser("generate", help="write a large lab file")
    gen.add_argument("--devices", type=int, required=True)
    gen.add_argument("--mix", choices=["city", "switches"], default="city")
    gen.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    status = actions.add_parser("status", help="what a running lab is doing")
    status.add_argument("--control", default=DEFAULT_CONTROL)
    status.add_argument("--json", action="store_true")

    fault = actions.add_parser(
        "fault",
        help="break something in a running lab",
        description="kinds: cut SPAN, down DEVICE, port DEVICE:PORT, flap DEVICE:PORT [--period], "
        "degrade DEVICE:PORT [--db-per-min], reboot DEVICE, trap DEVICE:PORT (linkDown now, linkUp when cleared), "
        "radio DEVICE [--radio N], panel DEVICE --mode silent|malformed|door_forced|tamper|..., "
        "camera DEVICE --mode no_video|hang|not_found|html_error|truncated|down, portal DEVICE --mode broken|slow|down",
    )
    fault.add_argument("kind")
    fault.add_argument("target")
    fault.add_argument("--mode")
    fault.add_argument("--period", type=float, default=10.0, help="flap period, seconds")
    fault.add_argument("--db-per-min", type=float, default=1.0, help="degrade: receive power lost per minute")
    fault.add_argument("--radio", type=int, default=0, help="radio index")
    fault.add_argument("--control", default=DEFAULT_CONTROL)

    clear = actions.add_parser("clear", help="clear a fault by id, or all of them")
    clear.add_argument("fault_id", nargs="?", help="default: every fault")
    clear.add_argument("--control", default=DEFAULT_CONTROL)
    lab.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    action = args.lab_action
    if action == "generate":
        return _generate(args)
    if action == "run":
        return _run(args)
    from netwatch.lab.control import ControlError, call

    try:
        if action == "status":
            doc = asyncio.run(call(args.control, "GET", "/status"))
            print(json.dumps(doc, indent=2) if args.json else _status_text(doc))
        elif action == "fault":
            body = {
                "kind": args.kind,
                "target": args.target,
                "mode": args.mode,
                "period_s": args.period,
                "db_per_min": args.db_per_min,
                "radio": args.radio,
            }
            doc = asyncio.run(call(args.control, "POST", "/faults", body))
            affects = ", ".join(doc.get("affects", [])) or "nothing else"
            print(f"{doc['id']}: {doc['kind']} {doc['target']} (affects {affects})")
        else:
            path = f"/faults/{args.fault_id}" if args.fault_id else "/faults"
            doc = asyncio.run(call(args.control, "DELETE", path))
            for f in doc["cleared"]:
                print(f"cleared {f['id']}: {f['kind']} {f['target']}")
    except ControlError as exc:
        print(f"netwatch lab: {exc}", file=sys.stderr)
        return 1
    return 0


def _status_text(doc: dict[str, Any]) -> str:
    devices = doc["devices"]
    dark = [d["id"] for d in devices if d["dark"]]
    lines = [
        f"lab on {doc['network']}: {len(devices)} devices, {len(dark)} dark"
        + ("" if doc["icmp_faults"] else " (ICMP faults unavailable: not root)"),
        f"mqtt broker: {doc['mqtt'] or 'none'}",
    ]
    for f in doc["faults"]:
        lines.append(f"  {f['id']}: {f['kind']} {f['target']}" + (f" ({f['mode']})" if f.get("mode") else ""))
    if dark:
        lines.append("dark: " + ", ".join(dark))
    return "\n".join(lines)


def _generate(args: argparse.Namespace) -> int:
    from netwatch.lab.generate import dump, generate

    try:
        text = dump(generate(args.devices, mix=args.mix), args.devices, args.mix)
    except ValueError as exc:
        print(f"netwatch lab generate: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output} ({args.devices} devices)", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from netwatch import logs
    from netwatch.config import ConfigError
    from netwatch.lab.spec import default_lab, load_lab

    try:
        lab = load_lab(args.file or default_lab())
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    logs.configure("info", "auto")
    workdir = args.workdir or (args.write_config.parent if args.write_config else Path.cwd() / "lab")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.write_config is not None:
        from netwatch.lab.netconfig import write_config

        out = write_config(lab, args.write_config, influxdb=args.influxdb)
        print(f"wrote {out}: run `netwatch run -c {out}`", file=sys.stderr)

    async def main() -> None:
        from netwatch.lab.city import CityLab
        from netwatch.lab.control import serve_control

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        city = CityLab(lab, workdir, panels=not args.no_panels)
        try:
            await city.start()
            async with serve_control(city, lab.spec.lab.control) as url:
                print(
                    f"lab running: {len(lab.spec.devices)} devices; control at {url}; Ctrl-C stops it", file=sys.stderr
                )
                await stop.wait()
        finally:
            await city.stop()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"netwatch lab: {exc}", file=sys.stderr)
        return 1
    return 0
