"""Two network namespaces joined by a veth pair, with a capture on the board side.

The host kernel plays the board in one namespace ("board") and the peer in the other.
Everything is created with names unique to the run and removed afterwards, whatever
happens; traffic never leaves the two namespaces (they have no other interfaces and no
routes but their own /24).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from models.config import SYSCTL_DEFAULTS, FirmwareConfig

BOARD_MAC = "52:54:00:12:34:56"
PEER_MAC = "52:54:00:12:35:02"
BOARD_ADDR = "10.0.2.15"
PEER_ADDR = "10.0.2.2"
PREFIXLEN = 24

PCAP_MAGIC_USEC = 0xA1B2C3D4
# include/uapi/linux/sockios.h and ethtool.h: what `ethtool -K DEV tx off` does
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x00000017
# Run inside a namespace: turn TX checksum offload off so captured frames carry real checksums
# (a veth otherwise hands CHECKSUM_PARTIAL skbs on, and the capture sees partial sums).
_TX_CSUM_OFF = f"""
import array, fcntl, socket, struct, sys
value = array.array("B", struct.pack("II", {ETHTOOL_STXCSUM}, 0))
ifr = struct.pack("16sP", sys.argv[1].encode(), value.buffer_info()[0])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(sock.fileno(), {SIOCETHTOOL}, ifr + bytes(16))   # struct ifreq is 40 bytes
"""
LINKTYPE_ETHERNET = 1


class NetnsUnavailable(RuntimeError):
    """`ip netns` cannot be used here (not root, no iproute2, no namespace support)."""


@dataclass(frozen=True)
class CapturedFrame:
    """One frame of a pcap file: its time in integer nanoseconds and its bytes."""

    t: int
    raw: bytes


def read_pcap_frames(path: Path) -> list[CapturedFrame]:
    """The records of a microsecond libpcap file of Ethernet frames (what `dumpcap -P` writes)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data, 0)
    if magic != PCAP_MAGIC_USEC or linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: not a little-endian microsecond Ethernet pcap (magic {magic:#x}, link {linktype})")
    out, offset = [], 24
    while offset + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, offset)
        offset += 16
        out.append(CapturedFrame(sec * 1_000_000_000 + usec * 1000, data[offset:offset + caplen]))
        offset += caplen
    return out


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


class NetnsPair:
    """The board and peer namespaces, their veth ends and addresses."""

    def __init__(self, tag: str | None = None):
        tag = tag or f"{os.getpid() % 10000:04d}{secrets.token_hex(2)}"
        self.board_ns = f"bmchil-b-{tag}"
        self.peer_ns = f"bmchil-p-{tag}"
        self.board_if = f"vb{tag}"     # IFNAMSIZ: at most 15 characters
        self.peer_if = f"vp{tag}"
        self._created: list[str] = []

    # -- life cycle ------------------------------------------------------------------------
    def create(self) -> None:
        if shutil.which("ip") is None:
            raise NetnsUnavailable("iproute2's `ip` is not installed")
        for ns in (self.board_ns, self.peer_ns):
            res = _run(["ip", "netns", "add", ns], check=False)
            if res.returncode != 0:
                raise NetnsUnavailable(f"`ip netns add {ns}` failed (uid {os.getuid()}): {res.stderr.strip()}")
            self._created.append(ns)
        for ns in (self.board_ns, self.peer_ns):
            # no IPv6: its router and listener reports would be noise in the capture
            self.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            self.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
        _run(["ip", "link", "add", self.board_if, "netns", self.board_ns, "address", BOARD_MAC,
              "type", "veth", "peer", "name", self.peer_if, "netns", self.peer_ns, "address", PEER_MAC])
        for ns, dev, addr in ((self.board_ns, self.board_if, BOARD_ADDR), (self.peer_ns, self.peer_if, PEER_ADDR)):
            self.ip(ns, "addr", "add", f"{addr}/{PREFIXLEN}", "dev", dev)
            self.ip(ns, "link", "set", "lo", "up")
            self.exec(ns, sys.executable, "-c", _TX_CSUM_OFF, dev)
            self.ip(ns, "link", "set", dev, "up")
        self.wait_carrier()

    def wait_carrier(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [self.exec(ns, "cat", f"/sys/class/net/{dev}/operstate").stdout.strip()
                      for ns, dev in ((self.board_ns, self.board_if), (self.peer_ns, self.peer_if))]
            if states == ["up", "up"]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"veth {self.board_if}/{self.peer_if} did not come up in {timeout} s")

    def destroy(self) -> None:
        """Delete both namespaces (the veth pair goes with them)."""
        errors = []
        for ns in reversed(self._created):
            res = _run(["ip", "netns", "del", ns], check=False)
            if res.returncode != 0:
                errors.append(f"{ns}: {res.stderr.strip()}")
        self._created.clear()
        if errors:
            raise RuntimeError("could not delete namespaces: " + "; ".join(errors))

    @staticmethod
    def list_namespaces() -> list[str]:
        return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]

    # -- commands --------------------------------------------------------------------------
    def exec(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", ns, *argv], check=check)

    def popen(self, ns: str, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def ip(self, ns: str, *args: str) -> None:
        self.exec(ns, "ip", *args)

    def sysctl(self, ns: str, name: str, value: str) -> None:
        self.exec(ns, "sh", "-c", f"echo '{value}' > /proc/sys/{name.replace('.', '/')}")

    def read_sysctl(self, ns: str, name: str) -> str:
        return " ".join(self.exec(ns, "cat", f"/proc/sys/{name.replace('.', '/')}").stdout.split())

    def board_config(self, services: dict | None = None) -> FirmwareConfig:
        """The model's config for the board namespace: its addresses and its own sysctls.

        The neighbour parameters are read from the veth's own directory: a namespace has no
        `neigh/default` of its own, and the device's values are what it runs with anyway."""
        sysctls: dict[str, int | str] = {}
        for name, default in SYSCTL_DEFAULTS.items():
            path = name.replace(".neigh.default.", f".neigh.{self.board_if}.")
            text = self.read_sysctl(self.board_ns, path)
            sysctls[name] = int(text) if isinstance(default, int) else text
        return FirmwareConfig.from_dict({
            "interface": {"address": f"{BOARD_ADDR}/{PREFIXLEN}", "gateway": PEER_ADDR, "mac": BOARD_MAC},
            "sysctls": sysctls, "services": services or {},
        }, source=f"netns {self.board_ns}")

    # -- capture ---------------------------------------------------------------------------
    @contextmanager
    def capture(self, path: Path, timeout: float = 10.0) -> Iterator[Path]:
        """dumpcap on the board's veth inside its namespace, pcap format; stopped on exit."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.board_ns, "dumpcap", "-q", "-P", "-i", self.board_if,
                                 "-f", "arp or ip", "-w", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + timeout
            # dumpcap writes the file header once the interface is open
            while not (path.exists() and path.stat().st_size >= 24):
                if proc.poll() is not None:
                    raise RuntimeError(f"dumpcap exited {proc.returncode}: {proc.stderr.read()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dumpcap did not start capturing on {self.board_if} in {timeout} s")
                time.sleep(0.05)
            time.sleep(0.2)
            yield path
            # libpcap's TPACKET_V3 ring hands packets to dumpcap a block at a time, after a
            # read timeout; dumpcap does not drain a pending block on SIGINT. Wait until
            # the file has stopped growing for longer than that timeout.
            size, stable_since = path.stat().st_size, time.monotonic()
            deadline = time.monotonic() + timeout
            while time.monotonic() - stable_since < 1.0 and time.monotonic() < deadline:
                time.sleep(0.1)
                if path.stat().st_size != size:
                    size, stable_since = path.stat().st_size, time.monotonic()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
