"""Edits of a run's classic (ns) capture for the oracle's tests: a board frame moved in
time, or its TCP timestamp changed with the checksum kept right, as a board that behaved
that way would have left it."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from pathlib import Path

from models.wire.ethernet import EthernetRepr
from models.wire.ipv4 import IPPROTO_TCP, Ipv4Repr
from models.wire.tcp import TCPOPT_TIMESTAMP, TcpRepr

_REC = struct.Struct("<IIII")


def board_tcp(pcap: Path, board_ip: int) -> list[tuple[int, int, TcpRepr, bytes]]:
    """(record offset, TCP header offset, header, payload) of the board's TCP segments."""
    raw = pcap.read_bytes()
    out, off = [], 24
    while off < len(raw):
        incl = _REC.unpack_from(raw, off)[2]
        frame = raw[off + 16:off + 16 + incl]
        eth, packet = EthernetRepr.parse(frame)
        if eth.ethertype == 0x0800:
            ip, segment = Ipv4Repr.parse(packet)
            if ip.protocol == IPPROTO_TCP and ip.src == board_ip:
                tcp, payload = TcpRepr.parse(segment, ip.src, ip.dst)
                out.append((off, off + 16 + len(frame) - len(packet) + ip.header_len, tcp, payload))
        off += 16 + incl
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
    raw = pcap.read_bytes()
    out, off = [], 24
    while off < len(raw):
        incl = _REC.unpack_from(raw, off)[2]
        frame = raw[off + 16:off + 16 + incl]
        eth, packet = EthernetRepr.parse(frame)
        if eth.ethertype == 0x0800:
            ip, _ = Ipv4Repr.parse(packet)
            if ip.protocol == protocol and ip.src == board_ip:
                out.append((off + 16, off + 16 + len(frame) - len(packet), ip.header_len))
        off += 16 + incl
    return out


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
        data = bytes(l4) + b"\0" * (len(l4) % 2)
        s = sum(struct.unpack(f">{len(data) // 2}H", data))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        l4[2:4] = struct.pack(">H", ~s & 0xFFFF)
    raw[ip_at + ihl:ip_at + tot_len] = l4
    pcap.write_bytes(bytes(raw))

