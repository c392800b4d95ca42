"""The per-group table of the distribution metrics, its summaries and bootstrap intervals.

One engine (in the spirit of fairlearn's ``MetricFrame``): for one feature space it computes
every base metric (Fréchet distance, KID, precision, recall, density, coverage) once for the
whole set and once per group of every grouping (a sensitive attribute, or an intersection
such as ``sex x age_group``), and derives the fairness summaries (variance of the group
Fréchet distances, equity-scaled Fréchet distance, largest gap) from that table. The same
table is recomputed on every bootstrap replicate, so every number gets a percentile interval.

Everything is computed from three Gram matrices (``X X^T``, ``Y Y^T``, ``X Y^T``), computed
once: the KID kernel is ``(G / d + 1)^3``, squared distances are ``|x|^2 + |y|^2 - 2 G``, and
the Fréchet distance of a subset smaller than d is exact from its doubly centred cross Gram
(:func:`~benchmark.metrics.frechet.frechet_from_gram`).

Bootstrap (Efron and Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13):
stratified by the finest subgroup cell on each side (every group keeps its size in every
replicate, so group and overall numbers of one replicate are consistent), seeded, percentile
intervals of the replicates shifted to the point estimate (:func:`bootstrap_interval`).
Feature rows are resampled, never images: a replicate reweights cached rows by their
resampling counts. Precision, recall, density and coverage are resampled per point with the
k-NN radii held at their full-sample values (a duplicate point would otherwise shrink its own
radius to zero); the Fréchet distance and KID are recomputed exactly on the weighted rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..grouping import UNKNOWN, is_unknown
from .frechet import (
    MIN_IMAGES,
    frechet_from_gram,
    frechet_from_stats_fast,
    variance_of,
    weighted_stats,
)
from .kid import KID_SUBSET_SIZE, KID_SUBSETS, kernel_from_gram, kid_from_kernels
from .prdc import PRDC_K, PRDCPoints, prdc_from_points, prdc_points, sq_distances
from .spaces import (
    COVERAGE,
    DENSITY,
    FRECHET,
    KERNEL,
    PRECISION,
    RECALL,
    FeatureSpace,
)

log = logging.getLogger(__name__)

#: Suffix of the per-group result keys (``fid_by_group``, ``kid_by_group``, ...).
BY_GROUP = "_by_group"
#: The grouping of the whole set in the internal table.
ALL = "all"


def summary_keys(space: FeatureSpace) -> dict[str, str]:
    """Result keys of the fairness summaries of the group Fréchet distances:
    ``fid_variance``, ``es_fid``, ``fid_gap`` (Inception) or ``fd_<space>_variance``, ..."""
    fk = space.key(FRECHET)
    return {"variance": f"{fk}_variance", "es": f"es_{fk}", "gap": f"{fk}_gap"}


@dataclass(frozen=True)
class TableSettings:
    """Settings of :func:`generation_table` (all recorded in the result)."""

    kid_subset_size: int = KID_SUBSET_SIZE
    kid_subsets: int = KID_SUBSETS
    prdc_k: int = PRDC_K
    bootstrap_resamples: int = 100
    ci_level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")
        if self.bootstrap_resamples < 0:
            raise ValueError("bootstrap_resamples must be >= 0")
        if self.prdc_k < 1 or self.kid_subsets < 1 or self.kid_subset_size < 2:
            raise ValueError("prdc_k and kid_subsets must be >= 1, kid_subset_size >= 2")


# --------------------------------------------------------------------------- summaries


def equity_scaled(overall: float | None, values: Sequence[float]) -> float | None:
    """Equity-scaled Fréchet distance (lower is better; see ``docs/metrics.md``):

        ES = FD_all * (1 + sum_g |FD_g - FD_all| / FD_all) = FD_all + sum_g |FD_g - FD_all|

    None when fewer than 2 groups are defined or FD_all is undefined or 0 (the relative
    disparity is then undefined)."""
    if overall is None or len(values) < 2 or not overall > 0:
        return None
    return float(overall * (1.0 + sum(abs(v - overall) for v in values) / overall))


def gap_of(values: Sequence[float]) -> float | None:
    """Largest minus smallest group value."""
    return float(max(values) - min(values)) if len(values) >= 2 else None


_SUMMARIES = {"variance": lambda o, v: variance_of(v), "es": equity_scaled,
              "gap": lambda o, v: gap_of(v)}


# --------------------------------------------------------------------------- the engine


@dataclass
class _Unit:
    grouping: str
    group: str
    ix: np.ndarray
    iy: np.ndarray
    point: dict[str, float | None]
    reason: dict[str, str | None]
    extra: dict[str, dict[str, Any]]
    prdc: PRDCPoints | None = None


def _take(m: Any, ix: Any, iy: Any) -> Any:
    """``m[np.ix_(ix, iy)]`` (numpy array or torch tensor), without the copy when the
    (sorted, unique) indices are all rows and columns."""
    if len(ix) == m.shape[0] and len(iy) == m.shape[1]:
        return m
    if isinstance(m, np.ndarray):
        return m[np.ix_(ix, iy)]
    return m[ix[:, None], iy[None, :]]


class _LinalgSide:
    """Features, Gram and kernel matrices as numpy arrays or as torch float64 tensors on one
    device: what the Fréchet distances and the replicate MMD^2 read."""

    def __init__(self, x: Any, y: Any, d: int):
        self.x, self.y = x, y
        self.gxx, self.gyy, self.gxy = x @ x.T, y @ y.T, x @ y.T
        self.kxx = kernel_from_gram(self.gxx, d)
        self.kyy = kernel_from_gram(self.gyy, d)
        self.kxy = kernel_from_gram(self.gxy, d)
        self.kxx_diag = self.kxx.diagonal() * 1.0  # a copy (numpy and torch alike)
        self.kyy_diag = self.kyy.diagonal() * 1.0


class _Grams:
    """Features and their Gram matrices (float64), computed once.

    With ``device`` (a torch device such as ``"cuda"``) the Fréchet distances (point and
    replicates) and the replicate MMD^2 run in torch on that device; the numpy copies serve
    KID's subsets and the k-NN metrics. Without it everything is numpy on the CPU (faster
    than torch on a few CPU cores, measured). The formulas are the same functions either way.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, device: str | None = None):
        self.d = x.shape[1]
        self.device = device
        if device is None:
            self.la = _LinalgSide(x, y, self.d)
        else:
            import torch

            to = {"dtype": torch.float64, "device": device}
            self.la = _LinalgSide(torch.as_tensor(x, **to), torch.as_tensor(y, **to), self.d)
        # numpy views (or host copies) for KID's subsets and the k-NN metrics
        for name in ("gxx", "gyy", "gxy", "kxx", "kyy", "kxy"):
            m = getattr(self.la, name)
            setattr(self, name, m if device is None else m.cpu().numpy())

    def _on(self, a: np.ndarray, *, index: bool = False) -> Any:
        if self.device is None:
            return a
        import torch

        return torch.as_tensor(a, dtype=torch.int64 if index else torch.float64,
                               device=self.device)

    def frechet(self, ix: np.ndarray, iy: np.ndarray, wx: np.ndarray | None = None,
                wy: np.ndarray | None = None) -> float:
        """Exact Fréchet distance of weighted rows; the Gram route when a side has at most d
        distinct rows, else mean/covariance in feature space."""
        if wx is not None:
            keep_x, keep_y = wx > 0, wy > 0
            ix, wx, iy, wy = ix[keep_x], wx[keep_x], iy[keep_y], wy[keep_y]
        la = self.la
        jx, jy = self._on(ix, index=True), self._on(iy, index=True)
        vx = None if wx is None else self._on(wx)
        vy = None if wy is None else self._on(wy)
        if min(len(ix), len(iy)) <= self.d:
            return frechet_from_gram(_take(la.gxx, jx, jx), _take(la.gyy, jy, jy),
                                     _take(la.gxy, jx, jy), vx, vy)
        return frechet_from_stats_fast(*weighted_stats(la.x[jx], vx),
                                       *weighted_stats(la.y[jy], vy))

    def mmd2_batch(self, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
        """The unbiased MMD^2 (:func:`~benchmark.metrics.kid.mmd2_unbiased`'s weighted form)
        of many weightings at once: column u of ``wx`` (N, U) and ``wy`` (M, U) weights the
        rows of cell u (zero outside it). Three matrix products for all cells instead of
        three submatrix copies per cell; NaN where a side has fewer than 2 rows in all
        (a resample that drew one distinct image)."""
        la = self.la
        wx, wy = self._on(wx), self._on(wy)

        def within(k: Any, diag: Any, w: Any) -> Any:
            pairs = w.sum(0) ** 2 - (w * w).sum(0)
            total = (w * (k @ w)).sum(0) - diag @ (w * w)
            return total / pairs  # pairs = 0: +-inf or NaN, set to NaN below

        with np.errstate(divide="ignore", invalid="ignore"):
            out = (within(la.kxx, la.kxx_diag, wx) + within(la.kyy, la.kyy_diag, wy)
                   - 2.0 * (wx * (la.kxy @ wy)).sum(0) / (wx.sum(0) * wy.sum(0)))
            pairs_ok = ((wx.sum(0) ** 2 - (wx * wx).sum(0) > 0)
                        & (wy.sum(0) ** 2 - (wy * wy).sum(0) > 0))
        if self.device is not None:
            out, pairs_ok = out.cpu().numpy(), pairs_ok.cpu().numpy()
        return np.where(pairs_ok, out, np.nan)


def _score_unit(g: _Grams, unit: _Unit, s: TableSettings, space: FeatureSpace) -> None:
    nx, ny = len(unit.ix), len(unit.iy)
    few = []
    for n, side in ((nx, "real"), (ny, "synthetic")):
        if n == 0:
            few.append(f"no {side} images")
        elif n < MIN_IMAGES:
            few.append(f"fewer than {MIN_IMAGES} {side} images")
    reason = "; ".join(few) or None
    for base in (FRECHET, KERNEL):
        unit.point[base], unit.reason[base] = None, reason
    if reason is None:
        unit.point[FRECHET] = g.frechet(unit.ix, unit.iy)
        k = kid_from_kernels(_take(g.kxx, unit.ix, unit.ix), _take(g.kyy, unit.iy, unit.iy),
                             _take(g.kxy, unit.ix, unit.iy), subset_size=s.kid_subset_size,
                             n_subsets=s.kid_subsets, seed=s.seed)
        unit.point[KERNEL] = k.value
        unit.extra[KERNEL] = {"std": k.std, "subset_size": k.subset_size,
                              "n_subsets": k.n_subsets}
    prdc_reason = None
    if min(nx, ny) <= s.prdc_k:
        prdc_reason = f"k-NN radii with k = {s.prdc_k} need more than {s.prdc_k} images a side"
    for base in (PRECISION, RECALL, DENSITY, COVERAGE):
        unit.point[base], unit.reason[base] = None, prdc_reason
    if prdc_reason is None:
        nxx, nyy = np.diagonal(g.gxx)[unit.ix], np.diagonal(g.gyy)[unit.iy]
        unit.prdc = prdc_points(
            sq_distances(nxx, nxx, _take(g.gxx, unit.ix, unit.ix)),
            sq_distances(nyy, nyy, _take(g.gyy, unit.iy, unit.iy)),
            sq_distances(nxx, nyy, _take(g.gxy, unit.ix, unit.iy)), s.prdc_k)
        p = prdc_from_points(unit.prdc)
        unit.point.update({PRECISION: p.precision, RECALL: p.recall, DENSITY: p.density,
                           COVERAGE: p.coverage})


def _replicate_unit(g: _Grams, unit: _Unit, wx: np.ndarray, wy: np.ndarray,
                    mmd2: float) -> dict[str, float]:
    """One bootstrap replicate of a cell from its rows' resampling counts (``mmd2``: the
    cell's replicate MMD^2, computed for all cells at once by :meth:`_Grams.mmd2_batch`)."""
    out: dict[str, float] = {}
    if unit.point[FRECHET] is not None:
        out[FRECHET] = g.frechet(unit.ix, unit.iy, wx, wy)
        out[KERNEL] = mmd2
    if unit.prdc is not None:
        p = prdc_from_points(unit.prdc, wx, wy)
        out.update({PRECISION: p.precision, RECALL: p.recall, DENSITY: p.density,
                    COVERAGE: p.coverage})
    return out


def _strata_index(labels: Sequence[Hashable]) -> list[np.ndarray]:
    by: dict[Hashable, list[int]] = {}
    for i, v in enumerate(labels):
        by.setdefault(v, []).append(i)
    return [np.asarray(ix) for _, ix in sorted(by.items(), key=lambda kv: str(kv[0]))]


def _resample_counts(strata: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap counts: each stratum's rows drawn with replacement to its own size."""
    counts = np.zeros(n)
    for ix in strata:
        counts[ix] = rng.multinomial(len(ix), np.full(len(ix), 1.0 / len(ix)))
    return counts


#: Range of each base metric; shifted intervals are clipped to it (None: unbounded).
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    FRECHET: (0.0, None), KERNEL: (None, None), PRECISION: (0.0, 1.0), RECALL: (0.0, 1.0),
    DENSITY: (0.0, None), COVERAGE: (0.0, 1.0)}


def bootstrap_interval(point: float, replicates: np.ndarray, level: float,
                       bounds: tuple[float | None, float | None] = (None, None),
                       ) -> tuple[float | None, float | None, int]:
    """Percentile interval of the bootstrap replicates, shifted so that their mean is the
    point estimate: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
    ``point + (theta*_b - mean_b theta*_b)``, over the finite replicates.

    Why shifted: the Fréchet distance (and its summaries) is biased upwards by roughly
    ``(Tr S_x + Tr S_y) / n``, and a resample with replacement holds only about 63% distinct
    images, so raw replicates sit above the full-sample value (with a few hundred images the
    raw interval can miss the point estimate entirely). The shift keeps the spread, i.e. the
    sampling variability at this sample size, which is what comparing two methods scored on
    the same number of images needs. For unbiased statistics (KID, the per-point averages of
    precision/recall/density/coverage) the shift is ~0 and this is the plain percentile
    interval. The ends are clipped to the statistic's range ``bounds``. Returns (low, high,
    number of finite replicates); (None, None, 0) if no replicate is finite.
    """
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return None, None, 0
    centred = point + (finite - finite.mean())
    lo, hi = np.quantile(centred, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    floor = -np.inf if bounds[0] is None else bounds[0]
    ceiling = np.inf if bounds[1] is None else bounds[1]
    lo, hi = np.clip([lo, hi], floor, ceiling)
    return float(lo), float(hi), int(len(finite))


def generation_table(
    real_features: Any,
    synthetic_features: Any,
    space: FeatureSpace,
    *,
    groupings: Mapping[str, tuple[Sequence[Hashable], Sequence[Hashable]]],
    strata: tuple[Sequence[Hashable], Sequence[Hashable]] | None = None,
    settings: TableSettings = TableSettings(),
    progress: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Every distribution metric of one feature space: overall, per group, summaries, CIs.

    Args:
        real_features, synthetic_features: (N, d) and (M, d) feature rows.
        space: the feature space (names the result keys, see :meth:`FeatureSpace.key`).
        groupings: grouping name -> (group label of each real row, of each synthetic row),
            from the task's grouper (:class:`~benchmark.grouping.Grouper`). A missing label
            (None, NaN or :data:`~benchmark.grouping.UNKNOWN`) puts the row in the grouping's
            ``unknown`` group: scored and reported like any group, with its counts, and
            marked ``in_summaries: false``, but never part of the variance, ES or gap.
        strata: bootstrap strata labels (real, synthetic); every group of every grouping must
            be a union of strata (pass the finest intersection). Default: no stratification.
        settings: see :class:`TableSettings`.
        device: a torch device (``"cuda"``) for the Fréchet distances and the bootstrap's
            MMD^2; None (default): numpy on the CPU. The numbers agree to round-off (tested
            with torch on the CPU); on a GPU the bootstrap of 5,000-image sets, bound by
            2048 x 2048 eigenvalue problems on the CPU, takes a fraction of the time.

    Returns:
        A dict of result keys (``fid``, ``fid_by_group``, ``fid_variance``, ``es_fid``,
        ``fid_gap``, ``kid``, ``kid_by_group``, ``precision``, ... for Inception; the space's
        own names otherwise). Every entry carries ``value``, ``ci_low``, ``ci_high``,
        ``ci_resamples`` and the image counts (``n_real``, ``n_synthetic``) or, for a
        summary, ``n_groups``; an undefined value is None with a ``reason``.
    """
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(synthetic_features, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, d) feature arrays of one d, got {x.shape} and {y.shape}")
    for name, arr in (("real", x), ("synthetic", y)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} features have non-finite values")
    s = settings
    g = _Grams(x, y, device)
    units = [_Unit(ALL, ALL, np.arange(len(x)), np.arange(len(y)), {}, {}, {})]
    for gname, (lx, ly) in groupings.items():
        if len(lx) != len(x) or len(ly) != len(y):
            raise ValueError(f"grouping {gname!r}: {len(lx)} real and {len(ly)} synthetic "
                             f"labels for {len(x)} real and {len(y)} synthetic rows")
        lx = [UNKNOWN if is_unknown(v) else str(v) for v in lx]
        ly = [UNKNOWN if is_unknown(v) else str(v) for v in ly]
        miss_x, miss_y = lx.count(UNKNOWN), ly.count(UNKNOWN)
        if miss_x or miss_y:
            log.info("grouping %s: %d real and %d synthetic images have an unknown value: "
                     "scored as the group %r, not in the summaries", gname, miss_x, miss_y,
                     UNKNOWN)
        for lab in sorted(set(lx) | set(ly), key=lambda v: (v == UNKNOWN, v)):
            ix = np.array([i for i, v in enumerate(lx) if v == lab], dtype=np.int64)
            iy = np.array([i for i, v in enumerate(ly) if v == lab], dtype=np.int64)
            units.append(_Unit(gname, lab, ix, iy, {}, {}, {}))
    for unit in units:
        _score_unit(g, unit, s, space)

    reps: list[dict[str, np.ndarray]] = [
        {b: np.full(s.bootstrap_resamples, np.nan) for b in unit.point} for unit in units]
    if s.bootstrap_resamples:
        sx = _strata_index(strata[0]) if strata is not None else [np.arange(len(x))]
        sy = _strata_index(strata[1]) if strata is not None else [np.arange(len(y))]
        rng = np.random.default_rng(s.seed)
        member_x = np.zeros((len(x), len(units)))  # column u: indicator of cell u's rows
        member_y = np.zeros((len(y), len(units)))
        for u, unit in enumerate(units):
            member_x[unit.ix, u] = 1.0
            member_y[unit.iy, u] = 1.0
        for b in tqdm(range(s.bootstrap_resamples), desc=f"bootstrap {space.name}",
                      disable=not progress, leave=False):
            cx = _resample_counts(sx, len(x), rng)
            cy = _resample_counts(sy, len(y), rng)
            mmd2 = g.mmd2_batch(cx[:, None] * member_x, cy[:, None] * member_y)
            for u, (unit, rep) in enumerate(zip(units, reps, strict=True)):
                for base, v in _replicate_unit(g, unit, cx[unit.ix], cy[unit.iy],
                                               float(mmd2[u])).items():
                    rep[base][b] = v

    out: dict[str, Any] = {}

    def entry(unit: _Unit, rep: dict[str, np.ndarray], base: str) -> dict[str, Any]:
        value = unit.point[base]
        lo, hi, used = (bootstrap_interval(value, rep[base], s.ci_level, BOUNDS[base])
                        if value is not None else (None, None, 0))
        e = {"value": value, "ci_low": lo if value is not None else None,
             "ci_high": hi if value is not None else None,
             "ci_resamples": used if value is not None else 0,
             "n_real": int(len(unit.ix)), "n_synthetic": int(len(unit.iy)),
             "reason": unit.reason[base]}
        e.update(unit.extra.get(base, {}))
        if unit.group == UNKNOWN and unit.grouping != ALL:
            e["in_summaries"] = False  # reported with its counts, never in a summary
        return e

    for base in (FRECHET, KERNEL, PRECISION, RECALL, DENSITY, COVERAGE):
        key = space.key(base)
        out[key] = entry(units[0], reps[0], base)
        by: dict[str, dict[str, Any]] = {gname: {} for gname in groupings}
        for unit, rep in zip(units[1:], reps[1:], strict=True):
            by[unit.grouping][unit.group] = entry(unit, rep, base)
        out[key + BY_GROUP] = by

    # summaries of the group Fréchet distances, derived from the table (point and replicates)
    skeys = summary_keys(space)
    for kind in _SUMMARIES:
        out[skeys[kind]] = {}
    overall = units[0].point[FRECHET]
    for gname in groupings:
        members = [(u, r) for u, r in zip(units, reps, strict=True)
                   if u.grouping == gname and u.group != UNKNOWN
                   and u.point[FRECHET] is not None]
        vals = [u.point[FRECHET] for u, _ in members]
        for kind, fn in _SUMMARIES.items():
            value = fn(overall, vals)
            rep_vals = np.full(s.bootstrap_resamples, np.nan)
            if value is not None:
                for b in range(s.bootstrap_resamples):
                    vb = [r[FRECHET][b] for _, r in members]
                    ob = reps[0][FRECHET][b]
                    if np.isfinite(vb).all() and np.isfinite(ob):
                        got = fn(ob, vb)
                        rep_vals[b] = math.nan if got is None else got
            lo, hi, used = (bootstrap_interval(value, rep_vals, s.ci_level, (0.0, None))
                            if value is not None else (None, None, 0))
            reason = None
            if value is None:
                reason = (f"{len(vals)} group(s) with a defined value; needs 2"
                          if len(vals) < 2 else "the overall value is undefined or 0")
            out[skeys[kind]][gname] = {
                "value": value, "ci_low": lo if value is not None else None,
                "ci_high": hi if value is not None else None,
                "ci_resamples": used if value is not None else 0,
                "n_groups": len(vals), "reason": reason}
    return out
