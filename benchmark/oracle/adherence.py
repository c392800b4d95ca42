"""Condition adherence: does a generated image carry what it was asked for?

A conditional generator is asked for images of a finding in a subgroup (attribute values).
A phantom :class:`~benchmark.oracle.Oracle` reads the finding, its phenotype and the
attributes back from each image. For N generated images with requested finding y_i, requested
attributes a_i and oracle predictions (ŷ_i, φ̂_i, â_i):

* **finding adherence**     A_find = (1/N) Σ_i 1[ŷ_i = y_i]
* **condition adherence**   A_cond = (1/N') Σ_i 1[ŷ_i = y_i  and  φ̂_i ∈ Φ(y_i, a_i)]
  where Φ(y, a) is the set of phenotypes the phantom draws for finding y in the requested
  subgroup a (:meth:`Oracle.expected_phenotypes`; e.g. a globular heart for cardiomegaly in
  women). It asks for the finding *as it presents in that subgroup*; rows whose cell the
  phantom never draws (Φ empty) are left out and counted (N' = N minus those).
* **attribute adherence** of attribute k:  A_k = (1/N_k) Σ_{i: a_ik known} 1[â_ik = a_ik]

Each is also reported per subgroup of every grouping attribute g (the task's sensitive
attributes), over the rows whose *requested* value of g is that subgroup:

    A(g = v) = (1/|{i: a_ig = v}|) Σ_{i: a_ig = v} 1[match_i]

with the gap ``max_v A(g = v) - min_v A(g = v)`` (0 is fair) and the worst subgroup's value.
Rows whose requested value of g is unknown form the group ``unknown`` (the task grouper's
policy, :mod:`benchmark.grouping`): reported with its value and count, never in the gap or
the worst subgroup.
The disaggregation is fairlearn's ``MetricFrame`` over sklearn's ``accuracy_score`` of the
match indicators. An ideal generator scores the oracle's own accuracy on real phantom images
(:func:`~benchmark.oracle.oracle_accuracy`), not 1; a generator that ignores its condition
scores chance, Σ_c p_c q_c for requested and produced class frequencies p and q.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score

from ..grouping import UNKNOWN, label_of
from ..metrics.features import ImageLike
from ..tasks import Task
from .model import Oracle

log = logging.getLogger(__name__)

#: Result key of the adherence block in a result record.
KEY_ADHERENCE = "condition_adherence"


def _summary(match: np.ndarray, valid: np.ndarray, groups: Mapping[str, Sequence[Any]]
             ) -> dict[str, Any]:
    """Overall and per-group mean of ``match`` over the ``valid`` rows."""
    m = match[valid]
    out: dict[str, Any] = {"value": None, "n": int(valid.sum()), "by_group": {}, "gap": {},
                           "worst": {}}
    if not m.size:
        return out
    out["value"] = float(accuracy_score(np.ones(m.size, bool), m))
    for attr, values in groups.items():
        g = np.array([label_of(v) for v in np.asarray(values, dtype=object)[valid]],
                     dtype=object)
        known = g != UNKNOWN
        by: dict[str, dict[str, Any]] = {}
        if known.any():
            frame = MetricFrame(metrics={"value": accuracy_score, "n": lambda t, p: len(t)},
                                y_true=np.ones(int(known.sum()), bool), y_pred=m[known],
                                sensitive_features=pd.Series(g[known].astype(str), name=attr))
            by = {str(v): {"value": float(r["value"]), "n": int(r["n"])}
                  for v, r in frame.by_group.sort_index().iterrows()}
            out["gap"][attr] = float(frame.difference(method="between_groups")["value"])
            out["worst"][attr] = float(frame.group_min()["value"])
        else:
            out["gap"][attr], out["worst"][attr] = None, None
        if (~known).any():  # the grouper's policy: reported with its count, not in gap/worst
            log.info("adherence: %d rows have no requested %s: the %r group, not in the gap",
                     int((~known).sum()), attr, UNKNOWN)
            by[UNKNOWN] = {"value": float(np.mean(m[~known])), "n": int((~known).sum()),
                           "in_summaries": False}
        out["by_group"][attr] = by
    return out


def adherence_from_labels(
    requested: Mapping[str, Sequence[str | None]],
    predicted: Mapping[str, Sequence[str]],
    *,
    group_by: Sequence[str],
    expected_phenotypes: Sequence[Collection[str]] | None = None,
) -> dict[str, Any]:
    """Adherence from requested and predicted labels (the formulas of the module docstring).

    Args:
        requested: ``finding`` and the requested attribute values, one list per column
            (``None``: not requested).
        predicted: the oracle's ``finding``, optionally ``phenotype``, and attribute
            predictions, one list per head.
        group_by: requested attributes that define subgroups (the task's sensitive attributes).
        expected_phenotypes: Φ(y_i, a_i) per row; with ``predicted["phenotype"]`` it adds the
            condition adherence.

    Returns:
        ``{"n", "finding", "condition" (or None), "attributes": {attr: ...}}``; each block is
        ``{"value", "n", "by_group": {attr: {group: {"value", "n"}}}, "gap": {attr},
        "worst": {attr}}`` with ``value`` None when no row qualifies.
    """
    if "finding" not in requested or "finding" not in predicted:
        raise ValueError("adherence needs the requested and the predicted 'finding'")
    y = list(requested["finding"])
    n = len(y)
    for name, col in [*requested.items(), *predicted.items()]:
        if len(col) != n:
            raise ValueError(f"adherence: column {name!r} has {len(col)} rows, expected {n}")
    if any(v is None for v in y):
        raise ValueError("adherence: every generated image needs a requested finding "
                         f"({sum(v is None for v in y)} rows have none)")
    missing = [a for a in group_by if a not in requested]
    if missing:
        raise ValueError(f"adherence: group attribute(s) {', '.join(missing)} not in the "
                         f"requested columns ({', '.join(requested)})")
    groups = {a: list(requested[a]) for a in group_by}
    everything = np.ones(n, bool)
    find_ok = np.array([p == t for p, t in zip(predicted["finding"], y, strict=True)], bool)
    out: dict[str, Any] = {"n": n, "finding": _summary(find_ok, everything, groups),
                           "condition": None, "attributes": {}}
    if expected_phenotypes is not None and "phenotype" in predicted:
        if len(expected_phenotypes) != n:
            raise ValueError(f"adherence: {len(expected_phenotypes)} expected phenotype sets "
                             f"for {n} rows")
        known = np.array([len(s) > 0 for s in expected_phenotypes], bool)
        if (~known).any():
            log.info("adherence: %d rows ask for a cell the phantom never draws; they are left "
                     "out of the condition adherence", int((~known).sum()))
        ok = find_ok & np.array([p in s for p, s in zip(predicted["phenotype"],
                                                         expected_phenotypes, strict=True)])
        out["condition"] = _summary(ok, known, groups)
        out["condition"]["n_unknown_cell"] = int((~known).sum())
    for attr, want in requested.items():
        if attr == "finding" or attr not in predicted:
            continue
        valid = np.array([v is not None for v in want], bool)
        ok = np.array([p == t for p, t in zip(predicted[attr], want, strict=True)], bool)
        out["attributes"][attr] = _summary(ok, valid, groups)
    return out


def condition_adherence(
    oracle: Oracle,
    images: Sequence[ImageLike],
    requested: Mapping[str, Sequence[str | None]],
    *,
    group_by: Sequence[str],
) -> dict[str, Any]:
    """Adherence of generated ``images`` to their ``requested`` finding and attributes, read
    by ``oracle`` (see the module docstring). Requested attributes the oracle has no head for
    are grouping-only (no attribute adherence for them)."""
    pred = oracle.predict(list(images))
    attrs = [a for a in requested if a != "finding"]
    expected = [oracle.expected_phenotypes({"finding": f, **{a: requested[a][i] for a in attrs}})
                for i, f in enumerate(requested["finding"])]
    return adherence_from_labels(requested, pred, group_by=group_by,
                                 expected_phenotypes=expected)


def dataset_adherence(oracle: Oracle, synthetic: datasets.Dataset, task: Task) -> dict[str, Any]:
    """:func:`condition_adherence` of a standard-schema Dataset of generated images whose
    ``finding`` and sensitive-attribute columns hold what each image was asked for."""
    missing = [c for c in ("image", "finding", *task.sensitive_attributes)
               if c not in synthetic.column_names]
    if missing:
        raise ValueError(f"adherence: the synthetic images lack column(s) {', '.join(missing)}")
    mode = "L" if task.channels == 1 else "RGB"
    images = [np.asarray(im.convert(mode)) for im in synthetic["image"]]
    requested = {c: list(synthetic[c]) for c in ("finding", *task.sensitive_attributes)}
    return condition_adherence(oracle, images, requested, group_by=task.sensitive_attributes)
