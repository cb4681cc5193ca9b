"""`bmc-hil pkt`: the packetdrill-syntax parser, the matcher, the corpus against the model,
and the command's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.pkt import ModelTarget, PktSyntaxError, parse_file, parse_script, run_script
from harness.pkt.script import OPTIONS_UNCHECKED, Segment, Syscall
from harness.pkt.target import Sent, SyscallOutcome
from models.wire.tcp import (
    ACK,
    PSH,
    SYN,
    TCPOPT_MSS,
    TCPOPT_NOP,
    TCPOPT_SACK,
    TCPOPT_SACK_PERM,
    TCPOPT_TIMESTAMP,
    TCPOPT_WINDOW,
    TcpRepr,
)

CORPUS = Path(__file__).resolve().parent.parent / "suites" / "pkt"

# Scripts that fail against the model because the model is wrong, with the line and the
# failure they must show (suites/pkt/README.md lists them with the reason). When the model
# is fixed the script passes and the test below says so: move it out of this table.
KNOWN_MODEL_BUGS: dict[str, tuple[int, str, str]] = {}

PASSIVE = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1460>
+0    > S. 0:0(0) ack 1 win 64240 <mss 1460>
+.1   < . 1:1(0) ack 1 win 65535
+0    accept(3, ..., ...) = 4
"""


def run_text(text: str, **kw):
    return run_script(parse_script(text, "t.pkt"), ModelTarget(), **kw)


# -- the parser ----------------------------------------------------------------------------
def test_parser_reads_times_segments_options_and_syscalls():
    s = parse_script("""--tolerance_usecs=7000
// a comment
0      socket(..., SOCK_STREAM, IPPROTO_TCP) = 3   /* trailing */
+0.1   connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
0.2~0.3 > S 0:0(0) win 64240 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
*      < S. 0:0(0) ack 1 win 100 <nop,nop,sack 1:2 3:4>
+.5~+1 > P. 1:1001(1000) ack 1 <...>
+0     setsockopt(3, SOL_SOCKET, SO_RCVBUF, [4096], 4) = 0
+0     fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
""", "x.pkt")
    assert s.options == {"tolerance_usecs": 7000}
    ev = s.events
    assert [e.line for e in ev] == [3, 4, 5, 6, 7, 8, 9]
    assert ev[0].time.start == 0 and not ev[0].time.relative
    assert ev[1].time.relative and ev[1].time.start == 100_000
    assert ev[1].action == Syscall("connect", (3, Ellipsis, Ellipsis), -1, "EINPROGRESS")
    assert (ev[2].time.start, ev[2].time.end) == (200_000, 300_000)
    assert ev[2].action == Segment(">", SYN, 0, 0, 0, None, 64240, (
        (TCPOPT_MSS, 1460), (TCPOPT_SACK_PERM, None), (TCPOPT_TIMESTAMP, (100, 0)), (TCPOPT_NOP, None),
        (TCPOPT_WINDOW, 7)))
    assert ev[3].time.any and ev[3].action.flags == SYN | ACK
    assert ev[3].action.options == ((TCPOPT_NOP, None), (TCPOPT_NOP, None), (TCPOPT_SACK, ((1, 2), (3, 4))))
    assert ev[4].time.relative and ev[4].time.end_relative and ev[4].action.flags == PSH | ACK
    assert ev[4].action.options == OPTIONS_UNCHECKED and ev[4].action.length == 1000
    assert ev[5].action.args == (3, "SOL_SOCKET", "SO_RCVBUF", [4096], 4)
    assert ev[6].action.args == (3, "F_SETFL", ("O_RDWR", "O_NONBLOCK"))


@pytest.mark.parametrize(("text", "line", "col", "words"), [
    ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > Q 0:0(0)\n", 2, 6, "TCP flags"),
    ("0 < S 0:0(0\n", 1, 12, "')'"),
    ("0 < S 0:0(0) <mss 1460,bogus 3>\n", 1, 24, "unknown TCP option 'bogus'"),
    ("0 < S 0:10(5)\n", 1, 14, "is 10 bytes, not (5)"),
    ("\n\n  0 connect(3, ..., ...) = -1\n", 3, 28, "names its errno"),
    ("0 close(3) = 0\n--tolerance_usecs=5\n", 2, 1, "before the first event"),
    ("0 < S 0:0(0) win 10 $\n", 1, 21, "'$'"),
    ("0 close(3) = 0 /* never closed\n0 close(3) = 0\n", 1, 16, "unterminated /* comment"),
    ("abc close(3) = 0\n", 1, 1, "time in seconds"),
    ("0 < . 1:1(0) ack\n", 1, 17, "the ACK number"),
    ("0 < S 0:0(0) ack 1\n", 1, 19, "without the ACK flag"),
    ("0 frobnicate\n", 1, 3, "a packet ('<' or '>'), a syscall or a console line"),
    ("0 < S 0:0(0) flow 0\n", 1, 19, "a flow is 1 to 16"),
    ("0 < S 0:0(0) flow\n", 1, 18, "the flow number"),
    ("0 close(3) = 0\n+0 console\n", 2, 11, "the console line in double quotes"),
    ("+0 console TCP: x\n", 1, 12, "the console line in double quotes, found 'TCP'"),
    ('+0 console "TCP: x\n', 1, 12, "unterminated string"),
    ('+0 console "TCP: x" y\n', 1, 21, "unexpected 'y' after the console line"),
    ('+0 console "a\\tb"\n', 1, 14, "unknown escape"),
    ('+0 console ""\n', 1, 12, "an empty console line"),
    ('0.1...0.2 console "x"\n', 1, 1, "for a blocking syscall"),
])
def test_syntax_error_names_file_line_and_column(text, line, col, words):
    with pytest.raises(PktSyntaxError) as exc:
        parse_script(text, "bad.pkt")
    assert (exc.value.path, exc.value.line, exc.value.col) == ("bad.pkt", line, col), str(exc.value)
    assert str(exc.value).startswith(f"bad.pkt:{line}:{col}: ")
    assert words in str(exc.value)


# -- the matcher ---------------------------------------------------------------------------
def test_the_passive_prologue_passes():
    assert run_text(PASSIVE + "+.1 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n").passed


def test_wrong_flag_fails_naming_the_line_expected_and_actual():
    r = run_text(PASSIVE + "+.1 write(4, ..., 10) = 10\n+0 > . 1:11(10) ack 1\n")
    f = r.failure
    assert f.line == 9 and "flags" in f.message
    assert f.expected.startswith("> . 1:11(10) ack 1") and f.actual.startswith("> P. 1:11(10) ack 1")
    assert "t.pkt:9:" in f.describe("t.pkt")


def test_late_segment_fails():
    # the RTO is 300 ms (see data-rto-backoff.pkt): a retransmission expected at 200 ms
    r = run_text(PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n+.2 > P. 1:11(10) ack 1\n")
    assert r.failure.line == 10 and r.failure.message == "expected outbound segment not sent"
    assert "at 0.4 s" in r.failure.actual


def test_early_segment_fails():
    r = run_text(PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n+.5 > P. 1:11(10) ack 1\n")
    assert r.failure.line == 10 and r.failure.message == "outbound segment too early"


def test_tolerance_takes_the_larger_of_usecs_and_percent():
    # the retransmission comes 300 ms after the write
    text = PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n+.27 > P. 1:11(10) ack 1\n"
    assert run_text(text).passed                             # 30 ms off, 12.5 % of 270 ms allowed
    text = PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n+.25 > P. 1:11(10) ack 1\n"
    assert not run_text(text).passed                         # 50 ms off, 31.25 ms allowed
    assert run_text(text, tolerance_usecs=50_000).passed


def test_unexpected_segment_fails_at_the_next_line():
    # the data is ACKed at once (quickack); the script does not expect that ACK
    r = run_text(PASSIVE + "+.1 < P. 1:101(100) ack 1 win 65535\n+.1 close(4) = 0\n")
    assert r.failure.line == 9 and "unexpected outbound segment" in r.failure.message
    assert r.failure.actual.startswith("> . 1:1(0) ack 101")


def test_unexpected_segment_at_the_end_fails():
    r = run_text(PASSIVE + "+.1 close(4) = 0\n")
    assert r.failure.line == 8 and "unexpected outbound segment at the end" in r.failure.message
    assert r.failure.actual.startswith("> F. 1:1(0) ack 1")


def test_wrong_ack_window_and_options_fail():
    assert "ack" in run_text(PASSIVE.replace("> S. 0:0(0) ack 1", "> S. 0:0(0) ack 2")).failure.message
    assert "window" in run_text(PASSIVE.replace("win 64240", "win 64241")).failure.message
    r = run_text(PASSIVE.replace("win 64240 <mss 1460>", "win 64240 <mss 1400>"))
    assert r.failure.line == 5 and "options" in r.failure.message
    r = run_text(PASSIVE.replace("win 64240 <mss 1460>", "win 64240"))
    assert "options" in r.failure.message                   # none written: none expected
    assert run_text(PASSIVE.replace("win 64240 <mss 1460>", "win 64240 <...>")).passed


class FakeTarget:
    """A target that sends what it is told: for the checks the model never trips."""

    name = "fake"
    lead_ns = 0
    late_look_ns = 600 * 10**9
    late_slack_ns = 0
    call_slack_ns = 0
    console_slack_ns = 0

    def __init__(self, sent, console=()):
        self.sent = list(sent)
        self.console = list(console)   # (at, text): kernel lines, handed out as time passes
        self.now = 0

    def console_lines(self):
        out = [c for c in self.console if c[0] <= self.now]
        self.console = [c for c in self.console if c not in out]
        return out

    def syscall(self, at, call, remote_port, local_port):
        raise AssertionError("no syscalls here")

    def inject(self, at, src_port, dst_port, tcp, payload):
        pass

    def advance(self, until, stop_at_first=False):
        out = [s for s in self.sent if s.at <= until][:1 if stop_at_first else None]
        self.sent = [s for s in self.sent if s not in out]
        self.now = max(self.now, out[-1].at if stop_at_first and out else until)
        return out


def syn_with_ts(at_ns, tsval):
    return Sent(at_ns, TcpRepr(40000, 47001, 1234, 0, SYN, 64240, ((TCPOPT_TIMESTAMP, (tsval, 0)),)), b"")


def test_ts_val_must_tick_with_the_clock():
    script = parse_script("0 > S 0:0(0) <TS val 100 ecr 0>\n+1 > S 0:0(0) <TS val 1100 ecr 0>\n")
    assert run_script(script, FakeTarget([syn_with_ts(0, 7000), syn_with_ts(10**9, 8000)])).passed
    r = run_script(script, FakeTarget([syn_with_ts(0, 7000), syn_with_ts(10**9, 7000)]))
    assert r.failure.line == 2 and "TS val" in r.failure.message           # a clock that stood still
    r = run_script(script, FakeTarget([syn_with_ts(0, 7000), syn_with_ts(10**9, 6000)]))
    assert r.failure.line == 2 and "TS val" in r.failure.message           # one that went back


def test_ts_val_may_lag_the_wire_by_the_targets_late_allowance_and_no_more():
    # a segment stamped at 1 s that the wire saw 15 ms later: fine where the target may be
    # 20 ms late (the board), not where it may not (the model)
    script = parse_script("0 > S 0:0(0) <TS val 100 ecr 0>\n+1 > S 0:0(0) <TS val 1100 ecr 0>\n")
    late = FakeTarget([syn_with_ts(0, 7000), syn_with_ts(10**9 + 15 * 10**6, 8000)])
    late.late_slack_ns = 20 * 10**6
    assert run_script(script, late).passed
    r = run_script(script, FakeTarget([syn_with_ts(0, 7000), syn_with_ts(10**9 + 15 * 10**6, 8000)]))
    assert r.failure.line == 2 and "TS val" in r.failure.message
    slow = FakeTarget([syn_with_ts(0, 7000), syn_with_ts(10**9 + 15 * 10**6, 7900)])
    slow.late_slack_ns = 20 * 10**6                    # 100 ms short is no lag: a slow clock
    assert "TS val" in run_script(script, slow).failure.message


def test_ts_ecr_is_checked():
    text = (CORPUS / "handshake-passive-options.pkt").read_text()
    assert run_text(text).passed
    r = run_text(text.replace("TS val 5100 ecr 200", "TS val 5100 ecr 201"))
    assert r.failure.line == 16 and "TS ecr" in r.failure.message


# -- flows ---------------------------------------------------------------------------------
def _seg(at_ms, flags, seq, ack, flow=1, opts=(), payload=b""):
    return Sent(at_ms * 10**6, TcpRepr(8080, 47000 + flow, seq, ack, flags, 1000, opts), payload)


REMOTE_ISN_PLUS_1 = 0x5EED0001


def test_each_flow_learns_its_own_local_isn_from_its_own_synack():
    script = parse_script("0 > S. 0:0(0) ack 1\n+0 > S. 0:0(0) ack 1 flow 2\n"
                          "+0 > . 1:1(0) ack 1 flow 2\n+0 > . 1:1(0) ack 1\n")
    sent = [_seg(0, SYN | ACK, 1000, REMOTE_ISN_PLUS_1), _seg(0, SYN | ACK, 5000, REMOTE_ISN_PLUS_1, flow=2),
            _seg(0, ACK, 5001, REMOTE_ISN_PLUS_1, flow=2), _seg(0, ACK, 1001, REMOTE_ISN_PLUS_1)]
    assert run_script(script, FakeTarget(sent)).passed
    sent[2] = _seg(0, ACK, 1001, REMOTE_ISN_PLUS_1, flow=2)      # flow 1's ISN on flow 2
    r = run_script(script, FakeTarget(sent))
    assert r.failure.line == 3 and "sequence numbers" in r.failure.message


def test_a_segment_on_another_flow_than_the_line_says_fails():
    r = run_script(parse_script("0 > S. 0:0(0) ack 1 flow 3\n"),
                   FakeTarget([_seg(0, SYN | ACK, 1000, REMOTE_ISN_PLUS_1, flow=2)]))
    assert r.failure.line == 1 and "flow" in r.failure.message and r.failure.actual.endswith("flow 2 at 0 s")


def test_an_absolute_time_behind_a_late_segment_waits_for_it_within_the_targets_slack():
    # the SYN-ACK due at 0 came 15 ms late; the ACK's absolute 1 ms is then behind it
    text = "0 < S 0:0(0)\n0 > S. 0:0(0) ack 1\n0.001 < . 1:1(0) ack 1\n"
    late = FakeTarget([_seg(15, SYN | ACK, 1000, REMOTE_ISN_PLUS_1)])
    late.late_slack_ns = 20 * 10**6
    assert run_script(parse_script(text), late).passed
    # a script whose times run backwards is wrong whatever the target's slack
    text = "0 < S 0:0(0)\n0.1 > S. 0:0(0) ack 1\n0.05 < . 1:1(0) ack 1\n"
    late = FakeTarget([_seg(100, SYN | ACK, 1000, REMOTE_ISN_PLUS_1)])
    late.late_slack_ns = 20 * 10**6
    r = run_script(parse_script(text), late)
    assert r.failure.line == 3 and "runs backwards" in r.failure.message, r.failure


def test_a_new_syn_on_a_flow_starts_a_connection_with_its_own_isn():
    text = "0 < S 0:0(0)\n+0 > S. 0:0(0) ack 1\n+1 < S {seq}:{seq}(0)\n+0 > S. 0:0(0) ack {ack}\n"
    sent = [_seg(0, SYN | ACK, 1000, REMOTE_ISN_PLUS_1), _seg(1000, SYN | ACK, 9000, REMOTE_ISN_PLUS_1 + 5000)]
    assert run_script(parse_script(text.format(seq=5000, ack=5001)), FakeTarget(sent)).passed
    # the same SYN again is the same connection: its ISN stays
    sent[1] = _seg(1000, SYN | ACK, 9000, REMOTE_ISN_PLUS_1)
    r = run_script(parse_script(text.format(seq=0, ack=1)), FakeTarget(sent))
    assert r.failure.line == 4 and "sequence numbers" in r.failure.message


def _ts_seg(at_ms, flags, tsval):
    return _seg(at_ms, flags, 1000 if flags & SYN else 1001, REMOTE_ISN_PLUS_1, opts=((TCPOPT_TIMESTAMP, (tsval, 5)),))


@pytest.mark.parametrize(("first", "ahead_ms", "passes"), [
    (SYN | ACK, 60, True),     # a syncookie's TSval is up to 63 ms behind the clock
    (SYN | ACK, 70, False),    # more than 63 ms and the 5 ms slack
    (ACK, 60, False),          # only after a SYN-ACK
])
def test_ts_val_after_a_synack_may_run_up_to_63_ms_ahead_of_the_clock(first, ahead_ms, passes):
    lines = ("0 > S. 0:0(0) ack 1 <TS val 100 ecr 5>\n+.1 > . 1:1(0) ack 1 <TS val 200 ecr 5>\n" if first & SYN
             else "0 > . 1001:1001(0) ack 1 <TS val 100 ecr 5>\n+.1 > . 1001:1001(0) ack 1 <TS val 200 ecr 5>\n")
    r = run_script(parse_script(lines), FakeTarget([_ts_seg(0, first, 7000), _ts_seg(100, ACK, 7000 + 100 + ahead_ms)]))
    assert r.passed == passes, r.failure
    if not passes:
        assert r.failure.line == 2 and "TS val" in r.failure.message


# -- console lines ---------------------------------------------------------------------------
FLOOD_LINE = "TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters."
FLOOD = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    bind(3, ..., ...) = 0
+0    listen(3, 0) = 0
+0    < S 0:0(0) win 65535 <mss 1460>
+0    > S. 0:0(0) ack 1 win 64240 <mss 1460>
+0    < S 0:0(0) win 65535 <mss 1460> flow 2
{console}+0    > S. 0:0(0) ack 1 win 64240 <mss 1460> flow 2
"""


def test_a_console_line_the_kernel_prints_passes():
    assert run_text(FLOOD.format(console=f'+0 console "{FLOOD_LINE}"\n')).passed


def test_a_console_line_never_printed_fails_naming_its_line():
    r = run_text(FLOOD.format(console=f'+0 console "{FLOOD_LINE.replace("8080", "8081")}"\n'))
    assert r.failure.line == 7 and r.failure.message == "expected console line not printed"
    assert "port 8081" in r.failure.expected and f'"{FLOOD_LINE}" at 0 s' in r.failure.actual
    r = run_text(FLOOD.format(console="") + f'+1 console "{FLOOD_LINE}"\n')
    assert r.failure.line == 8 and r.failure.message == "console line too early"


def test_a_console_line_no_line_expects_fails_as_unexpected():
    r = run_text(FLOOD.format(console=""))
    assert r.failure.line == 7 and r.failure.message == "unexpected console line at the end of the script"
    assert r.failure.actual == f'"{FLOOD_LINE}" at 0 s'
    r = run_script(parse_script('0 console "b"\n'), FakeTarget([], console=[(0, "a"), (0, "b")]))
    assert r.failure.line == 1 and r.failure.message.startswith("unexpected console line") and '"a"' in r.failure.actual


def test_a_target_that_sees_its_console_late_has_its_console_slack():
    class LateConsole(FakeTarget):
        console_slack_ns = 300 * 10**6

    script = parse_script('0 console "x"\n')
    assert run_script(script, LateConsole([], console=[(250 * 10**6, "x")])).passed
    r = run_script(script, LateConsole([], console=[(350 * 10**6, "x")]))
    assert r.failure.message == "expected console line not printed"
    assert not run_script(script, FakeTarget([], console=[(250 * 10**6, "x")])).passed


def test_the_agent_console_takes_kernel_messages_out_of_the_answers_they_cut():
    from harness.pkt.board import AgentConsole, script_console_lines

    class Line:
        def __init__(self, text, at):
            self.text, self.host_monotonic_ns = text, at

    class Console:
        def add_listener(self, callback):
            self.feed = callback

    console = Console()
    agent = AgentConsole(console)
    console.feed(Line("= 7 0 0 - 12[    3.595227] " + FLOOD_LINE.replace("8080", "21001"), 5))
    console.feed(Line("34 1240", 6))
    console.feed(Line("[    3.600000] TCP: something on port 21002", 7))
    assert agent.wait(7, 1.0, "call") == ("0 0 - 1234 1240", 6)
    lines, cursor = agent.kernel_lines_since(0)
    assert cursor == 2 and lines[0] == (5, FLOOD_LINE.replace("8080", "21001"))
    assert script_console_lines(lines, 21001, 1) == [(4, FLOOD_LINE)]


def test_syscall_result_and_errno_are_checked():
    r = run_text(PASSIVE + "+0 write(4, ..., 10) = 9\n")
    assert r.failure.line == 8 and r.failure.expected == "= 9" and r.failure.actual == "= 10"
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
                 "+0 connect(3, ..., ...) = -1 EALREADY\n")
    assert r.failure.line == 3 and r.failure.expected == "= -1 EALREADY" and r.failure.actual == "= -1 EINPROGRESS"
    r = run_text(PASSIVE + "+0 ioctl(4, SIOCINQ, [1]) = 0\n")
    assert r.failure.line == 8 and r.failure.actual == "[0]"


def test_an_option_the_model_lacks_fails_as_not_modelled_naming_the_line():
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                 "+0 setsockopt(3, IPPROTO_TCP, TCP_KEEPIDLE, [60], 4) = 0\n")
    assert r.failure.line == 2 and "not modelled" in r.failure.message and "TCP_KEEPIDLE" in r.failure.message
    r = run_text("0 `sysctl -q net.ipv4.tcp_timestamps=0`\n")
    assert r.failure.line == 1 and "not modelled" in r.failure.message
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 connect(3, ..., ...) = 0\n")
    assert r.failure.line == 2 and "blocking connect" in r.failure.message


class LaterTarget(FakeTarget):
    """A target that answers calls later, as a board's agent does: each call's outcome
    (ret, errno, the time it began) is what the test says."""

    def __init__(self, outcomes, sent=()):
        super().__init__(sent)
        self.outcomes = list(outcomes)
        self.asked = []

    def syscall(self, at, call, remote_port, local_port):
        self.asked.append((call.name, at))
        ret, errno, began = self.outcomes.pop(0)
        return LaterCall(SyscallOutcome(ret, errno, at=at + began))


class LaterCall:
    def __init__(self, outcome):
        self.outcome, self.polls = outcome, 0

    def result(self, block):
        self.polls += 1
        return self.outcome if block or self.polls > 1 else None


THREE_CALLS = ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n"
               "+0.1 listen(3, 1) = 0\n")


def test_calls_answered_later_are_checked_when_the_answers_come():
    ok = LaterTarget([(3, None, 0), (0, None, 0), (0, None, 10**5)])
    assert run_script(parse_script(THREE_CALLS), ok).passed
    assert ok.asked == [("socket", 0), ("bind", 0), ("listen", 10**8)], "handed over at their times, not after answers"
    r = run_script(parse_script(THREE_CALLS), LaterTarget([(3, None, 0), (-1, "EADDRINUSE", 0), (0, None, 0)]))
    assert r.failure.line == 2 and r.failure.actual == "= -1 EADDRINUSE"


def test_a_call_the_target_began_late_fails_its_line():
    r = run_script(parse_script(THREE_CALLS), LaterTarget([(3, None, 0), (0, None, 5 * 10**6), (0, None, 0)]))
    assert r.failure.line == 2 and "5.0 ms after its time" in r.failure.message
    assert run_script(parse_script(THREE_CALLS), LaterTarget([(3, None, 0), (0, None, 3 * 10**6),
                                                             (0, None, 0)])).passed, "within the 4 ms tolerance"


def test_a_script_with_no_events_checks_nothing_and_fails():
    r = run_script(parse_script("// only a comment\n"), ModelTarget())
    assert not r.passed and "checks nothing" in r.failure.message


def test_absolute_times_move_with_a_call_that_began_late():
    class ReadyCall(LaterCall):
        def result(self, block):
            return self.outcome

    class Target(LaterTarget):
        call_slack_ns = 20 * 10**6      # a board's: a call may begin late

        def syscall(self, at, call, remote_port, local_port):
            return ReadyCall(super().syscall(at, call, remote_port, local_port).outcome)

    script = parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n0.1 listen(3, 1) = 0\n")
    target = Target([(3, None, 10 * 10**6), (0, None, 0)])
    assert run_script(script, target).passed
    assert target.asked == [("socket", 0), ("listen", 110 * 10**6)], "the script's time 0 moved 10 ms"


def test_a_failure_names_the_calls_before_it_that_began_late():
    class Target(LaterTarget):
        call_slack_ns = 20 * 10**6      # a board's: a call may begin late

    text = THREE_CALLS + "+0 > S. 0:0(0) ack 1\n"
    # bind began 9 ms late (inside the slack), listen 2 ms late (inside the tolerance)
    r = run_script(parse_script(text), Target([(3, None, 0), (0, None, 9 * 10**6), (0, None, 2 * 10**6)]))
    assert r.failure.line == 4 and r.failure.late_calls == ["line 2: bind() 9.0 ms"], r.failure
    assert "calls that began late: line 2: bind() 9.0 ms" in r.failure.describe("x.pkt")
    assert r.to_json()["failure"]["late_calls"] == ["line 2: bind() 9.0 ms"]
    r = run_script(parse_script(text), Target([(3, None, 0), (0, None, 0), (0, None, 0)]))
    assert r.failure.line == 4 and r.failure.late_calls == [] and "late" not in r.failure.describe("x.pkt")


def test_an_earlier_calls_failure_is_reported_before_a_later_lines():
    text = THREE_CALLS + "+0 > S. 0:0(0) ack 1\n"
    r = run_script(parse_script(text), LaterTarget([(3, None, 0), (-1, "EINVAL", 0), (0, None, 0)]))
    assert r.failure.line == 2, r.failure


# -- the corpus ----------------------------------------------------------------------------
CORPUS_SCRIPTS = sorted(p.name for p in CORPUS.glob("*.pkt"))


def test_corpus_is_at_least_40_scripts_each_in_the_readme_and_the_readme_lists_the_known_bugs():
    assert len(CORPUS_SCRIPTS) >= 40
    readme = (CORPUS / "README.md").read_text()
    assert [n for n in CORPUS_SCRIPTS if f"| {n} |" not in readme] == []
    for name in KNOWN_MODEL_BUGS:
        assert name in readme
        assert "KNOWN MODEL BUG" in (CORPUS / name).read_text()


@pytest.mark.parametrize("name", CORPUS_SCRIPTS)
def test_corpus_script_against_the_model(name):
    result = run_script(parse_file(CORPUS / name), ModelTarget())
    if name not in KNOWN_MODEL_BUGS:
        assert result.passed, result.failure.describe(name)
        return
    line, message, actual = KNOWN_MODEL_BUGS[name]
    assert not result.passed, (f"{name} now passes against the model: the model bug it shows is fixed; "
                               "take it out of KNOWN_MODEL_BUGS and suites/pkt/README.md")
    f = result.failure
    assert f.line == line and f.message.startswith(message), f.describe(name)
    assert f.actual.startswith(actual), f.describe(name)


# -- the command ---------------------------------------------------------------------------
def test_cli_exit_0_when_all_pass(capsys):
    names = [str(CORPUS / n) for n in CORPUS_SCRIPTS if n not in KNOWN_MODEL_BUGS][:3]
    assert main(["pkt", *names]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS ") == 3 and "3/3 scripts passed on target model" in out


def test_cli_exit_1_when_one_fails_with_json(capsys, tmp_path):
    bug = tmp_path / "wrong-synack-window.pkt"      # Linux's SYN-ACK window is 64240, not 1000
    bug.write_text(PASSIVE.replace("win 64240", "win 1000"))
    good = str(CORPUS / "rst-closed-port.pkt")
    assert main(["pkt", good, str(bug), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["passed"], doc["failed"]) == (1, 1)
    assert doc["scripts"][1]["failure"]["line"] == 5


def test_cli_exit_2_on_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.pkt"
    bad.write_text("0 < Q 0:0(0)\n")
    assert main(["pkt", str(bad)]) == 2
    assert f"{bad}:1:5:" in capsys.readouterr().err
    assert main(["pkt", str(tmp_path / "missing.pkt")]) == 2
    assert "cannot read the script" in capsys.readouterr().err


def test_cli_tolerance_usecs_widens_the_window(tmp_path):
    script = tmp_path / "late.pkt"
    script.write_text(PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n+.25 > P. 1:11(10) ack 1\n")
    assert main(["pkt", str(script)]) == 1
    assert main(["pkt", str(script), "--tolerance-usecs", "50000"]) == 0


def test_cli_help_has_examples_and_exit_codes():
    out = subprocess.run([sys.executable, "-m", "harness", "pkt", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "examples:" in out.stdout and "exit codes:" in out.stdout


def test_cli_board_target_needs_an_emulated_board_file(tmp_path):
    board = tmp_path / "player.yaml"
    board.write_text("name: player\nkind: model\n")
    out = subprocess.run([sys.executable, "-m", "harness", "pkt", str(CORPUS / "rst-closed-port.pkt"),
                          "--target", "board", "--board", str(board), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "emulated board" in out.stderr and "player.yaml" in out.stderr


def test_cli_board_option_is_for_the_board_target(tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness", "pkt", str(CORPUS / "rst-closed-port.pkt"),
                          "--board", "x.yaml"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--board is for --target board" in out.stderr


def test_fds_are_the_lowest_free_as_the_kernel_hands_them_out():
    text = PASSIVE + "+0 close(4) = 0\n+0 > F. 1:1(0) ack 1\n+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 4\n" \
        "+0 close(9) = -1 EBADF (Bad file descriptor)\n"
    r = run_text(text)
    assert r.passed, r.failure.describe("t.pkt")


def test_connect_only_options_on_a_listener_are_not_modelled():
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, IPPROTO_TCP, TCP_MAXSEG, [1000], 4) = 0\n"
                 "+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n")
    assert r.failure.line == 4 and "not modelled" in r.failure.message
    r = run_text(PASSIVE + "+0 setsockopt(4, SOL_SOCKET, SO_RCVBUF, [4096], 4) = 0\n")
    assert r.failure.line == 8 and "not modelled" in r.failure.message
    r = run_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, IPPROTO_TCP, TCP_MAXSEG, [10], 4) = 0\n")
    assert r.failure.line == 2 and r.failure.actual == "= -1 EINVAL"


def test_the_model_defers_a_multi_segment_send_head_for_an_ack_due_at_once():
    # tcp_tso_should_defer, from a script kept out of the corpus (its board run depends on
    # the board taking two frames within 1 ms): the deferred segment is not sent
    script = parse_file(Path(__file__).parent / "data/pkt/tso-defer.pkt")
    assert run_script(script, ModelTarget()).passed
    eager = script.events[:]
    i = next(k for k, e in enumerate(eager) if "1:1001(1000)" in e.text and e.line > 30)
    text = Path(script.path).read_text().splitlines()
    text.insert(eager[i].line - 2, "+0    > . 11001:12001(1000) ack 1")   # what sending at once would look like
    r = run_text("\n".join(text) + "\n")
    assert not r.passed and "11001:12001" in r.failure.text
