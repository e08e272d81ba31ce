"""``netwatch alerts``: the incidents the running daemon has open, read from its API.

Exit status: 0 when the daemon answered (whether or not anything fires: use ``--json`` and count
to alert on it), 1 a config problem or the API refused (a remote ``api.listen`` without a
readable ``api.token_file``), 2 usage error, 3 the daemon cannot be reached (the message names
the URL).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

#: Exit status when nothing answers at the API's address.
EXIT_UNREACHABLE: Final = 3

_EPILOG = """\
exit status: 0 the daemon answered (firing or not), 1 bad config or the API refused,
2 usage error, 3 the daemon cannot be reached at its api.listen address.
"""


def register(subparsers: Any) -> None:
    """Add ``netwatch alerts``."""
    from netwatch.cli import DEFAULT_CONFIG

    alerts = subparsers.add_parser(
        "alerts",
        help="show the incidents the running daemon has open",
        description="Show the incidents the running daemon has open (from its API at api.listen): since\n"
        "when, how bad, what is dark behind each, and whether a silence, a maintenance window\n"
        "or a down parent holds its notices.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    alerts.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    alerts.add_argument("--url", help="the API's base URL (default: from api.listen in the config)")
    alerts.add_argument("--json", action="store_true", help="print the API's JSON")
    alerts.add_argument(
        "--all",
        action="store_true",
        help="also what is pending (not firing yet) and devices unreachable behind a down parent",
    )
    alerts.add_argument(
        "matchers", nargs="*", metavar="MATCHER", help="only alerts matching all of these, e.g. site=villa-parke"
    )
    alerts.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the open incidents; return the exit status."""
    from netwatch.alerting.silences import Matcher
    from netwatch.api.client import ApiRefused, ApiUnreachable, Client, ClientConfigError

    for text in args.matchers:
        try:
            Matcher.parse(text)
        except ValueError as exc:
            print(f"netwatch alerts: {exc}", file=sys.stderr)
            return 2
    try:
        client = Client.from_config(Path(args.config), url=args.url)
    except ClientConfigError as exc:
        print(f"netwatch alerts: {exc}", file=sys.stderr)
        return 1
    query = [("filter", m) for m in args.matchers]
    if args.all:
        query += [("pending", "true"), ("unreachable", "true")]
    try:
        doc = client.request("GET", "/api/v1/alerts", query=query)
    except ApiUnreachable as exc:
        print(f"netwatch alerts: {exc} (is the daemon running, with this config?)", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiRefused as exc:
        print(f"netwatch alerts: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    print(render(doc.get("alerts", []), now=datetime.now(UTC)))
    return 0


def _age(since: datetime, now: datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def render(alerts: list[dict[str, Any]], *, now: datetime) -> str:
    """Return the table ``netwatch alerts`` prints (times in local time)."""
    if not alerts:
        return "no open incidents"
    rows = [("SINCE", "FOR", "SEVERITY", "STATE", "RULE", "ENTITY", "IMPACT", "HELD", "SUMMARY")]
    for a in alerts:
        since_text, age = "-", "-"
        if a.get("since"):
            since = datetime.fromisoformat(str(a["since"]).replace("Z", "+00:00"))
            since_text = since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            age = _age(since, now)
        impact = (a.get("impact") or {}).get("count") or 0
        rows.append(
            (
                since_text,
                age,
                str(a.get("severity", "")),
                str(a.get("state", "")),
                str(a.get("rule", "")),
                str(a.get("entity", "")),
                f"{impact} dark" if impact else "-",
                str(a.get("held") or "-"),
                str(a.get("summary", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows)
