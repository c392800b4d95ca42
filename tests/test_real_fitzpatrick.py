"""Fitzpatrick17k loader: both csv headers, the three image-name variants, tone -1, the five
FairGen conditions, dropped rows counted."""

import logging

import pytest
from real_fixtures import FITZ_ROWS, make_fitzpatrick

from benchmark.data import DATASETS
from benchmark.data.real import DataLayoutError
from benchmark.data.real.fitzpatrick17k import load
from benchmark.schema import validate_dataset


@pytest.mark.parametrize("old", [False, True])
def test_both_headers_and_image_names(tmp_path, old, caplog):
    caplog.set_level(logging.INFO, logger="benchmark.data.real")
    make_fitzpatrick(tmp_path, old_header=old)
    ds = DATASETS.get("fitzpatrick17k").loader(root=tmp_path, image_size=64, n_images=0,
                                               seed=0, split_salt="x")
    validate_dataset(ds)
    rows = {r["sample_id"]: r for r in ds.remove_columns(["image", "mask"])}
    assert sorted(rows) == sorted(r[0] for r in FITZ_ROWS[:5])
    r = rows[FITZ_ROWS[0][0]]
    assert (r["finding"], r["skin_tone"], r["skin_tone_group"]) == ("psoriasis", "III", "medium")
    assert rows[FITZ_ROWS[1][0]]["skin_tone_group"] == "light"
    assert rows[FITZ_ROWS[2][0]]["skin_tone"] == "VI"  # found by url_alphanum
    assert rows[FITZ_ROWS[3][0]]["skin_tone"] is None  # -1
    assert rows[FITZ_ROWS[4][0]]["finding"] == "allergic_contact_dermatitis"
    assert all(r["patient_id"] == r["sample_id"] and r["split"] in ("train", "val", "test")
               for r in rows.values())
    assert "condition is not one of the schema's findings: 1" in caplog.text
    assert "image not downloaded: 1" in caplog.text
    assert ds[0]["image"].mode == "RGB"
    if old:
        assert "older header" in caplog.text


def test_options_and_errors(tmp_path):
    make_fitzpatrick(tmp_path, image_dir="")
    ds = load(root=tmp_path, tone_column="fitzpatrick_centaur", drop_wrongly_labelled=True)
    rows = {r["sample_id"]: r for r in ds.remove_columns(["image", "mask"])}
    assert FITZ_ROWS[3][0] not in rows and rows[FITZ_ROWS[2][0]]["skin_tone"] == "V"
    with pytest.raises(FileNotFoundError, match="no image 2222bbbb"):
        load(root=tmp_path, missing_images="error")
    csv = tmp_path / "fitzpatrick17k.csv"
    csv.write_text("md5hash,label,skin\nx,psoriasis,3\n")
    with pytest.raises(DataLayoutError, match="missing fitzpatrick_scale, fitzpatrick_centaur"):
        load(root=tmp_path)
    csv.unlink()
    with pytest.raises(FileNotFoundError, match="fitzpatrick17k.csv"):
        load(root=tmp_path)
