"""The oracle loop end to end on the emulated board: healthy firmware gives no divergence,
seeded firmware faults give the right row, and bad artifacts give clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from harness.board.boardfile import emulated_spec, parse_board
from harness.oracle import Artifacts, OracleError, Tolerance, check_run
from harness.oracle.loop import _Flow, _rewrite_acks
from harness.report import write_report
from harness.runner import check_scenario, run_scenario
from harness.scenario import builtin_scenarios, load_scenario
from models.config import DEFAULT_CONFIG
from models.wire import ACK, ip4

from .pcap_edit import board_tcp, edit_board_segment

BUILTINS = list(builtin_scenarios())   # every one that ships: each must pass on the healthy image


def seeded(**image_over):
    """An emulated board declared as the default firmware, its image built from another."""
    return parse_board({"kind": "emulated", "image": {**DEFAULT_CONFIG, **image_over}}, "<seeded fault>")


@pytest.fixture(scope="module")
def healthy_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("healthy")
    spec = emulated_spec()
    runs = {}
    for name in BUILTINS:
        run = run_scenario(spec, load_scenario(name), out / name, log=lambda m: None)
        runs[name] = (run, check_scenario(spec, run, Tolerance()))
    return out, runs


@pytest.mark.board
@pytest.mark.parametrize("name", BUILTINS)
def test_healthy_board_matches_the_model(healthy_runs, name):
    run, verdict = healthy_runs[1][name]
    assert verdict.predicted > 0 and verdict.observed > 0
    assert verdict.rows == [], json.dumps(verdict.rows, indent=1, default=int)


@pytest.mark.board
def test_report_html_lists_every_scenario_with_its_plot(healthy_runs):
    out, runs = healthy_runs
    paths = write_report(out, [v for _, v in runs.values()], {"board": "emulated"})

    class Rows(HTMLParser):
        scenarios, images = [], []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "tr" and a.get("class") == "scenario":
                self.scenarios.append(None)
            if tag == "img":
                self.images.append(a["src"])

    p = Rows()
    p.feed(paths["html"].read_text())
    assert len(p.scenarios) == len(BUILTINS)
    assert sorted(p.images) == sorted(f"{n}.timeline.png" for n in BUILTINS)
    assert all((out / img).read_bytes()[:4] == b"\x89PNG" for img in p.images)


@pytest.mark.board
def test_seeded_mtu_fault_is_a_field_mismatch_on_the_synack_mss(tmp_path):
    spec = seeded(interface={**DEFAULT_CONFIG["interface"], "mtu": 1400})
    v = check_scenario(spec, run_scenario(spec, load_scenario("handshake"), tmp_path, log=lambda m: None),
                       Tolerance())
    mss = [r for r in v.rows if r["kind"] == "FIELD_MISMATCH" and r["field"] == "tcp_mss"]
    assert mss and all(r["stream_name"] == "TCP_SYNACK" for r in mss)
    assert {(r["pred_value"], r["obs_value"]) for r in mss} == {(1460, 1360)}


@pytest.mark.board
def test_seeded_closed_http_service_is_a_missing_synack_and_an_extra_rst(tmp_path):
    spec = seeded(services={"ssh": {"port": 22}, "http": {"enabled": False}})
    v = check_scenario(spec, run_scenario(spec, load_scenario("handshake"), tmp_path, log=lambda m: None),
                       Tolerance())
    kinds = {(r["kind"], r["stream_name"]) for r in v.rows}
    # The model's SYN-ACK goes unanswered, so its retransmission is missing too.
    assert kinds == {("MISSING", "TCP_SYNACK"), ("EXTRA", "TCP_RST")}
    extra = [r for r in v.rows if r["kind"] == "EXTRA"]
    assert len(extra) == 1 and extra[0]["frame"] is not None


@pytest.mark.board
def test_compare_command_on_a_runs_artifacts_gives_the_same_verdict(healthy_runs, tmp_path):
    run, verdict = healthy_runs[1]["closed-port"]
    d = run.out_dir
    out = subprocess.run([sys.executable, "-m", "harness", "compare", "--pcap", str(d / "capture.pcap"),
                          "--console", str(d / "console.log"), "--host-events", str(d / "host-events.jsonl"),
                          "--qmp", str(d / "qmp.jsonl"), "--capture-clock", "qemu-filter-dump",
                          "--scenario", "closed-port", "--start-wall-ns", str(run.start_wall_ns),
                          "--end-wall-ns", str(run.end_wall_ns), "--out", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["scenarios"][0]["predicted"] == verdict.predicted


def test_truncated_capture_is_an_error_naming_the_file_and_offset(tmp_path):
    from harness.ingest.pcapwrite import write_pcap

    pcap = tmp_path / "capture.pcap"
    write_pcap(pcap, [(1_000_000_000, b"\xff" * 60)])
    pcap.write_bytes(pcap.read_bytes()[:30])   # a record header cut short: no frame at all
    (tmp_path / "console.log").write_text("1.000000 [    0.000000] Linux version 6.1\n")
    (tmp_path / "host-events.jsonl").write_text("")
    art = Artifacts([pcap], tmp_path / "console.log", tmp_path / "host-events.jsonl")
    v = check_run(art, emulated_spec().firmware, 0, 10**9)
    assert not v.ok and f"damaged capture: {pcap}: truncated record at byte offset 24" in v.error


def test_missing_artifact_is_named(tmp_path):
    art = Artifacts([tmp_path / "nope.pcap"], tmp_path / "console.log", tmp_path / "host-events.jsonl")
    with pytest.raises(OracleError, match="nope.pcap: missing"):
        check_run(art, emulated_spec().firmware, 0, 1)


def test_peer_acks_move_into_the_models_sequence_space():
    from models.wire import ACK, IPPROTO_TCP, EthernetRepr, Ipv4Repr, TcpRepr

    tcp = TcpRepr(40000, 22, 5000, 1_000_001, ACK, 65535, ((8, (77, 900)),) and ((1, None), (1, None), (8, (77, 900))))
    seg = tcp.emit(b"", 0x0A000202, 0x0A00020F)
    frame = EthernetRepr(b"\x52\x54\x00\x12\x34\x56", b"\x52\x55\x0a\x00\x02\x02", 0x0800).emit(
        Ipv4Repr(0x0A000202, 0x0A00020F, IPPROTO_TCP, len(seg)).emit(seg))
    out = _rewrite_acks(frame, _Flow(obs_isn=1_000_000, model_isn=42, obs_ts=800, model_ts=100))
    _, payload = EthernetRepr.parse(out)
    ip, seg2 = Ipv4Repr.parse(payload)            # checksums verified
    moved, _ = TcpRepr.parse(seg2, ip.src, ip.dst)
    assert moved.ack == 43 and moved.timestamp == (77, 200) and moved.seq == 5000


@pytest.mark.board
def test_seeded_tcp_timestamps_off_is_a_field_mismatch_on_the_boards_own_syn(tmp_path):
    spec = seeded(sysctls={"net.ipv4.tcp_timestamps": 0})
    v = check_scenario(spec, run_scenario(spec, load_scenario("board-connect-flap"), tmp_path, log=lambda m: None),
                       Tolerance())
    syn = [r for r in v.rows if r["stream_name"] == "TCP_SYN"]
    assert syn and all(r["kind"] == "FIELD_MISMATCH" for r in syn)
    assert {"tcp_timestamps", "tcp_opt_order"} <= {r["field"] for r in syn}
    ts = next(r for r in syn if r["field"] == "tcp_timestamps")
    assert (ts["pred_value"], ts["obs_value"]) == (1, 0)


@pytest.mark.board
def test_seeded_tcp_syn_retries_2_is_a_missing_third_retransmission(tmp_path):
    spec = seeded(sysctls={"net.ipv4.tcp_syn_retries": 2})
    v = check_scenario(spec, run_scenario(spec, load_scenario("syn-retransmit"), tmp_path, log=lambda m: None),
                       Tolerance())
    assert [(r["kind"], r["stream_name"]) for r in v.rows] == [("MISSING", "TCP_SYN")]
    assert v.rows[0]["pred_ns"] - v.start_ns > 6_000_000_000   # the one due 7 s after the first


@pytest.mark.board
def test_seeded_tcp_synack_retries_2_is_missing_the_synacks_due_at_7_and_15_s(tmp_path):
    """The harness's silent peer sends a SYN and never answers. Linux 6.1's
    reqsk_timer_handler resends the SYN-ACK while num_timeout < tcp_synack_retries, so an
    image with 2 resends it at 1 and 3 s and drops the request at 7 s (no RST): the
    model's (declared 5) SYN-ACKs at 7 and 15 s are missing, and nothing else differs."""
    spec = seeded(sysctls={"net.ipv4.tcp_synack_retries": 2})
    v = check_scenario(spec, run_scenario(spec, load_scenario("synack-retransmit"), tmp_path, log=lambda m: None),
                       Tolerance())
    assert [(r["kind"], r["stream_name"]) for r in v.rows] == [("MISSING", "TCP_SYNACK")] * 2, \
        json.dumps(v.rows, indent=1, default=int)
    syn = [t for kind, t in v.series["observed"] if kind == "TCP_SYNACK"]
    assert len(syn) == 3   # the first SYN-ACK and its resends at 1 and 3 s
    due = sorted(round((r["pred_ns"] - syn[0]) / 1e9) for r in v.rows)
    assert due == [7, 15]


BOOT_WATCHDOG = {"daemon": True, "timeout": 8, "period": 1}
BOOT_WATCHDOG_STARVE = """name: boot-watchdog-starve
description: The watchdog daemon the firmware starts at boot is killed with SIGKILL.
duration: DURATIONs
steps:
  - {at: 0s, do: watchdog_starve}
"""


def boot_watchdog_board(image_timeout: int):
    """Declared: the default firmware with a boot-time watchdog daemon (-T 8 -t 1); the
    image is built with `image_timeout` instead."""
    declared = {**DEFAULT_CONFIG, "watchdog": BOOT_WATCHDOG}
    image = {**DEFAULT_CONFIG, "watchdog": {**BOOT_WATCHDOG, "timeout": image_timeout}}
    return parse_board({"kind": "emulated", "firmware": declared, "image": image}, "<boot watchdog>")


def run_boot_watchdog_starve(tmp_path, image_timeout: int, duration: int = 12):
    sc = tmp_path / "boot-watchdog-starve.yaml"
    sc.write_text(BOOT_WATCHDOG_STARVE.replace("DURATION", str(duration)))
    spec = boot_watchdog_board(image_timeout)
    run = run_scenario(spec, load_scenario(sc), tmp_path / "run", log=lambda m: None)
    return run, check_scenario(spec, run, Tolerance())


@pytest.mark.board
def test_boot_time_watchdog_as_declared_matches_the_model(tmp_path):
    """The healthy control: the image's boot daemon runs -T 8 as declared; the kill's
    "did not stop" line and the reset 8 s after it are where the model puts them."""
    run, v = run_boot_watchdog_starve(tmp_path, 8)
    assert v.rows == [], json.dumps(v.rows, indent=1, default=int)
    resets = [t for kind, t in v.series["observed"] if kind == "QMP_RESET"]
    assert len(resets) == 1


@pytest.mark.board
def test_seeded_boot_watchdog_timeout_5_is_a_missing_and_an_extra_reset(tmp_path):
    """Declared -T 8, image -T 5; the boot-time daemon is killed with SIGKILL at 0 s.

    Linux 6.1's watchdog_release (drivers/watchdog/watchdog_dev.c) finds no magic close,
    prints "watchdog did not stop!" and pings the WDT once more, so the reset comes at the
    kill + the image's timeout (5 s), not its last kick + timeout. The line matches the
    model. The reset is 3 s before the model's (kill + 8 s): 2.25 s beyond the reset
    tolerance (750 ms), more than the comparison core pairs (DEFAULT_MAX_SHIFT_NS, 1 s),
    so it is not EARLY but a MISSING QMP_RESET (the model's, at 8 s) and an EXTRA one (the
    board's, at 5 s). The oracle restarts the model where the board reset (it predicts its
    own reset first), so the reboot that follows is compared with a rebooted model: its
    Link is Up and the rest match. Nothing else."""
    # 20 s: the reset at 5 s, then a whole reboot to Link is Up (up to 7 s on a loaded
    # machine, bench/latency.py) with margin, so the reboot is inside the window.
    run, v = run_boot_watchdog_starve(tmp_path, 5, duration=20)
    rows = sorted((r["kind"], r["stream_name"]) for r in v.rows)
    pred, seen = v.series["predicted"], v.series["observed"]
    (kill,) = [t for kind, t, _, _ in pred if kind == "WATCHDOG_DID_NOT_STOP"]
    (p_reset,) = [t for kind, t, _, _ in pred if kind == "QMP_RESET"]
    (o_reset,) = [t for kind, t in seen if kind == "QMP_RESET"]
    assert rows == [("EXTRA", "QMP_RESET"), ("MISSING", "QMP_RESET")], json.dumps(v.rows, indent=1, default=int)
    assert any(kind == "LINK_UP" and t > o_reset for kind, t in seen)   # the reboot was compared, and matched
    assert abs(p_reset - kill - 8_000_000_000) < 1_000_000
    assert abs(o_reset - kill - 5_000_000_000) < Tolerance().reset_extra_ns
    missing = next(r for r in v.rows if r["kind"] == "MISSING" and r["stream_name"] == "QMP_RESET")
    extra = next(r for r in v.rows if r["kind"] == "EXTRA" and r["stream_name"] == "QMP_RESET")
    assert (missing["pred_ns"], extra["obs_ns"]) == (p_reset, o_reset)


def run_data_retransmit(spec, tmp_path):
    return check_scenario(spec, run_scenario(spec, load_scenario("data-retransmit"), tmp_path, log=lambda m: None),
                          Tolerance())


def data_times(v, side: str) -> list[int]:
    return [e[1] for e in v.series[side] if e[0] == "TCP_DATA"]


@pytest.mark.board
def test_data_retransmissions_to_a_stalled_peer_match_the_model(healthy_runs):
    """The board's one write to a peer that never acknowledges: the first transmission (the
    write, learnt from the capture), a tail loss probe, the RTO and its doublings, each
    with its flags, length, relative seq and ack, in the window Linux 6.1's timers allow."""
    _, v = healthy_runs[1]["data-retransmit"]
    assert v.rows == [], json.dumps(v.rows, indent=1, default=int)
    seen, pred = data_times(v, "observed"), data_times(v, "predicted")
    assert len(seen) == len(pred) >= 6
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    # TLP and the RTO after it both about 220 ms (RTO = rtt + 200 ms, rounded up to
    # jiffies); then the RTO doubles
    assert all(200_000_000 < g < 300_000_000 for g in gaps[:2]), gaps
    assert all(1.7 < b / a < 2.3 for a, b in zip(gaps[1:], gaps[2:], strict=False)), gaps


@pytest.mark.board
def test_seeded_tcp_early_retrans_0_is_a_data_retransmission_schedule_without_the_probe(tmp_path):
    """An image with net.ipv4.tcp_early_retrans 0 sends no tail loss probe
    (tcp_schedule_loss_probe): its first retransmission is the RTO, and every later one
    comes one RTO later than the model's (declared 3) schedule. Only data rows differ."""
    v = run_data_retransmit(seeded(sysctls={"net.ipv4.tcp_early_retrans": 0}), tmp_path)
    assert v.rows and {r["stream_name"] for r in v.rows} == {"TCP_DATA"}, json.dumps(v.rows, indent=1, default=int)
    seen, pred = data_times(v, "observed"), data_times(v, "predicted")
    assert len(seen) < len(pred)
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert 1.7 < gaps[1] / gaps[0] < 2.3, gaps   # no probe: the second retransmission is the backed-off RTO


def test_stalled_peer_answers_syns_with_a_linux_synack_and_acknowledges_nothing():
    from harness.board.wire import StalledPeer
    from models.wire import ACK, ETH_P_IP, IPPROTO_TCP, PSH, SYN, EthernetRepr, Ipv4Repr, TcpRepr, ip4, linux_options

    class Wire:
        def __init__(self):
            self.sent, self.receivers = [], []

        def on_frame(self, cb):
            self.receivers.append(cb)

        def inject(self, frame):
            self.sent.append(frame)
            return True

    board, peer = ip4("10.0.2.15"), ip4("10.0.2.2")

    def from_board(tcp, data=b""):
        seg = tcp.emit(data, board, peer)
        return EthernetRepr(bytes.fromhex("52550a000202"), bytes.fromhex("525400123456"),
                            ETH_P_IP).emit(Ipv4Repr(board, peer, IPPROTO_TCP, len(seg)).emit(seg))

    def parsed(frame):
        eth, payload = EthernetRepr.parse(frame)
        ip, seg = Ipv4Repr.parse(payload)           # checksums verified
        return eth, TcpRepr.parse(seg, ip.src, ip.dst)[0]

    wire = Wire()
    StalledPeer(wire, "10.0.2.2")
    syn = TcpRepr(41864, 7, 5000, 0, SYN, 64240, linux_options(mss=1460, ts=(777, 0), sack_perm=True, wscale=6))
    for cb in wire.receivers:
        cb(from_board(syn))
        cb(from_board(syn))                                                   # retransmitted SYN
        cb(from_board(TcpRepr(41864, 7, 5001, 1, ACK, 1004, linux_options(ts=(800, 1)))))
        cb(from_board(TcpRepr(41864, 7, 5001, 1, ACK | PSH, 1004, linux_options(ts=(801, 1))), b"data"))
    assert len(wire.sent) == 2                       # one SYN-ACK per SYN, nothing for the rest
    (eth, a), (_, b) = (parsed(f) for f in wire.sent)
    assert eth.dst == bytes.fromhex("525400123456") and eth.src == bytes.fromhex("52550a000202")
    assert (a.src_port, a.dst_port, a.flags, a.ack, a.window) == (7, 41864, SYN | ACK, 5001, 65160)
    assert (a.mss, a.sack_permitted, a.wscale, a.timestamp[1]) == (1460, True, 7, 777)
    assert b.seq == a.seq
    wire.sent.clear()
    for cb in wire.receivers:
        cb(from_board(TcpRepr(41865, 7, 9000, 0, SYN, 64240, linux_options(mss=1460))))
    (_, c), = (parsed(f) for f in wire.sent)
    assert (c.mss, c.sack_permitted, c.wscale, c.timestamp) == (1460, False, None, None)


def test_every_console_line_the_model_prints_is_one_ingest_recognises():
    """The model's strings (read off Linux 6.1) and ingest's table must agree."""
    from harness.ingest.console import _classify
    from harness.ingest.events import EventKind
    from models.board import Board, BootTiming
    from models.clock import Window, sec

    board = Board(emulated_spec().firmware, boot=BootTiming(Window(0, 0), Window(0, 0)), phy_phase=0)
    lines = [p.detail["text"] for p in board.on_timer(0) if p.kind == "console"]
    lines += [p.detail["text"] for p in board.handle(sec(1), {"kind": "link", "up": False}) if p.kind == "console"]
    lines += [p.detail["text"] for p in board.phy_poll_observed(sec(2)) if p.kind == "console"]
    board.handle(sec(3), {"kind": "watchdog_daemon_start", "timeout": 5, "period": 1})
    lines += [p.detail["text"] for p in board.handle(sec(4), {"kind": "watchdog_sigkill"}) if p.kind == "console"]
    kinds = {EventKind(_classify(line)[0]) for line in lines}
    assert {EventKind.LINK_UP, EventKind.LINK_DOWN, EventKind.WATCHDOG_DID_NOT_STOP} <= kinds, lines


@pytest.mark.board
def test_seeded_arp_evict_nocarrier_off_is_a_missing_arp_request_after_the_flap(tmp_path):
    """Firmware that keeps its neighbours across carrier loss (conf.all.arp_evict_nocarrier
    0, as some NC-SI setups do) answers the handshake after the flap from its stale entry;
    Linux 6.1's default flushes the table and resolves the peer first."""
    spec = seeded(sysctls={"net.ipv4.conf.all.arp_evict_nocarrier": 0})
    v = check_scenario(spec, run_scenario(spec, load_scenario("link-flap"), tmp_path, log=lambda m: None),
                       Tolerance())
    kinds = [(r["kind"], r["stream_name"]) for r in v.rows]
    assert kinds[0] == ("MISSING", "ARP_REQUEST") and set(kinds) == {("MISSING", "ARP_REQUEST"),
                                                                    ("EXTRA", "TCP_SYNACK")}, kinds
    after_up = 3_500_000_000
    assert all(r["pred_ns"] - v.start_ns > after_up for r in v.rows if r["kind"] == "MISSING")
    assert all(r["obs_ns"] - v.start_ns > after_up for r in v.rows if r["kind"] == "EXTRA")


def test_an_unpredicted_reset_restarts_the_model_after_it_predicts_its_own():
    from harness.oracle.loop import _resync_at_reset
    from models.board import Board, BootTiming
    from models.clock import Window, sec

    def armed_board():
        b = Board(emulated_spec().firmware, boot=BootTiming(Window(0, 0), Window(0, 0)), phy_phase=0)
        b.on_timer(0)
        b.handle(sec(1), {"kind": "watchdog_daemon_start", "timeout": 8, "period": 1})
        b.handle(sec(2), {"kind": "watchdog_sigkill"})      # the model resets at 2 + 8 s
        return b

    b = armed_board()
    own = _resync_at_reset(b, sec(7), sec(60), sec(1))     # the board reset at 7 s
    assert [(p.kind, p.t) for p in own] == [("reset", sec(10))]
    assert b.resets == [sec(7)] and b.wdt.expires_at is None and not b.up   # rebooting from 7 s
    b = armed_board()
    assert _resync_at_reset(b, sec(9) + sec(1) // 2, sec(60), sec(1)) == [] and b.resets == []   # near: compared


# -- the board never grades itself: healthy runs, mutated --------------------------------------
def mutated(healthy_runs, name: str, tmp_path, *, records=None, console_extra=None, declared=None, expect=(),
            cut_capture: int | None = None):
    """Check a copy of a healthy run whose records were changed: `records(list of dicts) ->
    list of dicts` rewrites host-events.jsonl; `console_extra` lists (seconds after the
    scenario start, text) lines to add to the console log; `declared` overrides the
    firmware the board is declared to run."""
    import dataclasses
    import shutil

    run, _ = healthy_runs[1][name]
    d = tmp_path / name
    shutil.copytree(run.out_dir, d)
    if records is not None:
        recs = [json.loads(line) for line in (d / "host-events.jsonl").read_text().splitlines() if line.strip()]
        (d / "host-events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(recs)))
    if console_extra:
        # In time order, as the console driver writes them (a stamp going back is damage).
        log = d / "console.log"
        lines = log.read_bytes().splitlines(keepends=True)
        for at_s, text in console_extra:
            wall = (run.start_wall_ns + int(at_s * 1e9)) / 1e9
            lines.append(f"{wall:.6f} {text}\n".encode())
        log.write_bytes(b"".join(sorted(lines, key=lambda ln: float(ln.split(b" ", 1)[0]))))
    if cut_capture is not None:
        cap = d / "capture.pcap"
        cap.write_bytes(cap.read_bytes()[:cut_capture])
    spec = emulated_spec() if declared is None else parse_board({"kind": "emulated", "firmware": declared}, "<x>")
    if expect:
        run = dataclasses.replace(run, scenario=dataclasses.replace(run.scenario, expect=tuple(expect)))
    return check_scenario(spec, dataclasses.replace(run, out_dir=d), Tolerance())


@pytest.mark.board
def test_a_first_rtt_sample_below_the_handshake_acks_tsval_is_tried_and_kept_only_if_the_board_matches(
        healthy_runs, tmp_path):
    """The handshake ACK is stamped after the RTT sample (tcp_clean_rtx_queue, then
    tcp_send_ack), and under load the guest's clock moves between the two: a board whose
    ACK's TSval says 30 ms more than it measured (an RTO three jiffies shorter than the
    TSvals give, so its last doubling is about 0.5 s early) still matches, through a
    first_rtt case below the TSvals' value. No case is kept unless the board then matches completely: the
    same run with its last retransmission 1 s early keeps the TSvals' case and its rows."""
    import dataclasses
    import shutil

    from harness.oracle.observe import Artifacts

    board_ip = ip4(str(emulated_spec().firmware.interface.address.ip))
    run, healthy = healthy_runs[1]["data-retransmit"]
    rtt = next(x for x in healthy.learnt if x.name == "first_rtt").value
    for early, sub in ((False, "later-ack"), (True, "later-ack-early-data")):
        d = tmp_path / sub
        shutil.copytree(run.out_dir, d)
        (cap,) = Artifacts.in_dir(d, "host-wall").captures
        # the board's handshake ACK is its first bare ACK; its program writes 100 ms later
        # than it did (else its first data bounds the sample: connect() returned before it)
        edit_board_segment(cap, board_ip, lambda segs: next(
            i for i, (_, _, tcp, payload) in enumerate(segs) if tcp.flags == ACK and not payload), tsval_delta=30)
        for k in range(sum(1 for s in board_tcp(cap, board_ip) if s[3])):
            edit_board_segment(cap, board_ip, lambda segs, k=k: [i for i, s in enumerate(segs) if s[3]][k],
                               shift_ms=100)
        if early:
            edit_board_segment(cap, board_ip, lambda segs: max(i for i, s in enumerate(segs) if s[3]),
                               shift_ms=-1000)
        v = check_scenario(emulated_spec(), dataclasses.replace(run, out_dir=d), Tolerance())
        learnt = next(x for x in v.learnt if x.name == "first_rtt")
        if not early:
            assert v.ok, json.dumps(v.rows, indent=1, default=int)
            assert learnt.value < rtt + 30_000_000 and any("first RTT sample taken" in n for n in v.notes), v.notes
            # the case is bounded by its span: the TSvals' ms + 1 (or the first data), not 100 ms
            assert learnt.lo <= learnt.value <= learnt.hi < 100_000_000, learnt
        else:
            assert ("EARLY", "TCP_DATA") in kinds_of(v), v.rows
            assert any("first_rtt cases tried" in n for n in v.notes) and learnt.value >= rtt + 29_000_000, v.notes


def kinds_of(v) -> set[tuple[str, str]]:
    return {(r["kind"], r["stream_name"]) for r in v.rows}


@pytest.mark.board
def test_a_reboot_nobody_asked_for_is_extra(healthy_runs, tmp_path):
    """The model's reboot input is the harness's `reboot` record, never the board's
    Restarting line: without the record, the line and the reset are the board's own."""
    v = mutated(healthy_runs, "reboot", tmp_path, records=lambda rs: [r for r in rs if r["event"] != "reboot"])
    assert {("EXTRA", "RESTARTING"), ("EXTRA", "QMP_RESET")} <= kinds_of(v), json.dumps(v.rows, default=int)
    assert not v.ok


@pytest.mark.board
def test_a_reboot_asked_for_and_not_done_is_missing(healthy_runs, tmp_path):
    run, _ = healthy_runs[1]["handshake"]

    def ask(rs):
        return [*rs, {"event": "reboot", "host_monotonic_ns": 0, "host_wall_ns": run.start_wall_ns + 500_000_000}]

    v = mutated(healthy_runs, "handshake", tmp_path, records=ask)
    assert {("MISSING", "RESTARTING"), ("MISSING", "QMP_RESET")} <= kinds_of(v), json.dumps(v.rows, default=int)


@pytest.mark.board
@pytest.mark.parametrize("line", ["Kernel panic - not syncing: Fatal exception in interrupt",
                                  "ftgmac100 1e660000.ethernet eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 0 "
                                  "timed out 5120 ms"])
def test_a_kernel_fault_line_is_extra(healthy_runs, tmp_path, line):
    v = mutated(healthy_runs, "handshake", tmp_path, console_extra=[(1.5, f"[   99.000000] {line}")])
    assert v.error is None, v.error
    assert any(r["kind"] == "EXTRA" and r["stream_name"] in ("KERNEL_PANIC", "NETDEV_WATCHDOG") for r in v.rows), \
        json.dumps(v.rows, default=int)


@pytest.mark.board
def test_a_board_connect_whose_syn_never_comes_is_missing(healthy_runs, tmp_path):
    run, _ = healthy_runs[1]["board-connect-flap"]

    def ask_again(rs):
        late = run.end_wall_ns - 1_500_000_000
        return [*rs, {"event": "board_connect", "host_monotonic_ns": 0, "host_wall_ns": late, "addr": "10.0.2.2",
                      "port": 9}]

    v = mutated(healthy_runs, "board-connect-flap", tmp_path, records=ask_again)
    assert any(r["kind"] == "MISSING" and r["stream_name"] in ("TCP_SYN", "ARP_REQUEST") for r in v.rows), \
        json.dumps(v.rows, default=int)


@pytest.mark.board
def test_a_syn_long_after_the_request_is_outside_the_app_latency_bound(healthy_runs, tmp_path):
    """The request moved 3 s earlier (past the 2 s bound, still after the board's boot: a
    request from before the boot is no input at all, and its SYN is EXTRA)."""
    def earlier(rs):
        return [{**r, "host_wall_ns": r["host_wall_ns"] - 3_000_000_000} if r["event"] == "board_connect" else r
                for r in rs]

    v = mutated(healthy_runs, "board-connect-flap", tmp_path, records=earlier)
    late = [x for x in v.learnt if x.name == "app_latency" and not x.inside]
    assert not v.ok
    assert late and any(r["kind"] == "LATE" and r["field"] == "learnt app_latency" for r in v.rows)


@pytest.mark.board
@pytest.mark.parametrize("port_range", ["1024 2048", "32769 60999"])
def test_a_source_port_outside_ip_local_port_range_or_its_parity_is_a_field_mismatch(healthy_runs, tmp_path,
                                                                                      port_range):
    """__inet_hash_connect draws from the range, first over ports of its low end's parity:
    the healthy board's port fits 32768-60999, so it does not fit either declared range."""
    declared = {**DEFAULT_CONFIG, "sysctls": {**DEFAULT_CONFIG.get("sysctls", {}),
                                              "net.ipv4.ip_local_port_range": port_range}}
    v = mutated(healthy_runs, "board-connect-flap", tmp_path, declared=declared)
    assert any(r["kind"] == "FIELD_MISMATCH" and r["field"] == "tcp_sport" for r in v.rows), \
        json.dumps(v.rows, default=int)
    assert [x for x in v.learnt if x.name == "ephemeral_port" and not x.inside]


@pytest.mark.board
def test_bytes_the_application_was_not_asked_to_write_are_a_payload_mismatch(healthy_runs, tmp_path):
    def other_bytes(rs):
        return [{**r, "data": r["data"][::-1] + "!"} if r["event"] == "board_connect" else r for r in rs]

    v = mutated(healthy_runs, "data-retransmit", tmp_path, records=other_bytes)
    assert any(r["kind"] == "FIELD_MISMATCH" and r["field"] == "payload" for r in v.rows), \
        json.dumps(v.rows, default=int)


@pytest.mark.board
def test_a_model_refusing_an_input_is_an_error_not_a_pass(healthy_runs, tmp_path):
    """A watchdog_starve record with no daemon running: the model cannot take it."""
    run, _ = healthy_runs[1]["handshake"]
    v = mutated(healthy_runs, "handshake", tmp_path, records=lambda rs: [
        *rs, {"event": "watchdog_starve", "host_monotonic_ns": 0, "host_wall_ns": run.start_wall_ns + 10**8}])
    assert not v.ok and v.error and "no watchdog daemon" in v.error
    saved = json.loads((tmp_path / "handshake" / "verdict.json").read_text())
    assert saved["ok"] is False and "no watchdog daemon" in saved["error"]


@pytest.mark.board
def test_a_damaged_capture_is_an_error(healthy_runs, tmp_path):
    run, _ = healthy_runs[1]["handshake"]
    size = (run.out_dir / "capture.pcap").stat().st_size
    v = mutated(healthy_runs, "handshake", tmp_path, cut_capture=size - 7)
    assert not v.ok and "damaged capture" in v.error


@pytest.mark.board
def test_a_scenario_that_provoked_nothing_it_must_is_an_error(healthy_runs, tmp_path):
    from harness.ingest.events import EventKind

    v = mutated(healthy_runs, "handshake", tmp_path, expect=[EventKind.LINK_DOWN])
    assert not v.ok and "LINK_DOWN" in v.error


@pytest.mark.board
def test_a_window_with_nothing_in_it_is_an_error(healthy_runs, tmp_path):
    run, _ = healthy_runs[1]["handshake"]
    art = Artifacts.in_dir(run.out_dir, "qemu-filter-dump")
    v = check_run(art, emulated_spec().firmware, run.start_wall_ns - 10**9, run.start_wall_ns - 10**9 + 10**6,
                  "handshake", out_dir=tmp_path)
    assert (v.predicted, v.observed) == (0, 0) and not v.ok and "nothing was compared" in v.error


@pytest.mark.board
def test_every_healthy_verdict_lists_what_it_learnt_inside_its_bounds(healthy_runs):
    for name, (run, _) in healthy_runs[1].items():
        saved = json.loads((run.out_dir / "verdict.json").read_text())
        assert saved["learnt"] and all(x["inside"] for x in saved["learnt"]), (name, saved["learnt"])
        assert "boot_to_ifup" in {x["name"] for x in saved["learnt"]}


def test_a_learnt_value_outside_its_bound_is_a_row_and_not_adopted():
    from harness.oracle import Learnt
    from harness.oracle.inputs import ModelInputs

    mi = ModelInputs()
    assert mi.learn(Learnt("app_latency", 10, 0, 100, "x", 5), "TIME", "TCP_SYN")
    assert not mi.learn(Learnt("app_latency", 150, 0, 100, "x", 7), "TIME", "TCP_SYN")
    assert not mi.learn(Learnt("ephemeral_port", 1500, 32768, 60999, "x", 9), "FIELD_MISMATCH", "TCP_SYN",
                        "tcp_sport")
    assert [(r["kind"], r["field"], r["obs_value"]) for r in mi.rows] == [
        ("LATE", "learnt app_latency", 150), ("FIELD_MISMATCH", "tcp_sport", 1500)]
    with pytest.raises(KeyError):
        Learnt("not-in-the-table", 0, 0, 0)


def test_linkwatch_cases_are_kept_only_when_the_board_then_matches_completely(tmp_path):
    """Each carrier loss is judged on its own; a later case stands only if it leaves no
    row at all, otherwise the immediate case's rows are the verdict (never 'fewest rows')."""
    from harness.oracle.judge import Verdict, _linkwatch_cases
    from harness.oracle.loop import ModelRun

    def verdict(rows):
        return Verdict("x", [{"kind": "MISSING", "expected_ns": t, "obs_ns": None, "pred_ns": t} for t in rows],
                       1, 1, {}, 0, 100)

    base_run = ModelRun(resolutions=[12, 55], carrier_losses=[10, 50])
    base = verdict([20, 60, 61])

    def attempt(delays):
        (tmp_path / "predicted-trial.pcap").write_bytes(b"")
        # the case at loss 0 (+3) clears its rows; no case clears loss 1's
        rows = [t for t in (20,) if delays.get(0) != 3] + [60, 61][: 2 - (1 if delays.get(1) == 6 else 0)]
        return verdict(rows), base_run

    v = _linkwatch_cases(base, base_run, attempt, 100, tmp_path, tmp_path / "predicted-trial.pcap",
                         tmp_path / "predicted.pcap")
    assert v is base and len(v.rows) == 3 and "none matched completely" in v.notes[-1]

    def attempt_all(delays):
        (tmp_path / "predicted-trial.pcap").write_bytes(b"")
        return verdict([t for t in (20,) if delays.get(0) != 3] + [t for t in (60, 61) if delays.get(1) != 6]), \
            base_run

    v = _linkwatch_cases(verdict([20, 60, 61]), base_run, attempt_all, 100, tmp_path,
                         tmp_path / "predicted-trial.pcap", tmp_path / "predicted.pcap")
    assert v.rows == [] and [(x.name, x.value) for x in v.learnt] == [("linkwatch_run", 3), ("linkwatch_run", 6)]


def test_readme_carries_the_learnt_value_and_constant_tables():
    from pathlib import Path

    from harness.oracle.bounds import markdown_tables

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for block in markdown_tables().strip().split("\n\n"):
        assert block.strip() in readme, "README.md is missing or has a stale table:\n" + block


def test_the_constant_table_agrees_with_the_code_that_uses_each_constant():
    from harness.compare.core import DEFAULT_MAX_SHIFT_NS
    from harness.oracle.bounds import CONSTANTS
    from models.ftgmac100 import CARRIER_RACE_NS

    assert CONSTANTS["carrier_race"].value_ns == CARRIER_RACE_NS
    assert CONSTANTS["reset_resync"].value_ns == DEFAULT_MAX_SHIFT_NS
    t = Tolerance()
    assert (t.frame_ns, t.console_ns, t.reset_extra_ns, t.app_latency_ns) == tuple(
        CONSTANTS[k].value_ns for k in ("frame_tolerance", "console_tolerance", "reset_tolerance", "app_latency"))


@pytest.mark.board
def test_a_synack_tos_other_than_the_declared_services_is_a_field_mismatch(healthy_runs, tmp_path):
    """The board's dropbear sets IP_TOS 0x48 on its listener (its SYN-ACKs carry it);
    declared as a service that sets none, the ssh SYN-ACK's TOS differs."""
    declared = {**DEFAULT_CONFIG, "services": {"ssh": {"port": 22, "ip_tos": 0}, "http": {"port": 80}}}
    v = mutated(healthy_runs, "handshake", tmp_path, declared=declared)
    tos = [r for r in v.rows if r["field"] == "ip_tos"]
    assert tos and {(r["stream_name"], r["pred_value"], r["obs_value"]) for r in tos} == {("TCP_SYNACK", 0, 0x48)}


@pytest.mark.board
def test_compare_exits_2_with_the_reason_when_the_model_refuses_an_input(healthy_runs, tmp_path):
    run, _ = healthy_runs[1]["closed-port"]
    d = run.out_dir
    host = tmp_path / "host-events.jsonl"
    host.write_text((d / "host-events.jsonl").read_text() + json.dumps(
        {"event": "watchdog_stop", "host_monotonic_ns": 0, "host_wall_ns": run.start_wall_ns + 10**8}) + "\n")
    out = subprocess.run([sys.executable, "-m", "harness", "compare", "--pcap", str(d / "capture.pcap"),
                          "--console", str(d / "console.log"), "--host-events", str(host),
                          "--qmp", str(d / "qmp.jsonl"), "--capture-clock", "qemu-filter-dump",
                          "--scenario", "closed-port", "--start-wall-ns", str(run.start_wall_ns),
                          "--end-wall-ns", str(run.end_wall_ns), "--out", str(tmp_path / "out"), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    report = json.loads(out.stdout)
    assert not report["ok"] and "no watchdog daemon" in report["scenarios"][0]["error"]


def test_a_retransmission_that_began_a_resolution_is_timed_by_its_arp_request(tmp_path):
    """A soak run of syn-retransmit-resume on the emulated board (tests/data/runs): after the
    link flap the board's RTO fired 78 ms late, inside its timer-wheel window; the
    neighbour had been flushed, so it broadcast a request, the peer answered within a ms
    and only then did the SYN leave, 3 ms after the request. The timer ran at the request:
    taking the SYN's time put the model's request after the peer's reply, which it then
    ignored, and predicted requests every second and no SYN after them (8 rows)."""
    import json as _json
    import shutil
    from pathlib import Path

    src = Path(__file__).parent / "data" / "runs" / "syn-retransmit-resume-late-rto"
    d = tmp_path / "run"
    shutil.copytree(src, d)
    window = _json.loads((d / "window.json").read_text())
    v = check_run(Artifacts.in_dir(d, "host-wall"), emulated_spec().firmware, window["start_ns"], window["end_ns"],
                  "syn-retransmit-resume", Tolerance(), d, expect=load_scenario("syn-retransmit-resume").expect)
    assert v.ok, (v.error, _json.dumps(v.rows, indent=1, default=int))
    assert [e[0] for e in v.series["observed"]].count("TCP_SYN") == \
        [e[0] for e in v.series["predicted"]].count("TCP_SYN") == 5
