"""A running emulated board that other `bmc-hil` processes can reach.

`bmc-hil boot` (without --check) keeps the board up and writes a session file with the
local endpoints (console proxy, SSH forward, QMP control socket). `bmc-hil console`,
`ssh`, `link`, `power` and `qmp` with `--board emulated` read it. It holds no password:
SSH uses the harness's key.

What another process does to the board (`bmc-hil link down`, `power cycle`) is recorded
in the running board's host-events.jsonl beside the board's own records, with `by`
naming the command, so the session's artifacts say everything that was done to it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import cache_dir

# Records that set the link: the board's own (link_down_reasserted after a reset keeps it
# down) and those of `bmc-hil link`.
LINK_EVENTS = {"link_up", "link_down", "link_down_reasserted"}
_LINK_LINE = re.compile(r": Link is (Up|Down)")


@dataclass(frozen=True)
class Session:
    name: str
    pid: int
    console_url: str
    ssh_host: str
    ssh_port: int
    ssh_user: str
    key_file: str
    control_socket: str
    out_dir: str
    forwards: dict

    @staticmethod
    def path_for(name: str) -> Path:
        from harness.paths import safe_name

        d = cache_dir() / "sessions"
        d.mkdir(exist_ok=True)
        return d / f"{safe_name(name)}.json"   # a board's name is the user's text

    def save(self) -> Path:
        path = self.path_for(self.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.rename(path)
        return path

    def remove(self) -> None:
        self.path_for(self.name).unlink(missing_ok=True)

    @property
    def host_events(self) -> Path:
        return Path(self.out_dir) / "host-events.jsonl"

    @property
    def console_log(self) -> Path:
        return Path(self.out_dir) / "console.log"

    def record(self, name: str, by: str, **detail) -> dict:
        """Append a record of what `by` (another bmc-hil command) did to the board, in
        harness.board.base.HostEvent's format. One write of one line: appends from two
        processes do not interleave."""
        rec = {"event": name, "host_monotonic_ns": time.monotonic_ns(), "host_wall_ns": time.time_ns(),
               "by": by, **detail}
        fd = os.open(self.host_events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(rec) + "\n").encode())
        finally:
            os.close(fd)
        return rec

    def records(self, names: set[str] | None = None) -> list[dict]:
        """The board's host events so far (the board's own and other commands'), those
        named in `names` if given. A line cut short by a write in progress is skipped."""
        try:
            text = self.host_events.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and (names is None or rec.get("event") in names):
                out.append(rec)
        return out

    def link_record(self) -> dict | None:
        """The last record that set the link (None: never changed since power-on, so up)."""
        recs = self.records(LINK_EVENTS)
        return recs[-1] if recs else None

    def last_link_line(self) -> tuple[float, str] | None:
        """The board's own word: the last `Link is Up/Down` line of its console log, as
        (host wall seconds, text)."""
        try:
            lines = self.console_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            if _LINK_LINE.search(line):
                stamp, _, text = line.partition(" ")
                try:
                    return float(stamp), text
                except ValueError:
                    continue
        return None

    @classmethod
    def load(cls, name: str) -> Session:
        path = cls.path_for(name)
        if not path.exists():
            raise HarnessError(f"no running board named {name!r}; start one with `bmc-hil boot` "
                               "(it keeps the board up until Ctrl-C)")
        data = json.loads(path.read_text())
        session = cls(**data)
        try:
            os.kill(session.pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            raise HarnessError(f"the board {name!r} is no longer running (its `bmc-hil boot`, pid "
                               f"{session.pid}, has exited)") from None
        return session
