"""Scheduler: fixed rate, staggered, bounded, timeouts as outcomes, no stall, no swallowed cancel."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import structlog

from netwatch.model import Observation
from netwatch.scheduler import Job, Scheduler, phase
from tests.unit.fakes import FakeProbe


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def collect() -> tuple[list[Observation], object]:
    seen: list[Observation] = []
    return seen, seen.append


async def test_fixed_rate_does_not_drift() -> None:
    """Runs land on the grid start + phase + k*interval, however long each check takes."""
    probe = FakeProbe(delay=0.03)
    job = Job("d1", "ping", probe, interval=0.1, timeout=0.09)
    _seen, handler = collect()
    start = asyncio.get_running_loop().time()
    await run_for(Scheduler([job], handler, start_at=start), 1.05)
    first = start + phase(job.name, 0.1)
    assert len(probe.calls) >= 9
    for k, t in enumerate(probe.calls):
        assert abs(t - (first + k * 0.1)) < 0.03, (k, t - first)


async def test_start_is_staggered_across_the_interval() -> None:
    """Two hundred devices do not all fire at t=0: first runs spread over the interval."""
    probes = [FakeProbe() for _ in range(200)]
    jobs = [Job(f"dev{i}", "ping", p, interval=1.0, timeout=0.5) for i, p in enumerate(probes)]
    _seen, handler = collect()
    start = asyncio.get_running_loop().time()
    await run_for(Scheduler(jobs, handler, start_at=start), 1.0)
    firsts = sorted(p.calls[0] - start for p in probes if p.calls)
    assert len(firsts) >= 190
    assert firsts[0] < 0.1
    assert firsts[-1] > 0.9
    # no tenth of the interval holds more than a quarter of the devices
    buckets = [sum(1 for t in firsts if i / 10 <= t < (i + 1) / 10) for i in range(10)]
    assert max(buckets) < 50, buckets


async def test_timeout_becomes_an_outcome_not_an_exception() -> None:
    """A check that hangs past its timeout yields reason='timeout' and the probe is cancelled."""
    probe = FakeProbe(delay=10)
    seen, handler = collect()
    job = Job("d1", "snmp", probe, interval=1.0, timeout=0.2)
    now = asyncio.get_running_loop().time()
    await run_for(Scheduler([job], handler, start_at=now, offset=lambda name, interval: 0.0), 0.5)
    assert [o.outcome.reason for o in seen] == ["timeout"]
    assert not seen[0].outcome.up
    assert "0.2s" in seen[0].outcome.detail
    assert probe.cancelled == 1


async def test_dead_device_never_delays_others_and_overruns_are_skipped() -> None:
    """A hanging device skips (and counts) its own overrun ticks; a fast one keeps its rate."""
    slow = FakeProbe(delay=10)
    fast = FakeProbe()
    jobs = [
        Job("dead", "snmp", slow, interval=0.1, timeout=0.45),
        Job("ok", "ping", fast, interval=0.1, timeout=0.05),
    ]
    seen, handler = collect()
    scheduler = Scheduler(jobs, handler, start_at=asyncio.get_running_loop().time())
    await run_for(scheduler, 1.0)
    assert len(fast.calls) >= 9
    assert slow.max_active == 1, "overruns must not stack"
    assert 1 <= len(slow.calls) <= 3
    assert scheduler.stats.checks_skipped >= 5
    assert all(o.outcome.reason == "timeout" for o in seen if o.device == "dead")


async def test_global_bound_on_checks_in_flight() -> None:
    """No more than max_in_flight checks run at once; the wait shows up as poll lag."""
    shared = FakeProbe(delay=0.1)
    jobs = [Job(f"d{i}", "ping", shared, interval=1.0, timeout=0.5) for i in range(6)]
    seen, handler = collect()
    now = asyncio.get_running_loop().time()
    scheduler = Scheduler(jobs, handler, max_in_flight=2, start_at=now, offset=lambda name, interval: 0.0)
    await run_for(scheduler, 0.45)
    assert shared.max_active == 2
    assert len(seen) == 6
    lag = scheduler.lag_summary()
    assert lag["poll_lag_max_ms"] >= 150


async def test_probe_crash_is_a_result_and_logged_once() -> None:
    """A bug in a probe becomes reason='error' every time, but is logged only once."""
    probe = FakeProbe(raises=RuntimeError("boom"))
    seen, handler = collect()
    with structlog.testing.capture_logs() as logs:
        await run_for(Scheduler([Job("d1", "snmp", probe, interval=0.05, timeout=0.04)], handler, start_at=0), 0.3)
    assert len(seen) >= 4
    assert {o.outcome.reason for o in seen} == {"error"}
    assert "RuntimeError: boom" in seen[0].outcome.detail
    assert [e["event"] for e in logs].count("probe_crashed") == 1


async def test_cancellation_is_not_swallowed() -> None:
    """Cancelling the scheduler cancels checks in flight and the cancel propagates."""
    probe = FakeProbe(delay=10)
    scheduler = Scheduler(
        [Job("d1", "snmp", probe, interval=1.0, timeout=5.0)],
        lambda o: None,
        offset=lambda name, interval: 0.0,
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.1)
    assert probe.active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.cancelled == 1
    assert task.cancelled()


async def test_failing_observation_handler_does_not_stop_polling() -> None:
    """An error downstream of a check is logged; the scheduler keeps polling."""
    probe = FakeProbe()

    def handler(obs: Observation) -> None:
        raise ValueError("sink broke")

    with structlog.testing.capture_logs() as logs:
        await run_for(Scheduler([Job("d1", "ping", probe, interval=0.05, timeout=0.04)], handler, start_at=0), 0.3)
    assert len(probe.calls) >= 4
    assert any(e["event"] == "observation_handler_failed" for e in logs)
