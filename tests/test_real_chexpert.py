"""CheXpert loader: fixture trees of both path prefixes, the demographics join, the uncertain
label policies, the shipped split file, clear errors, and the real train.csv."""

import gzip
import logging
import os
from collections import Counter

import pandas as pd
import pytest
from real_fixtures import make_chexpert, stub_image

from benchmark.data import DATASETS
from benchmark.data.real import DataLayoutError, load_split_file
from benchmark.data.real.chexpert import SPLIT_METHOD, chexpert_split_from_csv, load
from benchmark.schema import validate_dataset


def _by_id(ds):
    return {r["sample_id"]: r for r in ds.remove_columns(["image", "mask"])}


@pytest.mark.parametrize("prefix", ["CheXpert-v1.0-small", "CheXpert-v1.0"])
def test_fixture_rows_match_the_csv(tmp_path, prefix):
    make_chexpert(tmp_path, prefix=prefix)
    ds = DATASETS.get("chexpert").loader(root=tmp_path, image_size=64, n_images=0, seed=0,
                                         split_salt="x")
    validate_dataset(ds, source="chexpert")
    rows = _by_id(ds)
    # frontal views only by default: 7 train + 2 valid frontal rows
    assert len(ds) == 9
    r = rows["train/patient00001/study1/view1_frontal.jpg"]
    assert (r["patient_id"], r["sex"], r["age"], r["race"]) == ("patient00001", "female", 68.0,
                                                                 "white")
    assert r["finding"] == "no_finding" and r["labels"] == ["no_finding", "support_devices"]
    assert r["age_band"] == "<75" and r["age_group"] == "60-79"
    # policy zeros (default): the uncertain cardiomegaly is absent -> effusion is the finding
    r = rows["train/patient00002/study2/view1_frontal.jpg"]
    assert r["finding"] == "pleural_effusion" and r["labels"] == ["pleural_effusion"]
    assert r["race"] == "black" and r["age_band"] == ">=75"
    # two positive pathologies: no single finding
    r = rows["train/patient00002/study1/view1_frontal.jpg"]
    assert r["finding"] is None and r["labels"] == ["lung_opacity", "fracture"]
    assert rows["train/patient00003/study1/view1_frontal.jpg"]["race"] == "asian"
    assert rows["train/patient00004/study1/view1_frontal.jpg"]["race"] == "hispanic"
    r = rows["train/patient00005/study1/view1_frontal.jpg"]
    assert r["age"] is None and r["age_group"] is None and r["race"] is None  # Age 0, refused
    r = rows["train/patient00006/study1/view1_frontal.jpg"]
    assert r["sex"] is None and r["race"] is None  # Sex Unknown; not in the demographics file
    r = rows["valid/patient64541/study1/view1_frontal.jpg"]
    assert r["split"] == "val" and r["finding"] == "cardiomegaly"
    assert r["race"] == "native_hawaiian_pacific_islander"
    # train.csv patients follow the shipped split file
    split_file = load_split_file("chexpert")
    for r in rows.values():
        if r["split"] != "val":
            assert r["split"] == split_file.assignment[r["patient_id"]]
    img = ds[0]["image"]
    assert img.size == (40, 32)
    assert ds.cast_column("image", __import__("datasets").Image(decode=False))[0]["image"][
        "path"].startswith(str(tmp_path / prefix))


def test_uncertain_policies_and_views(tmp_path):
    make_chexpert(tmp_path)
    ones = _by_id(load(root=tmp_path, uncertain="ones", views=("frontal", "lateral")))
    assert len(ones) == 11
    r = ones["train/patient00002/study2/view1_frontal.jpg"]
    assert r["finding"] is None and r["labels"] == ["cardiomegaly", "pleural_effusion"]
    assert ones["train/patient00006/study1/view1_frontal.jpg"]["finding"] == "atelectasis"
    ignore = _by_id(load(root=tmp_path, uncertain="ignore"))
    r = ignore["train/patient00002/study2/view1_frontal.jpg"]
    assert r["finding"] is None and r["labels"] == ["pleural_effusion"]
    assert ignore["train/patient00003/study1/view1_frontal.jpg"]["finding"] == "edema"
    lateral = load(root=tmp_path, views=("lateral",))
    assert sorted(lateral["sample_id"]) == ["train/patient00002/study1/view2_lateral.jpg",
                                            "train/patient00004/study1/view2_lateral.jpg"]
    with pytest.raises(ValueError, match="uncertain='maybe'"):
        load(root=tmp_path, uncertain="maybe")
    with pytest.raises(ValueError, match="views="):
        load(root=tmp_path, views=("oblique",))


def test_root_may_be_the_dataset_folder_and_logs_counts(tmp_path, caplog):
    make_chexpert(tmp_path, demo=False)
    caplog.set_level(logging.INFO, logger="benchmark.data.real")
    ds = load(root=tmp_path / "CheXpert-v1.0-small")
    assert len(ds) == 9 and set(ds["race"]) == {None}
    text = caplog.text
    assert "race is unknown for every row" in text
    assert "kept 9 of 11 rows (dropped view not in ['frontal']: 2)" in text
    assert "differs from the shipped split file chexpert.json" in text
    assert "of its 64540 patients are not here" in text


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load(root=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train.csv not found under"):
        load(root=tmp_path)
    make_chexpert(tmp_path)
    csv = tmp_path / "CheXpert-v1.0-small" / "train.csv"
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    df.rename(columns={"Frontal/Lateral": "View"}).to_csv(csv, index=False)
    with pytest.raises(DataLayoutError) as err:
        load(root=tmp_path)
    msg = str(err.value)
    assert "missing Frontal/Lateral" in msg and "found Path, Sex, Age, View" in msg
    df.assign(Sex=["Male"] * (len(df) - 1) + ["X"]).to_csv(csv, index=False)
    with pytest.raises(DataLayoutError, match="row 10: Sex 'X'"):
        load(root=tmp_path)
    df.to_csv(csv, index=False)
    os.remove(tmp_path / "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg")
    with pytest.raises(FileNotFoundError, match="1 of 9 image files are missing, first: .*"
                                                "patient00003"):
        load(root=tmp_path)
    assert len(load(root=tmp_path, check="none")) == 9


def test_corrupt_image_is_named_by_verify(tmp_path):
    make_chexpert(tmp_path)
    bad = tmp_path / "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataLayoutError, match=f"cannot read image {bad}"):
        load(root=tmp_path, check="decode")
    from benchmark.data.real import verify_images

    ds = load(root=tmp_path)
    with pytest.raises(DataLayoutError, match="patient00004"):
        verify_images(ds, progress=False)


@pytest.mark.slow
def test_shipped_split_file_is_reproducible_from_the_real_train_csv():
    import torchxrayvision

    csv = os.path.join(os.path.dirname(torchxrayvision.__file__), "data",
                       "chexpert_train.csv.gz")
    split_file = load_split_file("chexpert")
    assert split_file.method == SPLIT_METHOD
    assert dict(split_file.assignment) == chexpert_split_from_csv(csv)
    counts = split_file.counts()
    assert counts["val"] == 0 and counts["train"] + counts["test"] == 64540
    assert 0.78 < counts["train"] / 64540 < 0.82


@pytest.mark.slow
def test_real_train_csv_counts_match(tmp_path):
    """The loader on the real 223,414-row train.csv (images not checked): Sex and view counts
    of the result equal the file's."""
    import torchxrayvision

    src = os.path.join(os.path.dirname(torchxrayvision.__file__), "data",
                       "chexpert_train.csv.gz")
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    (folder / "train.csv").write_bytes(gzip.open(src).read())
    stub_image(tmp_path / "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
    raw = pd.read_csv(folder / "train.csv", usecols=["Sex", "Frontal/Lateral", "Age"])
    ds = load(root=tmp_path, check="none", views=("frontal", "lateral"))
    assert len(ds) == len(raw) == 223414
    sex = Counter(ds["sex"])
    want = raw["Sex"].value_counts()
    assert sex == {"male": want["Male"], "female": want["Female"], None: want["Unknown"]}
    views = Counter(sid.rsplit("_", 1)[1] for sid in ds["sample_id"])
    want = raw["Frontal/Lateral"].value_counts()
    assert views == {"frontal.jpg": want["Frontal"], "lateral.jpg": want["Lateral"]}
    assert sum(a is None for a in ds["age"]) == int((raw["Age"] == 0).sum())
    assert len(set(ds["patient_id"])) == 64540
    assert ds[0]["image"].size == (40, 32)  # the one stubbed image decodes on access


def test_summary_cli_and_run_end_to_end_on_a_fixture(tmp_path, capsys):
    import json

    from real_fixtures import chexpert_many

    from benchmark.cli import main

    root = make_chexpert(tmp_path / "data", train=chexpert_many(30))
    assert main(["datasets", "--summary", "chexpert", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 32 and out["patients"] == 32
    assert out["split"]["val"] == 2 and out["split"]["train"] + out["split"]["test"] == 30
    assert out["finding"]["no_finding"] == 7 and out["finding"]["cardiomegaly"] == 7
    assert sum(out["attributes"]["sex"].values()) == 32
    assert out["attributes"]["race"]["unknown"] == 32 - 5  # 5 fixture patients mapped
    assert main(["datasets", "--summary", "chexpert", "--root", str(root), "--verify"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("chexpert: 32 samples, 32 patients") and "  finding " in text
    assert main(["datasets", "--summary", "chexpert", "--root", str(tmp_path / "no")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["run", "--method", "real-only", "--task", "chexpert-sex", "--root", str(root),
                 "--profile", "smoke", "--out", str(tmp_path / "runs"), "--quiet",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["task"] == "chexpert-sex" and record["counts"]["data"] == 32


def test_summary_writes_and_checks_split_files(tmp_path, capsys):
    import json

    from benchmark.cli import main

    root = make_chexpert(tmp_path / "data")
    out = tmp_path / "split.json"
    assert main(["datasets", "--summary", "chexpert", "--root", str(root), "--write-split",
                 str(out), "--json"]) == 0
    capsys.readouterr()
    written = load_split_file(out)
    assert written.dataset == "chexpert" and len(written.assignment) == 8
    assert written.assignment["patient64541"] == "val"
    assert main(["datasets", "--summary", "chexpert", "--root", str(root), "--check-split",
                 str(out), "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["split_check"]
    assert check == {"file": str(out), "missing_here": 0, "extra_here": 0, "different_split": 0}
    doc = json.loads(out.read_text())
    doc["patients"]["train"].append("patient99999")
    out.write_text(json.dumps(doc))
    assert main(["datasets", "--summary", "chexpert", "--root", str(root), "--check-split",
                 str(out)]) == 2
    assert "checksum" in capsys.readouterr().err
