"""IXI loader: the IXI.xls layout (sheet Table, SEX_ID (1=m, 2=f), 0 = missing, duplicate
ids, the workbook's own ethnicity codes), BMI from height and weight, NIfTI slices."""

import logging

import numpy as np
from real_fixtures import make_ixi

from benchmark.data.real.ixi import load
from benchmark.schema import validate_dataset


def test_ixi(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="benchmark.data.real")
    make_ixi(tmp_path)
    ds = load(root=tmp_path, progress=False)
    validate_dataset(ds)
    rows = {r["patient_id"]: r for r in ds.remove_columns(["mask"])}
    assert sorted(rows) == ["IXI002", "IXI012", "IXI013", "IXI014"]  # IXI099 has no image
    r = rows["IXI002"]
    assert (r["sex"], r["race"], r["finding"], r["sample_id"]) == (
        "female", "white", "no_finding", "IXI002-Guys-0828-T1")
    assert abs(r["bmi"] - 58 / 1.64**2) < 1e-3 and r["bmi_class"] == "normal"
    assert abs(r["age"] - 35.8) < 1e-4
    assert rows["IXI012"]["race"] == "asian"
    r = rows["IXI013"]  # zeros are missing
    assert r["bmi"] is None and r["race"] is None and r["sex"] == "male"
    r = rows["IXI014"]  # duplicate rows that disagree on sex
    assert r["sex"] is None and r["race"] == "black" and r["age"] is None
    assert "duplicate IXI_ID row: 2" in caplog.text and "no T1 image: 1" in caplog.text
    assert np.asarray(rows["IXI002"]["image"]).shape == (20, 16)


def test_a_volume_symlinked_from_outside_the_root_is_refused(tmp_path):
    import pytest

    from benchmark.schema import SchemaError

    (tmp_path / "ixi").mkdir()
    root = make_ixi(tmp_path / "ixi")
    outside = tmp_path / "elsewhere.nii.gz"
    inside = root / "IXI-T1" / "IXI002-Guys-0828-T1.nii.gz"
    inside.rename(outside)
    inside.symlink_to(outside)  # a file under the root that is really outside it
    with pytest.raises(SchemaError, match="outside the root"):
        load(root=root, progress=False)
