"""The model-as-board (harness.board.modelboard): a healthy player gives verdicts with no
rows in every built-in scenario, seeded ones give rows, in virtual time, and what it
leaves is a run's artifacts as check_run and ingest read them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.board.boardfile import parse_board
from harness.errors import BoardFileError
from harness.ingest.console import read_console
from harness.ingest.events import EventKind, read_host_events, read_qmp_log
from harness.ingest.pcap import read_capture
from harness.oracle import Tolerance
from harness.runner import check_scenario, run_scenario
from harness.scenario import builtin_scenarios, load_scenario
from models.config import DEFAULT_CONFIG

ALL = "all"


def builtins() -> list[str]:
    try:
        return sorted(builtin_scenarios(ALL))
    except TypeError:   # a harness without scenario tiers
        return sorted(builtin_scenarios())


def model_board(image: dict | None = None, **extra):
    return parse_board({"kind": "model", **({"image": image} if image else {}), **extra}, "<model board>")


def run(spec, name: str, out: Path):
    r = run_scenario(spec, load_scenario(name), out / name, log=lambda m: None)
    return r, check_scenario(spec, r, Tolerance())


def rows(v) -> set[tuple[str, str, str | None]]:
    return {(r["kind"], r["stream_name"], r.get("field")) for r in v.rows}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    out = tmp_path_factory.mktemp("healthy")
    spec = model_board()
    return out, {name: run(spec, name, out) for name in builtins()}


@pytest.mark.parametrize("name", builtins())
def test_healthy_model_as_board_matches_the_model(healthy, name):
    _, v = healthy[1][name]
    assert v.predicted > 0 and v.observed > 0
    assert v.rows == [] and getattr(v, "error", None) is None, json.dumps(v.rows, indent=1, default=int)


def test_a_long_scenario_runs_in_virtual_time(tmp_path):
    name = max(builtins(), key=lambda n: load_scenario(n).end_ns)
    assert load_scenario(name).end_ns >= 15_000_000_000
    t0 = time.monotonic()
    r = run_scenario(model_board(), load_scenario(name), tmp_path, log=lambda m: None)
    assert time.monotonic() - t0 < 2.0
    assert r.end_wall_ns - r.start_wall_ns == load_scenario(name).end_ns   # the synthetic clock ran it all


def test_seeded_mtu_is_a_field_mismatch_on_the_synack_mss(tmp_path):
    image = {**DEFAULT_CONFIG, "interface": {**DEFAULT_CONFIG["interface"], "mtu": 1400}}
    _, v = run(model_board(image), "handshake", tmp_path)
    mss = [r for r in v.rows if r.get("field") == "tcp_mss"]
    assert mss and {(r["stream_name"], r["pred_value"], r["obs_value"]) for r in mss} == {("TCP_SYNACK", 1460, 1360)}


def test_seeded_closed_http_service_is_a_missing_synack_and_an_extra_rst(tmp_path):
    image = {**DEFAULT_CONFIG, "services": {"ssh": {"port": 22}, "http": {"enabled": False}}}
    _, v = run(model_board(image), "handshake", tmp_path)
    assert {(k, s) for k, s, _ in rows(v)} == {("MISSING", "TCP_SYNACK"), ("EXTRA", "TCP_RST")}


def test_seeded_initial_rto_moves_the_syn_retransmissions(tmp_path):
    _, v = run(model_board(constants={"TCP_TIMEOUT_INIT": "3s"}), "syn-retransmit", tmp_path)
    assert ("MISSING", "TCP_SYN", None) in rows(v)


def test_seeded_watchdog_clock_is_a_reset_at_the_wrong_time(tmp_path):
    _, v = run(model_board(constants={"WDT_CLOCK_HZ": 2_000_000}), "watchdog-starve", tmp_path)
    assert {(k, s) for k, s, _ in rows(v)} == {("MISSING", "QMP_RESET"), ("EXTRA", "QMP_RESET")}


def test_seeded_constants_are_restored_after_the_run(tmp_path):
    import models.board
    import models.phy

    run(model_board(constants={"PHY_STATE_TIME": "2s"}), "link-flap", tmp_path)
    assert models.phy.PHY_STATE_TIME == models.board.PHY_STATE_TIME == 1_000_000_000


def test_a_run_that_stops_at_the_ssh_step_restores_the_constants_too(tmp_path):
    """Like the emulated board, a player that refuses SSH stops the run at the strategy's
    ssh step; the seeded constant must not leak into the oracle's model afterwards."""
    import models.phy
    from harness.errors import StrategyError

    image = {**DEFAULT_CONFIG, "services": {"ssh": {"enabled": False}, "http": {"port": 80}}}
    with pytest.raises(StrategyError, match="'ssh'.*connection refused"):
        run_scenario(model_board(image, constants={"PHY_STATE_TIME": "2s"}), load_scenario("handshake"), tmp_path,
                     log=lambda m: None)
    assert models.phy.PHY_STATE_TIME == 1_000_000_000


def test_every_player_constant_patches_what_the_model_reads_now():
    """A constant moved or renamed in models/ must fail here, not seed nothing."""
    from harness.board.modelboard import PLAYER_CONSTANTS, player_constants

    for c in PLAYER_CONSTANTS.values():
        targets = c.patches(c.default)
        assert targets, c.name
        for holder, attr, new in targets:
            current = holder[attr] if isinstance(holder, dict) else getattr(holder, attr)
            if c.unit == "ns" and not isinstance(holder, dict):
                assert current == c.default, (c.name, attr, current)
            elif isinstance(holder, dict):
                assert current == new, (c.name, attr, current)   # Linux's default, in the sysctl's unit
        with player_constants({c.name: c.default * 2}):
            changed = [holder[attr] if isinstance(holder, dict) else getattr(holder, attr)
                       for holder, attr, _ in targets]
        restored = [holder[attr] if isinstance(holder, dict) else getattr(holder, attr) for holder, attr, _ in targets]
        assert changed != restored, c.name


def test_every_module_that_reads_a_player_constant_is_patched():
    """A module that imported a constant by name keeps its own binding: one missing from
    the constant's targets would silently go on with Linux's value."""
    import ast

    from harness.board.modelboard import PLAYER_CONSTANTS

    root = Path(__file__).resolve().parents[1]
    for c in PLAYER_CONSTANTS.values():
        targets = c.patches(c.default)
        if not all(not isinstance(holder, dict) and attr == c.name for holder, attr, _ in targets):
            continue   # a sysctl default or a class, not a module constant
        patched = {holder.__name__ for holder, _, _ in targets}
        readers = set()
        for path in sorted((root / "models").rglob("*.py")):
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.Name) and n.id == c.name and isinstance(n.ctx, ast.Load) for n in ast.walk(tree)):
                readers.add(".".join(path.relative_to(root).with_suffix("").parts))
        assert readers and readers <= patched, (c.name, sorted(readers - patched))


def test_artifacts_read_as_a_run_on_a_board(healthy):
    """Every console line stamped, one boot per banner, the link lines recognised; QMP and
    host events strict; the capture whole; the steps logged."""
    out, _ = healthy
    d = out / "reboot"
    console = read_console(d / "console.log", strict=True)
    assert console.boots == 2
    assert {EventKind.BOOT, EventKind.LINK_UP, EventKind.RESTARTING} <= set(console.kind.tolist())
    qmp = read_qmp_log(d / "qmp.jsonl", strict=True)
    assert [EventKind(k).name for k in qmp.kind.tolist()] == ["QMP_RESUME", "QMP_WATCHDOG", "QMP_RESET"]
    host = read_host_events(d / "host-events.jsonl", strict=True)
    assert {"power_on", "capture_start", "reboot", "capture_stop", "power_off"} <= set(host.names)
    cap = read_capture(d / "capture.pcap")
    assert cap.error is None and len(cap.packets) > 0
    assert json.loads((d / "steps.json").read_text())[0]["do"] == "reboot"


def test_a_run_repeats_exactly(tmp_path):
    """No host clock leaks into the records (the stalled peer's TSvals follow the virtual clock)."""
    spec = model_board()
    for sub in ("a", "b"):
        run_scenario(spec, load_scenario("data-retransmit"), tmp_path / sub, log=lambda m: None)
    for name in ("capture.pcap", "console.log", "qmp.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_the_player_seed_draws_its_own_isn(tmp_path):
    outs = []
    for seed in (1, 2):
        r = run_scenario(model_board(seed=seed), load_scenario("closed-port"), tmp_path / str(seed),
                         log=lambda m: None)
        outs.append((r.out_dir / "capture.pcap").read_bytes())
    assert outs[0] != outs[1]


def test_slirp_peer_asks_for_the_guest_then_sends_its_syn_with_mss_only():
    """The shape of QEMU's slirp in the emulated board's captures: ARP who-has 10.0.2.15
    tell 10.0.2.2 from 52:55:0a:00:02:02, then the SYN (window 65535, MSS 1460 alone)."""
    from harness.board.modelboard import SlirpPeer, VirtualClock, VirtualWire
    from models.wire import ARPOP_REPLY, ETH_P_ARP, SYN, ArpRepr, EthernetRepr, Ipv4Repr, TcpRepr, ip4

    clock, sent, queue = VirtualClock(), [], []
    wire = VirtualWire(clock, lambda t, f: queue.append(f), sent.append, "user")
    slirp = SlirpPeer(wire, clock, lambda t, f: queue.append(f))
    slirp.connect(22)
    (arp_req,) = [f.data for f in wire.frames]
    eth, payload = EthernetRepr.parse(arp_req)
    arp = ArpRepr.parse(payload)
    assert (eth.dst, eth.src, arp.sip, arp.tip) == (b"\xff" * 6, bytes.fromhex("52550a000202"), ip4("10.0.2.2"),
                                                    ip4("10.0.2.15"))
    board_mac = bytes.fromhex("525400123456")
    reply = ArpRepr(op=ARPOP_REPLY, sha=board_mac, sip=ip4("10.0.2.15"), tha=arp.sha, tip=arp.sip)
    slirp._on_frame(EthernetRepr(arp.sha, board_mac, ETH_P_ARP).emit(reply.emit()))
    eth, payload = EthernetRepr.parse(wire.frames[-1].data)
    ip, seg = Ipv4Repr.parse(payload)
    syn, _ = TcpRepr.parse(seg, ip.src, ip.dst)
    assert eth.dst == board_mac and syn.flags == SYN and syn.dst_port == 22
    assert (syn.window, syn.mss, syn.sack_permitted, syn.timestamp, syn.wscale) == (65535, 1460, False, None, None)


def test_a_model_board_file_runs_through_bmc_hil_run(tmp_path):
    board = tmp_path / "model.yaml"
    board.write_text("kind: model\nseed: 3\n")
    out = subprocess.run([sys.executable, "-m", "harness", "run", "closed-port", "--board", str(board),
                          "--out", str(tmp_path / "runs"), "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["scenarios"][0]["predicted"] > 0


def test_model_board_file_fields_are_checked():
    spec = model_board(seed=7, constants={"PHY_STATE_TIME": "2s", "WDT_CLOCK_HZ": 2_000_000})
    assert (spec.kind, spec.player_seed) == ("model", 7)
    assert spec.player_constants == {"PHY_STATE_TIME": 2_000_000_000, "WDT_CLOCK_HZ": 2_000_000}
    with pytest.raises(BoardFileError, match="constants.HZ: unknown field"):
        model_board(constants={"HZ": 250})
    with pytest.raises(BoardFileError, match="constants.TCP_RTO_MIN: expected a duration"):
        model_board(constants={"TCP_RTO_MIN": "soon"})
    with pytest.raises(BoardFileError, match="seed: only for the model-as-board"):
        parse_board({"kind": "emulated", "seed": 1}, "<emulated>")
    with pytest.raises(BoardFileError, match="console: not used by the model-as-board"):
        parse_board({"kind": "model", "console": {"url": "/dev/ttyUSB0"}}, "<model>")


def test_a_first_keepalive_probe_later_than_the_accept_bound_is_a_row(tmp_path):
    """httpd's SO_KEEPALIVE comes when it gets to accept(), so the first keepalive timer
    may start up to the board's app_latency after the handshake (models.board
    Board.accept_latency), never more: the same run with its first probe moved past that
    bound (and the timer's slack and the frame tolerance) is a divergence, not a pass."""
    import dataclasses

    from models.wire import ACK, ip4

    from .pcap_edit import edit_board_segment

    short = {**DEFAULT_CONFIG, "sysctls": {**DEFAULT_CONFIG.get("sysctls", {}), "net.ipv4.tcp_keepalive_time": 2,
                                           "net.ipv4.tcp_keepalive_intvl": 2, "net.ipv4.tcp_keepalive_probes": 2}}
    spec = model_board(short, firmware=short, app_latency=0.2)
    r = run_scenario(spec, load_scenario("keepalive-idle"), tmp_path / "run", log=lambda m: None)
    v = check_scenario(spec, r, Tolerance())
    assert v.ok and "TCP_PROBE" in v.compared_kinds, json.dumps(v.rows, indent=1, default=int)
    board_ip = ip4(str(spec.firmware.interface.address.ip))
    cap = r.out_dir / "capture.pcap"
    # the board's first bare ACK after its SYN-ACK is the first probe (seq snd_una - 1)
    edit_board_segment(cap, board_ip, lambda segs: next(
        i for i, (_, _, tcp, payload) in enumerate(segs) if tcp.flags == ACK and not payload), shift_ms=600)
    late = check_scenario(spec, dataclasses.replace(r), Tolerance())
    assert {(row["kind"], row["stream_name"]) for row in late.rows} == {("LATE", "TCP_PROBE")}, \
        json.dumps(late.rows, indent=1, default=int)


@pytest.mark.parametrize("key, value, name", [
    ("net.core.somaxconn", 0, "handshake"),                  # backlog 0: the daemons accept each at once
    ("net.ipv4.tcp_adv_win_scale", -31, "handshake"),        # no receive space: window 0, not a crash
    ("net.ipv4.neigh.default.base_reachable_time_ms", 0, "neigh-reachable"),   # reachable time 0 exactly
])
def test_a_healthy_board_at_an_edge_of_a_sysctl_is_judged_healthy(tmp_path, key, value, name):
    """Declared and played alike, a value at the edge of what Linux accepts gives no row and
    no model failure: each of these once made the model fail or disagree with itself."""
    cfg = {**DEFAULT_CONFIG, "sysctls": {**DEFAULT_CONFIG.get("sysctls", {}), key: value}}
    spec = model_board(cfg, firmware=cfg)
    _, v = run(spec, name, tmp_path)
    assert v.ok, (v.error, json.dumps(v.rows, indent=1, default=int))


def test_a_board_tcp_segment_with_a_wrong_checksum_is_a_csum_mismatch(tmp_path):
    """Linux sends no segment with a wrong checksum (ftgmac100 fills the offloaded ones
    before the wire): one bit of a judged SYN-ACK's checksum changed is a field mismatch
    naming csum, of that segment only."""
    import dataclasses

    from models.wire import ip4
    from models.wire.ipv4 import IPPROTO_TCP

    from .pcap_edit import board_frames, edit_board_packet

    spec = model_board()
    r = run_scenario(spec, load_scenario("handshake"), tmp_path / "run", log=lambda m: None)
    assert check_scenario(spec, r, Tolerance()).ok
    board_ip = ip4(str(spec.firmware.interface.address.ip))
    cap = r.out_dir / "capture.pcap"
    # the board's frames: each handshake's SYN-ACK and its ACK of the peer's FIN; the first
    # handshake is the readiness probe, before the judged window
    assert len(board_frames(cap, board_ip, IPPROTO_TCP)) == 6
    edit_board_packet(cap, board_ip, IPPROTO_TCP, 2, lambda seg: seg.__setitem__(17, seg[17] ^ 4), fix_checksum=False)
    v = check_scenario(spec, dataclasses.replace(r), Tolerance())
    assert [(row["kind"], row["field"]) for row in v.rows] == [("FIELD_MISMATCH", "csum")], \
        json.dumps(v.rows, indent=1, default=int)
