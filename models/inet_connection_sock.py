"""net/ipv4/inet_connection_sock.c: a listening socket. Its queues (the SYN queue of request
socks, the accept queue of children; icsk_accept_queue), the request sock's timer that
resends the SYN-ACK (reqsk_timer_handler), inet_csk_accept and inet_csk_listen_stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import SocketError
from .tcp_h import TCP_RTO_MAX, TCP_TIMEOUT_INIT, Drop, OutSegment, RequestSock, TcpParams
from .tcp_output import tcp_make_synack

if TYPE_CHECKING:
    from .tcp import TcpSock

__all__ = ["Listener", "reqsk_timer_handler", "inet_csk_accept", "inet_csk_listen_stop"]


@dataclass
class Listener:
    """A LISTEN socket: its SYN queue of RequestSocks and accept queue of children, and what
    a child takes from it when sk_clone_lock copies it (TOS, pmtudisc, SO_KEEPALIVE,
    SO_SNDBUF, TCP_USER_TIMEOUT: the socket layer keeps them current)."""

    backlog: int   # sk_max_ack_backlog: listen()'s backlog, capped by somaxconn (__sys_listen)
    local: tuple[int, int] = (0, 0)   # the bound address (0: any) and port
    tos: int = 0                  # inet->tos (IP_TOS)
    dont_fragment: bool = True    # inet->pmtudisc is IP_PMTUDISC_WANT
    keepalive: bool = False       # SOCK_KEEPOPEN (SO_KEEPALIVE)
    sndbuf: int | None = None     # sk_sndbuf set by SO_SNDBUF (SOCK_SNDBUF_LOCK), None: not set
    user_timeout_ms: int = 0      # icsk_user_timeout (TCP_USER_TIMEOUT)
    syn_queue: dict[tuple[int, int], RequestSock] = field(default_factory=dict)
    accept_queue: list[TcpSock] = field(default_factory=list)
    synflood_warned: bool = False   # request_sock_queue.synflood_warned: tcp_syn_flood_action prints once
    # what each cookie SYN-ACK encoded (no request sock in Linux: the cookie itself), by peer
    cookies: dict[tuple[int, int], RequestSock] = field(default_factory=dict)


def reqsk_timer_handler(now: int, params: TcpParams, listener: Listener, req: RequestSock,
                        drops: list[Drop]) -> list[OutSegment]:
    """reqsk_timer_handler(): resend the SYN-ACK with backoff, or drop the request once
    num_timeout reaches max_syn_ack_retries (tcp_synack_retries; syn_ack_recalc without
    TCP_DEFER_ACCEPT). When the SYN queue is over half full, old requests get fewer retries
    (never below 2) unless young ones (never timed out) are at least half of it: the "young
    embrions" pruning."""
    max_retries = params.synack_retries
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
        drops.append(Drop(now, "REQSK_EXPIRED", f"SYN-ACK to {req.remote} unanswered"))
        return []
    req.num_retrans += 1
    seg = tcp_make_synack(req, now, params, "synack-retransmit", listener.tos)
    req.num_timeout += 1
    req.expires_at = now + min(TCP_TIMEOUT_INIT << req.num_timeout, TCP_RTO_MAX)
    return [seg]


def inet_csk_accept(listener: Listener) -> TcpSock:
    """inet_csk_accept() on a nonblocking socket: the oldest child in the accept queue, or EAGAIN."""
    if not listener.accept_queue:
        raise SocketError("EAGAIN", "accept queue empty")
    return listener.accept_queue.pop(0)


def inet_csk_listen_stop(now: int, listener: Listener) -> list[OutSegment]:
    """inet_csk_listen_stop(): the children nobody accepted are closed (with a RST, or a FIN)."""
    out: list[OutSegment] = []
    for child in listener.accept_queue:
        out += child.close(now)
    return out
