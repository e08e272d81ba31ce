"""Rates from SNMP counters: wraps, resets and reboots give no rate, never a negative one or a spike.

Pure functions, no I/O. The SNMP probe keeps the previous :class:`Reading` of each counter and asks
:func:`rate` for the per-second increase; whenever the two readings cannot be compared honestly
(first poll, a 64-bit counter that went down, a jump faster than the link, a device reboot) the
answer is ``None`` and the probe writes no rate for that poll. A gap in a graph is the truth; a
spike to petabits per second is a lie that fires alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

Width = Literal[32, 64]

#: sysUpTime is a TimeTicks (hundredths of a second) that wraps at 2**32 (after ~497 days).
TICKS_WRAP: Final = 1 << 32
TICKS_PER_S: Final = 100

#: Bits on the wire per packet at the smallest Ethernet frame: 64 bytes + preamble + gap = 84.
MIN_FRAME_BITS: Final = 84 * 8

#: A rate above this multiple of the link's capacity is a discontinuity, not traffic.
PLAUSIBLE_FACTOR: Final = 1.1


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of a counter: its raw value and its width (Counter32 or Counter64)."""

    value: int
    width: Width


def delta(prev: Reading, cur: Reading) -> int | None:
    """Return how much a counter increased from ``prev`` to ``cur``, or None if unknowable.

    A Counter32 that went down wrapped once past 2**32 and is unwrapped. A Counter64 cannot wrap
    in practice (centuries at 100 Gb/s), so a decrease is a discontinuity (counters cleared, agent
    restarted). Readings of different widths (the device stopped answering ifHC* and we fell back
    to 32 bits) or values outside the width are not comparable.
    """
    if prev.width != cur.width:
        return None
    limit = 1 << cur.width
    if not (0 <= prev.value < limit and 0 <= cur.value < limit):
        return None
    if cur.value >= prev.value:
        return cur.value - prev.value
    if cur.width == 32:
        return cur.value + limit - prev.value
    return None


def rate(
    prev: Reading | None,
    cur: Reading,
    elapsed_s: float,
    *,
    max_per_s: float | None = None,
    wrap_guard: bool = True,
) -> float | None:
    """Return the counter's increase per second between two readings, or None.

    None when there is no previous reading, no time passed, the readings are not comparable
    (:func:`delta`), the rate exceeds ``max_per_s`` (when the link speed gives one), or a 32-bit
    counter could have wrapped more than once in ``elapsed_s`` at ``max_per_s`` (then any answer
    would be a guess). ``wrap_guard=False`` skips that last test, for counters (errors, discards)
    whose ceiling is a theoretical bound they never come near: at 100 Gb/s the minimum-frame packet
    rate would wrap a Counter32 twice in 30 s, yet no port counts errors that fast.
    """
    if prev is None or not math.isfinite(elapsed_s) or elapsed_s <= 0:
        return None
    increase = delta(prev, cur)
    if increase is None:
        return None
    per_s = increase / elapsed_s
    if max_per_s is not None and max_per_s > 0:
        if per_s > max_per_s:
            return None
        if wrap_guard and cur.width == 32 and max_per_s * elapsed_s >= 1 << 32:
            return None
    return per_s


def max_octets_per_s(speed_bps: int) -> float | None:
    """Return the most octets per second a link of ``speed_bps`` can plausibly count."""
    return PLAUSIBLE_FACTOR * speed_bps / 8 if speed_bps > 0 else None


def max_packets_per_s(speed_bps: int) -> float | None:
    """Return the most packets (errors, discards) per second a link can plausibly count."""
    return PLAUSIBLE_FACTOR * speed_bps / MIN_FRAME_BITS if speed_bps > 0 else None


def rate_interval(prev_ticks: int, cur_ticks: int, wall_s: float) -> float:
    """Return the seconds to divide counter increases by: the agent's own clock when it is sane.

    sysUpTime is read in the same request as the counters, so its delta is the time between the
    two samplings as the agent saw it; the wall-clock delta between our two responses also holds
    the jitter of two round trips (tens of ms on a busy host: several per cent of a short
    interval). The agent's clock is used when it agrees with the wall clock to within a quarter.
    """
    ticks = (cur_ticks - prev_ticks) % TICKS_WRAP
    agent_s = ticks / TICKS_PER_S
    if wall_s > 0 and 0.75 * wall_s <= agent_s <= 1.25 * wall_s:
        return agent_s
    return wall_s


def uptime_reset(prev_ticks: int, cur_ticks: int, elapsed_s: float) -> bool:
    """Tell whether sysUpTime shows a restart between two polls ``elapsed_s`` apart.

    A restart is sysUpTime going backwards, unless the previous value was close enough to 2**32
    ticks for the counter to have wrapped (after ~497 days of uptime), or sysUpTime advancing
    clearly less than the time that passed (the device went down and came back between two
    polls, as when polls time out while it reboots). The slack, 10 s or 10 % of ``elapsed_s``,
    absorbs request latency and clock drift. Net-snmp reports the agent's own uptime, so an
    snmpd restart counts as a restart too: it costs one poll's rates, nothing else.
    """
    elapsed_ticks = max(0.0, elapsed_s) * TICKS_PER_S
    slack = max(10 * TICKS_PER_S, 0.1 * elapsed_ticks)
    if cur_ticks < prev_ticks:
        if prev_ticks + elapsed_ticks + slack < TICKS_WRAP:
            return True
        advance = cur_ticks + TICKS_WRAP - prev_ticks
    else:
        advance = cur_ticks - prev_ticks
    return advance + slack < elapsed_ticks
