"""The pytest plugin, run as users run it: `python -m pytest ... --board ...` in a child
process. Without a board nothing boots; with the emulated board the suites pass, each
test's artifacts are in its folder and named in the JUnit XML, and a board that a test
disrupted or killed is brought back for the next test."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

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
        # An oracle test's logs are in the run folder of each scenario it ran, beside its report.
        runs = sorted(p for p in folder.iterdir() if p.is_dir()) if "hil_report" in props else [folder]
        assert runs, name
        for run in runs:
            assert (run / "console.log").is_file(), name
            assert (run / "host-events.jsonl").is_file(), name
        if "hil_report" in props:
            assert (runs[0] / "capture.pcap").stat().st_size > 24, name
            assert Path(props["hil_divergences"]).is_file() and Path(props["hil_report"]).is_file(), name
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


# -- the oracle fixture ----------------------------------------------------------------------
def synthetic_verdict(rows: list[dict]):
    from harness.oracle import Verdict

    return Verdict("closed-port", rows, predicted=1, observed=len(rows), timeline={}, start_ns=1_000_000_000,
                   end_ns=3_000_000_000)


def test_assert_board_matches_model_fails_listing_the_divergence_rows():
    from harness.pytest_plugin import assert_board_matches_model

    rst_late = {"kind": "LATE", "stream_name": "TCP_RST", "pred_ns": 1_200_000_000, "obs_ns": 1_650_000_000,
                "frame": 7, "field": None}
    ttl = {"kind": "FIELD", "stream_name": "TCP_RST", "pred_ns": 1_200_000_000, "obs_ns": 1_210_000_000,
           "frame": 7, "field": "ip_ttl", "pred_value": 64, "obs_value": 255}
    with pytest.raises(AssertionError) as failed:
        assert_board_matches_model(synthetic_verdict([rst_late, ttl]), Path("/runs/closed-port"))
    message = str(failed.value)
    assert "scenario closed-port: the board departed from the model in 2 place(s)" in message
    assert "LATE      TCP_RST" in message and "predicted 200.0 ms, observed 650.0 ms (frame 7)" in message
    assert "ip_ttl: predicted 64, observed 255" in message
    assert "/runs/closed-port" in message


def test_assert_board_matches_model_passes_a_verdict_without_rows():
    from harness.pytest_plugin import assert_board_matches_model

    assert_board_matches_model(synthetic_verdict([]))


def test_an_oracle_test_is_skipped_without_a_board(tmp_path):
    write_tests(tmp_path, """
        def test_scenario(hil_oracle):
            raise AssertionError("must not run")
    """)
    proc = run_pytest("test_inline.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "needs a board" in proc.stdout


ORACLE_TESTS = """
    from harness.pytest_plugin import assert_board_matches_model

    def test_a_session_board(hil_board):
        assert hil_board.run("echo alive").stdout.strip() == "alive"

    def test_b_closed_port_matches(hil_oracle):
        assert_board_matches_model(hil_oracle.run("closed-port"))

    def test_c_session_board_is_back_after_the_oracle(hil_board):
        assert hil_board.run("echo alive").stdout.strip() == "alive"
"""


@pytest.mark.board
def test_oracle_fixture_keeps_its_report_in_the_tests_folder_and_junit_and_the_session_board_comes_back(tmp_path):
    write_tests(tmp_path, ORACLE_TESTS)
    junit = tmp_path / "junit.xml"
    proc = run_pytest("test_inline.py", "--board", "emulated", "--hil-out", tmp_path / "hil", "--junitxml", junit,
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout
    props = properties(junit_cases(junit)["test_b_closed_port_matches"])
    folder = Path(props["hil_artifacts"])
    assert folder.parent == tmp_path / "hil" / "tests"
    assert Path(props["hil_report"]) == folder / "report.html"
    report = json.loads(Path(props["hil_divergences"]).read_text())
    assert [(s["scenario"], s["ok"], s["divergences"]) for s in report["scenarios"]] == [("closed-port", True, [])]
    assert Path(props["hil_timeline:closed-port"]).read_bytes()[:4] == b"\x89PNG"
    assert props["hil_verdict:closed-port"] == "pass"
    assert (folder / "01-closed-port" / "capture.pcap").stat().st_size > 24


# -- pytest-html: the scenarios a test ran, in its row ------------------------------------
HTML_TESTS = """
    from harness.pytest_plugin import assert_board_matches_model

    def test_handshake_twice(hil_oracle):
        hil_oracle.run("handshake")
        assert_board_matches_model(hil_oracle.run("handshake"))

    def test_plain():
        pass
"""
SEEDED_MTU_BOARD = """kind: model
image:
  hostname: bmc
  interface: {address: 10.0.2.15/24, gateway: 10.0.2.2, mac: "52:54:00:12:34:56", mtu: 1400}
  services: {ssh: {port: 22}, http: {port: 80}}
"""


@pytest.mark.parametrize("self_contained", [False, True], ids=["assets", "self-contained"])
def test_pytest_html_rows_show_each_scenarios_timeline_and_artifact_links(tmp_path, self_contained):
    from tests.test_report import Page, broken_links, render

    write_tests(tmp_path, HTML_TESTS)
    (tmp_path / "board.yaml").write_text(SEEDED_MTU_BOARD)
    page = tmp_path / "html" / "report.html"
    proc = run_pytest("test_inline.py", "--board", "board.yaml", "--hil-out", "out", "--html", page,
                      *(["--self-contained-html"] if self_contained else []), cwd=tmp_path)
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    dom = Page(render(page, tmp_path / "profile"))   # pytest-html draws its rows with scripts
    runs = tmp_path / "out" / "tests" / "test_inline.py_test_handshake_twice"
    linked = {(page.parent / unquote(x)).resolve() for x in dom.links if "out/tests" in x}
    for run in ("01-handshake", "02-handshake"):
        for name in ("capture.pcap", "predicted.pcap", "console.log", "verdict.json"):
            assert runs / run / name in linked, (run, name)
    assert runs / "report.html" in linked
    assert not broken_links(page.parent, dom.links, dom.ids)
    text = page.read_text()
    assert text.count("timeline: handshake") >= 2 and "FAIL: 4 divergences" in text
    if self_contained:
        assert "data:image/png;base64," in text
    else:
        assert len(list((page.parent / "assets").glob("*.png"))) == 2
