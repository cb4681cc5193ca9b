"""Run a packetdrill-syntax script against a target and match what it sends.

The matching rules, as packetdrill has them:
- Times: `+x` is relative to the previous event's actual time (an outbound segment's
  actual time is when the target sent it, a call's when it began), so errors do not add
  up; absolute times move by as much as a call began late; `*` is any time.
  An outbound segment may come within a tolerance of its time: max(--tolerance_usecs,
  default 4000 us, and 12.5 % (tolerance_percent) of the gap since the previous event).
- Sequence numbers are relative: the remote's to the ISN the runner gives it, the local
  stack's to the ISN of its first SYN (or SYN-ACK). An outbound segment must match the
  script's flags, start:end(len), `ack` and `win` when given, and its options in order
  (none when the script gives none, anything for `<...>`). Outbound TS val is mapped to
  the script's (the first one fixes the offset, and inbound `ecr` is translated with it);
  later ones are checked only for monotony and the 1 ms TS clock (within the tolerance,
  and the target's late slack: a segment reaches the wire after its TS val was stamped);
  `ecr` must be what the script wrote (the remote's TS values are the script's own).
- Flows (`flow N`, the project's extension): the remote's Nth port is REMOTE_PORT + N - 1.
  Each flow is its own connection: its local ISN, TS offset and TS clock check are its own,
  learnt from its own first SYN or SYN-ACK (Linux draws both per 4-tuple:
  secure_tcp_seq_and_ts_off), and an inbound SYN with a sequence number the flow has not
  sent before starts a new connection on it (learnt afresh). A SYN-ACK's TS val may be up
  to 2^TSBITS - 1 ms behind the clock: a syncookie's (cookie_init_timestamp keeps the
  options in its low bits), so the step after it may be that much more than the clock.
- Console lines (`console "TEXT"`, the project's extension): time runs to the line's time
  and the kernel must have printed TEXT by then (not before the window's start, less the
  tolerance). A target that sees its console late (the board's UART) may show it up to
  the tolerance and its `console_slack_ns` later. Lines come in order: one the kernel
  printed before the line a console event takes, or still untaken at the end, fails as
  unexpected, as a segment does.
- A segment the target sends that no script line expects is a failure (packetdrill's
  "unexpected packet"), as is a syscall whose result or errno differs.
Every failure names the script line, what it expected and what came.
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass, field

from models.syncookies import TSBITS
from models.wire.tcp import ACK, SYN, TCPOPT_SACK, TCPOPT_TIMESTAMP, TcpRepr

from .script import MAX_FLOWS, OPTIONS_UNCHECKED, Console, Event, Python, Segment, Shell, Syscall, describe_segment
from .target import NotModelled, Sent, SyscallOutcome, Target, TargetError

__all__ = ["Failure", "ScriptResult", "run_script", "DEFAULT_TOLERANCE_USECS", "DEFAULT_TOLERANCE_PERCENT",
           "REMOTE_ISN", "REMOTE_PORT", "LOCAL_PORT"]

DEFAULT_TOLERANCE_USECS = 4000
DEFAULT_TOLERANCE_PERCENT = 12.5
REMOTE_ISN = 0x5EED0000   # the remote's ISN: inbound sequence numbers are relative to it
REMOTE_PORT = 47001       # the remote's port
LOCAL_PORT = 8080         # bind(fd, ...) and connect(fd, ...) use packetdrill's 8080
MOD32 = 1 << 32
INBOUND_WINDOW = 65535    # an inbound segment without `win`
CONSOLE_POLL_NS = 5_000_000   # how often a target that sees its console late is asked again


@dataclass
class Failure:
    line: int
    text: str
    message: str
    expected: str | None = None
    actual: str | None = None
    # calls before the failing line that began later than the tolerance (a board's agent
    # may, by up to pkt_call_latency): where the kernel's answer hangs on a call's time
    # (ato, pingpong), the cause may be the call's lateness, not the stack
    late_calls: list[str] = field(default_factory=list)

    def describe(self, path: str) -> str:
        s = f"{path}:{self.line}: {self.message}\n    script:   {self.text}"
        if self.expected:
            s += f"\n    expected: {self.expected}"
        if self.actual:
            s += f"\n    actual:   {self.actual}"
        if self.late_calls:
            s += f"\n    calls that began late: {'; '.join(self.late_calls)}"
        return s


@dataclass
class ScriptResult:
    path: str
    target: str
    failure: Failure | None = None
    events: int = 0
    notes: list[str] = field(default_factory=list)   # how the target mapped the script
    offsets_ns: list[int] = field(default_factory=list)   # each timed outbound segment's, see _match_outbound
    call_lates_ns: list[int] = field(default_factory=list)   # calls answered later: how late each began

    @property
    def passed(self) -> bool:
        return self.failure is None

    def to_json(self) -> dict:
        d = {"script": self.path, "target": self.target, "passed": self.passed, "events": self.events}
        if self.notes:
            d["notes"] = self.notes
        if self.offsets_ns:
            d["offsets_ms"] = [round(o / 1e6, 3) for o in self.offsets_ns]
        if self.failure:
            f = self.failure
            d["failure"] = {"line": f.line, "script_line": f.text, "message": f.message,
                            "expected": f.expected, "actual": f.actual}
            if f.late_calls:
                d["failure"]["late_calls"] = f.late_calls
        return d


class _Fail(Exception):
    def __init__(self, failure: Failure):
        self.failure = failure


@dataclass
class _Flow:
    """What the runner learnt of one of the remote's flows (one connection at a time)."""

    local_isn: int | None = None
    local_port: int = LOCAL_PORT
    ts_offset: int | None = None                 # actual TS val - script TS val
    last_ts: tuple[int, int, bool] | None = None   # (actual TS val, sent at ns, on a SYN-ACK) of the last outbound
    syn_seq: int | None = None                   # the remote's SYN (script seq) of the connection


@dataclass
class _State:
    target: Target
    tol_usecs: int
    tol_percent: float
    flows: dict[int, _Flow] = field(default_factory=dict)
    prev_ns: int = 0
    queue: list[Sent] = field(default_factory=list)
    console: list[tuple[int, str]] = field(default_factory=list)   # kernel lines seen, not yet taken
    offsets: list[int] = field(default_factory=list)   # outbound actual - script time, ns (0: inside)
    pending: list = field(default_factory=list)   # (event, call, time, PendingCall) not yet answered
    last_call_at: int = 0                         # when the last answered call began
    shift_ns: int = 0                             # how far absolute script times moved (a late call)
    call_lates: list[int] = field(default_factory=list)   # answered calls: began - their time, ns
    late_calls: list[tuple[int, str, int]] = field(default_factory=list)   # (line, call, ns) past the tolerance

    def flow(self, n: int) -> _Flow:
        return self.flows.setdefault(n, _Flow())


def _fmt_time(ns: int) -> str:
    return f"{ns / 1e9:.6f}".rstrip("0").rstrip(".") + " s"


def _flow_of(sent: Sent) -> int:
    """The script's flow a segment the target sent goes to (by its remote port)."""
    n = sent.tcp.dst_port - REMOTE_PORT + 1
    return n if 1 <= n <= MAX_FLOWS else 1


def _rel_local(fl: _Flow, value: int) -> int:
    return (value - (fl.local_isn or 0)) % MOD32


def _rel_remote(value: int) -> int:
    return (value - REMOTE_ISN) % MOD32


def _actual_options(fl: _Flow, tcp: TcpRepr) -> tuple:
    """The segment's options as the script would write them (TS val mapped, SACK relative)."""
    out = []
    for kind, value in tcp.options:
        if kind == TCPOPT_TIMESTAMP and fl.ts_offset is not None:
            value = ((value[0] - fl.ts_offset) % MOD32, value[1])
        elif kind == TCPOPT_SACK:
            value = tuple((_rel_remote(a), _rel_remote(b)) for a, b in value)
        out.append((kind, value))
    return tuple(out)


def _describe_sent(st: _State, sent: Sent) -> str:
    t = sent.tcp
    n = _flow_of(sent)
    fl = st.flow(n)
    text = describe_segment(">", t.flags, _rel_local(fl, t.seq), len(sent.payload),
                            _rel_remote(t.ack) if t.flags & ACK else None, t.window,
                            _actual_options(fl, t) or None, n)
    when = _fmt_time(sent.at)
    if sent.window is not None:
        when = f"{_fmt_time(sent.window.earliest)}..{_fmt_time(sent.window.latest)}"
    return f"{text} at {when}"


def _tolerance_ns(st: _State, gap_ns: int) -> int:
    return max(st.tol_usecs * 1000, int(gap_ns * st.tol_percent / 100))


def _expected_window(st: _State, ev: Event) -> tuple[int, int]:
    t = ev.time
    start = t.start * 1000 + (st.prev_ns if t.relative else st.shift_ns)
    end = start if t.end is None else t.end * 1000 + (st.prev_ns if t.end_relative else st.shift_ns)
    return start, end


def _fail(ev: Event, message: str, expected: str | None = None, actual: str | None = None) -> _Fail:
    return _Fail(Failure(ev.line, ev.text, message, expected, actual))


def _check_unexpected(st: _State, ev: Event, at_ns: int) -> None:
    """A segment sent well before this event that no earlier line took is unexpected."""
    for sent in st.queue:
        latest = sent.window.latest if sent.window else sent.at
        if latest < at_ns - st.tol_usecs * 1000:
            raise _fail(ev, "unexpected outbound segment: the target sent it and no script line before this "
                            "one expects it", actual=_describe_sent(st, sent))


def _inbound(st: _State, ev: Event, seg: Segment, at_ns: int) -> int:
    fl = st.flow(seg.flow)
    if seg.flags & SYN and not seg.flags & ACK:
        if fl.syn_seq is not None and seg.seq != fl.syn_seq:
            # a SYN the flow has not sent before: a new connection, with its own ISN and
            # TS offset (a retransmitted SYN belongs to the connection it began)
            fl.local_isn = fl.ts_offset = fl.last_ts = None
        fl.syn_seq = seg.seq
    isn = fl.local_isn or 0
    opts = []
    if isinstance(seg.options, tuple):
        for kind, value in seg.options:
            if kind == TCPOPT_TIMESTAMP:
                val, ecr = value
                if ecr and fl.ts_offset is not None:
                    ecr = (ecr + fl.ts_offset) % MOD32
                value = (val, ecr)
            elif kind == TCPOPT_SACK:
                value = tuple(((a + isn) % MOD32, (b + isn) % MOD32) for a, b in value)
            opts.append((kind, value))
    elif seg.options == OPTIONS_UNCHECKED:
        raise _fail(ev, "an inbound segment needs its options written out, not <...>")
    ack = (seg.ack + isn) % MOD32 if seg.ack is not None else 0
    remote_port = REMOTE_PORT + seg.flow - 1
    tcp = TcpRepr(remote_port, fl.local_port, (REMOTE_ISN + seg.seq) % MOD32, ack, seg.flags,
                  INBOUND_WINDOW if seg.win is None else seg.win, tuple(opts))
    try:
        tcp.options_bytes()
    except ValueError as exc:
        raise _fail(ev, f"bad inbound options: {exc}") from exc
    actual = st.target.inject(at_ns, remote_port, fl.local_port, tcp, bytes(seg.length))
    return at_ns if actual is None else actual


def _match_outbound(st: _State, ev: Event, seg: Segment, sent: Sent, lo: int, hi: int, tol: int) -> int:
    """Check `sent` against the script's segment; returns the time to anchor on."""
    expected = f"{seg.describe()} at {_fmt_time(lo)}" + (f"..{_fmt_time(hi)}" if hi != lo else "") + \
        (f" (+-{tol / 1e6:g} ms)" if not ev.time.any else "")
    if ev.time.any:
        anchor = sent.at
    else:
        w0, w1 = (sent.window.earliest, sent.window.latest) if sent.window else (sent.at, sent.at)
        if w1 < lo - tol:
            raise _fail(ev, "outbound segment too early", expected, _describe_sent(st, sent))
        # how far outside the script's time it came (0: inside), for the board's figures
        st.offsets.append(w0 - hi if w0 > hi else (w1 - lo if w1 < lo else 0))
        if w0 > hi + tol + st.target.late_slack_ns:
            raise _fail(ev, "outbound segment too late", expected, _describe_sent(st, sent))
        anchor = min(max(lo, w0), w1)
    t = sent.tcp
    n = _flow_of(sent)
    fl = st.flow(n)
    if t.flags & SYN and fl.local_isn is None and n == seg.flow:
        fl.local_isn = (t.seq - seg.seq) % MOD32
        fl.local_port = t.src_port
    problems = []
    if n != seg.flow:
        problems.append("flow")
    if t.flags != seg.flags:
        problems.append("flags")
    if _rel_local(fl, t.seq) != seg.seq or len(sent.payload) != seg.length:
        problems.append("sequence numbers")
    if seg.ack is not None and (not t.flags & ACK or _rel_remote(t.ack) != seg.ack):
        problems.append("ack")
    if seg.win is not None and t.window != seg.win:
        problems.append("window")
    if seg.options != OPTIONS_UNCHECKED:
        problems += _match_options(st, fl, seg, sent)
    if problems:
        raise _fail(ev, "outbound segment differs in " + ", ".join(problems), expected, _describe_sent(st, sent))
    return anchor


def _match_options(st: _State, fl: _Flow, seg: Segment, sent: Sent) -> list[str]:
    want = tuple(seg.options or ())
    got = sent.tcp.options
    if [k for k, _ in want] != [k for k, _ in got]:
        return ["options"]
    problems = []
    for (kind, wv), (_, gv) in zip(want, got, strict=True):
        if kind == TCPOPT_TIMESTAMP:
            val, ecr = gv
            if fl.ts_offset is None:
                fl.ts_offset = (val - wv[0]) % MOD32
            elif fl.last_ts is not None:
                # packetdrill leaves TS val to the stack's clock: it must not go back, and
                # it ticks once a millisecond (tcp_time_stamp_raw: tcp_clock_ns / NSEC_PER_MSEC)
                prev_val, prev_at, prev_synack = fl.last_ts
                step = (val - prev_val) % MOD32
                elapsed_ms = (sent.at - prev_at) / 1e6
                # either segment may have reached the wire up to the target's late slack
                # after its TS val was stamped (an emulated board's transmit path)
                slack_ms = st.tol_usecs / 1000 + 1 + st.target.late_slack_ns / 1e6
                # after a SYN-ACK, a syncookie's TS val may have been behind the clock
                behind_ms = (1 << TSBITS) - 1 if prev_synack else 0
                if step >= 1 << 31 or not elapsed_ms - slack_ms <= step <= elapsed_ms + slack_ms + behind_ms:
                    problems.append(f"TS val (it moved {step - (1 << 32) if step >= 1 << 31 else step} "
                                    f"in {elapsed_ms:g} ms)")
            fl.last_ts = (val, sent.at, sent.tcp.flags & (SYN | ACK) == SYN | ACK)
            if ecr != wv[1]:
                problems.append("TS ecr")
        elif kind == TCPOPT_SACK:
            if tuple((_rel_remote(a), _rel_remote(b)) for a, b in gv) != wv:
                problems.append("SACK blocks")
        elif gv != wv:
            problems.append("options")
    return problems


def _outbound(st: _State, ev: Event, seg: Segment) -> int:
    if st.pending:
        # the segment is timed from the previous event's actual time: a call's is known
        # once it has answered (segments meanwhile are stamped where they were seen)
        _settle(st, block=True)
        st.prev_ns = max(st.prev_ns, st.last_call_at)
    late_look = st.target.late_look_ns
    if ev.time.any:
        lo, hi, tol = st.prev_ns, st.prev_ns + late_look, 0
    else:
        lo, hi = _expected_window(st, ev)
        tol = _tolerance_ns(st, lo - st.prev_ns)
    deadline = hi + tol + st.target.late_slack_ns
    if not st.queue:
        st.queue += st.target.advance(deadline, stop_at_first=True)
    if not st.queue:
        later = st.target.advance(deadline + late_look, stop_at_first=True)
        actual = _describe_sent(st, later[0]) if later else f"nothing in the {late_look / 10**9:g} s after"
        expected = f"{seg.describe()} at {_fmt_time(lo)}" + (f"..{_fmt_time(hi)}" if hi != lo else "") + \
            (f" (+-{tol / 1e6:g} ms)" if tol else "")
        raise _fail(ev, "expected outbound segment not sent", expected, actual)
    sent = st.queue.pop(0)
    return _match_outbound(st, ev, seg, sent, lo, hi, tol)


def _console(st: _State, ev: Event, want: Console) -> int:
    """Expect a kernel console line (see the module's docstring); returns the time to
    anchor on: the line's time within the event's window (the window's start for `*`,
    which takes a line printed any time up to the previous event)."""
    target = st.target
    if st.pending:
        _settle(st, block=True)
        st.prev_ns = max(st.prev_ns, st.last_call_at)
    if ev.time.any:
        lo, hi, tol = None, st.prev_ns, 0
    else:
        lo, hi = _expected_window(st, ev)
        tol = _tolerance_ns(st, lo - st.prev_ns)
        if hi < st.prev_ns - st.tol_usecs * 1000:
            raise _fail(ev, f"the script's time runs backwards: {_fmt_time(hi)} after {_fmt_time(st.prev_ns)}")
        hi = max(hi, st.prev_ns)
    st.queue += target.advance(hi)
    _check_unexpected(st, ev, hi)
    slack = target.console_slack_ns
    deadline = hi + tol + slack if slack else hi
    until = hi
    while True:
        st.console += target.console_lines()
        found = next((i for i, (_, text) in enumerate(st.console) if text == want.text), None)
        if found is not None or until >= deadline:
            break
        until = min(deadline, until + CONSOLE_POLL_NS)
        st.queue += target.advance(until)
    when = ("any time" if lo is None else _fmt_time(lo) + (f"..{_fmt_time(hi)}" if hi != lo else "")
            + (f" (+-{tol / 1e6:g} ms)" if tol else ""))
    expected = f'console "{want.text}" at {when}'
    if found is None:
        actual = "; ".join(f'"{text}" at {_fmt_time(at)}' for at, text in st.console) or \
            f"no line by {_fmt_time(deadline)}"
        raise _fail(ev, "expected console line not printed", expected, actual)
    if found:
        at, text = st.console[0]
        raise _fail(ev, "unexpected console line: the kernel printed it and no script line before this one "
                        "expects it", expected, f'"{text}" at {_fmt_time(at)}')
    at, _ = st.console.pop(0)
    if lo is None:
        return st.prev_ns
    if at < lo - tol:
        raise _fail(ev, "console line too early", expected, f'"{want.text}" at {_fmt_time(at)}')
    return min(max(lo, at), hi)


def _syscall(st: _State, ev: Event, call: Syscall, at_ns: int) -> int:
    """Run the call; returns the time to anchor on. A target that answers later (a
    board's agent, which starts the call at `at_ns` on its own clock) hands back a
    PendingCall: the script goes on, and the answer is checked when it comes."""
    try:
        outcome = st.target.syscall(at_ns, call, REMOTE_PORT, LOCAL_PORT)
    except NotModelled as exc:
        raise _fail(ev, f"not modelled on target {st.target.name}: {exc}") from exc
    if isinstance(outcome, SyscallOutcome):
        _check_outcome(ev, call, outcome)
        return at_ns if outcome.at is None else outcome.at
    st.pending.append((ev, call, at_ns, outcome))
    return at_ns


def _settle(st: _State, block: bool) -> None:
    """Check the answers of calls handed over earlier, in order; with `block`, wait for
    all of them. A call the target began later than the tolerance (and its slack) after
    its time broke the script's timing: that fails its line."""
    while st.pending:
        ev, call, at_ns, pending = st.pending[0]
        try:
            outcome = pending.result(block)
        except TargetError as exc:
            raise _fail(ev, f"target {st.target.name}: {exc}") from exc
        if outcome is None:
            return
        st.pending.pop(0)
        _check_outcome(ev, call, outcome)
        began = at_ns if outcome.at is None else outcome.at
        st.last_call_at = max(st.last_call_at, began)
        late = began - at_ns
        st.call_lates.append(late)
        if late > st.tol_usecs * 1000:
            st.late_calls.append((ev.line, call.name, late))
        # the script's absolute times move with a call that began late, as relative ones do
        st.shift_ns = max(st.shift_ns, late)
        if late > st.tol_usecs * 1000 + st.target.call_slack_ns:
            raise _fail(ev, f"target {st.target.name} began {call.name}() {late / 1e6:.1f} ms after its time: the "
                            "script's timing was not kept")


def _check_outcome(ev: Event, call: Syscall, outcome: SyscallOutcome) -> None:
    want = f"= {call.ret}" + (f" {call.errno}" if call.errno else "")
    got = f"= {outcome.ret}" + (f" {outcome.errno}" if outcome.errno else "")
    if outcome.ret != call.ret or (call.errno or None) != (outcome.errno if outcome.ret == -1 else None):
        raise _fail(ev, f"{call.name}() returned {got}", want, got)
    value_arg = {"getsockopt": 3, "ioctl": 2}.get(call.name)
    if value_arg is not None and value_arg < len(call.args):
        arg = call.args[value_arg]
        want_value = arg[0] if isinstance(arg, list) else None
        if isinstance(want_value, str) and want_value.startswith("E"):
            want_value = getattr(errno_mod, want_value, None)   # [ECONNREFUSED]: the errno's number
            if want_value is None:
                raise _fail(ev, f"unknown errno {arg[0]}")
        if isinstance(want_value, int) and outcome.value != want_value:
            raise _fail(ev, f"{call.name}() wrote {outcome.value}", f"[{arg[0]}]", f"[{outcome.value}]")


def run_script(script, target: Target, tolerance_usecs: int | None = None) -> ScriptResult:
    """Run `script` (a parsed Script) against `target`. `tolerance_usecs` (the command
    line's) overrides the script's --tolerance_usecs and the default."""
    tol = tolerance_usecs if tolerance_usecs is not None else script.options.get("tolerance_usecs",
                                                                                  DEFAULT_TOLERANCE_USECS)
    st = _State(target, tol, script.options.get("tolerance_percent", DEFAULT_TOLERANCE_PERCENT))
    result = ScriptResult(script.path, target.name)
    if not script.events:
        result.failure = Failure(0, "", "the script has no events: it checks nothing")
        return result
    try:
        for ev in script.events:
            action = ev.action
            if isinstance(action, Segment) and action.direction == ">":
                st.prev_ns = _outbound(st, ev, action)
                result.events += 1
                continue
            if isinstance(action, Console):
                st.prev_ns = _console(st, ev, action)
                result.events += 1
                continue
            if isinstance(action, (Shell, Python)):
                kind = "shell commands" if isinstance(action, Shell) else "python blocks"
                raise _fail(ev, f"not modelled on target {target.name}: {kind} (the model's sysctls are its "
                                "declared config)")
            if ev.time.blocking_end is not None:
                raise _fail(ev, f"not modelled on target {target.name}: a blocking call's 'start...end' time")
            if ev.time.any:
                raise _fail(ev, "'*' is for outbound segments")
            at, _ = _expected_window(st, ev)
            if at < st.prev_ns:
                # an absolute time just behind the last event's actual one: within the
                # tolerance, and the target's late slack (an outbound segment may come that
                # much later, and a time after it in the script is then behind it)
                if st.prev_ns - at > st.tol_usecs * 1000 + target.late_slack_ns:
                    raise _fail(ev, f"the script's time runs backwards: {_fmt_time(at)} after "
                                    f"{_fmt_time(st.prev_ns)}")
                at = st.prev_ns
            # a syscall is handed over `lead_ns` ahead: the target starts it on time itself
            st.queue += target.advance(at if isinstance(action, Segment) else at - target.lead_ns)
            _check_unexpected(st, ev, at)
            if isinstance(action, Segment):
                # events happen in order: a call handed over earlier has returned before a
                # segment reaches the target (its answer, not only its start time)
                _settle(st, block=True)
                actual = _inbound(st, ev, action, at)
            else:
                actual = _syscall(st, ev, action, at)
            st.queue += target.advance(actual)
            st.prev_ns = actual
            result.events += 1
            _settle(st, block=False)
        _settle(st, block=True)
        if st.queue:
            sent = st.queue[0]
            last = script.events[-1] if script.events else None
            raise _Fail(Failure(last.line if last else 0, last.text if last else "",
                                "unexpected outbound segment at the end of the script", actual=_describe_sent(st, sent)))
        st.console += target.console_lines()
        if st.console:
            at, text = st.console[0]
            last = script.events[-1]
            raise _Fail(Failure(last.line, last.text, "unexpected console line at the end of the script",
                                actual=f'"{text}" at {_fmt_time(at)}'))
    except _Fail as exc:
        result.failure = exc.failure
    except TargetError as exc:
        result.failure = Failure(ev.line, ev.text, f"target {target.name}: {exc}")
    if result.failure is not None and st.pending:
        # a call before the failing line may have failed first: report the earliest
        try:
            _settle(st, block=True)
        except _Fail as exc:
            if exc.failure.line < result.failure.line:
                result.failure = exc.failure
        except TargetError:
            pass
    if result.failure is not None:
        result.failure.late_calls = [f"line {line}: {name}() {late / 1e6:.1f} ms"
                                     for line, name, late in st.late_calls if line <= result.failure.line]
    result.offsets_ns = st.offsets
    result.call_lates_ns = st.call_lates
    return result
