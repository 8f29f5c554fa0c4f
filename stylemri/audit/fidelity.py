"""Fidelity: do the synthetic images look like the training patients' images, as much as unseen patients do?

Per class, with equal N in every set: FID, KID, precision / recall / density / coverage and alpha-precision /
beta-recall of synthetic vs training features, beside the same figures for holdout vs training (the
real-vs-real floor). Intervals: FID and KID resample both sets (KID drops pairs of one original image);
the k-NN metrics keep the manifolds and resample the per-image indicators they average, which avoids the
zero distances duplicated points would create.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stylemri.audit import stats
from stylemri.audit.verdicts import THRESHOLDS, Finding, enough
from stylemri.metrics import fid as fid_mod
from stylemri.metrics import kid as kid_mod
from stylemri.metrics.precision_recall import distances as _dist
from stylemri.metrics.precision_recall import knn_radii, zero_radius_warning

ALPHA_LEVELS = 30  # Alaa et al.'s code and synthcity: np.linspace(0, 1, 30) alpha / beta levels
ALPHAS = np.linspace(0.0, 1.0, ALPHA_LEVELS)


def prdc_per_sample(real: np.ndarray, fake: np.ndarray, k: int = 3, k_density: int = 5) -> dict[str, np.ndarray]:
    """Per-image contributions whose means are precision, recall, density and coverage, with the same
    boundary rules as stylemri.metrics.precision_recall.prdc (which the tests compare against): `<=` for
    precision / recall (Kynkäänniemi et al.), `<` for density / coverage (Naeem et al.); plus
    `zero_radius_real`, the number of real features whose k-NN radius is 0 (repeated features)."""
    r = np.asarray(real, np.float64)
    f = np.asarray(fake, np.float64)
    radii = knn_radii(r, tuple(sorted({k, k_density})))
    fake_radii = knn_radii(f, (k,))[k]
    d = _dist(r, f)  # (n_real, n_fake)
    return {
        "precision": (d <= radii[k][:, None]).any(axis=0).astype(np.float64),
        "recall": (d <= fake_radii[None, :]).any(axis=1).astype(np.float64),
        "density": (d < radii[k_density][:, None]).sum(axis=0) / float(k_density),
        "coverage": (d < radii[k_density][:, None]).any(axis=1).astype(np.float64),
        "zero_radius_real": int((radii[min(k, k_density)] == 0).sum()),
    }


def alpha_beta_per_sample(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alaa et al. 2022 in a fixed embedding: (fake rows: inside the real alpha-support ball, per alpha),
    (real rows: covered by a synthetic neighbour that lies in the synthetic beta-support, per beta)."""
    r = np.asarray(real, np.float64)
    f = np.asarray(fake, np.float64)
    center = r.mean(axis=0)
    radii = np.quantile(np.linalg.norm(r - center, axis=1), ALPHAS)
    in_alpha = np.linalg.norm(f - center, axis=1)[:, None] <= radii[None, :]
    d_rr = _dist(r, r)
    np.fill_diagonal(d_rr, np.inf)
    real_nn = d_rr.min(axis=1)
    d_rf = _dist(r, f)
    nearest_fake = d_rf.argmin(axis=1)
    to_fake = d_rf[np.arange(len(r)), nearest_fake]
    fake_center_d = np.linalg.norm(f[nearest_fake] - f.mean(axis=0), axis=1)
    beta_radii = np.quantile(fake_center_d, ALPHAS)
    covered = (to_fake <= real_nn)[:, None] & (fake_center_d[:, None] <= beta_radii[None, :])
    return in_alpha.astype(np.float64), covered.astype(np.float64)


def integrated(curve_rows: np.ndarray) -> float:
    """1 - sum|alpha - P_alpha| / sum(alpha): 1 when the curve is the diagonal (Alaa et al.'s IP_alpha)."""
    curve = curve_rows.mean(axis=0)
    return float(1.0 - np.abs(ALPHAS - curve).sum() / ALPHAS.sum())


def _kid_resampled(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
    """Unbiased MMD^2 of a resample, leaving out pairs of one original image (their kernel is k(x, x))."""
    a = kxx[np.ix_(i, i)]
    b = kyy[np.ix_(j, j)]
    ma = i[:, None] != i[None, :]
    mb = j[:, None] != j[None, :]
    return float(a[ma].mean() + b[mb].mean() - 2.0 * kxy[np.ix_(i, j)].mean())


class GramFID:
    """FID of resampled feature sets from precomputed Gram matrices: each resample costs an n x m SVD
    instead of D-dimensional products (the fast path; `fid_from_features` on the resample is its reference).

    With H the centring matrix, Xc Yc^T = H G_xy[i, j] H, so tr((S1 S2)^1/2) is the nuclear norm of that over
    sqrt((n-1)(m-1)); the mean and trace terms come from G_xx, G_yy and G_xy sums."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.gxx, self.gyy, self.gxy = x @ x.T, y @ y.T, x @ y.T

    def __call__(self, i: np.ndarray, j: np.ndarray) -> float:
        n, m = len(i), len(j)
        gxx, gyy, gxy = self.gxx[np.ix_(i, i)], self.gyy[np.ix_(j, j)], self.gxy[np.ix_(i, j)]
        mean_term = gxx.sum() / n**2 + gyy.sum() / m**2 - 2.0 * gxy.sum() / (n * m)
        tr1 = (np.trace(gxx) - gxx.sum() / n) / (n - 1)
        tr2 = (np.trace(gyy) - gyy.sum() / m) / (m - 1)
        c = gxy - gxy.mean(axis=0, keepdims=True) - gxy.mean(axis=1, keepdims=True) + gxy.mean()
        c = c / np.sqrt((n - 1) * (m - 1))
        small = c @ c.T if n <= m else c.T @ c  # singular values^2: eigvalsh is ~3x faster than an SVD here
        tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0.0, None)).sum())
        return fid_mod._combine(float(mean_term), float(tr1), float(tr2), tr_sqrt)


def compare(reference: np.ndarray, other: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    """Every fidelity figure of `other` against `reference` features, with 95% intervals."""
    x = np.asarray(reference, np.float64)
    y = np.asarray(other, np.float64)
    out: dict[str, Any] = {}
    out["fid"] = stats.estimate(
        fid_mod.fid_from_features(x, y),
        stats.bootstrap_sets(GramFID(x, y), (len(x), len(y)), reps, seed), recenter=True)
    kxx, kyy, kxy = (kid_mod.polynomial_kernel(a, b) for a, b in ((x, x), (y, y), (x, y)))
    out["kid"] = stats.estimate(
        kid_mod.mmd2_unbiased(x, y) if len(x) == len(y) else _kid_resampled(kxx, kyy, kxy, np.arange(len(x)),
                                                                             np.arange(len(y))),
        stats.bootstrap_sets(lambda i, j: _kid_resampled(kxx, kyy, kxy, i, j), (len(x), len(y)), reps, seed + 1))
    if min(len(x), len(y)) > 5:  # k-NN metrics need more points than neighbours
        rows = prdc_per_sample(x, y)
        out["zero_radius_real"] = rows.pop("zero_radius_real")
        for name, vals in rows.items():
            out[name] = stats.mean_with_interval(vals, reps, seed + 2)
        in_alpha, covered = alpha_beta_per_sample(x, y)
        out["alpha_precision"] = stats.estimate(integrated(in_alpha),
                                                stats.bootstrap_rows(in_alpha, integrated, reps, seed + 3))
        out["beta_recall"] = stats.estimate(integrated(covered),
                                            stats.bootstrap_rows(covered, integrated, reps, seed + 4))
    return out


def measure_class(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray, reps: int,
                  seed: int) -> dict[str, Any]:
    """Synthetic vs training beside holdout vs training (the floor), features of equal N; warns once when
    training features repeat (zero k-NN radii), which both comparisons share."""
    res = {"synthetic": compare(train, synthetic, reps, seed), "floor": compare(train, holdout, reps, seed)}
    zero_radius_warning(res["synthetic"].get("zero_radius_real", 0), len(train), 3)
    return res


def findings(cls: str, res: dict[str, Any], n: int) -> list[Finding]:
    """The fidelity findings of one class (see the thresholds in verdicts.py)."""
    out: list[Finding] = []
    syn, floor = res["synthetic"], res["floor"]
    t_prec = THRESHOLDS["precision_fail"]
    if "precision" in syn and n >= t_prec.min_n:
        hi = syn["precision"].get("ci95", [0, syn["precision"]["value"]])[1]
        if hi < t_prec.value and floor["precision"]["value"] >= 0.5:
            out.append(Finding("fail", f"{cls}: precision {syn['precision']['value']:.2f} (95% CI up to {hi:.2f}) - "
                                       f"almost no synthetic image looks like a real one (holdout: "
                                       f"{floor['precision']['value']:.2f})", "precision_fail"))
    low_n = enough("fid_ratio_pass", n, f"{cls}: fidelity")
    if low_n is not None:
        return out + [low_n]
    ratio = syn["fid"]["value"] / max(floor["fid"]["value"], 1e-12)
    res["fid_ratio"] = ratio
    if ratio >= THRESHOLDS["fid_ratio_fail"].value:
        out.append(Finding("fail", f"{cls}: FID {syn['fid']['value']:.1f} is {ratio:.1f}x the real-vs-real floor "
                                   f"{floor['fid']['value']:.1f}", "fid_ratio_fail"))
    elif ratio > THRESHOLDS["fid_ratio_pass"].value:
        out.append(Finding("warn", f"{cls}: FID {ratio:.1f}x the real-vs-real floor (pass needs <= "
                                   f"{THRESHOLDS['fid_ratio_pass'].value:g}x)", "fid_ratio_pass"))
    else:
        out.append(Finding("pass", f"{cls}: FID {ratio:.1f}x the real-vs-real floor", "fid_ratio_pass"))
    t_pr = THRESHOLDS["pr_ratio_pass"].value
    for name in ("precision", "recall"):
        if name in syn:
            s, f = syn[name]["value"], floor[name]["value"]
            if s < t_pr * f:
                out.append(Finding("warn", f"{cls}: {name} {s:.2f} is below {t_pr:g}x the floor's {f:.2f}",
                                   "pr_ratio_pass"))
    return out
