"""Slack incoming webhook: a text fallback plus Block Kit blocks.

Slack's incoming webhooks answer ``200 ok``; ``429`` with ``Retry-After`` past about one message
per second per webhook; and plain error strings otherwise: ``400 invalid_payload`` /
``no_text``, ``403 action_prohibited`` / ``invalid_token``, ``404 channel_not_found`` /
``no_service``, ``410 channel_is_archived``, ``500 rollup_error``. The 4xx ones will not succeed
on a retry, so they are dropped and logged with that string.

The webhook URL is the credential, so it is read from ``url_file`` and never logged.
"""

from __future__ import annotations

from typing import Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from netwatch.alerting.model import Notification
from netwatch.alerting.outbox import RateLimit, ReceiverBase, SendResult
from netwatch.alerting.receivers.webhook import classify, dumps, impact_names, post, secret_url, ssl_for, title
from netwatch.configbase import SecretFile, reveal

#: Block Kit limits the renderer stays within.
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000


class SlackConfig(ReceiverBase):
    """A Slack incoming webhook. Stays under Slack's one message per second per webhook."""

    kind: Literal["slack"]
    url_file: SecretFile = Field(description="file holding the incoming-webhook URL (it is the credential)")
    rate_limit: RateLimit | None = RateLimit(burst=1, every=1.1)

    @field_validator("url_file")
    @classmethod
    def _is_url(cls, url: SecretStr) -> SecretStr:
        secret_url(url.get_secret_value())
        return url


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date(ns: int) -> str:
    seconds = ns // 1_000_000_000
    return f"<!date^{seconds}^{{date_short_pretty}} {{time_secs}}|{seconds}>"


def message(notification: Notification) -> dict[str, object]:
    """Return the JSON body for one notification."""
    inc = notification.incident
    head = title(notification)
    fields = [
        f"*Severity*\n{escape(inc.severity)}",
        f"*Entity*\n{escape(inc.entity)}",
        f"*Since*\n{_date(inc.started_ns)}",
    ]
    if inc.resolved_ns is not None:
        fields.append(f"*Resolved*\n{_date(inc.resolved_ns)}")
    if inc.value is not None:
        fields.append(f"*Value*\n{inc.value:g}")
    if inc.impact.count:
        fields.append(f"*Impact*\n{inc.impact.count} device{'s' if inc.impact.count != 1 else ''}")
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(head, HEADER_MAX), "emoji": False}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _clip(escape(inc.summary), SECTION_TEXT_MAX)},
            "fields": [{"type": "mrkdwn", "text": _clip(f, FIELD_TEXT_MAX)} for f in fields],
        },
    ]
    if inc.impact.count:
        text = f"{escape(inc.impact.describe())}\n{escape(impact_names(inc.impact))}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_TEXT_MAX)}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"incident `{inc.id}` · rule `{escape(inc.rule)}`"}],
        }
    )
    # ``text`` is the notification and screen-reader fallback when blocks are present.
    fallback = head if not inc.impact.count else f"{head} ({inc.impact.describe()})"
    return {"text": _clip(escape(fallback), SECTION_TEXT_MAX), "blocks": blocks}


class SlackSender:
    """Posts :func:`message` to the incoming webhook."""

    resend_interval: float | None = None

    def __init__(self, cfg: SlackConfig) -> None:
        self._cfg = cfg
        self._url = secret_url(reveal(cfg.url_file) or "")
        self._ssl = ssl_for(cfg)

    @property
    def config(self) -> SlackConfig:
        return self._cfg

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        reply = await post(session, self._url, dumps(message(notification)), ssl_ctx=self._ssl)
        return reply if isinstance(reply, SendResult) else classify(reply)

    async def aclose(self) -> None:
        return None
