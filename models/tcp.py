"""TCP as Linux 6.1 does it: one `TcpSock` per connection, a `RequestSock` per half-open
passive connection, and the timers, all driven by an explicit `now` (ns).

Read beside net/ipv4/tcp_input.c (tcp_rcv_state_process, tcp_rcv_synsent_state_process,
tcp_ack, tcp_data_queue, __tcp_ack_snd_check, tcp_rtt_estimator), tcp_output.c
(tcp_connect, tcp_select_initial_window, __tcp_select_window, tcp_write_xmit,
tcp_send_delayed_ack), tcp_timer.c (tcp_retransmit_timer, tcp_write_timeout,
tcp_keepalive_timer, tcp_delack_timer) and inet_connection_sock.c (reqsk_timer_handler).

Every method that can emit returns the list of `OutSegment`s; `poll_at()` is the next
deadline and `on_timer(now)` runs whatever is due.

Neighbour confirmation: what tells the board's neighbour entry its peer is alive is TCP's
progress. tcp_ack (forward progress, or a duplicate ACK while data is out),
tcp_init_transfer (tcp_init_metrics) and the FIN_WAIT1 -> FIN_WAIT2 step call
sk_dst_confirm, which only sets sk_dst_pending_confirm; __tcp_transmit_skb copies that flag
onto the next segment the socket sends (`OutSegment.confirm_neigh`) and ip_finish_output2's
sock_confirm_neigh clears it and confirms the neighbour when that segment goes out. Where Linux randomises (ISN, TSval
offset) the values come from the `random.Random` the caller passes in.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .clock import HZ, JIFFY, NSEC_PER_MSEC, Window, jiffies, sec
from .config import SYSCTL_DEFAULTS, rmem_triple
from .errors import ModelError, ModelUsageError, SocketError
from .ipv4 import InetTx
from .tcp_cubic import Bictcp
from .wire.icmp import ICMP_HOST_UNREACH, ICMP_NET_UNREACH
from .wire.ipv4 import INET_ECN_ECT_0, INET_ECN_MASK
from .wire.tcp import ACK, ECE, FIN, PSH, RST, SYN, TcpRepr, linux_options

__all__ = [
    "TcpState", "TcpParams", "OutSegment", "TcpSock", "RequestSock", "TimerKind",
    "TCP_TIMEOUT_INIT", "TCP_TIMEOUT_FALLBACK", "TCP_RTO_MIN", "TCP_RTO_MAX", "TCP_DELACK_MIN",
    "TCP_DELACK_MAX", "TCP_ATO_MIN", "TCP_TIMEWAIT_LEN", "tcp_select_initial_window", "seq_lt", "seq_le",
]

log = logging.getLogger(__name__)

# include/net/tcp.h, in jiffies at HZ=100, as model time.
TCP_TIMEOUT_INIT = jiffies(1 * HZ)
TCP_TIMEOUT_FALLBACK = jiffies(3 * HZ)
TCP_TIMEOUT_MIN_US = 2000     # include/net/tcp.h TCP_TIMEOUT_MIN_US (2 * USEC_PER_MSEC)
TCP_TIMEOUT_MIN = jiffies(2)  # include/net/tcp.h TCP_TIMEOUT_MIN (2U jiffies)
TCP_ORPHAN_RETRIES = 8        # tcp_orphan_retries(): what sysctl tcp_orphan_retries 0 means
TCP_PAWS_MSL = jiffies(60 * HZ)   # include/net/tcp.h: a RST may pass PAWS once ts_recent is this old
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF
TCP_FASTRETRANS_THRESH = 3    # include/net/tcp.h; sysctl tcp_reordering's default (tcp_sk_init)
TCP_MAX_REORDERING = 300      # tcp_sk_init: sysctl_tcp_max_reordering
# enum tcp_ca_state (include/uapi/linux/tcp.h)
TCP_CA_OPEN, TCP_CA_DISORDER, TCP_CA_CWR, TCP_CA_RECOVERY, TCP_CA_LOSS = range(5)
# tcp_ack()'s flags (net/ipv4/tcp_input.c)
FLAG_DATA, FLAG_WIN_UPDATE, FLAG_DATA_ACKED, FLAG_RETRANS_DATA_ACKED = 0x01, 0x02, 0x04, 0x08
FLAG_SYN_ACKED, FLAG_DATA_SACKED, FLAG_ECE, FLAG_LOST_RETRANS = 0x10, 0x20, 0x40, 0x80
FLAG_ORIG_SACK_ACKED, FLAG_SND_UNA_ADVANCED, FLAG_DSACKING_ACK, FLAG_SET_XMIT_TIMER = 0x200, 0x400, 0x800, 0x1000
FLAG_ACKED = FLAG_DATA_ACKED | FLAG_SYN_ACKED
FLAG_NOT_DUP = FLAG_DATA | FLAG_WIN_UPDATE | FLAG_ACKED
FLAG_CA_ALERT = FLAG_DATA_SACKED | FLAG_ECE | FLAG_DSACKING_ACK
FLAG_FORWARD_PROGRESS = FLAG_ACKED | FLAG_DATA_SACKED
TCP_RTO_MAX = jiffies(120 * HZ)
TCP_RTO_MIN = jiffies(HZ // 5)
TCP_DELACK_MAX = jiffies(HZ // 5)
TCP_DELACK_MIN = jiffies(HZ // 25)
TCP_ATO_MIN = jiffies(HZ // 25)
TCP_TIMEWAIT_LEN = jiffies(60 * HZ)
# tcp_sk_init: net->ipv4.sysctl_tcp_invalid_ratelimit = HZ/2
TCP_INVALID_RATELIMIT = jiffies(HZ // 2)
TCP_RESOURCE_PROBE_INTERVAL = jiffies(HZ // 2)
TCP_MAX_QUICKACKS = 16
TCP_MSS_DEFAULT = 536
TCP_MIN_MSS = 88
TCP_INIT_CWND = 10
USEC_PER_SEC = 10**6
# GSO sizing (tcp_xmit_size_goal, tcp_tso_autosize): net/ipv4/tcp_ipv4.c tcp_sk_init's
# sysctl defaults, tcp_init_sock's sk_pacing_shift, and sk_setup_caps' sk_gso_max_size:
# the device's GSO_LEGACY_MAX_SIZE (65536) less MAX_TCP_HEADER + 1, MAX_TCP_HEADER being
# L1_CACHE_ALIGN(128 + MAX_HEADER) = 192 for the board's kernel (64-byte lines; no
# tunnels or WLAN: MAX_HEADER = LL_MAX_HEADER = 32).
TCP_MIN_TSO_SEGS = 2
TCP_TSO_WIN_DIVISOR = 3       # tcp_sk_init: sysctl_tcp_tso_win_divisor
TCP_TSO_RTT_LOG = 9
TCP_PACING_SS_RATIO = 200
TCP_PACING_CA_RATIO = 120
SK_PACING_SHIFT = 10
GSO_MAX_SIZE = 65536 - (192 + 1)
TCP_MAX_WSCALE = 14
TCPOLEN_TSTAMP_ALIGNED = 12
# The truesize of an skb tcp_stream_alloc_skb(sk, 0, ...) makes (tcp_sendmsg_locked's new
# skb, tso_fragment's and tcp_fragment's second half) before any data: SKB_TRUESIZE of
# alloc_skb_fclone(MAX_TCP_HEADER)'s end offset, 192 bytes of header room and the shared
# info in a kmalloc-512 object (end offset 256), plus SKB_DATA_ALIGN(sizeof(struct
# sk_buff)) 192 and SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) 256 on the board's
# 32-bit ARM (64-byte lines). Measured on the board: SO_SNDBUF 7668 (sk_sndbuf 15336)
# takes nine 1000-byte skbs and 7669 ten, so 9 * (T + 1000) lies in 15336..15337.
TCP_SKB_TRUESIZE_EMPTY = 704
U16_MAX = 0xFFFF

MOD32 = 1 << 32


def seq_lt(a: int, b: int) -> bool:
    """before(a, b) in sequence space."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def seq_le(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)


def _ilog2(x: int) -> int:
    return x.bit_length() - 1


def _usecs_to_jiffies_ns(us: int) -> int:
    """usecs_to_jiffies() rounds up; returned as model time."""
    return -(-us * HZ // 1_000_000) * JIFFY


def _msecs_to_jiffies_ns(ms: int) -> int:
    """msecs_to_jiffies() rounds up; returned as model time."""
    return -(-ms * HZ // 1000) * JIFFY


class TcpState(enum.Enum):
    """The RFC 793 states, named as include/net/tcp_states.h names them."""

    CLOSED = "CLOSE"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT1 = "FIN_WAIT1"
    FIN_WAIT2 = "FIN_WAIT2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"


@dataclass(frozen=True)
class TcpParams:
    """The sysctls and device facts TCP reads. `from_config` takes them from a FirmwareConfig;
    the defaults are SYSCTL_DEFAULTS, the emulated AST2500's own values.

    tcp_rmem[2] (and so the window scale) depends on the board's RAM: tcp_init() sets it to
    max(131072, a share of nr_free_buffer_pages), so a board with other RAM declares it.
    """

    mtu: int = 1500
    syn_retries: int = 6
    synack_retries: int = 5
    timestamps: bool = True
    sack: bool = True
    window_scaling: bool = True
    retries2: int = 15
    early_retrans: int = 3
    fin_timeout: int = sec(60)
    keepalive_time: int = sec(7200)
    keepalive_intvl: int = sec(75)
    keepalive_probes: int = 9
    tcp_rmem: tuple[int, int, int] = rmem_triple(SYSCTL_DEFAULTS["net.ipv4.tcp_rmem"])
    # net.core.rmem_max (SK_RMEM_MAX): tcp_select_initial_window scales for it too
    rmem_max: int = int(SYSCTL_DEFAULTS["net.core.rmem_max"])
    adv_win_scale: int = int(SYSCTL_DEFAULTS["net.ipv4.tcp_adv_win_scale"])
    workaround_signed_windows: bool = False
    reflect_tos: bool = False     # net.ipv4.tcp_reflect_tos
    no_pmtu_disc: bool = False    # net.ipv4.ip_no_pmtu_disc: new sockets IP_PMTUDISC_DONT (inet_create)
    syncookies: int = 1           # net.ipv4.tcp_syncookies: 0 never, 1 when the SYN queue is full, 2 always
    max_syn_backlog: int = 128    # net.ipv4.tcp_max_syn_backlog: without cookies, its last quarter is kept

    @classmethod
    def from_config(cls, config) -> TcpParams:
        s = config.sysctl
        return cls(
            mtu=config.interface.mtu,
            syn_retries=int(s("net.ipv4.tcp_syn_retries")),
            synack_retries=int(s("net.ipv4.tcp_synack_retries")),
            timestamps=bool(s("net.ipv4.tcp_timestamps")),
            sack=bool(s("net.ipv4.tcp_sack")),
            window_scaling=bool(s("net.ipv4.tcp_window_scaling")),
            retries2=int(s("net.ipv4.tcp_retries2")),
            early_retrans=int(s("net.ipv4.tcp_early_retrans")),
            fin_timeout=sec(int(s("net.ipv4.tcp_fin_timeout"))),
            keepalive_time=sec(int(s("net.ipv4.tcp_keepalive_time"))),
            keepalive_intvl=sec(int(s("net.ipv4.tcp_keepalive_intvl"))),
            keepalive_probes=int(s("net.ipv4.tcp_keepalive_probes")),
            tcp_rmem=rmem_triple(s("net.ipv4.tcp_rmem")),
            rmem_max=int(s("net.core.rmem_max")),
            adv_win_scale=int(s("net.ipv4.tcp_adv_win_scale")),
            reflect_tos=bool(s("net.ipv4.tcp_reflect_tos")),
            no_pmtu_disc=bool(s("net.ipv4.ip_no_pmtu_disc")),
            syncookies=int(s("net.ipv4.tcp_syncookies")),
            max_syn_backlog=int(s("net.ipv4.tcp_max_syn_backlog")),
        )

    @property
    def advmss(self) -> int:
        """The MSS a route on this device advertises: MTU minus IPv4 and TCP headers."""
        return self.mtu - 40

    def win_from_space(self, space: int) -> int:
        """tcp_win_from_space(): the part of a buffer offered as window."""
        if self.adv_win_scale <= 0:
            return space >> -self.adv_win_scale
        return space - (space >> self.adv_win_scale)


def tcp_select_initial_window(params: TcpParams, space: int, mss: int, wscale_ok: bool,
                              window_clamp: int = 0, init_rcv_wnd: int = 0) -> tuple[int, int, int]:
    """tcp_select_initial_window(): (rcv_wnd, window_clamp, rcv_wscale)."""
    space = max(space, 0)
    if window_clamp == 0:
        window_clamp = U16_MAX << TCP_MAX_WSCALE
    space = min(window_clamp, space)
    if space > mss:
        space = space // mss * mss
    rcv_wnd = min(space, 32767 if params.workaround_signed_windows else U16_MAX)
    if init_rcv_wnd:
        rcv_wnd = min(rcv_wnd, init_rcv_wnd * mss)
    rcv_wscale = 0
    if wscale_ok:
        space = max(space, params.tcp_rmem[2], params.rmem_max)
        space = min(space, window_clamp)
        rcv_wscale = min(max(_ilog2(space) - 15, 0), TCP_MAX_WSCALE)
    window_clamp = min(U16_MAX << rcv_wscale, window_clamp)
    return rcv_wnd, window_clamp, rcv_wscale


def tcp_model_timeout(boundary: int, rto_base: int) -> int:
    """tcp_model_timeout(): how long `boundary` exponential backoffs from `rto_base` take."""
    thresh = _ilog2(TCP_RTO_MAX // rto_base)
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (boundary - thresh) * TCP_RTO_MAX


@dataclass(slots=True)
class OutSegment:
    """A segment TCP hands to ip_queue_xmit. `cause` says which rule sent it; `window`
    is the time window when Linux may send it, if that is not a point; `ip` is what its
    sender puts in the IPv4 header (TOS, DF, and the socket's inet_id or none)."""

    src: int
    dst: int
    tcp: TcpRepr
    payload: bytes
    cause: str
    window: Window | None = None
    ip: InetTx = InetTx()
    # skb->dst_pending_confirm: ip_finish_output2 -> sock_confirm_neigh confirms the next
    # hop's neighbour entry as this segment goes out (a TCP socket's sk_dst_pending_confirm)
    confirm_neigh: bool = False
    # only some boards send it: it depends on an application the model does not play
    optional: bool = False

    @property
    def ip_id(self) -> InetTx:
        """What Board._tcp_out passes to ip_queue_xmit as the segment's ID: the whole
        InetTx, so the TOS and DF travel with the ID."""
        return self.ip


@dataclass(slots=True)
class _TxSkb:
    """One segment in the retransmit queue (tcp_rtx_queue)."""

    seq: int
    data: bytes
    flags: int
    sent_at: int
    retransmitted: bool = False   # TCPCB_EVER_RETRANS
    tx_at: int | None = None   # the last (re)transmission: tcp_skb_timestamp_us(skb)
    # the scoreboard (TCP_SKB_CB(skb)->sacked): TCPCB_SACKED_ACKED, TCPCB_LOST, and
    # TCPCB_SACKED_RETRANS (a retransmission of it is out)
    sacked: bool = False
    lost: bool = False
    rtx_out: bool = False
    # the kernel skb this segment is part of: the segments of one tcp_transmit_skb() (a GSO
    # burst) share it until tcp_fragment splits them (a retransmission of fewer segments,
    # a SACK of part, NewReno's head, the probe's tail)
    skb_id: int = 0

    def __post_init__(self) -> None:
        if self.tx_at is None:
            self.tx_at = self.sent_at

    @property
    def end_seq(self) -> int:
        return (self.seq + len(self.data) + (1 if self.flags & (SYN | FIN) else 0)) % MOD32


class TimerKind(enum.Enum):
    """A socket's timers (icsk_retransmit_timer, icsk_delack_timer, sk_timer)."""

    RETRANSMIT = "retransmit"
    DELACK = "delack"
    KEEPALIVE = "keepalive"
    TIME_WAIT = "time_wait"
    FIN_WAIT2 = "fin_wait2"
    PROBE0 = "probe0"      # ICSK_TIME_PROBE0: the zero-window probe, only while nothing is in flight



@dataclass
class RequestSock:
    """A half-open passive connection (struct tcp_request_sock) in the listener's SYN queue."""

    local: tuple[int, int]
    remote: tuple[int, int]
    irs: int
    iss: int
    peer_mss: int
    ts_ok: bool
    sack_ok: bool
    snd_wscale: int | None
    ts_recent: int
    ts_offset: int
    peer_window: int
    rcv_wnd: int
    window_clamp: int
    rcv_wscale: int
    snt_synack: int
    expires_at: int
    num_timeout: int = 0
    num_retrans: int = 0
    syn_tos: int = 0   # tcp_conn_request: the SYN's TOS byte (TCP_SKB_CB(skb)->ip_dsfield)
    syncookie: bool = False   # req->syncookie: never queued, its SYN-ACK sent once (TCP_SYNACK_COOKIE)
    ecn_ok: bool = False      # inet_rsk(req)->ecn_ok (tcp_ecn_create_request)

    def synack(self, now: int, params: TcpParams, cause: str, listener_tos: int = 0) -> OutSegment:
        """tcp_make_synack(): options in tcp_synack_options() order, window not scaled.

        tcp_v4_send_synack -> ip_build_and_send_pkt(sk = the listener): the TOS is the
        listener's inet->tos when it is sent (a retransmission reads it again), or with
        tcp_reflect_tos the SYN's DSCP and the listener's ECN bits. A SYN-ACK is never more
        than IPV4_MIN_MTU bytes, so it has DF and ID 0 whatever the listener's pmtudisc."""
        ts_now = now // NSEC_PER_MSEC
        if self.syncookie and self.ts_ok:
            ts_now = cookie_init_timestamp(ts_now, self.snd_wscale, self.sack_ok, self.ecn_ok)
        tsval = (ts_now + self.ts_offset) % MOD32
        opts = linux_options(mss=params.advmss, ts=(tsval, self.ts_recent) if self.ts_ok else None,
                             sack_perm=self.sack_ok,
                             wscale=self.rcv_wscale if self.snd_wscale is not None else None)
        # tcp_ecn_make_synack: ECE when the request is ecn_ok
        tcp = TcpRepr(self.local[1], self.remote[1], self.iss, (self.irs + 1) % MOD32,
                      SYN | ACK | (ECE if self.ecn_ok else 0), min(self.rcv_wnd, U16_MAX), opts)
        tos = ((self.syn_tos & ~INET_ECN_MASK) | (listener_tos & INET_ECN_MASK)) if params.reflect_tos \
            else listener_tos
        return OutSegment(self.local[0], self.remote[0], tcp, b"", cause, ip=InetTx(None, tos, df=True))


# net/ipv4/syncookies.c: a cookie SYN-ACK's TSval carries the SYN's options in its low bits
TS_OPT_WSCALE_MASK = 0xF
TS_OPT_SACK = 1 << 4
TS_OPT_ECN = 1 << 5
TSBITS = 6


def cookie_init_timestamp(ts_now: int, snd_wscale: int | None, sack_ok: bool, ecn_ok: bool = False) -> int:
    """cookie_init_timestamp() (net/ipv4/syncookies.c): the clock (ms) with its low TSBITS
    replaced by the options (the peer's window scale, 0xf for none; SACK; ECN), and one
    period earlier if that would be later than now."""
    options = TS_OPT_WSCALE_MASK if snd_wscale is None else snd_wscale
    if sack_ok:
        options |= TS_OPT_SACK
    if ecn_ok:
        options |= TS_OPT_ECN
    ts = ((ts_now >> TSBITS) << TSBITS) | options
    if ts > ts_now:
        ts -= 1 << TSBITS
    return ts


class FinWait2Unsure(ModelError):
    """A segment reached a FIN_WAIT2 orphan when, for all the model knows, it may or may
    not still be there (tcp_close came at an unobserved time within the application's
    latency): its answer (an ACK, or tcp_v4_send_reset's RST) cannot be told, so the
    model cannot judge the board from here."""


class TcpSock:
    """A TCP connection's state (struct tcp_sock) and its state machine."""

    def __init__(self, params: TcpParams, rng: random.Random, local: tuple[int, int] = (0, 0),
                 remote: tuple[int, int] = (0, 0), name: str = "tcp"):
        self.params = params
        self.rng = rng
        self.name = name
        self.local = local
        self.remote = remote
        self.state = TcpState.CLOSED
        self.transitions: list[tuple[int, TcpState, TcpState]] = []
        self.error: str | None = None
        self.error_at: int | None = None
        self.soft_error: str | None = None
        # (sock, seq) -> is a copy of that segment still queued below TCP? (the board's
        # neighbour layer answers; None: never)
        self.host_queued: Callable[[TcpSock, int], bool] | None = None
        self.spurious_rtx_hostqueues = 0   # LINUX_MIB_TCPSPURIOUS_RTX_HOSTQUEUES
        # TSQ_THROTTLED, set by skb_still_in_host_queue: the seq of the copy it found
        # waiting; and the RTO's head marked lost (tcp_enter_loss) but not resent since
        # (lost_out > retrans_out)
        self.tsq_throttled: int | None = None
        self.head_lost_unsent = False
        # options
        self.nodelay = False
        self.keepalive = False
        self.reuseaddr = False
        self.orphan = False           # close() was called: no process owns it (SOCK_DEAD)
        self.shut_wr = False
        # tcp_time_wait(TCP_FIN_WAIT2): a timewait sock now (tw_substate), with the window it
        # froze (tw_rcv_wnd); fw2_unsure: when the FIN_WAIT2 orphan changes (becomes a
        # timewait sock, dies), as far as the model knows (its close came up to the
        # application's latency after it was asked), as (earliest, latest) windows
        self.timewait_sock = False
        self.tw_rcv_wnd = 0
        self.tw_last_oow_ack: int | None = None
        self.ts_recent_at = 0          # when ts_recent was last taken (ts_recent_stamp)
        self.tw_syn_isn: int | None = None   # TCP_TW_SYN: a new SYN the listener takes, with this ISN
        self.fw2_unsure: list[tuple[int, int]] = []
        # send side
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.max_window = 0
        self.snd_wscale = 0
        self.snd_sml = 0
        self.write_queue = bytearray()
        self.push_marks: list[int] = []   # byte offsets in write_queue ending a send() call
        self.skb_lens: list[int] = []     # the write queue's skbs (their lengths), head first
        self.pushed_seq: int | None = None   # tp->pushed_seq: write_seq at the last tcp_mark_push
        self.rtt_min_us = 0               # tcp_min_rtt: the least RTT sample
        self.rtx_queue: list[_TxSkb] = []
        self.fin_queued = False
        self.mss_cache = TCP_MSS_DEFAULT
        self.peer_mss = TCP_MSS_DEFAULT
        self.advmss = params.advmss
        self.cwnd = TCP_INIT_CWND
        self.ssthresh = 0x7FFFFFFF
        # receive side
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_wnd = 0
        self.rcv_wup = 0
        self.rcv_ssthresh = 0
        self.window_clamp = 0
        self.rcv_wscale = 0
        self.rcv_buf = bytearray()
        self.ofo: list[tuple[int, bytes, bool]] = []   # (seq, data, fin), out of order
        self.fin_received = False
        self.rcvbuf = params.tcp_rmem[1]
        # options negotiated
        self.ts_ok = False
        self.sack_ok = False
        self.wscale_ok = False
        self.ts_recent = 0
        self.ts_offset = 0
        self.dsack: tuple[int, int] | None = None
        # RTT and RTO (tcp_rtt_estimator, in microseconds as Linux keeps them)
        self.srtt_us = 0
        self.mdev_us = 0
        self.mdev_max_us = 0
        self.rttvar_us = 0
        self.rtt_seq = 0
        self.rto = TCP_TIMEOUT_INIT
        self.backoff = 0
        self.retransmits = 0
        self.retrans_stamp: int | None = None
        # tail loss probe (tcp_schedule_loss_probe): the retransmit timer is a probe timer
        # while probe_pending (icsk_pending == ICSK_TIME_LOSS_PROBE)
        self.probe_pending = False
        self.tlp_high_seq: int | None = None   # a probe is out (one per tail loss episode)
        self.tlp_retrans = False               # the probe resent the tail (not new data)
        # loss recovery (tcp_fastretrans_alert): the congestion state (icsk_ca_state) and
        # its high_seq; a non-SACK peer's duplicate ACKs (tcp_add_reno_sack); the reordering
        # degree (tp->reordering, reord_seen); PRR's counts; the undo marker (None: unset)
        self.ca_state = TCP_CA_OPEN
        self.high_seq = 0
        self.reno_sacked = 0
        self.reordering = TCP_FASTRETRANS_THRESH
        self.reord_seen = 0
        self.prior_cwnd = 0
        self.prr_delivered = 0
        self.prr_out = 0
        self.prior_ssthresh = 0
        self.undo_marker: int | None = None
        self.undo_retrans = 0
        self.lost_total = 0                    # tp->lost: segments ever marked lost
        self._next_skb_id = 1
        self.wstamp = 0                        # tcp_wstamp_ns: when this socket last sent
        self.frto = False                      # F-RTO after this timeout (tp->frto)
        self._rexmit_new = False
        self._sack_delivered = self._reno_delivered = 0
        self._last_ecr: int | None = None      # the ACK's TS echo (rx_opt.rcv_tsecr), if any
        # RACK (tcp_recovery.c): the latest sent delivered segment and its RTT; the
        # retransmit timer is RACK's reordering timer while reo_pending (ICSK_TIME_REO_TIMEOUT)
        self.rack_mstamp_us = 0
        self.rack_end_seq = 0
        self.rack_rtt_us = 0
        self.rack_advanced = False
        self.reo_pending = False
        # congestion control: CUBIC's state, tcp_cong_avoid_ai's credit (snd_cwnd_cnt), and
        # how fully cwnd is used (tcp_cwnd_validate: is_cwnd_limited, max_packets_out,
        # cwnd_usage_seq); lsndtime: when data last went out (jiffies)
        self.ca = Bictcp()
        self.snd_cwnd_cnt = 0
        self.is_cwnd_limited = False
        self.max_packets_out = 0
        self.cwnd_usage_seq = 0
        self.lsndtime = 0
        self.total_retrans = 0
        # delayed ACK (icsk_ack)
        self.ack_pending = False
        self.delack_cause: int | None = None
        self.ato = 0
        self.delack_exact = False
        self.quick = 0
        self.pingpong = 0
        self.lrcvtime = 0
        self.rcv_mss = TCP_MSS_DEFAULT
        # keepalive
        self.rcv_tstamp = 0
        self.probes_out = 0
        # the first keepalive timer of an accepted socket has been allowed the daemon's
        # accept latency (models.board.Board._retime)
        self.keepalive_accepted = False
        self.timers: dict[TimerKind, int] = {}
        # struct inet_sock: what ip_queue_xmit puts in the IPv4 header of this socket's
        # segments. inet_create(): TOS 0, IP_PMTUDISC_WANT (DF) unless ip_no_pmtu_disc, inet_id 0.
        # ECN (tcp_ecn 2): never asked for on the board's connects; a peer that asks gets it
        # on an accepted socket (ecn_ok, TCP_ECN_OK). Its data then carries ECT(0)
        # (tcp_ecn_send); what congestion marks would start (a CE seen: ECE until the peer's
        # CWR; the peer's ECE: CWR and a cwnd reduction) is not modelled.
        self.ecn_ok = False
        self.tos = 0
        self.dont_fragment = not params.no_pmtu_disc
        self.inet_id = 0
        # sk_dst_pending_confirm: a neighbour confirmation waiting for the next segment sent
        self.dst_pending_confirm = False
        self.passive = False   # accepted from a listener (tcp_create_openreq_child)
        # SO_SNDBUF (sk_sndbuf with SOCK_SNDBUF_LOCK; None: not set, the send buffer is not
        # modelled) and the end sequence of each skb sent and not yet wholly acked, which
        # sk_wmem_queued counts (see _wmem_queued, _skb_sent); TCP_USER_TIMEOUT
        # (icsk_user_timeout, ms, 0: none) and icsk_probes_tstamp (the first zero-window
        # probe timer of a run)
        self.sndbuf: int | None = None
        self.rtx_skb_ends: list[int] = []
        self.user_timeout_ms = 0
        self.probes_tstamp: int | None = None
        self._tx: list[OutSegment] = []

    # -- bookkeeping ---------------------------------------------------------------
    def set_state(self, now: int, new: TcpState) -> None:
        """tcp_set_state(): the one place the state changes; logs old=>new."""
        old = self.state
        if old is new:
            return
        log.debug("%s %s:%d state %s=>%s", self.name, self.local[0], self.local[1], old.value, new.value)
        self.transitions.append((now, old, new))
        self.state = new

    def sk_dst_confirm(self) -> None:
        """sk_dst_confirm() (include/net/sock.h): set sk_dst_pending_confirm; the next
        segment this socket sends carries it to the neighbour (see `_take_confirm`)."""
        self.dst_pending_confirm = True

    def _take_confirm(self) -> bool:
        """__tcp_transmit_skb's skb_set_dst_pending_confirm(skb, sk_dst_pending_confirm),
        then sock_confirm_neigh in ip_finish_output2, which clears the socket's flag as the
        segment goes out. (Linux clears it only once the segment reaches
        ip_finish_output2; the model's segments always get there, a route being there.)"""
        pending, self.dst_pending_confirm = self.dst_pending_confirm, False
        return pending

    def _flush(self) -> list[OutSegment]:
        out, self._tx = self._tx, []
        return out

    def poll_at(self) -> int | None:
        """The next time this socket needs `on_timer`, or None."""
        return min(self.timers.values()) if self.timers else None

    def _tsval(self, now: int) -> int:
        return (now // NSEC_PER_MSEC + self.ts_offset) % MOD32

    @property
    def in_flight(self) -> int:
        return (self.snd_nxt - self.snd_una) % MOD32

    def _done(self, now: int, error: str | None) -> None:
        """tcp_done(): CLOSE, timers off, queues purged; `error` as sk_err."""
        if error and not self.error:
            self.error, self.error_at = error, now
        self.set_state(now, TcpState.CLOSED)
        self.timers.clear()
        self.rtx_queue.clear()
        self.write_queue.clear()
        self.skb_lens.clear()
        self.push_marks.clear()

    # -- output ----------------------------------------------------------------------
    def _select_window(self) -> int:
        """tcp_select_window() with __tcp_select_window(); receive memory counts payload
        bytes only (Linux counts skb truesize), so mid-stream windows are approximate."""
        p = self.params
        free_space = p.win_from_space(self.rcvbuf - len(self.rcv_buf))
        allowed = p.win_from_space(self.rcvbuf)
        full_space = min(self.window_clamp, allowed)
        mss = min(self.rcv_mss, full_space)
        cur_win = max((self.rcv_wup + self.rcv_wnd - self.rcv_nxt) % MOD32, 0)
        if cur_win >= 0x80000000:
            cur_win = 0
        if mss <= 0:
            new_win = 0    # no space at all (tcp_adv_win_scale -30 and below): "if (mss <= 0) return 0"
        elif free_space < (full_space >> 1):
            free_space = free_space >> self.rcv_wscale << self.rcv_wscale
            new_win = 0 if free_space < (allowed >> 4) or free_space < mss else None
        else:
            new_win = None
        if new_win is None:
            free_space = min(free_space, self.rcv_ssthresh)
            if self.rcv_wscale:
                scale = 1 << self.rcv_wscale
                new_win = -(-free_space // scale) * scale
            else:
                new_win = self.rcv_wnd
                if new_win <= free_space - mss or new_win > free_space:
                    new_win = free_space // mss * mss
                elif mss == full_space and free_space > new_win + (full_space >> 1):
                    new_win = free_space
        if new_win < cur_win:  # never shrink the offered window (sysctl_tcp_shrink_window 0)
            scale = 1 << self.rcv_wscale
            new_win = -(-cur_win // scale) * scale
        self.rcv_wnd = new_win
        self.rcv_wup = self.rcv_nxt
        return min(new_win, U16_MAX << self.rcv_wscale) >> self.rcv_wscale

    def _options(self, now: int) -> tuple:
        ts = (self._tsval(now), self.ts_recent) if self.ts_ok else None
        blocks: list[tuple[int, int]] = []
        if self.sack_ok:
            if self.dsack:
                blocks.append(self.dsack)
            for seq, data, fin in self.ofo[:4 - len(blocks) - (1 if ts else 0)]:
                blocks.append((seq, (seq + len(data) + fin) % MOD32))
        self.dsack = None
        return linux_options(ts=ts, sack_blocks=tuple(blocks))

    def _send(self, now: int, flags: int, seq: int, payload: bytes, cause: str, window: Window | None = None,
              ack: bool = True) -> None:
        """tcp_transmit_skb(): every segment after the SYN carries ACK and the current window;
        sending one clears a pending delayed ACK (tcp_event_ack_sent); every one moves
        tcp_wstamp_ns."""
        self.wstamp = max(self.wstamp, now)
        if ack:
            flags |= ACK
        rwin = self.tw_rcv_wnd >> self.rcv_wscale if self.timewait_sock else self._select_window()
        tcp = TcpRepr(self.local[1], self.remote[1], seq, self.rcv_nxt if flags & ACK else 0, flags,
                      rwin, self._options(now))
        if self.state is TcpState.TIME_WAIT or self.timewait_sock:
            # tcp_v4_timewait_ack -> tcp_v4_send_ack on the control socket (ipv4_tcp_sk,
            # IP_PMTUDISC_DO, no destination): DF, ID 0, TOS tw_tos less ECN
            # (ip_send_unicast_reply)
            ip = InetTx(None, self.tos & ~INET_ECN_MASK, df=True)
            confirm = False   # the control socket's skb: no dst_pending_confirm
        else:
            if self.ecn_ok and not flags & SYN:
                # tcp_ecn_send: a data segment not sent before sets ECT(0) in the socket's TOS
                # (INET_ECN_xmit); an ACK or a retransmission clears it (INET_ECN_dontxmit)
                new_data = bool(payload) and not seq_lt(seq, self.snd_nxt)
                self.tos = (self.tos & ~INET_ECN_MASK) | (INET_ECN_ECT_0 if new_data else 0)
            ip = InetTx(self._next_ip_id(), self.tos, self.dont_fragment)   # ip_queue_xmit
            confirm = self._take_confirm()
        self._tx.append(OutSegment(self.local[0], self.remote[0], tcp, bytes(payload), cause, window, ip, confirm))
        if payload and self.ato and now - self.lrcvtime < self.ato:
            # tcp_event_data_sent: "If it is a reply for ato after last received packet,
            # enter pingpong mode" (TCP_PINGPONG_THRESH 1)
            self.pingpong = 1
        if flags & ACK:
            self.ack_pending = False
            self.timers.pop(TimerKind.DELACK, None)
            if self.quick:
                self.quick -= 1

    def send_ack(self, now: int, cause: str = "ack", window: Window | None = None) -> None:
        """tcp_send_ack()."""
        self._send(now, 0, self.snd_nxt, b"", cause, window)

    def _arm_rto(self, now: int, timeout: int | None = None) -> None:
        self.timers[TimerKind.RETRANSMIT] = now + (self.rto if timeout is None else timeout)
        self.probe_pending = self.reo_pending = False

    def _write_xmit(self, now: int, push_fin: bool = False, probe: bool = False, push_one: bool = False,
                    nagle_off: bool = False) -> None:
        """tcp_write_xmit(): send what cwnd, the peer's window and Nagle allow, an skb (a
        GSO burst of up to tcp_tso_segs segments) at a time; then, if it sent anything,
        schedule a tail loss probe. `probe` (push_one 2, from the probe itself): one skb,
        a congestion window of at least one segment, no new probe scheduled. `push_one`
        (tcp_push_one, from tcp_sendmsg_locked when an skb fills): one skb, Nagle off.
        `nagle_off`: TCP_NAGLE_OFF (tcp_xmit_recovery's push).
        An skb of several segments may wait for an ACK due at once (tcp_tso_should_defer)."""
        if self.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT1,
                              TcpState.CLOSING, TcpState.LAST_ACK):
            return
        nxt0 = self.snd_nxt
        queued = bool(self.write_queue) or self.fin_queued
        deferred_cwnd_limited = False
        max_segs = self._tso_segs()
        while self.write_queue:
            mss = self.mss_cache
            skb_len = self.skb_lens[0]
            tso_segs = -(-skb_len // mss)                      # tcp_init_tso_segs
            in_flight_segs = self._packets_in_flight()
            if in_flight_segs >= self.cwnd:                    # tcp_cwnd_test
                if not probe:
                    break
                cwnd_quota = 1
            else:
                cwnd_quota = min(max(self.cwnd >> 1, 1), self.cwnd - in_flight_segs)
            wnd_end = (self.snd_una + self.snd_wnd) % MOD32
            if seq_lt(wnd_end, (self.snd_nxt + min(mss, skb_len)) % MOD32):   # tcp_snd_wnd_test
                break
            last_of_queue = len(self.skb_lens) == 1
            if tso_segs == 1 and skb_len < mss and not self.nodelay and not probe and not push_one and not nagle_off \
                    and not (last_of_queue and self.fin_queued):
                # Nagle, with Minshall's refinement (tcp_nagle_check): hold a small
                # segment only while an earlier small one is unacknowledged.
                if self.rtx_queue and seq_lt(self.snd_una, self.snd_sml) and seq_le(self.snd_sml, self.snd_nxt):
                    break
            if tso_segs > 1 and not probe and not push_one:
                defer, cwnd_limited = self._tso_should_defer(now, skb_len, last_of_queue, max_segs)
                deferred_cwnd_limited |= cwnd_limited
                if defer:
                    break
            limit = mss
            if tso_segs > 1:
                limit = self._mss_split_point(skb_len, last_of_queue, min(cwnd_quota, max_segs),
                                              probe or push_one or nagle_off)
            if skb_len > limit:                                # tso_fragment: PSH and FIN go with the tail
                self.skb_lens[0:1] = [limit, skb_len - limit]
                skb_len = limit
            self._transmit_skb(now, skb_len)
            if probe or push_one:
                break
        if self.fin_queued and not self.write_queue and not (probe and self.snd_nxt != nxt0):
            self.fin_queued = False
            self._xmit_new(now, FIN, b"")
        if queued:
            self._cwnd_validate(self.snd_nxt != nxt0,
                                deferred_cwnd_limited or self._packets_in_flight() >= self.cwnd)
        if self.snd_nxt != nxt0 and self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY):
            self.prr_out += sum(1 for skb in self.rtx_queue if not seq_lt(skb.seq, nxt0))
        if self.snd_nxt != nxt0 and not probe:
            self.timers.pop(TimerKind.PROBE0, None)   # one icsk timer: the RTO's now
            self._schedule_loss_probe(now, False)
        elif self.snd_nxt == nxt0 and not self.rtx_queue and self.write_queue \
                and TimerKind.PROBE0 not in self.timers:
            # tcp_write_xmit sent nothing, nothing is out and data waits (the peer's window
            # is closed): tcp_check_probe_timer arms ICSK_TIME_PROBE0 at tcp_probe0_base
            self.timers[TimerKind.PROBE0] = now + self._probe0_base()

    def _tso_should_defer(self, now: int, skb_len: int, is_tail: bool, max_segs: int) -> tuple[bool, bool]:
        """tcp_tso_should_defer(): hold the send head (several segments) back for an ACK
        due within min(srtt/2, 1 ms), if something went out in the last millisecond
        (tcp_wstamp_ns) and less than a full burst, the whole skb, or a third of the window
        (tcp_tso_win_divisor) could go now; never in Recovery or Loss, nor for a FIN.
        Returns (defer, cwnd-limited)."""
        if self.ca_state >= TCP_CA_RECOVERY or now - self.wstamp - NSEC_PER_MSEC > 0:
            return False, False
        mss = self.mss_cache
        send_win = (self.snd_una + self.snd_wnd - self.snd_nxt) % MOD32
        cong_win = (self.cwnd - self._packets_in_flight()) * mss
        limit = min(send_win, cong_win)
        if limit >= max_segs * mss or (not is_tail and limit >= skb_len):
            return False, False
        if limit >= min(self.snd_wnd, self.cwnd * mss) // TCP_TSO_WIN_DIVISOR or not self.rtx_queue:
            return False, False
        srtt_ns = (1000 >> 3) * self.srtt_us
        how_far_is_the_ack = self.rtx_queue[0].tx_at + srtt_ns - now
        if how_far_is_the_ack - min(srtt_ns >> 1, NSEC_PER_MSEC) > 0:
            return False, False
        if cong_win < send_win:
            if cong_win <= skb_len:
                return True, True
        elif send_win <= skb_len:
            return True, False
        if is_tail and self.fin_queued:
            return False, False
        return True, False

    def _new_skb_id(self) -> int:
        self._next_skb_id += 1
        return self._next_skb_id

    def _fragment(self, i: int) -> None:
        """tcp_fragment() in the retransmit queue: the segments from index `i` on that
        shared an skb with the one before become an skb of their own."""
        q = self.rtx_queue
        if 0 < i < len(q) and q[i].skb_id == q[i - 1].skb_id:
            old, new = q[i].skb_id, self._new_skb_id()
            for skb in q[i:]:
                if skb.skb_id != old:
                    break
                skb.skb_id = new

    def _cwnd_validate(self, sent: bool, is_cwnd_limited: bool) -> None:
        """tcp_cwnd_validate(), from tcp_write_xmit when it sent something or cwnd held it
        back: remember, per window of data, whether cwnd was the limit, else the most
        packets out. (Its shrinking of an unused cwnd, tcp_cwnd_application_limited, and
        the restart after idle are not modelled.)"""
        if not (sent or is_cwnd_limited):
            return
        if not seq_lt(self.snd_una, self.cwnd_usage_seq) or is_cwnd_limited or \
                (not self.is_cwnd_limited and len(self.rtx_queue) > self.max_packets_out):
            self.is_cwnd_limited = is_cwnd_limited
            self.max_packets_out = len(self.rtx_queue)
            self.cwnd_usage_seq = self.snd_nxt

    def _take(self, size: int) -> tuple[bytes, int]:
        """Take `size` bytes off the head of the write queue (splitting the head skb, as
        tcp_fragment does); returns them and the PSH a send() end (tcp_mark_push) put there."""
        data = bytes(self.write_queue[:size])
        del self.write_queue[:size]
        left = size
        while left:
            if self.skb_lens[0] <= left:
                left -= self.skb_lens.pop(0)
            else:
                self.skb_lens[0] -= left
                left = 0
        marks = [m - size for m in self.push_marks]
        self.push_marks = [m for m in marks if m > 0]
        return data, PSH if any(m <= 0 for m in marks) else 0

    def _transmit_skb(self, now: int, size: int) -> None:
        """tcp_transmit_skb() of the head skb's first `size` bytes, as the wire sees it
        after GSO (tcp_gso_segment): MSS-sized segments, PSH and FIN only on the last.
        __tcp_transmit_skb forces PSH on an skb of more than one segment ("to expedite
        GRO flush at receiver"), so a burst's last segment carries PSH. It sets it on the
        clone it sends: the skb kept for retransmission has only its own PSH (tcp_mark_push)."""
        data, flags = self._take(size)
        mss = self.mss_cache
        gso_psh = PSH if len(data) > mss else 0
        if not self.write_queue and self.fin_queued:
            flags |= FIN
            self.fin_queued = False
        skb_id = self._new_skb_id()
        for off in range(0, len(data), mss):
            piece = data[off:off + mss]
            last = off + mss >= len(data)
            self._xmit_new(now, flags if last else 0, piece, gso_psh if last else 0, skb_id)
            if len(piece) < mss:
                self.snd_sml = self.snd_nxt
        self._skb_sent()

    def _mss_split_point(self, skb_len: int, is_tail: bool, max_segs: int, nagle_off: bool) -> int:
        """tcp_mss_split_point(): how much of the head skb goes out as one burst: max_segs
        segments, or what the peer's window takes, less a partial last segment that
        Nagle would hold."""
        mss = self.mss_cache
        window = (self.snd_una + self.snd_wnd - self.snd_nxt) % MOD32
        max_len = mss * max_segs
        if max_len <= window and not is_tail:
            return max_len
        needed = min(skb_len, window)
        if max_len <= needed:
            return max_len
        partial = needed % mss
        # tcp_nagle_check(partial != 0, tp, nonagle): hold the partial segment while a
        # small one is out, unless pushed (TCP_NAGLE_PUSH/OFF) or TCP_NODELAY
        if partial and not nagle_off and not self.nodelay and not self.fin_queued \
                and self.rtx_queue and seq_lt(self.snd_una, self.snd_sml) and seq_le(self.snd_sml, self.snd_nxt):
            return needed - partial
        return needed

    def _tso_segs(self) -> int:
        """tcp_tso_segs() -> tcp_tso_autosize(): about a millisecond of the pacing rate
        (sk_pacing_rate >> sk_pacing_shift 10), plus sk_gso_max_size >> (min RTT in us >>
        tcp_tso_rtt_log 9) for short paths, in segments; at least tcp_min_tso_segs (2).
        The pacing rate is tcp_update_pacing_rate's: mss * cwnd (or packets out) / srtt,
        times tcp_pacing_ss_ratio 200 % in slow start's first half, else
        tcp_pacing_ca_ratio 120 %; unbounded (sk_max_pacing_rate) before an RTT sample."""
        mss = self.mss_cache
        if self.srtt_us:
            ratio = TCP_PACING_SS_RATIO if self.cwnd < self.ssthresh // 2 else TCP_PACING_CA_RATIO
            rate = mss * ((USEC_PER_SEC // 100) << 3) * ratio * max(self.cwnd, len(self.rtx_queue)) // self.srtt_us
            nbytes = rate >> SK_PACING_SHIFT
        else:
            nbytes = GSO_MAX_SIZE
        if self.rtt_min_us:
            r = self.rtt_min_us >> TCP_TSO_RTT_LOG
            if r < 32:
                nbytes += GSO_MAX_SIZE >> r
        nbytes = min(nbytes, GSO_MAX_SIZE)
        return max(nbytes // mss, TCP_MIN_TSO_SEGS)

    def _xmit_size_goal(self) -> int:
        """tcp_xmit_size_goal(): tcp_sendmsg fills skbs to a multiple of the MSS, bounded by
        half the peer's largest window (tcp_bound_to_half_wnd) and sk_gso_max_size."""
        mss = self.mss_cache
        cutoff = self.max_window >> 1 if self.max_window > TCP_MSS_DEFAULT else self.max_window
        goal = GSO_MAX_SIZE
        if cutoff and goal > cutoff:
            goal = max(cutoff, 68 - (20 + (TCPOLEN_TSTAMP_ALIGNED if self.ts_ok else 0)))
        return max(goal // mss * mss, mss)

    def _probe0_base(self) -> int:
        """tcp_probe0_base(): max(icsk_rto, TCP_RTO_MIN)."""
        return max(self.rto, TCP_RTO_MIN)

    def _probe0_when(self) -> int:
        """tcp_probe0_when(sk, TCP_RTO_MAX): the base doubled by the backoff, at most TCP_RTO_MAX."""
        return min(self._probe0_base() << self.backoff, TCP_RTO_MAX)

    def _probe_timer(self, now: int) -> None:
        """tcp_probe_timer(): nothing to probe for (data out, or none waiting) ends the
        probes; past tcp_retries2 unanswered probes the connection dies (tcp_write_err);
        else tcp_send_probe0. An ACK resets probes_out (tcp_ack), so a peer that answers
        keeps the connection open however long its window stays closed (RFC 1122 4.2.2.17),
        unless TCP_USER_TIMEOUT is set: then the connection dies once that long has passed
        since the run's first probe timer (icsk_probes_tstamp), answered or not."""
        if self.rtx_queue or not self.write_queue:
            self.probes_out = 0
            self.probes_tstamp = None
            return
        if self.probes_tstamp is None:
            self.probes_tstamp = now
        elif self.user_timeout_ms and now - self.probes_tstamp >= _msecs_to_jiffies_ns(self.user_timeout_ms):
            self._done(now, "ETIMEDOUT")      # tcp_write_err()
            return
        if self.probes_out >= self.params.retries2:
            self._done(now, "ETIMEDOUT")      # tcp_write_err()
            return
        self._send_probe0(now)

    def _send_probe0(self, now: int) -> None:
        """tcp_send_probe0() -> tcp_write_wakeup(): if the send head begins inside the
        window (it opened a little), what fits of it goes out with PSH (and the RTO takes
        over); else a zero-window probe, an ACK with seq snd_una - 1 and no data
        (tcp_xmit_probe_skb), and the timer again at tcp_probe0_when, backed off up to
        tcp_retries2 times."""
        wnd_end = (self.snd_una + self.snd_wnd) % MOD32
        if seq_lt(self.snd_nxt, wnd_end):
            size = min(self.mss_cache, len(self.write_queue), (wnd_end - self.snd_nxt) % MOD32)
            data, _ = self._take(size)
            flags = PSH
            if not self.write_queue and self.fin_queued:
                flags |= FIN
                self.fin_queued = False
            self._xmit_new(now, flags, data)
            self._skb_sent()                    # the head, or the part tcp_fragment cut off
            self._rearm_rto(now)                # tcp_event_new_data_sent: nothing was out
        else:
            self._send(now, 0, (self.snd_una - 1) % MOD32, b"", "window-probe")
        self.timers.pop(TimerKind.PROBE0, None)
        if self.rtx_queue or not self.write_queue:
            self.probes_out = 0
            self.backoff = 0
            self.probes_tstamp = None
            return
        self.probes_out += 1
        if self.backoff < self.params.retries2:
            self.backoff += 1
        self.timers[TimerKind.PROBE0] = now + self._clamp_probe0_to_user_timeout(now, self._probe0_when())

    def _clamp_probe0_to_user_timeout(self, now: int, when: int) -> int:
        """tcp_clamp_probe0_to_user_timeout(): with TCP_USER_TIMEOUT, the next probe comes
        no later than the user timeout's end (counted from icsk_probes_tstamp), and no
        sooner than TCP_TIMEOUT_MIN; the remainder is a u32, so past the end it is `when`."""
        if not self.user_timeout_ms or self.probes_tstamp is None:
            return when
        elapsed = max(now - self.probes_tstamp, 0)
        remaining = _msecs_to_jiffies_ns(self.user_timeout_ms) - elapsed
        if remaining < 0:
            return when
        return min(max(remaining, TCP_TIMEOUT_MIN), when)

    def _xmit_new(self, now: int, flags: int, data: bytes, gso_psh: int = 0, skb_id: int = 0) -> None:
        """tcp_transmit_skb() of new data and tcp_event_new_data_sent(); `gso_psh`: the PSH
        only the sent clone carries. tcp_event_data_sent: data going out with nothing in
        flight restarts CUBIC's clock (CA_EVENT_TX_START), and lsndtime is now."""
        if data:
            if not self._packets_in_flight():
                self.ca.tx_start(now // JIFFY, self.lsndtime)
            self.lsndtime = now // JIFFY
        skb = _TxSkb(self.snd_nxt, data, flags, now, skb_id=skb_id or self._new_skb_id())
        self.rtx_queue.append(skb)
        self._send(now, flags | gso_psh, skb.seq, data, "fin" if flags & FIN and not data else "data")
        self.snd_nxt = skb.end_seq
        if TimerKind.RETRANSMIT not in self.timers or self.probe_pending:
            self._rearm_rto(now)   # tcp_event_new_data_sent()

    # -- tail loss probe (RFC 8985 7; tcp_output.c) ---------------------------------------
    def _rearm_rto(self, now: int) -> None:
        """tcp_rearm_rto(): the RTO from now, or, if a probe (or RACK) timer is what is
        pending, what is left of the RTO since the head's last transmission."""
        if not self.rtx_queue:
            self.timers.pop(TimerKind.RETRANSMIT, None)
            self.probe_pending = self.reo_pending = False
            return
        rto = self.rto
        if self.probe_pending or self.reo_pending:
            delta_us = (self.rtx_queue[0].tx_at + self.rto - now) // 1000   # tcp_rto_delta_us()
            rto = _usecs_to_jiffies_ns(max(delta_us, 1))
        self.timers[TimerKind.RETRANSMIT] = now + min(rto, TCP_RTO_MAX)
        self.probe_pending = self.reo_pending = False

    def _schedule_loss_probe(self, now: int, advancing_rto: bool) -> bool:
        """tcp_schedule_loss_probe(): with SACK, not in loss recovery and data out, probe
        after 2 srtt + TCP_RTO_MIN (one segment out; else + TCP_TIMEOUT_MIN_US), or at the
        RTO if that comes first. False: no probe (the caller arms the RTO)."""
        if self.params.early_retrans not in (3, 4) or not self.rtx_queue or not self.sack_ok \
                or self.ca_state not in (TCP_CA_OPEN, TCP_CA_CWR):
            return False
        if self.srtt_us:
            # 2 srtt plus tcp_rto_min_us for one packet out, else TCP_TIMEOUT_MIN_US (2 ms),
            # rounded up to jiffies after the sum
            extra_us = TCP_RTO_MIN // 1000 if len(self.rtx_queue) == 1 else TCP_TIMEOUT_MIN_US
            timeout = _usecs_to_jiffies_ns((self.srtt_us >> 2) + extra_us)
        else:
            timeout = TCP_TIMEOUT_INIT
        if advancing_rto:
            rto_delta_us = self.rto // 1000
        else:
            rto_delta_us = (self.rtx_queue[0].tx_at + self.rto - now) // 1000
        if rto_delta_us > 0:
            timeout = min(timeout, _usecs_to_jiffies_ns(rto_delta_us))
        self.timers[TimerKind.RETRANSMIT] = now + timeout
        self.probe_pending, self.reo_pending = True, False
        return True

    def _send_loss_probe(self, now: int) -> None:
        """tcp_send_loss_probe(): new data if the window allows, else the tail again; one
        probe per episode (tlp_high_seq); then the RTO, from now if a probe went out."""
        if self.tlp_high_seq is None:
            sent = False
            size = min(self.mss_cache, len(self.write_queue))
            if self.write_queue and seq_le((self.snd_nxt + size) % MOD32, (self.snd_una + self.snd_wnd) % MOD32):
                nxt = self.snd_nxt
                self._write_xmit(now, probe=True)
                sent = self.snd_nxt != nxt
                self.tlp_retrans = False
            elif self.rtx_queue and self._still_in_host_queue(self.rtx_queue[-1]):
                self.spurious_rtx_hostqueues += 1
                self.tsq_throttled = self.rtx_queue[-1].seq
            elif self.rtx_queue:
                self._fragment(len(self.rtx_queue) - 1)   # the last MSS of the last skb
                tail = self.rtx_queue[-1]
                tail.retransmitted = True    # TCPCB_EVER_RETRANS: no RTT sample from it
                tail.tx_at = now
                # __tcp_retransmit_skb: not tcp_retransmit_skb, so no retrans_stamp
                self._send(now, tail.flags, tail.seq, tail.data, "loss-probe-retransmit")
                sent = self.tlp_retrans = True
            if sent:
                self.tlp_high_seq = self.snd_nxt
                self.probe_pending = False   # "Reset s.t. tcp_rearm_rto will restart timer from now"
        self._rearm_rto(now)

    # -- active open -------------------------------------------------------------------
    def connect(self, now: int, local: tuple[int, int], remote: tuple[int, int]) -> list[OutSegment]:
        """tcp_v4_connect() + tcp_connect(): pick ISN and TS offset, send the SYN."""
        if self.state is not TcpState.CLOSED:
            raise SocketError("EISCONN" if self.state is not TcpState.LISTEN else "EINVAL", f"connect in {self.state.value}")
        self.local, self.remote = local, remote
        p = self.params
        self.iss = self.rng.getrandbits(32)       # secure_tcp_seq()
        self.inet_id = self.rng.getrandbits(16)   # tcp_v4_connect(): get_random_u16()
        self.ts_offset = self.rng.getrandbits(32) if p.timestamps else 0
        self.ts_ok, self.sack_ok, self.wscale_ok = p.timestamps, p.sack, p.window_scaling
        # tcp_connect_init()
        self.rcv_wnd, self.window_clamp, self.rcv_wscale = tcp_select_initial_window(
            p, p.win_from_space(self.rcvbuf), self.advmss, p.window_scaling, self.window_clamp)
        self.rcv_ssthresh = self.rcv_wnd
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.rcv_nxt = 0
        self.rcv_wup = 0
        self.rto = TCP_TIMEOUT_INIT
        self.set_state(now, TcpState.SYN_SENT)
        skb = _TxSkb(self.iss, b"", SYN, now)
        self.rtx_queue.append(skb)
        self._send_syn(now, "syn")
        self.snd_nxt = skb.end_seq
        self.retrans_stamp = now
        self._arm_rto(now)
        return self._flush()

    def _send_syn(self, now: int, cause: str, window: Window | None = None) -> None:
        opts = linux_options(mss=self.advmss, ts=(self._tsval(now), 0) if self.ts_ok else None,
                             sack_perm=self.sack_ok, wscale=self.rcv_wscale if self.wscale_ok else None)
        tcp = TcpRepr(self.local[1], self.remote[1], self.iss, 0, SYN, min(self.rcv_wnd, U16_MAX), opts)
        ip = InetTx(self._next_ip_id(), self.tos, self.dont_fragment)
        self._tx.append(OutSegment(self.local[0], self.remote[0], tcp, b"", cause, window, ip, self._take_confirm()))

    def _next_ip_id(self) -> int:
        """ip_select_ident_segs() for a connected socket (inet_daddr set): the ID is inet_id,
        which then counts on by the segment's GSO segments (one each here: what the wire
        shows after software GSO)."""
        ident = self.inet_id
        self.inet_id = (ident + 1) & 0xFFFF
        return ident

    def _rcv_synsent(self, now: int, seg: TcpRepr) -> None:
        """tcp_rcv_synsent_state_process()."""
        if seg.flags & ACK:
            if seg.ack != self.snd_nxt:
                # "Previous FIN/ACK or RST/ACK might be ignored": before the first
                # retransmission the SYN goes again at TCP_TIMEOUT_MIN (2 jiffies), not the RTO
                if self.retransmits == 0:
                    self.timers[TimerKind.RETRANSMIT] = now + TCP_TIMEOUT_MIN
                if not seg.flags & RST:
                    self._tx.append(_reset_for(self.local, self.remote, seg, 0, "rst-bad-ack"))
                return
            if seg.flags & RST:
                self._done(now, "ECONNREFUSED")   # tcp_reset() in SYN_SENT
                return
            if not seg.flags & SYN:
                return
            self.irs = seg.seq
            self.rcv_nxt = (seg.seq + 1) % MOD32
            self.rcv_wup = self.rcv_nxt
            self.snd_wl1 = seg.seq
            self.snd_una = seg.ack
            self.wscale_ok = self.wscale_ok and seg.wscale is not None
            if self.wscale_ok:
                self.snd_wscale = min(seg.wscale, TCP_MAX_WSCALE)
            else:
                self.snd_wscale = self.rcv_wscale = 0
                self.window_clamp = min(self.window_clamp, U16_MAX)
            self.snd_wnd = seg.window  # a SYN's window is never scaled
            self.max_window = self.snd_wnd
            tsopt = seg.timestamp
            self.ts_ok = self.ts_ok and tsopt is not None
            if self.ts_ok:
                self.ts_recent, self.ts_recent_at = tsopt[0], now
            self.sack_ok = self.sack_ok and seg.sack_permitted
            self.peer_mss = seg.mss or TCP_MSS_DEFAULT
            self._sync_mss()
            # tcp_try_undo_spurious_syn, before tcp_ack: a SYN-ACK echoing the first SYN's
            # TSval shows the SYN's timeouts were spurious (retrans_stamp: the first SYN's clock)
            spurious = self.ts_ok and bool(tsopt[1]) and self.retrans_stamp is not None \
                and tsopt[1] == self._tsval(self.retrans_stamp)
            if self._ack_rtx_queue(now, seg):
                self.sk_dst_confirm()   # tcp_ack: FLAG_SYN_ACKED is forward progress
            self.rcv_tstamp = now
            self.set_state(now, TcpState.ESTABLISHED)
            self._init_transfer(now, undo_marker=self.total_retrans > 0 and not spurious)
            self.lrcvtime = now
            self.send_ack(now, "handshake-ack")
            self._write_xmit(now)
            return
        if seg.flags & RST:
            return
        if seg.flags & SYN:
            # Simultaneous open (RFC 793 p.68): SYN_RECV, answer with SYN-ACK.
            self.irs = seg.seq
            self.rcv_nxt = (seg.seq + 1) % MOD32
            self.set_state(now, TcpState.SYN_RECV)
            self._send(now, SYN, self.iss, b"", "simultaneous-open-synack")

    def _sync_mss(self, initial: bool = True) -> None:
        """tcp_sync_mss(): the payload per segment, less the timestamp option, and at most
        half the peer's largest window (tcp_bound_to_half_wnd: a peer with a tiny window
        gets segments that fit it twice). `initial`: with tcp_initialize_rcv_mss, as at
        the handshake."""
        mss = min(self.peer_mss, self.advmss)
        if self.ts_ok:
            mss -= TCPOLEN_TSTAMP_ALIGNED
        mss = max(mss, TCP_MIN_MSS - 40)
        cutoff = self.max_window >> 1 if self.max_window > TCP_MSS_DEFAULT else self.max_window
        if cutoff and mss > cutoff:
            mss = max(cutoff, 68 - (20 + (TCPOLEN_TSTAMP_ALIGNED if self.ts_ok else 0)))
        self.mss_cache = mss
        if not initial:
            return
        # tcp_initialize_rcv_mss()
        hint = min(self.advmss, self.mss_cache, self.rcv_wnd // 2, TCP_MSS_DEFAULT)
        self.rcv_mss = max(hint, TCP_MIN_MSS)

    def _init_transfer(self, now: int, undo_marker: bool = False) -> None:
        """tcp_init_transfer()/tcp_init_metrics(): no RTT sample from the handshake means
        RFC 6298 5.7's 3 s fallback RTO. tcp_init_metrics() begins with sk_dst_confirm():
        an accepted connection's first segment (its ACK or data after the third ACK)
        confirms the neighbour, as the handshake ACK does on a connect. cwnd starts at 1
        after more than one SYN or SYN-ACK retransmission that was not spurious
        ("total_retrans > 1 && undo_marker", RFC 5681), else at TCP_INIT_CWND (seen on a
        Linux host: cwnd 1 after a connect whose SYNs were lost while its link was down)."""
        self.cwnd = 1 if self.total_retrans > 1 and undo_marker else TCP_INIT_CWND
        self.sk_dst_confirm()
        if self.srtt_us == 0:
            self.rttvar_us = self.mdev_us = self.mdev_max_us = TCP_TIMEOUT_FALLBACK // 1000
            self.rto = TCP_TIMEOUT_FALLBACK
        self.backoff = 0
        self.retransmits = 0
        self.retrans_stamp = None
        if self.keepalive:
            self.timers[TimerKind.KEEPALIVE] = now + self.params.keepalive_time

    # -- passive open ------------------------------------------------------------------
    @classmethod
    def from_request(cls, now: int, params: TcpParams, rng: random.Random, req: RequestSock, seg: TcpRepr,
                     name: str = "tcp", listener_tos: int = 0, listener_dont_fragment: bool = True) -> TcpSock:
        """tcp_create_openreq_child(): the child socket, born ESTABLISHED by the third ACK.

        sk_clone_lock copies the listener, so the child has its TOS and pmtudisc;
        tcp_v4_syn_recv_sock then picks a random inet_id and, with tcp_reflect_tos, takes
        the SYN's DSCP as its TOS."""
        sk = cls(params, rng, req.local, req.remote, name)
        sk.passive = True
        sk.set_state(now, TcpState.SYN_RECV)
        sk.iss, sk.irs, sk.ts_offset = req.iss, req.irs, req.ts_offset
        sk.inet_id = rng.getrandbits(16)   # tcp_v4_syn_recv_sock(): get_random_u16()
        sk.tos = (req.syn_tos & ~INET_ECN_MASK) if params.reflect_tos else listener_tos
        sk.ecn_ok = req.ecn_ok          # tcp_ecn_openreq_child
        sk.dont_fragment = listener_dont_fragment
        sk.snd_una = sk.snd_nxt = (req.iss + 1) % MOD32
        sk.rcv_nxt = sk.rcv_wup = (req.irs + 1) % MOD32
        sk.ts_ok, sk.sack_ok = req.ts_ok, req.sack_ok
        sk.wscale_ok = req.snd_wscale is not None
        sk.snd_wscale = req.snd_wscale or 0
        sk.rcv_wscale = req.rcv_wscale if sk.wscale_ok else 0
        sk.rcv_wnd, sk.window_clamp = req.rcv_wnd, req.window_clamp
        sk.rcv_ssthresh = req.rcv_wnd
        sk.ts_recent = seg.timestamp[0] if (sk.ts_ok and seg.timestamp) else req.ts_recent
        sk.snd_wnd = seg.window << sk.snd_wscale
        sk.max_window = sk.snd_wnd
        sk.snd_wl1 = seg.seq
        sk.peer_mss = req.peer_mss
        sk._sync_mss()
        # tcp_synack_rtt_meas(): the SYN-ACK's RTT if it was not resent, else the TS echo.
        if req.num_retrans == 0:
            sk._rtt_estimator((now - req.snt_synack) // 1000)
        elif sk.ts_ok and seg.timestamp and seg.timestamp[1]:
            sk._rtt_estimator(max(1, (sk._tsval(now) - seg.timestamp[1]) % MOD32) * 1000)
        if sk.srtt_us:
            sk._set_rto()
        sk.rcv_tstamp = now
        sk.lrcvtime = now
        sk.set_state(now, TcpState.ESTABLISHED)
        # tcp_create_openreq_child: total_retrans is the SYN-ACK's resends, undo_marker set
        # if it timed out; tcp_try_undo_spurious_syn clears it when the ACK echoes the first
        # SYN-ACK's TSval (retrans_stamp: snt_synack, the first one's clock)
        sk.total_retrans = req.num_retrans
        first_tsval = (req.snt_synack // NSEC_PER_MSEC + req.ts_offset) % MOD32
        spurious = sk.ts_ok and bool(seg.timestamp) and seg.timestamp[1] == first_tsval
        sk._init_transfer(now, undo_marker=req.num_timeout > 0 and not spurious)
        return sk

    # -- RTT ---------------------------------------------------------------------------
    def _rtt_estimator(self, mrtt_us: int) -> None:
        """tcp_rtt_estimator(), integer for integer; and tcp_update_rtt_min (a plain
        minimum: its window, tcp_min_rtt_wlen, is 300 s)."""
        self.rtt_min_us = max(mrtt_us, 1) if not self.rtt_min_us else min(self.rtt_min_us, max(mrtt_us, 1))
        rto_min_us = TCP_RTO_MIN // 1000
        m = mrtt_us
        srtt = self.srtt_us
        if srtt:
            m -= srtt >> 3
            srtt += m
            if m < 0:
                m = -m
                m -= self.mdev_us >> 2
                if m > 0:
                    m >>= 3
            else:
                m -= self.mdev_us >> 2
            self.mdev_us += m
            if self.mdev_us > self.mdev_max_us:
                self.mdev_max_us = self.mdev_us
                if self.mdev_max_us > self.rttvar_us:
                    self.rttvar_us = self.mdev_max_us
            if seq_lt(self.rtt_seq, self.snd_una):
                if self.mdev_max_us < self.rttvar_us:
                    self.rttvar_us -= (self.rttvar_us - self.mdev_max_us) >> 2
                self.rtt_seq = self.snd_nxt
                self.mdev_max_us = rto_min_us
        else:
            srtt = m << 3
            self.mdev_us = m << 1
            self.rttvar_us = max(self.mdev_us, rto_min_us)
            self.mdev_max_us = self.rttvar_us
            self.rtt_seq = self.snd_nxt
        self.srtt_us = max(1, srtt)

    def _set_rto(self) -> None:
        """tcp_set_rto(): srtt/8 + rttvar, rounded up to jiffies, bounded by TCP_RTO_MAX."""
        self.rto = min(_usecs_to_jiffies_ns((self.srtt_us >> 3) + self.rttvar_us), TCP_RTO_MAX)

    # -- input -------------------------------------------------------------------------
    def rcv(self, now: int, seg: TcpRepr, payload: bytes) -> list[OutSegment]:
        """tcp_rcv_state_process() for a segment already matched to this socket."""
        if self.state is TcpState.SYN_SENT:
            self._rcv_synsent(now, seg)
            return self._flush()
        if self.state in (TcpState.CLOSED, TcpState.LISTEN):
            raise ModelUsageError(f"segment delivered to a {self.state.value} socket")
        unsure = [w for w in self.fw2_unsure if w[0] <= now <= w[1]]
        if unsure and self.state is TcpState.FIN_WAIT2:
            raise FinWait2Unsure(f"{self.name}: a segment at {now} ns, when the FIN_WAIT2 orphan changes (a "
                                 f"timewait sock, or gone) somewhere in {unsure[0][0]}..{unsure[0][1]} ns")
        if self.state is TcpState.FIN_WAIT2 and self.timewait_sock:
            self._rcv_fin_wait2_timewait(now, seg, payload)
            return self._flush()
        if self.state is TcpState.TIME_WAIT:
            self._rcv_timewait(now, seg, payload)
            return self._flush()
        seg_len = len(payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        end_seq = (seg.seq + seg_len) % MOD32
        # RFC 793 p.69 first: is the segment in the receive window? (tcp_sequence)
        rwin_end = (self.rcv_nxt + max((self.rcv_wup + self.rcv_wnd - self.rcv_nxt) % MOD32, 0)) % MOD32
        if seq_lt(end_seq, self.rcv_wup) or seq_lt(rwin_end, seg.seq):
            if not seg.flags & RST:
                if self.sack_ok and seq_lt(seg.seq, self.rcv_nxt) and seg_len:
                    self.dsack = (seg.seq, end_seq)
                self.send_ack(now, "dupack-out-of-window")   # tcp_send_dupack()
            return self._flush()
        # second: RST (RFC 5961 3.2: exact match resets, in-window gets a challenge ACK)
        if seg.flags & RST:
            if seg.seq == self.rcv_nxt:
                self._done(now, "EPIPE" if self.state is TcpState.CLOSE_WAIT else "ECONNRESET")
            else:
                self.send_ack(now, "challenge-ack-rst")
            return self._flush()
        # fourth: SYN in the window (RFC 5961 4.2): challenge ACK
        if seg.flags & SYN:
            self.send_ack(now, "challenge-ack-syn")
            return self._flush()
        # fifth: no ACK, no processing
        if not seg.flags & ACK:
            return self._flush()
        # tcp_ack(): an ACK of data never sent (after snd_nxt) is dropped before any of it
        # is taken, ts_recent included (SKB_DROP_REASON_TCP_ACK_UNSENT_DATA); in ESTABLISHED
        # tcp_rcv_established discards it silently, in the other states
        # tcp_rcv_state_process answers with tcp_send_challenge_ack.
        if seq_lt(self.snd_nxt, seg.ack):
            if self.state is not TcpState.ESTABLISHED:
                self.send_ack(now, "challenge-ack-unsent-data")
                # An accepted connection's daemon, which the model does not play, may have
                # written or closed (httpd's FIN after the peer's): then the ACK is in
                # order and the board answers nothing. Only some boards send this one.
                self._mark_optional(self.passive)
            return self._flush()
        if self.ts_ok and seg.timestamp and seq_le(seg.seq, self.rcv_nxt):
            self.ts_recent = seg.timestamp[0]   # tcp_store_ts_recent()
            self.ts_recent_at = now
        if not self._ack(now, seg, seg_len):
            return self._flush()
        st = self.state
        if st is TcpState.SYN_RECV:
            self.set_state(now, TcpState.ESTABLISHED)
        elif st is TcpState.FIN_WAIT1 and self._fin_acked():
            self.set_state(now, TcpState.FIN_WAIT2)
            self.sk_dst_confirm()   # tcp_rcv_state_process, TCP_FIN_WAIT1
            if self.orphan:
                # tcp_rcv_state_process: an orphan waits tcp_fin_time in FIN_WAIT2: longer than
                # TCP_TIMEWAIT_LEN as itself on the keepalive timer first; with the FIN in this
                # segment as itself (tcp_fin takes it to TIME_WAIT); else as a FIN_WAIT2
                # timewait sock (tcp_time_wait)
                tmo = self._fin_time()
                if tmo > TCP_TIMEWAIT_LEN:
                    self.timers[TimerKind.FIN_WAIT2] = now + tmo - TCP_TIMEWAIT_LEN
                elif seg.flags & FIN:
                    self.timers[TimerKind.FIN_WAIT2] = now + tmo
                else:
                    self._fin_wait2_timewait(now, tmo)
        elif st is TcpState.CLOSING and self._fin_acked():
            self._enter_time_wait(now)
            return self._flush()
        elif st is TcpState.LAST_ACK and self._fin_acked():
            self._done(now, None)
            return self._flush()
        if payload or seg.flags & FIN:
            if self.state in (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
                self._data_queue(now, seg, payload)
        self._write_xmit(now)
        self._ack_snd_check(now)
        return self._flush()

    def _fin_acked(self) -> bool:
        return not self.rtx_queue and not self.write_queue and not self.fin_queued and self.snd_una == self.snd_nxt

    def _ack(self, now: int, seg: TcpRepr, seg_len: int = 0) -> bool:
        """tcp_ack(): advance snd_una, take SACK blocks onto the scoreboard, clean the
        retransmit queue, sample the RTT, update the peer's window, run loss recovery
        (tcp_fastretrans_alert), grow or reduce cwnd (tcp_cong_control) and retransmit what
        is lost (tcp_xmit_recovery); False = drop.

        With data out (prior_packets), an ACK that acknowledges some of it
        (FLAG_FORWARD_PROGRESS) or a pure duplicate (no data, no window update, nothing
        acked: !FLAG_NOT_DUP) says the peer hears us: sk_dst_confirm(). An old ACK (before
        snd_una) and one with nothing out (the no_queue path) confirm nothing. `seg_len`:
        the sequence space the segment occupies (FLAG_DATA)."""
        if seq_lt(seg.ack, self.snd_una):
            return True   # old duplicate ACK: ignore the ACK field, keep the data
        prior_snd_una = self.snd_una
        prior_packets = len(self.rtx_queue)
        prior_fack = self._highest_sack_seq()
        prior_lost = self.lost_total
        self._sack_delivered = self._reno_delivered = 0
        self._last_ecr = seg.timestamp[1] if self.ts_ok and seg.timestamp and seg.timestamp[1] else None
        flag = FLAG_SND_UNA_ADVANCED if seq_lt(self.snd_una, seg.ack) else 0
        if seg_len:
            flag |= FLAG_DATA
        window = seg.window << self.snd_wscale
        # tcp_ack_update_window(): tcp_may_update_window, then a larger window than any
        # before re-bounds the MSS
        if seq_lt(self.snd_una, seg.ack) or seq_lt(self.snd_wl1, seg.seq) or \
                (seg.seq == self.snd_wl1 and (window > self.snd_wnd or not window)):
            flag |= FLAG_WIN_UPDATE
            self.snd_wnd = window
            self.snd_wl1 = seg.seq
            if window > self.max_window:
                self.max_window = window
                self._sync_mss(initial=False)
        self.snd_una = seg.ack           # tcp_snd_una_update
        sackt: tuple[int, int] | None = None
        if self.sack_ok and seg.sack_blocks:
            sack_flag, sackt = self._sacktag_write_queue(now, seg, prior_snd_una)
            flag |= sack_flag
        self.rcv_tstamp = now
        self.probes_out = 0
        if not prior_packets:
            if self.write_queue and TimerKind.PROBE0 in self.timers:
                # tcp_ack_probe: the window now takes the send head: no more probes (the
                # data goes in tcp_data_snd_check); else the probe timer again, at the same
                # backoff
                head_end = (self.snd_nxt + min(self.mss_cache, len(self.write_queue))) % MOD32
                if seq_le(head_end, (self.snd_una + self.snd_wnd) % MOD32):
                    self.backoff = 0
                    self.probes_tstamp = None
                    self.timers.pop(TimerKind.PROBE0, None)
                else:
                    self.timers[TimerKind.PROBE0] = now + self._clamp_probe0_to_user_timeout(now, self._probe0_when())
            if self.tlp_high_seq is not None:
                self._process_tlp_ack(seg.ack, flag)
            return True
        acked_flag, delivered = self._clean_rtx_queue(now, seg, prior_fack, sackt)
        flag |= acked_flag
        delivered += self._sack_delivered
        if self.tlp_high_seq is not None:
            self._process_tlp_ack(seg.ack, flag)
        rexmit = False
        if not flag & FLAG_NOT_DUP or flag & FLAG_CA_ALERT or self.ca_state != TCP_CA_OPEN:
            num_dupack = 0 if flag & (FLAG_SND_UNA_ADVANCED | FLAG_NOT_DUP | FLAG_DSACKING_ACK) else 1
            flag, rexmit = self._fastretrans_alert(now, prior_snd_una, num_dupack, flag)
        if flag & FLAG_SET_XMIT_TIMER:
            if not self._schedule_loss_probe(now, True):   # tcp_set_xmit_timer()
                self._rearm_rto(now)
        if flag & FLAG_FORWARD_PROGRESS or not flag & FLAG_NOT_DUP:
            self.sk_dst_confirm()
        if not self.sack_ok:
            delivered += self._reno_delivered   # tcp_add_reno_sack's tcp_count_delivered
        self._cong_control(now, flag, delivered, self.lost_total - prior_lost)
        if rexmit:
            # tcp_xmit_recovery(): REXMIT_NEW (F-RTO) pushes new data, Nagle off, and only
            # if none went past high_seq resends what is lost
            if self._rexmit_new:
                self._rexmit_new = False
                nxt = self.snd_nxt
                self._write_xmit(now, nagle_off=True)
                if self.snd_nxt != nxt and seq_lt(self.high_seq, self.snd_nxt):
                    return True
                self.frto = False
            self._xmit_retransmit_queue(now)
        return True

    # -- the scoreboard (tcp_sacktag_write_queue, tcp_clean_rtx_queue) ----------------------
    @property
    def sacked_out(self) -> int:
        """tp->sacked_out: SACKed segments, or a non-SACK peer's duplicate ACKs."""
        if not self.sack_ok:
            return self.reno_sacked
        return sum(1 for s in self.rtx_queue if s.sacked)

    @property
    def lost_out(self) -> int:
        return sum(1 for s in self.rtx_queue if s.lost)

    @property
    def retrans_out(self) -> int:
        return sum(1 for s in self.rtx_queue if s.rtx_out)

    def _packets_in_flight(self) -> int:
        """tcp_packets_in_flight(): packets_out - (sacked_out + lost_out) + retrans_out."""
        sacked = lost = rtx = 0
        for s in self.rtx_queue:
            sacked += s.sacked
            lost += s.lost
            rtx += s.rtx_out
        if not self.sack_ok:
            sacked = self.reno_sacked
        return len(self.rtx_queue) - (sacked + lost) + rtx

    def _highest_sack_seq(self) -> int:
        """tcp_highest_sack_seq(): the end of the highest SACKed segment, else snd_una."""
        high = None
        if self.sack_ok:
            for s in self.rtx_queue:
                if s.sacked:
                    high = s.end_seq
        return self.snd_una if high is None else high

    def _any_retrans_done(self) -> bool:
        """tcp_any_retrans_done(): a retransmission out, or the head ever retransmitted."""
        return bool(self.retrans_out) or bool(self.rtx_queue and self.rtx_queue[0].retransmitted)

    def _sacktag_write_queue(self, now: int, seg: TcpRepr, prior_snd_una: int) -> tuple[int, tuple[int, int] | None]:
        """tcp_sacktag_write_queue() on a queue of one segment per skb: a block marks the
        segments it covers whole (tcp_match_skb_to_sack never splits below the MSS); a
        first block below the ACK, or inside the second, is a D-SACK (tcp_check_dsack),
        which only flags the ACK (its undo is not modelled). tcp_sacktag_one: a newly
        SACKed segment advances RACK, is no longer lost, and a retransmission of it is no
        longer out only if it was lost. Returns the flags and (first_sackt, last_sackt): the
        send times of the first and last newly SACKed segments never retransmitted, for the
        RTT."""
        flag = 0
        first_sackt = last_sackt = None
        reord = self.snd_nxt
        blocks = seg.sack_blocks
        for i, (start, end) in enumerate(blocks):
            if i == 0 and (seq_lt(start, seg.ack) or (len(blocks) > 1 and seq_le(blocks[1][0], start)
                                                      and seq_le(end, blocks[1][1]))):
                flag |= FLAG_DSACKING_ACK
                continue
            # tcp_is_sackblock_valid
            if seq_lt(self.snd_nxt, end) or not seq_lt(start, end) or seq_lt(start, prior_snd_una):
                continue
            for skb in self.rtx_queue:
                if skb.sacked or not (seq_le(start, skb.seq) and seq_le(skb.end_seq, end)):
                    continue
                if not seq_lt(self.snd_una, skb.end_seq):
                    continue          # acked by this ACK: about to go
                self._rack_advance(now, skb)
                if skb.rtx_out:
                    if skb.lost:
                        skb.lost = skb.rtx_out = False
                else:
                    if not skb.retransmitted:
                        if seq_lt(skb.seq, self._highest_sack_seq()) and seq_lt(skb.seq, reord):
                            reord = skb.seq
                        if seq_le(skb.end_seq, self.high_seq):
                            flag |= FLAG_ORIG_SACK_ACKED
                        if first_sackt is None:
                            first_sackt = skb.tx_at
                        last_sackt = skb.tx_at
                    skb.lost = False
                skb.sacked = True
                flag |= FLAG_DATA_SACKED
                self._sack_delivered += 1
        # tcp_match_skb_to_sack: an skb partly SACKed is split at the block's edge
        q = self.rtx_queue
        for i in range(len(q) - 1, 0, -1):
            if q[i].sacked != q[i - 1].sacked:
                self._fragment(i)
        if reord != self.snd_nxt:
            self._check_sack_reordering(reord)
        return flag, (None if first_sackt is None else (first_sackt, last_sackt))

    def _check_sack_reordering(self, low_seq: int) -> None:
        """tcp_check_sack_reordering(): a hole filled below the highest SACK is reordering
        of that many segments (at most tcp_max_reordering)."""
        fack = self._highest_sack_seq()
        if not seq_lt(low_seq, fack):
            return
        metric = (fack - low_seq) % MOD32
        mss = self.mss_cache
        if metric > self.reordering * mss:
            self.reordering = min((metric + mss - 1) // mss, TCP_MAX_REORDERING)
        self.reord_seen += 1

    def _clean_rtx_queue(self, now: int, seg: TcpRepr, prior_fack: int,
                         sackt: tuple[int, int] | None) -> tuple[int, int]:
        """tcp_clean_rtx_queue() + tcp_ack_update_rtt(): drop what the ACK covers; returns
        the flags and how many segments were newly delivered (not SACKed before).

        The RTT sample is from the oldest segment acked, and there is none if retransmitted
        data was acked too (Karn); then from the first newly SACKed segment; then from the
        TS echo, at least 1 ms. CUBIC takes the RTT of the latest sent of them
        (cubictcp_acked: ca_rtt_us)."""
        flag = 0
        delivered = pkts_acked = 0
        first_ackt = last_ackt = None
        reord = self.snd_nxt
        while self.rtx_queue and seq_le(self.rtx_queue[0].end_seq, seg.ack):
            skb = self.rtx_queue.pop(0)
            pkts_acked += 1
            if skb.retransmitted or skb.rtx_out:
                flag |= FLAG_RETRANS_DATA_ACKED
            elif not skb.sacked:
                if first_ackt is None:
                    first_ackt = skb.tx_at
                last_ackt = skb.tx_at
                if seq_lt(skb.seq, reord):
                    reord = skb.seq
                if seq_le(skb.end_seq, self.high_seq):
                    flag |= FLAG_ORIG_SACK_ACKED
            if not skb.sacked and self.sack_ok:
                delivered += 1
                if not self._spurious_retrans(seg, skb):
                    self._rack_advance(now, skb)
            if skb.flags & SYN:
                flag |= FLAG_SYN_ACKED
                self.retrans_stamp = None
            else:
                flag |= FLAG_DATA_ACKED
        if not self.sack_ok and pkts_acked:
            delivered = self._remove_reno_sacks(pkts_acked)
            if flag & FLAG_RETRANS_DATA_ACKED:
                flag &= ~FLAG_ORIG_SACK_ACKED   # a non-SACK peer cannot show the original arrived
        rtt_us = ca_rtt_us = -1
        if first_ackt is not None and not flag & FLAG_RETRANS_DATA_ACKED:
            rtt_us, ca_rtt_us = (now - first_ackt) // 1000, (now - last_ackt) // 1000
        if sackt is not None:
            ca_rtt_us = (now - sackt[1]) // 1000
            if rtt_us < 0:
                rtt_us = (now - sackt[0]) // 1000
        if rtt_us < 0 and flag & FLAG_ACKED and self.ts_ok and seg.timestamp and seg.timestamp[1]:
            # tcp_ack_update_rtt: the TS echo's delta, at least 1 ms; none from an echo of
            # a time not yet come (the u32 delta is then past INT_MAX / 1000)
            delta = (self._tsval(now) - seg.timestamp[1]) % MOD32
            if delta < 0x7FFFFFFF // 1000:
                rtt_us = ca_rtt_us = max(delta, 1) * 1000
        self.ca.acked(ca_rtt_us, now // JIFFY)
        if rtt_us >= 0:
            self._rtt_estimator(max(rtt_us, 1))
            self._set_rto()
            self.backoff = 0
        if flag & FLAG_ACKED:
            flag |= FLAG_SET_XMIT_TIMER
            self.backoff = 0
            self.retransmits = 0
            if self.sack_ok and seq_lt(reord, prior_fack):
                self._check_sack_reordering(reord)
            if not self.rtx_queue:
                self.timers.pop(TimerKind.RETRANSMIT, None)
                self.probe_pending = self.reo_pending = False
                flag &= ~FLAG_SET_XMIT_TIMER
        elif self.rtx_queue and rtt_us >= 0 and sackt is not None and sackt[0] < self.rtx_queue[0].tx_at:
            flag |= FLAG_SET_XMIT_TIMER
        return flag, delivered

    def _spurious_retrans(self, seg: TcpRepr, skb: _TxSkb) -> bool:
        """tcp_skb_spurious_retrans(): a retransmitted segment acked by an echo older than
        its last transmission: the original was acked."""
        return (skb.retransmitted or skb.rtx_out) and self._tsecr_before(seg, skb.tx_at)

    def _tsecr_before(self, seg: TcpRepr, when: int) -> bool:
        """tcp_tsopt_ecr_before(): the peer's TS echo is older than our clock at `when`."""
        return bool(self.ts_ok and seg.timestamp and seg.timestamp[1]) and \
            seq_lt(seg.timestamp[1], self._tsval(when))

    def _remove_reno_sacks(self, acked: int) -> int:
        """tcp_remove_reno_sacks(): one ACK fills the hole, the rest eat duplicate ACKs;
        returns the newly delivered count (tcp_count_delivered)."""
        delivered = max(acked - self.reno_sacked, 1)
        self.reno_sacked = 0 if acked - 1 >= self.reno_sacked else self.reno_sacked - (acked - 1)
        self._check_reno_reordering(acked)
        return delivered

    def _add_reno_sack(self, num_dupack: int) -> None:
        """tcp_add_reno_sack(): a duplicate ACK from a non-SACK peer counts as a SACKed
        segment (so one new segment may go: RFC 3042's limited transmit falls out of
        tcp_packets_in_flight)."""
        if num_dupack:
            prior = self.reno_sacked
            self.reno_sacked += num_dupack
            self._check_reno_reordering(0)
            self._reno_delivered += max(self.reno_sacked - prior, 0)

    def _check_reno_reordering(self, addend: int) -> None:
        """tcp_check_reno_reordering() / tcp_limit_reno_sacked(): more duplicate ACKs than
        segments out less the holes is reordering."""
        holes = min(max(self.lost_out, 1), len(self.rtx_queue))
        if self.reno_sacked + holes > len(self.rtx_queue):
            self.reno_sacked = len(self.rtx_queue) - holes
            self.reordering = min(len(self.rtx_queue) + addend, TCP_MAX_REORDERING)
            self.reord_seen += 1

    # -- loss recovery (tcp_fastretrans_alert, tcp_recovery.c) --------------------------------
    def _fastretrans_alert(self, now: int, prior_snd_una: int, num_dupack: int, flag: int) -> tuple[int, bool]:
        """tcp_fastretrans_alert(): the congestion state machine for a dubious ACK; returns
        the flags and whether lost segments are to be retransmitted (REXMIT_LOST). After an
        RTO (CA_Loss) the model keeps its own path: F-RTO (tcp_process_loss) and the
        retransmission of the rest of the window are not modelled."""
        if not self.rtx_queue and self.reno_sacked:
            self.reno_sacked = 0
        if self.ca_state == TCP_CA_OPEN:
            self.retrans_stamp = None
        if self.ca_state == TCP_CA_LOSS:
            rexmit, self._rexmit_new = self._process_loss(flag, num_dupack)
            flag = self._identify_packet_loss(now, flag)
            if not (self.ca_state == TCP_CA_OPEN or flag & FLAG_LOST_RETRANS):
                return flag, rexmit
            self._rexmit_new = False
            return self._fastretrans_open(now, num_dupack, flag)
        if self.ca_state != TCP_CA_OPEN and not seq_lt(self.snd_una, self.high_seq):
            if self.ca_state == TCP_CA_CWR:
                if self.snd_una != self.high_seq:
                    self._end_cwnd_reduction()
                    self.ca_state = TCP_CA_OPEN
            elif self.ca_state == TCP_CA_RECOVERY:
                if not self.sack_ok:
                    self.reno_sacked = 0
                if self._try_undo_recovery():
                    return flag, False
                self._end_cwnd_reduction()
        if self.ca_state == TCP_CA_RECOVERY:
            if not flag & FLAG_SND_UNA_ADVANCED:
                if not self.sack_ok:
                    self._add_reno_sack(num_dupack)
            elif self._try_undo_partial():
                return flag, False
            flag = self._identify_packet_loss(now, flag)
            return flag, True
        return self._fastretrans_open(now, num_dupack, flag)

    def _fastretrans_open(self, now: int, num_dupack: int, flag: int) -> tuple[int, bool]:
        """tcp_fastretrans_alert()'s default case (Open, Disorder, CWR, and CA_Loss once
        undone or its retransmissions lost): count a non-SACK peer's duplicates, find
        losses, then stay (tcp_try_to_open) or enter Recovery."""
        if not self.sack_ok:
            if flag & FLAG_SND_UNA_ADVANCED:
                self.reno_sacked = 0
            self._add_reno_sack(num_dupack)
        flag = self._identify_packet_loss(now, flag)
        if not self.lost_out:          # tcp_time_to_recover (RACK: only a proven loss)
            self._try_to_open()
            return flag, False
        self._enter_recovery()
        return flag, True

    def _identify_packet_loss(self, now: int, flag: int) -> int:
        """tcp_identify_packet_loss(): NewReno marks the head lost (RFC 6582), RACK marks
        what was sent before a delivered segment, by more than its RTT and the reordering
        window."""
        if not self.rtx_queue:
            return flag
        if not self.sack_ok:
            if (self.ca_state < TCP_CA_RECOVERY and self.reno_sacked >= self.reordering) or \
                    (self.ca_state == TCP_CA_RECOVERY and flag & FLAG_SND_UNA_ADVANCED):
                if not self.rtx_queue[0].lost:            # tcp_newreno_mark_lost: the head, one MSS
                    self._fragment(1)
                    self._mark_skb_lost(self.rtx_queue[0])
        else:
            prior_retrans = self.retrans_out
            if self._rack_mark_lost(now):
                flag &= ~FLAG_SET_XMIT_TIMER
            if prior_retrans > self.retrans_out:
                flag |= FLAG_LOST_RETRANS
        return flag

    def _mark_skb_lost(self, skb: _TxSkb) -> None:
        """tcp_mark_skb_lost(): a SACKed segment is never lost; a lost retransmission is no
        longer out."""
        if skb.sacked:
            return
        if skb.lost:
            skb.rtx_out = False
        else:
            skb.lost = True
            self.lost_total += 1

    def _try_to_open(self) -> None:
        """tcp_try_to_open() -> tcp_try_keep_open(): Disorder while anything is SACKed,
        lost or retransmitted, else Open; high_seq moves with the state."""
        if not self._any_retrans_done():
            self.retrans_stamp = None
        if self.ca_state != TCP_CA_CWR:
            self._try_keep_open()

    def _try_keep_open(self) -> None:
        state = TCP_CA_DISORDER if (self.sacked_out or self.lost_out or self._any_retrans_done()) else TCP_CA_OPEN
        if self.ca_state != state:
            self.ca_state = state
            self.high_seq = self.snd_nxt

    def _enter_recovery(self) -> None:
        """tcp_enter_recovery(): the undo marker, prior_ssthresh, then a cwnd reduction
        (unless one runs): CUBIC's ssthresh, PRR from here."""
        if not self._any_retrans_done():
            self.retrans_stamp = None
        self.prior_ssthresh = 0
        self.undo_marker = self.snd_una                        # tcp_init_undo
        self.undo_retrans = self.retrans_out or -1
        if self.ca_state not in (TCP_CA_CWR, TCP_CA_RECOVERY):
            self.prior_ssthresh = max(self.ssthresh, (self.cwnd >> 1) + (self.cwnd >> 2))   # tcp_current_ssthresh
            self._init_cwnd_reduction()
        self.ca_state = TCP_CA_RECOVERY

    def _init_cwnd_reduction(self) -> None:
        """tcp_init_cwnd_reduction(): high_seq, prior_cwnd and PRR's counts; ssthresh from
        CUBIC (cubictcp_recalc_ssthresh: cwnd * 717 / 1024, at least 2)."""
        self.high_seq = self.snd_nxt
        self.tlp_high_seq = None
        self.prior_cwnd = self.cwnd
        self.prr_delivered = self.prr_out = 0
        self.ssthresh = self.ca.recalc_ssthresh(self.cwnd)
        self.snd_cwnd_cnt = 0

    def _end_cwnd_reduction(self) -> None:
        """tcp_end_cwnd_reduction(): cwnd to ssthresh (in CWR, or a reduction not undone)."""
        if self.ssthresh < TCP_INFINITE_SSTHRESH and (self.ca_state == TCP_CA_CWR or self.undo_marker is not None):
            self.cwnd = self.ssthresh

    def _cwnd_reduction(self, newly_acked_sacked: int, newly_lost: int, flag: int) -> None:
        """tcp_cwnd_reduction(): Proportional Rate Reduction (RFC 6937)."""
        if newly_acked_sacked <= 0 or not self.prior_cwnd:
            return
        in_flight = self._packets_in_flight()
        delta = self.ssthresh - in_flight
        self.prr_delivered += newly_acked_sacked
        if delta < 0:
            sndcnt = (self.ssthresh * self.prr_delivered + self.prior_cwnd - 1) // self.prior_cwnd - self.prr_out
        else:
            sndcnt = max(self.prr_delivered - self.prr_out, newly_acked_sacked)
            if flag & FLAG_SND_UNA_ADVANCED and not newly_lost:
                sndcnt += 1
            sndcnt = min(delta, sndcnt)
        sndcnt = max(sndcnt, 0 if self.prr_out else 1)   # the fast retransmit goes at once
        self.cwnd = in_flight + sndcnt

    def _cong_control(self, now: int, flag: int, acked_sacked: int, newly_lost: int) -> None:
        """tcp_cong_control(): PRR in CWR and Recovery; else, on data acked in order,
        cubictcp_cong_avoid(): only while cwnd is what limits the sender
        (tcp_is_cwnd_limited), slow start up to ssthresh (tcp_slow_start), then the cubic
        function's count (bictcp_update) paced out by tcp_cong_avoid_ai."""
        if self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY):
            self._cwnd_reduction(acked_sacked, newly_lost, flag)
            return
        if not flag & (FLAG_FORWARD_PROGRESS if self.reordering > TCP_FASTRETRANS_THRESH else FLAG_DATA_ACKED):
            return
        in_slow_start = self.cwnd < self.ssthresh
        if not (self.is_cwnd_limited or (in_slow_start and self.cwnd < 2 * self.max_packets_out)):
            return
        acked = acked_sacked
        if in_slow_start:
            cwnd = min(self.cwnd + acked, self.ssthresh)
            acked -= cwnd - self.cwnd
            self.cwnd = cwnd
            if not acked:
                return
        self.ca.update(self.cwnd, acked, now // JIFFY)
        w = self.ca.cnt                           # tcp_cong_avoid_ai
        if self.snd_cwnd_cnt >= w:
            self.snd_cwnd_cnt = 0
            self.cwnd += 1
        self.snd_cwnd_cnt += acked
        if self.snd_cwnd_cnt >= w:
            delta = self.snd_cwnd_cnt // w
            self.snd_cwnd_cnt -= delta * w
            self.cwnd += delta

    def _try_undo_recovery(self) -> bool:
        """tcp_try_undo_recovery(): at the end of Recovery, undo if nothing needed
        resending; a non-SACK connection holds Recovery until above high_seq is acked
        (tcp_is_non_sack_preventing_reopen)."""
        if self._may_undo():
            self._undo_cwnd_reduction(False)
        if not self.sack_ok and self.snd_una == self.high_seq:
            if not self._any_retrans_done():
                self.retrans_stamp = None
            return True
        self.ca_state = TCP_CA_OPEN
        return False

    def _try_undo_partial(self) -> bool:
        """tcp_try_undo_partial(): a partial ACK echoing a time before the retransmission
        means the hole was only delayed: undo if no retransmission is out."""
        if self.undo_marker is not None and self._packet_delayed():
            if self.retrans_out:
                return True
            if not self._any_retrans_done():
                self.retrans_stamp = None
            self._undo_cwnd_reduction(True)
            self._try_keep_open()
        return False

    def _may_undo(self) -> bool:
        return self.undo_marker is not None and (self.undo_retrans <= 0 or self._packet_delayed())

    def _packet_delayed(self) -> bool:
        """tcp_packet_delayed(): the echo is older than the first retransmission."""
        if self.retrans_stamp is not None:
            return self._last_ecr is not None and seq_lt(self._last_ecr, self._tsval(self.retrans_stamp))
        if not self.sack_ok and not seq_lt(self.snd_una, self.high_seq):
            return False
        return True

    def _undo_cwnd_reduction(self, unmark_loss: bool) -> None:
        """tcp_undo_cwnd_reduction(): cwnd and ssthresh back (CUBIC's undo_cwnd is
        tcp_reno_undo_cwnd: the larger of cwnd and prior_cwnd)."""
        if unmark_loss:
            for skb in self.rtx_queue:
                skb.lost = False
        if self.prior_ssthresh:
            self.cwnd = max(self.cwnd, self.prior_cwnd)
            if self.prior_ssthresh > self.ssthresh:
                self.ssthresh = self.prior_ssthresh
        self.undo_marker = None
        self.rack_advanced = True

    def _process_tlp_ack(self, ack: int, flag: int) -> None:
        """tcp_process_tlp_ack(): an ACK at or past the probe ends its episode; one past a
        retransmitted probe shows a loss: a CWR reduction (cwnd to CUBIC's ssthresh)."""
        if seq_lt(ack, self.tlp_high_seq):
            return
        if not self.tlp_retrans:
            self.tlp_high_seq = None
        elif flag & FLAG_DSACKING_ACK:
            self.tlp_high_seq = None
        elif seq_lt(self.tlp_high_seq, ack):
            self._init_cwnd_reduction()
            self.ca_state = TCP_CA_CWR
            self._end_cwnd_reduction()
            self._try_keep_open()
        elif not flag & (FLAG_SND_UNA_ADVANCED | FLAG_NOT_DUP | FLAG_DATA_SACKED):
            self.tlp_high_seq = None

    def _xmit_retransmit_queue(self, now: int) -> None:
        """tcp_xmit_retransmit_queue(): resend lost segments, head first, while cwnd allows
        (PRR counts them in prr_out); resending the head restarts the RTO, unless RACK's
        reordering timer is what is pending.
        A lost skb goes as one GSO burst of up to cwnd - in flight (and tcp_tso_segs)
        segments, split off the rest (__tcp_retransmit_skb -> tcp_fragment); PSH is forced
        on a burst of more than one, as for new data."""
        rearm = False
        max_segs = self._tso_segs()
        q = self.rtx_queue
        i = 0
        while i < len(q):
            skb = q[i]
            segs = min(self.cwnd - self._packets_in_flight(), max_segs)
            if segs <= 0 or self.retrans_out >= self.lost_out:
                break
            if not skb.lost or skb.sacked or skb.rtx_out:
                i += 1
                continue
            if self._still_in_host_queue(skb):
                self.spurious_rtx_hostqueues += 1     # __tcp_retransmit_skb: -EBUSY
                self.tsq_throttled = skb.seq
                break
            if not seq_lt(skb.seq, (self.snd_una + self.snd_wnd) % MOD32) and skb.seq != self.snd_una:
                break                                  # -EAGAIN: beyond the peer's window
            n = 1
            while n < segs and i + n < len(q) and q[i + n].skb_id == skb.skb_id:
                n += 1
            self._fragment(i + n)
            burst = q[i:i + n]
            for k, seg in enumerate(burst):
                seg.rtx_out = seg.retransmitted = True
                seg.tx_at = now
                flags = seg.flags | (PSH if n > 1 and k == n - 1 else 0)
                self._send(now, flags if k == n - 1 else 0, seg.seq, seg.data, "fast-retransmit")
            self.total_retrans += n
            self._stamp_first_retransmit(skb)
            self.undo_retrans = max(self.undo_retrans, 0) + n
            if self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY):
                self.prr_out += n
            if i == 0 and not self.reo_pending:
                rearm = True
            i += n
        if rearm:
            self._arm_rto(now)

    # -- RACK (net/ipv4/tcp_recovery.c) -----------------------------------------------------
    def _rack_advance(self, now: int, skb: _TxSkb) -> None:
        """tcp_rack_advance(): the latest sent of the delivered segments, and its RTT; a
        retransmission delivered sooner than min_rtt is ambiguous and skipped."""
        rtt_us = (now - skb.tx_at) // 1000
        if rtt_us < self.rtt_min_us and (skb.retransmitted or skb.rtx_out):
            return
        self.rack_advanced = True
        self.rack_rtt_us = rtt_us
        tx_us = skb.tx_at // 1000
        if tx_us > self.rack_mstamp_us or (tx_us == self.rack_mstamp_us and seq_lt(self.rack_end_seq, skb.end_seq)):
            self.rack_mstamp_us, self.rack_end_seq = tx_us, skb.end_seq

    def _rack_reo_wnd(self) -> int:
        """tcp_rack_reo_wnd(): no reordering seen: none in Recovery or once sacked_out
        reaches the dupthresh; else min_rtt/4 (times reo_wnd_steps, 1), at most srtt."""
        if not self.reord_seen:
            if self.ca_state >= TCP_CA_RECOVERY or self.sacked_out >= self.reordering:
                return 0
        return min(self.rtt_min_us >> 2, self.srtt_us >> 3)

    def _rack_detect_loss(self, now: int) -> int:
        """tcp_rack_detect_loss(): in send order, mark lost each segment sent before the
        latest delivered one whose RTT plus the reordering window has passed; returns the
        longest wait (us) of the others."""
        reo_wnd = self._rack_reo_wnd()
        now_us = now // 1000
        timeout = 0
        for skb in sorted((s for s in self.rtx_queue if not s.sacked and not (s.lost and not s.rtx_out)),
                          key=lambda s: s.tx_at // 1000):
            tx_us = skb.tx_at // 1000
            if not (self.rack_mstamp_us > tx_us or (self.rack_mstamp_us == tx_us
                                                      and seq_lt(skb.end_seq, self.rack_end_seq))):
                break
            remaining = self.rack_rtt_us + reo_wnd - (now_us - tx_us)
            if remaining <= 0:
                self._mark_skb_lost(skb)
            else:
                timeout = max(timeout, remaining)
        return timeout

    def _rack_mark_lost(self, now: int) -> bool:
        """tcp_rack_mark_lost(): after a delivery advanced RACK, detect losses; for those
        still inside the window arm the reordering timer (ICSK_TIME_REO_TIMEOUT, at most
        the RTO): True if it was armed."""
        if not self.rack_advanced:
            return False
        self.rack_advanced = False
        timeout = self._rack_detect_loss(now)
        if timeout:
            self.timers[TimerKind.RETRANSMIT] = now + min(_usecs_to_jiffies_ns(timeout + TCP_TIMEOUT_MIN_US), self.rto)
            self.probe_pending, self.reo_pending = False, True
        return bool(timeout)

    def _rack_reo_timeout(self, now: int) -> None:
        """tcp_rack_reo_timeout(): the reordering window ran out: mark, enter Recovery (with
        one PRR step), resend; then the RTO from the head's last transmission."""
        prior_inflight = self._packets_in_flight()
        prior_lost = self.lost_total
        self._rack_detect_loss(now)
        if prior_inflight != self._packets_in_flight():
            if self.ca_state != TCP_CA_RECOVERY:
                self._enter_recovery()
                self._cwnd_reduction(1, self.lost_total - prior_lost, 0)
            self._xmit_retransmit_queue(now)
        self._rearm_rto(now)

    def _ack_rtx_queue(self, now: int, seg: TcpRepr) -> bool:
        """tcp_ack in SYN_SENT (tcp_rcv_synsent_state_process): the SYN-ACK's ACK takes
        the SYN off the queue; True if it did (FLAG_SYN_ACKED)."""
        prior_snd_una, self.snd_una = self.snd_una, seg.ack
        self._last_ecr = None
        flag, _ = self._clean_rtx_queue(now, seg, prior_snd_una, None)
        if flag & FLAG_SET_XMIT_TIMER and not self._schedule_loss_probe(now, True):
            self._rearm_rto(now)
        return bool(flag & FLAG_ACKED)

    def _data_queue(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_data_queue(): in-order data to the reader, out-of-order to the ofo queue."""
        fin = bool(seg.flags & FIN)
        end_seq = (seg.seq + len(payload) + fin) % MOD32
        if seg.seq == self.rcv_nxt:
            if payload:
                self._event_data_recv(now, len(payload))
            self.rcv_buf += payload
            self.rcv_nxt = end_seq
            if fin:
                self._fin(now)
            self._ofo_drain(now)
            if self.ofo:
                self.send_ack(now, "ack-ofo-hole")
        elif seq_le(end_seq, self.rcv_nxt):
            if self.sack_ok:
                self.dsack = (seg.seq, end_seq)
            self.send_ack(now, "dupack-old-data")    # tcp_send_dupack(): D-SACK
        elif seq_lt(self.rcv_nxt, seg.seq):
            self.ofo.append((seg.seq, payload, fin))
            self.ofo.sort(key=lambda item: (item[0] - self.rcv_nxt) % MOD32)
            self.send_ack(now, "dupack-ofo")          # tcp_data_queue_ofo: immediate ACK
        else:
            # partial overlap: keep the new part
            skip = (self.rcv_nxt - seg.seq) % MOD32
            trimmed = TcpRepr(seg.src_port, seg.dst_port, self.rcv_nxt, seg.ack, seg.flags, seg.window, seg.options)
            self._data_queue(now, trimmed, payload[skip:])

    def _ofo_drain(self, now: int) -> None:
        while self.ofo and seq_le(self.ofo[0][0], self.rcv_nxt):
            seq, data, fin = self.ofo.pop(0)
            skip = (self.rcv_nxt - seq) % MOD32
            if skip <= len(data):
                self.rcv_buf += data[skip:]
                self.rcv_nxt = (seq + len(data) + fin) % MOD32
                if fin:
                    self._fin(now)

    def _event_data_recv(self, now: int, length: int) -> None:
        """tcp_event_data_recv(): quickack at the start, then the ato estimate."""
        self.rcv_mss = max(min(length, self.advmss), self.rcv_mss) if length >= self.rcv_mss else self.rcv_mss
        if not self.ato:
            self._incr_quickack()
            self.ato = TCP_ATO_MIN
        else:
            m = now - self.lrcvtime
            if m <= TCP_ATO_MIN // 2:
                self.ato = (self.ato >> 1) + TCP_ATO_MIN // 2
            elif m < self.ato:
                self.ato = (self.ato >> 1) + m
                if self.ato > self.rto:
                    self.ato = self.rto
            elif m > self.rto:
                # "Too long gap. Apparently sender failed to restart window, so that we
                # send ACKs quickly."
                self._incr_quickack()
        self.lrcvtime = now
        self.ack_pending = True

    def _incr_quickack(self) -> None:
        """tcp_incr_quickack(TCP_MAX_QUICKACKS): half the window in full segments (at least 2)."""
        quick = self.rcv_wnd // (2 * self.rcv_mss) or 2
        self.quick = max(self.quick, min(quick, TCP_MAX_QUICKACKS))

    def _fin(self, now: int) -> None:
        """tcp_fin(): the peer closed its side."""
        self.fin_received = True
        self.ack_pending = True
        st = self.state
        if st is TcpState.ESTABLISHED:
            self.set_state(now, TcpState.CLOSE_WAIT)
            self.pingpong = 1   # inet_csk_enter_pingpong_mode()
        elif st is TcpState.FIN_WAIT1:
            # simultaneous close: ACK now, CLOSING (tcp_send_ack in tcp_fin)
            self.set_state(now, TcpState.CLOSING)
            self.send_ack(now, "ack-fin")
        elif st is TcpState.FIN_WAIT2:
            self.send_ack(now, "ack-fin")
            self._enter_time_wait(now)

    def _ack_snd_check(self, now: int) -> None:
        """__tcp_ack_snd_check(): ACK now (two full segments unacked, quickack, ofo), or delay."""
        if not self.ack_pending or self.state in (TcpState.CLOSED, TcpState.TIME_WAIT):
            return
        quickack_mode = self.quick and not self.pingpong
        if ((self.rcv_nxt - self.rcv_wup) % MOD32 > self.rcv_mss) or quickack_mode or self.ofo:
            self.send_ack(now, "ack-now")
            return
        self._send_delayed_ack(now)

    def _send_delayed_ack(self, now: int) -> None:
        """tcp_send_delayed_ack(): ato bounded by the RTT and TCP_DELACK_MAX. Before any
        data arrived (a FIN first) ato is still 0 (tcp_event_data_recv sets it), so the
        timer is due at once and the ACK goes on the next tick."""
        ato = self.ato
        self.delack_exact = ato == 0
        if ato > TCP_DELACK_MIN:
            max_ato = TCP_DELACK_MAX if self.pingpong else jiffies(HZ // 2)
            if self.srtt_us:
                rtt = max(_usecs_to_jiffies_ns(self.srtt_us >> 3), TCP_DELACK_MIN)
                max_ato = min(max_ato, rtt)
            ato = min(ato, max_ato)
        ato = min(ato, TCP_DELACK_MAX)
        current = self.timers.get(TimerKind.DELACK)
        if current is None:
            self.delack_cause = now
        if current is not None:
            if current <= now + (ato >> 2):
                self.send_ack(now, "ack-delack-due")
                return
            ato = min(ato, current - now)
        self.timers[TimerKind.DELACK] = now + ato

    def _rcv_timewait(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_timewait_state_process() in TCP_TIME_WAIT (net/ipv4/tcp_minisocks.c).

        PAWS first (tcp_paws_reject: a TSval older than ts_recent, except a RST when
        ts_recent is more than TCP_PAWS_MSL, 60 s, old). An in-window segment (seq ==
        rcv_nxt) that is a bare ACK restarts the 2MSL wait and is not answered; an in-window
        RST kills the timewait sock (tcp_rfc1337 is 0: TIME_WAIT assassination). A SYN
        (no ACK, no RST) above rcv_nxt or with a newer TSval opens a new connection through
        the listener, with ISN snd_nxt + 65537 (TCP_TW_SYN: `tw_syn_isn`). Anything else
        but a RST restarts the wait (if it acks, or PAWS rejected it) and is ACKed, at most
        once per tcp_invalid_ratelimit unless it carries data or a FIN
        (tcp_timewait_check_oow_rate_limit)."""
        seg_len = len(payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        tsval = seg.timestamp[0] if self.ts_ok and seg.timestamp else None
        paws_reject = tsval is not None and bool(self.ts_recent) and seq_lt(tsval, self.ts_recent) \
            and not (seg.flags & RST and now - self.ts_recent_at >= TCP_PAWS_MSL)
        rst = bool(seg.flags & RST)
        if not paws_reject and seg.seq == self.rcv_nxt and (seg_len == 0 or rst):
            if rst:
                self._done(now, None)        # kill: inet_twsk_deschedule_put
                return
            self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN
            if tsval is not None:
                self.ts_recent, self.ts_recent_at = tsval, now
            return
        if seg.flags & SYN and not rst and not seg.flags & ACK and not paws_reject and (
                seq_lt(self.rcv_nxt, seg.seq) or (tsval is not None and seq_lt(self.ts_recent, tsval))):
            # TCP_TW_SYN: the socket layer hands it to the listener (tw_syn_taken), or, with
            # none, ACKs it from here (tw_syn_refused)
            self.tw_syn_isn = ((self.snd_nxt + 65535 + 2) % MOD32) or 1
            return
        if rst:
            return
        if paws_reject or seg.flags & ACK:
            self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN
        last = self.tw_last_oow_ack
        if seg.seq == (seg.seq + seg_len) % MOD32 or seg.flags & SYN:
            if last is not None and 0 <= now - last < TCP_INVALID_RATELIMIT:
                return
            self.tw_last_oow_ack = now
        self.send_ack(now, "timewait-ack")

    def tw_syn_taken(self, now: int) -> None:
        """tcp_v4_rcv, TCP_TW_SYN with a listener: the timewait sock is gone."""
        self.tw_syn_isn = None
        self._done(now, None)               # inet_twsk_deschedule_put

    def tw_syn_refused(self, now: int) -> list[OutSegment]:
        """tcp_v4_rcv, TCP_TW_SYN with no listener: fall through to TCP_TW_ACK."""
        self.tw_syn_isn = None
        self.send_ack(now, "timewait-ack")
        return self._flush()

    def _rcv_fin_wait2_timewait(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_timewait_state_process() for a timewait sock in TCP_FIN_WAIT2 (an orphan
        tcp_close turned into one): the peer's FIN makes it a true TIME_WAIT for
        TCP_TIMEWAIT_LEN and is acknowledged (TCP_TW_ACK -> tcp_v4_timewait_ack); new
        data or a SYN is reset (TCP_TW_RST -> tcp_v4_send_reset, and the sock is gone)."""
        seg_len = len(payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        end_seq = (seg.seq + seg_len) % MOD32
        tsval = seg.timestamp[0] if self.ts_ok and seg.timestamp else None
        # tcp_paws_reject (the timestamps are recent here: a RST is no exception) and
        # tcp_in_window against tw_rcv_nxt .. tw_rcv_nxt + tw_rcv_wnd
        paws_reject = tsval is not None and seq_lt(tsval, self.ts_recent)
        wnd_end = (self.rcv_nxt + self.tw_rcv_wnd) % MOD32
        in_window = seg.seq == self.rcv_nxt or (seq_lt(self.rcv_nxt, end_seq) and seq_lt(seg.seq, wnd_end)) \
            or seg.seq == wnd_end == end_seq
        if paws_reject or not in_window:
            # tcp_timewait_check_oow_rate_limit -> tcp_oow_rate_limited: a segment without
            # data (or with a SYN) gets at most one ACK per tcp_invalid_ratelimit
            last = self.tw_last_oow_ack
            if seg_len == 0 or seg.flags & SYN:
                if last is not None and 0 <= now - last < TCP_INVALID_RATELIMIT:
                    return
                self.tw_last_oow_ack = now
            self.send_ack(now, "timewait-oow-ack")
            return
        if seg.flags & RST:
            self._done(now, None)   # kill: inet_twsk_deschedule_put
            return
        if seg.flags & SYN and not seq_lt(seg.seq, self.rcv_nxt):
            self._tw_reset(now, seg, len(payload))
            return
        if not seg.flags & ACK or not seq_lt(self.rcv_nxt, end_seq) or end_seq == seg.seq:
            return   # a duplicate ACK: TCP_TW_SUCCESS, nothing sent
        if not seg.flags & FIN or end_seq != (self.rcv_nxt + 1) % MOD32:
            self._tw_reset(now, seg, len(payload))   # new data after a half-duplex close
            return
        # FIN arrived, enter true time-wait state
        self.set_state(now, TcpState.TIME_WAIT)
        self.rcv_nxt = end_seq
        if tsval is not None:
            self.ts_recent = tsval
        self.timers.clear()
        self.fw2_unsure = []
        self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN   # inet_twsk_reschedule
        self.send_ack(now, "timewait-ack")

    def _tw_reset(self, now: int, seg: TcpRepr, payload_len: int) -> None:
        """TCP_TW_RST: tcp_v4_send_reset for the segment, then the timewait sock is gone."""
        self._tx.append(_reset_for(self.local, self.remote, seg, payload_len, "timewait-rst"))
        self._done(now, None)

    def _enter_time_wait(self, now: int) -> None:
        """tcp_time_wait(): 60 s (TCP_TIMEWAIT_LEN), other timers off."""
        self.set_state(now, TcpState.TIME_WAIT)
        self.timers.clear()
        self.rtx_queue.clear()
        self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN
        self.ts_recent_at = now          # tw_ts_recent_stamp (the model's, at the latest)

    # -- timers ------------------------------------------------------------------------
    def on_timer(self, now: int) -> list[OutSegment]:
        """Run every timer due at `now`."""
        for timer, when in sorted(self.timers.items(), key=lambda item: item[1]):
            if when > now or self.timers.get(timer) != when:
                continue
            del self.timers[timer]
            if timer is TimerKind.RETRANSMIT:
                self._retransmit_timer(now)
            elif timer is TimerKind.DELACK:
                if self.ack_pending:
                    # tcp_delack_timer_handler: leave pingpong, ato grows. Linux's ato depends
                    # on arrival spacing, so the ACK may come anywhere in DELACK_MIN..DELACK_MAX.
                    # ato 0 (no data yet): due at once, on the next tick; the timer's own
                    # slack is the board's (models.board._retime)
                    cause = self.delack_cause if self.delack_cause is not None else now - TCP_DELACK_MIN
                    self.send_ack(now, "delayed-ack", None if self.delack_exact else Window(
                        min(now, cause + TCP_DELACK_MIN), max(now, cause + TCP_DELACK_MAX)))
                    # missed in pingpong: leave it and deflate ato; else inflate it
                    self.ato = TCP_ATO_MIN if self.pingpong else min(self.ato << 1, self.rto)
                    self.pingpong = 0
            elif timer is TimerKind.KEEPALIVE:
                self._keepalive_timer(now)
            elif timer is TimerKind.PROBE0:
                self._probe_timer(now)
            elif timer is TimerKind.FIN_WAIT2 and self.state is TcpState.FIN_WAIT2 and not self.timewait_sock:
                self._fin_wait2_keepalive_timer(now)
            elif timer in (TimerKind.TIME_WAIT, TimerKind.FIN_WAIT2):
                self._done(now, None)
        return self._flush()

    def _retransmit_timer(self, now: int) -> None:
        """tcp_retransmit_timer(): give up (tcp_write_timeout) or resend the head, back off."""
        if self.probe_pending:   # tcp_write_timer_handler: ICSK_TIME_LOSS_PROBE
            self._send_loss_probe(now)
            return
        if self.reo_pending:     # ICSK_TIME_REO_TIMEOUT
            self._rack_reo_timeout(now)
            return
        if not self.rtx_queue:
            return
        if self._write_timeout(now):
            return
        head = self.rtx_queue[0]
        syn = head.flags & SYN and self.state is TcpState.SYN_SENT
        if not syn:
            self._enter_loss(now)
        self._fragment(1)                     # tcp_retransmit_skb(sk, head, 1)
        if self._still_in_host_queue(head):
            # __tcp_retransmit_skb() -> -EBUSY: nothing is sent, yet the timer backs off as if
            # it had been (only a positive error takes TCP_RESOURCE_PROBE_INTERVAL instead);
            # the head stays lost and unsent until TSQ calls back (tsq_release)
            self.spurious_rtx_hostqueues += 1
            self.tsq_throttled = head.seq
            self.head_lost_unsent = not syn
        else:
            self.head_lost_unsent = False
            head.retransmitted = True
            head.tx_at = now
            self.total_retrans += 1
            if syn:
                self._send_syn(now, "syn-retransmit")
            else:
                head.rtx_out = True           # tcp_retransmit_skb: TCPCB_SACKED_RETRANS
                self.undo_retrans = max(self.undo_retrans, 0) + 1
                self._send(now, head.flags, head.seq, head.data, "retransmit")
        self._stamp_first_retransmit(head)
        self.backoff += 1
        self.retransmits += 1
        self.rto = min(self.rto << 1, TCP_RTO_MAX)
        self._arm_rto(now, self._clamp_rto_to_user_timeout(now))

    def _enter_loss(self, now: int) -> None:
        """tcp_enter_loss(): tcp_timeout_mark_lost marks the queue lost (the head always;
        the others once RACK's RTT has passed since they were sent; SACKed ones stay, unless
        the head itself was SACKed: reneging); ssthresh is CUBIC's unless this window was
        reduced already, with the undo marker; cwnd what is in flight plus one; CA_Loss
        until snd_una passes high_seq (snd_nxt); F-RTO (tcp_frto 2) on a new recovery or
        a repeated timeout."""
        new_recovery = self.ca_state < TCP_CA_RECOVERY
        head = self.rtx_queue[0]
        reneg = head.sacked
        if not self.sack_ok:
            self.reno_sacked = 0
        now_us = now // 1000
        for skb in self.rtx_queue:
            if reneg:
                skb.sacked = False
            elif skb is not head and self.rack_rtt_us - (now_us - skb.tx_at // 1000) > 0:
                continue
            self._mark_skb_lost(skb)
        if self.ca_state <= TCP_CA_DISORDER or not seq_lt(self.snd_una, self.high_seq) \
                or (self.ca_state == TCP_CA_LOSS and not self.retransmits):
            self.prior_ssthresh = self.ssthresh if self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY) else \
                max(self.ssthresh, (self.cwnd >> 1) + (self.cwnd >> 2))   # tcp_current_ssthresh
            self.prior_cwnd = self.cwnd
            self.ssthresh = self.ca.recalc_ssthresh(self.cwnd)
            self.undo_marker = self.snd_una                          # tcp_init_undo
            self.undo_retrans = self.retrans_out or -1
        self.cwnd = self._packets_in_flight() + 1
        self.snd_cwnd_cnt = 0
        if self.ca_state <= TCP_CA_DISORDER and self.sacked_out >= TCP_FASTRETRANS_THRESH:
            self.reordering = min(self.reordering, TCP_FASTRETRANS_THRESH)
        self.ca_state = TCP_CA_LOSS
        self.ca.reset()                                              # cubictcp_state(TCP_CA_Loss)
        self.high_seq = self.snd_nxt
        self.tlp_high_seq = None
        self.frto = new_recovery or bool(self.retransmits)

    def _process_loss(self, flag: int, num_dupack: int) -> tuple[bool, bool]:
        """tcp_process_loss(): CA_Loss on an ACK. Undo if the echo shows the timeout was
        spurious; F-RTO (RFC 5682): the first ACK that advances sends new data rather than
        retransmissions (REXMIT_NEW), and never-retransmitted data acked or SACKed then
        undoes; past high_seq the loss is over. Returns (rexmit, rexmit_new)."""
        recovered = not seq_lt(self.snd_una, self.high_seq)
        if flag & FLAG_SND_UNA_ADVANCED and self._try_undo_loss(False):
            return False, False
        if self.frto:
            if flag & FLAG_ORIG_SACK_ACKED and self._try_undo_loss(True):
                return False, False
            if seq_lt(self.high_seq, self.snd_nxt):
                if flag & FLAG_DATA_SACKED or num_dupack:
                    self.frto = False                 # step 3.a: the loss was real
            elif flag & FLAG_SND_UNA_ADVANCED and not recovered:
                self.high_seq = self.snd_nxt
                if self.write_queue and seq_lt(self.snd_nxt, (self.snd_una + self.snd_wnd) % MOD32):
                    return True, True                 # step 2.b: try new data
                self.frto = False
        if recovered:
            self._try_undo_recovery()
            return False, False
        if not self.sack_ok:
            if seq_lt(self.high_seq, self.snd_nxt) and num_dupack:
                self._add_reno_sack(num_dupack)
            elif flag & FLAG_SND_UNA_ADVANCED:
                self.reno_sacked = 0
        return True, False

    def _try_undo_loss(self, frto_undo: bool) -> bool:
        """tcp_try_undo_loss(): undo the timeout's reduction and its loss marks."""
        if not (frto_undo or self._may_undo()):
            return False
        self._undo_cwnd_reduction(True)
        self.retransmits = 0
        if not self.sack_ok and self.snd_una == self.high_seq:   # tcp_is_non_sack_preventing_reopen
            if not self._any_retrans_done():
                self.retrans_stamp = None
            return True
        if frto_undo or self.sack_ok:
            self.ca_state = TCP_CA_OPEN
        return True

    def _stamp_first_retransmit(self, skb: _TxSkb) -> None:
        """tcp_retransmit_skb(): "Save stamp of the first (attempted) retransmit": the
        skb's timestamp after the attempt (now if it went out, its last transmission if the
        host still held a copy). tcp_write_timeout counts the give-up time from here; a
        connect's SYN set it when first sent (tcp_connect)."""
        if self.retrans_stamp is None:
            self.retrans_stamp = skb.tx_at

    def tsq_release(self, now: int) -> list[OutSegment]:
        """The copy skb_still_in_host_queue found waiting has left the host (sent once its
        neighbour resolved, or freed with the neighbour's queue): tcp_wfree sees
        TSQ_THROTTLED and the TSQ tasklet runs tcp_tsq_write (net/ipv4/tcp_output.c). With
        the RTO's head lost and not resent since (lost_out > retrans_out) and cwnd above
        what is in flight (1 > 0 after tcp_enter_loss), tcp_xmit_retransmit_queue resends
        the head at once and rearms the retransmission timer from now with icsk_rto."""
        self.tsq_throttled = None
        open_states = (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.CLOSE_WAIT,
                       TcpState.LAST_ACK)
        if self.state in open_states and self.head_lost_unsent and self.rtx_queue:
            head = self.rtx_queue[0]
            self.head_lost_unsent = False
            head.retransmitted = head.rtx_out = True
            head.tx_at = now
            self.total_retrans += 1
            self._send(now, head.flags, head.seq, head.data, "retransmit")
            self._arm_rto(now)
        return self._flush()

    def _still_in_host_queue(self, skb: _TxSkb) -> bool:
        """skb_still_in_host_queue(): the segment's last copy has not left the host yet (it
        waits in a neighbour's arp_queue), so resending it would only queue a duplicate."""
        return self.host_queued is not None and self.host_queued(self, skb.seq)

    # -- ICMP errors: tcp_v4_err ---------------------------------------------------------
    def icmp_unreach(self, now: int, seq: int, code: int) -> list[OutSegment]:
        """tcp_v4_err() for ICMP_DEST_UNREACH about a segment this socket sent (`seq` is the
        sequence number in the quoted TCP header). The board sends itself one when a
        neighbour fails with this socket's segment in its arp_queue (arp_error_report ->
        ipv4_link_failure -> icmp_send HOST_UNREACH, delivered over loopback).

        Out of window ICMPs are ignored; NET/HOST_UNREACH may revert one RTO backoff step
        (tcp_ld_RTO_revert, RFC 6069), which can retransmit at once; in SYN_SENT the error
        is then fatal (tcp_done_with_error); otherwise it is only sk_err_soft."""
        if self.state in (TcpState.CLOSED, TcpState.LISTEN, TcpState.TIME_WAIT):
            return self._flush()
        if not (seq_le(self.snd_una, seq) and seq_le(seq, self.snd_nxt)):
            return self._flush()     # LINUX_MIB_OUTOFWINDOWICMPS
        if code in (ICMP_NET_UNREACH, ICMP_HOST_UNREACH):
            self._ld_rto_revert(now, seq)
        err = "ENETUNREACH" if code == ICMP_NET_UNREACH else "EHOSTUNREACH"
        if self.state in (TcpState.SYN_SENT, TcpState.SYN_RECV):
            self._done(now, err)
        else:
            self.soft_error = err    # sk_err_soft: reported only if the connection times out
        return self._flush()

    def _ld_rto_revert(self, now: int, seq: int) -> None:
        """tcp_ld_RTO_revert(): undo one backoff; retransmit now if the reverted RTO has
        already run out since the head was last sent, else re-arm for what is left."""
        if seq != self.snd_una or not self.retransmits or not self.backoff or not self.rtx_queue:
            return
        head = self.rtx_queue[0]
        self.backoff -= 1
        base = _usecs_to_jiffies_ns((self.srtt_us >> 3) + self.rttvar_us) if self.srtt_us else TCP_TIMEOUT_INIT
        self.rto = min(base << self.backoff, TCP_RTO_MAX)   # inet_csk_rto_backoff()
        remaining = self.rto - _usecs_to_jiffies_ns((now - head.tx_at) // 1000)
        if remaining > 0:
            self.timers[TimerKind.RETRANSMIT] = now + remaining
        else:
            self.timers.pop(TimerKind.RETRANSMIT, None)
            self._retransmit_timer(now)

    def _write_timeout(self, now: int) -> bool:
        """tcp_write_timeout(): SYN_SENT/SYN_RECV count retries, others model the time."""
        p = self.params
        if self.state in (TcpState.SYN_SENT, TcpState.SYN_RECV):
            retry_until = p.syn_retries
            expired = self.retransmits >= retry_until
            rto_base = TCP_TIMEOUT_INIT
        else:
            retry_until = p.retries2
            if self.orphan:
                # tcp_orphan_retries(): tcp_orphan_retries is 0 by default, which means 8
                # while the RTO is below TCP_RTO_MAX ("alive"), else 0
                retry_until = TCP_ORPHAN_RETRIES if self.rto < TCP_RTO_MAX else 0
            expired = False
            rto_base = TCP_RTO_MIN
        if not expired and self.retransmits and self.retrans_stamp is not None:
            if self.user_timeout_ms:
                # retransmits_timed_out(sk, retry_until, icsk_user_timeout): TCP_USER_TIMEOUT
                # replaces tcp_model_timeout, in tcp_time_stamp's milliseconds
                expired = now // NSEC_PER_MSEC - self.retrans_stamp // NSEC_PER_MSEC >= self.user_timeout_ms
            else:
                # tcp_time_stamp is in jiffies-backed ms; compare in model time
                expired = now - self.retrans_stamp >= tcp_model_timeout(retry_until, rto_base)
        if expired:
            self._done(now, "ETIMEDOUT")   # tcp_write_err()
        return expired

    def _clamp_rto_to_user_timeout(self, now: int) -> int:
        """tcp_clamp_rto_to_user_timeout(): with TCP_USER_TIMEOUT, the retransmission timer
        fires no later than the user timeout's end (counted from retrans_stamp, the first
        retransmission), at once (a jiffy) if that has passed; icsk_rto itself is kept."""
        if not self.user_timeout_ms or self.retrans_stamp is None:
            return self.rto
        remaining = self.user_timeout_ms - (now // NSEC_PER_MSEC - self.retrans_stamp // NSEC_PER_MSEC)
        if remaining <= 0:
            return JIFFY
        return min(self.rto, _msecs_to_jiffies_ns(remaining))

    def _keepalive_timer(self, now: int) -> None:
        """tcp_keepalive_timer(): probe after keepalive_time idle, every intvl, give up after probes."""
        p = self.params
        if not self.keepalive or self.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT,
                                                    TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
            return
        if self.rtx_queue or self.write_queue:
            self.timers[TimerKind.KEEPALIVE] = now + p.keepalive_time
            return
        elapsed = now - self.rcv_tstamp
        # An accepted connection whose peer closed (CLOSE_WAIT) is gone from the board once
        # the daemon that accepted it closes it on the EOF, which the model does not play:
        # what its keepalive timer sends is then only what some boards send.
        unsure = self.passive and self.fin_received
        if elapsed >= p.keepalive_time:
            if self.probes_out >= p.keepalive_probes:
                self._send(now, RST, self.snd_nxt, b"", "keepalive-reset")   # tcp_send_active_reset
                self._mark_optional(unsure)
                self._done(now, "ETIMEDOUT")
                return
            # tcp_write_wakeup() -> tcp_xmit_probe_skb(sk, 0): seq snd_una - 1, no data
            self._send(now, 0, (self.snd_una - 1) % MOD32, b"", "keepalive-probe")
            self._mark_optional(unsure)
            self.probes_out += 1
            self.timers[TimerKind.KEEPALIVE] = now + p.keepalive_intvl
        else:
            self.timers[TimerKind.KEEPALIVE] = now + p.keepalive_time - elapsed

    def _mark_optional(self, unsure: bool) -> None:
        """The segment just queued is sent only by some boards (`unsure`)."""
        if unsure and self._tx:
            self._tx[-1] = replace(self._tx[-1], optional=True)

    # -- the process side (called through the socket layer) ------------------------------
    def set_keepalive(self, now: int, on: bool) -> None:
        """SO_KEEPALIVE: tcp_set_keepalive() arms or stops the timer."""
        self.keepalive = on
        if on and self.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.timers[TimerKind.KEEPALIVE] = now + self.params.keepalive_time
        elif not on:
            self.timers.pop(TimerKind.KEEPALIVE, None)

    def send(self, now: int, data: bytes) -> list[OutSegment]:
        """tcp_sendmsg(): queue, mark PSH at the end of the call, push."""
        return self.sendmsg(now, data)[1]

    def sendmsg(self, now: int, data: bytes) -> tuple[int, list[OutSegment]]:
        """tcp_sendmsg(): as `send`, and how much of `data` it took: all of it, unless
        SO_SNDBUF's send buffer filled (a short write; EAGAIN when it took nothing, as a
        nonblocking socket's sk_stream_wait_memory says)."""
        if self.state in (TcpState.SYN_SENT, TcpState.SYN_RECV):
            raise SocketError("EAGAIN", "send before the handshake completed")
        if self.error:
            raise SocketError(self.error, "send on a failed connection")
        if self.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT) or self.shut_wr:
            # sk_stream_wait_connect: a closed connection whose error was reported is EPIPE
            raise SocketError("EPIPE", f"send in {self.state.value}")
        copied = self._sendmsg(now, data)
        if data and not copied:
            raise SocketError("EAGAIN", f"the send buffer is full ({self._wmem_queued()} of sk_sndbuf {self.sndbuf})")
        self._write_xmit(now)         # tcp_push(): the tail marked PSH (unless MSG_MORE), then push
        return copied, self._flush()

    def _skb_sent(self) -> None:
        """An skb ending at snd_nxt has gone to the retransmit queue (for _wmem_queued)."""
        if len(self.rtx_skb_ends) >= 32:
            self.rtx_skb_ends = [end for end in self.rtx_skb_ends if seq_lt(self.snd_una, end)]
        self.rtx_skb_ends.append(self.snd_nxt)

    def _wmem_queued(self) -> int:
        """sk_wmem_queued: each skb of the write and retransmit queues at its truesize,
        TCP_SKB_TRUESIZE_EMPTY (tcp_stream_alloc_skb, tcp_skb_entail) plus its data
        (skb_copy_to_page_nocache). Sending the head of an skb splits it (tso_fragment: a
        second skb); an ACK frees the skbs it covers (tcp_clean_rtx_queue) and trims one
        it covers in part by the bytes acked (tcp_trim_head). Not counted: the FIN's own
        skb, and a split when an RTO resends part of a GSO skb (tcp_fragment)."""
        self.rtx_skb_ends = [end for end in self.rtx_skb_ends if seq_lt(self.snd_una, end)]
        skbs = len(self.rtx_skb_ends) + len(self.skb_lens)
        return skbs * TCP_SKB_TRUESIZE_EMPTY + len(self.write_queue) + (self.snd_nxt - self.snd_una) % MOD32

    def _sendmsg(self, now: int, data: bytes) -> int:
        """tcp_sendmsg_locked(): copy into the tail skb while it is below the size goal,
        then into new ones; each skb that fills is pushed at once (tcp_push_one when it is
        the send head), or, past half the peer's largest window since the last push
        (forced_push), marked PSH and everything pushed. The call's end is marked PSH
        (tcp_push -> tcp_mark_push). With SO_SNDBUF, a new skb is taken only while
        sk_wmem_queued is below sk_sndbuf (sk_stream_memory_free), so a write stops short
        (wait_for_space, then tcp_push); returns the bytes taken."""
        write_seq = (self.snd_nxt + len(self.write_queue)) % MOD32
        if self.pushed_seq is None:
            self.pushed_seq = write_seq        # tcp_create_openreq_child / tcp_connect_queue_skb
        goal = self._xmit_size_goal()
        pos = 0
        while pos < len(data):
            if self.skb_lens and self.skb_lens[-1] < goal:
                copy = min(goal - self.skb_lens[-1], len(data) - pos)
                self.skb_lens[-1] += copy
            else:
                if self.sndbuf is not None and self._wmem_queued() >= self.sndbuf:
                    break                      # new_segment: !sk_stream_memory_free -> wait_for_space
                copy = min(goal, len(data) - pos)
                self.skb_lens.append(copy)
            self.write_queue += data[pos:pos + copy]
            pos += copy
            write_seq = (write_seq + copy) % MOD32
            if pos == len(data) or self.skb_lens[-1] < goal:
                continue
            if seq_lt((self.pushed_seq + (self.max_window >> 1)) % MOD32, write_seq):   # forced_push
                self.push_marks.append(len(self.write_queue))
                self.pushed_seq = write_seq
                self._write_xmit(now)
            elif len(self.skb_lens) == 1:      # the send head
                self._write_xmit(now, push_one=True)
        if pos:
            self.push_marks.append(len(self.write_queue))
            self.pushed_seq = write_seq
        return pos

    def recv(self, now: int, size: int) -> tuple[bytes, list[OutSegment]]:
        """tcp_recvmsg(): take bytes; a window update goes out when the window has opened
        by at least twice rcv_mss (tcp_cleanup_rbuf)."""
        data = bytes(self.rcv_buf[:size])
        del self.rcv_buf[:size]
        if data and self.state in (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
            rcv_window_now = (self.rcv_wup + self.rcv_wnd - self.rcv_nxt) % MOD32
            new_window = self.params.win_from_space(self.rcvbuf - len(self.rcv_buf))
            new_window = min(new_window, self.rcv_ssthresh)
            if new_window >= 2 * rcv_window_now and new_window >= 2 * self.rcv_mss and rcv_window_now < self.rcv_mss * 2:
                self.send_ack(now, "window-update")
        return data, self._flush()

    def close(self, now: int, late_ns: int = 0) -> list[OutSegment]:
        """tcp_close(): RST if unread data, else FIN (or nothing before the handshake).
        `late_ns`: the close may have come up to that much after `now` (a program's exit,
        which shows nothing on the wire); a FIN_WAIT2 orphan's end is then that unsure."""
        self.orphan = True
        st = self.state
        if st in (TcpState.CLOSED, TcpState.LISTEN):
            self.set_state(now, TcpState.CLOSED)
            return self._flush()
        if st is TcpState.SYN_SENT:
            self._done(now, None)
            return self._flush()
        if self.rcv_buf:
            # RFC 2525 2.17: data thrown away unread -> RST (tcp_send_active_reset)
            self._send(now, RST, self.snd_nxt, b"", "close-unread-data-rst")
            self._done(now, None)
            return self._flush()
        self._shutdown_wr(now)
        if self.state is TcpState.FIN_WAIT2:
            # tcp_close (tp->linger2 0): tcp_fin_time; longer than TCP_TIMEWAIT_LEN the full
            # sock waits the excess on its keepalive timer (then tcp_keepalive_timer makes it
            # a timewait sock for the excess again), else it is a FIN_WAIT2 timewait sock now
            tmo = self._fin_time()
            if tmo > TCP_TIMEWAIT_LEN:
                first = tmo - TCP_TIMEWAIT_LEN
                self.timers[TimerKind.FIN_WAIT2] = now + first + late_ns
                ends = (first, first + max(first, self._rto_floor()))
            else:
                self._fin_wait2_timewait(now, tmo)
                self.timers[TimerKind.FIN_WAIT2] += late_ns
                ends = (max(tmo, self._rto_floor()),)
            if late_ns:
                self.fw2_unsure = [(now + d, now + d + late_ns) for d in ends]
        return self._flush()

    def _rto_floor(self) -> int:
        """tcp_time_wait's least timeo: (icsk_rto << 2) - (icsk_rto >> 1) jiffies."""
        rto = self.rto // JIFFY
        return ((rto << 2) - (rto >> 1)) * JIFFY

    def _fin_wait2_timewait(self, now: int, tmo: int) -> None:
        """tcp_time_wait(sk, TCP_FIN_WAIT2, tmo): from here a timewait sock answers
        (tcp_timewait_state_process) with the window the socket offers now
        (tcp_receive_window), for tmo but at least 3.5 RTOs; the full sock's timers are gone."""
        self.timewait_sock = True
        wnd_end = (self.rcv_wup + self.rcv_wnd) % MOD32
        self.tw_rcv_wnd = (wnd_end - self.rcv_nxt) % MOD32 if seq_le(self.rcv_nxt, wnd_end) else 0
        self.rtx_queue.clear()
        self.timers = {TimerKind.FIN_WAIT2: now + max(tmo, self._rto_floor())}

    def _fin_wait2_keepalive_timer(self, now: int) -> None:
        """tcp_keepalive_timer for a FIN_WAIT2 orphan: a timewait sock for what is left of
        tcp_fin_time past TCP_TIMEWAIT_LEN, or (none left) tcp_send_active_reset and done."""
        tmo = self._fin_time() - TCP_TIMEWAIT_LEN
        if tmo > 0:
            self._fin_wait2_timewait(now, tmo)
            return
        self._send(now, RST, self.snd_nxt, b"", "fin-wait2-reset")
        self._done(now, None)

    def shutdown(self, now: int, how: str) -> list[OutSegment]:
        """shutdown(SHUT_RD|SHUT_WR|SHUT_RDWR): only the write side sends anything."""
        if self.state in (TcpState.CLOSED, TcpState.LISTEN, TcpState.SYN_SENT):
            raise SocketError("ENOTCONN", f"shutdown in {self.state.value}")
        if how in ("SHUT_WR", "SHUT_RDWR"):
            self._shutdown_wr(now)
        return self._flush()

    def _fin_time(self) -> int:
        """tcp_fin_time(): how long an orphan stays in FIN_WAIT2: tcp_fin_timeout, but never
        less than 3.5 RTOs ((rto << 2) - (rto >> 1), in jiffies)."""
        rto = self.rto // JIFFY
        return max(self.params.fin_timeout, ((rto << 2) - (rto >> 1)) * JIFFY)

    def _shutdown_wr(self, now: int) -> None:
        """tcp_close_state() + tcp_send_fin()."""
        if self.shut_wr:
            return
        self.shut_wr = True
        nxt = {TcpState.ESTABLISHED: TcpState.FIN_WAIT1, TcpState.SYN_RECV: TcpState.FIN_WAIT1,
               TcpState.CLOSE_WAIT: TcpState.LAST_ACK}.get(self.state)
        if nxt is None:
            return
        self.set_state(now, nxt)
        self.fin_queued = True
        self._write_xmit(now)


def _reset_for(local: tuple[int, int], remote: tuple[int, int], seg: TcpRepr, payload_len: int,
               cause: str) -> OutSegment:
    """tcp_v4_send_reset(): seq from the ACK field if any, else ACK what the segment occupied.

    Sent on the per-cpu control socket ipv4_tcp_sk, whoever the segment was for:
    ip_send_unicast_reply sets its TOS to the segment's (`arg.tos = ip_hdr(skb)->tos`) less
    the ECN bits; the socket is IP_PMTUDISC_DO with no destination, so DF and ID 0."""
    if seg.flags & ACK:
        tcp = TcpRepr(local[1], remote[1], seg.ack, 0, RST, 0)
    else:
        ack = (seg.seq + payload_len + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)) % MOD32
        tcp = TcpRepr(local[1], remote[1], 0, ack, RST | ACK, 0)
    return OutSegment(local[0], remote[0], tcp, b"", cause, ip=InetTx(None, seg.ip_dsfield & ~INET_ECN_MASK, df=True))


tcp_v4_send_reset = _reset_for


@dataclass
class Listener:
    """A LISTEN socket's queues: SYN queue of RequestSocks, accept queue of children."""

    backlog: int   # sk_max_ack_backlog: listen()'s backlog, capped by somaxconn (__sys_listen)
    syn_queue: dict[tuple[int, int], RequestSock] = field(default_factory=dict)
    accept_queue: list[TcpSock] = field(default_factory=list)
    synflood_warned: bool = False   # request_sock_queue.synflood_warned: tcp_syn_flood_action prints once
    # what each cookie SYN-ACK encoded (no request sock in Linux: the cookie itself), by peer
    cookies: dict[tuple[int, int], RequestSock] = field(default_factory=dict)
