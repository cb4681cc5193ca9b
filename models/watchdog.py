"""The AST2500 watchdog (drivers/watchdog/aspeed_wdt.c) under the watchdog core
(watchdog_dev.c), and busybox's `watchdog` daemon that keeps it fed.

aspeed_wdt counts down at 1 MHz from WDT_RELOAD_VALUE; writing WDT_RESTART_MAGIC
(0x4755) to WDT_RESTART reloads it; WDT_CTRL bit 0 enables it. Expiry resets the SoC.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import NSEC_PER_SEC

__all__ = ["AspeedWdt", "WatchdogCore", "BusyboxWatchdog", "WDT_RESTART_MAGIC", "WDT_DEFAULT_TIMEOUT",
           "WDT_RATE_1MHZ", "DID_NOT_STOP"]

WDT_RELOAD_VALUE = 0x04
WDT_RESTART = 0x08
WDT_CTRL = 0x0C
WDT_CTRL_ENABLE = 1 << 0
WDT_CTRL_RESET_SYSTEM = 1 << 1
WDT_CTRL_1MHZ_CLK = 1 << 4
WDT_RESTART_MAGIC = 0x4755
WDT_DEFAULT_TIMEOUT = 30
WDT_RATE_1MHZ = 1_000_000
WDT_MAX_TIMEOUT_MS = 4294967
# watchdog_dev.c watchdog_release(): pr_crit("watchdog%d: watchdog did not stop!\n") with
# pr_fmt "watchdog: " (KBUILD_MODNAME of watchdog_core.o + watchdog_dev.o)
DID_NOT_STOP = "watchdog: watchdog0: watchdog did not stop!"
RESTART_LINE = "reboot: Restarting system"


@dataclass
class AspeedWdt:
    """The WDT registers; `expires_at` is when the counter reaches zero."""

    reload: int = 0
    ctrl: int = 0
    expires_at: int | None = None

    def writel(self, now: int, reg: int, value: int) -> None:
        if reg == WDT_RELOAD_VALUE:
            self.reload = value
        elif reg == WDT_RESTART:
            if value == WDT_RESTART_MAGIC and self.ctrl & WDT_CTRL_ENABLE:
                self._reload(now)
        elif reg == WDT_CTRL:
            was = self.ctrl & WDT_CTRL_ENABLE
            self.ctrl = value
            if value & WDT_CTRL_ENABLE and not was:
                self._reload(now)
            elif not value & WDT_CTRL_ENABLE:
                self.expires_at = None

    def _reload(self, now: int) -> None:
        self.expires_at = now + self.reload * (NSEC_PER_SEC // WDT_RATE_1MHZ)

    # aspeed_wdt_ops, as the driver programs the registers
    def aspeed_wdt_enable(self, now: int, count: int) -> None:
        self.ctrl |= WDT_CTRL_ENABLE
        ctrl = self.ctrl
        self.writel(now, WDT_CTRL, 0)
        self.writel(now, WDT_RELOAD_VALUE, count)
        self.writel(now, WDT_RESTART, WDT_RESTART_MAGIC)
        self.writel(now, WDT_CTRL, ctrl)

    def start(self, now: int, timeout_s: int) -> None:
        self.aspeed_wdt_enable(now, timeout_s * WDT_RATE_1MHZ)

    def stop(self, now: int) -> None:
        self.writel(now, WDT_CTRL, self.ctrl & ~WDT_CTRL_ENABLE)

    def ping(self, now: int) -> None:
        self.writel(now, WDT_RESTART, WDT_RESTART_MAGIC)

    def set_timeout(self, now: int, timeout_s: int) -> None:
        actual = min(timeout_s, WDT_MAX_TIMEOUT_MS // 1000)
        self.writel(now, WDT_RELOAD_VALUE, actual * WDT_RATE_1MHZ)
        self.writel(now, WDT_RESTART, WDT_RESTART_MAGIC)

    def restart(self, now: int) -> None:
        """aspeed_wdt_restart(): the reboot path arms a 128 ms expiry."""
        self.aspeed_wdt_enable(now, 128 * WDT_RATE_1MHZ // 1000)


class WatchdogCore:
    """/dev/watchdog0 over aspeed_wdt (WDIOF_MAGICCLOSE; aspeed's max_hw_heartbeat is longer
    than any timeout, so the core's worker never pings on its own)."""

    def __init__(self, wdt: AspeedWdt):
        self.wdt = wdt
        self.timeout = WDT_DEFAULT_TIMEOUT
        self.active = False
        self.open_ = False
        self.allow_release = False

    def open(self, now: int) -> None:
        """watchdog_open(): opening starts the watchdog."""
        self.open_ = True
        if not self.active:
            self.wdt.start(now, self.timeout)
            self.active = True

    def set_timeout(self, now: int, seconds: int) -> None:
        """WDIOC_SETTIMEOUT."""
        self.timeout = seconds
        self.wdt.set_timeout(now, seconds)

    def write(self, now: int, data: bytes) -> None:
        """watchdog_write(): any write pings; a 'V' arms the magic close."""
        self.allow_release = b"V" in data
        self.wdt.ping(now)

    def disable_card(self, now: int) -> None:
        """WDIOC_SETOPTIONS WDIOS_DISABLECARD."""
        self.wdt.stop(now)
        self.active = False

    def release(self, now: int) -> list[str]:
        """watchdog_release(): stop on magic close, else complain and ping once more."""
        lines = []
        if self.active and self.allow_release:
            self.wdt.stop(now)
            self.active = False
        elif self.active:
            lines.append(DID_NOT_STOP)
            self.wdt.ping(now)
        self.open_ = False
        self.allow_release = False
        return lines


class BusyboxWatchdog:
    """busybox `watchdog -T timeout -t period /dev/watchdog`: open, enable, set the
    timeout, then write every period; SIGTERM writes 'V' and closes (watchdog_shutdown)."""

    def __init__(self, core: WatchdogCore, timeout_s: int, period_s: int):
        self.core = core
        self.timeout_s = timeout_s
        self.period = period_s * NSEC_PER_SEC
        self.alive = False
        self.next_kick: int | None = None
        self.kicks: list[int] = []

    def start(self, now: int) -> None:
        self.core.open(now)
        self.core.set_timeout(now, self.timeout_s)
        self.alive = True
        self.next_kick = now
        self.kick_due(now)

    def poll_at(self) -> int | None:
        return self.next_kick if self.alive else None

    def kick_due(self, now: int) -> None:
        while self.alive and self.next_kick is not None and self.next_kick <= now:
            self.core.write(self.next_kick, b"\0")
            self.kicks.append(self.next_kick)
            self.next_kick += self.period

    def sigterm(self, now: int) -> list[str]:
        self.alive = False
        self.core.disable_card(now)
        self.core.write(now, b"V")
        return self.core.release(now)

    def sigkill(self, now: int) -> list[str]:
        """The process dies; the kernel closes its fd without the magic character."""
        self.alive = False
        return self.core.release(now)

    def stop_kicking(self, now: int) -> None:
        """The daemon hangs (SIGSTOP): the fd stays open, nothing pings."""
        self.alive = False

