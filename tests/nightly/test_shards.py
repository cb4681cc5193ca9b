"""Several boards in one night: the scenarios are spread over the boards (a worker process
per board, each taking the next scenario when its board is free), the report lists them in
the order asked, each row names its board, and a seeded board's scenarios diverge twice
while the healthy board's pass. The pytest plugin gives each pytest-xdist worker a board of
its own. On the model-as-board: seconds."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from harness.board import load_board_file
from harness.nightly import NightlyError, NightlyResult, Progress, nightly, run_scenarios, write_summary
from models.config import DEFAULT_CONFIG

SEEDED = {**DEFAULT_CONFIG, "interface": {**DEFAULT_CONFIG["interface"], "mtu": 1400}}
NAMES = ["handshake", "closed-port", "syn-retransmit", "icmp-echo"]


def board_file(folder: Path, name: str, image: dict | None = None) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"kind": "model", "name": name, **({"image": image} if image else {})}))
    return path


def sharded(tmp_path: Path, files: list[Path], names=NAMES) -> tuple[NightlyResult, str]:
    log = io.StringIO()
    result = NightlyResult("shards", tmp_path, time.time())
    run_scenarios([load_board_file(str(f)) for f in files], list(names), tmp_path / "scenarios", 1.0,
                  Progress(log), result, [str(f) for f in files])
    result.finished = time.time()
    write_summary(result)
    return result, log.getvalue()


def test_scenarios_spread_over_two_boards_are_each_judged_once_and_reported_in_order(tmp_path):
    files = [board_file(tmp_path, "bmc-a"), board_file(tmp_path, "bmc-b")]
    result, log = sharded(tmp_path, files)
    assert [s.name for s in result.scenarios] == NAMES
    assert all(s.status == "pass" and s.board in ("bmc-a", "bmc-b") for s in result.scenarios), log
    report = json.loads((tmp_path / "scenarios" / "report.json").read_text())
    assert [v["scenario"] for v in report["scenarios"]] == NAMES
    assert all((tmp_path / "scenarios" / s.folder / "verdict.json").exists() for s in result.scenarios)
    assert (tmp_path / "scenarios" / "worker-0.log").exists() and (tmp_path / "scenarios" / "worker-1.log").exists()
    assert all(f" on {s.board})" in log for s in result.scenarios), log
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["status"] for s in summary["scenarios"]] == ["pass"] * len(NAMES)


def test_a_seeded_board_among_two_fails_the_scenarios_it_ran_twice(tmp_path):
    """Each worker re-runs its own divergences on its board: the seeded board's scenarios
    diverge twice (a finding), the healthy board's pass. Which board runs which scenario is
    up to the order they finish in, so the test reads it from the rows."""
    files = [board_file(tmp_path, "healthy"), board_file(tmp_path, "seeded", SEEDED)]
    result, log = sharded(tmp_path, files, ["handshake", "reboot", "handshake", "reboot"])
    assert len(result.scenarios) == 4, log
    for s in result.scenarios:
        if s.board == "seeded":
            assert s.status == "FAIL" and s.first is not None and s.detail.startswith("diverged twice"), log
        else:
            assert s.board == "healthy" and s.status == "pass", log
    assert result.exit_code == (1 if any(s.board == "seeded" for s in result.scenarios) else 0)


def test_a_worker_that_dies_is_that_scenarios_error_and_the_other_board_goes_on(tmp_path, monkeypatch):
    """A worker process that cannot run (here: a board file removed after it was read) ends;
    the scenario it was given is an error naming the worker's log, and the other board runs
    the rest."""
    good, gone = board_file(tmp_path, "good"), board_file(tmp_path, "gone")
    specs = [load_board_file(str(good)), load_board_file(str(gone))]
    gone.unlink()
    result = NightlyResult("shards", tmp_path, time.time())
    run_scenarios(specs, ["closed-port", "handshake", "closed-port"], tmp_path / "scenarios", 1.0,
                  Progress(io.StringIO()), result, [str(good), str(gone)])
    errors = [s for s in result.scenarios if s.error is not None]
    assert len(errors) <= 1 and all("worker for board gone" in s.error and "worker-1.log" in s.error for s in errors)
    assert len(result.scenarios) == 3
    assert sum(s.status == "pass" for s in result.scenarios) == 3 - len(errors)


def test_one_lab_board_named_twice_is_refused(tmp_path):
    lab = tmp_path / "lab.yaml"
    lab.write_text(yaml.safe_dump({"kind": "real", "console": {"url": "rfc2217://127.0.0.1:1"},
                                   "ssh": {"host": "127.0.0.1", "password": "x"}, "firmware": DEFAULT_CONFIG}))
    with pytest.raises(NightlyError, match="named twice"):
        nightly([str(lab), str(lab)], tmp_path / "night", scenarios=["closed-port"])
    assert not (tmp_path / "night").exists()


# -- the pytest plugin: a board per pytest-xdist worker ------------------------------------------
def run_pytest(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_each_xdist_worker_gets_the_board_of_its_number(tmp_path):
    files = [board_file(tmp_path, "bmc-a"), board_file(tmp_path, "bmc-b")]
    (tmp_path / "test_inline.py").write_text(textwrap.dedent("""
        import os, pytest
        from harness.pytest_plugin import hil_options

        @pytest.mark.parametrize("i", range(6))
        def test_board(request, i):
            opts = hil_options(request.config)
            worker = os.environ["PYTEST_XDIST_WORKER"]
            print(f"@@ {worker} {opts.spec.name}")
            assert opts.spec.name == {"gw0": "bmc-a", "gw1": "bmc-b"}[worker]
    """))
    proc = run_pytest("-n", "2", "test_inline.py", "--board", files[0], "--board", files[1], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout


def test_several_boards_without_xdist_workers_is_a_usage_error(tmp_path):
    files = [board_file(tmp_path, "bmc-a"), board_file(tmp_path, "bmc-b")]
    (tmp_path / "test_inline.py").write_text("def test_plain():\n    pass\n")
    proc = run_pytest("test_inline.py", "--board", files[0], "--board", files[1], cwd=tmp_path)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--board is given 2 times" in proc.stderr and "-n 2" in proc.stderr


def test_run_over_two_boards_judges_each_scenario_once_and_reports_in_order(tmp_path):
    """`bmc-hil run --board A --board B`: the scenarios spread over both boards (a worker
    each), each judged once (no re-run: a seeded board's divergence is a FAIL at once),
    report.json in the order asked; exit 1 for the divergence. The same lab board twice is
    refused before anything runs."""
    healthy, seeded = board_file(tmp_path, "bmc-a"), board_file(tmp_path, "bmc-b", SEEDED)
    out = tmp_path / "run"
    names = ["handshake", "closed-port", "handshake"]
    proc = subprocess.run([sys.executable, "-m", "harness", "run", *names, "--board", str(healthy), "--board",
                           str(seeded), "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    report = json.loads((out / "report.json").read_text())
    assert [v["scenario"] for v in report["scenarios"]] == names
    assert report["board"] == "bmc-a + bmc-b"
    for folder in ("handshake", "closed-port", "handshake-2"):
        assert (out / folder / "verdict.json").exists() and not (out / f"{folder}-rerun").exists()
    # the MTU seed shows on handshake's SYN-ACK MSS: whichever board ran a handshake decides it
    mss_rows = [v for v in report["scenarios"] if v["scenario"] == "handshake" and v["divergences"]]
    assert (proc.returncode == 1) == bool(mss_rows), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / "worker-0.log").exists() and (out / "worker-1.log").exists()
    lab = tmp_path / "lab.yaml"
    (tmp_path / "firmware.json").write_text(json.dumps(DEFAULT_CONFIG))
    lab.write_text(yaml.safe_dump({"kind": "labgrid", "coordinator": "127.0.0.1:1", "place": "p",
                                   "firmware": "firmware.json"}))
    twice = subprocess.run([sys.executable, "-m", "harness", "run", "closed-port", "--board", str(lab), "--board",
                            str(lab), "--out", str(tmp_path / "twice")], capture_output=True, text=True, timeout=60)
    assert twice.returncode == 2 and "the same lab board is named twice" in twice.stderr
