"""Plain-Python reference of the comparison stages in `harness.compare.kernels`: the same
algorithm over lists, written to be read. The tests hold the kernels to it."""

from __future__ import annotations

import bisect

import numpy as np

from harness.compare import kernels as K
from harness.compare.core import StageResult, _quiet_segments
from harness.compare.events import ANCHOR_ABSOLUTE, Constraints, Prepared


def _mismatch(pf: tuple, of: tuple, mask: int) -> int:
    return sum(1 << f for f in range(len(pf)) if (mask >> f) & 1 and pf[f] != of[f])


class _Stream:
    """One stream's slice of both sides, with the arrays as lists."""

    def __init__(self, ev: dict, a: int, b: int, c: int, d: int):
        self.ev, self.a, self.b, self.c, self.d = ev, a, b, c, d

    def mismatch(self, k: int, j: int) -> int:
        ev = self.ev
        return _mismatch(ev["p_f"][k], ev["o_f"][j], ev["check"][k])

    def anchored(self, k: int, shift: int) -> int:
        """The shift prediction k is measured with: none when it is anchored ABSOLUTE."""
        return 0 if self.ev["anchor"][k] == ANCHOR_ABSOLUTE else shift

    def window(self, k: int, shift: int) -> tuple[int, int]:
        ev = self.ev
        shift = self.anchored(k, shift)
        return ev["wlo"][k] + shift - ev["tol"][k], ev["whi"][k] + shift + ev["tol"][k]


def _forward(st: _Stream, match: list, stage: list) -> None:
    o_t = st.ev["o_t"]
    j, shift = st.c, 0
    for k in range(st.a, st.b):
        lo, hi = st.window(k, shift)
        while j < st.d and o_t[j] < lo:
            j += 1
        for q in range(j, st.d):
            if o_t[q] > hi:
                break
            if not st.mismatch(k, q):
                match[k], stage[k] = q, K.STAGE_FORWARD
                shift = o_t[q] - st.ev["p_t"][k]
                j = q + 1
                break


def _backward(st: _Stream, match: list, stage: list) -> None:
    o_t, p_t = st.ev["o_t"], st.ev["p_t"]
    prev_obs, last = {}, st.c - 1
    for k in range(st.a, st.b):
        prev_obs[k] = last
        if match[k] >= 0:
            last = match[k]
    jj, shift = st.d - 1, 0
    for k in reversed(range(st.a, st.b)):
        if match[k] >= 0:
            jj, shift = match[k] - 1, o_t[match[k]] - p_t[k]
            continue
        lo, hi = st.window(k, shift)
        while jj > prev_obs[k] and o_t[jj] > hi:
            jj -= 1
        for q in range(jj, prev_obs[k], -1):
            if o_t[q] < lo:
                break
            if not st.mismatch(k, q):
                match[k], stage[k] = q, K.STAGE_BACKWARD
                shift = o_t[q] - p_t[k]
                jj = q - 1
                break


def _pair_cost(st: _Stream, k: int, j: int, shift: int, max_shift: int) -> int | None:
    ev = st.ev
    lo, hi = st.window(k, shift)
    o = ev["o_t"][j]
    dist = lo - o if o < lo else (o - hi if o > hi else 0)
    if dist > max_shift:
        return None
    return (1 if dist > 0 else 0) + (1 if _mismatch(ev["p_f"][k], ev["o_f"][j], ev["check"][k]) else 0)


def _align_gap(st: _Stream, k0: int, k1: int, j0: int, j1: int, shift: int, band: int, max_shift: int,
               match: list, stage: list) -> None:
    kp, ko = k1 - k0, j1 - j0
    rows = [(max(0, i * ko // kp - band), min(ko, -(-(i + 1) * ko // kp) + band)) for i in range(kp + 1)]
    cost: dict[tuple[int, int], int] = {}
    move: dict[tuple[int, int], int] = {}
    for i, (lo, hi) in enumerate(rows):
        for j in range(lo, hi + 1):
            if i == j == 0:
                cost[0, 0] = 0
                continue
            options = []  # (cost, move); min() keeps the first of equals: pair, then missing, then extra
            if i > 0 and j > 0 and (i - 1, j - 1) in cost:
                pc = _pair_cost(st, k0 + i - 1, j0 + j - 1, shift, max_shift)
                if pc is not None:
                    options.append((cost[i - 1, j - 1] + pc, 0))
            if i > 0 and (i - 1, j) in cost:
                options.append((cost[i - 1, j] + K.GAP_COST, 1))
            if j > lo:
                options.append((cost[i, j - 1] + K.GAP_COST, 2))
            cost[i, j], move[i, j] = min(options, key=lambda o: o[0])
    i, j = kp, ko
    while (i, j) != (0, 0):
        m = move[i, j]
        if m == 0:
            match[k0 + i - 1], stage[k0 + i - 1] = j0 + j - 1, K.STAGE_ALIGN
            i, j = i - 1, j - 1
        elif m == 1:
            i -= 1
        else:
            j -= 1


def _align_gaps(st: _Stream, band: int, max_shift: int, match: list, stage: list) -> None:
    o_t, p_t = st.ev["o_t"], st.ev["p_t"]
    start, jprev, shift = st.a, st.c - 1, 0
    for k in range(st.a, st.b + 1):
        if k < st.b and match[k] < 0:
            continue
        jnext = match[k] if k < st.b else st.d
        if k > start and jnext - jprev > 1:
            _align_gap(st, start, k, jprev + 1, jnext, shift, band, max_shift, match, stage)
        if k < st.b:
            jprev, shift, start = match[k], o_t[match[k]] - p_t[k], k + 1


def _reorders(st: _Stream, max_shift: int, match: list, stage: list, o_match: list) -> None:
    ev = st.ev
    p_t, o_t = ev["p_t"], ev["o_t"]
    p_gap, g = {}, 0
    for k in range(st.a, st.b):
        p_gap[k] = g
        g += match[k] >= 0
    o_gap, g = {}, 0
    for j in range(st.c, st.d):
        o_gap[j] = g
        g += o_match[j] >= 0
    lo_ptr = st.c
    for k in range(st.a, st.b):
        if match[k] >= 0 or ev["check"][k] == 0:
            continue
        while lo_ptr < st.d and o_t[lo_ptr] < p_t[k] - max_shift:
            lo_ptr += 1
        j = lo_ptr
        while j < st.d and o_t[j] <= p_t[k] + max_shift:
            if o_match[j] < 0 and o_gap[j] != p_gap[k] and not _mismatch(ev["p_f"][k], ev["o_f"][j], ev["check"][k]):
                match[k], stage[k], o_match[j] = j, K.STAGE_REORDER, k
                break
            j += 1


def _label(st: _Stream, match: list, stage: list, out: dict) -> None:
    ev = st.ev
    shift = 0
    for k in range(st.a, st.b):
        sh = st.anchored(k, shift)
        expected = ev["p_t"][k] + sh
        out["expected"][k] = expected
        j = match[k]
        if j < 0:
            out["status"][k] = K.STATUS_MISSING
            continue
        o = ev["o_t"][j]
        lo, hi = ev["wlo"][k] + sh, ev["whi"][k] + sh
        d = o - lo if o < lo else (o - hi if o > hi else 0)
        out["mismatch"][k] = _mismatch(ev["p_f"][k], ev["o_f"][j], ev["check"][k])
        if stage[k] == K.STAGE_REORDER:
            out["status"][k] = K.STATUS_REORDERED
            out["delta"][k] = o - expected
            continue
        out["delta"][k] = d
        tol = ev["tol"][k]
        out["status"][k] = K.STATUS_LATE if d > tol else K.STATUS_EARLY if d < -tol else K.STATUS_OK
        shift = o - ev["p_t"][k]


def run_stages_reference(prep: Prepared, cons: Constraints, pos_a: np.ndarray, pos_b: np.ndarray, max_shift_ns: int,
                         band: int) -> StageResult:
    """Same contract as `harness.compare.core.run_stages_numba`."""
    p_stream, p_t = prep.p_stream.tolist(), prep.p_t.tolist()
    tol = []
    for k, (s, t) in enumerate(zip(p_stream, p_t, strict=True)):
        gap = t - p_t[k - 1] if k > 0 and s == p_stream[k - 1] else 0
        tol.append(max(int(prep.p_tol_abs[k]), int(float(prep.p_tol_frac[k]) * gap)))
    ev = {"p_t": p_t, "wlo": prep.p_wlo.tolist(), "whi": prep.p_whi.tolist(), "tol": tol, "o_t": prep.o_t.tolist(),
          "p_f": [tuple(r) for r in prep.p_fields.tolist()], "o_f": [tuple(r) for r in prep.o_fields.tolist()],
          "check": prep.p_check.tolist(), "anchor": prep.p_anchor.tolist()}
    streams = [_Stream(ev, *seg) for seg in zip(prep.seg_p0.tolist(), prep.seg_p1.tolist(), prep.seg_o0.tolist(),
                                                prep.seg_o1.tolist(), strict=True)]
    n_p, n_o = len(p_t), len(ev["o_t"])
    match, stage = [-1] * n_p, [0] * n_p
    for st in streams:
        _forward(st, match, stage)
        _backward(st, match, stage)
    for st in streams:
        _align_gaps(st, band, max_shift_ns, match, stage)
    o_match = [-1] * n_o
    for k, j in enumerate(match):
        if j >= 0:
            o_match[j] = k
    for st in streams:
        _reorders(st, max_shift_ns, match, stage, o_match)
    out = {"status": [0] * n_p, "expected": [0] * n_p, "delta": [0] * n_p, "mismatch": [0] * n_p}
    for st in streams:
        _label(st, match, stage, out)
    o_t, o_frame = ev["o_t"], prep.o_frame.tolist()
    before = []
    for ka, kb in zip(pos_a.tolist(), pos_b.tolist(), strict=True):
        ja, jb = match[ka], match[kb]
        before.append(int(ja >= 0 and jb >= 0 and (o_t[jb], o_frame[jb]) < (o_t[ja], o_frame[ja])))
    quiet_cons, quiet_obs = [], []
    for c, s in enumerate(_quiet_segments(prep, cons).tolist()):
        if s < 0:
            continue
        c0, c1 = int(prep.seg_o0[s]), int(prep.seg_o1[s])
        lo = bisect.bisect_left(o_t, int(cons.quiet_t0[c]), c0, c1)
        hi = bisect.bisect_right(o_t, int(cons.quiet_t1[c]), c0, c1)
        quiet_cons += [c] * (hi - lo)
        quiet_obs += range(lo, hi)

    def arr(values, dtype):
        return np.asarray(values, dtype=dtype).reshape(-1)

    return StageResult(arr(tol, np.int64), arr(match, np.int64), arr(stage, np.int8), arr(out["status"], np.int8),
                       arr(out["expected"], np.int64), arr(out["delta"], np.int64), arr(out["mismatch"], np.int64),
                       arr(o_match, np.int64), arr(before, np.int8), arr(quiet_cons, np.int64),
                       arr(quiet_obs, np.int64))
