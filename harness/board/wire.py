"""A wire owned by the harness: QEMU's `-netdev dgram` on unix sockets, one Ethernet
frame per datagram. The harness sees every frame the board sends, stamps it on the
host clock, writes it to a nanosecond pcap, can inject frames, and can drop them.
No host network is involved: the board reaches only this process."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.errors import BoardError
from harness.ingest.pcapwrite import PcapWriter


@dataclass(frozen=True)
class WireFrame:
    """A frame seen on the wire: `direction` is 'from_board' or 'to_board'."""

    direction: str
    host_monotonic_ns: int
    host_wall_ns: int
    data: bytes
    dropped: bool


class Wire:
    """The harness's end of the board's network (`-netdev dgram` over unix sockets)."""

    def __init__(self, socket_dir: Path):
        self.harness_path = Path(socket_dir) / "wire.sock"   # we bind here
        self.board_path = Path(socket_dir) / "qemu.sock"     # QEMU binds here
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.harness_path))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.frames: list[WireFrame] = []
        self._cond = threading.Condition()
        self._pcap: PcapWriter | None = None
        self._drop: Callable[[bytes], bool] | None = None
        self._receivers: list[Callable[[bytes], None]] = []
        # What went wrong on the harness's side of the wire (a peer that raised, a receive
        # that failed): the capture and the peers' answers after it cannot be trusted, so
        # the runner records these and the oracle makes the run an error.
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wire", daemon=True)
        self._thread.start()

    def qemu_netdev(self, netdev_id: str) -> str:
        """The `-netdev` argument that plugs the board into this wire."""
        return (f"dgram,id={netdev_id},local.type=unix,local.path={self.board_path},"
                f"remote.type=unix,remote.path={self.harness_path}")

    # -- capture, drop, receive ------------------------------------------------------
    def capture_start(self, path: Path) -> None:
        with self._cond:
            if self._pcap is not None:
                self._pcap.close()
            self._pcap = PcapWriter(path)

    def capture_stop(self) -> Path | None:
        with self._cond:
            if self._pcap is None:
                return None
            path = self._pcap.path
            self._pcap.close()
            self._pcap = None
            return path

    def set_drop(self, predicate: Callable[[bytes], bool] | None) -> None:
        """Drop frames (both directions) for which `predicate(frame)` is true; None: drop none."""
        self._drop = predicate

    def on_frame(self, callback: Callable[[bytes], None]) -> None:
        """Call `callback(frame)` for every frame the board sends (after the drop rule)."""
        self._receivers.append(callback)

    def inject(self, frame: bytes) -> bool:
        """Send `frame` to the board; False if the drop rule ate it."""
        if len(frame) < 14:
            raise ValueError(f"an Ethernet frame needs at least 14 bytes, got {len(frame)}")
        dropped = bool(self._drop and self._drop(frame))
        self._note("to_board", frame, dropped)
        if dropped:
            return False
        try:
            self._sock.sendto(frame, str(self.board_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise BoardError(f"the board's end of the wire ({self.board_path}) is not there: is QEMU running?") from exc
        return True

    def wait_frame(self, predicate: Callable[[bytes], bool], timeout: float, since: int = 0,
                   direction: str = "from_board") -> WireFrame:
        deadline = time.monotonic() + timeout
        with self._cond:
            i = since
            while True:
                while i < len(self.frames):
                    f = self.frames[i]
                    i += 1
                    if f.direction == direction and not f.dropped and predicate(f.data):
                        return f
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BoardError(f"no matching frame {direction} within {timeout:g} s "
                                     f"({len(self.frames) - since} frames seen)")
                self._cond.wait(min(remaining, 0.2))

    def cursor(self) -> int:
        with self._cond:
            return len(self.frames)

    def frames_since(self, since: int, until_ns: int) -> tuple[list[WireFrame], int]:
        """The frames after index `since`, waiting for one until host monotonic `until_ns`
        at the latest; (the frames, the index to pass next time)."""
        with self._cond:
            while len(self.frames) <= since:
                left = until_ns - time.monotonic_ns()
                if left <= 0:
                    break
                self._cond.wait(min(left / 1e9, 0.2))
            return self.frames[since:], len(self.frames)

    def _note(self, direction: str, frame: bytes, dropped: bool) -> None:
        f = WireFrame(direction, time.monotonic_ns(), time.time_ns(), frame, dropped)
        with self._cond:
            self.frames.append(f)
            if self._pcap is not None and not dropped:
                self._pcap.write(f.host_wall_ns, frame)
            self._cond.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            try:
                frame = self._sock.recv(65536)
            except OSError as exc:
                if not self._stop.is_set():
                    self.errors.append(f"the wire's receive failed ({exc}); frames after it were not captured")
                return
            dropped = bool(self._drop and self._drop(frame))
            self._note("from_board", frame, dropped)
            if not dropped:
                for cb in self._receivers:
                    try:
                        cb(frame)
                    except Exception as exc:  # noqa: BLE001 - one peer's bug must not stop the capture
                        if len(self.errors) < 10:
                            self.errors.append(f"a peer on the wire failed on a frame from the board: "
                                               f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.capture_stop()
        self._sock.close()
        self.harness_path.unlink(missing_ok=True)


class FrameTransport(Protocol):
    """What a peer needs of a wire: the board's frames, and a way to send it one. `Wire`
    is one; the model-as-board's virtual wire (harness.board.modelboard) is another."""

    def on_frame(self, callback: Callable[[bytes], None]) -> None: ...

    def inject(self, frame: bytes) -> bool: ...


class SilentPeer:
    """A peer on the harness's wire that answers ARP for its address and nothing else:
    TCP segments to it go unanswered, so the board's own retransmission timers show."""

    def __init__(self, wire: FrameTransport, ip: str, mac: str = "52:55:0a:00:02:02"):
        import socket as _socket

        self.wire = wire
        self.ip = _socket.inet_aton(ip)
        self.mac = bytes.fromhex(mac.replace(":", ""))
        self.answered = 0
        wire.on_frame(self._on_frame)

    def _asks_for_me(self, frame: bytes) -> bool:
        """Is `frame` an ARP request (op 1) for our address?"""
        return len(frame) >= 42 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" \
            and frame[38:42] == self.ip

    def _on_frame(self, frame: bytes) -> None:
        # ARP request for our address: answer from our MAC to the asker.
        if self._asks_for_me(frame):
            sha, spa = frame[22:28], frame[28:32]
            arp = b"\x00\x01\x08\x00\x06\x04\x00\x02" + self.mac + self.ip + sha + spa
            self.wire.inject(sha + self.mac + b"\x08\x06" + arp + b"\0" * 18)
            self.answered += 1

    def _tcp_flags_to_me(self, frame: bytes) -> int | None:
        """The SYN, RST, FIN and ACK bits of an IPv4 TCP segment to this peer, else None."""
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6 or frame[30:34] != self.ip:
            return None
        t = 14 + (frame[14] & 0x0F) * 4
        return frame[t + 13] & 0x17 if len(frame) >= t + 20 else None

    @staticmethod
    def _parse_tcp(frame: bytes):
        """(Ethernet, IPv4, TCP) reprs of a frame `_tcp_flags_to_me` took."""
        from models.wire import EthernetRepr, Ipv4Repr, TcpRepr

        eth, payload = EthernetRepr.parse(frame)
        ip, seg = Ipv4Repr.parse(payload, verify_checksum=False)
        return eth, ip, TcpRepr.parse(seg, ip.src, ip.dst, verify_checksum=False)[0]

    def _send_tcp(self, eth_dst: bytes, src: int, dst: int, tcp) -> None:
        """`tcp` (a models.wire TcpRepr, no data) from this peer's MAC, as Linux's IPv4 sends it."""
        from models.wire import ETH_P_IP, IPPROTO_TCP, EthernetRepr, Ipv4Repr

        out = tcp.emit(b"", src, dst)
        hdr = Ipv4Repr(src, dst, IPPROTO_TCP, len(out), ttl=64, ident=0, df=True)
        self.wire.inject(EthernetRepr(eth_dst, self.mac, ETH_P_IP).emit(hdr.emit(out)))


class LatePeer(SilentPeer):
    """A peer that answers the board's ARP requests for its address only from the
    `answer_from`-th on (the second by default), then as SilentPeer does. The board's first
    resolution of it waits retrans_time for its next broadcast (neigh_timer_handler), so
    packets sent to the peer meanwhile wait together in the entry's arp_queue
    (__neigh_event_send), where net.ipv4.neigh.default.unres_qlen_bytes decides which of
    them the answer releases (neigh_update)."""

    def __init__(self, wire: FrameTransport, ip: str, mac: str = "52:55:0a:00:02:02", answer_from: int = 2):
        self.answer_from = answer_from
        self.requests = 0
        super().__init__(wire, ip, mac)

    def _on_frame(self, frame: bytes) -> None:
        if self._asks_for_me(frame):
            self.requests += 1
            if self.requests < self.answer_from:
                return
        super()._on_frame(frame)


class StalledPeer(SilentPeer):
    """A peer that answers ARP (as SilentPeer) and the board's SYN with a SYN-ACK, then
    acknowledges nothing: a receiver that stalled, so the board's data retransmissions show.

    The SYN-ACK is what Linux 6.1 sends for the board's SYN (tcp_make_synack): window 65160,
    and only the options the SYN offered, in tcp_synack_options' order (MSS 1460, SACK_PERM
    with the timestamp, NOP + window scale 7). A retransmitted SYN gets the same SYN-ACK
    again (same ISN, a fresh TSval), as from a request sock. `clock` (ns) stamps the TSvals:
    the host's monotonic clock, or a virtual one where the model plays the board."""

    SYNACK_WINDOW = 65160
    MSS = 1460
    WSCALE = 7

    def __init__(self, wire: FrameTransport, ip: str, mac: str = "52:55:0a:00:02:02",
                 clock: Callable[[], int] = time.monotonic_ns):
        super().__init__(wire, ip, mac)
        self._clock = clock
        self._isn: dict[tuple[int, int, int], int] = {}
        self._ts_offset = 0x1000_0000
        self.synacks = 0

    def _on_frame(self, frame: bytes) -> None:
        super()._on_frame(frame)
        # IPv4, TCP, to us, SYN without ACK (and no RST/FIN): answer with a SYN-ACK.
        if self._tcp_flags_to_me(frame) == 0x02:
            self._synack(frame)

    def _synack(self, frame: bytes) -> None:
        from models.wire import ACK, SYN, TcpRepr, linux_options

        eth, ip, syn = self._parse_tcp(frame)
        key = (ip.src, syn.src_port, syn.seq)
        isn = self._isn.setdefault(key, (0x2000_0000 + 0x0100_0000 * len(self._isn)) & 0xFFFFFFFF)
        ts = None
        if syn.timestamp is not None:
            ts = ((self._clock() // 1_000_000 + self._ts_offset) & 0xFFFFFFFF, syn.timestamp[0])
        opts = linux_options(mss=self.MSS, ts=ts, sack_perm=syn.sack_permitted,
                             wscale=self.WSCALE if syn.wscale is not None else None)
        tcp = TcpRepr(syn.dst_port, syn.src_port, isn, (syn.seq + 1) & 0xFFFFFFFF, SYN | ACK, self.SYNACK_WINDOW,
                      opts)
        self._send_tcp(eth.src, ip.dst, ip.src, tcp)
        self.synacks += 1


@dataclass
class _PeerConn:
    """One connection the closing peer accepted from the board."""

    board_mac: bytes
    board_ip: int
    board_port: int
    my_ip: int
    my_port: int
    snd_nxt: int                 # our next sequence number
    rcv_nxt: int                 # the board's next sequence number
    ts_recent: int | None        # the board's last TSval (None: no timestamps)
    wscale: bool                 # window scaling agreed


class ClosingPeer(StalledPeer):
    """A peer that answers ARP and the board's SYN (as StalledPeer), acknowledges at once
    each data segment and FIN the board sends it, and sends its own FIN (with ACK) on each
    connection when `fin()` is called (a scenario's `peer_fin` step). Its segments are
    Linux-shaped: seq from its SYN-ACK's ISN, window 65160 >> 7 with the window scale 7
    its SYN-ACK offered, and a timestamp from `clock` echoing the board's last TSval.
    So a board program's shutdown(SHUT_WR) leaves its socket in FIN_WAIT2, and the FIN
    after the program exited finds the FIN_WAIT2 timewait sock (tcp_timewait_state_process:
    TIME_WAIT and an ACK) or, once tcp_fin_timeout has passed, nothing (tcp_v4_send_reset)."""

    def __init__(self, wire: FrameTransport, ip: str, mac: str = "52:55:0a:00:02:02",
                 clock: Callable[[], int] = time.monotonic_ns):
        super().__init__(wire, ip, mac, clock)
        self.conns: dict[int, _PeerConn] = {}     # by the board's port
        self.acks = 0
        self.fins = 0

    def _synack(self, frame: bytes) -> None:
        super()._synack(frame)
        eth, ip, syn = self._parse_tcp(frame)
        isn = self._isn[(ip.src, syn.src_port, syn.seq)]
        ts = syn.timestamp[0] if syn.timestamp is not None else None
        self.conns[syn.src_port] = _PeerConn(eth.src, ip.src, syn.src_port, ip.dst, syn.dst_port,
                                             (isn + 1) & 0xFFFFFFFF, (syn.seq + 1) & 0xFFFFFFFF, ts,
                                             syn.wscale is not None)

    def _on_frame(self, frame: bytes) -> None:
        super()._on_frame(frame)
        flags = self._tcp_flags_to_me(frame)
        if flags is None or flags & 0x06 or not flags & 0x10:
            return   # not TCP to us, a SYN or a RST, or no ACK
        from models.wire import FIN, EthernetRepr, Ipv4Repr, TcpRepr

        _, payload = EthernetRepr.parse(frame)
        ip, segment = Ipv4Repr.parse(payload, verify_checksum=False)
        seg, data = TcpRepr.parse(segment, ip.src, ip.dst, verify_checksum=False)
        conn = self.conns.get(seg.src_port)
        if conn is None:
            return
        if seg.timestamp is not None:
            conn.ts_recent = seg.timestamp[0]
        end = (seg.seq + len(data) + (1 if seg.flags & FIN else 0)) & 0xFFFFFFFF
        if end != seg.seq:
            # new data or FIN: acknowledged at once; a retransmission of what was already
            # acknowledged: the same ACK again (as tcp_send_dupack)
            if 0 < ((end - conn.rcv_nxt) & 0xFFFFFFFF) < 0x8000_0000:
                conn.rcv_nxt = end
            self._segment(conn, 0)
            self.acks += 1

    def fin(self) -> int:
        """Send our FIN (with ACK) on every connection; returns how many."""
        from models.wire import FIN

        for conn in self.conns.values():
            self._segment(conn, FIN)
            conn.snd_nxt = (conn.snd_nxt + 1) & 0xFFFFFFFF
            self.fins += 1
        return len(self.conns)

    def _segment(self, conn: _PeerConn, flags: int) -> None:
        from models.wire import ACK, TcpRepr, linux_options

        ts = None
        if conn.ts_recent is not None:
            ts = ((self._clock() // 1_000_000 + self._ts_offset) & 0xFFFFFFFF, conn.ts_recent)
        window = self.SYNACK_WINDOW >> self.WSCALE if conn.wscale else self.SYNACK_WINDOW
        tcp = TcpRepr(conn.my_port, conn.board_port, conn.snd_nxt, conn.rcv_nxt, flags | ACK, window,
                      linux_options(ts=ts))
        self._send_tcp(conn.board_mac, conn.my_ip, conn.board_ip, tcp)


class IdlePeer(SilentPeer):
    """A peer that answers ARP (as SilentPeer) and completes the handshakes the harness
    opens: the board's SYN-ACK to its SYN gets the ACK Linux would send for it
    (tcp_rcv_synsent_state_process -> tcp_send_ack: seq ISN + 1, ack the SYN-ACK's seq + 1,
    the window 64240 >> 7 with the window scale 7 the harness's SYN offered, and the
    timestamp echoing the board's), then nothing more: no data, and no answer to the
    board's keepalive probes, as a peer that went away. So the board's
    tcp_keepalive_timer shows: a probe every tcp_keepalive_intvl once the connection has
    been idle tcp_keepalive_time, and the RST after tcp_keepalive_probes unanswered ones.
    A retransmitted SYN-ACK (the ACK was lost) is acknowledged again. The ACK's TSval is
    its SYN's (the SYN-ACK's TSecr) plus one: never behind it (the board's PAWS check in
    tcp_check_req), with no clock of its own."""

    ACK_WINDOW = 64240 >> 7

    def __init__(self, wire: FrameTransport, ip: str, mac: str = "52:55:0a:00:02:02"):
        super().__init__(wire, ip, mac)
        self.acks = 0

    def _on_frame(self, frame: bytes) -> None:
        super()._on_frame(frame)
        # IPv4, TCP, to us, SYN-ACK (and no RST/FIN): the handshake's third segment.
        if self._tcp_flags_to_me(frame) == 0x12:
            self._ack(frame)

    def _ack(self, frame: bytes) -> None:
        from models.wire import ACK, TcpRepr, linux_options

        eth, ip, synack = self._parse_tcp(frame)
        ts = None
        if synack.timestamp is not None:
            ts = ((synack.timestamp[1] + 1) & 0xFFFFFFFF, synack.timestamp[0])
        tcp = TcpRepr(synack.dst_port, synack.src_port, synack.ack, (synack.seq + 1) & 0xFFFFFFFF, ACK,
                      self.ACK_WINDOW if synack.wscale is not None else 64240, linux_options(ts=ts))
        self._send_tcp(eth.src, ip.dst, ip.src, tcp)
        self.acks += 1


class DeafPeer:
    """A peer on the harness's wire that answers no ARP. When it joins the wire it asks for
    the board's address once (a broadcast request: the board answers, and arp_process ->
    neigh_event_ns keeps the peer's address in a NUD_STALE entry); after that nothing of it
    reaches the board but the SYNs the scenario sends. The board's probes for it go
    unanswered, so its entry goes DELAY -> PROBE -> FAILED, and a later resolution sends
    mcast_solicit broadcasts retrans_time apart and fails (neigh_timer_handler)."""

    def __init__(self, wire: FrameTransport, ip: str, board_ip: str, mac: str = "52:55:0a:00:02:02"):
        from models.wire import ARPOP_REQUEST, ETH_P_ARP, ArpRepr, EthernetRepr, ip4, mac_bytes

        me = mac_bytes(mac)
        arp = ArpRepr(op=ARPOP_REQUEST, sha=me, sip=ip4(ip), tha=bytes(6), tip=ip4(board_ip))
        wire.inject(EthernetRepr(b"\xff" * 6, me, ETH_P_ARP).emit(arp.emit()))   # padded to 60 bytes
