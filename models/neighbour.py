"""The ARP neighbour table: NUD states, arp_queue, arp_rcv, arp_solicit.

Read beside net/core/neighbour.c (__neigh_event_send, neigh_timer_handler, neigh_update,
neigh_probe, neigh_rand_reach_time, neigh_carrier_down) and net/ipv4/arp.c (arp_rcv,
arp_process, arp_solicit, arp_send_dst, arp_netdev_event). Parameters come from the net.ipv4.neigh.default.* sysctls.

Linux draws reachable_time once per table (and again every 300 s) uniformly from
[base/2, 3*base/2) (neigh_rand_reach_time). The model takes the latest value of that
range and reports every time that depends on it as a window over the whole range. The
latest, because an entry that expires earlier on the board shows in the model's inputs:
the board's entry goes STALE, then DELAY and PROBE when it is used, and the peer's answer
to its unicast probe (arp_process -> neigh_update(NUD_REACHABLE)) confirms the model's
entry too. An entry that expired in the model first would send probes the peer never
answers (it answers the board's), fail, and predict broadcast requests the board never
sends.

What the model cannot know it predicts as optional ("maybe") unicast probes, when it
judges a board (`NeighTable.judging`): a branch the board may be on beside the model's
own, which an ARP reply from the peer ends (arp_process -> neigh_update(NUD_REACHABLE), on
the board and in the model alike), so the model itself never goes PROBE or FAILED on a
guess. Three things open such a branch:
- the draw: a packet sent to a REACHABLE entry confirmed more than base/2 ago finds it
  STALE on a board whose draw was short; __neigh_event_send makes it DELAY there, and
  neigh_timer_handler probes delay_first_probe_time later unless a confirmation came;
- the timer wheel: neigh_timer_handler's "confirmed within DELAY_PROBE_TIME" is judged
  when the DELAY timer runs, which is at least a jiffy and up to a granule of its level
  after it was due (calc_wheel_index), so a confirmation just after the entry went DELAY
  may or may not be in time; one at or before that moment never is;
- the applications: an accepted connection (dropbear's, httpd's) confirms the neighbour
  whenever its writes are acknowledged (tcp_ack -> sk_dst_confirm), and the model does not
  know those writes; while one is open the DELAY entry may have been confirmed.
A model that plays one board (one Linux, one draw) predicts none of them.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import NSEC_PER_MSEC, NSEC_PER_SEC, Window, timer_wheel_slack
from .errors import ModelError, WireError
from .wire.arp import ARPOP_REPLY, ARPOP_REQUEST, ArpRepr
from .wire.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, EthernetRepr, ethernet_frame

__all__ = ["Nud", "NUD_NONE", "NUD_INCOMPLETE", "NUD_REACHABLE", "NUD_STALE", "NUD_DELAY", "NUD_PROBE", "NUD_FAILED",
           "NUD_VALID", "NeighParams", "Neighbour", "NeighTable", "TxFrame", "TruesizeUnknown", "skb_truesize_bounds"]

# __neigh_event_send() (net/core/neighbour.c) keeps the arp_queue of an INCOMPLETE entry
# within net.ipv4.neigh.default.unres_qlen_bytes by skb->truesize: it drops the oldest
# queued skbs while arp_queue_len_bytes + skb->truesize exceeds the limit, and always queues
# the newest. A queued skb's truesize is what its allocator made it, which the model cannot
# see, so it is bounded, never guessed (skb_truesize_bounds):
# - SKB_TRUESIZE(0) = SKB_DATA_ALIGN(sizeof(struct sk_buff)) + SKB_DATA_ALIGN(sizeof(struct
#   skb_shared_info)) is 448 on the board: unres_qlen 1 gives unres_qlen_bytes 1962 =
#   SKB_TRUESIZE(ETH_FRAME_LEN) (proc_unres_qlen), and the default 180224 is SK_WMEM_MAX =
#   256 * SKB_TRUESIZE(256) (models/config.py).
# - __alloc_skb(size) asks kmalloc_reserve for SKB_HEAD_ALIGN(size), rounded up by
#   kmalloc_size_roundup, and __finalize_skb_around sets truesize = SKB_TRUESIZE(that -
#   the aligned skb_shared_info) (tcp_stream_alloc_skb resets it to SKB_TRUESIZE(
#   skb_end_offset), the same): at least SKB_TRUESIZE(size).
# - size: TCP's own skbs (tcp_stream_alloc_skb for SYNs and data, tcp_make_synack) ask for
#   MAX_TCP_HEADER = L1_CACHE_ALIGN(128 + MAX_HEADER), at least 160 (MAX_HEADER >=
#   LL_MAX_HEADER >= 32) and at most 384 (LL_MAX_HEADER 128 + 48 for tunnels, 128-byte
#   lines); their data sits in page frags, which 6.1 charges to the socket and not to
#   truesize (skb_copy_to_page_nocache). __ip_append_data's (ICMP replies and errors,
#   icmp_push_reply; RSTs, ip_send_unicast_reply) are linear (paged only with a gso_size):
#   the whole packet plus hh_len + 15. So size >= min(packet, 160) and size <= packet + 384.
# - kmalloc_size_roundup(n) < 2n (kmalloc caches are powers of two plus 96 and 192; above
#   KMALLOC_MAX_CACHE_SIZE whole pages of a power-of-two order), SKB_DATA_ALIGN adds less
#   than a cache line (at most 128), so truesize < 2 * SKB_TRUESIZE(packet + 512).
ETH_FRAME_LEN = 1514
SKB_TRUESIZE_ETH_FRAME = 1962
SKB_TRUESIZE_OVERHEAD = SKB_TRUESIZE_ETH_FRAME - ETH_FRAME_LEN   # SKB_TRUESIZE(0) on the board
MAX_TCP_HEADER_MIN = 160
SKB_HEAD_EXTRA_MAX = 512   # MAX_TCP_HEADER's largest (384) plus SKB_DATA_ALIGN's (< 128)


def skb_truesize_bounds(packet: bytes) -> tuple[int, int]:
    """The least and the most skb->truesize of a locally made IPv4 `packet` (see above)."""
    low = SKB_TRUESIZE_OVERHEAD + min(len(packet), MAX_TCP_HEADER_MIN)
    return low, 2 * (SKB_TRUESIZE_OVERHEAD + len(packet) + SKB_HEAD_EXTRA_MAX)


class TruesizeUnknown(ModelError):
    """What the board does next depends on whether __neigh_event_send dropped a packet for
    the arp_queue's byte limit, which only the packets' skb->truesize (unknown to the
    model, within bounds) decides: the model cannot judge the board from here."""


class Nud(enum.Enum):
    """Neighbour Unreachability Detection states (include/uapi/linux/neighbour.h)."""

    NONE = "NONE"
    INCOMPLETE = "INCOMPLETE"
    REACHABLE = "REACHABLE"
    STALE = "STALE"
    DELAY = "DELAY"
    PROBE = "PROBE"
    FAILED = "FAILED"


# The states as module constants, named as the kernel names them: reading an Enum member
# through its class is a lookup each time, and neigh_resolve_output runs for every packet.
NUD_NONE, NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE = Nud.NONE, Nud.INCOMPLETE, Nud.REACHABLE, Nud.STALE
NUD_DELAY, NUD_PROBE, NUD_FAILED = Nud.DELAY, Nud.PROBE, Nud.FAILED
# NUD_VALID less the states the model has no entries in (PERMANENT, NOARP)
NUD_VALID = (NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE)


@dataclass(frozen=True)
class NeighParams:
    """net.ipv4.neigh.default.* in model time."""

    base_reachable_time: int = 30 * NSEC_PER_SEC
    retrans_time: int = 1 * NSEC_PER_SEC
    delay_probe_time: int = 5 * NSEC_PER_SEC
    mcast_probes: int = 3
    ucast_probes: int = 3
    app_probes: int = 0
    mcast_reprobes: int = 0
    locktime: int = 1 * NSEC_PER_SEC
    queue_len_bytes: int = 180224   # unres_qlen_bytes: SK_WMEM_MAX (net/ipv4/arp.c arp_tbl)
    # net.ipv4.conf.{all,eth0}.arp_evict_nocarrier: 1 in ipv4_devconf (net/ipv4/devinet.c);
    # arp_netdev_event() reads them with IN_DEV_ANDCONF, so `all` = 0 turns eviction off
    evict_nocarrier: bool = True

    @classmethod
    def from_config(cls, config) -> NeighParams:
        s = config.sysctl
        k = "net.ipv4.neigh.default."
        return cls(
            base_reachable_time=int(s(k + "base_reachable_time_ms")) * NSEC_PER_MSEC,
            retrans_time=int(s(k + "retrans_time_ms")) * NSEC_PER_MSEC,
            delay_probe_time=int(s(k + "delay_first_probe_time")) * NSEC_PER_SEC,
            mcast_probes=int(s(k + "mcast_solicit")),
            ucast_probes=int(s(k + "ucast_solicit")),
            app_probes=int(s(k + "app_solicit")),
            queue_len_bytes=int(s(k + "unres_qlen_bytes")),
            evict_nocarrier=bool(int(s("net.ipv4.conf.all.arp_evict_nocarrier"))),
        )


@dataclass(slots=True)
class TxFrame:
    """A frame handed to dev_queue_xmit, with the rule that made it and its time window."""

    frame: bytes
    cause: str
    window: Window | None = None
    optional: bool = False   # a frame only some boards send (a "maybe" probe)


@dataclass
class Neighbour:
    """struct neighbour for one IPv4 next hop."""

    key: int
    state: Nud = Nud.NONE
    ha: bytes | None = None
    confirmed: int = 0
    updated: int = 0
    used: int = 0
    probes: int = 0
    timer: int | None = None
    arp_queue: list[bytes] = field(default_factory=list)
    # how many of arp_queue's first packets the board may already have dropped for the byte
    # limit (their truesize decides it; judging only): released, they are optional frames
    queue_unsure: int = 0
    # how far the reachable-time draw can move this entry's timer, both ways
    slack: tuple[int, int] = (0, 0)
    transitions: list[tuple[int, Nud, Nud]] = field(default_factory=list)
    # the latest confirmation the model saw (ARP, TCP): `confirmed` may be later where the
    # model takes a confirmation it cannot see as given (an application's, see the module)
    confirmed_seen: int = 0
    # a DELAY -> PROBE branch the board may be on and the model is not: when its next
    # unicast probe would go, when its DELAY began, how many probes it sent, how late the
    # next may be (the timer wheel's slack summed along it)
    maybe_at: int | None = None
    maybe_from: int = 0
    maybe_probes: int = 0
    maybe_late: int = 0


class NeighTable:
    """arp_tbl for eth0: resolves next hops, queues packets, answers and learns from ARP."""

    def __init__(self, params: NeighParams, mac: bytes, addr: int, rng: random.Random,
                 resolutions: list[int] | None = None):
        self.params = params
        self.mac = mac
        self.addr = addr
        base = params.base_reachable_time
        # neigh_rand_reach_time(): prandom_u32_max(base) + base/2, at its latest (see the
        # module docstring); `rng` is unused, the signature kept for the board
        self.reachable_time = (base >> 1) + base - 1 if base else 0
        self.entries: dict[int, Neighbour] = {}
        self.drops: list[tuple[int, str, str]] = []
        # packets whose next hop failed to resolve (arp_error_report), for the caller to
        # turn into ICMP host unreachable to their senders; the caller empties it
        self.unreachable: list[tuple[int, bytes]] = []
        # when an entry went to INCOMPLETE (a resolution began); the caller may keep the list
        self.resolutions: list[int] = resolutions if resolutions is not None else []
        # judging a board: predict the "maybe" probes of the module docstring
        self.judging = False
        # judging: may the board's applications have confirmed this next hop unseen?
        self.unseen_confirms: Callable[[int], bool] = lambda key: False

    @property
    def reachable_window(self) -> tuple[int, int]:
        """How much earlier/later than this run's draw the real reachable time may be
        (none with base 0: neigh_rand_reach_time returns 0 exactly)."""
        base = self.params.base_reachable_time
        if not base:
            return 0, 0
        return self.reachable_time - (base >> 1), (base + (base >> 1)) - 1 - self.reachable_time

    def _set(self, now: int, n: Neighbour, state: Nud) -> None:
        if n.state is not state:
            n.transitions.append((now, n.state, state))
            n.state = state
            n.updated = now

    def max_probes(self, n: Neighbour) -> int:
        """neigh_max_probes()."""
        p = self.params
        return p.ucast_probes + p.app_probes + (p.mcast_reprobes if n.state is NUD_PROBE else p.mcast_probes)

    # -- output: neigh_resolve_output ---------------------------------------------------------
    def neigh_resolve_output(self, now: int, next_hop: int, packet: bytes, confirm: bool = False) -> list[TxFrame]:
        """Send `packet` (an IPv4 packet) to `next_hop`, resolving it first if needed.

        `confirm`: the packet carries its socket's pending confirmation (TCP's
        sk_dst_confirm -> __tcp_transmit_skb's skb_set_dst_pending_confirm): ip_finish_output2
        calls sock_confirm_neigh -> neigh_confirm (confirmed = now) before neigh_output, so
        the entry's state machine sees the confirmation before it sees this packet."""
        n = self.entries.get(next_hop)
        if n is None:
            n = self.entries[next_hop] = self._create(now, next_hop)
        seen = n.confirmed_seen   # what the board's draw went by until this packet
        if confirm:
            self.neigh_confirm(now, n)
        return self._output(now, n, packet, seen)

    def neigh_confirm(self, now: int, n: Neighbour) -> None:
        """neigh_confirm() (include/net/neighbour.h): only `confirmed` moves. A REACHABLE
        entry's timer then finds it still alive, a DELAY entry's timer makes it REACHABLE
        again if the confirmation came within delay_first_probe_time of it; STALE, PROBE
        and INCOMPLETE entries do not look at it (neigh_timer_handler)."""
        n.confirmed = max(n.confirmed, now)
        n.confirmed_seen = now

    def _output(self, now: int, n: Neighbour, packet: bytes, seen: int | None = None) -> list[TxFrame]:
        """n->output: neigh_resolve_output (neigh_event_send, then the cached address), or
        for a NUD_CONNECTED entry neigh_connected_output / neigh_hh_output. `seen`: the
        last confirmation before this packet's own (neigh_confirm moves only `confirmed`:
        an entry that went STALE stays STALE under it, and the DELAY this packet begins is
        not saved by a confirmation made with it)."""
        state = n.state
        if state is NUD_REACHABLE:
            if self.judging and n.maybe_at is None \
                    and now > (n.confirmed_seen if seen is None else seen) + (self.params.base_reachable_time >> 1):
                # a board whose draw was short has this entry STALE: this packet makes it DELAY
                self._maybe_branch(now, n, now + self.params.delay_probe_time, timer_wheel_slack(
                    self.params.delay_probe_time))
            return [self._ip_frame(n, packet, "ip")]
        # neigh_event_send_probe() stamps `used`; a NUD_CONNECTED entry never gets there:
        # neigh_output() sends through the hh cache (neigh_hh_output) or
        # neigh_connected_output. So neigh_timer_handler's "used within
        # delay_first_probe_time" sees the last send made while the entry was not REACHABLE.
        n.used = now
        next_hop = n.key
        out: list[TxFrame] = []
        if n.state in (NUD_DELAY, NUD_PROBE):
            return [self._ip_frame(n, packet, "ip")]
        if n.state is NUD_STALE:
            # __neigh_event_send: STALE -> DELAY, send with the cached address
            self._set(now, n, NUD_DELAY)
            n.timer = now + self.params.delay_probe_time
            n.slack = (0, 0)
            return [self._ip_frame(n, packet, "ip")]
        if n.state in (NUD_NONE, NUD_FAILED):
            p = self.params
            if p.mcast_probes + p.app_probes == 0:
                self._set(now, n, NUD_FAILED)
                self.drops.append((now, "SKB_DROP_REASON_NEIGH_FAILED", f"{next_hop:#x}"))
                return []
            n.probes = p.ucast_probes
            self._set(now, n, NUD_INCOMPLETE)
            self.resolutions.append(now)
            n.timer = now + max(p.retrans_time, NSEC_PER_SEC // 100)
            n.slack = (0, 0)
            self._enqueue(now, n, packet)
            out += self._probe(now, n, packet)   # immediate_ok: the first probe goes now
            return out
        # INCOMPLETE: wait in arp_queue
        self._enqueue(now, n, packet)
        return out

    def _create(self, now: int, key: int) -> Neighbour:
        """___neigh_create(): a new entry counts as confirmed long ago (now - 2 * base
        reachable time), so nothing it did before can keep it REACHABLE or DELAY."""
        long_ago = now - 2 * self.params.base_reachable_time
        return Neighbour(key, confirmed=long_ago, updated=now, used=now, confirmed_seen=long_ago)

    def _enqueue(self, now: int, n: Neighbour, packet: bytes) -> None:
        """__neigh_event_send() on an INCOMPLETE entry: while arp_queue_len_bytes +
        skb->truesize > QUEUE_LEN_BYTES drop the oldest (kfree_skb_reason NEIGH_QUEUEFULL),
        then queue the newest whatever its size. A queued packet survives exactly when the
        truesizes from it to the newest fit the limit. Judging a board, the model knows each
        truesize only within skb_truesize_bounds: a packet even the least truesizes do not
        let fit is dropped; one only the least let fit may be (`queue_unsure`, with every
        packet before it). Playing one board, its skbs are the least Linux makes."""
        limit = self.params.queue_len_bytes
        queue = [*n.arp_queue, packet]
        bounds = [skb_truesize_bounds(q) for q in queue]
        if not self.judging:
            bounds = [(low, low) for low, _ in bounds]
        low_tail = high_tail = 0
        keep = sure = len(n.arp_queue)   # the first packet kept; the first surely kept
        for i in range(len(queue) - 1, -1, -1):   # the truesizes from packet i to the newest
            low_tail += bounds[i][0]
            high_tail += bounds[i][1]
            if i == len(queue) - 1:
                continue   # the newest is queued whatever its size
            if low_tail > limit:
                break
            keep = i
            if high_tail <= limit and i >= n.queue_unsure:
                sure = i
        for _ in range(keep):
            n.arp_queue.pop(0)
            self.drops.append((now, "SKB_DROP_REASON_NEIGH_QUEUEFULL", f"{n.key:#x}"))
        n.arp_queue.append(packet)
        n.queue_unsure = sure - keep

    def in_arp_queue(self, match: Callable[[bytes], bool]) -> bool:
        """Does a packet `match`ing wait in an arp_queue (skb_still_in_host_queue's question)?
        Raises TruesizeUnknown when only the unknown truesizes decide it."""
        for n in self.entries.values():
            for i, packet in enumerate(n.arp_queue):
                if match(packet):
                    if i < n.queue_unsure:
                        raise TruesizeUnknown(f"whether a segment still waits for {n.key:#x} depends on the queued "
                                              f"skbs' truesize (unres_qlen_bytes {self.params.queue_len_bytes})")
                    return True
        return False

    def _ip_frame(self, n: Neighbour, packet: bytes, cause: str) -> TxFrame:
        return TxFrame(ethernet_frame(n.ha, self.mac, ETH_P_IP, packet), cause)

    def _probe(self, now: int, n: Neighbour, packet: bytes | None) -> list[TxFrame]:
        """neigh_probe() -> arp_solicit(): the first ucast_probes probes go to the cached
        address, the next app_probes to user space, the rest are broadcast. An INCOMPLETE
        entry starts counting at ucast_probes, so it broadcasts."""
        p = self.params
        count = n.probes - p.ucast_probes
        n.probes += 1
        unicast = count < 0
        if not unicast and count - p.app_probes < 0:
            return []   # neigh_app_ns(): nothing on the wire
        dst = n.ha if unicast else BROADCAST
        arp = ArpRepr(ARPOP_REQUEST, self.mac, self.addr, bytes(6), n.key)
        window = Window(now - n.slack[0], now + n.slack[1]) if n.slack != (0, 0) else None
        return [TxFrame(EthernetRepr(dst, self.mac, ETH_P_ARP).emit(arp.emit()),
                        "arp-probe-unicast" if unicast else "arp-request", window)]

    # -- timers: neigh_timer_handler ------------------------------------------------------------
    def poll_at(self) -> int | None:
        """The earliest entry timer, or a "maybe" branch's next probe."""
        best = None
        for n in self.entries.values():
            t = n.timer
            if t is not None and (best is None or t < best):
                best = t
            t = n.maybe_at
            if t is not None and (best is None or t < best):
                best = t
        return best

    def on_timer(self, now: int) -> list[TxFrame]:
        out: list[TxFrame] = []
        for n in list(self.entries.values()):
            if n.timer is not None and n.timer <= now:
                n.timer = None
                out += self.neigh_timer_handler(now, n)
            if n.maybe_at is not None and n.maybe_at <= now:
                out += self._maybe_probe(now, n)
        return out

    # -- what only some boards do (module docstring) ---------------------------------------------
    def _maybe_branch(self, now: int, n: Neighbour, first: int, late: int) -> None:
        """Open a DELAY -> PROBE branch the board may be on: its DELAY began at `now`, its
        first probe is due at `first` and may be `late`."""
        n.maybe_at, n.maybe_from, n.maybe_probes, n.maybe_late = first, now, 0, late

    def _maybe_probe(self, now: int, n: Neighbour) -> list[TxFrame]:
        """The branch's next unicast probe (neigh_timer_handler -> neigh_probe), optional.
        Its first is the board's DELAY timer: a confirmation the model saw surely in time
        for it (a granule after the DELAY began) means that branch went REACHABLE."""
        p = self.params
        if n.maybe_probes == 0 and n.confirmed_seen >= n.maybe_from + timer_wheel_slack(p.delay_probe_time):
            n.maybe_at = None
            return []
        arp = ArpRepr(ARPOP_REQUEST, self.mac, self.addr, bytes(6), n.key)
        tx = TxFrame(EthernetRepr(n.ha, self.mac, ETH_P_ARP).emit(arp.emit()), "arp-probe-unicast-maybe",
                     Window(now, now + n.maybe_late), optional=True)
        n.maybe_probes += 1
        retrans = max(p.retrans_time, NSEC_PER_SEC // 100)
        n.maybe_at = now + retrans if n.maybe_probes < p.ucast_probes else None
        n.maybe_late += timer_wheel_slack(retrans)
        return [tx]

    def neigh_timer_handler(self, now: int, n: Neighbour) -> list[TxFrame]:
        out = self._timer_step(now, n)
        if n.timer is not None and n.timer < now + NSEC_PER_SEC // 100:
            n.timer = now + NSEC_PER_SEC // 100   # "if (time_before(next, jiffies + HZ/100))"
        return out

    def _timer_step(self, now: int, n: Neighbour) -> list[TxFrame]:
        p = self.params
        nxt = now + max(p.retrans_time, NSEC_PER_SEC // 100)
        if n.state is NUD_REACHABLE:
            if now <= n.confirmed + self.reachable_time:
                n.timer = n.confirmed + self.reachable_time
                return []
            if now <= n.used + p.delay_probe_time:
                self._set(now, n, NUD_DELAY)
                n.timer = now + p.delay_probe_time
                n.slack = self.reachable_window
            else:
                self._set(now, n, NUD_STALE)
            return []
        if n.state is NUD_DELAY:
            # "confirmed within DELAY_PROBE_TIME" as of when the kernel runs this timer: at
            # least a jiffy after it was due, up to its level's granule (calc_wheel_index)
            began = now - p.delay_probe_time
            sure = n.confirmed >= began + timer_wheel_slack(p.delay_probe_time)
            unseen = self.judging and self.unseen_confirms(n.key)
            if sure or n.confirmed > began or unseen:
                if self.judging and not sure:
                    # the board may have gone PROBE: its probes are optional, a reply ends them
                    self._maybe_branch(began, n, now, 0)
                    out = self._maybe_probe(now, n)
                else:
                    out = []
                self._set(now, n, NUD_REACHABLE)
                n.confirmed = max(n.confirmed, now) if unseen else n.confirmed
                n.timer = max(n.confirmed + self.reachable_time, now)
                return out
            self._set(now, n, NUD_PROBE)
            n.probes = 0
        if n.state in (NUD_INCOMPLETE, NUD_PROBE):
            if n.probes >= self.max_probes(n):
                self._set(now, n, NUD_FAILED)
                # neigh_invalidate(): arp_error_report for each queued packet: the board
                # tells itself the host is unreachable (ipv4_link_failure), then frees it.
                # A TCP segment it may have dropped before would change its socket or not.
                if any(len(q) > 9 and q[9] == 6 for q in n.arp_queue[:n.queue_unsure]):
                    raise TruesizeUnknown(f"whether {n.key:#x}'s failure reports a TCP segment to its socket "
                                          f"depends on the queued skbs' truesize (unres_qlen_bytes "
                                          f"{self.params.queue_len_bytes})")
                n.queue_unsure = 0
                for packet in n.arp_queue:
                    self.unreachable.append((now, packet))
                    self.drops.append((now, "SKB_DROP_REASON_NEIGH_FAILED", f"{n.key:#x}"))
                n.arp_queue.clear()
                return []
            n.timer = nxt
            return self._probe(now, n, n.arp_queue[-1] if n.arp_queue else None)
        return []

    # -- carrier: arp_netdev_event(NETDEV_CHANGE) -> neigh_carrier_down -------------------------
    def neigh_carrier_down(self, now: int) -> None:
        """Carrier went off: arp_netdev_event(NETDEV_CHANGE) sees !netif_carrier_ok and, with
        arp_evict_nocarrier set, calls neigh_carrier_down -> __neigh_ifdown(skip_perm=true) ->
        neigh_flush_dev. Every entry of eth0 (the model has no NUD_PERMANENT ones) is unlinked
        from the table, its timer deleted and its arp_queue purged (kfree_skb), whatever its
        state. The next packet to that next hop creates a fresh entry: NONE -> INCOMPLETE and a
        broadcast request, even if the peer's address was REACHABLE before the link went down.

        Linux runs this from the linkwatch work, up to one second after netif_carrier_off (a
        carrier-down event is not urgent); the model runs it with the qdisc deactivate, as the
        MAC does: while carrier is off nothing is sent or received, so the delay is unobservable.
        """
        if not self.params.evict_nocarrier:
            return
        for n in self.entries.values():
            for _ in n.arp_queue:
                self.drops.append((now, "SKB_DROP_REASON_NOT_SPECIFIED", f"{n.key:#x} neigh_flush_dev"))
            n.arp_queue.clear()
            n.queue_unsure = 0
            n.timer = None
            self._set(now, n, NUD_NONE)   # neigh_mark_dead: the entry is gone from the table
        self.entries.clear()

    # -- input: arp_rcv / arp_process ------------------------------------------------------------
    def arp_rcv(self, now: int, eth: EthernetRepr, payload: bytes) -> list[TxFrame]:
        """arp_process(): answer requests for our address, learn, release queued packets."""
        try:
            arp = ArpRepr.parse(payload)
        except WireError as err:
            self.drops.append((now, err.reason, err.detail))
            return []
        if arp.op not in (ARPOP_REQUEST, ARPOP_REPLY):
            return []
        if arp.tip >> 28 == 0xE or arp.tip >> 24 == 127:
            return []   # multicast or loopback target
        out: list[TxFrame] = []
        if arp.sip == 0:
            # RFC 2131 duplicate address detection probe
            if arp.op == ARPOP_REQUEST and arp.tip == self.addr:
                out.append(self._reply(arp.sha, arp.sip))
            return out
        n = self.entries.get(arp.sip)
        if arp.op == ARPOP_REQUEST and arp.tip == self.addr:
            # neigh_event_ns(): create or update to STALE, then reply
            if n is None:
                n = self.entries[arp.sip] = self._create(now, arp.sip)
            out += self._update(now, n, arp.sha, NUD_STALE, override=True)
            out.append(self._reply(arp.sha, arp.sip))
            return out
        if n is None:
            return out   # arp_accept 0: unsolicited ARP does not create entries
        is_garp = arp.is_gratuitous
        override = now > n.updated + self.params.locktime or is_garp
        # broadcast replies and requests do not assert reachability
        state = NUD_REACHABLE if (arp.op == ARPOP_REPLY and eth.dst == self.mac) else NUD_STALE
        out += self._update(now, n, arp.sha, state, override)
        return out

    def _reply(self, tha: bytes, tip: int) -> TxFrame:
        arp = ArpRepr(ARPOP_REPLY, self.mac, self.addr, tha, tip)
        return TxFrame(EthernetRepr(tha, self.mac, ETH_P_ARP).emit(arp.emit()), "arp-reply")

    def _update(self, now: int, n: Neighbour, lladdr: bytes, new: Nud, override: bool) -> list[TxFrame]:
        """__neigh_update() for an address ARP learnt (no NEIGH_UPDATE_F_ADMIN): the state,
        the address and `confirmed`; then, if the entry was not valid before, its arp_queue
        goes out through the entry's new n->output.

        A REACHABLE entry's output is neigh_connected_output (neigh_connect), so the queue
        leaves as it is. A STALE one's is neigh_resolve_output (neigh_suspect): the first
        queued packet's neigh_event_send makes the entry DELAY, with its timer
        delay_first_probe_time away (__neigh_event_send), as any packet sent to a STALE
        entry does."""
        old = n.state
        valid = old in NUD_VALID
        if new is NUD_REACHABLE:
            # "Update confirmed timestamp for neighbour entry after we received ARP packet
            # even if it doesn't change IP to MAC binding": before the override check
            n.confirmed = n.confirmed_seen = now
            n.maybe_at = None   # a branch the board may have been on went REACHABLE too
        if valid:
            if lladdr != n.ha and not override:
                return []
            if lladdr == n.ha and new is NUD_STALE:
                new = old   # same address, weaker news: keep the state
        # an entry that was not valid takes the address whatever it was (neigh->ha is not
        # compared then), so its confirmation is reset below unless this one confirms it
        new_ha = not valid or lladdr != n.ha
        if new_ha:
            n.updated = now
        if new is not old:
            # neigh_del_timer; NUD_IN_TIMER: a REACHABLE entry's timer reachable_time away
            n.timer = now + self.reachable_time if new is NUD_REACHABLE else None
            n.slack = (0, 0)
            self._set(now, n, new)
        if new_ha:
            n.ha = lladdr
            if new is not NUD_REACHABLE:
                n.confirmed = n.confirmed_seen = now - 2 * self.params.base_reachable_time
        if new is old or valid:
            return []
        out: list[TxFrame] = []
        while n.arp_queue and n.state in NUD_VALID:
            unsure = n.queue_unsure > 0   # the board may have dropped it for unres_qlen_bytes
            n.queue_unsure = max(0, n.queue_unsure - 1)
            for tx in self._output(now, n, n.arp_queue.pop(0)):
                tx.cause = "arp-queue-release"
                tx.optional = tx.optional or unsure
                out.append(tx)
        n.arp_queue.clear()
        n.queue_unsure = 0
        return out
