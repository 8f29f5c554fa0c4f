"""Thresholds behind every verdict, registered once with their reason and source (docs/audit.md lists them).

A concern (fidelity, privacy, utility) turns its figures into `Finding`s, each naming the threshold it
applied; `combine` makes the section's verdict: the worst finding decides, its reasons are the words. A
figure whose N is below the threshold's `min_n` never decides: the finding is `warn`, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

ORDER = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Threshold:
    key: str
    value: float
    min_n: int  # images per set and class below which the figure decides nothing
    meaning: str
    reason: str
    source: str


THRESHOLDS: dict[str, Threshold] = {}


def register(t: Threshold) -> Threshold:
    if t.key in THRESHOLDS:
        raise ValueError(f"threshold {t.key} registered twice")
    THRESHOLDS[t.key] = t
    return t


# ---- fidelity
register(Threshold("fid_ratio_pass", 2.0, 100, "FID(synthetic, training) / FID(holdout, training) at most this: pass",
                   "FID is biased by N; the floor at the same N cancels most of it, and a model within 2x of the "
                   "real-vs-real floor is close to the sampling noise of real patients",
                   "Chong & Forsyth, CVPR 2020 (FID bias in N); our convention"))
register(Threshold("fid_ratio_fail", 5.0, 100, "FID ratio to the floor at least this: fail",
                   "5x the real-vs-real distance is far outside what different patients give",
                   "our convention, checked on pure noise (ratio > 10) and tiny runs"))
register(Threshold("precision_fail", 0.1, 8, "precision (upper 95% bound) below this while the floor's is >= 0.5: fail",
                   "almost no synthetic image falls inside the real image manifold while real images of other "
                   "patients do: the images are not realistic (noise, artefacts)",
                   "Kynkaanniemi et al., NeurIPS 2019 (k-NN precision)"))
register(Threshold("pr_ratio_pass", 0.5, 100, "precision and recall at least this fraction of the floor's: pass",
                   "precision/recall of holdout reals is what realism and diversity of real data look like at "
                   "this N; half of it still means most synthetic images are realistic and cover the data",
                   "Kynkaanniemi et al. 2019; Naeem et al., ICML 2020; Lai et al. 2025 (equal N)"))
# ---- privacy
register(Threshold("copy_ratio", 1 / 3, 0, "a 'near copy': an image closer to its closest training image than a "
                   "third of that image's distance to the nearest other patient",
                   "a generalising model is about as far from a training patient as other patients are (ratio ~1); "
                   "copies, mirrored or slightly noisy, sit near 0. Per-image, so robust at small N",
                   "authenticity, Alaa et al., ICML 2022, with patients as the unit; our choice of 1/3"))
register(Threshold("copy_rate_fail", 0.10, 0, "near-copy rate at least this and above the holdout's (one-sided "
                   "Fisher exact p < copy_p): fail", "copies of training images are a leak at any N; the exact test "
                   "accounts for N, so small sets fail only on strong evidence", "our convention"))
register(Threshold("copy_p", 0.01, 0, "significance level of the near-copy test", "one test per space and class",
                   "our convention"))
register(Threshold("copy_quantile", 0.05, 0, "a synthetic image is a 'close' one when its distance to the closest "
                   "training image is below this quantile of the holdout images' distances (reported; warn when "
                   "the rate is at least copy_rate_fail with binomial p < copy_quantile_p)",
                   "unseen patients fall there 5% of the time by construction",
                   "distance-to-closest-record tests, e.g. Yale et al. 2020; Platzer & Reutterer 2021"))
register(Threshold("copy_quantile_p", 0.001, 0, "significance level of the close-rate binomial test",
                   "the holdout quantile is itself estimated (and slices of one patient are correlated): strict",
                   "our convention"))
register(Threshold("dcr_shift_fail", 0.75, 0, "Mann-Whitney one-sided p < 0.01 and P(DCR synthetic < DCR holdout) "
                   "at least this (pixel space): fail", "synthetic images are systematically closer to training "
                   "patients than unseen patients are, by a large effect",
                   "DCR test of synthcity / Yale et al. 2020; effect size after Vargha & Delaney 2000 (0.71 = large)"))
register(Threshold("dcr_shift_warn", 0.6, 0, "same test with P(...) at least this: warn",
                   "a small but significant shift towards training patients: not a copy, but worth a look",
                   "Vargha & Delaney 2000 (0.56 small, 0.64 medium)"))
register(Threshold("privacy_pass_n", 100, 100, "synthetic and holdout images per class needed for privacy pass",
                   "with 100 images the 5% quantile rests on 5 holdout distances and a 10% copy rate is detected",
                   "binomial power; our convention"))
register(Threshold("authenticity_drop", 0.10, 30, "authenticity below the holdout's by more than this (intervals "
                   "apart): warn", "the fraction of synthetic images closer to a training image than that image's "
                   "nearest other patient should match what unseen patients give",
                   "Alaa et al., ICML 2022 (authenticity)"))
register(Threshold("mia_auc", 0.6, 30, "membership-inference AUC (lower 95% bound) above this and above the "
                   "control's upper bound: warn", "members told from non-members better than a model-free "
                   "control explains; the control catches split bias (different patients, scanners)",
                   "Shokri et al. 2017; Hayes et al. (LOGAN) 2019; the 2026 StyleGAN3 brain-MRI control argument"))
# ---- utility
register(Threshold("tstr_ratio_pass", 0.9, 50, "TSTR AUC at least this fraction of TRTR AUC (chance-corrected): pass",
                   "a classifier trained on synthetic images alone keeps 90% of what real images teach",
                   "Esteban et al. 2017 (TSTR); our convention"))
register(Threshold("tstr_ratio_fail", 0.5, 50, "TSTR below this fraction of TRTR (chance-corrected): fail",
                   "synthetic images teach less than half of what real ones do", "our convention"))
register(Threshold("consistency_fail", 0.6, 30, "class consistency (real-trained classifier's accuracy on synthetic "
                   "images, per class) below this while it tells holdout classes apart: fail",
                   "the images do not show the class they were generated for", "our convention"))
register(Threshold("morphometry_ratio", 0.5, 30, "the synthetic class difference (Cohen's d) keeps the real one's "
                   "sign and lies within [this, 1/this] x its size: otherwise warn",
                   "a biomarker difference that flips or shrinks to nothing makes synthetic data misleading for "
                   "group analyses", "our convention"))

# ---- utility: covariates (a --condition run; audit.covariate_proof)
register(Threshold("covariate_floor", 0.3, 0, "a covariate the predictor reads from real held-out images with a score "
                   "(r; accuracy above chance, chance-corrected) below this is not judged: warn",
                   "if real images do not show the covariate to the predictor, a weak score on generated images says "
                   "nothing about the model", "our convention"))
register(Threshold("covariate_ratio_pass", 0.7, 50, "the generated score (predictor trained on real images, vs the "
                   "requested value) at least this fraction of the real held-out floor: pass",
                   "the requested covariate shows in the generated images about as clearly as in real ones",
                   "our convention"))
register(Threshold("covariate_ratio_fail", 0.25, 50, "the generated score below this fraction of the floor: fail "
                   "(warn between)", "the images barely show the covariate they were generated for: the model "
                   "ignores it (or the predictor reads a confounder)", "our convention"))
register(Threshold("covariate_morphometry_r", 0.3, 30, "a real morphometry-covariate correlation at least this "
                   "strong whose slope the generated images reverse: warn",
                   "the direction of a real relation (dark CSF rising with age) should survive in generated images",
                   "our convention"))


@dataclass(frozen=True)
class Finding:
    status: str  # pass | warn | fail
    reason: str
    threshold: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "threshold": self.threshold}


def enough(key: str, n: int, what: str) -> Finding | None:
    """A `warn` Finding when n is below what threshold `key` needs, else None."""
    t = THRESHOLDS[key]
    if n < t.min_n:
        return Finding("warn", f"{what}: N = {n} is below the {t.min_n} the threshold '{key}' needs; no verdict "
                               "rests on it", key)
    return None


def combine(findings: Iterable[Finding], empty: str = "nothing was measured") -> dict[str, Any]:
    """The section verdict: the worst finding's status, the reasons of every finding at that level."""
    items = list(findings)
    if not items:
        return {"verdict": "warn", "reason": empty, "findings": []}
    worst = max(ORDER[f.status] for f in items)
    status = next(s for s, v in ORDER.items() if v == worst)
    reasons = [f.reason for f in items if f.status == status]
    return {"verdict": status, "reason": "; ".join(dict.fromkeys(reasons)), "findings": [f.to_dict() for f in items]}


def thresholds_table() -> list[dict[str, Any]]:
    return [{"key": t.key, "value": t.value, "min_n": t.min_n, "meaning": t.meaning, "reason": t.reason,
             "source": t.source} for t in THRESHOLDS.values()]
