"""SSH to the board with paramiko: commands and file copy.

Host keys: `strict` (the default, for real boards) refuses an unknown host key;
`auto-accept` (the emulated board only, whose key is made on its first boot) takes it.
File copy uses SFTP where the board has it and falls back to `cat` over an exec channel
(dropbear ships no sftp-server). `attach` runs a command, or a login shell, with this
process's terminal, as ssh(1) does.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.errors import ExecutionError, SSHError

KNOWN_HOSTS_POLICIES = ("strict", "auto-accept")
# paramiko's transport thread logs a failed handshake with its traceback; the SSHError
# raised here says what happened, so keep the traceback off the user's terminal.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


@dataclass(frozen=True)
class CommandResult:
    command: str
    stdout: str
    stderr: str
    exit_status: int


class SSHConnection:
    """One SSH session to a board; opened lazily, re-opened after it drops."""

    def __init__(self, host: str, port: int, user: str, password: str | None = None,
                 key_file: Path | None = None, known_hosts: str = "strict",
                 known_hosts_file: Path | None = None):
        if known_hosts not in KNOWN_HOSTS_POLICIES:
            raise ValueError(f"known_hosts policy {known_hosts!r}; expected one of {KNOWN_HOSTS_POLICIES}")
        self.host, self.port, self.user = host, port, user
        self._password = password
        self.key_file = key_file
        self.known_hosts = known_hosts
        self.known_hosts_file = known_hosts_file
        self._client: paramiko.SSHClient | None = None
        self._has_sftp: bool | None = None  # unknown until the first file copy

    def __repr__(self) -> str:  # no credentials in reprs, logs or reports
        return f"SSHConnection({self.user}@{self.host}:{self.port}, known_hosts={self.known_hosts})"

    def connect(self, timeout: float = 10.0) -> None:
        client = paramiko.SSHClient()
        if self.known_hosts_file is not None and self.known_hosts_file.exists():
            client.load_host_keys(str(self.known_hosts_file))
        elif self.known_hosts == "strict":
            client.load_system_host_keys()
        policy = paramiko.AutoAddPolicy() if self.known_hosts == "auto-accept" else paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)
        try:
            client.connect(self.host, port=self.port, username=self.user, password=self._password,
                           key_filename=str(self.key_file) if self.key_file else None,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           look_for_keys=False, allow_agent=False)
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SSHError(f"SSH authentication as {self.user} to {self.host}:{self.port} failed: {exc}") from exc
        except paramiko.SSHException as exc:
            client.close()
            if _no_banner(exc):
                # The TCP connection was taken (QEMU's port forward takes it whatever the
                # board does) but no SSH server spoke: a board whose link is down, or
                # which is still booting.
                raise SSHError(f"SSH to {self.host}:{self.port}: no answer from an SSH server within {timeout:g} s "
                               "(is the board's link down, or is it still booting?)") from exc
            if "not found in known_hosts" in str(exc):
                raise SSHError(f"SSH host key of {self.host}:{self.port} is not known and the policy is strict; "
                               "add it to known_hosts or set ssh.known_hosts: auto-accept") from exc
            raise SSHError(f"SSH to {self.host}:{self.port} failed: {exc}") from exc
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            if all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values()):
                raise SSHError(f"SSH connection to {self.host}:{self.port} refused") from exc
            raise SSHError(f"SSH connection to {self.host}:{self.port} failed: {exc}") from exc
        except ConnectionRefusedError as exc:
            client.close()
            raise SSHError(f"SSH connection to {self.host}:{self.port} refused") from exc
        except TimeoutError as exc:
            client.close()
            raise SSHError(f"SSH connection to {self.host}:{self.port} timed out after {timeout:g} s "
                           "(is the board's link down, or the address wrong?)") from exc
        except OSError as exc:
            client.close()
            raise SSHError(f"SSH connection to {self.host}:{self.port} failed: {exc}") from exc
        if self.known_hosts == "auto-accept" and self.known_hosts_file is not None:
            client.save_host_keys(str(self.known_hosts_file))
        self._client = client

    def wait_until_up(self, timeout: float, interval: float = 0.25) -> float:
        """Retry connecting until it works; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            try:
                self.connect(timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                self.run("true", timeout=max(1.0, deadline - time.monotonic()))
                return time.monotonic() - start
            except SSHError as exc:
                self.close()
                if time.monotonic() + interval >= deadline:
                    raise SSHError(f"SSH to {self.host}:{self.port} not up within {timeout:g} s; last error: {exc}") from exc
                time.sleep(interval)

    def _transport(self, timeout: float = 10.0) -> paramiko.Transport:
        if self._client is None or self._client.get_transport() is None or not self._client.get_transport().is_active():
            self.connect(timeout=timeout)
        return self._client.get_transport()

    def run(self, command: str, timeout: float = 30.0, check: bool = False, stdin: bytes | None = None) -> CommandResult:
        """Run `command` on the board, connecting first if need be: the connection and the
        command together take at most `timeout` seconds. With `check`, raise
        ExecutionError on a non-zero exit."""
        deadline = time.monotonic() + timeout
        transport = self._transport(timeout)
        try:
            left = max(0.1, deadline - time.monotonic())
            chan = transport.open_session(timeout=left)
            chan.settimeout(left)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
                chan.shutdown_write()
            out, err = _drain(chan, max(0.1, deadline - time.monotonic()), timeout)
            status = chan.recv_exit_status()
            chan.close()
        except (TimeoutError, paramiko.SSHException, OSError) as exc:
            self.close()
            raise SSHError(f"SSH command {command!r} on {self.host}:{self.port} failed: {exc}") from exc
        result = CommandResult(command, out.decode(errors="replace"), err.decode(errors="replace"), status)
        if check and status != 0:
            raise ExecutionError(f"command {command!r} failed on the board", result.stdout, result.stderr, status)
        return result

    def attach(self, command: str | None, timeout: float | None = None, connect_timeout: float = 10.0,
               stdin: int = 0, stdout: int = 1, stderr: int = 2) -> int:
        """Run `command` on the board (None: a login shell) with these file descriptors, as
        ssh(1) does, and return its exit status. A shell whose stdin is a terminal gets a
        pseudo-terminal: the local one is put in raw mode (restored after) and its size is
        followed; otherwise stdin is passed through and its end is the remote end's EOF.
        `timeout` bounds the connection and the command together (None: no bound on the
        command); connecting takes at most `connect_timeout` either way."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        transport = self._transport(connect_timeout if timeout is None else min(timeout, connect_timeout))
        what = "a login shell" if command is None else f"command {command!r}"
        pty = command is None and os.isatty(stdin)
        try:
            left = connect_timeout - (time.monotonic() - start) if deadline is None else deadline - time.monotonic()
            chan = transport.open_session(timeout=max(0.1, left))
            if pty:
                cols, rows = _terminal_size(stdin, stdout)
                chan.get_pty(term=os.environ.get("TERM", "vt100"), width=cols, height=rows)
            if command is None:
                chan.invoke_shell()
            else:
                chan.exec_command(command)
            with _raw_terminal(stdin if pty else None) as resized:
                _pump(chan, stdin, stdout, stderr, deadline, resized)
            status = chan.recv_exit_status()
            chan.close()
        except BrokenPipeError:
            # Our reader went away (`bmc-hil ssh -- dmesg | head`): end as a process that
            # SIGPIPE killed would, quietly.
            self.close()
            return 128 + signal.SIGPIPE
        except TimeoutError as exc:
            self.close()
            limit = connect_timeout if timeout is None else timeout
            raise SSHError(f"SSH {what} on {self.host}:{self.port} did not finish within {limit:g} s") from exc
        except (paramiko.SSHException, OSError) as exc:
            self.close()
            raise SSHError(f"SSH {what} on {self.host}:{self.port} failed: {exc}") from exc
        if status < 0:
            raise SSHError(f"SSH {what} on {self.host}:{self.port} ended without an exit status "
                           "(killed by a signal, or the connection dropped)")
        return status

    def put(self, local: Path, remote: str, timeout: float = 60.0) -> None:
        data = Path(local).read_bytes()
        try:
            with self._client_sftp() as sftp:
                with sftp.open(remote, "wb") as fh:
                    fh.write(data)
                return
        except _NoSftp:
            pass
        self.run(f"cat > {shlex.quote(remote)}", timeout=timeout, check=True, stdin=data)

    def get(self, remote: str, local: Path, timeout: float = 60.0) -> None:
        try:
            with self._client_sftp() as sftp:
                sftp.get(remote, str(local))
                return
        except _NoSftp:
            pass
        chan = self._transport().open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(f"cat {shlex.quote(remote)}")
        out, err = _drain(chan, timeout)
        status = chan.recv_exit_status()
        if status != 0:
            raise ExecutionError(f"cannot read {remote} from the board", "", err.decode(errors="replace"), status)
        Path(local).write_bytes(out)

    def _client_sftp(self):
        if self._has_sftp is False:
            raise _NoSftp()
        try:
            client = paramiko.SFTPClient.from_transport(self._transport())
        except paramiko.SSHException as exc:
            # dropbear has no sftp-server; after the refused subsystem its session is no
            # longer reliable for new channels, so start a fresh one for the fallback.
            self._has_sftp = False
            self.close()
            raise _NoSftp() from exc
        self._has_sftp = True
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class _NoSftp(Exception):
    pass


def _no_banner(exc: paramiko.SSHException) -> bool:
    """paramiko's ways of saying the server never sent its banner (the transport thread
    gave up reading it; the client then finds no session to authenticate)."""
    return any(m in str(exc) for m in ("Error reading SSH protocol banner", "No existing session"))


def _terminal_size(*fds: int) -> tuple[int, int]:
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
        except OSError:
            continue
    return 80, 24


class _raw_terminal:
    """The local terminal in raw mode for the block (keys go to the remote shell as they
    are typed, Ctrl-C included), its size followed through SIGWINCH; restored on exit.
    With `fd` None, nothing is changed. The block gets a list that is non-empty when the
    size changed."""

    def __init__(self, fd: int | None):
        self.fd = fd
        self.resized: list[int] = []
        self._saved = None
        self._old_handler = None

    def __enter__(self) -> list[int]:
        if self.fd is None:
            return self.resized
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSADRAIN)  # as ssh(1): what was typed ahead is kept
        try:
            self._old_handler = signal.signal(signal.SIGWINCH, lambda *_: self.resized.append(1))
        except ValueError:  # not the main thread: the size stays as it was
            self._old_handler = None
        return self.resized

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        if self._old_handler is not None:
            signal.signal(signal.SIGWINCH, self._old_handler)


def _pump(chan: paramiko.Channel, stdin: int, stdout: int, stderr: int, deadline: float | None,
          resized: list[int]) -> None:
    """Copy stdin to the channel and the channel's output to stdout and stderr until the
    remote side exits; TimeoutError past `deadline`."""
    reading = _readable_fd(stdin)
    if not reading:
        chan.shutdown_write()
    while True:
        if resized:
            resized.clear()
            chan.resize_pty(*_terminal_size(stdin, stdout))
        wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
        try:
            ready, _, _ = select.select([chan, stdin] if reading else [chan], [], [], wait)
        except InterruptedError:  # SIGWINCH
            continue
        while chan.recv_ready():
            _write_all(stdout, chan.recv(65536))
        while chan.recv_stderr_ready():
            _write_all(stderr, chan.recv_stderr(65536))
        if reading and stdin in ready:
            data = os.read(stdin, 4096)
            if data:
                chan.sendall(data)
            else:
                reading = False
                chan.shutdown_write()
        # The exit status, or the channel's close without one (paramiko sets both).
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the command did not finish in time")


def _readable_fd(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:  # closed (a daemon's stdin): the remote side reads EOF
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _drain(chan: paramiko.Channel, timeout: float, limit: float | None = None) -> tuple[bytes, bytes]:
    """The channel's stdout and stderr up to its exit status; TimeoutError after `timeout`
    seconds (`limit`: the whole command's, for the message)."""
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    while True:
        got = False
        if chan.recv_ready():
            out += chan.recv(65536)
            got = True
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            got = True
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no exit status within {limit or timeout:g} s (stdout so far: {bytes(out[-500:])!r})")
        if not got:
            time.sleep(0.005)
    return bytes(out), bytes(err)
