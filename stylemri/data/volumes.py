"""Whole volumes for `--dims 3`: NIfTI -> RAS -> brain bounding box -> isotropic voxels -> padded R^3 -> uint8.

Each volume is read with `decode.load_volume` (reoriented to RAS, NaN/Inf -> 0, intensities clipped to
the 0.5-99.5 percentiles and scaled to [0, 1], exactly as for slices), cropped to the bounding box of
its voxels above `decode.CONTENT_THRESHOLD`, resampled so its longest physical side spans R voxels of
one isotropic size, and centred in an R^3 black cube. Arrays are (C, D, H, W) with D = inferior ->
superior, H = posterior -> anterior, W = left -> right: the last axis is left-right, so the loader's
x-flip is a left-right flip as for slices. The prepared cache (`cache.py`) stores every volume once,
with the 2x2x2 area pyramid R, R/2, ..., 4 and the voxel size in millimetres of each volume.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from stylemri.data import decode
from stylemri.data.sources import UNLABELED, Scan
from stylemri.errors import UserError

BOX_MARGIN = 2  # voxels kept around the brain bounding box
MIN_FRACTION = 0.5  # a brain box spanning fewer than R * this voxels (longest side) is too small for R
VOLUME_ONLY = ".nii or .nii.gz volumes (--dims 3 trains on whole volumes)"


def volume_scan(scan: Scan) -> Scan:
    """The scan restricted to whole volumes: builtin:mni152 is one volume; 2-D images are counted skips.

    A source with no volume at all (a folder of slices) is one clear error rather than an empty run.
    """
    if scan.builtin:
        f = dataclasses.replace(scan.files[0], class_name=UNLABELED, axis="")
        return dataclasses.replace(scan, files=(f,), axes=(), description=f"{scan.description.split(',')[0]}, "
                                   "one whole volume")
    volumes = tuple(dataclasses.replace(f, axis="") for f in scan.files if f.kind == "volume")
    images = [f for f in scan.files if f.kind != "volume"]
    if not volumes:
        raise UserError(f"{scan.source}: holds {len(images)} 2-D image(s) and no NIfTI volume; --dims 3 expects "
                        f"{VOLUME_ONLY} (use --dims 2 for slices)")
    rejected = scan.rejected + tuple((f.rel, "2-D image in a --dims 3 source (expected a NIfTI volume)", f.size,
                                      f.mtime_ns) for f in images)
    description = scan.description.replace("images and NIfTI volumes", "NIfTI volumes")
    description = description.split(" sliced ")[0] + " (whole volumes)"
    return dataclasses.replace(scan, files=volumes, rejected=rejected, axes=(), description=description)


@dataclasses.dataclass(frozen=True)
class PreparedVolume:
    """One volume ready for the cache: the uint8 pyramid, and what happened on the way."""

    levels: list[np.ndarray]  # (C, r, r, r) uint8 for r = R, R/2, ..., 4
    voxel_mm: float  # isotropic voxel size of level R
    upsampled: bool  # the brain box had fewer voxels than R along its longest side
    size: str
    depth: str


def brain_box(data: np.ndarray, margin: int = BOX_MARGIN) -> tuple[slice, slice, slice] | None:
    """Bounding box (with a margin) of the voxels above the content threshold; None when there are none."""
    mask = data > decode.CONTENT_THRESHOLD
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, data.shape[axis])))
    return box[0], box[1], box[2]


def resample_isotropic(data: np.ndarray, zooms: tuple[float, float, float], resolution: int) -> tuple[np.ndarray, float]:
    """(X, Y, Z) float -> isotropic voxels whose longest physical side is `resolution`; -> (array, voxel mm).

    Upsampled axes are interpolated (trilinear); downsampled ones are area-averaged (adaptive average
    pooling), so fine anatomy is not aliased.
    """
    extents = [n * z for n, z in zip(data.shape, zooms)]
    voxel = max(extents) / resolution
    target = [min(max(int(round(e / voxel)), 1), resolution) for e in extents]
    x = torch.from_numpy(np.ascontiguousarray(data, np.float32))[None, None]
    larger = [max(n, t) for n, t in zip(data.shape, target)]
    if larger != list(data.shape):
        x = F.interpolate(x, size=larger, mode="trilinear", align_corners=False)
    if larger != target:
        x = F.adaptive_avg_pool3d(x, target)
    return x[0, 0].numpy(), float(voxel)


def to_cube(data: np.ndarray, resolution: int) -> np.ndarray:
    """(X, Y, Z) -> (D, H, W) = (Z, Y, X), centred in a black R^3 cube."""
    zyx = np.ascontiguousarray(data.transpose(2, 1, 0))
    cube = np.zeros((resolution,) * 3, np.float32)
    offsets = [(resolution - n) // 2 for n in zyx.shape]
    d, h, w = zyx.shape
    cube[offsets[0]:offsets[0] + d, offsets[1]:offsets[1] + h, offsets[2]:offsets[2] + w] = zyx
    return np.clip(cube, 0.0, 1.0)


def pyramid3d(vol: np.ndarray, min_resolution: int = 4) -> list[np.ndarray]:
    """uint8 levels R, R/2, ..., 4 of a float (C, R, R, R) volume, each the exact 2x2x2 area mean of the float one."""
    levels = [decode.quantize(vol)]
    x = vol
    while x.shape[-1] // 2 >= min_resolution:
        c, r = x.shape[0], x.shape[-1] // 2
        x = x.reshape(c, r, 2, r, 2, r, 2).mean(axis=(2, 4, 6), dtype=np.float32)
        levels.append(decode.quantize(x))
    return levels


def prepare_volume(path: str, resolution: int, channels: int) -> PreparedVolume:
    """Read, crop, resample, pad and quantize one NIfTI file; ValueError says why a volume cannot be used."""
    vol = decode.load_volume(path)  # raises ValueError for 4-D data
    box = brain_box(vol.data)
    if box is None:
        raise ValueError("no voxel above the brain-content threshold (empty or constant volume)")
    crop = vol.data[box]
    extents = [n * z for n, z in zip(crop.shape, vol.zooms)]
    longest = crop.shape[int(np.argmax(extents))]
    if longest < resolution * MIN_FRACTION:
        raise ValueError(f"too small for {resolution}^3: brain box {'x'.join(map(str, crop.shape))} voxels, expected "
                         f"at least {int(resolution * MIN_FRACTION)} along its longest side")
    iso, voxel = resample_isotropic(crop, vol.zooms, resolution)  # type: ignore[arg-type]
    cube = to_cube(iso, resolution)[None]
    if channels == 3:
        cube = np.repeat(cube, 3, axis=0)
    return PreparedVolume(pyramid3d(cube), voxel, longest < resolution, vol.size, vol.depth)


__all__ = ["PreparedVolume", "brain_box", "prepare_volume", "pyramid3d", "resample_isotropic", "to_cube",
           "volume_scan"]
