"""Child processes the harness starts (QEMU, capture) never outlive it."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """`preexec_fn`: the child gets SIGKILL when the harness dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
