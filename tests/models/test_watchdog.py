"""aspeed_wdt registers, the watchdog core's release rules, busybox's watchdog daemon."""

from __future__ import annotations

from models.clock import sec
from models.watchdog import (
    DID_NOT_STOP,
    WDT_RESTART,
    WDT_RESTART_MAGIC,
    AspeedWdt,
    BusyboxWatchdog,
    WatchdogCore,
)


def test_did_not_stop_line_matches_watchdog_dev():
    assert DID_NOT_STOP == "watchdog: watchdog0: watchdog did not stop!"


def test_open_starts_with_the_30_s_driver_default():
    wdt = AspeedWdt()
    WatchdogCore(wdt).open(sec(2))
    assert wdt.expires_at == sec(32)


def test_restart_magic_reloads_the_counter():
    wdt = AspeedWdt()
    wdt.start(0, 10)
    wdt.writel(sec(4), WDT_RESTART, WDT_RESTART_MAGIC)
    assert wdt.expires_at == sec(14)


def test_wrong_restart_value_does_not_reload():
    wdt = AspeedWdt()
    wdt.start(0, 10)
    wdt.writel(sec(4), WDT_RESTART, 0x1234)
    assert wdt.expires_at == sec(10)


def test_daemon_kicks_every_period():
    daemon = BusyboxWatchdog(WatchdogCore(AspeedWdt()), 5, 1)
    daemon.start(0)
    daemon.kick_due(sec(3))
    assert daemon.kicks == [0, sec(1), sec(2), sec(3)] and daemon.core.wdt.expires_at == sec(8)


def test_sigterm_magic_close_stops_the_watchdog():
    daemon = BusyboxWatchdog(WatchdogCore(AspeedWdt()), 5, 1)
    daemon.start(0)
    assert daemon.sigterm(sec(2)) == [] and daemon.core.wdt.expires_at is None


def test_sigkill_prints_did_not_stop_and_expires_timeout_after_close():
    daemon = BusyboxWatchdog(WatchdogCore(AspeedWdt()), 5, 1)
    daemon.start(0)
    daemon.kick_due(sec(2))
    assert daemon.sigkill(sec(2) + 500_000_000) == [DID_NOT_STOP]
    assert daemon.core.wdt.expires_at == sec(7) + 500_000_000   # watchdog_release pings once more


def test_hung_daemon_expires_timeout_after_last_kick():
    daemon = BusyboxWatchdog(WatchdogCore(AspeedWdt()), 5, 1)
    daemon.start(0)
    daemon.kick_due(sec(2))
    daemon.stop_kicking(sec(2) + 500_000_000)
    assert daemon.core.wdt.expires_at == sec(7)


def test_reboot_path_arms_128_ms():
    wdt = AspeedWdt()
    wdt.restart(sec(1))
    assert wdt.expires_at == sec(1) + 128_000_000
