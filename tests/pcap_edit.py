"""Edits of a run's classic (ns) capture for the oracle's tests: a board frame moved in
time, or its TCP timestamp changed with the checksum kept right, as a board that behaved
that way would have left it."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from pathlib import Path

from models.wire._header import internet_checksum
from models.wire.ethernet import EthernetRepr
from models.wire.ipv4 import IPPROTO_TCP, Ipv4Repr
from models.wire.tcp import TCPOPT_TIMESTAMP, TcpRepr

_REC = struct.Struct("<IIII")


def _board_ipv4(pcap: Path, board_ip: int):
    """(record offset, frame offset, the frame's IPv4 header offset, Ipv4Repr, its payload)
    of each IPv4 packet the board sent."""
    raw = pcap.read_bytes()
    off = 24
    while off < len(raw):
        incl = _REC.unpack_from(raw, off)[2]
        frame = raw[off + 16:off + 16 + incl]
        eth, packet = EthernetRepr.parse(frame)
        if eth.ethertype == 0x0800:
            ip, payload = Ipv4Repr.parse(packet)
            if ip.src == board_ip:
                yield off, off + 16, off + 16 + len(frame) - len(packet), ip, payload
        off += 16 + incl


def board_tcp(pcap: Path, board_ip: int) -> list[tuple[int, int, TcpRepr, bytes]]:
    """(record offset, TCP header offset, header, payload) of the board's TCP segments."""
    out = []
    for rec, _, ip_at, ip, segment in _board_ipv4(pcap, board_ip):
        if ip.protocol == IPPROTO_TCP:
            tcp, payload = TcpRepr.parse(segment, ip.src, ip.dst)
            out.append((rec, ip_at + ip.header_len, tcp, payload))
    return out


def edit_board_segment(pcap: Path, board_ip: int, pick: Callable[[list], int], *, shift_ms: int = 0,
                       tsval_delta: int = 0) -> TcpRepr:
    """Move the board segment `pick(segments)` chooses (an index into board_tcp's list) by
    `shift_ms`, and its TSval by `tsval_delta`. Returns its header as it was."""
    segs = board_tcp(pcap, board_ip)
    rec, at, tcp, payload = segs[pick(segs)]
    raw = bytearray(pcap.read_bytes())
    if tsval_delta:
        val, ecr = tcp.timestamp
        opts = tuple((k, ((val + tsval_delta) % (1 << 32), ecr) if k == TCPOPT_TIMESTAMP else v)
                     for k, v in tcp.options)
        ip_src, ip_dst = struct.unpack_from(">II", raw, at - 8)
        seg = dataclasses.replace(tcp, options=opts).emit(payload, ip_src, ip_dst)
        raw[at:at + len(seg)] = seg
    if shift_ms:
        sec, nsec = struct.unpack_from("<II", raw, rec)
        t = sec * 1_000_000_000 + nsec + shift_ms * 1_000_000
        struct.pack_into("<II", raw, rec, t // 1_000_000_000, t % 1_000_000_000)
    pcap.write_bytes(bytes(raw))
    return tcp


def board_frames(pcap: Path, board_ip: int, protocol: int) -> list[tuple[int, int, int]]:
    """(frame offset, IPv4 header offset, its length) of the board's IPv4 packets of `protocol`."""
    return [(at, ip_at, ip.header_len) for _, at, ip_at, ip, _ in _board_ipv4(pcap, board_ip)
            if ip.protocol == protocol]


def edit_board_packet(pcap: Path, board_ip: int, protocol: int, index: int, edit: Callable[[bytearray], None],
                      *, fix_checksum: bool = True) -> None:
    """Change the board's `index`th IPv4 packet of `protocol` in place: `edit` gets its L4
    bytes (an ICMP message here) to change; with `fix_checksum` the ICMP checksum is made
    right again (a board that sent such a packet whole), else the bytes are left as edited."""
    _, ip_at, ihl = board_frames(pcap, board_ip, protocol)[index]
    raw = bytearray(pcap.read_bytes())
    tot_len = struct.unpack_from(">H", raw, ip_at + 2)[0]
    l4 = bytearray(raw[ip_at + ihl:ip_at + tot_len])
    edit(l4)
    if fix_checksum:
        l4[2:4] = b"\0\0"
        l4[2:4] = struct.pack(">H", internet_checksum(bytes(l4)))
    raw[ip_at + ihl:ip_at + tot_len] = l4
    pcap.write_bytes(bytes(raw))



def set_board_ip_id(pcap: Path, board_ip: int, protocol: int, index: int, ident: int) -> int:
    """Give the board's `index`th IPv4 packet of `protocol` the ID `ident`, its header
    checksum made right again. Returns the ID it had."""
    _, ip_at, ihl = board_frames(pcap, board_ip, protocol)[index]
    raw = bytearray(pcap.read_bytes())
    old = struct.unpack_from(">H", raw, ip_at + 4)[0]
    struct.pack_into(">H", raw, ip_at + 4, ident)
    struct.pack_into(">H", raw, ip_at + 10, 0)
    struct.pack_into(">H", raw, ip_at + 10, internet_checksum(bytes(raw[ip_at:ip_at + ihl])))
    pcap.write_bytes(bytes(raw))
    return old
