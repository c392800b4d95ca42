"""The contract every registered phantom keeps (one parametrised test per clause).

Determinism, resolution, the standard schema, patient-level splits, the registered loader,
reference populations and their constraints, the disk cache and its keys, and
``majority_phenotype``. A new phantom registered in ``PHANTOMS`` is covered without editing
this file; what is specific to one phantom (its calibration, its phenotypes) is tested in its
own ``tests/test_phantom_<name>.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark import schema
from benchmark.data import DATASETS, assign_splits
from benchmark.data.phantoms import PHANTOMS, Phantom, _common

REPO = Path(__file__).resolve().parents[1]
NAMES = PHANTOMS.names()
BASE = ("sex", "age", "race", "skin_tone", "bmi")


@pytest.fixture(params=NAMES)
def phantom(request) -> Phantom:
    return PHANTOMS.get(request.param)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(tmp_path))
    _common.MEMORY.clear()
    return tmp_path


def _pixels(ds, column: str = "image") -> np.ndarray:
    return np.stack([np.asarray(im) for im in ds[column]])


def _drawn_cell(phantom: Phantom) -> dict[str, object]:
    """A cell the phantom can draw: every constraint's value read from one drawn image."""
    for p in phantom.reference_params(20, seed=3):
        cell = {name: getattr(p, name) for name in phantom.constraints}
        if all(v is not None for v in cell.values()):
            return cell
    raise AssertionError(f"{phantom.name}: no fully known draw in 20")  # pragma: no cover


def test_every_dataset_marked_phantom_is_a_registered_phantom():
    assert NAMES == sorted(n for n, spec in DATASETS.items() if spec.phantom)
    assert len(NAMES) >= 4


def test_module_surface_is_the_phantom(phantom):
    """The module-level names of the data cards are the phantom's own methods."""
    module = sys.modules[type(phantom).__module__]
    assert module.PHANTOM is phantom
    assert module.SOURCE == phantom.name and module.PHANTOM_VERSION == phantom.version
    for fn in ("generate", "generate_params", "reference", "reference_params", "cache_key",
               "load"):
        assert getattr(module, fn) == getattr(phantom, fn), fn
    for fn in ("sample_params", "render", "majority_phenotype"):
        assert getattr(module, fn) is getattr(phantom, fn), fn
    assert re.fullmatch(r"[a-z]+", phantom.key) and phantom.channels in (1, 3)
    assert phantom.findings and set(phantom.constraints) >= {"finding"}
    assert tuple(phantom.constraints["finding"]) == tuple(phantom.findings)


def test_same_seed_same_pixels_different_seed_different(phantom, cache, monkeypatch):
    a = phantom.generate(12, image_size=32, seed=1)
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(cache / "other"))  # force a fresh render
    _common.MEMORY.clear()
    b = phantom.generate(12, image_size=32, seed=1)
    c = phantom.generate(12, image_size=32, seed=2)
    assert np.array_equal(_pixels(a), _pixels(b))
    assert not np.array_equal(_pixels(a), _pixels(c))
    if phantom.render_mask is not None:
        assert np.array_equal(_pixels(a, "mask"), _pixels(b, "mask"))
    p = phantom.generate_params(5, seed=7)
    assert p == phantom.generate_params(5, seed=7)
    assert p != phantom.generate_params(5, seed=8)
    assert np.array_equal(phantom.render(p[0]), phantom.render(p[0]))
    # the parameters do not depend on the rendering size: row i is params[i] at any size
    assert np.array_equal(_pixels(a)[3], phantom.render(phantom.generate_params(12, seed=1)[3],
                                                        32))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_any_resolution(phantom, size):
    p = phantom.reference_params(1, seed=1)[0]
    img = phantom.render(p, size)
    shape = (size, size) if phantom.channels == 1 else (size, size, 3)
    assert img.shape == shape and img.dtype == np.uint8
    assert 20 < img.mean() < 235 and img.std() > 8  # an image, not a flat field
    if phantom.render_mask is not None:
        mask = phantom.render_mask(p, size)
        assert mask.shape == (size, size) and mask.dtype == np.uint8
    with pytest.raises(ValueError, match="image_size"):
        phantom.render(p, 4)


def test_dataset_follows_schema(phantom, cache):
    ds = phantom.generate(40, image_size=32, seed=0)
    schema.validate_dataset(ds, source=phantom.name)
    assert ds.features == schema.FEATURES
    assert tuple(ds.column_names) == schema.COLUMNS
    assert len(ds) == 40
    row = ds[0]
    assert row["image"].mode == ("L" if phantom.channels == 1 else "RGB")
    assert row["image"].size == (32, 32)
    assert set(ds["source"]) == {phantom.name}
    assert [[f] for f in ds["finding"]] == ds["labels"]
    assert set(ds["finding"]) <= set(phantom.findings)
    params = phantom.generate_params(40, seed=0)
    assert [p.sample_id for p in params] == ds["sample_id"]
    assert [p.patient_id for p in params] == ds["patient_id"]
    assert [p.finding for p in params] == ds["finding"]
    for sid, pid in zip(ds["sample_id"], ds["patient_id"], strict=True):
        assert re.fullmatch(rf"{phantom.key}-p\d{{6}}", pid) and sid.startswith(pid + "-")
    assert len(set(ds["sample_id"])) == len(ds)
    # every attribute column holds what the parameters record, and None where the phantom
    # records nothing
    recorded = set(phantom.attributes(params[0]))
    assert recorded <= set(BASE)
    for column in schema.COLUMNS:
        if column in BASE and column not in recorded:
            assert all(v is None for v in ds[column]), column
        elif hasattr(params[0], column) and column not in ("finding", "sample_id",
                                                             "patient_id"):
            got, want = ds[column], [getattr(p, column) for p in params]
            assert got == (pytest.approx(want) if column in ("age", "bmi") else want), column
    if phantom.render_mask is not None:
        assert row["mask"].mode == "L" and row["mask"].size == (32, 32)
        assert np.array_equal(_pixels(ds, "mask")[5], phantom.render_mask(params[5], 32))
    else:
        assert all(m is None for m in ds["mask"])


def test_patient_level_split(phantom, cache):
    ds = phantom.generate(240, image_size=16, seed=3, split_salt="abc")
    by_patient: dict[str, set[str]] = {}
    for pid, split in zip(ds["patient_id"], ds["split"], strict=True):
        by_patient.setdefault(pid, set()).add(split)
    assert all(len(s) == 1 for s in by_patient.values())
    assert ds["split"] == assign_splits(list(ds["patient_id"]), salt="abc")
    assert set(ds["split"]) == {"train", "val", "test"}
    other = phantom.generate(240, image_size=16, seed=3, split_salt="xyz")
    assert other["sample_id"] == ds["sample_id"] and other["split"] != ds["split"]


def test_registered_loader(phantom, cache):
    spec = DATASETS.get(phantom.name)
    assert spec.phantom and spec.card == phantom.card and spec.loader == phantom.load
    assert spec.description == phantom.description
    assert (REPO / "data_cards" / spec.card).is_file()
    ds = spec.loader(root="/no/such/folder", image_size=16, n_images=12, seed=0)
    assert len(ds) == 12
    assert ds["sample_id"] == phantom.generate(12, image_size=16, seed=0)["sample_id"]


def test_reference_population(phantom, cache):
    cell = _drawn_cell(phantom)
    ref = phantom.reference(8, image_size=16, seed=5, **cell)
    schema.validate_dataset(ref, source=phantom.name)
    params = phantom.reference_params(8, seed=5, **cell)
    assert ref["sample_id"] == [p.sample_id for p in params]
    for name, value in cell.items():
        assert all(getattr(p, name) == value for p in params), name
        if name in schema.COLUMNS:
            assert set(ref[name]) == {value}, name
    assert set(ref["split"]) == {"test"}
    assert all(pid.startswith(f"{phantom.key}-ref-") for pid in ref["patient_id"])
    gen = phantom.generate(60, image_size=16, seed=5)
    assert not set(ref["patient_id"]) & set(gen["patient_id"])
    # unconstrained: every constraint left free
    assert len(phantom.reference(6, image_size=16, seed=1)) == 6


def test_reference_rejects_bad_constraints(phantom):
    for name in phantom.constraints:
        with pytest.raises(ValueError, match=f"unknown {name} 'no-such-value'"):
            phantom.reference(3, **{name: "no-such-value"})
        with pytest.raises(ValueError, match=f"unknown {name}"):
            phantom.reference_params(3, **{name: "no-such-value"})
    with pytest.raises(ValueError, match="no constraint 'colour'; expected one of"):
        phantom.reference(3, colour="red")
    with pytest.raises(ValueError, match="n must be >= 1"):
        phantom.reference(0)
    with pytest.raises(ValueError, match="n_images must be >= 1"):
        phantom.generate(0)


def test_disk_cache_is_complete_and_keyed(phantom, cache, monkeypatch):
    ds = phantom.generate(8, image_size=16, seed=9)
    entries = list((cache / "phantoms").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")
    assert (entries[0] / "dataset_info.json").is_file()
    key = phantom.cache_key("generate", n_images=8, image_size=16, seed=9,
                            split_salt="fairsynth")
    assert entries[0].name == key
    _common.MEMORY.clear()
    again = phantom.generate(8, image_size=16, seed=9)  # from disk
    assert np.array_equal(_pixels(ds), _pixels(again))
    if phantom.render_mask is not None:
        assert np.array_equal(_pixels(ds, "mask"), _pixels(again, "mask"))
    # every input is in the key: arguments, the version, the calibration
    for changed in ({"n_images": 9}, {"image_size": 17}, {"seed": 10}, {"split_salt": "x"}):
        config = {"n_images": 8, "image_size": 16, "seed": 9, "split_salt": "fairsynth",
                  **changed}
        assert phantom.cache_key("generate", **config) != key, changed
    assert phantom.cache_key("reference", n_images=8, image_size=16, seed=9,
                             split_salt="fairsynth") != key
    calibration = phantom.calibration()
    with monkeypatch.context() as m:
        m.setattr(type(phantom), "calibration", lambda self: {**calibration, "x": 1})
        assert phantom.cache_key("generate", n_images=8, image_size=16, seed=9,
                                 split_salt="fairsynth") != key
    monkeypatch.setattr(type(phantom), "version", "test-bump")
    assert phantom.cache_key("generate", n_images=8, image_size=16, seed=9,
                             split_salt="fairsynth") != key
    phantom.generate(8, image_size=16, seed=9)
    assert len(list((cache / "phantoms").iterdir())) == 2


def test_reference_cache_is_keyed_by_its_constraints(phantom, cache):
    cell = _drawn_cell(phantom)
    phantom.reference(4, image_size=16, seed=2, **cell)
    phantom.reference(4, image_size=16, seed=2)
    phantom.reference(4, image_size=16, seed=2, finding=cell["finding"])
    names = {e.name for e in (cache / "phantoms").iterdir()}
    full = {name: None for name in phantom.constraints}
    assert names == {
        phantom.cache_key("reference", n=4, image_size=16, seed=2, **{**full, **cell}),
        phantom.cache_key("reference", n=4, image_size=16, seed=2, **full),
        phantom.cache_key("reference", n=4, image_size=16, seed=2,
                          **{**full, "finding": cell["finding"]}),
    }


def test_a_failed_build_leaves_no_cache_entry(phantom, cache, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("killed while rendering")

    monkeypatch.setattr(type(phantom), "to_dataset", fail)
    with pytest.raises(RuntimeError, match="killed"):
        phantom.generate(4, image_size=16, seed=0)
    root = cache / "phantoms"
    assert not root.exists() or not list(root.iterdir())


def test_majority_phenotype_redraws_only_the_minority_phenotype(phantom):
    params = phantom.reference_params(200, seed=4)
    moved = [phantom.majority_phenotype(p) for p in params]
    assert moved == [phantom.majority_phenotype(p) for p in params]  # deterministic
    changed = [(p, q) for p, q in zip(params, moved, strict=True) if q != p]
    assert changed, f"{phantom.name}: no draw of 200 has a minority phenotype"
    assert len(changed) < len(params)  # the majority's images keep their appearance
    for p, q in zip(params, moved, strict=True):
        assert (q.sample_id, q.patient_id, q.finding) == (p.sample_id, p.patient_id, p.finding)
        assert phantom.attributes(q) == phantom.attributes(p)  # same patient, same subgroup
        assert isinstance(q.phenotype, str)
        if q == p:
            assert q is p
    for p, q in changed[:3]:
        assert q.phenotype != p.phenotype
        assert not np.array_equal(phantom.render(p, 32), phantom.render(q, 32))
