"""The divergence table: one row per place the board departed from the model."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from harness.compare.events import NO_TIME


class DivergenceKind(IntEnum):
    """What kind of departure a row records."""

    MISSING = 1  # predicted, never observed
    EXTRA = 2  # observed, never predicted
    LATE = 3  # observed after its window + tolerance
    EARLY = 4  # observed before its window - tolerance
    REORDERED = 5  # observed, but in another place of its stream's order
    FIELD_MISMATCH = 6  # observed in time, a field differs (`field` says which)
    ORDER_VIOLATION = 7  # a happens-before or quiet-interval constraint broken


DIVERGENCE_DTYPE = np.dtype([
    ("kind", np.int8),
    ("field", np.int8),  # field column for FIELD_MISMATCH, else -1
    ("stream", np.int64),
    ("pred_id", np.int64),  # index into the predicted events given, -1 if none
    ("pred_ns", np.int64),  # the model's time (NO_TIME if none)
    ("expected_ns", np.int64),  # pred_ns re-measured from the matched predecessor
    ("obs_id", np.int64),  # index into the observed events given, -1 if none
    ("obs_ns", np.int64),
    ("frame", np.int64),  # capture frame number of the observation, -1 if none
    ("delta_ns", np.int64),  # observed minus the nearest edge of the expected window
    ("tol_ns", np.int64),  # tolerance used
    ("pred_value", np.int64),  # FIELD_MISMATCH: predicted value
    ("obs_value", np.int64),  # FIELD_MISMATCH: observed value
    ("related", np.int64),  # ORDER_VIOLATION: the other predicted event id, or the constraint index
])

_DEFAULTS = {"field": -1, "pred_id": -1, "pred_ns": NO_TIME, "expected_ns": NO_TIME, "obs_id": -1, "obs_ns": NO_TIME,
             "frame": -1, "delta_ns": 0, "tol_ns": 0, "pred_value": 0, "obs_value": 0, "related": -1}


def rows_block(kind: DivergenceKind, n: int, **columns) -> np.ndarray:
    """`n` rows of one kind; columns not given take their 'none' value."""
    out = np.empty(n, DIVERGENCE_DTYPE)
    out["kind"] = kind
    for name, default in _DEFAULTS.items():
        out[name] = columns.pop(name, default)
    out["stream"] = columns.pop("stream")
    if columns:
        raise TypeError(f"unknown divergence columns {sorted(columns)}")
    return out


def canonical_order(table: np.ndarray) -> np.ndarray:
    """Rows by stream, then time (expected, else observed), kind, field, ids."""
    when = np.where(table["expected_ns"] != NO_TIME, table["expected_ns"], table["obs_ns"])
    order = np.lexsort((table["related"], table["obs_id"], table["pred_id"], table["field"], table["kind"], when,
                        table["stream"]))
    return table[order]


def to_rows(table: np.ndarray, field_names: tuple[str, ...] = ()) -> list[dict]:
    """The table as dicts, kinds by name, absent times and ids as None."""
    out = []
    for rec in table.tolist():
        row = dict(zip(DIVERGENCE_DTYPE.names, rec, strict=True))
        row["kind"] = DivergenceKind(row["kind"]).name
        for name in ("pred_ns", "expected_ns", "obs_ns"):
            if row[name] == NO_TIME:
                row[name] = None
        for name in ("pred_id", "obs_id", "frame", "related"):
            if row[name] == -1:
                row[name] = None
        if row["field"] == -1:
            row["field"] = None
        elif row["field"] < len(field_names):
            row["field"] = field_names[row["field"]]
        out.append(row)
    return out
