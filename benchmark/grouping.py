"""The task's grouper: sensitive-attribute values to group labels, once, for every stage.

In the spirit of WILDS's ``CombinatorialGrouper`` (the dataset owns how metadata become
groups), a :class:`Grouper` is built from a task's sensitive attributes (``task.grouper``) and
turns the attributes of a dataset, of whole columns or of a list of records into:

* **groupings**: one per sensitive attribute (``"sex"``, groups ``"female"``, ``"male"``) and
  one per intersection of two or more of them, in :func:`itertools.combinations` order
  (``"sex x age_group"``, groups ``"female x 40-59"``; :data:`INTERSECTION_SEP`);
* **strata**: the finest cell, every attribute's label joined by :data:`STRATUM_SEP`
  (``"female|40-59"``, ``"female|unknown"``), so every group of every grouping is a union of
  strata. The bootstrap resamples within strata; the downstream reweighting weights them.

**Unknown values (the one policy, the same in every stage).** A missing value (``None``, or
NaN) is labelled :data:`UNKNOWN`; in an intersection, a row missing any of its values is in
the intersection's :data:`UNKNOWN` group. The unknown group is *counted and reported* like any
other group (its size, and its metric where one is defined) but is *never part of a fairness
summary*: not of FID variance, ES-FID or the FID gap, not of DP, EO, ES-ACC, NAR or the worst
group, not of the adherence gap, and it gets no FairDiffusion perturbation scale. Overall
numbers are over all rows, unknown ones included. Generation metrics, downstream metrics,
condition adherence, the diffusion training data and FairDiffusion all read their labels from
here (docs/metrics.md, "Groups and unknown values").
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from .schema import ATTRIBUTES, column

log = logging.getLogger(__name__)

#: The label of a missing attribute value, in every grouping and every stage.
UNKNOWN = "unknown"
#: How intersection groupings and their groups are named: ``"sex x age_group"``,
#: ``"female x 40-59"``.
INTERSECTION_SEP = " x "
#: How a stratum joins every attribute's label: ``"female|40-59"``.
STRATUM_SEP = "|"

Rows = datasets.Dataset | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


def is_unknown(value: Any) -> bool:
    """True for a missing value (None, NaN) and for the :data:`UNKNOWN` label itself."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == UNKNOWN


def label_of(value: Any) -> str:
    """The group label of one attribute value: :data:`UNKNOWN` when it is missing."""
    return UNKNOWN if is_unknown(value) else str(value)


def summary_labels(labels: Sequence[str]) -> list[str]:
    """The labels that may enter a fairness summary: all but :data:`UNKNOWN`."""
    return [g for g in labels if g != UNKNOWN]


@dataclass(frozen=True)
class GroupLabels:
    """The group labels of a set of rows (row i of every list is row i of the set).

    Attributes:
        by_grouping: grouping name -> label of every row (:data:`UNKNOWN` where unknown).
        strata: the finest cell of every row (:data:`STRATUM_SEP`-joined attribute labels).
    """

    by_grouping: dict[str, list[str]]
    strata: list[str]

    def __len__(self) -> int:
        return len(self.strata)

    def counts(self, grouping: str) -> dict[str, int]:
        """Rows per group of ``grouping``, sorted by label with :data:`UNKNOWN` last."""
        c = Counter(self.by_grouping[grouping])
        return dict(sorted(c.items(), key=lambda kv: (kv[0] == UNKNOWN, kv[0])))

    def unknown_counts(self) -> dict[str, int]:
        """Rows in the :data:`UNKNOWN` group of each grouping (0 where none)."""
        return {g: sum(v == UNKNOWN for v in labels) for g, labels in self.by_grouping.items()}


def _n_rows(rows: Rows) -> int:
    if isinstance(rows, Mapping):
        return len(next(iter(rows.values()), ()))
    return len(rows)


class Grouper:
    """Group labels of a task's sensitive attributes (see the module docstring).

    Args:
        attributes: the sensitive attributes, in the task's order (schema attribute names).
    """

    def __init__(self, attributes: Sequence[str]):
        attrs = tuple(attributes)
        for a in attrs:
            if a not in ATTRIBUTES:
                raise ValueError(f"grouper: unknown attribute {a!r}; expected one of "
                                 f"{', '.join(ATTRIBUTES)}")
            if UNKNOWN in ATTRIBUTES[a]:  # would make an unknown value look known
                raise ValueError(f"grouper: {a}'s vocabulary holds the label {UNKNOWN!r}")
        if len(set(attrs)) != len(attrs):
            raise ValueError(f"grouper: an attribute is listed twice in {attrs}")
        self.attributes = attrs
        combos = [(a,) for a in attrs]
        for r in range(2, len(attrs) + 1):
            combos.extend(itertools.combinations(attrs, r))
        #: grouping name -> its attributes, attributes first, then intersections
        self.groupings: dict[str, tuple[str, ...]] = {INTERSECTION_SEP.join(c): tuple(c)
                                                      for c in combos}

    def __repr__(self) -> str:
        return f"Grouper({list(self.attributes)})"

    @property
    def finest(self) -> str | None:
        """The grouping of all the attributes together (None without attributes)."""
        return INTERSECTION_SEP.join(self.attributes) if self.attributes else None

    def groups(self, grouping: str) -> tuple[str, ...]:
        """Every known group of ``grouping`` the vocabularies allow, in vocabulary order."""
        if grouping not in self.groupings:
            raise ValueError(f"unknown grouping {grouping!r}; expected one of "
                             f"{', '.join(self.groupings)}")
        vocab = [ATTRIBUTES[a] for a in self.groupings[grouping]]
        return tuple(INTERSECTION_SEP.join(v) for v in itertools.product(*vocab))

    # ----------------------------------------------------------------------------- reading
    def columns(self, rows: Rows, *, what: str = "rows") -> dict[str, list[Any]]:
        """The raw sensitive-attribute columns of ``rows`` (a Dataset, a mapping of whole
        columns, or a list of records); a missing column is a ValueError naming it."""
        if isinstance(rows, datasets.Dataset):
            missing = [a for a in self.attributes if a not in rows.column_names]
            cols = {} if missing else {a: column(rows, a) for a in self.attributes}
        elif isinstance(rows, Mapping):
            missing = [a for a in self.attributes if a not in rows]
            cols = {} if missing else {a: list(rows[a]) for a in self.attributes}
        else:
            records = list(rows)
            missing = sorted({a for r in records for a in self.attributes if a not in r})
            cols = {} if missing else {a: [r[a] for r in records] for a in self.attributes}
        if missing:
            raise ValueError(f"{what}: no column {', '.join(map(repr, missing))}; the task's "
                             f"sensitive attributes are {', '.join(self.attributes)}")
        n = {len(c) for c in cols.values()}
        if len(n) > 1:
            raise ValueError(f"{what}: attribute columns of different lengths "
                             f"{ {a: len(c) for a, c in cols.items()} }")
        for a, values in cols.items():
            bad = {v for v in values if not is_unknown(v) and v not in ATTRIBUTES[a]}
            if bad:
                raise ValueError(f"{what}: {a} value(s) {sorted(map(str, bad))} are not in its "
                                 f"vocabulary {list(ATTRIBUTES[a])} (None = unknown)")
        return cols

    def values(self, rows: Rows, *, what: str = "rows") -> list[tuple[str | None, ...]]:
        """Every row's tuple of attribute values in the task's order, unknown as None (the
        subgroup of a plan cell)."""
        cols = self.columns(rows, what=what)
        if not self.attributes:
            return [()] * _n_rows(rows)
        return [tuple(None if is_unknown(v) else v for v in t)
                for t in zip(*(cols[a] for a in self.attributes), strict=True)]

    def labels(self, rows: Rows, *, what: str = "rows") -> GroupLabels:
        """The group labels of every row of ``rows`` in every grouping, and its stratum.
        Unknown counts are logged (never silently dropped)."""
        cols = {a: [label_of(v) for v in c]
                for a, c in self.columns(rows, what=what).items()}
        n = len(next(iter(cols.values()))) if cols else _n_rows(rows)
        by: dict[str, list[str]] = {}
        for name, attrs in self.groupings.items():
            if len(attrs) == 1:
                by[name] = cols[attrs[0]]
                continue
            by[name] = [UNKNOWN if UNKNOWN in vals else INTERSECTION_SEP.join(vals)
                        for vals in zip(*(cols[a] for a in attrs), strict=True)]
        strata = ([STRATUM_SEP.join(t) for t in zip(*(cols[a] for a in self.attributes),
                                                    strict=True)]
                  if self.attributes else [""] * n)
        out = GroupLabels(by, strata)
        unknown = {g: k for g, k in out.unknown_counts().items() if k}
        if unknown:
            log.info("%s: rows with an unknown value, in the %r group of each grouping "
                     "(reported, not in fairness summaries): %s", what, UNKNOWN, unknown)
        return out

    def row_labels(self, row: Mapping[str, Any]) -> dict[str, str]:
        """The label of one record in every grouping."""
        return {g: labels[0] for g, labels in self.labels([row], what="row").by_grouping.items()}
