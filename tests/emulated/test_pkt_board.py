"""`bmc-hil pkt --target board`: the corpus on the emulated board's own Linux, as a user
runs it (the command line, one boot for every script). A script that passes on the model
and fails here is a model bug or a wrong script: the board is Linux."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.board

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "suites" / "pkt").glob("*.pkt"))

# Scripts the board fails for a reason the project knows and has not fixed, with the line
# and message they must fail with (strict: one that passes must leave this table).
KNOWN_BOARD_DIFFERENCES: dict[str, tuple[int, str]] = {}


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkt-board")
    # A script the board must fail: the SYN-ACK's window is Linux's 65160, not 65161.
    wrong = tmp / "wrong-synack-window.pkt"
    wrong.write_text((ROOT / "suites/pkt/handshake-passive-options.pkt").read_text()
                     .replace("> S. 0:0(0) ack 1 win 65160", "> S. 0:0(0) ack 1 win 65161"))
    # And one whose call must fail: a second listen() on a bound port.
    refused = tmp / "wrong-errno.pkt"
    refused.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n"
                       "+0 listen(3, 1) = 0\n+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4\n"
                       "+0 bind(4, ..., ...) = 0\n")
    scripts = [str(p) for p in CORPUS] + [str(wrong), str(refused)]
    proc = subprocess.run([sys.executable, "-m", "harness", "pkt", *scripts, "--target", "board", "--json",
                           "--out", str(tmp / "out")], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    results = {Path(s["script"]).name: s for s in json.loads(proc.stdout)["scripts"]}
    return results, tmp / "out", proc


def _describe(s) -> str:
    f = s.get("failure") or {}
    return f"line {f.get('line')}: {f.get('message')}\n  expected {f.get('expected')}\n  actual   {f.get('actual')}"


@pytest.mark.parametrize("script", [p.name for p in CORPUS])
def test_corpus_script_on_the_emulated_board(board_run, script):
    results, _, _ = board_run
    s = results[script]
    if script in KNOWN_BOARD_DIFFERENCES:
        line, message = KNOWN_BOARD_DIFFERENCES[script]
        assert not s["passed"], f"{script} passes on the board now: take it out of KNOWN_BOARD_DIFFERENCES"
        assert s["failure"]["line"] == line and message in s["failure"]["message"], _describe(s)
        return
    assert s["passed"], f"{script} on the emulated board: {_describe(s)}"


def test_the_board_target_fails_what_linux_does_not_do(board_run):
    results, _, _ = board_run
    s = results["wrong-synack-window.pkt"]
    assert not s["passed"] and s["failure"]["line"] == 11 and "window" in s["failure"]["message"]
    assert "win 65160" in s["failure"]["actual"]
    s = results["wrong-errno.pkt"]
    assert not s["passed"] and s["failure"]["line"] == 5 and s["failure"]["actual"] == "= -1 EADDRINUSE"


def test_the_run_leaves_the_wire_capture_and_the_mapping(board_run):
    results, out, proc = board_run
    assert proc.returncode == 1, "the two wrong scripts fail"
    assert (out / "capture.pcap").stat().st_size > 10_000 and (out / "console.log").exists()
    notes = [n for s in results.values() for n in s.get("notes", [])]
    assert len(notes) == len(results) and all("board clock" in n for n in notes)
    remotes = {n.split()[1] for n in notes}
    assert len(remotes) == len(results), "each script has its own remote address and port"
