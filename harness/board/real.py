"""A real AST2500 board in a lab, built from a board file: console on a pyserial URL,
SSH with a strict known_hosts policy by default, capture on a named host interface,
link and power through command templates run as argument lists (never a shell)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.board.base import Board
from harness.board.boardfile import BoardSpec
from harness.board.capture import LiveCapture
from harness.board.console import SerialConsole
from harness.board.ssh import SSHConnection
from harness.errors import BoardError, ExecutionError


class RealBoard(Board):
    """Drives a board described by a `BoardSpec` of kind `real`."""

    def __init__(self, spec: BoardSpec, out_dir: Path, command_timeout: float = 60.0):
        if spec.kind != "real":
            raise ValueError(f"{spec.source}: RealBoard needs kind: real, got {spec.kind}")
        super().__init__(spec.name, out_dir, spec.firmware)
        self.spec = spec
        self.command_timeout = command_timeout
        self._console = SerialConsole(spec.console_url, self.out_dir / "console.log", baudrate=spec.baudrate)
        s = spec.ssh
        self._ssh = SSHConnection(s.host, s.port, s.user, password=s.password, key_file=s.key_file,
                                  known_hosts=s.known_hosts, known_hosts_file=s.known_hosts_file)
        self._capture: LiveCapture | None = None
        self._link_up = True
        self._activated()     # a real board may already be running: its verbs work from here

    @property
    def console(self) -> SerialConsole:
        if not self._console.is_open:
            self._console.open()
        return self._console

    @property
    def ssh(self) -> SSHConnection:
        return self._ssh

    def activate(self) -> None:
        """Open the console (the board may already be running)."""
        if not self._console.is_open:
            self._console.open()

    # -- command templates ---------------------------------------------------------
    def _run_template(self, group: str, verb: str) -> None:
        commands = self.spec.link_commands if group == "link" else self.spec.power_commands
        if verb not in commands:
            raise BoardError(f"{self.spec.source}: no {group}.{verb} command in the board file")
        argv = [a.format(name=self.name, console_url=self.spec.console_url) for a in commands[verb]]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.command_timeout)
        except FileNotFoundError as exc:
            raise ExecutionError(f"{group}.{verb} command {argv[0]!r} not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise ExecutionError(f"{group}.{verb} command {argv} did not finish within "
                                 f"{self.command_timeout:g} s") from exc
        if proc.returncode != 0:
            raise ExecutionError(f"{group}.{verb} command {argv} failed", proc.stdout, proc.stderr, proc.returncode)

    def power_on(self) -> None:
        self.activate()
        self._run_template("power", "on")
        self.record("power_on")

    def power_off(self) -> None:
        if "off" in self.spec.power_commands:
            self._run_template("power", "off")
            self.record("power_off")
        self._ssh.close()

    def reset(self) -> None:
        if "reset" in self.spec.power_commands:
            self._run_template("power", "reset")
        else:
            self._run_template("power", "off")
            self._run_template("power", "on")
        self.record("reset")

    def set_link(self, up: bool) -> None:
        self._run_template("link", "up" if up else "down")
        self._link_up = up
        self.record("link_up" if up else "link_down")

    @property
    def link_up(self) -> bool:
        return self._link_up

    def capture_start(self, path: Path) -> None:
        if not self.spec.capture_interface:
            raise BoardError(f"{self.spec.source}: no capture.interface in the board file")
        if self._capture is not None:
            raise BoardError("a capture is already running")
        self._capture = LiveCapture(self.spec.capture_interface, self.spec.capture_filter)
        self._capture.start(Path(path))
        self.record("capture_start", path=str(path))

    def capture_stop(self) -> Path:
        if self._capture is None:
            raise BoardError("no capture is running")
        cap, self._capture = self._capture, None
        path = cap.stop()
        self.record("capture_stop", files=[str(path)], packets=cap.count)
        return path

    def close(self) -> None:
        try:
            if self._capture is not None:
                self.capture_stop()
        finally:
            self._ssh.close()
            self._console.close()
            super().close()
