"""Where the harness keeps its cache (kernel builds, images, keys, downloaded debs)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.errors import HarnessError


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


# What a folder or file name made from a user's text (a scenario's or a board's name) may
# hold: no separators, no leading dot (so no "..", no hidden files), at most NAME_MAX bytes.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
NAME_MAX = 255


def safe_name(name: str) -> str:
    """`name` as one path component that stays inside its folder: runs of characters other
    than letters, digits and `._+-` become `_`, leading dots are dropped, an empty result is
    `_`. `../victim` -> `_victim`, `/etc/x` -> `_etc_x`."""
    out = _UNSAFE.sub("_", str(name)).lstrip(".")
    return (out or "_")[: NAME_MAX - 16]


def unique_names(names: list[str]) -> list[str]:
    """`safe_name` of each, with `-2`, `-3`, ... added where two would be the same folder."""
    seen: set[str] = set()
    out = []
    for name in names:
        base = safe_name(name)
        cand, n = base, 1
        while cand.lower() in seen:   # case-insensitive file systems too
            n += 1
            cand = f"{base}-{n}"
        seen.add(cand.lower())
        out.append(cand)
    return out


def prepare_run_dir(out: Path) -> None:
    """A scenario run's folder: created, or empty. A run never deletes or overwrites files
    it did not write (a previous run's, or anything else a user keeps there)."""
    out.mkdir(parents=True, exist_ok=True)
    kept = sorted(p.name for p in out.iterdir())
    if kept:
        raise HarnessError(f"{out}: the run folder is not empty ({', '.join(kept[:5])}"
                           f"{', ...' if len(kept) > 5 else ''}); a run never overwrites files: "
                           "give a new or empty folder")
