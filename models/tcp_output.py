"""net/ipv4/tcp_output.c: what a TCP socket sends and when. tcp_transmit_skb, tcp_write_xmit
with Nagle, TSO sizing and deferral (tcp_tso_should_defer, tcp_mss_split_point,
tcp_tso_autosize), tcp_select_window, tcp_connect, tcp_send_ack and tcp_send_delayed_ack,
the zero-window probe (tcp_send_probe0, tcp_write_wakeup), the tail loss probe
(tcp_schedule_loss_probe, tcp_send_loss_probe), tcp_xmit_retransmit_queue, tcp_sync_mss,
tcp_cwnd_validate, tcp_fragment's bookkeeping, TSQ (skb_still_in_host_queue, tcp_tsq_write),
and the SYN-ACK of a request sock (tcp_make_synack).

`TcpOutput` holds methods of `models.tcp.TcpSock`.
"""

from __future__ import annotations

from .clock import HZ, JIFFY, NSEC_PER_MSEC, Window, jiffies, usecs_to_jiffies_ns
from .errors import SocketError
from .ipv4 import InetTx
from .syncookies import cookie_init_timestamp
from .tcp_h import (
    GSO_MAX_SIZE,
    SK_PACING_SHIFT,
    TCP_CA_CWR,
    TCP_CA_OPEN,
    TCP_CA_RECOVERY,
    TCP_DELACK_MAX,
    TCP_DELACK_MIN,
    TCP_MIN_MSS,
    TCP_MIN_TSO_SEGS,
    TCP_MSS_DEFAULT,
    TCP_PACING_CA_RATIO,
    TCP_PACING_SS_RATIO,
    TCP_RTO_MIN,
    TCP_TIMEOUT_INIT,
    TCP_TIMEOUT_MIN_US,
    TCP_TSO_RTT_LOG,
    TCP_TSO_WIN_DIVISOR,
    TCPOLEN_TSTAMP_ALIGNED,
    U16_MAX,
    USEC_PER_SEC,
    OutSegment,
    RequestSock,
    TcpParams,
    TcpSeq,
    TcpState,
    TimerKind,
    TxSkb,
    tcp_select_initial_window,
)
from .wire.ipv4 import INET_ECN_ECT_0, INET_ECN_MASK
from .wire.tcp import ACK, ECE, FIN, PSH, RST, SYN, TcpRepr, linux_options

__all__ = ["TcpOutput", "tcp_make_synack", "tcp_v4_send_reset"]


class TcpOutput:
    """TcpSock's net/ipv4/tcp_output.c."""

    # -- tcp_transmit_skb ----------------------------------------------------------------------
    def _take_confirm(self) -> bool:
        """__tcp_transmit_skb's skb_set_dst_pending_confirm(skb, sk_dst_pending_confirm),
        then sock_confirm_neigh in ip_finish_output2, which clears the socket's flag as the
        segment goes out. (Linux clears it only once the segment reaches
        ip_finish_output2; the model's segments always get there, a route being there.)"""
        pending, self.dst_pending_confirm = self.dst_pending_confirm, False
        return pending

    def tcp_select_window(self) -> int:
        """tcp_select_window() with __tcp_select_window(); receive memory counts payload
        bytes only (Linux counts skb truesize), so mid-stream windows are approximate."""
        p = self.params
        free_space = p.win_from_space(self.rcvbuf - len(self.rcv_buf))
        allowed = p.win_from_space(self.rcvbuf)
        full_space = min(self.window_clamp, allowed)
        mss = min(self.icsk_ack.rcv_mss, full_space)
        cur_win = max(self.rcv_wup + self.rcv_wnd - self.rcv_nxt, 0)
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

    def tcp_established_options(self, now: int) -> tuple:
        ts = (int(self._tsval(now)), int(self.ts_recent)) if self.ts_ok else None
        blocks: list[tuple[int, int]] = []
        if self.sack_ok:
            if self.dsack:
                blocks.append((int(self.dsack[0]), int(self.dsack[1])))
            for seq, data, fin in self.ofo[:4 - len(blocks) - (1 if ts else 0)]:
                blocks.append((int(seq), int(seq + len(data) + fin)))
        self.dsack = None
        return linux_options(ts=ts, sack_blocks=tuple(blocks))

    def tcp_transmit_skb(self, now: int, flags: int, seq: TcpSeq, payload: bytes, cause: str,
                         window: Window | None = None, ack: bool = True) -> None:
        """tcp_transmit_skb(): every segment after the SYN carries ACK and the current window;
        sending one clears a pending delayed ACK (tcp_event_ack_sent); every one moves
        tcp_wstamp_ns."""
        self.wstamp = max(self.wstamp, now)
        if ack:
            flags |= ACK
        rwin = self.tw_rcv_wnd >> self.rcv_wscale if self.timewait_sock else self.tcp_select_window()
        tcp = TcpRepr(self.local[1], self.remote[1], int(seq), int(self.rcv_nxt) if flags & ACK else 0, flags,
                      rwin, self.tcp_established_options(now))
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
                new_data = bool(payload) and not seq < self.snd_nxt
                self.tos = (self.tos & ~INET_ECN_MASK) | (INET_ECN_ECT_0 if new_data else 0)
            ip = InetTx(self._next_ip_id(), self.tos, self.dont_fragment)   # ip_queue_xmit
            confirm = self._take_confirm()
        self._tx.append(OutSegment(self.local[0], self.remote[0], tcp, bytes(payload), cause, window, ip, confirm))
        if payload and self.icsk_ack.ato and now - self.icsk_ack.lrcvtime < self.icsk_ack.ato:
            # tcp_event_data_sent: "If it is a reply for ato after last received packet,
            # enter pingpong mode" (TCP_PINGPONG_THRESH 1)
            self.icsk_ack.pingpong = 1
        if flags & ACK:
            self.icsk_ack.pending = False
            self.timers.pop(TimerKind.DELACK, None)
            if self.icsk_ack.quick:
                self.icsk_ack.quick -= 1

    def tcp_send_ack(self, now: int, cause: str = "ack", window: Window | None = None) -> None:
        """tcp_send_ack()."""
        self.tcp_transmit_skb(now, 0, self.snd_nxt, b"", cause, window)

    def _arm_rto(self, now: int, timeout: int | None = None) -> None:
        self.timers[TimerKind.RETRANSMIT] = now + (self.rto if timeout is None else timeout)
        self.tlp.pending = self.reo_pending = False

    # -- tcp_write_xmit ------------------------------------------------------------------------
    def tcp_write_xmit(self, now: int, probe: bool = False, push_one: bool = False,
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
        max_segs = self.tcp_tso_segs()
        while self.write_queue:
            mss = self.mss_cache
            skb_len = self.skb_lens[0]
            tso_segs = -(-skb_len // mss)                      # tcp_init_tso_segs
            in_flight_segs = self.tcp_packets_in_flight()
            if in_flight_segs >= self.cwnd:                    # tcp_cwnd_test
                if not probe:
                    break
                cwnd_quota = 1
            else:
                cwnd_quota = min(max(self.cwnd >> 1, 1), self.cwnd - in_flight_segs)
            if self.snd_una + self.snd_wnd < self.snd_nxt + min(mss, skb_len):   # tcp_snd_wnd_test
                break
            last_of_queue = len(self.skb_lens) == 1
            if tso_segs == 1 and skb_len < mss and not self.nodelay and not probe and not push_one and not nagle_off \
                    and not (last_of_queue and self.fin_queued):
                # Nagle, with Minshall's refinement (tcp_nagle_check): hold a small
                # segment only while an earlier small one is unacknowledged.
                if self.rtx_queue and self.snd_una < self.snd_sml <= self.snd_nxt:
                    break
            if tso_segs > 1 and not probe and not push_one:
                defer, cwnd_limited = self.tcp_tso_should_defer(now, skb_len, last_of_queue, max_segs)
                deferred_cwnd_limited |= cwnd_limited
                if defer:
                    break
            limit = mss
            if tso_segs > 1:
                limit = self.tcp_mss_split_point(skb_len, last_of_queue, min(cwnd_quota, max_segs),
                                              probe or push_one or nagle_off)
            if skb_len > limit:                                # tso_fragment: PSH and FIN go with the tail
                self.skb_lens[0:1] = [limit, skb_len - limit]
                skb_len = limit
            self._transmit_head_skb(now, skb_len)
            if probe or push_one:
                break
        if self.fin_queued and not self.write_queue and not (probe and self.snd_nxt != nxt0):
            self.fin_queued = False
            self._xmit_new(now, FIN, b"")
        if queued:
            self.tcp_cwnd_validate(self.snd_nxt != nxt0,
                                deferred_cwnd_limited or self.tcp_packets_in_flight() >= self.cwnd)
        if self.snd_nxt != nxt0 and self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY):
            self.prr_out += sum(1 for skb in self.rtx_queue if not skb.seq < nxt0)
        if self.snd_nxt != nxt0 and not probe:
            self.timers.pop(TimerKind.PROBE0, None)   # one icsk timer: the RTO's now
            self.tcp_schedule_loss_probe(now, False)
        elif self.snd_nxt == nxt0 and not self.rtx_queue and self.write_queue \
                and TimerKind.PROBE0 not in self.timers:
            # tcp_write_xmit sent nothing, nothing is out and data waits (the peer's window
            # is closed): tcp_check_probe_timer arms ICSK_TIME_PROBE0 at tcp_probe0_base
            self.timers[TimerKind.PROBE0] = now + self.tcp_probe0_base()

    def tcp_tso_should_defer(self, now: int, skb_len: int, is_tail: bool, max_segs: int) -> tuple[bool, bool]:
        """tcp_tso_should_defer(): hold the send head (several segments) back for an ACK
        due within min(srtt/2, 1 ms), if something went out in the last millisecond
        (tcp_wstamp_ns) and less than a full burst, the whole skb, or a third of the window
        (tcp_tso_win_divisor) could go now; never in Recovery or Loss, nor for a FIN.
        Returns (defer, cwnd-limited)."""
        if self.ca_state >= TCP_CA_RECOVERY or now - self.wstamp - NSEC_PER_MSEC > 0:
            return False, False
        mss = self.mss_cache
        send_win = self.snd_una + self.snd_wnd - self.snd_nxt
        cong_win = (self.cwnd - self.tcp_packets_in_flight()) * mss
        limit = min(send_win, cong_win)
        if limit >= max_segs * mss or (not is_tail and limit >= skb_len):
            return False, False
        if limit >= min(self.snd_wnd, self.cwnd * mss) // TCP_TSO_WIN_DIVISOR or not self.rtx_queue:
            return False, False
        srtt_ns = (1000 >> 3) * self.rtt.srtt_us
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

    def tcp_fragment(self, i: int) -> None:
        """tcp_fragment() in the retransmit queue: the segments from index `i` on that
        shared an skb with the one before become an skb of their own."""
        q = self.rtx_queue
        if 0 < i < len(q) and q[i].skb_id == q[i - 1].skb_id:
            old, new = q[i].skb_id, self._new_skb_id()
            for skb in q[i:]:
                if skb.skb_id != old:
                    break
                skb.skb_id = new

    def tcp_cwnd_validate(self, sent: bool, is_cwnd_limited: bool) -> None:
        """tcp_cwnd_validate(), from tcp_write_xmit when it sent something or cwnd held it
        back: remember, per window of data, whether cwnd was the limit, else the most
        packets out. (Its shrinking of an unused cwnd, tcp_cwnd_application_limited, and
        the restart after idle are not modelled.)"""
        if not (sent or is_cwnd_limited):
            return
        if not self.snd_una < self.cwnd_usage_seq or is_cwnd_limited or \
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

    def _transmit_head_skb(self, now: int, size: int) -> None:
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

    def tcp_mss_split_point(self, skb_len: int, is_tail: bool, max_segs: int, nagle_off: bool) -> int:
        """tcp_mss_split_point(): how much of the head skb goes out as one burst: max_segs
        segments, or what the peer's window takes, less a partial last segment that
        Nagle would hold."""
        mss = self.mss_cache
        window = self.snd_una + self.snd_wnd - self.snd_nxt
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
                and self.rtx_queue and self.snd_una < self.snd_sml <= self.snd_nxt:
            return needed - partial
        return needed

    def tcp_tso_segs(self) -> int:
        """tcp_tso_segs() -> tcp_tso_autosize(): about a millisecond of the pacing rate
        (sk_pacing_rate >> sk_pacing_shift 10), plus sk_gso_max_size >> (min RTT in us >>
        tcp_tso_rtt_log 9) for short paths, in segments; at least tcp_min_tso_segs (2).
        The pacing rate is tcp_update_pacing_rate's: mss * cwnd (or packets out) / srtt,
        times tcp_pacing_ss_ratio 200 % in slow start's first half, else
        tcp_pacing_ca_ratio 120 %; unbounded (sk_max_pacing_rate) before an RTT sample."""
        mss = self.mss_cache
        if self.rtt.srtt_us:
            ratio = TCP_PACING_SS_RATIO if self.cwnd < self.ssthresh // 2 else TCP_PACING_CA_RATIO
            rate = mss * ((USEC_PER_SEC // 100) << 3) * ratio * max(self.cwnd, len(self.rtx_queue)) // self.rtt.srtt_us
            nbytes = rate >> SK_PACING_SHIFT
        else:
            nbytes = GSO_MAX_SIZE
        if self.rtt.rtt_min_us:
            r = self.rtt.rtt_min_us >> TCP_TSO_RTT_LOG
            if r < 32:
                nbytes += GSO_MAX_SIZE >> r
        nbytes = min(nbytes, GSO_MAX_SIZE)
        return max(nbytes // mss, TCP_MIN_TSO_SEGS)

    def tcp_send_probe0(self, now: int) -> None:
        """tcp_send_probe0() -> tcp_write_wakeup(): if the send head begins inside the
        window (it opened a little), what fits of it goes out with PSH (and the RTO takes
        over); else a zero-window probe, an ACK with seq snd_una - 1 and no data
        (tcp_xmit_probe_skb), and the timer again at tcp_probe0_when, backed off up to
        tcp_retries2 times."""
        wnd_end = self.snd_una + self.snd_wnd
        if self.snd_nxt < wnd_end:
            size = min(self.mss_cache, len(self.write_queue), wnd_end - self.snd_nxt)
            data, _ = self._take(size)
            flags = PSH
            if not self.write_queue and self.fin_queued:
                flags |= FIN
                self.fin_queued = False
            self._xmit_new(now, flags, data)    # the head, or the part tcp_fragment cut off
            self.tcp_rearm_rto(now)                # tcp_event_new_data_sent: nothing was out
        else:
            self.tcp_transmit_skb(now, 0, self.snd_una - 1, b"", "window-probe")
        self.timers.pop(TimerKind.PROBE0, None)
        if self.rtx_queue or not self.write_queue:
            self.probes_out = 0
            self.backoff = 0
            self.probes_tstamp = None
            return
        self.probes_out += 1
        if self.backoff < self.params.retries2:
            self.backoff += 1
        self.timers[TimerKind.PROBE0] = now + self.tcp_clamp_probe0_to_user_timeout(now, self.tcp_probe0_when())

    def _xmit_new(self, now: int, flags: int, data: bytes, gso_psh: int = 0, skb_id: int = 0) -> None:
        """tcp_transmit_skb() of new data and tcp_event_new_data_sent(); `gso_psh`: the PSH
        only the sent clone carries. tcp_event_data_sent: data going out with nothing in
        flight restarts CUBIC's clock (CA_EVENT_TX_START), and lsndtime is now."""
        if data:
            if not self.tcp_packets_in_flight():
                self.ca.tx_start(now // JIFFY, self.lsndtime)
            self.lsndtime = now // JIFFY
        skb = TxSkb(self.snd_nxt, data, flags, now, skb_id=skb_id or self._new_skb_id())
        self.rtx_queue.append(skb)
        self.tcp_transmit_skb(now, flags | gso_psh, skb.seq, data, "fin" if flags & FIN and not data else "data")
        self.snd_nxt = skb.end_seq
        if TimerKind.RETRANSMIT not in self.timers or self.tlp.pending:
            self.tcp_rearm_rto(now)   # tcp_event_new_data_sent()

    # -- tail loss probe (RFC 8985 7) ----------------------------------------------------------
    def tcp_schedule_loss_probe(self, now: int, advancing_rto: bool) -> bool:
        """tcp_schedule_loss_probe(): with SACK, not in loss recovery and data out, probe
        after 2 srtt + TCP_RTO_MIN (one segment out; else + TCP_TIMEOUT_MIN_US), or at the
        RTO if that comes first. False: no probe (the caller arms the RTO)."""
        if self.params.early_retrans not in (3, 4) or not self.rtx_queue or not self.sack_ok \
                or self.ca_state not in (TCP_CA_OPEN, TCP_CA_CWR):
            return False
        if self.rtt.srtt_us:
            # 2 srtt plus tcp_rto_min_us for one packet out, else TCP_TIMEOUT_MIN_US (2 ms),
            # rounded up to jiffies after the sum
            extra_us = TCP_RTO_MIN // 1000 if len(self.rtx_queue) == 1 else TCP_TIMEOUT_MIN_US
            timeout = usecs_to_jiffies_ns((self.rtt.srtt_us >> 2) + extra_us)
        else:
            timeout = TCP_TIMEOUT_INIT
        if advancing_rto:
            rto_delta_us = self.rto // 1000
        else:
            rto_delta_us = (self.rtx_queue[0].tx_at + self.rto - now) // 1000
        if rto_delta_us > 0:
            timeout = min(timeout, usecs_to_jiffies_ns(rto_delta_us))
        self.timers[TimerKind.RETRANSMIT] = now + timeout
        self.tlp.pending, self.reo_pending = True, False
        return True

    def tcp_send_loss_probe(self, now: int) -> None:
        """tcp_send_loss_probe(): new data if the window allows, else the tail again; one
        probe per episode (tlp_high_seq); then the RTO, from now if a probe went out."""
        if self.tlp.high_seq is None:
            sent = False
            size = min(self.mss_cache, len(self.write_queue))
            if self.write_queue and self.snd_nxt + size <= self.snd_una + self.snd_wnd:
                nxt = self.snd_nxt
                self.tcp_write_xmit(now, probe=True)
                sent = self.snd_nxt != nxt
                self.tlp.retrans = False
            elif self.rtx_queue and self.skb_still_in_host_queue(self.rtx_queue[-1]):
                self.spurious_rtx_hostqueues += 1
                self.tsq_throttled = self.rtx_queue[-1].seq
            elif self.rtx_queue:
                self.tcp_fragment(len(self.rtx_queue) - 1)   # the last MSS of the last skb
                tail = self.rtx_queue[-1]
                tail.retransmitted = True    # TCPCB_EVER_RETRANS: no RTT sample from it
                tail.tx_at = now
                # __tcp_retransmit_skb: not tcp_retransmit_skb, so no retrans_stamp
                self.tcp_transmit_skb(now, tail.flags, tail.seq, tail.data, "loss-probe-retransmit")
                sent = self.tlp.retrans = True
            if sent:
                self.tlp.high_seq = self.snd_nxt
                self.tlp.pending = False   # "Reset s.t. tcp_rearm_rto will restart timer from now"
        self.tcp_rearm_rto(now)

    # -- active open ---------------------------------------------------------------------------
    def connect(self, now: int, local: tuple[int, int], remote: tuple[int, int]) -> list[OutSegment]:
        """tcp_v4_connect() + tcp_connect(): pick ISN and TS offset, send the SYN."""
        if self.state is not TcpState.CLOSED:
            raise SocketError("EISCONN" if self.state is not TcpState.LISTEN else "EINVAL", f"connect in {self.state.value}")
        self.local, self.remote = local, remote
        p = self.params
        self.iss = TcpSeq(self.rng.getrandbits(32))   # secure_tcp_seq()
        self.inet_id = self.rng.getrandbits(16)   # tcp_v4_connect(): get_random_u16()
        self.ts_offset = self.rng.getrandbits(32) if p.timestamps else 0
        self.ts_ok, self.sack_ok, self.wscale_ok = p.timestamps, p.sack, p.window_scaling
        # tcp_connect_init()
        self.rcv_wnd, self.window_clamp, self.rcv_wscale = tcp_select_initial_window(
            p, p.win_from_space(self.rcvbuf), self.advmss, p.window_scaling, self.window_clamp)
        self.rcv_ssthresh = self.rcv_wnd
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.rcv_nxt = TcpSeq()
        self.rcv_wup = TcpSeq()
        self.rto = TCP_TIMEOUT_INIT
        self.tcp_set_state(now, TcpState.SYN_SENT)
        skb = TxSkb(self.iss, b"", SYN, now)
        self.rtx_queue.append(skb)
        self._send_syn(now, "syn")
        self.snd_nxt = skb.end_seq
        self.retrans_stamp = now
        self._arm_rto(now)
        return self._flush()

    def _send_syn(self, now: int, cause: str, window: Window | None = None) -> None:
        opts = linux_options(mss=self.advmss, ts=(int(self._tsval(now)), 0) if self.ts_ok else None,
                             sack_perm=self.sack_ok, wscale=self.rcv_wscale if self.wscale_ok else None)
        tcp = TcpRepr(self.local[1], self.remote[1], int(self.iss), 0, SYN, min(self.rcv_wnd, U16_MAX), opts)
        ip = InetTx(self._next_ip_id(), self.tos, self.dont_fragment)
        self._tx.append(OutSegment(self.local[0], self.remote[0], tcp, b"", cause, window, ip, self._take_confirm()))

    def _next_ip_id(self) -> int:
        """ip_select_ident_segs() for a connected socket (inet_daddr set): the ID is inet_id,
        which then counts on by the segment's GSO segments (one each here: what the wire
        shows after software GSO)."""
        ident = self.inet_id
        self.inet_id = (ident + 1) & 0xFFFF
        return ident

    def tcp_sync_mss(self, initial: bool = True) -> None:
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
        self.icsk_ack.rcv_mss = max(hint, TCP_MIN_MSS)

    # -- delayed ACK ---------------------------------------------------------------------------
    def tcp_send_delayed_ack(self, now: int) -> None:
        """tcp_send_delayed_ack(): ato bounded by the RTT and TCP_DELACK_MAX. Before any
        data arrived (a FIN first) ato is still 0 (tcp_event_data_recv sets it), so the
        timer is due at once and the ACK goes on the next tick."""
        ato = self.icsk_ack.ato
        self.icsk_ack.exact = ato == 0
        if ato > TCP_DELACK_MIN:
            max_ato = TCP_DELACK_MAX if self.icsk_ack.pingpong else jiffies(HZ // 2)
            if self.rtt.srtt_us:
                rtt = max(usecs_to_jiffies_ns(self.rtt.srtt_us >> 3), TCP_DELACK_MIN)
                max_ato = min(max_ato, rtt)
            ato = min(ato, max_ato)
        ato = min(ato, TCP_DELACK_MAX)
        current = self.timers.get(TimerKind.DELACK)
        if current is None:
            self.icsk_ack.armed_at = now
        if current is not None:
            if current <= now + (ato >> 2):
                self.tcp_send_ack(now, "ack-delack-due")
                return
            ato = min(ato, current - now)
        self.timers[TimerKind.DELACK] = now + ato

    # -- retransmission ------------------------------------------------------------------------
    def tcp_xmit_retransmit_queue(self, now: int) -> None:
        """tcp_xmit_retransmit_queue(): resend lost segments, head first, while cwnd allows
        (PRR counts them in prr_out); resending the head restarts the RTO, unless RACK's
        reordering timer is what is pending.
        A lost skb goes as one GSO burst of up to cwnd - in flight (and tcp_tso_segs)
        segments, split off the rest (__tcp_retransmit_skb -> tcp_fragment); PSH is forced
        on a burst of more than one, as for new data."""
        rearm = False
        max_segs = self.tcp_tso_segs()
        q = self.rtx_queue
        i = 0
        while i < len(q):
            skb = q[i]
            segs = min(self.cwnd - self.tcp_packets_in_flight(), max_segs)
            if segs <= 0 or self.retrans_out >= self.lost_out:
                break
            if not skb.lost or skb.sacked or skb.rtx_out:
                i += 1
                continue
            if self.skb_still_in_host_queue(skb):
                self.spurious_rtx_hostqueues += 1     # __tcp_retransmit_skb: -EBUSY
                self.tsq_throttled = skb.seq
                break
            if not skb.seq < self.snd_una + self.snd_wnd and skb.seq != self.snd_una:
                break                                  # -EAGAIN: beyond the peer's window
            n = 1
            while n < segs and i + n < len(q) and q[i + n].skb_id == skb.skb_id:
                n += 1
            self.tcp_fragment(i + n)
            burst = q[i:i + n]
            for k, seg in enumerate(burst):
                seg.rtx_out = seg.retransmitted = True
                seg.tx_at = now
                flags = seg.flags | (PSH if n > 1 and k == n - 1 else 0)
                self.tcp_transmit_skb(now, flags if k == n - 1 else 0, seg.seq, seg.data, "fast-retransmit")
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

    def _stamp_first_retransmit(self, skb: TxSkb) -> None:
        """tcp_retransmit_skb(): "Save stamp of the first (attempted) retransmit": the
        skb's timestamp after the attempt (now if it went out, its last transmission if the
        host still held a copy). tcp_write_timeout counts the give-up time from here; a
        connect's SYN set it when first sent (tcp_connect)."""
        if self.retrans_stamp is None:
            self.retrans_stamp = skb.tx_at

    def tcp_tsq_write(self, now: int) -> list[OutSegment]:
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
            self.tcp_transmit_skb(now, head.flags, head.seq, head.data, "retransmit")
            self._arm_rto(now)
        return self._flush()

    def skb_still_in_host_queue(self, skb: TxSkb) -> bool:
        """skb_still_in_host_queue(): the segment's last copy has not left the host yet (it
        waits in a neighbour's arp_queue), so resending it would only queue a duplicate."""
        return self.host_queued is not None and self.host_queued(self, skb.seq)


def tcp_make_synack(req: RequestSock, now: int, params: TcpParams, cause: str,
                    listener_tos: int = 0) -> OutSegment:
    """tcp_make_synack(): options in tcp_synack_options() order, window not scaled.

    tcp_v4_send_synack -> ip_build_and_send_pkt(sk = the listener): the TOS is the
    listener's inet->tos when it is sent (a retransmission reads it again), or with
    tcp_reflect_tos the SYN's DSCP and the listener's ECN bits. A SYN-ACK is never more
    than IPV4_MIN_MTU bytes, so it has DF and ID 0 whatever the listener's pmtudisc."""
    ts_now = now // NSEC_PER_MSEC
    if req.syncookie and req.ts_ok:
        ts_now = cookie_init_timestamp(ts_now, req.snd_wscale, req.sack_ok, req.ecn_ok)
    tsval = TcpSeq(ts_now + req.ts_offset)
    opts = linux_options(mss=params.advmss, ts=(int(tsval), int(req.ts_recent)) if req.ts_ok else None,
                         sack_perm=req.sack_ok,
                         wscale=req.rcv_wscale if req.snd_wscale is not None else None)
    # tcp_ecn_make_synack: ECE when the request is ecn_ok
    tcp = TcpRepr(req.local[1], req.remote[1], int(req.iss), int(req.irs + 1),
                  SYN | ACK | (ECE if req.ecn_ok else 0), min(req.rcv_wnd, U16_MAX), opts)
    tos = ((req.syn_tos & ~INET_ECN_MASK) | (listener_tos & INET_ECN_MASK)) if params.reflect_tos \
        else listener_tos
    return OutSegment(req.local[0], req.remote[0], tcp, b"", cause, ip=InetTx(None, tos, df=True))


def tcp_v4_send_reset(local: tuple[int, int], remote: tuple[int, int], seg: TcpRepr, payload_len: int,
                      cause: str) -> OutSegment:
    """tcp_v4_send_reset() (net/ipv4/tcp_ipv4.c; here, below tcp_input and tcp_minisocks, which
    answer with it where tcp_v4_do_rcv and tcp_v4_rcv do for them): seq from the ACK field if
    any, else ACK what the segment occupied.

    Sent on the per-cpu control socket ipv4_tcp_sk, whoever the segment was for:
    ip_send_unicast_reply sets its TOS to the segment's (`arg.tos = ip_hdr(skb)->tos`) less
    the ECN bits; the socket is IP_PMTUDISC_DO with no destination, so DF and ID 0."""
    if seg.flags & ACK:
        tcp = TcpRepr(local[1], remote[1], int(seg.ack), 0, RST, 0)
    else:
        ack = TcpSeq(seg.seq) + payload_len + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        tcp = TcpRepr(local[1], remote[1], 0, int(ack), RST | ACK, 0)
    return OutSegment(local[0], remote[0], tcp, b"", cause, ip=InetTx(None, seg.ip_dsfield & ~INET_ECN_MASK, df=True))
