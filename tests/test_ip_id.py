"""The IPv4 ID of the board's TCP socket frames (ip_select_ident_segs): the first of a
connection is get_random_u16(), which Linux leaves open; every later frame of the socket
carries the next. The oracle compares the count from the first (`ip_id_rel`), so a board
whose retransmissions come from a fresh socket, or which sends frames the capture shows
no trace of, is caught. Runs on the model-as-board's artifacts, edited as a faulty
firmware's would be."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from harness.board.boardfile import parse_board
from harness.oracle import Artifacts, Tolerance, check_run
from harness.runner import run_scenario
from harness.scenario import load_scenario

ETH, IP_ID, IP_CSUM = 14, 14 + 4, 14 + 10


def model_board():
    return parse_board({"kind": "model"}, "<model board>")


def board_tcp_frames(pcap: bytes, board_mac: bytes, want) -> list[tuple[int, bytes]]:
    """(offset of the frame in the file, frame) for the board's TCP frames `want` accepts."""
    out, off = [], 24
    while off + 16 <= len(pcap):
        incl = struct.unpack_from("<I", pcap, off + 8)[0]
        frame = pcap[off + 16: off + 16 + incl]
        if frame[6:12] == board_mac and frame[12:14] == b"\x08\x00" and frame[ETH + 9] == 6 and want(frame):
            out.append((off + 16, frame))
        off += 16 + incl
    return out


def set_ip_id(buf: bytearray, at: int, ident: int) -> None:
    struct.pack_into(">H", buf, at + IP_ID, ident)
    struct.pack_into(">H", buf, at + IP_CSUM, 0)
    ihl = (buf[at + ETH] & 0x0F) * 4
    words = struct.unpack(f">{ihl // 2}H", bytes(buf[at + ETH: at + ETH + ihl]))
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into(">H", buf, at + IP_CSUM, ~s & 0xFFFF)


def tcp_flags(frame: bytes) -> int:
    ihl = (frame[ETH] & 0x0F) * 4
    return frame[ETH + ihl + 13]


def payload_len(frame: bytes) -> int:
    ihl = (frame[ETH] & 0x0F) * 4
    total = struct.unpack_from(">H", frame, ETH + 2)[0]
    return total - ihl - (frame[ETH + ihl + 12] >> 4) * 4


@pytest.fixture(scope="module", params=["syn-retransmit", "data-retransmit"])
def model_run(request, tmp_path_factory):
    spec = model_board()
    run = run_scenario(spec, load_scenario(request.param), tmp_path_factory.mktemp("ipid") / request.param,
                       log=lambda m: None)
    return spec, run


def recheck(spec, run, out: Path):
    out.mkdir()
    return check_run(Artifacts.in_dir(run.out_dir, "host-wall"), spec.firmware, run.start_wall_ns, run.end_wall_ns,
                     run.scenario.name, Tolerance(), out)


def seeded(spec, run, tmp_path, want, new_ids):
    """The run's capture with the IDs of the board's frames `want` picks replaced."""
    path = run.out_dir / "capture.pcap"
    original = path.read_bytes()
    buf = bytearray(original)
    mac = bytes.fromhex(spec.firmware.interface.mac.replace(":", ""))
    frames = board_tcp_frames(original, mac, want)
    assert len(frames) >= 3, "the scenario gives the board's socket several frames"
    for (at, _frame), ident in zip(frames, new_ids(frames), strict=True):
        set_ip_id(buf, at, ident)
    try:
        path.write_bytes(bytes(buf))
        return recheck(spec, run, tmp_path / "seeded")
    finally:
        path.write_bytes(original)


def is_syn(frame: bytes) -> bool:
    return tcp_flags(frame) & 0x12 == 0x02


def is_data(frame: bytes) -> bool:
    return payload_len(frame) > 0


def test_the_healthy_ids_count_on_and_match(model_run, tmp_path):
    spec, run = model_run
    v = recheck(spec, run, tmp_path / "healthy")
    assert v.ok, v.rows
    # the connection's first ID is a learnt value, listed with its bound
    ids = [x for x in v.learnt if x.name == "inet_id"]
    assert ids and all(x.inside and (x.lo, x.hi) == (0, 0xFFFF) for x in ids)


def test_a_fresh_random_id_per_transmission_is_a_field_mismatch(model_run, tmp_path):
    """As if each retransmission came from a new socket (an application retrying on its
    own): every frame after the first has an ID unrelated to the one before."""
    spec, run = model_run
    want = is_syn if run.scenario.name == "syn-retransmit" else is_data
    rng = random.Random(7)
    v = seeded(spec, run, tmp_path, want, lambda frames: [struct.unpack_from(">H", f, IP_ID)[0] if i == 0
                                                          else rng.randrange(65536) for i, (_, f) in enumerate(frames)])
    mism = [r for r in v.rows if r["kind"] == "FIELD_MISMATCH" and r.get("field") == "ip_id_rel"]
    assert mism, v.rows
    assert {r["stream_name"] for r in mism} == {"TCP_SYN" if want is is_syn else "TCP_DATA"}


def test_one_skipped_id_is_one_field_mismatch(model_run, tmp_path):
    """The last frame's ID one further on: a frame the socket sent that never reached the
    wire (or a count that is off by one)."""
    spec, run = model_run
    want = is_syn if run.scenario.name == "syn-retransmit" else is_data

    def ids(frames):
        out = [struct.unpack_from(">H", f, IP_ID)[0] for _, f in frames]
        out[-1] = (out[-1] + 1) & 0xFFFF
        return out

    v = seeded(spec, run, tmp_path, want, ids)
    mism = [r for r in v.rows if r.get("field") == "ip_id_rel"]
    assert len(mism) == 1 and mism[0]["obs_value"] == mism[0]["pred_value"] + 1, v.rows
