"""Downstream fairness metrics of a classifier, per sensitive attribute.

One disaggregation (:func:`disaggregate`, a fairlearn :class:`~fairlearn.metrics.MetricFrame`
over the groups of one attribute) computes every per-group number once: size, class counts,
accuracy, AUC, balanced accuracy (the mean over the classes present in the group of their
true-positive rate, as sklearn's ``balanced_accuracy_score``), and per class the selection
rate, true-positive rate and false-positive rate.
Every summary (:func:`summarize`) is a few lines over that table:

=================  ==========================================================  ==============
key                formula (over the *included* groups g, see below)           fair value
=================  ==========================================================  ==============
``worst_group``    argmin_g acc_g (and its accuracy); ``worst_auc_group``       --
``dp``             demographic parity difference, max_g SR_c(g) - min_g SR_c(g) 0 (lower fair)
``eo``             equal opportunity: max_g TPR_c(g) - min_g TPR_c(g)           0 (lower fair)
``eodds``          equalized odds: max(TPR gap, FPR gap) of class c            0 (lower fair)
``es_acc``         acc_all / (1 + sum_g |acc_g - acc_all|)  (FairGen's ESSP)     acc_all
``es_auc``         auc_all / (1 + sum_g |auc_g - auc_all|)                      auc_all
``nar``            (max_g acc_g - min_g acc_g) / mean_g acc_g                   0 (lower fair)
=================  ==========================================================  ==============

For a binary task, DP/EO/EOdds are those of the positive class (``classes[1]``); for a
multiclass task they are one-vs-rest per class c (prediction ``argmax == c`` vs label ``== c``)
averaged over the classes where they are defined (the per-class values are reported too).
AUC is binary ROC AUC of ``p[:, 1]`` for two classes, and one-vs-rest macro AUC (the mean over
classes of the AUC of ``p[:, c]`` for ``y == c``; sklearn's ``multi_class="ovr"``) for more.

Groups. A sample whose attribute is unknown (``None``, NaN or the label ``"unknown"``) belongs
to the group :data:`~benchmark.grouping.UNKNOWN` (``"unknown"``), which is reported with its
counts but never *included* in a summary: the policy of the task's grouper
(:mod:`benchmark.grouping`), the same as for the generation metrics. A group with fewer than
``min_group_size`` samples is reported with its counts and the reason, and is not included.
Its AUC is undefined (with the reason) when some class has no positive or no negative sample
in it; such a group still counts for the accuracy-based summaries. Overall accuracy and AUC
are over all samples. Nothing is dropped silently: every group appears in ``by_group``.

Scale: every rate and score is a fraction in [0, 1] (not a percentage); see
docs/metrics.md (Part 2) for why this matters for ES-* and how to convert.

References: fairlearn (Weerts et al., JMLR 2023) for DP, EO and equalized odds and the
MetricFrame disaggregation; equity-scaled metrics from Harvard-FairSeg / FairVision (Tian et
al., ICLR 2024; Luo et al., CVPR 2024) and FairDiffusion (Luo et al., 2024); ESSP and NAR as
used by FairGen (2026).

Argument order: fairlearn's functions take ``(y_true, y_pred)``. A public implementation of
these metrics (Harvard's ``multiclass_demographic_parity``) passes the one-hot *predictions*
as ``y_true`` and the labels as ``y_pred``, so its "DP" is the label base-rate gap of the test
set, not a property of the classifier. Here labels are always ``y_true``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from fairlearn.metrics import MetricFrame

from ..grouping import UNKNOWN, label_of

#: Default fewest samples for a group to enter the fairness summaries.
DEFAULT_MIN_GROUP_SIZE = 10

#: Summary keys (result-record names, shared with the CLI summary and the report).
KEY_DP = "dp"
KEY_EO = "eo"
KEY_EODDS = "eodds"
KEY_ES_ACC = "es_acc"
KEY_ES_AUC = "es_auc"
KEY_NAR = "nar"


# --------------------------------------------------------------------------- validation


def _validate(y_true: Any, y_score: Any, sensitive: Sequence[Any], classes: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = len(classes)
    if k < 2:
        raise ValueError(f"classes: need at least 2 classes, got {list(classes)}")
    y = np.asarray(y_true)
    p = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true: expected a 1-D array of class indices, got shape {y.shape}")
    if p.shape != (len(y), k):
        raise ValueError(f"y_score: expected shape {(len(y), k)} (samples x classes), "
                         f"got {p.shape}")
    if len(sensitive) != len(y):
        raise ValueError(f"sensitive: {len(sensitive)} values for {len(y)} samples")
    if len(y) == 0:
        raise ValueError("no samples to evaluate")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
            raise ValueError(f"y_true: expected integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    bad = (y < 0) | (y >= k)
    if bad.any():
        raise ValueError(f"y_true: class index {int(y[bad][0])} outside 0..{k - 1} "
                         f"(classes {list(classes)})")
    if not np.isfinite(p).all():
        raise ValueError("y_score: contains NaN or infinite values")
    groups = np.array([label_of(v) for v in sensitive], dtype=object)
    return y.astype(np.int64), p, groups


# --------------------------------------------------------------------------- per-group metrics


def _auc(y_true: np.ndarray, scores: np.ndarray, n_classes: int) -> float:
    """Binary AUC of class 1, or one-vs-rest macro AUC; NaN when a class lacks positives or
    negatives (sklearn would raise)."""
    from sklearn.metrics import roc_auc_score

    for c in range(n_classes):
        pos = int(np.sum(y_true == c))
        if pos == 0 or pos == len(y_true):
            return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(y_true == 1, scores[:, 1]))
    return float(np.mean([roc_auc_score(y_true == c, scores[:, c]) for c in range(n_classes)]))


def _rate(num: np.ndarray, den: np.ndarray) -> float:
    d = int(np.sum(den))
    return float(np.sum(num & den)) / d if d else float("nan")


def _metric_fns(n_classes: int) -> dict[str, Any]:
    """MetricFrame metrics: name -> fn(y_true, y_pred, **sample_params). The AUC gets the
    class scores as one sample param per column (MetricFrame splits only 1-D params)."""

    def accuracy(yt: np.ndarray, yp: np.ndarray) -> float:
        return float(np.mean(yt == yp))

    def auc(yt: np.ndarray, yp: np.ndarray, **cols: np.ndarray) -> float:
        scores = np.stack([np.asarray(cols[f"score_{c}"]) for c in range(n_classes)], axis=1)
        return _auc(np.asarray(yt), scores, n_classes)

    fns: dict[str, Any] = {"n": lambda yt, yp: len(yt), "accuracy": accuracy, "auc": auc}
    for c in range(n_classes):
        fns[f"count_{c}"] = lambda yt, yp, c=c: int(np.sum(np.asarray(yt) == c))
        # selection rate P(pred = c); TPR P(pred = c | y = c); FPR P(pred = c | y != c)
        fns[f"sr_{c}"] = lambda yt, yp, c=c: float(np.mean(np.asarray(yp) == c))
        fns[f"tpr_{c}"] = lambda yt, yp, c=c: _rate(np.asarray(yp) == c, np.asarray(yt) == c)
        fns[f"fpr_{c}"] = lambda yt, yp, c=c: _rate(np.asarray(yp) == c, np.asarray(yt) != c)
    return fns


@dataclass(frozen=True)
class GroupRow:
    """The per-group numbers of one group (or of all samples: ``group == "all"``).

    ``reason`` says why the group is not included in the summaries (None when included);
    ``auc_reason`` why its AUC is undefined (None when defined). Rates are None when
    undefined (TPR of a class with no positive sample in the group, FPR with no negative).
    """

    group: str
    n: int
    class_counts: dict[str, int]
    accuracy: float | None
    auc: float | None
    balanced_accuracy: float | None
    selection_rate: dict[str, float | None]
    tpr: dict[str, float | None]
    fpr: dict[str, float | None]
    reason: str | None = None
    auc_reason: str | None = None

    @property
    def included(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class GroupTable:
    """The disaggregation of one classifier's predictions by one sensitive attribute."""

    attribute: str
    classes: tuple[str, ...]
    min_group_size: int
    overall: GroupRow
    groups: tuple[GroupRow, ...]

    @property
    def included(self) -> tuple[GroupRow, ...]:
        return tuple(g for g in self.groups if g.included)


def _none_if_nan(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def balanced_accuracy(tpr: Mapping[str, float | None]) -> float | None:
    """Balanced accuracy of a group from its per-class true-positive rates: the mean of the
    defined TPRs (``None`` = the class has no sample in the group), i.e. the mean recall over
    the classes present, as sklearn's ``balanced_accuracy_score`` on the group's samples
    (Brodersen et al., ICPR 2010). ``None`` when no class is present."""
    recalls = [float(v) for v in tpr.values() if v is not None]
    return float(np.mean(recalls)) if recalls else None


def _row(name: str, values: Any, classes: Sequence[str], min_group_size: int | None) -> GroupRow:
    k = len(classes)
    n = int(values["n"])
    counts = {classes[c]: int(values[f"count_{c}"]) for c in range(k)}
    reason = None
    if min_group_size is not None:
        if name == UNKNOWN:
            reason = "attribute value unknown"
        elif n < min_group_size:
            reason = f"{n} samples < min_group_size {min_group_size}"
    auc = _none_if_nan(values["auc"])
    auc_reason = None
    if auc is None:
        lacking = [f"{c} ({'no positive' if counts[c] == 0 else 'no negative'} sample)"
                   for c in classes if counts[c] in (0, n)]
        auc_reason = "AUC undefined: " + ", ".join(lacking) + f" among {n} samples"
    tpr = {classes[c]: _none_if_nan(values[f"tpr_{c}"]) for c in range(k)}
    return GroupRow(
        group=name,
        n=n,
        class_counts=counts,
        accuracy=_none_if_nan(values["accuracy"]),
        auc=auc,
        balanced_accuracy=balanced_accuracy(tpr),
        selection_rate={classes[c]: _none_if_nan(values[f"sr_{c}"]) for c in range(k)},
        tpr=tpr,
        fpr={classes[c]: _none_if_nan(values[f"fpr_{c}"]) for c in range(k)},
        reason=reason,
        auc_reason=auc_reason,
    )


def disaggregate(
    *,
    y_true: Any,
    y_score: Any,
    sensitive: Sequence[Any],
    classes: Sequence[str],
    attribute: str = "attribute",
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> GroupTable:
    """Per-group metrics of one classifier by one sensitive attribute, computed once.

    Args:
        y_true: (N,) true class indices into ``classes``.
        y_score: (N, C) class scores (probabilities); the prediction is their argmax.
        sensitive: (N,) the attribute value of each sample (``None`` = unknown).
        classes: the class names, in index order.
        attribute: the attribute's name (for the record).
        min_group_size: fewest samples for a group to enter the summaries.

    Uses fairlearn's :class:`~fairlearn.metrics.MetricFrame` with labels as ``y_true`` and
    argmax predictions as ``y_pred``.
    """
    if not isinstance(min_group_size, int) or min_group_size < 1:
        raise ValueError(f"min_group_size must be a positive integer, got {min_group_size!r}")
    y, p, groups = _validate(y_true, y_score, sensitive, classes)
    k = len(classes)
    fns = _metric_fns(k)
    frame = MetricFrame(
        metrics=fns,
        y_true=y,
        y_pred=p.argmax(axis=1),
        sensitive_features=groups,
        sample_params={"auc": {f"score_{c}": p[:, c] for c in range(k)}},
    )
    by_group = frame.by_group
    rows = tuple(_row(str(g), by_group.loc[g], classes, min_group_size)
                 for g in sorted(by_group.index, key=str))
    overall = _row("all", frame.overall, classes, None)
    return GroupTable(attribute, tuple(classes), min_group_size, overall, rows)


# --------------------------------------------------------------------------- summaries


def _gap(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return max(v) - min(v) if len(v) >= 2 else None


def equity_scaled(overall: float, group_values: Sequence[float]) -> float:
    """Equity-scaled performance: ``P_all / (1 + sum_g |P_g - P_all|)`` (Tian et al., 2024).

    Equals ``P_all`` when every group performs as well as the whole; lower otherwise.
    All values are fractions in [0, 1].
    """
    return overall / (1.0 + sum(abs(g - overall) for g in group_values))


def normalized_accuracy_range(group_accuracies: Sequence[float]) -> float | None:
    """NAR = ``(max_g acc_g - min_g acc_g) / mean_g acc_g``; 0 is fair. None when the mean
    is 0 or fewer than 2 groups."""
    if len(group_accuracies) < 2:
        return None
    mean = float(np.mean(group_accuracies))
    return (max(group_accuracies) - min(group_accuracies)) / mean if mean > 0 else None


@dataclass(frozen=True)
class FairnessSummary:
    """Summaries of a :class:`GroupTable` (see the module docstring for the formulas).

    ``dp_by_class``, ``eo_by_class`` and ``eodds_by_class`` hold the per-class values whose
    mean is ``dp``, ``eo``, ``eodds``; ``groups_used`` the included groups; ``reason`` why
    the summaries are None (fewer than 2 included groups).
    """

    groups_used: list[str]
    worst_group: str | None
    worst_group_accuracy: float | None
    worst_auc_group: str | None
    worst_group_auc: float | None
    dp: float | None
    eo: float | None
    eodds: float | None
    es_acc: float | None
    es_auc: float | None
    nar: float | None
    sum_abs_dev_acc: float | None
    sum_abs_dev_auc: float | None
    dp_by_class: dict[str, float | None] = field(default_factory=dict)
    eo_by_class: dict[str, float | None] = field(default_factory=dict)
    eodds_by_class: dict[str, float | None] = field(default_factory=dict)
    reason: str | None = None


def _mean_defined(values: dict[str, float | None]) -> float | None:
    v = [x for x in values.values() if x is not None]
    return float(np.mean(v)) if v else None


def summarize(table: GroupTable) -> FairnessSummary:
    """Every fairness summary, derived from the one disaggregation ``table``."""
    inc = table.included
    names = [g.group for g in inc]
    if len(inc) < 2:
        return FairnessSummary(
            names, None, None, None, None, None, None, None, None, None, None, None, None,
            reason=f"{len(inc)} group(s) with >= {table.min_group_size} samples and a known "
                   "value; need 2")
    # binary: the positive class only (OvR over both classes would mix TPR and FPR gaps)
    cls = [table.classes[1]] if len(table.classes) == 2 else list(table.classes)
    dp = {c: _gap([g.selection_rate[c] for g in inc]) for c in cls}
    eo = {c: _gap([g.tpr[c] for g in inc]) for c in cls}
    eodds = {}
    for c in cls:
        tg, fg = eo[c], _gap([g.fpr[c] for g in inc])
        eodds[c] = None if tg is None or fg is None else max(tg, fg)

    accs = [(g.accuracy, g.group) for g in inc if g.accuracy is not None]
    worst_acc, worst = min(accs) if accs else (None, None)
    acc_all = table.overall.accuracy
    dev_acc = sum(abs(a - acc_all) for a, _ in accs) if acc_all is not None and accs else None

    aucs = [(g.auc, g.group) for g in inc if g.auc is not None]
    worst_auc, worst_auc_group = min(aucs) if aucs else (None, None)
    auc_all = table.overall.auc
    es_auc = dev_auc = None
    if auc_all is not None and len(aucs) >= 2:
        dev_auc = sum(abs(a - auc_all) for a, _ in aucs)
        es_auc = equity_scaled(auc_all, [a for a, _ in aucs])
    return FairnessSummary(
        groups_used=names,
        worst_group=worst,
        worst_group_accuracy=worst_acc,
        worst_auc_group=worst_auc_group,
        worst_group_auc=worst_auc,
        dp=_mean_defined(dp),
        eo=_mean_defined(eo),
        eodds=_mean_defined(eodds),
        es_acc=equity_scaled(acc_all, [a for a, _ in accs]) if dev_acc is not None else None,
        es_auc=es_auc,
        nar=normalized_accuracy_range([a for a, _ in accs]),
        sum_abs_dev_acc=dev_acc,
        sum_abs_dev_auc=dev_auc,
        dp_by_class=dp,
        eo_by_class=eo,
        eodds_by_class=eodds,
    )


def fairness_report(
    *,
    y_true: Any,
    y_score: Any,
    sensitive: Sequence[Any],
    classes: Sequence[str],
    attribute: str = "attribute",
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> dict[str, Any]:
    """The disaggregation and its summaries for one attribute, as a JSON-ready dict::

        {"attribute", "classes", "min_group_size", "overall": {...}, "by_group": {g: {...}},
         "summary": {"dp", "eo", "eodds", "es_acc", "es_auc", "nar", "worst_group", ...}}
    """
    table = disaggregate(y_true=y_true, y_score=y_score, sensitive=sensitive, classes=classes,
                         attribute=attribute, min_group_size=min_group_size)
    return {
        "attribute": table.attribute,
        "classes": list(table.classes),
        "min_group_size": table.min_group_size,
        "overall": asdict(table.overall),
        "by_group": {g.group: asdict(g) for g in table.groups},
        "summary": asdict(summarize(table)),
    }
