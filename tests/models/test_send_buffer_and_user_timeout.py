"""SO_SNDBUF and TCP_USER_TIMEOUT as Linux 6.1 has them: sock_setsockopt's send buffer and
tcp_sendmsg_locked's sk_stream_memory_free over skb truesizes; icsk_user_timeout in
tcp_write_timeout, tcp_clamp_rto_to_user_timeout, tcp_probe_timer and
tcp_clamp_probe0_to_user_timeout. suites/pkt/so-sndbuf-short-write.pkt and
tcp-user-timeout-*.pkt show the same on the board."""

from __future__ import annotations

import random

import pytest
from model_pair import A_ADDR, B_ADDR

from models.clock import ms
from models.errors import SocketError
from models.socket import SK_WMEM_MAX, SOCK_MIN_SNDBUF, SocketLayer
from models.tcp import TcpParams, TcpState
from models.tcp_h import TCP_SKB_TRUESIZE_EMPTY
from models.wire import ACK, SYN, TcpRepr, linux_options

PEER = 40000


def accepted(peer_window: int = 2000, peer_mss: int = 1000, ack_window: int | None = None,
             listener_opts: dict | None = None) -> tuple[SocketLayer, int, int]:
    """A listener on port 80, a peer's handshake (SYN at 0, its ACK at 50 ms: RTO 250 ms)
    with only an MSS option (no SACK: no tail loss probe), and the accepted fd."""
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    lfd = layer.socket()
    for option, value in (listener_opts or {}).items():
        layer.setsockopt(0, lfd, option, value)
    layer.bind(lfd, 0, 80)
    layer.listen(lfd, 1)
    (synack,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, TcpRepr(PEER, 80, 1000, 0, SYN, peer_window,
                                                            linux_options(mss=peer_mss)), b"")
    iss = synack.tcp.seq
    ack = TcpRepr(PEER, 80, 1001, (iss + 1) % 2**32, ACK, peer_window if ack_window is None else ack_window)
    assert layer.tcp_v4_rcv(ms(50), A_ADDR, B_ADDR, ack, b"") == []
    return layer, layer.accept(lfd), iss


def peer_ack(layer: SocketLayer, now: int, iss: int, acked: int, window: int = 2000) -> list:
    return layer.tcp_v4_rcv(now, A_ADDR, B_ADDR, TcpRepr(PEER, 80, 1001, (iss + 1 + acked) % 2**32, ACK, window), b"")


# -- SO_SNDBUF ---------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "sk_sndbuf"), [
    (7668, 15336),                  # doubled for struct sk_buff's overhead
    (1, SOCK_MIN_SNDBUF),           # at least SOCK_MIN_SNDBUF (4480 on the board)
    (10**7, 2 * SK_WMEM_MAX),       # capped at wmem_max first (360448 on the board)
    (-1, 2 * SK_WMEM_MAX),          # compared as u32: wmem_max
])
def test_so_sndbuf_is_doubled_capped_at_wmem_max_and_at_least_sock_min_sndbuf(value, sk_sndbuf):
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    fd = layer.socket()
    assert layer.getsockopt(fd, "SO_SNDBUF") == 16384          # tcp_wmem[1] before it is set
    layer.setsockopt(0, fd, "SO_SNDBUF", value)
    assert layer.getsockopt(fd, "SO_SNDBUF") == sk_sndbuf


def test_a_listeners_so_sndbuf_and_user_timeout_go_to_its_children():
    layer, fd, _ = accepted(listener_opts={"SO_SNDBUF": 7668, "TCP_USER_TIMEOUT": 2500})
    sk = layer.sock(fd)
    assert (sk.sndbuf, sk.user_timeout_ms) == (15336, 2500)
    assert (layer.getsockopt(fd, "SO_SNDBUF"), layer.getsockopt(fd, "TCP_USER_TIMEOUT")) == (15336, 2500)


@pytest.mark.parametrize(("value", "taken"), [(7668, 9000), (7669, 10000)])
def test_a_write_takes_a_new_skb_only_while_sk_wmem_queued_is_below_sk_sndbuf(value, taken):
    # a peer window of 2000 makes every skb 1000 bytes; each counts 704 + 1000 (its
    # truesize): nine make 15336, which is not below sk_sndbuf 15336 but is below 15338
    assert 9 * (TCP_SKB_TRUESIZE_EMPTY + 1000) == 15336
    layer, fd, _ = accepted()
    layer.setsockopt(ms(50), fd, "SO_SNDBUF", value)
    copied, out = layer.sendmsg(ms(50), fd, bytes(30000))
    assert copied == taken and [len(s.payload) for s in out] == [1000, 1000]


def test_a_write_with_no_room_for_a_new_skb_is_eagain():
    layer, fd, _ = accepted()
    layer.setsockopt(ms(50), fd, "SO_SNDBUF", 7668)
    layer.sendmsg(ms(50), fd, bytes(30000))
    with pytest.raises(SocketError) as err:
        layer.sendmsg(ms(50), fd, bytes(1000))
    assert err.value.errno_name == "EAGAIN"


def test_an_ack_frees_the_skbs_it_covers_for_another_write():
    layer, fd, iss = accepted()
    layer.setsockopt(ms(50), fd, "SO_SNDBUF", 7668)
    layer.sendmsg(ms(50), fd, bytes(30000))
    out = peer_ack(layer, ms(100), iss, 2000)
    assert [len(s.payload) for s in out] == [1000, 1000]
    assert layer.sendmsg(ms(100), fd, bytes(30000))[0] == 2000


def test_skbs_sent_before_so_sndbuf_was_set_count_too():
    layer, fd, _ = accepted()
    assert [len(s.payload) for s in layer.send(ms(50), fd, bytes(2000))] == [1000, 1000]
    layer.setsockopt(ms(50), fd, "SO_SNDBUF", 7668)
    assert layer.sendmsg(ms(50), fd, bytes(30000))[0] == 7000     # 2 + 7 skbs of 1704


def test_one_write_may_pass_sk_sndbuf_by_a_whole_skb():
    # sk_stream_memory_free is asked only for a new skb: a wide peer window makes the
    # size goal 32120 bytes, so the smallest send buffer still takes 30000 in one skb
    layer, fd, _ = accepted(peer_window=65535, peer_mss=1460)
    layer.setsockopt(ms(50), fd, "SO_SNDBUF", 1)
    assert layer.sendmsg(ms(50), fd, bytes(30000))[0] == 30000
    # cwnd sent ten segments, and tso_fragment split the unsent 15400 bytes off into the
    # tail skb: its room up to the size goal needs no new skb; past it, nothing
    assert layer.sendmsg(ms(50), fd, bytes(30000))[0] == 32120 - (30000 - 10 * 1460)
    with pytest.raises(SocketError):
        layer.sendmsg(ms(50), fd, bytes(1))


# -- TCP_USER_TIMEOUT ----------------------------------------------------------------------
def test_tcp_user_timeout_is_zero_until_set_and_never_negative():
    layer = SocketLayer(TcpParams(), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    fd = layer.socket()
    assert layer.getsockopt(fd, "TCP_USER_TIMEOUT") == 0
    with pytest.raises(SocketError) as err:
        layer.setsockopt(0, fd, "TCP_USER_TIMEOUT", -1)
    assert err.value.errno_name == "EINVAL"


def run_timers(layer: SocketLayer, until: int, on_probe=None) -> list[tuple[int, object]]:
    """Every timer of the layer up to `until`: what each sent, with its time."""
    sent = []
    while layer.poll_at() is not None and layer.poll_at() <= until:
        now = layer.poll_at()
        for seg in layer.on_timer(now):
            sent.append((now, seg))
            if on_probe and seg.cause == "window-probe":
                on_probe(now)
    return sent


def test_tcp_user_timeout_ends_retransmissions_at_a_timer_clamped_to_it():
    # RTO 250 ms: resent at 350, 850 and 1850 ms; 2500 ms after the first retransmission
    # (retrans_stamp, 350 ms) the timer, clamped from the RTO's 2 s to what is left (1 s),
    # finds the user timeout passed: ETIMEDOUT at 2850 ms, no fourth retransmission
    layer, fd, _ = accepted(peer_window=65535, peer_mss=1460)
    layer.setsockopt(ms(50), fd, "TCP_USER_TIMEOUT", 2500)
    layer.send(ms(100), fd, bytes(1000))
    sent = run_timers(layer, ms(10_000))
    assert [t for t, s in sent] == [ms(350), ms(850), ms(1850)]
    sk = layer.sock(fd)
    assert (sk.error, sk.error_at, sk.state) == ("ETIMEDOUT", ms(2850), TcpState.CLOSED)


def test_tcp_user_timeout_ends_zero_window_probes_however_the_peer_answers():
    # probes at 300 and 800 ms (probe0 base 250 ms, doubling), each answered with a zero
    # window; the next probe timer is clamped to the user timeout's end, counted from the
    # first probe timer (icsk_probes_tstamp, 300 ms): the connection dies at 1300 ms
    layer, fd, iss = accepted(peer_window=65535, peer_mss=1460, ack_window=0)
    layer.setsockopt(ms(50), fd, "TCP_USER_TIMEOUT", 1000)
    assert layer.send(ms(50), fd, bytes(100)) == []
    sent = run_timers(layer, ms(10_000), on_probe=lambda now: peer_ack(layer, now, iss, 0, window=0))
    assert [(t, s.cause) for t, s in sent] == [(ms(300), "window-probe"), (ms(800), "window-probe")]
    sk = layer.sock(fd)
    assert (sk.error, sk.error_at) == ("ETIMEDOUT", ms(1300))


def test_without_a_user_timeout_answered_zero_window_probes_go_on():
    layer, fd, iss = accepted(peer_window=65535, peer_mss=1460, ack_window=0)
    layer.send(ms(50), fd, bytes(100))
    sent = run_timers(layer, ms(10_000), on_probe=lambda now: peer_ack(layer, now, iss, 0, window=0))
    assert len(sent) == 5 and layer.sock(fd).error is None
