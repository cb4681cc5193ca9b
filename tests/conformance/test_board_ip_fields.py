"""The TOS, DF, ID and Ethernet addresses of the emulated board's frames against the model's.

The board runs on the harness-owned wire (`-netdev dgram`): the test is its only peer and
sends it frames no TCP socket could (a SYN whose TOS carries ECN bits, an ARP request
whose sender hardware address is not the frame's source). The model is fed the same
frames at the same times; deterministic fields are compared as values, IDs Linux picks
at random by their law (models.ipv4: inet_id_follows, ip_idents_follows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.board import BoardState, BoardStrategy
from harness.board.qemu import QemuBoard
from models.board import Board, BootTiming
from models.clock import Window, ms, sec
from models.config import FirmwareConfig
from models.ipv4 import inet_id_follows, ip_idents_follows
from models.wire import (
    ACK,
    ARPOP_REQUEST,
    BROADCAST,
    ETH_P_ARP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    RST,
    SYN,
    ArpRepr,
    EthernetRepr,
    IcmpRepr,
    Ipv4Repr,
    TcpRepr,
    ip4,
    mac_bytes,
)
from models.wire.icmp import ICMP_ECHO

from .test_host_kernel import fields, without

pytestmark = pytest.mark.board

INSTANT_BOOT = BootTiming(Window(0, 0), Window(0, 0))
PEER_MAC = mac_bytes("52:55:0a:00:02:02")
OTHER_MAC = mac_bytes("02:00:00:00:00:99")   # an Ethernet source that is not the ARP sender
PEER = ip4("10.0.2.2")
EF_ECT1 = 0xB9                                # DSCP EF with ECN ECT(1)
WAIT = 5.0


@dataclass
class Exchange:
    """What was sent to the board, what it sent, and what the model sent for the same inputs."""

    sent: list[tuple[int, bytes]]                  # (host monotonic ns, frame) to the board
    real: list[tuple[int, bytes]]                  # from the board
    model: list[tuple[int, bytes]]                 # from the model, on the same clock
    stimuli: dict[str, int]                        # name -> index in `sent`


def peer_frame(config: FirmwareConfig, protocol: int, payload: bytes, tos: int = 0, ident: int = 1) -> bytes:
    board_ip = int(config.interface.address.ip)
    ip = Ipv4Repr(PEER, board_ip, protocol, len(payload), 64, ident, True, tos=tos)
    return EthernetRepr(mac_bytes(config.interface.mac), PEER_MAC, 0x0800).emit(ip.emit(payload))


def peer_tcp(config: FirmwareConfig, sport: int, dport: int, flags: int, seq: int, tos: int = 0) -> bytes:
    board_ip = int(config.interface.address.ip)
    seg = TcpRepr(sport, dport, seq, 0, flags, 64240, ()).emit(b"", PEER, board_ip)
    return peer_frame(config, IPPROTO_TCP, seg, tos)


def run_model(config: FirmwareConfig, sent: list[tuple[int, bytes]], apps: list[dict[str, Any]],
              until: int) -> list[tuple[int, bytes]]:
    """The model board over the frames the board was sent (and its applications' calls)."""
    board = Board(config, seed=1, qemu=True, boot=INSTANT_BOOT, phy_phase=0)
    shift = sec(2) - sent[0][0]
    inputs = sorted([(t + shift, {"kind": "frame", "raw": raw}) for t, raw in sent] +
                    [(a["t"] + shift, a) for a in apps], key=lambda item: item[0])
    board.on_timer(0)
    out: list[tuple[int, bytes]] = []
    i = 0
    while True:
        t_in = inputs[i][0] if i < len(inputs) else None
        t_timer = board.poll_at()
        nxt = min(t for t in (t_in, t_timer) if t is not None)
        if nxt > until + shift:
            break
        if t_in is not None and t_in == nxt:
            produced = board.handle(nxt, inputs[i][1])
            i += 1
        else:
            produced = board.on_timer(nxt)
        out += [(p.t - shift, p.frame) for p in produced if p.kind == "frame"]
    return out


@pytest.fixture(scope="module")
def exchange(emulated_image, tmp_path_factory) -> Iterator[Exchange]:
    out = tmp_path_factory.mktemp("ip-fields")
    config = emulated_image.config
    board = QemuBoard(emulated_image, out / "board", network="wire")
    sent: list[tuple[int, bytes]] = []
    stimuli: dict[str, int] = {}
    apps: list[dict[str, Any]] = []
    try:
        board.capture_start(out / "wire.pcap")
        BoardStrategy(board).transition(BoardState.NETWORK)
        wire = board.wire

        def send(name: str, frame: bytes, answer: Callable[[dict], bool] | None) -> None:
            since = wire.cursor()
            wire.inject(frame)
            injected = wire.frames[since]
            stimuli[name] = len(sent)
            sent.append((injected.host_monotonic_ns, frame))
            if answer is not None:
                wire.wait_frame(lambda raw: _is_ip_or_arp(raw) and answer(fields(raw)), timeout=WAIT, since=since)

        board_ip = int(config.interface.address.ip)
        arp = ArpRepr(ARPOP_REQUEST, PEER_MAC, PEER, bytes(6), board_ip).emit()
        send("arp", EthernetRepr(BROADCAST, OTHER_MAC, ETH_P_ARP).emit(arp), lambda f: f.get("arp.op") == 2)
        for name, port, tos in (("ssh", 22, EF_ECT1), ("http", 80, 0)):
            send(f"syn-{name}", peer_tcp(config, 41000 + port, port, SYN, 1000, tos),
                 lambda f, port=port: f.get("tcp.sport") == port and f.get("tcp.flags") == SYN | ACK)
            send(f"rst-{name}", peer_tcp(config, 41000 + port, port, RST, 1001), None)   # the request goes
        send("syn-closed", peer_tcp(config, 41023, 23, SYN, 1000, EF_ECT1),
             lambda f: f.get("tcp.sport") == 23 and f.get("tcp.flags") == RST | ACK)
        for seq, pause in ((1, 0.0), (2, 0.0), (3, 0.3)):
            time.sleep(pause)
            echo = IcmpRepr(ICMP_ECHO, 0, 0x4242, seq, b"bmc-hil").emit()
            send(f"echo-{seq}", peer_frame(config, IPPROTO_ICMP, echo, EF_ECT1),
                 lambda f, seq=seq: f.get("ip.proto") == IPPROTO_ICMP and f.get("ip.len") == 35)
        # the board's own connection to a peer that never answers: its SYN and one retransmission
        since = wire.cursor()
        board.console.run("nc 10.0.2.2 8080 </dev/null >/dev/null 2>&1 &", timeout=10)
        first = wire.wait_frame(lambda raw: _is_ip_or_arp(raw) and fields(raw).get("tcp.flags") == SYN,
                                timeout=WAIT, since=since)
        wire.wait_frame(lambda raw: _is_ip_or_arp(raw) and fields(raw).get("tcp.flags") == SYN, timeout=WAIT,
                        since=wire.frames.index(first) + 1)
        sport = fields(first.data)["tcp.sport"]
        # connect() ran just before its SYN left (the peer's address is known: no ARP first)
        apps.append({"t": first.host_monotonic_ns - ms(1), "kind": "connect", "fd": "nc", "addr": "10.0.2.2",
                     "port": 8080, "sport": sport})
        real = [(f.host_monotonic_ns, f.data) for f in wire.frames
                if f.direction == "from_board" and not f.dropped and _is_ip_or_arp(f.data)]
    finally:
        board.close()
    until = real[-1][0]
    yield Exchange(sent, real, run_model(config, sent, apps, until), stimuli)


def _is_ip_or_arp(raw: bytes) -> bool:
    return raw[12:14] in (b"\x08\x00", b"\x08\x06")


def answer(frames: list[tuple[int, bytes]], after: int, **want) -> tuple[int, dict]:
    """The first frame at or after `after` whose fields include `want`."""
    for t, raw in frames:
        if t < after:
            continue
        f = fields(raw)
        if all(f.get(k) == v for k, v in want.items()):
            return t, f
    raise AssertionError(f"no frame with {want} after {after}")


def both(ex: Exchange, stimulus: str, **want) -> tuple[dict, dict]:
    """The board's and the model's answer to one stimulus."""
    t = ex.sent[ex.stimuli[stimulus]][0]
    return answer(ex.real, t, **want)[1], answer(ex.model, t, **want)[1]


def test_arp_reply_goes_to_the_requests_sender_hardware_address(exchange):
    real, predicted = both(exchange, "arp", **{"arp.op": 2})
    assert real["eth.dst"] == PEER_MAC.hex(":") and predicted == real


def test_ssh_synack_carries_0x48_whatever_the_syns_tos_like_the_model(exchange):
    real, predicted = both(exchange, "syn-ssh", **{"tcp.sport": 22, "tcp.flags": SYN | ACK})
    assert (real["ip.tos"], real["ip.df"], real["ip.id"]) == (0x48, True, 0)
    assert without(predicted, "tcp.seq") == without(real, "tcp.seq")


def test_http_synack_carries_tos_zero_like_the_model(exchange):
    real, predicted = both(exchange, "syn-http", **{"tcp.sport": 80, "tcp.flags": SYN | ACK})
    assert (real["ip.tos"], real["ip.df"], real["ip.id"]) == (0, True, 0)
    assert without(predicted, "tcp.seq") == without(real, "tcp.seq")


def test_rst_to_a_closed_port_reflects_the_syns_tos_less_ecn_like_the_model(exchange):
    real, predicted = both(exchange, "syn-closed", **{"tcp.sport": 23, "tcp.flags": RST | ACK})
    assert (real["ip.tos"], real["ip.df"], real["ip.id"]) == (0xB8, True, 0)
    assert predicted == real


def test_echo_replies_carry_the_whole_tos_without_df_like_the_model(exchange):
    pairs = [both(exchange, f"echo-{seq}", **{"ip.proto": IPPROTO_ICMP}) for seq in (1, 2, 3)]
    assert {(real["ip.tos"], real["ip.df"]) for real, _ in pairs} == {(EF_ECT1, False)}
    assert [without(p, "ip.id") for _, p in pairs] == [without(r, "ip.id") for r, _ in pairs]


@pytest.mark.parametrize("side", ["real", "model"])
def test_echo_reply_ids_follow_ip_idents(exchange, side):
    frames = exchange.real if side == "real" else exchange.model
    replies = [answer(frames, exchange.sent[exchange.stimuli[f"echo-{seq}"]][0], **{"ip.proto": IPPROTO_ICMP})
               for seq in (1, 2, 3)]
    ids = [(t, f["ip.id"]) for t, f in replies]
    assert all(ip_idents_follows(a, ta, b, tb) for (ta, a), (tb, b) in zip(ids, ids[1:], strict=False)), ids


@pytest.mark.parametrize("side", ["real", "model"])
def test_the_boards_syn_and_its_retransmission_have_tos_zero_df_and_consecutive_ids(exchange, side):
    frames = exchange.real if side == "real" else exchange.model
    syns = [fields(raw) for _, raw in frames if _is_ip_or_arp(raw) and fields(raw).get("tcp.flags") == SYN]
    assert len(syns) >= 2
    assert {(f["ip.tos"], f["ip.df"]) for f in syns[:2]} == {(0, True)}
    assert inet_id_follows(syns[0]["ip.id"], syns[1]["ip.id"])
