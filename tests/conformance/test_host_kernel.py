"""The model against the host's own Linux, field by field.

The host kernel plays the board in a network namespace joined to a peer namespace by a
veth pair; dumpcap captures the board's veth. The peer's frames, at the times they were
captured, are the model's inputs (with the board namespace's own sysctls as its config);
the board's frames are what the model must predict.

Where the host kernel (newer than 6.1) legitimately differs from Linux 6.1, the test says
so and sets the namespace to the 6.1 behaviour rather than loosening the comparison:
- tcp_syn_linear_timeouts (not in 6.1; default 4 on newer kernels) makes the first SYN
  retransmissions linear (1, 1, 1 s); 6.1 backs off exponentially from the first. The
  board namespace runs with it set to 0, which is 6.1's behaviour.
- A veth does not pad short frames; the AST2500's ftgmac100 sends them padded to 60
  bytes. The comparison is on fields, and the model's padding is checked to be zeros.
Random per run on both sides, so not compared: the ISN, the TSval offset, the IP ID of a
connected socket's segments, the source port of connect().
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from models.board import Board, BootTiming
from models.clock import Window, ms, sec
from models.wire import ETH_P_ARP, ETH_P_IP, ArpRepr, EthernetRepr, Ipv4Repr, TcpRepr, mac_bytes
from models.wire.ipv4 import IPPROTO_TCP

from .conftest import netns_pair_made
from .netns import BOARD_ADDR, BOARD_MAC, PEER_ADDR, PEER_MAC, CapturedFrame, NetnsPair, read_pcap_frames

pytestmark = pytest.mark.netns

INSTANT_BOOT = BootTiming(Window(0, 0), Window(0, 0))
MODEL_START = sec(1)          # the model board is up well before the first captured frame
SYN_RETRIES = 2               # a dead peer cut short: SYN at 0, 1, 3 s, ETIMEDOUT at 7 s
TIME_TOLERANCE_ABS = ms(5)    # capture and scheduling on the host
TIME_TOLERANCE_FRAC = 0.02

LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(128)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[2], 0))   # as dropbear does, after listen()
print("listening", flush=True)
time.sleep(60)
"""
DROPBEAR_TOS = 0x48   # IPTOS_DSCP_AF21, the ssh service's default ip_tos
CONNECT = """
import errno, socket, sys, time
s = socket.socket()
t0 = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected", time.monotonic() - t0)
    time.sleep(float(sys.argv[3]))
except OSError as err:
    print(errno.errorcode[err.errno], time.monotonic() - t0)
"""


# -- the model over captured inputs ---------------------------------------------------------
@dataclass
class ModelRun:
    board: Board
    frames: list[tuple[int, bytes]]      # what the model board sends, in capture time
    shift: int                           # model time = capture time + shift

    def capture_time(self, model_time: int) -> int:
        return model_time - self.shift


def run_model(pair: NetnsPair, captured: list[CapturedFrame], apps: list[dict[str, Any]], until: int,
              services: dict | None = None) -> ModelRun:
    """Feed the peer's captured frames (and the board's socket calls) to a model board."""
    config = pair.board_config(services)
    board = Board(config, seed=1, qemu=False, boot=INSTANT_BOOT, phy_phase=0)
    t0 = captured[0].t
    shift = MODEL_START - t0
    inputs = [{"t": f.t + shift, "kind": "frame", "raw": f.raw} for f in captured if f.raw[6:12] == mac_bytes(PEER_MAC)]
    inputs += [{**a, "t": a["t"] + shift} for a in apps]
    inputs.sort(key=lambda e: e["t"])
    out: list[tuple[int, bytes]] = []
    i = 0
    end = until + shift
    while True:
        t_in = inputs[i]["t"] if i < len(inputs) else None
        t_timer = board.poll_at()
        nxt = min(t for t in (t_in, t_timer) if t is not None) if (t_in, t_timer) != (None, None) else None
        if nxt is None or nxt > end:
            break
        if t_in is not None and t_in == nxt:
            produced = board.handle(nxt, inputs[i])
            i += 1
        else:
            produced = board.on_timer(nxt)
        out += [(p.t - shift, p.frame) for p in produced if p.kind == "frame"]
    return ModelRun(board, out, shift)


def board_frames(captured: list[CapturedFrame]) -> list[CapturedFrame]:
    return [f for f in captured if f.raw[6:12] == mac_bytes(BOARD_MAC)]


# -- fields ----------------------------------------------------------------------------------
def fields(raw: bytes) -> dict[str, Any]:
    """Every header field the kernel decides, parsed with the model's own wire parsers
    (which verify the checksums: both sides' checksums must be right)."""
    eth, payload = EthernetRepr.parse(raw)
    out: dict[str, Any] = {"eth.dst": eth.dst.hex(":"), "eth.src": eth.src.hex(":"), "eth.type": eth.ethertype}
    if eth.ethertype == ETH_P_ARP:
        arp = ArpRepr.parse(payload)
        out.update({"arp.op": arp.op, "arp.sha": arp.sha.hex(":"), "arp.spa": arp.sip, "arp.tha": arp.tha.hex(":"),
                    "arp.tpa": arp.tip})
    elif eth.ethertype == ETH_P_IP:
        ip, seg = Ipv4Repr.parse(payload)
        out.update({"ip.src": ip.src, "ip.dst": ip.dst, "ip.ttl": ip.ttl, "ip.df": ip.df, "ip.tos": ip.tos,
                    "ip.id": ip.ident, "ip.proto": ip.protocol, "ip.len": ip.buffer_len})
        if ip.protocol == IPPROTO_TCP:
            tcp, data = TcpRepr.parse(seg, ip.src, ip.dst)
            out.update({"tcp.sport": tcp.src_port, "tcp.dport": tcp.dst_port, "tcp.flags": tcp.flags,
                        "tcp.seq": tcp.seq, "tcp.ack": tcp.ack, "tcp.window": tcp.window, "tcp.urg": tcp.urgent,
                        "tcp.options": [kind for kind, _ in tcp.options], "tcp.mss": tcp.mss,
                        "tcp.wscale": tcp.wscale, "tcp.sack_perm": tcp.sack_permitted,
                        "tcp.tsecr": tcp.timestamp[1] if tcp.timestamp else None, "tcp.len": len(data)})
    return out


def without(d: dict[str, Any], *random_fields: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in random_fields}


def model_payload_padding_is_zero(raw: bytes) -> bool:
    eth, payload = EthernetRepr.parse(raw)
    if eth.ethertype == ETH_P_ARP:
        return raw[42:] == bytes(len(raw) - 42)
    ip, _ = Ipv4Repr.parse(payload)
    return raw[14 + ip.buffer_len:] == bytes(len(raw) - 14 - ip.buffer_len)


def timer_fired_in_window(observed_gap: int, predicted_gap: int) -> bool:
    """A kernel timer armed for `predicted_gap` fires no earlier and at most one timer-wheel
    granule later: kernel/time/timer.c rounds up to LVL_GRAN(n) = 8^n jiffies at level n,
    which starts at LVL_START(n) = 63 * 8^(n-1) jiffies, so a granule is at most 8/63 of
    the delay. HZ is taken at its smallest common value (100) for the one-jiffy term."""
    granule = predicted_gap * 8 // 63 + ms(10)
    return predicted_gap - TIME_TOLERANCE_ABS <= observed_gap <= predicted_gap + granule + TIME_TOLERANCE_ABS


def within(observed: int, predicted: int, gap: int) -> bool:
    return abs(observed - predicted) <= max(TIME_TOLERANCE_ABS, int(TIME_TOLERANCE_FRAC * gap))


def first(frames, **want):
    for t, raw in frames:
        f = fields(raw)
        if all(f.get(k) == v for k, v in want.items()):
            return t, raw
    raise AssertionError(f"no frame with {want} among {[fields(r) for _, r in frames]}")


# -- scenarios -------------------------------------------------------------------------------
def listener_scenario(pair: NetnsPair, tmp_path: Path, port: int, tos: int = 0) -> list[CapturedFrame]:
    """A listener on `port` (with IP_TOS `tos`) in the board namespace; the peer connects,
    waits, closes."""
    server = pair.popen(pair.board_ns, sys.executable, "-c", LISTENER, str(port), str(tos))
    try:
        assert server.stdout.readline().strip() == "listening", server.stderr.read()
        pcap = tmp_path / "listener.pcap"
        with pair.capture(pcap):
            res = pair.exec(pair.peer_ns, sys.executable, "-c", CONNECT, BOARD_ADDR, str(port), "0.3")
            assert res.stdout.startswith("connected"), res.stdout + res.stderr
    finally:
        server.kill()
        server.wait()
    return read_pcap_frames(pcap)


def closed_port_scenario(pair: NetnsPair, tmp_path: Path, port: int) -> list[CapturedFrame]:
    pcap = tmp_path / "closed.pcap"
    with pair.capture(pcap):
        res = pair.exec(pair.peer_ns, sys.executable, "-c", CONNECT, BOARD_ADDR, str(port), "0")
        assert res.stdout.startswith("ECONNREFUSED"), res.stdout + res.stderr
    return read_pcap_frames(pcap)


@dataclass
class DeadPeerRun:
    captured: list[CapturedFrame]
    failed_after: float     # seconds from connect() to its error, as the host's socket saw it
    error: str
    counters: dict[str, int] | None = None   # TcpExt, after the run


def dead_peer_scenario(pair: NetnsPair, tmp_path: Path, port: int) -> DeadPeerRun:
    """The board connects to a peer that answers ARP but never TCP.

    The peer's route back to the board is a blackhole: arp_process still replies (it needs
    only the input route to its own address), but tcp_v4_send_reset finds no output route."""
    pair.sysctl(pair.board_ns, "net.ipv4.tcp_syn_retries", str(SYN_RETRIES))
    if pair.exec(pair.board_ns, "test", "-e", "/proc/sys/net/ipv4/tcp_syn_linear_timeouts", check=False).returncode == 0:
        pair.sysctl(pair.board_ns, "net.ipv4.tcp_syn_linear_timeouts", "0")   # 6.1 has no linear phase
    pair.ip(pair.peer_ns, "route", "add", "blackhole", f"{BOARD_ADDR}/32")
    pcap = tmp_path / "dead.pcap"
    with pair.capture(pcap):
        res = pair.exec(pair.board_ns, sys.executable, "-c", CONNECT, PEER_ADDR, str(port), "0")
    error, seconds = res.stdout.split()
    return DeadPeerRun(read_pcap_frames(pcap), float(seconds), error)


UNRESOLVABLE_ADDR = "10.0.2.99"   # on the board's /24; nobody answers ARP for it
UNRESOLVABLE_RETRANS_MS = 700     # the entry fails at 2.1 s: after the SYN's first retransmission


def unresolvable_scenario(pair: NetnsPair, tmp_path: Path, port: int) -> DeadPeerRun:
    """The board connects to an address nobody answers ARP for."""
    pair.sysctl(pair.board_ns, f"net.ipv4.neigh.{pair.board_if}.retrans_time_ms", str(UNRESOLVABLE_RETRANS_MS))
    if pair.exec(pair.board_ns, "test", "-e", "/proc/sys/net/ipv4/tcp_syn_linear_timeouts", check=False).returncode == 0:
        pair.sysctl(pair.board_ns, "net.ipv4.tcp_syn_linear_timeouts", "0")
    pcap = tmp_path / "unresolvable.pcap"
    with pair.capture(pcap):
        res = pair.exec(pair.board_ns, sys.executable, "-c", CONNECT, UNRESOLVABLE_ADDR, str(port), "0")
        pair.exec(pair.board_ns, "sleep", "2.5")   # the new resolution the revert started
    error, seconds = res.stdout.split()
    return DeadPeerRun(read_pcap_frames(pcap), float(seconds), error, tcp_ext(pair))


def tcp_ext(pair: NetnsPair) -> dict[str, int]:
    """The board namespace's TcpExt counters (/proc/net/netstat)."""
    lines = [line.split() for line in pair.exec(pair.board_ns, "cat", "/proc/net/netstat").stdout.splitlines()
             if line.startswith("TcpExt:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)}


# -- one capture per scenario, shared by the tests that read it --------------------------------
@dataclass
class ListenerRun:
    captured: list[CapturedFrame]
    model: ModelRun


@pytest.fixture(scope="module")
def listener_run(tmp_path_factory) -> Iterator[ListenerRun]:
    with netns_pair_made() as pair:
        captured = listener_scenario(pair, tmp_path_factory.mktemp("listener"), 22, DROPBEAR_TOS)
        yield ListenerRun(captured, run_model(pair, captured, [], until=captured[-1].t,
                                              services={"ssh": {"port": 22}}))   # ip_tos: the default


@pytest.fixture(scope="module")
def closed_port_run(tmp_path_factory) -> Iterator[ListenerRun]:
    with netns_pair_made() as pair:
        captured = closed_port_scenario(pair, tmp_path_factory.mktemp("closed"), 23)
        yield ListenerRun(captured, run_model(pair, captured, [], until=captured[-1].t))


def board_connect_run(tmp_path_factory, scenario, addr: str, seconds: int) -> Iterator[tuple[DeadPeerRun, ModelRun]]:
    """A scenario in which the board connects to `addr`, and the model over its capture."""
    with netns_pair_made() as pair:
        run = scenario(pair, tmp_path_factory.mktemp(scenario.__name__), 22)
        (request, *_) = board_frames(run.captured)
        # connect() ran just before the ARP request it caused: that is the model's connect time
        app = {"t": request.t, "kind": "connect", "fd": "c", "addr": addr, "port": 22}
        yield run, run_model(pair, run.captured, [app], until=request.t + sec(seconds))


@pytest.fixture(scope="module")
def dead_peer(tmp_path_factory) -> Iterator[tuple[DeadPeerRun, ModelRun]]:
    yield from board_connect_run(tmp_path_factory, dead_peer_scenario, PEER_ADDR, 10)


@pytest.fixture(scope="module")
def unresolvable(tmp_path_factory) -> Iterator[tuple[DeadPeerRun, ModelRun]]:
    yield from board_connect_run(tmp_path_factory, unresolvable_scenario, UNRESOLVABLE_ADDR, 5)


def real_and_predicted(captured, model: ModelRun, **want):
    return first([(f.t, f.raw) for f in board_frames(captured)], **want), first(model.frames, **want)


# -- tests: a listener ---------------------------------------------------------------------
def test_arp_reply_to_the_peers_request_matches_field_by_field(listener_run):
    real, predicted = real_and_predicted(listener_run.captured, listener_run.model, **{"arp.op": 2})
    assert fields(predicted[1]) == fields(real[1])
    assert within(real[0], predicted[0], 0)


def test_synack_matches_field_by_field_but_for_isn(listener_run):
    real, predicted = real_and_predicted(listener_run.captured, listener_run.model, **{"tcp.flags": 0x12})
    # flags, options and their order, MSS, window, wscale, SACK-permitted, TSecr, TTL, TOS, DF, ID 0
    assert without(fields(predicted[1]), "tcp.seq") == without(fields(real[1]), "tcp.seq")
    assert fields(real[1])["ip.tos"] == DROPBEAR_TOS
    assert within(real[0], predicted[0], 0)


def test_synack_length_is_the_same_and_the_models_padding_is_zero(listener_run):
    real, predicted = real_and_predicted(listener_run.captured, listener_run.model, **{"tcp.flags": 0x12})
    assert len(real[1]) == len(predicted[1]) == 74 and model_payload_padding_is_zero(predicted[1])


# -- tests: a closed port ------------------------------------------------------------------
def test_rst_to_a_closed_port_matches_field_by_field(closed_port_run):
    real, predicted = real_and_predicted(closed_port_run.captured, closed_port_run.model, **{"tcp.flags": 0x14})
    # a RST from no socket is all deterministic: seq 0, ack = SYN + 1, window 0, ID 0
    assert fields(predicted[1]) == fields(real[1])
    assert within(real[0], predicted[0], 0)


# -- tests: ARP resolution and a dead peer ------------------------------------------------
def test_arp_request_for_the_peer_matches_field_by_field(dead_peer):
    run, model = dead_peer
    real = board_frames(run.captured)[0]
    t, predicted = model.frames[0]
    assert fields(predicted) == fields(real.raw)
    assert fields(real.raw)["eth.dst"] == "ff:ff:ff:ff:ff:ff" and t == real.t


def test_syn_after_arp_resolution_matches_field_by_field_but_for_random_fields(dead_peer):
    run, model = dead_peer
    real, predicted = real_and_predicted(run.captured, model, **{"tcp.flags": 0x02})
    random_fields = ("tcp.seq", "tcp.sport", "ip.id")
    assert without(fields(predicted[1]), *random_fields) == without(fields(real[1]), *random_fields)
    assert within(real[0], predicted[0], 0)


def _syn_times(frames) -> list[int]:
    return [t for t, raw in frames if fields(raw).get("tcp.flags") == 0x02]


def test_syn_retransmissions_to_a_dead_peer_come_1_and_2_s_apart(dead_peer):
    run, model = dead_peer
    connect_at = board_frames(run.captured)[0].t
    real = _syn_times([(f.t, f.raw) for f in board_frames(run.captured)])
    predicted = _syn_times(model.frames)
    assert len(real) == len(predicted) == SYN_RETRIES + 1
    # the retransmission timer runs from connect(), not from the SYN leaving after ARP
    predicted_gaps = [predicted[1] - connect_at, predicted[2] - predicted[1]]
    real_gaps = [real[1] - connect_at, real[2] - real[1]]
    assert predicted_gaps == [sec(1), sec(2)]
    assert all(timer_fired_in_window(o, p) for o, p in zip(real_gaps, predicted_gaps, strict=True)), \
        (real_gaps, predicted_gaps)


def test_connect_to_a_dead_peer_fails_with_etimedout_4_s_after_the_last_syn(dead_peer):
    run, model = dead_peer
    sock = model.board.sockets.sock(model.board.fds["c"])
    connect_at = board_frames(run.captured)[0].t
    last_syn = _syn_times(model.frames)[-1]
    real_last_syn = _syn_times([(f.t, f.raw) for f in board_frames(run.captured)])[-1]
    assert (run.error, sock.error) == ("ETIMEDOUT", "ETIMEDOUT")
    predicted_gap = model.capture_time(sock.error_at) - last_syn
    assert predicted_gap == sec(4)
    # the host's connect() clock started just before the ARP request it caused
    real_gap = int(run.failed_after * 1e9) - (real_last_syn - connect_at)
    assert timer_fired_in_window(real_gap, predicted_gap), real_gap


def test_namespace_pair_is_removed_after_use():
    with netns_pair_made() as pair:
        names = (pair.board_ns, pair.peer_ns)
    listed = NetnsPair.list_namespaces()
    assert not set(names) & set(listed)


# -- tests: a peer nobody answers ARP for --------------------------------------------------------
def test_a_failed_neighbour_ends_the_connect_with_ehostunreach_at_its_third_retry(unresolvable):
    run, model = unresolvable
    sock = model.board.sockets.sock(model.board.fds["c"])
    connect_at = board_frames(run.captured)[0].t
    assert (run.error, sock.error) == ("EHOSTUNREACH", "EHOSTUNREACH")
    predicted = model.capture_time(sock.error_at) - connect_at
    assert predicted == 3 * ms(UNRESOLVABLE_RETRANS_MS)
    # three neighbour timers in a row, each up to a granule late
    assert predicted <= int(run.failed_after * 1e9) <= predicted + 3 * (ms(UNRESOLVABLE_RETRANS_MS) * 8 // 63
                                                                        + ms(10)) + TIME_TOLERANCE_ABS


def test_the_failure_reverts_the_syn_backoff_and_resends_into_a_new_resolution(unresolvable):
    """RFC 6069: arp_error_report's ICMP host unreachable undoes one RTO backoff; the SYN's
    last transmission (1 s) is more than the reverted RTO (1 s) ago, so it goes again at
    once, starting a fresh resolution: broadcast requests go on after the connect failed.
    Without the revert the requests would stop at the third."""
    run, model = unresolvable
    real = [f.t for f in board_frames(run.captured) if fields(f.raw).get("arp.op") == 1]
    predicted = [t for t, raw in model.frames if fields(raw).get("arp.op") == 1 and t <= real[-1] + ms(300)]
    assert len(predicted) == 6 and len(real) == len(predicted), (real, predicted)
    assert all(fields(raw)["arp.tpa"] == fields(board_frames(run.captured)[0].raw)["arp.tpa"]
               for t, raw in model.frames if fields(raw).get("arp.op") == 1)
    for o_prev, o, p_prev, p in zip(real, real[1:], predicted, predicted[1:], strict=False):
        assert timer_fired_in_window(o - o_prev, p - p_prev) or p - p_prev == 0, (real, predicted)
    assert not [raw for t, raw in model.frames if fields(raw).get("tcp.flags")]   # no SYN ever resolved


def test_a_retransmission_while_the_syn_waits_in_the_arp_queue_is_skipped(unresolvable):
    """skb_still_in_host_queue(): the SYN's retransmission due at 1 s finds its last copy
    still in the neighbour's queue and is not sent (-EBUSY), though the timer backs off;
    the kernel counts it in TCPSpuriousRtxHostQueues, the model in its socket."""
    run, model = unresolvable
    sock = model.board.sockets.sock(model.board.fds["c"])
    assert run.counters["TCPSpuriousRtxHostQueues"] == sock.spurious_rtx_hostqueues == 1
