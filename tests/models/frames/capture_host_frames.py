"""Capture real Linux frames from the host kernel through a TAP device (needs root).

Run: `ip netns add bmchil-frames && ip netns exec bmchil-frames python
tests/models/frames/capture_host_frames.py > tests/models/frames/host_linux.json;
ip netns del bmchil-frames`. The namespace isolates it from every real network.
This process plays the peer (10.0.2.2, 52:54:00:12:35:02) by writing frames into the TAP
fd; the kernel plays the board (10.0.2.15). TAP without offloads makes the kernel finish
every checksum, so the frames are exactly what a NIC would put on the wire.
The fixture records the host kernel release: the option layout is the same as 6.1's,
but window, window scale and randomised fields are the host's, not the board's.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import select
import socket
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
PEER_MAC = bytes.fromhex("525400123502")
BOARD_MAC = bytes.fromhex("525400123456")
PEER_IP = bytes([10, 0, 2, 2])
BOARD_IP = bytes([10, 0, 2, 15])


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(proto: int, payload: bytes, ident: int) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, PEER_IP, BOARD_IP)
    return head[:10] + struct.pack("!H", csum(head)) + head[12:] + payload


def tcp_syn(sport: int, dport: int, seq: int) -> bytes:
    # The peer's SYN: MSS 1460, SACK_PERM, TS, NOP, WS 7 (a Linux client's layout).
    opts = bytes.fromhex("020405b4") + bytes.fromhex("0402080a") + struct.pack("!II", 12345, 0) + bytes.fromhex("01030307")
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (20 + len(opts)) // 4 << 4, 0x02, 64240, 0, 0) + opts
    pseudo = PEER_IP + BOARD_IP + struct.pack("!BBH", 0, 6, len(head))
    return head[:16] + struct.pack("!H", csum(pseudo + head)) + head[18:]


def eth(payload: bytes, ethertype: int, dst: bytes = BOARD_MAC) -> bytes:
    return dst + PEER_MAC + struct.pack("!H", ethertype) + payload


def main() -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tap0", IFF_TAP | IFF_NO_PI))
    for cmd in ("ip link set lo up", "ip link set tap0 address 52:54:00:12:34:56",
                "ip addr add 10.0.2.15/24 dev tap0", "ip link set tap0 up",
                "sysctl -qw net.ipv6.conf.tap0.disable_ipv6=1"):
        subprocess.run(cmd.split(), check=True)
    listener = socket.socket()
    listener.bind(("10.0.2.15", 22))
    listener.listen(8)
    time.sleep(0.3)

    def read_until(pred, timeout=3.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                frame = os.read(fd, 2048)
                if pred(frame):
                    return frame
        raise SystemExit("no frame")

    frames = {}
    arp_req = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, PEER_MAC, PEER_IP, b"\0" * 6, BOARD_IP)
    frames["peer_arp_request"] = eth(arp_req, 0x0806, b"\xff" * 6)
    os.write(fd, frames["peer_arp_request"])
    frames["linux_arp_reply"] = read_until(lambda f: f[12:14] == b"\x08\x06" and f[21] == 2)
    frames["peer_syn"] = eth(ipv4(6, tcp_syn(40000, 22, 1000), 1), 0x0800)
    os.write(fd, frames["peer_syn"])
    frames["linux_syn_ack"] = read_until(lambda f: f[12:14] == b"\x08\x00" and f[23] == 6 and f[47] == 0x12)
    frames["peer_syn_closed_port"] = eth(ipv4(6, tcp_syn(40001, 23, 5000), 2), 0x0800)
    os.write(fd, frames["peer_syn_closed_port"])
    frames["linux_rst_ack"] = read_until(lambda f: f[12:14] == b"\x08\x00" and f[23] == 6 and f[47] & 0x04)
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + bytes(range(56))
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    frames["peer_echo_request"] = eth(ipv4(1, icmp, 3), 0x0800)
    os.write(fd, frames["peer_echo_request"])
    frames["linux_echo_reply"] = read_until(lambda f: f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 0)
    # The kernel as a client: connect out to a peer it has in its ARP cache (learned above).
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("10.0.2.2", 80))
    frames["linux_syn"] = read_until(lambda f: f[12:14] == b"\x08\x00" and f[23] == 6 and f[47] == 0x02)
    # ARP resolution of an unknown neighbour: the broadcast request.
    client2 = socket.socket()
    client2.setblocking(False)
    client2.connect_ex(("10.0.2.3", 80))
    frames["linux_arp_request"] = read_until(lambda f: f[12:14] == b"\x08\x06" and f[21] == 1)
    json.dump({"kernel": platform.release(), "python": sys.version.split()[0],
               "frames": {k: v.hex() for k, v in frames.items()}}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
