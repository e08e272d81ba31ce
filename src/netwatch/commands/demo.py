"""``netwatch demo``: start a simulated city and netwatch watching it, and show what happens.

Runs on a bare machine: no InfluxDB needed (points stay in netwatch's spool unless ``--influxdb``
names one); door panels need mosquitto, ICMP faults need root (both said on screen when missing).
Exit status: 0 stopped cleanly (Ctrl-C or ``--duration``), 1 netwatch or the lab failed, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``netwatch demo``."""
    demo = subparsers.add_parser(
        "demo",
        help="a simulated city and netwatch watching it, live in this terminal",
        description="Start the lab (config/lab/city.yaml by default) and the daemon together; Ctrl-C stops both.",
    )
    demo.add_argument("--lab", type=Path, help="lab file (default: the example city, config/lab/city.yaml)")
    demo.add_argument("--workdir", type=Path, help="config, spool and logs (default: ~/.cache/netwatch/demo)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--influxdb", metavar="URL", help="also write to this InfluxDB (v1 API)")
    demo.add_argument("--no-story", action="store_true", help="break nothing by itself; use `netwatch lab fault`")
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from netwatch.config import ConfigError
    from netwatch.demo import default_workdir, run_demo
    from netwatch.lab.broker import BrokerError
    from netwatch.lab.spec import default_lab

    workdir = (args.workdir or default_workdir()).resolve()
    try:
        return asyncio.run(
            run_demo(
                args.lab or default_lab(),
                workdir,
                duration=args.duration,
                story=not args.no_story,
                influxdb=args.influxdb,
            )
        )
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    except (OSError, BrokerError) as exc:
        print(f"netwatch demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
