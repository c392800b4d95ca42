"""The phantom tasks mirror the seed papers' settings and work on their phantoms' rows."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmark import schema
from benchmark.data import DATASETS
from benchmark.data.phantoms import brain, cardiac, cxr, skin
from benchmark.tasks import DEFAULT_TASK, TASKS

# task -> (phantom module, its findings, expected classes, expected sensitive attributes)
EXPECTED = {
    "phantom-cxr-finding": (cxr, cxr.CXR_FINDINGS, {"no_finding", "cardiomegaly",
                                                    "pleural_effusion", "lung_opacity", "edema"},
                            ("sex", "age_group")),
    "phantom-cxr-fairgen": (cxr, cxr.CXR_FINDINGS, {"covid_19", "edema", "lung_opacity",
                                                    "pleural_effusion", "no_finding"},
                            ("sex",)),
    "phantom-skin-disease": (skin, skin.SKIN_FINDINGS, set(skin.SKIN_FINDINGS),
                             ("skin_tone_group",)),
    "phantom-brain-dementia": (brain, brain.BRAIN_FINDINGS, {"no_finding", "dementia"},
                               ("age_band",)),
    "phantom-cardiac-hf": (cardiac, cardiac.CARDIAC_FINDINGS, {"no_finding", "heart_failure"},
                           ("sex", "bmi_class")),
}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(tmp_path))


def test_default_task_is_unchanged():
    assert DEFAULT_TASK == "phantom-cxr-finding"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_matches_the_seed_paper_setting(name):
    module, findings, classes, attributes = EXPECTED[name]
    task = TASKS.get(name)
    assert set(task.classes) == classes and len(task.classes) == len(classes)
    assert task.sensitive_attributes == attributes
    assert set(task.classes) <= set(findings)  # the phantom draws every class
    spec = DATASETS.get(task.dataset)
    assert spec.phantom and spec.loader == module.load
    assert "rovisional" not in task.description

    ds = spec.loader(root=None, image_size=16, n_images=120, seed=0)
    keys = task.cell_keys(ds)
    for group, cls in keys:
        for attr, value in zip(attributes, group, strict=True):
            if value is None:  # only skin has unknown values (Fitzpatrick17k's unknown type)
                assert name == "phantom-skin-disease"
            else:
                assert value in schema.ATTRIBUTES[attr]
        if cls is not None:
            assert cls in task.classes
    # the prompt of every observed cell formats with the cell's values
    group, cls = next(k for k in keys if k[1] is not None and None not in k[0])
    prompt = task.prompt(dict(zip(attributes, group, strict=True)), cls)
    assert cls.replace("_", " ") in prompt
    for value in group:
        assert value.replace("_", " ") in prompt


def test_grouping_columns_come_from_the_schema():
    ds = brain.generate(200, image_size=16, seed=1)
    assert ds["age_band"] == [schema.age_to_band(a) for a in ds["age"]]
    assert [p.age_band for p in brain.generate_params(200, seed=1)] == ds["age_band"]
    assert brain.AGE_BANDS == schema.AGE_BANDS
    ds = skin.generate(200, image_size=16, seed=1)
    assert ds["skin_tone_group"] == [schema.tone_to_group(t) for t in ds["skin_tone"]]
    assert Counter(ds["skin_tone_group"])["light"] > Counter(ds["skin_tone_group"])["dark"]
    ds = cardiac.generate(60, image_size=16, seed=1)
    assert ds["bmi_class"] == [schema.bmi_to_class(b) for b in ds["bmi"]]


def test_show_cardiac_grid_with_both_frames(tmp_path):
    from PIL import Image

    from benchmark.cli import main

    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main(["datasets", "--show", "phantom-cardiac", "--images", "12", "--out",
                 str(one)]) == 0
    assert main(["datasets", "--show", "phantom-cardiac", "--images", "12", "--per-cell", "2",
                 "--out", str(two)]) == 0
    # two images per cell (ED and ES) make a wider grid with the same rows
    w1, h1 = Image.open(one).size
    w2, h2 = Image.open(two).size
    assert w2 > 1.4 * w1 and h2 == h1
    assert main(["datasets", "--show", "phantom-cardiac", "--per-cell", "0", "--out",
                 str(tmp_path / "bad.png")]) == 2
