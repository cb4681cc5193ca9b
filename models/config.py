"""The firmware config: what a board's firmware is (or is declared to be).

One schema serves two readers. The emulated image recipe builds an initramfs that
applies it at boot; the stack model reads it as the board's *declared* config. An image
built from a config that differs from the declared one is how tests seed firmware faults.

This module only validates plain data (the dict a YAML loader returns); reading the file
is the harness's job, which passes the file name in so errors can name it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import HZ
from .wire.ipv4 import INET_ECN_MASK

__all__ = [
    "ConfigError",
    "FirmwareConfig",
    "Interface",
    "Route",
    "Service",
    "Watchdog",
    "SYSCTL_DEFAULTS",
    "SYSCTL_BOUNDS",
    "SysctlBound",
    "SERVICE_IP_TOS_DEFAULTS",
    "SERVICE_KEEPALIVE_DEFAULTS",
    "SERVICE_LISTEN_BACKLOG",
]


class ConfigError(ValueError):
    """A config document does not fit the schema; names the source and the field."""

    def __init__(self, source: str, field_path: str, problem: str):
        self.source = source
        self.field = field_path
        self.problem = problem
        super().__init__(f"{source}: {field_path}: {problem}")


# Linux 6.1 defaults of the sysctls the firmware config may set, as the emulated AST2500
# (512 MB, 32-bit ARM) runs with them: every value was read off the running board's
# /proc/sys (tests/emulated/test_sysctl_defaults.py checks them). Some depend on the board:
# tcp_rmem[2] is tcp_init()'s max(131072, nr_free_buffer_pages-based share) of its RAM
# (so of what the initramfs leaves free: the pkt agent's 0.6 MB moved it by 2400);
# rmem_max (SK_RMEM_MAX) and unres_qlen_bytes (SK_WMEM_MAX) are 256 * SKB_TRUESIZE(256),
# which depends on sizeof(struct sk_buff) on 32-bit ARM.
# Neighbour parameters are given under `net.ipv4.neigh.default.`; the image applies
# them to eth0 as well (eth0 exists before /init runs, so `default` alone would miss it).
SYSCTL_DEFAULTS: dict[str, int | str] = {
    "net.ipv4.tcp_syn_retries": 6,
    "net.ipv4.tcp_synack_retries": 5,
    "net.ipv4.tcp_timestamps": 1,
    "net.ipv4.tcp_sack": 1,
    "net.ipv4.tcp_window_scaling": 1,
    "net.ipv4.tcp_retries1": 3,
    "net.ipv4.tcp_retries2": 15,
    "net.ipv4.tcp_early_retrans": 3,
    "net.ipv4.tcp_fin_timeout": 60,
    "net.ipv4.tcp_keepalive_time": 7200,
    "net.ipv4.tcp_keepalive_intvl": 75,
    "net.ipv4.tcp_keepalive_probes": 9,
    "net.ipv4.tcp_max_syn_backlog": 128,
    "net.ipv4.tcp_syncookies": 1,
    # tcp_v4_send_synack / tcp_v4_syn_recv_sock: 1 takes the SYN's DSCP for the SYN-ACK and
    # the child socket instead of the listener's TOS (new in 5.10, off by default)
    "net.ipv4.tcp_reflect_tos": 0,
    "net.ipv4.ip_default_ttl": 64,
    "net.ipv4.ip_no_pmtu_disc": 0,
    "net.ipv4.ip_local_port_range": "32768 60999",
    "net.ipv4.tcp_rmem": "4096 131072 3979104",
    "net.core.rmem_max": 180224,
    "net.ipv4.tcp_adv_win_scale": 1,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv4.neigh.default.unres_qlen_bytes": 180224,
    "net.ipv4.neigh.default.base_reachable_time_ms": 30000,
    "net.ipv4.neigh.default.retrans_time_ms": 1000,
    "net.ipv4.neigh.default.delay_first_probe_time": 5,
    "net.ipv4.neigh.default.gc_stale_time": 60,
    "net.ipv4.neigh.default.mcast_solicit": 3,
    "net.ipv4.neigh.default.ucast_solicit": 3,
    "net.ipv4.neigh.default.app_solicit": 0,
    # IN_DEV_ANDCONF: eth0 evicts its neighbours on carrier loss only if `all` says so too
    "net.ipv4.conf.all.arp_evict_nocarrier": 1,
    "net.core.somaxconn": 4096,
}

INT_MAX = 2**31 - 1
U8_MAX = 255
# proc_dointvec_jiffies (kernel/sysctl.c do_proc_dointvec_jiffies_conv) takes seconds and
# refuses more than INT_MAX / HZ of them (the value is kept in jiffies, an int).
JIFFIES_SECS_MAX = INT_MAX // HZ


@dataclass(frozen=True)
class SysctlBound:
    """What Linux 6.1 lets `echo VALUE > /proc/sys/...` write: `low..high`, and the
    ctl_table entry's proc_handler (and extra1/extra2) that enforces it."""

    low: int
    high: int
    handler: str


def _u8(low: int = 0, high: int = U8_MAX, extra: str = "no extra1/extra2: a u8") -> SysctlBound:
    return SysctlBound(low, high, f"proc_dou8vec_minmax, {extra}")


# Every integer sysctl the config may set, with Linux 6.1's own bounds: the proc_handler and
# extra1/extra2 of its ctl_table entry in net/ipv4/sysctl_net_ipv4.c (ipv4_net_table),
# net/core/sysctl_net_core.c (net_core_table, netns_core_table), net/core/neighbour.c
# (neigh_sysctl_template) and net/ipv4/devinet.c (devinet_sysctl). Where a handler takes
# any int (proc_dointvec) or a negative number of seconds (proc_dointvec_jiffies), the
# schema takes 0 as the low end: a negative count or time means nothing to these sysctls.
SYSCTL_BOUNDS: dict[str, SysctlBound] = {
    "net.ipv4.tcp_syn_retries": _u8(1, 127, "tcp_syn_retries_min..tcp_syn_retries_max, MAX_TCP_SYNCNT"),
    "net.ipv4.tcp_synack_retries": _u8(),
    "net.ipv4.tcp_timestamps": _u8(),
    "net.ipv4.tcp_sack": _u8(),
    "net.ipv4.tcp_window_scaling": _u8(),
    "net.ipv4.tcp_retries1": _u8(0, 255, "extra2 tcp_retr1_max"),
    "net.ipv4.tcp_retries2": _u8(),
    "net.ipv4.tcp_early_retrans": _u8(0, 4, "SYSCTL_ZERO..SYSCTL_FOUR"),
    "net.ipv4.tcp_fin_timeout": SysctlBound(0, JIFFIES_SECS_MAX, "proc_dointvec_jiffies, at most INT_MAX / HZ s"),
    "net.ipv4.tcp_keepalive_time": SysctlBound(0, JIFFIES_SECS_MAX, "proc_dointvec_jiffies, at most INT_MAX / HZ s"),
    "net.ipv4.tcp_keepalive_intvl": SysctlBound(0, JIFFIES_SECS_MAX, "proc_dointvec_jiffies, at most INT_MAX / HZ s"),
    "net.ipv4.tcp_keepalive_probes": _u8(),
    "net.ipv4.tcp_max_syn_backlog": SysctlBound(0, INT_MAX, "proc_dointvec, an int"),
    "net.ipv4.tcp_syncookies": _u8(),
    "net.ipv4.tcp_reflect_tos": _u8(0, 1, "SYSCTL_ZERO..SYSCTL_ONE"),
    "net.ipv4.ip_default_ttl": _u8(1, 255, "ip_ttl_min..ip_ttl_max"),
    "net.ipv4.ip_no_pmtu_disc": _u8(),
    "net.ipv4.tcp_adv_win_scale": SysctlBound(-31, 31, "proc_dointvec_minmax, tcp_adv_win_scale_min..max"),
    "net.ipv4.icmp_echo_ignore_broadcasts": _u8(0, 1, "SYSCTL_ZERO..SYSCTL_ONE"),
    # extra1 min_rcvbuf: SOCK_MIN_RCVBUF = 2048 + SKB_DATA_ALIGN(sizeof(struct sk_buff)), 2240 on the board
    "net.core.rmem_max": SysctlBound(2240, INT_MAX, "proc_dointvec_minmax, extra1 min_rcvbuf (SOCK_MIN_RCVBUF)"),
    "net.core.somaxconn": SysctlBound(0, INT_MAX, "proc_dointvec_minmax, extra1 SYSCTL_ZERO"),
    "net.ipv4.neigh.default.unres_qlen_bytes": SysctlBound(0, INT_MAX, "neigh_proc_dointvec_zero_intmax"),
    # neigh_proc_dointvec_ms_jiffies: msecs_to_jiffies(ms) must fit an int, which any
    # int of ms does at HZ=100 (base_reachable_time_ms: via neigh_proc_base_reachable_time)
    "net.ipv4.neigh.default.base_reachable_time_ms": SysctlBound(0, INT_MAX, "neigh_proc_dointvec_ms_jiffies"),
    "net.ipv4.neigh.default.retrans_time_ms": SysctlBound(0, INT_MAX, "neigh_proc_dointvec_ms_jiffies"),
    "net.ipv4.neigh.default.delay_first_probe_time": SysctlBound(0, JIFFIES_SECS_MAX,
                                                                 "neigh_proc_dointvec_jiffies, at most INT_MAX / HZ s"),
    "net.ipv4.neigh.default.gc_stale_time": SysctlBound(0, JIFFIES_SECS_MAX,
                                                        "neigh_proc_dointvec_jiffies, at most INT_MAX / HZ s"),
    "net.ipv4.neigh.default.mcast_solicit": SysctlBound(0, INT_MAX, "neigh_proc_dointvec_zero_intmax"),
    "net.ipv4.neigh.default.ucast_solicit": SysctlBound(0, INT_MAX, "neigh_proc_dointvec_zero_intmax"),
    "net.ipv4.neigh.default.app_solicit": SysctlBound(0, INT_MAX, "neigh_proc_dointvec_zero_intmax"),
    "net.ipv4.conf.all.arp_evict_nocarrier": SysctlBound(0, INT_MAX, "devinet_conf_proc (proc_dointvec), an int"),
}
# tcp_rmem's ctl_table: proc_dointvec_minmax with extra1 = &tcp_min_rcvbuf (4096) per value
TCP_MIN_RCVBUF = 4096
# ip_local_port_range's own handler, ipv4_local_port_range: each end in
# ip_local_port_range_min..max (1..65535), the high end not below the low, and the low end
# not below ip_unprivileged_port_start (sysctl_ip_prot_sock: PROT_SOCK, 1024, which the
# config cannot change).
PROT_SOCK = 1024

# interface.mtu: ftgmac100 sets no min_mtu/max_mtu of its own, so alloc_etherdev's
# ether_setup (net/ethernet/eth.c) leaves ETH_MIN_MTU..ETH_DATA_LEN, which dev_validate_mtu
# (net/core/dev.c) enforces on `ip link set eth0 mtu N`.
ETH_MIN_MTU = 68
ETH_DATA_LEN = 1500
# interface.name: dev_valid_name (net/core/dev.c): not empty, shorter than IFNAMSIZ (16,
# with the NUL), not "." or "..", and no '/', ':' or isspace() byte (lib/ctype.c: \t \n
# \v \f \r, space and 0xa0).
IFNAMSIZ = 16
_IFNAME_BAD_BYTES = frozenset(b"/:\t\n\v\f\r \xa0\0")
# watchdog.timeout: aspeed_wdt (drivers/watchdog/aspeed_wdt.c) sets max_hw_heartbeat_ms to
# WDT_MAX_TIMEOUT_MS, 4294967 (a 32-bit reload counter at 1 MHz): 4294 whole seconds. A
# longer timeout would be the watchdog core's software keepalive, not the counter the model
# reads. It sets no min_timeout; a timeout of 0 reloads the counter with 0 and resets the
# board at once, so the schema asks for 1 s at least. The kick period (busybox `watchdog
# -t`) is kept in the same range, and below the timeout.
WDT_TIMEOUT_MIN = 1
WDT_TIMEOUT_MAX = 4294967 // 1000
PORT_MIN, PORT_MAX = 1, 65535

# What YAML 1.1 took for booleans and YAML 1.2 (how the harness reads files) takes for text.
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n"}

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_KNOWN_SERVICES = {"ssh": 22, "http": 80}
# The TOS byte each daemon of the emulated image sets on its listening socket with
# setsockopt(IP_TOS), which the SYN-ACK and the accepted connection inherit:
# - dropbear (2022.82 and later): listensockets() -> set_sock_priority(DROPBEAR_PRIO_LOWDELAY)
#   sets IPTOS_DSCP_AF21 (0x48) on every listening socket; `dropbear -z` sets none.
# - busybox httpd sets no IP_TOS: the socket keeps inet_create()'s 0.
SERVICE_IP_TOS_DEFAULTS = {"ssh": 0x48, "http": 0x00}
# Whether each daemon sets SO_KEEPALIVE on the connections it accepts (sock_setsockopt ->
# tcp_set_keepalive, which arms the keepalive timer keepalive_time ahead):
# - busybox httpd (1.35) does, on every accepted socket right after accept() and before it
#   forks the child (mini_httpd: setsockopt_keepalive), "to cull dead connections"; seen on
#   the emulated board: the accepted socket's /proc/net/tcp6 timer column is 2 (keepalive).
# - dropbear (2022.83) sets none: its accepted sockets show no timer when idle.
SERVICE_KEEPALIVE_DEFAULTS = {"ssh": False, "http": True}
# The backlog each daemon of the emulated image passes to listen() (then capped by
# net.core.somaxconn in __sys_listen):
# - dropbear 2022.83: dropbear_listen() calls listen(sock, DROPBEAR_LISTEN_BACKLOG), which
#   sysoptions.h makes the larger of MAX_UNAUTH_CLIENTS (30) and MAX_CHANNELS (1000).
# - busybox 1.35 httpd: openServer() calls xlisten(n, 9).
SERVICE_LISTEN_BACKLOG = {"ssh": 1000, "http": 9}


@dataclass(frozen=True)
class Route:
    """One row of the route table, in the terms of /proc/net/route."""

    destination: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None = None
    metric: int = 0


@dataclass(frozen=True)
class Interface:
    """eth0 as the firmware configures it."""

    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None
    mac: str
    mtu: int = 1500
    name: str = "eth0"


@dataclass(frozen=True)
class Service:
    """A TCP service the firmware starts (dropbear for ssh, busybox httpd for http), with the
    socket options its daemon sets on the listening socket.

    `ip_tos`: setsockopt(IP_TOS) on the listener (inet_sk(sk)->tos). tcp_v4_send_synack puts
    it in every SYN-ACK, and the accepted socket inherits it (sk_clone_lock), unless
    net.ipv4.tcp_reflect_tos is 1. Defaults: SERVICE_IP_TOS_DEFAULTS.

    `backlog`: what the daemon passes to listen() (SERVICE_LISTEN_BACKLOG, the image's
    daemons; not a config key: the image cannot change it). Capped by net.core.somaxconn,
    it bounds the SYN queue (inet_csk_reqsk_queue_is_full) and the accept queue.

    `keepalive`: the daemon sets SO_KEEPALIVE on each connection it accepts, right after
    accept() (tcp_set_keepalive arms tcp_keepalive_timer then); an idle peer then gets
    keepalive probes and, unanswered, a RST. Defaults: SERVICE_KEEPALIVE_DEFAULTS.
    """

    name: str
    port: int
    enabled: bool = True
    ip_tos: int = 0
    backlog: int | None = None   # None: the daemon's own, SERVICE_LISTEN_BACKLOG[name]
    keepalive: bool = False

    def __post_init__(self):
        if self.backlog is None:
            object.__setattr__(self, "backlog", SERVICE_LISTEN_BACKLOG[self.name])


@dataclass(frozen=True)
class Watchdog:
    """The AST2500 watchdog as the firmware arms it.

    `daemon`: start busybox `watchdog -T timeout -t period` at boot. The aspeed_wdt
    driver's own default timeout is 30 s.
    """

    timeout: int = 30
    daemon: bool = False
    period: int = 1


@dataclass(frozen=True)
class FirmwareConfig:
    """The whole firmware config. Build with `from_dict`; `to_dict` round-trips."""

    hostname: str
    interface: Interface
    routes: tuple[Route, ...] = ()
    sysctls: Mapping[str, int | str] = field(default_factory=dict)
    services: tuple[Service, ...] = ()
    watchdog: Watchdog = Watchdog()

    # -- reading -------------------------------------------------------------------
    def sysctl(self, name: str) -> int | str:
        """The value the firmware runs with: the config's, else Linux's default."""
        if name not in SYSCTL_DEFAULTS:
            raise KeyError(f"unknown sysctl {name!r}")
        return self.sysctls.get(name, SYSCTL_DEFAULTS[name])

    def service(self, name: str) -> Service | None:
        for svc in self.services:
            if svc.name == name:
                return svc
        return None

    @property
    def listening_ports(self) -> tuple[int, ...]:
        return tuple(sorted(s.port for s in self.services if s.enabled))

    def route_table(self) -> tuple[Route, ...]:
        """The full table Linux builds: the on-link prefix, the default route, extras."""
        table = [Route(self.interface.address.network, None, 0)]
        if self.interface.gateway is not None:
            table.append(Route(ipaddress.IPv4Network("0.0.0.0/0"), self.interface.gateway, 0))
        table.extend(self.routes)
        return tuple(table)

    # -- (de)serialisation ---------------------------------------------------------
    @classmethod
    def default(cls) -> FirmwareConfig:
        """The config the built-in emulated image ships (QEMU user-networking addresses)."""
        return cls.from_dict(DEFAULT_CONFIG, source="<built-in default>")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<config>") -> FirmwareConfig:
        """Validate `data`; a `ConfigError` names `source` and the offending field."""
        r = _Reader(source)
        top = r.mapping(data, "", required={"interface"},
                        optional={"hostname", "routes", "sysctls", "services", "watchdog"})
        iface = r.mapping(top["interface"], "interface", required={"address", "mac"},
                          optional={"gateway", "mtu", "name"})
        address = r.parse(iface["address"], "interface.address", ipaddress.IPv4Interface,
                          "an IPv4 address with prefix, like 10.0.2.15/24")
        if "/" not in str(iface["address"]):
            raise ConfigError(source, "interface.address", "needs a prefix length, like 10.0.2.15/24")
        gateway = None
        if iface.get("gateway") is not None:
            gateway = r.parse(iface["gateway"], "interface.gateway", ipaddress.IPv4Address,
                              "an IPv4 address")
            if gateway not in address.network:
                raise ConfigError(source, "interface.gateway",
                                  f"{gateway} is not on the interface's network {address.network}")
        if isinstance(iface["mac"], (int, float)) and not isinstance(iface["mac"], bool):
            raise ConfigError(source, "interface.mac",
                              f"got the number {iface['mac']!r}, not a MAC: write it quoted, like "
                              f"mac: \"52:54:00:12:34:56\" (YAML 1.1 reads an unquoted MAC of digits as a "
                              f"base-60 integer)")
        mac = r.typed(iface["mac"], "interface.mac", str).lower()
        if not _MAC_RE.match(mac):
            raise ConfigError(source, "interface.mac", f"expected a MAC like 52:54:00:12:34:56, got {mac!r}")
        if int(mac[:2], 16) & 1:
            raise ConfigError(source, "interface.mac", f"{mac} is a multicast address")
        if mac == "00:00:00:00:00:00":   # eth_prepare_mac_addr_change: !is_valid_ether_addr
            raise ConfigError(source, "interface.mac", f"{mac} is not a MAC Linux takes (is_valid_ether_addr)")
        mtu = r.int_range(iface.get("mtu", ETH_DATA_LEN), "interface.mtu", ETH_MIN_MTU, ETH_DATA_LEN,
                          "ftgmac100's ether_setup range, ETH_MIN_MTU..ETH_DATA_LEN")
        name = _ifname(r.typed(iface.get("name", "eth0"), "interface.name", str), source, "interface.name")
        interface = Interface(address=address, gateway=gateway, mac=mac, mtu=mtu, name=name)

        routes = []
        for i, item in enumerate(r.sequence(top.get("routes", []), "routes")):
            where = f"routes[{i}]"
            rt = r.mapping(item, where, required={"destination"}, optional={"gateway", "metric"})
            dest = r.parse(rt["destination"], f"{where}.destination", ipaddress.IPv4Network,
                           "an IPv4 network like 192.168.1.0/24")
            gw = None
            if rt.get("gateway") is not None:
                gw = r.parse(rt["gateway"], f"{where}.gateway", ipaddress.IPv4Address, "an IPv4 address")
            routes.append(Route(dest, gw, r.int_range(rt.get("metric", 0), f"{where}.metric", 0, INT_MAX)))

        sysctls: dict[str, int | str] = {}
        for key, value in r.mapping(top.get("sysctls", {}), "sysctls", optional=None).items():
            where = f"sysctls.{key}"
            if key not in SYSCTL_DEFAULTS:
                raise ConfigError(source, where, "unknown sysctl; known: " + ", ".join(sorted(SYSCTL_DEFAULTS)))
            default = SYSCTL_DEFAULTS[key]
            if isinstance(default, int):
                bound = SYSCTL_BOUNDS[key]
                sysctls[key] = r.int_range(value, where, bound.low, bound.high, f"Linux 6.1: {bound.handler}")
            elif key == "net.ipv4.tcp_rmem":
                sysctls[key] = _rmem_triple(r.typed(value, where, str), source, where)
            else:
                sysctls[key] = _port_range(r.typed(value, where, str), source, where)

        services = []
        raw_services = r.mapping(top.get("services", {}), "services", optional=set(_KNOWN_SERVICES))
        for sname in _KNOWN_SERVICES:
            if sname not in raw_services:
                continue
            where = f"services.{sname}"
            spec = raw_services[sname]
            if isinstance(spec, str) and spec.lower() in _YAML11_BOOLS:
                raise ConfigError(source, where, f"got the text {spec!r}: write false to leave the service out, "
                                                 f"or a mapping like {{port: {_KNOWN_SERVICES[sname]}}}")
            if spec is False or spec is None:
                services.append(Service(sname, _KNOWN_SERVICES[sname], enabled=False,
                                        ip_tos=SERVICE_IP_TOS_DEFAULTS[sname],
                                        keepalive=SERVICE_KEEPALIVE_DEFAULTS[sname]))
                continue
            sv = r.mapping(spec, where, optional={"port", "enabled", "ip_tos", "keepalive"})
            ip_tos = r.int_range(sv.get("ip_tos", SERVICE_IP_TOS_DEFAULTS[sname]), f"{where}.ip_tos", 0, 255)
            if ip_tos & INET_ECN_MASK:
                raise ConfigError(source, f"{where}.ip_tos",
                                  f"0x{ip_tos:02x} sets ECN bits (0x03), which Linux ignores in IP_TOS on a TCP "
                                  f"socket (__ip_sock_set_tos); the socket would send 0x{ip_tos & ~INET_ECN_MASK:02x}")
            services.append(Service(
                sname,
                r.int_range(sv.get("port", _KNOWN_SERVICES[sname]), f"{where}.port", PORT_MIN, PORT_MAX),
                r.typed(sv.get("enabled", True), f"{where}.enabled", bool),
                ip_tos,
                keepalive=r.typed(sv.get("keepalive", SERVICE_KEEPALIVE_DEFAULTS[sname]), f"{where}.keepalive", bool),
            ))
        ports = [s.port for s in services if s.enabled]
        if len(ports) != len(set(ports)):
            raise ConfigError(source, "services", f"two services share a port: {ports}")

        wd = r.mapping(top.get("watchdog", {}), "watchdog", optional={"timeout", "daemon", "period"})
        watchdog = Watchdog(
            timeout=r.int_range(wd.get("timeout", 30), "watchdog.timeout", WDT_TIMEOUT_MIN, WDT_TIMEOUT_MAX,
                                "seconds within aspeed_wdt's max_hw_heartbeat_ms"),
            daemon=r.typed(wd.get("daemon", False), "watchdog.daemon", bool),
            period=r.int_range(wd.get("period", 1), "watchdog.period", WDT_TIMEOUT_MIN, WDT_TIMEOUT_MAX),
        )
        if watchdog.daemon and watchdog.period >= watchdog.timeout:
            raise ConfigError(source, "watchdog.period",
                              f"kick period {watchdog.period} s must be shorter than the timeout {watchdog.timeout} s")
        hostname = r.typed(top.get("hostname", "bmc"), "hostname", str)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", hostname):
            raise ConfigError(source, "hostname", f"not a valid host name: {hostname!r}")
        return cls(hostname=hostname, interface=interface, routes=tuple(routes), sysctls=sysctls,
                   services=tuple(services), watchdog=watchdog)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back to an equal config (also the cache key)."""
        iface = self.interface
        return {
            "hostname": self.hostname,
            "interface": {
                "name": iface.name,
                "address": str(iface.address),
                "gateway": None if iface.gateway is None else str(iface.gateway),
                "mac": iface.mac,
                "mtu": iface.mtu,
            },
            "routes": [
                {"destination": str(rt.destination),
                 "gateway": None if rt.gateway is None else str(rt.gateway),
                 "metric": rt.metric}
                for rt in self.routes
            ],
            "sysctls": dict(sorted(self.sysctls.items())),
            "services": {s.name: {"port": s.port, "enabled": s.enabled, "ip_tos": s.ip_tos, "keepalive": s.keepalive}
                         for s in self.services},
            "watchdog": {"timeout": self.watchdog.timeout, "daemon": self.watchdog.daemon,
                         "period": self.watchdog.period},
        }


DEFAULT_CONFIG: dict[str, Any] = {
    "hostname": "bmc",
    "interface": {
        "address": "10.0.2.15/24",
        "gateway": "10.0.2.2",
        "mac": "52:54:00:12:34:56",
        "mtu": 1500,
    },
    "services": {"ssh": {"port": 22}, "http": {"port": 80}},
    "watchdog": {"timeout": 30, "daemon": False, "period": 1},
}


def _port_range(text: str, source: str, where: str) -> str:
    """'LOW HIGH' as ipv4_local_port_range takes it (see PROT_SOCK)."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts) \
            or not PROT_SOCK <= int(parts[0]) <= int(parts[1]) <= PORT_MAX:
        raise ConfigError(source, where, f"expected two ports 'LOW HIGH' with {PROT_SOCK} <= LOW <= HIGH <= {PORT_MAX} "
                                         f"(Linux 6.1: ipv4_local_port_range; LOW not below ip_unprivileged_port_start), "
                                         f"got {text!r}")
    return f"{int(parts[0])} {int(parts[1])}"


def _ifname(name: str, source: str, where: str) -> str:
    """An interface name Linux takes (dev_valid_name; see IFNAMSIZ)."""
    raw = name.encode("utf-8", "surrogatepass")
    if not raw or len(raw) >= IFNAMSIZ or name in (".", "..") or _IFNAME_BAD_BYTES & set(raw):
        raise ConfigError(source, where, f"not an interface name Linux takes (dev_valid_name: 1..{IFNAMSIZ - 1} bytes, "
                                         f"not . or .., no '/', ':' or white space), got {name!r}")
    return name


def _rmem_triple(text: str, source: str, where: str) -> str:
    """'MIN DEFAULT MAX' as proc_dointvec_minmax takes it: three integers, each at least
    tcp_min_rcvbuf. Like the kernel, it does not require them to be in order."""
    parts = text.split()
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts) or \
            not all(TCP_MIN_RCVBUF <= int(p) <= INT_MAX for p in parts):
        raise ConfigError(source, where,
                          f"expected three byte counts 'MIN DEFAULT MAX', each {TCP_MIN_RCVBUF}..{INT_MAX} "
                          f"(Linux 6.1: proc_dointvec_minmax, extra1 tcp_min_rcvbuf), got {text!r}")
    return " ".join(str(int(p)) for p in parts)


def rmem_triple(value: int | str) -> tuple[int, int, int]:
    """A validated tcp_rmem value as its three integers."""
    low, default, high = (int(p) for p in str(value).split())
    return low, default, high


class _Reader:
    """Typed access to untrusted plain data, raising ConfigError with the field path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(self.source, where or "<top>", problem)

    def mapping(self, value: Any, where: str, required: set[str] = frozenset(),
                optional: set[str] | None = frozenset()) -> dict:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        for key in required:
            if key not in value:
                raise self.fail(_join(where, key), "missing (required)")
        if optional is not None:
            allowed = set(required) | set(optional)
            for key in value:
                if key not in allowed:
                    raise self.fail(_join(where, str(key)),
                                    "unknown field; expected one of " + ", ".join(sorted(allowed)))
        return dict(value)

    def sequence(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def typed(self, value: Any, where: str, kind: type):
        if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
            hint = ""
            if kind is str and isinstance(value, (bool, int, float)):
                hint = " (write it quoted to keep it as text)"
            elif kind is bool and isinstance(value, str) and value.lower() in _YAML11_BOOLS:
                hint = f" (write true or false: the file is read as YAML 1.2, where {value!r} is text)"
            raise self.fail(where, f"expected {kind.__name__}, got {type(value).__name__} {value!r}{hint}")
        return value

    def int_range(self, value: Any, where: str, low: int, high: int, why: str = "") -> int:
        value = self.typed(value, where, int)
        if not low <= value <= high:
            raise self.fail(where, f"expected an integer in {low}..{high}{f' ({why})' if why else ''}, got {value}")
        return value

    def parse(self, value: Any, where: str, kind, expected: str):
        if not isinstance(value, str):
            raise self.fail(where, f"expected {expected}, got {type(value).__name__} {value!r}")
        try:
            return kind(value)
        except ValueError as exc:
            raise self.fail(where, f"expected {expected}, got {value!r} ({exc})") from exc


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
