"""Wire formats: byte-exact round trips of real Linux frames, checksums, typed parse errors."""

from __future__ import annotations

import pytest

from models.errors import WireError
from models.wire import (
    ACK,
    ARPOP_REPLY,
    ARPOP_REQUEST,
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    ICMP_ECHOREPLY,
    IPPROTO_TCP,
    RST,
    SYN,
    ArpRepr,
    EthernetRepr,
    IcmpRepr,
    Ipv4Repr,
    TcpRepr,
    UdpRepr,
    internet_checksum,
    ip4,
    linux_options,
    mac_bytes,
)
from models.wire.tcp import TCPOPT_EOL, TCPOPT_NOP, TCPOPT_SACK, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP


def split_tcp(frame: bytes):
    eth, packet = EthernetRepr.parse(frame)
    ip, segment = Ipv4Repr.parse(packet)
    tcp, payload = TcpRepr.parse(segment, ip.src, ip.dst)
    return eth, ip, tcp, payload


def rebuild_tcp(eth, ip, tcp, payload) -> bytes:
    return eth.emit(ip.emit(tcp.emit(payload, ip.src, ip.dst)), pad=False)


# -- checksum ------------------------------------------------------------------------
def test_checksum_of_rfc1071_example():
    # RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_of_all_ones_words_is_zero():
    assert internet_checksum(b"\xff\xff\xff\xff") == 0x0000


def test_checksum_pads_odd_length_with_zero():
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00")


# -- Ethernet ------------------------------------------------------------------------
def test_ethernet_parses_real_arp_reply_header(linux_frames):
    eth, payload = EthernetRepr.parse(linux_frames["linux_arp_reply"])
    assert eth.dst == mac_bytes("52:54:00:12:35:02")
    assert eth.src == mac_bytes("52:54:00:12:34:56")
    assert eth.ethertype == ETH_P_ARP and eth.vlan_tci is None
    assert len(payload) == 28


def test_ethernet_pads_short_frames_to_60_bytes_like_eth_skb_pad(linux_frames):
    frame = linux_frames["linux_arp_reply"]
    eth, payload = EthernetRepr.parse(frame)
    padded = eth.emit(payload)
    assert len(padded) == 60 and padded[:42] == frame and padded[42:] == bytes(18)


def test_ethernet_parses_8021q_tag():
    frame = BROADCAST + mac_bytes("52:54:00:12:35:02") + bytes.fromhex("8100a00a0806") + bytes(28)
    eth, payload = EthernetRepr.parse(frame)
    assert eth.vlan_tci == 0xA00A and eth.ethertype == ETH_P_ARP and len(payload) == 28
    assert eth.emit(payload, pad=False) == frame


def test_ethernet_shorter_than_header_is_too_small():
    with pytest.raises(WireError) as err:
        EthernetRepr.parse(bytes(13))
    assert err.value.reason == "SKB_DROP_REASON_PKT_TOO_SMALL"


# -- ARP -----------------------------------------------------------------------------
def test_arp_reply_round_trips(linux_frames):
    frame = linux_frames["linux_arp_reply"]
    eth, payload = EthernetRepr.parse(frame)
    arp = ArpRepr.parse(payload)
    assert (arp.op, arp.sip, arp.tip) == (ARPOP_REPLY, ip4("10.0.2.15"), ip4("10.0.2.2"))
    assert eth.emit(arp.emit(), pad=False) == frame


def test_arp_request_from_linux_is_broadcast_with_zero_target_mac(linux_frames):
    eth, payload = EthernetRepr.parse(linux_frames["linux_arp_request"])
    arp = ArpRepr.parse(payload)
    assert eth.dst == BROADCAST and arp.op == ARPOP_REQUEST and arp.tha == bytes(6)
    assert arp.tip == ip4("10.0.2.3")


def test_arp_with_wrong_address_length_is_rejected(linux_frames):
    _, payload = EthernetRepr.parse(linux_frames["linux_arp_reply"])
    bad = payload[:4] + b"\x08" + payload[5:]
    with pytest.raises(WireError):
        ArpRepr.parse(bad)


def test_arp_truncated_is_too_small():
    with pytest.raises(WireError) as err:
        ArpRepr.parse(bytes(27))
    assert err.value.reason == "SKB_DROP_REASON_PKT_TOO_SMALL"


def test_gratuitous_arp_is_recognised():
    arp = ArpRepr(ARPOP_REQUEST, bytes(6), ip4("10.0.2.2"), bytes(6), ip4("10.0.2.2"))
    assert arp.is_gratuitous


# -- IPv4 ----------------------------------------------------------------------------
def test_ipv4_header_of_real_syn_ack(linux_frames):
    _, ip, _, _ = split_tcp(linux_frames["linux_syn_ack"])
    assert (ip.ttl, ip.df, ip.ident, ip.protocol) == (64, True, 0, IPPROTO_TCP)


def test_ipv4_bad_checksum_is_dropped_as_ip_csum(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_syn_ack"])
    bad = packet[:10] + bytes([packet[10] ^ 0xFF]) + packet[11:]
    with pytest.raises(WireError) as err:
        Ipv4Repr.parse(bad)
    assert err.value.reason == "SKB_DROP_REASON_IP_CSUM"


def test_ipv4_version_6_is_dropped_as_inhdr(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_syn_ack"])
    with pytest.raises(WireError) as err:
        Ipv4Repr.parse(b"\x65" + packet[1:])
    assert err.value.reason == "SKB_DROP_REASON_IP_INHDR"


def test_ipv4_ihl_below_5_is_dropped_as_inhdr(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_syn_ack"])
    with pytest.raises(WireError) as err:
        Ipv4Repr.parse(b"\x44" + packet[1:])
    assert err.value.reason == "SKB_DROP_REASON_IP_INHDR"


def test_ipv4_total_length_beyond_frame_is_too_small(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_syn_ack"])
    with pytest.raises(WireError) as err:
        Ipv4Repr.parse(packet[:-1], verify_checksum=False)
    assert err.value.reason == "SKB_DROP_REASON_PKT_TOO_SMALL"


def test_ipv4_trims_ethernet_padding():
    ip = Ipv4Repr(ip4("10.0.2.15"), ip4("10.0.2.2"), IPPROTO_TCP, 20)
    packet = ip.emit(bytes(20)) + bytes(6)
    parsed, payload = Ipv4Repr.parse(packet)
    assert parsed == ip and len(payload) == 20


def test_ipv4_fragment_fields_round_trip():
    ip = Ipv4Repr(ip4("10.0.2.15"), ip4("10.0.2.2"), 17, 8, ident=0x1234, df=False, mf=True, frag_offset=1480)
    parsed, _ = Ipv4Repr.parse(ip.emit(bytes(8)))
    assert parsed == ip and parsed.is_fragment


# -- ICMP ----------------------------------------------------------------------------
def test_icmp_echo_reply_round_trips(linux_frames):
    frame = linux_frames["linux_echo_reply"]
    eth, packet = EthernetRepr.parse(frame)
    ip, payload = Ipv4Repr.parse(packet)
    icmp = IcmpRepr.parse(payload)
    assert (icmp.type, icmp.ident, icmp.sequence, len(icmp.data)) == (ICMP_ECHOREPLY, 0x1234, 1, 56)
    assert eth.emit(ip.emit(icmp.emit()), pad=False) == frame


def test_icmp_bad_checksum_is_icmp_csum(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_echo_reply"])
    _, payload = Ipv4Repr.parse(packet)
    with pytest.raises(WireError) as err:
        IcmpRepr.parse(payload[:-1] + b"\x00")
    assert err.value.reason == "SKB_DROP_REASON_ICMP_CSUM"


# -- TCP -----------------------------------------------------------------------------
def test_tcp_real_syn_ack_round_trips_byte_exact(linux_frames):
    frame = linux_frames["linux_syn_ack"]
    assert rebuild_tcp(*split_tcp(frame)) == frame


def test_tcp_real_syn_round_trips_byte_exact(linux_frames):
    frame = linux_frames["linux_syn"]
    assert rebuild_tcp(*split_tcp(frame)) == frame


def test_tcp_real_rst_round_trips_byte_exact(linux_frames):
    frame = linux_frames["linux_rst_ack"]
    assert rebuild_tcp(*split_tcp(frame)) == frame


def test_tcp_syn_ack_options_are_in_linux_order(linux_frames):
    _, _, tcp, _ = split_tcp(linux_frames["linux_syn_ack"])
    assert tcp.flags == SYN | ACK
    assert (tcp.mss, tcp.sack_permitted, tcp.wscale) == (1460, True, 10)
    assert tcp.timestamp[1] == 12345  # echoes the peer's TSval
    assert tcp.options == linux_options(mss=1460, ts=tcp.timestamp, sack_perm=True, wscale=10)


def test_linux_options_without_timestamps_pad_sack_perm_with_two_nops():
    raw = TcpRepr(1, 2, 0, 0, SYN, 0, linux_options(mss=1460, sack_perm=True, wscale=7)).options_bytes()
    assert raw == bytes.fromhex("020405b4" "01010402" "01030307")


def test_linux_options_sack_blocks_follow_timestamps():
    opts = linux_options(ts=(1, 2), sack_blocks=((100, 200),))
    raw = TcpRepr(1, 2, 0, 0, ACK, 0, opts).options_bytes()
    assert raw == bytes.fromhex("0101080a0000000100000002" "0101050a" "00000064000000c8")


def test_tcp_rst_to_closed_port_fields(linux_frames):
    _, ip, tcp, _ = split_tcp(linux_frames["linux_rst_ack"])
    assert tcp.flags == RST | ACK and tcp.seq == 0 and tcp.ack == 5001 and tcp.window == 0
    assert ip.ident == 0 and ip.df


def test_tcp_bad_checksum_is_tcp_csum(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_syn_ack"])
    ip, segment = Ipv4Repr.parse(packet)
    with pytest.raises(WireError) as err:
        TcpRepr.parse(segment[:-1] + bytes([segment[-1] ^ 1]), ip.src, ip.dst)
    assert err.value.reason == "SKB_DROP_REASON_TCP_CSUM"


def test_tcp_doff_below_5_is_too_small(linux_frames):
    _, packet = EthernetRepr.parse(linux_frames["linux_syn_ack"])
    ip, segment = Ipv4Repr.parse(packet)
    with pytest.raises(WireError) as err:
        TcpRepr.parse(segment[:12] + b"\x40" + segment[13:], ip.src, ip.dst, verify_checksum=False)
    assert err.value.reason == "SKB_DROP_REASON_PKT_TOO_SMALL"


def test_tcp_eol_and_trailing_padding_round_trip():
    opts = ((TCPOPT_NOP, None), (TCPOPT_SACK_PERM, None), (TCPOPT_EOL, b"\0\0\0\0"))
    tcp = TcpRepr(1000, 80, 1, 0, SYN, 512, opts)
    seg = tcp.emit(b"", 1, 2)
    parsed, _ = TcpRepr.parse(seg, 1, 2)
    assert parsed == tcp and parsed.sack_permitted


def test_tcp_partial_option_is_kept_verbatim_like_linux_stops_parsing():
    raw = bytes.fromhex("0101080a00000001")  # a timestamp option cut short
    seg = TcpRepr(1, 2, 0, 0, ACK, 0).emit(b"", 1, 2)
    seg = seg[:12] + bytes([7 << 4]) + seg[13:20] + raw
    seg = seg[:16] + b"\0\0" + seg[18:]
    from models.wire._header import pseudo_header_sum
    check = internet_checksum(seg, pseudo_header_sum(1, 2, IPPROTO_TCP, len(seg)))
    seg = seg[:16] + check.to_bytes(2, "big") + seg[18:]
    parsed, _ = TcpRepr.parse(seg, 1, 2)
    assert parsed.timestamp is None
    assert parsed.emit(b"", 1, 2) == seg


def test_tcp_sack_blocks_parse():
    tcp = TcpRepr(1, 2, 0, 0, ACK, 0, linux_options(sack_blocks=((10, 20), (30, 40))))
    parsed, _ = TcpRepr.parse(tcp.emit(b"", 1, 2), 1, 2)
    assert parsed.sack_blocks == ((10, 20), (30, 40))
    assert parsed._opt(TCPOPT_SACK) is not None and parsed._opt(TCPOPT_TIMESTAMP) is None


# -- UDP -----------------------------------------------------------------------------
def test_udp_round_trip_and_checksum():
    src, dst = ip4("10.0.2.15"), ip4("10.0.2.2")
    seg = UdpRepr(68, 67).emit(b"hello", src, dst)
    parsed, payload = UdpRepr.parse(seg, src, dst)
    assert parsed == UdpRepr(68, 67) and payload == b"hello"


def test_udp_bad_checksum_is_udp_csum():
    src, dst = ip4("10.0.2.15"), ip4("10.0.2.2")
    seg = UdpRepr(68, 67).emit(b"hello", src, dst)
    with pytest.raises(WireError) as err:
        UdpRepr.parse(seg[:-1] + b"X", src, dst)
    assert err.value.reason == "SKB_DROP_REASON_UDP_CSUM"


def test_udp_zero_checksum_is_not_verified():
    src, dst = ip4("10.0.2.15"), ip4("10.0.2.2")
    seg = UdpRepr(68, 67).emit(b"hello", src, dst)
    parsed, _ = UdpRepr.parse(seg[:6] + b"\0\0" + seg[8:-1] + b"X", src, dst)
    assert parsed.dst_port == 67


def test_ethertype_of_ipv4_frames(linux_frames):
    eth, _ = EthernetRepr.parse(linux_frames["linux_syn"])
    assert eth.ethertype == ETH_P_IP
