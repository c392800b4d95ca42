"""Tests of the cardiac MRI phantom (benchmark.data.phantoms.cardiac): frames, masks,
calibration, heart-failure phenotypes.

The contract every phantom keeps (determinism, schema, splits, cache) is in
tests/test_phantom_contract.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage, stats

from benchmark import schema
from benchmark.data.phantoms import cardiac


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(tmp_path))
    return tmp_path


def _pixels(ds, column: str = "image") -> np.ndarray:
    return np.stack([np.asarray(im) for im in ds[column]])


def _pairs(params):
    """(ED, ES) parameter pairs of each patient."""
    by: dict[str, dict[str, cardiac.CardiacParams]] = {}
    for p in params:
        by.setdefault(p.patient_id, {})[p.frame] = p
    return [(d["ed"], d["es"]) for d in by.values() if len(d) == 2]


def _areas(p, size=128):
    """Pixel areas of the LV blood pool, LV myocardium and RV blood pool, from the mask."""
    m = cardiac.render_mask(p, size)
    return np.array([(m == k).sum() for k in (1, 2, 3)], float)


def _measured_ef(pairs, size=128) -> np.ndarray:
    """EF from the masks' LV blood-pool areas at ED and ES (the model's in-plane law)."""
    return np.array([cardiac.ejection_fraction_from_areas(_areas(ed, size)[0],
                                                          _areas(es, size)[0])
                     for ed, es in pairs])


def _wall_cm(p, size=128) -> float:
    """Mean LV wall thickness from the mask: difference of the equivalent-circle radii."""
    lv, myo, _ = _areas(p, size)
    px_cm = p.fov / size
    return float((np.sqrt((lv + myo) / np.pi) - np.sqrt(lv / np.pi)) * px_cm)


# -- resolution, frames, masks ---------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
def test_same_anatomy_at_any_resolution(size):
    p = cardiac.reference_params(1, finding="heart_failure", sex="male", frame="ed", seed=1)[0]
    img = cardiac.render(p, size)
    mask = cardiac.render_mask(p, size)
    assert set(np.unique(mask)) == {0, 1, 2, 3}
    assert 20 < img.mean() < 200 and img.std() > 30
    # the same anatomy at every size: the LV area fraction agrees with 256 px within 10 %
    frac = (mask == 1).mean()
    ref = (cardiac.render_mask(p, 256) == 1).mean()
    assert abs(frac - ref) < 0.1 * ref
    # the blood pool is bright and the myocardium dark in the image, where the mask says so
    assert img[mask == 1].mean() > img[mask == 2].mean() + 60


def test_rows_are_ed_es_pairs_with_masks(cache):
    ds = cardiac.generate(41, image_size=32, seed=0)
    masks = _pixels(ds, "mask")
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    assert all(bc == schema.bmi_to_class(b) for bc, b in zip(ds["bmi_class"], ds["bmi"],
                                                             strict=True))
    ids = ds["sample_id"]
    for i, (sid, pid) in enumerate(zip(ids, ds["patient_id"], strict=True)):
        assert sid == f"{pid}-{'ed' if i % 2 == 0 else 'es'}"
    # two rows (ED, ES) per patient; 41 rows: the last patient keeps only its ED frame
    counts = Counter(ds["patient_id"])
    assert len(counts) == 21 and sorted(counts.values()) == [1] + [2] * 20
    assert ids[-1].endswith("-ed")


def test_reference_frames(cache):
    ref = cardiac.reference(10, sex="female", bmi_class="obese", finding="heart_failure",
                            image_size=32, seed=5)
    assert set(ref["finding"]) == {"heart_failure"} and set(ref["sex"]) == {"female"}
    assert set(ref["bmi_class"]) == {"obese"}
    assert len(set(ref["patient_id"])) == 5  # both frames of 5 patients
    es = cardiac.reference(6, frame="es", image_size=32, seed=5)
    assert len(set(es["patient_id"])) == 6 and all(s.endswith("-es") for s in es["sample_id"])


# -- calibrated proportions ------------------------------------------------------------------


def _expected_class_probs(sex: str, finding: str) -> np.ndarray:
    """Independent computation with scipy's log-normal (scale = median, s = sigma of log)."""
    median, sigma = cardiac.BMI_LOGNORMAL[(sex, finding)]
    dist = stats.lognorm(s=sigma, scale=median)
    edges = [15.0, 18.5, 25.0, 30.0, 55.0]
    probs = np.diff(dist.cdf(edges))
    return probs / probs.sum()


def test_sampled_proportions_follow_the_documented_calibration():
    n = 12_000
    params = cardiac.sample_params(np.random.default_rng(1), n, frames=("ed",))
    female = np.array([p.sex == "female" for p in params])
    hf = np.array([p.finding == "heart_failure" for p in params])
    assert stats.binomtest(int(female.sum()), n, 0.544).pvalue > 1e-3
    assert stats.binomtest(int(hf[female].sum()), int(female.sum()), 0.19).pvalue > 1e-3
    assert stats.binomtest(int(hf[~female].sum()), int((~female).sum()), 0.42).pvalue > 1e-3
    # documented marginals: about 30 % heart failure, about two thirds of it in men
    assert 0.27 < hf.mean() < 0.32
    assert 0.6 < (~female[hf]).mean() < 0.7
    # BMI classes per (sex, finding) follow the log-normal model (chi-square)
    for sex in schema.SEX:
        for finding in cardiac.CARDIAC_FINDINGS:
            cls = Counter(p.bmi_class for p in params if (p.sex, p.finding) == (sex, finding))
            got = np.array([cls[c] for c in schema.BMI_CLASSES], float)
            exp = _expected_class_probs(sex, finding) * got.sum()
            keep = exp > 5
            chi = ((got[keep] - exp[keep]) ** 2 / exp[keep]).sum()
            assert stats.chi2.sf(chi, keep.sum() - 1) > 1e-3, (sex, finding, got, exp)
    # documented UK-Biobank-like BMI: mean about 27.4, classes ~1/3, 2/5, 1/4 (healthy)
    bmi = np.array([p.bmi for p in params if p.finding == "no_finding"])
    assert 26.3 < bmi.mean() < 27.8
    classes = Counter(schema.bmi_to_class(b) for b in bmi)
    assert 0.28 < classes["normal"] / len(bmi) < 0.40
    assert 0.37 < classes["overweight"] / len(bmi) < 0.47
    assert 0.18 < classes["obese"] / len(bmi) < 0.28
    age = np.array([p.age for p in params])
    assert age.min() >= 45 and age.max() <= 82
    assert np.mean(age[hf]) > np.mean(age[~hf]) + 2.5
    # healthy EF: UK Biobank reference ranges (women 61 %, men 58 %)
    ef_f = np.mean([p.ejection_fraction for p in params if p.phenotype == "typical"
                    and p.sex == "female"])
    ef_m = np.mean([p.ejection_fraction for p in params if p.phenotype == "typical"
                    and p.sex == "male"])
    assert ef_f == pytest.approx(0.61, abs=0.01) and ef_m == pytest.approx(0.58, abs=0.01)


def test_conditional_sampling_and_phenotypes():
    ps = cardiac.sample_params(np.random.default_rng(2), 300, sex="female",
                               bmi_class="underweight", finding="heart_failure")
    assert {(p.sex, p.finding, p.bmi_class) for p in ps} == {
        ("female", "heart_failure", "underweight")}
    assert {p.phenotype for p in ps} == {"hf_preserved_ef_concentric"}
    men = cardiac.sample_params(np.random.default_rng(2), 200, sex="male",
                                finding="heart_failure")
    assert {p.phenotype for p in men} == {"hf_reduced_ef_dilated"}
    ok = cardiac.sample_params(np.random.default_rng(2), 200, finding="no_finding")
    assert {p.phenotype for p in ok} == {"typical"}
    # P(finding | bmi_class) follows Bayes' rule on the joint (obese patients: more HF)
    obese = cardiac.joint_probabilities(bmi_class="obese")
    normal = cardiac.joint_probabilities(bmi_class="normal")

    def hf(j):
        return sum(v for k, v in j.items() if k[1] == "heart_failure")

    assert hf(obese) > hf(normal)
    with pytest.raises(ValueError, match="frames"):
        cardiac.sample_params(np.random.default_rng(0), 2, frames=("es", "es"))


# -- effects measured from the masks and images ----------------------------------------------


def _pairs_of(sex: str, finding: str, n: int = 24, seed: int = 11, **kw):
    return _pairs(cardiac.reference_params(2 * n, sex=sex, finding=finding, seed=seed, **kw))


def test_measured_ef_matches_params_and_is_low_in_hfref():
    healthy = _pairs_of("male", "no_finding")
    hfref = _pairs_of("male", "heart_failure")
    hfpef = _pairs_of("female", "heart_failure")
    for pairs in (healthy, hfref, hfpef):
        truth = np.array([ed.ejection_fraction for ed, _ in pairs])
        assert np.abs(_measured_ef(pairs) - truth).max() < 0.06
    assert _measured_ef(hfref).mean() < _measured_ef(healthy).mean() - 0.2
    all_hf = _measured_ef(hfref + hfpef).mean()
    assert all_hf < _measured_ef(healthy + _pairs_of("female", "no_finding")).mean() - 0.08
    # HFpEF keeps its EF (within 6 points of healthy women)
    assert abs(_measured_ef(hfpef).mean() - _measured_ef(
        _pairs_of("female", "no_finding")).mean()) < 0.06


def test_lv_cavity_larger_in_hfref_wall_thicker_in_hfpef():
    def cavity_cm2(pairs):
        return np.array([_areas(ed)[0] * (ed.fov / 128) ** 2 for ed, _ in pairs])

    men_ok, men_hf = _pairs_of("male", "no_finding"), _pairs_of("male", "heart_failure")
    women_ok, women_hf = _pairs_of("female", "no_finding"), _pairs_of("female",
                                                                        "heart_failure")
    assert cavity_cm2(men_hf).mean() > 1.4 * cavity_cm2(men_ok).mean()
    assert cavity_cm2(women_hf).mean() < 0.85 * cavity_cm2(women_ok).mean()
    wall = {k: np.mean([_wall_cm(ed) for ed, _ in v]) for k, v in (
        ("men_ok", men_ok), ("men_hf", men_hf), ("women_ok", women_ok),
        ("women_hf", women_hf))}
    assert wall["women_hf"] > wall["women_ok"] + 0.4  # concentric hypertrophy
    assert wall["men_hf"] < wall["men_ok"] - 0.15  # thin wall
    # the phenotypes differ in the image too: dark (myocardium) area around the blood pool
    def dark_ring(pairs):
        out = []
        for ed, _ in pairs:
            img, m = cardiac.render(ed, 128), cardiac.render_mask(ed, 128)
            lv = m == 1
            ring = ndimage.binary_dilation(lv, iterations=int(round(1.8 / (ed.fov / 128))))
            ring &= ~lv
            out.append((img[ring] < 110).mean())
        return np.array(out)

    assert dark_ring(women_hf).mean() > dark_ring(women_ok).mean() + 0.15


def test_fat_grows_with_bmi():
    lean = cardiac.reference_params(30, bmi_class="normal", frame="ed", seed=4)
    obese = cardiac.reference_params(30, bmi_class="obese", frame="ed", seed=4)

    def fat_in_ring(params):
        """Fraction of bright (fat) pixels in a 1 cm ring outside the heart (from the image)."""
        out = []
        for p in params:
            img = cardiac.render(p, 128)
            heart = cardiac.region_masks(p, 128)["heart"]
            ring = ndimage.binary_dilation(heart, iterations=int(round(1.0 / (p.fov / 128))))
            ring &= ~heart
            out.append((img[ring] > 120).mean())
        return np.array(out)

    assert fat_in_ring(obese).mean() > fat_in_ring(lean).mean() + 0.15
    assert stats.mannwhitneyu(fat_in_ring(obese), fat_in_ring(lean)).pvalue < 1e-4
    epi = [cardiac.region_masks(p, 64)["epicardial_fat"].sum() for p in obese], [
        cardiac.region_masks(p, 64)["epicardial_fat"].sum() for p in lean]
    assert np.mean(epi[0]) > 1.5 * np.mean(epi[1])
    # subcutaneous fat (bright band at the top of the image: the anterior chest wall)
    def top_fat(params):
        return np.array([np.mean(cardiac.region_masks(p, 64)["subcutaneous_fat"])
                         for p in params])

    assert top_fat(obese).mean() > 1.5 * top_fat(lean).mean()


def test_majority_phenotype_redraws_women_with_hfref():
    women = cardiac.reference_params(24, sex="female", finding="heart_failure", seed=6)
    for p in cardiac.reference_params(6, sex="male", finding="heart_failure", seed=6) + \
            cardiac.reference_params(6, finding="no_finding", seed=6):
        assert cardiac.majority_phenotype(p) is p
    moved = [cardiac.majority_phenotype(p) for p in women]
    assert {q.phenotype for q in moved} == {"hf_reduced_ef_dilated"}
    for p, q in zip(women, moved, strict=True):
        assert (q.sex, q.age, q.bmi, q.sample_id, q.frame) == (p.sex, p.age, p.bmi,
                                                              p.sample_id, p.frame)
        assert q.ejection_fraction <= 0.40 < p.ejection_fraction
        assert q.lv_radius_ed > 1.4 * p.lv_radius_ed and q.wall_ed < p.wall_ed
    # both frames of a patient stay consistent (same heart, ES contracted from ED)
    for ed, es in _pairs(moved):
        assert (ed.lv_radius_ed, ed.rv_width_es) == (es.lv_radius_ed, es.rv_width_es)
    assert _measured_ef(_pairs(moved)).mean() < 0.42
