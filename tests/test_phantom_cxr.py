"""The chest X-ray phantom: studies per patient, calibration, visible findings, phenotypes.

The contract every phantom keeps (determinism, schema, splits, cache) is in
tests/test_phantom_contract.py."""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark import schema
from benchmark.data.phantoms import cxr


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(tmp_path))
    return tmp_path


# -- resolution and studies -----------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
def test_effusion_has_radiographic_contrast_at_any_resolution(size):
    p = cxr.reference_params(1, finding="pleural_effusion", seed=1)[0]
    img = cxr.render(p, size)
    assert img.shape == (size, size)
    assert 20 < img.mean() < 235 and img.std() > 20  # the contrast of a radiograph


def test_a_patient_has_several_consecutive_studies():
    params = cxr.generate_params(300, seed=3)
    studies: dict[str, list[str]] = {}
    for p in params:
        studies.setdefault(p.patient_id, []).append(p.sample_id)
    assert any(len(s) > 1 for s in studies.values())
    assert max(len(s) for s in studies.values()) <= cxr.MAX_IMAGES_PER_PATIENT
    for pid, sids in studies.items():
        assert sids == [f"{pid}-s{k}" for k in range(1, len(sids) + 1)]
    # a patient's studies are consecutive rows
    order = [p.patient_id for p in params]
    assert order == sorted(order) and len(studies) < len(params)
    assert all(p.sample_id == f"{p.patient_id}-s{p.study}" for p in params)


# -- calibration against an independent pandas computation ---------------------------------


@pytest.fixture(scope="module")
def chexpert() -> pd.DataFrame:
    return pd.read_csv(cxr.chexpert_csv_path())


def test_calibration_counts_match_independent_recount(chexpert):
    df = chexpert
    targets = ["Cardiomegaly", "Pleural Effusion", "Lung Opacity", "Edema"]
    pos = {c: (df[c].to_numpy() == 1.0) for c in targets}
    base = (
        (df["Frontal/Lateral"].to_numpy() == "Frontal")
        & np.isin(df["Sex"].to_numpy(), ["Male", "Female"])
        & (df["Age"].to_numpy() > 0)
    )
    female80 = base & (df["Sex"].to_numpy() == "Female") & (df["Age"].to_numpy() >= 80)
    effusion_only = pos["Pleural Effusion"] & ~(pos["Cardiomegaly"] | pos["Lung Opacity"]
                                                | pos["Edema"])
    n_positive = sum(v.astype(int) for v in pos.values())
    nofind = (df["No Finding"].to_numpy() == 1.0) & (n_positive == 0)
    male_young = (base & (df["Sex"].to_numpy() == "Male") & (df["Age"].to_numpy() >= 18)
                  & (df["Age"].to_numpy() < 40))

    joint = cxr.chexpert_joint_counts().set_index(["sex", "age_group", "finding"])["count"]
    assert joint[("female", "80+", "pleural_effusion")] == np.count_nonzero(
        female80 & effusion_only
    )
    assert joint[("male", "18-39", "no_finding")] == np.count_nonzero(male_young & nofind)
    assert joint.xs("0-17", level="age_group").sum() == 0  # CheXpert has no minors

    summary = cxr.calibration_summary()
    several = np.count_nonzero(base & (n_positive >= 2))
    unlabeled = np.count_nonzero(base & (n_positive == 0) & ~nofind)
    assert summary["rows"] == len(df) == 223_414
    assert summary["frontal_known_sex_age"] == np.count_nonzero(base)
    assert summary["excluded_several_targets"] == several
    assert summary["excluded_no_label"] == unlabeled
    kept = np.count_nonzero(base) - several - unlabeled
    assert joint.sum() == summary["calibration_rows"] == kept
    assert (summary["frontal"] - summary["excluded_unknown_sex"] - summary["excluded_missing_age"]
            == summary["frontal_known_sex_age"])
    # the imbalance is real: young women with cardiomegaly are rare
    assert joint[("female", "18-39", "cardiomegaly")] < 0.1 * joint[("male", "60-79",
                                                                       "lung_opacity")]


def test_images_per_patient_follow_chexpert(chexpert):
    df = chexpert
    keep = (df["Frontal/Lateral"] == "Frontal") & df["Sex"].isin(["Male", "Female"]) & (
        df["Age"] > 0)
    per_patient = df.loc[keep, "Path"].str.split("/").str[2].value_counts()
    capped = np.minimum(per_patient.to_numpy(), cxr.MAX_IMAGES_PER_PATIENT)
    expected = np.bincount(capped, minlength=6)[1:] / len(capped)
    params = cxr.sample_params(np.random.default_rng(0), 30_000)
    k = np.array(list(Counter(p.patient_id for p in params).values()))[:-1]  # last is cut
    observed = np.bincount(k, minlength=6)[1:] / len(k)
    np.testing.assert_allclose(observed, expected, atol=0.02)


def _finding_table(params) -> pd.DataFrame:
    frame = pd.DataFrame([(p.sex, p.age_group, p.finding) for p in params],
                         columns=["sex", "age_group", "finding"])
    return frame.value_counts().rename("n").reset_index()


def test_sampled_joint_follows_calibration():
    joint = cxr.joint_counts()  # CheXpert's counts plus the COVID-19 rows
    joint = joint[joint["count"] > 0].set_index(["sex", "age_group", "finding"])["count"]
    # independent images: an exact chi-square goodness-of-fit test on the 48 cells
    params = cxr.sample_params(np.random.default_rng(1), 8000, images_per_patient=1)
    got = _finding_table(params).set_index(["sex", "age_group", "finding"])["n"]
    got = got.reindex(joint.index, fill_value=0)
    assert got.sum() == 8000
    expected = joint / joint.sum() * 8000
    assert stats.chisquare(got.to_numpy(), expected.to_numpy()).pvalue > 1e-3
    # the default (CheXpert images per patient, persistent findings): conditional tolerance
    params = cxr.sample_params(np.random.default_rng(2), 20_000)
    got = _finding_table(params).set_index(["sex", "age_group", "finding"])["n"]
    got = got.reindex(joint.index, fill_value=0)
    cond_got = got / got.groupby(level=[0, 1]).transform("sum")
    cond_exp = joint / joint.groupby(level=[0, 1]).transform("sum")
    assert (cond_got - cond_exp).abs().max() < 0.06
    cell_got = got.groupby(level=[0, 1]).sum() / got.sum()
    cell_exp = joint.groupby(level=[0, 1]).sum() / joint.sum()
    assert (cell_got - cell_exp).abs().max() < 0.03


def test_conditional_sampling_and_reference(cache):
    joint = cxr.joint_counts()
    sub = joint[(joint.sex == "female") & (joint.age_group == "18-39")].set_index("finding")
    params = cxr.sample_params(np.random.default_rng(4), 4000, sex="female", age_group="18-39",
                               images_per_patient=1)
    assert {(p.sex, p.age_group) for p in params} == {("female", "18-39")}
    got = Counter(p.finding for p in params)
    observed = np.array([got[f] for f in cxr.CXR_FINDINGS])
    expected = sub.loc[list(cxr.CXR_FINDINGS), "count"].to_numpy() / sub["count"].sum() * 4000
    assert stats.chisquare(observed, expected).pvalue > 1e-3

    ds = cxr.reference(12, sex="female", age_group="18-39", finding="cardiomegaly",
                       image_size=32, seed=5)
    schema.validate_dataset(ds)
    assert set(ds["finding"]) == {"cardiomegaly"} and set(ds["sex"]) == {"female"}
    assert set(ds["age_group"]) == {"18-39"} and set(ds["split"]) == {"test"}
    assert len(set(ds["patient_id"])) == 12
    assert all(pid.startswith("cxr-ref-") for pid in ds["patient_id"])
    with pytest.raises(ValueError, match="under 18"):
        cxr.reference(3, age_group="0-17")


# -- anatomy and findings are visible -------------------------------------------------------


def _render(finding: str, n: int = 30, **kw) -> tuple[list, np.ndarray]:
    params = cxr.reference_params(n, finding=finding, seed=11, **kw)
    return params, np.stack([cxr.render(p, 64) for p in params]).astype(float)


def _region(images: np.ndarray, v0: float, v1: float, u0: float, u1: float) -> np.ndarray:
    """Mean intensity per image over a box in normalised coordinates (-1..1)."""
    n = images.shape[-1]

    def idx(a, b):
        return slice(int((a + 1) / 2 * n), int((b + 1) / 2 * n))

    return images[:, idx(v0, v1), idx(u0, u1)].mean(axis=(1, 2))


def test_findings_are_visible():
    p_nf, nf = _render("no_finding")
    p_pe, pe = _render("pleural_effusion")
    p_cm, cm = _render("cardiomegaly")
    _, ed = _render("edema")

    def lower_lateral(images):  # the brighter of the two costophrenic regions
        return np.maximum(_region(images, 0.25, 0.5, -0.65, -0.35),
                          _region(images, 0.25, 0.5, 0.35, 0.65))

    assert lower_lateral(pe).mean() > lower_lateral(nf).mean() + 25

    ctr_cm = np.array([p.heart_ctr for p in p_cm])
    ctr_nf = np.array([p.heart_ctr for p in p_nf])
    assert ctr_cm.min() > 0.5 >= ctr_nf.max()
    assert np.mean([p.heart_width for p in p_cm]) > np.mean([p.heart_width for p in p_nf]) + 0.15
    heart_band = (-0.6, 0.6)  # a band just above the diaphragm: heart bright, lungs dark
    heart_cm = _region(cm, 0.15, 0.3, *heart_band).mean()
    assert heart_cm > _region(nf, 0.15, 0.3, *heart_band).mean() + 8

    def perihilar(images):
        return (_region(images, -0.3, 0.1, -0.45, -0.2) + _region(images, -0.3, 0.1, 0.25, 0.5)) / 2

    assert perihilar(ed).mean() > perihilar(nf).mean() + 25

    p_lo, lo = _render("lung_opacity")
    diff = []
    for p, img in zip(p_lo, lo, strict=True):  # the opacity against the mirror-image spot
        i, j, jm = ((np.array([p.opacity_y, p.opacity_x, -p.opacity_x]) + 1) / 2 * 64).astype(int)
        diff.append(img[i - 3:i + 4, j - 3:j + 4].mean() - img[i - 3:i + 4, jm - 3:jm + 4].mean())
    assert np.mean(diff) > 20 and np.mean(np.array(diff) > 0) > 0.7


def test_sex_and_age_change_anatomy():
    rng = np.random.default_rng(0)
    params = cxr.sample_params(rng, 6000, images_per_patient=1)
    male = [p for p in params if p.sex == "male"]
    female = [p for p in params if p.sex == "female"]
    assert np.mean([p.thorax_half_width for p in male]) > np.mean(
        [p.thorax_half_width for p in female]) + 0.04
    assert all(p.breast_size == 0 for p in male) and min(p.breast_size for p in female) > 0
    age = np.array([p.age for p in params])
    bone = np.array([p.bone_density for p in params])
    knob = np.array([p.aortic_knob for p in params])
    assert stats.spearmanr(age, bone).statistic < -0.5
    assert stats.spearmanr(age, knob).statistic > 0.5
    # visibly: older patients' ribs and clavicles are fainter (same anatomy otherwise)
    young = cxr.reference_params(1, sex="male", age_group="18-39", finding="no_finding")[0]
    old = type(young)(**{**young.as_dict(), "bone_density": 0.45})
    clavicle_band = (slice(10, 16), slice(8, 24))
    assert cxr.render(young)[clavicle_band].mean() > cxr.render(old)[clavicle_band].mean() + 5


def test_subgroup_specific_phenotypes():
    old = cxr.reference_params(40, age_group="80+", finding="pleural_effusion", seed=2)
    young = cxr.reference_params(200, age_group="40-59", finding="pleural_effusion", seed=2)
    assert all(p.effusion_right > 0 and p.effusion_left > 0 for p in old)
    assert {p.phenotype for p in old} == {"pleural_effusion_80plus_bilateral"}
    assert np.mean([p.effusion_right > 0 and p.effusion_left > 0 for p in young]) < 0.5
    assert min(p.effusion_right + p.effusion_left for p in old) > np.mean(
        [p.effusion_right + p.effusion_left for p in young])
    f = cxr.reference_params(30, sex="female", finding="cardiomegaly", seed=2)
    m = cxr.reference_params(30, sex="male", finding="cardiomegaly", seed=2)
    assert {p.phenotype for p in f} == {"cardiomegaly_female_globular"}
    assert min(p.heart_right_fraction for p in f) > max(p.heart_right_fraction for p in m)


# -- errors and majority phenotype ----------------------------------------------------------


def test_missing_torchxrayvision_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install torchxrayvision") as err:
        cxr.chexpert_csv_path()
    assert "chexpert_train.csv.gz" in str(err.value)


def test_majority_phenotype_redraws_minority_findings():
    women = cxr.reference_params(12, sex="female", finding="cardiomegaly", seed=8)
    old = cxr.reference_params(40, age_group="80+", finding="pleural_effusion", seed=8)
    young = cxr.reference_params(5, age_group="40-59", finding="pleural_effusion", seed=8)
    for p in young + cxr.reference_params(5, sex="male", finding="cardiomegaly", seed=8):
        assert cxr.majority_phenotype(p) is p
    for p in women:
        q = cxr.majority_phenotype(p)
        assert q.phenotype == "typical" and (q.sex, q.age, q.heart_ctr) == (p.sex, p.age,
                                                                            p.heart_ctr)
        assert 0.3 <= q.heart_right_fraction <= 0.34 and q.heart_tilt_deg == 26.0
    moved = [cxr.majority_phenotype(p) for p in old]
    assert {q.phenotype for q in moved} == {"typical"}
    bilateral = [q.effusion_right > 0 and q.effusion_left > 0 for q in moved]
    assert all(p.effusion_right > 0 and p.effusion_left > 0 for p in old)
    assert 0.05 < np.mean(bilateral) < 0.5  # typical: 25 % bilateral
    assert all(0.13 <= q.effusion_meniscus <= 0.23 and q.effusion_density == 0.9 for q in moved)
    assert [cxr.majority_phenotype(p) for p in old] == moved  # deterministic


def test_covid_rows_follow_the_documented_assumptions():
    chexpert = cxr.chexpert_joint_counts()
    joint = cxr.joint_counts()
    assert set(chexpert["finding"]) == set(cxr.CHEXPERT_FINDINGS)  # CheXpert has no COVID-19
    pd.testing.assert_frame_equal(
        joint[joint["finding"] != "covid_19"].reset_index(drop=True), chexpert)
    covid = joint[joint["finding"] == "covid_19"].set_index(["sex", "age_group"])["count"]
    n_chexpert = chexpert["count"].sum()
    # 5 % of all images, 60 % of them men (rounded per cell)
    assert covid.sum() / (covid.sum() + n_chexpert) == pytest.approx(0.05, abs=2e-4)
    assert covid.xs("male").sum() / covid.sum() == pytest.approx(0.6, abs=1e-3)
    assert covid.xs("0-17", level="age_group").sum() == 0
    # within a sex, age groups follow CheXpert's lung-opacity images (hand recount)
    opacity = chexpert[(chexpert.finding == "lung_opacity") & (chexpert.sex == "female")]
    opacity = opacity.set_index("age_group")["count"]
    expected = 0.05 / 0.95 * n_chexpert * 0.4 * opacity / opacity.sum()
    assert np.abs(covid.xs("female") - expected.round()).max() <= 1
    assert cxr.calibration_summary()["covid_images"] == covid.sum()


def test_covid_is_bilateral_peripheral_lower_zone_ground_glass():
    p_nf, nf = _render("no_finding")
    p_cv, cv = _render("covid_19")
    _, lo = _render("lung_opacity")
    _, ed = _render("edema")
    assert all(p.covid_right > 0 and p.covid_left > 0 for p in p_cv)
    assert all(p.covid_severity == 0 for p in p_nf)

    def lower_lateral_min(images):  # the fainter of the two lower lateral lung zones
        return np.minimum(_region(images, 0.0, 0.4, -0.62, -0.38),
                          _region(images, 0.0, 0.4, 0.38, 0.62))

    def perihilar(images):
        return (_region(images, -0.3, 0.1, -0.45, -0.2) + _region(images, -0.3, 0.1, 0.25, 0.5)) / 2

    # both lower lateral zones are hazier than normal and than a focal (one-sided) opacity
    assert lower_lateral_min(cv).mean() > lower_lateral_min(nf).mean() + 15
    assert lower_lateral_min(cv).mean() > lower_lateral_min(lo).mean() + 15
    # peripheral, not perihilar: unlike edema's bat-wing haze
    assert perihilar(cv).mean() < perihilar(ed).mean() - 25
    assert (lower_lateral_min(cv) - perihilar(cv)).mean() > (
        lower_lateral_min(nf) - perihilar(nf)).mean() + 10
