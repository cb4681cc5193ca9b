"""Share one serial console between processes: a TCP fan-out on 127.0.0.1.

A QEMU chardev (like a serial port) takes one reader. While the harness holds the board's
console, `ConsoleProxy` offers it again on a local port: every client gets the console's
bytes, and what a client types goes to the board. `bmc-hil console` attaches through it,
and so does a board file that drives a running emulated board as if it were real.
"""

from __future__ import annotations

import select
import socket
import threading

from harness.board.console import SerialConsole


class ConsoleProxy:
    """Serve `console` on 127.0.0.1:`port` (0: pick a free one)."""

    def __init__(self, console: SerialConsole, port: int = 0):
        self.console = console
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = self._server.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        console.add_raw_listener(self._broadcast)
        self._thread = threading.Thread(target=self._serve, name="console-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _broadcast(self, data: bytes) -> None:
        with self._lock:
            for c in list(self._clients):
                try:
                    c.sendall(data)
                except OSError:
                    self._clients.remove(c)
                    c.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                socks = [self._server, *self._clients]
            try:
                ready, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                continue
            for s in ready:
                if s is self._server:
                    try:
                        conn, _ = self._server.accept()
                    except OSError:
                        continue
                    with self._lock:
                        self._clients.append(conn)
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    with self._lock:
                        if s in self._clients:
                            self._clients.remove(s)
                    s.close()
                    continue
                try:
                    self.console.send(data.decode(errors="replace"))
                except Exception:  # noqa: BLE001 - board gone: the client sees the socket close
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()
        self._server.close()
