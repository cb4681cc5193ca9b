"""QMP and host-event logs into the one event form."""

from __future__ import annotations

import json

import pytest

from harness.ingest.events import (
    Clock,
    EventKind,
    EventLogError,
    EventTable,
    ResetReason,
    WatchdogAction,
    parse_host_events,
    parse_qmp_log,
)


def jsonl(*objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def qmp(event, data=None, wall=1_000, mono=7):
    return {"event": event, "data": data or {}, "qemu_wall_ns": wall, "host_monotonic_ns": mono,
            "host_wall_ns": wall + 5}


def host(event, wall=2_000, mono=9, **detail):
    return {"event": event, "host_monotonic_ns": mono, "host_wall_ns": wall, **detail}


def test_watchdog_and_reset_events_carry_action_and_reason():
    t = parse_qmp_log(jsonl(qmp("WATCHDOG", {"action": "reset"}), qmp("RESET", {"guest": True, "reason": "guest-reset"}),
                            qmp("RESET", {"reason": "host-qmp-system-reset"})), "q")
    assert t.kind.tolist() == [EventKind.QMP_WATCHDOG, EventKind.QMP_RESET, EventKind.QMP_RESET]
    assert t.detail0.tolist() == [WatchdogAction.RESET, ResetReason.GUEST_RESET, ResetReason.HOST_QMP_SYSTEM_RESET]


def test_qmp_events_are_stamped_with_qemus_own_wall_clock():
    t = parse_qmp_log(jsonl(qmp("RESUME", wall=123, mono=45)), "q")
    assert (t.time_ns[0], t.clock[0], t.mono_ns[0]) == (123, Clock.HOST_WALL, 45)


def test_unknown_qmp_event_is_kept_as_other():
    t = parse_qmp_log(jsonl(qmp("NIC_RX_FILTER_CHANGED")), "q")
    assert t.kind.tolist() == [EventKind.QMP_OTHER] and t.names == ["NIC_RX_FILTER_CHANGED"]


def test_host_stimuli_become_their_kinds():
    t = parse_host_events(jsonl(host("link_down"), host("link_up"), host("watchdog_kick"), host("watchdog_starve"),
                                host("reset"), host("something_new")), "h")
    assert t.kind.tolist() == [EventKind.HOST_LINK_DOWN, EventKind.HOST_LINK_UP, EventKind.HOST_WATCHDOG_KICK,
                               EventKind.HOST_WATCHDOG_STARVE, EventKind.HOST_RESET, EventKind.HOST_OTHER]


def test_watchdog_start_carries_timeout_and_period():
    t = parse_host_events(jsonl(host("watchdog_start", timeout=5, period=1)), "h")
    assert (t.detail0[0], t.detail1[0]) == (5, 1)


def test_host_events_keep_both_host_clocks():
    t = parse_host_events(jsonl(host("power_on", wall=10**18, mono=55)), "h")
    assert (t.time_ns[0], t.clock[0], t.mono_ns[0]) == (10**18, Clock.HOST_WALL, 55)


def test_blank_lines_are_skipped_but_counted_in_line_numbers():
    t = parse_host_events("\n" + jsonl(host("reset")), "h")
    assert t.line.tolist() == [2]


@pytest.mark.parametrize("bad,problem", [
    ("not json at all", "Expecting value"),
    ('["a", "list"]', "JSON object"),
    ('{"event": "reset", "host_wall_ns": 1}', "host_monotonic_ns"),
    ('{"event": "reset", "host_wall_ns": "soon", "host_monotonic_ns": 1}', "not an integer"),
])
def test_unreadable_line_names_file_line_and_problem(bad, problem):
    with pytest.raises(EventLogError) as info:
        parse_host_events(jsonl(host("reset")) + bad + "\n", "run/host-events.jsonl")
    err = info.value
    assert (err.source, err.line) == ("run/host-events.jsonl", 2) and problem in str(err)
    assert err.partial.kind.tolist() == [EventKind.HOST_RESET]


def test_lenient_read_returns_events_before_the_fault_with_the_error():
    t = parse_qmp_log(jsonl(qmp("RESET")) + '{"event": \n', "q", strict=False)
    assert len(t) == 1 and isinstance(t.error, EventLogError) and t.error.line == 2


def test_tables_concatenate_and_filter_by_kind():
    a = parse_qmp_log(jsonl(qmp("WATCHDOG")), "q")
    b = parse_host_events(jsonl(host("watchdog_starve"), host("link_down")), "h")
    both = EventTable.concat([a, b])
    assert len(both) == 3 and both.source == "q+h"
    assert both.of_kind(EventKind.HOST_LINK_DOWN).names == ["link_down"]
