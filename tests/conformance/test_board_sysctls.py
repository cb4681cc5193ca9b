"""SYSCTL_DEFAULTS against the emulated AST2500 itself: the model's defaults are the board's."""

from __future__ import annotations

import pytest

from harness.board import BoardState, BoardStrategy
from harness.board.qemu import QemuBoard
from models.config import SYSCTL_DEFAULTS

pytestmark = pytest.mark.board


def proc_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def as_config_value(name: str, text: str) -> int | str:
    """/proc/sys prints vectors tab-separated; the config writes them space-separated."""
    if isinstance(SYSCTL_DEFAULTS[name], int):
        return int(text)
    return " ".join(text.split())


def test_sysctl_defaults_are_what_the_board_runs_with(booted_board):
    seen = {name: as_config_value(name, booted_board.run(f"cat {proc_path(name)}").stdout)
            for name in SYSCTL_DEFAULTS}
    assert seen == SYSCTL_DEFAULTS


def test_neighbour_defaults_reach_eth0_too(booted_board):
    # the image writes neigh.default.* to eth0 as well; by default they are equal already
    neigh = [n for n in SYSCTL_DEFAULTS if n.startswith("net.ipv4.neigh.default.")]
    seen = {n: as_config_value(n, booted_board.run(f"cat {proc_path(n).replace('/default/', '/eth0/')}").stdout)
            for n in neigh}
    assert seen == {n: SYSCTL_DEFAULTS[n] for n in neigh}


def test_image_writes_a_tcp_rmem_triple_as_is(image_for, tmp_path):
    image = image_for(sysctls={"net.ipv4.tcp_rmem": "4096 87380 4000000"})
    board = QemuBoard(image, tmp_path / "board")
    with board:
        BoardStrategy(board).transition(BoardState.SSH)
        assert board.run("cat /proc/sys/net/ipv4/tcp_rmem").stdout.split() == ["4096", "87380", "4000000"]
