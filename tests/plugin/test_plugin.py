"""The pytest plugin, run as users run it: `python -m pytest ... --board ...` in a child
process. Without a board nothing boots; with the emulated board the suites pass, each
test's artifacts are in its folder and named in the JUnit XML, and a board that a test
disrupted or killed is brought back for the next test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def junit_cases(junit: Path) -> dict[str, ET.Element]:
    return {tc.get("name"): tc for tc in ET.parse(junit).iter("testcase")}


def properties(tc: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in tc.iter("property")}


def write_tests(folder: Path, source: str) -> Path:
    path = folder / "test_inline.py"
    path.write_text(textwrap.dedent(source))
    return path


# -- without a board: nothing boots -------------------------------------------------------
def test_board_tests_are_skipped_with_a_reason_when_no_board_is_given(tmp_path):
    write_tests(tmp_path, """
        def test_needs_board(hil_board):
            raise AssertionError("must not run")

        def test_plain():
            pass
    """)
    proc = run_pytest("test_inline.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout
    assert "needs a board: run with --board FILE|emulated" in proc.stdout
    assert not (tmp_path / "bmc-hil-runs").exists()


def test_real_only_test_is_skipped_on_the_emulated_board_without_booting_it(tmp_path):
    write_tests(tmp_path, """
        import pytest

        @pytest.mark.real_only
        def test_lab_only(hil_board):
            raise AssertionError("must not run")
    """)
    proc = run_pytest("test_inline.py", "--board", "emulated", "--hil-out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "real boards only; emulated is emulated" in proc.stdout
    assert not (tmp_path / "out" / "board").exists()


def test_tolerance_scale_must_be_positive(tmp_path):
    write_tests(tmp_path, "def test_plain():\n    pass\n")
    proc = run_pytest("test_inline.py", "--tolerance-scale", "0", cwd=tmp_path)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--tolerance-scale must be > 0, got 0.0" in proc.stderr


def test_a_broken_board_file_is_a_usage_error_naming_the_field(tmp_path):
    (tmp_path / "lab.yaml").write_text("kind: real\nconsole: {url: /dev/ttyUSB0}\n")
    write_tests(tmp_path, "def test_plain():\n    pass\n")
    proc = run_pytest("test_inline.py", "--board", "lab.yaml", cwd=tmp_path)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "lab.yaml" in proc.stderr and "ssh: missing" in proc.stderr


# -- the suites against the emulated board ------------------------------------------------
@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite-run")
    junit = out / "junit.xml"
    proc = run_pytest("suites", "--board", "emulated", "--hil-out", out / "hil", "--junitxml", junit, cwd=ROOT)
    return proc, junit, out / "hil"


@pytest.mark.board
def test_suites_pass_against_the_emulated_board(suite_run):
    proc, junit, _ = suite_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    suite = next(ET.parse(junit).iter("testsuite"))
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "0", "0")
    assert int(suite.get("tests")) >= 7


@pytest.mark.board
def test_junit_names_each_tests_artifact_folder_and_it_holds_the_logs(suite_run):
    _, junit, hil_out = suite_run
    for name, tc in junit_cases(junit).items():
        props = properties(tc)
        folder = Path(props["hil_artifacts"])
        assert folder.parent == hil_out / "tests", name
        assert (folder / "console.log").is_file(), name
        assert (folder / "host-events.jsonl").is_file(), name
        if "hil_capture" in props:
            assert Path(props["hil_capture"]).stat().st_size > 24, name   # more than a pcap header


@pytest.mark.board
def test_a_tests_console_log_holds_its_own_span_only(suite_run):
    _, junit, _ = suite_run
    cases = junit_cases(junit)
    flap = Path(properties(cases["test_link_flap_while_idle_is_logged_within_the_phylib_window"])["hil_artifacts"])
    console = (flap / "console.log").read_text()
    assert "eth0: Link is Down" in console and "eth0: Link is Up" in console
    assert "Linux version" not in console   # the boot belongs to no test's span
    events = (flap / "host-events.jsonl").read_text()
    assert '"link_down"' in events and '"link_up"' in events
    watchdog = Path(properties(cases["test_starved_watchdog_resets_the_board_and_ssh_comes_back"])["hil_artifacts"])
    assert '"WATCHDOG"' in (watchdog / "qmp.jsonl").read_text()


# -- disruption and death -------------------------------------------------------------------
RECOVERY_TESTS = """
    import os
    import signal

    import pytest

    killed = []

    @pytest.mark.disruptive
    def test_a_disrupts_the_board(hil_board):
        hil_board.run("touch /tmp/left-behind")
        hil_board.set_link(False)

    def test_b_runs_on_a_healthy_board(hil_board):
        assert hil_board.link_up
        assert hil_board.run("test -e /tmp/left-behind", check=False).exit_status == 1

    def test_c_kills_the_board(hil_board):
        killed.append(hil_board.pid)
        os.kill(hil_board.pid, signal.SIGKILL)
        os.waitid(os.P_PID, hil_board.pid, os.WEXITED | os.WNOWAIT)

    def test_d_runs_on_a_restarted_board(hil_board):
        assert hil_board.pid not in killed
        assert hil_board.run("echo alive").stdout.strip() == "alive"
"""


@pytest.fixture(scope="module")
def recovery_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recovery")
    write_tests(folder, RECOVERY_TESTS)
    junit = folder / "junit.xml"
    proc = run_pytest("test_inline.py", "--board", "emulated", "--hil-out", folder / "hil", "--junitxml", junit,
                      cwd=folder)
    return proc, junit_cases(junit)


@pytest.mark.board
def test_a_disruptive_test_leaves_the_board_healthy_for_the_next(recovery_run):
    proc, cases = recovery_run
    assert cases["test_a_disrupts_the_board"].find("failure") is None, proc.stdout[-3000:]
    assert cases["test_b_runs_on_a_healthy_board"].find("failure") is None, proc.stdout[-3000:]


@pytest.mark.board
def test_a_board_killed_mid_test_fails_that_test_with_the_console_tail(recovery_run):
    proc, cases = recovery_run
    failure = cases["test_c_kills_the_board"].find("failure")
    assert failure is not None, proc.stdout[-3000:]
    text = failure.get("message", "") + (failure.text or "")
    assert "QEMU exited unexpectedly" in text
    assert "--- console tail ---" in text and "eth0: Link is Up" in text


@pytest.mark.board
def test_the_test_after_a_death_passes_on_a_restarted_board(recovery_run):
    proc, cases = recovery_run
    assert cases["test_d_runs_on_a_restarted_board"].find("failure") is None, proc.stdout[-3000:]
    assert cases["test_d_runs_on_a_restarted_board"].find("error") is None, proc.stdout[-3000:]
    assert "1 failed, 3 passed" in proc.stdout
