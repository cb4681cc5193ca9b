"""Live capture on a named host interface through pyshark.

pyshark's LiveCapture runs dumpcap/tshark; every packet it hands back carries its raw
bytes (`include_raw`) and its capture stamp, which this module writes to a nanosecond
pcap as it goes, so the file is complete up to the last packet delivered even if the
run is interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import select
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pyshark

from harness.errors import BoardError
from harness.ingest.pcapwrite import PcapWriter
from harness.proc import die_with_parent


class LiveCapture:
    """Capture `interface` (with an optional BPF `capture_filter`) into a pcap file.

    pyshark runs in a child process of its own (`python -m harness.board.capture`): its
    asyncio loop and the dumpcap/tshark pair it starts stay out of the harness's threads,
    and a SIGINT stops it cleanly. The child dies with the harness.
    """

    def __init__(self, interface: str, capture_filter: str | None = None):
        if shutil.which("tshark") is None:
            raise BoardError("tshark not found on PATH; run `bmc-hil setup`")
        self.interface = interface
        self.capture_filter = capture_filter
        self.count = 0
        self.path: Path | None = None
        self._proc: subprocess.Popen | None = None

    def start(self, path: Path, settle: float = 0.2, timeout: float = 20.0) -> None:
        self.path = Path(path)
        cmd = [sys.executable, "-m", "harness.board.capture", "--interface", self.interface,
               "--out", str(self.path)]
        if self.capture_filter:
            cmd += ["--filter", self.capture_filter]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=die_with_parent)
        ready = select.select([self._proc.stdout], [], [], timeout)[0]
        line = self._proc.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            self._proc.kill()
            err = self._proc.stderr.read()
            self._proc.wait()
            raise BoardError(f"capture on {self.interface} did not start within {timeout:g} s: "
                             f"{err.strip()[-800:] or 'no message from dumpcap'}")
        time.sleep(settle)
        if self._proc.poll() is not None:
            raise BoardError(f"capture on {self.interface} stopped at once: {self._proc.stderr.read().strip()[-800:]}")

    def stop(self, drain: float = 0.5) -> Path:
        time.sleep(drain)  # let tshark hand over what dumpcap already has
        proc, self._proc = self._proc, None
        if proc is None:
            raise BoardError("capture is not running")
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        for line in out.splitlines():
            if line.startswith("packets "):
                self.count = int(line.split()[1])
        if proc.returncode not in (0, -signal.SIGINT):
            raise BoardError(f"capture on {self.interface} failed (exit {proc.returncode}): "
                             f"{err.strip()[-800:]} (kept {self.path})")
        return self.path


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class _ReadyOnCapturing(logging.Handler):
    def __init__(self):
        super().__init__()
        self.sent = False

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if not self.sent and msg.startswith("Capturing on"):
            self.sent = True
            print("ready", flush=True)
        elif msg.startswith(("dumpcap:", "tshark:")) or "ermission" in msg:
            print(msg, file=sys.stderr, flush=True)


def _child(argv: list[str] | None = None) -> int:
    """The capture process: pyshark live capture -> nanosecond pcap, until SIGINT/SIGTERM."""
    ap = argparse.ArgumentParser(prog="python -m harness.board.capture")
    ap.add_argument("--interface", required=True)
    ap.add_argument("--filter")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    writer = PcapWriter(Path(args.out))
    count = 0

    def on_packet(pkt) -> None:
        nonlocal count
        stamp = Decimal(pkt.frame_info.time_epoch)
        writer.write(int(stamp * 1_000_000_000), pkt.get_raw_packet())
        count += 1

    cap = pyshark.LiveCapture(interface=args.interface, bpf_filter=args.filter, use_json=True, include_raw=True)
    loop = cap.eventloop
    # pyshark logs dumpcap's stderr at debug level; "Capturing on" means packets are
    # being taken from now on, which is when the parent may go on.
    cap._log.setLevel(logging.DEBUG)
    cap._log.addHandler(_ReadyOnCapturing())
    task = loop.create_task(cap.packets_from_tshark(on_packet))

    def finish() -> None:
        # Stop dumpcap, not tshark: tshark then reads the pipe to its end and hands over
        # every packet it still buffers before it exits. Cancel only if that stalls.
        for proc in list(getattr(cap, "_running_processes", ())):
            if _comm(proc.pid) == "dumpcap" and proc.returncode is None:
                proc.terminate()
        loop.call_later(5.0, task.cancel)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, finish)
    status = 0
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # noqa: BLE001 - reported to the parent on stderr
        print(f"capture failed: {exc}", file=sys.stderr)
        status = 1
    finally:
        try:
            loop.run_until_complete(cap.close_async())
        except Exception:  # noqa: BLE001 - tshark already gone
            pass
        writer.close()
    print(f"packets {count}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(_child())
