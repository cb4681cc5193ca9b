"""ICMP echo request/reply (RFC 792; include/uapi/linux/icmp.h)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WireError
from ._header import HeaderTable, internet_checksum, need

__all__ = ["ICMP_ECHOREPLY", "ICMP_ECHO", "ICMP_DEST_UNREACH", "ICMP_NET_UNREACH", "ICMP_HOST_UNREACH", "IcmpRepr", "ICMP_HEADER",
           "icmp_checked_type", "icmp_echo_reply"]

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_NET_UNREACH = 0    # codes of ICMP_DEST_UNREACH (include/uapi/linux/icmp.h)
ICMP_HOST_UNREACH = 1
ICMP_ECHO = 8

ICMP_HEADER = HeaderTable(("type", "B"), ("code", "B"), ("checksum", "H"), ("un", "4s"))
_ECHO_REST = HeaderTable(("id", "H"), ("sequence", "H"))


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class IcmpRepr:
    """An ICMP message. For echo, `ident`/`sequence` are the id and sequence; other types keep `rest`."""

    type: int
    code: int
    ident: int = 0
    sequence: int = 0
    data: bytes = b""
    rest: bytes = b"\0\0\0\0"

    @classmethod
    def parse(cls, payload: bytes) -> IcmpRepr:
        """icmp_rcv(): at least a header, and a valid checksum over the whole message."""
        icmp_checked_type(payload)
        typ, code, _check, rest = ICMP_HEADER.unpack(payload)
        if typ in (ICMP_ECHO, ICMP_ECHOREPLY):
            ident, seq = _ECHO_REST.unpack(rest)
            return cls(typ, code, ident, seq, bytes(payload[8:]))
        return cls(typ, code, data=bytes(payload[8:]), rest=rest)

    @property
    def buffer_len(self) -> int:
        return ICMP_HEADER.size + len(self.data)

    def emit(self) -> bytes:
        rest = _ECHO_REST.pack(self.ident, self.sequence) if self.type in (ICMP_ECHO, ICMP_ECHOREPLY) else self.rest
        msg = ICMP_HEADER.pack(self.type, self.code, 0, rest) + self.data
        check = internet_checksum(msg)
        return msg[:2] + check.to_bytes(2, "big") + msg[4:]


# The checked view beside IcmpRepr, for the model's per-packet path: the same checks and
# bytes without building a Repr (tests/models/test_wire.py holds them equal).
def icmp_checked_type(payload: bytes) -> int:
    """icmp_rcv()'s checks on a message (a whole header, a valid checksum over all of it),
    as IcmpRepr.parse makes them: its type. Raises WireError with the kernel's reason."""
    if len(payload) < 8:
        need(payload, ICMP_HEADER.size, "icmp header")
    if internet_checksum(payload) != 0:
        raise WireError("SKB_DROP_REASON_ICMP_CSUM", "icmp checksum")
    return payload[0]


def icmp_echo_reply(request: bytes) -> bytes:
    """icmp_echo()'s reply to a checked echo request: ICMP_ECHOREPLY, code 0, the request's
    identifier, sequence and data, checksummed (IcmpRepr(ICMP_ECHOREPLY, 0, ident,
    sequence, data).emit() of the request's fields)."""
    rest = request[4:]
    # the reply's type, code and checksum words are zero and add nothing to the sum; the
    # rest keeps its place (and its parity) at the message's end
    return b"\0\0" + internet_checksum(rest).to_bytes(2, "big") + rest
