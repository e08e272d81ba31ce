"""Config for the MQTT ingest (top-level ``mqtt:``) and a device's ``panel:`` settings.

The broker section says where to connect and how panels publish: topic templates with
``{device}``, the heartbeat cadence and how many missed cadences make a panel offline, and where
the fields of an event sit in its JSON payload (simple dotted paths, ``event.type``). A device's
``panel:`` section overrides the cadence and topics for one panel.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from netwatch.configbase import CaFile, Duration, SecretFile, Strict

#: Panel events netwatch knows; a payload naming anything else is malformed (counted, not fatal).
PanelEventName = Literal["door_forced", "door_held_open", "tamper", "power_failure", "on_battery"]

_PATH = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


def _topic_template(value: str) -> str:
    if "{device}" not in value:
        raise ValueError("a topic template must contain {device}")
    if "+" in value or "#" in value:
        raise ValueError("a topic template takes no wildcards (+, #): {device} is the wildcard")
    if value.count("{device}") != 1 or "{" in value.replace("{device}", ""):
        raise ValueError("a topic template holds {device} exactly once and no other placeholder")
    return value


def _topic(value: str | None) -> str | None:
    if value is not None and (not value or "+" in value or "#" in value):
        raise ValueError("a panel's topic is one exact topic, without wildcards")
    return value


class PayloadMapping(Strict):
    """Where an event's fields sit in its JSON payload (dotted paths into objects)."""

    event: str = Field(default="event", pattern=_PATH, description="path of the event type")
    door: str = Field(default="door", pattern=_PATH, description="path of the door name (optional in a payload)")
    detail: str = Field(default="detail", pattern=_PATH, description="path of free text (optional)")
    #: Vendor spellings -> netwatch event names ("DOOR_FORCED_OPEN": door_forced).
    events: dict[str, PanelEventName] = Field(default_factory=dict, description="vendor event name -> netwatch name")


class PublishConfig(Strict):
    """Publishing netwatch's state to the broker (``mqtt.publish``): retained topics under a prefix.

    Building systems and other consumers subscribe to ``<prefix>/device/+`` and friends and get
    the current state at once (retained), then every change. Nothing is published per poll: a
    topic changes when its state does.
    """

    prefix: str = Field(default="netwatch/{instance}", min_length=1, description="topic prefix; {instance} allowed")
    qos: Literal[0, 1] = Field(default=1, description="1: the broker acknowledges every state change")
    devices: bool = Field(default=True, description="<prefix>/device/<id>: state, reason, since")
    links: bool = Field(default=True, description="<prefix>/link/<id>: span state")
    sites: bool = Field(default=True, description="<prefix>/site/<id>/wifi: a park's public WiFi as users see it")
    panels: bool = Field(default=True, description="<prefix>/panel/<id>: access panel online (MQTT heartbeats)")
    incidents: bool = Field(default=True, description="<prefix>/incident/<rule>/<entity>: open incidents")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("a publish prefix takes no wildcards (+, #)")
        if value.startswith(("/", "$")) or value.endswith("/") or "//" in value:
            raise ValueError("a publish prefix is topic levels joined by /, without a leading $ or /, or empty levels")
        if "{" in value.replace("{instance}", ""):
            raise ValueError("the only placeholder a publish prefix takes is {instance}")
        return value


def _default_alarms() -> list[PanelEventName]:
    return ["door_forced", "tamper"]


class MqttConfig(Strict):
    """The broker panels publish to, and how their topics and payloads look."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="default 1883, or 8883 with tls")
    tls: bool = False
    ca_file: CaFile | None = Field(default=None, description="CA bundle for tls (default: system CAs)")
    username: str | None = None
    password_file: SecretFile | None = None
    client_id: str | None = Field(
        default=None, max_length=64, description="stable session id; default netwatch-<instance>"
    )
    keepalive: Duration = Field(default=30.0, ge=5, le=3600)
    heartbeat_topic: str = "panels/{device}/heartbeat"
    event_topic: str = "panels/{device}/event"
    heartbeat_every: Duration = Field(default=30.0, ge=0.1, description="cadence panels send heartbeats at")
    missed: int = Field(default=3, ge=1, le=100, description="missed cadences before a panel is offline")
    max_payload_bytes: int = Field(default=4096, ge=16, le=1_048_576)
    reconnect_min: Duration = Field(default=1.0, gt=0)
    reconnect_max: Duration = Field(default=60.0, gt=0)
    #: After a (re)connect, panels get this many cadences before they can be offline: their
    #: heartbeats restart at their own pace, and the broker's outage is not theirs.
    grace: int = Field(default=1, ge=0, le=100, description="extra cadences after a (re)connect")
    payload: PayloadMapping = Field(default_factory=PayloadMapping)
    alarm_events: list[PanelEventName] = Field(
        default_factory=_default_alarms, description="events marked alarm=1 (built-in panel_alarm)"
    )

    publish: PublishConfig | None = Field(
        default=None, description="publish device, span, park WiFi and incident state on retained topics"
    )

    _check_templates = field_validator("heartbeat_topic", "event_topic")(_topic_template)

    @model_validator(mode="after")
    def _ordered(self) -> MqttConfig:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self

    def broker_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)


class PanelConfig(Strict):
    """One access panel's MQTT settings (a device's ``panel:``); unset keys come from ``mqtt:``."""

    mqtt: bool = Field(default=True, description="false: no MQTT (watch it with ping/tcp checks instead)")
    every: Duration | None = Field(default=None, ge=0.1, description="heartbeat cadence of this panel")
    missed: int | None = Field(default=None, ge=1, le=100)
    heartbeat_topic: str | None = Field(default=None, description="exact topic, instead of the template")
    event_topic: str | None = Field(default=None, description="exact topic, instead of the template")

    _check_topics = field_validator("heartbeat_topic", "event_topic")(_topic)
