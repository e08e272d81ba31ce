"""PagerDuty Events API v2: trigger and resolve, with ``dedup_key`` = the incident id.

``POST https://events.pagerduty.com/v2/enqueue`` (configurable) answers ``202`` when the event is
accepted, ``400`` when it is invalid (not retried), ``429`` when the integration is throttled
(about 120 events a minute per routing key) and ``5xx`` on its own errors; 429 and 5xx are
retried. A trigger re-sent after a crash carries the same ``dedup_key``, so PagerDuty adds it to
the open alert instead of opening a second incident.
"""

from __future__ import annotations

from typing import Literal

import aiohttp
from pydantic import Field, HttpUrl, SecretStr, field_validator

from netwatch.alerting.model import Notification
from netwatch.alerting.outbox import RateLimit, ReceiverBase, SendResult, resolves
from netwatch.alerting.receivers.webhook import classify, dumps, impact_names, iso, post, ssl_for, title
from netwatch.configbase import SecretFile, reveal

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024


class PagerDutyConfig(ReceiverBase):
    """A PagerDuty service's Events API v2 integration."""

    kind: Literal["pagerduty"]
    routing_key_file: SecretFile = Field(description="file holding the integration's routing key")
    url: HttpUrl = HttpUrl(EVENTS_URL)
    client_url: HttpUrl | None = Field(default=None, description="link shown in PagerDuty (a Grafana dashboard)")
    rate_limit: RateLimit | None = RateLimit(burst=10, every=0.6)

    @field_validator("routing_key_file")
    @classmethod
    def _key_shape(cls, key: SecretStr) -> SecretStr:
        text = key.get_secret_value().strip()
        if not text or any(c.isspace() for c in text):
            raise ValueError("the routing key file must hold one key without spaces")
        return SecretStr(text)


def event(notification: Notification, routing_key: str, *, client_url: str | None = None) -> dict[str, object]:
    """Return the Events API v2 body for one notification."""
    inc = notification.incident
    if resolves(notification):
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": inc.id}
    summary = title(notification)
    if inc.impact.count:
        summary = f"{summary} ({inc.impact.describe()})"
    details: dict[str, object] = {
        "incident": inc.id,
        "event": notification.event,
        "rule": inc.rule,
        "entity": inc.entity,
        "summary": inc.summary,
        "labels": dict(sorted(inc.labels.items())),
        "started_at": iso(inc.started_ns),
    }
    if inc.value is not None:
        details["value"] = inc.value
    if inc.impact.count:
        details["impact"] = {
            "count": inc.impact.count,
            "by_site": dict(inc.impact.by_site),
            "by_kind": dict(inc.impact.by_kind),
            "devices": impact_names(inc.impact, limit=50),
        }
    payload: dict[str, object] = {
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
        "source": inc.entity,
        "severity": inc.severity,
        "timestamp": iso(inc.started_ns),
        "class": inc.rule,
        "custom_details": details,
    }
    if site := inc.labels.get("site"):
        payload["group"] = site
    if port := inc.labels.get("port"):
        payload["component"] = port
    body: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": inc.id,
        "payload": payload,
        "client": "netwatch",
    }
    if client_url:
        body["client_url"] = client_url
    return body


class PagerDutySender:
    """Enqueues trigger and resolve events."""

    resend_interval: float | None = None

    def __init__(self, cfg: PagerDutyConfig) -> None:
        self._cfg = cfg
        self._url = str(cfg.url)
        self._key = reveal(cfg.routing_key_file) or ""
        self._client_url = str(cfg.client_url) if cfg.client_url else None
        self._ssl = ssl_for(cfg)

    @property
    def config(self) -> PagerDutyConfig:
        return self._cfg

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        body = dumps(event(notification, self._key, client_url=self._client_url))
        reply = await post(session, self._url, body, ssl_ctx=self._ssl)
        return reply if isinstance(reply, SendResult) else classify(reply)

    async def aclose(self) -> None:
        return None
