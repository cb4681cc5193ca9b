"""Typed errors of the harness. Each carries what a user needs to act: which step, what
was seen, where the logs are. Raise them `from` their cause."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class BoardFileError(HarnessError):
    """A board file does not fit the schema (names the file and the field)."""


class SetupError(HarnessError):
    """The machine lacks something `bmc-hil setup` would install."""


class ImageBuildError(HarnessError):
    """Building the emulated firmware image failed; carries the log's tail and path."""

    def __init__(self, msg: str, log: Path | None = None, tail: str = ""):
        self.log = log
        self.tail = tail
        text = msg
        if tail:
            text += "\n--- last lines of the build log ---\n" + tail
        if log is not None:
            text += f"\n(full log: {log})"
        super().__init__(text)


class BoardError(HarnessError):
    """A board operation failed. Shows the console tail and where the artifacts are."""

    def __init__(self, msg: str, console_tail: str = "", artifacts: Path | None = None):
        self.console_tail = console_tail
        self.artifacts = artifacts
        text = msg
        if console_tail:
            text += "\n--- console tail ---\n" + console_tail.rstrip("\n")
        if artifacts is not None:
            text += f"\n(logs kept in {artifacts})"
        super().__init__(text)


class QemuError(BoardError):
    """QEMU is missing, failed to start, or died."""


class KernelPanic(BoardError):
    """The console showed a kernel panic."""


class ConsoleError(BoardError):
    """The serial console could not be opened or read."""


class ConsoleTimeout(ConsoleError):
    """An expected console pattern did not appear in time; shows what was seen."""


class SSHError(BoardError):
    """SSH refused, timed out, or failed to authenticate."""


class ExecutionError(BoardError):
    """A command on the board (or a control command on the host) exited non-zero."""

    def __init__(self, msg: str, stdout: str = "", stderr: str = "", exit_status: int | None = None,
                 **kw):
        self.stdout = stdout
        self.stderr = stderr
        self.exit_status = exit_status
        detail = msg
        if exit_status is not None:
            detail += f" (exit status {exit_status})"
        if stderr.strip():
            detail += "\n--- stderr ---\n" + stderr.rstrip()
        elif stdout.strip():
            detail += "\n--- stdout ---\n" + stdout.rstrip()
        super().__init__(detail, **kw)


class StrategyError(BoardError):
    """The board could not be walked to the wanted state; names the step that failed."""

    def __init__(self, step: str, reason: str, **kw):
        self.step = step
        self.reason = reason
        super().__init__(f"board did not reach '{step}': {reason}", **kw)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout` and a cancelled CI job send), raised where the process is so
    that it unwinds as Ctrl-C does: boards powered off and recorded, reports written."""
