"""The ftgmac100 MAC and the netdev queue above it (drivers/net/ethernet/faraday/ftgmac100.c,
net/sched/sch_generic.c).

ftgmac100_hard_start_xmit puts a frame in the TX ring (DEF_TX_QUEUE_ENTRIES 128) and stops
the queue when fewer than TX_THRESHOLD (MAX_SKB_FRAGS + 1 = 18 with 4 KB pages) slots are
free; the interrupt and ftgmac100_poll (NAPI weight 64) complete TX and pass up to 64 RX
frames per poll. Carrier follows phylib; while carrier is off the qdisc is deactivated
(dev_deactivate -> noop qdisc) and TX is dropped. A link-up runs ftgmac100_reset, which
empties both rings. dev_watchdog checks a stopped queue every watchdog_timeo (5 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import HZ, JIFFY, NSEC_PER_SEC, Window

__all__ = ["Ftgmac100", "NetdevLog", "DEF_TX_QUEUE_ENTRIES", "DEF_RX_QUEUE_ENTRIES", "TX_THRESHOLD",
           "NAPI_POLL_WEIGHT", "WATCHDOG_TIMEO", "NETDEV_PREFIX", "CARRIER_RACE_NS"]

DEF_RX_QUEUE_ENTRIES = 128
DEF_TX_QUEUE_ENTRIES = 128
MAX_SKB_FRAGS = 65536 // 4096 + 1
TX_THRESHOLD = MAX_SKB_FRAGS + 1
NAPI_POLL_WEIGHT = 64
WATCHDOG_TIMEO = 5 * HZ * JIFFY       # netdev->watchdog_timeo = 5 * HZ
TX_QUEUE_LEN = 1000                   # DEFAULT_TX_QUEUE_LEN (pfifo_fast limit)
# netif_carrier_on() only queues the linkwatch work, which brings the qdisc back
# (dev_activate) when a worker runs it: on the emulated board that was seen to take more
# than 10 ms after the Link is Up line. A frame the stack sends this soon after the line may
# or may not leave: Linux leaves the race open, so such frames are predicted as optional.
CARRIER_RACE_NS = 50 * 1_000_000
# __netdev_printk(): "<driver> <parent device> <netdev name>: "
NETDEV_PREFIX = "ftgmac100 1e660000.ethernet eth0: "


@dataclass(slots=True)
class NetdevLog:
    """A kernel console line with when it may appear."""

    at: int
    text: str
    window: Window | None = None


@dataclass
class Ftgmac100:
    """MAC0 of the AST2500 with its rings, carrier and TX watchdog."""

    mac: bytes
    tx_ring_size: int = DEF_TX_QUEUE_ENTRIES
    rx_ring_size: int = DEF_RX_QUEUE_ENTRIES
    carrier: bool = False
    running: bool = False
    tx_dma_enabled: bool = True       # MACCR TXDMA_EN; clearing it is the stalled-TX fault
    tx_ring: list[bytes] = field(default_factory=list)
    rx_ring: list[bytes] = field(default_factory=list)
    qdisc: list[bytes] = field(default_factory=list)
    queue_stopped: bool = False
    trans_start: int = 0
    watchdog_at: int | None = None
    drops: list[tuple[int, str]] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)

    @property
    def tx_buf_avail(self) -> int:
        return self.tx_ring_size - len(self.tx_ring) - 1

    # -- TX ---------------------------------------------------------------------------------
    def dev_queue_xmit(self, now: int, frame: bytes) -> list[bytes]:
        """Qdisc then ftgmac100_hard_start_xmit. Returns the frames that reach the wire now."""
        if not self.running or not self.carrier:
            self.drops.append((now, "SKB_DROP_REASON_QDISC_DROP"))
            return []
        if self.queue_stopped:
            if len(self.qdisc) >= TX_QUEUE_LEN:
                self.drops.append((now, "SKB_DROP_REASON_QDISC_DROP"))
            else:
                self.qdisc.append(frame)
            return []
        return self._hard_start_xmit(now, frame)

    def _hard_start_xmit(self, now: int, frame: bytes) -> list[bytes]:
        tx_ring = self.tx_ring
        tx_ring.append(frame)
        self.trans_start = now   # txq_trans_update()
        if self.tx_ring_size - len(tx_ring) - 1 < TX_THRESHOLD:   # tx_buf_avail
            self.queue_stopped = True   # netif_stop_queue()
        return self.tx_complete(now)

    def tx_complete(self, now: int) -> list[bytes]:
        """The hardware sends what DMA lets it; ftgmac100_tx_complete frees the slots and wakes
        the queue once TX_THRESHOLD slots are free again."""
        if not self.tx_dma_enabled:
            return []
        out, self.tx_ring = self.tx_ring, []
        if self.queue_stopped and self.tx_buf_avail >= TX_THRESHOLD:
            self.queue_stopped = False
            while self.qdisc and not self.queue_stopped:
                out += self._hard_start_xmit(now, self.qdisc.pop(0))
        return out

    # -- RX ---------------------------------------------------------------------------------
    def rx_frame(self, now: int, frame: bytes) -> bool:
        """A frame from the wire: dropped while the link is down (the PHY hears nothing),
        by the address filter, or when the RX ring is full; else it waits for NAPI."""
        if not self.carrier:
            self.drops.append((now, "link down"))
            return False
        dst = frame[:6]
        if dst != self.mac and not dst[0] & 1:
            self.drops.append((now, "SKB_DROP_REASON_OTHERHOST"))
            return False
        if len(self.rx_ring) >= self.rx_ring_size:
            self.drops.append((now, "rx ring full (rx_over_errors)"))
            return False
        self.rx_ring.append(frame)
        return True

    def ftgmac100_poll(self, budget: int = NAPI_POLL_WEIGHT) -> list[bytes]:
        """NAPI poll: up to `budget` received frames, oldest first."""
        out = self.rx_ring
        if len(out) <= budget:
            self.rx_ring = []   # the whole ring in one poll: hand over the list itself
            return out
        out, self.rx_ring = out[:budget], out[budget:]
        return out

    # -- link and reset -----------------------------------------------------------------------
    def open(self, now: int) -> None:
        """ftgmac100_open(): rings ready, MAC started; carrier waits for phylib."""
        self.running = True
        self.ftgmac100_reset(now)

    def ftgmac100_reset(self, now: int) -> None:
        """ftgmac100_reset(): stop, free and re-init both rings, restart the MAC (MACCR is
        rewritten, so TX DMA is enabled again)."""
        dropped = len(self.tx_ring) + len(self.rx_ring)
        for _ in range(dropped):
            self.drops.append((now, "ring reset"))
        self.tx_ring.clear()
        self.rx_ring.clear()
        self.tx_dma_enabled = True
        self.queue_stopped = False
        self.resets.append(now)

    def carrier_on(self, now: int) -> None:
        """netif_carrier_on() + linkwatch dev_activate(): qdisc back, watchdog armed."""
        self.carrier = True
        self.watchdog_at = now + WATCHDOG_TIMEO

    def carrier_off(self, now: int) -> None:
        """netif_carrier_off() + dev_deactivate(): queued frames dropped, watchdog stops."""
        self.carrier = False
        for _ in self.qdisc:
            self.drops.append((now, "SKB_DROP_REASON_QDISC_DROP"))
        self.qdisc.clear()
        self.watchdog_at = None

    def poll_at(self) -> int | None:
        return self.watchdog_at

    def dev_watchdog(self, now: int) -> list[NetdevLog]:
        """The netdev watchdog timer: a queue stopped more than watchdog_timeo times out,
        the driver's ndo_tx_timeout (ftgmac100_tx_timeout -> reset task) resets the MAC."""
        if self.watchdog_at is None or now < self.watchdog_at:
            return []
        out: list[NetdevLog] = []
        oldest = now
        if self.running and self.carrier and self.queue_stopped:
            if now - self.trans_start > WATCHDOG_TIMEO:
                timed_out_ms = (now - self.trans_start) // 1_000_000
                # round_jiffies() puts the timer on a whole second: the line may come up
                # to one second plus one timer period later than the stall allows
                window = Window(self.trans_start + WATCHDOG_TIMEO,
                                self.trans_start + 2 * WATCHDOG_TIMEO + NSEC_PER_SEC)
                out.append(NetdevLog(now, NETDEV_PREFIX + "NETDEV WATCHDOG: CPU: 0: transmit queue 0 "
                                     f"timed out {timed_out_ms} ms", window))
                self.ftgmac100_reset(now)
            else:
                oldest = self.trans_start
        # mod_timer() to a time already due fires on the next tick
        self.watchdog_at = max(oldest + WATCHDOG_TIMEO, now + JIFFY)
        return out
