"""Kernel Inception Distance: the unbiased MMD^2 with a cubic polynomial kernel.

Written here rather than taken from torchmetrics/torch-fidelity because those compute the
kernel per subset from images (and download their Inception weights); here the kernel matrices
come once from cached features and serve every subset, subgroup and bootstrap replicate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Default subset size and number of subsets (Bińkowski et al.'s and torch-fidelity's).
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100


def polynomial_kernel(x: Any, y: Any) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for all row pairs: the KID kernel (degree 3, gamma 1/d,
    coef0 1), as a (len(x), len(y)) float64 array."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_from_gram(gram: np.ndarray, dim: int) -> np.ndarray:
    """The KID kernel from a Gram matrix of dot products: (G / d + 1)^3."""
    return (gram / dim + 1.0) ** 3


def mmd2_unbiased(
    kxx: np.ndarray,
    kyy: np.ndarray,
    kxy: np.ndarray,
    wx: np.ndarray | None = None,
    wy: np.ndarray | None = None,
) -> float:
    """Unbiased estimate of MMD^2 from kernel matrices (Gretton et al., JMLR 2012, eq. 3).

    .. math::

        \\widehat{MMD}^2 = \\frac{1}{m(m-1)} \\sum_{i \\ne j} k(x_i, x_j)
            + \\frac{1}{n(n-1)} \\sum_{i \\ne j} k(y_i, y_j)
            - \\frac{2}{mn} \\sum_{i, j} k(x_i, y_j)

    With integer weights (bootstrap counts) ``wx``/``wy`` row i stands for ``wx[i]`` copies;
    pairs of copies of the same image are left out of the within-set sums (so a resample with
    duplicates is still an average over pairs of distinct images):
    ``sum_{i != j} w_i w_j k_ij / sum_{i != j} w_i w_j``. Needs at least 2 rows on each side.
    """
    m, n = kxx.shape[0], kyy.shape[0]
    wx = np.ones(m) if wx is None else np.asarray(wx, dtype=np.float64)
    wy = np.ones(n) if wy is None else np.asarray(wy, dtype=np.float64)

    def within(k: np.ndarray, w: np.ndarray) -> float:
        pairs = w.sum() ** 2 - (w * w).sum()
        if pairs <= 0:
            raise ValueError("MMD^2 needs at least 2 distinct rows on each side")
        return float((w @ k @ w - (w * w) @ np.diagonal(k)) / pairs)

    cross = float(wx @ kxy @ wy / (wx.sum() * wy.sum()))
    return within(kxx, wx) + within(kyy, wy) - 2.0 * cross


@dataclass(frozen=True)
class KIDResult:
    """KID as the mean of the unbiased MMD^2 over subsets, and its std over subsets."""

    value: float
    std: float
    subset_size: int
    n_subsets: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kid_subset_size(n_real: int, n_synthetic: int, subset_size: int = KID_SUBSET_SIZE) -> int:
    """The subset size used for sets of ``n_real`` and ``n_synthetic`` images.

    ``subset_size`` (1000) when both sides have at least twice that; otherwise half the
    smaller side, ``min(n_real, n_synthetic) // 2``, so that subsets still differ and their
    std means something (at the full size every subset would be the whole set); at least 2,
    and the whole smaller side when it has fewer than 4 images. Needs 2 images a side.
    """
    n = min(n_real, n_synthetic)
    if n < 2:
        raise ValueError(f"KID needs at least 2 images on each side, got {n_real} real and "
                         f"{n_synthetic} synthetic")
    return min(subset_size, max(n // 2, 2))


def kid_from_kernels(
    kxx: np.ndarray,
    kyy: np.ndarray,
    kxy: np.ndarray,
    *,
    subset_size: int = KID_SUBSET_SIZE,
    n_subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> KIDResult:
    """KID from precomputed kernel matrices; see :func:`kid`."""
    m, n = kxx.shape[0], kyy.shape[0]
    s = kid_subset_size(m, n, subset_size)
    if not isinstance(n_subsets, int) or n_subsets < 1:
        raise ValueError(f"n_subsets must be a positive integer, got {n_subsets!r}")
    rng = np.random.default_rng(seed)
    ux = np.zeros((m, n_subsets))  # column t: indicator of real subset t
    uy = np.zeros((n, n_subsets))
    for t in range(n_subsets):
        ux[rng.choice(m, size=s, replace=False), t] = 1.0
        uy[rng.choice(n, size=s, replace=False), t] = 1.0
    # All subsets at once: the sum of K over subset t's pairs is u_t^T K u_t, a column sum of
    # U * (K U) (three matrix products instead of 3 * n_subsets submatrix copies); the
    # diagonal (i = j) is removed with u_t^T diag(K). Same numbers as the per-subset loop.
    pairs = s * (s - 1)
    sxx = ((ux * (kxx @ ux)).sum(0) - np.diagonal(kxx) @ ux) / pairs
    syy = ((uy * (kyy @ uy)).sum(0) - np.diagonal(kyy) @ uy) / pairs
    sxy = (ux * (kxy @ uy)).sum(0) / (s * s)
    values = sxx + syy - 2.0 * sxy
    return KIDResult(float(values.mean()), float(values.std(ddof=0)), s, n_subsets)


def kid(
    real_features: Any,
    synthetic_features: Any,
    *,
    subset_size: int = KID_SUBSET_SIZE,
    n_subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> KIDResult:
    """Kernel Inception Distance (Bińkowski, Sutherland, Arbel and Gretton, "Demystifying MMD
    GANs", ICLR 2018).

    ``n_subsets`` times, draw ``s`` rows from each side without replacement (seeded; ``s``
    from :func:`kid_subset_size`: 1000, or half the smaller side for small subgroups) and compute
    :func:`mmd2_unbiased` with the kernel
    :func:`polynomial_kernel` ``k(x, y) = (x . y / d + 1)^3``; KID is the mean over subsets,
    reported with the (population) std over subsets. Lower is better; 0 in expectation for
    identical distributions (single estimates can be slightly negative).
    """
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(synthetic_features, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, d) feature arrays of one d, got {x.shape} and {y.shape}")
    return kid_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y),
                            polynomial_kernel(x, y), subset_size=subset_size,
                            n_subsets=n_subsets, seed=seed)
