"""net/ipv4/tcp_timer.c: a TCP socket's timers. The dispatch (tcp_write_timer_handler,
tcp_delack_timer_handler, tcp_keepalive_timer), tcp_retransmit_timer with tcp_write_timeout
and the give-up time (tcp_model_timeout), the zero-window probe timer (tcp_probe_timer), the
keepalive timer, and the TCP_USER_TIMEOUT clamps; tcp_set_keepalive. And tcp_v4_err's part
in a socket (net/ipv4/tcp_ipv4.c: an ICMP unreachable may revert one RTO backoff,
tcp_ld_RTO_revert, which runs tcp_retransmit_timer at once).

`TcpTimer` holds methods of `models.tcp.TcpSock`.
"""

from __future__ import annotations

from .clock import JIFFY, NSEC_PER_MSEC, Window, msecs_to_jiffies_ns, usecs_to_jiffies_ns
from .tcp_h import (
    TCP_ATO_MIN,
    TCP_DELACK_MAX,
    TCP_DELACK_MIN,
    TCP_ORPHAN_RETRIES,
    TCP_RTO_MAX,
    TCP_RTO_MIN,
    TCP_TIMEOUT_INIT,
    TCP_TIMEOUT_MIN,
    TCP_TIMEWAIT_LEN,
    OutSegment,
    TcpSeq,
    TcpState,
    TimerKind,
    ilog2,
)
from .wire.icmp import ICMP_HOST_UNREACH, ICMP_NET_UNREACH
from .wire.tcp import RST, SYN

__all__ = ["TcpTimer", "tcp_model_timeout"]


def tcp_model_timeout(boundary: int, rto_base: int) -> int:
    """tcp_model_timeout(): how long `boundary` exponential backoffs from `rto_base` take."""
    thresh = ilog2(TCP_RTO_MAX // rto_base)
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (boundary - thresh) * TCP_RTO_MAX


class TcpTimer:
    """TcpSock's net/ipv4/tcp_timer.c."""

    def on_timer(self, now: int) -> list[OutSegment]:
        """Run every timer due at `now`."""
        for timer, when in sorted(self.timers.items(), key=lambda item: item[1]):
            if when > now or self.timers.get(timer) != when:
                continue
            del self.timers[timer]
            if timer is TimerKind.RETRANSMIT:
                self.tcp_write_timer_handler(now)
            elif timer is TimerKind.DELACK:
                self.tcp_delack_timer_handler(now)
            elif timer is TimerKind.KEEPALIVE:
                self.tcp_keepalive_timer(now)
            elif timer is TimerKind.PROBE0:
                self.tcp_probe_timer(now)
            elif timer is TimerKind.FIN_WAIT2 and self.state is TcpState.FIN_WAIT2 and not self.timewait_sock:
                self._fin_wait2_keepalive_timer(now)
            elif timer in (TimerKind.TIME_WAIT, TimerKind.FIN_WAIT2):
                self.tcp_done(now, None)
        return self._flush()

    def tcp_delack_timer_handler(self, now: int) -> None:
        """tcp_delack_timer_handler(): the delayed ACK, if one is still owed; leave pingpong,
        ato grows. Linux's ato depends on arrival spacing, so the ACK may come anywhere in
        DELACK_MIN..DELACK_MAX. ato 0 (no data yet): due at once, on the next tick; the
        timer's own slack is the board's (models.board._retime)."""
        if not self.icsk_ack.pending:
            return
        cause = self.icsk_ack.armed_at if self.icsk_ack.armed_at is not None else now - TCP_DELACK_MIN
        self.tcp_send_ack(now, "delayed-ack", None if self.icsk_ack.exact else Window(
            min(now, cause + TCP_DELACK_MIN), max(now, cause + TCP_DELACK_MAX)))
        # missed in pingpong: leave it and deflate ato; else inflate it
        self.icsk_ack.ato = TCP_ATO_MIN if self.icsk_ack.pingpong else min(self.icsk_ack.ato << 1, self.rto)
        self.icsk_ack.pingpong = 0

    def tcp_write_timer_handler(self, now: int) -> None:
        """tcp_write_timer_handler(): the retransmit timer is what icsk_pending says: the tail
        loss probe (ICSK_TIME_LOSS_PROBE), RACK's reordering timer (ICSK_TIME_REO_TIMEOUT)
        or the RTO. (The zero-window probe, ICSK_TIME_PROBE0, is TimerKind.PROBE0 here.)"""
        if self.tlp.pending:
            self.tcp_send_loss_probe(now)
        elif self.reo_pending:
            self.tcp_rack_reo_timeout(now)
        else:
            self.tcp_retransmit_timer(now)

    def tcp_retransmit_timer(self, now: int) -> None:
        """tcp_retransmit_timer(): give up (tcp_write_timeout) or resend the head, back off."""
        if not self.rtx_queue:
            return
        if self.tcp_write_timeout(now):
            return
        head = self.rtx_queue[0]
        syn = head.flags & SYN and self.state is TcpState.SYN_SENT
        if not syn:
            self.tcp_enter_loss(now)
        self.tcp_fragment(1)                     # tcp_retransmit_skb(sk, head, 1)
        if self.skb_still_in_host_queue(head):
            # __tcp_retransmit_skb() -> -EBUSY: nothing is sent, yet the timer backs off as if
            # it had been (only a positive error takes TCP_RESOURCE_PROBE_INTERVAL instead);
            # the head stays lost and unsent until TSQ calls back (tcp_tsq_write)
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
                self.tcp_transmit_skb(now, head.flags, head.seq, head.data, "retransmit")
        self._stamp_first_retransmit(head)
        self.backoff += 1
        self.retransmits += 1
        self.rto = min(self.rto << 1, TCP_RTO_MAX)
        self._arm_rto(now, self.tcp_clamp_rto_to_user_timeout(now))

    def tcp_write_timeout(self, now: int) -> bool:
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
            self.tcp_done(now, "ETIMEDOUT")   # tcp_write_err()
        return expired

    def tcp_clamp_rto_to_user_timeout(self, now: int) -> int:
        """tcp_clamp_rto_to_user_timeout(): with TCP_USER_TIMEOUT, the retransmission timer
        fires no later than the user timeout's end (counted from retrans_stamp, the first
        retransmission), at once (a jiffy) if that has passed; icsk_rto itself is kept."""
        if not self.user_timeout_ms or self.retrans_stamp is None:
            return self.rto
        remaining = self.user_timeout_ms - (now // NSEC_PER_MSEC - self.retrans_stamp // NSEC_PER_MSEC)
        if remaining <= 0:
            return JIFFY
        return min(self.rto, msecs_to_jiffies_ns(remaining))

    def tcp_probe_timer(self, now: int) -> None:
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
        elif self.user_timeout_ms and now - self.probes_tstamp >= msecs_to_jiffies_ns(self.user_timeout_ms):
            self.tcp_done(now, "ETIMEDOUT")      # tcp_write_err()
            return
        if self.probes_out >= self.params.retries2:
            self.tcp_done(now, "ETIMEDOUT")      # tcp_write_err()
            return
        self.tcp_send_probe0(now)

    def tcp_clamp_probe0_to_user_timeout(self, now: int, when: int) -> int:
        """tcp_clamp_probe0_to_user_timeout(): with TCP_USER_TIMEOUT, the next probe comes
        no later than the user timeout's end (counted from icsk_probes_tstamp), and no
        sooner than TCP_TIMEOUT_MIN; the remainder is a u32, so past the end it is `when`."""
        if not self.user_timeout_ms or self.probes_tstamp is None:
            return when
        elapsed = max(now - self.probes_tstamp, 0)
        remaining = msecs_to_jiffies_ns(self.user_timeout_ms) - elapsed
        if remaining < 0:
            return when
        return min(max(remaining, TCP_TIMEOUT_MIN), when)

    def tcp_keepalive_timer(self, now: int) -> None:
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
                self.tcp_transmit_skb(now, RST, self.snd_nxt, b"", "keepalive-reset")   # tcp_send_active_reset
                self._mark_optional(unsure)
                self.tcp_done(now, "ETIMEDOUT")
                return
            # tcp_write_wakeup() -> tcp_xmit_probe_skb(sk, 0): seq snd_una - 1, no data
            self.tcp_transmit_skb(now, 0, self.snd_una - 1, b"", "keepalive-probe")
            self._mark_optional(unsure)
            self.probes_out += 1
            self.timers[TimerKind.KEEPALIVE] = now + p.keepalive_intvl
        else:
            self.timers[TimerKind.KEEPALIVE] = now + p.keepalive_time - elapsed

    def _fin_wait2_keepalive_timer(self, now: int) -> None:
        """tcp_keepalive_timer for a FIN_WAIT2 orphan: a timewait sock for what is left of
        tcp_fin_time past TCP_TIMEWAIT_LEN, or (none left) tcp_send_active_reset and done."""
        tmo = self.tcp_fin_time() - TCP_TIMEWAIT_LEN
        if tmo > 0:
            self._fin_wait2_timewait(now, tmo)
            return
        self.tcp_transmit_skb(now, RST, self.snd_nxt, b"", "fin-wait2-reset")
        self.tcp_done(now, None)

    def set_keepalive(self, now: int, on: bool) -> None:
        """SO_KEEPALIVE: tcp_set_keepalive() arms or stops the timer."""
        self.keepalive = on
        if on and self.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self.timers[TimerKind.KEEPALIVE] = now + self.params.keepalive_time
        elif not on:
            self.timers.pop(TimerKind.KEEPALIVE, None)

    # -- ICMP errors: tcp_v4_err ---------------------------------------------------------------
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
        seq = TcpSeq(seq)
        if not (self.snd_una <= seq and seq <= self.snd_nxt):
            return self._flush()     # LINUX_MIB_OUTOFWINDOWICMPS
        if code in (ICMP_NET_UNREACH, ICMP_HOST_UNREACH):
            self.tcp_ld_RTO_revert(now, seq)
        err = "ENETUNREACH" if code == ICMP_NET_UNREACH else "EHOSTUNREACH"
        if self.state in (TcpState.SYN_SENT, TcpState.SYN_RECV):
            self.tcp_done(now, err)
        else:
            self.soft_error = err    # sk_err_soft: reported only if the connection times out
        return self._flush()

    def tcp_ld_RTO_revert(self, now: int, seq: int) -> None:
        """tcp_ld_RTO_revert(): undo one backoff; retransmit now if the reverted RTO has
        already run out since the head was last sent, else re-arm for what is left."""
        if seq != self.snd_una or not self.retransmits or not self.backoff or not self.rtx_queue:
            return
        head = self.rtx_queue[0]
        self.backoff -= 1
        rtt = self.rtt
        base = usecs_to_jiffies_ns((rtt.srtt_us >> 3) + rtt.rttvar_us) if rtt.srtt_us else TCP_TIMEOUT_INIT
        self.rto = min(base << self.backoff, TCP_RTO_MAX)   # inet_csk_rto_backoff()
        remaining = self.rto - usecs_to_jiffies_ns((now - head.tx_at) // 1000)
        if remaining > 0:
            self.timers[TimerKind.RETRANSMIT] = now + remaining
        else:
            self.timers.pop(TimerKind.RETRANSMIT, None)
            # Linux calls tcp_retransmit_timer; the model runs what its retransmit timer
            # would (a pending loss probe or RACK timer is kept, not replaced by the RTO)
            self.tcp_write_timer_handler(now)
