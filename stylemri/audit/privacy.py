"""Privacy: do the synthetic images sit closer to the training patients than unseen (holdout) patients do?

Per class, in pixel space (RMS difference in [0, 1], against every training image and its mirror image)
and in feature space (Euclidean, against the training feature sample):
- DCR, the distance of every synthetic image to its closest training image, against the same for holdout
  images: the close-copy rate (synthetic images below the holdout's 5% quantile; binomial test against
  5%) and a one-sided Mann-Whitney test that synthetic DCRs are smaller;
- authenticity (Alaa et al. 2022): an image is authentic when it is farther from its closest training
  image than that image is from its nearest *other patient*; synthetic beside holdout;
- a per-patient table: how many synthetic images are closer to a patient than that patient's nearest
  other patient, worst first, with the image pairs;
- membership inference: training vs holdout images scored by their distance to the nearest synthetic image
  (and by the discriminator, when the model is there), ROC AUC with an interval, beside a control that uses
  no model (the distance to the nearest other training patient), so a split bias is not read as a leak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from stylemri.audit import stats
from stylemri.audit.verdicts import THRESHOLDS, Finding, enough
from stylemri.metrics.memorization import _nearest, _pixels  # one nearest-neighbour search for both tools


def _reference(vectors_of, num: int, flips: bool, batch: int = 512):
    def gen() -> Iterator[tuple[int, np.ndarray]]:
        for s in range(0, num, batch):
            idx = np.arange(s, min(s + batch, num))
            yield s, vectors_of(idx, False)
            if flips:
                yield s, vectors_of(idx, True)
    return gen


@dataclass(frozen=True)
class Space:
    """Vectors of the training reference in one space, and how to compare a query with it."""

    name: str
    train: np.ndarray  # (M, D) float32
    train_subjects: np.ndarray
    flips: bool
    scale: float  # distance = sqrt(d2 / scale)
    mirror: np.ndarray | None = field(default=None, repr=False)  # flipped training vectors (pixel space)

    def nearest(self, queries: np.ndarray, query_subjects: np.ndarray | None = None,
                device: str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index, distance, flipped) of each query's closest training vector (other patients only when
        query_subjects is given)."""
        def vec(idx: np.ndarray, flip: bool) -> np.ndarray:
            return self.mirror[idx] if flip else self.train[idx]
        qsub = None if query_subjects is None else np.asarray(query_subjects).astype(str)
        idx, d2, flip = _nearest(queries, _reference(vec, len(self.train), self.flips), query_subjects=qsub,
                                 reference_subjects=None if qsub is None else self.train_subjects, device=device)
        ref = np.where(flip[:, None], self.mirror[idx] if self.flips else self.train[idx], self.train[idx])
        exact = np.sqrt(np.sum(np.square(queries.astype(np.float64) - ref.astype(np.float64)), axis=1) / self.scale)
        return idx, np.where(np.isfinite(d2), exact, np.inf), flip


def pixel_space(train_images: np.ndarray, subjects: np.ndarray) -> Space:
    return Space("pixel", _pixels(train_images), subjects, True, float(np.prod(train_images.shape[1:])),
                 _pixels(train_images, flip=True))


def feature_space(train_features: np.ndarray, subjects: np.ndarray) -> Space:
    return Space("feature", np.asarray(train_features, np.float32), subjects, False, 1.0)


def _yardsticks(space: Space, train_idx: np.ndarray, device: str) -> np.ndarray:
    """For training vectors train_idx: distance to the nearest vector of another patient."""
    uniq, inv = np.unique(train_idx, return_inverse=True)
    _, d, _ = space.nearest(space.train[uniq], space.train_subjects[uniq], device)
    return d[inv]


def dcr_space(space: Space, synthetic: np.ndarray, holdout: np.ndarray, device: str, reps: int,
              seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """DCR, close copies, the shift test and authenticity in one space; (JSON, arrays for figures)."""
    s_idx, s_d, s_flip = space.nearest(synthetic, device=device)
    h_idx, h_d, _ = space.nearest(holdout, device=device)
    s_yard = _yardsticks(space, s_idx, device)
    h_yard = _yardsticks(space, h_idx, device)
    q = float(np.quantile(h_d, THRESHOLDS["copy_quantile"].value))
    k = int((s_d < q).sum())
    s_auth = (s_d > s_yard).astype(np.float64)
    h_auth = (h_d > h_yard).astype(np.float64)
    ratio = THRESHOLDS["copy_ratio"].value
    ks, kh = int((s_d < ratio * s_yard).sum()), int((h_d < ratio * h_yard).sum())
    res = {
        "unit": "RMS intensity difference, [0, 1] scale" if space.name == "pixel" else "feature-space Euclidean",
        "dcr_synthetic": {"median": float(np.median(s_d)), "min": float(s_d.min())},
        "dcr_holdout": {"median": float(np.median(h_d)), "min": float(h_d.min())},
        "holdout_q05": q,
        "near_copies": {"synthetic": ks, "n_synthetic": len(s_d), "rate": ks / len(s_d), "holdout": kh,
                        "n_holdout": len(h_d), "holdout_rate": kh / len(h_d),
                        "test": "one-sided Fisher exact, H1: synthetic near-copy rate > holdout's",
                        "p_value": stats.proportion_excess(ks, len(s_d), kh, len(h_d))},
        "close_copies": {"count": k, "n": len(s_d), "rate": k / len(s_d),
                         "p_value": stats.binomial_excess(k, len(s_d), THRESHOLDS["copy_quantile"].value)},
        "shift_test": {"test": "one-sided Mann-Whitney U, H1: DCR(synthetic) < DCR(holdout)",
                       **stats.shift_test(s_d, h_d)},
        "authenticity": {"synthetic": stats.mean_with_interval(s_auth, reps, seed),
                         "holdout": stats.mean_with_interval(h_auth, reps, seed + 1)},
    }
    arrays = {"synthetic_dcr": s_d, "holdout_dcr": h_d, "synthetic_nearest": s_idx, "synthetic_flipped": s_flip,
              "synthetic_yard": s_yard}
    return res, arrays


def patient_table(space: Space, arrays: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """Per training patient: synthetic images closer to it than its nearest other patient, worst first."""
    subj = space.train_subjects[arrays["synthetic_nearest"]]
    close = arrays["synthetic_dcr"] <= arrays["synthetic_yard"]
    ratio = arrays["synthetic_dcr"] / np.maximum(arrays["synthetic_yard"], 1e-12)
    rows = []
    for s in np.unique(subj):
        mine = np.flatnonzero(subj == s)
        best = mine[np.argmin(ratio[mine])]
        rows.append({"patient": str(s), "close": int(close[mine].sum()), "nearest": len(mine),
                     "min_ratio": float(ratio[best]), "synthetic": int(best),
                     "training": int(arrays["synthetic_nearest"][best]),
                     "flipped": bool(arrays["synthetic_flipped"][best]), "distance": float(arrays["synthetic_dcr"][best]),
                     "patient_nearest_other": float(arrays["synthetic_yard"][best])})
    rows.sort(key=lambda r: (-r["close"], r["min_ratio"]))
    return {"space": space.name, "patients_reached": len(rows),
            "patients_with_close": sum(1 for r in rows if r["close"] > 0), "rows": rows[:top]}


def membership(space: Space, synthetic: np.ndarray, members: np.ndarray, member_subjects: np.ndarray,
               holdout: np.ndarray, device: str, reps: int, seed: int,
               d_scores: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Attack AUCs (members = training images, non-members = holdout) beside the model-free control."""
    syn_space = Space("synthetic", synthetic, np.array([""] * len(synthetic)), space.flips, space.scale,
                      _pixels_flip_vectors(synthetic, space))
    _, m_syn, _ = syn_space.nearest(members, device=device)
    _, h_syn, _ = syn_space.nearest(holdout, device=device)
    _, m_ctrl, _ = space.nearest(members, member_subjects, device)  # nearest *other* training patient
    _, h_ctrl, _ = space.nearest(holdout, device=device)
    scores = {"nearest_synthetic": (-m_syn, -h_syn), "control_no_model": (-m_ctrl, -h_ctrl)}
    if d_scores is not None:
        scores["discriminator"] = d_scores
    res = {name: stats.auc_with_interval(a, b, reps, seed + i) for i, (name, (a, b)) in enumerate(scores.items())}
    res["n_members"], res["n_nonmembers"] = len(members), len(holdout)
    return res, {"roc": {name: stats.roc_curve(a, b) for name, (a, b) in scores.items()}}


def _pixels_flip_vectors(vectors: np.ndarray, space: Space) -> np.ndarray | None:
    """Mirror images of flattened square pixel vectors (pixel space only)."""
    if not space.flips:
        return None
    n, d = vectors.shape
    side = _side(space)
    return np.ascontiguousarray(vectors.reshape(n, -1, side, side)[..., ::-1].reshape(n, d))


def _side(space: Space) -> int:
    d = space.train.shape[1]
    for ch in (1, 3):
        side = int(round(np.sqrt(d / ch)))
        if side * side * ch == d:
            return side
    raise ValueError(f"pixel vectors of length {d} are not square images")


def findings(cls: str, res: dict[str, Any], n_syn: int, n_hold: int) -> list[Finding]:
    """Privacy findings of one class (thresholds in verdicts.py)."""
    out: list[Finding] = []
    t_rate, t_p = THRESHOLDS["copy_rate_fail"].value, THRESHOLDS["copy_p"].value
    for space in ("pixel", "feature"):
        r = res.get(space)
        if r is None:
            continue
        nc = r["near_copies"]
        if nc["rate"] >= t_rate and nc["p_value"] < t_p:
            out.append(Finding("fail", f"{cls}: {nc['synthetic']} of {nc['n_synthetic']} synthetic images "
                                       f"({nc['rate']:.0%}) are near copies of a training image (holdout: "
                                       f"{nc['holdout_rate']:.0%}; {space} space, Fisher p = {nc['p_value']:.2g})",
                               "copy_rate_fail"))
        cc = r["close_copies"]
        if cc["rate"] >= t_rate and cc["p_value"] < THRESHOLDS["copy_quantile_p"].value:
            out.append(Finding("warn", f"{cls}: {cc['count']} of {cc['n']} synthetic images ({cc['rate']:.0%}) are "
                                       f"closer to a training image than 95% of holdout images are ({space} space, "
                                       f"binomial p = {cc['p_value']:.2g})", "copy_quantile"))
        sh = r["shift_test"]
        if sh["p_value"] < 0.01 and sh["p_smaller"] >= THRESHOLDS["dcr_shift_fail"].value and space == "pixel":
            out.append(Finding("fail", f"{cls}: synthetic images sit closer to training patients than holdout "
                                       f"patients do (P = {sh['p_smaller']:.2f}, p = {sh['p_value']:.2g}, {space})",
                                       "dcr_shift_fail"))
        elif sh["p_value"] < 0.01 and sh["p_smaller"] >= THRESHOLDS["dcr_shift_warn"].value:
            out.append(Finding("warn", f"{cls}: synthetic DCR somewhat smaller than holdout DCR "
                                       f"(P = {sh['p_smaller']:.2f}, p = {sh['p_value']:.2g}, {space})", "dcr_shift_warn"))
        au = r["authenticity"]
        if enough("authenticity_drop", min(n_syn, n_hold), "authenticity") is None:
            s, h = au["synthetic"], au["holdout"]
            apart = s.get("ci95", [0, s["value"]])[1] < h.get("ci95", [h["value"], 1])[0]
            if s["value"] < h["value"] - THRESHOLDS["authenticity_drop"].value and apart:
                out.append(Finding("warn", f"{cls}: authenticity {s['value']:.2f} below the holdout's "
                                           f"{h['value']:.2f} ({space})", "authenticity_drop"))
    out += _mia_findings(cls, res.get("membership"), min(n_syn, n_hold))
    low = enough("privacy_pass_n", min(n_syn, n_hold), f"{cls}: privacy")
    if low is not None:
        out.append(Finding("warn", low.reason + " (too few images to rule a leak out)", low.threshold))
    elif not out:
        out.append(Finding("pass", f"{cls}: synthetic images are no closer to training patients than unseen "
                                   "patients are", "copy_rate_fail"))
    return out


def _mia_findings(cls: str, mia: dict[str, Any] | None, n: int) -> list[Finding]:
    if mia is None or enough("mia_auc", n, "membership inference") is not None:
        return []
    t = THRESHOLDS["mia_auc"].value
    ctrl = mia["control_no_model"]
    out = []
    if ctrl.get("ci95", [0.5])[0] > t:
        out.append(Finding("warn", f"{cls}: training and holdout images are told apart without any model (control "
                                   f"AUC {ctrl['value']:.2f}): a split bias, membership figures are not a leak "
                                   "measure here", "mia_auc"))
    for name in ("nearest_synthetic", "discriminator"):
        a = mia.get(name)
        if a and a.get("ci95", [0.5])[0] > t and a["ci95"][0] > ctrl.get("ci95", [0, 1])[1]:
            out.append(Finding("warn", f"{cls}: membership attack '{name}' AUC {a['value']:.2f} beats the "
                                       f"model-free control {ctrl['value']:.2f}", "mia_auc"))
    return out
