"""The kernel counters a run keeps: parsed from the board's /proc/net files, read on the board."""

from __future__ import annotations

import json

import pytest

from harness.board.boardfile import emulated_spec
from harness.runner import parse_proc_net_counters, run_scenario
from harness.scenario import load_scenario

SAMPLE = """TcpExt: SyncookiesSent TCPTimeouts TCPSpuriousRtxHostQueues
TcpExt: 0 7 2
IpExt: InNoRoutes InOctets
IpExt: 0 1234
Tcp: RtoAlgorithm RtoMin ActiveOpens
Tcp: 1 200 -1
"""


def test_counter_pairs_are_parsed_by_group():
    c = parse_proc_net_counters(SAMPLE)
    assert c["TcpExt"] == {"SyncookiesSent": 0, "TCPTimeouts": 7, "TCPSpuriousRtxHostQueues": 2}
    assert c["IpExt"]["InOctets"] == 1234 and c["Tcp"]["ActiveOpens"] == -1


def test_a_torn_or_noisy_read_keeps_what_it_can():
    noisy = "# \x1b[6n\n" + SAMPLE.replace("IpExt: 0 1234\n", "IpExt: 0 12?4\n")
    c = parse_proc_net_counters(noisy)
    assert set(c) == {"TcpExt", "Tcp"}


@pytest.mark.board
def test_a_run_keeps_the_boards_counters_before_and_after(tmp_path):
    run_scenario(emulated_spec(), load_scenario("syn-retransmit"), tmp_path, log=lambda m: None)
    counters = json.loads((tmp_path / "kernel-counters.json").read_text())
    before, after = counters["before"]["Tcp"], counters["after"]["Tcp"]
    assert after["ActiveOpens"] == before["ActiveOpens"] + 1           # the board's one connect()
    assert after["RetransSegs"] - before["RetransSegs"] == 3          # its SYN again at 1, 3 and 7 s
