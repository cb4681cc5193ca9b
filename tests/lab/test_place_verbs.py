"""Which of a place's resources each board verb uses (`map_place`)."""

from __future__ import annotations

import pytest

from harness.board.labgrid import PlaceError, PlaceResource, map_place
from models.config import FirmwareConfig

DECLARED = FirmwareConfig.default()      # services ssh (22) and http (80)


def res(name: str, cls: str, **args) -> PlaceResource:
    return PlaceResource(name, cls, args, {"proxy_required": False}, True, f"lab/g/{cls}/{name}")


def lab_board() -> list[PlaceResource]:
    return [res("ttyUSB0", "NetworkSerialPort", host="192.0.2.1", port=3000),
            res("pdu3", "NetworkPowerPort", model="gude", host="192.0.2.2", index=3),
            res("bmc", "NetworkService", address="192.0.2.10", username="root")]


def bench() -> list[PlaceResource]:
    return [res("console", "NetworkSerialPort", host="127.0.0.1", port=4000, protocol="raw"),
            res("capture", "NetworkSerialPort", host="127.0.0.1", port=4001, protocol="raw"),
            res("power", "NetworkPowerPort", model="simplerest", host="http://127.0.0.1:4002/power/{index}/{value}",
                index=0),
            res("link", "HttpDigitalOutput", url="http://127.0.0.1:4002/link", body_asserted="1",
                body_deasserted="0"),
            res("ssh", "NetworkService", address="127.0.0.1", port=4003, username="root", password="pw"),
            res("http", "NetworkService", address="127.0.0.1", port=4004, username="root"),
            res("port81", "NetworkService", address="127.0.0.1", port=4005, username="root"),
            res("debug", "NetworkService", address="127.0.0.1", port=4006, username="root")]


def test_a_lab_board_is_reached_at_its_own_address_over_rfc2217_and_its_pdu():
    verbs = map_place("lab-bmc-3", lab_board(), DECLARED)
    assert verbs.console_url == "rfc2217://192.0.2.1:3000" and verbs.baudrate == 115200
    assert verbs.power.name == "pdu3" and verbs.link is None and verbs.tap is None
    assert verbs.ssh.name == "bmc" and verbs.forwards == {}


def test_a_bench_is_forwarded_on_loopback_with_a_tap_and_a_link():
    verbs = map_place("bench0", bench(), DECLARED)
    assert verbs.console_url == "socket://127.0.0.1:4000" and verbs.tap == ("127.0.0.1", 4001)
    assert (verbs.power.name, verbs.link.name, verbs.ssh.name) == ("power", "link", "ssh")
    assert verbs.forwards == {"ssh": (22, 4003), "http": (80, 4004), "port81": (81, 4005)}


@pytest.mark.parametrize("change, words", [
    (lambda rs: rs + [res("ttyUSB1", "NetworkSerialPort", host="192.0.2.1", port=3001)],
     "2 resources for a console (NetworkSerialPort) (ttyUSB0, ttyUSB1): name one of them 'console'"),
    (lambda rs: [r for r in rs if r.cls != "NetworkService"], "has no SSH (a NetworkService)"),
    (lambda rs: rs + [res("link", "SysfsGPIO", index=3)], "link is a SysfsGPIO"),
    (lambda rs: [r if r.name != "ttyUSB0" else PlaceResource(r.name, r.cls, {**r.args, "protocol": "ssh"})
                 for r in rs], "console protocol 'ssh'"),
    (lambda rs: [r if r.name != "pdu3" else PlaceResource(r.name, r.cls, r.args, avail=False) for r in rs],
     "its exporter says pdu3 not available"),
])
def test_what_a_place_lacks_or_leaves_open_is_named(change, words):
    with pytest.raises(PlaceError, match="place lab-bmc-3") as info:
        map_place("lab-bmc-3", change(lab_board()), DECLARED)
    assert words in str(info.value)


def test_a_forward_off_loopback_beside_a_loopback_ssh_is_refused():
    resources = [r if r.name != "http" else res("http", "NetworkService", address="192.0.2.10", port=80,
                                                 username="root") for r in bench()]
    with pytest.raises(PlaceError, match="forwards the board's http on 192.0.2.10"):
        map_place("bench0", resources, DECLARED)
