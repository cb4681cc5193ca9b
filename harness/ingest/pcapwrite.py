"""Writers of pcap and pcapng files, and builders of the frames a BMC capture holds, for
tests and benchmarks (nothing in the harness captures through this)."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

# A record is (time_ns, frame bytes) or (time_ns, frame bytes, wire length); pcapng records
# may add a fourth item, the interface index.
Record = Sequence  # type alias, for reading the signatures


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(text: str) -> int:
    """'02:00:00:00:00:01' -> 48-bit int."""
    return int(text.replace(":", ""), 16)


def ip(text: str) -> int:
    """'10.0.2.15' -> 32-bit int."""
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def ether(dst: int, src: int, ethertype: int, payload: bytes, vlans: Sequence[int] = ()) -> bytes:
    """An Ethernet II frame, padded to 60 bytes like a NIC does; `vlans` are 802.1Q VIDs,
    outermost first."""
    head = dst.to_bytes(6, "big") + src.to_bytes(6, "big")
    for vid in vlans:
        head += struct.pack(">HH", 0x8100, vid & 0x0FFF)
    frame = head + struct.pack(">H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


def ipv4(src: int, dst: int, proto: int, payload: bytes, ttl: int = 64, ip_id: int = 0, df: bool = True,
         frag_offset: int = 0, options: bytes = b"", l4_checksum: bool = True) -> bytes:
    """An IPv4 datagram with a correct header checksum; a TCP or UDP payload whose
    checksum is 0 gets its right one too (with `l4_checksum`, and not in a fragment), as
    a sending stack or its NIC fills it in."""
    if l4_checksum and not frag_offset and proto in (6, 17):
        at = 16 if proto == 6 else 6
        if len(payload) >= at + 2 and payload[at:at + 2] == b"\0\0":
            pseudo = struct.pack(">IIBBH", src, dst, 0, proto, len(payload))
            check = _checksum(pseudo + payload) or (0xFFFF if proto == 17 else 0)   # UDP sends 0 as 0xffff
            payload = payload[:at] + struct.pack(">H", check) + payload[at + 2:]
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | (frag_offset & 0x1FFF)
    head = struct.pack(">BBHHHBBHII", 0x40 | ihl, 0, ihl * 4 + len(payload), ip_id, flags, ttl, proto, 0,
                       src, dst) + options
    head = head[:10] + struct.pack(">H", _checksum(head)) + head[12:]
    return head + payload


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, window: int, options: bytes = b"",
        payload: bytes = b"") -> bytes:
    """A TCP segment, its checksum left 0 for ipv4() to fill in (it needs the addresses).
    Options are padded with EOL to a multiple of 4 bytes."""
    options += b"\0" * (-len(options) % 4)
    doff = 5 + len(options) // 4
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4 | (flags >> 8) & 0x0F, flags & 0xFF,
                       window, 0, 0) + options + payload


def opt_mss(value: int) -> bytes:
    return struct.pack(">BBH", 2, 4, value)


def opt_wscale(shift: int) -> bytes:
    return struct.pack(">BBB", 3, 3, shift)


def opt_sack_perm() -> bytes:
    return b"\x04\x02"


def opt_timestamp(tsval: int, tsecr: int) -> bytes:
    return struct.pack(">BBII", 8, 10, tsval, tsecr)


def opt_nop() -> bytes:
    return b"\x01"


def linux_syn_options(mss: int = 1460, tsval: int = 1, tsecr: int = 0, wscale: int = 7) -> bytes:
    """The options Linux puts on a SYN, in Linux's order (tcp_options_write)."""
    return opt_mss(mss) + opt_sack_perm() + opt_timestamp(tsval, tsecr) + opt_nop() + opt_wscale(wscale)


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(icmp_type: int, code: int, rest: bytes = b"\0\0\0\0") -> bytes:
    body = struct.pack(">BBH", icmp_type, code, 0) + rest
    return body[:2] + struct.pack(">H", _checksum(body)) + body[4:]


def arp(op: int, sha: int, spa: int, tha: int, tpa: int) -> bytes:
    return struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + sha.to_bytes(6, "big") + struct.pack(">I", spa) \
        + tha.to_bytes(6, "big") + struct.pack(">I", tpa)


def _records(records: Iterable[Record]):
    for rec in records:
        t, frame = rec[0], rec[1]
        wire = rec[2] if len(rec) > 2 and rec[2] is not None else len(frame)
        iface = rec[3] if len(rec) > 3 else 0
        yield t, bytes(frame), wire, iface


def _pcap_header(order: str, nanosecond: bool, snaplen: int, linktype: int) -> bytes:
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


class PcapWriter:
    """A classic nanosecond pcap of Ethernet frames, written frame by frame and flushed,
    so what was captured before an interruption stays on disk."""

    def __init__(self, path: str | Path, snaplen: int = 65535):
        self.path = Path(path)
        self._fh = open(self.path, "wb")
        self._fh.write(_pcap_header("<", True, snaplen, 1))
        self._fh.flush()

    def write(self, time_ns: int, frame: bytes) -> None:
        sec, nsec = divmod(time_ns, 1_000_000_000)
        self._fh.write(struct.pack("<IIII", sec, nsec, len(frame), len(frame)) + frame)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def write_pcap(path: str | Path, records: Iterable[Record], nanosecond: bool = False, big_endian: bool = False,
               linktype: int = 1, snaplen: int = 262144) -> Path:
    """A classic pcap file."""
    order = ">" if big_endian else "<"
    unit = 1 if nanosecond else 1000
    parts = [_pcap_header(order, nanosecond, snaplen, linktype)]
    pack = struct.Struct(order + "IIII").pack
    for t, frame, wire, _ in _records(records):
        sec, rem = divmod(t, 1_000_000_000)
        parts.append(pack(sec, rem // unit, len(frame), wire))
        parts.append(frame)
    path = Path(path)
    path.write_bytes(b"".join(parts))
    return path


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    blen = len(body) + 12
    return struct.pack(order + "II", btype, blen) + body + struct.pack(order + "I", blen)


def pcapng_section(records: Iterable[Record], big_endian: bool = False, tsresol: int = 6, tsoffset_s: int = 0,
                   interfaces: int = 1, linktype: int = 1, packet_block: int = 6) -> bytes:
    """One pcapng section: SHB, `interfaces` IDBs sharing `tsresol` (the if_tsresol byte:
    10^-n s, or 2^-n s with the top bit set) and `tsoffset_s`, then one block per record
    (6 = Enhanced Packet Block, 2 = obsolete Packet Block)."""
    order = ">" if big_endian else "<"
    out = [_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    idb_opts = b""
    if tsresol != 6:
        idb_opts += _option(order, 9, bytes([tsresol]))
    if tsoffset_s:
        idb_opts += _option(order, 14, struct.pack(order + "q", tsoffset_s))
    if idb_opts:
        idb_opts += _option(order, 0, b"")
    for _ in range(interfaces):
        out.append(_block(order, 1, struct.pack(order + "HHI", linktype, 0, 0) + idb_opts))
    for t, frame, wire, iface in _records(records):
        units = _ns_to_units(t - tsoffset_s * 1_000_000_000, tsresol)
        hi, lo = units >> 32, units & 0xFFFFFFFF
        if packet_block == 2:
            head = struct.pack(order + "HHIIII", iface, 0, hi, lo, len(frame), wire)
        else:
            head = struct.pack(order + "IIIII", iface, hi, lo, len(frame), wire)
        out.append(_block(order, packet_block, head + frame))
    return b"".join(out)


def _ns_to_units(ns: int, tsresol: int) -> int:
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        return (ns << exp) // 1_000_000_000
    if exp <= 9:
        return ns // 10 ** (9 - exp)
    return ns * 10 ** (exp - 9)


def write_pcapng(path: str | Path, records: Iterable[Record], **section) -> Path:
    """A pcapng file of one section; keyword arguments as `pcapng_section`."""
    path = Path(path)
    path.write_bytes(pcapng_section(records, **section))
    return path


BOARD_MAC = mac("02:00:00:00:00:15")
PEER_MAC = mac("52:55:0a:00:02:02")
BOARD_IP = ip("10.0.2.15")
PEER_IP = ip("10.0.2.2")


def random_frame(rng: random.Random) -> bytes:
    """A frame of the kinds a BMC capture holds (ARP, TCP with assorted options, UDP, ICMP,
    some 802.1Q-tagged, some IPv6), with random field values."""
    kind = rng.randrange(10)
    vlans = [rng.randrange(4096) for _ in range(rng.choice((0, 0, 0, 0, 1, 2)))]
    src, dst = rng.choice(((BOARD_IP, PEER_IP), (PEER_IP, BOARD_IP), (rng.getrandbits(32), rng.getrandbits(32))))
    if kind == 0:
        body = arp(rng.choice((1, 2)), rng.getrandbits(48), rng.getrandbits(32), rng.getrandbits(48),
                   rng.getrandbits(32))
        return ether(0xFFFFFFFFFFFF, PEER_MAC, 0x0806, body, vlans)
    if kind == 1:   # half of them with no checksum (0), as UDP may
        body = ipv4(src, dst, 17, udp(rng.getrandbits(16), rng.getrandbits(16), rng.randbytes(rng.randrange(40))),
                    ttl=rng.randrange(256), ip_id=rng.getrandbits(16), df=rng.random() < 0.5,
                    l4_checksum=rng.random() < 0.5)
        return ether(BOARD_MAC, PEER_MAC, 0x0800, body, vlans)
    if kind == 2:
        body = ipv4(src, dst, 1, icmp(rng.choice((0, 8)), 0, rng.randbytes(rng.randrange(4, 40))),
                    ttl=rng.randrange(256), ip_id=rng.getrandbits(16))
        return ether(BOARD_MAC, PEER_MAC, 0x0800, body, vlans)
    if kind == 3:
        return ether(BOARD_MAC, PEER_MAC, 0x86DD, rng.randbytes(48), vlans)
    pieces = [opt_mss(rng.getrandbits(16)), opt_sack_perm(), opt_timestamp(rng.getrandbits(32), rng.getrandbits(32)),
              opt_nop(), opt_wscale(rng.randrange(15))]
    options = b"".join(p for p in pieces if rng.random() < 0.6)
    if rng.random() < 0.3:
        options = linux_syn_options(rng.getrandbits(16), rng.getrandbits(32), 0, rng.randrange(15))
    seg = tcp(rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(32),
              rng.getrandbits(9), rng.getrandbits(16), options, rng.randbytes(rng.choice((0, 0, 1, 10, 100))))
    body = ipv4(src, dst, 6, seg, ttl=rng.randrange(256), ip_id=rng.getrandbits(16), df=rng.random() < 0.8)
    return ether(BOARD_MAC, PEER_MAC, 0x0800, body, vlans)


def random_records(rng: random.Random, n: int, start_ns: int = 1_700_000_000_000_000_000) -> list[tuple[int, bytes]]:
    """`n` random frames at increasing times, some captured short of their wire length."""
    out = []
    t = start_ns
    for _ in range(n):
        t += rng.randrange(1, 5_000_000)
        frame = random_frame(rng)
        if frame[12:14] == b"\x08\x00" and rng.random() < 0.1:
            # one byte of an IPv4 datagram changed on the way (its header's or its segment's
            # checksum then fails)
            k = rng.randrange(14, len(frame))
            frame = frame[:k] + bytes([frame[k] ^ (1 << rng.randrange(8))]) + frame[k + 1:]
        if rng.random() < 0.1:
            out.append((t, frame[: rng.randrange(len(frame))], len(frame)))
        else:
            out.append((t, frame))
    return out
