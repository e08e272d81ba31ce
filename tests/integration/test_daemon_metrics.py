"""/metrics of a running daemon with the alert outbox, the MQTT ingest and the trap receiver configured.

An access panel beats once and goes quiet: its panel_silent incident reaches a loopback webhook
through the outbox; a garbage datagram reaches the trap port. A NOC scraping /metrics sees each
component's counters move, the broker connection, and the open incident.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from netwatch import daemon
from tests.integration.test_mqtt_panels import wait_for
from tests.servers.mosquitto import MosquittoServer
from tests.servers.saas import WebhookServer


def _config(tmp_path: Path, broker: int, hook: str) -> Path:
    (tmp_path / "hook.key").write_text("a-webhook-secret-of-some-length\n")
    (tmp_path / "community").write_text("public\n")
    path = tmp_path / "netwatch.yaml"
    path.write_text(
        f"""
instance: metrics-e2e
state_dir: {tmp_path / "state"}
scheduler: {{stats_interval: 1s}}
api: {{listen: "127.0.0.1:0"}}
mqtt: {{host: 127.0.0.1, port: {broker}, heartbeat_every: 500ms, missed: 1, grace: 0, reconnect_min: 100ms}}
traps: {{listen: "127.0.0.1:0", community_files: [community]}}
receivers:
  - {{name: noc, kind: webhook, url: "{hook}", secret_file: hook.key}}
routes:
  - {{receivers: [noc], group_wait: 0s}}
sites:
  - {{id: yard, name: City Yard, kind: yard}}
devices:
  - {{id: door-1, site: yard, kind: access_panel, address: 127.0.0.1, checks: []}}
"""
    )
    return path


async def test_metrics_show_the_outbox_mqtt_ingest_and_trap_receiver_of_a_running_daemon(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    values: dict[str, float] = {}
    kinds: dict[str, str] = {}
    stop, reload = asyncio.Event(), asyncio.Event()
    async with WebhookServer() as hook, aiohttp.ClientSession() as http:
        with structlog.testing.capture_logs() as logs:
            path = _config(tmp_path, mosquitto.port, hook.url)
            task = asyncio.create_task(daemon.run(path, stop, reload, configure_logs=lambda *_: None))
            try:
                await wait_for(lambda: any(e["event"] == "mqtt_connected" for e in logs), what="the ingest connected")
                api = next(e["url"] for e in logs if e["event"] == "api_listening" and e.get("url"))
                traps = next(e["address"] for e in logs if e["event"] == "traps_listening")
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
                    await pub.publish("panels/door-1/heartbeat", b"", qos=1)
                    await pub.publish("panels/door-1/event", b'{"event": "on_battery"}', qos=1)
                host, port = traps.rsplit(":", 1)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.sendto(b"not an SNMP message", (host, int(port)))

                async def scrape() -> None:
                    async with http.get(api + "/metrics") as resp:
                        text = await resp.text()
                    values.clear()
                    for family in text_string_to_metric_families(text):
                        kinds[family.name] = family.type
                        for s in family.samples:
                            assert s.labels.pop("instance") == "metrics-e2e"
                            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                            values[f"{s.name}{{{labels}}}" if labels else s.name] = s.value

                # The panel went quiet: panel_silent goes out through the outbox to the webhook.
                deadline = asyncio.get_running_loop().time() + 15
                while values.get("netwatch_outbox_delivered_total", 0) < 1:
                    if asyncio.get_running_loop().time() > deadline:
                        pytest.fail(f"no delivered notification on /metrics within 15 s; it has {sorted(kinds)}")
                    await asyncio.sleep(0.1)
                    await scrape()
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
    assert [b["data"]["rule"] for b in hook.bodies()][:1] == ["panel_silent"]
    assert values["netwatch_outbox_queued_total"] >= 1
    assert values["netwatch_outbox_depth"] == 0
    assert values["netwatch_outbox_rejected_total"] == 0
    assert values["netwatch_broker_connected"] == 1
    assert values["netwatch_mqtt_heartbeats_total"] == 1
    assert values["netwatch_mqtt_events_total"] == 1
    assert values["netwatch_traps_received_total"] == 1
    assert values["netwatch_traps_malformed_total"] == 1
    assert values["netwatch_incidents_open{held=none,severity=warning}"] >= 1
    assert kinds["netwatch_outbox_delivered"] == "counter"
    assert kinds["netwatch_outbox_depth"] == "gauge"
    assert kinds["netwatch_broker_connected"] == "gauge"
    assert kinds["netwatch_traps_received"] == "counter"
    assert "netwatch_publish_connected" not in kinds  # mqtt.publish is not configured
