"""Small statistics the audit needs: bootstrap intervals, ROC AUC, the one-sided tests behind verdicts.

Every interval is a seeded percentile bootstrap (95 %), so the same inputs give the same report.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import stats as sps


def estimate(value: float, samples: np.ndarray | None = None, *, recenter: bool = False) -> dict[str, Any]:
    """{"value": v, "ci95": [lo, hi]} from bootstrap replicates (None: no interval).

    `recenter`: shift the replicates so their median is the estimate. For FID, whose resamples with
    replacement hold duplicates (less diversity, a larger distance), the raw percentile interval can miss the
    estimate altogether; the shift keeps the width and removes that bias (never below 0)."""
    out: dict[str, Any] = {"value": float(value)}
    if samples is not None and len(samples):
        finite = np.asarray(samples, np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            if recenter:
                finite = np.maximum(finite - (np.median(finite) - value), 0.0)
            lo, hi = np.percentile(finite, [2.5, 97.5])
            out["ci95"] = [float(lo), float(hi)]
    return out


def bootstrap_sets(fn: Callable[..., float], sizes: tuple[int, ...], reps: int, seed: int) -> np.ndarray:
    """fn(idx_a, idx_b, ...) over `reps` resamples with replacement of each set independently."""
    rng = np.random.default_rng(seed)
    return np.array([fn(*(rng.integers(0, n, n) for n in sizes)) for _ in range(reps)], np.float64)


def bootstrap_rows(rows: np.ndarray, stat: Callable[[np.ndarray], float], reps: int, seed: int) -> np.ndarray:
    """stat(rows[resample]) for `reps` resamples of the rows (per-sample contributions of a metric)."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    return np.array([stat(rows[rng.integers(0, n, n)]) for _ in range(reps)], np.float64)


def mean_with_interval(x: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return {"value": float("nan")}
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, (reps, x.size))].mean(axis=1)
    return estimate(float(x.mean()), boots)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count half (Mann-Whitney U / (n m))."""
    pos = np.asarray(positive, np.float64)
    neg = np.asarray(negative, np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = sps.rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def roc_auc_reference(positive: np.ndarray, negative: np.ndarray) -> float:
    """The plain pairwise count roc_auc must equal (tests)."""
    p = np.asarray(positive, np.float64)[:, None]
    n = np.asarray(negative, np.float64)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def auc_with_interval(positive: np.ndarray, negative: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    """ROC AUC with a stratified bootstrap interval (positives and negatives resampled separately)."""
    pos, neg = np.asarray(positive), np.asarray(negative)
    boots = bootstrap_sets(lambda i, j: roc_auc(pos[i], neg[j]), (len(pos), len(neg)), reps, seed)
    return estimate(roc_auc(pos, neg), boots)


def roc_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over every threshold, for the figure."""
    scores = np.concatenate([positive, negative])
    truth = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    order = np.argsort(-scores, kind="stable")
    tp = np.concatenate([[0], np.cumsum(truth[order])])
    fp = np.concatenate([[0], np.cumsum(1 - truth[order])])
    return fp / max(len(negative), 1), tp / max(len(positive), 1)


def binomial_excess(k: int, n: int, p0: float) -> float:
    """One-sided p-value of seeing k or more hits in n trials when the true rate is p0."""
    return float(sps.binom.sf(k - 1, n, p0)) if n else 1.0


def proportion_excess(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact p-value, H1: the rate k1/n1 exceeds k2/n2."""
    if n1 == 0 or n2 == 0:
        return 1.0
    return float(sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater")[1])


def shift_test(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """One-sided Mann-Whitney U test, H1: x tends to be smaller than y; with P(x < y) (ties half)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size == 0 or y.size == 0:
        return {"p_value": 1.0, "p_smaller": float("nan")}
    res = sps.mannwhitneyu(x, y, alternative="less")
    return {"p_value": float(res.pvalue), "p_smaller": roc_auc(-x, -y)}


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardized mean difference (a - b) / pooled SD; 0 when both sets are constant and equal."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    diff = a.mean() - b.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / pooled)
