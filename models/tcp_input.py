"""net/ipv4/tcp_input.c: what a TCP socket does with a segment. tcp_rcv_state_process and
tcp_rcv_synsent_state_process, tcp_ack (tcp_sacktag_write_queue, tcp_clean_rtx_queue, the
RTT sample and tcp_rtt_estimator), loss recovery (tcp_fastretrans_alert and its helpers,
tcp_enter_loss and tcp_process_loss with F-RTO, the undo, PRR, tcp_cong_control),
tcp_data_queue with the out-of-order queue, tcp_fin, the delayed-ACK decision
(tcp_event_data_recv, __tcp_ack_snd_check), tcp_rearm_rto and tcp_init_transfer.

`TcpInput` holds methods of `models.tcp.TcpSock`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import JIFFY, usecs_to_jiffies_ns
from .errors import ModelUsageError
from .tcp_h import (
    FLAG_ACKED,
    FLAG_CA_ALERT,
    FLAG_DATA,
    FLAG_DATA_ACKED,
    FLAG_DATA_SACKED,
    FLAG_DSACKING_ACK,
    FLAG_FORWARD_PROGRESS,
    FLAG_LOST_RETRANS,
    FLAG_NOT_DUP,
    FLAG_ORIG_SACK_ACKED,
    FLAG_RETRANS_DATA_ACKED,
    FLAG_SET_XMIT_TIMER,
    FLAG_SND_UNA_ADVANCED,
    FLAG_SYN_ACKED,
    FLAG_WIN_UPDATE,
    TCP_ATO_MIN,
    TCP_CA_CWR,
    TCP_CA_DISORDER,
    TCP_CA_LOSS,
    TCP_CA_OPEN,
    TCP_CA_RECOVERY,
    TCP_FASTRETRANS_THRESH,
    TCP_INFINITE_SSTHRESH,
    TCP_INIT_CWND,
    TCP_MAX_QUICKACKS,
    TCP_MAX_REORDERING,
    TCP_MAX_WSCALE,
    TCP_MSS_DEFAULT,
    TCP_RTO_MAX,
    TCP_RTO_MIN,
    TCP_TIMEOUT_FALLBACK,
    TCP_TIMEOUT_MIN,
    TCP_TIMEWAIT_LEN,
    U16_MAX,
    OutSegment,
    TcpSeq,
    TcpState,
    TimerKind,
    TxSkb,
    tcp_v4_fill_cb,
)
from .tcp_minisocks import FinWait2Unsure
from .tcp_output import tcp_v4_send_reset
from .wire.tcp import ACK, FIN, RST, SYN, TcpRepr

__all__ = ["TcpInput", "RttEstimator"]


@dataclass(slots=True)
class RttEstimator:
    """The RTT estimate, in microseconds as Linux keeps them (struct tcp_sock's srtt_us,
    8 times the smoothed RTT, 0 before a sample; mdev_us, mdev_max_us, rttvar_us and
    rtt_seq, the end of the window rttvar is over), and tcp_min_rtt's least sample."""

    srtt_us: int = 0
    mdev_us: int = 0
    mdev_max_us: int = 0
    rttvar_us: int = 0
    rtt_seq: TcpSeq = TcpSeq()
    rtt_min_us: int = 0

    def tcp_rtt_estimator(self, mrtt_us: int, snd_una: TcpSeq, snd_nxt: TcpSeq) -> None:
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
            if self.rtt_seq < snd_una:
                if self.mdev_max_us < self.rttvar_us:
                    self.rttvar_us -= (self.rttvar_us - self.mdev_max_us) >> 2
                self.rtt_seq = snd_nxt
                self.mdev_max_us = rto_min_us
        else:
            srtt = m << 3
            self.mdev_us = m << 1
            self.rttvar_us = max(self.mdev_us, rto_min_us)
            self.mdev_max_us = self.rttvar_us
            self.rtt_seq = snd_nxt
        self.srtt_us = max(1, srtt)

    def tcp_set_rto(self) -> int:
        """The RTO tcp_set_rto() sets (__tcp_set_rto, tcp_bound_rto): srtt/8 + rttvar,
        rounded up to jiffies, at most TCP_RTO_MAX."""
        return min(usecs_to_jiffies_ns((self.srtt_us >> 3) + self.rttvar_us), TCP_RTO_MAX)


class TcpInput:
    """TcpSock's net/ipv4/tcp_input.c."""

    # -- tcp_rcv_state_process -----------------------------------------------------------------
    def tcp_rcv_state_process(self, now: int, seg: TcpRepr, payload: bytes) -> list[OutSegment]:
        """tcp_rcv_state_process() for a segment already matched to this socket."""
        seg = tcp_v4_fill_cb(seg)
        if self.state is TcpState.SYN_SENT:
            self.tcp_rcv_synsent_state_process(now, seg)
            return self._flush()
        if self.state in (TcpState.CLOSED, TcpState.LISTEN):
            raise ModelUsageError(f"segment delivered to a {self.state.value} socket")
        unsure = [w for w in self.fw2_unsure if w[0] <= now <= w[1]]
        if unsure and self.state is TcpState.FIN_WAIT2:
            raise FinWait2Unsure(f"{self.name}: a segment at {now} ns, when the FIN_WAIT2 orphan changes (a "
                                 f"timewait sock, or gone) somewhere in {unsure[0][0]}..{unsure[0][1]} ns")
        if (self.state is TcpState.FIN_WAIT2 and self.timewait_sock) or self.state is TcpState.TIME_WAIT:
            self.tcp_timewait_state_process(now, seg, payload)
            return self._flush()
        seg_len = len(payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        end_seq = seg.seq + seg_len
        # RFC 793 p.69 first: is the segment in the receive window? (tcp_sequence)
        rwin_end = self.rcv_nxt + max(self.rcv_wup + self.rcv_wnd - self.rcv_nxt, 0)
        if end_seq < self.rcv_wup or rwin_end < seg.seq:
            if not seg.flags & RST:
                if self.sack_ok and seg.seq < self.rcv_nxt and seg_len:
                    self.dsack = (seg.seq, end_seq)
                self.tcp_send_ack(now, "dupack-out-of-window")   # tcp_send_dupack()
            return self._flush()
        # second: RST (RFC 5961 3.2: exact match resets, in-window gets a challenge ACK)
        if seg.flags & RST:
            if seg.seq == self.rcv_nxt:
                self.tcp_done(now, "EPIPE" if self.state is TcpState.CLOSE_WAIT else "ECONNRESET")
            else:
                self.tcp_send_ack(now, "challenge-ack-rst")
            return self._flush()
        # fourth: SYN in the window (RFC 5961 4.2): challenge ACK
        if seg.flags & SYN:
            self.tcp_send_ack(now, "challenge-ack-syn")
            return self._flush()
        # fifth: no ACK, no processing
        if not seg.flags & ACK:
            return self._flush()
        # tcp_ack(): an ACK of data never sent (after snd_nxt) is dropped before any of it
        # is taken, ts_recent included (SKB_DROP_REASON_TCP_ACK_UNSENT_DATA); in ESTABLISHED
        # tcp_rcv_established discards it silently, in the other states
        # tcp_rcv_state_process answers with tcp_send_challenge_ack.
        if self.snd_nxt < seg.ack:
            if self.state is not TcpState.ESTABLISHED:
                self.tcp_send_ack(now, "challenge-ack-unsent-data")
                # An accepted connection's daemon, which the model does not play, may have
                # written or closed (httpd's FIN after the peer's): then the ACK is in
                # order and the board answers nothing. Only some boards send this one.
                self._mark_optional(self.passive)
            return self._flush()
        if self.ts_ok and seg.timestamp and seg.seq <= self.rcv_nxt:
            self.ts_recent = TcpSeq(seg.timestamp[0])   # tcp_store_ts_recent()
            self.ts_recent_at = now
        if not self.tcp_ack(now, seg, seg_len):
            return self._flush()
        st = self.state
        if st is TcpState.SYN_RECV:
            self.tcp_set_state(now, TcpState.ESTABLISHED)
        elif st is TcpState.FIN_WAIT1 and self._fin_acked():
            self.tcp_set_state(now, TcpState.FIN_WAIT2)
            self.sk_dst_confirm()   # tcp_rcv_state_process, TCP_FIN_WAIT1
            if self.orphan:
                # tcp_rcv_state_process: an orphan waits tcp_fin_time in FIN_WAIT2: longer than
                # TCP_TIMEWAIT_LEN as itself on the keepalive timer first; with the FIN in this
                # segment as itself (tcp_fin takes it to TIME_WAIT); else as a FIN_WAIT2
                # timewait sock (tcp_time_wait)
                tmo = self.tcp_fin_time()
                if tmo > TCP_TIMEWAIT_LEN:
                    self.timers[TimerKind.FIN_WAIT2] = now + tmo - TCP_TIMEWAIT_LEN
                elif seg.flags & FIN:
                    self.timers[TimerKind.FIN_WAIT2] = now + tmo
                else:
                    self._fin_wait2_timewait(now, tmo)
        elif st is TcpState.CLOSING and self._fin_acked():
            self.tcp_time_wait(now)
            return self._flush()
        elif st is TcpState.LAST_ACK and self._fin_acked():
            self.tcp_done(now, None)
            return self._flush()
        if payload or seg.flags & FIN:
            if self.state in (TcpState.ESTABLISHED, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2):
                self.tcp_data_queue(now, seg, payload)
        self.tcp_write_xmit(now)
        self.tcp_ack_snd_check(now)
        return self._flush()

    def _fin_acked(self) -> bool:
        return not self.rtx_queue and not self.write_queue and not self.fin_queued and self.snd_una == self.snd_nxt

    def tcp_rcv_synsent_state_process(self, now: int, seg: TcpRepr) -> None:
        """tcp_rcv_synsent_state_process()."""
        if seg.flags & ACK:
            if seg.ack != self.snd_nxt:
                # "Previous FIN/ACK or RST/ACK might be ignored": before the first
                # retransmission the SYN goes again at TCP_TIMEOUT_MIN (2 jiffies), not the RTO
                if self.retransmits == 0:
                    self.timers[TimerKind.RETRANSMIT] = now + TCP_TIMEOUT_MIN
                if not seg.flags & RST:
                    self._tx.append(tcp_v4_send_reset(self.local, self.remote, seg, 0, "rst-bad-ack"))
                return
            if seg.flags & RST:
                self.tcp_done(now, "ECONNREFUSED")   # tcp_reset() in SYN_SENT
                return
            if not seg.flags & SYN:
                return
            self.irs = seg.seq
            self.rcv_nxt = seg.seq + 1
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
                self.ts_recent, self.ts_recent_at = TcpSeq(tsopt[0]), now
            self.sack_ok = self.sack_ok and seg.sack_permitted
            self.peer_mss = seg.mss or TCP_MSS_DEFAULT
            self.tcp_sync_mss()
            # tcp_try_undo_spurious_syn, before tcp_ack: a SYN-ACK echoing the first SYN's
            # TSval shows the SYN's timeouts were spurious (retrans_stamp: the first SYN's clock)
            spurious = self.ts_ok and bool(tsopt[1]) and self.retrans_stamp is not None \
                and tsopt[1] == self._tsval(self.retrans_stamp)
            if self._ack_rtx_queue(now, seg):
                self.sk_dst_confirm()   # tcp_ack: FLAG_SYN_ACKED is forward progress
            self.rcv_tstamp = now
            self.tcp_set_state(now, TcpState.ESTABLISHED)
            self.tcp_init_transfer(now, undo_marker=self.total_retrans > 0 and not spurious)
            self.icsk_ack.lrcvtime = now
            self.tcp_send_ack(now, "handshake-ack")
            self.tcp_write_xmit(now)
            return
        if seg.flags & RST:
            return
        if seg.flags & SYN:
            # Simultaneous open (RFC 793 p.68): SYN_RECV, answer with SYN-ACK.
            self.irs = seg.seq
            self.rcv_nxt = seg.seq + 1
            self.tcp_set_state(now, TcpState.SYN_RECV)
            self.tcp_transmit_skb(now, SYN, self.iss, b"", "simultaneous-open-synack")

    def _ack_rtx_queue(self, now: int, seg: TcpRepr) -> bool:
        """tcp_ack in SYN_SENT (tcp_rcv_synsent_state_process): the SYN-ACK's ACK takes
        the SYN off the queue; True if it did (FLAG_SYN_ACKED)."""
        prior_snd_una, self.snd_una = self.snd_una, seg.ack
        self._last_ecr = None
        flag, _ = self.tcp_clean_rtx_queue(now, seg, prior_snd_una, None)
        if flag & FLAG_SET_XMIT_TIMER and not self.tcp_schedule_loss_probe(now, True):
            self.tcp_rearm_rto(now)
        return bool(flag & FLAG_ACKED)

    def tcp_init_transfer(self, now: int, undo_marker: bool = False) -> None:
        """tcp_init_transfer()/tcp_init_metrics(): no RTT sample from the handshake means
        RFC 6298 5.7's 3 s fallback RTO. tcp_init_metrics() begins with sk_dst_confirm():
        an accepted connection's first segment (its ACK or data after the third ACK)
        confirms the neighbour, as the handshake ACK does on a connect. cwnd starts at 1
        after more than one SYN or SYN-ACK retransmission that was not spurious
        ("total_retrans > 1 && undo_marker", RFC 5681), else at TCP_INIT_CWND (seen on a
        Linux host: cwnd 1 after a connect whose SYNs were lost while its link was down)."""
        self.cwnd = 1 if self.total_retrans > 1 and undo_marker else TCP_INIT_CWND
        self.sk_dst_confirm()
        if self.rtt.srtt_us == 0:
            self.rtt.rttvar_us = self.rtt.mdev_us = self.rtt.mdev_max_us = TCP_TIMEOUT_FALLBACK // 1000
            self.rto = TCP_TIMEOUT_FALLBACK
        self.backoff = 0
        self.retransmits = 0
        self.retrans_stamp = None
        if self.keepalive:
            self.timers[TimerKind.KEEPALIVE] = now + self.params.keepalive_time

    # -- tcp_ack -------------------------------------------------------------------------------
    def tcp_ack(self, now: int, seg: TcpRepr, seg_len: int = 0) -> bool:
        """tcp_ack(): advance snd_una, take SACK blocks onto the scoreboard, clean the
        retransmit queue, sample the RTT, update the peer's window, run loss recovery
        (tcp_fastretrans_alert), grow or reduce cwnd (tcp_cong_control) and retransmit what
        is lost (tcp_xmit_recovery); False = drop.

        With data out (prior_packets), an ACK that acknowledges some of it
        (FLAG_FORWARD_PROGRESS) or a pure duplicate (no data, no window update, nothing
        acked: !FLAG_NOT_DUP) says the peer hears us: sk_dst_confirm(). An old ACK (before
        snd_una) and one with nothing out (the no_queue path) confirm nothing. `seg_len`:
        the sequence space the segment occupies (FLAG_DATA)."""
        if seg.ack < self.snd_una:
            return True   # old duplicate ACK: ignore the ACK field, keep the data
        prior_snd_una = self.snd_una
        prior_packets = len(self.rtx_queue)
        prior_fack = self.tcp_highest_sack_seq()
        prior_lost = self.lost_total
        self._sack_delivered = self._reno_delivered = 0
        self._last_ecr = TcpSeq(seg.timestamp[1]) if self.ts_ok and seg.timestamp and seg.timestamp[1] else None
        flag = FLAG_SND_UNA_ADVANCED if self.snd_una < seg.ack else 0
        if seg_len:
            flag |= FLAG_DATA
        window = seg.window << self.snd_wscale
        # tcp_ack_update_window(): tcp_may_update_window, then a larger window than any
        # before re-bounds the MSS
        if self.snd_una < seg.ack or self.snd_wl1 < seg.seq or \
                (seg.seq == self.snd_wl1 and (window > self.snd_wnd or not window)):
            flag |= FLAG_WIN_UPDATE
            self.snd_wnd = window
            self.snd_wl1 = seg.seq
            if window > self.max_window:
                self.max_window = window
                self.tcp_sync_mss(initial=False)
        self.snd_una = seg.ack           # tcp_snd_una_update
        sackt: tuple[int, int] | None = None
        if self.sack_ok and seg.sack_blocks:
            sack_flag, sackt = self.tcp_sacktag_write_queue(now, seg, prior_snd_una)
            flag |= sack_flag
        self.rcv_tstamp = now
        self.probes_out = 0
        if not prior_packets:
            if self.write_queue and TimerKind.PROBE0 in self.timers:
                # tcp_ack_probe: the window now takes the send head: no more probes (the
                # data goes in tcp_data_snd_check); else the probe timer again, at the same
                # backoff
                head_end = self.snd_nxt + min(self.mss_cache, len(self.write_queue))
                if head_end <= self.snd_una + self.snd_wnd:
                    self.backoff = 0
                    self.probes_tstamp = None
                    self.timers.pop(TimerKind.PROBE0, None)
                else:
                    when = self.tcp_clamp_probe0_to_user_timeout(now, self.tcp_probe0_when())
                    self.timers[TimerKind.PROBE0] = now + when
            if self.tlp.high_seq is not None:
                self.tcp_process_tlp_ack(seg.ack, flag)
            return True
        acked_flag, delivered = self.tcp_clean_rtx_queue(now, seg, prior_fack, sackt)
        flag |= acked_flag
        delivered += self._sack_delivered
        if self.tlp.high_seq is not None:
            self.tcp_process_tlp_ack(seg.ack, flag)
        rexmit = False
        if not flag & FLAG_NOT_DUP or flag & FLAG_CA_ALERT or self.ca_state != TCP_CA_OPEN:
            num_dupack = 0 if flag & (FLAG_SND_UNA_ADVANCED | FLAG_NOT_DUP | FLAG_DSACKING_ACK) else 1
            flag, rexmit = self.tcp_fastretrans_alert(now, num_dupack, flag)
        if flag & FLAG_SET_XMIT_TIMER:
            if not self.tcp_schedule_loss_probe(now, True):   # tcp_set_xmit_timer()
                self.tcp_rearm_rto(now)
        if flag & FLAG_FORWARD_PROGRESS or not flag & FLAG_NOT_DUP:
            self.sk_dst_confirm()
        if not self.sack_ok:
            delivered += self._reno_delivered   # tcp_add_reno_sack's tcp_count_delivered
        self.tcp_cong_control(now, flag, delivered, self.lost_total - prior_lost)
        if rexmit:
            # tcp_xmit_recovery(): REXMIT_NEW (F-RTO) pushes new data, Nagle off, and only
            # if none went past high_seq resends what is lost
            if self._rexmit_new:
                self._rexmit_new = False
                nxt = self.snd_nxt
                self.tcp_write_xmit(now, nagle_off=True)
                if self.snd_nxt != nxt and self.high_seq < self.snd_nxt:
                    return True
                self.frto = False
            self.tcp_xmit_retransmit_queue(now)
        return True

    def tcp_rearm_rto(self, now: int) -> None:
        """tcp_rearm_rto(): the RTO from now, or, if a probe (or RACK) timer is what is
        pending, what is left of the RTO since the head's last transmission."""
        if not self.rtx_queue:
            self.timers.pop(TimerKind.RETRANSMIT, None)
            self.tlp.pending = self.reo_pending = False
            return
        rto = self.rto
        if self.tlp.pending or self.reo_pending:
            delta_us = (self.rtx_queue[0].tx_at + self.rto - now) // 1000   # tcp_rto_delta_us()
            rto = usecs_to_jiffies_ns(max(delta_us, 1))
        self.timers[TimerKind.RETRANSMIT] = now + min(rto, TCP_RTO_MAX)
        self.tlp.pending = self.reo_pending = False

    # -- the scoreboard (tcp_sacktag_write_queue, tcp_clean_rtx_queue) -------------------------
    def tcp_any_retrans_done(self) -> bool:
        """tcp_any_retrans_done(): a retransmission out, or the head ever retransmitted."""
        return bool(self.retrans_out) or bool(self.rtx_queue and self.rtx_queue[0].retransmitted)

    def tcp_sacktag_write_queue(self, now: int, seg: TcpRepr, prior_snd_una: int) -> tuple[int, tuple[int, int] | None]:
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
        blocks = [(TcpSeq(start), TcpSeq(end)) for start, end in seg.sack_blocks]
        for i, (start, end) in enumerate(blocks):
            if i == 0 and (start < seg.ack or (len(blocks) > 1 and blocks[1][0] <= start and end <= blocks[1][1])):
                flag |= FLAG_DSACKING_ACK
                continue
            # tcp_is_sackblock_valid
            if self.snd_nxt < end or not start < end or start < prior_snd_una:
                continue
            for skb in self.rtx_queue:
                if skb.sacked or not (start <= skb.seq and skb.end_seq <= end):
                    continue
                if not self.snd_una < skb.end_seq:
                    continue          # acked by this ACK: about to go
                self.tcp_rack_advance(now, skb)
                if skb.rtx_out:
                    if skb.lost:
                        skb.lost = skb.rtx_out = False
                else:
                    if not skb.retransmitted:
                        if skb.seq < self.tcp_highest_sack_seq() and skb.seq < reord:
                            reord = skb.seq
                        if skb.end_seq <= self.high_seq:
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
                self.tcp_fragment(i)
        if reord != self.snd_nxt:
            self.tcp_check_sack_reordering(reord)
        return flag, (None if first_sackt is None else (first_sackt, last_sackt))

    def tcp_check_sack_reordering(self, low_seq: int) -> None:
        """tcp_check_sack_reordering(): a hole filled below the highest SACK is reordering
        of that many segments (at most tcp_max_reordering)."""
        fack = self.tcp_highest_sack_seq()
        if not low_seq < fack:
            return
        metric = fack - low_seq
        mss = self.mss_cache
        if metric > self.reordering * mss:
            self.reordering = min((metric + mss - 1) // mss, TCP_MAX_REORDERING)
        self.reord_seen += 1

    def tcp_clean_rtx_queue(self, now: int, seg: TcpRepr, prior_fack: int,
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
        while self.rtx_queue and self.rtx_queue[0].end_seq <= seg.ack:
            skb = self.rtx_queue.pop(0)
            pkts_acked += 1
            if skb.retransmitted or skb.rtx_out:
                flag |= FLAG_RETRANS_DATA_ACKED
            elif not skb.sacked:
                if first_ackt is None:
                    first_ackt = skb.tx_at
                last_ackt = skb.tx_at
                if skb.seq < reord:
                    reord = skb.seq
                if skb.end_seq <= self.high_seq:
                    flag |= FLAG_ORIG_SACK_ACKED
            if not skb.sacked and self.sack_ok:
                delivered += 1
                if not self.tcp_skb_spurious_retrans(seg, skb):
                    self.tcp_rack_advance(now, skb)
            if skb.flags & SYN:
                flag |= FLAG_SYN_ACKED
                self.retrans_stamp = None
            else:
                flag |= FLAG_DATA_ACKED
        if not self.sack_ok and pkts_acked:
            delivered = self.tcp_remove_reno_sacks(pkts_acked)
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
            delta = self._tsval(now) - TcpSeq(seg.timestamp[1])
            if delta < 0x7FFFFFFF // 1000:
                rtt_us = ca_rtt_us = max(delta, 1) * 1000
        self.ca.acked(ca_rtt_us, now // JIFFY)
        if rtt_us >= 0:
            self.rtt.tcp_rtt_estimator(max(rtt_us, 1), self.snd_una, self.snd_nxt)
            self.rto = self.rtt.tcp_set_rto()
            self.backoff = 0
        if flag & FLAG_ACKED:
            flag |= FLAG_SET_XMIT_TIMER
            self.backoff = 0
            self.retransmits = 0
            if self.sack_ok and reord < prior_fack:
                self.tcp_check_sack_reordering(reord)
            if not self.rtx_queue:
                self.timers.pop(TimerKind.RETRANSMIT, None)
                self.tlp.pending = self.reo_pending = False
                flag &= ~FLAG_SET_XMIT_TIMER
        elif self.rtx_queue and rtt_us >= 0 and sackt is not None and sackt[0] < self.rtx_queue[0].tx_at:
            flag |= FLAG_SET_XMIT_TIMER
        return flag, delivered

    def tcp_skb_spurious_retrans(self, seg: TcpRepr, skb: TxSkb) -> bool:
        """tcp_skb_spurious_retrans(): a retransmitted segment acked by an echo older than
        its last transmission: the original was acked."""
        return (skb.retransmitted or skb.rtx_out) and self.tcp_tsopt_ecr_before(seg, skb.tx_at)

    def tcp_tsopt_ecr_before(self, seg: TcpRepr, when: int) -> bool:
        """tcp_tsopt_ecr_before(): the peer's TS echo is older than our clock at `when`."""
        return bool(self.ts_ok and seg.timestamp and seg.timestamp[1]) and \
            TcpSeq(seg.timestamp[1]) < self._tsval(when)

    def tcp_remove_reno_sacks(self, acked: int) -> int:
        """tcp_remove_reno_sacks(): one ACK fills the hole, the rest eat duplicate ACKs;
        returns the newly delivered count (tcp_count_delivered)."""
        delivered = max(acked - self.reno_sacked, 1)
        self.reno_sacked = 0 if acked - 1 >= self.reno_sacked else self.reno_sacked - (acked - 1)
        self.tcp_check_reno_reordering(acked)
        return delivered

    def tcp_add_reno_sack(self, num_dupack: int) -> None:
        """tcp_add_reno_sack(): a duplicate ACK from a non-SACK peer counts as a SACKed
        segment (so one new segment may go: RFC 3042's limited transmit falls out of
        tcp_packets_in_flight)."""
        if num_dupack:
            prior = self.reno_sacked
            self.reno_sacked += num_dupack
            self.tcp_check_reno_reordering(0)
            self._reno_delivered += max(self.reno_sacked - prior, 0)

    def tcp_check_reno_reordering(self, addend: int) -> None:
        """tcp_check_reno_reordering() / tcp_limit_reno_sacked(): more duplicate ACKs than
        segments out less the holes is reordering."""
        holes = min(max(self.lost_out, 1), len(self.rtx_queue))
        if self.reno_sacked + holes > len(self.rtx_queue):
            self.reno_sacked = len(self.rtx_queue) - holes
            self.reordering = min(len(self.rtx_queue) + addend, TCP_MAX_REORDERING)
            self.reord_seen += 1

    # -- loss recovery (tcp_fastretrans_alert) -------------------------------------------------
    def tcp_fastretrans_alert(self, now: int, num_dupack: int, flag: int) -> tuple[int, bool]:
        """tcp_fastretrans_alert(): the congestion state machine for a dubious ACK; returns
        the flags and whether lost segments are to be retransmitted (REXMIT_LOST). After an
        RTO (CA_Loss) the model keeps its own path: F-RTO (tcp_process_loss) and the
        retransmission of the rest of the window are not modelled."""
        if not self.rtx_queue and self.reno_sacked:
            self.reno_sacked = 0
        if self.ca_state == TCP_CA_OPEN:
            self.retrans_stamp = None
        if self.ca_state == TCP_CA_LOSS:
            rexmit, self._rexmit_new = self.tcp_process_loss(flag, num_dupack)
            flag = self.tcp_identify_packet_loss(now, flag)
            if not (self.ca_state == TCP_CA_OPEN or flag & FLAG_LOST_RETRANS):
                return flag, rexmit
            self._rexmit_new = False
            return self._fastretrans_open(now, num_dupack, flag)
        if self.ca_state != TCP_CA_OPEN and not self.snd_una < self.high_seq:
            if self.ca_state == TCP_CA_CWR:
                if self.snd_una != self.high_seq:
                    self.tcp_end_cwnd_reduction()
                    self.ca_state = TCP_CA_OPEN
            elif self.ca_state == TCP_CA_RECOVERY:
                if not self.sack_ok:
                    self.reno_sacked = 0
                if self.tcp_try_undo_recovery():
                    return flag, False
                self.tcp_end_cwnd_reduction()
        if self.ca_state == TCP_CA_RECOVERY:
            if not flag & FLAG_SND_UNA_ADVANCED:
                if not self.sack_ok:
                    self.tcp_add_reno_sack(num_dupack)
            elif self.tcp_try_undo_partial():
                return flag, False
            flag = self.tcp_identify_packet_loss(now, flag)
            return flag, True
        return self._fastretrans_open(now, num_dupack, flag)

    def _fastretrans_open(self, now: int, num_dupack: int, flag: int) -> tuple[int, bool]:
        """tcp_fastretrans_alert()'s default case (Open, Disorder, CWR, and CA_Loss once
        undone or its retransmissions lost): count a non-SACK peer's duplicates, find
        losses, then stay (tcp_try_to_open) or enter Recovery."""
        if not self.sack_ok:
            if flag & FLAG_SND_UNA_ADVANCED:
                self.reno_sacked = 0
            self.tcp_add_reno_sack(num_dupack)
        flag = self.tcp_identify_packet_loss(now, flag)
        if not self.lost_out:          # tcp_time_to_recover (RACK: only a proven loss)
            self.tcp_try_to_open()
            return flag, False
        self.tcp_enter_recovery()
        return flag, True

    def tcp_identify_packet_loss(self, now: int, flag: int) -> int:
        """tcp_identify_packet_loss(): NewReno marks the head lost (RFC 6582), RACK marks
        what was sent before a delivered segment, by more than its RTT and the reordering
        window."""
        if not self.rtx_queue:
            return flag
        if not self.sack_ok:
            if (self.ca_state < TCP_CA_RECOVERY and self.reno_sacked >= self.reordering) or \
                    (self.ca_state == TCP_CA_RECOVERY and flag & FLAG_SND_UNA_ADVANCED):
                if not self.rtx_queue[0].lost:            # tcp_newreno_mark_lost: the head, one MSS
                    self.tcp_fragment(1)
                    self.tcp_mark_skb_lost(self.rtx_queue[0])
        else:
            prior_retrans = self.retrans_out
            if self.tcp_rack_mark_lost(now):
                flag &= ~FLAG_SET_XMIT_TIMER
            if prior_retrans > self.retrans_out:
                flag |= FLAG_LOST_RETRANS
        return flag

    def tcp_mark_skb_lost(self, skb: TxSkb) -> None:
        """tcp_mark_skb_lost(): a SACKed segment is never lost; a lost retransmission is no
        longer out."""
        if skb.sacked:
            return
        if skb.lost:
            skb.rtx_out = False
        else:
            skb.lost = True
            self.lost_total += 1

    def tcp_try_to_open(self) -> None:
        """tcp_try_to_open() -> tcp_try_keep_open(): Disorder while anything is SACKed,
        lost or retransmitted, else Open; high_seq moves with the state."""
        if not self.tcp_any_retrans_done():
            self.retrans_stamp = None
        if self.ca_state != TCP_CA_CWR:
            self.tcp_try_keep_open()

    def tcp_try_keep_open(self) -> None:
        state = TCP_CA_DISORDER if (self.sacked_out or self.lost_out or self.tcp_any_retrans_done()) else TCP_CA_OPEN
        if self.ca_state != state:
            self.ca_state = state
            self.high_seq = self.snd_nxt

    def tcp_enter_recovery(self) -> None:
        """tcp_enter_recovery(): the undo marker, prior_ssthresh, then a cwnd reduction
        (unless one runs): CUBIC's ssthresh, PRR from here."""
        if not self.tcp_any_retrans_done():
            self.retrans_stamp = None
        self.prior_ssthresh = 0
        self.undo_marker = self.snd_una                        # tcp_init_undo
        self.undo_retrans = self.retrans_out or -1
        if self.ca_state not in (TCP_CA_CWR, TCP_CA_RECOVERY):
            self.prior_ssthresh = max(self.ssthresh, (self.cwnd >> 1) + (self.cwnd >> 2))   # tcp_current_ssthresh
            self.tcp_init_cwnd_reduction()
        self.ca_state = TCP_CA_RECOVERY

    def tcp_init_cwnd_reduction(self) -> None:
        """tcp_init_cwnd_reduction(): high_seq, prior_cwnd and PRR's counts; ssthresh from
        CUBIC (cubictcp_recalc_ssthresh: cwnd * 717 / 1024, at least 2)."""
        self.high_seq = self.snd_nxt
        self.tlp.high_seq = None
        self.prior_cwnd = self.cwnd
        self.prr_delivered = self.prr_out = 0
        self.ssthresh = self.ca.recalc_ssthresh(self.cwnd)
        self.snd_cwnd_cnt = 0

    def tcp_end_cwnd_reduction(self) -> None:
        """tcp_end_cwnd_reduction(): cwnd to ssthresh (in CWR, or a reduction not undone)."""
        if self.ssthresh < TCP_INFINITE_SSTHRESH and (self.ca_state == TCP_CA_CWR or self.undo_marker is not None):
            self.cwnd = self.ssthresh

    def tcp_cwnd_reduction(self, newly_acked_sacked: int, newly_lost: int, flag: int) -> None:
        """tcp_cwnd_reduction(): Proportional Rate Reduction (RFC 6937)."""
        if newly_acked_sacked <= 0 or not self.prior_cwnd:
            return
        in_flight = self.tcp_packets_in_flight()
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

    def tcp_cong_control(self, now: int, flag: int, acked_sacked: int, newly_lost: int) -> None:
        """tcp_cong_control(): PRR in CWR and Recovery; else, on data acked in order,
        cubictcp_cong_avoid(): only while cwnd is what limits the sender
        (tcp_is_cwnd_limited), slow start up to ssthresh (tcp_slow_start), then the cubic
        function's count (bictcp_update) paced out by tcp_cong_avoid_ai."""
        if self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY):
            self.tcp_cwnd_reduction(acked_sacked, newly_lost, flag)
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

    def tcp_try_undo_recovery(self) -> bool:
        """tcp_try_undo_recovery(): at the end of Recovery, undo if nothing needed
        resending; a non-SACK connection holds Recovery until above high_seq is acked
        (tcp_is_non_sack_preventing_reopen)."""
        if self.tcp_may_undo():
            self.tcp_undo_cwnd_reduction(False)
        if not self.sack_ok and self.snd_una == self.high_seq:
            if not self.tcp_any_retrans_done():
                self.retrans_stamp = None
            return True
        self.ca_state = TCP_CA_OPEN
        return False

    def tcp_try_undo_partial(self) -> bool:
        """tcp_try_undo_partial(): a partial ACK echoing a time before the retransmission
        means the hole was only delayed: undo if no retransmission is out."""
        if self.undo_marker is not None and self.tcp_packet_delayed():
            if self.retrans_out:
                return True
            if not self.tcp_any_retrans_done():
                self.retrans_stamp = None
            self.tcp_undo_cwnd_reduction(True)
            self.tcp_try_keep_open()
        return False

    def tcp_may_undo(self) -> bool:
        return self.undo_marker is not None and (self.undo_retrans <= 0 or self.tcp_packet_delayed())

    def tcp_packet_delayed(self) -> bool:
        """tcp_packet_delayed(): the echo is older than the first retransmission."""
        if self.retrans_stamp is not None:
            return self._last_ecr is not None and self._last_ecr < self._tsval(self.retrans_stamp)
        if not self.sack_ok and not self.snd_una < self.high_seq:
            return False
        return True

    def tcp_undo_cwnd_reduction(self, unmark_loss: bool) -> None:
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

    def tcp_process_tlp_ack(self, ack: int, flag: int) -> None:
        """tcp_process_tlp_ack(): an ACK at or past the probe ends its episode; one past a
        retransmitted probe shows a loss: a CWR reduction (cwnd to CUBIC's ssthresh)."""
        if ack < self.tlp.high_seq:
            return
        if not self.tlp.retrans:
            self.tlp.high_seq = None
        elif flag & FLAG_DSACKING_ACK:
            self.tlp.high_seq = None
        elif self.tlp.high_seq < ack:
            self.tcp_init_cwnd_reduction()
            self.ca_state = TCP_CA_CWR
            self.tcp_end_cwnd_reduction()
            self.tcp_try_keep_open()
        elif not flag & (FLAG_SND_UNA_ADVANCED | FLAG_NOT_DUP | FLAG_DATA_SACKED):
            self.tlp.high_seq = None

    # -- after an RTO: tcp_enter_loss, tcp_process_loss (F-RTO) --------------------------------
    def tcp_enter_loss(self, now: int) -> None:
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
            self.tcp_mark_skb_lost(skb)
        if self.ca_state <= TCP_CA_DISORDER or not self.snd_una < self.high_seq \
                or (self.ca_state == TCP_CA_LOSS and not self.retransmits):
            self.prior_ssthresh = self.ssthresh if self.ca_state in (TCP_CA_CWR, TCP_CA_RECOVERY) else \
                max(self.ssthresh, (self.cwnd >> 1) + (self.cwnd >> 2))   # tcp_current_ssthresh
            self.prior_cwnd = self.cwnd
            self.ssthresh = self.ca.recalc_ssthresh(self.cwnd)
            self.undo_marker = self.snd_una                          # tcp_init_undo
            self.undo_retrans = self.retrans_out or -1
        self.cwnd = self.tcp_packets_in_flight() + 1
        self.snd_cwnd_cnt = 0
        if self.ca_state <= TCP_CA_DISORDER and self.sacked_out >= TCP_FASTRETRANS_THRESH:
            self.reordering = min(self.reordering, TCP_FASTRETRANS_THRESH)
        self.ca_state = TCP_CA_LOSS
        self.ca.reset()                                              # cubictcp_state(TCP_CA_Loss)
        self.high_seq = self.snd_nxt
        self.tlp.high_seq = None
        self.frto = new_recovery or bool(self.retransmits)

    def tcp_process_loss(self, flag: int, num_dupack: int) -> tuple[bool, bool]:
        """tcp_process_loss(): CA_Loss on an ACK. Undo if the echo shows the timeout was
        spurious; F-RTO (RFC 5682): the first ACK that advances sends new data rather than
        retransmissions (REXMIT_NEW), and never-retransmitted data acked or SACKed then
        undoes; past high_seq the loss is over. Returns (rexmit, rexmit_new)."""
        recovered = not self.snd_una < self.high_seq
        if flag & FLAG_SND_UNA_ADVANCED and self.tcp_try_undo_loss(False):
            return False, False
        if self.frto:
            if flag & FLAG_ORIG_SACK_ACKED and self.tcp_try_undo_loss(True):
                return False, False
            if self.high_seq < self.snd_nxt:
                if flag & FLAG_DATA_SACKED or num_dupack:
                    self.frto = False                 # step 3.a: the loss was real
            elif flag & FLAG_SND_UNA_ADVANCED and not recovered:
                self.high_seq = self.snd_nxt
                if self.write_queue and self.snd_nxt < self.snd_una + self.snd_wnd:
                    return True, True                 # step 2.b: try new data
                self.frto = False
        if recovered:
            self.tcp_try_undo_recovery()
            return False, False
        if not self.sack_ok:
            if self.high_seq < self.snd_nxt and num_dupack:
                self.tcp_add_reno_sack(num_dupack)
            elif flag & FLAG_SND_UNA_ADVANCED:
                self.reno_sacked = 0
        return True, False

    def tcp_try_undo_loss(self, frto_undo: bool) -> bool:
        """tcp_try_undo_loss(): undo the timeout's reduction and its loss marks."""
        if not (frto_undo or self.tcp_may_undo()):
            return False
        self.tcp_undo_cwnd_reduction(True)
        self.retransmits = 0
        if not self.sack_ok and self.snd_una == self.high_seq:   # tcp_is_non_sack_preventing_reopen
            if not self.tcp_any_retrans_done():
                self.retrans_stamp = None
            return True
        if frto_undo or self.sack_ok:
            self.ca_state = TCP_CA_OPEN
        return True

    # -- data (tcp_data_queue) and the delayed-ACK decision ------------------------------------
    def tcp_data_queue(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_data_queue(): in-order data to the reader, out-of-order to the ofo queue."""
        fin = bool(seg.flags & FIN)
        end_seq = seg.seq + len(payload) + fin
        if seg.seq == self.rcv_nxt:
            if payload:
                self.tcp_event_data_recv(now, len(payload))
            self.rcv_buf += payload
            self.rcv_nxt = end_seq
            if fin:
                self.tcp_fin(now)
            self.tcp_ofo_queue(now)
            if self.ofo:
                self.tcp_send_ack(now, "ack-ofo-hole")
        elif end_seq <= self.rcv_nxt:
            if self.sack_ok:
                self.dsack = (seg.seq, end_seq)
            self.tcp_send_ack(now, "dupack-old-data")    # tcp_send_dupack(): D-SACK
        elif self.rcv_nxt < seg.seq:
            self.ofo.append((seg.seq, payload, fin))
            self.ofo.sort(key=lambda item: item[0] - self.rcv_nxt)
            self.tcp_send_ack(now, "dupack-ofo")          # tcp_data_queue_ofo: immediate ACK
        else:
            # partial overlap: keep the new part
            skip = self.rcv_nxt - seg.seq
            trimmed = TcpRepr(seg.src_port, seg.dst_port, self.rcv_nxt, seg.ack, seg.flags, seg.window, seg.options)
            self.tcp_data_queue(now, trimmed, payload[skip:])

    def tcp_ofo_queue(self, now: int) -> None:
        while self.ofo and self.ofo[0][0] <= self.rcv_nxt:
            seq, data, fin = self.ofo.pop(0)
            skip = self.rcv_nxt - seq
            if skip <= len(data):
                self.rcv_buf += data[skip:]
                self.rcv_nxt = seq + len(data) + fin
                if fin:
                    self.tcp_fin(now)

    def tcp_event_data_recv(self, now: int, length: int) -> None:
        """tcp_event_data_recv(): quickack at the start, then the ato estimate."""
        ack = self.icsk_ack
        ack.rcv_mss = max(min(length, self.advmss), ack.rcv_mss) if length >= ack.rcv_mss else ack.rcv_mss
        if not ack.ato:
            self.tcp_incr_quickack()
            ack.ato = TCP_ATO_MIN
        else:
            m = now - ack.lrcvtime
            if m <= TCP_ATO_MIN // 2:
                ack.ato = (ack.ato >> 1) + TCP_ATO_MIN // 2
            elif m < ack.ato:
                ack.ato = (ack.ato >> 1) + m
                if ack.ato > self.rto:
                    ack.ato = self.rto
            elif m > self.rto:
                # "Too long gap. Apparently sender failed to restart window, so that we
                # send ACKs quickly."
                self.tcp_incr_quickack()
        ack.lrcvtime = now
        ack.pending = True

    def tcp_incr_quickack(self) -> None:
        """tcp_incr_quickack(TCP_MAX_QUICKACKS): half the window in full segments (at least 2)."""
        quick = self.rcv_wnd // (2 * self.icsk_ack.rcv_mss) or 2
        self.icsk_ack.quick = max(self.icsk_ack.quick, min(quick, TCP_MAX_QUICKACKS))

    def tcp_fin(self, now: int) -> None:
        """tcp_fin(): the peer closed its side."""
        self.fin_received = True
        self.icsk_ack.pending = True
        st = self.state
        if st is TcpState.ESTABLISHED:
            self.tcp_set_state(now, TcpState.CLOSE_WAIT)
            self.icsk_ack.pingpong = 1   # inet_csk_enter_pingpong_mode()
        elif st is TcpState.FIN_WAIT1:
            # simultaneous close: ACK now, CLOSING (tcp_send_ack in tcp_fin)
            self.tcp_set_state(now, TcpState.CLOSING)
            self.tcp_send_ack(now, "ack-fin")
        elif st is TcpState.FIN_WAIT2:
            self.tcp_send_ack(now, "ack-fin")
            self.tcp_time_wait(now)

    def tcp_ack_snd_check(self, now: int) -> None:
        """__tcp_ack_snd_check(): ACK now (two full segments unacked, quickack, ofo), or delay."""
        if not self.icsk_ack.pending or self.state in (TcpState.CLOSED, TcpState.TIME_WAIT):
            return
        quickack_mode = self.icsk_ack.quick and not self.icsk_ack.pingpong
        if self.rcv_nxt - self.rcv_wup > self.icsk_ack.rcv_mss or quickack_mode or self.ofo:
            self.tcp_send_ack(now, "ack-now")
            return
        self.tcp_send_delayed_ack(now)
