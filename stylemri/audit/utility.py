"""Usefulness: do synthetic images teach a classifier what real ones do, and keep the class biology?

- TSTR / TRTR / TR+S: the small CNN of `stylemri.metrics.classifier` trained on synthetic only, on real
  only, and on real + synthetic (same seed, same epochs), each tested on the holdout patients: ROC AUC
  (macro one-vs-rest) and balanced accuracy with 95% intervals from a bootstrap over holdout *patients*
  (slices of one patient are not independent).
- Class consistency: the real-trained classifier's accuracy on synthetic images of each requested class,
  beside its accuracy on holdout images of that class.
- Morphometry per class (see morphometry.py) and whether class differences keep sign and size.
- A covariate model: evaluate's covariate proof (covariates.py): is each requested covariate in the images?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stylemri.audit import covariates as covariate_checks
from stylemri.audit import morphometry, stats
from stylemri.audit.verdicts import THRESHOLDS, Finding, combine, enough


def _classifier_module():
    from stylemri.metrics import classifier

    return classifier


def macro_auc(proba: np.ndarray, y: np.ndarray) -> float:
    """Two classes: AUC of P(class 1); more: the mean one-vs-rest AUC over classes present."""
    k = proba.shape[1]
    if k == 2:
        return stats.roc_auc(proba[y == 1, 1], proba[y == 0, 1])
    aucs = [stats.roc_auc(proba[y == c, c], proba[y != c, c]) for c in range(k) if (y == c).any() and (y != c).any()]
    return float(np.mean(aucs)) if aucs else float("nan")


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls)) if recalls else float("nan")


def patient_bootstrap(subjects: np.ndarray, fn, reps: int, seed: int) -> np.ndarray:
    """fn(indices) over resamples of whole patients (cluster bootstrap)."""
    names, codes = np.unique(subjects, return_inverse=True)
    members = [np.flatnonzero(codes == k) for k in range(len(names))]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        pick = rng.integers(0, len(names), len(names))
        out.append(fn(np.concatenate([members[p] for p in pick])))
    return np.asarray(out, np.float64)


def score(proba: np.ndarray, y: np.ndarray, subjects: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    pred = proba.argmax(axis=1)
    return {
        "auc": stats.estimate(macro_auc(proba, y), patient_bootstrap(subjects, lambda i: macro_auc(proba[i], y[i]),
                                                                      reps, seed)),
        "balanced_accuracy": stats.estimate(balanced_accuracy(pred, y), patient_bootstrap(
            subjects, lambda i: balanced_accuracy(pred[i], y[i]), reps, seed + 1)),
    }


def classifiers(classes: list[str], samples: dict[str, Any], test_images: np.ndarray, test_labels: np.ndarray,
                test_subjects: np.ndarray, cfg: Any) -> tuple[dict[str, Any], Any]:
    """TSTR / TRTR / TR+S scores on the holdout patients; returns (figures, the real-trained classifier)."""
    clf_mod = _classifier_module()
    conf = clf_mod.ClassifierConfig(epochs=cfg.classifier_epochs, seed=cfg.seed)

    def stack(kinds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        imgs = [samples[c][k].images for k in kinds for c in classes]
        labs = [np.full(len(samples[c][k]), i) for k in kinds for i, c in enumerate(classes)]
        return np.concatenate(imgs), np.concatenate(labs)

    out: dict[str, Any] = {}
    trained = {}
    for name, kinds in (("trtr", ("training",)), ("tstr", ("synthetic",)), ("real_plus_synthetic", ("training", "synthetic"))):
        x, y = stack(kinds)
        trained[name] = clf_mod.train_classifier(x, y, num_classes=len(classes), config=conf)
        proba = trained[name].predict_proba(test_images)
        out[name] = {"train_images": len(x), **score(proba, test_labels, test_subjects, cfg.bootstrap, cfg.seed)}
    out["test_images"], out["test_patients"] = len(test_images), int(np.unique(test_subjects).size)
    return out, trained["trtr"]


def consistency(clf: Any, classes: list[str], samples: dict[str, Any], test_images: np.ndarray,
                test_labels: np.ndarray) -> dict[str, Any]:
    """Per class: accuracy of the real-trained classifier on synthetic images asked for that class, and on
    holdout images of that class (what 'consistent' looks like for real patients)."""
    clf_mod = _classifier_module()
    syn = np.concatenate([samples[c]["synthetic"].images for c in classes])
    req = np.concatenate([np.full(len(samples[c]["synthetic"]), i) for i, c in enumerate(classes)])
    res = clf_mod.class_consistency(clf, syn, req, classes)
    pred = clf.predict(test_images)
    for i, c in enumerate(classes):
        sel = test_labels == i
        res["per_class"][c]["holdout_accuracy"] = float((pred[sel] == i).mean()) if sel.any() else None
    return res


def run_morphometry(classes: list[str], samples: dict[str, Any], cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    per_class, measured = {}, {}
    for c in classes:
        m = {k: morphometry.measure(samples[c][k].images) for k in ("training", "holdout", "synthetic")}
        measured[c] = {"real": m["training"], "synthetic": m["synthetic"], "holdout": m["holdout"]}
        per_class[c] = {"synthetic_vs_real": morphometry.compare_class(m["training"], m["synthetic"]),
                        "floor_holdout_vs_real": morphometry.compare_class(m["training"], m["holdout"])}
    diffs = morphometry.class_differences(measured, cfg.bootstrap, cfg.seed) if len(classes) > 1 else {}
    return {"per_class": per_class, "class_differences": diffs}, measured


def findings(res: dict[str, Any], classes: list[str], n: int) -> list[Finding]:
    out: list[Finding] = []
    clf = res.get("classifiers")
    if clf is not None:
        low = enough("tstr_ratio_pass", n, "classifier usefulness")
        trtr, tstr = clf["trtr"]["auc"], clf["tstr"]["auc"]
        if low is not None:
            out.append(low)
        elif trtr.get("ci95", [0.5])[0] <= 0.55:
            out.append(Finding("warn", f"real images teach the classifier little here (TRTR AUC {trtr['value']:.2f}, "
                                       "interval reaches chance); usefulness is not judged", "tstr_ratio_pass"))
        else:
            ratio = (tstr["value"] - 0.5) / (trtr["value"] - 0.5)
            res["tstr_ratio"] = ratio
            words = f"TSTR AUC {tstr['value']:.2f} vs TRTR {trtr['value']:.2f} (chance-corrected ratio {ratio:.2f})"
            status = ("pass" if ratio >= THRESHOLDS["tstr_ratio_pass"].value
                      else "fail" if ratio < THRESHOLDS["tstr_ratio_fail"].value else "warn")
            out.append(Finding(status, words, "tstr_ratio_pass" if status != "fail" else "tstr_ratio_fail"))
    cons = res.get("class_consistency")
    if cons is not None and enough("consistency_fail", n, "class consistency") is None:
        for c in classes:
            row = cons["per_class"][c]
            if row["consistency"] is not None and row["consistency"] < THRESHOLDS["consistency_fail"].value \
                    and (row.get("holdout_accuracy") or 0) >= 0.8:
                out.append(Finding("fail", f"{c}: only {row['consistency']:.0%} of synthetic '{c}' images are "
                                           f"classified as {c} (holdout: {row['holdout_accuracy']:.0%})",
                                   "consistency_fail"))
    out += morphometry.findings(res["morphometry"]["class_differences"], n)
    return out


def run_utility(train: Any, holdout: Any, synthetic: Any, classes: list[str], samples: dict[str, Any], cfg: Any,
                timer: Any, say: Any, *, conditional: bool, covariates: dict[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The usefulness section; `classes` is empty for an unconditional model (no per-class utility).
    `covariates`: a covariate model's proof (audit.covariate_proof), judged beside the rest."""
    from stylemri.audit.covariate_proof import public

    res: dict[str, Any] = {}
    pre: list[Finding] = []
    audited = classes or list(samples)
    with timer("utility_morphometry"):
        res["morphometry"], measured = run_morphometry(audited, samples, cfg)
    if covariates is not None:
        res["covariates"] = public(covariates)
        pre += covariate_checks.findings(res["covariates"])
    if not conditional:  # a covariate-only model: the covariate checks are its usefulness, nothing to classify
        if covariates is None:
            pre.append(Finding("warn", "the synthetic images carry no class (unconditional model or one folder): "
                                       "classifier usefulness and class consistency are not measured"))
    elif len(classes) < 2:
        pre.append(Finding("warn", f"one class ({', '.join(classes)}): no classifier can be trained"))
    elif not cfg.classifiers:
        pre.append(Finding("warn", "classifiers were not run (--no-classifiers): usefulness rests on morphometry only"))
    else:
        say("utility: classifiers")
        sel = np.isin(holdout.labels, [holdout.class_names.index(c) for c in classes])
        test_images = holdout.images[sel]
        test_labels = np.array([classes.index(holdout.class_names[i]) for i in holdout.labels[sel]], np.int64)
        with timer("utility_classifiers"):
            res["classifiers"], real_clf = classifiers(classes, samples, test_images, test_labels,
                                                       holdout.subjects[sel], cfg)
            res["class_consistency"] = consistency(real_clf, classes, samples, test_images, test_labels)
    n = min(len(samples[c]["synthetic"]) for c in audited)
    verdict = combine(pre + findings(res, classes, n))
    figs = ["usefulness: classifier AUC / balanced accuracy (TSTR, TRTR, real+synthetic)", "morphometry per class"]
    if covariates is not None:
        figs.append("covariates: predicted from generated images vs the real held-out floor; dark-CSF fraction vs "
                    "covariate, generated beside real")
    res = {**verdict, **res, "figures": figs}
    return res, {"morphometry": measured}
