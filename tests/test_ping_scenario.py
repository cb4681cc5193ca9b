"""The `icmp-echo` scenario: ICMP echo requests the harness makes from the declared config,
on a wire it owns. A healthy board replies to an echo to its own address, ignores echoes
to the subnet broadcast and to 255.255.255.255 (icmp_rcv: RTCF_BROADCAST routes, with
icmp_echo_ignore_broadcasts 1), and replies to an off-link source through its gateway. A
board built with icmp_echo_ignore_broadcasts 0, a /16 prefix or another gateway diverges:
on the model-as-board (fast) and on the emulated board (`board`)."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest

from harness.board.boardfile import parse_board
from harness.oracle import Tolerance
from harness.runner import check_scenario, run_scenario
from harness.scenario import load_scenario
from models.config import DEFAULT_CONFIG
from models.wire import ip4
from models.wire.ipv4 import IPPROTO_ICMP

from .pcap_edit import board_frames, edit_board_packet, set_board_ip_id


def image(sysctls: dict | None = None, **interface) -> dict:
    """The default firmware config with `sysctls` and `interface` fields replaced."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    cfg["interface"].update(interface)
    if sysctls:
        cfg["sysctls"] = {**cfg.get("sysctls", {}), **sysctls}
    return cfg


IGNORE_BROADCASTS_0 = image({"net.ipv4.icmp_echo_ignore_broadcasts": 0})
PREFIX_16 = image(address="10.0.2.15/16")
GATEWAY_1 = image(gateway="10.0.2.1")


def board(kind: str, seeded: dict | None = None):
    """A board declared as the default firmware, played (or its image built) from `seeded`."""
    return parse_board({"kind": kind, **({"image": seeded} if seeded else {})}, f"<{kind} icmp-echo>")


def run_icmp_echo(spec, tmp_path):
    run = run_scenario(spec, load_scenario("icmp-echo"), tmp_path / "icmp-echo", log=lambda m: None)
    return check_scenario(spec, run, Tolerance())


def rows(v) -> set[tuple[str, str]]:
    return {(r["kind"], r["stream_name"]) for r in v.rows}


def icmp_rows(v, kind: str) -> list[dict]:
    return [r for r in v.rows if r["kind"] == kind and r["stream_name"] == "ICMP_ECHO_REPLY"]


# -- the model as the board -------------------------------------------------------------------
def test_healthy_model_as_board_passes(tmp_path):
    v = run_icmp_echo(board("model"), tmp_path)
    assert v.predicted == 4 and v.observed == 4     # the ARP for the peer, three echo replies
    assert v.rows == [] and getattr(v, "error", None) is None, json.dumps(v.rows, indent=1, default=int)


def test_model_as_board_answering_broadcast_echoes_is_two_extra_replies(tmp_path):
    v = run_icmp_echo(board("model", IGNORE_BROADCASTS_0), tmp_path)
    assert rows(v) == {("EXTRA", "ICMP_ECHO_REPLY")}
    assert len(icmp_rows(v, "EXTRA")) == 2          # to 10.0.2.255 and to 255.255.255.255


@pytest.mark.parametrize("seeded", [PREFIX_16, GATEWAY_1], ids=["prefix-16", "gateway-10.0.2.1"])
def test_model_as_board_with_another_route_back_arps_for_it_and_never_replies(seeded, tmp_path):
    """A /16 makes 10.0.3.7 on-link (the board ARPs for it); another gateway is ARPed for
    instead of the peer. Nobody answers either, so the reply to 10.0.3.7 never goes."""
    v = run_icmp_echo(board("model", seeded), tmp_path)
    assert rows(v) == {("EXTRA", "ARP_REQUEST"), ("MISSING", "ICMP_ECHO_REPLY")}


def _flip_data(l4: bytearray) -> None:
    l4[20] ^= 0x40                                    # a byte of the echo's data


def _next_seq(l4: bytearray) -> None:
    l4[7] = (l4[7] + 1) & 0xFF                        # the sequence number's low byte


@pytest.mark.parametrize("edit,fix,fields", [
    (_flip_data, True, {"l4_hash"}),                  # other data, checksummed right
    (_next_seq, True, {"icmp_seq"}),                  # another echo's sequence number
    (_flip_data, False, {"l4_hash", "csum"}),         # a byte changed after the checksum
    (lambda l4: None, False, {"csum"}),               # only the checksum wrong...
], ids=["data", "sequence", "data-unchecksummed", "checksum"])
def test_an_echo_reply_that_is_not_the_requests_echo_is_a_field_mismatch(tmp_path, edit, fix, fields):
    spec = board("model")
    run = run_scenario(spec, load_scenario("icmp-echo"), tmp_path / "icmp-echo", log=lambda m: None)
    cap = tmp_path / "edited"
    shutil.copytree(run.out_dir, cap)
    board_ip = ip4(str(spec.firmware.interface.address.ip))
    assert len(board_frames(cap / "capture.pcap", board_ip, IPPROTO_ICMP)) == 3
    if edit is not _flip_data and not fix:
        edit = lambda l4: l4.__setitem__(3, l4[3] ^ 1)   # noqa: E731 - ...by one bit
    edit_board_packet(cap / "capture.pcap", board_ip, IPPROTO_ICMP, 0, edit, fix_checksum=fix)
    v = check_scenario(spec, dataclasses.replace(run, out_dir=cap), Tolerance())
    assert {(r["kind"], r["stream_name"]) for r in v.rows} == {("FIELD_MISMATCH", "ICMP_ECHO_REPLY")}, \
        json.dumps(v.rows, indent=1, default=int)
    assert {r["field"] for r in v.rows} == fields and len({r["obs_id"] for r in v.rows}) == 1, v.rows
    assert not v.ok


@pytest.mark.parametrize("step,ok", [(1, True), (51, True), (0, False), (30000, False)])
def test_the_second_reply_to_a_peer_has_an_id_ip_idents_could_give_after_the_first(tmp_path, step, ok):
    """The replies at 0 and 0.5 s go to one peer: ip_idents_reserve gives the second an ID
    1 to 1 + 50 jiffies after the first (and a few more: the frame tolerance, the packets
    between). The same ID again or one far off is a FIELD_MISMATCH on ip_id; the first
    reply's ID is anything (random at boot), and so is the reply to another peer's."""
    spec = board("model")
    run = run_scenario(spec, load_scenario("icmp-echo"), tmp_path / "icmp-echo", log=lambda m: None)
    cap = tmp_path / "edited"
    shutil.copytree(run.out_dir, cap)
    board_ip = ip4(str(spec.firmware.interface.address.ip))
    first = set_board_ip_id(cap / "capture.pcap", board_ip, IPPROTO_ICMP, 0, 0x1234)
    set_board_ip_id(cap / "capture.pcap", board_ip, IPPROTO_ICMP, 2, first ^ 0x5555)   # the other peer's
    set_board_ip_id(cap / "capture.pcap", board_ip, IPPROTO_ICMP, 1, (0x1234 + step) & 0xFFFF)
    v = check_scenario(spec, dataclasses.replace(run, out_dir=cap), Tolerance())
    # each peer's first ID is learnt, any value: the bound's start
    assert sorted((x.value, x.where) for x in v.learnt if x.name == "icmp_id") == \
        sorted([(0x1234, "first echo reply to 10.0.2.2"), (first ^ 0x5555, "first echo reply to 10.0.3.7")])
    if ok:
        assert v.ok and v.rows == [], json.dumps(v.rows, indent=1, default=int)
        return
    assert [(r["kind"], r["stream_name"], r["field"]) for r in v.rows] == \
        [("FIELD_MISMATCH", "ICMP_ECHO_REPLY", "ip_id")], json.dumps(v.rows, indent=1, default=int)
    assert "ip_idents to 10.0.2.2" in v.rows[0]["detail"] and not v.ok


# -- the emulated board -------------------------------------------------------------------------
@pytest.mark.board
def test_seeded_icmp_echo_ignore_broadcasts_0_is_two_extra_echo_replies_on_the_emulated_board(tmp_path):
    v = run_icmp_echo(board("emulated", IGNORE_BROADCASTS_0), tmp_path)
    assert rows(v) == {("EXTRA", "ICMP_ECHO_REPLY")}, json.dumps(v.rows, indent=1, default=int)
    extra = icmp_rows(v, "EXTRA")
    assert len(extra) == 2
    # one second apart, as the echoes to 10.0.2.255 (at 1 s) and 255.255.255.255 (at 2 s)
    assert 0.9e9 < extra[1]["obs_ns"] - extra[0]["obs_ns"] < 1.1e9


@pytest.mark.board
def test_seeded_gateway_is_an_arp_for_it_and_a_missing_reply_on_the_emulated_board(tmp_path):
    v = run_icmp_echo(board("emulated", GATEWAY_1), tmp_path)
    assert rows(v) == {("EXTRA", "ARP_REQUEST"), ("MISSING", "ICMP_ECHO_REPLY")}, \
        json.dumps(v.rows, indent=1, default=int)
    assert len(icmp_rows(v, "MISSING")) == 1        # the reply to 10.0.3.7
