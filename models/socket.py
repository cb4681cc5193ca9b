"""The socket layer over TCP (net/socket.c, net/ipv4/af_inet.c, net/core/sock.c's options):
the syscalls a scenario makes, on sockets that are plain integers, like file descriptors.

Follows the seed's call graphs: __sys_socket, __sys_bind -> inet_bind -> inet_csk_get_port,
__sys_listen -> inet_csk_listen_start, __sys_connect -> tcp_v4_connect (+ __inet_hash_connect
for the ephemeral port), __sys_accept4 -> inet_csk_accept, tcp_sendmsg, tcp_recvmsg,
tcp_close, tcp_shutdown, setsockopt and getsockopt. What arrives from IP (tcp_v4_rcv,
tcp_v4_err) and the timers are TCP's: `SocketLayer` is built on models.tcp_ipv4.TcpIpv4.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ModelUsageError, SocketError
from .inet_connection_sock import Listener, inet_csk_accept, inet_csk_listen_stop
from .tcp import OutSegment, TcpParams, TcpSock, TcpState
from .tcp_ipv4 import TcpIpv4
from .wire.ipv4 import INET_ECN_MASK

__all__ = ["SocketLayer", "SOMAXCONN_DEFAULT"]

SOMAXCONN_DEFAULT = 4096
# net.core.wmem_max's default, SK_WMEM_MAX: 256 * SKB_TRUESIZE(256) on the board's kernel, as
# rmem_max (models.config); SO_SNDBUF of 10 MB reads back 360448 on the board
SK_WMEM_MAX = 180224
# include/net/sock.h SOCK_MIN_SNDBUF: 2 * TCP_SKB_MIN_TRUESIZE (2048 +
# SKB_DATA_ALIGN(sizeof(struct sk_buff)), 192 on the board); SO_SNDBUF 1 reads back 4480
SOCK_MIN_SNDBUF = 4480
TCP_WMEM_DEFAULT = 16384   # tcp_wmem[1]: tcp_init_sock's sk_sndbuf
INT_MAX = 0x7FFFFFFF


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


class SocketLayer(TcpIpv4):
    """All TCP sockets of one network namespace (the board's), by file descriptor.

    `source_for(dst)` is the IPv4 layer's source address selection (ip_route_connect).
    """

    def __init__(self, params: TcpParams, rng: random.Random, local_addrs: tuple[int, ...],
                 source_for: Callable[[int], int], port_range: tuple[int, int] = (32768, 60999),
                 somaxconn: int = SOMAXCONN_DEFAULT, name: str = "board"):
        super().__init__(params, rng, name)
        self.local_addrs = local_addrs
        self.source_for = source_for
        self.port_range = port_range
        self.somaxconn = somaxconn
        self._fds: dict[int, _Socket] = {}
        self._next_fd = 3

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
            if s.listener:
                s.listener.tos = s.tos
        elif option == "SO_REUSEADDR":
            s.reuseaddr = bool(value)
        elif option == "SO_KEEPALIVE":
            s.keepalive = bool(value)
            if s.sk:
                s.sk.set_keepalive(now, bool(value))
            if s.listener:
                s.listener.keepalive = s.keepalive
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
            if s.listener:
                s.listener.sndbuf = s.sndbuf
        elif option == "TCP_USER_TIMEOUT":
            # do_tcp_setsockopt: milliseconds, any state; negative is EINVAL
            if int(value) < 0:
                raise SocketError("EINVAL", f"TCP_USER_TIMEOUT {value}")
            s.user_timeout_ms = int(value)
            if s.sk:
                s.sk.user_timeout_ms = s.user_timeout_ms
            if s.listener:
                s.listener.user_timeout_ms = s.user_timeout_ms
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
        s.listener = Listener(backlog=self.somaxconn if backlog < 0 or backlog > self.somaxconn else backlog,
                              local=s.bound, tos=s.tos, dont_fragment=s.dont_fragment, keepalive=s.keepalive,
                              sndbuf=s.sndbuf, user_timeout_ms=s.user_timeout_ms)
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
        sk = inet_csk_accept(s.listener)
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
        if s.listener is not None:
            self.listeners.pop(s.bound[1], None)
            return inet_csk_listen_stop(now, s.listener)
        if s.sk is not None:
            return s.sk.close(now, late_ns)
        return []
