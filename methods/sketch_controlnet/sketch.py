"""Sketches of real images: DiffSketcher-style stroke initialisation, an optimisation that makes
the rendering match the image's structure, and Kim & Hong's similarity-penalised multi-sketch
(Eq. 6).

Pipeline for one image (:func:`extract_sketches`, batched over images and their n sketches):

1. **Structure target**: XDoG edges of the image (:func:`xdog`; DiffSketcher's
   ``libs/modules/edge_map/DoG/XDoG.py`` with its defaults gamma 0.98, phi 200, eps -0.1,
   sigma 0.8, k 10, Otsu-binarised), taken as ink: E = 1 - XDoG.
2. **Initialisation** (DiffSketcher ``painter_params.py``): stroke starts drawn without
   replacement from softmax(A / 0.5) over the pixels where A > 0, A = (1 - XDoG) x saliency.
   DiffSketcher's saliency is Stable Diffusion's cross/self attention; here (offline, every
   profile) it is the image's Sobel gradient magnitude (:func:`init_map`; documented
   substitute). The other 3 control points are a random walk p_{k+1} = p_k + 0.05 (U - 1/2)
   (U uniform in [0, 1]^2); width 1.5 px, opacity optimised.
3. **Fidelity** (offline substitute of DiffSketcher's score distillation + CLIP/LPIPS terms):
   L_fid = mean((G * ink - G * E)^2), G a Gaussian blur (sigma ``blur`` px) that gives the
   gradients reach. Adam, lr ``lr_points`` px for the points (DiffSketcher: 1.0 in pixels),
   ``lr_opacity`` for opacities (0.01); the edge softness anneals linearly from
   ``softness_start`` to ``softness_end`` px.
4. **Similarity loss** (Kim & Hong Eq. 6) over the n sketches x_1..x_n of one image, from
   iteration ``start_iteration`` on: the paper writes
   L_sim = alpha mean_{j != i}(1 - s(x_i, x_j)) + (1 - alpha) mean_{j != i}(1 - l(x_i, x_j))
   and says it *decreases* similarity; minimising it as written would make the sketches
   alike, so the stated intent is implemented: the loss adds
   ``similarity_weight`` x (alpha mean s + (1 - alpha) mean l), i.e. maximises L_sim.
   s is high-level (``high_level``: ``dreamsim`` when its weights are in the local cache;
   offline substitute ``layout``: cosine similarity of the 4x4 and 8x8 average-pooled ink,
   a coarse spatial-layout descriptor), l low-level (``low_level``): ``mse`` (1 - MSE),
   ``psnr`` (PSNR / 40 dB, MSE floored at 1e-4), ``ssim`` (torchmetrics SSIM, 7-px window),
   ``lpips`` (1 - LPIPS, AlexNet weights from the torch hub cache only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .strokes import render_strokes

LOW_LEVEL = ("mse", "psnr", "ssim", "lpips")
HIGH_LEVEL = ("layout", "dreamsim")
PSNR_CAP_DB = 40.0


@dataclass(frozen=True)
class SketchConfig:
    """Options of sketch extraction (see the module docstring; defaults: DiffSketcher's where
    it has one, sized for the smoke profile otherwise)."""

    strokes: int = 24
    width: float = 1.5
    iterations: int = 60
    canvas: int = 32  # optimisation canvas (px); strokes are vectors, rendered at any size
    samples: int = 8  # Bezier samples per stroke
    lr_points: float = 1.0  # pixels of the canvas
    lr_opacity: float = 0.01
    softmax_temp: float = 0.5
    walk_radius: float = 0.05
    softness_start: float = 1.5
    softness_end: float = 0.5
    blur: float = 1.0
    n: int = 1  # sketches per image, optimised together
    alpha: float = 0.5
    start_iteration: int = 100  # the paper's; at smoke, set below ``iterations``
    similarity_weight: float = 0.0  # 0: no similarity loss
    low_level: str = "mse"
    high_level: str = "layout"

    def __post_init__(self) -> None:
        if self.low_level not in LOW_LEVEL:
            raise ValueError(f"sketch low_level={self.low_level!r}; expected one of "
                             f"{', '.join(LOW_LEVEL)}")
        if self.high_level not in HIGH_LEVEL:
            raise ValueError(f"sketch high_level={self.high_level!r}; expected one of "
                             f"{', '.join(HIGH_LEVEL)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"sketch alpha={self.alpha}: expected a value in [0, 1]")
        for key in ("strokes", "iterations", "canvas", "n"):
            if getattr(self, key) < 1:
                raise ValueError(f"sketch {key}={getattr(self, key)}: expected >= 1")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Sketch:
    """One sketch: S cubic Bezier strokes (points (S, 4, 2) in [0, 1]^2, x right, y down),
    widths (S,) in pixels of a ``canvas`` x ``canvas`` image and opacities (S,)."""

    points: np.ndarray
    widths: np.ndarray
    opacities: np.ndarray
    canvas: int

    def render(self, size: int, *, supersample: int = 2) -> np.ndarray:
        """The ink (size, size) in [0, 1], widths scaled to ``size``."""
        ink = render_strokes(torch.from_numpy(self.points).float()[None],
                             torch.from_numpy(self.widths).float()[None] * size / self.canvas,
                             torch.from_numpy(self.opacities).float()[None], size=size,
                             supersample=supersample, softness=0.5)
        return ink[0].numpy()

    def image(self, size: int):
        """Black strokes on white as an 8-bit grayscale PIL image."""
        from PIL import Image

        return Image.fromarray(np.round(255 * (1 - self.render(size))).astype(np.uint8), "L")

    def svg(self, size: int) -> str:
        from .strokes import strokes_to_svg

        return strokes_to_svg(self.points, self.widths * size / self.canvas, self.opacities,
                              size)


def sketch_images(sketches: Sequence[Sketch], size: int, *, supersample: int = 1,
                  samples: int = 12, batch: int = 64) -> list:
    """The sketches as 8-bit grayscale PIL images (black strokes on white), rendered in
    batches of sketches with one stroke count (the soft 0.5-px edge anti-aliases; no
    supersampling by default: the final rendering of a whole plan's sketches is the
    renderer's largest job)."""
    from PIL import Image

    out: list = [None] * len(sketches)
    by_count: dict[tuple[int, int], list[int]] = {}
    for i, sk in enumerate(sketches):
        by_count.setdefault((len(sk.points), sk.canvas), []).append(i)
    for (_, canvas), idx in by_count.items():
        for lo in range(0, len(idx), batch):
            part = idx[lo:lo + batch]
            pts = torch.from_numpy(np.stack([sketches[i].points for i in part])).float()
            wid = torch.from_numpy(np.stack([sketches[i].widths for i in part])).float()
            op = torch.from_numpy(np.stack([sketches[i].opacities for i in part])).float()
            with torch.no_grad():
                ink = render_strokes(pts, wid * size / canvas, op, size=size,
                                     samples=samples, supersample=supersample,
                                     softness=0.5).numpy()
            for i, x in zip(part, ink, strict=True):
                out[i] = Image.fromarray(np.round(255 * (1 - x)).astype(np.uint8), "L")
    return out


# --------------------------------------------------------------------------- maps


def _gray(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        x = x.mean(axis=-1) if x.shape[-1] in (3, 4) else x.mean(axis=0)
    return x / 255.0 if x.max() > 1.0 else x


def xdog(image: np.ndarray, *, gamma: float = 0.98, phi: float = 200.0, eps: float = -0.1,
         sigma: float = 0.8, k: float = 10.0, binarize: bool = True) -> np.ndarray:
    """XDoG (Winnemoeller, Kyprianidis and Olsen, Computers & Graphics 2012) as DiffSketcher
    computes it: D = G_sigma(x) - gamma G_{k sigma}(x); T = 1 where D < eps, else
    1 + tanh(phi D); min-max normalised; binarised at its Otsu threshold. White (1) background,
    dark (0) lines; ``image`` grayscale or RGB, uint8 or in [0, 1]."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    x = _gray(image)
    d = ndimage.gaussian_filter(x, sigma) - gamma * ndimage.gaussian_filter(x, sigma * k)
    t = np.where(d < eps, 1.0, 1.0 + np.tanh(phi * d))
    t = t - t.min()
    if t.max() > 0:
        t = t / t.max()
    if binarize and t.min() < t.max():
        t = (t >= threshold_otsu(t)).astype(np.float64)
    return t


def init_map(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The stroke-start map A = E x saliency, min-max normalised: E = 1 - XDoG the edges and
    the saliency the Sobel gradient magnitude of the image (the offline substitute of
    DiffSketcher's attention map)."""
    from scipy import ndimage

    x = _gray(image)
    sal = np.hypot(ndimage.sobel(x, axis=0), ndimage.sobel(x, axis=1))
    a = edges * sal
    if a.max() <= 0:  # no edge: fall back to the gradient magnitude, then uniform
        a = sal if sal.max() > 0 else np.ones_like(x)
    return (a - a.min()) / max(a.max() - a.min(), 1e-12)


def initial_strokes(amap: np.ndarray, n_strokes: int, *, temp: float, radius: float,
                    rng: np.random.Generator) -> np.ndarray:
    """(S, 4, 2) control points: starts drawn without replacement from softmax(A / temp) over
    the pixels with A > 0 (DiffSketcher's ``set_inds_ldm``), then a random walk of 3 steps
    of radius * (U - 1/2)."""
    h, w = amap.shape
    flat = amap.reshape(-1)
    pos = np.flatnonzero(flat > 0)
    p = np.exp((flat[pos] - flat[pos].max()) / temp)
    p = p / p.sum()
    take = rng.choice(pos, size=min(n_strokes, len(pos)), replace=False, p=p)
    if len(take) < n_strokes:  # fewer candidate pixels than strokes: reuse them
        take = np.concatenate([take, rng.choice(pos, size=n_strokes - len(take), p=p)])
    rows, cols = np.unravel_index(take, (h, w))
    start = np.stack([(cols + 0.5) / w, (rows + 0.5) / h], axis=-1)
    steps = radius * (rng.random((n_strokes, 3, 2)) - 0.5)
    return np.concatenate([start[:, None], start[:, None] + np.cumsum(steps, axis=1)], axis=1)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.asarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="area")[0, 0].numpy()


def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2
                  / (2 * sigma**2))
    g = g / g.sum()
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))


# --------------------------------------------------------------------------- similarities

PairSim = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def low_level_similarity(name: str, device: str = "cpu") -> PairSim:
    """l(a, b) per pair of (P, 1, H, W) renderings in [0, 1] (white background): 1 for
    identical images. ``mse``: 1 - MSE; ``psnr``: PSNR / 40 dB with MSE floored at 1e-4
    (identical: 1); ``ssim``: SSIM (torchmetrics, Gaussian 7-px window, data range 1);
    ``lpips``: 1 - LPIPS (AlexNet, weights from the torch hub cache, else
    :class:`benchmark.metrics.similarity.MetricUnavailable`)."""
    if name == "mse":
        return lambda a, b: 1.0 - ((a - b) ** 2).flatten(1).mean(1)
    if name == "psnr":
        return lambda a, b: (10 * torch.log10(1.0 / ((a - b) ** 2).flatten(1).mean(1)
                                              .clamp_min(10 ** (-PSNR_CAP_DB / 10)))
                             / PSNR_CAP_DB)
    if name == "ssim":
        from torchmetrics.functional.image import structural_similarity_index_measure

        return lambda a, b: structural_similarity_index_measure(
            a, b, data_range=1.0, kernel_size=7, reduction="none")
    if name == "lpips":
        from benchmark.metrics.similarity import LPIPS

        model = LPIPS(device=device).model
        return lambda a, b: 1.0 - model(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1),
                                        normalize=True).flatten()
    raise ValueError(f"low-level similarity {name!r}; expected one of {', '.join(LOW_LEVEL)}")


def high_level_similarity(name: str, device: str = "cpu") -> PairSim:
    """s(a, b) per pair of (P, 1, H, W) renderings in [0, 1]: ``dreamsim``: 1 - DreamSim
    distance (weights from its local cache, else
    :class:`benchmark.metrics.similarity.MetricUnavailable`); ``layout`` (the offline
    substitute): cosine similarity of the concatenated 4x4 and 8x8 average-pooled ink."""
    if name == "layout":
        def layout(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            fa = torch.cat([F.adaptive_avg_pool2d(1 - a, k).flatten(1) for k in (4, 8)], 1)
            fb = torch.cat([F.adaptive_avg_pool2d(1 - b, k).flatten(1) for k in (4, 8)], 1)
            return F.cosine_similarity(fa, fb, dim=1, eps=1e-8)
        return layout
    if name == "dreamsim":
        from benchmark.metrics.similarity import DreamSim

        model = DreamSim(device=device).model

        def dreamsim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            up = lambda t: F.interpolate(t.expand(-1, 3, -1, -1), size=(224, 224),  # noqa: E731
                                         mode="bicubic", align_corners=False).clamp(0, 1)
            return 1.0 - model(up(a), up(b)).flatten()
        return dreamsim
    raise ValueError(f"high-level similarity {name!r}; expected one of {', '.join(HIGH_LEVEL)}")


def similarity_penalty(images: torch.Tensor, *, alpha: float, low: PairSim, high: PairSim
                       ) -> torch.Tensor:
    """alpha mean_{i != j} s(x_i, x_j) + (1 - alpha) mean_{i != j} l(x_i, x_j), per image:
    ``images`` (B, n, H, W) renderings of n sketches of each of B images; returns (B,).
    Minimising it maximises Kim & Hong's Eq. 6 (the sketches' mean pairwise distances)."""
    b, n, h, w = images.shape
    ii, jj = zip(*[(i, j) for i in range(n) for j in range(n) if i != j], strict=True)
    xa = images[:, list(ii)].reshape(-1, 1, h, w)
    xb = images[:, list(jj)].reshape(-1, 1, h, w)
    s = high(xa, xb).view(b, -1).mean(1) if alpha > 0 else images.new_zeros(b)
    l_ = low(xa, xb).view(b, -1).mean(1) if alpha < 1 else images.new_zeros(b)
    return alpha * s + (1 - alpha) * l_


# --------------------------------------------------------------------------- extraction


def extract_sketches(images: Sequence[np.ndarray], config: SketchConfig, *, seed: int,
                     device: str = "cpu") -> list[list[Sketch]]:
    """``config.n`` sketches of each image (uint8 or [0, 1] arrays, grayscale or RGB),
    optimised together; the i-th image's strokes are seeded by (seed, i, sketch index).
    Returns, per image, its n :class:`Sketch` objects."""
    c = config
    if not len(images):
        return []
    targets, starts = [], []
    for i, im in enumerate(images):
        edges = 1.0 - xdog(im)
        amap = init_map(im, edges)
        targets.append(_resize(edges, c.canvas))
        small = _resize(amap, c.canvas)
        for k in range(c.n):
            rng = np.random.default_rng([seed, i, k])
            starts.append(initial_strokes(small, c.strokes, temp=c.softmax_temp,
                                          radius=c.walk_radius, rng=rng))
    b = len(images)
    dev = torch.device(device)
    target = torch.from_numpy(np.stack(targets)).float().to(dev)[:, None]  # (B, 1, H, W)
    target_blur = _gauss(target, c.blur)
    pts = torch.from_numpy(np.stack(starts)).float().to(dev).requires_grad_(True)
    # opacities through a sigmoid keep them in (0, 1); they start at 0.8, where
    # d opacity / d logit = 0.8 x 0.2: the logit's lr makes lr_opacity the opacity's step
    logit = torch.full((b * c.n, c.strokes), float(np.log(0.8 / 0.2)), device=dev,
                       requires_grad=True)
    widths = torch.full((b * c.n, c.strokes), c.width, device=dev)
    opt = torch.optim.Adam([{"params": [pts], "lr": c.lr_points / c.canvas},
                            {"params": [logit], "lr": c.lr_opacity / (0.8 * 0.2)}])
    use_sim = c.similarity_weight > 0 and c.n > 1
    low = low_level_similarity(c.low_level, device) if use_sim else None
    high = high_level_similarity(c.high_level, device) if use_sim and c.alpha > 0 else None
    for it in range(c.iterations):
        frac = it / max(c.iterations - 1, 1)
        soft = c.softness_start + (c.softness_end - c.softness_start) * frac
        ink = render_strokes(pts, widths, torch.sigmoid(logit), size=c.canvas,
                             samples=c.samples, softness=soft)
        ink = ink.view(b, c.n, c.canvas, c.canvas)
        blurred = _gauss(ink.reshape(b * c.n, 1, c.canvas, c.canvas), c.blur)
        fid = ((blurred.view(b, c.n, c.canvas, c.canvas) - target_blur) ** 2).mean()
        loss = fid
        if use_sim and it >= c.start_iteration:
            pen = similarity_penalty(1.0 - ink, alpha=c.alpha, low=low, high=high or low)
            loss = loss + c.similarity_weight * pen.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            pts.clamp_(0.0, 1.0)
    p = pts.detach().cpu().numpy().reshape(b, c.n, c.strokes, 4, 2)
    o = torch.sigmoid(logit).detach().cpu().numpy().reshape(b, c.n, c.strokes)
    w = widths.cpu().numpy().reshape(b, c.n, c.strokes)
    return [[Sketch(p[i, k], w[i, k], o[i, k], c.canvas) for k in range(c.n)]
            for i in range(b)]


def edge_recall(sketch_ink: np.ndarray, edges: np.ndarray, *, tolerance: int = 1,
                threshold: float = 0.5) -> float:
    """The share of the image's edge pixels (E > 0.5) within ``tolerance`` pixels (a
    (2t + 1)^2 square) of an inked pixel (ink > ``threshold``): how much of the salient
    structure the sketch covers. 1.0 for an image without edges."""
    from scipy import ndimage

    e = edges > 0.5
    if not e.any():
        return 1.0
    near = ndimage.maximum_filter((sketch_ink > threshold).astype(np.uint8),
                                  size=2 * tolerance + 1) > 0
    return float((near & e).sum() / e.sum())
