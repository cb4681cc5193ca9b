"""The board under test, as the suites see it: opened once, walked to SSH, brought back
after a test that disturbed it, and the timing checks the suites make on it.

Framework-neutral: the pytest plugin and the Robot library both stand on this, so a
check reads and fails the same way in either; it touches no pytest or Robot API.

Every check measures from a stimulus the harness recorded (`Board.record`, host
monotonic clock) to what the board showed: a console line or a QMP event, stamped on
the same clock as they arrived.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from harness.board import Board, BoardSpec, BoardState, BoardStrategy, open_board, timeouts_for
from harness.board.console import ConsoleLine
from harness.errors import BoardError, QemuError
from harness.oracle import Tolerance, Verdict

# phylib polls a PHY without an interrupt line once a second (PHY_STATE_TIME), so Linux
# logs a link change up to one poll period after it happens.
PHYLIB_POLL_S = 1.0
# What a board adds on top of the kernel's own timing (console latency, host load);
# emulation is slower than silicon. Scaled by --tolerance-scale / tolerance_scale=.
BOARD_TOLERANCE_S = {"emulated": 1.5, "real": 0.5}
BANNER_RE = re.compile(r"Linux version \d+\.\d+")
WATCHDOG_NOT_STOPPED = "watchdog: watchdog0: watchdog did not stop!"
# A port no BMC may leave open unless it declares it (telnet): the closed-port probe
# when the firmware declares no service off.
UNDECLARED_PROBE_PORT = 23
UNDECLARED_PROBE = "undeclared-telnet"
# Set by `bmc-hil nightly` for its suites: the report.json of its scenario phase.
REUSE_VERDICTS_ENV = "BMC_HIL_REUSE_VERDICTS"


@dataclass(frozen=True)
class Probe:
    """What a TCP connection to a board's port met: `answered`, `refused` or `silent`."""

    outcome: str
    detail: str


class BoardUnderTest:
    """One board for a whole run: booted lazily, recovered on demand, closed at the end."""

    def __init__(self, spec: BoardSpec, out_dir: Path, tolerance_scale: float = 1.0, log=print):
        if not tolerance_scale > 0:
            raise ValueError(f"tolerance scale must be > 0, got {tolerance_scale!r}")
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.tolerance_scale = tolerance_scale
        self.log = log
        self.board: Board | None = None
        self.strategy: BoardStrategy | None = None
        self.boots = 0
        # Why the board must be brought back before it is used again (None: it is fine).
        self.recovery_reason: str | None = None

    # -- lifecycle -------------------------------------------------------------------
    @property
    def emulated(self) -> bool:
        return self.spec.kind == "emulated"

    def open(self) -> Board:
        """The board at SSH-ready (opened and booted on the first call)."""
        if self.board is None:
            self.board = open_board(self.spec, self.out_dir, log=self.log)
            if self.emulated:
                # slirp reaches only forwarded ports: forward the probe so the closed-port
                # check meets the board's own TCP stack, as it would on a lab network.
                self.board.extra_forwards.setdefault(UNDECLARED_PROBE, UNDECLARED_PROBE_PORT)
            self.strategy = BoardStrategy(self.board, timeouts_for(self.spec))
        if self.strategy.state < BoardState.SSH:
            self.boot()
        return self.board

    def boot(self) -> None:
        """Walk the board from off to SSH-ready (a fresh power cycle)."""
        self.strategy.mark_dirty()
        self.strategy.transition(BoardState.SSH)
        self.boots += 1

    def health_error(self) -> BoardError | None:
        """What stops the board being used as it is (QEMU gone, `true` over SSH fails), or None."""
        board = self.board
        if board is None:
            return None
        try:
            board.check_alive()
        except QemuError as exc:
            return exc
        try:
            board.ssh.run("true", timeout=10, check=True)
            return None
        except BoardError:
            pass  # the session may just have dropped: a fresh login decides
        try:
            board.ssh.wait_until_up(timeout=self.strategy.timeouts.ssh / 4)
        except BoardError as exc:
            return BoardError(f"the board does not answer `true` over SSH: {exc}",
                              console_tail=board.console_tail(), artifacts=board.out_dir)
        return None

    def recover(self) -> None:
        """Bring the board back to SSH-ready after a disruptive test or a death.

        The link goes back up first: a driver remembers a link taken down and would
        bring the next boot up without carrier.
        """
        board = self.board
        if board is None:
            return
        if not board.link_up:
            emulator = board.emulator
            if emulator is not None and not emulator.running:
                board.power_off()
                board.power_on()
            board.set_link(True)
        self.boot()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
            self.strategy = None

    # -- windows ---------------------------------------------------------------------
    @property
    def tolerance_s(self) -> float:
        """This board's timing tolerance in seconds (per kind, times the scale)."""
        # a lab place (labgrid) is usually silicon; an emulated place takes --tolerance-scale
        return BOARD_TOLERANCE_S.get(self.spec.kind, BOARD_TOLERANCE_S["real"]) * self.tolerance_scale

    @property
    def link_detection_window_s(self) -> float:
        """How long after a link change Linux may log it on this board."""
        return PHYLIB_POLL_S + self.tolerance_s

    def watchdog_reset_window_s(self, timeout: float, period: float) -> tuple[float, float]:
        """(earliest, latest) seconds from a starve to the reset.

        The daemon's last kick is at most one `period` before the SIGKILL, and the
        watchdog expires `timeout` after that kick.
        """
        return max(0.0, timeout - period - self.tolerance_s), timeout + self.tolerance_s

    # -- observations ----------------------------------------------------------------
    def last_stimulus(self, *names: str):
        """The latest host event with one of `names` (a `HostEvent`); BoardError if none."""
        for ev in reversed(self.board.host_events):
            if ev.name in names:
                return ev
        raise BoardError(f"no {' or '.join(names)} stimulus was applied to the board yet")

    def console_since(self, host_monotonic_ns: int) -> list[ConsoleLine]:
        return [line for line in self.board.console.lines if line.host_monotonic_ns >= host_monotonic_ns]

    def link_logged_within(self, up: bool, seconds: float) -> float:
        """Seconds from the last link stimulus to its console line; AssertionError if later than `seconds`."""
        iface = self.board.declared.interface.name
        state = "Up" if up else "Down"
        pattern = re.compile(rf"\b{re.escape(iface)}: Link is {state}")
        stimulus = self.last_stimulus("link_up" if up else "link_down")
        line = self._wait_console(pattern, stimulus.host_monotonic_ns, seconds)
        if line is None:
            raise AssertionError(f"'{iface}: Link is {state}' not logged within {seconds:g} s of the link going "
                                 f"{state.lower()}; console since then:\n{self._seen(stimulus.host_monotonic_ns)}")
        delay = (line.host_monotonic_ns - stimulus.host_monotonic_ns) / 1e9
        if delay > seconds:
            raise AssertionError(f"'{iface}: Link is {state}' logged {delay:.3f} s after the link went "
                                 f"{state.lower()}, later than {seconds:g} s: {line.text}")
        return delay

    def reset_within(self, seconds: float) -> float:
        """Seconds from the last watchdog starve to the reset; AssertionError if later than `seconds`.

        The reset is QEMU's WATCHDOG event on an emulated board, the next kernel banner on
        the console of a real one.
        """
        stimulus = self.last_stimulus("watchdog_starve")
        since = stimulus.host_monotonic_ns
        if self.emulated:
            qmp = self.board.qmp
            deadline = since + int(seconds * 1e9) + 2_000_000_000
            while time.monotonic_ns() < deadline:
                events = [e for e in qmp.events if e.name == "WATCHDOG" and e.host_monotonic_ns >= since]
                if events:
                    delay = (events[0].host_monotonic_ns - since) / 1e9
                    if delay > seconds:
                        raise AssertionError(f"watchdog reset {delay:.3f} s after the starve, later than {seconds:g} s")
                    return delay
                self.board.check_alive()
                time.sleep(0.05)
            seen = ", ".join(f"{e.name} {e.data}" for e in qmp.events if e.host_monotonic_ns >= since) or "none"
            raise AssertionError(f"no WATCHDOG event within {seconds:g} s of the starve (QMP events since: {seen});"
                                 f" console since the starve:\n{self._seen(since)}")
        line = self._wait_console(BANNER_RE, since, seconds)
        if line is None:
            raise AssertionError(f"no new 'Linux version' banner within {seconds:g} s of the starve; "
                                 f"console since the starve:\n{self._seen(since)}")
        delay = (line.host_monotonic_ns - since) / 1e9
        if delay > seconds:
            raise AssertionError(f"board reset {delay:.3f} s after the starve, later than {seconds:g} s")
        return delay

    def _wait_console(self, pattern: re.Pattern, since_ns: int, seconds: float) -> ConsoleLine | None:
        # Waits a little past the window so a late line is reported with its delay.
        deadline = since_ns + int(seconds * 1e9) + 2_000_000_000
        while True:
            for line in self.console_since(since_ns):
                if pattern.search(line.text):
                    return line
            if time.monotonic_ns() >= deadline:
                return None
            time.sleep(0.05)

    def _seen(self, since_ns: int, n: int = 30) -> str:
        lines = [line.text for line in self.console_since(since_ns)][-n:]
        return "\n".join(lines) if lines else "<nothing>"

    # -- the oracle ------------------------------------------------------------------
    @property
    def tolerance(self) -> Tolerance:
        """The oracle's tolerances for this run (the defaults times the scale)."""
        return Tolerance().scaled(self.tolerance_scale)

    def run_scenario(self, scenario: str | Path, out_dir: Path, log=None) -> Verdict:
        """Run a scenario (file or built-in name) on a fresh board and ask the oracle.

        The scenario gets a board of its own, captured from power-on (`harness.runner`);
        this run's board is powered off meanwhile (two emulated boards would share the
        host's cores and skew the timing) and brought back before it is used again.
        """
        from harness.runner import check_scenario, run_scenario
        from harness.scenario import load_scenario

        reused = self._reused_verdict(scenario)
        if reused is not None:
            return reused
        loaded = load_scenario(scenario)
        if self.board is not None and self.strategy.state > BoardState.OFF:
            self.strategy.transition(BoardState.OFF)
            self.recovery_reason = f"powered off while scenario {loaded.name} ran on its own board"
        run = run_scenario(self.spec, loaded, Path(out_dir), log=log or self.log)
        return check_scenario(self.spec, run, self.tolerance)

    def _reused_verdict(self, scenario: str | Path) -> Verdict | None:
        """The verdict the nightly's scenario phase already reached for this built-in
        scenario on this board with this tolerance (`$BMC_HIL_REUSE_VERDICTS` names its
        report.json), so a night runs each scenario once. A scenario file, another board
        or another tolerance runs afresh."""
        import os

        report = os.environ.get(REUSE_VERDICTS_ENV)
        if not report or not isinstance(scenario, str) or "/" in scenario or scenario.endswith((".yaml", ".yml")):
            return None
        try:
            data = json.loads(Path(report).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("board") != self.spec.name or data.get("tolerance_scale") != self.tolerance_scale:
            return None
        for v in data.get("scenarios", []):
            if v.get("scenario") == scenario:
                self.log(f"scenario {scenario}: the verdict of this night's scenario phase ({report})")
                verdict = Verdict.from_json(v)
                verdict.notes.append(f"reused from {report}: the scenario ran once this night")
                return verdict
        return None

    # -- services --------------------------------------------------------------------
    def endpoint(self, service: str) -> tuple[str, int]:
        """Where the host reaches `service` (a declared service name, or the undeclared probe)."""
        board = self.board
        if self.emulated:
            return "127.0.0.1", board.host_port(service)
        if service == UNDECLARED_PROBE:
            return board.ssh.host, UNDECLARED_PROBE_PORT
        declared = board.declared.service(service)
        if declared is None:
            raise BoardError(f"the board declares no service {service!r}")
        return board.ssh.host, declared.port

    def probe(self, service: str, timeout: float = 5.0) -> Probe:
        """Connect to `service`'s port and see whether something answers.

        Through slirp a refused port looks different: the host side accepts, then closes
        or resets once the board refuses the forwarded SYN. Both read as `refused`.
        """
        host, port = self.endpoint(service)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError:
            return Probe("refused", f"{host}:{port} refused the connection")
        except OSError as exc:
            return Probe("silent", f"{host}:{port}: {exc}")
        with sock:
            sock.settimeout(timeout)
            try:
                # SSH speaks first; HTTP waits for a request.
                try:
                    data = sock.recv(256)
                except TimeoutError:
                    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = sock.recv(256)
            except (ConnectionResetError, BrokenPipeError):
                return Probe("refused", f"{host}:{port} reset the connection")
            except TimeoutError:
                return Probe("silent", f"{host}:{port} accepted but said nothing within {timeout:g} s")
        if not data:
            return Probe("refused", f"{host}:{port} closed the connection without a byte")
        return Probe("answered", data.split(b"\n", 1)[0].decode(errors="replace").strip())

    # -- artifacts -------------------------------------------------------------------
    def write_span(self, folder: Path, start_wall_ns: int, end_wall_ns: int) -> dict[str, Path]:
        """Write the console lines, host events and QMP events of [start, end] into `folder`.

        Read from the board's own logs, which run across power cycles, so a test that
        rebooted the board (or killed it) keeps everything it saw.
        """
        if self.board is None:
            return {}
        folder.mkdir(parents=True, exist_ok=True)
        src = self.board.out_dir
        written = {}
        console = _wall_stamped_lines(src / "console.log", start_wall_ns, end_wall_ns)
        (folder / "console.log").write_text("".join(console), encoding="utf-8")
        written["console"] = folder / "console.log"
        for name in ("host-events.jsonl", "qmp.jsonl"):
            if (src / name).exists():
                rows = _jsonl_in_span(src / name, start_wall_ns, end_wall_ns)
                (folder / name).write_text("".join(rows), encoding="utf-8")
                written[name.split(".")[0]] = folder / name
        return written


def divergence_table(verdict: Verdict, limit: int = 30) -> str:
    """The verdict's divergence rows as text lines (times in ms from the scenario start)."""
    def ms(ns):
        return "-" if ns is None else f"{(ns - verdict.start_ns) / 1e6:.1f}"

    lines = []
    for row in verdict.rows[:limit]:
        line = f"  {row['kind']:<9} {row.get('stream_name', '?'):<22} predicted {ms(row.get('pred_ns'))} ms, " \
               f"observed {ms(row.get('obs_ns'))} ms"
        if row.get("frame"):
            line += f" (frame {row['frame']})"
        if row.get("field"):
            line += f"; {row['field']}: predicted {row.get('pred_value')}, observed {row.get('obs_value')}"
        lines.append(line)
    if len(verdict.rows) > limit:
        lines.append(f"  ... and {len(verdict.rows) - limit} more")
    return "\n".join(lines)


def mismatch_message(verdict: Verdict, where: Path | None = None) -> str:
    """Why a verdict fails: its divergence rows, and where its report is."""
    text = f"scenario {verdict.scenario}: the board departed from the model in {len(verdict.rows)} " \
           f"place(s) ({verdict.predicted} predicted, {verdict.observed} observed events):\n{divergence_table(verdict)}"
    if verdict.error:
        text = f"scenario {verdict.scenario}: no verdict: {verdict.error}\n" + text
    if where is not None:
        text += f"\n(report and timeline in {where})"
    return text


def _wall_stamped_lines(path: Path, start_ns: int, end_ns: int) -> list[str]:
    """Lines of a console log (`<wall seconds> <text>`) stamped inside [start, end]."""
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for raw in text.splitlines(keepends=True):
        stamp, _, _ = raw.partition(" ")
        try:
            wall_ns = int(float(stamp) * 1e9)
        except ValueError:
            continue
        if start_ns <= wall_ns <= end_ns:
            out.append(raw)
    return out


def _jsonl_in_span(path: Path, start_ns: int, end_ns: int) -> list[str]:
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        try:
            wall_ns = json.loads(raw).get("host_wall_ns", 0)
        except json.JSONDecodeError:
            continue
        if start_ns <= wall_ns <= end_ns:
            out.append(raw)
    return out
