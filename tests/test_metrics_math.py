"""Metric formulas on data with known answers: no Inception weights needed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from stylemri.metrics import fid, kid, precision_recall, swd
from stylemri.metrics.metric_utils import FeatureStats


def _random_cov(rng: np.random.Generator, d: int, cond: float = 50.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.geomspace(1.0, 1.0 / cond, d)) @ q.T


# ----------------------------------------------------------------------------------------------- FID


def test_frechet_closed_form_commuting_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([4.0, 1.0, 0.25]), np.array([1.0, 9.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # = 7.25 + 1 + 4 = 12.25
    got = fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12) and expected == pytest.approx(12.25)


def test_frechet_closed_form_non_commuting_2x2():
    # For a 2x2 matrix M with positive eigenvalues, tr(M^1/2) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2.0 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([0.5, -1.0]), np.array([0.0, 0.0])
    expected = 0.25 + 1.0 + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_trace_sqrt_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    for d in (4, 32):
        s1, s2 = _random_cov(rng, d), _random_cov(rng, d, cond=1e3)
        assert fid.trace_sqrt_product(s1, s2) == pytest.approx(fid.trace_sqrt_product_reference(s1, s2), rel=1e-9)


def test_empirical_fid_approaches_closed_form():
    rng = np.random.default_rng(1)
    d = 4
    s1, s2 = _random_cov(rng, d, cond=4.0), 2.0 * _random_cov(rng, d, cond=4.0)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    x = rng.multivariate_normal(mu1, s1, size=200_000)
    y = rng.multivariate_normal(mu2, s2, size=200_000)
    exact = fid.frechet_distance(mu1, s1, mu2, s2)
    assert fid.fid_from_features(x, y) == pytest.approx(exact, rel=0.02)


def test_fid_of_a_set_with_itself_is_zero_even_rank_deficient():
    rng = np.random.default_rng(2)
    full = rng.normal(size=(300, 16))
    assert abs(fid.fid_from_features(full, full)) < 1e-9
    few = rng.normal(size=(20, 256)).astype(np.float32)  # 20 samples in 256-d: rank 19 covariance
    assert abs(fid.fid_from_features(few, few)) < 1e-6  # sample-space path
    stats = FeatureStats.from_features(few)
    assert abs(fid.fid_from_stats(stats, stats)) < 1e-6  # covariance path, eigenvalues at the rounding floor
    assert fid.fid_from_features(few, few + 0.1) == pytest.approx(256 * 0.01, rel=1e-6)  # pure mean shift


def test_fid_fails_loudly_on_non_psd_or_bad_input():
    good = np.eye(3)
    bad = np.diag([1.0, 1.0, -0.5])  # a "covariance" whose square root is complex
    with pytest.raises(ValueError, match="complex|semi-definite"):
        fid.frechet_distance(np.zeros(3), bad, np.zeros(3), good)
    with pytest.raises(ValueError, match="complex|imaginary"):
        fid.frechet_distance(np.zeros(3), good, np.zeros(3), bad)
    with pytest.raises(ValueError, match="symmetric"):
        fid.frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        fid.frechet_distance(np.zeros(2), np.array([[np.nan, 0], [0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(np.zeros((1, 4)))


# ----------------------------------------------------------------------------------------------- KID


def test_kid_unbiased_near_zero_for_one_distribution_and_positive_otherwise():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    same = kid.kid(a, b, num_subsets=20, max_subset_size=200)
    diff = kid.kid(a, rng.normal(0.3, 1.2, size=(400, 32)), num_subsets=20, max_subset_size=200)
    assert same.subset_size == 200 and same.num_subsets == 20 and same.std > 0
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert diff.mean > 0.05 and diff.mean > 20 * abs(same.mean)


def test_mmd2_unbiased_matches_direct_formula_and_is_reproducible():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert kid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert kid.kid(x, y, num_subsets=5, seed=9) == kid.kid(x, y, num_subsets=5, seed=9)


# ------------------------------------------------------------------------------------ precision/recall


def test_prdc_toy_sets_with_known_overlap():
    rng = np.random.default_rng(5)
    r1 = rng.uniform(0, 1, size=(50, 2))  # real mode 1
    r2 = rng.uniform(0, 1, size=(50, 2)) + 1000.0  # real mode 2, far away
    f3 = rng.uniform(0, 1, size=(50, 2)) - 1000.0  # fake mode on no real data
    real = np.concatenate([r1, r2])
    fake = np.concatenate([r1, f3])  # half the fakes copy mode 1 exactly, the other half are elsewhere
    out = precision_recall.prdc(real, fake, k=3, k_density=5)
    assert out["precision"] == 0.5  # fakes in mode 1 lie in real balls, the others in none
    assert out["recall"] == 0.5  # mode 1 covered by fake balls, mode 2 not
    assert out["coverage"] == 0.5
    # each copied fake lies strictly inside its own ball and the balls of the 4 reals it is one of the 4 nearest
    # neighbours of; the 5th-nearest sits on the boundary, outside under Naeem et al.'s `<`: 50 * 5 / (k * 100)
    assert out["density"] == pytest.approx(50 * 5 / (5 * 100))


def test_prdc_same_distribution_high_disjoint_zero():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same = precision_recall.prdc(a, b)
    assert same["precision"] > 0.6 and same["recall"] > 0.6 and 0.6 < same["density"] < 1.5
    far = precision_recall.prdc(a, b + 100.0)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0
    ident = precision_recall.prdc(a, a)
    assert ident["precision"] == ident["recall"] == ident["coverage"] == 1.0


def _reference_prdc(real: np.ndarray, fake: np.ndarray, k: int = 3, k_density: int = 5) -> dict[str, float]:
    """The references, written out: NVlabs' precision/recall (`<=`) and Naeem et al.'s prdc package (`<`)."""
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_k, r_dc = np.sort(d_rr, axis=1)[:, k], np.sort(d_rr, axis=1)[:, k_density]
    f_k = np.sort(d_ff, axis=1)[:, k]
    return {"precision": (d_rf <= r_k[:, None]).any(axis=0).mean(), "recall": (d_rf <= f_k[None]).any(axis=1).mean(),
            "density": (d_rf < r_dc[:, None]).sum(axis=0).mean() / k_density,
            "coverage": (d_rf.min(axis=1) < r_dc).mean()}


def test_prdc_ties_follow_each_reference_and_warn():
    from stylemri.audit import fidelity
    from stylemri.errors import StylemriWarning

    black = np.zeros((10, 64))  # 10 all-black images: identical features in each set
    rng = np.random.default_rng(8)
    texture = rng.uniform(0, 1, size=(64,)) * 40  # features of a constant non-zero image (rounding-prone norms)
    for real, fake, want in [
        (black, black.copy(), {"precision": 1.0, "recall": 1.0, "density": 0.0, "coverage": 0.0}),
        (black + texture, black + texture, {"precision": 1.0, "recall": 1.0, "density": 0.0, "coverage": 0.0}),
        (np.concatenate([black + texture, rng.normal(size=(40, 64))]),
         np.concatenate([black + texture, rng.normal(size=(30, 64))]), None),
    ]:
        want = want or _reference_prdc(real, fake)
        assert _reference_prdc(real, fake) == pytest.approx(want)
        with pytest.warns(StylemriWarning, match=r"10 of \d+ real features repeat"):
            out = precision_recall.prdc(real, fake, block=7)
        assert {m: out[m] for m in want} == pytest.approx(want) and out["zero_radius_real"] == 10
        rows = fidelity.prdc_per_sample(real, fake)
        assert {m: rows[m].mean() for m in want} == pytest.approx(want) and rows["zero_radius_real"] == 10
    rng_sets = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    assert precision_recall.prdc(*rng_sets)["zero_radius_real"] == 0  # no repeats: no warning, 0 in the JSON


def test_alpha_levels_are_alaa_and_synthcity_grid():
    from stylemri.audit import fidelity

    assert len(fidelity.ALPHAS) == 30 and fidelity.ALPHAS[0] == 0 and fidelity.ALPHAS[-1] == 1
    np.testing.assert_array_equal(fidelity.ALPHAS, np.linspace(0, 1, 30))


def test_knn_radii_blocking_and_errors():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(37, 3))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    expected = np.sort(d, axis=1)[:, 3]
    got = precision_recall.knn_radii(x, (3,), block=5)[3]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="needs more than"):
        precision_recall.knn_radii(x[:3], (3,))


# ----------------------------------------------------------------------------------------------- SWD


def _phantoms(n: int, res: int = 32, seed: int = 0) -> np.ndarray:
    """Brain-phantom-like uint8 images: overlapping ellipses of random intensity plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res] / res
    out = np.zeros((n, 1, res, res))
    for i in range(n):
        for _ in range(6):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            ry, rx = rng.uniform(0.05, 0.35, 2)
            out[i, 0][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] += rng.uniform(0.2, 1.0)
    out = out / out.max() * 230 + rng.normal(0, 4, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_pyramid_filters_match_progan_scipy_reference():
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 255, size=(2, 3, 16, 16)).astype(np.float32)
    g = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float64) / 256.0
    down_ref = scipy.ndimage.convolve(x.astype(np.float64), g[None, None], mode="mirror")[:, :, ::2, ::2]
    np.testing.assert_allclose(swd.pyr_down(torch.from_numpy(x)).numpy(), down_ref, rtol=1e-5, atol=1e-3)
    small = x[:, :, :8, :8]
    stuffed = np.zeros((2, 3, 16, 16))
    stuffed[:, :, ::2, ::2] = small
    up_ref = scipy.ndimage.convolve(stuffed, 4 * g[None, None], mode="mirror")
    np.testing.assert_allclose(swd.pyr_up(torch.from_numpy(small.copy())).numpy(), up_ref, rtol=1e-5, atol=1e-3)
    # The Laplacian pyramid reconstructs the image exactly.
    pyr = swd.laplacian_pyramid(torch.from_numpy(x), 3)
    rec = pyr[-1]
    for level in reversed(pyr[:-1]):
        rec = swd.pyr_up(rec) + level
    np.testing.assert_allclose(rec.numpy(), x, atol=1e-3)


def test_swd_zero_for_identical_sets_and_independent_of_batching():
    imgs = _phantoms(12)
    a = swd.swd(iter([imgs]), iter([imgs[:5], imgs[5:]]))
    assert a["mean"] == 0.0 and set(a["per_resolution"]) == {"32", "16"}
    b = swd.swd(iter([imgs[:7], imgs[7:]]), iter([imgs[::-1]]))
    c = swd.swd(iter([imgs]), iter([imgs[::-1][:3], imgs[::-1][3:]]))
    assert b["mean"] > 0 and b == c


def test_swd_monotone_in_growing_blur():
    real = _phantoms(16)
    values = []
    for sigma in (0.5, 1.0, 2.0, 4.0):
        blurred = scipy.ndimage.gaussian_filter(real.astype(np.float64), (0, 0, sigma, sigma))
        blurred = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
        values.append(swd.swd(iter([real]), iter([blurred]))["mean"])
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_swd_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        swd.swd(iter([np.zeros((2, 1, 32, 32), np.float32)]), iter([np.zeros((2, 1, 32, 32), np.uint8)]))
    with pytest.raises(ValueError, match="at least 16"):
        swd.swd(iter([np.zeros((2, 1, 8, 8), np.uint8)]), iter([np.zeros((2, 1, 8, 8), np.uint8)]))


def test_sample_space_fid_matches_covariance_path():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(30, 64)) @ rng.normal(size=(64, 64))
    y = rng.normal(0.2, 1.0, size=(25, 64)) @ rng.normal(size=(64, 64))
    fast = fid.fid_from_features(x, y)  # 30 < 64: sample-space SVD path
    ref = fid.fid_from_stats(FeatureStats.from_features(x), FeatureStats.from_features(y))
    assert fast == pytest.approx(ref, rel=1e-8)
    assert fid.trace_sqrt_product_from_samples(x, y) == pytest.approx(
        fid.trace_sqrt_product(np.cov(x, rowvar=False), np.cov(y, rowvar=False)), rel=1e-8)
    with pytest.raises(ValueError, match="NaN"):
        fid.fid_from_features(np.full((3, 4), np.nan), x[:3, :4])
