"""State published on retained MQTT topics (``mqtt.publish``) through a real mosquitto.

What a building system subscribing to ``netwatch/<instance>/#`` would notice: the current state
at once (retained), one message per change and none per poll, incidents that vanish when they
resolve, nothing stale after netwatch restarts with a smaller config, and nothing lost while the
broker was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from netwatch import daemon
from netwatch.alerting.model import Impact, Incident
from netwatch.alerting.service import OpenIncident
from netwatch.config import load_config
from netwatch.ingest.mqttconfig import MqttConfig
from netwatch.inventory import Inventory
from netwatch.model import Sample
from netwatch.publish.mqttstate import StatePublisher
from tests.integration.test_mqtt_panels import wait_for
from tests.servers.common import free_port
from tests.servers.mosquitto import MosquittoServer

PREFIX = "netwatch/city-1"
T0 = 1_790_000_000_000_000_000  # 2026-09-21T...Z, in ns


def _inventory(tmp_path: Path, devices: list[str]) -> Inventory:
    lines = "".join(f"  - {{id: {d}, site: yard, kind: switch, address: 127.0.0.1, checks: []}}\n" for d in devices)
    path = tmp_path / f"inv-{len(devices)}.yaml"
    path.write_text(f"sites:\n  - {{id: yard, name: City Yard, kind: yard}}\ndevices:\n{lines}")
    return load_config(path).inventory


def _cfg(server: MosquittoServer, **publish: object) -> MqttConfig:
    return MqttConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": server.port,
            "reconnect_min": 0.05,
            "reconnect_max": 0.2,
            "publish": {"prefix": "netwatch/{instance}", **publish},
        }
    )


def _device(device: str, state: str, reason: str = "ok", ts: int = T0) -> Sample:
    return Sample(
        "device",
        {"device": device, "site": "yard", "kind": "switch"},
        {"up": int(state != "down"), "state": state, "reason": reason},
        ts,
    )


def _incident(rule: str, entity: str) -> OpenIncident:
    inc = Incident(
        id=f"{rule}-{entity}-1",
        rule=rule,
        entity=entity,
        severity="critical",
        labels={"device": entity},
        summary=f"{entity} is down",
        started_ns=T0,
        impact=Impact(devices=("ap-1", "ap-2"), by_site={"yard": 2}, by_kind={"wifi_ap": 2}),
    )
    return OpenIncident(incident=inc, state="firing", held="", silenced_by=(), notified=("oncall",))


@dataclass
class Watcher:
    """A consumer subscribed to the prefix: every message in order, and the retained picture."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.messages if t == topic]

    def current(self) -> dict[str, object]:
        state: dict[str, bytes] = {}
        for topic, payload, _ in self.messages:
            if payload:
                state[topic] = payload
            else:
                state.pop(topic, None)
        return {t: (json.loads(p) if p.startswith(b"{") else p.decode()) for t, p in state.items()}


@asynccontextmanager
async def watching(server: MosquittoServer) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    async with aiomqtt.Client("127.0.0.1", server.port) as client:
        await client.subscribe(f"{PREFIX}/#", qos=1)

        async def read() -> None:
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload or "").encode()
                watcher.messages.append((str(m.topic), payload, m.retain))

        task = asyncio.create_task(read())
        try:
            yield watcher
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def snapshot(server: MosquittoServer, settle: float = 0.5) -> dict[str, object]:
    """What a consumer arriving now gets: the retained messages under the prefix."""
    async with watching(server) as w:
        await asyncio.sleep(settle)
    assert all(retained for _, _, retained in w.messages)
    return w.current()


@asynccontextmanager
async def running(publisher: StatePublisher) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher.run())
    try:
        await wait_for(lambda: publisher.stats.connected, what="publisher connected")
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_one_retained_message_per_state_change_never_per_poll(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    pub = StatePublisher(_cfg(mosquitto), _inventory(tmp_path, ["sw-1", "sw-2"]), instance="city-1")
    async with watching(mosquitto) as w, running(pub):
        polls = [("up", "ok")] * 5 + [("down", "timeout"), ("down", "refused"), ("down", "refused")]
        for i, (state, reason) in enumerate(polls):
            pub.observe([_device("sw-1", state, reason, ts=T0 + i * 30 * 10**9)])
            await wait_for(lambda: not pub._pending, what="the poll handled")
        await asyncio.sleep(0.3)
        docs = [json.loads(p) for p in w.on(f"{PREFIX}/device/sw-1")]
    assert [(d["state"], d["reason"]) for d in docs] == [("up", "ok"), ("down", "timeout"), ("down", "refused")]
    # `since` is when the state began: a new reason does not move it.
    assert [d["since"] for d in docs][1:] == ["2026-09-21T14:15:50Z"] * 2
    assert docs[0] == {
        "device": "sw-1",
        "site": "yard",
        "site_name": "City Yard",
        "kind": "switch",
        "state": "up",
        "up": True,
        "reason": "ok",
        "since": "2026-09-21T14:13:20Z",
    }
    late = await snapshot(mosquitto)
    assert late[f"{PREFIX}/status"] == "offline"  # the publisher stopped cleanly above
    device = late[f"{PREFIX}/device/sw-1"]
    assert isinstance(device, dict)
    assert (device["state"], device["reason"]) == ("down", "refused")
    assert f"{PREFIX}/device/sw-2" not in late  # never seen: nothing invented


async def test_incidents_appear_with_their_impact_and_vanish_when_resolved(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    open_now = [_incident("device_down", "sw-1"), _incident("interface_down", "sw-2:xe-0/0/1")]
    pub = StatePublisher(
        _cfg(mosquitto), _inventory(tmp_path, ["sw-1", "sw-2"]), instance="city-1", incidents=lambda: open_now
    )
    async with running(pub):
        await wait_for(lambda: not pub._pending, what="incidents published")
        first = await snapshot(mosquitto)
        open_now.pop(0)  # device_down resolved
        await wait_for(lambda: not pub._pending and len(pub._state) == 1, what="the resolve published")
        second = await snapshot(mosquitto)
    down = first[f"{PREFIX}/incident/device_down/sw-1"]
    assert isinstance(down, dict)
    assert down["impact"] == {
        "count": 2,
        "devices": ["ap-1", "ap-2"],
        "by_site": {"yard": 2},
        "by_kind": {"wifi_ap": 2},
    }
    assert down["summary"] == "sw-1 is down"
    assert down["state"] == "firing"
    assert "notified" not in down
    # A port name's slashes do not add topic levels.
    assert f"{PREFIX}/incident/interface_down/sw-2:xe-0_0_1" in first
    assert f"{PREFIX}/incident/device_down/sw-1" not in second
    assert f"{PREFIX}/incident/interface_down/sw-2:xe-0_0_1" in second
    assert second[f"{PREFIX}/status"] == "online"


async def test_a_restart_deletes_what_no_longer_exists_and_keeps_the_rest(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    first = StatePublisher(
        _cfg(mosquitto),
        _inventory(tmp_path, ["sw-1", "sw-2"]),
        instance="city-1",
        incidents=lambda: [_incident("device_down", "sw-2")],
    )
    async with running(first):
        first.observe([_device("sw-1", "up"), _device("sw-2", "down", "timeout")])
        await wait_for(lambda: not first._pending, what="first run published")
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as other:  # another program's topic under ours
        await other.publish(f"{PREFIX}/notes/hello", b"keep me", qos=1, retain=True)
    assert set(await snapshot(mosquitto)) == {
        f"{PREFIX}/status",
        f"{PREFIX}/device/sw-1",
        f"{PREFIX}/device/sw-2",
        f"{PREFIX}/incident/device_down/sw-2",
        f"{PREFIX}/notes/hello",
    }
    # sw-2 was removed from the config while netwatch was stopped, and its incident went with it.
    second = StatePublisher(_cfg(mosquitto), _inventory(tmp_path, ["sw-1"]), instance="city-1", incidents=list)
    async with running(second):
        await wait_for(lambda: not second._pending, what="stale topics deleted")
        after = await snapshot(mosquitto)
    assert set(after) == {f"{PREFIX}/status", f"{PREFIX}/device/sw-1", f"{PREFIX}/notes/hello"}
    assert after[f"{PREFIX}/status"] == "online"


async def test_changes_while_the_broker_is_away_arrive_when_it_returns_without_its_store(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    pub = StatePublisher(_cfg(mosquitto), _inventory(tmp_path, ["sw-1", "sw-2"]), instance="city-1")
    async with running(pub):
        pub.observe([_device("sw-1", "up"), _device("sw-2", "up")])
        await wait_for(lambda: not pub._pending, what="published")
        mosquitto.stop()  # no persistence: its retained messages are gone with it
        await wait_for(lambda: not pub.stats.connected, what="publisher saw the broker go")
        pub.observe([_device("sw-2", "down", "timeout"), _device("sw-2", "up"), _device("sw-2", "down", "refused")])
        mosquitto.start()
        await wait_for(lambda: pub.stats.connected and not pub._pending, what="republished", within=15)
        after = await snapshot(mosquitto)
    sw1, sw2 = after[f"{PREFIX}/device/sw-1"], after[f"{PREFIX}/device/sw-2"]
    assert isinstance(sw1, dict)
    assert isinstance(sw2, dict)
    assert sw1["state"] == "up"
    assert (sw2["state"], sw2["reason"]) == ("down", "refused")


def test_publish_config_refuses_wildcards_and_unknown_placeholders() -> None:
    for prefix in ("city/#", "city/+/x", "/city", "city/", "city//x", "$SYS/x", "city/{site}"):
        with pytest.raises(ValueError, match="prefix"):
            MqttConfig.model_validate({"host": "h", "publish": {"prefix": prefix}})


class _Port:
    """A TCP port on loopback the test opens and closes: the 'device' the daemon watches."""

    def __init__(self) -> None:
        self.port = free_port()
        self._sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def test_the_daemon_publishes_device_state_and_the_incident_through_a_fault(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    port = _Port()
    port.open()
    path = tmp_path / "netwatch.yaml"
    path.write_text(
        f"""
instance: city-1
state_dir: {tmp_path / "state"}
scheduler: {{stats_interval: 1s}}
api: {{listen: "127.0.0.1:0"}}
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, reconnect_min: 100ms, publish: {{}}}}
defaults: {{interval: 1s, timeout: 900ms}}
sites:
  - {{id: yard, name: City Yard, kind: yard}}
devices:
  - {{id: gate-1, site: yard, kind: access_panel, address: 127.0.0.1, checks: [tcp],
     tcp: {{port: {port.port}, connect_timeout: 500ms}}, panel: {{mqtt: false}}}}
"""
    )
    stop, reload = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(daemon.run(path, stop, reload, configure_logs=lambda *_: None))
    topic, incident = f"{PREFIX}/device/gate-1", f"{PREFIX}/incident/device_down/gate-1"
    try:
        async with watching(mosquitto) as w:

            def device_state() -> object:
                doc = w.current().get(topic)
                return doc.get("state") if isinstance(doc, dict) else None

            await wait_for(lambda: device_state() == "up", what="gate-1 up on MQTT", within=15)
            port.close()
            await wait_for(lambda: device_state() == "down", what="gate-1 down on MQTT", within=15)
            await wait_for(lambda: incident in w.current(), what="the incident on MQTT", within=15)
            port.open()
            await wait_for(lambda: device_state() == "up", what="gate-1 back up", within=15)
            await wait_for(lambda: incident not in w.current(), what="the incident gone", within=15)
            states = [json.loads(p)["state"] for p in w.on(topic)]
        # One message per change, whatever the number of polls in between.
        assert states == ["up", "down", "up"]
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        port.close()
    final = await snapshot(mosquitto)
    assert final[f"{PREFIX}/status"] == "offline"
