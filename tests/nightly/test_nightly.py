"""`bmc-hil nightly` run as a newcomer runs it: a child process against the emulated
board, then its summary.html, junit.xml and Robot's output.xml read back. Also: the
summary of a run whose board died, and Ctrl-C leaving no QEMU behind."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness import nightly as nightly_mod
from harness.nightly import NightlyResult, ScenarioOutcome, SuiteOutcome, run_child, write_summary

ROOT = Path(__file__).resolve().parents[2]
# The CI subset: one oracle scenario, and the suites' closed-port tests (both flavours, with
# and without the oracle). Without these options nightly runs every scenario and test.
SMOKE = ["--scenario", "closed-port", "--pytest-args", "-k closed", "--robot-args", "--test *Closed*"]


def bmc_hil_nightly(out: Path, *extra: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "nightly", "--board", "emulated", "--out", str(out),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


class Summary(HTMLParser):
    """What a reader of summary.html sees: scenario rows, plots, suite rows, links."""

    def __init__(self, path: Path):
        super().__init__()
        self.scenarios: dict[str, str] = {}
        self.plots: dict[str, str] = {}
        self.suites: dict[str, dict] = {}
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.add(a.get("id", ""))
        if tag == "tr" and a.get("class") == "scenario":
            self.scenarios[a["data-scenario"]] = a["data-verdict"]
        elif tag == "tr" and a.get("class") == "suite":
            self.suites[a["data-suite"]] = a
        elif tag == "img" and a.get("class") == "timeline":
            self.plots[a["data-scenario"]] = a["src"]
        elif tag == "a" and a.get("class") == "artifact":
            self.links.append(a["href"])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nightly") / "run"
    proc = bmc_hil_nightly(out, *SMOKE)
    stdout, stderr = proc.communicate(timeout=600)
    return proc.returncode, stderr, out


@pytest.mark.board
def test_nightly_on_the_healthy_emulated_board_exits_0(smoke_run):
    code, stderr, out = smoke_run
    assert code == 0, stderr[-4000:]
    assert f"summary: {out / 'summary.html'}" in stderr


@pytest.mark.board
def test_summary_has_a_row_and_a_plot_for_every_scenario(smoke_run):
    _, stderr, out = smoke_run
    summary = Summary(out / "summary.html")
    assert summary.scenarios == {"closed-port": "pass"}, stderr[-3000:]
    assert summary.plots == {"closed-port": "scenarios/closed-port.timeline.png"}
    assert (out / summary.plots["closed-port"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "No divergence: the board did what Linux 6.1 would have done." in summary.text


@pytest.mark.board
def test_junit_xml_holds_the_pytest_suites_tests_and_the_summary_counts_them(smoke_run):
    _, stderr, out = smoke_run
    cases = {tc.get("name"): tc for tc in ET.parse(out / "junit.xml").iter("testcase")}
    assert set(cases) == {"test_closed_port_is_refused[undeclared-telnet]",
                          "test_builtin_scenario_matches_the_model[closed-port]"}, stderr[-3000:]
    assert all(tc.find("failure") is None and tc.find("error") is None and tc.find("skipped") is None
               for tc in cases.values())
    row = Summary(out / "summary.html").suites["pytest"]
    assert (row["data-tests"], row["data-passed"], row["data-failed"], row["data-skipped"]) == ("2", "2", "0", "0")


@pytest.mark.board
def test_robot_output_says_all_passed_and_the_summary_links_its_logs(smoke_run):
    from robot.api import ExecutionResult

    _, stderr, out = smoke_run
    total = ExecutionResult(str(out / "robot" / "output.xml")).statistics.total
    assert (total.passed, total.failed, total.skipped) == (2, 0, 0), stderr[-3000:]
    summary = Summary(out / "summary.html")
    assert summary.suites["robot"]["data-passed"] == "2"
    for link in ("junit.xml", "robot/log.html", "robot/report.html", "robot/output.xml"):
        assert link in summary.links
        assert (out / link).is_file()


@pytest.mark.board
def test_each_scenario_runs_once_a_night(smoke_run):
    """closed-port ran in the scenario phase; the pytest and Robot oracle tests of it took
    that verdict rather than booting a board for it again (issue: every scenario used to
    run twice a night, and a flake in one run could not be told from a fault)."""
    import json

    _, stderr, out = smoke_run
    reused = {}
    for suite in ("pytest", "robot"):
        for report in (out / suite).rglob("report.json"):
            for v in json.loads(report.read_text())["scenarios"]:
                if any("reused from" in n for n in v["notes"]):
                    reused.setdefault(suite, []).append(v["scenario"])
    assert reused == {"pytest": ["closed-port"], "robot": ["closed-port"]}, stderr[-3000:]
    assert not [p for p in (out / "pytest").rglob("capture.pcap") if "closed-port" in str(p)]


# -- the summary of a bad night (no board needed) ---------------------------------------------
def test_summary_of_a_board_that_died_and_a_divergence_says_what_happened_and_fails(tmp_path):
    verdict = {"scenario": "handshake", "ok": False, "predicted": 2, "observed": 1, "start_ns": 0, "end_ns": 3,
               "divergences": [{"kind": "MISSING", "stream_name": "TCP_SYNACK", "field": None,
                                "pred_ns": 1_500_000_000, "obs_ns": None, "frame": None, "delta_ns": None,
                                "tol_ns": 100_000_000}]}
    result = NightlyResult("emulated", tmp_path, time.time(), finished=time.time())
    result.scenarios = [ScenarioOutcome("handshake", 9.0, verdict=verdict),
                        ScenarioOutcome("watchdog-starve", 4.0, board_died=True,
                                        error="QEMU exited unexpectedly\n--- console tail ---\nKernel panic")]
    result.suites = [SuiteOutcome("pytest", [], returncode=1, tests=3, passed=2, failed=1,
                                  failures=[("suites.test_x::test_y", "AssertionError: late")])]
    assert result.exit_code == 1
    summary = Summary(write_summary(result))
    assert summary.scenarios == {"handshake": "FAIL", "watchdog-starve": "board died"}
    text = "".join(summary.text)
    assert "MISSING" in text and "TCP_SYNACK" in text and "1500.0" in text
    assert "QEMU exited unexpectedly" in text and "Kernel panic" in text
    assert "suites.test_x::test_y" in text and "AssertionError: late" in text
    assert summary.suites["pytest"]["data-failed"] == "1"


def test_a_suite_that_wrote_no_results_is_an_error(tmp_path):
    result = NightlyResult("emulated", tmp_path, time.time())
    suite = SuiteOutcome("pytest", [])
    nightly_mod._junit_totals(tmp_path / "junit.xml", suite)
    result.suites = [suite]
    assert suite.error == "pytest wrote no junit.xml (see pytest.log)"
    assert result.exit_code == 2


# -- Ctrl-C ---------------------------------------------------------------------------------
def test_an_interrupted_child_that_ignores_sigint_is_ended_by_its_pid(tmp_path, monkeypatch):
    monkeypatch.setattr(nightly_mod, "CHILD_INTERRUPT_GRACE_S", 0.5)
    started: list[int] = []

    def on_line(line):
        started.append(int(line))
        raise KeyboardInterrupt   # as Ctrl-C arrives while a suite runs

    child = [sys.executable, "-c", "import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                                   "print(os.getpid(), flush=True); time.sleep(60)"]
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_child(child, tmp_path / "child.log", tmp_path, on_line)
    assert time.monotonic() - t0 < 20
    assert not Path(f"/proc/{started[0]}").exists()


def _qemu_grandchildren(pid: int) -> list[int]:
    """QEMU processes started by a child of `pid` (the suites' boards, not nightly's own)."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for p, pp in parent.items():
        if parent.get(pp) == pid and pp != pid:
            try:
                if "qemu-system" in (Path(f"/proc/{p}") / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(p)
            except OSError:
                continue
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.board
def test_ctrl_c_during_the_suites_leaves_no_qemu_and_keeps_the_summary(tmp_path):
    out = tmp_path / "run"
    proc = bmc_hil_nightly(out, *SMOKE)
    try:
        deadline = time.monotonic() + 300
        qemus: list[int] = []
        while not qemus:
            assert proc.poll() is None and time.monotonic() < deadline, "no suite board came up"
            qemus = _qemu_grandchildren(proc.pid)
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)   # what a terminal's Ctrl-C sends
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    deadline = time.monotonic() + 10
    while not all(_gone(q) for q in qemus) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_gone(q) for q in qemus), f"QEMU {qemus} outlived an interrupted nightly run"
    summary = Summary(out / "summary.html")
    assert "interrupted" in summary.ids
    assert summary.scenarios == {"closed-port": "pass"}   # what was done before stays
    assert (out / "scenarios" / "closed-port.timeline.png").is_file()


def test_a_scenario_whose_board_died_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    from harness import runner
    from harness.board.boardfile import emulated_spec
    from harness.errors import QemuError
    from harness.oracle import Verdict

    def run_scenario(spec, scenario, out, log):
        if scenario.name == "watchdog-starve":
            raise QemuError("QEMU exited unexpectedly (signal 9)", console_tail="watchdog: watchdog0: ...")
        return scenario.name

    monkeypatch.setattr(runner, "run_scenario", run_scenario)
    monkeypatch.setattr(runner, "check_scenario", lambda spec, name, tol: Verdict(name, [], 1, 1, {}, 0, 10**9))
    result = NightlyResult("emulated", tmp_path, time.time())
    nightly_mod.run_scenarios(emulated_spec(), ["watchdog-starve", "closed-port"], tmp_path / "scenarios", 1.0,
                              nightly_mod.Progress(stream=io.StringIO()), result)
    assert [(s.name, s.status) for s in result.scenarios] == [("watchdog-starve", "board died"),
                                                              ("closed-port", "pass")]
    assert "watchdog: watchdog0" in result.scenarios[0].error
    assert result.exit_code == 1
    assert Summary(write_summary(result)).plots == {"closed-port": "scenarios/closed-port.timeline.png"}
