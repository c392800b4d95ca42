"""Tests of the brain MRI phantom (benchmark.data.phantoms.brain): calibration, atrophy,
phenotypes.

The contract every phantom keeps (determinism, schema, splits, cache) is in
tests/test_phantom_contract.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from benchmark.data.phantoms import brain


def _dark_fraction(params, region: str, threshold: int = 70) -> np.ndarray:
    """Per image: fraction of pixels darker than ``threshold`` (CSF) inside an oracle region."""
    out = []
    for p in params:
        mask = brain.region_masks(p, 64)[region]
        out.append(np.mean(brain.render(p, 64)[mask] < threshold))
    return np.array(out)


def _mean_in(params, region: str) -> np.ndarray:
    return np.array([brain.render(p, 64)[brain.region_masks(p, 64)[region]].mean()
                     for p in params])


# -- resolution and patients ----------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
def test_same_anatomy_at_any_resolution(size):
    p = brain.reference_params(1, finding="dementia", seed=1)[0]
    img = brain.render(p, size)
    assert 20 < img.mean() < 200 and img.std() > 30  # dark background, bright tissue
    # same anatomy at every size: the intracranial mean agrees across resolutions
    m = brain.region_masks(p, size)["intracranial"]
    ref = brain.render(p, 128)[brain.region_masks(p, 128)["intracranial"]].mean()
    assert abs(img[m].mean() - ref) < 12


def test_one_image_per_patient():
    params = brain.generate_params(40, seed=0)
    assert len({p.patient_id for p in params}) == 40
    assert all(p.sample_id == f"{p.patient_id}-s1" for p in params)


# -- calibrated proportions ------------------------------------------------------------------


def test_sampled_proportions_follow_documented_oasis_numbers():
    n = 20_000
    params = brain.sample_params(np.random.default_rng(1), n)
    age = np.array([p.age for p in params])
    dem = np.array([p.finding == "dementia" for p in params])
    female = np.array([p.sex == "female" for p in params])
    # documented numbers: 100 / 416 demented, 256 / 416 female, nobody demented under 60
    assert stats.binomtest(int(dem.sum()), n, 100 / 416).pvalue > 1e-3
    assert stats.binomtest(int(female.sum()), n, 256 / 416).pvalue > 1e-3
    assert not dem[age < 60].any()
    assert age.min() >= 18 and age.max() <= 96
    # the age histogram follows the documented bins (chi-square)
    edges = [b[0] for b in brain.OASIS_AGE_BINS] + [brain.OASIS_AGE_BINS[-1][1]]
    observed, _ = np.histogram(age, bins=edges)
    expected = np.array([b[2] for b in brain.OASIS_AGE_BINS]) / 416 * n
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert sum(b[2] for b in brain.OASIS_AGE_BINS) == brain.OASIS_SUBJECTS == 416
    assert sum(b[3] for b in brain.OASIS_AGE_BINS) == brain.OASIS_DEMENTED == 100
    # CDR of the demented: 70 / 28 / 2
    cdr = Counter(p.cdr for p in params if p.finding == "dementia")
    got = np.array([cdr[c] for c in brain.CDR_LEVELS])
    assert stats.chisquare(got, np.array(brain.CDR_COUNTS) / 100 * got.sum()).pvalue > 1e-3
    assert {p.cdr for p in params if p.finding == "no_finding"} == {0.0}
    assert brain.expected_proportions()["dementia"] == pytest.approx(100 / 416)


def test_conditional_sampling():
    ps = brain.sample_params(np.random.default_rng(2), 500, sex="female", age_band="<75",
                             finding="dementia")
    assert {(p.sex, p.finding, p.age_band) for p in ps} == {("female", "dementia", "<75")}
    assert all(60 <= p.age < 75 for p in ps)
    assert {p.phenotype for p in ps} == {"dementia_hippocampal_sparing"}
    old = brain.sample_params(np.random.default_rng(2), 200, age_band=">=75", finding="dementia")
    assert {p.phenotype for p in old} == {"dementia_limbic_predominant"}
    assert min(p.age for p in old) >= 75
    nf = brain.sample_params(np.random.default_rng(2), 200, finding="no_finding")
    assert {p.phenotype for p in nf} == {"typical"}


def test_sex_changes_head_size():
    ps = brain.sample_params(np.random.default_rng(3), 4000)
    male = np.array([p.head_half_length * p.head_half_width for p in ps if p.sex == "male"])
    female = np.array([p.head_half_length * p.head_half_width for p in ps if p.sex == "female"])
    assert male.mean() > female.mean() * 1.05
    assert stats.mannwhitneyu(male, female).pvalue < 1e-6


# -- effects measured from the images ---------------------------------------------------------


def test_csf_and_ventricles_grow_with_age():
    ps = brain.sample_params(np.random.default_rng(4), 2000, finding="no_finding")
    young = [p for p in ps if p.age < 30][:30]
    old = [p for p in ps if p.age >= 75][:30]
    assert _dark_fraction(old, "intracranial").mean() > _dark_fraction(
        young, "intracranial").mean() + 0.05
    assert _dark_fraction(old, "ventricular_region").mean() > _dark_fraction(
        young, "ventricular_region").mean() + 0.08
    # continuous: CSF fraction correlates with age across all ages
    sample = ps[:80]
    rho = stats.spearmanr([p.age for p in sample], _dark_fraction(sample, "intracranial"))
    assert rho.statistic > 0.6


def _age_matched(band: str, n: int = 30):
    """Dementia and control parameters with ages in 60-74 (<75) or 75+ (>=75)."""
    dem = brain.sample_params(np.random.default_rng(5), n, age_band=band, finding="dementia")
    ctl = brain.sample_params(np.random.default_rng(6), 20 * n, age_band=band,
                              finding="no_finding")
    ctl = [p for p in ctl if p.age >= 60][:n]
    assert abs(np.mean([p.age for p in dem]) - np.mean([p.age for p in ctl])) < 4
    return dem, ctl


def test_dementia_shrinks_hippocampi_vs_age_matched_controls():
    for band in brain.AGE_BANDS:
        dem, ctl = _age_matched(band)
        assert np.mean([p.hippocampal_atrophy for p in dem]) > np.mean(
            [p.hippocampal_atrophy for p in ctl])
        drop = _mean_in(ctl, "hippocampal_region").mean() - _mean_in(
            dem, "hippocampal_region").mean()
        assert drop > 5, band
        assert _dark_fraction(dem, "intracranial").mean() > _dark_fraction(
            ctl, "intracranial").mean() + 0.03


def test_phenotype_differs_between_age_bands():
    young_dem, young_ctl = _age_matched("<75")
    old_dem, old_ctl = _age_matched(">=75")

    def hippo_drop(dem, ctl):
        return _mean_in(ctl, "hippocampal_region").mean() - _mean_in(
            dem, "hippocampal_region").mean()

    def posterior_excess(dem, ctl):  # extra posterior CSF beyond the anterior increase
        post = _dark_fraction(dem, "posterior_cortex").mean() - _dark_fraction(
            ctl, "posterior_cortex").mean()
        ant = _dark_fraction(dem, "anterior_cortex").mean() - _dark_fraction(
            ctl, "anterior_cortex").mean()
        return post - ant

    # >= 75: limbic-predominant (hippocampi hit hardest); < 75: hippocampal-sparing, posterior
    assert hippo_drop(old_dem, old_ctl) > hippo_drop(young_dem, young_ctl) + 15
    assert posterior_excess(young_dem, young_ctl) > posterior_excess(old_dem, old_ctl) + 0.15
    assert min(p.posterior_atrophy for p in young_dem) > max(
        p.posterior_atrophy for p in old_dem)


# -- majority phenotype -----------------------------------------------------------------------


def test_majority_phenotype_redraws_young_dementia_as_limbic():
    young = brain.reference_params(20, age_band="<75", finding="dementia", seed=3)
    old = brain.reference_params(20, age_band=">=75", finding="dementia", seed=3)
    ctl = brain.reference_params(5, finding="no_finding", seed=3)
    for p in old + ctl:
        assert brain.majority_phenotype(p) is p
    moved = [brain.majority_phenotype(p) for p in young]
    assert {q.phenotype for q in moved} == {"dementia_limbic_predominant"}
    for p, q in zip(young, moved, strict=True):
        assert (q.age, q.sex, q.sample_id, q.cdr) == (p.age, p.sex, p.sample_id, p.cdr)
        assert q.hippocampal_atrophy > p.hippocampal_atrophy + 0.2
        assert q.posterior_atrophy < p.posterior_atrophy - 0.5
    # the images now show limbic atrophy: darker hippocampal region than before
    drop = _mean_in(young, "hippocampal_region").mean() - _mean_in(
        moved, "hippocampal_region").mean()
    assert drop > 5
