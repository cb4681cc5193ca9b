"""The console over pyserial URL handlers: `loop://` (pyserial's own loopback) and a local
TCP server for `socket://`. Failure paths use a server that misbehaves on purpose."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness.board.console import SerialConsole, parse_guest_stamp
from harness.errors import ConsoleError, ConsoleTimeout, KernelPanic


@pytest.fixture
def loop_console(tmp_path):
    con = SerialConsole("loop://", tmp_path / "console.log")
    con.open()
    yield con
    con.close()


def test_printk_stamp_is_parsed_to_nanoseconds():
    assert parse_guest_stamp("[   12.345678] eth0: Link is Down") == 12_345_678_000
    assert parse_guest_stamp("# \ufffd[6n[    2.970558] ftgmac100 eth0: Link is Down") == 2_970_558_000
    assert parse_guest_stamp("bmc-hil: services started") is None


def test_lines_are_split_stamped_and_logged(loop_console, tmp_path):
    loop_console.send("[    0.000000] Linux version 6.1\r\nplain line\n")
    line, _ = loop_console.expect("plain line", timeout=2, since=0)
    first = loop_console.lines[0]
    assert first.guest_ns == 0 and first.message == "Linux version 6.1"
    assert line.guest_ns is None and line.host_monotonic_ns >= first.host_monotonic_ns
    loop_console.close()
    logged = (tmp_path / "console.log").read_text().splitlines()
    assert logged[0].split(" ", 1)[1] == "[    0.000000] Linux version 6.1"


def test_expect_timeout_shows_what_was_seen(loop_console):
    loop_console.send("U-Boot 2019.04\nStarting kernel ...\npartial prompt")
    with pytest.raises(ConsoleTimeout) as info:
        loop_console.expect("Linux version", timeout=0.5, since=0)
    assert "Starting kernel ..." in info.value.console_tail
    assert "partial prompt  <no newline yet>" in info.value.console_tail
    assert "not seen on the console within 0.5 s" in str(info.value)


def test_kernel_panic_line_ends_the_wait_at_once(loop_console):
    start = time.monotonic()
    loop_console.send("[    3.1] VFS: Unable to mount root fs\n[    3.2] Kernel panic - not syncing: VFS\n")
    with pytest.raises(KernelPanic) as info:
        loop_console.expect("login:", timeout=10, since=0)
    assert time.monotonic() - start < 5
    assert "Kernel panic - not syncing: VFS" in info.value.console_tail


def test_binary_noise_is_replaced_not_fatal(loop_console):
    loop_console.send("ok\n")
    loop_console._port.write(b"\xff\xfe\x00\x1b[6n garbage\n")
    line, _ = loop_console.expect("garbage", timeout=2, since=0)
    assert "\ufffd" in line.text and "\x00" not in line.text


def test_run_returns_output_and_exit_status():
    """`run` against a tiny fake shell on a socket: markers come from the shell, not the echo."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def fake_shell():
        conn, _ = server.accept()
        buf = b""
        while b"\n" not in buf:
            buf += conn.recv(1024)
        cmd = buf.decode()
        conn.sendall(cmd.encode().replace(b"\n", b"\r\n"))  # the tty echoes the typed line
        tag = cmd.split("BEGIN'")[1].split("'")[0]
        conn.sendall(f"BEGIN{tag}\r\nhello\r\nEND{tag} 3\r\n# ".encode())
        time.sleep(0.5)
        conn.close()

    threading.Thread(target=fake_shell, daemon=True).start()
    con = SerialConsole(f"socket://127.0.0.1:{port}")
    con.open()
    try:
        out, status = con.run("echo hello; false", timeout=5)
    finally:
        con.close()
        server.close()
    assert out == "hello" and status == 3


def test_missing_serial_device_is_a_clear_error():
    con = SerialConsole("/dev/ttyUSB-does-not-exist")
    with pytest.raises(ConsoleError, match="cannot open serial console /dev/ttyUSB-does-not-exist"):
        con.open(timeout=0.2)


def test_refused_console_socket_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    con = SerialConsole(f"socket://127.0.0.1:{port}")
    with pytest.raises(ConsoleError, match=f"cannot open serial console socket://127.0.0.1:{port}"):
        con.open(timeout=0.3)


def test_console_closed_by_the_far_end_fails_the_wait_with_the_tail():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def one_line_then_hang_up():
        conn, _ = server.accept()
        # pyserial's socket:// open() discards what is already waiting (reset_input_buffer),
        # as a serial port flush does: speak after the harness is attached, as a board does.
        time.sleep(0.3)
        conn.sendall(b"last words")  # no newline: the last words still reach the tail
        time.sleep(0.2)
        conn.close()

    threading.Thread(target=one_line_then_hang_up, daemon=True).start()
    con = SerialConsole(f"socket://127.0.0.1:{port}")
    con.open()
    try:
        with pytest.raises(ConsoleError) as info:
            con.expect("never", timeout=5, since=0)
    finally:
        con.close()
        server.close()
    assert "last words" in info.value.console_tail
    assert not isinstance(info.value, ConsoleTimeout)
