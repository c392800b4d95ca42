"""Leaderboard: validates and verifies submissions (``python -m leaderboard validate``).

It accepts result records only (:func:`benchmark.results.validate_record`), packaged as a
submission (:mod:`benchmark.submission`); see :mod:`leaderboard.validate`.
"""

from benchmark.results import SCHEMA_VERSION, validate_record

from .validate import (
    MIN_SEEDS,
    SELF_REPORTED,
    VERIFIED,
    SubmissionError,
    metric_range,
    validate_submission,
    verify_submission,
)

__all__ = ["MIN_SEEDS", "SCHEMA_VERSION", "SELF_REPORTED", "VERIFIED", "SubmissionError",
           "metric_range", "validate_record", "validate_submission", "verify_submission"]
