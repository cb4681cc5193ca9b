"""Link-flap experiments: verdict logic, the model's window, and a real run."""

from __future__ import annotations

import json

import pytest

from harness.flap import DetectionWindow, FlapCycle, model_windows, run_flap, write_report
from models.clock import timer_wheel_slack
from models.config import FirmwareConfig
from models.phy import PHY_STATE_TIME

W = DetectionWindow(0, 1_000_000_000)


def cycle(down, up, tol=100_000_000):
    return FlapCycle(1, down, up, W, W, tol)


@pytest.mark.parametrize("down, up, verdict", [
    (300_000_000, 900_000_000, "ok"),
    (1_050_000_000, 500_000_000, "ok"),            # inside the tolerance
    (1_200_000_000, 500_000_000, "LATE Link is Down"),
    (500_000_000, 1_300_000_000, "LATE Link is Up"),
    (None, 500_000_000, "MISSING Link is Down"),
    (500_000_000, None, "MISSING Link is Up"),
    (-200_000_000, 500_000_000, "EARLY Link is Down"),
])
def test_cycle_verdict(down, up, verdict):
    assert cycle(down, up).verdict == verdict


def test_model_window_is_one_phylib_poll_period_and_its_timer_slack():
    """phy_queue_state_machine -> mod_delayed_work(100 jiffies): a level-1 timer, up to 9
    jiffies late, so a line comes up to 1.09 s after the change."""
    down, up = model_windows(FirmwareConfig.default(), 2, 5)
    assert down == up == DetectionWindow(0, PHY_STATE_TIME + timer_wheel_slack(PHY_STATE_TIME))
    assert PHY_STATE_TIME + timer_wheel_slack(PHY_STATE_TIME) == 1_090_000_000


def test_report_has_every_cycle_and_a_plot(tmp_path):
    paths = write_report([cycle(300_000_000, 400_000_000), cycle(None, 400_000_000)], tmp_path, {"board": "x"})
    data = json.loads(paths["json"].read_text())
    assert [c["verdict"] for c in data["cycles"]] == ["ok", "MISSING Link is Down"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.board
def test_five_cycle_flap_on_the_emulated_board_stays_inside_the_model_window(booted_board, tmp_path):
    seen = []
    cycles = run_flap(booted_board, 1.5, 1.5, 5, traffic="ssh", on_cycle=seen.append)
    assert len(cycles) == len(seen) == 5
    assert [c.verdict for c in cycles] == ["ok"] * 5, [c.to_json() for c in cycles]
    downs = [e for e in booted_board.host_events if e.name == "link_down"]
    assert len(downs) == 5
