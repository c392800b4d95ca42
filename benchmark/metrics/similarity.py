"""Image similarity and intra-class diversity: MSE, PSNR, SSIM, MS-SSIM, LPIPS, DreamSim and
the cosine similarity of Inception features.

Pairwise functions take two equally long batches of uint8 images ((H, W) grayscale or
(H, W, 3) RGB, one shape per batch) and return one number per pair. Pixel values are scaled
to [0, 1] first, so MSE is in [0, 1] and PSNR uses a peak of 1.

Weight-backed measures (LPIPS, DreamSim) load their weights only from a local cache; when the
weights are absent, :class:`MetricUnavailable` says in one line what is missing, and the
evaluation records the measure as unavailable: no random-backbone number is ever reported
under their names.

:func:`mean_pairwise_diversity` turns any of them into a diversity score of a set of images
(the mean dissimilarity over distinct pairs, all pairs or a seeded sample of them): copies of
one image score 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .features import to_uint8_array

#: MS-SSIM's default 5 scales with an 11-pixel Gaussian window need the image to keep at
#: least 11 pixels after 4 halvings: sides of at least 11 * 2**4 = 176 pixels.
MS_SSIM_SCALES = 5
MS_SSIM_WINDOW = 11
MS_SSIM_MIN_SIDE = MS_SSIM_WINDOW * 2 ** (MS_SSIM_SCALES - 1)


class MetricUnavailable(RuntimeError):
    """A similarity measure cannot run here (weights absent, images too small); the message
    is one line saying what is missing and how to get it."""


def to_unit_tensor(images: Sequence[Any]) -> torch.Tensor:
    """Images as a float32 (N, C, H, W) tensor in [0, 1] (C = 1 or 3, one shape for all)."""
    arrays = [to_uint8_array(im, index=i) for i, im in enumerate(images)]
    if not arrays:
        raise ValueError("no images")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images of different shapes in one batch: {sorted(shapes)}; resize "
                         "them to one size first")
    x = torch.from_numpy(np.stack(arrays)).to(torch.float32) / 255.0
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def _pair(a: Sequence[Any], b: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    ta, tb = to_unit_tensor(a), to_unit_tensor(b)
    if ta.shape != tb.shape:
        raise ValueError(f"image batches of shapes {tuple(ta.shape)} and {tuple(tb.shape)}; "
                         "expected the same number of images of one shape")
    return ta, tb


def mse(a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
    """Mean squared error per pair, pixels in [0, 1]: mean((a - b)^2). 0 for identical."""
    ta, tb = _pair(a, b)
    return ((ta - tb) ** 2).flatten(1).mean(1).double().numpy()


def psnr(a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
    """Peak signal-to-noise ratio per pair in dB, peak 1: 10 log10(1 / MSE); +inf for
    identical images. Higher is more similar."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse(a, b))


def ssim(a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
    """Structural similarity per pair (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 2004):
    11-pixel Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, channel
    mean (torchmetrics). In [-1, 1]; 1 for identical images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    ta, tb = _pair(a, b)
    out = structural_similarity_index_measure(ta, tb, data_range=1.0, reduction="none")
    return out.double().numpy()


def ms_ssim(a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
    """Multi-scale SSIM per pair (Wang, Simoncelli and Bovik, Asilomar 2003): 5 scales with
    the paper's weights, 11-pixel Gaussian window (torchmetrics). In [0, 1]; 1 for identical.

    Raises:
        MetricUnavailable: an image side is below :data:`MS_SSIM_MIN_SIDE` (176) pixels.
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    ta, tb = _pair(a, b)
    h, w = ta.shape[-2:]
    if min(h, w) < MS_SSIM_MIN_SIDE:
        raise MetricUnavailable(
            f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} pixels "
            f"({MS_SSIM_SCALES} scales, {MS_SSIM_WINDOW}-pixel window), got {h}x{w}")
    out = multiscale_structural_similarity_index_measure(ta, tb, data_range=1.0,
                                                         reduction="none")
    return out.double().numpy()


def cosine_similarity(fa: Any, fb: Any) -> np.ndarray:
    """Cosine similarity of paired feature rows: a.b / (|a| |b|) (e.g. Inception pool3
    features, which need no weights beyond the FID network's). In [-1, 1]; 1 for identical."""
    fa = np.asarray(fa, dtype=np.float64)
    fb = np.asarray(fb, dtype=np.float64)
    if fa.shape != fb.shape or fa.ndim != 2:
        raise ValueError(f"expected two (N, d) arrays of one shape, got {fa.shape}, {fb.shape}")
    norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    if (norms == 0).any():
        raise ValueError("cosine similarity of a zero feature vector is undefined")
    return (fa * fb).sum(1) / norms


# --------------------------------------------------------------------------- weight-backed


def _rgb(t: torch.Tensor) -> torch.Tensor:
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


class LPIPS:
    """LPIPS distance (Zhang, Isola, Efros, Shechtman and Wang, CVPR 2018), ``lpips`` package,
    AlexNet backbone, v0.1 linear heads (shipped in the package). Lower is more similar.

    The backbone's ImageNet weights are read from the torch hub cache
    (``torch.hub.get_dir()/checkpoints``) only; without them :class:`MetricUnavailable` is
    raised (``lpips`` would otherwise download them, and ``pnet_rand=True`` is not LPIPS).
    """

    name = "lpips"

    def __init__(self, device: str = "cpu"):
        try:
            import lpips  # noqa: F401
            from torchvision.models import AlexNet_Weights
        except ImportError as err:
            raise MetricUnavailable(f"LPIPS unavailable: {err}; install the `perceptual` extra "
                                    "(pip install 'fairsynth-bench[perceptual]')") from None
        url = AlexNet_Weights.IMAGENET1K_V1.url
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if not path.is_file():
            raise MetricUnavailable(
                f"LPIPS unavailable: AlexNet ImageNet weights not in the torch hub cache ({path});"
                f" download {url} there")
        import lpips

        self.device = torch.device(device)
        self.model = lpips.LPIPS(net="alex", version="0.1", verbose=False).to(self.device).eval()

    def __call__(self, a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
        ta, tb = _pair(a, b)
        with torch.inference_mode():
            d = self.model(_rgb(ta).to(self.device), _rgb(tb).to(self.device), normalize=True)
        return d.flatten().double().cpu().numpy()


#: Files the DreamSim "ensemble" model needs in its cache folder (dreamsim 0.2).
DREAMSIM_FILES = ("dino_vitb16_pretrain.pth", "open_clip_vitb16_pretrain.pth.tar",
                  "clip_vitb16_pretrain.pth.tar", "ensemble_lora")


def default_dreamsim_dir() -> Path:
    """``$DREAMSIM_CACHE`` (default ``~/.cache/dreamsim``)."""
    return Path(os.environ.get("DREAMSIM_CACHE", "~/.cache/dreamsim")).expanduser()


class DreamSim:
    """DreamSim distance (Fu, Tamir, Sundaram, Chai, Zhang, Dekel and Isola, NeurIPS 2023),
    ``dreamsim`` package, ensemble model; 1 - cosine of its embeddings, lower is more similar.

    Loads only from a cache folder that already holds the checkpoints (``cache_dir``, default
    :func:`default_dreamsim_dir`); otherwise :class:`MetricUnavailable` (``dreamsim`` would
    download them, with ``pretrained=False`` too).
    """

    name = "dreamsim"

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, device: str = "cpu"):
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_dreamsim_dir()
        missing = [f for f in DREAMSIM_FILES if not (folder / f).exists()]
        if missing:
            raise MetricUnavailable(
                f"DreamSim unavailable: {', '.join(missing)} not in {folder}; put the DreamSim "
                "ensemble checkpoints there (or set DREAMSIM_CACHE)")
        try:
            from dreamsim import dreamsim
        except ImportError as err:
            raise MetricUnavailable(f"DreamSim unavailable: {err}; install the `perceptual` "
                                    "extra (pip install 'fairsynth-bench[perceptual]')") from None
        self.device = torch.device(device)
        try:
            self.model, _ = dreamsim(pretrained=True, device=str(self.device),
                                     cache_dir=str(folder))
        except OSError as err:  # e.g. a hub download attempted offline
            raise MetricUnavailable(f"DreamSim unavailable: loading from {folder} failed: "
                                    f"{err}") from None

    def __call__(self, a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
        import torch.nn.functional as F

        ta, tb = _pair(a, b)
        size = (224, 224)
        ta = F.interpolate(_rgb(ta), size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        tb = F.interpolate(_rgb(tb), size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        with torch.inference_mode():
            d = self.model(ta.to(self.device), tb.to(self.device))
        return d.flatten().double().cpu().numpy()


# --------------------------------------------------------------------------- diversity

PairFn = Callable[[Sequence[Any], Sequence[Any]], np.ndarray]


def _one_minus(fn: PairFn) -> PairFn:
    return lambda a, b: 1.0 - fn(a, b)


#: Image dissimilarities for diversity (0 for identical images): name -> pair function.
PIXEL_DISSIMILARITIES: dict[str, PairFn] = {
    "mse": mse,
    "ssim": _one_minus(ssim),
    "ms_ssim": _one_minus(ms_ssim),
}
#: Diversity from features: 1 - cosine similarity of Inception features.
FEATURE_DISSIMILARITY = "inception_cosine"


def dissimilarities(device: str = "cpu", dreamsim_dir: str | os.PathLike[str] | None = None
                    ) -> tuple[dict[str, PairFn], dict[str, str]]:
    """The image dissimilarities available here (pixel ones always; LPIPS and DreamSim when
    their weights are cached), and ``{name: one-line reason}`` for the unavailable ones."""
    fns: dict[str, PairFn] = dict(PIXEL_DISSIMILARITIES)
    missing: dict[str, str] = {}
    for name, make in (("lpips", lambda: LPIPS(device)),
                       ("dreamsim", lambda: DreamSim(dreamsim_dir, device))):
        try:
            fns[name] = make()
        except MetricUnavailable as err:
            missing[name] = str(err)
    return fns, missing


def sample_pairs(n: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct unordered pairs (i < j) of ``n`` items: all ``n(n-1)/2`` of them when that is
    at most ``max_pairs``, else ``max_pairs`` drawn without replacement (seeded)."""
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i, j
    k = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    # Invert k = i*n - i*(i+1)/2 + (j - i - 1), the row-major index of (i, j) in the upper
    # triangle: i = n - 2 - floor(sqrt(-8k + 4n(n-1) - 7) / 2 - 1/2).
    i = n - 2 - np.floor(np.sqrt(-8.0 * k + 4.0 * n * (n - 1) - 7.0) / 2.0 - 0.5).astype(np.int64)
    j = k + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2
    return i, j.astype(np.int64)


@dataclass(frozen=True)
class Diversity:
    """Mean pairwise dissimilarity of a set; ``value`` None with a ``reason`` if undefined."""

    value: float | None
    n_images: int
    n_pairs: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_pairwise_diversity(
    items: Sequence[Any],
    dissimilarity: PairFn | Callable[[Any, Any], np.ndarray],
    *,
    max_pairs: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
) -> Diversity:
    """Mean of ``dissimilarity(items[i], items[j])`` over distinct pairs i < j (all pairs, or
    ``max_pairs`` seeded ones; see :func:`sample_pairs`).

    ``items`` are images for an image dissimilarity, or a (N, d) feature array with
    ``dissimilarity = lambda a, b: 1 - cosine_similarity(a, b)``. Fewer than 2 items, or a
    measure that is unavailable for these images (:class:`MetricUnavailable`), give
    ``value=None`` with the reason.
    """
    n = len(items)
    if n < 2:
        return Diversity(None, n, 0, "fewer than 2 images")
    as_array = isinstance(items, np.ndarray)
    if not as_array:
        shapes = {to_uint8_array(it, index=k).shape for k, it in enumerate(items)}
        if len(shapes) > 1:
            return Diversity(None, n, 0, f"images of {len(shapes)} different shapes; pixel "
                                         "measures compare images of one size")
    i, j = sample_pairs(n, max_pairs, seed)
    values = []
    try:
        for s in range(0, len(i), batch_size):
            bi, bj = i[s : s + batch_size], j[s : s + batch_size]
            a = items[bi] if as_array else [items[t] for t in bi]
            b = items[bj] if as_array else [items[t] for t in bj]
            values.append(np.asarray(dissimilarity(a, b), dtype=np.float64))
    except MetricUnavailable as err:
        return Diversity(None, n, 0, str(err))
    v = np.concatenate(values)
    if not np.isfinite(v).all():
        return Diversity(None, n, len(v), "non-finite dissimilarity")
    return Diversity(float(v.mean()), n, len(v))
