"""SSH failure paths, each against a local socket that misbehaves in one way."""

from __future__ import annotations

import socket
import threading

import pytest

from harness.board.ssh import SSHConnection
from harness.errors import SSHError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_says_refused():
    port = _closed_port()
    conn = SSHConnection("127.0.0.1", port, "root", password="x", known_hosts="auto-accept")
    with pytest.raises(SSHError, match=f"127.0.0.1:{port} refused"):
        conn.connect(timeout=2)


def test_silent_server_times_out_with_the_time_it_waited():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    conn = SSHConnection("127.0.0.1", port, "root", password="x", known_hosts="auto-accept")
    try:
        with pytest.raises(SSHError, match=f"127.0.0.1:{port}"):
            conn.connect(timeout=1)
    finally:
        server.close()


def test_wait_until_up_gives_up_after_its_timeout_with_the_last_error():
    port = _closed_port()
    conn = SSHConnection("127.0.0.1", port, "root", password="x", known_hosts="auto-accept")
    with pytest.raises(SSHError, match=r"not up within 1 s; last error: .*refused"):
        conn.wait_until_up(timeout=1, interval=0.1)


def test_unknown_known_hosts_policy_is_refused():
    with pytest.raises(ValueError, match="known_hosts policy"):
        SSHConnection("h", 22, "root", known_hosts="trust-me")


def test_password_stays_out_of_the_repr():
    conn = SSHConnection("h", 22, "root", password="hunter2", known_hosts="auto-accept")
    assert "hunter2" not in repr(conn)
