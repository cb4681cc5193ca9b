"""UDP (RFC 768), checksum over the IPv4 pseudo-header."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WireError
from ._header import HeaderTable, internet_checksum, need, pseudo_header_sum
from .ipv4 import IPPROTO_UDP

__all__ = ["UdpRepr", "UDP_HEADER"]

UDP_HEADER = HeaderTable(("source", "H"), ("dest", "H"), ("len", "H"), ("check", "H"))


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class UdpRepr:
    """A UDP header; the payload travels beside it."""

    src_port: int
    dst_port: int

    @classmethod
    def parse(cls, segment: bytes, src: int, dst: int) -> tuple[UdpRepr, bytes]:
        """__udp4_lib_rcv(): length field within the datagram, checksum if not zero."""
        need(segment, 8, "udp header")
        sport, dport, ulen, check = UDP_HEADER.unpack(segment)
        if ulen < 8 or ulen > len(segment):
            raise WireError("SKB_DROP_REASON_PKT_TOO_SMALL", f"udp len {ulen}, have {len(segment)}")
        if check and internet_checksum(segment[:ulen], pseudo_header_sum(src, dst, IPPROTO_UDP, ulen)) != 0:
            raise WireError("SKB_DROP_REASON_UDP_CSUM", "udp checksum")
        return cls(sport, dport), bytes(segment[8:ulen])

    def emit(self, payload: bytes, src: int, dst: int) -> bytes:
        ulen = 8 + len(payload)
        body = UDP_HEADER.pack(self.src_port, self.dst_port, ulen, 0) + payload
        check = internet_checksum(body, pseudo_header_sum(src, dst, IPPROTO_UDP, ulen)) or 0xFFFF
        return body[:6] + check.to_bytes(2, "big") + body[8:]
