"""The real-board driver, driven against the emulated board as if it were a lab board:
its console through a TCP console server, its SSH forward, link and power through
command templates (QMP via `bmc-hil qmp`), capture on the loopback interface."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from harness.board import BoardState, BoardStrategy
from harness.board.boardfile import parse_board
from harness.board.console_proxy import ConsoleProxy
from harness.board.qemu import QemuBoard
from harness.board.real import RealBoard
from harness.errors import SSHError

pytestmark = pytest.mark.board


@pytest.fixture(scope="module")
def lab(emulated_image, tmp_path_factory):
    """An emulated board up at SSH, with its console offered on a local TCP port."""
    out = tmp_path_factory.mktemp("lab")
    board = QemuBoard(emulated_image, out / "qemu")
    try:
        BoardStrategy(board).transition(BoardState.SSH)
        proxy = ConsoleProxy(board.console)
        yield board, proxy, out
        proxy.close()
    finally:
        board.close()


def _spec(board, proxy, out, **ssh_over):
    qmp = [sys.executable, "-m", "harness", "qmp", "--socket", str(board.control_socket)]
    ssh = {"host": "127.0.0.1", "port": board.host_port("ssh"), "user": "root",
           "key_file": str(board.image.credentials.key_file),
           "known_hosts_file": str(out / "known_hosts"), **ssh_over}
    return parse_board({
        "name": "bench-bmc",
        "kind": "real",
        "console": {"url": proxy.url},
        "ssh": ssh,
        "capture": {"interface": "lo", "filter": f"tcp port {board.host_port('ssh')}"},
        "link": {"down": [*qmp, 'set_link {{"name": "net0", "up": false}}'],
                 "up": [*qmp, 'set_link {{"name": "net0", "up": true}}']},
        "power": {"reset": [*qmp, "system_reset"], "on": [*qmp, "cont"], "off": [*qmp, "stop"]},
        "firmware": board.image.config.to_dict(),
    }, source="<test board file>")


def test_strict_known_hosts_refuses_an_unknown_board_key(lab):
    board, proxy, out = lab
    spec = _spec(board, proxy, out, known_hosts_file=str(out / "empty_known_hosts"))
    with RealBoard(spec, out / "strict") as real, pytest.raises(SSHError, match="not known"):
        real.run("true")


def test_real_driver_reaches_ssh_and_runs_commands(lab):
    board, proxy, out = lab
    # Learn the key once (auto-accept writes it), then strict works with that file.
    with RealBoard(_spec(board, proxy, out, known_hosts="auto-accept"), out / "learn") as real:
        real.run("true")
    with RealBoard(_spec(board, proxy, out), out / "real") as real:
        result = BoardStrategy(real, initial=BoardState.BOOTED).transition(BoardState.SSH)
        assert result.state == BoardState.SSH
        assert "armv6l" in real.run("uname -m").stdout


def test_real_driver_file_copy_round_trips(lab, tmp_path):
    board, proxy, out = lab
    src = tmp_path / "blob"
    src.write_bytes(bytes(range(256)) * 64)
    with RealBoard(_spec(board, proxy, out, known_hosts="auto-accept"), out / "copy") as real:
        real.ssh.put(src, "/tmp/blob")
        real.ssh.get("/tmp/blob", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


def test_real_driver_link_templates_flap_the_link(lab):
    board, proxy, out = lab
    with RealBoard(_spec(board, proxy, out, known_hosts="auto-accept"), out / "link") as real:
        console = real.console
        since = console.cursor()
        real.set_link(False)
        down, _ = console.expect(r"eth0: Link is Down", timeout=5, since=since)
        real.set_link(True)
        console.expect(r"eth0: Link is Up - 100Mbps/Full", timeout=5, since=down.index + 1)
    assert [e.name for e in real.host_events] == ["link_down", "link_up"]


def test_real_driver_captures_the_ssh_session_on_a_named_interface(lab):
    board, proxy, out = lab
    pcap = out / "lo.pcap"
    with RealBoard(_spec(board, proxy, out, known_hosts="auto-accept"), out / "cap") as real:
        real.capture_start(pcap)
        real.ssh.close()
        real.run("echo captured")
        real.capture_stop()
    rows = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "tcp.flags", "-e", "tcp.dstport"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    syns = [r for r in rows if r.startswith("0x0002")]
    assert syns and syns[0].split()[1] == str(board.host_port("ssh"))


def test_failing_link_command_reports_its_stderr(lab):
    board, proxy, out = lab
    spec = _spec(board, proxy, out, known_hosts="auto-accept")
    spec.link_commands["down"] = [sys.executable, "-c", "import sys; sys.exit('pdu says no')"]
    with RealBoard(spec, out / "fail") as real:
        with pytest.raises(Exception, match=re.escape("pdu says no")):
            real.set_link(False)
