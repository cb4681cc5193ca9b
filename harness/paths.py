"""Where the harness keeps its cache (kernel builds, images, keys, downloaded debs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$BMC_HIL_CACHE`, else `$XDG_CACHE_HOME/bmc-hil`, else `~/.cache/bmc-hil`."""
    env = os.environ.get("BMC_HIL_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "bmc-hil"
    path.mkdir(parents=True, exist_ok=True)
    return path
