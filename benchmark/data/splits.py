"""Deterministic patient-level splits keyed by ids.

A patient's split depends only on its id and a salt: ``u = sha256(salt + ":" + id)`` read as
a number in [0, 1), compared with the cumulative split fractions. So a patient keeps its
split when rows are added, removed or reordered, and no patient is ever in two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ..schema import SPLITS

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.7, "val": 0.1, "test": 0.2}


def _unit_interval(patient_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(patient_id: str, *, fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
             salt: str = "fairsynth") -> str:
    """The split ("train", "val" or "test") of one patient id."""
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split name(s) {sorted(unknown)}; expected {SPLITS}")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-9 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    u = _unit_interval(str(patient_id), salt)
    cumulative = 0.0
    names = [s for s in SPLITS if s in fractions]
    for name in names:
        cumulative += fractions[name]
        if u < cumulative:
            return name
    return names[-1]


def assign_splits(patient_ids: Iterable[str], **kwargs) -> list[str]:
    """The split of each id in ``patient_ids`` (same order); see :func:`split_of`."""
    return [split_of(pid, **kwargs) for pid in patient_ids]
