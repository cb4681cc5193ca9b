"""Fixtures shared by the model tests: real frames captured from a Linux kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FRAMES = Path(__file__).parent / "frames" / "host_linux.json"


@pytest.fixture(scope="session")
def linux_frames() -> dict[str, bytes]:
    """Frames from tests/models/frames/capture_host_frames.py (host kernel via TAP)."""
    data = json.loads(FRAMES.read_text())
    return {name: bytes.fromhex(hexstr) for name, hexstr in data["frames"].items()}
