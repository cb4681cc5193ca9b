"""A night runs each scenario once, and a divergence once more on a fresh board: twice is
a finding (the night fails), once then a match is a flake (shown in its own colour with
both verdicts, the night passes). The suites reuse the scenario phase's verdicts.

On the model-as-board (seconds): a seeded image diverges every time, a healthy one never;
the flake is the seeded verdict followed by the healthy one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import nightly as nightly_mod
from harness.board.boardfile import parse_board
from harness.nightly import NightlyResult, Progress, run_scenarios, write_summary
from harness.under_test import REUSE_VERDICTS_ENV, BoardUnderTest
from models.config import DEFAULT_CONFIG

SEEDED = {**DEFAULT_CONFIG, "interface": {**DEFAULT_CONFIG["interface"], "mtu": 1400}}


def board(image=None):
    return parse_board({"kind": "model", **({"image": image} if image else {})}, "<model board>")


def night(spec, tmp_path: Path, names=("handshake",)) -> NightlyResult:
    import io

    result = NightlyResult(spec.name, tmp_path, time.time())
    run_scenarios(spec, list(names), tmp_path / "scenarios", 1.0, Progress(io.StringIO()), result)
    result.finished = time.time()
    write_summary(result)
    return result


def test_a_healthy_scenario_runs_once(tmp_path):
    result = night(board(), tmp_path)
    (s,) = result.scenarios
    assert (s.status, s.first, s.folder) == ("pass", None, "handshake")
    assert sorted(p.name for p in (tmp_path / "scenarios").iterdir() if p.is_dir()) == ["handshake"]
    assert result.exit_code == 0


def test_a_divergence_twice_fails_the_night_with_both_runs_kept(tmp_path):
    result = night(board(SEEDED), tmp_path)
    (s,) = result.scenarios
    assert s.status == "FAIL" and s.first is not None and "diverged twice" in s.detail
    assert {p.name for p in (tmp_path / "scenarios").iterdir() if p.is_dir()} == {"handshake", "handshake-rerun"}
    assert result.exit_code == 1
    summary = json.loads((tmp_path / "summary.json").read_text())["scenarios"][0]
    assert (summary["status"], summary["folder"]) == ("FAIL", "scenarios/handshake-rerun")
    assert summary["first_divergences"] == summary["divergences"] > 0


def test_a_divergence_that_matches_on_the_rerun_is_flaky_and_the_night_passes(tmp_path, monkeypatch):
    seeded, healthy = board(SEEDED), board()
    real = nightly_mod._scenario_outcome
    calls = []

    def first_seeded_then_healthy(spec, sc, folder, tol, progress):
        calls.append(folder.name)
        return real(seeded if len(calls) == 1 else healthy, sc, folder, tol, progress)

    monkeypatch.setattr(nightly_mod, "_scenario_outcome", first_seeded_then_healthy)
    result = night(healthy, tmp_path)
    (s,) = result.scenarios
    assert calls == ["handshake", "handshake-rerun"]
    assert s.status == "flaky" and s.verdict["ok"] and s.first["divergences"]
    assert "then matched on a re-run" in s.detail
    assert result.exit_code == 0
    page = (tmp_path / "summary.html").read_text()
    assert "class='flaky'" in page and "The first run" in page and "scenarios/handshake-rerun/" in page
    # report.json (which the suites reuse) holds the re-run's verdict
    (v,) = json.loads((tmp_path / "scenarios" / "report.json").read_text())["scenarios"]
    assert v["ok"]


def test_an_error_is_not_rerun(tmp_path, monkeypatch):
    calls = []

    def died(spec, sc, folder, tol, progress):
        calls.append(folder.name)
        return nightly_mod.ScenarioOutcome(sc.name, 0.0, error="QEMU exited", board_died=True)

    monkeypatch.setattr(nightly_mod, "_scenario_outcome", died)
    result = night(board(), tmp_path)
    assert calls == ["handshake"] and result.scenarios[0].status == "board died" and result.exit_code == 1


@pytest.fixture
def reused_report(tmp_path):
    night(board(), tmp_path)
    return tmp_path / "scenarios" / "report.json"


def under_test(tmp_path, scale=1.0):
    return BoardUnderTest(board(), tmp_path / "ut", tolerance_scale=scale, log=lambda m: None)


def test_the_suites_reuse_the_nights_verdict(reused_report, tmp_path, monkeypatch):
    monkeypatch.setenv(REUSE_VERDICTS_ENV, str(reused_report))
    v = under_test(tmp_path).run_scenario("handshake", tmp_path / "run")
    assert v.ok and any("reused from" in n for n in v.notes)
    assert not (tmp_path / "run").exists()        # no board was run


@pytest.mark.parametrize("scenario, scale", [("closed-port", 1.0), ("handshake", 2.0)])
def test_another_scenario_or_tolerance_runs_afresh(reused_report, tmp_path, monkeypatch, scenario, scale):
    monkeypatch.setenv(REUSE_VERDICTS_ENV, str(reused_report))
    v = under_test(tmp_path, scale).run_scenario(scenario, tmp_path / "run")
    assert not any("reused from" in n for n in v.notes)
    assert (tmp_path / "run" / "capture.pcap").exists()
