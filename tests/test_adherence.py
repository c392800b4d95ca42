"""Condition adherence: hand-worked numbers, and planted cases on real phantom images."""

from __future__ import annotations

import random

import numpy as np
import pytest

from benchmark.oracle import draw_population
from benchmark.oracle.adherence import adherence_from_labels, condition_adherence

# Six generated images, two subgroups of sex (f: rows 0-1, m: rows 2-5).
REQUESTED = {
    "finding": ["a", "a", "b", "b", "b", "a"],
    "sex": ["female", "female", "male", "male", "male", "male"],
    "age_band": ["<75", None, "<75", ">=75", ">=75", "<75"],
}
PREDICTED = {
    "finding": ["a", "b", "b", "b", "a", "a"],  # matches: 1 0 1 1 0 1
    "phenotype": ["pa", "pb", "pb2", "pb", "pa", "pa"],
    "sex": ["female", "male", "male", "male", "male", "female"],  # 1 0 1 1 1 0
    "age_band": [">=75", "<75", "<75", ">=75", "<75", "<75"],  # 0 - 1 1 0 1
}
EXPECTED_PHENOTYPES = [{"pa"}, {"pa"}, {"pb"}, {"pb"}, {"pb"}, set()]


def test_hand_worked_finding_adherence():
    out = adherence_from_labels(REQUESTED, PREDICTED, group_by=["sex"])
    f = out["finding"]
    assert out["n"] == 6
    assert f["value"] == pytest.approx(4 / 6)
    assert f["by_group"]["sex"] == {"female": {"value": 0.5, "n": 2},
                                    "male": {"value": 0.75, "n": 4}}
    assert f["gap"]["sex"] == pytest.approx(0.25)
    assert f["worst"]["sex"] == pytest.approx(0.5)
    assert out["condition"] is None  # no expected phenotypes given


def test_hand_worked_condition_adherence():
    out = adherence_from_labels(REQUESTED, PREDICTED, group_by=["sex"],
                                expected_phenotypes=EXPECTED_PHENOTYPES)
    c = out["condition"]
    # row 5 asks for a cell the phantom never draws: left out (N' = 5).
    # finding and phenotype both right: row 0 (a, pa) yes; row 1 finding wrong; row 2 pb2 not
    # in {pb}; row 3 yes; row 4 finding wrong  -> 2 of 5
    assert c["n"] == 5 and c["n_unknown_cell"] == 1
    assert c["value"] == pytest.approx(2 / 5)
    assert c["by_group"]["sex"]["female"] == {"value": 0.5, "n": 2}
    assert c["by_group"]["sex"]["male"] == {"value": pytest.approx(1 / 3), "n": 3}


def test_hand_worked_attribute_adherence():
    out = adherence_from_labels(REQUESTED, PREDICTED, group_by=["sex"])
    sex = out["attributes"]["sex"]
    assert sex["value"] == pytest.approx(4 / 6)
    assert sex["by_group"]["sex"]["female"]["value"] == pytest.approx(0.5)
    assert sex["by_group"]["sex"]["male"]["value"] == pytest.approx(0.75)
    band = out["attributes"]["age_band"]  # row 1 requested no age band: left out
    assert band["n"] == 5 and band["value"] == pytest.approx(3 / 5)
    assert band["by_group"]["sex"]["female"] == {"value": 0.0, "n": 1}


def test_grouping_by_an_attribute_with_unknown_values_reports_them_outside_the_gap():
    out = adherence_from_labels(REQUESTED, PREDICTED, group_by=["age_band"])
    by = out["finding"]["by_group"]["age_band"]
    # <75: rows 0, 2, 5 -> 1 1 1; >=75: rows 3, 4 -> 1 0; row 1 has no band (finding wrong):
    # the "unknown" group, reported with its count but not in the gap or the worst group
    assert by == {"<75": {"value": 1.0, "n": 3}, ">=75": {"value": 0.5, "n": 2},
                  "unknown": {"value": 0.0, "n": 1, "in_summaries": False}}
    assert out["finding"]["gap"]["age_band"] == pytest.approx(0.5)
    assert out["finding"]["worst"]["age_band"] == pytest.approx(0.5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'sex' has 2 rows, expected 6"):
        adherence_from_labels(REQUESTED, {**PREDICTED, "sex": ["a", "b"]}, group_by=[])
    with pytest.raises(ValueError, match="race"):
        adherence_from_labels(REQUESTED, PREDICTED, group_by=["race"])
    with pytest.raises(ValueError, match="requested finding"):
        adherence_from_labels({**REQUESTED, "finding": [None] * 6}, PREDICTED, group_by=[])


# ------------------------------------------------------------------ planted cases (phantom)


@pytest.fixture(scope="module")
def oracle(smoke_skin_oracle):
    return smoke_skin_oracle


@pytest.fixture(scope="module")
def real_images(oracle):
    spec = oracle.spec
    params = draw_population(spec, 150, seed=0, stream="test-adherence")
    images = [spec.render(p, oracle.config.image_size) for p in params]
    truths = [spec.truth(p) for p in params]
    return images, truths


@pytest.mark.slow
def test_real_images_with_their_labels_adhere(oracle, real_images):
    images, truths = real_images
    requested = {"finding": [t["finding"] for t in truths],
                 "skin_tone_group": [t["skin_tone_group"] for t in truths]}
    out = condition_adherence(oracle, images, requested, group_by=["skin_tone_group"])
    # the smoke oracle reads about 0.65-0.75 of the findings at 32 px (chance: 0.2)
    assert out["finding"]["value"] >= 0.5
    assert out["condition"]["value"] >= 0.45
    assert out["attributes"]["skin_tone_group"]["value"] >= 0.9


@pytest.mark.slow
def test_shuffled_labels_adhere_at_chance(oracle, real_images):
    images, truths = real_images
    findings = [t["finding"] for t in truths]
    shuffled = findings[:]
    random.Random(0).shuffle(shuffled)
    out = condition_adherence(oracle, images, {"finding": shuffled}, group_by=[])
    # chance = sum_c p_c q_c: requested frequencies p (balanced: 0.2 each) times the oracle's
    # predicted frequencies q
    pred = oracle.predict(images)["finding"]
    p = {c: shuffled.count(c) / len(shuffled) for c in set(shuffled)}
    chance = sum(p[c] * pred.count(c) / len(pred) for c in p)
    assert chance == pytest.approx(0.2, abs=0.02)
    sd = np.sqrt(chance * (1 - chance) / len(findings))
    assert abs(out["finding"]["value"] - chance) < 4 * sd
