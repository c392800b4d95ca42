"""The per-group table: group values against direct computations on the group's rows, the
fast Fréchet routes against the reference formula, hand-worked ES-FID and variance, and the
bootstrap's determinism, stratification and intervals."""

import numpy as np
import pytest

from benchmark.metrics import (
    FEATURE_SPACES,
    TableSettings,
    fid,
    frechet_distance,
    frechet_from_gram,
    generation_table,
    kid,
    mmd2_unbiased,
    prdc,
    weighted_stats,
)
from benchmark.metrics.frechet import nuclear_norm
from benchmark.metrics.kid import polynomial_kernel
from benchmark.metrics.table import (
    _Grams,
    _resample_counts,
    _strata_index,
    bootstrap_interval,
    equity_scaled,
    gap_of,
    variance_of,
)

INCEPTION = FEATURE_SPACES.get("inception")


@pytest.mark.parametrize("nx,ny,d", [(30, 40, 50), (80, 60, 10), (5, 7, 3)])
def test_frechet_from_gram_matches_fid(nx, ny, d):
    rng = np.random.default_rng(nx)
    x, y = rng.normal(size=(nx, d)), rng.normal(size=(ny, d)) * 1.2 + 0.3
    # (the eigh route of fid() clips round-off eigenvalues of rank-deficient covariances:
    # agreement to ~1e-7 relative there)
    assert frechet_from_gram(x @ x.T, y @ y.T, x @ y.T) == pytest.approx(fid(x, y), rel=1e-7)


@pytest.mark.parametrize("shape", [(40, 25), (25, 40), (30, 30), (1, 6)])
def test_nuclear_norm_matches_svd(shape):
    c = np.random.default_rng(shape[0]).normal(size=shape)
    assert nuclear_norm(c) == pytest.approx(np.linalg.svd(c, compute_uv=False).sum(), rel=1e-10)
    # rank-deficient: a rank-3 matrix has three non-zero singular values
    lowrank = c[:, :3] @ np.random.default_rng(9).normal(size=(min(3, shape[1]), shape[1]))
    assert nuclear_norm(lowrank) == pytest.approx(
        np.linalg.svd(lowrank, compute_uv=False).sum(), rel=1e-6)


def test_batched_replicate_mmd2_matches_weighted_mmd2_per_cell():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 8)), rng.normal(size=(25, 8)) + 0.2
    g = _Grams(x, y)
    cells = [(np.arange(30), np.arange(25)), (np.arange(0, 30, 2), np.arange(1, 25, 3)),
             (np.array([4]), np.arange(5))]
    cx, cy = rng.integers(0, 3, 30).astype(float), rng.integers(0, 3, 25).astype(float)
    cx[4] = 2.0  # cell 2's single real image drawn twice: no pair of distinct images
    wx = np.zeros((30, len(cells)))
    wy = np.zeros((25, len(cells)))
    for u, (ix, iy) in enumerate(cells):
        wx[ix, u], wy[iy, u] = cx[ix], cy[iy]
    got = g.mmd2_batch(wx, wy)
    for u, (ix, iy) in enumerate(cells[:2]):
        kx = ix[cx[ix] > 0]
        ky = iy[cy[iy] > 0]
        expected = mmd2_unbiased(polynomial_kernel(x[kx], x[kx]), polynomial_kernel(y[ky], y[ky]),
                                 polynomial_kernel(x[kx], y[ky]), cx[kx], cy[ky])
        assert got[u] == pytest.approx(expected, rel=1e-10)
    assert np.isnan(got[2])


def test_weighted_routes_equal_duplicated_rows():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 20)), rng.normal(size=(15, 20)) + 0.5
    wx, wy = rng.integers(0, 4, 12), rng.integers(0, 4, 15)
    expected = fid(np.repeat(x, wx, 0), np.repeat(y, wy, 0))
    assert frechet_from_gram(x @ x.T, y @ y.T, x @ y.T, wx, wy) == pytest.approx(expected,
                                                                                  rel=1e-8)
    mu, s = weighted_stats(x, wx)
    np.testing.assert_allclose(mu, np.repeat(x, wx, 0).mean(0))
    np.testing.assert_allclose(s, np.cov(np.repeat(x, wx, 0), rowvar=False), atol=1e-12)
    assert frechet_distance(*weighted_stats(x, wx), *weighted_stats(y, wy)) == pytest.approx(
        expected, rel=1e-8)


def test_summaries_hand_worked():
    # FID_all = 10, groups 8 and 14: |8 - 10| + |14 - 10| = 6 -> ES = 10 * (1 + 6 / 10) = 16
    assert equity_scaled(10.0, [8.0, 14.0]) == pytest.approx(16.0)
    assert variance_of([8.0, 14.0]) == pytest.approx(9.0)  # ((-3)^2 + 3^2) / 2
    assert gap_of([8.0, 14.0, 9.0]) == 6.0
    assert equity_scaled(10.0, [10.0, 10.0]) == 10.0  # no disparity: ES = FID
    assert equity_scaled(0.0, [1.0, 2.0]) is None and equity_scaled(5.0, [1.0]) is None
    assert variance_of([3.0]) is None


def _data(seed=0, n=60, m=50, d=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * 1.1 + 0.2
    sex_x = ["female" if i % 3 else "male" for i in range(n)]
    sex_y = ["female" if i % 2 else "male" for i in range(m)]
    age_x = ["old" if i % 5 < 2 else "young" for i in range(n)]
    age_y = [None if i == 0 else ("old" if i % 4 == 0 else "young") for i in range(m)]
    inter = ([f"{s} x {a}" for s, a in zip(sex_x, age_x, strict=True)],
             [None if a is None else f"{s} x {a}" for s, a in zip(sex_y, age_y, strict=True)])
    groups = {"sex": (sex_x, sex_y), "age": (age_x, age_y), "sex x age": inter}
    strata = ([str((s, a)) for s, a in zip(sex_x, age_x, strict=True)],
              [str((s, a)) for s, a in zip(sex_y, age_y, strict=True)])
    return x, y, groups, strata


def test_table_groups_match_direct_computations():
    x, y, groups, strata = _data()
    s = TableSettings(bootstrap_resamples=0, kid_subsets=10, prdc_k=3)
    out = generation_table(x, y, INCEPTION, groupings=groups, strata=strata, settings=s)
    assert out["fid"]["value"] == pytest.approx(fid(x, y), rel=1e-8)
    assert out["kid"]["value"] == pytest.approx(kid(x, y, n_subsets=10, seed=0).value,
                                                rel=1e-10)
    p = prdc(x, y, k=3)
    assert out["precision"]["value"] == p.precision and out["coverage"]["value"] == p.coverage
    assert set(out["fid_by_group"]) == {"sex", "age", "sex x age"}
    for grouping, (lx, ly) in groups.items():
        for g, e in out["fid_by_group"][grouping].items():
            # a missing label (None) is the grouping's "unknown" group
            ix = [i for i, v in enumerate(lx) if (v if v is not None else "unknown") == g]
            iy = [i for i, v in enumerate(ly) if (v if v is not None else "unknown") == g]
            assert (e["n_real"], e["n_synthetic"]) == (len(ix), len(iy))
            if min(len(ix), len(iy)) < 2:
                assert e["value"] is None and e["reason"]
                continue
            assert e["value"] == pytest.approx(fid(x[ix], y[iy]), rel=1e-7)
            if min(len(ix), len(iy)) > 3:
                dens = out["density_by_group"][grouping][g]["value"]
                assert dens == pytest.approx(prdc(x[ix], y[iy], k=3).density)
    assert set(out["fid_by_group"]["sex x age"]) == {
        "female x old", "female x young", "male x old", "male x young", "unknown"}
    # the synthetic row with no age is the "unknown" group of age and of the intersection:
    # reported with its count, marked out of the summaries
    for grouping in ("age", "sex x age"):
        unknown = out["fid_by_group"][grouping]["unknown"]
        assert (unknown["n_real"], unknown["n_synthetic"]) == (0, 1)
        assert unknown["in_summaries"] is False
        defined = [g for g, e in out["fid_by_group"][grouping].items()
                   if g != "unknown" and e["value"] is not None]
        assert out["fid_variance"][grouping]["n_groups"] == len(defined)
    assert sum(e["n_synthetic"] for e in out["fid_by_group"]["age"].values()) == 50
    assert "in_summaries" not in out["fid_by_group"]["age"]["old"]
    # summaries derived from the table
    sex = [e["value"] for e in out["fid_by_group"]["sex"].values()]
    assert out["fid_variance"]["sex"]["value"] == pytest.approx(np.var(sex))
    assert out["es_fid"]["sex"]["value"] == pytest.approx(
        equity_scaled(out["fid"]["value"], sex))
    assert out["fid_variance"]["sex"]["n_groups"] == 2


def test_bootstrap_seeded_stratified_and_brackets_the_point():
    x, y, groups, strata = _data(1)
    s = TableSettings(bootstrap_resamples=40, kid_subsets=5, prdc_k=3, seed=7)
    a = generation_table(x, y, INCEPTION, groupings=groups, strata=strata, settings=s)
    b = generation_table(x, y, INCEPTION, groupings=groups, strata=strata, settings=s)
    assert a == b
    other = generation_table(x, y, INCEPTION, groupings=groups, strata=strata,
                             settings=TableSettings(bootstrap_resamples=40, kid_subsets=5,
                                                    prdc_k=3, seed=8))
    assert other["fid"]["ci_low"] != a["fid"]["ci_low"]
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        e = a[key]
        assert e["ci_resamples"] == 40
        assert e["ci_low"] <= e["value"] <= e["ci_high"], key
    for key in ("precision", "recall", "coverage"):
        assert 0.0 <= a[key]["ci_low"] and a[key]["ci_high"] <= 1.0
    v = a["fid_variance"]["sex"]
    assert 0.0 <= v["ci_low"] <= v["ci_high"]
    # stratified counts keep every stratum's size
    idx = _strata_index(strata[0])
    counts = _resample_counts(idx, len(x), np.random.default_rng(0))
    for ix in idx:
        assert counts[ix].sum() == len(ix)


def test_interval_is_shifted_percentile():
    reps = np.array([11.0, 12.0, 13.0, 14.0, 15.0])  # mean 13
    lo, hi, used = bootstrap_interval(10.0, reps, 0.5)
    # point + (reps - 13) = 8, 9, 10, 11, 12: 25% and 75% quantiles 9 and 11
    assert (lo, hi, used) == (9.0, 11.0, 5)
    assert bootstrap_interval(0.5, np.array([0.0, 1.0, np.nan]), 0.9, (0.0, 1.0))[2] == 2
    assert bootstrap_interval(1.0, np.array([np.nan]), 0.9) == (None, None, 0)


def test_small_groups_get_reasons():
    x, y, _, _ = _data(2, n=20, m=20)
    groups = {"g": (["a"] * 19 + ["b"], ["a"] * 20)}
    out = generation_table(x, y, INCEPTION, groupings=groups,
                           settings=TableSettings(bootstrap_resamples=5, kid_subsets=3))
    b = out["fid_by_group"]["g"]["b"]
    assert b["value"] is None and "no synthetic images" in b["reason"]
    assert "fewer than 2 real" in b["reason"]
    assert out["precision_by_group"]["g"]["b"]["reason"].startswith("k-NN radii")
    assert out["fid_variance"]["g"]["value"] is None
    assert "1 group(s)" in out["fid_variance"]["g"]["reason"]


def test_other_spaces_never_report_fid():
    from benchmark.metrics import FeatureSpace

    space = FeatureSpace("oracle_test", "test", lambda task, device: None)
    x, y, groups, strata = _data(3)
    out = generation_table(x, y, space, groupings=groups, strata=strata,
                           settings=TableSettings(bootstrap_resamples=0, kid_subsets=2))
    assert "fid" not in out and "kid" not in out
    assert {"fd_oracle_test", "kd_oracle_test", "precision_oracle_test",
            "fd_oracle_test_by_group", "fd_oracle_test_variance",
            "es_fd_oracle_test"} <= set(out)


def test_torch_backend_gives_the_numpy_numbers():
    """The Fréchet distances and replicate MMD^2 in torch (the GPU path; here on the CPU)
    equal numpy's: point values, groups, summaries and bootstrap intervals. Sizes take both
    routes: cells smaller than d (Gram) and larger (covariance)."""
    rng = np.random.default_rng(3)
    d = 25  # overall (40 and 36 rows) by covariances, groups (~20 rows) by Gram matrices
    x, y = rng.normal(size=(40, d)), rng.normal(size=(36, d)) * 1.1 + 0.2
    sex = (rng.choice(["f", "m"], 40).tolist(), rng.choice(["f", "m"], 36).tolist())
    s = TableSettings(bootstrap_resamples=8, kid_subsets=4, prdc_k=3, seed=1)
    kw = dict(groupings={"sex": sex}, strata=sex, settings=s)
    ref = generation_table(x, y, INCEPTION, **kw)
    got = generation_table(x, y, INCEPTION, device="cpu", **kw)

    def flat(entry):
        return {k: v for k, v in entry.items() if isinstance(v, float)}

    assert flat(got["fid"]) == pytest.approx(flat(ref["fid"]), rel=1e-9)
    assert set(flat(ref["fid"])) >= {"value", "ci_low", "ci_high"}
    assert flat(got["kid"]) == pytest.approx(flat(ref["kid"]), rel=1e-9, abs=1e-12)
    for g in ("f", "m"):
        assert flat(got["fid_by_group"]["sex"][g]) == pytest.approx(
            flat(ref["fid_by_group"]["sex"][g]), rel=1e-9)
    assert flat(got["es_fid"]["sex"]) == pytest.approx(flat(ref["es_fid"]["sex"]), rel=1e-9)
