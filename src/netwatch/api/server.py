"""The HTTP server on aiohttp, started and stopped by the daemon.

``/healthz``, ``/readyz`` and ``/metrics`` are open to anyone who can connect; the alert endpoints
(``/api/v1/alerts``, ``/api/v1/silences``, see :mod:`netwatch.api.alerts`) check a bearer token
except for reads from loopback. Health and metrics serve GET (and HEAD, which aiohttp derives
from it) only; another method on a known path is 405, an unknown path 404. No access log: a
scrape every few seconds would drown the journal, and a header is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from netwatch.api.alerts import MAX_BODY_BYTES, Access, AlertsApi, AlertsSource, is_loopback
from netwatch.api.health import ApiConfig, Checks, HealthSource, LoopLag, Verdict
from netwatch.api.metrics import registry_for
from netwatch.api.state import StateApi

log = structlog.get_logger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}


class ApiListenError(Exception):
    """The API cannot listen on its configured address (port taken, address not local, no permission)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address}: {reason}")
        self.address = address
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ApiServer:
    """A running API (or a disabled one): the addresses it actually listens on."""

    #: ``(host, port)`` per bound socket, with the real port when the config asked for port 0.
    addresses: tuple[tuple[str, int], ...]

    @property
    def url(self) -> str | None:
        """The base URL of the first address, ``None`` when the API is disabled."""
        if not self.addresses:
            return None
        host, port = self.addresses[0]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _json(verdict: Verdict) -> web.Response:
    return web.json_response(verdict.body, status=200 if verdict.ok else 503, headers=_NO_STORE)


def build_app(checks: Checks, alerts: AlertsApi | None = None, state: StateApi | None = None) -> web.Application:
    """Return the aiohttp application serving these checks and, when given, the alert endpoints."""
    registry: CollectorRegistry = registry_for(checks, alerts.source if alerts is not None else None)

    async def healthz(_request: web.Request) -> web.Response:
        """200 while the scheduler's heartbeat is fresh, 503 when it is stale."""
        return _json(checks.liveness())

    async def readyz(_request: web.Request) -> web.Response:
        """200 when ready, 503 with every reason when not."""
        return _json(checks.readiness())

    async def metrics(request: web.Request) -> web.Response:
        """Prometheus text format, or OpenMetrics when the scraper asks for it."""
        encoder, content_type = choose_encoder(",".join(request.headers.getall("Accept", [])))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type, **_NO_STORE})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if alerts is not None:
        alerts.add_routes(app)
    if state is not None:
        state.add_routes(app)
    return app


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another netwatch, or another program, holds it; change api.listen)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this host"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def serve_api(
    cfg: ApiConfig,
    source: HealthSource,
    *,
    alerts: AlertsSource | None = None,
    state: Callable[[], dict[str, Any]] | None = None,
    stop_timeout: float = 5.0,
) -> AsyncIterator[ApiServer]:
    """Serve the API for the duration of the ``async with`` block.

    With ``alerts``, the alert and silence endpoints are served too; with ``state``,
    ``/api/v1/state``. With ``cfg.enabled`` false nothing listens and the server has no addresses.
    On exit the server stops within ``stop_timeout`` seconds, requests in flight included.

    Raises:
        ApiListenError: the address cannot be bound (already in use, not local, not permitted);
            the message names the address.
    """
    if not cfg.enabled:
        log.info("api_disabled")
        yield ApiServer(addresses=())
        return
    loop_lag = LoopLag()
    checks = Checks(source, max_write_age_s=cfg.ready_max_write_age, loop_lag=loop_lag)
    alerts_api = None
    if alerts is not None:
        alerts_api = AlertsApi(
            source=alerts,
            access=Access(cfg.token_file),
            max_silence_s=cfg.silence_max_duration,
            instance=lambda: source.instance,
        )
    state_api = None
    if state is not None:
        state_api = StateApi(source=state, access=Access(cfg.token_file), instance=lambda: source.instance)
    runner = web.AppRunner(build_app(checks, alerts_api, state_api), access_log=None, shutdown_timeout=stop_timeout)
    await runner.setup()
    lag_task: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            raise ApiListenError(cfg.listen, _reason(exc)) from exc
        addresses = tuple((str(a[0]), int(a[1])) for a in runner.addresses)
        lag_task = asyncio.create_task(loop_lag.run(), name="api/loop-lag")
        server = ApiServer(addresses=addresses)
        log.info("api_listening", url=server.url, token=cfg.token_file is not None)
        if alerts is not None and cfg.token_file is None and not (cfg.host == "localhost" or is_loopback(cfg.host)):
            log.warning(
                "api_without_token",
                listen=cfg.listen,
                why="other hosts cannot read alerts and nobody can make silences until api.token_file is set",
            )
        yield server
    finally:
        if lag_task is not None:
            lag_task.cancel()
            # wait(), not await: the task's own CancelledError must not hide a cancel of ours.
            await asyncio.wait([lag_task])
        try:
            # aiohttp's own shutdown_timeout covers handlers; this bounds the whole teardown.
            async with asyncio.timeout(stop_timeout + 1.0):
                await runner.cleanup()
        except TimeoutError:
            log.warning("api_stop_timeout", timeout_s=stop_timeout)


__all__ = ["ApiListenError", "ApiServer", "build_app", "serve_api"]
