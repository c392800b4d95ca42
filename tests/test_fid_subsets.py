"""Repeated-subset FID (the cardiac paper's protocol): the subsets' mean and std and the
real-vs-real lower bound against a hand computation, and the evaluation's option."""

from __future__ import annotations

import dataclasses
import math
import statistics

import datasets
import numpy as np
import pytest
from conftest import make_rows

from benchmark.evaluation import generation_metrics
from benchmark.metrics import FeatureExtractor, repeated_subset_fid
from benchmark.profiles import PROFILES
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS, Task


def _fid_1d(a: list[float], b: list[float]) -> float:
    """FID of 1-D features by hand: (m_a - m_b)^2 + v_a + v_b - 2 sqrt(v_a v_b)."""
    va, vb = statistics.variance(a), statistics.variance(b)
    return (statistics.mean(a) - statistics.mean(b)) ** 2 + va + vb - 2 * math.sqrt(va * vb)


def test_subsets_mean_std_and_lower_bound_by_hand():
    real = [float(v) for v in [0, 1, 3, 4, 4.5, 7, 8, 8.5, 10, 13, 14, 20]]
    syn = [float(v) for v in [2, 2.5, 5, 6, 9, 9.5, 11, 16]]
    out = repeated_subset_fid(np.array(real)[:, None], np.array(syn)[:, None], subset_size=4,
                              repeats=5, seed=3)
    assert (out["subset_size"], out["requested_subset_size"], out["repeats"]) == (4, 4, 5)
    fids, lbs = [], []
    for s in out["subsets"]:
        assert len(s["real"]) == len(s["synthetic"]) == len(s["real_a"]) == 4
        assert not set(s["real_a"]) & set(s["real_b"])  # disjoint real halves
        fids.append(_fid_1d([real[i] for i in s["real"]], [syn[i] for i in s["synthetic"]]))
        lbs.append(_fid_1d([real[i] for i in s["real_a"]], [real[i] for i in s["real_b"]]))
    assert out["fid"]["values"] == pytest.approx(fids, rel=1e-9)
    assert out["fid"]["mean"] == pytest.approx(statistics.mean(fids), rel=1e-9)
    assert out["fid"]["std"] == pytest.approx(statistics.stdev(fids), rel=1e-9)
    assert out["real_vs_real"]["mean"] == pytest.approx(statistics.mean(lbs), rel=1e-9)
    assert out["real_vs_real"]["std"] == pytest.approx(statistics.stdev(lbs), rel=1e-9)
    assert len(set(map(tuple, (s["real"] for s in out["subsets"])))) > 1  # random subsets
    again = repeated_subset_fid(np.array(real)[:, None], np.array(syn)[:, None],
                                subset_size=4, repeats=5, seed=3)
    assert again["fid"] == out["fid"]  # seeded


def test_subsets_below_the_feature_dimension_agree_with_scipy_sqrtm():
    from benchmark.metrics import feature_stats, frechet_distance

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 16)), rng.normal(0.3, 1.2, size=(15, 16))
    out = repeated_subset_fid(x, y, subset_size=6, repeats=3, seed=1)  # n 6 < d 16: Gram
    for v, s in zip(out["fid"]["values"], out["subsets"], strict=True):
        ref = frechet_distance(*feature_stats(x[s["real"]]), *feature_stats(y[s["synthetic"]]),
                               method="sqrtm")
        assert v == pytest.approx(ref, rel=1e-6)


def test_subset_size_is_capped_and_too_few_rows_is_a_reason():
    x, y = np.random.default_rng(0).normal(size=(10, 2)), np.random.default_rng(1).normal(
        size=(30, 2))
    out = repeated_subset_fid(x, y, subset_size=500, repeats=2)
    assert out["subset_size"] == 5 and out["requested_subset_size"] == 500
    few = repeated_subset_fid(x[:3], y, subset_size=500, repeats=2)
    assert few["fid"]["mean"] is None and "2" in few["reason"]
    with pytest.raises(ValueError, match="subset_size"):
        repeated_subset_fid(x, y, subset_size=1, repeats=2)


class _Mean(FeatureExtractor):
    name = "mean-subsets-test"
    dim = 2

    def config(self):
        return {"kind": "mean-std"}

    def _compute(self, arrays):
        return np.array([[a.mean(), a.std()] for a in arrays], dtype=np.float32)


def test_evaluation_reports_subset_fid_for_tasks_that_ask(monkeypatch):
    task = TASKS.get("phantom-cardiac-hf")
    assert task.fid_subsets == (500, 10)

    def rows(n, seed, split):
        r = make_rows(n, seed)
        r["finding"] = ["no_finding" if i % 2 else "heart_failure" for i in range(n)]
        r["labels"] = [[f] for f in r["finding"]]
        r["bmi_class"] = ["normal" if i % 3 else "obese" for i in range(n)]
        r["split"] = [split] * n
        return datasets.Dataset.from_dict(r, features=FEATURES)

    real, syn = rows(40, 1, "test"), rows(30, 2, "train")
    profile = dataclasses.replace(PROFILES.get("smoke"), eval_real=40, eval_synthetic=30,
                                  bootstrap_resamples=2)
    ex = _Mean()
    out = generation_metrics(real, syn, task, profile, extractors={"inception": ex},
                             progress=False, seed=5)
    sub = out["fid_subsets"]
    assert sub["subset_size"] == 20 and sub["repeats"] == 10 and "subsets" not in sub
    f_r = ex.extract([np.asarray(i) for i in real["image"]])
    f_s = ex.extract([np.asarray(i) for i in syn["image"]])
    ref = repeated_subset_fid(f_r, f_s, subset_size=500, repeats=10, seed=5)
    assert sub["fid"] == ref["fid"] and sub["real_vs_real"] == ref["real_vs_real"]
    assert set(sub["by_group"]) == {"sex", "bmi_class"}
    assert set(sub["by_group"]["bmi_class"]) == {"normal", "obese"}
    obese = sub["by_group"]["bmi_class"]["obese"]
    assert obese["n_real"] == sum(v == "obese" for v in real["bmi_class"])
    # a task without the option reports none
    plain = dataclasses.replace(task, fid_subsets=(), headline_metrics=())
    assert isinstance(plain, Task)
    out2 = generation_metrics(real, syn, plain, profile, extractors={"inception": ex},
                              progress=False, seed=5)
    assert "fid_subsets" not in out2
