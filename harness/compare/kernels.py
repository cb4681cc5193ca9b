"""numba kernels of the comparison core. Plain functions over NumPy arrays, int64 ns.

Both event sets arrive sorted by (stream, time); `seg_*` give each stream's slice
[p0, p1) of predicted events and [o0, o1) of observed ones. The stages, per stream:

1. `windowed_match` pass 1, forward: each prediction takes the first unclaimed observation
   inside its window whose checked fields are equal, the window measured from the observed time of its latest matched
   predecessor (packetdrill's rule, so one late event does not make the rest late), unless
   the prediction is anchored ABSOLUTE: then its window stays at its predicted time.
   Pass 2, backward: predictions still unmatched try again measured from their matched
   successor, among the observations between their matched neighbours.
2. `gap_align`: a banded edit-distance alignment with traceback over each gap between
   consecutive matches, pairing what is left as LATE / EARLY / field mismatches.
3. `find_reorders`: a leftover prediction and a leftover observation in different gaps
   with equal fields are one REORDERED event, not a MISSING and an EXTRA.
4. `label`: the final forward sweep computes expected time, tolerance, delta and verdict.

Every stage measures a prediction from its anchor the same way (`_anchor_shift`): the
running shift (observed minus predicted time of the matched predecessor) for
ANCHOR_PREVIOUS_OBSERVED, zero for ANCHOR_ABSOLUTE. Either way a matched event sets the
shift for the events after it. `anchor` is optional so older callers keep working; None
means every event is ANCHOR_PREVIOUS_OBSERVED.

`harness.compare.reference` is the same algorithm in plain Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from harness.compare.events import ANCHOR_ABSOLUTE

# Stage that matched a prediction (the `stage` array).
UNMATCHED = 0
STAGE_FORWARD = 1
STAGE_BACKWARD = 2
STAGE_ALIGN = 3
STAGE_REORDER = 4

# Per-prediction verdicts (the `status` array); DivergenceKind values where one applies.
STATUS_OK = 0
STATUS_MISSING = 1
STATUS_LATE = 3
STATUS_EARLY = 4
STATUS_REORDERED = 5

# Alignment costs: pairing off-window or with a field mismatch costs 1 each; leaving an
# event unpaired costs 2, so a near pair beats a MISSING plus an EXTRA.
GAP_COST = 2
_INF = np.int64(1) << 60


@njit(cache=True)
def _anchors(anchor, n):
    """The anchor column, or all ANCHOR_PREVIOUS_OBSERVED when the caller gave none."""
    if anchor is None:
        return np.zeros(n, np.int8)
    return anchor


@njit(cache=True, inline="always")
def _anchor_shift(anc, k, shift):
    return np.int64(0) if anc[k] == ANCHOR_ABSOLUTE else shift


@njit(cache=True)
def tolerances(p_stream, p_t, tol_abs, tol_frac):
    """max(absolute, fraction x predicted gap from the stream's previous prediction)."""
    n = p_t.size
    tol = np.empty(n, np.int64)
    for k in range(n):
        gap = np.int64(0)
        if k > 0 and p_stream[k] == p_stream[k - 1]:
            gap = p_t[k] - p_t[k - 1]
        rel = np.int64(tol_frac[k] * gap)
        tol[k] = tol_abs[k] if tol_abs[k] > rel else rel
    return tol


@njit(cache=True)
def field_mismatch(p_fields, o_fields, k, j, mask):
    """Bit f set when field f is checked and differs."""
    out = np.int64(0)
    for f in range(p_fields.shape[1]):
        if (mask >> f) & 1 and p_fields[k, f] != o_fields[j, f]:
            out |= np.int64(1) << f
    return out


@njit(cache=True)
def windowed_match(seg_p0, seg_p1, seg_o0, seg_o1, p_t, p_wlo, p_whi, tol, o_t, p_fields, o_fields, p_check, match,
                   stage, anchor=None):
    """Passes 1 and 2 of the matcher; fills `match` (observed index or -1) and `stage`."""
    anc = _anchors(anchor, p_t.size)
    prev_obs = np.empty(p_t.size, np.int64)
    for s in range(seg_p0.size):
        a, b, c, d = seg_p0[s], seg_p1[s], seg_o0[s], seg_o1[s]
        j = c
        shift = np.int64(0)
        for k in range(a, b):
            sh = _anchor_shift(anc, k, shift)
            lo = p_wlo[k] + sh - tol[k]
            hi = p_whi[k] + sh + tol[k]
            while j < d and o_t[j] < lo:
                j += 1
            q = j
            while q < d and o_t[q] <= hi:
                if field_mismatch(p_fields, o_fields, k, q, p_check[k]) == 0:
                    match[k] = q
                    stage[k] = STAGE_FORWARD
                    shift = o_t[q] - p_t[k]
                    j = q + 1
                    break
                q += 1
        last = c - 1
        for k in range(a, b):
            prev_obs[k] = last
            if match[k] >= 0:
                last = match[k]
        jj = d - 1
        shift = np.int64(0)
        for k in range(b - 1, a - 1, -1):
            if match[k] >= 0:
                jj = match[k] - 1
                shift = o_t[match[k]] - p_t[k]
                continue
            sh = _anchor_shift(anc, k, shift)
            lo = p_wlo[k] + sh - tol[k]
            hi = p_whi[k] + sh + tol[k]
            lb = prev_obs[k]
            while jj > lb and o_t[jj] > hi:
                jj -= 1
            q = jj
            while q > lb and o_t[q] >= lo:
                if field_mismatch(p_fields, o_fields, k, q, p_check[k]) == 0:
                    match[k] = q
                    stage[k] = STAGE_BACKWARD
                    shift = o_t[q] - p_t[k]
                    jj = q - 1
                    break
                q -= 1


@njit(cache=True)
def _pair_cost(k, j, shift, p_wlo, p_whi, tol, o_t, p_fields, o_fields, p_check, max_shift, anc):
    sh = _anchor_shift(anc, k, shift)
    lo = p_wlo[k] + sh - tol[k]
    hi = p_whi[k] + sh + tol[k]
    o = o_t[j]
    dist = np.int64(0)
    if o < lo:
        dist = lo - o
    elif o > hi:
        dist = o - hi
    if dist > max_shift:
        return np.int64(-1)
    cost = np.int64(1) if dist > 0 else np.int64(0)
    if field_mismatch(p_fields, o_fields, k, j, p_check[k]) != 0:
        cost += 1
    return cost


@njit(cache=True)
def _align_one_gap(k0, k1, j0, j1, shift, band, p_wlo, p_whi, tol, o_t, p_fields, o_fields, p_check, max_shift,
                   match, stage, anc):
    kp = k1 - k0
    ko = j1 - j0
    row_lo = np.empty(kp + 1, np.int64)
    row_hi = np.empty(kp + 1, np.int64)
    row_off = np.empty(kp + 2, np.int64)
    row_off[0] = 0
    for i in range(kp + 1):
        lo = (i * ko) // kp - band
        hi = -((-(i + 1) * ko) // kp) + band
        row_lo[i] = lo if lo > 0 else 0
        row_hi[i] = hi if hi < ko else ko
        row_off[i + 1] = row_off[i] + row_hi[i] - row_lo[i] + 1
    cost = np.empty(row_off[kp + 1], np.int64)
    move = np.empty(row_off[kp + 1], np.int8)
    for i in range(kp + 1):
        for j in range(row_lo[i], row_hi[i] + 1):
            cell = row_off[i] + j - row_lo[i]
            if i == 0 and j == 0:
                cost[cell] = 0
                move[cell] = -1
                continue
            best = _INF
            m = -1
            if i > 0 and j > 0 and row_lo[i - 1] <= j - 1 <= row_hi[i - 1]:
                prev = cost[row_off[i - 1] + j - 1 - row_lo[i - 1]]
                if prev < _INF:
                    pc = _pair_cost(k0 + i - 1, j0 + j - 1, shift, p_wlo, p_whi, tol, o_t, p_fields, o_fields,
                                    p_check, max_shift, anc)
                    if pc >= 0 and prev + pc < best:
                        best = prev + pc
                        m = 0
            if i > 0 and row_lo[i - 1] <= j <= row_hi[i - 1]:
                prev = cost[row_off[i - 1] + j - row_lo[i - 1]]
                if prev + GAP_COST < best:
                    best = prev + GAP_COST
                    m = 1
            if j > row_lo[i]:
                prev = cost[cell - 1]
                if prev + GAP_COST < best:
                    best = prev + GAP_COST
                    m = 2
            cost[cell] = best
            move[cell] = m
    i = kp
    j = ko
    while i > 0 or j > 0:
        m = move[row_off[i] + j - row_lo[i]]
        if m == 0:
            match[k0 + i - 1] = j0 + j - 1
            stage[k0 + i - 1] = STAGE_ALIGN
            i -= 1
            j -= 1
        elif m == 1:
            i -= 1
        else:
            j -= 1


@njit(cache=True)
def gap_align(seg_p0, seg_p1, seg_o0, seg_o1, p_t, p_wlo, p_whi, tol, o_t, p_fields, o_fields, p_check, max_shift,
              band, match, stage, anchor=None):
    """Stage 2: banded alignment over every gap with events left on both sides. Each gap is
    measured from its left matched pair (ABSOLUTE-anchored predictions from their own time)."""
    anc = _anchors(anchor, p_t.size)
    for s in range(seg_p0.size):
        a, b, c, d = seg_p0[s], seg_p1[s], seg_o0[s], seg_o1[s]
        start = a
        jprev = c - 1
        shift = np.int64(0)
        for k in range(a, b + 1):
            if k < b and match[k] < 0:
                continue
            jnext = match[k] if k < b else d
            if k > start and jnext - jprev > 1:
                _align_one_gap(start, k, jprev + 1, jnext, shift, band, p_wlo, p_whi, tol, o_t, p_fields, o_fields,
                               p_check, max_shift, match, stage, anc)
            if k < b:
                jprev = match[k]
                shift = o_t[jprev] - p_t[k]
                start = k + 1


@njit(cache=True)
def find_reorders(seg_p0, seg_p1, seg_o0, seg_o1, p_t, o_t, p_fields, o_fields, p_check, max_shift, match, stage,
                  o_match):
    """Stage 3: pair a leftover prediction with the first leftover observation of a different
    gap whose checked fields are equal and whose time is within max_shift. Predictions that
    check no field cannot be told apart, so they are never called reordered."""
    p_gap = np.empty(p_t.size, np.int64)
    o_gap = np.empty(o_t.size, np.int64)
    for s in range(seg_p0.size):
        a, b, c, d = seg_p0[s], seg_p1[s], seg_o0[s], seg_o1[s]
        g = 0
        for k in range(a, b):
            p_gap[k] = g
            if match[k] >= 0:
                g += 1
        g = 0
        for j in range(c, d):
            o_gap[j] = g
            if o_match[j] >= 0:
                g += 1
        lo_ptr = c
        for k in range(a, b):
            if match[k] >= 0 or p_check[k] == 0:
                continue
            while lo_ptr < d and o_t[lo_ptr] < p_t[k] - max_shift:
                lo_ptr += 1
            j = lo_ptr
            while j < d and o_t[j] <= p_t[k] + max_shift:
                if o_match[j] < 0 and o_gap[j] != p_gap[k] and \
                        field_mismatch(p_fields, o_fields, k, j, p_check[k]) == 0:
                    match[k] = j
                    stage[k] = STAGE_REORDER
                    o_match[j] = k
                    break
                j += 1


@njit(cache=True)
def label(seg_p0, seg_p1, p_t, p_wlo, p_whi, tol, o_t, p_fields, o_fields, p_check, match, stage, status, expected,
          delta, mismatch, anchor=None):
    """Stage 4: expected time (from the observed time of the latest in-order matched
    predecessor, or the predicted time itself when ABSOLUTE), delta outside the window,
    verdict and field mismatches per prediction."""
    anc = _anchors(anchor, p_t.size)
    for s in range(seg_p0.size):
        shift = np.int64(0)
        for k in range(seg_p0[s], seg_p1[s]):
            sh = _anchor_shift(anc, k, shift)
            expected[k] = p_t[k] + sh
            j = match[k]
            if j < 0:
                status[k] = STATUS_MISSING
                delta[k] = 0
                continue
            o = o_t[j]
            lo = p_wlo[k] + sh
            hi = p_whi[k] + sh
            d = np.int64(0)
            if o < lo:
                d = o - lo
            elif o > hi:
                d = o - hi
            mismatch[k] = field_mismatch(p_fields, o_fields, k, j, p_check[k])
            if stage[k] == STAGE_REORDER:
                status[k] = STATUS_REORDERED
                delta[k] = o - expected[k]
                continue
            delta[k] = d
            if d > tol[k]:
                status[k] = STATUS_LATE
            elif d < -tol[k]:
                status[k] = STATUS_EARLY
            else:
                status[k] = STATUS_OK
            shift = o - p_t[k]


@njit(cache=True)
def observed_owner(match, n_obs):
    """Inverse of `match`: the prediction each observation was matched to, or -1."""
    o_match = np.full(n_obs, -1, np.int64)
    for k in range(match.size):
        if match[k] >= 0:
            o_match[match[k]] = k
    return o_match


@njit(cache=True)
def check_before(a_pos, b_pos, match, o_t, o_frame):
    """Happens-before pairs (prediction a before prediction b): 1 where both were observed
    and b's observation came first (by time, then frame number)."""
    out = np.zeros(a_pos.size, np.int8)
    for c in range(a_pos.size):
        ja = match[a_pos[c]]
        jb = match[b_pos[c]]
        if ja < 0 or jb < 0:
            continue
        if o_t[jb] < o_t[ja] or (o_t[jb] == o_t[ja] and o_frame[jb] < o_frame[ja]):
            out[c] = 1
    return out


@njit(cache=True)
def _quiet_range(c, q_seg, q_t0, q_t1, seg_o0, seg_o1, o_t):
    s = q_seg[c]
    if s < 0:
        return 0, 0
    c0, c1 = seg_o0[s], seg_o1[s]
    lo = c0 + np.searchsorted(o_t[c0:c1], q_t0[c], side="left")
    hi = c0 + np.searchsorted(o_t[c0:c1], q_t1[c], side="right")
    return lo, hi


@njit(cache=True)
def check_quiet(q_seg, q_t0, q_t1, seg_o0, seg_o1, o_t):
    """'No event of stream S in [t0, t1]': (constraint, observation) pairs that break it.
    `q_seg` is each constraint's stream segment, -1 if the stream has no events."""
    count = 0
    for c in range(q_seg.size):
        lo, hi = _quiet_range(c, q_seg, q_t0, q_t1, seg_o0, seg_o1, o_t)
        count += hi - lo
    cons = np.empty(count, np.int64)
    obs = np.empty(count, np.int64)
    n = 0
    for c in range(q_seg.size):
        lo, hi = _quiet_range(c, q_seg, q_t0, q_t1, seg_o0, seg_o1, o_t)
        for j in range(lo, hi):
            cons[n] = c
            obs[n] = j
            n += 1
    return cons, obs
