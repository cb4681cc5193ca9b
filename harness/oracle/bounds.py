"""The oracle's two tables: what it may learn from the board, and its tolerances.

The one rule: the model's inputs are the harness's own records (what it did, when), the
frames that reached the board from its peers, the declared firmware config and Linux
6.1's constants. Never the board's outputs. Where Linux itself leaves a value open, the
value may be learnt from the board, but only as a named `Learnt` value from LEARNT, with
the kernel's reason and a bound: outside the bound it is a divergence row and is not
adopted. Every tolerance and race constant is in CONSTANTS with its source: a Linux
function, or the bench command that measured QEMU.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LearntSpec:
    """A value Linux leaves open, which the oracle may take from the board."""

    name: str
    why: str      # why Linux leaves it open (the kernel function)
    bound: str    # what the board's value must satisfy to be adopted


LEARNT: dict[str, LearntSpec] = {s.name: s for s in (
    LearntSpec("isn", "the initial sequence number is a keyed hash plus a clock (secure_tcp_seq); a syncookie "
               "SYN-ACK's is a keyed hash of the flow, the peer's ISN, a minute counter and the peer's MSS index "
               "(cookie_v4_init_sequence)",
               "any 32-bit value; seq/ack fields are then compared relative to it"),
    LearntSpec("inet_id", "a connected socket's first IPv4 ID is get_random_u16() (tcp_v4_connect, "
               "tcp_v4_syn_recv_sock); ip_select_ident_segs then adds one per frame",
               "any 16-bit value; the socket's later IDs are compared as counts from it (ip_id_rel)"),
    LearntSpec("icmp_id", "an ICMP echo reply's IPv4 ID comes from ip_idents_reserve's bucket for (peer, "
               "board, ICMP), which starts at get_random_bytes at boot (ip_rt_init); each later packet adds 1 and "
               "a random step below the jiffies since the bucket's last use (ip_select_ident, icmp_reply)",
               "a peer's first reply: any 16-bit value; each later one at most 1 + the jiffies from the "
               "previous reply's request to it (+ the frame tolerance at each end) + one per packet the board "
               "received or sent without DF between, past the previous ID: else a FIELD_MISMATCH on ip_id"),
    LearntSpec("reachable_time", "a neighbour's reachable_time is a random draw in [base/2, 3*base/2) "
               "(neigh_rand_reach_time), and an accepted connection's writes confirm it unseen (sock_confirm_neigh)",
               "not adopted: the model predicts a unicast probe as optional only where some draw (and the DELAY "
               "timer's lateness) allows it; any other probe is an EXTRA row"),
    LearntSpec("ts_offset", "the timestamp offset of a connection is a keyed hash (secure_tcp_ts_off), added to "
               "the clock (a syncookie SYN-ACK's clock has the SYN's options in its low 6 bits, "
               "cookie_init_timestamp)",
               "any 32-bit value; the peer's TSecr is moved by it"),
    LearntSpec("ephemeral_port", "connect() starts its port search at a keyed random offset "
               "(__inet_hash_connect), first over ports of the range's low end's parity",
               "in the declared ip_local_port_range, same parity as its low end"),
    LearntSpec("timer_lateness", "a timer-wheel timer fires up to one granule of its level late "
               "(kernel/time/timer.c calc_wheel_index), and a timer armed by a late one starts late",
               "inside the prediction window: the slack summed along the chain of timers since the last input"),
    LearntSpec("phy_poll_phase", "phylib polls the PHY from delayed work every PHY_STATE_TIME "
               "(phy_state_machine); its phase follows when phy_start ran",
               "the Link is Up/Down line within one PHY_STATE_TIME (+ timer slack) of the link change"),
    LearntSpec("linkwatch_run", "a carrier loss is not urgent to linkwatch: its work (which flushes "
               "the neighbour table) runs at most once a second (linkwatch_schedule_work, linkwatch_nextevent)",
               "0 to 1 s after the carrier loss, and accepted only if the board then matches the model completely"),
    LearntSpec("app_latency", "when a program on the board gets to connect(), write() or shutdown() after the "
               "harness asked, or a daemon gets to accept() a connection (httpd's SO_KEEPALIVE, and so its first "
               "keepalive timer, starts there), is up to the shell and the scheduler, not the network stack",
               "0 to the board's app_latency (board file; emulated default measured by bench/latency.py); "
               "for `reboot`, plus shutdown_latency. A killed program's close() (board_close) sends nothing "
               "from FIN_WAIT2, so it is not learnt: the model takes it as anywhere in that bound and stops "
               "where the board's answer would depend on when"),
    LearntSpec("first_rtt", "the board's first RTT sample is taken on its own clock "
               "(tcp_rcv_synsent_state_process -> tcp_clean_rtx_queue); its TSvals (ms) say what it measured",
               "at least the wire's SYN to SYN-ACK time, at most HANDSHAKE_ACK_MAX (100 ms); the TSvals' value, "
               "or where the board does not match it another in [that wire time, the TSvals' ms + 1] (the ACK is "
               "stamped after the sample), accepted only if the board then matches the model completely"),
    LearntSpec("boot_to_ifup", "how long the firmware takes from power-on to `ip link set eth0 up` is the "
               "boot's, not the network stack's",
               "0 to BOOT_TO_IFUP_MAX (60 s, the board strategy's boot timeout)"),
)}


@dataclass(frozen=True)
class Learnt:
    """One value learnt from the board in a run: adopted only when inside its bound."""

    name: str
    value: int
    lo: int
    hi: int
    where: str = ""     # which flow, loss, timer ... it belongs to
    t_ns: int = 0       # when (common clock) the board showed it

    def __post_init__(self):
        if self.name not in LEARNT:
            raise KeyError(f"{self.name!r} is not in the learnt-value table")

    @property
    def inside(self) -> bool:
        return self.lo <= self.value <= self.hi

    def to_json(self) -> dict:
        return {"name": self.name, "value": self.value, "bound": [self.lo, self.hi], "inside": self.inside,
                "where": self.where, "t_ns": self.t_ns}


@dataclass(frozen=True)
class Constant:
    """A tolerance or race constant, and where its value comes from."""

    name: str
    value_ns: int
    source: str


MS = 1_000_000
SEC = 1_000_000_000

CONSTANTS: dict[str, Constant] = {c.name: c for c in (
    Constant("frame_tolerance", 100 * MS, "QEMU (TCG) and slirp latency of a frame sent in reply to one "
             "that arrived; measured by bench/latency.py (reply delays)"),
    Constant("pkt_board_latency", 20 * MS, "`bmc-hil pkt --target board`: how much later than packetdrill's "
             "tolerance the emulated board's segment may come (QEMU TCG's delay between a frame or a call and "
             "the kernel's answer); measured by bench/pkt_board.py (offsets)"),
    Constant("pkt_call_latency", 100 * MS, "`bmc-hil pkt --target board`: how much later than the tolerance "
             "a call may begin on the board when it could not be handed over ahead (it follows a segment): "
             "a request line's way through the emulated UART, 1 to 45 ms seen; the segments after it are "
             "timed from when it began; measured by bench/pkt_board.py (call_late_ms)"),
    Constant("console_tolerance", 250 * MS, "serial console latency of a printk line on the emulated "
             "UART; measured by bench/latency.py (console lag)"),
    Constant("reset_tolerance", 500 * MS, "a watchdog reset comes one busybox watchdog kick period late at "
             "most (watchdog_main's loop) plus QEMU's reset; busybox watchdog.c"),
    Constant("tolerance_fraction", 0, "5 % of the predicted gap from the stream's previous event "
             "(packetdrill's tolerance rule)"),
    Constant("carrier_race", 50 * MS, "a frame sent this soon after Link is Up may be dropped: linkwatch "
             "runs dev_activate after the line (linkwatch_do_dev); seen on the emulated board"),
    Constant("linkwatch_max_delay", 1 * SEC, "non-urgent linkwatch work runs at most once per HZ "
             "(linkwatch_schedule_work, linkwatch_nextevent)"),
    Constant("handshake_ack_max", 100 * MS, "the handshake ACK is sent in the same softirq as the SYN-ACK is "
             "processed (tcp_rcv_synsent_state_process); later than this it is not that ACK"),
    Constant("reset_resync", 1 * SEC, "a board reset within this of a predicted one is the same reset, "
             "compared for its time; the comparison core's pairing limit (DEFAULT_MAX_SHIFT_NS)"),
    Constant("boot_to_services", 200 * MS, "the firmware's /init starts dropbear and httpd right after "
             "eth0 up (harness/image/initramfs.py); a SYN before is refused"),
    Constant("app_latency", 2 * SEC, "default bound on a program's start on the emulated board after the "
             "harness asked over SSH or the console; measured by bench/latency.py (app latency)"),
    Constant("shutdown_latency", 5 * SEC, "`reboot` typed at the shell: busybox init's shutdown before "
             "reboot(2) (SIGTERM to all, a second's pause, SIGKILL, another pause); added to app_latency; "
             "measured by bench/latency.py (reboot lag)"),
    Constant("boot_to_ifup_max", 60 * SEC, "the board strategy's boot timeout (harness/board/strategy.py)"),
)}

LINKWATCH_MAX_DELAY_NS = CONSTANTS["linkwatch_max_delay"].value_ns
HANDSHAKE_ACK_MAX_NS = CONSTANTS["handshake_ack_max"].value_ns
RESET_RESYNC_NS = CONSTANTS["reset_resync"].value_ns
BOOT_TO_SERVICES_NS = CONSTANTS["boot_to_services"].value_ns
APP_LATENCY_NS = CONSTANTS["app_latency"].value_ns
BOOT_TO_IFUP_MAX_NS = CONSTANTS["boot_to_ifup_max"].value_ns
SHUTDOWN_LATENCY_NS = CONSTANTS["shutdown_latency"].value_ns
# At most this many first_rtt cases are tried for one verdict (harness.oracle.judge._rtt_cases):
# a quarter-jiffy grid over a span of at most HANDSHAKE_ACK_MAX on one flow is 40.
RTT_CASES_MAX = 40


def markdown_tables() -> str:
    """Both tables as the README shows them."""
    lines = ["| learnt value | why Linux leaves it open | bound |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.why} | {s.bound} |" for s in LEARNT.values()]
    lines += ["", "| constant | value | source |", "|---|---|---|"]
    for c in CONSTANTS.values():
        value = "5 %" if c.name == "tolerance_fraction" else (
            f"{c.value_ns / SEC:g} s" if c.value_ns >= SEC else f"{c.value_ns / MS:g} ms")
        lines.append(f"| `{c.name}` | {value} | {c.source} |")
    return "\n".join(lines) + "\n"
