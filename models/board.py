"""The board model: every layer composed from a FirmwareConfig, and a discrete-event driver.

`Board` is one AST2500 running Linux: sockets -> TCP -> IPv4 -> neighbour -> ftgmac100 ->
MDIO PHY, plus the watchdog. It takes inputs with `handle(now, event)`, says when it next
needs to run with `poll_at()`, and runs due timers with `on_timer(now)`; both return
`Predicted` outputs. `predict(config, inputs)` runs a whole timeline and returns a
`Prediction` with `.to_json()`.

Inputs (dicts, times in integer nanoseconds under "t"):
  {"t": ..., "kind": "frame", "hex": "..."}          a frame arrives at the board ("raw": bytes also)
  {"t": ..., "kind": "link", "up": false}            cable/QEMU set_link
  {"t": ..., "kind": "watchdog_daemon_start"}        busybox watchdog -T timeout -t period
  {"t": ..., "kind": "watchdog_sigterm" | "watchdog_sigkill" | "watchdog_hang"}
  {"t": ..., "kind": "reboot"}                       `reboot` at the shell
  {"t": ..., "kind": "tx_stall"}                     clear MACCR TXDMA_EN (fault injection)
  {"t": ..., "kind": "connect", "fd": "c1", "addr": "10.0.2.2", "port": 80}   (+ "sport": bind it first)
  {"t": ..., "kind": "send" | "close", "fd": "c1", "data": "..."}
"""

from __future__ import annotations

import gc
import heapq
import json
import random
from dataclasses import dataclass, field
from typing import Any

from .clock import JIFFY, NSEC_PER_SEC, Window, ms, sec, timer_wheel_slack
from .errors import ModelError, ModelUsageError, WireError
from .ftgmac100 import CARRIER_RACE_NS, NETDEV_PREFIX, Ftgmac100
from .inputs import (
    BoardInput,
    Close,
    Connect,
    FrameArrived,
    LinkChanged,
    PowerCycle,
    Reboot,
    Send,
    Shutdown,
    TxStall,
    WatchdogDaemonStart,
    WatchdogSignal,
    frame_raw,
    parse_input,
)
from .ipv4 import Fib, Ipv4Layer
from .neighbour import NeighParams, NeighTable, TxFrame
from .phy import PHY_STATE_TIME, PhyDevice, Rtl8211e
from .socket import SocketLayer
from .tcp import OutSegment, TcpParams, TcpState, TimerKind
from .watchdog import RESTART_LINE, AspeedWdt, BusyboxWatchdog, WatchdogCore
from .wire import ETH_P_ARP, ETH_P_IP, EthernetRepr, ip4, ip4_str, mac_bytes
from .wire.ethernet import eth_type_trans
from .wire.icmp import ICMP_HOST_UNREACH
from .wire.ipv4 import IPPROTO_TCP, tcp_quote

__all__ = ["Board", "Predicted", "Prediction", "predict", "BootTiming"]


@dataclass(frozen=True)
class BootTiming:
    """How long a boot takes, as windows: reset to eth0 up, eth0 up to services listening."""

    to_ifup: Window = Window(ms(500), sec(5))
    to_services: Window = Window(ms(0), sec(3))


@dataclass(slots=True)
class Predicted:
    """One predicted output: a frame on the wire, a console line, a reset, or a drop."""

    t: int
    kind: str                 # "frame" | "console" | "reset" | "drop"
    detail: dict[str, Any]
    window: Window | None = None

    def to_dict(self) -> dict[str, Any]:
        w = self.window or Window(self.t, self.t)
        detail = dict(self.detail)
        raw = detail.pop("raw", None)
        if raw is not None:
            detail["hex"] = raw.hex()
        return {"t": self.t, "earliest": w.earliest, "latest": w.latest, "kind": self.kind, **detail}

    @property
    def frame(self) -> bytes:
        """The bytes of a predicted frame."""
        return self.detail["raw"]


@dataclass
class Prediction:
    """What the board should do for a timeline of inputs."""

    events: list[Predicted] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    random_fields: list[str] = field(default_factory=list)
    inputs_processed: int = 0

    def of_kind(self, kind: str) -> list[Predicted]:
        return [e for e in self.events if e.kind == kind]

    def to_json(self) -> str:
        return json.dumps({
            "events": [e.to_dict() for e in self.events],
            "constraints": self.constraints,
            "random_fields": self.random_fields,
            "inputs_processed": self.inputs_processed,
        }, indent=1)


def _frame_summary(frame: bytes) -> dict[str, Any]:
    """A readable description of a frame the board sends (the bytes go beside it)."""
    eth, payload = EthernetRepr.parse(frame)
    out: dict[str, Any] = {"dst": eth.dst.hex(":"), "src": eth.src.hex(":"), "ethertype": eth.ethertype}
    if eth.ethertype == ETH_P_ARP:
        from .wire.arp import ArpRepr
        arp = ArpRepr.parse(payload)
        out.update(proto="arp", op=arp.op, sip=ip4_str(arp.sip), tip=ip4_str(arp.tip))
    elif eth.ethertype == ETH_P_IP:
        from .wire.ipv4 import Ipv4Repr
        from .wire.tcp import TcpRepr, flags_str
        ip, seg = Ipv4Repr.parse(payload)
        out.update(proto=ip.protocol, src_ip=ip4_str(ip.src), dst_ip=ip4_str(ip.dst), ip_id=ip.ident,
                   df=ip.df, ttl=ip.ttl)
        if ip.protocol == IPPROTO_TCP and not ip.is_fragment:
            tcp, data = TcpRepr.parse(seg, ip.src, ip.dst)
            out.update(sport=tcp.src_port, dport=tcp.dst_port, flags=flags_str(tcp.flags), seq=tcp.seq,
                       ack=tcp.ack, win=tcp.window, len=len(data), mss=tcp.mss, wscale=tcp.wscale,
                       sack_perm=tcp.sack_permitted, ts=tcp.timestamp is not None)
    return out


class Board:
    """One AST2500 board running Linux 6.1, as a state machine over model time."""

    def __init__(self, config, seed: int = 0, qemu: bool = True, boot: BootTiming = BootTiming(),
                 phy_phase: int | None = None,
                 describe_frames: bool = True, linkwatch_delays: dict[int, int] | None = None,
                 reboot: BootTiming | None = None, judging: bool = False, accept_latency: int = 0):
        self.config = config
        # How long after the handshake a service that sets SO_KEEPALIVE on what it accepts
        # (models.config Service.keepalive) may take to accept it: the first keepalive timer
        # starts then (tcp_set_keepalive), so it may fire that much later. The player: 0.
        self.accept_latency = accept_latency
        self.rng = random.Random(seed)
        self.qemu = qemu
        self.boot_timing = boot
        # the boots after a reset (None: like the first); see ifup_observed
        self.reboot_timing = reboot or boot
        self.boots = 0
        self.tcp_params = TcpParams.from_config(config)
        self.neigh_params = NeighParams.from_config(config)
        iface = config.interface
        self.mac_addr = mac_bytes(iface.mac)
        self.addr = int(iface.address.ip)
        self.prefixlen = iface.address.network.prefixlen
        self.phy = Rtl8211e()
        self.cable_up = True    # the wire itself; the PHY's registers can say otherwise (QEMU)
        self.wdt = AspeedWdt()
        self.describe_frames = describe_frames
        # phylib's poll phase relative to ifup is unknown: the model picks one, windows span it
        self.phy_phase = self.rng.randrange(PHY_STATE_TIME) if phy_phase is None else phy_phase
        self.resets: list[int] = []
        self.fds: dict[str, int] = {}
        self._out: list[Predicted] = []
        self.up = False
        self.ifup_at: int | None = None
        self.services_at: int | None = None
        self.next_phy_poll: int | None = None
        self.link_change_at: int | None = None
        self.carrier_on_at: int | None = None
        # A carrier loss is not an urgent linkwatch event: the work that flushes the
        # neighbour table runs at most once a second (linkwatch_nextevent) and whenever a
        # worker gets to it, so up to a second after netif_carrier_off. Per carrier loss
        # (0, 1, ... in order): how long after it the work runs; absent: at once.
        self.linkwatch_delays = dict(linkwatch_delays or {})
        self.carrier_losses: list[int] = []   # when each carrier loss was seen (phylib poll)
        self.linkwatch_at: int | None = None
        self.resolutions: list[int] = []   # when a neighbour resolution began (models.neighbour)
        # How late each armed kernel timer may fire: the timer wheel's slack, summed along
        # the chain of timers that armed it since the last input (see _retime).
        self._armed: dict[tuple, int] = {}
        self._late: dict[tuple, int] = {}
        self._hints: dict[tuple, list[int]] = {}
        self._learnt: dict[tuple, Window] = {}
        self._timer_live: list = []   # what armed the timers of _armed (see _timers)
        # The model judges a board (the oracle's model), rather than playing one (the
        # model-as-board): it predicts as optional what only some of Linux's draws, or
        # applications the model does not play, would make the board send (models.neighbour).
        self.judging = judging
        self._power_on(0)

    # -- life cycle ------------------------------------------------------------------------
    def _power_on(self, now: int) -> None:
        """A fresh kernel: all stack state is new; eth0 comes up after the boot delay."""
        cfg = self.config
        self.mac = Ftgmac100(self.mac_addr)
        self.phydev = PhyDevice(self.phy)
        self.neigh = NeighTable(self.neigh_params, self.mac_addr, self.addr, self.rng,
                                resolutions=self.resolutions)   # kept across reboots
        self.neigh.judging = self.judging
        self.neigh.unseen_confirms = self._app_may_confirm
        self.linkwatch_at = None
        self.ip = Ipv4Layer(self.addr, self.prefixlen, Fib.from_config(cfg), cfg.interface.mtu,
                            int(cfg.sysctl("net.ipv4.ip_default_ttl")), self.rng,
                            icmp_echo_ignore_broadcasts=bool(cfg.sysctl("net.ipv4.icmp_echo_ignore_broadcasts")))
        low, high = (int(x) for x in str(cfg.sysctl("net.ipv4.ip_local_port_range")).split())
        self.sockets = SocketLayer(self.tcp_params, self.rng, (self.addr,), self.ip.source_for, (low, high),
                                   int(cfg.sysctl("net.core.somaxconn")))
        self.sockets.host_queued = self._in_host_queue
        self.core = WatchdogCore(self.wdt)
        self.daemon: BusyboxWatchdog | None = None
        self.up = False
        self.ifup_at = now + (self.boot_timing if self.boots == 0 else self.reboot_timing).to_ifup.earliest
        self.boots += 1
        self.services_at = None
        self.next_phy_poll = None
        self.fds = {}

    def _ifup(self, now: int) -> None:
        """ip link set eth0 up: ftgmac100_open -> phy_start; the first poll comes one phase later."""
        self.up = True
        self.ifup_at = None
        self.mac.open(now)
        self.phydev.attach()
        if self.qemu:
            self.phy.phy_reset()   # QEMU resets the PHY with the machine: link bit on, cable or not
        else:
            self.phy.set_link(self.cable_up)
        self.next_phy_poll = now + self.phy_phase
        self.link_change_at = now
        self.services_at = now + self.boot_timing.to_services.earliest

    def _app_may_confirm(self, next_hop: int) -> bool:
        """May an application the model does not play have confirmed `next_hop`? An
        accepted connection (dropbear's, httpd's) through it is open: its writes, which the
        model does not know, confirm the neighbour when they are acknowledged (tcp_ack ->
        sk_dst_confirm -> sock_confirm_neigh). The model's accepted sockets outlive the
        board's (no application closes them), so this errs towards "may"."""
        open_states = (TcpState.SYN_RECV, TcpState.CLOSED, TcpState.TIME_WAIT)
        return any(sk.passive and sk.state not in open_states and self.ip.fib.next_hop(sk.remote[0]) == next_hop
                   for sk in self.sockets.established.values())

    def _in_host_queue(self, sk, seq: int) -> bool:
        """Is a copy of `sk`'s segment at `seq` waiting in a neighbour's arp_queue?"""
        want = (sk.local[0], sk.local[1], sk.remote[0], sk.remote[1], seq)
        return self.neigh.in_arp_queue(lambda packet: tcp_quote(packet) == want)

    def _start_services(self, now: int) -> None:
        """The firmware's /init after ifup: the services, then the boot-time watchdog daemon
        (harness/image/initramfs.py render_init starts `watchdog -T -t` after dropbear and
        httpd). Its start sets only the kick phase; a SIGKILL's watchdog_release pings the
        WDT, so the reset after one is at the kill + timeout whatever the phase.

        Each service's listener gets the socket options its daemon sets (models.config
        Service): dropbear's listensockets() sets IP_TOS after listen(), and the SYN-ACKs
        and accepted connections of that listener carry it. Each listens with its daemon's
        own backlog (models.config SERVICE_LISTEN_BACKLOG: dropbear's 1000, httpd's 9).

        A daemon that sets SO_KEEPALIVE on each connection it accepts (busybox httpd) is
        played as the listener's SO_KEEPALIVE, which tcp_create_openreq_child hands on with
        the child's timer armed: the daemon's own setsockopt comes when it gets to accept(),
        up to `accept_latency` later, which _retime allows the first keepalive timer."""
        self.services_at = None
        for svc in sorted((s for s in self.config.services if s.enabled), key=lambda s: s.port):
            fd = self.sockets.socket()
            self.sockets.bind(fd, 0, svc.port)
            self.sockets.listen(fd, svc.backlog)
            if svc.ip_tos:
                self.sockets.setsockopt(now, fd, "IP_TOS", svc.ip_tos)
            if svc.keepalive:
                self.sockets.setsockopt(now, fd, "SO_KEEPALIVE", 1)
        if self.config.watchdog.daemon:
            self.daemon = BusyboxWatchdog(self.core, self.config.watchdog.timeout, self.config.watchdog.period)
            self.daemon.start(now)

    def resync_reset(self, now: int) -> None:
        """The real board was seen to reset at `now` where the model did not: restart the
        model there, with no output of its own, so what follows the reset is compared with
        a model that rebooted when the board did (the divergence is the reset itself)."""
        self.resets.append(now)
        self.wdt.expires_at = None
        self.wdt.ctrl = 0
        self._power_on(now)

    def _reset(self, now: int, cause: str) -> None:
        self.resets.append(now)
        self._emit(now, "reset", {"cause": cause})
        self.wdt.expires_at = None
        self.wdt.ctrl = 0
        self._power_on(now)

    # -- outputs ---------------------------------------------------------------------------
    def _emit(self, now: int, kind: str, detail: dict[str, Any], window: Window | None = None) -> None:
        self._out.append(Predicted(now, kind, detail, window))

    def _flush(self) -> list[Predicted]:
        out, self._out = self._out, []
        return out

    def _wire(self, now: int, frames: list[bytes], cause: str, window: Window | None = None,
              optional: bool = False) -> None:
        for frame in frames:
            if not self.cable_up:
                # the cable is out (or QEMU's set_link is off): the frame is lost on the wire
                self._emit(now, "drop", {"reason": "lost on the wire (link down)", "cause": cause})
                continue
            detail: dict[str, Any] = {"cause": cause, "raw": frame}
            if optional or self.carrier_on_at is not None and now - self.carrier_on_at < CARRIER_RACE_NS:
                detail["optional"] = True   # the qdisc may not be back yet (CARRIER_RACE_NS)
            if self.describe_frames:
                detail.update(_frame_summary(frame))
            self._out.append(Predicted(now, "frame", detail, window))

    def _xmit(self, now: int, txs: list[TxFrame]) -> None:
        for tx in txs:
            self._wire(now, self.mac.dev_queue_xmit(now, tx.frame), tx.cause, tx.window, tx.optional)

    def _tcp_out(self, now: int, segs: list[OutSegment]) -> None:
        for seg in segs:
            payload = seg.tcp.emit(seg.payload, seg.src, seg.dst)
            for nh, packet in self.ip.ip_queue_xmit(now, seg.dst, IPPROTO_TCP, payload, seg.ip_id):
                # ip_finish_output2: sock_confirm_neigh (TCP's pending confirmation), then neigh_output
                for tx in self.neigh.neigh_resolve_output(now, nh, packet, confirm=seg.confirm_neigh):
                    window = seg.window if tx.cause == "ip" else tx.window
                    self._wire(now, self.mac.dev_queue_xmit(now, tx.frame), seg.cause if tx.cause == "ip" else tx.cause,
                               window, tx.optional or (seg.optional and self.judging))

    def _ip_out(self, now: int, packets: list[tuple[int, bytes]], cause: str) -> None:
        for nh, packet in packets:
            for tx in self.neigh.neigh_resolve_output(now, nh, packet):
                self._wire(now, self.mac.dev_queue_xmit(now, tx.frame), cause if tx.cause == "ip" else tx.cause,
                           tx.window, tx.optional)

    # -- inputs ----------------------------------------------------------------------------
    def handle(self, now: int, event: BoardInput | dict[str, Any]) -> list[Predicted]:
        """Apply one input at `now` (a models.inputs dataclass, or its dict form); returns
        what the board does at once."""
        if isinstance(event, dict) and event.get("kind") == "frame":
            self._rx(now, frame_raw(event))   # the per-frame path: no FrameArrived is built
        else:
            self._input(now, event if isinstance(event, BoardInput) else parse_input(event))
        if self.sockets.established:   # tsq_released looks at established sockets only
            self._tcp_out(now, self.sockets.tsq_released(now))
        self._daemons_accept()
        self._retime(now, 0)
        return self._flush()

    def _input(self, now: int, ev: BoardInput) -> None:
        if isinstance(ev, FrameArrived):
            self._rx(now, ev.raw)
        elif isinstance(ev, LinkChanged):
            self.cable_up = ev.up
            self.phy.set_link(self.cable_up)
            self.link_change_at = now
        elif isinstance(ev, WatchdogDaemonStart):
            if self.daemon is None or not self.daemon.alive:
                wd = self.config.watchdog
                self.daemon = BusyboxWatchdog(self.core, wd.timeout if ev.timeout is None else ev.timeout,
                                              wd.period if ev.period is None else ev.period)
                self.daemon.start(now)
        elif isinstance(ev, WatchdogSignal):
            if self.daemon is None or not self.daemon.alive:
                raise ModelUsageError(f"watchdog_{ev.signal} at {now} ns: no watchdog daemon is running")
            if ev.signal == "sigterm":
                lines = self.daemon.sigterm(now)
            elif ev.signal == "sigkill":
                lines = self.daemon.sigkill(now)
            else:
                self.daemon.stop_kicking(now)
                lines = []
            for line in lines:
                self._emit(now, "console", {"text": line})
        elif isinstance(ev, Reboot):
            # kernel_restart -> machine_restart: the line, then aspeed_wdt_restart
            self._emit(now, "console", {"text": RESTART_LINE})
            self.wdt.restart(now)
        elif isinstance(ev, PowerCycle):
            self.resync_reset(now)
        elif isinstance(ev, TxStall):
            self.mac.tx_dma_enabled = False
        elif isinstance(ev, (Connect, Send, Shutdown, Close)):
            self._app(now, ev)
        else:
            raise ModelUsageError(f"unknown input {ev!r} at {now} ns")

    def _app(self, now: int, ev: Connect | Send | Shutdown | Close) -> None:
        if isinstance(ev, Connect):
            if not self.up:
                raise ModelUsageError(f"connect at {now} ns: the board is not up")
            fd = self.sockets.socket()
            self.fds[ev.fd] = fd
            if ev.sport:
                # the port an observed connect() got (Linux picks it at random): bind it first
                self.sockets.bind(fd, 0, ev.sport)
            self._tcp_out(now, self.sockets.connect(now, fd, ip4(ev.addr), ev.port))
            return
        if ev.fd not in self.fds:
            raise ModelUsageError(f"{type(ev).__name__.lower()} at {now} ns on {ev.fd!r}, which was never connected")
        fd = self.fds[ev.fd]
        if isinstance(ev, Send):
            self._tcp_out(now, self.sockets.send(now, fd, ev.data))
        elif isinstance(ev, Shutdown):
            self._tcp_out(now, self.sockets.shutdown(now, fd, "SHUT_WR"))
        else:
            self._tcp_out(now, self.sockets.close(now, fd, ev.late_ns))
            del self.fds[ev.fd]

    def _rx(self, now: int, frame: bytes) -> None:
        """ftgmac100 RX -> NAPI poll -> eth_type_trans -> arp_rcv / ip_rcv."""
        if not self.up or not self.cable_up:
            self._emit(now, "drop", {"reason": "link down or eth0 not up"})
            return
        if not self.mac.rx_frame(now, frame):
            self._emit(now, "drop", {"reason": self.mac.drops[-1][1]})
            return
        for rx in self.mac.ftgmac100_poll():
            try:
                ethertype, payload = eth_type_trans(rx)
            except WireError as err:
                self._emit(now, "drop", {"reason": err.reason, "detail": err.detail})
                continue
            if ethertype == ETH_P_IP:
                ip_drops = self.ip.drops
                before = len(ip_drops)
                delivered, replies = self.ip.ip_rcv(now, payload)
                if len(ip_drops) > before:
                    for d in ip_drops[before:]:
                        self._emit(now, "drop", {"reason": d.reason, "detail": d.detail})
                for seg in delivered:
                    before_s, before_c = len(self.sockets.drops), len(self.sockets.console)
                    self._tcp_out(now, self.sockets.tcp_v4_rcv(now, seg.src, seg.dst, seg.tcp, seg.payload))
                    for d in self.sockets.drops[before_s:]:
                        self._emit(now, "drop", {"reason": d.reason, "detail": d.detail})
                    for at, line in self.sockets.console[before_c:]:   # tcp_syn_flood_action
                        self._emit(at, "console", {"text": line})
                if replies:
                    self._ip_out(now, replies, "icmp")
            elif ethertype == ETH_P_ARP:
                eth = EthernetRepr.parse(rx)[0]   # arp_rcv reads the header (its destination)
                before = len(self.neigh.drops)
                self._xmit(now, self.neigh.arp_rcv(now, eth, payload))
                for _, reason, detail in self.neigh.drops[before:]:
                    self._emit(now, "drop", {"reason": reason, "detail": detail})
            else:
                self._emit(now, "drop", {"reason": "SKB_DROP_REASON_UNHANDLED_PROTO",
                                         "detail": f"ethertype 0x{ethertype:04x}"})

    # -- timers ----------------------------------------------------------------------------
    def poll_at(self) -> int | None:
        """The earliest time the board has something to do by itself."""
        best = self.neigh.poll_at()
        for t in (self.sockets.poll_at(), self.ifup_at, self.services_at, self.next_phy_poll, self.wdt.expires_at,
                  self.mac.watchdog_at, self.linkwatch_at):
            if t is not None and (best is None or t < best):
                best = t
        if self.daemon is not None:
            t = self.daemon.poll_at()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_timer(self, now: int) -> list[Predicted]:
        """Run everything due at `now`, in the order the kernel's timers would fire.

        A frame a timer sends gets a window as late as that timer may fire: Linux's timer
        wheel lets each timer run up to one granule late, and a timer armed by a late one
        starts late too, so the slack adds up along a chain (a SYN's retransmissions, then
        the ARP probes of the neighbour entry the last one created) until an input comes."""
        if self._hints and self._defer_to_hints(now):
            return []
        due = [k for k, t in self._armed.items() if t <= now]
        late = max((self._late.get(k, 0) for k in due), default=0)
        learnt = [self._learnt.pop(k) for k in due if k in self._learnt]
        out = self._on_timer(now)
        for p in out:
            if p.kind != "frame":
                continue
            if learnt:
                # run when the board ran it; the window is what the model allowed
                p.window = Window(min(w.earliest for w in learnt), max(w.latest for w in learnt))
            elif late:
                w = p.window or Window(p.t, p.t)
                p.window = Window(w.earliest, w.latest + late)
        self._retime(now, late)
        return out

    def _timers(self) -> tuple[dict[tuple, int], list]:
        """The armed network timers (neighbour entries, TCP sockets, request socks), keyed
        by what armed them, by its id; and those objects, which _retime keeps alive until
        the next look so that no id in a key is reused meanwhile (see _timer_obj)."""
        armed: dict[tuple, int] = {}
        live: list = []
        for n in self.neigh.entries.values():
            if n.timer is not None:
                armed[("neigh", id(n))] = n.timer
                live.append(n)
        if self.sockets.established:
            for sk in self.sockets.established.values():
                if sk.timers:
                    for name, when in sk.timers.items():
                        armed[("sk", id(sk), name)] = when
                    live.append(sk)
        for s in self.sockets.listeners.values():
            if s.listener.syn_queue:   # most listeners have no request socks: skip the walk
                for req in s.listener.syn_queue.values():
                    armed[("req", id(req))] = req.expires_at
                    live.append(req)
        return armed, live

    def _timer_obj(self, key: tuple) -> Any:
        """The entry, socket or request sock a key of _armed names: found when needed (a
        timer first armed, a hint applied), not built into a table on every input."""
        ident = key[1]
        for obj in self._timer_live:
            if id(obj) == ident:
                return obj
        raise KeyError(key)

    def timer_hints(self, seen: list[tuple[int, tuple]]) -> None:
        """When the real board's timers fired, as far as its frames tell: `seen` lists
        (time, what) for the frames it sent, `what` being ("arp", target ip) for a broadcast
        ARP request or ("tcp", local port, remote ip, remote port) for a SYN, SYN-ACK or
        data segment. A model timer due at T that may fire up to L late, whose frame the
        board sent at T <= h <= T + L, is moved to h: like an ISN, the lateness is learnt
        from the board, and what follows (whether a probe found the carrier back on, when
        the next retransmission is due) follows the board's clock, not the model's guess.
        A frame outside the window teaches nothing, so it still shows as a divergence.
        Only a judging model (`Board(judging=True)`) takes hints."""
        if not self.judging:
            raise ModelUsageError("timer_hints: only a model that judges a board (Board(judging=True)) learns "
                             "its timers from one")
        hints: dict[tuple, list[int]] = {}
        for t, what in sorted(seen):
            hints.setdefault(what, []).append(t)
        self._hints = hints

    def _hint_key(self, key: tuple) -> tuple | None:
        obj = self._timer_obj(key)
        if key[0] == "neigh":
            return ("arp", obj.key)
        if key[0] == "sk" and key[2] in (TimerKind.RETRANSMIT, TimerKind.KEEPALIVE):
            return ("tcp", obj.local[1], obj.remote[0], obj.remote[1])
        if key[0] == "req":
            return ("tcp", obj.local[1], obj.remote[0], obj.remote[1])
        return None

    def _defer_to_hints(self, now: int) -> bool:
        """Move due timers to when the board was seen to run them; True if none is left due."""
        moved = False
        for key, t in list(self._armed.items()):
            late = self._late.get(key, 0)
            if t > now or not late:
                continue
            what = self._hint_key(key)
            times = self._hints.get(what) if what is not None else None
            if not times:
                continue
            while times and times[0] < t - JIFFY:
                times.pop(0)          # before this timer was due: not its frame
            if times and times[0] <= t + late:
                h = times.pop(0)
                if h > now:
                    self._set_timer(key, h)
                    self._armed[key] = h
                    moved = True
                self._late[key] = 0   # when it ran is known now
                self._learnt[key] = Window(t, t + late)
        return moved and not any(t <= now for t in self._armed.values())

    def _set_timer(self, key: tuple, when: int) -> None:
        obj = self._timer_obj(key)
        if key[0] == "neigh":
            obj.timer = when
        elif key[0] == "sk":
            obj.timers[key[2]] = when
        else:
            obj.expires_at = when

    def _retime(self, now: int, late: int) -> None:
        """Timers (re)armed while handling something that ran `late` inherit that lateness
        plus their own slack (kernel/time/timer.c: one granule of the wheel level)."""
        armed, self._timer_live = self._timers()
        if armed == self._armed:
            return   # nothing was armed, moved or stopped: every timer keeps its lateness
        self._late = {k: (self._late[k] if self._armed.get(k) == t and k in self._late
                          else late + timer_wheel_slack(max(0, t - now))) for k, t in armed.items()}
        for k in armed.keys() - self._armed.keys():
            sk = self._timer_obj(k)
            if k[0] == "sk" and k[2] is TimerKind.KEEPALIVE and sk.passive and not sk.keepalive_accepted:
                # the daemon's SO_KEEPALIVE after accept() (see _start_services)
                sk.keepalive_accepted = True
                self._late[k] += self.accept_latency
        self._armed = armed

    def _on_timer(self, now: int) -> list[Predicted]:
        if self.wdt.expires_at is not None and self.wdt.expires_at <= now:
            self._reset(now, "watchdog")
            return self._flush()
        if self.ifup_at is not None and self.ifup_at <= now:
            self._ifup(now)
        if self.services_at is not None and self.services_at <= now:
            self._start_services(now)
        if self.daemon is not None:
            self.daemon.kick_due(now)
        if self.linkwatch_at is not None and self.linkwatch_at <= now:
            self._linkwatch_carrier_down(now)
        if self.next_phy_poll is not None and self.next_phy_poll <= now:
            self.next_phy_poll = now + PHY_STATE_TIME
            self._phy_poll(now)
        if self.mac.poll_at() is not None and self.mac.poll_at() <= now:
            for log in self.mac.dev_watchdog(now):
                self._emit(log.at, "console", {"text": log.text}, log.window)
        if self.neigh.poll_at() is not None and self.neigh.poll_at() <= now:
            self._xmit(now, self.neigh.on_timer(now))
            # arp_error_report -> ipv4_link_failure: ICMP host unreachable, sent to the board
            # itself over loopback, reaches tcp_v4_err after the timer softirq
            failed, self.neigh.unreachable = self.neigh.unreachable, []
            for _, packet in failed:
                if packet[12:16] == self.addr.to_bytes(4, "big"):
                    self._tcp_out(now, self.sockets.tcp_v4_err(now, packet, ICMP_HOST_UNREACH))
        if self.sockets.poll_at() is not None and self.sockets.poll_at() <= now:
            self._tcp_out(now, self.sockets.on_timer(now))
        # a copy held back in an arp_queue left it (sent or purged): TSQ's callback
        self._tcp_out(now, self.sockets.tsq_released(now))
        self._daemons_accept()
        return self._flush()

    def _daemons_accept(self) -> None:
        """dropbear and httpd accept() each connection as it completes (the model-as-board's
        player does the same), so a service's accept queue never fills: with a listen
        backlog of 0 (somaxconn 0) the second connection is accepted as the first was.
        When each got to accept() is not observable; it bounds only the first keepalive
        timer of what httpd accepts (accept_latency)."""
        for lst in self.sockets.listeners.values():
            if lst.listener is not None and lst.listener.accept_queue:
                break
        else:
            return   # nothing to accept (the common case: look before copying the table)
        for lst in list(self.sockets.listeners.values()):
            while lst.listener is not None and lst.listener.accept_queue:
                self.sockets.accept(lst.fd)

    def ifup_observed(self, now: int) -> list[Predicted]:
        """The board was seen bringing eth0 up at `now` (its first Link is Up after a
        reset): how long a boot takes is the firmware's, not the network stack's, so like
        an ISN it is learnt; the model's eth0 comes up here if it is not up yet."""
        if not self.up and self.ifup_at is not None and self.ifup_at > now:
            self.ifup_at = now
        return self.on_timer(now)

    def phy_poll_observed(self, now: int) -> list[Predicted]:
        """phylib was seen polling at `now` (its Link is Up/Down line): run the poll now.

        The poll's phase is one of the things Linux leaves to chance (the delayed work
        drifts by a jiffy here and there); like an ISN, it is learnt from the board, and
        later polls follow every PHY_STATE_TIME from here.
        """
        self.next_phy_poll = now
        return self.on_timer(now)

    def _phy_poll(self, now: int) -> None:
        """phy_state_machine -> phy_link_up/down -> phy_link_change -> ftgmac100_adjust_link."""
        change = self.phydev.state_machine()
        if change is None:
            return
        # The poll's phase is unknown: the line falls within one poll period of the cause.
        # phy_state_machine re-queues itself with phy_queue_state_machine(PHY_STATE_TIME):
        # mod_delayed_work's timer is 100 jiffies ahead, on the timer wheel's level 1, so
        # it fires up to a granule late (timer_wheel_slack): polls come 1 s to 1.09 s apart.
        cause = self.link_change_at if self.link_change_at is not None else now
        window = Window(cause, cause + PHY_STATE_TIME + timer_wheel_slack(PHY_STATE_TIME))
        if change:
            self.mac.carrier_on(now)
            self.carrier_on_at = now
            self._emit(now, "console", {"text": NETDEV_PREFIX + self.phydev.print_status()}, window)
            self.mac.ftgmac100_reset(now)
            if self.qemu:
                self.phy.phy_reset()   # QEMU's MAC soft reset resets the PHY too
        else:
            self.mac.carrier_off(now)
            self._emit(now, "console", {"text": NETDEV_PREFIX + self.phydev.print_status()}, window)
            # linkwatch -> netdev_state_change -> arp_netdev_event(NETDEV_CHANGE)
            delay = self.linkwatch_delays.get(len(self.carrier_losses), 0)
            self.carrier_losses.append(now)
            if delay:
                self.linkwatch_at = now + delay
            else:
                self._linkwatch_carrier_down(now)

    def _linkwatch_carrier_down(self, now: int) -> None:
        """The linkwatch work for a carrier loss: the neighbour table of eth0 is flushed."""
        self.linkwatch_at = None
        if self.mac.carrier:
            return   # carrier came back first: linkwatch_do_dev sees it on, nothing is evicted
        before = len(self.neigh.drops)
        self.neigh.neigh_carrier_down(now)
        for _, reason, detail in self.neigh.drops[before:]:
            self._emit(now, "drop", {"reason": reason, "detail": detail})


def _check_progress(board: Board, now: int) -> None:
    """A timer that stays due after it ran would spin the driver forever: fail loudly."""
    t = board.poll_at()
    if t is not None and t <= now:
        board._stuck = getattr(board, "_stuck", 0) + 1
        if board._stuck > 10_000:
            raise ModelError(f"board timers do not advance at {now} ns")
    else:
        board._stuck = 0


def predict(config, inputs: list[dict[str, Any]], until: int | None = None, seed: int = 0,
            **board_kw) -> Prediction:
    """Run a board over a timeline of inputs (see the module docstring) and collect its outputs.

    `until` defaults to one minute after the last input. Inputs are applied in time order;
    at equal times inputs come before the board's own timers.
    """
    board = Board(config, seed=seed, **board_kw)
    # (time, index) orders the inputs (the index breaks ties, so the dicts are never compared)
    queue = [(int(ev["t"]), i, ev) for i, ev in enumerate(inputs)]
    queue.sort()
    if until is None:
        until = (queue[-1][0] if queue else 0) + 60 * NSEC_PER_SEC
    pred = Prediction(random_fields=["tcp.seq (ISN)", "tcp.ts (TSval offset)", "ip.id of connected sockets",
                                     "tcp.sport of connect()", "neighbour reachable_time", "phylib poll phase"])
    # The cyclic garbage collector is paused while the timeline runs: the loop allocates
    # outputs that live to the end (its generational passes would walk the growing list of
    # them again and again, a fifth of a long run) and makes no reference cycles of its own.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _run_timeline(board, queue, until, pred)
    finally:
        if collecting:
            gc.enable()
    return pred


def _run_timeline(board: Board, queue: list, until: int, pred: Prediction) -> None:
    qi, n_inputs = 0, len(queue)
    events = pred.events
    down_since: int | None = None
    while True:
        t_timer = board.poll_at()
        if qi < n_inputs and (t_timer is None or queue[qi][0] <= t_timer):
            # an input first: at equal times inputs come before the board's own timers
            nxt, _, ev = queue[qi]
            if nxt > until:
                break
            qi += 1
            try:
                out = board.handle(nxt, ev)
            except ModelUsageError as err:
                raise ModelUsageError(f"scenario step {ev!r}: {err}") from err
            pred.inputs_processed += 1
            if ev.get("kind") == "link":
                if not ev["up"] and down_since is None:
                    down_since = nxt
                elif ev["up"] and down_since is not None:
                    # happens-before: no frame leaves the board while its link is down
                    pred.constraints.append({"kind": "no_frames_between", "from": down_since, "to": nxt})
                    down_since = None
        else:
            if t_timer is None or t_timer > until:
                break
            out = board.on_timer(t_timer)
            _check_progress(board, t_timer)
        events.extend(out)
    if down_since is not None:
        pred.constraints.append({"kind": "no_frames_between", "from": down_since, "to": until})


def run_back_to_back(config_a, config_b, inputs_a: list[dict[str, Any]], inputs_b: list[dict[str, Any]],
                     until: int, delay: int = 0, seed: int = 0, wire_filter=None,
                     **board_kw) -> tuple[Board, Board, list[Predicted], list[Predicted]]:
    """Two boards joined by a wire with a one-way `delay`: each board's frames are the
    other's input. `wire_filter(frame_bytes, from_side)` may lose frames (side 0 is a).
    Returns both boards and each one's outputs."""
    boards = (Board(config_a, seed=seed, **board_kw), Board(config_b, seed=seed + 1, **board_kw))
    outs: tuple[list[Predicted], list[Predicted]] = ([], [])
    queue: list = []
    n = 0
    for side, inputs in enumerate((inputs_a, inputs_b)):
        for ev in inputs:
            n += 1
            heapq.heappush(queue, (int(ev["t"]), n, side, ev))
    while True:
        cands = [(queue[0][0], 0)] if queue else []
        for side in (0, 1):
            t = boards[side].poll_at()
            if t is not None:
                cands.append((t, 1))
        if not cands:
            break
        nxt = min(t for t, _ in cands)
        if nxt > until:
            break
        if queue and queue[0][0] == nxt:
            _, _, side, ev = heapq.heappop(queue)
            produced = boards[side].handle(nxt, ev)
        else:
            side = 0 if boards[0].poll_at() == nxt else 1
            produced = boards[side].on_timer(nxt)
            _check_progress(boards[side], nxt)
        outs[side].extend(produced)
        for p in produced:
            if p.kind == "frame" and (wire_filter is None or wire_filter(p.frame, side)):
                n += 1
                heapq.heappush(queue, (p.t + delay, n, 1 - side, {"t": p.t + delay, "kind": "frame",
                                                                    "raw": p.frame}))
    return boards[0], boards[1], outs[0], outs[1]
