"""OASIS-1 / OASIS-2 loaders on fixture trees with Analyze 7.5 and NIfTI-pair volumes written
by nibabel: n3/n4 file names, csv and xlsx tables, N/A and blank CDR, rescans, slice choice."""

import logging

import numpy as np
import pytest
from real_fixtures import make_oasis1, make_oasis2

from benchmark.data import DATASETS
from benchmark.data.real import DataLayoutError
from benchmark.data.real.oasis import load_oasis1, load_oasis2
from benchmark.schema import validate_dataset


@pytest.mark.parametrize(("table", "nested"), [("csv", False), ("xlsx", True)])
def test_oasis1(tmp_path, table, nested, caplog):
    caplog.set_level(logging.INFO, logger="benchmark.data.real")
    make_oasis1(tmp_path, table=table, nested=nested)
    ds = DATASETS.get("oasis1").loader(root=tmp_path, image_size=64, n_images=0, seed=0,
                                       split_salt="x")
    validate_dataset(ds)
    rows = {r["sample_id"]: r for r in ds.remove_columns(["mask"])}
    assert sorted(rows) == ["OAS1_0001_MR1", "OAS1_0002_MR1", "OAS1_0003_MR1",
                            "OAS1_0010_MR1", "OAS1_0011_MR1"]
    assert "reliability rescan (_MR2): 1" in caplog.text
    r = rows["OAS1_0001_MR1"]
    assert (r["patient_id"], r["sex"], r["age"], r["age_band"], r["finding"]) == (
        "OAS1_0001", "female", 74.0, "<75", "no_finding")
    assert rows["OAS1_0002_MR1"]["finding"] is None  # CDR N/A
    assert rows["OAS1_0011_MR1"]["finding"] is None  # CDR blank
    assert rows["OAS1_0003_MR1"]["finding"] == "dementia"  # n3 file name, CDR 0.5
    r = rows["OAS1_0010_MR1"]
    assert (r["sex"], r["age_band"], r["finding"]) == ("male", ">=75", "dementia")
    img = np.asarray(r["image"])
    # axial slice of a (24, 28, 20) volume: 28 rows (A-P) x 24 columns, anterior at the top
    assert img.shape == (28, 24) and img.dtype == np.uint8
    assert img[:4].min() == 255 and img[4:].max() < 255
    assert "finding (CDR blank): 2" in caplog.text


def test_oasis1_options_and_errors(tmp_path):
    make_oasis1(tmp_path)
    ds = load_oasis1(root=tmp_path, missing_cdr="nondemented", plane="coronal",
                     slice_index=3, image="gfc", progress=False)
    assert set(ds["finding"]) == {"no_finding", "dementia"}
    assert np.asarray(ds[0]["image"]).shape == (20, 24)  # coronal: S-I rows x L-R columns
    ds = load_oasis1(root=tmp_path, rescans=True, missing_images="drop", progress=False)
    assert "OAS1_0001_MR2" not in ds["sample_id"] and len(ds) == 5
    with pytest.raises(FileNotFoundError, match="no image for OAS1_0001_MR2"):
        load_oasis1(root=tmp_path, rescans=True, progress=False)
    bad = next(tmp_path.glob("disc1/OAS1_0001_MR1/PROCESSED/MPRAGE/T88_111/*masked_gfc.img"))
    bad.write_bytes(b"\0" * 10)
    with pytest.raises(DataLayoutError, match="cannot read volume .*OAS1_0001_MR1"):
        load_oasis1(root=tmp_path, progress=False)
    (tmp_path / "oasis_cross-sectional.csv").write_text("ID,Sex,Age\nOAS1_0001_MR1,F,74\n")
    with pytest.raises(DataLayoutError, match="missing M/F, Hand, Educ"):
        load_oasis1(root=tmp_path, progress=False)


def test_oasis2(tmp_path):
    make_oasis2(tmp_path)
    ds = DATASETS.get("oasis2").loader(root=tmp_path, image_size=64, n_images=0, seed=0,
                                       split_salt="x")
    validate_dataset(ds)
    rows = {r["sample_id"]: r for r in ds.remove_columns(["mask"])}
    assert len(rows) == 5
    r = rows["OAS2_0187_MR3"]
    assert (r["patient_id"], r["sex"], r["age"], r["finding"]) == (
        "OAS2_0187", "female", 73.0, "dementia")
    assert rows["OAS2_0187_MR1"]["finding"] == "no_finding"  # converted later: per-visit CDR
    # visits of one subject share a split
    assert rows["OAS2_0001_MR1"]["split"] == rows["OAS2_0001_MR2"]["split"]
    assert np.asarray(r["image"]).shape == (24, 20)
    other = load_oasis2(root=tmp_path, scan=2, progress=False)
    assert np.asarray(other[0]["image"]).tolist() != np.asarray(ds[0]["image"]).tolist()
    with pytest.raises(FileNotFoundError, match="mpr-3.nifti.hdr"):
        load_oasis2(root=tmp_path, scan=3, progress=False)
