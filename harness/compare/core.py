"""Compare observed events with predicted ones: the driver around the numba kernels (or
the plain-Python reference) that turns their per-event results into a divergence table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.compare import kernels as K
from harness.compare.divergence import DIVERGENCE_DTYPE, DivergenceKind, canonical_order, rows_block, to_rows
from harness.compare.events import CompareInputError, Constraints, ObservedEvents, PredictedEvents, Prepared, prepare

# An event off its window by more than this is not LATE or EARLY but MISSING plus EXTRA.
DEFAULT_MAX_SHIFT_NS = 1_000_000_000
# Half-width of the alignment band, in events, around each gap's diagonal.
DEFAULT_BAND = 32


@dataclass
class StageResult:
    """Per-event results of the stages, in (stream, time) order."""

    tol: np.ndarray
    match: np.ndarray  # predicted -> observed position, -1 if none
    stage: np.ndarray  # which stage matched it (kernels.STAGE_*)
    status: np.ndarray  # kernels.STATUS_*
    expected: np.ndarray
    delta: np.ndarray
    mismatch: np.ndarray  # bit per differing checked field
    o_match: np.ndarray  # observed -> predicted position, -1 if none
    before_broken: np.ndarray  # int8 per before-constraint
    quiet_cons: np.ndarray  # quiet-constraint index per offending observation
    quiet_obs: np.ndarray  # offending observation position


@dataclass
class Comparison:
    """The verdict material: the divergence table and the matching behind it."""

    divergences: np.ndarray  # DIVERGENCE_DTYPE, canonical order
    match: np.ndarray  # per predicted event (input order): matched observed event index, -1 if none
    field_names: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No divergence at all."""
        return self.divergences.size == 0

    def rows(self) -> list[dict]:
        """The divergence table as dicts."""
        return to_rows(self.divergences, self.field_names)

    def count(self, kind: DivergenceKind) -> int:
        """How many rows of one kind."""
        return int(np.count_nonzero(self.divergences["kind"] == kind))


def _quiet_segments(prep: Prepared, cons: Constraints) -> np.ndarray:
    """Each quiet constraint's stream segment, -1 when that stream has no events."""
    if prep.streams.size == 0:
        return np.full(cons.quiet_stream.size, -1, np.int64)
    pos = np.minimum(np.searchsorted(prep.streams, cons.quiet_stream), prep.streams.size - 1)
    return np.where(prep.streams[pos] == cons.quiet_stream, pos, -1).astype(np.int64)


def run_stages_numba(prep: Prepared, cons: Constraints, p_pos_a: np.ndarray, p_pos_b: np.ndarray, max_shift_ns: int,
                     band: int) -> StageResult:
    """All stages with the numba kernels."""
    n_p, n_o = prep.p_t.size, prep.o_t.size
    tol = K.tolerances(prep.p_stream, prep.p_t, prep.p_tol_abs, prep.p_tol_frac)
    match = np.full(n_p, -1, np.int64)
    stage = np.zeros(n_p, np.int8)
    seg = (prep.seg_p0, prep.seg_p1, prep.seg_o0, prep.seg_o1)
    K.windowed_match(*seg, prep.p_t, prep.p_wlo, prep.p_whi, tol, prep.o_t, prep.p_fields, prep.o_fields, prep.p_check,
                     match, stage, prep.p_anchor)
    K.gap_align(*seg, prep.p_t, prep.p_wlo, prep.p_whi, tol, prep.o_t, prep.p_fields, prep.o_fields, prep.p_check,
                np.int64(max_shift_ns), np.int64(band), match, stage, prep.p_anchor)
    o_match = K.observed_owner(match, n_o)
    K.find_reorders(*seg, prep.p_t, prep.o_t, prep.p_fields, prep.o_fields, prep.p_check, np.int64(max_shift_ns),
                    match, stage, o_match)
    status = np.zeros(n_p, np.int8)
    expected = np.empty(n_p, np.int64)
    delta = np.zeros(n_p, np.int64)
    mismatch = np.zeros(n_p, np.int64)
    K.label(prep.seg_p0, prep.seg_p1, prep.p_t, prep.p_wlo, prep.p_whi, tol, prep.o_t, prep.p_fields, prep.o_fields,
            prep.p_check, match, stage, status, expected, delta, mismatch, prep.p_anchor)
    before = K.check_before(p_pos_a, p_pos_b, match, prep.o_t, prep.o_frame)
    qc, qo = K.check_quiet(_quiet_segments(prep, cons), cons.quiet_t0, cons.quiet_t1, prep.seg_o0, prep.seg_o1,
                           prep.o_t)
    return StageResult(tol, match, stage, status, expected, delta, mismatch, o_match, before, qc, qo)


def divergence_table(prep: Prepared, cons: Constraints, r: StageResult) -> np.ndarray:
    """Rows from the per-event results, in canonical order."""
    blocks = []

    def pred_cols(k, with_obs):
        cols = {"stream": prep.p_stream[k], "pred_id": prep.p_order[k], "pred_ns": prep.p_t[k],
                "expected_ns": r.expected[k], "tol_ns": r.tol[k]}
        if with_obs:
            j = r.match[k]
            cols.update(obs_id=prep.o_order[j], obs_ns=prep.o_t[j], frame=prep.o_frame[j], delta_ns=r.delta[k])
        return cols

    for status, kind in ((K.STATUS_MISSING, DivergenceKind.MISSING), (K.STATUS_LATE, DivergenceKind.LATE),
                         (K.STATUS_EARLY, DivergenceKind.EARLY), (K.STATUS_REORDERED, DivergenceKind.REORDERED)):
        hit = r.status == status
        if status == K.STATUS_MISSING:
            hit &= ~prep.p_optional    # an optional event that did not happen is no divergence
        k = np.flatnonzero(hit)
        blocks.append(rows_block(kind, k.size, **pred_cols(k, status != K.STATUS_MISSING)))
    for f in range(prep.p_fields.shape[1]):
        k = np.flatnonzero((r.mismatch >> f) & 1)
        j = r.match[k]
        blocks.append(rows_block(DivergenceKind.FIELD_MISMATCH, k.size, field=f, pred_value=prep.p_fields[k, f],
                                 obs_value=prep.o_fields[j, f], **pred_cols(k, True)))
    j = np.flatnonzero(r.o_match < 0)
    blocks.append(rows_block(DivergenceKind.EXTRA, j.size, stream=prep.o_stream[j], obs_id=prep.o_order[j],
                             obs_ns=prep.o_t[j], frame=prep.o_frame[j]))
    c = np.flatnonzero(r.before_broken)
    if c.size:
        inv = np.empty_like(prep.p_order)
        inv[prep.p_order] = np.arange(prep.p_order.size)
        kb = inv[cons.before_b[c]]
        ka = inv[cons.before_a[c]]
        jb, ja = r.match[kb], r.match[ka]
        blocks.append(rows_block(DivergenceKind.ORDER_VIOLATION, c.size, stream=prep.p_stream[kb],
                                 pred_id=cons.before_b[c], pred_ns=prep.p_t[kb], expected_ns=r.expected[kb],
                                 obs_id=prep.o_order[jb], obs_ns=prep.o_t[jb], frame=prep.o_frame[jb],
                                 delta_ns=prep.o_t[jb] - prep.o_t[ja], related=cons.before_a[c]))
    q, j = r.quiet_cons, r.quiet_obs
    blocks.append(rows_block(DivergenceKind.ORDER_VIOLATION, q.size, stream=prep.o_stream[j], obs_id=prep.o_order[j],
                             obs_ns=prep.o_t[j], frame=prep.o_frame[j], delta_ns=prep.o_t[j] - cons.quiet_t0[q],
                             related=q))
    table = np.concatenate(blocks) if blocks else np.empty(0, DIVERGENCE_DTYPE)
    return canonical_order(table)


def _before_positions(prep: Prepared, cons: Constraints) -> tuple[np.ndarray, np.ndarray]:
    n = prep.p_order.size
    for name, ids in (("before_a", cons.before_a), ("before_b", cons.before_b)):
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise CompareInputError(f"constraints.{name}: predicted event id out of range 0..{n - 1}")
    inv = np.empty(n, np.int64)
    inv[prep.p_order] = np.arange(n)
    return inv[cons.before_a], inv[cons.before_b]


def compare(pred: PredictedEvents, obs: ObservedEvents, constraints: Constraints | None = None, *,
            max_shift_ns: int = DEFAULT_MAX_SHIFT_NS, band: int = DEFAULT_BAND, engine: str = "numba",
            field_names: tuple[str, ...] = ()) -> Comparison:
    """Align `obs` to `pred` per stream and list every divergence.

    engine="reference" runs the plain-Python reference of the same algorithm.
    """
    cons = constraints or Constraints()
    prep = prepare(pred, obs)
    pos_a, pos_b = _before_positions(prep, cons)
    if engine == "numba":
        r = run_stages_numba(prep, cons, pos_a, pos_b, max_shift_ns, band)
    elif engine == "reference":
        from harness.compare.reference import run_stages_reference

        r = run_stages_reference(prep, cons, pos_a, pos_b, max_shift_ns, band)
    else:
        raise ValueError(f"engine must be 'numba' or 'reference', not {engine!r}")
    match = np.full(len(pred), -1, np.int64)
    has = r.match >= 0
    match[prep.p_order[has]] = prep.o_order[r.match[has]]
    return Comparison(divergence_table(prep, cons, r), match, tuple(field_names))
