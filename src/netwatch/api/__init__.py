"""The daemon's HTTP API: ``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus).

The daemon implements :class:`HealthSource` and runs ``async with serve_api(cfg.api, source)``
around its work; the API only reads counts, ages and flags from it, never config or secrets.
"""

from netwatch.api.health import (
    HEARTBEAT_STALE_S,
    ApiConfig,
    ComponentsSource,
    DeviceCounts,
    HealthSource,
    LagSnapshot,
    SchedulerSnapshot,
    StatsReader,
)
from netwatch.api.server import ApiListenError, ApiServer, serve_api

__all__ = [
    "HEARTBEAT_STALE_S",
    "ApiConfig",
    "ApiListenError",
    "ApiServer",
    "ComponentsSource",
    "DeviceCounts",
    "HealthSource",
    "LagSnapshot",
    "SchedulerSnapshot",
    "StatsReader",
    "serve_api",
]
