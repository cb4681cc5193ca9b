"""Time in the model: int nanoseconds, jiffies at the board's HZ, and windows.

aspeed_g5_defconfig sets no CONFIG_HZ_*, and the first entry of arch/arm/Kconfig's
"Timer frequency" choice (HZ_100) is the default, so kernel timers tick every 10 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HZ", "JIFFY", "NSEC_PER_MSEC", "NSEC_PER_SEC", "Window", "ms", "sec", "jiffies", "usecs_to_jiffies_ns",
           "msecs_to_jiffies_ns", "timer_wheel_slack"]

HZ = 100
NSEC_PER_MSEC = 1_000_000
NSEC_PER_SEC = 1_000_000_000
JIFFY = NSEC_PER_SEC // HZ


def ms(value: float) -> int:
    """Milliseconds to model time (ns)."""
    return int(round(value * NSEC_PER_MSEC))


def sec(value: float) -> int:
    """Seconds to model time (ns)."""
    return int(round(value * NSEC_PER_SEC))


def jiffies(count: int) -> int:
    """A kernel timeout given in jiffies, as model time (ns)."""
    return count * JIFFY


def usecs_to_jiffies_ns(usecs: int) -> int:
    """usecs_to_jiffies() rounds up; returned as model time."""
    return -(-usecs * HZ // 1_000_000) * JIFFY


def msecs_to_jiffies_ns(msecs: int) -> int:
    """msecs_to_jiffies() rounds up; returned as model time."""
    return -(-msecs * HZ // 1000) * JIFFY


@dataclass(frozen=True)
class Window:
    """When something Linux randomises may happen: earliest..latest, both inclusive (ns)."""

    earliest: int
    latest: int

    def __post_init__(self):
        if self.latest < self.earliest:
            raise ValueError(f"empty window {self.earliest}..{self.latest}")

    def shift(self, dt: int) -> Window:
        return Window(self.earliest + dt, self.latest + dt)

    def __contains__(self, t: int) -> bool:
        return self.earliest <= t <= self.latest


# kernel/time/timer.c: the timer wheel files a timer `delta` jiffies out in level n
# (delta < LVL_START(n + 1) = 63 << 3n) and rounds its expiry up to that level's
# granularity LVL_GRAN(n) = 8^n jiffies (calc_index), so it fires up to that much late.
_LVL_CLK_SHIFT = 3
_LVL_SIZE = 64


def timer_wheel_slack(delta_ns: int) -> int:
    """How late (ns, at most) a kernel timer set `delta_ns` ahead may fire: one
    granule of its level, plus the jiffy calc_index always adds."""
    delta = -(-int(delta_ns) // JIFFY)
    level = 0
    while level < 8 and delta >= (_LVL_SIZE - 1) << (level * _LVL_CLK_SHIFT):
        level += 1
    return (1 << (level * _LVL_CLK_SHIFT)) * JIFFY + JIFFY
