"""Console log ingest: the kernel lines the oracle cares about, boots, stamps, bad input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.ingest.console import (
    _ANY_MESSAGE,
    _MESSAGES,
    DUPLEX_CODES,
    LINUX_6_1_CONSOLE_MESSAGES,
    NOT_OF_INTEREST,
    PAUSE_CODES,
    ConsoleFault,
    ConsoleFormatError,
    link_speed_mbps,
    parse_console,
    read_console,
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


def test_the_message_table_covers_every_console_kind_and_each_format_once():
    kinds = {k for k, *_ in LINUX_6_1_CONSOLE_MESSAGES}
    assert kinds == {k for k in EventKind if 40 <= k <= 59}
    formats = [fmt for _, fmt, *_ in LINUX_6_1_CONSOLE_MESSAGES]
    assert len(formats) == len(set(formats))


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


def test_line_without_host_stamp_is_reported_at_its_byte_offset():
    with pytest.raises(ConsoleFormatError) as info:
        parse_console(BOOT + b"garbage without a stamp\n", "run/console.log")
    assert (info.value.line, info.value.offset, info.value.fault) == (6, len(BOOT), ConsoleFault.NO_HOST_STAMP)
    assert f"line 6 (byte offset {len(BOOT)})" in str(info.value)


def test_binary_line_without_stamp_is_undecodable():
    c = parse_console(BOOT + b"\x00\x00\xff\xfe\x00\n", "c", strict=False)
    assert len(c) == 5 and [(e.line, e.offset, e.fault) for e in c.errors] == [(6, len(BOOT), ConsoleFault.UNDECODABLE)]


def test_control_bytes_without_stamp_are_binary_not_text():
    c = parse_console(BOOT + b"\x1b[6n\x07\n", "c", strict=False)
    assert [e.fault for e in c.errors] == [ConsoleFault.UNDECODABLE]


def test_odd_bytes_inside_a_stamped_line_are_kept_not_an_error():
    c = parse_console(BOOT + b"1002.000000 [    2.000000] eth0: \xff\x00\x1b odd\n", "c")
    assert c.errors == [] and len(c) == 6 and "\ufffd" in c.text[-1]


def test_host_stamp_going_backwards_is_an_error_naming_the_line():
    with pytest.raises(ConsoleFormatError) as info:
        parse_console(BOOT + b"1000.500000 [    2.000000] late writer\n", "c")
    assert (info.value.line, info.value.offset, info.value.fault) == (6, len(BOOT), ConsoleFault.STAMP_BACKWARDS)
    assert "before line 5's" in str(info.value) and len(info.value.partial) == 5


def test_lenient_parse_keeps_a_line_stamped_backwards_and_lists_it():
    c = parse_console(BOOT + b"1000.500000 [    2.000000] late\n1002.000000 next\n", "c", strict=False)
    assert len(c) == 7 and [e.line for e in c.errors] == [6]


def test_equal_host_stamps_are_in_order():
    assert parse_console(log("1.000000 a", "1.000000 b"), "c").errors == []


def test_empty_log_is_an_error_a_booted_board_always_prints():
    with pytest.raises(ConsoleFormatError) as info:
        parse_console(b"", "run/console.log")
    assert (info.value.line, info.value.offset, info.value.fault) == (1, 0, ConsoleFault.EMPTY)
    c = parse_console(b"", "c", strict=False)
    assert len(c) == 0 and c.boots == 0 and len(c.events()) == 0 and [e.fault for e in c.errors] == [ConsoleFault.EMPTY]


def test_missing_log_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(ConsoleFormatError, match="console.log: missing") as info:
        read_console(tmp_path / "console.log")
    assert info.value.fault == ConsoleFault.MISSING
    c = read_console(tmp_path / "console.log", strict=False)
    assert len(c) == 0 and [e.fault for e in c.errors] == [ConsoleFault.MISSING]


# --- kernel faults ------------------------------------------------------------------------
# One line per format of the table, as Linux 6.1 prints it on the AST2500
# (aspeed_g5_defconfig: SMP, no PREEMPT, ARM; CONFIG_PANIC_ON_OOPS).
EXAMPLE_OF_FORMAT = {
    "Linux version %s (%s@%s) (%s) %s":
        "Linux version 6.1.192 (bmc-hil@bmc-hil) (arm-linux-gnueabi-gcc (Debian 12.2.0-14) 12.2.0, "
        "GNU ld (GNU Binutils for Debian) 2.40) #1 SMP Sat Jan  1 00:00:00 UTC 2023",
    "Run %s as init process": "Run /init as init process",
    "%s %s %s: Link is Down": "ftgmac100 1e660000.ethernet eth0: Link is Down",
    "%s %s %s: Link is Up - %s/%s %s- flow control %s":
        "ftgmac100 1e660000.ethernet eth0: Link is Up - 100Mbps/Full - flow control rx/tx",
    "watchdog: watchdog%d: watchdog did not stop!": "watchdog: watchdog0: watchdog did not stop!",
    "%s %s %s: NETDEV WATCHDOG: CPU: %d: transmit queue %u timed out %u ms":
        "ftgmac100 1e660000.ethernet eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 0 timed out 5040 ms",
    "reboot: Restarting system": "reboot: Restarting system",
    "TCP: %s: Possible SYN flooding on port %d. %s.  Check SNMP counters.":
        "TCP: request_sock_TCP: Possible SYN flooding on port 80. Sending cookies.  Check SNMP counters.",
    "Kernel panic - not syncing: %s": "Kernel panic - not syncing: Fatal exception",
    "Internal error: %s: %x [#%d]%s%s%s": "Internal error: Oops: 5 [#1] SMP ARM",
    "Unable to handle kernel %s at virtual address %08lx":
        "Unable to handle kernel NULL pointer dereference at virtual address 00000000",
    "kernel BUG at %s:%u!": "kernel BUG at drivers/net/ethernet/faraday/ftgmac100.c:1235!",
    "Kernel BUG at %pB [verbose debug info unavailable]":
        "Kernel BUG at ftgmac100_poll+0x3c/0x2a0 [verbose debug info unavailable]",
    "watchdog: BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]":
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [kworker/0:1:23]",
    "BUG: scheduling while atomic: %s/%d/0x%08x": "BUG: scheduling while atomic: kworker/0:1/23/0x00000002",
    "BUG: spinlock %s on CPU#%d, %s/%d": "BUG: spinlock bad magic on CPU#0, swapper/0/1",
    "BUG: %s": "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
    "WARNING: CPU: %d PID: %d at %s:%d %pS":
        "WARNING: CPU: 0 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x2d8/0x2e0",
    "WARNING: CPU: %d PID: %d at %pS": "WARNING: CPU: 0 PID: 112 at aspeed_video_irq+0x1e4/0x3c8 [aspeed_video]",
}

# Lines a healthy boot, an oops's own body and user space print: none is an event.
ORDINARY_LINES = [
    "Booting Linux on physical CPU 0x0",
    "Kernel command line: console=ttyS4,115200n8 root=/dev/ram rw",
    "WARNING: 'bootconfig' found on the kernel command line but CONFIG_BOOT_CONFIG is not set.",
    "random: crng init done",
    "NET: Registered PF_INET protocol family",
    "8<--- cut here ---",
    "------------[ cut here ]------------",
    "[00000000] *pgd=00000000",
    "Modules linked in:",
    "CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.192 #1",
    "Hardware name: Generic DT based system",
    "PC is at ftgmac100_poll+0x3c/0x2a0",
    "Process swapper/0 (pid: 1, stack limit = 0x(ptrval))",
    "---[ end trace 0000000000000000 ]---",
    "---[ end Kernel panic - not syncing: Fatal exception ]---",
    "bmc-hil: services started ports=22,80",
    "Internal error: could not open /dev/ipmi0",
    "# echo BUG: not a kernel line",
    "ipmid: BUG: reported by an application",
]


def stamped(message: str) -> bytes:
    return log(f"1234.567890 [   42.123456] {message}")


@pytest.mark.parametrize("kind,fmt,where,rx", LINUX_6_1_CONSOLE_MESSAGES, ids=lambda v: str(v)[:40])
def test_each_kernel_format_is_read_from_a_real_looking_line(kind, fmt, where, rx):
    message = EXAMPLE_OF_FORMAT[fmt]
    assert re.search(rx, message), (where, message)  # its own pattern, not only an earlier row
    c = parse_console(stamped(message), "c")
    assert (c.kind[0], c.guest_ns[0], c.host_wall_ns[0]) == (kind, 42_123_456_000, 1234_567_890_000)


def test_every_format_has_an_example_line():
    assert {fmt for _, fmt, *_ in LINUX_6_1_CONSOLE_MESSAGES} == set(EXAMPLE_OF_FORMAT)


@pytest.mark.parametrize("message", ORDINARY_LINES)
def test_ordinary_lines_are_not_of_interest(message):
    assert parse_console(stamped(message), "c").kind[0] == NOT_OF_INTEREST


@pytest.mark.parametrize("message", ["ipmid: BUG: reported by an application", "Internal error: could not open x"])
def test_user_space_line_without_a_printk_stamp_is_not_a_kernel_fault(message):
    assert parse_console(log(f"5.000000 {message}"), "c").kind[0] == NOT_OF_INTEREST


def _kinds_of(messages: list[str]) -> list[EventKind]:
    text = b"".join(log(f"{100 + i}.000000 [   {50 + i}.000000] {m}") for i, m in enumerate(messages))
    return [EventKind(k) for k in parse_console(text, "c").events().kind.tolist()]


def test_arm_null_pointer_oops_then_panic_on_oops():
    # arch/arm/mm/fault.c die_kernel_fault, then die -> __die, then oops_end's panic
    assert _kinds_of([
        "8<--- cut here ---",
        "Unable to handle kernel NULL pointer dereference at virtual address 00000000",
        "[00000000] *pgd=00000000",
        "Internal error: Oops: 5 [#1] SMP ARM",
        "CPU: 0 PID: 23 Comm: kworker/0:1 Not tainted 6.1.192 #1",
        "PC is at ftgmac100_poll+0x3c/0x2a0",
        "---[ end trace 0000000000000000 ]---",
        "Kernel panic - not syncing: Fatal exception",
        "---[ end Kernel panic - not syncing: Fatal exception ]---",
    ]) == [EventKind.KERNEL_OOPS, EventKind.KERNEL_OOPS, EventKind.KERNEL_PANIC]


def test_bug_is_a_bug_and_dies_oops_bug_line_is_an_oops():
    # report_bug prints "kernel BUG at"; die() then calls __die with "Oops - BUG"
    assert _kinds_of([
        "------------[ cut here ]------------",
        "kernel BUG at drivers/net/ethernet/faraday/ftgmac100.c:1235!",
        "Internal error: Oops - BUG: 0 [#1] SMP ARM",
        "Kernel panic - not syncing: Fatal exception in interrupt",
    ]) == [EventKind.KERNEL_BUG, EventKind.KERNEL_OOPS, EventKind.KERNEL_PANIC]


def test_soft_lockup_with_softlockup_panic():
    # kernel/watchdog.c watchdog_timer_fn (aspeed_g5_defconfig sets BOOTPARAM_SOFTLOCKUP_PANIC)
    assert _kinds_of([
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [kworker/0:1:23]",
        "Modules linked in:",
        "Kernel panic - not syncing: softlockup: hung tasks",
    ]) == [EventKind.KERNEL_BUG, EventKind.KERNEL_PANIC]


def test_warning_is_one_event_for_its_whole_report():
    assert _kinds_of([
        "------------[ cut here ]------------",
        "WARNING: CPU: 0 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x2d8/0x2e0",
        "Modules linked in:",
        "CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.1.192 #1",
        "Hardware name: Generic DT based system",
        "---[ end trace 0000000000000000 ]---",
    ]) == [EventKind.KERNEL_WARNING]


# --- the pre-filter -------------------------------------------------------------------------


def _any_pattern(message: str) -> bool:
    return any(rx.search(message) for _, rx in _MESSAGES)


@pytest.mark.parametrize("message", [*EXAMPLE_OF_FORMAT.values(), *ORDINARY_LINES])
def test_prefilter_passes_exactly_the_lines_some_pattern_matches(message):
    assert bool(_ANY_MESSAGE.search(message)) == _any_pattern(message)


_PIECES = sorted({w for m in [*EXAMPLE_OF_FORMAT.values(), *ORDINARY_LINES] for w in re.split(r"(\s+)", m)})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14), st.booleans())
def test_prefilter_agrees_with_the_patterns_on_spliced_kernel_text(pieces, joined):
    message = ("" if joined else " ").join(pieces)
    assert bool(_ANY_MESSAGE.search(message)) == _any_pattern(message)


@pytest.mark.parametrize("action, cookies", [("Sending cookies", 1), ("Dropping request", 0)])
def test_syn_flood_line_gives_the_port_and_whether_cookies_are_sent(action, cookies):
    # tcp_syn_flood_action: "%s: Possible SYN flooding on port %d. %s.  Check SNMP counters."
    c = parse_console(stamped(f"TCP: request_sock_TCP: Possible SYN flooding on port 22. {action}.  "
                              "Check SNMP counters."), "c")
    assert (c.kind[0], c.detail0[0], c.detail1[0]) == (EventKind.SYN_FLOOD, 22, cookies)
