"""Leaderboard: accepts result records only (see benchmark.results.validate_record)."""

from benchmark.results import SCHEMA_VERSION, validate_record

__all__ = ["SCHEMA_VERSION", "validate_record"]
