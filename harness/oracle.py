"""The oracle loop: what the board received drives the stack model; what the model says
Linux would have sent is compared with what the board sent.

    artifacts (pcap, console.log, qmp.jsonl, host-events.jsonl)
        -> Observation: frames and events on one timeline (harness.ingest)
        -> model inputs: frames to the board, link changes, watchdog stimuli, reboots
        -> models.board.Board, driven event by event, TCP sequence numbers translated
           (the model picks its own ISN and TSval offset, as Linux does; the peer's
           acknowledgements are moved into the model's sequence space, as packetdrill does)
        -> predicted outputs, written to predicted.pcap and read back by the same reader,
           so both sides get their stream keys and fields from one code path
        -> harness.compare: divergence rows

What is compared is what the kernel decides by itself: ARP replies and (broadcast) requests,
SYN-ACKs and their options and retransmissions, RSTs for closed ports, ICMP echo replies,
the link and watchdog console lines, and resets. Segments whose content and timing the
application decides (data, FIN, the ACKs that ride on them) are not predicted, except the
data on flows the board connected: the application's writes are learnt from the capture
and given to the model (harness.oracle_app), which predicts their retransmissions. Nor are
unicast ARP requests (NUD_PROBE): Linux sends them only when no upper layer confirmed the
neighbour, and TCP's confirmations come from the application's data, which the model is
not given yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.compare import compare
from harness.compare.events import (
    ANCHOR_ABSOLUTE,
    ANCHOR_PREVIOUS_OBSERVED,
    Constraints,
    ObservedEvents,
    PredictedEvents,
)
from harness.errors import HarnessError
from harness.ingest.console import _classify, parse_console
from harness.ingest.events import Clock, EventKind, EventTable, read_host_events, read_qmp_log
from harness.ingest.pcap import read_capture
from harness.ingest.pcap_reference import frame_bytes
from harness.ingest.pcapwrite import write_pcap
from harness.ingest.streams import (
    FIELD,
    FROM_BOARD,
    STREAM_FIELDS,
    TO_BOARD,
    concat_observed,
    field_mask,
    frame_events,
    nonframe_events,
    stream_key,
)
from harness.ingest.timeline import build_timeline
from harness.oracle_app import APP_DATA_FIELDS, app_data_keep, with_app_inputs
from models.config import FirmwareConfig

# Frame kinds the kernel sends on its own (see the module docstring).
KERNEL_FRAME_KINDS = (EventKind.ARP_REQUEST, EventKind.ARP_REPLY, EventKind.TCP_SYNACK, EventKind.TCP_RST,
                      EventKind.TCP_SYN, EventKind.ICMP_ECHO_REPLY)
CONSOLE_KINDS = (EventKind.LINK_DOWN, EventKind.LINK_UP, EventKind.WATCHDOG_DID_NOT_STOP,
                 EventKind.NETDEV_WATCHDOG, EventKind.RESTARTING)
CHECKED_FIELDS = {
    EventKind.TCP_SYNACK: field_mask("tcp_flags", "tcp_mss", "tcp_wscale", "tcp_sack_perm", "tcp_timestamps",
                                     "tcp_opt_order", "tcp_window", "tcp_rel_ack", "ip_ttl", "ip_df"),
    EventKind.TCP_RST: field_mask("tcp_flags", "tcp_rel_ack", "ip_ttl"),
    EventKind.TCP_SYN: field_mask("tcp_flags", "tcp_mss", "tcp_wscale", "tcp_sack_perm", "tcp_timestamps",
                                  "tcp_opt_order", "tcp_window", "ip_ttl", "ip_df"),
    EventKind.ARP_REPLY: field_mask("arp_op"),
    EventKind.ARP_REQUEST: field_mask("arp_op"),
    EventKind.ICMP_ECHO_REPLY: field_mask("icmp_type", "icmp_code", "ip_ttl"),
    EventKind.LINK_UP: field_mask("detail0", "detail1"),
    EventKind.TCP_DATA: APP_DATA_FIELDS,   # on flows the board connected (harness.oracle_app)
}


class OracleError(HarnessError):
    """The run's artifacts cannot be compared (names the file and what is wrong)."""


@dataclass(frozen=True)
class Tolerance:
    """How far an observation may be from its prediction (per board: emulation is slow).

    frame_ns: frames the kernel sends in reply (QEMU and slirp add latency);
    console_ns: console lines (serial latency on top of the model's window);
    reset_extra_ns: resets (beyond the watchdog daemon's kick period);
    fraction: of the predicted gap from the stream's previous event (packetdrill's rule).
    """

    frame_ns: int = 100_000_000
    console_ns: int = 250_000_000
    reset_extra_ns: int = 500_000_000
    fraction: float = 0.05

    def scaled(self, k: float) -> Tolerance:
        return Tolerance(int(self.frame_ns * k), int(self.console_ns * k), int(self.reset_extra_ns * k), self.fraction)


@dataclass
class Artifacts:
    """Where a run's records are. `capture_clock`: 'qemu-filter-dump' or 'host-wall'."""

    captures: list[Path]
    console: Path
    host_events: Path
    qmp: Path | None = None
    capture_clock: str = "host-wall"

    @classmethod
    def in_dir(cls, out: Path, capture_clock: str) -> Artifacts:
        caps = sorted(out.glob("capture*.pcap"), key=lambda p: (len(p.name), p.name))
        qmp = out / "qmp.jsonl"
        return cls(caps, out / "console.log", out / "host-events.jsonl", qmp if qmp.exists() else None,
                   capture_clock)


@dataclass
class Observation:
    """A run's records on one timeline (common clock: host wall ns)."""

    declared: FirmwareConfig
    frames: ObservedEvents           # every frame to or from the board
    frame_kind: np.ndarray
    frame_dir: np.ndarray
    frame_file: np.ndarray           # index into `captures`
    frame_number: np.ndarray         # 1-based, per file
    frame_probe: np.ndarray          # unicast ARP request: a NUD_PROBE, not a resolution
    events: ObservedEvents           # console, QMP and host events
    event_kind: np.ndarray
    event_table: EventTable
    timeline: object
    captures: list[Path]
    host_events: Path
    boot_ns: int                     # the common time of the first boot's guest clock 0
    ifup_ns: int                     # the first "Link is Up" after that boot (eth0 up)

    _bytes: dict[int, bytes] = field(default_factory=dict, repr=False)   # capture file -> contents

    def raw_frames(self, sel: np.ndarray) -> list[bytes]:
        """The bytes of the frames at indices `sel`, in that order (each capture read once)."""
        out: dict[int, bytes] = {}
        for f in np.unique(self.frame_file[sel]).tolist():
            if f not in self._bytes:
                self._bytes[f] = self.captures[f].read_bytes()
            mine = sel[self.frame_file[sel] == f]
            raw = frame_bytes(self._bytes[f], set(self.frame_number[mine].tolist()))
            out.update((int(i), raw[int(self.frame_number[i])]) for i in mine)
        return [out[int(i)] for i in sel]

    def inbound_frames(self) -> list[tuple[int, bytes]]:
        """(common time, bytes) of every frame sent to the board, in time order."""
        sel = np.flatnonzero(self.frame_dir == TO_BOARD)
        out = list(zip(self.frames.time_ns[sel].tolist(), self.raw_frames(sel), strict=True))
        return sorted(out, key=lambda x: x[0])


def observe(art: Artifacts, declared: FirmwareConfig) -> Observation:
    """Read and align a run's records; `OracleError` names the file that does not fit."""
    for p in [*art.captures, art.console, art.host_events]:
        if not p.exists():
            raise OracleError(f"{p}: missing (a run keeps its capture, console log and host events)")
    console = parse_console(art.console.read_bytes(), str(art.console), strict=False)
    host = read_host_events(art.host_events)
    qmp = read_qmp_log(art.qmp) if art.qmp is not None else None
    tables = []
    for p in art.captures:
        cap = read_capture(p, strict=False)
        if cap.error is not None and len(cap.packets) == 0:
            raise OracleError(str(cap.error)) from cap.error
        tables.append(cap.packets)
    timeline = build_timeline(console, host, [t.time_ns for t in tables], art.capture_clock, qmp)
    if art.capture_clock == "qemu-filter-dump" and qmp is not None:
        _pin_filter_dump(timeline, art.host_events, qmp, len(tables))
    parts, kinds, dirs, files, numbers, probes = [], [], [], [], [], []
    for f, table in enumerate(tables):
        common = timeline.to_common(Clock.CAPTURE, table.time_ns.astype(np.int64), f)
        fe = frame_events(table, declared, time_ns=common)
        parts.append(fe.events)
        kinds.append(fe.kind)
        dirs.append(fe.direction)
        files.append(np.full(len(fe.kind), f))
        numbers.append(fe.events.frame)
        probes.append(_unicast_arp_request(table, fe))
    frames = concat_observed(*parts) if parts else ObservedEvents.build([], [], n_fields=len(STREAM_FIELDS))
    ev = EventTable.concat([t for t in (console.events(), qmp, host) if t is not None])
    events = nonframe_events(ev, timeline)
    # Model time 0: the first run of the VM (QMP RESUME), else the harness's power-on
    # record, else the first boot's guest clock 0.
    resumes = events.time_ns[ev.kind == EventKind.QMP_RESUME]
    ons = events.time_ns[ev.kind == EventKind.HOST_POWER_ON]
    if resumes.size:
        boot_ns = int(resumes.min())
    elif ons.size:
        boot_ns = int(ons.min())
    elif console.boots:
        boot_ns = int(timeline.offset(Clock.GUEST, 0).offset_ns)
    else:
        boot_ns = int(events.time_ns.min(initial=0))
    up = np.flatnonzero((ev.kind == EventKind.LINK_UP) & (events.time_ns >= boot_ns))
    ifup_ns = int(events.time_ns[up].min()) if up.size else boot_ns
    def cat(xs, dt):
        return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

    return Observation(declared, frames, cat(kinds, np.int16), cat(dirs, np.int8), cat(files, np.int64),
                       cat(numbers, np.int64), cat(probes, bool), events, ev.kind.astype(np.int16), ev, timeline,
                       list(art.captures), art.host_events, boot_ns, ifup_ns)


def _pin_filter_dump(timeline, host_events: Path, qmp: EventTable, n_files: int) -> None:
    """filter-dump stamps = the wall second the filter was made in + QEMU's virtual clock,
    which reads 0 at the VM's first RESUME; the board driver records that second
    (`capture_filter`), so each file's offset is exact: RESUME wall - that second."""
    from harness.ingest.timeline import ClockOffset

    made = [json.loads(line) for line in host_events.read_text().splitlines()
            if '"capture_filter"' in line]
    resumes = np.sort(qmp.time_ns[qmp.kind == EventKind.QMP_RESUME])
    for seg in range(min(n_files, len(made))):
        rec = made[seg]
        sec_lo, sec_hi = rec["wall_before_ns"] // 1_000_000_000, rec["wall_after_ns"] // 1_000_000_000
        before = resumes[resumes >= rec["wall_before_ns"] - 60_000_000_000]
        if sec_lo != sec_hi or not before.size:
            continue  # made across a second boundary: keep the bounds' estimate
        # the first RESUME after this filter's power-on (the VM starts paused: -S)
        later = resumes[resumes >= rec["wall_before_ns"]]
        resume = int(later[0]) if later.size else int(before[-1])
        timeline.add(ClockOffset(Clock.CAPTURE, seg, resume - sec_lo * 1_000_000_000, 1_000_000, 2,
                                 "qemu-filter-dump: first QMP RESUME (virtual clock 0) minus the wall second "
                                 "the filter was made in (capture_filter record)"))


def _unicast_arp_request(table, fe) -> np.ndarray:
    dst = table.eth_dst.astype(np.uint64)[fe.row]
    return (fe.kind == EventKind.ARP_REQUEST) & (dst != np.uint64(0xFFFFFFFFFFFF))


# -- the model in the loop ------------------------------------------------------------------
@dataclass
class _Flow:
    obs_isn: int | None = None
    model_isn: int | None = None
    obs_ts: int | None = None
    model_ts: int | None = None


@dataclass
class ModelRun:
    """The model's outputs on the common timeline, and what it was fed."""

    outputs: list = field(default_factory=list)        # models.board.Predicted, t on the common clock
    fed: list[tuple[int, bytes]] = field(default_factory=list)  # frames given to the model (translated)
    constraints: list[dict] = field(default_factory=list)
    inputs: int = 0
    resolutions: list[int] = field(default_factory=list)   # neighbour resolutions begun (common t)
    linkwatch_delay_ns: int = 0


def _tcp_flow_key(frame: bytes, board_ip: int):
    """(peer ip, peer port, board port, tcp offset) of an IPv4/TCP frame, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    src, dst = int.from_bytes(frame[26:30], "big"), int.from_bytes(frame[30:34], "big")
    t = 14 + ihl
    if len(frame) < t + 20:
        return None
    sport, dport = int.from_bytes(frame[t:t + 2], "big"), int.from_bytes(frame[t + 2:t + 4], "big")
    if src == board_ip:
        return (dst, dport, sport), t
    return (src, sport, dport), t


def _rewrite_acks(frame: bytes, flow: _Flow) -> bytes:
    """Move the peer's ack (and TSecr, SACK edges) from the board's sequence space into the model's."""
    from models.wire import IPPROTO_TCP, EthernetRepr, Ipv4Repr, TcpRepr
    from models.wire.tcp import TCPOPT_SACK, TCPOPT_TIMESTAMP

    eth, payload = EthernetRepr.parse(frame)
    ip, seg = Ipv4Repr.parse(payload, verify_checksum=False)
    tcp, data = TcpRepr.parse(seg, ip.src, ip.dst, verify_checksum=False)
    d_seq = (flow.model_isn - flow.obs_isn) if flow.obs_isn is not None and flow.model_isn is not None else 0
    d_ts = (flow.model_ts - flow.obs_ts) if flow.obs_ts is not None and flow.model_ts is not None else 0
    if not d_seq and not d_ts:
        return frame
    opts = []
    for kind, value in tcp.options:
        if kind == TCPOPT_TIMESTAMP and value is not None and value[1]:
            value = (value[0], (value[1] + d_ts) & 0xFFFFFFFF)
        elif kind == TCPOPT_SACK and value:
            value = tuple(((a + d_seq) & 0xFFFFFFFF, (b + d_seq) & 0xFFFFFFFF) for a, b in value)
        opts.append((kind, value))
    ack = (tcp.ack + d_seq) & 0xFFFFFFFF if tcp.flags & 0x10 else tcp.ack
    new = TcpRepr(tcp.src_port, tcp.dst_port, tcp.seq, ack, tcp.flags, tcp.window, tuple(opts), tcp.urgent)
    seg2 = new.emit(data, ip.src, ip.dst)
    ip2 = Ipv4Repr(ip.src, ip.dst, IPPROTO_TCP, len(seg2), ip.ttl, ip.ident, ip.df, ip.mf, ip.frag_offset, ip.tos,
                   ip.options)
    return EthernetRepr(eth.dst, eth.src, eth.ethertype, eth.vlan_tci).emit(ip2.emit(seg2))


def _tcp_seq_ts(frame: bytes, t: int) -> tuple[int, int | None]:
    seq = int.from_bytes(frame[t + 4:t + 8], "big")
    doff = (frame[t + 12] >> 4) * 4
    opts = frame[t + 20:t + doff]
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        if k == 8 and opts[i + 1] == 10:
            return seq, int.from_bytes(opts[i + 2:i + 6], "big")
        i += opts[i + 1]
    return seq, None


def run_model(obs: Observation, start_ns: int, end_ns: int, boot_to_services_ns: int = 200_000_000,
              seed: int = 0, resync_ns: int = 1_000_000_000, linkwatch_delay_ns: int = 0) -> ModelRun:
    """Drive a model board with the observation's inputs from its boot to `end_ns`.

    Model time 0 is the observed boot; eth0 comes up in the model when it came up on the
    board (the first Link is Up line), so what the board learnt before the scenario (ARP
    entries from the harness's own SSH login) the model learns too.
    """
    from models.board import Board, BootTiming
    from models.clock import Window

    cfg = obs.declared
    board_ip = int(cfg.interface.address.ip)
    shift = obs.boot_ns
    to_ifup = max(0, obs.ifup_ns - obs.boot_ns)
    model = Board(cfg, seed=seed, boot=BootTiming(Window(to_ifup, to_ifup),
                                                   Window(boot_to_services_ns, boot_to_services_ns)), phy_phase=0,
                  describe_frames=False, linkwatch_delay_ns=linkwatch_delay_ns)
    run = ModelRun(linkwatch_delay_ns=linkwatch_delay_ns)
    inputs: list[tuple[int, int, dict]] = []   # (common t, order, input)
    for t, frame in obs.inbound_frames():
        if obs.boot_ns <= t <= end_ns:
            inputs.append((t, 1, {"kind": "frame", "raw": frame}))
    host = obs.event_table
    host_t = obs.events.time_ns
    for i in np.flatnonzero(np.isin(host.kind, [EventKind.HOST_LINK_DOWN, EventKind.HOST_LINK_UP,
                                                EventKind.HOST_WATCHDOG_START, EventKind.HOST_WATCHDOG_STARVE,
                                                EventKind.HOST_WATCHDOG_STOP, EventKind.RESTARTING])):
        t, k = int(host_t[i]), int(host.kind[i])
        if not obs.boot_ns <= t <= end_ns:
            continue
        if k in (EventKind.HOST_LINK_DOWN, EventKind.HOST_LINK_UP):
            ev = {"kind": "link", "up": k == EventKind.HOST_LINK_UP}
        elif k == EventKind.HOST_WATCHDOG_START:
            ev = {"kind": "watchdog_daemon_start", "timeout": int(host.detail0[i]), "period": int(host.detail1[i])}
        elif k == EventKind.HOST_WATCHDOG_STARVE:
            ev = {"kind": "watchdog_sigkill"}
        elif k == EventKind.HOST_WATCHDOG_STOP:
            ev = {"kind": "watchdog_sigterm"}
        else:
            ev = {"kind": "reboot"}
        inputs.append((t, 0, ev))
    # Observed board TCP segments, to learn the board's ISN and TSval offset per flow.
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & np.isin(obs.frame_kind, [EventKind.TCP_SYNACK,
                                                                                   EventKind.TCP_SYN]))
    learn = [(int(obs.frames.time_ns[i]), 2, {"kind": "learn", "raw": raw})
             for i, raw in zip(sel.tolist(), obs.raw_frames(sel), strict=True)]
    inputs = with_app_inputs(obs, inputs, _board_connects(obs, learn, end_ns), end_ns)
    model.timer_hints([(t - shift, what) for t, what in _timer_evidence(obs, board_ip)])
    # The board's own resets (QMP, guest-initiated): where the model has none near, it is
    # restarted there too (after its own reset, if any, is predicted: _resync_at_reset).
    guest = np.flatnonzero((obs.event_kind == EventKind.QMP_RESET) & (host.detail0 == _guest_reset_code()))
    for i in guest:
        t = int(host_t[i])
        if obs.boot_ns <= t <= end_ns:
            learn.append((t, 4, {"kind": "reset_seen"}))
    # phylib's poll phase, learnt from the board's own Link is Up/Down lines.
    for i in np.flatnonzero(np.isin(obs.event_kind, [EventKind.LINK_DOWN, EventKind.LINK_UP])):
        t = int(obs.events.time_ns[i])
        if obs.boot_ns <= t <= end_ns:
            learn.append((t, 3, {"kind": "phy_seen"}))
    queue = sorted(inputs + learn, key=lambda x: (x[0], x[1]))
    flows: dict[tuple, _Flow] = {}
    down_since = None
    qi = 0
    while True:
        t_in = queue[qi][0] - shift if qi < len(queue) else None
        t_timer = model.poll_at()
        cands = [x for x in (t_in, t_timer) if x is not None]
        if not cands:
            break
        now = min(cands)
        if now + shift > end_ns:
            break
        if t_in is not None and t_in == now:
            _, _, ev = queue[qi]
            qi += 1
            kind = ev["kind"]
            if kind == "learn":
                key = _tcp_flow_key(ev["raw"], board_ip)
                if key is not None:
                    flow = flows.setdefault(key[0], _Flow())
                    if flow.obs_isn is None:
                        flow.obs_isn, flow.obs_ts = _tcp_seq_ts(ev["raw"], key[1])
                continue
            if kind == "reset_seen":
                out = _resync_at_reset(model, now, end_ns - shift, resync_ns)
            elif kind == "phy_seen":
                out = model.phy_poll_observed(now) if model.up else []
            else:
                if kind == "frame":
                    frame = ev["raw"]
                    key = _tcp_flow_key(frame, board_ip)
                    if key is not None and key[0] in flows:
                        frame = _rewrite_acks(frame, flows[key[0]])
                    run.fed.append((now + shift, frame))
                    ev = {"kind": "frame", "raw": frame}
                elif kind == "link":
                    if not ev["up"] and down_since is None:
                        down_since = now + shift
                    elif ev["up"] and down_since is not None:
                        run.constraints.append({"kind": "no_frames_between", "from": down_since, "to": now + shift})
                        down_since = None
                try:
                    out = model.handle(now, ev)
                except Exception as exc:  # noqa: BLE001 - the model refusing an input is a finding, keep going
                    run.constraints.append({"kind": "model_refused_input", "t": now + shift, "input": kind,
                                            "error": str(exc)})
                    out = []
                run.inputs += 1
        else:
            out = model.on_timer(now)
        for p in out:
            p.t += shift
            if p.window is not None:
                p.window = Window(p.window.earliest + shift, p.window.latest + shift)
            if p.kind == "frame":
                raw = p.frame
                key = _tcp_flow_key(raw, board_ip)
                if key is not None and raw[key[1] + 13] & 0x02:  # SYN or SYN-ACK: the model's ISN
                    flow = flows.setdefault(key[0], _Flow())
                    if flow.model_isn is None:
                        flow.model_isn, flow.model_ts = _tcp_seq_ts(raw, key[1])
            run.outputs.append(p)
    if down_since is not None:
        run.constraints.append({"kind": "no_frames_between", "from": down_since, "to": end_ns})
    run.resolutions = [t + shift for t in model.resolutions]
    return run


def _resync_at_reset(model, now: int, until: int, near_ns: int) -> list:
    """The board reset at `now`. If the model reset within `near_ns` before, or will within
    `near_ns` after, nothing changes (the comparison measures the difference). Otherwise a
    copy of the model runs on to find the reset it would have made (returned, to be
    compared: a MISSING row if the board never made it), and the model restarts at `now`,
    so the reboot that followed is compared with a rebooted model rather than shifted."""
    import copy

    if any(now - near_ns <= r <= now for r in model.resets):
        return []
    due = model.wdt.expires_at
    if due is not None and due <= now + near_ns:
        return []
    ahead, own = copy.deepcopy(model), []
    while (t := ahead.poll_at()) is not None and t <= until and not own:
        own = [p for p in ahead.on_timer(t) if p.kind == "reset"]
    model.resync_reset(now)
    return own


def _timer_evidence(obs: Observation, board_ip: int) -> list[tuple[int, tuple]]:
    """The frames the board sends when its own timers fire (broadcast ARP requests; SYNs,
    SYN-ACKs and data, which retransmit), keyed as models.board.Board.timer_hints wants."""
    kinds = [EventKind.ARP_REQUEST, EventKind.TCP_SYN, EventKind.TCP_SYNACK, EventKind.TCP_DATA]
    out = []
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & ~obs.frame_probe & np.isin(obs.frame_kind, kinds))
    for i, frame in zip(sel.tolist(), obs.raw_frames(sel), strict=True):
        if obs.frame_kind[i] == EventKind.ARP_REQUEST:
            what = ("arp", int.from_bytes(frame[38:42], "big"))
        else:
            key = _tcp_flow_key(frame, board_ip)
            if key is None:
                continue
            (peer_ip, peer_port, board_port), _ = key
            what = ("tcp", board_port, peer_ip, peer_port)
        out.append((int(obs.frames.time_ns[i]), what))
    return out


def _board_connects(obs: Observation, learn: list, end_ns: int) -> list[tuple[int, int, dict]]:
    """The board's own connect() calls, as model inputs at the time of their first SYN.

    The harness records when it asked the board to connect (`board_connect`); the call
    itself is seen in the capture: the first SYN from the board to that port, whose
    source port (Linux picks it at random) the model is told to bind."""
    records = [json.loads(line) for line in obs.host_events.read_text().splitlines() if '"board_connect"' in line]
    out, used = [], set()
    for n, rec in enumerate(records):
        for t, _, item in learn:
            raw = item["raw"]
            key = _tcp_flow_key(raw, int(obs.declared.interface.address.ip))
            if key is None or t in used or t < rec["host_wall_ns"] - 2_000_000_000 or t > end_ns:
                continue
            (peer_ip, peer_port, board_port), off = key
            if peer_port == rec["port"] and raw[off + 13] & 0x12 == 0x02:  # SYN without ACK
                used.add(t)
                # connect() came before its SYN by the ARP resolution, if the board had to ask.
                t_call = _resolution_start(obs, peer_ip, rec["host_wall_ns"] - 2_000_000_000, t)
                out.append((t_call, 0, {"kind": "connect", "fd": f"board{n}", "addr": rec["addr"],
                                        "port": rec["port"], "sport": board_port}))
                break
    return out


def _resolution_start(obs: Observation, peer_ip: int, not_before: int, syn_t: int) -> int:
    """The time of the board's broadcast ARP request for `peer_ip` that led to a SYN at
    `syn_t` (the last one before it), or `syn_t` when it needed none."""
    sel = np.flatnonzero((obs.frame_dir == FROM_BOARD) & (obs.frame_kind == EventKind.ARP_REQUEST)
                         & ~obs.frame_probe & (obs.frames.time_ns >= not_before) & (obs.frames.time_ns <= syn_t))
    best = syn_t
    for i, frame in zip(sel.tolist(), obs.raw_frames(sel), strict=True):
        if int.from_bytes(frame[38:42], "big") == peer_ip:
            best = min(best, int(obs.frames.time_ns[i]) - 1_000)
    return best


# -- predicted events ------------------------------------------------------------------------
def predicted_events(obs: Observation, run: ModelRun, start_ns: int, end_ns: int, tol: Tolerance,
                     pcap_path: Path) -> tuple[PredictedEvents, list[str]]:
    """The model's outputs in [start, end] as PredictedEvents, keyed like the observation."""
    records = sorted([(t, f) for t, f in run.fed] +
                     [(p.t, p.frame) for p in run.outputs if p.kind == "frame"],
                     key=lambda r: r[0])
    write_pcap(pcap_path, records, nanosecond=True)
    table = read_capture(pcap_path).packets
    fe = frame_events(table, obs.declared)
    keep = (fe.direction == FROM_BOARD) & np.isin(fe.kind, KERNEL_FRAME_KINDS) & \
        ~_unicast_arp_request(table, fe) & (fe.events.time_ns >= start_ns) & (fe.events.time_ns <= end_ns)
    keep |= app_data_keep(obs, fe.events.stream, fe.events.time_ns, start_ns, end_ns)
    # Windows: the model gives one for what Linux randomises and for what a kernel timer
    # sends (the timer wheel's slack, summed along the chain of timers since the input that
    # started it). Such a window is where the model puts the frame whatever happened to
    # its predecessors, so it is anchored absolutely; a reply to an input is a point
    # measured from the observed time of its stream's previous event.
    win = {p.t: p.window for p in run.outputs if p.kind == "frame" and p.window is not None}
    idx = np.flatnonzero(keep)
    t = fe.events.time_ns[idx]
    lo = np.array([win[int(x)].earliest if int(x) in win else int(x) for x in t], np.int64)
    hi = np.array([win[int(x)].latest if int(x) in win else int(x) for x in t], np.int64)
    frame_anchor = np.array([ANCHOR_ABSOLUTE if int(x) in win else ANCHOR_PREVIOUS_OBSERVED for x in t], np.int64)
    maybe = {p.t for p in run.outputs if p.kind == "frame" and p.detail.get("optional")}
    optional = [np.array([int(x) in maybe for x in t], bool)]
    check = np.array([CHECKED_FIELDS.get(EventKind(int(k)), 0) for k in fe.kind[idx]], np.int64)
    kinds = [EventKind(int(k)).name for k in fe.kind[idx]]
    streams = [fe.events.stream[idx]]
    times, los, his, checks = [t], [lo], [hi], [check]
    fields = [fe.events.fields[idx]]
    tol_abs = [np.full(idx.size, tol.frame_ns)]
    anchors = [frame_anchor]
    # Console lines and resets.
    c_stream, c_t, c_lo, c_hi, c_fields, c_check, c_tol, c_anchor = [], [], [], [], [], [], [], []
    for p in run.outputs:
        if not start_ns <= p.t <= end_ns:
            continue
        if p.kind == "console":
            k, d0, d1, _ = _classify(p.detail["text"])
            if k not in CONSOLE_KINDS:
                continue
            tol_ns = tol.console_ns
        elif p.kind == "reset":
            k, d0, d1 = EventKind.QMP_RESET, 0, 0
            tol_ns = tol.reset_extra_ns + tol.console_ns
        else:
            continue
        w = p.window
        row = np.zeros(len(STREAM_FIELDS), np.int64)
        row[FIELD["detail0"]], row[FIELD["detail1"]] = d0, d1
        c_stream.append(stream_key(int(k)))
        c_t.append(p.t)
        c_lo.append(w.earliest if w else p.t)
        c_hi.append(w.latest if w else p.t)
        c_fields.append(row)
        c_check.append(CHECKED_FIELDS.get(EventKind(int(k)), 0))
        c_tol.append(tol_ns)
        c_anchor.append(ANCHOR_ABSOLUTE)
        kinds.append(EventKind(int(k)).name)
    if c_t:
        streams.append(np.array(c_stream, np.int64))
        times.append(np.array(c_t, np.int64))
        los.append(np.array(c_lo, np.int64))
        his.append(np.array(c_hi, np.int64))
        fields.append(np.array(c_fields, np.int64))
        checks.append(np.array(c_check, np.int64))
        tol_abs.append(np.array(c_tol, np.int64))
        anchors.append(np.array(c_anchor, np.int64))
        optional.append(np.zeros(len(c_t), bool))
    pred = PredictedEvents.build(np.concatenate(streams), np.concatenate(times), fields=np.concatenate(fields),
                                 check=np.concatenate(checks), tol_abs_ns=np.concatenate(tol_abs),
                                 tol_frac=tol.fraction, win_lo=np.concatenate(los), win_hi=np.concatenate(his),
                                 anchor=np.concatenate(anchors), optional=np.concatenate(optional))
    return pred, kinds


def observed_outputs(obs: Observation, start_ns: int, end_ns: int, use_qmp_resets: bool) -> ObservedEvents:
    """What the board did in [start, end] that the model predicts."""
    f = obs.frames
    keep = (obs.frame_dir == FROM_BOARD) & np.isin(obs.frame_kind, KERNEL_FRAME_KINDS) & ~obs.frame_probe & \
        (f.time_ns >= start_ns) & (f.time_ns <= end_ns)
    keep |= app_data_keep(obs, f.stream, f.time_ns, start_ns, end_ns)
    e = obs.events
    kinds = list(CONSOLE_KINDS) + ([EventKind.QMP_RESET] if use_qmp_resets else [])
    ekeep = np.isin(obs.event_kind, kinds) & (e.time_ns >= start_ns) & (e.time_ns <= end_ns)
    # A reset the harness asked for (power on, QMP system_reset) is not the firmware's doing.
    ekeep &= ~((obs.event_kind == EventKind.QMP_RESET) & (obs.event_table.detail0 != _guest_reset_code()))
    parts = [ObservedEvents(f.stream[keep], f.time_ns[keep], f.frame[keep], f.fields[keep]),
             ObservedEvents(e.stream[ekeep], e.time_ns[ekeep], e.frame[ekeep], e.fields[ekeep])]
    return concat_observed(*parts)


def _guest_reset_code() -> int:
    from harness.ingest.events import ResetReason

    return int(ResetReason.GUEST_RESET)


@dataclass
class Verdict:
    """The comparison of one run window: divergence rows and what was compared."""

    scenario: str
    rows: list[dict]
    predicted: int
    observed: int
    timeline: dict
    start_ns: int
    end_ns: int
    notes: list[str] = field(default_factory=list)
    series: dict = field(default_factory=dict)
    linkwatch_delay_ns: int = 0

    @property
    def ok(self) -> bool:
        return not self.rows

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "ok": self.ok, "divergences": self.rows, "predicted": self.predicted,
                "observed": self.observed, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "timeline": self.timeline, "notes": self.notes}


def check_run(art: Artifacts, declared: FirmwareConfig, start_ns: int, end_ns: int, scenario: str = "",
              tol: Tolerance = Tolerance(), out_dir: Path | None = None, seed: int = 0) -> Verdict:
    """The whole loop over one run's artifacts for the window [start_ns, end_ns] (common clock)."""
    obs = observe(art, declared)
    out_dir = out_dir or art.console.parent
    run = run_model(obs, start_ns, end_ns, seed=seed)
    verdict = _judge(obs, run, start_ns, end_ns, scenario, tol, art, out_dir)
    # When the carrier-off linkwatch work ran is not in the records (it is rate-limited to
    # once a second and runs when a worker gets to it), yet it decides whether a packet
    # sent just after carrier loss found the old neighbour entry or started a resolution.
    # Each distinct case is tried (the work just after each resolution the model began
    # within a second of a carrier loss); the board is judged by the one it matches best.
    if verdict.rows:
        for delay in _linkwatch_delays(run):
            alt = _judge(obs, run_model(obs, start_ns, end_ns, seed=seed, linkwatch_delay_ns=delay), start_ns,
                         end_ns, scenario, tol, art, out_dir)
            if len(alt.rows) < len(verdict.rows):
                verdict = alt
            if not verdict.rows:
                break
    if verdict.linkwatch_delay_ns:
        verdict.notes.append(f"linkwatch ran the carrier-off work {verdict.linkwatch_delay_ns / 1e6:.0f} ms after "
                             "carrier loss (the best match of the cases tried)")
    chosen = _predicted_pcap(out_dir, verdict.linkwatch_delay_ns)
    if chosen.name != "predicted.pcap":
        chosen.replace(out_dir / "predicted.pcap")
    for p in out_dir.glob("predicted-linkwatch-*.pcap"):
        p.unlink()
    (out_dir / "verdict.json").write_text(json.dumps(verdict.to_json(), indent=1, default=int) + "\n")
    return verdict


def _predicted_pcap(out_dir: Path, linkwatch_delay_ns: int) -> Path:
    """Where a model run's predictions are written; the chosen one ends as predicted.pcap."""
    return out_dir / (f"predicted-linkwatch-{linkwatch_delay_ns}.pcap" if linkwatch_delay_ns else "predicted.pcap")


LINKWATCH_MAX_DELAY_NS = 1_000_000_000   # linkwatch_nextevent: one non-urgent run a second


def _linkwatch_delays(run: ModelRun) -> list[int]:
    """Delays of the carrier-off linkwatch work that change what the model does: just after
    each neighbour resolution the model began within a second of a carrier loss."""
    offs = [p.t for p in run.outputs if p.kind == "console" and p.detail.get("text", "").endswith("Link is Down")]
    delays = {r - off + 1 for off in offs for r in run.resolutions if off <= r < off + LINKWATCH_MAX_DELAY_NS}
    return sorted(delays)


def _judge(obs: Observation, run: ModelRun, start_ns: int, end_ns: int, scenario: str, tol: Tolerance,
           art: Artifacts, out_dir: Path) -> Verdict:
    """Compare one model run with the observation."""
    pred, pred_kinds = predicted_events(obs, run, start_ns, end_ns, tol,
                                        _predicted_pcap(out_dir, run.linkwatch_delay_ns))
    seen = observed_outputs(obs, start_ns, end_ns, use_qmp_resets=art.qmp is not None)
    # Happens-before: nothing leaves the board while its link is down.
    board_streams = np.unique(seen.stream[seen.frame >= 0]) if len(seen) else np.zeros(0, np.int64)
    quiet = [(int(s), c["from"], c["to"]) for c in run.constraints if c["kind"] == "no_frames_between"
             for s in board_streams.tolist()]
    result = compare(pred, seen, Constraints.build(quiet=quiet), field_names=STREAM_FIELDS)
    rows = result.rows()
    names = {}
    for k, s in zip(pred_kinds, pred.stream.tolist(), strict=True):
        names[int(s)] = k
    for s, (fk) in zip(obs.frames.stream.tolist(), obs.frame_kind.tolist(), strict=True):
        names.setdefault(int(s), EventKind(int(fk)).name)
    for s, k in zip(obs.events.stream.tolist(), obs.event_kind.tolist(), strict=True):
        names.setdefault(int(s), EventKind(int(k)).name)
    for r in rows:
        r["stream_name"] = names.get(int(r["stream"]), "?")
    notes = [f"model refused input at {c['t']}: {c['input']}: {c['error']}" for c in run.constraints
             if c["kind"] == "model_refused_input"]
    series = {"predicted": [(names.get(int(s), "?"), int(t), int(lo), int(hi)) for s, t, lo, hi in
                            zip(pred.stream.tolist(), pred.time_ns.tolist(), pred.win_lo.tolist(),
                                pred.win_hi.tolist(), strict=True)],
              "observed": [(names.get(int(s), "?"), int(t)) for s, t in
                           zip(seen.stream.tolist(), seen.time_ns.tolist(), strict=True)],
              "quiet": [(c["from"], c["to"]) for c in run.constraints if c["kind"] == "no_frames_between"]}
    return Verdict(scenario, rows, len(pred), len(seen), obs.timeline.to_json(), start_ns, end_ns, notes, series,
                   run.linkwatch_delay_ns)
