"""Board files (YAML): how to reach a board and what its firmware is declared to be.

A real board:

    name: lab-bmc-3
    kind: real
    console: {url: /dev/ttyUSB0, baudrate: 115200}     # or rfc2217://host:port, socket://host:port
    ssh: {host: 192.0.2.10, port: 22, user: root, password: ..., known_hosts: strict}
    capture: {interface: eth1, filter: "ether host 52:54:00:12:34:56"}
    link: {down: [pdu-port, "{name}", "off"], up: [pdu-port, "{name}", "on"]}
    power: {on: [...], off: [...], reset: [...]}
    firmware: firmware.yaml          # the declared firmware config (a file or a mapping)
    timeouts: {booted: 60, shell: 60, network: 30, ssh: 60}

An emulated board:

    kind: emulated
    machine: ast2500-evb             # or romulus-bmc (NC-SI)
    network: user                    # or wire
    firmware: declared.yaml          # what the board is declared to be
    image: built.yaml                # what the image is built from (default: the declared config)

A board in a labgrid lab (harness.board.labgrid): a place on a labgrid coordinator, held
for the run; its console, power, link and SSH come from the place's resources:

    kind: labgrid
    coordinator: 127.0.0.1:20408     # the labgrid coordinator (host:port)
    place: bench0                    # or tags: {board: ast2500}, any free place with them
    wait: false                      # true (up to an hour) or seconds: queue for a held place
    firmware: firmware.yaml          # the declared firmware config
    ssh: {key_file: ~/.ssh/bmc, known_hosts: strict}   # optional, over the place's NetworkService
    capture: {interface: eth1}       # optional: a host interface (default: the place's tap)

The model as the board (harness.board.modelboard: a fast tier in virtual time, beside
the emulated board, for seeded-fault coverage):

    kind: model
    firmware: declared.yaml          # what the board is declared to be (the oracle reads it)
    image: seeded.yaml               # what the model playing the board is built from
    seed: 1                          # the player's random draws (ISN, phylib phase, ...)
    constants: {PHY_STATE_TIME: 2s}  # Linux constants seeded in the player only
                                     # (modelboard.PLAYER_CONSTANTS; durations, or Hz)

Command templates are argument lists of strings, never shell strings; `{name}` and
`{console_url}` may appear in an argument as they are (no format spec or conversion), and
`{{` and `}}` stand for literal braces. Templates are checked when the file is read.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BoardFileError
from harness.yamlfile import load_yaml
from models.config import ConfigError, FirmwareConfig

TEMPLATE_FIELDS = {"name", "console_url"}
# A board strategy step (booted, shell, network, ssh) that has not finished in an hour is
# hung, not slow; the deadline must also be a finite number (an infinite or NaN one never
# expires).
STEP_TIMEOUT_MAX_S = 3600
# app_latency: a program the harness started that has not run in ten minutes is not late.
APP_LATENCY_MAX_S = 600
# A labgrid board file's `wait: true`: how long the harness queues for a held place; a
# number of seconds may say otherwise, up to a day (a deadline is always finite).
LAB_WAIT_DEFAULT_S = 3600.0
LAB_WAIT_MAX_S = 86400.0
# labgrid's own rule for a place tag's key (labgrid.remote.common.TAG_KEY).
_LAB_TAG_KEY = re.compile(r"[a-z][a-z0-9_]+")
_LAB_FIELDS = ("coordinator", "place", "tags", "wait")


@dataclass(frozen=True)
class SSHSpec:
    host: str
    port: int = 22
    user: str = "root"
    password: str | None = None
    key_file: Path | None = None
    known_hosts: str = "strict"
    known_hosts_file: Path | None = None

    def __repr__(self) -> str:
        return f"SSHSpec({self.user}@{self.host}:{self.port}, known_hosts={self.known_hosts})"


@dataclass(frozen=True)
class BoardSpec:
    """A parsed board file."""

    name: str
    kind: str                     # "real" | "emulated" | "model" | "labgrid"
    firmware: FirmwareConfig      # the declared firmware config
    source: str = "<emulated>"
    # real boards
    console_url: str | None = None
    baudrate: int = 115200
    ssh: SSHSpec | None = None
    capture_interface: str | None = None
    capture_filter: str | None = None
    link_commands: dict[str, list[str]] = field(default_factory=dict)
    power_commands: dict[str, list[str]] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)
    # the oracle's bound on when a program the harness started gets to run (seconds; None:
    # harness.oracle.bounds' app_latency, measured on the emulated board by bench/latency.py)
    app_latency: float | None = None
    # emulated boards (and the model-as-board: image_config is what the model plays)
    machine: str = "ast2500-evb"
    network: str = "user"
    image_config: FirmwareConfig | None = None
    # the model-as-board: its random seed and its seeded Linux constants (name -> ns or Hz)
    player_seed: int = 1
    player_constants: dict[str, int] = field(default_factory=dict)
    # labgrid boards: the coordinator (host:port), the place by name or by tags, how long to
    # queue for it when it is held (None: not at all), and what the board file says of SSH
    # over the place's NetworkService (user, password, key_file, known_hosts, known_hosts_file)
    coordinator: str | None = None
    place: str | None = None
    place_tags: dict[str, str] = field(default_factory=dict)
    wait_s: float | None = None
    lab_ssh: dict[str, Any] = field(default_factory=dict)


def emulated_spec() -> BoardSpec:
    """The built-in `emulated` board: the default image, declared as itself."""
    return BoardSpec(name="emulated", kind="emulated", firmware=FirmwareConfig.default())


def load_board_file(path: str | Path) -> BoardSpec:
    """Parse and validate a board file; `BoardFileError` names the file and the field."""
    if str(path) == "emulated":
        return emulated_spec()
    path = Path(path)
    data = load_yaml(path, "board file", BoardFileError)
    return parse_board(data, source=str(path), base=path.parent)


def parse_board(data: Any, source: str, base: Path = Path(".")) -> BoardSpec:
    f = _Fields(source)
    top = f.mapping(data, "", optional={"name", "kind", "console", "ssh", "capture", "link", "power",
                                        "firmware", "image", "machine", "network", "timeouts", "seed",
                                        "constants", "app_latency", *_LAB_FIELDS})
    kind = top.get("kind", "real")
    if kind not in ("real", "emulated", "model", "labgrid"):
        raise f.error("kind", f"expected 'labgrid', 'real', 'emulated' or 'model', got {kind!r}")
    if kind != "model":
        for key in ("seed", "constants"):
            if key in top:
                raise f.error(key, "only for the model-as-board (kind: model)")
    if kind != "labgrid":
        for key in _LAB_FIELDS:
            if key in top:
                raise f.error(key, "only for a board in a labgrid lab (kind: labgrid)")
    default_name = kind if kind in ("emulated", "model") else Path(source).stem
    name = f.str_(top.get("name", default_name), "name")
    firmware = _firmware(f, top.get("firmware"), "firmware", base) if "firmware" in top else None
    timeouts = {}
    if "timeouts" in top:
        for k, v in f.mapping(top["timeouts"], "timeouts", optional={"booted", "shell", "network", "ssh"}).items():
            timeouts[k] = f.seconds(v, f"timeouts.{k}", STEP_TIMEOUT_MAX_S)
    app_latency = top.get("app_latency")
    if app_latency is not None:
        app_latency = f.seconds(app_latency, "app_latency", APP_LATENCY_MAX_S)

    if kind == "model":
        for key in ("console", "ssh", "capture", "link", "power", "machine", "network"):
            if key in top:
                raise f.error(key, "not used by the model-as-board (the model plays the board)")
        declared = firmware or FirmwareConfig.default()
        image = _firmware(f, top["image"], "image", base) if "image" in top else declared
        return BoardSpec(name=name, kind="model", firmware=declared, source=source, image_config=image,
                         timeouts=timeouts, app_latency=app_latency,
                         player_seed=f.int_(top.get("seed", 1), "seed", 0, 2**63 - 1),
                         player_constants=_player_constants(f, top.get("constants", {})))

    if kind == "emulated":
        for key in ("console", "ssh", "capture", "link", "power"):
            if key in top:
                raise f.error(key, "not used by an emulated board (the harness provides it)")
        machine = top.get("machine", "ast2500-evb")
        if machine not in ("ast2500-evb", "romulus-bmc"):
            raise f.error("machine", f"expected ast2500-evb or romulus-bmc, got {machine!r}")
        network = top.get("network", "user")
        if network not in ("user", "wire"):
            raise f.error("network", f"expected user or wire, got {network!r}")
        declared = firmware or FirmwareConfig.default()
        image = _firmware(f, top["image"], "image", base) if "image" in top else declared
        return BoardSpec(name=name, kind="emulated", firmware=declared, source=source, machine=machine,
                         network=network, image_config=image, timeouts=timeouts, app_latency=app_latency)

    if kind == "labgrid":
        return _labgrid_board(f, top, name, firmware, source, base, timeouts, app_latency)

    for key in ("machine", "network", "image"):
        if key in top:
            raise f.error(key, "only for emulated boards (kind: emulated)")
    for key in ("console", "ssh", "firmware"):
        if key not in top:
            raise f.error(key, "missing (required for a real board)")
    con = f.mapping(top["console"], "console", required={"url"}, optional={"baudrate"})
    url = f.str_(con["url"], "console.url")
    if not (url.startswith(("/dev/", "rfc2217://", "socket://", "loop://")) or url.startswith("COM")):
        raise f.error("console.url", f"expected a device path or a pyserial URL (rfc2217://, socket://), got {url!r}")
    baud = f.int_(con.get("baudrate", 115200), "console.baudrate", 50, 4_000_000)

    s = f.mapping(top["ssh"], "ssh", required={"host"},
                  optional={"port", "user", "password", "key_file", "known_hosts", "known_hosts_file"})
    policy = s.get("known_hosts", "strict")
    if policy not in ("strict", "auto-accept"):
        raise f.error("ssh.known_hosts", f"expected strict or auto-accept, got {policy!r}")
    if "password" not in s and "key_file" not in s:
        raise f.error("ssh", "needs a password or a key_file")
    key_file = _path(f, f.str_(s["key_file"], "ssh.key_file"), base, "ssh.key_file") if "key_file" in s else None
    if key_file is not None and not key_file.exists():
        raise f.error("ssh.key_file", f"{key_file} does not exist")
    ssh = SSHSpec(host=f.str_(s["host"], "ssh.host"), port=f.int_(s.get("port", 22), "ssh.port", 1, 65535),
                  user=f.str_(s.get("user", "root"), "ssh.user"),
                  password=f.str_(s["password"], "ssh.password") if "password" in s else None,
                  key_file=key_file, known_hosts=policy,
                  known_hosts_file=_path(f, f.str_(s["known_hosts_file"], "ssh.known_hosts_file"), base,
                                         "ssh.known_hosts_file")
                  if "known_hosts_file" in s else None)

    cap_iface = cap_filter = None
    if "capture" in top:
        cap = f.mapping(top["capture"], "capture", required={"interface"}, optional={"filter"})
        cap_iface = f.str_(cap["interface"], "capture.interface")
        cap_filter = f.str_(cap["filter"], "capture.filter") if "filter" in cap else None
    link = _commands(f, top.get("link", {}), "link", {"down", "up"})
    power = _commands(f, top.get("power", {}), "power", {"on", "off", "reset"})
    return BoardSpec(name=name, kind="real", firmware=firmware, source=source, console_url=url, baudrate=baud,
                     ssh=ssh, capture_interface=cap_iface, capture_filter=cap_filter, link_commands=link,
                     power_commands=power, timeouts=timeouts, app_latency=app_latency)


def _labgrid_board(f: _Fields, top: dict, name: str, firmware: FirmwareConfig | None, source: str, base: Path,
                   timeouts: dict[str, float], app_latency: float | None) -> BoardSpec:
    """`kind: labgrid`: the console, power, link and SSH come from the place's resources."""
    for key in ("console", "link", "power", "machine", "network", "image"):
        if key in top:
            raise f.error(key, "comes from the labgrid place's resources, not the board file (kind: labgrid)")
    for key in ("coordinator", "firmware"):
        if key not in top:
            raise f.error(key, "missing (required for a labgrid board)")
    coordinator = f.str_(top["coordinator"], "coordinator")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise f.error("coordinator", f"expected host:port of the labgrid coordinator, like 127.0.0.1:20408, "
                                     f"got {coordinator!r}")
    if ("place" in top) == ("tags" in top):
        raise f.error("place", "give the place by name (place: bench0) or by tags (tags: {board: ast2500}), "
                               "one of the two")
    place = f.str_(top["place"], "place") if "place" in top else None
    tags = {}
    if "tags" in top:
        raw = top["tags"]
        if not isinstance(raw, dict) or not raw:
            raise f.error("tags", f"expected a mapping of one tag or more, like {{board: ast2500}}, got {raw!r}")
        for key, value in raw.items():
            if not isinstance(key, str) or not _LAB_TAG_KEY.fullmatch(key):
                raise f.error(f"tags.{key}", "a labgrid tag name is a lower-case letter, then lower-case letters, "
                                             "digits or _")
            tags[key] = f.str_(value, f"tags.{key}")
    wait = top.get("wait", False)
    if wait is True:
        wait_s = LAB_WAIT_DEFAULT_S
    elif wait is False:
        wait_s = None
    elif isinstance(wait, (int, float)) and math.isfinite(wait) and 0 < wait <= LAB_WAIT_MAX_S:
        wait_s = float(wait)
    else:
        raise f.error("wait", f"expected true, false or a number of seconds in (0, {LAB_WAIT_MAX_S:g}], got {wait!r}")
    lab_ssh: dict[str, Any] = {}
    if "ssh" in top:
        s = f.mapping(top["ssh"], "ssh", optional={"user", "password", "key_file", "known_hosts", "known_hosts_file"})
        policy = s.get("known_hosts", "strict")
        if policy not in ("strict", "auto-accept"):
            raise f.error("ssh.known_hosts", f"expected strict or auto-accept, got {policy!r}")
        lab_ssh["known_hosts"] = policy
        for key in ("user", "password"):
            if key in s:
                lab_ssh[key] = f.str_(s[key], f"ssh.{key}")
        for key in ("key_file", "known_hosts_file"):
            if key in s:
                lab_ssh[key] = _path(f, f.str_(s[key], f"ssh.{key}"), base, f"ssh.{key}")
        if "key_file" in lab_ssh and not lab_ssh["key_file"].exists():
            raise f.error("ssh.key_file", f"{lab_ssh['key_file']} does not exist")
    cap_iface = cap_filter = None
    if "capture" in top:
        cap = f.mapping(top["capture"], "capture", required={"interface"}, optional={"filter"})
        cap_iface = f.str_(cap["interface"], "capture.interface")
        cap_filter = f.str_(cap["filter"], "capture.filter") if "filter" in cap else None
    return BoardSpec(name=name, kind="labgrid", firmware=firmware, source=source, capture_interface=cap_iface,
                     capture_filter=cap_filter, timeouts=timeouts, app_latency=app_latency, coordinator=coordinator,
                     place=place, place_tags=tags, wait_s=wait_s, lab_ssh=lab_ssh)


def load_firmware_config(path: str | Path) -> FirmwareConfig:
    """Read a firmware config YAML file; `BoardFileError` names the file and the field."""
    path = Path(path)
    data = load_yaml(path, "firmware config", BoardFileError)
    try:
        return FirmwareConfig.from_dict(data, source=str(path))
    except ConfigError as exc:
        raise BoardFileError(str(exc)) from exc


def _firmware(f: _Fields, value: Any, where: str, base: Path) -> FirmwareConfig:
    if isinstance(value, str):
        path = _path(f, value, base, where)
        try:
            data = load_yaml(path, "firmware config", BoardFileError)
        except BoardFileError as exc:
            raise f.error(where, str(exc)) from exc
        try:
            return FirmwareConfig.from_dict(data, source=str(path))
        except ConfigError as exc:
            raise BoardFileError(f"{f.source}: {where}: {exc}") from exc
    try:
        return FirmwareConfig.from_dict(value, source=f"{f.source}: {where}")
    except ConfigError as exc:
        raise BoardFileError(str(exc)) from exc


def _player_constants(f: _Fields, value: Any) -> dict[str, int]:
    """`constants:` of a model-as-board file: a known name -> a duration (`2s`, `200ms`) or,
    for a clock, a frequency in Hz."""
    from harness.board.modelboard import PLAYER_CONSTANTS
    from harness.scenario import SCENARIO_TIME_MAX_NS, ScenarioError, parse_duration

    out = {}
    for name, raw in f.mapping(value, "constants", optional=set(PLAYER_CONSTANTS)).items():
        where = f"constants.{name}"
        if PLAYER_CONSTANTS[name].unit == "Hz":
            out[name] = f.int_(raw, where, 1, 10**10)
            continue
        try:
            # a seeded timer longer than the longest scenario never fires in one: the same bound
            ns = parse_duration(raw, where, f.source, SCENARIO_TIME_MAX_NS)
        except ScenarioError as exc:
            raise BoardFileError(str(exc)) from exc
        if ns <= 0:
            raise f.error(where, f"expected a positive duration, got {raw!r}")
        out[name] = ns
    return out


def _commands(f: _Fields, value: Any, where: str, allowed: set[str]) -> dict[str, list[str]]:
    out = {}
    for verb, argv in f.mapping(value, where, optional=allowed).items():
        field_ = f"{where}.{verb}"
        if isinstance(argv, str):
            raise f.error(field_, "expected an argument list like [pdu, port3, off], not a shell string")
        if not isinstance(argv, list) or not argv:
            raise f.error(field_, f"expected a non-empty list of arguments like [pdu, port3, off], got {argv!r}")
        for i, arg in enumerate(argv):
            if not isinstance(arg, str):
                raise f.error(f"{field_}[{i}]", f"expected a string, got {type(arg).__name__} {arg!r}: write it "
                                                f"quoted ('{json.dumps(arg)}') so the argument is what you wrote")
            if "\0" in arg:
                raise f.error(f"{field_}[{i}]", "an argument cannot hold a NUL character")
            _check_template(f, arg, f"{field_}[{i}]")
        out[verb] = list(argv)
    return out


def _check_template(f: _Fields, arg: str, where: str) -> None:
    """Only `{name}` and `{console_url}` as they are, and `{{`/`}}`: what str.format then
    expands to the board's name or console URL and nothing else (a format spec such as
    `{name:>200000}` would make an argument of any size; an attribute or index would reach
    into the value)."""
    known = ", ".join("{" + n + "}" for n in sorted(TEMPLATE_FIELDS))
    try:
        parts = list(string.Formatter().parse(arg))
    except ValueError as exc:   # a lone { or }
        raise f.error(where, f"not a command template: {exc} in {arg!r} (write {{{{ and }}}} for literal "
                             f"braces; known placeholders: {known})") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            raise f.error(where, f"unknown placeholder {{{name}}}; known: {known} "
                                 "(write {{ and }} for literal braces)")
        if spec or conversion:
            raise f.error(where, f"placeholder {{{name}}} with a format spec or conversion in {arg!r}; write "
                                 f"{{{name}}} alone")


def _path(f: _Fields, text: str, base: Path, where: str) -> Path:
    """`text` as a path: `~` expanded, relative to the board file's folder."""
    if "\0" in text:
        raise f.error(where, "a path cannot hold a NUL character")
    try:
        p = Path(text).expanduser()
    except RuntimeError as exc:   # ~user of no such user
        raise f.error(where, f"cannot expand {text!r}: {exc}") from exc
    return p if p.is_absolute() else base / p


class _Fields:
    def __init__(self, source: str):
        self.source = source

    def error(self, where: str, problem: str) -> BoardFileError:
        return BoardFileError(f"{self.source}: {where or '<top>'}: {problem}")

    def mapping(self, value, where, required=frozenset(), optional=frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping, got {type(value).__name__}")
        for k in required:
            if k not in value:
                raise self.error(f"{where}.{k}" if where else k, "missing (required)")
        allowed = set(required) | set(optional)
        for k in value:
            if k not in allowed:
                raise self.error(f"{where}.{k}" if where else str(k),
                                 "unknown field; expected one of " + ", ".join(sorted(allowed)))
        return value

    def str_(self, value, where) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(where, f"expected a non-empty string, got {type(value).__name__} {value!r}")
        return value

    def seconds(self, value, where, high) -> float:
        """A number of seconds in (0, high]."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not 0 < value <= high:
            raise self.error(where, f"expected a number of seconds in (0, {high}], got {value!r}")
        return float(value)

    def int_(self, value, where, low, high) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(where, f"expected an integer, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            raise self.error(where, f"expected an integer in {low}..{high}, got {value}")
        return value
