"""Sweeps without running anything: the seed interval, the aggregate, the metric keys, and the
command line's one-line errors (the runs themselves: tests/test_leaderboard.py)."""

import math

import pytest

from benchmark.cli import main
from benchmark.headline import flatten_metrics, headline_value
from benchmark.sweep import aggregate, expand_jobs, seed_interval


def test_seed_interval_matches_hand_computed_t_interval():
    # x = 1, 2, 3: mean 2, sd (ddof 1) 1; t_{0.975, 2} = 4.302652729911275 (t table)
    s = seed_interval([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["sd"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)
    assert s["ci_low"] == pytest.approx(2 - half) and s["ci_high"] == pytest.approx(2 + half)
    # x = 10, 14 (n 2): sd = sqrt(8), sd / sqrt(2) = 2; t_{0.975, 1} = 12.706204736174707
    s = seed_interval([10.0, 14.0])
    assert s["sd"] == pytest.approx(math.sqrt(8))
    assert s["ci_high"] - s["mean"] == pytest.approx(12.706204736174707 * 2)


def test_seed_interval_counts_undefined_seeds_and_needs_two_values():
    s = seed_interval([None, 4.0, None])
    assert (s["n"], s["n_missing"], s["mean"], s["sd"], s["ci_low"]) == (1, 2, 4.0, None, None)
    assert seed_interval([None])["mean"] is None


def _metrics(fid, acc, female):
    return {
        "generation": {
            "fid": {"value": fid, "ci_low": 0.0},
            "es_fid": {"sex": {"value": 2 * fid}},
            "fid_by_group": {"sex": {"female": {"value": female}, "male": {"value": None}}},
            "settings": {"bootstrap": {"value": 99}},  # settings are not metrics
        },
        "downstream": {
            "config": {"backbones": ["tiny-resnet", "resnet50"]},
            "classifiers": {
                "real+synthetic/tiny-resnet": {
                    "test": {"accuracy": acc, "auc": None},
                    "fairness": {"sex": {"summary": {"dp": 0.1, "worst_group_accuracy": 0.4,
                                                     "groups_used": ["female"]},
                                         "by_group": {"female": {"accuracy": 0.4,
                                                                 "balanced_accuracy": 0.3}}}}},
                "real+synthetic/resnet50": {"test": {"accuracy": 0.99}},
            },
        },
    }


def test_flatten_metrics_keys_follow_the_headline_grammar():
    flat = flatten_metrics(_metrics(10.0, 0.5, 12.0))
    assert flat == {
        "generation.fid": 10.0, "generation.es_fid[sex]": 20.0,
        "generation.fid_by_group[sex][female]": 12.0, "generation.fid_by_group[sex][male]": None,
        "downstream.real+synthetic.accuracy": 0.5, "downstream.real+synthetic.auc": None,
        "downstream.real+synthetic.dp[sex]": 0.1,
        "downstream.real+synthetic.worst_group_accuracy[sex]": 0.4,
        "downstream.real+synthetic.accuracy_by_group[sex][female]": 0.4,
        "downstream.real+synthetic.balanced_accuracy_by_group[sex][female]": 0.3,
    }
    for key in ("generation.fid", "generation.es_fid[sex]",
                "downstream.real+synthetic.worst_group_accuracy[sex]"):
        assert flat[key] == headline_value(_metrics(10.0, 0.5, 12.0), key)


def test_aggregate_groups_by_task_and_method_and_summarises_every_metric():
    recs = [{"task": "t", "method": "m", "profile": "cpu", "seed": s, "config_hash": f"h{s}",
             "dataset_fingerprint": "d", "metrics": _metrics(fid, 0.5, 1.0)}
            for s, fid in ((2, 30.0), (0, 10.0), (1, 20.0))]
    recs.append({**recs[0], "method": "other", "seed": 0})
    agg = aggregate(recs)
    assert [(e["method"], e["seeds"]) for e in agg["entries"]] == [("m", [0, 1, 2]),
                                                                   ("other", [0])]
    fid = agg["entries"][0]["metrics"]["generation.fid"]
    assert fid["values"] == [10.0, 20.0, 30.0] and fid["mean"] == 20.0
    assert fid["sd"] == pytest.approx(10.0)  # ddof 1: sqrt((100 + 0 + 100) / 2)
    assert agg["entries"][0]["metrics"]["generation.fid_by_group[sex][male]"]["n_missing"] == 3


def test_expand_jobs_orders_jobs_and_rejects_duplicates(tmp_path):
    jobs = expand_jobs(["a", "b"], ["t"], [0, 1], "smoke", tmp_path)
    assert [(j.method, j.seed) for j in jobs] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert jobs[0].run_dir == tmp_path / "t" / "a" / "smoke-seed0"
    with pytest.raises(ValueError, match="--seeds: 1 given more than once"):
        expand_jobs(["a"], ["t"], [1, 1], "smoke", tmp_path)


@pytest.mark.parametrize("argv, expected", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--methods", "oversample", "--tasks", "nope"], "unknown task 'nope'"),
    (["--methods", "oversample", "--seeds", "-1"], "--seed -1: expected an integer"),
    (["--methods", "oversample", "--parallel", "0"], "--parallel must be >= 1"),
])
def test_sweep_bad_input_is_one_line_and_exit_2(argv, expected, capsys, tmp_path):
    assert main(["sweep", "--profile", "smoke", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "sweep.json").exists()


def test_submit_of_a_folder_without_runs_is_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["submit", str(tmp_path / "empty"), "--out", str(tmp_path / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no result.json" in err, err
    assert not (tmp_path / "sub").exists()
