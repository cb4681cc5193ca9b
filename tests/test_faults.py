"""Faults and hostile input around a run (issue 13): a board that dies or hangs, a step
that fails, a harness bug, SIGTERM, hostile scenario names, a folder that already holds
files, `compare`'s window. Each asserts the exit code, the message, that the report is
written and that nothing outside the run folder changed.

The first half runs on the model-as-board (seconds, no emulator); the board-marked tests
kill the real emulated board's QEMU and send the real harness SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cli
from harness.board.qemu import SOCKDIR_PREFIX, sweep_socket_dirs
from harness.oracle import Artifacts, check_run
from harness.paths import safe_name, unique_names
from models.config import FirmwareConfig

BMC_HIL = [sys.executable, "-m", "harness"]


def bmc_hil(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BMC_HIL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def lab(tmp_path):
    """A folder with a model board file and a sentinel file beside the run folder."""
    write(tmp_path / "model.yaml", "kind: model\n")
    (tmp_path / "victim").mkdir()
    write(tmp_path / "victim" / "console.log", "precious\n")
    return tmp_path


def snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


# -- names ---------------------------------------------------------------------------------
def test_safe_names_stay_in_their_folder():
    assert safe_name("../victim") == "_victim"
    assert safe_name("/etc/passwd") == "_etc_passwd"
    assert safe_name("..") == "_" and safe_name("") == "_" and safe_name(".hidden") == "hidden"
    assert unique_names(["a", "a", "A", "../x", "/x"]) == ["a", "a-2", "A-3", "_x", "_x-2"]
    assert len(safe_name("x" * 10_000)) < 255


def test_hostile_scenario_names_write_only_inside_the_run_folder(lab):
    """`name: ../victim` and an absolute name used to delete or truncate files outside the
    run folder; two scenarios of one name overwrote each other's artifacts."""
    write(lab / "evil.yaml", "name: ../victim\nduration: 2s\nsteps:\n  - {at: 0s, do: link_down}\n")
    write(lab / "abs.yaml", f"name: {lab / 'victim'}\nduration: 2s\nsteps:\n  - {{at: 0s, do: link_down}}\n")
    before = snapshot(lab, lab / "out")
    p = bmc_hil("run", "evil.yaml", "abs.yaml", "evil.yaml", "--board", "model.yaml", "--out", "out", "--json",
                cwd=lab)
    assert p.returncode == 0, p.stderr
    assert snapshot(lab, lab / "out") == before
    runs = sorted(d.name for d in (lab / "out").iterdir() if d.is_dir())
    assert len(runs) == 3 and all((lab / "out" / d / "capture.pcap").exists() for d in runs)
    assert [s["scenario"] for s in json.loads(p.stdout)["scenarios"]] == ["../victim", str(lab / "victim"),
                                                                          "../victim"]


def test_a_run_never_overwrites_a_folder_that_holds_files(lab):
    (lab / "out").mkdir()
    write(lab / "out" / "notes.txt", "mine\n")
    p = bmc_hil("run", "handshake", "--board", "model.yaml", "--out", "out", cwd=lab)
    assert p.returncode == 2
    assert "not empty (notes.txt)" in p.stderr and "Traceback" not in p.stderr
    assert sorted(x.name for x in (lab / "out").iterdir()) == ["notes.txt"]


# -- one scenario's failure is its own row ---------------------------------------------------
def test_a_scenario_that_cannot_run_is_its_row_and_the_run_goes_on(lab):
    """A frame step needs the harness's own wire (found when the board is opened): that
    scenario is an error verdict, the next one still runs and passes, the report has
    both, the exit code is 2."""
    write(lab / "bad.yaml", "name: bad\nduration: 2s\nsteps:\n  - {at: 0s, do: frame, hex: '" + "ff" * 60 + "'}\n")
    p = bmc_hil("run", "bad.yaml", "handshake", "--board", "model.yaml", "--out", "out", "--json", cwd=lab)
    assert p.returncode == 2, p.stderr
    rep = json.loads((lab / "out" / "report.json").read_text())
    bad, good = rep["scenarios"]
    assert not bad["ok"] and "network: wire" in bad["error"]
    assert good["ok"] and good["predicted"] > 0
    assert "ERROR" in (lab / "out" / "report.html").read_text()


def test_a_harness_bug_is_exit_2_with_one_line_and_the_traceback_in_a_file(lab, monkeypatch, capsys):
    import harness.runner

    def broken(*a, **k):
        raise RuntimeError("seeded harness bug")

    monkeypatch.chdir(lab)
    monkeypatch.setattr(harness.runner, "check_scenario", broken)
    assert cli.main(["run", "handshake", "--board", "model.yaml", "--out", "out"]) == cli.EXIT_ERROR
    rep = json.loads((lab / "out" / "report.json").read_text())
    (v,) = rep["scenarios"]
    assert "internal error: RuntimeError: seeded harness bug" in v["error"]
    (tb,) = (lab / "out" / "handshake").glob("traceback-*.log")
    assert "seeded harness bug" in tb.read_text() and "Traceback" in tb.read_text()
    assert "Traceback" not in capsys.readouterr().err


def test_an_unexpected_exception_outside_a_scenario_is_exit_2(lab, monkeypatch, capsys):
    monkeypatch.chdir(lab)
    monkeypatch.setattr(cli, "cmd_setup", lambda args: 1 / 0)
    assert cli.main(["setup", "--dry-run"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError" in err and "Traceback" not in err and "traceback is in" in err


# -- liveness and failed steps in the verdict --------------------------------------------------
@pytest.fixture
def model_run(lab):
    p = bmc_hil("run", "handshake", "--board", "model.yaml", "--out", "out", cwd=lab)
    assert p.returncode == 0, p.stderr
    return lab / "out" / "handshake"


def recheck(run: Path, window=None):
    art = Artifacts.in_dir(run, "host-wall")
    recs = [json.loads(line) for line in (run / "host-events.jsonl").read_text().splitlines()]
    start = next(r["host_wall_ns"] for r in recs if r["event"] == "scenario_start")
    end = next(r["host_wall_ns"] for r in recs if r["event"] == "scenario_end")
    return check_run(art, FirmwareConfig.default(), *(window or (start, end)), "handshake", out_dir=run)


def edit_records(run: Path, fn) -> None:
    path = run / "host-events.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in fn(recs)))


def test_the_liveness_record_is_part_of_the_verdict(model_run):
    assert recheck(model_run).ok
    edit_records(model_run, lambda recs: [{**r, "alive": False, "reason": "QEMU exited with status -9"}
                                          if r["event"] == "liveness" else r for r in recs])
    v = recheck(model_run)
    assert not v.ok and "did not stay alive: QEMU exited with status -9" in v.error


def test_a_run_without_a_liveness_record_says_so(model_run):
    edit_records(model_run, lambda recs: [r for r in recs if r["event"] != "liveness"])
    v = recheck(model_run)
    assert v.ok and any("no liveness record" in n for n in v.notes)


def test_a_failed_step_is_an_error_even_when_the_rows_match(model_run):
    edit_records(model_run, lambda recs: recs + [{**recs[-1], "event": "step_error", "step": 1, "do": "connect",
                                                  "error": "QEMU exited"}])
    v = recheck(model_run)
    assert not v.ok and "step 1 (connect) failed: QEMU exited" in v.error


# -- compare ------------------------------------------------------------------------------------
def compare_args(run: Path, *extra) -> list[str]:
    return ["compare", "--board", "model.yaml", "--pcap", str(run / "capture.pcap"), "--console",
            str(run / "console.log"), "--host-events", str(run / "host-events.jsonl"), "--qmp", str(run / "qmp.jsonl"),
            "--scenario", "handshake", "--json", *extra]


def test_compare_judges_the_scenarios_window_by_default(model_run, lab):
    """Before, the default window began at power-on: the boot's SSH login was compared and
    a scenario's own steps could be missed without a row."""
    p = bmc_hil(*compare_args(model_run, "--out", "c1"), cwd=lab)
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)["scenarios"][0]
    recs = [json.loads(line) for line in (model_run / "host-events.jsonl").read_text().splitlines()]
    start = next(r["host_wall_ns"] for r in recs if r["event"] == "scenario_start")
    end = next(r["host_wall_ns"] for r in recs if r["event"] == "scenario_end")
    assert (v["start_ns"], v["end_ns"]) == (start, end)
    run_v = json.loads((model_run / "verdict.json").read_text())   # the run's own, same window
    assert (v["predicted"], v["observed"]) == (run_v["predicted"], run_v["observed"]) == (2, 2)


@pytest.mark.parametrize("args, message", [
    (("--start-wall-ns", "5", "--end-wall-ns", "4"), "empty or inverted"),
    (("--start-wall-ns", "5", "--end-wall-ns", "5"), "empty or inverted"),
])
def test_compare_refuses_an_empty_window(model_run, lab, args, message):
    p = bmc_hil(*compare_args(model_run, *args), cwd=lab)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_compare_names_a_missing_or_wrong_input(model_run, lab):
    args = compare_args(model_run)
    for opt, value, message in (("--host-events", "nope.jsonl", "--host-events nope.jsonl: no such file"),
                                ("--pcap", ".", "--pcap .: not a file"),
                                ("--qmp", "gone.jsonl", "--qmp gone.jsonl: no such file")):
        a = list(args)
        a[a.index(opt) + 1] = value
        p = bmc_hil(*a, cwd=lab)
        assert p.returncode == 2 and message in p.stderr, (opt, p.stderr)


def test_compare_without_a_scenario_start_record_asks_for_the_window(model_run, lab):
    edit_records(model_run, lambda recs: [r for r in recs if r["event"] != "scenario_start"])
    p = bmc_hil(*compare_args(model_run), cwd=lab)
    assert p.returncode == 2 and "no scenario_start record" in p.stderr and "--start-wall-ns" in p.stderr


# -- bad numbers on the command line -----------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (("run", "handshake", "--tolerance-scale", "nan"), "--tolerance-scale"),
    (("run", "handshake", "--tolerance-scale", "inf"), "--tolerance-scale"),
    (("run", "handshake", "--tolerance-scale", "-1"), "--tolerance-scale"),
    (("flap", "--cycles", "0"), "--cycles must be"),
    (("flap", "--down", "nan"), "--down must be"),
    (("flap", "--up", "0"), "--up must be"),
])
def test_bad_numbers_are_exit_2_before_a_board_is_touched(lab, args, message):
    t0 = time.monotonic()
    p = bmc_hil(*args, "--board", "model.yaml", cwd=lab)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr
    assert not (lab / "bmc-hil-runs").exists() or not any((lab / "bmc-hil-runs").rglob("console.log"))
    assert time.monotonic() - t0 < 60


def test_a_bad_console_url_is_exit_2(lab):
    write(lab / "fw.yaml", "interface: {address: 10.0.2.15/24, gateway: 10.0.2.2, mac: '52:54:00:12:34:56'}\n")
    write(lab / "real.yaml", "kind: real\nconsole: {url: 'bogus://x'}\nssh: {host: 127.0.0.1}\nfirmware: fw.yaml\n")
    p = bmc_hil("console", "--board", "real.yaml", cwd=lab)
    assert p.returncode == 2 and "bogus://x" in p.stderr and "Traceback" not in p.stderr


# -- socket folders ------------------------------------------------------------------------------
def test_socket_folders_of_dead_harnesses_are_swept(tmp_path):
    import tempfile

    dead = subprocess.Popen(["true"])
    dead.wait()
    base = Path(tempfile.gettempdir())
    gone = base / f"{SOCKDIR_PREFIX}{dead.pid}-test"
    mine = base / f"{SOCKDIR_PREFIX}{os.getpid()}-test"
    for d in (gone, mine):
        d.mkdir(exist_ok=True)
        (d / "qmp.sock").write_text("")
    try:
        removed = sweep_socket_dirs()
        assert gone in removed and not gone.exists()
        assert mine.exists()
    finally:
        for d in (gone, mine):
            subprocess.run(["rm", "-rf", str(d)], check=False)


# -- the real emulated board ------------------------------------------------------------------------
def wait_for_record(path: Path, event: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if rec["event"] == event:
                    return rec
        time.sleep(0.2)
    raise AssertionError(f"no {event} record in {path} within {timeout} s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def start_run(lab: Path, *scenarios: str) -> subprocess.Popen:
    return subprocess.Popen([*BMC_HIL, "run", *scenarios, "--out", "out", "--json"], cwd=lab,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.board
def test_qemu_killed_mid_scenario_is_that_scenarios_error_and_the_run_goes_on(lab, emulated_image):
    """SIGKILL the board's QEMU just after handshake's first connect: that scenario is an
    error naming the dead emulator (it used to pass 1/1 with exit 0); the next scenario
    runs on a fresh board and passes; exit 2; the report has both."""
    proc = start_run(lab, "handshake", "closed-port")
    first = lab / "out" / "handshake" / "host-events.jsonl"
    qemu = wait_for_record(first, "power_on", 120)["pid"]
    wait_for_record(first, "scenario_start", 180)
    time.sleep(0.5)
    os.kill(qemu, signal.SIGKILL)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 2, err
    rep = json.loads((lab / "out" / "report.json").read_text())
    dead, nxt = rep["scenarios"]
    assert not dead["ok"] and "did not stay alive" in dead["error"] and "QEMU exited" in dead["error"], dead
    assert nxt["ok"], nxt
    assert not pid_alive(qemu)
    assert not list(Path("/tmp").glob(f"{SOCKDIR_PREFIX}{proc.pid}-*"))


@pytest.mark.board
def test_sigterm_unwinds_as_ctrl_c(lab, emulated_image):
    """SIGTERM during the first of two scenarios: exit 143 with a message, the board
    powered off and recorded, QEMU gone, no socket folder left, and a report that says
    the run was interrupted and which scenario did not run."""
    proc = start_run(lab, "handshake", "closed-port")
    first = lab / "out" / "handshake" / "host-events.jsonl"
    qemu = wait_for_record(first, "power_on", 120)["pid"]
    wait_for_record(first, "scenario_start", 180)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    wait_for_record(first, "power_off", 1)
    assert not pid_alive(qemu)
    assert not list(Path("/tmp").glob(f"{SOCKDIR_PREFIX}{proc.pid}-*"))
    rep = json.loads((lab / "out" / "report.json").read_text())
    assert rep["interrupted"] == "interrupted by SIGTERM" and not rep["ok"]
    a, b = rep["scenarios"]
    assert "interrupted by SIGTERM during the scenario" in a["error"]
    assert b["error"] == "not run: interrupted by SIGTERM"
    assert (lab / "out" / "report.html").exists()


def test_compare_salvage_judges_a_cut_capture_up_to_its_cut(model_run, lab):
    """A capture cut inside the record of the scenario's second SYN-ACK: an error naming
    the offset without --salvage; with it, the window ends at the last whole frame, the
    first SYN-ACK is still compared, nothing after the cut is MISSING, and the verdict
    names the cut."""
    from harness.ingest.pcap import read_pcap
    from harness.ingest.streams import TCP_ACK, TCP_SYN

    pcap = model_run / "capture.pcap"
    table = read_pcap(pcap)
    synacks = [i for i, f in enumerate(table.tcp_flags.tolist()) if f & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK]
    data = pcap.read_bytes()
    off, n = 24, 0
    while n < synacks[-1]:           # the offset of the last SYN-ACK's record
        off += 16 + int.from_bytes(data[off + 8: off + 12], "little")
        n += 1
    cut = lab / "cut.pcap"
    cut.write_bytes(data[:off + 20])
    args = compare_args(model_run)
    args[args.index("--pcap") + 1] = str(cut)
    p = bmc_hil(*args, "--out", "plain", cwd=lab)
    assert p.returncode == 2 and f"byte offset {off}" in json.loads(p.stdout)["scenarios"][0]["error"]
    p = bmc_hil(*args, "--salvage", "--out", "salvaged", cwd=lab)
    v = json.loads(p.stdout)["scenarios"][0]
    assert p.returncode == 0, v
    assert v["predicted"] == v["observed"] == 1 and not v["divergences"]
    assert any(n.startswith(f"salvaged: {cut} cut at byte offset {off}") for n in v["notes"]), v["notes"]


def test_a_peer_that_fails_is_recorded_and_the_capture_goes_on(tmp_path):
    """A peer's bug used to end the wire's thread: the capture stopped there and the board
    saw a peer that fell silent, which the oracle would judge as the board's doing."""
    import socket as so

    from harness.board.wire import Wire
    from harness.ingest.pcap import read_pcap

    wire = Wire(tmp_path)
    try:
        wire.on_frame(lambda frame: 1 / 0)
        wire.capture_start(tmp_path / "cap.pcap")
        board = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
        for i in range(3):
            board.sendto(bytes(range(14)) + bytes([i]) * 46, str(wire.harness_path))
        deadline = time.monotonic() + 5
        while len(wire.frames) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        board.close()
        wire.capture_stop()
    finally:
        wire.close()
    assert len(wire.frames) == 3
    assert len(read_pcap(tmp_path / "cap.pcap")) == 3
    assert len(wire.errors) == 3 and "ZeroDivisionError" in wire.errors[0]


def test_a_harness_error_record_makes_the_run_an_error(model_run):
    edit_records(model_run, lambda recs: recs + [{**recs[-1], "event": "harness_error", "what": "wire",
                                                  "errors": ["a peer on the wire failed on a frame"]}])
    v = recheck(model_run)
    assert not v.ok and "the harness's wire failed: a peer on the wire failed on a frame" in v.error


def test_liveness_of_a_board_without_an_emulator_is_its_console(tmp_path):
    """A real board has no emulator to ask: check_liveness used to call a check_alive it
    lacked (AttributeError on every real-board scenario). Its console answering is alive;
    a console that never answers is not, within the timeout."""
    from harness.board.base import Lifecycle
    from harness.board.real import RealBoard
    from harness.errors import ConsoleTimeout
    from harness.runner import check_liveness

    class Console:
        def __init__(self, answer):
            self.answer = answer

        def run(self, command, timeout=10):
            if self.answer is None:
                raise ConsoleTimeout(f"no answer to {command!r}")
            return self.answer, 0

    class Lab(RealBoard):
        def __init__(self, console):    # only what check_liveness touches
            self._c = console
            self.name, self.lifecycle = "lab", Lifecycle.ACTIVE

        @property
        def console(self):
            return self._c

    assert check_liveness(Lab(Console("alive")), 2)["alive"]
    t0 = time.monotonic()
    dead = check_liveness(Lab(Console(None)), 1.5)
    assert not dead["alive"] and "did not answer within 1.5 s" in dead["reason"] and time.monotonic() - t0 < 10
