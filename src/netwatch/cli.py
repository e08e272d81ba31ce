"""Command line: ``netwatch run | check-config | probe | config-schema`` and the operators' verbs.

The CLI owns signals and exit codes; everything else lives in modules the tests drive directly.
Operators' verbs live in :mod:`netwatch.commands`, one module per verb, each with
``register(subparsers)`` and ``run(args) -> int``. Exit codes: 0 ok, 1 bad config or failed
check, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from netwatch import __version__, logs
from netwatch.config import ConfigError, Loaded, config_schema, load_config

DEFAULT_CONFIG = os.environ.get("NETWATCH_CONFIG", "/etc/netwatch/netwatch.yaml")

#: Modules of :mod:`netwatch.commands` that add a verb (one line per verb).
COMMANDS: Final[tuple[str, ...]] = ("alerts", "demo", "lab", "profiles", "rules", "silences")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netwatch", description="Watch a city's network plant and write what it sees to InfluxDB."
    )
    parser.add_argument("--version", action="version", version=f"netwatch {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")

    check = sub.add_parser("check-config", help="validate a config file; exit 0 if good, 1 with every error")
    check.add_argument("file", nargs="?", default=DEFAULT_CONFIG)

    probe = sub.add_parser("probe", help="run one device's checks now and print what would be written")
    probe.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    probe.add_argument("device", help="device id from the config")
    probe.add_argument("--check", action="append", help="only this check (repeatable)")
    probe.add_argument("--rounds", type=int, default=1, help="poll this many times (2+ shows SNMP rates)")
    probe.add_argument("--spacing", type=float, default=5.0, help="seconds between rounds (default 5)")
    probe.add_argument("--json", action="store_true", help="print JSON lines instead of a table")

    sub.add_parser("config-schema", help="print the JSON Schema of the config file")
    for name in COMMANDS:
        importlib.import_module(f"netwatch.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netwatch`` console script."""
    args = _parser().parse_args(argv)
    if args.verb == "config-schema":
        print(json.dumps(config_schema(), indent=2))
        return 0
    if args.verb == "check-config":
        return _check_config(Path(args.file))
    if args.verb == "probe":
        logs.configure("warning")  # to stderr, so that --json output stays clean
        loaded = _load_or_report(Path(args.config))
        if loaded is None:
            return 1
        from netwatch.oneshot import probe_device

        return asyncio.run(
            probe_device(
                loaded,
                args.device,
                checks=args.check,
                rounds=max(1, args.rounds),
                spacing=args.spacing,
                as_json=args.json,
            )
        )
    if args.verb == "run":
        return _run(Path(args.config))
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    return 2


def _load_or_report(path: Path) -> Loaded | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        return None


def _check_config(path: Path) -> int:
    loaded = _load_or_report(path)
    if loaded is None:
        return 1
    inv = loaded.inventory
    checks = sum(len(d.checks) for d in inv.devices.values())
    counts = f"{len(inv.sites)} sites, {len(inv.devices)} devices, {len(inv.links)} spans, {checks} checks"
    print(f"{path}: ok ({counts})")
    return 0


def _run(path: Path) -> int:
    logs.configure()
    loaded = _load_or_report(path)
    if loaded is None:
        return 1
    from netwatch import daemon

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        await daemon.run(path, stop, reload, loaded=loaded)

    try:
        asyncio.run(main())
    except daemon.StartupError as exc:
        print(f"netwatch: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
