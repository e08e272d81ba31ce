"""/metrics beyond the scheduler and the sink: the outbox, the MQTT ingest, the trap receiver and the
state publisher when configured, and open incidents and silences from a real alert service."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample
from pydantic import SecretStr

from netwatch.alerting.model import Notification
from netwatch.alerting.outbox import STATS_KEYS as OUTBOX_KEYS
from netwatch.api import ApiConfig, StatsReader, serve_api
from netwatch.api.metrics import COMPONENT_METRICS, HELD_LABELS, SEVERITIES
from netwatch.config import load_config
from netwatch.ingest.mqtt import MqttIngest
from netwatch.ingest.mqttconfig import MqttConfig
from netwatch.ingest.panels import IngestStats, PanelSpec
from netwatch.ingest.traps import TrapReceiver, TrapsConfig
from netwatch.publish.mqttstate import PublishStats
from tests.unit.test_api_alerts import TOKEN, Api, build_service, silence_body
from tests.unit.test_api_health import FakeSource


def _outbox() -> dict[str, int]:
    return {
        "outbox_depth": 3,
        "outbox_queued": 51,
        "outbox_delivered": 46,
        "outbox_retried": 9,
        "outbox_dropped": 2,
        "outbox_rejected": 1,
    }


def _mqtt() -> dict[str, int]:
    return {
        "broker_connected": 1,
        "mqtt_messages": 900,
        "mqtt_heartbeats": 880,
        "mqtt_events": 12,
        "mqtt_malformed": 5,
        "mqtt_unknown_topic": 3,
        "mqtt_reconnects": 2,
    }


def _traps() -> dict[str, int]:
    return {
        "traps_received": 30,
        "traps_accepted": 20,
        "traps_unknown_sender": 4,
        "traps_bad_community": 3,
        "traps_bad_credentials": 1,
        "traps_malformed": 1,
        "traps_ignored": 1,
        "traps_polls": 18,
    }


@dataclass
class ComponentSource(FakeSource):
    """A HealthSource with the optional ``components``: the readers of configured components."""

    components: dict[str, StatsReader] = field(default_factory=dict)


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def series(text: str) -> dict[str, PromSample]:
    """Every sample of an exposition by name and labels other than ``instance`` (``name{k=v}``)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels["instance"] == "noc-test", s
            rest = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "instance")
            out[f"{s.name}{{{rest}}}" if rest else s.name] = s
    return out


def kinds(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, ComponentSource]]:
    source = ComponentSource(components={"outbox": _outbox, "mqtt": _mqtt, "traps": _traps})
    async with serve_api(ApiConfig(listen="127.0.0.1:0"), source) as server:
        assert server.url is not None
        yield server.url, source


async def test_configured_components_are_exposed_counters_as_total_levels_as_gauges(
    served: tuple[str, ComponentSource],
) -> None:
    """Outbox, MQTT ingest and trap counters appear as <field>_total counters, their levels as gauges."""
    url, _source = served
    text = await scrape(url)
    # The exposition a NOC's Prometheus reads, line for line.
    for line in (
        "# TYPE netwatch_outbox_depth gauge",
        'netwatch_outbox_depth{instance="noc-test"} 3.0',
        "# TYPE netwatch_outbox_rejected_total counter",
        'netwatch_outbox_rejected_total{instance="noc-test"} 1.0',
        "# TYPE netwatch_broker_connected gauge",
        'netwatch_broker_connected{instance="noc-test"} 1.0',
        'netwatch_mqtt_reconnects_total{instance="noc-test"} 2.0',
        'netwatch_traps_bad_community_total{instance="noc-test"} 3.0',
    ):
        assert line in text.splitlines(), line
    got = series(text)
    types = kinds(text)
    for fields in (_outbox(), _mqtt(), _traps()):
        for key, value in fields.items():
            if key in ("outbox_depth", "broker_connected"):
                assert types[f"netwatch_{key}"] == "gauge", key
                assert got[f"netwatch_{key}"].value == value, key
            else:
                assert types[f"netwatch_{key}"] == "counter", key
                assert got[f"netwatch_{key}_total"].value == value, key
    # the scheduler and the sink are still there
    assert got["netwatch_checks_run_total"].value == 120
    assert got["netwatch_points_written_total"].value == 900


async def test_components_are_read_on_every_scrape() -> None:
    """A real MQTT ingest's counters move between two scrapes: nothing is cached."""
    cfg = MqttConfig(host="127.0.0.1")
    ingest = MqttIngest(
        cfg, [PanelSpec("door-vp-1", "villa-parke", every=30.0, missed=3)], lambda _s: None, instance="x"
    )
    source = ComponentSource(components={"mqtt": ingest.stats})
    async with serve_api(ApiConfig(listen="127.0.0.1:0"), source) as server:
        assert server.url is not None
        first = series(await scrape(server.url))
        ingest.book.connected()
        ingest.book.handle("panels/door-vp-1/heartbeat", b"")
        ingest.book.handle("panels/door-vp-1/event", b"not json")
        ingest.book.handle("panels/nobody/heartbeat", b"")
        second = series(await scrape(server.url))
    assert first["netwatch_broker_connected"].value == 0
    assert first["netwatch_mqtt_messages_total"].value == 0
    assert second["netwatch_broker_connected"].value == 1
    assert second["netwatch_mqtt_messages_total"].value == 3
    assert second["netwatch_mqtt_heartbeats_total"].value == 1
    assert second["netwatch_mqtt_malformed_total"].value == 1
    assert second["netwatch_mqtt_unknown_topic_total"].value == 1


async def test_components_not_configured_have_no_series() -> None:
    """No outbox, MQTT or traps configured (or a source that cannot say): no such families, not zeros."""
    plain = FakeSource()
    empty = ComponentSource()
    for source in (plain, empty):
        async with serve_api(ApiConfig(listen="127.0.0.1:0"), source) as server:
            assert server.url is not None
            text = await scrape(server.url)
        names = set(kinds(text))
        assert "netwatch_checks_run" in names
        for component in COMPONENT_METRICS.values():
            assert not names & {f"netwatch_{key}" for key in component}, names
        assert "netwatch_incidents_open" not in names  # no alert service handed to the API either


async def test_a_component_that_fails_to_answer_costs_its_series_not_the_scrape() -> None:
    """The outbox's database failing: /metrics still answers without the outbox, logged once, and recovers."""
    broken = True

    def outbox() -> dict[str, int]:
        if broken:
            raise sqlite3.OperationalError("disk I/O error")
        return _outbox()

    source = ComponentSource(components={"outbox": outbox, "mqtt": _mqtt})
    with structlog.testing.capture_logs() as logs:
        async with serve_api(ApiConfig(listen="127.0.0.1:0"), source) as server:
            assert server.url is not None
            for _ in range(3):
                got = series(await scrape(server.url))
                assert "netwatch_outbox_depth" not in got
                assert got["netwatch_mqtt_messages_total"].value == 900
                assert got["netwatch_up"].value == 1
            broken = False
            got = series(await scrape(server.url))
    assert got["netwatch_outbox_depth"].value == 3
    failures = [e for e in logs if e["event"] == "metrics_read_failed"]
    assert len(failures) == 1
    assert failures[0]["part"] == "outbox"
    assert "disk I/O error" in failures[0]["error"]


def test_every_component_field_has_a_metric_kind(tmp_path: Path) -> None:
    """A new field in a component's stats must be classified (counter or gauge) before it is exposed."""
    (tmp_path / "c.yaml").write_text("sites: [{id: hq, name: HQ}]\ndevices: []\n")
    inventory = load_config(tmp_path / "c.yaml").inventory
    traps = TrapReceiver(TrapsConfig(), inventory, emit=lambda _s: None, poll_now=lambda _d, _c: 0, instance="x")
    assert set(COMPONENT_METRICS["outbox"]) == set(OUTBOX_KEYS)
    assert set(COMPONENT_METRICS["mqtt"]) == set(IngestStats().fields())
    assert set(COMPONENT_METRICS["traps"]) == set(traps.stats())
    assert set(COMPONENT_METRICS["publish"]) == set(PublishStats().fields())
    # one name space: no two components expose the same metric
    names = [key for fields in COMPONENT_METRICS.values() for key in fields]
    assert len(names) == len(set(names))


# -- incidents and silences -------------------------------------------------------------------


async def test_open_incidents_by_severity_and_hold_and_active_silences(tmp_path: Path) -> None:
    """A real alert service: a down switch with two devices behind it and a silenced UPS, counted as
    a NOC reads them; every severity/hold pair is a series, zeros included."""
    sent: list[Notification] = []
    svc, inventory = build_service(tmp_path, sent)
    cfg = ApiConfig(listen="127.0.0.1:0", token_file=SecretStr(TOKEN))
    async with serve_api(cfg, FakeSource(), alerts=svc) as server, aiohttp.ClientSession() as http:
        url = server.url
        assert url is not None
        before = series(await scrape(url))
        ups = silence_body(matchers=[{"label": "device", "op": "=", "value": "ups-hq"}])
        async with http.post(url + "/api/v1/silences", json=ups, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 201
        Api(url, http, svc, inventory).fail("sw-vp", "cam-vp", "ap-vp", "ups-hq")
        text = await scrape(url)
    assert kinds(text)["netwatch_incidents_open"] == "gauge"
    assert kinds(text)["netwatch_silences_active"] == "gauge"
    assert before["netwatch_silences_active"].value == 0
    zeros = [before[f"netwatch_incidents_open{{held={h},severity={s}}}"].value for s in SEVERITIES for h in HELD_LABELS]
    assert zeros == [0] * 12
    got = series(text)
    expected = {("critical", "none"): 1, ("critical", "unreachable"): 2, ("critical", "silenced"): 1}
    for severity in SEVERITIES:
        for held in HELD_LABELS:
            value = got[f"netwatch_incidents_open{{held={held},severity={severity}}}"].value
            assert value == expected.get((severity, held), 0), (severity, held)
    assert 'netwatch_incidents_open{held="none",instance="noc-test",severity="critical"} 1.0' in text.splitlines()
    assert got["netwatch_silences_active"].value == 1
    assert [n.incident.entity for n in sent] == ["sw-vp"]  # the silenced UPS paged nobody
