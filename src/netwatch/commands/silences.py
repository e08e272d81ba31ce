"""``netwatch silences list | add | expire``: the running daemon's silences, through its API (as amtool).

Creating and expiring need the token in ``api.token_file``; listing needs it only when the API
listens on an address that is not loopback. Exit status: 0 done, 1 a config problem, the API
refused (every problem is printed) or an unknown silence, 2 usage error, 3 the daemon cannot be
reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwatch.commands.alerts import EXIT_UNREACHABLE

if TYPE_CHECKING:
    from netwatch.api.client import Client

_EPILOG = """\
examples:
  netwatch silences add site=villa-parke --duration 2h --comment "splicing the lateral, ticket 4411"
  netwatch silences add rule=~'device_(down|silent)' device=cam-jr-2 --end 2026-12-02T18:00:00-08:00 \\
      --comment "camera replaced tomorrow"
  netwatch silences list --all
  netwatch silences expire 6f0c1c9e-...

Matchers: label=value, label!=value, label=~regex, label!~regex (a regex matches the whole
value; a missing label reads as empty). Labels: rule, severity, entity, device, site, kind,
port, link, lessee and any label a rule sets.

exit status: 0 done, 1 bad config, refused or unknown silence, 2 usage error,
3 the daemon cannot be reached at its api.listen address.
"""


def register(subparsers: Any) -> None:
    """Add ``netwatch silences``."""
    from netwatch.cli import DEFAULT_CONFIG

    silences = subparsers.add_parser(
        "silences",
        help="list, add or expire silences in the running daemon",
        description="Silences hold the notices of matching incidents (recorded, not sent) until they\n"
        "end; what still fires then is sent. The resolve of an incident paged before the\n"
        "silence is still sent.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    common.add_argument("--url", help="the API's base URL (default: from api.listen in the config)")
    actions = silences.add_subparsers(dest="silences_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="show active and pending silences")
    listing.add_argument("--all", action="store_true", help="also those expired in the last 5 days")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")

    add = actions.add_parser("add", parents=[common], help="silence the alerts matching all MATCHERs")
    add.add_argument("matchers", nargs="+", metavar="MATCHER", help="label=value, label!=value, label=~re, label!~re")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("-d", "--duration", help="how long, e.g. 2h or 90m")
    end.add_argument("--end", help="when it ends (RFC 3339, e.g. 2026-12-02T09:00:00-08:00)")
    add.add_argument("--start", help="when it starts (RFC 3339; default now)")
    add.add_argument("-m", "--comment", required=True, help="why (required; a ticket number helps)")
    add.add_argument("-a", "--author", default=_whoami(), help="who (default %(default)s)")

    expire = actions.add_parser("expire", parents=[common], help="end silences now")
    expire.add_argument("ids", nargs="+", metavar="ID")
    silences.set_defaults(handler=run)


def _whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def run(args: argparse.Namespace) -> int:
    """Run one action; return the exit status."""
    from netwatch.alerting.silences import Matcher
    from netwatch.api.client import ApiRefused, ApiUnreachable, Client, ClientConfigError

    if args.silences_action == "add":
        for text in args.matchers:
            try:
                Matcher.parse(text)
            except ValueError as exc:
                print(f"netwatch silences: {exc}", file=sys.stderr)
                return 2
    try:
        client = Client.from_config(Path(args.config), url=args.url, need_token=args.silences_action != "list")
    except ClientConfigError as exc:
        print(f"netwatch silences: {exc}", file=sys.stderr)
        return 1
    try:
        if args.silences_action == "list":
            return _list(client, args)
        if args.silences_action == "add":
            return _add(client, args)
        return _expire(client, args)
    except ApiUnreachable as exc:
        print(f"netwatch silences: {exc} (is the daemon running, with this config?)", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiRefused as exc:
        print(f"netwatch silences: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1


def _list(client: Client, args: argparse.Namespace) -> int:
    query = [] if args.all else [("state", "active"), ("state", "pending")]
    doc = client.request("GET", "/api/v1/silences", query=query)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(render(doc.get("silences", [])))
    return 0


def _add(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, object] = {"matchers": args.matchers, "created_by": args.author, "comment": args.comment}
    if args.duration is not None:
        body["duration"] = args.duration
    if args.end is not None:
        body["ends_at"] = args.end
    if args.start is not None:
        body["starts_at"] = args.start
    doc = client.request("POST", "/api/v1/silences", body=body)
    print(doc["id"])
    return 0


def _expire(client: Client, args: argparse.Namespace) -> int:
    from netwatch.api.client import ApiRefused

    status = 0
    for silence_id in args.ids:
        try:
            client.request("DELETE", f"/api/v1/silences/{silence_id}")
        except ApiRefused as exc:
            if exc.status != 404:
                raise
            print(f"netwatch silences: no silence {silence_id}", file=sys.stderr)
            status = 1
        else:
            print(f"expired {silence_id}")
    return status


def _local(text: object) -> str:
    when = datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC).astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def render(silences: list[dict[str, Any]]) -> str:
    """Return the table ``netwatch silences list`` prints (times in local time)."""
    if not silences:
        return "no silences"
    rows = [("ID", "STATE", "STARTS", "ENDS", "HOLDING", "CREATED BY", "MATCHERS", "COMMENT")]
    for s in silences:
        matchers = " ".join(f"{m['label']}{m['op']}{json.dumps(m['value'], ensure_ascii=False)}" for m in s["matchers"])
        rows.append(
            (
                str(s["id"]),
                str(s["state"]),
                _local(s["starts_at"]),
                _local(s["ends_at"]),
                str(len(s.get("silencing", []))),
                str(s["created_by"]),
                matchers,
                str(s["comment"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows)
