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


@pytest.fixture(scope="module")
def synacks(emulated_image, tmp_path_factory) -> tuple[bytes, bytes]:
    """The emulated board's SYN-ACK to the harness's SSH SYN, and the model's to the same SYN."""
    tmp_path = tmp_path_factory.mktemp("handshake")
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


def test_board_synack_matches_the_models_for_the_same_syn_but_for_the_isn(synacks):
    real, predicted = synacks
    # the ISN is random per connection; everything else, TOS, DF, ID and MACs included, is Linux's choice
    assert without(fields(predicted), "tcp.seq") == without(fields(real), "tcp.seq")


def test_board_synack_tos_matches_the_models(synacks):
    # dropbear sets IP_TOS 0x48 (DSCP AF21) on its listening socket, which the SYN-ACK carries
    # (tcp_v4_send_synack); the model's ssh service declares it (models.config SERVICE_IP_TOS_DEFAULTS)
    real, predicted = synacks
    assert fields(predicted)["ip.tos"] == fields(real)["ip.tos"] == 0x48


def test_image_with_ssh_ip_tos_zero_sends_synacks_with_tos_zero_as_declared(image_for, tmp_path):
    """`services.ssh.ip_tos: 0` builds `dropbear -z`: the image applies the field."""
    image = image_for(services={"ssh": {"port": 22, "ip_tos": 0}, "http": {"port": 80}})
    board = QemuBoard(image, tmp_path / "board")
    pcap = tmp_path / "login.pcap"
    with board:
        board.capture_start(pcap)
        BoardStrategy(board).transition(BoardState.SSH)
        board.capture_stop()
    board_mac = mac_bytes(image.config.interface.mac)
    synacks = [f for f in read_pcap_frames(pcap) if f.raw[6:12] == board_mac and fields(f.raw).get("tcp.flags") == 0x12]
    assert synacks and {fields(f.raw)["ip.tos"] for f in synacks} == {image.config.service("ssh").ip_tos} == {0}
