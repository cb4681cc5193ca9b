"""The board against the model: each built-in scenario (a handshake to each declared
service, a connect to a closed port, a link flap, a starved watchdog) runs on a fresh
board, and the oracle compares what it did with what Linux 6.1 would have done.

    pytest suites --board emulated -k matches_the_model

A failure lists the divergence rows; the test's folder holds the run's capture, console
and QMP logs, `report.html` (divergence table) and the timeline plot, all named in the
JUnit XML.
"""

from __future__ import annotations

import pytest

from harness.pytest_plugin import assert_board_matches_model
from harness.scenario import builtin_scenarios


@pytest.mark.parametrize("scenario", list(builtin_scenarios()))
def test_builtin_scenario_matches_the_model(hil_oracle, scenario):
    verdict = hil_oracle.run(scenario)
    # A run that compared nothing would pass vacuously: every built-in scenario provokes
    # something the kernel answers by itself.
    assert verdict.predicted > 0, f"the model predicted nothing for {scenario}"
    assert_board_matches_model(verdict, hil_oracle.folder)
