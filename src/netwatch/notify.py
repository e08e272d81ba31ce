"""systemd's notify protocol (sd_notify(3)): one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

It is a few lines, so it lives here rather than in a dependency. Outside systemd (no
``NOTIFY_SOCKET``) every call is a silent no-op, so the daemon calls it unconditionally.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def _address(value: str | None) -> str | None:
    """Turn ``$NOTIFY_SOCKET`` into a socket address: ``/path``, or ``@name`` for the abstract namespace."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # vsock: and relative paths are not ours to guess at


def _one_line(text: str) -> str:
    # A newline would end the STATUS= assignment and start another one.
    return " ".join(text.splitlines())


class Notifier:
    """Tell systemd how the daemon is doing; never raise into it.

    Send failures (manager gone, its queue full: the socket never blocks the event loop) are
    counted in ``errors`` and logged when they start and when sending works again.
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        #: Where datagrams go; None when not run by systemd's notify machinery.
        self.address = _address(env.get("NOTIFY_SOCKET"))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None
        self.sent = 0
        self.errors = 0
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; return whether it went out."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            self.errors += 1
            if not self._failing:
                self._failing = True
                log.warning("sd_notify_failed", socket=self.address.replace("\0", "@"), error=repr(exc))
            return False
        self.sent += 1
        if self._failing:
            self._failing = False
            log.info("sd_notify_recovered", errors=self.errors)
        return True

    def ready(self, status: str) -> bool:
        """Startup or a reload is complete."""
        return self.notify("READY=1", f"STATUS={_one_line(status)}")

    def reloading(self, status: str) -> bool:
        """A reload begins; follow it with ``ready()``. systemd 253+ wants the CLOCK_MONOTONIC time with it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={_one_line(status)}")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begins."""
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status is not None else []))

    def status(self, text: str) -> bool:
        """Set the one-line summary ``systemctl status`` shows."""
        return self.notify(f"STATUS={_one_line(text)}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more to finish starting or stopping (a long spool recovery or flush)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1e6))}")

    def watchdog(self) -> bool:
        """Prove we are alive; systemd restarts us when this stops for ``WatchdogSec=``."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Return ``WatchdogSec=`` in seconds, or None when the watchdog is off or meant for another process."""
        if self.address is None:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 1e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def feed_watchdog(
    notifier: Notifier, heartbeat: Callable[[], float], *, clock: Callable[[], float] | None = None
) -> None:
    """Send WATCHDOG=1 every half watchdog interval while ``heartbeat()`` is fresh; run until cancelled.

    ``heartbeat()`` is the ``clock()`` time of the scheduler's last wake-up. Feeding from it, not
    from this task's own timer, means a scheduler stuck on an await stops the feeding and systemd
    restarts us; a blocked event loop stops this task too. Returns at once when the watchdog is off.
    Start it once ``ready()`` is sent (systemd arms the watchdog then): a scheduler that has not
    woken yet has no fresh heartbeat, so an earlier start only logs ``watchdog_starved``.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    loop = asyncio.get_running_loop()
    now = loop.time if clock is None else clock
    period = interval / 2
    starved = False
    next_run = loop.time()
    while True:
        age = now() - heartbeat()
        if age < interval:
            notifier.watchdog()
            if starved:
                starved = False
                log.info("watchdog_fed_again", heartbeat_age_s=round(age, 3))
        elif not starved:
            starved = True
            log.error("watchdog_starved", heartbeat_age_s=round(age, 3), watchdog_s=interval)
        # Fixed rate; after a stall (a blocked loop) resume from now rather than catch up in a burst.
        next_run = max(next_run + period, loop.time())
        await asyncio.sleep(next_run - loop.time())
