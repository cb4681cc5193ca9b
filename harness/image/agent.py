"""The syscall agent of `bmc-hil pkt --target board` (harness/pkt/agent/pktagent.c),
cross-compiled for the board: a static ARM EABI binary with no dependency on the board's
libc, so the same file runs on the emulated board and on a real AST2500. Cached under a
hash of the source, the flags and the compiler's version."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from harness.errors import ImageBuildError
from harness.paths import cache_dir

AGENT_SOURCE = Path(__file__).resolve().parent.parent / "pkt" / "agent" / "pktagent.c"
CROSS_CC = "arm-linux-gnueabi-gcc"
AGENT_CFLAGS = ("-static", "-pthread", "-Os", "-Wall", "-Wextra", "-Werror", "-s")
# Where the initramfs puts it; the board target runs it by this name.
AGENT_BOARD_PATH = "/usr/bin/pktagent"


def _compiler_version() -> str:
    if shutil.which(CROSS_CC) is None:
        raise ImageBuildError(f"{CROSS_CC} not found on PATH; run `bmc-hil setup` (packages "
                              "gcc-arm-linux-gnueabi and libc6-dev-armel-cross)")
    proc = subprocess.run([CROSS_CC, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.stdout else ""


def agent_key() -> str:
    """What the binary depends on, hashed: part of the initramfs's cache key."""
    h = hashlib.sha256(AGENT_SOURCE.read_bytes())
    h.update(" ".join(AGENT_CFLAGS).encode())
    h.update(_compiler_version().encode())
    return h.hexdigest()[:16]


def build_agent(log=print) -> Path:
    """The cached agent binary, compiled (about a second) on a miss."""
    out = cache_dir() / "agent" / f"pktagent-{agent_key()}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"agent: compiling {AGENT_SOURCE.name}")
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([CROSS_CC, *AGENT_CFLAGS, "-o", str(tmp), str(AGENT_SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ImageBuildError(f"{CROSS_CC} failed on {AGENT_SOURCE.name}:\n{proc.stderr.strip()}")
    tmp.rename(out)
    return out
