"""`BmcHil`: the Robot Framework keyword facade over the board under test."""

from __future__ import annotations

import html
import itertools
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from robot.api import logger
from robot.api.deco import keyword, library
from robot.utils import timestr_to_secs

from harness.board import BoardState, load_board_file
from harness.errors import BoardError, ConsoleTimeout
from harness.oracle import Verdict
from harness.under_test import UNDECLARED_PROBE, BoardUnderTest, divergence_table, mismatch_message


@library(scope="GLOBAL", auto_keywords=False)
class BmcHil:
    """Drive a BMC board (an ASPEED AST2500, real or emulated) from Robot Framework.

    The board is opened when the library is imported and booted by `Boot Board`; it is
    powered off and its logs kept when the run ends. ``board`` is a board file or
    ``emulated``; ``out`` is where the board's logs go (default: ``${OUTPUT DIR}/bmc-hil``);
    ``tolerance_scale`` multiplies the board's timing tolerances.

    | =Settings= |
    | Library | harness.robot.BmcHil | board=lab-bmc-3.yaml | tolerance_scale=1.5 |

    Checks (``... Should ...``) fail with an ``AssertionError`` that shows what was seen;
    a board that cannot be driven fails with the harness's own error and the console tail.
    Timing checks measure from the harness's last stimulus (link change, watchdog starve)
    to what the board showed, on the host's monotonic clock.

    %TOC%

    = Board and console =
    `Boot Board`, `Power Off Board`, `Read Console Until`, `Console Should Contain`

    = SSH and services =
    `Execute Over SSH`, `Start SSH Command`, `Read SSH Command Output`,
    `Wait Until SSH Answers`, `Service Should Answer`, `Service Should Be Refused`,
    `Get Open Services`, `Get Closed Services`

    = Link =
    `Set Link Down`, `Set Link Up`, `Flap Link`, `Get Link Detection Window`,
    `Link Down Should Be Logged Within`, `Link Up Should Be Logged Within`

    = Watchdog =
    `Start Watchdog`, `Kick Watchdog`, `Starve Watchdog`, `Stop Watchdog`,
    `Get Watchdog Reset Window`, `Board Should Reset Within`

    = Capture =
    `Start Capture`, `Stop Capture`

    = Oracle =
    `Run Scenario`, `Board Should Match Model`, `Handshake Should Match Model`

    A scenario runs on a board of its own, captured from power-on, and the stack model
    says what Linux would have done with what that board received. The board booted by
    `Boot Board` is powered off meanwhile; call `Boot Board` again before driving it.
    Each scenario's artifacts, divergence table and timeline plot are kept in the
    ``scenarios`` folder under ``out`` and linked from the log.
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self, board: str = "emulated", out: str | None = None, tolerance_scale: float = 1.0):
        """``board``: a board file, or ``emulated`` (the default) for the emulated AST2500.

        ``out``: where the board's logs and each scenario's artifacts go (default: the
        ``bmc-hil`` folder in Robot's output directory, ``${OUTPUT DIR}/bmc-hil``).

        ``tolerance_scale``: multiplies every timing tolerance (default 1; a slow lab
        might use 1.5).
        """
        self.ROBOT_LIBRARY_LISTENER = self
        if out is None:
            out = Path(_output_dir()) / "bmc-hil"
        self.under_test = BoardUnderTest(load_board_file(board), Path(out), float(tolerance_scale),
                                         log=logger.console)
        self._console_seen: tuple[int, int] = (0, 0)   # (id of the console, next unread line)
        self._commands: dict[str, Future] = {}
        self._command_ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ssh-command")
        self._capture: Path | None = None
        self._captures = itertools.count(1)
        self._scenario_runs = itertools.count(1)
        self._last_verdict: Verdict | None = None
        self._verdict_runs: dict[int, tuple[Path, Path]] = {}   # id(verdict) -> (run folder, report.html)

    def _close(self) -> None:
        """Listener hook: the run is over; power the board off and keep its logs."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.under_test.close()

    @property
    def _board(self):
        if self.under_test.board is None:
            raise BoardError("the board is not booted yet: call `Boot Board` first")
        return self.under_test.board

    # -- board and console -----------------------------------------------------------
    @keyword
    def boot_board(self, fresh: bool = False) -> None:
        """Bring the board to SSH-ready: power it on, wait for the kernel, a shell, the network and SSH.

        A board already up and answering SSH is left as it is unless ``fresh`` is true;
        otherwise it is power-cycled (with its link up). Fails naming the step that failed.

        | Boot Board |
        | Boot Board | fresh=True |
        """
        under_test = self.under_test
        if under_test.board is None:
            under_test.open()
        elif fresh or under_test.strategy.state < BoardState.SSH or under_test.health_error() is not None:
            under_test.recover()
        self._console_seen = (id(self._board.console), self._board.console.cursor())
        logger.info(f"board {under_test.spec.name} is up at SSH ({self._board.out_dir})")

    @keyword
    def power_off_board(self) -> None:
        """Power the board off (the emulated board's QEMU quits; its logs stay).

        | Power Off Board |
        """
        if self.under_test.board is not None:
            self.under_test.strategy.transition(BoardState.OFF)

    @keyword
    def read_console_until(self, pattern: str, timeout: str = "10 s") -> str:
        """Read the console until a line matches the regular expression ``pattern``; return that line.

        Reading starts after the last line a previous `Read Console Until` returned (or at
        `Boot Board`), so a line that arrived before this call is not missed. Fails showing
        the console lines seen.

        | ${line}= | Read Console Until | Link is Down | timeout=5 s |
        """
        console = self._board.console
        ident, since = self._console_seen
        if ident != id(console):
            since = 0   # a new power-on: its console starts afresh
        seconds = timestr_to_secs(timeout)
        try:
            line, _ = console.expect(re.compile(pattern), seconds, since=since)
        except ConsoleTimeout as exc:
            raise AssertionError(str(exc)) from exc
        self._console_seen = (id(console), line.index + 1)
        return line.text

    @keyword
    def console_should_contain(self, text: str) -> None:
        """Fail unless a console line since the board's last power-on contains ``text``.

        | Console Should Contain | watchdog did not stop! |
        """
        lines = self._board.console.lines
        if not any(text in line.text for line in lines):
            tail = "\n".join(line.text for line in lines[-30:]) or "<nothing>"
            raise AssertionError(f"console does not contain {text!r}; last lines:\n{tail}")

    # -- SSH and services ------------------------------------------------------------
    @keyword("Execute Over SSH")
    def execute_over_ssh(self, command: str, expected_rc: int | None = 0, timeout: str = "30 s") -> str:
        """Run ``command`` on the board over SSH and return its standard output.

        Fails when the exit status is not ``expected_rc`` (``None``: any status).

        | ${out}= | Execute Over SSH | uname -a |
        | Execute Over SSH | false | expected_rc=1 |
        """
        result = self._board.run(command, timeout=timestr_to_secs(timeout), check=False)
        _check_rc(result, expected_rc)
        return result.stdout

    @keyword("Start SSH Command")
    def start_ssh_command(self, command: str, timeout: str = "60 s") -> str:
        """Start ``command`` over SSH in the background; return a handle for `Read SSH Command Output`.

        The command keeps its own SSH channel, so it shows whether a session lives through
        what happens meanwhile (a link flap).

        | ${cmd}= | Start SSH Command | sleep 6; echo survived |
        """
        board = self._board
        handle = f"command-{next(self._command_ids)}"
        self._commands[handle] = self._pool.submit(board.ssh.run, command, timestr_to_secs(timeout))
        return handle

    @keyword("Read SSH Command Output")
    def read_ssh_command_output(self, handle: str, expected_rc: int | None = 0, timeout: str = "60 s") -> str:
        """Wait for a command started by `Start SSH Command`; return its standard output.

        Fails when its exit status is not ``expected_rc`` or its SSH session broke.

        | ${out}= | Read SSH Command Output | ${cmd} |
        | Should Be Equal | ${out.strip()} | survived |
        """
        future = self._commands.pop(handle)
        try:
            result = future.result(timestr_to_secs(timeout))
        except (BoardError, TimeoutError) as exc:
            raise AssertionError(f"the SSH command {handle} did not finish: {exc}") from exc
        _check_rc(result, expected_rc)
        return result.stdout

    @keyword("Wait Until SSH Answers")
    def wait_until_ssh_answers(self, timeout: str = "60 s") -> float:
        """Log in over SSH again and again until `true` runs; return the seconds it took.

        | Wait Until SSH Answers | timeout=60 s |
        """
        return self._board.ssh.wait_until_up(timestr_to_secs(timeout))

    @keyword
    def get_open_services(self) -> list[str]:
        """The names of the services the firmware declares enabled (``ssh``, ``http``).

        | @{services}= | Get Open Services |
        """
        return [s.name for s in self.under_test.spec.firmware.services if s.enabled]

    @keyword
    def get_closed_services(self) -> list[str]:
        """Services that must refuse a connection: those declared off, and an undeclared port (telnet).

        | @{closed}= | Get Closed Services |
        """
        off = [s.name for s in self.under_test.spec.firmware.services if not s.enabled]
        return [*off, UNDECLARED_PROBE]

    @keyword
    def service_should_answer(self, service: str) -> str:
        """Fail unless a TCP connection to ``service`` (``ssh``, ``http``) gets an answer; return its first line.

        | Service Should Answer | http |
        """
        probe = self.under_test.probe(service)
        if probe.outcome != "answered":
            raise AssertionError(f"{service} did not answer: {probe.detail}")
        return probe.detail

    @keyword
    def service_should_be_refused(self, service: str) -> None:
        """Fail unless a TCP connection to ``service`` is refused (nothing listens there).

        | Service Should Be Refused | undeclared-telnet |
        """
        probe = self.under_test.probe(service)
        if probe.outcome != "refused":
            raise AssertionError(f"{service} was not refused ({probe.outcome}): {probe.detail}")

    # -- link ------------------------------------------------------------------------
    @keyword
    def set_link_down(self) -> None:
        """Take the board's Ethernet link down (QMP set_link, or the board file's link command).

        | Set Link Down |
        """
        self._board.set_link(False)

    @keyword
    def set_link_up(self) -> None:
        """Bring the board's Ethernet link back up.

        | Set Link Up |
        """
        self._board.set_link(True)

    @keyword
    def flap_link(self, down: str = "2 s", up: str = "2 s", cycles: int = 1) -> None:
        """Take the link down for ``down``, then up for ``up``, ``cycles`` times.

        | Flap Link | down=2 s | up=3 s | cycles=3 |
        """
        down_s, up_s = timestr_to_secs(down), timestr_to_secs(up)
        for _ in range(int(cycles)):
            self._board.set_link(False)
            time.sleep(down_s)
            self._board.set_link(True)
            time.sleep(up_s)

    @keyword
    def get_link_detection_window(self) -> float:
        """Seconds within which this board should log a link change: phylib's 1 s poll plus its tolerance.

        | ${window}= | Get Link Detection Window |
        | Link Down Should Be Logged Within | ${window} |
        """
        return self.under_test.link_detection_window_s

    @keyword
    def link_down_should_be_logged_within(self, seconds: str) -> float:
        """Fail unless ``Link is Down`` reached the console within ``seconds`` of the last link-down.

        Returns the delay in seconds. Fails showing the console lines seen since the stimulus.

        | Set Link Down |
        | ${delay}= | Link Down Should Be Logged Within | 2.5 s |
        """
        delay = self.under_test.link_logged_within(False, timestr_to_secs(seconds))
        logger.info(f"Link is Down logged {delay:.3f} s after the link went down")
        return delay

    @keyword
    def link_up_should_be_logged_within(self, seconds: str) -> float:
        """Fail unless ``Link is Up`` reached the console within ``seconds`` of the last link-up.

        | Set Link Up |
        | ${delay}= | Link Up Should Be Logged Within | 2.5 s |
        """
        delay = self.under_test.link_logged_within(True, timestr_to_secs(seconds))
        logger.info(f"Link is Up logged {delay:.3f} s after the link came up")
        return delay

    # -- watchdog --------------------------------------------------------------------
    @keyword
    def start_watchdog(self, timeout: int = 30, period: int = 1) -> None:
        """Arm the board's watchdog with ``timeout`` seconds; a daemon kicks it every ``period`` seconds.

        | Start Watchdog | timeout=5 | period=1 |
        """
        self._board.watchdog_start(int(timeout), int(period))

    @keyword
    def kick_watchdog(self) -> None:
        """Kick the watchdog once by hand (when no daemon holds it, e.g. after `Starve Watchdog`).

        | Kick Watchdog |
        """
        self._board.watchdog_kick()

    @keyword
    def starve_watchdog(self) -> None:
        """Kill the kicking daemon without the magic close: the watchdog stays armed and expires.

        | Starve Watchdog |
        | Board Should Reset Within | 6.5 s |
        """
        self._board.watchdog_starve()

    @keyword
    def stop_watchdog(self) -> None:
        """Stop the daemon cleanly (magic close): the watchdog is disarmed.

        | Stop Watchdog |
        """
        self._board.watchdog_stop()

    @keyword
    def get_watchdog_reset_window(self, timeout: int, period: int = 1) -> float:
        """The latest a starved watchdog of ``timeout`` s (kicked every ``period`` s) may reset this board.

        | ${latest}= | Get Watchdog Reset Window | 5 |
        """
        return self.under_test.watchdog_reset_window_s(float(timeout), float(period))[1]

    @keyword
    def board_should_reset_within(self, seconds: str) -> float:
        """Fail unless the board reset within ``seconds`` of the last `Starve Watchdog`; return the delay.

        The reset is QEMU's WATCHDOG event on an emulated board and the next ``Linux version``
        console line on a real one.

        | Starve Watchdog |
        | ${delay}= | Board Should Reset Within | 6.5 s |
        """
        delay = self.under_test.reset_within(timestr_to_secs(seconds))
        logger.info(f"board reset {delay:.3f} s after the watchdog was starved")
        return delay

    # -- capture ---------------------------------------------------------------------
    @keyword
    def start_capture(self, path: str | None = None) -> str:
        """Start capturing the board's frames to ``path`` (default: a new pcap in the board's folder).

        | ${pcap}= | Start Capture |
        """
        board = self._board
        target = Path(path) if path else board.out_dir / f"capture-{next(self._captures)}.pcap"
        board.capture_start(target)
        self._capture = target
        return str(target)

    @keyword
    def stop_capture(self) -> str:
        """Stop the capture; return the pcap's path.

        | ${pcap}= | Stop Capture |
        """
        path = self._board.capture_stop()
        self._capture = None
        logger.info(f"capture in {path}")
        return str(path)

    # -- oracle ----------------------------------------------------------------------
    @keyword
    def run_scenario(self, scenario: str) -> Verdict:
        """Run ``scenario`` (a built-in name or a YAML file) on a fresh board; return its verdict.

        The verdict says whether the board did what Linux 6.1 would have done; check it
        with `Board Should Match Model`. Its report (divergence table, timeline plot) is
        linked from the log. Fails only when the scenario cannot be run.

        | ${verdict}= | Run Scenario | closed-port |
        | Board Should Match Model | ${verdict} |
        | ${verdict}= | Run Scenario | ${CURDIR}/flap-while-idle.yaml |
        """
        from harness.report import write_report

        under_test = self.under_test
        folder = under_test.out_dir / "scenarios" / f"{next(self._scenario_runs):02d}-{Path(scenario).stem}"
        # The steps go to the log, not the console, where they would split Robot's status lines.
        verdict = under_test.run_scenario(scenario, folder / "run", log=logger.info)
        paths = write_report(folder, [verdict], {"board": under_test.spec.name,
                                                 "tolerance_scale": under_test.tolerance_scale},
                             folders=[folder / "run"], declared=under_test.spec.firmware)
        self._last_verdict = verdict
        self._verdict_runs[id(verdict)] = (folder / "run", paths["html"])
        plot = paths[f"png:{verdict.scenario}"]
        summary = "no divergence" if verdict.ok else f"error: {verdict.error}" if verdict.error \
            else f"{len(verdict.rows)} divergences"
        logger.info(f"scenario {verdict.scenario}: {summary} ({verdict.predicted} predicted, "
                    f"{verdict.observed} observed events); report {paths['html']}")
        logger.info(f'<img src="{_log_relative(plot)}" alt="timeline of {verdict.scenario}" width="800">', html=True)
        if not verdict.ok:
            logger.info(divergence_table(verdict))
            self._log_artifacts(verdict)
        return verdict

    @keyword
    def board_should_match_model(self, verdict: Verdict | None = None) -> None:
        """Fail, listing the divergence rows, unless the board did what the model predicted.

        ``verdict`` is what `Run Scenario` returned (default: the last one).

        | ${verdict}= | Run Scenario | closed-port |
        | Board Should Match Model | ${verdict} |
        | Run Scenario | link-flap |
        | Board Should Match Model |
        """
        verdict = verdict if verdict is not None else self._last_verdict
        if verdict is None:
            raise BoardError("no scenario was run yet: call `Run Scenario` first")
        if not verdict.ok:
            self._log_artifacts(verdict)
            raise AssertionError(mismatch_message(verdict))

    def _log_artifacts(self, verdict: Verdict) -> None:
        """Links in the log to a failed scenario's report, capture, console and verdict."""
        from harness.report import ScenarioFiles

        run = self._verdict_runs.get(id(verdict))
        if run is None:
            return
        run_dir, report = run
        files = [report, *ScenarioFiles.in_dir(run_dir).links()]
        links = " · ".join(f'<a href="{html.escape(_log_relative(p))}">{html.escape(p.name if p != report else "report")}'
                           "</a>" for p in files if p.is_file())
        logger.info(f"scenario {html.escape(verdict.scenario)}: {links}", html=True)

    @keyword
    def handshake_should_match_model(self) -> Verdict:
        """Run the built-in ``handshake`` scenario (a TCP handshake to each declared service) and check it.

        Fails, listing the divergence rows, when a SYN-ACK's options, window or timing
        departs from what Linux would have sent. Returns the verdict.

        | Handshake Should Match Model |
        """
        verdict = self.run_scenario("handshake")
        self.board_should_match_model(verdict)
        return verdict


def _log_relative(path: Path) -> str:
    """`path` as the log file links it (relative to the output directory when inside it)."""
    try:
        return Path(path).resolve().relative_to(Path(_output_dir()).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_uri()


def _check_rc(result, expected_rc: int | None) -> None:
    if expected_rc is not None and result.exit_status != int(expected_rc):
        raise AssertionError(f"{result.command!r} exited with {result.exit_status}, expected {expected_rc}\n"
                             f"--- stdout ---\n{result.stdout.rstrip()}\n--- stderr ---\n{result.stderr.rstrip()}")


def _output_dir() -> str:
    try:
        from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

        return BuiltIn().get_variable_value("${OUTPUT DIR}") or "."
    except RobotNotRunningError:   # libdoc imports the library outside a run
        return "bmc-hil-runs/robot"

