"""Board files: every bad field is named with its file."""

from __future__ import annotations

import pytest

from harness.board.boardfile import load_board_file, parse_board
from harness.errors import BoardFileError

FIRMWARE = {"interface": {"address": "192.0.2.10/24", "gateway": "192.0.2.1", "mac": "02:00:00:00:00:01"}}


def real(**over):
    data = {"name": "lab", "kind": "real", "console": {"url": "/dev/ttyUSB0"},
            "ssh": {"host": "192.0.2.10", "password": "pw"}, "firmware": FIRMWARE}
    data.update(over)
    return data


def test_a_complete_real_board_file_parses():
    spec = parse_board(real(link={"down": ["pdu", "{name}", "off"], "up": ["pdu", "{name}", "on"]}), "b.yaml")
    assert spec.kind == "real" and spec.console_url == "/dev/ttyUSB0"
    assert spec.ssh.known_hosts == "strict"
    assert spec.link_commands["down"] == ["pdu", "{name}", "off"]
    assert str(spec.firmware.interface.address) == "192.0.2.10/24"


@pytest.mark.parametrize("data, field, expected", [
    (real(console=None) | {"console": {}}, "console.url", "missing"),
    ({k: v for k, v in real().items() if k != "ssh"}, "ssh", "missing"),
    (real(colour="blue"), "colour", "unknown field"),
    (real(console={"url": "/dev/ttyUSB0", "baudrate": "fast"}), "console.baudrate", "expected an integer"),
    (real(console={"url": "ttyUSB0"}), "console.url", "pyserial URL"),
    (real(ssh={"host": "h", "password": "p", "known_hosts": "yes"}), "ssh.known_hosts", "strict or auto-accept"),
    (real(ssh={"host": "h"}), "ssh", "password or a key_file"),
    (real(ssh={"host": "h", "password": "p", "port": 70000}), "ssh.port", "1..65535"),
    (real(link={"down": "pdu port3 off"}), "link.down", "not a shell string"),
    (real(link={"down": ["pdu", "{port}"]}), "link.down", "unknown placeholder {port}"),
    (real(power={"cycle": ["x"]}), "power.cycle", "unknown field"),
    (real(machine="ast2500-evb"), "machine", "only for emulated"),
    (real(firmware={"interface": {"address": "192.0.2.10/24", "mac": "zz"}}), "interface.mac", "expected a MAC"),
    ({"kind": "emulated", "machine": "ast2600-evb"}, "machine", "ast2500-evb or romulus-bmc"),
    ({"kind": "emulated", "console": {"url": "/dev/x"}}, "console", "not used by an emulated board"),
    ({"kind": "virtual"}, "kind", "'real', 'emulated' or 'model'"),
])
def test_bad_field_is_named_with_the_file(data, field, expected):
    with pytest.raises(BoardFileError) as info:
        parse_board(data, "boards/lab.yaml")
    msg = str(info.value)
    assert msg.startswith("boards/lab.yaml: ") or "boards/lab.yaml" in msg
    assert field in msg and expected in msg


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("name: lab\nkind: real\nconsole: {url: /dev/ttyUSB0\n")
    with pytest.raises(BoardFileError, match=r"b\.yaml: line \d+"):
        load_board_file(path)


def test_missing_board_file_is_a_clear_error(tmp_path):
    with pytest.raises(BoardFileError, match="cannot read board file"):
        load_board_file(tmp_path / "nope.yaml")


def test_firmware_file_is_read_relative_to_the_board_file(tmp_path):
    (tmp_path / "fw.yaml").write_text("interface: {address: 192.0.2.10/24, mac: '02:00:00:00:00:01', mtu: 1400}\n")
    (tmp_path / "b.yaml").write_text("kind: emulated\nfirmware: fw.yaml\n")
    spec = load_board_file(tmp_path / "b.yaml")
    assert spec.firmware.interface.mtu == 1400 and spec.image_config == spec.firmware


def test_bad_field_in_a_referenced_firmware_file_names_that_file(tmp_path):
    (tmp_path / "fw.yaml").write_text("interface: {address: 192.0.2.10/24, mac: '02:00:00:00:00:01', mtu: 20}\n")
    (tmp_path / "b.yaml").write_text("kind: emulated\nfirmware: fw.yaml\n")
    with pytest.raises(BoardFileError, match=r"fw\.yaml: interface\.mtu: expected an integer in 68\.\.1500"):
        load_board_file(tmp_path / "b.yaml")


def test_emulated_image_may_differ_from_the_declared_firmware():
    spec = parse_board({"kind": "emulated", "image": {**FIRMWARE, "services": {"http": False}}}, "b.yaml")
    assert spec.firmware.service("http") is not None and spec.firmware.service("http").enabled
    assert not spec.image_config.service("http").enabled


def test_ssh_password_is_not_in_the_spec_repr():
    spec = parse_board(real(ssh={"host": "h", "password": "hunter2"}), "b.yaml")
    assert "hunter2" not in repr(spec.ssh) and "hunter2" not in repr(spec)
