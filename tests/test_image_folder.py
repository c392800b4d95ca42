import datasets
import numpy as np
import pandas as pd
import pytest
from conftest import make_rows
from PIL import Image

from benchmark.data.io import read_image_folder, write_image_folder
from benchmark.schema import FEATURES, SchemaError, bmi_to_class, validate_dataset


def test_round_trip_keeps_pixels_and_metadata(tiny_dataset, tmp_path):
    folder = write_image_folder(tiny_dataset, tmp_path / "syn", progress=False)
    back = read_image_folder(folder, required_attributes=("sex", "age_group"), progress=False)
    validate_dataset(back)
    assert len(back) == len(tiny_dataset)
    for col in ("sample_id", "patient_id", "finding", "sex", "age_group", "source"):
        assert list(back[col]) == list(tiny_dataset[col])
    for a, b in zip(back["image"], tiny_dataset["image"], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # no temporary folder is left beside the result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_rewrite_replaces_the_folder(tiny_dataset, tmp_path):
    write_image_folder(tiny_dataset, tmp_path / "syn", progress=False)
    write_image_folder(tiny_dataset.select(range(3)), tmp_path / "syn", progress=False)
    assert len(read_image_folder(tmp_path / "syn", progress=False)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


@pytest.fixture
def folder(tiny_dataset, tmp_path):
    return write_image_folder(tiny_dataset.select(range(4)), tmp_path / "syn", progress=False)


def test_missing_folder_and_missing_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="metadata.csv is missing"):
        read_image_folder(tmp_path / "empty")


def test_missing_column_names_found_and_expected(folder):
    meta = pd.read_csv(folder / "metadata.csv").drop(columns=["sex"])
    meta.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(SchemaError, match=r"missing column\(s\) sex; expected path, finding, sex"):
        read_image_folder(folder, required_attributes=("sex",), progress=False)


def test_missing_image_names_row_and_path(folder):
    meta = pd.read_csv(folder / "metadata.csv")
    (folder / meta.loc[2, "path"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"row 4: image .* does not exist"):
        read_image_folder(folder, progress=False)


def test_corrupt_image_names_row_and_path(folder):
    meta = pd.read_csv(folder / "metadata.csv")
    (folder / meta.loc[1, "path"]).write_bytes(b"not a png at all")
    with pytest.raises(SchemaError, match=r"row 3: cannot read image"):
        read_image_folder(folder, progress=False)


def test_unknown_label_and_nan_age_are_errors(folder):
    meta = pd.read_csv(folder / "metadata.csv")
    bad = meta.copy()
    bad.loc[0, "finding"] = "broken_heart"
    bad.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(SchemaError, match=r"unknown finding value 'broken_heart' .*row 2\)"):
        read_image_folder(folder, progress=False)
    bad = meta.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[0, "age"] = "NaN"
    bad.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(SchemaError, match="age is NaN"):
        read_image_folder(folder, progress=False)


def test_required_attribute_may_not_be_empty(folder):
    meta = pd.read_csv(folder / "metadata.csv")
    meta["sex"] = meta["sex"].astype(object)
    meta.loc[0, "sex"] = ""
    meta.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(SchemaError, match="empty sex"):
        read_image_folder(folder, required_attributes=("sex",), progress=False)
    assert read_image_folder(folder, progress=False)["sex"][0] is None


def test_masks_and_derived_columns_round_trip(tmp_path):
    rows = make_rows(12)
    rng = np.random.default_rng(3)
    masks = [rng.integers(0, 4, (16, 16), dtype=np.uint8) for _ in range(12)]
    rows["mask"] = [Image.fromarray(m) for m in masks]
    rows["bmi"] = [17.0 + i for i in range(12)]
    rows["bmi_class"] = [bmi_to_class(b) for b in rows["bmi"]]
    ds = datasets.Dataset.from_dict(rows, features=FEATURES)
    folder = write_image_folder(ds, tmp_path / "syn", progress=False)
    meta = pd.read_csv(folder / "metadata.csv")
    assert meta["mask_path"].str.startswith("masks/").all()
    back = read_image_folder(folder, required_attributes=("bmi_class",), progress=False)
    validate_dataset(back)
    assert list(back["bmi_class"]) == list(ds["bmi_class"])
    assert list(back["age_band"]) == list(ds["age_band"])
    for got, want in zip(back["mask"], masks, strict=True):
        assert np.array_equal(np.asarray(got), want)


def test_derived_attribute_comes_from_its_base_column(folder):
    meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    meta = meta.drop(columns=["skin_tone_group"])
    meta["skin_tone"] = ["I", "IV", "VI", ""]
    meta.to_csv(folder / "metadata.csv", index=False)
    back = read_image_folder(folder, progress=False)
    assert list(back["skin_tone_group"]) == ["light", "medium", "dark", None]
    # the fourth row has neither a tone nor a group: a task grouped by tone needs one
    with pytest.raises(SchemaError, match="row 5: empty skin_tone_group"):
        read_image_folder(folder, required_attributes=("skin_tone_group",), progress=False)


def test_contradicting_derived_value_is_an_error(folder):
    meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    meta.loc[1, "age_band"] = ">=75" if meta.loc[1, "age_band"] == "<75" else "<75"
    meta.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(SchemaError, match="row 3: age_band .* does not match age"):
        read_image_folder(folder, progress=False)


def test_source_ids_and_control_images_round_trip(tmp_path):
    rows = make_rows(6)
    rng = np.random.default_rng(4)
    controls = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(6)]
    rows["control"] = [Image.fromarray(c) if i % 2 == 0 else None
                       for i, c in enumerate(controls)]
    rows["source_id"] = [f"real-{i}" if i < 4 else None for i in range(6)]
    ds = datasets.Dataset.from_dict(rows, features=FEATURES)
    folder = write_image_folder(ds, tmp_path / "syn", progress=False)
    meta = pd.read_csv(folder / "metadata.csv", keep_default_na=False)
    assert list(meta["source_id"]) == ["real-0", "real-1", "real-2", "real-3", "", ""]
    assert [bool(p) for p in meta["control_path"]] == [True, False] * 3
    assert all(p.startswith("controls/") for p in meta["control_path"] if p)
    back = read_image_folder(folder, progress=False)
    validate_dataset(back)
    assert list(back["source_id"]) == rows["source_id"]
    for i, got in enumerate(back["control"]):
        if i % 2:
            assert got is None
        else:
            assert np.array_equal(np.asarray(got), controls[i])


def test_a_folder_without_conditioning_has_no_conditioning_columns(tiny_dataset, tmp_path):
    folder = write_image_folder(tiny_dataset, tmp_path / "plain", progress=False)
    meta = pd.read_csv(folder / "metadata.csv")
    assert "control_path" not in meta.columns and "source_id" not in meta.columns
