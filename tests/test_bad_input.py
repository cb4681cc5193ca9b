"""Bad input in the files users write (board files, firmware configs, scenarios): never a
silent pass, never a traceback. Each is refused with one error that names the file, the
field, what was written and what is allowed; the CLI prints it on one line and exits 2."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness.yamlfile as yamlfile
from harness.board.boardfile import load_board_file, load_firmware_config, parse_board
from harness.errors import BoardFileError, HarnessError, ImageBuildError
from harness.image.initramfs import render_init
from harness.scenario import (
    MODEL_SCENARIO_START_NS,
    SCENARIO_TIME_MAX_NS,
    STEPS_MAX,
    ScenarioError,
    load_scenario,
    model_inputs,
    parse_scenario,
)
from models.config import DEFAULT_CONFIG, SYSCTL_BOUNDS, SYSCTL_DEFAULTS, ConfigError, FirmwareConfig

README = Path(__file__).resolve().parents[1] / "README.md"
IFACE = DEFAULT_CONFIG["interface"]


def cfg(**over) -> FirmwareConfig:
    return FirmwareConfig.from_dict({**DEFAULT_CONFIG, **over}, source="fw.yaml")


def iface(**over) -> dict:
    return {"interface": {**IFACE, **over}}


def refused(call, error=HarnessError) -> str:
    with pytest.raises(error) as info:
        call()
    return str(info.value)


def scenario(*steps, **top):
    return parse_scenario({"name": "t", "steps": list(steps), **top}, "s.yaml")


def real(**over) -> dict:
    data = {"kind": "real", "console": {"url": "/dev/ttyUSB0"}, "ssh": {"host": "192.0.2.10", "password": "pw"},
            "firmware": {"interface": {"address": "192.0.2.10/24", "mac": "02:00:00:00:00:01"}}}
    return data | over


# -- reading the file ------------------------------------------------------------------------
@pytest.mark.parametrize("load, error, what", [
    (load_board_file, BoardFileError, "board file"),
    (load_firmware_config, BoardFileError, "firmware config"),
    (load_scenario, ScenarioError, "scenario"),
])
def test_a_file_that_is_not_utf8_is_named_with_the_line_and_byte(tmp_path, load, error, what):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"name: lab\ndescription: caf\xe9\n")
    msg = refused(lambda: load(path), error)
    assert msg == f"{path}: line 2, column 17: not UTF-8 text (byte 0xe9); save the {what} as UTF-8"


def test_a_character_yaml_refuses_is_named_with_its_line(tmp_path):
    (tmp_path / "b.yaml").write_text("kind: model\nname: a\x00b\n")
    assert "b.yaml: line 2, column 8: not valid YAML: the character #x0000 is not allowed" in \
        refused(lambda: load_board_file(tmp_path / "b.yaml"), BoardFileError)


def test_nesting_too_deep_for_the_parser_is_an_error_not_a_recursion_traceback(tmp_path):
    (tmp_path / "s.yaml").write_text("steps: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "s.yaml: not valid YAML: nested too deeply" in refused(lambda: load_scenario(tmp_path / "s.yaml"))


def test_a_file_larger_than_any_hand_written_one_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 64)
    (tmp_path / "s.yaml").write_text("name: x\n" * 20)
    assert "s.yaml: cannot read scenario: larger than" in refused(lambda: load_scenario(tmp_path / "s.yaml"))


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    (tmp_path / "b.yaml").write_text("kind: model\nseed: 1\nname: x\nseed: 2\n")
    msg = refused(lambda: load_board_file(tmp_path / "b.yaml"), BoardFileError)
    assert "b.yaml: line 4, column 1: not valid YAML" in msg and "'seed' twice (first on line 2)" in msg


# -- YAML 1.1's surprises: values mean what a person wrote ---------------------------------
def test_on_off_yes_no_are_text_and_only_true_false_are_booleans():
    data = yamlfile.parse_yaml("power: {on: [pdu, on], off: [pdu, off]}\na: [yes, no, On, y, n]\nb: [true, False]\n")
    assert data == {"power": {"on": ["pdu", "on"], "off": ["pdu", "off"]},
                    "a": ["yes", "no", "On", "y", "n"], "b": [True, False]}


def test_no_base_60_no_octal_without_0o_and_no_dates():
    data = yamlfile.parse_yaml("mac: 52:54:00:12:34:56\nat: 1:30\nn: 017\no: 0o17\nx: 0x1f\nd: 2024-01-02\n"
                               "u: 1_000\nf: 1.5\ne: 1e3\n")
    assert data == {"mac": "52:54:00:12:34:56", "at": "1:30", "n": 17, "o": 15, "x": 31, "d": "2024-01-02",
                    "u": "1_000", "f": 1.5, "e": 1000.0}


@pytest.mark.parametrize("text, words", [
    ("a: !!python/object:os.system x\n", "could not determine a constructor"),
    ("a: !!binary aGVsbG8=\n", "could not determine a constructor"),
    ("a: !!bool yes\n", "expected true or false, got 'yes'"),
    ("a: !!int 0b101\n", "not an integer YAML 1.2 reads"),
    ("a: " + "9" * 5000 + "\n", "an integer of 5000 digits is too long"),
])
def test_tags_outside_the_core_schema_are_refused_with_their_place(tmp_path, text, words):
    (tmp_path / "s.yaml").write_text(text)
    msg = refused(lambda: load_scenario(tmp_path / "s.yaml"), ScenarioError)
    assert "s.yaml: line 1, column 4: not valid YAML" in msg and words in msg


def test_an_unquoted_mac_is_read_as_the_mac_written(tmp_path):
    (tmp_path / "fw.yaml").write_text("interface: {address: 10.0.2.15/24, mac: 52:54:00:12:34:56}\n")
    assert load_firmware_config(tmp_path / "fw.yaml").interface.mac == "52:54:00:12:34:56"


def test_a_mac_that_arrives_as_a_number_says_to_quote_it():
    msg = refused(lambda: cfg(**iface(mac=52 * 60**5 + 54 * 60**4 + 12 * 60**2 + 34 * 60 + 56)), ConfigError)
    assert msg.startswith("fw.yaml: interface.mac: got the number") and "write it quoted" in msg


def test_power_on_and_off_keys_of_a_board_file_are_the_verbs_written(tmp_path):
    (tmp_path / "b.yaml").write_text(
        "kind: real\nconsole: {url: /dev/ttyUSB0}\nssh: {host: h, password: p}\n"
        "firmware: {interface: {address: 192.0.2.10/24, mac: 02:00:00:00:00:01}}\n"
        "power: {on: [pdu, port3, on], off: [pdu, port3, off]}\nlink: {down: [pdu, no], up: [pdu, yes]}\n")
    spec = load_board_file(tmp_path / "b.yaml")
    assert spec.power_commands == {"on": ["pdu", "port3", "on"], "off": ["pdu", "port3", "off"]}
    assert spec.link_commands == {"down": ["pdu", "no"], "up": ["pdu", "yes"]}


@pytest.mark.parametrize("arg, shown", [(True, "'true'"), (3, "'3'"), (1.5, "'1.5'"), (None, "'null'")])
def test_a_command_argument_that_is_not_a_string_says_to_quote_it(arg, shown):
    msg = refused(lambda: parse_board(real(power={"on": ["pdu", arg]}), "b.yaml"), BoardFileError)
    assert msg.startswith("b.yaml: power.on[1]: expected a string") and f"write it quoted ({shown})" in msg


@pytest.mark.parametrize("text, words", [
    ("watchdog: {daemon: yes}", "watchdog.daemon: expected bool, got str 'yes' (write true or false"),
    ("services: {http: no}", "services.http: got the text 'no': write false to leave the service out"),
])
def test_a_yaml_1_1_boolean_is_refused_not_read_as_true_or_false(text, words):
    assert words in refused(lambda: FirmwareConfig.from_dict(yamlfile.parse_yaml(
        f"interface: {{address: 10.0.2.15/24, mac: 52:54:00:12:34:56}}\n{text}\n"), "fw.yaml"), ConfigError)


def _readme_yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_every_yaml_example_in_the_readme_loads_as_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))   # the example's key_file: ~/.ssh/bmc
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "bmc").write_text("key\n")
    blocks = [yamlfile.parse_yaml(text) for text in _readme_yaml_blocks()]
    configs = [b for b in blocks if "interface" in b]
    scenarios = [b for b in blocks if "steps" in b]
    boards = [b for b in blocks if b not in configs and b not in scenarios]
    assert configs and boards, "README.md lost its board file or firmware config example"
    for i, data in enumerate(configs):
        FirmwareConfig.from_dict(data, source=f"README.md config example {i}")
    for i, data in enumerate(scenarios):
        parse_scenario(data, f"README.md scenario example {i}")
    config_text = _readme_yaml_blocks()[blocks.index(configs[0])]
    for data in boards:
        for key in ("firmware", "image"):   # the config files a board example names: the config example
            if isinstance(data.get(key), str):
                (tmp_path / data[key]).write_text(config_text)
        spec = parse_board(data, "README.md board example", base=tmp_path)
        commands = {**spec.power_commands, **spec.link_commands}
        assert all(isinstance(a, str) for argv in commands.values() for a in argv)
        assert set(spec.power_commands) <= {"on", "off", "reset"} and set(spec.link_commands) <= {"down", "up"}
        if "power" in data:
            assert spec.power_commands == {"on": ["pdu", "port3", "on"], "off": ["pdu", "port3", "off"]}


# -- scenario times and counts --------------------------------------------------------------
@pytest.mark.parametrize("at, words", [
    (float("nan"), "steps[0].at: expected a finite duration"),
    (float("inf"), "steps[0].at: expected a finite duration"),
    (float("-inf"), "steps[0].at: expected a finite duration"),
    (1e300, "steps[0].at: 1e+300 is longer than 86400 s"),
    ("99999999999999999999s", "steps[0].at: '99999999999999999999s' is longer than 86400 s"),
    ("9" * 1000 + "ms", "is longer than 86400 s"),
    ("1441min", "steps[0].at: '1441min' is longer than 86400 s"),
    ("1:30", "steps[0].at: expected a duration like 1.5s"),
    ([1], "steps[0].at: expected a duration like 1.5s"),
])
def test_a_step_time_that_is_not_finite_or_longer_than_a_day_is_refused(at, words):
    assert words in refused(lambda: scenario({"at": at, "do": "link_down"}), ScenarioError)


def test_a_day_is_the_longest_a_scenario_may_last_counting_its_last_step():
    assert scenario({"at": "1440min", "do": "link_down"}, duration=0).end_ns == SCENARIO_TIME_MAX_NS
    msg = refused(lambda: scenario({"at": "1380min", "do": "link_down"}, duration="61min"))
    assert msg.startswith("s.yaml: duration: the scenario would end 86460 s after it starts")


def test_the_longest_scenario_predicts_in_bounded_time():
    from models.board import predict

    config = FirmwareConfig.default()
    sc = scenario({"at": 0, "do": "connect", "service": "ssh"}, {"at": 1, "do": "link_down"},
                  {"at": 3, "do": "link_up"}, duration=SCENARIO_TIME_MAX_NS / 1e9 - 3)
    start = time.monotonic()
    predict(config, model_inputs(sc, config), until=MODEL_SCENARIO_START_NS + sc.end_ns)
    assert time.monotonic() - start < 60


def test_more_steps_than_a_scenario_may_have_are_refused():
    steps = [{"at": i, "do": "link_down"} for i in range(STEPS_MAX + 1)]
    assert f"s.yaml: steps: {STEPS_MAX + 1} steps, more than the {STEPS_MAX}" in refused(lambda: scenario(*steps))


def test_unknown_keys_of_mixed_types_are_named_not_sorted_into_a_traceback():
    assert "s.yaml: 1: unknown field" in refused(lambda: scenario({"at": 0, "do": "link_down"}, **{"1": 0}))
    assert "s.yaml: 1: unknown field" in refused(lambda: parse_scenario({1: 0, "zz": 0, "steps": []}, "s.yaml"))
    assert "steps[0].1: unknown field for link_down" in \
        refused(lambda: scenario({"at": 0, "do": "link_down", 1: 0, "zz": 0}))


@pytest.mark.parametrize("step, words", [
    ({"at": 0, "do": ["link_down"]}, "steps[0].do: unknown step ['link_down']"),
    ({"at": 0, "do": {"x": 1}}, "steps[0].do: unknown step"),
    ({"at": 0, "do": "frame", "hex": "ff" * 1537}, "steps[0].hex: expected an Ethernet frame as hex (14..1536 bytes)"),
    ({"at": 0, "do": "frame", "hex": "ff" * 13}, "steps[0].hex: expected an Ethernet frame as hex (14..1536 bytes)"),
    ({"at": 0, "do": "watchdog_start", "timeout": 4295}, "steps[0].timeout: expected an integer in 1..4294"),
    ({"at": 0, "do": "connect", "port": 65536}, "steps[0].port: expected an integer in 1..65535"),
    ({"at": 0, "do": "board_connect", "port": 0}, "steps[0].port: expected an integer in 1..65535"),
])
def test_a_bad_step_value_is_named(step, words):
    assert words in refused(lambda: scenario(step), ScenarioError)


def test_a_frame_of_the_largest_size_the_mac_receives_is_taken():
    assert scenario({"at": 0, "do": "frame", "hex": "ff" * 1536}).steps[0].args["hex"] == "ff" * 1536


# -- firmware config: Linux 6.1's own bounds ------------------------------------------------
def test_every_integer_sysctl_has_linuxs_bound_and_its_default_is_inside():
    ints = {name for name, value in SYSCTL_DEFAULTS.items() if isinstance(value, int)}
    assert ints == set(SYSCTL_BOUNDS)
    for name in ints:
        bound = SYSCTL_BOUNDS[name]
        assert bound.low <= SYSCTL_DEFAULTS[name] <= bound.high and bound.handler, name


# Read off linux-source-6.1 (the ctl_table entries), independently of SYSCTL_BOUNDS.
@pytest.mark.parametrize("name, low, high", [
    ("net.ipv4.ip_default_ttl", 1, 255),             # ip_ttl_min..ip_ttl_max
    ("net.ipv4.tcp_syn_retries", 1, 127),            # tcp_syn_retries_min..MAX_TCP_SYNCNT
    ("net.ipv4.tcp_synack_retries", 0, 255),         # proc_dou8vec_minmax: a u8
    ("net.ipv4.tcp_retries2", 0, 255),
    ("net.ipv4.tcp_keepalive_probes", 0, 255),
    ("net.ipv4.tcp_early_retrans", 0, 4),
    ("net.ipv4.tcp_adv_win_scale", -31, 31),
    ("net.ipv4.tcp_fin_timeout", 0, 21474836),       # proc_dointvec_jiffies: INT_MAX / HZ (100)
    ("net.ipv4.neigh.default.delay_first_probe_time", 0, 21474836),
    ("net.ipv4.neigh.default.mcast_solicit", 0, 2**31 - 1),
    ("net.core.rmem_max", 2240, 2**31 - 1),
])
def test_a_sysctl_is_taken_inside_linuxs_bounds_and_refused_outside(name, low, high):
    assert cfg(sysctls={name: low}).sysctl(name) == low and cfg(sysctls={name: high}).sysctl(name) == high
    for bad in (low - 1, high + 1):
        msg = refused(lambda bad=bad: cfg(sysctls={name: bad}), ConfigError)
        assert msg.startswith(f"fw.yaml: sysctls.{name}: expected an integer in {low}..{high} (Linux 6.1: ")
        assert msg.endswith(f"got {bad}")


@pytest.mark.parametrize("value", ["1023 2000", "2000 1999", "0 100", "1024 65536", "1024", "a b", "١٠٢٤ ٢٠٠٠"])
def test_ip_local_port_range_follows_ipv4_local_port_range(value):
    msg = refused(lambda: cfg(sysctls={"net.ipv4.ip_local_port_range": value}), ConfigError)
    assert "1024 <= LOW <= HIGH <= 65535" in msg and repr(value) in msg


def test_ip_local_port_range_of_one_unprivileged_port_is_taken():
    assert cfg(sysctls={"net.ipv4.ip_local_port_range": "1024 1024"}).sysctl("net.ipv4.ip_local_port_range") \
        == "1024 1024"


@pytest.mark.parametrize("over, field, words", [
    (iface(mac="00:00:00:00:00:00"), "interface.mac", "is_valid_ether_addr"),
    (iface(mtu=1501), "interface.mtu", "68..1500"),
    (iface(mtu=67), "interface.mtu", "68..1500"),
    ({"watchdog": {"timeout": 4295}}, "watchdog.timeout", "1..4294"),
    ({"watchdog": {"timeout": 0}}, "watchdog.timeout", "1..4294"),
    ({"watchdog": {"period": 4295}}, "watchdog.period", "1..4294"),
    ({"services": {"ssh": {"port": 0}}}, "services.ssh.port", "1..65535"),
    ({"services": {"http": {"port": 65536}}}, "services.http.port", "1..65535"),
    ({"hostname": 1234}, "hostname", "write it quoted"),
])
def test_mac_mtu_watchdog_and_ports_are_bounded(over, field, words):
    msg = refused(lambda: cfg(**over), ConfigError)
    assert msg.startswith(f"fw.yaml: {field}: ") and words in msg


@pytest.mark.parametrize("name", ["eth0", "lan-1", "a" * 15, "eth0.5", "$(reboot)", "x'y", "é" * 7])
def test_an_interface_name_linux_takes_is_taken(name):
    assert cfg(**iface(name=name)).interface.name == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "eth:0", "a b", "a\tb", "a\nb", "a" * 16, "é" * 8,
                                  "a\u00a0b", "a\0b", "$(touch /tmp/x)"])
def test_an_interface_name_dev_valid_name_refuses_is_refused(name):
    msg = refused(lambda: cfg(**iface(name=name)), ConfigError)
    assert msg.startswith("fw.yaml: interface.name: not an interface name Linux takes (dev_valid_name")


# -- the generated /init ---------------------------------------------------------------------
def _odd_config() -> FirmwareConfig:
    return cfg(interface={**IFACE, "name": "$(x);`y`|'&", "mtu": 68},
               routes=[{"destination": "192.168.7.0/24", "gateway": "10.0.2.3", "metric": 7}],
               sysctls={"net.ipv4.neigh.default.mcast_solicit": 4, "net.ipv4.ip_local_port_range": "2000 3000",
                        "net.ipv4.tcp_rmem": "4096 8192 16384"},
               services={"ssh": {"port": 2222}, "http": {"port": 8080}},
               watchdog={"timeout": 9, "daemon": True, "period": 2})


def test_every_config_value_in_the_init_script_is_one_shell_word():
    config = _odd_config()
    name = config.interface.name
    script = render_init(config)
    words = [shlex.split(line) for line in script.splitlines() if not line.startswith("#")]
    assert ["ip", "link", "set", name, "up"] in words
    assert ["ip", "route", "add", "192.168.7.0/24", "via", "10.0.2.3", "dev", name, "metric", "7"] in words
    assert ["echo", "4", ">", f"/proc/sys/net/ipv4/neigh/{name}/mcast_solicit"] in words
    assert ["echo", "2000 3000", ">", "/proc/sys/net/ipv4/ip_local_port_range"] in words
    assert ["watchdog", "-T", "9", "-t", "2", "/dev/watchdog"] in words
    # Nothing in the name reaches the shell as syntax: the only operators are the script's own.
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        assert set(tok for tok in lexer if set(tok) <= set("();<>|&")) <= {">", "&&"}, line


def test_the_init_script_refuses_a_config_built_by_hand_with_a_bad_value():
    config = FirmwareConfig.default()
    bad = dataclasses.replace(config, interface=dataclasses.replace(config.interface, name="eth0 ; reboot"))
    assert "interface.name: not an interface name" in refused(lambda: render_init(bad), ImageBuildError)
    bad = dataclasses.replace(config, sysctls={"net.ipv4.ip_default_ttl": 0})
    assert "sysctls.net.ipv4.ip_default_ttl: expected an integer in 1..255" in \
        refused(lambda: render_init(bad), ImageBuildError)


# -- board files --------------------------------------------------------------------------------
@pytest.mark.parametrize("arg, words", [
    ("{name:>200000}", "placeholder {name} with a format spec or conversion"),
    ("{name!r}", "placeholder {name} with a format spec or conversion"),
    ("{name:{console_url}}", "placeholder {name} with a format spec or conversion"),
    ("x{name", "not a command template: expected '}' before end of string"),
    ("x}", "not a command template: Single '}' encountered"),
    ("{", "not a command template"),
    ("{}", "unknown placeholder {}"),
    ("{0}", "unknown placeholder {0}"),
    ("{name.__class__}", "unknown placeholder {name.__class__}"),
    ("{name[0]}", "unknown placeholder {name[0]}"),
    ("a\0b", "cannot hold a NUL"),
])
def test_a_bad_command_template_is_refused_when_the_board_file_is_read(arg, words):
    msg = refused(lambda: parse_board(real(link={"down": ["pdu", "port3", arg]}), "b.yaml"), BoardFileError)
    assert msg.startswith("b.yaml: link.down[2]: ") and words in msg


def test_known_placeholders_and_literal_braces_are_taken_and_expand_as_written():
    spec = parse_board(real(power={"on": ["pdu", "--outlet={name}", "{{json}}", "{console_url}"]}), "b.yaml")
    argv = [a.format(name="lab", console_url="/dev/ttyUSB0") for a in spec.power_commands["on"]]
    assert argv == ["pdu", "--outlet=lab", "{json}", "/dev/ttyUSB0"]


@pytest.mark.parametrize("over, field, words", [
    ({"ssh": {"host": "h", "key_file": "~no-such-user-here/key"}}, "ssh.key_file", "cannot expand"),
    ({"ssh": {"host": "h", "key_file": "k\0ey"}}, "ssh.key_file", "cannot hold a NUL"),
    ({"firmware": "fw\0.yaml"}, "firmware", "cannot hold a NUL"),
])
def test_a_path_that_cannot_be_a_path_is_named(over, field, words):
    msg = refused(lambda: parse_board(real(**over), "b.yaml"), BoardFileError)
    assert msg.startswith(f"b.yaml: {field}: ") and words in msg


@pytest.mark.parametrize("over, field", [
    ({"timeouts": {"booted": float("inf")}}, "timeouts.booted"),
    ({"timeouts": {"ssh": float("nan")}}, "timeouts.ssh"),
    ({"timeouts": {"shell": 3601}}, "timeouts.shell"),
    ({"timeouts": {"network": 0}}, "timeouts.network"),
    ({"app_latency": float("nan")}, "app_latency"),
    ({"app_latency": float("inf")}, "app_latency"),
    ({"app_latency": 601}, "app_latency"),
])
def test_board_timeouts_are_finite_and_bounded(over, field):
    msg = refused(lambda: parse_board({"kind": "model", **over}, "b.yaml"), BoardFileError)
    assert msg.startswith(f"b.yaml: {field}: expected a number of seconds in (0, ")


@pytest.mark.parametrize("value, words", [
    (float("inf"), "expected a finite duration"),
    ("99999999999999999999s", "is longer than 86400 s"),
    (0, "expected a positive duration"),
])
def test_a_seeded_constant_is_a_finite_duration_of_at_most_a_day(value, words):
    msg = refused(lambda: parse_board({"kind": "model", "constants": {"PHY_STATE_TIME": value}}, "b.yaml"),
                  BoardFileError)
    assert "b.yaml: constants.PHY_STATE_TIME: " in msg and words in msg


# -- the command line: one line, exit 2 -----------------------------------------------------
@pytest.mark.parametrize("board, scenario_text, words", [
    (b"kind: model\nname: caf\xe9\n", "name: s\nsteps:\n  - {at: 0s, do: link_down}\n", "not UTF-8 text"),
    (b"kind: model\nfirmware:\n  interface: {address: 10.0.2.15/24, mac: 52:54:00:12:34:56}\n"
     b"  sysctls: {net.ipv4.ip_default_ttl: 300}\n", "name: s\nsteps:\n  - {at: 0s, do: link_down}\n",
     "sysctls.net.ipv4.ip_default_ttl: expected an integer in 1..255"),
    (b"kind: model\n", "name: s\nsteps:\n  - {at: .nan, do: link_down}\n", "expected a finite duration"),
    (b"kind: model\n", "name: s\nsteps:\n  - {at: 99999999999999999999s, do: link_down}\n", "longer than 86400 s"),
])
def test_predict_with_bad_input_exits_2_with_one_line(tmp_path, board, scenario_text, words):
    (tmp_path / "b.yaml").write_bytes(board)
    (tmp_path / "s.yaml").write_text(scenario_text)
    out = subprocess.run([sys.executable, "-m", "harness", "predict", str(tmp_path / "s.yaml"), "--board",
                          str(tmp_path / "b.yaml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("bmc-hil: error: ") and words in out.stderr
