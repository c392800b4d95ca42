"""ACDC (Info.cfg, BMI, masks) and M&Ms (diagnosis table, sex, 4-D ED frame) loaders."""

import numpy as np
import pytest
from real_fixtures import make_acdc, make_mnms

from benchmark.data.real import DataLayoutError
from benchmark.data.real.cardiac import load_acdc, load_mnms
from benchmark.schema import validate_dataset


def test_acdc(tmp_path):
    make_acdc(tmp_path)
    ds = load_acdc(root=tmp_path, progress=False)
    validate_dataset(ds)
    rows = {r["patient_id"]: r for r in ds}
    assert sorted(rows) == ["patient001", "patient061", "patient101"]  # HCM dropped
    r = rows["patient001"]
    assert r["finding"] == "heart_failure" and abs(r["bmi"] - 95 / 1.84**2) < 1e-3
    assert r["bmi_class"] == "overweight" and r["sex"] is None
    assert rows["patient061"]["finding"] == "no_finding"
    assert rows["patient101"]["split"] == "test" and rows["patient101"]["bmi"] is None
    img, mask = np.asarray(r["image"]), np.asarray(r["mask"])
    assert img.shape == mask.shape == (14, 18)
    assert set(np.unique(mask)) == {0, 3}
    ds = load_acdc(root=tmp_path, heart_failure=("DCM", "MINF", "HCM"), progress=False)
    assert len(ds) == 4
    cfg = tmp_path / "database/training/patient001/Info.cfg"
    cfg.write_text("ED: 1\nES: 12\nHeight: 184\nWeight: 95\n")
    with pytest.raises(DataLayoutError, match="missing Group"):
        load_acdc(root=tmp_path, progress=False)


def test_mnms(tmp_path):
    make_mnms(tmp_path)
    ds = load_mnms(root=tmp_path, progress=False)
    validate_dataset(ds)
    rows = {r["patient_id"]: r for r in ds}
    assert sorted(rows) == ["A0S9V9", "A1D0Q7", "B0N3W8"]
    r = rows["A0S9V9"]
    assert (r["sex"], r["age"], r["finding"], r["split"]) == ("male", 67.0, "no_finding", "train")
    assert abs(r["bmi"] - 70 / 1.7**2) < 1e-3
    r = rows["A1D0Q7"]
    assert (r["sex"], r["finding"], r["bmi"]) == ("female", "heart_failure", None)
    assert rows["B0N3W8"]["split"] == "test"
    assert np.asarray(r["image"]).shape == np.asarray(r["mask"]).shape == (12, 16)
