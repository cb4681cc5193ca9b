"""TCP state machine: options, handshake, timers, close, reset, as Linux 6.1 does them."""

from __future__ import annotations

import random

import pytest
from model_pair import A_ADDR, B_ADDR, TcpPair

from models.clock import Window, ms, sec
from models.errors import SocketError
from models.socket import SocketLayer
from models.tcp import TcpParams, TcpState, TimerKind
from models.tcp_h import TCP_RTO_MAX, tcp_select_initial_window
from models.tcp_minisocks import FinWait2Unsure
from models.tcp_timer import tcp_model_timeout
from models.wire import ACK, FIN, PSH, RST, SYN, TcpRepr, linux_options


def listening_pair(delay=ms(5), **kw) -> tuple[TcpPair, int]:
    pair = TcpPair(delay, **kw)
    lfd = pair.b.socket()
    pair.b.bind(lfd, 0, 22)
    pair.b.listen(lfd, 128)
    return pair, lfd


def connected_pair(delay=ms(5), **kw) -> tuple[TcpPair, int, int]:
    pair, lfd = listening_pair(delay, **kw)
    cfd = pair.a.socket()
    pair.put("a", pair.a.connect(0, cfd, B_ADDR, 22))
    pair.run_until(ms(50))
    return pair, cfd, pair.b.accept(lfd)


def syn_to(port: int, seq: int = 1000, flags: int = SYN, opts=None) -> TcpRepr:
    return TcpRepr(40000, port, seq, 0, flags, 64240,
                   linux_options(mss=1460, ts=(777, 0), sack_perm=True, wscale=7) if opts is None else opts)


# -- the initial window -----------------------------------------------------------------
def test_initial_window_for_the_boards_rmem_is_64240_scale_6():
    # tcp_rmem[2] 3979104 on the 512 MB board: ilog2 21 - 15
    p = TcpParams()
    assert tcp_select_initial_window(p, p.win_from_space(131072), 1460, True)[::2] == (64240, 6)


def test_synack_window_with_timestamps_is_65160():
    p = TcpParams()
    assert tcp_select_initial_window(p, p.win_from_space(131072), 1460 - 12, True)[0] == 65160


def test_window_scale_follows_tcp_rmem_max():
    p = TcpParams(tcp_rmem=(4096, 131072, 4 * 1024 * 1024 - 1))
    assert tcp_select_initial_window(p, 65536, 1460, True)[2] == 6


# -- SYN -------------------------------------------------------------------------------
def test_syn_carries_linux_options_for_default_sysctls():
    pair = TcpPair(ms(5))
    fd = pair.a.socket()
    (syn,) = pair.a.connect(0, fd, B_ADDR, 80)
    assert syn.tcp.flags == SYN and syn.tcp.window == 64240
    assert syn.tcp.options == linux_options(mss=1460, ts=(syn.tcp.timestamp[0], 0), sack_perm=True, wscale=6)


def test_syn_without_timestamps_pads_sack_perm_with_nops():
    pair = TcpPair(ms(5), params_a=TcpParams(timestamps=False))
    (syn,) = pair.a.connect(0, pair.a.socket(), B_ADDR, 80)
    assert syn.tcp.options == linux_options(mss=1460, sack_perm=True, wscale=6)


def test_syn_mss_follows_mtu():
    pair = TcpPair(ms(5), params_a=TcpParams(mtu=1400))
    (syn,) = pair.a.connect(0, pair.a.socket(), B_ADDR, 80)
    assert syn.tcp.mss == 1360


def test_connect_uses_an_even_ephemeral_port_in_range():
    pair = TcpPair(ms(5))
    (syn,) = pair.a.connect(0, pair.a.socket(), B_ADDR, 80)
    assert 32768 <= syn.tcp.src_port <= 60999 and syn.tcp.src_port % 2 == 0


def test_syn_to_silent_peer_resent_at_1_3_7_15_31_63_then_etimedout_at_127():
    pair = TcpPair(ms(5))
    pair.silent.add("a")
    fd = pair.a.socket()
    pair.put("a", pair.a.connect(0, fd, B_ADDR, 80))
    pair.run_until(sec(200))
    times = [t for t, s in pair.sent("a") if s.tcp.flags == SYN]
    assert times == [sec(x) for x in (0, 1, 3, 7, 15, 31, 63)]
    sk = pair.a.sock(fd)
    assert sk.state is TcpState.CLOSED and sk.error == "ETIMEDOUT" and sk.error_at == sec(127)


def test_syn_retries_sysctl_shortens_the_schedule():
    pair = TcpPair(ms(5), params_a=TcpParams(syn_retries=2))
    pair.silent.add("a")
    fd = pair.a.socket()
    pair.put("a", pair.a.connect(0, fd, B_ADDR, 80))
    pair.run_until(sec(20))
    assert [t for t, _ in pair.sent("a")] == [sec(0), sec(1), sec(3)]
    assert pair.a.sock(fd).error_at == sec(7)


def test_tcp_model_timeout_for_retries2_is_924_6_s():
    assert tcp_model_timeout(15, ms(200)) == ms(924600)


# -- listener ----------------------------------------------------------------------------
def test_synack_mirrors_peer_options_in_linux_order():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    fd = layer.socket()
    layer.bind(fd, 0, 22)
    layer.listen(fd, 128)
    (sa,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(22), b"")
    assert sa.tcp.flags == SYN | ACK and sa.tcp.ack == 1001 and sa.tcp.window == 65160
    assert sa.tcp.options == linux_options(mss=1460, ts=(sa.tcp.timestamp[0], 777), sack_perm=True, wscale=6)


def test_synack_omits_options_the_peer_did_not_offer():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    fd = layer.socket()
    layer.bind(fd, 0, 22)
    layer.listen(fd, 128)
    (sa,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(22, opts=linux_options(mss=1460)), b"")
    assert sa.tcp.options == linux_options(mss=1460) and sa.tcp.window == 64240


def test_silent_client_gets_synack_at_1_3_7_15_31_then_request_dropped():
    pair, lfd = listening_pair()
    (sa,) = pair.b.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(22), b"")
    pair.log.append((0, "b", sa))
    pair.silent.add("b")
    pair.run_until(sec(100))
    times = [t for t, s in pair.sent("b") if s.tcp.flags == SYN | ACK]
    assert times == [sec(x) for x in (0, 1, 3, 7, 15, 31)]
    assert pair.b.listeners[22].listener.syn_queue == {}
    assert pair.b.drops[-1].at == sec(63)


def test_tcp_synack_retries_2_gives_synack_at_1_3_then_request_dropped_at_7():
    # reqsk_timer_handler -> syn_ack_recalc: expire once num_timeout >= max_syn_ack_retries
    pair, _ = listening_pair(params_b=TcpParams(synack_retries=2))
    (sa,) = pair.b.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(22), b"")
    pair.log.append((0, "b", sa))
    pair.silent.add("b")
    pair.run_until(sec(100))
    assert [t for t, s in pair.sent("b") if s.tcp.flags == SYN | ACK] == [sec(x) for x in (0, 1, 3)]
    assert pair.b.listeners[22].listener.syn_queue == {}
    assert (pair.b.drops[-1].at, pair.b.drops[-1].reason) == (sec(7), "REQSK_EXPIRED")


@pytest.mark.parametrize("backlog, first, others", [
    (128, (0, 1, 3, 7, 15, 31), (0, 1, 3, 7, 15, 31)),
    (8, (0, 1, 3), (0, 1, 3, 7, 15, 31)),
])
def test_old_requests_in_a_half_full_syn_queue_get_fewer_retries(backlog, first, others):
    # reqsk_timer_handler: with qlen * 2 > max(8, backlog), max_syn_ack_retries drops by one
    # (not below 2) per doubling of `young` (requests that never timed out) it takes to pass
    # qlen. Five requests on a backlog-8 listener: at 3 s none is young, so max is 2, and at
    # 7 s the first expires; that takes qlen to 4 (8 > 8 is false), so the other four,
    # handled after it in the same tick, get the full tcp_synack_retries again.
    pair = TcpPair(ms(5))
    lfd = pair.b.socket()
    pair.b.bind(lfd, 0, 22)
    pair.b.listen(lfd, backlog)
    pair.silent.add("b")
    for i in range(5):
        (sa,) = pair.b.tcp_v4_rcv(0, A_ADDR, B_ADDR, TcpRepr(40000 + i, 22, 1000, 0, SYN, 64240,
                                                             linux_options(mss=1460)), b"")
        pair.log.append((0, "b", sa))
    pair.run_until(sec(100))
    for i in range(5):
        times = [t for t, s in pair.sent("b") if s.tcp.flags == SYN | ACK and s.tcp.dst_port == 40000 + i]
        assert times == [sec(x) for x in (first if i == 0 else others)], (i, times)
    expired = [d.at for d in pair.b.drops if d.reason == "REQSK_EXPIRED"]
    assert expired == ([sec(63)] * 5 if backlog == 128 else [sec(7)] + [sec(63)] * 4)


def test_retransmitted_syn_gets_synack_at_once():
    pair, _ = listening_pair()
    pair.b.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(22), b"")
    out = pair.b.tcp_v4_rcv(ms(500), A_ADDR, B_ADDR, syn_to(22), b"")
    assert len(out) == 1 and out[0].tcp.flags == SYN | ACK


def test_syn_to_closed_port_gets_rst_ack():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    (rst,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(23, seq=5000), b"")
    assert (rst.tcp.flags, rst.tcp.seq, rst.tcp.ack, rst.tcp.window) == (RST | ACK, 0, 5001, 0)
    assert rst.tcp.options == () and layer.drops[-1].reason == "SKB_DROP_REASON_NO_SOCKET"


def test_ack_to_closed_port_gets_rst_with_seq_from_ack():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    seg = TcpRepr(40000, 23, 10, 4242, ACK, 100)
    (rst,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, seg, b"xyz")
    assert (rst.tcp.flags, rst.tcp.seq) == (RST, 4242)


def test_rst_to_closed_port_is_not_answered():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    assert layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, TcpRepr(40000, 23, 10, 0, RST, 0), b"") == []


def test_stray_ack_to_listener_gets_rst():
    pair, _ = listening_pair()
    (rst,) = pair.b.tcp_v4_rcv(0, A_ADDR, B_ADDR, TcpRepr(40000, 22, 5, 99, ACK, 100), b"")
    assert rst.tcp.flags == RST and rst.tcp.seq == 99


# -- handshake and data -----------------------------------------------------------------
def test_handshake_establishes_both_sides():
    pair, cfd, sfd = connected_pair()
    assert pair.a.sock(cfd).state is TcpState.ESTABLISHED
    assert pair.b.sock(sfd).state is TcpState.ESTABLISHED


def test_handshake_ack_window_is_aligned_to_the_scale():
    pair, _, _ = connected_pair()
    (_, ack), = pair.sent("a", "handshake-ack")
    assert ack.tcp.window == (64240 + 63) // 64


def test_rto_after_handshake_is_rtt_plus_rto_min():
    pair, cfd, sfd = connected_pair(delay=ms(5))
    assert pair.a.sock(cfd).rto == ms(210)   # srtt 10 ms, rttvar max(20 ms, 200 ms)


def test_first_data_segment_is_acked_at_once_by_quickack():
    pair, cfd, sfd = connected_pair()
    pair.put("a", pair.a.send(ms(50), cfd, b"hello"))
    pair.run_until(ms(60))
    acks = [t for t, s in pair.sent("b") if s.cause == "ack-now"]
    assert acks == [ms(55)]
    assert pair.b.recv(ms(60), sfd, 100)[0] == b"hello"


def test_data_after_a_gap_longer_than_the_rto_is_acked_at_once_again():
    # tcp_event_data_recv: m > icsk_rto ("Too long gap. Apparently sender failed to restart
    # window") -> tcp_incr_quickack: quick ACKs again, though the first ones were used up
    pair, cfd, sfd = connected_pair()
    pair.put("a", pair.a.send(ms(50), cfd, b"hello"))
    pair.run_until(ms(60))
    server = pair.b.sock(sfd)
    server.icsk_ack.quick = 0                          # the quick ACKs of the connection's start are spent
    pair.run_until(ms(1060))                  # idle 1 s: longer than the RTO (210 ms)
    pair.put("a", pair.a.send(ms(1060), cfd, b"again"))
    pair.run_until(ms(1200))
    assert [t for t, s in pair.sent("b") if s.cause == "ack-now"] == [ms(55), ms(1065)]


def test_data_segment_carries_psh_at_end_of_send():
    pair, cfd, _ = connected_pair()
    (seg,) = pair.a.send(ms(50), cfd, b"x" * 100)
    assert seg.tcp.flags == PSH | ACK


def test_large_send_is_cut_at_mss_less_timestamps():
    pair, cfd, _ = connected_pair()
    segs = pair.a.send(ms(50), cfd, b"x" * 3000)
    assert [len(s.payload) for s in segs] == [1448, 1448, 104]


def test_nagle_holds_second_small_write_until_ack():
    pair, cfd, _ = connected_pair()
    first = pair.a.send(ms(50), cfd, b"a")
    held = pair.a.send(ms(51), cfd, b"b")
    assert len(first) == 1 and held == []


def test_tcp_nodelay_sends_second_small_write_at_once():
    pair, cfd, _ = connected_pair()
    pair.a.setsockopt(ms(50), cfd, "TCP_NODELAY", True)
    pair.a.send(ms(50), cfd, b"a")
    assert len(pair.a.send(ms(51), cfd, b"b")) == 1


def test_data_retransmitted_with_backoff_when_acks_stop():
    pair, cfd, _ = connected_pair(delay=ms(5))
    pair.silent.add("a")
    pair.put("a", pair.a.send(ms(100), cfd, b"data"))
    pair.run_until(ms(100) + sec(3))
    # RTT 10 ms: RTO = 10 ms + 200 ms. With SACK a tail loss probe goes first, after
    # min(2 srtt + TCP_RTO_MIN, RTO) = 210 ms, and the RTO restarts from it; then the RTO
    # doubles (tcp_send_loss_probe, tcp_retransmit_timer). The emulated board does the same
    # (harness/scenarios/data-retransmit.yaml).
    probes = [t - ms(100) for t, s in pair.sent("a", "loss-probe-retransmit")]
    times = [t - ms(100) for t, s in pair.sent("a", "retransmit")]
    assert probes == [ms(210)]
    assert times == [ms(210 + 210), ms(210 + 210 + 420), ms(210 + 210 + 420 + 840)]


def test_no_tail_loss_probe_without_sack_or_with_early_retrans_off():
    from models.tcp import TcpParams

    for params in (TcpParams(sack=False), TcpParams(early_retrans=0)):
        pair, cfd, _ = connected_pair(delay=ms(5), params_a=params)
        pair.silent.add("a")
        pair.put("a", pair.a.send(ms(100), cfd, b"data"))
        pair.run_until(ms(100) + sec(3))
        assert pair.sent("a", "loss-probe-retransmit") == []
        times = [t - ms(100) for t, s in pair.sent("a", "retransmit")]
        assert times == [ms(210), ms(210 + 420), ms(210 + 420 + 840)]


def test_rto_backoff_is_capped_at_120_s():
    pair, cfd, _ = connected_pair(delay=ms(5))
    pair.silent.add("a")
    pair.put("a", pair.a.send(ms(100), cfd, b"data"))
    pair.run_until(sec(900))
    times = [t for t, s in pair.sent("a", "retransmit")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) == TCP_RTO_MAX and gaps[-1] == TCP_RTO_MAX


def test_data_retransmission_gives_up_with_etimedout_after_retries2_time():
    pair, cfd, _ = connected_pair(delay=ms(5))
    pair.silent.add("a")
    pair.put("a", pair.a.send(ms(100), cfd, b"data"))
    pair.run_until(sec(1200))
    sk = pair.a.sock(cfd)
    assert sk.error == "ETIMEDOUT"
    assert sk.error_at - ms(100) >= tcp_model_timeout(15, ms(200))


# -- close -------------------------------------------------------------------------------
def test_active_close_goes_through_fin_wait_to_time_wait_for_60_s():
    pair, cfd, sfd = connected_pair()
    pair.put("a", pair.a.close(ms(100), cfd))
    pair.run_until(ms(200))
    pair.put("b", pair.b.close(ms(200), sfd))
    pair.run_until(ms(300))
    client = next(iter(pair.a.established.values()))
    states = [new for _, _, new in client.transitions]
    assert states[-3:] == [TcpState.FIN_WAIT1, TcpState.FIN_WAIT2, TcpState.TIME_WAIT]
    entered = client.transitions[-1][0]
    pair.run_until(entered + sec(60))
    assert client.state is TcpState.CLOSED and client.transitions[-1][0] == entered + sec(60)


def test_passive_side_reaches_closed_after_last_ack():
    pair, cfd, sfd = connected_pair()
    pair.put("a", pair.a.close(ms(100), cfd))
    pair.run_until(ms(200))
    server = pair.b.sock(sfd)
    assert server.state is TcpState.CLOSE_WAIT
    pair.put("b", pair.b.close(ms(200), sfd))
    pair.run_until(ms(300))
    assert server.state is TcpState.CLOSED and server.error is None


def test_ack_of_a_peer_fin_before_any_data_goes_on_the_next_tick():
    # tcp_fin enters pingpong, so the ACK is delayed (tcp_send_delayed_ack), but ato is
    # still 0 (tcp_event_data_recv never ran): the timer is due at once. Seen on a Linux
    # host: the FIN's ACK 1.2 ms after it (HZ 1000), not TCP_ATO_MIN later.
    pair, cfd, _ = connected_pair()
    pair.run_until(ms(100))
    pair.put("a", pair.a.close(ms(100), cfd))
    pair.run_until(ms(400))
    (t, ack), = pair.sent("b", "delayed-ack")
    assert t == ms(105) and ack.window is None


def test_ack_of_a_peer_fin_after_data_waits_the_ato():
    # after data, ato is TCP_ATO_MIN (tcp_event_data_recv); the FIN's pingpong delays its ACK that long
    pair, cfd, sfd = connected_pair()
    pair.run_until(ms(100))
    pair.put("a", pair.a.send(ms(100), cfd, b"hello"))
    pair.run_until(ms(200))
    pair.put("a", pair.a.close(ms(200), cfd))
    pair.run_until(ms(500))
    (t, ack), = pair.sent("b", "delayed-ack")
    assert t == ms(205) + ms(40) and ack.window == Window(ms(205) + ms(40), ms(205) + ms(200))


def test_close_with_unread_data_sends_rst():
    pair, cfd, sfd = connected_pair()
    pair.put("a", pair.a.send(ms(50), cfd, b"unread"))
    pair.run_until(ms(100))
    (rst,) = pair.b.close(ms(100), sfd)
    assert rst.tcp.flags & RST


def test_fin_flag_rides_on_last_data_when_closing():
    pair, cfd, _ = connected_pair()
    pair.a.setsockopt(ms(50), cfd, "TCP_NODELAY", True)
    sk = pair.a.sock(cfd)
    sk.write_queue += b"tail"
    sk.skb_lens.append(4)
    sk.push_marks.append(4)
    sk.cwnd = 0   # hold the data so close() queues the FIN behind it
    pair.a.close(ms(50), cfd)
    sk.cwnd = 10
    sk.tcp_write_xmit(ms(51))
    (seg,) = sk._flush()
    assert seg.tcp.flags & FIN and seg.payload == b"tail"


# -- reset ---------------------------------------------------------------------------------
def test_rst_with_exact_sequence_resets_connection():
    pair, cfd, sfd = connected_pair()
    server = pair.b.sock(sfd)
    seg = TcpRepr(server.remote[1], 22, server.rcv_nxt, 0, RST, 0)
    pair.b.tcp_v4_rcv(ms(100), A_ADDR, B_ADDR, seg, b"")
    assert server.state is TcpState.CLOSED and server.error == "ECONNRESET"


def test_rst_in_window_but_not_exact_gets_challenge_ack():
    pair, cfd, sfd = connected_pair()
    server = pair.b.sock(sfd)
    seg = TcpRepr(server.remote[1], 22, (server.rcv_nxt + 10) % 2**32, 0, RST, 0)
    (ack,) = pair.b.tcp_v4_rcv(ms(100), A_ADDR, B_ADDR, seg, b"")
    assert ack.cause == "challenge-ack-rst" and server.state is TcpState.ESTABLISHED


def test_connect_to_closed_port_fails_with_econnrefused():
    pair = TcpPair(ms(5))
    fd = pair.a.socket()
    pair.put("a", pair.a.connect(0, fd, B_ADDR, 23))
    pair.run_until(ms(50))
    assert pair.a.sock(fd).error == "ECONNREFUSED"


# -- keepalive -----------------------------------------------------------------------------
def test_keepalive_probes_at_7200_s_every_75_s_then_reset():
    pair, cfd, _ = connected_pair()
    pair.a.setsockopt(ms(50), cfd, "SO_KEEPALIVE", True)
    pair.silent.add("b")
    sk = pair.a.sock(cfd)
    idle_since = ms(50)   # tcp_set_keepalive() arms the timer keepalive_time from now
    pair.run_until(sec(9000))
    probes = [t - idle_since for t, _ in pair.sent("a", "keepalive-probe")]
    assert probes == [sec(7200 + 75 * k) for k in range(9)]
    (t, rst), = pair.sent("a", "keepalive-reset")
    assert t - idle_since == sec(7200 + 75 * 9) and sk.error == "ETIMEDOUT"


def test_keepalive_probe_uses_snd_una_minus_one():
    pair, cfd, _ = connected_pair()
    pair.a.setsockopt(ms(50), cfd, "SO_KEEPALIVE", True)
    pair.run_until(sec(7201))
    (_, probe), = pair.sent("a", "keepalive-probe")
    assert probe.tcp.seq == (pair.a.sock(cfd).snd_una - 1) % 2**32 and probe.payload == b""


def test_answered_keepalive_probe_restarts_idle_timer():
    pair, cfd, _ = connected_pair()
    pair.a.setsockopt(ms(50), cfd, "SO_KEEPALIVE", True)
    pair.run_until(sec(7300))
    assert len(pair.sent("a", "keepalive-probe")) == 1


# -- socket API ------------------------------------------------------------------------------
def test_bind_to_port_in_use_is_eaddrinuse():
    pair, _ = listening_pair()
    fd = pair.b.socket()
    with pytest.raises(SocketError) as err:
        pair.b.bind(fd, 0, 22)
    assert err.value.errno_name == "EADDRINUSE"


def test_so_reuseaddr_lets_two_unlistened_sockets_share_a_port():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    a, b = layer.socket(), layer.socket()
    for fd in (a, b):
        layer.setsockopt(0, fd, "SO_REUSEADDR", True)
        layer.bind(fd, 0, 8080)
    assert layer._get(b).bound == (0, 8080)


def test_send_on_unconnected_socket_is_enotconn():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    with pytest.raises(SocketError) as err:
        layer.send(0, layer.socket(), b"x")
    assert err.value.errno_name == "ENOTCONN"


def test_accept_on_empty_queue_is_eagain():
    pair, lfd = listening_pair()
    with pytest.raises(SocketError) as err:
        pair.b.accept(lfd)
    assert err.value.errno_name == "EAGAIN"


def test_listen_backlog_is_capped_by_somaxconn():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR, somaxconn=16)
    fd = layer.socket()
    layer.bind(fd, 0, 22)
    layer.listen(fd, 1000)
    assert layer.listeners[22].listener.backlog == 16


def test_full_accept_queue_drops_new_syn():
    # sk_acceptq_is_full() is "more than backlog": backlog 0 still admits one child.
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    fd = layer.socket()
    layer.bind(fd, 0, 22)
    layer.listen(fd, 0)
    first = syn_to(22)
    (sa,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, first, b"")
    layer.tcp_v4_rcv(ms(1), A_ADDR, B_ADDR, TcpRepr(40000, 22, 1001, (sa.tcp.seq + 1) % 2**32, ACK, 502), b"")
    assert len(layer.listeners[22].listener.accept_queue) == 1
    second = TcpRepr(40002, 22, 1000, 0, SYN, 64240, first.options)
    assert layer.tcp_v4_rcv(ms(2), A_ADDR, B_ADDR, second, b"") == []


def test_set_state_records_every_transition_once():
    pair, cfd, _ = connected_pair()
    sk = pair.a.sock(cfd)
    assert [(old, new) for _, old, new in sk.transitions] == [
        (TcpState.CLOSED, TcpState.SYN_SENT), (TcpState.SYN_SENT, TcpState.ESTABLISHED)]


def test_lookup_prefers_the_established_socket_over_the_listener():
    pair, cfd, sfd = connected_pair()
    server = pair.b.sock(sfd)
    seg = TcpRepr(server.remote[1], 22, server.rcv_nxt, server.snd_nxt, ACK | PSH, 502,
                  linux_options(ts=(1, server._tsval(ms(60)))))
    out = pair.b.tcp_v4_rcv(ms(60), A_ADDR, B_ADDR, seg, b"data")
    assert bytes(server.rcv_buf) == b"data" and all(not s.tcp.flags & RST for s in out)


def test_bind_to_a_port_in_time_wait_needs_so_reuseaddr():
    pair, cfd, sfd = connected_pair()
    port = pair.a.sock(cfd).local[1]
    pair.run_until(ms(100))
    pair.put("a", pair.a.close(ms(100), cfd))
    pair.run_until(ms(200))
    pair.put("b", pair.b.close(ms(200), sfd))
    pair.run_until(ms(300))
    assert any(sk.state is TcpState.TIME_WAIT for sk in pair.a.established.values())
    fd = pair.a.socket()
    with pytest.raises(SocketError):
        pair.a.bind(fd, 0, port)
    pair.a.setsockopt(ms(300), fd, "SO_REUSEADDR", True)
    pair.a.bind(fd, 0, port)


def test_ack_with_wrong_number_in_syn_recv_gets_rst():
    pair, _ = listening_pair()
    (sa,) = pair.b.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn_to(22), b"")
    bad = TcpRepr(40000, 22, 1001, (sa.tcp.seq + 7) % 2**32, ACK, 502)
    (rst,) = pair.b.tcp_v4_rcv(ms(1), A_ADDR, B_ADDR, bad, b"")
    assert rst.tcp.flags == RST and rst.tcp.seq == bad.ack
    assert pair.b.listeners[22].listener.accept_queue == []


SHORT_KEEPALIVE = TcpParams(keepalive_time=sec(2), keepalive_intvl=sec(2), keepalive_probes=2)


def keepalive_listener_pair() -> tuple[TcpPair, int, int]:
    """b listens with SO_KEEPALIVE (a daemon that sets it on what it accepts, as busybox
    httpd does, played on the listener) and accepts a's connection; keepalive 2 s, 2 s, 2."""
    pair = TcpPair(ms(5), params_b=SHORT_KEEPALIVE)
    lfd = pair.b.socket()
    pair.b.bind(lfd, 0, 80)
    pair.b.listen(lfd, 9)
    pair.b.setsockopt(0, lfd, "SO_KEEPALIVE", True)
    cfd = pair.a.socket()
    pair.put("a", pair.a.connect(0, cfd, B_ADDR, 80))
    pair.run_until(ms(50))
    return pair, cfd, pair.b.accept(lfd)


def test_accepted_socket_of_a_keepalive_listener_probes_an_idle_peer_then_resets():
    # tcp_create_openreq_child arms the child's keepalive timer (SOCK_KEEPOPEN came with
    # sk_clone_lock); tcp_keepalive_timer: a probe every intvl once idle keepalive_time,
    # tcp_send_active_reset after keepalive_probes unanswered ones
    pair, _, afd = keepalive_listener_pair()
    born = pair.b.sock(afd).transitions[-1][0]
    pair.silent.add("a")
    pair.run_until(sec(10))
    probes = pair.sent("b", "keepalive-probe")
    assert [t - born for t, _ in probes] == [sec(2), sec(4)]
    assert all(not seg.optional and seg.payload == b"" for _, seg in probes)
    (t, rst), = pair.sent("b", "keepalive-reset")
    assert t - born == sec(6) and rst.tcp.flags == RST | ACK and not rst.optional
    assert pair.b.sock(afd).error == "ETIMEDOUT"


def test_keepalive_of_an_accepted_socket_whose_peer_closed_is_optional():
    # in CLOSE_WAIT the daemon that accepted the socket (not played) may have closed it
    # on the EOF, taking the socket and its keepalive timer with it
    pair, cfd, afd = keepalive_listener_pair()
    pair.put("a", pair.a.close(ms(100), cfd))
    pair.run_until(ms(200))
    assert pair.b.sock(afd).state is TcpState.CLOSE_WAIT
    pair.silent.add("a")
    pair.run_until(sec(10))
    sent = pair.sent("b", "keepalive-probe") + pair.sent("b", "keepalive-reset")
    assert len(sent) == 3 and all(seg.optional for _, seg in sent)


def test_orphan_in_fin_wait2_waits_tcp_fin_timeout_but_at_least_three_and_a_half_rtos():
    # tcp_close -> tcp_time_wait(sk, TCP_FIN_WAIT2, tcp_fin_time(sk)): tcp_fin_time takes
    # the larger of tcp_fin_timeout and (rto << 2) - (rto >> 1) jiffies
    for fin_timeout, want in ((sec(5), sec(5)), (0, ms(740))):
        pair, lfd = listening_pair(params_a=TcpParams(fin_timeout=fin_timeout))
        cfd = pair.a.socket()
        pair.put("a", pair.a.connect(0, cfd, B_ADDR, 22))
        pair.run_until(ms(100))
        sk = pair.a.sock(cfd)
        assert sk.rto == ms(210)   # the handshake's 10 ms RTT + TCP_RTO_MIN: 21 jiffies, 3.5 x is 74
        pair.put("a", pair.a.close(ms(100), cfd))
        pair.run_until(ms(200))
        (t2, _, _), = [x for x in sk.transitions if x[2] is TcpState.FIN_WAIT2]
        pair.run_until(t2 + want - 1)
        assert sk.state is TcpState.FIN_WAIT2
        pair.run_until(t2 + want)
        assert sk.state is TcpState.CLOSED


def half_closed_pair(fin_timeout: int = sec(60)):
    """a connected to b, wrote, shut its side (shutdown(SHUT_WR)) and b acknowledged the
    FIN: a sits in FIN_WAIT2 with no timer (not an orphan: its program still reads)."""
    pair, cfd, afd = connected_pair(params_a=TcpParams(fin_timeout=fin_timeout))
    pair.run_until(ms(100))
    pair.put("a", pair.a.send(ms(100), cfd, b"hello"))
    pair.run_until(ms(110))
    pair.put("a", pair.a.shutdown(ms(110), cfd, "SHUT_WR"))
    pair.run_until(ms(500))
    data, out = pair.b.recv(ms(500), afd, 100)
    pair.put("b", out)
    sk = pair.a.sock(cfd)
    assert data == b"hello" and sk.state is TcpState.FIN_WAIT2 and not sk.timers
    return pair, cfd, afd, sk


def test_closed_fin_wait2_socket_is_a_timewait_sock_that_acks_the_peers_fin_from_the_control_socket():
    # tcp_close in FIN_WAIT2 -> tcp_time_wait(sk, TCP_FIN_WAIT2, tcp_fin_time); the peer's
    # FIN: tcp_timewait_state_process -> TIME_WAIT for TCP_TIMEWAIT_LEN, TCP_TW_ACK ->
    # tcp_v4_timewait_ack (ID 0, the frozen tw_rcv_wnd, TSecr the FIN's TSval)
    pair, cfd, afd, sk = half_closed_pair()
    wnd = sk.rcv_wnd
    pair.run_until(sec(1))
    pair.put("a", pair.a.close(sec(1), cfd))
    assert sk.timewait_sock and sk.timers == {TimerKind.FIN_WAIT2: sec(61)} and not pair.sent("a")[-1][1].tcp.flags & RST
    pair.run_until(sec(8))
    pair.put("b", pair.b.close(sec(8), afd))    # b was in CLOSE_WAIT: its FIN
    pair.run_until(sec(9))
    (t, ack), = pair.sent("a", "timewait-ack")
    fin = pair.sent("b")[-1][1]
    assert t == sec(8) + ms(5) and ack.tcp.flags == ACK and ack.tcp.ack == (fin.tcp.seq + 1) % 2**32
    assert ack.ip.ident is None and ack.tcp.window == wnd >> sk.rcv_wscale
    assert ack.tcp.timestamp[1] == fin.tcp.timestamp[0]
    assert sk.state is TcpState.TIME_WAIT and sk.timers == {TimerKind.TIME_WAIT: t + sec(60)}


def test_peer_fin_after_tcp_fin_timeout_finds_no_socket_and_is_reset():
    # the FIN_WAIT2 timewait sock is gone after tcp_fin_time (5 s here): the FIN finds
    # nothing (no listener on the ephemeral port) -> tcp_v4_send_reset, seq from its ACK
    pair, cfd, afd, sk = half_closed_pair(fin_timeout=sec(5))
    pair.run_until(sec(1))
    pair.put("a", pair.a.close(sec(1), cfd))
    pair.run_until(sec(6) - 1)
    assert sk.state is TcpState.FIN_WAIT2
    pair.run_until(sec(6))
    assert sk.state is TcpState.CLOSED
    pair.run_until(sec(8))
    pair.put("b", pair.b.close(sec(8), afd))
    pair.run_until(sec(9))
    (_, rst), = pair.sent("a", "rst-no-socket")
    assert rst.tcp.flags == RST and rst.tcp.seq == pair.sent("b")[-1][1].tcp.ack
    assert not pair.sent("a", "timewait-ack")


def test_new_data_to_a_fin_wait2_timewait_sock_is_reset_and_kills_it():
    # tcp_timewait_state_process: data (not a FIN) after a half-duplex close: TCP_TW_RST
    pair, cfd, afd, sk = half_closed_pair()
    pair.run_until(sec(1))
    pair.put("a", pair.a.close(sec(1), cfd))
    pair.run_until(sec(2))
    pair.put("b", pair.b.send(sec(2), afd, b"late"))
    pair.run_until(sec(3))
    (_, rst), = pair.sent("a", "timewait-rst")
    assert rst.tcp.flags & RST and sk.state is TcpState.CLOSED


def test_a_segment_when_the_orphans_end_is_unsure_stops_the_model():
    # close() came at an unobserved time within late_ns: a FIN between the earliest and
    # the latest end of the timewait sock may get an ACK or a RST, so the model stops
    pair, cfd, afd, sk = half_closed_pair(fin_timeout=sec(5))
    pair.run_until(sec(1))
    pair.put("a", pair.a.close(sec(1), cfd, late_ns=sec(2)))
    assert sk.fw2_unsure == [(sec(6), sec(8))]
    pair.run_until(sec(7))
    pair.put("b", pair.b.close(sec(7), afd))
    with pytest.raises(FinWait2Unsure):
        pair.run_until(sec(8))


def test_fin_timeout_past_timewait_len_waits_on_the_keepalive_timer_then_as_a_timewait_sock():
    # tcp_close: tmo > TCP_TIMEWAIT_LEN -> inet_csk_reset_keepalive_timer(tmo - 60 s);
    # tcp_keepalive_timer -> tcp_time_wait(TCP_FIN_WAIT2, tcp_fin_time - 60 s): 2 x 40 s
    pair, cfd, afd, sk = half_closed_pair(fin_timeout=sec(100))
    pair.run_until(sec(1))
    pair.put("a", pair.a.close(sec(1), cfd))
    assert not sk.timewait_sock and sk.timers[TimerKind.FIN_WAIT2] == sec(41)
    pair.run_until(sec(41))
    assert sk.timewait_sock and sk.timers == {TimerKind.FIN_WAIT2: sec(81)}
    pair.run_until(sec(81))
    assert sk.state is TcpState.CLOSED


# -- an ACK of data never sent (tcp_ack: SKB_DROP_REASON_TCP_ACK_UNSENT_DATA) ----------------
def _ack_above_snd_nxt(sock, now: int, layer: SocketLayer) -> list:
    seg = TcpRepr(sock.remote[1], sock.local[1], sock.rcv_nxt, (sock.snd_nxt + 100) % (1 << 32), ACK, 502)
    return layer.tcp_v4_rcv(now, sock.remote[0], sock.local[0], seg, b"")


def test_an_ack_above_snd_nxt_in_established_is_dropped_silently_ts_recent_untouched():
    """tcp_rcv_established -> tcp_ack returns -SKB_DROP_REASON_TCP_ACK_UNSENT_DATA before
    tcp_replace_ts_recent: discard, no answer."""
    pair, cfd, sfd = connected_pair()
    client = pair.a.sock(cfd)
    before = (client.snd_una, client.ts_recent, client.state)
    assert _ack_above_snd_nxt(client, ms(100), pair.a) == []
    assert (client.snd_una, client.ts_recent, client.state) == before


def test_an_ack_above_snd_nxt_after_established_gets_a_challenge_ack_optional_if_accepted():
    """tcp_rcv_state_process (CLOSE_WAIT here) answers it with tcp_send_challenge_ack. On an
    accepted socket the daemon the model does not play may have written or closed, which
    would make the ACK in order: then only some boards send it."""
    pair, cfd, sfd = connected_pair()
    pair.put("a", pair.a.close(ms(100), cfd))
    pair.run_until(ms(200))
    server = pair.b.sock(sfd)
    assert server.state is TcpState.CLOSE_WAIT and server.passive
    (answer,) = _ack_above_snd_nxt(server, ms(300), pair.b)
    assert answer.cause == "challenge-ack-unsent-data" and answer.tcp.flags == ACK and answer.optional
    # the connecting side is played by the model: its challenge ACK is sure
    pair2, cfd2, sfd2 = connected_pair()
    pair2.put("b", pair2.b.close(ms(100), sfd2))
    pair2.run_until(ms(200))
    active = pair2.a.sock(cfd2)
    assert active.state is TcpState.CLOSE_WAIT and not active.passive
    (answer,) = _ack_above_snd_nxt(active, ms(300), pair2.a)
    assert answer.cause == "challenge-ack-unsent-data" and not answer.optional


def test_an_orphan_gives_up_after_8_retransmissions_not_tcp_retries2():
    # tcp_write_timeout: a closed socket (SOCK_DEAD) retries tcp_orphan_retries(), which
    # is 8 while the RTO is below TCP_RTO_MAX (the sysctl's default 0): its data and FIN to
    # a silent peer die about 102 s on (tcp_model_timeout(8, 200 ms)), where an open socket
    # goes on to tcp_retries2 (15, about 924 s)
    ends = {}
    for orphan in (True, False):
        pair, cfd, _ = connected_pair()
        pair.run_until(ms(100))
        pair.silent.add("b")
        pair.put("a", pair.a.send(ms(100), cfd, b"unheard"))
        sk = pair.a.sock(cfd)
        if orphan:
            pair.put("a", pair.a.close(ms(100), cfd))
        pair.run_until(sec(200))
        ends[orphan] = (sk.state, sk.error, sk.transitions[-1][0])
    state, error, at = ends[True]
    assert (state, error) == (TcpState.CLOSED, "ETIMEDOUT") and sec(100) < at < sec(110), ends
    assert ends[False][0] is TcpState.ESTABLISHED


def test_a_new_syn_to_a_time_wait_flow_opens_a_connection_with_the_isn_after_the_old_one():
    # tcp_timewait_state_process: a SYN (no ACK) above rcv_nxt is TCP_TW_SYN; tcp_v4_rcv
    # hands it to the listener, and tcp_conn_request takes tcp_tw_isn = snd_nxt + 65535 + 2
    from models.socket import SocketLayer

    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    lfd = layer.socket()
    layer.bind(lfd, 0, 80)
    layer.listen(lfd, 9)
    (synack,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, TcpRepr(40000, 80, 1000, 0, SYN, 64240, ()), b"")
    iss = synack.tcp.seq
    layer.tcp_v4_rcv(ms(1), A_ADDR, B_ADDR, TcpRepr(40000, 80, 1001, iss + 1, ACK, 64240, ()), b"")
    fd = layer.accept(lfd)
    (fin,) = layer.close(ms(2), fd)
    layer.tcp_v4_rcv(ms(3), A_ADDR, B_ADDR, TcpRepr(40000, 80, 1001, iss + 2, FIN | ACK, 64240, ()), b"")
    (tw,) = [sk for sk in layer.established.values() if sk.state is TcpState.TIME_WAIT]
    # an old duplicate SYN (below rcv_nxt) is only ACKed; a new one opens a connection
    (ack,) = layer.tcp_v4_rcv(ms(4), A_ADDR, B_ADDR, TcpRepr(40000, 80, 900, 0, SYN, 64240, ()), b"")
    assert ack.tcp.flags == ACK and tw.state is TcpState.TIME_WAIT
    (new,) = layer.tcp_v4_rcv(ms(5), A_ADDR, B_ADDR, TcpRepr(40000, 80, 5000, 0, SYN, 64240, ()), b"")
    assert new.tcp.flags == SYN | ACK and new.tcp.seq == (iss + 2 + 65537) % (1 << 32)
    assert tw.state is TcpState.CLOSED
