"""Simple morphometry of 2-D brain slices: brain area, dark-CSF area inside the brain, intensity histogram.

No segmentation network, on purpose: the same plain rules on real and synthetic images, so a difference
is the images', not a model's. Brain = pixels above 10% of full scale with holes filled (skull-stripped
slices have a black background); dark CSF = brain pixels below 40% of the slice's median brain intensity
(ventricles and sulci in T1); histogram = 32 bins of brain-pixel intensity. Per class the real and
synthetic distributions are compared (standardized difference, Wasserstein-1 of the histograms), and for
two or more classes: does the real class difference (Cohen's d) keep its sign and size in synthetic images?
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance

from stylemri.audit import stats
from stylemri.audit.verdicts import THRESHOLDS, Finding, enough

BRAIN_LEVEL = 0.10
CSF_LEVEL = 0.40
BINS = 32
MEASURES = ("brain_area", "csf_fraction", "mean_intensity")


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: brain_area (fraction of the image), csf_fraction (of the brain), mean_intensity (brain, [0, 1]),
    and `hist` (N, BINS) of brain intensities (each row sums to 1; zeros for an empty brain)."""
    x = images.astype(np.float32).mean(axis=1) / 255.0  # (N, R, R), channels averaged
    n = len(x)
    out = {m: np.zeros(n) for m in MEASURES}
    out["hist"] = np.zeros((n, BINS))
    for i in range(n):
        brain = ndimage.binary_fill_holes(x[i] > BRAIN_LEVEL)
        area = brain.sum()
        out["brain_area"][i] = area / brain.size
        if area == 0:
            continue
        vals = x[i][brain]
        out["csf_fraction"][i] = float((vals < CSF_LEVEL * np.median(vals)).sum()) / area
        out["mean_intensity"][i] = float(vals.mean())
        out["hist"][i] = np.histogram(vals, bins=BINS, range=(0.0, 1.0))[0] / area
    return out


def _hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 between the mean brain-intensity histograms of two sets (intensity units, [0, 1])."""
    centers = (np.arange(BINS) + 0.5) / BINS
    wa, wb = a.mean(axis=0), b.mean(axis=0)
    if wa.sum() == 0 or wb.sum() == 0:
        return float("nan")
    return float(wasserstein_distance(centers, centers, wa, wb))


def compare_class(real: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, Any]:
    """Standardized mean difference per measure (other - real) and the histogram distance."""
    out: dict[str, Any] = {m: {"real_mean": float(real[m].mean()), "mean": float(other[m].mean()),
                               "std_difference": stats.cohens_d(other[m], real[m])} for m in MEASURES}
    out["histogram_w1"] = _hist_distance(real["hist"], other["hist"])
    return out


def class_differences(per_class: dict[str, dict[str, dict[str, np.ndarray]]], reps: int, seed: int) -> dict[str, Any]:
    """Cohen's d of each class against the first, in real and in synthetic images, with intervals."""
    names = list(per_class)
    out: dict[str, Any] = {}
    for other in names[1:]:
        pair = f"{other} vs {names[0]}"
        out[pair] = {}
        for m in MEASURES:
            row: dict[str, Any] = {}
            for kind in ("real", "synthetic"):
                a, b = per_class[other][kind][m], per_class[names[0]][kind][m]
                boots = stats.bootstrap_sets(lambda i, j: stats.cohens_d(a[i], b[j]), (len(a), len(b)), reps, seed)
                row[kind] = stats.estimate(stats.cohens_d(a, b), boots)
            r, s = row["real"]["value"], row["synthetic"]["value"]
            row["keeps_sign"] = bool(np.sign(r) == np.sign(s))
            row["size_ratio"] = float(s / r) if r != 0 else float("nan")
            out[pair][m] = row
    return out


def findings(diffs: dict[str, Any], n: int) -> list[Finding]:
    """Warn when a clear real class difference flips sign or changes size beyond the threshold."""
    low = enough("morphometry_ratio", n, "morphometry class differences")
    if low is not None:
        return [low] if diffs else []
    t = THRESHOLDS["morphometry_ratio"].value
    out = []
    for pair, rows in diffs.items():
        for m, row in rows.items():
            real = row["real"]
            clear = "ci95" in real and (real["ci95"][0] > 0 or real["ci95"][1] < 0)  # the real difference is real
            if not clear:
                continue
            ratio = row["size_ratio"]
            if not row["keeps_sign"] or not t <= ratio <= 1 / t:
                out.append(Finding("warn", f"{pair}: {m} difference d = {real['value']:.2f} in real images becomes "
                                           f"{row['synthetic']['value']:.2f} in synthetic ones", "morphometry_ratio"))
            else:
                out.append(Finding("pass", f"{pair}: {m} difference kept ({real['value']:.2f} -> "
                                           f"{row['synthetic']['value']:.2f})", "morphometry_ratio"))
    return out
