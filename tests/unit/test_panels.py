"""Panel bookkeeping without a broker: topic routing, payload mapping, offline after missed cadences."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from netwatch.ingest.mqttconfig import MqttConfig, PanelConfig
from netwatch.ingest.panels import PanelBook, PanelSpec, panel_specs
from netwatch.model import Sample


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _book(**kw: object) -> tuple[PanelBook, list[Sample], Clock]:
    cfg = MqttConfig.model_validate({"host": "broker", **kw})
    out: list[Sample] = []
    clock = Clock()
    book = PanelBook(cfg, out.extend, clock=clock)
    book.set_panels(
        cfg,
        [
            PanelSpec("door-1", "park", every=10, missed=3),
            PanelSpec("door-2", "yard", every=10, missed=3, event_topic="vendor/x/alarms"),
        ],
    )
    return book, out, clock


def test_template_needs_device_and_no_wildcards() -> None:
    with pytest.raises(ValidationError, match=r"\{device\}"):
        MqttConfig.model_validate({"host": "b", "heartbeat_topic": "panels/hb"})
    with pytest.raises(ValidationError, match="wildcards"):
        MqttConfig.model_validate({"host": "b", "event_topic": "panels/{device}/#"})


def test_specs_watch_access_panels_unless_opted_out() -> None:
    cfg = MqttConfig(host="b", heartbeat_every=20)
    specs = panel_specs(
        [
            ("door-1", "park", "access_panel", None),
            ("door-2", "park", "access_panel", PanelConfig(mqtt=False)),
            ("sw-1", "park", "switch", None),
            ("gate", "yard", "other", PanelConfig(every=5)),
        ],
        cfg,
    )
    assert [(s.device, s.every) for s in specs] == [("door-1", 20.0), ("gate", 5.0)]


def test_exact_topic_override_routes_and_replaces_the_template() -> None:
    book, out, _ = _book()
    assert book.subscriptions() == ["panels/+/heartbeat", "panels/+/event", "vendor/x/alarms"]
    book.handle("vendor/x/alarms", b'{"event": "tamper"}')
    book.handle("panels/door-2/event", b'{"event": "tamper"}')  # not door-2's topic any more
    book.handle("panels/nobody/event", b'{"event": "tamper"}')
    assert [s.tags["device"] for s in out] == ["door-2"]
    assert book.stats.unknown_topic == 2


def test_offline_only_after_missed_cadences_plus_grace_and_never_while_disconnected() -> None:
    book, out, clock = _book()
    book.report(force=True)
    assert out == []  # not connected yet: state unknown, nothing reported
    book.connected()
    clock.now += 35  # 3 cadences and a half, but inside the grace of one cadence after connecting
    book.report(force=True)
    assert {s.fields["online"] for s in out} == {1}
    out.clear()
    book.handle("panels/door-1/heartbeat", b"")
    clock.now += 10
    book.report(force=True)
    by_device = {s.tags["device"]: s.fields for s in out}
    assert by_device["door-1"]["online"] == 1
    assert by_device["door-1"]["heartbeat_age_s"] == 10.0
    assert by_device["door-2"]["online"] == 0  # never heard: 45 s > 30 s + 10 s grace
    out.clear()
    book.disconnected()
    clock.now += 1000
    book.report(force=True)
    assert out == []


def test_malformed_payloads_are_counted_per_panel() -> None:
    book, out, _ = _book(max_payload_bytes=32)
    for payload in (b"nope", b"{}", b'{"event": 5}', b'{"event": "fire"}', b'{"event": "' + b"x" * 40 + b'"}'):
        book.handle("panels/door-1/event", payload)
    book.handle("panels/door-1/heartbeat", b"x" * 33)
    assert book.stats.malformed == 6
    assert out == []
    book.connected()
    book.report(force=True)
    assert {s.tags["device"]: s.fields["malformed"] for s in out} == {"door-1": 6, "door-2": 0}


def test_alarm_event_sets_alarms_on_the_panel_until_its_next_report() -> None:
    book, out, clock = _book()
    book.connected()
    book.handle("panels/door-1/event", b'{"event": "door_held_open", "door": "n"}')
    book.handle("panels/door-1/event", b'{"event": "door_forced", "door": "n"}')
    assert [(s.measurement, s.fields.get("alarm"), s.fields.get("alarms")) for s in out] == [
        ("panel_event", 0, None),
        ("panel_event", 1, None),
        ("panel", None, 1),
    ]
    out.clear()
    clock.now += 10
    book.report()
    assert [s.fields["alarms"] for s in out if s.tags["device"] == "door-1"] == [0]
