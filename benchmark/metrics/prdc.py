"""Precision, recall, density and coverage: k-nearest-neighbour manifolds in feature space.

Written here (the ``prdc`` package recomputes all distances per call and uses open balls)
so that one set of squared distances, derived from the Gram matrices that KID and the
Fréchet distance share, serves the whole set, every subgroup and the bootstrap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Default neighbourhood size (Naeem et al. 2020 recommend k = 5).
PRDC_K = 5


def sq_distances(gxx_diag: np.ndarray, gyy_diag: np.ndarray, gxy: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``|x|^2 + |y|^2 - 2 x.y`` from dot products (clipped >= 0)."""
    d = gxx_diag[:, None] + gyy_diag[None, :] - 2.0 * gxy
    return np.maximum(d, 0.0)


def kth_nn_sq_radius(dself: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row's k-th nearest neighbour in its own set (itself excluded:
    the (k+1)-th smallest entry of its row of the self-distance matrix, whose smallest is 0)."""
    n = dself.shape[0]
    if n <= k:
        raise ValueError(f"k-NN radii with k = {k} need more than {k} points, got {n}")
    d = np.array(dself, dtype=np.float64)  # a copy: the diagonal is overwritten
    np.fill_diagonal(d, -np.inf)  # each point itself sorts first, even beside a duplicate
    d.partition(k, axis=1)
    return d[:, k]


@dataclass(frozen=True)
class PRDCPoints:
    """Per-point indicators behind the four PRDC numbers (each an average of one of them).

    ``precision`` and ``density`` are averages over synthetic points of ``in_real`` (inside
    some real k-NN ball) and ``real_balls`` / k (number of real balls containing it);
    ``recall`` and ``coverage`` are averages over real points of ``in_synthetic`` (inside
    some synthetic k-NN ball) and ``covered`` (its own real ball holds a synthetic point).
    """

    in_real: np.ndarray
    real_balls: np.ndarray
    in_synthetic: np.ndarray
    covered: np.ndarray
    k: int


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float
    k: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prdc_points(dxx: np.ndarray, dyy: np.ndarray, dxy: np.ndarray, k: int = PRDC_K) -> PRDCPoints:
    """:class:`PRDCPoints` from squared distance matrices real-real, synthetic-synthetic and
    real-synthetic (rows real). Balls are closed (``<=``), as in Kynkäänniemi et al."""
    rx = kth_nn_sq_radius(dxx, k)  # (N,)
    ry = kth_nn_sq_radius(dyy, k)  # (M,)
    inside_real = dxy <= rx[:, None]  # [i, j]: synthetic j inside real ball i
    return PRDCPoints(
        in_real=inside_real.any(axis=0),
        real_balls=inside_real.sum(axis=0),
        in_synthetic=(dxy <= ry[None, :]).any(axis=1),
        covered=dxy.min(axis=1) <= rx,
        k=k,
    )


def prdc_from_points(p: PRDCPoints, wx: np.ndarray | None = None,
                     wy: np.ndarray | None = None) -> PRDC:
    """The four numbers as (optionally weighted) averages of :class:`PRDCPoints`."""
    wx = np.ones(len(p.covered)) if wx is None else np.asarray(wx, dtype=np.float64)
    wy = np.ones(len(p.in_real)) if wy is None else np.asarray(wy, dtype=np.float64)
    return PRDC(
        precision=float(wy @ p.in_real / wy.sum()),
        recall=float(wx @ p.in_synthetic / wx.sum()),
        density=float(wy @ p.real_balls / (p.k * wy.sum())),
        coverage=float(wx @ p.covered / wx.sum()),
        k=p.k,
    )


def prdc(real_features: Any, synthetic_features: Any, *, k: int = PRDC_K) -> PRDC:
    """Precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen and Aila, "Improved
    precision and recall metric for assessing generative models", NeurIPS 2019) and density
    and coverage (Naeem, Oh, Uh, Choi and Yoo, "Reliable fidelity and diversity metrics for
    generative models", ICML 2020).

    With real features X (N rows), synthetic features Y (M rows), ``B(x, r)`` the closed ball
    and ``NND_k(x)`` the distance from x to its k-th nearest neighbour in its own set:

    - precision = (1/M) sum_j 1[exists i: Y_j in B(X_i, NND_k(X_i))]  (fidelity)
    - recall    = (1/N) sum_i 1[exists j: X_i in B(Y_j, NND_k(Y_j))]  (diversity)
    - density   = (1/(kM)) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]   (fidelity, unbounded)
    - coverage  = (1/N) sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]  (diversity)

    Precision, recall and coverage lie in [0, 1], density in [0, N/k] (1 in expectation for
    identical distributions); higher is better for all four.
    """
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(synthetic_features, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, d) feature arrays of one d, got {x.shape} and {y.shape}")
    nx, ny = (x * x).sum(1), (y * y).sum(1)
    p = prdc_points(sq_distances(nx, nx, x @ x.T), sq_distances(ny, ny, y @ y.T),
                    sq_distances(nx, ny, x @ y.T), k)
    return prdc_from_points(p)
