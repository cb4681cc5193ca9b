"""One timeline: clock offsets estimated from synthetic records with known offsets, and
from a real boot of the emulated board."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness.ingest.console import parse_console, read_console
from harness.ingest.events import Clock, EventKind, EventTable, parse_host_events, read_host_events, read_qmp_log
from harness.ingest.timeline import (
    ClockOffset,
    Timeline,
    TimelineError,
    build_timeline,
    capture_offset,
    guest_offsets,
    monotonic_offset,
)

MS = 1_000_000
S = 1_000_000_000
T0 = 1_795_305_410 * S  # a wall-clock epoch like the real runs'


def console_text(guest_ns, offset_ns, rng, batch_ns=100 * MS):
    """Console lines as the board's reader stamps them: each line reaches the host at the
    end of the 100 ms read batch it was printed in, stamped in arrival order."""
    host = (guest_ns + offset_ns + batch_ns - 1) // batch_ns * batch_ns + rng.integers(0, 50_000, guest_ns.size)
    host = np.maximum.accumulate(host)
    return "".join(f"{h // 1000 / 1e6:.6f} [{g // 1000 / 1e6:12.6f}] line\n" for h, g in zip(host, guest_ns, strict=True))


def host_events(*rows):
    """(name, wall ns) pairs -> host-events.jsonl text (monotonic = wall - 10 s)."""
    return "".join(json.dumps({"event": n, "host_wall_ns": w, "host_monotonic_ns": w - 10 * S}) + "\n"
                   for n, w in rows)


def test_guest_offset_is_within_a_few_ms_of_the_truth_and_never_below_it():
    rng = np.random.default_rng(1)
    guest = np.sort(rng.integers(0, 20 * S, 400))
    true = T0 + 123_456_789
    (off,) = guest_offsets(parse_console(console_text(guest, true, rng), "c"))
    assert 0 <= off.offset_ns - true < 5 * MS
    assert off.n_anchors == 400 and off.hi_ns == off.offset_ns


def test_each_boot_gets_its_own_guest_offset():
    rng = np.random.default_rng(2)
    guest = np.sort(rng.integers(S, 10 * S, 200))
    text = console_text(guest, T0, rng) + console_text(guest, T0 + 30 * S + 7 * MS, rng)
    offs = guest_offsets(parse_console(text, "c"))
    assert [o.segment for o in offs] == [0, 1]
    assert abs(offs[1].offset_ns - offs[0].offset_ns - (30 * S + 7 * MS)) < 5 * MS


def test_monotonic_offset_is_the_median_difference():
    off = monotonic_offset(parse_host_events(host_events(("power_on", T0), ("link_down", T0 + S)), "h"))
    assert (off.clock, off.offset_ns, off.spread_ns) == (Clock.HOST_MONOTONIC, 10 * S, 0)


def capture_run(true_off, hole=(5 * S, 8 * S), resume_at=None):
    """Frames every 50 ms on the capture clock (none while the link was down), and the
    host events around them; capture clock = host wall - true_off."""
    start, stop = T0, T0 + 12 * S
    down, up = T0 + hole[0], T0 + hole[1]
    wall = np.arange(start + 200 * MS, stop - 300 * MS, 50 * MS)
    wall = wall[(wall < down - 13 * MS) | (wall > up + 40 * MS)]
    host = parse_host_events(host_events(("capture_start", start - 5 * MS), ("power_on", start),
                                         ("link_down", down), ("link_up", up), ("capture_stop", stop)), "h")
    qmp = None
    if resume_at is not None:
        qmp = EventTable.from_rows([(resume_at, Clock.HOST_WALL, 0, EventKind.QMP_RESUME, 1, 0, 0, -1)], "q")
    return wall - true_off, host, qmp


@pytest.mark.parametrize("true_off", [0, 370 * MS, 900 * MS])
def test_capture_offset_from_a_link_hole_brackets_the_truth(true_off):
    frames, host, _ = capture_run(true_off)
    off = capture_offset(frames, host, "qemu-filter-dump")
    assert off.lo_ns <= true_off <= off.hi_ns
    # frames every 50 ms, the last 13 ms before link_down, the first 40 ms after link_up
    assert abs(off.offset_ns - true_off) <= off.spread_ns <= 50 * MS + 13 * MS + 40 * MS + 20 * MS


def test_filter_dump_offset_is_pinned_by_the_first_resume():
    # QEMU: stamp = whole second at filter creation + virtual clock (0 at the first RESUME)
    resume = T0 + 424_989_000
    true_off = resume - (T0 // S) * S
    frames, host, qmp = capture_run(true_off, resume_at=resume)
    off = capture_offset(frames, host, "qemu-filter-dump", qmp=qmp)
    assert off.offset_ns == true_off and "RESUME" in off.method


def test_host_wall_capture_without_anchors_is_taken_as_the_wall_clock():
    off = capture_offset(np.array([T0, T0 + S]), EventTable.from_rows([]), "host-wall")
    assert off.offset_ns == 0 and "no anchors" in off.note


def test_contradicting_bounds_are_flagged():
    frames, host, _ = capture_run(0)
    # the capture clock stepped by 3 s after the link flap: the hole and the end disagree
    late = frames > T0 + 8 * S - 370 * MS
    off = capture_offset(np.where(late, frames + 3 * S, frames), host, "host-wall")
    assert off.spread_ns < 0 and "contradict" in off.note


def test_unknown_capture_clock_kind_raises():
    with pytest.raises(ValueError, match="capture clock"):
        capture_offset(np.zeros(1, np.int64), EventTable.from_rows([]), "sundial")


def test_to_common_applies_each_segments_offset():
    tl = Timeline()
    tl.add(ClockOffset(Clock.GUEST, 0, 100, 0, 1, "m"))
    tl.add(ClockOffset(Clock.GUEST, 1, 1000, 0, 1, "m"))
    out = tl.to_common([Clock.GUEST, Clock.GUEST, Clock.HOST_WALL], [1, 2, 3], [0, 1, 0])
    assert out.tolist() == [101, 1002, 3]


def test_stamp_of_an_unknown_segment_raises_naming_it():
    tl = Timeline()
    tl.add(ClockOffset(Clock.GUEST, 0, 100, 0, 1, "m"))
    with pytest.raises(TimelineError, match="guest segment 3"):
        tl.to_common(Clock.GUEST, [5], 3)


def test_timeline_round_trips_through_json():
    frames, host, _ = capture_run(370 * MS)
    tl = build_timeline(parse_console(b"1.000000 [    0.500000] x\n", "c"), host, [frames], "qemu-filter-dump")
    again = Timeline.from_json(json.loads(tl.dumps()))
    assert again == tl and {o["clock"] for o in tl.to_json()["offsets"]} == {"guest", "host_monotonic", "capture"}


# ---------------------------------------------------------------------------------------
# A real boot of the emulated board: capture, SSH, a link flap.

@pytest.fixture(scope="module")
def flapped_run(emulated_image, tmp_path_factory):
    import time

    from harness.board import BoardState, BoardStrategy
    from harness.board.qemu import QemuBoard
    from harness.ingest import read_pcap

    out = tmp_path_factory.mktemp("timeline")
    board = QemuBoard(emulated_image, out / "board")
    with board:
        board.capture_start(out / "cap.pcap")
        BoardStrategy(board).transition(BoardState.SSH)
        board.run("true")
        since = board.console.cursor()
        board.set_link(False)
        board.console.expect(re.escape("eth0: Link is Down"), timeout=5, since=since)
        # a hole the filter-dump estimator can use is wider than twice its prior error (1.5 s)
        time.sleep(2.5)
        board.set_link(True)
        board.console.expect(re.escape("eth0: Link is Up"), timeout=5, since=since)
        board.run("true")  # frames after the hole
        board.capture_stop()
    d = out / "board"
    console, host, qmp = read_console(d / "console.log"), read_host_events(d / "host-events.jsonl"), \
        read_qmp_log(d / "qmp.jsonl")
    packets = read_pcap(out / "cap.pcap")
    return console, host, qmp, packets, build_timeline(console, host, [packets.time_ns], "qemu-filter-dump", qmp)


@pytest.mark.board
def test_real_boot_console_link_down_lands_within_a_poll_after_the_stimulus(flapped_run):
    console, host, _, _, tl = flapped_run
    ev = console.events()
    down_line = tl.events_to_common(ev.of_kind(EventKind.LINK_DOWN))[0]
    down_cmd = host.of_kind(EventKind.HOST_LINK_DOWN).time_ns[0]
    # phylib polls once a second; allow the console offset's own spread on top
    assert 0 < down_line - down_cmd < 1_000 * MS + tl.offset(Clock.GUEST, 0).spread_ns + 100 * MS


@pytest.mark.board
def test_real_boot_capture_hole_falls_inside_the_link_down_interval(flapped_run):
    _, host, _, packets, tl = flapped_run
    off = tl.offset(Clock.CAPTURE, 0)
    assert off.lo_ns is not None and off.hi_ns is not None and off.lo_ns <= off.offset_ns <= off.hi_ns
    t = tl.to_common(Clock.CAPTURE, packets.time_ns, 0)
    down = host.of_kind(EventKind.HOST_LINK_DOWN).time_ns[0]
    up = host.of_kind(EventKind.HOST_LINK_UP).time_ns[0]
    assert not np.any((t > down) & (t < up - 20 * MS))


@pytest.mark.board
def test_real_boot_filter_dump_offset_is_pinned_and_sub_second(flapped_run):
    off = flapped_run[4].offset(Clock.CAPTURE, 0)
    print(flapped_run[4].dumps())  # the measured offsets, for the record (pytest -s)
    assert "RESUME" in off.method and 0 <= off.offset_ns < 2 * S


@pytest.mark.board
def test_real_boot_board_frames_follow_the_link_up_line(flapped_run):
    console, host, _, packets, tl = flapped_run
    up_line = tl.events_to_common(console.events().of_kind(EventKind.LINK_UP))[-1]
    t = tl.to_common(Clock.CAPTURE, packets.time_ns, 0)
    up = host.of_kind(EventKind.HOST_LINK_UP).time_ns[0]
    first_after = t[t > up - 20 * MS].min()
    # the board sends nothing before its carrier is on (the Link is Up line); the console
    # offset is an upper bound, so allow its spread
    assert first_after > up_line - tl.offset(Clock.GUEST, 0).spread_ns - 50 * MS
