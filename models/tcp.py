"""TCP as Linux 6.1 does it: one `TcpSock` per connection, driven by an explicit `now` (ns).

This module is net/ipv4/tcp.c: the socket (struct tcp_sock, as tcp_init_sock sets it up),
tcp_set_state, tcp_done, and the calls a process makes (tcp_sendmsg, tcp_recvmsg,
tcp_close, tcp_shutdown). The rest of `TcpSock` is in the modules named after the kernel's
files, each a part `TcpSock` is made of:

    models.tcp_input      net/ipv4/tcp_input.c      TcpInput
    models.tcp_output     net/ipv4/tcp_output.c     TcpOutput
    models.tcp_recovery   net/ipv4/tcp_recovery.c   TcpRecovery (RACK)
    models.tcp_timer      net/ipv4/tcp_timer.c      TcpTimer
    models.tcp_minisocks  net/ipv4/tcp_minisocks.c  TcpMinisocks (timewait sock, the child)

and the constants and records they share are in models.tcp_h (include/net/tcp.h). The
passive open's listener side is in models.tcp_ipv4, models.inet_connection_sock and
models.syncookies.

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

import logging
import random
from collections.abc import Callable
from dataclasses import replace

from .clock import JIFFY, NSEC_PER_MSEC
from .errors import SocketError
from .tcp_cubic import Bictcp
from .tcp_h import (
    GSO_MAX_SIZE,
    TCP_CA_OPEN,
    TCP_FASTRETRANS_THRESH,
    TCP_INIT_CWND,
    TCP_MSS_DEFAULT,
    TCP_RTO_MAX,
    TCP_RTO_MIN,
    TCP_SKB_TRUESIZE_EMPTY,
    TCP_TIMEOUT_INIT,
    TCP_TIMEWAIT_LEN,
    TCPOLEN_TSTAMP_ALIGNED,
    IcskAck,
    OutSegment,
    TailLossProbe,
    TcpParams,
    TcpSeq,
    TcpState,
    TimerKind,
    TxSkb,
)
from .tcp_input import RttEstimator, TcpInput
from .tcp_minisocks import TcpMinisocks
from .tcp_output import TcpOutput
from .tcp_recovery import TcpRecovery
from .tcp_timer import TcpTimer
from .wire.tcp import RST

__all__ = ["TcpSock", "TcpParams", "TcpState", "OutSegment", "TimerKind"]

log = logging.getLogger(__name__)


class TcpSock(TcpInput, TcpOutput, TcpRecovery, TcpTimer, TcpMinisocks):
    """A TCP connection's state (struct tcp_sock) and its state machine."""

    # -- bookkeeping ---------------------------------------------------------------------------
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
        self.tsq_throttled: TcpSeq | None = None
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
        self.tw_syn_isn: TcpSeq | None = None   # TCP_TW_SYN: a new SYN the listener takes, with this ISN
        self.fw2_unsure: list[tuple[int, int]] = []
        # send side
        self.iss = TcpSeq()
        self.snd_una = TcpSeq()
        self.snd_nxt = TcpSeq()
        self.snd_wnd = 0
        self.snd_wl1 = TcpSeq()
        self.max_window = 0
        self.snd_wscale = 0
        self.snd_sml = TcpSeq()
        self.write_queue = bytearray()
        self.push_marks: list[int] = []   # byte offsets in write_queue ending a send() call
        self.skb_lens: list[int] = []     # the write queue's skbs (their lengths), head first
        self.pushed_seq: TcpSeq | None = None   # tp->pushed_seq: write_seq at the last tcp_mark_push
        self.rtx_queue: list[TxSkb] = []
        self.fin_queued = False
        self.mss_cache = TCP_MSS_DEFAULT
        self.peer_mss = TCP_MSS_DEFAULT
        self.advmss = params.advmss
        self.cwnd = TCP_INIT_CWND
        self.ssthresh = 0x7FFFFFFF
        # receive side
        self.irs = TcpSeq()
        self.rcv_nxt = TcpSeq()
        self.rcv_wnd = 0
        self.rcv_wup = TcpSeq()
        self.rcv_ssthresh = 0
        self.window_clamp = 0
        self.rcv_wscale = 0
        self.rcv_buf = bytearray()
        self.ofo: list[tuple[TcpSeq, bytes, bool]] = []   # (seq, data, fin), out of order
        self.fin_received = False
        self.rcvbuf = params.tcp_rmem[1]
        # options negotiated
        self.ts_ok = False
        self.sack_ok = False
        self.wscale_ok = False
        self.ts_recent = TcpSeq()
        self.ts_offset = 0
        self.dsack: tuple[TcpSeq, TcpSeq] | None = None
        # RTT (tcp_rtt_estimator) and the RTO (icsk_rto)
        self.rtt = RttEstimator()
        self.rto = TCP_TIMEOUT_INIT
        self.backoff = 0
        self.retransmits = 0
        self.retrans_stamp: int | None = None
        # tail loss probe (tcp_schedule_loss_probe)
        self.tlp = TailLossProbe()
        # loss recovery (tcp_fastretrans_alert): the congestion state (icsk_ca_state) and
        # its high_seq; a non-SACK peer's duplicate ACKs (tcp_add_reno_sack); the reordering
        # degree (tp->reordering, reord_seen); PRR's counts; the undo marker (None: unset)
        self.ca_state = TCP_CA_OPEN
        self.high_seq = TcpSeq()
        self.reno_sacked = 0
        self.reordering = TCP_FASTRETRANS_THRESH
        self.reord_seen = 0
        self.prior_cwnd = 0
        self.prr_delivered = 0
        self.prr_out = 0
        self.prior_ssthresh = 0
        self.undo_marker: TcpSeq | None = None
        self.undo_retrans = 0
        self.lost_total = 0                    # tp->lost: segments ever marked lost
        self._next_skb_id = 1
        self.wstamp = 0                        # tcp_wstamp_ns: when this socket last sent
        self.frto = False                      # F-RTO after this timeout (tp->frto)
        self._rexmit_new = False
        self._sack_delivered = self._reno_delivered = 0
        self._last_ecr: TcpSeq | None = None      # the ACK's TS echo (rx_opt.rcv_tsecr), if any
        # RACK (tcp_recovery.c): the latest sent delivered segment and its RTT; the
        # retransmit timer is RACK's reordering timer while reo_pending (ICSK_TIME_REO_TIMEOUT)
        self.rack_mstamp_us = 0
        self.rack_end_seq = TcpSeq()
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
        self.cwnd_usage_seq = TcpSeq()
        self.lsndtime = 0
        self.total_retrans = 0
        # delayed ACK
        self.icsk_ack = IcskAck()
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
        # modelled; sk_wmem_queued is counted from the queues, see _wmem_queued); TCP_USER_TIMEOUT
        # (icsk_user_timeout, ms, 0: none) and icsk_probes_tstamp (the first zero-window
        # probe timer of a run)
        self.sndbuf: int | None = None
        self.user_timeout_ms = 0
        self.probes_tstamp: int | None = None
        self._tx: list[OutSegment] = []

    def tcp_set_state(self, now: int, new: TcpState) -> None:
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

    def _flush(self) -> list[OutSegment]:
        out, self._tx = self._tx, []
        return out

    def poll_at(self) -> int | None:
        """The next time this socket needs `on_timer`, or None."""
        return min(self.timers.values()) if self.timers else None

    def _tsval(self, now: int) -> TcpSeq:
        return TcpSeq(now // NSEC_PER_MSEC + self.ts_offset)

    def tcp_done(self, now: int, error: str | None) -> None:
        """tcp_done(): CLOSE, timers off, queues purged; `error` as sk_err."""
        if error and not self.error:
            self.error, self.error_at = error, now
        self.tcp_set_state(now, TcpState.CLOSED)
        self.timers.clear()
        self.rtx_queue.clear()
        self.write_queue.clear()
        self.skb_lens.clear()
        self.push_marks.clear()

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

    def tcp_packets_in_flight(self) -> int:
        """tcp_packets_in_flight(): packets_out - (sacked_out + lost_out) + retrans_out."""
        sacked = lost = rtx = 0
        for s in self.rtx_queue:
            sacked += s.sacked
            lost += s.lost
            rtx += s.rtx_out
        if not self.sack_ok:
            sacked = self.reno_sacked
        return len(self.rtx_queue) - (sacked + lost) + rtx

    def tcp_highest_sack_seq(self) -> int:
        """tcp_highest_sack_seq(): the end of the highest SACKed segment, else snd_una."""
        high = None
        if self.sack_ok:
            for s in self.rtx_queue:
                if s.sacked:
                    high = s.end_seq
        return self.snd_una if high is None else high

    def tcp_probe0_base(self) -> int:
        """tcp_probe0_base(): max(icsk_rto, TCP_RTO_MIN)."""
        return max(self.rto, TCP_RTO_MIN)

    def tcp_probe0_when(self) -> int:
        """tcp_probe0_when(sk, TCP_RTO_MAX): the base doubled by the backoff, at most TCP_RTO_MAX."""
        return min(self.tcp_probe0_base() << self.backoff, TCP_RTO_MAX)

    def tcp_fin_time(self) -> int:
        """tcp_fin_time(): how long an orphan stays in FIN_WAIT2: tcp_fin_timeout, but never
        less than 3.5 RTOs ((rto << 2) - (rto >> 1), in jiffies)."""
        rto = self.rto // JIFFY
        return max(self.params.fin_timeout, ((rto << 2) - (rto >> 1)) * JIFFY)

    def _mark_optional(self, unsure: bool) -> None:
        """The segment just queued is sent only by some boards (`unsure`)."""
        if unsure and self._tx:
            self._tx[-1] = replace(self._tx[-1], optional=True)

    # -- the process side (called through the socket layer) ------------------------------------
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
        copied = self.tcp_sendmsg_locked(now, data)
        if data and not copied:
            raise SocketError("EAGAIN", f"the send buffer is full ({self._wmem_queued()} of sk_sndbuf {self.sndbuf})")
        self.tcp_write_xmit(now)         # tcp_push(): the tail marked PSH (unless MSG_MORE), then push
        return copied, self._flush()

    def _wmem_queued(self) -> int:
        """sk_wmem_queued: each skb of the write and retransmit queues at its truesize,
        TCP_SKB_TRUESIZE_EMPTY (tcp_stream_alloc_skb, tcp_skb_entail) plus its data
        (skb_copy_to_page_nocache). The retransmit queue's skbs are its segments' skb ids:
        sending the head of an skb splits it (tso_fragment), as does tcp_fragment (an RTO's
        or a fast retransmit's part, a SACK's edge), each part charged its own truesize; a
        FIN of its own is an skb too (tcp_send_fin -> tcp_queue_skb); an ACK frees the skbs
        it covers (tcp_clean_rtx_queue) and trims one it covers in part (tcp_trim_head)."""
        q = self.rtx_queue
        skbs = len({skb.skb_id for skb in q}) + len(self.skb_lens)
        trimmed = self.snd_una - q[0].seq if q and q[0].seq < self.snd_una else 0
        return skbs * TCP_SKB_TRUESIZE_EMPTY + len(self.write_queue) + sum(len(skb.data) for skb in q) - trimmed

    def tcp_sendmsg_locked(self, now: int, data: bytes) -> int:
        """tcp_sendmsg_locked(): copy into the tail skb while it is below the size goal,
        then into new ones; each skb that fills is pushed at once (tcp_push_one when it is
        the send head), or, past half the peer's largest window since the last push
        (forced_push), marked PSH and everything pushed. The call's end is marked PSH
        (tcp_push -> tcp_mark_push). With SO_SNDBUF, a new skb is taken only while
        sk_wmem_queued is below sk_sndbuf (sk_stream_memory_free), so a write stops short
        (wait_for_space, then tcp_push); returns the bytes taken."""
        write_seq = self.snd_nxt + len(self.write_queue)
        if self.pushed_seq is None:
            self.pushed_seq = write_seq        # tcp_create_openreq_child / tcp_connect_queue_skb
        goal = self.tcp_xmit_size_goal()
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
            write_seq += copy
            if pos == len(data) or self.skb_lens[-1] < goal:
                continue
            if self.pushed_seq + (self.max_window >> 1) < write_seq:   # forced_push
                self.push_marks.append(len(self.write_queue))
                self.pushed_seq = write_seq
                self.tcp_write_xmit(now)
            elif len(self.skb_lens) == 1:      # the send head
                self.tcp_write_xmit(now, push_one=True)
        if pos:
            self.push_marks.append(len(self.write_queue))
            self.pushed_seq = write_seq
        return pos

    def tcp_xmit_size_goal(self) -> int:
        """tcp_xmit_size_goal(): tcp_sendmsg fills skbs to a multiple of the MSS, bounded by
        half the peer's largest window (tcp_bound_to_half_wnd) and sk_gso_max_size."""
        mss = self.mss_cache
        cutoff = self.max_window >> 1 if self.max_window > TCP_MSS_DEFAULT else self.max_window
        goal = GSO_MAX_SIZE
        if cutoff and goal > cutoff:
            goal = max(cutoff, 68 - (20 + (TCPOLEN_TSTAMP_ALIGNED if self.ts_ok else 0)))
        return max(goal // mss * mss, mss)

    def recv(self, now: int, size: int) -> tuple[bytes, list[OutSegment]]:
        """tcp_recvmsg(): take bytes; a window update goes out when the window has opened
        by at least twice rcv_mss (tcp_cleanup_rbuf)."""
        data = bytes(self.rcv_buf[:size])
        del self.rcv_buf[:size]
        if data and self.state in (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
            rcv_window_now = self.rcv_wup + self.rcv_wnd - self.rcv_nxt
            new_window = self.params.win_from_space(self.rcvbuf - len(self.rcv_buf))
            new_window = min(new_window, self.rcv_ssthresh)
            rcv_mss = self.icsk_ack.rcv_mss
            if new_window >= 2 * rcv_window_now and new_window >= 2 * rcv_mss and rcv_window_now < rcv_mss * 2:
                self.tcp_send_ack(now, "window-update")
        return data, self._flush()

    def close(self, now: int, late_ns: int = 0) -> list[OutSegment]:
        """tcp_close(): RST if unread data, else FIN (or nothing before the handshake).
        `late_ns`: the close may have come up to that much after `now` (a program's exit,
        which shows nothing on the wire); a FIN_WAIT2 orphan's end is then that unsure."""
        self.orphan = True
        st = self.state
        if st in (TcpState.CLOSED, TcpState.LISTEN):
            self.tcp_set_state(now, TcpState.CLOSED)
            return self._flush()
        if st is TcpState.SYN_SENT:
            self.tcp_done(now, None)
            return self._flush()
        if self.rcv_buf:
            # RFC 2525 2.17: data thrown away unread -> RST (tcp_send_active_reset)
            self.tcp_transmit_skb(now, RST, self.snd_nxt, b"", "close-unread-data-rst")
            self.tcp_done(now, None)
            return self._flush()
        self._shutdown_wr(now)
        if self.state is TcpState.FIN_WAIT2:
            # tcp_close (tp->linger2 0): tcp_fin_time; longer than TCP_TIMEWAIT_LEN the full
            # sock waits the excess on its keepalive timer (then tcp_keepalive_timer makes it
            # a timewait sock for the excess again), else it is a FIN_WAIT2 timewait sock now
            tmo = self.tcp_fin_time()
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

    def shutdown(self, now: int, how: str) -> list[OutSegment]:
        """shutdown(SHUT_RD|SHUT_WR|SHUT_RDWR): only the write side sends anything."""
        if self.state in (TcpState.CLOSED, TcpState.LISTEN, TcpState.SYN_SENT):
            raise SocketError("ENOTCONN", f"shutdown in {self.state.value}")
        if how in ("SHUT_WR", "SHUT_RDWR"):
            self._shutdown_wr(now)
        return self._flush()

    def _shutdown_wr(self, now: int) -> None:
        """tcp_close_state() + tcp_send_fin()."""
        if self.shut_wr:
            return
        self.shut_wr = True
        nxt = {TcpState.ESTABLISHED: TcpState.FIN_WAIT1, TcpState.SYN_RECV: TcpState.FIN_WAIT1,
               TcpState.CLOSE_WAIT: TcpState.LAST_ACK}.get(self.state)
        if nxt is None:
            return
        self.tcp_set_state(now, nxt)
        self.fin_queued = True
        self.tcp_write_xmit(now)
