"""The board interface every driver implements, emulated or real.

Modelled on labgrid's split of a target into protocols its drivers implement: Console,
Power, Link, Capture and Network are small protocols every `Board` provides; Emulator is
provided only by a board that runs as an emulator on this machine (`Board.emulator`, None
elsewhere), so nothing asks a board with getattr what it can do.

The lifecycle is guarded as labgrid's drivers are (check_active): a board is inactive
when made, active once `power_on()` (or `activate()`, for a board that may already be
running) has succeeded, inactive again after `power_off()`, and closed by `close()`. A verb
that needs a running board (its console, SSH, commands, link, reset, watchdog) on an
inactive board, and any verb on a closed one, is a BoardError naming the board, the verb
and the state. `close()` always leaves nothing running and keeps the artifacts. The
watchdog verbs are the same on every board (busybox's daemon over SSH), so they live here.
"""

from __future__ import annotations

import abc
import enum
import functools
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.board.console import SerialConsole
from harness.board.ssh import CommandResult, SSHConnection
from harness.errors import BoardError, ExecutionError
from models.config import FirmwareConfig

if TYPE_CHECKING:
    from harness.board.qmp import Qmp


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


# -- the protocols ---------------------------------------------------------------------
class Console(Protocol):
    """The board's serial console (pyserial URL handlers underneath)."""

    @property
    def console(self) -> SerialConsole: ...

    def console_tail(self, n: int = 30) -> str: ...


class Power(Protocol):
    """Power the board on and off, and reset it."""

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...


class Link(Protocol):
    """The board's Ethernet link (carrier), and what the harness last set it to."""

    def set_link(self, up: bool) -> None: ...

    @property
    def link_up(self) -> bool: ...


class Capture(Protocol):
    """Record the board's frames to a pcap."""

    def capture_start(self, path: Path) -> None: ...

    def capture_stop(self) -> Path: ...


class Network(Protocol):
    """How the harness reaches the board's network: SSH, each service's address, and the
    wire when the harness owns it (it is then the board's only peer: `wired`)."""

    @property
    def ssh(self) -> SSHConnection: ...

    @property
    def wired(self) -> bool: ...

    wire: object | None

    def service_address(self, service: str, port: int) -> tuple[str, int]: ...


class Emulator(Protocol):
    """An emulator process on this machine: its pid, its QMP, and whether it still runs."""

    @property
    def pid(self) -> int | None: ...

    @property
    def qmp(self) -> Qmp: ...

    @property
    def running(self) -> bool: ...

    def check_alive(self) -> None: ...


class Lifecycle(enum.Enum):
    INACTIVE = "inactive (power_on() first)"
    ACTIVE = "active"
    CLOSED = "closed"


# Verbs that need a running board, and verbs any open board takes (power, capture).
_NEEDS_ACTIVE = ("console", "ssh", "run", "reset", "set_link", "watchdog_start", "watchdog_kick",
                 "watchdog_starve", "watchdog_stop")
_NEEDS_OPEN = ("power_on", "activate", "capture_start")


def _guarded(verb: str, fn, active: bool):
    @functools.wraps(fn)
    def guard(self, *args, **kwargs):
        state = self.lifecycle
        if state is Lifecycle.CLOSED or (active and state is not Lifecycle.ACTIVE):
            raise BoardError(f"board {self.name!r}: {verb} on a board that is {state.value}")
        return fn(self, *args, **kwargs)
    return guard


def _guard_verbs(cls) -> None:
    """Wrap the lifecycle-guarded verbs `cls` itself defines."""
    for verbs, active in ((_NEEDS_ACTIVE, True), (_NEEDS_OPEN, False)):
        for verb in verbs:
            attr = cls.__dict__.get(verb)
            if isinstance(attr, property) and attr.fget is not None \
                    and not getattr(attr.fget, "__isabstractmethod__", False):
                setattr(cls, verb, property(_guarded(verb, attr.fget, active), attr.fset))
            elif callable(attr) and not getattr(attr, "__isabstractmethod__", False):
                setattr(cls, verb, _guarded(verb, attr, active))


class Board(abc.ABC):
    """A BMC board under test: Console, Power, Link, Capture and Network, and an Emulator
    where it runs as one. Use as a context manager: `with board: ...`."""

    name: str
    out_dir: Path
    declared: FirmwareConfig
    lifecycle: Lifecycle = Lifecycle.INACTIVE
    wire = None          # the wire the harness owns, while the board is on it

    def __init_subclass__(cls, **kwargs):
        """Each driver's verbs are guarded by the lifecycle, whoever defines them."""
        super().__init_subclass__(**kwargs)
        _guard_verbs(cls)

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
        self.lifecycle = Lifecycle.CLOSED
        if not self._host_log.closed:
            self._host_log.close()

    def _activated(self, up: bool = True) -> None:
        """A driver says its board is running (power_on, activate) or not (power_off)."""
        if self.lifecycle is not Lifecycle.CLOSED:
            self.lifecycle = Lifecycle.ACTIVE if up else Lifecycle.INACTIVE

    # -- what the board provides beyond the verbs ------------------------------------
    @property
    def emulator(self) -> Emulator | None:
        """The emulator this board runs as on this machine, or None (a real or lab board)."""
        return None

    @property
    def wired(self) -> bool:
        """The harness owns the board's wire (it plays every peer); False: the board sits
        on a network the harness reaches through `service_address`."""
        return False

    def service_address(self, service: str, port: int) -> tuple[str, int]:
        """Where the harness connects to the board's `service` (declared on `port`): the
        board's own address by default."""
        return self.ssh.host, port

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


_guard_verbs(Board)     # its own verbs (run, the watchdog's) too
