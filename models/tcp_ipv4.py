"""net/ipv4/tcp_ipv4.c: TCP over IPv4 in one network namespace (the board's). tcp_v4_rcv
finds a segment's socket (__inet_lookup: established and TIME_WAIT first, then the
listener) or answers with tcp_v4_send_reset; tcp_v4_err takes an ICMP error to its socket
or request sock. On a listener it runs the passive open: tcp_v4_conn_request with
tcp_input.c's tcp_conn_request and tcp_syn_flood_action (and tcp_metrics.c's
tcp_peer_is_proven), the request sock's segments (tcp_check_req, models.tcp_minisocks),
a syncookie's ACK (cookie_v4_check, models.syncookies), and the child
(tcp_v4_syn_recv_sock). It also runs every socket's and request sock's timers.

`TcpIpv4` is what the socket layer (models.socket.SocketLayer) is built on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from .inet_connection_sock import Listener, reqsk_timer_handler
from .syncookies import COOKIE_FORGET, MSSTAB, cookie_v4_check
from .tcp import TcpSock
from .tcp_h import (
    TCP_TIMEOUT_INIT,
    Drop,
    OutSegment,
    RequestSock,
    TcpParams,
    TcpSeq,
    TcpState,
    tcp_select_initial_window,
    tcp_v4_fill_cb,
)
from .tcp_minisocks import tcp_check_req
from .tcp_output import tcp_make_synack, tcp_v4_send_reset
from .wire.icmp import ICMP_HOST_UNREACH, ICMP_NET_UNREACH
from .wire.ipv4 import INET_ECN_MASK, tcp_quote
from .wire.tcp import ACK, CWR, ECE, FIN, RST, SYN, TcpRepr

__all__ = ["TcpIpv4", "SYN_FLOOD_LINE"]

# net.ipv4.tcp_ecn (tcp_sk_init: 2, ECN when the peer asks; not a firmware-config key)
TCP_ECN = 2
# tcp_syn_flood_action (pr_fmt "TCP: "; the request_sock slab is "request_sock_" + tcp_prot.name)
SYN_FLOOD_LINE = "TCP: request_sock_TCP: Possible SYN flooding on port {port}. {msg}.  Check SNMP counters."


class ListeningSocket(Protocol):
    """What the listening hash holds: a socket (models.socket) and its listener."""

    listener: Listener


class TcpIpv4:
    """TCP's tables in a network namespace (tcp_hashinfo's ehash and lhash) and what
    tcp_v4_rcv, tcp_v4_err and the timers do with them."""

    def __init__(self, params: TcpParams, rng: random.Random, name: str = "board"):
        self.params = params
        self.rng = rng
        self.name = name
        self.established: dict[tuple[int, int, int, int], TcpSock] = {}   # ehash
        self.listeners: dict[int, ListeningSocket] = {}                    # lhash by port
        self.drops: list[Drop] = []
        self.console: list[tuple[int, str]] = []   # kernel lines (tcp_syn_flood_action)
        self.closed_socks: list[TcpSock] = []
        # given to every socket: is a copy of its segment still queued below TCP?
        self.host_queued: Callable[[TcpSock, int], bool] | None = None

    # -- input: tcp_v4_rcv ---------------------------------------------------------------
    def tcp_v4_rcv(self, now: int, src: int, dst: int, seg: TcpRepr, payload: bytes) -> list[OutSegment]:
        """tcp_v4_rcv(): deliver one segment: established/TIME_WAIT first
        (tcp_rcv_state_process, tcp_timewait_state_process), then the listener, else RST."""
        seg = tcp_v4_fill_cb(seg)
        sk = self.established.get((dst, seg.dst_port, src, seg.src_port))
        if sk is not None and sk.state is not TcpState.CLOSED:
            out = sk.tcp_rcv_state_process(now, seg, payload)
            isn = sk.tw_syn_isn
            if isn is not None:
                # TCP_TW_SYN: a new SYN to a TIME_WAIT flow goes to the listener, with the
                # timewait sock's ISN; with no listener it is ACKed (TCP_TW_ACK)
                listener = self.inet_lookup_listener(seg.dst_port, dst)
                if listener is not None:
                    sk.tw_syn_taken(now)
                    self._reap(sk)
                    return out + self._listen_rcv(now, listener, src, dst, seg, payload, isn)
                out += sk.tw_syn_refused(now)
            self._reap(sk)
            return out
        listener = self.inet_lookup_listener(seg.dst_port, dst)
        if listener is not None:
            return self._listen_rcv(now, listener, src, dst, seg, payload)
        self.drops.append(Drop(now, "SKB_DROP_REASON_NO_SOCKET", f"port {seg.dst_port}"))
        if seg.flags & RST:
            return []
        return [tcp_v4_send_reset((dst, seg.dst_port), (src, seg.src_port), seg, len(payload), "rst-no-socket")]

    def inet_lookup_listener(self, port: int, addr: int) -> Listener | None:
        """__inet_lookup_listener(): the socket listening on `port` at `addr`, or at any address."""
        lst = self.listeners.get(port)
        if lst is not None and lst.listener.local[0] in (0, addr):
            return lst.listener
        return None

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

    # -- the passive open ----------------------------------------------------------------
    def _listen_rcv(self, now: int, listener: Listener, src: int, dst: int, seg: TcpRepr,
                    payload: bytes, tw_isn: int | None = None) -> list[OutSegment]:
        """A segment for a listening port: tcp_v4_rcv's request sock (TCP_NEW_SYN_RECV:
        tcp_check_req), else tcp_v4_do_rcv on the listener (a syncookie's ACK:
        tcp_v4_cookie_check; tcp_rcv_state_process in LISTEN: an ACK is reset, a SYN is
        tcp_v4_conn_request's). `tw_isn`: a SYN a timewait sock handed on (TCP_TW_SYN)."""
        remote = (src, seg.src_port)
        req = listener.syn_queue.get(remote)
        if req is not None:
            out = tcp_check_req(now, self.params, listener, req, seg, payload)
            if out is not None:
                return out
            if len(listener.accept_queue) > listener.backlog:
                self.drops.append(Drop(now, "SKB_DROP_REASON_NOT_SPECIFIED", "accept queue full at third ACK"))
                return []
            del listener.syn_queue[req.remote]
            return self.tcp_v4_syn_recv_sock(now, listener, req, seg, payload)
        if seg.flags & RST:
            return []
        if seg.flags & ACK and not seg.flags & SYN and remote in listener.cookies:
            req = cookie_v4_check(now, self.params, listener, remote, seg)
            if req is not None:
                if len(listener.accept_queue) > listener.backlog:   # tcp_v4_syn_recv_sock: sk_acceptq_is_full
                    self.drops.append(Drop(now, "LINUX_MIB_LISTENOVERFLOWS", "accept queue full at a cookie's ACK"))
                    return []
                return self.tcp_v4_syn_recv_sock(now, listener, req, seg, payload)
        if seg.flags & ACK:
            # tcp_rcv_state_process in LISTEN: "if (th->ack) return 1" -> reset
            self.drops.append(Drop(now, "SKB_DROP_REASON_TCP_FLAGS", "ACK to a listener"))
            return [tcp_v4_send_reset((dst, seg.dst_port), remote, seg, len(payload), "rst-ack-to-listener")]
        if not seg.flags & SYN or seg.flags & FIN:
            self.drops.append(Drop(now, "SKB_DROP_REASON_TCP_FLAGS", "not a SYN"))
            return []
        return self.tcp_conn_request(now, listener, (dst, seg.dst_port), remote, seg, tw_isn)

    def tcp_conn_request(self, now: int, listener: Listener, local: tuple[int, int], remote: tuple[int, int],
                      seg: TcpRepr, tw_isn: int | None = None) -> list[OutSegment]:
        """tcp_conn_request() (net/ipv4/tcp_input.c): a request sock and its SYN-ACK, or,
        when the SYN queue is full (inet_csk_reqsk_queue_is_full: more requests than the
        listener's backlog) or tcp_syncookies is 2, a syncookie SYN-ACK with no request sock
        (tcp_syn_flood_action; never retransmitted), or nothing: with tcp_syncookies 0 a full
        queue drops the SYN, and so does a queue past three quarters of tcp_max_syn_backlog
        for a peer tcp_peer_is_proven does not know."""
        p = self.params
        qlen = len(listener.syn_queue)
        want_cookie = False
        if p.syncookies == 2 or qlen > listener.backlog:
            want_cookie = self.tcp_syn_flood_action(now, listener)
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
                    and not self.tcp_peer_is_proven(remote[0]):
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
            local=local, remote=remote, irs=seg.seq, iss=tw_isn if tw_isn else TcpSeq(self.rng.getrandbits(32)),
            peer_mss=peer_mss, ts_ok=ts_ok, sack_ok=sack_ok,
            snd_wscale=None if wscale is None else min(wscale, 14),
            ts_recent=TcpSeq(ts[0] if ts_ok else 0), ts_offset=self.rng.getrandbits(32) if ts_ok else 0,
            rcv_wnd=rcv_wnd, window_clamp=clamp, rcv_wscale=rcv_wscale,
            snt_synack=now, expires_at=now + TCP_TIMEOUT_INIT, syn_tos=seg.ip_dsfield, syncookie=want_cookie,
            ecn_ok=ecn_ok,
        )
        if want_cookie:
            # TCP_SYNACK_COOKIE: sent, then the request is freed (reqsk_free): no timer. What
            # the cookie encodes is kept for cookie_v4_check; a cookie is surely dead two
            # minutes on (MAX_SYNCOOKIE_AGE), so older ones are forgotten.
            listener.cookies = {r: c for r, c in listener.cookies.items()
                                if now - c.snt_synack < COOKIE_FORGET}
            listener.cookies[remote] = req
            return [tcp_make_synack(req, now, p, "synack-cookie", listener.tos)]
        listener.syn_queue[remote] = req
        return [tcp_make_synack(req, now, p, "synack", listener.tos)]

    def tcp_syn_flood_action(self, now: int, listener: Listener) -> bool:
        """tcp_syn_flood_action(): send a cookie when tcp_syncookies allows it; the first
        time for this listener (synflood_warned), unless tcp_syncookies is 2, print the
        warning (net_info_ratelimited: KERN_INFO, which the board's console shows)."""
        want_cookie = bool(self.params.syncookies)
        if not listener.synflood_warned and self.params.syncookies != 2:
            listener.synflood_warned = True
            msg = "Sending cookies" if want_cookie else "Dropping request"
            self.console.append((now, SYN_FLOOD_LINE.format(port=listener.local[1], msg=msg)))
        return want_cookie

    def tcp_peer_is_proven(self, addr: int) -> bool:
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
                        last = (t, bool(sk.rtt.srtt_us) and not sk.backoff)
        return bool(last and last[1])

    def tcp_v4_syn_recv_sock(self, now: int, listener: Listener, req: RequestSock, seg: TcpRepr,
                             payload: bytes) -> list[OutSegment]:
        """tcp_v4_syn_recv_sock(): the listener's child from a request (tcp_check_req, or a
        cookie's tcp_get_cookie_sock; its callers saw the accept queue has room): it inherits
        the listener's options (tcp_create_openreq_child), is hashed, queued for accept()
        (inet_csk_complete_hashdance), and takes what the ACK carried (tcp_child_process)."""
        child = TcpSock.tcp_create_openreq_child(now, self.params, self.rng, req, seg, name=f"{self.name}:child",
                                     listener_tos=listener.tos, listener_dont_fragment=listener.dont_fragment)
        child.host_queued = self.host_queued
        child.keepalive = listener.keepalive
        child.sndbuf, child.user_timeout_ms = listener.sndbuf, listener.user_timeout_ms
        if child.keepalive:
            child.set_keepalive(now, True)
        self.established[(req.local[0], req.local[1], req.remote[0], req.remote[1])] = child
        listener.accept_queue.append(child)
        if payload or seg.flags & FIN:
            return child.tcp_rcv_state_process(now, seg, payload)
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
                out += sk.tcp_tsq_write(now)
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
                    out += reqsk_timer_handler(now, self.params, s.listener, req, self.drops)
        return out
