"""The Robot Framework library: its suite passes against the emulated board, and libdoc
documents every keyword."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def library_keywords() -> list[str]:
    """The keyword names `BmcHil` offers, read from its methods (not from libdoc)."""
    from harness.robot import BmcHil

    names = []
    for attr in vars(BmcHil).values():
        name = getattr(attr, "robot_name", None)
        if hasattr(attr, "robot_name"):
            names.append(name or attr.__name__.replace("_", " ").title())
    return names


def test_libdoc_documents_every_keyword_with_an_example(tmp_path):
    html = tmp_path / "BmcHil.html"
    proc = subprocess.run([sys.executable, "-m", "robot.libdoc", "harness.robot.BmcHil", str(html)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = html.read_text()
    spec, _ = json.JSONDecoder().raw_decode(text, text.index("libdoc = {") + len("libdoc = "))
    documented = {kw["name"]: kw["doc"] for kw in spec["keywords"]}
    wanted = library_keywords()
    assert len(wanted) >= 20
    assert {"Run Scenario", "Board Should Match Model", "Handshake Should Match Model"} <= set(wanted)
    for name in wanted:
        assert name in documented, f"{name} missing from libdoc"
        # An example table renders as an HTML table in the keyword's documentation.
        assert "<table" in documented[name], f"{name} has no example table"
    # The library's table of contents links each section, and each section its keywords.
    assert '<li><a href="#Watchdog">Watchdog</a></li>' in spec["doc"]
    assert '<li><a href="#Oracle">Oracle</a></li>' in spec["doc"]
    for name in wanted:
        assert f'title="&quot;{name}&quot; keyword"' in spec["doc"], f"{name} not in the table of contents"


@pytest.mark.board
def test_board_suite_passes_against_the_emulated_board(tmp_path):
    from robot.api import ExecutionResult

    proc = subprocess.run([sys.executable, "-m", "robot", "--outputdir", str(tmp_path), "--console", "dotted",
                           "suites/robot"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    result = ExecutionResult(str(tmp_path / "output.xml"))
    total = result.statistics.total
    assert (total.failed, total.skipped) == (0, 0), proc.stdout[-4000:]
    assert total.passed >= 6
    assert proc.returncode == 0
    assert (tmp_path / "bmc-hil" / "console.log").is_file()


def test_board_should_match_model_fails_listing_the_divergence_rows(tmp_path):
    from harness.oracle import Verdict
    from harness.robot import BmcHil

    library = BmcHil(board="emulated", out=str(tmp_path))   # opens nothing until Boot Board
    missing = {"kind": "MISSING", "stream_name": "TCP_SYNACK", "pred_ns": 2_000_000_000, "obs_ns": None,
               "frame": None, "field": None}
    verdict = Verdict("handshake", [missing], predicted=2, observed=1, timeline={}, start_ns=1_000_000_000,
                      end_ns=4_000_000_000)
    with pytest.raises(AssertionError) as failed:
        library.board_should_match_model(verdict)
    assert "scenario handshake: the board departed from the model in 1 place(s)" in str(failed.value)
    assert "MISSING   TCP_SYNACK" in str(failed.value) and "predicted 1000.0 ms, observed - ms" in str(failed.value)
    library.board_should_match_model(Verdict("handshake", [], 2, 2, {}, 0, 1))


def test_board_should_match_model_before_any_scenario_says_so(tmp_path):
    from harness.errors import BoardError
    from harness.robot import BmcHil

    with pytest.raises(BoardError, match="call `Run Scenario` first"):
        BmcHil(board="emulated", out=str(tmp_path)).board_should_match_model()


SEEDED_SUITE = """*** Settings ***
Library    harness.robot.BmcHil    board=${CURDIR}/board.yaml    out=${OUTPUT DIR}/bmc-hil

*** Test Cases ***
Seeded MTU Fault Fails With Links To Its Artifacts
    ${verdict}=    Run Scenario    handshake
    Run Keyword And Expect Error    *departed from the model*    Board Should Match Model    ${verdict}
"""
SEEDED_MTU_BOARD = """kind: model
image:
  hostname: bmc
  interface: {address: 10.0.2.15/24, gateway: 10.0.2.2, mac: "52:54:00:12:34:56", mtu: 1400}
  services: {ssh: {port: 22}, http: {port: 80}}
"""


def test_a_failed_scenario_logs_links_to_its_capture_console_and_verdict(tmp_path):
    import re

    from robot.api import ExecutionResult, ResultVisitor

    (tmp_path / "board.yaml").write_text(SEEDED_MTU_BOARD)
    (tmp_path / "seeded.robot").write_text(SEEDED_SUITE)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "robot", "--outputdir", str(out), "--console", "dotted",
                           str(tmp_path / "seeded.robot")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

    class Messages(ResultVisitor):
        html: list[str] = []

        def visit_message(self, msg):
            if msg.html:
                self.html.append(msg.message)

    result = ExecutionResult(str(out / "output.xml"))
    result.visit(Messages())
    links = [m for m in Messages.html if "capture.pcap" in m]
    assert links, Messages.html
    hrefs = re.findall(r'href="([^"]+)"', links[-1])
    names = {Path(h).name for h in hrefs}
    assert {"capture.pcap", "console.log", "verdict.json", "predicted.pcap", "report.html"} <= names
    assert all(not Path(h).is_absolute() and (out / h).is_file() for h in hrefs), hrefs   # relative to the log
