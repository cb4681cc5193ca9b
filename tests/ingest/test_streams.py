"""Frames -> observed events: stream keys (flow + direction + kind), field columns."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare import PredictedEvents, compare
from harness.ingest import pcapwrite as w
from harness.ingest.events import Clock, EventKind, EventTable
from harness.ingest.pcap import ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_TCP, read_pcap
from harness.ingest.streams import (
    FIELD,
    FLOW_ARP,
    FLOW_TCP,
    FROM_BOARD,
    STREAM_FIELDS,
    TO_BOARD,
    concat_observed,
    field_mask,
    frame_events,
    nonframe_events,
    split_stream_key,
    stream_key,
)
from harness.ingest.timeline import ClockOffset, Timeline
from models.config import FirmwareConfig
from tests.ingest.frames import with_tos

BOARD = FirmwareConfig.default()
BMAC, BIP = w.mac("52:54:00:12:34:56"), w.ip("10.0.2.15")
PMAC, PIP = w.mac("52:55:0a:00:02:02"), w.ip("10.0.2.2")
OTHER_MAC = w.mac("02:00:00:00:00:99")
ISN_PEER, ISN_BOARD = 1_000, 4_294_967_000  # the board's wraps past 2^32


def seg(src_board: bool, flags: int, seq: int, ack: int, options: bytes = b"", payload: bytes = b"", sport=40000):
    seq, ack = seq % 2**32, ack % 2**32
    if src_board:
        return w.ether(PMAC, BMAC, ETHERTYPE_IPV4, w.ipv4(BIP, PIP, IPPROTO_TCP,
                                                          w.tcp(22, sport, seq, ack, flags, 64240, options, payload)))
    return w.ether(BMAC, PMAC, ETHERTYPE_IPV4, w.ipv4(PIP, BIP, IPPROTO_TCP,
                                                      w.tcp(sport, 22, seq, ack, flags, 65535, options, payload)))


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    frames = [
        w.ether(0xFFFFFFFFFFFF, PMAC, ETHERTYPE_ARP, w.arp(1, PMAC, PIP, 0, BIP)),
        w.ether(PMAC, BMAC, ETHERTYPE_ARP, w.arp(2, BMAC, BIP, PMAC, PIP)),
        seg(False, 0x002, ISN_PEER, 0, w.opt_mss(1460)),
        seg(True, 0x012, ISN_BOARD, ISN_PEER + 1, w.linux_syn_options(1460, 5, 0, 7)),
        seg(False, 0x010, ISN_PEER + 1, ISN_BOARD + 1),
        seg(True, 0x018, ISN_BOARD + 1, ISN_PEER + 1, payload=b"x" * 300),
        seg(False, 0x011, ISN_PEER + 1, ISN_BOARD + 301),
        seg(True, 0x014, ISN_BOARD + 301, ISN_PEER + 2),
        w.ether(OTHER_MAC, PMAC, ETHERTYPE_IPV4, w.ipv4(PIP, w.ip("10.0.2.99"), IPPROTO_TCP,
                                                        w.tcp(1, 2, 0, 0, 0x002, 100))),
        seg(False, 0x002, 77, 0, sport=40001),
    ]
    path = w.write_pcap(tmp_path_factory.mktemp("s") / "s.pcap",
                        [(1_000_000_000 + i * 1_000_000, f) for i, f in enumerate(frames)], nanosecond=True)
    return frame_events(read_pcap(path), BOARD)


def test_each_frame_gets_its_kind(events):
    assert [EventKind(k).name for k in events.kind] == [
        "ARP_REQUEST", "ARP_REPLY", "TCP_SYN", "TCP_SYNACK", "TCP_ACK", "TCP_DATA", "TCP_FIN", "TCP_RST", "TCP_SYN"]


def test_direction_is_relative_to_the_board(events):
    assert events.direction.tolist() == [TO_BOARD, FROM_BOARD, TO_BOARD, FROM_BOARD, TO_BOARD, FROM_BOARD, TO_BOARD,
                                         FROM_BOARD, TO_BOARD]


def test_frames_between_other_hosts_are_left_out(events):
    assert events.foreign == 1 and events.events.frame.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 10]


def test_both_directions_of_a_connection_share_one_flow(events):
    flow, direction, kind = split_stream_key(events.events.stream)
    assert len(set(flow[2:8].tolist())) == 1 and flow[8] != flow[2] and flow[0] == flow[1] != flow[2]
    assert direction.tolist() == events.direction.tolist() and kind.tolist() == events.kind.tolist()


def test_model_side_key_equals_capture_side_key(events):
    synack = stream_key(EventKind.TCP_SYNACK, FROM_BOARD, FLOW_TCP, PIP, 22, 40000)
    arp_req = stream_key(EventKind.ARP_REQUEST, TO_BOARD, FLOW_ARP, PIP)
    assert (synack, arp_req) == (events.events.stream[3], events.events.stream[0])


def test_array_keys_equal_scalar_keys():
    kinds = np.array([1, 2, 6])
    arr = stream_key(kinds, 1, FLOW_TCP, PIP, 22, np.array([1, 2, 3]))
    assert arr.tolist() == [stream_key(int(k), 1, FLOW_TCP, PIP, 22, p) for k, p in zip(kinds, [1, 2, 3], strict=True)]


def test_keys_are_non_negative_and_events_without_flow_key_by_kind():
    assert stream_key(EventKind.LINK_UP) == EventKind.LINK_UP
    keys = stream_key(np.full(1000, 5), 1, FLOW_TCP, np.arange(1000), 22, 80)
    assert keys.min() > 0 and np.unique(keys).size == 1000


def test_kind_outside_seven_bits_raises():
    with pytest.raises(ValueError):
        stream_key(200)


def test_synack_fields_show_linux_options(events):
    f = dict(zip(STREAM_FIELDS, events.events.fields[3].tolist(), strict=True))
    assert (f["tcp_flags"], f["tcp_window"], f["tcp_mss"], f["tcp_wscale"], f["tcp_sack_perm"],
            f["tcp_timestamps"]) == (0x012, 64240, 1460, 7, 1, 1)
    assert f["tcp_opt_order"] & 0xFF == 2  # MSS first


def test_absent_options_are_minus_one(events):
    f = events.events.fields[4]
    assert (f[FIELD["tcp_mss"]], f[FIELD["tcp_wscale"]], f[FIELD["tcp_sack_perm"]]) == (-1, -1, 0)


def test_sequence_numbers_are_relative_to_each_directions_isn(events):
    f = events.events.fields
    assert f[2:8, FIELD["tcp_rel_seq"]].tolist() == [0, 0, 1, 1, 1, 301]
    assert f[2:8, FIELD["tcp_rel_ack"]].tolist() == [-1, 1, 1, 1, 301, 2]
    assert f[2:8, FIELD["payload_len"]].tolist() == [0, 0, 0, 300, 0, 0]


def test_field_mask_sets_the_named_bits():
    assert field_mask("tcp_flags", "tcp_mss") == (1 << FIELD["tcp_flags"]) | (1 << FIELD["tcp_mss"])


def test_times_can_be_given_on_the_runs_timeline(tmp_path):
    frames = [(5, seg(False, 0x002, 1, 0)), (9, seg(True, 0x012, 1, 2))]
    t = read_pcap(w.write_pcap(tmp_path / "t.pcap", frames, nanosecond=True))
    ev = frame_events(t, BOARD, time_ns=t.time_ns.astype(np.int64) + 100)
    assert ev.events.time_ns.tolist() == [105, 109]


def test_console_and_qmp_events_join_the_frames_on_one_timeline(events):
    tl = Timeline()
    tl.add(ClockOffset(Clock.GUEST, 0, 1_000, 0, 1, "m"))
    t = EventTable.from_rows([(5, Clock.GUEST, 0, EventKind.LINK_UP, 1, 100, 1, -1)])
    other = nonframe_events(t, tl)
    assert other.stream.tolist() == [EventKind.LINK_UP] and other.time_ns.tolist() == [1_005]
    assert other.fields[0, FIELD["detail0"]] == 100
    both = concat_observed(events.events, other)
    assert len(both) == len(events.events) + 1 and both.fields.shape[1] == len(STREAM_FIELDS)


# The fields before the board's IP and Ethernet headers joined, in their order: masks and
# FIELD_MISMATCH rows written against these indices must keep meaning the same field.
FIELDS_BEFORE_ISSUE_9 = ("tcp_flags", "tcp_window", "tcp_mss", "tcp_wscale", "tcp_sack_perm", "tcp_timestamps",
                         "tcp_opt_order", "payload_len", "tcp_rel_seq", "tcp_rel_ack", "ip_ttl", "ip_df", "ip_len",
                         "arp_op", "icmp_type", "icmp_code", "wire_len", "detail0", "detail1")


def test_ip_and_ethernet_fields_are_appended_after_the_existing_ones():
    n = len(FIELDS_BEFORE_ISSUE_9)
    assert STREAM_FIELDS[:n] == FIELDS_BEFORE_ISSUE_9
    assert STREAM_FIELDS[n:] == ("ip_tos", "ip_id", "eth_src", "eth_dst", "ip_id_rel", "csum", "icmp_id", "icmp_seq",
                                 "l4_hash")


def board_seg(flags: int, seq: int, ip_id: int, sport: int = 40000, dport: int = 22) -> bytes:
    return w.ether(PMAC, BMAC, ETHERTYPE_IPV4, w.ipv4(BIP, PIP, IPPROTO_TCP, w.tcp(dport, sport, seq, 1, flags, 64240),
                                                      ip_id=ip_id))


def test_ip_id_rel_counts_a_connections_ids_from_its_first(tmp_path):
    """ip_select_ident_segs: the socket's inet_id (random start) then +1 per frame. A
    passive connection: the SYN-ACK (ID 0) is not a socket frame, the child's first frame
    sets the base. An active one: its SYN sets the base and its retransmissions (same
    seq) count on; a SYN with a new ISN is a new socket; RSTs are left out."""
    frames = [
        board_seg(0x012, 500, 0),                     # SYN-ACK from the listener
        board_seg(0x010, 501, 0xFFFE),                # the child's first frame: base
        board_seg(0x018, 501, 0xFFFF),
        board_seg(0x018, 511, 0x0001),                # one ID skipped: rel 3
        board_seg(0x004, 521, 0),                     # RST: not compared
        board_seg(0x002, 9000, 700, sport=40001),     # an active open
        board_seg(0x002, 9000, 701, sport=40001),     # its retransmission
        board_seg(0x002, 7777, 300, sport=40001),     # a new socket in the same flow
        board_seg(0x010, 7778, 301, sport=40001),
    ]
    pcap = w.write_pcap(tmp_path / "f.pcap", [(i + 1, f) for i, f in enumerate(frames)], nanosecond=True)
    ev = frame_events(read_pcap(pcap), BOARD)
    assert ev.events.fields[:, FIELD["ip_id_rel"]].tolist() == [-1, 0, 1, 3, -1, 0, 1, 0, 1]


def test_peer_frames_have_no_ip_id_rel(events):
    f = events.events.fields
    assert f[[2, 4, 6], FIELD["ip_id_rel"]].tolist() == [-1, -1, -1]


def test_board_frame_carries_its_macs_ip_id_and_tos(tmp_path):
    dgram = w.ipv4(BIP, PIP, IPPROTO_TCP, w.tcp(22, 40000, 7, 8, 0x012, 64240), ip_id=0xBEEF)
    frame = with_tos(w.ether(PMAC, BMAC, ETHERTYPE_IPV4, dgram), 0xB9)
    ev = frame_events(read_pcap(w.write_pcap(tmp_path / "f.pcap", [(1, frame)], nanosecond=True)), BOARD)
    f = dict(zip(STREAM_FIELDS, ev.events.fields[0].tolist(), strict=True))
    assert (f["eth_src"], f["eth_dst"], f["ip_id"], f["ip_tos"]) == (BMAC, PMAC, 0xBEEF, 0xB9)


def test_arp_has_macs_and_no_ip_fields(events):
    f = events.events.fields[0]  # the peer's broadcast ARP request
    assert (f[FIELD["eth_src"]], f[FIELD["eth_dst"]]) == (PMAC, 0xFFFFFFFFFFFF)
    assert (f[FIELD["ip_tos"]], f[FIELD["ip_id"]]) == (-1, -1)


def test_tcp_frames_carry_ip_fields_even_when_zero(events):
    f = events.events.fields
    assert f[2:8, FIELD["ip_tos"]].tolist() == [0] * 6 and f[2:8, FIELD["ip_id"]].tolist() == [0] * 6


def test_a_differing_tos_is_a_field_mismatch_named_ip_tos(tmp_path):
    dgram = w.ipv4(BIP, PIP, IPPROTO_TCP, w.tcp(22, 40000, 7, 8, 0x012, 64240))
    frames = [(1_000, with_tos(w.ether(PMAC, BMAC, ETHERTYPE_IPV4, dgram), tos)) for tos in (0x00, 0x10)]
    predicted, observed = (frame_events(read_pcap(w.write_pcap(tmp_path / f"{i}.pcap", [r], nanosecond=True)),
                                        BOARD).events for i, r in enumerate(frames))
    pred = PredictedEvents.build(predicted.stream, predicted.time_ns, predicted.fields,
                                 check=field_mask("tcp_flags", "ip_tos", "eth_src"))
    rows = compare(pred, observed, field_names=STREAM_FIELDS).rows()
    assert [(r["kind"], r["field"], r["pred_value"], r["obs_value"]) for r in rows] == [
        ("FIELD_MISMATCH", "ip_tos", 0x00, 0x10)]


def _board_seg(flags: int, seq: int, ack: int, ip_id: int, payload: bytes = b"") -> bytes:
    return w.ether(PMAC, BMAC, ETHERTYPE_IPV4, w.ipv4(BIP, PIP, IPPROTO_TCP,
                                                      w.tcp(80, 40000, seq % 2**32, ack % 2**32, flags, 501, b"",
                                                            payload), ip_id=ip_id))


def _peer_seg(flags: int, seq: int, ack: int) -> bytes:
    return w.ether(BMAC, PMAC, ETHERTYPE_IPV4, w.ipv4(PIP, BIP, IPPROTO_TCP,
                                                      w.tcp(40000, 80, seq % 2**32, ack % 2**32, flags, 501)))


def keepalive_events(tmp_path):
    """An accepted connection the peer leaves idle: two keepalive probes, then the
    socket's own RST (tcp_send_active_reset, its inet_id), a control-socket RST (ID 0)."""
    frames = [
        _peer_seg(0x002, ISN_PEER, 0),
        _board_seg(0x012, ISN_BOARD, ISN_PEER + 1, 0),
        _peer_seg(0x010, ISN_PEER + 1, ISN_BOARD + 1),
        _board_seg(0x010, ISN_BOARD, ISN_PEER + 1, 5000),          # probe: snd_una - 1
        _board_seg(0x010, ISN_BOARD, ISN_PEER + 1, 5001),          # probe
        _board_seg(0x014, ISN_BOARD + 1, ISN_PEER + 1, 5002),      # the socket's RST
        _board_seg(0x010, ISN_BOARD + 1, ISN_PEER + 1, 5003),      # a pure ACK at snd_nxt
        _board_seg(0x004, ISN_BOARD + 1, 0, 0),                    # the control socket's RST
    ]
    path = w.write_pcap(tmp_path / "k.pcap", [(1_000_000_000 + i * 1_000_000, f) for i, f in enumerate(frames)],
                        nanosecond=True)
    return frame_events(read_pcap(path), BOARD)


def test_a_segment_below_the_peers_ack_is_a_tcp_probe(tmp_path):
    ev = keepalive_events(tmp_path)
    assert [EventKind(k).name for k in ev.kind] == [
        "TCP_SYN", "TCP_SYNACK", "TCP_ACK", "TCP_PROBE", "TCP_PROBE", "TCP_RST", "TCP_ACK", "TCP_RST"]


def test_the_sockets_own_rst_counts_its_ip_id_and_the_control_sockets_does_not(tmp_path):
    ev = keepalive_events(tmp_path)
    assert ev.events.fields[:, FIELD["ip_id_rel"]].tolist() == [-1, -1, -1, 0, 1, 2, 3, -1]
