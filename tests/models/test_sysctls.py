"""The sysctls the model reads from the firmware config: their validation and their effect."""

from __future__ import annotations

import random

import pytest

from models.board import Board
from models.config import SYSCTL_DEFAULTS, ConfigError, FirmwareConfig
from models.ipv4 import Fib, Ipv4Layer
from models.neighbour import NeighParams, NeighTable
from models.tcp import TcpParams
from models.tcp_h import tcp_select_initial_window
from models.wire import ICMP_ECHOREPLY, IcmpRepr, Ipv4Repr, ip4, mac_bytes

BOARD = ip4("10.0.2.15")
PEER = ip4("10.0.2.2")
IFACE = {"address": "10.0.2.15/24", "gateway": "10.0.2.2", "mac": "52:54:00:12:34:56"}


def cfg(**sysctls) -> FirmwareConfig:
    return FirmwareConfig.from_dict({"interface": IFACE, "sysctls": sysctls})


def rmem(value) -> FirmwareConfig:
    return cfg(**{"net.ipv4.tcp_rmem": value})


# -- validation --------------------------------------------------------------------------
def test_tcp_rmem_triple_is_accepted_and_normalised():
    assert rmem("4096  87380\t4000000").sysctl("net.ipv4.tcp_rmem") == "4096 87380 4000000"


@pytest.mark.parametrize("value", ["4096 87380", "4096 87380 4000000 1", "4096 x 4000000", "4095 87380 4000000",
                                   "4096 87380 2147483648", "-4096 87380 4000000"])
def test_tcp_rmem_that_the_kernel_would_refuse_is_a_config_error(value):
    with pytest.raises(ConfigError, match="tcp_rmem"):
        rmem(value)


def test_tcp_rmem_as_a_number_is_a_config_error():
    with pytest.raises(ConfigError, match="expected str"):
        rmem(4096)


def test_tcp_adv_win_scale_may_be_negative():
    assert cfg(**{"net.ipv4.tcp_adv_win_scale": -2}).sysctl("net.ipv4.tcp_adv_win_scale") == -2


def test_tcp_adv_win_scale_beyond_31_is_a_config_error():
    with pytest.raises(ConfigError, match="-31..31"):
        cfg(**{"net.ipv4.tcp_adv_win_scale": 32})


def test_icmp_echo_ignore_broadcasts_is_a_boolean_sysctl():
    with pytest.raises(ConfigError, match="0..1"):
        cfg(**{"net.ipv4.icmp_echo_ignore_broadcasts": 2})


def test_rmem_max_below_sock_min_rcvbuf_is_a_config_error():
    with pytest.raises(ConfigError, match="2240"):
        cfg(**{"net.core.rmem_max": 2239})


# -- the model reads them ------------------------------------------------------------------
def test_default_tcp_params_are_the_sysctl_defaults():
    assert TcpParams.from_config(cfg()) == TcpParams()


def test_tcp_rmem_max_sets_the_window_scale():
    # 33554432 = 2^25: tcp_select_initial_window's ilog2(25) - 15
    p = TcpParams.from_config(rmem("4096 131072 33554432"))
    assert tcp_select_initial_window(p, p.win_from_space(p.tcp_rmem[1]), 1460, True)[2] == 10


def test_board_scales_its_window_for_the_default_tcp_rmem():
    # tcp_rmem[2] 3979104 on the board: ilog2 21 - 15
    p = Board(cfg()).tcp_params
    assert tcp_select_initial_window(p, p.win_from_space(p.tcp_rmem[1]), 1460, True)[2] == 6


def test_rmem_max_is_read_from_the_config():
    assert TcpParams.from_config(cfg(**{"net.core.rmem_max": 8388608})).rmem_max == 8388608


def test_adv_win_scale_is_read_from_the_config():
    p = TcpParams.from_config(cfg(**{"net.ipv4.tcp_adv_win_scale": 2}))
    assert p.win_from_space(131072) == 131072 - (131072 >> 2)


def test_unres_qlen_bytes_is_read_from_the_config():
    key = "net.ipv4.neigh.default.unres_qlen_bytes"
    assert NeighParams.from_config(cfg(**{key: 4000})).queue_len_bytes == 4000


def test_default_unres_qlen_bytes_keeps_every_packet_a_resolution_queues():
    """180224 bytes hold 86 echo replies even at the most truesize each can have (2088)."""
    t = NeighTable(NeighParams.from_config(cfg()), mac_bytes(IFACE["mac"]), BOARD, random.Random(1))
    t.judging = True
    for i in range(86):
        t.neigh_resolve_output(i, PEER, bytes([i]) * 84)
    assert len(t.entries[PEER].arp_queue) == 86 and t.entries[PEER].queue_unsure == 0 and t.drops == []


def test_small_unres_qlen_bytes_keeps_only_the_newest_packet():
    key = "net.ipv4.neigh.default.unres_qlen_bytes"
    t = NeighTable(NeighParams.from_config(cfg(**{key: 1000})), mac_bytes(IFACE["mac"]), BOARD, random.Random(1))
    t.neigh_resolve_output(0, PEER, b"o" * 84)
    t.neigh_resolve_output(1, PEER, b"n" * 84)
    assert t.entries[PEER].arp_queue == [b"n" * 84]


def _broadcast_echo() -> bytes:
    echo = IcmpRepr(8, 0, 1, 1, b"x").emit()
    return Ipv4Repr(PEER, ip4("10.0.2.255"), 1, len(echo), df=False).emit(echo)


def test_broadcast_echo_is_answered_when_icmp_echo_ignore_broadcasts_is_0():
    c = cfg(**{"net.ipv4.icmp_echo_ignore_broadcasts": 0})
    ip = Ipv4Layer(BOARD, 24, Fib.from_config(c), 1500, 64, random.Random(3),
                   icmp_echo_ignore_broadcasts=bool(c.sysctl("net.ipv4.icmp_echo_ignore_broadcasts")))
    _, ((nh, reply),) = ip.ip_rcv(0, _broadcast_echo())
    rip, payload = Ipv4Repr.parse(reply)
    assert (nh, rip.src, rip.dst, IcmpRepr.parse(payload).type) == (PEER, BOARD, PEER, ICMP_ECHOREPLY)


def test_board_passes_icmp_echo_ignore_broadcasts_to_ipv4():
    assert Board(cfg(**{"net.ipv4.icmp_echo_ignore_broadcasts": 0})).ip.icmp_echo_ignore_broadcasts is False


def test_broadcast_echo_is_dropped_with_the_kernels_reason_by_default():
    ip = Ipv4Layer(BOARD, 24, Fib.from_config(cfg()), 1500, 64, random.Random(3))
    ip.ip_rcv(0, _broadcast_echo())
    assert ip.drops[-1].reason == "SKB_DROP_REASON_INVALID_PROTO"


def test_every_default_is_valid_input():
    assert FirmwareConfig.from_dict({"interface": IFACE, "sysctls": dict(SYSCTL_DEFAULTS)}).sysctls == SYSCTL_DEFAULTS
