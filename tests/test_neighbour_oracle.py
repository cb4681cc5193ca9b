"""The oracle compares the board's unicast ARP probes (NUD_PROBE): a healthy board's pass,
and a board whose reachable time is shorter than Linux's is caught by neigh-reachable."""

from __future__ import annotations

import json

import pytest

from harness.board.boardfile import parse_board
from harness.ingest.pcap import read_capture
from harness.oracle import Tolerance
from harness.runner import check_scenario, run_scenario
from harness.scenario import load_scenario
from models.config import DEFAULT_CONFIG

SHORT_REACHABLE = {"net.ipv4.neigh.default.base_reachable_time_ms": 5000}   # Linux: 30000
PEER_MAC = bytes.fromhex("52550a000202")   # the harness's wire peer (harness.board.wire)


def judged(spec, name: str, tmp_path):
    run = run_scenario(spec, load_scenario(name), tmp_path / name, log=lambda m: None)
    return run, check_scenario(spec, run, Tolerance())


def model_board(**extra):
    return parse_board({"kind": "model", **extra}, "<model board>")


def seeded_image(kind: str, sysctls: dict):
    """A board declared as the default firmware whose image (or player) has `sysctls`."""
    image = {**DEFAULT_CONFIG, "sysctls": {**DEFAULT_CONFIG.get("sysctls", {}), **sysctls}}
    return parse_board({"kind": kind, "image": image}, "<seeded fault>")


def unicast_probe_rows(run, verdict) -> list[dict]:
    """The rows that are the board's unicast ARP requests (to the peer's cached address)."""
    table = read_capture(run.out_dir / "capture.pcap").packets
    dst = [int(table.eth_dst[r["frame"] - 1]).to_bytes(6, "big") for r in verdict.rows if r.get("frame")]
    return [r for r, d in zip([r for r in verdict.rows if r.get("frame")], dst, strict=True) if d == PEER_MAC]


def test_healthy_model_board_sends_no_probe_in_neigh_reachable(tmp_path):
    """reachable_time is at least base/2 (15 s): no draw lets the entry go STALE in 17 s."""
    run, v = judged(model_board(), "neigh-reachable", tmp_path)
    assert v.ok, json.dumps(v.rows, indent=1, default=int)


def test_unicast_probes_are_compared(tmp_path):
    """arp-unanswered: the deaf peer's entry goes DELAY -> PROBE; its three unicast probes
    are predicted and compared beside the three broadcast requests of the later resolution."""
    run, v = judged(model_board(), "arp-unanswered", tmp_path)
    assert v.ok, json.dumps(v.rows, indent=1, default=int)
    assert sum(1 for kind, _ in v.series["observed"] if kind == "ARP_REQUEST") == 6
    assert sum(1 for kind, *_ in v.series["predicted"] if kind == "ARP_REQUEST") == 6


@pytest.mark.parametrize("board", [{"image": {**DEFAULT_CONFIG, "sysctls": SHORT_REACHABLE}},
                                   {"constants": {"ARP_BASE_REACHABLE_TIME": "5s"}}],
                         ids=["base_reachable_time_ms", "ARP_BASE_REACHABLE_TIME"])
def test_short_reachable_time_on_the_model_board_is_an_extra_unicast_probe(tmp_path, board):
    """The player's entry goes STALE 7.5 s after the peer's reply (its draw is the latest
    of 2.5..7.5 s), the second connect's SYN at 9 s makes it DELAY, and it probes at 14 s:
    EXTRA, since no Linux 6.1 draw (15..45 s) probes there."""
    run, v = judged(model_board(**board), "neigh-reachable", tmp_path)
    assert [(r["kind"], r["stream_name"]) for r in v.rows] == [("EXTRA", "ARP_REQUEST")], \
        json.dumps(v.rows, indent=1, default=int)
    assert unicast_probe_rows(run, v) == v.rows


@pytest.mark.board
def test_seeded_short_base_reachable_time_is_an_extra_unicast_probe(tmp_path):
    """An image with net.ipv4.neigh.default.base_reachable_time_ms 5000 draws its reachable
    time from 2.5..7.5 s (neigh_rand_reach_time): its entry for the silent peer goes STALE
    before the 3 s, 7 s or 9 s SYN, whose send makes it DELAY (__neigh_event_send), and a
    unicast probe follows 5 s later (neigh_timer_handler -> neigh_probe), by about 14.3 s.
    A Linux 6.1 entry (15..45 s) is REACHABLE all along: every row is that probe (and the
    ones after it), EXTRA."""
    spec = seeded_image("emulated", SHORT_REACHABLE)
    run, v = judged(spec, "neigh-reachable", tmp_path)
    assert v.error is None, v.error
    assert v.rows and all((r["kind"], r["stream_name"]) == ("EXTRA", "ARP_REQUEST") for r in v.rows), \
        json.dumps(v.rows, indent=1, default=int)
    assert unicast_probe_rows(run, v) == v.rows
    assert min(r["obs_ns"] for r in v.rows) - v.start_ns > 7_000_000_000   # STALE, then DELAY's 5 s
