"""An emulated AST2500 exported as a labgrid place (the bench: QEMU, ser2net, a PDU and a
link relay over HTTP, a frame tap) and driven through it: oracle scenarios through the
`kind: labgrid` board pass, and the place is released, and the board powered off, when
the run ends, Ctrl-C included."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.board


def test_oracle_scenarios_through_a_labgrid_place_match_linux(lab, bench_place, tmp_path):
    """link-flap (the link through the place's HttpDigitalOutput) and closed-port, each on a
    fresh power cycle of the place's board, the place found by its tags."""
    board = lab.board_file(tmp_path, tags={"board": "ast2500"})
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "link-flap", "closed-port", "--board", str(board),
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    report = json.loads((out / "report.json").read_text())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = {v["scenario"]: v for v in report["scenarios"]}
    assert set(verdicts) == {"link-flap", "closed-port"}
    for verdict in verdicts.values():
        assert verdict["ok"] and not verdict["divergences"] and verdict["error"] is None, verdict
    assert verdicts["closed-port"]["compared_kinds"] == ["TCP_RST"]
    assert {"LINK_DOWN", "LINK_UP", "TCP_SYNACK"} <= set(verdicts["link-flap"]["compared_kinds"])
    events = [json.loads(line)["event"] for line in
              (out / "closed-port" / "host-events.jsonl").read_text().splitlines()]
    assert events[0] == "place_acquired" and events[-1] == "place_released"
    assert "power_on" in events and events.index("power_off", events.index("liveness")) > 0
    assert lab.place(bench_place).acquired is None
    assert lab.reservations() == []


def test_ctrl_c_in_the_middle_of_a_boot_releases_the_place_and_powers_the_board_off(lab, bench_place, tmp_path):
    board = lab.board_file(tmp_path, place=bench_place)
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "closed-port", "--board", str(board),
                            "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    events = out / "closed-port" / "host-events.jsonl"
    deadline = time.monotonic() + 120
    while not (events.exists() and '"power_on"' in events.read_text()):
        assert run.poll() is None, run.stdout.read()
        assert time.monotonic() < deadline, "the run never powered the board on"
        time.sleep(0.1)
    assert lab.place(bench_place).acquired is not None
    time.sleep(1.0)                                   # the kernel is booting
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 130, output
    names = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert names[-2:] == ["power_off", "place_released"], names
    assert lab.place(bench_place).acquired is None
    assert lab.reservations() == []


def test_the_board_verbs_drive_a_place_and_release_it_after_each(lab, bench_place, tmp_path):
    """`bmc-hil power`, `ssh` and `link` on a `kind: labgrid` board file: each verb acquires
    the place, drives the resource the place maps to it (the PDU, the network service, the
    link relay) and releases it; a `power on` leaves the board on."""
    board = lab.board_file(tmp_path, place=bench_place)

    def hil(*words, timeout=120):
        return subprocess.run([sys.executable, "-m", "harness", *words, "--board", str(board)],
                              capture_output=True, text=True, timeout=timeout)

    def ssh_uname(timeout: int):
        r = subprocess.run([sys.executable, "-m", "harness", "ssh", "--board", str(board), "--timeout", str(timeout),
                            "--", "uname", "-m"], capture_output=True, text=True, timeout=timeout + 60)
        return r.returncode, r.stdout + r.stderr

    on = hil("power", "on")
    assert on.returncode == 0 and f"place {bench_place}" in on.stdout, on.stdout + on.stderr
    assert lab.place(bench_place).acquired is None
    deadline = time.monotonic() + 90
    while (r := ssh_uname(15))[0] != 0:            # booting; SSH comes up with it
        assert time.monotonic() < deadline, r[1][-2000:]
    assert "armv6l" in r[1]
    assert hil("link", "down").returncode == 0
    code, said = ssh_uname(5)
    assert code != 0 and lab.place(bench_place).acquired is None, said
    assert hil("link", "up").returncode == 0
    deadline = time.monotonic() + 30
    while (r := ssh_uname(10))[0] != 0:
        assert time.monotonic() < deadline, r[1][-2000:]
    off = hil("power", "off")
    assert off.returncode == 0 and ssh_uname(5)[0] != 0
    assert lab.reservations() == []
