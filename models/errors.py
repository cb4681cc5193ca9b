"""Typed errors of the stack model.

Two kinds, as h11 splits them: `WireError` is the remote's fault (a malformed frame; the
model counts it and drops it as the kernel does), `ModelUsageError` is the caller's fault
(a scenario asked for something impossible, like `send` on a socket never connected).
"""

from __future__ import annotations

__all__ = ["ModelError", "WireError", "ModelUsageError", "SocketError"]


class ModelError(Exception):
    """Base of every error the model raises."""


class WireError(ModelError):
    """Bytes that do not parse. `reason` is the kernel's skb drop reason name."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ModelUsageError(ModelError):
    """The model's API was misused (an impossible scenario step)."""


class SocketError(ModelUsageError):
    """A socket call failed the way the syscall would; `errno_name` is e.g. 'EADDRINUSE'."""

    def __init__(self, errno_name: str, detail: str = ""):
        self.errno_name = errno_name
        super().__init__(f"{errno_name}: {detail}" if detail else errno_name)
