"""Event arrays: building, validation and the (stream, time) sort every stage relies on."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare.events import CompareInputError, ObservedEvents, PredictedEvents, sort_by_stream_time


@pytest.mark.parametrize("time_sorted", [True, False])
@pytest.mark.parametrize("stream_span", [3, 10**12])
@pytest.mark.parametrize("seed", range(5))
def test_sort_by_stream_time_equals_lexsort(seed, time_sorted, stream_span):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    stream = rng.integers(-stream_span, stream_span, n)
    t = rng.integers(0, 50, n)  # many equal times: ties must keep input order
    if time_sorted:
        t = np.sort(t)
    cols = np.stack([stream, t, rng.integers(0, 9, n)])
    fields = rng.integers(0, 9, (n, 2))
    order, out, out_f = sort_by_stream_time(stream, t, cols, fields)
    expect = np.lexsort((t, stream))
    np.testing.assert_array_equal(order, expect)
    np.testing.assert_array_equal(out, cols[:, expect])
    np.testing.assert_array_equal(out_f, fields[expect])


def test_predicted_defaults_to_a_point_window_checking_every_field():
    p = PredictedEvents.build([1, 1], [10, 20], fields=[[1, 2, 3], [4, 5, 6]])
    assert p.win_lo.tolist() == [10, 20] and p.win_hi.tolist() == [10, 20] and p.check.tolist() == [7, 7]


def test_column_of_wrong_length_raises_naming_it():
    with pytest.raises(CompareInputError, match="frame"):
        ObservedEvents.build([1, 1], [0, 1], frame=[1, 2, 3])


def test_negative_tolerance_raises():
    with pytest.raises(CompareInputError, match="tolerance"):
        PredictedEvents.build([1], [0], tol_abs_ns=-1)
