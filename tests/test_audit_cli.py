"""`stylemri audit`: a tiny trained conditional run, a --synthetic folder of copies, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemri import cli
from test_audit import brain

TINY = ["--channel-base", "128", "--channel-max", "16", "--z-dim", "16", "--w-dim", "16", "--workers", "0"]
FAST = ["--features", "pixels16", "--bootstrap", "10", "--classifier-epochs", "1", "--device", "cpu"]


def _write_patients(root: Path, n: int, seed: int, prefix: str) -> None:
    """root/{NC,AD}/<prefix><patient>_<slice>.png, two slices per patient."""
    rng = np.random.default_rng(seed)
    for p in range(n):
        cls, pseed = ("AD" if p % 2 else "NC"), int(rng.integers(1 << 30))
        for s in range(2):
            img = brain(np.random.default_rng(pseed), p % 2, 0.06 * s)
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)).save(
                root / cls / f"{prefix}{p:03d}_{s}.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("auditdata")
    _write_patients(root / "data", 16, 0, "tr")
    _write_patients(root / "holdout", 12, 1, "ho")
    cache = str(root / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(["train", "--data", str(root / "data"), "--conditional", "--resolution", "16", "--batch", "8",
                         "--kimg", "0.016", "--tick-kimg", "0.016", "--out", str(root / "runs"), "--cache-dir", cache,
                         "--subject-pattern", r"(tr\d+)_", "--quiet", *TINY]) == 0
        yield root, next((root / "runs").iterdir()), cache
    finally:
        torch.set_num_threads(threads)


def _run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_audit_of_a_tiny_run(tiny, capsys, tmp_path):
    root, run, cache = tiny
    rc, out, err = _run(["audit", run, "--holdout", root / "holdout", "--subject-pattern", r"((?:tr|ho)\d+)_",
                         "--num", 6, "--outdir", tmp_path, "--cache-dir", cache, *FAST], capsys)
    assert rc == 0, err
    data = json.loads((tmp_path / "audit.json").read_text())
    for key in ("fidelity", "privacy", "utility"):
        assert data[key]["verdict"] in ("pass", "warn", "fail") and key in out
    assert data["n"]["synthetic"] == {"AD": 6, "NC": 6}
    assert data["model"]["checkpoint"] and data["protocol"]["timing_seconds"]["generate"] >= 0
    assert "discriminator" in data["privacy"]["per_class"]["AD"]["membership"]  # the white-box attack
    assert data["overlap"]["num_shared_patients"] == 0
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")


def test_synthetic_folder_of_training_copies_fails_privacy(tiny, capsys, tmp_path):
    root, _run_dir, cache = tiny
    syn = tmp_path / "synthetic"
    for cls in ("AD", "NC"):
        (syn / cls).mkdir(parents=True)
        for f in sorted((root / "data" / cls).glob("*.png")):
            img = np.asarray(Image.open(f))[:, ::-1]  # mirrored copies
            Image.fromarray(np.ascontiguousarray(img)).save(syn / cls / f.name)
    rc, out, err = _run(["audit", "--synthetic", syn, "--data", root / "data", "--holdout", root / "holdout",
                         "--resolution", 16, "--num", 8, "--outdir", tmp_path / "out", "--cache-dir", cache,
                         "--subject-pattern", r"((?:tr|ho)\d+)_", "--no-classifiers", *FAST], capsys)
    assert rc == 0, err
    data = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert data["privacy"]["verdict"] == "fail" and "privacy   FAIL" in out
    assert data["run"] is None and data["synthetic_source"] == str(syn)


@pytest.mark.parametrize("args,needle", [
    (["--num", 6], "no holdout"),
    (["--holdout", "DATA", "--num", 6], "holdout = training data"),
    (["--holdout", "HOLDOUT", "--num", 2], "--num 2"),
    (["--holdout", "nowhere", "--num", 6], "--holdout nowhere: no such folder"),
])
def test_bad_input_is_one_line(tiny, capsys, tmp_path, args, needle):
    root, run, cache = tiny
    args = [str(root / "data") if a == "DATA" else str(root / "holdout") if a == "HOLDOUT" else
            str(tmp_path / a) if a == "nowhere" else a for a in args]
    if "--holdout" in args and args[args.index("--holdout") + 1].endswith("nowhere"):
        needle = f"--holdout {tmp_path / 'nowhere'}: no such folder"
    rc, out, err = _run(["audit", run, *args, "--outdir", tmp_path, "--cache-dir", cache, *FAST], capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "audit.json").exists()


def test_run_or_synthetic_required(capsys, tmp_path):
    rc, _, err = _run(["audit", "--holdout", tmp_path], capsys)
    assert rc == 2 and "RUN" in err and "--synthetic" in err
    rc, _, err = _run(["audit", "--synthetic", tmp_path / "none", "--data", tmp_path, "--holdout", tmp_path], capsys)
    assert rc == 2 and "no such folder" in err


# ------------------------------------------------------------------------------------- a covariate model


@pytest.fixture(scope="module")
def cov_tiny(tmp_path_factory):
    """A tiny --condition age,sex run on the known-answer atrophy slices, and held-out atrophy patients
    (other subject IDs, no row in the run's covariate table)."""
    from stylemri.data.atrophy import write_atrophy_dataset

    root = tmp_path_factory.mktemp("auditcov")
    data = write_atrophy_dataset(root / "train", subjects=16, resolution=16, seed=0)
    hold = write_atrophy_dataset(root / "hold", subjects=12, resolution=16, seed=1).folder
    for f in sorted(hold.glob("sub-*.png")):
        f.rename(f.with_name(f.name.replace("sub-", "sub-h")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(["train", "--data", str(data.folder), "--labels", str(data.table), "--condition", "age,sex",
                         "--resolution", "16", "--batch", "8", "--kimg", "0.032", "--tick-kimg", "0.032",
                         "--out", str(root / "runs"), "--cache-dir", str(root / "cache"), "--quiet", *TINY]) == 0
        yield root, next((root / "runs").iterdir()), hold
    finally:
        torch.set_num_threads(threads)


def test_audit_of_a_covariate_model_includes_the_covariate_proof(cov_tiny, capsys, tmp_path):
    root, run, hold = cov_tiny
    rc, out, err = _run(["audit", run, "--holdout", hold, "--num", 8, "--outdir", tmp_path,
                         "--cache-dir", root / "cache", *FAST], capsys)
    assert rc == 0, err
    data = json.loads((tmp_path / "audit.json").read_text())
    assert data["n"]["synthetic"] == {"all": 8} and data["utility"]["verdict"] in ("pass", "warn", "fail")
    cov = data["utility"]["covariates"]
    assert cov["num_generated"] == 8 and set(cov["columns"]) == {"age", "sex"}
    age, sex = cov["columns"]["age"], cov["columns"]["sex"]
    assert set(age["generated"]) == {"r", "slope"} and {"r", "n"} <= set(age["real_holdout"])
    assert {"real", "generated", "curve_r"} <= set(age["morphometry"]["csf_fraction"])
    assert 0 <= sex["generated"]["accuracy"] <= 1 and sex["chance"] >= 0.5 and "floor_ratio" in sex
    found = [f for f in data["utility"]["findings"] if (f["threshold"] or "").startswith("covariate_")]
    assert found and any("covariate age: N = 8" in f["reason"] for f in found)  # too few images to judge
    assert not any("carry no class" in f["reason"] for f in data["utility"]["findings"])
    assert "discriminator" not in data["privacy"]["per_class"]["all"]["membership"]
    assert any("discriminator membership attack is not run" in w for w in data["warnings"])
    assert {t["key"] for t in data["thresholds"]} >= {"covariate_floor", "covariate_ratio_pass", "covariate_ratio_fail"}
    page = (tmp_path / "report.html").read_text()
    assert "Covariates: is each requested value in the images?" in page
    assert 'alt="dark-CSF fraction vs covariate, real beside generated" src="data:image/png;base64,' in page
    assert "covariate age: generated r" in out and "covariate sex: generated accuracy" in out


def test_covariate_audit_generates_each_seed_at_a_real_sample_s_covariates(cov_tiny, monkeypatch):
    """The synthetic set requests real rows, seed by seed, exactly as evaluate's generated sets do."""
    import stylemri
    from stylemri.audit.covariate_proof import settings_for_seeds
    from stylemri.audit.model import AuditModel
    from stylemri.audit.sets import load_data
    from stylemri.cli.audit import _generated_set
    from stylemri.io import to_uint8

    _root, run, _hold = cov_tiny
    model = stylemri.load(run, device="cpu")
    ds = load_data("training", model.config.data, covariates=model.covariates)
    synthetic = _generated_set(AuditModel(model), 4, 3, ds)
    settings = settings_for_seeds(ds, range(3, 7))
    assert len({tuple(s.items()) for s in settings}) > 1
    expect = to_uint8(model.generate(range(3, 7), covariates=settings, batch=32))
    assert np.array_equal(synthetic.images, expect)
