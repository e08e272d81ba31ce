"""Line-protocol encoding: escaping, sanitising, contract types, what is dropped and counted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from netwatch.model import FieldValue, Sample
from netwatch.sink.lineproto import (
    INT64_MAX,
    INT64_MIN,
    TIME_MAX_NS,
    LineEncoder,
    sanitize_key,
    sanitize_measurement,
    sanitize_name,
    sanitize_string,
)

TS = 1_700_000_000_123_456_789


def line(
    measurement: str, tags: dict[str, str] | None = None, fields: dict[str, FieldValue] | None = None
) -> str | None:
    return LineEncoder().encode(Sample(measurement, tags or {}, fields or {"v": 1}, TS))


# -- escaping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "expected"),
    [
        ("cpu", {}, {"v": 1}, "cpu v=1i"),
        ("my cpu", {}, {"v": 1}, r"my\ cpu v=1i"),
        ("cpu,x", {}, {"v": 1}, r"cpu\,x v=1i"),
        ("a=b", {}, {"v": 1}, "a=b v=1i"),  # '=' needs no escape in a measurement
        ("m", {"site": "City Hall"}, {"v": 1}, r"m,site=City\ Hall v=1i"),
        ("m", {"port": "Gi1/0/1,2"}, {"v": 1}, r"m,port=Gi1/0/1\,2 v=1i"),
        ("m", {"k": "a=b"}, {"v": 1}, r"m,k=a\=b v=1i"),
        ("m", {"tag key": "v"}, {"v": 1}, r"m,tag\ key=v v=1i"),
        ("m", {"k,=": "v"}, {"v": 1}, r"m,k\,\==v v=1i"),
        ("m", {}, {"field key": 1}, r"m field\ key=1i"),
        ("m", {}, {"a,b=c": 1}, r"m a\,b\=c=1i"),
        ("m", {}, {"s": 'say "hi"'}, r'm s="say \"hi\""'),
        ("m", {}, {"s": "C:\\path\\"}, r'm s="C:\\path\\"'),
        ("m", {}, {"s": "a,b=c d"}, 'm s="a,b=c d"'),  # nothing but " and \ is escaped in strings
        ("m", {}, {"s": "two\nlines"}, 'm s="two\nlines"'),  # influxd keeps a newline inside quotes
        ("m", {"k": "ünïcödé ✓"}, {"v": 1}, r"m,k=ünïcödé\ ✓ v=1i"),
        ("m", {"k": 'quote"s'}, {"v": 1}, 'm,k=quote"s v=1i'),
    ],
)
def test_escaping(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], expected: str) -> None:
    """Measurements escape , and space; keys and tag values also =; strings escape " and \\."""
    assert line(measurement, tags, fields) == f"{expected} {TS}"


def test_tags_sorted_and_empty_values_omitted() -> None:
    """Tags come out sorted by key; an empty tag value (or key) is left out, not written as k=."""
    got = line("interface", {"site": "ch", "port": "xe-0/0/3", "link": "", "device": "core", "": "x"})
    assert got == f"interface,device=core,port=xe-0/0/3,site=ch v=1i {TS}"


def test_no_tags() -> None:
    """A sample without tags is just measurement, fields and timestamp."""
    assert line("m", {}, {"v": 1.5}) == f"m v=1.5 {TS}"


# -- sanitising --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("plain", "plain"),
        ("a\nb", "a b"),  # a line feed would end the line
        ("a\r\nb", "a  b"),
        ("tab\there", "tab here"),
        ("nul\x00", "nul "),
        ("del\x7f", "del "),
        ("trailing\\", "trailing/"),  # influxd: "invalid tag format"
        ("a\\\\b", "a/\\b"),  # influxd keeps \\ from a tag, VictoriaMetrics makes it \
        ("a\\,b", "a/,b"),
        ("a\\ b", "a/ b"),
        ("a\\=b", "a/=b"),
        ('a\\"b', 'a/"b'),  # influxd drops this backslash from a measurement or field key
        ("a\\b", "a\\b"),  # a backslash before anything else is stored as is
        ("C:\\Temp", "C:\\Temp"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("ünï\n", "ünï "),
    ],
)
def test_sanitize_name(raw: str, stored: str) -> None:
    """Names lose what InfluxDB cannot store: control characters, backslashes it reads as escapes."""
    assert sanitize_name(raw) == stored
    assert line("m", {"k": raw}) == line("m", {"k": stored})


def test_sanitize_measurement_leading_hash() -> None:
    """A measurement starting with # would be read as a comment and silently lost: it gets _."""
    assert sanitize_measurement("#temp") == "_temp"
    assert sanitize_measurement("temp#1") == "temp#1"
    assert line("#temp") == f"_temp v=1i {TS}"


def test_reserved_key_time_is_renamed() -> None:
    """Tag or field key 'time' becomes 'time_' (influxd rejects the point / drops the field)."""
    assert sanitize_key("time") == "time_"
    assert sanitize_key("timestamp") == "timestamp"
    assert line("m", {"time": "x"}, {"time": 5}) == f"m,time_=x time_=5i {TS}"


def test_keys_colliding_after_sanitising_later_wins() -> None:
    """Two keys that sanitise alike give one key (InfluxDB rejects duplicate tags); the later wins."""
    assert line("m", {"a\n": "1", "a ": "2"}) == rf"m,a\ =2 v=1i {TS}"
    assert line("m", {}, {"f\t": 1, "f ": 2, "g": 3}) == rf"m f\ =2i,g=3i {TS}"


def test_string_values_keep_control_characters() -> None:
    """String field values round-trip everything influxd stores; only lone surrogates change."""
    assert sanitize_string("a\x00b\r\n") == "a\x00b\r\n"
    assert sanitize_string("x\udcffy") == "x\ufffdy"
    assert line("m", {}, {"s": "x\udcffy"}) == f'm s="x\ufffdy" {TS}'


def test_empty_field_key_is_dropped_and_counted() -> None:
    """A field with an empty key cannot be written; the rest of the point still is."""
    enc = LineEncoder()
    got = enc.encode(Sample("m", {}, {"": 1, "ok": 2}, TS))
    assert got == f"m ok=2i {TS}"
    assert enc.stats.fields_bad_key == 1


# -- contract types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "field", "value", "written"),
    [
        # declared float: always a float, even when the probe gives an int or a bool
        ("ping", "rtt_avg_ms", 0, "rtt_avg_ms=0.0"),
        ("ping", "rtt_avg_ms", 12, "rtt_avg_ms=12.0"),
        ("ping", "rtt_avg_ms", 1.25, "rtt_avg_ms=1.25"),
        ("ping", "loss_pct", True, "loss_pct=1.0"),
        ("ping", "loss_pct", "33.5", "loss_pct=33.5"),
        ("interface", "in_bps", 2**64, "in_bps=1.8446744073709552e+19"),  # a float may be large
        ("optics", "rx_dbm", -1e-7, "rx_dbm=-1e-07"),
        # declared int: written with i; bools 0/1; integral floats rounded
        ("ping", "up", True, "up=1i"),
        ("ping", "up", False, "up=0i"),
        ("ping", "sent", 3, "sent=3i"),
        ("interface", "speed_bps", 1e10, "speed_bps=10000000000i"),
        ("system", "uptime_s", 12.5, "uptime_s=12i"),  # round half to even
        ("system", "uptime_s", 13.5, "uptime_s=14i"),
        ("ping", "received", "2", "received=2i"),
        ("interface", "speed_bps", INT64_MAX, f"speed_bps={INT64_MAX}i"),
        ("interface", "speed_bps", INT64_MIN, f"speed_bps={INT64_MIN}i"),
        # declared str: quoted
        ("device", "state", "up", 'state="up"'),
        ("device", "state", 5, 'state="5"'),
        ("device", "state", True, 'state="true"'),
        # not in the contract: the Python type decides (bool -> int)
        ("custom", "flag", True, "flag=1i"),
        ("custom", "n", 7, "n=7i"),
        ("custom", "x", 7.0, "x=7.0"),
        ("custom", "s", "text", 's="text"'),
        ("ping", "unknown_extra", False, "unknown_extra=0i"),
    ],
)
def test_contract_types(measurement: str, field: str, value: FieldValue, written: str) -> None:
    """A field the contract declares is written as that type, so its type never flips in InfluxDB."""
    assert line(measurement, {}, {field: value}) == f"{measurement} {written} {TS}"


# -- what is dropped -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_float_field_dropped_and_counted(value: float) -> None:
    """NaN and infinities have no line-protocol spelling: the field is left out and counted."""
    enc = LineEncoder()
    got = enc.encode(Sample("ping", {"device": "d"}, {"rtt_avg_ms": value, "up": 1}, TS))
    assert got == f"ping,device=d up=1i {TS}"
    assert enc.stats.fields_nonfinite == 1
    assert enc.stats.points == 1


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63) - 1, 10**30])
def test_int_outside_int64_dropped_and_counted(value: int) -> None:
    """A raw Counter64 never reaches InfluxDB (1.6 rejects it; VictoriaMetrics drops it silently)."""
    enc = LineEncoder()
    assert enc.encode(Sample("custom", {}, {"octets": value, "ok": 1}, TS)) == f"custom ok=1i {TS}"
    assert enc.stats.fields_out_of_range == 1


def test_declared_int_from_huge_float_is_out_of_range() -> None:
    """A float too large for int64 in a declared-int field is dropped, not wrapped."""
    enc = LineEncoder()
    assert enc.encode(Sample("interface", {}, {"speed_bps": 1e19}, TS)) is None
    assert enc.stats.fields_out_of_range == 1
    assert enc.stats.points_no_fields == 1


def test_uncoercible_value_dropped_and_counted() -> None:
    """'abc' for a declared int cannot be written as one: the field is dropped, not mistyped."""
    enc = LineEncoder()
    got = enc.encode(Sample("ping", {}, {"sent": "abc", "rtt_avg_ms": "fast", "up": 1}, TS))
    assert got == f"ping up=1i {TS}"
    assert enc.stats.fields_wrong_type == 2


def test_point_without_fields_left_is_dropped_and_counted() -> None:
    """A point whose every field was dropped produces no line, and is counted."""
    enc = LineEncoder()
    assert enc.encode(Sample("ping", {"device": "d"}, {"rtt_avg_ms": math.nan}, TS)) is None
    assert enc.encode(Sample("ping", {"device": "d"}, {}, TS)) is None
    assert enc.stats.points_no_fields == 2
    assert enc.stats.points_dropped == 2
    assert enc.stats.samples == 2


def test_none_field_is_absent() -> None:
    """A None value means 'no value': omitted quietly, not counted as an error."""
    enc = LineEncoder()
    got = enc.encode(Sample("ping", {}, {"rtt_avg_ms": None, "up": 0}, TS))  # type: ignore[dict-item]
    assert got == f"ping up=0i {TS}"
    assert enc.stats.fields_dropped == 0


@pytest.mark.parametrize("ts", [TIME_MAX_NS + 1, -TIME_MAX_NS - 1])
def test_timestamp_outside_influx_range_dropped(ts: int) -> None:
    """influxd refuses timestamps beyond ±9223372036854775806 ns: such a point is dropped."""
    enc = LineEncoder()
    assert enc.encode(Sample("m", {}, {"v": 1}, ts)) is None
    assert enc.stats.points_bad_time == 1
    assert enc.encode(Sample("m", {}, {"v": 1}, TIME_MAX_NS)) == f"m v=1i {TIME_MAX_NS}"


def test_empty_measurement_dropped() -> None:
    """A point needs a measurement name."""
    enc = LineEncoder()
    assert enc.encode(Sample("", {}, {"v": 1}, TS)) is None
    assert enc.stats.points_bad_measurement == 1


def test_drops_are_logged_once_per_field_and_reason() -> None:
    """A probe sending NaN every poll produces one warning, not one per poll."""
    enc = LineEncoder()
    with capture_logs() as logs:
        for _ in range(5):
            enc.encode(Sample("ping", {}, {"rtt_avg_ms": math.nan, "up": 1}, TS))
        enc.encode(Sample("ping", {}, {"jitter_ms": math.inf, "up": 1}, TS))
    drops = [e for e in logs if e["event"] == "lineproto_dropped"]
    assert [(e["field"], e["reason"]) for e in drops] == [
        ("rtt_avg_ms", "nonfinite"),
        ("jitter_ms", "nonfinite"),
    ]
    assert enc.stats.fields_nonfinite == 6


# -- the cache changes nothing --------------------------------------------------------------------

_names = st.text(min_size=0, max_size=8)
_values: st.SearchStrategy[FieldValue] = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)
)
_samples = st.builds(
    Sample,
    measurement=st.sampled_from(["ping", "interface", "device", "custom", "a b", "#x", ""]),
    tags=st.dictionaries(st.sampled_from(["device", "site", "port", "time", "a\n", "a "]), _names, max_size=4),
    fields=st.dictionaries(
        st.one_of(st.sampled_from(["up", "rtt_avg_ms", "speed_bps", "state", "time", ""]), _names),
        _values,
        max_size=5,
    ),
    time_ns=st.integers(min_value=0, max_value=TIME_MAX_NS),
)


@given(st.lists(_samples, max_size=30))
def test_cached_and_uncached_encoders_agree(samples: list[Sample]) -> None:
    """Caching escaped names is invisible: the same samples give the same lines and counts."""
    cached, uncached = LineEncoder(), LineEncoder(cache_size=0)
    assert cached.encode_many(samples + samples) == uncached.encode_many(samples + samples)
    assert cached.stats == uncached.stats


@given(st.lists(_samples, max_size=30))
def test_every_sample_is_encoded_or_counted(samples: list[Sample]) -> None:
    """samples == points + points_dropped: nothing disappears uncounted."""
    enc = LineEncoder()
    lines = enc.encode_many(samples)
    assert enc.stats.samples == len(samples)
    assert enc.stats.points == len(lines)
    assert enc.stats.points + enc.stats.points_dropped == len(samples)
