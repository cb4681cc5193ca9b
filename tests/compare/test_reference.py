"""The numba kernels and the plain-Python reference give identical results on random
inputs built to hit every stage: drops, extras, jitter, late runs, swaps, field flips,
windows, unchecked fields, both anchors, narrow bands, constraints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.compare import Constraints, DivergenceKind, ObservedEvents, PredictedEvents, compare
from harness.compare.core import _before_positions, run_stages_numba
from harness.compare.events import prepare
from harness.compare.reference import run_stages_reference

MS = 1_000_000


def random_case(rng: np.random.Generator, n: int, n_streams: int, n_fields: int):
    """Predictions, observations derived from them with faults, and constraints."""
    stream = rng.integers(0, n_streams, n)
    gaps = np.where(rng.random(n) < 0.3, rng.integers(0, 3 * MS, n), rng.integers(0, 400 * MS, n))
    t = np.cumsum(gaps)
    fields = rng.integers(0, 3, (n, n_fields))
    check = rng.integers(0, 1 << n_fields, n)
    windowed = rng.random(n) < 0.1
    win_lo = np.where(windowed, t - rng.integers(0, 200 * MS, n), t)
    win_hi = np.where(windowed, t + rng.integers(0, 200 * MS, n), t)
    tol_abs = rng.integers(0, 5 * MS, n)
    tol_frac = rng.choice([0.0, 0.01, 0.1, 0.5], n)
    anchor = (rng.random(n) < 0.3).astype(np.int8)  # ANCHOR_ABSOLUTE where 1
    pred = PredictedEvents.build(stream, t, fields, check, tol_abs, tol_frac, win_lo, win_hi, anchor=anchor)

    keep = rng.random(n) > 0.1
    ot = t + rng.normal(0, 2 * MS, n).astype(np.int64)
    slow = rng.random(n) < 0.08
    ot[slow] += rng.integers(-800 * MS, 800 * MS, slow.sum())
    of = fields.copy()
    flip = rng.random(n) < 0.08
    of[flip, rng.integers(0, n_fields, flip.sum())] += 1
    n_extra = rng.integers(0, n // 5 + 1)
    o_stream = np.concatenate([stream[keep], rng.integers(0, n_streams + 1, n_extra)])
    o_t = np.concatenate([ot[keep], rng.integers(0, max(int(t[-1]), 1), n_extra)])
    o_f = np.concatenate([of[keep], rng.integers(0, 3, (n_extra, n_fields))])
    perm = rng.permutation(o_t.size)
    obs = ObservedEvents.build(o_stream[perm], o_t[perm], np.arange(o_t.size), o_f[perm])

    n_before = rng.integers(0, 10)
    before = rng.integers(0, n, (n_before, 2))
    n_quiet = rng.integers(0, 5)
    q0 = rng.integers(0, max(int(t[-1]), 1), n_quiet)
    quiet = np.stack([rng.integers(0, n_streams + 2, n_quiet), q0, q0 + rng.integers(0, 2000 * MS, n_quiet)], 1)
    return pred, obs, Constraints.build(before=before, quiet=quiet)


def _assert_same_everywhere(pred, obs, cons, max_shift, band):
    prep = prepare(pred, obs)
    a, b = _before_positions(prep, cons)
    fast = run_stages_numba(prep, cons, a, b, max_shift, band)
    slow = run_stages_reference(prep, cons, a, b, max_shift, band)
    for f in dataclasses.fields(fast):
        np.testing.assert_array_equal(getattr(fast, f.name), getattr(slow, f.name), err_msg=f.name)
    t_fast = compare(pred, obs, cons, max_shift_ns=max_shift, band=band).divergences
    t_slow = compare(pred, obs, cons, max_shift_ns=max_shift, band=band, engine="reference").divergences
    np.testing.assert_array_equal(t_fast, t_slow)
    return t_fast


@pytest.mark.parametrize("seed", range(40))
def test_kernels_match_reference_on_seeded_random_streams(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    case = random_case(rng, n, int(rng.integers(1, 6)), int(rng.integers(1, 4)))
    band = int(rng.choice([0, 1, 3, 32]))
    _assert_same_everywhere(*case, max_shift=int(rng.choice([0, 50 * MS, 1000 * MS])), band=band)


def test_random_cases_exercise_every_divergence_kind():
    # guards the identity tests above against inputs too tame to reach some stage
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 3000))
        case = random_case(rng, n, int(rng.integers(1, 6)), int(rng.integers(1, 4)))
        seen |= set(compare(*case).divergences["kind"].tolist())
    assert seen == {int(k) for k in DivergenceKind}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(1, 3), st.sampled_from([0, 1, 2, 32]),
       st.sampled_from([0, 5 * MS, 1000 * MS]))
def test_kernels_match_reference_on_small_random_streams(seed, n, n_streams, band, max_shift):
    pred, obs, cons = random_case(np.random.default_rng(seed), n, n_streams, 2)
    _assert_same_everywhere(pred, obs, cons, max_shift, band)
