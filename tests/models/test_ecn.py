"""ECN on a passive connection as Linux 6.1 grants it with tcp_ecn 2 (tcp_sk_init): a SYN
asking for it (ECE and CWR, from a not-ECT packet) gets ECE in the SYN-ACK
(tcp_ecn_create_request, tcp_ecn_make_synack); the child is TCP_ECN_OK
(tcp_ecn_openreq_child) and its new data carries ECT(0) while its ACKs and
retransmissions do not (tcp_ecn_send: INET_ECN_xmit / INET_ECN_dontxmit). A syncookie
keeps the grant in its timestamp only (cookie_init_timestamp's TS_OPT_ECN)."""

from __future__ import annotations

import random

from model_pair import A_ADDR, B_ADDR

from models.clock import ms
from models.socket import SocketLayer
from models.syncookies import TS_OPT_ECN, TSBITS
from models.tcp import TcpParams
from models.wire import ACK, SYN, TcpRepr, linux_options
from models.wire.tcp import CWR, ECE

OPTS = linux_options(mss=1460, ts=(777, 0), sack_perm=True, wscale=7)


def listener(backlog: int = 9, **params) -> SocketLayer:
    layer = SocketLayer(TcpParams(**params), random.Random(1), (B_ADDR,), lambda d: B_ADDR)
    fd = layer.socket()
    layer.bind(fd, 0, 80)
    layer.listen(fd, backlog)
    return layer


def syn(flags: int = SYN | ECE | CWR, dsfield: int = 0, sport: int = 40000, opts=OPTS) -> TcpRepr:
    seg = TcpRepr(sport, 80, 1000, 0, flags, 64240, opts)
    seg.ip_dsfield = dsfield
    return seg


def test_a_syn_asking_for_ecn_gets_ece_in_the_synack():
    (synack,) = listener().tcp_v4_rcv(0, A_ADDR, B_ADDR, syn(), b"")
    assert synack.tcp.flags == SYN | ACK | ECE
    assert synack.ip.tos & 3 == 0            # the SYN-ACK itself is not ECT


def test_no_ece_without_both_flags_or_from_an_ect_packet():
    for seg in (syn(SYN | ECE), syn(SYN | CWR), syn(dsfield=0x02), syn(dsfield=0x01), syn(SYN)):
        (synack,) = listener().tcp_v4_rcv(0, A_ADDR, B_ADDR, seg, b"")
        assert synack.tcp.flags == SYN | ACK, seg


def test_the_child_sends_new_data_ect0_and_acks_and_retransmissions_not():
    layer = listener()
    (synack,) = layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn(), b"")
    ack = TcpRepr(40000, 80, 1001, (synack.tcp.seq + 1) % 2**32, ACK, 502,
                  linux_options(ts=(778, synack.tcp.timestamp[0])))
    layer.tcp_v4_rcv(ms(10), A_ADDR, B_ADDR, ack, b"")
    lfd = next(iter(layer.listeners.values())).fd
    sk = layer.sock(layer.accept(lfd))
    assert sk.ecn_ok
    (data,) = sk.send(ms(20), b"x" * 10)
    assert data.ip.tos & 3 == 2               # ECT(0)
    peer_data = TcpRepr(40000, 80, 1001, data.tcp.seq, ACK, 502, linux_options(ts=(779, data.tcp.timestamp[0])))
    acks = sk.tcp_rcv_state_process(ms(30), peer_data, b"hello")
    assert acks and all(a.ip.tos & 3 == 0 for a in acks)   # an ACK: not ECT
    resent = []
    while not resent:
        t = sk.poll_at()
        resent = [s for s in sk.on_timer(t) if s.payload]
    assert resent[0].ip.tos & 3 == 0          # a retransmission: not ECT


def test_a_cookie_keeps_ecn_in_its_timestamp_and_only_there():
    layer = listener(0)
    layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn(), b"")                       # queued
    (cookie,) = layer.tcp_v4_rcv(ms(1), A_ADDR, B_ADDR, syn(sport=40001), b"")   # full: a cookie
    assert cookie.cause == "synack-cookie" and cookie.tcp.flags & ECE
    req = layer.listeners[80].listener.cookies[(A_ADDR, 40001)]
    assert (cookie.tcp.timestamp[0] - req.ts_offset) % 2**32 & ((1 << TSBITS) - 1) & TS_OPT_ECN
    # without timestamps a cookie has nowhere to keep it: no ECE
    layer = listener(0)
    layer.tcp_v4_rcv(0, A_ADDR, B_ADDR, syn(), b"")
    (plain,) = layer.tcp_v4_rcv(ms(1), A_ADDR, B_ADDR, syn(sport=40001, opts=linux_options(mss=1460)), b"")
    assert plain.cause == "synack-cookie" and not plain.tcp.flags & ECE
