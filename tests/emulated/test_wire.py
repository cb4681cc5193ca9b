"""The harness-owned wire (`-netdev dgram`): the harness is the board's only peer."""

from __future__ import annotations

import socket
import struct

import pytest

from harness.board import BoardState, BoardStrategy
from harness.board.qemu import QemuBoard

pytestmark = pytest.mark.board

PEER_MAC = bytes.fromhex("525400aabbcc")
PEER_IP = "10.0.2.2"
BOARD_IP = "10.0.2.15"


def arp_request(target_ip: str) -> bytes:
    eth = b"\xff" * 6 + PEER_MAC + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, PEER_MAC, socket.inet_aton(PEER_IP),
                      b"\0" * 6, socket.inet_aton(target_ip))
    return eth + arp


def is_arp_reply_to_peer(frame: bytes) -> bool:
    return (len(frame) >= 42 and frame[0:6] == PEER_MAC and frame[12:14] == b"\x08\x06"
            and frame[20:22] == b"\x00\x02" and frame[28:32] == socket.inet_aton(BOARD_IP))


@pytest.fixture
def wired(emulated_image, tmp_path):
    board = QemuBoard(emulated_image, tmp_path / "board", network="wire")
    try:
        board.capture_start(tmp_path / "wire.pcap")
        BoardStrategy(board).transition(BoardState.NETWORK)
        yield board
    finally:
        board.close()


def test_board_answers_an_arp_request_injected_on_the_wire(wired, tmp_path):
    wire = wired.wire
    since = wire.cursor()
    wire.inject(arp_request(BOARD_IP))
    reply = wire.wait_frame(is_arp_reply_to_peer, timeout=5, since=since)
    assert reply.data[6:12] == bytes.fromhex("525400123456")  # the board's MAC from its config
    wired.capture_stop()
    pcap = (tmp_path / "wire.pcap").read_bytes()
    assert struct.unpack("<I", pcap[:4])[0] == 0xA1B23C4D  # nanosecond pcap
    assert reply.data in pcap


def test_dropped_frames_never_reach_the_board(wired):
    wire = wired.wire
    wire.set_drop(lambda frame: frame[12:14] == b"\x08\x06")
    since = wire.cursor()
    assert wire.inject(arp_request(BOARD_IP)) is False
    with pytest.raises(Exception, match="no matching frame"):
        wire.wait_frame(is_arp_reply_to_peer, timeout=2, since=since)
    wire.set_drop(None)
    assert wire.inject(arp_request(BOARD_IP)) is True
    wire.wait_frame(is_arp_reply_to_peer, timeout=5, since=since)


def test_wire_records_the_boards_own_frames_with_host_stamps(wired):
    # The board pings a peer nobody answers: its ARP requests reach the wire.
    wired.console.run("ping -c 1 -W 1 10.0.2.99 >/dev/null 2>&1", timeout=10)
    frames = [f for f in wired.wire.frames if f.direction == "from_board"]
    who_has = [f for f in frames if f.data[12:14] == b"\x08\x06" and f.data[38:42] == socket.inet_aton("10.0.2.99")]
    assert who_has, "no ARP request for 10.0.2.99 seen on the wire"
    stamps = [f.host_monotonic_ns for f in frames]
    assert stamps == sorted(stamps)
