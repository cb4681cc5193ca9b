"""One seeded cell per built-in scenario that had none on the real emulated board: the
image is built from a seeded firmware config, the oracle judges it with the declared
default, and the rows must be the ones the coverage matrix's model-as-board shows for that
cell (bench/matrix.py). One boot each; the scenarios last 2 to 13 s.

link-flap-phases has no cell here: no field of the firmware config changes what it
observes (only phylib's poll period does, a constant of the kernel that an image cannot
seed); tests/test_coverage_scenarios.py plays that constant on the model-as-board.
"""

from __future__ import annotations

import json

import pytest

from harness.board.boardfile import parse_board
from harness.oracle import Tolerance
from harness.runner import check_scenario, run_scenario
from harness.scenario import load_scenario
from models.config import DEFAULT_CONFIG


def seeded(**image_over):
    return parse_board({"kind": "emulated", "image": {**DEFAULT_CONFIG, **image_over}}, "<seeded fault>")


def judged(spec, name: str, tmp_path):
    run = run_scenario(spec, load_scenario(name), tmp_path / name, log=lambda m: None)
    return check_scenario(spec, run, Tolerance())


def kinds(v) -> set[tuple[str, str, str | None]]:
    return {(r["kind"], r["stream_name"], r.get("field")) for r in v.rows}


@pytest.mark.board
def test_closed_port_shows_a_seeded_ip_default_ttl_on_the_rst(tmp_path):
    """tcp_v4_send_reset sends the RST with ip_send_unicast_reply from the per-cpu control
    socket (uc_ttl -1), so __ip_make_skb -> ip_select_ttl -> ip4_dst_hoplimit gives the
    namespace's ip_default_ttl: 32, not the declared 64."""
    v = judged(seeded(sysctls={"net.ipv4.ip_default_ttl": 32}), "closed-port", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None and kinds(v) == {("FIELD_MISMATCH", "TCP_RST", "ip_ttl")}, dump
    (row,) = v.rows
    assert (row["pred_value"], row["obs_value"]) == (64, 32), dump


@pytest.mark.board
def test_reboot_shows_dropbear_without_its_ip_tos_after_the_restart(tmp_path):
    """The SSH SYN-ACKs after the reboot come from dropbear's listener: declared with its
    IPTOS_DSCP_AF21 (listensockets -> set_sock_priority), an image started with -z sends 0."""
    v = judged(seeded(services={"ssh": {"port": 22, "ip_tos": 0}, "http": {"port": 80}}), "reboot", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None and kinds(v) == {("FIELD_MISMATCH", "TCP_SYNACK", "ip_tos")}, dump
    assert {(r["pred_value"], r["obs_value"]) for r in v.rows} == {(0x48, 0)}, dump


@pytest.mark.board
def test_syn_unreachable_shows_a_seeded_arp_retrans_time(tmp_path):
    """neigh_timer_handler re-arms NUD_INCOMPLETE every retrans_time (declared 1 s): with 3 s
    the board's broadcast requests and the SYNs that start new resolutions come at other
    times, so rows appear on both streams."""
    v = judged(seeded(sysctls={"net.ipv4.neigh.default.retrans_time_ms": 3000}), "syn-unreachable", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None and v.rows, dump
    assert {r["stream_name"] for r in v.rows} >= {"ARP_REQUEST"}, dump
    assert {r["kind"] for r in v.rows} <= {"EXTRA", "MISSING", "LATE", "EARLY"}, dump


@pytest.mark.board
def test_syn_retransmit_resume_shows_a_seeded_mcast_solicit_of_one(tmp_path):
    """__neigh_event_send starts a resolution's probe count at ucast_solicit and
    neigh_timer_handler fails it at neigh_max_probes (ucast + app + mcast_solicit), so with
    mcast_solicit 1 each resolution sends one broadcast request, not the declared three:
    the others are missing."""
    v = judged(seeded(sysctls={"net.ipv4.neigh.default.mcast_solicit": 1}), "syn-retransmit-resume", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None and v.rows, dump
    assert ("MISSING", "ARP_REQUEST", None) in kinds(v), dump
    assert {r["stream_name"] for r in v.rows} <= {"ARP_REQUEST", "TCP_SYN"}, dump
