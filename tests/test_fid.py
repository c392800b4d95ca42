"""FID against independent references: scipy's sqrtm formula and closed forms by hand."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.linalg

from benchmark.metrics import (
    GroupFID,
    feature_stats,
    fid,
    fid_by_group,
    fid_variance,
    frechet_distance,
)
from benchmark.metrics import frechet as fid_module


def reference_fd(mu1, s1, mu2, s2):
    """The textbook formula with scipy.linalg.sqrtm of the product, written independently."""
    covmean = scipy.linalg.sqrtm(np.asarray(s1) @ np.asarray(s2))
    covmean = np.real(covmean)
    d = np.asarray(mu1) - np.asarray(mu2)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_stats(rng, dim, n):
    """Mean and covariance of n random correlated samples (rank min(n - 1, dim))."""
    a = rng.normal(size=(dim, dim))
    x = rng.normal(size=(n, dim)) @ a + rng.normal(size=dim)
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


@pytest.mark.parametrize("method", ["eigh", "cholesky", "sqrtm"])
@pytest.mark.parametrize("dim,n", [(1, 10), (2, 20), (5, 50), (16, 200), (64, 500)])
def test_matches_scipy_sqrtm_full_rank(method, dim, n):
    rng = np.random.default_rng(dim)
    mu1, s1 = random_stats(rng, dim, n)
    mu2, s2 = random_stats(rng, dim, n + 7)
    expected = reference_fd(mu1, s1, mu2, s2)
    got = frechet_distance(mu1, s1, mu2, s2, method=method)
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-8)


@pytest.mark.parametrize("method", ["eigh", "cholesky", "sqrtm"])
@pytest.mark.parametrize("dim,n", [(8, 5), (32, 10), (64, 20)])
def test_matches_scipy_sqrtm_rank_deficient(method, dim, n):
    """Fewer samples than dimensions: singular covariances, as with few images per group."""
    rng = np.random.default_rng(100 + dim)
    mu1, s1 = random_stats(rng, dim, n)
    mu2, s2 = random_stats(rng, dim, n + 3)
    assert np.linalg.matrix_rank(s1) < dim
    expected = reference_fd(mu1, s1, mu2, s2)
    got = frechet_distance(mu1, s1, mu2, s2, method=method)
    scale = np.trace(s1) + np.trace(s2)
    assert abs(got - expected) <= 1e-6 * scale


def test_one_dimensional_closed_form():
    # N(1, 2^2) vs N(3, 0.5^2): (1 - 3)^2 + (2 - 0.5)^2 = 4 + 2.25
    assert frechet_distance(1.0, 4.0, 3.0, 0.25) == pytest.approx(6.25, rel=1e-12)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[0.25]], method="sqrtm") == pytest.approx(
        6.25, rel=1e-12
    )


def test_diagonal_closed_form():
    # sum (sqrt(a) - sqrt(b))^2 = (1 - 2)^2 + (2 - 1)^2 + (3 - 4)^2 = 3;  ||mu1 - mu2||^2 = 5
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 16.0])
    mu1, mu2 = np.array([1.0, 2.0, 0.0]), np.zeros(3)
    for method in ("eigh", "sqrtm"):
        assert frechet_distance(mu1, a, mu2, b, method=method) == pytest.approx(8.0, rel=1e-12)


def test_identical_and_symmetric():
    rng = np.random.default_rng(7)
    mu1, s1 = random_stats(rng, 20, 100)
    mu2, s2 = random_stats(rng, 20, 80)
    scale = np.trace(s1)
    assert 0.0 <= frechet_distance(mu1, s1, mu1, s1) < 1e-9 * scale
    assert 0.0 <= frechet_distance(mu1, s1, mu1, s1, method="sqrtm") < 1e-6 * scale
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        frechet_distance(mu2, s2, mu1, s1), rel=1e-10
    )


def test_bad_input():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match=r"expected \(d,\) and \(d, d\)"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.array([np.nan]), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="unknown method"):
        frechet_distance(0.0, 1.0, 0.0, 1.0, method="svd")


def test_sqrtm_retries_with_eps_when_not_finite(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky(a):
        calls.append(np.array(a))
        return np.full_like(a, np.inf) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(fid_module.scipy.linalg, "sqrtm", flaky)
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    got = frechet_distance(np.zeros(2), s1, np.zeros(2), s2, method="sqrtm", eps=1e-3)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + 1e-3 * np.eye(2)) @ (s2 + 1e-3 * np.eye(2)))
    # (S1 + eps I)(S2 + eps I) = diag(1.001 * 4.001, 4.001 * 1.001): trace of its root
    expected = 5.0 + 5.0 - 2 * 2 * math.sqrt(1.001 * 4.001)
    assert got == pytest.approx(expected, rel=1e-12)


def test_sqrtm_imaginary_part(monkeypatch):
    s = np.diag([1.0, 4.0])
    monkeypatch.setattr(fid_module.scipy.linalg, "sqrtm",
                        lambda a: np.diag([1.0 + 1e-6j, 4.0 - 1e-6j]))
    # small imaginary part dropped: Tr(S1 + S2 - 2 * diag(1, 4)) = 10 - 10 = 0
    assert frechet_distance(np.zeros(2), s, np.zeros(2), s, method="sqrtm") == pytest.approx(0.0)
    monkeypatch.setattr(fid_module.scipy.linalg, "sqrtm",
                        lambda a: np.diag([1.0 + 0.5j, 4.0 + 0j]))
    with pytest.raises(FloatingPointError, match="imaginary"):
        frechet_distance(np.zeros(2), s, np.zeros(2), s, method="sqrtm")


def test_feature_stats_unbiased_covariance():
    x = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 7.0], [6.0, 1.0]])
    mu, sigma = feature_stats(x)
    m = x.sum(0) / 4
    c = (x - m).T @ (x - m) / 3  # N - 1
    np.testing.assert_allclose(mu, m)
    np.testing.assert_allclose(sigma, c)
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(x[:1])
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        feature_stats(np.zeros(5))


def test_fid_of_features_matches_reference():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 6))
    b = rng.normal(size=(30, 6)) * 1.5 + 0.3
    expected = reference_fd(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)


# Hand-worked groups with 1-D features; FID = (m1 - m2)^2 + (sd1 - sd2)^2, unbiased variances.
#   a: real [0, 2]    mean 1, var 2;  synthetic [1, 5]  mean 3, var 8  -> 4 + (r2 - 2 r2)^2 = 6
#   b: real [0, 0, 3] mean 1, var 3;  synthetic [1, 1, 4] mean 2, var 3 -> 1 + 0 = 1
#   e: real [0, 4]    mean 2, var 8;  synthetic [2, 4]  mean 3, var 2  -> 1 + (2 r2 - r2)^2 = 3
#   c: one real image  -> None;  d: no synthetic images -> None;  None: no group, left out
REAL = [("a", 0), ("a", 2), ("b", 0), ("b", 0), ("b", 3), ("e", 0), ("e", 4), ("c", 5),
        ("d", 1), ("d", 2), (None, 100)]
SYN = [("a", 1), ("b", 1), ("a", 5), ("b", 1), ("b", 4), ("e", 2), ("e", 4), ("c", 1),
       ("c", 2), (None, -50), (None, 70)]


def _split(rows):
    return np.array([[v] for _, v in rows], dtype=float), [g for g, _ in rows]


def test_fid_by_group_hand_worked():
    fr, gr = _split(REAL)
    fs, gs = _split(SYN)
    out = fid_by_group(fr, gr, fs, gs)
    assert list(out) == ["a", "b", "c", "d", "e"]
    assert out["a"].value == pytest.approx(6.0, rel=1e-12)
    assert out["b"].value == pytest.approx(1.0, rel=1e-12)
    assert out["e"].value == pytest.approx(3.0, rel=1e-12)
    assert (out["a"].n_real, out["a"].n_synthetic) == (2, 2)
    assert (out["b"].n_real, out["b"].n_synthetic) == (3, 3)
    assert out["c"] == GroupFID(None, 1, 2, "fewer than 2 real images")
    assert out["d"] == GroupFID(None, 2, 0, "no synthetic images")
    assert all(out[g].reason is None for g in "abe")
    # variance of [6, 1, 3]: mean 10/3, squared deviations 64/9 + 49/9 + 1/9 = 114/9, / 3
    assert fid_variance(out) == pytest.approx(38 / 9, rel=1e-12)
    assert fid_variance(out) == pytest.approx(np.var([6.0, 1.0, 3.0]), rel=1e-12)
    assert fid_variance(out) != pytest.approx(np.var([6.0, 1.0, 3.0], ddof=1))


def test_fid_by_group_min_count_and_one_sided():
    fr, gr = _split(REAL)
    fs, gs = _split(SYN)
    out = fid_by_group(fr, gr, fs, gs, min_count=3)
    assert out["a"].value is None
    assert out["a"].reason == "fewer than 3 real images; fewer than 3 synthetic images"
    assert out["b"].value == pytest.approx(1.0, rel=1e-12)
    assert fid_variance(out) is None  # one defined group
    only_real = fid_by_group(fr[:2], ["x", "x"], fs[:2], ["y", "y"])
    assert only_real["x"] == GroupFID(None, 2, 0, "no synthetic images")
    assert only_real["y"] == GroupFID(None, 0, 2, "no real images")


def test_fid_by_group_errors():
    f = np.zeros((3, 2))
    with pytest.raises(ValueError, match="3 feature rows but 2 group values"):
        fid_by_group(f, ["a", "a"], f, ["a"] * 3)
    with pytest.raises(ValueError, match="min_count"):
        fid_by_group(f, ["a"] * 3, f, ["a"] * 3, min_count=1)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fid_by_group(f, ["a"] * 3, np.zeros((3, 4)), ["a"] * 3)


def test_fid_variance_population_and_none():
    groups = {"x": GroupFID(2.0, 5, 5), "y": GroupFID(6.0, 5, 5), "z": GroupFID(None, 1, 5, "r")}
    assert fid_variance(groups) == 4.0  # mean 4, deviations +-2, divided by K = 2
    assert fid_variance({"x": GroupFID(2.0, 5, 5)}) is None
    assert fid_variance({}) is None


def test_group_fid_is_frozen():
    g = GroupFID(1.0, 2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.value = 2.0
    assert g.as_dict() == {"value": 1.0, "n_real": 2, "n_synthetic": 3, "reason": None}
