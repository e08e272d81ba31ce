"""The daemon with ``mqtt:``: the ingest starts, feeds the pipeline, takes new panels on reload, stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from netwatch import daemon
from netwatch.model import Sample
from tests.integration.test_mqtt_panels import wait_for
from tests.servers.mosquitto import MosquittoServer


def _config(tmp_path: Path, port: int, panels: list[str]) -> Path:
    devices = "".join(
        f"  - {{id: {p}, site: yard, kind: access_panel, address: 127.0.0.1, checks: []}}\n" for p in panels
    )
    path = tmp_path / "netwatch.yaml"
    path.write_text(
        f"""
instance: mqtt-e2e
state_dir: {tmp_path / "state"}
scheduler: {{stats_interval: 1s}}
api: {{listen: "127.0.0.1:0"}}
mqtt: {{host: 127.0.0.1, port: {port}, heartbeat_every: 1s, reconnect_min: 100ms}}
sites:
  - {{id: yard, name: City Yard, kind: yard}}
devices:
{devices}"""
    )
    return path


async def test_daemon_runs_the_ingest_applies_new_panels_on_reload_and_stops(
    tmp_path: Path, mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Sample] = []
    original = daemon.Pipeline.emit

    def emit(self: daemon.Pipeline, samples: list[Sample]) -> None:
        seen.extend(samples)
        original(self, samples)

    monkeypatch.setattr(daemon.Pipeline, "emit", emit)
    stop, reload = asyncio.Event(), asyncio.Event()
    path = _config(tmp_path, mosquitto.port, ["door-1"])
    task = asyncio.create_task(daemon.run(path, stop, reload, configure_logs=lambda *_: None))
    try:
        await wait_for(
            lambda: any(s.measurement == "netwatch" and s.fields.get("broker_connected") == 1 for s in seen),
            what="the ingest's health saying connected",
        )

        def events() -> list[str]:
            return [s.tags["device"] for s in seen if s.measurement == "panel_event"]

        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
            await pub.publish("panels/door-1/event", b'{"event": "door_forced"}', qos=1)
            await pub.publish("panels/door-2/event", b'{"event": "door_forced"}', qos=1)  # not configured yet
            await wait_for(lambda: events() == ["door-1"], what="door-1's event")
            _config(tmp_path, mosquitto.port, ["door-1", "door-2"])
            reload.set()
            await wait_for(lambda: not reload.is_set(), what="reload taken")
            await asyncio.sleep(0.2)
            await pub.publish("panels/door-2/event", b'{"event": "tamper"}', qos=1)
            await wait_for(lambda: events() == ["door-1", "door-2"], what="door-2's event after the reload")
        alarms = [s for s in seen if s.measurement == "panel" and s.fields["alarms"]]
        assert [s.tags["device"] for s in alarms] == ["door-1", "door-2"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
