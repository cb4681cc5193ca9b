"""SSH to the board with paramiko: commands and file copy.

Host keys: `strict` (the default, for real boards) refuses an unknown host key;
`auto-accept` (the emulated board only, whose key is made on its first boot) takes it.
File copy uses SFTP where the board has it and falls back to `cat` over an exec channel
(dropbear ships no sftp-server).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.errors import ExecutionError, SSHError

KNOWN_HOSTS_POLICIES = ("strict", "auto-accept")


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
            raise SSHError(f"SSH connection to {self.host}:{self.port} timed out after {timeout:g} s") from exc
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

    def _transport(self) -> paramiko.Transport:
        if self._client is None or self._client.get_transport() is None or not self._client.get_transport().is_active():
            self.connect()
        return self._client.get_transport()

    def run(self, command: str, timeout: float = 30.0, check: bool = False, stdin: bytes | None = None) -> CommandResult:
        """Run `command` on the board; with `check`, raise ExecutionError on non-zero exit."""
        try:
            chan = self._transport().open_session(timeout=timeout)
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
                chan.shutdown_write()
            out, err = _drain(chan, timeout)
            status = chan.recv_exit_status()
            chan.close()
        except (TimeoutError, paramiko.SSHException, OSError) as exc:
            self.close()
            raise SSHError(f"SSH command {command!r} on {self.host}:{self.port} failed: {exc}") from exc
        result = CommandResult(command, out.decode(errors="replace"), err.decode(errors="replace"), status)
        if check and status != 0:
            raise ExecutionError(f"command {command!r} failed on the board", result.stdout, result.stderr, status)
        return result

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


def _drain(chan: paramiko.Channel, timeout: float) -> tuple[bytes, bytes]:
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
            raise TimeoutError(f"no exit status within {timeout:g} s (stdout so far: {bytes(out[-500:])!r})")
        if not got:
            time.sleep(0.005)
    return bytes(out), bytes(err)
