"""Reports a person reads: per scenario, the divergence rows with the flow each is about
and its frames in both pcaps, what was compared with its measured times beside the
model's windows, the harness's stimuli, the run's clock uncertainty, links to the
scenario's artifacts, and a timeline plot with one row per flow. As JSON, PNG and HTML.

Everything here is read back from a verdict and its scenario's folder (capture.pcap,
predicted.pcap, console.log, verdict.json, host-events.jsonl, steps.json): a stream key
names its flow only by a hash (harness.ingest.streams), so the flows are recovered by
keying each frame of the pcaps both ways (as sent by the board and as sent to it) and
looking the row's key up. A report without a folder still shows every row, named by kind.
"""

from __future__ import annotations

import html
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from harness.errors import HarnessError
from harness.ingest.events import Clock, EventKind
from harness.ingest.pcap import ETHERTYPE_IPV4, Layer, PacketTable, read_capture
from harness.ingest.streams import (
    FLOW_ARP,
    FLOW_ETHERTYPE_BASE,
    FLOW_ICMP,
    FLOW_TCP,
    FLOW_UDP,
    FROM_BOARD,
    TCP_ACK,
    TCP_SYN,
    TO_BOARD,
    frame_kinds,
    stream_key,
)
from harness.ingest.timeline import Timeline, TimelineError
from harness.oracle import Verdict
from harness.paths import unique_names

# What the harness did, as host-events.jsonl records it: drawn as stimuli (label).
STIMULUS_RECORDS = {
    "link_down": "link down", "link_up": "link up", "link_down_reasserted": "link down again", "reboot": "reboot",
    "reset": "reset", "power_on": "power on", "power_off": "power off", "watchdog_start": "watchdog start",
    "watchdog_starve": "watchdog starve", "watchdog_stop": "watchdog stop", "watchdog_kick": "kick",
    "board_connect": "board connect", "board_close": "board close", "step_error": "step failed",
}
# Scenario steps the host events do not record (steps.json has them, at the scenario's times).
UNRECORDED_STEPS = ("connect", "frame", "peer_fin")
# Row labels of events that are not frames.
CONSOLE_ROW = "console"
RESET_ROW = "board resets (QMP)"
HARNESS_ROW = "harness"


# -- a scenario's artifacts ------------------------------------------------------------
@dataclass(frozen=True)
class ScenarioFiles:
    """Where one verdict's artifacts are; any may be missing (a scenario that never ran,
    `compare` of captures taken elsewhere)."""

    folder: Path | None = None
    captures: tuple[Path, ...] = ()
    predicted: Path | None = None
    console: Path | None = None
    verdict: Path | None = None
    host_events: Path | None = None
    steps: Path | None = None

    @classmethod
    def in_dir(cls, folder: Path | None) -> ScenarioFiles:
        if folder is None or not Path(folder).is_dir():
            return cls()
        folder = Path(folder)

        def file(name: str) -> Path | None:
            p = folder / name
            return p if p.is_file() else None

        # in the order harness.oracle.Artifacts.in_dir gives them their segment numbers
        caps = sorted((p for p in folder.glob("capture*.pcap") if p.is_file()), key=lambda p: (len(p.name), p.name))
        return cls(folder, tuple(caps), file("predicted.pcap"), file("console.log"), file("verdict.json"),
                   file("host-events.jsonl"), file("steps.json"))

    def links(self) -> list[Path]:
        """The files a person opens, in the order the report lists them."""
        return [p for p in (*self.captures, self.predicted, self.console, self.verdict, self.host_events, self.steps)
                if p is not None]


def _scenario_files(out_dir: Path, verdicts: Sequence[Verdict], names: list[str],
                    folders: Sequence[Path | ScenarioFiles | None] | Mapping[str, Path | ScenarioFiles | None] | None
                    ) -> list[ScenarioFiles]:
    """Each verdict's files: as given (a folder or ScenarioFiles per verdict, or by
    scenario name), else found where `bmc-hil run` puts them (a subfolder named like the
    scenario beside the report) or where `compare` does (the report's own folder)."""
    out = []
    for i, (v, name) in enumerate(zip(verdicts, names, strict=True)):
        given = None
        if isinstance(folders, Mapping):
            given = folders.get(v.scenario)
        elif folders is not None:
            given = folders[i]
        if isinstance(given, ScenarioFiles):
            out.append(given)
        elif given is not None:
            out.append(ScenarioFiles.in_dir(Path(given)))
        elif folders is None and (out_dir / name).is_dir():
            out.append(ScenarioFiles.in_dir(out_dir / name))
        elif folders is None and len(verdicts) == 1 and (out_dir / "verdict.json").is_file():
            out.append(ScenarioFiles.in_dir(out_dir))
        else:
            out.append(ScenarioFiles())
    return out


def relative_href(path: Path, base: Path) -> str:
    """`path` as a link from a page in `base`: relative, URL-quoted."""
    return quote(Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix())


# How far before a connect step's recorded time its SYN may be stamped (the capture's clock
# offset is known to a few ms; the step is recorded just before the harness connects).
STEP_SYN_SLACK_NS = 100_000_000


def _services(declared, files: ScenarioFiles, index: FlowIndex, start_ns: int) -> dict[int, str]:
    """Board port -> service name: the declared firmware's services; else the services the
    scenario's steps connected to, by the port steps.json gives, or else by the port of
    the first connection opened to the board after the step."""
    if declared is not None:
        return {s.port: s.name for s in declared.services if s.enabled}
    out: dict[int, str] = {}
    steps = [s for s in _read_json(files.steps, []) if isinstance(s, dict) and s.get("do") == "connect"
             and s.get("service")]
    opened = sorted((int(t), f.board_port) for pcap in index.captures for t, key, syn in
                    zip(pcap.time_ns.tolist(), pcap.received.tolist(), pcap.syn.tolist(), strict=True)
                    if syn and (f := index.flow(key)) is not None and f.opened_by_board is False)
    for step in steps:
        if isinstance(step.get("guest_port"), int):
            out[step["guest_port"]] = str(step["service"])
            continue
        t = start_ns + _step_ns(step) - STEP_SYN_SLACK_NS
        port = next((p for ts, p in opened if ts >= t and p not in out), None)
        if port is not None:
            out[port] = str(step["service"])
    return out


def _step_ns(step: dict) -> int:
    """When a step ran, from the scenario's start (steps.json: its time and how late it was)."""
    return int(round((float(step.get("at_s", 0)) + float(step.get("late_s", 0) or 0)) * 1e9))


def _read_json(path: Path | None, default):
    if path is None:
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return default


def _records(path: Path | None) -> list[dict]:
    """host-events.jsonl as dicts (lines that are not records are passed over: the oracle
    already judged the file)."""
    if path is None:
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("host_wall_ns"), int):
            out.append(rec)
    return out


# -- flows -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flow:
    """A flow named from the board's side (harness.ingest.streams), and who opened it
    (sent its first SYN): True the board, False its peer, None not seen."""

    flow_class: int
    peer_ip: int
    board_port: int
    peer_port: int
    opened_by_board: bool | None = None

    def label(self, services: Mapping[int, str]) -> str:
        """`ssh :22 <- 10.0.2.2:40000` (the peer connected), `:40000 -> 10.0.2.2:5555` (the
        board did), `ARP 10.0.2.2`, ..."""
        peer = str(ipaddress.IPv4Address(self.peer_ip & 0xFFFFFFFF))
        if self.flow_class in (FLOW_TCP, FLOW_UDP):
            name = services.get(self.board_port) if self.flow_class == FLOW_TCP else None
            opened = self.opened_by_board
            if opened is None and name is not None:
                opened = False   # a declared service's port: the peer connects to it
            arrow = "<->" if opened is None else "->" if opened else "<-"
            head = "udp " if self.flow_class == FLOW_UDP else f"{name} " if name and arrow == "<-" else ""
            return f"{head}:{self.board_port} {arrow} {peer}:{self.peer_port}"
        if self.flow_class == FLOW_ARP:
            return f"ARP {peer}"
        if self.flow_class == FLOW_ICMP:
            return f"ICMP {peer}"
        if self.flow_class >= FLOW_ETHERTYPE_BASE:
            return f"ethertype 0x{self.flow_class - FLOW_ETHERTYPE_BASE:04x}"
        return f"IP protocol {self.flow_class} {peer}"


def _kind_row(kind: int) -> str:
    """The timeline row of an event that is not a frame."""
    if kind == EventKind.QMP_RESET:
        return RESET_ROW
    if 60 <= kind < 70:
        return "QMP"
    if kind >= 70:
        return HARNESS_ROW
    return CONSOLE_ROW


@dataclass
class _Pcap:
    """One pcap's frames keyed both ways: `sent` as if the board sent each, `received` as
    if it was sent to the board. A stream key from the oracle matches one of the two."""

    path: Path
    frame: np.ndarray
    time_ns: np.ndarray       # on the run's common timeline
    kind: np.ndarray
    sent: np.ndarray
    received: np.ndarray
    syn: np.ndarray           # a pure SYN: the first frame of a connection


def _i64(a) -> np.ndarray:
    return np.asarray(a).astype(np.int64)


def _keyed(path: Path, table: PacketTable, time_ns: np.ndarray) -> tuple[_Pcap, dict[int, Flow]]:
    """The pcap's frames with both keys, and the flow of each key's flow id."""
    layers = _i64(table.layers)
    is_ip = ((layers & Layer.IPV4) != 0) & (_i64(table.ethertype) == ETHERTYPE_IPV4)
    is_arp = (layers & Layer.ARP) != 0
    ports = (layers & (Layer.TCP | Layer.UDP)) != 0
    flow_class = np.where(is_ip, _i64(table.ip_proto), np.where(is_arp, FLOW_ARP,
                                                               FLOW_ETHERTYPE_BASE + _i64(table.ethertype)))
    kind = frame_kinds(table).astype(np.int64)
    sport, dport = np.where(ports, _i64(table.sport), 0), np.where(ports, _i64(table.dport), 0)
    ways = {FROM_BOARD: (np.where(is_ip, _i64(table.ip_dst), np.where(is_arp, _i64(table.arp_tpa), 0)), sport, dport),
            TO_BOARD: (np.where(is_ip, _i64(table.ip_src), np.where(is_arp, _i64(table.arp_spa), 0)), dport, sport)}
    keys = {d: stream_key(kind, np.full(kind.size, d), flow_class, *cols) if kind.size else np.zeros(0, np.int64)
            for d, cols in ways.items()}
    flags = _i64(table.tcp_flags)
    syn = (flow_class == FLOW_TCP) & ((flags & TCP_SYN) != 0) & ((flags & TCP_ACK) == 0)
    flows: dict[int, Flow] = {}
    for d, (peer, board_port, peer_port) in ways.items():
        fids = keys[d] >> 8
        # a pure SYN read this way says who opened the flow it would belong to
        opened = {int(f) for f in np.unique(fids[syn])}
        _, first = np.unique(fids, return_index=True)
        _merge(flows, {int(fids[i]): Flow(int(flow_class[i]), int(peer[i]), int(board_port[i]), int(peer_port[i]),
                                          (d == FROM_BOARD) if int(fids[i]) in opened else None) for i in first})
    return _Pcap(path, _i64(table.frame), np.asarray(time_ns, np.int64), kind, keys[FROM_BOARD], keys[TO_BOARD],
                 syn), flows


class FlowIndex:
    """Stream keys -> flows and frame numbers, read back from a scenario's pcaps."""

    def __init__(self, captures: list[_Pcap], predicted: _Pcap | None, flows: dict[int, Flow]):
        self.captures = captures
        self.predicted = predicted
        self.flows = flows

    @classmethod
    def empty(cls) -> FlowIndex:
        return cls([], None, {})

    @classmethod
    def read(cls, files: ScenarioFiles, timeline: dict) -> FlowIndex:
        """The index of a scenario's capture(s), mapped onto the verdict's timeline, and its
        predicted.pcap (stamped on that timeline already)."""
        tl = Timeline.from_json(timeline or {})
        flows: dict[int, Flow] = {}
        caps: list[_Pcap] = []
        for seg, path in enumerate(files.captures):
            table = _table(path)
            if table is None:
                continue
            try:
                common = tl.to_common(Clock.CAPTURE, table.time_ns.astype(np.int64), seg)
            except TimelineError:
                common = table.time_ns.astype(np.int64)
            pcap, more = _keyed(path, table, common)
            caps.append(pcap)
            _merge(flows, more)
        predicted = None
        table = _table(files.predicted) if files.predicted is not None else None
        if table is not None:
            predicted, more = _keyed(files.predicted, table, table.time_ns.astype(np.int64))
            _merge(flows, more)
        return cls(caps, predicted, flows)

    def flow(self, key: int) -> Flow | None:
        return self.flows.get(int(key) >> 8) if int(key) >> 8 else None

    def label(self, key: int, kind_name: str, services: Mapping[int, str]) -> str:
        """The flow a stream is about, or the row its kind goes in."""
        flow = self.flow(key)
        if flow is not None:
            return flow.label(services)
        kind = int(key) & 0x7F if key else _kind_value(kind_name)
        return _kind_row(kind) if kind is not None and kind >= 40 else kind_name

    def capture_frame(self, key: int, frame: int) -> tuple[Path, int] | None:
        """The capture file holding observed frame number `frame` of stream `key`."""
        for pcap in self.captures:
            hit = np.flatnonzero(pcap.frame == frame)
            if hit.size and (len(self.captures) == 1 or not key or
                             int(key) in (int(pcap.sent[hit[0]]), int(pcap.received[hit[0]]))):
                return pcap.path, int(frame)
        return None

    def predicted_frame(self, key: int, t_ns: int | None) -> int | None:
        """The frame number in predicted.pcap of the model's event of stream `key` at `t_ns`."""
        p = self.predicted
        if p is None or t_ns is None or not key:
            return None
        hit = np.flatnonzero((p.time_ns == t_ns) & ((p.sent == key) | (p.received == key)))
        return int(p.frame[hit[0]]) if hit.size else None

    def key_at(self, kind_name: str, t_ns: int, predicted: bool) -> tuple[int | None, int | None]:
        """(stream key, frame number) of the board's frame of `kind_name` at common time
        `t_ns` (in predicted.pcap, or in the capture); events that are not frames are keyed
        by their kind."""
        kind = _kind_value(kind_name)
        if kind is None:
            return None, None
        if kind >= 40:
            return stream_key(kind), None
        for pcap in ([self.predicted] if predicted else self.captures):
            if pcap is None:
                continue
            hit = np.flatnonzero((pcap.time_ns == t_ns) & (pcap.kind == kind))
            if hit.size:
                return int(pcap.sent[hit[0]]), int(pcap.frame[hit[0]])
        return None, None


def _kind_value(name: str) -> int | None:
    try:
        return int(EventKind[name])
    except KeyError:
        return None


def _merge(flows: dict[int, Flow], more: dict[int, Flow]) -> None:
    for fid, f in more.items():
        if fid not in flows or (flows[fid].opened_by_board is None and f.opened_by_board is not None):
            flows[fid] = f


def _table(path: Path) -> PacketTable | None:
    """What can be read of a pcap (a damaged one: its frames before the fault)."""
    try:
        return read_capture(path, strict=False).packets
    except (OSError, ValueError):
        return None


# -- what a scenario's report shows ----------------------------------------------------------
@dataclass
class Stimulus:
    """Something the harness did, on the run's timeline."""

    t_ns: int
    label: str
    name: str


def stimuli(files: ScenarioFiles, start_ns: int, end_ns: int) -> tuple[list[Stimulus], list[tuple[int, int]]]:
    """The harness's stimuli in [start, end] (host-events records, and the steps the
    records do not hold), and the spans it held the link down (clipped to the window)."""
    out: list[Stimulus] = []
    down: list[tuple[int, int]] = []
    down_since = None
    for rec in sorted(_records(files.host_events), key=lambda r: r["host_wall_ns"]):
        name, t = rec.get("event"), rec["host_wall_ns"]
        if name == "link_down" and down_since is None:
            down_since = t
        elif name == "link_up" and down_since is not None:
            down.append((down_since, t))
            down_since = None
        if name in STIMULUS_RECORDS and start_ns <= t <= end_ns:
            label = STIMULUS_RECORDS[name]
            if name == "board_connect":
                label += f" {rec.get('addr', '?')}:{rec.get('port', '?')}"
            elif name == "step_error":
                label += f" ({rec.get('do', '?')})"
            out.append(Stimulus(t, label, name))
    if down_since is not None:
        down.append((down_since, end_ns))
    for step in _read_json(files.steps, []):
        if not isinstance(step, dict) or step.get("do") not in UNRECORDED_STEPS:
            continue
        t = start_ns + _step_ns(step)
        what = step.get("service") or (f":{step['port']}" if "port" in step else "")
        out.append(Stimulus(t, f"{step['do']} {what}".strip(), str(step["do"])))
    out.sort(key=lambda s: s.t_ns)
    spans = [(max(a, start_ns), min(b, end_ns)) for a, b in down if b >= start_ns and a <= end_ns]
    return out, spans


@dataclass
class Compared:
    """One predicted event and the board's event it was paired with (or not)."""

    label: str
    kind: str
    pred_ns: int | None
    lo_ns: int | None
    hi_ns: int | None
    obs_ns: int | None
    pred_frame: int | None = None
    obs_frame: int | None = None
    key: int | None = None


@dataclass
class ScenarioView:
    """What the report shows of one verdict."""

    verdict: Verdict
    name: str
    files: ScenarioFiles
    index: FlowIndex
    services: dict[int, str]
    stimuli: list[Stimulus] = field(default_factory=list)
    link_down: list[tuple[int, int]] = field(default_factory=list)
    compared: list[Compared] = field(default_factory=list)

    @classmethod
    def build(cls, verdict: Verdict, name: str, files: ScenarioFiles, declared=None) -> ScenarioView:
        """The view of one verdict. Artifacts that cannot be read back (the oracle has
        judged them already: a damaged file is in the verdict's error) leave the rows named
        by kind, never the report unwritten."""
        try:
            index = FlowIndex.read(files, verdict.timeline) if files.folder is not None else FlowIndex.empty()
        except (HarnessError, ValueError, KeyError, TypeError):
            index = FlowIndex.empty()
        view = cls(verdict, name, files, index, _services(declared, files, index, verdict.start_ns))
        if verdict.start_ns:
            try:
                view.stimuli, view.link_down = stimuli(files, verdict.start_ns, verdict.end_ns)
            except (OSError, ValueError, TypeError):
                pass   # no stimuli drawn; the rows stand
        view.compared = view._pair()
        return view

    def label(self, key: int | None, kind_name: str) -> str:
        return self.index.label(key or 0, kind_name, self.services)

    def row_key(self, row: dict) -> int:
        """A row's stream key; rows made outside the comparison core carry 0, and are keyed
        by their frame when they have one."""
        key = int(row.get("stream") or 0)
        if not key and row.get("frame") is not None and self.index.captures:
            pcap = self.index.captures[0]
            hit = np.flatnonzero(pcap.frame == row["frame"])
            if hit.size:
                key = int(pcap.sent[hit[0]])
        return key

    def _pair(self) -> list[Compared]:
        """The verdict's series per stream: each prediction with the nearest unpaired
        observation of its stream (a pass pairs every one)."""
        s = self.verdict.series or {}
        pred: dict[object, list] = {}
        obs: dict[object, list] = {}
        for name, t, lo, hi in s.get("predicted", []):
            key, frame = self.index.key_at(name, int(t), predicted=True)
            pred.setdefault(key if key is not None else name, []).append((name, int(t), int(lo), int(hi), frame))
        # the rows know the stream of what they observed, with no capture at hand too
        row_keys = {(r.get("stream_name"), r["obs_ns"]): (int(r["stream"]), r.get("frame")) for r in self.verdict.rows
                    if r.get("obs_ns") is not None and r.get("stream")}
        for name, t in s.get("observed", []):
            key, frame = self.index.key_at(name, int(t), predicted=False)
            if key is None:
                key, frame = row_keys.get((name, int(t)), (None, None))
            obs.setdefault(key if key is not None else name, []).append((name, int(t), frame))
        for name in [k for k in obs if isinstance(k, str)]:
            # not keyed (no capture read): beside the nearest prediction of its kind
            streams = [k for k, p in pred.items() if isinstance(k, int) and p[0][0] == name]
            for o in (obs.pop(name) if streams else []):
                best = min(streams, key=lambda k, t=o[1]: min(_outside(t, p[2], p[3]) for p in pred[k]))
                obs.setdefault(best, []).append(o)
        out: list[Compared] = []
        for stream in sorted(set(pred) | set(obs), key=str):
            key = stream if isinstance(stream, int) else None
            left = sorted(obs.get(stream, []), key=lambda o: o[1])
            for name, t, lo, hi, frame in sorted(pred.get(stream, []), key=lambda p: p[1]):
                label = self.label(key, name)
                if not left:
                    out.append(Compared(label, name, t, lo, hi, None, frame, None, key))
                    continue
                best = min(range(len(left)), key=lambda j: _outside(left[j][1], lo, hi))
                _, ot, oframe = left.pop(best)
                out.append(Compared(label, name, t, lo, hi, ot, frame, oframe, key))
            for name, ot, oframe in left:
                out.append(Compared(self.label(key, name), name, None, None, None, ot, None, oframe, key))
        out.sort(key=lambda c: c.pred_ns if c.pred_ns is not None else c.obs_ns)
        return out

    def window(self, row: dict) -> tuple[int, int] | None:
        """The row's expected window on the common timeline: the model's window moved as
        the comparison moved it (by expected - predicted)."""
        pred, expected = row.get("pred_ns"), row.get("expected_ns")
        if pred is None:
            return None
        shift = (expected - pred) if expected is not None else 0
        for name, t, lo, hi in (self.verdict.series or {}).get("predicted", []):
            if int(t) == pred and name == row.get("stream_name"):
                return int(lo) + shift, int(hi) + shift
        return pred + shift, pred + shift

    def after_stimulus(self, t_ns: int | None) -> str:
        """`612.3 ms after link down`: the latest stimulus at or before `t_ns`."""
        if t_ns is None:
            return ""
        before = [s for s in self.stimuli if s.t_ns <= t_ns and s.name != "watchdog_kick"]
        if not before:
            return ""
        s = before[-1]
        return f"{_ms(t_ns - s.t_ns)} ms after {s.label}"

    def clock_spread_ns(self) -> int | None:
        offsets = (self.verdict.timeline or {}).get("offsets", [])
        spreads = [abs(int(o.get("spread_ns") or 0)) for o in offsets]
        return max(spreads) if spreads else None


def _outside(t: int, lo: int, hi: int) -> int:
    """How far `t` is outside [lo, hi] (0 inside)."""
    return max(lo - t, t - hi, 0)


# -- formatting -------------------------------------------------------------------------
def _ms(ns) -> str:
    """Milliseconds, to 0.1 ms (to 1 us below a millisecond, where the emulated or modelled
    board's replies sit)."""
    if ns is None:
        return ""
    return f"{ns / 1e6:.3f}" if 0 < abs(ns) < 1_000_000 else f"{ns / 1e6:.1f}"


def _rel_ms(t, t0) -> str:
    return "" if t is None else _ms(t - t0)


def _word(v: Verdict) -> str:
    if v.error:
        return "ERROR"
    return "pass" if v.ok else f"FAIL ({len(v.rows)} divergences)"


_TCP_FLAG_NAMES = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"),
                   (0x40, "ECE"), (0x80, "CWR"))
_TCP_OPTION_NAMES = {0: "EOL", 1: "NOP", 2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS"}


def field_value(name: str | None, value) -> str:
    """A field's value as a person reads it (MACs, flag names, option order, hex TOS)."""
    if not isinstance(value, int) or name is None:
        return "" if value is None else str(value)
    if value == -1 and not name.startswith("learnt"):
        return "absent"
    if name in ("eth_src", "eth_dst"):
        return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))
    if name == "tcp_flags":
        return "|".join(n for bit, n in _TCP_FLAG_NAMES if value & bit) or "none"
    if name == "tcp_opt_order":
        kinds = [((value & 0xFFFFFFFFFFFFFFFF) >> (8 * k)) & 0xFF for k in range(8)]
        while kinds and kinds[-1] == 0:
            kinds.pop()
        return ",".join(_TCP_OPTION_NAMES.get(k, str(k)) for k in kinds) or "none"
    if name == "ip_tos":
        return f"0x{value:02x}"
    return str(value)


def timing(row: dict, window: tuple[int, int] | None, t0: int) -> str:
    """What the row says about time, in words: LATE and EARLY measured from the window's
    edge, MISSING with its window; blank where the row has no time to speak of (EXTRA)."""
    kind, d, tol = row["kind"], row.get("delta_ns"), row.get("tol_ns")
    if row.get("detail"):
        return str(row["detail"])
    win = "" if window is None else (f"window {_rel_ms(window[0], t0)} ms" if window[0] == window[1]
                                     else f"window {_rel_ms(window[0], t0)}–{_rel_ms(window[1], t0)} ms")
    tol_text = f"tolerance {_ms(tol)} ms" if tol else ""
    ctx = "; ".join(x for x in (win, tol_text) if x)
    if kind == "LATE":
        return f"beyond the window by {_ms(d)} ms ({ctx})"
    if kind == "EARLY":
        return f"before the window by {_ms(-d)} ms ({ctx})"
    if kind == "MISSING":
        return f"expected: {ctx}" if ctx else ""
    if kind == "REORDERED":
        return f"{_ms(d)} ms from its expected time, out of its stream's order"
    if kind == "ORDER_VIOLATION":
        if row.get("pred_id") is None:
            return f"{_ms(d)} ms into a span where the board must stay quiet"
        return f"{_ms(-d)} ms before the event it must follow"
    if kind == "FIELD_MISMATCH" and row.get("obs_ns") is not None and window is not None:
        return "in time" if not d else f"in time ({_ms(d)} ms from the window, {tol_text})"
    return ""


# -- the timeline plot ------------------------------------------------------------------
KIND_SHORT = {"TCP_SYNACK": "SYN-ACK", "TCP_SYN": "SYN", "TCP_RST": "RST", "TCP_DATA": "data", "TCP_FIN": "FIN",
              "ARP_REQUEST": "who-has", "ARP_REPLY": "is-at", "ICMP_ECHO_REPLY": "echo reply",
              "LINK_DOWN": "Link is Down", "LINK_UP": "Link is Up", "RESTARTING": "Restarting",
              "QMP_RESET": "reset", "WATCHDOG_DID_NOT_STOP": "wdt not stopped"}


def _divergence_points(view: ScenarioView) -> list[tuple[int, str, str]]:
    """(time, timeline row, kind) of each divergence row that has a time."""
    out = []
    for r in view.verdict.rows:
        t = r.get("obs_ns") if r.get("obs_ns") is not None else r.get("pred_ns")
        if t is not None:
            out.append((t, view.label(view.row_key(r), r.get("stream_name", "?")), r["kind"]))
    return out


def timeline_rows(view: ScenarioView) -> list[str]:
    """The plot's rows, top to bottom: the harness's stimuli, then one per flow (and the
    console, the resets) in the order they first show."""
    rows = [HARNESS_ROW] if view.stimuli or view.link_down else []
    for label in [c.label for c in view.compared] + [label for _, label, _ in _divergence_points(view)]:
        if label not in rows:
            rows.append(label)
    return rows


def timeline_plot(verdict: Verdict, path: Path, view: ScenarioView | None = None) -> Path:
    """The scenario on its timeline: one row per flow (and console, resets), the model's
    windows and times, the board's events, the divergences, and the harness's stimuli as
    events of their own, with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    view = view or ScenarioView.build(verdict, path.stem, ScenarioFiles())
    t0 = verdict.start_ns
    span_s = max((verdict.end_ns - t0) / 1e9, 1e-3) if t0 else 1.0

    def x(t):
        return (t - t0) / 1e9

    div_pts = _divergence_points(view)
    names = timeline_rows(view)
    y = {n: len(names) - 1 - i for i, n in enumerate(names)}   # the harness on top, flows below
    many_kinds = {n for n in names if len({c.kind for c in view.compared if c.label == n}) > 1}

    fig, ax = plt.subplots(figsize=(11, 1.9 + 0.42 * max(1, len(names))))
    for lo, hi in view.link_down:
        ax.axvspan(x(lo), x(hi), color="tab:gray", alpha=0.18, lw=0)
    for s in view.stimuli:
        ax.axvline(x(s.t_ns), color="black", lw=0.8, ls=":", alpha=0.5 if s.name != "watchdog_kick" else 0.15)
        ax.plot(x(s.t_ns), y[HARNESS_ROW], "v", color="black", ms=7 if s.name != "watchdog_kick" else 3)
        if s.name != "watchdog_kick":
            ax.annotate(s.label, (x(s.t_ns), y[HARNESS_ROW]), xytext=(3, 6), textcoords="offset points",
                        fontsize=7, rotation=20)
    for c in view.compared:
        row = y[c.label]
        if c.pred_ns is not None:
            ax.plot([x(c.lo_ns), x(c.hi_ns)], [row, row], color="tab:green", lw=7, alpha=0.35, solid_capstyle="butt")
            ax.plot(x(c.pred_ns), row, "|", color="tab:green", ms=15, mew=2)
        if c.obs_ns is not None:
            ax.plot(x(c.obs_ns), row, "o", color="tab:blue", ms=5)
        if c.label in many_kinds:
            t = c.obs_ns if c.obs_ns is not None else c.pred_ns
            ax.annotate(KIND_SHORT.get(c.kind, c.kind), (x(t), row), xytext=(0, -11), textcoords="offset points",
                        fontsize=6, ha="center", color="dimgray")
    for t, label, _kind in div_pts:
        ax.plot(x(t), y[label], "x", color="tab:red", ms=11, mew=2.2)
    ax.set_yticks([y[n] for n in names], names, fontsize=8)
    ax.set_ylim(-0.7, max(len(names), 1) - 0.3)
    ax.set_xlim(-0.02 * span_s, span_s * 1.02)
    ax.set_xlabel("seconds from the scenario's start")
    ax.grid(axis="x", alpha=0.3)
    if verdict.error:
        ax.set_title(f"{verdict.scenario}: ERROR (no verdict)", color="#b00000", fontweight="bold")
        ax.text(0.5, 0.5, "ERROR: " + _short(verdict.error, 110), transform=ax.transAxes, ha="center", va="center",
                color="#b00000", fontsize=9, fontweight="bold", wrap=True,
                bbox={"facecolor": "#ffecec", "edgecolor": "#b00000"})
    else:
        ax.set_title(f"{verdict.scenario}: {_word(verdict)}", color="green" if verdict.ok else "#b00000")
    handles = [Patch(color="tab:green", alpha=0.35, label="model's window"),
               Line2D([], [], color="tab:green", marker="|", ls="", ms=12, mew=2, label="model's time"),
               Line2D([], [], color="tab:blue", marker="o", ls="", label="board"),
               Line2D([], [], color="tab:red", marker="x", ls="", ms=9, mew=2, label="divergence"),
               Line2D([], [], color="black", marker="v", ls=":", lw=0.8, label="harness stimulus")]
    if view.link_down:
        handles.append(Patch(color="tab:gray", alpha=0.18, label="link held down"))
    fig.tight_layout()
    fig.subplots_adjust(bottom=max(0.22, 0.9 / fig.get_figheight()))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- the HTML page ------------------------------------------------------------------------
CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;vertical-align:top}
th{background:#f4f4f4}
.ok{color:green}.bad{color:#b00}
.error{background:#ffecec;border:2px solid #b00;color:#800;padding:0.6em 1em;font-weight:bold;margin:0.6em 0}
.error .what{font-weight:normal;white-space:pre-wrap}
.artifacts a{margin-right:1em}
.clock{color:#444}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.flow{font-family:monospace;white-space:nowrap}
td a{white-space:nowrap}"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _link(path: Path, base: Path, text: str) -> str:
    return f"<a href='{_e(relative_href(path, base))}'>{_e(text)}</a>"


def _frames_cell(view: ScenarioView, base: Path, key: int, pred_frame: int | None, obs_frame: int | None) -> str:
    parts = []
    if pred_frame is not None and view.files.predicted is not None:
        parts.append(_link(view.files.predicted, base, f"predicted.pcap #{pred_frame}"))
    if obs_frame is not None:
        where = view.index.capture_frame(key, obs_frame)
        parts.append(_link(where[0], base, f"{where[0].name} #{obs_frame}") if where else f"capture #{obs_frame}")
    return "<br>".join(parts)


def _clock_html(view: ScenarioView) -> str:
    """The run's clock uncertainty: the largest spread, and every offset behind it."""
    tl = view.verdict.timeline or {}
    offsets = tl.get("offsets", [])
    if not offsets:
        return "<p class='clock'>clocks: no timeline (nothing was read)</p>"
    spread = view.clock_spread_ns()
    worst = max(offsets, key=lambda o: abs(int(o.get("spread_ns") or 0)))
    rows = "".join(
        f"<tr><td>{_e(o.get('clock'))}[{_e(o.get('segment'))}]</td><td class='num'>{_ms(o.get('offset_ns'))}</td>"
        f"<td class='num'>±{_ms(abs(int(o.get('spread_ns') or 0)))}</td><td class='num'>{_e(o.get('n_anchors'))}</td>"
        f"<td>{_e(o.get('method', ''))}{(' — ' + _e(o['note'])) if o.get('note') else ''}</td></tr>"
        for o in offsets)
    return (f"<p class='clock'>clock uncertainty of this run: ±{_ms(spread)} ms (largest spread: "
            f"{_e(worst.get('clock'))}); every time is on the {_e(tl.get('common', 'common'))} clock.</p>"
            f"<details><summary>clock offsets</summary><table class='clocks'><tr><th>clock</th><th>offset (ms)</th>"
            f"<th>spread (ms)</th><th>anchors</th><th>method</th></tr>{rows}</table></details>")


def _divergences_html(view: ScenarioView, base: Path) -> str:
    v, t0 = view.verdict, view.verdict.start_ns
    out = ["<table class='divergences'><tr><th>kind</th><th>flow</th><th>event</th><th>field</th>"
           "<th>model (ms)</th><th>board (ms)</th><th>timing</th><th>predicted value</th><th>observed value</th>"
           "<th>frames</th></tr>"]
    for r in v.rows:
        key = view.row_key(r)
        field_name = r.get("field")
        values = bool(field_name)
        pred_frame = view.index.predicted_frame(key, r.get("pred_ns"))
        cells = [
            _e(r["kind"]), f"<span class='flow'>{_e(view.label(key, r.get('stream_name', '?')))}</span>",
            _e(r.get("stream_name", "")), _e(field_name or ""),
            _rel_ms(r.get("pred_ns"), t0), _rel_ms(r.get("obs_ns"), t0), _e(timing(r, view.window(r), t0)),
            _e(field_value(field_name, r.get("pred_value")) if values else ""),
            _e(field_value(field_name, r.get("obs_value")) if values else ""),
            _frames_cell(view, base, key, pred_frame, r.get("frame")),
        ]
        out.append("<tr class='divergence'>" + "".join(
            f"<td class='num'>{c}</td>" if i in (4, 5) else f"<td>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _compared_html(view: ScenarioView, base: Path) -> str:
    """Every predicted event beside what the board did: the measured times a pass is made of."""
    t0 = view.verdict.start_ns
    out = ["<table class='compared'><tr><th>flow</th><th>event</th><th>model (ms)</th><th>model's window (ms)</th>"
           "<th>board (ms)</th><th>board − model (ms)</th><th>outside the window (ms)</th>"
           "<th>measured from the stimulus</th><th>frames</th></tr>"]
    for c in view.compared:
        win = "" if c.lo_ns is None else (_rel_ms(c.lo_ns, t0) if c.lo_ns == c.hi_ns else
                                          f"{_rel_ms(c.lo_ns, t0)}–{_rel_ms(c.hi_ns, t0)}")
        delta = outside = ""
        if c.obs_ns is not None and c.pred_ns is not None:
            delta = ("+" if c.obs_ns >= c.pred_ns else "−") + _ms(abs(c.obs_ns - c.pred_ns))
            beyond = c.obs_ns - c.hi_ns if c.obs_ns > c.hi_ns else c.obs_ns - c.lo_ns if c.obs_ns < c.lo_ns else 0
            outside = "inside" if not beyond else f"{_ms(abs(beyond))} {'after' if beyond > 0 else 'before'}"
        out.append(f"<tr class='compared'><td><span class='flow'>{_e(c.label)}</span></td><td>{_e(c.kind)}</td>"
                   f"<td class='num'>{_rel_ms(c.pred_ns, t0)}</td><td class='num'>{win}</td>"
                   f"<td class='num'>{_rel_ms(c.obs_ns, t0)}</td><td class='num'>{delta}</td>"
                   f"<td class='num'>{outside}</td>"
                   f"<td>{_e(view.after_stimulus(c.obs_ns))}</td>"
                   f"<td>{_frames_cell(view, base, c.key or 0, c.pred_frame, c.obs_frame)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _scenario_html(view: ScenarioView, plot: Path, base: Path) -> str:
    v = view.verdict
    parts = [f"<section class='scenario' id='{_e(view.name)}'>",
             f"<h2>{_e(v.scenario)}: <span class='{'ok' if v.ok else 'bad'}'>{_e(_word(v))}</span></h2>"]
    if v.error:
        parts.append(f"<div class='error'>ERROR: the oracle gave no verdict for this scenario; it is not a pass."
                     f"<div class='what'>{_e(v.error)}</div></div>")
    links = view.files.links()
    if links:
        parts.append("<p class='artifacts'>artifacts: " + " ".join(_link(p, base, p.name) for p in links) + "</p>")
    else:
        parts.append("<p class='artifacts'>artifacts: none kept for this scenario</p>")
    if v.start_ns:
        parts.append(f"<p>window: {v.predicted} predicted and {v.observed} observed events compared over "
                     f"{(v.end_ns - v.start_ns) / 1e9:.3f} s; times are ms from the scenario's start.</p>")
    parts.append(_clock_html(view))
    parts.append(f"<img src='{_e(relative_href(plot, base))}' alt='timeline of {_e(v.scenario)}'>")
    if v.rows:
        parts.append(f"<h3>divergences ({len(v.rows)})</h3>")
        parts.append(_divergences_html(view, base))
    if v.ok:
        parts.append("<p class='ok'>The board did what Linux 6.1 would have done.</p>")
    if view.compared:
        parts.append("<h3>compared: the board's times against the model's</h3>"
                     "<p>An event matches when it is inside the model's window or beyond it by no more than its "
                     "tolerance (max of the board's absolute tolerance and a fraction of the predicted gap from "
                     "its stream's previous event).</p>")
        parts.append(_compared_html(view, base))
    if view.stimuli:
        parts.append("<details><summary>the harness's stimuli</summary><ul>" + "".join(
            f"<li>{_rel_ms(s.t_ns, v.start_ns)} ms: {_e(s.label)}</li>" for s in view.stimuli) + "</ul></details>")
    if v.learnt:
        parts.append("<details><summary>learnt values</summary><table><tr><th>name</th><th>value</th><th>bound</th>"
                     "<th>inside</th><th>where</th></tr>" + "".join(
                         f"<tr><td>{_e(x.name)}</td><td class='num'>{_e(x.value)}</td><td>{_e(x.lo)}..{_e(x.hi)}</td>"
                         f"<td>{'yes' if x.inside else '<b>no</b>'}</td><td>{_e(x.where)}</td></tr>"
                         for x in v.learnt) + "</table></details>")
    for note in v.notes:
        parts.append(f"<p>note: {_e(note)}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def timeline_paths(out_dir: Path, verdicts: Sequence[Verdict]) -> list[Path]:
    """Where write_report puts each verdict's plot. A scenario's name is the user's text:
    its plot's file name is made safe and unique."""
    return [out_dir / f"{name}.timeline.png" for name in unique_names([v.scenario for v in verdicts])]


class ReportCache:
    """The views and plots of a report rewritten as verdicts come in (the nightly rewrites
    it after every scenario): a verdict whose JSON, name, files and plot path are those of
    the last write keeps its view and its PNG, so each plot is drawn once, not once per
    later scenario."""

    def __init__(self):
        self._kept: dict[tuple, tuple[ScenarioView, Path]] = {}

    def view_and_plot(self, verdict: Verdict, name: str, files: ScenarioFiles, declared,
                      plot: Path) -> tuple[ScenarioView, Path]:
        key = (name, json.dumps(verdict.to_json(), sort_keys=True, default=int), files, str(plot))
        kept = self._kept.get(key)
        if kept is None or not kept[1].exists():
            view = ScenarioView.build(verdict, name, files, declared)
            kept = self._kept[key] = (view, timeline_plot(view.verdict, plot, view))
        return kept


def write_report(out_dir: Path, verdicts: list[Verdict], meta: dict,
                 folders: Sequence[Path | ScenarioFiles | None] | Mapping[str, Path | ScenarioFiles | None] | None = None,
                 declared=None, cache: ReportCache | None = None) -> dict[str, Path]:
    """report.json, report.html and a timeline PNG per scenario in `out_dir`.

    `folders`: each verdict's artifact folder (or ScenarioFiles), in order or by scenario
    name; by default a subfolder named like the scenario (as `bmc-hil run` lays a run
    out), else `out_dir` itself for a single verdict whose verdict.json is there (as
    `compare` does). `declared`: the firmware config, whose services name the flows
    (default: the services the scenario's steps connected to). `cache`: reuse what an
    earlier write of the same report drew (ReportCache)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = unique_names([v.scenario for v in verdicts])
    files = _scenario_files(out_dir, verdicts, names, folders)
    cache = cache or ReportCache()
    drawn = [cache.view_and_plot(v, n, f, declared, p)
             for v, n, f, p in zip(verdicts, names, files, timeline_paths(out_dir, verdicts), strict=True)]
    views, plots = [d[0] for d in drawn], [d[1] for d in drawn]
    data = {**meta, "ok": all(v.ok for v in verdicts), "scenarios": [v.to_json() for v in verdicts]}
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=int) + "\n")
    errors = [v for v in verdicts if v.error]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>bmc-hil report</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>bmc-hil: {_e(meta.get('board', ''))}</h1>"]
    extra = {k: x for k, x in meta.items() if k != "board" and x is not None}
    if extra:
        parts.append("<p>" + "; ".join(f"{_e(k)}: {_e(x)}" for k, x in extra.items()) + "</p>")
    if errors:
        parts.append(f"<div class='error'>{len(errors)} of {len(verdicts)} scenarios are errors (no verdict, "
                     f"never a pass): {_e(', '.join(v.scenario for v in errors))}</div>")
    parts.append("<table class='summary'><tr><th>scenario</th><th>verdict</th><th>predicted</th><th>observed</th>"
                 "<th>divergences</th><th>clock ± (ms)</th><th>artifacts</th></tr>")
    for view in views:
        v = view.verdict
        kept = [p for p in (*view.files.captures, view.files.console, view.files.verdict) if p is not None]
        parts.append(f"<tr class='scenario'><td><a href='#{_e(view.name)}'>{_e(v.scenario)}</a></td>"
                     f"<td class='{'ok' if v.ok else 'bad'}'>{_e(_word(v))}</td><td class='num'>{v.predicted}</td>"
                     f"<td class='num'>{v.observed}</td><td class='num'>{len(v.rows)}</td>"
                     f"<td class='num'>{_ms(view.clock_spread_ns())}</td>"
                     f"<td class='artifacts'>{' '.join(_link(p, out_dir, p.name) for p in kept)}</td></tr>")
    parts.append("</table>")
    for view, plot in zip(views, plots, strict=True):
        parts.append(_scenario_html(view, plot, out_dir))
    parts.append("</body></html>")
    (out_dir / "report.html").write_text("\n".join(parts), encoding="utf-8")
    return {"json": out_dir / "report.json", "html": out_dir / "report.html",
            **{f"png:{v.scenario}": p for v, p in zip(verdicts, plots, strict=True)}}
