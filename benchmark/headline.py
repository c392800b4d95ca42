"""Headline metrics: the few numbers of a result record a task is ranked by.

A task declares them (``Task.headline_metrics``) as keys into the record's ``metrics``:

``generation.<key>``
    ``metrics.generation[<key>].value``: an overall generation metric (``fid``, ``kid``,
    ``precision``, ``fd_oracle``, ...).
``generation.<key>[<grouping>]``
    ``metrics.generation[<key>][<grouping>].value``: a fairness summary of one grouping of
    the task's grouper (``es_fid[sex x age_group]``, ``fid_variance[sex]``, ``fid_gap[sex]``).
``downstream.<set>.<key>``
    ``accuracy`` or ``auc`` on the real test split of the classifier trained on ``<set>``
    (``real``, ``real+synthetic``, ``synthetic``).
``downstream.<set>.<key>[<attribute>]``
    a fairness summary of that classifier for one sensitive attribute
    (``worst_group_accuracy``, ``es_acc``, ``dp``, ``eo``, ...).

The downstream classifier is the profile's first backbone (``tiny-resnet`` at ``smoke`` and
``cpu``, ResNet-50 at ``gpu`` and ``paper``), read from ``metrics.downstream.config``. Every key
has a direction (:func:`direction`) for ranking. The per-task choices are in docs/metrics.md
("Headline metrics").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GENERATION = "generation"
DOWNSTREAM = "downstream"
TRAIN_SETS = ("real", "real+synthetic", "synthetic")

#: Downstream keys of a classifier's test scores (no bracket).
DOWNSTREAM_SCORES = {"accuracy": "max", "auc": "max"}
#: Downstream fairness summaries (with ``[attribute]``) and their directions.
DOWNSTREAM_SUMMARIES = {
    "worst_group_accuracy": "max", "worst_group_auc": "max", "es_acc": "max", "es_auc": "max",
    "dp": "min", "eo": "min", "eodds": "min", "nar": "min",
}
#: Generation keys that are higher-is-better; every other generation key (FID, KID, FD, their
#: variance, gap and ES forms) is lower-is-better.
_GENERATION_MAX = ("precision", "recall", "density", "coverage")

_KEY = re.compile(r"^(?P<section>generation|downstream)\.(?:(?P<set>real\+synthetic|real|"
                  r"synthetic)\.)?(?P<metric>[a-z][a-z0-9_]*)(?:\[(?P<group>[^\[\]]+)\])?$")


@dataclass(frozen=True)
class HeadlineKey:
    """A parsed headline key (see the module docstring)."""

    section: str
    metric: str
    grouping: str | None = None
    train_set: str | None = None


def parse(key: str, *, groupings: Sequence[str] | None = None,
          attributes: Sequence[str] | None = None) -> HeadlineKey:
    """Parse ``key`` and check it against the task's ``groupings`` and ``attributes`` (not
    checked when None); a bad key is a ValueError naming it and what was expected."""
    m = _KEY.match(key)
    if m is None or (m["section"] == DOWNSTREAM) != (m["set"] is not None):
        raise ValueError(f"headline metric {key!r}: expected 'generation.<key>[<grouping>]' or "
                         f"'downstream.<{'|'.join(TRAIN_SETS)}>.<key>[<attribute>]'")
    k = HeadlineKey(m["section"], m["metric"], m["group"], m["set"])
    if k.section == GENERATION:
        summary = k.metric.startswith("es_") or k.metric.endswith(("_variance", "_gap"))
        if k.grouping is not None and not summary:
            raise ValueError(f"headline metric {key!r}: [grouping] needs a fairness summary "
                             "(es_<fd>, <fd>_variance, <fd>_gap)")
        if k.grouping is None and summary:
            raise ValueError(f"headline metric {key!r}: a fairness summary needs a [grouping]")
        if k.grouping is not None and groupings is not None and k.grouping not in groupings:
            raise ValueError(f"headline metric {key!r}: {k.grouping!r} is not a grouping of the "
                             f"task; expected one of {', '.join(groupings)}")
        return k
    if k.grouping is None:
        if k.metric not in DOWNSTREAM_SCORES:
            raise ValueError(f"headline metric {key!r}: expected one of "
                             f"{', '.join(DOWNSTREAM_SCORES)} (or a summary with [attribute])")
    else:
        if k.metric not in DOWNSTREAM_SUMMARIES:
            raise ValueError(f"headline metric {key!r}: {k.metric!r} is not a downstream "
                             f"summary; expected one of {', '.join(DOWNSTREAM_SUMMARIES)}")
        if attributes is not None and k.grouping not in attributes:
            raise ValueError(f"headline metric {key!r}: {k.grouping!r} is not a sensitive "
                             f"attribute of the task; expected one of {', '.join(attributes)}")
    return k


def direction(key: str) -> str:
    """``"min"`` (lower is better) or ``"max"`` for a headline key."""
    k = parse(key)
    if k.section == DOWNSTREAM:
        return (DOWNSTREAM_SUMMARIES if k.grouping else DOWNSTREAM_SCORES)[k.metric]
    base = k.metric.split("_")[0]
    return "max" if k.grouping is None and base in _GENERATION_MAX else "min"


def default_headline_metrics(attributes: Sequence[str]) -> tuple[str, ...]:
    """The default headline of a task with these sensitive attributes: FID, ES-FID over the
    finest grouping (all attributes together), the real+synthetic classifier's accuracy, and
    its worst-group accuracy for each attribute."""
    out = [f"{GENERATION}.fid"]
    if attributes:
        out.append(f"{GENERATION}.es_fid[{' x '.join(attributes)}]")
    out.append(f"{DOWNSTREAM}.real+synthetic.accuracy")
    out.extend(f"{DOWNSTREAM}.real+synthetic.worst_group_accuracy[{a}]" for a in attributes)
    return tuple(out)


def headline_value(metrics: Mapping[str, Any], key: str) -> float | None:
    """The value of headline ``key`` in a record's ``metrics`` (None when the record holds
    it as undefined, or the stage did not run)."""
    k = parse(key)
    if k.section == GENERATION:
        entry = (metrics.get(GENERATION) or {}).get(k.metric)
        if entry is not None and k.grouping is not None:
            entry = entry.get(k.grouping)
        return None if entry is None else entry.get("value")
    ds = metrics.get(DOWNSTREAM) or {}
    backbones = (ds.get("config") or {}).get("backbones") or []
    if not backbones:
        return None
    clf = (ds.get("classifiers") or {}).get(f"{k.train_set}/{backbones[0]}")
    if clf is None:
        return None
    if k.grouping is None:
        return clf["test"].get(k.metric)
    summary = ((clf.get("fairness") or {}).get(k.grouping) or {}).get("summary") or {}
    return summary.get(k.metric)


def headline(metrics: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float | None]:
    """``{key: value}`` of every headline key."""
    return {key: headline_value(metrics, key) for key in keys}


#: Generation sections that are settings or nested tables, not metric values.
_NOT_METRICS = ("settings", "feature_spaces", "counts", "diversity")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Every scalar metric of a record's ``metrics`` under a key of this module's grammar.

    ``generation.<key>`` (an overall value), ``generation.<key>[<grouping>]`` (a fairness
    summary), ``generation.<key>_by_group[<grouping>][<group>]`` (one subgroup's value);
    for the headline backbone (the profile's first): ``downstream.<set>.<accuracy|auc>``,
    ``downstream.<set>.<summary>[<attribute>]`` and
    ``downstream.<set>.accuracy_by_group[<attribute>][<group>]`` and
    ``balanced_accuracy_by_group`` (derived from the stored per-class TPRs by
    :func:`benchmark.metrics.fairness.balanced_accuracy` in records that predate the field).
    A metric the record holds as undefined is ``None``. What the sweep aggregates and the
    leaderboard compares.
    """
    out: dict[str, float | None] = {}
    for key, entry in (metrics.get(GENERATION) or {}).items():
        if key in _NOT_METRICS or not isinstance(entry, Mapping):
            continue
        if "value" in entry:
            out[f"{GENERATION}.{key}"] = entry["value"]
        elif key.endswith("_by_group"):
            for grouping, groups in entry.items():
                for group, r in (groups or {}).items():
                    if isinstance(r, Mapping) and "value" in r:
                        out[f"{GENERATION}.{key}[{grouping}][{group}]"] = r["value"]
        else:
            for grouping, r in entry.items():
                if isinstance(r, Mapping) and "value" in r:
                    out[f"{GENERATION}.{key}[{grouping}]"] = r["value"]
    ds = metrics.get(DOWNSTREAM) or {}
    backbones = (ds.get("config") or {}).get("backbones") or []
    for train_set in TRAIN_SETS:
        clf = (ds.get("classifiers") or {}).get(f"{train_set}/{backbones[0]}") \
            if backbones else None
        if clf is None:
            continue
        prefix = f"{DOWNSTREAM}.{train_set}"
        for m in DOWNSTREAM_SCORES:
            out[f"{prefix}.{m}"] = clf["test"].get(m)
        for attr, fair in (clf.get("fairness") or {}).items():
            summary = fair.get("summary") or {}
            for m in DOWNSTREAM_SUMMARIES:
                if m in summary and (summary[m] is None or _number(summary[m])):
                    out[f"{prefix}.{m}[{attr}]"] = summary[m]
            for group, r in (fair.get("by_group") or {}).items():
                out[f"{prefix}.accuracy_by_group[{attr}][{group}]"] = r.get("accuracy")
                if "balanced_accuracy" in r:
                    out[f"{prefix}.balanced_accuracy_by_group[{attr}][{group}]"] = \
                        r["balanced_accuracy"]
                elif r.get("tpr"):  # records before 2026-12-07: the same function, from TPRs
                    from .metrics.fairness import balanced_accuracy

                    out[f"{prefix}.balanced_accuracy_by_group[{attr}][{group}]"] = \
                        balanced_accuracy(r["tpr"])
    return out
