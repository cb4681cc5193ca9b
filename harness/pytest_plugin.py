"""pytest plugin (entry point `pytest11: bmc_hil`): the board under test for pytest suites.

    pytest suites --board emulated            # or --board lab-bmc-3.yaml
    pytest suites --board FILE --hil-out runs/tonight --tolerance-scale 2 --junitxml junit.xml

Fixtures: `hil_board` (the board, booted to SSH once per session, closed at the end),
`hil_strategy`, `hil_capture` (this test's pcap), `hil_artifacts` (this test's folder),
`hil_under_test` (the run: spec, tolerance, recovery and the timing checks),
`hil_oracle` (run a scenario on a fresh board and get the oracle's verdict; see
`Oracle`), and `assert_board_matches_model(verdict)` for the check itself.
Markers: `hil`, `emulated_only`, `real_only`, `disruptive`.

Without `--board` every test that asks for a board fixture (or is marked `hil`) is
skipped, saying why; nothing here imports a board driver or boots anything until a
board fixture is requested, so the project's own tests run with the plugin loaded.

After a `disruptive` test, or any test after which the board no longer answers `true`
over SSH, the board is brought back before the next test. A test after which the board
is dead (QEMU gone, SSH gone) and that is not `disruptive` fails with the harness's error
and its console tail.

Each test's folder (`<hil-out>/tests/<test id>/`) gets the console lines, host events
and QMP events of its time span, and its capture; the JUnit XML names the folder in the
test's `hil_artifacts` property.

A test using `hil_oracle` does not boot the session board: each scenario gets a board
of its own, captured from power-on, and the session board is powered off meanwhile and
brought back before the next test that uses it. The scenario's artifacts, its divergence
table (`report.json`, `report.html`) and timeline plot go into the test's folder and are
named in the JUnit XML (`hil_report`, `hil_divergences`, `hil_timeline:<scenario>`). With
pytest-html (`--html FILE`) the test's row gets each scenario's timeline plot and links to
its report, capture.pcap, predicted.pcap, console.log and verdict.json.
"""

from __future__ import annotations

import base64
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BOARD_FIXTURES = frozenset({"hil_board", "hil_strategy", "hil_capture", "hil_artifacts", "hil_under_test",
                            "hil_oracle"})
# What needs the session board up; a test asking only for the oracle runs its scenarios
# on boards of their own.
SESSION_BOARD_FIXTURES = frozenset({"hil_board", "hil_strategy", "hil_capture"})
NO_BOARD = "needs a board: run with --board FILE|emulated"
MARKERS = {
    "hil": "needs the board under test (--board); skipped without one",
    "emulated_only": "runs only on an emulated board",
    "real_only": "runs only on a real (lab) board",
    "disruptive": "leaves the board in an unknown state; it is power-cycled back to SSH before the next test",
}


@dataclass(frozen=True)
class HilOptions:
    """The plugin's command-line settings, kept on the config (`hil_options(config)`)."""

    board: str | None
    spec: object | None          # harness.board.BoardSpec, parsed at configure time
    out_dir: Path
    tolerance_scale: float


_OPTIONS = pytest.StashKey[HilOptions]()
_UNDER_TEST = pytest.StashKey[object]()      # the BoardUnderTest of a running hil test
_ARTIFACTS = pytest.StashKey[Path]()
_USED = pytest.StashKey[bool]()
_SCENARIOS = pytest.StashKey[list]()           # a test's oracle runs: (verdict, run folder, report.html, plot)


def hil_options(config: pytest.Config) -> HilOptions:
    return config.stash[_OPTIONS]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bmc-hil", "bmc-hil board under test")
    group.addoption("--board", metavar="FILE|emulated", action="append", default=None,
                    help="the board under test: a board file, or `emulated` for the built-in QEMU AST2500; "
                         "repeat it with pytest-xdist's -n N to give each worker a board of its own")
    group.addoption("--hil-out", metavar="DIR", default=None,
                    help="where board logs and per-test artifacts go (default: bmc-hil-runs/pytest-<timestamp>)")
    group.addoption("--tolerance-scale", metavar="FLOAT", type=float, default=1.0,
                    help="multiply the board's timing tolerances (> 0; default 1)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    scale = config.getoption("tolerance_scale")
    if not scale > 0:
        raise pytest.UsageError(f"--tolerance-scale must be > 0, got {scale}")
    boards = config.getoption("board") or []
    board, spec = _worker_board(config, boards), None
    if board is not None:
        # Parse the board files now so a typo fails the run at once, not at the first test.
        from harness.board.boardfile import load_board_file
        from harness.errors import BoardFileError

        for b in dict.fromkeys(boards):
            try:
                parsed = load_board_file(b)
            except BoardFileError as exc:
                raise pytest.UsageError(f"--board {b}: {exc}") from exc
            if b == board:
                spec = parsed
    out = config.getoption("hil_out")
    out_dir = Path(out) if out else Path("bmc-hil-runs") / time.strftime("pytest-%Y%m%d-%H%M%S")
    if not out_dir.is_absolute():
        out_dir = config.invocation_params.dir / out_dir
    config.stash[_OPTIONS] = HilOptions(board, spec, out_dir, scale)


def _worker_board(config: pytest.Config, boards: list[str]) -> str | None:
    """The board this process tests on: the only one, or (several --board, pytest-xdist) the
    one of this worker's number, gw0 the first; the controller itself tests on none."""
    if len(boards) <= 1:
        return boards[0] if boards else None
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        workers = getattr(config.option, "numprocesses", None)
        if not workers:
            raise pytest.UsageError(f"--board is given {len(boards)} times: run with pytest-xdist's -n "
                                    f"{len(boards)} so that each worker tests on a board of its own")
        return boards[0]   # the controller: checks the files, runs no test
    index = int(worker.removeprefix("gw"))
    if index >= len(boards):
        raise pytest.UsageError(f"worker {worker} has no board: {len(boards)} --board for more workers; "
                                f"give -n {len(boards)}")
    return boards[index]


def pytest_report_header(config: pytest.Config) -> str | None:
    opts = hil_options(config)
    if opts.spec is None:
        return None
    return (f"bmc-hil: board {opts.spec.name} ({opts.spec.kind}), out {opts.out_dir}, "
            f"tolerance scale {opts.tolerance_scale:g}")


def _wants_board(item: pytest.Item) -> bool:
    return bool(BOARD_FIXTURES & set(getattr(item, "fixturenames", ()))) or item.get_closest_marker("hil") is not None


def _wants_session_board(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(SESSION_BOARD_FIXTURES & names) or (_wants_board(item) and "hil_oracle" not in names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    spec = hil_options(config).spec
    for item in items:
        if not _wants_board(item):
            continue
        item.add_marker(pytest.mark.hil)
        if spec is None:
            item.add_marker(pytest.mark.skip(reason=NO_BOARD))
        elif item.get_closest_marker("emulated_only") and spec.kind != "emulated":
            item.add_marker(pytest.mark.skip(reason=f"emulated boards only; {spec.name} is a real board"))
        elif item.get_closest_marker("real_only") and spec.kind != "real":
            item.add_marker(pytest.mark.skip(reason=f"real boards only; {spec.name} is emulated"))


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def hil_under_test(request: pytest.FixtureRequest):
    """The run's `BoardUnderTest` (not yet booted): spec, tolerances, recovery, checks."""
    opts = hil_options(request.config)
    if opts.spec is None:
        pytest.skip(NO_BOARD)
    from harness.under_test import BoardUnderTest

    # each pytest-xdist worker has a board (and its logs) of its own
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    under_test = BoardUnderTest(opts.spec, opts.out_dir / (f"board-{worker}" if worker else "board"), opts.tolerance_scale,
                                log=lambda msg: print(msg, file=sys.stderr))
    request.config.stash[_USED] = True
    try:
        yield under_test
    finally:
        under_test.close()


@pytest.fixture(scope="session")
def hil_board(hil_under_test):
    """The board under test at SSH-ready; booted once per session, closed at its end."""
    return hil_under_test.open()


@pytest.fixture(scope="session")
def hil_strategy(hil_under_test, hil_board):
    """The `BoardStrategy` walking `hil_board` (its state is the board's known state)."""
    return hil_under_test.strategy


@pytest.fixture
def hil_artifacts(request: pytest.FixtureRequest) -> Path:
    """This test's artifact folder (console.log, host-events.jsonl, qmp.jsonl, capture.pcap)."""
    return request.node.stash[_ARTIFACTS]


@pytest.fixture
def hil_capture(hil_board, hil_artifacts, request: pytest.FixtureRequest):
    """A capture of the board's frames for this test: yields the pcap path; stopped after the test."""
    path = hil_artifacts / "capture.pcap"
    hil_board.capture_start(path)
    request.node.user_properties.append(("hil_capture", str(path)))
    try:
        yield path
    finally:
        hil_board.capture_stop()


class Oracle:
    """`hil_oracle`: run scenarios on fresh boards for this test and keep their verdicts.

        def test_closed_port(hil_oracle):
            assert_board_matches_model(hil_oracle.run("closed-port"))
    """

    def __init__(self, under_test, folder: Path, item: pytest.Item):
        self._under_test = under_test
        self.folder = folder
        self._item = item
        self.verdicts: list = []
        self.run_dirs: list[Path] = []

    def run(self, scenario: str | Path):
        """Run `scenario` (built-in name or YAML file) and return the oracle's `Verdict`.

        The report (divergence table and timeline plot) of every scenario this test ran
        is rewritten in the test's folder after each run, so a later failure keeps it.
        """
        from harness.report import timeline_paths, write_report

        run_dir = self.folder / f"{len(self.verdicts) + 1:02d}-{Path(str(scenario)).stem}"
        verdict = self._under_test.run_scenario(scenario, run_dir)
        self.verdicts.append(verdict)
        self.run_dirs.append(run_dir)
        paths = write_report(self.folder, self.verdicts, {"board": self._under_test.spec.name,
                                                         "tolerance_scale": self._under_test.tolerance_scale},
                             folders=self.run_dirs, declared=self._under_test.spec.firmware)
        plot = timeline_paths(self.folder, self.verdicts)[-1]
        self._item.stash.setdefault(_SCENARIOS, []).append((verdict, run_dir, paths["html"], plot))
        props = self._item.user_properties
        if not any(name == "hil_report" for name, _ in props):
            props += [("hil_report", str(paths["html"])), ("hil_divergences", str(paths["json"]))]
        props += [(f"hil_timeline:{verdict.scenario}", str(plot)),
                  (f"hil_verdict:{verdict.scenario}", "pass" if verdict.ok else f"error: {verdict.error}" if verdict.error
                   else f"{len(verdict.rows)} divergences")]
        return verdict


def assert_board_matches_model(verdict, report: Path | None = None) -> None:
    """Fail, listing the divergence rows, unless the board did what the model predicted."""
    from harness.under_test import mismatch_message

    if not verdict.ok:
        raise AssertionError(mismatch_message(verdict, report))


@pytest.fixture
def hil_oracle(request: pytest.FixtureRequest, hil_under_test, hil_artifacts) -> Oracle:
    """Run scenarios on fresh boards through the oracle; their reports in this test's folder."""
    return Oracle(hil_under_test, hil_artifacts, request.node)


@pytest.fixture(autouse=True)
def _hil_test(request: pytest.FixtureRequest):
    """Per board test: recover the board if the last test left it so, then record this test's span."""
    item = request.node
    if not isinstance(item, pytest.Item) or not _wants_board(item):
        yield
        return
    folder = hil_options(request.config).out_dir / "tests" / _folder_name(item.nodeid)
    folder.mkdir(parents=True, exist_ok=True)
    item.stash[_ARTIFACTS] = folder
    item.user_properties.append(("hil_artifacts", str(folder)))
    if not _wants_session_board(item):
        yield   # the oracle's scenarios run on boards of their own
        return
    under_test = request.getfixturevalue("hil_under_test")
    request.getfixturevalue("hil_board")
    if under_test.recovery_reason is not None:
        under_test.recover()
        under_test.recovery_reason = None
    item.stash[_UNDER_TEST] = under_test
    start = time.time_ns()
    try:
        yield
    finally:
        under_test.write_span(folder, start, time.time_ns())


def _folder_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", nodeid).strip("_")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After a board test: note whether the board needs bringing back, and fail a test that killed it."""
    under_test = item.stash.get(_UNDER_TEST, None)
    if under_test is None:
        return (yield)
    try:
        result = yield
    except BaseException:
        _check_board_after(item, under_test, test_failed=True)
        raise
    error = _check_board_after(item, under_test, test_failed=False)
    if error is not None:
        raise error
    return result


def _check_board_after(item: pytest.Item, under_test, test_failed: bool):
    """The board's error to fail a passing test with, or None; marks the board for recovery."""
    if item.get_closest_marker("disruptive"):
        under_test.recovery_reason = f"after disruptive test {item.nodeid}"
        return None
    error = under_test.health_error()
    if error is None:
        return None
    under_test.recovery_reason = f"the board died during {item.nodeid}"
    if test_failed:
        # The test's own failure stays the headline; the board's state goes beside it.
        item.add_report_section("call", "board", str(error))
        return None
    return error


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """With pytest-html writing a report: the scenarios this test ran, in its row."""
    report = yield
    runs = item.stash.get(_SCENARIOS, None)
    html_path = item.config.getoption("htmlpath", None)
    if report.when == "call" and runs and html_path:
        page_dir = (Path.cwd() / Path(os.path.expandvars(html_path)).expanduser()).parent
        report.extras = [*getattr(report, "extras", []), *html_extras(runs, page_dir)]
    return report


def html_extras(runs: list, page_dir: Path) -> list[dict]:
    """pytest-html extras for a test's oracle runs: each scenario's timeline plot (embedded,
    so it shows in a self-contained page too), its verdict with links to its report and
    artifacts (relative to the page), and the same links in the Links column."""
    from pytest_html import extras

    from harness.report import ScenarioFiles, relative_href

    out = []
    for verdict, run_dir, report, plot in runs:
        word = "pass" if verdict.ok else f"ERROR: {verdict.error}" if verdict.error \
            else f"FAIL: {len(verdict.rows)} divergences"
        kept = ScenarioFiles.in_dir(run_dir)
        main = {report, *kept.captures, kept.predicted, kept.console, kept.verdict}   # the Links column
        links = [(p.name if p != report else "report", relative_href(p, page_dir), p in main)
                 for p in [report, *kept.links()] if p.is_file()]
        out.append(extras.png(base64.b64encode(plot.read_bytes()).decode("ascii"), f"timeline: {verdict.scenario}"))
        anchors = " · ".join(f"<a href='{_attr(href)}'>{_attr(name)}</a>" for name, href, _ in links)
        out.append(extras.html(f"<p class='bmc-hil'><b>{_attr(verdict.scenario)}</b>: {_attr(word)} — {anchors}</p>"))
        out += [extras.url(href, name=f"{verdict.scenario}: {name}") for name, href, primary in links if primary]
    return out


def _attr(text) -> str:
    import html

    return html.escape(str(text), quote=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if config.stash.get(_USED, False):
        terminalreporter.write_line(f"bmc-hil: board logs and per-test artifacts in {hil_options(config).out_dir}")
