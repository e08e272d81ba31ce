"""The outbox: durable, ordered, exactly-once-per-key delivery with retries, drops and rate limits.

Receivers are loopback servers (tests/servers/saas.py) or a scripted :class:`FakeSender` (a fake
of our own contract). Crash tests run the outbox in a child process and SIGKILL it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from structlog.testing import capture_logs

from netwatch.alerting.model import Event, Incident, Notification, incident_id
from netwatch.alerting.outbox import Outbox, RateLimit, ReceiverBase, SendResult, TokenBucket, decode, encode
from netwatch.alerting.receivers import build_sender, parse_receiver
from netwatch.alerting.receivers.webhook import WebhookSender
from tests.servers.saas import PagerDutyServer, SlackServer, TeamsServer, WebhookServer

WHSEC = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
T0 = 1_764_662_400_000_000_000
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}
DELIVERED = SendResult.delivered(200)


def incident(n: int = 0, *, resolved: bool = False) -> Incident:
    entity = f"dev-{n}"
    return Incident(
        id=incident_id("device_down", entity, T0 + n),
        rule="device_down",
        entity=entity,
        severity="critical",
        labels={"site": "city-hall"},
        summary=f"{entity} down",
        started_ns=T0 + n,
        resolved_ns=T0 + n + 10**10 if resolved else None,
    )


def note(receiver: str, n: int = 0, event: Event = "firing", *, created_ns: int | None = None) -> Notification:
    return Notification(
        receiver=receiver,
        event=event,
        incident=incident(n, resolved=event == "resolved"),
        created_ns=created_ns if created_ns is not None else T0 + 1000 * n + (1 if event == "resolved" else 0),
    )


class FakeConfig(ReceiverBase):
    kind: Literal["fake"] = "fake"


class FakeSender:
    """A receiver whose answers the test scripts; records what it was asked to send."""

    def __init__(
        self,
        name: str = "fake",
        *,
        script: list[SendResult] | None = None,
        default: SendResult = DELIVERED,
        resend_interval: float | None = None,
        delay: float = 0.0,
        raises: Exception | None = None,
        **cfg: Any,
    ) -> None:
        self._cfg = FakeConfig(name=name, **cfg)
        self.script = list(script or [])
        self.default = default
        self.resend_interval = resend_interval
        self.delay = delay
        self.raises = raises
        self.sent: list[Notification] = []
        self.closed = False

    @property
    def config(self) -> FakeConfig:
        return self._cfg

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> SendResult:
        self.sent.append(notification)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raises is not None:
            raise self.raises
        return self.script.pop(0) if self.script else self.default

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def webhook_sender(tmp_path: Path, url: str, name: str = "noc", **extra: Any) -> WebhookSender:
    key = tmp_path / f"{name}.key"
    key.write_text(WHSEC)
    sender = build_sender(
        parse_receiver({"kind": "webhook", "name": name, "url": url, "secret_file": str(key), **extra})
    )
    assert isinstance(sender, WebhookSender)
    return sender


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- durability and order ---------------------------------------------------------------------------


async def test_enqueue_commits_before_returning(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """When enqueue returns, another connection sees the row; a second enqueue of the same key is a no-op."""
    outbox = Outbox(tmp_path / "outbox.db", session=session, senders=[FakeSender()])
    n = note("fake")
    assert outbox.enqueue(n) is True
    with sqlite3.connect(tmp_path / "outbox.db") as other:
        ((key, body),) = other.execute("SELECT key, body FROM outbox").fetchall()
    assert key == n.key
    assert decode(body) == n
    assert outbox.enqueue(n) is False
    assert outbox.depth() == 1
    assert outbox.counters()["fake"].queued == 1
    await outbox.aclose()


async def test_receiver_down_then_back_gets_each_notification_once_in_order(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Connection refused for a while: nothing is lost, nothing doubled, firing stays before its resolve."""
    server = WebhookServer()
    await server.start()
    url = server.url
    await server.stop()
    notes = [note("noc", 0), note("noc", 1), note("noc", 0, "resolved"), note("noc", 2), note("noc", 1, "resolved")]
    async with Outbox(tmp_path / "o.db", session=session, senders=[webhook_sender(tmp_path, url)], **FAST) as outbox:
        for n in notes:
            outbox.enqueue(n)
        await asyncio.sleep(0.8)  # several refused attempts
        assert outbox.depth() == 5
        assert outbox.counters()["noc"].retried >= 2
        await server.start()
        try:
            assert await outbox.wait_idle(5.0)
        finally:
            await server.stop()
        counters = outbox.counters()["noc"]
    assert [r.headers["webhook-id"] for r in server.requests] == [n.key for n in notes]
    assert server.duplicates == 0
    assert [b["type"] for b in server.bodies()] == [f"incident.{n.event}" for n in notes]
    assert (counters.queued, counters.delivered, counters.dropped) == (5, 5, 0)


async def test_5xx_is_retried_and_retry_after_is_honoured(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A 503 is retried with backoff; a 429's Retry-After sets the wait before the next attempt."""
    async with WebhookServer() as server:
        server.fail_next, server.fail_status = 1, 503
        async with Outbox(
            tmp_path / "o.db", session=session, senders=[webhook_sender(tmp_path, server.url)], **FAST
        ) as outbox:
            outbox.enqueue(note("noc", 0))
            assert await outbox.wait_idle(5.0)
            server.fail_next, server.fail_status, server.fail_headers = 1, 429, {"Retry-After": "1"}
            outbox.enqueue(note("noc", 1))
            assert await outbox.wait_idle(5.0)
    statuses = [r.status for r in server.requests]
    assert statuses == [503, 200, 429, 200]
    assert server.requests[3].at - server.requests[2].at >= 0.95
    assert server.requests[1].headers["webhook-id"] == server.requests[0].headers["webhook-id"]


async def test_4xx_is_dropped_counted_and_logged_once(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A rejected notification is dropped (not retried), logged as an error once, counted, reported to on_drop."""
    dropped: list[tuple[str, str]] = []
    sender = FakeSender(script=[SendResult.reject("channel_not_found", status=404)])
    with capture_logs() as logs:
        async with Outbox(
            tmp_path / "o.db",
            session=session,
            senders=[sender],
            on_drop=lambda n, why, res: dropped.append((n.key, why)),
        ) as outbox:
            outbox.enqueue(note("fake", 0))
            outbox.enqueue(note("fake", 1))
            assert await outbox.wait_idle(2.0)
            counters = outbox.counters()["fake"]
            stats = outbox.stats()
    assert stats == {
        "outbox_depth": 0,
        "outbox_queued": 2,
        "outbox_delivered": 1,
        "outbox_retried": 0,
        "outbox_dropped": 1,
        "outbox_rejected": 1,
    }
    assert [n.incident.entity for n in sender.sent] == ["dev-0", "dev-1"]
    assert (counters.dropped_rejected, counters.delivered, counters.retried) == (1, 1, 0)
    assert dropped == [(note("fake", 0).key, "rejected")]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["event"] == "notification_rejected"
    assert errors[0]["detail"] == "channel_not_found"
    assert errors[0]["status"] == 404


async def test_past_max_age_a_notification_is_dropped_loudly(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A receiver that never recovers: the notification is retried until max_age, then dropped as expired."""
    sender = FakeSender(default=SendResult.retry("HTTP 503", status=503), max_age=0.4)
    with capture_logs() as logs:
        async with Outbox(tmp_path / "o.db", session=session, senders=[sender], **FAST) as outbox:
            outbox.enqueue(note("fake"))
            assert await outbox.wait_idle(3.0)
            counters = outbox.counters()["fake"]
    assert counters.dropped_expired == 1
    assert counters.retried >= 2
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["notification_expired"]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["receiver_failing"]  # once, not per attempt


async def test_sender_crash_and_timeout_are_retries_not_failures_of_the_outbox(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """An exception in a sender (a bug) or a slow receiver is retried; the delivery task survives."""
    crashing = FakeSender("crash", raises=RuntimeError("bug"), max_age=0.3)
    slow = FakeSender("slow", delay=5.0, timeout=0.1, max_age=0.5)
    with capture_logs() as logs:
        async with Outbox(tmp_path / "o.db", session=session, senders=[crashing, slow], **FAST) as outbox:
            outbox.enqueue(note("crash"))
            outbox.enqueue(note("slow"))
            assert await outbox.wait_idle(3.0)
            counters = outbox.counters()
    assert counters["crash"].dropped_expired == 1
    assert counters["slow"].dropped_expired == 1
    assert any(e["event"] == "receiver_send_crashed" for e in logs)
    assert any(e.get("detail") == "timeout" for e in logs)


async def test_close_during_a_send_keeps_the_row(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Stopping mid-send cancels promptly (cancellation passes) and the row waits for the next start."""
    hanging = FakeSender(delay=60.0, timeout=120.0)
    outbox = Outbox(tmp_path / "o.db", session=session, senders=[hanging])
    outbox.start()
    outbox.enqueue(note("fake"))
    await eventually(lambda: bool(hanging.sent))
    started = time.monotonic()
    await outbox.aclose()
    assert time.monotonic() - started < 1.0
    assert hanging.closed
    again = FakeSender()
    async with Outbox(tmp_path / "o.db", session=session, senders=[again]) as outbox2:
        assert outbox2.recovered == 1
        assert await outbox2.wait_idle(2.0)
    assert [n.key for n in again.sent] == [note("fake").key]


async def test_unknown_receiver_and_removed_receiver(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Routing to an unknown receiver is an error log, not a crash; a receiver dropped on reload drops its rows."""
    a, b = FakeSender("a", default=SendResult.retry("down")), FakeSender("b")
    with capture_logs() as logs:
        async with Outbox(tmp_path / "o.db", session=session, senders=[a, b], **FAST) as outbox:
            assert outbox.enqueue(note("nobody")) is False
            outbox.enqueue(note("a"))
            await eventually(lambda: bool(a.sent))
            c = FakeSender("c")
            await outbox.set_senders([FakeSender("b"), c])
            assert a.closed
            assert outbox.depth() == 0
            outbox.enqueue(note("c"))
            assert await outbox.wait_idle(2.0)
            assert outbox.enqueue(note("a", 5)) is False
    assert [n.receiver for n in c.sent] == ["c"]
    events = [e["event"] for e in logs if e["log_level"] == "error"]
    assert events == ["outbox_unknown_receiver", "outbox_receiver_gone", "outbox_unknown_receiver"]


# -- crashes ----------------------------------------------------------------------------------------

CHILD = """
import asyncio, json, sys
from pathlib import Path
import aiohttp
from netwatch.alerting.outbox import Outbox, decode
from netwatch.alerting.receivers import build_sender, parse_receiver

args = json.loads(sys.argv[1])

async def main():
    async with aiohttp.ClientSession() as session:
        sender = build_sender(parse_receiver(args["receiver"]))
        outbox = Outbox(Path(args["path"]), session=session, senders=[sender], backoff_initial_s=0.05)
        outbox.enqueue(decode(args["notification"]))
        print("enqueued", flush=True)
        if args["deliver"]:
            outbox.start()
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def run_child_until(args: dict[str, Any], ready: Callable[[], bool] | None = None) -> None:
    """Run an outbox in a child process, wait for it to enqueue (and for ``ready``), then SIGKILL it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, json.dumps(args), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20.0)
        assert line.strip() == b"enqueued"
        if ready is not None:
            await eventually(ready, within=10.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL


async def test_sigkill_between_enqueue_and_delivery(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A process killed right after enqueue: the next start delivers it, with the same webhook-id."""
    key_file = tmp_path / "k"
    key_file.write_text(WHSEC)
    n = note("noc")
    async with WebhookServer() as server:
        receiver = {"kind": "webhook", "name": "noc", "url": server.url, "secret_file": str(key_file)}
        await run_child_until(
            {"path": str(tmp_path / "o.db"), "receiver": receiver, "notification": encode(n), "deliver": False}
        )
        assert server.requests == []
        async with Outbox(tmp_path / "o.db", session=session, senders=[build_sender(parse_receiver(receiver))]) as box:
            assert box.recovered == 1
            assert await box.wait_idle(5.0)
    assert [r.headers["webhook-id"] for r in server.requests] == [n.key]


async def test_sigkill_after_the_receiver_acted_resends_the_same_key(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Killed after the receiver processed it but before the delete: re-sent with the same webhook-id, deduplicated."""
    key_file = tmp_path / "k"
    key_file.write_text(WHSEC)
    n = note("noc")
    async with WebhookServer() as server:
        server.hold = asyncio.Event()
        receiver = {"kind": "webhook", "name": "noc", "url": server.url, "secret_file": str(key_file)}
        args = {"path": str(tmp_path / "o.db"), "receiver": receiver, "notification": encode(n), "deliver": True}
        await run_child_until(args, ready=lambda: len(server.processed) == 1)
        server.hold.set()
        async with Outbox(tmp_path / "o.db", session=session, senders=[build_sender(parse_receiver(receiver))]) as box:
            assert await box.wait_idle(5.0)
    assert [r.headers["webhook-id"] for r in server.requests] == [n.key, n.key]
    assert len(server.processed) == 1
    assert server.duplicates == 1


async def test_sigkill_mid_page_opens_no_second_pagerduty_incident(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """A trigger PagerDuty accepted just before netwatch died is re-sent with the same dedup_key: one incident."""
    async with PagerDutyServer() as server:
        key = tmp_path / "rk"
        key.write_text(server.add_routing_key())
        receiver = {"kind": "pagerduty", "name": "oncall", "url": server.url, "routing_key_file": str(key)}
        server.hold = asyncio.Event()
        args = {
            "path": str(tmp_path / "o.db"),
            "receiver": receiver,
            "notification": encode(note("oncall")),
            "deliver": True,
        }
        await run_child_until(args, ready=lambda: len(server.events) == 1)
        server.hold.set()
        async with Outbox(tmp_path / "o.db", session=session, senders=[build_sender(parse_receiver(receiver))]) as box:
            box.enqueue(note("oncall", 0, "resolved"))
            assert await box.wait_idle(5.0)
    assert [e["event_action"] for e in server.events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in server.events} == {note("oncall").incident.id}
    assert server.incidents_opened == 1


# -- rate limits ------------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    now = [100.0]
    bucket = TokenBucket(burst=2, every=0.5, clock=lambda: now[0])
    assert bucket.wait_s() == 0.0
    bucket._tokens -= 2
    assert bucket.wait_s() == pytest.approx(0.5)
    now[0] += 0.25
    assert bucket.wait_s() == pytest.approx(0.25)
    now[0] += 10
    assert bucket.wait_s() == 0.0
    assert bucket._tokens == 2.0  # never more than the burst


async def test_slack_rate_limit_is_never_tripped(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A burst of notifications to a Slack webhook goes out one per 1.1 s: Slack never answers 429."""
    async with SlackServer() as server:
        url_file = tmp_path / "slack-url"
        url_file.write_text(server.add_hook("alerts"))
        sender = build_sender(parse_receiver({"kind": "slack", "name": "noc", "url_file": str(url_file)}))
        async with Outbox(tmp_path / "o.db", session=session, senders=[sender]) as outbox:
            started = time.monotonic()
            for i in range(3):
                outbox.enqueue(note("noc", i))
            assert await outbox.wait_idle(6.0)
            elapsed = time.monotonic() - started
    assert server.rate_limited == 0
    times = [r.at for r in server.requests]
    assert len(times) == 3
    assert all(b - a >= 1.05 for a, b in itertools.pairwise(times))
    assert 2.1 <= elapsed < 4.0


async def test_teams_throttling_in_a_200_body_is_retried_until_delivered(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Without a bucket, a burst trips Teams' limit; the throttled 200s are retried and each card lands once."""
    async with TeamsServer(limits=((0.5, 1),)) as server:
        url_file = tmp_path / "teams-url"
        url_file.write_text(server.connector_url())
        sender = build_sender(
            parse_receiver({"kind": "teams", "name": "t", "url_file": str(url_file), "rate_limit": None})
        )
        async with Outbox(tmp_path / "o.db", session=session, senders=[sender], **FAST) as outbox:
            for i in range(3):
                outbox.enqueue(note("t", i))
            assert await outbox.wait_idle(8.0)
            counters = outbox.counters()["t"]
    assert server.throttled >= 1
    assert counters.retried == server.throttled
    assert [json.dumps(c).count(f"dev-{i} down") > 0 for i, c in enumerate(server.cards)] == [True] * 3


async def test_rate_limit_config_applies(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """A receiver's rate_limit spaces every attempt (burst first)."""
    sender = FakeSender(rate_limit=RateLimit(burst=2, every=0.2))
    stamps: list[float] = []
    original = sender.send

    async def timed(n: Notification, s: aiohttp.ClientSession) -> SendResult:
        stamps.append(time.monotonic())
        return await original(n, s)

    sender.send = timed  # type: ignore[method-assign]
    async with Outbox(tmp_path / "o.db", session=session, senders=[sender]) as outbox:
        for i in range(5):
            outbox.enqueue(note("fake", i))
        assert await outbox.wait_idle(3.0)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] < 0.1
    assert all(g >= 0.18 for g in gaps[1:])


# -- Alertmanager-style re-send ---------------------------------------------------------------------


async def test_firing_incidents_are_resent_until_resolved_and_after_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """A re-sending receiver gets 'repeat' every interval while firing; the resolve stops it; a restart resumes it."""
    sender = FakeSender("am", resend_interval=0.2)
    async with Outbox(tmp_path / "o.db", session=session, senders=[sender]) as outbox:
        outbox.enqueue(note("am", 0))
        outbox.enqueue(note("am", 1))
        await eventually(lambda: sum(n.event == "repeat" for n in sender.sent) >= 4)
        assert {n.incident.id for n in sender.sent if n.event == "repeat"} == {incident(0).id, incident(1).id}
        outbox.enqueue(note("am", 1, "resolved"))
        assert [i.id for i in outbox.firing("am")] == [incident(0).id]
    # A restart: the still-firing incident is re-sent at once, the resolved one never again.
    again = FakeSender("am", resend_interval=0.2)
    async with Outbox(tmp_path / "o.db", session=session, senders=[again]) as outbox:
        await eventually(lambda: len(again.sent) >= 2, within=2.0)
        assert {(n.event, n.incident.id) for n in again.sent} <= {
            ("repeat", incident(0).id),
            ("resolved", incident(1).id),
        }
        assert outbox.keep_firing(set()) == 1
        assert await outbox.wait_idle(1.0)
        count = len(again.sent)
        await asyncio.sleep(0.5)
        assert len(again.sent) == count


async def test_resends_do_not_pile_up_while_the_receiver_is_down(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """While a re-send is still queued no other is added: an outage leaves one row per incident, not one per minute."""
    sender = FakeSender("am", resend_interval=0.1, default=SendResult.retry("down"))
    async with Outbox(tmp_path / "o.db", session=session, senders=[sender], backoff_initial_s=1.0) as outbox:
        outbox.enqueue(note("am", 0))
        await asyncio.sleep(0.6)
        assert outbox.depth() == 1
