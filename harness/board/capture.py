"""Live capture on a named host interface through pyshark.

pyshark's LiveCapture runs dumpcap/tshark; every packet it hands back carries its raw
bytes (`include_raw`) and its capture stamp, which this module writes to a nanosecond
pcap as it goes, so the file is complete up to the last packet delivered even if the
run is interrupted.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path

import pyshark

from harness.board.wire import PcapWriter
from harness.errors import BoardError


class LiveCapture:
    """Capture `interface` (with an optional BPF `capture_filter`) into a pcap file."""

    def __init__(self, interface: str, capture_filter: str | None = None):
        if shutil.which("tshark") is None:
            raise BoardError("tshark not found on PATH; run `bmc-hil setup`")
        self.interface = interface
        self.capture_filter = capture_filter
        self.count = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._writer: PcapWriter | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()

    def start(self, path: Path, settle: float = 1.0) -> None:
        self._writer = PcapWriter(path)
        self._thread = threading.Thread(target=self._run, name=f"capture {self.interface}", daemon=True)
        self._thread.start()
        self._started.wait(5)
        time.sleep(settle)  # dumpcap needs a moment before the interface is really captured
        if self._error is not None:
            raise BoardError(f"capture on {self.interface} failed: {self._error}")

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        cap = pyshark.LiveCapture(interface=self.interface, bpf_filter=self.capture_filter,
                                  use_json=True, include_raw=True, eventloop=self._loop)
        self._task = self._loop.create_task(cap.packets_from_tshark(self._on_packet))
        self._started.set()
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - handed to the caller on stop()
            self._error = exc
        finally:
            try:
                self._loop.run_until_complete(cap.close_async())
            except Exception:  # noqa: BLE001 - tshark already gone
                pass
            self._loop.close()

    def _on_packet(self, pkt) -> None:
        raw = pkt.get_raw_packet()
        stamp = Decimal(pkt.frame_info.time_epoch)
        self._writer.write(int(stamp * 1_000_000_000), raw)
        self.count += 1

    def stop(self, drain: float = 0.5) -> Path:
        time.sleep(drain)  # let tshark hand over what dumpcap already has
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=10)
        path = self._writer.path
        self._writer.close()
        if self._error is not None:
            raise BoardError(f"capture on {self.interface} failed: {self._error} (kept {path})")
        return path
