"""Behaviours of the comparison core, one per test, on small hand-built streams."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare import (
    ANCHOR_ABSOLUTE,
    ANCHOR_PREVIOUS_OBSERVED,
    NO_TIME,
    CompareInputError,
    Constraints,
    DivergenceKind,
    ObservedEvents,
    PredictedEvents,
    compare,
)

MS = 1_000_000
SYN_ACK, ACK = 0, 1


def pred(times, stream=1, fields=None, **kw):
    times = np.asarray(times, np.int64) * MS
    if fields is None:
        fields = np.zeros((len(times), 1), np.int64)
    return PredictedEvents.build(np.broadcast_to(stream, times.shape), times, fields, **kw)


def obs(times, stream=1, fields=None):
    times = np.asarray(times, np.int64) * MS
    if fields is None:
        fields = np.zeros((len(times), 1), np.int64)
    return ObservedEvents.build(np.broadcast_to(stream, times.shape), times, np.arange(1, len(times) + 1), fields)


def kinds(result):
    return [DivergenceKind(k).name for k in result.divergences["kind"]]


@pytest.fixture(params=["numba", "reference"])
def engine(request):
    return request.param


def test_identical_streams_have_no_divergence(engine):
    r = compare(pred([0, 100, 200], tol_abs_ns=MS), obs([0, 100, 200]), engine=engine)
    assert r.ok and r.match.tolist() == [0, 1, 2]


def test_event_within_tolerance_is_not_late(engine):
    r = compare(pred([0, 100], tol_abs_ns=5 * MS), obs([0, 104]), engine=engine)
    assert r.ok


def test_event_beyond_tolerance_is_late_with_delta_and_tolerance(engine):
    r = compare(pred([0, 100], tol_abs_ns=5 * MS), obs([0, 130]), engine=engine)
    assert kinds(r) == ["LATE"]
    row = r.divergences[0]
    assert (row["pred_ns"], row["obs_ns"], row["delta_ns"], row["tol_ns"], row["frame"]) == (
        100 * MS, 130 * MS, 30 * MS, 5 * MS, 2)


def test_event_before_tolerance_is_early(engine):
    r = compare(pred([0, 100], tol_abs_ns=5 * MS), obs([0, 80]), engine=engine)
    assert kinds(r) == ["EARLY"] and r.divergences[0]["delta_ns"] == -20 * MS


def test_tolerance_scales_with_predicted_gap(engine):
    # a 1 s RTO observed 40 ms late passes at 5 %, fails at 1 %
    assert compare(pred([0, 1000], tol_abs_ns=MS, tol_frac=0.05), obs([0, 1040]), engine=engine).ok
    r = compare(pred([0, 1000], tol_abs_ns=MS, tol_frac=0.01), obs([0, 1040]), engine=engine)
    assert kinds(r) == ["LATE"] and r.divergences[0]["tol_ns"] == 10 * MS


def test_one_late_event_does_not_make_later_ones_late(engine):
    # SYN retransmissions at 0, 1, 3, 7 s; the second comes 300 ms late, the rest keep its pace
    r = compare(pred([0, 1000, 3000, 7000], tol_abs_ns=10 * MS), obs([0, 1300, 3300, 7300]), engine=engine)
    assert kinds(r) == ["LATE"] and r.divergences[0]["pred_ns"] == 1000 * MS
    assert r.divergences[0]["expected_ns"] == 1000 * MS


def test_later_events_are_expected_from_the_observed_predecessor(engine):
    r = compare(pred([0, 1000, 3000], tol_abs_ns=10 * MS), obs([0, 1300, 3000]), engine=engine)
    assert kinds(r) == ["LATE", "EARLY"]
    assert r.divergences[1]["expected_ns"] == 3300 * MS and r.divergences[1]["delta_ns"] == -300 * MS


def test_absolute_event_on_time_after_a_late_one_is_not_early(engine):
    # two independent replies: the first 300 ms late, the second on time
    p = pred([0, 1000, 3000], tol_abs_ns=10 * MS, anchor=[ANCHOR_PREVIOUS_OBSERVED, ANCHOR_PREVIOUS_OBSERVED,
                                                          ANCHOR_ABSOLUTE])
    r = compare(p, obs([0, 1300, 3000]), engine=engine)
    assert kinds(r) == ["LATE"] and r.divergences[0]["pred_id"] == 1


def test_absolute_event_late_against_its_own_time_is_late(engine):
    # the late predecessor does not excuse it: 300 ms after its predicted time is late
    p = pred([0, 1000, 3000], tol_abs_ns=10 * MS, anchor=[0, 0, ANCHOR_ABSOLUTE])
    r = compare(p, obs([0, 1300, 3300]), engine=engine)
    assert kinds(r) == ["LATE", "LATE"]
    assert r.divergences[1]["expected_ns"] == 3000 * MS and r.divergences[1]["delta_ns"] == 300 * MS


def test_event_after_an_absolute_one_is_measured_from_its_observed_time(engine):
    # the absolute event came 300 ms late; its causal successor keeps that pace
    p = pred([0, 1000, 3000], tol_abs_ns=10 * MS, anchor=[0, ANCHOR_ABSOLUTE, ANCHOR_PREVIOUS_OBSERVED])
    r = compare(p, obs([0, 1300, 3300]), engine=engine)
    assert kinds(r) == ["LATE"] and r.divergences[0]["pred_id"] == 1


def test_absolute_window_stays_where_the_model_put_it(engine):
    # ARP reachable-time window [15 s, 45 s] fixed in time; the predecessor ran 10 s late
    p = pred([0, 100, 30_100], tol_abs_ns=MS, win_lo=[0, 100 * MS, 15_100 * MS], win_hi=[0, 100 * MS, 45_100 * MS],
             anchor=[0, 0, ANCHOR_ABSOLUTE])
    r = compare(p, obs([0, 600, 45_550]), engine=engine, max_shift_ns=10_000 * MS)
    assert kinds(r) == ["LATE", "LATE"] and r.divergences[1]["delta_ns"] == 450 * MS


def test_missing_event_is_missing(engine):
    r = compare(pred([0, 100, 200], tol_abs_ns=MS), obs([0, 200]), engine=engine)
    assert kinds(r) == ["MISSING"] and r.divergences[0]["pred_id"] == 1
    assert r.divergences[0]["obs_ns"] == NO_TIME and r.match.tolist() == [0, -1, 1]


def test_optional_event_that_did_not_happen_is_no_divergence(engine):
    r = compare(pred([0, 100, 200], optional=[False, True, False]), obs([0, 200]), engine=engine)
    assert kinds(r) == [] and list(r.match) == [0, -1, 1]


def test_optional_event_that_happened_is_checked_like_any_other(engine):
    r = compare(pred([0, 100], optional=[False, True]), obs([0, 400]), engine=engine)
    assert kinds(r) == ["LATE"]


def test_optional_does_not_hide_a_missing_event_beside_it(engine):
    r = compare(pred([0, 100, 200], optional=[False, True, False]), obs([0]), engine=engine)
    assert kinds(r) == ["MISSING"] and r.divergences["pred_id"].tolist() == [2]


def test_unpredicted_event_is_extra(engine):
    r = compare(pred([0, 200], tol_abs_ns=MS), obs([0, 100, 200]), engine=engine)
    assert kinds(r) == ["EXTRA"] and (r.divergences[0]["obs_id"], r.divergences[0]["frame"]) == (1, 2)


def test_event_beyond_max_shift_is_missing_and_extra(engine):
    r = compare(pred([0, 100], tol_abs_ns=MS), obs([0, 5100]), max_shift_ns=1000 * MS, engine=engine)
    assert sorted(kinds(r)) == ["EXTRA", "MISSING"]


def test_randomised_event_matches_anywhere_in_its_window(engine):
    # ARP reachable time: 30 s base, 0.5x..1.5x
    p = pred([0, 30_000], tol_abs_ns=10 * MS, win_lo=[0, 15_000 * MS], win_hi=[0, 45_000 * MS])
    assert compare(p, obs([0, 41_234]), engine=engine).ok
    r = compare(p, obs([0, 47_000]), engine=engine, max_shift_ns=10_000 * MS)
    assert kinds(r) == ["LATE"] and r.divergences[0]["delta_ns"] == 2000 * MS


def test_window_is_measured_from_the_observed_predecessor(engine):
    p = pred([0, 100, 30_100], tol_abs_ns=MS, win_lo=[0, 100 * MS, 15_100 * MS], win_hi=[0, 100 * MS, 45_100 * MS])
    # the second event came 500 ms late; the window of the third moves with it
    r = compare(p, obs([0, 600, 45_550]), engine=engine)
    assert kinds(r) == ["LATE"] and r.divergences[0]["pred_id"] == 1


def test_field_mismatch_names_the_field_and_both_values(engine):
    p = pred([0, 100], fields=[[SYN_ACK, 1460], [ACK, 0]], tol_abs_ns=MS)
    o = obs([0, 100], fields=[[SYN_ACK, 536], [ACK, 0]])
    r = compare(p, o, engine=engine, field_names=("flags", "mss"))
    assert kinds(r) == ["FIELD_MISMATCH"]
    row = r.rows()[0]
    assert (row["field"], row["pred_value"], row["obs_value"]) == ("mss", 1460, 536)


def test_unchecked_field_is_not_compared(engine):
    p = pred([0], fields=[[SYN_ACK, 123456]], check=0b01, tol_abs_ns=MS)
    assert compare(p, obs([0], fields=[[SYN_ACK, 999]]), engine=engine).ok


def test_matcher_prefers_the_observation_with_equal_fields(engine):
    # two observations fall in the window; the second carries the predicted fields
    p = pred([100], fields=[[7]], tol_abs_ns=20 * MS)
    r = compare(p, obs([95, 105], fields=[[3], [7]]), engine=engine)
    assert kinds(r) == ["EXTRA"] and r.match.tolist() == [1]


def test_swapped_events_are_reordered(engine):
    p = pred([0, 100, 200, 300], fields=[[1], [2], [3], [4]], tol_abs_ns=MS)
    o = obs([0, 100, 300, 301], fields=[[1], [2], [4], [3]])
    r = compare(p, o, engine=engine)
    assert kinds(r) == ["REORDERED"]
    row = r.divergences[0]
    assert (row["pred_id"], row["obs_id"]) == (2, 3)


def test_events_without_checked_fields_are_never_called_reordered(engine):
    p = pred([0, 100, 200, 300], tol_abs_ns=MS, check=0)
    r = compare(p, obs([0, 100, 300, 500]), engine=engine, max_shift_ns=1000 * MS)
    assert sorted(kinds(r)) == ["EXTRA", "MISSING"]


def test_streams_are_aligned_separately(engine):
    p = PredictedEvents.build([1, 2, 1, 2], np.array([0, 10, 100, 110]) * MS, tol_abs_ns=5 * MS)
    # stream 2 runs 50 ms late throughout; stream 1 is on time
    o = ObservedEvents.build([1, 2, 1, 2], np.array([0, 60, 100, 160]) * MS)
    r = compare(p, o, engine=engine, max_shift_ns=10_000 * MS)
    assert kinds(r) == ["LATE"] and r.divergences[0]["stream"] == 2


def test_before_constraint_violation_is_reported(engine):
    p = PredictedEvents.build([1, 2], np.array([0, 10]) * MS, tol_abs_ns=50 * MS)
    o = ObservedEvents.build([1, 2], np.array([20, 5]) * MS, frame=[2, 1])
    r = compare(p, o, Constraints.build(before=[(0, 1)]), engine=engine)
    assert kinds(r) == ["ORDER_VIOLATION"]
    row = r.divergences[0]
    assert (row["pred_id"], row["related"], row["delta_ns"]) == (1, 0, -15 * MS)


def test_before_constraint_kept_gives_no_row(engine):
    p = PredictedEvents.build([1, 2], np.array([0, 10]) * MS, tol_abs_ns=50 * MS)
    o = ObservedEvents.build([1, 2], np.array([5, 20]) * MS)
    assert compare(p, o, Constraints.build(before=[(0, 1)]), engine=engine).ok


def test_quiet_interval_reports_each_event_inside(engine):
    # link down 1 s .. 4 s: the board must send nothing on stream 7 meanwhile
    p = PredictedEvents.build([7, 7], np.array([0, 5000]) * MS, tol_abs_ns=MS)
    o = ObservedEvents.build([7, 7, 7, 7], np.array([0, 1500, 3999, 5000]) * MS, frame=[1, 2, 3, 4])
    r = compare(p, o, Constraints.build(quiet=[(7, 1000 * MS, 4000 * MS)]), engine=engine)
    order = r.divergences[r.divergences["kind"] == DivergenceKind.ORDER_VIOLATION]
    assert order["frame"].tolist() == [2, 3]
    assert kinds(r).count("EXTRA") == 2


def test_match_refers_to_input_indices_when_input_is_unsorted(engine):
    p = PredictedEvents.build([2, 1, 1], np.array([50, 100, 0]) * MS, tol_abs_ns=MS)
    o = ObservedEvents.build([1, 2, 1], np.array([100, 50, 0]) * MS)
    r = compare(p, o, engine=engine)
    assert r.ok and r.match.tolist() == [1, 0, 2]


def test_rows_give_kind_names_and_none_for_absent_values(engine):
    r = compare(pred([0, 100], tol_abs_ns=MS), obs([0]), engine=engine)
    (row,) = r.rows()
    assert row["kind"] == "MISSING" and row["obs_ns"] is None and row["frame"] is None and row["field"] is None


def test_different_field_columns_raise():
    with pytest.raises(CompareInputError, match="fields"):
        compare(pred([0], fields=[[1, 2]]), obs([0], fields=[[1]]))


def test_window_with_lo_above_hi_raises():
    with pytest.raises(CompareInputError, match="win_lo"):
        pred([0], win_lo=[10], win_hi=[5])


def test_unknown_anchor_raises():
    with pytest.raises(CompareInputError, match="anchor"):
        pred([0], anchor=[7])


def test_before_constraint_with_unknown_event_raises():
    with pytest.raises(CompareInputError, match="before_b"):
        compare(pred([0]), obs([0]), Constraints.build(before=[(0, 5)]))


def test_unknown_engine_raises():
    with pytest.raises(ValueError):
        compare(pred([0]), obs([0]), engine="fortran")


def test_empty_sides_give_all_missing_or_all_extra(engine):
    none = np.zeros(0, np.int64)
    assert compare(PredictedEvents.build(none, none), ObservedEvents.build(none, none), engine=engine).ok
    r = compare(pred([0, 10]), ObservedEvents.build(none, none, n_fields=1), engine=engine)
    assert kinds(r) == ["MISSING", "MISSING"]
    r = compare(PredictedEvents.build(none, none, n_fields=1), obs([5]), engine=engine)
    assert kinds(r) == ["EXTRA"]
