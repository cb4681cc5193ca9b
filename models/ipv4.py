"""IPv4: the FIB, ip_queue_xmit's header, ip_fragment, ip_rcv's checks, ICMP echo.

Read beside net/ipv4/ip_output.c (ip_queue_xmit, __ip_queue_xmit, ip_build_and_send_pkt,
__ip_make_skb, ip_send_unicast_reply, ip_finish_output2, ip_do_fragment), include/net/ip.h
(ip_select_ident_segs, ip_dont_fragment), route.c (__ip_select_ident, ip_idents_reserve),
ip_input.c (ip_rcv, ip_rcv_core, ip_local_deliver), icmp.c (icmp_echo, icmp_reply,
__icmp_send) and fib_trie.c's longest-prefix match.

What the board puts in the TOS, DF and ID of what it sends depends on the sender
(Linux 6.1; ECN means the TOS byte's two low bits, INET_ECN_MASK):
- SYN-ACK: the listener, tcp_v4_send_synack -> ip_build_and_send_pkt. TOS: the listener's
  inet->tos (tcp_reflect_tos: the SYN's DSCP). DF, ID 0 (skb->len <= IPV4_MIN_MTU).
- RST from tcp_v4_send_reset (no socket, an ACK to a listener, a bad ACK in SYN_SENT) and
  TIME_WAIT ACKs (tcp_v4_send_ack): the control socket ipv4_tcp_sk, ip_send_unicast_reply.
  TOS: the received segment's (TIME_WAIT: the socket's tw_tos) less ECN. DF
  (IP_PMTUDISC_DO), ID 0 (no destination).
- Everything else a TCP socket sends (SYN, data, ACK, FIN, its own RST): ip_queue_xmit.
  TOS: inet->tos (a child's is its listener's). DF unless ip_no_pmtu_disc. ID: inet_id,
  which counts on by one per segment.
- ICMP echo reply: the ICMP control socket, icmp_reply. TOS: the request's whole byte,
  ECN included. No DF (IP_PMTUDISC_DONT), ID from ip_idents.
- ICMP error: __icmp_send. TOS: (request TOS & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL.
  No DF, ID from ip_idents.
Random IDs: a connected socket's first inet_id is get_random_u16() (tcp_v4_connect,
tcp_v4_syn_recv_sock) and each later segment of it has the next (`inet_id_follows`); the
ip_idents generator starts each bucket at random and adds 1 plus a random step below the
jiffies since the bucket's last use (`ip_idents_follows`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .clock import JIFFY
from .errors import WireError
from .wire.icmp import ICMP_DEST_UNREACH, ICMP_ECHO, IcmpRepr, icmp_checked_type, icmp_echo_reply
from .wire.ipv4 import (
    IP_DF,
    IP_MF,
    IP_OFFSET,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Ipv4Repr,
    ipv4_header,
    ipv4_rcv_core,
)
from .wire.tcp import TcpRepr
from .wire.udp import UdpRepr

__all__ = ["FibEntry", "Fib", "Ipv4Layer", "IpDrop", "Delivered", "InetTx", "IpIdents", "inet_id_follows",
           "ip_idents_follows"]

ICMP_PORT_UNREACH = 3
ICMP_TIMESTAMP = 13   # include/uapi/linux/icmp.h
ICMP_PROT_UNREACH = 2
IPTOS_TOS_MASK = 0x1E              # include/uapi/linux/ip.h: RT_TOS()
IPTOS_PREC_INTERNETCONTROL = 0xC0
U16 = 0xFFFF
U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class InetTx:
    """What the sender of a packet puts in its IPv4 header (struct inet_sock's tos, pmtudisc
    and inet_id as the output paths read them).

    `ident`: the socket's inet_id for a connected socket (ip_select_ident_segs takes it when
    inet_daddr is set); None for a sender with no destination (the control sockets, a
    listener): then a DF packet gets ID 0 and one without DF an ID from ip_idents.
    `df`: ip_dont_fragment(), i.e. pmtudisc is IP_PMTUDISC_WANT or _DO.
    """

    ident: int | None = None
    tos: int = 0
    df: bool = True


class IpIdents:
    """ip_idents_reserve() (net/ipv4/route.c): the IDs of packets with neither DF nor a
    connected socket (ICMP replies and errors).

    The kernel hashes (daddr, saddr, protocol) with a per-netns siphash key into one of
    2048..256K buckets, each a 32-bit counter filled with get_random_bytes() at boot and the
    jiffies it was last used (0 at boot). A packet adds 1 plus `prandom_u32_max(now - then)`,
    a random step below the jiffies since the bucket's last use, and takes the counter's
    value before that 1. The model keeps one bucket per (daddr, saddr, protocol) (a hash
    collision with another flow would add that flow's packets to the steps)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._buckets: dict[tuple[int, int, int], list[int | None]] = {}

    def reserve(self, now: int, daddr: int, saddr: int, protocol: int, segs: int = 1) -> int:
        bucket = self._buckets.get((daddr, saddr, protocol))
        if bucket is None:
            # the counter starts random (get_random_bytes in ip_rt_init), so the first ID is
            # uniform whatever the first step adds
            bucket = self._buckets[(daddr, saddr, protocol)] = [self.rng.getrandbits(32), None]
        counter, stamp = bucket
        nowj = now // JIFFY
        delta = 0
        if stamp is not None and nowj != stamp:
            delta = self.rng.randrange(nowj - stamp)
        bucket[0] = (counter + segs + delta) & U32
        bucket[1] = nowj
        return (bucket[0] - segs) & U16


def inet_id_follows(prev_id: int, next_id: int, segments: int = 1) -> bool:
    """Is `next_id` what a connected TCP socket puts on its `segments`-th segment after the
    one that carried `prev_id`? ip_select_ident_segs: iph->id = inet_id; inet_id += segs
    (a GSO packet reserves one ID per segment and inet_gso_segment numbers them in order),
    so consecutive segments of a socket, retransmissions and pure ACKs included, count up
    by one. Control-socket packets of the same flow (tcp_v4_send_reset, TIME_WAIT ACKs)
    carry ID 0 and take no ID from the socket."""
    return (next_id - prev_id) & U16 == segments & U16


def ip_idents_follows(prev_id: int, prev_t: int, next_id: int, next_t: int, packets: int = 1,
                      jiffy: int = JIFFY) -> bool:
    """Can ip_idents_reserve() give `next_id` to the `packets`-th packet of a bucket after
    the one that got `prev_id` at `prev_t` (times in ns)? Each packet adds 1 and a random
    step below the jiffies since the previous one; over the whole gap the steps add up to
    less than the jiffies that passed (each is below its own gap; a gap of 0 jiffies adds
    0). The jiffies between two times `d` ns apart are floor(d / JIFFY) or one more,
    depending on where the ticks fall, so the steps add up to at most floor(d / JIFFY).
    Past 2^16 - 1 possible steps, any ID can follow. `jiffy`: the tick of another HZ."""
    if next_t < prev_t:
        return False
    most = (next_t - prev_t) // jiffy   # jiffies passed, less the one a step stays below
    return most >= U16 or (next_id - prev_id - packets) & U16 <= most


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
        self.ip_idents = IpIdents(self.rng)
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
    def ip_queue_xmit(self, now: int, dst: int, protocol: int, payload: bytes, ident: int | InetTx | None,
                      df: bool = True, tos: int = 0) -> list[tuple[int, bytes]]:
        """Route, build the header (TOS, TTL, DF, ID, checksum) and fragment above the MTU.

        `ident` is the sender's InetTx (its TOS, DF and ID), or just an ID with `df` and
        `tos` beside it. An ID of None means "no connected socket" (ip_select_ident_segs):
        a DF packet gets ID 0, one without DF an ID from ip_idents.
        """
        if isinstance(ident, InetTx):
            ident, df, tos = ident.ident, ident.df, ident.tos
        nh = self.fib.next_hop(dst)
        if nh is None:
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_IP_OUTNOROUTES", f"no route to {dst:#x}"))
            return []
        if ident is None:
            ident = 0 if df else self.ip_idents.reserve(now, dst, self.addr, protocol)
        tot_len = 20 + len(payload)
        if tot_len <= self.mtu:
            # the common case, built without a Repr: what Ipv4Repr(...).emit(payload) gives
            return [(nh, ipv4_header(self.addr, dst, protocol, tot_len, self.ttl, ident & 0xFFFF, IP_DF if df else 0,
                                     tos) + payload)]
        ip = Ipv4Repr(self.addr, dst, protocol, len(payload), self.ttl, ident & 0xFFFF, df, tos=tos)
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
        """ip_rcv() -> ip_local_deliver(): returns (TCP segments for tcp_v4_rcv, packets to send).

        The header is read through its checked view (ipv4_rcv_core); an Ipv4Repr is built
        only where one is needed (TCP, UDP, the drops' descriptions, ICMP errors)."""
        try:
            fields, hlen = ipv4_rcv_core(packet)
        except WireError as err:
            self.drops.append(IpDrop(now, err.reason, err.detail))
            return [], []
        _vihl, tos, tot_len, _ident, frag, _ttl, protocol, _check, src, dst = fields
        if dst != self.addr and dst != self.broadcast and dst != 0xFFFFFFFF:
            # not ours and ip_forward is 0: ip_route_input fails, ip_error drops it
            ip = Ipv4Repr.from_fields(fields, hlen, packet)
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_IP_INADDRERRORS", f"not for us: {ip.describe()}"))
            return [], []
        if frag & (IP_MF | IP_OFFSET):
            # ip_defrag() is not modelled: counted, not reassembled
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "fragment (reassembly not modelled)"))
            return [], []
        payload = bytes(packet[hlen:tot_len])
        if protocol == IPPROTO_ICMP:
            return [], self.icmp_rcv(now, src, dst, tos, payload)
        if protocol == IPPROTO_TCP:
            if dst != self.addr:
                self.drops.append(IpDrop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "TCP to a broadcast address"))
                return [], []
            try:
                tcp, data = TcpRepr.parse(payload, src, dst)
            except WireError as err:
                self.drops.append(IpDrop(now, err.reason, err.detail))
                return [], []
            tcp.ip_dsfield = tos   # tcp_v4_fill_cb(): TCP_SKB_CB(skb)->ip_dsfield
            return [Delivered(src, dst, tcp, data)], []
        ip = Ipv4Repr.from_fields(fields, hlen, packet)
        if protocol == IPPROTO_UDP:
            return [], self.udp_rcv(now, ip, packet, payload)
        self.drops.append(IpDrop(now, "SKB_DROP_REASON_IP_NOPROTO", f"protocol {protocol}"))
        if dst == self.addr:
            return [], self.icmp_send(now, ip, packet, ICMP_DEST_UNREACH, ICMP_PROT_UNREACH)
        return [], []

    def icmp_rcv(self, now: int, src: int, dst: int, tos: int, payload: bytes) -> list[tuple[int, bytes]]:
        """icmp_rcv() -> icmp_echo(): reply to echo requests; to broadcast ones only when
        net.ipv4.icmp_echo_ignore_broadcasts is 0 (RFC 1122 3.2.2.6). `src`, `dst`, `tos`:
        the request's IPv4 header."""
        try:
            icmp_type = icmp_checked_type(payload)
        except WireError as err:
            self.drops.append(IpDrop(now, err.reason, err.detail))
            return []
        if dst != self.addr and icmp_type in (ICMP_ECHO, ICMP_TIMESTAMP) and self.icmp_echo_ignore_broadcasts:
            self.drops.append(IpDrop(now, "SKB_DROP_REASON_INVALID_PROTO", "echo to broadcast ignored"))
            return []
        if icmp_type != ICMP_ECHO:
            return []
        # icmp_reply(): `inet->tos = ip_hdr(skb)->tos` on the per-cpu ICMP socket, ECN bits and
        # all; that socket is IP_PMTUDISC_DONT (icmp_sk_init) and has no destination, so
        # __ip_make_skb sets no DF and ip_select_ident takes the ID from ip_idents
        return self.ip_queue_xmit(now, src, IPPROTO_ICMP, icmp_echo_reply(payload), None, df=False, tos=tos)

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
        # an error's TOS: RT_TOS(iph->tos) | IPTOS_PREC_INTERNETCONTROL; no DF, ip_idents ID
        tos = (ip.tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL
        return self.ip_queue_xmit(now, ip.src, IPPROTO_ICMP, msg.emit(), InetTx(None, tos, df=False))
