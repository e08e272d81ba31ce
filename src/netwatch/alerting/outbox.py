"""The durable outbox: notifications are committed to SQLite before they count as sent.

The engine (through routing) calls :meth:`Outbox.enqueue`; the row is on disk when it returns.
One delivery task per receiver then sends that receiver's rows oldest first, one at a time, so a
resolve never overtakes its firing:

* **delivered** (2xx): the row is deleted. A crash after the HTTP success and before the delete
  sends the row again after the restart with the same idempotency key (:attr:`Notification.key`:
  the Standard Webhooks ``webhook-id``; PagerDuty's ``dedup_key`` and Alertmanager's labels are
  the incident id), so receivers deduplicate it.
* **retry** (5xx, 429, connection errors, timeouts): exponential backoff with jitter, or the
  receiver's ``Retry-After`` when it gives one; after ``max_age`` the row is dropped with an
  error log. The receiver's queue waits behind its head (order matters more than latency).
* **reject** (any other 4xx): dropped at once, logged loudly, counted; ``on_drop`` lets the
  daemon raise a self-alert.

Every attempt first takes a token from the receiver's bucket (:class:`RateLimit`), so a storm or
a backlog after an outage never trips Slack's or Teams' limits. The outbox also owns the
Alertmanager re-send: a receiver whose sender has a ``resend_interval`` gets every still-firing
incident again (event ``repeat``) that often, from a table that survives restarts, until a
resolve for it is enqueued or :meth:`Outbox.keep_firing` forgets it.

This module also holds the contract between the outbox and a receiver kind (:class:`Sender`,
:class:`SendResult`, :class:`ReceiverBase`), as ``probes/base.py`` does for probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import aiohttp
import structlog
from pydantic import Field

from netwatch.alerting.model import Event, Impact, Incident, Notification
from netwatch.configbase import CaFile, Duration, Strict

log = structlog.get_logger(__name__)

# -- the contract between the outbox and a receiver kind -------------------------------------------

Verdict = Literal["delivered", "retry", "reject"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one delivery attempt came to. Receivers return it; they never raise for a failure.

    ``status`` is the HTTP status as the outbox should read it (Teams' throttling reported inside
    a 200 body is 429 here); ``detail`` is a short reason for the log (Slack's ``channel_not_found``,
    an exception's class name), never a secret.
    """

    verdict: Verdict
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = ""

    @classmethod
    def delivered(cls, status: int | None = None) -> SendResult:
        return cls("delivered", status)

    @classmethod
    def retry(cls, detail: str, *, status: int | None = None, retry_after_s: float | None = None) -> SendResult:
        return cls("retry", status, retry_after_s, detail)

    @classmethod
    def reject(cls, detail: str, *, status: int | None = None) -> SendResult:
        return cls("reject", status, None, detail)


class RateLimit(Strict):
    """A token bucket: ``burst`` messages at once, then one every ``every``."""

    burst: int = Field(default=1, ge=1, le=1000, description="messages that may go at once")
    every: Duration = Field(gt=0, description="one more message may go this often (e.g. 1.1s)")


class ReceiverBase(Strict):
    """Settings every receiver kind shares. Each kind adds ``kind: Literal[...]`` and its own keys."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="what routes call this receiver")
    timeout: Duration = Field(default=10.0, gt=0, description="one delivery attempt")
    max_age: Duration = Field(
        default=12 * 3600.0, gt=0, description="a notification not delivered by then is dropped (logged as an error)"
    )
    rate_limit: RateLimit | None = Field(default=None, description="token bucket; null for none")
    tls: Literal["verify", "insecure"] = "verify"
    ca_file: CaFile | None = Field(default=None, description="CA bundle to verify the server with")


class Sender(Protocol):
    """One configured receiver: renders a notification into its protocol and sends it once.

    ``send`` makes exactly one attempt; the outbox owns retries, the timeout (it cancels ``send``
    after ``config.timeout``), the rate limit and ordering.
    """

    @property
    def config(self) -> ReceiverBase: ...

    @property
    def resend_interval(self) -> float | None:
        """Seconds between re-sends of a still-firing incident (Alertmanager), or None."""
        ...

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult: ...

    async def aclose(self) -> None:
        """Release connections the sender holds (an MQTT session); the outbox calls it once."""
        ...


def resolves(notification: Notification) -> bool:
    """Return whether a notification ends its incident (a resolve, or flapping that settled clear)."""
    event = notification.event
    return event == "resolved" or (event == "flapping_stopped" and notification.incident.resolved_ns is not None)


# -- rate limit -------------------------------------------------------------------------------------


class TokenBucket:
    """``burst`` tokens, one more every ``every`` seconds; :meth:`acquire` waits for one."""

    def __init__(self, *, burst: int, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = float(burst)
        self._every = every
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) / self._every)
        self._last = now

    def wait_s(self) -> float:
        """Return how long until a token is available (0 if one is now)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) * self._every

    async def acquire(self) -> None:
        while (wait := self.wait_s()) > 0:  # noqa: ASYNC110 - waiting on the clock, not on an event
            await asyncio.sleep(wait)
        self._tokens -= 1.0


# -- (de)serialising notifications ------------------------------------------------------------------


def encode(notification: Notification) -> str:
    """Return a notification as the JSON the outbox stores."""
    inc = notification.incident
    return json.dumps(
        {
            "receiver": notification.receiver,
            "event": notification.event,
            "created_ns": notification.created_ns,
            "incident": {
                "id": inc.id,
                "rule": inc.rule,
                "entity": inc.entity,
                "severity": inc.severity,
                "labels": dict(inc.labels),
                "summary": inc.summary,
                "started_ns": inc.started_ns,
                "value": inc.value,
                "resolved_ns": inc.resolved_ns,
                "impact": {
                    "devices": list(inc.impact.devices),
                    "by_site": dict(inc.impact.by_site),
                    "by_kind": dict(inc.impact.by_kind),
                },
            },
        },
        separators=(",", ":"),
    )


def decode(text: str) -> Notification:
    """Return the notification :func:`encode` stored."""
    doc = json.loads(text)
    inc = doc["incident"]
    impact = inc["impact"]
    incident = Incident(
        id=inc["id"],
        rule=inc["rule"],
        entity=inc["entity"],
        severity=inc["severity"],
        labels=dict(inc["labels"]),
        summary=inc["summary"],
        started_ns=int(inc["started_ns"]),
        value=inc["value"],
        resolved_ns=inc["resolved_ns"],
        impact=Impact(
            devices=tuple(impact["devices"]), by_site=dict(impact["by_site"]), by_kind=dict(impact["by_kind"])
        ),
    )
    event: Event = doc["event"]
    return Notification(receiver=doc["receiver"], event=event, incident=incident, created_ns=int(doc["created_ns"]))


# -- the outbox -------------------------------------------------------------------------------------

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq         INTEGER PRIMARY KEY,
        receiver    TEXT NOT NULL,
        key         TEXT NOT NULL,
        incident    TEXT NOT NULL,
        body        TEXT NOT NULL,
        enqueued_ns INTEGER NOT NULL,
        UNIQUE (receiver, key)
    )
    """,
    "CREATE INDEX IF NOT EXISTS outbox_receiver ON outbox (receiver, seq)",
    # Incidents a re-sending receiver (Alertmanager) still shows as firing; survives restarts.
    """
    CREATE TABLE IF NOT EXISTS firing (
        receiver     TEXT NOT NULL,
        incident     TEXT NOT NULL,
        body         TEXT NOT NULL,
        last_sent_ns INTEGER NOT NULL,
        PRIMARY KEY (receiver, incident)
    )
    """,
)

#: The keys of :meth:`Outbox.stats`: integer fields of the ``netwatch`` measurement (component=outbox).
STATS_KEYS = (
    "outbox_depth",
    "outbox_queued",
    "outbox_delivered",
    "outbox_retried",
    "outbox_dropped",
    "outbox_rejected",
)

#: Called with the dropped notification and why ("rejected" or "expired"): a self-alert hook.
DropHook = Callable[[Notification, Literal["rejected", "expired"], SendResult | None], None]


@dataclass
class ReceiverCounters:
    """Per-receiver counts since start; ``dropped_rejected`` rising is a self-alert condition."""

    queued: int = 0
    delivered: int = 0
    retried: int = 0
    dropped_rejected: int = 0
    dropped_expired: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_rejected + self.dropped_expired


@dataclass
class _Receiver:
    sender: Sender
    bucket: TokenBucket | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Outbox:
    """Durable, ordered, rate-limited delivery of notifications to receivers.

    Use as ``async with Outbox(path, session=session, senders=senders) as outbox:``; delivery
    runs while the block does. :meth:`enqueue` may be called before the block starts: rows wait
    on disk. One ``aiohttp.ClientSession`` (the daemon's) is shared by every sender.
    """

    def __init__(
        self,
        path: Path,
        *,
        session: aiohttp.ClientSession,
        senders: Iterable[Sender] = (),
        on_drop: DropHook | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        self._session = session
        self._on_drop = on_drop
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._clock_ns = clock_ns
        self._receivers: dict[str, _Receiver] = {}
        self._counters: dict[str, ReceiverCounters] = {}
        self._started = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(path)
        self.recovered = self.depth()
        for sender in senders:
            self._add(sender)

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Outbox:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start one delivery task per receiver (and a re-send task where the kind re-sends)."""
        if self._started:
            return
        self._started = True
        if self.recovered:
            log.info("outbox_recovered", path=str(self.path), notifications=self.recovered)
        self._drop_orphans()
        for name in self._receivers:
            self._start_tasks(name)

    async def aclose(self) -> None:
        """Stop delivery and close the senders. Undelivered rows stay on disk for the next start."""
        for name in list(self._receivers):
            await self._remove(name)
        self._started = False
        self._db.close()

    async def set_senders(self, senders: Iterable[Sender]) -> None:
        """Apply a reloaded config: receivers that changed or went away stop, new ones start.

        A receiver whose config is unchanged keeps running (and its queue and bucket); the new,
        unused sender built for it is closed. Rows for receivers no longer configured are dropped
        and logged.
        """
        new = {s.config.name: s for s in senders}
        for name in list(self._receivers):
            if name not in new or new[name].config != self._receivers[name].sender.config:
                await self._remove(name)
        for name, sender in new.items():
            if name in self._receivers:
                if sender is not self._receivers[name].sender:
                    await sender.aclose()
                continue
            self._add(sender)
            if self._started:
                self._start_tasks(name)
        if self._started:
            self._drop_orphans()

    # -- what the engine and the daemon call ----------------------------------------------------

    def enqueue(self, notification: Notification) -> bool:
        """Commit a notification for delivery; return False if it was already queued (same key).

        The row is on disk when this returns. A notification for a receiver that is not
        configured is logged as an error and not queued (routing and config disagree).
        """
        name = notification.receiver
        receiver = self._receivers.get(name)
        if receiver is None:
            log.error("outbox_unknown_receiver", receiver=name, incident=notification.incident.id)
            return False
        now = self._clock_ns()
        body = encode(notification)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (receiver, key, incident, body, enqueued_ns) VALUES (?, ?, ?, ?, ?)",
                (name, notification.key, notification.incident.id, body, now),
            )
            added = cur.rowcount == 1
            if added and receiver.sender.resend_interval is not None:
                if resolves(notification):
                    self._db.execute(
                        "DELETE FROM firing WHERE receiver = ? AND incident = ?", (name, notification.incident.id)
                    )
                else:
                    self._db.execute(
                        "INSERT INTO firing (receiver, incident, body, last_sent_ns) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (receiver, incident) DO UPDATE SET body = excluded.body",
                        (name, notification.incident.id, body, now),
                    )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if added:
            self._counter(name).queued += 1
            receiver.wake.set()
        return added

    def depth(self, receiver: str | None = None) -> int:
        """Return how many notifications wait (for one receiver, or all): the outbox depth field."""
        if receiver is None:
            row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        else:
            row = self._db.execute("SELECT count(*) FROM outbox WHERE receiver = ?", (receiver,)).fetchone()
        return int(row[0])

    def counters(self) -> dict[str, ReceiverCounters]:
        """Return a copy of the per-receiver counters (queued, delivered, retried, dropped)."""
        return {name: ReceiverCounters(**vars(c)) for name, c in self._counters.items()}

    def stats(self) -> dict[str, int]:
        """Return the ``netwatch`` measurement's fields for ``component=outbox`` (:data:`STATS_KEYS`).

        Counters are totals over all receivers since start; ``outbox_rejected`` (4xx drops)
        rising is the self-alert condition, ``outbox_depth`` what waits now.
        """
        total = ReceiverCounters()
        for c in self._counters.values():
            total.queued += c.queued
            total.delivered += c.delivered
            total.retried += c.retried
            total.dropped_rejected += c.dropped_rejected
            total.dropped_expired += c.dropped_expired
        return {
            "outbox_depth": self.depth(),
            "outbox_queued": total.queued,
            "outbox_delivered": total.delivered,
            "outbox_retried": total.retried,
            "outbox_dropped": total.dropped,
            "outbox_rejected": total.dropped_rejected,
        }

    def pending(self, receiver: str) -> list[Notification]:
        """Return a receiver's queued notifications, oldest first."""
        rows = self._db.execute("SELECT body FROM outbox WHERE receiver = ? ORDER BY seq", (receiver,)).fetchall()
        return [decode(r[0]) for r in rows]

    def firing(self, receiver: str) -> list[Incident]:
        """Return the incidents a re-sending receiver is being kept informed of."""
        rows = self._db.execute("SELECT body FROM firing WHERE receiver = ? ORDER BY incident", (receiver,)).fetchall()
        return [decode(r[0]).incident for r in rows]

    def keep_firing(self, incident_ids: Collection[str]) -> int:
        """Stop re-sending every incident not in ``incident_ids``; return how many were forgotten.

        The daemon calls this once the engine has loaded its state, with the ids of the incidents
        still firing, so an incident whose resolve was never enqueued (state lost or reset) is not
        re-sent forever; Alertmanager then resolves it when its ``endsAt`` passes.
        """
        keep = set(incident_ids)
        rows = self._db.execute("SELECT receiver, incident FROM firing").fetchall()
        gone = [(r, i) for r, i in rows if i not in keep]
        if gone:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM firing WHERE receiver = ? AND incident = ?", gone)
            self._db.execute("COMMIT")
            log.info("outbox_firing_forgotten", incidents=len(gone))
        return len(gone)

    async def wait_idle(self, within_s: float) -> bool:
        """Wait until nothing is queued (tests, and a graceful stop); return whether it got there."""
        deadline = asyncio.get_running_loop().time() + within_s
        while self.depth():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # -- receivers ------------------------------------------------------------------------------

    def _counter(self, name: str) -> ReceiverCounters:
        return self._counters.setdefault(name, ReceiverCounters())

    def _add(self, sender: Sender) -> None:
        cfg = sender.config
        if cfg.name in self._receivers:
            raise ValueError(f"two receivers are named {cfg.name!r}")
        limit = cfg.rate_limit
        bucket = TokenBucket(burst=limit.burst, every=limit.every) if limit is not None else None
        self._receivers[cfg.name] = _Receiver(sender=sender, bucket=bucket)
        self._counter(cfg.name)

    def _start_tasks(self, name: str) -> None:
        receiver = self._receivers[name]
        receiver.tasks.append(asyncio.create_task(self._deliver(name, receiver), name=f"outbox/{name}"))
        if receiver.sender.resend_interval is not None:
            receiver.tasks.append(asyncio.create_task(self._resend(name, receiver), name=f"outbox/{name}/resend"))

    async def _remove(self, name: str) -> None:
        receiver = self._receivers.pop(name)
        for task in receiver.tasks:
            task.cancel()
        for task in receiver.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await receiver.sender.aclose()
        except Exception as exc:
            log.warning("receiver_close_failed", receiver=name, error=type(exc).__name__)

    def _drop_orphans(self) -> None:
        names = list(self._receivers)
        marks = ",".join("?" * len(names))
        rows = self._db.execute(
            f"SELECT receiver, count(*) FROM outbox WHERE receiver NOT IN ({marks}) GROUP BY receiver", names
        ).fetchall()
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(f"DELETE FROM outbox WHERE receiver NOT IN ({marks})", names)
        self._db.execute(f"DELETE FROM firing WHERE receiver NOT IN ({marks})", names)
        self._db.execute("COMMIT")
        for receiver, count in rows:
            self._counter(receiver).dropped_expired += int(count)
            log.error("outbox_receiver_gone", receiver=receiver, dropped=int(count))

    # -- delivery -------------------------------------------------------------------------------

    def _head(self, name: str) -> tuple[int, str, int] | None:
        row = self._db.execute(
            "SELECT seq, body, enqueued_ns FROM outbox WHERE receiver = ? ORDER BY seq LIMIT 1", (name,)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    def _delete(self, seq: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_initial * 2.0 ** min(failures - 1, 30))
        # Equal jitter: never less than half the step, so a down receiver is not hammered.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _attempt(self, receiver: _Receiver, notification: Notification) -> SendResult:
        sender = receiver.sender
        try:
            async with asyncio.timeout(sender.config.timeout):
                return await sender.send(notification, self._session)
        except TimeoutError:
            return SendResult.retry("timeout")
        except Exception as exc:
            # A sender bug, not a receiver failure: keep the row and retry until max_age.
            log.exception("receiver_send_crashed", receiver=sender.config.name, error=type(exc).__name__)
            return SendResult.retry(f"crash: {type(exc).__name__}")

    async def _deliver(self, name: str, receiver: _Receiver) -> None:
        cfg = receiver.sender.config
        counters = self._counter(name)
        failures = 0
        while True:
            head = self._head(name)
            if head is None:
                receiver.wake.clear()
                if self._head(name) is None:
                    await receiver.wake.wait()
                continue
            seq, body, enqueued_ns = head
            notification = decode(body)
            bound = {
                "receiver": name,
                "kind": _kind(cfg),
                "incident": notification.incident.id,
                "incident_event": notification.event,
                "key": notification.key,
            }
            age_s = (self._clock_ns() - enqueued_ns) / 1e9
            if age_s > cfg.max_age:
                self._delete(seq)
                counters.dropped_expired += 1
                log.error("notification_expired", age_s=round(age_s, 1), max_age_s=cfg.max_age, **bound)
                self._dropped(notification, "expired", None)
                failures = 0
                continue
            if receiver.bucket is not None:
                await receiver.bucket.acquire()
            result = await self._attempt(receiver, notification)
            if result.verdict == "delivered":
                self._delete(seq)
                self._sent(receiver, notification)
                counters.delivered += 1
                if failures:
                    log.info("receiver_recovered", failed_attempts=failures, **bound)
                else:
                    log.debug("notification_delivered", status=result.status, **bound)
                failures = 0
            elif result.verdict == "reject":
                self._delete(seq)
                counters.dropped_rejected += 1
                log.error("notification_rejected", status=result.status, detail=result.detail, **bound)
                self._dropped(notification, "rejected", result)
                failures = 0
            else:
                failures += 1
                counters.retried += 1
                wait = result.retry_after_s if result.retry_after_s is not None else self._backoff(failures)
                wait = max(0.0, min(wait, cfg.max_age - age_s + 0.01))
                event = "receiver_failing" if failures == 1 else "receiver_still_failing"
                (log.warning if failures == 1 else log.debug)(
                    event,
                    status=result.status,
                    detail=result.detail,
                    retry_in_s=round(wait, 2),
                    attempt=failures,
                    **bound,
                )
                await asyncio.sleep(wait)

    def _dropped(self, notification: Notification, why: Literal["rejected", "expired"], res: SendResult | None) -> None:
        if self._on_drop is None:
            return
        try:
            self._on_drop(notification, why, res)
        except Exception:
            log.exception("outbox_drop_hook_failed", receiver=notification.receiver)

    def _sent(self, receiver: _Receiver, notification: Notification) -> None:
        if receiver.sender.resend_interval is None or resolves(notification):
            return
        self._db.execute(
            "UPDATE firing SET last_sent_ns = ? WHERE receiver = ? AND incident = ?",
            (self._clock_ns(), receiver.sender.config.name, notification.incident.id),
        )

    async def _resend(self, name: str, receiver: _Receiver) -> None:
        interval = receiver.sender.resend_interval
        assert interval is not None
        tick = min(max(interval / 4, 0.05), 15.0)
        while True:
            now = self._clock_ns()
            due = self._db.execute(
                "SELECT body FROM firing f WHERE receiver = ? AND last_sent_ns <= ?"
                " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.receiver = f.receiver AND o.incident = f.incident)",
                (name, now - int(interval * 1e9)),
            ).fetchall()
            for (body,) in due:
                incident = decode(body).incident
                self.enqueue(Notification(receiver=name, event="repeat", incident=incident, created_ns=now))
            await asyncio.sleep(tick)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: notifications are rare, and one must survive a power cut once enqueue returned.
    db.execute("PRAGMA synchronous=FULL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db


def _open(path: Path) -> sqlite3.Connection:
    """Open the outbox; a file SQLite cannot read is moved aside (logged) and a fresh one starts."""
    try:
        db = _connect(path)
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check == "ok":
            return db
        db.close()
        problem = str(check)
    except sqlite3.DatabaseError as exc:
        problem = str(exc)
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(aside) + suffix))
    log.error("outbox_corrupt", path=str(path), moved_to=str(aside), problem=problem)
    return _connect(path)


def _kind(cfg: ReceiverBase) -> str:
    kind: Any = getattr(cfg, "kind", "?")
    return str(kind)
