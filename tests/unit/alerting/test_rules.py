"""Alert rules: validation at load, built-ins and overrides, entities, scope, labels, summaries."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from netwatch.alerting.rules import (
    BUILTIN_RULES,
    Rule,
    RuleConfig,
    check_unique,
    effective_rules,
    entity_of,
)
from netwatch.model import Sample

S = 1_000_000_000


def rule(**data: Any) -> Rule:
    return Rule.build(RuleConfig.model_validate(data))


def by_name(rules: list[Rule]) -> dict[str, Rule]:
    return {r.name: r for r in rules}


def test_builtins_are_on_by_default() -> None:
    """Every built-in the issue names is in force with no config at all."""
    rules = by_name(effective_rules())
    assert list(rules) == [
        "device_down",
        "span_down",
        "interface_down",
        "optics_rx_low",
        "interface_errors",
        "device_silent",
        "device_rebooted",
        "park_wifi_down",
        "points_dropped",
        "notifications_dropped",
        "influxdb_write_failing",
        "panel_silent",
        "panel_alarm",
        "mqtt_broker_down",
    ]
    assert (rules["device_down"].measurement, rules["device_down"].field, rules["device_down"].op) == (
        "device",
        "up",
        "==",
    )
    assert rules["device_down"].severity == "critical"
    assert rules["device_down"].for_ns == 0
    assert rules["span_down"].measurement == "link"
    assert rules["span_down"].severity == "critical"
    assert rules["interface_down"].require_ok_first
    optics = rules["optics_rx_low"]
    assert (optics.op, optics.threshold, optics.clear, optics.for_ns) == ("<", -24, -22, 120 * S)
    errors = rules["interface_errors"]
    assert (errors.field, errors.op, errors.threshold, errors.for_ns) == ("in_errors_ps", ">", 10, 300 * S)
    silent = rules["device_silent"]
    assert (silent.kind, silent.measurement, silent.absent_after) == ("absent", "device", 3)
    rebooted = rules["device_rebooted"]
    assert (rebooted.keep_firing_for_ns, rebooted.severity) == (600 * S, "info")


def test_override_lays_keys_over_the_builtin() -> None:
    """{name: interface_errors, threshold: 50} changes the threshold and keeps for: 5m."""
    cfg = RuleConfig.model_validate({"name": "interface_errors", "threshold": 50, "labels": {"team": "fiber"}})
    assert cfg.for_ == 300.0
    rules = by_name(effective_rules([cfg]))
    assert rules["interface_errors"].threshold == 50
    assert rules["interface_errors"].for_ns == 300 * S
    assert rules["interface_errors"].labels == {"team": "fiber"}


def test_builtin_can_be_disabled() -> None:
    """{name: device_silent, enabled: false} turns it off and leaves the others."""
    names = [r.name for r in effective_rules([RuleConfig.model_validate({"name": "device_silent", "enabled": False})])]
    assert "device_silent" not in names
    assert "device_down" in names


def test_user_rules_come_after_builtins() -> None:
    """A new rule is appended; YAML's `for` key sets the pending time."""
    cfg = RuleConfig.model_validate(
        {
            "name": "wifi_busy",
            "measurement": "wifi",
            "field": "channel_util_pct",
            "op": ">",
            "threshold": 80,
            "for": "10m",
        }
    )
    rules = effective_rules([cfg])
    assert rules[-1].name == "wifi_busy"
    assert rules[-1].for_ns == 600 * S
    assert len(rules) == len(BUILTIN_RULES) + 1


def test_duplicate_names_are_an_error() -> None:
    """Two entries with one name: which would win is not obvious, so it is refused."""
    a = RuleConfig.model_validate({"name": "device_down", "severity": "warning"})
    with pytest.raises(ValueError, match="two alert rules are named 'device_down'"):
        check_unique([a, a])
    with pytest.raises(ValueError, match="unique"):
        effective_rules([a, a])


GOOD: dict[str, Any] = {"name": "x", "measurement": "optics", "field": "rx_dbm", "op": "<", "threshold": -24}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({**GOOD, "measurement": "optic"}, "unknown measurement 'optic'; known: alert, device"),
        ({**GOOD, "field": "rx_dBm"}, "measurement 'optics' has no field 'rx_dBm'; numeric fields: bias_ma, rx_dbm"),
        ({**GOOD, "measurement": "device", "field": "state"}, "field device.state is a string, not a number"),
        ({**GOOD, "clear": -26}, "clear (-26) is on the wrong side of threshold (-24)"),
        ({**GOOD, "op": ">", "threshold": 10, "clear": 12}, "so clear must be <= 10"),
        ({**GOOD, "op": "==", "clear": 1}, "clear needs an ordering operator"),
        ({**GOOD, "summary": "{device} {rx}"}, "unknown placeholder {rx}"),
        ({**GOOD, "summary": "{device.__class__}"}, "unknown placeholder {device.__class__}"),
        ({**GOOD, "summary": "{port[0]}"}, "unknown placeholder {port[0]}"),
        ({**GOOD, "summary": "{device:.1f}"}, "summary cannot be rendered"),
        ({**GOOD, "summary": "{value:d}"}, "summary cannot be rendered"),
        ({**GOOD, "summary": "{device"}, "summary is not a valid template"),
        ({"name": "x", "measurement": "optics"}, "'field', 'op', 'threshold' required"),
        ({"name": "x", "field": "up"}, "'measurement' is required (built-in rules, which need only a name"),
        (
            {"name": "x", "measurement": "panel", "absent_after": 3, "op": "<"},
            "an absence rule (absent_after) takes no op",
        ),
        ({**GOOD, "fro": "2m"}, "Extra inputs are not permitted"),
        ({**GOOD, "op": "=<"}, "Input should be '<', '<=', '>', '>=', '==' or '!='"),
        ({**GOOD, "for": "soon"}, "invalid duration 'soon'"),
        ({**GOOD, "flap_start": 20, "flap_stop": 30}, "flap_stop (30.0) must be below flap_start (20.0)"),
        ({**GOOD, "name": "bad name"}, "String should match pattern"),
        ({**GOOD, "severity": "major"}, "Input should be 'critical', 'warning' or 'info'"),
        ({"name": "device_silent", "measurement": "nope"}, "unknown measurement 'nope'"),
        ({"name": "device_down", "field": "state"}, "field device.state is a string"),
        ({**GOOD, "where": [{"field": "tx", "value": 1}]}, "where: measurement 'optics' has no numeric field 'tx'"),
        ({**GOOD, "where": [{"field": "tx_dbm"}]}, "where.0.value"),
        (
            {"name": "x", "measurement": "panel", "absent_after": 3, "delta": True},
            "an absence rule (absent_after) takes no delta",
        ),
    ],
)
def test_bad_rules_give_clear_errors(data: dict[str, Any], fragment: str) -> None:
    """Each mistake is named in words an operator can act on."""
    with pytest.raises(ValidationError) as info:
        RuleConfig.model_validate(data)
    assert fragment in str(info.value)


def test_clear_on_the_right_side_is_fine() -> None:
    """clear equal to threshold is no hysteresis; past it on the recovering side is hysteresis."""
    RuleConfig.model_validate({**GOOD, "clear": -24})
    RuleConfig.model_validate({**GOOD, "clear": -22})
    RuleConfig.model_validate({**GOOD, "op": ">=", "threshold": 10, "clear": 5})


def test_hysteresis_latches_until_clear() -> None:
    """Fires below -24; once firing, holds until the value rises to -22."""
    r = rule(**GOOD, clear=-22)
    assert r.breached(-25)
    assert not r.breached(-23)
    assert r.still_breached(-23)
    assert not r.still_breached(-22)


@pytest.mark.parametrize(
    ("tags", "entity"),
    [
        ({"device": "core-ch", "site": "city-hall", "kind": "router"}, "core-ch"),
        ({"device": "core-ch", "site": "city-hall", "port": "xe-0/0/3", "link": "span-ch-vp"}, "core-ch:xe-0/0/3"),
        ({"link": "span-ch-vp", "lessee": "univ", "site_a": "ch", "site_b": "vp"}, "span-ch-vp"),
        ({"device": "web-1", "site": "ch", "check": "portal", "reason": "timeout"}, "web-1:portal"),
        # Each radio of an AP is its own entity: a dead 5 GHz radio and a busy 2.4 GHz one are two alerts.
        ({"device": "ap-vp-1", "site": "vp", "radio": "1", "band": "5GHz"}, "ap-vp-1:1"),
        ({"instance": "noc-1", "component": "sink"}, "sink:noc-1"),  # other tags: values by sorted key
    ],
)
def test_entity_from_tags(tags: dict[str, str], entity: str) -> None:
    """device, device:port, link; volatile tags such as reason never split an entity."""
    assert entity_of(tags) == entity


def sample(measurement: str, tags: dict[str, str], **fields: float) -> Sample:
    return Sample(measurement, tags, fields, 0)


@pytest.mark.parametrize(
    ("scope", "tags", "included"),
    [
        ({}, {"device": "a", "site": "s", "kind": "router"}, True),
        ({"kinds": ["router"]}, {"device": "a", "site": "s", "kind": "router"}, True),
        ({"kinds": ["router"]}, {"device": "a", "site": "s", "kind": "camera"}, False),
        ({"kinds": ["router"]}, {"device": "a", "site": "s"}, False),
        ({"sites": ["s"]}, {"device": "a", "site": "s", "kind": "router"}, True),
        ({"sites": ["t"]}, {"device": "a", "site": "s", "kind": "router"}, False),
        ({"devices": ["a", "b"]}, {"device": "b", "site": "s", "kind": "router"}, True),
        ({"devices": ["a"]}, {"device": "b", "site": "s", "kind": "router"}, False),
    ],
)
def test_scope(scope: dict[str, list[str]], tags: dict[str, str], included: bool) -> None:
    """An empty list means all; a listed tag must be present and match."""
    r = rule(name="x", measurement="device", field="up", op="==", threshold=0, scope=scope)
    assert r.matches(sample("device", tags, up=0)) is included


def test_scope_of_spans_matches_either_end_site() -> None:
    """A span between two sites is in the scope of either."""
    r = rule(name="x", measurement="link", field="up", op="==", threshold=0, scope={"sites": ["vp"], "links": ["s1"]})
    assert r.matches(sample("link", {"link": "s1", "site_a": "ch", "site_b": "vp"}, up=0))
    assert not r.matches(sample("link", {"link": "s2", "site_a": "ch", "site_b": "vp"}, up=0))
    assert not r.matches(sample("link", {"link": "s1", "site_a": "ch", "site_b": "bk"}, up=0))


def test_matches_needs_measurement_and_field() -> None:
    """A sample of another measurement, or without the rule's field, is not the rule's business."""
    r = rule(**GOOD)
    assert not r.matches(sample("interface", {"device": "a", "port": "p"}, rx_dbm=-30))
    assert not r.matches(sample("optics", {"device": "a", "port": "p"}, tx_dbm=-30))
    assert r.value(sample("optics", {"device": "a", "port": "p"}, rx_dbm=-30)) == -30.0


def test_labels_carry_rule_labels_tags_rule_and_severity() -> None:
    """span_down's labels name the lessee, so routes can send leased spans to the lessee's contact."""
    span = by_name(effective_rules())["span_down"]
    labels = span.labels_for({"link": "span-ch-vp", "lessee": "univ", "site_a": "ch", "site_b": "vp"})
    assert labels == {
        "link": "span-ch-vp",
        "lessee": "univ",
        "site_a": "ch",
        "site_b": "vp",
        "rule": "span_down",
        "severity": "critical",
    }
    r = rule(**GOOD, labels={"team": "fiber"})
    assert r.labels_for({"device": "a", "reason": "timeout"}) == {
        "team": "fiber",
        "device": "a",
        "rule": "x",
        "severity": "warning",
    }


def test_summary_rendering() -> None:
    """Placeholders fill from tags and the value; whole numbers read without '.0'; specs work."""
    rules = by_name(effective_rules())
    tags = {"device": "core-ch", "site": "city-hall", "port": "xe-0/0/3", "link": "span-ch-vp"}
    assert (
        rules["optics_rx_low"].render(entity="core-ch:xe-0/0/3", tags=tags, value=-25.3000001)
        == "core-ch port xe-0/0/3: optical receive power -25.3 dBm is below -24 dBm"
    )
    assert rules["device_down"].render(entity="core-ch", tags=tags, value=0.0) == "core-ch is down (city-hall)"
    assert rules["span_down"].render(entity="s", tags={"link": "s", "site_a": "ch"}, value=0) == "span s is down"
    custom = rule(**GOOD, summary="{entity} at {site}: {value:.1f} < {threshold} [{lessee}]")
    assert custom.render(entity="a:p", tags={"site": "ch"}, value=-30) == "a:p at ch: -30.0 < -24 []"


def test_default_summary_of_a_user_rule() -> None:
    """A rule without a summary still says what, where and how much."""
    r = rule(**GOOD)
    assert r.render(entity="a:p", tags={}, value=-30.5) == "a:p: optics.rx_dbm is -30.5 (< -24)"


def test_config_schema_is_generated() -> None:
    """config-schema can describe alert rules (YAML key `for`, not `for_`)."""
    schema = RuleConfig.model_json_schema(by_alias=True)
    assert "for" in schema["properties"]
    assert schema["required"] == ["name"]
