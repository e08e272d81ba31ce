"""InfluxDB writer: v1 ``/write`` (InfluxDB 1.x, and 2.x/3.x compatibility) or v2 ``/api/v2/write``.

``submit()`` is synchronous and cheap: it encodes samples to line protocol and appends the lines
to a buffer. One background task takes batches (``batch_size`` points, or whatever waited
``flush_interval``) and writes them; a batch leaves the buffer only when InfluxDB has answered.

What happens to a write, by answer:

=====================================  ==========================================================
2xx                                    accepted; the batch leaves the buffer
connection error, timeout, 5xx, 429    kept; retried with exponential backoff and jitter, never
                                       sooner than ``Retry-After`` says
401 / 403                              kept; logged once as an error; retried slowly
404                                    kept; logged once ("create the database"); retried slowly
413                                    the batch is split in two and each half written
other 4xx (400: bad line, field type   rejected for good: logged once with InfluxDB's text and
conflict, partial write)               counted (only the dropped points of a partial write)
=====================================  ==========================================================

Outages are logged when they start (``influx_write_failed``, once, not per retry) and when they
end (``influx_recovered``). Secrets never reach the log: credentials are only revealed where
they go on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import random
import re
import ssl
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

import aiohttp
import structlog
from pydantic import Field, HttpUrl, field_validator, model_validator

from netwatch import __version__
from netwatch.configbase import CaFile, Duration, SecretFile, Strict, reveal
from netwatch.model import Sample
from netwatch.retryafter import parse_retry_after
from netwatch.sink.buffer import Batch, LineBuffer, MemoryBuffer
from netwatch.sink.lineproto import LineEncoder

log = structlog.get_logger(__name__)


class InfluxConfig(Strict):
    """Where and how to write. Credentials come only from files."""

    url: HttpUrl = HttpUrl("http://127.0.0.1:8086")
    api: Literal["v1", "v2"] = "v1"
    # v1
    database: str = "netwatch"
    retention_policy: str | None = None
    username_file: SecretFile | None = None
    password_file: SecretFile | None = None
    # v2
    org: str | None = None
    bucket: str | None = None
    token_file: SecretFile | None = None
    # batching and delivery
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="points per write request")
    flush_interval: Duration = Field(default=5.0, description="longest a point waits before a write")
    timeout: Duration = Field(default=10.0, description="one write request")
    gzip: bool = True
    tls: Literal["verify", "insecure"] = "verify"
    ca_file: CaFile | None = Field(default=None, description="CA bundle to verify the server with")
    retry_initial: Duration = Field(default=1.0, description="first wait before retrying a failed write")
    retry_max: Duration = Field(
        default=10.0, description="longest wait between retries (also the pace while credentials are refused)"
    )

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: HttpUrl) -> HttpUrl:
        # A password in the URL would end up in logs and the API; secrets come from files.
        if url.username or url.password:
            raise ValueError("no user:password in the URL; use username_file and password_file")
        if url.query and any(k in url.query.lower() for k in ("p=", "password", "token", "u=")):
            raise ValueError("no credentials in the URL's query; use username_file/password_file or token_file")
        return url

    @model_validator(mode="after")
    def _api_needs(self) -> InfluxConfig:
        if self.api == "v2" and (not self.org or not self.bucket):
            raise ValueError("api v2 needs org and bucket")
        if (self.username_file is None) != (self.password_file is None):
            raise ValueError("username_file and password_file go together")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self


#: The keys of :meth:`Sink.stats`: fields of the ``netwatch`` measurement (component=sink).
STATS_KEYS = (
    "points_collected",
    "points_written",
    "points_dropped",
    "points_rejected",
    "buffer_points",
    "batches_written",
    "batch_points_avg",
    "write_latency_ms",
    "write_errors",
)


class Sink(Protocol):
    """Where samples go. The scheduler calls ``submit`` for every observation."""

    def submit(self, samples: Iterable[Sample]) -> None:
        """Accept samples; never block, never raise for a delivery problem."""
        ...

    def stats(self) -> dict[str, int | float]:
        """Return counters for self-observation, keyed as :data:`STATS_KEYS`."""
        ...

    def last_write_age_s(self) -> float | None:
        """Seconds since the last accepted write; None before the first (or with nowhere to write)."""
        ...


class SpoolOnlySink:
    """The sink when no InfluxDB is configured: samples are kept in the spool, up to its cap.

    Nothing is sent, so the spool fills to its cap and then keeps the newest points; configure
    InfluxDB later and the daemon delivers what the spool still holds.
    """

    def __init__(self, buffer: LineBuffer, *, encoder: LineEncoder | None = None) -> None:
        self._buffer = buffer
        self._encoder = encoder if encoder is not None else LineEncoder()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._buffer.aclose()

    def submit(self, samples: Iterable[Sample]) -> None:
        lines = self._encoder.encode_many(samples)
        if lines:
            self._buffer.append(lines)

    def last_write_age_s(self) -> float | None:
        return None

    def stats(self) -> dict[str, int | float]:
        enc = self._encoder.stats
        return {
            "points_collected": enc.samples + self._buffer.recovered,
            "points_written": 0,
            "points_dropped": enc.points_dropped + self._buffer.dropped,
            "points_rejected": 0,
            "buffer_points": len(self._buffer),
            "batches_written": 0,
            "batch_points_avg": 0.0,
            "write_latency_ms": 0.0,
            "write_errors": 0,
        }


def open_sink(
    cfg: InfluxConfig | None,
    *,
    instance: str,
    buffer: LineBuffer | None = None,
    quarantine_dir: Path | None = None,
) -> AbstractAsyncContextManager[Sink]:
    """Return the sink for this config: an :class:`InfluxSink` writing from ``buffer`` (the
    durable spool; memory when None), or a :class:`SpoolOnlySink` when no InfluxDB is configured."""
    if cfg is None:
        log.info("sink_spool_only", instance=instance, why="no influxdb section in the config")
        return SpoolOnlySink(buffer if buffer is not None else MemoryBuffer(max_points=1_000_000))
    return InfluxSink(cfg, instance=instance, buffer=buffer, quarantine_dir=quarantine_dir)


# -- transports ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write request came back with."""

    #: HTTP status, or None when there was no answer (connection refused, timeout, TLS failure).
    status: int | None
    #: InfluxDB's error text, or the exception, for logs. Empty on success.
    error: str = ""
    #: Seconds the server asked us to wait (``Retry-After``), if it did.
    retry_after: float | None = None
    #: The answer came from InfluxDB itself (X-Influxdb-* headers), not a proxy or a wrong port.
    from_influx: bool = False

    @property
    def ok(self) -> bool:
        """Tell whether InfluxDB accepted the write."""
        return self.status is not None and 200 <= self.status < 300


class _Transport(Protocol):
    async def prepare(self, lines: Sequence[str]) -> bytes: ...

    async def write(self, body: bytes) -> WriteResult: ...

    async def aclose(self) -> None: ...


def _join(lines: Sequence[str]) -> bytes:
    return "\n".join(lines).encode("utf-8")


def _error_text(body: bytes | str | None, limit: int = 1_000_000) -> str:
    """Pull InfluxDB's message out of an error body (JSON ``error`` or ``message``, else text)."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        message = doc.get("error") or doc.get("message")
        if isinstance(message, str):
            text = message
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _ssl_context(cfg: InfluxConfig) -> ssl.SSLContext | Literal[False]:
    if cfg.tls == "insecure":
        return False
    return ssl.create_default_context(cafile=cfg.ca_file)


class _V1Transport:
    """``POST {url}/write?db=&rp=&precision=ns`` with aiohttp; basic auth; optional gzip body."""

    def __init__(self, cfg: InfluxConfig, *, user_agent: str) -> None:
        self._gzip = cfg.gzip
        self._url = str(cfg.url).rstrip("/") + "/write"
        self._params = {"db": cfg.database, "precision": "ns"}
        if cfg.retention_policy:
            self._params["rp"] = cfg.retention_policy
        headers = {"User-Agent": user_agent, "Content-Type": "text/plain; charset=utf-8"}
        user, password = reveal(cfg.username_file), reveal(cfg.password_file)
        if user is not None and password is not None:
            # Basic auth in a header, not u=/p= in the query string, which proxies tend to log.
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        if cfg.gzip:
            headers["Content-Encoding"] = "gzip"
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=cfg.timeout),
            connector=aiohttp.TCPConnector(ssl=_ssl_context(cfg)),
        )

    async def prepare(self, lines: Sequence[str]) -> bytes:
        body = _join(lines)
        if not self._gzip:
            return body
        if len(body) < 256 * 1024:
            return gzip.compress(body, compresslevel=1)
        # zlib releases the GIL: a big batch is compressed off the event loop.
        return await asyncio.to_thread(gzip.compress, body, 1)

    async def write(self, body: bytes) -> WriteResult:
        try:
            async with self._session.post(self._url, params=self._params, data=body) as resp:
                text = await resp.read()
                if 200 <= resp.status < 300:
                    return WriteResult(resp.status)
                return WriteResult(
                    resp.status,
                    _error_text(text) or resp.headers.get("X-Influxdb-Error", "") or resp.reason or "",
                    parse_retry_after(resp.headers.get("Retry-After")),
                    from_influx=any(h.lower().startswith("x-influxdb") for h in resp.headers),
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return WriteResult(None, _describe(exc))

    async def aclose(self) -> None:
        await self._session.close()


class _V2Transport:
    """``/api/v2/write`` through influxdb-client's async API (it gzips when asked)."""

    def __init__(self, cfg: InfluxConfig, *, user_agent: str) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        token = reveal(cfg.token_file)
        user, password = reveal(cfg.username_file), reveal(cfg.password_file)
        if token is None and user is not None and password is not None:
            token = f"{user}:{password}"  # InfluxDB 1.8+ compatibility API: "username:password"
        self._bucket = cfg.bucket or ""
        self._org = cfg.org or ""  # both checked by InfluxConfig for api v2
        self._client = InfluxDBClientAsync(
            url=str(cfg.url).rstrip("/"),
            token=token or "",  # empty: no Authorization header
            org=self._org,
            timeout=int(cfg.timeout * 1000),
            enable_gzip=cfg.gzip,
            verify_ssl=cfg.tls == "verify",
            ssl_ca_cert=cfg.ca_file,
        )
        self._client.api_client.user_agent = user_agent
        self._write_api = self._client.write_api()

    async def prepare(self, lines: Sequence[str]) -> bytes:
        return _join(lines)

    async def write(self, body: bytes) -> WriteResult:
        from influxdb_client.rest import ApiException

        try:
            # One record of pre-encoded lines (the client would encode each line again otherwise);
            # the client's default precision is ns, which is what the lines carry.
            await self._write_api.write(bucket=self._bucket, org=self._org, record=body)
        except ApiException as exc:
            headers = getattr(exc, "headers", None) or {}
            return WriteResult(
                int(exc.status or 0) or None,
                _error_text(exc.body) or str(exc.reason or ""),
                parse_retry_after(exc.retry_after if isinstance(exc.retry_after, str) else None),
                from_influx=any(str(h).lower().startswith("x-influxdb") for h in headers),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return WriteResult(None, _describe(exc))
        return WriteResult(204)

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the sink --------------------------------------------------------------------------------------

_PARTIAL_DROPPED = re.compile(r"dropped=(\d+)")


def rejected_points(error: str, points: int) -> int:
    """Return how many points of a batch a 400 answer rejected.

    InfluxDB 1.x writes the good points of a batch and says ``partial write: ... dropped=N``,
    listing each line it could not parse as ``unable to parse '...'``. Any other 400 rejects the
    whole batch.
    """
    if "partial write" not in error:
        return points
    match = _PARTIAL_DROPPED.search(error)
    dropped = int(match.group(1)) if match else 0
    return max(0, min(points, dropped + error.count("unable to parse")))


@dataclass(slots=True)
class _Outage:
    kind: str
    since: float
    attempts: int = 0


#: Rejected batches kept in the quarantine directory (the oldest go first).
QUARANTINE_FILES = 100

#: After a quiet spell, how long the first points wait for the rest of their polling tick.
SETTLE_S = 0.25


class InfluxSink:
    """Batch samples to InfluxDB from a background task; an async context manager.

    ``close_timeout`` bounds ``__aexit__``: what can be written within it is written, the rest
    is counted as dropped (a durable buffer keeps it instead).
    """

    def __init__(
        self,
        cfg: InfluxConfig,
        *,
        instance: str = "netwatch",
        buffer: LineBuffer | None = None,
        encoder: LineEncoder | None = None,
        close_timeout: float = 5.0,
        max_memory_points: int = 1_000_000,
        quarantine_dir: Path | None = None,
    ) -> None:
        self._quarantine_dir = quarantine_dir
        self._rejections = 0
        self._cfg = cfg
        self._instance = instance
        # The daemon passes its durable spool; a memory buffer serves tools and tests.
        self._buffer: LineBuffer = buffer if buffer is not None else MemoryBuffer(max_points=max_memory_points)
        self._encoder = encoder if encoder is not None else LineEncoder()
        self._close_timeout = close_timeout
        self._log = log.bind(instance=instance, url=url_for_logs(cfg.url), api=cfg.api)
        self._transport: _Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = False
        self._first_at: float | None = None  # monotonic time the oldest unwritten point arrived
        self._last_write_at: float | None = None
        self._outage: _Outage | None = None
        self._buffer_full_logged = False
        # counters
        self._extra_collected = 0  # samples submitted after close (not encoded)
        self._encode_errors = 0  # samples the encoder raised on (counted by it as seen)
        self._written = 0
        self._rejected = 0
        self._lost_at_close = 0
        self._batches = 0
        self._errors = 0
        self._latency_ms = 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        agent = f"netwatch/{__version__} ({self._instance})"
        if self._cfg.api == "v1":
            self._transport = _V1Transport(self._cfg, user_agent=agent)
        else:
            self._transport = _V2Transport(self._cfg, user_agent=agent)
        self._task = asyncio.create_task(self._run(), name="influx-writer")
        if self._buffer.waiting:  # points submitted before, or a durable buffer's backlog
            if self._first_at is None:
                self._first_at = time.monotonic()
            self._wake.set()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Write what can be written within ``close_timeout``, then stop."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        task = self._task
        try:
            if task is not None:
                await asyncio.wait({task}, timeout=self._close_timeout)
        finally:
            # Past the deadline, or we are cancelled ourselves: stop the writer, which puts the
            # batch it holds back into the buffer, before counting what is left.
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._closed = True
            left = len(self._buffer)
            if left:
                if self._buffer.durable:
                    self._log.info("influx_unflushed_kept", points=left)
                else:
                    self._lost_at_close = left
                    self._log.warning(
                        "influx_unflushed_dropped",
                        points=left,
                        close_timeout_s=self._close_timeout,
                        why="InfluxDB did not take them before shutdown; the buffer is in memory",
                    )
            await self._buffer.aclose()
            if self._transport is not None:
                await self._transport.aclose()

    # -- the scheduler's side ---------------------------------------------------------------------

    def submit(self, samples: Iterable[Sample]) -> None:
        """Encode samples and queue them for writing; cheap, never blocks, never raises."""
        if self._closed:
            n = sum(1 for _ in samples)
            self._extra_collected += n
            self._log.warning("influx_submit_after_close", points=n)
            return
        encode = self._encoder.encode
        lines: list[str] = []
        for sample in samples:
            try:
                line = encode(sample)
            except Exception as exc:  # a value no probe should produce: not the scheduler's problem
                self._encode_errors += 1
                if self._encode_errors == 1:
                    self._log.error(
                        "influx_encode_failed",
                        measurement=str(getattr(sample, "measurement", "?")),
                        error=_describe(exc),
                        action="dropping the sample; counted in points_dropped",
                    )
                continue
            if line is not None:
                lines.append(line)
        if not lines:
            return
        buffer = self._buffer
        dropped_before = buffer.dropped
        buffer.append(lines)
        if buffer.dropped != dropped_before and not self._buffer_full_logged:
            self._buffer_full_logged = True
            self._log.error(
                "influx_buffer_full",
                held_points=len(buffer),
                why="InfluxDB has not taken points for a while; the oldest are being dropped",
            )
        if self._first_at is None:
            self._first_at = time.monotonic()
            self._wake.set()
        elif buffer.waiting >= self._cfg.batch_size:
            self._wake.set()

    def last_write_age_s(self) -> float | None:
        """Seconds since InfluxDB last accepted a write (None before the first)."""
        return None if self._last_write_at is None else time.monotonic() - self._last_write_at

    def stats(self) -> dict[str, int | float]:
        """Return the sink's counters (fields of the ``netwatch`` measurement, component=sink).

        ``points_collected == points_written + points_rejected + points_dropped + buffer_points``.
        ``write_latency_ms`` is the duration of the last accepted write request.
        """
        enc = self._encoder.stats
        dropped = (
            enc.points_dropped
            + self._encode_errors
            + self._buffer.dropped
            + self._lost_at_close
            + self._extra_collected
        )
        return {
            "points_collected": enc.samples + self._extra_collected + self._buffer.recovered,
            "points_written": self._written,
            "points_dropped": dropped,
            "points_rejected": self._rejected,
            "buffer_points": len(self._buffer) - self._lost_at_close,
            "batches_written": self._batches,
            "batch_points_avg": self._written / self._batches if self._batches else 0.0,
            "write_latency_ms": self._latency_ms,
            "write_errors": self._errors,
        }

    # -- the writer task --------------------------------------------------------------------------

    async def _run(self) -> None:
        """Run the write loop; a bug in it is logged and the loop started again, not left dead."""
        while True:
            try:
                await self._write_loop()
                return
            except Exception as exc:
                self._log.error("influx_writer_crashed", error=_describe(exc), exc_info=exc)
                await asyncio.sleep(1.0)

    async def _write_loop(self) -> None:
        cfg = self._cfg
        buffer = self._buffer
        while True:
            if buffer.waiting == 0:
                self._first_at = None
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            first_at = self._first_at if self._first_at is not None else time.monotonic()
            self._first_at = first_at
            wait = self._wait_for(first_at)
            due_in = first_at + wait - time.monotonic()
            if not self._closing and buffer.waiting < cfg.batch_size and due_in > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due_in):
                        await self._wake.wait()
                continue
            # Full batches always; the rest too once it is due (or we are closing).
            while buffer.waiting:
                due = self._closing or time.monotonic() >= first_at + wait
                if buffer.waiting < cfg.batch_size and not due:
                    break
                batch = await buffer.take(cfg.batch_size)
                if batch is None:
                    # The buffer says points wait but hands none out: never spin on that.
                    await asyncio.sleep(0.5)
                    break
                await self._deliver(batch)
            # What is left (less than a batch, not yet due) arrived after first_at: keep that.
            self._first_at = None if buffer.waiting == 0 else first_at

    def _wait_for(self, first_at: float) -> float:
        """Return how long points that started arriving at ``first_at`` wait before a write.

        While points stream in, they wait ``flush_interval`` to form batches. After a quiet
        spell (start-up, sparse checks) the first points go out after a short settle, so the
        first data is in InfluxDB within a second of start rather than a flush interval later.
        """
        interval = self._cfg.flush_interval
        if self._last_write_at is not None and first_at - self._last_write_at < interval:
            return interval
        return min(interval, SETTLE_S)

    def _quarantine(self, lines: Sequence[str], status: int, error: str) -> str | None:
        """Keep a rejected batch in a file for a person to look at (InfluxDB kept the good lines).

        At most :data:`QUARANTINE_FILES` files are kept, newest last; nothing is ever resent.
        """
        if self._quarantine_dir is None:
            return None
        try:
            self._quarantine_dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{self._rejections:06d}.lp"
            path = self._quarantine_dir / name
            header = f"# HTTP {status}: {error}".replace("\n", " ")
            path.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
            old = sorted(self._quarantine_dir.glob("*.lp"))
            for stale in old[: max(0, len(old) - QUARANTINE_FILES)]:
                stale.unlink(missing_ok=True)
            return str(path)
        except OSError as exc:
            self._log.warning("influx_quarantine_failed", error=str(exc))
            return None

    async def _deliver(self, batch: Batch) -> None:
        """Write one batch until InfluxDB is done with it; give it back if we are cancelled."""
        try:
            written, rejected = await self._send(batch.lines)
        except BaseException:  # cancelled at close, or a bug: the points go back, first in line
            await self._buffer.requeue(batch)
            raise
        await self._buffer.ack(batch)
        self._written += written
        self._rejected += rejected
        self._batches += 1

    async def _send(self, lines: Sequence[str]) -> tuple[int, int]:
        """Write lines, retrying as the answer asks; return (written, rejected) points."""
        assert self._transport is not None
        body = await self._transport.prepare(lines)
        attempt = 0
        while True:
            started = time.monotonic()
            result = await self._transport.write(body)
            status = result.status
            if result.ok:
                self._latency_ms = (time.monotonic() - started) * 1000.0
                self._last_write_at = time.monotonic()
                self._recovered()
                if self._buffer.waiting == 0:
                    self._buffer_full_logged = False
                return len(lines), 0
            self._errors += 1
            if status == 413 and len(lines) > 1:
                half = len(lines) // 2
                self._log.warning("influx_batch_too_large", points=len(lines), action="splitting in two")
                w1, r1 = await self._send(lines[:half])
                w2, r2 = await self._send(lines[half:])
                return w1 + w2, r1 + r2
            if status in (400, 422) and _is_rejection(result):
                # The server got it and will never take it: retrying would loop forever.
                self._recovered()
                rejected = rejected_points(result.error, len(lines))
                saved = self._quarantine(lines, status, result.error)
                if self._rejections == 0:
                    self._log.error(
                        "influx_points_rejected",
                        status=status,
                        error=result.error[:1000],
                        points=rejected,
                        batch_points=len(lines),
                        quarantined_to=saved,
                        why="InfluxDB will never take these; later rejections are counted, not logged",
                    )
                self._rejections += 1
                return len(lines) - rejected, rejected
            kind = _failure_kind(status)
            self._failed(kind, result)
            delay = self._retry_delay(kind, attempt, result.retry_after)
            attempt += 1
            self._log.debug("influx_write_retry", reason=kind, status=status, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    def _retry_delay(self, kind: str, attempt: int, retry_after: float | None) -> float:
        cfg = self._cfg
        if kind in ("auth", "database_not_found", "refused"):
            # Someone has to fix the server side; knocking every second helps nobody.
            backoff = cfg.retry_max
        else:
            backoff = min(cfg.retry_max, cfg.retry_initial * 2.0 ** min(attempt, 30))
            if kind == "unreachable":
                # Nobody answered, so nobody is overloaded by a retry: look again every flush
                # interval, so that data flows within one flush interval of InfluxDB coming back.
                backoff = min(backoff, max(cfg.flush_interval, cfg.retry_initial))
        delay = backoff / 2 + random.uniform(0, backoff / 2)  # "equal jitter": spread, never ~0
        return max(delay, retry_after or 0.0)

    def _failed(self, kind: str, result: WriteResult) -> None:
        outage = self._outage
        if outage is not None:
            outage.attempts += 1
            if outage.kind == kind:
                return  # once per outage, not per retry
            outage.kind = kind  # a new kind of failure is news: log it
        else:
            self._outage = _Outage(kind, time.monotonic(), 1)
        event = {
            "reason": kind,
            "status": result.status,
            "error": result.error[:1000],
            "buffer_points": len(self._buffer),
            "action": "keeping the points and retrying",
        }
        if kind == "auth":
            self._log.error(
                "influx_write_failed",
                **event,
                hint="InfluxDB refused the credentials: check username_file/password_file or token_file "
                "and the user's WRITE privilege on the database",
            )
        elif kind == "database_not_found":
            hint = (
                f"create the database: influx -execute 'CREATE DATABASE \"{self._cfg.database}\"'"
                if self._cfg.api == "v1"
                else "create the bucket (and check org); InfluxDB before 1.8 has no /api/v2/write: use v1"
            )
            self._log.error("influx_write_failed", **event, hint=hint)
        elif kind == "refused":
            self._log.error(
                "influx_write_failed",
                **event,
                hint="the answer did not come from InfluxDB's line-protocol parser (a proxy, http:// to an "
                "https:// port, a wrong path?): check influxdb.url; the points stay in the spool",
            )
        else:
            self._log.warning("influx_write_failed", **event)

    def _recovered(self) -> None:
        outage = self._outage
        if outage is None:
            return
        self._outage = None
        self._log.info(
            "influx_recovered",
            outage_s=round(time.monotonic() - outage.since, 3),
            failed_attempts=outage.attempts,
            buffer_points=len(self._buffer),
        )


#: Words of a line-protocol refusal: InfluxDB read the lines and will never take them.
_REJECTION = re.compile(r"partial write|unable to parse|field type conflict|beyond retention|line protocol|invalid")


def _is_rejection(result: WriteResult) -> bool:
    """Tell a refusal of the lines themselves (drop them) from a 400 of something else: a proxy,
    an HTTP request sent to an HTTPS port, a wrong path. Those keep the points: dropping them
    would wipe the spool over a config mistake."""
    return result.from_influx or bool(_REJECTION.search(result.error))


def _failure_kind(status: int | None) -> str:
    if status is None:
        return "unreachable"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "database_not_found"
    if status == 429:
        return "throttled"
    if status == 408:
        return "timeout"
    if 400 <= status < 500:
        return "refused"
    return "server_error"


def url_for_logs(url: HttpUrl) -> str:
    """Return the URL without any user:password part."""
    host = url.host or ""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{host}{port}{url.path or ''}".rstrip("/")


__all__ = [
    "STATS_KEYS",
    "InfluxConfig",
    "InfluxSink",
    "Sink",
    "SpoolOnlySink",
    "WriteResult",
    "open_sink",
    "parse_retry_after",
    "rejected_points",
    "url_for_logs",
]
