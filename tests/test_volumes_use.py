"""Using a 3-D run: interpolation strips/GIFs, class-direction edits and embeddings show mid-slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylemri
from stylemri import cli

from test_volumes_data import ellipsoid, write_nifti
from test_volumes_training import TINY

pytest.importorskip("nibabel")


@pytest.fixture(scope="module")
def run3d(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("use3d")
    for i, cls in enumerate(["AD", "AD", "NC", "NC"]):
        write_nifti(root / "data" / cls / f"sub-{i}.nii.gz", ellipsoid((14 + i, 16, 12), i))
    torch.set_num_threads(1)
    assert cli.main(["train", "--data", str(root / "data"), "--cache-dir", str(root / "cache"), "--conditional",
                     "--kimg", "0.004", "--tick-kimg", "0.004", "--out", str(root / "runs"), *TINY]) == 0
    (run,) = (root / "runs").iterdir()
    return run


def test_interpolate_writes_mid_slice_strip_and_gif(run3d, tmp_path, capsys):
    assert cli.main(["interpolate", str(run3d), "--seeds", "0,1", "--frames", "3", "--outdir", str(tmp_path)]) == 0
    strip = next(tmp_path.rglob("seeds_0_1_w.png"))
    gif = next(tmp_path.rglob("seeds_0_1_w.gif"))
    # 3 frames of 8 x 24 mid-slice triples (axial, coronal, sagittal), 2-pixel padding
    assert np.asarray(Image.open(strip)).shape[:2] == (8 + 4, 3 * (24 + 2) + 2)
    assert Image.open(gif).size == (24, 8)
    assert cli.main(["interpolate", str(run3d), "--classes", "NC,AD", "--frames", "2", "--w-samples", "8",
                     "--outdir", str(tmp_path)]) == 0
    assert next(tmp_path.rglob("walk_NC_to_AD.png")).is_file()


def test_edit_along_class_direction_shows_mid_slices(run3d, tmp_path):
    model = stylemri.load(run3d)
    ws = model.G.mapping(torch.randn(1, model.G.z_dim), torch.tensor([[1.0, 0.0]]))[0]
    latent = tmp_path / "w.npy"
    np.save(latent, ws.numpy())
    assert cli.main(["edit", str(run3d), "--latent", str(latent), "--direction", "AD-NC", "--steps", "-1..1",
                     "--w-samples", "8", "--outdir", str(tmp_path)]) == 0
    step = next(tmp_path.rglob("step_+1.00.png"))
    assert np.asarray(Image.open(step)).shape[:2] == (8, 24)


def test_embed_style_codes_and_discriminator_features(run3d, tmp_path, capsys):
    assert cli.main(["embed", str(run3d), "--n", "12", "--method", "pca", "--dims", "2",
                     "--outdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "style" in out.lower()
    assert any(p.suffix == ".png" for p in tmp_path.rglob("*"))


def test_evaluate_3d_run_nearest_volume_per_class(run3d, tmp_path, capsys):
    import json

    assert cli.main(["evaluate", str(run3d), "--metrics", "memorization", "--num", "3", "--batch", "2",
                     "--outdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AD: 3 generated vs 2 real volumes" in out and "nearest real volume" in out
    res = json.loads(next(tmp_path.glob("kimg-*/metrics.json")).read_text())  # tagged by checkpoint
    assert res["dims"] == 3 and set(res["per_class"]) == {"AD", "NC"}
    mem = res["per_class"]["NC"]["metrics"]["memorization"]
    assert len(mem["rows"]) == 3 and mem["real_floor_rms"] > 0
    assert cli.main(["evaluate", str(run3d), "--metrics", "pr", "--num", "2"]) == 2  # not defined for volumes
    assert "not defined for 3-D runs" in capsys.readouterr().err
