"""net/ipv4/syncookies.c: a listener under a SYN flood keeps no request sock; the SYN-ACK's
ISN (cookie_v4_init_sequence) and, with timestamps, its TSval (cookie_init_timestamp) carry
what the request would have held, and the ACK that comes back rebuilds it (cookie_v4_check).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .clock import sec
from .tcp_h import RequestSock, TcpParams, TcpSeq, tcp_select_initial_window
from .wire.tcp import RST, TcpRepr

if TYPE_CHECKING:
    from .inet_connection_sock import Listener

__all__ = ["TSBITS", "TS_OPT_ECN", "MSSTAB", "cookie_init_timestamp", "cookie_v4_check"]

# a cookie SYN-ACK's TSval carries the SYN's options in its low bits
TS_OPT_WSCALE_MASK = 0xF
TS_OPT_SACK = 1 << 4
TS_OPT_ECN = 1 << 5
TSBITS = 6
# the peer MSS values a cookie can encode
MSSTAB = (536, 1300, 1440, 1460)
# check_tcp_syn_cookie: a cookie's minute counter may be MAX_SYNCOOKIE_AGE - 1 behind
COOKIE_SURELY_GOOD = sec(60)
COOKIE_FORGET = sec(120)


def cookie_init_timestamp(ts_now: int, snd_wscale: int | None, sack_ok: bool, ecn_ok: bool = False) -> int:
    """cookie_init_timestamp(): the clock (ms) with its low TSBITS replaced by the options
    (the peer's window scale, 0xf for none; SACK; ECN), and one period earlier if that
    would be later than now."""
    options = TS_OPT_WSCALE_MASK if snd_wscale is None else snd_wscale
    if sack_ok:
        options |= TS_OPT_SACK
    if ecn_ok:
        options |= TS_OPT_ECN
    ts = ((ts_now >> TSBITS) << TSBITS) | options
    if ts > ts_now:
        ts -= 1 << TSBITS
    return ts


def cookie_v4_check(now: int, params: TcpParams, listener: Listener, remote: tuple[int, int],
                    seg: TcpRepr) -> RequestSock | None:
    """cookie_v4_check(), from tcp_v4_do_rcv on a listener: an ACK that acknowledges a cookie
    this listener sent; the request the cookie stands for (its child is made by
    tcp_get_cookie_sock -> tcp_v4_syn_recv_sock, models.tcp_ipv4), or None when it does not
    (then the listener resets it, as any ACK).

    The cookie's minute counter may be 0 or 1 behind (check_tcp_syn_cookie): a cookie
    is surely good for 60 s and surely dead after 120 s, in between it depends on the
    minute's phase, which Linux leaves open; the model takes only the sure part. Within
    it the listener has surely overflowed recently (tcp_synq_no_recent_overflow: 120 s).
    The options come back from the ACK's TSecr (cookie_timestamp_decode): an ACK
    without a timestamp clears them."""
    cookie = listener.cookies[remote]
    p = params
    if not p.syncookies or seg.flags & RST or now - cookie.snt_synack >= COOKIE_SURELY_GOOD \
            or seg.ack != cookie.iss + 1 or seg.seq != cookie.irs + 1:
        return None
    del listener.cookies[remote]
    plain = not (cookie.ts_ok and seg.timestamp is not None)
    wscale_ok = cookie.snd_wscale is not None and not plain
    # "Try to redo what tcp_v4_send_synack did": the window from the cookie's MSS
    rcv_wnd, clamp, rcv_wscale = tcp_select_initial_window(
        p, p.win_from_space(p.tcp_rmem[1]), cookie.peer_mss, wscale_ok)
    return replace(cookie, ts_ok=not plain, sack_ok=cookie.sack_ok and not plain,
                   ecn_ok=cookie.ecn_ok and not plain,     # cookie_ecn_ok: the TSecr's TS_OPT_ECN
                   snd_wscale=cookie.snd_wscale if wscale_ok else None,
                   ts_recent=TcpSeq(seg.timestamp[0] if not plain else 0),
                   rcv_wnd=rcv_wnd, window_clamp=clamp, rcv_wscale=rcv_wscale,
                   # snt_synack is 0: tcp_synack_rtt_meas takes no sample from the SYN-ACK,
                   # only the TS echo (what tcp_create_openreq_child does for a resent SYN-ACK)
                   num_retrans=1)
