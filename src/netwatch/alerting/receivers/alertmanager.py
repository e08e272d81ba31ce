"""Prometheus Alertmanager API v2: ``POST {url}/api/v2/alerts``.

An alert is identified by its labels, so they are derived only from what never changes for an
incident: ``alertname`` (the rule), ``netwatch_incident`` (the incident id), ``severity``,
``instance`` (the device or span) and the incident's own labels. Annotations carry ``summary``
and ``impact``.

While an incident fires, every send says ``endsAt = now + resend_interval × valid_for_resends``
and the outbox re-sends it every ``resend_interval`` (event ``repeat``), as Prometheus does with
its ``4 × resend-delay``. So a netwatch restart, or a few lost re-sends, never reads as a
resolve: Alertmanager keeps the alert until ``endsAt``, and the restarted outbox re-sends it at
once. A resolve sends ``endsAt`` = the resolve time. Only if netwatch stays away longer than
``resend_interval × valid_for_resends`` does Alertmanager resolve the alert on its own.

For an Alertmanager cluster, configure one receiver per member (as Prometheus sends to each);
the cluster deduplicates the notifications it sends.
"""

from __future__ import annotations

import re
import time
from typing import Literal

import aiohttp
from pydantic import Field, HttpUrl

from netwatch.alerting.model import Notification
from netwatch.alerting.outbox import ReceiverBase, SendResult, resolves
from netwatch.alerting.receivers.webhook import classify, dumps, impact_names, iso, post, ssl_for
from netwatch.configbase import Duration

_BAD_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_]")


class AlertmanagerConfig(ReceiverBase):
    """One Alertmanager (one receiver per cluster member)."""

    kind: Literal["alertmanager"]
    url: HttpUrl = Field(description="Alertmanager's base URL, e.g. http://127.0.0.1:9093")
    resend_interval: Duration = Field(default=60.0, ge=0.5, description="re-send each firing alert this often")
    valid_for_resends: int = Field(
        default=4, ge=2, le=100, description="endsAt is this many resend intervals ahead while firing"
    )
    generator_url: HttpUrl | None = Field(default=None, description="link shown with the alert (a dashboard)")


def label_name(name: str) -> str:
    """Return a valid Prometheus label name (``[A-Za-z_][A-Za-z0-9_]*``)."""
    clean = _BAD_LABEL_CHARS.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


def alert(
    notification: Notification, *, now: float, valid_for_s: float, generator_url: str | None
) -> dict[str, object]:
    """Return one postable alert for a notification, ``now`` being the attempt's time (seconds)."""
    inc = notification.incident
    labels = {label_name(k): v for k, v in sorted(inc.labels.items()) if v}
    labels.update(
        {"alertname": inc.rule, "netwatch_incident": inc.id, "severity": inc.severity, "instance": inc.entity}
    )
    annotations = {"summary": inc.summary}
    if inc.impact.count:
        annotations["impact"] = inc.impact.describe()
        annotations["impact_devices"] = impact_names(inc.impact, limit=50)
    if resolves(notification):
        # Never in the future: Alertmanager would keep showing the alert until then.
        now_ns = int(now * 1e9)
        ends_ns = now_ns if inc.resolved_ns is None else min(inc.resolved_ns, now_ns)
    else:
        ends_ns = int((now + valid_for_s) * 1e9)
    doc: dict[str, object] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso(inc.started_ns),
        "endsAt": iso(ends_ns),
    }
    if generator_url:
        doc["generatorURL"] = generator_url
    return doc


class AlertmanagerSender:
    """Posts alerts; its ``resend_interval`` makes the outbox re-send firing incidents."""

    def __init__(self, cfg: AlertmanagerConfig) -> None:
        self._cfg = cfg
        base = str(cfg.url).rstrip("/")
        self._url = base if base.endswith("/api/v2/alerts") else f"{base}/api/v2/alerts"
        self._ssl = ssl_for(cfg)

    @property
    def config(self) -> AlertmanagerConfig:
        return self._cfg

    @property
    def resend_interval(self) -> float | None:
        return self._cfg.resend_interval

    def body(self, notification: Notification, *, now: float | None = None) -> list[dict[str, object]]:
        return [
            alert(
                notification,
                now=time.time() if now is None else now,
                valid_for_s=self._cfg.resend_interval * self._cfg.valid_for_resends,
                generator_url=str(self._cfg.generator_url) if self._cfg.generator_url else None,
            )
        ]

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        reply = await post(session, self._url, dumps(self.body(notification)), ssl_ctx=self._ssl)
        return reply if isinstance(reply, SendResult) else classify(reply)

    async def aclose(self) -> None:
        return None
