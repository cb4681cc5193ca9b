"""Walk a board through named states, labgrid-strategy style:

    off -> booted -> shell -> network -> ssh

Each step checks the board the way an engineer would (the kernel banner on the console,
a shell that answers, eth0 up with its address, an SSH login that runs a command) and a
failure says which step failed and why, with the console tail.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass, field

from harness.board.base import Board
from harness.errors import BoardError, ConsoleError, KernelPanic, StrategyError

BANNER = re.compile(r"Linux version \d+\.\d+")
LOGIN_PROMPT = re.compile(r"login: *$")
PASSWORD_PROMPT = re.compile(r"Password: *$")


class BoardState(enum.IntEnum):
    OFF = 0
    BOOTED = 1
    SHELL = 2
    NETWORK = 3
    SSH = 4


@dataclass
class Timeouts:
    """Seconds per step; emulation is slower than silicon, so these are per board."""

    booted: float = 30.0
    shell: float = 60.0
    network: float = 30.0
    ssh: float = 60.0


@dataclass
class StrategyResult:
    state: BoardState
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class BoardStrategy:
    """Bring `board` to a wanted `BoardState`, one checked step at a time."""

    def __init__(self, board: Board, timeouts: Timeouts | None = None, initial: BoardState = BoardState.OFF):
        """`initial`: what is already known of the board (a lab board that is running: BOOTED)."""
        self.board = board
        self.timeouts = timeouts or Timeouts()
        self.state = initial

    def transition(self, wanted: BoardState | str) -> StrategyResult:
        if isinstance(wanted, str):
            wanted = BoardState[wanted.upper()]
        result = StrategyResult(self.state)
        if wanted == BoardState.OFF:
            self.board.power_off()
            self.state = BoardState.OFF
            result.state = self.state
            return result
        steps = [(BoardState.BOOTED, self._boot), (BoardState.SHELL, self._shell),
                 (BoardState.NETWORK, self._network), (BoardState.SSH, self._ssh)]
        for state, step in steps:
            if state > wanted or state <= self.state:
                continue
            start = time.monotonic()
            try:
                step()
            except StrategyError:
                raise
            except BoardError as exc:
                raise StrategyError(state.name.lower(), _first_line(exc), console_tail=self.board.console_tail(),
                                    artifacts=self.board.out_dir) from exc
            result.seconds[state.name.lower()] = time.monotonic() - start
            self.state = state
        result.state = self.state
        return result

    def mark_dirty(self) -> None:
        """Forget what was reached (after a reset, a crash or a disruptive test)."""
        self.state = BoardState.OFF

    # -- steps -----------------------------------------------------------------------
    def _boot(self) -> None:
        self.board.power_off()
        self.board.power_on()
        self.board.console.expect(BANNER, self.timeouts.booted, since=0)

    def _shell(self) -> None:
        console = self.board.console
        deadline = time.monotonic() + self.timeouts.shell
        last: Exception | None = None
        while time.monotonic() < deadline:
            since = console.cursor()
            # Ctrl-C first: text typed while the kernel was still booting may have left
            # the shell inside an open quote.
            console.send("\x03")
            console.sendline("")
            self._maybe_login(since)
            try:
                out, status = console.run("echo $((6*7))", timeout=min(1.5, max(0.5, deadline - time.monotonic())))
                if status == 0 and out.strip().endswith("42"):
                    return
            except KernelPanic:
                raise
            except ConsoleError as exc:
                last = exc
        raise StrategyError("shell", f"no shell answered on the console within {self.timeouts.shell:g} s"
                            + (f" ({_first_line(last)})" if last else ""),
                            console_tail=console.tail(), artifacts=self.board.out_dir)

    def _maybe_login(self, since: int) -> None:
        """A real board may sit at a login prompt: answer it with the SSH credentials."""
        console = self.board.console
        try:
            console.expect(LOGIN_PROMPT, 0.3, since=max(0, since - 3))
        except ConsoleError:
            return
        ssh = self.board.ssh
        console.sendline(ssh.user)
        try:
            console.expect(PASSWORD_PROMPT, 5.0)
            console.sendline(ssh._password or "")
        except ConsoleError:
            pass

    def _network(self) -> None:
        console = self.board.console
        iface = self.board.declared.interface
        deadline = time.monotonic() + self.timeouts.network
        seen = ""
        while time.monotonic() < deadline:
            out, status = console.run(f"cat /sys/class/net/{iface.name}/operstate /sys/class/net/{iface.name}/carrier; ip -4 -o addr show dev {iface.name}",
                                      timeout=10)
            seen = out
            lines = out.splitlines()
            # NC-SI and other drivers without RFC 2863 operstate report "unknown" with carrier.
            if status == 0 and len(lines) >= 2 and lines[0].strip() in ("up", "unknown") \
                    and lines[1].strip() == "1" and "inet " in out:
                return
            time.sleep(0.5)
        raise StrategyError("network", f"{iface.name} not up with an IPv4 address within "
                            f"{self.timeouts.network:g} s; last seen: {seen.strip() or '<nothing>'}",
                            console_tail=console.tail(), artifacts=self.board.out_dir)

    def _ssh(self) -> None:
        self.board.ssh.wait_until_up(self.timeouts.ssh)


def _first_line(exc: BaseException | None) -> str:
    return str(exc).split("\n", 1)[0] if exc else ""
