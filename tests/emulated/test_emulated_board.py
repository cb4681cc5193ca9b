"""The emulated AST2500 board, for real: QEMU, the Debian-built kernel and initramfs,
dropbear over the 127.0.0.1 forward, QMP, filter-dump, tshark."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from harness.board import BoardState, BoardStrategy
from harness.board.qemu import QemuBoard
from harness.errors import KernelPanic, QemuError, StrategyError

pytestmark = pytest.mark.board

LINK_DOWN = "ftgmac100 1e660000.ethernet eth0: Link is Down"
LINK_UP = "ftgmac100 1e660000.ethernet eth0: Link is Up - 100Mbps/Full - flow control rx/tx"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes only once reaped; check /proc.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def tshark_fields(pcap, *fields, display_filter=None):
    cmd = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    if display_filter:
        cmd += ["-Y", display_filter]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def http_get(port: int) -> bytes:
    """GET / through the 127.0.0.1 forward; b"" when the board refuses (slirp resets or closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(5)
        try:
            return s.recv(100)
        except ConnectionResetError:
            return b""


def test_uname_over_ssh_shows_armv6l(booted_board):
    out = booted_board.run("uname -a").stdout
    assert "armv6l" in out and "6.1." in out


def test_console_lines_carry_guest_and_host_stamps(booted_board):
    banner = next(line for line in booted_board.console.lines if "Linux version" in line.text)
    assert banner.guest_ns == 0
    later = next(line for line in booted_board.console.lines if "Run /init as init process" in line.text)
    assert 0 < later.guest_ns < 30_000_000_000
    assert later.host_monotonic_ns >= banner.host_monotonic_ns
    log = (booted_board.out_dir / "console.log").read_text()
    assert "Run /init as init process" in log


def test_link_off_then_on_logs_link_down_then_up(booted_board):
    console = booted_board.console
    since = console.cursor()
    booted_board.set_link(False)
    down, _ = console.expect(re.escape(LINK_DOWN), timeout=5, since=since)
    booted_board.set_link(True)
    up, _ = console.expect(re.escape(LINK_UP), timeout=5, since=down.index + 1)
    assert up.guest_ns > down.guest_ns
    # phylib polls once a second: detection takes at most about one poll period.
    events = {e.name: e for e in booted_board.host_events}
    assert down.host_monotonic_ns - events["link_down"].host_monotonic_ns < 2_500_000_000


def test_starved_watchdog_resets_the_board_after_its_timeout(booted_board):
    qmp = booted_board.qmp
    console = booted_board.console
    since_ev = qmp.cursor()
    booted_board.watchdog_start(timeout=5, period=1)
    time.sleep(1.5)
    starve_since = console.cursor()
    booted_board.watchdog_starve()
    starved = booted_board.host_events[-1]
    console.expect(re.escape("watchdog: watchdog0: watchdog did not stop!"), timeout=5, since=starve_since)
    wd = qmp.wait_event("WATCHDOG", timeout=15, since=since_ev)
    assert wd.data.get("action") == "reset"
    delay = (wd.host_monotonic_ns - starved.host_monotonic_ns) / 1e9
    # Expiry is at the last kick + 5 s; the daemon's last kick is at most one period
    # (1 s) before the SIGKILL. The upper bound leaves room for a loaded host.
    assert 3.5 <= delay <= 6.5, delay
    reboot, _ = console.expect(r"Linux version \d", timeout=15, since=starve_since)
    assert reboot.host_monotonic_ns > wd.host_monotonic_ns


def test_capture_of_ssh_login_holds_arp_and_three_way_handshake(emulated_image, tmp_path):
    board = QemuBoard(emulated_image, tmp_path / "board")
    pcap = tmp_path / "login.pcap"
    with board:
        board.capture_start(pcap)  # before power-on: the capture starts with the first frame
        BoardStrategy(board).transition(BoardState.SSH)
        board.run("true")
        board.capture_stop()
    arps = tshark_fields(pcap, "arp.opcode", "arp.src.proto_ipv4", "arp.dst.proto_ipv4", display_filter="arp")
    assert ["1", "10.0.2.2", "10.0.2.15"] in arps   # who-has 10.0.2.15 tell 10.0.2.2
    assert ["2", "10.0.2.15", "10.0.2.2"] in arps   # the board's reply
    flags = [row[0] for row in tshark_fields(pcap, "tcp.flags", display_filter="tcp.port == 22")]
    assert flags[:3] == ["0x0002", "0x0012", "0x0010"]  # SYN, SYN-ACK, ACK
    mss = tshark_fields(pcap, "tcp.options.mss_val", display_filter="tcp.flags == 0x012 && ip.src == 10.0.2.15")
    assert mss[0] == ["1460"]


def test_image_with_mtu_1400_and_http_off_shows_exactly_that(image_for, tmp_path):
    image = image_for(interface={"address": "10.0.2.15/24", "gateway": "10.0.2.2",
                                 "mac": "52:54:00:12:34:56", "mtu": 1400},
                      services={"ssh": {"port": 22}, "http": {"enabled": False}})
    from models.config import FirmwareConfig

    # Declared as the default (http on port 80), so the forward to port 80 exists.
    board = QemuBoard(image, tmp_path / "board", declared=FirmwareConfig.default())
    with board:
        BoardStrategy(board).transition(BoardState.SSH)
        assert "mtu 1400" in board.run("ip link show eth0").stdout
        local = board.run("wget -q -O- http://127.0.0.1:80/", check=False)
        assert local.exit_status != 0 and "refused" in local.stderr.lower()
        # Through the forward slirp accepts, then resets or closes: no HTTP answer.
        assert http_get(board.host_port("http")) == b""


def test_default_image_serves_http_on_port_80(booted_board):
    assert http_get(booted_board.host_port("http")).startswith(b"HTTP/1.1 200 OK")


def test_kernel_panic_during_boot_fails_the_shell_step_with_the_tail(emulated_image, tmp_path):
    # A firmware whose init is missing: the kernel panics ("No working init found").
    board = QemuBoard(emulated_image, tmp_path / "board", kernel_args="rdinit=/sbin/missing-init")
    with board, pytest.raises(StrategyError) as info:
        BoardStrategy(board).transition(BoardState.SSH)
    assert info.value.step == "shell"
    assert isinstance(info.value.__cause__, KernelPanic)
    assert "Kernel panic - not syncing" in info.value.console_tail
    assert str(tmp_path / "board") in str(info.value)


def test_close_leaves_no_qemu_behind(emulated_image, tmp_path):
    board = QemuBoard(emulated_image, tmp_path / "board")
    board.power_on()
    pid = board.pid
    assert _alive(pid)
    board.close()
    assert not _alive(pid)
    assert (tmp_path / "board" / "console.log").exists()
    assert (tmp_path / "board" / "qmp.jsonl").exists()


def test_qemu_failing_to_start_is_a_clear_error_and_leaves_nothing(emulated_image, tmp_path):
    import dataclasses
    import shutil

    from harness.image.kernel import Kernel

    # a kernel without its device trees: QEMU itself refuses to start
    (tmp_path / "nodtb").mkdir()
    shutil.copy(emulated_image.kernel.zimage, tmp_path / "nodtb" / "zImage")
    broken = dataclasses.replace(emulated_image, kernel=Kernel(tmp_path / "nodtb", "x"))
    board = QemuBoard(broken, tmp_path / "board")
    with pytest.raises(QemuError) as info:
        board.power_on()
    assert "exited" in str(info.value) and "aspeed-ast2500-evb.dtb" in str(info.value)
    assert board.pid is None
    board.close()


def test_two_emulated_boards_run_at_once_on_their_own_ports(emulated_image, tmp_path):
    a = QemuBoard(emulated_image, tmp_path / "a", name="a")
    b = QemuBoard(emulated_image, tmp_path / "b", name="b")
    with a, b:
        BoardStrategy(a).transition(BoardState.SSH)
        BoardStrategy(b).transition(BoardState.SSH)
        assert a.host_port("ssh") != b.host_port("ssh")
        assert a.run("hostname").stdout.strip() == b.run("hostname").stdout.strip() == "bmc"


def test_link_down_is_reasserted_after_a_reset(booted_board):
    console = booted_board.console
    booted_board.set_link(False)
    since = console.cursor()
    booted_board.reset()
    console.expect(r"Run /init as init process", timeout=20, since=since)
    # After the guest's MAC reset the PHY would say link up; the harness says down again.
    time.sleep(3)
    assert any(e.name == "link_down_reasserted" for e in booted_board.host_events)
    out, status = console.run("cat /sys/class/net/eth0/carrier", timeout=10)
    assert out.strip().splitlines()[-1] == "0"


# Linux 6.1's NC-SI code sometimes oopses (NULL pointer in ncsi_add_channel, from
# ncsi_rsp_handler_cis) on the answers QEMU's NC-SI emulation gives during probe, and
# aspeed_g5_defconfig panics on oops. Seen in about one boot in five here. That kernel
# fault is not the harness's to hide, but it must not make this test flaky: a boot that
# hits exactly that oops is tried again, at most three times; any other failure fails.
NCSI_OOPS = "ncsi_add_channel"


def test_romulus_ncsi_variant_boots_to_ssh(emulated_image, tmp_path):
    for attempt in range(3):
        board = QemuBoard(emulated_image, tmp_path / f"board{attempt}", machine="romulus-bmc")
        with board:
            try:
                BoardStrategy(board).transition(BoardState.SSH)
            except StrategyError:
                if NCSI_OOPS in (board.out_dir / "console.log").read_text():
                    continue
                raise
            assert "armv6l" in board.run("uname -m").stdout
            assert not any("Link is Up" in line.text for line in board.console.lines)
            assert "NCSI" in "\n".join(line.text for line in board.console.lines)
            return
    pytest.fail("three romulus-bmc boots in a row hit the NC-SI oops in ncsi_add_channel")


def test_password_login_works_and_a_wrong_password_is_refused(booted_board):
    from harness.board.ssh import SSHConnection
    from harness.errors import SSHError

    cred = booted_board.image.credentials
    port = booted_board.host_port("ssh")
    good = SSHConnection("127.0.0.1", port, cred.user, password=cred.password, known_hosts="auto-accept")
    try:
        assert good.run("id -u").stdout.strip() == "0"
    finally:
        good.close()
    bad = SSHConnection("127.0.0.1", port, cred.user, password="wrong", known_hosts="auto-accept")
    with pytest.raises(SSHError, match="authentication as root"):
        bad.connect(timeout=10)


def test_qemu_dies_with_a_harness_that_is_killed(emulated_image, tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from harness.image import build_image;"
        "from harness.board.qemu import QemuBoard;"
        f"b = QemuBoard(build_image(log=lambda m: None), Path({str(tmp_path / 'b')!r}));"
        "b.power_on(); print(b.pid, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    qemu_pid = int(child.stdout.readline())
    assert _alive(qemu_pid)
    child.kill()  # SIGKILL: no finally, no atexit
    child.wait()
    deadline = time.monotonic() + 10
    while _alive(qemu_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(qemu_pid)


def test_watchdog_daemon_from_the_firmware_config_keeps_the_board_up(image_for, tmp_path):
    image = image_for(watchdog={"timeout": 4, "daemon": True, "period": 1})
    board = QemuBoard(image, tmp_path / "board")
    with board:
        BoardStrategy(board).transition(BoardState.SSH)
        assert board.run("pidof watchdog").stdout.strip()
        since = board.qmp.cursor()
        time.sleep(6)  # longer than the timeout: only the daemon's kicks keep it alive
        assert [e.name for e in board.qmp.events[since:]] == []
        board.watchdog_starve()
        assert board.qmp.wait_event("WATCHDOG", timeout=10, since=since).data["action"] == "reset"
