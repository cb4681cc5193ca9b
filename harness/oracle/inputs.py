"""Stage 2 of the oracle: Observation -> the model's typed inputs and the learnt values.

The one rule (harness.oracle.bounds): inputs come only from the harness's own records
(host-events.jsonl: link and power actions, watchdog commands, `reboot` typed on the
console, `board_connect` requests with the bytes asked for), the frames that reached the
board from its peers, the declared firmware config and Linux's constants. What only the
board's outputs can tell (when its application got to run, which port connect() drew,
when its timers really fired, its first RTT sample) is a `Learnt` value with a bound;
outside the bound it is a divergence row and the model goes on without it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from harness.ingest.events import EventKind
from harness.ingest.streams import FIELD, FLOW_TCP, FROM_BOARD, field_mask, stream_key
from harness.oracle.bounds import (
    APP_LATENCY_NS,
    BOOT_TO_IFUP_MAX_NS,
    HANDSHAKE_ACK_MAX_NS,
    SHUTDOWN_LATENCY_NS,
    Learnt,
)
from harness.oracle.observe import FrameView, Observation
from models.clock import JIFFY
from models.inputs import (
    BoardInput,
    Close,
    Connect,
    FrameArrived,
    LinkChanged,
    PowerCycle,
    Reboot,
    Send,
    Shutdown,
    WatchdogDaemonStart,
    WatchdogSignal,
)
from models.wire import ip4, ip4_str

# What a data segment the board sends on a flow it connected must have as the model
# predicts it. Not the window: the model counts receive memory in payload bytes, Linux in
# skb truesize.
APP_DATA_FIELDS = field_mask("tcp_flags", "payload_len", "tcp_rel_seq", "tcp_rel_ack", "tcp_timestamps",
                             "ip_ttl", "ip_df")

# Tie-break at equal times: the harness's actions, then frames, then the application.
ORDER_HOST, ORDER_FRAME, ORDER_APP = 0, 1, 2


@dataclass(frozen=True)
class TimedInput:
    """One model input at a time on the common clock."""

    t: int
    order: int
    input: BoardInput


@dataclass(frozen=True)
class BoardConnect:
    """A connect() the harness asked the board's application to make (a board_connect
    record), and what of it was learnt."""

    fd: str
    addr: str
    port: int
    asked_ns: int
    data: bytes | None            # the bytes asked for, if the application writes
    shutdown: bool = False        # then shutdown(SHUT_WR) at its stdin's EOF
    sport: int = 0                # the port Linux drew, when it was inside its bound
    observed_sport: int = 0       # the port the board used, whatever it was

    def stream(self, kind: int = EventKind.TCP_DATA, sport: int | None = None) -> int:
        """The stream key of the board's `kind` segments on this flow."""
        port = self.observed_sport if sport is None else sport
        return stream_key(int(kind), FROM_BOARD, FLOW_TCP, ip4(self.addr), port, self.port)


@dataclass(frozen=True)
class RttCase:
    """The times the peer's SYN-ACK on a connected flow may be fed at: the board's first
    RTT sample lies between the wire's SYN to SYN-ACK time and its handshake ACK's TSval
    (tcp_clean_rtx_queue samples before tcp_send_ack stamps the ACK), and the TSvals are
    whole ms. `times[0]` is what the TSvals say; the others, one per quarter jiffy of the
    rest of that span, are tried only when the board does not match the first
    (harness.oracle.judge._rtt_cases), and adopted only if it then matches completely."""

    input_index: int    # the SYN-ACK's index in ModelInputs.inputs
    learnt_index: int   # its first_rtt's index in ModelInputs.learnt
    conn_t: int         # the connect() the sample is counted from
    times: tuple[int, ...]
    hi: int             # the span's upper bound (after conn_t): the TSvals' ms + 1, or the first data


@dataclass
class ModelInputs:
    """Everything the loop gives the model, and what was learnt to build it."""

    inputs: list[TimedInput] = field(default_factory=list)
    learnt: list[Learnt] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)       # learnt values outside their bounds, payload faults
    connects: list[BoardConnect] = field(default_factory=list)
    isn_frames: list[tuple[int, bytes]] = field(default_factory=list)   # the board's SYNs and SYN-ACKs
    resets_seen: list[int] = field(default_factory=list)  # the board's own (guest) resets
    phy_seen: list[int] = field(default_factory=list)     # its Link is Up/Down lines, inside their bound
    ifups_seen: list[int] = field(default_factory=list)   # its first Link is Up after each reset, inside
    timer_hints: list[tuple[int, tuple]] = field(default_factory=list)
    rtt_cases: list[RttCase] = field(default_factory=list)
    to_ifup_ns: int = 0

    def learn(self, value: Learnt, row_kind: str, stream_name: str, field_name: str | None = None) -> bool:
        """Keep a learnt value; outside its bound it is also a divergence row. True if inside."""
        self.learnt.append(value)
        if value.inside:
            return True
        kind = row_kind if row_kind != "TIME" else ("LATE" if value.value > value.hi else "EARLY")
        edge = value.hi if value.value > value.hi else value.lo
        self.rows.append(_row(kind, stream_name, value.t_ns, field_name=field_name or f"learnt {value.name}",
                              pred_value=edge, obs_value=value.value,
                              detail=f"{value.name} {value.value} outside [{value.lo}, {value.hi}] ({value.where}); "
                                     "not adopted"))
        return False


def _row(kind: str, stream_name: str, t_ns: int, field_name: str | None = None, pred_value: int = 0,
         obs_value: int = 0, frame: int | None = None, detail: str = "") -> dict:
    """A divergence row made outside the comparison core, in its row format."""
    return {"kind": kind, "field": field_name, "stream": 0, "stream_name": stream_name, "pred_id": None,
            "pred_ns": None, "expected_ns": None, "obs_id": None, "obs_ns": t_ns, "frame": frame, "delta_ns": 0,
            "tol_ns": 0, "pred_value": pred_value, "obs_value": obs_value, "related": None, "detail": detail}


def model_inputs(obs: Observation, end_ns: int, app_latency_ns: int = APP_LATENCY_NS) -> ModelInputs:
    """The model's inputs for the observation up to `end_ns`, with what was learnt."""
    mi = ModelInputs()
    board_ip = int(obs.declared.interface.address.ip)
    to_ifup = obs.ifup_ns - obs.boot_ns
    mi.learn(Learnt("boot_to_ifup", to_ifup, 0, BOOT_TO_IFUP_MAX_NS, "first boot", obs.ifup_ns), "TIME", "LINK_UP")
    mi.to_ifup_ns = min(max(0, to_ifup), BOOT_TO_IFUP_MAX_NS)

    def within(t: int) -> bool:
        return obs.boot_ns <= t <= end_ns

    for t, frame in obs.inbound_frames():
        if within(t):
            mi.inputs.append(TimedInput(t, ORDER_FRAME, FrameArrived(frame)))
    _host_inputs(obs, mi, within, app_latency_ns)
    # The board's SYNs and SYN-ACKs name its ISN and timestamp offset per flow (learnt in the loop).
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & np.isin(obs.frame_kind, [EventKind.TCP_SYNACK,
                                                                                   EventKind.TCP_SYN]))
    mi.isn_frames = sorted(zip(obs.frames.time_ns[sel].tolist(), obs.raw_frames(sel), strict=True),
                           key=lambda x: x[0])
    _board_connects(obs, mi, end_ns, app_latency_ns)
    mi.timer_hints = _timer_evidence(obs, board_ip)
    # The board's own resets (QMP, guest-initiated): where the model has none near, it is
    # restarted there after its own reset, if any, is predicted (loop._resync_at_reset).
    # Such a reset is always a row of its own (EXTRA), so the resync hides nothing.
    guest = np.flatnonzero((obs.event_kind == EventKind.QMP_RESET) & (obs.event_table.detail0 == _guest_reset()))
    mi.resets_seen = [int(obs.events.time_ns[i]) for i in guest if within(int(obs.events.time_ns[i]))]
    _phy_phase(obs, mi, within)
    return mi


def _guest_reset() -> int:
    from harness.ingest.events import ResetReason

    return int(ResetReason.GUEST_RESET)


def _host_inputs(obs: Observation, mi: ModelInputs, within, app_latency_ns: int) -> None:
    """Link, watchdog, power and reboot inputs from the harness's records."""
    first_power = True
    for rec in obs.records():
        name, t = rec["event"], int(rec["host_wall_ns"])
        if name == "power_on" and first_power:
            first_power = False
            continue
        if not within(t):
            continue
        ev: BoardInput | None = None
        if name in ("link_down", "link_up"):
            ev = LinkChanged(name == "link_up")
        elif name == "watchdog_start":
            ev = WatchdogDaemonStart(int(rec["timeout"]), int(rec.get("period", 1)))
        elif name == "watchdog_starve":
            ev = WatchdogSignal("sigkill")
        elif name == "watchdog_stop":
            ev = WatchdogSignal("sigterm")
        elif name in ("reset", "power_on"):
            ev = PowerCycle()
        elif name == "reboot":
            t = _reboot_time(obs, mi, t, app_latency_ns)
            ev = Reboot()
        if ev is not None:
            mi.inputs.append(TimedInput(t, ORDER_HOST, ev))


def _reboot_time(obs: Observation, mi: ModelInputs, asked: int, app_latency_ns: int) -> int:
    """`reboot` typed at `asked`: busybox init first runs its shutdown (SIGTERM to all, a
    second's pause, SIGKILL, another pause) before reboot(2); how long that took is
    learnt from the board's Restarting line, within the shutdown bound."""
    lines = obs.events.time_ns[obs.event_kind == EventKind.RESTARTING]
    later = np.sort(lines[lines >= asked])
    if not later.size:
        return asked     # no line: the model says when it was due, and it is MISSING
    hi = SHUTDOWN_LATENCY_NS + app_latency_ns
    ok = mi.learn(Learnt("app_latency", int(later[0]) - asked, 0, hi, "reboot -> Restarting line", int(later[0])),
                  "TIME", "RESTARTING")
    return int(later[0]) - 1 if ok else asked


def _first_syns(obs: Observation, board_ip: int) -> list[tuple[int, int, FrameView]]:
    """(time, index, view) of the first SYN of each flow the board opened, in time order."""
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & (obs.frame_kind == EventKind.TCP_SYN))
    sel = sel[np.argsort(obs.frames.time_ns[sel], kind="stable")]
    seen, out = set(), []
    for i, v in zip(sel.tolist(), obs.views(sel), strict=True):
        if v is None or v.flow(board_ip) in seen:
            continue
        seen.add(v.flow(board_ip))
        out.append((int(obs.frames.time_ns[i]), i, v))
    return out


def ephemeral_port_bound(config) -> tuple[int, int]:
    """net.ipv4.ip_local_port_range as (low, high)."""
    low, high = (int(x) for x in str(config.sysctl("net.ipv4.ip_local_port_range")).split())
    return low, high


def _board_connects(obs: Observation, mi: ModelInputs, end_ns: int, app_latency_ns: int) -> None:
    """The board's own connect() calls and writes, from the harness's board_connect records.

    The request is the input. When the program got to connect() (the first SYN of a new
    flow to that port, or the ARP request for the peer just before it) is learnt, within
    the application-latency bound; the port Linux drew is learnt within
    ip_local_port_range (__inet_hash_connect). The bytes asked for are the write; when it
    came is learnt from the first new data the board sent, within the same bound after the
    connection was established. Outside a bound the model connects (or writes) when it was
    asked, so the board's frames show as LATE, MISSING or EXTRA."""
    board_ip = int(obs.declared.interface.address.ip)
    low, high = ephemeral_port_bound(obs.declared)
    syns = _first_syns(obs, board_ip)
    used: set[int] = set()
    for n, rec in enumerate(obs.records("board_connect")):
        asked, addr, port = int(rec["host_wall_ns"]), str(rec["addr"]), int(rec["port"])
        if not obs.boot_ns <= asked <= end_ns:
            continue
        data = rec.get("data")
        fd = f"board{n}"
        t_call, sport, observed = asked, 0, 0
        match = next(((t, i, v) for t, i, v in syns if i not in used and t >= asked and t <= end_ns
                      and v.flow(board_ip)[:2] == (ip4(addr), port)), None)
        if match is not None:
            t_syn, i, v = match
            used.add(i)
            observed = v.sport
            t_first = _resolution_start(obs, ip4(addr), asked, t_syn)
            where = f"connect to {addr}:{port}"
            if mi.learn(Learnt("app_latency", t_first - asked, 0, app_latency_ns, where, t_first), "TIME", "TCP_SYN"):
                t_call = t_first
            in_range = low <= v.sport <= high and (v.sport - low) % 2 == 0
            if mi.learn(Learnt("ephemeral_port", v.sport, low, high if in_range else low - 1, where, t_syn),
                        "FIELD_MISMATCH", "TCP_SYN", "tcp_sport"):
                sport = v.sport
        else:
            # No SYN reached the wire (the peer never answered ARP): the program's
            # connect() shows as the board's first request for the peer after it asked.
            arps = _arp_requests(obs, ip4(addr), asked, min(end_ns, asked + app_latency_ns))
            if arps:
                mi.learn(Learnt("app_latency", arps[0] - 1_000 - asked, 0, app_latency_ns,
                                f"connect to {addr}:{port} (no SYN seen)", arps[0]), "TIME", "ARP_REQUEST")
                t_call = arps[0] - 1_000
        bc = BoardConnect(fd, addr, port, asked, None if data is None else str(data).encode(),
                          bool(rec.get("shutdown")), sport, observed)
        mi.connects.append(bc)
        mi.inputs.append(TimedInput(t_call, ORDER_APP, Connect(fd, addr, port, sport)))
    _retime_synacks(obs, mi)
    for bc in mi.connects:
        if bc.data is not None:
            _app_write(obs, mi, bc, end_ns, app_latency_ns)
    _board_closes(obs, mi, end_ns, app_latency_ns)


def _board_closes(obs: Observation, mi: ModelInputs, end_ns: int, app_latency_ns: int) -> None:
    """The harness's board_close records: the program connected to that port was ended, so
    the kernel closed its socket (tcp_close). From FIN_WAIT2 that close sends nothing, so
    when it came is not learnt: it is at least the request and at most app_latency after
    (Close.late_ns), and where the board's answer would depend on it the model stops."""
    for rec in obs.records("board_close"):
        asked, port = int(rec["host_wall_ns"]), int(rec["port"])
        if not obs.boot_ns <= asked <= end_ns:
            continue
        bc = next((c for c in reversed(mi.connects) if c.port == port and c.asked_ns <= asked), None)
        if bc is not None:
            mi.inputs.append(TimedInput(asked, ORDER_APP, Close(bc.fd, app_latency_ns)))


def _arp_requests(obs: Observation, peer_ip: int, t0: int, t1: int) -> list[int]:
    """Times of the board's broadcast ARP requests for `peer_ip` in [t0, t1], in order."""
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & (obs.frame_kind == EventKind.ARP_REQUEST)
                         & ~obs.frame_probe & (obs.frames.time_ns >= t0) & (obs.frames.time_ns <= t1))
    return sorted(int(obs.frames.time_ns[i]) for i, v in zip(sel.tolist(), obs.views(sel), strict=True)
                  if v is not None and v.arp_tip == peer_ip)


def _resolution_start(obs: Observation, peer_ip: int, not_before: int, syn_t: int) -> int:
    """The time of the board's broadcast ARP request for `peer_ip` that led to a SYN at
    `syn_t` (the first one after the request), or `syn_t` when it needed none."""
    arps = _arp_requests(obs, peer_ip, not_before, syn_t)
    return arps[0] - 1_000 if arps else syn_t


def _flow_frames(obs: Observation, key: int, t0: int) -> list[tuple[int, int, FrameView | None]]:
    """(time, index, view) of stream `key`'s frames from `t0` on, in time order."""
    f = obs.frames
    sel = np.flatnonzero((f.stream == key) & (f.time_ns >= t0))
    sel = sel[np.argsort(f.time_ns[sel], kind="stable")]
    return list(zip(f.time_ns[sel].tolist(), sel.tolist(), obs.views(sel), strict=True))


def _synack_input(mi: ModelInputs, bc: BoardConnect, board_ip: int, t_from: int) -> int | None:
    """Index in mi.inputs of the peer's SYN-ACK on a connect's flow."""
    flow = (ip4(bc.addr), bc.port, bc.observed_sport)
    for j, ti in enumerate(mi.inputs):
        if ti.t < t_from or not isinstance(ti.input, FrameArrived):
            continue
        v = FrameView.parse(ti.input.raw)
        if v is not None and v.flow(board_ip) == flow and v.flags & 0x17 == 0x12:
            return j
    return None


def _retime_synacks(obs: Observation, mi: ModelInputs) -> None:
    """The SYN-ACK of each flow the board connected is fed when the board measured it.

    The board takes its first RTT sample when it processes the SYN-ACK: from the SYN's
    send stamp to then (tcp_rcv_synsent_state_process -> tcp_ack -> tcp_clean_rtx_queue),
    and the sample sets the RTO (srtt + max(2 rtt, 200 ms), rounded up to jiffies), so a
    jiffy across a 10 ms boundary doubles with every backoff. The emulated board's clock
    and the capture's do not run alike over a few ms (the guest runs under TCG), so the
    board's own word is taken: its handshake ACK, sent in that same softirq, carries a
    TSval that many ms after its SYN's. Learnt as `first_rtt`, within HANDSHAKE_ACK_MAX;
    never before the SYN-ACK reached the wire. The ACK is stamped after the sample, and
    under load the guest's clock moves between the two, so the rest of the span down to
    the wire's time is kept as RttCase alternatives."""
    board_ip = int(obs.declared.interface.address.ip)
    for bc in mi.connects:
        if not bc.sport:
            continue
        conn_t = min(ti.t for ti in mi.inputs if isinstance(ti.input, Connect) and ti.input.fd == bc.fd)
        syns = _flow_frames(obs, bc.stream(EventKind.TCP_SYN), conn_t)
        acks = [x for x in _flow_frames(obs, bc.stream(EventKind.TCP_ACK), conn_t) if x[2] is not None]
        j = _synack_input(mi, bc, board_ip, conn_t)
        if not syns or not acks or j is None or syns[0][2] is None:
            continue
        ts_syn, ts_ack = syns[0][2].tsval, acks[0][2].tsval
        if ts_syn is None or ts_ack is None:
            continue   # no timestamps: keep the wire time
        diff_ns = ((ts_ack - ts_syn) % (1 << 32)) * 1_000_000
        rtt_ns = diff_ns + 500_000
        wire = mi.inputs[j].t
        lo = max(0, wire - conn_t - 1_000_000)   # the TSvals are whole ms
        if mi.learn(Learnt("first_rtt", rtt_ns, lo, HANDSHAKE_ACK_MAX_NS, f"connect to {bc.addr}:{bc.port}",
                           acks[0][0]), "TIME", "TCP_ACK"):
            # the ms the TSvals are rounded to may put it after the board's first data,
            # which it cannot be: connect() returned before the program wrote
            data = [t for t, _, v in _flow_frames(obs, bc.stream(EventKind.TCP_DATA), wire) if v is not None]
            last = min(conn_t + min(diff_ns + 999_999, HANDSHAKE_ACK_MAX_NS), data[0] - 1 if data else 1 << 62)

            first = max(wire, min(conn_t + rtt_ns, last))
            span = range(max(wire, conn_t + lo), last + 1, JIFFY // 4)
            others = sorted({max(wire, min(t, last)) for t in span} - {first}, key=lambda t: abs(t - first))
            old = mi.inputs[j]
            mi.inputs[j] = TimedInput(first, old.order, old.input)
            mi.rtt_cases.append(RttCase(j, len(mi.learnt) - 1, conn_t, (first, *others), last - conn_t))


def _app_write(obs: Observation, mi: ModelInputs, bc: BoardConnect, end_ns: int, app_latency_ns: int) -> None:
    """The write asked for on a connected flow: the bytes are the harness's; when the
    program wrote is learnt from the first new data the board sent, within the
    application-latency bound after the connection was established. Every data segment
    the board sent on the flow must carry the asked bytes at its offset."""
    board_ip = int(obs.declared.interface.address.ip)
    j = _synack_input(mi, bc, board_ip, bc.asked_ns)
    if j is None:
        return      # never established: connect() has not returned, nothing is written
    established = mi.inputs[j].t
    t_write = established
    data_segs = [x for x in _flow_frames(obs, bc.stream(EventKind.TCP_DATA), bc.asked_ns)
                 if x[2] is not None and x[2].payload and x[0] <= end_ns]
    first_seq = None
    for t, i, v in data_segs:
        rel = int(obs.frames.fields[i, FIELD["tcp_rel_seq"]])
        if first_seq is None and rel == 1:
            first_seq = t
        _check_payload(mi, bc, v.payload, rel, t, int(obs.frames.frame[i]))
    if first_seq is not None:
        where = f"write on {bc.addr}:{bc.port}"
        if mi.learn(Learnt("app_latency", first_seq - established, 0, app_latency_ns, where, first_seq), "TIME",
                    "TCP_DATA"):
            t_write = first_seq
    mi.inputs.append(TimedInput(t_write, ORDER_APP, Send(bc.fd, bc.data)))
    if bc.shutdown:
        _app_shutdown(obs, mi, bc, t_write, end_ns, app_latency_ns)


def _app_shutdown(obs: Observation, mi: ModelInputs, bc: BoardConnect, t_write: int, end_ns: int,
                  app_latency_ns: int) -> None:
    """nc's shutdown(SHUT_WR) at its stdin's EOF, after its write: when is learnt from the
    board's first FIN on the flow (tcp_shutdown -> tcp_send_fin sends it at once), within
    the application-latency bound after the write; outside it (or with no FIN) the model
    shuts down right after the write, so a late or missing FIN shows."""
    fins = sorted(t for kind in (EventKind.TCP_FIN, EventKind.TCP_DATA)
                  for t, _, v in _flow_frames(obs, bc.stream(kind), t_write)
                  if v is not None and v.flags & 0x01 and t <= end_ns)
    t_shut = t_write
    if fins:
        where = f"shutdown on {bc.addr}:{bc.port}"
        if mi.learn(Learnt("app_latency", fins[0] - t_write, 0, app_latency_ns, where, fins[0]), "TIME", "TCP_FIN"):
            t_shut = fins[0]
    mi.inputs.append(TimedInput(t_shut, ORDER_APP, Shutdown(bc.fd)))


def _check_payload(mi: ModelInputs, bc: BoardConnect, payload: bytes, rel: int, t: int, frame: int) -> None:
    """A data segment's bytes against the asked bytes at its offset (rel 1 is the first)."""
    want = bc.data[max(0, rel - 1):max(0, rel - 1) + len(payload)]
    if payload[:len(want)] == want:
        return      # bytes past the asked ones are EXTRA or a payload_len mismatch in the core
    mi.rows.append(_row("FIELD_MISMATCH", "TCP_DATA", t, "payload", zlib.crc32(want), zlib.crc32(payload), frame,
                        f"{ip4_str(ip4(bc.addr))}:{bc.port} offset {rel - 1}: the application was asked to write "
                        f"{want[:32]!r}, the board sent {payload[:32]!r}"))


def _timer_evidence(obs: Observation, board_ip: int) -> list[tuple[int, tuple]]:
    """The frames the board sends when its own timers fire (broadcast ARP requests; SYNs,
    SYN-ACKs and data, which retransmit; keepalive probes, whose first timer an accepting
    daemon starts when it gets to accept()), keyed as models.board.Board.timer_hints wants:
    learnt as `timer_lateness`, adopted by the model only inside each timer's window."""
    kinds = [EventKind.ARP_REQUEST, EventKind.TCP_SYN, EventKind.TCP_SYNACK, EventKind.TCP_DATA, EventKind.TCP_PROBE]
    out = []
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & ~obs.frame_probe & np.isin(obs.frame_kind, kinds))
    gateway = obs.declared.interface.gateway
    arps: dict[int, list[int]] = {}        # broadcast requests by target
    last: dict[tuple, int] = {}            # the flow's previous frame
    for i, v in zip(sel.tolist(), obs.views(sel), strict=True):
        if v is None:
            continue
        t = int(obs.frames.time_ns[i])
        if v.arp_tip is not None:
            what = ("arp", v.arp_tip)
            arps.setdefault(v.arp_tip, []).append(t)
        else:
            peer_ip, peer_port, board_port = v.flow(board_ip)
            what = ("tcp", board_port, peer_ip, peer_port)
            # A retransmission that found its neighbour flushed (a carrier loss) began a
            # resolution: the timer ran at the first broadcast request for the next hop
            # since the flow's previous frame, and the segment left only with the reply.
            hops = [peer_ip] + ([int(gateway)] if gateway is not None else [])
            began = [a for h in hops for a in arps.get(h, ()) if last.get(what, -1) < a <= t]
            last[what] = t
            if began:
                t = min(began) - 1_000
        out.append((t, what))
    return out


def _phy_phase(obs: Observation, mi: ModelInputs, within) -> None:
    """phylib's poll phase, learnt from the board's Link is Up/Down lines: a line within
    one PHY_STATE_TIME (plus the wheel's slack) of the link change before it sets the
    model's poll there; after a reset, the first Link is Up says when the new boot
    brought eth0 up (boot_to_ifup). A line outside its bound teaches nothing: the model's
    own poll stands, and the line is compared against that poll's window."""
    from models.clock import timer_wheel_slack
    from models.phy import PHY_STATE_TIME

    changes = [(obs.ifup_ns, "link")] + [(int(r["host_wall_ns"]), "link") for r in obs.records()
                                          if r["event"] in ("link_down", "link_up")]
    resets = obs.events.time_ns[obs.event_kind == EventKind.QMP_RESET]
    changes += [(int(t), "reset") for t in resets.tolist() if t > obs.boot_ns]
    changes.sort()
    poll_hi = PHY_STATE_TIME + timer_wheel_slack(PHY_STATE_TIME)
    for i in np.flatnonzero(np.isin(obs.event_kind, [EventKind.LINK_DOWN, EventKind.LINK_UP])):
        t = int(obs.events.time_ns[i])
        before = [c for c in changes if c[0] <= t]
        if not within(t) or not before:
            continue
        c, what = before[-1]
        if what == "reset":
            v = Learnt("boot_to_ifup", t - c, 0, BOOT_TO_IFUP_MAX_NS, "Link is Up after a reset", t)
        else:
            v = Learnt("phy_poll_phase", t - c, 0, poll_hi, "Link line after the last link change", t)
        mi.learnt.append(v)     # a line outside is compared against the model's own poll's window
        if v.inside:
            (mi.ifups_seen if what == "reset" else mi.phy_seen).append(t)
        if what == "reset":
            changes.append((t, "link"))     # eth0 is up: later lines are polls again
            changes.sort()
