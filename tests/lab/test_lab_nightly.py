"""A night in a lab of two boards: two emulated AST2500s exported as labgrid places by the
bench, a real coordinator and exporters on 127.0.0.1, and `bmc-hil nightly` given both
places' board files. The scenarios are spread over the two places, the pytest suites run on
a pytest-xdist worker per place, Robot on the first; every place is released at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.conftest import bench

pytestmark = pytest.mark.board
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_places(lab, tmp_path_factory):
    folder = tmp_path_factory.mktemp("benches")
    with bench(lab, folder, "night-a", {"board": "ast2500", "rack": "night"}) as a, \
            bench(lab, folder, "night-b", {"board": "ast2500", "rack": "night"}) as b:
        yield a, b


def test_a_nightly_over_two_labgrid_places_passes_and_releases_both(lab, two_places, tmp_path):
    files = [lab.board_file(tmp_path / name, place=name) for name in two_places]
    out = tmp_path / "night"
    proc = subprocess.run([sys.executable, "-m", "harness", "nightly", *(a for f in files for a in ("--board", str(f))),
                           "--out", str(out), "--scenario", "closed-port", "--scenario", "handshake",
                           "--pytest-args", "-k closed", "--robot-args", "--test *Closed*"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [(s["name"], s["status"]) for s in summary["scenarios"]] == [("closed-port", "pass"), ("handshake", "pass")]
    suites = {s["name"]: s for s in summary["suites"]}
    assert suites["pytest"]["passed"] >= 2 and suites["pytest"]["failed"] == suites["pytest"]["errors"] == 0
    assert suites["robot"]["passed"] >= 1 and suites["robot"]["failed"] == 0
    # both places ran a scenario (one each: a worker takes the next when its board is free,
    # and both start at once), and each worker's pytest board was its own place
    events = {}
    for s in summary["scenarios"]:
        records = [json.loads(line) for line in (out / s["folder"] / "host-events.jsonl").read_text().splitlines()]
        events[s["name"]] = next(r for r in records if r["event"] == "place_acquired")
    assert {e["place"] for e in events.values()} == set(two_places), events
    boards = sorted(p.name for p in (out / "pytest").glob("board-gw*"))
    assert boards and set(boards) <= {"board-gw0", "board-gw1"}
    for name in two_places:
        assert lab.place(name).acquired is None
    assert lab.reservations() == []
