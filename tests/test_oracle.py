"""The oracle loop end to end on the emulated board: healthy firmware gives no divergence,
seeded firmware faults give the right row, and bad artifacts give clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from harness.board.boardfile import emulated_spec, parse_board
from harness.oracle import Artifacts, OracleError, Tolerance, _Flow, _rewrite_acks, check_run
from harness.report import write_report
from harness.runner import check_scenario, run_scenario
from harness.scenario import load_scenario
from models.config import DEFAULT_CONFIG

BUILTINS = ["handshake", "closed-port", "link-flap", "watchdog-starve", "board-connect-flap", "syn-retransmit"]


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
    with pytest.raises(OracleError, match=rf"{pcap}: truncated record at byte offset 24"):
        check_run(art, emulated_spec().firmware, 0, 10**9)


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
    out = _rewrite_acks(frame, 34, _Flow(obs_isn=1_000_000, model_isn=42, obs_ts=800, model_ts=100))
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
