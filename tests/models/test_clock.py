"""Model time helpers."""

from models.clock import JIFFY, ms, sec, timer_wheel_slack


def test_timer_wheel_slack_follows_the_wheel_levels():
    # kernel/time/timer.c at HZ=100: < 63 jiffies level 0 (1 jiffy), < 504 level 1 (8),
    # < 4032 level 2 (64); calc_index adds one jiffy on top.
    assert timer_wheel_slack(ms(200)) == 2 * JIFFY
    assert timer_wheel_slack(sec(1)) == timer_wheel_slack(sec(5)) == 9 * JIFFY
    assert timer_wheel_slack(sec(8)) == 65 * JIFFY
    assert timer_wheel_slack(sec(60)) == 513 * JIFFY
