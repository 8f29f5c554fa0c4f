"""Proof that a covariate is learned: does the requested age (sex, MMSE) show in the generated image?

Two independent checks, each beside what real images give, because a number alone means little:

1. A predictor trained on real training images (ridge regression on 16 px pixels; for a categorical
   covariate one ridge output per category, argmax) predicts each covariate of generated images. Reported:
   correlation (continuous) or accuracy (categorical) of the prediction with the *requested* value, and the
   floor of the same predictor on the real held-out half of the subjects (fitted on the other half).
2. Morphometry vs covariate (audit.morphometry: dark-CSF fraction of the brain, brain area): slope and
   correlation in real images against their recorded value and in generated images against the requested one,
   and the correlation of the two binned curves (does the generated relation follow the real one?).

Generated images request the covariates of real training samples (drawn at random, complete rows only),
so their joint distribution, confounders included, is the training data's: see docs/covariates.md.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from stylemri.audit.morphometry import measure
from stylemri.data.covariates import missing_mask
from stylemri.data.resample import area_downsample
from stylemri.errors import UserError
from stylemri.io import to_uint8
from stylemri.model import TrainedModel

FEATURE_SIZE = 16
RIDGE_ALPHA = 1.0  # per sample, on standardised pixels
MORPHOMETRY = ("csf_fraction", "brain_area")
BINS = 6
MAX_REAL = 4000


def pixel_features(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, R, R) -> (N, F) float64: channel mean, area-downsampled to at most 16 px, in [0, 1]."""
    import torch

    x = torch.from_numpy(images.astype(np.float32).mean(axis=1, keepdims=True) / 255.0)
    size = min(FEATURE_SIZE, x.shape[-1])
    return area_downsample(x, size).reshape(len(x), -1).double().numpy()


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = RIDGE_ALPHA) -> tuple[np.ndarray, ...]:
    """Ridge regression on standardised features: (weights, x mean, x std, y mean)."""
    mx, sx = x.mean(axis=0), x.std(axis=0) + 1e-6
    my = y.mean(axis=0)
    xs = (x - mx) / sx
    w = np.linalg.solve(xs.T @ xs + alpha * len(x) * np.eye(x.shape[1]), xs.T @ (y - my))
    return w, mx, sx, my


def predict_ridge(fit: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    w, mx, sx, my = fit
    return ((x - mx) / sx) @ w + my


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _slope(x: np.ndarray, y: np.ndarray) -> float | None:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 3 and x.std() > 0 else None


def holdout_mask(subjects: np.ndarray) -> np.ndarray:
    """True for the subjects a predictor is fitted on (a stable half by hash), False for the held-out half."""
    unique = sorted({str(s) for s in subjects})
    half = {s for s in unique if hashlib.sha1(s.encode()).digest()[0] % 2 == 0}
    if not half or len(half) == len(unique):  # too few subjects for the hash: alternate them
        half = set(unique[::2])
    return np.array([str(s) in half for s in subjects], bool)


def requested_settings(ds: Any, num: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """`num` complete covariate rows of real samples, drawn with replacement: (sample indices, settings)."""
    values = ds.covariates.values
    complete = np.flatnonzero(~missing_mask(values).any(axis=1))
    if complete.size == 0:
        raise UserError("covariate proof: no real image has every covariate value; expected complete rows")
    rows = np.random.RandomState(seed).choice(complete, num)
    settings = [{name: _plain(values[name][r]) for name in values} for r in rows]
    return rows, settings


def settings_for_seeds(ds: Any, seeds: Any) -> list[dict[str, Any]]:
    """One setting per seed: the covariates of a real sample drawn by that seed, so a generated set (evaluate's,
    audit's) has the real joint distribution of the covariates and seed s always asks for the same values."""
    return [requested_settings(ds, 1, int(seed))[1][0] for seed in seeds]


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, (float, np.floating)) else value


def prove_covariates(model: TrainedModel, ds: Any, num: int, *, seed: int = 0, batch: int = 32,
                     trunc: float = 1.0) -> dict[str, Any]:
    """Both checks for every covariate of `model` against the real samples of `ds` (with the same covariates)."""
    if model.covariates is None or getattr(ds, "covariates", None) is None:
        raise UserError("covariate proof: expected a --condition model and its real data with covariates")
    real_idx = np.arange(len(ds))[: MAX_REAL]
    real = to_uint8(ds.batch(real_idx)[0])
    rows, settings = requested_settings(ds, num, seed)
    classes = [ds.class_names[int(ds.labels[r])] for r in rows] if model.conditional else None
    fake = to_uint8(model.generate(range(seed, seed + num), covariates=settings, class_name=classes, trunc=trunc,
                                   batch=batch))
    xr, xg = pixel_features(real), pixel_features(fake)
    mr, mg = measure(real), measure(fake)
    fit_half = holdout_mask(ds.subjects[real_idx])
    out: dict[str, Any] = {"num_generated": num, "num_real": len(real_idx),
                           "num_subjects_fit": len(set(ds.subjects[real_idx][fit_half].tolist())), "columns": {}}
    raw: dict[str, Any] = {}
    for col in model.covariates.columns:
        truth = ds.covariates.values[col.name][real_idx]
        asked = np.array([s[col.name] for s in settings], dtype=object)
        args = (xr, xg, truth, asked, fit_half)
        result = _continuous(*args) if col.kind == "continuous" else _categorical(*args, col.categories)
        result["morphometry"] = _morphometry(col.kind, truth, asked, mr, mg)
        out["columns"][col.name] = result
        raw[col.name] = {"kind": col.kind, "real": truth, "requested": asked,
                         **{f"{m}_real": mr[m] for m in MORPHOMETRY}, **{f"{m}_generated": mg[m] for m in MORPHOMETRY}}
    out["_raw"] = raw
    return out


def _continuous(xr: np.ndarray, xg: np.ndarray, truth: np.ndarray, asked: np.ndarray, fit_half: np.ndarray
                ) -> dict[str, Any]:
    known = ~np.isnan(truth.astype(np.float64))
    y = truth.astype(np.float64)
    fit = fit_ridge(xr[known & fit_half], y[known & fit_half])
    held = known & ~fit_half
    pred_gen = predict_ridge(fit, xg)
    wanted = asked.astype(np.float64)
    return {"kind": "continuous",
            "generated": {"r": _corr(pred_gen, wanted), "slope": _slope(wanted, pred_gen)},
            "real_holdout": {"r": _corr(predict_ridge(fit, xr[held]), y[held]),
                             "slope": _slope(y[held], predict_ridge(fit, xr[held])), "n": int(held.sum())}}


def _categorical(xr: np.ndarray, xg: np.ndarray, truth: np.ndarray, asked: np.ndarray, fit_half: np.ndarray,
                 categories: tuple[str, ...]) -> dict[str, Any]:
    known = np.array([t is not None and t in categories for t in truth])
    hot = np.array([[t == c for c in categories] for t in truth], np.float64)
    fit = fit_ridge(xr[known & fit_half], hot[known & fit_half])
    held = known & ~fit_half
    names = np.array(categories, dtype=object)
    pred_gen = names[predict_ridge(fit, xg).argmax(axis=1)]
    pred_held = names[predict_ridge(fit, xr[held]).argmax(axis=1)]
    counts = [int(sum(t == c for t in truth[known])) for c in categories]
    return {"kind": "categorical",
            "generated": {"accuracy": float(np.mean(pred_gen == asked))},
            "real_holdout": {"accuracy": float(np.mean(pred_held == truth[held])) if held.any() else None,
                             "n": int(held.sum())},
            "chance": max(counts) / max(sum(counts), 1)}


def _morphometry(kind: str, truth: np.ndarray, asked: np.ndarray, mr: dict, mg: dict) -> dict[str, Any]:
    """Per measure: real vs recorded value and generated vs requested value, side by side."""
    out: dict[str, Any] = {}
    if kind == "continuous":
        y = truth.astype(np.float64)
        known = ~np.isnan(y)
        wanted = asked.astype(np.float64)
        edges = np.quantile(y[known], np.linspace(0, 1, BINS + 1))
        for m in MORPHOMETRY:
            curve_r, curve_g = _binned(y[known], mr[m][known], edges), _binned(wanted, mg[m], edges)
            both = ~np.isnan(curve_r) & ~np.isnan(curve_g)
            out[m] = {"real": {"slope": _slope(y[known], mr[m][known]), "r": _corr(y[known], mr[m][known])},
                      "generated": {"slope": _slope(wanted, mg[m]), "r": _corr(wanted, mg[m])},
                      "curve_r": _corr(curve_r[both], curve_g[both]),
                      "bins": edges.tolist(), "real_curve": _nan_list(curve_r), "generated_curve": _nan_list(curve_g)}
        return out
    for m in MORPHOMETRY:
        cats = sorted({t for t in truth if t is not None})
        out[m] = {"real": {c: float(mr[m][truth == c].mean()) for c in cats},
                  "generated": {c: float(mg[m][asked == c].mean()) for c in cats if (asked == c).any()}}
    return out


def _binned(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    return np.array([y[which == b].mean() if (which == b).any() else np.nan for b in range(len(edges) - 1)])


def _nan_list(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in a]


def proof_figure(result: dict[str, Any], measure_name: str = "csf_fraction") -> Any:
    """One panel per covariate: the measure against the value, real (grey) beside generated (red)."""
    from matplotlib.figure import Figure

    raw = result["_raw"]
    fig = Figure(figsize=(4.2 * len(raw), 3.6))
    axes = fig.subplots(1, len(raw), squeeze=False)[0]
    for ax, (name, r) in zip(axes, raw.items()):
        real_y, gen_y = r[f"{measure_name}_real"], r[f"{measure_name}_generated"]
        if r["kind"] == "continuous":
            x_real, x_gen = r["real"].astype(np.float64), r["requested"].astype(np.float64)
            ax.scatter(x_real, real_y, s=10, c="0.5", label="real (recorded value)")
            ax.scatter(x_gen, gen_y, s=10, c="tab:red", alpha=0.6, label="generated (requested value)")
            for x, y, colour in ((x_real, real_y, "0.3"), (x_gen, gen_y, "tab:red")):
                ok = ~np.isnan(x)
                if ok.sum() >= 3 and x[ok].std() > 0:
                    k, b = np.polyfit(x[ok], y[ok], 1)
                    xs = np.linspace(np.nanmin(x), np.nanmax(x), 2)
                    ax.plot(xs, k * xs + b, c=colour)
        else:
            cats = sorted({t for t in r["real"] if t is not None})
            for i, c in enumerate(cats):
                ax.scatter(np.full((r["real"] == c).sum(), i - 0.1), real_y[r["real"] == c], s=10, c="0.5")
                ax.scatter(np.full((r["requested"] == c).sum(), i + 0.1), gen_y[r["requested"] == c], s=10,
                           c="tab:red", alpha=0.6)
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(name)
        ax.set_ylabel(measure_name.replace("_", " "))
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{measure_name.replace('_', ' ')} vs covariate: real beside generated", fontsize=9)
    fig.tight_layout()
    return fig


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON part of a proof (without the per-image arrays the figure uses)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


__all__ = ["pixel_features", "fit_ridge", "predict_ridge", "holdout_mask", "requested_settings", "settings_for_seeds",
           "prove_covariates", "proof_figure", "public"]
