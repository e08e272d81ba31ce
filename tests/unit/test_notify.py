"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's manager."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from netwatch.notify import Notifier, feed_watchdog
from netwatch.scheduler import Job, Scheduler
from tests.unit.fakes import FakeProbe


class Manager:
    """The receiving end of NOTIFY_SOCKET, as systemd binds it."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def received(self) -> list[str]:
        """Every datagram queued so far."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


def _manager(kind: str, tmp_path: Path) -> Manager:
    if kind == "path":
        path = str(tmp_path / "notify")
        return Manager(_bound(path), path)
    name = f"netwatch-test/{os.getpid()}/{uuid.uuid4().hex}"
    return Manager(_bound("\0" + name), "@" + name)


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
    """A manager socket at a filesystem path and one in the abstract namespace (``@name``)."""
    m = _manager(request.param, tmp_path)
    with m.sock:
        yield m


@pytest.fixture
def abstract_manager(tmp_path: Path) -> Iterator[Manager]:
    """One kind is enough for the timing tests; both kinds are covered above."""
    m = _manager("abstract", tmp_path)
    with m.sock:
        yield m


def test_ready_sends_ready_and_status(manager: Manager) -> None:
    """READY=1 and the one-line summary go out in one datagram."""
    notifier = Notifier(environ=manager.env())
    assert notifier.ready("polling 3 devices")
    assert manager.received() == ["READY=1\nSTATUS=polling 3 devices"]
    assert (notifier.sent, notifier.errors) == (1, 0)


def test_reloading_carries_the_monotonic_time(manager: Manager) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC= (systemd 253+ checks it) taken at the call."""
    notifier = Notifier(environ=manager.env())
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading("reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [datagram] = manager.received()
    first, second, third = datagram.split("\n")
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after
    assert third == "STATUS=reloading config"


def test_stopping_watchdog_and_status(manager: Manager) -> None:
    """STOPPING=1, WATCHDOG=1 and STATUS= are sent exactly as sd_notify(3) spells them."""
    notifier = Notifier(environ=manager.env())
    notifier.stopping()
    notifier.watchdog()
    notifier.status("spool: 12 points behind")
    notifier.stopping("flushing the spool")
    notifier.extend_timeout(20)
    assert manager.received() == [
        "STOPPING=1",
        "WATCHDOG=1",
        "STATUS=spool: 12 points behind",
        "STOPPING=1\nSTATUS=flushing the spool",
        "EXTEND_TIMEOUT_USEC=20000000",
    ]


def test_status_stays_one_line(manager: Manager) -> None:
    """A newline in a status cannot smuggle in another assignment such as READY=1."""
    Notifier(environ=manager.env()).status("bad\nREADY=1")
    assert manager.received() == ["STATUS=bad READY=1"]


def test_socket_is_read_from_the_environment_once(manager: Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default reads os.environ at construction; later changes do not redirect it."""
    monkeypatch.setenv("NOTIFY_SOCKET", manager.env_value)
    notifier = Notifier()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notifier.watchdog()
    assert manager.received() == ["WATCHDOG=1"]


def test_unset_notify_socket_is_a_silent_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd nothing is sent, nothing is counted as an error, nothing is logged."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    with structlog.testing.capture_logs() as logs:
        for notifier in (Notifier(), Notifier(environ={}), Notifier(environ={"NOTIFY_SOCKET": "relative"})):
            assert not notifier.enabled
            assert not notifier.ready("x")
            assert not notifier.reloading("x")
            assert not notifier.stopping()
            assert not notifier.watchdog()
            assert notifier.watchdog_interval() is None
            assert (notifier.sent, notifier.errors) == (0, 0)
    assert logs == []


def test_send_errors_are_counted_not_raised(tmp_path: Path) -> None:
    """A manager that is gone costs a counter and one log line per outage, never an exception."""
    path = tmp_path / "notify"
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(path)})
    with structlog.testing.capture_logs() as logs:
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        with _bound(str(path)) as sock:
            assert notifier.watchdog()
            assert sock.recv(100) == b"WATCHDOG=1"
    assert (notifier.sent, notifier.errors) == (1, 2)
    assert [e["event"] for e in logs] == ["sd_notify_failed", "sd_notify_recovered"]


def test_full_manager_queue_does_not_block(manager: Manager) -> None:
    """A manager that stops reading makes sends fail fast instead of blocking the event loop."""
    notifier = Notifier(environ=manager.env())
    start = time.monotonic()
    for _ in range(2000):
        notifier.status("x" * 1000)
    assert time.monotonic() - start < 1.0
    assert notifier.errors > 0
    assert notifier.sent + notifier.errors == 2000


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(extra: dict[str, str], expected: float | None) -> None:
    """WATCHDOG_USEC in seconds, only when WATCHDOG_PID (if set) names this process."""
    notifier = Notifier(environ={"NOTIFY_SOCKET": "/run/systemd/notify", **extra})
    assert notifier.watchdog_interval() == expected


async def _collect(sock: socket.socket, into: list[tuple[float, str]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data = await loop.sock_recv(sock, 4096)
        into.append((loop.time(), data.decode()))


async def test_feed_watchdog_follows_the_heartbeat(abstract_manager: Manager) -> None:
    """WATCHDOG=1 every half interval while the heartbeat is fresh; none once it is older than the interval."""
    loop = asyncio.get_running_loop()
    notifier = Notifier(environ=abstract_manager.env(WATCHDOG_USEC="200000"))  # 0.2 s: fed every 0.1 s
    frozen: float | None = None

    def heartbeat() -> float:
        return loop.time() if frozen is None else frozen

    got: list[tuple[float, str]] = []
    with structlog.testing.capture_logs() as logs:
        collector = asyncio.create_task(_collect(abstract_manager.sock, got))
        feeder = asyncio.create_task(feed_watchdog(notifier, heartbeat))
        start = loop.time()
        await asyncio.sleep(0.55)
        stuck_at = frozen = loop.time()  # the scheduler gets stuck here
        await asyncio.sleep(0.65)
        fresh_again = loop.time()
        frozen = None
        await asyncio.sleep(0.25)
        for task in (feeder, collector):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert {data for _, data in got} == {"WATCHDOG=1"}
    times = [t for t, _ in got]
    fresh = [t for t in times if t < stuck_at]
    assert 5 <= len(fresh) <= 7, [round(t - start, 3) for t in times]
    assert max(b - a for a, b in itertools.pairwise(fresh)) < 0.15
    # at most the sends within one interval of the last heartbeat, then silence
    stale = [t for t in times if stuck_at <= t < fresh_again]
    assert all(t - stuck_at < 0.2 + 0.02 for t in stale), [round(t - stuck_at, 3) for t in stale]
    assert len(stale) <= 2
    assert [t for t in times if t >= fresh_again], "feeding resumes when the heartbeat is fresh again"
    assert [e["event"] for e in logs] == ["watchdog_starved", "watchdog_fed_again"]


async def test_feed_watchdog_returns_when_the_watchdog_is_off(abstract_manager: Manager) -> None:
    """Without WATCHDOG_USEC there is nothing to feed: the task ends at once."""
    async with asyncio.timeout(1):
        await feed_watchdog(Notifier(environ=abstract_manager.env()), lambda: 0.0)
    assert abstract_manager.received() == []


async def test_feed_watchdog_from_the_real_scheduler_heartbeat(
    abstract_manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scheduler.heartbeat keeps the feed going, and a scheduler that stops running starves it."""
    manager = abstract_manager
    monkeypatch.setattr("netwatch.scheduler.HEARTBEAT_S", 0.05)  # wake-ups every 50 ms, not every 1 s
    loop = asyncio.get_running_loop()
    notifier = Notifier(environ=manager.env(WATCHDOG_USEC="300000"))
    scheduler = Scheduler([Job("d1", "ping", FakeProbe(), interval=60, timeout=1)], lambda _obs: None)
    running = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0)  # the first wake-up sets the heartbeat
    feeder = asyncio.create_task(feed_watchdog(notifier, lambda: scheduler.heartbeat))
    try:
        await asyncio.sleep(0.4)
        fed = manager.received()
        assert fed == ["WATCHDOG=1"] * len(fed)
        assert len(fed) >= 2
        running.cancel()  # stands in for a scheduler stuck on an await
        with contextlib.suppress(asyncio.CancelledError):
            await running
        stuck_at = loop.time()
        await asyncio.sleep(0.32)  # the watchdog interval and a little
        manager.received()
        await asyncio.sleep(0.3)
        assert manager.received() == [], f"still fed {loop.time() - stuck_at:.2f} s after the scheduler stopped"
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        running.cancel()
