"""The board's serial console, read through pyserial's URL handlers.

`/dev/ttyUSB0`, `rfc2217://host:port` and `socket://127.0.0.1:port` (the emulated board's
chardev) all take the same code path. A reader thread timestamps every line as it
arrives (host monotonic and wall clock), parses the guest kernel's printk stamp when the
line has one, and appends it to the console log, so the log is complete whether or not a
test is waiting on the console.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import serial

from harness.errors import ConsoleError, ConsoleTimeout, KernelPanic

# The stamp usually starts the line, but a kernel message may land after a shell prompt.
_PRINTK_STAMP = re.compile(r"\[\s*(\d+)\.(\d{6})\] ")
PANIC_PATTERN = re.compile(r"Kernel panic - not syncing")
# Terminal control sequences: CSI (the shell's `ESC[6n` cursor query, colours), OSC (a
# title), charset selection and the two-byte escapes; and the same as the console log
# holds them, with ESC replaced by U+FFFD.
_TERMINAL_CONTROL = re.compile(r"(?:\x1b|\ufffd)\[[0-?]*[ -/]*[@-~]"
                               r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class ConsoleLine:
    """One console line. `guest_ns` is the printk stamp (None for user-space lines)."""

    index: int
    text: str
    host_monotonic_ns: int
    host_wall_ns: int
    guest_ns: int | None

    @property
    def message(self) -> str:
        """The text after the printk stamp (the whole text when it has none)."""
        m = _PRINTK_STAMP.search(self.text)
        return self.text[m.end():] if m else self.text


def printable(text: str) -> str:
    """`text` with binary noise and control characters visibly replaced (U+FFFD), as the
    console log keeps it."""
    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in text)


def clean_text(text: str) -> str:
    """Console text as shown to people: terminal control sequences left out (a raw one or
    the console log's replaced form), other noise visibly replaced."""
    return printable(_TERMINAL_CONTROL.sub("", text))


def parse_guest_stamp(text: str) -> int | None:
    """`[   12.345678] msg` -> 12345678000 ns; None when the line has no printk stamp."""
    m = _PRINTK_STAMP.search(text)
    if not m:
        return None
    return int(m.group(1)) * 1_000_000_000 + int(m.group(2)) * 1_000


class SerialConsole:
    """A console on a pyserial URL. Opened on `open()`, closed on `close()`."""

    def __init__(self, url: str, log_path: Path | None = None, baudrate: int = 115200,
                 panic_pattern: re.Pattern = PANIC_PATTERN):
        self.url = url
        self.baudrate = baudrate
        self.log_path = log_path
        self.panic_pattern = panic_pattern
        self._port: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._lines: list[ConsoleLine] = []
        self._partial = b""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._log = None
        self._closed_reason: str | None = None
        self._listeners: list = []
        self._raw_listeners: list = []

    # -- lifecycle -----------------------------------------------------------------
    def open(self, timeout: float = 10.0) -> None:
        """Open the port (retrying a refused socket until `timeout`) and start reading."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.1)
                break
            except (serial.SerialException, ValueError, OSError) as exc:
                if time.monotonic() >= deadline or "could not open port" in str(exc) and not self.url.startswith(("socket://", "rfc2217://")):
                    raise ConsoleError(f"cannot open serial console {self.url}: {exc}") from exc
                time.sleep(0.05)
        # A console over TCP (socket://, rfc2217://): no Nagle on our side, or a typed line
        # written in pieces waits for the far end's delayed ACK (40 ms on loopback).
        sock = getattr(self._port, "_socket", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self.log_path is not None:
            self._log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        self._stop.clear()
        self._closed_reason = None
        self._thread = threading.Thread(target=self._reader, name=f"console {self.url}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._port is not None:
            try:
                self._port.close()
            except Exception:  # noqa: BLE001 - closing a dead port must not mask the real error
                pass
            self._port = None
        self._flush_partial()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def add_listener(self, callback) -> None:
        """Call `callback(line)` from the reader thread for every new line."""
        self._listeners.append(callback)

    def add_raw_listener(self, callback) -> None:
        """Call `callback(bytes)` from the reader thread with every chunk read."""
        self._raw_listeners.append(callback)

    # -- reading -------------------------------------------------------------------
    def _reader(self) -> None:
        while not self._stop.is_set():
            data = b""
            try:
                # One byte with the timeout, then whatever else is waiting: a line is
                # stamped when it arrives, not when a 4 KiB read happens to fill up.
                data = self._port.read(1)
                while data and len(data) < 4096 and self._port.in_waiting:
                    data += self._port.read(self._port.in_waiting)
            except (serial.SerialException, OSError) as exc:
                # The far end went away: keep what it said last, even without a newline.
                self._deliver(data)
                self._flush_partial()
                with self._cond:
                    self._closed_reason = f"console read failed: {exc}"
                    self._cond.notify_all()
                return
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        if data:
            for cb in self._raw_listeners:
                cb(data)
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            self._add_line(raw)
        if len(self._partial) > 65536:  # a line that never ends: cut it rather than grow forever
            self._add_line(self._partial)
            self._partial = b""

    def _flush_partial(self) -> None:
        if self._partial:
            self._add_line(self._partial)
            self._partial = b""

    def _add_line(self, raw: bytes) -> None:
        decoded = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        # The log keeps every character that came (noise and escapes visibly replaced); the
        # line's text, which error messages, flap.json and Robot show, leaves the terminal
        # control sequences out.
        logged, text = printable(decoded), clean_text(decoded)
        with self._cond:
            line = ConsoleLine(len(self._lines), text, time.monotonic_ns(), time.time_ns(),
                               parse_guest_stamp(text))
            self._lines.append(line)
            if self._log is not None:
                stamp = line.host_wall_ns / 1e9
                self._log.write(f"{stamp:.6f} {logged}\n")
                self._log.flush()
            self._cond.notify_all()
        for cb in self._listeners:
            cb(line)

    @property
    def lines(self) -> list[ConsoleLine]:
        with self._cond:
            return list(self._lines)

    def cursor(self) -> int:
        """The index of the next line to arrive: pass it to `expect` to wait for new output."""
        with self._cond:
            return len(self._lines)

    def tail(self, n: int = 30) -> str:
        with self._cond:
            lines = [line.text for line in self._lines[-n:]]
            partial = clean_text(self._partial.decode("utf-8", errors="replace"))
        return "\n".join(lines + ([partial] if partial else []))

    def expect(self, pattern: str | re.Pattern, timeout: float, since: int | None = None,
               check_panic: bool = True) -> tuple[ConsoleLine, re.Match]:
        """Wait for a line matching `pattern` at index >= `since` (default: any new line).

        Raises ConsoleTimeout showing what was seen, KernelPanic if a panic line shows up.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        start = self.cursor() if since is None else since
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self._lines):
                    line = self._lines[i]
                    m = regex.search(line.text)
                    if m:
                        return line, m
                    if check_panic and self.panic_pattern.search(line.text):
                        raise KernelPanic(f"kernel panic on the console while waiting for /{regex.pattern}/",
                                          console_tail=self._tail_locked(start))
                    i += 1
                if self._closed_reason:
                    raise ConsoleError(f"{self._closed_reason} while waiting for /{regex.pattern}/",
                                       console_tail=self._tail_locked(start))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConsoleTimeout(f"/{regex.pattern}/ not seen on the console within {timeout:g} s",
                                         console_tail=self._tail_locked(start))
                self._cond.wait(min(remaining, 0.2))

    def _tail_locked(self, since: int, n: int = 40) -> str:
        seen = [line.text for line in self._lines[max(since, len(self._lines) - n):]]
        partial = clean_text(self._partial.decode("utf-8", errors="replace"))
        if partial:
            seen.append(partial + "  <no newline yet>")
        return "\n".join(seen) if seen else "<nothing>"

    # -- writing -------------------------------------------------------------------
    def send(self, text: str) -> None:
        if self._port is None:
            raise ConsoleError(f"console {self.url} is not open")
        try:
            self._port.write(text.encode())
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise ConsoleError(f"console write to {self.url} failed: {exc}") from exc

    def sendline(self, text: str = "") -> None:
        self.send(text + "\n")

    def run(self, command: str, timeout: float = 10.0) -> tuple[str, int]:
        """Run `command` in the console's shell; return (output, exit status).

        The markers are printed by the shell (`printf` joins two halves), so the echo of
        the typed command never matches them.
        """
        tag = f"{time.monotonic_ns() % 10**9:09d}"
        since = self.cursor()
        sep = " " if command.rstrip().endswith("&") else "; "  # `cmd &;` is a syntax error
        self.sendline(f"printf '%s\\n' BEGIN'{tag}'; {command}{sep}printf '%s %s\\n' END'{tag}' $?")
        begin, _ = self.expect(re.compile(rf"^BEGIN{tag}$"), timeout, since=since)
        end, m = self.expect(re.compile(rf"^END{tag} (\d+)$"), timeout, since=begin.index + 1)
        with self._cond:
            out = [line.text for line in self._lines[begin.index + 1:end.index]]
        return "\n".join(out), int(m.group(1))
