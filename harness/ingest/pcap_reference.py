"""Plain-Python reader of the same algorithm as `harness.ingest.pcap`, written with
`struct` and dicts for reading, not speed. The tests hold the numba reader to it."""

from __future__ import annotations

import struct

from harness.ingest.pcap import (
    CSUM_IP_BAD,
    CSUM_L4_BAD,
    CSUM_UNVERIFIED,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    FNV32_OFFSET,
    FNV32_PRIME,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    LINKTYPE_ETHERNET,
    MAX_CAPLEN,
    PCAPNG_BYTE_ORDER_MAGIC,
    PCAPNG_EPB,
    PCAPNG_IDB,
    PCAPNG_PB,
    PCAPNG_SHB,
    PCAPNG_SPB,
    TCP_OPT_KINDS_KEPT,
    TCPOPT_EOL,
    TCPOPT_MSS,
    TCPOPT_NOP,
    TCPOPT_SACK,
    TCPOPT_SACK_PERM,
    TCPOPT_TIMESTAMP,
    TCPOPT_WINDOW,
    Layer,
    PacketTable,
    PcapFault,
    TcpOpt,
)

_INT64_MAX = 2**63 - 1
_TS_MAX = _INT64_MAX - 2**32 * 10**9

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}


class _Stop(Exception):
    def __init__(self, fault: PcapFault, offset: int):
        self.fault = fault
        self.offset = offset


def _pcapng_ts_ns(ts: int, binary: bool, exp: int) -> int | None:
    """pcapng timestamp units -> ns, truncating like the kernel; None if out of range."""
    if ts >= 2**63:
        return None
    if binary:
        whole, frac = ts >> exp, ts & ((1 << exp) - 1)
        if whole > 9223372035:
            return None
        shift = max(exp - 32, 0)
        return whole * 10**9 + (((frac >> shift) * 10**9) >> (exp - shift))
    if exp <= 9:
        ns = ts * 10 ** (9 - exp)
        return None if ns > _INT64_MAX else ns
    return ts // 10 ** (exp - 9)


def _records_pcap(data: bytes) -> tuple[list[dict], PcapFault, int]:
    order, frac_ns = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        return [], PcapFault.TRUNCATED_HEADER, 0
    major, = struct.unpack_from(order + "H", data, 4)
    if major != 2:
        return [], PcapFault.UNSUPPORTED_VERSION, 4
    link, = struct.unpack_from(order + "I", data, 20)
    if link & 0xFFFF != LINKTYPE_ETHERNET:
        return [], PcapFault.UNKNOWN_LINKTYPE, 20
    records = []
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            return records, PcapFault.TRUNCATED_RECORD, off
        sec, frac, caplen, wire = struct.unpack_from(order + "IIII", data, off)
        if caplen > MAX_CAPLEN:
            return records, PcapFault.BAD_CAPLEN, off
        if off + 16 + caplen > len(data):
            return records, PcapFault.TRUNCATED_RECORD, off
        records.append({"time_ns": sec * 10**9 + frac * frac_ns, "wire_len": wire, "cap_len": caplen,
                        "iface": 0, "data_off": off + 16, "layers": 0})
        off += 16 + caplen
    return records, PcapFault.OK, off


def _records_pcapng(data: bytes) -> tuple[list[dict], PcapFault, int]:
    records: list[dict] = []
    interfaces: list[dict] = []
    order = "<"
    section_base = 0
    in_section = False
    off = 0
    try:
        while off < len(data):
            if off + 12 > len(data):
                raise _Stop(PcapFault.TRUNCATED_RECORD, off)
            if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":
                bom = data[off + 8:off + 12]
                if bom == struct.pack("<I", PCAPNG_BYTE_ORDER_MAGIC):
                    order = "<"
                elif bom == struct.pack(">I", PCAPNG_BYTE_ORDER_MAGIC):
                    order = ">"
                else:
                    raise _Stop(PcapFault.BAD_BYTE_ORDER_MAGIC, off)
            elif not in_section:
                raise _Stop(PcapFault.NO_SECTION_HEADER, off)
            btype, blen = struct.unpack_from(order + "II", data, off)
            if blen < 12 or blen % 4:
                raise _Stop(PcapFault.BAD_BLOCK_LENGTH, off)
            if off + blen > len(data):
                raise _Stop(PcapFault.TRUNCATED_RECORD, off)
            if struct.unpack_from(order + "I", data, off + blen - 4)[0] != blen:
                raise _Stop(PcapFault.BLOCK_LENGTH_MISMATCH, off)
            body, body_end = off + 8, off + blen - 4
            if btype == PCAPNG_SHB:
                if blen < 28:
                    raise _Stop(PcapFault.BAD_BLOCK_LENGTH, off)
                if struct.unpack_from(order + "H", data, body + 4)[0] != 1:
                    raise _Stop(PcapFault.UNSUPPORTED_VERSION, off)
                in_section = True
                section_base = len(interfaces)
            elif btype == PCAPNG_IDB:
                interfaces.append(_interface(data, order, off, blen, body, body_end))
            elif btype in (PCAPNG_EPB, PCAPNG_PB):
                if blen < 32:
                    raise _Stop(PcapFault.BAD_BLOCK_LENGTH, off)
                if btype == PCAPNG_EPB:
                    ifid, hi, lo, caplen, wire = struct.unpack_from(order + "5I", data, body)
                else:
                    ifid, _drops, hi, lo, caplen, wire = struct.unpack_from(order + "HH4I", data, body)
                if ifid >= len(interfaces) - section_base:
                    raise _Stop(PcapFault.BAD_INTERFACE, off)
                if caplen > MAX_CAPLEN or body + 20 + caplen > body_end:
                    raise _Stop(PcapFault.BAD_CAPLEN, off)
                iface = interfaces[section_base + ifid]
                t = _pcapng_ts_ns((hi << 32) | lo, iface["binary"], iface["exp"])
                if t is None or t > _TS_MAX:
                    raise _Stop(PcapFault.TIMESTAMP_OVERFLOW, off)
                records.append({"time_ns": t + iface["offset_ns"], "wire_len": wire, "cap_len": caplen,
                                "iface": section_base + ifid, "data_off": body + 20, "layers": 0})
            elif btype == PCAPNG_SPB:
                if blen < 16:
                    raise _Stop(PcapFault.BAD_BLOCK_LENGTH, off)
                if len(interfaces) - section_base < 1:
                    raise _Stop(PcapFault.BAD_INTERFACE, off)
                wire, = struct.unpack_from(order + "I", data, body)
                caplen = min(wire, body_end - body - 4)
                snap = interfaces[section_base]["snaplen"]
                if snap > 0:
                    caplen = min(caplen, snap)
                records.append({"time_ns": 0, "wire_len": wire, "cap_len": caplen, "iface": section_base,
                                "data_off": body + 4, "layers": int(Layer.NO_TIMESTAMP)})
            off += blen
        if not in_section:
            raise _Stop(PcapFault.NO_SECTION_HEADER, off)
    except _Stop as stop:
        return records, stop.fault, stop.offset
    return records, PcapFault.OK, off


def _interface(data: bytes, order: str, off: int, blen: int, body: int, body_end: int) -> dict:
    if blen < 20:
        raise _Stop(PcapFault.BAD_BLOCK_LENGTH, off)
    link, _reserved, snaplen = struct.unpack_from(order + "HHI", data, body)
    if link != LINKTYPE_ETHERNET:
        raise _Stop(PcapFault.UNKNOWN_LINKTYPE, off)
    iface = {"binary": False, "exp": 6, "offset_ns": 0, "snaplen": snaplen}
    o = body + 8
    while o + 4 <= body_end:
        code, olen = struct.unpack_from(order + "HH", data, o)
        if code == 0:
            break
        if o + 4 + olen > body_end:
            raise _Stop(PcapFault.BAD_OPTION, o)
        if code == 9 and olen >= 1:
            r = data[o + 4]
            iface["binary"], iface["exp"] = bool(r & 0x80), r & 0x7F
            if iface["exp"] > (62 if iface["binary"] else 18):
                raise _Stop(PcapFault.BAD_TSRESOL, o)
        elif code == 14 and olen == 8:
            secs, = struct.unpack_from(order + "q", data, o + 4)
            if abs(secs) > 2**32:
                raise _Stop(PcapFault.BAD_OPTION, o)
            iface["offset_ns"] = secs * 10**9
        o += 4 + (olen + 3) // 4 * 4
    return iface


def _mac(data: bytes, o: int) -> int:
    return int.from_bytes(data[o:o + 6], "big")


def _decode_frame(data: bytes, p: int, caplen: int, row: dict) -> None:
    frame = data[p:p + caplen]
    layers = row["layers"]
    if len(frame) < 14:
        row["layers"] = layers | Layer.TRUNCATED
        return
    layers |= Layer.ETHERNET
    row["eth_dst"], row["eth_src"] = _mac(frame, 0), _mac(frame, 6)
    et, = struct.unpack_from(">H", frame, 12)
    q = 14
    while et in (ETHERTYPE_VLAN, ETHERTYPE_QINQ):
        if q + 4 > len(frame):
            layers |= Layer.TRUNCATED
            break
        tci, inner = struct.unpack_from(">HH", frame, q)
        if not layers & Layer.VLAN:
            row["vlan"] = tci & 0x0FFF
            layers |= Layer.VLAN
        et = inner
        q += 4
    row["ethertype"] = et
    if not layers & Layer.TRUNCATED:
        if et == ETHERTYPE_IPV4:
            layers = _decode_ipv4(frame, q, layers, row)
        elif et == ETHERTYPE_ARP:
            layers = _decode_arp(frame, q, layers, row)
        elif et == 0x86DD:
            layers |= Layer.IPV6
    row["layers"] = int(layers)


def _decode_arp(frame: bytes, q: int, layers: int, row: dict) -> int:
    if q + 8 > len(frame):
        return layers | Layer.TRUNCATED
    layers |= Layer.ARP
    htype, ptype, hlen, plen, op = struct.unpack_from(">HHBBH", frame, q)
    row["arp_op"] = op
    if (htype, ptype, hlen, plen) != (1, ETHERTYPE_IPV4, 6, 4):
        return layers
    if q + 28 > len(frame):
        return layers | Layer.TRUNCATED
    row["arp_sha"], row["arp_tha"] = _mac(frame, q + 8), _mac(frame, q + 18)
    row["arp_spa"], = struct.unpack_from(">I", frame, q + 14)
    row["arp_tpa"], = struct.unpack_from(">I", frame, q + 24)
    return layers


def _decode_ipv4(frame: bytes, q: int, layers: int, row: dict) -> int:
    if q + 20 > len(frame):
        return layers | Layer.TRUNCATED
    vihl, tos, total, ip_id, frag, ttl, proto, _csum, src, dst = struct.unpack_from(">BBHHHBBHII", frame, q)
    if vihl >> 4 != 4:
        return layers | Layer.MALFORMED
    layers |= Layer.IPV4
    ihl = (vihl & 15) * 4
    row.update(ip_tos=tos, ip_len=total, ip_id=ip_id, ip_frag=frag, ip_df=(frag >> 14) & 1, ip_ttl=ttl,
               ip_proto=proto, ip_src=src, ip_dst=dst)
    if ihl < 20 or total < ihl:
        return layers | Layer.MALFORMED
    row["csum"] = _checksums(frame, q, ihl, total, frag, proto, src, dst)
    if frag & 0x1FFF:
        return layers | Layer.FRAGMENT
    if q + ihl > len(frame):
        return layers | Layer.TRUNCATED
    l4 = frame[q + ihl:q + total]
    if proto == IPPROTO_TCP:
        return _decode_tcp(l4, total - ihl, layers, row)
    if proto == IPPROTO_UDP:
        if len(l4) < 8:
            return layers | Layer.TRUNCATED
        row["sport"], row["dport"], ulen = struct.unpack_from(">HHH", l4, 0)
        row["payload_len"] = max(ulen - 8, 0)
        if len(l4) > 8:
            row["l4_hash"] = _fnv1a(l4[8:])
        return layers | Layer.UDP
    if proto == IPPROTO_ICMP:
        if len(l4) < 2:
            return layers | Layer.TRUNCATED
        row["icmp_type"], row["icmp_code"] = l4[0], l4[1]
        if len(l4) >= 8:
            row["icmp_id"], row["icmp_seq"] = struct.unpack_from(">HH", l4, 4)
            if len(l4) > 8:
                row["l4_hash"] = _fnv1a(l4[8:])
        return layers | Layer.ICMP
    return layers


def _ones_complement_ok(data: bytes, extra: int = 0) -> bool:
    """Whether `data` (holding its own checksum) and `extra` (a pseudo-header's words)
    sum to one's-complement -0, as a right checksum makes them."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data)) + extra
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def _checksums(frame: bytes, q: int, ihl: int, total: int, frag: int, proto: int, src: int, dst: int) -> int:
    """The `csum` column (see harness.ingest.pcap.CSUM_IP_BAD): the header's checksum, then
    the segment's, each when the capture holds what it covers."""
    csum = 0
    if q + ihl > len(frame):
        csum = CSUM_UNVERIFIED
    elif not _ones_complement_ok(frame[q:q + ihl]):
        csum = CSUM_IP_BAD
    if frag & 0x1FFF or proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP):
        return csum
    if q + total > len(frame):
        return csum | CSUM_UNVERIFIED
    seg = frame[q + ihl:q + total]
    if proto == IPPROTO_UDP and (len(seg) < 8 or seg[6:8] == b"\0\0"):
        return csum   # no checksum sent
    pseudo = 0 if proto == IPPROTO_ICMP else (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + len(seg)
    return csum if _ones_complement_ok(seg, pseudo) else csum | CSUM_L4_BAD


def _fnv1a(data: bytes) -> int:
    h = FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV32_PRIME) & 0xFFFFFFFF
    return h


def _decode_tcp(seg: bytes, seg_len: int, layers: int, row: dict) -> int:
    if len(seg) < 20:
        return layers | Layer.TRUNCATED
    layers |= Layer.TCP
    sport, dport, seq, ack, off_flags, window = struct.unpack_from(">HHIIHH", seg, 0)
    doff = (off_flags >> 12) * 4
    row.update(sport=sport, dport=dport, tcp_seq=seq, tcp_ack=ack, tcp_flags=off_flags & 0x0FFF, tcp_window=window)
    if doff < 20:
        return layers | Layer.MALFORMED
    row["payload_len"] = max(seg_len - doff, 0)
    if doff < len(seg):
        row["l4_hash"] = _fnv1a(seg[doff:])
    if doff > len(seg):
        layers |= Layer.TRUNCATED
    options = seg[20:doff]
    opts = TcpOpt(0)
    kinds: list[int] = []
    o = 0
    while o < len(options):
        kind = options[o]
        kinds.append(kind)
        if kind == TCPOPT_EOL:
            opts |= TcpOpt.EOL
            break
        if kind == TCPOPT_NOP:
            o += 1
            continue
        if o + 1 >= len(options) or options[o + 1] < 2 or o + options[o + 1] > len(options):
            layers |= Layer.MALFORMED
            break
        olen = options[o + 1]
        if kind == TCPOPT_MSS and olen == 4:
            opts |= TcpOpt.MSS
            row["tcp_mss"], = struct.unpack_from(">H", options, o + 2)
        elif kind == TCPOPT_WINDOW and olen == 3:
            opts |= TcpOpt.WSCALE
            row["tcp_wscale"] = options[o + 2]
        elif kind == TCPOPT_SACK_PERM and olen == 2:
            opts |= TcpOpt.SACK_PERM
        elif kind == TCPOPT_SACK:
            opts |= TcpOpt.SACK
        elif kind == TCPOPT_TIMESTAMP and olen == 10:
            opts |= TcpOpt.TIMESTAMP
            row["tcp_tsval"], row["tcp_tsecr"] = struct.unpack_from(">II", options, o + 2)
        else:
            opts |= TcpOpt.OTHER
        o += olen
    row["tcp_opts"] = int(opts)
    row["tcp_opt_count"] = min(len(kinds), 255)
    row["tcp_opt_kinds"] = sum(k << (8 * n) for n, k in enumerate(kinds[:TCP_OPT_KINDS_KEPT]))
    return layers


def decode_bytes(data: bytes) -> tuple[PacketTable, PcapFault, int]:
    """Same contract as `harness.ingest.pcap.decode_buffer`."""
    if len(data) < 4:
        return PacketTable.zeros(0), PcapFault.TRUNCATED_HEADER, 0
    if data[:4] in _PCAP_MAGICS:
        records, fault, offset = _records_pcap(data)
    elif data[:4] == b"\x0a\x0d\x0d\x0a":
        records, fault, offset = _records_pcapng(data)
    else:
        return PacketTable.zeros(0), PcapFault.BAD_MAGIC, 0
    table = PacketTable.zeros(len(records))
    columns = table.columns()
    for i, row in enumerate(records):
        row["frame"] = i + 1
        _decode_frame(data, row.pop("data_off"), row["cap_len"], row)
        for name, value in row.items():
            columns[name][i] = value
    return table, fault, offset


def frame_bytes(data: bytes, frames: set[int] | None = None) -> dict[int, bytes]:
    """The captured bytes of the given frame numbers (1-based; all when None), read the
    same way `decode_bytes` walks the file. For the few frames the model is fed."""
    if data[:4] in _PCAP_MAGICS:
        records, _, _ = _records_pcap(data)
    elif data[:4] == b"\x0a\x0d\x0d\x0a":
        records, _, _ = _records_pcapng(data)
    else:
        return {}
    out = {}
    for i, row in enumerate(records, start=1):
        if frames is None or i in frames:
            off = row["data_off"]
            out[i] = bytes(data[off:off + row["cap_len"]])
    return out
