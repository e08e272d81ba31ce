"""Maintenance windows: one-off and recurring (DST-correct), coverage of everything behind a scope."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from netwatch.alerting.maintenance import MaintenanceCalendar, MaintenanceConfig, Window
from netwatch.alerting.topology import Topology

LA = ZoneInfo("America/Los_Angeles")
PARK = {"sw-vp", "ap-vp-1", "cam-vp-1"}


def topology() -> Topology:
    """City Hall feeds Police HQ and the Library; Fire Station 31 hangs off both; a park off it."""
    parents = {
        "core-ch": [],
        "core-pd": ["core-ch"],
        "core-lib": ["core-ch"],
        "core-fs31": ["core-pd", "core-lib"],
        "sw-vp": ["core-fs31"],
        "ap-vp-1": ["sw-vp"],
        "cam-vp-1": ["sw-vp"],
    }
    sites = {
        "core-ch": "city-hall",
        "core-pd": "police-hq",
        "core-lib": "main-library",
        "core-fs31": "fire-31",
        "sw-vp": "villa-parke",
        "ap-vp-1": "villa-parke",
        "cam-vp-1": "villa-parke",
    }
    kinds = {d: "router" for d in sites} | {"sw-vp": "switch", "ap-vp-1": "wifi_ap", "cam-vp-1": "camera"}
    links = {
        "span-ch-pd": ("core-ch", "core-pd"),
        "span-lib-ch": ("core-lib", "core-ch"),
        "span-pd-fs31": ("core-pd", "core-fs31"),
        "span-lib-fs31": ("core-lib", "core-fs31"),
        "span-fs31-vp": ("core-fs31", "sw-vp"),
    }
    return Topology(parents=parents, links=links, sites=sites, kinds=kinds)


def calendar(*configs: dict[str, Any]) -> MaintenanceCalendar:
    return MaintenanceCalendar([MaintenanceConfig.model_validate(c) for c in configs], topology())


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=LA)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_one_off_window_is_active_from_start_until_just_before_end() -> None:
    """A one-off window is active for start <= now < end, and reported in UTC with its reason."""
    cal = calendar(
        {
            "scope": {"link": "span-fs31-vp"},
            "start": "2026-12-02T06:00:00-08:00",
            "end": "2026-12-02T09:00:00-08:00",
            "reason": "splice repair",
        }
    )
    [window] = cal.active(local(2026, 12, 2, 6, 0))
    assert window == Window(0, ("link", "span-fs31-vp"), utc(2026, 12, 2, 14), utc(2026, 12, 2, 17), "splice repair")
    assert window.key == "maintenance/0/2026-12-02T14:00:00+00:00"
    assert cal.active(local(2026, 12, 2, 8, 59, 59))
    assert not cal.active(local(2026, 12, 2, 9, 0))
    assert not cal.active(local(2026, 12, 2, 5, 59, 59))
    assert window.contains(utc(2026, 12, 2, 15))


def test_unquoted_yaml_timestamps_and_dates_are_accepted() -> None:
    """YAML turns unquoted ISO timestamps into datetimes and dates into dates; both validate."""
    raw = yaml.safe_load(
        "- {scope: {device: core-fs31}, start: 2026-12-02T06:00:00-08:00, end: 2026-12-02T09:00:00-08:00}\n"
        "- {scope: {site: villa-parke}, every: daily, at: '02:00', duration: 1h, timezone: UTC, until: 2027-06-30}\n"
    )
    first, second = (MaintenanceConfig.model_validate(r) for r in raw)
    assert first.start == local(2026, 12, 2, 6)
    assert second.until == date(2027, 6, 30)
    assert first.scope_ref() == ("device", "core-fs31")
    assert second.scope_ref() == ("site", "villa-parke")


def test_weekly_window_keeps_its_local_time_across_spring_forward() -> None:
    """Sundays 02:00 Los Angeles for 2 h: 10:00Z in winter, 09:00Z in summer; on the night 02:00 does
    not exist the window starts at 03:00 PDT (10:00Z) and still lasts 2 h."""
    cal = calendar(
        {
            "scope": {"site": "villa-parke"},
            "every": "weekly",
            "days": ["sun"],
            "at": "02:00",
            "duration": "2h",
            "timezone": "America/Los_Angeles",
        }
    )
    ended = cal.ended_between(utc(2026, 2, 28), utc(2026, 3, 16))
    assert [(w.start, w.end) for w in ended] == [
        (utc(2026, 3, 1, 10), utc(2026, 3, 1, 12)),
        (utc(2026, 3, 8, 10), utc(2026, 3, 8, 12)),
        (utc(2026, 3, 15, 9), utc(2026, 3, 15, 11)),
    ]
    assert cal.active(local(2026, 3, 15, 2, 0))
    assert cal.active(local(2026, 3, 15, 3, 59))
    assert not cal.active(local(2026, 3, 15, 4, 0))
    assert not cal.active(local(2026, 3, 15, 1, 59))
    assert cal.active(local(2026, 3, 8, 4, 30))  # 03:00-05:00 PDT on the change night
    assert not cal.active(local(2026, 3, 9, 2, 30))  # a Monday


def test_weekly_window_across_fall_back() -> None:
    """Sundays 02:00 Los Angeles: 09:00Z before the change, 10:00Z on the fall-back Sunday itself."""
    cal = calendar(
        {
            "scope": {"device": "core-fs31"},
            "every": "weekly",
            "days": ["sun"],
            "at": "02:00",
            "duration": "1h",
            "timezone": "America/Los_Angeles",
        }
    )
    starts = [w.start for w in cal.ended_between(utc(2026, 10, 24), utc(2026, 11, 9))]
    assert starts == [utc(2026, 10, 25, 9), utc(2026, 11, 1, 10), utc(2026, 11, 8, 10)]


def test_daily_window_in_the_repeated_hour_happens_once() -> None:
    """01:30 happens twice on the fall-back night; the window starts once, at the first (PDT) one."""
    cal = calendar(
        {
            "scope": {"device": "core-pd"},
            "every": "daily",
            "at": "01:30",
            "duration": "30m",
            "timezone": "America/Los_Angeles",
        }
    )
    ended = cal.ended_between(utc(2026, 11, 1, 0), utc(2026, 11, 1, 23))
    assert [w.start for w in ended] == [utc(2026, 11, 1, 8, 30)]
    assert cal.active(utc(2026, 11, 1, 8, 45))
    assert not cal.active(utc(2026, 11, 1, 9, 45))  # 01:45 PST, the second 01:30 hour


def test_monthly_window_skips_months_without_the_day_and_stops_at_until() -> None:
    """day: 31 runs in January and March, not February; nothing starts after ``until``."""
    cal = calendar(
        {
            "scope": {"link": "span-ch-pd"},
            "every": "monthly",
            "day": 31,
            "at": "23:00",
            "duration": "3h",
            "timezone": "UTC",
            "until": "2026-05-30",
        }
    )
    starts = [w.start for w in cal.ended_between(utc(2026, 1, 1, 3), utc(2026, 12, 31))]
    assert starts == [utc(2026, 1, 31, 23), utc(2026, 3, 31, 23)]
    # The window of 31 December ends at 02:00 on 1 January.
    [previous] = cal.ended_between(utc(2026, 1, 1), utc(2026, 1, 1, 3))
    assert previous.start == utc(2025, 12, 31, 23)
    # Crosses midnight: still active the next morning.
    assert cal.active(utc(2026, 4, 1, 1, 0))


def test_until_as_a_time_with_offset_is_the_last_start() -> None:
    """``until`` with a time of day is inclusive of a start exactly then."""
    cal = calendar(
        {
            "scope": {"device": "core-pd"},
            "every": "daily",
            "at": "02:00",
            "duration": "1h",
            "timezone": "America/Los_Angeles",
            "until": "2026-06-03T02:00:00-07:00",
        }
    )
    starts = [w.start for w in cal.ended_between(utc(2026, 6, 1), utc(2026, 6, 10))]
    assert starts == [utc(2026, 6, 1, 9), utc(2026, 6, 2, 9), utc(2026, 6, 3, 9)]


def one_off(scope: dict[str, str]) -> MaintenanceCalendar:
    return calendar({"scope": scope, "start": "2026-12-02T06:00:00-08:00", "end": "2026-12-02T09:00:00-08:00"})


DURING = datetime(2026, 12, 2, 7, tzinfo=LA)
AFTER = datetime(2026, 12, 2, 10, tzinfo=LA)


def test_site_scope_covers_its_devices_what_is_behind_them_and_their_spans() -> None:
    """A park's window covers the park's devices and its lateral span, nothing upstream."""
    cal = one_off({"site": "villa-parke"})
    assert all(cal.covers("device", d, DURING) for d in PARK)
    assert cal.covers("link", "span-fs31-vp", DURING)
    assert cal.covers("site", "villa-parke", DURING)
    assert not cal.covers("device", "core-fs31", DURING)
    assert not cal.covers("link", "span-pd-fs31", DURING)
    assert not cal.covers("device", "ap-vp-1", AFTER)


def test_device_scope_covers_itself_everything_behind_it_and_their_spans() -> None:
    """Fire Station 31's router covers the park behind it, its ring spans and lateral; the park and
    fire-31 sites are covered as a whole; the routers on either side of it are not."""
    cal = one_off({"device": "core-fs31"})
    for dev in {"core-fs31", *PARK}:
        assert cal.covers("device", dev, DURING), dev
    for span in ("span-pd-fs31", "span-lib-fs31", "span-fs31-vp"):
        assert cal.covers("link", span, DURING), span
    assert cal.covers("site", "villa-parke", DURING)
    assert cal.covers("site", "fire-31", DURING)
    assert not cal.covers("device", "core-pd", DURING)
    assert not cal.covers("site", "police-hq", DURING)
    assert not cal.covers("link", "span-ch-pd", DURING)
    assert cal.scope(0).devices == {"core-fs31", *PARK}


def test_device_scope_on_a_ring_does_not_cover_what_keeps_another_path() -> None:
    """Work on the Library router does not hold Fire Station 31's alerts: it keeps its path via Police HQ."""
    cal = one_off({"device": "core-lib"})
    assert cal.covers("device", "core-lib", DURING)
    assert cal.covers("link", "span-lib-fs31", DURING)
    assert not cal.covers("device", "core-fs31", DURING)
    assert not cal.covers("device", "sw-vp", DURING)


def test_span_scope_covers_itself_and_everything_behind_it() -> None:
    """The park's lateral covers the park; a ring span with a second path covers only itself."""
    cal = one_off({"link": "span-fs31-vp"})
    assert cal.covers("link", "span-fs31-vp", DURING)
    assert all(cal.covers("device", d, DURING) for d in PARK)
    assert not cal.covers("device", "core-fs31", DURING)
    ring = one_off({"link": "span-pd-fs31"})
    assert ring.covers("link", "span-pd-fs31", DURING)
    assert not ring.covers("device", "core-fs31", DURING)
    assert not ring.covers("link", "span-lib-fs31", DURING)


def test_unknown_scope_id_covers_only_itself() -> None:
    """The loader reports unknown ids; the calendar does not crash on one."""
    cal = one_off({"device": "ghost"})
    assert cal.covers("device", "ghost", DURING)
    assert not cal.covers("device", "core-ch", DURING)


def test_covers_returns_the_covering_window_that_ends_last() -> None:
    """Overlapping windows hold alerts until the last of them ends."""
    cal = calendar(
        {"scope": {"device": "core-fs31"}, "start": "2026-12-02T06:00:00-08:00", "end": "2026-12-02T08:00:00-08:00"},
        {"scope": {"site": "villa-parke"}, "start": "2026-12-02T05:00:00-08:00", "end": "2026-12-02T09:00:00-08:00"},
    )
    window = cal.covers("device", "sw-vp", DURING)
    assert window is not None
    assert window.index == 1
    window = cal.covers("device", "core-fs31", DURING)
    assert window is not None
    assert window.index == 0
    assert [w.index for w in cal.active(DURING)] == [1, 0]


def test_ended_between_reports_each_ending_once_over_consecutive_ticks() -> None:
    """(t0, t1] is half-open on the left: ticking every 10 s, each window end is seen exactly once,
    in the tick that reaches it."""
    cal = calendar(
        {"scope": {"device": "core-pd"}, "every": "daily", "at": "02:00", "duration": "1h", "timezone": "UTC"},
        {"scope": {"link": "span-ch-pd"}, "start": "2026-06-02T02:00:00Z", "end": "2026-06-02T03:00:00Z"},
    )
    seen: list[tuple[int, datetime]] = []
    t = utc(2026, 6, 1, 0)
    while t < utc(2026, 6, 3, 12):
        seen.extend((w.index, w.end) for w in cal.ended_between(t, t + timedelta(seconds=10)))
        t += timedelta(seconds=10)
    assert seen == [(0, utc(2026, 6, 1, 3)), (0, utc(2026, 6, 2, 3)), (1, utc(2026, 6, 2, 3)), (0, utc(2026, 6, 3, 3))]
    assert [w.index for w in cal.ended_between(utc(2026, 6, 2, 3), utc(2026, 6, 2, 4))] == []
    assert cal.ended_between(utc(2026, 6, 2, 4), utc(2026, 6, 2, 3)) == []


def test_naive_times_are_a_bug() -> None:
    """The calendar compares instants; a naive datetime raises instead of guessing a zone."""
    cal = one_off({"device": "core-pd"})
    with pytest.raises(ValueError, match="naive"):
        cal.active(datetime(2026, 12, 2, 7))


BASE_ONE_OFF = {
    "scope": {"device": "core-pd"},
    "start": "2026-12-02T06:00:00-08:00",
    "end": "2026-12-02T09:00:00-08:00",
}
BASE_WEEKLY = {
    "scope": {"device": "core-pd"},
    "every": "weekly",
    "days": ["sun"],
    "at": "02:00",
    "duration": "2h",
    "timezone": "America/Los_Angeles",
}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (BASE_ONE_OFF | {"end": "2026-12-02T05:00:00-08:00"}, "must be after start"),
        (BASE_ONE_OFF | {"end": "2026-12-02T06:00:00-08:00"}, "must be after start"),
        (BASE_ONE_OFF | {"ends": "2026-12-02T09:00:00-08:00"}, "Extra inputs are not permitted"),
        (BASE_ONE_OFF | {"start": "2026-12-02T06:00:00"}, "timezone info"),
        ({"scope": {"device": "core-pd"}, "start": "2026-12-02T06:00:00-08:00"}, "needs start and end"),
        (BASE_ONE_OFF | {"timezone": "UTC"}, "timezone is for recurring windows"),
        (BASE_ONE_OFF | {"scope": {"device": "core-pd", "link": "span-ch-pd"}}, "exactly one of site, device or link"),
        (BASE_ONE_OFF | {"scope": {}}, "exactly one of site, device or link (got none)"),
        (BASE_ONE_OFF | {"scope": {"rack": "r1"}}, "Extra inputs are not permitted"),
        (BASE_WEEKLY | {"timezone": "America/Pasadena"}, "unknown time zone 'America/Pasadena'"),
        (BASE_WEEKLY | {"timezone": "../../etc/passwd"}, "unknown time zone"),
        ({k: v for k, v in BASE_WEEKLY.items() if k != "days"}, "a weekly window needs days"),
        ({k: v for k, v in BASE_WEEKLY.items() if k != "timezone"}, "a recurring window needs timezone"),
        ({k: v for k, v in BASE_WEEKLY.items() if k != "at"}, "a recurring window needs at"),
        (BASE_WEEKLY | {"days": ["sunday"]}, "days.0"),
        (BASE_WEEKLY | {"days": []}, "at least 1 item"),
        (BASE_WEEKLY | {"day": 3}, "day is for monthly windows"),
        (BASE_WEEKLY | {"every": "daily"}, "days is for weekly windows"),
        (BASE_WEEKLY | {"every": "monthly"}, "a monthly window needs day"),
        (BASE_WEEKLY | {"start": "2026-12-02T06:00:00-08:00"}, "start is for one-off windows"),
        (BASE_WEEKLY | {"at": 750}, 'write the time in quotes, e.g. at: "12:30"'),
        (BASE_WEEKLY | {"at": "25:00"}, "expected a local time HH:MM"),
        (BASE_WEEKLY | {"duration": "7d"}, "shorter than the weekly period"),
        (BASE_WEEKLY | {"duration": 0}, "greater than 0"),
        (BASE_WEEKLY | {"every": "hourly"}, "every"),
        (BASE_WEEKLY | {"every": "monthly", "days": None, "day": 32}, "less than or equal to 31"),
    ],
)
def test_bad_windows_are_rejected_with_a_clear_message(config: dict[str, Any], fragment: str) -> None:
    """Each mistake is reported in words an operator can act on."""
    with pytest.raises(ValidationError) as info:
        MaintenanceConfig.model_validate(config)
    assert fragment in str(info.value)


def test_good_recurrences_validate() -> None:
    """Daily, weekly and monthly windows with their own fields are accepted."""
    daily = MaintenanceConfig.model_validate(
        {k: v for k, v in BASE_WEEKLY.items() if k != "days"} | {"every": "daily", "duration": "23h"}
    )
    assert daily.duration == 23 * 3600
    monthly = MaintenanceConfig.model_validate(
        {k: v for k, v in BASE_WEEKLY.items() if k != "days"} | {"every": "monthly", "day": 15}
    )
    assert monthly.scope_ref() == ("device", "core-pd")
    weekly = MaintenanceConfig.model_validate(BASE_WEEKLY | {"at": "2:00"})
    assert weekly.at is not None
    assert weekly.at.hour == 2
