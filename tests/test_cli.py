"""The `bmc-hil` command, run as a user runs it (a real process, the real emulated board)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.sysdeps import Plan
from tests.test_cli_ux import start_boot

BMC_HIL = [sys.executable, "-m", "harness"]


def run(*args, timeout=120, **kw):
    return subprocess.run([*BMC_HIL, *args], capture_output=True, text=True, timeout=timeout, **kw)


def test_every_subcommand_has_help():
    for sub in ("setup", "image", "boot", "console", "ssh", "link", "qmp"):
        out = run(sub, "--help", timeout=30)
        assert out.returncode == 0 and "usage: bmc-hil" in out.stdout, sub


def test_bad_board_file_exits_2_naming_file_and_field(tmp_path):
    bad = tmp_path / "lab.yaml"
    bad.write_text("kind: real\nconsole: {url: /dev/ttyUSB0, speed: 9600}\nssh: {host: 192.0.2.1, password: x}\n"
                   "firmware: {interface: {address: 192.0.2.1/24, mac: '02:00:00:00:00:01'}}\n")
    out = run("boot", "--board", str(bad), timeout=30)
    assert out.returncode == 2
    assert f"{bad}: console.speed: unknown field" in out.stderr


def test_ssh_without_a_running_board_exits_2_and_says_how_to_start_one(tmp_path):
    env = dict(os.environ, BMC_HIL_CACHE=str(tmp_path / "cache"))
    out = run("ssh", "true", env=env, timeout=30)
    assert out.returncode == 2 and "bmc-hil boot" in out.stderr


def test_setup_plan_commands_enable_armel_before_installing():
    plan = Plan(missing=("qemu-system-arm", "tshark"), add_arch=True)
    assert plan.commands() == [["dpkg", "--add-architecture", "armel"], ["apt-get", "update"],
                               ["apt-get", "install", "-y", "--no-install-recommends", "qemu-system-arm", "tshark"]]
    assert Plan(missing=(), add_arch=False).commands() == []


def test_setup_as_non_root_prints_the_exact_commands(monkeypatch):
    import harness.sysdeps as sysdeps
    from harness.errors import SetupError

    monkeypatch.setattr(sysdeps, "plan", lambda: Plan(missing=("tshark",), add_arch=False))
    monkeypatch.setattr(sysdeps.os, "geteuid", lambda: 1000)
    with pytest.raises(SetupError) as info:
        sysdeps.run_setup(log=lambda m: None)
    assert "sudo apt-get install -y --no-install-recommends tshark" in str(info.value)


def test_setup_on_a_ready_machine_is_quick_and_changes_nothing():
    start = time.monotonic()
    out = run("setup", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "all system packages present" in out.stderr
    assert time.monotonic() - start < 10


@pytest.mark.board
def test_boot_check_json_reports_uname_and_boot_to_ready_seconds(tmp_path):
    out = run("boot", "--check", "--json", "--out", str(tmp_path / "run"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and "armv6l" in report["uname"]
    assert 0 < report["boot_to_ready_s"] < 120
    assert set(report["steps_s"]) == {"booted", "shell", "network", "ssh"}
    assert (tmp_path / "run" / "console.log").exists()


@pytest.mark.board
def test_boot_keeps_the_board_up_for_ssh_and_link_then_ctrl_c_leaves_nothing(tmp_path):
    env = dict(os.environ, BMC_HIL_CACHE=os.environ.get("BMC_HIL_CACHE", ""))
    env = {k: v for k, v in env.items() if v}
    out_dir = tmp_path / "run"
    proc, lines = start_boot(out_dir, timeout=120, stderr=subprocess.PIPE, env=env)
    try:
        assert any("console : socket://127.0.0.1:" in ln for ln in lines), "".join(lines) + proc.stderr.read()
        assert run("ssh", "uname", "-m", timeout=60).stdout.strip() == "armv6l"
        assert run("link", "down", timeout=30).returncode == 0
        time.sleep(2)
        assert "eth0: Link is Down" in (out_dir / "console.log").read_text()
        assert run("link", "up", timeout=30).returncode == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()          # Ctrl-C did not end it: no board left behind either way
            proc.wait(timeout=30)
    assert proc.returncode == 0
    qemu_pid = next(json.loads(ln)["pid"] for ln in (out_dir / "host-events.jsonl").read_text().splitlines()
                    if json.loads(ln)["event"] == "power_on")
    assert not os.path.exists(f"/proc/{qemu_pid}") or open(f"/proc/{qemu_pid}/stat").read().split()[2] == "Z"
    assert run("ssh", "true", timeout=30).returncode == 2  # the session is gone


def test_image_build_with_a_bad_config_exits_2_naming_file_and_field(tmp_path):
    fw = tmp_path / "fw.yaml"
    fw.write_text("interface: {address: 10.0.2.15/24, mac: '52:54:00:12:34:56', mtu: 99999}\n")
    out = run("image", "build", "--config", str(fw), timeout=30)
    assert out.returncode == 2
    assert "fw.yaml: interface.mtu: expected an integer in 68..1500" in out.stderr and "got 99999" in out.stderr
