"""Access panels over a real mosquitto: heartbeats, events, garbage, and the broker going away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
import structlog

from netwatch.ingest.mqtt import MqttIngest
from netwatch.ingest.mqttconfig import MqttConfig
from netwatch.ingest.panels import PanelSpec
from netwatch.model import Sample
from tests.servers.mosquitto import MosquittoServer, _server

PANELS = [PanelSpec("door-vp-1", "villa-parke", every=0.2, missed=2), PanelSpec("door-cc-1", "jackie-robinson", 0.2, 2)]


def _cfg(server: MosquittoServer, **kw: object) -> MqttConfig:
    return MqttConfig.model_validate(
        {"host": "127.0.0.1", "port": server.port, "reconnect_min": 0.05, "reconnect_max": 0.2, "grace": 1, **kw}
    )


@asynccontextmanager
async def running(ingest: MqttIngest) -> AsyncIterator[None]:
    task = asyncio.create_task(ingest.run())
    try:
        await wait_for(lambda: ingest.book.stats.connected, what="ingest connected")
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_for(cond: Callable[[], bool], *, what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _panel(samples: list[Sample], device: str) -> list[Sample]:
    return [s for s in samples if s.measurement == "panel" and s.tags["device"] == device]


async def test_panel_goes_offline_after_missed_cadences_while_a_live_one_stays_online(
    mosquitto: MosquittoServer,
) -> None:
    samples: list[Sample] = []
    ingest = MqttIngest(_cfg(mosquitto), PANELS, samples.extend, instance="t1")
    async with running(ingest), aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
        for _ in range(15):  # 1.5 s: door-vp-1 beats throughout, door-cc-1 only for the first 0.3 s
            await pub.publish("panels/door-vp-1/heartbeat", b"", qos=1)
            if len(_panel(samples, "door-cc-1")) < 2:
                await pub.publish("panels/door-cc-1/heartbeat", b"{}", qos=1)
            await asyncio.sleep(0.1)
    live = _panel(samples, "door-vp-1")
    dead = _panel(samples, "door-cc-1")
    assert live
    assert all(s.fields["online"] == 1 for s in live)
    assert dead[0].fields["online"] == 1
    assert dead[-1].fields["online"] == 0, [s.fields for s in dead]
    assert float(dead[-1].fields["heartbeat_age_s"]) > 0.4  # every 0.2 s x missed 2


async def test_events_become_panel_event_samples_with_vendor_names_mapped(mosquitto: MosquittoServer) -> None:
    samples: list[Sample] = []
    cfg = _cfg(
        mosquitto, payload={"event": "evt.type", "door": "evt.door", "events": {"DOOR_FORCED_OPEN": "door_forced"}}
    )
    ingest = MqttIngest(cfg, PANELS, samples.extend, instance="t2")
    async with running(ingest), aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
        payload = {"evt": {"type": "DOOR_FORCED_OPEN", "door": "north"}, "detail": "x"}
        await pub.publish("panels/door-vp-1/event", json.dumps(payload).encode(), qos=1)
        await pub.publish("panels/door-vp-1/event", json.dumps({"evt": {"type": "on_battery"}}).encode(), qos=1)
        await wait_for(lambda: ingest.book.stats.events == 2, what="two events")
    events = [s for s in samples if s.measurement == "panel_event"]
    assert [dict(s.tags) for s in events] == [
        {"device": "door-vp-1", "site": "villa-parke", "event": "door_forced", "door": "north"},
        {"device": "door-vp-1", "site": "villa-parke", "event": "on_battery"},
    ]
    assert [s.fields["alarm"] for s in events] == [1, 0]


async def test_ten_thousand_malformed_payloads_are_counted_and_logged_once_per_panel(
    mosquitto: MosquittoServer,
) -> None:
    samples: list[Sample] = []
    ingest = MqttIngest(_cfg(mosquitto, max_payload_bytes=64), PANELS, samples.extend, instance="t3")
    bad = [b"not json", b'{"door": "main"}', b'{"event": "alien_landing"}', b"[1,2", b'{"event": ' + b"9" * 80 + b"}"]
    with structlog.testing.capture_logs() as logs:
        async with running(ingest), aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
            for i in range(10_000):
                device = PANELS[i % 2].device
                await pub.publish(f"panels/{device}/event", bad[i % len(bad)], qos=0)
            await pub.publish("panels/door-vp-1/event", b'{"event": "tamper"}', qos=1)
            await wait_for(lambda: ingest.book.stats.events == 1, what="the good event after the garbage", within=30)
            assert ingest.book.stats.connected
    assert ingest.book.stats.malformed == 10_000
    malformed_logs = [e for e in logs if e["event"] == "panel_payload_malformed"]
    assert sorted(e["device"] for e in malformed_logs) == ["door-cc-1", "door-vp-1"]
    assert [s.tags["event"] for s in samples if s.measurement == "panel_event"] == ["tamper"]
    per_panel = {s.tags["device"]: s.fields["malformed"] for s in samples if s.measurement == "panel"}
    assert not per_panel or sum(int(v) for v in per_panel.values()) <= 10_000


async def test_broker_restart_loses_no_queued_event_and_declares_no_panel_dead(tmp_path: Path) -> None:
    server = _server(tmp_path / "mq")
    server.persistence = True
    server.start()
    try:
        samples: list[Sample] = []
        ingest = MqttIngest(_cfg(server), PANELS, samples.extend, instance="t4")
        # One session first, so the broker knows netwatch's subscriptions; then netwatch goes away.
        async with running(ingest):
            pass
        async with aiomqtt.Client("127.0.0.1", server.port) as pub:
            await pub.publish("panels/door-vp-1/event", b'{"event": "door_forced", "door": "a"}', qos=1)
        server.restart()  # the broker saves the queued message and the session on SIGTERM
        async with aiomqtt.Client("127.0.0.1", server.port) as pub:
            await pub.publish("panels/door-vp-1/event", b'{"event": "door_held_open", "door": "b"}', qos=1)

        async with running(ingest):
            await wait_for(lambda: ingest.book.stats.events == 2, what="both events queued while away")
            # Now the broker goes away under a running ingest: no panel is reported at all meanwhile.
            server.stop()
            await wait_for(lambda: not ingest.book.stats.connected, what="broker loss noticed")
            count = len(samples)
            await asyncio.sleep(1.0)  # five cadences without a broker
            assert not [s for s in samples[count:] if s.measurement == "panel"]
            server.start()
            await wait_for(lambda: ingest.book.stats.connected, what="reconnect")
            async with aiomqtt.Client("127.0.0.1", server.port) as pub:
                await pub.publish("panels/door-cc-1/event", b'{"event": "tamper"}', qos=1)
            await wait_for(lambda: ingest.book.stats.events == 3, what="subscriptions resumed")
            count = len(samples)
            await asyncio.sleep(0.25)  # within the grace after reconnect: still online without heartbeats
            after = [s for s in samples[count:] if s.measurement == "panel"]
            assert after
            assert all(s.fields["online"] == 1 for s in after)
        events = [s.tags["event"] for s in samples if s.measurement == "panel_event"]
        assert events == ["door_forced", "door_held_open", "tamper"]
        assert ingest.book.stats.reconnects >= 1
        health = [s for s in samples if s.measurement == "netwatch"]
        assert any(s.fields["broker_connected"] == 0 for s in health)
    finally:
        server.stop()


async def test_login_from_a_password_file_and_a_refused_login_is_a_reported_outage(
    mosquitto_auth: MosquittoServer, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret\n")
    bad.write_text("wrong\n")
    base = {"host": "127.0.0.1", "port": mosquitto_auth.port, "username": "netwatch", "reconnect_min": 0.05}
    samples: list[Sample] = []
    with structlog.testing.capture_logs() as logs:
        refused = MqttIngest(
            MqttConfig.model_validate({**base, "password_file": str(bad)}), PANELS, samples.extend, instance="t5"
        )
        task = asyncio.create_task(refused.run())
        await asyncio.sleep(1.0)  # several retries
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not refused.book.stats.connected
    downs = [e for e in logs if e["event"] == "mqtt_broker_down"]
    assert len(downs) == 1  # once per outage, not per retry
    assert "wrong" not in str(logs)
    assert not [s for s in samples if s.measurement == "panel"]

    ingest = MqttIngest(
        MqttConfig.model_validate({**base, "password_file": str(good)}), PANELS, samples.extend, instance="t6"
    )
    async with running(ingest):
        assert ingest.book.stats.connected
