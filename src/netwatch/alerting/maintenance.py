"""Maintenance windows: planned work during which alerts are recorded, not sent.

A window is scoped to one site, device or span and covers everything behind it (see
:meth:`netwatch.alerting.topology.Topology.scope`): a site covers its devices, what is cut off
behind them and the spans touching any of those; a device covers itself, what is behind it and
the spans touching those; a span covers itself, what is behind it and the spans touching those.

Windows are one-off (``start``/``end``, ISO 8601 with an offset) or recurring (``every: daily |
weekly | monthly`` at a local time in an IANA ``timezone``, for ``duration``, optionally
``until``). Recurrence follows local wall-clock time, so a weekly 02:00 window stays at 02:00
across a DST change:

* a start that falls in the spring-forward gap (02:30 on the night clocks jump from 02:00 to
  03:00) is moved forward by the gap (03:30), as cron does; the window still happens;
* a start that falls in the repeated hour of the fall-back night happens once, at the first
  occurrence of that wall-clock time;
* ``duration`` is elapsed time: a 3 h window is 3 h long even across a change;
* ``day: 31`` (monthly) skips months without a 31st, as cron and systemd timers do.

The engine asks :meth:`MaintenanceCalendar.covers` before it sends; the daemon asks
:meth:`MaintenanceCalendar.ended_between` on each tick to send what still fires once a window
ends. Times passed in must be timezone-aware; windows are reported in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema, model_validator

from netwatch.configbase import Duration, Strict

if TYPE_CHECKING:  # topology imports inventory, which imports config, which imports this module
    from netwatch.alerting.topology import EntityKind, Scope, Topology

ScopeKind = Literal["site", "device", "link"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Every = Literal["daily", "weekly", "monthly"]

_WEEKDAY_INDEX: dict[str, int] = {name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
#: The shortest gap between two starts of each recurrence; a window must be shorter, or it never ends.
_PERIOD: dict[str, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=28)}
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def _clock(value: object) -> time:
    """Parse a local wall-clock time ``HH:MM``."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("give the time without an offset; the window's timezone applies")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 12:30 as the base-60 number 750.
        raise ValueError('write the time in quotes, e.g. at: "12:30" (unquoted, YAML reads 12:30 as a number)')
    if isinstance(value, str):
        match = _CLOCK.match(value.strip())
        if match:
            return time(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"expected a local time HH:MM such as '02:00', not {value!r}")


def _zone(value: str) -> str:
    """Check that a time zone name exists in the zone database."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'America/Los_Angeles'") from None
    return value


#: A local wall-clock time, written ``"02:00"``.
Clock = Annotated[
    time,
    BeforeValidator(_clock),
    WithJsonSchema({"type": "string", "pattern": r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$", "description": "HH:MM"}),
]
#: An IANA time zone name, checked against the zone database.
TimeZoneName = Annotated[str, AfterValidator(_zone)]


class ScopeConfig(Strict):
    """What a window covers: exactly one of a site, a device or a span (``link``), by id."""

    site: str | None = Field(default=None, min_length=1)
    device: str | None = Field(default=None, min_length=1)
    link: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in ("site", "device", "link") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of site, device or link (got {', '.join(given) or 'none'})")
        return self

    def ref(self) -> tuple[ScopeKind, str]:
        """Return (kind, id) of the scoped entity."""
        if self.site is not None:
            return ("site", self.site)
        if self.device is not None:
            return ("device", self.device)
        assert self.link is not None  # guaranteed by _exactly_one
        return ("link", self.link)


class MaintenanceConfig(Strict):
    """One maintenance window: a scope, and either ``start``/``end`` or a recurrence.

    One-off: ``start`` and ``end``, ISO 8601 with an offset. Recurring: ``every`` with ``at``,
    ``duration`` and ``timezone``; ``days`` for weekly, ``day`` for monthly; optional ``until``
    (a date: the last local day a window may start; a time with an offset: the last start).
    """

    scope: ScopeConfig
    reason: str = Field(default="", description="why, for the people reading the recorded alerts")
    start: AwareDatetime | None = Field(default=None, description="one-off: start, ISO 8601 with offset")
    end: AwareDatetime | None = Field(default=None, description="one-off: end, ISO 8601 with offset")
    every: Every | None = Field(default=None, description="recurring: daily, weekly or monthly")
    at: Clock | None = Field(default=None, description="recurring: local start time, HH:MM")
    duration: Duration | None = Field(default=None, gt=0, description="recurring: how long each window lasts")
    days: list[Weekday] | None = Field(default=None, min_length=1, description="weekly: days of the week")
    day: int | None = Field(default=None, ge=1, le=31, description="monthly: day of the month")
    timezone: TimeZoneName | None = Field(default=None, description="recurring: IANA zone of `at`")
    until: AwareDatetime | date | None = Field(default=None, description="recurring: no window starts after this")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[str] = []
        if self.every is None:
            for key in ("at", "duration", "days", "day", "timezone", "until"):
                if getattr(self, key) is not None:
                    problems.append(f"{key} is for recurring windows (set every), not one-off ones")
            if self.start is None or self.end is None:
                problems.append("a one-off window needs start and end; a recurring one needs every")
            elif self.end <= self.start:
                problems.append(f"end {self.end.isoformat()} must be after start {self.start.isoformat()}")
        else:
            for key in ("start", "end"):
                if getattr(self, key) is not None:
                    problems.append(f"{key} is for one-off windows; a recurring window uses at and duration")
            for key in ("at", "duration", "timezone"):
                if getattr(self, key) is None:
                    problems.append(f"a recurring window needs {key}")
            if self.every == "weekly" and self.days is None:
                problems.append("a weekly window needs days, e.g. days: [sun]")
            if self.every != "weekly" and self.days is not None:
                problems.append("days is for weekly windows")
            if self.every == "monthly" and self.day is None:
                problems.append("a monthly window needs day (1..31)")
            if self.every != "monthly" and self.day is not None:
                problems.append("day is for monthly windows")
            period = _PERIOD[self.every]
            if self.duration is not None and timedelta(seconds=self.duration) >= period:
                problems.append(f"duration must be shorter than the {self.every} period ({period.days} d)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def scope_ref(self) -> tuple[ScopeKind, str]:
        """Return (kind, id) of the scoped site, device or span, for the loader's cross-checks."""
        return self.scope.ref()


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of a maintenance window, in UTC: active while ``start <= now < end``.

    Attributes:
        index: position of the window in the config's ``maintenance`` list.
        scope: (kind, id) the window is scoped to.
        start: when it begins (UTC).
        end: when it ends (UTC).
        reason: the config's reason.
    """

    index: int
    scope: tuple[ScopeKind, str]
    start: datetime
    end: datetime
    reason: str = ""

    @property
    def key(self) -> str:
        """Return a stable id of this occurrence, e.g. ``maintenance/2/2026-12-02T14:00:00+00:00``."""
        return f"maintenance/{self.index}/{self.start.isoformat()}"

    def contains(self, now: datetime) -> bool:
        """Return whether ``now`` falls in the window."""
        return self.start <= _aware(now) < self.end


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    config: MaintenanceConfig
    scope: Scope
    sites: frozenset[str]  # sites every device of which the window covers


class MaintenanceCalendar:
    """The maintenance windows of a config, resolved against the topology once at build time."""

    def __init__(self, configs: Sequence[MaintenanceConfig], topology: Topology) -> None:
        """Resolve each window's coverage.

        Args:
            configs: the config's ``maintenance`` list, in order (a window's index is its position).
            topology: the plant's topology; a scope id it does not know covers only itself (the
                config loader reports unknown ids).
        """
        known = set(topology.devices)
        entries = []
        for index, cfg in enumerate(configs):
            kind, ident = cfg.scope_ref()
            scope = topology.scope(kind, ident)
            sites = {topology.site_of(d) for d in scope.devices if d in known}
            covered_sites = frozenset(
                s for s in sites if topology.devices_at(s) and topology.devices_at(s) <= scope.devices
            )
            if kind == "site":
                covered_sites |= {ident}
            entries.append(_Entry(index, cfg, scope, covered_sites))
        self._entries: tuple[_Entry, ...] = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def active(self, now: datetime) -> list[Window]:
        """Return the windows active at ``now`` (``start <= now < end``), by start then index."""
        now = _aware(now)
        # Active at now <=> started in (now - length, now].
        found = [w for e in self._entries for w in _starting(e, now - _length(e.config), now)]
        return sorted(found, key=lambda w: (w.start, w.index))

    def covers(self, entity_kind: EntityKind, entity_id: str, now: datetime) -> Window | None:
        """Return the active window that covers a site, device or span at ``now``, or None.

        A device or span is covered when it is in an active window's scope. A site is covered when
        a window is scoped to it, or covers every one of its devices. When several windows cover
        the entity, the one that ends last is returned: alerts stay held until then (re-ask when a
        window ends; the next one may still cover it).
        """
        best: Window | None = None
        for window in self.active(now):
            entry = self._entries[window.index]
            if entity_kind == "device":
                hit = entity_id in entry.scope.devices
            elif entity_kind == "link":
                hit = entity_id in entry.scope.links
            else:
                hit = entity_id in entry.sites
            if hit and (best is None or window.end > best.end):
                best = window
        return best

    def scope(self, index: int) -> Scope:
        """Return what the window at ``index`` in the config covers."""
        return self._entries[index].scope

    def ended_between(self, t0: datetime, t1: datetime) -> list[Window]:
        """Return the windows that ended in ``(t0, t1]``, by end then index.

        Half-open on the left, so a daemon calling it with consecutive ticks (t0 = previous t1)
        sees each ending exactly once.
        """
        t0, t1 = _aware(t0), _aware(t1)
        if t1 <= t0:
            return []
        found: list[Window] = []
        for entry in self._entries:
            # Ended in (t0, t1] <=> started in (t0 - length, t1 - length].
            length = _length(entry.config)
            found.extend(_starting(entry, t0 - length, t1 - length))
        return sorted(found, key=lambda w: (w.end, w.index))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass a timezone-aware time")
    return moment.astimezone(UTC)


def _length(cfg: MaintenanceConfig) -> timedelta:
    if cfg.every is None:
        # Both set: guaranteed by the validator.
        assert cfg.start is not None
        assert cfg.end is not None
        return cfg.end - cfg.start
    assert cfg.duration is not None
    return timedelta(seconds=cfg.duration)


def _starting(entry: _Entry, lo: datetime, hi: datetime) -> Iterator[Window]:
    """Yield the occurrences of an entry that start in ``(lo, hi]``, oldest first."""
    cfg = entry.config
    ref = cfg.scope_ref()
    length = _length(cfg)
    if cfg.every is None:
        assert cfg.start is not None
        start = cfg.start.astimezone(UTC)
        if lo < start <= hi:
            yield Window(entry.index, ref, start, start + length, cfg.reason)
        return
    for start in _starts(cfg, lo, hi):
        if start > lo:
            yield Window(entry.index, ref, start, start + length, cfg.reason)


def _starts(cfg: MaintenanceConfig, lo: datetime, hi: datetime) -> Iterator[datetime]:
    """Yield the recurrence's starts in ``[lo, hi]``, in UTC, oldest first."""
    assert cfg.every is not None
    assert cfg.at is not None
    assert cfg.timezone is not None
    if hi < lo:
        return
    zone = ZoneInfo(cfg.timezone)
    weekdays = {_WEEKDAY_INDEX[d] for d in cfg.days or ()}
    # A local date's start lies within a day of its UTC date, so one day of margin each side.
    day = lo.astimezone(zone).date() - timedelta(days=1)
    last_day = hi.astimezone(zone).date() + timedelta(days=1)
    while day <= last_day:
        if (
            cfg.every == "daily"
            or (cfg.every == "weekly" and day.weekday() in weekdays)
            or (cfg.every == "monthly" and day.day == cfg.day)
        ):
            # fold=0: a time in the spring-forward gap resolves with the offset before the change
            # (02:30 becomes 03:30 local); a repeated fall-back time resolves to its first occurrence.
            start = datetime.combine(day, cfg.at, tzinfo=zone).astimezone(UTC)
            if _before_until(cfg.until, day, start) and lo <= start <= hi:
                yield start
        day += timedelta(days=1)


def _before_until(until: datetime | date | None, day: date, start: datetime) -> bool:
    if until is None:
        return True
    if isinstance(until, datetime):
        return start <= until
    return day <= until
