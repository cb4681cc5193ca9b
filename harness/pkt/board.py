"""`--target board`: the script's local side is the board's own Linux.

The board runs the syscalls in pktagent (harness/pkt/agent/pktagent.c, in the image at
/usr/bin/pktagent), driven over its serial console; the harness plays the script's remote
end on its own wire (QEMU `-netdev dgram`: the board's only peer), as packetdrill's wire
mode has a server play it on a LAN. Addresses and ports are mapped:

- the script's local address is the board's declared address, its remote address a fresh
  address on the board's subnet for each script (answered by ARP here), so no neighbour
  entry and no tcp_metrics entry (keyed by destination: tcp_get_metrics) of one script
  reaches the next;
- the script's local port (packetdrill's 8080) and its remote port are fresh for each
  script too, so a socket the last script left in TIME_WAIT (inet_csk_bind_conflict) or
  an orphan still retransmitting to its old peer never meets the next; the board's frames
  to other ports are not the script's and are left out. A script's flows (`flow N`) are
  the ports after its remote port; the segments handed to the runner carry the script's
  own port numbers.

Console lines: printk writes a kernel message to the serial console whole, between two
characters of whatever pktagent was writing (the 8250 console write polls the UART under
the port lock), so an answer may be cut by one: AgentConsole takes each message out (the
text after its `[time]` stamp, with when the harness saw it) and joins the answer's two
halves. A script's lines are those that name its local port, which is rewritten to 8080.

Times: a segment's time is when the wire stamped it on the host's monotonic clock. A
syscall's is when the agent began it on the board's CLOCK_MONOTONIC, mapped onto the
wire's stamps by broadcast datagrams the agent sends and says when (_wire_offset), and
checked against what the console's round trips allow; the result's notes give both.

What the target takes from the board and why it may: the clock offset (bounded by the
console's round trips: outside them the run is an error), when a call began (at most
pkt_call_latency past its time, else the script fails), and, as packetdrill does, the
local ISN, TS offset and ephemeral port (any value; the runner maps them).
"""

from __future__ import annotations

import errno as errno_mod
import re
import threading
import time
from dataclasses import dataclass, field, replace

from harness.board.wire import WireFrame
from harness.errors import BoardError
from harness.image.agent import AGENT_BOARD_PATH
from harness.oracle.bounds import CONSTANTS
from models.errors import WireError
from models.wire import (
    ARPOP_REPLY,
    ARPOP_REQUEST,
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    IPPROTO_TCP,
    ArpRepr,
    EthernetRepr,
    Ipv4Repr,
    TcpRepr,
    ip4,
    mac_bytes,
)

from .run import LOCAL_PORT, REMOTE_PORT
from .script import MAX_FLOWS, Syscall
from .target import NotModelled, Sent, SyscallOutcome, TargetError

__all__ = ["BoardHost", "BoardTarget", "AgentConsole", "LINUX_ARM_NAMES", "AGENT_PROTOCOL", "script_console_lines"]

AGENT_PROTOCOL = 2
AGENT_SLOTS = 16          # pktagent's SLOTS: scripts at once
REMOTE_MAC = "52:55:0a:00:02:fe"
# Linux's numbers for the names scripts use, as the ARM EABI kernel has them (ARM takes
# the asm-generic socket, fcntl and ioctl values): include/uapi/asm-generic/socket.h,
# fcntl.h, ioctls.h; include/uapi/linux/in.h, tcp.h; include/linux/socket.h.
LINUX_ARM_NAMES = {
    "AF_INET": 2, "PF_INET": 2, "SOCK_STREAM": 1, "IPPROTO_TCP": 6, "IPPROTO_IP": 0, "SOL_IP": 0,
    "SOL_TCP": 6, "SOL_SOCKET": 1,
    "SO_REUSEADDR": 2, "SO_ERROR": 4, "SO_SNDBUF": 7, "SO_RCVBUF": 8, "SO_KEEPALIVE": 9,
    "TCP_NODELAY": 1, "TCP_MAXSEG": 2, "TCP_CORK": 3, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6,
    "TCP_QUICKACK": 12, "TCP_USER_TIMEOUT": 18, "IP_TOS": 1,
    "F_GETFL": 3, "F_SETFL": 4, "O_RDWR": 0o2, "O_NONBLOCK": 0o4000,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
    "SIOCINQ": 0x541B, "FIONREAD": 0x541B,
    "MSG_DONTWAIT": 0x40, "MSG_MORE": 0x8000,
}
# An outbound segment may come this much later than the script's tolerance: the emulated
# CPU's delay between a frame in (or a call) and the kernel's answer; see CONSTANTS.
PKT_BOARD_LATENCY_NS = CONSTANTS["pkt_board_latency"].value_ns
PKT_CALL_LATENCY_NS = CONSTANTS["pkt_call_latency"].value_ns
CALL_LEAD_NS = 30_000_000
CONSOLE_PINGS = 6
WIRE_MARKS = 6
MARK_PORT = 9             # discard
CALL_TIMEOUT_S = 5.0      # a call that has not returned by then blocks for good: Ctrl-C
_ANSWER = re.compile(r"^= (-?\d+) (.*)$")
_PRINTK_STAMP = re.compile(r"\[\s*\d+\.\d{6}\] ")   # printk.time=1's stamp, as harness.board.console reads it


def script_console_lines(lines: list[tuple[int, str]], local_port: int, t0: int) -> list[tuple[int, str]]:
    """Of the kernel messages `lines` (host ns seen, text), a script's: those that name its
    local port (8080 mapped to `local_port`), the port written back as 8080, times from `t0`."""
    own = re.compile(rf"(?<!\d){local_port}(?!\d)")
    return [(at - t0, own.sub(str(LOCAL_PORT), text)) for at, text in lines if own.search(text)]


class AgentConsole:
    """pktagent on the board's console: start it, send requests, wait for answers."""

    def __init__(self, console):
        self.console = console
        self._answers: dict[int, tuple[str, int]] = {}
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()      # one request line at a time on the console
        self._next = 1
        self.running = False
        self._held = ""                          # an answer's first half, cut by a kernel message
        self.kernel_lines: list[tuple[int, str]] = []   # (host ns seen, message) in order
        console.add_listener(self._on_line)

    def _on_line(self, line) -> None:
        text, self._held = self._held + line.text, ""
        m = _PRINTK_STAMP.search(text)
        if m:
            with self._cond:
                self.kernel_lines.append((line.host_monotonic_ns, text[m.end():]))
            self._held = text[:m.start()]
            return
        m = _ANSWER.match(text.strip())
        if m:
            with self._cond:
                self._answers[int(m.group(1))] = (m.group(2), line.host_monotonic_ns)
                self._cond.notify_all()

    def start(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._answers.pop(0, None)
        self.console.sendline(AGENT_BOARD_PATH)
        text, _ = self.wait(0, timeout, f"{AGENT_BOARD_PATH} did not start")
        if text != f"PKTAGENT {AGENT_PROTOCOL}":
            raise BoardError(f"{AGENT_BOARD_PATH} speaks {text!r}, the harness protocol {AGENT_PROTOCOL}: "
                             "rebuild the image")
        self.running = True

    def stop(self) -> None:
        if self.running:
            try:
                self.request("quit", timeout=3.0)
            except BoardError:
                self.interrupt()
        self.running = False

    def interrupt(self) -> None:
        """Ctrl-C: the agent gives the shell its echo back and exits."""
        self.console.send("\x03")
        self.running = False

    def send(self, *words) -> tuple[int, int]:
        """Send a request; (its id, the host time it left)."""
        with self._send_lock:
            with self._cond:
                rid = self._next
                self._next += 1
            sent = time.monotonic_ns()
            self.console.sendline(" ".join(str(w) for w in (rid, *words)))
        return rid, sent

    def kernel_lines_since(self, index: int) -> tuple[list[tuple[int, str]], int]:
        """The kernel messages from `index` on, and the index after them."""
        with self._cond:
            return list(self.kernel_lines[index:]), len(self.kernel_lines)

    def has_answer(self, rid: int) -> bool:
        with self._cond:
            return rid in self._answers

    def wait(self, rid: int, timeout: float, what: str) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BoardError(f"pktagent: {what} (no answer within {timeout:g} s); console:\n"
                                     f"{self.console.tail(8)}")
                self._cond.wait(min(left, 0.2))
            return self._answers.pop(rid)

    def request(self, *words, timeout: float = 5.0) -> tuple[str, int, int]:
        """(the answer's text, the host time the request left, the host time it came)."""
        rid, sent = self.send(*words)
        text, came = self.wait(rid, timeout, f"request {' '.join(map(str, words))!r}")
        if text.startswith("ERR "):
            raise BoardError(f"pktagent refused {' '.join(map(str, words))!r}: {text[4:]}")
        return text, sent, came

    def console_bounds(self, pings: int = CONSOLE_PINGS) -> tuple[int, int, int]:
        """What the console says of board CLOCK_MONOTONIC - host monotonic (ns): each
        reading was taken between the request leaving and the answer coming, so the
        offset lies in [reading - came, reading - sent]; the tightest (lo, hi) over
        `pings`, and the shortest round trip."""
        lo, hi, rtt = None, None, None
        for _ in range(pings):
            text, sent, came = self.request("time")
            b = int(text)
            lo = b - came if lo is None else max(lo, b - came)
            hi = b - sent if hi is None else min(hi, b - sent)
            rtt = came - sent if rtt is None else min(rtt, came - sent)
        return lo, hi, rtt


@dataclass
class _Flow:
    """One script's mapping onto the board."""

    remote_ip: str
    remote_port: int
    local_port: int
    t0: int = 0                  # host monotonic ns of the script's time 0
    offset: int = 0              # board monotonic - host monotonic (as the wire stamps)
    rtt: int = 0                 # the console's shortest round trip
    pending: list[Sent] = field(default_factory=list)


class _AgentCall:
    """A call the agent was given: its answer, when it comes (harness.pkt.run's PendingCall)."""

    def __init__(self, target: BoardTarget, rid: int, name: str, flow: _Flow):
        self.target, self.rid, self.name, self.flow = target, rid, name, flow

    def result(self, block: bool) -> SyscallOutcome | None:
        agent = self.target.agent
        if not block and not agent.has_answer(self.rid):
            return None
        try:
            text, _ = agent.wait(self.rid, CALL_TIMEOUT_S, f"{self.name}() did not return")
        except BoardError as exc:
            agent.interrupt()
            raise TargetError(f"{self.name}() did not return within {CALL_TIMEOUT_S:g} s on the board (a "
                              "blocking call packetdrill would write as 'a...b'); the agent was stopped") from exc
        if text.startswith("ERR "):
            raise TargetError(f"pktagent refused {self.name}(): {text[4:]}")
        ret, err, value, start, _end = text.split()
        ret, err = int(ret), int(err)
        return SyscallOutcome(ret, errno_mod.errorcode.get(err, str(err)) if ret < 0 else None,
                              None if value == "-" else int(value), at=int(start) - self.flow.offset - self.flow.t0)


class BoardHost:
    """A booted board on the harness's wire with pktagent in its image (see the module's
    docstring), shared by the scripts that run on it, one after another or at once:
    `target()` gives a script its own BoardTarget (agent slot, remote address, ports);
    `close()` at the end."""

    def __init__(self, board, log=lambda m: None, late_slack_ns: int | None = None):
        if not board.wired or getattr(board, "wire", None) is None:
            raise BoardError(f"board {board.name}: the board target needs the harness's own wire "
                             "(an emulated board with network: wire)")
        self.board = board
        self.late_slack_ns = PKT_BOARD_LATENCY_NS if late_slack_ns is None else late_slack_ns
        self.wire = board.wire
        self.log = log
        iface = board.declared.interface
        self.board_ip = str(iface.address.ip)
        self.board_mac = iface.mac
        taken = {iface.address.ip, iface.gateway}
        # fresh remote addresses from the top of the board's subnet down
        self._addresses = [str(a) for a in reversed(list(iface.address.network.hosts())) if a not in taken][:200]
        self._n = 0
        self._lock = threading.Lock()
        self._free_slots = list(range(AGENT_SLOTS))
        self.remotes: dict[bytes, int] = {}      # remote addresses answered by ARP -> users
        self.wire.on_frame(self._answer_arp)
        self.agent = AgentConsole(board.console)
        self.agent.start()

    def target(self) -> BoardTarget:
        """A target for one script (blocks while every agent slot is taken)."""
        while True:
            with self._lock:
                if self._free_slots:
                    slot = self._free_slots.pop(0)
                    n = self._n
                    self._n += 1
                    break
            time.sleep(0.05)
        flow = _Flow(self._addresses[n % len(self._addresses)], 41000 + n % 20000, 21000 + n % 20000)
        rip = ip4(flow.remote_ip).to_bytes(4, "big")
        with self._lock:
            self.remotes[rip] = self.remotes.get(rip, 0) + 1
        return BoardTarget(self, slot, flow)

    def release(self, target: BoardTarget) -> None:
        rip = ip4(target.flow.remote_ip).to_bytes(4, "big")
        with self._lock:
            self.remotes[rip] -= 1
            if not self.remotes[rip]:
                del self.remotes[rip]
            self._free_slots.append(target.slot)

    def close(self) -> None:
        self.agent.stop()

    # -- ARP for the scripts' remotes -------------------------------------------------------
    def _answer_arp(self, frame: bytes) -> None:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[20:22] != b"\x00\x01":
            return
        with self._lock:
            if frame[38:42] not in self.remotes:
                return
        req = ArpRepr.parse(frame[14:])
        mac = mac_bytes(REMOTE_MAC)
        reply = ArpRepr(ARPOP_REPLY, mac, req.tip, req.sha, req.sip)
        self.wire.inject(EthernetRepr(req.sha, mac, ETH_P_ARP).emit(reply.emit()))


class BoardTarget:
    """One script's view of a BoardHost: its agent slot (its own fd numbers), its remote
    address and ports, its clock mapping. Closing it closes what the script left open."""

    name = "board"
    late_look_ns = 3 * 10**9

    def __init__(self, host: BoardHost, slot: int, flow: _Flow):
        self.host, self.slot, self.flow = host, slot, flow
        self.agent = host.agent
        self.wire = host.wire
        self.board = host.board
        self.board_ip, self.board_mac = host.board_ip, host.board_mac
        self.late_slack_ns = host.late_slack_ns
        self.call_slack_ns = PKT_CALL_LATENCY_NS
        # a console line's way out through the emulated UART, as a request line's way in
        self.console_slack_ns = PKT_CALL_LATENCY_NS
        _, self._kernel_cursor = self.agent.kernel_lines_since(0)
        try:
            if not self.agent.running:
                self.agent.start()
            self.agent.request("closeall", slot)
            self._announce(flow)
            lo, hi, flow.rtt = self.agent.console_bounds()
            flow.offset = self._wire_offset()
            if not lo - 5_000_000 <= flow.offset <= hi:
                raise BoardError(f"the board's clock read through the wire ({flow.offset} ns from the host's) is "
                                 f"outside what the console allows ({lo}..{hi} ns)")
        except BaseException:
            host.release(self)
            raise
        self._cursor = self.wire.cursor()
        flow.t0 = time.monotonic_ns() + 20_000_000
        self.notes = [f"remote {flow.remote_ip}:{flow.remote_port}, local port {flow.local_port}, agent slot "
                      f"{slot}; board clock {flow.offset} ns from the host's (the console allows {lo}..{hi})"]

    def close(self) -> None:
        try:
            if self.agent.running:
                self.agent.request("closeall", self.slot)
        except BoardError:
            self.agent.interrupt()
        finally:
            self.host.release(self)

    def _announce(self, flow: _Flow) -> None:
        """The remote asks for the board's address (an ARP request), so the board holds
        its address (arp_process: neigh_event_ns, STALE) before the script: the script's
        first segment waits for no resolution."""
        rip = ip4(flow.remote_ip).to_bytes(4, "big")
        mac = mac_bytes(REMOTE_MAC)
        request = ArpRepr(ARPOP_REQUEST, mac, ip4(flow.remote_ip), bytes(6), ip4(self.board_ip))
        since = self.wire.cursor()
        self.wire.inject(EthernetRepr(BROADCAST, mac, ETH_P_ARP).emit(request.emit()))
        self.wire.wait_frame(lambda f: len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02"
                             and f[38:42] == rip, 5.0, since=since)

    def _wire_offset(self) -> int:
        """board CLOCK_MONOTONIC - host monotonic as the wire stamps: the agent sends a
        datagram to the subnet's broadcast address (no resolution to wait for) and says
        when; the wire stamps it a little later (the board's transmit path), as it stamps
        every segment, so the latest of a few readings maps the board's times onto the
        wire's."""
        bcast = str(self.board.declared.interface.address.network.broadcast_address)
        best = None
        for _ in range(WIRE_MARKS):
            since = self.wire.cursor()
            rid, _ = self.agent.send("mark", bcast, MARK_PORT)
            text, _ = self.agent.wait(rid, 5.0, "mark")
            if text.startswith("ERR "):
                raise BoardError(f"pktagent could not send its clock mark: {text[4:]}")
            payload = f"pktagent mark {rid}".encode()
            f = self.wire.wait_frame(lambda d, p=payload: d[12:14] == b"\x08\x00" and len(d) > 23 and d[23] == 17
                                     and p in d, 5.0, since=since)
            est = int(text) - f.host_monotonic_ns
            best = est if best is None else max(best, est)
        return best

    # -- time ------------------------------------------------------------------------------
    @property
    def lead_ns(self) -> int:
        """A call goes to the agent CALL_LEAD_NS and a console round trip ahead: a request
        line takes 1 to 15 ms through the emulated UART (bench/pkt_board.py's notes)."""
        return self.flow.rtt + CALL_LEAD_NS

    def _host(self, at: int) -> int:
        return self.flow.t0 + at

    def _sleep_until(self, host_ns: int) -> None:
        left = host_ns - time.monotonic_ns()
        if left > 0:
            time.sleep(left / 1e9)

    def _collect(self, frames: list[WireFrame]) -> None:
        flow = self.flow
        rip = ip4(flow.remote_ip)
        for f in frames:
            if f.direction != "from_board" or f.dropped:
                continue
            try:
                eth, payload = EthernetRepr.parse(f.data)
                if eth.ethertype != ETH_P_IP:
                    continue
                ip, seg = Ipv4Repr.parse(payload)
                if ip.protocol != IPPROTO_TCP or ip.dst != rip:
                    continue
                tcp, data = TcpRepr.parse(seg, ip.src, ip.dst)
            except (ValueError, WireError) as exc:
                raise TargetError(f"the board sent a frame the harness cannot parse ({exc}): "
                                  f"{f.data[:64].hex()}") from exc
            k = tcp.dst_port - flow.remote_port
            if not 0 <= k < MAX_FLOWS:
                continue
            tcp = replace(tcp, dst_port=REMOTE_PORT + k,
                          src_port=LOCAL_PORT if tcp.src_port == flow.local_port else tcp.src_port)
            flow.pending.append(Sent(f.host_monotonic_ns - flow.t0, tcp, bytes(data)))

    def advance(self, until: int, stop_at_first: bool = False) -> list[Sent]:
        flow = self.flow
        deadline = self._host(until)
        while True:
            frames, self._cursor = self.wire.frames_since(self._cursor, deadline)
            self._collect(frames)
            due = [s for s in flow.pending if s.at <= until]
            if (stop_at_first and due) or time.monotonic_ns() >= deadline:
                flow.pending = [s for s in flow.pending if s.at > until]
                return due

    def console_lines(self) -> list[tuple[int, str]]:
        """The kernel messages naming this script's local port, seen since the last call,
        with the port rewritten to the script's 8080."""
        lines, self._kernel_cursor = self.agent.kernel_lines_since(self._kernel_cursor)
        return script_console_lines(lines, self.flow.local_port, self.flow.t0)

    # -- the remote's segments -------------------------------------------------------------
    def inject(self, at: int, src_port: int, dst_port: int, tcp: TcpRepr, payload: bytes) -> int:
        flow = self.flow
        remote_port = flow.remote_port + src_port - REMOTE_PORT     # the script's flow N
        tcp = replace(tcp, src_port=remote_port, dst_port=self._local_port(dst_port))
        src, dst = ip4(flow.remote_ip), ip4(self.board_ip)
        seg = tcp.emit(payload, src, dst)
        ip = Ipv4Repr(src, dst, IPPROTO_TCP, len(seg), ident=(remote_port * 997 + at // 1000) & 0xFFFF)
        frame = EthernetRepr(mac_bytes(self.board_mac), mac_bytes(REMOTE_MAC), ETH_P_IP).emit(ip.emit(seg))
        self._sleep_until(self._host(at))
        sent = time.monotonic_ns()
        self.wire.inject(frame)
        return sent - flow.t0

    def _local_port(self, port: int) -> int:
        return self.flow.local_port if port == LOCAL_PORT else port

    # -- syscalls --------------------------------------------------------------------------
    def syscall(self, at: int, call: Syscall, remote_port: int, local_port: int) -> _AgentCall:
        words = self._words(call, local_port)
        flow = self.flow
        board_at = max(0, self._host(at) + flow.offset)
        # Handed over ahead, so the agent's clock, not the console's latency, says when;
        # the script goes on meanwhile, and the answer is checked when it comes.
        self._sleep_until(self._host(at) - self.lead_ns)
        rid, _ = self.agent.send("call", board_at, self.slot, call.name, *words)
        return _AgentCall(self, rid, call.name, flow)

    def _num(self, arg, what: str) -> int:
        if isinstance(arg, int):
            return arg
        if isinstance(arg, list) and len(arg) == 1:
            return self._num(arg[0], what)
        if isinstance(arg, tuple):
            value = 0
            for name in arg:
                value |= self._num(name, what)
            return value
        if isinstance(arg, str) and arg in LINUX_ARM_NAMES:
            return LINUX_ARM_NAMES[arg]
        raise NotModelled(f"{what} {arg!r}: the board target knows no number for it")

    def _words(self, call: Syscall, local_port: int) -> list:
        a = call.args
        name = call.name

        def arg(i, what):
            if i >= len(a):
                raise NotModelled(f"{name}(): {what} is missing (argument {i + 1})")
            return a[i]

        fd = self._num(arg(0, "the file descriptor"), "file descriptor") if name != "socket" else None
        flow = self.flow
        if name == "socket":
            domain = arg(0, "the domain")
            return [2 if domain is Ellipsis else self._num(domain, "domain"),
                    self._num(arg(1, "the type"), "socket type"),
                    0 if arg(2, "the protocol") is Ellipsis else self._num(a[2], "protocol")]
        if name == "bind":
            return [fd, "0.0.0.0", flow.local_port]
        if name == "connect":
            return [fd, flow.remote_ip, flow.remote_port]
        if name == "listen":
            return [fd, self._num(arg(1, "the backlog"), "backlog")]
        if name in ("accept", "close"):
            return [fd]
        if name in ("read", "write", "recv", "send"):
            words = [fd, self._num(arg(2, "the byte count"), "byte count")]
            if name in ("recv", "send") and len(a) > 3 and a[3] is not Ellipsis:
                words.append(self._num(a[3], "flags"))
            return words
        if name == "shutdown":
            return [fd, self._num(arg(1, "how"), "how")]
        if name == "setsockopt":
            return [fd, self._num(arg(1, "the level"), "level"), self._num(arg(2, "the option"), "option"),
                    self._num(arg(3, "the value"), "value")]
        if name == "getsockopt":
            return [fd, self._num(arg(1, "the level"), "level"), self._num(arg(2, "the option"), "option")]
        if name == "fcntl":
            words = [fd, self._num(arg(1, "the command"), "command")]
            if len(a) > 2:
                words.append(self._num(a[2], "flags"))
            return words
        if name == "ioctl":
            return [fd, self._num(arg(1, "the request"), "request")]
        raise NotModelled(f"syscall {name}() is not run by the board's agent")
