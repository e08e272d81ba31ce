"""What the health API knows and how it judges it: config, the daemon's side, liveness, readiness.

The daemon implements :class:`HealthSource`; the API only reads it. Everything the source hands
over is a count, an age or a flag, so nothing the API serves can carry a secret.

* Alive (``/healthz``): the scheduler loop woke within :data:`HEARTBEAT_STALE_S`. The scheduler
  wakes at least every second, so a heartbeat older than that means a stuck loop or a dead
  scheduler task, and the process should be restarted.
* Ready (``/readyz``): the spool has been recovered, and either no points are waiting or InfluxDB
  accepted a write within ``ready_max_write_age``. A daemon that is alive but not ready is still
  collecting and spooling; it is the delivery to InfluxDB that is behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import Field, field_validator

from netwatch.configbase import Duration, SecretFile, Strict

#: ``/healthz`` fails once the scheduler's heartbeat is older than this (it wakes every second).
HEARTBEAT_STALE_S = 10.0

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` into its parts; an IPv6 address goes in brackets (``[::1]:9317``).

    The host is an IPv4 or IPv6 address or a host name; port 0 asks the kernel for a free port.

    Raises:
        ValueError: with a hint at the expected form.
    """
    text = value.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"invalid listen address {value!r}; write an IPv6 address as [::1]:9317")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid listen address {value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"invalid listen address {value!r}; expected host:port, e.g. 127.0.0.1:9317")
        if ":" in host:
            raise ValueError(f"invalid listen address {value!r}; write an IPv6 address in brackets, e.g. [::1]:9317")
        if not host:
            raise ValueError(f"invalid listen address {value!r}; name the host, e.g. 127.0.0.1:9317 or 0.0.0.0:9317")
        if re.fullmatch(r"[\d.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"invalid listen address {value!r}: {host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.fullmatch(host) or len(host) > 253:
            raise ValueError(f"invalid listen address {value!r}: {host!r} is not a host name or address")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid listen address {value!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


class ApiConfig(Strict):
    """The ``api`` section: where the API listens, when the daemon counts as ready, the API token."""

    #: ``host:port``; ``[::1]:9317`` for IPv6. Loopback by default: health, metrics and the read-only
    #: alert endpoints are open to local clients; from other hosts the alert endpoints need the token.
    listen: str = "127.0.0.1:9317"
    enabled: bool = True
    #: Not ready when points wait and InfluxDB has accepted no write for longer than this.
    ready_max_write_age: Duration = 120.0
    #: File holding the bearer token that silences (writes) and remote reads need. Without it, no
    #: silence can be made through the API.
    token_file: SecretFile | None = Field(
        default=None, description="file holding the API bearer token (needed to create or expire silences)"
    )
    #: The longest silence accepted; planned work belongs in a maintenance window.
    silence_max_duration: Duration = Field(default=7 * 86400.0, gt=0, description="longest silence accepted")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value.strip()

    @property
    def host(self) -> str:
        """The host part of ``listen``, without IPv6 brackets."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return parse_listen(self.listen)[1]


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """Poll lag (scheduled time to start of the check, including waiting for a slot) in ms."""

    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_lags(cls, lags_s: Iterable[float]) -> LagSnapshot | None:
        """Summarise lags given in seconds, as ``Scheduler.lag_summary`` does; ``None`` if there are none.

        Reads the iterable only, so it can be handed ``scheduler.stats.lags`` without resetting it.
        """
        lags = sorted(lags_s)
        if not lags:
            return None

        def pct(p: float) -> float:
            return lags[min(len(lags) - 1, int(p * len(lags)))] * 1000.0

        return cls(p50_ms=pct(0.50), p99_ms=pct(0.99), max_ms=lags[-1] * 1000.0)


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    """The scheduler's counters since start (the ``netwatch`` measurement, component=scheduler)."""

    checks_run: int
    checks_failed: int
    checks_skipped: int
    checks_in_flight: int
    #: Lag over a recent window; ``None`` when no check started in it.
    poll_lag: LagSnapshot | None


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """How many devices are up and how many are not (down, unreachable, degraded); unpolled ones in neither."""

    up: int
    down: int


class HealthSource(Protocol):
    """What the daemon tells the health API. Every call is cheap, synchronous and side-effect free.

    A source may also be a :class:`ComponentsSource`, to expose the other components that write
    ``netwatch`` samples (outbox, MQTT ingest, trap receiver, ...) on ``/metrics``.
    """

    @property
    def instance(self) -> str:
        """The ``instance`` name from the config (a label on every metric)."""
        ...

    def scheduler_stats(self) -> SchedulerSnapshot:
        """Return the scheduler's counters and recent poll lag.

        Must not reset anything: ``Scheduler.lag_summary()`` empties its window for the
        ``netwatch`` measurement, so the lag here comes from a non-resetting read (for example
        ``LagSnapshot.from_lags(scheduler.stats.lags)``, or the last reported summary).
        """
        ...

    def heartbeat_age_s(self) -> float:
        """Return seconds since the scheduler loop last woke (``loop.time() - Scheduler.heartbeat``)."""
        ...

    def sink_stats(self) -> Mapping[str, int | float]:
        """Return the sink's counters, keyed as ``netwatch.sink.influx.STATS_KEYS``."""
        ...

    def spool_recovered(self) -> bool:
        """Return whether the spool left by the last run has been opened and recovered."""
        ...

    def last_write_age_s(self) -> float | None:
        """Return seconds since InfluxDB last accepted a write; ``None`` if it has not yet."""
        ...

    def backlog_points(self) -> int:
        """Return the points waiting to be written to InfluxDB (spool and buffer)."""
        ...

    def device_counts(self) -> DeviceCounts:
        """Return how many devices are up and down now."""
        ...


#: Returns one component's fields of the ``netwatch`` measurement (``Outbox.stats``, say).
StatsReader = Callable[[], Mapping[str, int | float]]


@runtime_checkable
class ComponentsSource(Protocol):
    """The optional part of a :class:`HealthSource`: the components configured in this daemon.

    Optional so that a source without it (or a daemon with none of these components configured)
    still serves every other metric; ``/metrics`` checks for it on each scrape.
    """

    @property
    def components(self) -> Mapping[str, StatsReader]:
        """Return a reader per configured component, by its ``component`` tag in the ``netwatch``
        measurement (``outbox``, ``mqtt``, ``traps``, ``publish``).

        Each reader is called on every scrape, so it must be cheap, synchronous and side-effect
        free, and return the same fields the component writes to InfluxDB. A component that is not
        configured has no entry.
        """
        ...


class LoopLag:
    """Measure event-loop lag: how late a periodic timer wakes compared with when it was due.

    A loop blocked by a synchronous call cannot answer HTTP either, so the worst lag of the
    recent window is kept too: a probe asking after the stall still sees it. A stall shows as
    its length less up to one ``interval`` (the part before the timer was due), hence a short one.
    """

    def __init__(self, *, interval: float = 0.1, window: int = 100) -> None:
        self._interval = interval
        self._samples: deque[float] = deque(maxlen=window)

    @property
    def latest_ms(self) -> float:
        """The lag of the last wake-up, in ms (0 before the first)."""
        return self._samples[-1] * 1000.0 if self._samples else 0.0

    @property
    def max_ms(self) -> float:
        """The worst lag over the window (``interval * window`` seconds), in ms."""
        return max(self._samples, default=0.0) * 1000.0

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._samples.append(max(0.0, loop.time() - due))


def liveness_problem(heartbeat_age_s: float) -> str | None:
    """Return why the daemon is not alive, or ``None`` when it is."""
    if heartbeat_age_s > HEARTBEAT_STALE_S:
        return f"scheduler has not woken for {heartbeat_age_s:.0f} s (limit {HEARTBEAT_STALE_S:.0f} s)"
    return None


def readiness_problems(
    *,
    spool_recovered: bool,
    backlog_points: int,
    last_write_age_s: float | None,
    uptime_s: float,
    max_write_age_s: float,
) -> list[str]:
    """Return why the daemon is not ready; empty when it is.

    With no write accepted yet, the age counts from when the API started (``uptime_s``), so a
    fresh start with points waiting gets ``max_write_age_s`` of grace, not an instant failure.
    """
    why = []
    if not spool_recovered:
        why.append("spool not recovered yet")
    if backlog_points > 0:
        if last_write_age_s is None:
            if uptime_s > max_write_age_s:
                why.append(
                    f"influxdb has accepted no write since start {uptime_s:.0f} s ago ({backlog_points} points waiting)"
                )
        elif last_write_age_s > max_write_age_s:
            why.append(
                f"influxdb has not accepted a write for {last_write_age_s:.0f} s ({backlog_points} points waiting)"
            )
    return why


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of one health check: whether it passed, and the JSON body that says so."""

    ok: bool
    body: dict[str, object]


class Checks:
    """Liveness and readiness of one daemon, read from its :class:`HealthSource` on each call."""

    def __init__(self, source: HealthSource, *, max_write_age_s: float, loop_lag: LoopLag) -> None:
        self.source = source
        self.loop_lag = loop_lag
        self._max_write_age_s = max_write_age_s
        self._started = asyncio.get_running_loop().time()

    def uptime_s(self) -> float:
        """Seconds since these checks were set up (when the API started)."""
        return asyncio.get_running_loop().time() - self._started

    def liveness(self) -> Verdict:
        """Alive while the scheduler's heartbeat is fresh; the body carries loop lag and heartbeat age."""
        age = self.source.heartbeat_age_s()
        problem = liveness_problem(age)
        body: dict[str, object] = {
            "status": "ok" if problem is None else "stale",
            "loop_lag_ms": round(self.loop_lag.latest_ms, 3),
            "loop_lag_max_ms": round(self.loop_lag.max_ms, 3),
            "heartbeat_age_s": round(age, 3),
        }
        if problem is not None:
            body["why"] = [problem]
        return Verdict(ok=problem is None, body=body)

    def readiness(self) -> Verdict:
        """Ready per :func:`readiness_problems`; the body names every reason it is not."""
        recovered = self.source.spool_recovered()
        backlog = self.source.backlog_points()
        age = self.source.last_write_age_s()
        why = readiness_problems(
            spool_recovered=recovered,
            backlog_points=backlog,
            last_write_age_s=age,
            uptime_s=self.uptime_s(),
            max_write_age_s=self._max_write_age_s,
        )
        body: dict[str, object] = {
            "ready": not why,
            "why": why,
            "spool_recovered": recovered,
            "backlog_points": backlog,
            "last_write_age_s": None if age is None else round(age, 3),
        }
        return Verdict(ok=not why, body=body)


__all__ = [
    "HEARTBEAT_STALE_S",
    "ApiConfig",
    "Checks",
    "ComponentsSource",
    "DeviceCounts",
    "HealthSource",
    "LagSnapshot",
    "LoopLag",
    "SchedulerSnapshot",
    "StatsReader",
    "Verdict",
    "liveness_problem",
    "parse_listen",
    "readiness_problems",
]
