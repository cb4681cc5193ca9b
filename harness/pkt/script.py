"""packetdrill's script language, parsed into events.

Written from packetdrill's documented grammar (google/packetdrill, its README and the
`parser.y` grammar's productions) and its example scripts; no code taken from there.

A script is a list of lines, one event each (a `%{ ... }%` block may span lines):

    // comment, /* comment */
    --tolerance_usecs=10000                           an option, before the first event
    0       socket(..., SOCK_STREAM, IPPROTO_TCP) = 3 a syscall and what it returns
    +0.1    < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>   inbound
    0.2~0.3 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>      outbound
    *       > . 1:1(0) ack 1                          any time
    +0      connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
    +0      `sysctl -q net.ipv4.tcp_timestamps=0`     a shell command
    0.1...0.2 read(4, ..., 10) = 10                   a blocking call: starts, returns

Times are seconds: absolute from the script's start, `+x` relative to the previous event,
`a~b` a range. Sequence numbers are relative: the remote's to the remote's ISN, the
local's to the local's ISN (packetdrill's convention).

Two extensions of the project's own (packetdrill has neither):

    +0      < S 0:0(0) win 65535 <mss 1460> flow 2    a segment of the remote's second flow
    +0      console "TCP: request_sock_TCP: Possible SYN flooding on port 8080. ..."

`flow N` (1 to MAX_FLOWS, default 1) puts a segment on the remote's Nth port, so a script
can be several peers at once (a backlog filled by SYNs from different ports); each flow has
its own local ISN and TS offset, learnt from its own SYN or SYN-ACK. `console "TEXT"`
expects the kernel to print TEXT (the message after printk's `[time]` stamp) by the
event's time; in TEXT a backslash escapes a double quote or a backslash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from models.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    TCPOPT_EOL,
    TCPOPT_MSS,
    TCPOPT_NOP,
    TCPOPT_SACK,
    TCPOPT_SACK_PERM,
    TCPOPT_TIMESTAMP,
    TCPOPT_WINDOW,
    URG,
)

__all__ = [
    "PktSyntaxError", "EventTime", "Segment", "Syscall", "Shell", "Python", "Console", "Event", "Script",
    "parse_script", "parse_file", "FLAG_LETTERS", "OPTIONS_UNCHECKED", "MAX_FLOWS",
]

# packetdrill's flag letters; "." is ACK
FLAG_LETTERS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "U": URG, "E": ECE, "W": CWR}
OPTIONS_UNCHECKED = "..."   # `<...>`: the outbound segment's options are not compared
MAX_FLOWS = 16              # `flow N`: the remote's ports a script may use

# options a script may set at its top, and their types
SCRIPT_OPTIONS = {"tolerance_usecs": int, "tolerance_percent": float}


class PktSyntaxError(ValueError):
    """A script that does not parse: the file, line and column (both from 1) and why."""

    def __init__(self, path: str, line: int, col: int, msg: str):
        self.path, self.line, self.col, self.msg = path, line, col, msg
        super().__init__(f"{path}:{line}:{col}: {msg}")


@dataclass(frozen=True)
class EventTime:
    """When an event happens: `start` (and `end` for a range `a~b`) in microseconds,
    `relative` for `+x`; `any` for `*`. `blocking_end` is the return time of `a...b`."""

    start: int = 0
    end: int | None = None
    relative: bool = False
    end_relative: bool = False
    any: bool = False
    blocking_end: int | None = None

    def describe(self) -> str:
        if self.any:
            return "*"
        s = ("+" if self.relative else "") + f"{self.start / 1e6:g}"
        if self.end is not None:
            s += "~" + ("+" if self.end_relative else "") + f"{self.end / 1e6:g}"
        return s


@dataclass(frozen=True)
class Segment:
    """A TCP segment line: `direction` '<' (inbound, to the local stack) or '>' (outbound).
    `options` None: no option list (none expected); OPTIONS_UNCHECKED for `<...>`; else the
    options in order as (kind, value) pairs as models.wire.tcp keeps them. `flow`: which
    of the remote's ports (1, its first, unless the line says `flow N`)."""

    direction: str
    flags: int
    seq: int
    end: int
    length: int
    ack: int | None = None
    win: int | None = None
    options: tuple | str | None = None
    flow: int = 1

    def describe(self) -> str:
        return describe_segment(self.direction, self.flags, self.seq, self.length, self.ack, self.win, self.options,
                                self.flow)


def flags_letters(flags: int) -> str:
    return "".join(ch for ch, bit in FLAG_LETTERS.items() if ch != "." and flags & bit) + ("." if flags & ACK else "")


def describe_options(options: tuple | str | None) -> str:
    if options is None:
        return ""
    if options == OPTIONS_UNCHECKED:
        return " <...>"
    names = []
    for kind, value in options:
        if kind == TCPOPT_MSS:
            names.append(f"mss {value}")
        elif kind == TCPOPT_SACK_PERM:
            names.append("sackOK")
        elif kind == TCPOPT_TIMESTAMP:
            names.append(f"TS val {value[0]} ecr {value[1]}")
        elif kind == TCPOPT_NOP:
            names.append("nop")
        elif kind == TCPOPT_WINDOW:
            names.append(f"wscale {value}")
        elif kind == TCPOPT_SACK:
            names.append("sack " + " ".join(f"{a}:{b}" for a, b in value))
        elif kind == TCPOPT_EOL:
            names.append("eol")
        else:
            names.append(f"opt{kind}")
    return " <" + ",".join(names) + ">"


def describe_segment(direction: str, flags: int, seq: int, length: int, ack: int | None, win: int | None,
                     options, flow: int = 1) -> str:
    s = f"{direction} {flags_letters(flags)} {seq}:{(seq + length) % (1 << 32)}({length})"
    if ack is not None:
        s += f" ack {ack}"
    if win is not None:
        s += f" win {win}"
    return s + describe_options(options) + (f" flow {flow}" if flow != 1 else "")


@dataclass(frozen=True)
class Syscall:
    """`name(args) = ret [ERRNO]`. Args are ints, names (`SOL_SOCKET`, `O_RDWR|O_NONBLOCK`
    as a tuple of names), `...` (Ellipsis), `[x]` (a one-element list) or strings."""

    name: str
    args: tuple
    ret: int
    errno: str | None = None


@dataclass(frozen=True)
class Shell:
    command: str


@dataclass(frozen=True)
class Python:
    code: str


@dataclass(frozen=True)
class Console:
    """`console "TEXT"`: the kernel prints TEXT (a console line less its printk stamp)."""

    text: str


@dataclass(frozen=True)
class Event:
    line: int
    time: EventTime
    action: Segment | Syscall | Shell | Python | Console
    text: str


@dataclass
class Script:
    path: str
    events: list[Event]
    options: dict = field(default_factory=dict)


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<ellipsis>\.\.\.)
  | (?P<num>0[xX][0-9a-fA-F]+|\d+\.\d*|\.\d+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<punct>[<>()\[\]{},=:|~+\-*.])
  | (?P<other>\S)
""", re.VERBOSE)


@dataclass
class _Tok:
    kind: str
    text: str
    col: int   # from 1


class _Line:
    """The tokens of one statement, and a cursor over them."""

    def __init__(self, path: str, lineno: int, text: str, col0: int = 0):
        self.path, self.lineno, self.text = path, lineno, text
        self.toks: list[_Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m.lastgroup != "ws":
                self.toks.append(_Tok(m.lastgroup, m.group(), col0 + pos + 1))
            pos = m.end()
        self.i = 0
        self.end_col = col0 + len(text.rstrip()) + 1

    def error(self, msg: str, tok: _Tok | None = None) -> PktSyntaxError:
        tok = tok if tok is not None else self.peek()
        col = tok.col if tok is not None else self.end_col
        return PktSyntaxError(self.path, self.lineno, col, msg)

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t.text == text

    def take(self) -> _Tok:
        t = self.peek()
        if t is None:
            raise self.error("unexpected end of line")
        self.i += 1
        return t

    def expect(self, text: str, what: str | None = None) -> _Tok:
        t = self.peek()
        if t is None or t.text != text:
            found = "end of line" if t is None else repr(t.text)
            raise self.error(f"expected {what or repr(text)}, found {found}")
        self.i += 1
        return t

    def int_(self, what: str) -> int:
        neg = False
        if self.at("-"):
            self.take()
            neg = True
        t = self.peek()
        if t is None or t.kind != "num" or "." in t.text:
            found = "end of line" if t is None else repr(t.text)
            raise self.error(f"expected {what} (an integer), found {found}")
        self.i += 1
        value = int(t.text, 0)
        return -value if neg else value

    def done(self) -> bool:
        return self.i >= len(self.toks)


def _usecs(tok: _Tok, line: _Line) -> int:
    if tok.kind != "num" or tok.text.lower().startswith("0x"):
        raise line.error(f"expected a time in seconds, found {tok.text!r}", tok)
    return int(round(float(tok.text) * 1_000_000))


def _parse_time(line: _Line) -> EventTime:
    if line.at("*"):
        line.take()
        return EventTime(any=True)
    rel = False
    if line.at("+"):
        line.take()
        rel = True
    t = line.peek()
    if t is None:
        raise line.error("expected a time")
    start = _usecs(line.take(), line)
    if line.at("~"):
        line.take()
        end_rel = False
        if line.at("+"):
            line.take()
            end_rel = True
        if line.peek() is None:
            raise line.error("expected the end of the time range")
        end = _usecs(line.take(), line)
        if not end_rel and not rel and end < start:
            raise line.error("time range ends before it starts", t)
        return EventTime(start, end, rel, end_rel)
    if line.at("..."):
        line.take()
        if line.peek() is None:
            raise line.error("expected the time the blocking call returns")
        end = _usecs(line.take(), line)
        return EventTime(start, None, rel, blocking_end=end)
    return EventTime(start, None, rel)


def _parse_flags(line: _Line) -> int:
    # letters and dots run together ("S.", "FP.", "."); the tokenizer splits names from dots
    flags = 0
    seen = False
    while True:
        t = line.peek()
        if t is None:
            break
        if t.text == ".":
            flags |= ACK
        elif t.kind == "name" and all(ch in FLAG_LETTERS for ch in t.text):
            for ch in t.text:
                flags |= FLAG_LETTERS[ch]
        else:
            break
        line.take()
        seen = True
        nxt = line.peek()
        if nxt is None or nxt.col != t.col + len(t.text):
            break   # flags are one word
    if not seen:
        raise line.error("expected TCP flags (S, ., P, F, R, E, W, U, e.g. 'S.')")
    return flags


def _parse_options(line: _Line) -> tuple | str:
    line.expect("<")
    if line.at("..."):
        line.take()
        line.expect(">")
        return OPTIONS_UNCHECKED
    opts: list = []
    while True:
        t = line.take()
        name = t.text
        if t.kind != "name":
            raise line.error(f"expected a TCP option (mss, sackOK, TS, nop, wscale, sack, eol), found {name!r}", t)
        if name == "mss":
            opts.append((TCPOPT_MSS, line.int_("the MSS")))
        elif name == "sackOK":
            opts.append((TCPOPT_SACK_PERM, None))
        elif name == "TS":
            line.expect("val", "'val'")
            val = line.int_("the TS value")
            line.expect("ecr", "'ecr'")
            opts.append((TCPOPT_TIMESTAMP, (val, line.int_("the TS echo reply"))))
        elif name == "nop":
            opts.append((TCPOPT_NOP, None))
        elif name == "eol":
            opts.append((TCPOPT_EOL, b""))
        elif name == "wscale":
            opts.append((TCPOPT_WINDOW, line.int_("the window scale")))
        elif name == "sack":
            blocks = []
            while line.peek() is not None and line.peek().kind == "num":
                left = line.int_("a SACK block's left edge")
                line.expect(":")
                blocks.append((left, line.int_("a SACK block's right edge")))
            if not blocks:
                raise line.error("expected SACK blocks (left:right ...)")
            opts.append((TCPOPT_SACK, tuple(blocks)))
        else:
            raise line.error(f"unknown TCP option {name!r} (mss, sackOK, TS, nop, wscale, sack, eol)", t)
        if line.at(">"):
            line.take()
            return tuple(opts)
        line.expect(",", "',' or '>'")


def _parse_segment(line: _Line) -> Segment:
    direction = line.take().text
    flags = _parse_flags(line)
    seq = line.int_("the start sequence number")
    line.expect(":", "':' (seq:end(len))")
    end = line.int_("the end sequence number")
    line.expect("(", "'(' (seq:end(len))")
    length = line.int_("the payload length")
    line.expect(")")
    if (end - seq) % (1 << 32) != length:
        raise line.error(f"{seq}:{end} is {(end - seq) % (1 << 32)} bytes, not ({length})")
    ack = win = options = None
    flow = 1
    while not line.done():
        t = line.peek()
        if t.text == "ack":
            line.take()
            ack = line.int_("the ACK number")
        elif t.text == "win":
            line.take()
            win = line.int_("the window")
        elif t.text == "<":
            options = _parse_options(line)
        elif t.text == "flow":
            line.take()
            flow_tok = line.peek()
            flow = line.int_("the flow number")
            if not 1 <= flow <= MAX_FLOWS:
                raise line.error(f"flow {flow}: a flow is 1 to {MAX_FLOWS}", flow_tok)
        else:
            raise line.error(f"expected 'ack', 'win', '<options>' or 'flow', found {t.text!r}")
    if ack is not None and not flags & ACK:
        raise line.error("'ack N' on a segment without the ACK flag ('.')")
    return Segment(direction, flags, seq % (1 << 32), end % (1 << 32), length, ack, win, options, flow)


def _parse_console(line: _Line) -> Console:
    """`console "TEXT"`: one double-quoted string, `\\"` and `\\\\` its only escapes."""
    line.take()
    t = line.peek()
    if t is None or t.kind != "str":
        if t is not None and t.text == '"':
            raise line.error("unterminated string: the console line has no closing '\"'", t)
        found = "end of line" if t is None else repr(t.text)
        raise line.error(f"expected the console line in double quotes, found {found}")
    line.take()
    body, text, i = t.text[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            if body[i + 1] not in '"\\':
                raise PktSyntaxError(line.path, line.lineno, t.col + i + 1,
                                     f"unknown escape '\\{body[i + 1]}' in the console line (only \\\" and \\\\)")
            i += 1
        text.append(body[i])
        i += 1
    if not line.done():
        raise line.error(f"unexpected {line.peek().text!r} after the console line")
    if not text:
        raise line.error("an empty console line", t)
    return Console("".join(text))


def _parse_arg(line: _Line):
    t = line.peek()
    if t is None:
        raise line.error("expected an argument")
    if t.text == "...":
        line.take()
        return Ellipsis
    if t.text == "[":
        line.take()
        value = _parse_arg(line) if not line.at("]") else None
        line.expect("]")
        return [value]
    if t.text == "{":   # a struct: kept as text, no syscall here reads one
        depth, parts = 0, []
        while True:
            tok = line.take()
            parts.append(tok.text)
            depth += {"{": 1, "}": -1}.get(tok.text, 0)
            if depth == 0:
                return "".join(parts)
    if t.kind == "str":
        line.take()
        return t.text[1:-1]
    if t.kind == "num" or t.text == "-":
        return line.int_("a number")
    if t.kind == "name":
        names = [line.take().text]
        while line.at("|"):
            line.take()
            nt = line.take()
            if nt.kind != "name":
                raise line.error(f"expected a flag name after '|', found {nt.text!r}", nt)
            names.append(nt.text)
        return names[0] if len(names) == 1 else tuple(names)
    raise line.error(f"unexpected {t.text!r} in the arguments")


def _parse_syscall(line: _Line) -> Syscall:
    name = line.take().text
    line.expect("(", "'(' after the syscall's name")
    args = []
    if not line.at(")"):
        while True:
            args.append(_parse_arg(line))
            if line.at(")"):
                break
            line.expect(",", "',' or ')'")
    line.expect(")")
    line.expect("=", "'= RESULT' after the syscall")
    ret_tok = line.peek()
    ret = line.int_("the return value")
    errno = None
    t = line.peek()
    if t is not None and t.kind == "name" and t.text.startswith("E") and t.text.isupper():
        errno = line.take().text
    if line.at("("):   # the errno's text, or a flags comment: prose
        line.i = len(line.toks)
    if not line.done():
        raise line.error(f"unexpected {line.peek().text!r} after the return value")
    if ret == -1 and errno is None:
        raise line.error("a syscall returning -1 names its errno (e.g. '= -1 EAGAIN')", ret_tok)
    return Syscall(name, tuple(args), ret, errno)


def _strip_comments(text: str, in_block: bool) -> tuple[str, bool]:
    """Blank out // and /* */ comments (keeping columns); returns whether a block is open."""
    out = []
    i = 0
    while i < len(text):
        if in_block:
            j = text.find("*/", i)
            if j < 0:
                out.append(" " * (len(text) - i))
                return "".join(out), True
            out.append(" " * (j + 2 - i))
            i = j + 2
            in_block = False
        elif text.startswith("//", i):
            out.append(" " * (len(text) - i))
            break
        elif text.startswith("/*", i):
            in_block = True
        elif text[i] == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out), in_block


def parse_script(text: str, path: str = "<script>") -> Script:
    """Parse a script; a PktSyntaxError names the file, line and column of what is wrong."""
    events: list[Event] = []
    options: dict = {}
    lines = text.split("\n")
    in_block = False
    block_start = (0, 0)
    n = 0
    while n < len(lines):
        lineno = n + 1
        raw = lines[n]
        n += 1
        was_in_block = in_block
        code, in_block = _strip_comments(raw, in_block)
        if in_block and not was_in_block:
            block_start = (lineno, raw.rfind("/*") + 1)
        if not code.strip():
            continue
        stripped = code.lstrip()
        indent = len(code) - len(stripped)
        if stripped.startswith("--"):
            if events:
                raise PktSyntaxError(path, lineno, indent + 1, "options come before the first event")
            m = re.fullmatch(r"--([A-Za-z_]+)=(\S+)\s*", stripped)
            if m is None or m.group(1) not in SCRIPT_OPTIONS:
                raise PktSyntaxError(path, lineno, indent + 1,
                                     f"unknown option line {stripped.strip()!r} (known: "
                                     + ", ".join(f"--{k}=N" for k in SCRIPT_OPTIONS) + ")")
            try:
                options[m.group(1)] = SCRIPT_OPTIONS[m.group(1)](m.group(2))
            except ValueError:
                raise PktSyntaxError(path, lineno, indent + 3 + len(m.group(1)),
                                     f"--{m.group(1)} takes a number, not {m.group(2)!r}") from None
            continue
        # the time, then the action
        tick = code.find("`")
        pct = code.find("%{")
        cut = min(x for x in (tick, pct, len(code)) if x >= 0)
        line = _Line(path, lineno, code[:cut])
        if line.done():
            raise line.error("expected a time at the start of the event")
        time = _parse_time(line)
        if cut < len(code):
            if not line.done():
                raise line.error(f"unexpected {line.peek().text!r} before the command")
            if cut == tick:
                close = code.find("`", tick + 1)
                if close < 0:
                    raise PktSyntaxError(path, lineno, tick + 1, "unterminated `shell command`")
                if code[close + 1:].strip():
                    raise PktSyntaxError(path, lineno, close + 2, "unexpected text after the shell command")
                action = Shell(code[tick + 1:close])
            else:
                body = [raw[pct + 2:]]
                while "}%" not in body[-1]:
                    if n >= len(lines):
                        raise PktSyntaxError(path, lineno, pct + 1, "unterminated %{ python }% block")
                    body.append(lines[n])
                    n += 1
                action = Python("\n".join(body).split("}%")[0])
            events.append(Event(lineno, time, action, raw.strip()))
            continue
        t = line.peek()
        if t is None:
            raise line.error("expected a packet ('<' or '>') or a syscall after the time")
        if t.text in ("<", ">"):
            action = _parse_segment(line)
        elif t.kind == "name" and line.peek(1) is not None and line.peek(1).text == "(":
            action = _parse_syscall(line)
        elif t.text == "console":
            action = _parse_console(line)
        else:
            raise line.error(f"expected a packet ('<' or '>'), a syscall or a console line, found {t.text!r}")
        if time.blocking_end is not None and not isinstance(action, Syscall):
            raise PktSyntaxError(path, lineno, 1, "a 'start...end' time is for a blocking syscall")
        events.append(Event(lineno, time, action, raw.strip()))
    if in_block:
        raise PktSyntaxError(path, *block_start, "unterminated /* comment")
    return Script(path, events, options)


def parse_file(path: str | Path) -> Script:
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PktSyntaxError(str(p), 0, 0, f"cannot read the script: {exc}") from exc
    return parse_script(text, str(p))
