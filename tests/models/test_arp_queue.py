"""The arp_queue's byte limit (net.ipv4.neigh.default.unres_qlen_bytes): __neigh_event_send
drops the oldest packets while the queued truesizes and the newest's exceed it, and always
queues the newest. The model knows a packet's skb->truesize only within bounds
(skb_truesize_bounds): judging a board, a packet only some truesizes keep is optional."""

from __future__ import annotations

import random

import pytest

from models.neighbour import (
    SKB_TRUESIZE_OVERHEAD,
    NeighParams,
    NeighTable,
    TruesizeUnknown,
    skb_truesize_bounds,
)
from models.wire import ARPOP_REPLY, ArpRepr, EthernetRepr, Ipv4Repr, ip4, mac_bytes

MAC = mac_bytes("52:54:00:12:34:56")
PEER_MAC = mac_bytes("52:55:0a:00:02:02")
BOARD = ip4("10.0.2.15")
PEER = ip4("10.0.2.2")
ECHO_REPLY = 84   # a 56-byte ping's reply: 20 + 8 + 56


def table(limit: int, judging: bool = True) -> NeighTable:
    t = NeighTable(NeighParams(queue_len_bytes=limit), MAC, BOARD, random.Random(1))
    t.judging = judging
    return t


def packet(tag: int, size: int = ECHO_REPLY, proto: int = 1) -> bytes:
    return Ipv4Repr(BOARD, PEER, proto, size - 20, ident=tag).emit(bytes(size - 20))


def resolve(t: NeighTable, now: int = 10):
    eth = EthernetRepr(MAC, PEER_MAC, 0x0806)
    return t.arp_rcv(now, eth, ArpRepr(ARPOP_REPLY, PEER_MAC, PEER, MAC, BOARD).emit())


def released(txs) -> list[tuple[int, bool]]:
    """(IPv4 ID, optional) of each IP frame released."""
    return [(int.from_bytes(tx.frame[18:20], "big"), tx.optional) for tx in txs if tx.frame[12:14] == b"\x08\x00"]


def test_truesize_bounds_rest_on_the_boards_skb_truesize_of_nothing():
    # SK_WMEM_MAX = 256 * SKB_TRUESIZE(256) is the board's unres_qlen_bytes default (180224)
    assert 256 * (SKB_TRUESIZE_OVERHEAD + 256) == 180224
    low, high = skb_truesize_bounds(packet(1))
    assert low == SKB_TRUESIZE_OVERHEAD + ECHO_REPLY and high >= 2 * low
    # a TCP segment's head is MAX_TCP_HEADER (>= 160) whatever its data: no more than that counts
    assert skb_truesize_bounds(packet(1, 1500, 6))[0] == SKB_TRUESIZE_OVERHEAD + 160


def test_two_replies_over_the_limit_even_at_their_least_truesize_leave_only_the_newest():
    t = table(1000)
    t.neigh_resolve_output(0, PEER, packet(1))
    t.neigh_resolve_output(5, PEER, packet(2))
    assert [d[1] for d in t.drops] == ["SKB_DROP_REASON_NEIGH_QUEUEFULL"]
    assert released(resolve(t)) == [(2, False)]


def test_two_replies_within_the_limit_at_their_most_truesize_both_go_when_resolved():
    t = table(180224)
    t.neigh_resolve_output(0, PEER, packet(1))
    t.neigh_resolve_output(5, PEER, packet(2))
    assert t.drops == [] and released(resolve(t)) == [(1, False), (2, False)]


def test_a_packet_only_some_truesizes_keep_is_released_as_optional():
    low, high = skb_truesize_bounds(packet(1))
    t = table(2 * low)   # both fit at their least, not at their most
    t.neigh_resolve_output(0, PEER, packet(1))
    t.neigh_resolve_output(5, PEER, packet(2))
    assert t.drops == [] and t.entries[PEER].queue_unsure == 1
    assert released(resolve(t)) == [(1, True), (2, False)]


def test_once_unsure_every_older_packet_stays_unsure():
    low, _ = skb_truesize_bounds(packet(1))
    t = table(3 * low)
    for i in range(3):
        t.neigh_resolve_output(i, PEER, packet(i + 1))
    assert released(resolve(t)) == [(1, True), (2, True), (3, False)]


def test_the_newest_is_queued_even_when_it_alone_is_over_the_limit():
    t = table(100)
    t.neigh_resolve_output(0, PEER, packet(1))
    t.neigh_resolve_output(5, PEER, packet(2))
    assert released(resolve(t)) == [(2, False)]


def test_the_board_playing_one_linux_keeps_packets_by_their_least_truesize():
    low, _ = skb_truesize_bounds(packet(1))
    t = table(2 * low, judging=False)
    t.neigh_resolve_output(0, PEER, packet(1))
    t.neigh_resolve_output(5, PEER, packet(2))
    assert released(resolve(t)) == [(1, False), (2, False)]


def two_segments_the_older_unsure() -> NeighTable:
    low, _ = skb_truesize_bounds(packet(1, 60, 6))
    t = table(2 * low)
    t.neigh_resolve_output(0, PEER, packet(1, 60, 6))
    t.neigh_resolve_output(5, PEER, packet(2, 60, 6))
    return t


def test_asking_whether_an_unsure_segment_still_waits_is_refused():
    t = two_segments_the_older_unsure()
    with pytest.raises(TruesizeUnknown):
        t.in_arp_queue(lambda p: p[4:6] == b"\x00\x01")
    assert t.in_arp_queue(lambda p: p[4:6] == b"\x00\x02")


def test_a_failure_with_an_unsure_segment_queued_is_refused():
    t = two_segments_the_older_unsure()
    with pytest.raises(TruesizeUnknown):
        while t.poll_at() is not None:
            t.on_timer(t.poll_at())
