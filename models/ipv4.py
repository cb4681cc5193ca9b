"""IPv4: the FIB, ip_queue_xmit's header, ip_fragment, ip_rcv's checks, ICMP echo.

Read beside net/ipv4/ip_output.c (ip_queue_xmit, __ip_queue_xmit, ip_finish_output2,
ip_do_fragment), ip_input.c (ip_rcv, ip_rcv_core, ip_local_deliver), icmp.c (icmp_echo,
icmp_reply) and fib_trie.c's longest-prefix match.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import WireError
from .wire.icmp import ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHOREPLY, IcmpRepr
from .wire.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Repr
from .wire.tcp import TcpRepr
from .wire.udp import UdpRepr

__all__ = ["FibEntry", "Fib", "Ipv4Layer", "IpDrop", "Delivered"]

ICMP_PORT_UNREACH = 3
ICMP_TIMESTAMP = 13   # include/uapi/linux/icmp.h
ICMP_PROT_UNREACH = 2


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class FibEntry:
    """One route: a /proc/net/route row (destination, gateway, mask, metric)."""

    destination: int
    prefixlen: int
    gateway: int | None
    metric: int = 0

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefixlen)) & 0xFFFFFFFF if self.prefixlen else 0

    def matches(self, addr: int) -> bool:
        return (addr & self.mask) == self.destination


class Fib:
    """The main table: longest prefix first, then the lowest metric."""

    def __init__(self, entries: list[FibEntry]):
        self.entries = sorted(entries, key=lambda e: (-e.prefixlen, e.metric))
        self._cache: dict[int, int | None] = {}   # the table never changes after boot

    @classmethod
    def from_config(cls, config) -> Fib:
        """From FirmwareConfig.route_table() (the on-link prefix, the default route, extras)."""
        out = []
        for route in config.route_table():
            net = route.destination
            out.append(FibEntry(int(net.network_address), net.prefixlen,
                                None if route.gateway is None else int(route.gateway), route.metric))
        return cls(out)

    def lookup(self, dst: int) -> FibEntry | None:
        """fib_table_lookup(): None means ENETUNREACH."""
        for entry in self.entries:
            if entry.matches(dst):
                return entry
        return None

    def next_hop(self, dst: int) -> int | None:
        """The neighbour to resolve: the gateway for off-link destinations, else dst itself."""
        try:
            return self._cache[dst]
        except KeyError:
            pass
        entry = self.lookup(dst)
        nh = None if entry is None else (entry.gateway if entry.gateway is not None else dst)
        self._cache[dst] = nh
        return nh


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class IpDrop:
    """A packet ip_rcv or ip_queue_xmit dropped, with the kernel's reason."""

    at: int
    reason: str
    detail: str


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class Delivered:
    """A TCP segment ip_local_deliver hands to tcp_v4_rcv."""

    src: int
    dst: int
    tcp: TcpRepr
    payload: bytes


class Ipv4Layer:
    """IPv4 for one interface address. Output returns (next_hop, packet bytes) pairs."""

    def __init__(self, addr: int, prefixlen: int, fib: Fib, mtu: int = 1500, ttl: int = 64,
                 rng: random.Random | None = None, icmp_echo_ignore_broadcasts: bool = True):
        self.addr = addr
        self.icmp_echo_ignore_broadcasts = icmp_echo_ignore_broadcasts
        self.prefixlen = prefixlen
        self.fib = fib
        self.mtu = mtu
        self.ttl = ttl
        self.rng = rng or random.Random(0)
        self.drops: list[IpDrop] = []
        self.udp_ports: set[int] = set()

    @property
    def broadcast(self) -> int:
        host_bits = 32 - self.prefixlen
        return self.addr | ((1 << host_bits) - 1) if host_bits else self.addr

    def source_for(self, dst: int) -> int:
        """ip_route_connect()'s source address: the interface address (one address, one device)."""
        return self.addr

    # -- output --------------------------------------------------------------------------
    def ip_queue_xmit(self, now: int, dst: int, protocol: int, payload: bytes, ident: int | None,
                      df: bool = True) -> list[tuple[int, bytes]]:
        """Route, build the header (TTL, DF, ID, checksum) and fragment above the MTU.

        `ident` None means "no connected socket": a DF packet gets ID 0 (ip_select_ident_segs),
        a non-DF one a random ID from the ip_idents hash.
        """
        nh = self.fib.next_hop(dst)
        if nh is None:
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_IP_OUTNOROUTES", f"no route to {dst:#x}"))
            return []
        if ident is None:
            ident = 0 if df else self.rng.getrandbits(16)
        ip = Ipv4Repr(self.addr, dst, protocol, len(payload), self.ttl, ident & 0xFFFF, df)
        if ip.buffer_len <= self.mtu:
            return [(nh, ip.emit(payload))]
        if df:
            # a local DF packet above the MTU: EMSGSIZE to the sender, nothing on the wire
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_PKT_TOO_BIG", f"{ip.buffer_len} > mtu {self.mtu}"))
            return []
        return [(nh, frag) for frag in self.ip_fragment(ip, payload)]

    def ip_fragment(self, ip: Ipv4Repr, payload: bytes) -> list[bytes]:
        """ip_do_fragment(): pieces of (mtu - header) rounded down to 8 bytes, MF on all but the last."""
        step = (self.mtu - ip.header_len) & ~7
        out = []
        for offset in range(0, len(payload), step):
            piece = payload[offset:offset + step]
            last = offset + step >= len(payload)
            frag = Ipv4Repr(ip.src, ip.dst, ip.protocol, len(piece), ip.ttl, ip.ident, False, not last,
                            ip.frag_offset + offset, ip.tos, ip.options)
            out.append(frag.emit(piece))
        return out

    # -- input ---------------------------------------------------------------------------
    def ip_rcv(self, now: int, packet: bytes) -> tuple[list[Delivered], list[tuple[int, bytes]]]:
        """ip_rcv() -> ip_local_deliver(): returns (TCP segments for tcp_v4_rcv, packets to send)."""
        try:
            ip, payload = Ipv4Repr.parse(packet)
        except WireError as err:
            self.drops.append(IpDrop(now, err.reason, err.detail))
            return [], []
        if ip.dst not in (self.addr, self.broadcast, 0xFFFFFFFF):
            # not ours and ip_forward is 0: ip_route_input fails, ip_error drops it
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_IP_INADDRERRORS", f"not for us: {ip.describe()}"))
            return [], []
        if ip.is_fragment:
            # ip_defrag() is not modelled: counted, not reassembled
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "fragment (reassembly not modelled)"))
            return [], []
        if ip.protocol == IPPROTO_TCP:
            if ip.dst != self.addr:
                self.drops.append(IpDrop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "TCP to a broadcast address"))
                return [], []
            try:
                tcp, data = TcpRepr.parse(payload, ip.src, ip.dst)
            except WireError as err:
                self.drops.append(IpDrop(now, err.reason, err.detail))
                return [], []
            return [Delivered(ip.src, ip.dst, tcp, data)], []
        if ip.protocol == IPPROTO_ICMP:
            return [], self.icmp_rcv(now, ip, payload)
        if ip.protocol == IPPROTO_UDP:
            return [], self.udp_rcv(now, ip, packet, payload)
        self.drops.append(IpDrop(now, "SKB_DROP_REASON_IP_NOPROTO", f"protocol {ip.protocol}"))
        if ip.dst == self.addr:
            return [], self.icmp_send(now, ip, packet, ICMP_DEST_UNREACH, ICMP_PROT_UNREACH)
        return [], []

    def icmp_rcv(self, now: int, ip: Ipv4Repr, payload: bytes) -> list[tuple[int, bytes]]:
        """icmp_rcv() -> icmp_echo(): reply to echo requests; to broadcast ones only when
        net.ipv4.icmp_echo_ignore_broadcasts is 0 (RFC 1122 3.2.2.6)."""
        try:
            icmp = IcmpRepr.parse(payload)
        except WireError as err:
            self.drops.append(IpDrop(now, err.reason, err.detail))
            return []
        if ip.dst != self.addr and icmp.type in (ICMP_ECHO, ICMP_TIMESTAMP) and self.icmp_echo_ignore_broadcasts:
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_INVALID_PROTO", "echo to broadcast ignored"))
            return []
        if icmp.type != ICMP_ECHO:
            return []
        reply = IcmpRepr(ICMP_ECHOREPLY, 0, icmp.ident, icmp.sequence, icmp.data)
        # icmp_reply() uses the ICMP control socket: no DF, an ip_idents ID
        return self.ip_queue_xmit(now, ip.src, IPPROTO_ICMP, reply.emit(), None, df=False)

    def udp_rcv(self, now: int, ip: Ipv4Repr, packet: bytes, payload: bytes) -> list[tuple[int, bytes]]:
        """__udp4_lib_rcv(): no socket on the port -> ICMP port unreachable (unicast only)."""
        try:
            udp, _ = UdpRepr.parse(payload, ip.src, ip.dst)
        except WireError as err:
            self.drops.append(IpDrop(now, err.reason, err.detail))
            return []
        if udp.dst_port in self.udp_ports:
            return []
        self.drops.append(IpDrop(now, "SKB_DROP_REASON_NO_SOCKET", f"udp port {udp.dst_port}"))
        if ip.dst != self.addr:
            return []
        return self.icmp_send(now, ip, packet, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH)

    def icmp_send(self, now: int, ip: Ipv4Repr, packet: bytes, type_: int, code: int) -> list[tuple[int, bytes]]:
        """__icmp_send(): quote as much of the offending packet as fits in 576 bytes."""
        room = 576 - 20 - 8
        quoted = packet[:min(ip.buffer_len, room)]
        msg = IcmpRepr(type_, code, data=quoted)
        return self.ip_queue_xmit(now, ip.src, IPPROTO_ICMP, msg.emit(), None, df=False)
