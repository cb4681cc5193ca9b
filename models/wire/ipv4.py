"""IPv4 header (RFC 791; include/uapi/linux/ip.h), with the checks ip_rcv_core() makes."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WireError
from ._header import HeaderTable, ip4_str, need

__all__ = ["IPPROTO_ICMP", "IPPROTO_TCP", "IPPROTO_UDP", "IP_DF", "IP_MF", "IP_OFFSET", "INET_ECN_MASK",
           "IPV4_HEADER", "Ipv4Repr", "tcp_quote", "ipv4_rcv_core", "ipv4_header"]

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET = 0x1FFF
INET_ECN_MASK = 0x03   # include/net/inet_ecn.h: the TOS byte's two ECN bits (RFC 3168)
INET_ECN_ECT_0 = 2     # include/net/inet_ecn.h: ECN-capable transport (0)

IPV4_HEADER = HeaderTable(
    ("version_ihl", "B"), ("tos", "B"), ("tot_len", "H"), ("id", "H"), ("frag_off", "H"),
    ("ttl", "B"), ("protocol", "B"), ("check", "H"), ("saddr", "I"), ("daddr", "I"),
)


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class Ipv4Repr:
    """An IPv4 header. `frag_offset` is in bytes (a multiple of 8); `payload_len` excludes the header."""

    src: int
    dst: int
    protocol: int
    payload_len: int
    ttl: int = 64
    ident: int = 0
    df: bool = True
    mf: bool = False
    frag_offset: int = 0
    tos: int = 0
    options: bytes = b""

    @classmethod
    def parse(cls, packet: bytes, verify_checksum: bool = True) -> tuple[Ipv4Repr, bytes]:
        """ip_rcv_core(): version, ihl, checksum, total length; trims link-layer padding."""
        fields, hlen = ipv4_rcv_core(packet, verify_checksum)
        return cls.from_fields(fields, hlen, packet), bytes(packet[hlen:fields[2]])

    @classmethod
    def from_fields(cls, fields: tuple, hlen: int, packet: bytes) -> Ipv4Repr:
        """The Repr of a header ipv4_rcv_core() checked: its `fields` and length."""
        _vihl, tos, tot_len, ident, frag, ttl, proto, _check, src, dst = fields
        return cls(src, dst, proto, tot_len - hlen, ttl, ident, bool(frag & IP_DF), bool(frag & IP_MF),
                   (frag & IP_OFFSET) * 8, tos, bytes(packet[20:hlen]))

    @property
    def header_len(self) -> int:
        return 20 + len(self.options)

    @property
    def buffer_len(self) -> int:
        return self.header_len + self.payload_len

    @property
    def is_fragment(self) -> bool:
        return self.mf or self.frag_offset != 0

    def emit_header(self) -> bytes:
        """The header with its checksum filled in (ip_send_check)."""
        if len(self.options) % 4:
            raise ValueError("ipv4 options must be padded to 32 bits")
        frag = (IP_DF if self.df else 0) | (IP_MF if self.mf else 0) | (self.frag_offset // 8)
        return ipv4_header(self.src, self.dst, self.protocol, self.buffer_len, self.ttl, self.ident, frag, self.tos,
                           self.options)

    def emit(self, payload: bytes) -> bytes:
        if len(payload) != self.payload_len:
            raise ValueError(f"payload is {len(payload)} bytes, header says {self.payload_len}")
        return self.emit_header() + payload

    def describe(self) -> str:
        return f"IP {ip4_str(self.src)} > {ip4_str(self.dst)} proto {self.protocol} len {self.buffer_len}"


# The checked view beside Ipv4Repr, for the model's per-packet path: the same checks and
# bytes without building a Repr (tests/models/test_wire.py holds them equal).
def ipv4_rcv_core(packet: bytes, verify_checksum: bool = True) -> tuple[tuple, int]:
    """ip_rcv_core()'s checks on `packet`: version, ihl, checksum, total length. Returns
    the header's fields in IPV4_HEADER's order and its length; raises WireError with the
    kernel's drop reason."""
    if len(packet) < 20:
        need(packet, 20, "ipv4 header", "SKB_DROP_REASON_IP_INHDR")
    fields = IPV4_HEADER.unpack(packet)
    vihl, tot_len = fields[0], fields[2]
    version, ihl = vihl >> 4, vihl & 15
    if ihl < 5 or version != 4:
        raise WireError("SKB_DROP_REASON_IP_INHDR", f"version {version} ihl {ihl}")
    hlen = ihl * 4
    if hlen > 20:
        need(packet, hlen, "ipv4 options", "SKB_DROP_REASON_IP_INHDR")
    # internet_checksum(header) == 0: the words of a valid header sum to one's-complement
    # -0, i.e. the header's value (never 0: the version byte; of even length) is a multiple
    # of 0xffff (2**16 == 1 mod 0xffff)
    if verify_checksum and int.from_bytes(packet[:hlen], "big") % 0xFFFF:
        raise WireError("SKB_DROP_REASON_IP_CSUM", "ipv4 header checksum")
    if len(packet) < tot_len:
        raise WireError("SKB_DROP_REASON_PKT_TOO_SMALL", f"tot_len {tot_len} > {len(packet)} bytes")
    if tot_len < hlen:
        raise WireError("SKB_DROP_REASON_IP_INHDR", f"tot_len {tot_len} < ihl*4 {hlen}")
    return fields, hlen


def ipv4_header(src: int, dst: int, protocol: int, tot_len: int, ttl: int, ident: int, frag_off: int, tos: int,
                options: bytes = b"") -> bytes:
    """An IPv4 header with its checksum filled in (ip_send_check). `frag_off` is the
    header's field: the DF and MF flags and the offset in 8-byte units; `options` are
    padded to 32 bits already.

    The checksum is internet_checksum() of the header, summed from the fields' 16-bit
    words (the options' words by their value: 2**16 == 1 mod 0xffff) so that the header
    is packed once. The version byte is never 0, so a sum of 0 is one's-complement
    "negative zero" (0xffff) and the checksum 0."""
    vihl = 0x40 | (20 + len(options)) >> 2
    total = ((vihl << 8 | tos) + tot_len + ident + frag_off + (ttl << 8 | protocol)
             + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
             + (int.from_bytes(options, "big") if options else 0)) % 0xFFFF
    return IPV4_HEADER.pack(vihl, tos, tot_len, ident, frag_off, ttl, protocol, 0xFFFF - (total or 0xFFFF),
                            src, dst) + options


def tcp_quote(packet: bytes) -> tuple[int, int, int, int, int] | None:
    """(src, sport, dst, dport, seq) of an IPv4/TCP packet from its first 8 TCP bytes (all
    an ICMP error quotes, and all that names the segment), or None if it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_TCP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8:
        return None
    b = int.from_bytes
    return (b(packet[12:16], "big"), b(packet[ihl:ihl + 2], "big"), b(packet[16:20], "big"),
            b(packet[ihl + 2:ihl + 4], "big"), b(packet[ihl + 4:ihl + 8], "big"))
