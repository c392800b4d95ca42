"""The saliency diversity metric (SDM) of the sketch-conditioned augmentation paper.

Kim & Hong, "Multi-Modal Medical Image Augmentation for Controlled Heterogeneity and Fair
Outcomes" (ICML 2025 workshop on Reliable and Responsible Foundation Models) propose a
diversity metric that "simultaneously measures semantic feature-space coverage and pixel-level
dispersion ... [and] captures intra-class spread and boundary sharpness without human
annotations". No reference code was released, so this module fixes a precise definition.
No maintained library implements it; it is written here.

Definition (per class ``c``; ``G`` the generated images of ``c``, ``R`` real images of ``c``
used as the reference, ``H`` *held-out* real images of ``c`` that calibrate the scale):

(a) **Semantic coverage** ``C(G, R)``: coverage of Naeem et al. (ICML 2020) in a feature space
    (Inception pool features, or a domain space): the fraction of reference samples ``r``
    whose k-nearest-neighbour ball (radius = distance from ``r`` to its k-th nearest other
    reference sample) contains at least one generated sample.

(b) **Saliency-weighted pixel dispersion** ``D(G)``: with ``S_i = |d f_c(x_i) / d x_i|``
    the vanilla gradient saliency (Simonyan et al., ICLR 2014 workshop) of the task's
    classifier ``f`` for class ``c`` (absolute gradient, maximum over channels, each map
    normalised to sum 1) and ``S_bar`` the mean map over the set,
    ``D(G) = sum_p S_bar(p) Var_i[x_i(p)]`` (pixels in [0, 1], variance over the images of the
    set, averaged over channels). Since ``Var_i`` is half the mean squared difference of all
    pairs, this is the saliency-weighted mean pairwise pixel dispersion (divided by 2).

(c) **Salient boundary sharpness** ``B(G)``: the mean over images of
    ``sum_p S_i(p) |grad x_i|(p)``, the Sobel gradient magnitude (``scipy.ndimage.sobel``
    along both axes, divided by 8 so a unit step edge has magnitude 1) weighted by the image's
    own saliency map, i.e. how sharp the image is where the classifier looks.

Each is normalised by the same quantity on held-out real images, so 1.0 means "as diverse
(as sharp) as real": ``r_C = C(G, R) / C(H, R)``, ``r_D = D(G) / D(H)``,
``r_B = B(G) / B(H)``. The **combined score** is the geometric mean
``SDM = (min(r_C, 1) * min(r_D, 1/r_D) * min(r_B, 1/r_B)) ** (1/3)``: in [0, 1], 1 = as diverse
and as sharp as real; mode collapse lowers ``r_C`` and ``r_D``; blur lowers ``r_B``; noise
raises ``r_D`` and ``r_B`` above 1, which also lowers the score (excess dispersion or
spurious edges are not diversity). The choices (vanilla gradients, Sobel, the folding of
ratios above 1) are ours and are documented in the metric cards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from .prdc import kth_nn_sq_radius, sq_distances

#: Result keys.
KEY_SDM = "saliency_diversity"

Classifier = Callable[[torch.Tensor], torch.Tensor]


def _as_batch(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Images as float32 (N, C, H, W) in [0, 1] from uint8 (H, W) / (H, W, C) arrays."""
    arrays = [np.asarray(im) for im in images]
    if not arrays:
        raise ValueError("no images given")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images must all have one shape, got {sorted(shapes)}")
    x = np.stack(arrays)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays, got {x.dtype}")
    x = x.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


def gradient_saliency(classifier: Classifier, images: np.ndarray, target: int, *,
                      batch_size: int = 64) -> np.ndarray:
    """Vanilla gradient saliency maps (N, H, W), each summing to 1.

    ``S_i(p) = max_channel |d logit_target / d x_i(p)|`` for float images (N, C, H, W) in
    [0, 1]; a map that is all zero (a classifier flat around the image) becomes uniform.
    """
    maps = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).requires_grad_(True)
        with torch.enable_grad():
            logits = classifier(x)
            if logits.ndim != 2 or not 0 <= target < logits.shape[1]:
                raise ValueError(f"classifier returned logits of shape {tuple(logits.shape)}; "
                                 f"expected (N, n_classes) with class {target}")
            (grad,) = torch.autograd.grad(logits[:, target].sum(), x)
        s = grad.abs().amax(dim=1).double()
        total = s.sum(dim=(1, 2), keepdim=True)
        uniform = torch.full_like(s, 1.0 / (s.shape[1] * s.shape[2]))
        s = torch.where(total > 0, s / total.clamp_min(1e-300), uniform)
        maps.append(s.numpy())
    return np.concatenate(maps)


def weighted_dispersion(images: np.ndarray, saliency: np.ndarray) -> float:
    """``D = sum_p S_bar(p) Var_i[x_i(p)]`` (population variance over images, mean over
    channels; ``S_bar`` the mean of the per-image maps, renormalised to sum 1)."""
    s_bar = saliency.mean(axis=0)
    s_bar = s_bar / s_bar.sum()
    var = images.astype(np.float64).var(axis=0).mean(axis=0)  # (H, W)
    return float((s_bar * var).sum())


def sobel_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a (C, H, W) image, mean over channels, scaled so a unit step
    edge has magnitude 1 (scipy's Sobel kernel sums its smoothing taps to 4 and the difference
    spans 2 pixels, hence / 8)."""
    mags = []
    for ch in image.astype(np.float64):
        gx = ndimage.sobel(ch, axis=1, mode="nearest") / 8.0
        gy = ndimage.sobel(ch, axis=0, mode="nearest") / 8.0
        mags.append(np.hypot(gx, gy))
    return np.mean(mags, axis=0)


def salient_sharpness(images: np.ndarray, saliency: np.ndarray) -> float:
    """``B = mean_i sum_p S_i(p) |grad x_i|(p)`` (Sobel magnitude, per-image saliency)."""
    return float(np.mean([(s * sobel_magnitude(x)).sum()
                          for x, s in zip(images, saliency, strict=True)]))


def coverage(reference: np.ndarray, candidate: np.ndarray, *, k: int = 5) -> float:
    """Coverage of Naeem et al. (2020): the fraction of reference points whose k-NN ball
    (radius to their k-th nearest other reference point) holds at least one candidate.
    The same k-NN radii and closed balls as :func:`benchmark.metrics.prdc.prdc`'s coverage,
    without the candidate set's own radii (which ``prdc`` needs for recall), so a candidate set
    of any size >= 1 is scored (reference = real)."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(candidate, dtype=np.float64)
    if len(x) <= k:
        raise ValueError(f"coverage needs more than k={k} reference samples, got {len(x)}")
    if len(y) == 0 or y.ndim != 2 or y.shape[1] != x.shape[1]:
        raise ValueError(f"candidate features must be (M >= 1, {x.shape[1]}), got {y.shape}")
    nx, ny = (x * x).sum(1), (y * y).sum(1)
    radius = kth_nn_sq_radius(sq_distances(nx, nx, x @ x.T), k)
    return float(np.mean(sq_distances(nx, ny, x @ y.T).min(axis=1) <= radius))


@dataclass(frozen=True)
class SaliencyDiversity:
    """The SDM of one class: the three ratios, their raw values and the combined score."""

    score: float | None
    coverage_ratio: float | None
    dispersion_ratio: float | None
    sharpness_ratio: float | None
    coverage: float
    coverage_heldout: float
    dispersion: float
    dispersion_heldout: float
    sharpness: float
    sharpness_heldout: float
    n_generated: int
    n_reference: int
    n_heldout: int

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _fold(r: float | None, *, cap_only: bool = False) -> float | None:
    if r is None:
        return None
    return min(r, 1.0) if cap_only else (min(r, 1.0 / r) if r > 0 else 0.0)


def saliency_diversity(
    *,
    generated: Sequence[np.ndarray],
    heldout: Sequence[np.ndarray],
    generated_features: np.ndarray,
    reference_features: np.ndarray,
    heldout_features: np.ndarray,
    classifier: Classifier,
    target: int,
    k: int = 5,
) -> SaliencyDiversity:
    """The saliency diversity metric of one class (see the module docstring for the formula).

    Args:
        generated, heldout: uint8 images (H, W) or (H, W, C) of the class: the generated set
            and held-out real images (the calibration set).
        generated_features, heldout_features: their feature vectors (N, d), same row order.
        reference_features: features of the real reference images of the class (the coverage
            target; disjoint from the held-out set), in the same feature space.
        classifier: the task's classifier, float (N, C, H, W) in [0, 1] -> logits.
        target: the class index of ``c`` in the classifier's logits.
        k: nearest neighbours of the coverage radius.
    """
    g, h = _as_batch(generated), _as_batch(heldout)
    if g.shape[1:] != h.shape[1:]:
        raise ValueError(f"generated images {g.shape[1:]} and held-out images {h.shape[1:]} "
                         "differ in shape")
    for name, feats, imgs in (("generated", generated_features, g),
                              ("heldout", heldout_features, h)):
        if len(feats) != len(imgs):
            raise ValueError(f"{name}: {len(feats)} feature rows for {len(imgs)} images")
    s_g = gradient_saliency(classifier, g, target)
    s_h = gradient_saliency(classifier, h, target)
    cov_g = coverage(reference_features, generated_features, k=k)
    cov_h = coverage(reference_features, heldout_features, k=k)
    disp_g, disp_h = weighted_dispersion(g, s_g), weighted_dispersion(h, s_h)
    sharp_g, sharp_h = salient_sharpness(g, s_g), salient_sharpness(h, s_h)
    r_c, r_d, r_b = _ratio(cov_g, cov_h), _ratio(disp_g, disp_h), _ratio(sharp_g, sharp_h)
    parts = (_fold(r_c, cap_only=True), _fold(r_d), _fold(r_b))
    score = None if any(p is None for p in parts) else math.prod(parts) ** (1.0 / 3.0)
    return SaliencyDiversity(
        score=score, coverage_ratio=r_c, dispersion_ratio=r_d, sharpness_ratio=r_b,
        coverage=cov_g, coverage_heldout=cov_h, dispersion=disp_g, dispersion_heldout=disp_h,
        sharpness=sharp_g, sharpness_heldout=sharp_h, n_generated=len(g),
        n_reference=len(reference_features), n_heldout=len(h),
    )
