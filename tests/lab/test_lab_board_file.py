"""`kind: labgrid` board files, and the frame tap a place's capture comes through."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from harness.board.boardfile import LAB_WAIT_DEFAULT_S, parse_board
from harness.errors import BoardFileError
from models.config import DEFAULT_CONFIG


def lab(**over) -> dict:
    return {"kind": "labgrid", "coordinator": "127.0.0.1:20408", "place": "bench0", "firmware": DEFAULT_CONFIG} | over


def test_a_lab_board_names_its_coordinator_and_place():
    spec = parse_board(lab(), "boards/lab-bmc.yaml")
    assert (spec.kind, spec.name, spec.coordinator, spec.place, spec.wait_s) == (
        "labgrid", "lab-bmc", "127.0.0.1:20408", "bench0", None)
    assert spec.lab_ssh == {}


def test_a_lab_board_may_ask_by_tags_wait_and_say_how_to_log_in(tmp_path):
    (tmp_path / "key").write_text("k\n")
    data = lab(tags={"board": "ast2500", "rack": "r3"}, wait=True, capture={"interface": "eth1"},
               ssh={"key_file": "key", "known_hosts": "auto-accept"})
    del data["place"]
    spec = parse_board(data, "lab.yaml", base=tmp_path)
    assert spec.place is None and spec.place_tags == {"board": "ast2500", "rack": "r3"}
    assert spec.wait_s == LAB_WAIT_DEFAULT_S
    assert spec.lab_ssh == {"key_file": tmp_path / "key", "known_hosts": "auto-accept"}
    assert spec.capture_interface == "eth1"
    assert parse_board(lab(wait=90), "lab.yaml").wait_s == 90.0


@pytest.mark.parametrize("over, field, words", [
    ({"coordinator": "127.0.0.1"}, "coordinator", "expected host:port"),
    ({"coordinator": "h:70000"}, "coordinator", "expected host:port"),
    ({"tags": {"board": "x"}}, "place", "one of the two"),
    ({"place": None}, "place", "one of the two"),
    ({"wait": "yes"}, "wait", "expected true, false or a number of seconds"),
    ({"wait": 0}, "wait", "expected true, false or a number of seconds"),
    ({"console": {"url": "/dev/ttyUSB0"}}, "console", "comes from the labgrid place's resources"),
    ({"power": {"on": ["pdu", "on"]}}, "power", "comes from the labgrid place's resources"),
    ({"ssh": {"host": "192.0.2.1"}}, "ssh.host", "unknown field"),
    ({"ssh": {"known_hosts": "never"}}, "ssh.known_hosts", "expected strict or auto-accept"),
])
def test_a_bad_lab_field_is_named(over, field, words):
    data = {k: v for k, v in (lab() | over).items() if v is not None}
    with pytest.raises(BoardFileError) as info:
        parse_board(data, "lab.yaml")
    assert f"lab.yaml: {field}: " in str(info.value) and words in str(info.value)


def test_a_bad_tag_is_named():
    data = {k: v for k, v in lab(tags={"Board": "x"}).items() if k != "place"}
    with pytest.raises(BoardFileError, match=r"tags.Board: a labgrid tag name"):
        parse_board(data, "lab.yaml")


@pytest.mark.parametrize("kind", ["real", "emulated", "model"])
def test_lab_fields_belong_to_lab_boards_only(kind):
    with pytest.raises(BoardFileError, match="place: only for a board in a labgrid lab"):
        parse_board({"kind": kind, "place": "bench0"}, "b.yaml")


def test_the_frame_tap_stamps_each_frame_and_takes_the_stream_up_again(tmp_path):
    from harness.board.labgrid import FrameTap

    server = socket.create_server(("127.0.0.1", 0))
    frames = [bytes([i]) * (60 + i) for i in range(4)]

    def serve():
        for part in (frames[:2], frames[2:]):      # the stream drops after two frames
            conn, _ = server.accept()
            with conn:
                data = b"".join(struct.pack(">I", len(f)) + f for f in part)
                conn.sendall(data[:7])                # a record cut across reads
                conn.sendall(data[7:])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    tap = FrameTap("127.0.0.1", server.getsockname()[1])
    tap.start(tmp_path / "tap.pcap")
    thread.join(timeout=10)
    path = tap.stop(drain=0.5)
    server.close()
    assert tap.count == 4
    data = path.read_bytes()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B23C4D       # nanosecond pcap
    got, at = [], 24
    while at < len(data):
        sec, nsec, caplen, _ = struct.unpack("<IIII", data[at:at + 16])
        got.append(data[at + 16:at + 16 + caplen])
        at += 16 + caplen
    assert got == frames
