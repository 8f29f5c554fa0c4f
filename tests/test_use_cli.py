"""Every `stylemri` command of issue 5 on tiny runs trained here with the real `stylemri train`:
a conditional AD/NC model whose classes are trivially separable (bright large disc vs dim small disc),
and one unconditional model per class. Files, shapes, value ranges, determinism, separation, projection,
and the bad-input cases (one line on stderr, exit 2)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_FLAGS, one_line_error, run_cli
import stylemri
from stylemri import cli
from stylemri import io
from stylemri.networks import sampling as smp

RES = 16
pytestmark = pytest.mark.usefixtures("one_thread")


def _make_data(root: Path) -> Path:
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:32, 0:32]
    for cls, radius, level in (("AD", 12, 210), ("NC", 6, 80)):
        (root / cls).mkdir(parents=True)
        for i in range(24):
            cx, cy = 16 + rng.randint(-2, 3), 16 + rng.randint(-2, 3)
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2 <= (radius + rng.rand() * 2) ** 2) * level
            img = np.clip(disc + rng.rand(32, 32) * 20, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{cls}_{i:02d}.png")
    return root


def _train(data: Path, out: Path, cache: Path, kimg: float, *extra: str) -> Path:
    before = set(out.glob("*")) if out.exists() else set()
    rc = cli.main(["train", "--data", str(data), "--out", str(out), "--resolution", str(RES), "--kimg", str(kimg),
                   "--batch", "8", *TINY_FLAGS, "--device", "cpu", "--quiet", "--cache-dir", str(cache), *extra])
    assert rc == 0
    (run,) = set(out.glob("*")) - before
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("use")
    data = _make_data(root / "data")
    out, cache = root / "runs", root / "cache"
    # long enough (~10 s) for the conditional model to have learned that AD is the bright class
    cond = _train(data, out, cache, 0.3, "--conditional", "--lr", "0.005", "--ema-kimg", "0.01")
    ad = _train(data, out, cache, 0.1, "--classes", "AD", "--seed", "1")
    nc = _train(data, out, cache, 0.1, "--classes", "NC", "--seed", "2")
    return {"cond": cond, "AD": ad, "NC": nc, "data": data, "root": root}


def _only(folder: Path) -> Path:
    (sub,) = [p for p in folder.iterdir() if p.is_dir()]
    return sub


# ------------------------------------------------------------------------------------------------ generate


def test_generate_files_exact_and_deterministic(runs, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "generate", runs["cond"], "--seeds", "0-2,7", "--outdir", tmp_path / "a")
    assert rc == 0
    folder = _only(tmp_path / "a")
    assert folder.name.startswith("kimg-") and str(folder) in out
    names = sorted(p.name for p in folder.glob("seed*.png"))
    assert names == sorted(f"seed{s:04d}_{c}.png" for s in (0, 1, 2, 7) for c in ("AD", "NC"))
    img = np.asarray(Image.open(folder / "seed0007_NC.png"))
    assert img.shape == (RES, RES) and img.dtype == np.uint8
    rows = list(csv.DictReader(open(folder / "index.csv")))
    assert len(rows) == 8 and {r["class"] for r in rows} == {"AD", "NC"}
    assert np.asarray(Image.open(folder / "grid.png")).shape == (2 * (RES + 2) + 2, 4 * (RES + 2) + 2)

    # exactly rint((x + 1) * 127.5) of the generator's output, clipped
    model = stylemri.load(runs["cond"])
    x = model.generate([7], class_name="NC")
    assert np.array_equal(io.to_uint8(x)[0, 0], img)
    rc, out, _ = run_cli(capsys, "generate", runs["AD"], "--seeds", "3", "--outdir", tmp_path / "one")
    png = np.asarray(Image.open(_only(tmp_path / "one") / "seed0003.png"))
    x = stylemri.load(runs["AD"]).generate([3]).numpy()
    assert rc == 0 and np.array_equal(png, np.clip(np.round((x[0, 0] + 1) * 127.5), 0, 255).astype(np.uint8))

    # same seed, same checkpoint, --noise const: byte-identical, whatever else is generated with it
    run_cli(capsys, "generate", runs["cond"], "--seeds", "7", "--class", "NC", "--outdir", tmp_path / "b")
    again = _only(tmp_path / "b") / "seed0007_NC.png"
    assert again.read_bytes() == (folder / "seed0007_NC.png").read_bytes()
    run_cli(capsys, "generate", runs["cond"], "--seeds", "0-2,7", "--outdir", tmp_path / "c", "--batch", "4")
    assert all(abs(np.asarray(Image.open(p)).astype(int) - np.asarray(Image.open(folder / p.name)).astype(int)).max() <= 1
               for p in _only(tmp_path / "c").glob("seed*.png"))


def test_generate_formats(runs, tmp_path, capsys):
    nib = pytest.importorskip("nibabel")
    args = [runs["cond"], "--seeds", "3,4", "--class", "AD", "--trunc", "0.7"]
    for fmt in ("png", "png16", "npy", "nifti"):
        assert run_cli(capsys, "generate", *args, "--format", fmt, "--outdir", tmp_path / fmt)[0] == 0
    p8 = np.asarray(Image.open(_only(tmp_path / "png") / "seed0003_AD.png")).astype(np.int64)
    p16 = np.asarray(Image.open(_only(tmp_path / "png16") / "seed0003_AD.png")).astype(np.int64)
    raw = np.load(_only(tmp_path / "npy") / "seed0003_AD.npy")
    assert raw.dtype == np.float32 and raw.shape == (1, RES, RES)
    assert np.array_equal(io.to_uint8(raw)[0], p8) and np.array_equal(io.to_uint16(raw)[0], p16)
    assert p16.max() > 255  # really 16-bit
    vol = np.asarray(nib.load(str(_only(tmp_path / "nifti") / "volume.nii.gz")).dataobj)
    assert vol.shape == (RES, RES, 2) and np.allclose(vol[:, ::-1, 0].T, raw[0], atol=1e-6)
    assert not list(_only(tmp_path / "nifti").glob("seed*"))  # one volume instead of per-image files


def test_generate_keeps_look_alike_class_names_apart(runs, tmp_path, capsys):
    """Issue 12.5: classes ÄD and ÖD once both became seed0000__D.png ("wrote 4 images", 2 files)."""
    data = tmp_path / "data"
    for cls, src in (("ÄD", "AD"), ("ÖD", "NC")):
        shutil.copytree(runs["data"] / src, data / cls)
    run = _train(data, tmp_path / "runs", runs["root"] / "cache", 0.008, "--conditional", "--tick-kimg", "0.008")
    rc, out, _ = run_cli(capsys, "generate", run, "--seeds", "0,1", "--outdir", tmp_path / "g")
    assert rc == 0 and "wrote 4 png images" in out
    folder = _only(tmp_path / "g")
    assert sorted(p.name for p in folder.glob("seed*.png")) == sorted(
        f"seed000{s}_{c}.png" for s in (0, 1) for c in ("ÄD", "ÖD"))
    rows = list(csv.DictReader(open(folder / "index.csv", encoding="utf-8")))
    assert len({r["file"] for r in rows}) == 4 and {r["class"] for r in rows} == {"ÄD", "ÖD"}


def test_checkpoint_selection(runs, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "generate", runs["cond"], "--seeds", "5", "--class", "AD", "--checkpoint", "0",
                         "--outdir", tmp_path)
    assert rc == 0 and (tmp_path / "kimg-0" / "seed0005_AD.png").is_file()
    run_cli(capsys, "generate", runs["cond"], "--seeds", "5", "--class", "AD", "--outdir", tmp_path)
    latest = [p for p in tmp_path.iterdir() if p.name != "kimg-0"]
    assert len(latest) == 1  # outputs of the two checkpoints are kept apart
    assert (latest[0] / "seed0005_AD.png").read_bytes() != (tmp_path / "kimg-0" / "seed0005_AD.png").read_bytes()
    one_line_error(capsys, "generate", runs["cond"], "--num", "1", "--checkpoint", "77", "--outdir", tmp_path, match="available: 0, ")
    one_line_error(capsys, "generate", runs["cond"], "--num", "1", "--checkpoint", "best", "--outdir", tmp_path, match="best")


# ------------------------------------------------------------------------------------------- mix, interpolate


def test_mix(runs, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "mix", runs["cond"], "--rows", "0-2", "--cols", "10-13", "--layers", "0-1",
                         "--outdir", tmp_path)
    assert rc == 0 and "layers 0, 1 of 6" in out
    (path,) = tmp_path.glob("kimg-*/mix/*.png")
    assert np.asarray(Image.open(path)).shape == (4 * (RES + 2) + 2, 5 * (RES + 2) + 2)
    assert run_cli(capsys, "mix", runs["AD"], "--rows", "0", "--cols", "1", "--layers", "fine", "--outdir", tmp_path)[0] == 0
    one_line_error(capsys, "mix", runs["cond"], "--rows", "0", "--cols", "1", "--layers", "9", "--outdir", tmp_path, match="--layers 9")


def test_interpolate(runs, tmp_path, capsys):
    for space in ("w", "z"):
        rc, out, _ = run_cli(capsys, "interpolate", runs["cond"], "--seeds", "1,2,3", "--space", space, "--frames", "4",
                             "--outdir", tmp_path)
        assert rc == 0 and "7 frames" in out
    gifs = sorted(tmp_path.glob("kimg-*/interpolate/*.gif"))
    assert len(gifs) == 2
    with Image.open(gifs[0]) as im:
        assert im.is_animated and im.size == (RES, RES)
    rc, out, _ = run_cli(capsys, "interpolate", runs["cond"], "--classes", "NC,AD", "--seeds", "4", "--frames", "5",
                         "--w-samples", "64", "--zoom", "2", "--outdir", tmp_path)
    assert rc == 0 and "NC -> AD" in out
    (strip,) = tmp_path.glob("kimg-*/interpolate/walk_NC_to_AD.png")
    assert np.asarray(Image.open(strip)).shape == (2 * (2 * RES + 2) + 2, 5 * (2 * RES + 2) + 2)
    one_line_error(capsys, "interpolate", runs["AD"], "--classes", "NC,AD", "--outdir", tmp_path, match="unconditional")
    one_line_error(capsys, "interpolate", runs["cond"], "--seeds", "3", "--outdir", tmp_path, match="at least two seeds")


# ------------------------------------------------------------------------------------------ project, edit


def test_project_then_edit(runs, tmp_path, capsys):
    target = runs["data"] / "AD" / "AD_03.png"
    rc, out, _ = run_cli(capsys, "project", runs["cond"], target, "--steps", "60", "--w-samples", "500",
                         "--outdir", tmp_path)
    assert rc == 0 and "pixel MSE" in out and "MS-SSIM" in out
    (folder,) = tmp_path.glob("kimg-*/project/AD_03_w")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["final_image_loss"] < 0.7 * summary["initial_image_loss"]
    ws = np.load(folder / "projected_w.npy")
    assert ws.shape == (6, 16) and np.allclose(ws, ws[:1])
    rows = list(csv.DictReader(open(folder / "loss.csv")))
    assert len(rows) == 60 and float(rows[-1]["image_loss"]) < float(rows[0]["image_loss"])
    for name in ("target.png", "projected.png", "side_by_side.png", "loss.png", "projected_noise.npz"):
        assert (folder / name).is_file()
    assert np.asarray(Image.open(folder / "side_by_side.png")).shape == (RES + 4, 2 * RES + 6)
    # the target is read exactly as the training data was
    from stylemri.data import load_dataset
    ds = load_dataset(stylemri.load(runs["cond"]).config.data)
    (k,) = [i for i in range(len(ds)) if ds.source_of(i).endswith("AD_03.png")]
    assert np.array_equal(np.asarray(Image.open(folder / "target.png")), ds.batch_uint8([k])[0][0, 0].numpy())

    rc, out, _ = run_cli(capsys, "edit", runs["cond"], "--latent", folder / "projected_w.npy", "--direction", "AD-NC",
                         "--multiples", "-1..1", "--w-samples", "128", "--outdir", tmp_path)
    assert rc == 0 and "projected_noise.npz" in out
    (edits,) = tmp_path.glob("kimg-*/edit/projected_w_AD-NC")
    steps = sorted(edits.glob("step_*.png"))
    assert [p.name for p in steps] == ["step_+0.00.png", "step_+1.00.png", "step_-1.00.png"]
    zero = np.asarray(Image.open(edits / "step_+0.00.png")).astype(int)
    assert np.abs(zero - np.asarray(Image.open(folder / "projected.png")).astype(int)).max() <= 1  # step 0 = the scan
    assert np.load(edits / "edited_ws.npy").shape == (3, 6, 16)

    # step 1 from the NC class mean along AD-NC lands exactly on the AD class mean
    G = stylemri.load(runs["cond"]).G
    means = smp.class_mean_ws(G, num_samples=128, seed=0)
    np.save(tmp_path / "nc_mean.npy", means[1].numpy())
    rc, out, _ = run_cli(capsys, "edit", runs["cond"], "--latent", tmp_path / "nc_mean.npy", "--direction", "AD-NC",
                         "--multiples", "0,1", "--w-samples", "128", "--outdir", tmp_path)
    assert rc == 0 and "stored constant noise" in out
    (walk,) = tmp_path.glob("kimg-*/edit/nc_mean_AD-NC")
    for step, k in (("+0.00", 1), ("+1.00", 0)):
        expect = io.to_uint8(smp.synthesize(G, means[k].repeat(G.num_ws, 1)[None]))[0, 0].astype(int)
        assert np.abs(np.asarray(Image.open(walk / f"step_{step}.png")).astype(int) - expect).max() <= 1

    one_line_error(capsys, "edit", runs["AD"], "--latent", folder / "projected_w.npy", "--direction", "AD-NC",
          "--outdir", tmp_path, match="unconditional")
    one_line_error(capsys, "edit", runs["cond"], "--latent", folder / "projected_w.npy", "--direction", "AD-MCI",
          "--outdir", tmp_path, match="MCI")


def test_projection_recovers_own_w(runs):
    """A generated image's own w is found again: far closer than the start (the mean w). Pixel loss alone
    here: for targets the generator can produce exactly it identifies w best (see docs/use.md)."""
    from stylemri.analysis import project

    G = stylemri.load(runs["cond"]).G
    ratios = []
    for seed in (11, 12, 13):
        ws = smp.map_latents(G, smp.seed_latents([seed], G.z_dim), smp.one_hot([seed % 2], 2), psi=0.5)
        target = smp.synthesize(G, ws)[0]
        res = project.project(G, target, steps=150, w_avg_samples=1000, ssim_weight=0.0, seed=seed)
        start = smp.map_latents(G, torch.randn(1000, G.z_dim, generator=torch.Generator().manual_seed(0)),
                                smp.one_hot([0, 1] * 500, 2))[:, 0].mean(0)
        ratios.append(np.linalg.norm(res.ws[0] - ws[0, 0].numpy()) / float((start - ws[0, 0]).norm()))
        assert res.final_loss < 0.05 * res.initial_loss
    assert np.median(ratios) < 0.35, ratios


# ------------------------------------------------------------------------------------------------- embed


def test_embed_detects_class_separation(runs, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "embed", runs["cond"], "--num", "200", "--method", "tsne", "--data", runs["data"],
                         "--outdir", tmp_path)
    assert rc == 0 and "cosine of class means" in out
    (folder,) = tmp_path.glob("kimg-*/embed")
    s = json.loads((folder / "summary.json").read_text())
    w, d = s["style_codes"], s["dfeat"]
    # style codes: the classes' mean w differ more than two halves of one class do, and a linear classifier
    # tells the classes apart from w alone (the clusters overlap: silhouette is only positive)
    assert w["cosine_of_class_means"]["AD"]["NC"] < min(w["split_half_cosine"].values()) - 0.01
    assert w["linear_accuracy_cv"] > 0.8 and w["silhouette_full_space"] > 0
    # real images through D: trivially separable classes form separate clusters
    assert d["silhouette_full_space"] > 0.5 and d["silhouette_tsne_2d"] > 0.5 and d["linear_accuracy_cv"] > 0.95
    emb = np.load(folder / "w_tsne_3d.npy")
    assert emb.shape == (400, 3)
    rows = list(csv.DictReader(open(folder / "w_tsne_2d.csv")))
    assert len(rows) == 400 and {r["class"] for r in rows} == {"AD", "NC"}
    for name in ("w_tsne_2d.png", "w_tsne_3d.png", "w_cosine.png", "dfeat_tsne_2d.png", "dfeat_cosine.png"):
        assert Image.open(folder / name).size[0] > 300


def test_embed_two_per_class_runs(runs, tmp_path, capsys, monkeypatch):
    rc, out, _ = run_cli(capsys, "embed", runs["AD"], runs["NC"], "--num", "30", "--method", "pca", "--dims", "2",
                         "--outdir", tmp_path)
    assert rc == 0
    (folder,) = tmp_path.glob("kimg-*/embed_vs_*")
    s = json.loads((folder / "summary.json").read_text())["style_codes"]
    assert set(s["samples_per_class"]) == {runs["AD"].name, runs["NC"].name}
    assert np.load(folder / "w_pca_2d.npy").shape == (60, 2)
    monkeypatch.setitem(__import__("sys").modules, "umap", None)
    one_line_error(capsys, "embed", runs["cond"], "--num", "10", "--method", "umap", "--outdir", tmp_path, match="umap-learn")


# ----------------------------------------------------------------------------------------------- compare


def test_compare(runs, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "compare", runs["cond"], "--data", runs["data"], "--num", "6", "--outdir", tmp_path)
    assert rc == 0 and "real-to-real" in out
    (folder,) = tmp_path.glob("kimg-*/compare")
    rows = list(csv.DictReader(open(folder / "nearest.csv")))
    assert len(rows) == 6
    for r in rows:
        assert Path(r["nearest_source"]).is_file() and 0 <= float(r["rms_distance"]) <= 1
        assert r["class"] in ("AD", "NC")
    for name in ("real_vs_generated.png", "nearest.png", "generated.png"):
        assert (folder / name).is_file()


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_input(runs, tmp_path, capsys):
    cond, ad, out = runs["cond"], runs["AD"], tmp_path / "o"
    empty = tmp_path / "empty_run"
    empty.mkdir()
    shutil.copy(cond / "config.json", empty / "config.json")
    one_line_error(capsys, "generate", empty, "--num", "1", "--outdir", out, match="checkpoint")
    one_line_error(capsys, "generate", tmp_path / "missing", "--num", "1", "--outdir", out, match="no such run")

    old = tmp_path / "old_run"
    shutil.copytree(cond, old, ignore=shutil.ignore_patterns("outputs"))
    for record in (old / "checkpoints").glob("ckpt-*.json"):
        meta = json.loads(record.read_text())
        meta["format"] = "stylemri-checkpoint-0"
        record.write_text(json.dumps(meta))
    one_line_error(capsys, "generate", old, "--num", "1", "--outdir", out, match="stylemri-checkpoint-1")

    changed = tmp_path / "changed_run"  # a config whose network no longer fits the stored weights
    shutil.copytree(cond, changed, ignore=shutil.ignore_patterns("outputs"))
    for record in (changed / "checkpoints").glob("ckpt-*.json"):
        meta = json.loads(record.read_text())
        meta["config"]["network"]["channel_max"] = 8
        record.write_text(json.dumps(meta))
    one_line_error(capsys, "generate", changed, "--num", "1", "--outdir", out, match="incompatible")

    one_line_error(capsys, "generate", cond, "--num", "1", "--class", "MCI", "--outdir", out, match="AD, NC")
    one_line_error(capsys, "generate", ad, "--num", "1", "--class", "AD", "--outdir", out, match="unconditional")
    one_line_error(capsys, "generate", cond, "--seeds", "1-x", "--outdir", out, match="1-x")
    one_line_error(capsys, "generate", cond, "--seeds", "3", "--num", "2", "--outdir", out, match="--num 2")
    notes = tmp_path / "scan.png"
    notes.write_text("this is not an image")
    one_line_error(capsys, "project", cond, notes, "--steps", "2", "--outdir", out, match="not an image")
    one_line_error(capsys, "generate", cond, "--num", "1", "--device", "tpu", "--outdir", out, match="--device tpu")
    one_line_error(capsys, "generate", cond, "--num", "100000000", "--outdir", out, match="at most 1,000,000")
    one_line_error(capsys, "generate", cond, "--seeds", "0-4294967295", "--outdir", out, match="at most 1,000,000")
    one_line_error(capsys, "generate", cond, "--num", "1", match="--outdir")


def test_help_for_every_command(capsys):
    for command in ("generate", "mix", "interpolate", "project", "edit", "embed", "compare"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "--checkpoint" in text and "RUN" in text
        assert "--device DEV" in text and "default: auto" in text and "--outdir" in text
        assert "--n " not in text and "--out " not in text and "--batch-size" not in text  # old spellings: hidden


def test_progressive_run_stopped_early(runs, tmp_path, capsys):
    """A progressive StyleGAN run that stopped at 8 px: every tool works at the stage it reached."""
    run = _train(runs["data"], tmp_path / "runs", runs["root"] / "cache", 0.1, "--arch", "stylegan",
                 "--fade-kimg", "0.04", "--stable-kimg", "0.04")
    rc, out, _ = run_cli(capsys, "generate", run, "--n", "2", "--outdir", tmp_path / "g")  # the old spelling, hidden
    assert rc == 0 and "8 px" in out
    assert np.asarray(Image.open(_only(tmp_path / "g") / "seed0001.png")).shape == (8, 8)
    rc, out, _ = run_cli(capsys, "project", run, runs["data"] / "NC" / "NC_01.png", "--steps", "5", "--w-samples",
                         "100", "--d-weight", "0.1", "--outdir", tmp_path)
    assert rc == 0 and "discriminator-feature" in out
    rc, out, _ = run_cli(capsys, "embed", run, "--num", "20", "--method", "pca", "--dims", "2", "--data", runs["data"],
                         "--outdir", tmp_path)
    assert rc == 0
    (summary,) = tmp_path.glob("kimg-*/embed/summary.json")
    assert json.loads(summary.read_text())["dfeat"]["samples_per_class"] == {"AD": 20, "NC": 20}
