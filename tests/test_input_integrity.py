"""Faults in the board's recorded inputs to the oracle are never a silent pass: a model-board
run's artifacts, damaged one way each, give a verdict whose error names the file and the
byte offset or line; with salvage, a damaged capture's frames before the fault are
compared and the cut is named instead."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from harness.board.boardfile import parse_board
from harness.ingest.pcap import read_capture
from harness.ingest.pcap_reference import frame_bytes
from harness.ingest.pcapwrite import write_pcapng
from harness.oracle import Artifacts, Tolerance, check_run, observe
from harness.runner import run_scenario
from harness.scenario import load_scenario

PCAP_HEADER = 24
PCAP_RECORD_HEADER = 16
PCAPNG_EPB = 6


@pytest.fixture(scope="module")
def spec():
    return parse_board({"kind": "model"}, "<model board>")


@pytest.fixture(scope="module")
def runs(spec, tmp_path_factory):
    """One healthy model-board run per scenario the damages are tried on."""
    out = tmp_path_factory.mktemp("runs")
    return {name: run_scenario(spec, load_scenario(name), out / name, log=lambda m: None)
            for name in ("handshake", "link-flap")}


class Damaged:
    """A copy of a healthy run's artifacts, to damage and judge."""

    def __init__(self, run, spec, where: Path):
        self.run, self.spec = run, spec
        self.dir = where / run.scenario.name
        shutil.copytree(run.out_dir, self.dir)
        self.capture = self.dir / "capture.pcap"
        self.console = self.dir / "console.log"
        self.captures = [self.capture]

    def artifacts(self, salvage: bool = False) -> Artifacts:
        qmp = self.dir / "qmp.jsonl"
        return Artifacts(self.captures, self.console, self.dir / "host-events.jsonl",
                         qmp if qmp.exists() else None, "host-wall", salvage)

    def verdict(self, salvage: bool = False):
        return check_run(self.artifacts(salvage), self.spec.firmware, self.run.start_wall_ns, self.run.end_wall_ns,
                         self.run.scenario.name, Tolerance(), self.dir, expect=self.run.scenario.expect)

    def salvaged(self) -> list[str]:
        return observe(self.artifacts(salvage=True), self.spec.firmware).salvaged


@pytest.fixture
def handshake(runs, spec, tmp_path):
    return Damaged(runs["handshake"], spec, tmp_path)


@pytest.fixture
def link_flap(runs, spec, tmp_path):
    return Damaged(runs["link-flap"], spec, tmp_path)


def record_offsets(data: bytes) -> list[int]:
    """Where each record of a little-endian classic pcap starts."""
    out, off = [], PCAP_HEADER
    while off < len(data):
        out.append(off)
        off += PCAP_RECORD_HEADER + struct.unpack_from("<I", data, off + 8)[0]
    return out


def to_pcapng(pcap: Path) -> Path:
    """The same frames as a pcapng file (ns resolution), beside it."""
    table = read_capture(pcap).packets
    raw = frame_bytes(pcap.read_bytes())
    return write_pcapng(pcap.with_suffix(".pcapng"),
                        [(int(t), raw[i + 1]) for i, t in enumerate(table.time_ns.tolist())], tsresol=9)


def test_healthy_model_board_artifacts_pass(handshake, link_flap):
    for run in (handshake, link_flap):
        v = run.verdict()
        assert v.ok and v.error is None, (v.error, v.rows)
        assert run.salvaged() == []


def test_healthy_artifacts_as_pcapng_pass(handshake):
    handshake.captures = [to_pcapng(handshake.capture)]
    assert handshake.verdict().ok


# --- captures ---------------------------------------------------------------------------


def cut_inside_last_record(run: Damaged) -> int:
    data = run.capture.read_bytes()
    last = record_offsets(data)[-1]
    run.capture.write_bytes(data[:-7])
    return last


def huge_caplen_in_last_record(run: Damaged) -> int:
    data = bytearray(run.capture.read_bytes())
    last = record_offsets(bytes(data))[-1]
    struct.pack_into("<I", data, last + 8, 0x7FFFFFFF)
    run.capture.write_bytes(bytes(data))
    return last


def bad_block_length_in_last_pcapng_block(run: Damaged) -> int:
    path = to_pcapng(run.capture)
    data = bytearray(path.read_bytes())
    off = 0
    while off + struct.unpack_from("<I", data, off + 4)[0] < len(data):   # to the last block
        off += struct.unpack_from("<I", data, off + 4)[0]
    assert struct.unpack_from("<I", data, off)[0] == PCAPNG_EPB
    struct.pack_into("<I", data, off + 4, 13)   # not a multiple of 4
    path.write_bytes(bytes(data))
    run.captures = [path]
    return off


CAPTURE_DAMAGES = {
    "cut inside a record": (cut_inside_last_record, "truncated record"),
    "huge caplen": (huge_caplen_in_last_record, "bad caplen"),
    "pcapng block with a bad length": (bad_block_length_in_last_pcapng_block, "bad block length"),
}


@pytest.mark.parametrize("damage", CAPTURE_DAMAGES)
def test_damaged_capture_is_an_error_naming_file_and_offset(handshake, damage):
    spoil, fault = CAPTURE_DAMAGES[damage]
    offset = spoil(handshake)
    v = handshake.verdict()
    assert not v.ok and v.error
    assert f"damaged capture: {handshake.captures[0]}: {fault} at byte offset {offset}" in v.error


@pytest.mark.parametrize("damage", CAPTURE_DAMAGES)
def test_salvaged_capture_is_compared_up_to_its_cut_and_names_it(handshake, damage):
    spoil, _ = CAPTURE_DAMAGES[damage]
    offset = spoil(handshake)
    v = handshake.verdict(salvage=True)
    assert v.error is None and v.rows == [], (v.error, v.rows)   # the lost frame is one the oracle does not compare
    (note,) = handshake.salvaged()
    assert note.startswith(f"salvaged: {handshake.captures[0]} cut at byte offset {offset}; frames after it are "
                           "not compared")


def test_salvage_keeps_the_frames_before_the_cut(handshake):
    whole = observe(handshake.artifacts(), handshake.spec.firmware)
    cut_inside_last_record(handshake)
    obs = observe(handshake.artifacts(salvage=True), handshake.spec.firmware)
    assert len(obs.frames) == len(whole.frames) - 1 and obs.input_errors == []
    assert obs.salvaged_until_ns == int(whole.frames.time_ns[-2])


def test_header_only_capture_is_an_error_even_with_salvage(handshake):
    handshake.capture.write_bytes(handshake.capture.read_bytes()[:PCAP_HEADER])
    for salvage in (False, True):
        v = handshake.verdict(salvage)
        assert not v.ok and f"{handshake.capture}: no frame: the file ends at byte offset {PCAP_HEADER}" in v.error


def test_capture_cut_before_its_first_frame_is_an_error_even_with_salvage(handshake):
    handshake.capture.write_bytes(handshake.capture.read_bytes()[:PCAP_HEADER + 6])
    for salvage in (False, True):
        v = handshake.verdict(salvage)
        assert not v.ok and f"{handshake.capture}: truncated record at byte offset {PCAP_HEADER}" in v.error


# --- console logs -----------------------------------------------------------------------


def insert_line(path: Path, index: int, raw: bytes) -> tuple[int, int]:
    """Insert `raw` as a line before line `index` (0-based); its (line, byte offset)."""
    lines = path.read_bytes().splitlines(keepends=True)
    offset = sum(len(x) for x in lines[:index])
    path.write_bytes(b"".join(lines[:index]) + raw + b"\n" + b"".join(lines[index:]))
    return index + 1, offset


def test_missing_console_log_is_an_error_naming_it(link_flap):
    link_flap.console.unlink()
    v = link_flap.verdict()
    assert not v.ok and f"damaged console log: {link_flap.console}: missing" in v.error


def test_empty_console_log_is_an_error_not_firmware_divergences(link_flap):
    link_flap.console.write_bytes(b"")
    v = link_flap.verdict(salvage=True)   # salvage is for captures only
    assert not v.ok and f"damaged console log: {link_flap.console}: line 1 (byte offset 0): empty" in v.error


def test_unstamped_console_line_is_an_error_naming_line_and_offset(link_flap):
    line, offset = insert_line(link_flap.console, 2, b"eth0: a line the console driver never wrote")
    v = link_flap.verdict()
    assert not v.ok
    assert f"damaged console log: {link_flap.console}: line {line} (byte offset {offset}): no host time stamp" in v.error


def test_binary_console_line_is_an_error_naming_line_and_offset(link_flap):
    line, offset = insert_line(link_flap.console, 3, b"\x00\x00\xff\xfe\x1b\x00")
    v = link_flap.verdict()
    assert not v.ok
    assert f"damaged console log: {link_flap.console}: line {line} (byte offset {offset}): undecodable bytes" in v.error


def test_odd_bytes_inside_a_stamped_console_line_still_pass(link_flap):
    first = link_flap.console.read_bytes().split(b" ", 1)[0]
    insert_line(link_flap.console, 1, first + b" [    0.000000] odd \xff\xfe\x00\x1b bytes from the board")
    v = link_flap.verdict()
    assert v.ok, (v.error, v.rows)


def test_console_stamps_going_backwards_are_an_error_naming_the_line(link_flap):
    lines = link_flap.console.read_bytes().splitlines(keepends=True)
    stamp, rest = lines[-1].split(b" ", 1)
    line, offset = insert_line(link_flap.console, len(lines), b"%.6f " % (float(stamp) - 2) + rest.rstrip(b"\n"))
    v = link_flap.verdict()
    assert not v.ok
    assert f"damaged console log: {link_flap.console}: line {line} (byte offset {offset}): host time stamp" in v.error
    assert f"is 2.000000 s before line {line - 1}'s" in v.error


def test_many_damaged_console_lines_are_counted_not_all_listed(link_flap):
    for _ in range(10):
        insert_line(link_flap.console, 1, b"noise")
    v = link_flap.verdict()
    assert not v.ok and "and 7 more damaged lines" in v.error
