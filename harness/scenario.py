"""Scenarios: stimuli on a timeline, in a YAML file users write.

    name: flap-while-idle
    duration: 8s            # observe this long after the last step (default 5s)
    peer: slirp             # or silent: a harness-owned wire whose peer answers ARP only;
                            # or stalled: that peer also answers a SYN, then acknowledges nothing;
                            # or deaf: a peer that asks for the board once and answers no ARP;
                            # or late: a peer that answers the board's ARP from its 2nd request on;
                            # or idle: a peer that completes its connects' handshakes, then is silent
                            # or closing: stalled, but it acknowledges the board's data and FIN
                            # and sends its own FIN at a peer_fin step
    tier: ci                # or long: too long for CI (builtin_scenarios("all") has it)
    expect: [LINK_DOWN, LINK_UP]   # what the run must provoke (EventKind names); default:
                                   # derived from the steps (default_expect)
    steps:
      - {at: 0s,  do: connect, service: ssh}     # the peer opens a TCP connection (silent
                                                 # peer: sends the SYN, never answers the SYN-ACK)
      - {at: 1s,  do: link_down}
      - {at: 3s,  do: link_up}
      - {at: 4s,  do: watchdog_start, timeout: 5, period: 1}
      - {at: 6s,  do: watchdog_starve}
      - {at: 20s, do: connect, port: 81}         # a port the firmware does not serve
      - {at: 21s, do: reboot}
      - {at: 22s, do: board_connect, port: 9}    # the board connects out to the peer
      - {at: 23s, do: board_connect, port: 7, data: "hello"}   # ... and writes once connected
      - {at: 23s, do: board_connect, port: 7, data: "hi", shutdown: true}   # ... then shuts its
                                                 # side (shutdown(SHUT_WR)) and reads on
      - {at: 24s, do: board_close, port: 7}      # the program on port 7 is killed (close())
      - {at: 25s, do: peer_fin}                  # the closing peer sends its FIN
      - {at: 22s, do: frame, hex: "ffff..."}     # raw frame from the peer (wire mode, predict)
      - {at: 24s, do: ping}                      # an ICMP echo request from the peer to the board
      - {at: 25s, do: ping, to: subnet-broadcast}   # ... or limited-broadcast (255.255.255.255)
      - {at: 26s, do: ping, from: 10.0.3.7, id: 7, seq: 1, size: 56}   # from an off-link
                                                 # source (the reply goes via the gateway)

The same file drives a board (`bmc-hil run`) and the model (`bmc-hil predict`):
`model_inputs()` turns it into the stack model's input timeline, synthesising the frames a
QEMU-slirp-like peer sends for a `connect` (its ARP request, then its SYN), or, for a
silent peer, the one SYN the harness puts on the wire (`peer_syn_frame`). A `ping` is an
ICMP echo request the harness makes from the declared config (`ping_frame`), so it fits
any declared address and MAC; it needs a peer on the harness's own wire.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.ingest.events import EventKind
from harness.yamlfile import load_yaml
from models.config import PORT_MAX, PORT_MIN, WDT_TIMEOUT_MAX, WDT_TIMEOUT_MIN

PEERS = ("slirp", "silent", "stalled", "deaf", "late", "idle", "closing")
# The peers that are the harness itself on a wire it owns (harness.runner.WIRE_PEERS): only
# there can the harness put a frame of its own making on the board's wire.
WIRE_PEER_NAMES = ("silent", "stalled", "deaf", "late", "idle", "closing")
TIERS = ("ci", "long")
# EventKinds below this code are what a board does (frames, console lines, QMP events);
# from it on they are the harness's own records, which a scenario cannot "provoke".
_HOST_KIND_FIRST = EventKind.HOST_POWER_ON
STEP_FIELDS: dict[str, set[str]] = {
    "link_down": set(),
    "link_up": set(),
    "watchdog_start": {"timeout", "period"},
    "watchdog_starve": set(),
    "watchdog_stop": set(),
    "reboot": set(),
    "connect": {"service", "port"},
    "board_connect": {"port", "data", "shutdown"},
    "board_close": {"port"},
    "peer_fin": set(),
    "frame": {"hex"},
    "ping": {"to", "from", "id", "seq", "size"},
}
# Where a `ping` goes: the board's own address (to its MAC), or the declared subnet's
# broadcast or 255.255.255.255 (to ff:ff:ff:ff:ff:ff), which Linux routes as RTCF_BROADCAST
# (ip_route_input_slow), so icmp_rcv drops the echo unless icmp_echo_ignore_broadcasts is 0.
PING_TO = ("board", "subnet-broadcast", "limited-broadcast")
# The echo's data: 56 bytes by default, as iputils ping sends; at most what one 1500-byte
# IPv4 packet carries unfragmented (1500 - 20 - 8): the harness sends no fragments.
PING_SIZE_DEFAULT, PING_SIZE_MAX = 56, 1472
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|min)?\s*$")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "min": 60_000_000_000, None: 1_000_000_000}
# The latest a step may come and the longest a scenario may last (its last step plus its
# duration): a day. A scenario runs in real time on a board, and the model steps through
# every timer on the way; a day holds Linux's longest default schedules with room (the
# keepalive probes: tcp_keepalive_time 2 h + 9 x 75 s; tcp_retries2's give-up, about
# 15 min), and a longer time is more likely a missing unit than a test.
SCENARIO_TIME_MAX_NS = 24 * 3600 * 1_000_000_000
# Each step on a board is an action of its own (a link change, an SSH command); the
# built-in scenarios have at most six. More than this is a generated file gone wrong.
STEPS_MAX = 1000
# A `frame` step's bytes: at least an Ethernet header (ETH_HLEN), at most what one
# ftgmac100 receive buffer holds (RX_BUF_SIZE = MAX_PKT_SIZE, 1536; a longer frame is
# flagged too long by the MAC, which the model does not play).
FRAME_MIN, FRAME_MAX = 14, 1536

# board_connect data: one short write (a segment well under any MSS).
BOARD_DATA_MAX = 256
# QEMU slirp's addresses: the peer every emulated board in user networking talks to.
PEER_MAC = "52:55:0a:00:02:02"
PEER_SPORT_BASE = 40000
# Where, in model time, the scenario starts: after the modelled boot has brought eth0 and
# the services up (BootTiming's latest: 5 s to ifup + 3 s to services), with margin.
MODEL_SCENARIO_START_NS = 10_000_000_000
# How long before the first step the deaf peer joins the wire (the runner's set-up takes
# longer; the board's entry for it stays STALE, with no timer, until it is used).
DEAF_PEER_LEAD_NS = 1_000_000_000


class ScenarioError(HarnessError):
    """A scenario file does not fit: names the file, the step and the field."""


@dataclass(frozen=True)
class Step:
    at_ns: int
    do: str
    args: dict[str, Any] = field(default_factory=dict)
    index: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    duration_ns: int = 5_000_000_000
    description: str = ""
    source: str = "<scenario>"
    # slirp: QEMU user networking (the peer answers); silent: the harness owns the wire and
    # its peer answers ARP only, so the board's own retransmission timers show; stalled:
    # that peer also answers the board's SYN with a SYN-ACK, then acknowledges nothing (the
    # board's data retransmissions show); deaf: a peer that asks for the board's address
    # once when it joins the wire and then answers no ARP (the board's neighbour entry for
    # it goes DELAY -> PROBE -> FAILED, and later resolutions fail); late: a peer that
    # answers the board's ARP only from its second request on (packets wait together);
    # closing: a stalled peer that acknowledges the board's data and FIN, and sends its own
    # FIN at a `peer_fin` step.
    peer: str = "slirp"
    # What the run must provoke: each kind should be predicted or observed in the window
    # (a scenario that provokes nothing it is about proves nothing). `expect:` in the
    # file, else default_expect(steps).
    expect: tuple[EventKind, ...] = ()
    # ci: runs in CI and `bmc-hil run`; long: minutes of board time (timers' give-ups).
    tier: str = "ci"

    @property
    def end_ns(self) -> int:
        return (self.steps[-1].at_ns if self.steps else 0) + self.duration_ns


def parse_duration(value: Any, where: str, source: str, max_ns: int = SCENARIO_TIME_MAX_NS) -> int:
    """`1.5s`, `200ms`, `2min` or a number of seconds -> ns, at most `max_ns`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ScenarioError(f"{source}: {where}: expected a duration like 1.5s or 200ms, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ScenarioError(f"{source}: {where}: expected a finite duration like 1.5s or 200ms, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ScenarioError(f"{source}: {where}: a duration cannot be negative ({value})")
        seconds = Decimal(value)
        unit_ns = _UNIT_NS[None]
    else:
        m = _DURATION.match(value)
        if not m:
            raise ScenarioError(f"{source}: {where}: expected a duration like 1.5s or 200ms, got {_show(value)}")
        seconds, unit_ns = Decimal(m.group(1)), _UNIT_NS[m.group(2)]
    # Decimal keeps a long string exact and never overflows the way a float would.
    if seconds * unit_ns > max_ns:
        raise ScenarioError(f"{source}: {where}: {_show(value)} is longer than {_seconds(max_ns)} s, "
                            f"the most it may be")
    return int((seconds * unit_ns).to_integral_value())


def _seconds(ns: int) -> str:
    return f"{ns / 1_000_000_000:g}"


def _show(value: Any, limit: int = 40) -> str:
    """`repr(value)`, cut short: an error message quotes what was written, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


BUILTIN_DIR = Path(__file__).parent / "scenarios"


def builtin_scenarios(tier: str = "ci") -> dict[str, Path]:
    """The scenarios that ship with the harness, by name: those of `tier` ("ci", the
    default, or "long"), or every one ("all")."""
    if tier not in (*TIERS, "all"):
        raise ScenarioError(f"tier: expected one of {', '.join(TIERS)} or all, got {tier!r}")
    paths = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}
    if tier == "all":
        return paths
    return {name: p for name, p in paths.items() if load_scenario(p).tier == tier}


def load_scenario(path: str | Path) -> Scenario:
    """A scenario file, or a built-in scenario by name (`handshake`, `link-flap`, ...)."""
    builtin = BUILTIN_DIR / f"{path}.yaml"
    if not Path(path).exists() and "/" not in str(path) and builtin.exists():
        path = builtin
    path = Path(path)
    return parse_scenario(load_yaml(path, "scenario", ScenarioError), str(path))


def parse_scenario(data: Any, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a mapping with name and steps, got {type(data).__name__}")
    unknown = set(data) - {"name", "description", "duration", "steps", "peer", "expect", "tier"}
    if unknown:
        raise ScenarioError(f"{source}: {sorted(map(str, unknown))[0]}: unknown field; expected name, description, "
                            "duration, steps, peer, expect, tier")
    peer = data.get("peer", "slirp")
    if peer not in PEERS:
        raise ScenarioError(f"{source}: peer: expected one of {', '.join(PEERS)}, got {peer!r}")
    tier = data.get("tier", "ci")
    if tier not in TIERS:
        raise ScenarioError(f"{source}: tier: expected one of {', '.join(TIERS)}, got {tier!r}")
    name = data.get("name") or Path(source).stem
    if not isinstance(name, str):
        raise ScenarioError(f"{source}: name: expected a string, got {name!r}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{source}: steps: expected a non-empty list of steps")
    if len(raw_steps) > STEPS_MAX:
        raise ScenarioError(f"{source}: steps: {len(raw_steps)} steps, more than the {STEPS_MAX} a scenario may have")
    steps = []
    for i, raw in enumerate(raw_steps):
        where = f"steps[{i}]"
        if not isinstance(raw, dict):
            raise ScenarioError(f"{source}: {where}: expected a mapping like {{at: 1s, do: link_down}}")
        do = raw.get("do")
        if not isinstance(do, str) or do not in STEP_FIELDS:
            raise ScenarioError(f"{source}: {where}.do: unknown step {_show(do)}; known: {', '.join(STEP_FIELDS)}")
        if "at" not in raw:
            raise ScenarioError(f"{source}: {where}.at: missing (when the step happens, e.g. 1.5s)")
        extra = set(raw) - {"at", "do"} - STEP_FIELDS[do]
        if extra:
            raise ScenarioError(f"{source}: {where}.{sorted(map(str, extra))[0]}: unknown field for {do}; expected "
                                + (", ".join(sorted(STEP_FIELDS[do])) or "none"))
        args = {k: v for k, v in raw.items() if k not in ("at", "do")}
        _check_args(do, args, f"{where}", source)
        if do == "peer_fin" and peer != "closing":
            raise ScenarioError(f"{source}: {where}: peer_fin is the closing peer's FIN: it needs peer: closing "
                                f"(the scenario's peer is {peer})")
        if do == "ping" and peer not in WIRE_PEER_NAMES:
            raise ScenarioError(f"{source}: {where}: a ping is a frame the harness puts on the board's wire: it "
                                f"needs peer: {', '.join(WIRE_PEER_NAMES)} (the scenario's peer is {peer})")
        steps.append(Step(parse_duration(raw["at"], f"{where}.at", source), do, args, i))
    ordered = tuple(sorted(steps, key=lambda s: (s.at_ns, s.index)))
    duration = parse_duration(data.get("duration", "5s"), "duration", source)
    if ordered[-1].at_ns + duration > SCENARIO_TIME_MAX_NS:
        raise ScenarioError(f"{source}: duration: the scenario would end {_seconds(ordered[-1].at_ns + duration)} s "
                            f"after it starts (its last step plus its duration), more than the "
                            f"{_seconds(SCENARIO_TIME_MAX_NS)} s it may last")
    expect = _parse_expect(data["expect"], source) if "expect" in data else default_expect(ordered)
    return Scenario(name, ordered, duration, str(data.get("description", "")), source, peer, expect, tier)


def _parse_expect(raw: Any, source: str) -> tuple[EventKind, ...]:
    """`expect: [TCP_SYNACK, LINK_DOWN]`: EventKind names of what the board does."""
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{source}: expect: expected a non-empty list of event kinds like "
                            f"[TCP_SYNACK, LINK_DOWN], got {raw!r}")
    known = [k.name for k in EventKind if k < _HOST_KIND_FIRST]
    out: list[EventKind] = []
    for i, name in enumerate(raw):
        kind = EventKind.__members__.get(name) if isinstance(name, str) else None
        if kind is None:
            raise ScenarioError(f"{source}: expect[{i}]: unknown event kind {name!r}; known: {', '.join(known)}")
        if kind >= _HOST_KIND_FIRST:
            raise ScenarioError(f"{source}: expect[{i}]: {name} is the harness's own record, not something "
                                f"the board does; known: {', '.join(known)}")
        if kind not in out:
            out.append(kind)
    return tuple(out)


def step_expect(step: Step) -> tuple[EventKind, ...]:
    """What one step provokes from a healthy board, whatever the peer: a connect to a
    service its SYN-ACK (a `port` is one the firmware does not serve: its RST); a link
    change its console line; a starved watchdog the reset; a reboot the Restarting line
    and the reset; the board's own connect its SYN (and its data, if it writes); an echo
    request to the board's own address its reply (one to a broadcast address none: Linux's
    icmp_echo_ignore_broadcasts is 1 by default)."""
    k = EventKind
    if step.do == "ping":
        return (k.ICMP_ECHO_REPLY,) if step.args.get("to", "board") == "board" else ()
    if step.do == "connect":
        return (k.TCP_SYNACK,) if "service" in step.args else (k.TCP_RST,)
    if step.do == "board_connect":
        if step.args.get("shutdown"):
            return (k.TCP_SYN, k.TCP_DATA, k.TCP_FIN)
        return (k.TCP_SYN, k.TCP_DATA) if "data" in step.args else (k.TCP_SYN,)
    return {"link_down": (k.LINK_DOWN,), "link_up": (k.LINK_UP,), "watchdog_starve": (k.QMP_RESET,),
            "reboot": (k.RESTARTING, k.QMP_RESET)}.get(step.do, ())


def default_expect(steps: tuple[Step, ...] | list[Step]) -> tuple[EventKind, ...]:
    """The union of `step_expect` over the steps, in the order they first appear."""
    return tuple(dict.fromkeys(kind for step in steps for kind in step_expect(step)))


def _check_args(do: str, args: dict, where: str, source: str) -> None:
    def need_int(key, low, high):
        v = args.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ScenarioError(f"{source}: {where}.{key}: expected an integer in {low}..{high}, got {v!r}")

    if do == "watchdog_start":
        need_int("timeout", WDT_TIMEOUT_MIN, WDT_TIMEOUT_MAX)
        if "period" in args:
            need_int("period", WDT_TIMEOUT_MIN, WDT_TIMEOUT_MAX)
            if args["period"] >= args["timeout"]:
                raise ScenarioError(f"{source}: {where}.period: must be shorter than the timeout")
    elif do == "board_connect":
        need_int("port", PORT_MIN, PORT_MAX)
        if "data" in args:
            d = args["data"]
            if not isinstance(d, str) or not 1 <= len(d) <= BOARD_DATA_MAX \
                    or not all(" " <= c <= "~" for c in d):
                raise ScenarioError(f"{source}: {where}.data: expected printable ASCII text of 1..{BOARD_DATA_MAX} "
                                    f"characters (what the board's application writes once connected), got {d!r}")
        if "shutdown" in args and (not isinstance(args["shutdown"], bool) or "data" not in args):
            raise ScenarioError(f"{source}: {where}.shutdown: expected true or false, with data (the application "
                                f"writes the data, then shuts its side: shutdown(SHUT_WR))")
    elif do == "board_close":
        need_int("port", PORT_MIN, PORT_MAX)
    elif do == "connect":
        if ("service" in args) == ("port" in args):
            raise ScenarioError(f"{source}: {where}: give exactly one of service or port")
        if "port" in args:
            need_int("port", PORT_MIN, PORT_MAX)
        elif args["service"] not in ("ssh", "http"):
            raise ScenarioError(f"{source}: {where}.service: expected ssh or http, got {args['service']!r}")
    elif do == "ping":
        _check_ping_args(args, where, source, need_int)
    elif do == "frame":
        h = args.get("hex")
        if not isinstance(h, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", h.replace(" ", "")) \
                or not FRAME_MIN <= len(h.replace(" ", "")) // 2 <= FRAME_MAX:
            raise ScenarioError(f"{source}: {where}.hex: expected an Ethernet frame as hex "
                                f"({FRAME_MIN}..{FRAME_MAX} bytes)")


def _check_ping_args(args: dict, where: str, source: str, need_int) -> None:
    """`to` one of PING_TO; `from` peer or an IPv4 address Linux takes as a source; `id`,
    `seq` 16-bit; `size` the echo's data, 0..PING_SIZE_MAX bytes."""
    to = args.get("to", "board")
    if to not in PING_TO:
        raise ScenarioError(f"{source}: {where}.to: expected one of {', '.join(PING_TO)}, got {_show(to)}")
    src = args.get("from", "peer")
    if src != "peer":
        try:
            addr = ipaddress.IPv4Address(src) if isinstance(src, str) else None
        except ValueError:
            addr = None
        if addr is None:
            raise ScenarioError(f"{source}: {where}.from: expected peer or an IPv4 address like 10.0.3.7, "
                                f"got {_show(src)}")
        # ip_route_input_slow: a multicast, limited-broadcast, zeronet or loopback source is a
        # martian (dropped before icmp_rcv); the model does not play martians
        if addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255") \
                or addr in ipaddress.IPv4Network("0.0.0.0/8") or addr.is_loopback:
            raise ScenarioError(f"{source}: {where}.from: {src} is a martian source to Linux "
                                "(ip_route_input_slow drops it); expected a unicast address")
    for key in ("id", "seq"):
        if key in args:
            need_int(key, 0, 0xFFFF)
    if "size" in args:
        need_int("size", 0, PING_SIZE_MAX)


def peer_ip_str(config) -> str:
    """The peer the board talks to: its gateway (QEMU slirp's 10.0.2.2 on the emulated board)."""
    iface = config.interface
    return str(iface.gateway or next(iter(iface.address.network.hosts())))


def connect_port(step: Step, config) -> int:
    """The board port a `connect` step aims at (a declared service's, or the given one)."""
    if "port" in step.args:
        return int(step.args["port"])
    svc = config.service(step.args["service"])
    if svc is None:
        raise ScenarioError(f"step {step.index}: the board declares no {step.args['service']} service")
    return svc.port


def peer_syn_frame(config, n: int, port: int, linux: bool = True) -> bytes:
    """The SYN the peer sends for the scenario's `n`-th step, from PEER_MAC to the board:
    source port PEER_SPORT_BASE + n, ISN 1e6 * (n + 1). `linux`: a Linux 6.1 SYN (window
    64240; MSS, SACK_PERM, TS, NOP, WS 7 in tcp_syn_options' order), as the harness's silent
    peer sends it; else slirp's (window 65535, MSS only)."""
    from models.wire import ETH_P_IP, IPPROTO_TCP, SYN, EthernetRepr, Ipv4Repr, TcpRepr, ip4, linux_options, mac_bytes

    iface = config.interface
    peer_ip, board_ip = ip4(peer_ip_str(config)), ip4(str(iface.address.ip))
    if linux:
        window, opts = 64240, linux_options(mss=1460, ts=(100_000 * (n + 1), 0), sack_perm=True, wscale=7)
    else:
        window, opts = 65535, linux_options(mss=1460)
    tcp = TcpRepr(PEER_SPORT_BASE + n, port, 1_000_000 * (n + 1), 0, SYN, window, opts)
    seg = tcp.emit(b"", peer_ip, board_ip)
    ip = Ipv4Repr(peer_ip, board_ip, IPPROTO_TCP, len(seg), ident=n + 1)
    return EthernetRepr(mac_bytes(iface.mac), mac_bytes(PEER_MAC), ETH_P_IP).emit(ip.emit(seg))


def ping_addresses(config, step: Step) -> tuple[str, str, str]:
    """A `ping` step's (source IP, destination IP, Ethernet destination) from the declared
    config: `to: board` is the board's address at its MAC; `subnet-broadcast` the declared
    prefix's broadcast (fib_add_ifaddr's RTN_BROADCAST route, prefix | ~mask) and
    `limited-broadcast` 255.255.255.255, both at ff:ff:ff:ff:ff:ff, where a Linux sender on
    the link puts a broadcast route's packets (arp_constructor: an RTN_BROADCAST neighbour is
    NUD_NOARP with dev->broadcast)."""
    iface = config.interface
    board = iface.address.ip
    src = peer_ip_str(config) if step.args.get("from", "peer") == "peer" else str(step.args["from"])
    if ipaddress.IPv4Address(src) == board:
        raise ScenarioError(f"step {step.index}: from: {src} is the board's own address, a martian source to "
                            "Linux (fib_validate_source refuses a local source)")
    if ipaddress.IPv4Address(src) == iface.address.network.broadcast_address and iface.address.network.prefixlen < 31:
        raise ScenarioError(f"step {step.index}: from: {src} is the declared subnet's broadcast address: the reply's "
                            "route would be a broadcast one (RTN_BROADCAST: to ff:ff:ff:ff:ff:ff without ARP, "
                            "arp_constructor), which the model does not play")
    to = step.args.get("to", "board")
    if to == "board":
        return src, str(board), str(iface.mac)
    if to == "subnet-broadcast":
        if iface.address.network.prefixlen >= 31:
            raise ScenarioError(f"step {step.index}: to: subnet-broadcast: a /{iface.address.network.prefixlen} "
                                "has no broadcast address (fib_add_ifaddr adds one below /31)")
        return src, str(iface.address.network.broadcast_address), "ff:ff:ff:ff:ff:ff"
    return src, "255.255.255.255", "ff:ff:ff:ff:ff:ff"


def ping_frame(config, step: Step, n: int) -> bytes:
    """The ICMP echo request a `ping` step puts on the board's wire (the scenario's `n`-th
    step), made from the declared config: from PEER_MAC, addresses as `ping_addresses`;
    as Linux's ping sends it (TTL 64, DF, TOS 0), IPv4 ID n + 1, echo id `id` (default
    n + 1), sequence `seq` (default 1) and `size` bytes of data counting up from 0."""
    from models.wire import ETH_P_IP, EthernetRepr, Ipv4Repr, ip4, mac_bytes
    from models.wire.icmp import ICMP_ECHO, IcmpRepr
    from models.wire.ipv4 import IPPROTO_ICMP

    src, dst, eth_dst = ping_addresses(config, step)
    size = int(step.args.get("size", PING_SIZE_DEFAULT))
    echo = IcmpRepr(ICMP_ECHO, 0, int(step.args.get("id", n + 1)), int(step.args.get("seq", 1)),
                    bytes(i & 0xFF for i in range(size))).emit()
    ip = Ipv4Repr(ip4(src), ip4(dst), IPPROTO_ICMP, len(echo), ttl=64, ident=n + 1, df=True)
    return EthernetRepr(mac_bytes(eth_dst), mac_bytes(PEER_MAC), ETH_P_IP).emit(ip.emit(echo))


def ping_reply_next_hop(config, step: Step) -> str | None:
    """Where a healthy board of `config` sends the reply to a `ping` step: the neighbour it
    resolves for the echo's source (the gateway for an off-link source), or None when it
    does not reply (an echo to a broadcast address with icmp_echo_ignore_broadcasts 1,
    icmp_rcv; or no route back)."""
    from models.ipv4 import Fib

    if step.args.get("to", "board") != "board" and int(config.sysctl("net.ipv4.icmp_echo_ignore_broadcasts")):
        return None
    src, _, _ = ping_addresses(config, step)
    nh = Fib.from_config(config).next_hop(int(ipaddress.IPv4Address(src)))
    return None if nh is None else str(ipaddress.IPv4Address(nh))


def model_inputs(scenario: Scenario, config, start_ns: int = MODEL_SCENARIO_START_NS) -> list[dict[str, Any]]:
    """The scenario as the stack model's input timeline (models.board.predict's format)."""
    from models.wire import ARPOP_REPLY, ARPOP_REQUEST, ETH_P_ARP, ArpRepr, EthernetRepr, ip4, mac_bytes

    iface = config.interface
    peer_ip = ip4(peer_ip_str(config))
    board_ip = ip4(str(iface.address.ip))
    peer_mac, board_mac = mac_bytes(PEER_MAC), mac_bytes(iface.mac)
    inputs: list[dict[str, Any]] = []
    # The peer asking for the board's address (a broadcast request): slirp before each
    # connect; the deaf peer once, when it joins the wire (before the first step).
    ask = EthernetRepr(b"\xff" * 6, peer_mac, ETH_P_ARP).emit(
        ArpRepr(op=ARPOP_REQUEST, sha=peer_mac, sip=peer_ip, tha=b"\0" * 6, tip=board_ip).emit()).hex()
    # The silent or stalled peer answering the board's ARP request for it (SilentPeer).
    answer = EthernetRepr(board_mac, peer_mac, ETH_P_ARP).emit(
        ArpRepr(op=ARPOP_REPLY, sha=peer_mac, sip=peer_ip, tha=board_mac, tip=board_ip).emit()).hex()
    if scenario.peer == "deaf":
        inputs.append({"t": start_ns - DEAF_PEER_LEAD_NS, "kind": "frame", "hex": ask})
    for n, step in enumerate(scenario.steps):
        t = start_ns + step.at_ns
        if step.do in ("link_down", "link_up"):
            inputs.append({"t": t, "kind": "link", "up": step.do == "link_up"})
        elif step.do == "watchdog_start":
            inputs.append({"t": t, "kind": "watchdog_daemon_start", "timeout": step.args["timeout"],
                           "period": step.args.get("period", 1)})
        elif step.do == "watchdog_starve":
            inputs.append({"t": t, "kind": "watchdog_sigkill"})
        elif step.do == "watchdog_stop":
            inputs.append({"t": t, "kind": "watchdog_sigterm"})
        elif step.do == "reboot":
            inputs.append({"t": t, "kind": "reboot"})
        elif step.do == "frame":
            inputs.append({"t": t, "kind": "frame", "hex": step.args["hex"].replace(" ", "")})
        elif step.do == "ping":
            inputs.append({"t": t + 1_000_000, "kind": "frame", "hex": ping_frame(config, step, n).hex()})
            # the board ARPs for the reply's next hop; the silent or stalled peer answers for its own
            if scenario.peer in ("silent", "stalled") and ping_reply_next_hop(config, step) == peer_ip_str(config):
                inputs.append({"t": t + 2_000_000, "kind": "frame", "hex": answer})
        elif step.do == "board_connect":
            inputs.append({"t": t, "kind": "connect", "fd": f"board{n}", "addr": peer_ip_str(config),
                           "port": step.args["port"]})
        elif step.do == "board_close":
            fds = [f"board{i}" for i, s in enumerate(scenario.steps[:n])
                   if s.do == "board_connect" and s.args["port"] == step.args["port"]]
            if fds:
                inputs.append({"t": t, "kind": "close", "fd": fds[-1]})
        elif step.do == "connect":
            if scenario.peer == "slirp":
                # slirp asks for the board's MAC first (the board learns the peer from it), then SYNs.
                inputs.append({"t": t, "kind": "frame", "hex": ask})
            # The harness on the wire (silent, stalled or deaf peer) sends the SYN alone; the
            # board ARPs for it, and the silent or stalled peer's answer (well within a
            # millisecond) follows; the deaf peer's never does.
            frame = peer_syn_frame(config, n, connect_port(step, config), linux=scenario.peer != "slirp")
            inputs.append({"t": t + 1_000_000, "kind": "frame", "hex": frame.hex()})
            if scenario.peer in ("silent", "stalled", "idle"):
                inputs.append({"t": t + 2_000_000, "kind": "frame", "hex": answer})
    return inputs
