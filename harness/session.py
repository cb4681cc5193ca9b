"""A running emulated board that other `bmc-hil` processes can reach.

`bmc-hil boot` (without --check) keeps the board up and writes a session file with the
local endpoints (console proxy, SSH forward, QMP control socket). `bmc-hil console`,
`ssh` and `link` with `--board emulated` read it. It holds no password: SSH uses the
harness's key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import cache_dir


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
        d = cache_dir() / "sessions"
        d.mkdir(exist_ok=True)
        return d / f"{name}.json"

    def save(self) -> Path:
        path = self.path_for(self.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.rename(path)
        return path

    def remove(self) -> None:
        self.path_for(self.name).unlink(missing_ok=True)

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
