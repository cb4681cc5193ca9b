"""net/ipv4/tcp_minisocks.c: the timewait sock and the passive open's child. TIME_WAIT and
the FIN_WAIT2 orphan as a timewait sock (tcp_time_wait, tcp_timewait_state_process), the
child socket (tcp_create_openreq_child) and a request sock's segments (tcp_check_req).

`TcpMinisocks` holds methods of `models.tcp.TcpSock`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .clock import JIFFY, NSEC_PER_MSEC
from .errors import ModelError
from .tcp_h import (
    TCP_INVALID_RATELIMIT,
    TCP_PAWS_MSL,
    TCP_RTO_MAX,
    TCP_TIMEOUT_INIT,
    TCP_TIMEWAIT_LEN,
    OutSegment,
    RequestSock,
    TcpParams,
    TcpSeq,
    TcpState,
    TimerKind,
)
from .tcp_output import tcp_make_synack, tcp_v4_send_reset
from .wire.ipv4 import INET_ECN_MASK
from .wire.tcp import ACK, FIN, RST, SYN, TcpRepr

if TYPE_CHECKING:
    from .inet_connection_sock import Listener
    from .tcp import TcpSock

__all__ = ["TcpMinisocks", "FinWait2Unsure", "tcp_check_req"]


class FinWait2Unsure(ModelError):
    """A segment reached a FIN_WAIT2 orphan when, for all the model knows, it may or may
    not still be there (tcp_close came at an unobserved time within the application's
    latency): its answer (an ACK, or tcp_v4_send_reset's RST) cannot be told, so the
    model cannot judge the board from here."""


class TcpMinisocks:
    """TcpSock's net/ipv4/tcp_minisocks.c."""

    # -- the timewait sock ---------------------------------------------------------------------
    def tcp_timewait_state_process(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_timewait_state_process(): a segment for a timewait sock, by its substate
        (tw_substate): TCP_FIN_WAIT2 (an orphan's tcp_close made it one) or TCP_TIME_WAIT."""
        if self.state is TcpState.FIN_WAIT2:
            self._timewait_fin_wait2(now, seg, payload)
        else:
            self._timewait_time_wait(now, seg, payload)

    def _timewait_time_wait(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_timewait_state_process() in TCP_TIME_WAIT.

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
        tsval = TcpSeq(seg.timestamp[0]) if self.ts_ok and seg.timestamp else None
        paws_reject = tsval is not None and bool(self.ts_recent) and tsval < self.ts_recent \
            and not (seg.flags & RST and now - self.ts_recent_at >= TCP_PAWS_MSL)
        rst = bool(seg.flags & RST)
        if not paws_reject and seg.seq == self.rcv_nxt and (seg_len == 0 or rst):
            if rst:
                self.tcp_done(now, None)        # kill: inet_twsk_deschedule_put
                return
            self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN
            if tsval is not None:
                self.ts_recent, self.ts_recent_at = tsval, now
            return
        if seg.flags & SYN and not rst and not seg.flags & ACK and not paws_reject and (
                self.rcv_nxt < seg.seq or (tsval is not None and self.ts_recent < tsval)):
            # TCP_TW_SYN: the socket layer hands it to the listener (tw_syn_taken), or, with
            # none, ACKs it from here (tw_syn_refused)
            self.tw_syn_isn = (self.snd_nxt + 65535 + 2) or TcpSeq(1)
            return
        if rst:
            return
        if paws_reject or seg.flags & ACK:
            self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN
        last = self.tw_last_oow_ack
        if seg.seq == seg.seq + seg_len or seg.flags & SYN:
            if last is not None and 0 <= now - last < TCP_INVALID_RATELIMIT:
                return
            self.tw_last_oow_ack = now
        self.tcp_send_ack(now, "timewait-ack")

    def tw_syn_taken(self, now: int) -> None:
        """tcp_v4_rcv, TCP_TW_SYN with a listener: the timewait sock is gone."""
        self.tw_syn_isn = None
        self.tcp_done(now, None)               # inet_twsk_deschedule_put

    def tw_syn_refused(self, now: int) -> list[OutSegment]:
        """tcp_v4_rcv, TCP_TW_SYN with no listener: fall through to TCP_TW_ACK."""
        self.tw_syn_isn = None
        self.tcp_send_ack(now, "timewait-ack")
        return self._flush()

    def _timewait_fin_wait2(self, now: int, seg: TcpRepr, payload: bytes) -> None:
        """tcp_timewait_state_process() for a timewait sock in TCP_FIN_WAIT2 (an orphan
        tcp_close turned into one): the peer's FIN makes it a true TIME_WAIT for
        TCP_TIMEWAIT_LEN and is acknowledged (TCP_TW_ACK -> tcp_v4_timewait_ack); new
        data or a SYN is reset (TCP_TW_RST -> tcp_v4_send_reset, and the sock is gone)."""
        seg_len = len(payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
        end_seq = seg.seq + seg_len
        tsval = TcpSeq(seg.timestamp[0]) if self.ts_ok and seg.timestamp else None
        # tcp_paws_reject (the timestamps are recent here: a RST is no exception) and
        # tcp_in_window against tw_rcv_nxt .. tw_rcv_nxt + tw_rcv_wnd
        paws_reject = tsval is not None and tsval < self.ts_recent
        wnd_end = self.rcv_nxt + self.tw_rcv_wnd
        in_window = seg.seq == self.rcv_nxt or (self.rcv_nxt < end_seq and seg.seq < wnd_end) \
            or seg.seq == wnd_end == end_seq
        if paws_reject or not in_window:
            # tcp_timewait_check_oow_rate_limit -> tcp_oow_rate_limited: a segment without
            # data (or with a SYN) gets at most one ACK per tcp_invalid_ratelimit
            last = self.tw_last_oow_ack
            if seg_len == 0 or seg.flags & SYN:
                if last is not None and 0 <= now - last < TCP_INVALID_RATELIMIT:
                    return
                self.tw_last_oow_ack = now
            self.tcp_send_ack(now, "timewait-oow-ack")
            return
        if seg.flags & RST:
            self.tcp_done(now, None)   # kill: inet_twsk_deschedule_put
            return
        if seg.flags & SYN and not seg.seq < self.rcv_nxt:
            self._tw_reset(now, seg, len(payload))
            return
        if not seg.flags & ACK or not self.rcv_nxt < end_seq or end_seq == seg.seq:
            return   # a duplicate ACK: TCP_TW_SUCCESS, nothing sent
        if not seg.flags & FIN or end_seq != self.rcv_nxt + 1:
            self._tw_reset(now, seg, len(payload))   # new data after a half-duplex close
            return
        # FIN arrived, enter true time-wait state
        self.tcp_set_state(now, TcpState.TIME_WAIT)
        self.rcv_nxt = end_seq
        if tsval is not None:
            self.ts_recent = tsval
        self.timers.clear()
        self.fw2_unsure = []
        self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN   # inet_twsk_reschedule
        self.tcp_send_ack(now, "timewait-ack")

    def _tw_reset(self, now: int, seg: TcpRepr, payload_len: int) -> None:
        """TCP_TW_RST: tcp_v4_send_reset for the segment, then the timewait sock is gone."""
        self._tx.append(tcp_v4_send_reset(self.local, self.remote, seg, payload_len, "timewait-rst"))
        self.tcp_done(now, None)

    def tcp_time_wait(self, now: int) -> None:
        """tcp_time_wait(): 60 s (TCP_TIMEWAIT_LEN), other timers off."""
        self.tcp_set_state(now, TcpState.TIME_WAIT)
        self.timers.clear()
        self.rtx_queue.clear()
        self.timers[TimerKind.TIME_WAIT] = now + TCP_TIMEWAIT_LEN
        self.ts_recent_at = now          # tw_ts_recent_stamp (the model's, at the latest)

    def _fin_wait2_timewait(self, now: int, tmo: int) -> None:
        """tcp_time_wait(sk, TCP_FIN_WAIT2, tmo): from here a timewait sock answers
        (tcp_timewait_state_process) with the window the socket offers now
        (tcp_receive_window), for tmo but at least 3.5 RTOs; the full sock's timers are gone."""
        self.timewait_sock = True
        wnd_end = self.rcv_wup + self.rcv_wnd
        self.tw_rcv_wnd = wnd_end - self.rcv_nxt if self.rcv_nxt <= wnd_end else 0
        self.rtx_queue.clear()
        self.timers = {TimerKind.FIN_WAIT2: now + max(tmo, self._rto_floor())}

    def _rto_floor(self) -> int:
        """tcp_time_wait's least timeo: (icsk_rto << 2) - (icsk_rto >> 1) jiffies."""
        rto = self.rto // JIFFY
        return ((rto << 2) - (rto >> 1)) * JIFFY

    # -- passive open --------------------------------------------------------------------------
    @classmethod
    def tcp_create_openreq_child(cls, now: int, params: TcpParams, rng: random.Random, req: RequestSock, seg: TcpRepr,
                     name: str = "tcp", listener_tos: int = 0, listener_dont_fragment: bool = True) -> TcpSock:
        """tcp_create_openreq_child(): the child socket, born ESTABLISHED by the third ACK.

        sk_clone_lock copies the listener, so the child has its TOS and pmtudisc;
        tcp_v4_syn_recv_sock then picks a random inet_id and, with tcp_reflect_tos, takes
        the SYN's DSCP as its TOS."""
        sk = cls(params, rng, req.local, req.remote, name)
        sk.passive = True
        sk.tcp_set_state(now, TcpState.SYN_RECV)
        sk.iss, sk.irs, sk.ts_offset = req.iss, req.irs, req.ts_offset
        sk.inet_id = rng.getrandbits(16)   # tcp_v4_syn_recv_sock(): get_random_u16()
        sk.tos = (req.syn_tos & ~INET_ECN_MASK) if params.reflect_tos else listener_tos
        sk.ecn_ok = req.ecn_ok          # tcp_ecn_openreq_child
        sk.dont_fragment = listener_dont_fragment
        sk.snd_una = sk.snd_nxt = req.iss + 1
        sk.rcv_nxt = sk.rcv_wup = req.irs + 1
        sk.ts_ok, sk.sack_ok = req.ts_ok, req.sack_ok
        sk.wscale_ok = req.snd_wscale is not None
        sk.snd_wscale = req.snd_wscale or 0
        sk.rcv_wscale = req.rcv_wscale if sk.wscale_ok else 0
        sk.rcv_wnd, sk.window_clamp = req.rcv_wnd, req.window_clamp
        sk.rcv_ssthresh = req.rcv_wnd
        sk.ts_recent = TcpSeq(seg.timestamp[0]) if (sk.ts_ok and seg.timestamp) else req.ts_recent
        sk.snd_wnd = seg.window << sk.snd_wscale
        sk.max_window = sk.snd_wnd
        sk.snd_wl1 = seg.seq
        sk.peer_mss = req.peer_mss
        sk.tcp_sync_mss()
        # tcp_synack_rtt_meas(): the SYN-ACK's RTT if it was not resent, else the TS echo.
        if req.num_retrans == 0:
            sk.rtt.tcp_rtt_estimator((now - req.snt_synack) // 1000, sk.snd_una, sk.snd_nxt)
        elif sk.ts_ok and seg.timestamp and seg.timestamp[1]:
            mrtt_us = max(1, sk._tsval(now) - TcpSeq(seg.timestamp[1])) * 1000
            sk.rtt.tcp_rtt_estimator(mrtt_us, sk.snd_una, sk.snd_nxt)
        if sk.rtt.srtt_us:
            sk.rto = sk.rtt.tcp_set_rto()
        sk.rcv_tstamp = now
        sk.icsk_ack.lrcvtime = now
        sk.tcp_set_state(now, TcpState.ESTABLISHED)
        # tcp_create_openreq_child: total_retrans is the SYN-ACK's resends, undo_marker set
        # if it timed out; tcp_try_undo_spurious_syn clears it when the ACK echoes the first
        # SYN-ACK's TSval (retrans_stamp: snt_synack, the first one's clock)
        sk.total_retrans = req.num_retrans
        first_tsval = TcpSeq(req.snt_synack // NSEC_PER_MSEC + req.ts_offset)
        spurious = sk.ts_ok and bool(seg.timestamp) and seg.timestamp[1] == first_tsval
        sk.tcp_init_transfer(now, undo_marker=req.num_timeout > 0 and not spurious)
        return sk


def tcp_check_req(now: int, params: TcpParams, listener: Listener, req: RequestSock, seg: TcpRepr,
                  payload: bytes) -> list[OutSegment] | None:
    """tcp_check_req(): a segment for a request sock of the listener's SYN queue: the peer's
    RST, its SYN again (our SYN-ACK was lost: resend it, restart the timer), a bad ACK (a
    reset), or the third ACK: then None, and the caller makes the child
    (tcp_v4_syn_recv_sock, models.tcp_ipv4)."""
    if seg.flags & RST:
        if seg.seq == req.irs + 1:
            del listener.syn_queue[req.remote]
        return []
    if seg.flags & SYN and seg.seq == req.irs and not seg.flags & ACK:
        # the peer did not hear our SYN-ACK: resend it and restart the timer
        req.num_retrans += 1
        req.expires_at = now + min(TCP_TIMEOUT_INIT << req.num_timeout, TCP_RTO_MAX)
        return [tcp_make_synack(req, now, params, "synack-for-retransmitted-syn", listener.tos)]
    if not seg.flags & ACK:
        return []
    if seg.ack != req.iss + 1:
        return [tcp_v4_send_reset(req.local, req.remote, seg, len(payload), "rst-bad-ack-in-syn-recv")]
    return None
