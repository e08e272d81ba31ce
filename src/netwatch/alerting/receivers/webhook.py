"""Generic webhook: a documented JSON body, signed per the Standard Webhooks convention.

Also the HTTP plumbing every HTTP receiver kind shares (one POST, reading the answer into a
:class:`~netwatch.alerting.outbox.SendResult`, ``Retry-After``, TLS) and the small renderers
(times, titles, impact) that the chat receivers reuse.

Request::

    POST <url>
    content-type: application/json
    webhook-id: nw-3f0c.../firing/1764662400000000000     the notification's key: the same on every retry
    webhook-timestamp: 1764662403                         this attempt, Unix seconds
    webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">

The HMAC key is the content of ``secret_file``: with the ``whsec_`` prefix the rest is base64 and
the key is its decoded bytes (the form the Standard Webhooks libraries use); without it the key is
the file's text as UTF-8. A receiver should reject timestamps more than 5 minutes off its clock and
deduplicate on ``webhook-id``.

Body (schema version 1; keys are only ever added)::

    {
      "version": 1,
      "type": "incident.firing",            incident.<event>: firing, resolved, flapping,
                                            flapping_stopped, repeat
      "timestamp": "2026-12-02T14:00:03.120Z",   when netwatch created the notification
      "data": {
        "id": "nw-3f0c.../firing/1764...",  = webhook-id
        "receiver": "noc",
        "event": "firing",
        "incident": "nw-3f0c9a1e...",       stable incident id (same for its firing and resolve)
        "rule": "span_down",
        "entity": "span-ch-vp",             device or span id
        "severity": "critical",             critical | warning | info
        "labels": {"site": "villa-parke", ...},
        "summary": "span-ch-vp down",
        "value": null,                      the value that fired the rule, if any
        "started_at": "2026-12-02T13:59:40.000Z",
        "resolved_at": null,                set on resolves
        "impact": {"count": 9, "by_site": {"villa-parke": 9}, "by_kind": {"wifi_ap": 4, ...},
                   "devices": ["ap-vp-1", ...], "text": "9 devices unreachable behind it: ..."}
      }
    }
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import aiohttp
from pydantic import HttpUrl, SecretStr, field_validator

from netwatch.alerting.model import Event, Impact, Notification
from netwatch.alerting.outbox import ReceiverBase, SendResult
from netwatch.configbase import SecretFile, reveal
from netwatch.retryafter import parse_retry_after

SCHEMA_VERSION = 1

# -- shared rendering -------------------------------------------------------------------------------


def iso(ns: int | None) -> str | None:
    """Return a Unix-nanosecond time as ISO 8601 UTC with milliseconds (``...T13:59:40.000Z``)."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TITLES: dict[Event, str] = {
    "firing": "FIRING",
    "resolved": "RESOLVED",
    "flapping": "FLAPPING",
    "flapping_stopped": "FLAPPING STOPPED",
    "repeat": "STILL FIRING",
}


def title(notification: Notification) -> str:
    """Return e.g. ``[FIRING] critical: span-ch-vp down``."""
    inc = notification.incident
    return f"[{_TITLES[notification.event]}] {inc.severity}: {inc.summary}"


def impact_names(impact: Impact, limit: int = 20) -> str:
    """Return the names behind a root cause, at most ``limit`` of them and how many more."""
    names = list(impact.devices[:limit])
    more = impact.count - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def document(notification: Notification) -> dict[str, object]:
    """Return the body of the generic webhook (and the MQTT payload): the schema above."""
    inc = notification.incident
    return {
        "version": SCHEMA_VERSION,
        "type": f"incident.{notification.event}",
        "timestamp": iso(notification.created_ns),
        "data": {
            "id": notification.key,
            "receiver": notification.receiver,
            "event": notification.event,
            "incident": inc.id,
            "rule": inc.rule,
            "entity": inc.entity,
            "severity": inc.severity,
            "labels": dict(sorted(inc.labels.items())),
            "summary": inc.summary,
            "value": inc.value,
            "started_at": iso(inc.started_ns),
            "resolved_at": iso(inc.resolved_ns),
            "impact": {
                "count": inc.impact.count,
                "by_site": dict(sorted(inc.impact.by_site.items())),
                "by_kind": dict(sorted(inc.impact.by_kind.items())),
                "devices": list(inc.impact.devices),
                "text": inc.impact.describe(),
            },
        },
    }


def dumps(doc: object) -> bytes:
    """Serialise a body compactly; the bytes sent are the bytes signed."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# -- shared HTTP ------------------------------------------------------------------------------------


def ssl_for(cfg: ReceiverBase) -> ssl.SSLContext | bool:
    """Return what aiohttp's ``ssl=`` takes: verified by default, a CA bundle, or no checks."""
    if cfg.tls == "insecure":
        return False
    if cfg.ca_file is not None:
        return ssl.create_default_context(cafile=cfg.ca_file)
    return True


#: Kept under its receivers' name; the parsing is shared with the InfluxDB sink.
retry_after = parse_retry_after


def short(text: str, limit: int = 200) -> str:
    """Return a response body trimmed for a log line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, body text and the ``Retry-After`` header."""

    status: int
    text: str
    retry_after: str | None = None


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    ssl_ctx: ssl.SSLContext | bool = True,
) -> Reply | SendResult:
    """POST a JSON body once; return the reply, or a retry result for a network failure.

    Exception texts are left out of the result: aiohttp puts the URL in some of them, and a
    Slack or Teams URL is a secret.
    """
    all_headers = {"content-type": "application/json"}
    all_headers.update(headers or {})
    try:
        async with session.post(url, data=body, headers=all_headers, ssl=ssl_ctx, allow_redirects=False) as resp:
            text = await resp.text(errors="replace")
            return Reply(resp.status, text, resp.headers.get("Retry-After"))
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror if exc.os_error.strerror else type(exc.os_error).__name__
        return SendResult.retry(f"{type(exc).__name__}: {reason}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return SendResult.retry(type(exc).__name__)


def classify(reply: Reply, *, status: int | None = None) -> SendResult:
    """Read an HTTP answer the way Alertmanager's retrier does: 2xx done; 5xx and 429 retry; other 4xx drop.

    ``status`` overrides the HTTP status (Teams reports throttling inside a 200 body).
    """
    code = reply.status if status is None else status
    if 200 <= code < 300:
        return SendResult.delivered(code)
    if code == 429 or code >= 500:
        return SendResult.retry(
            short(reply.text) or f"HTTP {code}", status=code, retry_after_s=retry_after(reply.retry_after)
        )
    return SendResult.reject(short(reply.text) or f"HTTP {code}", status=code)


def secret_url(value: str) -> str:
    """Check a URL read from a secret file; the error never repeats the URL."""
    text = value.strip()
    try:
        url = HttpUrl(text)
    except ValueError:
        raise ValueError("the file does not hold an http(s) URL") from None
    if not url.host:
        raise ValueError("the URL in the file has no host")
    return text


# -- the generic webhook ----------------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """Return the HMAC key for a secret: ``whsec_<base64>`` decoded, otherwise the text's bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` value for one attempt."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookConfig(ReceiverBase):
    """A generic webhook: JSON body (schema in this module's docs), Standard Webhooks signature."""

    kind: Literal["webhook"]
    url: HttpUrl
    secret_file: SecretFile

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: HttpUrl) -> HttpUrl:
        if url.username or url.password:
            raise ValueError("no user:password in the URL; the body is signed with secret_file")
        return url

    @field_validator("secret_file")
    @classmethod
    def _secret_form(cls, secret: SecretStr) -> SecretStr:
        key = signing_key(secret.get_secret_value())
        if len(key) < 16:
            raise ValueError("the signing secret is too short: use at least 16 bytes (24 or more recommended)")
        return secret


class WebhookSender:
    """Sends the documented JSON body to ``url``, signed."""

    resend_interval: float | None = None

    def __init__(self, cfg: WebhookConfig) -> None:
        self._cfg = cfg
        self._url = str(cfg.url)
        self._key = signing_key(reveal(cfg.secret_file) or "")
        self._ssl = ssl_for(cfg)

    @property
    def config(self) -> WebhookConfig:
        return self._cfg

    def request(self, notification: Notification, *, now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """Return the body and headers of one attempt (the timestamp is the attempt's)."""
        body = dumps(document(notification))
        timestamp = int(time.time() if now is None else now)
        msg_id = notification.key
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, body),
            "user-agent": "netwatch",
        }
        return body, headers

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        body, headers = self.request(notification)
        reply = await post(session, self._url, body, headers=headers, ssl_ctx=self._ssl)
        return reply if isinstance(reply, SendResult) else classify(reply)

    async def aclose(self) -> None:
        return None
