"""The TOS, ID, DF and Ethernet addresses of every frame kind the oracle compares, as
Linux 6.1 sets them (see models/ipv4.py's docstring for the table and the kernel functions)."""

from __future__ import annotations

import random

import pytest

from models.board import Board, BootTiming
from models.clock import JIFFY, Window, ms, sec
from models.config import FirmwareConfig
from models.ipv4 import IpIdents, inet_id_follows, ip_idents_follows
from models.socket import SocketLayer
from models.tcp import TcpParams
from models.wire import (
    ACK,
    ARPOP_REPLY,
    ARPOP_REQUEST,
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    RST,
    SYN,
    ArpRepr,
    EthernetRepr,
    IcmpRepr,
    Ipv4Repr,
    TcpRepr,
    UdpRepr,
    ip4,
    mac_bytes,
)

INSTANT_BOOT = BootTiming(Window(0, 0), Window(0, 0))
BOARD_MAC = mac_bytes("52:54:00:12:34:56")
PEER_MAC = mac_bytes("52:55:0a:00:02:02")
OTHER_MAC = mac_bytes("02:00:00:00:00:99")
BOARD = ip4("10.0.2.15")
PEER = ip4("10.0.2.2")
EF_ECT1 = 0xB9    # DSCP EF (46) with ECN ECT(1)
PEER_PORT = 40000


def make_board(services=None, sysctls=None, seed: int = 1) -> Board:
    data = {"interface": {"address": "10.0.2.15/24", "gateway": "10.0.2.2", "mac": "52:54:00:12:34:56"},
            "services": services if services is not None else {"ssh": {"port": 22}, "http": {"port": 80}},
            "sysctls": sysctls or {}}
    board = Board(FirmwareConfig.from_dict(data), seed=seed, qemu=False, boot=INSTANT_BOOT, phy_phase=0)
    board.on_timer(0)   # eth0 up and the services listening
    return board


def eth(payload: bytes, ethertype: int = ETH_P_IP, src: bytes = PEER_MAC, dst: bytes = BOARD_MAC) -> bytes:
    return EthernetRepr(dst, src, ethertype).emit(payload)


def peer_arp_request(sha: bytes = PEER_MAC, eth_src: bytes = PEER_MAC) -> bytes:
    return eth(ArpRepr(ARPOP_REQUEST, sha, PEER, bytes(6), BOARD).emit(), ETH_P_ARP, src=eth_src, dst=BROADCAST)


def peer_ip(protocol: int, payload: bytes, tos: int = 0, ident: int = 7, src: int = PEER) -> bytes:
    return eth(Ipv4Repr(src, BOARD, protocol, len(payload), 64, ident, True, tos=tos).emit(payload))


def peer_tcp(dport: int, flags: int, tos: int = 0, seq: int = 1000, ack: int = 0, data: bytes = b"",
             sport: int = PEER_PORT) -> bytes:
    seg = TcpRepr(sport, dport, seq, ack, flags, 64240, ()).emit(data, PEER, BOARD)
    return peer_ip(IPPROTO_TCP, seg, tos)


def peer_echo(tos: int = 0, sequence: int = 1) -> bytes:
    return peer_ip(IPPROTO_ICMP, IcmpRepr(ICMP_ECHO, 0, 0x42, sequence, b"ping").emit(), tos)


def sent(board: Board, now: int, frame: bytes | None = None) -> list[bytes]:
    """What the board sends for `frame` arriving at `now` (or its timers due at `now`)."""
    out = board.handle(now, {"kind": "frame", "raw": frame}) if frame is not None else board.on_timer(now)
    return [p.frame for p in out if p.kind == "frame"]


def known_peer(**kw) -> Board:
    """A board that has answered the peer's ARP request (so it knows the peer's MAC)."""
    board = make_board(**kw)
    sent(board, ms(10), peer_arp_request())
    return board


def ip_of(frame: bytes) -> tuple[EthernetRepr, Ipv4Repr, bytes]:
    e, payload = EthernetRepr.parse(frame)
    ip, body = Ipv4Repr.parse(payload)
    return e, ip, body


def tcp_of(frame: bytes) -> TcpRepr:
    _, ip, body = ip_of(frame)
    return TcpRepr.parse(body, ip.src, ip.dst)[0]


def header(frame: bytes) -> tuple[int, bool, int]:
    """(TOS, DF, ID) of an IPv4 frame."""
    _, ip, _ = ip_of(frame)
    return ip.tos, ip.df, ip.ident


def handshake(board: Board, port: int = 22, tos: int = 0) -> TcpRepr:
    """The peer's SYN and third ACK; returns the board's SYN-ACK."""
    (synack,) = sent(board, ms(100), peer_tcp(port, SYN, tos))
    sa = tcp_of(synack)
    assert sent(board, ms(110), peer_tcp(port, ACK, tos, seq=1001, ack=sa.seq + 1)) == []
    return sa


# -- SYN-ACK: tcp_v4_send_synack -> ip_build_and_send_pkt ------------------------------------
def test_ssh_synack_carries_dropbears_tos_0x48_with_df_and_id_zero():
    (synack,) = sent(known_peer(), ms(100), peer_tcp(22, SYN))
    assert header(synack) == (0x48, True, 0)


def test_http_synack_carries_tos_zero_as_busybox_httpd_sets_none():
    (synack,) = sent(known_peer(), ms(100), peer_tcp(80, SYN))
    assert header(synack) == (0x00, True, 0)


def test_declared_ip_tos_of_a_service_is_what_its_synack_carries():
    board = known_peer(services={"ssh": {"port": 22, "ip_tos": 0x10}, "http": {"port": 80, "ip_tos": 0xB8}})
    (ssh,) = sent(board, ms(100), peer_tcp(22, SYN))
    (http,) = sent(board, ms(100), peer_tcp(80, SYN, sport=PEER_PORT + 1))
    assert (header(ssh)[0], header(http)[0]) == (0x10, 0xB8)


def test_synack_ignores_the_syns_tos_by_default():
    (synack,) = sent(known_peer(), ms(100), peer_tcp(22, SYN, EF_ECT1))
    assert header(synack)[0] == 0x48


def test_with_tcp_reflect_tos_the_synack_carries_the_syns_dscp_without_its_ecn_bits():
    (synack,) = sent(known_peer(sysctls={"net.ipv4.tcp_reflect_tos": 1}), ms(100), peer_tcp(22, SYN, EF_ECT1))
    assert header(synack) == (0xB8, True, 0)


def test_retransmitted_synack_keeps_the_listeners_tos_df_and_id_zero():
    board = known_peer()
    sent(board, ms(100), peer_tcp(22, SYN))
    (again,) = sent(board, ms(100) + sec(1))
    assert tcp_of(again).flags == SYN | ACK and header(again) == (0x48, True, 0)


def test_synack_keeps_df_even_with_ip_no_pmtu_disc():
    # ip_build_and_send_pkt: a packet of at most IPV4_MIN_MTU bytes always gets DF and ID 0
    (synack,) = sent(known_peer(sysctls={"net.ipv4.ip_no_pmtu_disc": 1}), ms(100), peer_tcp(22, SYN))
    assert header(synack) == (0x48, True, 0)


# -- RST: tcp_v4_send_reset -> ip_send_unicast_reply on the control socket ----------------------
def test_rst_to_a_closed_port_reflects_the_segments_tos_less_ecn_with_df_and_id_zero():
    (rst,) = sent(known_peer(), ms(100), peer_tcp(23, SYN, EF_ECT1))
    assert tcp_of(rst).flags == RST | ACK and header(rst) == (0xB8, True, 0)


def test_rst_for_an_ack_to_a_listener_reflects_the_segments_tos_not_the_listeners():
    (rst,) = sent(known_peer(), ms(100), peer_tcp(22, ACK, 0x20, ack=5))
    assert tcp_of(rst).flags == RST and header(rst) == (0x20, True, 0)


def test_rst_keeps_df_with_ip_no_pmtu_disc_the_control_socket_is_pmtudisc_do():
    (rst,) = sent(known_peer(sysctls={"net.ipv4.ip_no_pmtu_disc": 1}), ms(100), peer_tcp(23, SYN))
    assert header(rst) == (0, True, 0)


# -- a connected socket: ip_queue_xmit, inet->tos, inet_id ------------------------------------
def test_accepted_socket_inherits_the_listeners_tos_and_counts_its_ids_up_from_a_random_start():
    board = known_peer()
    sa = handshake(board)
    acks = []
    for i in range(3):   # each data segment is ACKed (the first at once: quick ACK mode)
        t = ms(200 + 100 * i)
        acks += sent(board, t, peer_tcp(22, ACK | 0x08, seq=1001 + 4 * i, ack=sa.seq + 1, data=b"data"))
        acks += sent(board, t + ms(40)) + sent(board, t + ms(41))
    assert len(acks) >= 2
    tos_df = {header(a)[:2] for a in acks}
    ids = [header(a)[2] for a in acks]
    assert tos_df == {(0x48, True)}
    assert all(inet_id_follows(a, b) for a, b in zip(ids, ids[1:], strict=False)), ids


def test_accepted_sockets_start_at_different_random_ids():
    starts = set()
    for seed in range(4):
        board = known_peer(seed=seed)
        sa = handshake(board)
        (ack,) = sent(board, ms(200), peer_tcp(22, ACK | 0x08, seq=1001, ack=sa.seq + 1, data=b"data"))
        starts.add(header(ack)[2])
    assert len(starts) == 4   # get_random_u16() per child (tcp_v4_syn_recv_sock)


def test_with_tcp_reflect_tos_the_accepted_socket_takes_the_syns_dscp():
    board = known_peer(sysctls={"net.ipv4.tcp_reflect_tos": 1})
    sa = handshake(board, tos=EF_ECT1)
    (ack,) = sent(board, ms(200), peer_tcp(22, ACK | 0x08, seq=1001, ack=sa.seq + 1, data=b"data"))
    assert header(ack)[:2] == (0xB8, True)


def test_the_boards_syn_and_its_retransmissions_have_tos_zero_df_and_consecutive_ids():
    board = known_peer()
    out = board.handle(ms(100), {"kind": "connect", "fd": "c", "addr": "10.0.2.2", "port": 8080})
    syns = [p.frame for p in out if p.kind == "frame"]
    for t in (sec(1), sec(3)):
        syns += sent(board, ms(100) + t)
    assert [tcp_of(s).flags for s in syns] == [SYN, SYN, SYN]
    assert {header(s)[:2] for s in syns} == {(0, True)}
    ids = [header(s)[2] for s in syns]
    assert inet_id_follows(ids[0], ids[1]) and inet_id_follows(ids[1], ids[2])


def test_ip_no_pmtu_disc_clears_df_on_a_sockets_own_segments_but_keeps_its_ids():
    board = known_peer(sysctls={"net.ipv4.ip_no_pmtu_disc": 1})
    out = board.handle(ms(100), {"kind": "connect", "fd": "c", "addr": "10.0.2.2", "port": 8080})
    (syn,) = [p.frame for p in out if p.kind == "frame"]
    (again,) = sent(board, ms(100) + sec(1))
    assert (header(syn)[1], header(again)[1]) == (False, False)
    assert inet_id_follows(header(syn)[2], header(again)[2])


def test_ip_tos_on_a_socket_keeps_its_ecn_bits_and_reaches_its_segments():
    layer = SocketLayer(TcpParams(), random.Random(1), (BOARD,), lambda dst: BOARD)
    fd = layer.socket()
    layer.setsockopt(0, fd, "IP_TOS", 0xBB)   # __ip_sock_set_tos: a TCP socket drops the ECN bits
    (syn,) = layer.connect(0, fd, PEER, 80)
    assert (syn.ip.tos, syn.ip.df, syn.ip.ident) == (0xB8, True, layer.sock(fd).inet_id - 1)


# -- ICMP: icmp_reply, __icmp_send on the ICMP control socket -----------------------------------
def test_echo_reply_carries_the_requests_whole_tos_byte_ecn_included_and_no_df():
    (reply,) = sent(known_peer(), ms(100), peer_echo(EF_ECT1))
    _, ip, body = ip_of(reply)
    assert IcmpRepr.parse(body).type == ICMP_ECHOREPLY and (ip.tos, ip.df) == (EF_ECT1, False)


def test_echo_reply_ids_follow_ip_idents_one_up_within_a_jiffy_more_after_a_gap():
    board = known_peer()
    times = [ms(100), ms(100) + 1000, ms(100) + 2000, sec(1), sec(1) + 1000, sec(5)]
    replies = [(t, header(r)[2]) for i, t in enumerate(times) for r in sent(board, t, peer_echo(sequence=i))]
    assert len(replies) == len(times)
    (_, a), (_, b), (_, c) = replies[:3]
    assert (b - a) & 0xFFFF == (c - b) & 0xFFFF == 1   # same jiffy: no random step
    assert all(ip_idents_follows(i0, t0, i1, t1) for (t0, i0), (t1, i1) in zip(replies, replies[1:], strict=False))


def test_port_unreachable_tos_is_the_requests_tos_bits_with_internetcontrol_precedence():
    udp = UdpRepr(5353, 9).emit(b"x", PEER, BOARD)
    (err,) = sent(known_peer(), ms(100), peer_ip(IPPROTO_UDP, udp, tos=0xB9))
    _, ip, _ = ip_of(err)
    # RT_TOS(0xB9) = 0xB9 & IPTOS_TOS_MASK (0x1E) = 0x18, | IPTOS_PREC_INTERNETCONTROL (0xC0)
    assert (ip.protocol, ip.tos, ip.df) == (IPPROTO_ICMP, 0xD8, False)


# -- Ethernet addresses -------------------------------------------------------------------------
def test_arp_request_goes_to_broadcast_from_the_boards_mac():
    board = make_board()
    out = board.handle(ms(100), {"kind": "connect", "fd": "c", "addr": "10.0.2.2", "port": 8080})
    (request,) = [p.frame for p in out if p.kind == "frame"]
    e, payload = EthernetRepr.parse(request)
    arp = ArpRepr.parse(payload)
    assert (e.dst, e.src, arp.op, arp.sha, arp.tha) == (BROADCAST, BOARD_MAC, ARPOP_REQUEST, BOARD_MAC, bytes(6))


def test_arp_reply_goes_to_the_requests_sender_hardware_address_not_the_frames_source():
    # arp_process -> arp_send_dst(ARPOP_REPLY, ..., dest_hw = sha, src_hw = dev_addr, target_hw = sha)
    (reply,) = sent(make_board(), ms(100), peer_arp_request(sha=PEER_MAC, eth_src=OTHER_MAC))
    e, payload = EthernetRepr.parse(reply)
    arp = ArpRepr.parse(payload)
    assert (e.dst, e.src, arp.op, arp.sha, arp.tha) == (PEER_MAC, BOARD_MAC, ARPOP_REPLY, BOARD_MAC, PEER_MAC)


@pytest.mark.parametrize("frame", [peer_tcp(23, SYN), peer_tcp(22, SYN), peer_echo()], ids=["rst", "synack", "echo"])
def test_ip_frames_go_to_the_neighbours_mac_from_the_boards(frame):
    (out,) = sent(known_peer(), ms(100), frame)
    e, _, _ = ip_of(out)
    assert (e.dst, e.src) == (PEER_MAC, BOARD_MAC)


def test_reply_to_an_off_link_address_goes_to_the_gateways_mac():
    far = ip4("192.0.2.7")
    seg = TcpRepr(PEER_PORT, 23, 1000, 0, SYN, 64240, ()).emit(b"", far, BOARD)
    (rst,) = sent(known_peer(), ms(100), peer_ip(IPPROTO_TCP, seg, src=far))
    e, ip, _ = ip_of(rst)
    assert (ip.dst, e.dst, e.src) == (far, PEER_MAC, BOARD_MAC)   # 10.0.2.2 is the gateway


# -- the laws the oracle checks random IDs with ------------------------------------------------
def test_inet_id_follows_counts_one_per_segment_and_wraps():
    assert inet_id_follows(0xFFFF, 0) and inet_id_follows(10, 13, segments=3)
    assert not inet_id_follows(10, 12) and not inet_id_follows(10, 10)


def test_ip_idents_follows_allows_no_step_within_a_jiffy_and_steps_below_the_jiffies_after():
    assert ip_idents_follows(100, 0, 101, JIFFY - 1) and not ip_idents_follows(100, 0, 102, JIFFY - 1)
    assert ip_idents_follows(100, 0, 106, 5 * JIFFY) and not ip_idents_follows(100, 0, 107, 5 * JIFFY)
    assert ip_idents_follows(100, 0, 100 + 3 + 4, 4 * JIFFY, packets=3)
    assert not ip_idents_follows(100, 0, 101, -1)
    assert ip_idents_follows(100, 0, 99, sec(700))   # 2^16 jiffies at HZ=100: anything


def test_ip_idents_generator_obeys_the_law_and_steps_at_random_after_a_gap():
    rng = random.Random(9)
    gen = IpIdents(rng)
    t, prev = 0, gen.reserve(0, PEER, BOARD, IPPROTO_ICMP)
    stepped = 0
    for _ in range(500):
        gap = rng.choice([0, 1000, JIFFY // 2, JIFFY, 7 * JIFFY, sec(3)])
        ident = gen.reserve(t + gap, PEER, BOARD, IPPROTO_ICMP)
        assert ip_idents_follows(prev, t, ident, t + gap), (prev, t, ident, gap)
        stepped += (ident - prev - 1) & 0xFFFF > 0
        t, prev = t + gap, ident
    assert stepped > 100


def test_ip_idents_buckets_are_per_destination_source_and_protocol():
    gen = IpIdents(random.Random(2))
    a = gen.reserve(0, PEER, BOARD, IPPROTO_ICMP)
    gen.reserve(0, ip4("10.0.2.3"), BOARD, IPPROTO_ICMP)
    gen.reserve(0, PEER, BOARD, IPPROTO_UDP)
    assert gen.reserve(0, PEER, BOARD, IPPROTO_ICMP) == (a + 1) & 0xFFFF
