"""Issue 22: covariates (--condition age,sex --missing drop|indicator), generate --set, interpolate --walk,
the API's covariates=, the proof in evaluate and the known-answer atrophy data set, on tiny runs trained
here with the real `stylemri train`; every bad input is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_FLAGS, TINY_NET, one_line_error, run_cli
import stylemri
from stylemri import cli
from stylemri.config import CovariateColumn, CovariateScaling, DataConfig, NetworkConfig
from stylemri.data import covariates as cov
from stylemri.data import load_dataset
from stylemri.data.atrophy import AGE_HIGH, AGE_LOW, atrophied, template_slice, write_atrophy_dataset
from stylemri.errors import UserError
from stylemri.networks import build_discriminator, build_generator, count_parameters

RES = 16
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def atrophy(tmp_path_factory):
    return write_atrophy_dataset(tmp_path_factory.mktemp("atrophy"), subjects=16, resolution=RES, seed=0)


def _train(capsys, data, table, out, *extra, kimg="0.05"):
    before = set(out.glob("*")) if out.exists() else set()
    rc, _, err = run_cli(capsys, "train", "--data", data, "--labels", table, "--outdir", out, "--resolution", RES,
                         "--kimg", kimg, "--batch", "8", *TINY_FLAGS, "--device", "cpu", "--quiet", *extra)
    assert rc == 0, err
    (run,) = set(out.glob("*")) - before
    return run, err


@pytest.fixture(scope="module")
def run(atrophy, tmp_path_factory):
    out = tmp_path_factory.mktemp("cov_runs")
    before = set(out.glob("*"))
    rc = cli.main(["train", "--data", str(atrophy.folder), "--labels", str(atrophy.table), "--condition", "age,sex",
                   "--outdir", str(out), "--resolution", str(RES), "--kimg", "0.05", "--batch", "8", *TINY_FLAGS,
                   "--device", "cpu", "--quiet"])
    assert rc == 0
    (path,) = set(out.glob("*")) - before
    return path


# ---------------------------------------------------------------------------------------- the data layer
def test_known_answer_data_set_has_csf_rising_with_age(atrophy):
    from stylemri.audit.morphometry import measure

    assert atrophy.table.read_text().splitlines()[0] == "subject,age,sex,mmse"
    assert len(list(atrophy.folder.glob("sub-*_axial.png"))) == 16
    assert AGE_LOW <= atrophy.age.min() and atrophy.age.max() <= AGE_HIGH and set(atrophy.sex) == {"F", "M"}
    base = template_slice(32)
    young, old = (atrophied(base, r) for r in (0.0, 2.0))
    csf = measure((np.stack([young, old])[:, None] * 255).astype(np.uint8))["csf_fraction"]
    assert csf[1] > csf[0] + 0.1
    big = measure((atrophied(base, 0.0, 1.08)[None, None] * 255).astype(np.uint8))["brain_area"]
    assert big[0] > measure((young[None, None] * 255).astype(np.uint8))["brain_area"][0] + 0.03


def test_table_kinds_scaling_and_encoding(atrophy):
    table = cov.read_covariate_table(atrophy.table, ["AGE", "sex"])
    assert table.names == ("age", "sex") and table.kinds == ("continuous", "categorical")
    ds = load_dataset(DataConfig(source=str(atrophy.folder), resolution=RES, labels=str(atrophy.table),
                                 condition=("age", "sex")))
    scaling = ds.covariates.scaling
    assert scaling.dim == 3 and scaling.names == ("age", "sex") and scaling.columns[1].categories == ("F", "M")
    age = scaling.columns[0]
    assert age.low == pytest.approx(atrophy.age.min()) and age.high == pytest.approx(atrophy.age.max())
    v = ds.covariates.vectors
    assert v.shape == (16, 3) and abs(v[:, 0].mean()) < 1e-5 and v[:, 0].std() == pytest.approx(1.0, abs=1e-4)
    assert np.all(v[:, 1] + v[:, 2] == 1)
    order = {s: i for i, s in enumerate(atrophy.subjects)}
    ages = np.array([atrophy.age[order[s]] for s in ds.subjects])
    assert np.allclose(ds.covariates.values["age"], ages)


def test_missing_values_drop_or_indicator(atrophy, tmp_path):
    lines = atrophy.table.read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",,F,29"  # sub-000: no age
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(lines[:-2]) + "\n")  # the last two subjects have no row
    base = DataConfig(source=str(atrophy.folder), resolution=RES, labels=str(partial), condition=("age", "sex"))
    dropped = load_dataset(base)
    assert len(dropped) == 13
    assert any("3 of 16 image(s) lack a covariate value (2 match no row; missing values: age 1, sex 0); dropped"
               in w for w in dropped.report.warnings)
    kept = load_dataset(DataConfig(**{**base.__dict__, "missing": "indicator"}))
    assert len(kept) == 16 and kept.covariates.scaling.dim == 5
    flags = kept.covariates.vectors[:, 3:]
    assert flags[:, 0].sum() == 3 and flags[:, 1].sum() == 2  # age missing for 3 images, sex for the 2 without row


def test_settings_are_checked_against_training():
    scaling = CovariateScaling((CovariateColumn("age", "continuous", 70.0, 10.0, 55.0, 90.0),
                                CovariateColumn("sex", "categorical", categories=("F", "M"))), "drop")
    v = cov.encode_settings(scaling, [{"AGE": 80, "sex": "m"}])
    assert np.allclose(v, [[1.0, 0.0, 1.0]])
    for setting, match in (({"age": 95, "sex": "F"}, "outside the training range of age, 55 to 90"),
                           ({"age": 60, "sex": "X"}, "expected one of F, M"),
                           ({"age": "old", "sex": "F"}, "expected a number"),
                           ({"age": 60, "bmi": 3}, "not trained with bmi"),
                           ({"age": 60}, "no value for sex")):
        with pytest.raises(UserError, match=match):
            cov.encode_settings(scaling, [setting])
    loose = CovariateScaling(scaling.columns, "indicator")
    assert np.allclose(cov.encode_settings(loose, [{"age": 70}]), [[0.0, 0.0, 0.0, 0.0, 1.0]])
    assert cov.parse_setting("age=80, sex=F") == {"age": "80", "sex": "F"}
    assert cov.parse_walk("age=60:90") == ("age", 60.0, 90.0)


# ---------------------------------------------------------------------------------------------- networks
def test_class_only_networks_unchanged_and_covariates_feed_both():
    plain = NetworkConfig(resolution=RES, c_dim=2, **TINY_NET)
    both = NetworkConfig(resolution=RES, c_dim=2, cov_dim=3, **TINY_NET)
    torch.manual_seed(0)
    g0 = build_generator(plain)
    torch.manual_seed(0)
    g1 = build_generator(both)
    extra = {k for k in g1.state_dict()} - {k for k in g0.state_dict()}
    assert extra == {"mapping.cov_embed.weight", "mapping.cov_embed.bias"}
    d0, d1 = build_discriminator(plain), build_discriminator(both)
    # the projection's covariate embedding (3 -> 16) and its 16 more inputs to the first FC layer
    assert count_parameters(d1) - count_parameters(d0) == 3 * 16 + 16 + 16 * 16
    z = torch.randn(2, 16)
    hot = torch.eye(2)
    a = g1(z, torch.cat([hot, torch.tensor([[-1.0, 1, 0], [-1.0, 1, 0]])], 1), noise_mode="const")
    b = g1(z, torch.cat([hot, torch.tensor([[1.5, 1, 0], [1.5, 1, 0]])], 1), noise_mode="const")
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        g1(z, hot)
    only = build_generator(NetworkConfig(resolution=RES, cov_dim=1, **TINY_NET))
    assert only.mapping.c_dim == 0 and only(z, torch.tensor([[0.5], [-0.5]])).shape == (2, 1, RES, RES)


# ------------------------------------------------------------------------------------ train / generate CLI
def test_config_json_stores_the_scaling(run):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["condition"] == ["age", "sex"] and cfg["data"]["missing"] == "drop"
    assert cfg["network"]["cov_dim"] == 3 and cfg["network"]["c_dim"] == 0
    names = [c["name"] for c in cfg["covariates"]["columns"]]
    assert names == ["age", "sex"] and cfg["covariates"]["columns"][0]["std"] > 0
    assert list((run / "samples").glob("fakes-*.png"))


def test_api_generate_with_covariates(run):
    model = stylemri.load(run, device="cpu")
    assert model.covariates.names == ("age", "sex")
    low, high = model.covariates.columns[0].low, model.covariates.columns[0].high
    a = model.generate([0, 1], covariates={"age": low, "sex": "F"})
    b = model.generate([0, 1], covariates=[{"age": high, "sex": "F"}, {"age": high, "sex": "F"}])
    assert a.shape == (2, 1, RES, RES) and not torch.equal(a, b)
    assert torch.equal(a, model.generate([0, 1], covariates={"age": low, "sex": "F"}))
    with pytest.raises(UserError, match="conditioned on age, sex"):
        model.generate([0])


def test_generate_set_writes_the_setting(run, capsys, tmp_path):
    age = stylemri.load(run, device="cpu").covariates.columns[0]
    mid = round((age.low + age.high) / 2)
    rc, out, err = run_cli(capsys, "generate", run, "--set", f"age={mid},sex=M", "--seeds", "0-3", "--outdir", tmp_path)
    assert rc == 0, err
    (folder,) = (tmp_path).glob(f"kimg-*/set_age-{mid}_sex-M")
    assert len(list(folder.glob("seed*.png"))) == 4
    meta = json.loads((folder / "covariates.json").read_text())
    assert meta["set"] == {"age": str(mid), "sex": "M"} and len(meta["vector"]) == 3


@pytest.mark.parametrize("setting,match", [
    ("age=200,sex=F", "outside the training range of age"),
    ("age=70,bmi=22", "not trained with bmi"),
    ("age=70,sex=X", "expected one of F, M"),
    ("age=70", "no value for sex"),
    ("age70", "expected NAME=VALUE pairs"),
])
def test_generate_bad_settings(run, capsys, tmp_path, setting, match):
    one_line_error(capsys, "generate", run, "--set", setting, "--outdir", tmp_path / "out", match=match)
    assert not (tmp_path / "out").exists()


def test_generate_without_set_on_a_covariate_model(run, capsys, tmp_path):
    one_line_error(capsys, "generate", run, "--outdir", tmp_path / "out", match="conditioned on age, sex")
    assert not (tmp_path / "out").exists()


def test_covariate_walk(run, capsys, tmp_path):
    age = stylemri.load(run, device="cpu").covariates.columns[0]
    rc, out, err = run_cli(capsys, "interpolate", run, "--walk", f"age={age.low:g}:{age.high:g}", "--frames", "4",
                           "--seeds", "0,1", "--set", "sex=F", "--outdir", tmp_path)
    assert rc == 0, err
    files = sorted(p.name for p in tmp_path.glob("kimg-*/interpolate/*"))
    assert len(files) == 3 and any(f.endswith("_difference.png") for f in files)
    assert any(f.endswith(".gif") for f in files)
    from stylemri.analysis.covariate_walk import covariate_walk

    walk = covariate_walk(stylemri.load(run, device="cpu"), [0], "age", age.low, age.high, 3, {"sex": "F"})
    assert walk.frames.shape == (1, 3, 1, RES, RES) and walk.values[0] == pytest.approx(age.low)


@pytest.mark.parametrize("argv,match", [
    (["--walk", "age=0:200", "--set", "sex=F"], "outside the training range of age"),
    (["--walk", "sex=0:1"], "sex is categorical"),
    (["--walk", "bmi=1:2", "--set", "sex=F"], "not trained with bmi"),
    (["--walk", "age=60-90"], "expected NAME=START:STOP"),
    (["--seeds", "0,1"], "walk one covariate with --walk"),
])
def test_walk_bad_input(run, capsys, tmp_path, argv, match):
    one_line_error(capsys, "interpolate", run, *argv, "--outdir", tmp_path / "out", match=match)
    assert not (tmp_path / "out").exists()


def test_evaluate_proves_the_covariates(run, capsys, tmp_path):
    rc, out, err = run_cli(capsys, "evaluate", run, "--metrics", "swd", "--num", "16", "--outdir", tmp_path,
                           "--device", "cpu")
    assert rc == 0, err
    metrics = json.loads(next(tmp_path.glob("kimg-*/metrics.json")).read_text())
    age, sex = metrics["covariates"]["columns"]["age"], metrics["covariates"]["columns"]["sex"]
    assert set(age["generated"]) == {"r", "slope"} and "r" in age["real_holdout"]
    assert {"real", "generated", "curve_r"} <= set(age["morphometry"]["csf_fraction"])
    assert 0 <= sex["generated"]["accuracy"] <= 1 and sex["chance"] >= 0.5
    assert Path(metrics["covariates"]["figure"]).is_file()
    assert "covariate age: predicted from generated images" in out


def test_proof_predictor_recovers_age_on_real_images(tmp_path):
    from stylemri.audit.covariate_proof import fit_ridge, holdout_mask, pixel_features, predict_ridge

    data = write_atrophy_dataset(tmp_path, subjects=96, resolution=RES, seed=1)
    ds = load_dataset(DataConfig(source=str(data.folder), resolution=RES, labels=str(data.table),
                                 condition=("age",)))
    from stylemri.io import to_uint8

    x = pixel_features(to_uint8(ds.batch(np.arange(len(ds)))[0]))
    y = ds.covariates.values["age"]
    fit_half = holdout_mask(ds.subjects)
    pred = predict_ridge(fit_ridge(x[fit_half], y[fit_half]), x[~fit_half])
    assert np.corrcoef(pred, y[~fit_half])[0, 1] > 0.8  # the known answer is visible in 16 px pixels


# ---------------------------------------------------------------------------------------- bad input, resume
def test_train_bad_tables(atrophy, capsys, tmp_path):
    base = ["train", "--data", atrophy.folder, "--resolution", RES, "--kimg", "0.01", *TINY_FLAGS,
            "--outdir", tmp_path / "runs", "--quiet"]
    one_line_error(capsys, *base, "--labels", atrophy.table, "--condition", "age,bmi",
                   match="--condition bmi: no such column")
    nokey = tmp_path / "nokey.csv"
    nokey.write_text("patient,age\nsub-000,70\n")
    one_line_error(capsys, *base, "--labels", nokey, "--condition", "age", match="no 'subject' or 'file' column")
    text = atrophy.table.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text[:3] + [text[3].replace(text[3].split(",")[1], "old")] + text[4:]) + "\n")
    one_line_error(capsys, *base, "--labels", bad, "--condition", "age", match="bad.csv:4: age 'old' is not a number")
    empty = tmp_path / "empty.csv"
    empty.write_text("subject,age\n" + "".join(f"{s},\n" for s in atrophy.subjects))
    one_line_error(capsys, *base, "--labels", empty, "--condition", "age", match="lacks a value of age")
    strangers = tmp_path / "strangers.csv"
    strangers.write_text("subject,age\nsub-900,70\nsub-901,80\n")
    one_line_error(capsys, *base, "--labels", strangers, "--condition", "age", match="lacks a value of age")
    one_line_error(capsys, *base, "--condition", "age", match="expected --labels FILE.csv")
    one_line_error(capsys, *base, "--labels", atrophy.table, "--condition", "age", "--missing", "guess",
                   match="--missing guess: expected drop or indicator")
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_a_changed_condition(atrophy, capsys, tmp_path):
    out = tmp_path / "runs"
    run, _ = _train(capsys, atrophy.folder, atrophy.table, out, "--condition", "age", kimg="0.02")
    one_line_error(capsys, "train", "--resume", run, "--labels", atrophy.table, "--condition", "age,sex",
                   match="data.condition is ('age',) in the run, ('age', 'sex') requested")
    one_line_error(capsys, "train", "--resume", run, "--labels", atrophy.table, "--condition", "age", "--missing",
                   "indicator", match="data.missing is 'drop' in the run, 'indicator' requested")
    rc, _, err = run_cli(capsys, "train", "--resume", run, "--kimg", "0.04", "--quiet")
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["covariates"]["columns"][0]["name"] == "age"


@pytest.mark.parametrize("argv", [
    ["mix", "--rows", "0", "--cols", "1"],
    ["interpolate", "--seeds", "0,1", "--set", "sex=F"],
])
def test_commands_without_covariate_support_refuse_in_one_line(run, capsys, tmp_path, argv):
    one_line_error(capsys, argv[0], run, *argv[1:], "--outdir", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    if argv[0] == "mix":
        line = one_line_error(capsys, *argv[:1], run, *argv[1:], "--outdir", tmp_path / "out")
        assert "conditioned on covariates (age, sex)" in line


def test_classes_beside_covariates_and_the_indicator_mode(atrophy, capsys, tmp_path):
    rows = atrophy.table.read_text().splitlines()
    table = tmp_path / "clinical.csv"  # a diagnosis column for the classes, and one subject without age
    table.write_text("\n".join([rows[0] + ",group"] + [r + (",AD" if i % 2 else ",NC") for i, r in enumerate(rows[1:])])
                     .replace(rows[1], rows[1].split(",")[0] + ",NA," + ",".join(rows[1].split(",")[2:])) + "\n")
    run, err = _train(capsys, atrophy.folder, table, tmp_path / "runs", "--label-column", "group", "--conditional",
                      "--condition", "age", "--missing", "indicator")
    assert "1 of 16 image(s) lack a covariate value" in err and "kept with the missing indicator on" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["class_names"] == ["AD", "NC"] and cfg["network"]["c_dim"] == 2 and cfg["network"]["cov_dim"] == 2
    model = stylemri.load(run, device="cpu")
    unknown = model.generate([0], class_name="AD", covariates={})  # indicator mode: an omitted value is "missing"
    known = model.generate([0], class_name="AD", covariates={"age": model.covariates.columns[0].low})
    assert unknown.shape == known.shape == (1, 1, RES, RES) and not torch.equal(unknown, known)
    rc, out, err = run_cli(capsys, "generate", run, "--class", "NC", "--set", "age=NA", "--seeds", "0",
                           "--outdir", tmp_path / "out")
    assert rc == 0, err and "classes AD, NC, covariates age" in out
