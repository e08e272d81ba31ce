"""The MQTT ingest over TLS (``mqtt: {tls: true, ca_file: ...}``) against a real mosquitto TLS listener.

The broker's certificate (for 127.0.0.1) comes from a throwaway CA, and the broker requires a
login, as a production broker reached over a network would. With the CA that signed it the
ingest connects and a panel's heartbeat and event arrive; with a CA that did not, or with a wrong
password, the ingest stays disconnected without crashing, says so once, and reports no panel
(their state is unknown, not offline).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog

from netwatch.ingest.mqtt import MqttIngest
from netwatch.ingest.mqttconfig import MqttConfig
from netwatch.model import Sample
from tests.integration.test_mqtt_panels import PANELS, running, wait_for
from tests.servers.mosquitto import TlsBroker
from tests.servers.pki import TestCA


def _cfg(broker: TlsBroker, tmp_path: Path, *, ca_file: Path, password: str = "s3cret") -> MqttConfig:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    return MqttConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": broker.server.tls_port,
            "tls": True,
            "ca_file": str(ca_file),
            "username": "netwatch",
            "password_file": str(secret),
            "reconnect_min": 0.05,
            "reconnect_max": 0.2,
        }
    )


def _panel_client(broker: TlsBroker) -> aiomqtt.Client:
    """A simulated panel, publishing over TLS too, trusting the test CA."""
    return aiomqtt.Client(
        "127.0.0.1",
        broker.server.tls_port,
        username="netwatch",
        password="s3cret",
        tls_context=ssl.create_default_context(cafile=broker.ca.cert_file),
    )


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


async def _run_for(ingest: MqttIngest, seconds: float) -> None:
    """Run the ingest for a while (several reconnect attempts); it must still be running after."""
    task = asyncio.create_task(ingest.run())
    await asyncio.sleep(seconds)
    assert not task.done(), task  # an unreachable broker is retried, never fatal
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_with_the_ca_that_signed_the_broker_a_panels_heartbeat_and_event_arrive(
    mosquitto_tls: TlsBroker, tmp_path: Path
) -> None:
    samples: list[Sample] = []
    ingest = MqttIngest(
        _cfg(mosquitto_tls, tmp_path, ca_file=mosquitto_tls.ca.cert_file), PANELS, samples.extend, instance="tls1"
    )
    async with running(ingest), _panel_client(mosquitto_tls) as panel:
        await panel.publish("panels/door-vp-1/heartbeat", b"", qos=1)
        await panel.publish("panels/door-vp-1/event", b'{"event": "door_forced", "door": "north"}', qos=1)
        await wait_for(lambda: ingest.book.stats.events == 1, what="the event over TLS")
        await wait_for(
            lambda: any(s.measurement == "panel" and s.tags["device"] == "door-vp-1" for s in samples),
            what="door-vp-1's panel report",
        )
        assert ingest.stats()["broker_connected"] == 1
    assert ingest.book.stats.heartbeats == 1
    [event] = [s for s in samples if s.measurement == "panel_event"]
    assert dict(event.tags) == {"device": "door-vp-1", "site": "villa-parke", "event": "door_forced", "door": "north"}
    assert event.fields["alarm"] == 1
    reports = [s for s in samples if s.measurement == "panel" and s.tags["device"] == "door-vp-1"]
    assert reports[0].fields["online"] == 1


async def test_a_ca_that_did_not_sign_the_broker_keeps_the_ingest_out_logged_once_no_panel_offline(
    mosquitto_tls: TlsBroker, tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    impostor = TestCA(tmp_path / "other-ca", name="some other CA")
    samples: list[Sample] = []
    ingest = MqttIngest(
        _cfg(mosquitto_tls, tmp_path, ca_file=impostor.cert_file), PANELS, samples.extend, instance="tls2"
    )
    await _run_for(ingest, 1.0)
    assert not ingest.book.stats.connected
    health = [s.fields["broker_connected"] for s in samples if s.measurement == "netwatch"]
    assert health
    assert set(health) == {0}
    downs = [e for e in logs if e["event"] == "mqtt_broker_down"]
    assert len(downs) == 1, downs  # once per outage, not once per retry
    assert "certificate verify failed" in downs[0]["error"], downs[0]
    assert downs[0]["port"] == mosquitto_tls.server.tls_port
    assert not [s for s in samples if s.measurement in ("panel", "panel_event")]


async def test_a_wrong_password_over_tls_is_one_reported_outage_and_no_panel_offline(
    mosquitto_tls: TlsBroker, tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    samples: list[Sample] = []
    cfg = _cfg(mosquitto_tls, tmp_path, ca_file=mosquitto_tls.ca.cert_file, password="wrong-password")
    ingest = MqttIngest(cfg, PANELS, samples.extend, instance="tls3")
    await _run_for(ingest, 1.0)
    assert not ingest.book.stats.connected
    downs = [e for e in logs if e["event"] == "mqtt_broker_down"]
    assert len(downs) == 1, downs
    assert "authori" in downs[0]["error"].lower(), downs[0]  # the broker refused the login; TLS itself was fine
    assert "wrong-password" not in str(logs)
    assert not [s for s in samples if s.measurement in ("panel", "panel_event")]


async def test_a_ca_file_that_holds_no_certificate_is_an_outage_not_a_crash_and_fixing_it_needs_no_restart(
    mosquitto_tls: TlsBroker, tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    """The CA bundle caught half-written (or replaced by something else) after the config was loaded:
    the ingest keeps retrying and says which file is wrong; once the file is right it connects."""
    ca_file = tmp_path / "broker-ca.pem"
    # A good bundle at load (check-config refuses a broken one), cut short afterwards.
    ca_file.write_bytes(mosquitto_tls.ca.cert_file.read_bytes())
    cfg = _cfg(mosquitto_tls, tmp_path, ca_file=ca_file)
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nMIIB (cut short while being copied)\n")
    samples: list[Sample] = []
    ingest = MqttIngest(cfg, PANELS, samples.extend, instance="tls4")
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.sleep(0.5)
        assert not task.done(), task
        downs = [e for e in logs if e["event"] == "mqtt_broker_down"]
        assert len(downs) == 1, downs
        assert str(ca_file) in downs[0]["error"]
        assert not ingest.book.stats.connected
        ca_file.write_bytes(mosquitto_tls.ca.cert_file.read_bytes())
        await wait_for(lambda: ingest.book.stats.connected, what="the connection once the CA file is right")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [e["event"] for e in logs if e["event"].startswith("mqtt_broker")] == [
        "mqtt_broker_down",
        "mqtt_broker_reconnected",
    ]
    assert not [s for s in samples if s.measurement == "panel" and s.fields["online"] == 0]
