"""`bmc-hil nightly`: the unattended run. Every scenario through the oracle, then the pytest
and Robot suites, each in its own child process; one `summary.html` at the end.

    DIR/summary.html, summary.json      the run at a glance (rewritten after each phase)
    DIR/scenarios/                      report.json, report.html, <scenario>.timeline.png,
                                        and each scenario's own run folder (capture, logs)
    DIR/junit.xml, DIR/pytest/, DIR/pytest.log
    DIR/robot/ (output.xml, log.html, report.html), DIR/robot.log

A scenario whose board dies (panic, QEMU gone, SSH gone) is recorded with the harness's
error and its console tail, and the run goes on with the next. The suites' own plugin and
library bring their board back after a death. Ctrl-C (or SIGTERM) ends the child that is
running by its pid, and the summary of what was done is still written.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.board.boardfile import BoardSpec
from harness.errors import BoardError, HarnessError, Terminated
from harness.oracle import Tolerance, Verdict
from harness.paths import prepare_run_dir
from harness.proc import die_with_parent
from harness.report import ReportCache

# How long a child gets to write its results after Ctrl-C before it is terminated, then killed.
CHILD_INTERRUPT_GRACE_S = 30.0
CHILD_TERMINATE_GRACE_S = 10.0


class NightlyError(HarnessError):
    """The nightly run could not start (bad scenario, no suites folder)."""


@dataclass
class ScenarioOutcome:
    """One scenario: its verdict (as in report.json), or what stopped it. A divergence is
    run once more on a fresh board: `first` keeps the first verdict when it diverged."""

    name: str
    seconds: float
    verdict: dict | None = None      # the scenario's entry of report.json (the re-run's, if any)
    error: str | None = None
    board_died: bool = False
    folder: str = ""                 # its run folder under scenarios/
    first: dict | None = None        # the first verdict, when it diverged and the scenario ran again
    board: str = ""                  # the board it ran on (several boards: which one)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "board died" if self.board_died else "error"
        if self.verdict.get("error"):
            return "error"
        if self.first is not None:
            return "flaky" if self.verdict["ok"] else "FAIL"
        return "pass" if self.verdict["ok"] else "FAIL"

    @property
    def detail(self) -> str:
        if self.first is None:
            return ""
        if self.verdict["ok"]:
            return f"diverged ({len(self.first['divergences'])} rows), then matched on a re-run"
        return f"diverged twice ({len(self.first['divergences'])}, then {len(self.verdict['divergences'])} rows)"


@dataclass
class SuiteOutcome:
    """One suite run (pytest or Robot): its totals and where its results are."""

    name: str
    command: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)   # (test, first line of why)
    links: dict[str, str] = field(default_factory=dict)              # label -> path relative to DIR
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0 and self.errors == 0 and self.tests > 0


@dataclass
class NightlyResult:
    board: str
    out: Path
    started: float
    scenarios: list[ScenarioOutcome] = field(default_factory=list)
    suites: list[SuiteOutcome] = field(default_factory=list)
    interrupted: BaseException | bool = False   # the KeyboardInterrupt (Terminated: SIGTERM)
    finished: float | None = None
    scenario_phase_s: float | None = None       # the scenario phase's wall time (all boards)
    # what report.html's earlier writes drew, so each scenario's plot is drawn once
    report_cache: ReportCache = field(default_factory=ReportCache, repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        """0 all passed; 1 a divergence, a failed test or a board that died; 2 an error."""
        if self.interrupted or any(s.status == "error" for s in self.scenarios) or \
                any(s.error is not None for s in self.suites):
            return 2
        # A scenario that diverged and then matched on a fresh board is flaky: shown, not failed.
        if any(s.status not in ("pass", "flaky") for s in self.scenarios) or any(not s.ok for s in self.suites):
            return 1
        return 0


# -- progress ------------------------------------------------------------------------------
class Progress:
    """What the run is doing, on stderr: a rich display at a terminal, plain lines otherwise."""

    def __init__(self, stream=None):
        from rich.console import Console

        self._console = Console(file=stream or sys.stderr, stderr=stream is None)
        self._rich = None
        self._task = None
        if self._console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                SpinnerColumn(), TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.description}"), console=self._console, transient=False)
            self._rich.start()

    def phase(self, name: str, total: int | None) -> None:
        if self._rich is not None:
            if self._task is not None:
                self._rich.update(self._task, description="done")
            self._task = self._rich.add_task("", total=total, phase=name)
        else:
            self.line(f"== {name}" + (f" ({total})" if total else ""))

    def total(self, total: int) -> None:
        if self._rich is not None and self._task is not None:
            self._rich.update(self._task, total=total)

    def advance(self, what: str) -> None:
        if self._rich is not None:
            self._rich.update(self._task, advance=1, description=what)
            self._rich.console.print(f"  {what}")
        else:
            self.line(f"  {what}")

    def note(self, what: str) -> None:
        if self._rich is not None:
            self._rich.update(self._task, description=what[:80])
        # Plain output stays terse: a CI log gets one line per result, not every step.

    def line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


# -- the phases ----------------------------------------------------------------------------
def run_scenarios(specs: BoardSpec | list[BoardSpec], names: list[str], out: Path, scale: float, progress: Progress,
                  result: NightlyResult, board_args: list[str] | None = None, rerun: bool = True) -> None:
    """Each scenario on a fresh board through the oracle; report.json and PNGs in `out`.

    With one board the scenarios run here, one after the other. With several, each board
    gets a worker process (`python -m harness.nightly worker`) that takes the next scenario
    as soon as its board is free, so the scenarios are spread over the boards as they end;
    `board_args` are how a worker names its board (a board file's absolute path, or
    `emulated`). `rerun`: a divergence runs once more on a fresh board (the nightly's
    flake rule); `bmc-hil run` judges each scenario once."""
    from harness.paths import unique_names
    from harness.scenario import load_scenario

    specs = [specs] if isinstance(specs, BoardSpec) else list(specs)
    scenarios = [load_scenario(n) for n in names]   # all parsed before a board is touched
    tol = Tolerance().scaled(scale)
    progress.phase("scenarios", len(scenarios))
    folders = unique_names([sc.name for sc in scenarios])
    if len(specs) == 1:
        for sc, folder in zip(scenarios, folders, strict=True):
            t0 = time.monotonic()
            outcome = scenario_with_rerun(specs[0], sc, out, folder, tol, progress, rerun)
            outcome.seconds = time.monotonic() - t0
            _scenario_done(outcome, result, out, specs, scale, progress)
        return
    _run_sharded(specs, board_args or [s.name for s in specs], names, folders, out, scale, progress, result, rerun)


def scenario_with_rerun(spec: BoardSpec, sc, out: Path, folder: str, tol: Tolerance,
                        progress: Progress, rerun: bool = True) -> ScenarioOutcome:
    """One scenario on a fresh board; a divergence runs once more on another fresh board:
    twice is a finding, once a flake (without `rerun`, the first verdict stands)."""
    outcome = _scenario_outcome(spec, sc, out / folder, tol, progress)
    if rerun and outcome.verdict is not None and not outcome.verdict["ok"] and not outcome.verdict.get("error"):
        progress.line(f"    {sc.name}: {len(outcome.verdict['divergences'])} divergences; running it again")
        again = _scenario_outcome(spec, sc, out / f"{folder}-rerun", tol, progress)
        if again.verdict is not None:
            outcome = ScenarioOutcome(sc.name, 0.0, again.verdict, folder=f"{folder}-rerun", first=outcome.verdict)
    outcome.folder = outcome.folder or folder
    outcome.board = spec.name
    return outcome


def _scenario_done(outcome: ScenarioOutcome, result: NightlyResult, out: Path,
                   specs: list[BoardSpec], scale: float, progress: Progress) -> None:
    """Record a finished scenario, say so, and rewrite report.json with every verdict so far."""
    result.scenarios.append(outcome)
    detail = f"{len(outcome.verdict['divergences'])} divergences" if outcome.status == "FAIL" else ""
    where = f" on {outcome.board}" if len(specs) > 1 and outcome.board else ""
    progress.advance(f"scenario {outcome.name}: {outcome.status} {detail or outcome.detail}".rstrip()
                     + f" ({outcome.seconds:.0f} s{where})")
    if outcome.error is not None:
        progress.line("    " + outcome.error.splitlines()[0])
    _write_scenario_report(result, out, specs, scale)


def _write_scenario_report(result: NightlyResult, out: Path, specs: list[BoardSpec], scale: float) -> None:
    from harness.report import write_report

    judged = [s for s in result.scenarios if s.verdict is not None]
    if judged:
        # report.json holds the verdicts summary.html is drawn from (and the suites
        # reuse); rewritten as we go.
        write_report(out, [Verdict.from_json(s.verdict) for s in judged],
                     {"board": " + ".join(dict.fromkeys(s.name for s in specs)), "tolerance_scale": scale},
                     folders=[out / s.folder for s in judged], cache=result.report_cache)


def worker_board_args(boards: list[str], specs: list[BoardSpec]) -> list[str]:
    """How each worker names its board: a board file's absolute path (the children resolve
    it from their own cwd), or `emulated`. The same lab board twice is refused: one board
    cannot run two scenarios at once (an emulated board can: each scenario boots its own
    QEMU)."""
    board_args = [b if b == "emulated" else str(Path(b).resolve()) for b in boards]
    if len(set(board_args)) < len(board_args) and any(s.kind not in ("emulated", "model") for s in specs):
        raise NightlyError("the same lab board is named twice: one board cannot run two scenarios at once "
                           "(an emulated board can: each scenario boots its own QEMU)")
    return board_args


# A worker's line that carries a finished scenario's outcome (JSON); its other lines are its log.
WORKER_MARK = "@@bmc-hil-outcome "


def _run_sharded(specs: list[BoardSpec], board_args: list[str], names: list[str], folders: list[str], out: Path,
                 scale: float, progress: Progress, result: NightlyResult, rerun: bool = True) -> None:
    """The scenarios spread over several boards: a worker process per board, each fed the
    next scenario when it reports the last. Ctrl-C ends every worker by its pid (its board
    is closed as a single run's is); what did not run is listed as not run."""
    import queue
    import threading

    todo: queue.Queue = queue.Queue()
    for item in zip(names, folders, strict=True):
        todo.put(item)
    lock = threading.Lock()
    children: list[subprocess.Popen] = []
    out.mkdir(parents=True, exist_ok=True)

    def work(i: int, spec: BoardSpec, board_arg: str) -> None:
        command = [sys.executable, "-m", "harness.nightly", "worker", "--board", board_arg, "--out", str(out),
                   "--tolerance-scale", f"{scale:g}", *([] if rerun else ["--no-rerun"])]
        with open(out / f"worker-{i}.log", "w", encoding="utf-8") as log:
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace", start_new_session=True, preexec_fn=die_with_parent,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
            with lock:
                children.append(child)
            while True:
                try:
                    name, folder = todo.get_nowait()
                except queue.Empty:
                    break
                t0 = time.monotonic()
                try:
                    child.stdin.write(f"{folder}\t{name}\n")
                    child.stdin.flush()
                except OSError:
                    pass   # the worker is gone: reported below as this scenario's error
                outcome = None
                for line in child.stdout:
                    if line.startswith(WORKER_MARK):
                        outcome = ScenarioOutcome(**json.loads(line[len(WORKER_MARK):]))
                        break
                    log.write(line)
                    log.flush()
                if outcome is None:
                    code = child.wait()
                    outcome = ScenarioOutcome(name, time.monotonic() - t0, folder=folder, board=spec.name,
                                              error=f"the scenario worker for board {spec.name} ended (exit code "
                                                    f"{code}) before this scenario's verdict; its log: "
                                                    f"scenarios/worker-{i}.log")
                with lock:
                    _scenario_done(outcome, result, out, specs, scale, progress)
                if child.poll() is not None:
                    break
            try:
                child.stdin.close()
            except OSError:
                pass
            for line in child.stdout:
                log.write(line)
            child.wait()

    threads = [threading.Thread(target=work, args=(i, spec, arg), name=f"shard-{i}", daemon=True)
               for i, (spec, arg) in enumerate(zip(specs, board_args, strict=True))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        with lock:
            running = list(children)
        for child in running:
            _end_child(child)
        raise
    finally:
        # The report lists the scenarios in the order they were asked for.
        order = {n: i for i, n in enumerate(names)}
        with lock:
            result.scenarios.sort(key=lambda s: order.get(s.name, len(order)))
            _write_scenario_report(result, out, specs, scale)


def worker_main(argv: list[str]) -> int:
    """`python -m harness.nightly worker --board B --out DIR`: run the scenarios named on stdin
    (`FOLDER<TAB>NAME` per line) one by one on board B, each outcome one marked JSON line."""
    import argparse
    import dataclasses

    from harness.board import load_board_file
    from harness.scenario import load_scenario

    ap = argparse.ArgumentParser(prog="python -m harness.nightly worker")
    ap.add_argument("--board", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--tolerance-scale", type=float, default=1.0)
    ap.add_argument("--no-rerun", action="store_true", help="judge each scenario once (bmc-hil run)")
    args = ap.parse_args(argv)
    spec = load_board_file(args.board)
    tol = Tolerance().scaled(args.tolerance_scale)
    progress = Progress(stream=sys.stdout)
    for line in sys.stdin:
        folder, name = line.rstrip("\n").split("\t", 1)
        t0 = time.monotonic()
        try:
            outcome = scenario_with_rerun(spec, load_scenario(name), args.out, folder, tol, progress,
                                          not args.no_rerun)
        except HarnessError as exc:
            outcome = ScenarioOutcome(name, 0.0, error=str(exc), folder=folder, board=spec.name)
        outcome.seconds = time.monotonic() - t0
        print(WORKER_MARK + json.dumps(dataclasses.asdict(outcome)), flush=True)
    return 0


def _scenario_outcome(spec: BoardSpec, sc, folder: Path, tol: Tolerance, progress: Progress) -> ScenarioOutcome:
    from harness.runner import check_scenario, run_scenario

    try:
        run = run_scenario(spec, sc, folder, log=progress.note)
        return ScenarioOutcome(sc.name, 0.0, verdict=check_scenario(spec, run, tol).to_json())
    except BoardError as exc:
        # The board died under the scenario: a finding about the firmware; go on.
        return ScenarioOutcome(sc.name, 0.0, error=str(exc), board_died=True)
    except HarnessError as exc:
        return ScenarioOutcome(sc.name, 0.0, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one scenario's check must not lose the others
        return ScenarioOutcome(sc.name, 0.0, error=f"{exc!r}\n{traceback.format_exc()}")


def _suite_env(out: Path) -> dict[str, str]:
    """The suites reuse the scenario phase's verdicts (each scenario runs once a night)."""
    from harness.under_test import REUSE_VERDICTS_ENV

    report = out / "scenarios" / "report.json"
    return {REUSE_VERDICTS_ENV: str(report)} if report.exists() else {}


def run_child(command: list[str], log: Path, cwd: Path, on_line: Callable[[str], None],
              env: dict[str, str] | None = None) -> int:
    """Run a suite in a child process, its output to `log`; on Ctrl-C end it by its pid.

    The child gets a session of its own, so a terminal's Ctrl-C reaches only this process,
    which asks the child to stop (SIGINT: pytest and Robot then write their results),
    then terminates it, then kills it. Its QEMU dies with it (PR_SET_PDEATHSIG).
    """
    with open(log, "w", encoding="utf-8") as sink:
        child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 errors="replace", start_new_session=True, preexec_fn=die_with_parent,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            for line in child.stdout:
                sink.write(line)
                sink.flush()
                on_line(line.rstrip("\n"))
            return child.wait()
        except BaseException:
            _end_child(child)
            raise


def _end_child(child: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGINT, CHILD_INTERRUPT_GRACE_S), (signal.SIGTERM, CHILD_TERMINATE_GRACE_S),
                       (signal.SIGKILL, None)):
        if child.poll() is not None:
            return
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue   # a second Ctrl-C: go on to the harder signal at once


def run_pytest_suites(suites: Path, boards: list[str], out: Path, scale: float, extra: list[str], progress: Progress,
                      result: NightlyResult) -> None:
    """`python -m pytest suites --board ... --junitxml DIR/junit.xml`, its totals from the JUnit XML.
    Several boards: `-n N --board B1 ... --board BN`, a pytest-xdist worker per board."""
    junit = out / "junit.xml"
    shard = ["-n", str(len(boards)), "--dist", "loadfile"] if len(boards) > 1 else []
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rfE", *shard, str(suites),
               *(a for b in boards for a in ("--board", b)),
               "--hil-out", str(out / "pytest"), "--junitxml", str(junit), "--tolerance-scale", f"{scale:g}", *extra]
    suite = SuiteOutcome("pytest", command, links={"junit.xml": "junit.xml", "console output": "pytest.log",
                                                   "per-test artifacts": "pytest/tests"})
    result.suites.append(suite)
    progress.phase("pytest suites", None)
    outcome = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
    collected = re.compile(r"collected (\d+) items?(?: / (\d+) deselected)?(?: / (\d+) selected)?")
    # pytest-xdist's -v lines: "[gw1] [ 50%] PASSED suites/x.py::test_y", and "2 workers [14 items]"
    xdist_outcome = re.compile(r"^\[gw\d+\]\s+\[\s*\d+%\]\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+::\S+)")
    xdist_collected = re.compile(r"^\d+ workers? \[(\d+) items?\]")

    def on_line(line: str) -> None:
        if m := collected.search(line):
            progress.total(int(m.group(3) or int(m.group(1)) - int(m.group(2) or 0)))
        elif m := xdist_collected.match(line):
            progress.total(int(m.group(1)))
        elif m := outcome.match(line):
            progress.advance(f"{m.group(2).lower():<7} {m.group(1)}")
        elif m := xdist_outcome.match(line):
            progress.advance(f"{m.group(1).lower():<7} {m.group(2)}")

    t0 = time.monotonic()
    try:
        suite.returncode = run_child(command, out / "pytest.log", suites.parent, on_line, _suite_env(out))
    finally:
        suite.seconds = time.monotonic() - t0
        _junit_totals(junit, suite)
    if suite.returncode not in (0, 1) and suite.error is None:
        suite.error = f"pytest exited with {suite.returncode} (see pytest.log)"


def _junit_totals(junit: Path, suite: SuiteOutcome) -> None:
    if not junit.exists():
        suite.error = "pytest wrote no junit.xml (see pytest.log)"
        return
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError as exc:
        suite.error = f"{junit}: {exc}"
        return
    for ts in root.iter("testsuite"):
        suite.tests += int(ts.get("tests", 0))
        suite.failed += int(ts.get("failures", 0))
        suite.errors += int(ts.get("errors", 0))
        suite.skipped += int(ts.get("skipped", 0))
        for tc in ts.iter("testcase"):
            bad = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
            if bad is not None:
                why = (bad.get("message") or bad.text or "").strip().splitlines()
                suite.failures.append((f"{tc.get('classname')}::{tc.get('name')}", why[0] if why else ""))
    suite.passed = suite.tests - suite.failed - suite.errors - suite.skipped


def run_robot_suites(suites: Path, board: str, out: Path, scale: float, extra: list[str], progress: Progress,
                     result: NightlyResult) -> None:
    """`python -m robot --outputdir DIR/robot suites/robot`, its totals from output.xml."""
    robot_out = out / "robot"
    command = [sys.executable, "-m", "robot", "--outputdir", str(robot_out), "--console", "verbose",
               "--listener", f"{__name__}.RobotProgressListener",
               "--variable", f"BOARD:{board}", "--variable", f"TOLERANCE SCALE:{scale:g}", *extra,
               str(suites / "robot")]
    suite = SuiteOutcome("robot", command, links={"log.html": "robot/log.html", "report.html": "robot/report.html",
                                                  "output.xml": "robot/output.xml", "console output": "robot.log"})
    result.suites.append(suite)
    progress.phase("robot suites", None)

    def on_line(line: str) -> None:
        # Robot's own console output is for people; the listener's marks are for us.
        if (m := _ROBOT_MARK.search(line)) is None:
            return
        if m.group(1) == "TESTS":
            progress.total(int(m.group(2)))
        else:
            progress.advance(f"{m.group(1).lower():<7} {m.group(2)}")

    t0 = time.monotonic()
    try:
        suite.returncode = run_child(command, out / "robot.log", suites.parent, on_line, _suite_env(out))
    finally:
        suite.seconds = time.monotonic() - t0
        _robot_totals(robot_out / "output.xml", suite)
    # Robot's exit status is the number of failed tests; above 250 it is an error of its own.
    if suite.returncode is not None and suite.returncode > 250 and suite.error is None:
        suite.error = f"robot exited with {suite.returncode} (see robot.log)"


_ROBOT_MARK = re.compile(r"@@bmc-hil (TESTS|PASS|FAIL|SKIP|NOT RUN) (.*)$")


class RobotProgressListener:
    """Listener given to the Robot child: one line per finished test (and the total first)."""

    ROBOT_LISTENER_API_VERSION = 3

    def start_suite(self, data, result) -> None:
        if data.parent is None:
            self._say(f"TESTS {data.test_count}")

    def end_test(self, data, result) -> None:
        self._say(f"{result.status} {data.longname}")

    @staticmethod
    def _say(text: str) -> None:
        # Its own line, whatever Robot's console left half written.
        sys.__stdout__.write(f"\n@@bmc-hil {text}\n")
        sys.__stdout__.flush()


def _robot_totals(output: Path, suite: SuiteOutcome) -> None:
    if not output.exists():
        suite.error = "robot wrote no output.xml (see robot.log)"
        return
    from robot.api import ExecutionResult, ResultVisitor
    from robot.errors import DataError

    try:
        res = ExecutionResult(str(output))
    except DataError as exc:
        suite.error = f"{output}: {exc}"
        return
    total = res.statistics.total
    suite.passed, suite.failed, suite.skipped = total.passed, total.failed, total.skipped
    suite.tests = total.total

    class Failed(ResultVisitor):
        def visit_test(self, test):
            if test.failed:
                suite.failures.append((test.longname, (test.message or "").strip().split("\n")[0]))

    res.visit(Failed())


# -- the summary ---------------------------------------------------------------------------
def write_summary(result: NightlyResult) -> Path:
    """DIR/summary.html (and summary.json): scenarios with their plots, suite totals, links."""
    out = result.out
    from harness.paths import unique_names

    report = out / "scenarios" / "report.json"
    reported = json.loads(report.read_text())["scenarios"] if report.exists() else []
    # The scenarios with a verdict, in report.json's order, and their plots (write_report's names).
    judged = [s for s in result.scenarios if s.verdict is not None][:len(reported)]
    plots = {id(s): f"{n}.timeline.png" for s, n in zip(judged, unique_names([v["scenario"] for v in reported]),
                                                        strict=False)}
    verdicts = {id(s): v for s, v in zip(judged, reported, strict=False)}
    data = {"board": result.board, "exit_code": result.exit_code, "interrupted": bool(result.interrupted),
            "seconds": round((result.finished or time.time()) - result.started, 1),
            "scenario_phase_seconds": None if result.scenario_phase_s is None else round(result.scenario_phase_s, 1),
            "scenarios": [{"name": s.name, "status": s.status, "detail": s.detail, "seconds": round(s.seconds, 1),
                           "error": s.error, "folder": f"scenarios/{s.folder}",
                           "divergences": len(s.verdict["divergences"]) if s.verdict else None,
                           "first_divergences": len(s.first["divergences"]) if s.first else None}
                          for s in result.scenarios],
            "suites": [{k: getattr(s, k) for k in ("name", "returncode", "tests", "passed", "failed", "errors",
                                                   "skipped", "error", "links")} | {"seconds": round(s.seconds, 1)}
                       for s in result.suites]}
    (out / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    e = html.escape
    verdict_word = {0: "pass", 1: "FAIL", 2: "ERROR"}[result.exit_code]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>bmc-hil nightly</title>"
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.pass{color:green}.fail{color:#b00}.flaky{color:#c60}"
             "pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}</style></head><body>",
             f"<h1>bmc-hil nightly: {e(result.board)} "
             f"<span class='{'pass' if result.exit_code == 0 else 'fail'}' id='overall'>{verdict_word}</span></h1>",
             f"<p>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(result.started))}, "
             f"{data['seconds']:.0f} s; exit code {result.exit_code}</p>"]
    if result.interrupted:
        parts.append("<p class='fail' id='interrupted'>Interrupted (Ctrl-C or SIGTERM): what follows is what was "
                     "done before.</p>")
    parts += ["<h2>Scenarios (oracle)</h2>",
              "<table id='scenarios'><tr><th>scenario</th><th>verdict</th><th>predicted</th><th>observed</th>"
              "<th>divergences</th><th>seconds</th></tr>"]
    for s in result.scenarios:
        v = verdicts.get(id(s))
        cls = {"pass": "pass", "flaky": "flaky"}.get(s.status, "fail")
        word = f"{s.status}: {s.detail}" if s.detail else s.status
        parts.append(f"<tr class='scenario' data-scenario='{e(s.name)}' data-verdict='{e(s.status)}'>"
                     f"<td><a href='#scenario-{e(s.name)}'>{e(s.name)}</a></td><td class='{cls}'>{e(word)}</td>"
                     f"<td>{v['predicted'] if v else ''}</td><td>{v['observed'] if v else ''}</td>"
                     f"<td>{len(v['divergences']) if v else ''}</td><td>{s.seconds:.0f}</td></tr>")
    parts.append("</table>")
    if verdicts:
        parts.append("<p><a class='artifact' href='scenarios/report.html'>scenario report</a> · "
                     "<a class='artifact' href='scenarios/report.json'>report.json</a></p>")
    for s in result.scenarios:
        parts.append(f"<h3 id='scenario-{e(s.name)}'>{e(s.name)}: {e(s.status)}</h3>")
        folder = f"scenarios/{s.folder}/"
        if s.error is not None:
            parts.append(f"<pre class='error'>{e(s.error)}</pre>")
            parts.append(f"<p>Artifacts kept in <a href='{e(folder)}'>{e(folder)}</a></p>")
            continue
        if s.first is not None:
            parts.append(f"<p class='{'flaky' if s.status == 'flaky' else 'fail'}'>{e(s.detail)}. The first run "
                         f"(artifacts in <a href='{e(folder.replace('-rerun/', '/'))}'>"
                         f"{e(folder.replace('-rerun/', '/'))}</a>):</p>")
            parts.append(_divergence_table(s.first))
            parts.append(f"<p>The re-run (artifacts in <a href='{e(folder)}'>{e(folder)}</a>):</p>")
        if id(s) in plots:
            parts.append(f"<img class='timeline' data-scenario='{e(s.name)}' src='scenarios/{e(plots[id(s)])}' "
                         f"alt='timeline of {e(s.name)}'>")
        parts.append(_divergence_table(verdicts.get(id(s)) or s.verdict))
    parts.append("<h2>Suites</h2><table id='suites'><tr><th>suite</th><th>tests</th><th>passed</th><th>failed</th>"
                 "<th>errors</th><th>skipped</th><th>seconds</th><th>results</th></tr>")
    for s in result.suites:
        links = " · ".join(f"<a class='artifact' href='{e(p)}'>{e(label)}</a>" for label, p in s.links.items()
                           if (out / p).exists())
        parts.append(f"<tr class='suite' data-suite='{e(s.name)}' data-tests='{s.tests}' data-passed='{s.passed}' "
                     f"data-failed='{s.failed + s.errors}' data-skipped='{s.skipped}'>"
                     f"<td class='{'pass' if s.ok else 'fail'}'>{e(s.name)}</td><td>{s.tests}</td><td>{s.passed}</td>"
                     f"<td>{s.failed}</td><td>{s.errors}</td><td>{s.skipped}</td><td>{s.seconds:.0f}</td>"
                     f"<td>{links}</td></tr>")
    parts.append("</table>")
    for s in result.suites:
        if s.error is not None:
            parts.append(f"<p class='fail'>{e(s.name)}: {e(s.error)}</p>")
        if s.failures:
            parts.append(f"<h3>{e(s.name)}: failed</h3><ul>" + "".join(
                f"<li><code>{e(name)}</code>: {e(why)}</li>" for name, why in s.failures) + "</ul>")
    parts.append("</body></html>")
    path = out / "summary.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _divergence_table(verdict: dict) -> str:
    rows = verdict["divergences"]
    if not rows:
        return "<p class='pass'>No divergence: the board did what Linux 6.1 would have done.</p>"
    t0 = verdict["start_ns"]

    def ms(ns, rel=True):
        return "" if ns is None else f"{(ns - (t0 if rel else 0)) / 1e6:.1f}"

    out = ["<table class='divergences'><tr><th>kind</th><th>stream</th><th>field</th><th>predicted (ms)</th>"
           "<th>observed (ms)</th><th>frame</th><th>delta (ms)</th><th>tolerance (ms)</th><th>predicted value</th>"
           "<th>observed value</th></tr>"]
    for r in rows:
        cells = (r["kind"], r.get("stream_name", ""), r.get("field") or "", ms(r.get("pred_ns")), ms(r.get("obs_ns")),
                 r.get("frame") or "", ms(r.get("delta_ns"), False), ms(r.get("tol_ns"), False),
                 r.get("pred_value") if r.get("field") else "", r.get("obs_value") if r.get("field") else "")
        out.append("<tr class='divergence'>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


# -- the whole run ---------------------------------------------------------------------------
def default_suites_dir() -> Path:
    """`./suites` when run from a checkout of a project with suites, else the harness's own."""
    here = Path.cwd() / "suites"
    return here if here.is_dir() else Path(__file__).resolve().parents[1] / "suites"


def nightly(board: str | list[str], out: Path, tolerance_scale: float = 1.0, scenarios: list[str] | None = None,
            pytest_args: list[str] = (), robot_args: list[str] = (), suites: Path | None = None,
            progress: Progress | None = None) -> NightlyResult:
    """Run the scenarios, the pytest suites and the Robot suites; write the summary after each.

    `board` may name several boards (board files, or `emulated` more than once): the
    scenarios are spread over them (a worker process each), the pytest suites too
    (pytest-xdist, one worker per board), and the Robot suites run on the first."""
    from harness.board import load_board_file
    from harness.scenario import builtin_scenarios

    if not tolerance_scale > 0:
        raise NightlyError(f"--tolerance-scale must be > 0, got {tolerance_scale}")
    boards = [board] if isinstance(board, str) else list(board)
    if not boards:
        raise NightlyError("no board: give --board FILE|emulated (repeat it for several boards)")
    specs = [load_board_file(b) for b in boards]
    board_args = worker_board_args(boards, specs)
    suites = (suites or default_suites_dir()).resolve()
    if not (suites / "robot").is_dir():
        raise NightlyError(f"{suites}: no suites here (expected pytest suites and a robot/ folder)")
    out = out.resolve()
    prepare_run_dir(out)   # a night never overwrites another's results
    progress = progress or Progress()
    result = NightlyResult(" + ".join(dict.fromkeys(s.name for s in specs)), out, time.time())
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        t0 = time.monotonic()
        try:
            run_scenarios(specs, list(scenarios or builtin_scenarios()), out / "scenarios", tolerance_scale, progress,
                          result, board_args)
        finally:
            result.scenario_phase_s = time.monotonic() - t0
        write_summary(result)
        run_pytest_suites(suites, board_args, out, tolerance_scale, list(pytest_args), progress, result)
        write_summary(result)
        run_robot_suites(suites, board_args[0], out, tolerance_scale, list(robot_args), progress, result)
    except KeyboardInterrupt as exc:
        result.interrupted = exc   # truthy; Terminated for SIGTERM, so the exit code says which
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.stop()
        result.finished = time.time()
        write_summary(result)
    return result


def _interrupt(signum, frame):
    # SIGTERM (a CI job cancelled) ends the run as Ctrl-C does: children ended, summary kept.
    raise Terminated()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m harness.nightly worker --board FILE|emulated --out DIR (run by bmc-hil nightly)")
    sys.exit(worker_main(sys.argv[2:]))
