"""Receivers against real servers: Prometheus Alertmanager (forwarding to a loopback webhook) and mosquitto.

Alertmanager: a firing alert and its resolve each reach the webhook behind it; a netwatch restart
while the alert fires (a new outbox and sender on the same outbox file) never reads as a resolve,
while netwatch staying away past ``endsAt`` does. MQTT: the document arrives at QoS 1, not
retained, with and without a login, and across a broker restart; over mqtts:// it is delivered
when the broker's certificate verifies, and kept and retried when it does not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import structlog

from netwatch.alerting.model import Event, Impact, Incident, Notification, incident_id
from netwatch.alerting.outbox import Outbox
from netwatch.alerting.receivers import build_sender, parse_receiver
from tests.servers.alertmanager import AlertmanagerServer
from tests.servers.mosquitto import MosquittoServer, TlsBroker
from tests.servers.pki import TestCA
from tests.servers.saas import WebhookServer


def incident(*, resolved_ns: int | None = None) -> Incident:
    started = time.time_ns() - 30 * 10**9
    return Incident(
        id=incident_id("span_down", "span-ch-vp", started),
        rule="span_down",
        entity="span-ch-vp",
        severity="critical",
        labels={"site": "villa-parke", "lessee": "city"},
        summary="span-ch-vp down",
        started_ns=started,
        resolved_ns=resolved_ns,
        impact=Impact(devices=("ap-vp-1", "door-vp-1"), by_site={"villa-parke": 2}, by_kind={"wifi_ap": 1}),
    )


def note(receiver: str, inc: Incident, event: Event = "firing") -> Notification:
    if event == "resolved":
        inc = replace(inc, resolved_ns=time.time_ns())
    return Notification(receiver=receiver, event=event, incident=inc, created_ns=time.time_ns())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def eventually(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {within:g} s"
        await asyncio.sleep(0.05)


def statuses(hook: WebhookServer, incident_id_: str) -> list[str]:
    """Return the statuses Alertmanager sent the hook for one incident, in order."""
    seen = []
    for body in hook.bodies():
        for alert in body["alerts"]:
            if alert["labels"].get("netwatch_incident") == incident_id_:
                seen.append(alert["status"])
    return seen


# -- Alertmanager -----------------------------------------------------------------------------------


async def test_alertmanager_forwards_firing_then_resolved(
    alertmanager: AlertmanagerServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A firing alert reaches the webhook behind Alertmanager after group_wait; its resolve after group_interval."""
    inc = incident()
    async with WebhookServer(port=alertmanager.hook_port) as hook:
        sender = build_sender(parse_receiver({"kind": "alertmanager", "name": "am", "url": alertmanager.url}))
        async with Outbox(tmp_path / "outbox.db", session=session, senders=[sender]) as outbox:
            outbox.enqueue(note("am", inc))
            await eventually(lambda: statuses(hook, inc.id) == ["firing"], 10, "the firing notification")
            body = hook.bodies()[0]
            (alert,) = body["alerts"]
            assert alert["labels"] == {
                "alertname": "span_down",
                "netwatch_incident": inc.id,
                "severity": "critical",
                "instance": "span-ch-vp",
                "site": "villa-parke",
                "lessee": "city",
            }
            assert alert["annotations"]["summary"] == "span-ch-vp down"
            assert "2 devices" in alert["annotations"]["impact"]
            outbox.enqueue(note("am", inc, "resolved"))
            await eventually(lambda: statuses(hook, inc.id) == ["firing", "resolved"], 10, "the resolved notification")
            assert outbox.counters()["am"].dropped == 0


async def test_alertmanager_restart_while_firing_is_not_a_resolve(
    alertmanager: AlertmanagerServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A restart gap shorter than endsAt plus the restarted outbox's re-send: never resolved.

    Then, as a check that the test can see a resolve: netwatch away past endsAt is one.
    """
    inc = incident()
    receiver = {
        "kind": "alertmanager",
        "name": "am",
        "url": alertmanager.url,
        "resend_interval": "1s",
        "valid_for_resends": 3,
    }
    db = tmp_path / "outbox.db"
    async with WebhookServer(port=alertmanager.hook_port) as hook:
        async with Outbox(db, session=session, senders=[build_sender(parse_receiver(receiver))]) as outbox:
            outbox.enqueue(note("am", inc))
            await eventually(lambda: statuses(hook, inc.id) == ["firing"], 10, "the firing notification")
        # netwatch is down for 2 s (endsAt was at most 3 s ahead), then starts again.
        await asyncio.sleep(2.0)
        async with Outbox(db, session=session, senders=[build_sender(parse_receiver(receiver))]) as outbox:
            assert [i.id for i in outbox.firing("am")] == [inc.id]
            await asyncio.sleep(6.0)  # two endsAt windows and more; re-sent every second
            assert outbox.counters()["am"].delivered >= 5
        assert statuses(hook, inc.id) == ["firing"]
        (active,) = [a for a in alertmanager.alerts() if a["labels"]["netwatch_incident"] == inc.id]
        assert active["status"]["state"] == "active"
        # Away for longer than endsAt: Alertmanager resolves it on its own.
        await eventually(lambda: statuses(hook, inc.id) == ["firing", "resolved"], 10, "the timeout resolve")


# -- MQTT -------------------------------------------------------------------------------------------


async def collect(
    server: MosquittoServer, topic: str, got: list[aiomqtt.Message], ready: asyncio.Event, **login: Any
) -> None:
    async with aiomqtt.Client("127.0.0.1", server.port, **login) as client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            got.append(message)


async def test_mqtt_publishes_the_document_at_qos1_not_retained(
    mosquitto: MosquittoServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The generic document arrives on the rendered topic, QoS 1, retain false; delivery survives a broker restart."""
    got: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(collect(mosquitto, "netwatch/#", got, ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        inc = incident()
        # A publish racing the broker's death waits for its PUBACK until the timeout: keep it short.
        sender = build_sender(parse_receiver({"kind": "mqtt", "name": "bus", "url": mosquitto.url, "timeout": "2s"}))
        async with Outbox(
            tmp_path / "o.db", session=session, senders=[sender], backoff_initial_s=0.1, backoff_max_s=0.5
        ) as outbox:
            first = note("bus", inc)
            outbox.enqueue(first)
            await eventually(lambda: len(got) == 1, 5, "the MQTT message")
            message = got[0]
            assert str(message.topic) == "netwatch/alerts/critical/span_down/span-ch-vp"
            assert message.qos == 1
            assert message.retain is False
            assert isinstance(message.payload, bytes)
            doc = json.loads(message.payload)
            assert doc["type"] == "incident.firing"
            assert doc["data"]["id"] == first.key
            assert doc["data"]["impact"]["count"] == 2

            # The broker goes away and comes back: the sender reconnects and delivers.
            listener.cancel()
            mosquitto.stop()
            outbox.enqueue(note("bus", inc, "resolved"))
            await asyncio.sleep(0.5)
            assert outbox.depth() == 1
            mosquitto.start()
            got.clear()
            ready.clear()
            listener = asyncio.create_task(collect(mosquitto, "netwatch/#", got, ready))
            await asyncio.wait_for(ready.wait(), 5)
            assert await outbox.wait_idle(10)
            assert outbox.counters()["bus"].retried >= 1
        # Not retained: a subscriber that arrives later gets nothing.
        late: list[aiomqtt.Message] = []
        late_ready = asyncio.Event()
        late_listener = asyncio.create_task(collect(mosquitto, "netwatch/#", late, late_ready))
        await asyncio.wait_for(late_ready.wait(), 5)
        await asyncio.sleep(0.3)
        late_listener.cancel()
        assert late == []
    finally:
        listener.cancel()


async def test_mqtt_login_from_files_and_a_refused_login_is_dropped(
    mosquitto_auth: MosquittoServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """username_file/password_file log in; a wrong password is dropped like an HTTP 4xx and counted."""
    (tmp_path / "user").write_text("netwatch\n")
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")
    got: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(
        collect(mosquitto_auth, "alerts/#", got, ready, username="netwatch", password="s3cret")
    )
    try:
        await asyncio.wait_for(ready.wait(), 5)
        base = {"kind": "mqtt", "url": mosquitto_auth.url, "topic": "alerts/{event}/{entity}"}
        good = build_sender(
            parse_receiver(
                {**base, "name": "good", "username_file": "user", "password_file": "pw"}, base_dir=str(tmp_path)
            )
        )
        bad = build_sender(
            parse_receiver(
                {**base, "name": "bad", "username_file": "user", "password_file": "bad"}, base_dir=str(tmp_path)
            )
        )
        inc = incident()
        async with Outbox(tmp_path / "o.db", session=session, senders=[good, bad]) as outbox:
            outbox.enqueue(note("good", inc))
            outbox.enqueue(note("bad", inc))
            assert await outbox.wait_idle(10)
            counters = outbox.counters()
        assert counters["good"].delivered == 1
        assert counters["bad"].dropped_rejected == 1
        await eventually(lambda: len(got) == 1, 5, "the MQTT message")
        assert str(got[0].topic) == "alerts/firing/span-ch-vp"
    finally:
        listener.cancel()


async def test_mqtts_delivers_with_the_brokers_ca_and_retries_one_it_cannot_verify(
    mosquitto_tls: TlsBroker, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """mqtts:// with ca_file: delivered over TLS. A CA that did not sign the broker's certificate: never
    delivered, kept and retried (not dropped), the log saying why. tls: insecure connects regardless."""
    (tmp_path / "user").write_text("netwatch\n")
    (tmp_path / "pw").write_text("s3cret\n")
    impostor = TestCA(tmp_path / "other-ca", name="some other CA")
    broker = mosquitto_tls.server
    got: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(collect(broker, "alerts/#", got, ready, username="netwatch", password="s3cret"))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        base = {
            "kind": "mqtt",
            "url": broker.tls_url,
            "topic": "alerts/{receiver}/{entity}",
            "username_file": "user",
            "password_file": "pw",
            "timeout": "2s",
        }
        receivers = [
            {**base, "name": "verified", "ca_file": str(mosquitto_tls.ca.cert_file)},
            {**base, "name": "unverified", "ca_file": str(impostor.cert_file)},
            {**base, "name": "insecure", "tls": "insecure"},
        ]
        senders = [build_sender(parse_receiver(r, base_dir=str(tmp_path))) for r in receivers]
        inc = incident()
        with structlog.testing.capture_logs() as logs:
            async with Outbox(
                tmp_path / "o.db", session=session, senders=senders, backoff_initial_s=0.1, backoff_max_s=0.3
            ) as outbox:
                notes = {name: note(name, inc) for name in ("verified", "unverified", "insecure")}
                for notification in notes.values():
                    outbox.enqueue(notification)
                await eventually(lambda: len(got) == 2, 10, "the verified and the insecure message")
                await eventually(lambda: outbox.counters()["unverified"].retried >= 3, 10, "three retries")
                counters = outbox.counters()
                assert outbox.depth("unverified") == 1
        assert sorted(str(m.topic) for m in got) == ["alerts/insecure/span-ch-vp", "alerts/verified/span-ch-vp"]
        docs = {str(m.topic): json.loads(m.payload) for m in got if isinstance(m.payload, bytes)}
        assert docs["alerts/verified/span-ch-vp"]["type"] == "incident.firing"
        assert docs["alerts/verified/span-ch-vp"]["data"]["id"] == notes["verified"].key
        assert counters["verified"].delivered == 1
        assert counters["unverified"].delivered == 0
        assert counters["unverified"].dropped == 0
        failing = [e for e in logs if e["event"] == "receiver_failing" and e["receiver"] == "unverified"]
        assert len(failing) == 1
        assert "certificate verify failed" in failing[0]["detail"]
    finally:
        listener.cancel()
