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
