"""Fast pcap / pcapng reader: raw file bytes -> a columnar `PacketTable`.

Two numba kernels do the work: a *walk* over the container (pcap records or pcapng
blocks) that validates framing and records where each frame is, and a *decode* of each
Ethernet frame into fixed columns. The walk is the only place a file can be malformed; it
returns a fault code and byte offset instead of raising, so Python raises `PcapFormatError`
with everything decoded before the fault. The decode never fails: fields a short capture
does not reach stay 0 and the row is marked `Layer.TRUNCATED`.

`harness.ingest.pcap_reference` holds a plain-Python reader of the same algorithm; the
tests hold both to identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from pathlib import Path

import numpy as np
from numba import njit

from harness.errors import HarnessError

# Ethernet is the only link type a board capture has (QEMU filter-dump, tcpdump on a wire).
LINKTYPE_ETHERNET = 1
# libpcap's own ceiling; a larger caplen is garbage, not a jumbo frame.
MAX_CAPLEN = 262144

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_PB = 2  # obsolete Packet Block, still written by old tools
PCAPNG_SPB = 3
PCAPNG_EPB = 6
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WINDOW = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
# How many option kinds `tcp_opt_kinds` keeps, one byte each, first option lowest.
TCP_OPT_KINDS_KEPT = 8


class PcapFault(IntEnum):
    """Why the walk over a capture stopped early (0 = it did not)."""

    OK = 0
    BAD_MAGIC = 1
    TRUNCATED_HEADER = 2
    UNSUPPORTED_VERSION = 3
    UNKNOWN_LINKTYPE = 4
    TRUNCATED_RECORD = 5
    BAD_CAPLEN = 6
    BAD_BLOCK_LENGTH = 7
    BLOCK_LENGTH_MISMATCH = 8
    BAD_BYTE_ORDER_MAGIC = 9
    NO_SECTION_HEADER = 10
    BAD_INTERFACE = 11
    BAD_OPTION = 12
    BAD_TSRESOL = 13
    TIMESTAMP_OVERFLOW = 14


class Layer(IntFlag):
    """Bits of the `layers` column: which headers a frame carried and was decoded."""

    ETHERNET = 1
    VLAN = 2
    IPV4 = 4
    ARP = 8
    TCP = 16
    UDP = 32
    ICMP = 64
    IPV6 = 128
    TRUNCATED = 256  # the capture ended inside a header this reader decodes
    MALFORMED = 512  # a header contradicted itself (IHL < 5, TCP offset < 5, bad option)
    FRAGMENT = 1024  # a non-first IPv4 fragment: no L4 header to decode
    NO_TIMESTAMP = 2048  # pcapng Simple Packet Block: the format carries no time


class TcpOpt(IntFlag):
    """Bits of the `tcp_opts` column: which TCP options a segment carried."""

    MSS = 1
    WSCALE = 2
    SACK_PERM = 4
    SACK = 8
    TIMESTAMP = 16
    OTHER = 32
    EOL = 64


# Plain ints for the kernels (numba folds module-level ints into constants).
_OK = PcapFault.OK.value
_UNSUPPORTED_VERSION = PcapFault.UNSUPPORTED_VERSION.value
_UNKNOWN_LINKTYPE = PcapFault.UNKNOWN_LINKTYPE.value
_TRUNCATED_RECORD = PcapFault.TRUNCATED_RECORD.value
_BAD_CAPLEN = PcapFault.BAD_CAPLEN.value
_BAD_BLOCK_LENGTH = PcapFault.BAD_BLOCK_LENGTH.value
_BLOCK_LENGTH_MISMATCH = PcapFault.BLOCK_LENGTH_MISMATCH.value
_BAD_BYTE_ORDER_MAGIC = PcapFault.BAD_BYTE_ORDER_MAGIC.value
_NO_SECTION_HEADER = PcapFault.NO_SECTION_HEADER.value
_BAD_INTERFACE = PcapFault.BAD_INTERFACE.value
_BAD_OPTION = PcapFault.BAD_OPTION.value
_BAD_TSRESOL = PcapFault.BAD_TSRESOL.value
_TIMESTAMP_OVERFLOW = PcapFault.TIMESTAMP_OVERFLOW.value
_L_ETHERNET = Layer.ETHERNET.value
_L_VLAN = Layer.VLAN.value
_L_IPV4 = Layer.IPV4.value
_L_ARP = Layer.ARP.value
_L_TCP = Layer.TCP.value
_L_UDP = Layer.UDP.value
_L_ICMP = Layer.ICMP.value
_L_IPV6 = Layer.IPV6.value
_L_TRUNCATED = Layer.TRUNCATED.value
_L_MALFORMED = Layer.MALFORMED.value
_L_FRAGMENT = Layer.FRAGMENT.value
_L_NO_TIMESTAMP = Layer.NO_TIMESTAMP.value
_O_MSS = TcpOpt.MSS.value
_O_WSCALE = TcpOpt.WSCALE.value
_O_SACK_PERM = TcpOpt.SACK_PERM.value
_O_SACK = TcpOpt.SACK.value
_O_TIMESTAMP = TcpOpt.TIMESTAMP.value
_O_OTHER = TcpOpt.OTHER.value
_O_EOL = TcpOpt.EOL.value


# Column layout. Each column is a row of one dtype block; the kernels write blocks by
# these row numbers, and `COLUMNS` names them for everyone else.
U64_ETH_DST, U64_ETH_SRC, U64_ARP_SHA, U64_ARP_THA, U64_TCP_OPT_KINDS = range(5)
N_U64 = 5
(U32_FRAME, U32_WIRE_LEN, U32_CAP_LEN, U32_IFACE, U32_IP_SRC, U32_IP_DST, U32_TCP_SEQ, U32_TCP_ACK,
 U32_TCP_TSVAL, U32_TCP_TSECR, U32_ARP_SPA, U32_ARP_TPA, U32_PAYLOAD_LEN, U32_L4_HASH) = range(14)
N_U32 = 14
(U16_LAYERS, U16_ETHERTYPE, U16_VLAN, U16_IP_LEN, U16_IP_ID, U16_IP_FRAG, U16_SPORT, U16_DPORT,
 U16_TCP_FLAGS, U16_TCP_WINDOW, U16_TCP_MSS, U16_ARP_OP, U16_ICMP_ID, U16_ICMP_SEQ) = range(14)
N_U16 = 14
(U8_IP_TTL, U8_IP_DF, U8_IP_PROTO, U8_TCP_WSCALE, U8_TCP_OPTS, U8_TCP_OPT_COUNT, U8_ICMP_TYPE,
 U8_ICMP_CODE, U8_IP_TOS, U8_CSUM) = range(10)
N_U8 = 10

# The `csum` column's bits: which checksums of an IPv4 frame are wrong (ip_fast_csum over
# the header; TCP, UDP (unless 0: none sent) and ICMP over their whole segment, TCP and UDP
# with the pseudo-header), or could not be checked (the capture holds less than they cover).
# Linux never sends a wrong one, and a NIC that offloads them fills them before the wire.
CSUM_IP_BAD, CSUM_L4_BAD, CSUM_UNVERIFIED = 1, 2, 4
# `l4_hash`: FNV-1a (32 bits) of the captured TCP, UDP or ICMP payload (after the ICMP
# header's 8 bytes), so an echo reply's data can be held to its request's; 0 without one.
FNV32_OFFSET, FNV32_PRIME = 0x811C9DC5, 0x01000193

COLUMNS: dict[str, tuple[str, int, str]] = {
    # name: (block, row, meaning)
    "time_ns": ("i64", 0, "capture time, ns since the epoch (pcapng if_tsoffset applied)"),
    "frame": ("u32", U32_FRAME, "frame number, 1-based, as tshark's frame.number"),
    "wire_len": ("u32", U32_WIRE_LEN, "original frame length on the wire"),
    "cap_len": ("u32", U32_CAP_LEN, "bytes captured"),
    "iface": ("u32", U32_IFACE, "pcapng interface index over the whole file (0 for pcap)"),
    "layers": ("u16", U16_LAYERS, "Layer bits"),
    "eth_dst": ("u64", U64_ETH_DST, "destination MAC, 48 bits"),
    "eth_src": ("u64", U64_ETH_SRC, "source MAC, 48 bits"),
    "ethertype": ("u16", U16_ETHERTYPE, "ethertype after any 802.1Q/802.1ad tags"),
    "vlan": ("u16", U16_VLAN, "VLAN id of the outermost tag (0 if untagged)"),
    "ip_src": ("u32", U32_IP_SRC, "IPv4 source address"),
    "ip_dst": ("u32", U32_IP_DST, "IPv4 destination address"),
    "ip_tos": ("u8", U8_IP_TOS, "IPv4 TOS byte: DSCP (high 6 bits) and ECN (low 2)"),
    "ip_len": ("u16", U16_IP_LEN, "IPv4 total length"),
    "ip_id": ("u16", U16_IP_ID, "IPv4 identification"),
    "ip_frag": ("u16", U16_IP_FRAG, "IPv4 flags and fragment offset, raw 16 bits"),
    "ip_ttl": ("u8", U8_IP_TTL, "IPv4 TTL"),
    "ip_df": ("u8", U8_IP_DF, "IPv4 don't-fragment bit"),
    "ip_proto": ("u8", U8_IP_PROTO, "IPv4 protocol"),
    "sport": ("u16", U16_SPORT, "TCP or UDP source port"),
    "dport": ("u16", U16_DPORT, "TCP or UDP destination port"),
    "payload_len": ("u32", U32_PAYLOAD_LEN, "TCP or UDP payload length from the headers"),
    "tcp_seq": ("u32", U32_TCP_SEQ, "TCP sequence number (raw)"),
    "tcp_ack": ("u32", U32_TCP_ACK, "TCP acknowledgment number (raw)"),
    "tcp_flags": ("u16", U16_TCP_FLAGS, "TCP flags, 12 bits as tshark's tcp.flags"),
    "tcp_window": ("u16", U16_TCP_WINDOW, "TCP window field, unscaled"),
    "tcp_opts": ("u8", U8_TCP_OPTS, "TcpOpt bits"),
    "tcp_mss": ("u16", U16_TCP_MSS, "MSS option value"),
    "tcp_wscale": ("u8", U8_TCP_WSCALE, "window-scale option shift"),
    "tcp_tsval": ("u32", U32_TCP_TSVAL, "timestamp option TSval"),
    "tcp_tsecr": ("u32", U32_TCP_TSECR, "timestamp option TSecr"),
    "tcp_opt_kinds": ("u64", U64_TCP_OPT_KINDS, "option kinds in order, first in the low byte, 8 kept"),
    "tcp_opt_count": ("u8", U8_TCP_OPT_COUNT, "how many options (NOP and EOL included)"),
    "arp_op": ("u16", U16_ARP_OP, "ARP opcode"),
    "arp_sha": ("u64", U64_ARP_SHA, "ARP sender MAC"),
    "arp_spa": ("u32", U32_ARP_SPA, "ARP sender IPv4"),
    "arp_tha": ("u64", U64_ARP_THA, "ARP target MAC"),
    "arp_tpa": ("u32", U32_ARP_TPA, "ARP target IPv4"),
    "icmp_type": ("u8", U8_ICMP_TYPE, "ICMP type"),
    "icmp_code": ("u8", U8_ICMP_CODE, "ICMP code"),
    "icmp_id": ("u16", U16_ICMP_ID, "ICMP header bytes 4-5 (an echo's identifier)"),
    "icmp_seq": ("u16", U16_ICMP_SEQ, "ICMP header bytes 6-7 (an echo's sequence number)"),
    "csum": ("u8", U8_CSUM, "checksums wrong or unchecked: CSUM_IP_BAD | CSUM_L4_BAD | CSUM_UNVERIFIED"),
    "l4_hash": ("u32", U32_L4_HASH, "FNV-1a of the captured TCP/UDP/ICMP payload, 0 without one"),
}

_BLOCK_DTYPES = {"i64": np.int64, "u64": np.uint64, "u32": np.uint32, "u16": np.uint16, "u8": np.uint8}
_BLOCK_ROWS = {"i64": 1, "u64": N_U64, "u32": N_U32, "u16": N_U16, "u8": N_U8}


def option_kinds(code: int, count: int) -> list[int]:
    """The TCP option kinds packed in a `tcp_opt_kinds` value, in wire order."""
    return [(int(code) >> (8 * k)) & 0xFF for k in range(min(int(count), TCP_OPT_KINDS_KEPT))]


@dataclass
class PacketTable:
    """One row per captured frame, stored as a few 2-D dtype blocks (one row per column).

    Columns are read as attributes (`table.tcp_seq`), which are views into the blocks.
    """

    i64: np.ndarray
    u64: np.ndarray
    u32: np.ndarray
    u16: np.ndarray
    u8: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> PacketTable:
        """A table of `n` rows, every field 0."""
        return cls(**{b: np.zeros((_BLOCK_ROWS[b], n), dtype=_BLOCK_DTYPES[b]) for b in _BLOCK_ROWS})

    def __len__(self) -> int:
        return self.i64.shape[1]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            block, row, _ = COLUMNS[name]
        except KeyError:
            raise AttributeError(name) from None
        return self.__dict__[block][row]

    def __getitem__(self, rows: slice) -> PacketTable:
        return PacketTable(*(getattr(self, b)[:, rows] for b in _BLOCK_ROWS))

    def columns(self) -> dict[str, np.ndarray]:
        """Every column by name."""
        return {name: getattr(self, name) for name in COLUMNS}

    def equals(self, other: PacketTable) -> bool:
        """Same rows, same values in every column."""
        return all(np.array_equal(getattr(self, b), getattr(other, b)) for b in _BLOCK_ROWS)


class PcapFormatError(HarnessError):
    """A capture file is malformed. Names the file, the byte offset and the fault, and keeps
    the frames decoded before the fault in `partial`."""

    def __init__(self, path: str, offset: int, fault: PcapFault, partial: PacketTable, detail: str = ""):
        self.path = path
        self.offset = offset
        self.fault = fault
        self.partial = partial
        text = f"{path}: {fault.name.lower().replace('_', ' ')} at byte offset {offset}"
        if detail:
            text += f" ({detail})"
        text += f"; {len(partial)} frames read before it"
        super().__init__(text)


@dataclass
class Capture:
    """What `read_capture` returns: the table, and the fault that ended it early (if any)."""

    packets: PacketTable
    path: str
    error: PcapFormatError | None = None


# ---------------------------------------------------------------------------------------
# Byte access. Everything is widened to int64 so numba never mixes signed and unsigned.
# Helpers are inlined by numba itself: a real call would incref/decref every array argument.


@njit(cache=True, inline="always")
def _u16(b, o, be):
    if be:
        return (np.int64(b[o]) << 8) | np.int64(b[o + 1])
    return np.int64(b[o]) | (np.int64(b[o + 1]) << 8)


@njit(cache=True, inline="always")
def _u32(b, o, be):
    if be:
        return ((np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16)
                | (np.int64(b[o + 2]) << 8) | np.int64(b[o + 3]))
    return ((np.int64(b[o + 3]) << 24) | (np.int64(b[o + 2]) << 16)
            | (np.int64(b[o + 1]) << 8) | np.int64(b[o]))


@njit(cache=True, inline="always")
def _mac(b, o):
    v = np.int64(0)
    for k in range(6):
        v = (v << 8) | np.int64(b[o + k])
    return v


# ---------------------------------------------------------------------------------------
# Timestamps.

_INT64_MAX = np.iinfo(np.int64).max
# Largest capture time that still fits int64 after the widest if_tsoffset (+-2^32 s).
_TS_MAX = _INT64_MAX - 4294967296 * 1000000000


@njit(cache=True, inline="always")
def _ones_sum(b, a, z):
    """The 16-bit big-endian words of b[a:z] summed (an odd last byte padded with zero)."""
    s = np.int64(0)
    k = a
    while k + 1 < z:
        s += (np.int64(b[k]) << 8) | np.int64(b[k + 1])
        k += 2
    if k < z:
        s += np.int64(b[k]) << 8
    return s


@njit(cache=True, inline="always")
def _csum_ok(s):
    """A sum over data that includes its checksum is right when it folds to 0xffff."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


@njit(cache=True, inline="always")
def _fnv1a(b, a, z):
    h = np.int64(FNV32_OFFSET)
    for k in range(a, z):
        h = ((h ^ np.int64(b[k])) * FNV32_PRIME) & 0xFFFFFFFF
    return h


@njit(cache=True)
def _pcapng_ts_ns(hi, lo, binary, exp):
    """pcapng 64-bit timestamp (hi, lo) in units of 10^-exp s (or 2^-exp s) -> ns, or -1
    when it would not fit int64."""
    if hi >= 0x80000000:
        return np.int64(-1)
    ts = (hi << 32) | lo
    if binary:
        whole = ts >> exp
        if whole > 9223372035:
            return np.int64(-1)
        frac = ts & ((np.int64(1) << exp) - 1)
        # keep frac * 1e9 inside int64: drop resolution below 2^-32 s (< 1 ns anyway)
        shift = exp - 32 if exp > 32 else 0
        return whole * 1000000000 + (((frac >> shift) * 1000000000) >> (exp - shift))
    if exp <= 9:
        mult = np.int64(10) ** (9 - exp)
        if ts > _INT64_MAX // mult:
            return np.int64(-1)
        return ts * mult
    d = np.int64(10) ** (exp - 9)
    return ((hi // d) << 32) + (((hi % d) << 32) + lo) // d


# ---------------------------------------------------------------------------------------
# Container walks. Both return (frames, fault, offset); with fill=False they only count.


@njit(cache=True)
def _walk_pcap(buf, be, frac_ns, fill, i64, u32, rec_off):
    size = buf.size
    off = np.int64(24)
    n = 0
    while off < size:
        if off + 16 > size:
            return n, _TRUNCATED_RECORD, off
        caplen = _u32(buf, off + 8, be)
        if caplen > MAX_CAPLEN:
            return n, _BAD_CAPLEN, off
        if off + 16 + caplen > size:
            return n, _TRUNCATED_RECORD, off
        if fill:
            i64[0, n] = _u32(buf, off, be) * 1000000000 + _u32(buf, off + 4, be) * frac_ns
            u32[U32_FRAME, n] = n + 1
            u32[U32_WIRE_LEN, n] = _u32(buf, off + 12, be)
            u32[U32_CAP_LEN, n] = caplen
            rec_off[n] = off + 16
        n += 1
        off += 16 + caplen
    return n, _OK, off


@njit(cache=True)
def _walk_pcapng(buf, fill, i64, u32, rec_off, flags):
    size = buf.size
    off = np.int64(0)
    n = 0
    be = False
    in_section = False
    cap = 8
    if_binary = np.zeros(cap, np.bool_)
    if_exp = np.zeros(cap, np.int64)
    if_offset_ns = np.zeros(cap, np.int64)
    if_snaplen = np.zeros(cap, np.int64)
    n_if = 0
    section_base = 0
    while off < size:
        if off + 12 > size:
            return n, _TRUNCATED_RECORD, off
        if _u32(buf, off, False) == PCAPNG_SHB:
            bom = _u32(buf, off + 8, False)
            if bom == PCAPNG_BYTE_ORDER_MAGIC:
                be = False
            elif bom == 0x4D3C2B1A:
                be = True
            else:
                return n, _BAD_BYTE_ORDER_MAGIC, off
        elif not in_section:
            return n, _NO_SECTION_HEADER, off
        btype = _u32(buf, off, be)
        blen = _u32(buf, off + 4, be)
        if blen < 12 or blen % 4 != 0:
            return n, _BAD_BLOCK_LENGTH, off
        if off + blen > size:
            return n, _TRUNCATED_RECORD, off
        if _u32(buf, off + blen - 4, be) != blen:
            return n, _BLOCK_LENGTH_MISMATCH, off
        body = off + 8
        body_end = off + blen - 4
        if btype == PCAPNG_SHB:
            if blen < 28:
                return n, _BAD_BLOCK_LENGTH, off
            if _u16(buf, body + 4, be) != 1:
                return n, _UNSUPPORTED_VERSION, off
            in_section = True
            section_base = n_if
        elif btype == PCAPNG_IDB:
            if blen < 20:
                return n, _BAD_BLOCK_LENGTH, off
            if _u16(buf, body, be) != LINKTYPE_ETHERNET:
                return n, _UNKNOWN_LINKTYPE, off
            binary = False
            exp = np.int64(6)
            tsoff = np.int64(0)
            o = body + 8
            while o + 4 <= body_end:
                code = _u16(buf, o, be)
                olen = _u16(buf, o + 2, be)
                if code == 0:
                    break
                if o + 4 + olen > body_end:
                    return n, _BAD_OPTION, o
                if code == 9 and olen >= 1:  # if_tsresol
                    r = np.int64(buf[o + 4])
                    binary = (r & 0x80) != 0
                    exp = r & 0x7F
                    if (binary and exp > 62) or ((not binary) and exp > 18):
                        return n, _BAD_TSRESOL, o
                elif code == 14 and olen == 8:  # if_tsoffset, signed seconds
                    if be:
                        hi = _u32(buf, o + 4, be)
                        lo = _u32(buf, o + 8, be)
                    else:
                        lo = _u32(buf, o + 4, be)
                        hi = _u32(buf, o + 8, be)
                    if hi >= 0x80000000:
                        hi -= 0x100000000
                    secs = hi * 0x100000000 + lo
                    if secs > 4294967296 or secs < -4294967296:
                        return n, _BAD_OPTION, o
                    tsoff = secs * 1000000000
                o += 4 + ((olen + 3) // 4) * 4
            if n_if == cap:
                cap *= 2
                if_binary = _grow_bool(if_binary, cap)
                if_exp = _grow_i64(if_exp, cap)
                if_offset_ns = _grow_i64(if_offset_ns, cap)
                if_snaplen = _grow_i64(if_snaplen, cap)
            if_binary[n_if] = binary
            if_exp[n_if] = exp
            if_offset_ns[n_if] = tsoff
            if_snaplen[n_if] = _u32(buf, body + 4, be)
            n_if += 1
        elif btype == PCAPNG_EPB or btype == PCAPNG_PB:
            if blen < 32:
                return n, _BAD_BLOCK_LENGTH, off
            if btype == PCAPNG_EPB:
                ifid = _u32(buf, body, be)
            else:
                ifid = _u16(buf, body, be)
            caplen = _u32(buf, body + 12, be)
            if ifid >= n_if - section_base:
                return n, _BAD_INTERFACE, off
            if caplen > MAX_CAPLEN or body + 20 + caplen > body_end:
                return n, _BAD_CAPLEN, off
            k = section_base + ifid
            t = _pcapng_ts_ns(_u32(buf, body + 4, be), _u32(buf, body + 8, be), if_binary[k], if_exp[k])
            if t < 0 or t > _TS_MAX:
                return n, _TIMESTAMP_OVERFLOW, off
            if fill:
                i64[0, n] = t + if_offset_ns[k]
                u32[U32_FRAME, n] = n + 1
                u32[U32_WIRE_LEN, n] = _u32(buf, body + 16, be)
                u32[U32_CAP_LEN, n] = caplen
                u32[U32_IFACE, n] = k
                rec_off[n] = body + 20
            n += 1
        elif btype == PCAPNG_SPB:
            if blen < 16:
                return n, _BAD_BLOCK_LENGTH, off
            if n_if - section_base < 1:
                return n, _BAD_INTERFACE, off
            wire = _u32(buf, body, be)
            caplen = min(wire, body_end - body - 4)
            snap = if_snaplen[section_base]
            if snap > 0:
                caplen = min(caplen, snap)
            if fill:
                u32[U32_FRAME, n] = n + 1
                u32[U32_WIRE_LEN, n] = wire
                u32[U32_CAP_LEN, n] = caplen
                u32[U32_IFACE, n] = section_base
                rec_off[n] = body + 4
                flags[n] = _L_NO_TIMESTAMP
            n += 1
        off += blen
    if not in_section:
        return n, _NO_SECTION_HEADER, off
    return n, _OK, off


@njit(cache=True)
def _grow_i64(a, cap):
    out = np.zeros(cap, np.int64)
    out[: a.size] = a
    return out


@njit(cache=True)
def _grow_bool(a, cap):
    out = np.zeros(cap, np.bool_)
    out[: a.size] = a
    return out


# ---------------------------------------------------------------------------------------
# Frame decode: Ethernet -> 802.1Q -> IPv4 / ARP -> TCP / UDP / ICMP.


@njit(cache=True)
def _decode_frames(buf, rec_off, u64, u32, u16, u8, flags):
    for i in range(rec_off.size):
        p = rec_off[i]
        end = p + np.int64(u32[U32_CAP_LEN, i])
        layers = flags[i]
        if end - p < 14:
            u16[U16_LAYERS, i] = layers | _L_TRUNCATED
            continue
        layers |= _L_ETHERNET
        u64[U64_ETH_DST, i] = _mac(buf, p)
        u64[U64_ETH_SRC, i] = _mac(buf, p + 6)
        et = _u16(buf, p + 12, True)
        q = p + 14
        tagged = False
        while et == ETHERTYPE_VLAN or et == ETHERTYPE_QINQ:
            if q + 4 > end:
                layers |= _L_TRUNCATED
                break
            if not tagged:
                u16[U16_VLAN, i] = _u16(buf, q, True) & 0x0FFF
                tagged = True
                layers |= _L_VLAN
            et = _u16(buf, q + 2, True)
            q += 4
        u16[U16_ETHERTYPE, i] = et
        if layers & _L_TRUNCATED:
            pass
        elif et == ETHERTYPE_IPV4:
            layers = _decode_ipv4(buf, q, end, i, layers, u32, u16, u8, u64)
        elif et == ETHERTYPE_ARP:
            layers = _decode_arp(buf, q, end, i, layers, u64, u32, u16)
        elif et == 0x86DD:
            layers |= _L_IPV6
        u16[U16_LAYERS, i] = layers


@njit(cache=True, inline="always")
def _decode_arp(buf, q, end, i, layers, u64, u32, u16):
    if q + 8 > end:
        return layers | _L_TRUNCATED
    layers |= _L_ARP
    u16[U16_ARP_OP, i] = _u16(buf, q + 6, True)
    # Only Ethernet/IPv4 ARP has the addresses at fixed places.
    if _u16(buf, q, True) != 1 or _u16(buf, q + 2, True) != ETHERTYPE_IPV4 or buf[q + 4] != 6 or buf[q + 5] != 4:
        return layers
    if q + 28 > end:
        return layers | _L_TRUNCATED
    u64[U64_ARP_SHA, i] = _mac(buf, q + 8)
    u32[U32_ARP_SPA, i] = _u32(buf, q + 14, True)
    u64[U64_ARP_THA, i] = _mac(buf, q + 18)
    u32[U32_ARP_TPA, i] = _u32(buf, q + 24, True)
    return layers


@njit(cache=True, inline="always")
def _decode_ipv4(buf, q, end, i, layers, u32, u16, u8, u64):
    if q + 20 > end:
        return layers | _L_TRUNCATED
    vihl = np.int64(buf[q])
    if vihl >> 4 != 4:
        return layers | _L_MALFORMED
    layers |= _L_IPV4
    ihl = (vihl & 15) * 4
    total = _u16(buf, q + 2, True)
    frag = _u16(buf, q + 6, True)
    proto = np.int64(buf[q + 9])
    u8[U8_IP_TOS, i] = buf[q + 1]
    u16[U16_IP_LEN, i] = total
    u16[U16_IP_ID, i] = _u16(buf, q + 4, True)
    u16[U16_IP_FRAG, i] = frag
    u8[U8_IP_DF, i] = (frag >> 14) & 1
    u8[U8_IP_TTL, i] = buf[q + 8]
    u8[U8_IP_PROTO, i] = proto
    src = np.int64(_u32(buf, q + 12, True))
    dst = np.int64(_u32(buf, q + 16, True))
    u32[U32_IP_SRC, i] = src
    u32[U32_IP_DST, i] = dst
    if ihl < 20 or total < ihl:
        return layers | _L_MALFORMED
    csum = 0
    if q + ihl > end:
        csum = CSUM_UNVERIFIED
    elif not _csum_ok(_ones_sum(buf, q, q + ihl)):
        csum = CSUM_IP_BAD
    l4 = q + ihl
    if not frag & 0x1FFF and (proto == IPPROTO_TCP or proto == IPPROTO_UDP or proto == IPPROTO_ICMP):
        if q + total > end:
            csum |= CSUM_UNVERIFIED
        elif not (proto == IPPROTO_UDP and (total - ihl < 8 or _u16(buf, l4 + 6, True) == 0)):
            s = _ones_sum(buf, l4, q + total)
            if proto != IPPROTO_ICMP:   # the pseudo-header
                s += (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + (total - ihl)
            if not _csum_ok(s):
                csum |= CSUM_L4_BAD
    u8[U8_CSUM, i] = csum
    if frag & 0x1FFF:
        return layers | _L_FRAGMENT
    if q + ihl > end:
        return layers | _L_TRUNCATED
    # The IP total length, not the capture, bounds L4: Ethernet pads short frames.
    l4_end = min(end, q + total)
    if proto == IPPROTO_TCP:
        return _decode_tcp(buf, l4, l4_end, total - ihl, i, layers, u32, u16, u8, u64)
    if proto == IPPROTO_UDP:
        if l4 + 8 > l4_end:
            return layers | _L_TRUNCATED
        u16[U16_SPORT, i] = _u16(buf, l4, True)
        u16[U16_DPORT, i] = _u16(buf, l4 + 2, True)
        ulen = _u16(buf, l4 + 4, True)
        u32[U32_PAYLOAD_LEN, i] = ulen - 8 if ulen >= 8 else 0
        if l4 + 8 < l4_end:
            u32[U32_L4_HASH, i] = _fnv1a(buf, l4 + 8, l4_end)
        return layers | _L_UDP
    if proto == IPPROTO_ICMP:
        if l4 + 2 > l4_end:
            return layers | _L_TRUNCATED
        u8[U8_ICMP_TYPE, i] = buf[l4]
        u8[U8_ICMP_CODE, i] = buf[l4 + 1]
        if l4 + 8 <= l4_end:
            u16[U16_ICMP_ID, i] = _u16(buf, l4 + 4, True)
            u16[U16_ICMP_SEQ, i] = _u16(buf, l4 + 6, True)
            if l4 + 8 < l4_end:
                u32[U32_L4_HASH, i] = _fnv1a(buf, l4 + 8, l4_end)
        return layers | _L_ICMP
    return layers


@njit(cache=True, inline="always")
def _decode_tcp(buf, t, t_end, seg_len, i, layers, u32, u16, u8, u64):
    if t + 20 > t_end:
        return layers | _L_TRUNCATED
    layers |= _L_TCP
    u16[U16_SPORT, i] = _u16(buf, t, True)
    u16[U16_DPORT, i] = _u16(buf, t + 2, True)
    u32[U32_TCP_SEQ, i] = _u32(buf, t + 4, True)
    u32[U32_TCP_ACK, i] = _u32(buf, t + 8, True)
    doff = (np.int64(buf[t + 12]) >> 4) * 4
    u16[U16_TCP_FLAGS, i] = ((np.int64(buf[t + 12]) & 0x0F) << 8) | np.int64(buf[t + 13])
    u16[U16_TCP_WINDOW, i] = _u16(buf, t + 14, True)
    if doff < 20:
        return layers | _L_MALFORMED
    u32[U32_PAYLOAD_LEN, i] = seg_len - doff if seg_len >= doff else 0
    if t + doff < t_end:
        u32[U32_L4_HASH, i] = _fnv1a(buf, t + doff, t_end)
    o = t + 20
    o_end = t + doff
    if o_end > t_end:
        layers |= _L_TRUNCATED
        o_end = t_end
    opts = 0
    kinds = np.int64(0)
    count = 0
    while o < o_end:
        kind = np.int64(buf[o])
        if count < TCP_OPT_KINDS_KEPT:
            kinds |= kind << (8 * count)
        count += 1
        if kind == TCPOPT_EOL:
            opts |= _O_EOL
            break
        if kind == TCPOPT_NOP:
            o += 1
            continue
        if o + 1 >= o_end:
            layers |= _L_MALFORMED
            break
        olen = np.int64(buf[o + 1])
        if olen < 2 or o + olen > o_end:
            layers |= _L_MALFORMED
            break
        if kind == TCPOPT_MSS and olen == 4:
            opts |= _O_MSS
            u16[U16_TCP_MSS, i] = _u16(buf, o + 2, True)
        elif kind == TCPOPT_WINDOW and olen == 3:
            opts |= _O_WSCALE
            u8[U8_TCP_WSCALE, i] = buf[o + 2]
        elif kind == TCPOPT_SACK_PERM and olen == 2:
            opts |= _O_SACK_PERM
        elif kind == TCPOPT_SACK:
            opts |= _O_SACK
        elif kind == TCPOPT_TIMESTAMP and olen == 10:
            opts |= _O_TIMESTAMP
            u32[U32_TCP_TSVAL, i] = _u32(buf, o + 2, True)
            u32[U32_TCP_TSECR, i] = _u32(buf, o + 6, True)
        else:
            opts |= _O_OTHER
        o += olen
    u8[U8_TCP_OPTS, i] = opts
    u8[U8_TCP_OPT_COUNT, i] = min(count, 255)
    u64[U64_TCP_OPT_KINDS, i] = kinds
    return layers


# ---------------------------------------------------------------------------------------
# Python side: header sniffing, allocation, errors.

_PCAP_MAGICS = {
    # first four bytes -> (big endian, ns per fraction unit)
    b"\xd4\xc3\xb2\xa1": (False, 1000),
    b"\xa1\xb2\xc3\xd4": (True, 1000),
    b"\x4d\x3c\xb2\xa1": (False, 1),
    b"\xa1\xb2\x3c\x4d": (True, 1),
}


def _pcap_header(buf: np.ndarray) -> tuple[bool, int, PcapFault, int]:
    """(big endian, ns per fraction unit, fault, offset) from a classic pcap global header."""
    be, frac_ns = _PCAP_MAGICS[bytes(buf[:4])]
    if buf.size < 24:
        return be, frac_ns, PcapFault.TRUNCATED_HEADER, 0
    order = ">" if be else "<"
    major = int(buf[4:6].view(order + "u2")[0])
    if major != 2:
        return be, frac_ns, PcapFault.UNSUPPORTED_VERSION, 4
    link = int(buf[20:24].view(order + "u4")[0]) & 0xFFFF
    if link != LINKTYPE_ETHERNET:
        return be, frac_ns, PcapFault.UNKNOWN_LINKTYPE, 20
    return be, frac_ns, PcapFault.OK, 0


def decode_buffer(buf: np.ndarray) -> tuple[PacketTable, PcapFault, int]:
    """Decode a whole capture held in a uint8 array. Returns the table of every frame before
    any fault, the fault (`PcapFault.OK` if none) and its byte offset."""
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    empty = PacketTable.zeros(0)
    if buf.size < 4:
        return empty, PcapFault.TRUNCATED_HEADER, 0
    head = bytes(buf[:4])
    no_i64 = np.zeros((1, 0), np.int64)
    no_u32 = np.zeros((N_U32, 0), np.uint32)
    no_off = np.zeros(0, np.int64)
    if head in _PCAP_MAGICS:
        be, frac_ns, fault, offset = _pcap_header(buf)
        if fault:
            return empty, fault, offset
        n, code, offset = _walk_pcap(buf, be, frac_ns, False, no_i64, no_u32, no_off)
        table = PacketTable.zeros(n)
        rec_off = np.empty(n, np.int64)
        flags = np.zeros(n, np.int64)
        _walk_pcap(buf, be, frac_ns, True, table.i64, table.u32, rec_off)
    elif head == b"\x0a\x0d\x0d\x0a":
        no_flags = np.zeros(0, np.int64)
        n, code, offset = _walk_pcapng(buf, False, no_i64, no_u32, no_off, no_flags)
        table = PacketTable.zeros(n)
        rec_off = np.empty(n, np.int64)
        flags = np.zeros(n, np.int64)
        _walk_pcapng(buf, True, table.i64, table.u32, rec_off, flags)
    else:
        return empty, PcapFault.BAD_MAGIC, 0
    _decode_frames(buf, rec_off, table.u64, table.u32, table.u16, table.u8, flags)
    return table, PcapFault(code), int(offset)


def read_capture(path: str | Path, strict: bool = True) -> Capture:
    """Read a pcap or pcapng file of Ethernet frames.

    strict=True raises `PcapFormatError` on the first malformed record; strict=False
    returns what was read before it, with the error in `Capture.error`. A file that cannot
    be opened raises the OSError as it is.
    """
    name = str(path)
    buf = np.fromfile(name, dtype=np.uint8)  # an unreadable file raises OSError, naming it
    table, fault, offset = decode_buffer(buf)
    error = None
    if fault != PcapFault.OK:
        error = PcapFormatError(name, offset, fault, table)
        if strict:
            raise error
    return Capture(table, name, error)


def read_pcap(path: str | Path) -> PacketTable:
    """The packet table of a well-formed capture; `PcapFormatError` otherwise."""
    return read_capture(path, strict=True).packets
