"""Stage 1 of the oracle: a run's artifacts -> an Observation on one timeline.

Reads the capture(s), the console log, the harness's host-event records and QEMU's QMP
log, maps their clocks onto the host wall clock (harness.ingest.timeline) and keys every
frame into streams (harness.ingest.streams). Frame fields the later stages need are read
through models.wire's Reprs (`FrameView`), never by byte offset.

Damaged input is never a silent pass: a capture cut short or malformed, a capture with no
frame, a console log that is missing, empty, has lines without the console driver's stamp
or stamps going backwards, each is listed in `Observation.input_errors`, which makes the
verdict an error. With `Artifacts.salvage` a damaged capture's frames before the fault are
compared instead, and the cut is listed in `Observation.salvaged`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.compare.events import ObservedEvents
from harness.errors import HarnessError
from harness.ingest.console import ConsoleLog, read_console
from harness.ingest.events import Clock, EventKind, EventTable, read_host_events, read_qmp_log
from harness.ingest.pcap import Capture, read_capture
from harness.ingest.pcap_reference import frame_bytes
from harness.ingest.streams import STREAM_FIELDS, TO_BOARD, concat_observed, frame_events, nonframe_events
from harness.ingest.timeline import build_timeline
from models.config import FirmwareConfig
from models.errors import WireError


class OracleError(HarnessError):
    """The run's artifacts cannot be compared (names the file and what is wrong)."""


@dataclass
class Artifacts:
    """Where a run's records are. `capture_clock`: 'qemu-filter-dump' or 'host-wall'.
    `salvage`: compare a damaged capture's frames before the fault (and say so) instead of
    making the verdict an error."""

    captures: list[Path]
    console: Path
    host_events: Path
    qmp: Path | None = None
    capture_clock: str = "host-wall"
    salvage: bool = False

    @classmethod
    def in_dir(cls, out: Path, capture_clock: str, salvage: bool = False) -> Artifacts:
        caps = sorted(out.glob("capture*.pcap"), key=lambda p: (len(p.name), p.name))
        qmp = out / "qmp.jsonl"
        return cls(caps, out / "console.log", out / "host-events.jsonl", qmp if qmp.exists() else None,
                   capture_clock, salvage)


@dataclass(frozen=True)
class FrameView:
    """The fields of one IPv4/TCP or ARP frame the oracle's stages read, parsed by
    models.wire (checksums not verified: the capture is what it is)."""

    ethertype: int
    arp_tip: int | None = None                    # ARP: target protocol address
    src: int = 0
    dst: int = 0
    sport: int = 0
    dport: int = 0
    flags: int = 0
    seq: int = 0
    ack: int = 0
    tsval: int | None = None
    payload: bytes = b""
    is_tcp: bool = False

    @classmethod
    def parse(cls, raw: bytes) -> FrameView | None:
        """None for a frame that is neither ARP nor an unfragmented IPv4/TCP segment."""
        from models.wire import ETH_P_ARP, ETH_P_IP, IPPROTO_TCP, ArpRepr, EthernetRepr, Ipv4Repr, TcpRepr

        try:
            eth, payload = EthernetRepr.parse(raw)
            if eth.ethertype == ETH_P_ARP:
                return cls(eth.ethertype, arp_tip=ArpRepr.parse(payload).tip)
            if eth.ethertype != ETH_P_IP:
                return None
            ip, seg = Ipv4Repr.parse(payload, verify_checksum=False)
            if ip.protocol != IPPROTO_TCP or ip.is_fragment:
                return None
            tcp, data = TcpRepr.parse(seg, ip.src, ip.dst, verify_checksum=False)
        except WireError:
            return None
        ts = tcp.timestamp
        return cls(eth.ethertype, None, ip.src, ip.dst, tcp.src_port, tcp.dst_port, tcp.flags, tcp.seq, tcp.ack,
                   ts[0] if ts else None, data, True)

    def flow(self, board_ip: int) -> tuple[int, int, int] | None:
        """(peer ip, peer port, board port) of a TCP segment to or from the board."""
        if not self.is_tcp:
            return None
        if self.src == board_ip:
            return self.dst, self.dport, self.sport
        return self.src, self.sport, self.dport


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
    frame_peer_ip: np.ndarray        # the flow's far end, named from the board's side
    frame_peer_port: np.ndarray
    events: ObservedEvents           # console, QMP and host events
    event_kind: np.ndarray
    event_table: EventTable
    timeline: object
    captures: list[Path]
    host_events: Path
    boot_ns: int                     # model time 0: the VM's first run, else power-on (harness records)
    ifup_ns: int                     # the first "Link is Up" after that boot (eth0 up)
    input_errors: list[str] = field(default_factory=list)   # damaged captures and console log: an error
    salvaged: list[str] = field(default_factory=list)       # damaged captures compared up to their cut
    salvaged_until_ns: int | None = None  # common time of the last frame before the earliest salvaged cut

    _bytes: dict[int, bytes] = field(default_factory=dict, repr=False)   # capture file -> contents
    _records: list[dict] | None = field(default=None, repr=False)

    @property
    def capture_errors(self) -> list[str]:
        """The former name of `input_errors`, without its "damaged capture: " prefix (until
        every reader says input_errors)."""
        return [e.removeprefix("damaged capture: ") for e in self.input_errors]

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

    def views(self, sel: np.ndarray) -> list[FrameView | None]:
        """FrameView of the frames at indices `sel`, in that order."""
        return [FrameView.parse(raw) for raw in self.raw_frames(sel)]

    def inbound_frames(self) -> list[tuple[int, bytes]]:
        """(common time, bytes) of every frame sent to the board, in time order."""
        sel = np.flatnonzero(self.frame_dir == TO_BOARD)
        out = list(zip(self.frames.time_ns[sel].tolist(), self.raw_frames(sel), strict=True))
        return sorted(out, key=lambda x: x[0])

    def records(self, name: str | None = None) -> list[dict]:
        """The harness's own host-event records (host-events.jsonl), optionally one name."""
        if self._records is None:
            self._records = []
            for n, line in enumerate(self.host_events.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise OracleError(f"{self.host_events}: line {n}: not JSON ({exc.msg})") from exc
                if not isinstance(rec, dict) or "event" not in rec or "host_wall_ns" not in rec:
                    raise OracleError(f"{self.host_events}: line {n}: a record needs 'event' and 'host_wall_ns'")
                self._records.append(rec)
        return [r for r in self._records if name is None or r["event"] == name]


def observe(art: Artifacts, declared: FirmwareConfig) -> Observation:
    """Read and align a run's records. Damaged captures and console logs are listed in
    `input_errors` (or, salvaged captures, in `salvaged`); `OracleError` names a capture or
    host-event file that is missing."""
    for p in [*art.captures, art.host_events]:
        if not p.exists():
            raise OracleError(f"{p}: missing (a run keeps its capture, console log and host events)")
    console = read_console(art.console, strict=False)
    errors = console_errors(console)
    host = read_host_events(art.host_events)
    qmp = read_qmp_log(art.qmp) if art.qmp is not None else None
    tables, salvaged, cuts = [], [], []
    for f, p in enumerate(art.captures):
        cap = read_capture(p, strict=False)
        problem = capture_problem(cap, p)
        if problem and cap.error is not None and art.salvage and len(cap.packets):
            salvaged.append(f"salvaged: {p} cut at byte offset {cap.error.offset}; frames after it are not "
                            f"compared ({cap.error.fault.name.lower().replace('_', ' ')}; {len(cap.packets)} "
                            "frames read before it)")
            cuts.append((f, int(cap.packets.time_ns[-1])))
        elif problem:
            errors.append(problem)
        tables.append(cap.packets)
    timeline = build_timeline(console, host, [t.time_ns for t in tables], art.capture_clock, qmp)
    if art.capture_clock == "qemu-filter-dump" and qmp is not None:
        _pin_filter_dump(timeline, art.host_events, qmp, len(tables))
    parts, kinds, dirs, files, numbers, probes, peer_ips, peer_ports = [], [], [], [], [], [], [], []
    for f, table in enumerate(tables):
        common = timeline.to_common(Clock.CAPTURE, table.time_ns.astype(np.int64), f)
        fe = frame_events(table, declared, time_ns=common)
        parts.append(fe.events)
        kinds.append(fe.kind)
        dirs.append(fe.direction)
        files.append(np.full(len(fe.kind), f))
        numbers.append(fe.events.frame)
        probes.append(unicast_arp_request(table, fe))
        peer_ips.append(fe.peer_ip)
        peer_ports.append(fe.peer_port)
    frames = concat_observed(*parts) if parts else ObservedEvents.build([], [], n_fields=len(STREAM_FIELDS))
    ev = EventTable.concat([t for t in (console.events(), qmp, host) if t is not None])
    events = nonframe_events(ev, timeline)
    # Model time 0 comes from the harness's records: the VM's first run (QMP RESUME, which
    # the harness sent), else its power-on record. Only a log with neither falls back on
    # the first boot's guest clock 0.
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

    whole_until = min((int(timeline.to_common(Clock.CAPTURE, np.array([t], np.int64), f)[0]) for f, t in cuts),
                      default=None)
    return Observation(declared, frames, cat(kinds, np.int16), cat(dirs, np.int8), cat(files, np.int64),
                       cat(numbers, np.int64), cat(probes, bool), cat(peer_ips, np.int64), cat(peer_ports, np.int64),
                       events, ev.kind.astype(np.int16), ev, timeline,
                       list(art.captures), art.host_events, boot_ns, ifup_ns, errors, salvaged, whole_until)


# How many of one console log's damaged lines a verdict lists before it counts the rest.
CONSOLE_ERRORS_LISTED = 3


def console_errors(console: ConsoleLog) -> list[str]:
    """The console log's damage as input errors: the first few lines, then a count."""
    out = [f"damaged console log: {e}" for e in console.errors[:CONSOLE_ERRORS_LISTED]]
    more = len(console.errors) - CONSOLE_ERRORS_LISTED
    if more > 0:
        out.append(f"damaged console log: {console.source}: and {more} more damaged lines")
    return out


def capture_problem(cap: Capture, path: Path) -> str | None:
    """What is wrong with one capture file, or None. A file with no frame at all is damaged
    too: a run's capture holds at least the harness's own traffic with the board."""
    if cap.error is not None:
        return f"damaged capture: {cap.error}"
    if len(cap.packets) == 0:
        return (f"damaged capture: {path}: no frame: the file ends at byte offset {path.stat().st_size}, after "
                "its header (a run's capture holds at least the harness's own traffic with the board)")
    return None


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


def unicast_arp_request(table, fe) -> np.ndarray:
    """A unicast ARP request is a NUD_PROBE of a known neighbour, not a resolution."""
    dst = table.eth_dst.astype(np.uint64)[fe.row]
    return (fe.kind == EventKind.ARP_REQUEST) & (dst != np.uint64(0xFFFFFFFFFFFF))
