"""CUBIC (models.tcp_cubic) against what net/ipv4/tcp_cubic.c computes."""

import pytest

from models.tcp_cubic import BETA_SCALE, CUBE_FACTOR, CUBE_RTT_SCALE, Bictcp, cubic_root


def test_precomputed_factors_are_cubictcp_registers():
    # beta_scale = 8*(1024+717)/3/(1024-717); cube_rtt_scale = 41*10; cube_factor = 2^40/410
    assert (BETA_SCALE, CUBE_RTT_SCALE, CUBE_FACTOR) == (15, 410, 2681735677)


@pytest.mark.parametrize("a", [64, 1000, 12345, 10**6, 3 * 10**9, 2**40])
def test_cubic_root_is_near_the_cube_root(a):
    # the table's estimate and one Newton-Raphson step: off by at most 2 in this range
    assert abs(cubic_root(a) - round(a ** (1 / 3))) <= 2


def test_cubic_root_below_64_is_the_table_rounded():
    # (v[a] + 35) >> 6 for a in [0..63]
    assert [cubic_root(a) for a in (0, 1, 7, 8, 26, 27, 63)] == [0, 1, 2, 2, 3, 3, 4]


def test_recalc_ssthresh_is_beta_and_fast_convergence_lowers_wmax():
    ca = Bictcp()
    assert ca.recalc_ssthresh(10) == 7 and ca.last_max_cwnd == 10
    assert ca.recalc_ssthresh(8) == 5                 # 8 * 717 / 1024 = 5.6
    assert ca.last_max_cwnd == 8 * (1024 + 717) // 2048   # below W_max: fast convergence
    assert ca.recalc_ssthresh(2) == 2                  # at least 2
    assert ca.epoch_start is None


def test_update_counts_from_the_epoch_and_is_at_least_two():
    ca = Bictcp()
    ca.recalc_ssthresh(10)                             # W_max 10, then cwnd 7 after recovery
    ca.update(7, 1, now_j=1000)
    assert ca.epoch_start == 1000 and ca.bic_origin_point == 10
    assert ca.bic_k == cubic_root(CUBE_FACTOR * 3)
    first = ca.cnt
    assert first >= 2
    # a second later the curve is nearer W_max: fewer ACKs per increment
    ca.update(7, 1, now_j=1100)
    assert 2 <= ca.cnt <= first
    # within HZ/32 at the same cwnd nothing is recomputed
    ca.cnt = 99
    ca.update(7, 1, now_j=1101)
    assert ca.cnt == 99


def test_acked_keeps_the_least_delay_but_not_in_the_second_after_an_epoch_began():
    ca = Bictcp()
    ca.acked(120_000, now_j=10)
    ca.acked(100_000, now_j=11)
    ca.acked(-1, now_j=12)
    assert ca.delay_min == 100_000
    ca.epoch_start = 50
    ca.acked(50_000, now_j=100)                        # 50 jiffies after the epoch began
    assert ca.delay_min == 100_000
    ca.acked(50_000, now_j=150)
    assert ca.delay_min == 50_000
