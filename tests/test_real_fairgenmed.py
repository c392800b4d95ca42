"""FairGenMed loader: data_summary.csv + npz files with race as int or string."""

import numpy as np
from real_fixtures import make_fairgenmed

from benchmark.data.real.fairgenmed import load
from benchmark.schema import validate_dataset


def test_fairgenmed(tmp_path):
    make_fairgenmed(tmp_path)
    ds = load(root=tmp_path, progress=False)
    validate_dataset(ds)
    rows = {r["sample_id"]: r for r in ds.remove_columns(["mask"])}
    r = rows["data_00001"]
    assert (r["race"], r["sex"], r["finding"], r["split"], r["age"]) == (
        "asian", "male", "glaucoma", "train", np.float32(61.2))
    assert rows["data_00002"]["race"] == "black" and rows["data_00002"]["sex"] == "female"
    assert rows["data_00003"]["split"] == "val" and rows["data_00003"]["age"] is None
    assert rows["data_00004"]["race"] == "black" and rows["data_00004"]["split"] == "test"
    assert np.asarray(r["image"]).shape == (12, 16)
