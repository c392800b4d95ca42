"""The majority-score allocation (Kim & Hong 2025): hand-worked scores, a brute-force pair
loop on random data, the plan it builds, and a run that uses it."""

import itertools
import json
from fractions import Fraction

import datasets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark import ALLOCATIONS, FEATURES, allocate_majority_score, fill_optional, majority_scores
from benchmark.generators import _pair_abs_diff_sum, _pair_mismatch_sum
from benchmark.schema import derive_attributes
from benchmark.tasks import Task

TASK = Task(name="ms-test", description="test", dataset="phantom-cxr",
            classes=("no_finding", "cardiomegaly", "edema"), sensitive_attributes=("race",),
            prompt_template="{race} {finding}")


def table(rows: list[tuple]) -> datasets.Dataset:
    """rows of (race, finding, labels, age, sex)."""
    cols: dict[str, list] = {k: [] for k in FEATURES}
    for i, (race, finding, labels, age, sex) in enumerate(rows):
        cols["sample_id"].append(f"s{i}")
        cols["patient_id"].append(f"p{i}")
        cols["split"].append("train")
        cols["image"].append(Image.new("L", (4, 4)))
        cols["finding"].append(finding)
        cols["labels"].append(labels)
        cols["sex"].append(sex)
        cols["age"].append(age)
        cols["race"].append(race)
        cols["skin_tone"].append(None)
        cols["bmi"].append(None)
        cols["mask"].append(None)
        for c, v in derive_attributes({"age": age}).items():
            cols[c].append(v)
        cols["source"].append("test")
    return datasets.Dataset.from_dict(fill_optional(cols), features=FEATURES)


HAND = [
    ("asian", "no_finding", ["no_finding"], 20.0, "female"),
    ("asian", "cardiomegaly", ["cardiomegaly", "edema"], 40.0, "male"),
    ("asian", "cardiomegaly", ["cardiomegaly"], 80.0, "female"),
    ("black", "edema", ["edema"], 60.0, "male"),
    ("black", "edema", ["edema"], 60.0, "male"),
    # outside the task's classes: not in D (its age 100 is not g_max)
    ("black", "pleural_effusion", ["pleural_effusion"], 100.0, "female"),
]


def test_majority_scores_hand_worked():
    # asian, g_max = 80, C = 3:
    #   pair (1,2): labels differ in 3/3, ages 20/80 apart, sexes differ: d = (1 + 1/4 + 1)/3
    #   pair (1,3): labels 2/3, ages 60/80, same sex:                      d = (2/3 + 3/4)/3
    #   pair (2,3): labels 1/3 (edema), ages 40/80, sexes differ:          d = (1/3 + 1/2 + 1)/3
    #   S = mean = 11/18; share 3/5; M = (3/5 + 11/18)/2 = 109/180
    # black: two identical rows: S = 0, share 2/5, M = 1/5
    d = [Fraction(9, 4) / 3, (Fraction(2, 3) + Fraction(3, 4)) / 3,
         (Fraction(1, 3) + Fraction(1, 2) + 1) / 3]
    assert sum(d) / 3 == Fraction(11, 18)
    scores = {dict(g.group)["race"]: g for g in majority_scores(table(HAND), TASK)}
    assert set(scores) == {"asian", "black"}
    a, b = scores["asian"], scores["black"]
    assert (a.size, b.size) == (3, 2)
    assert a.share == pytest.approx(3 / 5) and b.share == pytest.approx(2 / 5)
    assert a.heterogeneity == pytest.approx(11 / 18) and b.heterogeneity == 0
    assert a.score == pytest.approx(109 / 180) and b.score == pytest.approx(1 / 5)


def test_majority_score_plan_fills_only_the_low_score_groups():
    plan = allocate_majority_score(table(HAND), TASK, 4, seed=2)
    assert plan.allocation == "majority-score" and plan.seed == 2
    counts = {(r.attributes["race"], r.finding): r.count for r in plan.rows}
    # mean score (109/180 + 1/5)/2 ~ 0.403: only black (0.2) is selected; its one cell takes
    # the whole budget; asian's cells are listed with 0
    assert counts == {("asian", "cardiomegaly"): 0, ("asian", "no_finding"): 0,
                      ("black", "edema"): 4}
    selected = {dict(g.group)["race"]: g.selected for g in plan.group_scores}
    assert selected == {"asian": False, "black": True}
    recs = pd.DataFrame(plan.as_records())
    assert recs.set_index("race")["majority_score"].to_dict() == pytest.approx(
        {"asian": 109 / 180, "black": 1 / 5})
    rec = plan.allocation_record()
    assert rec["strategy"] == "majority-score"
    assert json.loads(json.dumps(rec))["groups"][1]["group"] == {"race": "black"}


def test_equal_scores_select_every_group_like_water_fill():
    rows = [("asian", "edema", ["edema"], 50.0, "male")] * 2 + \
           [("black", "edema", ["edema"], 50.0, "male")] * 2
    plan = allocate_majority_score(table(rows), TASK, 3)
    assert all(g.selected for g in plan.group_scores)
    assert sorted(r.count for r in plan.rows) == [1, 2]


def test_missing_age_leaves_the_term_out_for_its_pairs():
    rows = [("asian", "edema", ["edema"], 20.0, "male"),
            ("asian", "edema", ["edema"], 60.0, "male"),
            ("asian", "edema", ["edema"], None, "male")]
    (g,) = majority_scores(table(rows), TASK)
    # labels 0, sex 0 over 3 pairs; age only on the pair (20, 60): 40/60
    assert g.heterogeneity == pytest.approx((0 + 40 / 60 + 0) / 3)


def test_closed_form_pair_sums_match_a_pair_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, size=rng.integers(2, 15)).tolist()
        g = rng.uniform(0, 90, size=len(x)).tolist()
        pairs = list(itertools.combinations(range(len(x)), 2))
        assert _pair_mismatch_sum(x) == sum(x[i] != x[j] for i, j in pairs)
        assert _pair_abs_diff_sum(g) == pytest.approx(sum(abs(g[i] - g[j]) for i, j in pairs))


def test_scores_match_a_brute_force_pair_loop_on_random_rows():
    rng = np.random.default_rng(1)
    races, classes = ["asian", "black", "white"], TASK.classes
    rows = []
    for _ in range(40):
        labels = sorted({str(c) for c in rng.choice(classes, size=rng.integers(1, 3))})
        rows.append((str(rng.choice(races)), labels[0], labels, float(rng.integers(18, 90)),
                     str(rng.choice(["female", "male"]))))
    g_max = max(r[3] for r in rows)

    def d(a, b):
        va = [c in a[2] for c in classes]
        vb = [c in b[2] for c in classes]
        lab = sum(x != y for x, y in zip(va, vb, strict=True)) / len(classes)
        return (lab + abs(a[3] - b[3]) / g_max + (a[4] != b[4])) / 3

    got = {dict(g.group)["race"]: g.score for g in majority_scores(table(rows), TASK)}
    for race in races:
        members = [r for r in rows if r[0] == race]
        s = np.mean([d(a, b) for a, b in itertools.combinations(members, 2)])
        assert got[race] == pytest.approx(0.5 * (len(members) / len(rows) + s))


def test_allocations_registry_names_both_strategies():
    assert {"water-fill", "majority-score"} <= set(ALLOCATIONS.names())


def test_run_with_majority_score_records_the_scores(tmp_path):
    from benchmark.runner import run

    rec = run(method="oversample", task="phantom-cxr-finding", profile="smoke", seed=0,
              out=tmp_path, allocation="majority-score", progress=False)
    assert rec["config"]["allocation"] == "majority-score"
    groups = rec["allocation"]["groups"]
    assert rec["allocation"]["strategy"] == "majority-score" and groups
    assert any(g["selected"] for g in groups)
    plan = pd.read_csv(tmp_path / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
                       / "plan.csv")
    unselected = {tuple(g["group"].values()) for g in groups if not g["selected"]}
    for _, row in plan.iterrows():
        if (row["sex"], row["age_group"]) in unselected:
            assert row["count"] == 0
    assert plan["count"].sum() == rec["counts"]["plan_total"]
    # the default budget rule of a task without presets: the profile's ratio, said in the
    # plan and the record; only a per-class budget enters the config (tests/test_budget.py)
    assert set(plan["budget"]) == {"ratio=0.5"}
    assert rec["allocation"]["budget"] == {"rule": "ratio", "ratio": 0.5,
                                           "total": rec["counts"]["plan_total"]}
    assert "budget" not in rec["config"]
