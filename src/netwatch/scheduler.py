"""Fixed-rate, staggered, bounded-concurrency polling with per-check timeouts.

One loop keeps a heap of jobs ordered by their next due time and starts each due check as its
own task, so a slow or dead device only ever holds its own slot: it never delays another
device's check (Telegraf's SNMP input stalls a whole instance on one slow agent; not here).

* Fixed rate: a job's next run is its previous *scheduled* time plus the interval, not "finished
  plus interval", so checks do not drift.
* Staggered: each job's phase within its interval comes from a hash of its name, so a thousand
  devices do not all fire at t=0. A config reload (:meth:`Scheduler.replace`) keeps every
  unchanged job on its grid, its run in flight and the counters.
* Overruns are skipped and counted, never stacked: if a check is still running (or still waiting
  for a slot) when its next tick comes, that tick is dropped.
* A global semaphore bounds checks in flight; time spent waiting for a slot is poll lag.
* The scheduler, not the probe, enforces the timeout (as blackbox_exporter's handler does).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import structlog

from netwatch.model import Observation, Outcome, now_ns
from netwatch.probes.base import Probe

log = structlog.get_logger(__name__)

#: The scheduler wakes at least this often, so its heartbeat proves the event loop is alive.
HEARTBEAT_S = 1.0

#: At most one immediate poll (:meth:`Scheduler.poll_now`) per check in this many seconds, so a
#: trap storm from a flapping port cannot turn into a poll storm against the device.
POLL_NOW_GAP_S = 1.0


@dataclass(eq=False)
class Job:
    """One check of one device, run every ``interval`` seconds."""

    device: str
    check: str
    probe: Probe
    interval: float
    timeout: float
    next_run: float = 0.0
    busy: bool = False
    #: Whether the last run crashed, so that a probe's bug is logged once, not every poll.
    crashed: bool = False
    #: loop.time() of the last run started by :meth:`Scheduler.poll_now` (0.0: never).
    polled_now_at: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.device}/{self.check}"


def phase(name: str, interval: float) -> float:
    """Return a stable offset in [0, interval) for a job, from a hash of its name."""
    return (zlib.crc32(name.encode()) / 2**32) * interval


@dataclass
class SchedulerStats:
    """Counters since start, and poll lags since the last report."""

    checks_run: int = 0
    checks_failed: int = 0
    checks_skipped: int = 0
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))


class Scheduler:
    """Run jobs at fixed rate and hand every observation to ``on_observation``."""

    def __init__(
        self,
        jobs: Iterable[Job],
        on_observation: Callable[[Observation], None],
        *,
        max_in_flight: int = 256,
        start_at: float | None = None,
        offset: Callable[[str, float], float] = phase,
    ) -> None:
        self._jobs = list(jobs)
        self._on_observation = on_observation
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        self._epoch = 0.0
        self._last_lags: list[float] = []
        self._dirty = False
        self._wake = asyncio.Event()
        self._start_at = start_at
        self._offset = offset
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = SchedulerStats()
        #: loop.time() of the scheduler's last wake-up; a stuck loop stops advancing it.
        self.heartbeat = 0.0
        #: Set on the scheduler's first tick (systemd READY=1 waits for it).
        self.ticked = asyncio.Event()

    @property
    def jobs(self) -> list[Job]:
        return self._jobs

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def replace(self, jobs: Iterable[Job]) -> None:
        """Swap in a new set of jobs (a config reload) without disturbing the ones that stay.

        A job whose (device, check) and interval are unchanged keeps its place on the time grid,
        its in-flight run and its busy flag; it only takes the new probe and timeout. New jobs
        join the grid at their stable phase. Removed jobs' runs in flight finish on their own.
        """
        old = {job.name: job for job in self._jobs}
        merged = []
        for job in jobs:
            prev = old.get(job.name)
            if prev is not None and prev.interval == job.interval:
                prev.probe, prev.timeout = job.probe, job.timeout
                merged.append(prev)
            else:
                job.next_run = 0.0
                merged.append(job)
        self._jobs = merged
        self._dirty = True
        self._wake.set()

    def poll_now(self, device: str, checks: Collection[str] | None = None) -> int:
        """Run a device's checks now (all, or those named), off the grid; return how many started.

        For push sources (an SNMP linkDown trap) that know something changed before the next
        poll would. The job's grid is untouched: its scheduled runs stay where they were (one
        that falls while this run is in flight is skipped and counted, as any overrun). A check
        already in flight, or polled now less than :data:`POLL_NOW_GAP_S` ago, is not started again.
        """
        now = asyncio.get_running_loop().time()
        started = 0
        for job in self._jobs:
            if job.device != device or (checks is not None and job.check not in checks):
                continue
            if job.busy or (job.polled_now_at and now - job.polled_now_at < POLL_NOW_GAP_S):
                continue
            job.polled_now_at = now
            self._start(job, now)
            started += 1
        return started

    def resize(self, max_in_flight: int) -> None:
        """Change the bound on checks in flight; runs holding a slot of the old bound finish."""
        if max_in_flight != self._max_in_flight:
            self._max_in_flight = max_in_flight
            self._slots = asyncio.Semaphore(max_in_flight)

    def _heap(self, now: float, *, joining: bool) -> list[tuple[float, int, Job]]:
        heap: list[tuple[float, int, Job]] = []
        for seq, job in enumerate(self._jobs):
            if job.next_run == 0.0:
                # On the grid epoch + phase + k * interval; a job joining a running scheduler
                # takes the first slot that is not in the past.
                first = self._epoch + self._offset(job.name, job.interval)
                if joining and first < now:
                    first += -(-(now - first) // job.interval) * job.interval
                job.next_run = first
            heap.append((job.next_run, seq, job))
        heapq.heapify(heap)
        return heap

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the jobs are replaced."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def run(self) -> None:
        """Run until cancelled; cancelling also cancels the checks in flight."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._epoch = now if self._start_at is None else self._start_at
        heap = self._heap(now, joining=False)
        try:
            while True:
                now = loop.time()
                self.heartbeat = now
                self.ticked.set()
                if self._dirty:
                    self._dirty = False
                    heap = self._heap(now, joining=True)
                if not heap:
                    await self._sleep(HEARTBEAT_S)
                    continue
                due, seq, job = heap[0]
                if due > now:
                    await self._sleep(min(due - now, HEARTBEAT_S))
                    continue
                heapq.heappop(heap)
                if job.busy:
                    self.stats.checks_skipped += 1
                    log.debug("check_skipped", device=job.device, check=job.check, reason="still running")
                else:
                    self._start(job, due)
                job.next_run = due + job.interval
                if job.next_run <= now:
                    # The loop fell more than a whole interval behind (a suspended host, a long
                    # GC): count the missed ticks and resume on the grid rather than bursting.
                    missed = int((now - job.next_run) // job.interval) + 1
                    self.stats.checks_skipped += missed
                    job.next_run += missed * job.interval
                heapq.heappush(heap, (job.next_run, seq, job))
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, job: Job, scheduled: float) -> None:
        job.busy = True
        task = asyncio.create_task(self._run_job(job, scheduled), name=f"check/{job.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_job(self, job: Job, scheduled: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._slots:
                self._in_flight += 1
                try:
                    started = loop.time()
                    self.stats.lags.append(max(0.0, started - scheduled))
                    started_ns = now_ns()
                    outcome = await run_check(job)
                    duration = loop.time() - started
                finally:
                    self._in_flight -= 1
            self.stats.checks_run += 1
            if not outcome.up:
                self.stats.checks_failed += 1
            observation = Observation(job.device, job.check, outcome, started_ns, duration)
            try:
                self._on_observation(observation)
            except Exception:
                log.exception("observation_handler_failed", device=job.device, check=job.check)
        finally:
            job.busy = False

    def recent_lags(self) -> list[float]:
        """Return the poll lags (seconds) of the current window, plus the last window's when it is
        fresh: readers such as /metrics must not see an empty window right after a report."""
        return list(self.stats.lags) or list(self._last_lags)

    def lag_summary(self) -> dict[str, float]:
        """Return poll-lag p50/p99/max in ms since the last call, and reset the window."""
        lags = sorted(self.stats.lags)
        self._last_lags = lags
        self.stats.lags.clear()
        if not lags:
            return {}

        def pct(p: float) -> float:
            return lags[min(len(lags) - 1, int(p * len(lags)))] * 1000.0

        return {
            "poll_lag_p50_ms": pct(0.50),
            "poll_lag_p99_ms": pct(0.99),
            "poll_lag_max_ms": lags[-1] * 1000.0,
        }


async def run_check(job: Job) -> Outcome:
    """Run one check under its timeout; turn a timeout or a probe's bug into an outcome.

    ``Exception`` is caught, never ``BaseException``: cancellation must pass through.
    """
    try:
        async with asyncio.timeout(job.timeout):
            outcome = await job.probe.check()
    except TimeoutError:
        return Outcome(up=False, reason="timeout", detail=f"no result within {job.timeout:g}s")
    except Exception as exc:
        if not job.crashed:
            job.crashed = True
            log.exception("probe_crashed", device=job.device, check=job.check)
        return Outcome(up=False, reason="error", detail=f"probe failed: {type(exc).__name__}: {exc}")
    job.crashed = False
    return outcome
