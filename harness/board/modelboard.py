"""The model as the board (board kind `model`): a fast tier beside the emulated board.

A `models.board.Board` built from a firmware config (the board file's `image`, which may
be seeded with a fault) plays the board in virtual time: nothing sleeps, so a scenario of
20 s takes a fraction of a second. The harness drives it through the same scenario steps
against its own peers and it leaves the same artifacts as a run on a board, which
`harness.oracle.check_run` reads unchanged with the *declared* config. Its use is the
coverage matrix (bench/matrix.py): does each seeded fault give the rows it should? The
emulated board stays the reference; this tier never stands in for it.

What is real here and what is synthetic:

- real: the scenario and its steps (the runner's `do_step` drives every verb this board
  shares with the others: link, watchdog, frames, the wired peer's SYN); the harness's
  wire peers (`SilentPeer`, `StalledPeer`, `DeafPeer`, `LatePeer` from harness.board.wire, on a
  virtual wire through their `FrameTransport` seam); the artifact formats (a nanosecond
  pcap written by `PcapWriter`, host-events.jsonl records as `Board.record` writes them,
  the console log's stamped lines, QMP event records); the oracle.
- synthetic: the board (the model, with random draws of its own: ISN, TSval offset,
  phylib poll phase, source ports); time (virtual, `VirtualClock`, mapped onto a
  synthetic host wall clock from `VIRTUAL_WALL_EPOCH_NS`); QEMU's slirp (`SlirpPeer`,
  after the shape of the emulated board's captures); the boot (a banner, then eth0 and
  the services when the model brings them up; no other user space); the board's
  applications (busybox nc's connect and its one write; no dropbear banner, no close);
  the harness's SSH login on a slirp board (a handshake and a close).
- seeded kernel constants (`PLAYER_CONSTANTS`, the board file's `constants`) are patched
  into the model only while it plays the board, and restored before the oracle runs.
"""

from __future__ import annotations

import heapq
import importlib
import json
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import models.board as stack
from harness.board import wire as wire_peers
from harness.board.base import Board, HostEvent
from harness.board.strategy import Timeouts
from harness.errors import BoardError, StrategyError
from harness.ingest.pcapwrite import PcapWriter
from harness.paths import prepare_run_dir
from harness.runner import CONNECT_HOLD_S, WIRE_PEERS, ScenarioRun, do_step
from harness.scenario import ScenarioError, connect_port, peer_ip_str
from models.board import Board as StackModel
from models.board import BootTiming
from models.clock import Window
from models.config import FirmwareConfig
from models.errors import ModelError, ModelUsageError, WireError
from models.inputs import (
    Close,
    Connect,
    FrameArrived,
    LinkChanged,
    PowerCycle,
    Reboot,
    Send,
    Shutdown,
    WatchdogDaemonStart,
    WatchdogSignal,
)
from models.tcp import TcpState
from models.wire import (
    ACK,
    ARPOP_REPLY,
    ARPOP_REQUEST,
    ETH_P_ARP,
    ETH_P_IP,
    FIN,
    IPPROTO_TCP,
    RST,
    SYN,
    ArpRepr,
    EthernetRepr,
    Ipv4Repr,
    TcpRepr,
    ip4,
    ip4_str,
    linux_options,
)

NSEC_PER_SEC = 1_000_000_000
# The synthetic host clocks at the player's power-on (model time 0): 2026-01-01 00:00 UTC
# on the wall clock, 1000 s on the monotonic one. Fixed, so a run's artifacts repeat.
VIRTUAL_WALL_EPOCH_NS = 1_767_225_600 * NSEC_PER_SEC
VIRTUAL_MONOTONIC_EPOCH_NS = 1_000 * NSEC_PER_SEC

# Latencies the harness sees on a board (so that no two records of one cause share a stamp).
WIRE_LATENCY_NS = 20_000            # board <-> harness, one way
PEER_REPLY_NS = 50_000              # a peer acts on a frame this long after it was captured
SERIAL_LATENCY_NS = 1_000_000       # a console line reaches the host after printk stamped it
HOST_VERB_NS = 1_000_000            # a verb (QMP, a shell command) is recorded after it took effect
APP_START_NS = 20_000_000          # a command typed on the board's shell: busybox nc reaches connect()
APP_WRITE_NS = 2_000_000            # busybox nc writes this long after its connect() returned
SHUTDOWN_NS = 300_000_000           # `reboot` typed -> init kills and syncs -> kernel_restart
# The boot as the emulated board does it: /init about 1.8 s after the kernel starts, eth0
# up (Link is Up) about 2.3 s after; the services 200 ms later (what the oracle assumes,
# harness.oracle.bounds' boot_to_services).
BOOT_TO_IFUP_NS = 2_300_000_000
IFUP_TO_SERVICES_NS = 200_000_000
INIT_AT_NS = 1_800_000_000
KERNEL_IFNAME = "eth0"
NEVER_NS = 10**6 * NSEC_PER_SEC
# The runner's pauses around a scenario: the strategy sees eth0 up on its next look at the
# console (it looks every 0.5 s), the harness's SSH login (a slirp board), then the 0.5 s
# settle before the first step.
STRATEGY_POLL_NS = 500_000_000
LOGIN_HOLD_NS = 300_000_000
SETTLE_NS = 500_000_000
# The strategy's patience: booted, then eth0 up (harness.board.strategy.Timeouts).
READY_TIMEOUT_NS = int((Timeouts.booted + Timeouts.network) * NSEC_PER_SEC)
CONNECT_HOLD_NS = int(CONNECT_HOLD_S * NSEC_PER_SEC)   # the harness's connect holds its socket this long
BANNER = "Linux version 6.1.0-model (bmc-hil model-as-board) #1 SMP"
# The harness's peers on a wire it owns (harness.runner.WIRE_PEERS), by scenario `peer`.
WIRE_PEER_CLASSES = {"silent": "SilentPeer", "stalled": "StalledPeer", "deaf": "DeafPeer", "late": "LatePeer",
                     "idle": "IdlePeer", "closing": "ClosingPeer"}


class VirtualClock:
    """Model time (ns since the player's power-on) and the host clocks it stands for."""

    def __init__(self, wall_epoch_ns: int = VIRTUAL_WALL_EPOCH_NS,
                 monotonic_epoch_ns: int = VIRTUAL_MONOTONIC_EPOCH_NS):
        self.now = 0
        self.wall_epoch_ns = wall_epoch_ns
        self.monotonic_epoch_ns = monotonic_epoch_ns

    def wall_ns(self, t: int | None = None) -> int:
        return self.wall_epoch_ns + (self.now if t is None else t)

    def monotonic_ns(self, t: int | None = None) -> int:
        return self.monotonic_epoch_ns + (self.now if t is None else t)


# -- seeded kernel constants -------------------------------------------------------------
@dataclass(frozen=True)
class PlayerConstant:
    """A Linux constant the model claims, which may be seeded for the model that plays the
    board (never for the oracle's). `unit` is "ns" (a duration) or "Hz"."""

    name: str
    kernel: str
    default: int
    unit: str
    patches: Callable[[int], list[tuple[object, str, object]]]   # value -> (holder, name, new)


def _attrs(*targets: str) -> Callable[[int], list[tuple[object, str, object]]]:
    """Patches setting `module.NAME` (every module that reads the constant by name)."""
    def patches(value: int):
        return [(importlib.import_module(t.rsplit(".", 1)[0]), t.rsplit(".", 1)[1], value) for t in targets]
    return patches


def _sysctl_default(key: str, per: int) -> Callable[[int], list[tuple[object, str, object]]]:
    """Patch Linux's default of a neighbour parameter as the model records it
    (models.config.SYSCTL_DEFAULTS), in the sysctl's own unit (`per` ns)."""
    def patches(value: int):
        return [(importlib.import_module("models.config").SYSCTL_DEFAULTS, key, value // per)]
    return patches


def _wdt_clock(hz: int) -> list[tuple[object, str, object]]:
    """aspeed_wdt's counter clocked at `hz` while the driver programs counts for 1 MHz
    (WDT_CTRL_1MHZ_CLK): every reload expires after 1 MHz / hz of its time."""
    board = importlib.import_module("models.board")
    base = importlib.import_module("models.watchdog").AspeedWdt

    class SeededAspeedWdt(base):
        def _reload(self, now: int) -> None:
            self.expires_at = now + self.reload * NSEC_PER_SEC // hz

    return [(board, "AspeedWdt", SeededAspeedWdt)]


PLAYER_CONSTANTS: dict[str, PlayerConstant] = {c.name: c for c in (
    PlayerConstant("TCP_TIMEOUT_INIT", "include/net/tcp.h: the initial RTO (SYN, SYN-ACK)", NSEC_PER_SEC, "ns",
                   _attrs("models.tcp_h.TCP_TIMEOUT_INIT", "models.tcp.TCP_TIMEOUT_INIT", "models.tcp_output.TCP_TIMEOUT_INIT",
                          "models.tcp_timer.TCP_TIMEOUT_INIT", "models.tcp_minisocks.TCP_TIMEOUT_INIT",
                          "models.inet_connection_sock.TCP_TIMEOUT_INIT", "models.tcp_ipv4.TCP_TIMEOUT_INIT")),
    PlayerConstant("TCP_RTO_MIN", "include/net/tcp.h: the RTO's floor", 200_000_000, "ns",
                   _attrs("models.tcp_h.TCP_RTO_MIN", "models.tcp.TCP_RTO_MIN", "models.tcp_input.TCP_RTO_MIN",
                          "models.tcp_output.TCP_RTO_MIN", "models.tcp_timer.TCP_RTO_MIN")),
    PlayerConstant("PHY_STATE_TIME", "include/linux/phy.h: the phylib poll period", NSEC_PER_SEC, "ns",
                   _attrs("models.phy.PHY_STATE_TIME", "models.board.PHY_STATE_TIME")),
    PlayerConstant("WDT_CLOCK_HZ", "drivers/watchdog/aspeed_wdt.c: the reload counter's clock (WDT_CTRL_1MHZ_CLK)",
                   1_000_000, "Hz", _wdt_clock),
    PlayerConstant("ARP_RETRANS_TIME", "net/ipv4/arp.c arp_tbl: NEIGH_VAR_RETRANS_TIME (1 s)", NSEC_PER_SEC, "ns",
                   _sysctl_default("net.ipv4.neigh.default.retrans_time_ms", 1_000_000)),
    PlayerConstant("ARP_BASE_REACHABLE_TIME", "net/ipv4/arp.c arp_tbl: NEIGH_VAR_BASE_REACHABLE_TIME (30 s)",
                   30 * NSEC_PER_SEC, "ns",
                   _sysctl_default("net.ipv4.neigh.default.base_reachable_time_ms", 1_000_000)),
    PlayerConstant("ARP_DELAY_PROBE_TIME", "net/ipv4/arp.c arp_tbl: NEIGH_VAR_DELAY_PROBE_TIME (5 s)",
                   5 * NSEC_PER_SEC, "ns",
                   _sysctl_default("net.ipv4.neigh.default.delay_first_probe_time", NSEC_PER_SEC)),
)}


@contextmanager
def player_constants(values: dict[str, int]) -> Iterator[None]:
    """Patch the named `PLAYER_CONSTANTS` into the model for the block, then restore them.
    Process-wide: the oracle's model must not run inside the block."""
    undo: list[tuple[object, str, object, bool]] = []
    try:
        for name, value in values.items():
            if name not in PLAYER_CONSTANTS:
                raise KeyError(f"unknown model constant {name!r}; known: {', '.join(PLAYER_CONSTANTS)}")
            for holder, attr, new in PLAYER_CONSTANTS[name].patches(int(value)):
                if isinstance(holder, dict):
                    undo.append((holder, attr, holder[attr], True))
                    holder[attr] = new
                else:
                    undo.append((holder, attr, getattr(holder, attr), False))
                    setattr(holder, attr, new)
        yield
    finally:
        for holder, attr, old, is_item in reversed(undo):
            if is_item:
                holder[attr] = old
            else:
                setattr(holder, attr, old)


# -- the virtual wire ------------------------------------------------------------------------
@dataclass(frozen=True)
class VirtualFrame:
    """A frame on the virtual wire, as captured: `direction` 'from_board' or 'to_board'."""

    direction: str
    t: int
    data: bytes


class VirtualWire:
    """The board's network in virtual time: what the player sends reaches the peers (and
    the capture) WIRE_LATENCY_NS later; what a peer injects is captured at once and reaches
    the player WIRE_LATENCY_NS later. A `harness.board.wire.FrameTransport`, so the wire
    peers run on it unchanged.

    `network` "wire" is the harness's own wire (QEMU -netdev dgram): a frame injected while
    the link is down is captured (the harness sent it) and lost at the NIC. "user" is
    QEMU's slirp with filter-dump: while the link is down frames are dropped before the
    filter sees them."""

    def __init__(self, clock: VirtualClock, schedule: Callable[[int, Callable[[], None]], None],
                 to_board: Callable[[bytes], None], network: str):
        self.clock = clock
        self._schedule = schedule
        self._to_board = to_board
        self.network = network
        self.link_up = True
        self.frames: list[VirtualFrame] = []
        self._receivers: list[Callable[[bytes], None]] = []
        self._pcap: PcapWriter | None = None

    def on_frame(self, callback: Callable[[bytes], None]) -> None:
        """Call `callback(frame)` for every frame the board sends."""
        self._receivers.append(callback)

    def inject(self, frame: bytes) -> bool:
        """Send `frame` to the board; False if QEMU's slirp would have lost it (link down)."""
        if len(frame) < 14:
            raise ValueError(f"an Ethernet frame needs at least 14 bytes, got {len(frame)}")
        if self.network == "user" and not self.link_up:
            return False
        self._note("to_board", frame)
        self._schedule(self.clock.now + WIRE_LATENCY_NS, lambda: self._to_board(frame))
        return True

    def from_board(self, frame: bytes) -> None:
        """The player's frame reaches the harness's end of the wire now (and is captured);
        the peers act on it PEER_REPLY_NS later (a real peer is never in the same instant)."""
        self._note("from_board", frame)
        self._schedule(self.clock.now + PEER_REPLY_NS, lambda: self._deliver(frame))

    def _deliver(self, frame: bytes) -> None:
        for cb in self._receivers:
            cb(frame)

    def _note(self, direction: str, frame: bytes) -> None:
        self.frames.append(VirtualFrame(direction, self.clock.now, frame))
        if self._pcap is not None:
            self._pcap.write(self.clock.wall_ns(), frame)

    def capture_start(self, path: Path) -> None:
        self.capture_stop()
        self._pcap = PcapWriter(path)

    def capture_stop(self) -> None:
        if self._pcap is not None:
            self._pcap.close()
            self._pcap = None


# -- QEMU's slirp, as the board sees it ------------------------------------------------------
SLIRP_HOST = "10.0.2.2"           # the gateway: slirp's vhost_addr
SLIRP_DNS = "10.0.2.3"            # vnameserver_addr: answers ARP too
SLIRP_GUEST = "10.0.2.15"         # vdhcp_start: the guest address hostfwd forwards to
SLIRP_WINDOW = 65535
SLIRP_MSS = 1460
SLIRP_ARP_EXPIRY_NS = NSEC_PER_SEC   # if_encap: a packet waiting for ARP is dropped after 1 s


def slirp_mac(ip: str) -> bytes:
    """slirp's special_ethaddr for one of its addresses: 52:55 then the IPv4 address."""
    return b"\x52\x55" + ip4(ip).to_bytes(4, "big")


@dataclass
class _SlirpConnection:
    """One hostfwd connection: the harness's socket on 127.0.0.1 accepted by slirp, and
    slirp's TCP toward the guest (tcp_connect -> SYN)."""

    guest_port: int
    sport: int
    iss: int
    state: str = "SYN_SENT"     # -> ESTABLISHED | REFUSED, FIN_WAIT on the harness's close; CLOSED
    snd_nxt: int = 0
    rcv_nxt: int = 0
    opened_at: int = 0
    established_at: int | None = None


class SlirpPeer:
    """QEMU's user networking (libslirp, restrict=on) toward the board, in the shape the
    emulated board's captures show:
    - ARP: it answers requests for its own addresses (gateway, DNS) from 52:55:<ip> in a
      64-byte frame and learns the asker's MAC; before sending to a guest whose MAC it does
      not know it asks (who-has 10.0.2.15 tell 10.0.2.2, 60 bytes), and the packet waits up
      to a second.
    - a hostfwd connect from the harness: slirp's SYN (window 65535, MSS 1460 alone), its
      ACK of the SYN-ACK and of anything the board sends, and FIN when the harness closes
      its socket (on the emulated board an ssh connect ends in RST instead: the harness
      leaves dropbear's banner unread; the model-as-board's services send none);
    - the board's own SYN to slirp: RST|ACK at once (TTL 255, window 0);
    - IP: TTL 64, no DF, an ID counting up from 1; frames padded to 60 bytes.
    No retransmissions: the harness closes long before slirp's first RTO."""

    def __init__(self, wire: VirtualWire, clock: VirtualClock, schedule: Callable[[int, Callable[[], None]], None],
                 seed: int = 0):
        self.wire = wire
        self.clock = clock
        self._schedule = schedule
        self.host = ip4(SLIRP_HOST)
        self.answers = {ip4(SLIRP_HOST), ip4(SLIRP_DNS)}
        self.guest = ip4(SLIRP_GUEST)
        self.arp_table: dict[int, bytes] = {}
        self._waiting: list[tuple[int, bytes]] = []   # (expires, IP packet) for the guest
        self.connections: dict[int, _SlirpConnection] = {}   # by slirp's source port
        self._rng = random.Random(seed)
        self._ip_id = 0
        self._iss = 1
        wire.on_frame(self._on_frame)

    # -- the harness's side ------------------------------------------------------------------
    def connect(self, guest_port: int, hold_ns: int | None = CONNECT_HOLD_NS) -> _SlirpConnection:
        """The harness connects to a hostfwd port: slirp accepts and opens toward the guest;
        `hold_ns` later the harness closes its socket (None: it keeps it open)."""
        sport = self._rng.randrange(32768, 61000)
        while sport in self.connections:
            sport = self._rng.randrange(32768, 61000)
        self._iss = (self._iss + 64000) & 0xFFFFFFFF
        conn = _SlirpConnection(guest_port, sport, self._iss, snd_nxt=(self._iss + 1) & 0xFFFFFFFF,
                                opened_at=self.clock.now)
        self.connections[sport] = conn
        self._send_tcp(conn, conn.iss, 0, SYN, linux_options(mss=SLIRP_MSS))
        if hold_ns is not None:
            self._schedule(self.clock.now + hold_ns, lambda: self.close(conn))
        return conn

    def close(self, conn: _SlirpConnection) -> None:
        """The harness closed its socket: FIN toward the guest if the connection is up."""
        if conn.state == "ESTABLISHED":
            self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, FIN | ACK)
            conn.snd_nxt = (conn.snd_nxt + 1) & 0xFFFFFFFF
            conn.state = "FIN_WAIT"
        elif conn.state == "SYN_SENT":
            conn.state = "CLOSED"   # tcp_close in SYN_SENT: nothing more on the wire

    # -- frames from the board ----------------------------------------------------------------
    def _on_frame(self, frame: bytes) -> None:
        try:
            eth, payload = EthernetRepr.parse(frame)
            if eth.ethertype == ETH_P_ARP:
                self._arp_input(eth, ArpRepr.parse(payload))
            elif eth.ethertype == ETH_P_IP:
                ip, seg = Ipv4Repr.parse(payload)
                if ip.protocol == IPPROTO_TCP and ip.dst == self.host:
                    tcp, data = TcpRepr.parse(seg, ip.src, ip.dst)
                    self._tcp_input(tcp, data)
        except WireError:
            return   # slirp drops what it cannot parse

    def _arp_input(self, eth, arp) -> None:
        if arp.op == ARPOP_REQUEST and arp.tip in self.answers:
            self._learn(arp.sip, arp.sha)
            me = slirp_mac(ip4_str(arp.tip))
            reply = ArpRepr(op=ARPOP_REPLY, sha=me, sip=arp.tip, tha=arp.sha, tip=arp.sip)
            self._send(EthernetRepr(arp.sha, me, ETH_P_ARP).emit(reply.emit(), pad=False).ljust(64, b"\0"))
        elif arp.op == ARPOP_REPLY:
            self._learn(arp.sip, arp.sha)

    def _learn(self, ip: int, mac: bytes) -> None:
        self.arp_table[ip] = mac
        waiting, self._waiting = self._waiting, []
        for expires, packet in waiting:
            if self.clock.now <= expires:
                self._encap(packet)

    def _tcp_input(self, tcp, data: bytes) -> None:
        conn = self.connections.get(tcp.dst_port)
        if conn is None or conn.guest_port != tcp.src_port:
            if tcp.flags & (SYN | ACK | RST) == SYN:
                self._refuse(tcp)   # restrict=on: the guest reaches nothing through slirp
            return
        if conn.state in ("CLOSED", "REFUSED"):
            return
        if tcp.flags & RST:
            conn.state = "REFUSED" if conn.state == "SYN_SENT" else "CLOSED"
            return
        if conn.state == "SYN_SENT":
            if tcp.flags & (SYN | ACK) == (SYN | ACK) and tcp.ack == conn.snd_nxt:
                conn.rcv_nxt = (tcp.seq + 1) & 0xFFFFFFFF
                conn.state = "ESTABLISHED"
                conn.established_at = self.clock.now
                self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, ACK)
            return
        advance = len(data) + (1 if tcp.flags & FIN else 0)
        if advance and tcp.seq == conn.rcv_nxt:
            conn.rcv_nxt = (conn.rcv_nxt + advance) & 0xFFFFFFFF
            self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, ACK)

    # -- frames to the board ------------------------------------------------------------------
    def _send_tcp(self, conn: _SlirpConnection, seq: int, ack: int, flags: int, options=()) -> None:
        self._send_ip(TcpRepr(conn.sport, conn.guest_port, seq, ack, flags, SLIRP_WINDOW, tuple(options)), 64)

    def _refuse(self, syn) -> None:
        """tcp_respond to a SYN slirp will not connect: RST|ACK, seq 0, window 0, MAXTTL."""
        self._send_ip(TcpRepr(syn.dst_port, syn.src_port, 0, (syn.seq + 1) & 0xFFFFFFFF, RST | ACK, 0), 255)

    def _send_ip(self, tcp, ttl: int) -> None:
        seg = tcp.emit(b"", self.host, self.guest)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        self._encap(Ipv4Repr(self.host, self.guest, IPPROTO_TCP, len(seg), ttl=ttl, ident=self._ip_id,
                             df=False).emit(seg))

    def _encap(self, packet: bytes) -> None:
        """if_encap: to the guest's MAC, or an ARP request for it first (the packet waits)."""
        me = slirp_mac(SLIRP_HOST)
        dst = int.from_bytes(packet[16:20], "big")
        mac = self.arp_table.get(dst)
        if mac is not None:
            self._send(EthernetRepr(mac, me, ETH_P_IP).emit(packet))
            return
        # each packet asks once (its resolution_requested flag) and waits a second at most
        self._waiting = [(t, p) for t, p in self._waiting if t >= self.clock.now]
        self._waiting.append((self.clock.now + SLIRP_ARP_EXPIRY_NS, packet))
        req = ArpRepr(op=ARPOP_REQUEST, sha=me, sip=self.host, tha=b"\0" * 6, tip=dst)
        self._send(EthernetRepr(b"\xff" * 6, me, ETH_P_ARP).emit(req.emit()))

    def _send(self, frame: bytes) -> None:
        self.wire.inject(frame)


def slirp_forwards(image: FirmwareConfig, declared: FirmwareConfig, extra: dict[str, int]) -> dict[str, int]:
    """Forward name -> guest port, as QemuBoard._wanted_forwards makes them: the image's
    enabled services, the declared ones the image lacks, ssh on 22 at least, and the
    scenario's `port<N>` forwards. A `connect` to a service goes where its forward points."""
    wanted = {s.name: s.port for s in image.services if s.enabled}
    for s in declared.services:
        wanted.setdefault(s.name, s.port)
    wanted.setdefault("ssh", 22)
    wanted.update(extra)
    return wanted


# -- the board ---------------------------------------------------------------------------------
@dataclass
class _Pending:
    """busybox nc's write, waiting for its connect() to return."""

    fd: str
    data: bytes
    scheduled: bool = False
    shutdown: bool = False      # then shutdown(SHUT_WR), as nc at its stdin's EOF


class ModelBoard(Board):
    """The model playing the board: see the module docstring. `config` is what it is built
    from (the board file's `image`); `declared` is what the board is declared to be."""

    def __init__(self, config: FirmwareConfig, out_dir: Path, declared: FirmwareConfig, peer: str = "slirp",
                 seed: int = 1, constants: dict[str, int] | None = None, name: str = "model",
                 extra_forwards: dict[str, int] | None = None):
        super().__init__(name, out_dir, declared)
        self.config = config
        self.peer = peer
        self.seed = seed
        self.constants = dict(constants or {})
        self.extra_forwards = dict(extra_forwards or {})
        self.clock = VirtualClock()
        self.network = "wire" if peer in WIRE_PEERS else "user"
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._n = 0
        self.wire = VirtualWire(self.clock, self._at, self._frame_to_board, self.network)
        self.slirp: SlirpPeer | None = None
        self.peers: list[object] = []
        self.model = None
        self._boot_t = 0
        self._boots = 0
        self._console_log = open(self.out_dir / "console.log", "a", encoding="utf-8")
        self._qmp_log = open(self.out_dir / "qmp.jsonl", "a", encoding="utf-8")
        self._pending: dict[str, _Pending] = {}
        self._nc_by_port: dict[int, str] = {}
        self._constants = ExitStack()
        self._capture: Path | None = None

    # -- Board's verbs -------------------------------------------------------------------------
    @property
    def console(self):
        raise BoardError("the model-as-board has no serial console (the model plays the board)")

    @property
    def ssh(self):
        raise BoardError("the model-as-board has no SSH server (the model plays the board)")

    @property
    def wired(self) -> bool:
        return self.network == "wire"

    def service_address(self, service: str, port: int) -> tuple[str, int]:
        raise BoardError("the model-as-board has no sockets on this machine: its peers are played on its "
                         "virtual wire")

    def record(self, name: str, **detail) -> HostEvent:
        """As Board.record, stamped with the virtual clock's host clocks."""
        ev = HostEvent(name, self.clock.monotonic_ns(), self.clock.wall_ns(), detail)
        self.host_events.append(ev)
        if not self._host_log.closed:
            self._host_log.write(json.dumps(ev.to_json()) + "\n")
            self._host_log.flush()
        return ev

    def power_on(self) -> None:
        """A fresh player (the constants patched in), QEMU's RESUME and the boot banner."""
        if self.model is not None:
            raise BoardError("the model-as-board is already powered on")
        self._constants.enter_context(player_constants(self.constants))
        self._boots += 1
        self.record("power_on", boot=self._boots, player="model", seed=self.seed)
        # The firmware's /init configures the interface its config names; the AST2500's MAC
        # is eth0 to the kernel, so under any other name eth0 never comes up.
        to_ifup = BOOT_TO_IFUP_NS if self.config.interface.name == KERNEL_IFNAME else NEVER_NS
        self.model = StackModel(self.config, seed=self.seed,
                                boot=BootTiming(Window(to_ifup, to_ifup),
                                                Window(IFUP_TO_SERVICES_NS, IFUP_TO_SERVICES_NS)),
                                phy_phase=random.Random(self.seed).randrange(stack.PHY_STATE_TIME),
                                describe_frames=False)
        self._qmp("RESUME", {})
        self._boot(self.clock.now)
        self._activated()

    def power_off(self) -> None:
        """The player stops; the seeded constants go back to Linux's."""
        if self.model is not None:
            self.model = None
            self.record("power_off")
        self._constants.close()
        self._activated(False)

    def reset(self) -> None:
        """QMP system_reset: a fresh kernel with no output of its own."""
        self._qmp("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
        self._input(PowerCycle())
        self._boot(self.clock.now)
        self.record("reset")

    def set_link(self, up: bool) -> None:
        self.wire.link_up = up
        self._input(LinkChanged(up))
        self.advance_to(self.clock.now + HOST_VERB_NS)
        self.record("link_up" if up else "link_down")

    def capture_start(self, path: Path) -> None:
        if self._capture is not None:
            raise BoardError(f"a capture to {self._capture} is already running")
        self._capture = Path(path)
        self.wire.capture_start(self._capture)
        self.record("capture_start", path=str(path))

    def capture_stop(self) -> Path:
        if self._capture is None:
            raise BoardError("no capture is running")
        path, self._capture = self._capture, None
        self.wire.capture_stop()
        self.record("capture_stop", files=[str(path)])
        return path

    def watchdog_start(self, timeout: int, period: int = 1) -> None:
        if not 0 < period < timeout:
            raise ValueError(f"kick period {period} s must be shorter than the timeout {timeout} s")
        self._input(WatchdogDaemonStart(int(timeout), int(period)))
        self.advance_to(self.clock.now + HOST_VERB_NS)
        self.record("watchdog_start", timeout=timeout, period=period)

    def watchdog_starve(self) -> None:
        self._signal("sigkill")
        self.record("watchdog_starve")

    def watchdog_stop(self) -> None:
        self._signal("sigterm")
        self.record("watchdog_stop")

    def watchdog_kick(self) -> None:
        raise BoardError("the model-as-board has no hand kick (no shell to `printf k > /dev/watchdog` from)")

    def _signal(self, signal: str) -> None:
        try:
            self._input(WatchdogSignal(signal))
        except ModelUsageError:
            pass   # `killall watchdog` with no daemon: nothing to kill, as on the board
        self.advance_to(self.clock.now + HOST_VERB_NS)

    def close(self) -> None:
        try:
            self.power_off()
            self.wire.capture_stop()
            for fh in (self._console_log, self._qmp_log):
                if not fh.closed:
                    fh.close()
        finally:
            super().close()

    # -- what the harness does on the board's shell ----------------------------------------------
    def reboot(self) -> None:
        """`reboot` typed on the console: kernel_restart after init's shutdown."""
        self.record("reboot")
        self._at(self.clock.now + SHUTDOWN_NS, lambda: self._input(Reboot()))

    def board_connect(self, fd: str, addr: str, port: int, data: str | None = None, shutdown: bool = False) -> None:
        """busybox nc on the board connects to `addr`:`port` (and writes `data` once
        connected; with `shutdown`, then shuts its side)."""
        try:
            self._input(Connect(fd, addr, int(port)))
        except ModelUsageError as exc:
            raise BoardError(f"board_connect: {exc}", artifacts=self.out_dir) from exc
        self._nc_by_port[int(port)] = fd
        if data is not None:
            self._pending[fd] = _Pending(fd, data.encode(), shutdown=shutdown)
            self._applications()

    def board_close(self, port: int) -> None:
        """The nc connected to `port` is killed: its socket is closed (tcp_close)."""
        fd = self._nc_by_port.pop(int(port), None)
        if fd is None or self.model is None or fd not in self.model.fds:
            raise BoardError(f"board_close: no program of the board is connected to port {port}",
                             artifacts=self.out_dir)
        self._pending.pop(fd, None)
        self._input(Close(fd))

    def network_ready(self) -> bool:
        """What the strategy's NETWORK step checks: eth0 up with carrier (and, here, the
        services the firmware starts with it listening)."""
        m = self.model
        return m is not None and m.up and m.mac.carrier and m.services_at is None

    def listening(self) -> set[int]:
        """The ports the board listens on (as /proc/net/tcp would say)."""
        return set(self.model.sockets.listeners) if self.model is not None else set()

    # -- peers ------------------------------------------------------------------------------------
    def attach_peer(self, peer: str, peer_ip: str) -> None:
        """The scenario's peer joins the wire: a wire peer of harness.board.wire, or slirp."""
        if peer == "slirp":
            self.slirp = SlirpPeer(self.wire, self.clock, self._at, seed=self.seed)
            self.peers.append(self.slirp)
            return
        if peer not in WIRE_PEERS or not hasattr(wire_peers, WIRE_PEER_CLASSES.get(peer, "")):
            raise BoardError(f"peer {peer!r}: the model-as-board knows slirp and "
                             + ", ".join(p for p, c in WIRE_PEER_CLASSES.items() if hasattr(wire_peers, c)))
        cls = getattr(wire_peers, WIRE_PEER_CLASSES[peer])
        if peer in ("stalled", "closing"):
            self.peers.append(cls(self.wire, peer_ip, clock=self.clock.monotonic_ns))
        elif peer == "deaf":
            self.peers.append(cls(self.wire, peer_ip, str(self.declared.interface.address.ip)))
        else:
            self.peers.append(cls(self.wire, peer_ip))

    def host_port_guest(self, name: str) -> int:
        """The guest port a forward points at (a slirp board)."""
        return slirp_forwards(self.config, self.declared, self.extra_forwards)[name]

    # -- virtual time -------------------------------------------------------------------------------
    def _at(self, t: int, action: Callable[[], None]) -> None:
        self._n += 1
        heapq.heappush(self._queue, (max(t, self.clock.now), self._n, action))

    def advance_to(self, target: int) -> None:
        """Run the player, the wire and the peers up to virtual time `target`."""
        spins = 0
        while (nxt := self._next_event()) is not None and nxt <= target:
            t_q = self._queue[0][0] if self._queue else None
            spins = spins + 1 if nxt == self.clock.now else 0
            if spins > 10_000:
                raise ModelError(f"the player does not advance at {nxt} ns")
            self.clock.now = nxt
            if t_q is not None and t_q == nxt:   # inputs before timers, as models.board.predict
                heapq.heappop(self._queue)[2]()
            else:
                self._outputs(self.model.on_timer(nxt))
                self._applications()
        self.clock.now = max(self.clock.now, target)

    def run_until(self, done: Callable[[], bool], timeout_ns: int) -> bool:
        """Advance event by event until `done()`, or until `timeout_ns` of virtual time passed."""
        deadline = self.clock.now + timeout_ns
        while not done():
            nxt = self._next_event()
            if nxt is None or nxt > deadline:
                self.advance_to(deadline)
                return done()
            self.advance_to(nxt)
        return True

    def _next_event(self) -> int | None:
        times = [self._queue[0][0]] if self._queue else []
        if self.model is not None and (t := self.model.poll_at()) is not None:
            times.append(max(t, self.clock.now))
        return min(times, default=None)

    # -- the player's inputs and outputs ---------------------------------------------------------------
    def _input(self, ev) -> None:
        if self.model is None:
            raise BoardError("the model-as-board is powered off")
        self._outputs(self.model.handle(self.clock.now, ev))
        self._applications()

    def _frame_to_board(self, frame: bytes) -> None:
        if self.model is not None:
            self._input(FrameArrived(frame))

    def _outputs(self, outs) -> None:
        for p in outs:
            if p.kind == "frame":
                frame = p.frame
                self._at(p.t + WIRE_LATENCY_NS, lambda f=frame: self.wire.from_board(f))
            elif p.kind == "console":
                self._console(p.t, p.detail["text"])
            elif p.kind == "reset":
                # QEMU: aspeed_wdt's expiry -> watchdog_perform_action -> a guest reset
                self._qmp("WATCHDOG", {"action": "reset"}, p.t)
                self._qmp("RESET", {"guest": True, "reason": "guest-reset"}, p.t)
                self._boot(p.t)

    def _applications(self) -> None:
        """The board's programs, as far as the kernel sees them: the services (dropbear,
        httpd) accept each connection at once, so no accept queue fills; nc writes once
        its connect() returned (the socket is ESTABLISHED)."""
        if self.model is None:
            return
        for listening in list(self.model.sockets.listeners.values()):
            while listening.listener is not None and listening.listener.accept_queue:
                self.model.sockets.accept(listening.fd)
        for pend in self._pending.values():
            if pend.scheduled or pend.fd not in self.model.fds:
                continue
            try:
                state = self.model.sockets.sock(self.model.fds[pend.fd]).state
            except Exception:  # noqa: BLE001 - the socket is gone (refused, timed out): nc never writes
                continue
            if state is TcpState.ESTABLISHED:
                pend.scheduled = True
                self._at(self.clock.now + APP_WRITE_NS, lambda p=pend: self._write(p))

    def _write(self, pend: _Pending) -> None:
        if self.model is not None and pend.fd in self.model.fds:
            self._input(Send(pend.fd, pend.data))
            if pend.shutdown:
                self._at(self.clock.now + APP_WRITE_NS, lambda: self._shutdown(pend.fd))

    def _shutdown(self, fd: str) -> None:
        if self.model is not None and fd in self.model.fds:
            self._input(Shutdown(fd))

    # -- artifacts ---------------------------------------------------------------------------------------
    def _boot(self, t: int) -> None:
        """A new kernel starts at `t`: its printk clock restarts; the banner and /init."""
        self._boot_t = t
        self._console(t, "Booting Linux on physical CPU 0x0")
        self._console(t, BANNER)
        self._console(t + INIT_AT_NS, "Run /init as init process")

    def _console(self, t: int, text: str) -> None:
        guest = max(0, t - self._boot_t)
        line = f"[{guest // NSEC_PER_SEC:5d}.{guest // 1000 % 1_000_000:06d}] {text}"
        self._at(t + SERIAL_LATENCY_NS, lambda: self._write_console(line))

    def _write_console(self, line: str) -> None:
        wall = self.clock.wall_ns()
        if not self._console_log.closed:
            self._console_log.write(f"{wall // NSEC_PER_SEC}.{wall // 1000 % 1_000_000:06d} {line}\n")
            self._console_log.flush()

    def _qmp(self, name: str, data: dict, t: int | None = None) -> None:
        t = self.clock.now if t is None else t
        rec = {"event": name, "data": data, "qemu_wall_ns": self.clock.wall_ns(t) // 1000 * 1000,
               "host_monotonic_ns": self.clock.monotonic_ns(t) + HOST_VERB_NS,
               "host_wall_ns": self.clock.wall_ns(t) + HOST_VERB_NS}
        if not self._qmp_log.closed:
            self._qmp_log.write(json.dumps(rec) + "\n")
            self._qmp_log.flush()


# -- a scenario run ---------------------------------------------------------------------------------------
def open_model_board(spec, scenario, out: Path) -> ModelBoard:
    """The model-as-board for one scenario run (as harness.runner.open_scenario_board)."""
    if scenario.peer == "slirp" and any(s.do == "frame" for s in scenario.steps):
        raise ScenarioError(f"{scenario.source}: frame steps need a board with network: wire")
    extra = {f"port{s.args['port']}": int(s.args["port"]) for s in scenario.steps
             if s.do == "connect" and "port" in s.args}
    return ModelBoard(spec.image_config or spec.firmware, out, spec.firmware, peer=scenario.peer,
                      seed=spec.player_seed, constants=dict(spec.player_constants), name=spec.name,
                      extra_forwards=extra)


def _bring_up(board: ModelBoard, scenario) -> None:
    """What harness.runner does before the first step: boot to NETWORK (a wired peer joins
    the wire, the board must listen on the connect ports) or to SSH (a slirp board: the
    harness's SSH login is a connection to the ssh forward)."""
    if not board.run_until(board.network_ready, READY_TIMEOUT_NS):
        raise StrategyError("network", f"eth0 not up with carrier within {READY_TIMEOUT_NS / 1e9:g} s",
                            artifacts=board.out_dir)
    board.advance_to(board.clock.now + STRATEGY_POLL_NS)
    if scenario.peer in WIRE_PEERS:
        board.attach_peer(scenario.peer, peer_ip_str(board.declared))
        ports = {connect_port(s, board.declared) for s in scenario.steps if s.do == "connect"}
        if not ports <= board.listening():
            raise BoardError(f"the board does not listen on {sorted(ports)} within 20 s; listening: "
                             f"{sorted(board.listening())}", artifacts=board.out_dir)
        return
    board.attach_peer("slirp", peer_ip_str(board.declared))
    login = board.slirp.connect(board.host_port_guest("ssh"), hold_ns=None)
    if not board.run_until(lambda: login.state != "SYN_SENT", 10 * NSEC_PER_SEC) or login.state != "ESTABLISHED":
        why = "connection refused" if login.state == "REFUSED" else "no answer"
        raise StrategyError("ssh", f"SSH to the ssh forward (guest port {login.guest_port}): {why}",
                            artifacts=board.out_dir)
    board.advance_to(board.clock.now + LOGIN_HOLD_NS)
    board.slirp.close(login)


def do_model_step(board: ModelBoard, step, n: int) -> dict:
    """One scenario step: the runner's own `do_step` for every verb this board shares with
    the others; the slirp connect, the board's nc and `reboot` on the console here."""
    if step.do == "connect" and board.network != "wire":
        port = connect_port(step, board.declared)
        name = step.args.get("service") or f"port{port}"
        conn = board.slirp.connect(board.host_port_guest(name))
        return {"connected": True, "guest_port": conn.guest_port}
    if step.do == "board_connect":
        # Recorded when asked, as the runner does; nc gets to connect() APP_START_NS later.
        peer, port = peer_ip_str(board.declared), int(step.args["port"])
        extra = {"data": step.args["data"]} if "data" in step.args else {}
        if step.args.get("shutdown"):
            extra["shutdown"] = True
        board.record("board_connect", addr=peer, port=port, **extra)
        board.advance_to(board.clock.now + APP_START_NS)
        board.board_connect(f"board{n}", peer, port, step.args.get("data"), bool(step.args.get("shutdown")))
        return {}
    if step.do == "board_close":
        # Recorded when asked, as the runner does; the kill ends nc APP_START_NS later.
        board.record("board_close", port=int(step.args["port"]))
        board.advance_to(board.clock.now + APP_START_NS)
        board.board_close(int(step.args["port"]))
        return {}
    if step.do == "peer_fin":
        return {"fins": board.peers[-1].fin()}
    if step.do == "reboot":
        board.reboot()
        return {}
    return do_step(board, step, n)


def run_model_scenario(spec, scenario, out: Path, log=print):
    """A scenario on the model-as-board, as harness.runner.run_scenario does it on a board,
    in virtual time; returns the runner's ScenarioRun (its wall times are the synthetic
    clock's)."""
    prepare_run_dir(out)
    steps = []
    with open_model_board(spec, scenario, out) as board:
        board.capture_start(out / "capture.pcap")
        board.power_on()
        _bring_up(board, scenario)
        board.advance_to(board.clock.now + SETTLE_NS)
        start_wall, t0 = board.record("scenario_start", scenario=scenario.name).host_wall_ns, board.clock.now
        for n, step in enumerate(scenario.steps):
            board.advance_to(t0 + step.at_ns)
            info = do_model_step(board, step, n)
            steps.append({"at_s": step.at_ns / 1e9, "do": step.do, **step.args, **info, "late_s": 0.0})
            log(f"  {scenario.name}: {step.do} {step.args or ''}")
        board.advance_to(t0 + scenario.end_ns)
        end_wall = board.record("scenario_end", scenario=scenario.name).host_wall_ns
        # The model plays on for as long as it is asked: it is alive by construction.
        board.record("liveness", alive=True, answered_after_s=0.0)
        board.capture_stop()
    (out / "steps.json").write_text(json.dumps(steps, indent=1) + "\n")
    return ScenarioRun(scenario, out, start_wall, end_wall, steps)
