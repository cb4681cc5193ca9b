"""What an engineer sees at the command line: help, ssh, link, power, scenarios, predict,
progress and console text. Real processes; the emulated board where a board is needed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.board.console import SerialConsole
from harness.scenario import builtin_scenarios

BMC_HIL = [sys.executable, "-m", "harness"]
SUBCOMMANDS = ("setup", "image", "boot", "console", "ssh", "link", "power", "scenarios", "run", "compare",
               "predict", "flap", "nightly", "qmp", "pkt")


def run(*args, timeout=120, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([*BMC_HIL, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture
def model_board(tmp_path) -> str:
    path = tmp_path / "model.yaml"
    path.write_text("kind: model\n")
    return str(path)


# -- help ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_help_has_examples_and_exit_codes(sub):
    args = ("image", "build") if sub == "image" else (sub,)
    out = run(*args, "--help", timeout=30)
    assert out.returncode == 0 and "usage: bmc-hil" in out.stdout
    assert "examples:" in out.stdout and "exit codes" in out.stdout.lower(), out.stdout


def test_top_level_help_lists_exit_codes_without_backticks():
    out = run("--help", timeout=30).stdout
    assert "`" not in out
    assert all(f"  {code}  " in out for code in ("0", "1", "2", "130", "143"))
    assert all(sub in out for sub in ("power", "scenarios", "predict"))


def test_ssh_help_says_the_remote_status_is_passed_through_and_documents_timeout():
    out = run("ssh", "--help", timeout=30).stdout
    assert "ssh(1)" in out and "the remote command's own exit status" in out
    assert "--timeout SECONDS" in out and "connecting and running it" in out


def test_compare_help_explains_the_capture_clocks_and_qmp_help_its_commands():
    compare = run("compare", "--help", timeout=30).stdout
    assert "host-wall" in compare and "filter-dump" in compare and "how the capture is stamped" in compare
    qmp = run("qmp", "--help", timeout=30).stdout
    assert "set_link" in qmp and "human-monitor-command" in qmp and "query-commands" in qmp


# -- scenarios ----------------------------------------------------------------------------------
def test_scenarios_lists_every_builtin_with_tier_peer_and_duration():
    rows = json.loads(run("scenarios", "--json", timeout=60).stdout)
    assert [r["name"] for r in rows] == list(builtin_scenarios("all"))
    by_name = {r["name"]: r for r in rows}
    assert by_name["syn-retransmit"]["peer"] == "silent" and by_name["syn-retransmit"]["tier"] == "ci"
    assert by_name["syn-giveup"]["tier"] == "long"
    assert by_name["handshake"]["duration_s"] > 0 and by_name["handshake"]["summary"]
    text = run("scenarios", timeout=60).stdout
    assert all(name in text for name in builtin_scenarios("all"))


def test_scenarios_tier_selects_the_ci_or_long_ones():
    ci = [r["name"] for r in json.loads(run("scenarios", "--tier", "ci", "--json", timeout=60).stdout)]
    long = [r["name"] for r in json.loads(run("scenarios", "--tier", "long", "--json", timeout=60).stdout)]
    assert ci == list(builtin_scenarios("ci")) and long == list(builtin_scenarios("long"))
    assert "syn-giveup" in long and "syn-giveup" not in ci


# -- predict ------------------------------------------------------------------------------------
def _predict(*args) -> dict:
    out = run("predict", *args, "--json", timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _sent(pred: dict, prefix: str) -> list[dict]:
    return [r for r in pred["timeline"] if r["who"] == "board -> peer" and r["what"].startswith(prefix)]


def test_predict_syn_retransmit_shows_the_syn_again_1_3_and_7_s_after_the_first():
    pred = _predict("syn-retransmit")
    assert pred["peer"] == "silent" and "never TCP" in pred["peer_description"]
    syns = [r["t_s"] for r in _sent(pred, "tcp SYN ")]
    assert [round(t - syns[0], 1) for t in syns[1:]] == [1.0, 3.0, 7.0]
    # The silent peer's ARP answer is an input: one request, answered, then SYNs only.
    assert len(_sent(pred, "ARP request")) == 1
    assert any(r["who"] == "peer -> board" and r["what"].startswith("ARP reply 10.0.2.2") for r in pred["timeline"])
    assert all(r["checked"] for r in _sent(pred, "tcp SYN "))


def test_predict_text_states_the_peer_and_shows_inputs_and_outputs_readably():
    out = run("predict", "syn-retransmit", timeout=180)
    assert out.returncode == 0, out.stderr
    assert "peer: silent" in out.stdout
    assert "the board connects to 10.0.2.2:9" in out.stdout
    assert "ARP reply 10.0.2.2 is-at 52:55:0a:00:02:02" in out.stdout and "tcp SYN :" in out.stdout
    assert "proto=" not in out.stdout


def test_predict_handshake_has_one_synack_per_connect_against_slirp_that_acknowledges():
    pred = _predict("handshake")
    assert pred["peer"] == "slirp"
    synacks = _sent(pred, "tcp SYN-ACK")
    assert [r["what"].split()[2] for r in synacks] == [":22", ":80"]
    assert all(r["checked"] for r in synacks)
    assert any(r["who"] == "peer -> board" and r["what"].startswith("tcp ACK") for r in pred["timeline"])


def test_predict_link_flap_has_no_synack_retransmission_and_windows_for_the_link_lines():
    pred = _predict("link-flap")
    assert len(_sent(pred, "tcp SYN-ACK")) == 2
    lines = [r for r in pred["timeline"] if r["who"] == "console"]
    assert [r["what"].split(": ")[-1][:12] for r in lines] == ["Link is Down", "Link is Up -"]
    assert all(r["window_s"][0] < r["window_s"][1] for r in lines)


def test_predict_checks_what_run_compares_on_the_model_board(tmp_path, model_board):
    pred = _predict("link-flap")
    out = run("run", "link-flap", "--board", model_board, "--out", str(tmp_path / "run"), "--json", timeout=180)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["scenarios"][0]
    assert sum(1 for r in pred["timeline"] if r["checked"]) == report["predicted"]


def test_predict_keeps_the_model_run_with_out(tmp_path):
    pred = _predict("closed-port", "--out", str(tmp_path / "kept"))
    assert (tmp_path / "kept" / "predicted.pcap").exists() and (tmp_path / "kept" / "capture.pcap").exists()
    assert [r["what"].split()[1] for r in _sent(pred, "tcp")] == ["RST-ACK"]


def test_predict_that_the_model_cannot_play_exits_2_saying_why(tmp_path):
    board = tmp_path / "lab.yaml"
    board.write_text("kind: real\nconsole: {url: 'loop://'}\nssh: {host: 192.0.2.1, password: x}\n"
                     "firmware: {interface: {address: 192.0.2.10/24, gateway: 192.0.2.1, mac: '02:00:00:00:00:01'}}\n")
    out = run("predict", "closed-port", "--board", str(board), timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "forwards to 10.0.2.15" in out.stderr and "192.0.2.10/24" in out.stderr
    assert "logs kept in" not in out.stderr


# -- progress -----------------------------------------------------------------------------------
def test_run_progress_says_each_step_in_words(tmp_path, model_board):
    out = run("run", "handshake", "--board", model_board, "--out", str(tmp_path / "run"), timeout=180)
    assert out.returncode == 0, out.stderr
    assert "handshake: +0 s connect ssh (port 22)" in out.stderr
    assert "handshake: +1 s connect http (port 80)" in out.stderr
    assert "{'service'" not in out.stderr and "handshake: pass" in out.stderr


def test_image_build_prints_paths_not_a_python_dict():
    out = run("image", "build", timeout=900)
    assert out.returncode == 0, out.stderr
    assert "{" not in out.stdout
    assert "dtb       : " in out.stdout and "(ast2500-evb)" in out.stdout and "initramfs : " in out.stdout


# -- the model-as-board and real boards ---------------------------------------------------------
def test_ssh_to_the_model_as_board_is_an_error_naming_what_it_is_for(model_board):
    out = run("ssh", "--board", model_board, "--", "true", timeout=30)
    assert out.returncode == 2 and "model-as-board" in out.stderr and "bmc-hil predict" in out.stderr


def _real_board(tmp_path, power: str) -> str:
    path = tmp_path / "lab.yaml"
    path.write_text("kind: real\nconsole: {url: 'loop://'}\nssh: {host: 192.0.2.1, password: x}\n"
                    "firmware: {interface: {address: 192.0.2.1/24, mac: '02:00:00:00:00:01'}}\n" + power)
    return str(path)


def test_power_on_a_real_board_runs_its_command_and_records_it(tmp_path):
    board = _real_board(tmp_path, "power: {on: ['true'], off: ['true']}\n")
    out = run("power", "on", "--board", board, "--out", str(tmp_path / "out"), timeout=30)
    assert out.returncode == 0, out.stderr
    events = [json.loads(ln)["event"] for ln in (tmp_path / "out" / "host-events.jsonl").read_text().splitlines()]
    assert events == ["power_on"]


def test_power_cycle_of_a_real_board_without_commands_exits_2_naming_the_missing_one(tmp_path):
    board = _real_board(tmp_path, "power: {on: ['true']}\n")
    out = run("power", "cycle", "--board", board, timeout=30)
    assert out.returncode == 2 and "no power.off command in the board file" in out.stderr


def test_a_failing_power_command_exits_2(tmp_path):
    board = _real_board(tmp_path, "power: {on: ['true'], off: ['false']}\n")
    out = run("power", "off", "--board", board, "--out", str(tmp_path / "out"), timeout=30)
    assert out.returncode == 2 and "power.off command" in out.stderr


# -- a session without a board: what ssh and link status do with what they find ---------------
def _fake_session(tmp_path, ssh_port: int) -> dict:
    """A session file for a board that is not there (its pid: this test's, alive)."""
    cache, out = tmp_path / "cache", tmp_path / "session"
    (cache / "sessions").mkdir(parents=True)
    out.mkdir()
    key = tmp_path / "key"
    key.write_text("")
    (cache / "sessions" / "emulated.json").write_text(json.dumps({
        "name": "emulated", "pid": os.getpid(), "console_url": "socket://127.0.0.1:9", "ssh_host": "127.0.0.1",
        "ssh_port": ssh_port, "ssh_user": "root", "key_file": str(key), "control_socket": str(tmp_path / "none.sock"),
        "out_dir": str(out), "forwards": {}}))
    return dict(os.environ, BMC_HIL_CACHE=str(cache))


def test_ssh_timeout_bounds_connecting_and_hints_at_the_link(tmp_path):
    """QEMU's port forward takes the connection whatever the board does; with its link
    down no SSH server ever speaks."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    env = _fake_session(tmp_path, port)
    start = time.monotonic()
    try:
        out = run("ssh", "--timeout", "3", "--", "true", env=env, timeout=30)
    finally:
        server.close()
    assert time.monotonic() - start < 6  # 3 s and the interpreter's start
    assert out.returncode == 2
    assert f"127.0.0.1:{port}" in out.stderr and "within 3 s" in out.stderr and "link down" in out.stderr
    assert "bmc-hil link status" in out.stderr and "Traceback" not in out.stderr


def test_link_status_says_the_recorded_state_and_the_boards_last_line_cleaned(tmp_path):
    env = _fake_session(tmp_path, 9)
    rec = {"event": "link_down", "host_monotonic_ns": 1, "host_wall_ns": 1_700_000_000_000_000_000,
           "by": "bmc-hil link down"}
    (tmp_path / "session" / "host-events.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "session" / "console.log").write_text(
        "1700000001.000000 # \ufffd[6n[   43.381387] ftgmac100 1e660000.ethernet eth0: Link is Down\n")
    out = run("link", "status", env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("link down (set by bmc-hil link down at ")
    assert "# [   43.381387] ftgmac100 1e660000.ethernet eth0: Link is Down" in out.stdout
    assert "\ufffd" not in out.stdout


def test_link_status_of_a_board_never_changed_is_up(tmp_path):
    out = run("link", "status", "--json", env=_fake_session(tmp_path, 9), timeout=30)
    assert json.loads(out.stdout)["link"] == "up"


# -- console text -------------------------------------------------------------------------------
def test_console_lines_leave_terminal_control_out_and_the_log_keeps_it(tmp_path):
    from harness.ingest.console import parse_console
    from harness.ingest.events import EventKind

    con = SerialConsole("loop://", tmp_path / "console.log")
    con.open()
    try:
        con._port.write(b"# \x1b[6n[    2.970558] ftgmac100 1e660000.ethernet eth0: Link is Down\n")
        line, _ = con.expect("Link is Down", 2, since=0)
    finally:
        con.close()
    assert line.text == "# [    2.970558] ftgmac100 1e660000.ethernet eth0: Link is Down"
    assert line.guest_ns == 2_970_558_000
    log = (tmp_path / "console.log").read_text()
    assert "# \ufffd[6n[    2.970558]" in log
    assert parse_console(log).kind.tolist() == [EventKind.LINK_DOWN]


# -- the emulated board (one boot for all; flock /tmp/board.lock around the run) ----------------
def start_boot(out_dir: Path, timeout: float = 180, **kw) -> tuple[subprocess.Popen, list[str]]:
    """`bmc-hil boot` keeping the emulated board up, read up to its `Ctrl-C powers it off.`
    line; the process and its stdout lines so far (stop it with SIGINT)."""
    kw.setdefault("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen([*BMC_HIL, "boot", "--out", str(out_dir)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, **kw)
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C powers it off." in line or not line:
            break
    return proc, lines


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ux") / "run"
    proc, lines = start_boot(out_dir)
    try:
        assert any("Ctrl-C powers it off." in ln for ln in lines), "".join(lines)
        yield out_dir
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()          # Ctrl-C did not end it: no board left behind either way
            proc.wait(timeout=30)


def _boots(out_dir: Path) -> int:
    return (out_dir / "console.log").read_text(errors="replace").count("Linux version")


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


@pytest.mark.board
def test_ssh_double_dash_command_lists_the_boards_root(session):
    out = run("ssh", "--", "ls", "-la", "/", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "drwx" in out.stdout and " bin" in out.stdout and " proc" in out.stdout


@pytest.mark.board
def test_ssh_exits_with_the_remote_commands_status_and_passes_stdin(session):
    assert run("ssh", "--", "sh", "-c", "'exit 3'", timeout=60).returncode == 3
    out = run("ssh", "--", "cat", input="through stdin\n", stdin=None, timeout=60)
    assert out.returncode == 0 and out.stdout == "through stdin\n"
    missing = run("ssh", "--", "ls", "/no-such-dir", timeout=60)
    assert missing.returncode != 0 and "no-such-dir" in missing.stderr


@pytest.mark.board
def test_ssh_into_a_pipe_whose_reader_leaves_ends_quietly(session):
    out = subprocess.run(" ".join([*BMC_HIL, "ssh", "--", "seq", "1", "200000"]) + " | head -1", shell=True,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "1\n" and "Traceback" not in out.stderr and "error" not in out.stderr


@pytest.mark.board
def test_ssh_without_a_command_is_an_interactive_shell_on_a_terminal(session):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "harness", "ssh"], timeout=30, encoding="utf-8")
    try:
        child.expect("# ")
        child.sendline("echo $((6*7))")
        child.expect("42")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5


@pytest.mark.board
def test_link_down_is_recorded_shown_and_makes_ssh_time_out_with_the_hint(session):
    from harness.session import Session

    port = Session.load("emulated").ssh_port
    assert run("link", "down", timeout=30).returncode == 0
    try:
        status = run("link", "status", timeout=30).stdout
        assert status.startswith("link down (set by bmc-hil link down")
        start = time.monotonic()
        out = run("ssh", "--timeout", "3", "--", "true", timeout=30)
        assert time.monotonic() - start < 6
        assert out.returncode == 2 and f"127.0.0.1:{port}" in out.stderr and "link down" in out.stderr
        assert _wait(lambda: "Link is Down" in run("link", "status", timeout=30).stdout, 10)
    finally:
        assert run("link", "up", timeout=30).returncode == 0
    assert run("link", "status", timeout=30).stdout.startswith("link up")
    events = [json.loads(ln) for ln in (session / "host-events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e.get("by", "").startswith("bmc-hil link")] == ["link_down", "link_up"]


@pytest.mark.board
def test_power_cycle_boots_the_board_again(session):
    boots = _boots(session)
    out = run("power", "cycle", timeout=30)
    assert out.returncode == 0, out.stderr
    assert _wait(lambda: _boots(session) == boots + 1, 30), "no second boot on the console"
    assert run("power", "status", timeout=30).stdout.strip() == "power on"
    assert _wait(lambda: run("ssh", "--timeout", "5", "--", "true", timeout=30).returncode == 0, 60)


@pytest.mark.board
def test_power_off_holds_the_board_and_power_on_boots_it(session):
    boots = _boots(session)
    assert run("power", "off", timeout=30).returncode == 0
    assert run("power", "status", timeout=30).stdout.strip() == "power off"
    time.sleep(2)
    assert _boots(session) == boots
    assert run("power", "on", timeout=30).returncode == 0
    assert _wait(lambda: _boots(session) == boots + 1, 30), "no boot after power on"
    events = [json.loads(ln) for ln in (session / "host-events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e.get("by", "").startswith("bmc-hil power")][-2:] == ["power_off", "power_on"]


@pytest.mark.board
def test_a_power_cycle_with_the_link_down_leaves_it_down(session):
    """QEMU's MAC reset brings the PHY up whatever set_link said; the serving bmc-hil boot
    knows the link was taken down elsewhere and says so again after the boot."""
    assert run("link", "down", timeout=30).returncode == 0
    try:
        boots = _boots(session)
        assert run("power", "cycle", timeout=30).returncode == 0
        assert _wait(lambda: _boots(session) == boots + 1, 30), "no boot after the power cycle"

        def said_down_after_boot() -> bool:
            text = (session / "console.log").read_text(errors="replace")
            return "Link is Down" in text[text.rfind("Linux version"):]

        assert _wait(said_down_after_boot, 30), "the board came up with its link up"
        assert run("link", "status", timeout=30).stdout.startswith("link down")
    finally:
        assert run("link", "up", timeout=30).returncode == 0
