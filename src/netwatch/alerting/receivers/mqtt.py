"""MQTT: publish the generic webhook's JSON document to a topic, QoS 1, not retained.

The topic is a template over ``{event}``, ``{severity}``, ``{rule}``, ``{entity}``,
``{incident}`` and ``{receiver}``; values are made topic-safe (``/``, ``+`` and ``#`` become
``_``), so a name never adds a level or a wildcard. ``publish`` returns once the broker's PUBACK
arrived, so a delivered row really is at the broker. The connection is opened on first use and
kept; a failure closes it and the outbox retries (a refused login is dropped like an HTTP 4xx).
Consumers deduplicate on ``data.id`` (the notification key), as webhook receivers do.
"""

from __future__ import annotations

import contextlib
import ssl
import string
from typing import Annotated, Literal

import aiohttp
import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from pydantic import AnyUrl, Field, UrlConstraints, field_validator, model_validator

from netwatch.alerting.model import Notification
from netwatch.alerting.outbox import ReceiverBase, SendResult
from netwatch.alerting.receivers.webhook import document, dumps
from netwatch.configbase import SecretFile, reveal

MqttUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["mqtt", "mqtts"], host_required=True)]

TOPIC_FIELDS = frozenset({"event", "severity", "rule", "entity", "incident", "receiver"})
_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})
#: CONNACK codes that mean the credentials are wrong: MQTT 3.1.1 (4, 5) and 5 (134, 135).
_AUTH_REFUSED = frozenset({4, 5, 134, 135})


class MqttConfig(ReceiverBase):
    """An MQTT broker and a topic template."""

    kind: Literal["mqtt"]
    url: MqttUrl = Field(description="mqtt://host:1883 or mqtts://host:8883")
    topic: str = Field(default="netwatch/alerts/{severity}/{rule}/{entity}", min_length=1)
    username_file: SecretFile | None = None
    password_file: SecretFile | None = None
    client_id: str | None = Field(default=None, description="MQTT client identifier; generated if unset")

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: AnyUrl) -> AnyUrl:
        if url.username or url.password:
            raise ValueError("no user:password in the URL; use username_file and password_file")
        return url

    @field_validator("topic")
    @classmethod
    def _template(cls, topic: str) -> str:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(topic) if name is not None]
        except ValueError as exc:
            raise ValueError(f"topic template: {exc}") from None
        unknown = sorted(set(names) - TOPIC_FIELDS)
        if unknown:
            raise ValueError(f"topic template: unknown field {unknown[0]!r}; known: {', '.join(sorted(TOPIC_FIELDS))}")
        if "+" in topic or "#" in topic:
            raise ValueError("topic template: a publish topic cannot hold the wildcards + or #")
        return topic

    @model_validator(mode="after")
    def _credentials_pair(self) -> MqttConfig:
        if self.password_file is not None and self.username_file is None:
            raise ValueError("password_file needs username_file")
        return self


def topic_for(template: str, notification: Notification) -> str:
    """Render the topic for one notification."""
    inc = notification.incident
    values = {
        "event": notification.event,
        "severity": inc.severity,
        "rule": inc.rule,
        "entity": inc.entity,
        "incident": inc.id,
        "receiver": notification.receiver,
    }
    return template.format(**{k: (v.translate(_UNSAFE) or "_") for k, v in values.items()})


class MqttSender:
    """Publishes to the broker over one long-lived connection."""

    resend_interval: float | None = None

    def __init__(self, cfg: MqttConfig) -> None:
        self._cfg = cfg
        self._client: aiomqtt.Client | None = None
        self._tls: ssl.SSLContext | None = None
        if cfg.url.scheme == "mqtts":
            ctx = ssl.create_default_context(cafile=cfg.ca_file)
            if cfg.tls == "insecure":
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls = ctx

    @property
    def config(self) -> MqttConfig:
        return self._cfg

    async def _connect(self) -> aiomqtt.Client:
        cfg = self._cfg
        port = cfg.url.port or (8883 if cfg.url.scheme == "mqtts" else 1883)
        client = aiomqtt.Client(
            cfg.url.host or "",
            port,
            username=reveal(cfg.username_file),
            password=reveal(cfg.password_file),
            identifier=cfg.client_id,
            tls_context=self._tls,
            tls_insecure=cfg.tls == "insecure" if self._tls is not None else None,
            # aiomqtt's own waits end before the outbox cancels the attempt, so a connection
            # is never left half-open behind a cancelled task.
            timeout=cfg.timeout * 0.8,
        )
        await client.__aenter__()
        return client

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        del session  # MQTT keeps its own connection
        try:
            if self._client is None:
                self._client = await self._connect()
            await self._client.publish(
                topic_for(self._cfg.topic, notification),
                dumps(document(notification)),
                qos=1,
                retain=False,
                timeout=self._cfg.timeout * 0.8,
            )
        except MqttConnectError as exc:
            await self.aclose()
            code = getattr(exc.rc, "value", exc.rc)
            if code in _AUTH_REFUSED:
                return SendResult.reject(f"broker refused the login ({code})")
            return SendResult.retry(f"connect refused ({code})")
        except aiomqtt.MqttError as exc:
            await self.aclose()
            return SendResult.retry(f"{type(exc).__name__}: {exc}")
        return SendResult.delivered()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
