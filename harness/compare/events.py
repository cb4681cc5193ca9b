"""Event streams as columnar arrays: what the board did (observed) and what the model says
Linux would have done (predicted), plus the model's happens-before constraints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from harness.errors import HarnessError

NO_TIME = np.iinfo(np.int64).min
MAX_FIELDS = 62

# Where a prediction's expected time is measured from (the `anchor` column).
# PREVIOUS_OBSERVED: from the observed time of its stream's matched predecessor, for causal
# chains (a retransmission timer starts at the previous actual transmission).
# ABSOLUTE: at its own predicted time, for events independent of their predecessor (a
# reply to a stimulus, a periodic report): an on-time event after a late one stays on time.
ANCHOR_PREVIOUS_OBSERVED = 0
ANCHOR_ABSOLUTE = 1


class CompareInputError(HarnessError):
    """Event arrays that cannot be compared (names the array and what is wrong)."""


def _col(name: str, values, n: int, dtype, default) -> np.ndarray:
    if values is None:
        values = default
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim == 0:
        arr = np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise CompareInputError(f"{name}: expected {n} values, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _fields(name: str, values, n: int, n_fields: int) -> np.ndarray:
    if values is None:
        return np.zeros((n, n_fields), np.int64)
    arr = np.asarray(values, dtype=np.int64)
    if arr.ndim == 1:
        arr = arr.reshape(n, -1) if n else arr.reshape(0, n_fields)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] > MAX_FIELDS:
        raise CompareInputError(f"{name}: expected ({n}, <= {MAX_FIELDS}) int64 values, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


@dataclass
class ObservedEvents:
    """What the board did: one row per event, in any order."""

    stream: np.ndarray  # int64: flow + direction + kind, or console, or resets
    time_ns: np.ndarray  # int64, on the run's one timeline
    frame: np.ndarray  # int64 capture frame number (-1 when not from a capture)
    fields: np.ndarray  # int64 (n, F): values the model predicts (flags, seq, window, ...)

    @classmethod
    def build(cls, stream, time_ns, frame=None, fields=None, n_fields: int = 0) -> ObservedEvents:
        t = np.asarray(time_ns)
        n = t.shape[0] if t.ndim else 0
        return cls(_col("stream", stream, n, np.int64, 0), _col("time_ns", t, n, np.int64, 0),
                   _col("frame", frame, n, np.int64, -1), _fields("fields", fields, n, n_fields))

    def __len__(self) -> int:
        return self.time_ns.shape[0]


@dataclass
class PredictedEvents:
    """What the model predicts. Each event matches an observation within
    max(tol_abs_ns, tol_frac x gap from the stream's previous prediction) of its window
    [win_lo, win_hi] (a single point, time_ns, unless Linux randomises it). Only the fields
    whose bit is set in `check` are compared. `anchor` says, per event, whether the window
    moves with the observed time of the matched predecessor (ANCHOR_PREVIOUS_OBSERVED, the
    default) or stays where the model put it (ANCHOR_ABSOLUTE)."""

    stream: np.ndarray
    time_ns: np.ndarray
    fields: np.ndarray
    check: np.ndarray  # int64 bit mask over fields
    tol_abs_ns: np.ndarray
    tol_frac: np.ndarray  # float64
    win_lo: np.ndarray
    win_hi: np.ndarray
    anchor: np.ndarray  # int8: ANCHOR_PREVIOUS_OBSERVED or ANCHOR_ABSOLUTE
    # bool: Linux leaves open whether it happens (a race the observation cannot settle);
    # unmatched, it is no MISSING row. Matched, it is checked like any other.
    optional: np.ndarray | None = None

    @classmethod
    def build(cls, stream, time_ns, fields=None, check=None, tol_abs_ns=0, tol_frac=0.0, win_lo=None, win_hi=None,
              n_fields: int = 0, anchor=ANCHOR_PREVIOUS_OBSERVED, optional=False) -> PredictedEvents:
        t = _col("time_ns", time_ns, np.asarray(time_ns).shape[0], np.int64, 0)
        n = t.shape[0]
        f = _fields("fields", fields, n, n_fields)
        all_fields = (1 << f.shape[1]) - 1
        ev = cls(_col("stream", stream, n, np.int64, 0), t, f, _col("check", check, n, np.int64, all_fields),
                 _col("tol_abs_ns", tol_abs_ns, n, np.int64, 0), _col("tol_frac", tol_frac, n, np.float64, 0.0),
                 _col("win_lo", win_lo, n, np.int64, t), _col("win_hi", win_hi, n, np.int64, t),
                 _col("anchor", anchor, n, np.int8, ANCHOR_PREVIOUS_OBSERVED), _col("optional", optional, n, bool, False))
        if np.any((ev.anchor != ANCHOR_PREVIOUS_OBSERVED) & (ev.anchor != ANCHOR_ABSOLUTE)):
            bad = int(np.argmax((ev.anchor != ANCHOR_PREVIOUS_OBSERVED) & (ev.anchor != ANCHOR_ABSOLUTE)))
            raise CompareInputError(f"anchor of predicted event {bad} is {ev.anchor[bad]}; expected "
                                    f"{ANCHOR_PREVIOUS_OBSERVED} (previous observed) or {ANCHOR_ABSOLUTE} (absolute)")
        if np.any(ev.win_lo > ev.win_hi):
            bad = int(np.argmax(ev.win_lo > ev.win_hi))
            raise CompareInputError(f"win_lo > win_hi for predicted event {bad}")
        if np.any(ev.tol_abs_ns < 0) or np.any(~(ev.tol_frac >= 0)):
            raise CompareInputError("tolerances must be >= 0")
        return ev

    def __len__(self) -> int:
        return self.time_ns.shape[0]


@dataclass
class Constraints:
    """Happens-before rules the model declares. `before`: pairs (a, b) of predicted event
    indices, a observed before b. `quiet`: (stream, t0, t1), no observed event of the stream
    in [t0, t1] (for example: no frame sent while the link was down)."""

    before_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    before_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quiet_stream: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quiet_t0: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quiet_t1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def build(cls, before=(), quiet=()) -> Constraints:
        b = np.asarray(list(before), np.int64).reshape(-1, 2)
        q = np.asarray(list(quiet), np.int64).reshape(-1, 3)
        return cls(b[:, 0].copy(), b[:, 1].copy(), q[:, 0].copy(), q[:, 1].copy(), q[:, 2].copy())


@njit(cache=True)
def _sorted_by_stream_time(stream, t):
    for i in range(1, t.size):
        if stream[i] < stream[i - 1] or (stream[i] == stream[i - 1] and t[i] < t[i - 1]):
            return False
    return True


@njit(cache=True)
def _time_sorted(t):
    for i in range(1, t.size):
        if t[i] < t[i - 1]:
            return False
    return True


@njit(cache=True)
def _counting_sort_dest(stream, lo, span):
    """Stable counting sort by stream: the sorted position of each event."""
    start = np.zeros(span + 1, np.int64)
    for i in range(stream.size):
        start[stream[i] - lo + 1] += 1
    for s in range(span):
        start[s + 1] += start[s]
    dest = np.empty(stream.size, np.int64)
    for i in range(stream.size):
        s = stream[i] - lo
        dest[i] = start[s]
        start[s] += 1
    return dest


@njit(cache=True)
def _scatter(dest, cols, fields):
    """Move each row i of the int64 columns `cols` (k, n) and `fields` (n, F) to dest[i].
    A scatter in input order writes each stream's run sequentially, which is far kinder to
    the cache than gathering by a sort permutation."""
    out = np.empty_like(cols)
    out_f = np.empty_like(fields)
    order = np.empty(dest.size, np.int64)
    for i in range(dest.size):
        d = dest[i]
        order[d] = i
        for c in range(cols.shape[0]):
            out[c, d] = cols[c, i]
        for f in range(fields.shape[1]):
            out_f[d, f] = fields[i, f]
    return order, out, out_f


def stream_time_order(stream: np.ndarray, time_ns: np.ndarray) -> np.ndarray:
    """Indices sorting events by (stream, time), ties kept in input order."""
    if _sorted_by_stream_time(stream, time_ns):
        return np.arange(stream.size)
    return np.lexsort((time_ns, stream))


def sort_by_stream_time(stream: np.ndarray, time_ns: np.ndarray, cols: np.ndarray, fields: np.ndarray):
    """(order, cols[:, order], fields[order]) with order = `stream_time_order`. Input that is
    already time-ordered (as a capture is) with stream ids in a compact range takes a
    counting sort instead of a comparison sort."""
    n = stream.size
    if n and not _sorted_by_stream_time(stream, time_ns) and _time_sorted(time_ns):
        lo, hi = int(stream.min()), int(stream.max())
        if hi - lo < 4 * n + 1024:
            return _scatter(_counting_sort_dest(stream, lo, hi - lo + 1), cols, fields)
    order = stream_time_order(stream, time_ns)
    return order, cols[:, order], fields[order]


@dataclass
class Prepared:
    """Both sides sorted by (stream, time) and cut into per-stream segments."""

    p_order: np.ndarray
    o_order: np.ndarray
    p_stream: np.ndarray
    p_t: np.ndarray
    p_fields: np.ndarray
    p_check: np.ndarray
    p_tol_abs: np.ndarray
    p_tol_frac: np.ndarray
    p_wlo: np.ndarray
    p_whi: np.ndarray
    p_anchor: np.ndarray
    p_optional: np.ndarray
    o_stream: np.ndarray
    o_t: np.ndarray
    o_frame: np.ndarray
    o_fields: np.ndarray
    streams: np.ndarray
    seg_p0: np.ndarray
    seg_p1: np.ndarray
    seg_o0: np.ndarray
    seg_o1: np.ndarray


def _first_of_runs(sorted_keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return sorted_keys
    return sorted_keys[np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1]))]


def prepare(pred: PredictedEvents, obs: ObservedEvents) -> Prepared:
    """Sort and segment; checks the two sides carry the same field columns."""
    if pred.fields.shape[1] != obs.fields.shape[1]:
        raise CompareInputError(
            f"fields: predicted events carry {pred.fields.shape[1]} columns, observed {obs.fields.shape[1]}")
    p_cols = np.stack([pred.stream, pred.time_ns, pred.check, pred.tol_abs_ns, pred.tol_frac.view(np.int64),
                       pred.win_lo, pred.win_hi, pred.anchor.astype(np.int64),
                       (pred.optional if pred.optional is not None else np.zeros(len(pred), bool)).astype(np.int64)])
    po, pc, p_fields = sort_by_stream_time(pred.stream, pred.time_ns, p_cols, pred.fields)
    oo, oc, o_fields = sort_by_stream_time(obs.stream, obs.time_ns, np.stack([obs.stream, obs.time_ns, obs.frame]),
                                           obs.fields)
    p_stream, o_stream = pc[0], oc[0]
    streams = np.union1d(_first_of_runs(p_stream), _first_of_runs(o_stream))
    return Prepared(
        po, oo, p_stream, pc[1], p_fields, pc[2], pc[3], pc[4].view(np.float64), pc[5], pc[6], pc[7].astype(np.int8),
        pc[8].astype(bool), o_stream, oc[1], oc[2],
        o_fields, streams,
        np.searchsorted(p_stream, streams, "left"), np.searchsorted(p_stream, streams, "right"),
        np.searchsorted(o_stream, streams, "left"), np.searchsorted(o_stream, streams, "right"))
