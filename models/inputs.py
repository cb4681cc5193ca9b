"""The board model's inputs, one frozen dataclass per kind of thing that can happen to a
board from outside (h11/aioquic style events), and `parse_input` for the dict form that
scenario files and `predict` timelines use.

Every input is something the world did to the board: a frame reached it, its cable was
pulled, someone typed on its console or started a program on it. Nothing here is the
board's own output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ModelUsageError

__all__ = ["BoardInput", "FrameArrived", "LinkChanged", "WatchdogDaemonStart", "WatchdogSignal", "Reboot",
           "PowerCycle", "TxStall", "Connect", "Send", "Shutdown", "Close", "parse_input", "frame_raw"]


class BoardInput:
    """Base of every model input."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class FrameArrived(BoardInput):
    """A frame reached the board's MAC from the wire."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class LinkChanged(BoardInput):
    """The cable (or QEMU's set_link) went up or down."""

    up: bool


@dataclass(frozen=True, slots=True)
class WatchdogDaemonStart(BoardInput):
    """`watchdog -T timeout -t period /dev/watchdog` started on the board; None: the
    firmware config's values."""

    timeout: int | None = None
    period: int | None = None


@dataclass(frozen=True, slots=True)
class WatchdogSignal(BoardInput):
    """The watchdog daemon was sent SIGTERM or SIGKILL, or hung (stopped kicking)."""

    signal: str   # "sigterm" | "sigkill" | "hang"

    def __post_init__(self):
        if self.signal not in ("sigterm", "sigkill", "hang"):
            raise ModelUsageError(f"watchdog signal {self.signal!r}: expected sigterm, sigkill or hang")


@dataclass(frozen=True, slots=True)
class Reboot(BoardInput):
    """`reboot` typed at the board's shell."""


@dataclass(frozen=True, slots=True)
class PowerCycle(BoardInput):
    """The board was reset or powered on by the harness (power switch, QMP system_reset):
    a fresh kernel with no output of its own."""


@dataclass(frozen=True, slots=True)
class TxStall(BoardInput):
    """MACCR TXDMA_EN cleared (fault injection): the MAC stops transmitting."""


@dataclass(frozen=True, slots=True)
class Connect(BoardInput):
    """An application on the board calls connect() on a new socket named `fd`; `sport`
    binds the source port first (0: Linux picks one, __inet_hash_connect)."""

    fd: str
    addr: str
    port: int
    sport: int = 0


@dataclass(frozen=True, slots=True)
class Send(BoardInput):
    """An application writes `data` on socket `fd`."""

    fd: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Shutdown(BoardInput):
    """An application calls shutdown(SHUT_WR) on socket `fd` (busybox nc at its stdin's EOF)."""

    fd: str


@dataclass(frozen=True, slots=True)
class Close(BoardInput):
    """An application closes socket `fd` (or exits); `late_ns`: it may have come up to that
    much later (a program's exit shows nothing on the wire, so its time is only bounded)."""

    fd: str
    late_ns: int = 0


def parse_input(event: dict[str, Any]) -> BoardInput:
    """The dict form (`{"kind": "link", "up": false}`, see models.board) as a typed input;
    `ModelUsageError` names what does not fit."""
    kind = event.get("kind")
    if kind == "frame":
        return FrameArrived(frame_raw(event))
    try:
        if kind == "link":
            return LinkChanged(bool(event["up"]))
        if kind == "watchdog_daemon_start":
            t, p = event.get("timeout"), event.get("period")
            return WatchdogDaemonStart(None if t is None else int(t), None if p is None else int(p))
        if kind in ("watchdog_sigterm", "watchdog_sigkill", "watchdog_hang"):
            return WatchdogSignal(kind.removeprefix("watchdog_"))
        if kind == "reboot":
            return Reboot()
        if kind == "power_cycle":
            return PowerCycle()
        if kind == "tx_stall":
            return TxStall()
        if kind == "connect":
            return Connect(str(event["fd"]), str(event["addr"]), int(event["port"]), int(event.get("sport") or 0))
        if kind == "send":
            data = event.get("data", "")
            return Send(str(event["fd"]), data.encode() if isinstance(data, str) else bytes(data))
        if kind == "shutdown":
            return Shutdown(str(event["fd"]))
        if kind == "close":
            return Close(str(event["fd"]), int(event.get("late_ns") or 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUsageError(f"input {kind!r}: {type(exc).__name__}: {exc}") from exc
    raise ModelUsageError(f"unknown input kind {kind!r}")


def frame_raw(event: dict[str, Any]) -> bytes:
    """The bytes of a dict "frame" input (its "raw" bytes, or its "hex"): what
    `parse_input(event).raw` is, without building the FrameArrived (the model's per-frame
    path takes the bytes alone)."""
    try:
        raw = event.get("raw")
        return bytes(raw) if raw is not None else bytes.fromhex(event["hex"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUsageError(f"input 'frame': {type(exc).__name__}: {exc}") from exc
