"""Receivers against loopback servers that enforce Slack's, Teams' and PagerDuty's contracts.

Each sender makes one attempt and says what it came to (delivered, retry, reject); the outbox
tests cover retrying. Signatures of the generic webhook are verified here with hashlib/hmac
directly, not with netwatch's own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from netwatch.alerting.model import Event, Impact, Incident, Notification, incident_id
from netwatch.alerting.outbox import SendResult
from netwatch.alerting.receivers import REGISTRY, build_sender, parse_receiver
from netwatch.alerting.receivers.alertmanager import AlertmanagerSender, label_name
from netwatch.alerting.receivers.mqtt import topic_for
from netwatch.alerting.receivers.teams import read_reply
from netwatch.alerting.receivers.webhook import Reply, WebhookSender, retry_after
from tests.servers.saas import PagerDutyServer, SlackServer, TeamsServer, WebhookServer

WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
T0 = 1_764_662_400_000_000_000


def incident(
    *, entity: str = "span-ch-vp", resolved_ns: int | None = None, devices: tuple[str, ...] = ("ap-vp-1", "cam-vp-1")
) -> Incident:
    return Incident(
        id=incident_id("span_down", entity, T0),
        rule="span_down",
        entity=entity,
        severity="critical",
        labels={"site": "villa-parke", "lessee": "city", "odd-label.name": "x"},
        summary=f"{entity} down",
        started_ns=T0,
        resolved_ns=resolved_ns,
        impact=Impact(
            devices=devices,
            by_site={"villa-parke": len(devices)} if devices else {},
            by_kind={"wifi_ap": len(devices)} if devices else {},
        ),
    )


def note(
    event: Event = "firing", *, receiver: str = "r", created_ns: int = T0 + 3_000_000_000, **kw: Any
) -> Notification:
    inc = incident(resolved_ns=T0 + 60_000_000_000 if event == "resolved" else None, **kw)
    return Notification(receiver=receiver, event=event, incident=inc, created_ns=created_ns)


def secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    return str(path)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- generic webhook --------------------------------------------------------------------------------


def verify_standard_webhook(secret_text: str, headers: dict[str, str], body: bytes) -> bool:
    """Check a delivery the way a Standard Webhooks consumer does (independently of netwatch)."""
    key = base64.b64decode(secret_text[len("whsec_") :]) if secret_text.startswith("whsec_") else secret_text.encode()
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > 300:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in offered)


@pytest.mark.parametrize("secret_text", [WHSEC, "a plain shared secret of some length"])
async def test_webhook_is_signed_per_standard_webhooks(
    tmp_path: Path, session: aiohttp.ClientSession, secret_text: str
) -> None:
    """The body is the documented JSON; webhook-id is the notification key; the signature verifies."""
    async with WebhookServer() as server:
        cfg = parse_receiver(
            {"kind": "webhook", "name": "noc", "url": server.url, "secret_file": secret(tmp_path, "k", secret_text)}
        )
        n = note(receiver="noc")
        result = await build_sender(cfg).send(n, session)
        assert result == SendResult.delivered(200)
        (got,) = server.requests
        assert got.headers["webhook-id"] == n.key
        assert got.headers["Content-Type"] == "application/json"
        assert verify_standard_webhook(secret_text, got.headers, got.body)
        assert not verify_standard_webhook(secret_text, got.headers, got.body.replace(b"critical", b"warning"))
        doc = got.json()
        assert doc["type"] == "incident.firing"
        assert doc["version"] == 1
        data = doc["data"]
        assert data["id"] == n.key
        assert data["incident"] == n.incident.id
        assert data["rule"] == "span_down"
        assert data["entity"] == "span-ch-vp"
        assert data["severity"] == "critical"
        assert data["labels"]["site"] == "villa-parke"
        assert data["started_at"] == "2025-12-02T08:00:00.000Z"
        assert data["resolved_at"] is None
        assert data["impact"]["count"] == 2
        assert data["impact"]["devices"] == ["ap-vp-1", "cam-vp-1"]
        assert data["impact"]["by_site"] == {"villa-parke": 2}


async def test_webhook_id_is_stable_across_attempts_and_the_timestamp_is_not(tmp_path: Path) -> None:
    """A retry carries the same webhook-id (the consumer's idempotency key), signed afresh."""
    cfg = parse_receiver(
        {"kind": "webhook", "name": "noc", "url": "http://127.0.0.1:9/", "secret_file": secret(tmp_path, "k", WHSEC)}
    )
    sender = build_sender(cfg)
    assert isinstance(sender, WebhookSender)
    n = note(receiver="noc")
    body1, h1 = sender.request(n, now=1_800_000_000)
    body2, h2 = sender.request(n, now=1_800_000_100)
    assert body1 == body2
    assert h1["webhook-id"] == h2["webhook-id"] == n.key
    assert h1["webhook-signature"] != h2["webhook-signature"]
    assert "." not in n.key  # the spec forbids dots in the id


def test_webhook_secret_must_be_usable(tmp_path: Path) -> None:
    """A whsec_ secret that is not base64, or a short key, is a config error naming the key, not the secret."""
    for text in ("whsec_not*base64!", "tiny-k3y"):
        with pytest.raises(ValidationError) as err:
            parse_receiver(
                {
                    "kind": "webhook",
                    "name": "n",
                    "url": "https://h.example/",
                    "secret_file": secret(tmp_path, "k", text),
                }
            )
        assert "secret_file" in str(err.value)
        assert text not in str(err.value)


async def test_connection_refused_is_a_retry_without_the_url(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A receiver that is down is retried; the detail never carries the (secret) URL."""
    server = SlackServer()
    await server.start()
    url = server.add_hook("alerts")
    await server.stop()
    cfg = parse_receiver({"kind": "slack", "name": "s", "url_file": secret(tmp_path, "u", url)})
    result = await build_sender(cfg).send(note(), session)
    assert result.verdict == "retry"
    assert "secretXYZ" not in result.detail
    assert "services" not in result.detail


# -- Slack ------------------------------------------------------------------------------------------


async def test_slack_message_meets_the_contract(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Text fallback plus blocks within Block Kit's limits; Slack answers 200 ok."""
    async with SlackServer() as server:
        url = server.add_hook("alerts")
        sender = build_sender(parse_receiver({"kind": "slack", "name": "s", "url_file": secret(tmp_path, "u", url)}))
        assert await sender.send(note(), session) == SendResult.delivered(200)
        (msg,) = server.hooks[url.rsplit("/", 1)[1]].messages
        assert "span-ch-vp down" in msg["text"]
        assert "FIRING" in msg["text"]
        assert msg["blocks"][0]["type"] == "header"
        assert any("ap-vp-1" in json.dumps(b) for b in msg["blocks"])


async def test_slack_rate_limit_is_a_retry_with_retry_after(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A second message within a second gets 429 + Retry-After; the sender says when to retry."""
    async with SlackServer(retry_after_s=2) as server:
        url = server.add_hook("alerts")
        sender = build_sender(parse_receiver({"kind": "slack", "name": "s", "url_file": secret(tmp_path, "u", url)}))
        assert (await sender.send(note(), session)).verdict == "delivered"
        second = await sender.send(note(created_ns=T0 + 5), session)
        assert second == SendResult.retry("rate_limited", status=429, retry_after_s=2.0)


@pytest.mark.parametrize(
    ("state", "status", "detail"),
    [
        ("not_found", 404, "channel_not_found"),
        ("archived", 410, "channel_is_archived"),
        ("prohibited", 403, "action_prohibited"),
    ],
)
async def test_slack_channel_errors_are_dropped_with_slacks_reason(
    tmp_path: Path, session: aiohttp.ClientSession, state: str, status: int, detail: str
) -> None:
    """A 4xx with Slack's error string is not retried; the string is the reason logged."""
    async with SlackServer() as server:
        url = server.add_hook("alerts", state=state)
        sender = build_sender(parse_receiver({"kind": "slack", "name": "s", "url_file": secret(tmp_path, "u", url)}))
        assert await sender.send(note(), session) == SendResult.reject(detail, status=status)


async def test_slack_unknown_webhook_is_no_service(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A revoked webhook URL answers 404 no_service: dropped."""
    async with SlackServer() as server:
        url = server.add_hook("alerts").replace("tok0000", "tok9999")
        sender = build_sender(parse_receiver({"kind": "slack", "name": "s", "url_file": secret(tmp_path, "u", url)}))
        assert await sender.send(note(), session) == SendResult.reject("no_service", status=404)


def test_slack_and_teams_urls_come_from_files(tmp_path: Path) -> None:
    """The webhook URL is the credential: read from url_file, never shown in the config's repr."""
    url = "https://hooks.slack.com/services/T000/B000/verysecrettoken"
    cfg = parse_receiver({"kind": "slack", "name": "s", "url_file": secret(tmp_path, "u", url)})
    assert "verysecrettoken" not in repr(cfg)
    with pytest.raises(ValidationError) as err:
        parse_receiver({"kind": "teams", "name": "t", "url_file": secret(tmp_path, "x", "not a url at all")})
    assert "not a url at all" not in str(err.value)
    with pytest.raises(ValidationError):
        parse_receiver({"kind": "slack", "name": "s", "url": url})


# -- Teams ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", ["adaptive", "messagecard"])
async def test_teams_connector_accepts_both_card_kinds(
    tmp_path: Path, session: aiohttp.ClientSession, card: str
) -> None:
    """The connector takes an Adaptive Card message or a MessageCard and answers 200 '1'."""
    async with TeamsServer() as server:
        cfg = parse_receiver(
            {"kind": "teams", "name": "t", "card": card, "url_file": secret(tmp_path, "u", server.connector_url())}
        )
        assert await build_sender(cfg).send(note(), session) == SendResult.delivered(200)
        assert "span-ch-vp down" in json.dumps(server.cards[0])


async def test_teams_workflow_takes_the_adaptive_card(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A Workflows URL answers 202 to an Adaptive Card and 400 to a legacy MessageCard."""
    async with TeamsServer() as server:
        url = secret(tmp_path, "u", server.workflow_url())
        adaptive = build_sender(parse_receiver({"kind": "teams", "name": "t", "url_file": url}))
        assert await adaptive.send(note(), session) == SendResult.delivered(202)
        legacy = build_sender(parse_receiver({"kind": "teams", "name": "t", "url_file": url, "card": "messagecard"}))
        result = await legacy.send(note(), session)
        assert result.verdict == "reject"
        assert result.status == 400


async def test_teams_throttling_inside_a_200_is_read_as_429(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Past the connector's limit Teams answers 200 with 'HTTP error 429' in the body: a retry, not a success."""
    async with TeamsServer(limits=((1.0, 2),)) as server:
        sender = build_sender(
            parse_receiver({"kind": "teams", "name": "t", "url_file": secret(tmp_path, "u", server.connector_url())})
        )
        results = [await sender.send(note(created_ns=T0 + i), session) for i in range(3)]
        assert [r.verdict for r in results] == ["delivered", "delivered", "retry"]
        assert results[2].status == 429
        assert "HTTP error 429" in results[2].detail
        assert server.throttled == 1
        assert len(server.cards) == 2


def test_teams_reply_reading() -> None:
    """Errors reported inside a 2xx body count as that status; a plain '1' is success."""
    assert read_reply(Reply(200, "1")).verdict == "delivered"
    assert read_reply(Reply(200, "Microsoft Teams endpoint returned HTTP error 502 ...")).verdict == "retry"
    assert read_reply(Reply(200, "Microsoft Teams endpoint returned HTTP error 400 ...")).verdict == "reject"
    assert read_reply(Reply(429, "", "7")) == SendResult.retry("HTTP 429", status=429, retry_after_s=7.0)


# -- PagerDuty --------------------------------------------------------------------------------------


async def pd_sender(tmp_path: Path, server: PagerDutyServer, key: str | None = None) -> Any:
    routing_key = key if key is not None else server.add_routing_key()
    return build_sender(
        parse_receiver(
            {
                "kind": "pagerduty",
                "name": "p",
                "url": server.url,
                "routing_key_file": secret(tmp_path, "rk", routing_key),
            }
        )
    )


async def test_pagerduty_trigger_then_resolve_one_incident(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Trigger and resolve share dedup_key = incident id; a re-sent trigger opens no second incident."""
    async with PagerDutyServer() as server:
        sender = await pd_sender(tmp_path, server)
        firing = note()
        assert await sender.send(firing, session) == SendResult.delivered(202)
        assert await sender.send(firing, session) == SendResult.delivered(202)  # e.g. resent after a crash
        assert await sender.send(note("resolved"), session) == SendResult.delivered(202)
        assert server.incidents_opened == 1
        alert = server.alerts[firing.incident.id]
        assert alert.status == "resolved"
        assert alert.triggers == 2
        trigger = server.events[0]
        assert trigger["dedup_key"] == firing.incident.id
        assert trigger["event_action"] == "trigger"
        assert trigger["payload"]["source"] == "span-ch-vp"
        assert trigger["payload"]["severity"] == "critical"
        assert trigger["payload"]["custom_details"]["impact"]["count"] == 2
        assert server.events[2] == {
            "routing_key": trigger["routing_key"],
            "event_action": "resolve",
            "dedup_key": firing.incident.id,
        }


async def test_pagerduty_invalid_event_is_dropped_and_throttling_retried(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """400 (here: an unknown routing key) is dropped with PagerDuty's errors; 429 and 5xx are retried."""
    async with PagerDutyServer(max_per_window=1, window_s=60) as server:
        bad = await pd_sender(tmp_path, server, key="R" + "f" * 31)
        rejected = await bad.send(note(), session)
        assert rejected.verdict == "reject"
        assert rejected.status == 400
        assert "Invalid routing key" in rejected.detail
        good = await pd_sender(tmp_path, server)
        assert (await good.send(note(), session)).verdict == "delivered"
        throttled = await good.send(note(), session)
        assert throttled.verdict == "retry"
        assert throttled.status == 429
        server.fail_next, server.fail_status = 1, 502
        assert (await good.send(note(), session)).verdict == "retry"


# -- Alertmanager (rendering; the real server is in tests/integration) -----------------------------


def test_alertmanager_alert_keeps_firing_past_a_restart_and_resolves_now(tmp_path: Path) -> None:
    """While firing endsAt = now + resend_interval x valid_for_resends; a resolve ends it at the resolve time."""
    cfg = parse_receiver(
        {"kind": "alertmanager", "name": "am", "url": "http://127.0.0.1:9093", "resend_interval": "30s"}
    )
    sender = build_sender(cfg)
    assert isinstance(sender, AlertmanagerSender)
    assert sender.resend_interval == 30.0
    now = T0 / 1e9 + 100
    (firing,) = sender.body(note(), now=now)
    assert firing["labels"] == {
        "alertname": "span_down",
        "netwatch_incident": note().incident.id,
        "severity": "critical",
        "instance": "span-ch-vp",
        "site": "villa-parke",
        "lessee": "city",
        "odd_label_name": "x",
    }
    assert firing["startsAt"] == "2025-12-02T08:00:00.000Z"
    assert firing["endsAt"] == "2025-12-02T08:03:40.000Z"  # now (08:01:40) + 4 x 30 s
    assert "2 devices" in firing["annotations"]["impact"]
    (resolved,) = sender.body(note("resolved"), now=now)
    assert resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] == "2025-12-02T08:01:00.000Z"
    assert label_name("9lives") == "_9lives"


# -- MQTT (rendering; the real broker is in tests/integration) -------------------------------------


def test_mqtt_topic_template_is_checked_and_values_made_safe(tmp_path: Path) -> None:
    """Unknown fields and wildcards fail at load; '/', '+', '#' in names never add levels."""
    cfg = parse_receiver(
        {"kind": "mqtt", "name": "m", "url": "mqtt://127.0.0.1:1883", "topic": "nw/{severity}/{entity}"}
    )
    assert topic_for(cfg.topic, note(entity="odd/name+#")) == "nw/critical/odd_name__"  # type: ignore[attr-defined]
    for bad in ("nw/{site}", "nw/#", "nw/{entity"):
        with pytest.raises(ValidationError):
            parse_receiver({"kind": "mqtt", "name": "m", "url": "mqtt://h", "topic": bad})
    with pytest.raises(ValidationError):
        parse_receiver({"kind": "mqtt", "name": "m", "url": "http://h"})
    with pytest.raises(ValidationError):
        parse_receiver({"kind": "mqtt", "name": "m", "url": "mqtt://user:pw@h"})


# -- registry and small pieces ----------------------------------------------------------------------


def test_registry_names_match_kinds_and_defaults_stay_under_documented_limits() -> None:
    """One registry line per kind; Slack stays under 1 msg/s, Teams under 4/s and 100/h, PagerDuty under 120/min."""
    assert set(REGISTRY) == {"webhook", "slack", "teams", "pagerduty", "alertmanager", "mqtt"}
    for kind, entry in REGISTRY.items():
        assert entry.config.model_fields["kind"].annotation.__args__ == (kind,)  # type: ignore[union-attr]
    slack = REGISTRY["slack"].config.model_fields["rate_limit"].default
    assert slack.burst == 1
    assert slack.every > 1.0
    teams = REGISTRY["teams"].config.model_fields["rate_limit"].default
    for window, allowed in ((1, 4), (30, 60), (3600, 100), (7200, 150), (86400, 1800)):
        assert teams.burst + window / teams.every <= allowed
    pd = REGISTRY["pagerduty"].config.model_fields["rate_limit"].default
    assert pd.burst + 60 / pd.every <= 120


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("30") == 30.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412460) == 20.0
    assert retry_after("soon") is None
    assert retry_after(None) is None
