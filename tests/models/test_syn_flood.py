"""A listener under a SYN flood, as Linux 6.1's tcp_conn_request (net/ipv4/tcp_input.c)
handles it: the SYN queue bounded by the listen backlog (capped by somaxconn), syncookies,
tcp_syn_flood_action's console line, and tcp_max_syn_backlog's last quarter."""

from __future__ import annotations

import random

from model_pair import A_ADDR, B_ADDR

from models.board import Board
from models.clock import ms, sec
from models.config import DEFAULT_CONFIG, SERVICE_LISTEN_BACKLOG, FirmwareConfig
from models.socket import SocketLayer
from models.syncookies import cookie_init_timestamp
from models.tcp import TcpParams, TcpSock, TcpState
from models.tcp_ipv4 import SYN_FLOOD_LINE
from models.wire import ACK, RST, SYN, TcpRepr, linux_options

LINUX_SYN_OPTS = linux_options(mss=1460, ts=(777, 0), sack_perm=True, wscale=7)


def listener(backlog: int, somaxconn: int = 4096, **params) -> SocketLayer:
    layer = SocketLayer(TcpParams(**params), random.Random(1), (B_ADDR,), lambda d: B_ADDR, somaxconn=somaxconn)
    fd = layer.socket()
    layer.bind(fd, 0, 80)
    layer.listen(fd, backlog)
    return layer


def flood(layer: SocketLayer, n: int, opts=LINUX_SYN_OPTS, port: int = 80, first_sport: int = 40000) -> list[list]:
    """`n` SYNs from fresh source ports, 1 ms apart, none answered: what each got back."""
    return [layer.tcp_v4_rcv(ms(i), A_ADDR, B_ADDR, TcpRepr(first_sport + i, port, 1000 * (i + 1), 0, SYN, 64240, opts),
                             b"") for i in range(n)]


def test_each_service_listens_with_its_daemons_backlog_capped_by_somaxconn():
    # dropbear_listen: listen(DROPBEAR_LISTEN_BACKLOG = MAX_CHANNELS 1000); busybox httpd
    # openServer: xlisten(n, 9); __sys_listen caps both at net.core.somaxconn
    assert SERVICE_LISTEN_BACKLOG == {"ssh": 1000, "http": 9}
    for somaxconn, want in ((4096, {22: 1000, 80: 9}), (5, {22: 5, 80: 5})):
        cfg = FirmwareConfig.from_dict({**DEFAULT_CONFIG, "sysctls": {"net.core.somaxconn": somaxconn}})
        board = Board(cfg)
        while not board.sockets.listeners and board.poll_at() is not None and board.poll_at() < sec(60):
            board.on_timer(board.poll_at())   # eth0 up, then the services
        assert {port: s.listener.backlog for port, s in board.sockets.listeners.items()} == want


def test_a_negative_backlog_is_somaxconn():
    # __sys_listen compares (unsigned int)backlog > somaxconn
    layer = listener(-1, somaxconn=64)
    assert layer.listeners[80].listener.backlog == 64


def test_a_full_syn_queue_answers_with_a_cookie_that_is_never_queued_nor_retransmitted():
    # inet_csk_reqsk_queue_is_full: more requests than the backlog; the 11th SYN to a
    # backlog of 9 finds 10 queued and gets a TCP_SYNACK_COOKIE, and no request sock
    layer = listener(9)
    out = flood(layer, 12)
    assert all(len(o) == 1 for o in out)
    assert [o[0].cause for o in out] == ["synack"] * 10 + ["synack-cookie"] * 2
    assert len(layer.listeners[80].listener.syn_queue) == 10
    again = layer.on_timer(sec(1) + ms(20))   # reqsk_timer_handler: the queued ones only
    assert sorted(s.tcp.dst_port for s in again) == list(range(40000, 40010))


def test_the_syn_flood_line_is_printed_once_per_listener():
    # tcp_syn_flood_action: queue->synflood_warned
    layer = listener(1)
    flood(layer, 6)
    assert layer.console == [(ms(2), SYN_FLOOD_LINE.format(port=80, msg="Sending cookies"))]
    assert layer.console[0][1] == "TCP: request_sock_TCP: Possible SYN flooding on port 80. Sending cookies.  " \
                                  "Check SNMP counters."


def test_without_syncookies_a_full_queue_drops_the_syn_and_says_so():
    layer = listener(9, syncookies=0)
    out = flood(layer, 12)
    assert [len(o) for o in out] == [1] * 10 + [0, 0]
    assert [d.reason for d in layer.drops] == ["LINUX_MIB_TCPREQQFULLDROP"] * 2
    assert layer.console == [(ms(10), SYN_FLOOD_LINE.format(port=80, msg="Dropping request"))]


def test_syncookies_2_answers_every_syn_with_a_cookie_and_prints_nothing():
    layer = listener(9, syncookies=2)
    out = flood(layer, 3)
    assert [o[0].cause for o in out] == ["synack-cookie"] * 3
    assert not layer.listeners[80].listener.syn_queue and not layer.console


def test_without_syncookies_the_last_quarter_of_max_syn_backlog_is_kept_for_proven_peers():
    # "max_syn_backlog - inet_csk_reqsk_queue_len(sk) < (max_syn_backlog >> 2)": at 16 the
    # 14th SYN finds 13 queued (3 < 4) and an unproven peer (tcp_peer_is_proven) is dropped
    layer = listener(1000, syncookies=0, max_syn_backlog=16)
    out = flood(layer, 16)
    assert [len(o) for o in out] == [1] * 13 + [0] * 3
    assert not layer.console   # pr_drop_req is a debug line
    # with cookies on, tcp_max_syn_backlog is not read
    assert all(len(o) == 1 for o in flood(listener(1000, max_syn_backlog=16), 16))


def test_cookie_init_timestamp_keeps_the_syn_options_in_the_low_six_bits():
    # options: wscale 7 | SACK (bit 4) = 0x17 in place of the clock's low 6 bits, one
    # period (64 ms) back when that would be later than now
    assert cookie_init_timestamp(1000, 7, True) == 960 + 0x17          # 1000 = 15 * 64 + 40
    assert cookie_init_timestamp(970, 7, True) == 960 + 0x17 - 64      # 983 > 970
    assert cookie_init_timestamp(64, None, False) == 0xF               # no window scaling: 0xf


def test_a_cookie_synack_carries_the_cookie_timestamp_and_the_syn_options():
    layer = listener(0)
    flood(layer, 1)                                   # queued: 1 > 0 is not yet full
    ((cookie,),) = flood(layer, 1, first_sport=41000)  # full: a cookie
    tsval = cookie.tcp.timestamp[0]
    (plain,) = listener(9).tcp_v4_rcv(0, A_ADDR, B_ADDR, TcpRepr(40000, 80, 1000, 0, SYN, 64240, LINUX_SYN_OPTS), b"")
    assert cookie.tcp.options == linux_options(mss=1460, ts=(tsval, 777), sack_perm=True, wscale=6)
    assert plain.tcp.options == linux_options(mss=1460, ts=(plain.tcp.timestamp[0], 777), sack_perm=True, wscale=6)


def test_a_cookie_for_a_syn_without_timestamps_drops_sack_and_window_scaling():
    # tcp_conn_request: "if (want_cookie && !tmp_opt.saw_tstamp) tcp_clear_options(&tmp_opt)"
    layer = listener(0)
    opts = linux_options(mss=1460, sack_perm=True, wscale=7)
    out = flood(layer, 2, opts=opts)
    assert out[0][0].tcp.options == linux_options(mss=1460, sack_perm=True, wscale=6)
    assert out[1][0].cause == "synack-cookie" and out[1][0].tcp.options == linux_options(mss=1460)


def cookie_ack(synack, at_sport: int, ack_delta: int = 1, tsecr=None) -> TcpRepr:
    ts = synack.tcp.timestamp
    opts = linux_options(ts=(888, ts[0] if tsecr is None else tsecr)) if ts else ()
    return TcpRepr(at_sport, 80, synack.tcp.ack, (synack.tcp.seq + ack_delta) % 2**32, ACK, 502, opts)


def test_the_ack_of_a_cookie_makes_the_child_in_the_accept_queue():
    # cookie_v4_check -> tcp_get_cookie_sock: no request sock was kept, the cookie is it
    layer = listener(0)
    flood(layer, 1)
    ((cookie,),) = flood(layer, 1, first_sport=41000)
    assert layer.tcp_v4_rcv(ms(50), A_ADDR, B_ADDR, cookie_ack(cookie, 41000), b"") == []
    (child,) = layer.listeners[80].listener.accept_queue
    assert child.remote == (A_ADDR, 41000) and child.ts_ok and child.sack_ok and child.snd_wscale == 7


def test_an_ack_that_is_not_the_cookie_or_comes_a_minute_late_is_reset():
    # __cookie_v4_check fails (LINUX_MIB_SYNCOOKIESFAILED): the listener resets the ACK
    for at, delta in ((ms(50), 2), (sec(61), 1)):
        layer = listener(0)
        flood(layer, 1)
        ((cookie,),) = flood(layer, 1, first_sport=41000)
        (rst,) = layer.tcp_v4_rcv(at, A_ADDR, B_ADDR, cookie_ack(cookie, 41000, delta), b"")
        assert rst.tcp.flags & RST and not layer.listeners[80].listener.accept_queue


def test_a_peer_the_tcp_metrics_know_may_fill_the_last_quarter():
    # tcp_peer_is_proven: tcp_update_metrics stored an RTT when a connection to it with an
    # RTT sample entered TIME_WAIT (tcp_time_wait)
    layer = listener(1000, syncookies=0, max_syn_backlog=16)
    earlier = TcpSock(TcpParams(), random.Random(2), (B_ADDR, 80), (A_ADDR, 39999))
    earlier.rtt.srtt_us = 8000
    earlier.tcp_set_state(0, TcpState.TIME_WAIT)
    layer.closed_socks.append(earlier)
    assert all(len(o) == 1 for o in flood(layer, 16))
