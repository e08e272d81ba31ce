"""Scheduler.poll_now: an immediate poll for push sources (a linkDown trap), rate-limited."""

from __future__ import annotations

import asyncio
import contextlib

from netwatch.model import Observation
from netwatch.scheduler import POLL_NOW_GAP_S, Job, Scheduler, phase
from tests.unit.fakes import FakeProbe


async def _running(scheduler: Scheduler) -> asyncio.Task[None]:
    task = asyncio.create_task(scheduler.run())
    await scheduler.ticked.wait()
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_poll_now_runs_the_named_device_checks_at_once() -> None:
    """A trap about sw-1 runs sw-1's snmp check now (not in 60 s), and nothing else."""
    snmp, ping, other = FakeProbe(), FakeProbe(), FakeProbe()
    jobs = [
        Job("sw-1", "snmp", snmp, interval=60.0, timeout=5.0),
        Job("sw-1", "ping", ping, interval=60.0, timeout=5.0),
        Job("sw-2", "snmp", other, interval=60.0, timeout=5.0),
    ]
    seen: list[Observation] = []
    loop = asyncio.get_running_loop()
    # the grid starts 30 s from now: no scheduled run falls within this test
    scheduler = Scheduler(jobs, seen.append, start_at=loop.time() + 30.0, offset=lambda _n, _i: 0.0)
    task = await _running(scheduler)
    try:
        assert scheduler.poll_now("sw-1", {"snmp"}) == 1
        await asyncio.sleep(0.05)
    finally:
        await _stop(task)
    assert len(snmp.calls) == 1
    assert ping.calls == []
    assert other.calls == []
    assert [(o.device, o.check) for o in seen] == [("sw-1", "snmp")]
    assert scheduler.stats.checks_run == 1


async def test_trap_storm_is_at_most_one_poll_per_second() -> None:
    """A flapping port sends 100 traps in half a second: one immediate poll, not 100."""
    probe = FakeProbe()
    job = Job("sw-1", "snmp", probe, interval=60.0, timeout=5.0)
    loop = asyncio.get_running_loop()
    scheduler = Scheduler([job], lambda _o: None, start_at=loop.time() + 30.0, offset=lambda _n, _i: 0.0)
    task = await _running(scheduler)
    try:
        started = 0
        for _ in range(100):
            started += scheduler.poll_now("sw-1")
            await asyncio.sleep(0.005)
        assert started == 1
        await asyncio.sleep(POLL_NOW_GAP_S)
        assert scheduler.poll_now("sw-1") == 1  # after the gap, the next trap polls again
        await asyncio.sleep(0.05)
    finally:
        await _stop(task)
    assert len(probe.calls) == 2


async def test_no_immediate_poll_while_one_is_in_flight() -> None:
    """A check still running (a slow agent) is not started a second time beside itself."""
    probe = FakeProbe(delay=1.5)
    job = Job("sw-1", "snmp", probe, interval=60.0, timeout=5.0)
    loop = asyncio.get_running_loop()
    scheduler = Scheduler([job], lambda _o: None, start_at=loop.time() + 30.0, offset=lambda _n, _i: 0.0)
    task = await _running(scheduler)
    try:
        assert scheduler.poll_now("sw-1") == 1
        await asyncio.sleep(POLL_NOW_GAP_S + 0.1)  # past the gap, but the first run is still going
        assert scheduler.poll_now("sw-1") == 0
        assert probe.max_active == 1
    finally:
        await _stop(task)


async def test_poll_now_keeps_the_grid() -> None:
    """Scheduled runs stay on start + phase + k*interval after an immediate poll between them."""
    probe = FakeProbe()
    job = Job("sw-1", "snmp", probe, interval=0.2, timeout=0.1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    scheduler = Scheduler([job], lambda _o: None, start_at=start)
    task = await _running(scheduler)
    try:
        first = start + phase(job.name, 0.2)
        # an immediate poll half-way between two grid points
        await asyncio.sleep(max(0.0, first + 0.3 - loop.time()))
        assert scheduler.poll_now("sw-1") == 1
        await asyncio.sleep(0.75)
    finally:
        await _stop(task)
    immediate = [t for t in probe.calls if abs(((t - first) % 0.2) - 0.1) < 0.03]
    on_grid = [t for t in probe.calls if t not in immediate]
    assert len(immediate) == 1
    assert len(on_grid) >= 4
    for t in on_grid:
        k = round((t - first) / 0.2)
        assert abs(t - (first + k * 0.2)) < 0.03
