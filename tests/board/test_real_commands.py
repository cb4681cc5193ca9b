"""RealBoard's link and power command templates: run as argument lists, failures reported
with what the command said. The console is pyserial's `loop://`."""

from __future__ import annotations

import sys

import pytest

from harness.board.boardfile import parse_board
from harness.board.real import RealBoard
from harness.errors import BoardError, ExecutionError

FIRMWARE = {"interface": {"address": "192.0.2.10/24", "mac": "02:00:00:00:00:01"}}


def board(tmp_path, **templates):
    spec = parse_board({"name": "rack7", "kind": "real", "console": {"url": "loop://"},
                        "ssh": {"host": "192.0.2.10", "password": "pw"}, "firmware": FIRMWARE,
                        **templates}, "lab.yaml")
    return RealBoard(spec, tmp_path / "out", command_timeout=2)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_template_fields_are_filled_and_no_shell_is_involved(tmp_path):
    marker = tmp_path / "called"
    argv = py("import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))")
    with board(tmp_path, link={"down": [*argv, str(marker), "{name}", "$(reboot)", ";", "off"]}) as b:
        b.set_link(False)
    assert marker.read_text() == "rack7 $(reboot) ; off"
    assert b.host_events[-1].name == "link_down"


def test_failing_command_reports_exit_status_and_stderr(tmp_path):
    with board(tmp_path, power={"off": py("import sys; sys.stderr.write('outlet 3 jammed'); sys.exit(4)")}) as b:
        with pytest.raises(ExecutionError) as info:
            b.power_off()
    assert info.value.exit_status == 4 and "outlet 3 jammed" in str(info.value)


def test_missing_program_is_named(tmp_path):
    with board(tmp_path, link={"up": ["no-such-pdu-tool", "on"]}) as b:
        with pytest.raises(ExecutionError, match="'no-such-pdu-tool' not found"):
            b.set_link(True)


def test_hanging_command_times_out(tmp_path):
    with board(tmp_path, power={"reset": py("import time; time.sleep(30)")}) as b:
        with pytest.raises(ExecutionError, match="did not finish within 2 s"):
            b.reset()


def test_verb_without_a_template_names_the_board_file(tmp_path):
    with board(tmp_path) as b:
        with pytest.raises(BoardError, match="lab.yaml: no link.down command"):
            b.set_link(False)


def test_capture_without_an_interface_names_the_board_file(tmp_path):
    with board(tmp_path) as b:
        with pytest.raises(BoardError, match="lab.yaml: no capture.interface"):
            b.capture_start(tmp_path / "x.pcap")
