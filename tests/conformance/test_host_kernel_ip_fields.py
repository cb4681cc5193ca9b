"""The TOS, DF and ID of the board's frames: the model against the host's own Linux.

Same set-up as test_host_kernel.py (the host kernel plays the board in a namespace). The
peer sends from raw sockets where it needs a TOS byte a TCP socket cannot carry (ECN bits).
IDs Linux picks at random are checked by their law (models.ipv4: inet_id_follows,
ip_idents_follows) on both sides, never as values; the host's HZ is not known here, so the
ip_idents law is applied with the shortest tick any kernel has (1 ms, HZ=1000), which
bounds every HZ.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.clock import ms
from models.ipv4 import inet_id_follows, ip_idents_follows
from models.wire import IPPROTO_ICMP, IPPROTO_TCP, SYN, EthernetRepr, IcmpRepr, Ipv4Repr, TcpRepr, ip4, mac_bytes
from models.wire.icmp import ICMP_ECHO
from models.wire.tcp import TCPOPT_TIMESTAMP

from .conftest import netns_pair_made
from .netns import BOARD_ADDR, PEER_ADDR, PEER_MAC, CapturedFrame, NetnsPair, read_pcap_frames
from .test_host_kernel import DROPBEAR_TOS, LISTENER, ModelRun, board_frames, fields, run_model, within, without

pytestmark = pytest.mark.netns

EF_ECT1 = 0xB9          # DSCP EF with ECN ECT(1): the ECN bits show what each path keeps
SHORTEST_JIFFY = ms(1)  # HZ=1000
RAW_SEND = """
import socket, sys, time
proto, tos, dst = int(sys.argv[1]), int(sys.argv[2], 0), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)   # a raw socket keeps the ECN bits
for item in sys.argv[4:]:
    delay, payload = item.split(":")
    time.sleep(float(delay))
    s.sendto(bytes.fromhex(payload), (dst, 0))
"""
CONNECT_AND_WRITE = """
import socket, sys, time
s = socket.socket()
s.connect((sys.argv[1], int(sys.argv[2])))
for _ in range(3):
    time.sleep(0.05)
    s.send(b"data")
time.sleep(0.3)
print("written", flush=True)
"""


@dataclass
class Run:
    captured: list[CapturedFrame]
    model: ModelRun


def raw_scenario(pair: NetnsPair, path: Path, proto: int, tos: int, sends: list[tuple[float, bytes]]) -> list:
    with pair.capture(path):
        pair.exec(pair.peer_ns, sys.executable, "-c", RAW_SEND, str(proto), hex(tos), BOARD_ADDR,
                  *(f"{delay}:{payload.hex()}" for delay, payload in sends))
        pair.exec(pair.board_ns, "sleep", "0.2")
    return read_pcap_frames(path)


@pytest.fixture(scope="module")
def closed_port_ect(tmp_path_factory) -> Iterator[Run]:
    """A SYN with TOS EF|ECT(1) to a closed port."""
    syn = TcpRepr(40000, 23, 1000, 0, SYN, 64240, ()).emit(b"", ip4(PEER_ADDR), ip4(BOARD_ADDR))
    with netns_pair_made() as pair:
        captured = raw_scenario(pair, tmp_path_factory.mktemp("rst") / "rst.pcap", IPPROTO_TCP, EF_ECT1, [(0, syn)])
        yield Run(captured, run_model(pair, captured, [], until=captured[-1].t))


@pytest.fixture(scope="module")
def echoes(tmp_path_factory) -> Iterator[Run]:
    """Echo requests with TOS EF|ECT(1): two back to back, then one 300 ms later."""
    def echo(seq: int) -> bytes:
        return IcmpRepr(ICMP_ECHO, 0, 0x4242, seq, b"bmc-hil").emit()
    with netns_pair_made() as pair:
        captured = raw_scenario(pair, tmp_path_factory.mktemp("echo") / "echo.pcap", IPPROTO_ICMP, EF_ECT1,
                                [(0, echo(1)), (0, echo(2)), (0.3, echo(3))])
        yield Run(captured, run_model(pair, captured, [], until=captured[-1].t))


@pytest.fixture(scope="module")
def accepted(tmp_path_factory) -> Iterator[Run]:
    """A listener with IP_TOS 0x48 (as dropbear's); the peer connects and writes three times."""
    with netns_pair_made() as pair:
        server = pair.popen(pair.board_ns, sys.executable, "-c", LISTENER, "22", hex(DROPBEAR_TOS))
        try:
            assert server.stdout.readline().strip() == "listening", server.stderr.read()
            path = tmp_path_factory.mktemp("accepted") / "accepted.pcap"
            with pair.capture(path):
                res = pair.exec(pair.peer_ns, sys.executable, "-c", CONNECT_AND_WRITE, BOARD_ADDR, "22")
                assert res.stdout.strip() == "written", res.stdout + res.stderr
        finally:
            server.kill()
            server.wait()
        captured = read_pcap_frames(path)
        # the peer acknowledges the host's ISN and echoes its TSval: learn both from the
        # host's SYN-ACK and move the peer's frames into the model's (as the oracle does)
        first = run_model(pair, captured, [], until=captured[-1].t, services={"ssh": {"port": 22}})
        real_sa = _synack([f.raw for f in board_frames(captured)])
        model_sa = _synack([raw for _, raw in first.frames])
        moved = [_moved(f, real_sa, model_sa) for f in captured]
        yield Run(captured, run_model(pair, moved, [], until=captured[-1].t, services={"ssh": {"port": 22}}))


def _synack(frames: list[bytes]) -> TcpRepr:
    (raw,) = [raw for raw in frames if fields(raw).get("tcp.flags") == 0x12]
    _, packet = EthernetRepr.parse(raw)
    ip, seg = Ipv4Repr.parse(packet)
    return TcpRepr.parse(seg, ip.src, ip.dst)[0]


def _moved(frame: CapturedFrame, real_sa: TcpRepr, model_sa: TcpRepr) -> CapturedFrame:
    """A peer TCP frame with its ACK and TSecr shifted from the host's ISN and TS clock to the model's."""
    if frame.raw[6:12] != mac_bytes(PEER_MAC) or fields(frame.raw).get("tcp.dport") != 22:
        return frame
    eth, packet = EthernetRepr.parse(frame.raw)
    ip, seg = Ipv4Repr.parse(packet)
    tcp, data = TcpRepr.parse(seg, ip.src, ip.dst)
    ack = (tcp.ack + model_sa.seq - real_sa.seq) & 0xFFFFFFFF
    opts = tuple((k, (v[0], (v[1] + model_sa.timestamp[0] - real_sa.timestamp[0]) & 0xFFFFFFFF))
                 if k == TCPOPT_TIMESTAMP else (k, v) for k, v in tcp.options)
    moved = TcpRepr(tcp.src_port, tcp.dst_port, tcp.seq, ack, tcp.flags, tcp.window, opts, tcp.urgent)
    body = moved.emit(data, ip.src, ip.dst)
    return CapturedFrame(frame.t, eth.emit(Ipv4Repr(ip.src, ip.dst, ip.protocol, len(body), ip.ttl, ip.ident, ip.df,
                                                    tos=ip.tos).emit(body), pad=False))


def ip_frames(frames: list[tuple[int, bytes]], **want) -> list[tuple[int, dict]]:
    out = []
    for t, raw in frames:
        f = fields(raw)
        if "ip.id" in f and all(f.get(k) == v for k, v in want.items()):
            out.append((t, f))
    return out


def real_frames(run: Run, **want) -> list[tuple[int, dict]]:
    return ip_frames([(f.t, f.raw) for f in board_frames(run.captured)], **want)


# -- RST: tcp_v4_send_reset on the control socket ----------------------------------------------
def test_rst_to_a_closed_port_reflects_the_syns_tos_less_ecn_like_the_host_kernel(closed_port_ect):
    ((t_real, real),) = real_frames(closed_port_ect, **{"tcp.flags": 0x14})
    ((t_model, predicted),) = ip_frames(closed_port_ect.model.frames, **{"tcp.flags": 0x14})
    assert (real["ip.tos"], real["ip.df"], real["ip.id"]) == (0xB8, True, 0)
    assert predicted == real and within(t_real, t_model, 0)


# -- ICMP echo replies: icmp_reply on the ICMP control socket ------------------------------------
def test_echo_replies_carry_the_requests_whole_tos_and_no_df_like_the_host_kernel(echoes):
    real = real_frames(echoes, **{"ip.proto": IPPROTO_ICMP})
    predicted = ip_frames(echoes.model.frames, **{"ip.proto": IPPROTO_ICMP})
    assert len(real) == len(predicted) == 3
    assert {(f["ip.tos"], f["ip.df"]) for _, f in real} == {(EF_ECT1, False)}
    assert [without(f, "ip.id") for _, f in predicted] == [without(f, "ip.id") for _, f in real]


@pytest.mark.parametrize("side", ["host kernel", "model"])
def test_echo_reply_ids_follow_ip_idents(echoes, side):
    frames = real_frames(echoes, **{"ip.proto": IPPROTO_ICMP}) if side == "host kernel" else \
        ip_frames(echoes.model.frames, **{"ip.proto": IPPROTO_ICMP})
    (t0, a), (t1, b), (t2, c) = frames
    assert (b["ip.id"] - a["ip.id"]) & 0xFFFF == 1     # back to back: no jiffy passed, no random step
    assert ip_idents_follows(b["ip.id"], t1, c["ip.id"], t2, jiffy=SHORTEST_JIFFY)


# -- an accepted connection: ip_queue_xmit with the socket's tos and inet_id --------------------------
def child_frames(frames: list[tuple[int, dict]]) -> list[dict]:
    """The accepted socket's own segments: after the SYN-ACK, from port 22, not RSTs."""
    return [f for _, f in frames if f.get("tcp.sport") == 22 and f["tcp.flags"] not in (0x12, 0x04, 0x14)]


@pytest.mark.parametrize("side", ["host kernel", "model"])
def test_accepted_socket_segments_carry_the_listeners_tos_and_consecutive_ids(accepted, side):
    frames = real_frames(accepted) if side == "host kernel" else ip_frames(accepted.model.frames)
    child = child_frames(frames)
    assert len(child) >= 3, child
    assert {(f["ip.tos"], f["ip.df"]) for f in child} == {(DROPBEAR_TOS, True)}
    ids = [f["ip.id"] for f in child]
    assert all(inet_id_follows(a, b) for a, b in zip(ids, ids[1:], strict=False)), ids


def test_model_predicts_the_accepted_sockets_segments_but_for_the_random_fields(accepted):
    real = child_frames(real_frames(accepted))
    predicted = child_frames(ip_frames(accepted.model.frames))
    random_fields = ("tcp.seq", "tcp.ack", "ip.id", "tcp.tsecr")
    assert [without(f, *random_fields) for f in predicted] == [without(f, *random_fields) for f in real]
    # the first ID is learnt; every later one follows from it
    assert [(f["ip.id"] - predicted[0]["ip.id"]) & 0xFFFF for f in predicted] == \
        [(f["ip.id"] - real[0]["ip.id"]) & 0xFFFF for f in real]
