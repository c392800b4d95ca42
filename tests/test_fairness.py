"""Fairness metrics against fairlearn called directly, sklearn, and hand-worked numbers."""

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from benchmark.metrics.fairness import (
    balanced_accuracy,
    disaggregate,
    equity_scaled,
    fairness_report,
    normalized_accuracy_range,
    summarize,
)

CLASSES3 = ("a", "b", "c")


def _random_case(n=600, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]  # better than chance
    groups = rng.choice(["g1", "g2", "g3"], size=n, p=[0.5, 0.3, 0.2])
    logits[groups == "g3"] = rng.normal(size=(int(np.sum(groups == "g3")), k))  # worse group
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p, groups


def test_multiclass_dp_eo_eodds_match_fairlearn_one_vs_rest():
    y, p, g = _random_case()
    pred = p.argmax(1)
    s = summarize(disaggregate(y_true=y, y_score=p, sensitive=list(g), classes=CLASSES3))
    dp = [demographic_parity_difference(y == c, pred == c, sensitive_features=g) for c in range(3)]
    eo = [equal_opportunity_difference(y == c, pred == c, sensitive_features=g) for c in range(3)]
    eodds = [equalized_odds_difference(y == c, pred == c, sensitive_features=g) for c in range(3)]
    assert s.dp == pytest.approx(np.mean(dp), abs=1e-12)
    assert s.eo == pytest.approx(np.mean(eo), abs=1e-12)
    assert s.eodds == pytest.approx(np.mean(eodds), abs=1e-12)
    assert list(s.dp_by_class.values()) == pytest.approx(dp, abs=1e-12)
    assert s.worst_group == "g3"


def test_binary_uses_the_positive_class_like_fairlearn():
    y, p3, g = _random_case(k=2)
    p = p3[:, :2] / p3[:, :2].sum(1, keepdims=True)
    pred = p.argmax(1)
    s = summarize(disaggregate(y_true=y, y_score=p, sensitive=list(g), classes=("neg", "pos")))
    assert s.dp == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=g))
    assert s.eo == pytest.approx(equal_opportunity_difference(y, pred, sensitive_features=g))
    assert s.eodds == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=g))
    assert list(s.eo_by_class) == ["pos"]


def test_group_auc_and_accuracy_match_sklearn():
    y, p, g = _random_case()
    t = disaggregate(y_true=y, y_score=p, sensitive=list(g), classes=CLASSES3)
    assert t.overall.auc == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for row in t.groups:
        m = g == row.group
        assert row.n == int(m.sum())
        assert row.accuracy == pytest.approx(np.mean(p[m].argmax(1) == y[m]))
        assert row.auc == pytest.approx(
            roc_auc_score(y[m], p[m], multi_class="ovr", average="macro", labels=[0, 1, 2]))


def test_hand_worked_binary_example():
    # group A: y 1 1 0 0, p1 .9 .4 .3 .1 -> pred 1 0 0 0: acc 3/4, SR 1/4, TPR 1/2, FPR 0, AUC 1
    # group B: y 1 1 1 0 0 0, p1 .8 .7 .2 .6 .55 .1 -> pred 1 1 0 1 1 0: acc 3/6, SR 4/6,
    #          TPR 2/3, FPR 2/3, AUC 7/9 (pairs pos > neg: 3 + 3 + 1 of 9)
    # all:     acc 6/10 = 0.6, AUC 20/25 = 0.8
    y = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0])
    p1 = np.array([0.9, 0.4, 0.3, 0.1, 0.8, 0.7, 0.2, 0.6, 0.55, 0.1])
    p = np.stack([1 - p1, p1], 1)
    g = ["A"] * 4 + ["B"] * 6
    rep = fairness_report(y_true=y, y_score=p, sensitive=g, classes=("no", "yes"),
                          attribute="sex", min_group_size=2)
    assert rep["by_group"]["A"]["accuracy"] == 0.75 and rep["by_group"]["B"]["accuracy"] == 0.5
    assert rep["by_group"]["A"]["auc"] == pytest.approx(1.0)
    assert rep["by_group"]["B"]["auc"] == pytest.approx(7 / 9)
    assert rep["overall"]["accuracy"] == pytest.approx(0.6)
    assert rep["overall"]["auc"] == pytest.approx(0.8)
    s = rep["summary"]
    assert s["dp"] == pytest.approx(4 / 6 - 1 / 4)            # 0.41667
    assert s["eo"] == pytest.approx(2 / 3 - 1 / 2)            # 0.16667
    assert s["eodds"] == pytest.approx(2 / 3)                 # max(1/6, 2/3 - 0)
    assert s["es_acc"] == pytest.approx(0.6 / (1 + 0.15 + 0.1))  # 0.48
    assert s["es_acc"] == pytest.approx(0.48)
    assert s["es_auc"] == pytest.approx(0.8 / (1 + 0.2 + (0.8 - 7 / 9)))  # 0.654545
    assert s["nar"] == pytest.approx(0.25 / 0.625)             # 0.4
    assert s["worst_group"] == "B" and s["worst_group_accuracy"] == 0.5
    assert s["worst_auc_group"] == "B"


def test_labels_are_y_true_not_swapped():
    # A classifier that always predicts class 0 treats every group alike: DP = 0. With the
    # arguments swapped (predictions as y_true) fairlearn would report the label base-rate gap.
    y = np.array([0] * 20 + [1] * 20 + [0] * 30 + [1] * 10)
    g = ["A"] * 40 + ["B"] * 40
    p = np.tile([0.9, 0.1], (80, 1))
    s = summarize(disaggregate(y_true=y, y_score=p, sensitive=g, classes=("no", "yes")))
    assert s.dp == 0.0
    swapped = demographic_parity_difference(np.zeros(80), y, sensitive_features=g)
    assert swapped == pytest.approx(0.25)  # 20/40 - 10/40
    assert s.dp != swapped


def test_small_unknown_and_single_class_groups_are_reported_not_dropped():
    y, p, g = _random_case(n=300)
    g = g.astype(object)
    g[:4] = "tiny"
    g[4:9] = None
    # a group of 30 whose labels are all class 0: AUC undefined, accuracy still used
    y = y.copy()
    g[9:39] = "one_class"
    y[9:39] = 0
    rep = fairness_report(y_true=y, y_score=p, sensitive=list(g), classes=CLASSES3)
    bg = rep["by_group"]
    assert bg["tiny"]["n"] == 4 and "4 samples < min_group_size 10" in bg["tiny"]["reason"]
    assert bg["unknown"]["n"] == 5 and bg["unknown"]["reason"] == "attribute value unknown"
    assert bg["one_class"]["auc"] is None and bg["one_class"]["reason"] is None
    assert "b (no positive sample)" in bg["one_class"]["auc_reason"]
    assert "a (no negative sample)" in bg["one_class"]["auc_reason"]
    assert bg["one_class"]["tpr"]["b"] is None  # no positives of b
    used = rep["summary"]["groups_used"]
    assert "tiny" not in used and "unknown" not in used and "one_class" in used
    assert sum(r["n"] for r in bg.values()) == 300


def test_fewer_than_two_groups_gives_no_summary_with_reason():
    y, p, _ = _random_case(n=50)
    s = summarize(disaggregate(y_true=y, y_score=p, sensitive=["x"] * 50, classes=CLASSES3))
    assert s.dp is None and s.es_acc is None and s.nar is None
    assert "1 group(s)" in s.reason


def test_equity_scaled_and_nar_formulas():
    assert equity_scaled(0.8, [0.8, 0.8]) == 0.8
    assert equity_scaled(0.8, [0.9, 0.6]) == pytest.approx(0.8 / 1.3)
    assert normalized_accuracy_range([0.9, 0.6, 0.75]) == pytest.approx(0.3 / 0.75)
    assert normalized_accuracy_range([0.5]) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y_true=[0, 1], y_score=[[0.5, np.nan], [0.1, 0.9]]), "NaN"),
        (dict(y_true=[0, 3], y_score=[[0.5, 0.5], [0.1, 0.9]]), "class index 3"),
        (dict(y_true=[0, 1, 1], y_score=[[0.5, 0.5], [0.1, 0.9]]), "shape"),
        (dict(y_true=[0.5, 1], y_score=[[0.5, 0.5], [0.1, 0.9]]), "integer class"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs, match):
    n = len(kwargs["y_true"])
    with pytest.raises(ValueError, match=match):
        disaggregate(sensitive=["a"] * n, classes=("x", "y"), **kwargs)


def test_group_balanced_accuracy_matches_sklearn_and_a_hand_case():
    y, p, g = _random_case()
    t = disaggregate(y_true=y, y_score=p, sensitive=list(g), classes=CLASSES3)
    pred = p.argmax(1)
    for row in t.groups:
        m = g == row.group
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(y[m], pred[m]))
    # by hand: group "x" has classes a (3 samples, 2 right) and b (1 sample, right), no c:
    # balanced accuracy (2/3 + 1) / 2 = 5/6 while accuracy is 3/4
    y = np.array([0, 0, 0, 1])
    p = np.eye(3)[[0, 0, 1, 1]] * 0.8 + 0.2 / 3
    (row,) = disaggregate(y_true=y, y_score=p, sensitive=["x"] * 4, classes=CLASSES3,
                          min_group_size=1).groups
    assert (row.accuracy, row.balanced_accuracy) == (pytest.approx(0.75), pytest.approx(5 / 6))
    assert balanced_accuracy({"a": 2 / 3, "b": 1.0, "c": None}) == pytest.approx(5 / 6)
    assert balanced_accuracy({"a": None}) is None
