"""The feature-space registry (validated names, non-colliding result keys), the deterministic
thumbnail extractor, the callable adapter the oracle plugs in with, and the evaluation of a
folder-like dataset in a second space without Inception."""

import numpy as np
import pytest
from PIL import Image

from benchmark.metrics import (
    FEATURE_SPACES,
    CallableFeatureExtractor,
    FeatureCache,
    FeatureSpace,
    ThumbnailFeatures,
    WeightsNotFoundError,
    feature_extractors,
    register_feature_space,
)
from benchmark.metrics.spaces import _check_space


def _space(name, factory=lambda task, device, profile: None):
    return FeatureSpace(name, "test space", factory)


def test_keys_inception_and_others():
    inc = FEATURE_SPACES.get("inception")
    assert inc.keys() == {"frechet": "fid", "kernel": "kid", "precision": "precision",
                          "recall": "recall", "density": "density", "coverage": "coverage"}
    o = _space("oracle")
    assert o.keys() == {"frechet": "fd_oracle", "kernel": "kd_oracle",
                        "precision": "precision_oracle", "recall": "recall_oracle",
                        "density": "density_oracle", "coverage": "coverage_oracle"}
    with pytest.raises(ValueError, match="unknown base metric"):
        o.key("fid")


@pytest.mark.parametrize("bad", ["Oracle", "or acle", "ora/cle", "1oracle", "ora-cle", ""])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid feature space name"):
        _check_space(bad, _space(bad))


def test_registry_checks_type_name_and_duplicates():
    with pytest.raises(TypeError, match="must be a FeatureSpace"):
        _check_space("x", object())
    with pytest.raises(ValueError, match="is named"):
        _check_space("x", _space("y"))
    with pytest.raises(ValueError, match="already registered"):
        register_feature_space(_space("inception"))


def test_thumbnail_features_hand_worked():
    img = np.zeros((4, 4), dtype=np.uint8)
    img[:2, :2] = 255  # the top-left quarter white: a 2x2 box average gives [1, 0; 0, 0]
    ex = ThumbnailFeatures(2)
    np.testing.assert_allclose(ex.extract([img], progress=False), [[1.0, 0.0, 0.0, 0.0]])
    assert ex.dim == 4 and ex.name == "thumbnail-2"


def test_callable_extractor_caches_and_validates(tmp_path):
    calls = []

    def features(arrays):
        calls.append(len(arrays))
        return np.stack([a.reshape(-1)[:3].astype(np.float32) for a in arrays])

    ex = CallableFeatureExtractor("toy", 3, features, {"weights_sha256": "abc"})
    cache = FeatureCache(tmp_path)
    imgs = [np.full((4, 4), i, dtype=np.uint8) for i in range(5)]
    a = ex.extract(imgs, cache=cache, progress=False)
    b = ex.extract(imgs, cache=cache, progress=False)
    np.testing.assert_array_equal(a, b)
    assert calls == [5]  # the second call came from the cache
    assert ex.cache_key != CallableFeatureExtractor("toy", 3, features,
                                                    {"weights_sha256": "abd"}).cache_key
    with pytest.raises(ValueError, match="config must name"):
        CallableFeatureExtractor("toy", 3, features, {})
    bad = CallableFeatureExtractor("toy", 4, features, {"w": 1})
    with pytest.raises(RuntimeError, match="expected"):
        bad.extract(imgs, progress=False)


def test_feature_extractors_reports_missing_weights(monkeypatch, caplog):
    from benchmark.metrics import spaces as spaces_mod
    from benchmark.tasks import TASKS

    def missing(task, device, profile):
        raise WeightsNotFoundError("oracle weights not found: /nowhere/oracle.pt")

    monkeypatch.setitem(spaces_mod.FEATURE_SPACES._items, "zz_missing", _space("zz_missing",
                                                                             missing))
    monkeypatch.setitem(spaces_mod.FEATURE_SPACES._items, "zz_thumb", _space(
        "zz_thumb", lambda task, device, profile: ThumbnailFeatures(4)))
    monkeypatch.setitem(spaces_mod.FEATURE_SPACES._items, "zz_none", _space("zz_none"))
    got = feature_extractors(TASKS.get("phantom-cxr-finding"),
                             spaces=["zz_missing", "zz_thumb", "zz_none"])
    assert list(got.available) == ["zz_thumb"]
    assert got.unavailable == {"zz_missing": "oracle weights not found: /nowhere/oracle.pt"}
    assert "feature space zz_missing unavailable" in caplog.text


def test_generation_metrics_in_a_second_space(tiny_dataset, monkeypatch):
    """The whole evaluation in a fast deterministic space: fd_<space> keys, groups,
    intersections, counts beside every value, diversity per class; no FID anywhere."""
    from benchmark.evaluation import generation_metrics
    from benchmark.metrics import spaces as spaces_mod
    from benchmark.profiles import PROFILES
    from benchmark.tasks import TASKS

    monkeypatch.setitem(spaces_mod.FEATURE_SPACES._items, "thumb", _space("thumb"))
    task = TASKS.get("phantom-cxr-finding")
    real = tiny_dataset.map(lambda r: {"split": "test"})
    rng = np.random.default_rng(0)
    syn = tiny_dataset.map(lambda r: {"image": Image.fromarray(
        rng.integers(0, 256, (16, 16), dtype=np.uint8))})
    out = generation_metrics(real, syn, task, PROFILES.get("smoke"),
                             extractors={"thumb": ThumbnailFeatures(4)}, progress=False)
    assert "fid" not in out and out["fd_thumb"]["n_real"] == 24
    assert out["fd_thumb"]["ci_low"] <= out["fd_thumb"]["value"] <= out["fd_thumb"]["ci_high"]
    assert set(out["fd_thumb_by_group"]) == {"sex", "age_group", "sex x age_group"}
    assert set(out["es_fd_thumb"]) == {"sex", "age_group", "sex x age_group"}
    div = out["diversity"]["synthetic"]
    assert set(div) == {"no_finding", "cardiomegaly", "edema"}
    assert div["edema"]["mse"]["n_images"] == 8 and div["edema"]["mse"]["value"] > 0
    assert div["edema"]["ms_ssim"]["value"] is None
    assert "176" in div["edema"]["ms_ssim"]["reason"]
    assert "inception_cosine" not in div["edema"]  # no Inception space in this evaluation
    assert out["counts"] == {"real": 24, "synthetic": 24}
    from benchmark.cli import summary

    record = {"method": "m", "task": task.name, "profile": "smoke", "seed": 0,
              "counts": {"data": 48, "test": 24, "synthetic": 24}, "timings_s": {"total": 1.0},
              "metrics": {"generation": out}}
    text = summary(record)
    assert "FD_THUMB " in text and "FID" not in text and "KD_THUMB" in text
    assert "FD_THUMB by sex x age_group" in text and "ES_FD_THUMB" in text
    assert "95% bootstrap interval, 20 resamples" in text
    with pytest.raises(KeyError, match="unknown feature space"):
        generation_metrics(real, syn, task, PROFILES.get("smoke"),
                           extractors={"nope": ThumbnailFeatures(4)}, progress=False)
