"""A synchronous face on qemu.qmp's asyncio `QMPClient`, with an event log.

qemu.qmp runs in a private event loop on its own thread, so the board driver stays plain
blocking code (as labgrid's drivers are) while every QMP event (WATCHDOG, RESET, ...)
is written to the run's `qmp.jsonl` the moment it arrives, with QEMU's own timestamp
and the host's receive time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError

from harness.errors import QemuError


@dataclass(frozen=True)
class QmpEvent:
    """One QMP event; `qemu_wall_ns` is QEMU's stamp, `host_monotonic_ns` our receive time."""

    name: str
    data: dict
    qemu_wall_ns: int
    host_monotonic_ns: int
    host_wall_ns: int

    def to_json(self) -> dict:
        return {"event": self.name, "data": self.data, "qemu_wall_ns": self.qemu_wall_ns,
                "host_monotonic_ns": self.host_monotonic_ns, "host_wall_ns": self.host_wall_ns}


class Qmp:
    """Connect to a QMP unix socket; `execute()` commands; collect events."""

    def __init__(self, socket_path: Path, log_path: Path | None = None, name: str = "bmc-hil"):
        self.socket_path = socket_path
        self.log_path = log_path
        self._client = QMPClient(name)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qmp", daemon=True)
        self._events: list[QmpEvent] = []
        self._cond = threading.Condition()
        self._listeners: list = []
        self._watch: asyncio.Future | None = None
        self._log = None

    def _call(self, coro, timeout: float):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError as exc:
            fut.cancel()
            raise QemuError(f"QMP did not answer within {timeout:g} s") from exc

    def connect(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if self.log_path is not None:
            self._log = open(self.log_path, "a", encoding="utf-8")
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._call(self._client.connect(str(self.socket_path)), timeout=max(0.1, deadline - time.monotonic()))
                break
            except (QMPError, OSError) as exc:
                last = exc
                time.sleep(0.05)
        else:
            raise QemuError(f"cannot connect to QMP at {self.socket_path}: {last}")
        self._watch = asyncio.run_coroutine_threadsafe(self._pump_events(), self._loop)

    async def _pump_events(self) -> None:
        listener = EventListener()
        with self._client.listen(listener):
            async for msg in listener:
                ts = msg.get("timestamp", {})
                ev = QmpEvent(msg["event"], dict(msg.get("data", {})),
                              int(ts.get("seconds", 0)) * 1_000_000_000 + int(ts.get("microseconds", 0)) * 1000,
                              time.monotonic_ns(), time.time_ns())
                with self._cond:
                    self._events.append(ev)
                    if self._log is not None:
                        self._log.write(json.dumps(ev.to_json()) + "\n")
                        self._log.flush()
                    self._cond.notify_all()
                for cb in self._listeners:
                    cb(ev)

    def add_listener(self, callback) -> None:
        """`callback(event)` runs on the QMP thread for each event; keep it short."""
        self._listeners.append(callback)

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0):
        try:
            return self._call(self._client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise QemuError(f"QMP {command} {json.dumps(arguments or {})} failed: {exc}") from exc
        except QMPError as exc:
            raise QemuError(f"QMP {command} failed: {exc}") from exc

    @property
    def events(self) -> list[QmpEvent]:
        with self._cond:
            return list(self._events)

    def cursor(self) -> int:
        with self._cond:
            return len(self._events)

    def wait_event(self, name: str, timeout: float, since: int = 0) -> QmpEvent:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self._events[since:]:
                    if ev.name == name:
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(e.name for e in self._events[since:]) or "none"
                    raise QemuError(f"QMP event {name} not seen within {timeout:g} s (seen: {seen})")
                self._cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        if self._thread.is_alive():
            if self._watch is not None:
                self._watch.cancel()
            try:
                self._call(self._client.disconnect(), timeout=5)
            except Exception:  # noqa: BLE001 - QEMU may already be gone; nothing to save
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
