"""COVID-19 image data collection loader and the combined CheXpert + COVID-19 dataset."""

import logging

from real_fixtures import make_chexpert, make_covid

from benchmark.data import DATASETS
from benchmark.data.real.covid19 import load, map_finding
from benchmark.schema import validate_dataset


def test_covid_rows(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="benchmark.data.real")
    make_covid(tmp_path / "covid-chestxray-dataset")
    ds = load(root=tmp_path)  # the parent of the clone works too
    validate_dataset(ds)
    rows = {r["sample_id"]: r for r in ds.remove_columns(["image", "mask"])}
    assert sorted(rows) == ["auntminnie-a.jpg", "nf.jpeg", "s.png"]
    assert rows["auntminnie-a.jpg"]["finding"] == "covid_19"
    assert rows["auntminnie-a.jpg"]["labels"] == ["pneumonia", "covid_19"]
    assert (rows["s.png"]["finding"], rows["s.png"]["sex"], rows["s.png"]["age"]) == (
        "pneumonia", "female", None)
    assert rows["nf.jpeg"]["sex"] is None and rows["nf.jpeg"]["age"] == 50.0
    text = caplog.text
    assert "modality not X-ray: 1" in text and "finding 'Tuberculosis' not mapped: 1" in text
    assert "view not in" in text


def test_map_finding():
    assert map_finding("Pneumonia/Viral/SARS") == ("pneumonia", ["pneumonia"])
    assert map_finding("Unknown") == (None, [])


def test_combined_chexpert_covid(tmp_path):
    make_chexpert(tmp_path)  # root/CheXpert-v1.0-small + root/CHEXPERT DEMO.xlsx
    make_covid(tmp_path / "covid-chestxray-dataset")
    ds = DATASETS.get("chexpert-covid19").loader(root=tmp_path, image_size=64, n_images=0,
                                                 seed=0, split_salt="x")
    validate_dataset(ds)
    assert len(ds) == 9 + 3
    assert set(ds["source"]) == {"chexpert", "covid19"}
    ids = ds["sample_id"]
    assert "covid19:nf.jpeg" in ids
    assert "chexpert:train/patient00001/study1/view1_frontal.jpg" in ids
    assert "chexpert:patient00001" in ds["patient_id"]
    assert "white" in ds["race"]  # the DEMO file beside the CheXpert folder is found
    assert ds[len(ds) - 1]["image"].size == (40, 32)
