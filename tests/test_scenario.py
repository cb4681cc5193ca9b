"""Scenario files and `bmc-hil predict`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.scenario import MODEL_SCENARIO_START_NS, ScenarioError, load_scenario, model_inputs, parse_scenario
from models.config import FirmwareConfig


def scenario(*steps, **top):
    return parse_scenario({"name": "t", "steps": list(steps), **top}, "s.yaml")


def test_steps_are_ordered_by_time_and_durations_parse():
    sc = scenario({"at": "2s", "do": "link_up"}, {"at": "500ms", "do": "link_down"}, duration="1min")
    assert [(s.at_ns, s.do) for s in sc.steps] == [(500_000_000, "link_down"), (2_000_000_000, "link_up")]
    assert sc.end_ns == 62_000_000_000


@pytest.mark.parametrize("step, message", [
    ({"at": "1s", "do": "unplug"}, "steps[0].do: unknown step 'unplug'"),
    ({"do": "link_down"}, "steps[0].at: missing"),
    ({"at": "soon", "do": "link_down"}, "steps[0].at: expected a duration"),
    ({"at": -1, "do": "link_down"}, "cannot be negative"),
    ({"at": 0, "do": "link_down", "port": 3}, "steps[0].port: unknown field for link_down"),
    ({"at": 0, "do": "watchdog_start"}, "steps[0].timeout: expected an integer"),
    ({"at": 0, "do": "watchdog_start", "timeout": 5, "period": 5}, "period: must be shorter"),
    ({"at": 0, "do": "connect"}, "give exactly one of service or port"),
    ({"at": 0, "do": "connect", "service": "ftp"}, "expected ssh or http"),
    ({"at": 0, "do": "frame", "hex": "zz"}, "steps[0].hex: expected an Ethernet frame"),
])
def test_bad_step_is_named_with_file_and_field(step, message):
    with pytest.raises(ScenarioError) as info:
        scenario(step)
    assert str(info.value).startswith("s.yaml: ") and message in str(info.value)


def test_yaml_error_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nsteps:\n  - {at: 1s, do: link_down\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: line \d+, column \d+: not valid YAML"):
        load_scenario(p)


def test_connect_becomes_the_peers_arp_request_then_its_syn():
    cfg = FirmwareConfig.default()
    inputs = model_inputs(scenario({"at": "1s", "do": "connect", "service": "ssh"}), cfg)
    arp, syn = (bytes.fromhex(i["hex"]) for i in inputs)
    assert inputs[0]["t"] == MODEL_SCENARIO_START_NS + 1_000_000_000 < inputs[1]["t"]
    assert arp[12:14] == b"\x08\x06" and arp[38:42] == bytes([10, 0, 2, 15])
    assert syn[12:14] == b"\x08\x00" and int.from_bytes(syn[36:38], "big") == 22 and syn[47] == 0x02


def test_connect_to_a_silent_peer_is_one_linux_syn_and_the_synack_goes_out_at_1_3_7_15_s():
    from models.board import predict
    from models.wire import EthernetRepr, Ipv4Repr, TcpRepr, linux_options

    cfg = FirmwareConfig.default()
    sc = load_scenario("synack-retransmit")
    assert sc.peer == "silent" and [s.do for s in sc.steps] == ["connect"]
    inputs = model_inputs(sc, cfg)
    # No ARP request first (the board asks for the peer); the silent peer's reply follows.
    syn, reply = (bytes.fromhex(i["hex"]) for i in inputs)
    assert reply[12:14] == b"\x08\x06" and reply[20:22] == b"\x00\x02"
    _, payload = EthernetRepr.parse(syn)
    ip, seg = Ipv4Repr.parse(payload)
    tcp, _ = TcpRepr.parse(seg, ip.src, ip.dst)
    assert (tcp.dst_port, tcp.flags, tcp.window) == (22, 0x02, 64240)
    assert tcp.options == linux_options(mss=1460, ts=(100_000, 0), sack_perm=True, wscale=7)
    t0 = inputs[0]["t"]
    pred = predict(cfg, inputs, until=MODEL_SCENARIO_START_NS + sc.end_ns)
    synacks = [e.t - t0 for e in pred.events if e.kind == "frame" and e.detail.get("flags") == "S."]
    # The request sock's timer runs from the SYN, not from the SYN-ACK the ARP held back.
    assert synacks == [1_000_000, 1_000_000_000, 3_000_000_000, 7_000_000_000, 15_000_000_000]
    assert [e.detail["tip"] for e in pred.events if e.kind == "frame" and e.detail.get("proto") == "arp"
            and e.t >= t0] == ["10.0.2.2"]


def test_predict_json_has_the_synack_and_the_link_lines(tmp_path):
    sc = tmp_path / "s.yaml"
    sc.write_text("name: s\nsteps:\n  - {at: 0s, do: connect, service: ssh}\n  - {at: 2s, do: link_down}\n"
                  "  - {at: 4s, do: link_up}\n")
    out = subprocess.run([sys.executable, "-m", "harness", "predict", str(sc), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pred = json.loads(out.stdout)
    start = pred["scenario_start_ns"]
    synacks = [e for e in pred["events"] if e["kind"] == "frame" and e.get("flags") == "S." and e["t"] >= start]
    assert synacks and synacks[0]["sport"] == 22 and synacks[0]["mss"] == 1460
    texts = [e["text"] for e in pred["events"] if e["kind"] == "console" and e["t"] >= start]
    assert "ftgmac100 1e660000.ethernet eth0: Link is Down" in texts
    assert any(c["kind"] == "no_frames_between" for c in pred["constraints"])


def test_predict_with_an_unknown_step_exits_2_naming_it(tmp_path):
    sc = tmp_path / "s.yaml"
    sc.write_text("name: s\nsteps:\n  - {at: 0s, do: teleport}\n")
    out = subprocess.run([sys.executable, "-m", "harness", "predict", str(sc)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "steps[0].do: unknown step 'teleport'" in out.stderr


def test_stalled_peer_and_board_connect_data_parse():
    sc = scenario({"at": "0s", "do": "board_connect", "port": 7, "data": "hello, board"}, peer="stalled")
    assert sc.peer == "stalled"
    assert sc.steps[0].args == {"port": 7, "data": "hello, board"}
    assert scenario({"at": 0, "do": "board_connect", "port": 7}).steps[0].args == {"port": 7}


def test_builtin_data_retransmit_is_a_stalled_peer_and_one_write():
    sc = load_scenario("data-retransmit")
    assert sc.peer == "stalled" and [s.do for s in sc.steps] == ["board_connect"]
    assert sc.steps[0].args["data"] and sc.end_ns >= 8_000_000_000


@pytest.mark.parametrize("top, step, message", [
    ({"peer": "stalld"}, {"at": 0, "do": "link_down"}, "s.yaml: peer: expected one of slirp, silent, stalled"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "data": 5}, "s.yaml: steps[0].data: expected printable ASCII"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "data": ""}, "s.yaml: steps[0].data: expected printable ASCII"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "data": "caf\u00e9"}, "steps[0].data: expected printable ASCII"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "data": "a\nb"}, "steps[0].data: expected printable ASCII"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "data": "x" * 257}, "steps[0].data: expected printable ASCII"),
    ({}, {"at": 0, "do": "connect", "port": 7, "data": "x"}, "s.yaml: steps[0].data: unknown field for connect"),
    ({}, {"at": 0, "do": "board_connect", "data": "x"}, "s.yaml: steps[0].port: expected an integer"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "shutdown": True}, "steps[0].shutdown: expected true or false, "
                                                                        "with data"),
    ({}, {"at": 0, "do": "board_connect", "port": 7, "data": "x", "shutdown": "yes"}, "steps[0].shutdown: expected"),
    ({}, {"at": 0, "do": "board_close"}, "s.yaml: steps[0].port: expected an integer"),
    ({"peer": "stalled"}, {"at": 0, "do": "peer_fin"}, "steps[0]: peer_fin is the closing peer's FIN: it needs "
                                                       "peer: closing"),
])
def test_bad_peer_or_data_is_named_with_file_step_and_field(top, step, message):
    with pytest.raises(ScenarioError) as info:
        scenario(step, **top)
    assert message in str(info.value)


def test_board_write_command_writes_the_data_exactly_and_keeps_stdin_open(tmp_path):
    """The console command's shell quoting survives quotes, %, $ and backslashes; its
    writer sleeps instead of closing stdin (no EOF, so nc sends no FIN)."""
    from harness.runner import BOARD_WRITE_HOLD_S, _board_write_command

    data = "it's 100% $HOME `id` \\n \"q\""
    cmd = _board_write_command("10.0.2.2", 7, data)
    nc = f"setsid nc -w {BOARD_WRITE_HOLD_S} 10.0.2.2 7 >/dev/null 2>&1 &"
    assert cmd.endswith(nc) and f"sleep {BOARD_WRITE_HOLD_S}" in cmd
    out = tmp_path / "written"
    local = cmd.replace(f"sleep {BOARD_WRITE_HOLD_S}", "sleep 0").replace(nc, f"cat > {out}")
    subprocess.run(["sh", "-c", local], check=True, timeout=10)
    assert out.read_text() == data


def test_board_write_shutdown_command_writes_the_data_then_ends_stdin_and_leaves_nc_pid(tmp_path):
    """printf ends, so nc sees EOF after the data (shutdown(SHUT_WR)); the subshell that
    execs nc writes its pid where board_close finds it."""
    from harness.runner import BOARD_WRITE_HOLD_S, _board_write_shutdown_command, _nc_pidfile

    data = "it's 100% $HOME `id` \\n \"q\""
    cmd = _board_write_shutdown_command("10.0.2.2", 7, data)
    assert f"exec nc -w {BOARD_WRITE_HOLD_S} 10.0.2.2 7" in cmd and _nc_pidfile(7) in cmd
    out, pidfile = tmp_path / "written", tmp_path / "pid"
    local = cmd.replace(f"nc -w {BOARD_WRITE_HOLD_S} 10.0.2.2 7", f"cat > {out}").replace(_nc_pidfile(7), str(pidfile))
    subprocess.run(["sh", "-c", local.removesuffix("&")], check=True, timeout=10)
    assert out.read_text() == data and pidfile.read_text().strip().isdigit()


def test_closing_peer_scenario_parses_with_shutdown_close_and_peer_fin():
    sc = load_scenario("fin-wait2-orphan")
    assert sc.peer == "closing" and [s.do for s in sc.steps] == ["board_connect", "board_close", "peer_fin"]
    assert sc.steps[0].args["shutdown"] is True and sc.steps[1].args == {"port": sc.steps[0].args["port"]}
    assert sc.tier == "ci" and sc.end_ns <= 15_000_000_000


# -- expect: what a scenario must provoke ----------------------------------------------------
@pytest.mark.parametrize("step, kinds", [
    ({"at": 0, "do": "connect", "service": "ssh"}, ("TCP_SYNACK",)),
    ({"at": 0, "do": "connect", "port": 81}, ("TCP_RST",)),
    ({"at": 0, "do": "link_down"}, ("LINK_DOWN",)),
    ({"at": 0, "do": "link_up"}, ("LINK_UP",)),
    ({"at": 0, "do": "watchdog_starve"}, ("QMP_RESET",)),
    ({"at": 0, "do": "reboot"}, ("RESTARTING", "QMP_RESET")),
    ({"at": 0, "do": "board_connect", "port": 9}, ("TCP_SYN",)),
    ({"at": 0, "do": "board_connect", "port": 7, "data": "x"}, ("TCP_SYN", "TCP_DATA")),
    ({"at": 0, "do": "board_connect", "port": 7, "data": "x", "shutdown": True}, ("TCP_SYN", "TCP_DATA", "TCP_FIN")),
    ({"at": 0, "do": "watchdog_start", "timeout": 5}, ()),
    ({"at": 0, "do": "watchdog_stop"}, ()),
])
def test_each_step_kind_has_its_default_expectation(step, kinds):
    assert tuple(k.name for k in scenario(step).expect) == kinds


def test_default_expect_is_the_union_of_the_steps_in_first_seen_order():
    from harness.ingest.events import EventKind as K

    sc = scenario({"at": "0s", "do": "connect", "service": "ssh"}, {"at": "1s", "do": "link_down"},
                  {"at": "2s", "do": "link_up"}, {"at": "3s", "do": "connect", "service": "http"},
                  {"at": "4s", "do": "connect", "port": 81})
    assert sc.expect == (K.TCP_SYNACK, K.LINK_DOWN, K.LINK_UP, K.TCP_RST)


def test_a_silent_peers_connect_expects_the_synack():
    from harness.ingest.events import EventKind as K

    assert scenario({"at": 0, "do": "connect", "service": "ssh"}, peer="silent").expect == (K.TCP_SYNACK,)


def test_explicit_expect_replaces_the_default_and_drops_repeats():
    from harness.ingest.events import EventKind as K

    sc = scenario({"at": 0, "do": "board_connect", "port": 9},
                  expect=["ARP_REQUEST", "TCP_SYN", "ARP_REQUEST"], peer="deaf")
    assert sc.expect == (K.ARP_REQUEST, K.TCP_SYN)


@pytest.mark.parametrize("expect, message", [
    (["TCP_SYNACK", "TCP_SYNAK"], "s.yaml: expect[1]: unknown event kind 'TCP_SYNAK'; known: TCP_SYN,"),
    (["tcp_synack"], "s.yaml: expect[0]: unknown event kind 'tcp_synack'"),
    ([2], "s.yaml: expect[0]: unknown event kind 2"),
    (["HOST_LINK_DOWN"], "s.yaml: expect[0]: HOST_LINK_DOWN is the harness's own record"),
    ("TCP_SYNACK", "s.yaml: expect: expected a non-empty list of event kinds"),
    ([], "s.yaml: expect: expected a non-empty list of event kinds"),
])
def test_bad_expect_is_named_with_file_field_and_value(expect, message):
    with pytest.raises(ScenarioError) as info:
        scenario({"at": 0, "do": "link_down"}, expect=expect)
    assert message in str(info.value)


def test_every_builtin_expects_something_and_each_names_a_board_event():
    from harness.ingest.events import EventKind as K
    from harness.scenario import builtin_scenarios

    for name in builtin_scenarios("all"):
        sc = load_scenario(name)
        assert sc.expect and all(k < K.HOST_POWER_ON for k in sc.expect), name


# -- tiers -------------------------------------------------------------------------------------
def test_tier_defaults_to_ci_and_a_bad_one_is_named():
    assert scenario({"at": 0, "do": "link_down"}).tier == "ci"
    assert scenario({"at": 0, "do": "link_down"}, tier="long").tier == "long"
    with pytest.raises(ScenarioError, match=r"^s\.yaml: tier: expected one of ci, long, got 'nightly'"):
        scenario({"at": 0, "do": "link_down"}, tier="nightly")


def test_builtin_scenarios_are_the_ci_tier_unless_all_are_asked_for():
    from harness.scenario import builtin_scenarios

    ci, long, every = builtin_scenarios(), builtin_scenarios("long"), builtin_scenarios("all")
    assert {"syn-giveup", "synack-giveup"} <= set(long) and not set(long) & set(ci)
    assert set(every) == set(ci) | set(long)
    assert all(load_scenario(p).tier == "ci" for p in ci.values())
    assert all(load_scenario(n).end_ns <= 30_000_000_000 for n in ci)   # minutes belong in the long tier
    with pytest.raises(ScenarioError, match="tier: expected one of ci, long or all"):
        builtin_scenarios("nightly")


def test_long_tier_scenarios_outlast_the_give_ups_they_are_about():
    """Linux 6.1: a SYN unanswered gives up at 127 s (tcp_syn_retries 6, the last
    retransmission at 63 s, level-3 timers up to 5.12 s late); a request sock at 63 s
    (tcp_synack_retries 5): each run must watch past the moment a seventh SYN or a sixth
    SYN-ACK retransmission would come."""
    syn, synack = load_scenario("syn-giveup"), load_scenario("synack-giveup")
    assert syn.peer == synack.peer == "silent"
    assert [s.do for s in syn.steps] == ["board_connect"] and syn.end_ns >= 127_000_000_000 + 5_120_000_000
    assert [s.do for s in synack.steps] == ["connect"] and synack.end_ns >= 63_000_000_000 + 5_000_000_000


def test_long_tier_synack_giveup_is_five_synack_retransmissions_and_nothing_at_63_s():
    from models.board import predict

    cfg = FirmwareConfig.default()
    sc = load_scenario("synack-giveup")
    inputs = model_inputs(sc, cfg)
    pred = predict(cfg, inputs, until=MODEL_SCENARIO_START_NS + sc.end_ns)
    t0 = inputs[0]["t"]
    synacks = [round((e.t - t0) / 1e9) for e in pred.events if e.kind == "frame" and e.detail.get("flags") == "S."]
    assert synacks == [0, 1, 3, 7, 15, 31]


# -- the deaf peer and arp-unanswered ---------------------------------------------------------
def test_deaf_peer_asks_for_the_board_once_before_the_first_step_and_never_answers():
    cfg = FirmwareConfig.default()
    sc = scenario({"at": "1s", "do": "connect", "service": "ssh"}, {"at": "2s", "do": "connect", "service": "ssh"},
                  peer="deaf")
    frames = [(i["t"], bytes.fromhex(i["hex"])) for i in model_inputs(sc, cfg)]
    (t_arp, arp), (_, syn1), (_, syn2) = frames
    assert t_arp < MODEL_SCENARIO_START_NS
    assert arp[:6] == b"\xff" * 6 and arp[12:14] == b"\x08\x06" and arp[20:22] == b"\x00\x01"
    assert arp[28:32] == bytes([10, 0, 2, 2]) and arp[38:42] == bytes([10, 0, 2, 15])
    assert all(f[12:14] == b"\x08\x00" and f[47] == 0x02 for f in (syn1, syn2))


def test_arp_unanswered_probes_the_stale_peer_then_broadcasts_mcast_solicit_requests():
    """The model's reading of the built-in: the SYNs of the connects at 0 and 2.5 s and
    their retransmissions up to 7 s go to the cached address (DELAY, then PROBE:
    neigh_timer_handler's unicast probes at 5, 6 and 7 s); the entry has FAILED by 9.5 s, so
    the second connect's retransmission waits for a new resolution: three broadcasts 1 s
    apart, then arp_error_report ends that connect and nothing more is sent."""
    from models.board import predict

    cfg = FirmwareConfig.default()
    sc = load_scenario("arp-unanswered")
    assert sc.peer == "deaf" and sc.tier == "ci" and [s.do for s in sc.steps] == ["board_connect"] * 2
    pred = predict(cfg, model_inputs(sc, cfg), until=MODEL_SCENARIO_START_NS + sc.end_ns)
    frames = [(round((e.t - MODEL_SCENARIO_START_NS) / 1e9, 1), e) for e in pred.events
              if e.kind == "frame" and e.t >= MODEL_SCENARIO_START_NS]
    syns = [(t, e.detail["dport"]) for t, e in frames if e.detail.get("flags") == "S"]
    assert syns == [(0, 9), (1, 9), (2.5, 13), (3, 9), (3.5, 13), (5.5, 13), (7, 9)]
    arps = [(t, e.frame[:6] == b"\xff" * 6) for t, e in frames if e.detail.get("proto") == "arp"]
    assert arps == [(5, False), (6, False), (7, False), (9.5, True), (10.5, True), (11.5, True)]
    assert len(frames) == len(syns) + len(arps)


def test_link_flap_phases_shows_a_two_second_poll_whatever_its_phase():
    """phylib at PHY_STATE_TIME (1 s) prints each Link line within a poll of its change; the
    oracle allows one poll plus the console tolerance. A kernel polling every 2 s (the
    period rounded up to the timer wheel's 8-jiffy granule: 2.00..2.08 s) must overrun that
    on some change of the built-in, for every phase of its polls."""
    from harness.oracle import Tolerance
    from models.phy import PHY_STATE_TIME

    sc = load_scenario("link-flap-phases")
    changes = [s.at_ns for s in sc.steps if s.do in ("link_down", "link_up")]
    allowed = PHY_STATE_TIME + Tolerance().console_ns
    margin = 150_000_000
    for period in range(2_000_000_000, 2_080_000_001, 10_000_000):
        for phase in range(0, period, 5_000_000):
            delays = [(phase - t) % period or period for t in changes]
            assert max(delays) > allowed + margin, (period, phase, delays)
    gaps = [b - a for a, b in zip(changes, changes[1:], strict=False)]
    assert min(gaps) > 2_080_000_000   # each state outlasts a 2 s poll: no change goes unseen


# -- ping: an ICMP echo request the harness makes from the declared config -------------------
def ping(**args):
    return scenario({"at": 0, "do": "ping", **args}, peer="silent").steps[0]


def parsed_echo(frame: bytes):
    from models.wire import EthernetRepr, Ipv4Repr
    from models.wire.icmp import IcmpRepr

    eth, payload = EthernetRepr.parse(frame)
    ip, data = Ipv4Repr.parse(payload)
    return eth, ip, IcmpRepr.parse(data)


@pytest.mark.parametrize("args, src, dst, eth_dst", [
    ({}, "10.0.2.2", "10.0.2.15", "52:54:00:12:34:56"),
    ({"to": "board"}, "10.0.2.2", "10.0.2.15", "52:54:00:12:34:56"),
    ({"to": "subnet-broadcast"}, "10.0.2.2", "10.0.2.255", "ff:ff:ff:ff:ff:ff"),
    ({"to": "limited-broadcast"}, "10.0.2.2", "255.255.255.255", "ff:ff:ff:ff:ff:ff"),
    ({"from": "10.0.3.7"}, "10.0.3.7", "10.0.2.15", "52:54:00:12:34:56"),
])
def test_ping_is_an_echo_request_from_the_peers_mac_addressed_from_the_declared_config(args, src, dst, eth_dst):
    from harness.scenario import PEER_MAC, ping_frame
    from models.wire import ip4_str, mac_str
    from models.wire.icmp import ICMP_ECHO

    eth, ip, icmp = parsed_echo(ping_frame(FirmwareConfig.default(), ping(**args), 3))
    assert (mac_str(eth.src), mac_str(eth.dst)) == (PEER_MAC, eth_dst)
    assert (ip4_str(ip.src), ip4_str(ip.dst), ip.ttl, ip.df, ip.tos) == (src, dst, 64, True, 0)
    assert (icmp.type, icmp.code, icmp.ident, icmp.sequence, len(icmp.data)) == (ICMP_ECHO, 0, 4, 1, 56)


def test_ping_follows_any_declared_address_and_mac():
    from harness.scenario import ping_frame
    from models.wire import ip4_str, mac_str

    cfg = FirmwareConfig.from_dict({"interface": {"address": "192.168.7.20/26", "gateway": "192.168.7.1",
                                                  "mac": "02:00:00:00:00:07"}})
    eth, ip, _ = parsed_echo(ping_frame(cfg, ping(), 0))
    assert (mac_str(eth.dst), ip4_str(ip.src), ip4_str(ip.dst)) == ("02:00:00:00:00:07", "192.168.7.1", "192.168.7.20")
    _, ip, _ = parsed_echo(ping_frame(cfg, ping(to="subnet-broadcast"), 0))
    assert ip4_str(ip.dst) == "192.168.7.63"


def test_ping_id_seq_and_size_are_the_echos():
    from harness.scenario import ping_frame

    _, _, icmp = parsed_echo(ping_frame(FirmwareConfig.default(), ping(id=7, seq=300, size=0), 0))
    assert (icmp.ident, icmp.sequence, icmp.data) == (7, 300, b"")
    _, _, icmp = parsed_echo(ping_frame(FirmwareConfig.default(), ping(size=1472), 0))
    assert len(icmp.data) == 1472


@pytest.mark.parametrize("args, message", [
    ({"to": "everyone"}, "steps[0].to: expected one of board, subnet-broadcast, limited-broadcast"),
    ({"from": "10.0.3"}, "steps[0].from: expected peer or an IPv4 address"),
    ({"from": 7}, "steps[0].from: expected peer or an IPv4 address"),
    ({"from": "224.0.0.1"}, "steps[0].from: 224.0.0.1 is a martian source"),
    ({"from": "255.255.255.255"}, "is a martian source"),
    ({"from": "0.1.2.3"}, "is a martian source"),
    ({"from": "127.0.0.1"}, "is a martian source"),
    ({"id": 65536}, "steps[0].id: expected an integer in 0..65535"),
    ({"seq": -1}, "steps[0].seq: expected an integer in 0..65535"),
    ({"size": 1473}, "steps[0].size: expected an integer in 0..1472"),
    ({"size": True}, "steps[0].size: expected an integer"),
    ({"port": 1}, "steps[0].port: unknown field for ping"),
])
def test_bad_ping_is_named_with_file_step_and_field(args, message):
    with pytest.raises(ScenarioError) as info:
        ping(**args)
    assert str(info.value).startswith("s.yaml: ") and message in str(info.value)


def test_ping_needs_a_peer_on_the_harnesss_wire():
    with pytest.raises(ScenarioError, match=r"s\.yaml: steps\[0\]: a ping .* needs peer: silent, stalled, deaf"):
        scenario({"at": 0, "do": "ping"})
    assert scenario({"at": 0, "do": "ping"}, peer="deaf").steps[0].do == "ping"


def test_ping_from_the_boards_own_or_broadcast_address_or_to_a_subnet_without_broadcast_is_refused():
    from harness.scenario import ping_frame

    with pytest.raises(ScenarioError, match="from: 10.0.2.15 is the board's own address"):
        ping_frame(FirmwareConfig.default(), ping(**{"from": "10.0.2.15"}), 0)
    with pytest.raises(ScenarioError, match="from: 10.0.2.255 is the declared subnet's broadcast address"):
        ping_frame(FirmwareConfig.default(), ping(**{"from": "10.0.2.255"}), 0)
    cfg = FirmwareConfig.from_dict({"interface": {"address": "10.0.2.15/31", "gateway": "10.0.2.14",
                                                  "mac": "52:54:00:12:34:56"}})
    with pytest.raises(ScenarioError, match="a /31 has no broadcast address"):
        ping_frame(cfg, ping(to="subnet-broadcast"), 0)


@pytest.mark.parametrize("to, kinds", [("board", ("ICMP_ECHO_REPLY",)), ("subnet-broadcast", ()),
                                       ("limited-broadcast", ())])
def test_a_ping_expects_a_reply_only_from_the_boards_own_address(to, kinds):
    sc = scenario({"at": 0, "do": "ping", "to": to}, {"at": 1, "do": "link_down"}, peer="silent")
    assert tuple(k.name for k in sc.expect) == (*kinds, "LINK_DOWN")


def test_ping_inputs_are_the_echo_then_the_peers_arp_reply_where_the_reply_goes_to_the_peer():
    from harness.scenario import peer_ip_str, ping_reply_next_hop

    cfg = FirmwareConfig.default()
    sc = scenario({"at": "0s", "do": "ping"}, {"at": "1s", "do": "ping", "to": "subnet-broadcast"},
                  {"at": "2s", "do": "ping", "from": "10.0.3.7"}, peer="silent")
    assert [ping_reply_next_hop(cfg, s) for s in sc.steps] == ["10.0.2.2", None, "10.0.2.2"]
    assert peer_ip_str(cfg) == "10.0.2.2"
    kinds = [(i["t"] - MODEL_SCENARIO_START_NS, bytes.fromhex(i["hex"])[12:14]) for i in model_inputs(sc, cfg)]
    ip, arp = b"\x08\x00", b"\x08\x06"
    assert kinds == [(1_000_000, ip), (2_000_000, arp), (1_001_000_000, ip), (2_001_000_000, ip),
                     (2_002_000_000, arp)]


def test_builtin_icmp_echo_predicts_a_reply_to_the_board_and_via_the_gateway_and_none_to_broadcasts():
    from models.board import predict

    cfg = FirmwareConfig.default()
    sc = load_scenario("icmp-echo")
    assert sc.peer == "silent" and sc.tier == "ci" and sc.end_ns <= 15_000_000_000
    assert [s.args.get("to", "board") for s in sc.steps] == ["board", "board", "subnet-broadcast",
                                                             "limited-broadcast", "board"]
    pred = predict(cfg, model_inputs(sc, cfg), until=MODEL_SCENARIO_START_NS + sc.end_ns)
    frames = [e.detail for e in pred.events if e.kind == "frame" and e.t >= MODEL_SCENARIO_START_NS]
    replies = [(d["dst_ip"], d["dst"]) for d in frames if d.get("proto") == 1]
    assert replies == [("10.0.2.2", "52:55:0a:00:02:02"), ("10.0.2.2", "52:55:0a:00:02:02"),
                       ("10.0.3.7", "52:55:0a:00:02:02")]
    assert [d["tip"] for d in frames if d.get("proto") == "arp"] == ["10.0.2.2"]
