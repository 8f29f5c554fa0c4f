"""--dims 3 data: NIfTI folders -> RAS, brain box, isotropic, R^3 cache; bad volumes counted; NIfTI out round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stylemri import cli
from stylemri.config import DataConfig
from stylemri.data import load_dataset
from stylemri.data.volumes import prepare_volume
from stylemri.errors import UserError
from stylemri.volumes_io import mid_slices, save_nifti, volume_affine

from conftest import write_png8

nib = pytest.importorskip("nibabel")


def ellipsoid(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A brain-like blob in (X, Y, Z) voxel order with texture, on black."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum((g / r) ** 2 for g, r in zip(grids, (0.7, 0.8, 0.6))) <= 1
    texture = 100 + 40 * np.sin(4 * grids[0] + seed) * np.cos(3 * grids[1]) + 5 * rng.random(shape)
    return np.where(inside, texture, 0).astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, zooms=(1.0, 1.0, 1.0), flip_x: bool = False) -> Path:
    """Save `data` given in RAS voxel order; flip_x stores it as LAS (x axis reversed in the file)."""
    affine = np.diag([*zooms, 1.0])
    if flip_x:
        data = data[::-1]
        affine[0, 0] = -zooms[0]
        affine[0, 3] = zooms[0] * (data.shape[0] - 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    return path


def marked(shape: tuple[int, int, int]) -> np.ndarray:
    """An ellipsoid with a bright cube in its right-anterior-superior octant."""
    data = ellipsoid(shape) * 0.5
    x, y, z = (int(n * 0.58) for n in shape)
    k = shape[0] // 4  # > 0.5 % of the voxels: large enough to stay above the 99.5th intensity percentile
    data[x:x + k, y:y + k, z:z + k] = 400
    return data


def octant_of_max(vol: np.ndarray) -> tuple[bool, bool, bool]:
    """For a (D, H, W) cube: is the brightest region superior (D), anterior (H), right (W) of the centre?"""
    d, h, w = np.argwhere(vol >= 0.95 * vol.max()).mean(axis=0)
    c = (vol.shape[0] - 1) / 2
    return bool(d > c), bool(h > c), bool(w > c)


@pytest.fixture()
def volume_folder(tmp_path: Path) -> Path:
    root = tmp_path / "vols"
    write_nifti(root / "AD" / "sub-01.nii.gz", ellipsoid((24, 28, 20), 1), zooms=(1.0, 1.0, 1.5))
    write_nifti(root / "AD" / "sub-02.nii", ellipsoid((20, 24, 20), 2), flip_x=True)
    write_nifti(root / "NC" / "sub-03.nii.gz", ellipsoid((26, 26, 22), 3), zooms=(0.9, 0.9, 1.2))
    nib.save(nib.Nifti1Image(np.stack([ellipsoid((20, 20, 20))] * 3, -1), np.eye(4)), str(root / "NC" / "dwi.nii.gz"))
    write_nifti(root / "NC" / "tiny.nii.gz", ellipsoid((5, 5, 5)))
    write_png8(root / "NC" / "slice.png")  # a folder mixing slices and volumes: the slice is a counted skip
    return root


def test_volume_dataset_shapes_labels_and_counted_skips(volume_folder: Path, tmp_path: Path):
    cfg = DataConfig(source=str(volume_folder), resolution=16, dims=3, cache_dir=str(tmp_path / "cache"))
    ds = load_dataset(cfg)
    assert len(ds) == 3 and ds.dims == 3 and ds.class_names == ["AD", "NC"]
    assert ds.labels.tolist() == [0, 0, 1]
    images, labels = ds.batch([0, 1, 2])
    assert images.shape == (3, 1, 16, 16, 16) and images.dtype == torch.float32
    assert images.min() == -1 and images.max() > 0.5
    r = ds.report
    assert r.skipped == 3
    reasons = dict(r.skipped_examples)
    assert "expected a 3-D volume" in reasons["NC/dwi.nii.gz"]
    assert "too small for 16^3" in reasons["NC/tiny.nii.gz"]
    assert "2-D image in a --dims 3 source" in reasons["NC/slice.png"]
    # Isotropic voxels whose longest side fills the cube: the brain box touches two opposite faces.
    vol = images[0, 0].numpy() > -0.9
    assert any(vol.any(axis=tuple(a for a in range(3) if a != k))[[0, -1]].all() or
               vol.any(axis=tuple(a for a in range(3) if a != k))[[1, -2]].all() for k in range(3))
    assert ds.voxel_mm is not None and 1.0 < ds.voxel_mm < 3.0
    # Pyramid levels are the area means of the full level; flips mirror left-right (the last axis).
    small, _ = ds.batch([0], resolution=8)
    ref, _ = ds.batch_reference([0], resolution=8)
    assert small.shape == (1, 1, 8, 8, 8) and (small - ref).abs().max() <= 1 / 127.5 + 1e-6
    flipped, _ = ds.batch([0], xflip=[1])
    assert torch.equal(flipped, images[:1].flip(-1))
    again = load_dataset(cfg)
    assert not again.report.cache_built and torch.equal(again.batch([0, 1, 2])[0], images)


def test_orientation_ras_whatever_the_file_stores(tmp_path: Path):
    data = marked((24, 24, 24))
    ras = prepare_volume(str(write_nifti(tmp_path / "ras.nii.gz", data)), 16, 1)
    las = prepare_volume(str(write_nifti(tmp_path / "las.nii.gz", data, flip_x=True)), 16, 1)
    assert np.array_equal(ras.levels[0], las.levels[0])
    assert octant_of_max(ras.levels[0][0].astype(np.float32)) == (True, True, True)


def test_nifti_out_affine_and_orientation_round_trip(tmp_path: Path):
    data = marked((32, 32, 32))
    prepared = prepare_volume(str(write_nifti(tmp_path / "in.nii.gz", data)), 16, 1)
    vol = torch.from_numpy(prepared.levels[0].astype(np.float32) / 127.5 - 1)
    path = save_nifti(tmp_path / "out.nii.gz", vol, voxel_mm=prepared.voxel_mm)
    img = nib.load(str(path))
    assert img.shape == (16, 16, 16) and nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert np.allclose(img.header.get_zooms(), [prepared.voxel_mm] * 3)
    sform, scode = img.header.get_sform(coded=True)
    qform, qcode = img.header.get_qform(coded=True)
    assert scode == qcode == 2 and np.allclose(sform, qform, atol=1e-5)
    assert np.allclose(sform, volume_affine(16, prepared.voxel_mm))
    assert np.allclose(sform @ [7.5, 7.5, 7.5, 1], [0, 0, 0, 1])  # the cube's centre is at 0 mm
    # The bright marker is right-anterior-superior in world coordinates after the round trip ...
    arr = img.get_fdata()
    ijk = np.argwhere(arr >= 0.95 * arr.max()).mean(axis=0)
    assert (img.affine @ [*ijk, 1])[:3].min() > 0
    # ... and reading the written file back through the data pipeline gives the same cube.
    back = prepare_volume(str(path), 16, 1).levels[0]
    assert octant_of_max(back[0].astype(np.float32)) == (True, True, True)
    assert np.abs(back.astype(int) - prepared.levels[0].astype(int)).mean() < 3


def test_mid_slices_are_display_oriented():
    vol = torch.zeros(1, 1, 8, 8, 8)
    vol[0, 0, 7, 7, 7] = 1  # superior, anterior, right corner
    vol[0, 0, 4, 7, :] = 0.5  # anterior row of the axial mid-slice
    views = mid_slices(vol)
    assert views.shape == (1, 1, 8, 24)
    axial, coronal, sagittal = views[0, 0, :, :8], views[0, 0, :, 8:16], views[0, 0, :, 16:]
    assert axial[0].eq(0.5).all()  # anterior is up
    vol2 = torch.zeros(1, 1, 8, 8, 8)
    vol2[0, 0, 7, 4, 4] = 1  # superior, on both mid-planes
    v2 = mid_slices(vol2)[0, 0]
    assert v2[0, 8 + 4] == 1 and v2[0, 16 + 4] == 1  # superior is up in coronal and sagittal
    assert mid_slices(torch.zeros(2, 1, 8, 8)).shape == (2, 1, 8, 8)


def test_builtin_mni152_is_one_volume(tmp_path: Path):
    ds = load_dataset(DataConfig(source="builtin:mni152", resolution=16, dims=3, cache_dir=str(tmp_path)))
    assert len(ds) == 1 and ds.class_names == ["all"]
    img = ds[0][0]
    assert img.shape == (1, 16, 16, 16)
    assert 8 < ds.voxel_mm < 14  # ~180 mm brain box over 16 voxels


def test_bad_sources_are_one_line_errors(tmp_path: Path, capsys):
    slices = tmp_path / "slices"
    for i in range(2):
        write_png8(slices / f"s{i}.png")
    with pytest.raises(UserError, match="no NIfTI volume; --dims 3 expects"):
        load_dataset(DataConfig(source=str(slices), resolution=16, dims=3))
    rc = cli.main(["train", "--dims", "3", "--data", str(slices), "--resolution", "16", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--dims 3 expects" in err[0]
    only_4d = tmp_path / "dwi"
    only_4d.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 4), np.float32), np.eye(4)), str(only_4d / "dwi.nii.gz"))
    with pytest.raises(UserError, match=r"all 1 files were skipped .*expected a 3-D volume"):
        load_dataset(DataConfig(source=str(only_4d), resolution=16, dims=3, cache_dir=str(tmp_path / "c")))
