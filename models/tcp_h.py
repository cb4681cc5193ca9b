"""The header of the TCP model: include/net/tcp.h, include/linux/tcp.h and
include/uapi/linux/tcp.h as the model needs them. The constants, the states, the sysctls
TCP reads (`TcpParams`), the 32-bit sequence number (`TcpSeq`: wrapping arithmetic,
before() and after()), the segment TCP hands to IP (`OutSegment`), an skb of the
retransmit queue (`TxSkb`, TCP_SKB_CB), the socket's timers (`TimerKind`), the
delayed-ACK and tail-loss-probe state (`IcskAck`, `TailLossProbe`), a half-open passive
connection (`RequestSock`, struct tcp_request_sock) and what the stack drops (`Drop`).

Every TCP module imports from here and none of them from another the other way round:
`models.tcp.TcpSock` (net/ipv4/tcp.c) is assembled from the per-file parts
(models.tcp_input, tcp_output, tcp_recovery, tcp_timer, tcp_minisocks).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from .clock import HZ, Window, jiffies, sec
from .config import SYSCTL_DEFAULTS, rmem_triple
from .ipv4 import InetTx
from .wire.tcp import FIN, SYN, TcpRepr

__all__ = [
    "TcpState", "TcpParams", "OutSegment", "TxSkb", "RequestSock", "TimerKind", "Drop", "IcskAck", "TailLossProbe",
    "TCP_TIMEOUT_INIT", "TCP_TIMEOUT_FALLBACK", "TCP_RTO_MIN", "TCP_RTO_MAX", "TCP_DELACK_MIN",
    "TCP_DELACK_MAX", "TCP_ATO_MIN", "TCP_TIMEWAIT_LEN", "tcp_select_initial_window", "TcpSeq", "tcp_v4_fill_cb",
]

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

_U32 = 0xFFFFFFFF
_HALF = 0x80000000


class TcpSeq(int):
    """A TCP sequence number (smoltcp's TcpSeqNumber), or a TCP timestamp, which RFC 7323
    compares the same way: 32 bits that wrap. `seq + n` and `seq - n` (n a length) are
    TcpSeqs again; `seq - seq` is how far the second is behind the first, modulo 2**32, a
    plain int; `<`, `<=` are Linux's before() and `>`, `>=` its after() (by the signed
    difference: they hold within half the space). Equality and the hash are the int's:
    a TcpSeq equals the plain int of its value, as the wire carries it (TcpRepr). A plain
    int met in arithmetic or comparison is taken as a sequence number, whichever side it
    is on; a length or a distance is never compared with a TcpSeq."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> TcpSeq:
        return int.__new__(cls, value & _U32)

    def __add__(self, n: int) -> TcpSeq:
        return int.__new__(TcpSeq, int.__add__(self, n) & _U32)

    __radd__ = __add__

    def __sub__(self, other: int) -> int:
        diff = int.__sub__(self, other) & _U32
        return diff if type(other) is TcpSeq else int.__new__(TcpSeq, diff)

    def __rsub__(self, other: int) -> int:
        return int.__sub__(other, self) & _U32

    def __lt__(self, other: int) -> bool:
        return int.__sub__(self, other) & _U32 >= _HALF

    def __le__(self, other: int) -> bool:
        diff = int.__sub__(self, other) & _U32
        return diff == 0 or diff >= _HALF

    def __gt__(self, other: int) -> bool:
        return int.__sub__(other, self) & _U32 >= _HALF

    def __ge__(self, other: int) -> bool:
        diff = int.__sub__(other, self) & _U32
        return diff == 0 or diff >= _HALF


def tcp_v4_fill_cb(seg: TcpRepr) -> TcpRepr:
    """tcp_v4_fill_cb(): the segment as TCP reads it, its sequence and acknowledgment
    numbers as TcpSeqs (TCP_SKB_CB's seq and ack_seq). net/ipv4/tcp_ipv4.c's; here, as
    both tcp_v4_rcv and a socket's tcp_rcv_state_process take a segment through it."""
    if type(seg.seq) is TcpSeq and type(seg.ack) is TcpSeq:
        return seg
    return replace(seg, seq=TcpSeq(seg.seq), ack=TcpSeq(seg.ack))


def ilog2(x: int) -> int:
    return x.bit_length() - 1


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
    """tcp_select_initial_window(): (rcv_wnd, window_clamp, rcv_wscale). net/ipv4/tcp_output.c's,
    declared in include/net/tcp.h: tcp_connect_init, tcp_openreq_init_rwin and cookie_v4_check
    (models.tcp_output, tcp_ipv4, syncookies) all use it."""
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
        rcv_wscale = min(max(ilog2(space) - 15, 0), TCP_MAX_WSCALE)
    window_clamp = min(U16_MAX << rcv_wscale, window_clamp)
    return rcv_wnd, window_clamp, rcv_wscale


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
class TxSkb:
    """One segment in the retransmit queue (tcp_rtx_queue); its seq, data and flags do not
    change once it is queued, so its end_seq is kept (TCP_SKB_CB(skb)->end_seq)."""

    seq: TcpSeq
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
    end_seq: TcpSeq = field(init=False)

    def __post_init__(self) -> None:
        if self.tx_at is None:
            self.tx_at = self.sent_at
        self.seq = TcpSeq(self.seq)
        self.end_seq = self.seq + len(self.data) + (1 if self.flags & (SYN | FIN) else 0)


@dataclass(slots=True)
class IcskAck:
    """The delayed-ACK state (inet_connection_sock's icsk_ack): an ACK is owed (pending),
    the quick ACKs left, pingpong (interactive) mode, the estimated interarrival time
    (ato), when data last arrived (lrcvtime) and the MSS the peer sends (rcv_mss). And
    the model's own: when the delayed-ACK timer was armed (armed_at: the ACK's window
    runs from it), and whether it is due at once (exact: ato was 0, no data yet)."""

    pending: bool = False
    quick: int = 0
    pingpong: int = 0
    ato: int = 0
    lrcvtime: int = 0
    rcv_mss: int = TCP_MSS_DEFAULT
    armed_at: int | None = None
    exact: bool = False


@dataclass(slots=True)
class TailLossProbe:
    """The tail loss probe (RFC 8985 7): the retransmit timer is a probe timer while
    `pending` (icsk_pending == ICSK_TIME_LOSS_PROBE); a probe is out up to `high_seq`
    (tp->tlp_high_seq, one per tail loss episode), and it resent the tail rather than new
    data (`retrans`, tp->tlp_retrans)."""

    pending: bool = False
    high_seq: int | None = None
    retrans: bool = False


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
    irs: TcpSeq
    iss: TcpSeq
    peer_mss: int
    ts_ok: bool
    sack_ok: bool
    snd_wscale: int | None
    ts_recent: TcpSeq
    ts_offset: int
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


@dataclass(frozen=True, slots=True)
class Drop:
    """A segment the stack dropped, with the kernel's reason."""

    at: int
    reason: str
    detail: str
