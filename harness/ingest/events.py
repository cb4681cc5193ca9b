"""One event form for everything a run observed or did that is not a frame: console lines
the oracle cares about, QMP events, and the harness's own stimuli (host-events.jsonl).

An `EventTable` is columnar, one row per event, each stamped in the clock it was read
from (`Clock`, and a segment of that clock: the boot for the guest clock). `Timeline`
(harness.ingest.timeline) maps those stamps onto the run's one timeline.

The QMP and host-event parsers are sans-IO: they take the file's text and its name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from harness.errors import HarnessError


class Clock(IntEnum):
    """The clocks a run's records are stamped with."""

    HOST_WALL = 0  # host CLOCK_REALTIME: console.log stamps, QMP's own stamps, *_wall_ns
    HOST_MONOTONIC = 1  # host CLOCK_MONOTONIC: host-events.jsonl, QMP receive time
    GUEST = 2  # the board kernel's printk clock; restarts at 0 on every boot (segment = boot)
    CAPTURE = 3  # a capture file's stamps (segment = capture file); QEMU's virtual clock for filter-dump


class EventKind(IntEnum):
    """What an event is. Codes are < 128 so a stream key keeps them in 7 bits
    (harness.ingest.streams); frames take 1..39, console 40..59, QMP 60..69, host 70..99."""

    # frames (harness.ingest.streams)
    TCP_SYN = 1
    TCP_SYNACK = 2
    TCP_RST = 3
    TCP_FIN = 4
    TCP_DATA = 5
    TCP_ACK = 6
    # the board's segment one below what the peer acknowledged (seq snd_una - 1, no data):
    # tcp_xmit_probe_skb's keepalive probe (tcp_write_wakeup) or zero-window probe
    TCP_PROBE = 7
    ARP_REQUEST = 8
    ARP_REPLY = 9
    ARP_OTHER = 10
    ICMP_ECHO_REQUEST = 12
    ICMP_ECHO_REPLY = 13
    ICMP_DEST_UNREACH = 14
    ICMP_OTHER = 15
    UDP = 16
    IPV4_OTHER = 17  # another protocol, a fragment, or an L4 header the capture cut short
    NON_IPV4 = 18  # IPv6, LLDP, NC-SI, ... (counted; the model does not predict them yet)
    # console lines (harness.ingest.console)
    BOOT = 40  # "Linux version": a new boot, the guest clock restarts
    INIT = 41  # "Run /init as init process"
    LINK_DOWN = 42
    LINK_UP = 43
    WATCHDOG_DID_NOT_STOP = 44  # the watchdog device was closed without the magic 'V'
    NETDEV_WATCHDOG = 45  # TX queue timed out
    RESTARTING = 46  # "reboot: Restarting system"
    KERNEL_PANIC = 47  # "Kernel panic - not syncing: ..."
    # kernel faults a firmware must never print (harness.ingest.console says which lines)
    KERNEL_OOPS = 48  # "Internal error: Oops: ..." (ARM __die), "Unable to handle kernel ... at virtual address"
    KERNEL_BUG = 49  # "kernel BUG at file:line!" (report_bug) and the "BUG: ..." family (soft lockup, ...)
    KERNEL_WARNING = 50  # "WARNING: CPU: N PID: M at file:line func" (__warn)
    SYN_FLOOD = 51  # "TCP: request_sock_TCP: Possible SYN flooding on port N. ..." (tcp_syn_flood_action)
    # QMP events
    QMP_WATCHDOG = 60
    QMP_RESET = 61
    QMP_SHUTDOWN = 62
    QMP_STOP = 63
    QMP_RESUME = 64
    QMP_OTHER = 69
    # what the harness did (stimuli and bookkeeping)
    HOST_POWER_ON = 70
    HOST_POWER_OFF = 71
    HOST_RESET = 72
    HOST_LINK_DOWN = 73
    HOST_LINK_UP = 74
    HOST_LINK_DOWN_REASSERTED = 75
    HOST_WATCHDOG_START = 76
    HOST_WATCHDOG_KICK = 77
    HOST_WATCHDOG_STARVE = 78
    HOST_WATCHDOG_STOP = 79
    HOST_CAPTURE_START = 80
    HOST_CAPTURE_STOP = 81
    HOST_OTHER = 99


QMP_KINDS = {"WATCHDOG": EventKind.QMP_WATCHDOG, "RESET": EventKind.QMP_RESET, "SHUTDOWN": EventKind.QMP_SHUTDOWN,
             "STOP": EventKind.QMP_STOP, "RESUME": EventKind.QMP_RESUME}
HOST_KINDS = {"power_on": EventKind.HOST_POWER_ON, "power_off": EventKind.HOST_POWER_OFF,
              "reset": EventKind.HOST_RESET, "link_down": EventKind.HOST_LINK_DOWN,
              "link_up": EventKind.HOST_LINK_UP, "link_down_reasserted": EventKind.HOST_LINK_DOWN_REASSERTED,
              "watchdog_start": EventKind.HOST_WATCHDOG_START, "watchdog_kick": EventKind.HOST_WATCHDOG_KICK,
              "watchdog_starve": EventKind.HOST_WATCHDOG_STARVE, "watchdog_stop": EventKind.HOST_WATCHDOG_STOP,
              "capture_start": EventKind.HOST_CAPTURE_START, "capture_stop": EventKind.HOST_CAPTURE_STOP}


class ResetReason(IntEnum):
    """QMP RESET's `reason` (QEMU's ShutdownCause), as the `detail0` of a QMP_RESET row."""

    UNKNOWN = 0
    GUEST_RESET = 1  # the guest asked: a watchdog expiry or `reboot`
    HOST_QMP_SYSTEM_RESET = 2  # the harness's system_reset
    GUEST_PANIC = 3
    OTHER = 9


_RESET_REASONS = {"guest-reset": ResetReason.GUEST_RESET, "host-qmp-system-reset": ResetReason.HOST_QMP_SYSTEM_RESET,
                  "guest-panic": ResetReason.GUEST_PANIC}


class WatchdogAction(IntEnum):
    """QMP WATCHDOG's `action`, as the `detail0` of a QMP_WATCHDOG row."""

    UNKNOWN = 0
    RESET = 1
    SHUTDOWN = 2
    POWEROFF = 3
    PAUSE = 4
    DEBUG = 5
    NONE = 6
    INJECT_NMI = 7


class EventLogError(HarnessError):
    """A QMP or host-event log line that cannot be read. Names the file and line, and keeps
    the events read before it in `partial`."""

    def __init__(self, source: str, line: int, problem: str, partial: EventTable):
        self.source = source
        self.line = line
        self.problem = problem
        self.partial = partial
        super().__init__(f"{source}: line {line}: {problem}; {len(partial)} events read before it")


@dataclass
class EventTable:
    """Non-frame events, one row each, in the clock they were read from.

    `detail0`/`detail1` carry a kind's numbers: link speed (Mb/s) and duplex for LINK_UP,
    the TX queue for NETDEV_WATCHDOG, the reason for QMP_RESET, the action for QMP_WATCHDOG,
    timeout and period (s) for HOST_WATCHDOG_START. `line` is the 1-based line in `source`.
    `mono_ns` is the host monotonic stamp when the record has one (else -1), so a timeline
    can relate the host's two clocks.
    """

    time_ns: np.ndarray  # int64, in `clock`
    clock: np.ndarray  # int8 Clock
    segment: np.ndarray  # int64: boot index for GUEST, capture index for CAPTURE, else 0
    kind: np.ndarray  # int16 EventKind
    line: np.ndarray  # int64
    detail0: np.ndarray  # int64
    detail1: np.ndarray  # int64
    mono_ns: np.ndarray  # int64, -1 when unknown
    source: str = ""
    names: list[str] = field(default_factory=list)  # the raw event name or message per row
    error: HarnessError | None = None  # what stopped a lenient (strict=False) read early

    @classmethod
    def from_rows(cls, rows: list[tuple], source: str = "", names: list[str] | None = None) -> EventTable:
        """Rows of (time_ns, clock, segment, kind, line, detail0, detail1, mono_ns)."""
        arr = np.asarray(rows, np.int64).reshape(-1, 8)
        return cls(arr[:, 0].copy(), arr[:, 1].astype(np.int8), arr[:, 2].copy(), arr[:, 3].astype(np.int16),
                   arr[:, 4].copy(), arr[:, 5].copy(), arr[:, 6].copy(), arr[:, 7].copy(), source,
                   list(names or [""] * arr.shape[0]))

    @classmethod
    def concat(cls, tables: list[EventTable]) -> EventTable:
        """All rows of several tables (sources joined with '+')."""
        if not tables:
            return cls.from_rows([])
        cols = {name: np.concatenate([getattr(t, name) for t in tables])
                for name in ("time_ns", "clock", "segment", "kind", "line", "detail0", "detail1", "mono_ns")}
        return cls(**cols, source="+".join(t.source for t in tables if t.source),
                   names=[n for t in tables for n in t.names])

    def __len__(self) -> int:
        return self.time_ns.shape[0]

    def of_kind(self, *kinds: EventKind) -> EventTable:
        """The rows of the given kinds."""
        keep = np.isin(self.kind, np.asarray(kinds, np.int16))
        return self.take(np.flatnonzero(keep))

    def take(self, rows: np.ndarray) -> EventTable:
        cols = {name: getattr(self, name)[rows]
                for name in ("time_ns", "clock", "segment", "kind", "line", "detail0", "detail1", "mono_ns")}
        return EventTable(**cols, source=self.source, names=[self.names[i] for i in np.asarray(rows).tolist()])


def _json_lines(text: str, source: str, parse_row, strict: bool) -> EventTable:
    rows: list[tuple] = []
    names: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            row, name = parse_row(obj, n)
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            err = EventLogError(source, n, problem, EventTable.from_rows(rows, source, names))
            if strict:
                raise err from exc
            err.partial.error = err
            return err.partial
        rows.append(row)
        names.append(name)
    return EventTable.from_rows(rows, source, names)


def _int(obj: dict, key: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {key!r} is not an integer: {value!r}")
    return value


def _qmp_row(obj: dict, n: int) -> tuple[tuple, str]:
    name = obj["event"]
    if not isinstance(name, str):
        raise ValueError(f"field 'event' is not a string: {name!r}")
    data = obj.get("data") or {}
    kind = QMP_KINDS.get(name, EventKind.QMP_OTHER)
    d0 = 0
    if kind == EventKind.QMP_RESET:
        d0 = _RESET_REASONS.get(str(data.get("reason", "")), ResetReason.OTHER if data.get("reason") else 0)
    elif kind == EventKind.QMP_WATCHDOG:
        action = str(data.get("action", "")).upper().replace("-", "_")
        d0 = WatchdogAction[action] if action in WatchdogAction.__members__ else WatchdogAction.UNKNOWN
    # QEMU's own stamp (taken when the event happened, on the host's wall clock) beats our
    # receive time; the receive time is kept in mono_ns for the host clock pairing.
    return (_int(obj, "qemu_wall_ns"), Clock.HOST_WALL, 0, kind, n, int(d0), 0, _int(obj, "host_monotonic_ns")), name


def _host_row(obj: dict, n: int) -> tuple[tuple, str]:
    name = obj["event"]
    if not isinstance(name, str):
        raise ValueError(f"field 'event' is not a string: {name!r}")
    kind = HOST_KINDS.get(name, EventKind.HOST_OTHER)
    d0 = d1 = 0
    if kind == EventKind.HOST_WATCHDOG_START:
        d0, d1 = int(obj.get("timeout", 0)), int(obj.get("period", 0))
    return (_int(obj, "host_wall_ns"), Clock.HOST_WALL, 0, kind, n, d0, d1, _int(obj, "host_monotonic_ns")), name


def parse_qmp_log(text: str, source: str = "qmp.jsonl", strict: bool = True) -> EventTable:
    """qmp.jsonl -> events stamped with QEMU's wall-clock stamp. Unknown events are
    QMP_OTHER. A line that is not a QMP record raises `EventLogError` (strict), or ends the
    table there with the error in `EventTable.error` (strict=False)."""
    return _json_lines(text, source, _qmp_row, strict)


def parse_host_events(text: str, source: str = "host-events.jsonl", strict: bool = True) -> EventTable:
    """host-events.jsonl -> the harness's stimuli, stamped with the host wall clock (and
    the monotonic stamp in mono_ns). Unknown event names are HOST_OTHER."""
    return _json_lines(text, source, _host_row, strict)


def read_qmp_log(path: str | Path, strict: bool = True) -> EventTable:
    """`parse_qmp_log` on a file."""
    p = Path(path)
    return parse_qmp_log(p.read_text(encoding="utf-8", errors="replace"), str(p), strict)


def read_host_events(path: str | Path, strict: bool = True) -> EventTable:
    """`parse_host_events` on a file."""
    p = Path(path)
    return parse_host_events(p.read_text(encoding="utf-8", errors="replace"), str(p), strict)
