"""ARP neighbour table: NUD states, probes, arp_rcv, the pending queue, reachable-time windows."""

from __future__ import annotations

import random

import pytest

from models.clock import ms, sec
from models.neighbour import NeighParams, NeighTable, Nud
from models.wire import ARPOP_REPLY, ARPOP_REQUEST, BROADCAST, ArpRepr, EthernetRepr, ip4, mac_bytes

MAC = mac_bytes("52:54:00:12:34:56")
PEER_MAC = mac_bytes("52:54:00:12:35:02")
BOARD = ip4("10.0.2.15")
PEER = ip4("10.0.2.2")


def table(**kw) -> NeighTable:
    return NeighTable(NeighParams(**kw), MAC, BOARD, random.Random(7))


def reply_frame(dst=MAC, op=ARPOP_REPLY, sip=PEER, tip=BOARD):
    eth = EthernetRepr(dst, PEER_MAC, 0x0806)
    return eth, ArpRepr(op, PEER_MAC, sip, MAC if op == ARPOP_REPLY else bytes(6), tip).emit()


def test_unresolved_next_hop_broadcasts_a_request_at_once():
    (tx,) = table().neigh_resolve_output(0, PEER, b"pkt")
    eth, payload = EthernetRepr.parse(tx.frame)
    arp = ArpRepr.parse(payload)
    assert eth.dst == BROADCAST and (arp.op, arp.sip, arp.tip, arp.tha) == (ARPOP_REQUEST, BOARD, PEER, bytes(6))


def test_request_repeats_every_retrans_time_then_fails_after_mcast_solicit():
    t = table()
    times = [0] if t.neigh_resolve_output(0, PEER, b"pkt") else []
    now = 0
    while t.poll_at() is not None:
        now = t.poll_at()
        if t.on_timer(now):
            times.append(now)
    assert times == [0, sec(1), sec(2)] and now == sec(3)
    assert t.entries[PEER].state is Nud.FAILED
    assert t.drops[-1][1] == "SKB_DROP_REASON_NEIGH_FAILED"


def test_mcast_solicit_sysctl_changes_the_request_count():
    t = table(mcast_probes=5)
    t.neigh_resolve_output(0, PEER, b"pkt")
    count = 1
    while t.poll_at() is not None:
        count += len(t.on_timer(t.poll_at()))
    assert count == 5


def test_reply_releases_the_queued_packets_in_order():
    t = table()
    one, two = b"1" * 50, b"2" * 50   # longer than the Ethernet minimum: no padding
    t.neigh_resolve_output(0, PEER, one)
    assert t.neigh_resolve_output(ms(1), PEER, two) == []
    out = t.arp_rcv(ms(2), *reply_frame())
    assert [EthernetRepr.parse(f.frame)[1] for f in out] == [one, two]
    assert t.entries[PEER].state is Nud.REACHABLE


def test_request_for_us_is_answered_and_creates_a_stale_entry(linux_frames):
    t = table()
    eth, payload = EthernetRepr.parse(linux_frames["peer_arp_request"])
    (tx,) = t.arp_rcv(0, eth, payload)
    assert tx.frame[:42] == linux_frames["linux_arp_reply"]
    assert t.entries[PEER].state is Nud.STALE


def test_request_for_another_address_is_not_answered():
    t = table()
    assert t.arp_rcv(0, *reply_frame(BROADCAST, ARPOP_REQUEST, tip=ip4("10.0.2.99"))) == []


def test_unsolicited_reply_does_not_create_an_entry():
    t = table()
    t.arp_rcv(0, *reply_frame())
    assert PEER not in t.entries


def test_gratuitous_arp_updates_an_existing_entry_but_creates_none():
    t = table()
    t.arp_rcv(0, *reply_frame(BROADCAST, ARPOP_REQUEST, sip=ip4("10.0.2.3"), tip=ip4("10.0.2.3")))
    assert ip4("10.0.2.3") not in t.entries


def test_broadcast_reply_only_makes_the_entry_stale():
    """arp_process: a reply that is not PACKET_HOST does not assert reachability (the
    queued packet's send then makes the STALE entry DELAY: test_neigh_confirm.py)."""
    t = table()
    t.neigh_resolve_output(0, PEER, b"pkt")
    t.arp_rcv(ms(1), *reply_frame(dst=BROADCAST))
    assert (ms(1), Nud.INCOMPLETE, Nud.STALE) in t.entries[PEER].transitions
    assert t.entries[PEER].state is not Nud.REACHABLE


def test_reachable_time_is_the_latest_linux_may_draw():
    """neigh_rand_reach_time(): base/2 + a draw below base; the model takes its top, and
    every time that depends on it carries the whole range as a window."""
    for base in (sec(30), sec(2)):
        t = table(base_reachable_time=base)
        assert t.reachable_time == base // 2 + base - 1
        assert t.reachable_window == (base - 1, 0)


def test_entry_stays_reachable_until_the_latest_reachable_time():
    """An entry the board may already have let go STALE stays REACHABLE in the model (no
    DELAY, no probe it would wait in vain to have answered) until 45 s after its
    confirmation."""
    t = reachable_table()
    (tx,) = t.neigh_resolve_output(sec(44), PEER, b"pkt")
    assert EthernetRepr.parse(tx.frame)[0].dst == PEER_MAC and t.entries[PEER].state is Nud.REACHABLE
    assert t.poll_at() == ms(1) + sec(45) - 1


def test_the_peers_answer_to_the_boards_own_probe_confirms_the_entry_again():
    """The board's entry expired earlier and it probed; the peer's unicast reply reaches the
    model as an input (arp_process -> neigh_update(NUD_REACHABLE)): confirmed now."""
    t = reachable_table()
    t.arp_rcv(sec(30), *reply_frame())
    assert t.entries[PEER].confirmed == sec(30) and t.entries[PEER].state is Nud.REACHABLE
    while t.poll_at() is not None and t.entries[PEER].state is Nud.REACHABLE:
        t.on_timer(t.poll_at())
    assert t.entries[PEER].transitions[-1][0] == sec(30) + sec(45) - 1 + ms(10)


def test_stale_entry_used_goes_delay_then_probes_unicast_after_5_s():
    t = table()
    t.arp_rcv(0, *reply_frame(BROADCAST, ARPOP_REQUEST))          # STALE
    (tx,) = t.neigh_resolve_output(sec(10), PEER, b"pkt")          # sent at once, DELAY
    assert EthernetRepr.parse(tx.frame)[0].dst == PEER_MAC and t.entries[PEER].state is Nud.DELAY
    (probe,) = t.on_timer(t.poll_at())
    assert t.entries[PEER].transitions[-1][0] == sec(15) and t.entries[PEER].state is Nud.PROBE
    assert EthernetRepr.parse(probe.frame)[0].dst == PEER_MAC and probe.cause == "arp-probe-unicast"


def test_unanswered_unicast_probes_fail_after_ucast_solicit():
    t = table()
    t.arp_rcv(0, *reply_frame(BROADCAST, ARPOP_REQUEST))
    t.neigh_resolve_output(sec(10), PEER, b"pkt")
    probes = []
    while t.poll_at() is not None:
        now = t.poll_at()
        probes += [now for _ in t.on_timer(now)]
    assert probes == [sec(15), sec(16), sec(17)] and t.entries[PEER].state is Nud.FAILED


def test_reachable_entry_goes_stale_at_its_reachable_time_when_only_used_while_reachable():
    """neigh_output() sends a NUD_CONNECTED entry's packets through the hh cache, which
    leaves `used` alone; so when the reachable time runs out, neigh_timer_handler finds it
    unused for longer than delay_first_probe_time: STALE, no timer, no probe."""
    t = table()
    t.neigh_resolve_output(0, PEER, b"pkt")
    t.arp_rcv(ms(1), *reply_frame())
    expiry = ms(1) + t.reachable_time
    (tx,) = t.neigh_resolve_output(expiry - sec(1), PEER, b"more")   # sent at once, REACHABLE
    assert EthernetRepr.parse(tx.frame)[0].dst == PEER_MAC
    out = []
    while t.poll_at() is not None:
        out += t.on_timer(t.poll_at())
    assert out == [] and t.entries[PEER].state is Nud.STALE
    # at exactly confirmed + reachable_time the entry is "still alive" (time_before_eq);
    # the timer comes back HZ/100 later, and then it is suspected
    assert t.entries[PEER].transitions[-1][0] == expiry + ms(10)


def test_probe_after_reachable_timeout_carries_the_reachable_window():
    """With a reachable time shorter than delay_first_probe_time, the entry was last used
    (resolved) recently enough: REACHABLE -> DELAY, and the probe's time inherits the
    random reachable time's range (neigh_rand_reach_time: base/2 .. 3*base/2)."""
    t = table(base_reachable_time=sec(2))
    t.neigh_resolve_output(0, PEER, b"pkt")
    t.arp_rcv(ms(1), *reply_frame())
    out, now = [], 0
    while not out and t.poll_at() is not None:
        now = t.poll_at()
        out = t.on_timer(now)
    (probe,) = out
    assert t.entries[PEER].state is Nud.PROBE and now == ms(1) + t.reachable_time + ms(10) + sec(5)
    assert probe.window.latest - probe.window.earliest == sec(2) - 1
    assert probe.window.earliest <= now <= probe.window.latest


def test_a_new_entry_counts_as_confirmed_twice_base_reachable_time_ago():
    """___neigh_create(); a DELAY entry whose peer never confirmed it goes PROBE even when it
    was created less than delay_first_probe_time after the model's time 0."""
    t = table()
    t.arp_rcv(ms(100), *reply_frame(BROADCAST, ARPOP_REQUEST))      # STALE at 0.1 s
    assert t.entries[PEER].confirmed == ms(100) - sec(60)
    t.neigh_resolve_output(ms(200), PEER, b"pkt")                    # DELAY
    t.on_timer(t.poll_at())
    assert t.entries[PEER].state is Nud.PROBE


# -- carrier down: arp_netdev_event(NETDEV_CHANGE) -> neigh_carrier_down -> neigh_flush_dev --

def reachable_table() -> NeighTable:
    t = table()
    t.neigh_resolve_output(0, PEER, b"pkt")
    t.arp_rcv(ms(1), *reply_frame())
    return t


def delay_table() -> NeighTable:
    t = table()
    t.arp_rcv(0, *reply_frame(BROADCAST, ARPOP_REQUEST))
    t.neigh_resolve_output(sec(10), PEER, b"pkt")
    return t


def probe_table() -> NeighTable:
    t = delay_table()
    t.on_timer(t.poll_at())
    return t


def failed_table() -> NeighTable:
    t = table()
    t.neigh_resolve_output(0, PEER, b"pkt")
    while t.poll_at() is not None:
        t.on_timer(t.poll_at())
    return t


def stale_table() -> NeighTable:
    t = table()
    t.arp_rcv(0, *reply_frame(BROADCAST, ARPOP_REQUEST))
    return t


def incomplete_table() -> NeighTable:
    t = table()
    t.neigh_resolve_output(0, PEER, b"pkt")
    return t


@pytest.mark.parametrize("make, state", [
    (reachable_table, Nud.REACHABLE), (stale_table, Nud.STALE), (delay_table, Nud.DELAY),
    (probe_table, Nud.PROBE), (incomplete_table, Nud.INCOMPLETE), (failed_table, Nud.FAILED)])
def test_carrier_down_flushes_the_entry_whatever_its_state(make, state):
    t = make()
    assert t.entries[PEER].state is state
    t.neigh_carrier_down(sec(20))
    assert PEER not in t.entries and t.poll_at() is None


def test_carrier_down_purges_the_arp_queue_of_an_incomplete_entry():
    t = incomplete_table()
    t.neigh_resolve_output(ms(1), PEER, b"more")
    t.neigh_carrier_down(ms(2))
    assert [d[1] for d in t.drops] == ["SKB_DROP_REASON_NOT_SPECIFIED"] * 2


def test_after_carrier_down_a_reachable_peer_is_resolved_again_by_broadcast():
    t = reachable_table()
    t.neigh_carrier_down(sec(2))
    (tx,) = t.neigh_resolve_output(sec(3), PEER, b"pkt")
    eth, payload = EthernetRepr.parse(tx.frame)
    assert (eth.dst, ArpRepr.parse(payload).op, tx.cause) == (BROADCAST, ARPOP_REQUEST, "arp-request")
    assert t.entries[PEER].state is Nud.INCOMPLETE


def test_after_carrier_down_the_packet_waits_for_the_reply():
    t = reachable_table()
    t.neigh_carrier_down(sec(2))
    t.neigh_resolve_output(sec(3), PEER, b"p" * 50)
    (released,) = t.arp_rcv(sec(3) + ms(1), *reply_frame())
    assert EthernetRepr.parse(released.frame)[1] == b"p" * 50 and released.cause == "arp-queue-release"


def test_arp_evict_nocarrier_off_keeps_the_entry():
    t = NeighTable(NeighParams(evict_nocarrier=False), MAC, BOARD, random.Random(7))
    t.neigh_resolve_output(0, PEER, b"pkt")
    t.arp_rcv(ms(1), *reply_frame())
    t.neigh_carrier_down(sec(2))
    assert t.entries[PEER].state is Nud.REACHABLE


def test_a_base_reachable_time_of_0_makes_a_resolved_entry_stale_at_once_without_a_window():
    # neigh_rand_reach_time(0) is 0 exactly: no draw, so the DELAY timer has no reachable-time
    # slack (the model used to build an empty window and fail)
    t = table(base_reachable_time=0)
    t.neigh_resolve_output(0, PEER, b"1" * 50)
    t.arp_rcv(ms(2), *reply_frame())
    assert t.reachable_window == (0, 0)
    t.neigh_resolve_output(ms(3), PEER, b"2" * 50)      # used: REACHABLE past its 0 s -> DELAY
    seen = []
    while t.poll_at() is not None and t.poll_at() < sec(10):
        seen += t.on_timer(t.poll_at())
    assert Nud.DELAY in [s for _, _, s in t.entries[PEER].transitions]
