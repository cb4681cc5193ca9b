"""Kernel timer slack and its learning, and what a failed neighbour does to TCP.

The board model's timer-fired frames carry windows as late as Linux's timer wheel allows,
summed along a chain of timers; a frame the real board sent inside such a window moves
the model's timer there (Board.timer_hints). A neighbour that fails with a TCP segment in
its arp_queue sends the board an ICMP host unreachable (arp_error_report), which reverts
one RTO backoff (tcp_ld_RTO_revert) and, in SYN_SENT, ends the connect (EHOSTUNREACH)."""

from __future__ import annotations

import random

import pytest

from models.board import Board, BootTiming
from models.clock import JIFFY, Window, ms, sec, timer_wheel_slack
from models.config import FirmwareConfig
from models.errors import ModelUsageError
from models.neighbour import Nud
from models.tcp import TcpParams, TcpSock, TcpState, TimerKind
from models.tcp_h import TCP_CA_LOSS, TxSkb
from models.wire import ArpRepr, EthernetRepr, ip4, mac_bytes
from models.wire.arp import ARPOP_REPLY

FAST_BOOT = BootTiming(Window(0, 0), Window(0, 0))
PEER = "10.0.2.2"
PEER_MAC = mac_bytes("52:55:0a:00:02:02")
BOARD_MAC = mac_bytes("52:54:00:12:34:56")


def board(judging: bool = False, **sysctls) -> Board:
    cfg = FirmwareConfig.from_dict({
        "interface": {"address": "10.0.2.15/24", "gateway": PEER, "mac": "52:54:00:12:34:56"},
        "sysctls": sysctls})
    b = Board(cfg, boot=FAST_BOOT, phy_phase=ms(100), judging=judging)
    b.on_timer(0)            # eth0 up
    b.on_timer(ms(100))      # phylib: carrier on
    return b


def arp_reply() -> dict:
    arp = ArpRepr(ARPOP_REPLY, PEER_MAC, ip4(PEER), BOARD_MAC, ip4("10.0.2.15"))
    return {"kind": "frame", "raw": EthernetRepr(BOARD_MAC, PEER_MAC, 0x0806).emit(arp.emit())}


def run(b: Board, until: int, inputs=()) -> list:
    """Drive `b` to `until`: inputs (t, event) first at equal times, then its timers."""
    queue = sorted(inputs, key=lambda x: x[0])
    out = []
    while True:
        t_timer = b.poll_at()
        t_in = queue[0][0] if queue else None
        cands = [t for t in (t_in, t_timer) if t is not None]
        if not cands or min(cands) > until:
            return out
        now = min(cands)
        if t_in == now:
            out += b.handle(now, queue.pop(0)[1])
        else:
            out += b.on_timer(now)


def frames(out, *kinds) -> list:
    return [p for p in out if p.kind == "frame" and p.detail.get("proto", "") in kinds]


def syns(out) -> list:
    return [p for p in out if p.kind == "frame" and p.detail.get("flags") == "S"]


def arps(out) -> list:
    return [p for p in out if p.kind == "frame" and p.detail.get("proto") == "arp"]


def test_syn_retransmission_windows_add_the_timer_wheel_slack_of_each_timer_in_the_chain():
    b = board()
    out = b.handle(sec(1), {"kind": "connect", "fd": "c", "addr": PEER, "port": 9})
    out += b.handle(sec(1) + ms(1), arp_reply())
    out += run(b, sec(20))
    first, *rtx = syns(out)
    assert first.window is None                       # a reply to inputs: a point
    slack = 0
    for p, rto in zip(rtx, (sec(1), sec(2), sec(4), sec(8)), strict=True):
        slack += timer_wheel_slack(rto)
        assert p.window == Window(p.t, p.t + slack)
    assert [p.t - sec(1) for p in rtx] == [sec(1), sec(3), sec(7), sec(15)]


def test_a_frame_seen_inside_the_window_moves_the_timer_and_what_follows():
    b = board(judging=True)
    late = ms(60)                                     # the board's first retransmission ran 60 ms late
    out = b.handle(sec(1), {"kind": "connect", "fd": "c", "addr": PEER, "port": 9})
    out += b.handle(sec(1) + ms(1), arp_reply())
    sport = syns(out)[0].detail["sport"]
    b.timer_hints([(sec(2) + late, ("tcp", sport, ip4(PEER), 9))])
    out += run(b, sec(5))
    first, r1, r2 = syns(out)
    assert r1.t == sec(2) + late and r1.window == Window(sec(2), sec(2) + timer_wheel_slack(sec(1)))
    assert r2.t == sec(4) + late                      # the next RTO runs from when the board ran


def test_a_frame_seen_outside_the_window_teaches_nothing():
    b = board(judging=True)
    out = b.handle(sec(1), {"kind": "connect", "fd": "c", "addr": PEER, "port": 9})
    out += b.handle(sec(1) + ms(1), arp_reply())
    sport = syns(out)[0].detail["sport"]
    b.timer_hints([(sec(2) + timer_wheel_slack(sec(1)) + JIFFY, ("tcp", sport, ip4(PEER), 9))])
    out += run(b, sec(3))
    assert syns(out)[1].t == sec(2)


def test_only_a_judging_model_learns_timers_from_a_board():
    """The model-as-board plays Linux: nothing of a board may move its timers."""
    with pytest.raises(ModelUsageError, match="judging"):
        board().timer_hints([(sec(2), ("arp", ip4(PEER)))])


def test_a_neighbour_failing_under_a_syn_reverts_one_backoff_resends_and_ends_the_connect():
    # No ARP reply ever: probes at 0, 1, 2 s; the entry fails at 3 s with the SYN (0 s)
    # queued; its retransmission at 1 s was skipped (its copy still waited in the queue) but
    # backed off. The error report reverts the backoff (RTO 1 s, 3 s since the SYN was
    # last sent: already out), so the SYN is resent at once into a fresh resolution, and
    # the connect ends with EHOSTUNREACH.
    b = board(**{"net.ipv4.neigh.default.retrans_time_ms": 1000})
    t0 = sec(1)
    out = b.handle(t0, {"kind": "connect", "fd": "c", "addr": PEER, "port": 9})
    sk = next(iter(b.sockets.established.values()), None) or b.sockets.closed_socks[-1]
    out += run(b, t0 + ms(3500))
    assert [p.t - t0 for p in arps(out)] == [0, sec(1), sec(2), sec(3)]
    assert sk.spurious_rtx_hostqueues == 1 and sk.backoff == 1   # skipped at 1 s; reverted, resent at 3 s
    assert sk.state is TcpState.CLOSED and sk.error == "EHOSTUNREACH" and sk.error_at == t0 + sec(3)
    assert b.neigh.entries[ip4(PEER)].state is Nud.INCOMPLETE
    assert len(b.neigh.entries[ip4(PEER)].arp_queue) == 1     # the resent SYN, waiting
    # resolved later: the queued SYN still goes out, though its socket is gone
    out = b.handle(t0 + ms(3600), arp_reply())
    assert [p.detail["flags"] for p in frames(out, 6)] == ["S"]


def test_without_a_retransmission_there_is_no_backoff_to_revert_and_the_connect_just_ends():
    # retrans_time 300 ms: the entry fails at 0.9 s, before the first SYN retransmission
    b = board(**{"net.ipv4.neigh.default.retrans_time_ms": 300})
    t0 = sec(1)
    out = b.handle(t0, {"kind": "connect", "fd": "c", "addr": PEER, "port": 9})
    sk = next(iter(b.sockets.established.values()))
    out += run(b, t0 + sec(5))
    assert [p.t - t0 for p in arps(out)] == [0, ms(300), ms(600)]
    assert sk.state is TcpState.CLOSED and sk.error_at == t0 + ms(900)
    assert not syns(out)


def test_icmp_unreachable_on_an_established_socket_is_soft_and_reverts_the_backoff():
    sk = TcpSock(TcpParams(), random.Random(0))
    sk.state = TcpState.ESTABLISHED
    sk.snd_una, sk.snd_nxt = 1000, 1100
    sk.rtx_queue.append(TxSkb(1000, b"x" * 100, 0, sent_at=0, tx_at=sec(1)))
    sk.rtt.srtt_us, sk.rtt.rttvar_us = 8 * 10_000, 200_000     # srtt 10 ms, rttvar 200 ms: RTO 210 ms
    sk.backoff, sk.retransmits, sk.rto = 2, 2, ms(840)
    sk.timers[TimerKind.RETRANSMIT] = sec(1) + ms(840)
    out = sk.icmp_unreach(sec(1) + ms(100), 1000, 1)
    assert out == [] and sk.state is TcpState.ESTABLISHED and sk.soft_error == "EHOSTUNREACH"
    assert sk.backoff == 1 and sk.rto == ms(420)
    assert sk.timers[TimerKind.RETRANSMIT] == sec(1) + ms(420)   # what is left of the reverted RTO
    # an ICMP quoting a sequence number outside snd_una..snd_nxt is ignored
    sk.icmp_unreach(sec(1) + ms(200), 5000, 1)
    assert sk.backoff == 1


def test_frames_just_after_carrier_returns_are_optional():
    """The qdisc comes back when the linkwatch work runs, some ms after the Link is Up line:
    a frame the board sends within CARRIER_RACE_NS of it may be lost, so it is optional."""
    from models.ftgmac100 import CARRIER_RACE_NS
    from models.wire.arp import ARPOP_REQUEST

    b = board()
    b.handle(sec(1), {"kind": "link", "up": False})
    run(b, sec(2))                                    # phylib polls: carrier off
    b.handle(sec(3), {"kind": "link", "up": True})
    out = run(b, sec(3) + ms(100))                    # phylib's poll after 3 s: carrier on
    up = next(p.t for p in out if p.kind == "console" and "Link is Up" in p.detail["text"])
    request = ArpRepr(ARPOP_REQUEST, PEER_MAC, ip4(PEER), bytes(6), ip4("10.0.2.15"))
    raw = EthernetRepr(b"\xff" * 6, PEER_MAC, 0x0806).emit(request.emit())
    soon = b.handle(up + CARRIER_RACE_NS - ms(1), {"kind": "frame", "raw": raw})
    later = b.handle(up + CARRIER_RACE_NS, {"kind": "frame", "raw": raw})
    assert [p.detail.get("optional", False) for p in arps(soon)] == [True]
    assert [p.detail.get("optional", False) for p in arps(later)] == [False]


def test_a_late_linkwatch_run_leaves_the_old_entry_to_the_packet_sent_before_it():
    """Carrier loss is not urgent to linkwatch: the neighbour flush may come up to a second
    later. A packet sent before it uses the old (REACHABLE) entry and is lost with the
    carrier; only one sent after it starts a new resolution."""
    def after_carrier_loss(delay):
        b = Board(FirmwareConfig.from_dict({"interface": {"address": "10.0.2.15/24", "gateway": PEER,
                                                          "mac": "52:54:00:12:34:56"}}),
                  boot=FAST_BOOT, phy_phase=ms(100), linkwatch_delays={0: delay})
        b.on_timer(0)
        b.on_timer(ms(100))
        b.handle(ms(200), {"kind": "connect", "fd": "c", "addr": PEER, "port": 9})
        b.handle(ms(201), arp_reply())                 # REACHABLE; the SYN went out
        b.handle(ms(300), {"kind": "link", "up": False})
        run(b, sec(1) + ms(250))                       # carrier off at the poll at 1.1 s; SYN again at 1.2 s
        return b

    at_once, late = after_carrier_loss(0), after_carrier_loss(ms(300))
    assert at_once.resolutions == [ms(200), sec(1) + ms(200)]   # the 1 s retransmission resolves anew
    assert late.resolutions == [ms(200)] and ip4(PEER) in late.neigh.entries   # it found the old entry
    run(late, sec(1) + ms(450))
    assert ip4(PEER) not in late.neigh.entries         # flushed when linkwatch ran, 300 ms after the loss


def _established_with_data(data: bytes = b"x" * 23) -> tuple[TcpSock, list[bool]]:
    from models.wire import ACK, SYN, TcpRepr, linux_options

    sk = TcpSock(TcpParams(), random.Random(3))
    held = [False]
    sk.host_queued = lambda s, seq: held[0]
    sk.connect(0, (ip4("10.0.2.15"), 40000), (ip4(PEER), 7))
    # SACK permitted: a tail loss probe is scheduled (tcp_schedule_loss_probe: tcp_is_sack)
    sk.tcp_rcv_state_process(ms(10), TcpRepr(7, 40000, 1000, (sk.iss + 1) % (1 << 32), SYN | ACK, 65535,
                           linux_options(mss=1460, sack_perm=True)), b"")
    sk.send(ms(20), data)
    return sk, held


def _fire(sk: TcpSock) -> tuple[int, list]:
    t = sk.poll_at()
    return t, sk.on_timer(t)


def test_an_rto_whose_copy_waits_in_the_host_is_resent_when_tsq_calls_back():
    """tcp_retransmit_timer finds the head's last copy in an arp_queue
    (skb_still_in_host_queue: -EBUSY, TSQ_THROTTLED): nothing goes out, the RTO backs off.
    When that copy leaves (the neighbour resolved), tcp_wfree -> tcp_tsq_write sees the
    head lost and not resent (lost_out > retrans_out, cwnd 1 > 0 in flight), and
    tcp_xmit_retransmit_queue resends it at once, rearming the RTO from then with
    icsk_rto, as the emulated board did after a link flap (IP IDs in a row, 1 ms apart)."""
    sk, held = _established_with_data()
    _, tlp = _fire(sk)
    _, rto1 = _fire(sk)
    assert [s.cause for s in tlp + rto1] == ["loss-probe-retransmit", "retransmit"] and sk.tsq_throttled is None
    held[0] = True
    _, rto2 = _fire(sk)
    assert rto2 == [] and sk.spurious_rtx_hostqueues == 1 and sk.tsq_throttled is not None
    t_rto3 = sk.poll_at()
    held[0] = False
    release = t_rto3 - ms(300)
    (again,) = sk.tcp_tsq_write(release)
    assert again.payload == b"x" * 23 and sk.tsq_throttled is None and not sk.head_lost_unsent
    assert sk.poll_at() == release + sk.rto        # rearmed from now, not the backed-off timer
    assert sk.tcp_tsq_write(release + 1) == []         # once: the head is no longer lost and unsent


def test_a_tail_loss_probe_held_in_the_host_resends_nothing_when_tsq_calls_back():
    # The probe marks nothing lost (lost_out 0): tcp_tsq_write finds nothing to resend.
    sk, held = _established_with_data()
    held[0] = True
    _, tlp = _fire(sk)
    assert tlp == [] and sk.tsq_throttled is not None and not sk.head_lost_unsent
    held[0] = False
    assert sk.tcp_tsq_write(sk.poll_at() - 1) == [] and sk.tsq_throttled is None


def test_a_tail_loss_probe_with_several_segments_out_adds_2_ms_before_rounding():
    # tcp_schedule_loss_probe: usecs_to_jiffies(2 srtt + TCP_TIMEOUT_MIN_US) with more than
    # one packet out: the handshake's 10 ms RTT gives 22 ms, 3 jiffies (not 2 + 2 jiffies)
    sk, _ = _established_with_data()
    assert sk.poll_at() == ms(20) + ms(210)        # one segment out: 2 srtt + 200 ms, capped by the RTO
    sk2, _ = _established_with_data(b"y" * 2000)   # two segments out
    assert len(sk2.rtx_queue) == 2 and sk2.tlp.pending and sk2.poll_at() == ms(20) + ms(30)


def _synack_after(retries: int, echo_first: bool = False) -> TcpSock:
    """A connect whose SYN went out `retries` more times before the SYN-ACK (with TS)."""
    from models.wire import ACK, SYN, TcpRepr, linux_options

    sk = TcpSock(TcpParams(), random.Random(3))
    (syn,) = sk.connect(0, (ip4("10.0.2.15"), 40000), (ip4(PEER), 7))
    t = 0
    for _ in range(retries):
        t, out = _fire(sk)
        assert [s.tcp.flags for s in out] == [SYN]
    echo = syn.tcp.timestamp[0] if echo_first else out[0].tcp.timestamp[0] if retries else syn.tcp.timestamp[0]
    sk.tcp_rcv_state_process(t + ms(10), TcpRepr(7, 40000, 1000, (sk.iss + 1) % (1 << 32), SYN | ACK, 65535,
                               linux_options(mss=1460, ts=(5, echo), sack_perm=True, wscale=7)), b"")
    return sk


def test_cwnd_starts_at_1_after_more_than_one_syn_retransmission_unless_spurious():
    # tcp_init_transfer: "total_retrans > 1 && undo_marker" -> cwnd 1 (RFC 5681); seen on a
    # Linux host in two namespaces: cwnd 1 after SYNs lost while the link was down
    assert [_synack_after(n).cwnd for n in (0, 1, 2)] == [10, 10, 1]
    sk = _synack_after(2)
    assert len(sk.send(sec(8), b"z" * 5000)) == 1          # one segment until an ACK comes
    # tcp_try_undo_spurious_syn: the SYN-ACK echoes the first SYN: the timeouts were spurious
    assert _synack_after(2, echo_first=True).cwnd == 10


def test_an_accepted_connection_whose_synack_was_resent_twice_starts_with_cwnd_1():
    # tcp_create_openreq_child: total_retrans = num_retrans, undo_marker when it timed out;
    # an ACK echoing the first SYN-ACK's TSval undoes it (tcp_try_undo_spurious_syn)
    from models.socket import SocketLayer
    from models.wire import ACK, SYN, TcpRepr, linux_options

    def child(echo_first: bool):
        board = ip4("10.0.2.15")
        layer = SocketLayer(TcpParams(), random.Random(1), (board,), lambda d: board)
        fd = layer.socket()
        layer.bind(fd, 0, 80)
        layer.listen(fd, 9)
        opts = linux_options(mss=1460, ts=(100, 0), sack_perm=True, wscale=7)
        (first,) = layer.tcp_v4_rcv(0, ip4(PEER), board, TcpRepr(40000, 80, 1000, 0, SYN, 64240, opts), b"")
        resent = [s for t in (sec(1), sec(3)) for s in layer.on_timer(t)]
        assert len(resent) == 2
        echo = (first if echo_first else resent[-1]).tcp.timestamp[0]
        layer.tcp_v4_rcv(sec(3) + ms(5), ip4(PEER), board, TcpRepr(40000, 80, 1001, (first.tcp.seq + 1) % (1 << 32),
                         ACK, 502, linux_options(ts=(101, echo))), b"")
        return next(sk for sk in layer.established.values() if sk.passive)

    assert child(False).cwnd == 1 and child(True).cwnd == 10


def test_the_rtt_sample_is_the_oldest_acked_segments_and_none_if_a_resend_is_acked():
    # tcp_clean_rtx_queue: seq_rtt from first_ackt (the oldest segment acked that was sent
    # once); FLAG_RETRANS_DATA_ACKED voids it; then the TS echo's delta, at least 1 ms
    from models.wire import ACK, TcpRepr

    def acked(resend_first: bool) -> TcpSock:
        sk, _ = _established_with_data(b"")
        sk.nodelay = True
        sk.send(ms(100), b"a" * 10)
        sk.send(ms(150), b"b" * 10)
        if resend_first:
            sk.rtx_queue[0].retransmitted = True
        sk.tcp_rcv_state_process(ms(200), TcpRepr(7, 40000, 1001, sk.snd_nxt, ACK, 65535, ()), b"")
        return sk

    srtt0 = _established_with_data(b"")[0].rtt.srtt_us
    assert srtt0 == 10_000 << 3                       # the handshake's 10 ms
    # 7/8 of the old plus 1/8 of 100 ms (the first segment's), not of 50 ms
    assert acked(False).rtt.srtt_us == srtt0 - (srtt0 >> 3) + 100_000
    assert acked(True).rtt.srtt_us == srtt0               # no sample at all


def test_the_give_up_time_counts_from_the_first_rto_retransmission_not_the_probe():
    # tcp_retransmit_skb saves the stamp of the first (attempted) retransmit and
    # tcp_write_timeout counts tcp_model_timeout(tcp_retries2) from it; the tail loss probe
    # resends through __tcp_retransmit_skb (tcp_send_loss_probe), which stamps nothing
    from models.tcp_timer import tcp_model_timeout

    sk, _ = _established_with_data()
    sk.params = TcpParams(retries2=3)
    _, out = _fire(sk)
    assert [s.cause for s in out] == ["loss-probe-retransmit"] and sk.retrans_stamp is None
    t_rto, out = _fire(sk)
    assert [s.cause for s in out] == ["retransmit"] and sk.retrans_stamp == t_rto
    while sk.state is not TcpState.CLOSED:
        _fire(sk)
    died = sk.transitions[-1][0]
    assert sk.error == "ETIMEDOUT" and died >= t_rto + tcp_model_timeout(3, ms(200))


def test_an_rto_sets_cubics_ssthresh_once_per_loss_episode():
    # tcp_enter_loss -> cubictcp_recalc_ssthresh: max(cwnd * 717 / 1024, 2) from the cwnd
    # the loss found (10: 7), not half of what is in flight, and not again in CA_Loss
    sk, _ = _established_with_data(b"y" * 2000)
    assert sk.cwnd == 10
    while sk.ca_state != TCP_CA_LOSS:
        _fire(sk)                    # the tail loss probe, then the RTO
    assert (sk.ssthresh, sk.cwnd) == (7, 1)
    _fire(sk)                        # the next RTO, still in CA_Loss
    assert sk.ssthresh == 7


def test_a_probe_that_splits_off_the_tail_charges_the_new_skb_in_the_send_buffer():
    # tcp_send_loss_probe -> tcp_fragment: the resent last MSS becomes an skb of its own,
    # charged its truesize in sk_wmem_queued (the data is counted once)
    from models.tcp_h import TCP_SKB_TRUESIZE_EMPTY

    sk, _ = _established_with_data(b"z" * 2000)      # one skb: 1460 + 540 bytes
    assert len({s.skb_id for s in sk.rtx_queue}) == 1
    before = sk._wmem_queued()
    assert before == TCP_SKB_TRUESIZE_EMPTY + 2000
    _, out = _fire(sk)
    assert [s.cause for s in out] == ["loss-probe-retransmit"]
    assert sk._wmem_queued() == before + TCP_SKB_TRUESIZE_EMPTY
