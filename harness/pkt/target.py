"""Where a script's local side runs: the `Target` protocol and the model behind it.

A target runs the script's syscalls, takes the remote's segments, and hands back the
segments it sent with the times it sent them, and the kernel's console lines.
`ModelTarget` is the reference model's socket layer (models/socket.py) in virtual time;
the board target (harness/pkt/board.py: a small agent in the board image running the
syscalls, the harness playing the remote on its own wire) plugs in behind the same verbs.
"""

from __future__ import annotations

import errno as errno_mod
import random
from dataclasses import dataclass
from typing import Protocol

from models.clock import Window
from models.errors import ModelUsageError, SocketError
from models.socket import SocketLayer
from models.tcp import TcpParams, TcpState
from models.wire.tcp import TcpRepr

from .script import Syscall

__all__ = ["Target", "PendingCall", "Sent", "SyscallOutcome", "NotModelled", "TargetError", "ModelTarget", "LOCAL_ADDR", "REMOTE_ADDR",
           "O_RDWR", "O_NONBLOCK"]

LOCAL_ADDR = 0xC0000201    # 192.0.2.1, the stack under test
REMOTE_ADDR = 0xC0000202   # 192.0.2.2, the script's remote end
# include/uapi/asm-generic/fcntl.h (ARM uses the generic values)
O_RDWR = 0o2
O_NONBLOCK = 0o4000


class NotModelled(Exception):
    """The script asks for something this target cannot do (an option, a blocking wait)."""


class TargetError(Exception):
    """The target failed to carry out an event (a call that never returned, a frame it
    cannot parse): the script fails at that line with this message."""


@dataclass(frozen=True)
class Sent:
    """A segment the target sent at `at` (ns); `window`: when the target may send it, if
    that is not a point (Linux randomises or the model cannot tell)."""

    at: int
    tcp: TcpRepr
    payload: bytes
    window: Window | None = None


@dataclass(frozen=True)
class SyscallOutcome:
    """What a syscall returned: `ret`, the errno's name when it failed, and for a call
    that writes a value out (getsockopt, ioctl) that value. `at`: when the target ran it,
    if not at the time it was asked for (a real board's call starts a little late)."""

    ret: int
    errno: str | None = None
    value: int | None = None
    at: int | None = None


class PendingCall(Protocol):
    """A call handed to a target that answers later."""

    def result(self, block: bool) -> SyscallOutcome | None:
        """The outcome (None if not yet come and not `block`); raises TargetError."""


class Target(Protocol):
    """The verbs a script runner needs. Times are ns from the script's start.

    `lead_ns`: how long before its time a syscall must be handed over (a board's agent
    takes the call ahead and starts it on its own clock); `late_look_ns`: how long past a
    missing segment's deadline to look for it (virtual time costs nothing; real time does);
    `late_slack_ns`: how much later than the tolerance an outbound segment may come
    because the target runs slower than the stack it stands for (an emulated CPU), never
    earlier; `call_slack_ns`: how much later than the tolerance a call handed over may
    begin (its request's way to the target), the segments after it being timed from when
    it began; `console_slack_ns`: how much later than the tolerance the target may see a
    kernel console line (0: it sees each line when the kernel prints it)."""

    name: str
    lead_ns: int
    late_look_ns: int
    late_slack_ns: int
    call_slack_ns: int
    console_slack_ns: int

    def syscall(self, at: int, call: Syscall, remote_port: int, local_port: int) -> SyscallOutcome | PendingCall:
        """Run `call` at `at` (raises NotModelled): its outcome, or a PendingCall when the
        target answers later."""

    def inject(self, at: int, src_port: int, dst_port: int, tcp: TcpRepr, payload: bytes) -> int | None:
        """The remote's segment reaches the target at `at`; returns when it actually did
        if that was later (None: at `at`)."""

    def advance(self, until: int, stop_at_first: bool = False) -> list[Sent]:
        """Let time run to `until` (or to the first segment sent, with `stop_at_first`);
        the segments sent meanwhile, in order."""

    def console_lines(self) -> list[tuple[int, str]]:
        """The script's kernel console lines seen since the last call, in order: (when, ns;
        the message after printk's stamp, in the script's terms: its port numbers)."""


def _flag_names(arg) -> tuple:
    if isinstance(arg, tuple):
        return arg
    return (arg,) if isinstance(arg, str) else ()


def _out_value(arg, what: str) -> int | None:
    """A `[N]` argument's N (None for `[...]` or no list)."""
    if isinstance(arg, list) and arg and isinstance(arg[0], int):
        return arg[0]
    return None


class ModelTarget:
    """The model of Linux 6.1 (SocketLayer with the default sysctls of the emulated AST2500)
    at LOCAL_ADDR, in virtual time."""

    name = "model"
    lead_ns = 0
    late_look_ns = 600 * 10**9
    late_slack_ns = 0
    call_slack_ns = 0
    console_slack_ns = 0

    def __init__(self, params: TcpParams | None = None, seed: int = 0):
        self.layer = SocketLayer(params or TcpParams(), random.Random(seed), (LOCAL_ADDR,), lambda dst: LOCAL_ADDR)
        self.now = 0
        self.nonblocking: set[int] = set()     # model fds with O_NONBLOCK
        # the script's fds -> the model's: the kernel hands out the lowest free fd
        # (alloc_fd), the model counts on; fds 0-2 are stdio
        self._fds: dict[int, int] = {}
        self._connect_only: set[int] = set()   # fds with an option modelled only for connect()
        self._out: list[Sent] = []
        self._console_seen = 0                 # lines of layer.console handed out

    def console_lines(self) -> list[tuple[int, str]]:
        lines = self.layer.console[self._console_seen:]
        self._console_seen = len(self.layer.console)
        return list(lines)

    # -- time ---------------------------------------------------------------------------
    def _take(self, at: int, segments) -> None:
        for seg in segments:
            self._out.append(Sent(at, seg.tcp, seg.payload, seg.window))

    def advance(self, until: int, stop_at_first: bool = False) -> list[Sent]:
        while not (stop_at_first and self._out):
            due = self.layer.poll_at()
            if due is None or due > until:
                break
            due = max(due, self.now)
            self.now = due
            before = self.layer.poll_at()
            self._take(due, self.layer.on_timer(due))
            if self.layer.poll_at() == before:
                raise ModelUsageError(f"the model's timer at {due} ns did not advance")
        if not (stop_at_first and self._out):
            self.now = max(self.now, until)
        out, self._out = self._out, []
        return out

    # -- the remote's segments ------------------------------------------------------------
    def inject(self, at: int, src_port: int, dst_port: int, tcp: TcpRepr, payload: bytes) -> None:
        self._pending_check(at)
        self._take(at, self.layer.tcp_v4_rcv(at, REMOTE_ADDR, LOCAL_ADDR, tcp, payload))

    def _pending_check(self, at: int) -> None:
        if at < self.now:
            raise ModelUsageError(f"time runs backwards: {at} ns after {self.now} ns")
        self._out += self.advance(at)
        self.now = at

    # -- syscalls -------------------------------------------------------------------------
    def syscall(self, at: int, call: Syscall, remote_port: int, local_port: int) -> SyscallOutcome:
        self._pending_check(at)
        handler = getattr(self, f"_sys_{call.name}", None)
        if handler is None:
            raise NotModelled(f"syscall {call.name}() is not modelled")
        try:
            return handler(at, call.args, remote_port, local_port)
        except SocketError as exc:
            return SyscallOutcome(-1, exc.errno_name)
        except ModelUsageError as exc:
            raise NotModelled(str(exc)) from exc

    def _arg(self, args: tuple, i: int, what: str):
        if i >= len(args):
            raise NotModelled(f"{what} is missing (argument {i + 1})")
        return args[i]

    def _fd(self, args: tuple) -> int:
        """The model's fd behind the script's first argument."""
        fd = self._arg(args, 0, "the file descriptor")
        if not isinstance(fd, int):
            raise NotModelled(f"a file descriptor {fd!r}")
        if fd not in self._fds:
            raise SocketError("EBADF", f"fd {fd}")
        return self._fds[fd]

    def _new_fd(self, model_fd: int) -> int:
        fd = 3
        while fd in self._fds:
            fd += 1
        self._fds[fd] = model_fd
        return fd

    def _sys_socket(self, at, args, rport, lport) -> SyscallOutcome:
        if self._arg(args, 1, "the socket type") != "SOCK_STREAM" or args[2] not in ("IPPROTO_TCP", 0, Ellipsis):
            raise NotModelled("only socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) is modelled")
        return SyscallOutcome(self._new_fd(self.layer.socket()))

    def _sys_bind(self, at, args, rport, lport) -> SyscallOutcome:
        self.layer.bind(self._fd(args), 0, lport)
        return SyscallOutcome(0)

    def _sys_listen(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        if fd in self._connect_only:
            raise NotModelled("TCP_MAXSEG or SO_RCVBUF on a listening socket is not modelled (only before connect)")
        self.layer.listen(fd, int(self._arg(args, 1, "the backlog")))
        return SyscallOutcome(0)

    def _sys_accept(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        try:
            return SyscallOutcome(self._new_fd(self.layer.accept(fd)))
        except SocketError as exc:
            if exc.errno_name == "EAGAIN" and fd not in self.nonblocking:
                raise NotModelled("accept() on a blocking socket would wait: not modelled "
                                  "(inject the handshake first, or use O_NONBLOCK)") from exc
            raise

    def _sys_connect(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        if fd not in self.nonblocking:
            raise NotModelled("a blocking connect() waits for the handshake: not modelled (use fcntl O_NONBLOCK "
                              "and expect -1 EINPROGRESS)")
        self._take(at, self.layer.connect(at, fd, REMOTE_ADDR, rport))
        return SyscallOutcome(-1, "EINPROGRESS")

    def _sys_read(self, at, args, rport, lport, size_arg: int = 2) -> SyscallOutcome:
        fd = self._fd(args)
        size = self._arg(args, size_arg, "the byte count")
        sk = self.layer.sock(fd)
        data, out = self.layer.recv(at, fd, int(size))
        self._take(at, out)
        if data:
            return SyscallOutcome(len(data))
        if sk.error:
            # tcp_recvmsg: sock_error() reports sk_err and clears it; the next read finds
            # the connection closed
            err, sk.error = sk.error, None
            return SyscallOutcome(-1, err)
        if sk.fin_received or sk.state is TcpState.CLOSED:
            # a FIN, or tcp_done (sk_shutdown = SHUTDOWN_MASK: RCV_SHUTDOWN): end of file
            return SyscallOutcome(0)
        if fd in self.nonblocking:
            return SyscallOutcome(-1, "EAGAIN")
        raise NotModelled("read() on a blocking socket with nothing to read would wait: not modelled")

    def _sys_recv(self, at, args, rport, lport) -> SyscallOutcome:
        return self._sys_read(at, args, rport, lport)

    def _sys_write(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        size = int(self._arg(args, 2, "the byte count"))
        try:
            copied, out = self.layer.sendmsg(at, fd, bytes(size))
        except SocketError as exc:
            if exc.errno_name == "EAGAIN" and fd not in self.nonblocking:
                raise NotModelled("write() on a blocking socket would wait: not modelled") from exc
            sk = self.layer.sock(fd)
            if sk.error == exc.errno_name:
                sk.error = None     # sk_stream_wait_connect: sock_error() reports sk_err and clears it
            raise
        self._take(at, out)
        if copied < size and fd not in self.nonblocking:
            # tcp_sendmsg_locked waits in sk_stream_wait_memory for the rest
            raise NotModelled("write() on a blocking socket would wait for send buffer space: not modelled")
        return SyscallOutcome(copied)

    def _sys_send(self, at, args, rport, lport) -> SyscallOutcome:
        if len(args) > 3 and args[3] not in (0, Ellipsis):
            raise NotModelled(f"send() flags {args[3]!r}")
        return self._sys_write(at, args, rport, lport)

    def _sys_close(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        self._take(at, self.layer.close(at, fd))
        self.nonblocking.discard(fd)
        del self._fds[args[0]]
        return SyscallOutcome(0)

    def _sys_shutdown(self, at, args, rport, lport) -> SyscallOutcome:
        how = self._arg(args, 1, "how")
        if how not in ("SHUT_RD", "SHUT_WR", "SHUT_RDWR"):
            raise NotModelled(f"shutdown how {how!r}")
        self._take(at, self.layer.shutdown(at, self._fd(args), how))
        return SyscallOutcome(0)

    def _sys_setsockopt(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        name = self._arg(args, 2, "the option name")
        value = _out_value(self._arg(args, 3, "the option value"), name)
        if value is None:
            raise NotModelled(f"setsockopt {name} with a value other than [N]")
        try:
            self.layer.setsockopt(at, fd, str(name), value)
        except SocketError as exc:
            if exc.errno_name == "ENOPROTOOPT":   # the model's word for an option it does not have
                raise NotModelled(f"setsockopt {name} is not modelled") from exc
            raise
        if name in ("TCP_MAXSEG", "SO_RCVBUF"):
            self._connect_only.add(fd)
        return SyscallOutcome(0)

    def _sys_getsockopt(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        name = self._arg(args, 2, "the option name")
        try:
            sk = self.layer.sock(fd)
        except SocketError:
            sk = None
        if name == "SO_ERROR":
            # sock_error(): sk_err, then cleared; a socket never connected has none
            err = sk.error if sk is not None else None
            if sk is not None:
                sk.error = None
            return SyscallOutcome(0, value=getattr(errno_mod, err) if err else 0)
        if name == "TCP_MAXSEG" and sk is not None:
            # do_tcp_getsockopt: mss_cache once connected
            return SyscallOutcome(0, value=sk.mss_cache)
        if name in ("SO_SNDBUF", "SO_RCVBUF", "TCP_USER_TIMEOUT"):
            try:
                return SyscallOutcome(0, value=self.layer.getsockopt(fd, name))
            except ModelUsageError as exc:
                raise NotModelled(str(exc)) from exc
        raise NotModelled(f"getsockopt {name} is not modelled")

    def _sys_fcntl(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        cmd = self._arg(args, 1, "the command")
        if cmd == "F_GETFL":
            return SyscallOutcome(O_RDWR | (O_NONBLOCK if fd in self.nonblocking else 0))
        if cmd == "F_SETFL":
            flags = _flag_names(self._arg(args, 2, "the flags"))
            unknown = set(flags) - {"O_RDWR", "O_NONBLOCK"}
            if unknown:
                raise NotModelled(f"fcntl flags {sorted(unknown)}")
            if "O_NONBLOCK" in flags:
                self.nonblocking.add(fd)
            else:
                self.nonblocking.discard(fd)
            return SyscallOutcome(0)
        raise NotModelled(f"fcntl {cmd!r} is not modelled")

    def _sys_ioctl(self, at, args, rport, lport) -> SyscallOutcome:
        fd = self._fd(args)
        req = self._arg(args, 1, "the request")
        if req not in ("SIOCINQ", "FIONREAD"):
            raise NotModelled(f"ioctl {req!r} is not modelled")
        # tcp_ioctl SIOCINQ: the bytes a read would return now
        return SyscallOutcome(0, value=len(self.layer.sock(fd).rcv_buf))
