"""The lab's door panels: heartbeats and events over MQTT, as netwatch's ingest reads them.

One aiomqtt connection publishes for every simulated panel (a thousand panels are one client to
the broker, not a thousand). Topics and payloads follow netwatch's documented defaults
(:class:`~netwatch.ingest.mqttconfig.MqttConfig`, :class:`~netwatch.ingest.mqttconfig.PayloadMapping`),
or the mapping given, so what the lab sends is what the written config expects:

* heartbeats on ``panels/{device}/heartbeat``, every ``every`` seconds per panel, QoS 0; each
  panel has its own phase (from a hash of its id, so the same lab always beats the same way),
  which spreads a city's heartbeats over the cadence instead of bursting them;
* events on ``panels/{device}/event`` on command, QoS 1: ``{"event": "door_forced", "door":
  "main", "detail": "..."}``, with a vendor spelling when the mapping's ``events`` has one.

Faults: ``silent`` (no more heartbeats: the panel lost power or its uplink), ``malformed`` (each
cadence also publishes a garbage event: not JSON, no event type, an unknown event, in turn, as
broken firmware does; heartbeats go on), ``clear``.

If the broker goes away the client reconnects with capped exponential backoff; heartbeats due
meanwhile are skipped (a panel does not queue them), and an event waits up to ``within``
seconds for the connection.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import zlib
from dataclasses import dataclass
from typing import Any, Final, Literal, Self, get_args

import aiomqtt
import structlog

from netwatch.ingest.mqttconfig import MqttConfig, PanelEventName, PayloadMapping

log = structlog.get_logger(__name__)

PanelFault = Literal["silent", "malformed", "clear"]
PANEL_FAULTS: Final[frozenset[str]] = frozenset(get_args(PanelFault))
EVENT_NAMES: Final[frozenset[str]] = frozenset(get_args(PanelEventName))
#: netwatch's default topic templates: the lab publishes where an unconfigured netwatch listens.
HEARTBEAT_TOPIC: Final[str] = MqttConfig.model_fields["heartbeat_topic"].default
EVENT_TOPIC: Final[str] = MqttConfig.model_fields["event_topic"].default

#: What a panel with broken firmware sends, in turn: each is one malformed message to netwatch.
_GARBAGE: Final = (b"\x00\xff\xfe not json", b'{"door": "main"}', b'{"event": "door_opened_by_ghost"}')
#: Heartbeats due within this much of each other go out in one wake-up of the scheduler.
_BATCH_S: Final = 0.005


class PanelLabError(RuntimeError):
    """An event could not be delivered (no broker connection in time)."""


@dataclass
class PanelStats:
    """What the simulated panels sent; ``connected`` is the broker connection right now."""

    connected: bool = False
    connects: int = 0
    heartbeats: int = 0
    events: int = 0
    malformed: int = 0


@dataclass
class _Panel:
    device: str
    every: float
    fault: str = "clear"
    seq: int = 0
    garbage: int = 0


def _put(data: dict[str, Any], path: str, value: object) -> None:
    """Set ``value`` at a dotted path, making the objects on the way (``evt.type``)."""
    *parents, last = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


class PanelLab:
    """Simulated access panels publishing to one broker through one connection.

    Add panels, then ``start()`` (or ``async with``); it connects in the background, and
    :meth:`wait_connected` waits for that. ``fault()`` and ``event()`` while running; ``stop()``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        every: float = 30.0,
        client_id: str = "netwatch-lab-panels",
        heartbeat_topic: str = HEARTBEAT_TOPIC,
        event_topic: str = EVENT_TOPIC,
        payload: PayloadMapping | None = None,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
    ) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        for template in (heartbeat_topic, event_topic):
            if "{device}" not in template:
                raise ValueError(f"topic template {template!r} lacks {{device}}")
        self._host = host
        self._port = port
        self._every = every
        self._client_id = client_id
        self._heartbeat_topic = heartbeat_topic
        self._event_topic = event_topic
        self._mapping = payload or PayloadMapping()
        # The vendor spelling of each netwatch event, where the mapping renames one.
        self._vendor: dict[str, str] = {}
        for vendor, ours in self._mapping.events.items():
            self._vendor.setdefault(ours, vendor)
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._panels: dict[str, _Panel] = {}
        self._due: list[tuple[float, str]] = []
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = PanelStats()

    # -- set-up ---------------------------------------------------------------------------------

    def add_panel(self, device: str, *, every: float | None = None) -> None:
        """A panel that beats every ``every`` seconds (default: the lab's cadence)."""
        if self._task is not None:
            raise RuntimeError("add panels before start()")
        if device in self._panels:
            raise ValueError(f"{device} is already in the panel lab")
        if "/" in device or "+" in device or "#" in device:
            raise ValueError(f"{device!r} cannot be a topic level")
        if every is not None and every <= 0:
            raise ValueError("every must be positive")
        self._panels[device] = _Panel(device, every if every is not None else self._every)

    @property
    def connected(self) -> bool:
        return self.stats.connected

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start publishing; the connection is made in the background (see :meth:`wait_connected`)."""
        if self._task is not None:
            return
        now = asyncio.get_running_loop().time()
        self._due = [(now + p.every * (zlib.crc32(p.device.encode()) / 2**32), p.device) for p in self._panels.values()]
        heapq.heapify(self._due)
        self._task = asyncio.create_task(self._run(), name="lab-panels")

    async def wait_connected(self, within: float = 10.0) -> None:
        """Wait until the broker connection is up; PanelLabError after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                await self._up.wait()
        except TimeoutError:
            raise PanelLabError(
                f"no connection to the broker at {self._host}:{self._port} within {within:g}s"
            ) from None

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- commands -------------------------------------------------------------------------------

    async def fault(self, device: str, fault: PanelFault) -> None:
        """Set a panel's fault (``clear`` ends it); takes effect at its next cadence."""
        if fault not in PANEL_FAULTS:
            raise ValueError(f"{device}: panel faults are {', '.join(sorted(PANEL_FAULTS))}, not {fault!r}")
        self._panel(device).fault = fault

    def faults(self) -> dict[str, str]:
        """Return every panel's current fault (``clear`` for none)."""
        return {name: p.fault for name, p in self._panels.items()}

    async def event(
        self, device: str, name: str, door: str | None = None, *, detail: str | None = None, within: float = 5.0
    ) -> None:
        """Publish one event (QoS 1) and return once the broker has it.

        ``name`` is a netwatch event name (door_forced, door_held_open, tamper, power_failure,
        on_battery). Raises PanelLabError if no broker connection came in ``within`` seconds.
        """
        self._panel(device)
        if name not in EVENT_NAMES:
            raise ValueError(f"{name!r} is not a panel event; events are {', '.join(sorted(EVENT_NAMES))}")
        data: dict[str, Any] = {}
        _put(data, self._mapping.event, self._vendor.get(name, name))
        if door is not None:
            _put(data, self._mapping.door, door)
        if detail is not None:
            _put(data, self._mapping.detail, detail)
        topic = self._event_topic.replace("{device}", device)
        try:
            async with asyncio.timeout(within):
                while True:
                    await self._up.wait()
                    client = self._client
                    if client is None:
                        await asyncio.sleep(0.01)
                        continue
                    try:
                        await client.publish(topic, json.dumps(data).encode(), qos=1)
                        break
                    except aiomqtt.MqttError:
                        # The connection died under it: send again on the next one (QoS 1 is
                        # at-least-once anyway), within the same timeout.
                        await asyncio.sleep(0.01)
        except TimeoutError:
            raise PanelLabError(
                f"{device}: event {name} not delivered: no broker at {self._host}:{self._port} within {within:g}s"
            ) from None
        self.stats.events += 1

    def _panel(self, device: str) -> _Panel:
        try:
            return self._panels[device]
        except KeyError:
            raise KeyError(f"{device} is not a panel of the lab") from None

    # -- the connection -------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._reconnect_min
        down_logged = False
        while True:
            try:
                async with aiomqtt.Client(
                    self._host, self._port, identifier=self._client_id, keepalive=15, timeout=5.0
                ) as client:
                    self._client = client
                    self.stats.connected = True
                    self.stats.connects += 1
                    self._up.set()
                    log.info("lab_panels_connected", broker=f"{self._host}:{self._port}", panels=len(self._panels))
                    delay = self._reconnect_min
                    down_logged = False
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if not down_logged:  # once per outage, not once per retry
                    log.warning("lab_panels_broker_down", broker=f"{self._host}:{self._port}", error=str(exc)[:200])
                    down_logged = True
            finally:
                self._client = None
                self.stats.connected = False
                self._up.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Beat until the connection fails (raises MqttError)."""
        watch = asyncio.create_task(self._watch(client))
        beat = asyncio.create_task(self._beat(client))
        try:
            done, _ = await asyncio.wait({watch, beat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, beat):
                task.cancel()
            await asyncio.gather(watch, beat, return_exceptions=True)
        for task in done:
            task.result()

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        # Nothing is subscribed, so no message comes; the iterator raises MqttError when the
        # connection is lost, which a client that only publishes (all panels silent) would miss.
        async for _ in client.messages:
            pass

    async def _beat(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._due:
                await asyncio.Event().wait()  # no panels: nothing to beat, ever
            wait = self._due[0][0] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            now = loop.time()
            while self._due and self._due[0][0] <= now + _BATCH_S:
                due, device = self._due[0]
                panel = self._panels[device]
                # The next slot in this panel's phase after now: slots missed while the broker
                # was away are skipped, not sent in a burst.
                behind = max(0.0, now - due)
                heapq.heapreplace(self._due, (due + panel.every * (1 + int(behind // panel.every)), device))
                await self._send(client, panel)

    async def _send(self, client: aiomqtt.Client, panel: _Panel) -> None:
        if panel.fault != "silent":
            panel.seq += 1
            topic = self._heartbeat_topic.replace("{device}", panel.device)
            await client.publish(topic, json.dumps({"seq": panel.seq}).encode(), qos=0)
            self.stats.heartbeats += 1
        if panel.fault == "malformed":
            payload = _GARBAGE[panel.garbage % len(_GARBAGE)]
            panel.garbage += 1
            await client.publish(self._event_topic.replace("{device}", panel.device), payload, qos=0)
            self.stats.malformed += 1
