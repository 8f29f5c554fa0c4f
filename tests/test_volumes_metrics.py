"""3-D metrics: MS-SWD 3-D, slices cut the same way from both sets, nearest real volume per subject."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylemri.metrics.swd import SWDConfig
from stylemri.metrics.volumes import laplacian_pyramid3d, nearest_real, slice_fid_kid, swd3d, volume_slices
from stylemri.volumes_io import mid_slices

CFG = SWDConfig(nhoods_per_image=32, dir_repeats=2, dirs_per_repeat=32)


def blobs(n: int, seed: int, r: int = 16, noise: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, r)] * 3, indexing="ij"))
    out = []
    for _ in range(n):
        inside = (np.square(g / rng.uniform(0.5, 0.8, (3, 1, 1, 1))).sum(0) <= 1)
        out.append(np.clip(inside * 180 + rng.normal(0, noise, inside.shape), 0, 255))
    return np.asarray(out, np.uint8)[:, None]


def test_pyramid_sums_back_to_the_volume():
    x = torch.from_numpy(blobs(2, 0).astype(np.float32))
    levels = laplacian_pyramid3d(x, 2)
    assert [lv.shape[-1] for lv in levels] == [16, 8]
    # band + upsampled residual reconstructs the input (the pyramid loses nothing)
    from stylemri.metrics.volumes import _filter3d

    up = torch.zeros_like(x)
    up[:, :, ::2, ::2, ::2] = levels[1]
    assert torch.allclose(levels[0] + _filter3d(up, 8.0), x, atol=1e-3)


def test_swd3d_zero_for_identical_sets_and_orders_differences():
    a, b = blobs(6, 1), blobs(6, 2)
    assert swd3d(a, a, CFG)["mean"] == 0
    near = swd3d(a, b, CFG)["mean"]
    far = swd3d(a, np.full_like(a, 128), CFG)["mean"]
    assert 0 < near < far
    with pytest.raises(ValueError, match="uint8"):
        swd3d(a.astype(np.float32), a, CFG)


def test_slices_cut_the_same_way_and_match_mid_slices():
    v = blobs(3, 3)
    for axis in ("axial", "coronal", "sagittal"):
        s = volume_slices(v, axis, 4)
        assert s.shape == (12, 1, 16, 16)
    mid = mid_slices(torch.from_numpy(v)).numpy()
    one = volume_slices(v, "axial", 1)  # one slice: at the centre of the central half
    coronal = volume_slices(v, "coronal", 1)
    sagittal = volume_slices(v, "sagittal", 1)
    # the positions are those of the mid-slices when one slice per axis is asked for
    assert np.array_equal(np.concatenate([one, coronal, sagittal], -1), mid)


class MeanFeatures:
    """A stand-in feature extractor (4x4 pooled pixels): exercises the plumbing, not Inception."""

    device = torch.device("cpu")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)


def test_slice_fid_kid_states_n_per_axis():
    out = slice_fid_kid(blobs(4, 4), blobs(5, 5), MeanFeatures(), slices_per_volume=3)
    assert set(out) == {"axial", "coronal", "sagittal"}
    assert out["axial"]["num_real_slices"] == 12 and out["axial"]["num_generated_slices"] == 15
    assert out["axial"]["fid"] > 0 and "mean" in out["axial"]["kid"]
    same = slice_fid_kid(blobs(4, 4), blobs(4, 4), MeanFeatures(), slices_per_volume=3)
    assert abs(same["coronal"]["fid"]) < 1e-6


def test_nearest_real_finds_copies_and_mirrors_per_subject():
    real = blobs(4, 6)
    fake = np.concatenate([real[1:2], real[2:3, ..., ::-1], np.full_like(real[:1], 250)])
    out = nearest_real(fake, real, np.array(["s1", "s2", "s3", "s3"], object))
    assert [r["nearest_real"] for r in out["rows"][:2]] == [1, 2]
    assert out["rows"][0]["rms"] == 0 and out["rows"][1]["rms"] == 0  # a mirrored copy is still a copy
    assert out["per_subject"]["s2"]["count"] == 1 and out["real_floor_rms"] > 0
    assert out["fraction_closer_than_floor"] == pytest.approx(2 / 3)
