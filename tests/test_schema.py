import math

import numpy as np
import pytest

from benchmark.schema import (
    AGE_GROUPS,
    COLUMNS,
    DERIVED,
    SchemaError,
    age_to_band,
    age_to_group,
    bmi_to_class,
    check_value,
    derive_attributes,
    empty_dataset,
    tone_to_group,
    validate_dataset,
    validate_rows,
)


@pytest.mark.parametrize(
    ("age", "group"),
    [(0, "0-17"), (17.9, "0-17"), (18, "18-39"), (39.99, "18-39"), (40, "40-59"),
     (59, "40-59"), (60, "60-79"), (79.5, "60-79"), (80, "80+"), (104, "80+"), (None, None)],
)
def test_age_groups_at_the_edges(age, group):
    assert age_to_group(age) == group


def test_age_groups_vocabulary_covers_all_bins():
    assert {age_to_group(a) for a in range(0, 120)} == set(AGE_GROUPS)


@pytest.mark.parametrize("bad", [math.nan, -1])
def test_nan_or_negative_age_is_an_error(bad):
    with pytest.raises(SchemaError, match="age"):
        age_to_group(bad)


def test_unknown_value_names_column_value_and_vocabulary():
    with pytest.raises(SchemaError) as err:
        check_value("sex", "F", where="x.csv row 3")
    msg = str(err.value)
    assert "sex" in msg and "'F'" in msg and "x.csv row 3" in msg and "female" in msg
    check_value("sex", None)  # unknown is allowed


def test_validate_dataset_accepts_good_rows(tiny_dataset):
    validate_dataset(tiny_dataset)
    assert validate_rows(tiny_dataset.remove_columns(["image", "mask"])) == len(tiny_dataset)


def test_validate_rows_catches_inconsistent_age_group(tiny_dataset):
    rows = tiny_dataset.remove_columns(["image", "mask"]).to_list()
    rows[5]["age_group"] = "0-17"
    with pytest.raises(SchemaError, match="row 5"):
        validate_rows(rows)


def test_validate_dataset_catches_missing_column(tiny_dataset):
    with pytest.raises(SchemaError, match="missing column.*race"):
        validate_dataset(tiny_dataset.remove_columns("race"))


def test_validate_dataset_catches_duplicate_ids(tiny_dataset):
    ids = list(tiny_dataset["sample_id"])
    ids[1] = ids[0]
    ds = tiny_dataset.remove_columns("sample_id").add_column("sample_id", ids)
    with pytest.raises(SchemaError, match="not unique"):
        validate_dataset(ds)


def test_empty_dataset_has_the_schema():
    ds = empty_dataset()
    assert len(ds) == 0
    validate_dataset(ds)


@pytest.mark.parametrize(
    ("age", "band"), [(0, "<75"), (74.99, "<75"), (75, ">=75"), (96, ">=75"), (None, None)]
)
def test_age_bands_at_the_edge(age, band):
    assert age_to_band(age) == band


@pytest.mark.parametrize(
    ("tone", "group"),
    [("I", "light"), ("II", "light"), ("III", "medium"), ("IV", "medium"), ("V", "dark"),
     ("VI", "dark"), (None, None)],
)
def test_fitzpatrick_groups(tone, group):
    assert tone_to_group(tone) == group


def test_unknown_tone_is_an_error():
    with pytest.raises(SchemaError, match="skin_tone.*'7'"):
        tone_to_group("7")


@pytest.mark.parametrize(
    ("bmi", "cls"),
    [(15.0, "underweight"), (18.49, "underweight"), (18.5, "normal"), (24.99, "normal"),
     (25.0, "overweight"), (29.9, "overweight"), (30.0, "obese"), (45.0, "obese"), (None, None)],
)
def test_who_bmi_classes(bmi, cls):
    assert bmi_to_class(bmi) == cls


@pytest.mark.parametrize("bad", [math.nan, -3.0])
def test_nan_or_negative_bmi_is_an_error(bad):
    with pytest.raises(SchemaError, match="bmi"):
        bmi_to_class(bad)


def test_derive_attributes_fills_from_bases_and_keeps_groups_without_base():
    got = derive_attributes({"age": 80.0, "skin_tone": "V", "bmi": 31.0})
    assert got == {"age_group": "80+", "age_band": ">=75", "skin_tone_group": "dark",
                   "bmi_class": "obese"}
    # a synthetic row asked for "dark skin" has a group but no Fitzpatrick type
    got = derive_attributes({"skin_tone": None, "skin_tone_group": "dark"})
    assert got["skin_tone_group"] == "dark" and got["age_band"] is None


def test_every_derived_column_is_a_column_and_its_base_too():
    for column, (base, _) in DERIVED.items():
        assert column in COLUMNS and base in COLUMNS


@pytest.mark.parametrize(
    ("column", "value"),
    [("age_band", ">=75"), ("skin_tone_group", "dark"), ("bmi_class", "obese")],
)
def test_validate_rows_catches_inconsistent_derived_columns(tiny_dataset, column, value):
    rows = tiny_dataset.remove_columns(["image", "mask"]).to_list()
    rows[3].update({"age": 30.0, "age_group": "18-39", "age_band": "<75",
                    "skin_tone": "I", "skin_tone_group": "light",
                    "bmi": 22.0, "bmi_class": "normal"})
    validate_rows(rows)
    rows[3][column] = value
    with pytest.raises(SchemaError, match=f"row 3: {column}"):
        validate_rows(rows)


@pytest.mark.parametrize("seed", range(20))
def test_validate_dataset_reports_what_a_row_scan_reports(tiny_dataset, seed):
    """The column-wise validate_dataset names the same first bad row and error as the
    row-by-row validate_rows (the reference), for two corruptions at random rows."""
    import datasets as hf

    rng = np.random.default_rng(seed)
    corruptions = [("sex", "F"), ("age_group", "0-17"), ("finding", "flu"),
                   ("labels", ["no_finding", "flu"]), ("patient_id", ""),
                   ("skin_tone", "VII"), ("age_band", ">=75")]
    rows = tiny_dataset.to_list()
    for idx in rng.choice(len(rows), size=2, replace=False):
        column, value = corruptions[rng.integers(len(corruptions))]
        rows[int(idx)][column] = value
        if column == "age_band":
            rows[int(idx)].update(age=30.0, age_group="18-39")
    ds = hf.Dataset.from_list(rows, features=tiny_dataset.features)
    with pytest.raises(SchemaError) as scan:
        validate_rows(ds.remove_columns(["image", "mask"]), source="x")
    with pytest.raises(SchemaError) as fast:
        validate_dataset(ds, source="x")
    assert str(fast.value) == str(scan.value)
