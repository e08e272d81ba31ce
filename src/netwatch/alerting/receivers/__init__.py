"""Receiver kinds: one module each, registered here by the name used in ``kind:``.

Adding a kind touches its module, one line below, its tests, the example config and the README.
Each module holds a config class (``<Kind>Config``: :class:`~netwatch.alerting.outbox.ReceiverBase`
plus ``kind: Literal[...]``) and a sender (``<Kind>Sender(cfg)``) that renders and sends one
notification; the outbox (:mod:`netwatch.alerting.outbox`) does the rest.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from netwatch.alerting.outbox import ReceiverBase, Sender
from netwatch.alerting.receivers import alertmanager, mqtt, pagerduty, slack, teams, webhook


@dataclass(frozen=True, slots=True)
class ReceiverKind:
    """A receiver kind's config class and the sender it builds."""

    config: type[ReceiverBase]
    build: Callable[[Any], Sender]


REGISTRY: dict[str, ReceiverKind] = {
    "webhook": ReceiverKind(webhook.WebhookConfig, webhook.WebhookSender),
    "slack": ReceiverKind(slack.SlackConfig, slack.SlackSender),
    "teams": ReceiverKind(teams.TeamsConfig, teams.TeamsSender),
    "pagerduty": ReceiverKind(pagerduty.PagerDutyConfig, pagerduty.PagerDutySender),
    "alertmanager": ReceiverKind(alertmanager.AlertmanagerConfig, alertmanager.AlertmanagerSender),
    "mqtt": ReceiverKind(mqtt.MqttConfig, mqtt.MqttSender),
}

#: The type of one ``receivers:`` entry for pydantic (``create_model``, a field annotation built
#: at runtime): the kinds' config classes, told apart by ``kind``.
ReceiverConfig: Any = Annotated[
    functools.reduce(operator.or_, (k.config for k in REGISTRY.values())), Field(discriminator="kind")
]

_ADAPTER: TypeAdapter[ReceiverBase] = TypeAdapter(ReceiverConfig)


def parse_receiver(data: object, *, base_dir: str = ".") -> ReceiverBase:
    """Validate one ``receivers:`` entry (secret files relative to ``base_dir``)."""
    return _ADAPTER.validate_python(data, context={"base_dir": base_dir})


def build_sender(cfg: ReceiverBase) -> Sender:
    """Return the sender for a validated receiver config."""
    kind = getattr(cfg, "kind", None)
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise ValueError(f"unknown receiver kind {kind!r}")
    return REGISTRY[kind].build(cfg)


__all__ = ["REGISTRY", "ReceiverConfig", "ReceiverKind", "Sender", "build_sender", "parse_receiver"]
