"""The synthetic budget rule of a run (ratio of the training set, or N images per class):
hand-worked per-class allocations under both strategies, the task presets and their
validation, the plan / record / config fields, and the command line's one-line errors."""

import json

import datasets
import pandas as pd
import pytest
from PIL import Image

from benchmark import (
    FEATURES,
    PROFILES,
    TASKS,
    Budget,
    allocate,
    allocate_majority_score,
    fill_optional,
    resolve_budget,
)
from benchmark.cli import main
from benchmark.schema import derive_attributes
from benchmark.tasks import Task

TASK = Task(name="budget-test", description="test", dataset="phantom-cxr",
            classes=("no_finding", "cardiomegaly"), sensitive_attributes=("sex",),
            prompt_template="{sex} {finding}")


def table(cells: dict[tuple[str, str], int], age: float = 50.0) -> datasets.Dataset:
    """Training rows: ``cells[(sex, finding)]`` rows of each cell, all of age ``age``."""
    cols: dict[str, list] = {k: [] for k in FEATURES}
    i = 0
    for (sex, finding), n in cells.items():
        for _ in range(n):
            cols["sample_id"].append(f"s{i}")
            cols["patient_id"].append(f"p{i}")
            cols["split"].append("train")
            cols["image"].append(Image.new("L", (4, 4)))
            cols["finding"].append(finding)
            cols["labels"].append([finding])
            cols["sex"].append(sex)
            cols["age"].append(age)
            for k in ("race", "skin_tone", "bmi", "mask"):
                cols[k].append(None)
            for c, v in derive_attributes({"age": age}).items():
                cols[c].append(v)
            cols["source"].append("test")
            i += 1
    return datasets.Dataset.from_dict(fill_optional(cols), features=FEATURES)


#: 2 classes x 2 groups; the female cells are the small ones of each class.
COUNTS = {("female", "no_finding"): 1, ("male", "no_finding"): 2,
          ("female", "cardiomegaly"): 6, ("male", "cardiomegaly"): 8}


def shares(plan) -> dict[tuple[str, str], int]:
    return {(r.attributes["sex"], r.finding): r.count for r in plan.rows}


def test_per_class_water_fill_hand_worked():
    # 5 per class, each class water-filled over its own two cells:
    #   no_finding 1, 2: level 4 (3 + 2 = 5)                 -> female 3, male 2
    #   cardiomegaly 6, 8: level 9.5 (3.5 + 1.5); floors 3, 1 leave one image, which goes to
    #   the smaller cell on the 0.5 / 0.5 tie                 -> female 4, male 1
    train = table(COUNTS)
    plan = allocate(train, TASK, Budget("per-class", per_class=5).request(len(train), TASK))
    assert shares(plan) == {("female", "no_finding"): 3, ("male", "no_finding"): 2,
                            ("female", "cardiomegaly"): 4, ("male", "cardiomegaly"): 1}


def test_the_same_total_as_a_ratio_fills_the_small_class_only():
    # 10 images over all four cells 1, 2, 6, 8: the two no_finding cells rise to 6 (5 + 4 =
    # 9), then three cells at 6 share the last image (1/3 each; ties to the smallest cell):
    # the ratio rule gives cardiomegaly nothing, the per-class rule 5 (above).
    train = table(COUNTS)
    budget = Budget("ratio", ratio=10 / 17)
    assert budget.request(len(train), TASK) == 10
    plan = allocate(train, TASK, budget.request(len(train), TASK))
    assert shares(plan) == {("female", "no_finding"): 6, ("male", "no_finding"): 4,
                            ("female", "cardiomegaly"): 0, ("male", "cardiomegaly"): 0}


def test_per_class_majority_score_fills_each_class_in_the_selected_group_only():
    # female: 2 rows (one per class, same age and sex): S = (1 + 0 + 0) / 3 over its single
    # pair, M = 1/2 (2/8 + 1/3) = 7/24; male: 6 of 8 rows, so M >= 1/2 * 6/8 = 3/8 > 7/24.
    # Only female is at most the mean score: each class's 5 images go to its female cell.
    cells = {("female", "no_finding"): 1, ("female", "cardiomegaly"): 1,
             ("male", "no_finding"): 3, ("male", "cardiomegaly"): 3}
    train = table(cells)
    plan = allocate_majority_score(train, TASK, {"no_finding": 5, "cardiomegaly": 5})
    assert shares(plan) == {("female", "no_finding"): 5, ("male", "no_finding"): 0,
                            ("female", "cardiomegaly"): 5, ("male", "cardiomegaly"): 0}
    female = next(g for g in plan.group_scores if dict(g.group)["sex"] == "female")
    assert female.selected and female.score == pytest.approx(7 / 24)
    # the int budget of the same total goes to the same group's cells, by water-filling
    assert shares(allocate_majority_score(train, TASK, 10))[("male", "no_finding")] == 0


def test_a_class_without_a_cell_in_the_selected_groups_is_an_error():
    # female (selected, as above) has no cardiomegaly image: its 5 images have nowhere to go
    cells = {("female", "no_finding"): 2, ("male", "no_finding"): 3,
             ("male", "cardiomegaly"): 3}
    with pytest.raises(ValueError, match="class 'cardiomegaly' .* no cell to place its 5 "
                                         "images in .*selected groups"):
        allocate_majority_score(table(cells), TASK, {"no_finding": 5, "cardiomegaly": 5})


@pytest.mark.parametrize(("budget", "match"), [
    ({"edema": 3}, "'edema', not a class of task 'budget-test'"),
    ({"no_finding": -1}, "class 'no_finding' is -1; expected an integer >= 0"),
    ({"no_finding": 2.5}, "class 'no_finding' is 2.5; expected an integer >= 0"),
])
def test_a_bad_per_class_mapping_is_named(budget, match):
    with pytest.raises(ValueError, match=match):
        allocate(table(COUNTS), TASK, budget)


# -- presets and validation ------------------------------------------------------------------

def test_the_sketch_task_declares_200_and_300_and_defaults_to_200():
    task = TASKS.get("sketch-mimic")
    assert task.synthetic_per_class == (200, 300)
    smoke = PROFILES.get("smoke")
    assert resolve_budget(task, smoke) == Budget("per-class", per_class=200)
    assert resolve_budget(task, smoke, 300) == Budget("per-class", per_class=300)
    # 14 findings x 200
    assert sum(resolve_budget(task, smoke).request(20000, task).values()) == 2800


def test_a_task_without_presets_takes_the_profile_ratio_or_any_n():
    task = TASKS.get("phantom-cxr-finding")
    assert task.synthetic_per_class == ()
    cpu = PROFILES.get("cpu")
    assert resolve_budget(task, cpu) == Budget("ratio", ratio=cpu.synthetic_ratio)
    assert resolve_budget(task, cpu).request(101, task) == round(cpu.synthetic_ratio * 101)
    assert resolve_budget(task, cpu, 7).request(101, task) == {c: 7 for c in task.classes}


@pytest.mark.parametrize(("task", "value", "match"), [
    ("phantom-cxr-finding", 0, "--synthetic-per-class 0: expected an integer >= 1"),
    ("phantom-cxr-finding", -3, "--synthetic-per-class -3: expected an integer >= 1"),
    ("phantom-cxr-finding", 2.5, "--synthetic-per-class 2.5: expected an integer >= 1"),
    ("phantom-cxr-finding", "abc", "--synthetic-per-class 'abc': expected an integer >= 1"),
    ("phantom-cxr-finding", True, "--synthetic-per-class True: expected an integer >= 1"),
    ("sketch-mimic", 250, "--synthetic-per-class 250: task 'sketch-mimic' declares "
                          r"200 \(default\), 300; expected one of them"),
])
def test_bad_per_class_values_are_one_line_errors(task, value, match):
    with pytest.raises(ValueError, match=match):
        resolve_budget(TASKS.get(task), PROFILES.get("smoke"), value)


@pytest.mark.parametrize("presets", [(0,), (200, 200), (2.5,), (True,)])
def test_a_task_rejects_bad_presets(presets):
    with pytest.raises(ValueError, match="synthetic_per_class must be distinct integers >= 1"):
        Task(name="bad", description="x", dataset="phantom-cxr", classes=("no_finding",),
             sensitive_attributes=("sex",), synthetic_per_class=presets)


def test_presets_round_trip_and_leave_other_tasks_dicts_unchanged():
    task = TASKS.get("sketch-mimic")
    assert task.as_dict()["synthetic_per_class"] == [200, 300]
    assert Task.from_dict(task.as_dict()) == task
    assert "synthetic_per_class" not in TASKS.get("phantom-cxr-finding").as_dict()


def test_plan_records_say_the_rule():
    train = table(COUNTS)
    from dataclasses import replace

    plan = replace(allocate(train, TASK, {"no_finding": 5, "cardiomegaly": 5}),
                   budget=Budget("per-class", per_class=5))
    assert {r["budget"] for r in plan.as_records()} == {"per-class=5"}
    assert plan.allocation_record()["budget"] == {"rule": "per-class", "per_class": 5,
                                                  "total": 10}
    ratio = replace(allocate(train, TASK, 4), budget=Budget("ratio", ratio=0.25))
    assert {r["budget"] for r in ratio.as_records()} == {"ratio=0.25"}
    assert ratio.allocation_record()["budget"] == {"rule": "ratio", "ratio": 0.25, "total": 4}
    assert "budget" not in allocate(train, TASK, 4).allocation_record()  # none given


# -- command line ----------------------------------------------------------------------------

@pytest.mark.parametrize(("task", "value", "expected"), [
    ("phantom-cxr-finding", "0", "error: --synthetic-per-class 0: expected an integer >= 1 "
                                 "(synthetic images per class)"),
    ("phantom-cxr-finding", "-5", "error: --synthetic-per-class -5: expected an integer >= 1 "
                                  "(synthetic images per class)"),
    ("phantom-cxr-finding", "2.5", "error: --synthetic-per-class '2.5': expected an integer "
                                   ">= 1 (synthetic images per class)"),
    ("phantom-cxr-finding", "many", "error: --synthetic-per-class 'many': expected an integer "
                                    ">= 1 (synthetic images per class)"),
    ("sketch-mimic", "250", "error: --synthetic-per-class 250: task 'sketch-mimic' declares "
                            "200 (default), 300; expected one of them"),
])
def test_cli_bad_per_class_is_one_line_and_exit_2_before_any_work(task, value, expected,
                                                                   tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["run", "--method", "oversample", "--task", task, "--profile", "smoke", "--out",
               str(out), "--quiet", "--synthetic-per-class", value])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [expected]
    assert not out.exists()  # nothing started


def test_cli_lists_the_presets(capsys):
    assert main(["tasks"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert lines["sketch-mimic"].endswith("[synthetic per class: 200 (default), 300]")
    assert "synthetic per class" not in lines["phantom-cxr-finding"]
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "sketch-mimic 200 (default), 300" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_a_per_class_run_records_its_budget(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--method", "oversample", "--profile", "smoke", "--out", str(out),
                 "--quiet", "--json", "--synthetic-per-class", "2"]) == 0
    rec = json.loads(capsys.readouterr().out)
    rdir = out / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    classes = TASKS.get("phantom-cxr-finding").classes
    assert rec["allocation"]["budget"] == {"rule": "per-class", "per_class": 2,
                                           "total": 2 * len(classes)}
    assert rec["config"]["budget"] == {"rule": "per-class", "per_class": 2}
    assert json.loads((rdir / "config.json").read_text())["budget"] == rec["config"]["budget"]
    plan = pd.read_csv(rdir / "plan.csv")
    assert set(plan["budget"]) == {"per-class=2"}
    assert plan.groupby("finding")["count"].sum().to_dict() == {c: 2 for c in classes}
    assert rec["counts"]["plan_total"] == rec["counts"]["synthetic"] == 2 * len(classes)
    from benchmark.report.summary import summary

    assert f"(plan {2 * len(classes)} in " in summary(rec)
    assert "; budget 2 per class)" in summary(rec)
