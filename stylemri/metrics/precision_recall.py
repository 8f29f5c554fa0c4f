"""k-NN manifold metrics in feature space.

Precision / recall (Kynkäänniemi et al. 2019): each real feature gets a ball whose radius is the distance
to its k-th nearest real neighbour; precision is the fraction of generated features inside at least one
real ball (fidelity), recall the fraction of real features inside at least one generated ball (diversity).
Density / coverage (Naeem et al. 2020) use only the real balls: density counts how many real balls hold
each generated sample (divided by k; ~1 when the distributions match, above 1 when samples crowd the
modes), coverage is the fraction of real balls that hold at least one generated sample.

Each metric follows its own reference on the boundary of a ball: precision and recall count a point at
exactly the radius as inside (`<=`, Kynkäänniemi et al.'s and NVlabs' StyleGAN2-ADA code); density and
coverage count only points strictly inside (`<`, Naeem et al.'s official `prdc` package). The difference
matters when features repeat (blank edge slices are common in MRI): a real feature repeated more than k
times has a k-NN radius of 0, whose ball then admits exact copies for precision / recall and nothing for
density / coverage. `prdc` reports how many real radii are 0 and warns when any are. Identical rows are
at distance exactly 0 (the |a|^2 + |b|^2 - 2ab expansion alone leaves rounding noise there, which would
decide ties at random). Distances are Euclidean, float64.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from stylemri.errors import StylemriWarning


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def row_ids(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One integer per distinct row of a and b together: equal ids mean identical features."""
    _, inverse = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse[: len(a)], inverse[len(a):]


def distances(a: np.ndarray, b: np.ndarray, ids: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Euclidean distances between the rows of a (N, D) and b (M, D); identical rows at exactly 0."""
    d2 = _sq_norms(a)[:, None] + _sq_norms(b)[None, :] - 2.0 * (a @ b.T)
    d = np.sqrt(np.maximum(d2, 0.0))
    ia, ib = ids if ids is not None else row_ids(a, b)
    d[ia[:, None] == ib[None, :]] = 0.0
    return d


def _distance_blocks(a: np.ndarray, b: np.ndarray, block: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Row blocks of the Euclidean distance matrix between a (N, D) and b (M, D)."""
    ia, ib = row_ids(a, b)
    for start in range(0, a.shape[0], block):
        rows = slice(start, min(start + block, a.shape[0]))
        yield rows, distances(a[rows], b, (ia[rows], ib))


def zero_radius_warning(count: int, total: int, k: int) -> None:
    """Warn (the CLI shows it as one line) that `count` of `total` real features repeat (k-NN radius 0)."""
    if count:
        warnings.warn(f"{count} of {total} real features repeat (k-NN radius 0, k={k}; e.g. blank slices): "
                      "precision/recall count exact copies inside those balls, density/coverage count "
                      "nothing inside them (each metric's reference definition)", StylemriWarning, stacklevel=3)


def knn_radii(x: np.ndarray, ks: tuple[int, ...], block: int = 1024) -> dict[int, np.ndarray]:
    """Distance from every row of x to its k-th nearest other row, for each k in ks."""
    kmax = max(ks)
    if x.shape[0] <= kmax:
        raise ValueError(f"k-NN with k={kmax} needs more than {kmax} samples, got {x.shape[0]}")
    out = {k: np.empty(x.shape[0], np.float64) for k in ks}
    for rows, d in _distance_blocks(x, x, block):
        # Index 0 of the sorted row is the point itself (distance 0), so the k-th neighbour is at index k.
        part = np.partition(d, list(ks), axis=1)
        for k in ks:
            out[k][rows] = part[:, k]
    return out


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 3, k_density: int = 5,
         block: int = 1024) -> dict[str, float | int]:
    """Precision, recall (k nearest neighbours) and density, coverage (k_density) of fake vs real features;
    `zero_radius_real` counts real features whose k-NN radius (the smaller k) is 0: repeated features."""
    r = np.asarray(real, np.float64)
    f = np.asarray(fake, np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"prdc expects (N, D) and (M, D) features, got {r.shape} and {f.shape}")
    if k < 1 or k_density < 1:
        raise ValueError(f"k={k}, k_density={k_density}: expected positive neighbour counts")
    real_radii = knn_radii(r, tuple(sorted({k, k_density})), block)
    fake_radii = knn_radii(f, (k,), block)[k]
    r_pr, r_dc = real_radii[k], real_radii[k_density]
    zero_radii = int((real_radii[min(k, k_density)] == 0).sum())
    zero_radius_warning(zero_radii, r.shape[0], min(k, k_density))

    fake_in_real = np.zeros(f.shape[0], bool)  # precision
    real_in_fake = np.zeros(r.shape[0], bool)  # recall
    density_count = np.zeros(f.shape[0], np.int64)
    covered = np.zeros(r.shape[0], bool)
    for rows, d in _distance_blocks(r, f, block):  # d[i, j] = |real_i - fake_j|
        fake_in_real |= (d <= r_pr[rows, None]).any(axis=0)  # Kynkaanniemi et al. / NVlabs: <=
        real_in_fake[rows] = (d <= fake_radii[None, :]).any(axis=1)
        inside_dc = d < r_dc[rows, None]  # Naeem et al.'s prdc: strictly inside
        density_count += inside_dc.sum(axis=0)
        covered[rows] = inside_dc.any(axis=1)
    return {
        "precision": float(fake_in_real.mean()),
        "recall": float(real_in_fake.mean()),
        "density": float(density_count.sum() / (k_density * f.shape[0])),
        "coverage": float(covered.mean()),
        "k": k,
        "k_density": k_density,
        "zero_radius_real": zero_radii,
    }
