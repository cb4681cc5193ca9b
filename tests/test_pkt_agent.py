"""pktagent, the board side of `bmc-hil pkt --target board`: its request protocol, tried
on this host's kernel (the same C source, compiled natively: the calls are Linux's on
either side), and its cross-compiled build for the board."""

from __future__ import annotations

import errno
import shutil
import socket
import struct
import subprocess
import time

import pytest

from harness.image.agent import AGENT_SOURCE, build_agent
from harness.pkt.board import AGENT_PROTOCOL, LINUX_ARM_NAMES

N = LINUX_ARM_NAMES


class Agent:
    def __init__(self, binary):
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        self.n = 0
        assert self.proc.stdout.readline().strip() == f"= 0 PKTAGENT {AGENT_PROTOCOL}"

    def ask(self, *words) -> list[str]:
        self.n += 1
        self.proc.stdin.write(" ".join(str(w) for w in (self.n, *words)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        assert line[:2] == ["=", str(self.n)], line
        return line[2:]

    def call(self, name, *args, at=0, slot=0):
        ret, err, value, start, end = self.ask("call", at, slot, name, *args)
        return int(ret), int(err), None if value == "-" else int(value), int(start), int(end)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def agent(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a host C compiler (gcc) is part of `bmc-hil setup`"
    binary = tmp_path / "pktagent"
    subprocess.run([cc, "-O2", "-pthread", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(AGENT_SOURCE)],
                   check=True)
    a = Agent(binary)
    yield a
    a.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_passive_connection_through_the_agent(agent):
    port = _free_port()
    assert agent.call("socket", N["AF_INET"], N["SOCK_STREAM"], N["IPPROTO_TCP"])[:2] == (3, 0)
    assert agent.call("setsockopt", 3, N["SOL_SOCKET"], N["SO_REUSEADDR"], 1)[:2] == (0, 0)
    assert agent.call("bind", 3, "127.0.0.1", port)[:2] == (0, 0)
    assert agent.call("listen", 3, 1)[:2] == (0, 0)
    peer = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert agent.call("accept", 3)[:2] == (4, 0)
    peer.sendall(b"x" * 10)
    time.sleep(0.1)
    assert agent.call("ioctl", 4, N["SIOCINQ"])[:3] == (0, 0, 10)
    assert agent.call("getsockopt", 4, N["SOL_SOCKET"], N["SO_ERROR"])[:3] == (0, 0, 0)
    assert agent.call("fcntl", 4, N["F_GETFL"])[0] == N["O_RDWR"]
    assert agent.call("fcntl", 4, N["F_SETFL"], N["O_RDWR"] | N["O_NONBLOCK"])[:2] == (0, 0)
    assert agent.call("read", 4, 100)[:2] == (10, 0)
    assert agent.call("read", 4, 100)[:2] == (-1, errno.EAGAIN)
    assert agent.call("write", 4, 1000)[:2] == (1000, 0)
    got = b""
    while len(got) < 1000:
        got += peer.recv(4096)
    assert got == bytes(1000)
    assert agent.call("shutdown", 4, N["SHUT_WR"])[:2] == (0, 0)
    assert peer.recv(10) == b""
    peer.close()
    assert agent.call("close", 4)[:2] == (0, 0)
    assert agent.call("close", 4)[:2] == (-1, errno.EBADF)
    assert agent.ask("closeall", 0) == ["0"]
    assert agent.call("socket", N["AF_INET"], N["SOCK_STREAM"], 0)[0] == 3, "closeall frees fd 3"


def test_each_slot_has_its_own_fds_as_a_process_would(agent):
    assert agent.call("socket", 2, 1, 6, slot=0)[0] == 3
    assert agent.call("socket", 2, 1, 6, slot=1)[0] == 3, "slot 1 starts from fd 3 too"
    assert agent.call("socket", 2, 1, 6, slot=1)[0] == 4
    assert agent.call("close", 3, slot=0)[:2] == (0, 0)
    assert agent.call("close", 3, slot=0)[:2] == (-1, errno.EBADF), "closed in slot 0"
    assert agent.call("fcntl", 3, N["F_GETFL"], slot=1)[0] == N["O_RDWR"], "slot 1's fd 3 is still open"
    assert agent.call("socket", 2, 1, 6, slot=0)[0] == 3, "the lowest free fd again (alloc_fd)"
    assert agent.ask("closeall", 1) == ["0"]
    assert agent.call("fcntl", 4, N["F_GETFL"], slot=1)[:2] == (-1, errno.EBADF)
    assert agent.call("fcntl", 3, N["F_GETFL"], slot=0)[0] == N["O_RDWR"], "slot 0 untouched"


def test_errors_come_back_as_linux_errno_numbers(agent):
    port = _free_port()
    agent.call("socket", 2, 1, 6)
    assert agent.call("connect", 3, "127.0.0.1", port)[:2] == (-1, errno.ECONNREFUSED)
    assert agent.call("getsockopt", 3, N["IPPROTO_TCP"], N["TCP_MAXSEG"])[:2] == (0, 0)
    assert agent.call("setsockopt", 3, N["IPPROTO_TCP"], 9999, 1)[:2] == (-1, errno.ENOPROTOOPT)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    agent.call("socket", 2, 1, 6)
    agent.call("fcntl", 4, N["F_SETFL"], N["O_RDWR"] | N["O_NONBLOCK"])
    assert agent.call("connect", 4, "127.0.0.1", sock.getsockname()[1])[1] in (0, errno.EINPROGRESS)
    sock.close()


def test_a_call_starts_on_the_agents_clock_at_the_time_given(agent):
    now = int(agent.ask("time")[0])
    at = now + 80_000_000
    ret, err, _, start, end = agent.call("socket", 2, 1, 6, at=at)
    assert ret == 3 and at <= start <= end < at + 50_000_000
    # a time already past: at once
    before = int(agent.ask("time")[0])
    _, _, _, start, _ = agent.call("close", 3, at=before - 10**9)
    assert start >= before


def test_a_call_waiting_for_its_time_holds_up_only_its_own_slot(agent):
    now = int(agent.ask("time")[0])
    agent.n += 1
    late_id = agent.n
    agent.proc.stdin.write(f"{late_id} call {now + 300_000_000} 0 socket 2 1 6\n")
    agent.proc.stdin.flush()
    ret, err, _, start, _ = agent.call("socket", 2, 1, 6, slot=1)     # answered first
    assert ret == 3 and start < now + 300_000_000
    line = agent.proc.stdout.readline().split()
    assert line[:3] == ["=", str(late_id), "3"] and int(line[6]) >= now + 300_000_000


@pytest.mark.parametrize("request_line, why", [
    ("call 0 0 frobnicate 1", "unknown syscall"),
    ("call 0 0 listen 3", "wrong number of arguments"),
    ("call 0 0 listen x 1", "not a number"),
    ("call 0 0 bind 3 300.1.1.1 80", "bad address"),
    ("call 0 0 read 3 99999999", "count out of range"),
    ("call soon 0 socket 2 1 6", "bad time"),
    ("call 0 16 socket 2 1 6", "bad slot"),
    ("closeall -1", "bad slot"),
    ("launch", "unknown request"),
])
def test_a_bad_request_is_named_and_the_agent_goes_on(agent, request_line, why):
    answer = agent.ask(*request_line.split())
    assert answer[0] == "ERR" and why in " ".join(answer)
    assert agent.ask("time")[0].isdigit()


def test_quit_and_end_of_input_end_the_agent(agent):
    assert agent.ask("quit") == ["0"]
    assert agent.proc.wait(timeout=5) == 0


def test_the_board_binary_is_a_static_arm_executable():
    path = build_agent(log=lambda m: None)
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 1, "a 32-bit ELF"
    assert struct.unpack_from("<H", data, 18)[0] == 40, "e_machine EM_ARM"
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "no PT_INTERP: static, so the board's libc does not matter"
    assert build_agent(log=lambda m: None) == path, "cached by its recipe"
