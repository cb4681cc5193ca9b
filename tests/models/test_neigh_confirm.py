"""Neighbour confirmation from TCP (sk_dst_confirm -> sock_confirm_neigh -> neigh_confirm)
and the arp_queue released into a STALE entry (__neigh_update -> neigh_resolve_output)."""

from __future__ import annotations

import random

from models.board import BootTiming, run_back_to_back
from models.clock import Window, ms, sec
from models.config import FirmwareConfig
from models.neighbour import NeighParams, NeighTable, Nud
from models.tcp import TcpParams, TcpSock
from models.wire import ARPOP_REPLY, ARPOP_REQUEST, BROADCAST, ETH_P_ARP, ArpRepr, EthernetRepr, ip4, mac_bytes
from models.wire.tcp import ACK, SYN, TcpRepr

MAC = mac_bytes("52:54:00:12:34:56")
PEER_MAC = mac_bytes("52:54:00:12:35:02")
BOARD = ip4("10.0.2.15")
PEER = ip4("10.0.2.2")
FAST_BOOT = BootTiming(Window(ms(500), ms(500)), Window(0, 0))
CLIENT = FirmwareConfig.from_dict({"hostname": "client",
                                   "interface": {"address": "10.0.2.2/24", "mac": "52:54:00:12:35:02"}})
SERVER = FirmwareConfig.default()
CONNECT = {"t": sec(2), "kind": "connect", "fd": "c", "addr": "10.0.2.15", "port": 22}


def table() -> NeighTable:
    return NeighTable(NeighParams(), MAC, BOARD, random.Random(7))


def arp_in(op: int, dst: bytes = MAC) -> tuple[EthernetRepr, bytes]:
    return EthernetRepr(dst, PEER_MAC, ETH_P_ARP), ArpRepr(op, PEER_MAC, PEER, MAC if op == ARPOP_REPLY else bytes(6),
                                                     BOARD).emit()


def unicast_probes(out) -> list[int]:
    return [e.t for e in out if e.kind == "frame" and e.detail.get("proto") == "arp" and e.detail["op"] == 1
            and e.detail["dst"] != "ff:ff:ff:ff:ff:ff"]


# -- the arp_queue released into a STALE entry -----------------------------------------------
def test_queue_released_by_a_broadcast_reply_makes_the_stale_entry_delay():
    """arp_process: a reply that is not PACKET_HOST updates to NUD_STALE; __neigh_update
    then sends the arp_queue through n->output = neigh_resolve_output (neigh_suspect), whose
    neigh_event_send -> __neigh_event_send turns STALE into DELAY, delay_first_probe_time."""
    t = table()
    t.neigh_resolve_output(0, PEER, b"p" * 50)
    (tx,) = t.arp_rcv(ms(3), *arp_in(ARPOP_REPLY, dst=BROADCAST))
    n = t.entries[PEER]
    assert tx.cause == "arp-queue-release"
    assert n.state is Nud.DELAY and n.timer == ms(3) + sec(5) and n.used == ms(3)


def test_queue_released_by_a_request_from_the_peer_makes_the_entry_delay_then_probe():
    """A request for us while INCOMPLETE: neigh_event_ns -> neigh_update(NUD_STALE), the
    queued packet makes it DELAY; nothing confirms it, so neigh_timer_handler makes it PROBE
    5 s later and the first unicast probe goes to the learnt address."""
    t = table()
    t.neigh_resolve_output(0, PEER, b"p" * 50)
    out = t.arp_rcv(ms(3), *arp_in(ARPOP_REQUEST, dst=BROADCAST))
    assert [tx.cause for tx in out] == ["arp-queue-release", "arp-reply"]
    assert t.entries[PEER].state is Nud.DELAY
    (probe,) = t.on_timer(ms(3) + sec(5))
    assert t.entries[PEER].state is Nud.PROBE and probe.cause == "arp-probe-unicast"
    assert EthernetRepr.parse(probe.frame)[0].dst == PEER_MAC


def test_queue_released_by_a_unicast_reply_leaves_the_entry_reachable():
    """A reply to us (PACKET_HOST) updates to NUD_REACHABLE: n->output is
    neigh_connected_output (neigh_connect), which does not call neigh_event_send."""
    t = table()
    t.neigh_resolve_output(0, PEER, b"p" * 50)
    t.arp_rcv(ms(3), *arp_in(ARPOP_REPLY))
    n = t.entries[PEER]
    assert n.state is Nud.REACHABLE and n.confirmed == ms(3)


# -- neigh_confirm -------------------------------------------------------------------------
def test_a_confirmed_send_keeps_a_reachable_entry_alive_past_its_reachable_time():
    """ip_finish_output2 -> sock_confirm_neigh -> neigh_confirm: `confirmed` moves, so
    neigh_timer_handler finds the entry "still alive" and re-arms at confirmed + reachable."""
    t = table()
    t.neigh_resolve_output(0, PEER, b"p" * 50)
    t.arp_rcv(ms(3), *arp_in(ARPOP_REPLY))
    t.neigh_resolve_output(sec(20), PEER, b"q" * 50, confirm=True)
    assert t.on_timer(t.poll_at()) == []
    n = t.entries[PEER]
    assert n.state is Nud.REACHABLE and n.timer == sec(20) + t.reachable_time


def test_a_confirmation_within_delay_first_probe_time_makes_a_delay_entry_reachable():
    """neigh_timer_handler, NUD_DELAY: confirmed within DELAY_PROBE_TIME -> REACHABLE, no probe."""
    t = table()
    t.arp_rcv(0, *arp_in(ARPOP_REQUEST, dst=BROADCAST))       # STALE
    t.neigh_resolve_output(sec(1), PEER, b"p" * 50)          # DELAY
    t.neigh_resolve_output(sec(2), PEER, b"q" * 50, confirm=True)
    assert t.on_timer(sec(6)) == []
    assert t.entries[PEER].state is Nud.REACHABLE


def test_a_confirmation_does_not_stop_a_probe_entry_from_probing():
    """neigh_timer_handler, NUD_PROBE: only the probe count is looked at; neigh_confirm
    changes nothing until an ARP reply (neigh_update) comes."""
    t = table()
    t.arp_rcv(0, *arp_in(ARPOP_REQUEST, dst=BROADCAST))
    t.neigh_resolve_output(sec(1), PEER, b"p" * 50)
    t.on_timer(sec(6))                                       # PROBE, first probe
    t.neigh_resolve_output(sec(6) + ms(100), PEER, b"q" * 50, confirm=True)
    (probe,) = t.on_timer(sec(7))
    assert probe.cause == "arp-probe-unicast" and t.entries[PEER].state is Nud.PROBE


# -- TCP: which events call sk_dst_confirm ---------------------------------------------------
def established() -> TcpSock:
    sk = TcpSock(TcpParams(), random.Random(3))
    (syn,) = sk.connect(0, (BOARD, 40000), (PEER, 80))
    assert not syn.confirm_neigh
    synack = TcpRepr(80, 40000, 1000, (sk.iss + 1) % (1 << 32), SYN | ACK, 65535, ())
    (ack,) = sk.rcv(ms(1), synack, b"")
    assert ack.confirm_neigh   # tcp_ack acked the SYN, tcp_init_transfer: the handshake ACK confirms
    return sk


def ack_from_peer(sk: TcpSock, ack: int, window: int = 65535) -> TcpRepr:
    return TcpRepr(80, 40000, 1001, ack % (1 << 32), ACK, window, ())


def test_the_handshake_ack_carries_the_confirmation_and_clears_it():
    sk = established()
    (data,) = sk.send(ms(2), b"x" * 10)
    assert not data.confirm_neigh and not sk.dst_pending_confirm


def test_an_ack_of_new_data_confirms_on_the_next_segment_sent_not_at_once():
    """tcp_ack: FLAG_FORWARD_PROGRESS -> sk_dst_confirm() only sets sk_dst_pending_confirm;
    __tcp_transmit_skb puts it on the next segment, which confirms the neighbour."""
    sk = established()
    sk.send(ms(2), b"x" * 10)
    assert sk.rcv(ms(3), ack_from_peer(sk, sk.snd_nxt), b"") == []
    assert sk.dst_pending_confirm
    (data,) = sk.send(ms(4), b"y" * 10)
    assert data.confirm_neigh and not sk.dst_pending_confirm


def test_a_pure_duplicate_ack_with_data_out_confirms():
    """tcp_ack: !(flag & FLAG_NOT_DUP) with packets out: the peer hears us."""
    sk = established()
    sk.send(ms(2), b"x" * 10)
    sk.rcv(ms(3), ack_from_peer(sk, sk.snd_nxt), b"")   # snd_wl1 moves to the peer's seq
    sk.send(ms(4), b"y" * 10)                          # takes that confirmation
    sk.rcv(ms(5), ack_from_peer(sk, sk.snd_una), b"")   # same seq, ack and window
    assert sk.dst_pending_confirm


def test_an_ack_with_nothing_out_or_a_window_update_only_does_not_confirm():
    """The no_queue path (prior_packets 0), and an ACK that only opens the window
    (FLAG_WIN_UPDATE, nothing acked), do not call sk_dst_confirm."""
    sk = established()
    sk.rcv(ms(3), ack_from_peer(sk, sk.snd_nxt), b"")
    assert not sk.dst_pending_confirm
    sk.send(ms(4), b"x" * 10)
    sk.rcv(ms(5), ack_from_peer(sk, sk.snd_una, window=65535 + 1000), b"")
    assert not sk.dst_pending_confirm


def test_a_connection_making_progress_keeps_its_neighbour_reachable_without_probes():
    """A client that writes every 2 s for 70 s, acknowledged each time: each ACK's forward
    progress confirms the neighbour on the next write (tcp_ack -> sk_dst_confirm ->
    sock_confirm_neigh), so the entry never leaves REACHABLE and no unicast probe is sent,
    well past reachable_time + delay_first_probe_time."""
    sends = [{"t": sec(3) + sec(2) * i, "kind": "send", "fd": "c", "data": "x"} for i in range(35)]
    a, _, out_a, _ = run_back_to_back(CLIENT, SERVER, [CONNECT, *sends], [], until=sec(75), delay=ms(1),
                                      boot=FAST_BOOT)
    assert unicast_probes(out_a) == []
    assert [new for _, _, new in a.neigh.entries[ip4("10.0.2.15")].transitions] == [Nud.INCOMPLETE, Nud.REACHABLE]
