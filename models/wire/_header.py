"""Shared pieces of the wire formats: declarative header tables, addresses, checksum."""

from __future__ import annotations

import struct

from ..errors import WireError

__all__ = ["HeaderTable", "internet_checksum", "mac_bytes", "mac_str", "ip4", "ip4_str", "need"]


class HeaderTable:
    """A fixed header as one table of (name, struct format), dpkt-style.

    `offset[name]` is the byte offset of the field, so a checked view can read one field
    without unpacking the whole header.
    """

    def __init__(self, *fields: tuple[str, str]):
        self.names = tuple(name for name, _ in fields)
        self.struct = struct.Struct("!" + "".join(fmt for _, fmt in fields))
        self.size = self.struct.size
        # bound methods, not wrappers: these run for every packet
        self.pack = self.struct.pack
        self.unpack = self.struct.unpack_from
        self.offset: dict[str, int] = {}
        pos = 0
        for name, fmt in fields:
            self.offset[name] = pos
            pos += struct.calcsize("!" + fmt)



def need(buf, length: int, what: str, reason: str = "SKB_DROP_REASON_PKT_TOO_SMALL") -> None:
    """Length check done once before a parse, so the parse itself cannot fail on length."""
    if len(buf) < length:
        raise WireError(reason, f"{what}: {len(buf)} bytes, need {length}")


def internet_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 checksum. 2**16 == 1 (mod 0xffff), so the big-endian integer of the data
    has the same residue as the one's-complement sum of its 16-bit words."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = (_from_bytes(data, "big") + initial) % 0xFFFF
    if total:
        return 0xFFFF - total
    # one's-complement "negative zero" (0xffff, whose complement is 0): the sum of non-zero words
    return 0 if initial or any(data) else 0xFFFF


_from_bytes = int.from_bytes   # a module global: looked up faster than the type's attribute, once per packet


def pseudo_header_sum(src: int, dst: int, protocol: int, length: int) -> int:
    """The IPv4 pseudo-header's contribution to a TCP/UDP checksum (unfolded)."""
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + protocol + length


def mac_bytes(text: str) -> bytes:
    """'52:54:00:12:34:56' -> 6 bytes."""
    return bytes(int(part, 16) for part in text.split(":"))


def mac_str(raw: bytes) -> str:
    """6 bytes -> '52:54:00:12:34:56'."""
    return ":".join(f"{b:02x}" for b in raw)


def ip4(text: str) -> int:
    """'10.0.2.15' -> int (the model keeps IPv4 addresses as ints on the hot path)."""
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def ip4_str(value: int) -> str:
    """int -> dotted quad."""
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"
