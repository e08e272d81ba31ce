"""Replaying series through the rules: line protocol in, series notation, timing as live, diffs."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from netwatch.alerting import replay as rp
from netwatch.alerting.engine import Transition
from netwatch.alerting.rules import Rule, RuleConfig, effective_rules
from netwatch.config import load_config
from netwatch.configbase import parse_duration
from netwatch.inventory import Inventory
from netwatch.model import FieldValue, Sample
from netwatch.sink.lineproto import LineEncoder, sanitize_key, sanitize_measurement, sanitize_name, sanitize_string

S = rp.S
T0 = 1_772_000_000 * S

CONFIG = """\
sites: [{id: park, name: Park}, {id: hq, name: HQ}]
devices:
  - {id: r1, site: hq, kind: router, address: 10.0.0.1, checks: [ping], interval: 10s, timeout: 5s}
  - {id: sw-a, site: park, kind: switch, address: 10.0.0.2, checks: [ping], interval: 10s, timeout: 5s,
     parents: [r1], ports: [xe-0/0/2]}
links:
  - {id: span-1, a: {device: r1, port: xe-0/0/0}, b: {device: sw-a, port: xe-0/0/1}, lessee: uni}
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    (tmp_path / "netwatch.yaml").write_text(CONFIG)
    inv: Inventory = load_config(tmp_path / "netwatch.yaml").inventory
    return inv


def rules(*names: str, **overrides: dict[str, Any]) -> list[Rule]:
    configs = [RuleConfig.model_validate({"name": n, **o}) for n, o in overrides.items()]
    return [r for r in effective_rules(configs) if not names or r.name in names]


def series(measurement: str, tags: dict[str, str], field: str, values: str, *, every_s: float = 10) -> list[Sample]:
    return [
        Sample(measurement, tags, {field: v}, T0 + round(k * every_s * S))
        for k, v in enumerate(rp.expand_values(values))
        if v is not None
    ]


def run(
    rule_set: list[Rule], samples: list[Sample], *, step_s: float = 10, tail_s: float = 0, inv: Inventory | None = None
) -> rp.Replay:
    end = max(s.time_ns for s in samples) + round(tail_s * S)
    return rp.replay(rule_set, samples, start_ns=T0, end_ns=end, step_ns=round(step_s * S), inventory=inv)


def seen(result: rp.Replay, *, pending: bool = False) -> list[tuple[str, str, str]]:
    """(offset, rule, to) of each transition: what the operator reads."""
    return [(rp.format_offset(t.at_ns - T0), t.rule, t.to) for t in result.transitions if pending or t.to != "pending"]


OPTICS = {"device": "sw-a", "port": "xe-0/0/1"}


# -- timing as live ------------------------------------------------------------------------------


def test_fade_fires_once_after_for_and_resolves_after_clear_checks() -> None:
    """Below -24 dBm from +50s: pending then, firing 2m later; -23 (above threshold, not past
    clear -22) holds it; the second -21 in a row resolves it (clear_checks: 2)."""
    samples = series("optics", OPTICS, "rx_dbm", "-20x5 -24.5x20 -23x5 -21x10")
    result = run(rules("optics_rx_low"), samples)
    assert seen(result, pending=True) == [
        ("+50s", "optics_rx_low", "pending"),
        ("+2m50s", "optics_rx_low", "firing"),
        ("+5m10s", "optics_rx_low", "resolved"),
    ]
    firing = result.transitions[1]
    assert firing.value == -24.5
    assert firing.entity == "sw-a:xe-0/0/1"
    assert "-24.5 dBm is below -24 dBm" in firing.summary
    assert result.open_at_end == ()


def test_outage_shorter_than_for_sends_nothing() -> None:
    """A dip that lasts 1m20s of a 2m `for` goes pending and quietly back: no notice."""
    samples = series("optics", OPTICS, "rx_dbm", "-20x5 -25x8 -20x10")
    result = run(rules("optics_rx_low"), samples)
    assert seen(result) == []
    assert seen(result, pending=True) == [("+50s", "optics_rx_low", "pending")]


def test_clearing_sample_at_the_deadline_wins() -> None:
    """At the moment `for` is up the sample of that moment counts first, as an evaluation then would:
    bad for 12 polls (110 s of proof) and good at +2m50s is not a page."""
    samples = series("optics", OPTICS, "rx_dbm", "-20x5 -25x12 -20x5")
    assert seen(run(rules("optics_rx_low"), samples, step_s=1)) == []


def test_port_toggling_every_poll_gives_a_flapping_notice_not_thirty_pages() -> None:
    """interface_down on a port toggling for 60 polls: one firing, one flapping, then quiet until
    it settles: flapping_stopped and resolved. Four notices, not thirty pages and thirty resolves."""
    samples = series("interface", OPTICS, "oper_up", "1x10 " + "0 1 " * 30 + "1x40")
    result = run(rules("interface_down"), samples)
    tos = [to for _, _, to in seen(result)]
    assert tos == ["firing", "flapping", "flapping_stopped", "resolved"]
    assert len(result.transitions) == 4


def test_device_silent_uses_the_configured_interval(inventory: Inventory) -> None:
    """device_silent (absent_after: 3) on r1, polled every 10 s: last sample at +50s, so it fires
    at +1m20s, found by a grid tick in the gap; the next sample resolves it."""
    up = {"device": "r1", "site": "hq", "kind": "router"}
    samples = series("device", up, "up", "1x6 _x9 1x3")
    result = run(rules("device_silent", "device_down"), samples, inv=inventory)
    assert seen(result) == [("+1m20s", "device_silent", "firing"), ("+2m30s", "device_silent", "resolved")]
    assert result.transitions[0].started_ns == T0 + 80 * S


def test_absence_waits_for_the_tick_after_its_deadline() -> None:
    """With a coarse --step the silence is found at the first tick past the deadline, and the
    notice still says when it started (the incident id does not move)."""
    samples = series("device", {"device": "r1"}, "up", "1x6 _x20 1")
    fine = run(rules("device_silent"), samples, step_s=1).transitions[0]
    coarse = run(rules("device_silent"), samples, step_s=60).transitions[0]
    assert fine.at_ns == T0 + 80 * S
    assert coarse.at_ns == T0 + 120 * S
    assert coarse.incident_id == fine.incident_id


def test_keep_firing_for_resolves_only_in_the_tail() -> None:
    """device_rebooted keeps firing 10m after the reboot flag clears: the data ends first, so it is
    still open at the end; a tail of 10m lets it resolve."""
    samples = series("system", {"device": "r1"}, "rebooted", "0x3 1 0x10")
    short = run(rules("device_rebooted"), samples)
    assert seen(short) == [("+30s", "device_rebooted", "firing")]
    assert [(s.rule, s.state) for s in short.open_at_end] == [("device_rebooted", "firing")]
    long = run(rules("device_rebooted"), samples, tail_s=600)
    assert seen(long) == [("+30s", "device_rebooted", "firing"), ("+10m40s", "device_rebooted", "resolved")]
    assert long.open_at_end == ()


def test_inventory_fills_kind_site_and_span_for_scopes(inventory: Inventory) -> None:
    """A hand-written optics series names only device and port; the daemon's samples would also carry
    the site and the span, and the engine knows the kind: scopes on each of them match."""
    scoped = {
        "optics_rx_low": {"scope": {"links": ["span-1"]}},
        "lessee_rx": {
            "measurement": "optics",
            "field": "rx_dbm",
            "op": "<",
            "threshold": -24,
            "scope": {"kinds": ["switch"], "sites": ["park"]},
        },
    }
    samples = series("optics", OPTICS, "rx_dbm", "-25x3")
    with_inv = run(rules("optics_rx_low", "lessee_rx", **scoped), samples, inv=inventory)
    assert sorted(to for _, _, to in seen(with_inv, pending=True)) == ["firing", "pending"]
    assert with_inv.transitions[0].labels["link"] == "span-1"
    assert with_inv.transitions[-1].labels["site"] == "park"
    without = run(rules("optics_rx_low", "lessee_rx", **scoped), samples)
    assert without.transitions == ()


def test_replay_is_deterministic() -> None:
    """The same input gives the same transitions, incident ids included."""
    samples = series("interface", OPTICS, "oper_up", "1x3 " + "0 1 " * 12 + "0x20")
    assert run(rules(), samples).transitions == run(rules(), list(reversed(samples))).transitions


def test_too_many_ticks_asks_for_a_longer_step() -> None:
    samples = [Sample("device", {"device": "r1"}, {"up": 1}, T0), Sample("device", {"device": "r1"}, {"up": 1}, T0)]
    with pytest.raises(ValueError, match="longer --step"):
        rp.replay(rules(), samples, start_ns=T0, end_ns=T0 + 30 * 86400 * S, step_ns=S)


# -- line protocol -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "measurement", "tags", "fields"),
    [
        ("optics,device=sw-a rx_dbm=-24.5 1", "optics", {"device": "sw-a"}, {"rx_dbm": -24.5}),
        (r"my\ m,a\,b=c\=d\ e f\ g=1i 1", "my m", {"a,b": "c=d e"}, {"f g": 1}),
        (r"m\,x f=1 1", "m,x", {}, {"f": 1.0}),
        ("a=b f=1 1", "a=b", {}, {"f": 1.0}),  # '=' needs no escape in a measurement
        (r"m,p=C:\path f=1 1", "m", {"p": "C:\\path"}, {"f": 1.0}),  # other backslashes stay
        ('m,k=quote"s f=1 1', "m", {"k": 'quote"s'}, {"f": 1.0}),  # quotes are literal in tags
        (r'm s="say \"hi\" \\o/",t="a,b=c d" 1', "m", {}, {"s": 'say "hi" \\o/', "t": "a,b=c d"}),
        ('m s="two\nlines" 1', "m", {}, {"s": "two\nlines"}),
        ("m a=1e3,b=-.5,c=3.,d=-7i,e=9u 1", "m", {}, {"a": 1000.0, "b": -0.5, "c": 3.0, "d": -7, "e": 9}),
        ("m a=t,b=TRUE,c=False,d=f 1", "m", {}, {"a": True, "b": True, "c": False, "d": False}),
        ("  m  f=1   1  ", "m", {}, {"f": 1.0}),
        ("m f=1 1\r", "m", {}, {"f": 1.0}),
    ],
)
def test_parse_line_protocol(line: str, measurement: str, tags: dict[str, str], fields: dict[str, Any]) -> None:
    """Escapes, quoted strings and every value type InfluxDB 1.x writes are read back."""
    samples, issues = rp.parse_lineproto(line)
    assert issues == []
    assert samples == [Sample(measurement, tags, fields, 1)]
    assert [type(v) for v in samples[0].fields.values()] == [type(v) for v in fields.values()]


def test_export_preamble_and_comments_are_skipped() -> None:
    """influx_inspect export's DDL/DML headers and comments are not points."""
    text = (
        "# DDL\nCREATE DATABASE netwatch WITH NAME autogen\n# DML\n# CONTEXT-DATABASE:netwatch\n"
        "# CONTEXT-RETENTION-POLICY:autogen\n\n# writing tsm data\ndevice,device=r1 up=1i 5\n"
    )
    samples, issues = rp.parse_lineproto(text)
    assert issues == []
    assert [(s.measurement, s.time_ns) for s in samples] == [("device", 5)]


def test_malformed_lines_are_reported_with_line_and_column() -> None:
    """Every bad line is named, with where on the line it went wrong and why; good lines still count.
    A string over two lines counts both, so later line numbers stay right."""
    text = "\n".join(
        [
            "m f=1 1",  # 1
            'm s="two',  # 2
            'lines" 2',  # 3
            "m f=1.2.3 3",  # 4
            "m,t f=1 4",  # 5
            "m f=1",  # 6
            "m f=1 12:00",  # 7
            'm s="open 8',  # 8
        ]
    )
    samples, issues = rp.parse_lineproto(text, file="rec.lp")
    assert [s.time_ns for s in samples] == [1, 2]
    assert [str(i) for i in issues] == [
        "rec.lp:4: column 5: field 'f': cannot read '1.2.3' (a number, 12i, true/false or a \"string\")",
        "rec.lp:5: column 4: tag 't' has no '=value'",
        "rec.lp:6: column 6: no timestamp: a replay needs the time of every point",
        "rec.lp:7: column 7: timestamp '12:00' is not an integer",
        "rec.lp:8: column 5: field 's': the string value has no closing quote",
    ]


def test_precision() -> None:
    samples, _ = rp.parse_lineproto("m f=1 1700000000", precision="s")
    assert samples[0].time_ns == 1_700_000_000 * S


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=12),
)


@given(
    measurement=_names,
    tags=st.dictionaries(_names, _names, max_size=4),
    fields=st.dictionaries(_names, _values, min_size=1, max_size=4),
    time_ns=st.integers(min_value=-(2**62), max_value=2**62),
)
def test_lines_from_netwatchs_encoder_round_trip(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], time_ns: int
) -> None:
    """Whatever netwatch writes, the parser reads back as InfluxDB stores it (names sanitised)."""
    line = LineEncoder().encode(Sample(measurement, tags, fields, time_ns))
    assume(line is not None)
    assert line is not None
    expected_tags = {sanitize_key(k): sanitize_name(v) for k, v in tags.items() if sanitize_key(k)}
    expected_fields: dict[str, FieldValue] = {}
    for k, v in fields.items():
        if sanitize_key(k):
            expected_fields[sanitize_key(k)] = int(v) if isinstance(v, bool) else v
            if isinstance(v, str):
                expected_fields[sanitize_key(k)] = sanitize_string(v)
    samples, issues = rp.parse_lineproto(line + "\n" + line)
    assert issues == []
    assert samples == [Sample(sanitize_measurement(measurement), expected_tags, expected_fields, time_ns)] * 2


def test_a_point_exported_twice_is_one_check(tmp_path: Path) -> None:
    """influx_inspect export can hold a point in both a TSM file and the WAL; InfluxDB stores it once,
    so it is one clear check: a single good value does not resolve (clear_checks: 2)."""
    fade = series("optics", OPTICS, "rx_dbm", "-25x14 -21")
    encoder = LineEncoder()
    lines = [*encoder.encode_many(fade), "# writing wal data", *encoder.encode_many(fade[-1:])]
    (tmp_path / "export.lp").write_text("\n".join(lines) + "\n")
    case = rp.load_case(str(tmp_path / "export.lp"))
    assert len(case.samples) == 15
    result = rp.replay(rules("optics_rx_low"), case.samples, start_ns=T0, end_ns=case.end_ns, step_ns=10 * S)
    assert [t.to for t in result.transitions] == ["pending", "firing"]


def test_gzip_and_stdin(tmp_path: Path) -> None:
    """An export compressed with -compress is read as it is; '-' reads stdin."""
    (tmp_path / "x.lp.gz").write_bytes(gzip.compress(b"device,device=r1 up=0i 1700000000000000000\n"))
    case = rp.load_case(str(tmp_path / "x.lp.gz"))
    assert case.samples[0].fields == {"up": 0}
    assert rp.load_case("-", stdin=io.StringIO("m f=1 1700000000000000000\n")).samples[0].measurement == "m"


# -- the series notation and series files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("5", [5.0]),
        ("-20x3", [-20.0, -20.0, -20.0]),
        ("1+2x3", [1.0, 3.0, 5.0]),
        ("-24-0.5x3", [-24.0, -24.5, -25.0]),
        ("_ 1 _x2 1e1", [None, 1.0, None, None, 10.0]),
        ("  0x2\n1  ", [0.0, 0.0, 1.0]),
    ],
)
def test_expand_values(text: str, values: list[float | None]) -> None:
    """N after x is the number of samples (promtool's 1+2x3 would be four)."""
    assert rp.expand_values(text) == values


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1 x5", "term 2 'x5' is not a value"),
        ("1+2", "a ramp needs a count"),
        ("_+1x3", "cannot be a ramp"),
        ("5x0", "at least 1"),
        ("", "no values"),
        ("1x2000000", "more than 1,000,000 values"),
    ],
)
def test_bad_values(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        rp.expand_values(text)


def test_series_file(tmp_path: Path) -> None:
    """Series with the same measurement and tags become one point per time with all their fields;
    gaps at the end still extend the replay; expectations take offsets or times."""
    (tmp_path / "s.yaml").write_text(
        "interval: 10s\nstart: 2026-01-01T00:00:00Z\nseries:\n"
        "  - {measurement: interface, tags: {device: sw-a, port: 1}, field: oper_up, values: '1 0 _x3'}\n"
        "  - {measurement: interface, tags: {port: 1, device: sw-a}, field: admin_up, values: '1x2'}\n"
        "expect:\n"
        "  - {rule: interface_down, entity: 'sw-a:1', to: firing, at: 10s}\n"
        "  - {rule: interface_down, entity: 'sw-a:1', to: resolved, at: 2026-01-01T00:00:40Z}\n"
    )
    case = rp.load_case(str(tmp_path / "s.yaml"))
    start = rp._to_ns(rp.DEFAULT_START)
    assert case.start_ns == start
    assert case.end_ns == start + 40 * S
    assert case.step_ns == 10 * S
    assert [(s.fields, s.time_ns - start) for s in case.samples] == [
        ({"oper_up": 1, "admin_up": 1}, 0),
        ({"oper_up": 0, "admin_up": 1}, 10 * S),
    ]
    assert case.samples[0].tags == {"device": "sw-a", "port": "1"}
    assert case.expect is not None
    assert [e.at_ns - start for e in case.expect] == [10 * S, 40 * S]


def test_series_file_with_recorded_data(tmp_path: Path) -> None:
    """A series file can replay a recording beside it and hold the expectations about it."""
    (tmp_path / "outage.lp").write_text(f"device,device=r1 up=1i {T0}\ndevice,device=r1 up=0i {T0 + 30 * S}\n")
    (tmp_path / "t.yaml").write_text(
        "recorded: outage.lp\nexpect: [{rule: device_down, entity: r1, to: firing, at: 30s}]\n"
    )
    case = rp.load_case(str(tmp_path / "t.yaml"))
    assert case.start_ns == T0
    assert case.step_ns == 30 * S
    result = rp.replay(rules(), case.samples, start_ns=case.start_ns, end_ns=case.end_ns, step_ns=case.step_ns)
    assert case.expect is not None
    assert rp.matches(rp.compare(case.expect, result.transitions))


def test_bad_series_file_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "intervall: 10s\n"  # 1
        "series:\n"  # 2
        "  - measurement: optics\n"  # 3
        "    field: rx_dbm\n"  # 4
        "    valeus: '-20x5'\n"  # 5
        "expect:\n"  # 6
        "  - {rule: optics_rx_low, entity: x, to: fired, at: 1m}\n"  # 7
    )
    with pytest.raises(rp.InputError) as info:
        rp.load_case(str(tmp_path / "bad.yaml"))
    text = str(info.value)
    file = tmp_path / "bad.yaml"
    assert f"{file}:1: intervall: unknown key 'intervall' (did you mean 'interval'?)" in text
    assert f"{file}:5: series[0].valeus: unknown key 'valeus' (did you mean 'values'?)" in text
    assert f"{file}:3: series[0].values: required key is missing" in text
    assert f"{file}:7: expect[0].to: Input should be 'pending', 'firing'" in text


def test_bad_values_and_times_in_a_series_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "series:\n"
        "  - {measurement: optics, field: rx_dbm, values: '-20x5 oops'}\n"
        "expect:\n"
        "  - {rule: optics_rx_low, entity: x, to: firing, at: soon}\n"
    )
    with pytest.raises(rp.InputError) as info:
        rp.load_case(str(tmp_path / "bad.yaml"))
    lines = str(info.value).splitlines()
    assert any(
        line.endswith(":1: interval: required with series (the time between two values, e.g. 10s)") for line in lines
    )
    (tmp_path / "bad.yaml").write_text(
        "interval: 10s\nseries:\n"
        "  - {measurement: optics, field: rx_dbm, values: '-20x5 oops'}\n"
        "expect:\n"
        "  - {rule: optics_rx_low, entity: x, to: firing, at: soon}\n"
    )
    with pytest.raises(rp.InputError) as info:
        rp.load_case(str(tmp_path / "bad.yaml"))
    assert [str(i).split(": ", 1)[1] for i in info.value.issues] == [
        "series[0].values: term 2 'oops' is not a value; write 5, 5x3 (three samples), 1+2x3 (1 3 5), "
        "_ (no sample) or _x3 (three gaps)",
        "expect[0].at: 'soon' is neither an offset (2m50s) nor a time (2026-01-01T00:02:50Z)",
    ]
    assert [i.line for i in info.value.issues] == [3, 5]


# -- checks ---------------------------------------------------------------------------------------


def _case(tmp_path: Path, body: str) -> rp.Case:
    (tmp_path / "c.yaml").write_text("interval: 10s\n" + body)
    return rp.load_case(str(tmp_path / "c.yaml"))


def test_a_series_no_rule_reads_is_a_warning(tmp_path: Path, inventory: Inventory) -> None:
    """Typos in measurement, field or tag key, a scope that leaves the series out, and a device the
    config does not know each get a warning naming the line."""
    case = _case(
        tmp_path,
        "series:\n"
        "  - {measurement: optic, field: rx_dbm, values: '1'}\n"  # 3
        "  - {measurement: optics, field: rx_dmb, values: '1'}\n"  # 4
        "  - {measurement: optics, tags: {devcie: sw-a}, field: rx_dbm, values: '1'}\n"  # 5
        "  - {measurement: optics, field: tx_dbm, values: '1'}\n"  # 6
        "  - {measurement: optics, tags: {device: sw-a, port: x}, field: rx_dbm, values: '1'}\n"  # 7
        "  - {measurement: optics, tags: {device: sw-z, port: x}, field: rx_dbm, values: '1'}\n",  # 8
    )
    scoped = rules("optics_rx_low", optics_rx_low={"scope": {"kinds": ["router"]}})
    warnings = "\n".join(rp.check_reads(scoped, case, inventory))
    assert ":3: 'optic' is not a measurement netwatch writes (did you mean 'optics'?)" in warnings
    assert ":4: optics has no field 'rx_dmb' (did you mean 'rx_dbm'?)" in warnings
    assert ":5: 'devcie' is not a tag of optics (did you mean 'device'?)" in warnings
    assert ":6: no rule reads optics.tx_dbm (rules read: optics.rx_dbm)" in warnings
    assert ":7: the scope of optics_rx_low leaves out sw-a:x" in warnings
    assert ":8: device 'sw-z' is not in the config" in warnings
    good = _case(tmp_path, "series: [{measurement: optics, tags: {device: sw-a, port: x}, field: rx_dbm, values: 1}]")
    assert rp.check_reads(rules("optics_rx_low"), good, inventory) == []


def test_where_fields_and_absence_count_as_read(tmp_path: Path, inventory: Inventory) -> None:
    """admin_up is read by interface_down's where; any device field keeps device_silent fed."""
    case = _case(
        tmp_path,
        "series:\n"
        "  - {measurement: interface, tags: {device: sw-a, port: x}, field: admin_up, values: '1'}\n"
        "  - {measurement: device, tags: {device: sw-a}, field: state, values: '1'}\n",
    )
    assert rp.check_reads(rules("interface_down", "device_silent"), case, inventory) == []


def test_absence_series_at_another_interval_than_configured_is_a_warning(tmp_path: Path, inventory: Inventory) -> None:
    case = _case(
        tmp_path, "series: [{measurement: device, tags: {device: r1}, field: up, values: '1', interval: 30s}]\n"
    )
    (warning,) = rp.check_reads(rules("device_silent"), case, inventory)
    assert "r1 is polled every 10s in the config but this series has a value every 30s" in warning


def test_expectation_naming_an_unknown_rule_or_entity(tmp_path: Path) -> None:
    case = _case(
        tmp_path,
        "series: [{measurement: device, tags: {device: r1}, field: up, values: '1'}]\n"
        "expect: [{rule: device_dwn, entity: r-1, to: firing, at: 0s}]\n",
    )
    (issue,) = rp.check_expected_rules(case, rules())
    assert str(issue).endswith(":3: expect: unknown rule 'device_dwn' (did you mean 'device_down'?)")
    (off,) = rp.check_expected_rules(case, rules(), disabled=["device_dwn"])
    assert "is disabled in the config" in str(off)
    assert any("no series is about entity 'r-1' (did you mean 'r1'?)" in w for w in rp.check_reads(rules(), case))


def _t(at_s: int, to: str = "firing", rule: str = "r", entity: str = "e") -> Transition:
    return Transition(rule, entity, "warning", {}, to, None, T0, T0 + at_s * S, "")  # type: ignore[arg-type]


def _e(at_s: int, to: str = "firing", rule: str = "r") -> rp.Expectation:
    return rp.Expectation(rule, "e", to, T0 + at_s * S, 1)  # type: ignore[arg-type]


def test_compare_marks_missing_and_unexpected_in_time_order() -> None:
    diff = rp.compare([_e(10), _e(50, "resolved")], [_t(5, "pending"), _t(10), _t(60, "resolved")])
    assert [(d.mark, (d.at_ns - T0) // S, d.to) for d in diff] == [
        (" ", 10, "firing"),
        ("-", 50, "resolved"),
        ("+", 60, "resolved"),
    ]
    assert not rp.matches(diff)


def test_compare_checks_pending_only_when_asked_and_only_selected_rules() -> None:
    got = [_t(5, "pending"), _t(10), _t(10, rule="other")]
    assert rp.matches(rp.compare([_e(10)], got, rules=["r"]))
    assert not rp.matches(rp.compare([_e(10)], got))
    assert not rp.matches(rp.compare([_e(10), _e(6, "pending")], got, rules=["r"]))
    assert rp.matches(rp.compare([_e(10), _e(5, "pending")], got, rules=["r"]))
    assert rp.matches(rp.compare([], []))


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_offsets_read_back_exactly(ns: int) -> None:
    """A printed offset can be pasted into an expectation's at: as it is, to the nanosecond."""
    text = rp.format_offset(ns)
    assert rp.offset_ns(text) == ns
    assert parse_duration(text.lstrip("+-")) == pytest.approx(abs(ns) / S)  # the config's units


@pytest.mark.parametrize(
    ("text", "ns"),
    [("2m50s", 170 * S), ("+1h0m5s", 3605 * S), ("170", 170 * S), ("-1.5s", -1_500_000_000), ("250ms", 250_000_000)],
)
def test_offset_ns(text: str, ns: int) -> None:
    assert rp.offset_ns(text) == ns


def test_format_time() -> None:
    assert rp.format_time(rp._to_ns(rp.DEFAULT_START) + 170 * S) == "2026-01-01T00:02:50Z"
    assert rp.format_time(1_500_000_000) == "1970-01-01T00:00:01.5Z"
