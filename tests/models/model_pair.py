"""Two SocketLayers joined by a wire with a fixed one-way delay, stepped by hand.

Each segment is emitted to bytes and parsed back on arrival, so the wire formats are
exercised on every hop. A side can be made silent (its segments vanish) or deaf.
"""

from __future__ import annotations

import heapq
import random

from models.socket import SocketLayer
from models.tcp import OutSegment, TcpParams
from models.wire import TcpRepr, ip4

A_ADDR = ip4("10.0.2.2")
B_ADDR = ip4("10.0.2.15")


class TcpPair:
    def __init__(self, delay: int, params_a: TcpParams | None = None, params_b: TcpParams | None = None,
                 seed: int = 1):
        self.delay = delay
        self.a = SocketLayer(params_a or TcpParams(), random.Random(seed), (A_ADDR,), lambda d: A_ADDR, name="a")
        self.b = SocketLayer(params_b or TcpParams(), random.Random(seed + 1), (B_ADDR,), lambda d: B_ADDR, name="b")
        self.now = 0
        self.wire: list = []
        self.log: list[tuple[int, str, OutSegment]] = []
        self.silent: set[str] = set()   # segments sent by these sides are lost
        self._n = 0

    def side(self, who: str) -> SocketLayer:
        return self.a if who == "a" else self.b

    def put(self, who: str, segs: list[OutSegment]) -> None:
        for seg in segs:
            self.log.append((self.now, who, seg))
            if who in self.silent:
                continue
            raw = seg.tcp.emit(seg.payload, seg.src, seg.dst)
            self._n += 1
            heapq.heappush(self.wire, (self.now + self.delay, self._n, "b" if who == "a" else "a", seg.src, seg.dst, raw))

    def run_until(self, t: int) -> None:
        while True:
            candidates = [x for x in (self.a.poll_at(), self.b.poll_at()) if x is not None]
            if self.wire:
                candidates.append(self.wire[0][0])
            if not candidates or min(candidates) > t:
                break
            self.now = min(candidates)
            while self.wire and self.wire[0][0] <= self.now:
                _, _, to, src, dst, raw = heapq.heappop(self.wire)
                tcp, payload = TcpRepr.parse(raw, src, dst)
                self.put(to, self.side(to).tcp_v4_rcv(self.now, src, dst, tcp, payload))
            for who in ("a", "b"):
                when = self.side(who).poll_at()
                if when is not None and when <= self.now:
                    self.put(who, self.side(who).on_timer(self.now))
        self.now = max(self.now, t)

    def sent(self, who: str, cause: str | None = None) -> list[tuple[int, OutSegment]]:
        return [(t, s) for t, w, s in self.log if w == who and (cause is None or s.cause == cause)]
