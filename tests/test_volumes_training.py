"""`stylemri train --dims 3` end to end at 8^3 on CPU: exact resume, 3-D augmentation, generation to NIfTI,
the library's (N, C, D, H, W) output, and 2-process gloo data parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import stylemri
from stylemri import cli
from stylemri.training import checkpoint as ckpt
from stylemri.training.augment3d import AugmentPipe3d
from stylemri.training.rng import BatchRandom

from test_volumes_data import ellipsoid, write_nifti

nib = pytest.importorskip("nibabel")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dims", "3", "--resolution", "8", "--batch", "4", "--channel-base", "64", "--channel-max", "16",
        "--z-dim", "16", "--w-dim", "16", "--map-layers", "1", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("vols")
    for i, cls in enumerate(["AD", "AD", "NC", "NC"]):
        write_nifti(root / "data" / cls / f"sub-{i}.nii.gz", ellipsoid((14 + i, 16, 12), i))
    return root / "data", str(root / "cache")


def _latest(run: Path):
    return ckpt.read_checkpoint(ckpt.CheckpointManager(run / "checkpoints").latest())


def test_resume_gives_identical_weights_3d(tmp_path, volumes):
    data, cache = volumes
    common = ["--data", str(data), "--cache-dir", cache, "--conditional", "--tick-kimg", "0.008", "--aug", "fixed:0.5",
              "--r1-interval", "2", "--pl-interval", "2", "--checkpoint-ticks", "1", *TINY]
    assert cli.main(["train", "--kimg", "0.016", "--out", str(tmp_path / "straight"), *common]) == 0
    assert cli.main(["train", "--kimg", "0.008", "--out", str(tmp_path / "split"), *common]) == 0
    (split,) = (tmp_path / "split").iterdir()
    assert cli.main(["train", "--resume", str(split), "--kimg", "0.016", "--quiet"]) == 0
    (straight,) = (tmp_path / "straight").iterdir()
    a, meta_a = _latest(straight)
    b, meta_b = _latest(split)
    assert meta_a["nimg"] == meta_b["nimg"] == 16
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert a["G.synthesis.b8.conv1.weight"].ndim == 5
    cfg = json.loads((straight / "config.json").read_text())
    assert cfg["network"]["dims"] == 3 and cfg["data"]["dims"] == 3 and cfg["network"]["channel_base"] == 64
    assert cfg["voxel_mm"] > 0
    rows = (straight / "losses.csv").read_text().splitlines()
    assert len(rows) == 3 and all("nan" not in r for r in rows[1:])
    # Sample grids are the three orthogonal mid-slices of every volume: tiles 8 high, 3 x 8 wide.
    from PIL import Image

    grid = np.asarray(Image.open(straight / "samples" / "fakes-init.png"))
    assert grid.shape[1] == 8 * (3 * 8 + 2) + 2  # 8 columns of 24-pixel-wide tiles, 2-pixel padding


def test_generate_writes_nifti_and_library_returns_volumes(tmp_path, volumes, capsys):
    data, cache = volumes
    assert cli.main(["train", "--data", str(data), "--cache-dir", cache, "--kimg", "0.004", "--tick-kimg", "0.004",
                     "--precision", "bf16", "--out", str(tmp_path / "runs"), *TINY]) == 0  # mixed precision too
    (run,) = (tmp_path / "runs").iterdir()
    assert cli.main(["generate", str(run), "--seeds", "0,1", "--outdir", str(tmp_path / "gen")]) == 0
    out = capsys.readouterr().out
    assert "2 NIfTI volumes" in out
    files = sorted(p.name for p in (tmp_path / "gen").rglob("*") if p.is_file())
    assert {"seed0000.nii.gz", "seed0001.nii.gz", "seed0000.png", "grid.png", "index.csv"} <= set(files)
    (vol_path,) = list((tmp_path / "gen").rglob("seed0001.nii.gz"))
    img = nib.load(str(vol_path))
    voxel = json.loads((run / "config.json").read_text())["voxel_mm"]
    assert img.shape == (8, 8, 8) and nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert np.allclose(img.header.get_zooms(), [voxel] * 3, rtol=1e-5)
    model = stylemri.load(run)
    vols = model.generate(seeds=[0, 1])
    assert vols.shape == (2, 1, 8, 8, 8)
    expected = np.clip(np.rint((vols[1, 0].numpy() + 1) * 127.5), 0, 255).astype(np.uint8).transpose(2, 1, 0)
    assert np.array_equal(np.asarray(img.dataobj), expected)  # NIfTI (x, y, z) = volume (W, H, D)


def test_augment3d_identity_at_p0_integer_translation_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8, 8, requires_grad=True)
    pipe = AugmentPipe3d()
    assert pipe(x, 0.0) is x
    y = pipe(x, 1.0, BatchRandom(1, 4))
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    flip = AugmentPipe3d(("xflip",))(x.detach(), 1.0, BatchRandom(2, 4))
    for i in range(4):  # each volume is either itself or its left-right mirror (last axis), exactly
        assert torch.allclose(flip[i], x[i].detach(), atol=1e-5) or torch.allclose(flip[i], x[i].detach().flip(-1),
                                                                                    atol=1e-5)
    moved = AugmentPipe3d(("translate",))(x.detach(), 1.0, BatchRandom(3, 4))
    vals = np.sort(np.append(x.detach().numpy().ravel(), -1.0))  # -1: black outside the volume
    got = moved.numpy().ravel()
    pos = np.clip(np.searchsorted(vals, got), 1, len(vals) - 1)
    nearest = np.minimum(np.abs(vals[pos] - got), np.abs(vals[pos - 1] - got))
    assert nearest.max() < 1e-4  # whole voxels: every output is an input voxel, nothing interpolated
    assert not torch.equal(moved, x.detach())


@pytest.mark.slow
def test_two_process_gloo_3d(tmp_path, volumes):
    data, cache = volumes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = ["--data", str(data), "--cache-dir", cache, "--kimg", "0.008", "--tick-kimg", "0.008",
              "--mbstd-group", "1", "--aug", "ada", "--r1-interval", "2", "--pl-interval", "2", "--device", "cpu",
              *TINY]
    one = subprocess.run([sys.executable, "-m", "stylemri", "train", "--out", str(tmp_path / "one"), *common],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "stylemri", "train", "--out", str(tmp_path / "two"), *common],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    (run_one,), (run_two,) = list((tmp_path / "one").iterdir()), list((tmp_path / "two").iterdir())
    a, meta_a = _latest(run_one)
    b, meta_b = _latest(run_two)
    init, _ = ckpt.read_checkpoint(ckpt.CheckpointManager(run_one / "checkpoints").checkpoints()[0])
    assert meta_b["world_size"] == 2 and meta_a["nimg"] == meta_b["nimg"] == 8
    # Same global batch and draws: only the per-rank noise streams and float reduction order differ.
    for prefix in ("G.", "D."):
        keys = [k for k in a if k.startswith(prefix) and a[k].is_floating_point()]
        moved = sum(float((a[k] - init[k]).abs().sum()) for k in keys)
        gap = sum(float((a[k] - b[k]).abs().sum()) for k in keys)
        assert moved > 0 and gap < 0.1 * moved, (prefix, gap, moved)
