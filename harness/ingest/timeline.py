"""One timeline for a run: the offsets between its clocks, estimated from the records,
kept with how far they can be trusted, and applied to any source's stamps.

The common timeline is the host's wall clock (int64 ns since the epoch): console.log,
QMP and host-events.jsonl all carry it, and a lab capture is stamped with it. Every other
clock maps onto it by one offset per segment (common = source + offset); the clocks all
tick at the host's rate (QEMU's virtual clock and the guest's timer follow the host's
monotonic clock while the VM runs), so no skew term is fitted, but the spread of the
residuals is recorded to show when that assumption breaks.

How each offset is estimated:

- guest printk clock, per boot: a line reaches the host after the kernel stamped it, so
  host - guest over the boot's lines is the offset plus a delay >= 0; the minimum is the
  estimate (an upper bound of the true offset; the console reader's batching makes the
  typical delay up to ~100 ms, the minimum is usually within a few ms).
- host monotonic: host-events.jsonl records both host clocks at once: median of the
  differences, spread = their range (a wall-clock step shows up there).
- capture, per file: bounds from events seen on both sides. The capture holds no frame
  before the board was powered on and the capture started, nor after it stopped; and
  while the harness held the link down the capture has a hole, so the last frame before
  the hole was before the link_down record, the first after it came after link_up. The
  estimate is the middle of the interval the bounds leave (or the prior, clipped to it);
  its width is the spread. The prior is 0 for a capture stamped by the host's wall clock
  (a lab capture, wire mode) and also for QEMU's filter-dump, which stamps frames with
  the whole wall-clock second at which the filter was created plus QEMU's virtual clock
  since the VM first ran (QEMU 7.2 net/dump.c): a fraction of a second off the wall
  clock, growing with every pause of the VM. That also pins a filter-dump offset exactly:
  the virtual clock reads 0 at the VM's first RESUME, so the offset is the RESUME's wall
  stamp minus a whole number of seconds; the bounds pick which, when they are narrower
  than a second.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from harness.errors import HarnessError
from harness.ingest.console import ConsoleLog
from harness.ingest.events import Clock, EventKind, EventTable

COMMON_CLOCK = Clock.HOST_WALL

# How long after the QMP set_link took effect the harness records it, at most. A capture
# hole's far edge is trusted only to this.
HOST_RECORD_LATENCY_NS = 20_000_000
# Each capture clock's prior offset and how far it may be off: holes narrower than twice
# the error are not used, since the frames at their edges cannot be told apart from
# frames nearby. filter-dump: offset = wall time of the VM's first run - the whole second
# the filter was created in, so 0..1 s plus the time QEMU sat paused before `cont`.
CAPTURE_PRIORS_NS = {"host-wall": (0, 100_000_000), "qemu-filter-dump": (500_000_000, 750_000_000)}
CAPTURE_CLOCK_KINDS = tuple(CAPTURE_PRIORS_NS)
# filter-dump offsets pinned by the RESUME stamp: QMP stamps in us, then QEMU enables the
# virtual clock a few us later.
RESUME_PIN_SPREAD_NS = 1_000_000


class TimelineError(HarnessError):
    """A stamp from a clock (or segment) the timeline has no offset for."""


@dataclass
class ClockOffset:
    """common = source + offset_ns, for one segment of one clock.

    `spread_ns`: how far the estimate may be off (the width of the interval the bounds
    leave, or the 10th percentile of the residuals above the minimum for a min-estimate);
    negative when the bounds contradict each other. `lo_ns`/`hi_ns`: the bounds found
    (None when that side had none). `n_anchors`: pairs or bounds used."""

    clock: Clock
    segment: int
    offset_ns: int
    spread_ns: int
    n_anchors: int
    method: str
    lo_ns: int | None = None
    hi_ns: int | None = None
    note: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["clock"] = Clock(self.clock).name.lower()
        return d

    @classmethod
    def from_json(cls, d: dict) -> ClockOffset:
        return cls(**{**d, "clock": Clock[d["clock"].upper()]})


@dataclass
class Timeline:
    """The offsets of every clock segment onto the common (host wall) clock."""

    offsets: dict[tuple[int, int], ClockOffset] = field(default_factory=dict)

    def add(self, off: ClockOffset) -> None:
        self.offsets[(int(off.clock), int(off.segment))] = off

    def offset(self, clock: Clock, segment: int = 0) -> ClockOffset:
        """The offset of one segment; TimelineError when unknown."""
        if clock == COMMON_CLOCK:
            return ClockOffset(COMMON_CLOCK, 0, 0, 0, 0, "common clock")
        try:
            return self.offsets[(int(clock), int(segment))]
        except KeyError:
            known = ", ".join(f"{Clock(c).name.lower()}[{s}]" for c, s in sorted(self.offsets)) or "none"
            raise TimelineError(f"no offset for {Clock(clock).name.lower()} segment {segment} (known: {known})") \
                from None

    def to_common(self, clock, time_ns, segment=0) -> np.ndarray:
        """Stamps (any shape) of one clock onto the common timeline. `clock` and `segment`
        may be arrays of the same shape, one per stamp."""
        t = np.asarray(time_ns, np.int64)
        clock = np.broadcast_to(np.asarray(clock, np.int64), t.shape)
        segment = np.broadcast_to(np.asarray(segment, np.int64), t.shape)
        out = t.copy()
        pairs = np.unique(np.stack([clock.ravel(), segment.ravel()]), axis=1) if t.size else np.zeros((2, 0))
        for c, s in pairs.T.tolist():
            sel = (clock == c) & (segment == s)
            out[sel] += self.offset(Clock(c), s).offset_ns
        return out

    def events_to_common(self, events: EventTable) -> np.ndarray:
        """Each event's time on the common timeline."""
        return self.to_common(events.clock, events.time_ns, events.segment)

    def to_json(self) -> dict:
        """What a report shows: the common clock and every offset with its spread."""
        return {"common": COMMON_CLOCK.name.lower(),
                "offsets": [self.offsets[k].to_json() for k in sorted(self.offsets)]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @classmethod
    def from_json(cls, d: dict) -> Timeline:
        tl = cls()
        for o in d.get("offsets", []):
            tl.add(ClockOffset.from_json(o))
        return tl


# ---------------------------------------------------------------------------------------
# Estimators: plain arrays in, ClockOffset out.


def min_offset(host_ns: np.ndarray, source_ns: np.ndarray, clock: Clock, segment: int, method: str) -> ClockOffset:
    """Offset of a source whose every stamp is taken no later than the host's receive
    time: min(host - source), spread = 10th percentile of the residuals above it."""
    d = np.asarray(host_ns, np.int64) - np.asarray(source_ns, np.int64)
    off = int(d.min())
    spread = int(np.percentile(d - off, 10)) if d.size > 1 else 0
    return ClockOffset(clock, segment, off, spread, int(d.size), method, None, off)


def guest_offsets(console: ConsoleLog) -> list[ClockOffset]:
    """One offset per boot of the guest's printk clock, from the console lines that carry
    a printk stamp (a boot with none gets no offset)."""
    out = []
    stamped = console.guest_ns >= 0
    for boot in range(console.boots):
        sel = stamped & (console.boot == boot)
        if sel.any():
            out.append(min_offset(console.host_wall_ns[sel], console.guest_ns[sel], Clock.GUEST, boot,
                                  "min(host receive - printk stamp) over console lines"))
    return out


def monotonic_offset(host_events: EventTable) -> ClockOffset | None:
    """Host monotonic -> host wall, from records that carry both (host-events.jsonl)."""
    sel = (host_events.kind >= EventKind.HOST_POWER_ON) & (host_events.mono_ns >= 0) & \
          (host_events.clock == Clock.HOST_WALL)
    if not sel.any():
        return None
    d = host_events.time_ns[sel] - host_events.mono_ns[sel]
    mid = int(d[0]) + int(np.median(d - d[0]))  # float64 cannot hold an epoch in ns exactly
    return ClockOffset(Clock.HOST_MONOTONIC, 0, mid, int(d.max() - d.min()), int(d.size),
                       "median(wall - monotonic) over host-events records")


@dataclass
class _Bounds:
    lo: list[int] = field(default_factory=list)
    hi: list[int] = field(default_factory=list)
    why: list[str] = field(default_factory=list)


def _capture_span(host: EventTable, segment: int) -> tuple[int | None, int | None]:
    """Host wall times between which capture file `segment` can hold frames: from the
    later of capture_start and that file's power-on, to the earlier of capture_stop and
    the next power-off."""
    order = np.argsort(host.time_ns, kind="stable")
    t, k = host.time_ns[order], host.kind[order]
    starts = t[k == EventKind.HOST_CAPTURE_START]
    if starts.size == 0:
        return None, None
    c0 = int(starts[0])
    ons = t[(k == EventKind.HOST_POWER_ON) & (t >= c0)].tolist()
    if ((k == EventKind.HOST_POWER_ON) & (t < c0)).any():
        ons = [c0, *ons]  # the board was already running: file 0 starts with the capture
    if segment >= len(ons):
        return None, None
    lo = max(c0, int(ons[segment]))
    enders = t[((k == EventKind.HOST_POWER_OFF) | (k == EventKind.HOST_CAPTURE_STOP)) & (t >= lo)]
    return lo, (int(enders[0]) if enders.size else None)


def capture_offset(frame_ns: np.ndarray, host: EventTable, clock_kind: str = "host-wall", segment: int = 0,
                   qmp: EventTable | None = None, latency_ns: int = HOST_RECORD_LATENCY_NS) -> ClockOffset:
    """Offset of one capture file's clock, from bounds (see the module docstring).

    `frame_ns`: the file's frame stamps; `host`: host-events.jsonl; `qmp`: qmp.jsonl of
    the same power-on (filter-dump only: its first RESUME pins the offset).
    """
    if clock_kind not in CAPTURE_PRIORS_NS:
        raise ValueError(f"capture clock {clock_kind!r}; expected one of {', '.join(CAPTURE_CLOCK_KINDS)}")
    f = np.sort(np.asarray(frame_ns, np.int64))
    prior, prior_err = CAPTURE_PRIORS_NS[clock_kind]
    b = _Bounds()
    if f.size:
        start, stop = _capture_span(host, segment)
        if start is not None:
            b.lo.append(start - int(f[0]))
            b.why.append("first frame after capture start / power-on")
        if stop is not None:
            b.hi.append(stop - int(f[-1]))
            b.why.append("last frame before capture stop / power-off")
        for down, up in _link_holes(host):
            if up - down <= 2 * prior_err:
                continue
            mid = (down + up) // 2 - prior  # inside the hole on the capture clock too, prior error allowing
            i = int(np.searchsorted(f, mid, "right"))
            if i > 0:
                b.hi.append(down - int(f[i - 1]))
            if i < f.size:
                b.lo.append(up - latency_ns - int(f[i]))
            b.why.append("capture hole while the link was down")
    lo = max(b.lo) if b.lo else None
    hi = min(b.hi) if b.hi else None
    method = f"{clock_kind}: prior {prior / 1e9:g} s, bounds from " + ("; ".join(dict.fromkeys(b.why)) or "nothing")
    note = ""
    if lo is not None and hi is not None and clock_kind == "host-wall" and lo <= prior <= hi:
        # The capture is stamped by a host clock: the prior (no offset) is better than the
        # middle of wide bounds, as long as the bounds allow it.
        off, spread = prior, prior_err
    elif lo is not None and hi is not None:
        off, spread = (lo + hi) // 2, hi - lo
        if spread < 0:
            note = "bounds contradict each other: the capture clock jumped, or a record came late"
    elif lo is not None:
        off, spread = max(prior, lo), prior_err
    elif hi is not None:
        off, spread = min(prior, hi), prior_err
    else:
        off, spread = prior, prior_err
        note = "no anchors: the prior alone"
    n = len(b.lo) + len(b.hi)
    if clock_kind == "qemu-filter-dump" and qmp is not None and lo is not None and hi is not None and 0 <= hi - lo:
        resume = _first_resume(qmp, host, segment)
        if resume is not None:
            # the one candidate RESUME - k s inside [lo, hi], if there is exactly one
            k_hi = (resume - lo) // 1_000_000_000
            k_lo = -((hi - resume) // 1_000_000_000)
            if k_lo == k_hi:
                off, spread = resume - k_hi * 1_000_000_000, RESUME_PIN_SPREAD_NS
                method += "; pinned by the first QMP RESUME (virtual clock 0) minus whole seconds"
                n += 1
    return ClockOffset(Clock.CAPTURE, segment, int(off), int(spread), n, method, lo, hi, note)


def _first_resume(qmp: EventTable, host: EventTable, segment: int) -> int | None:
    """QEMU's wall stamp of the first RESUME after the power-on of capture file `segment`."""
    ons = np.sort(host.time_ns[host.kind == EventKind.HOST_POWER_ON])
    resumes = np.sort(qmp.time_ns[qmp.kind == EventKind.QMP_RESUME])
    if resumes.size == 0:
        return None
    # the power-on record is written after QEMU was started, before the QMP `cont`
    after = ons[segment] if segment < ons.size else ons[-1] if ons.size else resumes[0]
    later = resumes[resumes >= after]
    return int(later[0]) if later.size else None


def _link_holes(host: EventTable) -> list[tuple[int, int]]:
    """(link_down, next link_up) host wall times with no power cycle or reset between."""
    order = np.argsort(host.time_ns, kind="stable")
    holes, down = [], None
    for t, k in zip(host.time_ns[order].tolist(), host.kind[order].tolist(), strict=True):
        if k == EventKind.HOST_LINK_DOWN and down is None:
            down = t
        elif k == EventKind.HOST_LINK_UP and down is not None:
            holes.append((down, t))
            down = None
        elif k in (EventKind.HOST_POWER_ON, EventKind.HOST_POWER_OFF, EventKind.HOST_RESET):
            down = None
    return holes


def build_timeline(console: ConsoleLog | None = None, host: EventTable | None = None,
                   captures: list[np.ndarray] | None = None, capture_clock: str = "host-wall",
                   qmp: EventTable | None = None) -> Timeline:
    """The run's timeline from whatever records it has: the console log (guest clock per
    boot), host-events.jsonl (monotonic clock, capture anchors), qmp.jsonl, and the frame
    stamps of each capture file in order (capture clock per file)."""
    tl = Timeline()
    if console is not None:
        for off in guest_offsets(console):
            tl.add(off)
    host = host if host is not None else EventTable.from_rows([])
    mono = monotonic_offset(host)
    if mono is not None:
        tl.add(mono)
    for seg, frames in enumerate(captures or []):
        tl.add(capture_offset(frames, host, capture_clock, seg, qmp))
    return tl
