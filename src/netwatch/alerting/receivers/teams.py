"""Microsoft Teams: an incoming webhook or a Workflows ("When a Teams webhook request is received") URL.

``card: adaptive`` (the default) posts a message with one Adaptive Card attachment, which both
Workflows and the older incoming-webhook connectors take; ``card: messagecard`` posts the legacy
connector MessageCard.

Teams' connectors do not always throttle with a 429 status: they can answer HTTP 200 with a body
such as ``Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error
429 ...``. Any ``returned HTTP error NNN`` in a 2xx body is read as status NNN, so throttling is
retried with backoff and a real error is dropped. A good connector answer is ``1``; Workflows
answer ``202`` with an empty body.

The documented connector limits per webhook are 4 requests a second, 60 in 30 s, 100 an hour,
150 in 2 h and 1800 a day. The default bucket (3 at once, then one every 50 s) stays under all
of them; a Workflows URL can be given a faster ``rate_limit``.
"""

from __future__ import annotations

import re
from typing import Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from netwatch.alerting.model import Notification
from netwatch.alerting.outbox import RateLimit, ReceiverBase, SendResult, resolves
from netwatch.alerting.receivers.webhook import (
    Reply,
    classify,
    dumps,
    impact_names,
    iso,
    post,
    secret_url,
    ssl_for,
    title,
)
from netwatch.configbase import SecretFile, reveal

#: Teams rejects bodies over 28 KB; every free text is clipped to this many characters.
TEXT_MAX = 4000

_HTTP_ERROR_IN_BODY = re.compile(r"returned HTTP error (\d{3})")

_COLOURS = {"critical": "D70000", "warning": "FFA500", "info": "0078D7"}


class TeamsConfig(ReceiverBase):
    """A Teams incoming webhook or Workflows URL."""

    kind: Literal["teams"]
    url_file: SecretFile = Field(description="file holding the webhook URL (it is the credential)")
    card: Literal["adaptive", "messagecard"] = "adaptive"
    rate_limit: RateLimit | None = RateLimit(burst=3, every=50.0)

    @field_validator("url_file")
    @classmethod
    def _is_url(cls, url: SecretStr) -> SecretStr:
        secret_url(url.get_secret_value())
        return url


def _clip(text: str, limit: int = TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _facts(notification: Notification) -> list[tuple[str, str]]:
    inc = notification.incident
    facts = [("Severity", inc.severity), ("Entity", inc.entity), ("Since", iso(inc.started_ns) or "")]
    if inc.resolved_ns is not None:
        facts.append(("Resolved", iso(inc.resolved_ns) or ""))
    if inc.value is not None:
        facts.append(("Value", f"{inc.value:g}"))
    if inc.impact.count:
        facts.append(("Impact", _clip(inc.impact.describe())))
        facts.append(("Behind it", _clip(impact_names(inc.impact))))
    facts.append(("Incident", inc.id))
    return facts


def adaptive_card(notification: Notification) -> dict[str, object]:
    """Return a message with one Adaptive Card (schema 1.4) attachment."""
    inc = notification.incident
    good = resolves(notification)
    colour = "Good" if good else ("Attention" if inc.severity == "critical" else "Warning")
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "TextBlock",
                "text": _clip(title(notification)),
                "weight": "Bolder",
                "size": "Medium",
                "color": colour,
                "wrap": True,
            },
            {"type": "TextBlock", "text": _clip(inc.summary), "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(notification)]},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def message_card(notification: Notification) -> dict[str, object]:
    """Return a legacy connector MessageCard."""
    inc = notification.incident
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": _clip(title(notification)),
        "themeColor": "2EB886" if resolves(notification) else _COLOURS.get(inc.severity, "808080"),
        "title": _clip(title(notification)),
        "sections": [
            {
                "activityTitle": _clip(inc.summary),
                "facts": [{"name": k, "value": v} for k, v in _facts(notification)],
                "markdown": False,
            }
        ],
    }


def render(notification: Notification, card: Literal["adaptive", "messagecard"]) -> bytes:
    """Return the body. Texts are clipped (impact names already are), so it stays under Teams' limit."""
    build = adaptive_card if card == "adaptive" else message_card
    return dumps(build(notification))


def read_reply(reply: Reply) -> SendResult:
    """Classify a Teams answer, reading an error reported inside a 2xx body as that error."""
    if 200 <= reply.status < 300:
        found = _HTTP_ERROR_IN_BODY.search(reply.text)
        if found:
            return classify(reply, status=int(found.group(1)))
    return classify(reply)


class TeamsSender:
    """Posts a card to the Teams webhook."""

    resend_interval: float | None = None

    def __init__(self, cfg: TeamsConfig) -> None:
        self._cfg = cfg
        self._url = secret_url(reveal(cfg.url_file) or "")
        self._ssl = ssl_for(cfg)

    @property
    def config(self) -> TeamsConfig:
        return self._cfg

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        reply = await post(session, self._url, render(notification, self._cfg.card), ssl_ctx=self._ssl)
        return reply if isinstance(reply, SendResult) else read_reply(reply)

    async def aclose(self) -> None:
        return None
