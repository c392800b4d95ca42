"""Downstream classifiers: config validation, determinism, resume, reweighting, heads, stage."""

import dataclasses

import datasets
import numpy as np
import pytest
from conftest import make_rows
from PIL import Image

from benchmark.downstream import DownstreamConfig
from benchmark.downstream import evaluate as dn_eval
from benchmark.downstream.classifier import (
    ArrayData,
    build_backbone,
    group_weights,
    sampler_group_weights,
    train_classifier,
)
from benchmark.downstream.heads import fit_predict_head
from benchmark.metrics.features import WeightsNotFoundError
from benchmark.registry import UnknownNameError
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS

TINY = DownstreamConfig(image_size=16, epochs=2, batch_size=16, patience=5, min_group_size=2,
                        cpu_threads=1)


def _learnable(n, seed, size=16, k=3):
    """Images whose mean brightness encodes the class (a CNN learns it in a few steps)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    base = (40 + 80 * y)[:, None, None, None]
    images = np.clip(base + rng.normal(0, 20, (n, 1, size, size)), 0, 255).astype(np.uint8)
    groups = np.array(["a" if i % 3 else "b" for i in range(n)], dtype=object)
    return ArrayData(images, y, groups)


def test_config_validates_names_and_options():
    with pytest.raises(UnknownNameError, match="valid: efficientnet-b0"):
        DownstreamConfig(backbones=("resnet5",))
    with pytest.raises(ValueError, match="unknown feature head"):
        DownstreamConfig(feature_heads=("svm",))
    with pytest.raises(ValueError, match="no published pretrained"):
        DownstreamConfig(pretrained=True)  # tiny-resnet is from scratch only
    with pytest.raises(ValueError, match="unknown downstream option"):
        DownstreamConfig.from_dict({"epoch": 3})
    cfg = DownstreamConfig(backbones=("resnet50",), feature_heads=("knn",))
    assert DownstreamConfig.from_dict(cfg.as_dict()) == cfg


def test_training_is_seeded_and_resumes_to_the_same_weights(tmp_path):
    train, val = _learnable(96, 0), _learnable(48, 1)
    kw = dict(train=train, val=val, n_classes=3, backbone="tiny-resnet", config=TINY,
              progress=False)
    a = train_classifier(seed=0, **kw)
    b = train_classifier(seed=0, **kw)
    pa, pb = a.predict_proba(val.images), b.predict_proba(val.images)
    np.testing.assert_array_equal(pa, pb)
    assert pa.shape == (48, 3) and np.allclose(pa.sum(1), 1)
    assert a.epochs_run == 2 and len(a.history) == 2

    class Killed(Exception):
        pass

    def kill(epoch):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(seed=0, work_dir=tmp_path, on_epoch_end=kill, **kw)
    assert (tmp_path / "checkpoint.pt").is_file()
    resumed = train_classifier(seed=0, work_dir=tmp_path, **kw)
    assert resumed.history == a.history
    np.testing.assert_array_equal(resumed.predict_proba(val.images), pa)
    other = train_classifier(seed=1, **kw).predict_proba(val.images)
    assert not np.array_equal(other, pa)


def test_group_weights_hand_worked():
    # val: group A 1 of 2 correct (acc 0.5), group B 2 of 2 (acc 1.0)
    # raw weights 1/(0.5+1e-6) ~ 2, 1/(1+1e-6) ~ 1; train has 1 A and 3 B:
    # mean raw weight per sample (2*1 + 1*3) / 4 = 1.25 -> A 1.6, B 0.8
    val = ArrayData(np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 0, 1]),
                    np.array(["A", "A", "B", "B"], dtype=object))
    pred = np.array([0, 0, 0, 1])
    w = group_weights(pred, val, np.array(["A", "B", "B", "B"], dtype=object))
    assert w["A"] == pytest.approx(1.6, rel=1e-5) and w["B"] == pytest.approx(0.8, rel=1e-5)
    # a training group missing from val gets the mean raw weight (1.5) before normalising
    w = group_weights(pred, val, np.array(["A", "B", "C"], dtype=object))
    assert w["C"] == pytest.approx(1.5 / 1.5, rel=1e-5)


def test_reweighting_changes_training_and_stays_deterministic():
    train, val = _learnable(96, 0), _learnable(48, 1)
    cfg = dataclasses.replace(TINY, reweight=True, epochs=3)
    kw = dict(train=train, val=val, n_classes=3, backbone="tiny-resnet", progress=False, seed=0)
    a = train_classifier(config=cfg, **kw).predict_proba(val.images)
    b = train_classifier(config=cfg, **kw).predict_proba(val.images)
    plain = train_classifier(config=dataclasses.replace(cfg, reweight=False), **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plain.predict_proba(val.images))


def test_sampler_reweighting_weights_by_hand():
    # group a: 3 of 4 right (75%), group b: 1 of 4 (25%)
    # raw 1/(75 + 1e-6) and 1/(25 + 1e-6); normalised to sum 1: 0.25 and 0.75
    labels = np.zeros(8, dtype=np.int64)
    pred = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    val = ArrayData(np.zeros((8, 1, 4, 4), np.uint8), labels,
                    np.array(["a"] * 4 + ["b"] * 4, dtype=object))
    w = sampler_group_weights(pred, val)
    assert w["a"] == pytest.approx(0.25, rel=1e-6) and w["b"] == pytest.approx(0.75, rel=1e-6)
    assert sum(w.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reweight_mode"):
        dataclasses.replace(TINY, reweight_mode="both")


def test_sampler_reweighting_trains_deterministically_and_differs_from_loss_weighting():
    train, val = _learnable(96, 0), _learnable(48, 1)
    cfg = dataclasses.replace(TINY, reweight=True, reweight_mode="sampler", epochs=3)
    kw = dict(train=train, val=val, n_classes=3, backbone="tiny-resnet", progress=False, seed=0)
    a = train_classifier(config=cfg, **kw)
    b = train_classifier(config=cfg, **kw)
    np.testing.assert_array_equal(a.predict_proba(val.images), b.predict_proba(val.images))
    loss = train_classifier(config=dataclasses.replace(cfg, reweight_mode="loss"), **kw)
    assert not np.array_equal(a.predict_proba(val.images), loss.predict_proba(val.images))


@pytest.mark.parametrize("head", ["knn", "gbdt"])
def test_feature_heads_separable_and_missing_class(head):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 2], 30)  # class 1 absent from training
    x = rng.normal(size=(60, 4)) + 5 * y[:, None]
    xt = rng.normal(size=(20, 4)) + 5 * np.repeat([0, 2], 10)[:, None]
    p = fit_predict_head(head, train_x=x, train_y=y, test_x=xt, n_classes=3, seed=0, threads=1)
    assert p.shape == (20, 3) and np.all(p[:, 1] == 0)
    assert np.array_equal(p.argmax(1), np.repeat([0, 2], 10))
    np.testing.assert_array_equal(
        p, fit_predict_head(head, train_x=x, train_y=y, test_x=xt, n_classes=3, seed=0,
                            threads=1))


def test_pretrained_weights_absent_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "torchhub"))
    with pytest.raises(WeightsNotFoundError, match="resnet50.*not in the local cache"):
        build_backbone("resnet50", n_classes=2, in_chans=1, image_size=32, pretrained=True)


def _split_ds(n, seed, split):
    rows = make_rows(n, seed=seed, size=16)
    rows["split"] = [split] * n
    # brightness encodes the class, so the tiny CNN can learn something
    cls = {"no_finding": 40, "cardiomegaly": 120, "edema": 200}
    rng = np.random.default_rng(seed)
    rows["image"] = [Image.fromarray(np.clip(cls[f] + rng.normal(0, 20, (16, 16)), 0, 255)
                                     .astype(np.uint8)) for f in rows["finding"]]
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def test_downstream_stage_scores_sets_resumes_and_shares_the_real_row(tmp_path, monkeypatch):
    task = TASKS.get("phantom-cxr-finding")
    train, val, test = _split_ds(60, 0, "train"), _split_ds(30, 1, "val"), _split_ds(30, 2, "test")
    syn = _split_ds(30, 3, "train")
    cfg = dataclasses.replace(TINY, epochs=1, synthetic_ratio=0.25)
    kw = dict(train=train, val=val, test=test, task=task, config=cfg, seed=0, progress=False,
              shared_dir=tmp_path / "shared", extractor=_MeanStdFeatures())
    out = dn_eval.downstream_metrics(synthetic=syn, work_dir=tmp_path / "run1", **kw)
    # the real-only classifier's weights are kept for the saliency diversity metric
    assert len(list((tmp_path / "shared").glob("*.weights.pt"))) == 1
    sdm = out["saliency_diversity"]
    assert set(sdm["by_class"]) == set(task.classes)
    assert set(out["classifiers"]) == {"real/tiny-resnet", "real+synthetic/tiny-resnet",
                                       "synthetic/tiny-resnet"}
    assert out["counts"]["synthetic_used"] == 15  # 0.25 x 60 real
    assert out["classifiers"]["real+synthetic/tiny-resnet"]["n_train"] == 75
    cas = out["classifiers"]["synthetic/tiny-resnet"]["test"]["accuracy"]
    assert out["cas"] == {"tiny-resnet": cas}
    real = out["classifiers"]["real/tiny-resnet"]
    assert set(real["fairness"]) == {"sex", "age_group"}
    sex = real["fairness"]["sex"]
    assert sum(g["n"] for g in sex["by_group"].values()) == 30
    assert real["test"]["n"] == 30 and 0 <= real["test"]["accuracy"] <= 1

    # a re-run reuses every stored result: no training at all
    def no_training(**_):
        raise AssertionError("trained again")

    monkeypatch.setattr(dn_eval, "train_classifier", no_training)
    again = dn_eval.downstream_metrics(synthetic=syn, work_dir=tmp_path / "run1", **kw)
    assert again["classifiers"] == out["classifiers"]
    assert again["saliency_diversity"] == sdm  # same classifier, same draws
    # another run (e.g. the real-only method) finds the real row in the shared folder
    ref = dn_eval.downstream_metrics(synthetic=None, work_dir=tmp_path / "run2", **kw)
    assert ref["classifiers"] == {"real/tiny-resnet": real}
    assert ref["skipped"] == {"real+synthetic/tiny-resnet": "no synthetic images",
                              "synthetic/tiny-resnet": "no synthetic images"}
    assert ref["cas"] == {"tiny-resnet": None}
    assert ref["saliency_diversity"]["reason"] == "no synthetic images"


def test_saliency_diversity_in_the_stage_planted_cases(tmp_path):
    """Synthetic images drawn like the real ones score near 1; one copied image per class has
    zero dispersion and a low score; a class with too few images gets a reason."""
    task = TASKS.get("phantom-cxr-finding")
    train, val, test = _split_ds(90, 0, "train"), _split_ds(60, 1, "val"), _split_ds(60, 2, "test")
    cfg = dataclasses.replace(TINY, epochs=2, cas=False)
    kw = dict(train=train, val=val, test=test, task=task, config=cfg, seed=0, progress=False,
              shared_dir=tmp_path / "shared", extractor=_MeanStdFeatures())
    fresh = _split_ds(60, 5, "train")
    good = dn_eval.downstream_metrics(synthetic=fresh, work_dir=tmp_path / "a", **kw)
    first = {}
    for i, f in enumerate(fresh["finding"]):
        first.setdefault(f, i)
    copies = fresh.select([first[f] for f in fresh["finding"]])  # one image per class, copied
    bad = dn_eval.downstream_metrics(synthetic=copies, work_dir=tmp_path / "b", **kw)
    for c in ("no_finding", "cardiomegaly", "edema"):  # the fixture's classes
        g, b = good["saliency_diversity"]["by_class"][c], bad["saliency_diversity"]["by_class"][c]
        assert 0.5 < g["dispersion_ratio"] < 2.0, (c, g)
        assert b["dispersion_ratio"] == pytest.approx(0.0, abs=1e-12)
        assert b["score"] == pytest.approx(0.0, abs=1e-6) and g["score"] > 0.5
        assert g["n_heldout"] == sum(f == c for f in val["finding"])
    absent = good["saliency_diversity"]["by_class"]["lung_opacity"]
    assert absent["score"] is None and "0 synthetic image(s)" in absent["reason"]
    assert good["saliency_diversity"]["settings"]["feature_space"] == "mean-std"
    assert good["saliency_diversity"]["mean_score"] > 0.5
    assert bad["saliency_diversity"]["mean_score"] == pytest.approx(0.0, abs=1e-6)
    one = fresh.select([first["edema"]])
    few = dn_eval.downstream_metrics(synthetic=one, work_dir=tmp_path / "c", **kw)
    entry = few["saliency_diversity"]["by_class"]["edema"]
    assert entry["score"] is None and "1 synthetic image(s), needs 2" in entry["reason"]


def test_downstream_stage_rejects_findings_outside_the_task(tmp_path):
    task = TASKS.get("phantom-brain-dementia")
    ds = _split_ds(6, 0, "train")
    with pytest.raises(ValueError, match="real train: finding.*not classes of task"):
        dn_eval.downstream_metrics(train=ds, val=ds, test=ds, synthetic=None, task=task,
                                   config=TINY, work_dir=tmp_path, progress=False)


class _MeanStdFeatures:
    """A stand-in frozen feature extractor: per-image mean and std (fast, no weights)."""

    name = "mean-std"

    def __init__(self):
        self.calls = 0

    def extract(self, arrays, *, cache=None, batch_size=32, progress=True):
        self.calls += 1
        return np.array([[a.mean(), a.std()] for a in arrays], dtype=np.float64)


def test_feature_heads_in_the_stage_use_the_extractor_once_per_split(tmp_path):
    task = TASKS.get("phantom-cxr-finding")
    train, val, test = _split_ds(60, 0, "train"), _split_ds(30, 1, "val"), _split_ds(30, 2, "test")
    cfg = dataclasses.replace(TINY, backbones=(), feature_heads=("knn",), knn_k=3)
    ext = _MeanStdFeatures()
    out = dn_eval.downstream_metrics(train=train, val=val, test=test, synthetic=_split_ds(
        30, 3, "train"), task=task, config=cfg, work_dir=tmp_path, extractor=ext,
        progress=False)
    assert set(out["classifiers"]) == {"real/knn", "real+synthetic/knn", "synthetic/knn"}
    assert ext.calls == 3  # real train, synthetic, test: each once
    knn = out["classifiers"]["real/knn"]
    assert knn["kind"] == "knn" and knn["features"] == "mean-std"
    # brightness encodes the class, so k-NN on the mean is nearly perfect
    assert knn["test"]["accuracy"] >= 0.9
    assert set(out["cas"]) == {"knn"}


@pytest.mark.slow
@pytest.mark.parametrize("name,timm_name,first_conv", [
    ("resnet50", "resnet50", "conv1.weight"),
    ("efficientnet-b0", "efficientnet_b0", "conv_stem.weight"),
    ("vit-b16", "vit_base_patch16_224", "patch_embed.proj.weight"),
])
def test_paper_backbones_load_pretrained_weights_from_the_local_cache(
        tmp_path, monkeypatch, name, timm_name, first_conv):
    """The paper profile's backbones read ImageNet weights from the HF hub cache (never the
    network): a checkpoint planted there (random values, the published format: 1000 classes,
    RGB) is what the grayscale classifier starts from (timm sums the first layer over RGB)."""
    import timm
    import torch
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    hub = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "torchhub"))
    repo = get_pretrained_cfg(timm_name).hf_hub_id
    torch.manual_seed(0)
    published = timm.create_model(timm_name, pretrained=False).state_dict()
    snap = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in published.items()}, snap / "model.safetensors")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)

    model = build_backbone(name, n_classes=2, in_chans=1, image_size=32, pretrained=True)
    got = model.state_dict()[first_conv]
    assert torch.allclose(got, published[first_conv].sum(dim=1, keepdim=True), atol=1e-5)
    model.eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2)


def test_sdm_draws_the_generated_set_from_the_scored_images_first():
    from benchmark.downstream.sdm import _draw

    idx = np.arange(100, 200)
    rng = np.random.default_rng(0)
    many = np.zeros(100, bool)
    many[::2] = True  # 50 preferred, 20 wanted: all 20 from the preferred rows
    got = _draw(idx, 20, rng, many)
    assert len(got) == 20 == len(set(got)) and set(got) <= set(idx[many])
    few = np.zeros(100, bool)
    few[:7] = True  # 7 preferred, 20 wanted: the 7 and 13 others, no repeats
    got = _draw(idx, 20, np.random.default_rng(1), few)
    assert len(got) == 20 == len(set(got)) and set(idx[few]) <= set(got)
    assert list(got) == sorted(got)
    # without preference (or with fewer rows than wanted) the old draw is unchanged
    assert list(_draw(idx, 20, np.random.default_rng(2))) == sorted(
        np.random.default_rng(2).choice(idx, size=20, replace=False))
    assert list(_draw(idx[:5], 20, rng, few[:5])) == list(idx[:5])
