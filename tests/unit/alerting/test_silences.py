"""Silences: matchers, request validation (every problem at once), persistence and expiry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netwatch.alerting.silences import (
    EXPIRED_KEPT_S,
    MAX_SILENCES,
    Matcher,
    Silence,
    SilenceInvalid,
    Silences,
    SilenceSpec,
    parse_silence,
    rfc3339,
    silencing,
)
from netwatch.alerting.store import AlertStore

S = 1_000_000_000
NOW = 1_800_000_000 * S  # 2027-01-15T08:00:00Z
DAY = 86400.0
LABELS = {"rule": "device_down", "severity": "critical", "device": "sw-vp", "site": "villa-parke", "kind": "switch"}


def good(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "matchers": [{"label": "site", "op": "=", "value": "villa-parke"}],
        "duration": "2h",
        "created_by": "ana",
        "comment": "splicing the Villa Parke lateral",
    }
    body.update(over)
    return body


def problems_of(body: object, max_days: float = 7) -> list[str]:
    with pytest.raises(SilenceInvalid) as caught:
        parse_silence(body, now=NOW, max_duration_s=max_days * DAY)
    return caught.value.problems


# -- matchers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("site=villa-parke", LABELS, True),
        ("site=villa", LABELS, False),
        ("site!=brookside", LABELS, True),
        ("rule=~device_.*", LABELS, True),
        ("rule=~device", LABELS, False),  # anchored: the whole value must match
        ("rule!~span_.*", LABELS, True),
        ("lessee=university", LABELS, False),  # a missing label reads as ""
        ("lessee!=university", LABELS, True),
        ('site="villa-parke"', LABELS, True),  # amtool's quoting
        ('comment="a \\"quoted\\" value"', {"comment": 'a "quoted" value'}, True),
        ("  kind = switch ", LABELS, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    """Equality and anchored regexes, negations, missing labels as empty, quoted values."""
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("site", "is not a matcher"),
        ("=park", "is not a matcher"),
        ("9site=park", "is not a matcher"),
        ("rule=~device_(", "invalid regular expression"),
    ],
)
def test_bad_matchers_say_what_is_expected(text: str, fragment: str) -> None:
    """A malformed matcher names the problem."""
    with pytest.raises(ValueError, match=fragment):
        Matcher.parse(text)


def test_matcher_prints_as_it_parses() -> None:
    """str() of a matcher parses back to the same matcher."""
    for text in ("site=villa-parke", "rule=~device_.*", 'summary!="a b"'):
        m = Matcher.parse(text)
        assert Matcher.parse(str(m)) == m


# -- validation ---------------------------------------------------------------------------------


def test_good_request_with_duration_or_end() -> None:
    """A start defaults to now; duration or ends_at give the end; text is kept as given (trimmed)."""
    spec = parse_silence(good(), now=NOW, max_duration_s=7 * DAY)
    assert (spec.starts_ns, spec.ends_ns) == (NOW, NOW + 2 * 3600 * S)
    assert spec.matchers == (Matcher.build("site", "=", "villa-parke"),)
    assert (spec.created_by, spec.comment) == ("ana", "splicing the Villa Parke lateral")
    later = parse_silence(
        good(duration=None, starts_at="2027-01-15T09:00:00Z", ends_at="2027-01-15T02:30:00-08:00"),
        now=NOW,
        max_duration_s=7 * DAY,
    )
    assert (later.starts_ns, later.ends_ns) == (NOW + 3600 * S, NOW + 2.5 * 3600 * S)


def test_start_in_the_past_means_now_and_string_matchers_are_accepted() -> None:
    """curl-friendly: matchers may be 'label=value' strings; a start in the past starts now."""
    spec = parse_silence(
        good(matchers=["rule=~device_.*", "site!=brookside"], starts_at="2020-01-01T00:00:00Z"),
        now=NOW,
        max_duration_s=7 * DAY,
    )
    assert spec.starts_ns == NOW
    assert [str(m) for m in spec.matchers] == ['rule=~"device_.*"', 'site!="brookside"']


def test_every_problem_is_listed_at_once() -> None:
    """A bad regex, an unknown field, a missing comment and an end before the start: four problems."""
    found = problems_of(
        {
            "matchers": [{"label": "rule", "op": "=~", "value": "device_("}, {"label": "site", "value": "x"}],
            "starts_at": "2027-01-15T10:00:00Z",
            "ends_at": "2027-01-15T09:00:00Z",
            "created_by": "ana",
            "reason": "typo of comment",
        }
    )
    assert len(found) == 4, found
    text = "\n".join(found)
    assert "matchers.0: rule=~'device_(': invalid regular expression" in text
    assert "unknown field(s) 'reason'" in text
    assert "comment: required" in text
    assert "is not after starts_at" in text


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"matchers": []}, "matchers: required, a non-empty list"),
        ({"matchers": None}, "matchers: required"),
        ({"matchers": [{"label": "site", "op": "==", "value": "x"}]}, "unknown operator '=='"),
        ({"matchers": [{"label": "site", "value": "x", "regex": True}]}, "unknown field(s) 'regex'"),
        ({"matchers": [{"label": "9x", "value": "x"}]}, "is not a label name"),
        ({"matchers": [{"label": "site"}]}, "label and value are required strings"),
        ({"matchers": [42]}, "matchers.0: expected"),
        ({"matchers": ["site!=nowhere"]}, "every matcher also matches a missing label"),
        ({"matchers": ["rule=~.*"]}, "every matcher also matches a missing label"),
        ({"matchers": ["rule=~.+"]}, "together they match every alert"),
        ({"matchers": ["severity=~.+", "rule!~xyz"]}, "together they match every alert"),
        ({"matchers": [{"label": f"l{i}", "value": "x"} for i in range(40)]}, "matchers: at most 32"),
        ({"duration": "2h", "ends_at": "2027-01-15T10:00:00Z"}, "not both"),
        ({"duration": None}, "ends_at or duration: required"),
        ({"duration": "soon"}, "duration: invalid duration"),
        ({"duration": 0}, "duration: must be longer than 0"),
        ({"duration": "8d"}, "longer than api.silence_max_duration (7d)"),
        ({"duration": None, "ends_at": "2027-01-15T07:00:00Z"}, "is in the past"),
        ({"duration": None, "ends_at": "2027-01-15T10:00:00"}, "has no UTC offset"),
        ({"duration": None, "ends_at": "tomorrow"}, "is not an RFC 3339 time"),
        ({"starts_at": 5}, "starts_at: expected an RFC 3339 time"),
        ({"created_by": ""}, "created_by: required"),
        ({"comment": "   "}, "comment: required"),
        ({"comment": "x" * 3000}, "comment: longer than 2000"),
    ],
)
def test_bad_requests(over: dict[str, object], fragment: str) -> None:
    """Each mistake is refused with a message naming the field and what is wrong."""
    found = problems_of(good(**over))
    assert any(fragment in p for p in found), found


def test_not_an_object() -> None:
    """A body that is not a JSON object is refused with what it should hold."""
    assert "must be a JSON object" in problems_of(["site=x"])[0]


def test_narrow_regex_beside_a_broad_one_is_fine() -> None:
    """rule=~.+ is broad, but with site=villa-parke the silence only holds that site."""
    spec = parse_silence(good(matchers=["rule=~.+", "site=villa-parke"]), now=NOW, max_duration_s=DAY)
    assert len(spec.matchers) == 2


# -- the registry -------------------------------------------------------------------------------


def spec(minutes: float = 60, *matchers: str, start_in: float = 0) -> SilenceSpec:
    return SilenceSpec(
        matchers=tuple(Matcher.parse(m) for m in matchers or ("site=villa-parke",)),
        starts_ns=NOW + int(start_in * 60 * S),
        ends_ns=NOW + int((start_in + minutes) * 60 * S),
        created_by="ana",
        comment="splice",
    )


def test_states_follow_the_clock_and_match_only_when_active() -> None:
    """Pending before its start, active until its end, expired after; only active ones hold."""
    clock = [NOW]
    reg = Silences(clock=lambda: clock[0])
    now_one = reg.add(spec(60))
    later = reg.add(spec(60, start_in=30))
    assert (now_one.state(NOW), later.state(NOW)) == ("active", "pending")
    assert silencing(reg.active(), LABELS) == (now_one.id,)
    clock[0] = NOW + 45 * 60 * S
    assert silencing(reg.active(), LABELS) == tuple(sorted((now_one.id, later.id)))
    assert silencing(reg.active(), {**LABELS, "site": "brookside"}) == ()
    clock[0] = NOW + 61 * 60 * S
    assert silencing(reg.active(), LABELS) == (later.id,)
    assert [s.id for s in reg.all()] == [later.id, now_one.id]  # active first, then expired


def test_expire_ends_it_now_and_is_idempotent() -> None:
    """Expiring sets the end to now (a pending one never starts); again changes nothing; unknown is None."""
    clock = [NOW]
    reg = Silences(clock=lambda: clock[0])
    pending = reg.add(spec(60, start_in=30))
    clock[0] = NOW + 5 * S
    done = reg.expire(pending.id)
    assert done is not None
    assert (done.starts_ns, done.ends_ns, done.state(clock[0])) == (NOW + 5 * S, NOW + 5 * S, "expired")
    clock[0] = NOW + 50 * 60 * S
    assert reg.active() == []
    assert reg.expire(pending.id) == done
    assert reg.expire("no-such-id") is None


def test_silences_survive_a_restart_and_old_ones_are_pruned(tmp_path: Path) -> None:
    """Stored in alerts.db: a new registry on the same file has them; expired ones go after 5 days."""
    clock = [NOW]
    with AlertStore(tmp_path / "alerts.db") as store:
        reg = Silences(store, clock=lambda: clock[0])
        kept = reg.add(spec(60, "rule=~device_.*", "site=villa-parke"))
        short = reg.add(spec(1))
        reg.expire(short.id)
    with AlertStore(tmp_path / "alerts.db") as store:
        again = Silences(store, clock=lambda: clock[0])
        assert again.get(kept.id) == kept
        assert again.get(short.id) is not None
        clock[0] = NOW + int(EXPIRED_KEPT_S * S) + 2 * 3600 * S
        assert again.all() == []
    with AlertStore(tmp_path / "alerts.db") as store:
        assert Silences(store, clock=lambda: clock[0]).all() == []


def test_a_damaged_row_is_skipped_not_fatal(tmp_path: Path) -> None:
    """One unreadable silence is logged and skipped; the others load."""
    with AlertStore(tmp_path / "alerts.db") as store:
        reg = Silences(store, clock=lambda: NOW)
        ok = reg.add(spec(60))
        store.save_silence("broken", NOW + S, json.dumps({"matchers": [{"label": "x"}]}))
        store.save_silence("not-json", NOW + S, "{")
        assert [s.id for s in Silences(store, clock=lambda: NOW).all()] == [ok.id]


def test_too_many_silences_are_refused() -> None:
    """A runaway script cannot pile up silences without bound."""
    reg = Silences(clock=lambda: NOW)
    for _ in range(MAX_SILENCES):
        reg.add(spec(60))
    with pytest.raises(SilenceInvalid, match="expire some first"):
        reg.add(spec(60))


def test_api_view_uses_rfc3339_times() -> None:
    """The JSON view names state, matchers and times in UTC."""
    silence = Silence("id-1", (Matcher.parse("site=x"),), NOW, NOW + 3600 * S, "ana", "why", NOW, NOW)
    doc = silence.to_json(NOW)
    assert doc["state"] == "active"
    assert doc["starts_at"] == "2027-01-15T08:00:00Z" == rfc3339(NOW)
    assert doc["ends_at"] == "2027-01-15T09:00:00Z"
    assert doc["matchers"] == [{"label": "site", "op": "=", "value": "x"}]
