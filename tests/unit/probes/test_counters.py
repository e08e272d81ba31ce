"""Counter arithmetic: wraps are unwrapped, discontinuities and reboots give no rate, never a spike."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch.probes.counters import (
    TICKS_WRAP,
    Reading,
    delta,
    max_octets_per_s,
    max_packets_per_s,
    rate,
    uptime_reset,
)

U32 = 1 << 32
U64 = 1 << 64


def r32(value: int) -> Reading:
    return Reading(value, 32)


def r64(value: int) -> Reading:
    return Reading(value, 64)


def test_first_sample_has_no_rate() -> None:
    """Without a previous reading there is nothing to compare: no rate."""
    assert rate(None, r64(1000), 30.0) is None


def test_steady_increase_gives_per_second_rate() -> None:
    """A counter that grew by 3,000 in 30 s counts 100 per second."""
    assert rate(r64(1000), r64(4000), 30.0) == pytest.approx(100.0)


def test_unchanged_counter_is_zero_not_missing() -> None:
    """An idle link is a rate of zero, which must be written (a gap would look like an outage)."""
    assert rate(r64(5), r64(5), 30.0) == 0.0


@pytest.mark.parametrize("elapsed", [0.0, -1.0, float("nan"), float("inf")])
def test_zero_or_nonsense_elapsed_time_gives_no_rate(elapsed: float) -> None:
    """Two readings at the same instant (or a clock gone wrong) cannot give a rate."""
    assert rate(r64(1000), r64(2000), elapsed) is None


def test_32_bit_wrap_is_unwrapped() -> None:
    """A Counter32 that went from near 2**32 to a small value wrapped once: the increase is exact."""
    prev, cur = r32(U32 - 500), r32(1500)
    assert delta(prev, cur) == 2000
    assert rate(prev, cur, 2.0) == pytest.approx(1000.0)


def test_64_bit_decrease_is_a_discontinuity() -> None:
    """A Counter64 does not wrap in practice; going down means it was reset, so no rate."""
    assert delta(r64(10_000), r64(50)) is None
    assert rate(r64(10_000), r64(50), 30.0) is None


def test_64_bit_near_the_top_still_counts() -> None:
    """Values close to 2**64 are ordinary values, exactly handled (no float rounding)."""
    assert delta(r64(U64 - 100), r64(U64 - 1)) == 99


def test_width_change_is_a_discontinuity() -> None:
    """Switching between ifHC* (64) and ifIn/OutOctets (32) compares different counters."""
    assert rate(r32(100), r64(200), 10.0) is None


def test_out_of_range_values_are_rejected() -> None:
    """A 'Counter32' above 2**32 - 1 is not a Counter32; compare nothing."""
    assert delta(r32(U32), r32(5)) is None
    assert delta(r64(-1), r64(5)) is None


def test_implausible_jump_is_dropped_not_spiked() -> None:
    """A jump faster than 1.1 x the link is a discontinuity: no rate, rather than a spike."""
    speed = 1_000_000_000  # 1 Gb/s -> at most 137.5 MB/s counted
    limit = max_octets_per_s(speed)
    assert limit == pytest.approx(1.1 * speed / 8)
    fine = rate(r64(0), r64(100_000_000 * 30), 30.0, max_per_s=limit)  # 100 MB/s = 800 Mb/s
    assert fine == pytest.approx(100_000_000)
    assert rate(r64(0), r64(10**12), 30.0, max_per_s=limit) is None


def test_32_bit_reset_looking_like_a_wrap_is_caught_by_speed() -> None:
    """A Counter32 reset to a small value looks like a wrap; at link speed that is implausible."""
    limit = max_octets_per_s(100_000_000)  # 100 Mb/s
    assert rate(r32(3_000_000_000), r32(10), 1.0, max_per_s=limit) is None


def test_32_bit_counter_that_could_wrap_twice_gives_no_rate() -> None:
    """At 10 Gb/s a Counter32 of octets wraps every 3.4 s; over 30 s any answer is a guess."""
    limit = max_octets_per_s(10_000_000_000)
    assert rate(r32(0), r32(1000), 30.0, max_per_s=limit) is None
    assert rate(r32(0), r32(1000), 1.0, max_per_s=limit) == pytest.approx(1000.0)


def test_unknown_speed_means_no_plausibility_limit() -> None:
    """Speed 0 (unknown) gives no limit; rates are still computed."""
    assert max_octets_per_s(0) is None
    assert max_packets_per_s(0) is None
    assert rate(r64(0), r64(10**12), 1.0, max_per_s=None) == pytest.approx(10**12)


def test_packet_limit_uses_the_smallest_frame() -> None:
    """Errors and discards cannot outnumber minimum-size frames: 1 Gb/s is ~1.49 Mpps."""
    limit = max_packets_per_s(1_000_000_000)
    assert limit is not None
    assert 1.6e6 < limit < 1.7e6  # 1.1 x 1.488 Mpps


@given(
    prev=st.integers(0, U64 - 1),
    cur=st.integers(0, U64 - 1),
    width=st.sampled_from([32, 64]),
    elapsed=st.floats(0.001, 1e6),
    speed=st.sampled_from([0, 10_000_000, 1_000_000_000, 100_000_000_000]),
)
def test_rate_is_never_negative_and_never_above_the_link(
    prev: int, cur: int, width: int, elapsed: float, speed: int
) -> None:
    """Whatever two readings come back, a rate is >= 0 and within the plausible maximum."""
    mod = 1 << width
    limit = max_octets_per_s(speed)
    got = rate(Reading(prev % mod, width), Reading(cur % mod, width), elapsed, max_per_s=limit)  # type: ignore[arg-type]
    if got is not None:
        assert got >= 0
        if limit is not None:
            assert got <= limit


def test_uptime_moving_forward_is_not_a_reboot() -> None:
    """sysUpTime advancing by about the time that passed is the normal case."""
    assert not uptime_reset(100_000, 103_000, 30.0)


def test_uptime_going_backwards_is_a_reboot() -> None:
    """sysUpTime smaller than last time: the device (or its agent) restarted."""
    assert uptime_reset(8_640_000, 300, 30.0)


def test_uptime_wrap_after_497_days_is_not_a_reboot() -> None:
    """TimeTicks wrap at 2**32 hundredths; from just below the top to just above 0 is a wrap."""
    assert not uptime_reset(TICKS_WRAP - 1000, 2000, 30.0)


def test_reboot_between_polls_without_going_backwards_is_caught() -> None:
    """Last poll at uptime 60 s, then 10 minutes of timeouts, now uptime 5 min: it rebooted."""
    assert uptime_reset(6_000, 30_000, 600.0)


def test_uptime_jitter_is_tolerated() -> None:
    """A response that took a while, or a slightly slow agent clock, is not a reboot."""
    assert not uptime_reset(100_000, 102_500, 30.0)  # advanced 25 s in 30 s: within slack
    assert not uptime_reset(100_000, 100_000, 0.5)


def test_error_rates_on_a_100g_port_at_30_s() -> None:
    """Error counters (32-bit) on a 100G port still give a rate at a 30 s interval: the theoretical
    minimum-frame packet rate would wrap them twice, but errors never come near it."""
    limit = max_packets_per_s(100_000_000_000)
    assert rate(Reading(1000, 32), Reading(1600, 32), 30.0, max_per_s=limit, wrap_guard=False) == 20.0
    assert rate(Reading(1000, 32), Reading(1600, 32), 30.0, max_per_s=limit) is None


def test_rate_interval_prefers_the_agents_clock() -> None:
    """The agent's sysUpTime delta is the interval when it agrees with the wall clock; else wall time."""
    from netwatch.probes.counters import rate_interval

    assert rate_interval(1000, 1100, 1.04) == 1.0  # 40 ms of round-trip jitter is not traffic
    assert rate_interval(TICKS_WRAP - 50, 50, 1.0) == 1.0  # sysUpTime wrapped in between
    assert rate_interval(1000, 1100, 5.0) == 5.0  # an agent clock that disagrees is not trusted
