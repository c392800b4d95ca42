"""Tests of the skin phantom (benchmark.data.phantoms.skin): calibration and appearance.

The contract every phantom keeps (determinism, schema, splits, cache) is in
tests/test_phantom_contract.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage, stats

from benchmark import schema
from benchmark.data.phantoms import skin

# Fitzpatrick17k (Groh et al. 2021): images per Fitzpatrick type 1..6 and unknown (-1).
F17K = {"I": 2947, "II": 4808, "III": 3308, "IV": 2781, "V": 1533, "VI": 635, None: 565}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("size", [32, 64, 128])
def test_same_lesion_at_any_resolution(size):
    p = skin.reference_params(1, skin_tone="III", finding="psoriasis", seed=1)[0]
    assert skin.lesion_mask(p, size).shape == (size, size)
    # the same lesion at every size: the lesion's area fraction agrees
    frac = skin.lesion_mask(p, size).mean()
    assert abs(frac - skin.lesion_mask(p, 256).mean()) < 0.02


def test_one_image_per_patient_and_no_demographics(cache):
    ds = skin.generate(60, image_size=16, seed=0)
    for col in ("sex", "age", "age_group", "age_band", "race"):  # Fitzpatrick17k has none
        assert all(v is None for v in ds[col]), col
    assert ds["sample_id"] == [f"{pid}-s1" for pid in ds["patient_id"]]
    assert len(set(ds["patient_id"])) == 60 and ds["patient_id"][0] == "skin-p000001"
    assert set(ds["skin_tone"]) <= set(schema.SKIN_TONE) | {None}


# -- calibration -----------------------------------------------------------------------------


def test_tone_frequencies_follow_fitzpatrick17k():
    assert skin.FITZPATRICK17K_TONE_COUNTS == F17K
    assert sum(F17K.values()) == 16_577  # the dataset's size
    params = skin.sample_params(np.random.default_rng(0), 20_000)
    got = Counter(p.skin_tone for p in params)
    keys = list(F17K)
    observed = np.array([got[k] for k in keys])
    expected = np.array([F17K[k] for k in keys], float) / sum(F17K.values()) * len(params)
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # an unknown type is rendered with a hidden known type, recorded in `fitzpatrick`
    assert {p.fitzpatrick for p in params if p.skin_tone is None} == set(schema.SKIN_TONE)
    assert all(p.fitzpatrick == p.skin_tone for p in params if p.skin_tone is not None)
    # diseases: equal weights, independent of the type
    fcount = Counter(p.finding for p in params)
    assert stats.chisquare([fcount[f] for f in skin.SKIN_FINDINGS]).pvalue > 1e-3
    table = np.array([[sum(1 for p in params if p.skin_tone == t and p.finding == f)
                       for f in skin.SKIN_FINDINGS] for t in schema.SKIN_TONE])
    assert stats.chi2_contingency(table).pvalue > 1e-3


# -- appearance --------------------------------------------------------------------------------


def _lesion_stats(tone: str, finding: str, n: int = 20, seed: int = 4):
    """Per image: mean RGB inside the lesion mask and of the skin away from the lesion."""
    inside, outside = [], []
    for p in skin.reference_params(n, skin_tone=tone, finding=finding, seed=seed):
        img = skin.render(p, 64).astype(float)
        m = skin.lesion_mask(p, 64)
        far = ~ndimage.binary_dilation(m, iterations=6)
        inside.append(img[m].mean(axis=0))
        outside.append(img[far].mean(axis=0))
    return np.array(inside), np.array(outside)


@pytest.mark.parametrize("finding", skin.SKIN_FINDINGS)
def test_lesions_are_visible_on_every_tone(finding):
    for tone in ("I", "III", "V", "VI"):
        # mean colour distance of lesion pixels from the surrounding skin's mean colour, over
        # that of the surrounding skin's own pixels (captures colour, scale, crust, vessels)
        excess = []
        for p in skin.reference_params(8, skin_tone=tone, finding=finding, seed=4):
            img = skin.render(p, 64).astype(float)
            m = skin.lesion_mask(p, 64)
            far = ~ndimage.binary_dilation(m, iterations=6)
            ref = img[far].mean(axis=0)
            dev = np.linalg.norm(img - ref, axis=2)
            excess.append(dev[m].mean() - dev[far].mean())
        assert min(excess) > 10, (finding, tone, min(excess))
        assert np.mean(excess) > 14, (finding, tone, np.mean(excess))


def test_darker_types_have_darker_normal_skin():
    lum = []
    for tone in schema.SKIN_TONE:
        _, outside = _lesion_stats(tone, "psoriasis", n=8)
        lum.append((outside @ np.array([0.299, 0.587, 0.114])).mean())
    assert all(a > b + 10 for a, b in zip(lum, lum[1:], strict=False)), lum


def test_tone_dependent_phenotypes():
    light, light_out = _lesion_stats("I", "psoriasis")
    dark, dark_out = _lesion_stats("VI", "psoriasis")
    # psoriasis: salmon-pink (strongly red) on type I, grey-violaceous / brown on type VI
    redness = lambda rgb: rgb[:, 0] - rgb[:, 1]  # noqa: E731
    assert redness(light).mean() > redness(dark).mean() + 25
    # the lesion's own redness over its surrounding skin is lower on dark skin
    assert (redness(light) - redness(light_out)).mean() > (
        redness(dark) - redness(dark_out)).mean() + 20
    # erythema-based (dermatitis) contrast is lower on dark skin
    a_in, a_out = _lesion_stats("I", "allergic_contact_dermatitis")
    b_in, b_out = _lesion_stats("VI", "allergic_contact_dermatitis")
    assert np.linalg.norm(a_in - a_out, axis=1).mean() > np.linalg.norm(
        b_in - b_out, axis=1).mean() + 15
    # phenotype labels and post-inflammatory hyperpigmentation are recorded in the params
    pl = skin.reference_params(10, skin_tone="II", finding="psoriasis")
    pd = skin.reference_params(10, skin_tone="V", finding="psoriasis")
    assert {p.phenotype for p in pl} == {"psoriasis:salmon_pink_plaque"}
    assert {p.phenotype for p in pd} == {"psoriasis:grey_violaceous_plaque+pih"}
    assert all(p.pih == 0 for p in pl) and all(p.pih > 0 for p in pd)
    assert skin.erythema_visibility("I") > skin.erythema_visibility("VI")


def test_majority_phenotype_gives_dark_skin_the_light_lesion():
    light = skin.reference_params(5, skin_tone="II", seed=4)
    for p in light:
        assert skin.majority_phenotype(p) is p
    for finding in skin.SKIN_FINDINGS:
        dark = skin.reference_params(4, skin_tone="VI", finding=finding, seed=4)
        for p in dark:
            q = skin.majority_phenotype(p)
            assert q.skin_rgb == p.skin_rgb and q.fitzpatrick == "VI" and q.pih == 0.0
            assert q.phenotype == f"{finding}:{skin._VARIANTS[finding][0]}"
            # the lesion is now much lighter than the skin around it (light-skin colours)
            assert np.mean(q.lesion_rgb) > np.mean(p.lesion_rgb) + 40
            assert q.erythema_visibility == skin.erythema_visibility("II")
