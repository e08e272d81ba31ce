"""Publish netwatch's state on retained MQTT topics (``mqtt.publish``) for building systems and other consumers.

Under the prefix (default ``netwatch/<instance>``), each a JSON object unless said otherwise:

``status``
    ``online`` while netwatch is connected; ``offline`` when it stops, or (the broker's last will)
    when its connection dies. A consumer reads the other topics as current only while it says online.
``device/<id>``
    device, site, site_name, kind, state (up, degraded, down, unreachable, maintenance), up,
    reason, since: the ``device`` measurement as the NOC sees it.
``link/<id>``
    link, lessee, site_a, site_b, state, up, since.
``site/<id>/wifi``
    a park's public WiFi as its users see it: state, up, aps_up, aps_total, portal_up, since.
``panel/<id>``
    an access panel's MQTT heartbeat: online, since.
``incident/<rule>/<entity>``
    an open incident as ``GET /api/v1/alerts`` shows it (impact included); the retained message is
    deleted (an empty payload) when the incident resolves.

Why retained and change-only: a consumer that subscribes gets the whole current picture at once,
and then one message per change, never one per poll. ``since`` is when netwatch saw the state
begin (at the earliest, when netwatch started). Identifiers are made topic-safe (``/``, ``+``,
``#`` become ``_``: a port's ``xe-0/0/1`` never adds a level).

The publisher keeps its own connection (client id ``<mqtt client id>-state``, clean session) so
that the panel subscriber's persistent session is never disturbed by it. After every (re)connect
it republishes everything (the broker may have lost its retained store) and deletes the retained
topics under the prefix that no longer mean anything: a device removed from the config, an
incident that resolved while netwatch was away. It finds those by subscribing to the prefix for a
moment and collecting the retained messages the broker hands over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt
import structlog

from netwatch.alerting.silences import rfc3339
from netwatch.configbase import reveal
from netwatch.ingest.mqtt import tls_context
from netwatch.ingest.mqttconfig import MqttConfig, PublishConfig
from netwatch.inventory import Inventory
from netwatch.model import Sample, now_ns

if TYPE_CHECKING:
    from netwatch.alerting.service import OpenIncident
    from netwatch.config import Loaded

log = structlog.get_logger(__name__)

_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})
#: Publishes in flight at once: enough to republish thousands of devices in a second after a
#: reconnect, few enough that a slow broker is not flooded.
_WINDOW = 100
#: How long the broker may pause between retained messages before all of them are taken as seen.
_RETAINED_QUIET = 0.5
_RETAINED_MAX = 5.0


def level(value: str) -> str:
    """Return ``value`` as one topic level: no separators or wildcards, never empty."""
    return value.translate(_UNSAFE) or "_"


@dataclass
class PublishStats:
    """The publisher's own health (``netwatch{component=publish}``)."""

    connected: bool = False
    published: int = 0
    failed: int = 0

    def fields(self) -> dict[str, int]:
        return {
            "publish_connected": int(self.connected),
            "mqtt_published": self.published,
            "mqtt_publish_failed": self.failed,
        }


@dataclass(slots=True)
class _Retained:
    """What is (to be) retained on one topic, and the state it says, to tell a change from a repeat."""

    key: tuple[object, ...]
    since_ns: int
    payload: bytes


def _json(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class StatePublisher:
    """Turn state samples and open incidents into retained topics; keep the broker in step."""

    def __init__(
        self,
        cfg: MqttConfig,
        inventory: Inventory,
        *,
        instance: str,
        incidents: Callable[[], Sequence[OpenIncident]] | None = None,
        emit: Callable[[list[Sample]], None] | None = None,
        stats_every: float = 30.0,
    ) -> None:
        if cfg.publish is None:
            raise ValueError("mqtt.publish is not configured")
        self._cfg = cfg
        self._pub: PublishConfig = cfg.publish
        self._instance = instance
        self.prefix = self._pub.prefix.replace("{instance}", level(instance))
        self._incidents = incidents
        self._emit = emit
        self._stats_every = stats_every
        self._state: dict[str, _Retained] = {}
        #: Payloads the broker has not acknowledged yet, newest per topic (b"" deletes the topic).
        self._pending: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self.stats = PublishStats()
        self.apply(inventory)

    @property
    def config(self) -> MqttConfig:
        return self._cfg

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    @property
    def client_id(self) -> str:
        base = self._cfg.client_id or f"netwatch-{self._instance}"
        return f"{base[:58]}-state"

    # -- what to publish ------------------------------------------------------------------------

    def apply(self, inventory: Inventory) -> None:
        """Switch to a reloaded inventory: topics of devices, spans and sites that went are deleted."""
        self._inventory = inventory
        self._known = {
            "device": {level(d) for d in inventory.devices} if self._pub.devices else set(),
            "link": {level(k) for k in inventory.links} if self._pub.links else set(),
            "site": {level(s) for s in inventory.sites} if self._pub.sites else set(),
            "panel": (
                {level(d.id) for d in inventory.devices.values() if d.kind == "access_panel"}
                if self._pub.panels
                else set()
            ),
        }
        for topic in [t for t in self._state if not self._wanted(t)]:
            self._delete(topic)

    def _wanted(self, topic: str) -> bool:
        """Whether a topic under the prefix still means something (incidents are judged by the alert service)."""
        parts = topic[len(self.prefix) + 1 :].split("/")
        if parts[0] == "incident":
            return topic in self._state
        known = self._known.get(parts[0])
        if known is None:
            return True  # not a kind of topic netwatch writes (status, or another program's): leave it
        return len(parts) == (3 if parts[0] == "site" else 2) and parts[1] in known

    def observe(self, samples: Iterable[Sample]) -> None:
        """Take samples as they are emitted; only state changes become publishes."""
        for s in samples:
            m = s.measurement
            if m == "device" and self._pub.devices:
                self._device(s)
            elif m == "link" and self._pub.links:
                self._link(s)
            elif m == "wifi_service" and self._pub.sites:
                self._site(s)
            elif m == "panel" and self._pub.panels:
                self._panel(s)

    def _device(self, s: Sample) -> None:
        tags, fields = s.tags, s.fields
        device = tags.get("device", "")
        site = self._inventory.sites.get(tags.get("site", ""))
        key = (fields.get("state"), fields.get("reason"))
        self._set(
            f"{self.prefix}/device/{level(device)}",
            key,
            s.time_ns,
            lambda since: {
                "device": device,
                "site": tags.get("site"),
                "site_name": site.name if site else None,
                "kind": tags.get("kind"),
                "state": fields.get("state"),
                "up": bool(fields.get("up")),
                "reason": fields.get("reason"),
                "since": rfc3339(since),
            },
        )

    def _link(self, s: Sample) -> None:
        tags, fields = s.tags, s.fields
        link = tags.get("link", "")
        self._set(
            f"{self.prefix}/link/{level(link)}",
            (fields.get("state"),),
            s.time_ns,
            lambda since: {
                "link": link,
                "lessee": tags.get("lessee"),
                "site_a": tags.get("site_a"),
                "site_b": tags.get("site_b"),
                "state": fields.get("state"),
                "up": bool(fields.get("up")),
                "since": rfc3339(since),
            },
        )

    def _site(self, s: Sample) -> None:
        site, fields = s.tags.get("site", ""), s.fields
        key = (fields.get("state"), fields.get("aps_up"), fields.get("aps_total"), fields.get("portal_up"))
        self._set(
            f"{self.prefix}/site/{level(site)}/wifi",
            key,
            s.time_ns,
            lambda since: {
                "site": site,
                "state": fields.get("state"),
                "up": bool(fields.get("up")),
                "aps_up": fields.get("aps_up"),
                "aps_total": fields.get("aps_total"),
                "portal_up": None if fields.get("portal_up") is None else bool(fields.get("portal_up")),
                "since": rfc3339(since),
            },
        )

    def _panel(self, s: Sample) -> None:
        tags, fields = s.tags, s.fields
        device = tags.get("device", "")
        self._set(
            f"{self.prefix}/panel/{level(device)}",
            (fields.get("online"),),
            s.time_ns,
            lambda since: {
                "device": device,
                "site": tags.get("site"),
                "online": bool(fields.get("online")),
                "since": rfc3339(since),
            },
        )

    def _set(self, topic: str, key: tuple[object, ...], ts: int, doc: Callable[[int], dict[str, object]]) -> None:
        if not self._wanted(topic) and not topic.startswith(f"{self.prefix}/incident/"):
            return  # a sample from before a reload removed its device
        current = self._state.get(topic)
        if current is not None and current.key == key:
            return
        # `since` moves with the state itself (the key's first item), not with a new reason or AP count.
        since = current.since_ns if current is not None and current.key[:1] == key[:1] else ts
        payload = _json(doc(since))
        self._state[topic] = _Retained(key, since, payload)
        self._pending[topic] = payload
        self._wake.set()

    def _delete(self, topic: str) -> None:
        self._state.pop(topic, None)
        self._pending[topic] = b""
        self._wake.set()

    def sync_incidents(self) -> None:
        """Bring the incident topics in line with the alert service's open incidents."""
        if self._incidents is None or not self._pub.incidents:
            return
        # Imported here: the API module pulls in aiohttp's server side, which a publisher-less
        # daemon does not need loaded for this.
        from netwatch.api.alerts import incident_json

        current: dict[str, bytes] = {}
        for item in self._incidents():
            doc = incident_json(item)
            # Who was told changes with every delivery and is the receivers' business, not the building's.
            doc.pop("notified", None)
            current[f"{self.prefix}/incident/{level(item.incident.rule)}/{level(item.incident.entity)}"] = _json(doc)
        for topic, payload in current.items():
            held = self._state.get(topic)
            if held is None or held.payload != payload:
                self._state[topic] = _Retained((), 0, payload)
                self._pending[topic] = payload
                self._wake.set()
        gone = [t for t in self._state if t.startswith(f"{self.prefix}/incident/") and t not in current]
        for topic in gone:
            self._delete(topic)

    # -- the connection -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled: connect, republish, then publish changes as they come."""
        reporter = asyncio.create_task(self._report_loop(), name="mqtt-publish-report") if self._emit else None
        try:
            await self._connect_loop()
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)

    async def _connect_loop(self) -> None:
        cfg = self._cfg
        delay = cfg.reconnect_min
        was_down = False
        while True:
            try:
                async with aiomqtt.Client(
                    cfg.host,
                    cfg.broker_port(),
                    identifier=self.client_id,
                    clean_session=True,
                    username=cfg.username,
                    password=reveal(cfg.password_file),
                    keepalive=int(cfg.keepalive),
                    tls_context=tls_context(cfg),
                    will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
                    timeout=10.0,
                ) as client:
                    try:
                        await self._session(client, reconnected=was_down)
                    except asyncio.CancelledError:
                        # A clean stop sends no last will: say offline ourselves, briefly.
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await asyncio.wait_for(
                                client.publish(self.status_topic, b"offline", qos=1, retain=True), 2.0
                            )
                        raise
            except aiomqtt.MqttError as exc:
                if not was_down:
                    log.warning(
                        "mqtt_publish_down",
                        host=cfg.host,
                        port=cfg.broker_port(),
                        error=str(exc)[:200],
                        effect="state changes are kept and published when the broker is back",
                    )
                was_down = True
            else:
                was_down = False
            finally:
                self.stats.connected = False
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, cfg.reconnect_max)

    async def _session(self, client: aiomqtt.Client, *, reconnected: bool) -> None:
        await client.publish(self.status_topic, b"online", qos=1, retain=True)
        stale = await self._retained_topics(client)
        self.sync_incidents()
        # Everything again: the broker may have restarted without its retained store.
        self._pending = {**{t: r.payload for t, r in self._state.items()}, **self._pending}
        for topic in stale - self._state.keys() - {self.status_topic}:
            if not self._wanted(topic):
                self._pending[topic] = b""
        self.stats.connected = True
        log.info(
            "mqtt_publish_reconnected" if reconnected else "mqtt_publish_connected",
            prefix=self.prefix,
            topics=len(self._state),
            deleting=sum(1 for p in self._pending.values() if not p),
        )
        # A publisher that has nothing to say would not notice a dead connection until its next
        # change; reading the (empty) message stream raises as soon as the connection drops.
        watch = asyncio.create_task(_until_disconnected(client), name="mqtt-publish-watch")
        work = asyncio.create_task(self._publish_changes(client), name="mqtt-publish-work")
        try:
            done, _ = await asyncio.wait({watch, work}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, work):
                task.cancel()
            await asyncio.gather(watch, work, return_exceptions=True)
        for task in done:
            task.result()

    async def _publish_changes(self, client: aiomqtt.Client) -> None:
        while True:
            await self._flush(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            self.sync_incidents()

    async def _retained_topics(self, client: aiomqtt.Client) -> set[str]:
        """Return the topics under the prefix the broker holds a retained message for."""
        pattern = f"{self.prefix}/#"
        await client.subscribe(pattern, qos=0)
        found: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RETAINED_MAX
        messages = client.messages
        while (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), timeout=min(_RETAINED_QUIET, left))
            except TimeoutError:
                break
            if message.retain and message.payload:
                found.add(str(message.topic))
        await client.unsubscribe(pattern)
        return found

    async def _flush(self, client: aiomqtt.Client) -> None:
        qos = self._pub.qos
        while self._pending:
            batch = list(self._pending.items())[:_WINDOW]
            results = await asyncio.gather(
                *(client.publish(topic, payload, qos=qos, retain=True, timeout=10.0) for topic, payload in batch),
                return_exceptions=True,
            )
            error: BaseException | None = None
            for (topic, payload), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    self.stats.failed += 1
                    error = error or result
                elif self._pending.get(topic) is payload:
                    # Only what was sent is done: a newer payload that came meanwhile still goes.
                    del self._pending[topic]
                    self.stats.published += 1
            if error is not None:
                raise error if isinstance(error, aiomqtt.MqttError) else aiomqtt.MqttError(str(error))

    async def _report_loop(self) -> None:
        assert self._emit is not None
        connected = self.stats.connected
        loop = asyncio.get_running_loop()
        next_stats = loop.time()
        while True:
            await asyncio.sleep(1.0)
            if loop.time() >= next_stats or connected != self.stats.connected:
                connected = self.stats.connected
                next_stats = loop.time() + self._stats_every
                self._emit([self.health_sample()])

    def health_sample(self) -> Sample:
        return Sample(
            "netwatch", {"instance": self._instance, "component": "publish"}, dict(self.stats.fields()), now_ns()
        )


async def _until_disconnected(client: aiomqtt.Client) -> None:
    async for _ in client.messages:
        pass  # nothing is subscribed any more; a stray message is ignored
    raise aiomqtt.MqttError("the message stream ended")


def open_publisher(
    loaded: Loaded, incidents: Callable[[], Sequence[OpenIncident]] | None, emit: Callable[[list[Sample]], None]
) -> StatePublisher | None:
    """Build the publisher for a config with ``mqtt.publish``; the daemon runs it as a task."""
    cfg = loaded.config
    if cfg.mqtt is None or cfg.mqtt.publish is None:
        return None
    publisher = StatePublisher(
        cfg.mqtt,
        loaded.inventory,
        instance=cfg.instance,
        incidents=incidents,
        emit=emit,
        stats_every=cfg.scheduler.stats_interval,
    )
    log.info("mqtt_publish_configured", prefix=publisher.prefix, client_id=publisher.client_id)
    return publisher


def reload_publisher(publisher: StatePublisher | None, loaded: Loaded) -> None:
    """Apply a reloaded inventory; starting, stopping or moving the publisher needs a restart."""
    mqtt = loaded.config.mqtt
    wanted = mqtt.publish if mqtt is not None else None
    if publisher is None:
        if wanted is not None:
            log.warning("config_needs_restart", keys=["mqtt.publish"], why="the publisher starts with the daemon")
        return
    if wanted != publisher.config.publish or _broker(mqtt) != _broker(publisher.config):
        log.warning("config_needs_restart", keys=["mqtt.publish"], why="publish settings apply at the next start")
    publisher.apply(loaded.inventory)


def _broker(cfg: MqttConfig | None) -> tuple[object, ...]:
    if cfg is None:
        return ()
    return (cfg.host, cfg.broker_port(), cfg.tls, cfg.ca_file, cfg.username, cfg.password_file, cfg.client_id)
