"""Places on a real labgrid coordinator: held for a run and released when the board closes,
Ctrl-C included; a place someone else holds is an error naming the holder, or, with
`wait`, the harness queues for it and gets it once the holder releases it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness.board import load_board_file
from harness.board.labgrid import LabgridBoard, PlaceBusyError, PlaceError


def labgrid_client(lab, user: str, *args: str) -> subprocess.CompletedProcess:
    """labgrid's own client, as another person (LG_USERNAME) on this host."""
    proc = subprocess.run([sys.executable, "-m", "labgrid.remote.client", "-x", lab.address, *args],
                          env=dict(os.environ, LG_USERNAME=user), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def spec(lab, tmp_path, **fields):
    return load_board_file(lab.board_file(tmp_path, **fields))


def test_a_board_holds_its_place_until_it_closes(lab, idle_place, tmp_path):
    board = LabgridBoard(spec(lab, tmp_path, place=idle_place), tmp_path / "out")
    with board:
        assert lab.place(idle_place).acquired == board.lease.identity
        board.check_alive()
    assert lab.place(idle_place).acquired is None
    assert lab.reservations() == []
    events = (tmp_path / "out" / "host-events.jsonl").read_text()
    assert '"place_acquired"' in events and '"place_released"' in events


def test_a_place_held_by_someone_else_is_an_error_naming_the_holder(lab, idle_place, tmp_path):
    labgrid_client(lab, "alice", "-p", idle_place, "acquire")
    try:
        with pytest.raises(PlaceBusyError) as info:
            LabgridBoard(spec(lab, tmp_path, place=idle_place), tmp_path / "out")
        msg = str(info.value)
        assert f"place {idle_place} on the labgrid coordinator at {lab.address} is not free" in msg
        assert f"{idle_place} is held by " in msg and "/alice" in msg
        assert "wait: true" in msg
        assert lab.place(idle_place).acquired.endswith("/alice")   # untouched
        assert lab.reservations() == []
    finally:
        labgrid_client(lab, "alice", "-p", idle_place, "release")


def test_a_second_run_is_refused_then_queues_and_gets_the_place_when_the_first_releases(lab, idle_place, tmp_path):
    first = LabgridBoard(spec(lab, tmp_path / "a", place=idle_place), tmp_path / "a" / "out")
    try:
        with pytest.raises(PlaceBusyError) as info:
            LabgridBoard(spec(lab, tmp_path / "b", place=idle_place), tmp_path / "b" / "out")
        assert f"is held by {first.lease.identity}" in str(info.value)
        assert "that is this user on this host" in str(info.value)

        got, waited = [], []

        def second():
            start = time.monotonic()
            board = LabgridBoard(spec(lab, tmp_path / "c", place=idle_place, wait=60), tmp_path / "c" / "out",
                                 log=waited.append)
            got.append((board, time.monotonic() - start))

        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 20
        while not waited:
            assert time.monotonic() < deadline, "the second run never said it was waiting"
            time.sleep(0.05)
        assert "waiting up to 60 s" in waited[0] and f"{idle_place} is held by" in waited[0]
        time.sleep(1.0)
        assert not got
    finally:
        first.close()
    thread.join(timeout=20)
    assert got, "the second run did not get the place after the first released it"
    board, seconds = got[0]
    with board:
        assert lab.place(idle_place).acquired == board.lease.identity
        assert seconds >= 1.0
    assert lab.place(idle_place).acquired is None
    assert lab.reservations() == []


def test_waiting_gives_up_at_its_deadline_naming_the_holder(lab, idle_place, tmp_path):
    labgrid_client(lab, "bob", "-p", idle_place, "acquire")
    try:
        start = time.monotonic()
        with pytest.raises(PlaceBusyError) as info:
            LabgridBoard(spec(lab, tmp_path, place=idle_place, wait=1.5), tmp_path / "out", log=lambda m: None)
        assert time.monotonic() - start >= 1.5
        assert "after waiting 1.5 s" in str(info.value) and "/bob" in str(info.value)
        assert lab.reservations() == []
    finally:
        labgrid_client(lab, "bob", "-p", idle_place, "release")


def test_a_place_is_found_by_its_tags(lab, idle_place, tmp_path):
    with LabgridBoard(spec(lab, tmp_path, tags={"board": "idle"}), tmp_path / "out") as board:
        assert board.lease.place == idle_place
    with pytest.raises(PlaceBusyError, match="a place tagged board=nothing-has-this"):
        LabgridBoard(spec(lab, tmp_path / "x", tags={"board": "nothing-has-this"}), tmp_path / "x" / "out")
    assert lab.reservations() == []


def test_an_unknown_place_names_the_places_there(lab, idle_place, tmp_path):
    with pytest.raises(PlaceError, match=rf"no place 'nowhere' on the labgrid coordinator at {lab.address} "
                                         rf"\(places: .*{idle_place}"):
        LabgridBoard(spec(lab, tmp_path, place="nowhere"), tmp_path / "out")


def test_ctrl_c_while_waiting_for_a_place_leaves_no_reservation(lab, idle_place, tmp_path):
    """`bmc-hil run` queued behind another holder: Ctrl-C ends it (130) with the queue left clean."""
    labgrid_client(lab, "carol", "-p", idle_place, "acquire")
    try:
        board = lab.board_file(tmp_path, place=idle_place, wait=True)
        run = subprocess.Popen([sys.executable, "-m", "harness", "run", "closed-port", "--board", str(board),
                                "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        deadline = time.monotonic() + 60
        while not lab.reservations():
            assert run.poll() is None, run.stdout.read()
            assert time.monotonic() < deadline, "the run never queued for the place"
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 130, out
        assert lab.reservations() == []
        assert lab.place(idle_place).acquired.endswith("/carol")
    finally:
        labgrid_client(lab, "carol", "-p", idle_place, "release")
