"""Frames -> observed events with stream keys and field columns, for the comparison core.

A stream is (flow, direction, kind): the comparison aligns each stream on its own, so a
late ACK cannot be mistaken for a reordered SYN-ACK. Everything is vectorised NumPy over
the `PacketTable` columns.

Stream key (int64, >= 0), computed the same way by the model side and the capture side
with `stream_key` (scalars or arrays):

    bits 63     0
    bits 62..8  flow id: 55 bits of a splitmix64 mix of (flow class, peer IPv4,
                board port, peer port); never 0 for a frame
    bit  7      direction: 1 = sent by the board, 0 = sent to it
    bits 6..0   EventKind (< 128)

The flow is named from the board's side, so both directions of one connection share a
flow id: class is the IP protocol (6 TCP, 17 UDP, 1 ICMP), or 0x10000 + ethertype for ARP
and non-IPv4 frames; ports are 0 where the class has none; ICMP ids are not part of the
flow (the model cannot know a peer's ping id). Events that are not frames (console, QMP,
host) have flow 0, so their key is their EventKind. Two flows share an id with
probability about n^2 / 2^56: none for the few flows of a board run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.compare.events import ObservedEvents
from harness.ingest.events import EventKind, EventTable
from harness.ingest.pcap import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Layer,
    PacketTable,
    TcpOpt,
)
from harness.ingest.timeline import Timeline
from models.config import FirmwareConfig

TO_BOARD = 0
FROM_BOARD = 1

FLOW_TCP = IPPROTO_TCP
FLOW_UDP = IPPROTO_UDP
FLOW_ICMP = IPPROTO_ICMP
FLOW_ARP = 0x10000 + ETHERTYPE_ARP
FLOW_ETHERTYPE_BASE = 0x10000  # + ethertype, for frames that are neither IPv4 nor ARP

_FLOW_BITS = 55
_FLOW_MASK = (1 << _FLOW_BITS) - 1

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ARP_OP_REQUEST, ARP_OP_REPLY = 1, 2
ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST = 0, 3, 8

# The field columns of every frame event, in order: what the model predicts and a
# FIELD_MISMATCH row can name. Absent values are -1 (option not sent, no ACK flag, ...).
STREAM_FIELDS: tuple[str, ...] = (
    "tcp_flags",  # 12 bits, as tshark's tcp.flags
    "tcp_window",  # the window field, unscaled
    "tcp_mss",  # MSS option value, -1 if absent
    "tcp_wscale",  # window-scale shift, -1 if absent
    "tcp_sack_perm",  # 1 if SACK-permitted was sent
    "tcp_timestamps",  # 1 if the timestamp option was sent
    "tcp_opt_order",  # option kinds in wire order, first in the low byte (NOPs included, 8 kept)
    "payload_len",  # TCP/UDP payload bytes
    "tcp_rel_seq",  # seq - this direction's ISN (the flow's latest SYN, else its first segment)
    "tcp_rel_ack",  # ack - the other direction's ISN; -1 without the ACK flag or a known ISN
    "ip_ttl",
    "ip_df",
    "ip_len",
    "arp_op",
    "icmp_type",
    "icmp_code",
    "wire_len",
    "detail0",  # events that are not frames: EventTable.detail0 (link speed, reset reason, ...)
    "detail1",  # EventTable.detail1 (duplex, ...)
    # Appended after the rest so the indices above (and field masks built from them) stay
    # valid. -1 where the frame has no such header (ip_* on ARP, eth_* on a frame cut
    # short of 14 bytes); 0 on events that are not frames, like the other frame fields.
    "ip_tos",  # the IPv4 TOS byte: DSCP << 2 | ECN
    "ip_id",  # IPv4 identification
    "eth_src",  # source MAC, 48 bits
    "eth_dst",  # destination MAC, 48 bits
    # ip_id - the connection's first: the board's TCP socket frames (not its SYN-ACKs,
    # which the listener sends with ID 0, nor RSTs and bare ACKs with ID 0, which come from
    # the control socket); -1 on every other frame. See _ip_id_rel.
    "ip_id_rel",
    # harness.ingest.pcap's `csum` bits on IPv4 frames (0: every checksum right), -1 on others
    "csum",
    # an ICMP message's identifier and sequence words; -1 on frames that are not ICMP
    "icmp_id",
    "icmp_seq",
    "l4_hash",  # FNV-1a of the TCP/UDP/ICMP payload (0 without one): an echo reply's data
)
FIELD = {name: i for i, name in enumerate(STREAM_FIELDS)}


def field_mask(*names: str) -> int:
    """The `check` bit mask for a prediction comparing the named fields."""
    return sum(1 << FIELD[n] for n in names)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arithmetic wraps, as intended)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def flow_id(flow_class, peer_ip, board_port, peer_port) -> np.ndarray:
    """The 55-bit flow id (never 0) of flows named from the board's side."""
    with np.errstate(over="ignore"):
        c = np.atleast_1d(np.asarray(flow_class, np.int64)).astype(np.uint64)
        ip = np.atleast_1d(np.asarray(peer_ip, np.int64)).astype(np.uint64)
        bp = np.atleast_1d(np.asarray(board_port, np.int64)).astype(np.uint64)
        pp = np.atleast_1d(np.asarray(peer_port, np.int64)).astype(np.uint64)
        h = _mix64(c * np.uint64(0x9E3779B97F4A7C15) ^ ip)
        h = _mix64(h ^ (bp << np.uint64(16)) ^ pp)
    f = (h & np.uint64(_FLOW_MASK)).astype(np.int64)
    return np.where(f == 0, 1, f)


def stream_key(kind, direction=TO_BOARD, flow_class=0, peer_ip=0, board_port=0, peer_port=0):
    """The stream key (see the module docstring). flow_class 0 means no flow (console,
    QMP and host events): the key is then just the kind. Scalars in, int out; arrays in,
    int64 array out."""
    args = np.broadcast_arrays(*(np.asarray(a, np.int64) for a in
                                 (kind, direction, flow_class, peer_ip, board_port, peer_port)))
    k, d, fc, ip, bp, pp = (np.atleast_1d(a) for a in args)
    if np.any((k < 0) | (k >= 128)):
        raise ValueError("kind must be an EventKind below 128")
    flow = np.where(fc == 0, 0, flow_id(fc, ip, bp, pp))
    key = (flow << 8) | ((d & 1) << 7) | k
    return int(key[0]) if args[0].ndim == 0 else key


def split_stream_key(key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flow id, direction, kind) of stream keys."""
    key = np.asarray(key, np.int64)
    return key >> 8, (key >> 7) & 1, key & 0x7F


def mac_to_int(mac: str) -> int:
    """"52:54:00:12:34:56" -> the 48-bit integer the capture columns hold."""
    return int(mac.replace(":", "").replace("-", ""), 16)


@dataclass
class FrameEvents:
    """Frames as observed events, with the columns their stream keys were made from.

    `row` indexes the PacketTable; frames that neither came from the board nor were
    addressed to it (another host's unicast on a shared wire) are left out and counted in
    `foreign`."""

    events: ObservedEvents  # time_ns on the capture clock unless mapped
    kind: np.ndarray  # int16 EventKind
    direction: np.ndarray  # int8 TO_BOARD / FROM_BOARD
    flow_class: np.ndarray
    peer_ip: np.ndarray
    board_port: np.ndarray
    peer_port: np.ndarray
    row: np.ndarray
    foreign: int
    field_names: tuple[str, ...] = STREAM_FIELDS


def _i64(a) -> np.ndarray:
    return np.asarray(a).astype(np.int64)


def frame_kinds(t: PacketTable) -> np.ndarray:
    """EventKind per frame (int16)."""
    layers = _i64(t.layers)
    is_tcp = (layers & Layer.TCP) != 0
    is_ip = (layers & Layer.IPV4) != 0
    is_arp = (layers & Layer.ARP) != 0
    flags = _i64(t.tcp_flags)
    syn, ack, rst, fin = (flags & TCP_SYN) != 0, (flags & TCP_ACK) != 0, (flags & TCP_RST) != 0, (flags & TCP_FIN) != 0
    plen = _i64(t.payload_len)
    icmp_type = _i64(t.icmp_type)
    op = _i64(t.arp_op)
    is_icmp = (layers & Layer.ICMP) != 0
    conds = [
        is_tcp & rst, is_tcp & syn & ack, is_tcp & syn, is_tcp & fin, is_tcp & (plen > 0), is_tcp,
        is_arp & (op == ARP_OP_REQUEST), is_arp & (op == ARP_OP_REPLY), is_arp,
        is_icmp & (icmp_type == ICMP_ECHO_REQUEST), is_icmp & (icmp_type == ICMP_ECHO_REPLY),
        is_icmp & (icmp_type == ICMP_DEST_UNREACH), is_icmp,
        (layers & Layer.UDP) != 0, is_ip,
    ]
    kinds = [EventKind.TCP_RST, EventKind.TCP_SYNACK, EventKind.TCP_SYN, EventKind.TCP_FIN, EventKind.TCP_DATA,
             EventKind.TCP_ACK, EventKind.ARP_REQUEST, EventKind.ARP_REPLY, EventKind.ARP_OTHER,
             EventKind.ICMP_ECHO_REQUEST, EventKind.ICMP_ECHO_REPLY, EventKind.ICMP_DEST_UNREACH,
             EventKind.ICMP_OTHER, EventKind.UDP, EventKind.IPV4_OTHER]
    return np.select(conds, [int(k) for k in kinds], int(EventKind.NON_IPV4)).astype(np.int16)


def _isn(key: np.ndarray, is_dir: np.ndarray, anchor: np.ndarray, seq: np.ndarray, order: np.ndarray):
    """Per frame (in `order`, sorted by flow then capture order): the seq of the latest
    anchor frame of one direction at or before it in its flow, or -1."""
    n = order.size
    k = key[order]
    pos = np.arange(n)
    flow_start = np.ones(n, bool)
    flow_start[1:] = k[1:] != k[:-1]
    base = np.maximum.accumulate(np.where(flow_start, pos, 0))
    a = anchor[order] & is_dir[order]
    # anchors of earlier flows are below this flow's base - 1, so the running max never
    # carries them across a flow boundary
    last = np.maximum.accumulate(np.where(a, pos, np.where(flow_start, pos - 1, -1)))
    out = np.full(n, -1, np.int64)
    ok = last >= base
    out[ok] = seq[order][last[ok]]
    res = np.empty(n, np.int64)
    res[order] = out
    return res


def _first_of_each(key: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """True at the first selected frame of each key (capture order)."""
    out = np.zeros(key.size, bool)
    idx = np.flatnonzero(sel)
    if idx.size:
        _, first = np.unique(key[idx], return_index=True)
        out[idx[first]] = True
    return out


def frame_events(t: PacketTable, board: FirmwareConfig, time_ns: np.ndarray | None = None) -> FrameEvents:
    """Every frame to or from the board as an observed event: stream key, time (the
    capture's own, or `time_ns` per row, e.g. mapped onto the run's timeline), frame
    number and the STREAM_FIELDS columns."""
    mac = mac_to_int(board.interface.mac)
    ip = int(board.interface.address.ip)
    layers = _i64(t.layers)
    is_ip = (layers & Layer.IPV4) != 0
    is_arp = (layers & Layer.ARP) != 0
    src, dst = _i64(t.eth_src), _i64(t.eth_dst)
    ip_src, ip_dst = _i64(t.ip_src), _i64(t.ip_dst)
    spa, tpa = _i64(t.arp_spa), _i64(t.arp_tpa)
    from_board = (src == mac) | (is_ip & (ip_src == ip)) | (is_arp & (spa == ip))
    group = ((dst >> 40) & 1) != 0  # broadcast and multicast reach the board too
    to_board = ~from_board & ((dst == mac) | group | (is_ip & (ip_dst == ip)) | (is_arp & (tpa == ip)))
    keep = np.flatnonzero(from_board | to_board)
    t = t[keep] if keep.size != len(t) else t
    fb = from_board[keep]
    layers, is_ip, is_arp = layers[keep], is_ip[keep], is_arp[keep]
    ip_src, ip_dst, spa, tpa = ip_src[keep], ip_dst[keep], spa[keep], tpa[keep]

    kind = frame_kinds(t)
    direction = fb.astype(np.int8)
    ethertype = _i64(t.ethertype)
    proto = _i64(t.ip_proto)
    has_ports = (layers & (Layer.TCP | Layer.UDP)) != 0
    flow_class = np.where(is_ip, proto, np.where(is_arp, FLOW_ARP, FLOW_ETHERTYPE_BASE + ethertype))
    flow_class = np.where(is_ip & (ethertype != ETHERTYPE_IPV4), FLOW_ETHERTYPE_BASE + ethertype, flow_class)
    peer_ip = np.where(is_ip, np.where(fb, ip_dst, ip_src), np.where(is_arp, np.where(fb, tpa, spa), 0))
    sport, dport = _i64(t.sport), _i64(t.dport)
    board_port = np.where(has_ports, np.where(fb, sport, dport), 0)
    peer_port = np.where(has_ports, np.where(fb, dport, sport), 0)
    kind = _tcp_probes(t, kind, direction, flow_id(flow_class, peer_ip, board_port, peer_port).astype(np.int64))
    stream = stream_key(kind.astype(np.int64), direction.astype(np.int64), flow_class, peer_ip, board_port,
                        peer_port)

    fields = _fields(t, kind, direction, stream)
    times = _i64(t.time_ns) if time_ns is None else np.asarray(time_ns, np.int64)[keep]
    obs = ObservedEvents.build(stream, times, _i64(t.frame), fields)
    return FrameEvents(obs, kind, direction, flow_class, peer_ip, board_port, peer_port, keep,
                       int(len(from_board) - keep.size))


def _tcp_probes(t: PacketTable, kind: np.ndarray, direction: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`kind` with the board's TCP_ACK frames that tcp_xmit_probe_skb sent made TCP_PROBE:
    no data, and seq one below the peer's latest acknowledgement in the flow (snd_una - 1:
    keepalive probes from tcp_keepalive_timer -> tcp_write_wakeup, zero-window probes).
    Every other segment Linux sends carries snd_nxt or a retransmission's seq, never below
    what the peer acknowledged."""
    cand = (kind == EventKind.TCP_ACK) & (direction == FROM_BOARD) & (_i64(t.payload_len) == 0)
    if not cand.any():
        return kind
    n = kind.size
    is_tcp = (_i64(t.layers) & Layer.TCP) != 0
    flags, seq, ack = _i64(t.tcp_flags), _i64(t.tcp_seq), _i64(t.tcp_ack)
    fl = np.where(is_tcp, flow, -1)
    order = np.lexsort((np.arange(n), fl))
    peer_ack = is_tcp & (direction == TO_BOARD) & ((flags & TCP_ACK) != 0)
    last = _isn(fl, peer_ack, peer_ack, ack, order)
    probe = cand & (last >= 0) & (((last - seq) & 0xFFFFFFFF) == 1)
    return np.where(probe, int(EventKind.TCP_PROBE), kind).astype(kind.dtype)


def _fields(t: PacketTable, kind: np.ndarray, direction: np.ndarray, stream: np.ndarray) -> np.ndarray:
    n = len(t)
    f = np.zeros((n, len(STREAM_FIELDS)), np.int64)
    layers = _i64(t.layers)
    is_tcp = (layers & Layer.TCP) != 0
    opts = _i64(t.tcp_opts)
    flags = _i64(t.tcp_flags)
    f[:, FIELD["tcp_flags"]] = flags
    f[:, FIELD["tcp_window"]] = np.where(is_tcp, _i64(t.tcp_window), -1)
    f[:, FIELD["tcp_mss"]] = np.where(opts & TcpOpt.MSS, _i64(t.tcp_mss), -1)
    f[:, FIELD["tcp_wscale"]] = np.where(opts & TcpOpt.WSCALE, _i64(t.tcp_wscale), -1)
    f[:, FIELD["tcp_sack_perm"]] = (opts & TcpOpt.SACK_PERM) != 0
    f[:, FIELD["tcp_timestamps"]] = (opts & TcpOpt.TIMESTAMP) != 0
    f[:, FIELD["tcp_opt_order"]] = t.tcp_opt_kinds.view(np.int64)
    f[:, FIELD["payload_len"]] = _i64(t.payload_len)
    f[:, FIELD["ip_ttl"]] = _i64(t.ip_ttl)
    f[:, FIELD["ip_df"]] = _i64(t.ip_df)
    f[:, FIELD["ip_len"]] = _i64(t.ip_len)
    f[:, FIELD["arp_op"]] = _i64(t.arp_op)
    f[:, FIELD["icmp_type"]] = _i64(t.icmp_type)
    f[:, FIELD["icmp_code"]] = _i64(t.icmp_code)
    f[:, FIELD["wire_len"]] = _i64(t.wire_len)
    is_ip = (layers & Layer.IPV4) != 0
    f[:, FIELD["ip_tos"]] = np.where(is_ip, _i64(t.ip_tos), -1)
    f[:, FIELD["ip_id"]] = np.where(is_ip, _i64(t.ip_id), -1)
    f[:, FIELD["csum"]] = np.where(is_ip, _i64(t.csum), -1)
    is_icmp = (layers & Layer.ICMP) != 0
    f[:, FIELD["icmp_id"]] = np.where(is_icmp, _i64(t.icmp_id), -1)
    f[:, FIELD["icmp_seq"]] = np.where(is_icmp, _i64(t.icmp_seq), -1)
    f[:, FIELD["l4_hash"]] = _i64(t.l4_hash)
    is_eth = (layers & Layer.ETHERNET) != 0
    f[:, FIELD["eth_src"]] = np.where(is_eth, _i64(t.eth_src), -1)
    f[:, FIELD["eth_dst"]] = np.where(is_eth, _i64(t.eth_dst), -1)
    # Relative sequence numbers: each direction's ISN is its latest SYN (or first segment)
    # in the same flow at or before the frame; flows keyed without the kind bits.
    flow = np.where(is_tcp, stream >> 8, -1)
    seq, ack = _i64(t.tcp_seq), _i64(t.tcp_ack)
    order = np.lexsort((np.arange(n), flow))
    rel_seq = np.full(n, -1, np.int64)
    rel_ack = np.full(n, -1, np.int64)
    for d in (TO_BOARD, FROM_BOARD):
        is_d = is_tcp & (direction == d)
        anchor = ((flags & TCP_SYN) != 0) | _first_of_each(flow, is_d)
        isn = _isn(flow, is_d, anchor & is_d, seq, order)
        mine = is_d & (isn >= 0)
        rel_seq[mine] = (seq[mine] - isn[mine]) & 0xFFFFFFFF
        theirs = is_tcp & (direction != d) & ((flags & TCP_ACK) != 0) & (isn >= 0)
        rel_ack[theirs] = (ack[theirs] - isn[theirs]) & 0xFFFFFFFF
    f[:, FIELD["tcp_rel_seq"]] = rel_seq
    f[:, FIELD["tcp_rel_ack"]] = rel_ack
    f[:, FIELD["ip_id_rel"]] = _ip_id_rel(flow, is_tcp & (direction == FROM_BOARD) & is_ip, flags, seq,
                                          _i64(t.ip_id), order)
    return f


def _ip_id_rel(flow: np.ndarray, sel: np.ndarray, flags: np.ndarray, seq: np.ndarray, ip_id: np.ndarray,
               order: np.ndarray) -> np.ndarray:
    """The IPv4 ID of each of the board's TCP socket frames relative to its connection's
    first. ip_select_ident_segs (include/net/ip.h): a connected socket's frames carry
    inet_id, which then counts on by the frame's segments; inet_id starts at
    get_random_u16() (tcp_v4_connect for an active open, tcp_v4_syn_recv_sock for a
    passive one), which Linux leaves open, so only the count from the first is compared.
    A connection begins at the board's SYN-ACK in the flow, or at a SYN that is not a
    retransmission (same seq) of the SYN just before it; its SYN-ACKs
    (ip_build_and_send_pkt: ID 0 with DF) and the control socket's RSTs (tcp_v4_send_reset,
    ID 0 with DF) are not socket frames here, nor a bare ACK with ID 0 (a timewait sock's,
    tcp_v4_timewait_ack -> tcp_v4_send_ack on the control socket; a socket's own inet_id is
    0 once in 65536 frames, and is then compared as ID 0); a RST with another ID is the
    socket's own (tcp_send_active_reset -> ip_queue_xmit: its inet_id). -1 where not a
    socket frame."""
    n = flow.size
    out = np.full(n, -1, np.int64)
    o = order[sel[order]]                  # the board's TCP frames, by flow then capture order
    if o.size == 0:
        return out
    f, fl, sq = flow[o], flags[o], seq[o]
    syn = (fl & TCP_SYN) != 0
    synack = syn & ((fl & TCP_ACK) != 0)
    new_flow = np.ones(o.size, bool)
    new_flow[1:] = f[1:] != f[:-1]
    resent = np.zeros(o.size, bool)        # a SYN again, same ISN: the same socket's retransmission
    resent[1:] = syn[1:] & ~synack[1:] & syn[:-1] & ~synack[:-1] & (sq[1:] == sq[:-1]) & ~new_flow[1:]
    epoch = np.cumsum(new_flow | synack | (syn & ~resent))
    control = ((fl & TCP_RST) != 0) | ((fl & 0x3F) == TCP_ACK)   # RST, or ACK alone
    socket = ~synack & (~control | (ip_id[o] != 0))
    first = _first_of_each(epoch, socket)
    base = np.full(int(epoch[-1]) + 1, -1, np.int64)
    base[epoch[first]] = ip_id[o[first]]
    b = base[epoch]
    ok = socket & (b >= 0)
    out[o[ok]] = (ip_id[o[ok]] - b[ok]) & 0xFFFF
    return out


def nonframe_events(events: EventTable, timeline: Timeline) -> ObservedEvents:
    """Console, QMP and host events as observed events on the run's timeline: stream key
    = the kind (flow 0), frame -1, details in the detail0/detail1 columns."""
    n = len(events)
    fields = np.zeros((n, len(STREAM_FIELDS)), np.int64)
    fields[:, FIELD["detail0"]] = events.detail0
    fields[:, FIELD["detail1"]] = events.detail1
    return ObservedEvents.build(stream_key(events.kind.astype(np.int64)), timeline.events_to_common(events),
                                np.full(n, -1, np.int64), fields)


def concat_observed(*parts: ObservedEvents) -> ObservedEvents:
    """One ObservedEvents of several (same field columns), in the order given."""
    return ObservedEvents(*(np.concatenate([getattr(p, name) for p in parts])
                            for name in ("stream", "time_ns", "frame", "fields")))
