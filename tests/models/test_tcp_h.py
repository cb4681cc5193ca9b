"""models.tcp_h: TcpSeq, the 32-bit sequence number, as Linux's before() and after() and
smoltcp's TcpSeqNumber treat it; and a connection whose sequence numbers wrap."""

from __future__ import annotations

import random

from model_pair import B_ADDR, TcpPair

from models.clock import ms
from models.tcp_h import TcpSeq, tcp_v4_fill_cb
from models.wire import ACK, TcpRepr

U32 = 1 << 32


def before(a: int, b: int) -> bool:
    """include/net/tcp.h before(): (s32)(seq1 - seq2) < 0."""
    return ((a - b) & (U32 - 1)) >= 1 << 31


def test_comparison_is_before_and_after_across_the_wrap():
    rng = random.Random(7)
    values = [0, 1, (1 << 31) - 1, 1 << 31, (1 << 31) + 1, U32 - 2, U32 - 1] + [rng.getrandbits(32) for _ in range(60)]
    for a in values:
        for b in values:
            x, y = TcpSeq(a), TcpSeq(b)
            assert (x < y, x <= y) == (before(a, b), a == b or before(a, b))
            assert (x > y, x >= y) == (before(b, a), a == b or before(b, a))


def test_half_the_space_apart_each_is_before_the_other():
    # (s32)0x80000000 is negative both ways, as in the kernel
    a, b = TcpSeq(5), TcpSeq(5 + (1 << 31))
    assert a < b and b < a


def test_adding_a_length_wraps_and_stays_a_sequence_number():
    end = TcpSeq(U32 - 10) + 1460
    assert end == 1450 and type(end) is TcpSeq and type(100 + TcpSeq(1)) is TcpSeq
    assert TcpSeq(3) - 5 == U32 - 2 and type(TcpSeq(3) - 5) is TcpSeq
    assert TcpSeq(U32 + 7) == 7


def test_the_distance_between_two_is_a_plain_int_modulo_the_space():
    d = TcpSeq(1450) - TcpSeq(U32 - 10)
    assert d == 1460 and type(d) is int
    assert TcpSeq(0) - TcpSeq(1) == U32 - 1


def test_a_plain_int_on_either_side_is_taken_as_a_sequence_number():
    assert TcpSeq(U32 - 1) < 3 and 3 > TcpSeq(U32 - 1) and not 3 < TcpSeq(U32 - 1)
    assert 1450 - TcpSeq(U32 - 10) == 1460


def test_it_equals_and_hashes_as_its_int():
    assert TcpSeq(42) == 42 and hash(TcpSeq(42)) == hash(42)
    assert {TcpSeq(42): "x"}[42] == "x" and str(TcpSeq(42)) == "42"


def test_a_received_segment_is_read_with_sequence_numbers():
    seg = TcpRepr(1, 2, U32 - 1, 7, ACK, 100, (), ip_dsfield=0x10)
    cb = tcp_v4_fill_cb(seg)
    assert (type(cb.seq), type(cb.ack), cb.ip_dsfield) == (TcpSeq, TcpSeq, 0x10)
    assert type(seg.seq) is int and tcp_v4_fill_cb(cb) is cb


class _NearTheWrap(random.Random):
    """ISNs and TSval offsets a little below 2**32: both wrap early in the connection."""

    def getrandbits(self, k: int) -> int:
        value = super().getrandbits(k)
        return U32 - 3000 + value % 1000 if k == 32 else value


def test_a_transfer_whose_sequence_numbers_wrap_is_acked_in_full():
    pair = TcpPair(ms(5))
    pair.a.rng, pair.b.rng = _NearTheWrap(1), _NearTheWrap(2)
    lfd = pair.b.socket()
    pair.b.bind(lfd, 0, 22)
    pair.b.listen(lfd, 128)
    cfd = pair.a.socket()
    pair.put("a", pair.a.connect(0, cfd, B_ADDR, 22))
    pair.run_until(ms(50))
    sfd = pair.b.accept(lfd)
    client = pair.a.sock(cfd)
    assert int(client.iss) > U32 - 3000
    pair.put("a", pair.a.send(ms(50), cfd, b"x" * 20000))
    pair.run_until(ms(500))
    data, _ = pair.b.recv(ms(500), sfd, 1 << 20)
    assert data == b"x" * 20000
    assert client.snd_una == client.snd_nxt == (int(client.iss) + 1 + 20000) % U32
    assert int(client.snd_una) < int(client.iss) and client.iss < client.snd_una   # wrapped, and after
    assert not client.rtx_queue and client.tlp.high_seq is None
