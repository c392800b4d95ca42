"""MIMIC-CXR-JPG loader on fixture trees of both MIMIC-IV versions (core/ethnicity and
hosp/race), gz and plain csvs, the official split, age at study and the race policies."""

import logging

import pytest
from real_fixtures import make_mimic

from benchmark.data import DATASETS
from benchmark.data.real import DataLayoutError
from benchmark.data.real.mimic_cxr import load, map_race
from benchmark.schema import validate_dataset


def _by_id(ds):
    return {r["sample_id"]: r for r in ds.remove_columns(["image", "mask"])}


@pytest.mark.parametrize(("iv", "cxr", "gz"), [("1.0", "2.0.0", True), ("2.2", "2.1.0", False)])
def test_both_mimic_iv_versions(tmp_path, iv, cxr, gz, caplog):
    caplog.set_level(logging.INFO, logger="benchmark.data.real")
    make_mimic(tmp_path, mimic_iv_version=iv, cxr_version=cxr, gz=gz)
    ds = DATASETS.get("mimic-cxr").loader(root=tmp_path, image_size=64, n_images=0, seed=0,
                                          split_salt="x")
    validate_dataset(ds, source="mimic-cxr")
    rows = _by_id(ds)
    assert sorted(rows) == ["d1", "d3", "d4", "d5", "d6"]  # the LATERAL image is dropped
    assert "dropped ViewPosition not in ['PA', 'AP']: 1" in caplog.text
    d1 = rows["d1"]
    assert (d1["patient_id"], d1["split"], d1["sex"], d1["finding"]) == (
        "10000032", "train", "female", "no_finding")
    assert d1["age"] == 52.0 and d1["race"] == "white"  # UNKNOWN admission ignored
    d3 = rows["d3"]  # study in 2180 + 0 years; uncertain edema -> zeros
    assert d3["finding"] == "pleural_effusion" and d3["labels"] == ["pleural_effusion"]
    d4 = rows["d4"]  # anchor_age 86 in 2132, study 2132 -> 86; WHITE vs ASIAN -> None
    assert d4["split"] == "val" and d4["age"] == 86.0 and d4["age_band"] == ">=75"
    assert d4["race"] is None and d4["finding"] == "cardiomegaly"
    d5 = rows["d5"]  # anchor 40 in 2180, study 2183 -> 43
    assert d5["split"] == "test" and d5["age"] == 43.0 and d5["race"] == "hispanic"
    assert d5["finding"] is None and d5["labels"] == []
    d6 = rows["d6"]  # subject not in MIMIC-IV
    assert d6["sex"] is None and d6["age"] is None and d6["finding"] is None
    assert "1 subjects have admissions of different races" in caplog.text
    assert ds[0]["image"].size == (40, 32)


def test_policies(tmp_path):
    make_mimic(tmp_path)
    rows = _by_id(load(root=tmp_path, race_conflict="most_frequent", uncertain="ones"))
    assert rows["d4"]["race"] == "asian"  # 2 asian admissions vs 1 white
    assert rows["d5"]["finding"] == "pneumonia"
    assert rows["d3"]["finding"] is None  # effusion + uncertain edema as positive
    rows = _by_id(load(root=tmp_path, view_positions=("LATERAL",)))
    assert list(rows) == ["d2"]
    with pytest.raises(ValueError, match="race_conflict="):
        load(root=tmp_path, race_conflict="first")


def test_race_mapping_covers_both_versions():
    assert map_race("BLACK/CAPE VERDEAN") == ("black", True)
    assert map_race("HISPANIC OR LATINO") == ("hispanic", True)
    assert map_race("AMERICAN INDIAN/ALASKA NATIVE") == ("american_indian_alaska_native", True)
    assert map_race("NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER") == (
        "native_hawaiian_pacific_islander", True)
    assert map_race("PATIENT DECLINED TO ANSWER") == (None, True)
    assert map_race("MULTIPLE RACE/ETHNICITY") == ("other", True)
    assert map_race("MARTIAN") == (None, False)


def test_errors_and_missing_mimic_iv(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-metadata.csv.gz"):
        load(root=tmp_path)
    make_mimic(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "mimiciv")
    ds = load(root=tmp_path)
    assert set(ds["sex"]) == {None} and "sex, age and race are unknown" in caplog.text
    (tmp_path / "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="split.csv.gz \\(or .csv\\) is missing"):
        load(root=tmp_path)


def test_admissions_without_race_column_is_a_clear_error(tmp_path):
    from real_fixtures import write_csv

    make_mimic(tmp_path, mimic_iv_version="2.2")
    write_csv(tmp_path / "mimiciv/2.2/hosp/admissions.csv.gz", ["subject_id", "hadm_id"],
              [["10000032", "1"]], gz=True)
    with pytest.raises(DataLayoutError, match="no race column; expected 'race'"):
        load(root=tmp_path)


def test_held_out_groups_leave_training_only(tmp_path, caplog):
    from benchmark.profiles import PROFILES
    from benchmark.runner import load_task_data
    from benchmark.tasks import TASKS, Task

    make_mimic(tmp_path)
    task = Task(name="t", description="", dataset="mimic-cxr",
                classes=("no_finding", "pleural_effusion", "cardiomegaly", "pneumonia"),
                sensitive_attributes=("sex", "race"),
                held_out_groups=(("female", "white"), ("male", "hispanic")))
    assert Task.from_dict(task.as_dict()) == task
    caplog.set_level(logging.INFO, logger="benchmark.tasks")
    ds = load_task_data(task, PROFILES.get("smoke"), root=tmp_path)
    # d1, d3 (female, white) are train rows: removed; d5 (male, hispanic) is test: kept
    assert "d1" not in ds["sample_id"] and "d3" not in ds["sample_id"]
    assert "removed 2 training rows of the held-out groups" in caplog.text
    compdiff = TASKS.get("compdiff-mimic")
    assert compdiff.held_out_groups == (("female", "asian"), ("male", "black"))
    assert compdiff.as_dict()["held_out_groups"] == [["female", "asian"], ["male", "black"]]
    with pytest.raises(ValueError, match="unknown race 'martian'"):
        Task(name="u", description="", dataset="x", classes=("no_finding",),
             sensitive_attributes=("sex", "race"), held_out_groups=(("male", "martian"),))
