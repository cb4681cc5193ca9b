"""Comparison core: per-stream alignment of observed against predicted events, with
tolerances, windows and happens-before constraints, into a divergence table."""

from harness.compare.core import DEFAULT_BAND, DEFAULT_MAX_SHIFT_NS, Comparison, compare
from harness.compare.divergence import DIVERGENCE_DTYPE, DivergenceKind, to_rows
from harness.compare.events import (
    ANCHOR_ABSOLUTE,
    ANCHOR_PREVIOUS_OBSERVED,
    NO_TIME,
    CompareInputError,
    Constraints,
    ObservedEvents,
    PredictedEvents,
)

__all__ = [
    "ANCHOR_ABSOLUTE", "ANCHOR_PREVIOUS_OBSERVED", "DEFAULT_BAND", "DEFAULT_MAX_SHIFT_NS", "DIVERGENCE_DTYPE", "NO_TIME", "CompareInputError", "Comparison",
    "Constraints", "DivergenceKind", "ObservedEvents", "PredictedEvents", "compare", "to_rows",
]
