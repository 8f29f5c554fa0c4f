"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets (as StyleGAN2-ADA and clean-fid compute it).

Unbiased means its expectation is 0 when both sets come from one distribution, so single values can be
slightly negative; report the mean and the standard deviation over subsets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    num_subsets: int
    subset_size: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between equal-size samples x (m, d) and y (m, d) with the KID kernel."""
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise ValueError(f"mmd2_unbiased needs two samples of equal size >= 2, got {x.shape[0]} and {y.shape[0]}")
    kxx = polynomial_kernel(x, x)
    kyy = polynomial_kernel(y, y)
    kxy = polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100, max_subset_size: int = 1000,
        seed: int = 0) -> KIDResult:
    """KID between feature sets (N, D) and (M, D): subsets of min(N, M, max_subset_size) drawn without
    replacement, seeded, MMD^2 in float64 per subset; returns mean and std over subsets."""
    r = np.asarray(real, np.float64)
    f = np.asarray(fake, np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"kid expects (N, D) and (M, D) features, got {r.shape} and {f.shape}")
    m = min(r.shape[0], f.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"kid needs at least 2 images per set, got {r.shape[0]} and {f.shape[0]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets {num_subsets}: expected >= 1")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, np.float64)
    for i in range(num_subsets):
        x = f[rng.choice(f.shape[0], m, replace=False)]
        y = r[rng.choice(r.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(x, y)
    return KIDResult(mean=float(values.mean()), std=float(values.std()), num_subsets=num_subsets, subset_size=m)
