"""The board interface every driver implements, emulated or real.

Modelled on labgrid's split: the verbs (console, command, link, power, capture,
watchdog) are a small abstract set; a driver opens hardware only in `power_on()` /
`activate()`; `close()` always leaves nothing running and keeps the artifacts.
The watchdog verbs are the same on every board (busybox's daemon over SSH), so they
live here.
"""

from __future__ import annotations

import abc
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.board.console import SerialConsole
from harness.board.ssh import CommandResult, SSHConnection
from harness.errors import BoardError, ExecutionError
from models.config import FirmwareConfig


@dataclass
class HostEvent:
    """Something the harness did to the board, on the host's monotonic clock."""

    name: str
    host_monotonic_ns: int
    host_wall_ns: int
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"event": self.name, "host_monotonic_ns": self.host_monotonic_ns,
                "host_wall_ns": self.host_wall_ns, **self.detail}


class Board(abc.ABC):
    """A BMC board under test. Use as a context manager: `with board: ...`."""

    name: str
    out_dir: Path
    declared: FirmwareConfig

    def __init__(self, name: str, out_dir: Path, declared: FirmwareConfig):
        self.name = name
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.declared = declared
        self.host_events: list[HostEvent] = []
        self._host_log = open(self.out_dir / "host-events.jsonl", "a", encoding="utf-8")

    # -- bookkeeping ---------------------------------------------------------------
    def record(self, name: str, **detail) -> HostEvent:
        """Log a stimulus the harness applied (link down, watchdog kick, ...)."""
        ev = HostEvent(name, time.monotonic_ns(), time.time_ns(), detail)
        self.host_events.append(ev)
        if not self._host_log.closed:
            self._host_log.write(json.dumps(ev.to_json()) + "\n")
            self._host_log.flush()
        return ev

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Power nothing off that the harness does not own; release every handle."""
        if not self._host_log.closed:
            self._host_log.close()

    # -- the verbs -----------------------------------------------------------------
    @property
    @abc.abstractmethod
    def console(self) -> SerialConsole: ...

    @property
    @abc.abstractmethod
    def ssh(self) -> SSHConnection: ...

    @abc.abstractmethod
    def power_on(self) -> None: ...

    @abc.abstractmethod
    def power_off(self) -> None: ...

    @abc.abstractmethod
    def reset(self) -> None: ...

    @abc.abstractmethod
    def set_link(self, up: bool) -> None: ...

    @abc.abstractmethod
    def capture_start(self, path: Path) -> None: ...

    @abc.abstractmethod
    def capture_stop(self) -> Path: ...

    def console_tail(self, n: int = 30) -> str:
        try:
            return self.console.tail(n)
        except Exception:  # noqa: BLE001 - a tail is for an error message; never raise from it
            return ""

    def run(self, command: str, timeout: float = 30.0, check: bool = True) -> CommandResult:
        """Run a shell command on the board over SSH."""
        try:
            return self.ssh.run(command, timeout=timeout, check=check)
        except ExecutionError as exc:
            exc.console_tail = self.console_tail()
            raise
        except BoardError as exc:
            raise type(exc)(str(exc).split("\n--- console tail")[0], console_tail=self.console_tail(),
                            artifacts=self.out_dir) from exc

    # -- watchdog (busybox's daemon on the board; aspeed_wdt underneath) ------------
    def watchdog_start(self, timeout: int, period: int = 1) -> None:
        """Arm /dev/watchdog with `timeout` s; the daemon kicks it every `period` s."""
        if not 0 < period < timeout:
            raise ValueError(f"kick period {period} s must be shorter than the timeout {timeout} s")
        self.run(f"watchdog -T {int(timeout)} -t {int(period)} /dev/watchdog")
        self.record("watchdog_start", timeout=timeout, period=period)

    def watchdog_kick(self) -> None:
        """One kick by hand: open, write, close without the magic 'V' (the watchdog stays armed).

        Only when no daemon holds the device (e.g. after `watchdog_starve`).
        """
        self.run("printf k > /dev/watchdog")
        self.record("watchdog_kick")

    def watchdog_starve(self) -> None:
        """SIGKILL the daemon: no magic close, so the watchdog stays armed and expires."""
        self.run("killall -9 watchdog")
        self.record("watchdog_starve")

    def watchdog_stop(self) -> None:
        """SIGTERM the daemon: it writes the magic 'V' and the watchdog stops."""
        self.run("killall watchdog")
        self.record("watchdog_stop")

    def check_alive(self) -> None:
        """Raise BoardError if the board is known to be gone. A board without an emulator
        or a lab session of its own has nothing to ask here: its liveness is its console
        answering (harness.runner.check_liveness)."""
        return

    def describe(self) -> str:
        return f"{type(self).__name__}({self.name!r}, out={shlex.quote(str(self.out_dir))})"
