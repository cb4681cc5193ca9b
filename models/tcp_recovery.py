"""net/ipv4/tcp_recovery.c: RACK (RFC 8985), loss detection by time. tcp_rack_advance,
tcp_rack_reo_wnd, tcp_rack_detect_loss, tcp_rack_mark_lost and the reordering timer's
tcp_rack_reo_timeout.

`TcpRecovery` holds methods of `models.tcp.TcpSock`.
"""

from __future__ import annotations

from .clock import usecs_to_jiffies_ns
from .tcp_h import TCP_CA_RECOVERY, TCP_TIMEOUT_MIN_US, TimerKind, TxSkb

__all__ = ["TcpRecovery"]


class TcpRecovery:
    """TcpSock's net/ipv4/tcp_recovery.c."""

    def tcp_rack_advance(self, now: int, skb: TxSkb) -> None:
        """tcp_rack_advance(): the latest sent of the delivered segments, and its RTT; a
        retransmission delivered sooner than min_rtt is ambiguous and skipped."""
        rtt_us = (now - skb.tx_at) // 1000
        if rtt_us < self.rtt.rtt_min_us and (skb.retransmitted or skb.rtx_out):
            return
        self.rack_advanced = True
        self.rack_rtt_us = rtt_us
        tx_us = skb.tx_at // 1000
        if tx_us > self.rack_mstamp_us or (tx_us == self.rack_mstamp_us and self.rack_end_seq < skb.end_seq):
            self.rack_mstamp_us, self.rack_end_seq = tx_us, skb.end_seq

    def tcp_rack_reo_wnd(self) -> int:
        """tcp_rack_reo_wnd(): no reordering seen: none in Recovery or once sacked_out
        reaches the dupthresh; else min_rtt/4 (times reo_wnd_steps, 1), at most srtt."""
        if not self.reord_seen:
            if self.ca_state >= TCP_CA_RECOVERY or self.sacked_out >= self.reordering:
                return 0
        return min(self.rtt.rtt_min_us >> 2, self.rtt.srtt_us >> 3)

    def tcp_rack_detect_loss(self, now: int) -> int:
        """tcp_rack_detect_loss(): in send order, mark lost each segment sent before the
        latest delivered one whose RTT plus the reordering window has passed; returns the
        longest wait (us) of the others."""
        reo_wnd = self.tcp_rack_reo_wnd()
        now_us = now // 1000
        timeout = 0
        for skb in sorted((s for s in self.rtx_queue if not s.sacked and not (s.lost and not s.rtx_out)),
                          key=lambda s: s.tx_at // 1000):
            tx_us = skb.tx_at // 1000
            if not (self.rack_mstamp_us > tx_us or (self.rack_mstamp_us == tx_us
                                                      and skb.end_seq < self.rack_end_seq)):
                break
            remaining = self.rack_rtt_us + reo_wnd - (now_us - tx_us)
            if remaining <= 0:
                self.tcp_mark_skb_lost(skb)
            else:
                timeout = max(timeout, remaining)
        return timeout

    def tcp_rack_mark_lost(self, now: int) -> bool:
        """tcp_rack_mark_lost(): after a delivery advanced RACK, detect losses; for those
        still inside the window arm the reordering timer (ICSK_TIME_REO_TIMEOUT, at most
        the RTO): True if it was armed."""
        if not self.rack_advanced:
            return False
        self.rack_advanced = False
        timeout = self.tcp_rack_detect_loss(now)
        if timeout:
            self.timers[TimerKind.RETRANSMIT] = now + min(usecs_to_jiffies_ns(timeout + TCP_TIMEOUT_MIN_US), self.rto)
            self.tlp.pending, self.reo_pending = False, True
        return bool(timeout)

    def tcp_rack_reo_timeout(self, now: int) -> None:
        """tcp_rack_reo_timeout(): the reordering window ran out: mark, enter Recovery (with
        one PRR step), resend; then the RTO from the head's last transmission."""
        prior_inflight = self.tcp_packets_in_flight()
        prior_lost = self.lost_total
        self.tcp_rack_detect_loss(now)
        if prior_inflight != self.tcp_packets_in_flight():
            if self.ca_state != TCP_CA_RECOVERY:
                self.tcp_enter_recovery()
                self.tcp_cwnd_reduction(1, self.lost_total - prior_lost, 0)
            self.tcp_xmit_retransmit_queue(now)
        self.tcp_rearm_rto(now)
