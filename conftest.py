"""Shared fixtures for the project's own tests.

The emulated board fixtures boot a real QEMU AST2500 with the real image (built or taken
from the cache); they run in CI like every other test.
"""

from __future__ import annotations

import signal
import sys

import pytest

# A run started as a background job of a shell without job control begins with SIGINT
# ignored, and every child would inherit that: the tests that press Ctrl-C on `bmc-hil`
# would then see it ignored. Give this process (and so its children) the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def emulated_image():
    """The default emulated firmware image (kernel + initramfs), from the cache."""
    from harness.image import build_image

    return build_image(log=lambda msg: print(msg, file=sys.stderr))


@pytest.fixture(scope="session")
def image_for():
    """Build the image for a firmware config given as a dict (seconds: the kernel is cached)."""
    from harness.image import build_image
    from models.config import DEFAULT_CONFIG, FirmwareConfig

    def build(**overrides):
        data = {**DEFAULT_CONFIG, **overrides}
        return build_image(FirmwareConfig.from_dict(data, source="<test>"),
                           log=lambda msg: print(msg, file=sys.stderr))

    return build


@pytest.fixture
def booted_board(emulated_image, tmp_path):
    """A fresh emulated board at SSH-ready, powered off after the test (whatever happens)."""
    from harness.board import BoardState, BoardStrategy
    from harness.board.qemu import QemuBoard

    board = QemuBoard(emulated_image, tmp_path / "board")
    try:
        BoardStrategy(board).transition(BoardState.SSH)
        yield board
    finally:
        board.close()
