"""The board's lifecycle is guarded as labgrid's drivers are: a verb that needs a running
board on one the harness has not powered on (or has powered off) is a clear BoardError
naming the board, the verb and the state, and every verb on a closed board is one too;
what a board can do is declared (Board.emulator, Board.wired, Board.service_address),
never probed for."""

from __future__ import annotations

import pytest

from harness.board.base import Board, Lifecycle
from harness.board.boardfile import parse_board
from harness.board.modelboard import ModelBoard
from harness.board.real import RealBoard
from harness.errors import BoardError
from models.config import FirmwareConfig

FIRMWARE = {"interface": {"address": "192.0.2.10/24", "mac": "02:00:00:00:00:01"}}


def model(tmp_path, peer: str = "slirp") -> ModelBoard:
    cfg = FirmwareConfig.default()
    return ModelBoard(cfg, tmp_path / "model", cfg, peer=peer)


def real(tmp_path) -> RealBoard:
    spec = parse_board({"name": "rack7", "kind": "real", "console": {"url": "loop://"},
                        "ssh": {"host": "192.0.2.10", "password": "pw"}, "firmware": FIRMWARE,
                        "link": {"up": ["true"], "down": ["true"]}}, "lab.yaml")
    return RealBoard(spec, tmp_path / "real", command_timeout=5)


@pytest.mark.parametrize("verb", ["set_link", "reset", "console", "watchdog_start"])
def test_a_verb_before_power_on_names_the_board_the_verb_and_the_state(tmp_path, verb):
    board = model(tmp_path)
    assert board.lifecycle is Lifecycle.INACTIVE
    call = {"set_link": lambda: board.set_link(False), "reset": board.reset,
            "console": lambda: board.console, "watchdog_start": lambda: board.watchdog_start(5)}[verb]
    with pytest.raises(BoardError, match=rf"board 'model': {verb} on a board that is inactive \(power_on\(\) first\)"):
        call()
    assert [e.name for e in board.host_events] == []    # nothing was done, nothing recorded
    board.close()


def test_power_on_makes_a_board_active_power_off_inactive_and_close_closed(tmp_path):
    board = model(tmp_path)
    board.power_on()
    assert board.lifecycle is Lifecycle.ACTIVE
    board.set_link(False)
    board.power_off()
    assert board.lifecycle is Lifecycle.INACTIVE
    with pytest.raises(BoardError, match="set_link on a board that is inactive"):
        board.set_link(True)
    board.close()
    assert board.lifecycle is Lifecycle.CLOSED
    for verb, call in (("power_on", board.power_on), ("capture_start", lambda: board.capture_start(tmp_path / "c"))):
        with pytest.raises(BoardError, match=f"board 'model': {verb} on a board that is closed"):
            call()
    assert [e.name for e in board.host_events] == ["power_on", "link_down", "power_off"]


def test_a_real_board_is_active_until_closed(tmp_path):
    """A real board may already be running when the harness takes it: its verbs work from
    the start, and none after close()."""
    board = real(tmp_path)
    assert board.lifecycle is Lifecycle.ACTIVE
    board.set_link(False)
    board.close()
    with pytest.raises(BoardError, match="board 'rack7': set_link on a board that is closed"):
        board.set_link(True)
    with pytest.raises(BoardError, match="board 'rack7': run on a board that is closed"):
        board.run("true")


def test_what_a_board_can_do_is_declared(tmp_path):
    r = real(tmp_path)
    assert (r.emulator, r.wired, r.service_address("http", 80)) == (None, False, ("192.0.2.10", 80))
    r.close()
    m = model(tmp_path, peer="stalled")
    assert (m.emulator, m.wired) == (None, True)
    with pytest.raises(BoardError, match="no sockets on this machine"):
        m.service_address("http", 80)
    m.close()


def test_every_driver_guards_the_verbs_it_defines():
    """The guard is put on by Board itself (__init_subclass__), so a driver cannot forget it."""
    from harness.board.labgrid import LabgridBoard
    from harness.board.qemu import QemuBoard

    for cls in (QemuBoard, RealBoard, LabgridBoard, ModelBoard):
        assert issubclass(cls, Board) and not cls.__abstractmethods__
        for verb in ("set_link", "reset", "console", "ssh", "power_on", "capture_start"):
            attr = getattr(cls, verb)
            fn = attr.fget if isinstance(attr, property) else attr
            assert getattr(fn, "__wrapped__", None) is not None, (cls.__name__, verb)
