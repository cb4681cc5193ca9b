"""IPv4 layer: FIB lookups, the header ip_queue_xmit builds, fragmentation, ip_rcv drops, ICMP."""

from __future__ import annotations

import random

from models.config import FirmwareConfig
from models.ipv4 import Fib, FibEntry, Ipv4Layer
from models.wire import ICMP_ECHOREPLY, EthernetRepr, IcmpRepr, Ipv4Repr, UdpRepr, ip4
from models.wire.icmp import ICMP_DEST_UNREACH

BOARD = ip4("10.0.2.15")
PEER = ip4("10.0.2.2")


def layer(mtu: int = 1500) -> Ipv4Layer:
    return Ipv4Layer(BOARD, 24, Fib.from_config(FirmwareConfig.default()), mtu, 64, random.Random(3))


def test_fib_on_link_destination_is_its_own_next_hop():
    assert layer().fib.next_hop(ip4("10.0.2.3")) == ip4("10.0.2.3")


def test_fib_off_link_destination_goes_to_the_gateway():
    assert layer().fib.next_hop(ip4("192.0.2.1")) == ip4("10.0.2.2")


def test_fib_longest_prefix_wins_over_default():
    fib = Fib([FibEntry(0, 0, PEER), FibEntry(ip4("192.168.1.0"), 24, ip4("10.0.2.3")),
               FibEntry(ip4("10.0.2.0"), 24, None)])
    assert fib.next_hop(ip4("192.168.1.7")) == ip4("10.0.2.3")


def test_fib_lower_metric_wins_at_equal_prefix():
    fib = Fib([FibEntry(ip4("192.168.1.0"), 24, ip4("10.0.2.4"), 10), FibEntry(ip4("192.168.1.0"), 24, ip4("10.0.2.3"), 1)])
    assert fib.next_hop(ip4("192.168.1.7")) == ip4("10.0.2.3")


def test_no_route_is_dropped_as_outnoroutes():
    ip = Ipv4Layer(BOARD, 24, Fib([FibEntry(ip4("10.0.2.0"), 24, None)]))
    assert ip.ip_queue_xmit(0, ip4("192.0.2.1"), 6, b"x" * 20, 5) == []
    assert ip.drops[-1].reason == "SKB_DROP_REASON_IP_OUTNOROUTES"


def test_queue_xmit_header_has_ttl_64_df_and_the_socket_id():
    ((nh, packet),) = layer().ip_queue_xmit(0, PEER, 6, b"x" * 20, 0x1234)
    ip, _ = Ipv4Repr.parse(packet)
    assert (nh, ip.ttl, ip.df, ip.ident, ip.src) == (PEER, 64, True, 0x1234, BOARD)


def test_queue_xmit_without_socket_and_df_uses_id_zero():
    ((_, packet),) = layer().ip_queue_xmit(0, PEER, 6, b"x" * 20, None)
    assert Ipv4Repr.parse(packet)[0].ident == 0


def test_non_df_packet_above_mtu_is_fragmented_at_8_byte_boundaries():
    frags = layer(mtu=576).ip_queue_xmit(0, PEER, 17, bytes(1200), None, df=False)
    parsed = [Ipv4Repr.parse(p) for _, p in frags]
    assert [ip.frag_offset for ip, _ in parsed] == [0, 552, 1104]
    assert [ip.mf for ip, _ in parsed] == [True, True, False]
    assert b"".join(data for _, data in parsed) == bytes(1200)
    assert len({ip.ident for ip, _ in parsed}) == 1


def test_df_packet_above_mtu_is_not_sent():
    ip = layer(mtu=576)
    assert ip.ip_queue_xmit(0, PEER, 6, bytes(1200), 1) == []
    assert ip.drops[-1].reason == "SKB_DROP_REASON_PKT_TOO_BIG"


def test_ip_rcv_drops_bad_checksum(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["peer_syn"])
    ip = layer()
    ip.ip_rcv(0, packet[:10] + b"\0\0" + packet[12:])
    assert ip.drops[-1].reason == "SKB_DROP_REASON_IP_CSUM"


def test_ip_rcv_drops_packet_not_for_us():
    ip = layer()
    packet = Ipv4Repr(PEER, ip4("10.0.2.99"), 6, 0).emit(b"")
    assert ip.ip_rcv(0, packet) == ([], [])
    assert ip.drops[-1].reason == "SKB_DROP_REASON_IP_INADDRERRORS"


def test_ip_rcv_delivers_tcp_to_us(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["peer_syn"])
    delivered, _ = layer().ip_rcv(0, packet)
    assert delivered[0].tcp.dst_port == 22 and delivered[0].src == PEER


def test_echo_request_gets_linux_echo_reply_but_for_the_ip_id(linux_frames):
    _, request = EthernetRepr.parse(linux_frames["peer_echo_request"])
    _, real_reply = EthernetRepr.parse(linux_frames["linux_echo_reply"])
    _, ((nh, reply),) = layer().ip_rcv(0, request)
    model_ip, model_payload = Ipv4Repr.parse(reply)
    real_ip, real_payload = Ipv4Repr.parse(real_reply)
    assert nh == PEER and model_payload == real_payload
    assert model_ip.emit_header()[:4] == real_ip.emit_header()[:4]        # version, tos, length
    assert model_ip.emit_header()[6:10] == real_ip.emit_header()[6:10]    # flags (no DF), ttl, protocol
    assert IcmpRepr.parse(model_payload).type == ICMP_ECHOREPLY


def test_echo_to_broadcast_is_ignored():
    ip = layer()
    echo = IcmpRepr(8, 0, 1, 1, b"x").emit()
    packet = Ipv4Repr(PEER, ip4("10.0.2.255"), 1, len(echo), df=False).emit(echo)
    assert ip.ip_rcv(0, packet) == ([], [])


def test_udp_to_closed_port_gets_port_unreachable():
    ip = layer()
    seg = UdpRepr(5000, 161).emit(b"q", PEER, BOARD)
    packet = Ipv4Repr(PEER, BOARD, 17, len(seg)).emit(seg)
    _, ((_, reply),) = ip.ip_rcv(0, packet)
    _, payload = Ipv4Repr.parse(reply)
    icmp = IcmpRepr.parse(payload)
    assert (icmp.type, icmp.code) == (ICMP_DEST_UNREACH, 3) and icmp.data == packet
