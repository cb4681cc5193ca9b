"""The emulated board's SYN-ACK against the model's for the same SYN, field by field."""

from __future__ import annotations

import pytest

from harness.board import BoardState, BoardStrategy
from harness.board.qemu import QemuBoard
from models.board import Board, BootTiming
from models.clock import Window, sec
from models.config import FirmwareConfig
from models.wire import mac_bytes

from .netns import read_pcap_frames
from .test_host_kernel import fields, without

pytestmark = pytest.mark.board

INSTANT_BOOT = BootTiming(Window(0, 0), Window(0, 0))


def board_and_model_synack(emulated_image, tmp_path) -> tuple[bytes, bytes]:
    """The emulated board's SYN-ACK to the harness's SSH SYN, and the model's to the same SYN."""
    board = QemuBoard(emulated_image, tmp_path / "board")
    pcap = tmp_path / "login.pcap"
    with board:
        board.capture_start(pcap)
        BoardStrategy(board).transition(BoardState.SSH)
        board.run("true")
        board.capture_stop()
    config = FirmwareConfig.default()
    board_mac = mac_bytes(config.interface.mac)
    frames = read_pcap_frames(pcap)
    syn_i = next(i for i, f in enumerate(frames) if fields(f.raw).get("tcp.flags") == 0x02
                 and fields(f.raw).get("tcp.dport") == 22)
    real = next(f for f in frames[syn_i:] if f.raw[6:12] == board_mac and fields(f.raw).get("tcp.flags") == 0x12)
    # the peer's frames up to its SYN (its ARP request makes the model learn its address)
    peer = [f for f in frames[:syn_i + 1] if f.raw[6:12] != board_mac]
    model = Board(config, seed=1, qemu=True, boot=INSTANT_BOOT, phy_phase=0)
    shift = sec(2) - frames[syn_i].t
    model.on_timer(0)
    predicted = []
    for f in peer[-3:]:
        if f.t + shift > 0:
            predicted += [p for p in model.handle(f.t + shift, {"kind": "frame", "raw": f.raw}) if p.kind == "frame"]
    (synack,) = [p for p in predicted if fields(p.frame).get("tcp.flags") == 0x12]
    return real.raw, synack.frame


def test_board_synack_matches_the_models_for_the_same_syn_but_for_tos(emulated_image, tmp_path):
    real, predicted = board_and_model_synack(emulated_image, tmp_path)
    # the ISN is random per connection; the TOS is the next test's known divergence
    assert without(fields(predicted), "tcp.seq", "ip.tos") == without(fields(real), "tcp.seq", "ip.tos")


@pytest.mark.xfail(strict=True, reason="the board's SYN-ACK on port 22 carries TOS 0x48 (DSCP AF21): dropbear "
                   "sets IP_TOS on its listening socket, which the SYN-ACK inherits; the model's services do "
                   "not model per-service socket options yet")
def test_board_synack_tos_matches_the_models(emulated_image, tmp_path):
    real, predicted = board_and_model_synack(emulated_image, tmp_path)
    assert fields(predicted)["ip.tos"] == fields(real)["ip.tos"]
