"""Stage 4 of the oracle: the model's outputs against the board's -> a Verdict.

What the model predicts is written to predicted.pcap and read back by the same reader as
the capture, so both sides get their stream keys and fields from one code path; the
comparison core (harness.compare) aligns each stream with packetdrill's tolerance rule.

Compared, every frame the board's kernel sends by itself (ARP requests and replies, the
unicast probes of NUD_PROBE among them, SYN-ACKs, RSTs, SYNs, ICMP echo replies), the
data segments on flows the board connected for the harness (with the bytes the harness
asked for), every link, watchdog, restart, SYN-flood and kernel-fault console line, and every reset
the board made. A verdict that compared nothing, lacks a kind its scenario must provoke,
read a damaged capture or whose model failed is an error, never a pass.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import islice, product
from pathlib import Path

import numpy as np

from harness.compare import compare
from harness.compare.events import ANCHOR_ABSOLUTE, ANCHOR_PREVIOUS_OBSERVED, ObservedEvents, PredictedEvents
from harness.ingest.console import _classify
from harness.ingest.events import EventKind, ResetReason
from harness.ingest.pcap import read_capture
from harness.ingest.pcapwrite import write_pcap
from harness.ingest.streams import (
    FIELD,
    FROM_BOARD,
    STREAM_FIELDS,
    TO_BOARD,
    concat_observed,
    field_mask,
    frame_events,
    stream_key,
)
from harness.oracle.bounds import APP_LATENCY_NS, CONSTANTS, LINKWATCH_MAX_DELAY_NS, RTT_CASES_MAX, Learnt
from harness.oracle.inputs import APP_DATA_FIELDS, BoardConnect, ModelInputs, _row, model_inputs
from harness.oracle.loop import ModelRun, run_model
from harness.oracle.observe import Artifacts, Observation, observe
from models.clock import JIFFY
from models.config import FirmwareConfig
from models.ipv4 import ip_idents_follows
from models.wire import ip4, ip4_str

# Frame kinds the kernel sends on its own. ARP_REQUEST includes the unicast probes of a
# NUD_PROBE entry (neigh_probe -> arp_solicit to the cached address), compared with the
# same fields as a broadcast request (eth_dst tells them apart): TCP's confirmations
# (sk_dst_confirm -> sock_confirm_neigh) are modelled, and what the model cannot know (the
# reachable_time draw, the DELAY timer's lateness, confirmations by applications it does
# not play) it predicts as optional probes (models.neighbour).
KERNEL_FRAME_KINDS = (EventKind.ARP_REQUEST, EventKind.ARP_REPLY, EventKind.TCP_SYNACK, EventKind.TCP_RST,
                      EventKind.TCP_SYN, EventKind.ICMP_ECHO_REPLY, EventKind.TCP_PROBE,
                      # the kernel's too, and never seen from a healthy board in the built-ins:
                      # ICMP errors (__icmp_send), other ICMP, other IPv4 protocols, odd ARP
                      EventKind.ICMP_DEST_UNREACH, EventKind.ICMP_OTHER, EventKind.IPV4_OTHER,
                      EventKind.ARP_OTHER)
# Lines a healthy board prints only when the model says so; the kernel-fault lines the
# model never predicts, so each one the board prints is an EXTRA row.
FAULT_KINDS = (EventKind.KERNEL_PANIC, EventKind.KERNEL_OOPS, EventKind.KERNEL_BUG, EventKind.KERNEL_WARNING)
CONSOLE_KINDS = (EventKind.LINK_DOWN, EventKind.LINK_UP, EventKind.WATCHDOG_DID_NOT_STOP,
                 EventKind.NETDEV_WATCHDOG, EventKind.RESTARTING, EventKind.SYN_FLOOD, *FAULT_KINDS)
# Every frame: who sent it to whom (the board's MAC; the neighbour's, from ARP), and its
# checksums: Linux sends none wrong (the NIC fills the offloaded ones before the wire), so
# a frame with a wrong IPv4 header, TCP, UDP or ICMP checksum is a mismatch.
_EVERY_FRAME = ("eth_src", "eth_dst", "csum")
_TCP_OPTS = ("tcp_mss", "tcp_wscale", "tcp_sack_perm", "tcp_timestamps", "tcp_opt_order", "tcp_window")
CHECKED_FIELDS = {
    # ip_build_and_send_pkt from the listener: its TOS (dropbear's IP_TOS), DF, ID 0
    EventKind.TCP_SYNACK: field_mask("tcp_flags", *_TCP_OPTS, "tcp_rel_ack", "ip_ttl", "ip_df", "ip_tos", "ip_id",
                                     *_EVERY_FRAME),
    # tcp_v4_send_reset -> ip_send_unicast_reply on the control socket: the segment's TOS
    # less ECN, DF, ID 0
    EventKind.TCP_RST: field_mask("tcp_flags", "tcp_rel_ack", "ip_ttl", "ip_df", "ip_tos", "ip_id", *_EVERY_FRAME),
    # ip_queue_xmit: inet->tos, DF; the ID is the socket's inet_id, whose first value is
    # get_random_u16() (tcp_v4_connect): compared from the connection's first (ip_id_rel)
    EventKind.TCP_SYN: field_mask("tcp_flags", *_TCP_OPTS, "ip_ttl", "ip_df", "ip_tos", "ip_id_rel", *_EVERY_FRAME),
    # tcp_xmit_probe_skb -> tcp_transmit_skb: seq snd_una - 1, no data, the socket's TOS,
    # DF and inet_id (counted from the connection's first frame)
    EventKind.TCP_PROBE: field_mask("tcp_flags", "payload_len", "tcp_rel_seq", "tcp_rel_ack", "tcp_timestamps",
                                    "ip_ttl", "ip_df", "ip_tos", "ip_id_rel", *_EVERY_FRAME),
    EventKind.ARP_REPLY: field_mask("arp_op", *_EVERY_FRAME),
    EventKind.ARP_REQUEST: field_mask("arp_op", *_EVERY_FRAME),
    # icmp_reply: the request's whole TOS byte, no DF; the ID is from ip_idents, random
    # per bucket at boot: not compared here but held to its bound (ip_idents_rows).
    # icmp_echo: the request's identifier, sequence and data, whole (the length and a hash
    # of the data)
    EventKind.ICMP_ECHO_REPLY: field_mask("icmp_type", "icmp_code", "icmp_id", "icmp_seq", "ip_len", "l4_hash",
                                          "ip_ttl", "ip_df", "ip_tos", *_EVERY_FRAME),
    # __icmp_send: (TOS & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL, no DF; it quotes
    # as much of the packet as fits in 576 bytes (the length)
    EventKind.ICMP_DEST_UNREACH: field_mask("icmp_type", "icmp_code", "ip_len", "ip_ttl", "ip_df", "ip_tos",
                                            *_EVERY_FRAME),
    EventKind.ICMP_OTHER: field_mask("icmp_type", "icmp_code", *_EVERY_FRAME),
    EventKind.IPV4_OTHER: field_mask(*_EVERY_FRAME),
    EventKind.ARP_OTHER: field_mask("arp_op", *_EVERY_FRAME),
    EventKind.LINK_UP: field_mask("detail0", "detail1"),
    # the listener's port, and whether it sends cookies or drops (tcp_syncookies)
    EventKind.SYN_FLOOD: field_mask("detail0", "detail1"),
    EventKind.TCP_DATA: APP_DATA_FIELDS | field_mask("ip_tos", "ip_id_rel", *_EVERY_FRAME),
    # on a flow whose application shuts its side (BoardConnect.shutdown): its FIN
    # (tcp_send_fin), and its ACKs: the socket's own (inet_id, counted from the connection's
    # first frame) or a timewait sock's (tcp_v4_timewait_ack on the control socket: ID 0)
    EventKind.TCP_FIN: APP_DATA_FIELDS | field_mask("ip_tos", "ip_id_rel", *_EVERY_FRAME),
    EventKind.TCP_ACK: field_mask("tcp_flags", "payload_len", "tcp_rel_seq", "tcp_rel_ack", "tcp_timestamps",
                                  "ip_ttl", "ip_df", "ip_tos", "ip_id", *_EVERY_FRAME),
}


@dataclass(frozen=True)
class Tolerance:
    """How far an observation may be from its prediction (per board: emulation is slow).

    frame_ns: frames the kernel sends in reply (QEMU and slirp add latency);
    console_ns: console lines (serial latency on top of the model's window);
    reset_extra_ns: resets (beyond the watchdog daemon's kick period);
    fraction: of the predicted gap from the stream's previous event (packetdrill's rule);
    app_latency_ns: the bound on when a program the harness started gets to run.
    Sources: harness.oracle.bounds.CONSTANTS.
    """

    frame_ns: int = CONSTANTS["frame_tolerance"].value_ns
    console_ns: int = CONSTANTS["console_tolerance"].value_ns
    reset_extra_ns: int = CONSTANTS["reset_tolerance"].value_ns
    fraction: float = 0.05
    app_latency_ns: int = APP_LATENCY_NS

    def scaled(self, k: float) -> Tolerance:
        return Tolerance(int(self.frame_ns * k), int(self.console_ns * k), int(self.reset_extra_ns * k), self.fraction,
                         int(self.app_latency_ns * k))


@dataclass
class Verdict:
    """The comparison of one run window: divergence rows, what was compared and learnt.

    `ok` only when something was compared, nothing diverged and nothing stopped the
    comparison (`error`: a damaged capture, a model failure, a scenario that provoked
    nothing it must)."""

    scenario: str
    rows: list[dict]
    predicted: int
    observed: int
    timeline: dict
    start_ns: int
    end_ns: int
    notes: list[str] = field(default_factory=list)
    series: dict = field(default_factory=dict)
    learnt: list[Learnt] = field(default_factory=list)
    error: str | None = None
    compared_kinds: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rows and self.error is None and (self.predicted + self.observed) > 0

    @classmethod
    def not_compared(cls, scenario: str, error: str) -> Verdict:
        """The verdict of a scenario the oracle never got to judge (the board did not boot,
        the run was interrupted, the harness failed): an error, never a pass."""
        return cls(scenario, [], 0, 0, {}, 0, 0, error=error)

    def write(self, out_dir: Path) -> Path:
        path = out_dir / "verdict.json"
        path.write_text(json.dumps(self.to_json(), indent=1, default=int) + "\n")
        return path

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "ok": self.ok, "error": self.error, "divergences": self.rows,
                "predicted": self.predicted, "observed": self.observed, "compared_kinds": self.compared_kinds,
                "learnt": [v.to_json() for v in self.learnt], "start_ns": self.start_ns, "end_ns": self.end_ns,
                "timeline": self.timeline, "notes": self.notes, "series": self.series}

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        """A verdict as `to_json` wrote it (a nightly's suites reuse its scenarios' verdicts)."""
        learnt = [Learnt(x["name"], x["value"], *x["bound"], x.get("where", ""), x.get("t_ns", 0))
                  for x in d.get("learnt", [])]
        return cls(d["scenario"], list(d["divergences"]), int(d["predicted"]), int(d["observed"]),
                   d.get("timeline") or {}, int(d["start_ns"]), int(d["end_ns"]), list(d.get("notes", [])),
                   d.get("series") or {}, learnt, d.get("error"), list(d.get("compared_kinds", [])))


def _app_targets(connects: list[BoardConnect]) -> set[tuple[int, int]]:
    return {(ip4(c.addr), c.port) for c in connects}


def _app_keep(kind, direction, peer_ip, peer_port, time_ns, connects: list[BoardConnect], start_ns: int,
              end_ns: int) -> np.ndarray:
    """Which events are the board's data on a flow it connected for the harness."""
    keep = (kind == EventKind.TCP_DATA) & (direction == FROM_BOARD) & (time_ns >= start_ns) & (time_ns <= end_ns)
    if not connects:
        return np.zeros(kind.size, bool)
    ok = np.zeros(kind.size, bool)
    for ip, port in _app_targets(connects):
        ok |= (peer_ip == ip) & (peer_port == port)
    first = min(c.asked_ns for c in connects)
    keep &= ok
    # a flow whose application shuts its side: its FIN and its ACKs too (the FIN_WAIT2
    # timewait sock's answer to the peer's FIN)
    shut = [c for c in connects if c.shutdown]
    if shut:
        ctl = np.isin(kind, [EventKind.TCP_FIN, EventKind.TCP_ACK]) & (direction == FROM_BOARD) & \
            (time_ns >= start_ns) & (time_ns <= end_ns)
        ok_shut = np.zeros(kind.size, bool)
        for ip, port in _app_targets(shut):
            ok_shut |= (peer_ip == ip) & (peer_port == port)
        keep |= ctl & ok_shut
    return keep & (time_ns >= first)


def predicted_events(obs: Observation, run: ModelRun, mi: ModelInputs, start_ns: int, end_ns: int, tol: Tolerance,
                     pcap_path: Path) -> tuple[PredictedEvents, list[str]]:
    """The model's outputs in [start, end] as PredictedEvents, keyed like the observation."""
    records = sorted([(t, f) for t, f in run.fed] + [(p.t, p.frame) for p in run.outputs if p.kind == "frame"],
                     key=lambda r: r[0])
    write_pcap(pcap_path, records, nanosecond=True)
    table = read_capture(pcap_path).packets
    fe = frame_events(table, obs.declared)
    t_all = fe.events.time_ns
    keep = (fe.direction == FROM_BOARD) & np.isin(fe.kind, KERNEL_FRAME_KINDS) & (t_all >= start_ns) & \
        (t_all <= end_ns)
    keep |= _app_keep(fe.kind, fe.direction, fe.peer_ip, fe.peer_port, t_all, mi.connects, start_ns, end_ns)
    # Windows: the model gives one for what Linux randomises and for what a kernel timer
    # sends (the timer wheel's slack, summed along the chain of timers since the input that
    # started it). Such a window is where the model puts the frame whatever happened to
    # its predecessors, so it is anchored absolutely; a reply to an input is a point
    # measured from the observed time of its stream's previous event.
    win = {p.t: p.window for p in run.outputs if p.kind == "frame" and p.window is not None}
    idx = np.flatnonzero(keep)
    t = t_all[idx]
    lo = np.array([win[int(x)].earliest if int(x) in win else int(x) for x in t], np.int64)
    hi = np.array([win[int(x)].latest if int(x) in win else int(x) for x in t], np.int64)
    frame_anchor = np.array([ANCHOR_ABSOLUTE if int(x) in win else ANCHOR_PREVIOUS_OBSERVED for x in t], np.int64)
    maybe = {p.t for p in run.outputs if p.kind == "frame" and p.detail.get("optional")}
    check = np.array([CHECKED_FIELDS.get(EventKind(int(k)), 0) for k in fe.kind[idx]], np.int64)
    # A RST the socket sends itself (tcp_send_active_reset: keepalive give-up, close with
    # unread data) carries its inet_id, random at its start: compared as a count from the
    # connection's first frame (ip_id_rel), as its other frames; the control socket's
    # (ip_id_rel -1) has ID 0.
    own_rst = np.isin(fe.kind[idx], [EventKind.TCP_RST, EventKind.TCP_ACK]) & \
        (fe.events.fields[idx, FIELD["ip_id_rel"]] >= 0)
    check[own_rst] = (check[own_rst] & ~field_mask("ip_id")) | field_mask("ip_id_rel")
    parts = {"stream": [fe.events.stream[idx]], "t": [t], "lo": [lo], "hi": [hi], "fields": [fe.events.fields[idx]],
             "check": [check],
             "tol": [np.full(idx.size, tol.frame_ns)], "anchor": [frame_anchor],
             "optional": [np.array([int(x) in maybe for x in t], bool)]}
    kinds = [EventKind(int(k)).name for k in fe.kind[idx]]
    # Console lines and resets.
    for p in run.outputs:
        if not start_ns <= p.t <= end_ns or p.kind not in ("console", "reset"):
            continue
        if p.kind == "console":
            k, d0, d1, _ = _classify(p.detail["text"])
            if k not in CONSOLE_KINDS:
                continue
            tol_ns = tol.console_ns
        else:
            k, d0, d1 = EventKind.QMP_RESET, int(ResetReason.GUEST_RESET), 0
            tol_ns = tol.reset_extra_ns + tol.console_ns
        w = p.window
        row = np.zeros(len(STREAM_FIELDS), np.int64)
        row[FIELD["detail0"]], row[FIELD["detail1"]] = d0, d1
        for name, value in (("stream", stream_key(int(k))), ("t", p.t), ("lo", w.earliest if w else p.t),
                            ("hi", w.latest if w else p.t), ("check", CHECKED_FIELDS.get(EventKind(int(k)), 0)),
                            ("tol", tol_ns), ("anchor", ANCHOR_ABSOLUTE), ("optional", False)):
            parts[name].append(np.array([value]))
        parts["fields"].append(row[None, :])
        kinds.append(EventKind(int(k)).name)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    pred = PredictedEvents.build(cat["stream"], cat["t"], fields=cat["fields"], check=cat["check"],
                                 tol_abs_ns=cat["tol"], tol_frac=tol.fraction, win_lo=cat["lo"], win_hi=cat["hi"],
                                 anchor=cat["anchor"], optional=cat["optional"])
    return pred, kinds


def observed_outputs(obs: Observation, mi: ModelInputs, start_ns: int, end_ns: int,
                     use_qmp_resets: bool) -> ObservedEvents:
    """What the board did in [start, end] that is compared."""
    f = obs.frames
    keep = (obs.frame_dir == FROM_BOARD) & np.isin(obs.frame_kind, KERNEL_FRAME_KINDS) & \
        (f.time_ns >= start_ns) & (f.time_ns <= end_ns)
    keep |= _app_keep(obs.frame_kind, obs.frame_dir, obs.frame_peer_ip, obs.frame_peer_port, f.time_ns, mi.connects,
                      start_ns, end_ns)
    e = obs.events
    kinds = list(CONSOLE_KINDS) + ([EventKind.QMP_RESET] if use_qmp_resets else [])
    ekeep = np.isin(obs.event_kind, kinds) & (e.time_ns >= start_ns) & (e.time_ns <= end_ns)
    # A reset the harness asked for (power on, QMP system_reset) is not the firmware's doing.
    ekeep &= ~((obs.event_kind == EventKind.QMP_RESET) & (obs.event_table.detail0 != int(ResetReason.GUEST_RESET)))
    parts = [ObservedEvents(f.stream[keep], f.time_ns[keep], f.frame[keep], f.fields[keep]),
             ObservedEvents(e.stream[ekeep], e.time_ns[ekeep], e.frame[ekeep], e.fields[ekeep])]
    return concat_observed(*parts)


def _row_time(r: dict) -> int:
    for k in ("expected_ns", "obs_ns", "pred_ns"):
        if r.get(k) is not None:
            return int(r[k])
    return 0


def judge(obs: Observation, mi: ModelInputs, run: ModelRun, start_ns: int, end_ns: int, scenario: str,
          tol: Tolerance, use_qmp_resets: bool, pcap_path: Path) -> Verdict:
    """Compare one model run with the observation."""
    pred, pred_kinds = predicted_events(obs, run, mi, start_ns, end_ns, tol, pcap_path)
    seen = observed_outputs(obs, mi, start_ns, end_ns, use_qmp_resets)
    result = compare(pred, seen, field_names=STREAM_FIELDS)
    rows = result.rows()
    names: dict[int, str] = {}
    for k, s in zip(pred_kinds, pred.stream.tolist(), strict=True):
        names[int(s)] = k
    for s, fk in zip(obs.frames.stream.tolist(), obs.frame_kind.tolist(), strict=True):
        names.setdefault(int(s), EventKind(int(fk)).name)
    for s, k in zip(obs.events.stream.tolist(), obs.event_kind.tolist(), strict=True):
        names.setdefault(int(s), EventKind(int(k)).name)
    for r in rows:
        r["stream_name"] = names.get(int(r["stream"]), "?")
    rows += [dict(r) for r in mi.rows if start_ns <= (r["obs_ns"] or start_ns) <= end_ns]
    id_rows, icmp_ids = ip_idents_rows(obs, start_ns, end_ns, tol.frame_ns)
    rows += id_rows
    rows.sort(key=_row_time)
    compared = sorted({names.get(int(s), "?") for s in np.concatenate([pred.stream, seen.stream]).tolist()})
    series = {"predicted": [(names.get(int(s), "?"), int(t), int(lo), int(hi)) for s, t, lo, hi in
                            zip(pred.stream.tolist(), pred.time_ns.tolist(), pred.win_lo.tolist(),
                                pred.win_hi.tolist(), strict=True)],
              "observed": [(names.get(int(s), "?"), int(t)) for s, t in
                           zip(seen.stream.tolist(), seen.time_ns.tolist(), strict=True)]}
    return Verdict(scenario, rows, len(pred), len(seen), obs.timeline.to_json(), start_ns, end_ns, [], series,
                   [*mi.learnt, *run.learnt, *_inet_ids(obs, start_ns, end_ns), *icmp_ids], run.error, compared)


def ip_idents_rows(obs: Observation, start_ns: int, end_ns: int,
                   slack_ns: int) -> tuple[list[dict], list[Learnt]]:
    """The IPv4 IDs of the board's echo replies, held to ip_idents_reserve()'s bound: the
    rows of those outside it, and each peer's first ID (learnt: `icmp_id`).

    icmp_reply sends without DF from a socket with no destination, so ip_select_ident takes
    the ID from the bucket of (daddr, saddr, protocol): random at boot (a peer's first
    reply may have any ID), then each packet adds 1 and a random step below the jiffies
    since the bucket's last use (models.ipv4.ip_idents_follows). A reply's ID is taken
    when its request is handled: after the request reached the wire, before the reply
    left, so two replies to one peer were reserved at most (the second's capture - the
    first's request's capture) apart, plus `slack_ns` (the frame tolerance) for each.
    IDs the wire never shows take steps too: a reply lost in an arp_queue or a qdisc, an
    ICMP error, another flow hashed to the same bucket. Each needs a packet: one the board
    sent without DF, or one it received (what it answered), between the two, so each of
    those counts as one more possible step. Two replies whose IDs are further apart than
    all that (a constant ID, a random one) are a FIELD_MISMATCH on the second's ip_id."""
    f = obs.frames
    t_all, fields = f.time_ns, f.fields
    ipv4 = fields[:, FIELD["ip_tos"]] >= 0
    icmp_id, icmp_seq = fields[:, FIELD["icmp_id"]], fields[:, FIELD["icmp_seq"]]
    from_board = ipv4 & (obs.frame_dir == FROM_BOARD) & (t_all <= end_ns)
    no_df = from_board & (fields[:, FIELD["ip_df"]] == 0)
    inbound = ipv4 & (obs.frame_dir == TO_BOARD)
    requests: dict[tuple[int, int, int], list[int]] = {}     # (peer, id, seq) -> request times
    for i in np.flatnonzero(inbound & (obs.frame_kind == EventKind.ICMP_ECHO_REQUEST)).tolist():
        requests.setdefault((int(obs.frame_peer_ip[i]), int(icmp_id[i]), int(icmp_seq[i])), []).append(int(t_all[i]))
    in_times = np.sort(t_all[inbound])
    no_df_times = np.sort(t_all[no_df])
    rows: list[dict] = []
    learnt: list[Learnt] = []
    last: dict[int, tuple[int, int, int]] = {}      # peer -> (ID, its request's time, its own time)
    order = np.argsort(t_all, kind="stable")
    for i in order[(obs.frame_kind[order] == EventKind.ICMP_ECHO_REPLY) & no_df[order]].tolist():
        peer, ident, t = int(obs.frame_peer_ip[i]), int(fields[i, FIELD["ip_id"]]), int(t_all[i])
        asked = [q for q in requests.get((peer, int(icmp_id[i]), int(icmp_seq[i])), []) if q <= t + slack_ns]
        prev = last.get(peer)
        if asked:
            # the earliest such request: a repeated identifier and sequence only widen the
            # bound. A reply whose request the capture lacks bounds nothing after it (its ID
            # may have been taken long before it left): the next is held to the one before.
            last[peer] = (ident, min(asked), t)
        if prev is None:
            # a peer's first reply: the bucket starts random, its ID is learnt (any value)
            if start_ns <= t and asked:
                learnt.append(Learnt("icmp_id", ident, 0, 0xFFFF, f"first echo reply to {ip4_str(peer)}", t))
            continue
        if t < start_ns:
            continue
        p_id, p_asked, p_t = prev
        lo, hi = p_asked - slack_ns, t + slack_ns
        # every packet the board received or sent without DF in between, but the two replies
        others = int(np.searchsorted(in_times, hi, "right") - np.searchsorted(in_times, lo, "left")) + \
            int(np.searchsorted(no_df_times, t, "left") - np.searchsorted(no_df_times, p_t, "right"))
        if not ip_idents_follows(p_id, lo, ident, hi + others * JIFFY):
            rows.append(_row("FIELD_MISMATCH", "ICMP_ECHO_REPLY", t, "ip_id", (p_id + 1) & 0xFFFF, ident,
                             int(f.frame[i]),
                             f"ip_idents to {ip4_str(peer)}: ID {ident} after ID {p_id}, whose request came "
                             f"{(t - p_asked) / 1e6:.1f} ms before: at most {(hi - lo) // JIFFY + others} more "
                             f"than {(p_id + 1) & 0xFFFF} ({others} packets in or out between)"))
    return rows, learnt


def _inet_ids(obs: Observation, start_ns: int, end_ns: int) -> list[Learnt]:
    """The first IPv4 ID of each of the board's TCP connections in the window: the base
    ip_id_rel counts from (harness.ingest.streams._ip_id_rel)."""
    f = obs.frames
    rel, ident = f.fields[:, FIELD["ip_id_rel"]], f.fields[:, FIELD["ip_id"]]
    first = np.flatnonzero((rel == 0) & (f.time_ns >= start_ns) & (f.time_ns <= end_ns))
    return [Learnt("inet_id", int(ident[i]), 0, 0xFFFF, f"frame {int(f.frame[i])}", int(f.time_ns[i])) for i in first]


def check_run(art: Artifacts, declared: FirmwareConfig, start_ns: int, end_ns: int, scenario: str = "",
              tol: Tolerance = Tolerance(), out_dir: Path | None = None, seed: int = 0,
              expect: Sequence[EventKind] = ()) -> Verdict:
    """The whole pipeline over one run's artifacts for the window [start_ns, end_ns]
    (common clock): observe -> inputs -> loop -> judge. Writes verdict.json and
    predicted.pcap into `out_dir` (default: beside the console log)."""
    out_dir = out_dir or art.console.parent
    if end_ns <= start_ns:
        raise ValueError(f"the comparison window ends ({end_ns}) before it starts ({start_ns})")
    obs = observe(art, declared)
    if obs.salvaged_until_ns is not None:
        # A salvaged capture is compared up to its cut, less a frame tolerance: past it
        # the board's frames are unknown (a reply just after the last whole frame may have
        # been in the lost bytes), and the model's would all be MISSING.
        end_ns = max(start_ns + 1, min(end_ns, obs.salvaged_until_ns - tol.frame_ns))
    mi = model_inputs(obs, end_ns, tol.app_latency_ns)
    use_qmp = art.qmp is not None
    trial = out_dir / "predicted-trial.pcap"

    def attempt(delays: dict[int, int], path: Path | None = None) -> tuple[Verdict, ModelRun]:
        run = run_model(obs, mi, start_ns, end_ns, seed=seed, linkwatch_delays=delays,
                        accept_latency_ns=tol.app_latency_ns)
        path = path or (out_dir / "predicted.pcap" if not delays else trial)
        return judge(obs, mi, run, start_ns, end_ns, scenario, tol, use_qmp, path), run

    def with_linkwatch(path: Path) -> Verdict:
        v, run = attempt({}, path)
        if v.rows and run.carrier_losses and v.error is None:
            v = _linkwatch_cases(v, run, attempt, end_ns, out_dir, trial, path)
        return v

    verdict = with_linkwatch(out_dir / "predicted.pcap")
    if verdict.rows and verdict.error is None and any(len(c.times) > 1 for c in mi.rtt_cases):
        verdict = _rtt_cases(verdict, mi, with_linkwatch, out_dir)
    trial.unlink(missing_ok=True)
    verdict.notes += obs.salvaged
    _errors(verdict, obs, expect)
    verdict.write(out_dir)
    return verdict


def _rtt_cases(base: Verdict, mi: ModelInputs, attempt, out_dir: Path) -> Verdict:
    """When the board does not match the model fed its first RTT sample as its TSvals say,
    the other values of that sample's span (RttCase: the board's handshake ACK is stamped
    after the sample, and under load its clock moves between the two) are tried, up to
    RTT_CASES_MAX combinations over the connected flows. A case stands only if the board
    then matches completely; otherwise the TSvals' case's rows are the verdict, and the
    cases tried are listed. Never the case with the fewest rows."""
    cases = [c for c in mi.rtt_cases if len(c.times) > 1]
    saved = [(mi.inputs[c.input_index], mi.learnt[c.learnt_index]) for c in cases]
    case_pcap = out_dir / "predicted-rtt.pcap"
    tried = []
    try:
        for pick in islice((p for p in product(*(range(len(c.times)) for c in cases)) if any(p)), RTT_CASES_MAX):
            for c, k, (ti, learnt) in zip(cases, pick, saved, strict=True):
                mi.inputs[c.input_index] = replace(ti, t=c.times[k])
                # an alternative case is bounded by its span, not by HANDSHAKE_ACK_MAX alone
                mi.learnt[c.learnt_index] = replace(learnt, value=c.times[k] - c.conn_t,
                                                    hi=learnt.hi if k == 0 else min(learnt.hi, c.hi))
            v = attempt(case_pcap)
            values = ", ".join(f"{(c.times[k] - c.conn_t) / 1e6:.1f} ms" for c, k in zip(cases, pick, strict=True))
            tried.append(f"{values}: {len(v.rows)} rows" + (" (error)" if v.error else ""))
            if not v.rows and v.error is None:
                case_pcap.replace(out_dir / "predicted.pcap")
                v.notes.append(f"the board's first RTT sample taken as {values} after connect(), not what its "
                               "handshake ACK's TSval says (learnt: first_rtt; the ACK is stamped after the sample)")
                return v
        for c, (ti, learnt) in zip(cases, saved, strict=True):
            mi.inputs[c.input_index], mi.learnt[c.learnt_index] = ti, learnt
        base.notes.append("first_rtt cases tried, none matched completely (the TSvals' case's rows stand): "
                          + "; ".join(tried))
        return base
    finally:
        case_pcap.unlink(missing_ok=True)


def _linkwatch_cases(base: Verdict, base_run: ModelRun, attempt, end_ns: int, out_dir: Path, trial: Path,
                     final: Path) -> Verdict:
    """When the carrier-off linkwatch work ran is not in any record (it is rate-limited to
    once a second and runs when a worker gets to it), yet it decides whether a packet
    sent just after the loss found the old neighbour entry or began a resolution. Each
    carrier loss is judged on its own: where the immediate case leaves rows after it, the
    distinct later cases (just after each resolution the model began within a second of
    that loss) are tried; a case is kept only if no row is left after that loss. The
    result stands only if the board then matches completely: otherwise the immediate
    case's rows are the verdict, and the cases tried are listed."""
    losses = base_run.carrier_losses
    chosen: dict[int, int] = {}
    cur, cur_run, tried = base, base_run, []
    for k, loss in enumerate(losses):
        seg_end = losses[k + 1] if k + 1 < len(losses) else end_ns + 1

        def left(v: Verdict, lo=loss, hi=seg_end) -> int:
            return sum(1 for r in v.rows if lo <= _row_time(r) < hi)

        if not left(cur):
            continue
        delays = sorted({r - loss + 1 for r in cur_run.resolutions if loss <= r < loss + LINKWATCH_MAX_DELAY_NS})
        for d in delays:
            v, run = attempt({**chosen, k: d})
            tried.append(f"loss {k} +{d / 1e6:.0f} ms: {len(v.rows)} rows")
            if not left(v):
                chosen, cur, cur_run = {**chosen, k: d}, v, run
                trial.replace(out_dir / "predicted-chosen.pcap")
                break
    kept = out_dir / "predicted-chosen.pcap"
    if chosen and not cur.rows:
        kept.replace(final)
        learnt = [Learnt("linkwatch_run", d, 0, LINKWATCH_MAX_DELAY_NS, f"carrier loss {k}", losses[k] + d)
                  for k, d in sorted(chosen.items())]
        cur = replace(cur, learnt=[*cur.learnt, *learnt])
        cur.notes.append("linkwatch ran the carrier-off work " + ", ".join(
            f"{d / 1e6:.0f} ms after carrier loss {k}" for k, d in sorted(chosen.items())) + " (learnt: linkwatch_run)")
        return cur
    kept.unlink(missing_ok=True)
    if tried:
        base.notes.append("linkwatch cases tried, none matched completely (the immediate case's rows stand): "
                          + "; ".join(tried))
    return base


def _run_problems(v: Verdict, obs: Observation) -> list[str]:
    """What the harness recorded going wrong with the run itself: a step that failed (the
    steps after it never ran), and the board's liveness after the window (its emulator
    still running, its console answering: harness.runner.check_liveness). A board that
    died or hung makes the run an error whatever the rows say: the model predicts what a
    live board does, and a dead one sends nothing to contradict a short prediction."""
    problems = [f"step {r.get('step')} ({r.get('do')}) failed: {r.get('error')}; the steps after it did not run"
                for r in obs.records("step_error")]
    live = obs.records("liveness")
    if not live:
        v.notes.append("no liveness record after the window (artifacts not written by bmc-hil run): whether "
                       "the board stayed alive is not known")
    problems += [f"the board did not stay alive: {r.get('reason')}" for r in live if not r.get("alive")]
    problems += [f"the harness's {r.get('what')} failed: " + "; ".join(map(str, r.get("errors") or []))
                 for r in obs.records("harness_error")]
    return problems


def _errors(v: Verdict, obs: Observation, expect: Sequence[EventKind]) -> None:
    """What makes a verdict an error rather than a pass or a fail."""
    problems = [v.error] if v.error else []
    problems += obs.input_errors
    problems += _run_problems(v, obs)
    if v.predicted + v.observed == 0:
        problems.append("nothing was compared: the model predicted nothing and the board did nothing the oracle "
                        "compares in the window")
    missing = [EventKind(int(k)).name for k in expect if EventKind(int(k)).name not in v.compared_kinds]
    if missing:
        problems.append("the scenario must provoke " + ", ".join(missing) + ", which neither the model nor the "
                        "board showed in the window")
    v.error = "; ".join(problems) if problems else None
