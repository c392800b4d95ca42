"""Fréchet Inception Distance: overall, per subgroup, and the variance of the subgroup FIDs.

All functions take feature rows (N, d) from a :class:`~benchmark.metrics.FeatureExtractor`
and work in float64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg

log = logging.getLogger(__name__)

#: Result keys of the generation metrics (shared by the evaluation record and the report).
KEY_FID = "fid"
KEY_FID_BY_GROUP = "fid_by_group"
KEY_FID_VARIANCE = "fid_variance"

#: Fewest images on each side for a (group) FID: a covariance needs two samples.
MIN_IMAGES = 2

# Largest imaginary part on the diagonal of sqrtm's result that is dropped as round-off
# (the reference implementations' absolute tolerance); a larger one is a numerical failure.
_IMAG_ATOL = 1e-3


def _as_stats(mu: Any, sigma: Any, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    d = mu.shape[0]
    if mu.ndim != 1 or sigma.shape != (d, d):
        raise ValueError(
            f"{which}: mean of shape {mu.shape} and covariance of shape {sigma.shape}; "
            "expected (d,) and (d, d)"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{which}: mean or covariance has non-finite values")
    return mu, sigma


def array_namespace(a: Any) -> Any:
    """``numpy`` for arrays, ``torch`` for tensors: the fast routes below (used hundreds of
    times by the bootstrap) are written once with operations both share, so the same code
    runs on the CPU with numpy or on a GPU with torch."""
    if isinstance(a, np.ndarray):
        return np
    if _is_tensor(a):
        import torch

        return torch
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(a).__name__}")


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) as sum(sqrt(eig(S1^{1/2} S2 S1^{1/2}))).

    S1 S2 is similar to the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, so they share
    eigenvalues (>= 0); a symmetric eigensolver is stable on rank-deficient covariances and
    never yields complex values. Round-off negatives are clipped to 0.
    """
    xp = array_namespace(sigma1)
    w, v = xp.linalg.eigh(sigma1)
    root1 = (v * w.clip(min=0.0) ** 0.5) @ v.T
    m = root1 @ sigma2 @ root1
    ev = xp.linalg.eigvalsh((m + m.T) / 2.0)
    return float((ev.clip(min=0.0) ** 0.5).sum())


def _trace_sqrt_product_cholesky(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) as sum(sqrt(eig(L^T S2 L))) with S1 = L L^T (Cholesky).

    S1 S2 = L (L^T S2 L) L^{-1} is similar to the symmetric PSD ``L^T S2 L``; a Cholesky
    factor and a values-only symmetric eigensolver cost about half of :func:`_trace_sqrt_
    product_eigh`'s full eigendecomposition. Needs S1 positive definite (more images than
    dimensions); otherwise it falls back to the eigh route.
    """
    xp = array_namespace(sigma1)
    try:
        chol = xp.linalg.cholesky(sigma1)
    except (np.linalg.LinAlgError, RuntimeError):  # torch's LinAlgError is a RuntimeError
        return _trace_sqrt_product_eigh(sigma1, sigma2)
    m = chol.T @ sigma2 @ chol
    ev = xp.linalg.eigvalsh((m + m.T) / 2.0)
    return float((ev.clip(min=0.0) ** 0.5).sum())


def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """Tr(sqrtm(S1 S2)) as in the reference implementations (TTUR, pytorch-fid).

    When sqrtm returns non-finite values (near-singular product), ``eps * I`` is added to
    both covariances and it is retried once. A small imaginary part (round-off) is dropped;
    a large one raises.
    """
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        log.warning("sqrtm of the covariance product is not finite; adding %g * I to both "
                    "covariances", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise FloatingPointError("sqrtm of the covariance product is not finite even "
                                     f"after adding {eps} * I to both covariances")
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > _IMAG_ATOL:
            raise FloatingPointError(f"sqrtm of the covariance product has an imaginary "
                                     f"component of {imag:.3g} (more than {_IMAG_ATOL})")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(
    mu1: Any,
    sigma1: Any,
    mu2: Any,
    sigma2: Any,
    *,
    method: Literal["eigh", "cholesky", "sqrtm"] = "eigh",
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    .. math::

        d^2 = \\lVert \\mu_1 - \\mu_2 \\rVert_2^2
              + \\operatorname{Tr}\\big(\\Sigma_1 + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\big)

    With Inception pool3 statistics of real and generated images this is the FID of
    Heusel, Ramsauer, Unterthiner, Nessler and Hochreiter, "GANs trained by a two time-scale
    update rule converge to a local Nash equilibrium", NeurIPS 2017. Lower is better; 0 means
    identical statistics.

    Args:
        mu1, sigma1: mean (d,) and covariance (d, d) of the first set (scalars for d = 1).
        mu2, sigma2: the same for the second set.
        method: how ``Tr((S1 S2)^{1/2})`` is computed. ``"eigh"`` (default): from the
            eigenvalues of the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}``, which is stable
            for the rank-deficient covariances of fewer images than dimensions. ``"sqrtm"``:
            ``scipy.linalg.sqrtm(S1 @ S2)`` as in the reference implementations, with their
            fixes: ``eps * I`` added to both covariances when the result is not finite, and a
            small imaginary part dropped (a large one raises ``FloatingPointError``).
            ``"cholesky"``: eigenvalues of ``L^T S2 L`` with ``S1 = L L^T``, about twice as
            fast as ``"eigh"`` when S1 is positive definite (falls back to ``"eigh"``
            otherwise). All agree to round-off on PSD inputs.
        eps: the diagonal offset of the ``"sqrtm"`` retry.

    Returns:
        The squared Fréchet distance (a float >= 0; a round-off negative is clipped to 0).
    """
    mu1, sigma1 = _as_stats(mu1, sigma1, "first set")
    mu2, sigma2 = _as_stats(mu2, sigma2, "second set")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} and {mu2.shape[0]}")
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    elif method == "cholesky":
        tr_covmean = _trace_sqrt_product_cholesky(sigma1, sigma2)
    elif method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    else:
        raise ValueError(f"unknown method {method!r}; expected 'eigh', 'cholesky' or 'sqrtm'")
    return _assemble(mu1, sigma1, mu2, sigma2, tr_covmean)


def _assemble(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, tr_covmean: float) -> float:
    diff = mu1 - mu2
    value = float(diff @ diff + sigma1.diagonal().sum() + sigma2.diagonal().sum()
                  - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_from_stats_fast(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """:func:`frechet_distance` with ``method="cholesky"`` and no input checks, on numpy
    arrays or torch tensors (any device): the bootstrap's covariance route."""
    return _assemble(mu1, sigma1, mu2, sigma2, _trace_sqrt_product_cholesky(sigma1, sigma2))


def feature_stats(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of feature rows (N, d), in float64.

    The covariance is ``np.cov(features, rowvar=False)`` (divides by N - 1), as in the
    reference FID implementations. Needs N >= 2.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be a (N, d) array, got shape {f.shape}")
    if f.shape[0] < MIN_IMAGES:
        raise ValueError(f"FID statistics need at least {MIN_IMAGES} feature rows, got "
                         f"{f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features have non-finite values")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def fid(real_features: Any, synthetic_features: Any) -> float:
    """FID between two sets of feature rows: :func:`frechet_distance` of their
    :func:`feature_stats`."""
    return frechet_distance(*feature_stats(real_features), *feature_stats(synthetic_features))


#: Result key suffix of the repeated-subset Fréchet distance (``fid_subsets``, ...).
KEY_SUBSETS = "_subsets"


def _mean_std(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()) if len(v) else None,
            "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "values": [float(x) for x in v]}


def _subset_fid(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`fid` of two row sets; below the feature dimension through the exact Gram route
    (:func:`frechet_from_gram`: an (n, n) nuclear norm instead of (d, d) square roots)."""
    if max(len(a), len(b)) >= a.shape[1]:
        return fid(a, b)
    return frechet_from_gram(a @ a.T, b @ b.T, a @ b.T)


def repeated_subset_fid(real_features: Any, synthetic_features: Any, *, subset_size: int,
                        repeats: int, seed: int = 0) -> dict[str, Any]:
    """FID on repeated random subsets (Skorupko et al.'s protocol: pytorch-fid on R random
    500-image subsets, reported as mean (std)), with the real-vs-real lower bound:

        FID_r  = FID(R_r, S_r),   R_r, S_r: n real / n synthetic rows drawn without
                 replacement (draw r of ``np.random.default_rng(seed)``)
        LB_r   = FID(A_r, B_r),   A_r, B_r: two disjoint n-row subsets of the real rows
        report mean_r and the sample standard deviation (ddof 1) of each

    The lower bound is the FID that two samples of the real distribution of this size
    already have (FID is biased upwards at small n; Chong & Forsyth, CVPR 2020), so a
    generator is judged by how close its mean comes to it. Each FID is the Fréchet distance
    of the whole-set number (:func:`fid`; for subsets smaller than the feature dimension its
    exact Gram form :func:`frechet_from_gram`, as the generation table uses). ``n`` is
    ``subset_size`` capped at the real rows / 2 (the disjoint pair) and at the synthetic
    rows; the result records the requested and the used size (None values, with a
    ``reason``, below :data:`MIN_IMAGES`). The drawn
    row indices are returned (``subsets``) so the numbers can be recomputed.
    """
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(synthetic_features, dtype=np.float64)
    if subset_size < MIN_IMAGES or repeats < 1:
        raise ValueError(f"repeated-subset FID: subset_size must be >= {MIN_IMAGES} and repeats "
                         f">= 1, got {subset_size} and {repeats}")
    n = min(subset_size, len(x) // 2, len(y))
    out: dict[str, Any] = {"requested_subset_size": int(subset_size), "subset_size": int(n),
                           "repeats": int(repeats), "seed": int(seed),
                           "n_real": int(len(x)), "n_synthetic": int(len(y)), "reason": None}
    if n < MIN_IMAGES:
        out.update(fid=_mean_std([]), real_vs_real=_mean_std([]), subsets=[],
                   reason=f"{len(x)} real and {len(y)} synthetic rows: a subset of at least "
                          f"{MIN_IMAGES} (and two disjoint real ones) is needed")
        return out
    if n < subset_size:
        log.info("repeated-subset FID: subsets of %d rows instead of %d (%d real, %d synthetic)",
                 n, subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    fids, bounds, subsets = [], [], []
    for _ in range(repeats):
        ir = np.sort(rng.choice(len(x), size=n, replace=False))
        is_ = np.sort(rng.choice(len(y), size=n, replace=False))
        pair = rng.permutation(len(x))[:2 * n]
        ia, ib = np.sort(pair[:n]), np.sort(pair[n:])
        fids.append(_subset_fid(x[ir], y[is_]))
        bounds.append(_subset_fid(x[ia], x[ib]))
        subsets.append({"real": ir.tolist(), "synthetic": is_.tolist(),
                        "real_a": ia.tolist(), "real_b": ib.tolist()})
    out.update(fid=_mean_std(fids), real_vs_real=_mean_std(bounds), subsets=subsets)
    return out


@dataclass(frozen=True)
class GroupFID:
    """The FID of one subgroup, with the image counts it rests on.

    ``value`` is None when it cannot be computed, and ``reason`` then says why.
    """

    value: float | None
    n_real: int
    n_synthetic: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_missing(g: object) -> bool:
    return g is None or (isinstance(g, float) and math.isnan(g))


def _group_rows(features: Any, groups: Sequence[Hashable], side: str) -> tuple[np.ndarray, list]:
    f = np.asarray(features, dtype=np.float64)
    groups = list(groups)
    if f.ndim != 2:
        raise ValueError(f"{side} features must be a (N, d) array, got shape {f.shape}")
    if len(groups) != f.shape[0]:
        raise ValueError(f"{side}: {f.shape[0]} feature rows but {len(groups)} group values")
    return f, groups


def fid_by_group(
    real_features: Any,
    real_groups: Sequence[Hashable],
    synthetic_features: Any,
    synthetic_groups: Sequence[Hashable],
    *,
    min_count: int = MIN_IMAGES,
) -> dict[Hashable, GroupFID]:
    """FID of each subgroup: real rows of group g against synthetic rows of group g.

    Groups are any hashable values (e.g. ``"female"``). Every group seen on either side gets
    an entry; a group with fewer than ``min_count`` images on a side (including none, i.e.
    present on one side only) gets ``value=None`` and a ``reason``. Rows whose group is
    missing (None or NaN) belong to no subgroup and are left out (their count is logged).
    Entries are ordered by ``str(group)``.
    """
    if not isinstance(min_count, int) or min_count < MIN_IMAGES:
        raise ValueError(f"min_count must be an integer >= {MIN_IMAGES}, got {min_count!r}")
    fr, gr = _group_rows(real_features, real_groups, "real")
    fs, gs = _group_rows(synthetic_features, synthetic_groups, "synthetic")
    if fr.shape[1] != fs.shape[1]:
        raise ValueError(f"feature dimensions differ: real {fr.shape[1]}, synthetic "
                         f"{fs.shape[1]}")
    missing_r = sum(map(_is_missing, gr))
    missing_s = sum(map(_is_missing, gs))
    if missing_r or missing_s:
        log.info("fid_by_group: %d real and %d synthetic images have no group value and are "
                 "left out", missing_r, missing_s)
    values = {g for g in [*gr, *gs] if not _is_missing(g)}
    out: dict[Hashable, GroupFID] = {}
    for g in sorted(values, key=str):
        rows_r = fr[[i for i, x in enumerate(gr) if not _is_missing(x) and x == g]]
        rows_s = fs[[i for i, x in enumerate(gs) if not _is_missing(x) and x == g]]
        n_r, n_s = len(rows_r), len(rows_s)
        reasons = []
        for n, side in ((n_r, "real"), (n_s, "synthetic")):
            if n == 0:
                reasons.append(f"no {side} images")
            elif n < min_count:
                reasons.append(f"fewer than {min_count} {side} images")
        if reasons:
            out[g] = GroupFID(None, n_r, n_s, "; ".join(reasons))
        else:
            out[g] = GroupFID(fid(rows_r, rows_s), n_r, n_s, None)
    return out


def fid_variance(group_fids: Mapping[Hashable, GroupFID]) -> float | None:
    """Population variance of the defined subgroup FIDs: a fairness summary (0 is fairest).

        Var = (1 / K) * sum_k (FID_k - mean_k FID_k)^2

    over the K groups whose FID is defined. ddof = 0 because the groups are the whole
    population of subgroups of the attribute, not a sample drawn from a larger set of groups.
    Returns None when fewer than 2 group FIDs are defined.
    """
    return variance_of([g.value for g in group_fids.values() if g.value is not None])


def variance_of(values: Sequence[float]) -> float | None:
    """Population variance (ddof = 0: the groups are all the groups of the attribute) of 2 or
    more values, else None. The one definition behind every ``*_variance`` result."""
    if len(values) < 2:
        return None
    return float(np.var(np.asarray(values, dtype=np.float64), ddof=0))


# --------------------------------------------------------------------------- fast paths
# The bootstrap and the subgroup tables evaluate the Fréchet distance hundreds of times on
# subsets of one feature matrix, possibly with integer row weights (bootstrap counts). These
# two exact routes avoid forming and square-rooting d x d matrices when a subset is smaller
# than the feature dimension.


def _weights(w: Any, like: Any, n: int) -> Any:
    """Row weights as an array/tensor of ``like``'s kind (ones when None)."""
    if isinstance(like, np.ndarray):
        return np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    return like.new_ones(n) if w is None else w.to(like.dtype)


def weighted_stats(features: Any, weights: Any = None) -> tuple[Any, Any]:
    """Mean and unbiased covariance of rows where row i counts ``weights[i]`` times:
    ``mu = sum w_i x_i / n``, ``S = sum w_i (x_i - mu)(x_i - mu)^T / (n - 1)``, n = sum w.
    With unit weights this equals :func:`feature_stats`. Numpy in, numpy out (float64);
    torch tensors stay torch tensors on their device."""
    f = features if _is_tensor(features) else np.asarray(features, dtype=np.float64)
    w = _weights(weights, f, f.shape[0])
    n = float(w.sum())
    if n < MIN_IMAGES:
        raise ValueError(f"FID statistics need at least {MIN_IMAGES} feature rows, got {n:g}")
    mu = w @ f / n
    z = (f - mu) * (w ** 0.5)[:, None]
    return mu, z.T @ z / (n - 1.0)


def _is_tensor(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def nuclear_norm(c: Any) -> float:
    """Sum of the singular values of ``c`` (m, n), as the sum of the square roots of the
    eigenvalues of the smaller of ``c^T c`` and ``c c^T`` (symmetric PSD; round-off
    negatives clipped to 0).

    Same value as ``np.linalg.svd(c, compute_uv=False).sum()`` (tested), about twice as fast
    on square matrices: a matrix product and a values-only symmetric eigensolver instead of a
    bidiagonalisation. Squaring costs accuracy only in singular values below ~1e-7 of the
    largest, whose share of the sum is of that order.
    """
    gram = c.T @ c if c.shape[0] >= c.shape[1] else c @ c.T
    ev = array_namespace(c).linalg.eigvalsh(gram)
    # Eigenvalues within the solver's round-off of 0 (|error| ~ n eps max(ev)) are zero
    # singular values (a centred Gram has at least one): their square roots would add
    # ~sqrt(n eps) max(sv) each, so they are dropped.
    tol = max(float(ev[-1]), 0.0) * gram.shape[0] * np.finfo(np.float64).eps * 4.0
    return float((ev[ev > tol] ** 0.5).sum())


def frechet_from_gram(
    gxx: Any,
    gyy: Any,
    gxy: Any,
    wx: Any = None,
    wy: Any = None,
) -> float:
    """The Fréchet distance of two sets of rows from their dot products only.

    With ``G = X Y^T`` (and ``Gxx``, ``Gyy``), row weights w (n = sum w, p = w / n) and
    ``C = G - (G p_y) 1^T - 1 (p_x^T G) + p_x^T G p_y`` (the doubly centred cross Gram,
    ``(X - mu_x)(Y - mu_y)^T``):

    - ``|mu_x - mu_y|^2 = p_x^T Gxx p_x + p_y^T Gyy p_y - 2 p_x^T G p_y``
    - ``Tr S_x = (sum_i w_i Gxx_ii - n_x p_x^T Gxx p_x) / (n_x - 1)``
    - ``Tr (S_x S_y)^{1/2} = || W_x^{1/2} C W_y^{1/2} ||_* / sqrt((n_x - 1)(n_y - 1))``,

    the last because the non-zero eigenvalues of ``S_x S_y`` are the squared singular values
    of ``A B^T / sqrt((n_x - 1)(n_y - 1))`` with ``S_x = A^T A / (n_x - 1)``. Exact, and costs
    the nuclear norm of the (m_x, m_y) matrix (:func:`nuclear_norm`) instead of d x d square
    roots.
    """
    m, n = gxx.shape[0], gyy.shape[0]
    wx, wy = _weights(wx, gxx, m), _weights(wy, gyy, n)
    nx, ny = float(wx.sum()), float(wy.sum())
    if nx < MIN_IMAGES or ny < MIN_IMAGES:
        raise ValueError(f"FID statistics need at least {MIN_IMAGES} rows on each side")
    px, py = wx / nx, wy / ny
    gy_p = gxy @ py  # (m,): X mu_y
    px_g = px @ gxy  # (n,): Y mu_x
    cross_mu = float(px @ gy_p)
    sq_x = float(px @ gxx @ px)
    sq_y = float(py @ gyy @ py)
    mean_term = sq_x + sq_y - 2.0 * cross_mu
    tr_x = (float(wx @ gxx.diagonal()) - nx * sq_x) / (nx - 1.0)
    tr_y = (float(wy @ gyy.diagonal()) - ny * sq_y) / (ny - 1.0)
    c = gxy - gy_p[:, None] - px_g[None, :] + cross_mu
    c *= (wx ** 0.5)[:, None]
    c *= (wy ** 0.5)[None, :]
    nuclear = nuclear_norm(c)
    value = mean_term + tr_x + tr_y - 2.0 * nuclear / ((nx - 1.0) * (ny - 1.0)) ** 0.5
    return max(value, 0.0)
