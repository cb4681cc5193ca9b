"""Two model boards on one wire: handshake, data, close with Linux timings; a silent peer."""

from __future__ import annotations

from models.board import BootTiming, run_back_to_back
from models.clock import Window, ms, sec
from models.config import FirmwareConfig
from models.tcp import TcpState

FAST_BOOT = BootTiming(Window(ms(500), ms(500)), Window(0, 0))
CLIENT = FirmwareConfig.from_dict({"hostname": "client",
                                   "interface": {"address": "10.0.2.2/24", "mac": "52:54:00:12:35:02"}})
SERVER = FirmwareConfig.default()
DELAY = ms(1)


def tcp_frames(out, cause=None):
    return [e for e in out if e.kind == "frame" and "flags" in e.detail and (cause is None or e.detail["cause"] == cause)]


def session(inputs, until, **kw):
    return run_back_to_back(CLIENT, SERVER, inputs, [], until=until, delay=DELAY, boot=FAST_BOOT, **kw)


CONNECT = {"t": sec(2), "kind": "connect", "fd": "c", "addr": "10.0.2.15", "port": 22}


def test_client_resolves_the_server_before_its_syn():
    _, _, out_a, _ = session([CONNECT], sec(3))
    frames = [e for e in out_a if e.kind == "frame"]
    assert [f.detail["cause"] for f in frames[:2]] == ["arp-request", "arp-queue-release"]
    assert frames[1].detail["flags"] == "S" and frames[1].t == sec(2) + 2 * DELAY


def test_handshake_takes_one_round_trip_each_way():
    a, b, out_a, out_b = session([CONNECT], sec(3))
    (synack,) = tcp_frames(out_b, "synack")
    (ack,) = tcp_frames(out_a, "handshake-ack")
    assert synack.t == sec(2) + 3 * DELAY and ack.t == sec(2) + 4 * DELAY
    assert (synack.detail["win"], ack.detail["win"]) == (65160, 1004)
    assert a.sockets.sock(a.fds["c"]).state is TcpState.ESTABLISHED


def test_data_reaches_the_server_and_is_acked_at_once():
    _, b, _, out_b = session([CONNECT, {"t": sec(3), "kind": "send", "fd": "c", "data": "hello"}], sec(4))
    (ack,) = tcp_frames(out_b, "ack-now")
    assert ack.t == sec(3) + DELAY
    # dropbear accepted it at once (Board._daemons_accept): the child is an established socket
    (child,) = [sk for sk in b.sockets.established.values() if sk.passive and sk.local[1] == 22]
    assert not b.sockets.listeners[22].listener.accept_queue and bytes(child.rcv_buf) == b"hello"


def test_client_close_is_acked_after_the_delayed_ack_and_waits_60_s():
    a, b, _, out_b = session([CONNECT, {"t": sec(4), "kind": "close", "fd": "c"}], sec(70))
    # a FIN before any data: ato is still 0, so the delayed ACK goes on the next tick
    (ack,) = tcp_frames(out_b, "delayed-ack")
    assert ack.t == sec(4) + DELAY
    client = a.sockets.closed_socks[0]
    states = [(t, new) for t, _, new in client.transitions]
    t_wait = next(t for t, s in states if s is TcpState.FIN_WAIT2)
    assert t_wait == ack.t + DELAY
    assert TcpState.TIME_WAIT not in [s for _, s in states]   # the server never closes: FIN_WAIT2 orphan
    assert states[-1] == (t_wait + sec(60), TcpState.CLOSED)  # tcp_fin_timeout


def test_client_against_silent_peer_sends_syn_at_0_1_3_7_15_31_63_and_fails_at_127():
    def arp_only(frame: bytes, side: int) -> bool:
        return frame[12:14] == b"\x08\x06"   # the peer answers ARP and nothing else
    a, _, out_a, _ = session([CONNECT], sec(200), wire_filter=arp_only)
    syns = [e.t - sec(2) for e in tcp_frames(out_a) if e.detail["flags"] == "S"]
    assert syns == [2 * DELAY] + [sec(x) for x in (1, 3, 7, 15, 31, 63)]
    sk = a.sockets.closed_socks[0]
    assert sk.error == "ETIMEDOUT" and sk.error_at == sec(2) + sec(127)
