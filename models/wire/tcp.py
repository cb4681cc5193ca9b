"""TCP segments (RFC 793/7323/2018) with options as Linux writes and parses them.

Options are kept as an ordered tuple of `(kind, value)` so a parsed segment emits back
byte for byte whatever its sender's layout; `linux_options()` builds the layout
tcp_options_write() (net/ipv4/tcp_output.c) produces:
MSS, then SACK_PERM+TS packed in one word (or NOP NOP TS), then NOP NOP SACK_PERM when
there is no TS, then NOP WSCALE, then NOP NOP SACK blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import WireError
from ._header import HeaderTable, internet_checksum, need, pseudo_header_sum
from .ipv4 import IPPROTO_TCP

__all__ = [
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR",
    "TCPOPT_EOL", "TCPOPT_NOP", "TCPOPT_MSS", "TCPOPT_WINDOW", "TCPOPT_SACK_PERM", "TCPOPT_SACK",
    "TCPOPT_TIMESTAMP", "TCP_HEADER", "TcpRepr", "linux_options", "flags_str",
]

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# include/net/tcp.h
TCPOPT_NOP = 1
TCPOPT_EOL = 0
TCPOPT_MSS = 2
TCPOPT_WINDOW = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
TCPOLEN_MSS = 4
TCPOLEN_WINDOW = 3
TCPOLEN_SACK_PERM = 2
TCPOLEN_TIMESTAMP = 10
TCPOLEN_SACK_BASE = 2
TCPOLEN_SACK_PERBLOCK = 8
_RAW = -1  # bytes tcp_parse_options() would stop at ("silly" or partial options)

TCP_HEADER = HeaderTable(
    ("source", "H"), ("dest", "H"), ("seq", "I"), ("ack_seq", "I"),
    ("doff_res", "B"), ("flags", "B"), ("window", "H"), ("check", "H"), ("urg_ptr", "H"),
)

Option = tuple  # (kind, value)


def linux_options(mss: int | None = None, ts: tuple[int, int] | None = None, sack_perm: bool = False,
                  wscale: int | None = None, sack_blocks: tuple[tuple[int, int], ...] = ()) -> tuple[Option, ...]:
    """The options tcp_options_write() emits for these values, in its order and padding."""
    opts: list[Option] = []
    if mss is not None:
        opts.append((TCPOPT_MSS, mss))
    if ts is not None:
        if sack_perm:
            opts += [(TCPOPT_SACK_PERM, None), (TCPOPT_TIMESTAMP, ts)]
            sack_perm = False
        else:
            opts += [(TCPOPT_NOP, None), (TCPOPT_NOP, None), (TCPOPT_TIMESTAMP, ts)]
    if sack_perm:
        opts += [(TCPOPT_NOP, None), (TCPOPT_NOP, None), (TCPOPT_SACK_PERM, None)]
    if wscale is not None:
        opts += [(TCPOPT_NOP, None), (TCPOPT_WINDOW, wscale)]
    if sack_blocks:
        opts += [(TCPOPT_NOP, None), (TCPOPT_NOP, None), (TCPOPT_SACK, tuple(sack_blocks))]
    return tuple(opts)


def _parse_options(raw: bytes) -> tuple[Option, ...]:
    """Walk options the way tcp_parse_options() does, keeping everything for re-emission."""
    opts: list[Option] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == TCPOPT_EOL:
            opts.append((TCPOPT_EOL, bytes(raw[i + 1:])))
            return tuple(opts)
        if kind == TCPOPT_NOP:
            opts.append((TCPOPT_NOP, None))
            i += 1
            continue
        if n - i < 2 or raw[i + 1] < 2 or raw[i + 1] > n - i:
            opts.append((_RAW, bytes(raw[i:])))  # Linux stops parsing here
            return tuple(opts)
        size = raw[i + 1]
        body = raw[i + 2:i + size]
        if kind == TCPOPT_MSS and size == TCPOLEN_MSS:
            opts.append((kind, int.from_bytes(body, "big")))
        elif kind == TCPOPT_WINDOW and size == TCPOLEN_WINDOW:
            opts.append((kind, body[0]))
        elif kind == TCPOPT_SACK_PERM and size == TCPOLEN_SACK_PERM:
            opts.append((kind, None))
        elif kind == TCPOPT_TIMESTAMP and size == TCPOLEN_TIMESTAMP:
            opts.append((kind, (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:], "big"))))
        elif kind == TCPOPT_SACK and size >= TCPOLEN_SACK_BASE + TCPOLEN_SACK_PERBLOCK \
                and (size - TCPOLEN_SACK_BASE) % TCPOLEN_SACK_PERBLOCK == 0:
            opts.append((kind, tuple((int.from_bytes(body[j:j + 4], "big"), int.from_bytes(body[j + 4:j + 8], "big"))
                                     for j in range(0, size - 2, 8))))
        else:
            opts.append(((kind, size), bytes(body)))  # unknown or odd-sized: kept verbatim
        i += size
    return tuple(opts)


def _emit_options(opts: tuple[Option, ...]) -> bytes:
    out = bytearray()
    for kind, value in opts:
        if kind == TCPOPT_EOL:
            out += b"\0" + value
        elif kind == TCPOPT_NOP:
            out.append(TCPOPT_NOP)
        elif kind == _RAW:
            out += value
        elif kind == TCPOPT_MSS:
            out += bytes((TCPOPT_MSS, TCPOLEN_MSS)) + value.to_bytes(2, "big")
        elif kind == TCPOPT_WINDOW:
            out += bytes((TCPOPT_WINDOW, TCPOLEN_WINDOW, value))
        elif kind == TCPOPT_SACK_PERM:
            out += bytes((TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM))
        elif kind == TCPOPT_TIMESTAMP:
            out += bytes((TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP)) + value[0].to_bytes(4, "big") + value[1].to_bytes(4, "big")
        elif kind == TCPOPT_SACK:
            out += bytes((TCPOPT_SACK, TCPOLEN_SACK_BASE + TCPOLEN_SACK_PERBLOCK * len(value)))
            for start, end in value:
                out += start.to_bytes(4, "big") + end.to_bytes(4, "big")
        else:
            code, size = kind
            out += bytes((code, size)) + value
    return bytes(out)


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class TcpRepr:
    """A TCP header. `flags` holds the 8 flag bits plus the 4 reserved bits above them.

    `ip_dsfield` is not in the header: it is TCP_SKB_CB(skb)->ip_dsfield, the TOS byte of
    the IPv4 header a received segment came in (tcp_v4_fill_cb), which tcp_v4_send_reset
    reflects and tcp_conn_request keeps as the request's syn_tos. ip_rcv sets it; it is 0
    for segments the model builds, and plays no part in equality."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: tuple = ()
    urgent: int = 0
    ip_dsfield: int = field(default=0, compare=False, repr=False)

    @classmethod
    def parse(cls, segment: bytes, src: int, dst: int, verify_checksum: bool = True) -> tuple[TcpRepr, bytes]:
        """tcp_v4_rcv(): doff >= 5, header within the segment, checksum over the pseudo-header."""
        need(segment, 20, "tcp header")
        sport, dport, seq, ack, doff_res, flags, window, _check, urg = TCP_HEADER.unpack(segment)
        doff = doff_res >> 4
        if doff < 5:
            raise WireError("SKB_DROP_REASON_PKT_TOO_SMALL", f"tcp doff {doff}")
        need(segment, doff * 4, "tcp options", "SKB_DROP_REASON_NOT_SPECIFIED")
        if verify_checksum and internet_checksum(segment, pseudo_header_sum(src, dst, IPPROTO_TCP, len(segment))) != 0:
            raise WireError("SKB_DROP_REASON_TCP_CSUM", "tcp checksum")
        options = _parse_options(segment[20:doff * 4]) if doff > 5 else ()
        return cls(sport, dport, seq, ack, flags | (doff_res & 0x0F) << 8, window, options, urg), bytes(segment[doff * 4:])

    def options_bytes(self) -> bytes:
        raw = _emit_options(self.options)
        if len(raw) % 4:
            raise ValueError(f"tcp options are {len(raw)} bytes, not a multiple of 4")
        if len(raw) > 40:
            raise ValueError(f"tcp options are {len(raw)} bytes, more than 40")
        return raw

    @property
    def header_len(self) -> int:
        return 20 + len(self.options_bytes())

    def emit(self, payload: bytes, src: int, dst: int) -> bytes:
        """Header + payload with the checksum over the IPv4 pseudo-header."""
        opts = self.options_bytes()
        doff = (20 + len(opts)) // 4
        seg = TCP_HEADER.pack(self.src_port, self.dst_port, self.seq, self.ack, doff << 4 | (self.flags >> 8 & 0x0F),
                              self.flags & 0xFF, self.window, 0, self.urgent) + opts + payload
        check = internet_checksum(seg, pseudo_header_sum(src, dst, IPPROTO_TCP, len(seg)))
        return seg[:16] + check.to_bytes(2, "big") + seg[18:]

    def _opt(self, kind: int):
        for k, value in self.options:
            if k == kind:
                return value
        return None

    @property
    def mss(self) -> int | None:
        return self._opt(TCPOPT_MSS)

    @property
    def wscale(self) -> int | None:
        return self._opt(TCPOPT_WINDOW)

    @property
    def sack_permitted(self) -> bool:
        return any(k == TCPOPT_SACK_PERM for k, _ in self.options)

    @property
    def timestamp(self) -> tuple[int, int] | None:
        return self._opt(TCPOPT_TIMESTAMP)

    @property
    def sack_blocks(self) -> tuple[tuple[int, int], ...]:
        return self._opt(TCPOPT_SACK) or ()

    def describe(self, payload_len: int = 0) -> str:
        return f"{self.src_port} > {self.dst_port} [{flags_str(self.flags)}] seq {self.seq} ack {self.ack} " \
               f"win {self.window} len {payload_len}"


def flags_str(flags: int) -> str:
    """tcpdump-style flag letters: S, F, R, P, ., U, E, W."""
    out = "".join(ch for bit, ch in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"))
                  if flags & bit)
    return out + ("." if flags & ACK else "")
