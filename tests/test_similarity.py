"""Similarity functions against skimage and hand-worked values; diversity on planted cases;
LPIPS and DreamSim report themselves unavailable without cached weights."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.metrics.similarity import (
    LPIPS,
    MS_SSIM_MIN_SIDE,
    DreamSim,
    MetricUnavailable,
    cosine_similarity,
    mean_pairwise_diversity,
    ms_ssim,
    mse,
    psnr,
    sample_pairs,
    ssim,
)


def _images(n, size=32, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, 3)
    base = rng.integers(0, 256, shape).astype(np.float64)
    out = []
    for i in range(n):
        noisy = base + rng.normal(0, 10 + 10 * i, shape)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def test_mse_and_psnr_hand_worked():
    a = np.zeros((2, 2), dtype=np.uint8)
    b = np.array([[255, 0], [0, 0]], dtype=np.uint8)  # one of 4 pixels differs by 1.0
    assert mse([a], [b])[0] == pytest.approx(0.25)
    assert psnr([a], [b])[0] == pytest.approx(10 * np.log10(4))
    assert psnr([a], [a])[0] == np.inf
    x, y = _images(2, seed=3)
    assert psnr([x], [y])[0] == pytest.approx(peak_signal_noise_ratio(x, y, data_range=255))


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    imgs = _images(3, size=256, seed=channels, channels=channels)
    got = ssim(imgs[:2], imgs[1:])
    for k, (a, b) in enumerate(zip(imgs[:2], imgs[1:], strict=True)):
        ref = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False,
                                    channel_axis=2 if channels == 3 else None)
        # torchmetrics pads by reflection and crops the border, skimage crops without
        # padding: border windows differ, so the means agree to ~1e-4 at 256 px
        assert got[k] == pytest.approx(ref, abs=1e-3)
    assert ssim([imgs[0]], [imgs[0]])[0] == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_needs_large_images():
    small = _images(2, size=64)
    with pytest.raises(MetricUnavailable, match=f"at least {MS_SSIM_MIN_SIDE}x"):
        ms_ssim(small[:1], small[1:])
    big = _images(3, size=MS_SSIM_MIN_SIDE, seed=1)
    same = ms_ssim([big[0]], [big[0]])[0]
    assert same == pytest.approx(1.0, abs=1e-5)
    near, far = ms_ssim([big[0], big[0]], [big[1], big[2]])
    assert 0 < far < near < 1  # more noise, less similar


def test_cosine_similarity_hand_worked():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [0.0, 1.0])
    with pytest.raises(ValueError, match="zero feature vector"):
        cosine_similarity(np.zeros((1, 2)), np.ones((1, 2)))


def test_sample_pairs_all_and_sampled():
    i, j = sample_pairs(5, 100, seed=0)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [
        (a, b) for a in range(5) for b in range(a + 1, 5)]
    i, j = sample_pairs(300, 1000, seed=1)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(pairs) == 1000 and all(0 <= a < b < 300 for a, b in pairs)
    i2, j2 = sample_pairs(300, 1000, seed=1)
    assert (i == i2).all() and (j == j2).all()


def test_diversity_planted_and_hand_worked():
    img = _images(1, seed=5)[0]
    copies = [img.copy() for _ in range(6)]
    assert mean_pairwise_diversity(copies, mse).value == 0.0
    assert mean_pairwise_diversity(copies, lambda a, b: 1 - ssim(a, b)).value == pytest.approx(
        0.0, abs=1e-6)
    feats = np.tile(np.arange(1.0, 5.0), (6, 1))
    assert mean_pairwise_diversity(
        feats, lambda a, b: 1 - cosine_similarity(a, b)).value == pytest.approx(0.0, abs=1e-12)
    # three 1-pixel images 0, 255, 255: pair MSEs 1, 1, 0 -> mean 2/3
    trio = [np.full((1, 1), v, dtype=np.uint8) for v in (0, 255, 255)]
    d = mean_pairwise_diversity(trio, mse)
    assert (d.value, d.n_images, d.n_pairs) == (pytest.approx(2 / 3), 3, 3)
    assert mean_pairwise_diversity(trio[:1], mse).reason == "fewer than 2 images"
    mixed = mean_pairwise_diversity([trio[0], np.zeros((2, 2), dtype=np.uint8)], mse)
    assert mixed.value is None and "2 different shapes" in mixed.reason
    # more varied sets are more diverse
    varied = _images(6, seed=6)
    assert mean_pairwise_diversity(varied, mse, max_pairs=10, seed=0).n_pairs == 10
    assert mean_pairwise_diversity(varied, mse).value > 0


def test_lpips_unavailable_without_cached_backbone(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MetricUnavailable, match=r"^LPIPS unavailable: AlexNet ImageNet weights"):
        LPIPS()


def test_dreamsim_unavailable_without_checkpoints(tmp_path):
    with pytest.raises(MetricUnavailable, match=r"^DreamSim unavailable: .* not in "):
        DreamSim(cache_dir=tmp_path)
    assert "\n" not in str(pytest.raises(MetricUnavailable, DreamSim, cache_dir=tmp_path).value)
