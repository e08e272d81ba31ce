"""The MQTT ingest: one persistent-session subscriber for every access panel's heartbeats and events.

QoS 1 with ``clean_session=False`` and a client id stable across restarts (``netwatch-<instance>``)
means the broker queues events for netwatch while it is away and hands them over on reconnect.
A lost broker is reconnected with capped exponential backoff and jitter (so a fleet of
subscribers does not stampede a restarted broker); it is logged, reported as
``netwatch{component=mqtt}.broker_connected = 0`` (built-in rule ``mqtt_broker_down``), and no
panel is reported offline meanwhile: their state is unknown, not dead.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog

from netwatch.configbase import reveal
from netwatch.ingest.mqttconfig import MqttConfig
from netwatch.ingest.panels import PanelBook, PanelSpec, panel_specs
from netwatch.model import Sample, now_ns

if TYPE_CHECKING:
    from netwatch.config import Loaded

log = structlog.get_logger(__name__)


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """Return the context that verifies the broker, made anew at each connect (a rotated CA is read).

    Raises:
        aiomqtt.MqttError: the CA bundle cannot be read or holds no certificate. The config only
            checked the file was there at load; one cut short or replaced since is an outage like
            a broker that is away (logged, retried, reported), not a crash of the ingest's task,
            which would take the daemon with it.
    """
    if not cfg.tls:
        return None
    try:
        # Verified by default, against the given CA bundle or the system's.
        return ssl.create_default_context(cafile=cfg.ca_file)
    except OSError as exc:  # ssl.SSLError is one
        raise aiomqtt.MqttError(f"cannot load the CA bundle {cfg.ca_file}: {exc}") from None


class MqttIngest:
    """Subscribe, route messages to the :class:`PanelBook`, report panels each cadence."""

    def __init__(
        self,
        cfg: MqttConfig,
        panels: list[PanelSpec],
        emit: Callable[[list[Sample]], None],
        *,
        instance: str,
        stats_every: float = 30.0,
    ) -> None:
        self.book = PanelBook(cfg, emit)
        self.book.set_panels(cfg, panels)
        self._cfg = cfg
        self._instance = instance
        self._emit = emit
        self._client: aiomqtt.Client | None = None
        self._subscribed: set[str] = set()
        self._stats_every = stats_every

    @property
    def client_id(self) -> str:
        return self._cfg.client_id or f"netwatch-{self._instance}"[:64]

    async def run(self) -> None:
        """Run until cancelled: connect, subscribe, read; reconnect with backoff when the broker goes."""
        reporter = asyncio.create_task(self._report_loop(), name="mqtt-report")
        try:
            await self._connect_loop()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)

    async def _connect_loop(self) -> None:
        delay = self._cfg.reconnect_min
        was_down = False
        while True:
            cfg = self._cfg
            try:
                async with aiomqtt.Client(
                    cfg.host,
                    cfg.broker_port(),
                    identifier=self.client_id,
                    clean_session=False,
                    username=cfg.username,
                    password=reveal(cfg.password_file),
                    keepalive=int(cfg.keepalive),
                    tls_context=tls_context(cfg),
                    timeout=10.0,
                ) as client:
                    self._client = client
                    self._subscribed = set()
                    await self._sync_subscriptions()
                    self.book.connected()
                    if was_down:
                        self.book.stats.reconnects += 1
                        log.info("mqtt_broker_reconnected", host=cfg.host, port=cfg.broker_port())
                    else:
                        log.info("mqtt_connected", host=cfg.host, port=cfg.broker_port(), client_id=self.client_id)
                    was_down = False
                    delay = cfg.reconnect_min
                    async for message in client.messages:
                        self.book.handle(str(message.topic), _payload_bytes(message.payload))
            except aiomqtt.MqttError as exc:
                if not was_down:
                    # Logged once per outage, not once per retry.
                    log.warning(
                        "mqtt_broker_down",
                        host=cfg.host,
                        port=cfg.broker_port(),
                        error=str(exc)[:200],
                        effect="panel state unknown until the broker is back; panels are not reported offline",
                    )
                was_down = True
            finally:
                self._client = None
                self.book.disconnected()
            # Full jitter on a capped exponential backoff.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._cfg.reconnect_max)

    async def _sync_subscriptions(self) -> None:
        client = self._client
        if client is None:
            return
        for topic in self.book.subscriptions():
            if topic not in self._subscribed:
                await client.subscribe(topic, qos=1)
                self._subscribed.add(topic)

    async def _report_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_stats = loop.time()
        connected = self.book.stats.connected
        while True:
            await asyncio.sleep(min(self.book.next_due(), 1.0) + 0.001)
            self.book.report()
            # Own health every stats_every, and at once when the broker comes or goes.
            if loop.time() >= next_stats or connected != self.book.stats.connected:
                connected = self.book.stats.connected
                next_stats = loop.time() + self._stats_every
                self._emit([self.health_sample()])

    def reconfigure(self, cfg: MqttConfig, panels: list[PanelSpec]) -> None:
        """Apply a reloaded panel list now; changed broker settings take effect at the next reconnect."""
        if _broker(cfg) != _broker(self._cfg):
            log.warning("config_needs_restart", keys=["mqtt"], why="broker settings apply at the next reconnect")
        self._cfg = cfg
        self.book.set_panels(cfg, panels)
        if self._client is not None:
            task = asyncio.create_task(self._sync_subscriptions(), name="mqtt-resubscribe")
            task.add_done_callback(_log_failure)

    def stats(self) -> dict[str, int]:
        """Return the ingest's own health: the ``netwatch`` measurement's fields for ``component=mqtt``."""
        return self.book.stats.fields()

    def health_sample(self) -> Sample:
        """Return the ingest's own health as a ``netwatch`` sample."""
        return Sample("netwatch", {"instance": self._instance, "component": "mqtt"}, self.stats(), now_ns())


def _broker(cfg: MqttConfig) -> tuple[object, ...]:
    return (cfg.host, cfg.broker_port(), cfg.tls, cfg.ca_file, cfg.username, cfg.password_file, cfg.client_id)


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("mqtt_resubscribe_failed", error=str(task.exception())[:200], effect="retried at reconnect")


def specs_of(loaded: Loaded) -> list[PanelSpec]:
    """Return the panels a loaded config watches over MQTT (none without ``mqtt:``)."""
    cfg = loaded.config
    if cfg.mqtt is None:
        return []
    devices: list[Any] = list(cfg.devices)
    return panel_specs(((d.id, d.site, d.kind, d.panel) for d in devices), cfg.mqtt)


def open_ingest(loaded: Loaded, emit: Callable[[list[Sample]], None]) -> MqttIngest | None:
    """Build the ingest for a config with ``mqtt:``; the daemon runs it as a task."""
    cfg = loaded.config
    if cfg.mqtt is None:
        return None
    ingest = MqttIngest(
        cfg.mqtt, specs_of(loaded), emit, instance=cfg.instance, stats_every=cfg.scheduler.stats_interval
    )
    log.info("mqtt_ingest_configured", panels=len(ingest.book.panels()), client_id=ingest.client_id)
    return ingest


def reload_ingest(ingest: MqttIngest | None, loaded: Loaded) -> None:
    """Apply a reloaded config: new or removed panels now; a new ``mqtt:`` section needs a restart."""
    cfg = loaded.config
    if ingest is None:
        if cfg.mqtt is not None:
            log.warning("config_needs_restart", keys=["mqtt"], why="the MQTT ingest starts with the daemon")
        return
    if cfg.mqtt is None:
        log.warning("config_needs_restart", keys=["mqtt"], why="the MQTT ingest stops with the daemon")
        return
    ingest.reconfigure(cfg.mqtt, specs_of(loaded))
