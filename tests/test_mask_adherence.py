"""Mask adherence (benchmark.metrics.mask_adherence): Dice against hand counts, the fitted
segmenter on real phantom images with their own vs shifted masks, both label encodings, and
the evaluation's ``generation.mask_adherence`` present only for mask-controlled images."""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np
import pytest
from PIL import Image
from stand_ins import MeanStdMax

from benchmark.data.phantoms.cardiac import PHANTOM, render, render_mask
from benchmark.metrics.mask_adherence import (
    BACKGROUND,
    BLOOD,
    MYOCARDIUM,
    MaskSegmenter,
    fit_mask_segmenter,
    mask_adherence,
    structure_dice,
)

PHANTOM_LABELS = {"lv_blood_pool": 1, "lv_myocardium": 2, "rv_blood_pool": 3}


def test_structure_dice_against_hand_counts():
    pred = np.array([[0, 1, 1, 2],
                     [2, 2, 0, 3]])
    target = np.array([[0, 1, 0, 2],
                       [2, 0, 0, 0]])
    d = structure_dice([pred], [target], PHANTOM_LABELS)
    # LV: pred 2 px, target 1 px, overlap 1 -> 2/3; myocardium: pred 3, target 2, overlap 2
    # -> 4/5; RV: pred 1, target 0 -> 0
    assert d[0] == pytest.approx([2 / 3, 4 / 5, 0.0])
    # a structure in neither image is undefined (NaN), not 0 or 1
    both_empty = structure_dice([np.zeros((2, 2), int)], [np.zeros((2, 2), int)],
                                PHANTOM_LABELS)
    assert np.isnan(both_empty).all()


def _hand_heart(rv_rows: range | None) -> np.ndarray:
    """13 x 13 labels: an LV cavity diamond (|dx| + |dy| <= 1 around (6, 6), 5 px), a
    myocardial diamond ring (|dx| + |dy| in {2, 3}, 20 px) and an RV block at columns 1-2 of
    ``rv_rows``."""
    yy, xx = np.mgrid[:13, :13]
    d = np.abs(yy - 6) + np.abs(xx - 6)
    t = np.zeros((13, 13), np.uint8)
    t[d <= 1] = 1
    t[(d >= 2) & (d <= 3)] = 2
    if rv_rows is not None:
        t[rv_rows.start:rv_rows.stop, 1:3] = 3
    return t


def _hand_segmenter() -> MaskSegmenter:
    """Grey 0 -> background, 60 -> myocardium, 220 -> blood pool (bins 0, 7 and 27 of 32)."""
    counts = np.ones((3, 32))
    counts[BACKGROUND, 0] = counts[MYOCARDIUM, 7] = counts[BLOOD, 27] = 10
    return MaskSegmenter(counts=counts, labels=PHANTOM_LABELS, margin=1, n_fit=0)


def test_mask_adherence_against_a_hand_computation():
    seg = _hand_segmenter()
    grey = np.array([0, 220, 60, 220], np.uint8)  # label -> intensity
    truth1, truth2 = _hand_heart(range(5, 8)), _hand_heart(None)
    img1, img2 = grey[truth1], grey[truth2]
    # control 1: one LV arm pixel labelled myocardium, the RV one row lower
    ctrl1 = _hand_heart(None)
    ctrl1[5, 6] = 2
    ctrl1[6:9, 1:3] = 3
    assert (seg.segment(img1, ctrl1) == truth1).all()  # the premise: the image is read right
    assert (seg.segment(img2, truth2) == truth2).all()
    out = mask_adherence([img1, img2], [ctrl1, truth2], seg,
                         groups={"sex": ["female", "male"]})
    # image 1: LV 2*4/(5+4), myocardium 2*20/(20+21), RV 2*4/(6+6); image 2: LV 1, myo 1,
    # no RV in either (left out of its mean)
    lv, myo, rv = 8 / 9, 40 / 41, 8 / 12
    s1 = (lv + myo + rv) / 3
    assert out["value"] == pytest.approx((s1 + 1.0) / 2)
    assert out["n"] == 2 and out["n_without_structures"] == 0
    assert out["by_structure"]["lv_blood_pool"] == {"value": pytest.approx((lv + 1) / 2), "n": 2}
    assert out["by_structure"]["lv_myocardium"]["value"] == pytest.approx((myo + 1) / 2)
    assert out["by_structure"]["rv_blood_pool"] == {"value": pytest.approx(rv), "n": 1}
    assert out["by_group"]["sex"]["female"] == {"value": pytest.approx(s1), "n": 1}
    assert out["by_group"]["sex"]["male"] == {"value": pytest.approx(1.0), "n": 1}
    assert out["gap"]["sex"] == pytest.approx(1 - s1) and out["worst"]["sex"] == pytest.approx(s1)


def test_mismatched_shapes_are_one_clear_error():
    seg = _hand_segmenter()
    with pytest.raises(ValueError, match=r"image 0: image \(13, 13\) and mask \(12, 12\)"):
        mask_adherence([np.zeros((13, 13), np.uint8)], [np.zeros((12, 12), np.uint8)], seg)
    with pytest.raises(ValueError, match="expected three structures"):
        fit_mask_segmenter([np.zeros((4, 4), np.uint8)], [np.ones((4, 4), np.uint8)])


@pytest.fixture(scope="module")
def phantom_rows():
    params = PHANTOM.generate_params(80, seed=0)
    return ([render(p, 64) for p in params], [render_mask(p, 64) for p in params],
            [p.sex for p in params])


def test_a_phantom_image_follows_its_own_mask_not_a_shifted_one(phantom_rows):
    imgs, masks, sex = phantom_rows
    seg = fit_mask_segmenter(imgs[:60], masks[:60])
    assert dict(seg.labels) == PHANTOM_LABELS and seg.margin == 3
    own = mask_adherence(imgs[60:], masks[60:], seg, groups={"sex": sex[60:]})
    shifted = mask_adherence(imgs[60:], [np.roll(m, 8, axis=1) for m in masks[60:]], seg)
    # measured 0.83 (own) vs 0.16 (8 px, an eighth of the image, to the right)
    assert own["value"] >= 0.7 and shifted["value"] <= 0.3
    assert own["value"] - shifted["value"] >= 0.4
    for s in PHANTOM_LABELS:
        assert own["by_structure"][s]["value"] >= 0.7 > shifted["by_structure"][s]["value"]
    assert sum(g["n"] for g in own["by_group"]["sex"].values()) == 20


def test_the_acdc_label_encoding_is_read_from_the_masks(phantom_rows):
    imgs, masks, _ = phantom_rows
    swap = np.array([0, 3, 2, 1], np.uint8)  # ACDC: 1 RV cavity, 2 myocardium, 3 LV cavity
    acdc = [swap[m] for m in masks]
    seg = fit_mask_segmenter(imgs[:60], acdc[:60])
    assert dict(seg.labels) == {"lv_blood_pool": 3, "lv_myocardium": 2, "rv_blood_pool": 1}
    a = mask_adherence(imgs[60:], acdc[60:], seg)
    b = mask_adherence(imgs[60:], masks[60:], fit_mask_segmenter(imgs[:60], masks[:60]))
    assert a["value"] == pytest.approx(b["value"])


def _cardiac_rows(imgs, masks, sex, split_name, control):
    from conftest import make_rows

    from benchmark.schema import FEATURES

    n = len(imgs)
    rows = make_rows(n, 0, size=64)
    rows["image"] = [Image.fromarray(x) for x in imgs]
    rows["mask"] = [Image.fromarray(m) for m in masks]
    rows["sex"] = list(sex)
    rows["bmi_class"] = ["normal" if i % 2 else "obese" for i in range(n)]
    rows["finding"] = ["no_finding" if i % 3 else "heart_failure" for i in range(n)]
    rows["split"] = [split_name] * n
    if control:
        rows["control"] = [Image.fromarray(np.stack([m, m, m], -1)) for m in masks]
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def test_the_evaluation_reports_mask_adherence_only_for_mask_controlled_images(phantom_rows):
    from benchmark.evaluation import generation_metrics
    from benchmark.metrics.mask_adherence import KEY_MASK_ADHERENCE
    from benchmark.profiles import PROFILES
    from benchmark.tasks import TASKS

    imgs, masks, sex = phantom_rows
    task = TASKS.get("phantom-cardiac-hf")
    prof = dataclasses.replace(PROFILES.get("smoke"), eval_real=60, eval_synthetic=20,
                               bootstrap_resamples=2)
    train = _cardiac_rows(imgs[:60], masks[:60], sex[:60], "train", control=False)
    test = _cardiac_rows(imgs[60:], masks[60:], sex[60:], "test", control=False)
    # "synthetic" images: the test images with their own masks as controls
    syn = _cardiac_rows(imgs[60:], masks[60:], sex[60:], "train", control=True)
    ex = {"inception": MeanStdMax()}
    out = generation_metrics(test, syn, task, prof, extractors=ex, train=train, progress=False)
    m = out[KEY_MASK_ADHERENCE]
    direct = mask_adherence(imgs[60:], masks[60:], fit_mask_segmenter(imgs[:60], masks[:60]))
    assert m["value"] == pytest.approx(direct["value"]) and m["n"] == 20
    assert m["real"]["value"] == pytest.approx(direct["value"])  # the same images
    assert set(m["by_group"]) == {"sex", "bmi_class"}
    no_control = _cardiac_rows(imgs[60:], masks[60:], sex[60:], "train", control=False)
    assert KEY_MASK_ADHERENCE not in generation_metrics(test, no_control, task, prof,
                                                        extractors=ex, train=train,
                                                        progress=False)
    # controls on a task without training masks (e.g. sketches): no block
    assert KEY_MASK_ADHERENCE not in generation_metrics(
        test, syn, task, prof, extractors=ex, train=train.remove_columns("mask"),
        progress=False)
