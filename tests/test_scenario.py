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
