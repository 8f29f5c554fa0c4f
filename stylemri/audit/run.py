"""The audit itself: training, holdout and synthetic image sets in, audit.json's dict (and figure data) out.

Order: the patient-overlap check, then per class equal-N samples of the three sets, their features (once,
cached), then fidelity, privacy and utility (with the covariate proof for a --condition run), each with its
verdict. Wall time per stage goes into
`protocol.timing_seconds`, so the note on the CPU budget is measured, not guessed.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from stylemri.audit import fidelity, privacy, utility
from stylemri.audit.features import FeatureNet
from stylemri.audit.model import AuditModel
from stylemri.audit.sets import ImageSet, check_overlap
from stylemri.audit.verdicts import combine, thresholds_table
from stylemri.errors import UserError

AUDIT_VERSION = 1
MIN_IMAGES = 4  # below this per class nothing (not even k-NN figures) can be computed


@dataclass(frozen=True)
class AuditConfig:
    num: int = 200  # images per set and class (at most)
    seed: int = 0
    bootstrap: int = 200  # bootstrap replicates per interval
    device: str = "cpu"
    classifier_epochs: int = 10  # the CNNs dominate CPU time (docs/audit.md, Time)
    classifiers: bool = True  # False: skip the usefulness CNNs (the slowest part on a CPU), say so in the verdict


@dataclass
class AuditResult:
    """audit.json's content, and the arrays/images the report draws."""

    data: dict[str, Any]
    plots: dict[str, Any] = field(default_factory=dict)


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t


def audit_classes(train: ImageSet, holdout: ImageSet, synthetic: ImageSet) -> tuple[list[str], list[str]]:
    """Classes present in all three sets, and one warning per class missing somewhere."""
    if synthetic.class_names == ("all",):
        return ["all"], []
    warnings, common = [], []
    for c in synthetic.class_names:
        missing = [s.name for s in (train, holdout) if c not in s.class_names or s.class_counts().get(c, 0) == 0]
        if (synthetic.labels == synthetic.class_names.index(c)).sum() == 0:
            missing.append(synthetic.name)
        if missing:
            warnings.append(f"class {c} is missing in the {' and '.join(missing)} set; it is not audited")
        else:
            common.append(c)
    for c in sorted((set(train.class_names) | set(holdout.class_names)) - set(synthetic.class_names)):
        warnings.append(f"class {c} of the real data has no synthetic images; it is not audited")
    if not common:
        raise UserError(f"no class is present in all three sets (synthetic: {', '.join(synthetic.class_names)}; "
                        f"training: {', '.join(train.class_names)}; holdout: {', '.join(holdout.class_names)})")
    return common, warnings


def audit(train: ImageSet, holdout: ImageSet, synthetic: ImageSet, features: FeatureNet, cfg: AuditConfig, *,
          model: AuditModel | None = None, progress: Callable[[str], None] | None = None,
          covariate_data: Any = None) -> AuditResult:
    """Fidelity, privacy and utility of `synthetic` against `train` (seen) and `holdout` (unseen) patients.

    For a covariate `model`, `covariate_data` is its training `MRIDataset` with covariates (encoded with
    the run's stored scaling): usefulness then includes the covariate proof against it."""
    say = progress or (lambda _msg: None)
    covariate_model = model is not None and model.covariates is not None
    if covariate_model and getattr(covariate_data, "covariates", None) is None:
        raise ValueError("audit of a covariate model: expected covariate_data, its training data with covariates")
    timer = Timer()
    if synthetic.images.shape[1:] != train.images.shape[1:]:
        raise UserError(f"synthetic images {synthetic.images.shape[1:]} and training images "
                        f"{train.images.shape[1:]} differ in shape; expected the same resolution and channels")
    with timer("overlap_check"):
        holdout, overlap = check_overlap(train, holdout)
    classes, warnings = audit_classes(train, holdout, synthetic)
    if covariate_model:
        warnings.append("covariate model: the discriminator membership attack is not run (D scores an image against "
                        "its covariates, which the holdout images do not carry); the black-box attacks are")
    if overlap.removed:
        warnings.append(f"{overlap.removed} holdout image(s) removed: {len(overlap.subjects)} patient(s) also in "
                        f"training, {overlap.identical_images} image(s) identical to training images")
    samples = _class_samples(train, holdout, synthetic, classes, cfg)
    feats: dict[str, dict[str, np.ndarray]] = {}
    with timer("features"):
        for c in classes:
            say(f"features: {c}")
            feats[c] = {k: features(s.images) for k, s in samples[c].items()}

    data: dict[str, Any] = {"audit_version": AUDIT_VERSION, "classes": classes}
    plots: dict[str, Any] = {"samples": {c: {k: s.images[:8] for k, s in samples[c].items()} for c in classes}}
    data["fidelity"] = _fidelity(classes, samples, feats, cfg, timer, say)
    data["privacy"], plots["privacy"] = _privacy(train, classes, samples, feats, cfg, timer, say, model)
    proof = None
    if covariate_model:
        say("utility: covariates")
        with timer("utility_covariates"):
            proof = model.prove_covariates(covariate_data, cfg.num, cfg.seed)  # type: ignore[union-attr]
        plots["covariates"] = proof
    conditional = synthetic.class_names != ("all",)
    data["utility"], plots["utility"] = utility.run_utility(
        train, holdout, synthetic, classes if conditional else [], samples, cfg, timer, say, conditional=conditional,
        covariates=proof)
    data["n"] = {k: {c: len(samples[c][k]) for c in classes} for k in ("training", "holdout", "synthetic")}
    data["n"]["totals"] = {"training": len(train), "holdout": len(holdout), "synthetic": len(synthetic)}
    data["overlap"] = overlap.to_dict()
    data["warnings"] = warnings
    data["protocol"] = _protocol(features, train, cfg, timer)
    data["protocol"]["timing_seconds"]["features_network_only"] = round(features.seconds, 2)
    data["thresholds"] = thresholds_table()
    if model is not None:
        data["model"] = model.describe()
    return AuditResult(data, plots)


def _class_samples(train: ImageSet, holdout: ImageSet, synthetic: ImageSet, classes: list[str],
                   cfg: AuditConfig) -> dict[str, dict[str, ImageSet]]:
    """Per class, equal-N seeded samples of the three sets (the smallest set decides N)."""
    samples: dict[str, dict[str, ImageSet]] = {}
    for i, c in enumerate(classes):
        sets = {"training": train.of_class(c), "holdout": holdout.of_class(c), "synthetic": synthetic.of_class(c)}
        n = min(cfg.num, *(len(s) for s in sets.values()))
        if n < MIN_IMAGES:
            raise UserError(f"class {c}: {n} image(s) in the smallest set "
                            f"({', '.join(f'{k} {len(s)}' for k, s in sets.items())}); expected at least {MIN_IMAGES}")
        samples[c] = {k: s.sample(n, cfg.seed + 101 * i + j) for j, (k, s) in enumerate(sets.items())}
    return samples


def _protocol(features: FeatureNet, train: ImageSet, cfg: AuditConfig, timer: Timer) -> dict[str, Any]:
    """How the audit measured: the feature network, resolution, seeds, bootstrap and timing (for the report)."""
    return {
        "feature_network": features.name,
        "feature_hash": (features.info.get("weights") or {}).get("sha1", "none (no weights)"),
        "features": features.info,
        "feature_images": features.images, "feature_images_from_cache": features.from_cache,
        "resolution": int(train.images.shape[-1]), "channels": int(train.images.shape[1]),
        "resizing": "every set at the training resolution (data layer: area downsampling of the source images); "
                    "feature network input as in 'features'",
        "seeds": {"sample": cfg.seed, "bootstrap": cfg.seed, "classifier": cfg.seed},
        "bootstrap_replicates": cfg.bootstrap, "interval": "95% percentile bootstrap",
        "pixel_space": "RMS difference in [0, 1], nearest over every training image and its mirror image",
        "feature_space_reference": "the training sample of each class (equal N)",
        "timing_seconds": {k: round(v, 2) for k, v in timer.seconds.items()},
    }


def _fidelity(classes, samples, feats, cfg, timer, say) -> dict[str, Any]:
    per_class, found = {}, []
    with timer("fidelity"):
        for c in classes:
            say(f"fidelity: {c}")
            f = feats[c]
            per_class[c] = fidelity.measure_class(f["training"], f["holdout"], f["synthetic"], cfg.bootstrap, cfg.seed)
            found += fidelity.findings(c, per_class[c], len(samples[c]["synthetic"]))
    return {**combine(found), "per_class": per_class,
            "figures": ["fidelity: FID, KID, precision/recall/density/coverage, alpha-precision/beta-recall with 95% "
                        "intervals, synthetic beside the real-vs-real floor"]}


def _privacy(train, classes, samples, feats, cfg, timer, say, model) -> tuple[dict[str, Any], dict[str, Any]]:
    per_class, plots, found = {}, {}, []
    with timer("privacy"):
        pixel = privacy.pixel_space(train.images, train.subjects)
        ref_subjects = np.concatenate([samples[c]["training"].subjects for c in classes])
        feature = privacy.feature_space(np.concatenate([feats[c]["training"] for c in classes]), ref_subjects)
        for i, c in enumerate(classes):
            say(f"privacy: {c}")
            s = samples[c]
            syn_px, hold_px = privacy._pixels(s["synthetic"].images), privacy._pixels(s["holdout"].images)
            res, plot = {}, {}
            res["pixel"], arr = privacy.dcr_space(pixel, syn_px, hold_px, cfg.device, cfg.bootstrap, cfg.seed)
            res["feature"], farr = privacy.dcr_space(feature, feats[c]["synthetic"], feats[c]["holdout"],
                                                     cfg.device, cfg.bootstrap, cfg.seed)
            res["patients"] = privacy.patient_table(pixel, arr)
            d_scores = None
            if model is not None and model.white_box:
                with timer("privacy_discriminator"):
                    name = None if c == "all" else c
                    d_scores = (model.discriminator_scores(s["training"].images, name),
                                model.discriminator_scores(s["holdout"].images, name))
            res["membership"], mplot = privacy.membership(
                pixel, syn_px, privacy._pixels(s["training"].images), s["training"].subjects, hold_px, cfg.device,
                cfg.bootstrap, cfg.seed + 7 * i, d_scores)
            per_class[c] = res
            plots[c] = {"pixel": arr, "feature": farr, **mplot, "synthetic": s["synthetic"].images}
            found += privacy.findings(c, res, len(s["synthetic"]), len(s["holdout"]))
    plots["train_images"] = train.images
    return {**combine(found), "per_class": per_class,
            "figures": ["privacy: DCR histograms synthetic vs holdout (pixel, feature)", "closest pairs per patient",
                        "membership ROC curves with the model-free control"]}, plots
