"""The saliency diversity metric: hand-worked pieces, an independent coverage, planted cases."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from benchmark.data.phantoms import cxr
from benchmark.metrics.saliency import (
    coverage,
    gradient_saliency,
    saliency_diversity,
    sobel_magnitude,
    weighted_dispersion,
)


def test_gradient_saliency_of_a_linear_classifier_is_its_normalised_weights():
    # logits_c = sum_p W_c(p) x(p): the gradient of class 1 is W_1 whatever the image
    w = torch.tensor([[[1.0, -2.0], [0.0, 1.0]], [[-3.0, 0.5], [0.5, 1.0]]])  # (classes, H, W)

    def clf(x):  # x (N, 1, 2, 2)
        return torch.einsum("nchw,khw->nk", x, w)

    images = np.random.default_rng(0).random((3, 1, 2, 2)).astype(np.float32)
    maps = gradient_saliency(clf, images, target=1)
    expected = np.array([[3.0, 0.5], [0.5, 1.0]]) / 5.0
    for m in maps:
        np.testing.assert_allclose(m, expected, rtol=1e-6)


def test_weighted_dispersion_hand_worked():
    # two 1-channel 1x2 images: pixel 0 differs by 0.5 (variance 0.0625), pixel 1 equal
    images = np.array([[[[0.0, 0.3]]], [[[0.5, 0.3]]]])
    sal = np.array([[[0.75, 0.25]], [[0.25, 0.75]]])  # mean map [0.5, 0.5]
    assert weighted_dispersion(images, sal) == pytest.approx(0.5 * 0.0625)
    sal = np.array([[[1.0, 0.0]], [[1.0, 0.0]]])
    assert weighted_dispersion(images, sal) == pytest.approx(0.0625)


def test_sobel_magnitude_of_a_unit_step_is_one_on_the_edge():
    step = np.zeros((1, 8, 8))
    step[0, :, 4:] = 1.0
    mag = sobel_magnitude(step)
    np.testing.assert_allclose(mag[:, 3:5], 0.5)  # the step lies between columns 3 and 4
    assert mag[:, :2].max() == 0 and mag[:, 6:].max() == 0
    # the sum across the edge is 1: a unit step has unit total gradient
    np.testing.assert_allclose(mag.sum(axis=1), 1.0)


def test_coverage_matches_a_brute_force_computation():
    rng = np.random.default_rng(1)
    ref, cand = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(30, 5))
    k = 3
    d_rr = cdist(ref, ref)
    expected = 0
    for i in range(len(ref)):
        radius = np.sort(np.delete(d_rr[i], i))[k - 1]
        expected += any(np.linalg.norm(c - ref[i]) <= radius for c in cand)
    assert coverage(ref, cand, k=k) == pytest.approx(expected / len(ref))
    assert coverage(ref, ref[:5] + 100.0, k=k) == 0.0
    # fewer candidates than k: still defined (only the reference set needs k-NN radii)
    assert coverage(ref, ref[:2], k=k) == pytest.approx(
        np.mean([any(np.linalg.norm(r - c) <= np.sort(np.linalg.norm(ref - r, axis=1))[k]
                     for c in ref[:2]) for r in ref]))


def _small_cnn(channels: int, n_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, n_classes),
    ).eval()


def _features(images: list[np.ndarray]) -> np.ndarray:
    """A fixed, label-free feature space: 8x8 block means of the image."""
    x = np.stack(images).astype(np.float64) / 255.0
    n, h, w = x.shape
    return x.reshape(n, 8, h // 8, 8, w // 8).mean(axis=(2, 4)).reshape(n, -1)


@pytest.fixture(scope="module")
def real_sets():
    ds = cxr.reference(96, finding="cardiomegaly", image_size=32, seed=5)
    images = [np.asarray(im.convert("L")) for im in ds["image"]]
    return images[:32], images[32:64], images[64:]  # reference, held-out, "generated" real


def _sdm(generated, real_sets, clf):
    reference, heldout, _ = real_sets
    return saliency_diversity(
        generated=generated, heldout=heldout, generated_features=_features(generated),
        reference_features=_features(reference), heldout_features=_features(heldout),
        classifier=clf, target=0, k=3)


def test_real_versus_real_scores_near_one(real_sets):
    result = _sdm(real_sets[2], real_sets, _small_cnn(1, 2))
    assert 0.7 < result.coverage_ratio < 1.3
    assert 0.75 < result.dispersion_ratio < 1.33
    assert 0.85 < result.sharpness_ratio < 1.18
    assert result.score > 0.75


def test_copies_of_one_image_have_no_dispersion(real_sets):
    copies = [real_sets[2][0]] * 32
    result = _sdm(copies, real_sets, _small_cnn(1, 2))
    assert result.dispersion == pytest.approx(0.0, abs=1e-12)
    assert result.dispersion_ratio == pytest.approx(0.0, abs=1e-9)
    assert result.coverage_ratio < 0.35
    assert result.score < 0.05


def test_blur_lowers_sharpness_and_noise_is_not_diversity(real_sets):
    clf = _small_cnn(1, 2)
    blurred = [gaussian_filter(im.astype(float), 1.5).round().astype(np.uint8)
               for im in real_sets[2]]
    blur = _sdm(blurred, real_sets, clf)
    rng = np.random.default_rng(0)
    noisy = [np.clip(im + rng.normal(0, 40, im.shape), 0, 255).astype(np.uint8)
             for im in real_sets[2]]
    noise = _sdm(noisy, real_sets, clf)
    real = _sdm(real_sets[2], real_sets, clf)
    assert blur.sharpness_ratio < 0.8 * real.sharpness_ratio
    assert noise.sharpness_ratio > 1.15 and noise.dispersion_ratio > 1.5
    assert blur.score < real.score - 0.05 and noise.score < real.score - 0.1
