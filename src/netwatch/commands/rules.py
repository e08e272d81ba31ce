"""``netwatch rules test``: what would the rules have done on this data?

Replays recorded line protocol or hand-written series (:mod:`netwatch.alerting.replay`) through
the rules the config puts in force, and prints every transition with its time, and what would
have been sent. Run it before a reload, on the data of last week's incident or on a series that
spells out the case a rule is meant for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from netwatch.configbase import parse_duration

if TYPE_CHECKING:
    from netwatch.alerting.replay import Case, DiffLine, Replay
    from netwatch.alerting.rules import Rule

#: Issues printed before the rest are only counted.
MAX_ISSUES: Final = 50

_DESCRIPTION = """\
Replay series through the alert rules of a config and print every transition: when each
(rule, entity) would go pending, fire, resolve, start or stop flapping, with the summary
a receiver would get. The rules are exactly the daemon's: the built-ins with the config's
overrides and additions (alerts:). Device kinds, sites and spans come from the config's
devices and links.

SERIES is line protocol (recorded data: `influx_inspect export` output, or what netwatch
writes; '-' reads stdin; .gz is unpacked) or a YAML series file (.yaml, .yml) of
hand-written values and the transitions they should produce:

  interval: 10s
  start: 2026-01-01T00:00:00Z        # optional
  series:
    - measurement: optics
      tags: {device: core-fs31, port: ge-0/0/2}
      field: rx_dbm
      values: "-20x5 -24.5x20 -21x10"  # 5 samples of -20, 20 of -24.5, ...
  expect:                            # optional: exit 1 with a diff if they differ
    - {rule: optics_rx_low, entity: "core-fs31:ge-0/0/2", to: firing, at: 2m50s}

Values: 5 (one sample), 5x3 (three samples), 1+2x3 (1 3 5), _ (no sample), _x3 (three gaps).

This is the rule level. NOT applied: topology (a device behind a down parent is held as
unreachable), maintenance windows, silences, and routing (group_wait, repeat_interval,
send_resolved). A firing that lasts less than a route's group_wait pages nobody live.
"""

_EPILOG = """\
exit status: 0 replayed (and every expectation met), 1 an expectation not met or bad input
(config, series, unknown --rule), 2 usage error.
"""


def register(subparsers: Any) -> None:
    """Add ``netwatch rules test``."""
    from netwatch.cli import DEFAULT_CONFIG

    rules = subparsers.add_parser("rules", help="test alert rules against recorded or given series")
    actions = rules.add_subparsers(dest="rules_action", required=True, metavar="ACTION")
    test = actions.add_parser(
        "test",
        help="replay series through the rules and print the transitions",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    test.add_argument("series", nargs="+", metavar="SERIES", help="line-protocol file ('-': stdin) or YAML series file")
    test.add_argument(
        "--rule",
        action="append",
        metavar="NAME",
        help="only this rule (repeatable); expectations about other rules are not checked",
    )
    test.add_argument(
        "--step",
        type=_duration,
        metavar="DURATION",
        help="tick the engine this often (default: the series interval; the daemon ticks every 1s)",
    )
    test.add_argument(
        "--tail",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="keep ticking this long after the data ends, so keep_firing_for and absence rules play out "
        "(absence rules then see the end of the data as silence)",
    )
    test.add_argument(
        "--precision",
        choices=("ns", "us", "ms", "s"),
        default="ns",
        help="unit of line-protocol timestamps (default ns)",
    )
    test.add_argument("--pending", action="store_true", help="also print pending transitions")
    test.add_argument("--json", action="store_true", help="print JSON lines (one per transition) on stdout")
    rules.set_defaults(handler=run)


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return seconds


def run(args: argparse.Namespace) -> int:
    """Run ``netwatch rules test``; return the exit code."""
    try:
        return _test(args)
    except BrokenPipeError:
        # `... --json | head`: the reader has all it wants. Point stdout at /dev/null so that
        # the interpreter's final flush does not fail again with a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _test(args: argparse.Namespace) -> int:
    from netwatch import logs
    from netwatch.alerting import replay as rp
    from netwatch.alerting.rules import effective_rules
    from netwatch.cli import _load_or_report

    logs.configure("warning")  # to stderr, so that stdout holds only the transitions
    loaded = _load_or_report(Path(args.config))
    if loaded is None:
        return 1
    in_force = effective_rules(loaded.config.alerts)
    names = [r.name for r in in_force]
    disabled = sorted(r.name for r in loaded.config.alerts if not r.enabled)
    selected = in_force
    if args.rule:
        unknown = [n for n in args.rule if n not in names]
        for name in unknown:
            why = "is disabled in the config" if name in disabled else "is not a rule of the config"
            print(f"netwatch rules test: rule {name!r} {why}; rules in force: {', '.join(names)}", file=sys.stderr)
        if unknown:
            return 1
        selected = [r for r in in_force if r.name in args.rule]

    if args.series.count("-") > 1:
        print("netwatch rules test: '-' (stdin) can be given only once", file=sys.stderr)
        return 2
    cases: list[Case] = []
    issues: list[rp.InputIssue] = []
    for name in args.series:
        try:
            case = rp.load_case(name, precision=args.precision, stdin=sys.stdin)
        except rp.InputError as exc:
            issues.extend(exc.issues)
            continue
        issues.extend(rp.check_expected_rules(case, in_force, disabled))
        cases.append(case)
    if issues:
        for issue in issues[:MAX_ISSUES]:
            print(issue, file=sys.stderr)
        if len(issues) > MAX_ISSUES:
            print(f"... and {len(issues) - MAX_ISSUES} more", file=sys.stderr)
        print(f"netwatch rules test: {len(issues)} error(s) in the input; nothing was replayed", file=sys.stderr)
        return 1

    ok = True
    for case in cases:
        for warning in rp.check_reads(selected, case, loaded.inventory):
            print(f"warning: {warning}", file=sys.stderr)
        step_ns = round(args.step * rp.S) if args.step else case.step_ns
        try:
            result = rp.replay(
                selected,
                case.samples,
                start_ns=case.start_ns,
                end_ns=case.end_ns + round(args.tail * rp.S),
                step_ns=step_ns,
                inventory=loaded.inventory,
            )
        except ValueError as exc:
            print(f"{case.source}: {exc}", file=sys.stderr)
            return 1
        if len(cases) > 1 and not args.json:
            print(f"== {case.source}")
        if args.json:
            _print_json(case, result, pending=args.pending)
        else:
            _print_text(case, result, selected, pending=args.pending)
        if case.expect is not None:
            diff = rp.compare(case.expect, result.transitions, rules=args.rule)
            if not rp.matches(diff):
                ok = False
                _print_diff(case, diff, file=sys.stderr if args.json else sys.stdout)
            elif not args.json:
                checked = sum(1 for d in diff if d.mark == " ")
                print(f"expectations met ({checked} transition{'s' if checked != 1 else ''})")
        if len(cases) > 1 and not args.json:
            print()
    return 0 if ok else 1


def _print_json(case: Case, result: Replay, *, pending: bool) -> None:
    from netwatch.alerting.replay import as_dict

    for t in result.transitions:
        if t.to == "pending" and not pending:
            continue
        print(json.dumps({"input": case.source, **as_dict(t, case.start_ns)}))


def _print_text(case: Case, result: Replay, rules: list[Rule], *, pending: bool) -> None:
    from netwatch.alerting.replay import NOTICES, describe, format_offset, format_time, format_value

    shown = [t for t in result.transitions if pending or t.to != "pending"]
    rows = [
        (
            format_time(t.at_ns),
            format_offset(t.at_ns - case.start_ns),
            t.rule,
            t.entity,
            t.to,
            format_value(t.value),
            t.summary,
        )
        for t in shown
    ]
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for row in rows:
            cells = [row[i].rjust(widths[i]) if i in (1, 5) else row[i].ljust(widths[i]) for i in range(6)]
            print("  ".join([*cells, row[6]]))
    else:
        print("no transitions" if pending else "no notices")

    span = format_offset(result.end_ns - case.start_ns)
    print(f"-- {len(case.samples)} points over {span.lstrip('+')}, {len(rules)} rule{'s' if len(rules) != 1 else ''}")
    per_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for t in result.transitions:
        if t.to in NOTICES:
            per_rule[t.rule][t.to] += 1
    total = sum(sum(c.values()) for c in per_rule.values())
    if total:
        print(f"-- notices: {total} (rule level, before topology, maintenance and routing)")
        width = max(len(name) for name in per_rule)
        for name in sorted(per_rule):
            counts = per_rule[name]
            print(f"   {name.ljust(width)}  {describe({k: counts[k] for k in sorted(NOTICES, key=_order)})}")
    else:
        print("-- notices: none")

    open_keys = {(s.rule, s.entity) for s in result.open_at_end}
    fired = {(t.rule, t.entity, t.started_ns) for t in result.transitions if t.to == "firing"}
    quiet = [
        t
        for t in result.transitions
        if t.to == "pending" and (t.rule, t.entity, t.started_ns) not in fired and (t.rule, t.entity) not in open_keys
    ]
    if quiet and not pending:
        listed = ", ".join(f"{t.rule} {t.entity} at {format_offset(t.at_ns - case.start_ns)}" for t in quiet[:5])
        more = f" and {len(quiet) - 5} more" if len(quiet) > 5 else ""
        print(f"-- went pending but never fired: {listed}{more} (--pending shows them)")
    for s in result.open_at_end:
        state = "flapping" if s.flapping else s.state
        since = s.announced_ns if s.announced_ns is not None else s.started_ns
        when = f" since {format_offset(since - case.start_ns)}" if since is not None else ""
        print(f"-- still {state} at the end ({span}): {s.rule} {s.entity}{when}")


def _order(to: str) -> int:
    return ("firing", "resolved", "flapping", "flapping_stopped").index(to)


def _print_diff(case: Case, diff: list[DiffLine], *, file: Any) -> None:
    from netwatch.alerting.replay import format_offset

    missing = sum(1 for d in diff if d.mark == "-")
    extra = sum(1 for d in diff if d.mark == "+")
    print(
        f"{case.source}: expectations not met: {missing} expected transition(s) did not happen, "
        f"{extra} happened unexpectedly",
        file=file,
    )
    print("--- expected", file=file)
    print("+++ replayed", file=file)
    rows = [(d.mark, format_offset(d.at_ns - case.start_ns), d.rule, d.entity, d.to) for d in diff]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(row[i].ljust(widths[i]) for i in range(5)).rstrip(), file=file)
