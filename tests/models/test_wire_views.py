"""The checked views and Repr-free emitters of the per-frame path give exactly what the
Reprs give: the same fields and bytes, and the same WireError (reason and detail) for the
same malformed input, on real Linux frames and on random or damaged bytes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ModelUsageError, WireError
from models.inputs import FrameArrived, frame_raw, parse_input
from models.wire import EthernetRepr, IcmpRepr, Ipv4Repr, internet_checksum
from models.wire.ethernet import ETH_ZLEN, ETHERNET_HEADER, eth_type_trans, ethernet_frame
from models.wire.icmp import ICMP_ECHOREPLY, icmp_checked_type, icmp_echo_reply
from models.wire.ipv4 import IP_DF, IP_MF, IPV4_HEADER, ipv4_header, ipv4_rcv_core


def outcome(fn, *args):
    """What a parse gives, or the WireError it raises, as a comparable value."""
    try:
        return fn(*args)
    except WireError as err:
        return ("WireError", err.reason, err.detail)


def damaged(frame: bytes, rng: random.Random) -> bytes:
    """`frame` cut short, or with a few bytes changed."""
    if rng.random() < 0.3:
        return frame[:rng.randrange(len(frame) + 1)]
    out = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


# -- Ethernet ---------------------------------------------------------------------------
def ethernet_by_repr(frame: bytes):
    eth, payload = EthernetRepr.parse(frame)
    return eth.ethertype, payload


def test_eth_type_trans_matches_ethernet_repr_on_real_frames(linux_frames):
    for frame in linux_frames.values():
        assert eth_type_trans(frame) == ethernet_by_repr(frame)


def test_eth_type_trans_steps_over_an_8021q_tag_like_the_repr():
    tagged = EthernetRepr(b"\x01" * 6, b"\x02" * 6, 0x0800, vlan_tci=5).emit(b"\x45" + bytes(45))
    assert eth_type_trans(tagged) == ethernet_by_repr(tagged) == (0x0800, b"\x45" + bytes(45))
    assert outcome(eth_type_trans, tagged[:16]) == outcome(ethernet_by_repr, tagged[:16])


@given(st.binary(max_size=80))
def test_eth_type_trans_matches_ethernet_repr_on_random_bytes(frame):
    assert outcome(eth_type_trans, frame) == outcome(ethernet_by_repr, frame)


def plain_ethernet_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes, pad: bool) -> bytes:
    """The header packed from its table, the payload, zeros up to ETH_ZLEN."""
    frame = ETHERNET_HEADER.pack(dst, src, ethertype) + payload
    return frame + bytes(max(0, ETH_ZLEN - len(frame))) if pad else frame


@given(st.binary(min_size=6, max_size=6), st.binary(min_size=6, max_size=6), st.integers(0, 0xFFFF),
       st.binary(max_size=80), st.booleans())
def test_ethernet_frame_matches_the_plain_frame_and_the_repr_emit(dst, src, ethertype, payload, pad):
    frame = ethernet_frame(dst, src, ethertype, payload, pad)
    assert frame == plain_ethernet_frame(dst, src, ethertype, payload, pad)
    assert frame == EthernetRepr(dst, src, ethertype).emit(payload, pad)


# -- IPv4 -------------------------------------------------------------------------------
def ipv4_by_view(packet: bytes):
    fields, hlen = ipv4_rcv_core(packet)
    return Ipv4Repr.from_fields(fields, hlen, packet), bytes(packet[hlen:fields[2]])


def test_ipv4_rcv_core_matches_the_repr_on_real_and_damaged_packets(linux_frames):
    rng = random.Random(6)
    packets = [frame[14:] for frame in linux_frames.values() if frame[12:14] == b"\x08\x00"]
    for packet in packets:
        assert ipv4_by_view(packet) == Ipv4Repr.parse(packet)
        for _ in range(300):
            bad = damaged(packet, rng)
            assert outcome(ipv4_by_view, bad) == outcome(Ipv4Repr.parse, bad)


@given(st.binary(max_size=64))
def test_ipv4_rcv_core_matches_the_repr_on_random_bytes(packet):
    assert outcome(ipv4_by_view, packet) == outcome(Ipv4Repr.parse, packet)


@settings(max_examples=500)
@given(st.integers(5, 15), st.binary(min_size=60, max_size=60), st.integers(0, 0xFFFF), st.booleans())
def test_ipv4_rcv_core_refuses_exactly_the_headers_whose_checksum_is_not_zero(ihl, rest, check, fix):
    # fix: put the right checksum in, so that valid headers are drawn as often as bad ones
    head = bytearray(bytes([0x40 | ihl]) + rest[:4 * ihl - 1])
    head[2:4] = (4 * ihl).to_bytes(2, "big")
    head[10:12] = b"\0\0" if fix else check.to_bytes(2, "big")
    if fix:
        head[10:12] = internet_checksum(bytes(head)).to_bytes(2, "big")
    result = outcome(ipv4_rcv_core, bytes(head))
    assert (result == ("WireError", "SKB_DROP_REASON_IP_CSUM", "ipv4 header checksum")) \
        == (internet_checksum(bytes(head)) != 0)


def plain_ipv4_header(src, dst, protocol, tot_len, ttl, ident, frag_off, tos, options) -> bytes:
    """The header packed with a zero checksum, then internet_checksum() of it put in."""
    head = IPV4_HEADER.pack(0x40 | (20 + len(options)) // 4, tos, tot_len, ident, frag_off, ttl, protocol, 0,
                            src, dst) + options
    return head[:10] + internet_checksum(head).to_bytes(2, "big") + head[12:]


@settings(max_examples=500)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 255), st.binary(max_size=64),
       st.integers(0, 255), st.integers(0, 0xFFFF), st.booleans(), st.booleans(), st.integers(0, 0x1FFF),
       st.integers(0, 255), st.integers(0, 10), st.sampled_from([b"\0", b"\xff", b"\x5a"]))
def test_ipv4_header_matches_the_plain_header_and_the_repr_emit(src, dst, protocol, payload, ttl, ident, df, mf,
                                                                 offset, tos, words, fill):
    options = fill * (4 * words)
    ip = Ipv4Repr(src, dst, protocol, len(payload), ttl, ident, df, mf, offset * 8, tos, options)
    frag = (IP_DF if df else 0) | (IP_MF if mf else 0) | offset
    header = ipv4_header(src, dst, protocol, ip.buffer_len, ttl, ident, frag, tos, options)
    assert header == plain_ipv4_header(src, dst, protocol, ip.buffer_len, ttl, ident, frag, tos, options)
    assert header + payload == ip.emit(payload)


def test_ipv4_header_whose_words_sum_to_a_multiple_of_0xffff_has_checksum_0():
    # one's-complement -0: the sum of non-zero words is 0xffff, never 0, so the checksum is 0
    src = 0xFFFF - ((0x4500 + 20 + 0x4001) % 0xFFFF)
    header = ipv4_header(src, 0, 1, 20, 64, 0, 0, 0)
    assert header[10:12] == b"\0\0" == plain_ipv4_header(src, 0, 1, 20, 64, 0, 0, 0, b"")[10:12]


# -- ICMP -------------------------------------------------------------------------------
def test_icmp_echo_reply_to_the_real_request_is_the_repr_reply(linux_frames):
    request = Ipv4Repr.parse(linux_frames["peer_echo_request"][14:])[1]
    icmp = IcmpRepr.parse(request)
    assert icmp_echo_reply(request) == IcmpRepr(ICMP_ECHOREPLY, 0, icmp.ident, icmp.sequence, icmp.data).emit()


@settings(max_examples=300)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.one_of(st.binary(max_size=70), st.binary(max_size=9).map(lambda b: bytes(len(b)))))
def test_icmp_echo_reply_matches_the_repr_reply(code, ident, sequence, data):
    # odd lengths and all-zero messages too: the checksum's padding and its "negative zero"
    request = IcmpRepr(8, code, ident, sequence, data).emit()
    icmp = IcmpRepr.parse(request)
    assert icmp_echo_reply(request) == IcmpRepr(ICMP_ECHOREPLY, 0, icmp.ident, icmp.sequence, icmp.data).emit()


@given(st.binary(max_size=40))
def test_icmp_checked_type_matches_the_repr_on_random_bytes(payload):
    assert outcome(icmp_checked_type, payload) == outcome(lambda p: IcmpRepr.parse(p).type, payload)


# -- inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize("event", [
    {"kind": "frame", "hex": "ffffffffffff"},
    {"kind": "frame", "raw": b"\x01\x02"},
    {"kind": "frame", "raw": bytearray(b"\x01\x02"), "hex": "zz"},
])
def test_frame_raw_is_what_parse_input_puts_in_frame_arrived(event):
    assert parse_input(event) == FrameArrived(frame_raw(event))


@pytest.mark.parametrize("event", [{"kind": "frame"}, {"kind": "frame", "hex": "zz"}, {"kind": "frame", "raw": 5.0}])
def test_frame_raw_refuses_what_parse_input_refuses(event):
    with pytest.raises(ModelUsageError) as plain:
        parse_input(event)
    with pytest.raises(ModelUsageError) as fast:
        frame_raw(event)
    assert str(fast.value) == str(plain.value)


# -- checksum ---------------------------------------------------------------------------
def rfc1071_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1, word by word: sum, fold the carries, complement."""
    if len(data) & 1:
        data += b"\0"
    total = initial + sum(data[i] << 8 | data[i + 1] for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=70), st.binary(max_size=9).map(lambda b: bytes(len(b))),
                 st.binary(max_size=9).map(lambda b: b"\xff" * len(b))),
       st.sampled_from([0, 0, 1, 0xFFFF, 0x1FFFE, 0x12345678]))
def test_internet_checksum_is_the_rfc1071_word_sum(data, initial):
    assert internet_checksum(data, initial) == rfc1071_checksum(data, initial)
