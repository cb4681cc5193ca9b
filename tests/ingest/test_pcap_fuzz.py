"""Fuzzing the pcap reader: whatever the bytes, it returns a table or raises
`PcapFormatError` at an offset inside the file, and agrees with the reference."""

from __future__ import annotations

import random
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.ingest import pcapwrite as W
from harness.ingest.pcap import PcapFault, decode_buffer
from harness.ingest.pcap_reference import decode_bytes
from tests.ingest.frames import with_random_tos


def _valid_capture(seed: int, fmt: int) -> bytes:
    rng = random.Random(seed)
    recs = with_random_tos(W.random_records(rng, 8), rng)
    if fmt < 2:
        return _pcap_bytes(recs, big_endian=fmt == 1)
    return W.pcapng_section(recs, big_endian=fmt == 3, tsresol=(9, 0x80 | 20)[fmt - 2])


def _pcap_bytes(recs, big_endian: bool) -> bytes:
    order = ">" if big_endian else "<"
    out = [struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for t, frame, *rest in recs:
        out.append(struct.pack(order + "IIII", t // 10**9, t % 10**9 // 1000, len(frame), rest[0] if rest else len(frame)))
        out.append(frame)
    return b"".join(out)


@st.composite
def mutated_captures(draw) -> bytes:
    data = bytearray(_valid_capture(draw(st.integers(0, 10_000)), draw(st.integers(0, 3))))
    for _ in range(draw(st.integers(0, 6))):
        what = draw(st.sampled_from(["flip", "cut", "insert", "word"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if what == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif what == "cut":
            del data[pos:]
        elif what == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif what == "word" and pos + 4 <= len(data):
            data[pos:pos + 4] = draw(st.sampled_from([b"\0\0\0\0", b"\xff\xff\xff\xff", b"\x0c\0\0\0", b"\0\0\0\x0c"]))
    return bytes(data)


def _check(data: bytes) -> None:
    table, fault, offset = decode_buffer(np.frombuffer(data, np.uint8))
    assert isinstance(fault, PcapFault)
    assert 0 <= offset <= len(data)
    assert len(table) == len(table.time_ns) == len(table.tcp_seq)
    ref_table, ref_fault, ref_offset = decode_bytes(data)
    assert (fault, offset) == (ref_fault, ref_offset)
    assert table.equals(ref_table)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_captures())
def test_mutated_capture_gives_table_or_typed_fault_like_reference(data):
    _check(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a", b""]), st.binary(max_size=400))
def test_random_bytes_after_a_magic_give_table_or_typed_fault_like_reference(magic, rest):
    _check(magic + rest)
