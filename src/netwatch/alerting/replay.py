r"""Replay series through the alert rules: what would they have done on recorded or given data?

``netwatch rules test`` (:mod:`netwatch.commands.rules`) is the front end; this module holds what
it does, so that tests can drive it directly:

* **Input.** InfluxDB line protocol (recorded data: ``influx_inspect export`` output, or the lines
  netwatch itself writes) and YAML files of hand-written series in a compact notation, with the
  transitions they are expected to produce (:func:`load_case`).
* **Replay.** The samples go, in time order, through a fresh in-memory
  :class:`~netwatch.alerting.engine.AlertEngine` that is ticked at every sample time and on a
  regular grid, so ``for``, ``keep_firing_for``, ``clear_checks``, absence and flap detection
  behave as they do live (:func:`replay`). Device kinds, sites and spans come from the config's
  inventory, as the daemon fills them in.
* **Checks.** Expected transitions against replayed ones (:func:`compare`), and warnings for
  series no rule reads (:func:`check_reads`), so that a typo does not pass silently.

The engine takes its time only from samples and ticks, so a replay is deterministic. Topology
(a device behind a down parent is held as unreachable), maintenance windows, silences and routing
(``group_wait``, repeats) are *not* applied: a replay shows what the rules decide, before
:class:`~netwatch.alerting.service.AlertService` decides who hears about it.

Line protocol (the subset InfluxDB 1.x writes and ``influx_inspect export`` emits)
    ``measurement[,tag=value...] field=value[,field=value...] timestamp``. In a measurement a
    backslash escapes ``,`` and space; in tag keys, tag values and field keys it escapes ``,``,
    ``=`` and space; any other backslash is kept, as influxd keeps it. String field values are
    double-quoted with ``\"`` and ``\\`` escaped and may span lines. Numbers are floats
    (``-24.5``, ``1e3``), integers (``12i``) or unsigned integers (``12u``); booleans are
    ``t``/``true``/``f``/``false`` in any of influxd's spellings. The timestamp is required
    (a replay needs the time of every point) and is in nanoseconds unless another precision is
    given. Blank lines, ``#`` comments and the ``CREATE DATABASE`` / ``CREATE RETENTION POLICY``
    lines of an export are skipped; a file ending in ``.gz`` is read through gzip.

Series files (YAML)::

    interval: 10s                     # time between two values of a series
    start: 2026-01-01T00:00:00Z       # optional; offsets below count from here
    series:
      - measurement: optics
        tags: {device: core-fs31, port: ge-0/0/2}
        field: rx_dbm
        values: "-20x5 -24.5x20 -21x10"
    recorded: outage.lp               # optional: line protocol, beside this file, replayed too
    expect:                           # optional: the transitions that must come out, no more
      - {rule: optics_rx_low, entity: "core-fs31:ge-0/0/2", to: firing, at: 2m50s}

    ``values`` is a list of terms separated by spaces: ``5`` (one sample), ``5x3`` (three samples
    of 5), ``1+2x3`` (three samples 1 3 5; ``1-2x3`` counts down), ``_`` (no sample: a gap) and
    ``_x3`` (three gaps). Unlike promtool, where ``1+2x3`` is four samples, the number after
    ``x`` is always the number of samples, so a series reads as durations. Series with the same
    measurement and tags become one point per time, with all their fields, as a probe writes them.
"""

from __future__ import annotations

import difflib
import gzip
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import IO, Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, ValidationError

from netwatch.alerting.engine import AlertEngine, AlertStatus, Transition, TransitionTo
from netwatch.alerting.rules import Rule, entity_of
from netwatch.config import format_path
from netwatch.configbase import Duration, Strict
from netwatch.contract import CONTRACT
from netwatch.inventory import Inventory
from netwatch.model import FieldValue, Sample
from netwatch.yamlpos import KeyPath, line_for, load_with_lines

S: Final = 1_000_000_000
#: Nanoseconds per unit of a line-protocol timestamp precision.
PRECISION_NS: Final[dict[str, int]] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": S}
#: Where a hand-written series starts when its file does not say.
DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Transitions that become notices (everything but ``pending``).
NOTICES: Final[frozenset[str]] = frozenset({"firing", "resolved", "flapping", "flapping_stopped"})
#: A replay ticks at most this many times (a week at 1 s is 604,800); past it, ask for --step.
MAX_TICKS: Final = 2_000_000
#: A series expands to at most this many values.
MAX_VALUES: Final = 1_000_000


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class InputIssue:
    """One thing wrong with an input file, placed by line (0: the file as a whole)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class InputError(Exception):
    """Input that cannot be replayed; carries every issue found."""

    def __init__(self, issues: Iterable[InputIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# --------------------------------------------------------------------------------------------
# Line protocol


class _Bad(Exception):
    """A point that cannot be read; ``pos`` is the offset in the text where reading stopped."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


# A backslash makes the scanner skip the next character, whatever it is (influxd's scanner does
# the same); only the escapes below are then removed, so "a\b" keeps its backslash.
_MEASUREMENT = re.compile(r"(?:\\[^\n]|[^, \n\\])*")
_KEY = re.compile(r"(?:\\[^\n]|[^,= \n\\])*")
_UNESCAPE_MEASUREMENT = re.compile(r"\\([, ])")
_UNESCAPE_KEY = re.compile(r"\\([,= ])")
_STRING = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNESCAPE_STRING = re.compile(r'\\(["\\])')
_BARE_VALUE = re.compile(r"[^, \n]*")
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d+")
_UINT = re.compile(r"\d+")
_TRUE: Final = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE: Final = frozenset({"f", "F", "false", "False", "FALSE"})
_DDL = re.compile(r"CREATE\s+(?:DATABASE|RETENTION\s+POLICY)\s", re.IGNORECASE)
_INT64: Final = 2**63


def _name(text: str, pos: int, pattern: re.Pattern[str], unescape: re.Pattern[str]) -> tuple[str, int]:
    match = pattern.match(text, pos)
    assert match is not None  # the patterns match the empty string
    raw = match.group()
    return (unescape.sub(r"\1", raw) if "\\" in raw else raw), match.end()


def _scalar(raw: str, key: str, pos: int) -> FieldValue:
    """Return an unquoted field value: float, 12i, 12u or a boolean."""
    if not raw:
        raise _Bad(pos, f"field {key!r} has no value")
    if raw[-1] in "iu":
        digits = raw[:-1]
        if (_INT if raw[-1] == "i" else _UINT).fullmatch(digits):
            number = int(digits)
            if not -_INT64 <= number < (_INT64 if raw[-1] == "i" else 2 * _INT64):
                raise _Bad(pos, f"field {key!r}: {raw} is out of range")
            return number
    elif _FLOAT.fullmatch(raw):
        value = float(raw)
        if not math.isfinite(value):
            raise _Bad(pos, f"field {key!r}: {raw} is out of range")
        return value
    elif raw in _TRUE:
        return True
    elif raw in _FALSE:
        return False
    raise _Bad(pos, f'field {key!r}: cannot read {raw!r} (a number, 12i, true/false or a "string")')


def _point(text: str, pos: int, scale: int) -> tuple[Sample, int]:
    """Read one point starting at ``pos``; return it and the offset of the newline that ends it."""
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    measurement, pos = _name(text, pos, _MEASUREMENT, _UNESCAPE_MEASUREMENT)
    if not measurement:
        raise _Bad(pos, "no measurement name")
    tags: dict[str, str] = {}
    while pos < n and text[pos] == ",":
        key, pos = _name(text, pos + 1, _KEY, _UNESCAPE_KEY)
        if not key:
            raise _Bad(pos, "empty tag key")
        if pos >= n or text[pos] != "=":
            raise _Bad(pos, f"tag {key!r} has no '=value'")
        value, pos = _name(text, pos + 1, _KEY, _UNESCAPE_KEY)
        if pos < n and text[pos] == "=":
            raise _Bad(pos, f"tag {key!r}: '=' in a tag value must be escaped as \\=")
        if not value:
            raise _Bad(pos, f"tag {key!r} has an empty value")
        tags[key] = value
    if pos >= n or text[pos] != " ":
        found = "the end of the line" if pos >= n or text[pos] == "\n" else repr(text[pos])
        raise _Bad(pos, f"expected a space and then the fields after the measurement and tags, found {found}")
    while pos < n and text[pos] == " ":
        pos += 1
    fields: dict[str, FieldValue] = {}
    while True:
        key, key_end = _name(text, pos, _KEY, _UNESCAPE_KEY)
        if not key:
            raise _Bad(pos, "expected field=value")
        if key_end >= n or text[key_end] != "=":
            raise _Bad(key_end, f"field {key!r} has no '=value'")
        pos = key_end + 1
        if pos < n and text[pos] == '"':
            match = _STRING.match(text, pos)
            if match is None:
                raise _Bad(pos, f"field {key!r}: the string value has no closing quote")
            raw = match.group(1)
            fields[key] = _UNESCAPE_STRING.sub(r"\1", raw) if "\\" in raw else raw
            pos = match.end()
        else:
            match = _BARE_VALUE.match(text, pos)
            assert match is not None
            fields[key] = _scalar(match.group(), key, pos)
            pos = match.end()
        if pos < n and text[pos] == ",":
            pos += 1
            continue
        if pos < n and text[pos] not in " \n":
            raise _Bad(pos, f"field {key!r}: unexpected {text[pos]!r} after the value")
        break
    end = text.find("\n", pos)
    end = n if end < 0 else end
    stamp = text[pos:end].strip()
    if not stamp:
        raise _Bad(pos, "no timestamp: a replay needs the time of every point")
    if not _INT.fullmatch(stamp):
        raise _Bad(pos + 1, f"timestamp {stamp!r} is not an integer")
    return Sample(measurement, tags, fields, int(stamp) * scale), end


def parse_lineproto(text: str, *, file: str = "-", precision: str = "ns") -> tuple[list[Sample], list[InputIssue]]:
    """Read every point of line-protocol ``text``; return the samples and an issue per bad line.

    A bad line is reported with its line number and column and skipped; the rest is still read,
    so that every problem can be reported at once.
    """
    scale = PRECISION_NS[precision]
    samples: list[Sample] = []
    issues: list[InputIssue] = []
    n = len(text)
    pos = 0
    line_no = 1
    while pos < n:
        eol = text.find("\n", pos)
        eol = n if eol < 0 else eol
        # ASCII whitespace only: influxd reads "\x85#m" as a measurement, not a comment.
        stripped = text[pos:eol].strip(" \t\r")
        if not stripped or stripped.startswith("#") or _DDL.match(stripped):
            pos, line_no = eol + 1, line_no + 1
            continue
        try:
            sample, end = _point(text, pos, scale)
        except _Bad as bad:
            at = min(bad.pos, n)
            line_start = text.rfind("\n", 0, at) + 1
            issues.append(
                InputIssue(file, line_no + text.count("\n", pos, at), f"column {at - line_start + 1}: {bad.message}")
            )
            end = text.find("\n", at)
            end = n if end < 0 else end
        else:
            samples.append(sample)
        line_no += text.count("\n", pos, end) + 1
        pos = end + 1
    return samples, issues


# --------------------------------------------------------------------------------------------
# Series files


def _scalar_text(value: object) -> object:
    """Let YAML numbers stand where text is meant (``port: 1``, ``values: 5``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _values_text(value: object) -> object:
    """Let a YAML list stand for the notation: [1, 2, null] is '1 2 _'."""
    if isinstance(value, list):
        return " ".join("_" if v is None else str(_scalar_text(v)) for v in value)
    return _scalar_text(value)


def _at_text(value: object) -> object:
    """Let an unquoted YAML timestamp stand for its text (a naive one is refused later, by name)."""
    return value.isoformat() if isinstance(value, datetime) else _scalar_text(value)


Text = Annotated[str, BeforeValidator(_scalar_text)]
_NUM = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TERM = re.compile(rf"(?P<a>[-+]?{_NUM}|_)(?:(?P<sign>[-+])(?P<b>{_NUM}))?(?:x(?P<n>\d+))?")


class SeriesSpec(Strict):
    """One hand-written series: one field of one measurement for one set of tags."""

    measurement: str = Field(min_length=1)
    tags: dict[Text, Text] = Field(default_factory=dict)
    field: str = Field(min_length=1)
    values: Annotated[str, BeforeValidator(_values_text)] = Field(description="e.g. '-20x5 -24.5x20 _x3 -21+0.5x6'")
    interval: Annotated[Duration, Field(gt=0)] | None = Field(default=None, description="default: the file's")


class ExpectSpec(Strict):
    """A transition the series must produce."""

    rule: str
    entity: Text
    to: TransitionTo
    at: Annotated[str, BeforeValidator(_at_text)] = Field(description="offset from start (2m50s) or an RFC 3339 time")


class SeriesFile(Strict):
    """A YAML series file (see the module docstring)."""

    interval: Annotated[Duration, Field(gt=0)] | None = None
    start: AwareDatetime | None = Field(default=None, description="RFC 3339 with a zone: 2026-01-01T00:00:00Z")
    series: list[SeriesSpec] = Field(default_factory=list)
    recorded: list[str] = Field(default_factory=list, description="line-protocol files, beside this file")
    expect: list[ExpectSpec] | None = None


@dataclass(frozen=True, slots=True)
class Expectation:
    """A transition that must come out of a replay, with the line that asked for it."""

    rule: str
    entity: str
    to: TransitionTo
    at_ns: int
    line: int


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """Where a hand-written series was given, for warnings about it."""

    measurement: str
    field: str
    tags: Mapping[str, str]
    interval_s: float
    line: int


@dataclass(frozen=True, slots=True)
class Case:
    """One input to replay: its samples (in time order), time span and expectations."""

    source: str
    samples: tuple[Sample, ...]
    start_ns: int
    #: The last moment the input covers (a series' trailing gaps included).
    end_ns: int
    #: The tick grid: the series interval, or the shortest gap between a series' samples.
    step_ns: int
    expect: tuple[Expectation, ...] | None = None
    series: tuple[SeriesRef, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def expand_values(text: str) -> list[float | None]:
    """Expand the compact notation into one value per interval (None: no sample); raise ValueError."""
    out: list[float | None] = []
    for index, term in enumerate(text.split(), start=1):
        match = _TERM.fullmatch(term)
        if match is None:
            raise ValueError(
                f"term {index} {term!r} is not a value; write 5, 5x3 (three samples), "
                "1+2x3 (1 3 5), _ (no sample) or _x3 (three gaps)"
            )
        count = int(match["n"]) if match["n"] is not None else 1
        if count < 1:
            raise ValueError(f"term {index} {term!r}: the count after x must be at least 1")
        if len(out) + count > MAX_VALUES:
            raise ValueError(f"more than {MAX_VALUES:,} values; replay recorded data as line protocol instead")
        if match["a"] == "_":
            if match["sign"]:
                raise ValueError(f"term {index} {term!r}: a gap (_) cannot be a ramp")
            out.extend([None] * count)
            continue
        if match["sign"] and match["n"] is None:
            raise ValueError(f"term {index} {term!r}: a ramp needs a count, e.g. {term}x5")
        first = float(match["a"])
        step = float(match["b"] or 0) * (-1 if match["sign"] == "-" else 1)
        if not (math.isfinite(first + step * count) and math.isfinite(step)):
            raise ValueError(f"term {index} {term!r} is out of range")
        out.extend(first + step * k for k in range(count))
    if not out:
        raise ValueError("no values")
    return out


def _typed(measurement: str, field_name: str, value: float) -> FieldValue:
    """Return a value as a probe would write it: an int where the data contract says int."""
    entry = CONTRACT.get(measurement)
    if entry is not None and entry[1].get(field_name) == "int" and value == int(value):
        return int(value)
    return value


def _issues_from_validation(exc: ValidationError, file: str, lines: dict[KeyPath, int]) -> list[InputIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        path: KeyPath = tuple(p for p in err["loc"] if p != "[key]")
        if err["type"] == "extra_forbidden":
            key = str(path[-1])
            allowed = {
                1: list(SeriesFile.model_fields),
                3: list(SeriesSpec.model_fields) if path[:1] == ("series",) else list(ExpectSpec.model_fields),
            }.get(len(path), [])
            hint = difflib.get_close_matches(key, allowed, n=1)
            message = (
                f"unknown key {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + (f"; allowed here: {', '.join(allowed)}" if allowed and not hint else "")
            )
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        where = format_path(path)
        issues.append(InputIssue(file, line_for(lines, path), f"{where}: {message}" if where else message))
    return issues


def _to_ns(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * S + delta.microseconds * 1000


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_NS: Final = {"ms": 1_000_000, "s": S, "m": 60 * S, "h": 3600 * S, "d": 86400 * S}


def offset_ns(text: str) -> int:
    """Return an offset written as a duration (``2m50s``, ``+1h0m5s``, ``-10s``, ``170``) in nanoseconds.

    The units are :func:`~netwatch.configbase.parse_duration`'s, counted exactly: an offset printed
    by :func:`format_offset` reads back to the same nanosecond, even days into a recording.
    """
    text = text.strip().replace(" ", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    pos, total = 0, Fraction(0)
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += Fraction(match[1]) * _UNIT_NS[match[2]]
        pos = match.end()
    if not body or pos != len(body):
        try:
            total = Fraction(body) * S
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"invalid duration {text!r}") from None
    return sign * round(total)


def _at_ns(at: str, start_ns: int) -> int:
    """Return the time an expectation names: an offset from the start, or a time with a zone."""
    try:
        return start_ns + offset_ns(at)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{at!r} is neither an offset (2m50s) nor a time (2026-01-01T00:02:50Z)") from None
    if when.tzinfo is None:
        raise ValueError(f"{at!r} has no time zone; add Z or +hh:mm, or give an offset such as 2m50s")
    return _to_ns(when)


def read_series_file(path: Path, text: str, *, precision: str = "ns") -> Case:
    """Read a YAML series file; raise :class:`InputError` with every issue."""
    file = str(path)
    raw, lines, problems = load_with_lines(text)
    issues = [
        InputIssue(file, p.line, f"{format_path(p.path)}: {p.message}" if p.path else p.message) for p in problems
    ]
    if raw is None and not issues:
        issues.append(InputIssue(file, 1, "the file is empty"))
    elif raw is not None and not isinstance(raw, dict):
        issues.append(InputIssue(file, 1, f"the top level must be a mapping, not {type(raw).__name__}"))
    if issues:
        raise InputError(issues)
    if isinstance(raw.get("recorded"), str):
        raw["recorded"] = [raw["recorded"]]
    try:
        spec = SeriesFile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_issues_from_validation(exc, file, lines)) from None

    recorded: list[Sample] = []
    for index, name in enumerate(spec.recorded):
        where = line_for(lines, ("recorded", index))
        lp_path = path.parent / name
        try:
            lp_samples, lp_issues = parse_lineproto(_read_text(lp_path), file=str(lp_path), precision=precision)
        except _Unreadable as exc:
            issues.append(InputIssue(file, where, f"recorded: {exc}"))
            continue
        issues.extend(lp_issues)
        recorded.extend(lp_samples)
    recorded = merge_points(recorded)
    if not spec.series and not spec.recorded:
        issues.append(InputIssue(file, 1, "nothing to replay: give series, recorded, or both"))
    if spec.series and spec.interval is None and any(s.interval is None for s in spec.series):
        issues.append(InputIssue(file, 1, "interval: required with series (the time between two values, e.g. 10s)"))
    if issues:
        raise InputError(issues)

    if spec.start is not None:
        start_ns = _to_ns(spec.start)
    elif recorded:
        start_ns = min(s.time_ns for s in recorded)
    else:
        start_ns = _to_ns(DEFAULT_START)

    points: dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, FieldValue]] = {}
    refs: list[SeriesRef] = []
    end_ns = max((s.time_ns for s in recorded), default=start_ns)
    for index, series in enumerate(spec.series):
        line = line_for(lines, ("series", index))
        try:
            values = expand_values(series.values)
        except ValueError as exc:
            issues.append(
                InputIssue(file, line_for(lines, ("series", index, "values")), f"series[{index}].values: {exc}")
            )
            continue
        interval = series.interval if series.interval is not None else spec.interval
        assert interval is not None
        step = round(interval * S)
        tags = tuple(sorted(series.tags.items()))
        refs.append(SeriesRef(series.measurement, series.field, dict(series.tags), interval, line))
        for k, value in enumerate(values):
            if value is not None:
                fields = points.setdefault((series.measurement, tags, start_ns + k * step), {})
                fields[series.field] = _typed(series.measurement, series.field, value)
        end_ns = max(end_ns, start_ns + (len(values) - 1) * step)

    expect: list[Expectation] | None = None
    if spec.expect is not None:
        expect = []
        for index, e in enumerate(spec.expect):
            line = line_for(lines, ("expect", index))
            try:
                at_ns = _at_ns(e.at, start_ns)
            except ValueError as exc:
                issues.append(InputIssue(file, line, f"expect[{index}].at: {exc}"))
                continue
            expect.append(Expectation(e.rule, e.entity, e.to, at_ns, line))
    if issues:
        raise InputError(issues)

    samples = [Sample(m, dict(tags), fields, t) for (m, tags, t), fields in points.items()]
    samples.extend(recorded)
    samples.sort(key=lambda s: s.time_ns)
    steps = [round(r.interval_s * S) for r in refs]
    return Case(
        source=file,
        samples=tuple(samples),
        start_ns=start_ns,
        end_ns=end_ns,
        step_ns=min(steps) if steps else infer_step(recorded),
        expect=tuple(expect) if expect is not None else None,
        series=tuple(refs),
    )


def merge_points(samples: Iterable[Sample]) -> list[Sample]:
    """Return points as InfluxDB stores them: one per series and time, later fields overwriting earlier.

    An export holds a point twice when it was in both a TSM file and the WAL; fed twice, it would
    count as two checks (two clear checks, two flap results) where the daemon made one.
    """
    merged: dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, FieldValue]] = {}
    for s in samples:
        merged.setdefault((s.measurement, tuple(sorted(s.tags.items())), s.time_ns), {}).update(s.fields)
    return [Sample(m, dict(tags), fields, t) for (m, tags, t), fields in merged.items()]


def infer_step(samples: Sequence[Sample]) -> int:
    """Return the shortest gap between two samples of one series (the poll interval), at least 1 s."""
    last: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    best: int | None = None
    for s in sorted(samples, key=lambda s: s.time_ns):
        key = (s.measurement, tuple(sorted(s.tags.items())))
        previous = last.get(key)
        if previous is not None and s.time_ns > previous:
            gap = s.time_ns - previous
            best = gap if best is None else min(best, gap)
        last[key] = s.time_ns
    return max(best or S, S)


class _Unreadable(Exception):
    """A file that cannot be read at all."""


def _read_text(path: Path, stdin: IO[str] | None = None) -> str:
    if str(path) == "-":
        return (stdin or sys.stdin).read()
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise _Unreadable(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise _Unreadable(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Unreadable(f"{path}: line {line} is not UTF-8 text") from None


def load_case(name: str, *, precision: str = "ns", stdin: IO[str] | None = None) -> Case:
    """Read one SERIES argument: a YAML series file (``.yaml``/``.yml``) or line protocol (``-``: stdin).

    Raises :class:`InputError` with every issue found.
    """
    path = Path(name)
    try:
        text = _read_text(path, stdin)
    except _Unreadable as exc:
        raise InputError([InputIssue(name, 0, str(exc).removeprefix(f"{path}: "))]) from None
    if path.suffix in (".yaml", ".yml"):
        return read_series_file(path, text, precision=precision)
    samples, issues = parse_lineproto(text, file=name, precision=precision)
    if issues:
        raise InputError(issues)
    if not samples:
        raise InputError([InputIssue(name, 0, "no points in the input")])
    samples = merge_points(samples)
    samples.sort(key=lambda s: s.time_ns)
    warnings: list[str] = []
    if precision == "ns" and samples[-1].time_ns < 10**16:
        warnings.append(
            f"{name}: the timestamps read as dates in 1970; if they are in seconds or milliseconds, "
            "give --precision s or ms"
        )
    return Case(
        source=name,
        samples=tuple(samples),
        start_ns=samples[0].time_ns,
        end_ns=samples[-1].time_ns,
        step_ns=infer_step(samples),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------------------------
# Replay


def daemon_tags(sample: Sample, inventory: Inventory) -> Sample:
    """Return ``sample`` with the tags netwatch's own samples carry and it lacks.

    A probe tags its samples with the device's site (and kind, where the data contract has it),
    and a port's samples with the span it ends and the span's lessee; the ``link`` measurement
    carries both ends' sites. Hand-written series need not spell these out for scopes to match.
    """
    allowed = CONTRACT[sample.measurement][0] if sample.measurement in CONTRACT else frozenset[str]()
    tags = sample.tags
    extra: dict[str, str] = {}

    def add(key: str, value: str | None) -> None:
        if value and key in allowed and key not in tags:
            extra[key] = value

    device = inventory.devices.get(tags.get("device", ""))
    if device is not None:
        add("site", device.site)
        add("kind", device.kind)
        port = tags.get("port")
        ref = next((p for p in device.target.ports if p.name == port), None) if port is not None else None
        if ref is not None:
            add("link", ref.link)
            add("lessee", ref.lessee)
    link = inventory.links.get(tags.get("link", ""))
    if link is not None and sample.measurement == "link":
        for key, value in link.tags().items():
            add(key, value)
    if not extra:
        return sample
    return Sample(sample.measurement, {**tags, **extra}, sample.fields, sample.time_ns)


def make_engine(rules: Sequence[Rule], inventory: Inventory | None, start_ns: int) -> AlertEngine:
    """Return an in-memory engine that sees devices as the daemon's does, started at ``start_ns``."""
    # The same lookups as daemon.open_alerting: an absence rule counts a device's configured
    # poll interval, and interface/optics samples (which carry no kind tag) get the device's kind.
    return AlertEngine(
        rules,
        None,
        clock=lambda: start_ns,
        interval=inventory.poll_interval if inventory is not None else None,
        device_kind=inventory.device_kind if inventory is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay produced."""

    transitions: tuple[Transition, ...]
    #: (rule, entity) pairs pending, firing or flapping when the replay ended.
    open_at_end: tuple[AlertStatus, ...]
    start_ns: int
    end_ns: int
    ticks: int


def replay(
    rules: Sequence[Rule],
    samples: Iterable[Sample],
    *,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    inventory: Inventory | None = None,
) -> Replay:
    """Feed ``samples`` through a fresh engine in time order and return every transition.

    The engine is ticked after the samples of each distinct time (so a timer due at a sample's
    time sees that sample, as an evaluation at that time would) and on a grid of ``step_ns``
    from ``start_ns`` to ``end_ns``, which covers gaps in the data and a tail after it. Transitions
    a timer decides (``for`` without samples, ``keep_firing_for``, absence) fall on the first tick
    at or after their moment; the daemon ticks every second, so ``step_ns`` of 1 s is exact.
    """
    if step_ns <= 0:
        raise ValueError("step_ns must be positive")
    if (end_ns - start_ns) // step_ns > MAX_TICKS:
        raise ValueError(
            f"{format_offset(end_ns - start_ns)} at a step of {format_offset(step_ns)} is more than "
            f"{MAX_TICKS:,} ticks; give a longer --step"
        )
    engine = make_engine(rules, inventory, start_ns)
    ordered = sorted(
        (daemon_tags(s, inventory) if inventory is not None else s for s in samples), key=lambda s: s.time_ns
    )
    out: list[Transition] = []
    ticks = 0
    grid = start_ns
    i, n = 0, len(ordered)
    while i < n:
        t = ordered[i].time_ns
        while grid < t:
            out.extend(engine.tick(grid))
            ticks += 1
            grid += step_ns
        j = i
        while j < n and ordered[j].time_ns == t:
            j += 1
        out.extend(engine.observe_many(ordered[i:j]))
        out.extend(engine.tick(t))
        ticks += 1
        if grid == t:
            grid += step_ns
        i = j
    last = ordered[-1].time_ns if ordered else None
    while grid <= end_ns:
        out.extend(engine.tick(grid))
        ticks += 1
        last = grid
        grid += step_ns
    if last is None or last < end_ns:
        out.extend(engine.tick(end_ns))
        ticks += 1
    return Replay(tuple(out), tuple(engine.status()), start_ns, max(end_ns, last or end_ns), ticks)


# --------------------------------------------------------------------------------------------
# Checks


def check_reads(rules: Sequence[Rule], case: Case, inventory: Inventory | None = None) -> list[str]:
    """Return a warning for each input no rule reads (a typo, or a scope that leaves it out).

    A hand-written series is checked one by one: its measurement and field, its tag keys, the
    rules' scopes, and (for absence rules) the device's configured interval. Recorded data is
    checked as a whole: it holds many fields no rule reads, but if none is read, say so.
    """
    warnings = list(case.warnings)
    for ref in case.series:
        where = f"{case.source}:{ref.line}"
        name = f"{ref.measurement}.{ref.field}"
        if ref.measurement not in CONTRACT:
            hint = difflib.get_close_matches(ref.measurement, list(CONTRACT), n=1)
            warnings.append(
                f"{where}: {ref.measurement!r} is not a measurement netwatch writes"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(sorted(CONTRACT))}")
            )
            continue
        tag_keys, fields = CONTRACT[ref.measurement]
        if ref.field not in fields:
            hint = difflib.get_close_matches(ref.field, list(fields), n=1)
            warnings.append(
                f"{where}: {ref.measurement} has no field {ref.field!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; fields: {', '.join(fields)}")
            )
            continue
        for key in ref.tags:
            if key not in tag_keys:
                hint = difflib.get_close_matches(key, list(tag_keys), n=1)
                warnings.append(
                    f"{where}: {key!r} is not a tag of {ref.measurement}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else f"; tags: {', '.join(sorted(tag_keys))}")
                )
        readers = [r for r in rules if r.measurement == ref.measurement and ref.field in _fields_read(r)]
        if not readers:
            read = sorted(
                {f"{r.measurement}.{f}" for r in rules if r.kind == "threshold" for f in _fields_read(r)}
                | {f"{r.measurement}.*" for r in rules if r.kind == "absent"}
            )
            warnings.append(f"{where}: no rule reads {name} (rules read: {', '.join(read) or 'nothing'})")
            continue
        probe = Sample(ref.measurement, ref.tags, {ref.field: 0.0}, 0)
        tags = dict(daemon_tags(probe, inventory).tags if inventory is not None else ref.tags)
        device = inventory.devices.get(tags.get("device", "")) if inventory is not None else None
        if device is not None:
            tags.setdefault("kind", device.kind)
        entity = entity_of(ref.tags)
        if not any(r.scope.includes(tags) for r in readers):
            names = ", ".join(r.name for r in readers)
            warnings.append(f"{where}: the scope of {names} leaves out {entity}, so no rule reads this series")
        if inventory is not None and "device" in ref.tags and device is None:
            warnings.append(
                f"{where}: device {ref.tags['device']!r} is not in the config, so scopes by kind or site "
                "do not see it and absence rules learn its interval from the gaps"
            )
        if device is not None and any(r.kind == "absent" for r in readers):
            configured = min((c.interval for c in device.checks), default=None)
            if configured is not None and not math.isclose(configured, ref.interval_s):
                warnings.append(
                    f"{where}: {device.id} is polled every {configured:g}s in the config but this series has "
                    f"a value every {ref.interval_s:g}s; absence rules count the configured interval"
                )
    if not case.series and case.samples:
        reads = {(r.measurement, f) for r in rules for f in _fields_read(r)}
        if not any(any((s.measurement, f) in reads for f in s.fields) for s in case.samples):
            have = sorted({f"{s.measurement}" for s in case.samples})
            warnings.append(
                f"{case.source}: none of the {len(case.samples)} points is read by the rules "
                f"(measurements in the input: {', '.join(have[:10])}{' ...' if len(have) > 10 else ''})"
            )
    if case.expect:
        entities = {entity_of(s.tags) for s in case.samples}
        for e in case.expect:
            if e.entity not in entities:
                hint = difflib.get_close_matches(e.entity, sorted(entities), n=1)
                warnings.append(
                    f"{case.source}:{e.line}: no series is about entity {e.entity!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )
    return warnings


def _fields_read(rule: Rule) -> set[str]:
    """Return the fields a rule looks at: its own and its ``where`` fields; an absence rule, any."""
    if rule.kind == "absent":
        return set(CONTRACT[rule.measurement][1]) if rule.measurement in CONTRACT else set()
    return {f for f in (rule.field, *(w[0] for w in rule.where)) if f is not None}


def check_expected_rules(case: Case, rules: Sequence[Rule], disabled: Iterable[str] = ()) -> list[InputIssue]:
    """Return an issue for each expectation naming a rule the config does not have (all rules, not a selection)."""
    names = {r.name for r in rules}
    off = set(disabled)
    issues = []
    for e in case.expect or ():
        if e.rule in names:
            continue
        if e.rule in off:
            issues.append(InputIssue(case.source, e.line, f"expect: rule {e.rule!r} is disabled in the config"))
            continue
        hint = difflib.get_close_matches(e.rule, sorted(names), n=1)
        issues.append(
            InputIssue(
                case.source,
                e.line,
                f"expect: unknown rule {e.rule!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; rules: {', '.join(sorted(names))}"),
            )
        )
    return issues


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One line of an expectation diff: `` `` both, ``-`` expected only, ``+`` replayed only."""

    mark: Literal[" ", "-", "+"]
    at_ns: int
    rule: str
    entity: str
    to: str


def compare(
    expected: Sequence[Expectation], transitions: Iterable[Transition], *, rules: Iterable[str] | None = None
) -> list[DiffLine]:
    """Return expected and replayed transitions merged in time order, marked as in a diff.

    ``pending`` transitions are compared only if an expectation names one; ``rules`` (a
    ``--rule`` selection) limits the comparison to those rules.
    """
    wanted = set(rules) if rules is not None else None
    exp = [e for e in expected if wanted is None or e.rule in wanted]
    kinds = NOTICES | ({"pending"} if any(e.to == "pending" for e in exp) else set())
    want = Counter((e.at_ns, e.rule, e.entity, e.to) for e in exp)
    got = Counter(
        (t.at_ns, t.rule, t.entity, t.to) for t in transitions if t.to in kinds and (wanted is None or t.rule in wanted)
    )
    lines = []
    for key in sorted(want | got):
        both = min(want[key], got[key])
        lines += [DiffLine(" ", *key)] * both
        lines += [DiffLine("-", *key)] * (want[key] - both)
        lines += [DiffLine("+", *key)] * (got[key] - both)
    return lines


def matches(diff: Iterable[DiffLine]) -> bool:
    """Return whether a :func:`compare` result has no differences."""
    return all(d.mark == " " for d in diff)


# --------------------------------------------------------------------------------------------
# Formatting shared by the text and JSON output


def format_time(ns: int) -> str:
    """Return ``ns`` as RFC 3339 UTC: 2026-01-01T00:02:50Z (with a fraction only when there is one)."""
    seconds, frac = divmod(ns, S)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return text + "Z"


def format_offset(ns: int) -> str:
    """Return a duration as +2m50s, +1h0m5s or +1d2h, which :func:`offset_ns` (an ``at:``) reads back."""
    sign = "-" if ns < 0 else "+"
    seconds, frac = divmod(abs(ns), S)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs}.{frac:09d}".rstrip("0") if frac else str(secs)
    units = [
        (days, str(days), "d"),
        (hours, str(hours), "h"),
        (minutes, str(minutes), "m"),
        (secs or frac, sec_text, "s"),
    ]
    used = [i for i, (value, _, _) in enumerate(units) if value]
    if not used:
        return f"{sign}0s"
    return sign + "".join(f"{text}{unit}" for _, text, unit in units[used[0] : used[-1] + 1])


def format_value(value: float | None) -> str:
    """Return a value as it reads best: -24.5, 3, or - for none."""
    if value is None:
        return "-"
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.6g}"


def describe(items: Mapping[str, int]) -> str:
    """Return counts as '1 firing, 2 resolved', in the order given."""
    return ", ".join(f"{n} {k}" for k, n in items.items() if n)


def as_dict(t: Transition, start_ns: int) -> dict[str, Any]:
    """Return a transition as a JSON-able dict (``--json``)."""
    return {
        "time": format_time(t.at_ns),
        "offset": format_offset(t.at_ns - start_ns),
        "offset_s": (t.at_ns - start_ns) / S,
        "rule": t.rule,
        "entity": t.entity,
        "to": t.to,
        "value": t.value,
        "severity": t.severity,
        "summary": t.summary,
        "incident": t.incident_id,
        "started": format_time(t.started_ns),
        "labels": dict(t.labels),
    }
