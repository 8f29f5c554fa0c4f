"""`stylemri explore`'s HTTP API through an HTTP client (FastAPI's TestClient on the real app): every
endpoint against the library it wraps (same pixels as `stylemri generate`, nearest image against a brute
force search), every bad request (4xx with one JSON line), concurrency, and the command's life cycle."""

from __future__ import annotations

import io as _io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemri import cli
from stylemri import write_generated as gen
from stylemri import io
from stylemri.explore import ModelService, create_app, load_training
from conftest import brain_volume, write_nifti

RES = 16


def make_discs(root: Path) -> Path:
    """AD (bright large disc) and NC (dim small disc) slices, 4 patients per class, ADNI-style names
    `<patient>_<slice>.png` so every image has a patient ID."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:32, 0:32]
    for cls, radius, level, first in (("AD", 12, 210, 100), ("NC", 6, 80, 200)):
        (root / cls).mkdir(parents=True)
        for i in range(16):
            cx, cy = 16 + rng.randint(-2, 3), 16 + rng.randint(-2, 3)
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2 <= (radius + rng.rand() * 2) ** 2) * level
            img = np.clip(disc + rng.rand(32, 32) * 20, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{first + i // 4}_{i % 4}.png")
    return root


def train_tiny(data: Path, out: Path, cache: Path, *extra: str) -> Path:
    before = set(out.glob("*")) if out.exists() else set()
    rc = cli.main(["train", "--data", str(data), "--out", str(out), "--resolution", str(RES), "--kimg", "0.05",
                   "--batch", "8", "--z-dim", "16", "--w-dim", "16", "--channel-base", "128", "--channel-max", "16",
                   "--device", "cpu", "--quiet", "--cache-dir", str(cache), *extra])
    assert rc == 0
    (run,) = set(out.glob("*")) - before
    return run


def make_client(app, **kw):
    with warnings.catch_warnings():  # starlette prefers the httpx2 fork; httpx works the same
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app, **kw)


def trained(root: Path, unconditional: bool = False) -> dict[str, Path]:
    """Disc data and a tiny conditional run (and an unconditional one on AD), trained on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {"root": root, "data": make_discs(root / "data"), "cache": root / "cache"}
        out["cond"] = train_tiny(out["data"], root / "runs", out["cache"], "--conditional", "--lr", "0.005")
        if unconditional:
            out["uncond"] = train_tiny(out["data"], root / "runs", out["cache"], "--classes", "AD", "--seed", "1")
    finally:
        torch.set_num_threads(n)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    found: dict = trained(tmp_path_factory.mktemp("explore"), unconditional=True)
    service = ModelService.open(found["cond"], device="cpu")
    neighbours = load_training(str(found["data"]), service.model.config, service.resolution, str(found["cache"]))
    found.update(service=service, neighbours=neighbours,
                 client=make_client(create_app(service, neighbours, max_upload_bytes=200_000)))
    return found


@pytest.fixture(scope="module")
def client(setup):
    return setup["client"]


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(_io.BytesIO(response.content)))


def is_error(response, status: int, match: str) -> str:
    """A 4xx (or the given status) whose body is exactly {"error": "<one line>"} containing `match`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert match in body["error"], body["error"]
    return body["error"]


# ------------------------------------------------------------------------------------------------- model


def test_model_info(setup, client):
    info = client.get("/api/model").json()
    svc = setup["service"]
    assert info["classes"] == ["AD", "NC"]
    assert info["resolution"] == RES and info["num_ws"] == svc.G.num_ws
    assert info["kimg"] == pytest.approx(svc.model.kimg) and info["kimg"] > 0
    assert Path(info["checkpoint"]) == svc.model.checkpoint and Path(info["checkpoint"]).is_file()
    assert set(info["views"]) == {"generate", "walk", "interpolate", "mix", "projection"}
    assert info["data"]["images"] == 32 and info["data"]["subjects"] == 8
    assert info["data"]["baseline_excludes_same_subject"] is True
    assert info["max_upload_bytes"] == 200_000


# ----------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("seed,cls,trunc", [(3, "AD", 0.7), (4_000_000_000, "NC", 1.0)])
def test_generate_is_stylemri_generate(setup, client, tmp_path, seed, cls, trunc):
    """Exactly the pixels (and, for the downloads, the bytes) `stylemri generate` writes."""
    for fmt in ("png", "png16", "nifti"):
        out = tmp_path / fmt
        assert cli.main(["generate", str(setup["cond"]), "--seeds", str(seed), "--class", cls, "--trunc", str(trunc),
                         "--format", fmt, "--outdir", str(out)]) == 0
        (folder,) = out.iterdir()
        r = client.get(f"/api/generate?seed={seed}&class={cls}&trunc={trunc}&format={fmt}")
        assert r.status_code == 200
        if fmt == "png":
            assert np.array_equal(png(r), np.asarray(Image.open(folder / f"seed{seed:04d}_{cls}.png")))
        elif fmt == "png16":
            assert r.content == (folder / f"seed{seed:04d}_{cls}.png").read_bytes()
            assert png(r).dtype == np.uint16
        else:
            assert r.headers["content-type"] == "application/gzip"
            assert r.content == (folder / "volume.nii.gz").read_bytes()
    assert "filename=" in r.headers["content-disposition"]


def test_generate_seed_and_class_matter(client):
    a = png(client.get("/api/generate?seed=1&class=AD"))
    assert not np.array_equal(a, png(client.get("/api/generate?seed=2&class=AD")))
    assert not np.array_equal(a, png(client.get("/api/generate?seed=1&class=NC")))
    assert not np.array_equal(a, png(client.get("/api/generate?seed=1&class=AD&trunc=0.2")))
    assert np.array_equal(a, png(client.get("/api/generate?seed=1&class=0")))  # a class by index


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the last uint8 level (a different batch may change the last float bit)."""
    return int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_walk_class_direction_and_difference_map(client):
    start = png(client.get("/api/generate?seed=5&class=NC&trunc=0.8"))
    t0 = png(client.get("/api/walk?seed=5&from=NC&to=AD&t=0&trunc=0.8"))
    t1 = png(client.get("/api/walk?seed=5&from=NC&to=AD&t=1&trunc=0.8"))
    assert close(t0, start) and not close(t1, t0)
    flat = png(client.get("/api/walk?seed=5&from=NC&to=AD&t=0&diff=1"))
    assert flat.ndim == 3 and flat.shape[2] == 3 and len(np.unique(flat.reshape(-1, 3), axis=0)) == 1  # no change
    moved = png(client.get("/api/walk?seed=5&from=NC&to=AD&t=1&diff=1"))
    assert len(np.unique(moved.reshape(-1, 3), axis=0)) > 1
    # without a seed: class means; t = 1 reaches the other class's mean exactly
    assert close(png(client.get("/api/walk?from=NC&to=AD&t=1")), png(client.get("/api/walk?from=AD&to=NC&t=0")))


def test_interpolate_ends_are_the_seeds(client):
    a = png(client.get("/api/generate?seed=1&class=AD"))
    b = png(client.get("/api/generate?seed=9&class=NC"))
    assert close(png(client.get("/api/interpolate?seed=1&class=AD&seed2=9&class2=NC&t=0")), a)
    assert close(png(client.get("/api/interpolate?seed=1&class=AD&seed2=9&class2=NC&t=1")), b)
    mid = png(client.get("/api/interpolate?seed=1&class=AD&seed2=9&class2=NC&t=0.5"))
    assert not close(mid, a) and not close(mid, b)
    z_end = png(client.get("/api/interpolate?seed=1&class=AD&seed2=9&t=1&space=z"))
    assert close(z_end, png(client.get("/api/generate?seed=9&class=AD")))


def test_mix_takes_the_chosen_layers(setup, client):
    num_ws = setup["service"].num_ws
    a = png(client.get("/api/generate?seed=1&class=AD"))
    b = png(client.get("/api/generate?seed=2&class=AD"))
    assert close(png(client.get(f"/api/mix?seed=1&seed2=2&class=AD&styles=0-{num_ws - 1}")), b)
    coarse = png(client.get("/api/mix?seed=1&seed2=2&class=AD&styles=coarse"))
    assert not close(coarse, a) and not close(coarse, b)
    assert not close(coarse, png(client.get("/api/mix?seed=1&seed2=2&class=AD&styles=fine")))


# ----------------------------------------------------------------------------------------------- nearest


def brute_force_nearest(image: np.ndarray, train: np.ndarray) -> tuple[int, float]:
    """(index, RMS on [0, 1]) of the nearest training image, mirrored ones included."""
    q = image.astype(np.float64).reshape(-1) / 255
    best = (-1, np.inf)
    for i, t in enumerate(train):
        for v in (t, t[..., ::-1]):
            d = float(np.sqrt(np.mean((q - v.astype(np.float64).reshape(-1) / 255) ** 2)))
            if d < best[1]:
                best = (i, d)
    return best


def test_nearest_is_the_nearest_training_image(setup, client):
    source = setup["neighbours"].source
    train = source.all()
    for url in ("view=generate&seed=3&class=AD", "view=walk&seed=3&from=AD&to=NC&t=1",
                "view=mix&seed=1&seed2=2&class=NC&styles=fine"):
        nn = client.get(f"/api/nearest?{url}").json()
        image = png(client.get("/api/" + url.replace("view=", "").replace("&", "?", 1)))
        index, distance = brute_force_nearest(image[None], train)
        assert nn["distance"] == pytest.approx(distance, abs=1e-6)
        assert np.isclose(brute_force_nearest(image[None], train[nn["index"]:nn["index"] + 1])[1], distance)
        assert nn["subject"] == str(source.subjects[nn["index"]]) and re.fullmatch(r"[12]\d\d", nn["subject"])
        tile = png(client.get(nn["image"]))
        expect = train[nn["index"], 0][:, ::-1] if nn["flipped"] else train[nn["index"], 0]
        assert np.array_equal(tile, expect)
        assert nn["closer_than_real"] == (nn["distance"] < nn["threshold"])


def test_real_to_real_scale_excludes_the_same_patient(setup, client):
    source = setup["neighbours"].source
    train, subjects = source.all().astype(np.float64) / 255, np.asarray(source.subjects).astype(str)
    best = []
    for i in range(len(train)):
        ds = [np.sqrt(np.mean((train[i] - v) ** 2)) for j in range(len(train)) if subjects[j] != subjects[i]
              for v in (train[j], train[j][..., ::-1])]
        best.append(min(ds))
    info = client.get("/api/model").json()["data"]
    assert info["real_nn_median"] == pytest.approx(float(np.median(best)), abs=1e-4)


def test_training_image_endpoint(setup, client):
    train = setup["neighbours"].source.all()
    assert np.array_equal(png(client.get("/api/training?index=7")), train[7, 0])
    assert np.array_equal(png(client.get("/api/training?index=7&flip=1")), train[7, 0][:, ::-1])


# -------------------------------------------------------------------------------------------- projection


def upload(client, name: str, data: bytes, **fields):
    return client.post("/api/project", files={"file": (name, data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()})


def test_project_png_then_edit(setup, client):
    path = setup["data"] / "AD" / "100_1.png"
    r = upload(client, "scan.png", path.read_bytes(), steps=30, **{"class": "AD"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["final_loss"] < res["initial_loss"] and res["steps"] == 30 and res["class"] == "AD"
    target = png(client.get(res["target"]))
    expect = io.to_uint8(setup["service"].load_target(path, None, None))[0]
    assert np.array_equal(target, expect)
    recon = png(client.get(res["reconstruction"]))
    assert np.abs(recon.astype(float) - target).mean() < np.abs(128.0 - target).mean()  # closer than grey
    assert close(png(client.get(f"/api/projection?id={res['id']}&from=AD&to=NC&t=0")), recon)
    edited = png(client.get(f"/api/projection?id={res['id']}&from=AD&to=NC&t=1.5"))
    assert not close(edited, recon)
    assert len(np.unique(png(client.get(f"/api/projection?id={res['id']}&from=AD&to=NC&t=1.5&diff=1"))
                         .reshape(-1, 3), axis=0)) > 1
    # rendering a projection must not leave its noise maps in the shared generator
    assert np.array_equal(png(client.get("/api/generate?seed=3&class=AD")),
                          io.to_uint8(setup["service"].generate(3, 0, 1.0))[0])
    nn = client.get(f"/api/nearest?view=projection&id={res['id']}").json()
    assert nn["index"] >= 0


def test_project_nifti_slice_and_jpeg(setup, client, tmp_path):
    vol = tmp_path / "brain.nii.gz"
    write_nifti(vol, brain_volume((12, 14, 10)))
    r = upload(client, "brain.nii.gz", vol.read_bytes(), steps=3, slice=4, axis="axial")
    assert r.status_code == 200, r.text
    expect = io.to_uint8(setup["service"].load_target(vol, 4, "axial"))[0]
    assert np.array_equal(png(client.get(r.json()["target"])), expect)
    is_error(upload(client, "brain.nii.gz", vol.read_bytes(), steps=3, slice=99), 400, "expected 0-9")
    is_error(upload(client, "brain.nii.gz", vol.read_bytes(), steps=3, slice="mid"), 400, "slice 'mid': not an integer")
    is_error(upload(client, "brain.nii.gz", vol.read_bytes(), steps=3, axis="oblique"), 400, "axis 'oblique'")
    buf = _io.BytesIO()
    Image.fromarray(np.full((20, 24, 3), 120, np.uint8)).save(buf, format="JPEG")
    assert upload(client, "photo.JPG", buf.getvalue(), steps=2).status_code == 200


# -------------------------------------------------------------------------------------------- bad input

BAD_GETS = [
    ("/api/generate?seed=abc&class=AD", 400, "seed 'abc': not an integer"),
    ("/api/generate?seed=-1&class=AD", 400, "seed -1: out of range"),
    ("/api/generate?seed=4294967296&class=AD", 400, "out of range"),
    ("/api/generate?seed=1.5&class=AD", 400, "not an integer"),
    ("/api/generate?class=AD", 400, "seed: missing"),
    ("/api/generate?seed=1&class=XX", 400, "class 'XX': unknown class; this model's classes are AD, NC"),
    ("/api/generate?seed=1&class=7", 400, "unknown class"),
    ("/api/generate?seed=1", 400, "class: missing"),
    ("/api/generate?seed=1&class=AD&trunc=abc", 400, "trunc 'abc': not a number"),
    ("/api/generate?seed=1&class=AD&trunc=nan", 400, "trunc nan: out of range"),
    ("/api/generate?seed=1&class=AD&trunc=9", 400, "out of range"),
    ("/api/generate?seed=1&class=AD&format=jpeg", 400, "format 'jpeg': expected one of png, png16, nifti"),
    ("/api/generate?seed=1&class=AD&diff=1", 400, "no starting image"),
    ("/api/generate?seed=1&class=AD&colour=red", 400, "parameter 'colour': unknown"),
    ("/api/walk?seed=1&from=AD&to=AD", 400, "two different classes"),
    ("/api/walk?seed=1&from=AD&to=XX", 400, "to 'XX': unknown class"),
    ("/api/walk?seed=1&from=AD&to=NC&t=inf", 400, "t inf: out of range"),
    ("/api/walk?seed=1&from=AD&to=NC&diff=1&format=nifti", 400, "drop format=nifti"),
    ("/api/interpolate?seed=1&class=AD&seed2=2&t=1.5", 400, "t 1.5: out of range"),
    ("/api/interpolate?seed=1&class=AD&seed2=2&class2=NC&space=z", 400, "use space w between classes"),
    ("/api/interpolate?seed=1&class=AD&seed2=2&space=q", 400, "space 'q': expected one of w, z"),
    ("/api/mix?seed=1&class=AD&styles=coarse", 400, "seed2: missing"),
    ("/api/mix?seed=1&seed2=2&class=AD&styles=99", 400, "layers must lie in"),
    ("/api/projection?id=zz", 400, "16-hex-digit id"),
    ("/api/projection?id=0123456789abcdef", 404, "unknown projection"),
    ("/api/nearest?view=nope&seed=1", 400, "view 'nope': expected one of"),
    ("/api/nearest?view=generate&seed=1&class=AD&bad=1", 400, "parameter 'bad'"),
    ("/api/training?index=-1", 400, "expected a training image index"),
    ("/api/training?index=32", 404, "out of range; the training set has 32 images"),
    ("/api/training?index=x", 400, "expected a training image index"),
    ("/api/generate?seed=1&class=AD&set=age=70", 400, "set: this model was trained without covariates"),
    ("/api/nothing", 404, "Not Found"),
    ("/static/../pyproject.toml", 404, "Not Found"),
    ("/static/..%2f..%2fpyproject.toml", 404, "no such file"),
    ("/static/%2e%2e/app.py", 404, "no such file"),
    ("/static/%2Fetc%2Fpasswd", 404, "no such file"),
    ("/static/", 404, "no such file"),
    ("/static/service.py", 404, "no such file"),
]


@pytest.mark.parametrize("url,status,match", BAD_GETS)
def test_bad_requests_are_one_json_line(client, url, status, match):
    is_error(client.get(url), status, match)


def test_bad_uploads(setup, client):
    good = (setup["data"] / "AD" / "100_1.png").read_bytes()
    is_error(upload(client, "notes.txt", b"hello"), 415, "file 'notes.txt': not an image")
    is_error(upload(client, "fake.png", b"this is not a png at all"), 415, "fake.png: not an image")
    is_error(upload(client, "fake.nii.gz", b"garbage"), 415, "fake.nii.gz: not a readable NIfTI")
    is_error(upload(client, "big.png", b"\0" * 300_000), 413, "too large; the limit is 200,000 bytes")
    is_error(upload(client, "scan.png", good, steps=0), 400, "steps 0: out of range")
    is_error(upload(client, "scan.png", good, steps="many"), 400, "steps 'many': not an integer")
    is_error(upload(client, "scan.png", good, steps="2.5"), 400, "steps '2.5': not an integer")
    is_error(upload(client, "scan.png", good, steps=3, slice=2), 400, "slice: only for NIfTI volumes")
    is_error(upload(client, "scan.png", good, steps=3, **{"class": "XX"}), 400, "class 'XX': unknown class")
    is_error(upload(client, "scan.png", good, steps=3, color="red"), 400, "parameter 'color'")
    is_error(upload(client, "../../etc/passwd.png", b"x"), 415, "passwd.png")
    is_error(client.post("/api/project", files={"steps": (None, "3")}), 400, "file: missing")
    is_error(client.post("/api/project", data={"steps": "3"}), 415, "multipart/form-data")
    is_error(client.post("/api/project", content=b"{}", headers={"content-type": "application/json"}), 415,
             "multipart/form-data")
    is_error(client.get("/api/project"), 405, "Method Not Allowed")
    is_error(client.post("/api/model"), 405, "Method Not Allowed")


def test_unexpected_failure_is_a_json_500_without_traceback(setup, monkeypatch):
    app = create_app(setup["service"])
    monkeypatch.setattr(setup["service"], "generate", lambda *a: (_ for _ in ()).throw(RuntimeError("boom\nline 2")))
    r = make_client(app, raise_server_exceptions=False).get("/api/generate?seed=1&class=AD")
    is_error(r, 500, "internal error (RuntimeError)")
    assert "boom" not in r.text


def test_without_data_nearest_is_refused(setup):
    client = make_client(create_app(setup["service"]))
    assert client.get("/api/model").json()["data"] is None
    is_error(client.get("/api/nearest?view=generate&seed=1&class=AD"), 409, "started without --data")
    is_error(client.get("/api/training?index=0"), 409, "started without --data")


def test_unconditional_model(setup):
    client = make_client(create_app(ModelService.open(setup["uncond"], device="cpu")))
    assert client.get("/api/model").json()["classes"] == []
    assert png(client.get("/api/generate?seed=1")).shape == (RES, RES)
    is_error(client.get("/api/generate?seed=1&class=AD"), 400, "this model is unconditional")
    is_error(client.get("/api/walk?seed=1"), 400, "class directions need a conditional model")
    assert png(client.get("/api/interpolate?seed=1&seed2=2&t=0.5&space=z")).shape == (RES, RES)
    assert png(client.get("/api/mix?seed=1&seed2=2&styles=middle")).shape == (RES, RES)


# ------------------------------------------------------------------------------------- covariate sliders


@pytest.fixture(scope="module")
def cov(tmp_path_factory):
    """A tiny --condition age,sex run on the known-answer atrophy slices (tests/test_covariates.py's data)."""
    from stylemri.data.atrophy import write_atrophy_dataset

    root = tmp_path_factory.mktemp("explore-cov")
    data = write_atrophy_dataset(root / "atrophy", subjects=16, resolution=RES, seed=0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train_tiny(data.folder, root / "runs", root / "cache", "--labels", str(data.table),
                         "--condition", "age,sex")
    finally:
        torch.set_num_threads(n)
    service = ModelService.open(run, device="cpu")
    neighbours = load_training(str(data.folder), service.model.config, service.resolution, str(root / "cache"))
    return {"run": run, "data": data, "service": service, "client": make_client(create_app(service, neighbours))}


def test_covariate_sliders_are_listed_with_their_training_ranges(cov):
    info = cov["client"].get("/api/model").json()
    age, sex = cov["service"].model.covariates.columns
    assert info["covariates"] == {"missing_allowed": False, "columns": [
        {"name": "age", "kind": "continuous", "low": age.low, "high": age.high, "mean": age.mean},
        {"name": "sex", "kind": "categorical", "categories": ["F", "M"]}]}
    assert age.low == pytest.approx(cov["data"].age.min()) and age.high == pytest.approx(cov["data"].age.max())
    assert info["classes"] == [] and "set" in info["views"]["generate"]["params"]


def test_the_image_follows_the_covariates(cov, tmp_path):
    client, age = cov["client"], cov["service"].model.covariates.columns[0]
    young = png(client.get(f"/api/generate?seed=3&set=age={age.low!r},sex=F"))
    old = png(client.get(f"/api/generate?seed=3&set=age={age.high!r},sex=F"))
    male = png(client.get(f"/api/generate?seed=3&set=age={age.low!r},sex=M"))
    assert not np.array_equal(young, old) and not np.array_equal(young, male)
    assert np.array_equal(young, png(client.get(f"/api/generate?seed=3&set=AGE={age.low!r},sex=f")))
    # the same pixels as `stylemri generate --set`, which walks the same seed and noise
    assert cli.main(["generate", str(cov["run"]), "--seeds", "3", "--set", f"age={age.high!r},sex=F",
                     "--outdir", str(tmp_path)]) == 0
    (written,) = tmp_path.glob("kimg-*/set_*/seed0003*.png")
    assert np.array_equal(old, np.asarray(Image.open(written)))
    # interpolation and mixing take the same setting; their end points are the generated slices
    a = png(client.get(f"/api/generate?seed=1&set=age={age.high!r},sex=M"))
    assert close(png(client.get(f"/api/interpolate?seed=1&seed2=2&t=0&set=age={age.high!r},sex=M")), a)
    num_ws = cov["service"].num_ws
    b = png(client.get(f"/api/generate?seed=2&set=age={age.high!r},sex=M"))
    assert close(png(client.get(f"/api/mix?seed=1&seed2=2&styles=0-{num_ws - 1}&set=age={age.high!r},sex=M")), b)
    assert not close(png(client.get(f"/api/mix?seed=1&seed2=2&styles=0-{num_ws - 1}&set=age={age.low!r},sex=M")),
                     b)
    nn = client.get(f"/api/nearest?view=generate&seed=3&set=age={age.low!r},sex=F").json()
    assert nn["index"] >= 0 and nn["subject"]


def test_a_value_outside_the_training_range_is_refused_as_generate_set_refuses_it(cov, capsys, tmp_path):
    client, age = cov["client"], cov["service"].model.covariates.columns[0]
    line = is_error(client.get("/api/generate?seed=1&set=age=200,sex=F"), 400,
                    f"set age=200: outside the training range of age, {age.low:g} to {age.high:g}")
    capsys.readouterr()
    assert cli.main(["generate", str(cov["run"]), "--set", "age=200,sex=F", "--outdir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(line.removeprefix("set ")) and "--set age=200" in err  # one validator, one wording
    for url, status, match in [
        ("/api/generate?seed=1", 400, "set: this model is conditioned on age, sex; expected a value for each"),
        ("/api/generate?seed=1&set=age=70,sex=X", 400, "set sex=X: expected one of F, M"),
        ("/api/generate?seed=1&set=age=70", 400, "no value for sex"),
        ("/api/generate?seed=1&set=age=70,sex=F,bmi=3", 400, "not trained with bmi"),
        ("/api/generate?seed=1&set=age70", 400, "expected NAME=VALUE pairs"),
        ("/api/interpolate?seed=1&seed2=2&set=age=-5,sex=F", 400, "outside the training range of age"),
        ("/api/mix?seed=1&seed2=2&set=age=1000,sex=M", 400, "outside the training range of age"),
        ("/api/walk?seed=1&set=age=70,sex=F", 400, "parameter 'set': unknown"),
        ("/api/walk?seed=1", 400, "class directions are not available for a covariate model"),
    ]:
        is_error(client.get(url), status, match)
    good = (cov["data"].folder / "sub-000_axial.png").read_bytes()
    is_error(upload(client, "scan.png", good, steps=2), 409, "not available for a covariate model")


def test_command_serves_a_covariate_model(cov):
    proc, url = start_server(str(cov["run"]), "--port", "0", "--device", "cpu")
    try:
        with urllib.request.urlopen(url + "api/model", timeout=30) as r:
            assert [c["name"] for c in json.load(r)["covariates"]["columns"]] == ["age", "sex"]
    finally:
        rc, out, err = stop(proc)
    assert rc == 0 and "Traceback" not in err, (rc, out, err)


# ------------------------------------------------------------------------------------------- the page


def test_page_loads_nothing_from_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert refs and all(r.startswith("/static/") or r.startswith("data:") or r == "" for r in refs), refs
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", r.text), name


# ------------------------------------------------------------------------------------------ concurrency


def test_concurrent_requests_get_the_sequential_answers(setup, client):
    """Image requests from many threads, interleaved with projection renders that swap the generator's
    noise maps, each get exactly what they get alone."""
    pid = upload(client, "scan.png", (setup["data"] / "NC" / "200_0.png").read_bytes(), steps=2).json()["id"]
    urls = [f"/api/generate?seed={s}&class={'AD' if s % 2 else 'NC'}" for s in range(12)]
    urls += [f"/api/projection?id={pid}&from=NC&to=AD&t={t}" for t in (0, 0.5, 1, 1.5)]
    urls += [f"/api/walk?seed={s}&from=AD&to=NC&t=0.7" for s in range(4)]
    alone = {u: client.get(u).content for u in urls}
    results: dict[str, list[bytes]] = {u: [] for u in urls}
    errors: list[BaseException] = []

    def worker(order: list[str]) -> None:
        try:
            for u in order:
                results[u].append(client.get(u).content)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    rng = np.random.RandomState(0)
    threads = [threading.Thread(target=worker, args=([urls[i] for i in rng.permutation(len(urls))],))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for u in urls:
        assert len(results[u]) == 6 and all(r == alone[u] for r in results[u]), u


# ------------------------------------------------------------------------------------------- the command


def start_server(*argv: str) -> tuple[subprocess.Popen, str]:
    """`stylemri explore ...` in a subprocess; returns it and the URL it printed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "stylemri", "explore", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"serving on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError(f"no URL printed: {lines} {proc.stderr.read()}")


def stop(proc: subprocess.Popen) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_command_serves_until_ctrl_c(setup):
    proc, url = start_server(str(setup["cond"]), "--port", "0", "--device", "cpu")
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/model", timeout=30) as r:
            assert json.load(r)["classes"] == ["AD", "NC"]
        with urllib.request.urlopen(url + "api/generate?seed=3&class=AD", timeout=30) as r:
            assert r.headers["content-type"] == "image/png"
    finally:
        rc, out, err = stop(proc)
    assert rc == 0 and "stopped" in out and "Traceback" not in err, (rc, out, err)


def test_other_host_is_printed_with_a_warning(setup):
    proc, url = start_server(str(setup["cond"]), "--host", "0.0.0.0", "--port", "0", "--device", "cpu")
    rc, out, err = stop(proc)
    assert url.startswith("http://0.0.0.0:") and rc == 0
    assert "warning: --host 0.0.0.0" in err and "without authentication" in err


def fails(capsys, *argv: str, match: str) -> None:
    capsys.readouterr()
    rc = cli.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and match in err[0], (rc, err)


def test_command_bad_input_is_one_line(setup, capsys, tmp_path):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        fails(capsys, "explore", str(setup["cond"]), "--port", str(busy.getsockname()[1]), match="cannot listen there")
    finally:
        busy.close()
    fails(capsys, "explore", str(tmp_path / "missing"), "--port", "0", match="no such run directory")
    fails(capsys, "explore", str(setup["cond"]), "--port", "70000", match="--port 70000")
    fails(capsys, "explore", str(setup["cond"]), "--port", "0", "--checkpoint", "9.9", match="no checkpoint at 9.9")
    fails(capsys, "explore", str(setup["cond"]), "--port", "0", "--max-upload-mb", "0", match="--max-upload-mb 0")
    fails(capsys, "explore", str(setup["cond"]), "--port", "0", "--device", "cpu", "--data", str(tmp_path / "none"),
          match="none")
