"""The board's behaviour a BMC's users rely on, checked against whatever board is given:

    pytest suites --board emulated        # or --board lab-bmc-3.yaml

Services answer (or refuse) as the firmware declares them; the link going down and up is
logged within phylib's window; an SSH session lives through a link flap; a starved
watchdog resets the board in time; the board comes back after a reboot.

Timing windows come from the board (`hil_under_test`): phylib's 1 s poll plus the board's
tolerance (per kind, times --tolerance-scale).
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from harness.board.boardfile import emulated_spec
from harness.errors import SSHError

pytestmark = pytest.mark.hil

WATCHDOG_TIMEOUT_S = 5
WATCHDOG_PERIOD_S = 1


def _declared(config):
    """The declared firmware of the board given (the emulated one's when none is: those tests skip)."""
    from harness.pytest_plugin import hil_options

    spec = hil_options(config).spec or emulated_spec()
    return spec.firmware


def pytest_generate_tests(metafunc):
    services = _declared(metafunc.config).services
    if "open_service" in metafunc.fixturenames:
        metafunc.parametrize("open_service", [s.name for s in services if s.enabled])
    if "closed_service" in metafunc.fixturenames:
        from harness.under_test import UNDECLARED_PROBE

        metafunc.parametrize("closed_service", [s.name for s in services if not s.enabled] + [UNDECLARED_PROBE])


def test_declared_service_answers(hil_under_test, hil_board, open_service):
    probe = hil_under_test.probe(open_service)
    assert probe.outcome == "answered", probe.detail
    if open_service == "ssh":
        assert probe.detail.startswith("SSH-2.0-"), probe.detail
    if open_service == "http":
        assert probe.detail.startswith("HTTP/1."), probe.detail


def test_closed_port_is_refused(hil_under_test, hil_board, closed_service):
    probe = hil_under_test.probe(closed_service)
    assert probe.outcome == "refused", probe.detail


def test_link_flap_while_idle_is_logged_within_the_phylib_window(hil_under_test, hil_board, hil_capture):
    window = hil_under_test.link_detection_window_s
    hil_board.set_link(False)
    down = hil_under_test.link_logged_within(False, window)
    time.sleep(max(0.0, 2.0 - down))   # hold the link down for 2 s, as a flapping cable would
    hil_board.set_link(True)
    up = hil_under_test.link_logged_within(True, window)
    print(f"Link is Down after {down:.3f} s, Link is Up after {up:.3f} s (window {window:.2f} s)")


def test_ssh_session_survives_a_link_flap(hil_under_test, hil_board, hil_capture):
    # The command's channel stays open across the flap: its output can only arrive if the
    # TCP session (retransmitting while the link is down) resumes once it is up.
    outcome: dict = {}

    def long_command():
        try:
            outcome["result"] = hil_board.ssh.run("sleep 5; echo survived", timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread below
            outcome["error"] = exc

    worker = threading.Thread(target=long_command)
    worker.start()
    time.sleep(1.0)
    window = hil_under_test.link_detection_window_s
    hil_board.set_link(False)
    hil_under_test.link_logged_within(False, window)
    time.sleep(2.0)
    hil_board.set_link(True)
    hil_under_test.link_logged_within(True, window)
    worker.join(60)
    assert not worker.is_alive(), "the SSH command did not finish within 60 s of the link coming back"
    assert "error" not in outcome, f"the SSH session did not survive the flap: {outcome.get('error')}"
    result = outcome["result"]
    assert (result.exit_status, result.stdout.strip()) == (0, "survived")


@pytest.mark.disruptive
def test_starved_watchdog_resets_the_board_and_ssh_comes_back(hil_under_test, hil_board, hil_capture):
    earliest, latest = hil_under_test.watchdog_reset_window_s(WATCHDOG_TIMEOUT_S, WATCHDOG_PERIOD_S)
    before = _boot_id(hil_board)
    hil_board.watchdog_start(WATCHDOG_TIMEOUT_S, WATCHDOG_PERIOD_S)
    time.sleep(1.5)   # let the daemon kick a few times: the starve is then measured from a kicked watchdog
    hil_board.watchdog_starve()
    delay = hil_under_test.reset_within(latest)
    assert delay >= earliest, f"reset {delay:.3f} s after the starve, before the {WATCHDOG_TIMEOUT_S} s timeout allows"
    hil_board.ssh.wait_until_up(hil_under_test.strategy.timeouts.booted + hil_under_test.strategy.timeouts.ssh)
    assert _boot_id(hil_board) != before, "SSH answered, but from the boot before the reset"


@pytest.mark.disruptive
def test_board_comes_back_after_a_reboot(hil_under_test, hil_board):
    timeouts = hil_under_test.strategy.timeouts
    before = _boot_id(hil_board)
    since = time.monotonic_ns()
    # `-f`: reboot(2) at once. The emulated firmware's init is a shell script that
    # ignores the signal a plain `reboot` sends it; a real BMC's init honours both.
    try:
        hil_board.ssh.run("reboot -f", timeout=3)
    except SSHError:
        pass  # the board is gone before the command reports its exit status
    banner = re.compile(r"Linux version \d")
    deadline = time.monotonic() + timeouts.booted
    while not any(banner.search(line.text) for line in hil_under_test.console_since(since)):
        assert time.monotonic() < deadline, "no new kernel banner within the boot timeout after `reboot`"
        time.sleep(0.1)
    hil_board.ssh.wait_until_up(timeouts.shell + timeouts.ssh)
    assert _boot_id(hil_board) != before


def _boot_id(board) -> str:
    return board.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
