"""The board's application, learnt from the capture, so the oracle can check the data the
kernel sends again by itself.

The harness does not know when the board's application wrote (busybox nc writes once
its connect() returns), but the capture does: on a flow the board connected (a
`board_connect` step, see harness.oracle._board_connects), the first transmission of
each new range of sequence space is a write. That write, at that time and with those
bytes, is a `send` input to the model on the connect's socket; the model then predicts
everything else the kernel does with the data: the first transmission (which matches
trivially) and every retransmission (tail loss probe, RTO and its backoff), which do not.

Compared, per data segment on those flows: flags, payload length, seq relative to the
board's ISN, ack relative to the peer's ISN, the timestamp option, TTL and DF; and its
time, in the window of the timer that sent it. Not learnt: close() / shutdown() (a FIN
on these flows is not predicted yet), and the payload's bytes beyond ASCII (the model
is given '?' for them; only lengths are compared).
"""

from __future__ import annotations

import numpy as np

from harness.ingest.events import EventKind
from harness.ingest.streams import FIELD, FLOW_TCP, FROM_BOARD, field_mask, stream_key

# What a data segment the board sends must have as the model predicts it. Not the window:
# the model counts receive memory in payload bytes, Linux in skb truesize.
APP_DATA_FIELDS = field_mask("tcp_flags", "payload_len", "tcp_rel_seq", "tcp_rel_ack", "tcp_timestamps",
                             "ip_ttl", "ip_df")


def _connect_flow_stream(connect: dict, kind: int = EventKind.TCP_DATA) -> int:
    """The stream key of the board's `kind` segments on a connect input's flow."""
    from models.wire import ip4

    return stream_key(int(kind), FROM_BOARD, FLOW_TCP, ip4(connect["addr"]), int(connect["sport"]),
                      int(connect["port"]))


def _board_connect_inputs(obs, end_ns: int) -> list[dict]:
    """The connect inputs harness.oracle gives the model (the same matching, the same fds)."""
    from harness.oracle import _board_connects

    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & (obs.frame_kind == EventKind.TCP_SYN))
    learn = sorted(((int(obs.frames.time_ns[i]), 2, {"kind": "learn", "raw": raw})
                    for i, raw in zip(sel.tolist(), obs.raw_frames(sel), strict=True)), key=lambda x: x[0])
    return [ev for _, _, ev in _board_connects(obs, learn, end_ns) if ev["kind"] == "connect"]


def app_data_streams(obs, end_ns: int) -> np.ndarray:
    """Stream keys of the board's data segments on the flows it connected (int64)."""
    return np.array([_connect_flow_stream(c) for c in _board_connect_inputs(obs, end_ns)], np.int64)


def app_data_keep(obs, stream: np.ndarray, time_ns: np.ndarray, start_ns: int, end_ns: int) -> np.ndarray:
    """Which of these events (observed or predicted) are the board's data on a connected
    flow within [start, end]: they are compared."""
    return np.isin(stream, app_data_streams(obs, end_ns)) & (time_ns >= start_ns) & (time_ns <= end_ns)


def _payload(frame: bytes, length: int) -> bytes:
    ihl = (frame[14] & 0x0F) * 4
    t = 14 + ihl
    doff = (frame[t + 12] >> 4) * 4
    return frame[t + doff:t + doff + length]


def app_sends(obs, connects: list[tuple[int, int, dict]], end_ns: int) -> list[tuple[int, int, dict]]:
    """The writes of the board's application on each connected flow, as model inputs
    (common t, order, {"kind": "send", "fd", "data"}): at the first transmission of each
    new range of sequence space, the new bytes."""
    out: list[tuple[int, int, dict]] = []
    data_kinds = [EventKind.TCP_DATA, EventKind.TCP_FIN]
    for t_conn, _, c in connects:
        if c.get("kind") != "connect" or not c.get("sport"):
            continue
        flow = np.int64(_connect_flow_stream(c)) >> np.int64(8)
        f = obs.frames
        sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & np.isin(obs.frame_kind, data_kinds)
                             & ((f.stream >> np.int64(8)) == flow) & (f.time_ns >= t_conn) & (f.time_ns <= end_ns)
                             & (f.fields[:, FIELD["payload_len"]] > 0) & (f.fields[:, FIELD["tcp_rel_seq"]] >= 0))
        if not sel.size:
            continue
        sel = sel[np.argsort(f.time_ns[sel], kind="stable")]
        frames = dict(zip(sel.tolist(), obs.raw_frames(sel), strict=True))
        high = 1   # the next new byte, relative to the ISN (the SYN took 0)
        for i in sel.tolist():
            rel, n = int(f.fields[i, FIELD["tcp_rel_seq"]]), int(f.fields[i, FIELD["payload_len"]])
            if rel + n <= high:
                continue   # a retransmission: the kernel's doing, predicted by the model
            payload = _payload(frames[i], n)
            # bytes the capture never showed (rel > high) are unknown: '?' of the same length
            new = b"?" * max(0, rel - high) + payload[max(0, high - rel):]
            text = "".join(chr(b) if b < 0x80 else "?" for b in new)
            out.append((int(f.time_ns[i]), 0, {"kind": "send", "fd": c["fd"], "data": text}))
            high = rel + n
    return out


# A handshake ACK later than this after the SYN-ACK is not the immediate answer to it.
HANDSHAKE_ACK_MAX_NS = 100_000_000


def _flow_frames(obs, key: int, t0: int) -> list[bytes]:
    """The raw frames of stream `key` from `t0` on, in time order."""
    f = obs.frames
    sel = np.flatnonzero((f.stream == key) & (f.time_ns >= t0))
    sel = sel[np.argsort(f.time_ns[sel], kind="stable")]
    return obs.raw_frames(sel)


def _retime_synacks(obs, inputs: list[tuple[int, int, dict]], connects: list[tuple[int, int, dict]],
                    sends: list[tuple[int, int, dict]]) -> list:
    """`inputs` with the SYN-ACK of each flow the board connected moved so that the model
    measures the RTT the board measured.

    The board takes its first RTT sample when it processes the SYN-ACK: from the SYN's
    send stamp (taken when connect() built it, before any ARP) to then
    (tcp_rcv_synsent_state_process -> tcp_ack -> tcp_clean_rtx_queue), and the sample sets
    the RTO (srtt + max(2 rtt, 200 ms), rounded up to jiffies): a jiffy of RTO across a
    10 ms boundary doubles with every backoff. The board's own clock says what it measured:
    its handshake ACK, sent in that same softirq, carries a TSval (ms) that many ms after
    the SYN's. The emulated board's clock and the capture's do not run alike over a few ms
    (the guest runs under TCG), so the wire times would not do; the TSvals are the board's
    word. The SYN-ACK is fed that long (+ half a ms, the TSvals' rounding) after the
    connect, never before it reached the wire and never after the first write."""
    from harness.oracle import _tcp_flow_key, _tcp_seq_ts
    from models.wire import ip4

    board_ip = int(obs.declared.interface.address.ip)
    moved: dict[int, int] = {}   # index in inputs -> new time
    for t_conn, _, c in connects:
        if c.get("kind") != "connect" or not c.get("sport"):
            continue
        flow = (ip4(c["addr"]), int(c["port"]), int(c["sport"]))
        syns = _flow_frames(obs, _connect_flow_stream(c, EventKind.TCP_SYN), t_conn)
        acks = [r for r in _flow_frames(obs, _connect_flow_stream(c, EventKind.TCP_ACK), t_conn)
                if _tcp_flow_key(r, board_ip) is not None]
        if not syns or not acks:
            continue
        ts_syn = _tcp_seq_ts(syns[0], _tcp_flow_key(syns[0], board_ip)[1])[1]
        ts_ack = _tcp_seq_ts(acks[0], _tcp_flow_key(acks[0], board_ip)[1])[1]
        if ts_syn is None or ts_ack is None:
            continue   # no timestamps: keep the wire time
        rtt_ns = ((ts_ack - ts_syn) % (1 << 32)) * 1_000_000 + 500_000
        best = None
        for j, (t, _, ev) in enumerate(inputs):
            if ev.get("kind") != "frame" or t < t_conn:
                continue
            key = _tcp_flow_key(ev["raw"], board_ip)
            if key is not None and key[0] == flow and ev["raw"][key[1] + 13] & 0x17 == 0x12:
                best = j
                break
        if best is None or rtt_ns > HANDSHAKE_ACK_MAX_NS:
            continue
        first_write = min((t for t, _, ev in sends if ev["fd"] == c["fd"]), default=None)
        t_new = max(inputs[best][0], t_conn + rtt_ns)
        if first_write is not None:
            t_new = min(t_new, first_write - 1)
        moved[best] = t_new
    return [(moved[j], o, ev) if j in moved else (t, o, ev) for j, (t, o, ev) in enumerate(inputs)]


def with_app_inputs(obs, inputs: list[tuple[int, int, dict]], connects: list[tuple[int, int, dict]],
                    end_ns: int) -> list[tuple[int, int, dict]]:
    """`inputs` (SYN-ACKs on the board's connections retimed, see _retime_synacks), then the
    board's connect inputs, then its application's writes on them."""
    sends = app_sends(obs, connects, end_ns)
    return _retime_synacks(obs, inputs, connects, sends) + connects + sends
