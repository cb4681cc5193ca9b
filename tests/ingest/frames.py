"""Test helpers over the frames `harness.ingest.pcapwrite` builds: IPv4 fields its builders
leave fixed (the TOS byte) set after the fact, so the readers see every value."""

from __future__ import annotations

import random

from harness.ingest.pcap import ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN


def ipv4_offset(frame: bytes) -> int | None:
    """Where the IPv4 header starts in an Ethernet frame (after any 802.1Q/802.1ad tags),
    or None when the frame carries no IPv4 header (or is cut before its second byte)."""
    if len(frame) < 14:
        return None
    ethertype, q = int.from_bytes(frame[12:14], "big"), 14
    while ethertype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ) and q + 4 <= len(frame):
        ethertype, q = int.from_bytes(frame[q + 2:q + 4], "big"), q + 4
    if ethertype != ETHERTYPE_IPV4 or q + 2 > len(frame) or frame[q] >> 4 != 4:
        return None
    return q


def with_tos(frame: bytes, tos: int) -> bytes:
    """The frame with its IPv4 TOS byte set to `tos` and the header checksum updated
    (RFC 1624, eqn. 3); frames without IPv4 come back as they are."""
    q = ipv4_offset(frame)
    if q is None:
        return frame
    b = bytearray(frame)
    old = b[q] << 8 | b[q + 1]
    b[q + 1] = tos
    if q + 12 <= len(b):
        total = (~int.from_bytes(b[q + 10:q + 12], "big") & 0xFFFF) + (~old & 0xFFFF) + (b[q] << 8 | tos)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        b[q + 10:q + 12] = (~total & 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def with_random_tos(records: list[tuple], rng: random.Random) -> list[tuple]:
    """pcapwrite records (time, frame, ...) with a random TOS byte in each IPv4 frame."""
    return [(rec[0], with_tos(rec[1], rng.getrandbits(8)), *rec[2:]) for rec in records]
