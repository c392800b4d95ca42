"""KID against sklearn's polynomial kernel and torchmetrics; precision/recall/density/coverage
against a brute-force k-NN (sklearn) and hand-worked planted cases."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import polynomial_kernel as sk_poly
from sklearn.neighbors import NearestNeighbors

from benchmark.metrics import kid, mmd2_unbiased, polynomial_kernel, prdc
from benchmark.metrics.kid import kid_subset_size


def u_statistic(x, y):
    """Unbiased MMD^2 with explicit loops over pairs (sklearn kernel): the definition."""
    d = x.shape[1]
    kxx = sk_poly(x, x, degree=3, gamma=1.0 / d, coef0=1)
    kyy = sk_poly(y, y, degree=3, gamma=1.0 / d, coef0=1)
    kxy = sk_poly(x, y, degree=3, gamma=1.0 / d, coef0=1)
    m, n = len(x), len(y)
    sxx = sum(kxx[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(kyy[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return sxx + syy - 2 * kxy.mean()


def test_kernel_matches_sklearn():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    np.testing.assert_allclose(polynomial_kernel(x, y),
                               sk_poly(x, y, degree=3, gamma=1 / 5, coef0=1), rtol=1e-12)


def test_mmd2_unbiased_matches_loops_and_torchmetrics():
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(1)
    x, y = rng.random((12, 6)), rng.random((12, 6)) + 0.2
    k = polynomial_kernel
    ours = mmd2_unbiased(k(x, x), k(y, y), k(x, y))
    assert ours == pytest.approx(u_statistic(x, y), rel=1e-10)

    class Identity(torch.nn.Module):
        num_features = 6

        def forward(self, t):
            return t

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = KernelInceptionDistance(feature=Identity(), subset_size=12, subsets=2)
        tm.update(torch.from_numpy(x), real=True)
        tm.update(torch.from_numpy(y), real=False)
        mean, _ = tm.compute()
    # subsets of the full size are the whole set: torchmetrics' estimate is the U-statistic
    assert ours == pytest.approx(float(mean), rel=1e-8)


def test_weighted_mmd2_is_the_distinct_pair_average_of_duplicated_rows():
    rng = np.random.default_rng(2)
    x, y = rng.random((5, 3)), rng.random((4, 3))
    wx, wy = np.array([2, 0, 1, 3, 1]), np.array([1, 1, 2, 0])
    k = polynomial_kernel
    got = mmd2_unbiased(k(x, x), k(y, y), k(x, y), wx, wy)
    # expand the copies and average over pairs of copies that come from different images
    xr, srcx = np.repeat(x, wx, 0), np.repeat(np.arange(5), wx)
    yr, srcy = np.repeat(y, wy, 0), np.repeat(np.arange(4), wy)

    def within(z, src):
        kz = k(z, z)
        pairs = [(i, j) for i in range(len(z)) for j in range(len(z)) if src[i] != src[j]]
        return np.mean([kz[i, j] for i, j in pairs])

    expected = within(xr, srcx) + within(yr, srcy) - 2 * k(xr, yr).mean()
    assert got == pytest.approx(expected, rel=1e-10)


def test_kid_subsets_seeded_and_adapted():
    rng = np.random.default_rng(3)
    x, y = rng.random((40, 8)), rng.random((30, 8)) + 0.05
    a = kid(x, y, subset_size=1000, n_subsets=20, seed=5)
    b = kid(x, y, subset_size=1000, n_subsets=20, seed=5)
    assert a == b and a.subset_size == 15 and a.n_subsets == 20 and a.std > 0
    # the mean over many subsets approaches the full-sample U-statistic
    many = kid(x, y, n_subsets=3000, seed=0)
    assert many.value == pytest.approx(u_statistic(x, y), abs=3 * many.std / np.sqrt(3000))
    assert kid_subset_size(5000, 3000) == 1000
    assert kid_subset_size(1500, 3000) == 750
    assert kid_subset_size(3, 10) == 2
    with pytest.raises(ValueError, match="at least 2 images"):
        kid_subset_size(1, 10)


# --------------------------------------------------------------------------- PRDC


def brute_prdc(x, y, k):
    """Precision/recall/density/coverage with sklearn's exact k-NN and explicit loops."""
    rx = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x).kneighbors(x)[0][:, k]
    ry = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(y).kneighbors(y)[0][:, k]
    d = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)
    eps = 1e-9  # closed balls; distances from two routes differ by round-off
    precision = np.mean([any(d[i, j] <= rx[i] + eps for i in range(len(x)))
                         for j in range(len(y))])
    recall = np.mean([any(d[i, j] <= ry[j] + eps for j in range(len(y)))
                      for i in range(len(x))])
    density = np.mean([sum(d[i, j] <= rx[i] + eps for i in range(len(x)))
                       for j in range(len(y))]) / k
    coverage = np.mean([d[i].min() <= rx[i] + eps for i in range(len(x))])
    return precision, recall, density, coverage


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_brute_force(k):
    rng = np.random.default_rng(10 + k)
    x = rng.normal(size=(60, 4))
    y = rng.normal(size=(45, 4)) * 1.3 + 0.4
    got = prdc(x, y, k=k)
    exp = brute_prdc(x, y, k)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(exp,
                                                                                   abs=1e-12)
    assert 0 < got.precision < 1 and 0 < got.coverage < 1


def test_prdc_planted_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    same = prdc(x, x.copy(), k=5)
    # every synthetic point is a real point: inside its own ball and (at least) its k
    # neighbours' balls... precision, recall and coverage are 1
    assert same.precision == same.recall == same.coverage == 1.0 and same.density >= 1.0
    far = prdc(x, x + 100.0, k=5)
    assert far.precision == far.recall == far.density == far.coverage == 0.0
    # hand-worked 1-d case, k = 1: real {0, 1, 3} have radii {1, 1, 2};
    # synthetic {0.5, 10}: 0.5 lies in the balls of 0 and 1 -> precision 1/2, density 2/2;
    # synthetic radii {9.5, 9.5}: every real point is within 9.5 of 0.5 -> recall 1;
    # real points whose ball holds a synthetic point: 0 and 1 -> coverage 2/3
    got = prdc(np.array([[0.0], [1.0], [3.0]]), np.array([[0.5], [10.0]]), k=1)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(
        (0.5, 1.0, 1.0, 2 / 3))


def test_prdc_needs_more_than_k_points():
    with pytest.raises(ValueError, match="more than 5 points"):
        prdc(np.zeros((5, 2)), np.ones((10, 2)), k=5)


def test_kid_subsets_equal_a_loop_over_subsets():
    """The batched subset computation against one mmd2_unbiased per subset, same draws."""
    from benchmark.metrics.kid import kid_from_kernels

    rng = np.random.default_rng(4)
    x, y = rng.random((30, 5)), rng.random((26, 5)) + 0.1
    k = polynomial_kernel
    got = kid_from_kernels(k(x, x), k(y, y), k(x, y), subset_size=10, n_subsets=7, seed=3)
    draws = np.random.default_rng(3)
    vals = []
    for _ in range(7):
        i = draws.choice(30, size=10, replace=False)
        j = draws.choice(26, size=10, replace=False)
        vals.append(u_statistic(x[i], y[j]))
    assert got.value == pytest.approx(np.mean(vals), rel=1e-10)
    assert got.std == pytest.approx(np.std(vals), rel=1e-8)
