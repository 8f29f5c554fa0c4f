"""`stylemri.audit` on made-up image sets with known answers, and its fast paths against plain references."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stylemri.audit import AuditConfig, audit, check_overlap, feature_net, from_arrays
from stylemri.audit import fidelity, morphometry, stats
from stylemri.audit.report import write_report
from stylemri.audit.verdicts import THRESHOLDS, Finding, combine
from stylemri.errors import UserError

R = 16
CLASSES = ["NC", "AD"]


def brain(rng: np.random.Generator, ad: int, shift: float) -> np.ndarray:
    """A patient-specific phantom slice: ellipse brain, dark ventricles (bigger for AD), smooth texture."""
    yy, xx = np.mgrid[:R, :R] / (R - 1) * 2 - 1
    a, b = rng.uniform(0.55, 0.85), rng.uniform(0.65, 0.95)
    inside = (xx / a) ** 2 + (yy / b) ** 2 <= 1
    vr = (0.3 if ad else 0.15) * rng.uniform(0.8, 1.2)
    vent = (xx / vr) ** 2 + ((yy + shift) / (vr * 1.6)) ** 2 <= 1
    tex = 0.65 + 0.2 * np.sin(xx * rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(yy * rng.uniform(3, 9))
    return np.where(inside & vent, 0.08, np.where(inside, tex, 0.0))


def patients(n_patients: int, slices: int, seed: int, prefix: str):
    rng = np.random.default_rng(seed)
    imgs, labels, subjects = [], [], []
    for p in range(n_patients):
        ad = p % 2
        pseed = int(rng.integers(1 << 30))
        for s in range(slices):
            img = brain(np.random.default_rng(pseed), ad, 0.06 * s) + rng.normal(0, 0.01, (R, R))
            imgs.append(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)[None])
            labels.append(ad)
            subjects.append(f"{prefix}{p:03d}")
    return from_arrays(prefix, np.stack(imgs), labels, CLASSES, subjects)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small CNNs on a shared CPU: one thread is ~30x faster than two fighting other processes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_sets():
    return patients(40, 3, 0, "tr"), patients(20, 3, 1, "ho")


def _synthetic(images: np.ndarray, labels: np.ndarray):
    return from_arrays("synthetic", images, labels, CLASSES)


def _run(train, holdout, synthetic, num=30, **kw):
    kw.setdefault("classifiers", False)  # the CNNs are tested on their own below; they dominate CPU time
    cfg = AuditConfig(num=num, bootstrap=30, **kw)
    return audit(train, holdout, synthetic, feature_net("pixels16"), cfg)


def _copies(train, kind: str, n: int, seed: int = 5):
    pick = train.sample(n, seed)
    imgs = pick.images.copy()
    if kind == "mirrored":
        imgs = np.ascontiguousarray(imgs[..., ::-1])
    elif kind == "noisy":
        rng = np.random.default_rng(seed)
        imgs = np.clip(imgs.astype(np.int16) + rng.integers(-3, 4, imgs.shape), 0, 255).astype(np.uint8)
    return _synthetic(imgs, pick.labels)


@pytest.mark.parametrize("kind,num", [("exact", 6), ("mirrored", 30), ("noisy", 6), ("noisy", 30)])
def test_copies_of_training_images_fail_privacy(real_sets, kind, num):
    train, holdout = real_sets
    res = _run(train, holdout, _copies(train, kind, 2 * num), num=num).data
    assert res["privacy"]["verdict"] == "fail", res["privacy"]["reason"]
    assert "near copies of a training image" in res["privacy"]["reason"]
    px = res["privacy"]["per_class"]["AD"]["pixel"]
    assert px["near_copies"]["rate"] == 1.0 and px["near_copies"]["holdout_rate"] < 0.2
    assert px["close_copies"]["rate"] == 1.0 and px["authenticity"]["synthetic"]["value"] < 0.2
    worst = res["privacy"]["per_class"]["AD"]["patients"]["rows"][0]
    assert worst["flipped"] == (kind == "mirrored")  # a mirrored copy is found through the mirrored slice


def test_holdout_presented_as_synthetic_is_not_a_privacy_fail(real_sets):
    train, holdout = real_sets
    other = patients(20, 3, 2, "x")  # more unseen patients, standing in for a perfect generator
    res = _run(train, holdout, _synthetic(other.images, other.labels)).data
    assert res["privacy"]["verdict"] != "fail", res["privacy"]["reason"]
    assert res["fidelity"]["verdict"] != "fail", res["fidelity"]["reason"]
    for c in CLASSES:
        px = res["privacy"]["per_class"][c]["pixel"]
        assert px["near_copies"]["p_value"] > 0.01


@pytest.mark.parametrize("num", [8, 30])
def test_pure_noise_fails_fidelity_not_privacy(real_sets, num):
    train, holdout = real_sets
    rng = np.random.default_rng(3)
    noise = _synthetic(rng.integers(0, 256, (2 * num, 1, R, R), dtype=np.uint8), np.arange(2 * num) % 2)
    res = _run(train, holdout, noise, num=num).data
    assert res["fidelity"]["verdict"] == "fail", res["fidelity"]["reason"]
    assert "precision" in res["fidelity"]["reason"]
    assert res["privacy"]["verdict"] != "fail", res["privacy"]["reason"]


def test_small_n_never_passes_and_says_why(real_sets):
    train, holdout = real_sets
    other = patients(20, 3, 2, "x")
    res = _run(train, holdout, _synthetic(other.images, other.labels), num=20).data
    assert res["privacy"]["verdict"] == "warn" and "below the 100" in res["privacy"]["reason"]
    assert res["fidelity"]["verdict"] == "warn" and "N = 20" in res["fidelity"]["reason"]


def test_audit_json_contract_and_report(real_sets, tmp_path):
    train, holdout = real_sets
    other = patients(20, 3, 2, "x")
    result = _run(train, holdout, _synthetic(other.images, other.labels), num=12)
    json_path, html_path = write_report(tmp_path / "out", result)
    data = json.loads(json_path.read_text())  # strict JSON: no NaN
    for key in ("fidelity", "privacy", "utility"):
        assert data[key]["verdict"] in ("pass", "warn", "fail") and data[key]["reason"]
        assert data[key]["figures"]
    assert data["n"]["synthetic"] == {"NC": 12, "AD": 12} and data["n"]["holdout"] == {"NC": 12, "AD": 12}
    proto = data["protocol"]
    assert proto["feature_network"] == "pixels16" and proto["seeds"] and proto["resizing"] and proto["feature_hash"]
    assert set(proto["timing_seconds"]) >= {"features", "fidelity", "privacy"}
    fid = data["fidelity"]["per_class"]["AD"]
    for m in ("fid", "kid", "precision", "recall", "density", "coverage", "alpha_precision", "beta_recall"):
        assert "ci95" in fid["synthetic"][m] and "ci95" in fid["floor"][m]
    lo, hi = fid["synthetic"]["fid"]["ci95"]
    assert lo <= fid["synthetic"]["fid"]["value"] <= hi  # re-centred: duplicates in resamples inflate FID
    mia = data["privacy"]["per_class"]["AD"]["membership"]
    assert {"nearest_synthetic", "control_no_model"} <= set(mia)
    assert data["privacy"]["per_class"]["AD"]["patients"]["rows"]
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") >= 5 and "<script" not in page and "http" not in page.split("<body>")[1]


def test_overlap_check(real_sets):
    train, holdout = real_sets
    mixed = from_arrays("holdout", np.concatenate([holdout.images, train.images[:6]]),
                        np.concatenate([holdout.labels, train.labels[:6]]), CLASSES,
                        np.concatenate([holdout.subjects, train.subjects[:6]]))
    left, overlap = check_overlap(train, mixed)
    assert len(left) == len(holdout) and overlap.removed == 6 and len(overlap.subjects) == 2
    with pytest.raises(UserError, match="holdout = training data"):
        check_overlap(train, from_arrays("holdout", train.images, train.labels, CLASSES))


def test_holdout_sources(tmp_path):
    from stylemri.audit import holdout_config
    from stylemri.config import DataConfig

    data = DataConfig(source=str(tmp_path), split="train", classes=("AD",))
    split_only = holdout_config(data, None, "test")
    assert split_only.source == str(tmp_path) and split_only.split == "test" and split_only.classes is None
    (tmp_path / "hold").mkdir()
    folder = holdout_config(data, str(tmp_path / "hold"), None)
    assert folder.source == str(tmp_path / "hold") and folder.split == "all" and folder.split_file is None
    (tmp_path / "split.csv").write_text("source,subject,class,split\n")
    table = holdout_config(data, str(tmp_path / "split.csv"), None)
    assert table.split_file == str((tmp_path / "split.csv").resolve()) and table.split == "test"
    with pytest.raises(UserError, match="no holdout"):
        holdout_config(data, None, None)
    with pytest.raises(UserError, match="no such split file"):
        holdout_config(data, str(tmp_path / "missing.csv"), None)


def test_missing_class_is_a_warning_and_no_common_class_an_error(real_sets):
    train, holdout = real_sets
    other = patients(20, 3, 2, "x")
    only_ad = other.of_class("AD")
    res = _run(train, holdout, _synthetic(only_ad.images, only_ad.labels), num=8).data
    assert res["classes"] == ["AD"] and any("NC" in w and "not audited" in w for w in res["warnings"])
    alien = from_arrays("synthetic", other.images, np.zeros(len(other), int), ["XX"])
    with pytest.raises(UserError, match="no class is present in all three sets"):
        _run(train, holdout, alien, num=8)


def test_usefulness_perfect_generator_vs_swapped_classes():
    train, holdout = patients(40, 3, 0, "tr"), patients(40, 3, 1, "ho")
    fresh = patients(40, 3, 2, "x")
    good = _run(train, holdout, _synthetic(fresh.images, fresh.labels), num=50, classifiers=True,
                classifier_epochs=8).data["utility"]
    assert good["verdict"] != "fail", good["reason"]
    cl = good["classifiers"]
    assert cl["trtr"]["auc"]["value"] > 0.8 and cl["tstr"]["auc"]["value"] > 0.8
    assert {"trtr", "tstr", "real_plus_synthetic"} <= set(cl) and "ci95" in cl["tstr"]["balanced_accuracy"]
    assert good["class_consistency"]["per_class"]["AD"]["consistency"] > 0.8
    swapped = _run(train, holdout, _synthetic(fresh.images, 1 - fresh.labels), num=50, classifiers=True,
                   classifier_epochs=8).data["utility"]
    assert swapped["verdict"] == "fail", swapped["reason"]
    assert swapped["classifiers"]["tstr"]["auc"]["value"] < 0.3
    diffs = swapped["morphometry"]["class_differences"]["AD vs NC"]["csf_fraction"]
    assert diffs["real"]["value"] > 0 and not diffs["keeps_sign"]  # AD's larger ventricles flip sign


def test_unclassed_synthetic_images_audit_pooled_and_warn_on_usefulness(real_sets):
    train, holdout = real_sets
    other = patients(20, 3, 2, "x")
    res = _run(train, holdout, from_arrays("synthetic", other.images, np.zeros(len(other), int), ["all"]),
               num=20, classifiers=True).data
    assert res["classes"] == ["all"] and res["n"]["synthetic"] == {"all": 20}
    assert res["utility"]["verdict"] == "warn" and "carry no class" in res["utility"]["reason"]
    assert "classifiers" not in res["utility"] and res["utility"]["morphometry"]["per_class"]["all"]


# ----------------------------------------------------------------------------- fast paths vs references


def test_gram_fid_matches_fid_from_features():
    from stylemri.metrics.fid import fid_from_features

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 64)), rng.normal(size=(30, 64)) + 0.2
    g = fidelity.GramFID(x, y)
    for _ in range(3):
        i, j = rng.integers(0, 40, 40), rng.integers(0, 30, 30)
        assert g(i, j) == pytest.approx(fid_from_features(x[i], y[j]), rel=1e-6)


def test_prdc_per_sample_means_match_prdc():
    from stylemri.metrics.precision_recall import prdc

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(50, 8)), rng.normal(size=(40, 8)) * 1.3
    rows = fidelity.prdc_per_sample(real, fake)
    ref = prdc(real, fake)
    for k in ("precision", "recall", "density", "coverage"):
        assert rows[k].mean() == pytest.approx(ref[k])


def test_alpha_beta_identical_sets_near_diagonal_and_shifted_sets_low():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(200, 4))
    same_a, same_b = fidelity.alpha_beta_per_sample(real, rng.normal(size=(200, 4)))
    far_a, far_b = fidelity.alpha_beta_per_sample(real, rng.normal(size=(200, 4)) + 5)
    assert fidelity.integrated(same_a) > 0.8 and fidelity.integrated(far_a) < 0.1
    assert fidelity.integrated(same_b) > fidelity.integrated(far_b)


def test_auc_matches_pairwise_reference():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 20).astype(float)  # with ties
    assert stats.roc_auc(a, b) == pytest.approx(stats.roc_auc_reference(a, b))


def test_verdict_combination_and_registry():
    v = combine([Finding("pass", "a"), Finding("warn", "b"), Finding("warn", "c")])
    assert v["verdict"] == "warn" and v["reason"] == "b; c"
    assert combine([])["verdict"] == "warn"
    for t in THRESHOLDS.values():
        assert t.reason and t.source and t.min_n >= 0


def test_morphometry_measures_known_shapes():
    img = np.zeros((1, 1, 20, 20), np.uint8)
    img[0, 0, 5:15, 5:15] = 200
    img[0, 0, 8:12, 8:12] = 10  # dark 'CSF' inside the brain (holes are filled into the brain)
    m = morphometry.measure(img)
    assert m["brain_area"][0] == pytest.approx(100 / 400)
    assert m["csf_fraction"][0] == pytest.approx(16 / 100)
    assert m["hist"][0].sum() == pytest.approx(1.0)


def test_images_without_patient_are_their_own_patient():
    from stylemri.audit.sets import from_dataset

    class Dataset:  # what from_dataset reads of an MRIDataset
        subjects = np.array(["", "p1", ""], dtype=object)
        labels, class_names, fingerprint = np.zeros(3, int), ["a"], "f"

        def __len__(self):
            return 3

        def batch_uint8(self, idx):
            import torch

            return torch.zeros((len(idx), 1, 4, 4), dtype=torch.uint8), None

    assert from_dataset("training", Dataset()).subjects.tolist() == ["training-0", "p1", "training-2"]


def test_covariate_findings_judge_the_generated_score_against_the_floor():
    from stylemri.audit.covariates import findings, score

    def continuous(generated, floor, real_slope=0.004, gen_slope=0.002, real_r=0.9):
        csf = {"real": {"slope": real_slope, "r": real_r}, "generated": {"slope": gen_slope, "r": 0.5}}
        return {"kind": "continuous", "generated": {"r": generated, "slope": 1.0},
                "real_holdout": {"r": floor, "slope": 1.0, "n": 100}, "morphometry": {"csf_fraction": csf}}

    def proof(**columns):
        return {"num_generated": 200, "columns": columns}

    def statuses(p):
        return [(f.status, f.threshold) for f in findings(p)]

    assert statuses(proof(age=continuous(0.9, 0.95))) == [("pass", "covariate_ratio_pass")]
    assert statuses(proof(age=continuous(0.5, 0.95))) == [("warn", "covariate_ratio_pass")]
    assert statuses(proof(age=continuous(0.1, 0.95))) == [("fail", "covariate_ratio_fail")]
    assert statuses(proof(age=continuous(None, 0.95))) == [("fail", "covariate_ratio_fail")]  # constant prediction
    assert statuses(proof(age=continuous(0.9, 0.2))) == [("warn", "covariate_floor")]  # floor too weak to judge
    flipped = statuses(proof(age=continuous(0.9, 0.95, gen_slope=-0.001)))
    assert flipped == [("pass", "covariate_ratio_pass"), ("warn", "covariate_morphometry_r")]
    sex = {"kind": "categorical", "generated": {"accuracy": 0.75}, "real_holdout": {"accuracy": 1.0, "n": 100},
           "chance": 0.5, "morphometry": {}}
    assert score(sex, "generated") == pytest.approx(0.5) and score(sex, "real_holdout") == pytest.approx(1.0)
    p = proof(sex=sex)
    assert statuses(p) == [("warn", "covariate_ratio_pass")]
    assert p["columns"]["sex"]["floor_ratio"] == pytest.approx(0.5)
    small = {**proof(age=continuous(0.9, 0.95)), "num_generated": 20}
    (only,) = findings(small)
    assert only.status == "warn" and "N = 20 is below the 50" in only.reason
