"""Fréchet Inception Distance: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

tr((S1 S2)^(1/2)) is computed through symmetric eigendecompositions: with A = S1^(1/2) (PSD),
S1 S2 is similar to A S2 A, which is symmetric PSD, so tr((S1 S2)^(1/2)) = sum sqrt(eig(A S2 A)).
This never leaves the reals, works for rank-deficient covariances (fewer samples than 2048) and is
faster than a Schur-based sqrtm. Negative eigenvalues of A S2 A are the "complex parts" of the usual
sqrtm: tiny ones are rounding and are clipped, larger ones mean the inputs are not covariances and raise.
`trace_sqrt_product_reference` is the scipy.linalg.sqrtm formula (pytorch-fid / clean-fid) the tests compare.

From features with fewer samples than dimensions (small evaluations, tests), `fid_from_features` uses
the exact sample-space form instead: with centred, scaled samples X (n, D) and Y (m, D), S1 = X^T X and
S2 = Y^T Y, the nonzero eigenvalues of S1 S2 are the squared singular values of X Y^T (n, m), so
tr((S1 S2)^(1/2)) is its nuclear norm: an n x m SVD instead of two D x D eigendecompositions.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from stylemri.metrics.metric_utils import FeatureStats


def _check_cov(sigma: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(sigma, np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{name}: expected a square covariance matrix, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name}: covariance has NaN or infinite entries")
    asym = np.max(np.abs(s - s.T)) if s.size else 0.0
    if asym > 1e-6 * max(np.max(np.abs(s)), 1e-300):
        raise ValueError(f"{name}: covariance is not symmetric (max |S - S^T| = {asym:.3g})")
    return (s + s.T) * 0.5


def _clean_eigenvalues(w: np.ndarray, tol: float, what: str) -> np.ndarray:
    """Eigenvalues of a PSD matrix: below the rounding floor (n * eps * max) they are 0, not noise whose
    square root would add up over a null space; clearly negative ones mean the input is wrong."""
    scale = max(float(np.max(np.abs(w))), 1e-300) if w.size else 1.0
    if w.size and w.min() < -tol * scale:
        raise ValueError(f"{what}: eigenvalue {w.min():.3g} (largest {scale:.3g}) is negative beyond "
                         f"tolerance {tol:g}; the square root would be complex")
    floor = w.size * np.finfo(np.float64).eps * scale
    return np.where(w > floor, w, 0.0)


def _psd_sqrt(s: np.ndarray, tol: float, name: str) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    w = _clean_eigenvalues(w, tol, f"{name} (not positive semi-definite)")
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, *, tol: float = 1e-5) -> float:
    """tr((sigma1 sigma2)^(1/2)) for PSD matrices, in float64; ValueError if the result would be complex."""
    s1 = _check_cov(sigma1, "sigma1")
    s2 = _check_cov(sigma2, "sigma2")
    if s1.shape != s2.shape:
        raise ValueError(f"covariance shapes differ: {s1.shape} vs {s2.shape}")
    a = _psd_sqrt(s1, tol, "sigma1")
    m = a @ s2 @ a
    w = np.linalg.eigvalsh((m + m.T) * 0.5)
    w = _clean_eigenvalues(w, tol, "sqrt(sigma1 sigma2) has an imaginary part: sigma1^1/2 sigma2 sigma1^1/2")
    return float(np.sum(np.sqrt(w)))


def trace_sqrt_product_reference(sigma1: np.ndarray, sigma2: np.ndarray, *, atol: float = 1e-3) -> float:
    """The classic computation (pytorch-fid / clean-fid): scipy sqrtm of the product, imaginary part checked."""
    s1 = np.asarray(sigma1, np.float64)
    s2 = np.asarray(sigma2, np.float64)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=atol):
            raise ValueError(f"sqrtm has an imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     *, tol: float = 1e-5) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    m1 = np.asarray(mu1, np.float64).ravel()
    m2 = np.asarray(mu2, np.float64).ravel()
    if m1.shape != m2.shape:
        raise ValueError(f"mean shapes differ: {m1.shape} vs {m2.shape}")
    s1 = _check_cov(sigma1, "sigma1")
    s2 = _check_cov(sigma2, "sigma2")
    if s1.shape != (m1.size, m1.size):
        raise ValueError(f"sigma shape {s1.shape} does not match mean length {m1.size}")
    diff = m1 - m2
    return _combine(float(diff @ diff), float(np.trace(s1)), float(np.trace(s2)), trace_sqrt_product(s1, s2, tol=tol))


def _combine(mean_term: float, tr1: float, tr2: float, tr_sqrt: float) -> float:
    value = mean_term + tr1 + tr2 - 2.0 * tr_sqrt
    # The exact value is >= 0; cancellation can leave a tiny negative for identical inputs.
    if -1e-9 * max(mean_term + tr1 + tr2, 1.0) < value < 0:
        value = 0.0
    return value


def trace_sqrt_product_from_samples(x: np.ndarray, y: np.ndarray) -> float:
    """tr((cov(x) cov(y))^(1/2)) from samples (n, D), (m, D): nuclear norm of Xc Yc^T / sqrt((n-1)(m-1))."""
    xc = np.asarray(x, np.float64) - np.mean(x, axis=0, dtype=np.float64)
    yc = np.asarray(y, np.float64) - np.mean(y, axis=0, dtype=np.float64)
    cross = (xc @ yc.T) / np.sqrt((len(xc) - 1) * (len(yc) - 1))
    return float(np.sum(np.linalg.svd(cross, compute_uv=False)))


def fid_from_stats(a: FeatureStats, b: FeatureStats, *, tol: float = 1e-5) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, tol=tol)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray, *, tol: float = 1e-5) -> float:
    """FID between two feature sets (N, D) and (M, D); sample-space form when max(N, M) < D."""
    a = np.asarray(features_a)
    b = np.asarray(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"FID needs two feature sets (N, D), (M, D) with N, M >= 2, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("FID: features contain NaN or infinite values")
    if max(len(a), len(b)) >= a.shape[1]:
        return fid_from_stats(FeatureStats.from_features(a), FeatureStats.from_features(b), tol=tol)
    diff = np.mean(a, axis=0, dtype=np.float64) - np.mean(b, axis=0, dtype=np.float64)
    tr1 = float(np.sum(np.var(a, axis=0, dtype=np.float64, ddof=1)))
    tr2 = float(np.sum(np.var(b, axis=0, dtype=np.float64, ddof=1)))
    return _combine(float(diff @ diff), tr1, tr2, trace_sqrt_product_from_samples(a, b))
