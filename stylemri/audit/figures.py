"""The audit's figures, as matplotlib `Figure`s (never pyplot): samples, fidelity with intervals beside the
floor, DCR histograms, membership ROC curves, the closest patient pairs, classifier scores, morphometry."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stylemri.io import make_grid

FIDELITY_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "alpha_precision", "beta_recall")
COLORS = {"synthetic": "#c0392b", "floor": "#2c7fb8", "holdout": "#2c7fb8", "training": "#555555"}


def _show(ax: Any, images: np.ndarray, ncols: int | None = None) -> None:
    tile = make_grid(images, ncols=ncols or len(images), pad=1, pad_value=255)
    ax.imshow(tile[..., 0] if tile.shape[2] == 1 else tile, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def samples_figure(samples: dict[str, dict[str, np.ndarray]]) -> Figure:
    classes = list(samples)
    fig = Figure(figsize=(8, 1.25 * 3 * len(classes) + 0.3))
    axes = fig.subplots(3 * len(classes), 1, squeeze=False)[:, 0]
    for i, c in enumerate(classes):
        for j, kind in enumerate(("synthetic", "training", "holdout")):
            ax = axes[3 * i + j]
            _show(ax, samples[c][kind], ncols=8)
            ax.set_ylabel(f"{c}\n{kind}", fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def fidelity_figure(per_class: dict[str, Any]) -> Figure:
    classes = list(per_class)
    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(2, 4).ravel()
    for ax, m in zip(axes, FIDELITY_METRICS):
        for k, kind in enumerate(("synthetic", "floor")):
            xs, ys, lo, hi = [], [], [], []
            for i, c in enumerate(classes):
                e = per_class[c][kind].get(m)
                if e is None:
                    continue
                xs.append(i + (k - 0.5) * 0.25)
                ys.append(e["value"])
                ci = e.get("ci95", [e["value"], e["value"]])
                lo.append(e["value"] - ci[0])
                hi.append(ci[1] - e["value"])
            if xs:
                ax.errorbar(xs, ys, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt="o", color=COLORS[kind],
                            capsize=3, label="synthetic" if kind == "synthetic" else "floor (holdout)")
        ax.set_xticks(range(len(classes)), classes, fontsize=8)
        ax.set_title(m.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle("fidelity vs training images: synthetic (red) beside real holdout patients (blue), 95% intervals",
                 fontsize=9)
    fig.tight_layout()
    return fig


def dcr_figure(cls: str, plots: dict[str, Any], res: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 3)
    for ax, space in zip(axes[:2], ("pixel", "feature")):
        a = plots[space]
        both = np.concatenate([a["synthetic_dcr"], a["holdout_dcr"]])
        bins = np.linspace(0, max(float(both.max()), 1e-6), 30)
        ax.hist(a["holdout_dcr"], bins=bins, alpha=0.6, color=COLORS["holdout"], label="holdout")
        ax.hist(a["synthetic_dcr"], bins=bins, alpha=0.6, color=COLORS["synthetic"], label="synthetic")
        ax.axvline(res[space]["holdout_q05"], color="k", ls="--", lw=1, label="holdout 5%")
        ax.set_title(f"{cls}: distance to closest training image ({space})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    ax = axes[2]
    for name, (fpr, tpr) in plots["roc"].items():
        auc = res["membership"][name]["value"]
        ax.plot(fpr, tpr, lw=1.5, ls="--" if name.startswith("control") else "-", label=f"{name} ({auc:.2f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set_title(f"{cls}: membership inference ROC", fontsize=8)
    ax.set_xlabel("false positive rate", fontsize=7)
    ax.set_ylabel("true positive rate", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def pairs_figure(cls: str, table: dict[str, Any], synthetic: np.ndarray, train_images: np.ndarray,
                 num: int = 6) -> Figure:
    rows = table["rows"][:num]
    fig = Figure(figsize=(1.6 * max(len(rows), 1) + 0.4, 3.6))
    axes = fig.subplots(2, max(len(rows), 1), squeeze=False)
    for k, r in enumerate(rows):
        real = train_images[r["training"]]
        real = real[..., ::-1] if r["flipped"] else real
        _show(axes[0][k], synthetic[r["synthetic"]][None])
        _show(axes[1][k], real[None])
        flag = r["distance"] <= r["patient_nearest_other"]
        axes[0][k].set_title(f"synthetic {r['synthetic']}\nd={r['distance']:.3g}", fontsize=7,
                             color="red" if flag else "black")
        axes[1][k].set_xlabel(f"patient {r['patient'][:14]}\n{r['close']} close; other patient "
                              f"{r['patient_nearest_other']:.3g}{' (mirrored)' if r['flipped'] else ''}", fontsize=6)
    fig.suptitle(f"{cls}: closest synthetic image per patient, worst first (red: closer than the patient's "
                 "nearest other patient)", fontsize=8)
    fig.tight_layout()
    return fig


def utility_figure(classifiers: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 3))
    axes = fig.subplots(1, 2)
    names = ("trtr", "tstr", "real_plus_synthetic")
    for ax, metric in zip(axes, ("auc", "balanced_accuracy")):
        vals = [classifiers[n][metric] for n in names]
        ys = [v["value"] for v in vals]
        err = [[max(v["value"] - v.get("ci95", [v["value"]] * 2)[0], 0) for v in vals],
               [max(v.get("ci95", [v["value"]] * 2)[1] - v["value"], 0) for v in vals]]
        ax.bar(range(3), ys, yerr=err, capsize=4, color=["#555555", "#c0392b", "#8e44ad"])
        ax.set_xticks(range(3), ["real (TRTR)", "synthetic (TSTR)", "real + synthetic"], fontsize=7)
        ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{metric.replace('_', ' ')} on holdout patients", fontsize=9)
    fig.tight_layout()
    return fig


def morphometry_figure(measured: dict[str, Any]) -> Figure:
    from stylemri.audit.morphometry import MEASURES

    classes = list(measured)
    fig = Figure(figsize=(11, 3))
    axes = fig.subplots(1, len(MEASURES))
    for ax, m in zip(axes, MEASURES):
        data, labels, colors = [], [], []
        for c in classes:
            for kind, key in (("training", "real"), ("synthetic", "synthetic"), ("holdout", "holdout")):
                data.append(measured[c][key][m])
                labels.append(f"{c}\n{kind[:5]}")
                colors.append(COLORS[kind])
        box = ax.boxplot(data, patch_artist=True, widths=0.6)
        for patch, col in zip(box["boxes"], colors):
            patch.set_facecolor(col)
            patch.set_alpha(0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=6)
        ax.set_title(m.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
