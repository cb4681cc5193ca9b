"""CUBIC, the board's congestion control, as net/ipv4/tcp_cubic.c does it in Linux 6.1:
struct bictcp and its hooks (cubictcp_recalc_ssthresh, cubictcp_cong_avoid's
bictcp_update, cubictcp_acked, cubictcp_state, cubictcp_cwnd_event), integer for integer,
at the module's default parameters. Times are jiffies (tcp_jiffies32) and microseconds,
as the kernel keeps them; the caller passes the clock.

Not modelled: HyStart (hystart_update), which only sets ssthresh once cwnd reaches
hystart_low_window (16 segments).
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import HZ

# module parameters (their defaults) and cubictcp_register's precomputed factors
BICTCP_BETA_SCALE = 1024
BICTCP_HZ = 10
CUBIC_BETA = 717                # beta = 717/1024, about 0.7
BIC_SCALE = 41
FAST_CONVERGENCE = True
TCP_FRIENDLINESS = True
BETA_SCALE = 8 * (BICTCP_BETA_SCALE + CUBIC_BETA) // 3 // (BICTCP_BETA_SCALE - CUBIC_BETA)
CUBE_RTT_SCALE = BIC_SCALE * 10
CUBE_FACTOR = (1 << (10 + 3 * BICTCP_HZ)) // (BIC_SCALE * 10)
U32 = 0xFFFFFFFF

# cubic_root(): cbrt(x) MSB values for x MSB values in [0..63]
_CBRT = (0, 54, 54, 54, 118, 118, 118, 118, 123, 129, 134, 138, 143, 147, 151, 156,
         157, 161, 164, 168, 170, 173, 176, 179, 181, 185, 187, 190, 192, 194, 197, 199,
         200, 202, 204, 206, 209, 211, 213, 215, 217, 219, 221, 222, 224, 225, 227, 229,
         231, 232, 234, 236, 237, 239, 240, 242, 244, 245, 246, 248, 250, 251, 252, 254)


def cubic_root(a: int) -> int:
    """cubic_root(): the table's estimate and one Newton-Raphson step, as the kernel
    rounds them."""
    b = a.bit_length()                       # fls64
    if b < 7:
        return (_CBRT[a] + 35) >> 6
    b = ((b * 84) >> 8) - 1
    shift = a >> (b * 3)
    x = (((_CBRT[shift] + 10) << b) & U32) >> 6
    x = (2 * x + a // (x * (x - 1))) & U32
    return ((x * 341) & U32) >> 10


def usecs_to_jiffies(us: int) -> int:
    return -(-us * HZ // 1_000_000)


@dataclass
class Bictcp:
    """struct bictcp: a connection's CUBIC state (epoch_start None is the kernel's 0)."""

    cnt: int = 0
    last_max_cwnd: int = 0
    last_cwnd: int = 0
    last_time: int = 0
    bic_origin_point: int = 0
    bic_k: int = 0
    delay_min: int = 0
    epoch_start: int | None = None
    ack_cnt: int = 0
    tcp_cwnd: int = 0

    def reset(self) -> None:
        """bictcp_reset(): cubictcp_init, and cubictcp_state on entering CA_Loss."""
        self.__init__()

    def recalc_ssthresh(self, cwnd: int) -> int:
        """cubictcp_recalc_ssthresh(): end the epoch; W_max, lowered a little more if cwnd
        is below the last one (fast convergence); ssthresh = cwnd * beta, at least 2."""
        self.epoch_start = None
        if cwnd < self.last_max_cwnd and FAST_CONVERGENCE:
            self.last_max_cwnd = cwnd * (BICTCP_BETA_SCALE + CUBIC_BETA) // (2 * BICTCP_BETA_SCALE)
        else:
            self.last_max_cwnd = cwnd
        return max(cwnd * CUBIC_BETA // BICTCP_BETA_SCALE, 2)

    def acked(self, rtt_us: int, now_j: int) -> None:
        """cubictcp_acked(): the least delay seen (delay_min), except in the second after
        an epoch began (right after a recovery)."""
        if rtt_us < 0:
            return
        if self.epoch_start is not None and now_j - self.epoch_start < HZ:
            return
        delay = rtt_us or 1
        if self.delay_min == 0 or self.delay_min > delay:
            self.delay_min = delay

    def tx_start(self, now_j: int, lsndtime_j: int) -> None:
        """cubictcp_cwnd_event(CA_EVENT_TX_START): after idle, shift the epoch by the idle
        time so cwnd keeps to the curve."""
        delta = now_j - lsndtime_j
        if self.epoch_start is not None and delta > 0:
            self.epoch_start = min(self.epoch_start + delta, now_j)

    def update(self, cwnd: int, acked: int, now_j: int) -> None:
        """bictcp_update(): ca->cnt, the ACKs per cwnd increment, from the cubic function
        of the time since the epoch began (plus delay_min), and TCP friendliness."""
        self.ack_cnt += acked
        if self.last_cwnd == cwnd and now_j - self.last_time <= HZ // 32:
            return
        if not (self.epoch_start is not None and now_j == self.last_time):
            self.last_cwnd = cwnd
            self.last_time = now_j
            if self.epoch_start is None:
                self.epoch_start = now_j
                self.ack_cnt = acked
                self.tcp_cwnd = cwnd
                if self.last_max_cwnd <= cwnd:
                    self.bic_k = 0
                    self.bic_origin_point = cwnd
                else:
                    self.bic_k = cubic_root(CUBE_FACTOR * (self.last_max_cwnd - cwnd))
                    self.bic_origin_point = self.last_max_cwnd
            t = (now_j - self.epoch_start) + usecs_to_jiffies(self.delay_min)
            t = (t << BICTCP_HZ) // HZ
            offs = self.bic_k - t if t < self.bic_k else t - self.bic_k
            delta = ((CUBE_RTT_SCALE * offs * offs * offs) >> (10 + 3 * BICTCP_HZ)) & U32
            target = self.bic_origin_point - delta if t < self.bic_k else self.bic_origin_point + delta
            target &= U32
            self.cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
            if self.last_max_cwnd == 0 and self.cnt > 20:
                self.cnt = 20
        if TCP_FRIENDLINESS:
            delta = (cwnd * BETA_SCALE) >> 3
            while self.ack_cnt > delta:
                self.ack_cnt -= delta
                self.tcp_cwnd += 1
            if self.tcp_cwnd > cwnd:
                max_cnt = cwnd // (self.tcp_cwnd - cwnd)
                if self.cnt > max_cnt:
                    self.cnt = max_cnt
        self.cnt = max(self.cnt, 2)
