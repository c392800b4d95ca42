import math

import pytest

from benchmark.schema import (
    AGE_GROUPS,
    SchemaError,
    age_to_group,
    check_value,
    empty_dataset,
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
    assert validate_rows(tiny_dataset.remove_columns("image")) == len(tiny_dataset)


def test_validate_rows_catches_inconsistent_age_group(tiny_dataset):
    rows = tiny_dataset.remove_columns("image").to_list()
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
