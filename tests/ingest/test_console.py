"""Console log ingest: the kernel lines the oracle cares about, boots, stamps, bad input."""

from __future__ import annotations

import pytest

from harness.ingest.console import (
    DUPLEX_CODES,
    LINUX_6_1_CONSOLE_MESSAGES,
    NOT_OF_INTEREST,
    PAUSE_CODES,
    ConsoleFormatError,
    link_speed_mbps,
    parse_console,
)
from harness.ingest.events import Clock, EventKind

BOOT = b"""1000.000100 [    0.000000] Booting Linux on physical CPU 0x0
1000.000200 [    0.000000] Linux version 6.1.192 (bmc-hil@bmc-hil) (gcc) #1 SMP 2023-01-01
1000.900000 [    0.964534] Run /init as init process
1001.200000 [    1.203773] ftgmac100 1e660000.ethernet eth0: Link is Up - 100Mbps/Full - flow control rx/tx
1001.300000 bmc-hil: services started ports=22,80
"""


def log(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def test_each_line_keeps_host_and_guest_stamps_and_line_number():
    c = parse_console(BOOT, "c.log")
    assert c.host_wall_ns.tolist()[2] == 1000_900_000_000
    assert c.guest_ns.tolist() == [0, 0, 964_534_000, 1_203_773_000, -1]
    assert c.line.tolist() == [1, 2, 3, 4, 5]


def test_kernel_lines_of_interest_get_their_kind():
    c = parse_console(BOOT, "c.log")
    assert c.kind.tolist() == [NOT_OF_INTEREST, EventKind.BOOT, EventKind.INIT, EventKind.LINK_UP, NOT_OF_INTEREST]


def test_link_up_carries_speed_duplex_and_pause():
    c = parse_console(BOOT, "c.log")
    assert (c.detail0[3], c.detail1[3], c.detail2[3]) == (100, DUPLEX_CODES["Full"], PAUSE_CODES["rx/tx"])


@pytest.mark.parametrize("text,speed", [("10Mbps", 10), ("1Gbps", 1000), ("2.5Gbps", 2500), ("Unknown", -1)])
def test_phylib_speed_strings_become_mbps(text, speed):
    assert link_speed_mbps(text) == speed


def test_link_up_half_duplex_without_pause():
    c = parse_console(log("5.000000 [    2.000000] ftgmac100 1e660000.ethernet eth0: Link is Up - "
                          "10Mbps/Half - flow control off"), "c.log")
    assert (c.kind[0], c.detail0[0], c.detail1[0], c.detail2[0]) == (EventKind.LINK_UP, 10, 0, 0)


def test_kernel_line_after_a_shell_prompt_is_recognised():
    c = parse_console(log("5.000000 # \ufffd[6n[    3.309246] ftgmac100 1e660000.ethernet eth0: Link is Down"), "c")
    assert c.kind[0] == EventKind.LINK_DOWN and c.guest_ns[0] == 3_309_246_000


@pytest.mark.parametrize("message,kind,detail0", [
    ("watchdog: watchdog0: watchdog did not stop!", EventKind.WATCHDOG_DID_NOT_STOP, 0),
    ("------------[ cut here ]------------ NETDEV WATCHDOG: eth0 (ftgmac100): transmit queue 2 timed out",
     EventKind.NETDEV_WATCHDOG, 2),
    ("ftgmac100 1e660000.ethernet eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 3 timed out 5040 ms",
     EventKind.NETDEV_WATCHDOG, 3),
    ("reboot: Restarting system", EventKind.RESTARTING, 0),
    ("Kernel panic - not syncing: No working init found.", EventKind.KERNEL_PANIC, 0),
])
def test_watchdog_reboot_and_panic_lines_are_recognised(message, kind, detail0):
    c = parse_console(log(f"7.000000 [   12.739537] {message}"), "c")
    assert (c.kind[0], c.detail0[0]) == (kind, detail0)


def test_the_message_table_covers_every_console_kind_once():
    kinds = [k for k, *_ in LINUX_6_1_CONSOLE_MESSAGES]
    assert sorted(kinds) == sorted(set(kinds)) and EventKind.LINK_DOWN in kinds


def test_user_space_line_quoting_a_kernel_message_mid_line_is_not_a_boot():
    c = parse_console(log("5.000000 # echo Linux version 9"), "c")
    assert c.kind[0] == NOT_OF_INTEREST


def test_each_banner_starts_a_new_boot():
    second = BOOT.replace(b"1000.", b"2000.").replace(b"1001.", b"2001.")
    c = parse_console(BOOT + log("1500.000000 [  500.000000] watchdog: watchdog0: watchdog did not stop!") + second,
                      "c")
    assert c.boots == 2
    assert c.boot.tolist() == [0] * 6 + [1] * 5  # "Booting Linux" at 0.000000 opens the second boot


def test_printk_clock_restart_without_banner_starts_a_new_boot():
    c = parse_console(log("1.000000 [   30.000000] a", "2.000000 [    0.500000] b"), "c")
    assert c.boot.tolist() == [0, 1]


def test_log_starting_mid_run_calls_its_first_boot_zero():
    c = parse_console(log("1.000000 [ 3000.000000] a", "2.000000 [ 3001.000000] b"), "c")
    assert c.boot.tolist() == [0, 0] and c.boots == 1


def test_binary_noise_and_invalid_utf8_do_not_stop_the_parse():
    c = parse_console(b"1.000000 \xff\xfe\x00\x1b[6n garbage\n2.000000 [    1.000000] reboot: Restarting system\n", "c")
    assert len(c) == 2 and c.kind[1] == EventKind.RESTARTING and "\ufffd" in c.text[0]


def test_carriage_returns_are_dropped():
    c = parse_console(b"1.000000 [    1.000000] reboot: Restarting system\r\n", "c")
    assert c.text[0].endswith("system") and c.kind[0] == EventKind.RESTARTING


def test_line_without_host_stamp_names_file_and_line_and_keeps_what_was_read():
    with pytest.raises(ConsoleFormatError) as info:
        parse_console(BOOT + b"garbage without a stamp\n1002.000000 later\n", "run/console.log")
    err = info.value
    assert (err.source, err.line) == ("run/console.log", 6)
    assert "run/console.log" in str(err) and "line 6" in str(err)
    assert len(err.partial) == 5


def test_lenient_parse_skips_unreadable_lines_and_lists_them():
    c = parse_console(BOOT + b"1002.0 truncated stamp\n1002.000000 later\n", "c", strict=False)
    assert len(c) == 6 and c.text[-1] == "later"
    assert [e.line for e in c.errors] == [6]


def test_events_use_the_guest_clock_when_stamped_else_host_wall():
    c = parse_console(BOOT + log("1002.000000 Kernel panic - not syncing: x"), "c")
    ev = c.events()
    assert ev.kind.tolist() == [EventKind.BOOT, EventKind.INIT, EventKind.LINK_UP, EventKind.KERNEL_PANIC]
    assert ev.clock.tolist() == [Clock.GUEST] * 3 + [Clock.HOST_WALL]
    assert ev.time_ns.tolist()[1] == 964_534_000 and ev.time_ns.tolist()[3] == 1002_000_000_000
    assert ev.line.tolist() == [2, 3, 4, 6]


def test_empty_log_has_no_lines_and_no_boots():
    c = parse_console(b"", "c")
    assert len(c) == 0 and c.boots == 0 and len(c.events()) == 0
