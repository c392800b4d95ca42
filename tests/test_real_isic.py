"""ISIC 2019 / 2020 loaders on fixture trees with the challenge file names and headers."""

import pytest
from real_fixtures import make_isic2019, make_isic2020

from benchmark.data.real import DataLayoutError
from benchmark.data.real.isic import load_isic2019, load_isic2020
from benchmark.schema import validate_dataset


def _rows(ds):
    return {r["sample_id"]: r for r in ds.remove_columns(["image", "mask"])}


def test_isic2019(tmp_path):
    make_isic2019(tmp_path)
    ds = load_isic2019(root=tmp_path)
    validate_dataset(ds)
    rows = _rows(ds)
    assert rows["ISIC_0000000"]["finding"] == "melanoma"
    assert (rows["ISIC_0000000"]["sex"], rows["ISIC_0000000"]["age"]) == ("female", 55.0)
    assert rows["ISIC_0000001"]["patient_id"] == "ISIC_0000001"  # no lesion_id
    assert rows["ISIC_0000001"]["sex"] is None and rows["ISIC_0000001"]["age"] is None
    assert rows["ISIC_0000002_downsampled"]["finding"] == "basal_cell_carcinoma"
    # two images of one lesion share a split
    assert rows["ISIC_0000000"]["split"] == rows["ISIC_0000002_downsampled"]["split"]
    assert rows["ISIC_0000003"]["finding"] is None  # UNK
    gt = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text(gt.read_text().replace("ISIC_0000001,0.0,1.0", "ISIC_0000001,1.0,1.0"))
    with pytest.raises(DataLayoutError, match="row 3: 2 classes set"):
        load_isic2019(root=tmp_path)


def test_isic2020(tmp_path):
    make_isic2020(tmp_path)
    rows = _rows(load_isic2020(root=tmp_path))
    assert rows["ISIC_2637011"]["finding"] is None and rows["ISIC_2637011"]["sex"] == "male"
    assert rows["ISIC_0015719"]["finding"] == "melanoma"
    assert rows["ISIC_0015719"]["patient_id"] == "IP_3075186"
    assert rows["ISIC_0052212"]["finding"] == "benign_keratosis"
    assert rows["ISIC_0052212"]["age"] is None
