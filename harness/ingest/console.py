"""Console log ingest: console.log (written by harness.board.console) -> columnar arrays.

Each line of the log is `<host wall seconds, 6 decimals> <text>`; the text may carry a
printk stamp `[   12.345678] ` at its start or after a shell prompt. The kernel lines the
oracle cares about are recognised from `LINUX_6_1_CONSOLE_MESSAGES` and given an
`EventKind`; every other line is kept with kind 0.

The guest's printk clock restarts at 0 on every boot, so each line carries the index of
its boot: a new boot starts at each `Linux version` banner (and, should the banner be
lost in noise, wherever the printk clock runs backwards by more than a second; that is
also where a boot's first line, stamped 0.000000 before its banner, starts it).

A board that booted always prints, and the harness's console driver stamps every line it
writes, in order: a log that is missing or empty, a line without the stamp (binary noise,
a line cut by a crash, another writer), or stamps that go backwards is damaged input, and
each is a `ConsoleFormatError` naming the file, the line and its byte offset. Odd bytes
inside a stamped line are what the board printed: kept, decoded with replacement.

Sans-IO: `parse_console` takes the bytes (or text) and the name of their source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.ingest.events import Clock, EventKind, EventTable

NOT_OF_INTEREST = 0  # the `kind` of a line the oracle does not look at

# The exact kernel strings, as Linux 6.1 prints them: (kind, format in the kernel source,
# where, regex over the message after the printk stamp). The model issue will own these;
# until then this table is the single place they are written down.
LINUX_6_1_CONSOLE_MESSAGES: tuple[tuple[EventKind, str, str, str], ...] = (
    (EventKind.BOOT, "Linux version %s (%s@%s) (%s) %s", "init/version.c linux_banner",
     r"^Linux version (?P<release>\S+)"),
    (EventKind.INIT, "Run %s as init process", "init/main.c run_init_process",
     r"^Run (?P<init>\S+) as init process"),
    (EventKind.LINK_DOWN, "%s %s %s: Link is Down", "drivers/net/phy/phy.c phy_print_status (netdev_info)",
     r"(?<!\S)(?P<dev>\S+): Link is Down\s*$"),
    (EventKind.LINK_UP, "%s %s %s: Link is Up - %s/%s %s- flow control %s",
     "drivers/net/phy/phy.c phy_print_status (netdev_info)",
     r"(?<!\S)(?P<dev>\S+): Link is Up - (?P<speed>\S+)/(?P<duplex>\w+) (?:\(downshifted\) )?"
     r"- flow control (?P<pause>rx/tx|rx|tx|off)"),
    (EventKind.WATCHDOG_DID_NOT_STOP, "watchdog: watchdog%d: watchdog did not stop!",
     "drivers/watchdog/watchdog_dev.c watchdog_release (pr_crit)",
     r"^watchdog: watchdog(?P<id>\d+): watchdog did not stop!"),
    # 6.1.192 (Debian's linux-source-6.1) prints it with netdev_crit, not the older WARN_ONCE
    # form "NETDEV WATCHDOG: eth0 (ftgmac100): transmit queue 0 timed out"; both are read.
    (EventKind.NETDEV_WATCHDOG, "%s %s %s: NETDEV WATCHDOG: CPU: %d: transmit queue %u timed out %u ms",
     "net/sched/sch_generic.c dev_watchdog (netdev_crit)",
     r"NETDEV WATCHDOG: (?:CPU: \d+: |(?P<dev>\S+) \((?P<driver>[^)]*)\): )transmit queue (?P<queue>\d+) timed out"),
    (EventKind.RESTARTING, "reboot: Restarting system", "kernel/reboot.c kernel_restart (pr_emerg)",
     r"^reboot: Restarting system"),
    # once per listener, when its SYN queue is first full (or always, tcp_syncookies 2: never)
    (EventKind.SYN_FLOOD, "TCP: %s: Possible SYN flooding on port %d. %s.  Check SNMP counters.",
     "net/ipv4/tcp_input.c tcp_syn_flood_action (net_info_ratelimited)",
     r"^TCP: (?P<proto>\S+): Possible SYN flooding on port (?P<port>\d+)\. "
     r"(?P<action>Sending cookies|Dropping request)\."),
    # panic() ends with "---[ end Kernel panic - not syncing: %s ]---": the same panic, not a
    # second one.
    (EventKind.KERNEL_PANIC, "Kernel panic - not syncing: %s", "kernel/panic.c panic (pr_emerg)",
     r"Kernel panic - not syncing: (?<!end Kernel panic - not syncing: )"),
    # Kernel faults: a firmware must never print one. An ARM kernel fault prints "Unable to
    # handle kernel ..." and then die()'s "Internal error: Oops: ..." (and with
    # CONFIG_PANIC_ON_OOPS, aspeed_g5_defconfig's, "Kernel panic - not syncing: Fatal
    # exception"): one event per line printed. __die's %s is die()'s `str`: "Oops", "Oops -
    # BUG", "Oops - undefined instruction", "Oops - bad mode", ... (or "" for an unhandled
    # abort); the suffix is S_PREEMPT S_SMP S_ISA, e.g. " SMP ARM".
    (EventKind.KERNEL_OOPS, "Internal error: %s: %x [#%d]%s%s%s", "arch/arm/kernel/traps.c __die (pr_emerg), from die",
     r"Internal error: (?P<str>.*): (?P<err>[0-9a-f]+) \[#(?P<count>\d+)\]"),
    (EventKind.KERNEL_OOPS, "Unable to handle kernel %s at virtual address %08lx",
     "arch/arm/mm/fault.c die_kernel_fault (pr_alert), from __do_kernel_fault",
     r"Unable to handle kernel (?P<what>.+) at virtual address (?P<addr>[0-9a-f]+)"),
    (EventKind.KERNEL_BUG, "kernel BUG at %s:%u!", "lib/bug.c __report_bug (pr_crit), from report_bug",
     r"kernel BUG at (?P<file>\S+):(?P<line>\d+)!"),
    (EventKind.KERNEL_BUG, "Kernel BUG at %pB [verbose debug info unavailable]",
     "lib/bug.c __report_bug (pr_crit), from report_bug, without CONFIG_DEBUG_BUGVERBOSE",
     r"Kernel BUG at (?P<where>\S+) \[verbose debug info unavailable\]"),
    # The "BUG: " family is anchored at the message start: "Internal error: Oops - BUG: 0"
    # is die()'s line, not one of these. kernel/watchdog.c's pr_fmt puts "watchdog: " first.
    (EventKind.KERNEL_BUG, "watchdog: BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]",
     "kernel/watchdog.c watchdog_timer_fn (pr_emerg)",
     r"^watchdog: BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<secs>\d+)s!"),
    (EventKind.KERNEL_BUG, "BUG: scheduling while atomic: %s/%d/0x%08x", "kernel/sched/core.c __schedule_bug (printk)",
     r"^BUG: scheduling while atomic: "),
    (EventKind.KERNEL_BUG, "BUG: spinlock %s on CPU#%d, %s/%d",
     "kernel/locking/spinlock_debug.c spin_dump (printk), from spin_bug",
     r"^BUG: spinlock (?P<msg>.+) on CPU#(?P<cpu>\d+), "),
    # The rest of the family, e.g. "BUG: sleeping function called from invalid context at
    # %s:%d" (kernel/sched/core.c __might_resched), "BUG: workqueue lockup - pool"
    # (kernel/workqueue.c wq_watchdog_timer_fn), "BUG: Bad page state in process %s  pfn:%05lx"
    # (mm/page_alloc.c bad_page), "BUG: using %s%s() in preemptible [%08x] code: %s/%d"
    # (lib/smp_processor_id.c check_preemption_disabled), "BUG: rwlock %s on CPU#%d, %s/%d, %p"
    # (kernel/locking/spinlock_debug.c rwlock_bug).
    (EventKind.KERNEL_BUG, "BUG: %s", "the kernel's \"BUG: \" messages (see above)",
     r"^(?:watchdog: )?BUG: \S"),
    # __warn prints the file and line when the bug table has them (CONFIG_DEBUG_BUGVERBOSE),
    # else only the caller (%pS: "func+0x1c/0x40", and " [module]" for a module's).
    (EventKind.KERNEL_WARNING, "WARNING: CPU: %d PID: %d at %s:%d %pS", "kernel/panic.c __warn (pr_warn)",
     r"WARNING: CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) at (?P<file>\S+):(?P<line>\d+) (?P<caller>\S+)"),
    (EventKind.KERNEL_WARNING, "WARNING: CPU: %d PID: %d at %pS", "kernel/panic.c __warn (pr_warn), no file known",
     r"WARNING: CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) at (?P<caller>\S+)"),
)
_MESSAGES = [(kind, re.compile(rx)) for kind, _, _, rx in LINUX_6_1_CONSOLE_MESSAGES]
# One cheap test before the per-kind regexes: most lines match none. (Where a pattern must
# start with a class, `(?<!\S)` keeps `\S+` from being retried inside every word.)
# The patterns' group names are dropped: one name may not appear twice in a regex.
_GROUP_NAME = re.compile(r"[(][?]P<\w+>")
_ANY_MESSAGE = re.compile("|".join("(?:" + _GROUP_NAME.sub("(", rx) + ")" for *_, rx in LINUX_6_1_CONSOLE_MESSAGES))

_HOST_STAMP = re.compile(rb"^(\d{1,12})\.(\d{6}) ")
_PRINTK_STAMP = re.compile(r"\[\s*(\d+)\.(\d{6})\] ")
# A printk clock going back this far without a banner is a boot whose banner was lost.
_CLOCK_RESTART_NS = 1_000_000_000

PAUSE_CODES = {"off": 0, "rx": 1, "tx": 2, "rx/tx": 3}  # LINK_UP detail2
DUPLEX_CODES = {"Half": 0, "Full": 1}  # LINK_UP detail1; -1 for "Unknown"


def link_speed_mbps(text: str) -> int:
    """phy_speed_to_str's "100Mbps" / "2.5Gbps" -> Mb/s; -1 for "Unknown"."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([MG])bps", text)
    if not m:
        return -1
    return round(float(m.group(1)) * (1000 if m.group(2) == "G" else 1))


class ConsoleFault(Enum):
    """What is wrong with a console log (the value says it for a reader)."""

    MISSING = "missing"
    EMPTY = "empty"
    NO_HOST_STAMP = "no host time stamp"
    UNDECODABLE = "undecodable bytes"
    STAMP_BACKWARDS = "host time stamp goes backwards"


class ConsoleFormatError(HarnessError):
    """A console log that is not what the harness's console driver writes. Names the file,
    the line (1-based; 0 for the whole file) and its byte offset; `partial` holds the lines
    read before it."""

    def __init__(self, source: str, line: int, problem: str, partial: ConsoleLog | None = None, *,
                 offset: int = 0, fault: ConsoleFault = ConsoleFault.NO_HOST_STAMP):
        self.source = source
        self.line = line
        self.offset = offset
        self.fault = fault
        self.problem = problem
        self.partial = partial
        where = f"line {line} (byte offset {offset}): " if line else ""
        kept = f"; {len(partial)} lines read before it" if partial is not None else ""
        super().__init__(f"{source}: {where}{problem}{kept}")


@dataclass
class ConsoleLog:
    """A console log as columns, one row per readable line.

    detail0..2 by kind: LINK_UP speed Mb/s, duplex (DUPLEX_CODES), pause (PAUSE_CODES);
    WATCHDOG_DID_NOT_STOP watchdog id; NETDEV_WATCHDOG TX queue; SYN_FLOOD port and 1 for
    "Sending cookies" (0: "Dropping request"); 0 for the others (a
    KERNEL_PANIC, KERNEL_OOPS, KERNEL_BUG or KERNEL_WARNING line is told by its text).
    `boot` counts from 0; a log that starts mid-run calls the boot it starts in 0."""

    host_wall_ns: np.ndarray  # int64
    guest_ns: np.ndarray  # int64 printk stamp, -1 when the line has none
    line: np.ndarray  # int64, 1-based line number in the file
    kind: np.ndarray  # int16 EventKind, NOT_OF_INTEREST for other lines
    boot: np.ndarray  # int64 boot index (segment of the guest clock)
    detail0: np.ndarray
    detail1: np.ndarray
    detail2: np.ndarray
    text: list[str]
    source: str = ""
    errors: list[ConsoleFormatError] = field(default_factory=list)  # what strict=False read past

    def __len__(self) -> int:
        return self.line.shape[0]

    @property
    def boots(self) -> int:
        """How many boots the log shows."""
        return int(self.boot.max()) + 1 if len(self) else 0

    def events(self) -> EventTable:
        """The recognised lines as events: on the guest clock (segment = boot) when the line
        has a printk stamp, else on the host wall clock."""
        k = np.flatnonzero(self.kind != NOT_OF_INTEREST)
        stamped = self.guest_ns[k] >= 0
        n = k.size
        return EventTable(
            time_ns=np.where(stamped, self.guest_ns[k], self.host_wall_ns[k]),
            clock=np.where(stamped, Clock.GUEST, Clock.HOST_WALL).astype(np.int8),
            segment=np.where(stamped, self.boot[k], 0).astype(np.int64),
            kind=self.kind[k].copy(), line=self.line[k].copy(), detail0=self.detail0[k].copy(),
            detail1=self.detail1[k].copy(), mono_ns=np.full(n, -1, np.int64), source=self.source,
            names=[self.text[i] for i in k.tolist()])


def _classify(message: str) -> tuple[int, int, int, int]:
    """(kind, detail0, detail1, detail2) of one message (the text after any printk stamp)."""
    if not _ANY_MESSAGE.search(message):
        return NOT_OF_INTEREST, 0, 0, 0
    for kind, rx in _MESSAGES:
        m = rx.search(message)
        if not m:
            continue
        if kind == EventKind.LINK_UP:
            return (kind, link_speed_mbps(m["speed"]), DUPLEX_CODES.get(m["duplex"], -1),
                    PAUSE_CODES[m["pause"]])
        if kind == EventKind.WATCHDOG_DID_NOT_STOP:
            return kind, int(m["id"]), 0, 0
        if kind == EventKind.NETDEV_WATCHDOG:
            return kind, int(m["queue"]), 0, 0
        if kind == EventKind.SYN_FLOOD:
            return kind, int(m["port"]), int(m["action"] == "Sending cookies"), 0
        return kind, 0, 0, 0
    return NOT_OF_INTEREST, 0, 0, 0


def _bad_line(b: bytes) -> tuple[ConsoleFault, str]:
    """Why a line without its host stamp is not one: binary noise, or text with no stamp."""
    shown = b[:40].decode("utf-8", errors="replace")
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError:
        return ConsoleFault.UNDECODABLE, f"undecodable bytes and no host time stamp: {shown!r}"
    if any(not c.isprintable() and c not in "\t\r" for c in text):
        return ConsoleFault.UNDECODABLE, f"binary bytes and no host time stamp: {shown!r}"
    return ConsoleFault.NO_HOST_STAMP, f"no host time stamp at the start of the line: {shown!r}"


def parse_console(data: bytes | str, source: str = "console.log", strict: bool = True) -> ConsoleLog:
    """Parse a console log. Odd bytes and terminal noise inside a stamped line are replaced,
    never fatal. An empty log, a line without its host stamp, and a stamp earlier than the
    line before it raise `ConsoleFormatError` (strict) or are listed in `ConsoleLog.errors`
    (strict=False: an unstamped line is skipped, a line stamped backwards is kept)."""
    raw = data.encode("utf-8", errors="surrogateescape") if isinstance(data, str) else bytes(data)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    host, guest, line_no, kind, boot, d0, d1, d2 = ([] for _ in range(8))
    texts: list[str] = []
    errors: list[ConsoleFormatError] = []

    def fault(n: int, offset: int, what: ConsoleFault, problem: str) -> None:
        if strict:
            read = _columns(host, guest, line_no, kind, boot, d0, d1, d2, texts, source, errors)
            raise ConsoleFormatError(source, n, problem, read, offset=offset, fault=what)
        errors.append(ConsoleFormatError(source, n, problem, offset=offset, fault=what))

    if not raw:
        fault(1, 0, ConsoleFault.EMPTY, "empty: a board that booted always prints")
    cur_boot, boot_max_guest, boot_seen_banner = 0, -1, False
    offset, last_host, last_line = 0, -1, 0
    for n, b in enumerate(lines, start=1):
        at, offset = offset, offset + len(b) + 1
        m = _HOST_STAMP.match(b)
        if not m:
            fault(n, at, *_bad_line(b))
            continue
        host_ns = int(m.group(1)) * 1_000_000_000 + int(m.group(2)) * 1_000
        if host_ns < last_host:
            fault(n, at, ConsoleFault.STAMP_BACKWARDS,
                  f"host time stamp {host_ns / 1e9:.6f} is {(last_host - host_ns) / 1e9:.6f} s before line "
                  f"{last_line}'s: the log is not one writer's, in order")
        last_host, last_line = max(last_host, host_ns), n
        text = b[m.end():].rstrip(b"\r").decode("utf-8", errors="replace")
        ps = _PRINTK_STAMP.search(text)
        g = int(ps.group(1)) * 1_000_000_000 + int(ps.group(2)) * 1_000 if ps else -1
        message = text[ps.end():] if ps else text
        k, a0, a1, a2 = _classify(message)
        # A boot starts where the printk clock restarts (on ARM "Booting Linux" comes at
        # 0.000000 just before the banner), or at a banner the current boot has passed.
        restarted = g >= 0 and g < boot_max_guest - _CLOCK_RESTART_NS
        banner_of_new_boot = k == EventKind.BOOT and (g < boot_max_guest if g >= 0 else boot_seen_banner)
        if restarted or banner_of_new_boot:
            cur_boot += 1
            boot_max_guest, boot_seen_banner = -1, False
        boot_max_guest = max(boot_max_guest, g)
        boot_seen_banner |= k == EventKind.BOOT
        host.append(host_ns)
        guest.append(g)
        line_no.append(n)
        kind.append(k)
        boot.append(cur_boot)
        d0.append(a0)
        d1.append(a1)
        d2.append(a2)
        texts.append(text)
    return _columns(host, guest, line_no, kind, boot, d0, d1, d2, texts, source, errors)


def _columns(host, guest, line_no, kind, boot, d0, d1, d2, texts, source, errors) -> ConsoleLog:
    i64 = np.int64
    return ConsoleLog(np.asarray(host, i64), np.asarray(guest, i64), np.asarray(line_no, i64),
                      np.asarray(kind, np.int16), np.asarray(boot, i64), np.asarray(d0, i64), np.asarray(d1, i64),
                      np.asarray(d2, i64), list(texts), source, list(errors))


def read_console(path: str | Path, strict: bool = True) -> ConsoleLog:
    """`parse_console` on a file. A missing file is a `ConsoleFormatError` (strict) or an
    empty log listing it (strict=False); any other unreadable file raises its OSError."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        err = ConsoleFormatError(str(p), 0, "missing: a board that booted always prints, and the harness keeps "
                                 "its console log", fault=ConsoleFault.MISSING)
        if strict:
            raise err from exc
        return _columns(*([] for _ in range(9)), str(p), [err])
    return parse_console(data, str(p), strict)
