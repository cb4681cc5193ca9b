"""Neighbour confirmation from TCP (sk_dst_confirm -> sock_confirm_neigh -> neigh_confirm)
and the arp_queue released into a STALE entry (__neigh_update -> neigh_resolve_output)."""

from __future__ import annotations

import random

from models.board import Board, BootTiming, run_back_to_back
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
    (ack,) = sk.tcp_rcv_state_process(ms(1), synack, b"")
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
    assert sk.tcp_rcv_state_process(ms(3), ack_from_peer(sk, sk.snd_nxt), b"") == []
    assert sk.dst_pending_confirm
    (data,) = sk.send(ms(4), b"y" * 10)
    assert data.confirm_neigh and not sk.dst_pending_confirm


def test_a_pure_duplicate_ack_with_data_out_confirms():
    """tcp_ack: !(flag & FLAG_NOT_DUP) with packets out: the peer hears us."""
    sk = established()
    sk.send(ms(2), b"x" * 10)
    sk.tcp_rcv_state_process(ms(3), ack_from_peer(sk, sk.snd_nxt), b"")   # snd_wl1 moves to the peer's seq
    sk.send(ms(4), b"y" * 10)                          # takes that confirmation
    sk.tcp_rcv_state_process(ms(5), ack_from_peer(sk, sk.snd_una), b"")   # same seq, ack and window
    assert sk.dst_pending_confirm


def test_an_ack_with_nothing_out_or_a_window_update_only_does_not_confirm():
    """The no_queue path (prior_packets 0), and an ACK that only opens the window
    (FLAG_WIN_UPDATE, nothing acked), do not call sk_dst_confirm."""
    sk = established()
    sk.tcp_rcv_state_process(ms(3), ack_from_peer(sk, sk.snd_nxt), b"")
    assert not sk.dst_pending_confirm
    sk.send(ms(4), b"x" * 10)
    sk.tcp_rcv_state_process(ms(5), ack_from_peer(sk, sk.snd_una, window=65535 + 1000), b"")
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


# -- the DELAY timer runs late: neigh_timer_handler's "confirmed within DELAY_PROBE_TIME" ------
def stale_then_delay(t: NeighTable, confirm_at: int | None = None) -> None:
    t.arp_rcv(0, *arp_in(ARPOP_REQUEST, dst=BROADCAST))       # STALE
    t.neigh_resolve_output(sec(1), PEER, b"p" * 50, confirm=confirm_at == sec(1))   # DELAY
    if confirm_at is not None and confirm_at != sec(1):
        t.neigh_resolve_output(confirm_at, PEER, b"q" * 50, confirm=True)


def test_a_confirmation_carried_by_the_packet_that_made_the_entry_delay_is_never_in_time():
    """ip_finish_output2 confirms (sock_confirm_neigh) before neigh_output makes the entry
    DELAY, so confirmed == the DELAY start; the timer wheel runs the DELAY timer at least a
    jiffy after it is due (calc_wheel_index rounds the expiry up), when "now <= confirmed +
    DELAY_PROBE_TIME" no longer holds: PROBE, and a unicast probe."""
    t = table()
    stale_then_delay(t, confirm_at=sec(1))
    (probe,) = t.on_timer(sec(6))
    assert t.entries[PEER].state is Nud.PROBE and probe.cause == "arp-probe-unicast"


def test_a_confirmation_within_the_timers_lateness_leaves_a_one_board_model_reachable():
    """A confirmation 20 ms into DELAY is in time if the timer runs within 20 ms of its
    due time: a model playing one board takes the earliest run (REACHABLE, nothing sent)."""
    t = table()
    stale_then_delay(t, confirm_at=sec(1) + ms(20))
    assert t.on_timer(sec(6)) == []
    assert t.entries[PEER].state is Nud.REACHABLE


def test_judging_a_confirmation_within_the_timers_lateness_predicts_optional_probes():
    """Judging a board, whose DELAY timer may have run later than that: the model stays
    REACHABLE and predicts the probes of the board that went PROBE as optional."""
    t = table()
    t.judging = True
    stale_then_delay(t, confirm_at=sec(1) + ms(20))
    (probe,) = t.on_timer(sec(6))
    assert probe.optional and EthernetRepr.parse(probe.frame)[0].dst == PEER_MAC
    assert t.entries[PEER].state is Nud.REACHABLE
    (second,) = t.on_timer(t.poll_at())
    assert second.optional and t.poll_at() == sec(6) + sec(2)


# -- judging: what only some boards do -------------------------------------------------------
def reachable_since(t: NeighTable, when: int) -> None:
    t.neigh_resolve_output(when - ms(3), PEER, b"p" * 50)
    t.arp_rcv(when, *arp_in(ARPOP_REPLY))


def test_judging_a_send_past_half_the_base_reachable_time_predicts_an_optional_probe():
    """neigh_rand_reach_time: reachable_time may be as short as base/2 (15 s); a board
    whose draw was short has the entry STALE at a send 16 s after the confirmation, makes
    it DELAY (__neigh_event_send) and probes 5 s later. The model (the latest draw) stays
    REACHABLE and predicts that probe as optional."""
    t = table()
    t.judging = True
    reachable_since(t, 0)
    assert t.neigh_resolve_output(sec(14), PEER, b"q" * 50)[0].cause == "ip"
    assert t.poll_at() == t.reachable_time - ms(0)   # no branch: every draw is still REACHABLE
    t.neigh_resolve_output(sec(16), PEER, b"q" * 50)
    (probe,) = t.on_timer(sec(21))
    assert probe.optional and probe.window.earliest == sec(21)
    assert t.entries[PEER].state is Nud.REACHABLE


def test_an_arp_reply_ends_a_branch_the_board_may_be_on():
    """The board's probe was answered (arp_process -> neigh_update(NUD_REACHABLE)): its
    branch went REACHABLE, so no more optional probes."""
    t = table()
    t.judging = True
    reachable_since(t, 0)
    t.neigh_resolve_output(sec(16), PEER, b"q" * 50)
    t.on_timer(sec(21))
    t.arp_rcv(sec(21) + ms(1), *arp_in(ARPOP_REPLY))
    assert t.entries[PEER].maybe_at is None


def test_a_model_playing_one_board_predicts_no_optional_probe():
    t = table()
    reachable_since(t, 0)
    t.neigh_resolve_output(sec(16), PEER, b"q" * 50)
    assert t.entries[PEER].maybe_at is None and t.on_timer(sec(21)) == []


def test_judging_an_unseen_application_confirmation_keeps_the_delay_entry_reachable():
    """An accepted connection's writes confirm the neighbour when they are acknowledged
    (tcp_ack -> sk_dst_confirm), unseen by the model: at the DELAY timer the board may be
    REACHABLE or PROBE. The model goes REACHABLE (a PROBE entry would fail on the probes
    the peer never got) and predicts the probes as optional."""
    t = table()
    t.judging = True
    t.unseen_confirms = lambda key: key == PEER
    stale_then_delay(t)
    (probe,) = t.on_timer(sec(6))
    assert probe.optional and t.entries[PEER].state is Nud.REACHABLE


def test_an_optional_probe_reaches_the_prediction_as_optional():
    """Board._xmit -> _wire: an optional TxFrame is an optional Predicted frame (no MISSING
    row if the board did not send it)."""
    board = Board(SERVER, judging=True)
    board.neigh.unseen_confirms = lambda key: True

    def run_until(t: int) -> list:
        out = []
        while (due := board.poll_at()) is not None and due <= t:
            out += board.on_timer(due)
        return out

    run_until(sec(10))
    board.handle(sec(10), {"kind": "frame", "raw": arp_frame(ARPOP_REQUEST, BROADCAST)})   # STALE
    board.neigh.neigh_resolve_output(sec(11), PEER, b"p" * 50)                             # DELAY
    (probe,) = [p for p in run_until(sec(16)) if p.kind == "frame"]
    assert probe.detail["optional"] and probe.detail["cause"] == "arp-probe-unicast-maybe"


def arp_frame(op: int, dst: bytes) -> bytes:
    eth, payload = arp_in(op, dst)
    return eth.emit(payload)


def test_judging_a_confirmation_carried_by_the_late_send_itself_does_not_close_the_branch():
    """The send that finds the board's entry STALE may carry its socket's confirmation:
    sock_confirm_neigh moves `confirmed` but the entry stays STALE, neigh_event_send makes
    it DELAY, and that confirmation is not after the DELAY began: the probe stays possible."""
    t = table()
    t.judging = True
    reachable_since(t, 0)
    t.neigh_resolve_output(sec(16), PEER, b"q" * 50, confirm=True)
    (probe,) = t.on_timer(sec(21))
    assert probe.optional
