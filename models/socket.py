"""The socket layer over TCP: the syscalls a scenario makes and the lookup tcp_v4_rcv does.

Follows the seed's call graphs: __sys_socket, __sys_bind -> inet_bind -> inet_csk_get_port,
__sys_listen -> inet_csk_listen_start, __sys_connect -> tcp_v4_connect (+ __inet_hash_connect
for the ephemeral port), __sys_accept4 -> inet_csk_accept, tcp_sendmsg, tcp_recvmsg,
tcp_close, tcp_shutdown, and tcp_v4_rcv's __inet_lookup (established, then listener),
tcp_check_req for half-open connections and tcp_v4_send_reset when nothing matches.
Sockets are plain integers, like file descriptors.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from .clock import sec
from .errors import ModelUsageError, SocketError
from .tcp import (
    MOD32,
    TCP_RTO_MAX,
    TCP_TIMEOUT_INIT,
    Listener,
    OutSegment,
    RequestSock,
    TcpParams,
    TcpSock,
    TcpState,
    tcp_select_initial_window,
    tcp_v4_send_reset,
)
from .wire.icmp import ICMP_HOST_UNREACH, ICMP_NET_UNREACH
from .wire.ipv4 import INET_ECN_MASK, tcp_quote
from .wire.tcp import ACK, CWR, ECE, FIN, RST, SYN, TcpRepr

__all__ = ["SocketLayer", "Drop", "SOMAXCONN_DEFAULT"]

SOMAXCONN_DEFAULT = 4096
# net.ipv4.tcp_ecn (tcp_sk_init: 2, ECN when the peer asks; not a firmware-config key)
TCP_ECN = 2
# net/ipv4/syncookies.c: the peer MSS values a cookie can encode
MSSTAB = (536, 1300, 1440, 1460)
# tcp_syn_flood_action (pr_fmt "TCP: "; the request_sock slab is "request_sock_" + tcp_prot.name)
# check_tcp_syn_cookie: a cookie's minute counter may be MAX_SYNCOOKIE_AGE - 1 behind
COOKIE_SURELY_GOOD = sec(60)
COOKIE_FORGET = sec(120)
SYN_FLOOD_LINE = "TCP: request_sock_TCP: Possible SYN flooding on port {port}. {msg}.  Check SNMP counters."
# net.core.wmem_max's default, SK_WMEM_MAX: 256 * SKB_TRUESIZE(256) on the board's kernel, as
# rmem_max (models.config); SO_SNDBUF of 10 MB reads back 360448 on the board
SK_WMEM_MAX = 180224
# include/net/sock.h SOCK_MIN_SNDBUF: 2 * TCP_SKB_MIN_TRUESIZE (2048 +
# SKB_DATA_ALIGN(sizeof(struct sk_buff)), 192 on the board); SO_SNDBUF 1 reads back 4480
SOCK_MIN_SNDBUF = 4480
TCP_WMEM_DEFAULT = 16384   # tcp_wmem[1]: tcp_init_sock's sk_sndbuf
INT_MAX = 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class Drop:
    """A segment the stack dropped, with the kernel's reason."""

    at: int
    reason: str
    detail: str


@dataclass
class _Socket:
    fd: int
    bound: tuple[int, int] | None = None
    reuseaddr: bool = False
    keepalive: bool = False
    nodelay: bool = False
    tos: int = 0                  # inet->tos (IP_TOS)
    dont_fragment: bool = True    # inet->pmtudisc is IP_PMTUDISC_WANT (inet_create)
    sk: TcpSock | None = None
    listener: Listener | None = None
    user_mss: int = 0             # tp->rx_opt.user_mss (TCP_MAXSEG)
    rcvbuf: int = 0               # sk_rcvbuf set by SO_RCVBUF (SOCK_RCVBUF_LOCK), 0: not set
    sndbuf: int | None = None     # sk_sndbuf set by SO_SNDBUF (SOCK_SNDBUF_LOCK), None: not set
    user_timeout_ms: int = 0      # icsk_user_timeout (TCP_USER_TIMEOUT)


class SocketLayer:
    """All TCP sockets of one network namespace (the board's).

    `source_for(dst)` is the IPv4 layer's source address selection (ip_route_connect).
    """

    def __init__(self, params: TcpParams, rng: random.Random, local_addrs: tuple[int, ...],
                 source_for: Callable[[int], int], port_range: tuple[int, int] = (32768, 60999),
                 somaxconn: int = SOMAXCONN_DEFAULT, name: str = "board"):
        self.params = params
        self.rng = rng
        self.local_addrs = local_addrs
        self.source_for = source_for
        self.port_range = port_range
        self.somaxconn = somaxconn
        self.name = name
        self._fds: dict[int, _Socket] = {}
        self._next_fd = 3
        self.established: dict[tuple[int, int, int, int], TcpSock] = {}   # ehash
        self.listeners: dict[int, _Socket] = {}                            # lhash by port
        self.drops: list[Drop] = []
        self.console: list[tuple[int, str]] = []   # kernel lines (tcp_syn_flood_action)
        self.closed_socks: list[TcpSock] = []
        # given to every socket: is a copy of its segment still queued below TCP?
        self.host_queued: Callable[[TcpSock, int], bool] | None = None

    # -- syscalls ----------------------------------------------------------------------
    def socket(self) -> int:
        """socket(AF_INET, SOCK_STREAM, 0)."""
        fd = self._next_fd
        self._next_fd += 1
        # inet_create(): ip_no_pmtu_disc makes new sockets IP_PMTUDISC_DONT
        self._fds[fd] = _Socket(fd, dont_fragment=not self.params.no_pmtu_disc)
        return fd

    def _get(self, fd: int) -> _Socket:
        try:
            return self._fds[fd]
        except KeyError:
            raise SocketError("EBADF", f"fd {fd}") from None

    def setsockopt(self, now: int, fd: int, option: str, value: bool | int) -> None:
        """SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY, IP_TOS, SO_SNDBUF, TCP_USER_TIMEOUT, and
        before connect() TCP_MAXSEG and SO_RCVBUF. A listener's SO_SNDBUF and
        TCP_USER_TIMEOUT go to its children (sk_clone_lock copies the socket)."""
        s = self._get(fd)
        if option == "IP_TOS":
            # do_ip_setsockopt -> __ip_sock_set_tos(): stored in a u8; on a TCP socket the
            # ECN bits stay the socket's own (TCP sets them itself when ECN is negotiated)
            s.tos = (int(value) & 0xFF & ~INET_ECN_MASK) | (s.tos & INET_ECN_MASK)
            if s.sk:
                s.sk.tos = (s.tos & ~INET_ECN_MASK) | (s.sk.tos & INET_ECN_MASK)
        elif option == "SO_REUSEADDR":
            s.reuseaddr = bool(value)
        elif option == "SO_KEEPALIVE":
            s.keepalive = bool(value)
            if s.sk:
                s.sk.set_keepalive(now, bool(value))
        elif option == "TCP_NODELAY":
            s.nodelay = bool(value)
            if s.sk:
                s.sk.nodelay = bool(value)
        elif option in ("TCP_MAXSEG", "SO_RCVBUF"):
            self._set_connect_option(s, option, int(value))
        elif option == "SO_SNDBUF":
            # sock_setsockopt: capped at wmem_max (compared as u32, so a negative value is
            # wmem_max), then doubled "to account for struct sk_buff etc. overhead", at least
            # SOCK_MIN_SNDBUF, and locked (SOCK_SNDBUF_LOCK: tcp_sndbuf_expand leaves it)
            val = min(int(value) & 0xFFFFFFFF, SK_WMEM_MAX)
            s.sndbuf = max(min(val, INT_MAX // 2) * 2, SOCK_MIN_SNDBUF)
            if s.sk:
                s.sk.sndbuf = s.sndbuf
        elif option == "TCP_USER_TIMEOUT":
            # do_tcp_setsockopt: milliseconds, any state; negative is EINVAL
            if int(value) < 0:
                raise SocketError("EINVAL", f"TCP_USER_TIMEOUT {value}")
            s.user_timeout_ms = int(value)
            if s.sk:
                s.sk.user_timeout_ms = s.user_timeout_ms
        else:
            raise SocketError("ENOPROTOOPT", option)

    def getsockopt(self, fd: int, option: str) -> int:
        """sock_getsockopt / do_tcp_getsockopt for SO_SNDBUF, SO_RCVBUF and TCP_USER_TIMEOUT.
        A buffer not set by the application is modelled only before a connection (the
        tcp_wmem[1] / tcp_rmem[1] tcp_init_sock gives): an established socket's grows
        (tcp_sndbuf_expand, receive buffer autotuning), which the model does not follow."""
        s = self._get(fd)
        if option == "TCP_USER_TIMEOUT":
            return s.user_timeout_ms
        if option == "SO_SNDBUF" and s.sndbuf is not None:
            return s.sndbuf
        if option == "SO_RCVBUF" and s.rcvbuf:
            return s.rcvbuf
        if option in ("SO_SNDBUF", "SO_RCVBUF") and s.sk is None and s.listener is None:
            return TCP_WMEM_DEFAULT if option == "SO_SNDBUF" else self.params.tcp_rmem[1]
        raise ModelUsageError(f"getsockopt {option} on this socket is not modelled")

    def _set_connect_option(self, s: _Socket, option: str, value: int) -> None:
        """TCP_MAXSEG and SO_RCVBUF, for a socket that will connect(): modelled only there
        (tcp_connect_init reads them); on a connected or listening socket they raise.

        TCP_MAXSEG: do_tcp_setsockopt refuses values outside TCP_MIN_MSS..MAX_TCP_WINDOW
        and keeps it as user_mss; tcp_connect_init clamps advmss (the SYN's MSS) with it.
        SO_RCVBUF: sock_setsockopt caps it at rmem_max, __sock_set_rcvbuf doubles it and
        locks it (SOCK_RCVBUF_LOCK), so tcp_connect_init clamps the window to
        tcp_full_space."""
        if s.sk is not None or s.listener is not None:
            raise ModelUsageError(f"{option} on a connected or listening socket is not modelled")
        if option == "TCP_MAXSEG":
            if value and not 88 <= value <= 32767:   # TCP_MIN_MSS, MAX_TCP_WINDOW
                raise SocketError("EINVAL", f"TCP_MAXSEG {value}")
            s.user_mss = value
            return
        value = min(value, self.params.rmem_max) * 2
        if value < 4096:
            # SOCK_MIN_RCVBUF is 2048 + sizeof(struct sk_buff), which depends on the build
            raise ModelUsageError("SO_RCVBUF below 2048 (SOCK_MIN_RCVBUF) is not modelled")
        s.rcvbuf = value

    def _port_in_use(self, port: int, me: _Socket) -> bool:
        """inet_csk_bind_conflict(): SO_REUSEADDR on both sides lets a port be shared unless
        one of them listens; a TIME_WAIT socket blocks a bind without SO_REUSEADDR."""
        for other in self._fds.values():
            if other is me or other.bound is None or other.bound[1] != port:
                continue
            listening = other.listener is not None
            if not (me.reuseaddr and other.reuseaddr) or listening:
                return True
        for key, sk in self.established.items():
            if key[1] == port and sk.state is TcpState.TIME_WAIT and not me.reuseaddr:
                return True
        return False

    def bind(self, fd: int, addr: int, port: int) -> None:
        """bind(): port 0 picks one from ip_local_port_range."""
        s = self._get(fd)
        if s.bound is not None:
            raise SocketError("EINVAL", "already bound")
        if addr and addr not in self.local_addrs:
            raise SocketError("EADDRNOTAVAIL", f"{addr:#x} is not a local address")
        if port == 0:
            port = self._pick_port(s)
        elif self._port_in_use(port, s):
            raise SocketError("EADDRINUSE", f"port {port}")
        s.bound = (addr, port)

    def _pick_port(self, s: _Socket, remote: tuple[int, int] | None = None) -> int:
        """An ephemeral port. Linux starts at a hashed, random offset and (since 5.x)
        prefers even ports for connect(), so the port is a random pick, not a point."""
        low, high = self.port_range
        span = high - low + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = low + (start + i) % span
            if remote is not None and port % 2:
                continue
            if not self._port_in_use(port, s) and not any(k[1] == port for k in self.established):
                return port
        for i in range(span):
            port = low + (start + i) % span
            if not self._port_in_use(port, s) and not any(k[1] == port for k in self.established):
                return port
        raise SocketError("EADDRNOTAVAIL", "ephemeral ports exhausted")

    def listen(self, fd: int, backlog: int) -> None:
        """listen(): __sys_listen caps the backlog at net.core.somaxconn (compared as
        unsigned, so a negative backlog is somaxconn); inet_listen makes it the listener's
        sk_max_ack_backlog."""
        s = self._get(fd)
        if s.sk is not None:
            raise SocketError("EINVAL", "listen on a connected socket")
        if s.bound is None:
            s.bound = (0, self._pick_port(s))
        port = s.bound[1]
        other = self.listeners.get(port)
        if other is not None and other is not s:
            raise SocketError("EADDRINUSE", f"port {port} already listening")
        s.listener = Listener(backlog=self.somaxconn if backlog < 0 or backlog > self.somaxconn else backlog)
        self.listeners[port] = s

    def connect(self, now: int, fd: int, addr: int, port: int) -> list[OutSegment]:
        """connect(): tcp_v4_connect picks the source address by route, then the port."""
        s = self._get(fd)
        if s.listener is not None:
            raise SocketError("EINVAL", "connect on a listening socket")
        if s.sk is not None:
            raise SocketError("EALREADY" if s.sk.state is TcpState.SYN_SENT else "EISCONN", "connect twice")
        src = s.bound[0] if s.bound and s.bound[0] else self.source_for(addr)
        if s.bound is None:
            s.bound = (src, self._pick_port(s, (addr, port)))
        sk = TcpSock(self.params, self.rng, name=f"{self.name}:fd{fd}")
        sk.host_queued = self.host_queued
        sk.nodelay, sk.keepalive = s.nodelay, s.keepalive
        sk.sndbuf, sk.user_timeout_ms = s.sndbuf, s.user_timeout_ms
        sk.tos, sk.dont_fragment = s.tos, s.dont_fragment
        if s.user_mss:   # tcp_connect_init: advmss = tcp_mss_clamp(tp, ...)
            sk.advmss = min(sk.advmss, s.user_mss)
        if s.rcvbuf:     # tcp_connect_init: SOCK_RCVBUF_LOCK clamps the window to tcp_full_space
            sk.rcvbuf = s.rcvbuf
            sk.window_clamp = self.params.win_from_space(s.rcvbuf)
        s.sk = sk
        out = sk.connect(now, (src, s.bound[1]), (addr, port))
        self.established[(src, s.bound[1], addr, port)] = sk
        return out

    def accept(self, fd: int) -> int:
        """accept(): the oldest child in the accept queue, or EAGAIN."""
        s = self._get(fd)
        if s.listener is None:
            raise SocketError("EINVAL", "accept on a socket that is not listening")
        if not s.listener.accept_queue:
            raise SocketError("EAGAIN", "accept queue empty")
        sk = s.listener.accept_queue.pop(0)
        child = self.socket()
        c = self._fds[child]
        c.bound, c.sk = sk.local, sk
        c.nodelay, c.keepalive = s.nodelay, s.keepalive
        c.tos, c.dont_fragment = sk.tos, sk.dont_fragment
        c.sndbuf, c.user_timeout_ms = sk.sndbuf, sk.user_timeout_ms
        sk.nodelay = s.nodelay
        return child

    def sock(self, fd: int) -> TcpSock:
        """The TcpSock behind a connected fd."""
        s = self._get(fd)
        if s.sk is None:
            raise SocketError("ENOTCONN", f"fd {fd} is not connected")
        return s.sk

    def send(self, now: int, fd: int, data: bytes) -> list[OutSegment]:
        return self.sock(fd).send(now, data)

    def sendmsg(self, now: int, fd: int, data: bytes) -> tuple[int, list[OutSegment]]:
        """send(), and how many bytes it took (fewer when SO_SNDBUF's buffer filled)."""
        return self.sock(fd).sendmsg(now, data)

    def recv(self, now: int, fd: int, size: int) -> tuple[bytes, list[OutSegment]]:
        return self.sock(fd).recv(now, size)

    def shutdown(self, now: int, fd: int, how: str) -> list[OutSegment]:
        return self.sock(fd).shutdown(now, how)

    def close(self, now: int, fd: int, late_ns: int = 0) -> list[OutSegment]:
        """close(): a listener drops its half-open and unaccepted children (with RST);
        `late_ns` as TcpSock.close."""
        s = self._get(fd)
        del self._fds[fd]
        out: list[OutSegment] = []
        if s.listener is not None:
            self.listeners.pop(s.bound[1], None)
            for child in s.listener.accept_queue:
                out += child.close(now)   # unaccepted children: inet_csk_listen_stop
            return out
        if s.sk is not None:
            out += s.sk.close(now, late_ns)
        return out

    # -- input: tcp_v4_rcv ---------------------------------------------------------------
    def tcp_v4_rcv(self, now: int, src: int, dst: int, seg: TcpRepr, payload: bytes) -> list[OutSegment]:
        """Deliver one segment: established/TIME_WAIT first, then the listener, else RST."""
        sk = self.established.get((dst, seg.dst_port, src, seg.src_port))
        if sk is not None and sk.state is not TcpState.CLOSED:
            out = sk.rcv(now, seg, payload)
            isn = sk.tw_syn_isn
            if isn is not None:
                # TCP_TW_SYN: a new SYN to a TIME_WAIT flow goes to the listener, with the
                # timewait sock's ISN; with no listener it is ACKed (TCP_TW_ACK)
                lst = self.listeners.get(seg.dst_port)
                if lst is not None and lst.bound[0] in (0, dst):
                    sk.tw_syn_taken(now)
                    self._reap(sk)
                    return out + self._listen_rcv(now, lst, src, dst, seg, payload, isn)
                out += sk.tw_syn_refused(now)
            self._reap(sk)
            return out
        lst = self.listeners.get(seg.dst_port)
        if lst is not None and (lst.bound[0] in (0, dst)):
            return self._listen_rcv(now, lst, src, dst, seg, payload)
        self.drops.append(Drop(now, "SKB_DROP_REASON_NO_SOCKET", f"port {seg.dst_port}"))
        if seg.flags & RST:
            return []
        return [tcp_v4_send_reset((dst, seg.dst_port), (src, seg.src_port), seg, len(payload), "rst-no-socket")]

    def tcp_v4_err(self, now: int, packet: bytes, code: int) -> list[OutSegment]:
        """An ICMP destination unreachable (`code`) quoting `packet`, an IPv4/TCP packet this
        board sent: find its socket (or request sock, tcp_req_err) and let it react."""
        quote = tcp_quote(packet)
        if quote is None:
            return []
        src, sport, dst, dport, seq = quote
        sk = self.established.get((src, sport, dst, dport))
        if sk is not None:
            out = sk.icmp_unreach(now, seq, code)
            self._reap(sk)
            return out
        lst = self.listeners.get(sport)
        req = lst.listener.syn_queue.get((dst, dport)) if lst is not None else None
        if req is not None and seq == req.iss and code in (ICMP_NET_UNREACH, ICMP_HOST_UNREACH):
            # tcp_req_err(abort): still in SYN_RECV, removed silently
            del lst.listener.syn_queue[(dst, dport)]
            self.drops.append(Drop(now, "LINUX_MIB_LISTENDROPS", f"SYN-ACK to {(dst, dport)} unreachable"))
        return []

    def _reap(self, sk: TcpSock) -> None:
        if sk.state is TcpState.CLOSED:
            key = (sk.local[0], sk.local[1], sk.remote[0], sk.remote[1])
            if self.established.get(key) is sk:
                del self.established[key]
                self.closed_socks.append(sk)

    def _listen_rcv(self, now: int, lst: _Socket, src: int, dst: int, seg: TcpRepr,
                    payload: bytes, tw_isn: int | None = None) -> list[OutSegment]:
        listener = lst.listener
        remote = (src, seg.src_port)
        req = listener.syn_queue.get(remote)
        if req is not None:
            return self._check_req(now, lst, req, seg, payload)
        if seg.flags & RST:
            return []
        if seg.flags & ACK and not seg.flags & SYN and remote in listener.cookies:
            child = self._cookie_check(now, lst, remote, seg, payload)
            if child is not None:
                return child
        if seg.flags & ACK:
            # tcp_rcv_state_process in LISTEN: "if (th->ack) return 1" -> reset
            self.drops.append(Drop(now, "SKB_DROP_REASON_TCP_FLAGS", "ACK to a listener"))
            return [tcp_v4_send_reset((dst, seg.dst_port), remote, seg, len(payload), "rst-ack-to-listener")]
        if not seg.flags & SYN or seg.flags & FIN:
            self.drops.append(Drop(now, "SKB_DROP_REASON_TCP_FLAGS", "not a SYN"))
            return []
        return self._conn_request(now, lst, (dst, seg.dst_port), remote, seg, tw_isn)

    def _conn_request(self, now: int, lst: _Socket, local: tuple[int, int], remote: tuple[int, int],
                      seg: TcpRepr, tw_isn: int | None = None) -> list[OutSegment]:
        """tcp_conn_request() (net/ipv4/tcp_input.c): a request sock and its SYN-ACK, or,
        when the SYN queue is full (inet_csk_reqsk_queue_is_full: more requests than the
        listener's backlog) or tcp_syncookies is 2, a syncookie SYN-ACK with no request sock
        (tcp_syn_flood_action; never retransmitted), or nothing: with tcp_syncookies 0 a full
        queue drops the SYN, and so does a queue past three quarters of tcp_max_syn_backlog
        for a peer tcp_peer_is_proven does not know."""
        listener = lst.listener
        p = self.params
        qlen = len(listener.syn_queue)
        want_cookie = False
        if p.syncookies == 2 or qlen > listener.backlog:
            want_cookie = self._syn_flood_action(now, lst)
            if not want_cookie:
                self.drops.append(Drop(now, "LINUX_MIB_TCPREQQFULLDROP", f"SYN queue full ({qlen} requests)"))
                return []
        if len(listener.accept_queue) > listener.backlog:   # sk_acceptq_is_full
            self.drops.append(Drop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "accept queue full (ListenOverflows)"))
            return []
        ts = seg.timestamp
        # tcp_conn_request: a cookie for a SYN without timestamps has nowhere to keep the
        # options, so they are cleared (tcp_clear_options): no SACK, no window scaling
        ts_ok = p.timestamps and ts is not None   # tcp_parse_options: saw_tstamp
        plain = want_cookie and not ts_ok
        sack_ok = p.sack and seg.sack_permitted and not plain
        wscale = seg.wscale if (p.window_scaling and seg.wscale is not None and not plain) else None
        if not want_cookie and not tw_isn:
            max_syn_backlog = p.max_syn_backlog
            if not p.syncookies and max_syn_backlog - qlen < (max_syn_backlog >> 2) \
                    and not self._peer_is_proven(remote[0]):
                # "Without syncookies last quarter of backlog is filled with destinations,
                # proven to be alive" (pr_drop_req, a debug line: not on the console)
                self.drops.append(Drop(now, "LINUX_MIB_LISTENDROPS",
                                       f"SYN queue past 3/4 of tcp_max_syn_backlog ({qlen}/{max_syn_backlog})"))
                return []
        # the ISN: secure_tcp_seq, or the cookie (cookie_v4_init_sequence: a keyed hash of the
        # flow, the peer's ISN, a minute counter and the index of the peer's MSS in msstab);
        # both are learnt from the board (harness/oracle/bounds.py `isn`)
        # tcp_ecn_create_request: a SYN with ECE and CWR from a not-ECT packet (or with
        # reserved bits) asks for ECN, and tcp_ecn (2, tcp_sk_init) grants it; a cookie
        # keeps it only in its timestamp (cookie_init_timestamp's TS_OPT_ECN)
        ect = seg.ip_dsfield & INET_ECN_MASK != 0
        ecn_ok = bool(TCP_ECN and seg.flags & ECE and seg.flags & CWR and (not ect or seg.flags >> 8 & 0xF))
        if want_cookie and not ts_ok:
            ecn_ok = False
        peer_mss = seg.mss or 536
        if want_cookie:
            peer_mss = next(m for m in reversed(MSSTAB) if peer_mss >= m or m == MSSTAB[0])
        # tcp_openreq_init_rwin(): mss less the timestamp option, from the listener's buffer
        rcv_wnd, clamp, rcv_wscale = tcp_select_initial_window(
            p, p.win_from_space(p.tcp_rmem[1]), p.advmss - (12 if ts_ok else 0), wscale is not None)
        req = RequestSock(
            local=local, remote=remote, irs=seg.seq, iss=tw_isn if tw_isn else self.rng.getrandbits(32),
            peer_mss=peer_mss, ts_ok=ts_ok, sack_ok=sack_ok,
            snd_wscale=None if wscale is None else min(wscale, 14),
            ts_recent=ts[0] if ts_ok else 0, ts_offset=self.rng.getrandbits(32) if ts_ok else 0,
            peer_window=seg.window, rcv_wnd=rcv_wnd, window_clamp=clamp, rcv_wscale=rcv_wscale,
            snt_synack=now, expires_at=now + TCP_TIMEOUT_INIT, syn_tos=seg.ip_dsfield, syncookie=want_cookie,
            ecn_ok=ecn_ok,
        )
        if want_cookie:
            # TCP_SYNACK_COOKIE: sent, then the request is freed (reqsk_free): no timer. What
            # the cookie encodes is kept for cookie_v4_check (_cookie_check); a cookie is
            # surely dead two minutes on (MAX_SYNCOOKIE_AGE), so older ones are forgotten.
            listener.cookies = {r: c for r, c in listener.cookies.items()
                                if now - c.snt_synack < COOKIE_FORGET}
            listener.cookies[remote] = req
            return [req.synack(now, p, "synack-cookie", lst.tos)]
        listener.syn_queue[remote] = req
        return [req.synack(now, p, "synack", lst.tos)]

    def _cookie_check(self, now: int, lst: _Socket, remote: tuple[int, int], seg: TcpRepr,
                      payload: bytes) -> list[OutSegment] | None:
        """cookie_v4_check() (net/ipv4/syncookies.c), from tcp_v4_do_rcv on a listener: an ACK
        that acknowledges a cookie this listener sent makes the child (tcp_get_cookie_sock);
        None when it does not (then the listener resets it, as any ACK).

        The cookie's minute counter may be 0 or 1 behind (check_tcp_syn_cookie): a cookie
        is surely good for 60 s and surely dead after 120 s, in between it depends on the
        minute's phase, which Linux leaves open; the model takes only the sure part. Within
        it the listener has surely overflowed recently (tcp_synq_no_recent_overflow: 120 s).
        The options come back from the ACK's TSecr (cookie_timestamp_decode): an ACK
        without a timestamp clears them."""
        listener = lst.listener
        cookie = listener.cookies[remote]
        p = self.params
        if not p.syncookies or seg.flags & RST or now - cookie.snt_synack >= COOKIE_SURELY_GOOD \
                or seg.ack != (cookie.iss + 1) % MOD32 or seg.seq != (cookie.irs + 1) % MOD32:
            return None
        del listener.cookies[remote]
        if len(listener.accept_queue) > listener.backlog:   # tcp_v4_syn_recv_sock: sk_acceptq_is_full
            self.drops.append(Drop(now, "LINUX_MIB_LISTENOVERFLOWS", "accept queue full at a cookie's ACK"))
            return []
        plain = not (cookie.ts_ok and seg.timestamp is not None)
        wscale_ok = cookie.snd_wscale is not None and not plain
        # "Try to redo what tcp_v4_send_synack did": the window from the cookie's MSS
        rcv_wnd, clamp, rcv_wscale = tcp_select_initial_window(
            p, p.win_from_space(p.tcp_rmem[1]), cookie.peer_mss, wscale_ok)
        req = replace(cookie, ts_ok=not plain, sack_ok=cookie.sack_ok and not plain,
                      ecn_ok=cookie.ecn_ok and not plain,     # cookie_ecn_ok: the TSecr's TS_OPT_ECN
                      snd_wscale=cookie.snd_wscale if wscale_ok else None,
                      ts_recent=seg.timestamp[0] if not plain else 0,
                      rcv_wnd=rcv_wnd, window_clamp=clamp, rcv_wscale=rcv_wscale,
                      # snt_synack is 0: tcp_synack_rtt_meas takes no sample from the SYN-ACK,
                      # only the TS echo (what from_request does for a resent SYN-ACK)
                      num_retrans=1)
        return self._child(now, p, lst, listener, req, seg, payload)

    def _syn_flood_action(self, now: int, lst: _Socket) -> bool:
        """tcp_syn_flood_action(): send a cookie when tcp_syncookies allows it; the first
        time for this listener (synflood_warned), unless tcp_syncookies is 2, print the
        warning (net_info_ratelimited: KERN_INFO, which the board's console shows)."""
        want_cookie = bool(self.params.syncookies)
        listener = lst.listener
        if not listener.synflood_warned and self.params.syncookies != 2:
            listener.synflood_warned = True
            msg = "Sending cookies" if want_cookie else "Dropping request"
            self.console.append((now, SYN_FLOOD_LINE.format(port=lst.bound[1], msg=msg)))
        return want_cookie

    def _peer_is_proven(self, addr: int) -> bool:
        """tcp_peer_is_proven(): the board's tcp_metrics hold an RTT for `addr`. tcp_update_metrics
        stores one when a connection with an RTT sample and no backoff enters TIME_WAIT
        (tcp_time_wait) or closes from LAST_ACK (tcp_rcv_state_process); one without a sample
        sets it to 0 again. The latest such close decides."""
        last = None
        for sk in (*self.closed_socks, *self.established.values()):
            if sk.remote[0] != addr:
                continue
            for t, old, new in sk.transitions:
                if new is TcpState.TIME_WAIT or (old is TcpState.LAST_ACK and new is TcpState.CLOSED):
                    if last is None or t >= last[0]:
                        last = (t, bool(sk.srtt_us) and not sk.backoff)
        return bool(last and last[1])

    def _check_req(self, now: int, lst: _Socket, req: RequestSock, seg: TcpRepr,
                   payload: bytes) -> list[OutSegment]:
        """tcp_check_req(): retransmitted SYN, the third ACK, or a bad segment."""
        listener = lst.listener
        if seg.flags & RST:
            if seg.seq == (req.irs + 1) % MOD32:
                del listener.syn_queue[req.remote]
            return []
        if seg.flags & SYN and seg.seq == req.irs and not seg.flags & ACK:
            # the peer did not hear our SYN-ACK: resend it and restart the timer
            req.num_retrans += 1
            req.expires_at = now + min(TCP_TIMEOUT_INIT << req.num_timeout, TCP_RTO_MAX)
            return [req.synack(now, self.params, "synack-for-retransmitted-syn", lst.tos)]
        if not seg.flags & ACK:
            return []
        if seg.ack != (req.iss + 1) % MOD32:
            return [tcp_v4_send_reset(req.local, req.remote, seg, len(payload), "rst-bad-ack-in-syn-recv")]
        if len(listener.accept_queue) > listener.backlog:
            self.drops.append(Drop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "accept queue full at third ACK"))
            return []
        del listener.syn_queue[req.remote]
        return self._child(now, self.params, lst, listener, req, seg, payload)

    def _child(self, now: int, params: TcpParams, lst: _Socket, listener, req: RequestSock, seg: TcpRepr,
               payload: bytes) -> list[OutSegment]:
        """The listener's child from a request (tcp_check_req, or a cookie's
        tcp_get_cookie_sock): it inherits the listener's options, is hashed, queued for
        accept() (inet_csk_complete_hashdance), and takes what the ACK carried."""
        child = TcpSock.from_request(now, params, self.rng, req, seg, name=f"{self.name}:child",
                                     listener_tos=lst.tos, listener_dont_fragment=lst.dont_fragment)
        child.host_queued = self.host_queued
        child.keepalive = lst.keepalive
        child.sndbuf, child.user_timeout_ms = lst.sndbuf, lst.user_timeout_ms
        if child.keepalive:
            child.set_keepalive(now, True)
        self.established[(req.local[0], req.local[1], req.remote[0], req.remote[1])] = child
        listener.accept_queue.append(child)
        if payload or seg.flags & FIN:
            return child.rcv(now, seg, payload)
        return []

    # -- timers --------------------------------------------------------------------------
    def poll_at(self) -> int | None:
        """The earliest deadline of any socket or request sock."""
        best = None
        for sk in self.established.values():
            t = sk.poll_at()
            if t is not None and (best is None or t < best):
                best = t
        for s in self.listeners.values():
            for req in s.listener.syn_queue.values():
                if best is None or req.expires_at < best:
                    best = req.expires_at
        return best

    def tsq_released(self, now: int) -> list[OutSegment]:
        """TSQ's callback for each socket whose held-back copy (TcpSock.tsq_throttled) no
        longer waits in the host (models.board asks after every neighbour change)."""
        out: list[OutSegment] = []
        for sk in list(self.established.values()):
            seq = sk.tsq_throttled
            if seq is not None and not (sk.host_queued and sk.host_queued(sk, seq)):
                out += sk.tsq_release(now)
        return out

    def on_timer(self, now: int) -> list[OutSegment]:
        """Run every socket timer due at `now`, including reqsk_timer_handler."""
        out: list[OutSegment] = []
        for sk in list(self.established.values()):
            t = sk.poll_at()
            if t is not None and t <= now:
                out += sk.on_timer(now)
                self._reap(sk)
        for s in list(self.listeners.values()):
            for req in list(s.listener.syn_queue.values()):
                if req.expires_at <= now:
                    out += self._reqsk_timer(now, s, req)
        return out

    def _reqsk_timer(self, now: int, lst: _Socket, req: RequestSock) -> list[OutSegment]:
        """reqsk_timer_handler() (net/ipv4/inet_connection_sock.c): resend the SYN-ACK with
        backoff, or drop the request once num_timeout reaches max_syn_ack_retries
        (tcp_synack_retries; syn_ack_recalc without TCP_DEFER_ACCEPT). When the SYN queue is
        over half full, old requests get fewer retries (never below 2) unless young ones
        (never timed out) are at least half of it: the "young embrions" pruning."""
        listener = lst.listener
        max_retries = self.params.synack_retries
        qlen = len(listener.syn_queue)
        if (qlen << 1) > max(8, listener.backlog):
            young = sum(1 for r in listener.syn_queue.values() if r.num_timeout == 0) << 1
            while max_retries > 2:
                if qlen < young:
                    break
                max_retries -= 1
                young <<= 1
        if req.num_timeout >= max_retries:
            del listener.syn_queue[req.remote]
            self.drops.append(Drop(now, "REQSK_EXPIRED", f"SYN-ACK to {req.remote} unanswered"))
            return []
        req.num_retrans += 1
        seg = req.synack(now, self.params, "synack-retransmit", lst.tos)
        req.num_timeout += 1
        req.expires_at = now + min(TCP_TIMEOUT_INIT << req.num_timeout, TCP_RTO_MAX)
        return [seg]
